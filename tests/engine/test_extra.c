/*
 * test_extra.c - perplexity, top-k accuracy and calibration riding on a loss
 * (engine/src/extra.c, engine/src/calib.c).
 *
 * Expected figures are tables generated offline from each anchor's
 * definition (extra_cases.h, by tests/data/gen_extra_metrics.py: TorchMetrics'
 * calibration binning and norms, scikit-learn's calibration_curve,
 * brier_score_loss and top_k_accuracy_score, TorchMetrics' Perplexity). Each
 * table case runs through every input path that must agree: float64 and
 * float32 logits (the vectorized row kernel), probabilities, and a class
 * axis that is not last. Then the rules no table shows: ties, ignore_class,
 * what does not enter perplexity, bin edges, additivity, and the errors.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "extra_cases.h"
#include "loss_helpers.h"

#define TOL   1e-12
#define TOL32 2e-6 /* float32 logits: float exp, sums in float lanes */

static eng_loss_result *compute(const eng_tensor *yt, const eng_tensor *yp, const eng_loss_opts *o)
{
	eng_loss_result *r = NULL;
	eng_error err = {0};
	int rc = eng_loss_compute(&r, yt, yp, o, NULL, &err);
	cr_assert_eq(rc, 0, "eng_loss_compute failed: %d %s", rc, err.msg);
	cr_assert_not_null(r->extra);
	return r;
}

static void check_bins(const eng_extra_result *e, int bins, const int64_t *cnt, const double *conf,
                       const double *acc, double tol)
{
	cr_assert_eq(e->bins, bins);
	for (int b = 0; b < bins; b++) {
		const eng_calib_bin *k = &e->bin[b];
		cr_expect_eq(k->count, cnt[b], "bin %d count %lld, expected %lld", b,
		             (long long)k->count, (long long)cnt[b]);
		if (cnt[b] == 0) {
			cr_expect(k->weight == 0, "empty bin %d has weight", b);
			continue;
		}
		NEAR(k->conf / k->weight, conf[b], tol);
		NEAR(k->acc / k->weight, acc[b], tol);
	}
}

static void check_summary(const eng_extra_result *e, double ece, double mce, double rms,
                          double brier, double tol)
{
	eng_calib_summary s;
	cr_assert(eng_calib_summarize(&s, e));
	NEAR(s.ece, ece, tol);
	NEAR(s.mce, mce, tol);
	NEAR(s.rmsce, rms, tol);
	NEAR(s.brier, brier, tol);
}

/* ---- binary calibration --------------------------------------------------------------- */

Test(extra, binary_calibration_table)
{
	for (size_t i = 0; i < sizeof(bin_calib_cases) / sizeof(bin_calib_cases[0]); i++) {
		const bin_calib_case *c = &bin_calib_cases[i];
		eng_tensor yt = tens(ENG_F64, c->y, 1, I64(c->n));
		eng_tensor sw = tens(ENG_F64, c->w, 1, I64(c->n));
		float *lf = malloc(sizeof(float) * (size_t)c->n);
		for (int k = 0; k < c->n; k++)
			lf[k] = (float)c->logit[k];
		eng_tensor yp[3] = {tens(ENG_F64, c->p, 1, I64(c->n)),
		                    tens(ENG_F64, c->logit, 1, I64(c->n)),
		                    tens(ENG_F32, lf, 1, I64(c->n))};
		for (int path = 0; path < 3; path++) {
			eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
			eng_loss_opts o = ENG_LOSS_OPTS_INIT;
			x.bins = c->bins;
			o.kind = ENG_LOSS_BINARY_CE;
			o.from_logits = path > 0;
			o.sample_weight = c->weighted ? &sw : NULL;
			o.extra = &x;
			eng_loss_result *r = compute(&yt, &yp[path], &o);
			double tol = path == 2 ? TOL32 : 1e-12;
			cr_expect_eq(r->extra->calib_count, c->n);
			check_bins(r->extra, c->bins, c->cnt, c->conf, c->acc, tol);
			check_summary(r->extra, c->ece, c->mce, c->rmsce, c->brier, tol);
			cr_expect(!r->extra->perplexity && r->extra->ntop == 0);
			eng_loss_result_free(r);
		}
		free(lf);
	}
}

