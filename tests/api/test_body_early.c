/*
 * test_body_early.c - the loss started on the rows already decoded
 * (api_loss_early_*, api/src/loss.c) must answer byte for byte as the
 * buffered path. Each body here is answered whole (api_loss), then fed in
 * many splits (chunks of fixed sizes, random cuts) the way the server
 * drives an early loss: a guess taken on each long string as its decoding
 * starts (two tries), its tasks stepped after a chunk as far as the bytes
 * decoded allow (after every chunk, or after a random few: a helper that
 * lags), and the answer from api_loss_sent_early. The replies must be the
 * same (status, body); where the guess holds, the early work must have
 * been used and, over the splits, tasks must have run before the end;
 * where it cannot hold (y_true after y_pred, a key after it), never used.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "b64.h"

#include "testbuf.h"

static uint32_t rnd(uint32_t *seed)
{
	*seed = *seed * 1664525u + 1013904223u;
	return *seed >> 8;
}

/* "key": {"shape": shape, "dtype": dtype, "b64": "..."} */
static void tensor(buf *b, const char *key, const char *shape, const char *dtype, const void *data,
                   size_t nbytes)
{
	char *x = api__b64_encode(data, nbytes);
	char head[200];
	cr_assert_not_null(x);
	snprintf(head, sizeof head, "\"%s\": {\"shape\": %s, \"dtype\": \"%s\", \"b64\": \"", key,
	         shape, dtype);
	puts_(b, head);
	puts_(b, x);
	puts_(b, "\"}");
	free(x);
}

/* JSON array of n numbers */
static void numbers(buf *b, const char *key, const double *v, size_t n)
{
	char t[64];
	snprintf(t, sizeof t, "\"%s\": [", key);
	puts_(b, t);
	for (size_t i = 0; i < n; i++) {
		snprintf(t, sizeof t, "%s%.17g", i ? ", " : "", v[i]);
		puts_(b, t);
	}
	puts_(b, "]");
}

static float *logits(size_t n, uint32_t seed)
{
	float *x = malloc(n * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)((int)(rnd(&seed) % 2000) - 1000) / 250.0f;
	return x;
}

/* rows of c probabilities (positive, summing to about 1) */
static float *probs(size_t rows, size_t c, uint32_t seed)
{
	float *x = malloc(rows * c * sizeof *x);
	for (size_t r = 0; r < rows; r++) {
		double s = 0;
		for (size_t k = 0; k < c; k++)
			s += x[r * c + k] = (float)(1 + rnd(&seed) % 100);
		for (size_t k = 0; k < c; k++)
			x[r * c + k] = (float)(x[r * c + k] / s);
	}
	return x;
}

static int32_t *labels(size_t n, int c, uint32_t seed)
{
	int32_t *y = malloc(n * sizeof *y);
	for (size_t i = 0; i < n; i++)
		y[i] = (int32_t)(rnd(&seed) % (uint32_t)c);
	return y;
}

/* ---- feeding as the server does --------------------------------------------------- */

static api_ctx limits = API_CTX_INIT;

/* Decoded bytes of a string before a guess is taken on it (the server
 * waits for 256 KiB: short strings never start one). */
#define GUESS_MIN ((size_t)128 << 10)

/* s[0, n) fed in the chunks cut at cuts[0..ncuts); tasks stepped after a
 * chunk with probability step_pct %. *planned: a guess was planned (on the
 * last string guessed on). */
