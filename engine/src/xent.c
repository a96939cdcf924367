/*
 * xent.c - the categorical family: sparse and categorical cross-entropy,
 * categorical focal cross-entropy and KL divergence, one task function over
 * a range of positions (eng__xent_task, run by loss.c).
 *
 * A position's class row is y_pred[po*C*inner + c*inner + pi] for c < C:
 * contiguous when the class axis is last (inner == 1), strided otherwise.
 * The general path copies the row into a double scratch buffer and computes
 * log-probabilities there exactly as docs/API.md §2 defines them:
 *   logits         log-softmax with the max subtracted
 *   probabilities  divided by the row sum, clipped to [1e-7, 1 - 1e-7] (CE,
 *                  focal); clipped to [1e-7, 1] without dividing (KL)
 * The hot case - sparse CE from float32 logits without label smoothing -
 * skips the copy: one pass for the max, one for the sum of exp(x - max)
 * with a vectorizable float exp (Cephes polynomial, ~1 ulp), the maxima's
 * exp(0) = 1 counted apart so a confident row's loss log1p(rest) keeps its
 * digits. When the class axis is last, rows go a block of RBLK at a time
 * (rows_block): labels read in one typed loop, the row kernel for each row,
 * the logs of the whole block at once in double (log_count_rest, vecf.h:
 * no libm call per row), then the sums. Row kernels: row_f32, vectorized
 * along the row; on CPUs with AVX-512 (x86-64-v4, chosen at run time)
 * row_f32_v4 (16 lanes, masked tails) and, for rows of at most 32 classes,
 * rows_tall_v4 (16 rows transposed in registers, one row per lane, so a
 * short row wastes no lane and needs no shuffle). When the class axis is
 * not last, neighbouring positions go across the lanes (tile_f32, 32 at a
 * time; on AVX-512 tile_f32_v4, up to 128 at a time in a tile of every
 * class that L2 holds, the last tile of a row masked; e.g. (B, V, T) with
 * axis 1), so every load is contiguous either way. The
 * kernels agree with the double path within ~1e-7 relative per row (not
 * bit-identical to each other; one process always picks the same kernel,
 * so results stay identical across thread counts). A row a fast kernel
 * finds non-finite is redone by the general path, which reports it or lets
 * NaN through (nan_policy), in row order.
 *
 * Weights: a sparse position weighs its true class's class_weight (times
 * its sample weight and cost factor); a position with a distribution
 * target (categorical, focal, KL) weighs its sample weight times its cost
 * factor only, with class_weight inside its sum over classes,
 * l = -sum_c w_c y_c log p_c: PyTorch's cross_entropy with probability
 * targets, whose mean divides by the number of positions. An all-zero
 * target row is an ordinary counted position (class 0 by the argmax; its
 * cross-entropy is 0 without smoothing). KL from logits uses the
 * log-softmax unclipped (PyTorch kl_div(log_softmax(x), p)); from
 * probabilities q is clipped to [1e-7, 1] (Keras).
 *
 * With perplexity, top-k or calibration asked for (extra.c) and the
 * row_f32_v4 path taken, rows_block also gathers those figures: the row
 * kernel sums exp(x - max)^2 too (row_f32_v4_sq), the classes above the
 * true one are counted while the row is in L1, and eng__extra_fused_rows
 * takes the rest from the kernel's outputs; the loss itself is unchanged.
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

/*
 * *xp := exp(*xp - m). With exact, the rounding of d = x - m (up to
 * 2^-24 |d|, e.g. 2e-6 for 40 - 7.3) is taken back: TwoSum gives it as err
 * exactly and exp(x - m) = exp(d) (1 + err). Rows of at most 32 classes
 * pay for it (their tiny confident losses are all such terms); longer rows
 * keep ~2^-24 |d| per term.
 */
