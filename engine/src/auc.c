/*
 * auc.c - exact ROC AUC and average precision, as scikit-learn computes them.
 *
 * What: roc_auc_score (with max_fpr, McClish-standardized as sklearn's
 * _binary_roc_auc_score) and average_precision_score for one binary column
 * carved out of (N) / (N, C) tensors, plus the reading of such columns that
 * binned.c and sketch.c share (aucdata.h).
 *
 * Why this shape: the area is a single pass over the scores in decreasing
 * order, so the cost is the sort. Scores become order-preserving unsigned
 * keys (32-bit for float32 input, 64-bit otherwise; -0.0 ties +0.0) sorted
 * by the radix sort of radix.c with the item index carried along: O(n) per
 * digit pass, no comparison callbacks. Runs of equal keys are one threshold,
 * which is exactly sklearn's "distinct thresholds" rule: a tie between a
 * positive and a negative adds a trapezoid, i.e. counts one half. Without
 * weights (the common case, and DeLong's) the keys are first reduced to
 * the bits that differ between scores and the label rides in the lowest
 * bit (eng__auc_sort): float32 scores, or float32 values read as float64,
 * then sort as 33-bit words in three 11-bit passes, and the walk reads the
 * sorted words in order instead of gathering labels by index.
 *
 * Invariants: sums of weights are in double; the area is accumulated in
 * unnormalized units (false positives x true positives) and divided by P*N
 * once, so there is one rounding of the normalization. A column with only
 * one class present is reported as undefined (not an error), like
 * roc_auc_score's ValueError turned into null.
 *
 * Does not: keep state between calls (binned.c and sketch.c do), drop
 * collinear ROC points (sklearn's drop_intermediate changes no area), or
 * accept NaN scores (callers decide what a NaN means).
 */
#include "lossd/auc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "aucfast.h"
#include "radix.h"

#define GATHER 1024 /* items read from the tensors per step */

/* ---- reading columns ---------------------------------------------------- */

int64_t eng_auc_columns(const eng_auc_data *d, eng_error *err)
{
	const eng_tensor *s = d->score, *l = d->label, *w = d->weight;
	if (!s || !l)
		return eng_error_set(err, ENG_EINVAL, "y_score", -1,
		                     "y_true and y_score are required");
	if (s->ndim != 1 && s->ndim != 2)
		return eng_error_set(err, ENG_ESHAPE, "y_score", -1,
		                     "y_score must have shape (N) or (N, C), not rank %d", s->ndim);
	int64_t n = s->shape[0];
	int64_t c = s->ndim == 2 ? s->shape[1] : 1;
	switch (d->kind) {
	case ENG_LABELS_BINARY:
		if (l->ndim != 1 || l->shape[0] != n)
			return eng_error_set(
			        err, ENG_ESHAPE, "y_true", -1,
			        "y_true must have shape [%lld] (0/1 labels, one per row)",
			        (long long)n);
		break;
	case ENG_LABELS_CLASS_ID:
		if (s->ndim != 2 || l->ndim != 1 || l->shape[0] != n)
			return eng_error_set(
			        err, ENG_ESHAPE, "y_true", -1,
			        "class-id y_true must have shape [%lld] with y_score (N, C)",
			        (long long)n);
		break;
	case ENG_LABELS_MULTI:
		if (s->ndim != 2 || l->ndim != 2 || l->shape[0] != n || l->shape[1] != c)
			return eng_error_set(
			        err, ENG_ESHAPE, "y_true", -1,
			        "multi-label y_true must have the shape of y_score, [%lld, %lld]",
			        (long long)n, (long long)c);
		break;
	default: return eng_error_set(err, ENG_EINVAL, "y_true", -1, "unknown label kind");
	}
	if (w && !(w->ndim == 0 || (w->ndim == 1 && w->shape[0] == n)))
		return eng_error_set(err, ENG_ESHAPE, "sample_weight", -1,
		                     "sample_weight must have shape [%lld] (one weight per row)",
		                     (long long)n);
	if (c < 1)
		return eng_error_set(err, ENG_ESHAPE, "y_score", -1, "y_score has no columns");
	return c;
}

