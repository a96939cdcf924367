/*
 * test_loss_xent.c - the categorical family of engine/src/xent.c through
 * eng_loss_compute(): sparse and categorical cross-entropy, categorical
 * focal, KL. Expected values are the Keras docstring figures, hand sums
 * (written out next to each case) and float64 recomputations in the test.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "lossd/loss.h"
#include "loss_helpers.h"

static int fail(const eng_tensor *yt, const eng_tensor *yp, const eng_loss_opts *o, eng_error *err)
{
	eng_loss_result *r = (eng_loss_result *)1;
	int rc = eng_loss_compute(&r, yt, yp, o, NULL, err);
	cr_assert_null(r, "a failed call leaves *out NULL");
	return rc;
}

/* ---- Keras docstring values ----------------------------------------------------- */

static const double P23[] = {0.05, 0.95, 0, 0.1, 0.8, 0.1};

Test(xent, keras_sparse_docstring)
{
	eng_tensor yt = tens(ENG_F64, D(1, 2), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, P23, 2, I64(2), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	NEAR(run(&yt, &yp, &o, NULL), 1.177, 5e-4);
	eng_tensor sw = tens(ENG_F64, D(0.3, 0.7), 1, I64(2));
	o.sample_weight = &sw;
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), 0.814, 5e-4);
	/* exactly: (0.3 * -log 0.95 + 0.7 * -log 0.1) / 2 */
	NEAR(run(&yt, &yp, &o, NULL), (0.3 * -log(0.95) + 0.7 * -log(0.1)) / 2, 1e-12);
	o.reduction = ENG_RED_MEAN; /* sum(w l) / sum(w) = 1 here */
	NEAR(run(&yt, &yp, &o, NULL), 0.3 * -log(0.95) + 0.7 * -log(0.1), 1e-12);
}

Test(xent, keras_categorical_docstring)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 0, 0, 0, 1), 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, P23, 2, I64(2), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_CATEGORICAL_CE;
	NEAR(run(&yt, &yp, &o, NULL), 1.177, 5e-4);
	eng_tensor sw = tens(ENG_F64, D(0.3, 0.7), 1, I64(2));
	o.sample_weight = &sw;
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), 0.814, 5e-4);
}

Test(xent, keras_kl_docstring)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 0, 0), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.6, 0.4, 0.4, 0.6), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_KL;
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), 0.458, 5e-4);
	eng_tensor sw = tens(ENG_F64, D(0.8, 0.2), 1, I64(2));
	o.sample_weight = &sw;
	NEAR(run(&yt, &yp, &o, NULL), 0.366, 1e-3);
	/* y_true clipped to [1e-7, 1] too: the zeros contribute 1e-7 log(1e-7 / q) */
	double row0 = 1e-7 * log(1e-7 / 0.6) + 1 * log(1 / 0.4);
	double row1 = 1e-7 * log(1e-7 / 0.4) + 1e-7 * log(1e-7 / 0.6);
	NEAR(run(&yt, &yp, &o, NULL), (0.8 * row0 + 0.2 * row1) / 2, 1e-12);
}

Test(xent, categorical_focal_docstring)
{
	/* Keras CategoricalFocalCrossentropy docstring: 0.23315276 */
	eng_tensor yt = tens(ENG_F64, D(0, 1, 0, 0, 0, 1), 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, P23, 2, I64(2), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_CATEGORICAL_FOCAL;
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), 0.23315276, 1e-7);
	/* gamma 0, alpha 1 is plain cross-entropy */
	o.gamma = 0;
	o.alpha = 1;
	NEAR(run(&yt, &yp, &o, NULL), 1.176939193690798, 1e-9);
}

/* ---- options, each alone and combined ---------------------------------------------- */

Test(xent, sparse_label_smoothing_class_weight)
{
	/* l_i = (1-e) w_y (-log p_y) + e/C sum_c w_c (-log p_c), w_i = w_y;
	 * clipped at 1e-7 for the probability 0. */
	eng_tensor yt = tens(ENG_F64, D(1, 2), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, P23, 2, I64(2), I64(3));
	eng_tensor cw = tens(ENG_F64, D(1, 2, 3), 1, I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.label_smoothing = 0.1;
	o.class_weight = &cw;
	double e = 0.1, nl[2][3];
	for (int i = 0; i < 2; i++)
		for (int c = 0; c < 3; c++)
			nl[i][c] = -log(fmin(fmax(P23[3 * i + c], 1e-7), 1 - 1e-7));
	double l0 = (1 - e) * 2 * nl[0][1] + e / 3 * (1 * nl[0][0] + 2 * nl[0][1] + 3 * nl[0][2]);
	double l1 = (1 - e) * 3 * nl[1][2] + e / 3 * (1 * nl[1][0] + 2 * nl[1][1] + 3 * nl[1][2]);
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), (l0 + l1) / 5, 1e-12);
	NEAR(r->weight_sum, 5, 1e-12);
	NEAR(r->per_class[1].loss_sum, l0, 1e-12);
	NEAR(r->per_class[2].weight_sum, 3, 1e-12);
	eng_loss_result_free(r);
	NEAR(1.6692564247950272, (l0 + l1) / 5,
	     1e-12); /* the formula of docs/API.md, evaluated in numpy */
}

Test(xent, categorical_class_weight_distribution)
{
	/* a distribution y_true: l = -sum w_c y_c log p_c, and the position
	 * weighs 1 (its sample weight), not sum w_c y_c: class weights act
	 * inside the sum only (PyTorch's mean with probability targets) */
	eng_tensor yt = tens(ENG_F64, D(0.25, 0.75, 1, 0), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.5, 0.5, 0.2, 0.8), 2, I64(2), I64(2));
	eng_tensor cw = tens(ENG_F64, D(2, 4), 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_CATEGORICAL_CE;
	o.class_weight = &cw;
	double l0 = -(2 * 0.25 * log(0.5) + 4 * 0.75 * log(0.5));
	double l1 = -(2 * 1 * log(0.2));
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), (l0 + l1) / 2, 1e-12);
	NEAR(r->weight_sum, 2, 1e-12);
	NEAR(r->per_class[1].weight_sum, 1, 1e-12);
	cr_expect_eq(r->per_class[1].support, 1); /* argmax of y_true row 0 is class 1 */
	cr_expect_eq(r->per_class[0].support, 1);
	cr_expect_eq(r->per_class[0].predicted, 1); /* argmax of (0.5, 0.5): the first */
	cr_expect_eq(r->per_class[1].predicted, 1); /* argmax of (0.2, 0.8) */
	cr_expect_eq(r->correct, 0);
	eng_loss_result_free(r);
}