static void fed(api_reply *out, bool *used, int64_t *ran, bool *planned, const char *s, size_t n,
                const size_t *cuts, size_t ncuts, unsigned step_pct, uint32_t seed)
{
	api_ctx ctx = limits;
	size_t cap = api_body_arena_size(n);
	void *arena = aligned_alloc(64, (cap + 63) / 64 * 64);
	api_body *b = NULL;
	api_early *e = NULL;
	size_t from = 0, eid = SIZE_MAX;
	int tries = 0;
	int64_t tasks;

	*planned = false;
	cr_assert_not_null(arena);
	cr_assert_eq(api_body_new(&b, arena, cap, n, ctx.max_depth), 0);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n, id;
		cr_assert_eq(api_body_feed(b, s + from, to - from), 0);
		from = to;
		size_t ready = api_body_decoding(b, &id);
		if (ready == SIZE_MAX || (id != eid && ready < GUESS_MIN))
			continue;
		if (id != eid) {
			api_loss_early_free(e); /* another string: a new guess */
			e = NULL;
			eid = id;
			*planned = false;
			if (tries < 2) {
				tries++;
				cr_assert_eq(api_loss_early_new(&e, &ctx, b), 0);
				if (api_loss_early_prepare(e)) {
					api_loss_early_free(e);
					e = NULL;
				}
				*planned = e != NULL;
			}
		}
		if (e && rnd(&seed) % 100 < step_pct)
			while (api_loss_early_step(e, ready))
				;
	}
	api_loss_sent_early(out, &ctx, b, e);
	*used = api_loss_early_used(e, ran, &tasks);
	if (*used)
		cr_assert(*ran >= 0 && *ran <= tasks && tasks >= 1);
	api_loss_early_free(e);
	api_body_free(b);
	free(arena);
}

static void expect_same(const api_reply *want, const api_reply *got, const char *what, size_t at)
{
	cr_assert_eq(got->status, want->status, "%s %zu: status %d, whole body %d (%s)", what, at,
	             got->status, want->status, got->body);
	cr_assert_eq(got->len, want->len, "%s %zu:\n got  %.300s\n want %.300s", what, at,
	             got->body, want->body);
	cr_assert(memcmp(got->body, want->body, want->len) == 0,
	          "%s %zu:\n got  %.300s\n want %.300s", what, at, got->body, want->body);
}

enum { HOLDS, NEVER, MAYBE }; /* whether the guess must hold */

/*
 * Whole vs fed in chunks of several sizes and random cuts, stepping every
 * chunk or a few. `holds`: HOLDS when the early work must be used (and
 * some task must have run early over the splits), NEVER when it must not.
 */
static void check(const buf *b, int expect_status, const char *expect_code, int holds,
                  bool bytewise)
{
	static const size_t steps[] = {7, 61, 1000, 4093, 65536, 300001};
	api_ctx ctx = limits;
	api_reply want = {0}, got = {0};
	size_t n = b->n, maxcuts = n + 1;
	size_t *cuts = malloc(maxcuts * sizeof *cuts);
	int64_t ran, early_tasks = 0;
	bool used, planned;
	uint32_t seed = 12345;

	api_loss(&want, &ctx, b->s, n);
	if (expect_status > 0)
		cr_assert_eq(want.status, expect_status, "whole body: %d %.300s", want.status,
		             want.body);
	if (expect_code)
		cr_assert(strstr(want.body, expect_code), "whole body: %.300s", want.body);

	for (size_t k = 0; k < sizeof steps / sizeof steps[0] + (bytewise ? 1 : 0); k++) {
		size_t step = k < sizeof steps / sizeof steps[0] ? steps[k] : 1, nc = 0;
		for (size_t at = step; at < n; at += step)
			cuts[nc++] = at;
		for (unsigned pct = 100; pct > 0; pct = pct == 100 ? 30 : 0) {
			fed(&got, &used, &ran, &planned, b->s, n, cuts, nc, pct, (uint32_t)k);
			expect_same(&want, &got, "chunks of", step);
			api_reply_free(&got);
			if (holds == HOLDS)
				cr_assert(used, "chunks of %zu: the early work was not used", step);
			if (holds == NEVER)
				cr_assert(!used, "chunks of %zu: the early work was used", step);
			early_tasks += ran;
		}
	}
	for (int r = 0; r < 24; r++) {
		size_t nc = 1 + rnd(&seed) % 40;
		for (size_t i = 0; i < nc; i++)
			cuts[i] = rnd(&seed) % (n + 1);
		for (size_t i = 1; i < nc; i++) /* sort (insertion) */
			for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
				size_t t = cuts[j];
				cuts[j] = cuts[j - 1];
				cuts[j - 1] = t;
			}
		fed(&got, &used, &ran, &planned, b->s, n, cuts, nc, r % 2 ? 100 : 50, (uint32_t)r);
		expect_same(&want, &got, "random cuts, run", (size_t)r);
		api_reply_free(&got);
		/* a chunk may hold the whole string: then no guess was taken */
		if (holds == HOLDS && planned)
			cr_assert(used, "random cuts %d: the early work was not used", r);
		if (holds == NEVER)
			cr_assert(!used, "random cuts %d: the early work was used", r);
		early_tasks += ran;
	}
	if (holds == HOLDS)
		cr_assert_gt(early_tasks, 0, "no task ever ran before the body's end");
	api_reply_free(&want);
	free(cuts);
}

