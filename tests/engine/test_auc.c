/*
 * test_auc.c - exact ROC AUC / average precision (engine/src/auc.c).
 *
 * A table of small cases with known answers (scikit-learn's), a property
 * test against the O(n^2) Mann-Whitney count and the slow per-positive AP
 * over many random sizes (heavy ties included), and the column carving,
 * keys, curves, logits and error paths.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/auc.h"
#include "rng.h"

#define TOL 1e-12

static eng_tensor vec(const double *v, int64_t n)
{
	eng_tensor t = {ENG_F64, 1, {n}, n, v};
	return t;
}

static eng_tensor mat(const double *v, int64_t n, int64_t c)
{
	eng_tensor t = {ENG_F64, 2, {n, c}, n * c, v};
	return t;
}

/* ---- table ----------------------------------------------------------------------- */

/* No pointers: Criterion copies parameters into the test's process. */
typedef struct table_case {
	char name[32];
	int n;
	double y[12], s[12], w[12];
	bool weighted;
	int curve;
	double max_fpr;
	bool defined;
	double expect;
} table_case;

ParameterizedTestParameters(auc, table)
{
	static table_case cases[] = {
	        {"perfect", 4, {0, 0, 1, 1}, {.1, .2, .3, .4}, {0}, false, 0, 0, true, 1.0},
	        {"inverted", 4, {1, 1, 0, 0}, {.1, .2, .3, .4}, {0}, false, 0, 0, true, 0.0},
	        {"all tied", 4, {1, 0, 1, 0}, {.5, .5, .5, .5}, {0}, false, 0, 0, true, 0.5},
	        {"one class", 3, {1, 1, 1}, {.1, .2, .3}, {0}, false, 0, 0, false, 0},
	        {"only negatives", 2, {0, 0}, {.1, .2}, {0}, false, 0, 0, false, 0},
	        {"empty", 0, {0}, {0}, {0}, false, 0, 0, false, 0},
	        {"weighted",
	         4,
	         {0, 0, 1, 1},
	         {.1, .4, .35, .8},
	         {1, 2, 3, 4},
	         true,
	         0,
	         0,
	         true,
	         0.7142857142857143},
	        {"torchmetrics doc", 4, {0, 1, 1, 0}, {0, .5, .7, .8}, {0}, false, 0, 0, true, 0.5},
	        {"ties roc",
	         5,
	         {0, 1, 1, 0, 1},
	         {.5, .5, .2, .2, .9},
	         {0},
	         false,
	         0,
	         0,
	         true,
	         0.6666666666666666},
	        {"ap",
	         4,
	         {0, 0, 1, 1},
	         {.1, .4, .35, .8},
	         {0},
	         false,
	         1,
	         0,
	         true,
	         0.8333333333333333},
	        {"ap weighted",
	         4,
	         {0, 0, 1, 1},
	         {.1, .4, .35, .8},
	         {1, 2, 3, 4},
	         true,
	         1,
	         0,
	         true,
	         0.9047619047619048},
	        {"ap ties",
	         5,
	         {0, 1, 1, 0, 1},
	         {.5, .5, .2, .2, .9},
	         {0},
	         false,
	         1,
	         0,
	         true,
	         0.7555555555555555},
	        {"ap perfect", 3, {0, 1, 1}, {.1, .5, .9}, {0}, false, 1, 0, true, 1.0},
	        {"max_fpr 0.5",
	         10,
	         {0, 0, 1, 1, 0, 1, 0, 1, 1, 0},
	         {.1, .2, .3, .35, .4, .5, .6, .7, .8, .9},
	         {0},
	         false,
	         0,
	         0.5,
	         true,
	         0.52},
	        {"max_fpr 0.2",
	         10,
	         {0, 0, 1, 1, 0, 1, 0, 1, 1, 0},
	         {.1, .2, .3, .35, .4, .5, .6, .7, .8, .9},
	         {0},
	         false,
	         0,
	         0.2,
	         true,
	         0.4444444444444444},
	        {"max_fpr 1 is full",
	         10,
	         {0, 0, 1, 1, 0, 1, 0, 1, 1, 0},
	         {.1, .2, .3, .35, .4, .5, .6, .7, .8, .9},
	         {0},
	         false,
	         0,
	         1.0,
	         true,
	         0.6},
	        {"max_fpr perfect", 2, {0, 1}, {0, 1}, {0}, false, 0, 0.3, true, 1.0},
	        {"max_fpr inverted",
	         2,
	         {1, 0},
	         {0, 1},
	         {0},
	         false,
	         0,
	         0.3,
	         true,
	         0.4117647058823529},
	        {"signed zeros tie", 2, {1, 0}, {-0.0, 0.0}, {0}, false, 0, 0, true, 0.5},
	        {"infinities",
	         4,
	         {0, 1, 0, 1},
	         {-INFINITY, INFINITY, -1e308, 1e308},
	         {0},
	         false,
	         0,
	         0,
	         true,
	         1.0},
	        {"zero weights drop rows",
	         4,
	         {0, 1, 0, 1},
	         {.9, .1, .2, .8},
	         {0, 0, 1, 1},
	         true,
	         0,
	         0,
	         true,
	         1.0},
	};
	return cr_make_param_array(table_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(table_case *c, auc, table)
{
	eng_tensor s = vec(c->s, c->n), y = vec(c->y, c->n), w = vec(c->w, c->n);
	eng_auc_data d = {&s, &y, c->weighted ? &w : NULL, ENG_LABELS_BINARY};
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	eng_auc_result r;
	eng_error err;
	o.curve = (eng_curve)c->curve;
	o.max_fpr = c->max_fpr;
	cr_assert_eq(eng_auc_exact(&r, NULL, &d, 0, &o, &err), 0, "%s: %s", c->name, err.msg);
	cr_expect_eq(r.defined, c->defined, "%s: defined", c->name);
	if (c->defined)
		cr_expect(fabs(r.auc - c->expect) < 1e-12, "%s: got %.17g want %.17g", c->name,
		          r.auc, c->expect);
	else
		cr_expect(isnan(r.auc), "%s: undefined is NaN", c->name);
}

/* ---- property: equals the slow Mann-Whitney count -------------------------------------- */

static double slow_roc(const double *y, const double *s, const double *w, int64_t n)
{
	double num = 0, P = 0, N = 0;
	for (int64_t i = 0; i < n; i++) {
		if (y[i] == 1)
			P += w[i];
		else
			N += w[i];
		if (y[i] != 1)
			continue;
		for (int64_t j = 0; j < n; j++) {
			if (y[j] == 1)
				continue;
			if (s[i] > s[j])
				num += w[i] * w[j];
			else if (s[i] == s[j])
				num += 0.5 * w[i] * w[j];
		}
	}
	return num / (P * N);
}

/* AP = sum over positives of w_i / P * precision at threshold s_i. */
static double slow_ap(const double *y, const double *s, const double *w, int64_t n)
{
	double P = 0, ap = 0;
	for (int64_t i = 0; i < n; i++)
		P += y[i] == 1 ? w[i] : 0;
	for (int64_t i = 0; i < n; i++) {
		if (y[i] != 1 || w[i] == 0)
			continue;
		double tp = 0, all = 0;
		for (int64_t j = 0; j < n; j++)
			if (s[j] >= s[i]) {
				all += w[j];
				tp += y[j] == 1 ? w[j] : 0;
			}
		ap += w[i] / P * tp / all;
	}
	return ap;
}

Test(auc, matches_slow_mann_whitney_and_ap)
{
	static const int64_t sizes[] = {2, 3, 5, 8, 17, 64, 100, 257, 1000, 2500};
	rng_state = 12345;
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		for (int variant = 0; variant < 4; variant++) {
			int64_t n = sizes[k];
			double *y = malloc(n * sizeof(double)), *s = malloc(n * sizeof(double));
			double *w = malloc(n * sizeof(double));
			for (int64_t i = 0; i < n; i++) {
				y[i] = (double)(rnd() & 1);
				double x = unif() + 0.3 * y[i];
				/* variant 1, 3: heavy ties (few distinct scores) */
				s[i] = (variant & 1) ? floor(x * 4) / 4 : x;
				w[i] = (variant & 2) ? floor(unif() * 4) / 2 : 1.0;
			}
			y[0] = 1, y[1] = 0, w[0] = w[1] = 1; /* both classes present */
			eng_tensor ts = vec(s, n), ty = vec(y, n), tw = vec(w, n);
			eng_auc_data d = {&ts, &ty, (variant & 2) ? &tw : NULL, ENG_LABELS_BINARY};
			eng_auc_opts o = ENG_AUC_OPTS_INIT;
			eng_auc_result r;
			eng_error err;
			cr_assert_eq(eng_auc_exact(&r, NULL, &d, 0, &o, &err), 0);
			double want = slow_roc(y, s, w, n);
			cr_expect(fabs(r.auc - want) < 1e-10, "n=%lld v=%d roc %.15g vs %.15g",
			          (long long)n, variant, r.auc, want);
			o.curve = ENG_CURVE_PR;
			cr_assert_eq(eng_auc_exact(&r, NULL, &d, 0, &o, &err), 0);
			want = slow_ap(y, s, w, n);
			cr_expect(fabs(r.auc - want) < 1e-10, "n=%lld v=%d ap %.15g vs %.15g",
			          (long long)n, variant, r.auc, want);
			free(y);
			free(s);
			free(w);
		}
	}
}

/* float32 keys sort like the doubles they widen to */
Test(auc, float32_scores_match_float64)
{
	enum { N = 3000 };
	static float f[N];
	static double d64[N], y[N];
	rng_state = 99;
	for (int i = 0; i < N; i++) {
		y[i] = (double)(rnd() & 1);
		f[i] = (float)((unif() - 0.5) * (i % 7 == 0 ? 1e30 : 3.0)) + (float)y[i];
		if (i % 11 == 0)
			f[i] = -f[i];
		if (i % 13 == 0)
			f[i] = (i % 2) ? 0.0f : -0.0f;
		d64[i] = f[i];
	}
	eng_tensor t32 = {ENG_F32, 1, {N}, N, f}, t64 = vec(d64, N), ty = vec(y, N);
	eng_auc_data a = {&t32, &ty, NULL, ENG_LABELS_BINARY},
	             b = {&t64, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result ra, rb;
	cr_assert_eq(eng_auc_exact(&ra, NULL, &a, 0, NULL, NULL), 0);
	cr_assert_eq(eng_auc_exact(&rb, NULL, &b, 0, NULL, NULL), 0);
	cr_expect(fabs(ra.auc - rb.auc) < TOL);
	static double ones[N];
	for (int i = 0; i < N; i++)
		ones[i] = 1.0;
	cr_expect(fabs(ra.auc - slow_roc(y, d64, ones, N)) < 1e-10);
}

/* ---- columns ------------------------------------------------------------------------ */

Test(auc, one_vs_rest_columns_and_micro)
{
	enum { N = 200, C = 3 };
	static double s[N * C], ids[N], col[N], yc[N], flat_y[N * C];
	rng_state = 7;
	for (int i = 0; i < N; i++) {
		ids[i] = (double)(rnd() % C);
		for (int c = 0; c < C; c++)
			s[i * C + c] = unif() + (ids[i] == c ? 0.4 : 0.0);
	}
	eng_tensor ts = mat(s, N, C), ty = vec(ids, N);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_CLASS_ID};
	eng_error err;
	cr_assert_eq(eng_auc_columns(&d, &err), C);
	for (int c = 0; c < C; c++) {
		for (int i = 0; i < N; i++) {
			col[i] = s[i * C + c];
			yc[i] = ids[i] == c;
		}
		eng_tensor t1 = vec(col, N), y1 = vec(yc, N);
		eng_auc_data one = {&t1, &y1, NULL, ENG_LABELS_BINARY};
		eng_auc_result a, b;
		cr_assert_eq(eng_auc_exact(&a, NULL, &d, c, NULL, &err), 0);
		cr_assert_eq(eng_auc_exact(&b, NULL, &one, 0, NULL, &err), 0);
		cr_expect(fabs(a.auc - b.auc) < TOL, "column %d", c);
		cr_expect_eq(a.positives, b.positives);
	}
	for (int k = 0; k < N * C; k++)
		flat_y[k] = ids[k / C] == k % C;
	eng_tensor tf = vec(s, N * C), yf = vec(flat_y, N * C);
	eng_auc_data flat = {&tf, &yf, NULL, ENG_LABELS_BINARY};
	eng_auc_result m, f;
	cr_assert_eq(eng_auc_exact(&m, NULL, &d, ENG_AUC_ALL, NULL, &err), 0);
	cr_assert_eq(eng_auc_exact(&f, NULL, &flat, 0, NULL, &err), 0);
	cr_expect(fabs(m.auc - f.auc) < TOL);
	static double ones[N * C];
	for (int k = 0; k < N * C; k++)
		ones[k] = 1.0;
	cr_expect(fabs(m.auc - slow_roc(flat_y, s, ones, N * C)) < 1e-10);
	cr_expect_eq(m.positives, N);
	cr_expect_eq(m.negatives, N * (C - 1));
}

Test(auc, positive_class_and_multilabel_columns)
{
	double s[] = {.1, .9, .8, .2, .3, .7, .6, .4}; /* (4, 2) */
	double y01[] = {1, 0, 1, 0};
	double ml[] = {1, 0, 0, 1, 1, 0, 0, 1};
	eng_tensor ts = mat(s, 4, 2), ty = vec(y01, 4), tm = mat(ml, 4, 2);
	eng_auc_data bin = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_data mlab = {&ts, &tm, NULL, ENG_LABELS_MULTI};
	eng_auc_result r;
	eng_error err;
	/* column 1 scores .9 .2 .7 .4 with labels 1 0 1 0: perfect */
	cr_assert_eq(eng_auc_exact(&r, NULL, &bin, 1, NULL, &err), 0);
	cr_expect(fabs(r.auc - 1.0) < TOL);
	/* column 0 scores .1 .8 .3 .6 with labels 1 0 1 0: inverted */
	cr_assert_eq(eng_auc_exact(&r, NULL, &bin, 0, NULL, &err), 0);
	cr_expect(fabs(r.auc - 0.0) < TOL);
	/* multi-label column 1: labels 0 1 0 1 at .9 .2 .7 .4: inverted */
	cr_assert_eq(eng_auc_exact(&r, NULL, &mlab, 1, NULL, &err), 0);
	cr_expect(fabs(r.auc) < TOL);
	cr_expect_eq(eng_auc_exact(&r, NULL, &bin, 2, NULL, &err), ENG_EINVAL);
	cr_expect_eq(eng_auc_exact(&r, NULL, &bin, ENG_AUC_ALL, NULL, &err), ENG_EINVAL);
}

/* ---- errors ---------------------------------------------------------------------------- */

Test(auc, rejects_bad_inputs_with_index)
{
	double s[] = {.1, .2, .3}, y[] = {0, 2, 1}, yh[] = {0, 0.5, 1}, ok[] = {0, 1, 1};
	double sn[] = {.1, NAN, .3}, wneg[] = {1, -1, 1}, s2[] = {.1, .2};
	eng_tensor ts = vec(s, 3), ty = vec(y, 3), tyh = vec(yh, 3), tok = vec(ok, 3);
	eng_tensor tsn = vec(sn, 3), tw = vec(wneg, 3), ts2 = vec(s2, 2);
	eng_auc_result r;
	eng_error err;
	eng_auc_data d1 = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d1, 0, NULL, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1);
	cr_expect_str_eq(err.field, "y_true");
	eng_auc_data d2 = {&ts, &tyh, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d2, 0, NULL, &err), ENG_ELABEL);
	eng_auc_data d3 = {&tsn, &tok, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d3, 0, NULL, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 1);
	eng_auc_data d4 = {&ts, &tok, &tw, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d4, 0, NULL, &err), ENG_EWEIGHT);
	cr_expect_str_eq(err.field, "sample_weight");
	eng_auc_data d5 = {&ts2, &tok, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d5, 0, NULL, &err), ENG_ESHAPE);
	eng_auc_data d6 = {&ts, &tok, NULL, ENG_LABELS_BINARY};
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	o.curve = ENG_CURVE_PR;
	o.max_fpr = 0.5;
	cr_expect_eq(eng_auc_exact(&r, NULL, &d6, 0, &o, &err), ENG_EINVAL);
	o.curve = ENG_CURVE_ROC;
	o.max_fpr = 1.5;
	cr_expect_eq(eng_auc_exact(&r, NULL, &d6, 0, &o, &err), ENG_EINVAL);
	double ids[] = {0, 3, 1}, sm[] = {1, 0, 0, 1, 0, 1};
	eng_tensor tid = vec(ids, 3), tsm = mat(sm, 3, 2);
	eng_auc_data d7 = {&tsm, &tid, NULL, ENG_LABELS_CLASS_ID};
	cr_expect_eq(eng_auc_exact(&r, NULL, &d7, 0, NULL, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1);
}