Test(xent, cost_matrix_weights_true_by_predicted)
{
	/* row 0: true 0, argmax 1 -> cost[0][1] = 5; row 1: true 1, argmax 1 -> 1 */
	eng_tensor yt = tens(ENG_I32, (const int32_t[]){0, 1}, 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.3, 0.7, 0.4, 0.6), 2, I64(2), I64(2));
	eng_tensor cm = tens(ENG_F64, D(1, 5, 2, 1), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.cost_matrix = &cm;
	o.reduction = ENG_RED_SUM;
	o.confusion = true;
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), 5 * -log(0.3) + 1 * -log(0.6), 1e-12);
	NEAR(r->weight_sum, 6, 1e-12);
	cr_expect_eq(r->conf_n, 2);
	cr_expect_eq(r->confusion[0 * 2 + 1], 1);
	cr_expect_eq(r->confusion[1 * 2 + 1], 1);
	cr_expect_eq(r->correct, 1);
	eng_loss_result_free(r);
}

Test(xent, ignore_class_any_integer)
{
	int64_t y[] = {-100, 1, -100, 0};
	eng_tensor yt = tens(ENG_I64, y, 1, I64(4));
	eng_tensor yp = tens(ENG_F64, D(1, 2, 3, 4, 5, 6, 7, 8), 2, I64(4), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.has_ignore_class = true;
	o.ignore_class = -100;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	cr_expect_eq(r->count, 2);
	cr_expect_eq(r->ignored, 2);
	cr_expect_eq(r->per_position[0], 0);
	cr_expect_eq(r->per_position[2], 0);
	NEAR(r->per_position[1], log1p(exp(-1.0)), 1e-12);     /* logits 3, 4, true 1 */
	NEAR(r->per_position[3], 1 + log1p(exp(-1.0)), 1e-12); /* logits 7, 8, true 0 */
	eng_loss_result_free(r);
}

Test(xent, all_ignored_and_empty_are_undefined)
{
	eng_tensor yt = tens(ENG_F64, D(-1, -1), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, 2, 3, 4), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.has_ignore_class = true;
	o.ignore_class = -1;
	o.reduction = ENG_RED_MEAN;
	cr_expect(isnan(run(&yt, &yp, &o, NULL)), "the mean of nothing is undefined");
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	cr_expect(isnan(run(&yt, &yp, &o, NULL)), "the mean of nothing is undefined");
	o.reduction = ENG_RED_SUM;
	cr_expect_eq(run(&yt, &yp, &o, NULL), 0.0, "the sum of nothing is 0");
	o.reduction = ENG_RED_MEAN;
	eng_tensor et = tens(ENG_F64, D(0), 1, I64(0));
	eng_tensor ep = tens(ENG_F64, D(0), 2, I64(0), I64(3));
	o.has_ignore_class = false;
	eng_loss_result *r;
	cr_expect(isnan(run(&et, &ep, &o, &r)));
	cr_expect_eq(r->count, 0);
	cr_expect_eq(r->nclasses, 3);
	eng_loss_result_free(r);
}

Test(xent, zero_weight_sum_mean_is_undefined_sum_is_zero)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, 2, 3, 4), 2, I64(2), I64(2));
	eng_tensor sw = tens(ENG_F64, D(0, 0), 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.sample_weight = &sw;
	cr_expect(isnan(run(&yt, &yp, &o, NULL)));
	o.reduction = ENG_RED_SUM;
	cr_expect_eq(run(&yt, &yp, &o, NULL), 0.0);
}

/* ---- extremes ------------------------------------------------------------------------ */

Test(xent, huge_logits_stay_finite)
{
	float x[] = {1e4f, -1e4f, 0, -1e4f, 1e4f, 1e4f};
	eng_tensor yp = tens(ENG_F32, x, 2, I64(2), I64(3));
	eng_tensor yt = tens(ENG_I32, (const int32_t[]){1, 2}, 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	NEAR(r->per_position[0], 2e4, 1e-6);      /* 1e4 - (-1e4) */
	NEAR(r->per_position[1], log(2.0), 1e-7); /* two equal maxima */
	eng_loss_result_free(r);
	/* the same through the double path (float64 input) */
	double xd[] = {1e4, -1e4, 0, -1e4, 1e4, 1e4};
	eng_tensor ypd = tens(ENG_F64, xd, 2, I64(2), I64(3));
	run(&yt, &ypd, &o, &r);
	NEAR(r->per_position[0], 2e4, 1e-9);
	NEAR(r->per_position[1], log(2.0), 1e-12);
	eng_loss_result_free(r);
}

Test(xent, probabilities_exactly_zero_and_one_are_clipped)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, 0, 1, 0), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	NEAR(r->per_position[0], -log(1 - 1e-7), 1e-15);
	NEAR(r->per_position[1], -log(1e-7), 1e-12);
	eng_loss_result_free(r);
}

