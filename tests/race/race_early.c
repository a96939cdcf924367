/*
 * race_early.c - server/src/early.c's helper thread against the thread
 * feeding the body: a large base64 /v1/loss body fed chunk by chunk as
 * http.c feeds it (srv__early_feed after every chunk, with pauses so the
 * helper runs tasks while the arena is still being written), then
 * srv__early_end and api_loss_sent_early. The reply must be api_loss's of
 * the whole body byte for byte, the early work used, and a body given up
 * half-way (a client gone) must end its helper before the arena is freed.
 * Several requests at once, each its own feeding thread, share the
 * server-wide cap on helpers. Three bodies: y_pred in base64, the same as
 * nested JSON arrays (the helper reads the rows body.c lifted), and that
 * with a ragged row near the end (a 422: the helper's work dropped). The
 * helpers' partial tables are counted in a budget (budget.c), all given
 * back at the end; with a budget too small for them, nothing starts early
 * and the replies are the same. Meant for ThreadSanitizer
 * (-DLOSSD_SANITIZE=thread); a plain executable, exit status 0 = pass.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "early.h"

#define ROWS    4096
#define C       64 /* 262144 logits: 8 tasks */
#define THREADS 3
#define ROUNDS  3

enum { K_B64, K_JSON, K_RAGGED, NKINDS };

static const api_ctx ctx = API_CTX_INIT;
static atomic_int running;
static srv__early_budget bud;
static struct kind {
	char *body, *want;
	size_t body_len, want_len;
	atomic_int used;
} kinds[NKINDS];
static atomic_int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "race_early: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	atomic_fetch_add(&failures, 1);
}

