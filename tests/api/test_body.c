/*
 * test_body.c - api/src/body.c: a body fed chunk by chunk (its long base64
 * strings decoded as they arrive) must be answered exactly as the whole
 * body is. Every body here goes through api_loss (or api_auc) whole, then
 * through api_body_feed + api_loss_sent split at every offset into two
 * chunks and cut into chunks of every size from 1 to 67 bytes (inside a
 * base64 group, inside a JSON escape, between a key and its ':'), and the
 * replies must be byte for byte the same: status, code, pointer, detail
 * (offsets, lines and columns included) or the loss figures.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "b64.h"
#include "mem.h"

#include "testbuf.h"

/* base64 of n float32 logits (deterministic), new */
static char *logits_b64(size_t n, uint32_t seed)
{
	float *x = malloc(n * sizeof *x);
	cr_assert_not_null(x);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = (float)((int)(seed >> 8) % 2000 - 1000) / 250.0f;
	}
	char *s = api__b64_encode(x, n * sizeof *x);
	free(x);
	cr_assert_not_null(s);
	return s;
}

static char *labels_b64(size_t n, int classes)
{
	int32_t *y = malloc(n * sizeof *y);
	for (size_t i = 0; i < n; i++)
		y[i] = (int32_t)((i * 7) % (size_t)classes);
	char *s = api__b64_encode(y, n * sizeof *y);
	free(y);
	return s;
}

/* A sparse CE request of (rows, classes) float32 logits; `pred` replaces
 * the logits' base64 text when not NULL; `tail` goes before the final '}'. */
static void ce_body(buf *b, int rows, int classes, const char *pred, const char *tail)
{
	char head[256];
	char *y = labels_b64((size_t)rows, classes);
	char *x = pred ? NULL : logits_b64((size_t)rows * (size_t)classes, 7);
	snprintf(head, sizeof head,
	         "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true,\n"
	         " \"y_true\": {\"shape\": [%d], \"dtype\": \"int32\", \"b64\": \"",
	         rows);
	puts_(b, head);
	puts_(b, y);
	snprintf(head, sizeof head,
	         "\"},\n \"y_pred\": {\"shape\": [%d, %d], \"dtype\": \"float32\", \"b64\": \"",
	         rows, classes);
	puts_(b, head);
	puts_(b, pred ? pred : x);
	puts_(b, "\"}");
	puts_(b, tail ? tail : "");
	puts_(b, "}");
	free(x);
	free(y);
}

/* ---- the comparison --------------------------------------------------------------- */

typedef void (*whole_fn)(api_reply *, const api_ctx *, const char *, size_t);
typedef void (*sent_fn)(api_reply *, const api_ctx *, api_body *);

static void expect_same(const api_reply *want, const api_reply *got, const char *what, size_t at)
{
	cr_assert_eq(got->status, want->status, "%s %zu: status %d, whole body %d (%s)", what, at,
	             got->status, want->status, got->body);
	cr_assert_eq(got->len, want->len, "%s %zu:\n got  %s\n want %s", what, at, got->body,
	             want->body);
	cr_assert(memcmp(got->body, want->body, want->len) == 0, "%s %zu:\n got  %s\n want %s",
	          what, at, got->body, want->body);
}

/* The body fed in the chunks cut at offsets cuts[0..ncuts), answered. */
static bool lifts;    /* the body being checked has a lifted string */
static bool misalign; /* the arena off a 64-byte boundary (lifted arrays are then copied) */
static api_ctx limits = API_CTX_INIT;

static void sent(api_reply *out, sent_fn fn, const char *s, size_t n, const size_t *cuts,
                 size_t ncuts)
{
	api_ctx ctx = limits;
	size_t cap = api_body_arena_size(n);
	char *block = aligned_alloc(64, (cap + 16 + 63) / 64 * 64);
	void *arena = block + (misalign ? 16 : 0);
	api_body *b = NULL;
	size_t from = 0;

	cr_assert_eq(api_body_new(&b, arena, cap, n, ctx.max_depth), 0);
	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : n;
		cr_assert_eq(api_body_feed(b, s + from, to - from), 0);
		from = to;
	}
	cr_assert_eq(api_body_len(b), n);
	/* the logits (>= 1280 bytes) went to the arena, not to the text */
	if (lifts)
		cr_assert_geq(api_body_held(b) - (size_t)0, (size_t)1280);
	fn(out, &ctx, b);
	api_body_free(b);
	free(block);
}