/* ---- bodies ------------------------------------------------------------------------- */

#define ROWS 8192
#define C    32 /* 262144 logits: 8 tasks */

/* sparse CE from logits; `tail` before the final '}', `head` after '{' */
static void sparse_body(buf *b, const float *x, const int32_t *y, const char *head,
                        const char *tail, bool pred_first)
{
	char shape[64];
	puts_(b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, ");
	puts_(b, head ? head : "");
	snprintf(shape, sizeof shape, "[%d, %d]", ROWS, C);
	if (pred_first) {
		tensor(b, "y_pred", shape, "float32", x, (size_t)ROWS * C * sizeof *x);
		puts_(b, ",\n ");
	}
	snprintf(shape, sizeof shape, "[%d]", ROWS);
	tensor(b, "y_true", shape, "int32", y, ROWS * sizeof *y);
	if (!pred_first) {
		puts_(b, ",\n ");
		snprintf(shape, sizeof shape, "[%d, %d]", ROWS, C);
		tensor(b, "y_pred", shape, "float32", x, (size_t)ROWS * C * sizeof *x);
	}
	puts_(b, tail ? tail : "");
	puts_(b, "}");
}

Test(early, sparse_from_logits, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 7);
	int32_t *y = labels(ROWS, C, 3);
	buf b = {0};
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 200, "\"per_class\"", HOLDS, true);
	free(b.s);
	free(x);
	free(y);
}

Test(early, sparse_ignore_index_weights_extras_float64, .timeout = 240)
{
	double *x = malloc((size_t)ROWS * C * sizeof *x);
	double *sw = malloc(ROWS * sizeof *sw), cw[C];
	int32_t *y = labels(ROWS, C, 4);
	uint32_t seed = 9;
	char shape[64];
	buf b = {0};
	for (size_t i = 0; i < (size_t)ROWS * C; i++)
		x[i] = (double)((int)(rnd(&seed) % 2000) - 1000) / 300.0;
	for (int i = 0; i < ROWS; i++) {
		sw[i] = 0.25 + (double)(rnd(&seed) % 7);
		if (i % 11 == 3)
			y[i] = -1; /* ignored */
	}
	for (int c = 0; c < C; c++)
		cw[c] = 0.5 + c / 8.0;
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, "
	          "\"ignore_index\": -1, \"confusion_matrix\": true, \"top_k\": [1, 3], "
	          "\"calibration\": {\"bins\": 7}, \"label_smoothing\": 0.05,\n ");
	numbers(&b, "class_weight", cw, C);
	puts_(&b, ",\n ");
	snprintf(shape, sizeof shape, "[%d]", ROWS);
	tensor(&b, "sample_weight", shape, "float64", sw, ROWS * sizeof *sw);
	puts_(&b, ",\n ");
	tensor(&b, "y_true", shape, "int32", y, ROWS * sizeof *y);
	puts_(&b, ",\n ");
	snprintf(shape, sizeof shape, "[%d, %d]", ROWS, C);
	tensor(&b, "y_pred", shape, "float64", x, (size_t)ROWS * C * sizeof *x);
	puts_(&b, "}");
	check(&b, 200, "\"top_k_accuracy\"", HOLDS, false);
	free(b.s);
	free(x);
	free(sw);
	free(y);
}

