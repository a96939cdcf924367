/*
 * binned.c - Keras' AUC (tf.keras.metrics.AUC) as a histogram accumulator.
 *
 * What: weighted TP/FP/TN/FN at Keras' num_thresholds thresholds
 * t_0 = -1e-7, t_i = i/(n-1) for 0 < i < n-1 (computed as Keras does, in
 * double), t_{n-1} = 1 + 1e-7; a score is positive at t_i iff score > t_i.
 * Then Keras' result(): Riemann sums with interpolation / minoring /
 * majoring heights, and for PR with interpolation the Davis-Goadrich
 * interpolation (keras' interpolate_pr_auc, ref.py keras_auc).
 *
 * Why a histogram: a score exceeds exactly the first m(s) thresholds
 * (thresholds increase), so one item touches one of n + 1 cells and the
 * confusion counts are suffix / prefix sums of the cells: O(1) per score
 * and O(n) per result, instead of Keras' O(n) per score. m(s) is computed
 * arithmetically, ceil(s (n-1)) - 1 interior thresholds below s, then
 * corrected against the very thresholds the comparison uses, so a score
 * exactly on a threshold (s == 1/(n-1)) lands where `s > t` puts it.
 *
 * Invariants: cells hold sums of non-negative finite weights; add is all or
 * nothing; merge needs equal num_thresholds.
 *
 * Does not: clip or reject scores outside [0, 1] (they fall below or above
 * every threshold, as in Keras' comparison), apply sigmoids (the caller
 * passes probabilities), or keep per-label state (one accumulator is one
 * column; callers keep one per class).
 */
#include "lossd/binned.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "bytes.h"

#define EPSILON 1e-7
#define MAGIC   "LDBN"
#define VERSION 1u
#define CHUNK   1024

struct eng_binned {
	int64_t n;                    /* num_thresholds */
	int64_t positives, negatives; /* unweighted */
	double *pos, *neg;            /* n + 1 cells: weight with m(s) == cell */
};

static double threshold(int64_t n, int64_t i)
{
	if (i == 0)
		return 0.0 - EPSILON;
	if (i == n - 1)
		return 1.0 + EPSILON;
	return (double)i * 1.0 / (double)(n - 1);
}

/* m(s) = #{ i : s > t_i } in [0, n]. */
static int64_t cell_of(int64_t n, double s)
{
	if (!(s > threshold(n, 0)))
		return 0;
	if (s > threshold(n, n - 1))
		return n;
	/* s in (t_0, t_{n-1}]: 1 + #{ 1 <= i <= n-2 : s > i/(n-1) }. */
	double q = ceil(s * (double)(n - 1)) - 1.0;
	int64_t k = q < 0.0 ? 0 : (q > (double)(n - 2) ? n - 2 : (int64_t)q);
	while (k < n - 2 && s > threshold(n, k + 1))
		k++;
	while (k > 0 && !(s > threshold(n, k)))
		k--;
	return 1 + k;
}

eng_binned *eng_binned_new(int64_t num_thresholds)
{
	if (num_thresholds < 2 || num_thresholds > ENG_BINNED_MAX_THRESHOLDS)
		return NULL;
	eng_binned *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->n = num_thresholds;
	b->pos = calloc((size_t)num_thresholds + 1, sizeof(double));
	b->neg = calloc((size_t)num_thresholds + 1, sizeof(double));
	if (!b->pos || !b->neg) {
		eng_binned_free(b);
		return NULL;
	}
	return b;
}

void eng_binned_free(eng_binned *b)
{
	if (!b)
		return;
	free(b->pos);
	free(b->neg);
	free(b);
}

void eng_binned_reset(eng_binned *b)
{
	memset(b->pos, 0, (size_t)(b->n + 1) * sizeof(double));
	memset(b->neg, 0, (size_t)(b->n + 1) * sizeof(double));
	b->positives = b->negatives = 0;
}

int64_t eng_binned_num_thresholds(const eng_binned *b)
{
	return b->n;
}

/* Adds items into the scratch cells (pos, neg); validates. */
static int accumulate(int64_t n, double *pos, double *neg, int64_t *np, int64_t *nn,
                      const double *score, const uint8_t *label, const double *weight, int64_t cnt,
                      eng_error *err)
{
	for (int64_t i = 0; i < cnt; i++) {
		double s = score[i], w = weight ? weight[i] : 1.0;
		if (isnan(s))
			return eng_error_set(err, ENG_ENONFINITE, "y_score", i, "y_score is NaN");
		if (label[i] > 1)
			return eng_error_set(err, ENG_ELABEL, "y_true", i, "label is not 0 or 1");
		if (!(w >= 0.0 && isfinite(w)))
			return eng_error_set(err, ENG_EWEIGHT, "sample_weight", i,
			                     "weight %g is not finite and >= 0", w);
		int64_t m = cell_of(n, s);
		if (label[i]) {
			pos[m] += w;
			(*np)++;
		} else {
			neg[m] += w;
			(*nn)++;
		}
	}
	return 0;
}