/* Whole vs split at every offset vs chunks of 1..67 bytes. */
static void check_both(whole_fn whole, sent_fn fn, const char *s, size_t n, const char *expect_code,
                       int expect_status)
{
	api_ctx ctx = limits;
	api_reply want = {0}, got = {0};
	size_t *cuts = malloc((n + 1) * sizeof *cuts);

	whole(&want, &ctx, s, n);
	cr_assert_eq(want.status, expect_status, "whole body: %d %s", want.status, want.body);
	if (expect_code)
		cr_assert(strstr(want.body, expect_code), "whole body: %s", want.body);
	sent(&got, fn, s, n, NULL, 0);
	expect_same(&want, &got, "one chunk", n);
	api_reply_free(&got);
	misalign = true;
	sent(&got, fn, s, n, NULL, 0);
	expect_same(&want, &got, "one chunk, arena off 64 bytes", n);
	api_reply_free(&got);
	misalign = false;
	for (size_t at = 0; at <= n; at += 1) {
		cuts[0] = at;
		sent(&got, fn, s, n, cuts, 1);
		expect_same(&want, &got, "split at", at);
		api_reply_free(&got);
	}
	for (size_t step = 1; step <= 67; step++) {
		size_t k = 0;
		for (size_t at = step; at < n; at += step)
			cuts[k++] = at;
		sent(&got, fn, s, n, cuts, k);
		expect_same(&want, &got, "chunks of", step);
		api_reply_free(&got);
	}
	api_reply_free(&want);
	free(cuts);
}

static void check(const buf *b, const char *code, int status)
{
	check_both(api_loss, api_loss_sent, b->s, b->n, code, status);
}

/* ---- bodies ------------------------------------------------------------------------- */

Test(body, valid_one_pad)
{
	buf b = {0};
	ce_body(&b, 16, 20, NULL, NULL); /* 1280 bytes: one '=' */
	lifts = true;
	check(&b, NULL, 200);
	lifts = false;
	free(b.s);
}

Test(body, valid_two_pads)
{
	buf b = {0};
	ce_body(&b, 4, 85, NULL, NULL); /* 1360 bytes: "==" */
	check(&b, NULL, 200);
	free(b.s);
}

Test(body, valid_no_pad_and_exactly_the_lift_size)
{
	buf b = {0};
	ce_body(&b, 8, 24, NULL, NULL); /* 768 bytes: 1024 characters */
	check(&b, NULL, 200);
	free(b.s);
	memset(&b, 0, sizeof b);
	ce_body(&b, 3, 85, NULL, NULL); /* 1020 bytes: 1360 characters, short y_true */
	check(&b, NULL, 200);
	free(b.s);
}

/* the logits' text with s[at] replaced by c (or with `ins` inserted at at) */
static char *edited(int rows, int classes, size_t at, const char *rep, size_t drop)
{
	char *x = logits_b64((size_t)rows * (size_t)classes, 7);
	size_t n = strlen(x);
	char *o = malloc(n + strlen(rep) + 1);
	memcpy(o, x, at);
	strcpy(o + at, rep);
	strcat(o, x + at + drop);
	free(x);
	return o;
}

