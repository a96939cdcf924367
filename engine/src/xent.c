/*
 * xent.c - the categorical family: sparse and categorical cross-entropy,
 * categorical focal cross-entropy and KL divergence, one task function over
 * a range of positions (eng__xent_task, run by loss.c).
 *
 * A position's class row is y_pred[po*C*inner + c*inner + pi] for c < C:
 * contiguous when the class axis is last (inner == 1), strided otherwise.
 * The general path copies the row into a double scratch buffer and computes
 * log-probabilities there exactly as ref.py does:
 *   logits         log-softmax with the max subtracted
 *   probabilities  divided by the row sum, clipped to [1e-7, 1 - 1e-7] (CE,
 *                  focal); clipped to [1e-7, 1] without dividing (KL)
 * The hot case - sparse CE from float32 logits without label smoothing -
 * skips the copy: one pass for the max, one for the sum of exp(x - max)
 * with a vectorizable float exp (Cephes polynomial, ~1 ulp), vectorized
 * along the row when the class axis is last (row_f32) and across 32
 * neighbouring positions when it is not (tile_f32, e.g. (B, V, T) with
 * axis 1), so every load is contiguous either way. On CPUs with AVX-512
 * (x86-64-v4) rows go to row_f32_v4 instead: the same outputs, 16 lanes,
 * masked tails, within the same tolerance of the double path (not
 * bit-identical to row_f32; one process always picks the same kernel, so
 * results stay identical across thread counts). A row the fast pass
 * finds non-finite is redone by the general path, which reports it or lets
 * NaN through (nan_policy).
 *
 * Validation happens here as rows are read (labels, probabilities,
 * non-finite values); weights were validated by loss.c. Ignored positions
 * (true class == ignore_class) are neither validated beyond their label nor
 * computed: they contribute nothing and their per_position entry is 0.
 */
#include "loss_priv.h"
#include "vecf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the fast row kernel (float32 logits, contiguous) ------------------------------- */

static inline float exp_neg1(float x)
{
	v8f v = VSPLAT(x);
	exp_neg(&v);
	return v[0];
}

/*
 * Max of the row (NaN ignored), the float sum of the row (only to detect
 * NaN and Inf: non-finite iff some element is, or a false alarm on
 * overflow that the caller re-checks), and the sum of exp(x - max) as
 * *cnt (elements equal to the max, each exp(0) = 1 exactly) plus *rest
 * (all other terms, each < 1). Keeping the ones out lets the rest be summed
 * in float lanes, 8 terms per lane per block of 64 and blocks in double,
 * with a relative error of at most ~5e-7 of the rest itself: a confident
 * correct row, whose loss log(1 + rest) is about rest, stays accurate.
 */