Test(xent, probabilities_are_divided_by_their_row_sum)
{
	eng_tensor yt = tens(ENG_F64, D(0), 1, I64(1));
	eng_tensor yp = tens(ENG_F64, D(2, 6), 2, I64(1), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	NEAR(run(&yt, &yp, &o, NULL), -log(0.25), 1e-12);
	o.kind = ENG_LOSS_KL; /* KL clips without dividing: q = (1, 1-ish) */
	eng_tensor dt = tens(ENG_F64, D(0.5, 0.5), 2, I64(1), I64(2));
	NEAR(run(&dt, &yp, &o, NULL), 0.5 * log(0.5) * 2, 1e-12);
}

/* ---- axes and ranks ---------------------------------------------------------------------- */

/* (B=2, T=3, V=4) logits with axis -1, the same numbers as (B, V, T) with axis 1 */
Test(xent, rank3_axis_last_equals_axis1_transposed)
{
	double btv[24], bvt[24];
	for (int i = 0; i < 24; i++)
		btv[i] = sin(i * 1.3) * 4;
	for (int b = 0; b < 2; b++)
		for (int t = 0; t < 3; t++)
			for (int v = 0; v < 4; v++)
				bvt[b * 12 + v * 3 + t] = btv[b * 12 + t * 4 + v];
	int32_t y[] = {0, 3, 2, 1, 1, 0};
	eng_tensor yt = tens(ENG_I32, y, 2, I64(2), I64(3));
	eng_tensor a = tens(ENG_F64, btv, 3, I64(2), I64(3), I64(4));
	eng_tensor b = tens(ENG_F64, bvt, 3, I64(2), I64(4), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *ra, *rb;
	run(&yt, &a, &o, &ra);
	o.axis = 1;
	run(&yt, &b, &o, &rb);
	cr_expect_eq(rb->pos_ndim, 2);
	cr_expect_eq(rb->pos_shape[1], 3);
	for (int i = 0; i < 6; i++) {
		double m = -INFINITY, s = 0;
		for (int v = 0; v < 4; v++)
			m = fmax(m, btv[i * 4 + v]);
		for (int v = 0; v < 4; v++)
			s += exp(btv[i * 4 + v] - m);
		double want = m + log(s) - btv[i * 4 + y[i]];
		NEAR(ra->per_position[i], want, 1e-12);
		NEAR(rb->per_position[i], want, 1e-12);
	}
	for (int c = 0; c < 4; c++)
		cr_expect_eq(ra->per_class[c].predicted, rb->per_class[c].predicted);
	o.reduction = ENG_RED_SUM;
	double s1 = run(&yt, &b, &o, NULL);
	o.axis = -2; /* negative axis counts from the end */
	NEAR(run(&yt, &b, &o, NULL), s1, 0);
	eng_loss_result_free(ra);
	eng_loss_result_free(rb);
}

Test(xent, float32_fast_path_matches_double)
{
	enum { N = 37, C = 67 };
	static float xf[N * C];
	static double xd[N * C];
	int32_t y[N];
	for (int i = 0; i < N * C; i++) {
		xf[i] = (float)(cos(i * 0.7) * 6 + (i % 5));
		xd[i] = xf[i];
	}
	for (int i = 0; i < N; i++)
		y[i] = (i * 7) % C;
	eng_tensor yt = tens(ENG_I32, y, 1, I64(N));
	eng_tensor a = tens(ENG_F32, xf, 2, I64(N), I64(C));
	eng_tensor b = tens(ENG_F64, xd, 2, I64(N), I64(C));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *ra, *rb;
	run(&yt, &a, &o, &ra);
	run(&yt, &b, &o, &rb);
	for (int i = 0; i < N; i++)
		cr_expect(fabs(ra->per_position[i] - rb->per_position[i]) <=
		                  1e-6 * fabs(rb->per_position[i]) + 1e-12,
		          "row %d: %.12g vs %.12g", i, ra->per_position[i], rb->per_position[i]);
	for (int c = 0; c < C; c++)
		cr_expect_eq(ra->per_class[c].predicted, rb->per_class[c].predicted);
	cr_expect_eq(ra->correct, rb->correct);
	eng_loss_result_free(ra);
	eng_loss_result_free(rb);
}

/*
 * The contiguous float32 kernels on every row length from 1 to 300 (all
 * the vector tails and partial blocks of the 8- and 16-lane kernels), with
 * rows of ordinary logits, +-1e4 logits, huge and small mixed, ties for the
 * max (the first one is the argmax) and confident rows whose loss is a tiny
 * log1p; each position against a float64 computation done here.
 */
Test(xent, float32_rows_of_every_length_match_double)
{
	enum { ROWS = 6, CMAX = 300 };
	static float x[ROWS * CMAX];
	int32_t y[ROWS];
	for (int C = 1; C <= CMAX; C++) {
		for (int r = 0; r < ROWS; r++) {
			float *row = x + r * C;
			for (int c = 0; c < C; c++) {
				double u = sin(c * 1.7 + r * 0.3 + C * 0.11);
				switch (r) {
				case 0: row[c] = (float)(u * 8); break;
				case 1: row[c] = u > 0 ? 1e4f : -1e4f; break;
				case 2: row[c] = (float)(c % 3 == 0 ? u * 1e4 : u * 0.5); break;
				case 3: row[c] = (float)((c * 7 + C) % 5); break; /* many ties */
				case 4: row[c] = 0; break;
				default: row[c] = (float)(u * 3e38); break; /* overflows x - m */
				}
			}
			y[r] = (r * 13 + C / 2) % C;
			if (r == 4)
				row[y[r]] = 30; /* confident and right: loss ~ (C-1) e^-30 */
		}
		eng_tensor yt = tens(ENG_I32, y, 1, I64(ROWS));
		eng_tensor yp = tens(ENG_F32, x, 2, I64(ROWS), I64(C));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.from_logits = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *r;
		run(&yt, &yp, &o, &r);
		int64_t pred[CMAX] = {0};
		for (int i = 0; i < ROWS; i++) {
			const float *row = x + i * C;
			double m = -INFINITY, s = 0;
			int64_t am = 0;
			for (int c = 0; c < C; c++) {
				if (row[c] > m) {
					m = row[c];
					am = c;
				}
			}
			for (int c = 0; c < C; c++)
				s += exp((double)row[c] - m);
			double want = m - row[y[i]] + log(s);
			if (i == 4 && C > 1)
				want = log1p((C - 1) * exp(-30.0));
			cr_expect(fabs(r->per_position[i] - want) <= 2e-6 * fabs(want) + 1e-15,
			          "C %d row %d: %.12g vs %.12g", C, i, r->per_position[i], want);
			pred[am]++;
		}
		for (int c = 0; c < C; c++)
			cr_expect_eq(r->per_class[c].predicted, pred[c], "C %d class %d", C, c);
		eng_loss_result_free(r);
	}
}

/* A NaN, +Inf or -Inf at any place of a float32 row (every vector tail)
 * is reported at its index, whatever the fast kernel saw. */
Test(xent, float32_rows_report_any_nonfinite_logit)
{
	static const float bad[] = {NAN, INFINITY, -INFINITY};
	float x[2 * 70];
	int32_t y[] = {0, 0};
	for (int C = 1; C <= 70; C++) {
		for (int c = 0; c < C; c++) {
			for (int b = 0; b < 3; b++) {
				for (int i = 0; i < 2 * C; i++)
					x[i] = (float)sin(i * 0.9) * 5;
				x[C + c] = bad[b]; /* in the second row */
				eng_tensor yt = tens(ENG_I32, y, 1, I64(2));
				eng_tensor yp = tens(ENG_F32, x, 2, I64(2), I64(C));
				eng_loss_opts o = ENG_LOSS_OPTS_INIT;
				o.from_logits = true;
				eng_error err = {0};
				eng_loss_result *r = NULL;
				int rc = eng_loss_compute(&r, &yt, &yp, &o, NULL, &err);
				cr_expect_eq(rc, ENG_ENONFINITE, "C %d c %d bad %d", C, c, b);
				cr_expect_eq(err.index, C + c, "C %d c %d bad %d", C, c, b);
				eng_loss_result_free(r);
			}
		}
	}
}

Test(xent, trailing_size1_label_axis_is_squeezed)
{
	eng_tensor yt = tens(ENG_F64, D(1, 2), 2, I64(2), I64(1));
	eng_tensor yp = tens(ENG_F64, P23, 2, I64(2), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	NEAR(run(&yt, &yp, &o, NULL), 1.176939193690798, 1e-12);
	/* and (N, 1) sample weights with (N) positions (Keras squeezes them) */
	eng_tensor sw = tens(ENG_F64, D(0.3, 0.7), 2, I64(2), I64(1));
	o.sample_weight = &sw;
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), 0.8135987767060484, 1e-12);
}

Test(xent, sample_weight_broadcasts_over_trailing_positions)
{
	/* positions (2, 3); weights (2) apply per row */
	double x[24];
	for (int i = 0; i < 24; i++)
		x[i] = (i % 7) * 0.5;
	eng_tensor yt = tens(ENG_F64, D(0, 1, 2, 3, 0, 1), 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, x, 3, I64(2), I64(3), I64(4));
	eng_tensor sw = tens(ENG_F64, D(2, 0.5), 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r0, *r1;
	run(&yt, &yp, &o, &r0);
	o.sample_weight = &sw;
	run(&yt, &yp, &o, &r1);
	for (int i = 0; i < 6; i++)
		NEAR(r1->per_position[i], r0->per_position[i] * (i < 3 ? 2 : 0.5), 1e-12);
	NEAR(r1->weight_sum, 3 * 2 + 3 * 0.5, 1e-12);
	eng_loss_result_free(r0);
	eng_loss_result_free(r1);
}

/* ---- validation ---------------------------------------------------------------------------- */

typedef struct bad_case {
	const char *what;
	int kind;
	int code;
	const char *field;
	int64_t index;
} bad_case;

/* Criterion may run each parameter in a re-executed process, where
 * pointers inside parameters are not valid: parameters are indices. */
static const bad_case bad_cases[] = {
        {"label 2 of 2 classes", 0, ENG_ELABEL, "y_true", 1},
        {"label 0.5", 1, ENG_ELABEL, "y_true", 0},
        {"negative probability", 2, ENG_EPROB, "y_pred", 1},
        {"row sum 0", 3, ENG_EPROB, "y_pred", 2},
        {"shape", 4, ENG_ESHAPE, "y_true", -1},
        {"negative class weight", 5, ENG_EWEIGHT, "class_weight", 1},
        {"NaN sample weight", 6, ENG_EWEIGHT, "sample_weight", 0},
        {"cost matrix shape", 7, ENG_ESHAPE, "cost_matrix", -1},
        {"axis out of range", 8, ENG_EINVAL, "axis", -1},
        {"NaN logit", 9, ENG_ENONFINITE, "y_pred", 3},
        {"pos_weight on a categorical loss", 10, ENG_EINVAL, "pos_weight", -1},
        {"label_smoothing > 1", 11, ENG_EINVAL, "label_smoothing", -1},
        {"negative distribution", 12, ENG_ELABEL, "y_true", 0},
        {"sample_weight shape", 13, ENG_ESHAPE, "sample_weight", -1},
        {"Inf logit in float32 fast path", 14, ENG_ENONFINITE, "y_pred", 2},
};

static const double GOODP[] = {0.2, 0.8, 0.5, 0.5};

ParameterizedTestParameters(xent, rejects)
{
	static int idx[sizeof bad_cases / sizeof *bad_cases];
	for (size_t i = 0; i < sizeof idx / sizeof *idx; i++)
		idx[i] = (int)i;
	return cr_make_param_array(int, idx, sizeof idx / sizeof *idx);
}

ParameterizedTest(int *ip, xent, rejects)
{
	const bad_case *bc = &bad_cases[*ip];
	double y[] = {0, 1}, p[4];
	memcpy(p, GOODP, sizeof p);
	eng_tensor yt = tens(ENG_F64, y, 1, I64(2));
	eng_tensor yp = tens(ENG_F64, p, 2, I64(2), I64(2));
	eng_tensor w = tens(ENG_F64, D(1, -1), 1, I64(2));
	eng_tensor wn = tens(ENG_F64, D(NAN, 1), 1, I64(2));
	eng_tensor cm = tens(ENG_F64, D(1, 1, 1, 1, 1, 1), 2, I64(2), I64(3));
	eng_tensor sw3 = tens(ENG_F64, D(1, 1, 1), 1, I64(3));
	float pf[] = {1, 2, INFINITY, 0};
	eng_tensor ypf = tens(ENG_F32, pf, 2, I64(2), I64(2));
	double dist[] = {-0.5, 1.5, 0, 1};
	eng_tensor tdist = tens(ENG_F64, dist, 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_error err = {0};
	switch (bc->kind) {
	case 0: y[1] = 2; break;
	case 1: y[0] = 0.5; break;
	case 2: p[1] = -0.1; break;
	case 3: p[2] = p[3] = 0; break;
	case 4:
		yt.shape[0] = 1;
		yt.size = 1;
		break;
	case 5: o.class_weight = &w; break;
	case 6: o.sample_weight = &wn; break;
	case 7: o.cost_matrix = &cm; break;
	case 8: o.axis = 2; break;
	case 9:
		p[3] = NAN;
		o.from_logits = true;
		break;
	case 10: o.pos_weight = &w; break;
	case 11: o.label_smoothing = 1.5; break;
	case 12:
		o.kind = ENG_LOSS_CATEGORICAL_CE;
		yt = tdist;
		break;
	case 13: o.sample_weight = &sw3; break;
	case 14:
		yp = ypf;
		o.from_logits = true;
		break;
	}
	int rc = fail(&yt, &yp, &o, &err);
	cr_expect_eq(rc, bc->code, "%s: rc %d, expected %d (%s)", bc->what, rc, bc->code, err.msg);
	cr_expect_eq(err.code, bc->code);
	cr_expect_str_eq(err.field, bc->field, "%s: field %s", bc->what, err.field);
	cr_expect_eq(err.index, bc->index, "%s: index %lld", bc->what, (long long)err.index);
	cr_expect(strlen(err.msg) > 0);
}

Test(xent, shape_message_names_both_shapes)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 2, 0, 1), 1, I64(5));
	eng_tensor yp = tens(ENG_F64, D(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1), 2, I64(4), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_error err = {0};
	cr_assert_eq(fail(&yt, &yp, &o, &err), ENG_ESHAPE);
	cr_expect(strstr(err.msg, "y_pred has shape [4, 3] but y_true has shape [5]") != NULL, "%s",
	          err.msg);
}

Test(xent, nan_propagates_when_asked)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, NAN, 0.5, 0.5), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.propagate_nan = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	cr_expect(isnan(r->per_position[0]));
	NEAR(r->per_position[1], log(2.0), 1e-12);
	cr_expect(isnan(r->wloss_sum));
	eng_loss_result_free(r);
}

