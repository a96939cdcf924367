/*
 * test_loss_binary.c - binary cross-entropy and binary focal cross-entropy
 * (engine/src/binary.c): Keras docstring values, pos_weight per column,
 * the stable log-sigmoid at +-1e4, clipping of 0 and 1, the per-column
 * table, masks and validation.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "lossd/loss.h"
#include "loss_helpers.h"

static double softplus(double z)
{
	return fmax(z, 0) + log1p(exp(-fabs(z)));
}

Test(binary, keras_docstrings)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 0, 0), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.6, 0.4, 0.4, 0.6), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	NEAR(run(&yt, &yp, &o, NULL), 0.815, 5e-4);
	NEAR(run(&yt, &yp, &o, NULL), 0.814924454847114,
	     1e-12); /* the formula of docs/API.md, evaluated in numpy */

	eng_tensor lt = tens(ENG_F64, D(0, 1, 0, 0), 1, I64(4));
	eng_tensor lp = tens(ENG_F64, D(-18.6, 0.51, 2.94, -12.8), 1, I64(4));
	o.from_logits = true;
	NEAR(run(&lt, &lp, &o, NULL), 0.865, 5e-4);
	o.kind = ENG_LOSS_BINARY_FOCAL;
	NEAR(run(&lt, &lp, &o, NULL), 0.691, 5e-4);
	NEAR(run(&lt, &lp, &o, NULL), 0.691212075832067, 1e-12);
	o.apply_class_balancing = true;
	NEAR(run(&lt, &lp, &o, NULL), 0.51, 5e-4);
	NEAR(run(&lt, &lp, &o, NULL), 0.5101332954752431, 1e-12);
}

Test(binary, huge_logits_are_finite_and_exact)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 1, 0, 0.3), 1, I64(5));
	eng_tensor yp = tens(ENG_F64, D(1e4, -1e4, 1e4, -1e4, 30), 1, I64(5));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.from_logits = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	NEAR(r->per_position[0], 1e4, 1e-9);
	NEAR(r->per_position[1], 1e4, 1e-9);
	cr_expect(r->per_position[2] >= 0 && r->per_position[2] < 1e-300);
	cr_expect(r->per_position[3] >= 0 && r->per_position[3] < 1e-300);
	NEAR(r->per_position[4], 0.3 * softplus(-30) + 0.7 * softplus(30), 1e-12);
	eng_loss_result_free(r);
}

Test(binary, probabilities_zero_and_one_are_clipped)
{
	eng_tensor yt = tens(ENG_F64, D(1, 0, 1, 0), 1, I64(4));
	eng_tensor yp = tens(ENG_F64, D(1, 0, 0, 1), 1, I64(4));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	NEAR(r->per_position[0], -log(1 - 1e-7), 1e-15);
	NEAR(r->per_position[1], -log(1 - 1e-7), 1e-15);
	NEAR(r->per_position[2], -log(1e-7), 1e-12);
	NEAR(r->per_position[3], -log(1 - (1 - 1e-7)), 1e-12); /* clip, then 1 - p */
	eng_loss_result_free(r);
}