/* ---- curves ------------------------------------------------------------------------------ */

Test(auc, curve_end_points_and_downsampling)
{
	enum { N = 5000 };
	static double s[N], y[N];
	rng_state = 3;
	for (int i = 0; i < N; i++) {
		y[i] = (double)(rnd() & 1);
		s[i] = unif() + 0.5 * y[i];
	}
	eng_tensor ts = vec(s, N), ty = vec(y, N);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	eng_auc_curve c = ENG_AUC_CURVE_INIT;
	eng_auc_result r;
	cr_assert_eq(eng_auc_exact(&r, &c, &d, 0, &o, NULL), 0);
	cr_expect_eq(c.n, ENG_AUC_DEFAULT_MAX_POINTS);
	cr_expect(c.x[0] == 0 && c.y[0] == 0 && isnan(c.thresholds[0]));
	cr_expect(c.x[c.n - 1] == 1 && c.y[c.n - 1] == 1);
	double area = 0;
	for (int64_t i = 1; i < c.n; i++) {
		cr_expect(c.x[i] >= c.x[i - 1] && c.y[i] >= c.y[i - 1]);
		if (i > 1)
			cr_expect(c.thresholds[i] < c.thresholds[i - 1]);
		area += (c.x[i] - c.x[i - 1]) * (c.y[i] + c.y[i - 1]) / 2;
	}
	cr_expect(fabs(area - r.auc) < 2e-3, "downsampled area %g vs %g", area, r.auc);
	eng_auc_curve_free(&c);

	o.curve = ENG_CURVE_PR;
	o.max_points = 2;
	cr_assert_eq(eng_auc_exact(&r, &c, &d, 0, &o, NULL), 0);
	cr_expect_eq(c.n, 2);
	cr_expect(c.x[0] == 0 && c.y[0] == 1);
	cr_expect(c.x[1] == 1 && fabs(c.y[1] - 0.5) < 0.05); /* all predicted positive */
	eng_auc_curve_free(&c);
	eng_auc_curve_free(&c); /* idempotent */
}

