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
 * The same for y_pred as nested JSON arrays (the guess taken on the rows
 * lifted so far; ragged rows and bad values never used), and the plan's
 * partial tables counted in a caller's budget (api_loss_early_budget).
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

/* One body's trial: the whole body's reply, what the guess must do, and
 * the tasks run early over its splits. */
typedef struct trial {
	const buf *b;
	api_reply want;
	int holds;
	int64_t early_tasks;
} trial;

/* The body fed in the chunks cut at cuts[0..nc): the reply must be the
 * whole body's, and the early work used (HOLDS; when `always_guessed` is
 * false, only if a guess was taken: a chunk may hold a whole string) or
 * not (NEVER). `what` and `at` name the split in messages. */
static void split(trial *t, const size_t *cuts, size_t nc, unsigned step_pct, uint32_t seed,
                  bool always_guessed, const char *what, size_t at)
{
	api_reply got = {0};
	bool used, planned;
	int64_t ran;
	fed(&got, &used, &ran, &planned, t->b->s, t->b->n, cuts, nc, step_pct, seed);
	expect_same(&t->want, &got, what, at);
	api_reply_free(&got);
	if (t->holds == HOLDS && (always_guessed || planned))
		cr_assert(used, "%s %zu: the early work was not used", what, at);
	if (t->holds == NEVER)
		cr_assert(!used, "%s %zu: the early work was used", what, at);
	t->early_tasks += ran;
}

/*
 * Whole vs fed in chunks of several sizes and random cuts, stepping every
 * chunk or a few. `holds`: HOLDS when the early work must be used (and
 * some task must have run early over the splits), NEVER when it must not.
 * `bytewise`: also fed one byte at a time.
 */
static void check(const buf *b, int expect_status, const char *expect_code, int holds,
                  bool bytewise)
{
	static const size_t steps[] = {7, 61, 1000, 4093, 65536, 300001};
	api_ctx ctx = limits;
	trial t = {b, {0}, holds, 0};
	size_t n = b->n, maxcuts = n + 1;
	size_t *cuts = malloc(maxcuts * sizeof *cuts);
	uint32_t seed = 12345;

	api_loss(&t.want, &ctx, b->s, n);
	if (expect_status > 0)
		cr_assert_eq(t.want.status, expect_status, "whole body: %d %.300s", t.want.status,
		             t.want.body);
	if (expect_code)
		cr_assert(strstr(t.want.body, expect_code), "whole body: %.300s", t.want.body);

	for (size_t k = 0; k < sizeof steps / sizeof steps[0] + (bytewise ? 1 : 0); k++) {
		size_t step = k < sizeof steps / sizeof steps[0] ? steps[k] : 1, nc = 0;
		for (size_t at = step; at < n; at += step)
			cuts[nc++] = at;
		for (unsigned pct = 100; pct > 0; pct = pct == 100 ? 30 : 0)
			split(&t, cuts, nc, pct, (uint32_t)k, true, "chunks of", step);
	}
	for (int r = 0; r < 24; r++) {
		size_t nc = 1 + rnd(&seed) % 40;
		for (size_t i = 0; i < nc; i++)
			cuts[i] = rnd(&seed) % (n + 1);
		for (size_t i = 1; i < nc; i++) /* sort (insertion) */
			for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
				size_t tmp = cuts[j];
				cuts[j] = cuts[j - 1];
				cuts[j - 1] = tmp;
			}
		split(&t, cuts, nc, r % 2 ? 100 : 50, (uint32_t)r, false, "random cuts, run",
		      (size_t)r);
	}
	if (holds == HOLDS)
		cr_assert_gt(t.early_tasks, 0, "no task ever ran before the body's end");
	api_reply_free(&t.want);
	free(cuts);
}

/* ---- bodies ------------------------------------------------------------------------- */

#define ROWS 8192
#define C    32 /* 262144 logits: 8 tasks */

/* A sparse case's tensors: ROWS x C logits and ROWS labels, from seeds. */
typedef struct sparse_data {
	float *x;
	int32_t *y;
} sparse_data;

static sparse_data sparse_data_new(uint32_t xseed, uint32_t yseed)
{
	return (sparse_data){logits((size_t)ROWS * C, xseed), labels(ROWS, C, yseed)};
}