Test(body, bad_characters)
{
	static const struct {
		size_t at;
		const char *rep;
		size_t drop;
		const char *code;
		int status;
	} cases[] = {
	        {1500, "!", 1, "bad_base64", 422},        /* in the middle */
	        {10, "!", 1, "bad_base64", 422},          /* in the stash */
	        {1500, "=", 1, "bad_base64", 422},        /* '=' not at the end */
	        {1500, "", 1, "bad_base64", 422},         /* not in groups of 4 */
	        {1500, "AAAA", 0, "shape_mismatch", 422}, /* a group too many */
	        {1100, "!", 1, "bad_base64", 422},
	        {1705, "=", 1, NULL, 0},                  /* 1708 chars: "=X=" at the end */
	        {1706, "=", 1, NULL, 0},                  /* "==": a byte short */
	        {1500, "\\u0041", 1, NULL, 0},            /* an escape: kept as text */
	        {1500, "\\/", 1, NULL, 0},                /* "\/" is "/": valid */
	        {1500, "\xc3\xa9", 1, "bad_base64", 422}, /* UTF-8 */
	        {1500, "\x01", 1, "malformed_json", 400}, /* a control character */
	        {1500, "\xff", 1, "malformed_json", 400}, /* not UTF-8 */
	        {1023, "\\u0041", 1, NULL, 0},            /* at the stash's end */
	        {1024, "\\u0041", 1, NULL, 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *x = edited(16, 20, cases[i].at, cases[i].rep, cases[i].drop);
		buf b = {0};
		ce_body(&b, 16, 20, x, NULL);
		api_ctx ctx = API_CTX_INIT;
		api_reply r = {0};
		api_loss(&r, &ctx, b.s, b.n);
		int st = cases[i].status ? cases[i].status : r.status;
		api_reply_free(&r);
		check(&b, cases[i].code, st);
		free(b.s);
		free(x);
	}
}

Test(body, escapes_after_a_bad_character)
{
	/* '!' at 1100, then an escape: the text is rebuilt around the '!' */
	char *x = edited(16, 20, 1100, "!", 1);
	char *y = malloc(strlen(x) + 8);
	memcpy(y, x, 1300);
	strcpy(y + 1300, "\\u0041");
	strcat(y, x + 1301);
	buf b = {0};
	ce_body(&b, 16, 20, y, NULL);
	check(&b, "bad_base64", 422);
	free(b.s);
	free(x);
	free(y);
	/* an escape that unescapes to the padding */
	x = logits_b64(16 * 20, 7); /* ends in '=' */
	size_t n = strlen(x);
	x[n - 1] = '\0';
	b = (buf){0};
	char *z = malloc(n + 8);
	sprintf(z, "%s\\u003d", x);
	ce_body(&b, 16, 20, z, NULL);
	check(&b, NULL, 200);
	free(b.s);
	free(x);
	free(z);
}

Test(body, json_errors_after_a_lifted_string)
{
	static const char *tails[] = {
	        ",\n \"x\": [1, 2,]",     /* malformed, line 4 */
	        ", \"x\": tru",           /* same line as the string */
	        ", \"y_true\": 1",        /* duplicate key */
	        ", \"s\": \"a\\u0000b\"", /* \u0000 in a string */
	        ", \"d\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
	        "[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	        ", \"z\": ]", /* a bracket that closes nothing */
	        ", \"nan_policy\": \"raise\", \"x\": {\"shape\": [2], \"b64\": \"AAAAAAAAAAA=\"}",
	};
	static const int statuses[] = {400, 400, 400, 400, 400, 400, 422};
	for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		buf b = {0};
		ce_body(&b, 16, 20, NULL, tails[i]);
		check(&b, NULL, statuses[i]);
		free(b.s);
	}
}

Test(body, nul_byte_after_a_lifted_string)
{
	buf b = {0};
	ce_body(&b, 16, 20, NULL, ", \"q\": 1");
	b.s[b.n - 3] = '\0'; /* the '1' ... a NUL, after the lifted strings */
	check(&b, "malformed_json", 400);
	free(b.s);
}

Test(body, unterminated_and_truncated)
{
	buf b = {0};
	ce_body(&b, 16, 20, NULL, NULL);
	/* cut inside the logits' string, and inside the labels' */
	for (size_t cut = b.n - 1000; cut > 0; cut = cut > 400 ? cut - 400 : 0)
		check_both(api_loss, api_loss_sent, b.s, cut, NULL, 400);
	free(b.s);
}

