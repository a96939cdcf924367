/*
 * binned.c - Keras' AUC (tf.keras.metrics.AUC) as a histogram accumulator.
 *
 * What: weighted TP/FP/TN/FN at Keras' num_thresholds thresholds
 * t_0 = -1e-7, t_i = i/(n-1) for 0 < i < n-1 (computed as Keras does, in
 * double), t_{n-1} = 1 + 1e-7, compared as Keras compares them: in
 * float32. With T_i = float32(t_i) and sf = float32(score), a score is
 * positive at t_i iff sf > T_i (Keras casts predictions and thresholds to
 * the metric's float32 before `>`). Near a threshold this differs from a
 * comparison in double: a score placed on float32(t_i) counts as below it.
 * Curves report the t_i as computed in double (Keras' `thresholds`).
 * Then Keras' result(): Riemann sums with interpolation / minoring /
 * majoring heights, and for PR with interpolation the Davis-Goadrich
 * interpolation (keras' interpolate_pr_auc).
 *
 * Why a histogram: a score exceeds exactly the first m(s) thresholds
 * (thresholds increase), so one item touches one of n + 1 cells and the
 * confusion counts are suffix / prefix sums of the cells: O(1) per score
 * and O(n) per result, instead of Keras' O(n) per score. m(s) takes one
 * multiply and two compares against a table of the float32 thresholds
 * (cell_fast, with the proof that it equals #{ i : sf > T_i } for every
 * double), and away from the thresholds not even the compares
 * (easy_delta).
 *
 * Why so shaped for speed (hundreds of millions of scores a second per
 * core): inputs are checked in a separate pass per chunk (or-reductions
 * that vectorize; only a chunk holding a bad value is searched for the
 * first one), then counted without checks. Unweighted items go to integer
 * histograms, four copies interleaved item by item so repeats of a cell do
 * not wait on each other's stores, summed into the double cells when the
 * call ends (exact: counts below 2^53); on x86-64 CPUs with AVX2 the cells
 * of four scores are found at once (count_avx2, chosen at run time; the
 * portable loop is the same arithmetic). Weighted items are summed in
 * double in input order. Tensors are read by aucfast.c (no per-value
 * dtype switch; a contiguous float64 column is not even copied).
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
#include "aucfast.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#include <immintrin.h>
#define HAVE_AVX2_KERNEL 1
#endif
#include "bytes.h"

#define EPSILON 1e-7
#define MAGIC   "LDBN"
#define VERSION 1u
#define CHUNK   2048

struct eng_binned {
	int64_t n;                    /* num_thresholds */
	int64_t positives, negatives; /* unweighted */
	double *pos, *neg;            /* n + 1 cells: weight with m(s) == cell */
	double *thr;                  /* n + 2: T_0 .. T_{n-1} (float32), +inf, +inf */
	double easy;                  /* easy_delta(n) */
};

static double threshold(int64_t n, int64_t i)
{
	if (i == 0)
		return 0.0 - EPSILON;
	if (i == n - 1)
		return 1.0 + EPSILON;
	return (double)i * 1.0 / (double)(n - 1);
}

/*
 * m(s) = #{ i : sf > T_i } in [0, n], sf = float32(s), s not NaN, with one
 * multiply and two compares: e = floor(sf (n-1)), the product rounded (f),
 * clamped to [0, n]; then m = e + [sf > T_e] + [sf > T_{e+1}] against the
 * table (T_n = T_{n+1} = +inf). Why m is one of e, e+1, e+2: every T_i is
 * within a relative 2^-24 (+ 2^-53) of i/(n-1), while consecutive
 * thresholds are 1/(n-1) >= 2^-20 apart (n <= 2^20), far more than
 * (i+2) 2^-23 / (n-1) for any i <= n, so:
 * - T_{e-1} and below are < sf: f >= e means sf (n-1) >= e (1 - 2^-53),
 *   above (e-1)(1 + 2^-23); T_0 < 0 <= sf whenever e >= 1.
 * - T_{e+2} and above are >= sf: f < e + 1 means sf (n-1) < e + 1, below
 *   (e+2)(1 - 2^-23); T_{n-1} = float32(1 + 1e-7) = 1 + 2^-23 > sf when
 *   e + 2 = n - 1, as sf < (n-2)/(n-1) < 1.
 * - e = n needs sf >= n/(n-1) (1 - 2^-53) > 1 + 2^-23 = T_{n-1}: above all.
 * -0.0 gives e = 0 (m = 1: above T_0 < 0); -inf and +inf clamp to 0 and
 * n; a double beyond float32's range rounds to +-inf and goes with them.
 */