static void sparse_data_free(sparse_data *d)
{
	free(d->x);
	free(d->y);
}

/* Where a sparse body departs from the plain one: `head` after the
 * loss's keys, `tail` before the final '}', y_pred before y_true. */
typedef struct layout {
	const char *head, *tail;
	bool pred_first;
} layout;

static const layout plain = {0};

/* A sparse CE from logits body of d; new (the caller frees .s). */
static buf sparse_body(const sparse_data *d, layout l)
{
	char shape[64];
	buf b = {0};
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, ");
	puts_(&b, l.head ? l.head : "");
	snprintf(shape, sizeof shape, "[%d, %d]", ROWS, C);
	if (l.pred_first) {
		tensor(&b, "y_pred", shape, "float32", d->x, (size_t)ROWS * C * sizeof *d->x);
		puts_(&b, ",\n ");
	}
	snprintf(shape, sizeof shape, "[%d]", ROWS);
	tensor(&b, "y_true", shape, "int32", d->y, ROWS * sizeof *d->y);
	if (!l.pred_first) {
		puts_(&b, ",\n ");
		snprintf(shape, sizeof shape, "[%d, %d]", ROWS, C);
		tensor(&b, "y_pred", shape, "float32", d->x, (size_t)ROWS * C * sizeof *d->x);
	}
	puts_(&b, l.tail ? l.tail : "");
	puts_(&b, "}");
	return b;
}

/* The sparse body of d in layout l, checked as check() does. */
static void check_sparse(const sparse_data *d, layout l, int expect_status, const char *expect_code,
                         int holds)
{
	buf b = sparse_body(d, l);
	check(&b, expect_status, expect_code, holds, false);
	free(b.s);
}

Test(early, sparse_from_logits, .timeout = 240)
{
	sparse_data d = sparse_data_new(7, 3);
	buf b = sparse_body(&d, plain);
	check(&b, 200, "\"per_class\"", HOLDS, true); /* and fed byte by byte */
	free(b.s);
	sparse_data_free(&d);
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
	sparse_data d = sparse_data_new(8, 2);
	/* y_true after y_pred */
	check_sparse(&d, (layout){.pred_first = true}, 200, NULL, NEVER);
	/* a key after it */
	check_sparse(&d, (layout){.tail = ", \"per_class\": false"}, 200, NULL, NEVER);
	/* one that changes the loss */
	check_sparse(&d, (layout){.tail = ", \"axis\": 0"}, 422, NULL, NEVER);
	sparse_data_free(&d);
}

Test(early, bad_values_early_and_late, .timeout = 240)
{
	sparse_data d = sparse_data_new(9, 5);
	d.y[ROWS - 3] = C; /* a label out of range in the last rows */
	check_sparse(&d, plain, 422, "/y_true/8189", HOLDS);
	d.y[70] = -7; /* and one in the first task: the smallest index is reported */
	check_sparse(&d, plain, 422, "/y_true/70", HOLDS);
	d.y[70] = 0;
	d.y[ROWS - 3] = 0;
	d.x[(size_t)(ROWS - 2) * C + 5] = NAN; /* a non-finite logit in the last row */
	check_sparse(&d, plain, 422, "non_finite", NEVER);
	sparse_data_free(&d);
}

/* Non-finite logits: scanned as they arrive (the first one found early is
 * the reply's), or let through under nan_policy "propagate". */
Test(early, non_finite_early_scan_and_propagate, .timeout = 240)
{
	sparse_data d = sparse_data_new(13, 8);
	d.x[(size_t)5 * C + 3] = INFINITY; /* flat index 163, in the first rows */
	d.x[(size_t)(ROWS - 40) * C] = NAN;
	check_sparse(&d, plain, 422, "flat index 163", NEVER);
	d.x[(size_t)5 * C + 3] = 0;
	d.x[(size_t)(ROWS / 2) * C + 7] = -INFINITY; /* index 131079 */
	check_sparse(&d, plain, 422, "flat index 131079", NEVER);
	check_sparse(&d, (layout){.head = "\"nan_policy\": \"propagate\", "}, 200, "\"loss\":null",
	             HOLDS);
	sparse_data_free(&d);
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
	sparse_data d = sparse_data_new(10, 6);
	buf b = sparse_body(&d, plain);
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
	sparse_data_free(&d);
}