/* ---- logits --------------------------------------------------------------------------------- */

Test(auc, logits_sigmoid_and_softmax)
{
	double z[] = {0, 1000, -1000, 2, 1, 0};
	double out[6];
	eng_tensor t = vec(z, 6);
	cr_assert_eq(eng_auc_logits(out, &t, false), 0);
	cr_expect(fabs(out[0] - 0.5) < TOL);
	cr_expect(out[1] == 1.0 && out[2] == 0.0);
	cr_expect(fabs(out[3] - 1 / (1 + exp(-2.0))) < TOL);
	cr_expect_eq(eng_auc_logits(out, &t, true), ENG_ESHAPE);
	eng_tensor m = mat(z, 2, 3);
	cr_assert_eq(eng_auc_logits(out, &m, true), 0);
	cr_expect(fabs(out[0] + out[1] + out[2] - 1) < TOL);
	cr_expect(fabs(out[3] + out[4] + out[5] - 1) < TOL);
	cr_expect(out[1] == 1.0);
	cr_expect(out[3] > out[4] && out[4] > out[5]);
}

/* Exact AUC from logits ranks by the logits (binary) or a log-softmax that
 * keeps distinct values distinct (one-vs-rest): logits 40 and 41 are one
 * probability, 1.0, in double, but not one key. */