/* ---- categorical: calibration, top-k, perplexity ----------------------------------------- */

/* Runs case c through one input path; layout 1 puts the class axis first
 * ((C, n) with axis 0), so rows are strided. */
static void run_cat(const cat_case *c, eng_dtype dt, bool logits, int layout)
{
	int n = c->n, C = c->C;
	const double *src = logits ? c->x : c->p;
	double *d = malloc(sizeof(double) * (size_t)(n * C));
	float *f = malloc(sizeof(float) * (size_t)(n * C));
	for (int i = 0; i < n; i++)
		for (int k = 0; k < C; k++) {
			int at = layout ? k * n + i : i * C + k;
			d[at] = src[i * C + k];
			f[at] = (float)src[i * C + k];
		}
	eng_tensor yp = layout ? tens(dt, dt == ENG_F32 ? (void *)f : (void *)d, 2, I64(C), I64(n))
	                       : tens(dt, dt == ENG_F32 ? (void *)f : (void *)d, 2, I64(n), I64(C));
	eng_tensor yt = tens(ENG_F64, c->y, 1, I64(n));
	eng_tensor sw = tens(ENG_F64, c->w, 1, I64(n));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.bins = c->bins;
	x.ntop = c->nk;
	memcpy(x.top_k, c->ks, sizeof(int64_t) * (size_t)c->nk);
	x.perplexity = true;
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = logits;
	o.axis = layout ? 0 : -1;
	o.sample_weight = c->weighted ? &sw : NULL;
	o.extra = &x;
	eng_loss_result *r = compute(&yt, &yp, &o);
	/* float32 logits are rounded inputs: the table's float64 figures hold
	 * to float precision, and the counts exactly unless a rounding moved a
	 * confidence across an edge (the generator keeps them 1e-6 away) */
	double tol = dt == ENG_F32 ? TOL32 : 1e-12;
	const eng_extra_result *e = r->extra;
	double v;
	for (int k = 0; k < c->nk; k++) {
		cr_assert(eng_extra_top_k(e, k, &v));
		NEAR(v, c->topk[k], 1e-15);
	}
	cr_assert(eng_extra_perplexity(e, &v));
	NEAR(v, logits ? c->ppl : c->ppl_prob, (logits ? c->ppl : c->ppl_prob) * tol);
	check_bins(e, c->bins, c->cnt, c->conf, c->acc, tol);
	check_summary(e, c->ece, c->mce, c->rmsce, c->brier, tol);
	eng_loss_result_free(r);
	free(d);
	free(f);
}

Test(extra, categorical_table_float64_logits)
{
	for (size_t i = 0; i < sizeof(cat_cases) / sizeof(cat_cases[0]); i++)
		run_cat(&cat_cases[i], ENG_F64, true, 0);
}

Test(extra, categorical_table_float32_logits)
{
	for (size_t i = 0; i < sizeof(cat_cases) / sizeof(cat_cases[0]); i++)
		run_cat(&cat_cases[i], ENG_F32, true, 0);
}

Test(extra, categorical_table_probabilities)
{
	for (size_t i = 0; i < sizeof(cat_cases) / sizeof(cat_cases[0]); i++)
		run_cat(&cat_cases[i], ENG_F64, false, 0);
}

Test(extra, categorical_table_class_axis_first)
{
	for (size_t i = 0; i < sizeof(cat_cases) / sizeof(cat_cases[0]); i++) {
		run_cat(&cat_cases[i], ENG_F64, true, 1);
		run_cat(&cat_cases[i], ENG_F32, true, 1);
	}
}

/* Long float32 rows (the 64-wide float blocks of the kernel) against the
 * double path of the same numbers. */