static inline void exp_sub(v8f *xp, const v8f *mp, bool exact)
{
	v8f x = *xp, m = *mp, d = x - m;
	if (exact) {
		v8f bp = d - x, ap = d - bp;
		v8f err = (x - ap) + ((-m) - bp);
		exp_neg(&d);
		*xp = d + d * err;
		return;
	}
	exp_neg(&d);
	*xp = d;
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
	bool exact = C <= 32;
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
			exp_sub(&v, &vm, exact);
			exp_sub(&u, &vm, exact);
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
	/* the last < 16: eight lanes at a time, lanes past the row padded with
	 * m - 200 (finite, never a max) and masked out */
	const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
	v8f tail = VSPLAT(0.0f);
	for (int64_t c0 = c; c0 < C; c0 += 8) {
		int64_t left = C - c0 < 8 ? C - c0 : 8;
		v8f v = VSPLAT(m - 200.0f);
		memcpy(&v, x + c0, (size_t)left * sizeof(float));
		v8i valid = lane < (int32_t)left;
		v8i top = valid & (v == vm);
		exp_sub(&v, &vm, exact);
		tail += (v8f)(valid & ~top & (v8i)v);
	}
	r += (double)((tail[0] + tail[1]) + (tail[2] + tail[3])) +
	     (double)((tail[4] + tail[5]) + (tail[6] + tail[7]));
	for (; c < C; c++) {
		if (x[c] == m) {
			n1++;
			if (first < 0)
				first = c;
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

/* rest2, when not NULL, gets the sum of exp(x - max)^2 over the same terms
 * as *rest (the maxima, each 1, left out): what the Brier score of
 * calibration (extra.c) needs, one FMA per 16 terms into one chain, whose
 * halves are added in float once a block (16 terms a float lane, ~1e-6 of
 * the sum at worst) before going to double: the squares cost what they
 * must and little more, since the exp already fills the FMA pipes. */
__attribute__((target("arch=x86-64-v4"), always_inline)) static inline void
row_f32_v4_body(const float *x, int64_t C, float *mx_out, float *sx_out, double *cnt, double *rest,
                int64_t *amax, double *rest2)
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
	__m512d racc = _mm512_setzero_pd(), racc2 = racc;
	int64_t n1 = 0, first = -1;
	for (c = 0; c + 32 <= C;) {
		/* two chains per step; 4 steps = 128 terms a block, 8 per lane */
		__m512 acc = zero, acc2 = zero, sq = zero;
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
			if (rest2) {
				sq = _mm512_mask3_fmadd_ps(e, e, sq, (__mmask16)~top);
				sq = _mm512_mask3_fmadd_ps(e2, e2, sq, (__mmask16)~top2);
			}
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
		if (rest2) /* the two halves in float (16 terms a lane), then double */
			racc2 = _mm512_add_pd(racc2, _mm512_cvtps_pd(_mm256_add_ps(
			                                     _mm512_castps512_ps256(sq),
			                                     _mm512_extractf32x8_ps(sq, 1))));
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
		if (rest2) {
			__m512 e2 = _mm512_mul_ps(e, e);
			racc2 = _mm512_add_pd(racc2, _mm512_cvtps_pd(_mm512_castps512_ps256(e2)));
			racc2 = _mm512_add_pd(
			        racc2, _mm512_cvtps_pd(_mm256_castpd_ps(
			                       _mm512_extractf64x4_pd(_mm512_castps_pd(e2), 1))));
		}
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
	if (rest2)
		*rest2 = _mm512_reduce_add_pd(racc2);
}

__attribute__((target("arch=x86-64-v4"))) static void row_f32_v4(const float *x, int64_t C,
                                                                 float *mx_out, float *sx_out,
                                                                 double *cnt, double *rest,
                                                                 int64_t *amax)
{
	row_f32_v4_body(x, C, mx_out, sx_out, cnt, rest, amax, NULL);
}

/* With calibration (extra.c): also the sum of squares into *rest2. */
__attribute__((target("arch=x86-64-v4"))) static void row_f32_v4_sq(const float *x, int64_t C,
                                                                    float *mx_out, float *sx_out,
                                                                    double *cnt, double *rest,
                                                                    int64_t *amax, double *rest2)
{
	row_f32_v4_body(x, C, mx_out, sx_out, cnt, rest, amax, rest2);
}

/* fpclass categories: QNaN, +Inf, -Inf, SNaN */
#define NONFINITE 0x99

/* log_count_rest (vecf.h) on 8 lanes, with vgetexppd / vgetmantpd for the
 * exponent and mantissa: log(n + r), n >= 1 whole, r >= 0. */
__attribute__((target("arch=x86-64-v4"), always_inline)) static inline __m512d
log_count_rest8(__m512d n, __m512d r)
{
	const __m512d one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5);
	__m512d u = _mm512_add_pd(n, r);
	__m512d m = _mm512_getmant_pd(u, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero); /* [1, 2) */
	__m512d e = _mm512_getexp_pd(u);
	__mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
	m = _mm512_mask_mul_pd(m, big, m, half);
	e = _mm512_mask_add_pd(e, big, e, one);
	__mmask8 e0 = _mm512_cmp_pd_mask(e, _mm512_setzero_pd(), _CMP_EQ_OQ);
	__m512d f = _mm512_mask_add_pd(_mm512_sub_pd(m, one), e0, _mm512_sub_pd(n, one), r);
	__m512d s = _mm512_div_pd(f, _mm512_add_pd(f, _mm512_set1_pd(2.0)));
	__m512d z = _mm512_mul_pd(s, s);
	__m512d q = _mm512_set1_pd(1.0 / 21);
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 19));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 17));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 15));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 13));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 11));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 9));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 7));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 5));
	q = _mm512_fmadd_pd(q, z, _mm512_set1_pd(1.0 / 3));
	q = _mm512_mul_pd(q, z);
	__m512d s2 = _mm512_add_pd(s, s);
	__m512d lo = _mm512_fmadd_pd(e, _mm512_set1_pd(1.90821492927058770002e-10),
	                             _mm512_fmadd_pd(s2, q, s2));
	return _mm512_fmadd_pd(e, _mm512_set1_pd(6.93147180369123816490e-01), lo);
}

