/*
 * test_sketch_routing.c - the sketch's fast insertion (engine/src/sketch.c:
 * the routing index, direct adds into the bucket whose cell holds a key,
 * GROW into a neighbouring folded bucket at capacity, pending items merged
 * at flushes).
 *
 * What must hold whatever path an item takes: the AUC is within its bound
 * of the exact one (ROC and PR), the state is deterministic (same calls,
 * same bytes; tensor and raw input give the same bytes), every state
 * round-trips through deserialize (which re-checks invariant (I): sorted,
 * disjoint dyadic cells), memory stays under the cap, exact buckets are
 * never folded while few distinct scores arrive, and errors leave the
 * sketch unchanged.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/auc.h"
#include "lossd/sketch.h"
#include "rng.h"

enum { D_NORMAL, D_SIGMOID, D_WIDE, D_FLOAT32, D_COUNT };

/* Smooth, squashed, wide-range (many binades, both signs) and float32
 * (repeated keys) scores; label 1 with probability 0.4, shifted up. */
static void generate(int kind, double *s, uint8_t *y, double *w, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		y[i] = unif_open() < 0.4;
		double x = normal() + (y[i] ? 0.7 : 0.0);
		switch (kind) {
		case D_NORMAL: s[i] = x; break;
		case D_SIGMOID: s[i] = 1.0 / (1.0 + exp(-x)); break;
		case D_WIDE: s[i] = x * pow(10.0, (double)(int)(rnd() % 40) - 20.0); break;
		default: s[i] = (double)(float)(1.0 / (1.0 + exp(-x)));
		}
		w[i] = rnd() % 5 == 0 ? 0.0 : 0.25 + unif_open();
	}
}

static eng_auc_result sk(const eng_sketch *k, eng_curve c)
{
	eng_auc_result r;
	cr_assert_eq(eng_sketch_auc(&r, NULL, k, c, 2), 0);
	return r;
}

static eng_auc_result exact(const double *s, const uint8_t *y, const double *w, int64_t n,
                            eng_curve c)
{
	eng_auc_result r;
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	o.curve = c;
	cr_assert_eq(eng_auc_exact_values(&r, NULL, s, y, w, n, &o, NULL), 0);
	return r;
}

static uint8_t *bytes(const eng_sketch *k, size_t *len)
{
	uint8_t *b;
	cr_assert_eq(eng_sketch_serialize(&b, len, k), 0);
	return b;
}

/* Round trip through deserialize (which validates invariant (I)). */
static void expect_valid_state(const eng_sketch *k)
{
	size_t len, len2;
	uint8_t *b = bytes(k, &len);
	eng_sketch *c = NULL;
	cr_expect_eq(eng_sketch_deserialize(&c, b, len), 0, "state fails its own invariants");
	if (c) {
		uint8_t *b2 = bytes(c, &len2);
		cr_expect(len == len2 && memcmp(b, b2, len) == 0);
		free(b2);
		eng_sketch_free(c);
	}
	free(b);
}

/* Adds s[0..n) in calls of pseudo-random sizes drawn from seed. */
static void add_in_calls(eng_sketch *k, const double *s, const uint8_t *y, const double *w,
                         int64_t n, uint64_t seed, int64_t max_call)
{
	uint64_t saved = rng_state;
	rng_state = seed;
	for (int64_t from = 0; from < n;) {
		int64_t cnt = 1 + (int64_t)(rnd() % (uint64_t)max_call);
		if (cnt > n - from)
			cnt = n - from;
		eng_error err;
		cr_assert_eq(eng_sketch_add_values(k, s + from, y + from, w ? w + from : NULL, cnt,
		                                   &err),
		             0, "%s", err.msg);
		from += cnt;
	}
	rng_state = saved;
}

