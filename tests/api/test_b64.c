/*
 * test_b64.c - api/src/b64.c: the table decoder and the AVX2 one must give
 * the same bytes (garbage of invalid input included), the same errors and
 * the same offsets for every input, and both the right ones.
 *
 * Each decode here runs twice, once with the table path forced
 * (api__b64_set_simd(false)) and once with the AVX2 path
 * (api__b64_set_simd(true)), into buffers filled with the same sentinel and
 * with guard bytes past what may be written; results are compared with
 * each other and with a slow reference decoder written here. On a CPU (or a
 * build: not x86-64) without AVX2, api__b64_set_simd(true) returns false:
 * the tests then say so in their log and check the table path against the
 * reference alone, and the tests that only compare the two paths skip with
 * that message instead of comparing the table path with itself.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "b64.h"

#include "testbuf.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define GUARD 40 /* bytes past the output checked untouched (more than one AVX2 store) */
#define FILL  0xa5

static uint32_t seed = 12345;

static uint32_t rnd(void)
{
	seed = seed * 1664525u + 1013904223u;
	return seed >> 8;
}

/* Whether the AVX2 path runs here; logs once per test when it does not. */
static bool two_paths(void)
{
	bool on = api__b64_set_simd(true);
	if (!on)
		cr_log_warn("no AVX2 on this CPU or in this build: only the table path is "
		            "checked (against the reference decoder)");
	return on;
}

static void need_avx2(void)
{
	if (!api__b64_set_simd(true))
		cr_skip_test("no AVX2 on this CPU or in this build: nothing to compare the table "
		             "path with (the other tests check it against the reference)");
}

/* ---- the reference: one character at a time ------------------------------------------- */

static int sextet(unsigned char c)
{
	static int tab[256];
	if (!tab['B']) {
		for (int i = 0; i < 256; i++)
			tab[i] = -1;
		for (int i = 0; i < 64; i++)
			tab[(unsigned char)alphabet[i]] = i;
	}
	return tab[c];
}