int eng__auc_items(const eng_auc_data *d, int64_t col, int64_t *n, int64_t *ncols, eng_error *err)
{
	int64_t c = eng_auc_columns(d, err);
	if (c < 0)
		return (int)c;
	int64_t rows = d->score->shape[0];
	if (col == ENG_AUC_ALL) {
		if (d->kind == ENG_LABELS_BINARY && d->score->ndim == 2 && c > 1)
			return eng_error_set(err, ENG_EINVAL, "y_score", -1,
			                     "binary labels need one score column, not all %lld",
			                     (long long)c);
		*n = rows * c;
	} else {
		if (col < 0 || col >= c)
			return eng_error_set(err, ENG_EINVAL, "positive_class", -1,
			                     "column %lld is not in [0, %lld)", (long long)col,
			                     (long long)c);
		*n = rows;
	}
	*ncols = c;
	return 0;
}

int eng__auc_gather(const eng_auc_data *d, int64_t col, int64_t from, int64_t count, double *score,
                    uint8_t *lab, double *w, eng_error *err)
{
	const eng_tensor *s = d->score, *l = d->label, *wt = d->weight;
	int64_t c = s->ndim == 2 ? s->shape[1] : 1;
	for (int64_t j = 0; j < count; j++) {
		int64_t k = from + j, row, cc;
		if (col == ENG_AUC_ALL) {
			row = k / c;
			cc = k % c;
		} else {
			row = k;
			cc = col;
		}
		int64_t si = s->ndim == 2 ? row * c + cc : row;
		double v = eng_tensor_at(s, si);
		if (isnan(v))
			return eng_error_set(err, ENG_ENONFINITE, "y_score", si, "y_score is NaN");
		score[j] = v;

		int64_t li = d->kind == ENG_LABELS_MULTI ? row * c + cc : row;
		double y = eng_tensor_at(l, li);
		if (d->kind == ENG_LABELS_CLASS_ID) {
			if (!(y >= 0 && y < (double)c && y == floor(y)))
				return eng_error_set(
				        err, ENG_ELABEL, "y_true", li,
				        "class id %g is not a whole number in [0, %lld)", y,
				        (long long)c);
			lab[j] = (int64_t)y == cc;
		} else {
			if (!(y == 0.0 || y == 1.0))
				return eng_error_set(err, ENG_ELABEL, "y_true", li,
				                     "label %g is not 0 or 1", y);
			lab[j] = y == 1.0;
		}
		if (w) {
			double x = 1.0;
			if (wt) {
				int64_t wi = wt->ndim == 0 ? 0 : row;
				x = eng_tensor_at(wt, wi);
				if (!(x >= 0.0 && isfinite(x)))
					return eng_error_set(err, ENG_EWEIGHT, "sample_weight", wi,
					                     "weight %g is not finite and >= 0", x);
			}
			w[j] = x;
		}
	}
	return 0;
}

/* ---- sorted labelled keys (aucdata.h) ------------------------------------------ */

void eng__auc_sorted_free(eng__auc_sorted *s)
{
	for (int i = 0; i < 4; i++)
		free(s->mem[i]);
	memset(s, 0, sizeof(*s));
}

double eng__auc_sorted_value(const eng__auc_sorted *s, uint64_t key)
{
	int top = s->narrow ? 31 : 63;
	uint64_t k = (key + s->base) << s->shift;
	/* the dropped bits: zeros under a positive score's key, ones under a
	 * negative one's (radix.h's keys flip every bit of a negative score) */
	if (!((k >> top) & 1))
		k |= (s->shift ? ((uint64_t)1 << s->shift) - 1 : 0);
	return s->narrow ? (double)eng__key32_value((uint32_t)k) : eng__key64_value(k);
}