Test(sketch_routing, sound_deterministic_and_valid_under_folding, .timeout = 120)
{
	const size_t caps[] = {1024, 8192, 131072};
	const int64_t n = 400000;
	double *s = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
	uint8_t *y = malloc((size_t)n);
	cr_assert(s && w && y);
	for (int kind = 0; kind < D_COUNT; kind++) {
		rng_state = 900 + (uint64_t)kind;
		generate(kind, s, y, w, n);
		for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
			for (int weighted = 0; weighted < 2; weighted++) {
				const double *ww = weighted ? w : NULL;
				eng_sketch *a = eng_sketch_new(caps[c]),
				           *b = eng_sketch_new(caps[c]);
				cr_assert(a && b);
				/* the routing index is rebuilt per call: small and big
				 * calls */
				add_in_calls(a, s, y, ww, n, 5 + c, c == 0 ? 3000 : 150000);
				add_in_calls(b, s, y, ww, n, 5 + c, c == 0 ? 3000 : 150000);
				size_t la, lb;
				uint8_t *ba = bytes(a, &la), *bb = bytes(b, &lb);
				cr_expect(la == lb && memcmp(ba, bb, la) == 0,
				          "same calls, different state (kind %d cap %zu)", kind,
				          caps[c]);
				free(ba);
				free(bb);
				expect_valid_state(a);
				cr_expect_leq(eng_sketch_memory(a), caps[c]);
				cr_expect_eq(eng_sketch_buckets(a), eng_sketch_capacity(a),
				             "smooth data fill the sketch");
				for (int cv = 0; cv < 2; cv++) {
					eng_auc_result r = sk(a, (eng_curve)cv);
					eng_auc_result e = exact(s, y, ww, n, (eng_curve)cv);
					cr_expect(r.defined && e.defined);
					cr_expect(r.error_bound > 0.0);
					cr_expect(
					        fabs(r.auc - e.auc) <= r.error_bound + 1e-12,
					        "kind %d cap %zu w %d curve %d: |%.12g - %.12g| > "
					        "%.3g",
					        kind, caps[c], weighted, cv, r.auc, e.auc,
					        r.error_bound);
					cr_expect_eq(r.positives + r.negatives, n);
				}
				eng_sketch_free(a);
				eng_sketch_free(b);
			}
		}
	}
	free(s);
	free(w);
	free(y);
}

Test(sketch_routing, bound_quality_one_call_and_many_calls, .timeout = 120)
{
	const int64_t n = 2000000;
	double *s = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
	uint8_t *y = malloc((size_t)n);
	cr_assert(s && w && y);
	for (int kind = 0; kind < 2; kind++) {
		rng_state = 4200 + (uint64_t)kind;
		generate(kind == 0 ? D_NORMAL : D_SIGMOID, s, y, w, n);
		for (int calls = 0; calls < 2; calls++) {
			eng_sketch *k = eng_sketch_new(0);
			if (calls)
				add_in_calls(k, s, y, NULL, n, 11, 20000);
			else
				cr_assert_eq(eng_sketch_add_values(k, s, y, NULL, n, NULL), 0);
			eng_auc_result r = sk(k, ENG_CURVE_ROC),
			               e = exact(s, y, NULL, n, ENG_CURVE_ROC);
			/* sketch.c: ~2e-5 for 32k buckets on smooth scores */
			cr_expect_leq(r.error_bound, 5e-5, "kind %d calls %d: bound %g", kind,
			              calls, r.error_bound);
			cr_expect(fabs(r.auc - e.auc) <= r.error_bound);
			eng_auc_result p = sk(k, ENG_CURVE_PR),
			               ep = exact(s, y, NULL, n, ENG_CURVE_PR);
			cr_expect_leq(p.error_bound, 5e-4, "PR bound %g", p.error_bound);
			cr_expect(fabs(p.auc - ep.auc) <= p.error_bound);
			expect_valid_state(k);
			eng_sketch_free(k);
		}
	}
	free(s);
	free(w);
	free(y);
}