/* api__b64_decode's contract, slowly: 0 with out filled, or -1 and *bad_at. */
static int ref_decode(unsigned char *out, const char *s, size_t len, size_t *bad_at)
{
	if (len % 4) {
		*bad_at = len;
		return -1;
	}
	size_t pad = 0;
	if (len && s[len - 1] == '=')
		pad = len >= 2 && s[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len; i++)
		if (sextet((unsigned char)s[i]) < 0 && !(s[i] == '=' && i >= len - pad)) {
			*bad_at = i;
			return -1;
		}
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len - pad; i++) {
		acc = acc << 6 | (uint32_t)sextet((unsigned char)s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	return 0;
}

/* ---- one decode on each path ------------------------------------------------------------ */

typedef struct run {
	int rc;
	size_t bad_at, size;
	unsigned char *out; /* size + GUARD bytes */
} run;

static run decode_on(bool avx2, const char *s, size_t len)
{
	run r = {0};
	cr_assert_eq(api__b64_set_simd(avx2), avx2);
	r.size = api__b64_decoded_size(s, len);
	size_t cap = (r.size == SIZE_MAX ? 0 : r.size) + GUARD;
	r.out = malloc(cap);
	cr_assert_not_null(r.out);
	memset(r.out, FILL, cap);
	r.bad_at = SIZE_MAX;
	r.rc = api__b64_decode(r.out, s, len, &r.bad_at);
	for (size_t i = cap - GUARD; i < cap; i++)
		cr_assert_eq(r.out[i], FILL,
		             "%s path wrote %zu bytes past the %zu of %zu characters",
		             avx2 ? "AVX2" : "table", i - (cap - GUARD) + 1, r.size, len);
	return r;
}

/* Decodes s on every path there is, checks each against the reference and
 * (invalid input too) against each other. Returns the table path's rc. */
static int check_decode(const char *s, size_t len, bool both)
{
	unsigned char *want = malloc(len / 4 * 3 + 1);
	size_t want_bad = SIZE_MAX;
	int want_rc = ref_decode(want, s, len, &want_bad);
	run t = decode_on(false, s, len);

	cr_assert_eq(t.rc, want_rc, "table path: rc %d for %zu characters, want %d", t.rc, len,
	             want_rc);
	if (want_rc == 0) {
		cr_assert(memcmp(t.out, want, t.size) == 0, "table path: wrong bytes (%zu chars)",
		          len);
		cr_assert_eq(t.bad_at, SIZE_MAX); /* untouched when valid */
	} else {
		cr_assert_eq(t.bad_at, want_bad, "table path: bad_at %zu, want %zu (%zu chars)",
		             t.bad_at, want_bad, len);
	}
	if (both) {
		run v = decode_on(true, s, len);
		cr_assert_eq(v.rc, t.rc, "AVX2 rc %d, table %d (%zu characters)", v.rc, t.rc, len);
		cr_assert_eq(v.bad_at, t.bad_at, "AVX2 bad_at %zu, table %zu (%zu characters)",
		             v.bad_at, t.bad_at, len);
		size_t cap = (t.size == SIZE_MAX ? 0 : t.size) + GUARD;
		for (size_t i = 0; i < cap; i++)
			cr_assert_eq(v.out[i], t.out[i],
			             "byte %zu: AVX2 %#x, table %#x (%zu characters, rc %d)", i,
			             v.out[i], t.out[i], len, t.rc);
		free(v.out);
	}
	free(t.out);
	free(want);
	return want_rc;
}

static void random_text(char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		s[i] = alphabet[rnd() % 64];
}

/* ---- tests ------------------------------------------------------------------------------ */

Test(b64, the_setter_forces_the_table_path)
{
	cr_assert_eq(api__b64_set_simd(false), false);
	bool on = api__b64_set_simd(true);
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
	__builtin_cpu_init();
	cr_assert_eq(on, (bool)__builtin_cpu_supports("avx2"));
#else
	cr_assert_eq(on, false);
#endif
	cr_log_info("AVX2 path %s", on ? "available" : "not available");
}

Test(b64, every_length_to_300)
{
	bool both = two_paths();
	char s[304];
	for (size_t len = 0; len <= 300; len++)
		for (int trial = 0; trial < 6; trial++) {
			random_text(s, len);
			if (len % 4 == 0 && len > 0 && trial == 1)
				s[len - 1] = '=';
			if (len % 4 == 0 && len > 0 && trial == 2)
				s[len - 1] = s[len - 2] = '=';
			if (trial >= 4 && len > 0) /* a byte of any value somewhere */
				s[rnd() % len] = (char)(rnd() & 0xff);
			int rc = check_decode(s, len, both);
			if (len % 4 == 0 && trial < 3)
				cr_assert_eq(rc, 0, "%zu characters, trial %d", len, trial);
		}
}

Test(b64, large_inputs_against_the_encoder)
{
	bool both = two_paths();
	static const size_t sizes[] = {765,   768,   771,   3069,    3072,          3075,
	                               24573, 24576, 98307, 1 << 20, (1 << 20) + 1, (1 << 20) + 2};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		size_t n = sizes[k];
		unsigned char *raw = malloc(n);
		for (size_t i = 0; i < n; i++)
			raw[i] = (unsigned char)rnd();
		char *s = api__b64_encode(raw, n);
		cr_assert_not_null(s);
		size_t len = strlen(s);
		for (int p = 0; p < (both ? 2 : 1); p++) {
			run r = decode_on(p == 1, s, len);
			cr_assert_eq(r.rc, 0);
			cr_assert_eq(r.size, n);
			cr_assert(memcmp(r.out, raw, n) == 0, "%s path: %zu bytes decode wrong",
			          p ? "AVX2" : "table", n);
			free(r.out);
		}
		check_decode(s, len, both);
		free(s);
		free(raw);
	}
}

/* Every byte value outside the alphabet ('=' included) at positions in the
 * first block, inside the AVX2 part, at block edges, in the table tail and
 * in the last group; the offset reported is always its own. */
Test(b64, every_invalid_byte_at_every_kind_of_position)
{
	bool both = two_paths();
	static const int pads[] = {0, 1, 2};
	for (int pi = 0; pi < 3; pi++) {
		size_t len = 4096;
		char *s = malloc(len);
		random_text(s, len);
		for (int k = 0; k < pads[pi]; k++)
			s[len - 1 - k] = '=';
		size_t at[64], nat = 0;
		static const size_t fixed[] = {0,  1,  2,  3,  4,   7,    30,   31,   32,  33,
		                               35, 63, 64, 65, 100, 1000, 2047, 2048, 2049};
		for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++)
			at[nat++] = fixed[k];
		for (size_t back = 1; back <= 40; back += (back < 8 ? 1 : 7))
			at[nat++] = len - back; /* the tail and the last group */
		for (size_t k = 0; k < nat; k++)
			for (int c = 0; c < 256; c++) {
				if (sextet((unsigned char)c) >= 0)
					continue;
				char keep = s[at[k]];
				s[at[k]] = (char)c;
				int rc = check_decode(s, len, both);
				bool padding =
				        c == '=' && (at[k] == len - 1 ||
				                     (at[k] == len - 2 && s[len - 1] == '='));
				if (!padding)
					cr_assert_eq(rc, -1, "byte %#x at %zu", c, at[k]);
				/* a second bad byte further on changes nothing */
				if (!padding && at[k] + 40 < len) {
					char keep2 = s[at[k] + 37];
					s[at[k] + 37] = '!';
					check_decode(s, len, both);
					s[at[k] + 37] = keep2;
				}
				s[at[k]] = keep;
			}
		free(s);
	}
}