/* In place: the 16 x 16 floats r[i][j] -> r[j][i] (64 shuffles). */
__attribute__((target("arch=x86-64-v4"), always_inline)) static inline void transpose16(__m512 *r)
{
	__m512 t[16];
	for (int i = 0; i < 8; i++) {
		t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
	}
	for (int i = 0; i < 4; i++) {
		__m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
		__m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
		r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
		r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
		r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
		r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
	}
	for (int h = 0; h < 2; h++) {
		for (int i = 0; i < 4; i++) {
			t[8 * h + i] = _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0x88);
			t[8 * h + 4 + i] =
			        _mm512_shuffle_f32x4(r[8 * h + i], r[8 * h + 4 + i], 0xdd);
		}
	}
	for (int i = 0; i < 8; i++) {
		r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
		r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
	}
}

/*
 * Short rows (C <= 32) on AVX-512: for the n rows at x with labels lab
 * (-1 = ignored; such lanes compute garbage nobody reads), the unweighted
 * loss lo = (max - x[label]) + log sum exp(x - max) in double, the first
 * argmax, and bad = some element is NaN or +-Inf (an exact test), or x - max
 * overflows. 16 rows at a time, one row per lane: the rows are loaded as
 * they lie (one masked load each, two when C > 16; lanes past a row read as
 * 0 and fault nothing) and transposed in registers, so column c of the 16
 * rows is one vector; max, exp, the sums (pairs of float terms, then
 * double), the count of maxima (exp(0) = 1 each, kept out of the rest as in
 * row_f32), the first argmax (the least column among the maxima), the
 * label's logit and the log (log_count_rest8) are then lane-wise: no
 * shuffle per row, no lane spent on row ends, no libm call.
 */