Test(body, not_lifted_places)
{
	char *x = logits_b64(16 * 20, 7);
	/* each is the text before the string and the text after it */
	const char *fmt[][2] = {
	        /* the key escaped: not "b64" to the lifting pass */
	        {"{\"loss\": \"mse\", \"y_true\": 1, \"y_pred\": {\"shape\": [320], "
	         "\"dtype\": \"float32\", \"b\\u0036\\u0034\": \"",
	         "\"}}"},
	        /* in an array */
	        {"{\"loss\": \"mse\", \"y_true\": [\"b64\", \"", "\"], \"y_pred\": 1}"},
	        /* after a bracket that closes an object: nothing is lifted */
	        {"{\"loss\": \"mse\"], \"y_pred\": {\"b64\": \"", "\"}}"},
	        /* a key, not a value */
	        {"{\"loss\": \"mse\", \"y_pred\": {\"b64\": 1, \"", "\": 2}}"},
	        /* "b64" then a ',' then ':' (bad JSON, but the lifting pass lifts it) */
	        {"{\"loss\": \"mse\", \"y_pred\": {\"b64\", : \"", "\"}}"},
	        /* at the top */
	        {"\"", "\""},
	        {"[\"", "\"]"},
	};
	for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
		buf b = {0};
		puts_(&b, fmt[i][0]);
		puts_(&b, x);
		puts_(&b, fmt[i][1]);
		api_ctx ctx = API_CTX_INIT;
		api_reply r = {0};
		api_loss(&r, &ctx, b.s, b.n);
		int st = r.status;
		api_reply_free(&r);
		check(&b, NULL, st);
		free(b.s);
	}
	free(x);
}

Test(body, numbers_and_strings_lifted_together)
{
	/* y_true as a JSON array (lifted by packed.c at the end), y_pred as
	 * base64 (decoded as it arrives), then an error: its position goes
	 * back through both */
	char *x = logits_b64(16 * 20, 7);
	buf b = {0};
	puts_(&b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true, "
	          "\"y_true\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], "
	          "\"y_pred\": {\"shape\": [16, 20], \"dtype\": \"float32\", \"b64\": \"");
	puts_(&b, x);
	puts_(&b, "\"}, \"w\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}");
	check(&b, "unknown_field", 422);
	b.s[b.n - 1] = ','; /* malformed: at the very end */
	check(&b, "malformed_json", 400);
	free(b.s);
	free(x);
}

Test(body, non_finite_and_dtype)
{
	float nanv[320];
	for (int i = 0; i < 320; i++)
		nanv[i] = i == 300 ? (float)NAN : 0.5f;
	char *x = api__b64_encode(nanv, sizeof nanv);
	buf b = {0};
	ce_body(&b, 16, 20, x, NULL);
	check(&b, "non_finite", 422);
	free(b.s);
	b = (buf){0};
	ce_body(&b, 16, 20, x, ", \"nan_policy\": \"propagate\"");
	check(&b, NULL, 200);
	free(b.s);
	free(x);
}

Test(body, heads_and_auc)
{
	char *x = logits_b64(16 * 20, 7);
	char *y = labels_b64(16, 20);
	buf b = {0};
	puts_(&b, "{\"heads\": [{\"loss\": \"cross_entropy\", \"y_true\": {\"shape\": [16], "
	          "\"dtype\": \"int32\", \"b64\": \"");
	puts_(&b, y);
	puts_(&b, "\"}, \"y_pred\": {\"shape\": [16, 20], \"dtype\": \"float32\", \"b64\": \"");
	puts_(&b, x);
	puts_(&b,
	      "\"}}, {\"loss\": \"mse\", \"y_true\": {\"shape\": [320], \"dtype\": \"float32\", "
	      "\"b64\": \"");
	puts_(&b, x);
	puts_(&b, "\"}, \"y_pred\": {\"shape\": [320], \"dtype\": \"float32\", \"b64\": \"");
	puts_(&b, x);
	puts_(&b, "\"}}]}");
	check(&b, NULL, 200);
	free(b.s);

	/* AUC of 400 float32 scores against 0/1 labels, both base64 */
	float sc[400];
	uint8_t lab[400];
	for (int i = 0; i < 400; i++) {
		sc[i] = (float)((i * 37) % 101) / 101.0f;
		lab[i] = (uint8_t)((i * 13) % 3 == 0);
	}
	char *s64 = api__b64_encode(sc, sizeof sc), *l64 = api__b64_encode(lab, sizeof lab);
	b = (buf){0};
	puts_(&b, "{\"y_true\": {\"shape\": [400], \"dtype\": \"uint8\", \"b64\": \"");
	puts_(&b, l64);
	puts_(&b, "\"}, \"y_score\": {\"shape\": [400], \"dtype\": \"float32\", \"b64\": \"");
	puts_(&b, s64);
	puts_(&b, "\"}}");
	check_both(api_auc, api_auc_sent, b.s, b.n, NULL, 200);
	free(b.s);
	free(s64);
	free(l64);
	free(x);
	free(y);
}