Test(auc, logit_keys_keep_large_logits_apart)
{
	double z[] = {40, 41, -800, -790};
	double k[4];
	eng_tensor t = vec(z, 4);
	cr_assert_eq(eng_auc_logit_keys(k, &t, false), 0);
	for (int i = 0; i < 4; i++)
		cr_expect_eq(k[i], z[i]);
	uint8_t y[] = {0, 1, 0, 1};
	eng_auc_result r;
	eng_error err;
	cr_assert_eq(eng_auc_exact_values(&r, NULL, k, y, NULL, 4, NULL, &err), 0);
	/* 3 of 4 pairs ordered (-790 < 40); by probabilities 0.625, as
	 * sigmoid(40) == sigmoid(41) == 1 and sigmoid(-790) == sigmoid(-800) == 0 */
	cr_expect(fabs(r.auc - 0.75) < TOL, "auc %.17g", r.auc);
	cr_expect(fabs(eng_auc_key_prob(2.0, false) - 1 / (1 + exp(-2.0))) < TOL);
	cr_expect_eq(eng_auc_key_prob(-800, false), 0.0);

	/* rows (40, 0, 1) and (41, 0, 1): the top class is -log1p(rest) */
	double zz[] = {40, 0, 1, 41, 0, 1, 0, 2, 2};
	double kk[9];
	eng_tensor m = mat(zz, 3, 3);
	cr_expect_eq(eng_auc_logit_keys(kk, &t, true), ENG_ESHAPE);
	cr_assert_eq(eng_auc_logit_keys(kk, &m, true), 0);
	double rest0 = exp(-40.0) + exp(-39.0), rest1 = exp(-41.0) + exp(-40.0);
	cr_expect(fabs(kk[0] + log1p(rest0)) <= 1e-30, "%.17g", kk[0]);
	cr_expect(fabs(kk[3] + log1p(rest1)) <= 1e-30, "%.17g", kk[3]);
	cr_expect(kk[3] > kk[0] && kk[0] < 0); /* distinct, ordered, below 0 */
	cr_expect(fabs(kk[1] - (-40 - log1p(rest0))) < TOL);
	cr_expect(fabs(kk[2] - (-39 - log1p(rest0))) < TOL);
	/* tied maxima (0, 2, 2) share one key, the exact log(1/2.135...) */
	cr_expect_eq(kk[7], kk[8]);
	double lse = log(1 + 2 * exp(2.0));
	cr_expect(fabs(kk[7] - (2 - lse)) < TOL && fabs(kk[6] - (0 - lse)) < TOL);
	for (int i = 0; i < 9; i++)
		cr_expect(fabs(eng_auc_key_prob(kk[i], true) -
		               exp(zz[i]) / (exp(zz[3 * (i / 3)]) + exp(zz[3 * (i / 3) + 1]) +
		                             exp(zz[3 * (i / 3) + 2]))) < TOL);
	/* a NaN or +inf makes its row NaN (the caller reports it) */
	double zn[] = {1, NAN, 0, INFINITY, 1, 2};
	eng_tensor mn = mat(zn, 2, 3);
	cr_assert_eq(eng_auc_logit_keys(kk, &mn, true), 0);
	for (int i = 0; i < 6; i++)
		cr_expect(isnan(kk[i]));

	/* curve thresholds back to probabilities; NaN (no threshold) kept */
	eng_auc_curve c = ENG_AUC_CURVE_INIT;
	cr_assert_eq(eng_auc_exact_values(&r, &c, k, y, NULL, 4, NULL, &err), 0);
	eng_auc_curve_key_probs(&c, false);
	cr_expect(isnan(c.thresholds[0]));
	cr_expect_eq(c.thresholds[1], 1.0); /* sigmoid(41) */
	cr_expect_eq(c.thresholds[4], 0.0); /* sigmoid(-800) in double */
	cr_expect_eq(c.n, 5);
	eng_auc_curve_free(&c);
	eng_auc_curve_key_probs(NULL, false);
}