__attribute__((target("arch=x86-64-v4"))) static void rows_tall_v4(const float *x, int64_t C,
                                                                   int64_t n, const int64_t *lab,
                                                                   double *lo, int64_t *amax,
                                                                   unsigned char *bad)
{
	const __m512 floor_ = _mm512_set1_ps(-104.0f), log2e = _mm512_set1_ps(1.44269504088896341f),
	             ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f),
	             p6 = _mm512_set1_ps(1.9875691500e-4f), p5 = _mm512_set1_ps(1.3981999507e-3f),
	             p4 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f),
	             p2 = _mm512_set1_ps(1.6666665459e-1f), p1 = _mm512_set1_ps(5.0000001201e-1f),
	             one = _mm512_set1_ps(1.0f);
	const __m512i one_i = _mm512_set1_epi32(1);
	__mmask16 k0 = (__mmask16)((1u << (C < 16 ? C : 16)) - 1);
	__mmask16 k1 = (__mmask16)(C > 16 ? (1u << (C - 16)) - 1 : 0);
	__m512 col[32];
	for (int64_t r0 = 0; r0 < n; r0 += 16, x += 16 * C) {
		int64_t nr = n - r0 < 16 ? n - r0 : 16;
		__mmask16 rk = (__mmask16)((1u << nr) - 1);
		if (nr == 16) {
			for (int r = 0; r < 16; r++)
				col[r] = _mm512_maskz_loadu_ps(k0, x + r * C);
		} else {
			for (int r = 0; r < 16; r++)
				col[r] = _mm512_maskz_loadu_ps(r < nr ? k0 : 0, x + r * C);
		}
		transpose16(col);
		if (C > 16) {
			for (int r = 0; r < 16; r++)
				col[16 + r] =
				        _mm512_maskz_loadu_ps(r < nr ? k1 : 0, x + r * C + 16);
			transpose16(col + 16);
		}
		__mmask16 nf = 0;
		__m512 mx = col[0];
		for (int64_t c = 0; c < C; c++) {
			nf |= _mm512_fpclass_ps_mask(col[c], NONFINITE);
			mx = _mm512_max_ps(mx, col[c]);
		}
		__m512d s0 = _mm512_setzero_pd(), s1 = s0;
		__m512i nt = _mm512_setzero_si512(), first = _mm512_set1_epi32(32), ci = nt;
		__m512 pair = _mm512_setzero_ps(), xt = pair, nmx = _mm512_sub_ps(pair, mx);
		__m512i lv = _mm512_inserti64x4(
		        _mm512_castsi256_si512(_mm512_cvtepi64_epi32(
		                _mm512_maskz_loadu_epi64((__mmask8)rk, lab + r0))),
		        _mm512_cvtepi64_epi32(
		                _mm512_maskz_loadu_epi64((__mmask8)(rk >> 8), lab + r0 + 8)),
		        1);
		for (int64_t c = 0; c < C; c++, ci = _mm512_add_epi32(ci, one_i)) {
			__m512 v = col[c], e;
			__mmask16 top = _mm512_cmp_ps_mask(v, mx, _CMP_EQ_OQ);
			xt = _mm512_mask_mov_ps(xt, _mm512_cmpeq_epi32_mask(ci, lv), v);
			/* d = x - max rounds when x is far below max (x = 7.5,
			 * max = 40: by up to 2e-6 absolute, so 2e-6 relative in
			 * exp(d)); TwoSum gives the rounding error err exactly and
			 * exp(x - max) = exp(d) (1 + err). A d that overflows to
			 * -Inf (|x| > 1.7e38) sends the row to the general path. */
			__m512 d = _mm512_sub_ps(v, mx);
			__m512 bp = _mm512_sub_ps(d, v), ap = _mm512_sub_ps(d, bp);
			__m512 err = _mm512_add_ps(_mm512_sub_ps(v, ap), _mm512_sub_ps(nmx, bp));
			nf |= _mm512_fpclass_ps_mask(d, 0x10);
			d = _mm512_max_ps(d, floor_);
			EXP16(d, e);
			e = _mm512_fmadd_ps(e, err, e);
			/* two terms per float add, then into the double sums */
			pair = _mm512_mask_add_ps(pair, (__mmask16)~top, pair, e);
			if ((c & 1) || c == C - 1) {
				s0 = _mm512_add_pd(s0,
				                   _mm512_cvtps_pd(_mm512_castps512_ps256(pair)));
				s1 = _mm512_add_pd(
				        s1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(pair, 1)));
				pair = _mm512_setzero_ps();
			}
			nt = _mm512_mask_add_epi32(nt, top, nt, one_i);
			first = _mm512_mask_min_epu32(first, top, first, ci);
		}
		first = _mm512_min_epu32(first, _mm512_set1_epi32((int32_t)C - 1));
		/* loss = (max - x[label]) + lse, in double */
		__m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(mx)),
		                           _mm512_cvtps_pd(_mm512_castps512_ps256(xt)));
		__m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(mx, 1)),
		                           _mm512_cvtps_pd(_mm512_extractf32x8_ps(xt, 1)));
		s0 = log_count_rest8(_mm512_cvtepi32_pd(_mm512_castsi512_si256(nt)), s0);
		s1 = log_count_rest8(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(nt, 1)), s1);
		_mm512_storeu_pd(lo + r0, _mm512_add_pd(d0, s0));
		_mm512_storeu_pd(lo + r0 + 8, _mm512_add_pd(d1, s1));
		_mm512_storeu_si512(amax + r0,
		                    _mm512_cvtepi32_epi64(_mm512_castsi512_si256(first)));
		_mm512_storeu_si512(amax + r0 + 8,
		                    _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(first, 1)));
		for (int64_t r = 0; r < nr; r++)
			bad[r0 + r] = (nf >> r) & 1;
	}
}
/*
 * The strided tile kernel (class axis not last) on AVX-512: tile_f32's
 * outputs for nw (1..TILE4) consecutive positions of one outer index,
 * whose class c values sit contiguously at x[c * inner + k], 16 positions
 * a vector (the last one masked, so a tile may be cut short at the end of
 * a row of positions or of a task: no position falls back to the general
 * path for being an odd one). The tile is cache-sized: TILE4 * 4 = 512
 * bytes (eight cache lines) of each of the C class rows, for (B, 1000, T)
 * 512 KB, half of L2. Pass 1 streams it in from memory, every vector of a
 * class row at once (wide contiguous pieces keep the prefetcher ahead of
 * the stride of 4 * T bytes), for the max, the float sum (non-finite
 * detector) and the first argmax (the first class that raised the max: a
 * strict compare, so a later equal class does not move it). Pass 2 re-reads
 * it from L2 two vectors (32 positions) at a time down all C classes, for
 * the count of maxima and the rest of the sum of exp(x - max), eight
 * classes a float lane and then into double lanes, as tile_f32 does.
 */
#define TILE4 128

