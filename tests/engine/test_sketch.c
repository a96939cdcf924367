/*
 * test_sketch.c - the bounded-memory AUC sketch (engine/src/sketch.c).
 *
 * Exactness while the distinct scores fit, soundness of error_bound against
 * the exact AUC (ROC and PR) on random and adversarial data with caps small
 * enough to force folding, merge commutativity / associativity, memory
 * under the cap, the 1e-4 target on 1e6 smooth scores under the default
 * cap, and rejection of corrupt serialized state.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/auc.h"
#include "lossd/sketch.h"
#include "rng.h"

/* Exact AUC of raw arrays through eng_auc_exact. */
static eng_auc_result exact(const double *s, const uint8_t *y, const double *w, int64_t n,
                            eng_curve curve)
{
	eng_tensor ts = {ENG_F64, 1, {n}, n, s}, ty = {ENG_U8, 1, {n}, n, y};
	eng_tensor tw = {ENG_F64, 1, {n}, n, w};
	eng_auc_data d = {&ts, &ty, w ? &tw : NULL, ENG_LABELS_BINARY};
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	eng_auc_result r;
	o.curve = curve;
	cr_assert_eq(eng_auc_exact(&r, NULL, &d, 0, &o, NULL), 0);
	return r;
}

static eng_auc_result sk(const eng_sketch *s, eng_curve curve)
{
	eng_auc_result r;
	cr_assert_eq(eng_sketch_auc(&r, NULL, s, curve, 512), 0);
	return r;
}

/* ---- data generators ------------------------------------------------------------------ */

typedef enum {
	D_NORMAL,
	D_SIGMOID,
	D_TIES,
	D_ONE_CLASS,
	D_HUGE,
	D_DENORMAL,
	D_LOGITS,
	D_INF,
	D_MIXED_SIGN,
	D_INVERTED,
	D_COUNT
} dist;

static const char *const dist_names[] = {"normal",   "sigmoid", "ties", "one_class",  "huge",
                                         "denormal", "logits",  "inf",  "mixed_sign", "inverted"};

static void generate(dist kind, double *s, uint8_t *y, double *w, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		y[i] = (uint8_t)(rnd() & 1);
		double x = normal() + (y[i] ? 0.7 : 0.0);
		switch (kind) {
		case D_NORMAL: s[i] = x; break;
		case D_SIGMOID: s[i] = 1 / (1 + exp(-x)); break;
		case D_TIES: s[i] = floor(x * 3) / 3; break;
		case D_ONE_CLASS: y[i] = 1, s[i] = x; break;
		case D_HUGE:
			s[i] = (rnd() & 1 ? 1e30 : -1e30) * unif_open() * (y[i] ? 2 : 1);
			break;
		case D_DENORMAL: s[i] = x * 1e-310; break;
		case D_LOGITS: s[i] = x * 40; break;
		case D_INF: s[i] = rnd() % 5 == 0 ? (y[i] ? INFINITY : -INFINITY) : x; break;
		case D_MIXED_SIGN:
			s[i] = (rnd() & 1) ? -0.0 : (rnd() % 3 ? x * 1e-300 : 0.0);
			break;
		default: s[i] = -x; break;
		}
		w[i] = (rnd() % 4 == 0) ? 0.0 : 0.5 + unif_open() * 2;
	}
}

/* ---- exact while the distinct scores fit --------------------------------------------- */

Test(sketch, exact_while_distinct_scores_fit)
{
	for (int kind = 0; kind < D_COUNT; kind++) {
		enum { N = 3000 };
		static double s[N], w[N];
		static uint8_t y[N];
		rng_state = 100 + kind;
		generate((dist)kind, s, y, w, N);
		for (int weighted = 0; weighted < 2; weighted++) {
			eng_sketch *k = eng_sketch_new(0);
			cr_assert_eq(eng_sketch_add_values(k, s, y, weighted ? w : NULL, N, NULL),
			             0);
			cr_expect_leq(eng_sketch_buckets(k), N);
			for (int c = 0; c < 2; c++) {
				eng_auc_result a = sk(k, (eng_curve)c);
				eng_auc_result e =
				        exact(s, y, weighted ? w : NULL, N, (eng_curve)c);
				cr_expect_eq(a.defined, e.defined, "%s", dist_names[kind]);
				cr_expect_eq(a.positives, e.positives);
				cr_expect_eq(a.negatives, e.negatives);
				if (!e.defined)
					continue;
				cr_expect(a.error_bound == 0.0, "%s: bound %g", dist_names[kind],
				          a.error_bound);
				cr_expect(fabs(a.auc - e.auc) < 1e-12,
				          "%s c=%d w=%d: %.15g vs %.15g", dist_names[kind], c,
				          weighted, a.auc, e.auc);
			}
			eng_sketch_free(k);
		}
	}
}