HOT_CLONES
static void row_f32(const float *x, int64_t C, float *mx_out, float *sx_out, double *cnt,
                    double *rest, int64_t *amax)
{
	v8f mx = VSPLAT(-INFINITY), sx = VSPLAT(0.0f);
	v8f mx2 = mx, mx3 = mx, mx4 = mx, sx2 = sx;
	v8i ones = {0, 0, 0, 0, 0, 0, 0, 0};
	int64_t c = 0;
	for (; c + 32 <= C; c += 32) { /* four chains: the compare-select latency */
		v8f v, v2, v3, v4;
		memcpy(&v, x + c, sizeof(v));
		memcpy(&v2, x + c + 8, sizeof(v));
		memcpy(&v3, x + c + 16, sizeof(v));
		memcpy(&v4, x + c + 24, sizeof(v));
		mx = VSEL(v > mx, v, mx);
		mx2 = VSEL(v2 > mx2, v2, mx2);
		mx3 = VSEL(v3 > mx3, v3, mx3);
		mx4 = VSEL(v4 > mx4, v4, mx4);
		sx += v + v2;
		sx2 += v3 + v4;
	}
	for (; c + 8 <= C; c += 8) {
		v8f v;
		memcpy(&v, x + c, sizeof(v));
		mx = VSEL(v > mx, v, mx);
		sx += v;
	}
	mx = VSEL(mx2 > mx, mx2, mx);
	mx = VSEL(mx3 > mx, mx3, mx);
	mx = VSEL(mx4 > mx, mx4, mx);
	sx += sx2;
	float m = -INFINITY, sum = 0;
	for (int k = 0; k < 8; k++) {
		m = mx[k] > m ? mx[k] : m;
		sum += sx[k];
	}
	for (; c < C; c++) {
		m = x[c] > m ? x[c] : m;
		sum += x[c];
	}
	v8f vm = VSPLAT(m);
	double r = 0;
	int64_t n1 = 0, first = -1;
	for (c = 0; c + 16 <= C;) {
		/* two independent chains per step; 4 steps = 64 terms a block */
		v8f acc = VSPLAT(0.0f), acc2 = VSPLAT(0.0f);
		int64_t c0 = c;
		v8i seen = ones;
		for (int b = 0; b < 4 && c + 16 <= C; b++, c += 16) {
			v8f v, u;
			memcpy(&v, x + c, sizeof(v));
			memcpy(&u, x + c + 8, sizeof(u));
			v8i top = v == vm, top2 = u == vm;
			v -= vm;
			u -= vm;
			exp_neg(&v);
			exp_neg(&u);
			acc += (v8f)(~top & (v8i)v);
			acc2 += (v8f)(~top2 & (v8i)u);
			ones -= top;
			ones -= top2;
		}
		acc += acc2;
		r += (double)((acc[0] + acc[1]) + (acc[2] + acc[3])) +
		     (double)((acc[4] + acc[5]) + (acc[6] + acc[7]));
		if (first < 0) { /* the argmax is in this block if a max was counted */
			int any = 0;
			for (int k = 0; k < 8; k++)
				any |= seen[k] != ones[k];
			for (int64_t i = c0; any && i < c; i++) {
				if (x[i] == m) {
					first = i;
					break;
				}
			}
		}
	}
	for (; c < C; c++) {
		if (x[c] == m) {
			n1++;
			if (first < 0)
				first = c;
		} else {
			r += (double)exp_neg1(x[c] - m);
		}
	}
	for (int k = 0; k < 8; k++)
		n1 += ones[k];
	*mx_out = m;
	*sx_out = sum;
	*cnt = (double)n1;
	*rest = r;
	*amax = first < 0 ? 0 : first;
}

/*
 * row_f32 for CPUs with x86-64-v4 (AVX-512F/BW/DQ/VL): the same outputs,
 * 16 lanes wide, with AVX-512 intrinsics where the vector extensions have
 * no match: masked loads for the row's tail, a mask (not a blend) to keep
 * the maxima out of the rest, vrndscaleps + vscalefps in exp (2^n without
 * the exponent arithmetic; underflows to 0, so no clamp is needed). The
 * float sum stays the non-finite detector: vscalefps(NaN, -Inf) is 0, so
 * a -Inf logit need not show in *rest.
 * Per block of 128 terms each float lane sums 8 of them and the block goes
 * to double lanes, so the rest is accurate to ~5e-7 of itself as in
 * row_f32. Built only where HOT_CLONES is (GCC, x86-64, no sanitizer);
 * chosen at run time by eng__xent_task.
 */
#ifdef LOSSD_HOT_V4
#include <immintrin.h>

#define EXP16(t, out)                                                                              \
	do {                                                                                       \
		__m512 n_ = _mm512_roundscale_ps(_mm512_mul_ps(t, log2e),                          \
		                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);   \
		__m512 r_ = _mm512_fnmadd_ps(n_, ln2hi, t);                                        \
		r_ = _mm512_fnmadd_ps(n_, ln2lo, r_);                                              \
		__m512 y_ = _mm512_fmadd_ps(p6, r_, p5);                                           \
		y_ = _mm512_fmadd_ps(y_, r_, p4);                                                  \
		y_ = _mm512_fmadd_ps(y_, r_, p3);                                                  \
		y_ = _mm512_fmadd_ps(y_, r_, p2);                                                  \
		y_ = _mm512_fmadd_ps(y_, r_, p1);                                                  \
		y_ = _mm512_fmadd_ps(y_, _mm512_mul_ps(r_, r_), r_);                               \
		out = _mm512_scalef_ps(_mm512_add_ps(y_, one), n_);                                \
	} while (0)