Test(binary, pos_weight_per_column_and_sample_weight)
{
	/* (3, 2): pos_weight (2) per column, sample_weight (3) per row */
	double y[] = {1, 0, 0, 1, 1, 1}, x[] = {0.5, -1, 2, 0.25, -3, 4};
	eng_tensor yt = tens(ENG_F64, y, 2, I64(3), I64(2));
	eng_tensor yp = tens(ENG_F64, x, 2, I64(3), I64(2));
	eng_tensor pw = tens(ENG_F64, D(3, 0.5), 1, I64(2));
	eng_tensor sw = tens(ENG_F64, D(1, 2, 0.5), 1, I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.from_logits = true;
	o.pos_weight = &pw;
	o.sample_weight = &sw;
	double num = 0, den = 0;
	for (int i = 0; i < 6; i++) {
		double w = (double[]){1, 2, 0.5}[i / 2], p = (double[]){3, 0.5}[i % 2];
		num += w * (p * y[i] * softplus(-x[i]) + (1 - y[i]) * softplus(x[i]));
		den += w;
	}
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), num / den, 1e-12);
	cr_expect_eq(r->nclasses, 2);
	cr_expect_eq(r->per_class[0].support, 2);   /* column 0: 1, 0, 1 */
	cr_expect_eq(r->per_class[1].support, 2);   /* column 1: 0, 1, 1 */
	cr_expect_eq(r->per_class[0].predicted, 2); /* 0.5, 2 >= 0 */
	cr_expect_eq(r->per_class[0].correct, 1);
	cr_expect_eq(r->per_class[1].predicted, 2); /* 0.25, 4 */
	cr_expect_eq(r->per_class[1].correct, 2);
	cr_expect_eq(r->correct, 4); /* thresholds agree on 4 of 6 */
	eng_loss_result_free(r);
	/* a scalar pos_weight and a full-shape one agree with per-column */
	eng_tensor pw_full = tens(ENG_F64, D(3, 0.5, 3, 0.5, 3, 0.5), 2, I64(3), I64(2));
	o.pos_weight = &pw_full;
	NEAR(run(&yt, &yp, &o, NULL), num / den, 1e-12);
	eng_tensor pw_col = tens(ENG_F64, D(3, 0.5), 2, I64(1), I64(2));
	o.pos_weight = &pw_col;
	NEAR(run(&yt, &yp, &o, NULL), num / den, 1e-12);
}

Test(binary, focal_from_probabilities)
{
	double y = 1, p = 0.7;
	eng_tensor yt = tens(ENG_F64, &y, 0);
	eng_tensor yp = tens(ENG_F64, &p, 0);
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_FOCAL;
	o.gamma = 3;
	o.alpha = 0.4;
	o.apply_class_balancing = true;
	NEAR(run(&yt, &yp, &o, NULL), -log(0.7) * pow(0.3, 3) * 0.4, 1e-12);
}

Test(binary, label_smoothing_is_keras)
{
	eng_tensor yt = tens(ENG_F64, D(1), 1, I64(1));
	eng_tensor yp = tens(ENG_F64, D(0.9), 1, I64(1));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.label_smoothing = 0.2; /* target 0.9 */
	NEAR(run(&yt, &yp, &o, NULL), -(0.9 * log(0.9) + 0.1 * log(0.1)), 1e-12);
}

Test(binary, ignore_class_masks_elements)
{
	eng_tensor yt = tens(ENG_F64, D(1, -1, 0), 1, I64(3));
	eng_tensor yp = tens(ENG_F64, D(0.8, 0.5, 0.4), 1, I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.has_ignore_class = true;
	o.ignore_class = -1;
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), (-log(0.8) - log(0.6)) / 2, 1e-12);
	cr_expect_eq(r->ignored, 1);
	cr_expect_eq(r->count, 2);
	eng_loss_result_free(r);
}

Test(binary, confusion_is_two_by_two)
{
	eng_tensor yt = tens(ENG_F64, D(1, 1, 0, 0, 1), 1, I64(5));
	eng_tensor yp = tens(ENG_F64, D(0.9, 0.2, 0.6, 0.1, 0.5), 1, I64(5));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.confusion = true;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	cr_assert_eq(r->conf_n, 2);
	cr_expect_eq(r->confusion[0], 1); /* tn */
	cr_expect_eq(r->confusion[1], 1); /* fp */
	cr_expect_eq(r->confusion[2], 2); /* fn (0.5 is predicted negative) */
	cr_expect_eq(r->confusion[3], 1); /* tp */
	eng_loss_result_free(r);
}