Test(xent, float32_strided_tiles_match_double)
{
	/* (B=2, V=45, T=70), axis 1: two tiles of 32 and a tail of 6 per b */
	enum { B = 2, V = 45, T = 70 };
	static float xf[B * V * T];
	static double xd[B * V * T];
	int32_t y[B * T];
	for (int i = 0; i < B * V * T; i++) {
		xf[i] = (float)(sin(i * 0.91) * 7);
		xd[i] = xf[i];
	}
	for (int i = 0; i < B * T; i++)
		y[i] = i % 9 == 4 ? -100 : (i * 5) % V;
	xf[1 * V * T + 3 * T + 40] = NAN; /* b 1, class 3, t 40: a tile falls back */
	xd[1 * V * T + 3 * T + 40] = NAN;
	eng_tensor yt = tens(ENG_I32, y, 2, I64(B), I64(T));
	eng_tensor a = tens(ENG_F32, xf, 3, I64(B), I64(V), I64(T));
	eng_tensor b = tens(ENG_F64, xd, 3, I64(B), I64(V), I64(T));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.axis = 1;
	o.has_ignore_class = true;
	o.ignore_class = -100;
	o.propagate_nan = true;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *ra, *rb;
	run(&yt, &a, &o, &ra);
	run(&yt, &b, &o, &rb);
	for (int i = 0; i < B * T; i++) {
		double u = ra->per_position[i], v = rb->per_position[i];
		if (i == T + 40 && y[i] != -100) {
			cr_expect(isnan(u) && isnan(v), "NaN propagates at %d", i);
			continue;
		}
		cr_expect(fabs(u - v) <= 1e-6 * fabs(v) + 1e-12, "pos %d: %.12g vs %.12g", i, u, v);
	}
	cr_expect_eq(ra->ignored, rb->ignored);
	cr_expect_eq(ra->correct, rb->correct);
	for (int c = 0; c < V; c++)
		cr_expect_eq(ra->per_class[c].predicted, rb->per_class[c].predicted, "class %d", c);
	eng_loss_result_free(ra);
	eng_loss_result_free(rb);
	/* without propagate the NaN is reported with its flat index */
	o.propagate_nan = false;
	eng_error err = {0};
	cr_expect_eq(fail(&yt, &a, &o, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 1 * V * T + 3 * T + 40);
}

Test(xent, confusion_matrix_is_bounded)
{
	enum { C = ENG_LOSS_MAX_CONFUSION + 1 };
	static double x[C];
	eng_tensor yt = tens(ENG_F64, D(0), 1, I64(1));
	eng_tensor yp = tens(ENG_F64, x, 2, I64(1), I64(C));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.confusion = true;
	eng_error err = {0};
	cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_EINVAL);
	cr_expect_str_eq(err.field, "confusion_matrix");
	o.confusion = false; /* the loss itself is fine: log C */
	NEAR(run(&yt, &yp, &o, NULL), log((double)C), 1e-9);
}