Test(extra, float32_long_rows_match_double)
{
	int n = 37, C = 301;
	float *f = malloc(sizeof(float) * (size_t)(n * C));
	double *d = malloc(sizeof(double) * (size_t)(n * C));
	double *y = malloc(sizeof(double) * (size_t)n);
	for (int i = 0; i < n * C; i++) {
		f[i] = (float)(sin(i * 0.7) * 4 + cos(i * 0.013) * 3);
		d[i] = f[i];
	}
	for (int i = 0; i < n; i++)
		y[i] = (i * 37) % C;
	eng_tensor yt = tens(ENG_F64, y, 1, I64(n));
	eng_tensor tf = tens(ENG_F32, f, 2, I64(n), I64(C));
	eng_tensor td = tens(ENG_F64, d, 2, I64(n), I64(C));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.bins = 10;
	x.ntop = 3;
	x.top_k[0] = 1;
	x.top_k[1] = 5;
	x.top_k[2] = 100;
	x.perplexity = true;
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	o.label_smoothing = 0.1; /* so perplexity is computed here, not copied */
	o.extra = &x;
	eng_loss_result *a = compute(&yt, &tf, &o), *b = compute(&yt, &td, &o);
	for (int k = 0; k < 3; k++)
		cr_expect_eq(a->extra->top_correct[k], b->extra->top_correct[k]);
	NEAR(a->extra->nll_sum, b->extra->nll_sum, 1e-6 * b->extra->nll_sum);
	NEAR(a->extra->brier_sum, b->extra->brier_sum, 1e-6 * b->extra->brier_sum);
	for (int k = 0; k < 10; k++) {
		cr_expect_eq(a->extra->bin[k].count, b->extra->bin[k].count);
		NEAR(a->extra->bin[k].conf, b->extra->bin[k].conf, 1e-6);
	}
	eng_loss_result_free(a);
	eng_loss_result_free(b);
	free(f);
	free(d);
	free(y);
}

/*
 * The same with the figures gathered inside the loss pass (sparse CE from
 * float32 logits, class axis last, more than 32 classes: on AVX-512 CPUs
 * rows_block's kernel does it), with class weights (so perplexity is
 * computed, not copied), sample weights, ignored positions and a NaN row
 * under nan_policy propagate, against the double path of the same numbers.
 */
Test(extra, fused_loss_pass_matches_double)
{
	int n = 203, C = 257;
	float *f = malloc(sizeof(float) * (size_t)(n * C));
	double *d = malloc(sizeof(double) * (size_t)(n * C));
	double *y = malloc(sizeof(double) * (size_t)n), *w = malloc(sizeof(double) * (size_t)n);
	double *cwv = malloc(sizeof(double) * (size_t)C);
	for (int i = 0; i < n * C; i++) {
		f[i] = (float)(sin(i * 0.37) * 5 + cos(i * 0.011) * 2);
		d[i] = f[i];
	}
	for (int i = 0; i < n; i++) {
		y[i] = i % 17 == 3 ? -1 : (i * 53) % C;
		w[i] = 0.5 + (i % 5);
	}
	for (int c = 0; c < C; c++)
		cwv[c] = 1 + c % 3;
	for (int nanrow = 0; nanrow < 2; nanrow++) {
		if (nanrow) {
			f[40 * C + 7] = NAN;
			d[40 * C + 7] = NAN;
		}
		eng_tensor yt = tens(ENG_F64, y, 1, I64(n)), sw = tens(ENG_F64, w, 1, I64(n));
		eng_tensor cw = tens(ENG_F64, cwv, 1, I64(C));
		eng_tensor tf = tens(ENG_F32, f, 2, I64(n), I64(C));
		eng_tensor td = tens(ENG_F64, d, 2, I64(n), I64(C));
		eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		x.bins = 12;
		x.ntop = 3;
		x.top_k[0] = 1;
		x.top_k[1] = 2;
		x.top_k[2] = 50;
		x.perplexity = true;
		o.from_logits = true;
		o.has_ignore_class = true;
		o.ignore_class = -1;
		o.sample_weight = &sw;
		o.class_weight = &cw;
		o.propagate_nan = nanrow;
		o.extra = &x;
		for (int pc = 0; pc < 2; pc++) {
			o.per_class = pc;
			eng_loss_result *a = compute(&yt, &tf, &o), *b = compute(&yt, &td, &o);
			const eng_extra_result *ea = a->extra, *eb = b->extra;
			cr_expect_eq(ea->top_count, n - 12);
			for (int k = 0; k < 3; k++)
				cr_expect_eq(ea->top_correct[k], eb->top_correct[k]);
			cr_expect_eq(ea->nll_count, eb->nll_count);
			NEAR(ea->nll_weight, eb->nll_weight, 1e-9);
			if (nanrow) {
				cr_expect(isnan(ea->nll_sum) && isnan(eb->nll_sum));
				cr_expect(isnan(ea->brier_sum) && isnan(eb->brier_sum));
			} else {
				NEAR(ea->nll_sum, eb->nll_sum, 1e-6 * eb->nll_sum);
				NEAR(ea->brier_sum, eb->brier_sum, 1e-6 * eb->brier_sum);
			}
			cr_expect_eq(ea->calib_count, eb->calib_count);
			for (int k = 0; k < 12; k++) {
				cr_expect_eq(ea->bin[k].count, eb->bin[k].count, "bin %d", k);
				NEAR(ea->bin[k].conf, eb->bin[k].conf, 1e-6);
				NEAR(ea->bin[k].acc, eb->bin[k].acc, 1e-12);
			}
			eng_loss_result_free(a);
			eng_loss_result_free(b);
		}
	}
	free(f);
	free(d);
	free(y);
	free(w);
	free(cwv);
}

