/*
 * delong.c - DeLong's standard error of an exact ROC AUC, Hanley and
 * McNeil's for the approximate ones, and the interval around either
 * (aucci.h).
 *
 * DeLong's variance needs one placement value per score: for a positive,
 * the share of negatives scored below it (ties one half); for a negative,
 * the share of positives scored above it. Sun and Xu (2014) get them from
 * midranks in O(n log n); here the same numbers come from one walk down the
 * sorted scores, as auc.c walks them for the area: every item of a run of
 * equal scores has the same placement, (N - fp_above - nn_run/2) / N for
 * the run's positives and (tp_above + np_run/2) / P for its negatives. So
 * a run adds np_run (or nn_run) copies of one value to a running mean and
 * sum of squared deviations (Chan's pairwise update: no cancellation of
 * sum x^2 - n mean^2), and nothing of size n is kept besides the sort.
 * The sort is the exact AUC's (eng__auc_sort: order-preserving integer
 * keys reduced to the bits that differ, the label in the lowest bit,
 * radix-sorted), so DeLong costs what the exact AUC costs plus a few
 * operations per distinct score.
 *
 * Invariants: placements are exact ratios of counts; S10 and S01 divide by
 * n - 1 as R's var() (pROC's convention); se is NaN, not 0, when a class
 * has fewer than two items.
 *
 * Does not: take sample weights (DeLong's U-statistic has no weighted
 * form here; the api answers 422), compare two AUCs, or do partial AUCs.
 */
#include "lossd/aucci.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"

/* ---- running mean and squared deviations, k copies of v at a time ------- */

typedef struct moments {
	double n, mean, m2;
} moments;

static inline void moments_add(moments *m, double k, double v)
{
	if (k <= 0)
		return;
	double n = m->n + k, delta = v - m->mean;
	m->mean += delta * k / n;
	m->m2 += delta * delta * m->n * k / n;
	m->n = n;
}

/* ---- DeLong ------------------------------------------------------------------ */

int eng_auc_delong(double *auc, double *se, const eng_auc_data *d, int64_t col, eng_error *err)
{
	eng__auc_sorted s;
	int64_t n = 0, ncols = 0;
	int rc;

	*auc = *se = NAN;
	if (d->weight)
		return eng_error_set(err, ENG_EINVAL, "sample_weight", -1,
		                     "DeLong's interval does not take sample weights");
	if (col == ENG_AUC_ALL)
		return eng_error_set(err, ENG_EINVAL, "y_score", -1,
		                     "DeLong's interval is per column");
	rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	if (n >= ((int64_t)1 << 32) - 1)
		return eng_error_set(err, ENG_ELIMIT, "y_score", -1, "too many scores for one AUC");
	rc = eng__auc_sort(&s, d, col, n, ncols, err);
	int64_t P = s.positives, N = n - P;
	if (rc || P == 0 || N == 0)
		goto out; /* an error, or undefined: one class present */

	/* from the highest score down; a run of equal keys shares its placements */
	moments m10 = {0, 0, 0}, m01 = {0, 0, 0};
	double tp = 0, fp = 0, dP = (double)P, dN = (double)N;
	for (int64_t i = n - 1; i >= 0;) {
		uint64_t k = eng__sorted_key(&s, i);
		int64_t j = i, np = 0;
		while (j >= 0 && eng__sorted_key(&s, j) == k)
			np += eng__sorted_label(&s, j--);
		double dp = (double)np, dn = (double)(i - j - np);
		moments_add(&m10, dp, (dN - fp - 0.5 * dn) / dN);
		moments_add(&m01, dn, (tp + 0.5 * dp) / dP);
		tp += dp;
		fp += dn;
		i = j;
	}
	*auc = m10.mean;
	if (P >= 2 && N >= 2)
		*se = sqrt(m10.m2 / (dP - 1) / dP + m01.m2 / (dN - 1) / dN);
out:
	eng__auc_sorted_free(&s);
	return rc;
}

int eng_auc_delong_values(double *auc, double *se, const double *score, const uint8_t *label,
                          int64_t n, eng_error *err)
{
	eng_tensor ts = {ENG_F64, 1, {n}, n, score};
	eng_tensor tl = {ENG_U8, 1, {n}, n, label};
	eng_auc_data d = {&ts, &tl, NULL, ENG_LABELS_BINARY};
	return eng_auc_delong(auc, se, &d, 0, err);
}

/* ---- Hanley-McNeil ---------------------------------------------------------------- */

double eng_auc_se_hanley_mcneil(double a, double p, double n)
{
	if (!(p > 0 && n > 0 && a >= 0 && a <= 1))
		return NAN;
	double q1 = a / (2 - a), q2 = 2 * a * a / (1 + a);
	double v = (a * (1 - a) + (p - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / (p * n);
	return sqrt(v > 0 ? v : 0);
}

/* ---- the interval -------------------------------------------------------------------- */

/*
 * Acklam's rational approximation (relative error 1.15e-9), then one
 * Halley step on erfc, which brings it to full double precision.
 */
double eng_normal_quantile(double q)
{
	static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
	                           -2.759285104469687e+02, 1.383577518672690e+02,
	                           -3.066479806614716e+01, 2.506628277459239e+00};
	static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
	                           -1.556989798598866e+02, 6.680131188771972e+01,
	                           -1.328068155288572e+01};
	static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
	                           -2.400758277161838e+00, -2.549732539343734e+00,
	                           4.374664141464968e+00,  2.938163982698783e+00};
	static const double e[] = {7.784695709041462e-03, 3.224671290700398e-01,
	                           2.445134137142996e+00, 3.754408661907416e+00};
	double x;
	if (!(q > 0 && q < 1))
		return NAN;
	if (q < 0.02425) {
		double t = sqrt(-2 * log(q));
		x = (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
		    ((((e[0] * t + e[1]) * t + e[2]) * t + e[3]) * t + 1);
	} else if (q > 1 - 0.02425) {
		double t = sqrt(-2 * log1p(-q));
		x = -(((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) /
		    ((((e[0] * t + e[1]) * t + e[2]) * t + e[3]) * t + 1);
	} else {
		double t = q - 0.5, r = t * t;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * t /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
	}
	double err = 0.5 * erfc(-x / sqrt(2.0)) - q;
	double u = err * 2.5066282746310002 * exp(x * x / 2); /* sqrt(2 pi) */
	return x - u / (1 + x * u / 2);
}

bool eng_auc_ci(double *lo, double *hi, double a, double se, double widen, double level)
{
	*lo = *hi = NAN;
	if (!(level > 0 && level < 1) || isnan(a) || isnan(se))
		return false;
	double h = eng_normal_quantile((1 + level) / 2) * se + widen;
	*lo = a - h < 0 ? 0 : a - h;
	*hi = a + h > 1 ? 1 : a + h;
	return true;
}