Test(b64, padding)
{
	bool both = two_paths();
	static const struct {
		const char *s;
		int rc;
		size_t bad_at;
		const char *bytes;
	} cases[] = {
	        {"", 0, 0, ""},
	        {"QQ==", 0, 0, "A"},
	        {"QUE=", 0, 0, "AA"},
	        {"QUFB", 0, 0, "AAA"},
	        {"QR==", 0, 0, "A"}, /* padding bits need not be zero */
	        {"QUF=", 0, 0, "AA"},
	        {"QQ=", -1, 3, NULL},
	        {"Q===", -1, 1, NULL},
	        {"====", -1, 0, NULL},
	        {"QQ=A", -1, 2, NULL},
	        {"=QUF", -1, 0, NULL},
	        {"QQ==QUFB", -1, 2, NULL},
	        {"QUE=QUFB", -1, 3, NULL},
	        {"QUFBQQ==", 0, 0, "AAAA"},
	        {"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQQ==", 0, 0, "AAAAAAAAAAAAAAAAAAAAAAAAA"},
	        {"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=QUFB", -1, 31, NULL},
	        {"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=QUFB", -1, 63,
	         NULL},
	};
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		size_t len = strlen(cases[k].s);
		int rc = check_decode(cases[k].s, len, both);
		cr_assert_eq(rc, cases[k].rc, "%s", cases[k].s);
		run r = decode_on(false, cases[k].s, len);
		if (rc == 0)
			cr_assert(memcmp(r.out, cases[k].bytes, r.size) == 0 &&
			                  r.size == strlen(cases[k].bytes),
			          "%s", cases[k].s);
		else
			cr_assert_eq(r.bad_at, cases[k].bad_at, "%s: bad_at %zu", cases[k].s,
			             r.bad_at);
		free(r.out);
	}
	/* long inputs that end in padding, with a '=' moved earlier */
	char s[4 * 80];
	for (size_t len = 64; len <= sizeof s; len += 4) {
		random_text(s, len);
		s[len - 1] = '=';
		cr_assert_eq(check_decode(s, len, both), 0);
		s[len - 2] = '=';
		cr_assert_eq(check_decode(s, len, both), 0);
		s[len / 2] = '=';
		cr_assert_eq(check_decode(s, len, both), -1);
	}
}

/* api__b64_decode_groups (body.c's inner loop): same return, same bytes,
 * nothing past groups * 3 + 1, on random and invalid groups. */
Test(b64, groups_decoder)
{
	need_avx2();
	unsigned char *dt = malloc(3 * 300 + GUARD), *dv = malloc(3 * 300 + GUARD);
	char s[4 * 300];
	for (size_t groups = 0; groups <= 300; groups++)
		for (int trial = 0; trial < 8; trial++) {
			random_text(s, 4 * groups);
			if (trial > 0 && groups > 0)
				s[rnd() % (4 * groups)] = trial == 1 ? '=' : (char)(rnd() & 0xff);
			if (trial == 7 && groups > 0)
				s[4 * groups - 1] = '\0';
			uint32_t r[2];
			unsigned char *d[2] = {dt, dv};
			for (int p = 0; p < 2; p++) {
				memset(d[p], FILL, 3 * 300 + GUARD);
				cr_assert_eq(api__b64_set_simd(p == 1), p == 1);
				r[p] = api__b64_decode_groups(d[p], (const unsigned char *)s,
				                              groups);
				for (size_t i = groups * 3 + 1; i < 3 * 300 + GUARD; i++)
					cr_assert_eq(d[p][i], FILL,
					             "%s path: byte %zu written (%zu groups)",
					             p ? "AVX2" : "table", i, groups);
			}
			bool bad = false;
			for (size_t i = 0; i < 4 * groups; i++)
				bad |= sextet((unsigned char)s[i]) < 0;
			cr_assert_eq(r[0] != 0, bad, "%zu groups, trial %d", groups, trial);
			cr_assert_eq(r[1], r[0], "%zu groups, trial %d", groups, trial);
			cr_assert(memcmp(dt, dv, 3 * groups) == 0, "%zu groups, trial %d", groups,
			          trial);
		}
	free(dt);
	free(dv);
}