/* ---- float32 rows in blocks (rows_block: 16-row transposed kernel for C <= 32) ------- */

/* Sparse CE of one float32 row in double, the max's exp(0) terms counted
 * apart so a tiny loss log1p(rest) keeps its digits; the first argmax. */
static double ref_row(const float *x, int64_t C, int64_t y, int64_t *amax)
{
	double m = -INFINITY, ones = 0, rest = 0;
	*amax = 0;
	for (int64_t c = 0; c < C; c++) {
		if (x[c] > m) {
			m = x[c];
			*amax = c;
		}
	}
	for (int64_t c = 0; c < C; c++) {
		if (x[c] == m)
			ones++;
		else
			rest += exp((double)x[c] - m);
	}
	return (m - x[y]) + (ones == 1 ? log1p(rest) : log(ones + rest));
}

/* Row r of a test matrix: ordinary, +-1e30, all but one underflowing,
 * ties, confident, differences that overflow float, mixed scales, terms in
 * float's subnormal range, a small confident loss. */
static void fill_row(float *row, int64_t C, int r, int64_t y)
{
	for (int64_t c = 0; c < C; c++) {
		double u = sin(c * 1.3 + r * 0.7 + C * 0.19);
		switch (r % 9) {
		case 0: row[c] = (float)(u * 8); break;
		case 1: row[c] = u > 0 ? 1e30f : -1e30f; break;
		case 2: row[c] = (float)(u * 3 - 150); break;
		case 3: row[c] = (float)((c * 7 + C) % 5); break;
		case 4: row[c] = 0; break;
		case 5: row[c] = (float)(u * 3e38); break;
		case 6: row[c] = (float)(c % 3 == 0 ? u * 1e4 : u * 0.5); break;
		case 7: row[c] = (float)(u * 8 - 90); break;
		default: row[c] = (float)u; break;
		}
	}
	if (r % 9 == 2)
		row[(r / 9) % C] = 0; /* the one that does not underflow */
	if (r % 9 == 4 || r % 9 == 7)
		row[y] = 30;
	if (r % 9 == 8)
		row[y] = 14;
}

/*
 * Every row length 1..40 (one and two masked vectors, the 16/32 lane
 * boundaries) on 83 rows (a block of 64, a full and a partial group of 16),
 * every 11th row ignored; each position, the argmax table and the plain
 * mean against ref_row. Tolerance 1e-6 relative, plus 1e-35 absolute for
 * terms below float's normal range.
 */
Test(xent, float32_row_blocks_match_double)
{
	enum { N = 83, CMAX = 40 };
	static float x[N * CMAX];
	int32_t y[N];
	for (int C = 1; C <= CMAX; C++) {
		for (int r = 0; r < N; r++) {
			y[r] = r % 11 == 5 ? -100 : (r * 7 + C / 3) % C;
			fill_row(x + r * C, C, r, y[r] < 0 ? 0 : y[r]);
		}
		eng_tensor yt = tens(ENG_I32, y, 1, I64(N));
		eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.from_logits = true;
		o.has_ignore_class = true;
		o.ignore_class = -100;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *res;
		run(&yt, &yp, &o, &res);
		int64_t pred[CMAX] = {0}, correct = 0, ignored = 0;
		static int64_t conf[CMAX * CMAX];
		double sum = 0, lsum[CMAX] = {0};
		memset(conf, 0, sizeof(conf));
		for (int r = 0; r < N; r++) {
			if (y[r] < 0) {
				ignored++;
				cr_expect_eq(res->per_position[r], 0);
				continue;
			}
			int64_t am;
			double want = ref_row(x + r * C, C, y[r], &am);
			double got = res->per_position[r];
			cr_expect(fabs(got - want) <= 1e-6 * fabs(want) + 1e-35,
			          "C %d row %d: %.12g vs %.12g", C, r, got, want);
			pred[am]++;
			correct += am == y[r];
			sum += want;
			lsum[y[r]] += want;
			conf[y[r] * C + am]++;
		}
		cr_expect_eq(res->ignored, ignored, "C %d", C);
		cr_expect_eq(res->count, N - ignored, "C %d", C);
		cr_expect_eq(res->correct, correct, "C %d", C);
		for (int c = 0; c < C; c++)
			cr_expect_eq(res->per_class[c].predicted, pred[c], "C %d class %d", C, c);
		eng_loss_result_free(res);
		/* unweighted, no per-position output: with the tables, then plain */
		o.reduction = ENG_RED_MEAN;
		o.confusion = true;
		double want = sum / (double)(N - ignored);
		NEAR(run(&yt, &yp, &o, &res), want, 1e-6 * fabs(want));
		cr_expect_eq(res->correct, correct, "C %d", C);
		for (int c = 0; c < C; c++) {
			cr_expect_eq(res->per_class[c].predicted, pred[c], "C %d class %d", C, c);
			NEAR(res->per_class[c].loss_sum, lsum[c], 1e-6 * lsum[c] + 1e-35);
		}
		for (int i = 0; i < C * C; i++)
			cr_expect_eq(res->confusion[i], conf[i], "C %d cell %d", C, i);
		eng_loss_result_free(res);
		o.per_class = false;
		o.confusion = false;
		double mean = run(&yt, &yp, &o, NULL);
		cr_expect(fabs(mean - want) <= 1e-6 * fabs(want), "C %d: mean %.12g vs %.12g", C,
		          mean, want);
	}
}