/* ---- soundness with folding ---------------------------------------------------------------- */

typedef struct sound_case {
	int kind;
	size_t cap;
	int64_t n;
} sound_case;

ParameterizedTestParameters(sketch, sound_bound)
{
	static sound_case cases[D_COUNT * 3];
	size_t m = 0;
	for (int k = 0; k < D_COUNT; k++) {
		cases[m++] = (sound_case){k, 1024, 5000};    /* ~30 buckets */
		cases[m++] = (sound_case){k, 4096, 20000};   /* ~126 buckets */
		cases[m++] = (sound_case){k, 65536, 150000}; /* ~2k buckets, several batches */
	}
	return cr_make_param_array(sound_case, cases, m);
}

ParameterizedTest(sound_case *c, sketch, sound_bound)
{
	double *s = malloc(c->n * sizeof(double)), *w = malloc(c->n * sizeof(double));
	uint8_t *y = malloc(c->n);
	rng_state = 7000 + (uint64_t)c->kind * 31 + c->cap;
	generate((dist)c->kind, s, y, w, c->n);
	for (int weighted = 0; weighted < 2; weighted++) {
		eng_sketch *k = eng_sketch_new(c->cap);
		cr_assert_not_null(k);
		/* in uneven pieces, as requests arrive */
		for (int64_t from = 0; from < c->n;) {
			int64_t cnt = 1 + (int64_t)(rnd() % 20000);
			if (cnt > c->n - from)
				cnt = c->n - from;
			cr_assert_eq(eng_sketch_add_values(k, s + from, y + from,
			                                   weighted ? w + from : NULL, cnt, NULL),
			             0);
			from += cnt;
		}
		cr_expect_leq(eng_sketch_memory(k), c->cap);
		cr_expect_leq(eng_sketch_buckets(k), eng_sketch_capacity(k));
		for (int cv = 0; cv < 2; cv++) {
			eng_auc_result a = sk(k, (eng_curve)cv);
			eng_auc_result e = exact(s, y, weighted ? w : NULL, c->n, (eng_curve)cv);
			cr_expect_eq(a.defined, e.defined);
			if (!e.defined)
				continue;
			cr_expect(fabs(a.auc - e.auc) <= a.error_bound + 1e-12,
			          "%s cap=%zu w=%d curve=%d: |%.12g - %.12g| > %.3g",
			          dist_names[c->kind], c->cap, weighted, cv, a.auc, e.auc,
			          a.error_bound);
			cr_expect(a.error_bound >= 0 && a.error_bound <= 1.0);
		}
		eng_sketch_free(k);
	}
	free(s);
	free(w);
	free(y);
}

/* ---- merge ------------------------------------------------------------------------------------ */