__attribute__((target("arch=x86-64-v4"), always_inline)) static inline void
tile_f32_v4_body(const float *x, int64_t C, int64_t inner, int nw, const int nv, float *mx_out,
                 float *sx_out, double *cnt, double *rest, int64_t *amax)
{
	const __m512 log2e = _mm512_set1_ps(1.44269504088896341f),
	             ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f),
	             p6 = _mm512_set1_ps(1.9875691500e-4f), p5 = _mm512_set1_ps(1.3981999507e-3f),
	             p4 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f),
	             p2 = _mm512_set1_ps(1.6666665459e-1f), p1 = _mm512_set1_ps(5.0000001201e-1f),
	             one = _mm512_set1_ps(1.0f);
	const __m512i one_i = _mm512_set1_epi32(1);
	__mmask16 km[TILE4 / 16 + 1];
	__m512 mx[TILE4 / 16 + 1], sx[TILE4 / 16];
	__m512i am[TILE4 / 16];
	for (int k = 0; k < nv; k++) {
		int left = nw - 16 * k;
		km[k] = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
		mx[k] = _mm512_set1_ps(-INFINITY);
		sx[k] = _mm512_setzero_ps();
		am[k] = _mm512_setzero_si512();
	}
	km[nv] = 0; /* pass 2's partner of an odd last vector */
	mx[nv] = _mm512_setzero_ps();
	for (int64_t c = 0; c < C; c++) {
		const float *row = x + c * inner;
		__m512i ci = _mm512_set1_epi32((int32_t)c);
		for (int k = 0; k < nv; k++) {
			__m512 v = _mm512_maskz_loadu_ps(km[k], row + 16 * k);
			__mmask16 gt = _mm512_cmp_ps_mask(v, mx[k], _CMP_GT_OQ);
			mx[k] = _mm512_mask_mov_ps(mx[k], gt, v);
			am[k] = _mm512_mask_mov_epi32(am[k], gt, ci);
			sx[k] = _mm512_add_ps(sx[k], v);
		}
	}
	for (int k = 0; k < nv; k += 2) {
		__m512 m0 = mx[k], m1 = mx[k + 1];
		__m512i o0 = _mm512_setzero_si512(), o1 = o0;
		__m512d r00 = _mm512_setzero_pd(), r01 = r00, r10 = r00, r11 = r00;
		for (int64_t c0 = 0; c0 < C; c0 += 8) {
			int64_t c1 = c0 + 8 < C ? c0 + 8 : C;
			__m512 a0 = _mm512_setzero_ps(), a1 = a0;
			for (int64_t c = c0; c < c1; c++) {
				const float *row = x + c * inner + 16 * k;
				__m512 v = _mm512_maskz_loadu_ps(km[k], row), e;
				__m512 u = _mm512_maskz_loadu_ps(km[k + 1], row + 16), f;
				__mmask16 t0 = _mm512_cmp_ps_mask(v, m0, _CMP_EQ_OQ);
				__mmask16 t1 = _mm512_cmp_ps_mask(u, m1, _CMP_EQ_OQ);
				v = _mm512_sub_ps(v, m0);
				u = _mm512_sub_ps(u, m1);
				EXP16(v, e);
				EXP16(u, f);
				a0 = _mm512_mask_add_ps(a0, (__mmask16)~t0, a0, e);
				a1 = _mm512_mask_add_ps(a1, (__mmask16)~t1, a1, f);
				o0 = _mm512_mask_add_epi32(o0, t0, o0, one_i);
				o1 = _mm512_mask_add_epi32(o1, t1, o1, one_i);
			}
			r00 = _mm512_add_pd(r00, _mm512_cvtps_pd(_mm512_castps512_ps256(a0)));
			r01 = _mm512_add_pd(r01, _mm512_cvtps_pd(_mm512_extractf32x8_ps(a0, 1)));
			r10 = _mm512_add_pd(r10, _mm512_cvtps_pd(_mm512_castps512_ps256(a1)));
			r11 = _mm512_add_pd(r11, _mm512_cvtps_pd(_mm512_extractf32x8_ps(a1, 1)));
		}
		int32_t o[32];
		double q[32];
		_mm512_storeu_si512(o, o0);
		_mm512_storeu_si512(o + 16, o1);
		_mm512_storeu_pd(q, r00);
		_mm512_storeu_pd(q + 8, r01);
		_mm512_storeu_pd(q + 16, r10);
		_mm512_storeu_pd(q + 24, r11);
		for (int l = 0; l < 32 && 16 * k + l < nw; l++) {
			cnt[16 * k + l] = (double)o[l];
			rest[16 * k + l] = q[l];
		}
	}
	for (int k = 0; k < nv; k++) {
		float m[16], s[16];
		int32_t a[16];
		_mm512_storeu_ps(m, mx[k]);
		_mm512_storeu_ps(s, sx[k]);
		_mm512_storeu_si512(a, am[k]);
		for (int l = 0; l < 16 && 16 * k + l < nw; l++) {
			mx_out[16 * k + l] = m[l];
			sx_out[16 * k + l] = s[l];
			amax[16 * k + l] = a[l];
		}
	}
}

__attribute__((target("arch=x86-64-v4"))) static void
tile_f32_v4(const float *x, int64_t C, int64_t inner, int nw, float *mx_out, float *sx_out,
            double *cnt, double *rest, int64_t *amax)
{
	/* the vector count a constant in each copy: the tile stays in registers */
#define TILE_V4(NV) tile_f32_v4_body(x, C, inner, nw, NV, mx_out, sx_out, cnt, rest, amax)
	switch ((nw + 15) / 16) {
	case 1: TILE_V4(1); break;
	case 2: TILE_V4(2); break;
	case 3: TILE_V4(3); break;
	case 4: TILE_V4(4); break;
	case 5: TILE_V4(5); break;
	case 6: TILE_V4(6); break;
	case 7: TILE_V4(7); break;
	default: TILE_V4(8); break;
	}
#undef TILE_V4
}