static inline int64_t cell_fast(const double *thr, double nm1, double dn, double s)
{
	double sf = (double)(float)s;
	double f = sf * nm1;
	f = f > 0.0 ? f : 0.0;
	f = f < dn ? f : dn;
	int64_t e = (int64_t)f;
	return e + (sf > thr[e]) + (sf > thr[e + 1]);
}

/*
 * The easy case, without the table: when f = fl(sf (n-1)) lies in
 * (e + delta, e + 1 - delta) for an integer e with 0 <= e and e + 1 <=
 * n - 1, the cell is e + 1. Why: fl() errs by at most f 2^-53 <= n 2^-53,
 * and T_i (n-1) differs from i by at most i (2^-24 + 2^-53) < n 2^-23, so
 * with delta >= n 2^-22, sf (n-1) lies strictly between T_e (n-1) and
 * T_{e+1} (n-1) (for e = 0: sf > 0 > T_0; for e + 1 = n - 1: sf < 1 <
 * T_{n-1}). Only scores within about delta / (n-1) of a threshold, or
 * outside (0, 1), need the table: 5e-5 / 199 for Keras' default 200.
 */
static double easy_delta(int64_t n)
{
	double d = ldexp((double)n, -22);
	return d > 1e-9 ? d : 1e-9;
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
	b->thr = malloc(((size_t)num_thresholds + 2) * sizeof(double));
	if (!b->pos || !b->neg || !b->thr) {
		eng_binned_free(b);
		return NULL;
	}
	/* Keras' thresholds, computed in double, compared in float32 */
	for (int64_t i = 0; i < num_thresholds; i++)
		b->thr[i] = (double)(float)threshold(num_thresholds, i);
	b->thr[num_thresholds] = b->thr[num_thresholds + 1] = INFINITY;
	b->easy = easy_delta(num_thresholds);
	return b;
}

void eng_binned_free(eng_binned *b)
{
	if (!b)
		return;
	free(b->pos);
	free(b->neg);
	free(b->thr);
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

int64_t eng_binned_cell(const eng_binned *b, double s)
{
	return cell_fast(b->thr, (double)(b->n - 1), (double)b->n, s);
}

/*
 * One call's additions before they are committed (all or nothing).
 * Unweighted items are counted in integer histograms, COPIES of them
 * interleaved item by item so that a run of scores in one cell does not
 * wait on its own previous increment (store forwarding); cell m of label y
 * of copy c is cnt[c * stride + 2 m + y]. Weighted items sum into pos/neg
 * in input order, as doubles.
 */
#define COPIES 4

typedef struct adder {
	const eng_binned *b;
	int copies;
	size_t stride;
	uint64_t *cnt;
	double *pos, *neg; /* NULL until a weighted item comes */
	int64_t np, nn;
	bool avx2; /* the CPU runs count_avx2 */
} adder;

static int adder_init(adder *a, const eng_binned *b, int64_t items)
{
	memset(a, 0, sizeof(*a));
	a->b = b;
	/* copies pay off only when the histograms stay small next to the
	 * items: keep them in cache and their sum cheap */
	a->copies = (b->n <= 65536 && items >= 64 * (b->n + 1)) ? COPIES : 1;
	a->stride = 2 * ((size_t)b->n + 1);
#ifdef HAVE_AVX2_KERNEL
	a->avx2 = __builtin_cpu_supports("avx2");
#endif
	a->cnt = calloc((size_t)a->copies * a->stride, sizeof(uint64_t));
	return a->cnt ? 0 : ENG_ENOMEM;
}

static int adder_weights(adder *a)
{
	if (a->pos)
		return 0;
	a->pos = calloc((size_t)a->b->n + 1, sizeof(double));
	a->neg = calloc((size_t)a->b->n + 1, sizeof(double));
	return a->pos && a->neg ? 0 : ENG_ENOMEM;
}

static void adder_free(adder *a)
{
	free(a->cnt);
	free(a->pos);
	free(a->neg);
}

#ifdef HAVE_AVX2_KERNEL
/* count_items' loop on AVX2, four scores at a time, without table reads:
 * the scores rounded to float32, and away from the integers f = sf (n-1)
 * decides the cell alone (easy_delta); a lane near an integer (a score
 * near a threshold) or outside (0, 1) takes cell_fast. Same cells as
 * cell_fast for every score. */
__attribute__((target("avx2"))) static int64_t count_avx2(const double *thr, double nm1, double dn,
                                                          double easy, const double *score,
                                                          const uint8_t *label, int64_t cnt,
                                                          uint64_t *h, size_t st)
{
	const __m256d vn1 = _mm256_set1_pd(nm1), lo = _mm256_set1_pd(easy);
	const __m256d hi = _mm256_set1_pd(1.0 - easy), top = _mm256_set1_pd(nm1 - easy);
	const __m256i one = _mm256_set1_epi64x(1);
	uint64_t *hs[4] = {h, h + st, h + 2 * st, h + 3 * st};
	int64_t i = 0;
	for (; i + 4 <= cnt; i += 4) {
		__m256d s = _mm256_cvtps_pd(_mm256_cvtpd_ps(_mm256_loadu_pd(score + i)));
		__m256d f = _mm256_mul_pd(s, vn1);
		__m256d fl = _mm256_round_pd(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
		__m256d fr = _mm256_sub_pd(f, fl);
		__m256d ok = _mm256_and_pd(_mm256_cmp_pd(fr, lo, _CMP_GT_OQ),
		                           _mm256_cmp_pd(fr, hi, _CMP_LT_OQ));
		ok = _mm256_and_pd(ok, _mm256_cmp_pd(f, top, _CMP_LT_OQ));
		ok = _mm256_and_pd(ok, _mm256_cmp_pd(f, lo, _CMP_GT_OQ));
		__m256i m = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(fl)), one);
		uint32_t l4;
		memcpy(&l4, label + i, 4);
		__m256i lab = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128((int)l4));
		__m256i idx = _mm256_add_epi64(_mm256_add_epi64(m, m), lab);
		int64_t k[4];
		_mm256_storeu_si256((__m256i *)k, idx);
		if (_mm256_movemask_pd(ok) != 0xf)
			for (int c = 0; c < 4; c++)
				k[c] = 2 * cell_fast(thr, nm1, dn, score[i + c]) + label[i + c];
		hs[0][k[0]]++;
		hs[1][k[1]]++;
		hs[2][k[2]]++;
		hs[3][k[3]]++;
	}
	return i;
}
#endif