/* Large random inputs (every length class past the AVX2 blocks): only the
 * two paths against each other, invalid bytes sprinkled. */
Test(b64, random_inputs_both_paths)
{
	need_avx2();
	size_t cap = 70000;
	char *s = malloc(cap);
	for (int trial = 0; trial < 60; trial++) {
		size_t len = (rnd() % (cap / 4)) * 4;
		random_text(s, len);
		if (trial % 3 == 1 && len > 0)
			s[rnd() % len] = (char)(rnd() & 0xff);
		if (trial % 3 == 2 && len > 1)
			s[len - 1 - rnd() % 2] = '=';
		check_decode(s, len, true);
	}
	free(s);
}

/* ---- bodies fed in chunks (body.c), AVX2 against the table path ---------------------- */

static void request(buf *b, const char *pred, int rows, int classes)
{
	char head[200];
	snprintf(head, sizeof head,
	         "{\"loss\": \"mean_squared_error\", \"y_true\": {\"shape\": [%d, %d], \"dtype\": "
	         "\"float32\", \"b64\": \"",
	         rows, classes);
	puts_(b, head);
	puts_(b, pred);
	puts_(b, "\"}, \"y_pred\": {\"shape\": [");
	snprintf(head, sizeof head, "%d, %d], \"dtype\": \"float32\", \"b64\": \"", rows, classes);
	puts_(b, head);
	puts_(b, pred);
	puts_(b, "\"}}");
}

static void sent(api_reply *out, const char *s, size_t n, size_t cut)
{
	api_ctx ctx = API_CTX_INIT;
	size_t cap = api_body_arena_size(n);
	void *arena = aligned_alloc(64, (cap + 63) / 64 * 64);
	api_body *b = NULL;
	cr_assert_eq(api_body_new(&b, arena, cap, n, ctx.max_depth), 0);
	cr_assert_eq(api_body_feed(b, s, cut), 0);
	cr_assert_eq(api_body_feed(b, s + cut, n - cut), 0);
	api_loss_sent(out, &ctx, b);
	api_body_free(b);
	free(arena);
}

/* The whole body on the table path, then fed in two chunks split at every
 * offset on the AVX2 path: same reply bytes (losses, error offsets). */
Test(b64, bodies_split_at_every_offset)
{
	need_avx2();
	size_t nval = 24 * 17; /* 1632 bytes: 2176 characters, no padding */
	float *x = malloc(nval * sizeof *x);
	for (size_t i = 0; i < nval; i++)
		x[i] = (float)((int)(rnd() % 2001) - 1000) / 64.0f;
	char *valid = api__b64_encode(x, nval * sizeof *x);
	char *one_pad = api__b64_encode(x, (nval - 1) * sizeof *x + 2); /* "=": wrong size */
	static const size_t bad_at[] = {5, 700, 2150, 2175};
	const char *preds[6];
	char *bad[4];
	preds[0] = valid;
	preds[1] = one_pad;
	for (int k = 0; k < 4; k++) {
		bad[k] = strdup(valid);
		bad[k][bad_at[k]] = k % 2 ? '-' : '=';
		preds[2 + k] = bad[k];
	}
	for (int k = 0; k < 6; k++) {
		buf b = {0};
		api_ctx ctx = API_CTX_INIT;
		api_reply want = {0}, got = {0};
		request(&b, preds[k], 24, 17);
		cr_assert_eq(api__b64_set_simd(false), false);
		api_loss(&want, &ctx, b.s, b.n);
		cr_assert_eq(want.status, k == 0 ? 200 : 422, "body %d: %s", k, want.body);
		cr_assert_eq(api__b64_set_simd(true), true);
		for (size_t cut = 0; cut <= b.n; cut++) {
			sent(&got, b.s, b.n, cut);
			cr_assert_eq(got.status, want.status, "body %d split at %zu: %s", k, cut,
			             got.body);
			cr_assert(got.len == want.len && memcmp(got.body, want.body, want.len) == 0,
			          "body %d split at %zu:\n got  %s\n want %s", k, cut, got.body,
			          want.body);
			api_reply_free(&got);
		}
		api_reply_free(&want);
		free(b.s);
	}
	for (int k = 0; k < 4; k++)
		free(bad[k]);
	free(valid);
	free(one_pad);
	free(x);
}