static int add_scratch(eng_binned *b, double **pos, double **neg)
{
	*pos = calloc((size_t)b->n + 1, sizeof(double));
	*neg = calloc((size_t)b->n + 1, sizeof(double));
	if (!*pos || !*neg) {
		free(*pos);
		free(*neg);
		return ENG_ENOMEM;
	}
	return 0;
}

static void commit(eng_binned *b, double *pos, double *neg, int64_t np, int64_t nn)
{
	for (int64_t m = 0; m <= b->n; m++) {
		b->pos[m] += pos[m];
		b->neg[m] += neg[m];
	}
	b->positives += np;
	b->negatives += nn;
}

int eng_binned_add_values(eng_binned *b, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err)
{
	double *pos, *neg;
	int64_t np = 0, nn = 0;
	if (add_scratch(b, &pos, &neg))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	int rc = accumulate(b->n, pos, neg, &np, &nn, score, label, weight, n, err);
	if (!rc)
		commit(b, pos, neg, np, nn);
	free(pos);
	free(neg);
	return rc;
}

int eng_binned_add(eng_binned *b, const eng_auc_data *d, int64_t col, eng_error *err)
{
	double *pos = NULL, *neg = NULL;
	double score[CHUNK], w[CHUNK];
	uint8_t lab[CHUNK];
	int64_t n, ncols, np = 0, nn = 0;
	int rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	if (add_scratch(b, &pos, &neg))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += CHUNK) {
		int64_t cnt = n - from < CHUNK ? n - from : CHUNK;
		rc = eng__auc_gather(d, col, from, cnt, score, lab, w, err);
		if (rc)
			goto out;
		rc = accumulate(b->n, pos, neg, &np, &nn, score, lab, w, cnt, err);
		if (rc)
			goto out;
	}
	commit(b, pos, neg, np, nn);
out:
	free(pos);
	free(neg);
	return rc;
}

/* Row counts stay below 2^53 (exact in a double, far past any real stream):
 * a state claiming more is corrupt, and a merge that would pass it is
 * refused, so the int64 counters can never overflow. */
#define COUNT_MAX ((int64_t)1 << 53)

int eng_binned_merge(eng_binned *dst, const eng_binned *src)
{
	if (dst->n != src->n)
		return ENG_ESTATE;
	if (src->positives > COUNT_MAX - dst->positives ||
	    src->negatives > COUNT_MAX - dst->negatives)
		return ENG_ELIMIT;
	commit(dst, src->pos, src->neg, src->positives, src->negatives);
	return 0;
}

static double div0(double a, double b)
{
	return b != 0.0 ? a / b : 0.0;
}

int eng_binned_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_binned *b, eng_curve kind,
                   eng_summation summation, int64_t max_points)
{
	int64_t n = b->n;
	double *tp = NULL, *fp = NULL, *tn = NULL, *fn = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (curve)
		memset(curve, 0, sizeof(*curve));
	out->positives = b->positives;
	out->negatives = b->negatives;
	tp = malloc((size_t)n * sizeof(double));
	fp = malloc((size_t)n * sizeof(double));
	tn = malloc((size_t)n * sizeof(double));
	fn = malloc((size_t)n * sizeof(double));
	if (!tp || !fp || !tn || !fn) {
		rc = ENG_ENOMEM;
		goto out;
	}
	/* Threshold i: positive iff m(s) > i. Suffix sums for tp/fp, prefix
	 * sums for fn/tn. */
	double sp = 0.0, sn = 0.0;
	for (int64_t i = n - 1; i >= 0; i--) {
		sp += b->pos[i + 1];
		sn += b->neg[i + 1];
		tp[i] = sp;
		fp[i] = sn;
	}
	sp = sn = 0.0;
	for (int64_t i = 0; i < n; i++) {
		sp += b->pos[i];
		sn += b->neg[i];
		fn[i] = sp;
		tn[i] = sn;
	}
	out->pos_weight = tp[0] + fn[0];
	out->neg_weight = fp[0] + tn[0];
	if (b->positives == 0 || b->negatives == 0)
		goto out;

	double area = 0.0;
	if (kind == ENG_CURVE_PR && summation == ENG_SUM_INTERPOLATION) {
		for (int64_t i = 0; i + 1 < n; i++) {
			double dtp = tp[i] - tp[i + 1];
			double p0 = tp[i] + fp[i], p1 = tp[i + 1] + fp[i + 1];
			double dp = p0 - p1;
			double slope = div0(dtp, dp > 0.0 ? dp : 0.0);
			double intercept = tp[i + 1] - slope * p1;
			double ratio = (p0 > 0.0 && p1 > 0.0) ? div0(p0, p1) : 1.0;
			double den = tp[i + 1] + fn[i + 1];
			area += div0(slope * (dtp + intercept * log(ratio)), den > 0.0 ? den : 0.0);
		}
	} else {
		for (int64_t i = 0; i + 1 < n; i++) {
			double x0, x1, y0, y1;
			if (kind == ENG_CURVE_ROC) {
				x0 = div0(fp[i], fp[i] + tn[i]);
				x1 = div0(fp[i + 1], fp[i + 1] + tn[i + 1]);
				y0 = div0(tp[i], tp[i] + fn[i]);
				y1 = div0(tp[i + 1], tp[i + 1] + fn[i + 1]);
			} else {
				x0 = div0(tp[i], tp[i] + fn[i]);
				x1 = div0(tp[i + 1], tp[i + 1] + fn[i + 1]);
				y0 = div0(tp[i], tp[i] + fp[i]);
				y1 = div0(tp[i + 1], tp[i + 1] + fp[i + 1]);
			}
			double h = summation == ENG_SUM_INTERPOLATION ? (y0 + y1) / 2.0
			           : summation == ENG_SUM_MINORING    ? fmin(y0, y1)
			                                              : fmax(y0, y1);
			area += (x0 - x1) * h;
		}
	}
	out->auc = area;
	out->defined = true;

	if (curve) {
		rc = eng__curve_alloc(curve, n);
		if (rc)
			goto out;
		for (int64_t j = 0; j < n; j++) {
			int64_t i = n - 1 - j; /* decreasing threshold */
			if (kind == ENG_CURVE_ROC) {
				curve->x[j] = div0(fp[i], fp[i] + tn[i]);
				curve->y[j] = div0(tp[i], tp[i] + fn[i]);
			} else {
				curve->x[j] = div0(tp[i], tp[i] + fn[i]);
				curve->y[j] = div0(tp[i], tp[i] + fp[i]);
			}
			curve->thresholds[j] = threshold(n, i);
		}
		eng__curve_downsample(curve, max_points);
	}
out:
	free(tp);
	free(fp);
	free(tn);
	free(fn);
	return rc;
}