/* Counts cnt valid unweighted items. */
static void count_items(adder *a, const double *score, const uint8_t *label, int64_t cnt)
{
	const double *thr = a->b->thr;
	double nm1 = (double)(a->b->n - 1), dn = (double)a->b->n;
	uint64_t *h = a->cnt;
	int64_t ones = 0, i = 0;
	if (a->copies == COPIES) {
		size_t st = a->stride;
#ifdef HAVE_AVX2_KERNEL
		if (a->avx2)
			i = count_avx2(thr, nm1, dn, a->b->easy, score, label, cnt, h, st);
#endif
		for (; i + 4 <= cnt; i += 4) {
			int64_t m0 = cell_fast(thr, nm1, dn, score[i]);
			int64_t m1 = cell_fast(thr, nm1, dn, score[i + 1]);
			int64_t m2 = cell_fast(thr, nm1, dn, score[i + 2]);
			int64_t m3 = cell_fast(thr, nm1, dn, score[i + 3]);
			h[2 * m0 + label[i]]++;
			h[st + 2 * m1 + label[i + 1]]++;
			h[2 * st + 2 * m2 + label[i + 2]]++;
			h[3 * st + 2 * m3 + label[i + 3]]++;
		}
	}
	for (; i < cnt; i++)
		h[2 * cell_fast(thr, nm1, dn, score[i]) + label[i]]++;
	for (int64_t j = 0; j < cnt; j++)
		ones += label[j];
	a->np += ones;
	a->nn += cnt - ones;
}

/* Adds cnt valid weighted items. */
static void sum_items(adder *a, const double *score, const uint8_t *label, const double *w,
                      int64_t cnt)
{
	const double *thr = a->b->thr;
	double nm1 = (double)(a->b->n - 1), dn = (double)a->b->n;
	int64_t ones = 0;
	for (int64_t i = 0; i < cnt; i++) {
		int64_t m = cell_fast(thr, nm1, dn, score[i]);
		if (label[i])
			a->pos[m] += w[i];
		else
			a->neg[m] += w[i];
		ones += label[i];
	}
	a->np += ones;
	a->nn += cnt - ones;
}

/* Validates (unless checked) and adds raw items; index in the error is
 * base + item. */
static int adder_add(adder *a, const double *score, const uint8_t *label, const double *weight,
                     int64_t cnt, int64_t base, bool checked, eng_error *err)
{
	int64_t i = checked ? -1 : eng__auc_first_bad(score, label, weight, cnt);
	if (i >= 0) {
		double s = score[i], w = weight ? weight[i] : 1.0;
		if (isnan(s))
			return eng_error_set(err, ENG_ENONFINITE, "y_score", base + i,
			                     "y_score is NaN");
		if (label[i] > 1)
			return eng_error_set(err, ENG_ELABEL, "y_true", base + i,
			                     "label is not 0 or 1");
		return eng_error_set(err, ENG_EWEIGHT, "sample_weight", base + i,
		                     "weight %g is not finite and >= 0", w);
	}
	if (!weight) {
		count_items(a, score, label, cnt);
		return 0;
	}
	if (adder_weights(a))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	sum_items(a, score, label, weight, cnt);
	return 0;
}