/* Body b cut short at `rounds` places (its last three bytes, then at
 * random; the request's end came early): the buffered path's error, and no
 * early work used. */
static void check_cut_short(const buf *b, int rounds, uint32_t seed)
{
	api_ctx ctx = limits;
	for (int r = 0; r < rounds; r++) {
		size_t n = r < 3 ? b->n - 1 - (size_t)r : rnd(&seed) % b->n;
		size_t cuts[8];
		api_reply want = {0}, got = {0};
		bool used, planned;
		int64_t ran;
		for (int i = 0; i < 8; i++)
			cuts[i] = (size_t)(i + 1) * n / 9;
		api_loss(&want, &ctx, b->s, n);
		fed(&got, &used, &ran, &planned, b->s, n, cuts, 8, 100, (uint32_t)r);
		expect_same(&want, &got, "cut at", n);
		cr_assert(!used, "cut at %zu: the early work was used", n);
		cr_assert_neq(want.status, 200);
		api_reply_free(&want);
		api_reply_free(&got);
	}
}

/* A body cut short anywhere (the request's end came early). */
Test(early, cut_short, .timeout = 240)
{
	sparse_data d = sparse_data_new(12, 7);
	buf b = sparse_body(&d, plain);
	check_cut_short(&b, 40, 77);
	free(b.s);
	sparse_data_free(&d);
}

/* ---- JSON number arrays --------------------------------------------------------------- */

/*
 * y_pred as nested arrays of JSON numbers: body.c lifts its rows as they
 * close, and the guess is taken on the rows read so far (their count from
 * y_true's, or y_pred's "shape"). Same comparison as above.
 */

/* "key": rows x c values of x as nested arrays (a newline every few rows,
 * as a pretty-printer would); no key: the array alone */
static void json_rows(buf *b, const char *key, const float *x, size_t rows, size_t c)
{
	char t[64];
	if (key) {
		snprintf(t, sizeof t, "\"%s\": ", key);
		puts_(b, t);
	}
	puts_(b, "[");
	for (size_t r = 0; r < rows; r++) {
		puts_(b, r ? (r % 7 ? "," : ",\n  ") : "");
		puts_(b, "[");
		for (size_t k = 0; k < c; k++) {
			snprintf(t, sizeof t, "%s%.9g", k ? "," : "", (double)x[r * c + k]);
			puts_(b, t);
		}
		puts_(b, "]");
	}
	puts_(b, "]");
}

/* "key": [n integers] */
static void json_labels(buf *b, const char *key, const int32_t *y, size_t n)
{
	char t[64];
	snprintf(t, sizeof t, "\"%s\": [", key);
	puts_(b, t);
	for (size_t i = 0; i < n; i++) {
		snprintf(t, sizeof t, "%s%d", i ? "," : "", (int)y[i]);
		puts_(b, t);
	}
	puts_(b, "]");
}

/* sparse_body's request with y_true a JSON array and y_pred (rows, C)
 * nested arrays (rows of d's, at most ROWS); new (the caller frees .s). */
static buf json_sparse_rows(const sparse_data *d, layout l, size_t rows)
{
	buf b = {0};
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, ");
	puts_(&b, l.head ? l.head : "");
	if (l.pred_first) {
		json_rows(&b, "y_pred", d->x, rows, C);
		puts_(&b, ",\n ");
	}
	json_labels(&b, "y_true", d->y, ROWS);
	if (!l.pred_first) {
		puts_(&b, ",\n ");
		json_rows(&b, "y_pred", d->x, rows, C);
	}
	puts_(&b, l.tail ? l.tail : "");
	puts_(&b, "}");
	return b;
}

static buf json_sparse_body(const sparse_data *d, layout l)
{
	return json_sparse_rows(d, l, ROWS);
}

/* The JSON sparse body of d in layout l, checked as check() does. */
static void check_json_sparse(const sparse_data *d, layout l, int expect_status,
                              const char *expect_code, int holds)
{
	buf b = json_sparse_body(d, l);
	check(&b, expect_status, expect_code, holds, false);
	free(b.s);
}