int eng__auc_sort(eng__auc_sorted *s, const eng_auc_data *d, int64_t col, int64_t n, int64_t ncols,
                  eng_error *err)
{
	eng__auc_reader r;
	size_t nn = (size_t)(n > 0 ? n : 1);
	uint64_t *key = NULL, *tmp = NULL;
	uint8_t *lab = NULL;
	int rc = 0;

	memset(s, 0, sizeof(*s));
	s->n = n;
	s->narrow = d->score->dtype == ENG_F32;
	key = malloc(nn * sizeof(uint64_t));
	tmp = malloc(nn * sizeof(uint64_t));
	lab = malloc(nn);
	s->mem[0] = key;
	s->mem[1] = tmp;
	if (!key || !tmp || !lab) {
		rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
		goto out;
	}
	/* keys, their least and greatest, and the OR of the scores' bits
	 * (after -0 -> +0): its trailing zeros are zero in every score */
	eng__auc_reader_init(&r, d, col, ncols);
	uint64_t kmin = UINT64_MAX, kmax = 0, bits = 0;
	int64_t pos = 0;
	for (int64_t from = 0; from < n; from += GATHER) {
		double buf[GATHER];
		const double *sp;
		int64_t cnt = n - from < GATHER ? n - from : GATHER;
		rc = eng__auc_read(&r, from, cnt, buf, &sp, lab + from, NULL, err);
		if (rc)
			goto out;
		uint64_t *k = key + from, lo = kmin, hi = kmax, orr = 0;
		if (s->narrow) {
			for (int64_t i = 0; i < cnt; i++) {
				uint32_t q = eng__key32((float)sp[i]);
				k[i] = q;
				orr |= (q >> 31) ? q : ~q;
				lo = q < lo ? q : lo;
				hi = q > hi ? q : hi;
			}
		} else {
			for (int64_t i = 0; i < cnt; i++) {
				uint64_t q = eng__key64(sp[i]);
				k[i] = q;
				orr |= (q >> 63) ? q : ~q;
				lo = q < lo ? q : lo;
				hi = q > hi ? q : hi;
			}
		}
		int64_t p = 0;
		for (int64_t i = 0; i < cnt; i++)
			p += lab[from + i];
		pos += p;
		kmin = lo;
		kmax = hi;
		bits |= orr;
	}
	s->positives = pos;
	if (pos == 0 || pos == n)
		goto out; /* one class: nothing to sort */
	if (s->narrow)
		bits &= 0xffffffffu;
	s->shift = bits ? __builtin_ctzll(bits) : 0;
	s->base = kmin >> s->shift;
	uint64_t range = (kmax >> s->shift) - s->base;
	int width = range ? 64 - __builtin_clzll(range) : 0;
	if (width < 32) {
		/* words of 32 bits, written into tmp; key is the sort's scratch */
		uint32_t *w = (uint32_t *)tmp;
		for (int64_t i = 0; i < n; i++)
			w[i] = (uint32_t)(((key[i] >> s->shift) - s->base) << 1) | lab[i];
		eng__radix_sort32(w, NULL, (uint32_t *)key, NULL, n);
		s->k32 = w;
	} else if (width < 64) {
		for (int64_t i = 0; i < n; i++)
			key[i] = (((key[i] >> s->shift) - s->base) << 1) | lab[i];
		eng__radix_sort64(key, NULL, tmp, NULL, n);
		s->k64 = key;
	} else {
		uint32_t *l = malloc(nn * sizeof(uint32_t)), *tl = malloc(nn * sizeof(uint32_t));
		s->mem[2] = l;
		s->mem[3] = tl;
		if (!l || !tl) {
			rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
			goto out;
		}
		for (int64_t i = 0; i < n; i++) {
			key[i] = (key[i] >> s->shift) - s->base;
			l[i] = lab[i];
		}
		eng__radix_sort64(key, l, tmp, tl, n);
		s->k64 = key;
		s->lab = l;
	}
out:
	free(lab);
	if (rc) {
		eng__auc_sorted_free(s);
		s->n = n;
	}
	return rc;
}

/* ---- curves --------------------------------------------------------------- */