/* ---- number arrays ------------------------------------------------------------------ */

/*
 * JSON logits of (rows, classes) as nested arrays; `sep` goes after each
 * row's ',' (a newline and indentation make it pretty-printed), and the
 * number token k (row-major) is replaced by `bad` when not NULL.
 */
static void json_logits(buf *b, int rows, int classes, const char *sep, long k, const char *bad)
{
	uint32_t seed = 11;
	char num[32];
	puts_(b, "[");
	for (int r = 0; r < rows; r++) {
		puts_(b, r ? sep : "");
		puts_(b, "[");
		for (int c = 0; c < classes; c++) {
			seed = seed * 1664525u + 1013904223u;
			long at = (long)r * classes + c;
			if (bad && at == k)
				snprintf(num, sizeof num, "%s", bad);
			else
				snprintf(num, sizeof num, "%.7g",
				         (double)((int)(seed >> 8) % 20000 - 10000) / 2500.0);
			puts_(b, c ? ", " : "");
			puts_(b, num);
		}
		puts_(b, "]");
		if (r + 1 < rows)
			puts_(b, ",");
	}
	puts_(b, "]");
}

/* A sparse CE request with JSON labels and logits of (rows, classes). */
static void json_ce(buf *b, int rows, int classes, const char *sep, long k, const char *bad,
                    const char *tail)
{
	char num[16];
	puts_(b, "{\"loss\": \"sparse_categorical_crossentropy\", \"from_logits\": true,\n"
	         " \"y_true\": [");
	for (int r = 0; r < rows; r++) {
		snprintf(num, sizeof num, "%s%d", r ? ", " : "", (r * 7) % classes);
		puts_(b, num);
	}
	puts_(b, "],\n \"y_pred\": ");
	json_logits(b, rows, classes, sep, k, bad);
	puts_(b, tail ? tail : "");
	puts_(b, "}");
}

Test(body, json_arrays_valid)
{
	static const char *seps[] = {"", "\n  ", " \r\n\t"};
	for (size_t i = 0; i < 3; i++) {
		buf b = {0};
		json_ce(&b, 12, 20, seps[i], -1, NULL, NULL);
		check(&b, NULL, 200);
		free(b.s);
	}
	/* rows of fewer than API__PACK_MIN values (kept as text until the
	 * whole closes), and exactly API__PACK_MIN */
	buf b = {0};
	json_ce(&b, 40, 3, "\n", -1, NULL, NULL);
	check(&b, NULL, 200);
	free(b.s);
	b = (buf){0};
	json_ce(&b, 6, 16, "\n", -1, NULL, NULL);
	check(&b, NULL, 200);
	free(b.s);
	/* three dimensions, per-sample weights and an unknown field after */
	b = (buf){0};
	puts_(&b, "{\"loss\": \"mse\", \"y_true\": [");
	for (int k = 0; k < 2; k++) {
		puts_(&b, k ? ",\n [" : "[");
		json_logits(&b, 3, 17, "\n   ", -1, NULL);
		puts_(&b, ",");
		json_logits(&b, 3, 17, "", -1, NULL);
		puts_(&b, "]");
	}
	puts_(&b, "],\n \"y_pred\": [");
	for (int k = 0; k < 2; k++) {
		puts_(&b, k ? ", " : "");
		puts_(&b, "[");
		json_logits(&b, 3, 17, "", -1, NULL);
		puts_(&b, ",");
		json_logits(&b, 3, 17, "\n", -1, NULL);
		puts_(&b, "]");
	}
	puts_(&b, "]}");
	check(&b, NULL, 200);
	b.s[b.n - 1] = ',';
	check(&b, "malformed_json", 400);
	b.s[b.n - 1] = '}';
	puts_(&b, " ");
	free(b.s);
}