Test(early_json, sparse_from_logits, .timeout = 240)
{
	sparse_data d = sparse_data_new(31, 32);
	check_json_sparse(&d, plain, 200, "\"per_class\"", HOLDS);
	sparse_data_free(&d);
}

/* y_pred a tensor object ({"dtype", "shape", "data": nested arrays}) after
 * a base64 y_true, with weights and extras: the rows' count from its shape */
Test(early_json, tensor_object_dtype_shape_extras, .timeout = 240)
{
	sparse_data d = sparse_data_new(33, 34);
	double cw[C];
	char shape[80];
	buf b = {0};
	for (int c = 0; c < C; c++)
		cw[c] = 0.5 + c / 8.0;
	for (int i = 0; i < ROWS; i += 13)
		d.y[i] = -1; /* ignored */
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, "
	          "\"ignore_index\": -1, \"top_k\": [1, 3], \"calibration\": {\"bins\": 5},\n ");
	numbers(&b, "class_weight", cw, C);
	puts_(&b, ",\n ");
	snprintf(shape, sizeof shape, "[%d]", ROWS);
	tensor(&b, "y_true", shape, "int32", d.y, ROWS * sizeof *d.y);
	snprintf(shape, sizeof shape,
	         ",\n \"y_pred\": {\"dtype\": \"float32\", \"shape\": [%d, %d], ", ROWS, C);
	puts_(&b, shape);
	json_rows(&b, "data", d.x, ROWS, C);
	puts_(&b, "}}");
	check(&b, 200, "\"top_k_accuracy\"", HOLDS, false);
	free(b.s);
	sparse_data_free(&d);
}

/* y_true as nested arrays of y_pred's shape: the first guess (on it) fails */
Test(early_json, categorical_both_nested, .timeout = 240)
{
	enum { R = 4096 };
	float *t = probs(R, C, 35), *p = probs(R, C, 36);
	buf b = {0};
	puts_(&b, "{\"loss\": \"categorical_crossentropy\", \"label_smoothing\": 0.1,\n ");
	json_rows(&b, "y_true", t, R, C);
	puts_(&b, ",\n ");
	json_rows(&b, "y_pred", p, R, C);
	puts_(&b, "}");
	check(&b, 200, "\"per_class\"", HOLDS, false);
	free(b.s);
	free(t);
	free(p);
}

/* (B, C, L) with the class axis 1 (PyTorch's cross_entropy): a row is a
 * (C, L) matrix */
Test(early_json, rank3_rows, .timeout = 240)
{
	enum { B = 4096, K = 8, L = 8 };
	float *x = logits((size_t)B * K * L, 37);
	int32_t *y = labels((size_t)B * L, K, 38);
	buf b = {0};
	char t[32];
	puts_(&b, "{\"loss\": \"cross_entropy\", \"y_true\": [");
	for (int i = 0; i < B; i++) {
		puts_(&b, i ? ",[" : "[");
		for (int l = 0; l < L; l++) {
			snprintf(t, sizeof t, "%s%d", l ? "," : "", (int)y[i * L + l]);
			puts_(&b, t);
		}
		puts_(&b, "]");
	}
	puts_(&b, "],\n \"y_pred\": [");
	for (int i = 0; i < B; i++) {
		puts_(&b, i ? ",\n" : "");
		json_rows(&b, NULL, x + (size_t)i * K * L, K, L);
	}
	puts_(&b, "]}");
	check(&b, 200, "\"per_class\"", HOLDS, false);
	free(b.s);
	free(x);
	free(y);
}

Test(early_json, guess_cannot_hold, .timeout = 240)
{
	sparse_data d = sparse_data_new(39, 40);
	check_json_sparse(&d, (layout){.pred_first = true}, 200, NULL, NEVER); /* y_true after */
	check_json_sparse(&d, (layout){.tail = ", \"per_class\": false"}, 200, NULL, NEVER);
	/* one row fewer than y_true's labels: the guessed count is wrong */
	buf b = json_sparse_rows(&d, plain, ROWS - 1);
	check(&b, 422, "shape_mismatch", NEVER, false);
	free(b.s);
	/* not started early */
	check_json_sparse(&d, (layout){.head = "\"reduction\": \"none\", "}, 200,
	                  "\"per_position\"", NEVER);
	sparse_data_free(&d);
}