/* With class and sample weights, a cost matrix, the per-class table and
 * the confusion matrix, float32 rows (block path) give what float64 rows
 * (the general path) give; labels as float64 (the generic label reader). */
Test(xent, float32_row_blocks_options_match_double)
{
	enum { N = 70, CMAX = 40 };
	static const int Cs[] = {1, 2, 3, 8, 9, 10, 15, 16, 17, 31, 32, 33, 40};
	static float xf[N * CMAX];
	static double xd[N * CMAX], cw[CMAX], cost[CMAX * CMAX];
	double y[N], sw[N];
	for (size_t ci = 0; ci < sizeof(Cs) / sizeof(Cs[0]); ci++) {
		int C = Cs[ci];
		for (int r = 0; r < N; r++) {
			y[r] = r % 13 == 3 && C > 7 ? 7 : (r * 5 + 1) % C; /* 7: ignore_class */
			sw[r] = 0.25 + (r % 4) * 0.5;
			fill_row(xf + r * C, C, r, (int64_t)y[r] % C);
		}
		for (int i = 0; i < N * C; i++)
			xd[i] = xf[i];
		for (int c = 0; c < C; c++)
			cw[c] = 0.5 + c * 0.125;
		for (int i = 0; i < C * C; i++)
			cost[i] = i % (C + 1) == 0 ? 1.0 : 2.0 + (i % 3);
		eng_tensor yt = tens(ENG_F64, y, 1, I64(N));
		eng_tensor a = tens(ENG_F32, xf, 2, I64(N), I64(C));
		eng_tensor b = tens(ENG_F64, xd, 2, I64(N), I64(C));
		eng_tensor cwt = tens(ENG_F64, cw, 1, I64(C));
		eng_tensor cmt = tens(ENG_F64, cost, 2, I64(C), I64(C));
		eng_tensor swt = tens(ENG_F64, sw, 1, I64(N));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.from_logits = true;
		o.has_ignore_class = C > 7;
		o.ignore_class = 7;
		o.class_weight = &cwt;
		o.cost_matrix = &cmt;
		o.sample_weight = &swt;
		o.confusion = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *ra, *rb;
		run(&yt, &a, &o, &ra);
		run(&yt, &b, &o, &rb);
		for (int r = 0; r < N; r++) {
			double u = ra->per_position[r], v = rb->per_position[r];
			/* the float64 path's log(1 + tiny) is only ~1e-16 absolute */
			cr_expect(fabs(u - v) <= 1e-6 * fabs(v) + 1e-13,
			          "C %d row %d: %.12g vs %.12g", C, r, u, v);
		}
		NEAR(ra->wloss_sum, rb->wloss_sum, 1e-6 * fabs(rb->wloss_sum));
		NEAR(ra->weight_sum, rb->weight_sum, 1e-12 * rb->weight_sum);
		cr_expect_eq(ra->count, rb->count);
		cr_expect_eq(ra->ignored, rb->ignored);
		cr_expect_eq(ra->correct, rb->correct);
		for (int c = 0; c < C; c++) {
			const eng_loss_class *p = &ra->per_class[c], *q = &rb->per_class[c];
			cr_expect_eq(p->support, q->support, "C %d class %d", C, c);
			cr_expect_eq(p->predicted, q->predicted, "C %d class %d", C, c);
			cr_expect_eq(p->correct, q->correct, "C %d class %d", C, c);
			NEAR(p->weight_sum, q->weight_sum, 1e-12 * fabs(q->weight_sum));
			NEAR(p->loss_sum, q->loss_sum, 1e-6 * fabs(q->loss_sum) + 1e-12);
		}
		for (int i = 0; i < C * C; i++)
			cr_expect_eq(ra->confusion[i], rb->confusion[i], "C %d cell %d", C, i);
		eng_loss_result_free(ra);
		eng_loss_result_free(rb);
	}
}

/*
 * A NaN, +Inf or -Inf in row 37 of 50 (a group of 16 rows, not its first
 * lane), for every row length 1..40 and first, middle and last column: the
 * error names its flat index; with propagate, NaN (and +Inf) make that
 * row's loss non-finite only, and -Inf is a logit of probability 0.
 */
Test(xent, float32_row_blocks_nonfinite)
{
	enum { N = 50, CMAX = 40, BAD = 37 };
	static const float bad[] = {NAN, INFINITY, -INFINITY};
	static float x[N * CMAX];
	int32_t y[N];
	for (int C = 1; C <= CMAX; C++) {
		int cols[] = {0, C / 2, C - 1};
		for (int ci = 0; ci < 3; ci++) {
			for (int b = 0; b < 3; b++) {
				int c = cols[ci];
				for (int r = 0; r < N; r++) {
					y[r] = (r * 3) % C;
					fill_row(x + r * C, C, 0, y[r]);
				}
				if (C > 1 && y[BAD] == c)
					y[BAD] = (c + 1) % C; /* -Inf is not the label's logit */
				x[BAD * C + c] = bad[b];
				eng_tensor yt = tens(ENG_I32, y, 1, I64(N));
				eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
				eng_loss_opts o = ENG_LOSS_OPTS_INIT;
				o.from_logits = true;
				eng_error err = {0};
				cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_ENONFINITE,
				             "C %d c %d b %d", C, c, b);
				cr_expect_eq(err.index, BAD * C + c, "C %d c %d b %d", C, c, b);
				o.propagate_nan = true;
				o.reduction = ENG_RED_NONE;
				eng_loss_result *res;
				run(&yt, &yp, &o, &res);
				for (int r = 0; r < N; r++) {
					double got = res->per_position[r];
					if (r == BAD && (b < 2 || C == 1)) {
						cr_expect(!isfinite(got), "C %d c %d b %d: %g", C,
						          c, b, got);
						continue;
					}
					int64_t am;
					double want = ref_row(x + r * C, C, y[r], &am);
					cr_expect(fabs(got - want) <= 1e-6 * fabs(want) + 1e-35,
					          "C %d c %d b %d row %d: %.12g vs %.12g", C, c, b,
					          r, got, want);
				}
				eng_loss_result_free(res);
			}
		}
	}
}