/* b += a: the copies in copy order, then the weighted sums. */
static void adder_commit(eng_binned *b, const adder *a)
{
	for (int64_t m = 0; m <= b->n; m++) {
		uint64_t p = 0, q = 0;
		for (int c = 0; c < a->copies; c++) {
			p += a->cnt[(size_t)c * a->stride + 2 * (size_t)m + 1];
			q += a->cnt[(size_t)c * a->stride + 2 * (size_t)m];
		}
		double wp = (double)p, wq = (double)q;
		if (a->pos) {
			wp += a->pos[m];
			wq += a->neg[m];
		}
		b->pos[m] += wp;
		b->neg[m] += wq;
	}
	b->positives += a->np;
	b->negatives += a->nn;
}

static void commit(eng_binned *b, const double *pos, const double *neg, int64_t np, int64_t nn)
{
	for (int64_t m = 0; m <= b->n; m++) {
		b->pos[m] += pos[m];
		b->neg[m] += neg[m];
	}
	b->positives += np;
	b->negatives += nn;
}

/* Raw items go through in chunks so the checking pass reads what the
 * counting pass reads next from cache. */
#define RAW_CHUNK 4096

int eng_binned_add_values(eng_binned *b, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err)
{
	adder a;
	int rc = 0;
	if (adder_init(&a, b, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n && !rc; from += RAW_CHUNK) {
		int64_t cnt = n - from < RAW_CHUNK ? n - from : RAW_CHUNK;
		rc = adder_add(&a, score + from, label + from, weight ? weight + from : NULL, cnt,
		               from, false, err);
	}
	if (!rc)
		adder_commit(b, &a);
	adder_free(&a);
	return rc;
}

int eng_binned_add(eng_binned *b, const eng_auc_data *d, int64_t col, eng_error *err)
{
	adder a;
	eng__auc_reader r;
	double score[CHUNK], w[CHUNK];
	uint8_t lab[CHUNK];
	int64_t n, ncols;
	int rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	eng__auc_reader_init(&r, d, col, ncols);
	if (adder_init(&a, b, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += CHUNK) {
		int64_t cnt = n - from < CHUNK ? n - from : CHUNK;
		const double *sp;
		rc = eng__auc_read(&r, from, cnt, score, &sp, lab, w, err);
		if (rc)
			goto out;
		/* checked by eng__auc_read */
		rc = adder_add(&a, sp, lab, r.weighted ? w : NULL, cnt, from, true, err);
		if (rc)
			goto out;
	}
	adder_commit(b, &a);
out:
	adder_free(&a);
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

void eng_binned_weights(const eng_binned *b, double *pos, double *neg)
{
	double p = 0.0, q = 0.0;
	for (int64_t m = 0; m <= b->n; m++) {
		p += b->pos[m];
		q += b->neg[m];
	}
	*pos = p;
	*neg = q;
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
 * of f64 (pos, neg). Little-endian throughout (bytes.h). */
#define HEADER (4 + 4 + 8 + 8 + 8)

int eng_binned_serialize(uint8_t **out, size_t *len, const eng_binned *b)
{
	eng__writer w = ENG__WRITER_INIT;
	eng__writer_presize(&w, HEADER + (size_t)(b->n + 1) * 16);
	eng__writer_raw(&w, MAGIC, 4);
	eng__writer_u32(&w, VERSION);
	eng__writer_u64(&w, (uint64_t)b->n);
	eng__writer_u64(&w, (uint64_t)b->positives);
	eng__writer_u64(&w, (uint64_t)b->negatives);
	for (int64_t m = 0; m <= b->n; m++) {
		eng__writer_f64(&w, b->pos[m]);
		eng__writer_f64(&w, b->neg[m]);
	}
	return eng__writer_finish(&w, out, len);
}

int eng_binned_deserialize(eng_binned **out, const uint8_t *buf, size_t len)
{
	eng__reader r;
	*out = NULL;
	eng__reader_init(&r, buf, len);
	if (!eng__reader_magic(&r, MAGIC) || eng__reader_u32(&r) != VERSION)
		return ENG_ESTATE;
	uint64_t n = eng__reader_u64(&r);
	uint64_t np = eng__reader_u64(&r), nn = eng__reader_u64(&r);
	if (r.fail || n < 2 || n > (uint64_t)ENG_BINNED_MAX_THRESHOLDS ||
	    np > (uint64_t)COUNT_MAX || nn > (uint64_t)COUNT_MAX)
		return ENG_ESTATE;
	if (r.left != (size_t)(n + 1) * 16)
		return ENG_ESTATE;
	eng_binned *b = eng_binned_new((int64_t)n);
	if (!b)
		return ENG_ENOMEM;
	for (uint64_t m = 0; m <= n; m++) {
		double p = eng__reader_f64(&r);
		double q = eng__reader_f64(&r);
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