Test(early, categorical_probabilities_smoothing_class_weight, .timeout = 240)
{
	enum { R = 4096 };
	float *t = probs(R, C, 5), *p = probs(R, C, 6);
	double cw[C];
	char shape[64];
	buf b = {0};
	for (int c = 0; c < C; c++)
		cw[c] = 1.0 + (c % 5) / 4.0;
	puts_(&b, "{\"loss\": \"categorical_crossentropy\", \"label_smoothing\": 0.1, ");
	numbers(&b, "class_weight", cw, C);
	puts_(&b, ",\n ");
	snprintf(shape, sizeof shape, "[%d, %d]", R, C);
	/* y_true is a long string too: the first guess (on it) fails */
	tensor(&b, "y_true", shape, "float32", t, (size_t)R * C * sizeof *t);
	puts_(&b, ",\n ");
	tensor(&b, "y_pred", shape, "float32", p, (size_t)R * C * sizeof *p);
	puts_(&b, "}");
	check(&b, 200, "\"per_class\"", HOLDS, false);
	free(b.s);
	free(t);
	free(p);
}

Test(early, binary_pos_weight_reduction_none, .timeout = 240)
{
	enum { R = 32768, K = 8 }; /* 8 tasks of one position an element */
	float *t = malloc((size_t)R * K * sizeof *t), *p = malloc((size_t)R * K * sizeof *p);
	double pw[16];
	uint32_t seed = 21;
	char shape[64];
	buf b = {0}, b2 = {0};
	for (size_t i = 0; i < (size_t)R * K; i++) {
		t[i] = (float)(rnd(&seed) % 2);
		p[i] = (float)(1 + rnd(&seed) % 998) / 1000.0f;
	}
	for (int k = 0; k < K; k++)
		pw[k] = 0.5 + k;
	snprintf(shape, sizeof shape, "[%d, %d]", R, K);
	for (int red = 0; red < 2; red++) {
		buf *o = red ? &b2 : &b;
		puts_(o, "{\"loss\": \"binary_crossentropy\", \"confusion_matrix\": true, ");
		puts_(o, red ? "\"reduction\": \"none\", " : "\"reduction\": \"sum\", ");
		numbers(o, "pos_weight", pw, K);
		puts_(o, ",\n ");
		tensor(o, "y_true", shape, "float32", t, (size_t)R * K * sizeof *t);
		puts_(o, ",\n ");
		tensor(o, "y_pred", shape, "float32", p, (size_t)R * K * sizeof *p);
		puts_(o, "}");
	}
	check(&b, 200, "\"confusion_matrix\"", HOLDS, false);
	check(&b2, 200, "\"per_position\"", NEVER, false); /* not started early */
	free(b.s);
	free(b2.s);
	free(t);
	free(p);
}

Test(early, guess_cannot_hold, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 8);
	int32_t *y = labels(ROWS, C, 2);
	buf b = {0};
	sparse_body(&b, x, y, NULL, NULL, true); /* y_true after y_pred */
	check(&b, 200, NULL, NEVER, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	sparse_body(&b, x, y, NULL, ", \"per_class\": false", false); /* a key after it */
	check(&b, 200, NULL, NEVER, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	sparse_body(&b, x, y, NULL, ", \"axis\": 0", false); /* one that changes the loss */
	check(&b, 422, NULL, NEVER, false);
	free(b.s);
	free(x);
	free(y);
}

Test(early, bad_values_early_and_late, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 9);
	int32_t *y = labels(ROWS, C, 5);
	buf b = {0};

	y[ROWS - 3] = C; /* a label out of range in the last rows */
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 422, "/y_true/8189", HOLDS, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	y[70] = -7; /* and one in the first task: the smallest index is reported */
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 422, "/y_true/70", HOLDS, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	y[70] = 0;
	y[ROWS - 3] = 0;
	x[(size_t)(ROWS - 2) * C + 5] = NAN; /* a non-finite logit in the last row */
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 422, "non_finite", NEVER, false);
	free(b.s);
	free(x);
	free(y);
}