/* ---- rules -------------------------------------------------------------------------------- */

Test(extra, ties_count_for_the_true_class)
{
	/* row 0: all equal; row 1: two classes tie above the true one */
	eng_tensor yp = tens(ENG_F64, D(1, 1, 1, 1, 3, 3, 2, 0), 2, I64(2), I64(4));
	eng_tensor yt = tens(ENG_F64, D(3, 2), 1, I64(2));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.ntop = 3;
	x.top_k[0] = 1;
	x.top_k[1] = 2;
	x.top_k[2] = 3;
	o.from_logits = true;
	o.extra = &x;
	eng_loss_result *r = compute(&yt, &yp, &o);
	cr_expect_eq(r->extra->top_correct[0], 1); /* row 0 only */
	cr_expect_eq(r->extra->top_correct[1], 1); /* 2 classes above row 1's true class */
	cr_expect_eq(r->extra->top_correct[2], 2);
	cr_expect_eq(r->correct, 0, "accuracy takes the first argmax, class 0 for row 0");
	eng_loss_result_free(r);
}

Test(extra, perplexity_ignores_class_weight_smoothing_and_cost)
{
	const cat_case *c = &cat_cases[0];
	eng_tensor yp = tens(ENG_F64, c->x, 2, I64(c->n), I64(c->C));
	eng_tensor yt = tens(ENG_F64, c->y, 1, I64(c->n));
	eng_tensor cw = tens(ENG_F64, D(1, 2, 3, 4, 5), 1, I64(5));
	double cost[25];
	for (int i = 0; i < 25; i++)
		cost[i] = 1 + i % 3;
	eng_tensor cm = tens(ENG_F64, cost, 2, I64(5), I64(5));
	for (int v = 0; v < 3; v++) {
		eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		x.perplexity = true;
		o.from_logits = true;
		o.class_weight = v == 0 ? &cw : NULL;
		o.label_smoothing = v == 1 ? 0.2 : 0;
		o.cost_matrix = v == 2 ? &cm : NULL;
		o.extra = &x;
		eng_loss_result *r = compute(&yt, &yp, &o);
		double ppl, loss;
		cr_assert(eng_extra_perplexity(r->extra, &ppl));
		NEAR(ppl, c->ppl, c->ppl * 1e-12);
		cr_assert(eng_loss_result_value(r, ENG_RED_MEAN, &loss));
		cr_expect(fabs(exp(loss) - c->ppl) > 1e-3, "variant %d: the loss itself differs",
		          v);
		eng_loss_result_free(r);
	}
}

Test(extra, perplexity_of_distribution_targets)
{
	eng_tensor yp = tens(ENG_F64, dist_x, 2, I64(DIST_N), I64(DIST_C));
	eng_tensor yt = tens(ENG_F64, dist_t, 2, I64(DIST_N), I64(DIST_C));
	eng_tensor sw = tens(ENG_F64, dist_w, 1, I64(DIST_N));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.perplexity = true;
	o.kind = ENG_LOSS_CATEGORICAL_CE;
	o.from_logits = true;
	o.sample_weight = &sw;
	o.extra = &x;
	eng_loss_result *r = compute(&yt, &yp, &o);
	double v;
	cr_assert(eng_extra_perplexity(r->extra, &v));
	NEAR(v, dist_ppl, dist_ppl * 1e-12);
	eng_loss_result_free(r);
}