#undef NONFINITE
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
	double ls = log(s); /* (x - m) - log s: m + log s would drop
			     * log s when |m| >> 1 (logits of 1e30) */
	for (int64_t c = 0; c < C; c++)
		v[c] = (v[c] - m) - ls;
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
		if ((rc = read_row(pt, j, j->yt, "y_true", base, d, !o->log_target, ENG_ELABEL)))
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
	if ((rc = read_row(pt, j, j->yp, "y_pred", base, q, !o->from_logits && !o->log_input,
	                   ENG_EPROB)))
		return rc;
	int64_t pcls = argmax_d(q, C);

	/* log-probabilities into q (and probabilities into s->p for focal) */
	if (o->log_input) {
		/* already log q (PyTorch kl_div) */
	} else if (o->from_logits) {
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
		}
		w = 1.0;
		break;
	case ENG_LOSS_CATEGORICAL_FOCAL:
		for (int64_t c = 0; c < C; c++) {
			double wc = cw ? cw[c] : 1.0;
			double y = d[c] * (1 - ls) + ls / (double)C;
			l += o->alpha * pow(1 - s->p[c], o->gamma) * -(y * q[c]) * wc;
		}
		w = 1.0;
		break;
	case ENG_LOSS_KL:
		for (int64_t c = 0; c < C; c++) {
			double wc = cw ? cw[c] : 1.0;
			if (o->log_target) { /* PyTorch: exp(t)·(t − log q) */
				l += exp(d[c]) * (d[c] - q[c]) * wc;
			} else if (o->log_input) { /* PyTorch: xlogy, 0·log 0 = 0 */
				if (d[c] != 0)
					l += d[c] * (log(d[c]) - q[c]) * wc;
			} else {
				double pc = clip(d[c], ENG__EPS, 1);
				l += pc * (log(pc) - q[c]) * wc;
			}
		}
		w = 1.0;
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

#define TILE     32  /* positions per tile of tile_f32: 4 vectors of 8 */
#define TILE_MAX 128 /* the widest tile of either kernel (TILE4) */

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

/* Adds a sparse position computed by a fast kernel: its unweighted loss
 * l0 = (max - x[tcls]) + log sum exp(x - max), argmax pcls. */
static inline void sparse_fast_add(eng__loss_part *pt, const eng__loss_job *j, int64_t p,
                                   int64_t tcls, double l0, int64_t pcls)
{
	double w = j->cw ? j->cw[tcls] : 1.0;
	double l = w * l0;
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

/*
 * lse[i] = log(ones[i] + rest[i]), four at a time (log_count_rest): the
 * per-row log of the fast kernels, batched. Entries must be valid
 * (ones >= 1, rest >= 0 finite); callers put 1 and 0 in unused ones.
 */
HOT_CLONES
static void lse_rows(const double *ones, const double *rest, double *lse, int64_t n)
{
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v4d c, r;
		memcpy(&c, ones + i, sizeof(c));
		memcpy(&r, rest + i, sizeof(r));
		log_count_rest(&r, &c);
		memcpy(lse + i, &r, sizeof(r));
	}
	if (i < n) {
		v4d c = VSPLAT4(1.0), r = VSPLAT4(0.0);
		for (int64_t k = 0; i + k < n; k++) {
			c[k] = ones[i + k];
			r[k] = rest[i + k];
		}
		log_count_rest(&r, &c);
		for (int64_t k = 0; i + k < n; k++)
			lse[i + k] = r[k];
	}
}

/* ---- contiguous rows (class axis last), a block at a time ---------------------------- */

#define RBLK 64 /* rows per block */

/*
 * Labels of positions [p, p + n) into lab (-1 when ignored), read as
 * sparse_label does. Returns false if one is not a valid class id: the
 * caller then takes the block row by row, so the problem is reported
 * exactly where the per-row order meets it.
 */
static bool block_labels(const eng__loss_job *j, int64_t p, int64_t n, int64_t *lab)
{
	const eng_loss_opts *o = j->o;
	int64_t C = j->C;
	bool ok = true;
	if (j->yt->dtype == ENG_I32) {
		const int32_t *y = (const int32_t *)j->yt->data + p;
		for (int64_t k = 0; k < n; k++) {
			int64_t v = y[k];
			bool ign = o->has_ignore_class && v == o->ignore_class;
			ok &= ign || (v >= 0 && v < C);
			lab[k] = ign ? -1 : v;
		}
		return ok;
	}
	for (int64_t k = 0; k < n && ok; k++) {
		double v = eng_tensor_at(j->yt, p + k);
		bool ign = o->has_ignore_class && v == (double)o->ignore_class;
		ok = ign || (v == floor(v) && v >= 0 && v < (double)C);
		lab[k] = ign || !ok ? -1 : (int64_t)v;
	}
	return ok;
}