__attribute__((target("arch=x86-64-v4"))) static void row_f32_v4(const float *x, int64_t C,
                                                                 float *mx_out, float *sx_out,
                                                                 double *cnt, double *rest,
                                                                 int64_t *amax)
{
	const __m512 ninf = _mm512_set1_ps(-INFINITY), zero = _mm512_setzero_ps();
	__m512 mx = ninf, mx2 = ninf, mx3 = ninf, mx4 = ninf, sx = zero, sx2 = zero;
	int64_t c = 0;
	for (; c + 64 <= C; c += 64) { /* four chains: the max latency */
		__m512 v = _mm512_loadu_ps(x + c), v2 = _mm512_loadu_ps(x + c + 16);
		__m512 v3 = _mm512_loadu_ps(x + c + 32), v4 = _mm512_loadu_ps(x + c + 48);
		mx = _mm512_max_ps(v, mx); /* a NaN v keeps mx */
		mx2 = _mm512_max_ps(v2, mx2);
		mx3 = _mm512_max_ps(v3, mx3);
		mx4 = _mm512_max_ps(v4, mx4);
		sx = _mm512_add_ps(sx, _mm512_add_ps(v, v2));
		sx2 = _mm512_add_ps(sx2, _mm512_add_ps(v3, v4));
	}
	for (; c + 16 <= C; c += 16) {
		__m512 v = _mm512_loadu_ps(x + c);
		mx = _mm512_max_ps(v, mx);
		sx = _mm512_add_ps(sx, v);
	}
	if (c < C) {
		__mmask16 k = (__mmask16)((1u << (C - c)) - 1);
		__m512 v = _mm512_maskz_loadu_ps(k, x + c);
		mx = _mm512_mask_max_ps(mx, k, v, mx);
		sx = _mm512_add_ps(sx, v);
	}
	mx = _mm512_max_ps(_mm512_max_ps(mx, mx2), _mm512_max_ps(mx3, mx4));
	float m = _mm512_reduce_max_ps(mx);
	float sum = _mm512_reduce_add_ps(_mm512_add_ps(sx, sx2));

	const __m512 vm = _mm512_set1_ps(m), log2e = _mm512_set1_ps(1.44269504088896341f),
	             ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f),
	             p6 = _mm512_set1_ps(1.9875691500e-4f), p5 = _mm512_set1_ps(1.3981999507e-3f),
	             p4 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f),
	             p2 = _mm512_set1_ps(1.6666665459e-1f), p1 = _mm512_set1_ps(5.0000001201e-1f),
	             one = _mm512_set1_ps(1.0f);
	__m512d racc = _mm512_setzero_pd();
	int64_t n1 = 0, first = -1;
	for (c = 0; c + 32 <= C;) {
		/* two chains per step; 4 steps = 128 terms a block, 8 per lane */
		__m512 acc = zero, acc2 = zero;
		for (int b = 0; b < 4 && c + 32 <= C; b++, c += 32) {
			__m512 v = _mm512_loadu_ps(x + c), u = _mm512_loadu_ps(x + c + 16), e, e2;
			__mmask16 top = _mm512_cmp_ps_mask(v, vm, _CMP_EQ_OQ);
			__mmask16 top2 = _mm512_cmp_ps_mask(u, vm, _CMP_EQ_OQ);
			v = _mm512_sub_ps(v, vm);
			u = _mm512_sub_ps(u, vm);
			EXP16(v, e);
			EXP16(u, e2);
			acc = _mm512_mask_add_ps(acc, (__mmask16)~top, acc, e);
			acc2 = _mm512_mask_add_ps(acc2, (__mmask16)~top2, acc2, e2);
			uint32_t both = (uint32_t)top | (uint32_t)top2 << 16;
			if (both) {
				n1 += __builtin_popcount(both);
				if (first < 0)
					first = c + __builtin_ctz(both);
			}
		}
		acc = _mm512_add_ps(acc, acc2);
		racc = _mm512_add_pd(racc, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
		racc = _mm512_add_pd(racc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
		                                   _mm512_castps_pd(acc), 1))));
	}
	for (; c < C; c += 16) { /* at most two masked steps */
		int64_t left = C - c < 16 ? C - c : 16;
		__mmask16 k = (__mmask16)((1u << left) - 1);
		__m512 v = _mm512_maskz_loadu_ps(k, x + c), e;
		__mmask16 top = _mm512_mask_cmp_ps_mask(k, v, vm, _CMP_EQ_OQ);
		v = _mm512_sub_ps(v, vm);
		EXP16(v, e);
		e = _mm512_maskz_mov_ps((__mmask16)(k & ~top), e);
		racc = _mm512_add_pd(racc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
		racc = _mm512_add_pd(racc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(
		                                   _mm512_castps_pd(e), 1))));
		if (top) {
			n1 += __builtin_popcount(top);
			if (first < 0)
				first = c + __builtin_ctz(top);
		}
	}
	*mx_out = m;
	*sx_out = sum;
	*cnt = (double)n1;
	*rest = _mm512_reduce_add_pd(racc);
	*amax = first < 0 ? 0 : first;
}
#undef EXP16
#endif