/* Non-finite logits: scanned as they arrive (the first one found early is
 * the reply's), or let through under nan_policy "propagate". */
Test(early, non_finite_early_scan_and_propagate, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 13);
	int32_t *y = labels(ROWS, C, 8);
	buf b = {0};
	x[(size_t)5 * C + 3] = INFINITY; /* flat index 163, in the first rows */
	x[(size_t)(ROWS - 40) * C] = NAN;
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 422, "flat index 163", NEVER, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	x[(size_t)5 * C + 3] = 0;
	x[(size_t)(ROWS / 2) * C + 7] = -INFINITY; /* index 131079 */
	sparse_body(&b, x, y, NULL, NULL, false);
	check(&b, 422, "flat index 131079", NEVER, false);
	free(b.s);
	memset(&b, 0, sizeof b);
	sparse_body(&b, x, y, "\"nan_policy\": \"propagate\", ", NULL, false);
	check(&b, 200, "\"loss\":null", HOLDS, false);
	free(b.s);
	free(x);
	free(y);
}

Test(early, probability_out_of_range_late, .timeout = 240)
{
	enum { R = 4096 };
	float *p = probs(R, C, 11);
	int32_t *y = labels(R, C, 12);
	char shape[64];
	buf b = {0};
	p[(size_t)(R - 10) * C + 4] = 1.5f; /* in the last task's rows */
	p[(size_t)(R / 2) * C + 1] = -0.25f;
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", ");
	snprintf(shape, sizeof shape, "[%d]", R);
	tensor(&b, "y_true", shape, "int32", y, R * sizeof *y);
	puts_(&b, ",\n ");
	snprintf(shape, sizeof shape, "[%d, %d]", R, C);
	tensor(&b, "y_pred", shape, "float32", p, (size_t)R * C * sizeof *p);
	puts_(&b, "}");
	check(&b, 422, "/y_pred/", HOLDS, false);
	free(b.s);
	free(p);
	free(y);
}

Test(early, bad_base64_late_and_escape, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 10);
	int32_t *y = labels(ROWS, C, 6);
	buf b = {0};
	sparse_body(&b, x, y, NULL, NULL, false);
	size_t end = b.n - 3; /* the y_pred string's last characters: "...\"}}" */
	char *s = malloc(b.n + 1);
	memcpy(s, b.s, b.n + 1);
	b.s[end - 100] = '*'; /* outside the alphabet, near the end */
	check(&b, 422, "bad_base64", NEVER, false);
	memcpy(b.s, s, b.n + 1);
	b.s[end - 5000] = '\\'; /* an escape: the string is text after all */
	check(&b, -1, NULL, NEVER, false);
	free(s);
	free(b.s);
	free(x);
	free(y);
}

/* A body cut short anywhere (the request's end came early): the buffered
 * path's error, and no early work used. */
Test(early, cut_short, .timeout = 240)
{
	float *x = logits((size_t)ROWS * C, 12);
	int32_t *y = labels(ROWS, C, 7);
	api_ctx ctx = limits;
	buf b = {0};
	uint32_t seed = 77;
	sparse_body(&b, x, y, NULL, NULL, false);
	for (int r = 0; r < 40; r++) {
		size_t n = r < 3 ? b.n - 1 - (size_t)r : rnd(&seed) % b.n;
		size_t cuts[8];
		api_reply want = {0}, got = {0};
		bool used, planned;
		int64_t ran;
		for (int i = 0; i < 8; i++)
			cuts[i] = (size_t)(i + 1) * n / 9;
		api_loss(&want, &ctx, b.s, n);
		fed(&got, &used, &ran, &planned, b.s, n, cuts, 8, 100, (uint32_t)r);
		expect_same(&want, &got, "cut at", n);
		cr_assert(!used, "cut at %zu: the early work was used", n);
		cr_assert_neq(want.status, 200);
		api_reply_free(&want);
		api_reply_free(&got);
	}
	free(b.s);
	free(x);
	free(y);
}