Test(sketch, merge_commutative_associative_and_sound)
{
	enum { N = 30000 };
	static double s[N], w[N];
	static uint8_t y[N];
	rng_state = 77;
	generate(D_TIES, s, y, w, N); /* few distinct: nothing folds */
	eng_sketch *p[3], *q[3];
	for (int i = 0; i < 3; i++) {
		p[i] = eng_sketch_new(0);
		q[i] = eng_sketch_new(0);
		cr_assert_eq(eng_sketch_add_values(p[i], s + i * N / 3, y + i * N / 3,
		                                   w + i * N / 3, N / 3, NULL),
		             0);
		cr_assert_eq(eng_sketch_merge(q[i], p[i]), 0);
	}
	/* (p0 + p1) + p2 versus p2 + (p1 + p0): identical bytes */
	eng_sketch *l = eng_sketch_new(0), *r = eng_sketch_new(0);
	eng_sketch_merge(l, p[0]);
	eng_sketch_merge(l, p[1]);
	eng_sketch_merge(l, p[2]);
	eng_sketch_merge(q[1], p[0]);
	eng_sketch_merge(r, p[2]);
	eng_sketch_merge(r, q[1]);
	uint8_t *bl, *br;
	size_t nl, nr;
	cr_assert_eq(eng_sketch_serialize(&bl, &nl, l), 0);
	cr_assert_eq(eng_sketch_serialize(&br, &nr, r), 0);
	cr_expect_eq(nl, nr);
	cr_expect(nl == nr && memcmp(bl, br, nl) == 0, "merge order changed the state");
	eng_auc_result a = sk(l, ENG_CURVE_ROC), e = exact(s, y, w, N, ENG_CURVE_ROC);
	cr_expect(fabs(a.auc - e.auc) < 1e-12 && a.error_bound == 0);
	free(bl);
	free(br);

	/* with folding: smooth data into small sketches, merged in two orders */
	rng_state = 78;
	generate(D_NORMAL, s, y, w, N);
	eng_sketch *x[3];
	for (int i = 0; i < 3; i++) {
		x[i] = eng_sketch_new(2048);
		cr_assert_eq(eng_sketch_add_values(x[i], s + i * N / 3, y + i * N / 3, NULL, N / 3,
		                                   NULL),
		             0);
	}
	eng_sketch *m1 = eng_sketch_new(2048), *m2 = eng_sketch_new(2048);
	eng_sketch_merge(m1, x[0]);
	eng_sketch_merge(m1, x[1]);
	eng_sketch_merge(m1, x[2]);
	eng_sketch_merge(m2, x[2]);
	eng_sketch_merge(m2, x[1]);
	eng_sketch_merge(m2, x[0]);
	e = exact(s, y, NULL, N, ENG_CURVE_ROC);
	eng_auc_result a1 = sk(m1, ENG_CURVE_ROC), a2 = sk(m2, ENG_CURVE_ROC);
	cr_expect(fabs(a1.auc - e.auc) <= a1.error_bound, "%g vs %g +- %g", a1.auc, e.auc,
	          a1.error_bound);
	cr_expect(fabs(a2.auc - e.auc) <= a2.error_bound);
	cr_expect(fabs(a1.auc - a2.auc) <= a1.error_bound + a2.error_bound);
	cr_expect_eq(eng_sketch_positives(m1), eng_sketch_positives(m2));
	cr_expect_eq(eng_sketch_negatives(m1), eng_sketch_negatives(m2));
	eng_auc_result pr = sk(m1, ENG_CURVE_PR), epr = exact(s, y, NULL, N, ENG_CURVE_PR);
	cr_expect(fabs(pr.auc - epr.auc) <= pr.error_bound);

	/* different caps: the result keeps the destination's */
	eng_sketch *big = eng_sketch_new(1 << 20);
	eng_sketch_merge(big, m1);
	eng_sketch *tiny = eng_sketch_new(1024);
	cr_assert_eq(eng_sketch_merge(tiny, big), 0);
	cr_expect_leq(eng_sketch_memory(tiny), 1024);
	eng_auc_result t = sk(tiny, ENG_CURVE_ROC);
	cr_expect(fabs(t.auc - e.auc) <= t.error_bound);
	cr_expect_eq(eng_sketch_cap(tiny), 1024);

	for (int i = 0; i < 3; i++) {
		eng_sketch_free(p[i]);
		eng_sketch_free(q[i]);
		eng_sketch_free(x[i]);
	}
	eng_sketch_free(l);
	eng_sketch_free(r);
	eng_sketch_free(m1);
	eng_sketch_free(m2);
	eng_sketch_free(big);
	eng_sketch_free(tiny);
}

/* ---- the accuracy target ---------------------------------------------------------------- */