/* Problems are reported in row order inside a block: a non-finite logit
 * before a bad label wins, and a bad label before a non-finite logit. */
Test(xent, float32_row_blocks_report_in_row_order)
{
	enum { N = 70, C = 10 };
	static float x[N * C];
	float y[N];
	for (int i = 0; i < N * C; i++)
		x[i] = (float)sin(i * 0.3);
	for (int r = 0; r < N; r++)
		y[r] = (float)(r % C);
	eng_tensor yt = tens(ENG_F32, y, 1, I64(N));
	eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	eng_error err = {0};
	x[20 * C + 4] = NAN;
	y[30] = 2.5f;
	cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 20 * C + 4);
	x[20 * C + 4] = 0;
	x[40 * C + 1] = INFINITY;
	cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 30);
	y[30] = (float)C; /* out of range */
	cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 30);
	y[30] = 3;
	cr_expect_eq(fail(&yt, &yp, &o, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 40 * C + 1);
}

/* Short rows (C <= 32) whose label is far above the rest: x - max rounds in
 * float (40 - 7.3 by up to 2e-6), which the short-row kernel corrects, so
 * the tiny loss ~ (C - 1) e^-36 keeps ~1e-7 of its digits. */
Test(xent, float32_short_rows_far_below_max_keep_digits)
{
	enum { N = 40, CMAX = 32 };
	static float x[N * CMAX];
	int32_t y[N];
	for (int C = 2; C <= CMAX; C++) {
		for (int r = 0; r < N; r++) {
			y[r] = (r * 5) % C;
			for (int c = 0; c < C; c++)
				x[r * C + c] = (float)(sin(c * 2.1 + r * 0.37) * 8);
			x[r * C + y[r]] = 40.0f + (float)r * 0.37f;
		}
		eng_tensor yt = tens(ENG_I32, y, 1, I64(N));
		eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.from_logits = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *res;
		run(&yt, &yp, &o, &res);
		for (int r = 0; r < N; r++) {
			int64_t am;
			double want = ref_row(x + r * C, C, y[r], &am);
			cr_expect(fabs(res->per_position[r] - want) <= 3e-7 * want,
			          "C %d row %d: %.12g vs %.12g", C, r, res->per_position[r], want);
		}
		eng_loss_result_free(res);
	}
}

/* ---- distribution targets: a position weighs its sample weight ------------------------ */

/* The case: y_true rows summing to 0.5 and 1 divide by 2 positions,
 * not by 1.5 (PyTorch cross_entropy with probability targets, Keras). */
Test(xent, categorical_soft_targets_divide_by_positions)
{
	eng_tensor yt = tens(ENG_F64, D(0.5, 0, 0.2, 0.8), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(0.6, 0.4, 0.3, 0.7), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_CATEGORICAL_CE;
	double l0 = -0.5 * log(0.6), l1 = -(0.2 * log(0.3) + 0.8 * log(0.7));
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), (l0 + l1) / 2, 1e-12);
	NEAR(r->weight_sum, 2, 1e-12);
	cr_expect_eq(r->count, 2);
	eng_loss_result_free(r);
	/* with sample weights the mean divides by their sum */
	eng_tensor sw = tens(ENG_F64, D(3, 0.5), 1, I64(2));
	o.sample_weight = &sw;
	NEAR(run(&yt, &yp, &o, &r), (3 * l0 + 0.5 * l1) / 3.5, 1e-12);
	NEAR(r->weight_sum, 3.5, 1e-12);
	eng_loss_result_free(r);
}

/* An all-zero target row is a counted position of class 0 (the argmax),
 * with loss 0 for cross-entropy without smoothing. */