Test(body, json_arrays_bad_tokens)
{
	/* the token at 150 (row 7 of 12 x 20, after lifted rows), at 3 (in
	 * the first row) and at 239 (the last) replaced */
	static const struct {
		const char *bad;
		const char *code;
		int status;
	} cases[] = {
	        {"1.2.3", "malformed_json", 400},
	        {"01", "malformed_json", 400},
	        {"1e400", "malformed_json", 400},
	        {"-", "malformed_json", 400},
	        {"1.", "malformed_json", 400},
	        {"+1", "malformed_json", 400},
	        {"\"x\"", "invalid_tensor", 0},
	        {"null", NULL, 0},
	        {"true", NULL, 0},
	        {"{}", NULL, 0},
	        {"[1]", "shape_mismatch", 422},
	        {"[]", NULL, 0},
	        {"1 2", "malformed_json", 400},
	        {"1,", "malformed_json", 400},
	        {"1e-400", NULL, 200},
	        {"-0", NULL, 200},
	        {"12345678901234567890", NULL, 0},
	        {"9007199254740993", NULL, 200},
	        {"0.1000000000000000055511151231257827", NULL, 200},
	        {"1E+2", NULL, 200},
	        {"1]", "malformed_json", 400},
	};
	static const long at[] = {150, 3, 239};
	for (size_t a = 0; a < 3; a++) {
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			buf b = {0};
			json_ce(&b, 12, 20, a == 1 ? "\n " : "", at[a], cases[i].bad, NULL);
			api_ctx ctx = API_CTX_INIT;
			api_reply r = {0};
			api_loss(&r, &ctx, b.s, b.n);
			int st = cases[i].status ? cases[i].status : r.status;
			const char *code = cases[i].status ? cases[i].code : NULL;
			api_reply_free(&r);
			check(&b, code, st);
			free(b.s);
		}
	}
}

Test(body, json_arrays_ragged_and_mixed)
{
	/* a row longer or shorter than the others after lifted rows */
	buf b = {0};
	json_ce(&b, 12, 20, "\n", 150, "1, 2", NULL);
	check(&b, "shape_mismatch", 422);
	free(b.s);
	/* arrays of objects, arrays in objects in arrays, a string key after */
	b = (buf){0};
	puts_(&b, "{\"loss\": \"mse\", \"heads\": [{\"a\": ");
	json_logits(&b, 3, 20, "\n", -1, NULL);
	puts_(&b, "}, [");
	json_logits(&b, 2, 18, "", -1, NULL);
	puts_(&b, ", \"s\", ");
	json_logits(&b, 2, 18, "", -1, NULL);
	puts_(&b, "]], \"y_true\": ");
	json_logits(&b, 4, 20, "", -1, NULL);
	puts_(&b, ", \"y_pred\": ");
	json_logits(&b, 4, 20, "", -1, NULL);
	puts_(&b, "}");
	api_ctx ctx = API_CTX_INIT;
	api_reply r = {0};
	api_loss(&r, &ctx, b.s, b.n);
	int st = r.status;
	api_reply_free(&r);
	check(&b, NULL, st);
	free(b.s);
	/* nested deeper than a tensor: rows lifted, the rest text */
	b = (buf){0};
	puts_(&b, "{\"loss\": \"mse\", \"y_true\": [[[[[[[[[[");
	json_logits(&b, 2, 16, "", -1, NULL);
	puts_(&b, "]]]]]]]]], \"y_pred\": [1]}");
	api_loss(&r, &ctx, b.s, b.n);
	st = r.status;
	api_reply_free(&r);
	check(&b, NULL, st);
	free(b.s);
	/* a duplicate key after the arrays: its byte offset */
	b = (buf){0};
	json_ce(&b, 12, 20, "\n", -1, NULL, ", \"y_pred\": 1");
	check(&b, "duplicate_key", 400);
	free(b.s);
	/* truncated inside the arrays, and in a number */
	b = (buf){0};
	json_ce(&b, 12, 20, "\n ", -1, NULL, NULL);
	for (size_t cut = b.n / 2; cut < b.n; cut += b.n / 7) {
		check_both(api_loss, api_loss_sent, b.s, cut, "malformed_json", 400);
	}
	free(b.s);
}

