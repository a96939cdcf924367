/*
 * test_loss_regress.c - mean squared / absolute error, Huber
 * (engine/src/regress.c) and the gaussian_mixture loss (engine/src/gmm.c).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "lossd/loss.h"
#include "loss_helpers.h"

Test(regress, keras_docstrings)
{
	eng_tensor yt = tens(ENG_F64, D(0, 1, 0, 0), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, 1, 1, 0), 2, I64(2), I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_MSE;
	NEAR(run(&yt, &yp, &o, NULL), 0.5, 1e-15);
	o.kind = ENG_LOSS_MAE;
	NEAR(run(&yt, &yp, &o, NULL), 0.5, 1e-15);
	eng_tensor hp = tens(ENG_F64, D(0.6, 0.4, 0.4, 0.6), 2, I64(2), I64(2));
	o.kind = ENG_LOSS_HUBER;
	NEAR(run(&yt, &hp, &o, NULL), 0.155, 1e-12);
}

Test(regress, huber_delta_and_weights)
{
	eng_tensor yt = tens(ENG_F32, (const float[]){0, 0, 0}, 1, I64(3));
	eng_tensor yp = tens(ENG_F32, (const float[]){0.25f, 1, -3}, 1, I64(3));
	eng_tensor sw = tens(ENG_F64, D(1, 2, 3), 1, I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_HUBER;
	o.delta = 0.5;
	o.sample_weight = &sw;
	o.reduction = ENG_RED_SUM;
	double l = 0.5 * 0.0625 + 2 * (0.5 * 1 - 0.125) + 3 * (0.5 * 3 - 0.125);
	NEAR(run(&yt, &yp, &o, NULL), l, 1e-12);
	o.reduction = ENG_RED_MEAN;
	NEAR(run(&yt, &yp, &o, NULL), l / 6, 1e-12);
	o.reduction = ENG_RED_SUM_OVER_BATCH_SIZE;
	NEAR(run(&yt, &yp, &o, NULL), l / 3, 1e-12);
}

Test(regress, rank2_per_position_and_row_weights)
{
	eng_tensor yt = tens(ENG_F64, D(1, 2, 3, 4), 2, I64(2), I64(2));
	eng_tensor yp = tens(ENG_F64, D(2, 2, 1, 5), 2, I64(2), I64(2));
	eng_tensor sw = tens(ENG_F64, D(2, 0.5), 2, I64(2), I64(1));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_MSE;
	o.sample_weight = &sw;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	cr_expect(isnan(run(&yt, &yp, &o, &r)));
	cr_assert_not_null(r->per_position);
	NEAR(r->per_position[0], 2, 0);
	NEAR(r->per_position[1], 0, 0);
	NEAR(r->per_position[2], 2, 0);
	NEAR(r->per_position[3], 0.5, 0);
	cr_expect_eq(r->pos_ndim, 2);
	cr_expect_eq(r->has_accuracy, false);
	cr_expect_null(r->per_class);
	eng_loss_result_free(r);
}

Test(regress, nonfinite_rejected_unless_propagate)
{
	eng_tensor yt = tens(ENG_F64, D(1, INFINITY), 1, I64(2));
	eng_tensor yp = tens(ENG_F64, D(1, 1), 1, I64(2));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_result *r = NULL;
	eng_error err = {0};
	o.kind = ENG_LOSS_MAE;
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, NULL, &err), ENG_ENONFINITE);
	cr_expect_str_eq(err.field, "y_true");
	cr_expect_eq(err.index, 1);
	o.propagate_nan = true;
	cr_expect(isinf(run(&yt, &yp, &o, NULL)));
	o.from_logits = true;
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, NULL, &err), ENG_EINVAL);
	cr_expect_str_eq(err.field, "from_logits");
}

/* ---- gaussian mixture ------------------------------------------------------------------ */

static double gauss_sum(const double *abc, int K, double x)
{
	double f = 0;
	for (int k = 0; k < K; k++)
		f += abc[3 * k] *
		     exp(-(x - abc[3 * k + 1]) * (x - abc[3 * k + 1]) / (2 * abc[3 * k + 2]));
	return f;
}

Test(gmm, default_grid_mae_and_mse)
{
	/* N = 2, Z = 3 (grid 0, 0.5, 1), K = 2 */
	double yt_[] = {1, 0.5, 0.2, 0, 0.3, 0.9};
	double yp_[] = {1, 0.2, 0.1, 0.5, 0.8, 0.05, 0.3, 0.5, 0.2, 1.2, 1, 0.3};
	eng_tensor yt = tens(ENG_F64, yt_, 2, I64(2), I64(3));
	eng_tensor yp = tens(ENG_F64, yp_, 2, I64(2), I64(6));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_GAUSSIAN_MIXTURE;
	double mae[2] = {0}, mse[2] = {0}, grid[] = {0, 0.5, 1};
	for (int n = 0; n < 2; n++)
		for (int z = 0; z < 3; z++) {
			double e = yt_[n * 3 + z] - gauss_sum(yp_ + 6 * n, 2, grid[z]);
			mae[n] += fabs(e) / 3;
			mse[n] += e * e / 3;
		}
	NEAR(run(&yt, &yp, &o, NULL), (mae[0] + mae[1]) / 2, 1e-12);
	o.gmm_error = ENG_GMM_MSE;
	o.reduction = ENG_RED_NONE;
	eng_loss_result *r;
	run(&yt, &yp, &o, &r);
	NEAR(r->per_position[0], mse[0], 1e-12);
	NEAR(r->per_position[1], mse[1], 1e-12);
	cr_expect_eq(r->count, 2);
	eng_loss_result_free(r);

	/* an explicit grid */
	eng_tensor x = tens(ENG_F64, D(-1, 0, 2), 1, I64(3));
	double xs[] = {-1, 0, 2}, want = 0;
	for (int n = 0; n < 2; n++)
		for (int z = 0; z < 3; z++)
			want += fabs(yt_[n * 3 + z] - gauss_sum(yp_ + 6 * n, 2, xs[z])) / 3;
	o.x = &x;
	o.gmm_error = ENG_GMM_MAE;
	o.reduction = ENG_RED_SUM;
	NEAR(run(&yt, &yp, &o, NULL), want, 1e-12);
}

Test(gmm, rejects_nonpositive_width_and_bad_shapes)
{
	double yt_[] = {1, 0.5}, yp_[] = {1, 0.2, 0.0};
	eng_tensor yt = tens(ENG_F64, yt_, 2, I64(1), I64(2));
	eng_tensor yp = tens(ENG_F64, yp_, 2, I64(1), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_result *r = NULL;
	eng_error err = {0};
	o.kind = ENG_LOSS_GAUSSIAN_MIXTURE;
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, NULL, &err), ENG_EPROB);
	cr_expect_str_eq(err.field, "y_pred");
	cr_expect_eq(err.index, 2);
	eng_tensor yp4 = tens(ENG_F64, D(1, 2, 3, 4), 2, I64(1), I64(4));
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp4, &o, NULL, &err), ENG_ESHAPE);
	eng_tensor x = tens(ENG_F64, D(0, 1, 2), 1, I64(3));
	yp_[2] = 1;
	o.x = &x;
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, NULL, &err), ENG_ESHAPE);
	cr_expect_str_eq(err.field, "x");
	cr_expect_null(r);
}