Test(binary, rejects)
{
	eng_tensor yt = tens(ENG_F64, D(1, 2), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.5, 0.5), 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_result *r = NULL;
	eng_error err = {0};
	o.kind = ENG_LOSS_BINARY_CE;
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, NULL, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1);

	eng_tensor yt2 = tens(ENG_F64, D(1, 0), 1, I64(2));
	eng_tensor yp2 = tens(ENG_F64, D(0.5, 1.5), 1, I64(2));
	cr_expect_eq(eng_loss_compute(&r, &yt2, &yp2, &o, NULL, &err), ENG_EPROB);
	cr_expect_str_eq(err.field, "y_pred");
	cr_expect_eq(err.index, 1);
	o.from_logits = true; /* 1.5 is a fine logit */
	cr_expect_eq(eng_loss_compute(&r, &yt2, &yp2, &o, NULL, &err), 0);
	eng_loss_result_free(r);

	eng_tensor pw = tens(ENG_F64, D(1, 2, 3), 1, I64(3));
	o.pos_weight = &pw;
	cr_expect_eq(eng_loss_compute(&r, &yt2, &yp2, &o, NULL, &err), ENG_ESHAPE);
	cr_expect_str_eq(err.field, "pos_weight");
	eng_tensor pwn = tens(ENG_F64, D(-1), 0);
	o.pos_weight = &pwn;
	cr_expect_eq(eng_loss_compute(&r, &yt2, &yp2, &o, NULL, &err), ENG_EWEIGHT);
	o.pos_weight = NULL;
	eng_tensor cw = tens(ENG_F64, D(1, 1), 1, I64(2));
	o.class_weight = &cw;
	cr_expect_eq(eng_loss_compute(&r, &yt2, &yp2, &o, NULL, &err), ENG_EINVAL);
	cr_expect_str_eq(err.field, "class_weight");
	o.class_weight = NULL;
	eng_tensor yt3 = tens(ENG_F64, D(1, 0, 1), 1, I64(3));
	cr_expect_eq(eng_loss_compute(&r, &yt3, &yp2, &o, NULL, &err), ENG_ESHAPE);
	cr_expect_null(r);
}