Test(body, json_arrays_limits)
{
	buf b = {0};
	json_ce(&b, 12, 20, "\n", -1, NULL, NULL);
	limits.max_elements = 12 * 20; /* the labels pass it, inside the logits */
	check(&b, "too_many_elements", 413);
	limits.max_elements = 12 * 20 + 12;
	check(&b, NULL, 200);
	limits = (api_ctx)API_CTX_INIT;
	limits.max_depth = 3; /* the logits reach 3 */
	check(&b, NULL, 200);
	limits.max_depth = 2;
	check(&b, "too_deep", 400);
	limits = (api_ctx)API_CTX_INIT;
	free(b.s);
	/* a raw NUL byte and "\u0000" after lifted rows */
	b = (buf){0};
	json_ce(&b, 12, 20, "\n", -1, NULL, ", \"k\": \"\\u0000\"");
	check(&b, "malformed_json", 400);
	b.s[b.n - 4] = '\0';
	check(&b, "malformed_json", 400);
	free(b.s);
}

Test(body, json_arrays_held_as_values)
{
	/* (64, 100) logits read in chunks of 100 bytes: what is held is the
	 * values and a row of text, not the body's text */
	buf b = {0};
	json_ce(&b, 64, 100, "\n", -1, NULL, NULL);
	size_t cap = api_body_arena_size(b.n);
	void *arena = aligned_alloc(64, (cap + 63) / 64 * 64);
	api_body *s = NULL;
	cr_assert_eq(api_body_new(&s, arena, cap, b.n, 64), 0);
	for (size_t at = 0; at < b.n; at += 100)
		cr_assert_eq(api_body_feed(s, b.s + at, b.n - at < 100 ? b.n - at : 100), 0);
	size_t values = (64 * 100 + 64) * sizeof(double);
	cr_assert_lt(api_body_held(s), values + 4096, "held %zu, values %zu, body %zu",
	             api_body_held(s), values, b.n);
	api_ctx ctx = API_CTX_INIT;
	api_reply want = {0}, got = {0};
	api_loss(&want, &ctx, b.s, b.n);
	api_loss_sent(&got, &ctx, s);
	expect_same(&want, &got, "held", 0);
	cr_assert_eq(got.status, 200);
	api_body_free(s);
	free(arena);
	api_reply_free(&want);
	api_reply_free(&got);
	free(b.s);
}

/* Whole vs one chunk and chunks of 1, 7 and 4093 bytes (long bodies). */
static void check_chunks(whole_fn whole, sent_fn fn, const buf *b, const char *code, int status)
{
	static const size_t steps[] = {1, 7, 4093};
	api_ctx ctx = limits;
	api_reply want = {0}, got = {0};
	size_t *cuts = malloc((b->n + 1) * sizeof *cuts);

	whole(&want, &ctx, b->s, b->n);
	cr_assert_eq(want.status, status, "whole body: %d %s", want.status, want.body);
	if (code)
		cr_assert(strstr(want.body, code), "whole body: %s", want.body);
	sent(&got, fn, b->s, b->n, NULL, 0);
	expect_same(&want, &got, "one chunk", b->n);
	api_reply_free(&got);
	for (size_t k = 0; k < 3; k++) {
		size_t m = 0;
		for (size_t at = steps[k]; at < b->n; at += steps[k])
			cuts[m++] = at;
		sent(&got, fn, b->s, b->n, cuts, m);
		expect_same(&want, &got, "chunks of", steps[k]);
		api_reply_free(&got);
	}
	api_reply_free(&want);
	free(cuts);
}