/*
 * Sparse CE from float32 logits for the n (<= RBLK) contiguous rows of
 * positions p.. with valid labels lab (-1 = ignored): the row kernel
 * (rows_tall_v4 for short rows on AVX-512, else row_f32_v4 / row_f32 per
 * row and the logs of the block at once), then the positions in order; a
 * row with a non-finite logit goes to the general path, which reports it
 * or lets NaN through. Unweighted blocks sum in registers and take such
 * rows afterwards (still in order). Returns 0 or the ENG_E* recorded in pt.
 */
static int rows_block(eng__loss_part *pt, const eng__loss_job *j, scratch *s, int64_t p, int64_t n,
                      const int64_t *lab, bool v4)
{
	int64_t C = j->C;
	const float *x = (const float *)j->yp->data + p * C;
	float m[RBLK];
	double ones[RBLK], rest[RBLK], lse[RBLK], lo[RBLK], rest2[RBLK];
	int64_t am[RBLK], above[RBLK];
	unsigned char bad[RBLK];
	eng__extra_part *xp = pt->xp; /* extra metrics fused into this pass */
	int rc;

	(void)v4;
#ifdef LOSSD_HOT_V4
	if (v4 && C <= 32) {
		rows_tall_v4(x, C, n, lab, lo, am, bad);
	} else
#endif
	{
		for (int64_t k = 0; k < n; k++) {
			float sx = 0;
			ones[k] = 1;
			rest[k] = 0;
			bad[k] = 0;
			if (lab[k] < 0)
				continue;
#ifdef LOSSD_HOT_V4
			if (v4 && xp && j->xo->bins)
				row_f32_v4_sq(x + k * C, C, &m[k], &sx, &ones[k], &rest[k], &am[k],
				              &rest2[k]);
			else if (v4)
				row_f32_v4(x + k * C, C, &m[k], &sx, &ones[k], &rest[k], &am[k]);
			else
#endif
				row_f32(x + k * C, C, &m[k], &sx, &ones[k], &rest[k], &am[k]);
			bad[k] = !(isfinite(m[k]) && isfinite(sx) && isfinite(rest[k]));
			/* top-k, the row still in L1: nothing is above the max, and the
			 * count stops at the largest k */
			if (xp && j->xo->ntop && !bad[k])
				above[k] = x[k * C + lab[k]] >= m[k]
				                   ? 0
				                   : eng__count_above_f32(
				                             x + k * C, C, x[k * C + lab[k]],
				                             j->xo->top_k[j->xo->ntop - 1]);
			if (bad[k]) {
				ones[k] = 1;
				rest[k] = 0;
			}
		}
		/* lse_rows reads the n entries the loop above wrote; gcc -O1
		 * (the sanitizer builds) cannot see that and warns. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
		lse_rows(ones, rest, lse, n);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
		for (int64_t k = 0; k < n; k++)
			lo[k] = lab[k] < 0 ? 0
			                   : ((double)m[k] - (double)x[k * C + lab[k]]) + lse[k];
		if (xp) {
			eng__extra_fused fu = {lab, bad, ones, rest, rest2, am, above, lo, m};
			eng__extra_fused_rows(j, xp, x, p, n, &fu);
		}
	}
	if (!j->cw && !j->cost && !j->sw && !j->per_position) {
		/* unweighted: sums in registers (four chains), the rare
		 * non-finite rows afterwards in order */
		double wl4[4] = {0, 0, 0, 0};
		int64_t nc = 0, ok = 0, ign = 0, nbad = 0;
		eng_loss_class *cls = pt->cls;
		int64_t *conf = pt->conf;
		for (int64_t k = 0; k < n; k++) {
			bool valid = lab[k] >= 0 && !bad[k];
			wl4[k & 3] += valid ? lo[k] : 0.0;
			nc += valid;
			ok += valid && lab[k] == am[k];
			ign += lab[k] < 0;
			nbad += lab[k] >= 0 && bad[k];
			if (valid && cls) {
				eng_loss_class *tc = &cls[lab[k]];
				tc->support++;
				tc->weight_sum += 1.0;
				tc->loss_sum += lo[k];
				tc->correct += lab[k] == am[k];
				cls[am[k]].predicted++;
			}
			if (valid && conf)
				conf[lab[k] * j->conf_n + am[k]]++;
		}
		for (int64_t k = 0; nbad && k < n; k++) {
			if (lab[k] >= 0 && bad[k] &&
			    ((rc = scratch_get(s, pt, j)) ||
			     (rc = position(pt, j, s, p + k, (p + k) * C, lab[k]))))
				return rc;
			if (lab[k] >= 0 && bad[k] && xp && (rc = eng__extra_position(j, xp, p + k)))
				return eng__part_fail(pt, rc, NULL, -1, "out of memory");
		}
		double wl = (wl4[0] + wl4[1]) + (wl4[2] + wl4[3]);
		pt->wl += wl;
		pt->w += (double)nc;
		pt->count += nc;
		pt->correct += ok;
		pt->ignored += ign;
		return 0;
	}
	for (int64_t k = 0; k < n; k++) {
		int64_t q = p + k;
		if (lab[k] < 0) {
			pt->ignored++;
			if (j->per_position)
				j->per_position[q] = 0;
		} else if (bad[k]) {
			if ((rc = scratch_get(s, pt, j)) ||
			    (rc = position(pt, j, s, q, q * C, lab[k])))
				return rc;
			if (xp && (rc = eng__extra_position(j, xp, q)))
				return eng__part_fail(pt, rc, NULL, -1, "out of memory");
		} else {
			sparse_fast_add(pt, j, q, lab[k], lo[k], am[k]);
		}
	}
	return 0;
}