Test(xent, categorical_all_zero_row_is_counted)
{
	eng_tensor yt = tens(ENG_F64, D(0, 0, 0, 0, 1, 0), 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, D(0.2, 0.5, 0.3, 0.1, 0.6, 0.3), 2, I64(2), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_CATEGORICAL_CE;
	o.per_position = true;
	eng_loss_result *r;
	NEAR(run(&yt, &yp, &o, &r), -log(0.6) / 2, 1e-12);
	cr_expect_eq(r->count, 2);
	cr_expect_eq(r->ignored, 0);
	NEAR(r->weight_sum, 2, 1e-12);
	NEAR(r->per_position[0], 0, 1e-15);
	cr_expect_eq(r->per_class[0].support, 1);
	NEAR(r->per_class[0].weight_sum, 1, 1e-12);
	cr_expect_eq(r->per_class[1].predicted, 2);
	eng_loss_result_free(r);
	/* ignore_class 0 drops it, as it drops any position of class 0 */
	o.has_ignore_class = true;
	o.ignore_class = 0;
	NEAR(run(&yt, &yp, &o, &r), -log(0.6), 1e-12);
	cr_expect_eq(r->ignored, 1);
	eng_loss_result_free(r);
}

/* Focal and KL weigh a position like categorical CE: sample weight times
 * the cost factor; class weights only inside the sum. */
Test(xent, focal_and_kl_position_weight)
{
	eng_tensor yt = tens(ENG_F64, D(0.3, 0.3, 0, 0, 1, 0), 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, D(0.2, 0.5, 0.3, 0.1, 0.6, 0.3), 2, I64(2), I64(3));
	eng_tensor cw = tens(ENG_F64, D(2, 3, 5), 1, I64(3));
	eng_tensor cost = tens(ENG_F64, D(1, 4, 1, 1, 1, 1, 1, 1, 1), 2, I64(3), I64(3));
	const double *y = yt.data, *q = yp.data, *w = cw.data;
	for (int kind = 0; kind < 2; kind++) {
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.kind = kind ? ENG_LOSS_KL : ENG_LOSS_CATEGORICAL_FOCAL;
		o.class_weight = &cw;
		o.cost_matrix = &cost;
		double l[2] = {0, 0};
		for (int i = 0; i < 2; i++)
			for (int c = 0; c < 3; c++) {
				double qc = q[3 * i + c], yc = y[3 * i + c];
				if (kind) {
					double pc = fmax(yc, 1e-7);
					l[i] += w[c] * pc * (log(pc) - log(qc));
				} else {
					l[i] += w[c] * 0.25 * pow(1 - qc, 2) * -(yc * log(qc));
				}
			}
		/* row 0: true class 0 (first max), predicted 1: cost 4 */
		eng_loss_result *r;
		NEAR(run(&yt, &yp, &o, &r), (4 * l[0] + l[1]) / 5, 1e-12);
		NEAR(r->weight_sum, 5, 1e-12);
		NEAR(r->per_class[0].weight_sum, 4, 1e-12);
		NEAR(r->per_class[1].weight_sum, 1, 1e-12);
		eng_loss_result_free(r);
	}
}

/* ---- float32 strided tiles of any width (tile_f32_v4 on AVX-512) ------------------- */

/* (B, V, T) float32 logits with axis 1 for widths T that are not multiples
 * of a tile (16 lanes, 128 positions) nor of each other: every position
 * against ref_row on its gathered class row, the argmax counts exactly;
 * hard rows (fill_row: +-1e30, underflow, ties, huge, subnormal terms) go
 * down the class axis of some positions. */
Test(xent, float32_strided_tiles_of_odd_widths_match_double)
{
	static const int64_t Ts[] = {2, 5, 16, 17, 33, 127, 128, 129, 200, 300};
	static const int64_t Vs[] = {1, 3, 40, 150};
	for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
		for (size_t vi = 0; vi < sizeof Vs / sizeof Vs[0]; vi++) {
			int64_t B = 2, T = Ts[ti], V = Vs[vi];
			float *x = malloc((size_t)(B * V * T) * sizeof(float));
			float *row = malloc((size_t)V * sizeof(float));
			int32_t *y = malloc((size_t)(B * T) * sizeof(int32_t));
			for (int64_t b = 0; b < B; b++)
				for (int64_t t = 0; t < T; t++) {
					int64_t q = b * T + t;
					y[q] = q % 11 == 6 ? -100 : (int32_t)((q * 7) % V);
					fill_row(row, V, (int)(q % 9 == 5 ? 0 : q),
					         y[q] < 0 ? 0 : y[q]);
					for (int64_t c = 0; c < V; c++)
						x[(b * V + c) * T + t] = row[c];
				}
			eng_tensor yt = tens(ENG_I32, y, 2, I64(B), I64(T));
			eng_tensor yp = tens(ENG_F32, x, 3, I64(B), I64(V), I64(T));
			eng_loss_opts o = ENG_LOSS_OPTS_INIT;
			o.from_logits = true;
			o.axis = 1;
			o.has_ignore_class = true;
			o.ignore_class = -100;
			o.reduction = ENG_RED_NONE;
			eng_loss_result *r;
			run(&yt, &yp, &o, &r);
			int64_t correct = 0, ignored = 0;
			int64_t *pred = calloc((size_t)V, sizeof(int64_t));
			for (int64_t b = 0; b < B; b++)
				for (int64_t t = 0; t < T; t++) {
					int64_t q = b * T + t, am;
					if (y[q] < 0) {
						ignored++;
						cr_expect_eq(r->per_position[q], 0.0);
						continue;
					}
					for (int64_t c = 0; c < V; c++)
						row[c] = x[(b * V + c) * T + t];
					double want = ref_row(row, V, y[q], &am);
					double got = r->per_position[q];
					/* 1e-13 absolute: without AVX-512 a tile narrower
					 * than 32 goes to the general (double) path, whose
					 * log of a sum near 1 keeps ~1e-14 absolute */
					cr_expect(fabs(got - want) <= 1e-6 * fabs(want) + 1e-13,
					          "T=%lld V=%lld pos %lld: %.12g vs %.12g",
					          (long long)T, (long long)V, (long long)q, got,
					          want);
					correct += am == y[q];
					pred[am]++;
				}
			cr_expect_eq(r->ignored, ignored, "T=%lld V=%lld", (long long)T,
			             (long long)V);
			cr_expect_eq(r->correct, correct, "T=%lld V=%lld", (long long)T,
			             (long long)V);
			for (int64_t c = 0; c < V; c++)
				cr_expect_eq(r->per_class[c].predicted, pred[c],
				             "T=%lld V=%lld class %lld", (long long)T, (long long)V,
				             (long long)c);
			eng_loss_result_free(r);
			free(pred);
			free(x);
			free(row);
			free(y);
		}
	}
}

/* A NaN, +Inf or -Inf logit in a cut-short tile: that tile goes to the
 * general path (NaN propagates, or the error names the element); the other
 * tiles are untouched. */
Test(xent, float32_strided_partial_tile_nonfinite)
{
	enum { B = 1, V = 20, T = 150 }; /* tiles of 128 and 22 */
	static const float bad[] = {NAN, INFINITY, -INFINITY};
	for (int k = 0; k < 3; k++) {
		static float x[B * V * T];
		static double xd[B * V * T];
		int32_t y[B * T];
		for (int i = 0; i < B * V * T; i++)
			xd[i] = x[i] = (float)(cos(i * 0.37) * 5);
		for (int i = 0; i < B * T; i++)
			y[i] = (i * 3) % V;
		int at = 7 * T + 140; /* class 7, position 140: the short tile */
		x[at] = bad[k];
		xd[at] = bad[k];
		eng_tensor yt = tens(ENG_I32, y, 2, I64(B), I64(T));
		eng_tensor a = tens(ENG_F32, x, 3, I64(B), I64(V), I64(T));
		eng_tensor b = tens(ENG_F64, xd, 3, I64(B), I64(V), I64(T));
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.from_logits = true;
		o.axis = 1;
		o.propagate_nan = true;
		o.reduction = ENG_RED_NONE;
		eng_loss_result *ra, *rb;
		run(&yt, &a, &o, &ra);
		run(&yt, &b, &o, &rb);
		for (int i = 0; i < B * T; i++) {
			double u = ra->per_position[i], v = rb->per_position[i];
			if (isnan(v) || isinf(v)) {
				cr_expect(isnan(u) == isnan(v) && isinf(u) == isinf(v),
				          "k=%d pos %d: %g vs %g", k, i, u, v);
				continue;
			}
			cr_expect(fabs(u - v) <= 1e-6 * fabs(v) + 1e-12,
			          "k=%d pos %d: %.12g vs %.12g", k, i, u, v);
		}
		cr_expect_eq(ra->correct, rb->correct);
		eng_loss_result_free(ra);
		eng_loss_result_free(rb);
		o.propagate_nan = false;
		eng_error err = {0};
		cr_expect_eq(fail(&yt, &a, &o, &err), ENG_ENONFINITE, "k=%d", k);
		cr_expect_eq(err.index, at, "k=%d", k);
	}
}