Test(body, json_arrays_past_what_was_read)
{
	/* 40,000 labels and scores: the vectors keep their text, so values
	 * stop being taken once they and the text pass the body read; short
	 * integers pass it at once, and the rows of a (2000, 40) tensor of
	 * "0" stop being lifted part way: answered the same */
	buf b = {0};
	char num[32];
	puts_(&b, "{\"y_true\": [");
	for (int i = 0; i < 40000; i++) {
		snprintf(num, sizeof num, "%s%d", i ? "," : "", (i * 13) % 3 == 0);
		puts_(&b, num);
	}
	puts_(&b, "],\n \"y_score\": [");
	for (int i = 0; i < 40000; i++) {
		snprintf(num, sizeof num, "%s%.9g", i ? ", " : "",
		         (double)((i * 37) % 1001) / 1001.0);
		puts_(&b, num);
	}
	puts_(&b, "]}");
	check_chunks(api_auc, api_auc_sent, &b, NULL, 200);
	free(b.s);
	b = (buf){0};
	puts_(&b, "{\"loss\": \"mse\", \"y_true\": [");
	for (int r = 0; r < 2000; r++) {
		puts_(&b, r ? ",\n[" : "[");
		for (int c = 0; c < 40; c++)
			puts_(&b, c ? ",0" : "0");
		puts_(&b, "]");
	}
	puts_(&b, "], \"y_pred\": 0.5}");
	check_chunks(api_loss, api_loss_sent, &b, "shape_mismatch", 422);
	free(b.s);
}

Test(body, json_arrays_auc)
{
	buf b = {0};
	char num[32];
	puts_(&b, "{\"y_true\": [");
	for (int i = 0; i < 300; i++) {
		snprintf(num, sizeof num, "%s%d", i ? "," : "", (i * 13) % 3 == 0);
		puts_(&b, num);
	}
	puts_(&b, "],\n \"y_score\": [");
	for (int i = 0; i < 300; i++) {
		snprintf(num, sizeof num, "%s%.9g", i ? ",\n " : "",
		         (double)((i * 37) % 101) / 101.0);
		puts_(&b, num);
	}
	puts_(&b, "]}");
	check_both(api_auc, api_auc_sent, b.s, b.n, NULL, 200);
	free(b.s);
}

Test(body, limits)
{
	api_body *b = NULL;
	char arena[256];
	cr_assert_eq(api_body_new(&b, arena, sizeof arena, 10, 64), 0);
	cr_assert_eq(api_body_feed(b, "{\"a\": 1}", 8), 0);
	cr_assert_eq(api_body_feed(b, "   ", 3), -1, "past max_len");
	api_body_free(b);
	api_body_free(NULL);
	/* no arena: every string is text, answered all the same */
	buf s = {0};
	ce_body(&s, 16, 20, NULL, NULL);
	api_ctx ctx = API_CTX_INIT;
	api_reply want = {0}, got = {0};
	api_loss(&want, &ctx, s.s, s.n);
	cr_assert_eq(api_body_new(&b, NULL, 0, s.n, 64), 0);
	cr_assert_eq(api_body_feed(b, s.s, s.n), 0);
	api_loss_sent(&got, &ctx, b);
	expect_same(&want, &got, "no arena", 0);
	api_body_free(b);
	api_reply_free(&want);
	api_reply_free(&got);
	free(s.s);
}

Test(body, out_of_memory_at_every_allocation)
{
	buf s = {0};
	ce_body(&s, 16, 20, NULL,
	        ", \"x\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]");
	api_ctx ctx = API_CTX_INIT;
	size_t cap = api_body_arena_size(s.n);
	void *arena = malloc(cap);
	for (long n = 1; n < 400; n++) {
		api_body *b = NULL;
		api_reply r = {0};
		api__alloc_fail_after(n);
		int rc = api_body_new(&b, arena, cap, s.n, 64);
		for (size_t at = 0; rc == 0 && at < s.n; at += 100)
			rc = api_body_feed(b, s.s + at, s.n - at < 100 ? s.n - at : 100);
		if (rc == 0) {
			api_loss_sent(&r, &ctx, b);
			cr_assert(r.status == 503 || r.status == 422 || r.status == 200,
			          "allocation %ld: %d %s", n, r.status, r.body);
			api_reply_free(&r);
		}
		api__alloc_fail_after(0);
		api_body_free(b);
	}
	free(arena);
	free(s.s);
}