static const char b64c[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(char *dst, const unsigned char *s, size_t n)
{
	size_t i = 0;
	for (; i + 3 <= n; i += 3, dst += 4) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		for (int k = 0; k < 4; k++)
			dst[k] = b64c[(v >> (18 - 6 * k)) & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		dst[0] = b64c[v >> 18];
		dst[1] = b64c[(v >> 12) & 63];
		dst[2] = dst[3] = '=';
		dst += 4;
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		dst[0] = b64c[v >> 18];
		dst[1] = b64c[(v >> 12) & 63];
		dst[2] = b64c[(v >> 6) & 63];
		dst[3] = '=';
		dst += 4;
	}
	*dst = '\0';
}

static void make_body(void)
{
	float *x = malloc((size_t)ROWS * C * sizeof *x);
	int32_t *y = malloc(ROWS * sizeof *y);
	uint32_t seed = 1;
	for (size_t i = 0; i < (size_t)ROWS * C; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = (float)((int)(seed >> 8) % 2000 - 1000) / 250.0f;
	}
	for (int i = 0; i < ROWS; i++)
		y[i] = (int32_t)((i * 7) % C);
	size_t xb = ((size_t)ROWS * C * 4 + 2) / 3 * 4, yb = (ROWS * 4 + 2) / 3 * 4;
	char *xs = malloc(xb + 1), *ys = malloc(yb + 1);
	b64(xs, (const unsigned char *)x, (size_t)ROWS * C * 4);
	b64(ys, (const unsigned char *)y, ROWS * 4);
	char *body = malloc(xb + yb + 512);
	kinds[K_B64].body = body;
	kinds[K_B64].body_len =
	        (size_t)sprintf(body,
	                        "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": "
	                        "true, \"y_true\": {\"shape\": [%d], \"dtype\": \"int32\", "
	                        "\"b64\": \"%s\"}, \"y_pred\": {\"shape\": [%d, %d], "
	                        "\"dtype\": \"float32\", \"b64\": \"%s\"}}",
	                        ROWS, ys, ROWS, C, xs);
	free(xs);
	free(ys);

	/* the same as JSON: labels, then rows of %.9g */
	size_t cap = (size_t)ROWS * C * 20 + ROWS * 8 + 512, n = 0;
	body = malloc(cap);
	n += (size_t)sprintf(body + n, "{\"loss\": \"sparse_categorical_crossentropy\", "
	                               "\"from_logits\": true, \"y_true\": [");
	for (int i = 0; i < ROWS; i++)
		n += (size_t)sprintf(body + n, "%s%d", i ? "," : "", (int)y[i]);
	n += (size_t)sprintf(body + n, "],\n \"y_pred\": [");
	for (int i = 0; i < ROWS; i++) {
		n += (size_t)sprintf(body + n, "%s[", i ? ",\n" : "");
		for (int k = 0; k < C; k++)
			n += (size_t)sprintf(body + n, "%s%.9g", k ? "," : "",
			                     (double)x[(size_t)i * C + k]);
		n += (size_t)sprintf(body + n, "]");
	}
	n += (size_t)sprintf(body + n, "]}");
	kinds[K_JSON].body = body;
	kinds[K_JSON].body_len = n;
	/* and with the row before the last one value short */
	char *r = malloc(n + 1);
	memcpy(r, body, n + 1);
	char *last = strrchr(r, '[');
	char *end = last - 3, *cut = end; /* the ']' closing the row before ",\n[" */
	while (*cut != ',')
		cut--; /* its last value's ',' */
	memmove(cut, end, strlen(end) + 1);
	kinds[K_RAGGED].body = r;
	kinds[K_RAGGED].body_len = strlen(r);
	free(x);
	free(y);
}

/* One request: fed in chunks of `chunk`, given up after `upto` bytes when
 * upto < body_len. */
static void request(struct kind *kd, size_t chunk, size_t upto)
{
	const char *body = kd->body;
	size_t body_len = kd->body_len;
	size_t cap = api_body_arena_size(body_len);
	void *arena = aligned_alloc(64, (cap + 63) / 64 * 64);
	api_body *b = NULL;
	srv__early *early = NULL;
	int tries = 0;
	struct timespec nap = {0, 200000};

	if (!arena || api_body_new(&b, arena, cap, body_len, ctx.max_depth)) {
		fail("out of memory");
		free(arena);
		return;
	}
	for (size_t at = 0; at < upto; at += chunk) {
		size_t n = upto - at < chunk ? upto - at : chunk;
		if (api_body_feed(b, body + at, n)) {
			fail("feed failed at %zu", at);
			break;
		}
		srv__early_feed(&early, &tries, &running, &ctx, b, &bud);
		if (at / chunk % 16 == 0)
			nanosleep(&nap, NULL); /* let the helper catch up now and then */
	}
	api_early *e = srv__early_end(&early, &running);
	if (upto == body_len) {
		api_reply got = {0};
		int64_t ran, tasks;
		api_loss_sent_early(&got, &ctx, b, e);
		if (got.len != kd->want_len || memcmp(got.body, kd->want, kd->want_len))
			fail("body %d, chunks of %zu: %.200s, whole body %.200s", (int)(kd - kinds),
			     chunk, got.body, kd->want);
		if (api_loss_early_used(e, &ran, &tasks))
			atomic_fetch_add(&kd->used, 1);
		api_reply_free(&got);
	}
	api_loss_early_free(e);
	api_body_free(b);
	free(arena);
}

static void *worker(void *arg)
{
	size_t k = (size_t)(uintptr_t)arg;
	for (int r = 0; r < ROUNDS; r++) {
		for (int i = 0; i < NKINDS; i++) {
			struct kind *kd = &kinds[(i + k) % NKINDS];
			request(kd, 4093 + 1000 * k, kd->body_len);
			/* a client gone mid-body */
			request(kd, 65536, kd->body_len / 2 + 1000 * k);
		}
	}
	return NULL;
}

int main(void)
{
	api_reply w = {0};
	pthread_t th[THREADS];

	make_body();
	for (int i = 0; i < NKINDS; i++) {
		api_loss(&w, &ctx, kinds[i].body, kinds[i].body_len);
		if (w.status != (i == K_RAGGED ? 422 : 200)) {
			fprintf(stderr, "race_early: whole body %d answered %d %s\n", i, w.status,
			        w.body);
			return 1;
		}
		kinds[i].want = w.body;
		kinds[i].want_len = w.len;
		memset(&w, 0, sizeof w);
	}
	/* a budget with room for 1 KiB of tables: nothing starts early */
	bud.budget = srv__budget_new(1024, 1024, 1024);
	for (int i = 0; i < NKINDS; i++)
		request(&kinds[i], 65536, kinds[i].body_len);
	for (int i = 0; i < NKINDS; i++)
		if (atomic_load(&kinds[i].used))
			fail("body %d used early work its tables had no budget for", i);
	srv__budget_free(bud.budget);
	bud.budget = srv__budget_new((size_t)1 << 30, (size_t)1 << 30, (size_t)1 << 30);
	for (size_t k = 0; k < THREADS; k++)
		pthread_create(&th[k], NULL, worker, (void *)(uintptr_t)k);
	for (size_t k = 0; k < THREADS; k++)
		pthread_join(th[k], NULL);
	if (atomic_load(&running) != 0)
		fail("%d helpers still counted as running", atomic_load(&running));
	if (srv__budget_used(bud.budget) != 0)
		fail("%zu bytes of budget still taken", srv__budget_used(bud.budget));
	srv__budget_free(bud.budget);
	if (atomic_load(&kinds[K_B64].used) == 0 || atomic_load(&kinds[K_JSON].used) == 0)
		fail("no request used its early work (base64 %d, JSON %d)",
		     atomic_load(&kinds[K_B64].used), atomic_load(&kinds[K_JSON].used));
	if (atomic_load(&kinds[K_RAGGED].used))
		fail("a ragged body used its early work");
	printf("race_early: base64 %d, JSON %d of %d whole requests used their early work\n",
	       atomic_load(&kinds[K_B64].used), atomic_load(&kinds[K_JSON].used), THREADS * ROUNDS);
	for (int i = 0; i < NKINDS; i++) {
		free(kinds[i].want);
		free(kinds[i].body);
	}
	return atomic_load(&failures) ? 1 : 0;
}