/* ---- the task ---------------------------------------------------------------------------- */

bool eng__xent_fuses_extra(const eng__loss_job *j)
{
	const eng_loss_opts *o = j->o;
#ifdef LOSSD_HOT_V4
	bool v4 = __builtin_cpu_supports("x86-64-v4");
#else
	bool v4 = false;
#endif
	/* rows_block's row_f32_v4 path: every position goes through it */
	return v4 && o->kind == ENG_LOSS_SPARSE_CE && o->from_logits && j->yp->dtype == ENG_F32 &&
	       o->label_smoothing == 0 && j->inner == 1 && j->C > 32;
}

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
#else
	bool v4 = false;
#endif

	eng__task_range(j, t, &p0, &p1);
	if (p0 >= p1)
		return;
	for (int64_t p = p0; p < p1;) {
		int64_t pi = p % inner, base = (p / inner) * C * inner + pi;

		/* a tile of positions within one outer index: vectorized; on
		 * AVX-512 any width up to TILE4 (masked), else whole TILEs */
		int nw = 0;
		if (fast && inner > 1) {
			int64_t left = inner - pi < p1 - p ? inner - pi : p1 - p;
#ifdef LOSSD_HOT_V4
			if (v4)
				nw = (int)(left < TILE4 ? left : TILE4);
			else
#endif
				nw = left >= TILE ? TILE : 0;
		}
		if (nw > 0) {
			const float *x = (const float *)j->yp->data + base;
			float m[TILE_MAX], sx[TILE_MAX];
			double ones[TILE_MAX], rest[TILE_MAX];
			int64_t am[TILE_MAX], lab[TILE_MAX];
			unsigned char bad[TILE_MAX];
			for (int k = 0; k < nw; k++)
				if (sparse_label(pt, j, p + k, &lab[k]))
					goto out;
#ifdef LOSSD_HOT_V4
			if (v4)
				tile_f32_v4(x, C, inner, nw, m, sx, ones, rest, am);
			else
#endif
				tile_f32(x, C, inner, m, sx, ones, rest, am);
			/* a position with a non-finite value (or a false alarm)
			 * goes to the general path alone */
			for (int k = 0; k < nw; k++) {
				bad[k] = !(isfinite(m[k]) && isfinite(sx[k]) && isfinite(rest[k]));
				if (bad[k]) {
					ones[k] = 1;
					rest[k] = 0;
				}
			}
			double lse[TILE_MAX];
			lse_rows(ones, rest, lse, nw);
			for (int k = 0; k < nw; k++) {
				if (lab[k] < 0) {
					pt->ignored++;
					if (j->per_position)
						j->per_position[p + k] = 0;
				} else if (!bad[k]) {
					sparse_fast_add(pt, j, p + k, lab[k],
					                ((double)m[k] - x[lab[k] * inner + k]) +
					                        lse[k],
					                am[k]);
				} else if (scratch_get(&s, pt, j) ||
				           position(pt, j, &s, p + k, base + k, lab[k])) {
					goto out;
				}
			}
			p += nw;
			continue;
		}

		/* contiguous rows: a block at a time */
		if (fast && inner == 1) {
			int64_t n = p1 - p < RBLK ? p1 - p : RBLK, lab[RBLK];
			if (block_labels(j, p, n, lab)) {
				if (rows_block(pt, j, &s, p, n, lab, v4))
					goto out;
				p += n;
				continue;
			}
			/* a bad label in the block: row by row up to it */
			for (int64_t k = 0; k < n; k++)
				if (sparse_label(pt, j, p + k, lab) ||
				    rows_block(pt, j, &s, p + k, 1, lab, v4))
					goto out;
			p += n;
			continue;
		}

		int64_t tcls = -2;
		if (o->kind == ENG_LOSS_SPARSE_CE && sparse_label(pt, j, p, &tcls))
			break;
		if (scratch_get(&s, pt, j) || position(pt, j, &s, p, base, tcls))
			break;
		p++;
	}
out:
	free(s.q);
}