/* ---- helpers ------------------------------------------------------------------------ */

/* numpy's argmax: first maximum; the first NaN wins if there is one. */
static int64_t argmax_d(const double *v, int64_t C)
{
	int64_t best = 0;
	for (int64_t c = 0; c < C; c++) {
		if (isnan(v[c]))
			return c;
		if (v[c] > v[best])
			best = c;
	}
	return best;
}

static inline double clip(double v, double lo, double hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

/*
 * Label of position p for the sparse loss into *cls (-1 when ignored).
 * Returns 0 or ENG_ELABEL (recorded in pt).
 */
static int sparse_label(eng__loss_part *pt, const eng__loss_job *j, int64_t p, int64_t *cls)
{
	const eng_loss_opts *o = j->o;
	double v = eng_tensor_at(j->yt, p);
	if (o->has_ignore_class && v == (double)o->ignore_class) {
		*cls = -1;
		return 0;
	}
	if (!(v == floor(v)))
		return eng__part_fail(pt, ENG_ELABEL, "y_true", p,
		                      "y_true[%lld] is %g, not a whole class id", (long long)p, v);
	if (v < 0 || v >= (double)j->C)
		return eng__part_fail(pt, ENG_ELABEL, "y_true", p,
		                      "y_true[%lld] is %.0f, outside [0, %lld)%s", (long long)p, v,
		                      (long long)j->C,
		                      o->has_ignore_class ? " and not the ignore_class" : "");
	*cls = (int64_t)v;
	return 0;
}

/* Reads the row of tensor t at base with stride into buf (double), checking
 * finiteness (unless propagate) and, if nonneg, that values are >= 0. */
static int read_row(eng__loss_part *pt, const eng__loss_job *j, const eng_tensor *t,
                    const char *field, int64_t base, double *buf, bool nonneg, int neg_code)
{
	int64_t C = j->C, st = j->inner;
	bool check = !j->o->propagate_nan;
	if (t->dtype == ENG_F32) {
		const float *f = (const float *)t->data + base;
		for (int64_t c = 0; c < C; c++)
			buf[c] = (double)f[c * st];
	} else if (t->dtype == ENG_F64) {
		const double *f = (const double *)t->data + base;
		for (int64_t c = 0; c < C; c++)
			buf[c] = f[c * st];
	} else {
		for (int64_t c = 0; c < C; c++)
			buf[c] = eng_tensor_at(t, base + c * st);
	}
	for (int64_t c = 0; c < C; c++) {
		if (check && !isfinite(buf[c]))
			return eng__part_fail(pt, ENG_ENONFINITE, field, base + c * st,
			                      "%s[%lld] is not finite", field,
			                      (long long)(base + c * st));
		if (nonneg && buf[c] < 0)
			return eng__part_fail(pt, neg_code, field, base + c * st,
			                      "%s[%lld] is %g; %s must be >= 0", field,
			                      (long long)(base + c * st), buf[c],
			                      neg_code == ENG_EPROB ? "probabilities"
			                                            : "a distribution");
	}
	return 0;
}

/* In place: logits -> log-softmax. */
static void log_softmax(double *v, int64_t C)
{
	double m = -INFINITY;
	for (int64_t c = 0; c < C; c++)
		m = v[c] > m ? v[c] : m;
	for (int64_t c = 0; c < C; c++)
		if (isnan(v[c]))
			m = NAN;
	double s = 0;
	for (int64_t c = 0; c < C; c++)
		s += exp(v[c] - m);
	double lse = m + log(s);
	for (int64_t c = 0; c < C; c++)
		v[c] -= lse;
}

/* ---- one position, general path ---------------------------------------------------------- */

typedef struct scratch {
	double *q; /* y_pred row, then log-probabilities */
	double *d; /* y_true row (distributions) */
	double *p; /* focal probabilities */
} scratch;

/* The general path's rows, allocated on first use (the fast kernels need
 * none). Returns 0 or ENG_ENOMEM (recorded in pt). */
static int scratch_get(scratch *s, eng__loss_part *pt, const eng__loss_job *j)
{
	if (s->q)
		return 0;
	bool focal = j->o->kind == ENG_LOSS_CATEGORICAL_FOCAL;
	s->q = malloc((size_t)j->C * (focal ? 3 : 2) * sizeof(double) + sizeof(double));
	if (!s->q)
		return eng__part_fail(pt, ENG_ENOMEM, NULL, -1, "out of memory");
	s->d = s->q + j->C;
	s->p = focal ? s->q + 2 * j->C : NULL;
	return 0;
}

/*
 * Computes position p with the row at base. tcls is the sparse label (or
 * -2 to derive it from y_true's distribution). Returns 0 or an ENG_E*.
 */
static int position(eng__loss_part *pt, const eng__loss_job *j, const scratch *s, int64_t p,
                    int64_t base, int64_t tcls)
{
	const eng_loss_opts *o = j->o;
	eng_loss_kind k = o->kind;
	int64_t C = j->C;
	double ls = o->label_smoothing;
	double *q = s->q, *d = s->d;
	int rc;

	if (k != ENG_LOSS_SPARSE_CE) {
		if ((rc = read_row(pt, j, j->yt, "y_true", base, d, true, ENG_ELABEL)))
			return rc;
		tcls = argmax_d(d, C);
		if (o->has_ignore_class && tcls == o->ignore_class)
			tcls = -1;
	}
	if (tcls < 0) {
		pt->ignored++;
		if (j->per_position)
			j->per_position[p] = 0;
		return 0;
	}
	if ((rc = read_row(pt, j, j->yp, "y_pred", base, q, !o->from_logits, ENG_EPROB)))
		return rc;
	int64_t pcls = argmax_d(q, C);

	/* log-probabilities into q (and probabilities into s->p for focal) */
	if (o->from_logits) {
		log_softmax(q, C);
		if (k == ENG_LOSS_CATEGORICAL_FOCAL) {
			double z = 0;
			for (int64_t c = 0; c < C; c++)
				z += exp(q[c]);
			for (int64_t c = 0; c < C; c++) {
				s->p[c] = clip(exp(q[c]) / z, ENG__EPS, 1 - ENG__EPS);
				q[c] = log(s->p[c]);
			}
		}
	} else if (k == ENG_LOSS_KL) {
		for (int64_t c = 0; c < C; c++)
			q[c] = log(clip(q[c], ENG__EPS, 1));
	} else {
		double z = 0;
		for (int64_t c = 0; c < C; c++)
			z += q[c];
		if (z == 0)
			return eng__part_fail(
			        pt, ENG_EPROB, "y_pred", base,
			        "the probabilities of y_pred at position %lld sum to 0",
			        (long long)p);
		for (int64_t c = 0; c < C; c++) {
			double pc = clip(q[c] / z, ENG__EPS, 1 - ENG__EPS);
			if (k == ENG_LOSS_CATEGORICAL_FOCAL)
				s->p[c] = pc;
			q[c] = log(pc);
		}
	}

	const double *cw = j->cw;
	double l = 0, w = 0;
	switch (k) {
	case ENG_LOSS_SPARSE_CE:
		w = cw ? cw[tcls] : 1.0;
		l = (1 - ls) * w * -q[tcls];
		if (ls != 0) {
			double sm = 0;
			for (int64_t c = 0; c < C; c++)
				sm += (cw ? cw[c] : 1.0) * -q[c];
			l += ls / (double)C * sm;
		}
		break;
	case ENG_LOSS_CATEGORICAL_CE:
		for (int64_t c = 0; c < C; c++) {
			double wc = cw ? cw[c] : 1.0;
			double y = d[c] * (1 - ls) + ls / (double)C;
			l -= y * q[c] * wc;
			w += d[c] * wc;
		}
		break;
	case ENG_LOSS_CATEGORICAL_FOCAL:
		for (int64_t c = 0; c < C; c++) {
			double wc = cw ? cw[c] : 1.0;
			double y = d[c] * (1 - ls) + ls / (double)C;
			l += o->alpha * pow(1 - s->p[c], o->gamma) * -(y * q[c]) * wc;
			w += d[c] * wc;
		}
		break;
	case ENG_LOSS_KL:
		for (int64_t c = 0; c < C; c++) {
			double wc = cw ? cw[c] : 1.0;
			double pc = clip(d[c], ENG__EPS, 1);
			l += pc * (log(pc) - q[c]) * wc;
			w += d[c] * wc;
		}
		break;
	default: break;
	}
	if (j->cost) {
		double f = j->cost[tcls * C + pcls];
		l *= f;
		w *= f;
	}
	double sw = eng__sw(j, p);
	l *= sw;
	w *= sw;
	if (j->per_position)
		j->per_position[p] = l;
	eng__part_add(pt, j->conf_n, tcls, pcls, l, w);
	return 0;
}

/* ---- the strided tile kernel (float32 logits, class axis not last) -------------------- */

#define TILE 32 /* positions per tile: 4 vectors of 8 */

/*
 * For TILE consecutive positions pi0.. of one outer index, whose class c
 * values sit contiguously at x[c * inner + k]: per position the max, the
 * float sum (non-finite detector), the count of maxima and the rest of the
 * sum of exp(x - max) (as row_f32), and the first argmax. Vectorized
 * across positions, so every load is contiguous.
 */
HOT_CLONES
static void tile_f32(const float *x, int64_t C, int64_t inner, float *mx_out, float *sx_out,
                     double *cnt, double *rest, int64_t *amax)
{
	v8f mx[4], sx[4];
	for (int k = 0; k < 4; k++) {
		mx[k] = VSPLAT(-INFINITY);
		sx[k] = VSPLAT(0.0f);
	}
	for (int64_t c = 0; c < C; c++) {
		for (int k = 0; k < 4; k++) {
			v8f v;
			memcpy(&v, x + c * inner + 8 * k, sizeof(v));
			mx[k] = VSEL(v > mx[k], v, mx[k]);
			sx[k] += v;
		}
	}
	v8i ones[4], first[4];
	double r[TILE] = {0};
	for (int k = 0; k < 4; k++) {
		ones[k] = (v8i){0, 0, 0, 0, 0, 0, 0, 0};
		first[k] = (v8i){-1, -1, -1, -1, -1, -1, -1, -1};
	}
	for (int64_t c0 = 0; c0 < C; c0 += 8) {
		int64_t c1 = c0 + 8 < C ? c0 + 8 : C;
		for (int k = 0; k < 4; k++) {
			v8f acc = VSPLAT(0.0f);
			for (int64_t c = c0; c < c1; c++) {
				v8f v;
				memcpy(&v, x + c * inner + 8 * k, sizeof(v));
				v8i top = v == mx[k];
				v8i ci = {(int32_t)c, (int32_t)c, (int32_t)c, (int32_t)c,
				          (int32_t)c, (int32_t)c, (int32_t)c, (int32_t)c};
				v8i upd = top & (first[k] < 0);
				first[k] = (first[k] & ~upd) | (ci & upd);
				v -= mx[k];
				exp_neg(&v);
				acc += (v8f)(~top & (v8i)v);
				ones[k] -= top;
			}
			for (int l = 0; l < 8; l++)
				r[8 * k + l] += (double)acc[l];
		}
	}
	for (int k = 0; k < 4; k++) {
		for (int l = 0; l < 8; l++) {
			mx_out[8 * k + l] = mx[k][l];
			sx_out[8 * k + l] = sx[k][l];
			cnt[8 * k + l] = (double)ones[k][l];
			rest[8 * k + l] = r[8 * k + l];
			amax[8 * k + l] = first[k][l] < 0 ? 0 : first[k][l];
		}
	}
}

/* Adds a sparse position computed by a fast kernel: row max m, the logit
 * of the true class xt, the sum of exp(x - m) as ones + rest, argmax pcls. */
static void sparse_fast_add(eng__loss_part *pt, const eng__loss_job *j, int64_t p, int64_t tcls,
                            double m, double xt, double ones, double rest, int64_t pcls)
{
	double w = j->cw ? j->cw[tcls] : 1.0;
	double lse = ones == 1 ? log1p(rest) : log(ones + rest);
	double l = w * ((m - xt) + lse);
	if (j->cost) {
		double f = j->cost[tcls * j->C + pcls];
		l *= f;
		w *= f;
	}
	double sw = eng__sw(j, p);
	l *= sw;
	w *= sw;
	if (j->per_position)
		j->per_position[p] = l;
	eng__part_add(pt, j->conf_n, tcls, pcls, l, w);
}

/* ---- the task ---------------------------------------------------------------------------- */

void eng__xent_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	eng__loss_part *pt = &j->parts[t];
	int64_t p0, p1, C = j->C, inner = j->inner;
	bool fast = o->kind == ENG_LOSS_SPARSE_CE && o->from_logits && j->yp->dtype == ENG_F32 &&
	            o->label_smoothing == 0 && C > 0;
	scratch s = {0};
#ifdef LOSSD_HOT_V4
	bool v4 = __builtin_cpu_supports("x86-64-v4");
#endif

	eng__task_range(j, t, &p0, &p1);
	if (p0 >= p1)
		return;
	for (int64_t p = p0; p < p1;) {
		int64_t pi = p % inner, base = (p / inner) * C * inner + pi;

		/* a whole tile of positions within one outer index: vectorized */
		if (fast && inner > 1 && pi + TILE <= inner && p + TILE <= p1) {
			const float *x = (const float *)j->yp->data + base;
			float m[TILE], sx[TILE];
			double ones[TILE], rest[TILE];
			int64_t am[TILE], lab[TILE];
			bool ok = true;
			for (int k = 0; k < TILE; k++)
				if (sparse_label(pt, j, p + k, &lab[k]))
					goto out;
			tile_f32(x, C, inner, m, sx, ones, rest, am);
			for (int k = 0; k < TILE; k++)
				ok = ok && isfinite(m[k]) && isfinite(sx[k]) && isfinite(rest[k]);
			for (int k = 0; k < TILE; k++) {
				if (lab[k] < 0) {
					pt->ignored++;
					if (j->per_position)
						j->per_position[p + k] = 0;
				} else if (ok) {
					sparse_fast_add(pt, j, p + k, lab[k], m[k],
					                x[lab[k] * inner + k], ones[k], rest[k],
					                am[k]);
				} else if (scratch_get(&s, pt, j) ||
				           position(pt, j, &s, p + k, base + k, lab[k])) {
					goto out;
				}
			}
			p += TILE;
			continue;
		}

		int64_t tcls = -2;
		if (o->kind == ENG_LOSS_SPARSE_CE && sparse_label(pt, j, p, &tcls))
			break;
		if (fast && inner == 1 && tcls >= 0) {
			const float *x = (const float *)j->yp->data + base;
			float m, sx;
			double ones, rest;
			int64_t pcls;
#ifdef LOSSD_HOT_V4
			if (v4)
				row_f32_v4(x, C, &m, &sx, &ones, &rest, &pcls);
			else
#endif
				row_f32(x, C, &m, &sx, &ones, &rest, &pcls);
			if (isfinite(m) && isfinite(sx) && isfinite(rest)) {
				sparse_fast_add(pt, j, p, tcls, m, x[tcls], ones, rest, pcls);
				p++;
				continue;
			}
		}
		if (scratch_get(&s, pt, j) || position(pt, j, &s, p, base, tcls))
			break;
		p++;
	}
out:
	free(s.q);
}