Test(sketch, million_smooth_scores_within_1e4_under_default_cap, .timeout = 120)
{
	enum { N = 1000000 };
	double *s = malloc(N * sizeof(double));
	uint8_t *y = malloc(N);
	for (int sig = 0; sig < 2; sig++) {
		rng_state = 4242 + sig;
		for (int i = 0; i < N; i++) {
			y[i] = (uint8_t)(rnd() & 1);
			double x = normal() + (y[i] ? 1.0 : 0.0);
			s[i] = sig ? 1 / (1 + exp(-x)) : x;
		}
		eng_sketch *k = eng_sketch_new(0);
		for (int from = 0; from < N; from += 100000)
			cr_assert_eq(
			        eng_sketch_add_values(k, s + from, y + from, NULL, 100000, NULL),
			        0);
		eng_auc_result a = sk(k, ENG_CURVE_ROC), e = exact(s, y, NULL, N, ENG_CURVE_ROC);
		cr_expect_leq(a.error_bound, 1e-4, "bound %g", a.error_bound);
		cr_expect(fabs(a.auc - e.auc) <= a.error_bound);
		cr_expect_leq(eng_sketch_memory(k), ENG_SKETCH_DEFAULT_CAP);
		eng_sketch_free(k);
	}
	free(s);
	free(y);
}

/* ---- lifecycle and API --------------------------------------------------------------------- */

Test(sketch, reset_caps_and_errors)
{
	cr_expect_null(eng_sketch_new(10));
	cr_expect_null(eng_sketch_new(ENG_SKETCH_MAX_CAP + 1));
	eng_sketch_free(NULL);
	eng_sketch *k = eng_sketch_new(0);
	cr_expect_eq(eng_sketch_cap(k), ENG_SKETCH_DEFAULT_CAP);
	double s[] = {.1, .2, NAN}, w[] = {1, -1, 1};
	uint8_t y[] = {0, 1, 1}, bad[] = {0, 2, 1};
	eng_error err;
	cr_expect_eq(eng_sketch_add_values(k, s, y, NULL, 3, &err), ENG_ENONFINITE);
	cr_expect_eq(eng_sketch_add_values(k, s, y, w, 2, &err), ENG_EWEIGHT);
	cr_expect_eq(eng_sketch_add_values(k, s, bad, NULL, 2, &err), ENG_ELABEL);
	cr_expect_eq(eng_sketch_buckets(k), 0); /* all or nothing */
	cr_expect_eq(eng_sketch_positives(k), 0);
	cr_assert_eq(eng_sketch_add_values(k, s, y, NULL, 2, &err), 0);
	eng_auc_result r = sk(k, ENG_CURVE_ROC);
	cr_expect(r.defined && r.auc == 1.0);
	eng_sketch_reset(k);
	r = sk(k, ENG_CURVE_ROC);
	cr_expect(!r.defined && r.positives == 0);

	/* eng_auc_data path with (N, C) class ids and micro */
	double sc[] = {.9, .1, .2, .8, .7, .3}, ids[] = {0, 1, 0};
	eng_tensor ts = {ENG_F64, 2, {3, 2}, 6, sc}, ty = {ENG_F64, 1, {3}, 3, ids};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_CLASS_ID};
	cr_assert_eq(eng_sketch_add(k, &d, 1, &err), 0);
	r = sk(k, ENG_CURVE_ROC);
	cr_expect(r.defined && r.auc == 1.0 && r.positives == 1 && r.negatives == 2);
	eng_auc_curve c = ENG_AUC_CURVE_INIT;
	cr_assert_eq(eng_auc_sketch(&r, &c, &d, ENG_AUC_ALL, 0, ENG_CURVE_ROC, 512, &err), 0);
	cr_expect(r.auc == 1.0 && r.positives == 3 && r.negatives == 3);
	cr_expect(c.n == 7 && c.x[0] == 0 && c.y[c.n - 1] == 1 && c.x[c.n - 1] == 1);
	eng_auc_curve_free(&c);
	double bid[] = {0, 5, 0};
	eng_tensor tb = {ENG_F64, 1, {3}, 3, bid};
	d.label = &tb;
	cr_expect_eq(eng_sketch_add(k, &d, 0, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1);
	eng_sketch_free(k);
}

/* eng_sketch_add_values into an empty sketch of at most one batch takes
 * a shortcut (add_fresh, sketch.c) that must leave the state the general
 * insert leaves: eng_sketch_add always takes the general one. Same bytes
 * for every distribution, in float64 and float32 (whose keys leave low
 * bits free), weighted (a quarter of the weights 0) or not,
 * sizes around the batch, with and without a capacity fold. */