Test(sketch_routing, tensor_and_raw_inputs_give_the_same_state)
{
	const int64_t n = 200000;
	double *s = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
	double *s2 = malloc((size_t)n * 2 * sizeof(double));
	float *f = malloc((size_t)n * sizeof(float));
	uint8_t *y = malloc((size_t)n);
	int64_t *y64 = malloc((size_t)n * sizeof(int64_t));
	cr_assert(s && w && s2 && f && y && y64);
	rng_state = 31;
	generate(D_SIGMOID, s, y, w, n);
	for (int64_t i = 0; i < n; i++) {
		f[i] = (float)s[i];
		s[i] = (double)f[i]; /* the float32 values, widened */
		s2[2 * i] = 7.0;
		s2[2 * i + 1] = s[i];
		y64[i] = y[i];
	}
	eng_tensor t64 = {ENG_F64, 1, {n}, n, s}, t32 = {ENG_F32, 1, {n}, n, f};
	eng_tensor t2 = {ENG_F64, 2, {n, 2}, 2 * n, s2}, ty = {ENG_I64, 1, {n}, n, y64};
	eng_tensor tw = {ENG_F64, 1, {n}, n, w};
	for (int weighted = 0; weighted < 2; weighted++) {
		eng_sketch *raw = eng_sketch_new(16384);
		cr_assert_eq(eng_sketch_add_values(raw, s, y, weighted ? w : NULL, n, NULL), 0);
		size_t lr;
		uint8_t *br = bytes(raw, &lr);
		const eng_tensor *ts[] = {&t64, &t32, &t2};
		for (int v = 0; v < 3; v++) {
			eng_auc_data d = {ts[v], &ty, weighted ? &tw : NULL, ENG_LABELS_BINARY};
			eng_sketch *k = eng_sketch_new(16384);
			eng_error err;
			cr_assert_eq(eng_sketch_add(k, &d, v == 2 ? 1 : 0, &err), 0, "%s", err.msg);
			size_t lk;
			uint8_t *bk = bytes(k, &lk);
			cr_expect(lk == lr && memcmp(bk, br, lk) == 0,
			          "input form %d (weighted %d) changed the state", v, weighted);
			free(bk);
			eng_sketch_free(k);
		}
		free(br);
		eng_sketch_free(raw);
	}
	free(s);
	free(w);
	free(s2);
	free(f);
	free(y);
	free(y64);
}

Test(sketch_routing, few_distinct_scores_stay_exact_past_capacity_items)
{
	/* 1e6 items, 500 distinct scores, a 1 KiB-ish cap that holds them
	 * all: every item is routed to its exact bucket, nothing folds */
	const int64_t n = 1000000;
	double *s = malloc((size_t)n * sizeof(double));
	uint8_t *y = malloc((size_t)n);
	cr_assert(s && y);
	rng_state = 5;
	for (int64_t i = 0; i < n; i++) {
		s[i] = (double)(rnd() % 500) / 499.0 - 0.3;
		y[i] = (uint8_t)(unif_open() < 0.2 + 0.5 * (s[i] + 0.3));
	}
	eng_sketch *k = eng_sketch_new(32768);
	add_in_calls(k, s, y, NULL, n, 3, 100000);
	cr_expect_eq(eng_sketch_buckets(k), 500);
	for (int cv = 0; cv < 2; cv++) {
		eng_auc_result r = sk(k, (eng_curve)cv), e = exact(s, y, NULL, n, (eng_curve)cv);
		cr_expect(r.error_bound == 0.0, "bound %g", r.error_bound);
		cr_expect(fabs(r.auc - e.auc) < 1e-12, "%.15g vs %.15g", r.auc, e.auc);
	}
	free(s);
	free(y);
	eng_sketch_free(k);
}

Test(sketch_routing, errors_change_nothing_and_name_the_item)
{
	const int64_t n = 100000;
	double *s = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
	uint8_t *y = malloc((size_t)n);
	cr_assert(s && w && y);
	rng_state = 8;
	generate(D_SIGMOID, s, y, w, n);
	eng_sketch *k = eng_sketch_new(4096);
	cr_assert_eq(eng_sketch_add_values(k, s, y, NULL, n, NULL), 0);
	size_t l0, l1;
	uint8_t *b0 = bytes(k, &l0);
	eng_error err;
	s[70001] = NAN;
	cr_expect_eq(eng_sketch_add_values(k, s, y, NULL, n, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 70001);
	s[70001] = 0.5;
	y[99999] = 3;
	cr_expect_eq(eng_sketch_add_values(k, s, y, NULL, n, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 99999);
	y[99999] = 1;
	w[5] = -1.0;
	cr_expect_eq(eng_sketch_add_values(k, s, y, w, n, &err), ENG_EWEIGHT);
	cr_expect_eq(err.index, 5);
	uint8_t *b1 = bytes(k, &l1);
	cr_expect(l0 == l1 && memcmp(b0, b1, l0) == 0, "a failed add changed the state");
	free(b0);
	free(b1);
	free(s);
	free(w);
	free(y);
	eng_sketch_free(k);
}