Test(extra, ignored_positions_count_nowhere)
{
	eng_tensor yp = tens(ENG_F64, D(2, 1, 0, 0, 1, 2, 5, 0, 0), 2, I64(3), I64(3));
	eng_tensor yt = tens(ENG_F64, D(0, -100, -100), 1, I64(3));
	eng_tensor all = tens(ENG_F64, D(-100, -100, -100), 1, I64(3));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.ntop = 1;
	x.top_k[0] = 1;
	x.bins = 3;
	x.perplexity = true;
	o.from_logits = true;
	o.has_ignore_class = true;
	o.ignore_class = -100;
	o.extra = &x;
	eng_loss_result *r = compute(&yt, &yp, &o);
	double v;
	cr_expect_eq(r->extra->top_count, 1);
	cr_expect_eq(r->extra->calib_count, 1);
	cr_assert(eng_extra_perplexity(r->extra, &v));
	NEAR(v, exp(log(exp(2.0) + exp(1.0) + 1) - 2), 1e-12);
	eng_loss_result_free(r);
	r = compute(&all, &yp, &o);
	cr_expect(!eng_extra_perplexity(r->extra, &v) && isnan(v));
	cr_expect(!eng_extra_top_k(r->extra, 0, &v));
	eng_calib_summary s;
	cr_expect(!eng_calib_summarize(&s, r->extra));
	eng_loss_result_free(r);
}

Test(extra, bin_edges)
{
	cr_expect_eq(eng_calib_bin_of(0.0, 10), 0);
	cr_expect_eq(eng_calib_bin_of(1.0, 10), 9);
	cr_expect_eq(eng_calib_bin_of(0.5, 2), 1);
	cr_expect_eq(eng_calib_bin_of(nextafter(0.5, 0), 2), 0);
	cr_expect_eq(eng_calib_bin_of(0.1 * 3, 10), 3); /* 0.30000000000000004 */
	cr_expect_eq(eng_calib_bin_of(0.3, 10), 3);     /* 0.299999999999999988898 >= 3/10 */
	cr_expect_eq(eng_calib_bin_of(0.7, 10), 7);
	cr_expect_eq(eng_calib_bin_of(nextafter(0.7, 0), 10), 6);
	for (int B = 1; B <= 1000; B += 37)
		for (int b = 0; b < B; b++) {
			double lo = (double)b / B;
			cr_assert_eq(eng_calib_bin_of(lo, B), b, "B %d edge %d", B, b);
			if (b > 0)
				cr_assert_eq(eng_calib_bin_of(nextafter(lo, 0), B), b - 1);
		}
}

Test(extra, merge_is_addition)
{
	const cat_case *c = &cat_cases[1];
	int h = c->n / 2;
	eng_tensor yp = tens(ENG_F64, c->x, 2, I64(c->n), I64(c->C));
	eng_tensor yt = tens(ENG_F64, c->y, 1, I64(c->n));
	eng_tensor yp1 = tens(ENG_F64, c->x, 2, I64(h), I64(c->C));
	eng_tensor yt1 = tens(ENG_F64, c->y, 1, I64(h));
	eng_tensor yp2 = tens(ENG_F64, c->x + h * c->C, 2, I64(c->n - h), I64(c->C));
	eng_tensor yt2 = tens(ENG_F64, c->y + h, 1, I64(c->n - h));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	x.bins = c->bins;
	x.ntop = 2;
	x.top_k[0] = 1;
	x.top_k[1] = 3;
	x.perplexity = true;
	o.from_logits = true;
	o.extra = &x;
	eng_loss_result *all = compute(&yt, &yp, &o);
	eng_loss_result *a = compute(&yt1, &yp1, &o), *b = compute(&yt2, &yp2, &o);
	cr_assert_eq(eng_loss_result_merge(a, b), 0);
	eng_calib_summary s1, s2;
	cr_assert(eng_calib_summarize(&s1, all->extra) && eng_calib_summarize(&s2, a->extra));
	NEAR(s1.ece, s2.ece, 1e-12);
	NEAR(s1.brier, s2.brier, 1e-12);
	cr_expect_eq(a->extra->top_correct[1], all->extra->top_correct[1]);
	double p1, p2;
	cr_assert(eng_extra_perplexity(all->extra, &p1) && eng_extra_perplexity(a->extra, &p2));
	NEAR(p1, p2, p1 * 1e-12);
	/* another configuration does not merge */
	x.bins = c->bins + 1;
	eng_loss_result *other = compute(&yt2, &yp2, &o);
	cr_expect_eq(eng_loss_result_merge(a, other), ENG_ESTATE);
	eng_loss_result_free(other);
	eng_loss_result_free(all);
	eng_loss_result_free(a);
	eng_loss_result_free(b);
}