int eng_auc_binned(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                   int64_t num_thresholds, eng_curve kind, eng_summation summation,
                   int64_t max_points, eng_error *err)
{
	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (curve)
		memset(curve, 0, sizeof(*curve));
	if (num_thresholds < 2 || num_thresholds > ENG_BINNED_MAX_THRESHOLDS)
		return eng_error_set(err, ENG_EINVAL, "num_thresholds", -1,
		                     "num_thresholds must be in [2, %lld]",
		                     (long long)ENG_BINNED_MAX_THRESHOLDS);
	eng_binned *b = eng_binned_new(num_thresholds);
	if (!b)
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	int rc = eng_binned_add(b, d, col, err);
	if (!rc) {
		rc = eng_binned_auc(out, curve, b, kind, summation, max_points);
		if (rc)
			rc = eng_error_set(err, rc, "y_score", -1, "out of memory");
	}
	eng_binned_free(b);
	return rc;
}

/* ---- serialization ----------------------------------------------------------- */
/* "LDBN" u32 version, u64 n, u64 positives, u64 negatives, then n + 1 pairs
 * of f64 (pos, neg). Little-endian throughout. */
#define HEADER (4 + 4 + 8 + 8 + 8)

int eng_binned_serialize(uint8_t **out, size_t *len, const eng_binned *b)
{
	size_t sz = HEADER + (size_t)(b->n + 1) * 16;
	uint8_t *p = malloc(sz);
	if (!p)
		return ENG_ENOMEM;
	memcpy(p, MAGIC, 4);
	eng__put_u32(p + 4, VERSION);
	eng__put_u64(p + 8, (uint64_t)b->n);
	eng__put_u64(p + 16, (uint64_t)b->positives);
	eng__put_u64(p + 24, (uint64_t)b->negatives);
	for (int64_t m = 0; m <= b->n; m++) {
		eng__put_f64(p + HEADER + 16 * m, b->pos[m]);
		eng__put_f64(p + HEADER + 16 * m + 8, b->neg[m]);
	}
	*out = p;
	*len = sz;
	return 0;
}

int eng_binned_deserialize(eng_binned **out, const uint8_t *buf, size_t len)
{
	*out = NULL;
	if (!buf || len < HEADER || memcmp(buf, MAGIC, 4) != 0 || eng__get_u32(buf + 4) != VERSION)
		return ENG_ESTATE;
	uint64_t n = eng__get_u64(buf + 8);
	uint64_t np = eng__get_u64(buf + 16), nn = eng__get_u64(buf + 24);
	if (n < 2 || n > (uint64_t)ENG_BINNED_MAX_THRESHOLDS || np > (uint64_t)COUNT_MAX ||
	    nn > (uint64_t)COUNT_MAX)
		return ENG_ESTATE;
	if (len != HEADER + (size_t)(n + 1) * 16)
		return ENG_ESTATE;
	eng_binned *b = eng_binned_new((int64_t)n);
	if (!b)
		return ENG_ENOMEM;
	for (uint64_t m = 0; m <= n; m++) {
		double p = eng__get_f64(buf + HEADER + 16 * m);
		double q = eng__get_f64(buf + HEADER + 16 * m + 8);
		if (!(p >= 0.0 && isfinite(p) && q >= 0.0 && isfinite(q))) {
			eng_binned_free(b);
			return ENG_ESTATE;
		}
		b->pos[m] = p;
		b->neg[m] = q;
	}
	b->positives = (int64_t)np;
	b->negatives = (int64_t)nn;
	*out = b;
	return 0;
}