Test(auc, raw_arrays_entry_point)
{
	double s[] = {.1, .4, .35, .8}, w[] = {1, 2, 3, 4};
	uint8_t y[] = {0, 0, 1, 1}, bad[] = {0, 3, 1, 1};
	eng_auc_result r;
	eng_error err;
	cr_assert_eq(eng_auc_exact_values(&r, NULL, s, y, w, 4, NULL, &err), 0);
	cr_expect(fabs(r.auc - 0.7142857142857143) < TOL);
	cr_assert_eq(eng_auc_exact_values(&r, NULL, s, y, NULL, 4, NULL, &err), 0);
	cr_expect(fabs(r.auc - 0.75) < TOL);
	cr_expect_eq(eng_auc_exact_values(&r, NULL, s, bad, NULL, 4, NULL, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1);
}

/* The unweighted path sorts reduced keys with the label in the lowest bit
 * (32-bit words, 64-bit words, or bare 64-bit keys when -Inf and +Inf meet):
 * every layout, both digit widths, against the O(n^2) count, with signed
 * zeros, subnormals and infinities; the curve's thresholds are the scores. */
Test(auc, unweighted_key_layouts_match_slow_mann_whitney)
{
	static const int64_t sizes[] = {7, 300, 5000};
	rng_state = 4242;
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		for (int v = 0; v < 5; v++) {
			int64_t n = sizes[k];
			double *y = malloc(n * sizeof(double)), *s = malloc(n * sizeof(double));
			double *w = malloc(n * sizeof(double));
			for (int64_t i = 0; i < n; i++) {
				y[i] = (double)(rnd() & 1);
				w[i] = 1.0;
				double x = normal() + y[i];
				switch (v) {
				case 0: s[i] = (float)x; break;
				case 1: s[i] = x; break;
				case 2:
					s[i] = (double[]){-0.0,
					                  0.0,
					                  4.9e-324,
					                  -4.9e-324,
					                  1e-310,
					                  -1e-310,
					                  2.2250738585072014e-308,
					                  0.5}[rnd() % 8];
					break;
				case 3:
					s[i] = i % 5 == 0 ? -INFINITY : i % 7 == 0 ? INFINITY : x;
					break;
				default: s[i] = floor(x * 2); break;
				}
			}
			y[0] = 1, y[1] = 0;
			eng_tensor ts = vec(s, n), ty = vec(y, n);
			eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
			eng_auc_opts o = ENG_AUC_OPTS_INIT;
			eng_auc_result r;
			eng_auc_curve c;
			eng_error err;
			cr_assert_eq(eng_auc_exact(&r, &c, &d, 0, &o, &err), 0);
			double want = slow_roc(y, s, w, n);
			cr_expect(fabs(r.auc - want) < 1e-12, "n=%lld v=%d roc %.17g vs %.17g",
			          (long long)n, v, r.auc, want);
			cr_expect_eq(r.positives + r.negatives, n);
			/* thresholds: decreasing, each one of the scores */
			for (int64_t i = 1; i < c.n && n <= 300; i++) {
				cr_expect(i == 1 || c.thresholds[i] < c.thresholds[i - 1]);
				bool found = false;
				for (int64_t j = 0; j < n && !found; j++)
					found = s[j] == c.thresholds[i];
				cr_expect(found, "v=%d threshold %a is a score", v,
				          c.thresholds[i]);
			}
			eng_auc_curve_free(&c);
			free(y);
			free(s);
			free(w);
		}
	}
}