/* The plain JSON body of d with `bad` written over the value at flat
 * index at of y_pred (its text replaced; the rest of the body as it was). */
static buf json_bad_value(const sparse_data *d, size_t at, const char *bad)
{
	buf b = json_sparse_body(d, plain), out = {0};
	const char *p = strstr(b.s, "\"y_pred\": [") + 11;
	for (size_t k = 0; k <= at; k++) { /* to the start of value `at` */
		while (*p == '[' || *p == ',' || *p == '\n' || *p == ' ' || *p == ']')
			p++;
		if (k < at)
			while (*p != ',' && *p != ']')
				p++;
	}
	const char *q = p;
	while (*q != ',' && *q != ']')
		q++;
	put(&out, b.s, (size_t)(p - b.s));
	puts_(&out, bad);
	puts_(&out, q);
	free(b.s);
	return out;
}

/* Ragged rows, bad values: the buffered path's error, early work never used
 * (the guess and its tasks run on the rows before, and are dropped). */
Test(early_json, ragged_and_bad_values, .timeout = 240)
{
	static const struct {
		size_t at;
		const char *bad, *code;
	} cases[] = {
	        {(size_t)(ROWS - 5) * C + 3, "1,2", "shape_mismatch"}, /* a row too long, late */
	        {(size_t)6000 * C + 31, "[1]", "shape_mismatch"},      /* a number an array */
	        {(size_t)(ROWS - 2) * C, "\"x\"", "bad_type"},         /* a string */
	        {(size_t)5000 * C + 9, "null", "bad_type"},
	        {(size_t)7000 * C + 1, "1e999", "malformed_json"}, /* overflow: jansson's error */
	        {(size_t)4000 * C + 2, "01", "malformed_json"},
	};
	sparse_data d = sparse_data_new(41, 42);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		buf b = json_bad_value(&d, cases[i].at, cases[i].bad);
		check(&b, -1, cases[i].code, NEVER, false);
		free(b.s);
	}
	/* a row one short (its last value and comma gone): ragged */
	buf b = json_bad_value(&d, (size_t)(ROWS - 100) * C + C - 1, "");
	char *hole = strstr(b.s, ",]");
	cr_assert_not_null(hole);
	memmove(hole, hole + 1, strlen(hole + 1) + 1);
	b.n--;
	check(&b, 422, "shape_mismatch", NEVER, false);
	free(b.s);
	sparse_data_free(&d);
}

/* Bad labels late and early: found by the tasks run early or the rest, the
 * same error as buffered. */
Test(early_json, bad_labels_early_and_late, .timeout = 240)
{
	sparse_data d = sparse_data_new(43, 44);
	d.y[ROWS - 3] = C;
	check_json_sparse(&d, plain, 422, "/y_true/8189", HOLDS);
	d.y[70] = -7;
	check_json_sparse(&d, plain, 422, "/y_true/70", HOLDS);
	sparse_data_free(&d);
}

/* Rows kept as text: shorter than 16 values (past the 256 KiB of values
 * held unlifted, or lifted only whole at the end), or past 32,768 numbers
 * (that slack): never started early, same replies. */
Test(early_json, rows_kept_as_text, .timeout = 240)
{
	static const struct {
		size_t rows, c;
	} shapes[] = {{32768, 8}, {3000, 8}, {8, 40000}};
	for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
		size_t r = shapes[i].rows, c = shapes[i].c;
		float *x = logits(r * c, 45);
		int32_t *y = labels(r, (int)c, 46);
		buf b = {0};
		puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, "
		          "\"per_class\": false, ");
		json_labels(&b, "y_true", y, r);
		puts_(&b, ",\n ");
		json_rows(&b, "y_pred", x, r, c);
		puts_(&b, "}");
		check(&b, 200, "\"loss\"", NEVER, false);
		free(b.s);
		free(x);
		free(y);
	}
}

/* A JSON body cut short anywhere. */
Test(early_json, cut_short, .timeout = 240)
{
	sparse_data d = sparse_data_new(49, 50);
	buf b = json_sparse_body(&d, plain);
	check_cut_short(&b, 30, 78);
	free(b.s);
	sparse_data_free(&d);
}