void eng_auc_curve_free(eng_auc_curve *c)
{
	if (!c)
		return;
	free(c->x);
	free(c->y);
	free(c->thresholds);
	c->x = c->y = c->thresholds = NULL;
	c->n = 0;
}

int eng__curve_alloc(eng_auc_curve *c, int64_t n)
{
	size_t b = (size_t)(n > 0 ? n : 1) * sizeof(double);
	c->x = malloc(b);
	c->y = malloc(b);
	c->thresholds = malloc(b);
	c->n = 0;
	if (!c->x || !c->y || !c->thresholds) {
		eng_auc_curve_free(c);
		return ENG_ENOMEM;
	}
	c->n = n;
	return 0;
}

void eng__curve_downsample(eng_auc_curve *c, int64_t max_points)
{
	if (max_points < 2)
		max_points = 2;
	int64_t n = c->n;
	if (n <= max_points)
		return;
	/* Index i*(n-1)/(m-1), rounded: strictly increasing because n > m,
	 * and j <= i' for i' >= i, so the copy never overwrites a source. */
	for (int64_t i = 0; i < max_points; i++) {
		int64_t j =
		        (int64_t)(((double)i * (double)(n - 1)) / (double)(max_points - 1) + 0.5);
		if (j > n - 1)
			j = n - 1;
		c->x[i] = c->x[j];
		c->y[i] = c->y[j];
		c->thresholds[i] = c->thresholds[j];
	}
	c->n = max_points;
}

/* ---- the exact computation ------------------------------------------------- */

/* One distinct-threshold ROC point in unnormalized units. */
typedef struct point {
	double fp, tp, thr;
} point;

/* sklearn's _binary_roc_auc_score for max_fpr < 1 on the points (with the
 * leading (0, 0)), normalized by N and P. */
static double partial_auc(const point *pt, int64_t np, double P, double N, double max_fpr)
{
	int64_t stop = 0;
	while (stop < np && pt[stop].fp / N <= max_fpr)
		stop++;
	/* stop >= 1 (pt[0] is (0, 0)) and stop < np (the last fpr is 1 > max_fpr). */
	double area = 0.0;
	for (int64_t i = 1; i < stop; i++) {
		double x0 = pt[i - 1].fp / N, x1 = pt[i].fp / N;
		double y0 = pt[i - 1].tp / P, y1 = pt[i].tp / P;
		area += (x1 - x0) * (y0 + y1) / 2.0;
	}
	double x0 = pt[stop - 1].fp / N, x1 = pt[stop].fp / N;
	double y0 = pt[stop - 1].tp / P, y1 = pt[stop].tp / P;
	double yi = y0 + (max_fpr - x0) * (y1 - y0) / (x1 - x0);
	area += (max_fpr - x0) * (y0 + yi) / 2.0;
	double min_area = 0.5 * max_fpr * max_fpr;
	double max_area = max_fpr;
	return 0.5 * (1.0 + (area - min_area) / (max_area - min_area));
}

static int fill_curve(eng_auc_curve *curve, const point *pt, int64_t np, double P, double N,
                      eng_curve kind, int64_t max_points)
{
	int rc = eng__curve_alloc(curve, np);
	if (rc)
		return rc;
	for (int64_t i = 0; i < np; i++) {
		double tp = pt[i].tp, fp = pt[i].fp;
		if (kind == ENG_CURVE_ROC) {
			curve->x[i] = fp / N;
			curve->y[i] = tp / P;
		} else if (i == 0) {
			curve->x[i] = 0.0; /* sklearn's appended (recall 0, precision 1) */
			curve->y[i] = 1.0;
		} else {
			curve->x[i] = tp / P;
			curve->y[i] = tp + fp > 0 ? tp / (tp + fp) : 0.0;
		}
		curve->thresholds[i] = pt[i].thr;
	}
	eng__curve_downsample(curve, max_points);
	return 0;
}