Test(sketch, a_first_add_equals_the_general_insert)
{
	enum { MAX = 65537 };
	static double s[MAX], w[MAX];
	static uint8_t y[MAX];
	static const int64_t sizes[] = {1, 1000, 40000, 65536, 65537};
	static const size_t caps[] = {0, 4096};
	for (int kind = 0; kind < 2 * D_COUNT; kind++) {
		/* the second round in float32: keys with free low bits */
		rng_state = 900u + (uint64_t)(kind % D_COUNT);
		generate((dist)(kind % D_COUNT), s, y, w, MAX);
		for (int64_t i = 0; kind >= D_COUNT && i < MAX; i++)
			s[i] = (double)(float)s[i];
		for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
			for (size_t c = 0; c < 2; c++) {
				for (int weighted = 0; weighted < 2; weighted++) {
					int64_t n = sizes[z];
					eng_tensor ts = {ENG_F64, 1, {n}, n, s},
					           ty = {ENG_U8, 1, {n}, n, y},
					           tw = {ENG_F64, 1, {n}, n, w};
					eng_auc_data d = {&ts, &ty, weighted ? &tw : NULL,
					                  ENG_LABELS_BINARY};
					eng_sketch *a = eng_sketch_new(caps[c]),
					           *b = eng_sketch_new(caps[c]);
					cr_assert(a && b);
					cr_assert_eq(eng_sketch_add_values(
					                     a, s, y, weighted ? w : NULL, n, NULL),
					             0);
					cr_assert_eq(eng_sketch_add(b, &d, 0, NULL), 0);
					uint8_t *ba, *bb;
					size_t la, lb;
					cr_assert_eq(eng_sketch_serialize(&ba, &la, a), 0);
					cr_assert_eq(eng_sketch_serialize(&bb, &lb, b), 0);
					cr_expect(la == lb && memcmp(ba, bb, la) == 0,
					          "%s n=%lld cap %zu weighted %d: another state",
					          dist_names[kind], (long long)n, caps[c],
					          weighted);
					cr_expect_eq(eng_sketch_weight_added(a),
					             eng_sketch_weight_added(b));
					free(ba);
					free(bb);
					eng_sketch_free(a);
					eng_sketch_free(b);
				}
			}
		}
	}
}

/* ---- serialization ------------------------------------------------------------------------ */

Test(sketch, serialization_round_trip_and_corruption)
{
	enum { N = 20000 };
	static double s[N], w[N];
	static uint8_t y[N];
	rng_state = 5;
	generate(D_NORMAL, s, y, w, N);
	eng_sketch *k = eng_sketch_new(8192);
	cr_assert_eq(eng_sketch_add_values(k, s, y, w, N, NULL), 0);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(eng_sketch_serialize(&buf, &len, k), 0);
	eng_sketch *c;
	cr_assert_eq(eng_sketch_deserialize(&c, buf, len), 0);
	eng_auc_result a = sk(k, ENG_CURVE_ROC), b = sk(c, ENG_CURVE_ROC);
	cr_expect(a.auc == b.auc && a.error_bound == b.error_bound);
	cr_expect_eq(eng_sketch_cap(c), 8192);
	cr_expect_eq(eng_sketch_positives(c), eng_sketch_positives(k));
	eng_sketch_free(c);

	eng_sketch *bad = NULL;
	uint8_t *x = malloc(len);
	cr_expect_eq(eng_sketch_deserialize(&bad, buf, len - 1), ENG_ESTATE);
	cr_expect_eq(eng_sketch_deserialize(&bad, buf, 10), ENG_ESTATE);
	cr_expect_eq(eng_sketch_deserialize(&bad, NULL, 0), ENG_ESTATE);
	memcpy(x, buf, len);
	x[1] = 'X';
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len);
	x[4] = 9; /* version */
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	/* field by field corruption of both versions: test_sketch_codec.c */
	/* random byte flips never crash; what loads is a valid sketch */
	for (int t = 0; t < 2000; t++) {
		memcpy(x, buf, len);
		for (int f = 0; f < 1 + t % 4; f++)
			x[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
		if (eng_sketch_deserialize(&bad, x, len) == 0) {
			eng_auc_result r = sk(bad, ENG_CURVE_ROC);
			cr_expect(!r.defined || (r.auc >= -1e-12 && r.auc <= 1 + 1e-12));
			cr_expect_leq(eng_sketch_memory(bad), eng_sketch_cap(bad));
			eng_sketch_free(bad);
		}
	}
	free(x);
	free(buf);
	eng_sketch_free(k);
}
