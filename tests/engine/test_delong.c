/*
 * test_delong.c - DeLong's and Hanley-McNeil's standard errors and the
 * interval around an AUC (engine/src/delong.c).
 *
 * Anchors: pROC's own published figures for its example data set aSAH
 * (Turck et al. 2010, 113 patients; outcome "Poor" is the positive class):
 *   ci.auc(roc(aSAH$outcome, aSAH$ndka))  = 0.501244999271703,
 *     0.611957994579946, 0.722670989888189 (pROC tests/testthat/test-ci.auc.R)
 *   ci.auc(roc(aSAH$outcome, aSAH$s100b)) = AUC 0.7314, 95% CI 0.6301-0.8326
 *     (DeLong), as pROC prints it in its examples
 * The columns below are read from pROC's data/aSAH.RData. Then a property
 * test against the O(P*N) placement computation, ties and float32 included.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "lossd/aucci.h"
#include "rng.h"

static const double asah_poor[113] = {
        0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0,
        0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
        0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0,
        0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0,
        1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0,
        1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0};
static const double asah_s100b[113] = {
        0.13, 0.14, 0.1,  0.04, 0.13, 0.1,  0.47, 0.16, 0.18, 0.1,  0.12, 0.1,  0.44, 0.71, 0.04,
        0.08, 0.49, 0.04, 0.07, 0.33, 0.09, 0.09, 0.07, 0.11, 0.07, 0.17, 0.07, 0.11, 0.13, 0.19,
        0.05, 0.16, 0.41, 0.14, 0.34, 0.35, 0.48, 0.09, 0.96, 0.25, 0.5,  0.46, 0.16, 0.07, 0.43,
        0.45, 0.11, 0.08, 0.09, 0.86, 0.52, 0.08, 0.06, 0.13, 2.07, 0.1,  0.14, 0.15, 0.07, 0.06,
        0.77, 0.05, 0.09, 0.3,  0.03, 0.09, 0.04, 0.23, 0.7,  0.09, 0.27, 0.71, 0.08, 0.26, 0.08,
        0.16, 0.09, 0.13, 0.1,  0.08, 0.11, 0.33, 0.11, 0.28, 0.07, 0.1,  0.32, 0.22, 0.07, 0.05,
        0.24, 0.38, 0.1,  0.15, 0.08, 0.14, 0.1,  0.07, 0.04, 0.19, 0.56, 0.14, 0.58, 0.32, 0.82,
        0.74, 0.15, 0.47, 0.17, 0.44, 0.15, 0.5,  0.48};
static const double asah_ndka[113] = {
        3.01,  8.54,  8.09,   10.42, 17.4,  12.75, 6.0,   13.2,  15.54, 6.01,  15.96, 17.86, 5.18,
        8.9,   13.41, 20.75,  11.6,  16.11, 32.37, 54.82, 32.41, 49.94, 40.34, 9.47,  6.29,  12.53,
        6.54,  6.3,   80.3,   12.8,  9.8,   9.81,  9.85,  18.21, 5.03,  14.04, 21.93, 8.02,  7.42,
        8.38,  6.59,  9.63,   13.12, 7.96,  14.34, 41.43, 7.63,  7.06,  12.59, 13.56, 3.87,  9.44,
        7.66,  12.98, 419.19, 27.19, 22.27, 9.95,  21.22, 11.73, 10.4,  58.83, 6.39,  11.09, 12.22,
        13.67, 17.21, 22.63,  12.9,  9.7,   21.57, 8.23,  72.57, 15.54, 10.51, 10.6,  14.57, 5.19,
        9.63,  4.61,  21.48,  17.3,  12.71, 9.44,  11.07, 19.46, 10.83, 5.37,  11.97, 7.75,  9.83,
        10.55, 28.49, 8.53,   12.57, 12.9,  46.83, 11.68, 12.67, 9.01,  9.57,  34.06, 11.72, 14.26,
        47.61, 11.67, 24.58,  10.33, 13.87, 15.89, 22.43, 6.79,  13.45};

#define NEAR(a, b, tol)                                                                            \
	cr_expect(fabs((a) - (b)) <= (tol), "%s = %.15g, expected %.15g", #a, (double)(a),         \
	          (double)(b))

static void delong_of(double *auc, double *se, const double *s, const double *y, int64_t n)
{
	eng_tensor ts = {ENG_F64, 1, {n}, n, s};
	eng_tensor ty = {ENG_F64, 1, {n}, n, y};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_error err = {0};
	cr_assert_eq(eng_auc_delong(auc, se, &d, 0, &err), 0, "%s", err.msg);
}

Test(delong, proc_asah_ndka)
{
	double a, se, lo, hi;
	delong_of(&a, &se, asah_ndka, asah_poor, 113);
	cr_assert(eng_auc_ci(&lo, &hi, a, se, 0, 0.95));
	NEAR(a, 0.611957994579946, 1e-14);
	NEAR(lo, 0.501244999271703, 1e-14);
	NEAR(hi, 0.722670989888189, 1e-14);
}

Test(delong, proc_asah_s100b)
{
	double a, se, lo, hi;
	delong_of(&a, &se, asah_s100b, asah_poor, 113);
	cr_assert(eng_auc_ci(&lo, &hi, a, se, 0, 0.95));
	/* published to 4 digits */
	NEAR(a, 0.7314, 5e-5);
	NEAR(lo, 0.6301, 5e-5);
	NEAR(hi, 0.8326, 5e-5);
}