/* ---- errors ---------------------------------------------------------------------------------- */

static int fails(eng_loss_kind kind, const eng_extra_opts *x, const char *field)
{
	eng_tensor yp = tens(ENG_F64, D(0.2, 0.8, 0.6, 0.4), 2, I64(2), I64(2));
	eng_tensor yt2 = tens(ENG_F64, D(1, 0), 1, I64(2));
	eng_tensor ytb = tens(ENG_F64, D(1, 0, 1, 0), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_result *r = NULL;
	eng_error err = {0};
	o.kind = kind;
	o.extra = x;
	int rc =
	        eng_loss_compute(&r, kind == ENG_LOSS_SPARSE_CE ? &yt2 : &ytb, &yp, &o, NULL, &err);
	cr_expect_null(r);
	cr_expect_str_eq(err.field ? err.field : "", field);
	eng_loss_result_free(r);
	return rc;
}

Test(extra, errors)
{
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	x.ntop = 1;
	x.top_k[0] = 0;
	cr_expect_eq(fails(ENG_LOSS_SPARSE_CE, &x, "top_k"), ENG_EINVAL);
	x.top_k[0] = 3; /* C = 2 */
	cr_expect_eq(fails(ENG_LOSS_SPARSE_CE, &x, "top_k"), ENG_EINVAL);
	x.ntop = 2;
	x.top_k[0] = 2;
	x.top_k[1] = 1;
	cr_expect_eq(fails(ENG_LOSS_SPARSE_CE, &x, "top_k"), ENG_EINVAL);
	x.top_k[0] = 1;
	x.top_k[1] = 2;
	cr_expect_eq(fails(ENG_LOSS_BINARY_CE, &x, "top_k"), ENG_EINVAL);
	eng_extra_opts y = ENG_EXTRA_OPTS_INIT;
	y.bins = ENG_CALIB_MAX_BINS + 1;
	cr_expect_eq(fails(ENG_LOSS_SPARSE_CE, &y, "calibration"), ENG_EINVAL);
	y.bins = -1;
	cr_expect_eq(fails(ENG_LOSS_BINARY_CE, &y, "calibration"), ENG_EINVAL);
	y.bins = 10;
	cr_expect_eq(fails(ENG_LOSS_MSE, &y, "calibration"), ENG_EINVAL);
	eng_extra_opts z = ENG_EXTRA_OPTS_INIT;
	z.perplexity = true;
	cr_expect_eq(fails(ENG_LOSS_BINARY_CE, &z, "perplexity"), ENG_EINVAL);
}

/* Confidences exactly on bin edges: row r has k = r % 40 + 1 tied maxima
 * and the other classes far below (their exp underflows in float), so its
 * confidence in the fused float32 pass is exactly 1 / k, an edge b / B
 * whenever k divides B. Every bin count
 * equals eng_calib_bin_of's, for bin counts that take the fused pass's
 * edge table (<= 64) and those that do not. */
Test(extra, fused_bins_on_edges_match_calib_bin_of)
{
	enum { N = 200, C = 40 };
	static float f[N * C];
	static double d[N * C];
	static double y[N];
	static const int Bs[] = {1, 2, 3, 5, 8, 10, 20, 40, 64, 65, 100, 1000};
	for (int r = 0; r < N; r++) {
		int k = r % C + 1;
		for (int c = 0; c < C; c++)
			d[r * C + c] = f[r * C + c] = c < k ? 0.0f : -200.0f;
		y[r] = (r * 7) % C;
	}
	eng_tensor yt = tens(ENG_F64, y, 1, I64(N));
	eng_tensor tf = tens(ENG_F32, f, 2, I64(N), I64(C));
	eng_tensor td = tens(ENG_F64, d, 2, I64(N), I64(C));
	for (size_t i = 0; i < sizeof Bs / sizeof Bs[0]; i++) {
		int B = Bs[i];
		eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		x.bins = B;
		o.from_logits = true;
		o.extra = &x;
		eng_loss_result *a = compute(&yt, &tf, &o), *b = compute(&yt, &td, &o);
		int64_t *want = calloc((size_t)B, sizeof(int64_t));
		for (int r = 0; r < N; r++)
			want[eng_calib_bin_of(1.0 / (double)(r % C + 1), B)]++;
		/* (the double path's confidence is exp(-log k), an ulp off 1 / k,
		 * so only its sums are compared) */
		double ca = 0, cb = 0;
		for (int k = 0; k < B; k++) {
			cr_expect_eq(a->extra->bin[k].count, want[k], "B=%d bin %d: %lld vs %lld",
			             B, k, (long long)a->extra->bin[k].count, (long long)want[k]);
			ca += a->extra->bin[k].conf;
			cb += b->extra->bin[k].conf;
		}
		NEAR(ca, cb, 1e-12 * cb);
		NEAR(a->extra->brier_sum, b->extra->brier_sum, 1e-9 * b->extra->brier_sum);
		free(want);
		eng_loss_result_free(a);
		eng_loss_result_free(b);
	}
}

/* A plan run task by task (the early loss: api/src/loss.c) over labels one
 * of which is out of range: the metrics of a task whose loss found the bad
 * label are not run (they index a row by the label: 2e9 classes past its
 * end), and the finish reports the label as the one-shot compute does;
 * float64 and float32, logits and probabilities. */
static void plan_with_bad_labels(eng_dtype dt, bool logits)
{
	enum { N = 200000, C = 4 };
	double *p = malloc(sizeof(double) * N * C), *y = malloc(sizeof(double) * N);
	float *f = malloc(sizeof(float) * N * C);
	cr_assert(p && y && f);
	for (int i = 0; i < N; i++) {
		y[i] = i % C;
		for (int k = 0; k < C; k++) {
			p[i * C + k] = logits ? 0.1 * (double)((i + k) % 7) : 0.25;
			f[i * C + k] = (float)p[i * C + k];
		}
	}
	y[5] = 2e9;
	y[N - 3] = -7;
	eng_tensor yp = tens(dt, dt == ENG_F32 ? (void *)f : (void *)p, 2, I64(N), I64(C));
	eng_tensor yt = tens(ENG_F64, y, 1, I64(N));
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	x.ntop = 2;
	x.top_k[0] = 1;
	x.top_k[1] = 3;
	x.bins = 10;
	x.perplexity = true;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = logits;
	o.extra = &x;
	eng_loss_plan *pl = NULL;
	eng_error e1 = {0}, e2 = {0};
	cr_assert_eq(eng_loss_plan_new(&pl, &yt, &yp, &o, &e1), 0, "%s", e1.msg);
	cr_assert_gt(eng_loss_plan_tasks(pl), 1, "one task: the case runs nothing early");
	eng_loss_plan_run(pl, eng_loss_plan_tasks(pl));
	eng_loss_result *r = NULL;
	int rc = eng_loss_plan_finish(&r, pl, NULL, &e1);
	eng_loss_plan_free(pl);
	cr_expect_null(r);
	eng_loss_result *r2 = NULL;
	int rc2 = eng_loss_compute(&r2, &yt, &yp, &o, NULL, &e2);
	cr_expect_null(r2);
	cr_expect_neq(rc, 0);
	cr_expect_eq(rc, rc2);
	cr_expect_eq(e1.index, 5);
	cr_expect_eq(e2.index, 5);
	cr_expect_str_eq(e1.field, e2.field);
	free(p);
	free(f);
	free(y);
}

Test(extra, plan_run_stops_at_a_bad_label_before_the_metrics)
{
	plan_with_bad_labels(ENG_F64, true);
	plan_with_bad_labels(ENG_F64, false);
	plan_with_bad_labels(ENG_F32, true);
	plan_with_bad_labels(ENG_F32, false);
}