Test(binary, float32_logits_fast_path_matches_double)
{
	enum { N = 1001 };
	static float xf[N], yf[N];
	static double xd[N];
	for (int i = 0; i < N; i++) {
		xf[i] = (float)(sin(i * 1.7) * (i % 3 ? 8 : 40));
		yf[i] = (float)((i % 5) / 4.0); /* soft targets too */
	}
	xf[10] = 1e4f;
	xf[11] = -1e4f;
	xf[12] = 0;
	for (int i = 0; i < N; i++)
		xd[i] = xf[i];
	eng_tensor yt = tens(ENG_F32, yf, 1, I64(N));
	eng_tensor a = tens(ENG_F32, xf, 1, I64(N));
	eng_tensor b = tens(ENG_F64, xd, 1, I64(N));
	eng_tensor pw = tens(ENG_F64, D(2.5), 0);
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	o.from_logits = true;
	o.pos_weight = &pw;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *ra, *rb;
	run(&yt, &a, &o, &ra);
	run(&yt, &b, &o, &rb);
	for (int i = 0; i < N; i++) {
		double u = ra->per_position[i], v = rb->per_position[i];
		cr_expect(fabs(u - v) <= 1e-6 * fabs(v) + 1e-30, "%d: %.12g vs %.12g (x %g)", i, u,
		          v, (double)xf[i]);
	}
	NEAR(ra->wloss_sum, rb->wloss_sum, 1e-7 * rb->wloss_sum);
	cr_expect_eq(ra->correct, rb->correct);
	eng_loss_result_free(ra);
	eng_loss_result_free(rb);
	/* a NaN in a block is reported (or propagated) by the scalar path */
	xf[700] = NAN;
	eng_loss_result *r = NULL;
	eng_error err = {0};
	cr_expect_eq(eng_loss_compute(&r, &yt, &a, &o, NULL, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 700);
	o.propagate_nan = true;
	run(&yt, &a, &o, &r);
	cr_expect(isnan(r->per_position[700]));
	cr_expect(!isnan(r->per_position[699]));
	eng_loss_result_free(r);
}

/* ---- float32 blocks (bce_block_v4 on AVX-512, bce_block elsewhere) ------------------ */

/* x_i: ordinary logits, and every 7th one from a list of edges: zeros of
 * both signs, +-1e30, +-1e4, around exp's underflow (+-88, +-104, +-200) */
static float edge_logit(int64_t i)
{
	static const float edges[] = {0.0f,   -0.0f,  1e30f,   -1e30f, 1e4f,    -1e4f, 88.0f,
	                              -88.0f, 104.0f, -104.0f, 200.0f, -200.0f, 17.0f, -17.0f};
	if (i % 7 == 3)
		return edges[(i / 7) % 14];
	return (float)(sin(i * 1.37) * (i % 3 ? 6 : 30));
}

/*
 * (N, K) float32 logits and targets (hard and soft) with pos_weight per
 * column and sample_weight per row, for K dividing 16 or not (the per-lane
 * and the per-element column tables) and ~40000 elements (two tasks, the
 * second starting mid-row, partial blocks): every element, the sums, the
 * per-column table and the confusion counts against the float64 inputs
 * (the scalar double path); then the plain mean without weights.
 */
Test(binary, float32_blocks_match_double)
{
	static const int Ks[] = {1, 2, 3, 4, 5, 8, 16, 17};
	for (size_t ki = 0; ki < sizeof(Ks) / sizeof(Ks[0]); ki++) {
		int64_t K = Ks[ki], N = 40000 / K + 3, n = N * K;
		float *xf = malloc((size_t)n * sizeof(float)),
		      *yf = malloc((size_t)n * sizeof(float));
		double *xd = malloc((size_t)n * sizeof(double)),
		       *yd = malloc((size_t)n * sizeof(double));
		double *sw = malloc((size_t)N * sizeof(double)), pw[17];
		cr_assert(xf && yf && xd && yd && sw);
		for (int64_t i = 0; i < n; i++) {
			xf[i] = edge_logit(i);
			yf[i] = i % 4 == 1 ? (float)((i % 9) / 8.0) : (float)((i * 7 / 3) % 2);
			xd[i] = xf[i];
			yd[i] = yf[i];
		}
		for (int64_t r = 0; r < N; r++)
			sw[r] = 0.5 + (double)(r % 5) * 0.25;
		for (int64_t c = 0; c < K; c++)
			pw[c] = 0.5 + (double)c * 0.75;
		eng_tensor ya = tens(ENG_F32, yf, 2, N, K), xa = tens(ENG_F32, xf, 2, N, K);
		eng_tensor yb = tens(ENG_F64, yd, 2, N, K), xb = tens(ENG_F64, xd, 2, N, K);
		eng_tensor pwt = tens(ENG_F64, pw, 1, K), swt = tens(ENG_F64, sw, 1, N);
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.kind = ENG_LOSS_BINARY_CE;
		o.from_logits = true;
		o.pos_weight = &pwt;
		o.sample_weight = &swt;
		o.confusion = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *ra, *rb;
		run(&ya, &xa, &o, &ra);
		run(&yb, &xb, &o, &rb);
		int64_t worse = 0;
		for (int64_t i = 0; i < n; i++) {
			double u = ra->per_position[i], v = rb->per_position[i];
			if (!(fabs(u - v) <= 1e-6 * fabs(v) + 1e-30) && worse++ < 5)
				cr_expect(0, "K %lld el %lld: %.12g vs %.12g (x %g y %g)",
				          (long long)K, (long long)i, u, v, (double)xf[i],
				          (double)yf[i]);
		}
		cr_expect_eq(worse, 0, "K %lld: %lld elements off", (long long)K, (long long)worse);
		NEAR(ra->wloss_sum, rb->wloss_sum, 1e-7 * rb->wloss_sum);
		NEAR(ra->weight_sum, rb->weight_sum, 1e-12 * rb->weight_sum);
		cr_expect_eq(ra->count, n);
		cr_expect_eq(ra->correct, rb->correct, "K %lld", (long long)K);
		for (int64_t c = 0; c < K; c++) {
			const eng_loss_class *p = &ra->per_class[c], *q = &rb->per_class[c];
			cr_expect_eq(p->support, q->support, "K %lld col %lld", (long long)K,
			             (long long)c);
			cr_expect_eq(p->predicted, q->predicted, "K %lld col %lld", (long long)K,
			             (long long)c);
			cr_expect_eq(p->correct, q->correct, "K %lld col %lld", (long long)K,
			             (long long)c);
			NEAR(p->weight_sum, q->weight_sum, 1e-12 * q->weight_sum);
			NEAR(p->loss_sum, q->loss_sum, 1e-7 * q->loss_sum);
		}
		for (int i = 0; i < 4; i++)
			cr_expect_eq(ra->confusion[i], rb->confusion[i], "K %lld cell %d",
			             (long long)K, i);
		eng_loss_result_free(ra);
		eng_loss_result_free(rb);
		/* pos_weight of the full shape (a period longer than a block) */
		double *pwf = malloc((size_t)n * sizeof(double));
		cr_assert(pwf);
		for (int64_t i = 0; i < n; i++)
			pwf[i] = pw[i % K];
		eng_tensor pwft = tens(ENG_F64, pwf, 2, N, K);
		o.reduction = ENG_RED_SUM;
		double s1 = run(&ya, &xa, &o, NULL);
		o.pos_weight = &pwft;
		NEAR(run(&ya, &xa, &o, NULL), s1, 1e-12 * s1);
		free(pwf);
		/* the plain mean: no weights, no table, no per-element output */
		eng_loss_opts p = ENG_LOSS_OPTS_INIT;
		p.kind = ENG_LOSS_BINARY_CE;
		p.from_logits = true;
		p.per_class = false;
		double ma = run(&ya, &xa, &p, NULL), mb = run(&yb, &xb, &p, NULL);
		NEAR(ma, mb, 1e-7 * mb);
		free(xf);
		free(yf);
		free(xd);
		free(yd);
		free(sw);
	}
}

/* In float32 blocks, a NaN or +-Inf logit and a NaN or out-of-range target
 * are reported at their index; with propagate, they affect their element
 * only, exactly as the float64 path has them. */
Test(binary, float32_blocks_report_bad_elements)
{
	enum { N = 300, K = 8, AT = 1234 };
	static float xf[N * K], yf[N * K];
	static double xd[N * K], yd[N * K];
	static const float badx[] = {NAN, INFINITY, -INFINITY};
	for (int b = 0; b < 5; b++) {
		for (int i = 0; i < N * K; i++) {
			xf[i] = edge_logit(i);
			yf[i] = (float)(i % 2);
		}
		if (b < 3)
			xf[AT] = badx[b];
		else
			yf[AT] = b == 3 ? NAN : 1.5f;
		for (int i = 0; i < N * K; i++) {
			xd[i] = xf[i];
			yd[i] = yf[i];
		}
		eng_tensor ya = tens(ENG_F32, yf, 2, I64(N), I64(K));
		eng_tensor xa = tens(ENG_F32, xf, 2, I64(N), I64(K));
		eng_tensor yb = tens(ENG_F64, yd, 2, I64(N), I64(K));
		eng_tensor xb = tens(ENG_F64, xd, 2, I64(N), I64(K));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.kind = ENG_LOSS_BINARY_CE;
		o.from_logits = true;
		eng_loss_result *r = NULL;
		eng_error err = {0};
		cr_expect_eq(eng_loss_compute(&r, &ya, &xa, &o, NULL, &err),
		             b == 4 ? ENG_ELABEL : ENG_ENONFINITE, "case %d", b);
		cr_expect_eq(err.index, AT, "case %d", b);
		cr_expect_str_eq(err.field, b < 3 ? "y_pred" : "y_true", "case %d", b);
		cr_expect_null(r);
		if (b == 4)
			continue;
		o.propagate_nan = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *ra, *rb;
		run(&ya, &xa, &o, &ra);
		run(&yb, &xb, &o, &rb);
		for (int i = 0; i < N * K; i++) {
			double u = ra->per_position[i], v = rb->per_position[i];
			if (i == AT)
				cr_expect(isnan(u) == isnan(v) && (isnan(v) || u == v),
				          "case %d: %g vs %g", b, u, v);
			else
				cr_expect(fabs(u - v) <= 1e-6 * fabs(v) + 1e-30, "case %d el %d", b,
				          i);
		}
		eng_loss_result_free(ra);
		eng_loss_result_free(rb);
	}
}

/* Predicted positive iff p > 0.5 (logit > 0), positive iff y > 0.5:
 * exactly 0.5, logit 0 and -0 are negative (Keras' binary_accuracy,
 * TorchMetrics), on every path: probabilities, float64 logits, float32
 * logits (the vector blocks, 40 elements so full blocks and tails run),
 * with and without the per-column table. */
Test(binary, half_is_negative)
{
	eng_loss_result *r;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	eng_tensor yt = tens(ENG_F64, D(1, 0, 0.5, 1), 1, I64(4));
	eng_tensor yp = tens(ENG_F64, D(0.5, 0.5, 0.9, 0.5000001), 1, I64(4));
	run(&yt, &yp, &o, &r);
	cr_expect_eq(r->per_class[0].support, 2);   /* 1 and 1; 0.5 is not > 0.5 */
	cr_expect_eq(r->per_class[0].predicted, 2); /* 0.9 and 0.5000001 */
	cr_expect_eq(r->per_class[0].correct, 1);
	cr_expect_eq(r->correct, 2); /* (0, 0.5) and (1, 0.5000001) agree */
	eng_loss_result_free(r);

	o.from_logits = true;
	eng_tensor yl = tens(ENG_F64, D(0, -0.0, 1e-300, -1e-300), 1, I64(4));
	eng_tensor y1 = tens(ENG_F64, D(1, 1, 1, 1), 1, I64(4));
	run(&y1, &yl, &o, &r);
	cr_expect_eq(r->per_class[0].predicted, 1);
	cr_expect_eq(r->correct, 1);
	eng_loss_result_free(r);

	float xf[40], yf[40];
	for (int i = 0; i < 40; i++) {
		xf[i] = i % 4 == 0 ? 0.0f : (i % 4 == 1 ? -0.0f : (i % 4 == 2 ? 1e-30f : -1.0f));
		yf[i] = i % 2 ? 0.5f : 1.0f;
	}
	eng_tensor tx = {ENG_F32, 1, {40}, 40, xf}, ty = {ENG_F32, 1, {40}, 40, yf};
	for (int table = 0; table < 2; table++) {
		o.per_class = table;
		o.confusion = table;
		run(&ty, &tx, &o, &r);
		/* i%4: 0 -> y 1, pred 0; 1 -> y 0.5 (neg), pred 0; 2 -> y 1, pred 1;
		 * 3 -> y 0.5 (neg), pred 0: 30 of 40 agree */
		cr_expect_eq(r->correct, 30, "table %d: correct %lld", table,
		             (long long)r->correct);
		if (table) {
			cr_expect_eq(r->per_class[0].support, 20);
			cr_expect_eq(r->per_class[0].predicted, 10);
			cr_expect_eq(r->per_class[0].correct, 10);
			cr_expect_eq(r->confusion[2], 10); /* fn: logit +-0 with y 1 */
		}
		eng_loss_result_free(r);
	}
	/* float32 targets and logits in a (10, 4) tensor: per-column lanes */
	eng_tensor tx2 = {ENG_F32, 2, {10, 4}, 40, xf}, ty2 = {ENG_F32, 2, {10, 4}, 40, yf};
	o.per_class = true;
	run(&ty2, &tx2, &o, &r);
	cr_expect_eq(r->correct, 30);
	cr_expect_eq(r->per_class[0].predicted, 0);
	cr_expect_eq(r->per_class[0].support, 10);
	cr_expect_eq(r->per_class[2].predicted, 10);
	cr_expect_eq(r->per_class[2].correct, 10);
	cr_expect_eq(r->per_class[1].support, 0);
	eng_loss_result_free(r);
}