/* DeLong by definition: every positive against every negative. */
static void slow(double *auc, double *se, const double *s, const uint8_t *y, int64_t n)
{
	int64_t P = 0, N = 0;
	for (int64_t i = 0; i < n; i++)
		P += y[i];
	N = n - P;
	double *v10 = calloc((size_t)P + 1, sizeof(double)), *v01 = calloc((size_t)N + 1, 8);
	int64_t ip = 0, in = 0;
	for (int64_t i = 0; i < n; i++) {
		double acc = 0;
		for (int64_t j = 0; j < n; j++) {
			if (y[i] == y[j])
				continue;
			double hi = y[i] ? s[i] : s[j], lo = y[i] ? s[j] : s[i];
			acc += hi > lo ? 1.0 : hi == lo ? 0.5 : 0.0;
		}
		if (y[i])
			v10[ip++] = acc / (double)N;
		else
			v01[in++] = acc / (double)P;
	}
	double m10 = 0, m01 = 0, s10 = 0, s01 = 0;
	for (int64_t i = 0; i < P; i++)
		m10 += v10[i] / (double)P;
	for (int64_t i = 0; i < N; i++)
		m01 += v01[i] / (double)N;
	for (int64_t i = 0; i < P; i++)
		s10 += (v10[i] - m10) * (v10[i] - m10) / (double)(P - 1);
	for (int64_t i = 0; i < N; i++)
		s01 += (v01[i] - m01) * (v01[i] - m01) / (double)(N - 1);
	*auc = m10;
	*se = sqrt(s10 / (double)P + s01 / (double)N);
	free(v10);
	free(v01);
}

Test(delong, matches_the_quadratic_definition)
{
	rng_state = 42;
	for (int round = 0; round < 300; round++) {
		int64_t n = 4 + (int64_t)(rnd() % 400);
		int levels = round % 3 == 0 ? 3 : round % 3 == 1 ? 40 : 1 << 30; /* ties */
		double *s = malloc(sizeof(double) * (size_t)n);
		float *f = malloc(sizeof(float) * (size_t)n);
		uint8_t *y = malloc((size_t)n);
		int64_t P = 0;
		for (int64_t i = 0; i < n; i++) {
			y[i] = rnd() % 3 == 0;
			P += y[i];
			f[i] = (float)((double)(rnd() % (uint64_t)levels) / levels +
			               (y[i] ? 0.1 : 0.0));
			s[i] = f[i];
		}
		if (P < 2 || n - P < 2) {
			y[0] = 1;
			y[1] = 1;
			y[2] = 0;
			y[3] = 0;
		}
		double a1, se1, a2, se2, a3, se3;
		eng_error err = {0};
		slow(&a1, &se1, s, y, n);
		cr_assert_eq(eng_auc_delong_values(&a2, &se2, s, y, n, &err), 0);
		eng_tensor tf = {ENG_F32, 1, {n}, n, f};
		eng_tensor ty = {ENG_U8, 1, {n}, n, y};
		eng_auc_data d = {&tf, &ty, NULL, ENG_LABELS_BINARY};
		cr_assert_eq(eng_auc_delong(&a3, &se3, &d, 0, &err), 0);
		NEAR(a2, a1, 1e-12);
		NEAR(se2, se1, 1e-12);
		NEAR(a3, a1, 1e-12);
		NEAR(se3, se1, 1e-12);
		free(s);
		free(f);
		free(y);
	}
}