/*
 * Without weights: the scores sorted with their labels (eng__auc_sort), one
 * walk down them. The counts are whole numbers, so the sums are those of
 * the weighted walk below with every weight 1, bit for bit.
 */
/* The end of both exact walks: the AUC of the kind o asks for from the
 * walk's totals (tp, fp, the trapezoid area and the PR step sum ap) and
 * points, then the curve when asked. 0 or ENG_ENOMEM in *err. */
static int finish_auc(eng_auc_result *out, eng_auc_curve *curve, eng_error *err,
                      const eng_auc_opts *o, const point *pt, int64_t np, double tp, double fp,
                      double area, double ap)
{
	if (o->curve == ENG_CURVE_PR)
		out->auc = ap / tp;
	else if (o->max_fpr > 0.0 && o->max_fpr < 1.0)
		out->auc = partial_auc(pt, np, tp, fp, o->max_fpr);
	else
		out->auc = area / tp / fp;
	out->defined = true;
	if (curve && fill_curve(curve, pt, np, tp, fp, o->curve, o->max_points))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	return 0;
}

static int exact_unweighted(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d,
                            int64_t col, int64_t n, int64_t ncols, const eng_auc_opts *o,
                            eng_error *err)
{
	eng__auc_sorted s;
	point *pt = NULL;
	int rc = eng__auc_sort(&s, d, col, n, ncols, err);
	if (rc)
		goto out;
	out->positives = s.positives;
	out->negatives = n - s.positives;
	out->pos_weight = (double)out->positives;
	out->neg_weight = (double)out->negatives;
	if (out->positives == 0 || out->negatives == 0)
		goto out; /* undefined: one class present */

	bool keep = curve || (o->max_fpr > 0.0 && o->max_fpr < 1.0);
	int64_t np = 0;
	if (keep) {
		pt = malloc(((size_t)n + 1) * sizeof(point));
		if (!pt) {
			rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
			goto out;
		}
		pt[np++] = (point){0.0, 0.0, NAN};
	}
	/* from the highest key down; a run of equal keys is one threshold */
	double tp = 0.0, fp = 0.0, area = 0.0, ap = 0.0;
	for (int64_t i = n - 1; i >= 0;) {
		uint64_t k = eng__sorted_key(&s, i);
		int64_t j = i, npos = 0;
		while (j >= 0 && eng__sorted_key(&s, j) == k)
			npos += eng__sorted_label(&s, j--);
		double tp0 = tp, fp0 = fp;
		tp += (double)npos;
		fp += (double)(i - j - npos);
		area += (fp - fp0) * (tp + tp0) / 2.0;
		if (tp + fp > 0.0)
			ap += (tp - tp0) * (tp / (tp + fp));
		if (keep)
			pt[np++] = (point){fp, tp, eng__auc_sorted_value(&s, k)};
		i = j;
	}
	rc = finish_auc(out, curve, err, o, pt, np, tp, fp, area, ap);
out:
	free(pt);
	eng__auc_sorted_free(&s);
	return rc;
}