/* ---- the partial tables in the caller's budget ----------------------------------------- */

typedef struct ledger {
	size_t room, taken, given;
	int takes, gives, asks; /* asks: takes refused too */
} ledger;

static bool ledger_take(void *arg, size_t n)
{
	ledger *l = arg;
	l->asks++;
	if (n > l->room - (l->taken - l->given))
		return false;
	l->taken += n;
	l->takes++;
	return true;
}

static void ledger_give(void *arg, size_t n)
{
	ledger *l = arg;
	l->given += n;
	l->gives++;
}

/* body fed in 64 KiB chunks, a guess on the first array or string with
 * GUESS_MIN bytes, its tables counted in l: the reply, and whether it used
 * the early work. Checks that the tables are given back when the answer is
 * made (before api_loss_early_free). */
static bool fed_budget(api_reply *out, const buf *body, ledger *l)
{
	api_ctx ctx = limits;
	size_t n = body->n, cap = api_body_arena_size(n), id;
	void *arena = aligned_alloc(64, (cap + 63) / 64 * 64);
	api_body *b = NULL;
	api_early *e = NULL;
	int64_t ran, tasks;
	bool tried = false;

	cr_assert_not_null(arena);
	cr_assert_eq(api_body_new(&b, arena, cap, n, ctx.max_depth), 0);
	for (size_t at = 0; at < n; at += 65536) {
		cr_assert_eq(api_body_feed(b, body->s + at, n - at < 65536 ? n - at : 65536), 0);
		size_t ready = api_body_decoding(b, &id);
		if (!tried && ready != SIZE_MAX && ready >= GUESS_MIN) {
			tried = true;
			cr_assert_eq(api_loss_early_new(&e, &ctx, b), 0);
			api_loss_early_budget(e, ledger_take, ledger_give, l);
			if (api_loss_early_prepare(e)) {
				cr_assert_eq(l->taken, l->given, "a plan refused keeps nothing");
				api_loss_early_free(e);
				e = NULL;
				continue;
			}
			cr_assert_eq(l->takes, 1);
			cr_assert_gt(l->taken, 0);
		}
		if (e && ready != SIZE_MAX)
			while (api_loss_early_step(e, ready))
				;
	}
	api_loss_sent_early(out, &ctx, b, e);
	bool used = api_loss_early_used(e, &ran, &tasks);
	cr_assert_eq(l->given, l->taken, "tables given back with the answer");
	api_loss_early_free(e);
	cr_assert_eq(l->given, l->taken);
	cr_assert_eq(l->gives, l->takes);
	api_body_free(b);
	free(arena);
	return used;
}

Test(early_budget, tables_taken_before_and_given_back)
{
	sparse_data d = sparse_data_new(51, 52);
	layout conf = {.head = "\"confusion_matrix\": true, "};
	api_ctx ctx = limits;
	api_reply want = {0}, got = {0};
	buf bodies[2] = {json_sparse_body(&d, conf), sparse_body(&d, conf)};
	for (int i = 0; i < 2; i++) {
		api_loss(&want, &ctx, bodies[i].s, bodies[i].n);
		cr_assert_eq(want.status, 200);
		ledger roomy = {(size_t)1 << 30, 0, 0, 0, 0, 0};
		cr_assert(fed_budget(&got, &bodies[i], &roomy), "body %d: not used", i);
		cr_assert_eq(roomy.takes, 1, "body %d", i);
		expect_same(&want, &got, "roomy budget, body", (size_t)i);
		api_reply_free(&got);
		/* no room for the tables: not started early, the same reply */
		ledger tight = {roomy.taken - 1, 0, 0, 0, 0, 0};
		cr_assert_not(fed_budget(&got, &bodies[i], &tight), "body %d: used", i);
		cr_assert_eq(tight.asks, 1);
		cr_assert_eq(tight.takes, 0);
		expect_same(&want, &got, "tight budget, body", (size_t)i);
		api_reply_free(&got);
		api_reply_free(&want);
		free(bodies[i].s);
	}
	sparse_data_free(&d);
}
