/*
 * aucci.h - confidence intervals for a ROC AUC (docs/API.md section 9):
 * DeLong's variance for the exact AUC, Hanley and McNeil's for the binned
 * and sketch AUCs, and the interval pROC's ci.auc reports from either.
 *
 *   DeLong (1988)  var = S10 / P + S01 / N, S10 and S01 the sample variances
 *                  (n - 1) of the placement values of the positives and of
 *                  the negatives: V10(x) = share of negatives below x, a tie
 *                  counting one half; V01(y) = share of positives above y.
 *                  Computed from one pass over the sorted scores, as Sun and
 *                  Xu (2014) compute the placements from midranks: O(n log n)
 *                  for the sort, O(n) after it. Unweighted only.
 *   Hanley-McNeil  var = (A(1-A) + (P-1)(Q1-A^2) + (N-1)(Q2-A^2)) / (P N),
 *   (1982)         Q1 = A / (2 - A), Q2 = 2A^2 / (1 + A)
 *   interval       A -/+ (z se + widen), clipped to [0, 1], z the normal
 *                  quantile of (1 + level) / 2 (pROC's ci.auc; widen is a
 *                  sketch's error_bound, 0 otherwise)
 */
#ifndef LOSSD_ENGINE_AUCCI_H
#define LOSSD_ENGINE_AUCCI_H

#include <stdbool.h>
#include <stdint.h>

#include "lossd/auc.h"

/*
 * DeLong's AUC and standard error of column col of d (ENG_AUC_ALL is not
 * accepted: an interval is per column). d->weight must be NULL. *auc is
 * the exact ROC AUC (equal to eng_auc_exact's to ~1e-15), *se its DeLong
 * standard error; both NaN when only one class is present, se NaN also
 * with fewer than 2 positives or 2 negatives (no sample variance).
 * Returns 0, ENG_EINVAL (weights, ENG_AUC_ALL), ENG_ESHAPE, ENG_ELABEL,
 * ENG_ENONFINITE (NaN score), ENG_ELIMIT (2^32 scores or more) or
 * ENG_ENOMEM, with *err set.
 */
int eng_auc_delong(double *auc, double *se, const eng_auc_data *d, int64_t col, eng_error *err);

/* DeLong on raw arrays: n scores and 0/1 labels (else ENG_ELABEL), borrowed. */
int eng_auc_delong_values(double *auc, double *se, const double *score, const uint8_t *label,
                          int64_t n, eng_error *err);

/* Hanley and McNeil's standard error of AUC a with p positives and n
 * negatives; NaN when p or n is 0 or a is not in [0, 1]. */
double eng_auc_se_hanley_mcneil(double a, double p, double n);

/* The normal quantile (inverse CDF) at q in (0, 1), to ~1e-15 relative. */
double eng_normal_quantile(double q);

/*
 * The interval a -/+ (z se + widen) clipped to [0, 1], z =
 * eng_normal_quantile((1 + level) / 2), into *lo and *hi. false (both NaN)
 * when a or se is NaN or level not in (0, 1).
 */
bool eng_auc_ci(double *lo, double *hi, double a, double se, double widen, double level);

#endif