int eng_auc_exact(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                  const eng_auc_opts *o, eng_error *err)
{
	eng_auc_opts defaults = ENG_AUC_OPTS_INIT;
	double *w = NULL;
	uint8_t *lab = NULL;
	void *key = NULL, *tkey = NULL;
	uint32_t *idx = NULL, *tidx = NULL;
	point *pt = NULL;
	int64_t n = 0, ncols = 0;
	int rc;

	if (!o)
		o = &defaults;
	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (curve)
		memset(curve, 0, sizeof(*curve));
	if (o->max_fpr != 0.0 &&
	    (o->curve != ENG_CURVE_ROC || !(o->max_fpr > 0.0 && o->max_fpr <= 1.0)))
		return eng_error_set(err, ENG_EINVAL, "max_fpr", -1,
		                     "max_fpr must be in (0, 1] and needs the ROC curve");
	rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	if (n >= ((int64_t)1 << 32) - 1)
		return eng_error_set(err, ENG_ELIMIT, "y_score", -1, "too many scores for one AUC");

	if (!d->weight)
		return exact_unweighted(out, curve, d, col, n, ncols, o, err);

	bool narrow = d->score->dtype == ENG_F32;
	bool weighted = true; /* unweighted columns went to exact_unweighted */
	size_t ksz = narrow ? sizeof(uint32_t) : sizeof(uint64_t);
	size_t nn = (size_t)(n > 0 ? n : 1);
	/* 17 (float32) or 25 (float64) bytes an item, +8 with weights: scores
	 * go straight into keys through a small buffer, and thresholds are read
	 * back from the keys. */
	w = weighted ? malloc(nn * sizeof(double)) : NULL;
	lab = malloc(nn);
	key = malloc(nn * ksz);
	tkey = malloc(nn * ksz);
	idx = malloc(nn * sizeof(uint32_t));
	tidx = malloc(nn * sizeof(uint32_t));
	if ((weighted && !w) || !lab || !key || !tkey || !idx || !tidx) {
		rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
		goto out;
	}
	for (int64_t from = 0; from < n; from += GATHER) {
		double buf[GATHER];
		int64_t cnt = n - from < GATHER ? n - from : GATHER;
		rc = eng__auc_gather(d, col, from, cnt, buf, lab + from, weighted ? w + from : NULL,
		                     err);
		if (rc)
			goto out;
		if (narrow)
			for (int64_t i = 0; i < cnt; i++)
				((uint32_t *)key)[from + i] = eng__key32((float)buf[i]);
		else
			for (int64_t i = 0; i < cnt; i++)
				((uint64_t *)key)[from + i] = eng__key64(buf[i]);
	}

	double P = 0.0, N = 0.0;
	for (int64_t i = 0; i < n; i++) {
		double wi = weighted ? w[i] : 1.0;
		if (lab[i]) {
			out->positives++;
			P += wi;
		} else {
			out->negatives++;
			N += wi;
		}
		idx[i] = (uint32_t)i;
	}
	out->pos_weight = P;
	out->neg_weight = N;
	if (out->positives == 0 || out->negatives == 0 || !(P > 0.0) || !(N > 0.0))
		goto out; /* undefined: one class present */

	if (narrow)
		eng__radix_sort32(key, idx, tkey, tidx, n);
	else
		eng__radix_sort64(key, idx, tkey, tidx, n);

	bool keep = curve || (o->max_fpr > 0.0 && o->max_fpr < 1.0);
	int64_t np = 0;
	if (keep) {
		pt = malloc((nn + 1) * sizeof(point));
		if (!pt) {
			rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
			goto out;
		}
		pt[np++] = (point){0.0, 0.0, NAN};
	}
	/* Walk from the highest key down; a run of equal keys is one threshold. */
	double tp = 0.0, fp = 0.0, area = 0.0, ap = 0.0;
	int64_t i = n - 1;
	while (i >= 0) {
		double tp0 = tp, fp0 = fp;
		int64_t j = i;
		if (narrow) {
			const uint32_t *k = key;
			while (j >= 0 && k[j] == k[i]) {
				uint32_t t = idx[j--];
				double wt = weighted ? w[t] : 1.0;
				if (lab[t])
					tp += wt;
				else
					fp += wt;
			}
		} else {
			const uint64_t *k = key;
			while (j >= 0 && k[j] == k[i]) {
				uint32_t t = idx[j--];
				double wt = weighted ? w[t] : 1.0;
				if (lab[t])
					tp += wt;
				else
					fp += wt;
			}
		}
		area += (fp - fp0) * (tp + tp0) / 2.0;
		if (tp + fp > 0.0)
			ap += (tp - tp0) * (tp / (tp + fp));
		if (keep)
			pt[np++] = (point){fp, tp,
			                   narrow ? (double)eng__key32_value(((uint32_t *)key)[i])
			                          : eng__key64_value(((uint64_t *)key)[i])};
		i = j;
	}

	rc = finish_auc(out, curve, err, o, pt, np, tp, fp, area, ap);
out:
	free(pt);
	free(tidx);
	free(idx);
	free(tkey);
	free(key);
	free(lab);
	free(w);
	return rc;
}