Test(delong, columns_one_vs_rest)
{
	/* column 1 of a one-vs-rest problem equals the binary problem label == 1 */
	double sc[] = {.1, .7, .2, .3, .3, .4, .5, .5, 0, .2, .6, .2, .9, .05, .05, .4, .4, .2};
	double lab[] = {1, 1, 0, 2, 1, 0};
	double col[] = {.7, .3, .5, .6, .05, .4}, bin[] = {1, 1, 0, 0, 1, 0};
	eng_tensor ts = {ENG_F64, 2, {6, 3}, 18, sc}, tl = {ENG_F64, 1, {6}, 6, lab};
	eng_auc_data d = {&ts, &tl, NULL, ENG_LABELS_CLASS_ID};
	double a, se, a2, se2;
	eng_error err = {0};
	cr_assert_eq(eng_auc_delong(&a, &se, &d, 1, &err), 0);
	delong_of(&a2, &se2, col, bin, 6);
	NEAR(a, a2, 1e-15);
	NEAR(se, se2, 1e-15);
}

Test(delong, undefined_and_errors)
{
	double a, se;
	eng_error err = {0};
	/* one class: both NaN; one positive: AUC but no variance */
	delong_of(&a, &se, (double[]){.1, .2, .3}, (double[]){1, 1, 1}, 3);
	cr_expect(isnan(a) && isnan(se));
	delong_of(&a, &se, (double[]){.1, .2, .3}, (double[]){0, 1, 0}, 3);
	NEAR(a, 0.5, 1e-15);
	cr_expect(isnan(se));
	double lo, hi;
	cr_expect(!eng_auc_ci(&lo, &hi, a, se, 0, 0.95) && isnan(lo) && isnan(hi));
	/* weights are refused; so is the flattened micro problem */
	double s[] = {.1, .2}, y[] = {0, 1}, w[] = {1, 1};
	eng_tensor ts = {ENG_F64, 1, {2}, 2, s}, ty = {ENG_F64, 1, {2}, 2, y};
	eng_tensor tw = {ENG_F64, 1, {2}, 2, w};
	eng_auc_data d = {&ts, &ty, &tw, ENG_LABELS_BINARY};
	cr_expect_eq(eng_auc_delong(&a, &se, &d, 0, &err), ENG_EINVAL);
	d.weight = NULL;
	cr_expect_eq(eng_auc_delong(&a, &se, &d, ENG_AUC_ALL, &err), ENG_EINVAL);
	y[1] = 2;
	cr_expect_eq(eng_auc_delong(&a, &se, &d, 0, &err), ENG_ELABEL);
}

Test(delong, normal_quantile)
{
	/* scipy.stats.norm.ppf */
	NEAR(eng_normal_quantile(0.975), 1.959963984540054, 4e-15);
	NEAR(eng_normal_quantile(0.95), 1.6448536269514722, 4e-15);
	NEAR(eng_normal_quantile(0.995), 2.5758293035489004, 4e-15);
	NEAR(eng_normal_quantile(0.001), -3.090232306167813, 1e-14);
	NEAR(eng_normal_quantile(1e-10), -6.361340902404056, 1e-13);
	NEAR(eng_normal_quantile(0.5), 0.0, 1e-16);
	cr_expect(isnan(eng_normal_quantile(0)) && isnan(eng_normal_quantile(1)));
}

Test(delong, hanley_mcneil_and_interval)
{
	/* A = 0.8, P = 10, N = 20: Q1 = 2/3, Q2 = 1.28/1.8,
	 * var = (0.16 + 9 (2/3 - 0.64) + 19 (1.28/1.8 - 0.64)) / 200 */
	double v = (0.16 + 9 * (2.0 / 3 - 0.64) + 19 * (1.28 / 1.8 - 0.64)) / 200;
	NEAR(eng_auc_se_hanley_mcneil(0.8, 10, 20), sqrt(v), 1e-15);
	cr_expect(isnan(eng_auc_se_hanley_mcneil(0.8, 0, 20)));
	NEAR(eng_auc_se_hanley_mcneil(1.0, 5, 5), 0.0, 1e-15);
	double lo, hi;
	cr_assert(eng_auc_ci(&lo, &hi, 0.99, 0.05, 0, 0.95));
	NEAR(hi, 1.0, 0);
	NEAR(lo, 0.99 - 1.959963984540054 * 0.05, 1e-15);
	cr_assert(eng_auc_ci(&lo, &hi, 0.6, 0.01, 0.05, 0.9));
	NEAR(lo, 0.6 - 1.6448536269514722 * 0.01 - 0.05, 1e-15);
	NEAR(hi, 0.6 + 1.6448536269514722 * 0.01 + 0.05, 1e-15);
	cr_expect(!eng_auc_ci(&lo, &hi, 0.6, 0.01, 0, 1.0));
}