int eng_auc_exact_values(eng_auc_result *out, eng_auc_curve *curve, const double *score,
                         const uint8_t *label, const double *weight, int64_t n,
                         const eng_auc_opts *o, eng_error *err)
{
	eng_tensor ts = {ENG_F64, 1, {n}, n, score};
	eng_tensor tl = {ENG_U8, 1, {n}, n, label};
	eng_tensor tw = {ENG_F64, 1, {n}, n, weight};
	eng_auc_data d = {&ts, &tl, weight ? &tw : NULL, ENG_LABELS_BINARY};
	return eng_auc_exact(out, curve, &d, 0, o, err);
}

/* ---- logits ------------------------------------------------------------------ */

/* Stable sigmoid: never 1/(1 + exp(x)) with an overflowing exp. */
static double sigmoid(double x)
{
	double e = exp(-fabs(x));
	return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

int eng_auc_logit_keys(double *out, const eng_tensor *score, bool softmax_rows)
{
	if (!softmax_rows) {
		for (int64_t i = 0; i < score->size; i++)
			out[i] = eng_tensor_at(score, i);
		return 0;
	}
	if (score->ndim != 2)
		return ENG_ESHAPE;
	int64_t n = score->shape[0], c = score->shape[1];
	for (int64_t r = 0; r < n; r++) {
		double *o = out + r * c;
		double m = -INFINITY;
		int64_t top = 0;
		bool nan = false;
		for (int64_t j = 0; j < c; j++) {
			o[j] = eng_tensor_at(score, r * c + j);
			nan |= isnan(o[j]);
			if (o[j] > m) {
				m = o[j];
				top = j;
			}
		}
		if (nan || !isfinite(m)) {
			/* NaN anywhere, +inf, or every logit -inf: the row is NaN,
			 * as the softmax would make it (the caller reports it) */
			for (int64_t j = 0; j < c; j++)
				o[j] = NAN;
			continue;
		}
		/* rest = sum over j != top of e^(x_j - m), every term <= 1; the
		 * top class is -log1p(rest), which keeps rest's digits (a
		 * log(1 + rest) would round it to 0 below 1e-16) */
		double rest = 0.0;
		for (int64_t j = 0; j < c; j++)
			if (j != top)
				rest += exp(o[j] - m);
		double lse = log1p(rest);
		for (int64_t j = 0; j < c; j++)
			o[j] = j == top ? -lse : (o[j] - m) - lse;
	}
	return 0;
}

double eng_auc_key_prob(double key, bool softmax_rows)
{
	return softmax_rows ? exp(key) : sigmoid(key);
}

void eng_auc_curve_key_probs(eng_auc_curve *c, bool softmax_rows)
{
	for (int64_t i = 0; c && i < c->n; i++)
		if (!isnan(c->thresholds[i]))
			c->thresholds[i] = eng_auc_key_prob(c->thresholds[i], softmax_rows);
}

int eng_auc_logits(double *out, const eng_tensor *score, bool softmax_rows)
{
	if (!softmax_rows) {
		for (int64_t i = 0; i < score->size; i++)
			out[i] = sigmoid(eng_tensor_at(score, i));
		return 0;
	}
	if (score->ndim != 2)
		return ENG_ESHAPE;
	int64_t n = score->shape[0], c = score->shape[1];
	for (int64_t r = 0; r < n; r++) {
		double m = -INFINITY;
		for (int64_t j = 0; j < c; j++) {
			double x = eng_tensor_at(score, r * c + j);
			if (x > m || isnan(x))
				m = x;
		}
		double s = 0.0;
		for (int64_t j = 0; j < c; j++)
			s += exp(eng_tensor_at(score, r * c + j) - m);
		double lse = log(s);
		for (int64_t j = 0; j < c; j++)
			out[r * c + j] = exp(eng_tensor_at(score, r * c + j) - m - lse);
	}
	return 0;
}
