/*
 * binary.c - binary cross-entropy and binary focal cross-entropy: every
 * element is a position, one task function over a range of elements
 * (eng__binary_task, run by loss.c).
 *
 * Per element, with y the target (Keras label smoothing: y(1-e) + e/2),
 * w+ the pos_weight:
 *   l = -[w+ y log p + (1 - y) log(1 - p)]
 * where from logits log p = -softplus(-x) and log(1 - p) = -softplus(x),
 * softplus(z) = max(z, 0) + log1p(exp(-|z|)) (one log1p/exp serves both),
 * finite for any finite logit; from probabilities p is clipped to
 * [1e-7, 1 - 1e-7] first. The focal loss (Keras) takes p = clip(sigmoid(x))
 * even from logits, multiplies by (1 - p_t)^gamma with
 * p_t = y p + (1 - y)(1 - p), and with apply_class_balancing by
 * y alpha + (1 - y)(1 - alpha).
 *
 * The per-class table is by column (the last axis): support = positives
 * (raw y > 0.5), predicted = p > 0.5 (logit > 0), correct = both; the
 * top-level `correct` counts elements where the two thresholds agree. A
 * prediction of exactly 0.5 (logit 0, either sign of zero) is negative, as
 * in Keras' binary_accuracy and TorchMetrics.
 * Elements whose target equals ignore_class are skipped (a mask).
 *
 * Elements are processed in blocks of BLOCK: the inputs are widened into
 * double scratch by one typed loop each, so no per-element dtype switch or
 * division (column, sample-weight index) sits in the inner loop. The
 * common case - binary CE from float32 logits and float32 targets, no
 * label smoothing, no ignore_class - goes on CPUs with AVX-512 (chosen at
 * run time) to bce_block_v4 instead, which reads the floats directly (no
 * widening), takes pos_weight laid out per element once per task, and,
 * when the column count divides 16, keeps the per-column table in vector
 * lanes. A block with a non-finite logit or a target outside [0, 1] is
 * redone element by element, which reports or propagates the problem.
 */
#include "loss_priv.h"
#include "vecf.h"

#include <math.h>
#include <string.h>

#define BLOCK 256

/*
 * sp[i] = log1p(exp(-|x[i]|)) for float32 logits, eight lanes at a time
 * (relative error ~2e-7, the float exp and log1p of vecf.h). Returns false
 * when some x is NaN or Inf (the caller then takes the scalar path, which
 * reports or propagates it).
 */
HOT_CLONES
static bool softplus_tail_f32(const float *x, int64_t n, double *sp)
{
	v8f fin = VSPLAT(0.0f);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		v8f v, e;
		memcpy(&v, x + i, sizeof(v));
		fin += v * 0.0f;                        /* NaN for NaN or Inf */
		e = (v8f)((v8i)v | (v8i)VSPLAT(-0.0f)); /* -|x| */
		exp_neg(&e);
		log1p_unit(&e);
		for (int k = 0; k < 8; k++)
			sp[i + k] = (double)e[k];
	}
	for (; i < n; i++) {
		fin[0] += x[i] * 0.0f;
		sp[i] = log1p(exp(-fabs((double)x[i])));
	}
	float f = 0;
	for (int k = 0; k < 8; k++)
		f += fin[k];
	return f == 0;
}

/*
 * The common block: binary CE from logits, targets in [0, 1], finite,
 * nothing ignored. lb[i] = w (pw y softplus(-x) + (1 - y) softplus(x)),
 * with softplus(+-x) = max(+-x, 0) + sp; adds sum lb, sum w and the number
 * of elements whose thresholds agree to *sl, *sw, *nc. Four double lanes.
 */
HOT_CLONES
static void bce_block(const double *x, const double *y, const double *w, const double *pw,
                      const double *sp, int64_t n, double *lb, double *sl, double *sw, int64_t *nc)
{
	v4d al = {0, 0, 0, 0}, aw = al, zero = al;
	v4l cc = {0, 0, 0, 0};
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v4d vx, vy, vw, vp, vs;
		memcpy(&vx, x + i, sizeof(vx));
		memcpy(&vy, y + i, sizeof(vy));
		memcpy(&vw, w + i, sizeof(vw));
		memcpy(&vp, pw + i, sizeof(vp));
		memcpy(&vs, sp + i, sizeof(vs));
		v4d pos = VSEL4(vx > zero, vx, zero), neg = VSEL4(vx < zero, -vx, zero);
		v4d l = vw * (vp * vy * (neg + vs) + (1.0 - vy) * (pos + vs));
		memcpy(lb + i, &l, sizeof(l));
		al += l;
		aw += vw;
		cc -= ~((vy > 0.5) ^ (vx > zero));
	}
	double l_ = (al[0] + al[1]) + (al[2] + al[3]), w_ = (aw[0] + aw[1]) + (aw[2] + aw[3]);
	int64_t c_ = cc[0] + cc[1] + cc[2] + cc[3];
	for (; i < n; i++) {
		double v = x[i];
		lb[i] = w[i] * (pw[i] * y[i] * ((v < 0 ? -v : 0) + sp[i]) +
		                (1 - y[i]) * ((v > 0 ? v : 0) + sp[i]));
		l_ += lb[i];
		w_ += w[i];
		c_ += (y[i] > 0.5) == (v > 0);
	}
	*sl += l_;
	*sw += w_;
	*nc += c_;
}

#ifdef LOSSD_HOT_V4
#include <immintrin.h>

/*
 * bce_block on AVX-512 (x86-64-v4), straight from float32 x and y, 16
 * elements a step: sp = log1p(exp(-|x|)) in float lanes (the exp of
 * xent.c's row kernels, vrndscaleps + vscalefps, and vecf.h's log1p_unit
 * series), the loss itself in double lanes. pw and w are per element (NULL
 * = 1); lb (NULL = not wanted) gets the losses. Adds to *sl, *sw, *nc and
 * returns true, or returns false having added nothing when some x is NaN
 * or +-Inf or some y is not in [0, 1]: the caller then takes the block
 * element by element, which reports or propagates the problem.
 */
/* Per-lane partial per-column table of bce_block_v4 when the column count
 * divides 16 (lane i is always the same column), folded into the task's
 * table at its end; the 2 x 2 confusion counts too. */
typedef struct bce_lanes {
	int64_t sup[16], pred[16], corr[16];
	double ws[16], ls[16];
	int64_t conf[4];
} bce_lanes;

__attribute__((target("arch=x86-64-v4"))) static bool
bce_block_v4(const float *x, const float *y, const double *pw, const double *w, int64_t n,
             double *lb, double *sl, double *sw, int64_t *nc, bce_lanes *cols)
{
	const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f),
	             half = _mm512_set1_ps(0.5f), two = _mm512_set1_ps(2.0f),
	             sign = _mm512_set1_ps(-0.0f), floor_ = _mm512_set1_ps(-104.0f),
	             log2e = _mm512_set1_ps(1.44269504088896341f),
	             ln2hi = _mm512_set1_ps(0.693359375f), ln2lo = _mm512_set1_ps(-2.12194440e-4f),
	             p6 = _mm512_set1_ps(1.9875691500e-4f), p5 = _mm512_set1_ps(1.3981999507e-3f),
	             p4 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f),
	             p2 = _mm512_set1_ps(1.6666665459e-1f), p1 = _mm512_set1_ps(5.0000001201e-1f);
	const __m512d zd = _mm512_setzero_pd(), oned = _mm512_set1_pd(1.0);
	const __m512i one_i = _mm512_set1_epi32(1);
	__m512d al = zd, al2 = zd, aw = zd, cw0 = zd, cw1 = zd, cl0 = zd, cl1 = zd;
	__m512i csup = _mm512_setzero_si512(), cpred = csup, ccorr = csup;
	__mmask16 bad = 0;
	int64_t agree = 0, tp = 0, fn = 0, fp = 0;
	for (int64_t i = 0; i < n; i += 16) {
		__mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
		__m512 vx = _mm512_maskz_loadu_ps(k, x + i), vy = _mm512_maskz_loadu_ps(k, y + i);
		bad |= _mm512_mask_fpclass_ps_mask(k, vx, 0x99);          /* NaN, +-Inf */
		bad |= _mm512_mask_cmp_ps_mask(k, vy, zero, _CMP_NGE_UQ); /* < 0 or NaN */
		bad |= _mm512_mask_cmp_ps_mask(k, vy, one, _CMP_GT_OQ);
		__mmask16 ypos = _mm512_cmp_ps_mask(vy, half, _CMP_GT_OQ);
		__mmask16 xpos = _mm512_cmp_ps_mask(vx, zero, _CMP_GT_OQ);
		agree += __builtin_popcount((unsigned)(k & ~(ypos ^ xpos)));
		if (cols) {
			__mmask16 both = k & ypos & xpos;
			csup = _mm512_mask_add_epi32(csup, k & ypos, csup, one_i);
			cpred = _mm512_mask_add_epi32(cpred, k & xpos, cpred, one_i);
			ccorr = _mm512_mask_add_epi32(ccorr, both, ccorr, one_i);
			tp += __builtin_popcount(both);
			fn += __builtin_popcount((unsigned)(k & ypos & ~xpos));
			fp += __builtin_popcount((unsigned)(k & ~ypos & xpos));
		}

		/* e = exp(-|x|), then sp = log1p(e) = 2 atanh(e / (2 + e)) */
		__m512 t = _mm512_max_ps(_mm512_or_ps(vx, sign), floor_), e;
		__m512 n_ = _mm512_roundscale_ps(_mm512_mul_ps(t, log2e),
		                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		__m512 r_ = _mm512_fnmadd_ps(n_, ln2hi, t);
		r_ = _mm512_fnmadd_ps(n_, ln2lo, r_);
		__m512 q = _mm512_fmadd_ps(p6, r_, p5);
		q = _mm512_fmadd_ps(q, r_, p4);
		q = _mm512_fmadd_ps(q, r_, p3);
		q = _mm512_fmadd_ps(q, r_, p2);
		q = _mm512_fmadd_ps(q, r_, p1);
		q = _mm512_fmadd_ps(q, _mm512_mul_ps(r_, r_), r_);
		e = _mm512_scalef_ps(_mm512_add_ps(q, one), n_);
		__m512 u = _mm512_div_ps(e, _mm512_add_ps(e, two)), u2 = _mm512_mul_ps(u, u);
		__m512 sr = _mm512_set1_ps(1.0f / 15);
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 13));
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 11));
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 9));
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 7));
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 5));
		sr = _mm512_fmadd_ps(sr, u2, _mm512_set1_ps(1.0f / 3));
		sr = _mm512_fmadd_ps(sr, u2, one);
		__m512 sp = _mm512_mul_ps(_mm512_add_ps(u, u), sr);

		/* l = pw y (max(-x, 0) + sp) + (1 - y)(max(x, 0) + sp), in double */
		for (int h = 0; h < 2; h++) {
			__mmask8 kh = (__mmask8)(k >> (8 * h));
			__m512d xd, yd, sd;
			if (h == 0) {
				xd = _mm512_cvtps_pd(_mm512_castps512_ps256(vx));
				yd = _mm512_cvtps_pd(_mm512_castps512_ps256(vy));
				sd = _mm512_cvtps_pd(_mm512_castps512_ps256(sp));
			} else {
				xd = _mm512_cvtps_pd(_mm512_extractf32x8_ps(vx, 1));
				yd = _mm512_cvtps_pd(_mm512_extractf32x8_ps(vy, 1));
				sd = _mm512_cvtps_pd(_mm512_extractf32x8_ps(sp, 1));
			}
			__m512d pos = _mm512_max_pd(xd, zd), neg = _mm512_sub_pd(pos, xd);
			__m512d a = _mm512_mul_pd(yd, _mm512_add_pd(neg, sd));
			if (pw)
				a = _mm512_mul_pd(a, _mm512_maskz_loadu_pd(kh, pw + i + 8 * h));
			__m512d l =
			        _mm512_fmadd_pd(_mm512_sub_pd(oned, yd), _mm512_add_pd(pos, sd), a);
			__m512d wd = _mm512_maskz_mov_pd(kh, oned);
			if (w) {
				wd = _mm512_maskz_loadu_pd(kh, w + i + 8 * h);
				l = _mm512_mul_pd(l, wd);
				aw = _mm512_add_pd(aw, wd);
			}
			l = _mm512_maskz_mov_pd(kh, l);
			if (h == 0)
				al = _mm512_add_pd(al, l);
			else
				al2 = _mm512_add_pd(al2, l);
			if (cols && h == 0) {
				cw0 = _mm512_add_pd(cw0, wd);
				cl0 = _mm512_add_pd(cl0, l);
			} else if (cols) {
				cw1 = _mm512_add_pd(cw1, wd);
				cl1 = _mm512_add_pd(cl1, l);
			}
			if (lb)
				_mm512_mask_storeu_pd(lb + i + 8 * h, kh, l);
		}
	}
	if (bad)
		return false;
	*sl += _mm512_reduce_add_pd(_mm512_add_pd(al, al2));
	*sw += w ? _mm512_reduce_add_pd(aw) : (double)n;
	*nc += agree;
	if (cols) {
		int32_t a[16], b[16], c[16];
		double wv[16], lv[16];
		_mm512_storeu_si512(a, csup);
		_mm512_storeu_si512(b, cpred);
		_mm512_storeu_si512(c, ccorr);
		_mm512_storeu_pd(wv, cw0);
		_mm512_storeu_pd(wv + 8, cw1);
		_mm512_storeu_pd(lv, cl0);
		_mm512_storeu_pd(lv + 8, cl1);
		for (int i = 0; i < 16; i++) {
			cols->sup[i] += a[i];
			cols->pred[i] += b[i];
			cols->corr[i] += c[i];
			cols->ws[i] += wv[i];
			cols->ls[i] += lv[i];
		}
		cols->conf[3] += tp;
		cols->conf[2] += fn;
		cols->conf[1] += fp;
		cols->conf[0] += n - tp - fn - fp;
	}
	return true;
}
#endif

static inline double clip(double v)
{
	return v < ENG__EPS ? ENG__EPS : (v > 1 - ENG__EPS ? 1 - ENG__EPS : v);
}

/* Validates one element; 0 or the code recorded in pt. */
static int check(eng__loss_part *pt, const eng_loss_opts *o, int64_t p, double y, double x)
{
	if (!o->propagate_nan && !isfinite(y))
		return eng__part_fail(pt, ENG_ENONFINITE, "y_true", p, "y_true[%lld] is not finite",
		                      (long long)p);
	if (!o->propagate_nan && !isfinite(x))
		return eng__part_fail(pt, ENG_ENONFINITE, "y_pred", p, "y_pred[%lld] is not finite",
		                      (long long)p);
	if (y < 0 || y > 1)
		return eng__part_fail(pt, ENG_ELABEL, "y_true", p,
		                      "y_true[%lld] is %g; binary targets must be in [0, 1]",
		                      (long long)p, y);
	if (!o->from_logits && (x < 0 || x > 1))
		return eng__part_fail(pt, ENG_EPROB, "y_pred", p,
		                      "y_pred[%lld] is %g; probabilities must be in [0, 1]",
		                      (long long)p, x);
	return 0;
}

void eng__binary_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	eng__loss_part *pt = &j->parts[t];
	bool focal = o->kind == ENG_LOSS_BINARY_FOCAL;
	double ls = o->label_smoothing;
	double yb[BLOCK], xb[BLOCK], wb[BLOCK], spb[BLOCK], pwb[BLOCK], lb[BLOCK];
	bool fast = o->from_logits && !focal && j->yp->dtype == ENG_F32;
	bool whole = fast && ls == 0 && !o->has_ignore_class;
	double wl = 0, ws = 0; /* the sums live in registers, not in *pt */
	int64_t count = 0, correct = 0;
	int64_t p0, p1;

	eng__task_range(j, t, &p0, &p1);
	for (int64_t i = 0; !j->pw && i < BLOCK; i++)
		pwb[i] = 1.0;
	int64_t col = p0 % j->C;
	int64_t pwi = j->pw ? p0 % j->pw_period : 0;
#ifdef LOSSD_HOT_V4
	/* float32 targets too: the AVX-512 block, pos_weight laid out per
	 * element once when BLOCK is a multiple of its period */
	bool v4 = whole && j->yt->dtype == ENG_F32 && __builtin_cpu_supports("x86-64-v4");
	bool pw_once = j->pw && BLOCK % j->pw_period == 0;
	double pwv[BLOCK];
	for (int64_t i = 0; v4 && pw_once && i < BLOCK; i++)
		pwv[i] = j->pw[(pwi + i) % j->pw_period];
	/* per-lane tables when lane i of every step is one column */
	bce_lanes lanes_store, *lanes = NULL;
	if (v4 && (pt->cls || pt->conf) && 16 % j->C == 0) {
		memset(&lanes_store, 0, sizeof(lanes_store));
		lanes = &lanes_store;
	}
	int64_t col0 = col;
#endif
	for (int64_t b0 = p0; b0 < p1; b0 += BLOCK) {
		int64_t n = p1 - b0 < BLOCK ? p1 - b0 : BLOCK;
#ifdef LOSSD_HOT_V4
		if (v4) {
			const float *xf = (const float *)j->yp->data + b0;
			const float *yf = (const float *)j->yt->data + b0;
			bool keep = j->per_position || (pt->cls && !lanes);
			if (j->sw)
				eng__load_sw(wb, j, b0, n);
			for (int64_t i = 0, q = pwi; j->pw && !pw_once && i < n; i++) {
				pwv[i] = j->pw[q];
				if (++q == j->pw_period)
					q = 0;
			}
			if (bce_block_v4(xf, yf, j->pw ? pwv : NULL, j->sw ? wb : NULL, n,
			                 keep ? lb : NULL, &wl, &ws, &correct, lanes)) {
				count += n;
				if (j->per_position)
					memcpy(j->per_position + b0, lb,
					       (size_t)n * sizeof(double));
				for (int64_t i = 0; !lanes && (pt->cls || pt->conf) && i < n; i++) {
					bool pos = yf[i] > 0.5f, pred = xf[i] > 0;
					if (pt->cls) {
						eng_loss_class *c = &pt->cls[col];
						c->support += pos;
						c->predicted += pred;
						c->correct += pos && pred;
						c->weight_sum += j->sw ? wb[i] : 1.0;
						c->loss_sum += lb[i];
					}
					if (pt->conf)
						pt->conf[2 * pos + pred]++;
					if (++col == j->C)
						col = 0;
				}
				if (lanes || (!pt->cls && !pt->conf))
					col = (col + n) % j->C;
				if (j->pw)
					pwi = (pwi + n) % j->pw_period;
				continue;
			}
		}
#endif
		eng__load(yb, j->yt, b0, n);
		eng__load(xb, j->yp, b0, n);
		eng__load_sw(wb, j, b0, n);
		bool have_sp = fast && softplus_tail_f32((const float *)j->yp->data + b0, n, spb);
		bool in_range = whole && have_sp;
		int bad = 0;
		for (int64_t i = 0; in_range && i < n; i++)
			bad |= !(yb[i] >= 0 && yb[i] <= 1); /* NaN too */
		if (in_range && !bad) {
			/* the whole block at once, then the per-column table */
			for (int64_t i = 0; j->pw && i < n; i++) {
				pwb[i] = j->pw[pwi];
				if (++pwi == j->pw_period)
					pwi = 0;
			}
			bce_block(xb, yb, wb, pwb, spb, n, lb, &wl, &ws, &correct);
			count += n;
			if (j->per_position)
				memcpy(j->per_position + b0, lb, (size_t)n * sizeof(double));
			for (int64_t i = 0; (pt->cls || pt->conf) && i < n; i++) {
				bool pos = yb[i] > 0.5, pred = xb[i] > 0;
				if (pt->cls) {
					eng_loss_class *c = &pt->cls[col];
					c->support += pos;
					c->predicted += pred;
					c->correct += pos && pred;
					c->weight_sum += wb[i];
					c->loss_sum += lb[i];
				}
				if (pt->conf)
					pt->conf[2 * pos + pred]++;
				if (++col == j->C)
					col = 0;
			}
			if (!pt->cls && !pt->conf)
				col = (col + n) % j->C;
			continue;
		}
		for (int64_t i = 0; i < n; i++) {
			int64_t p = b0 + i, k = col;
			double y = yb[i], x = xb[i];
			double pw = j->pw ? j->pw[pwi] : 1.0;
			if (++col == j->C)
				col = 0;
			if (j->pw && ++pwi == j->pw_period)
				pwi = 0;
			if (o->has_ignore_class && y == (double)o->ignore_class) {
				pt->ignored++;
				if (j->per_position)
					j->per_position[p] = 0;
				continue;
			}
			if (check(pt, o, p, y, x))
				goto out;
			double ys = ls != 0 ? y * (1 - ls) + 0.5 * ls : y;
			double prob = 0, lp, l1p;
			if (o->from_logits && !focal) {
				double sp = have_sp ? spb[i] : log1p(exp(-fabs(x)));
				lp = -((x < 0 ? -x : 0) + sp);
				l1p = -((x > 0 ? x : 0) + sp);
			} else {
				prob = o->from_logits ? clip(1 / (1 + exp(-x))) : clip(x);
				lp = log(prob);
				l1p = log(1 - prob);
			}
			double l = -(pw * ys * lp + (1 - ys) * l1p);
			if (focal) {
				double ptv = ys * prob + (1 - ys) * (1 - prob);
				l *= pow(1 - ptv, o->gamma);
				if (o->apply_class_balancing)
					l *= ys * o->alpha + (1 - ys) * (1 - o->alpha);
			}
			double w = wb[i];
			l *= w;
			if (j->per_position)
				j->per_position[p] = l;

			bool pos = y > 0.5, pred = o->from_logits ? x > 0 : x > 0.5;
			wl += l;
			ws += w;
			count++;
			correct += (pos == pred);
			if (pt->cls) {
				eng_loss_class *c = &pt->cls[k];
				c->support += pos;
				c->predicted += pred;
				c->correct += pos && pred;
				c->weight_sum += w;
				c->loss_sum += l;
			}
			if (pt->conf)
				pt->conf[2 * pos + pred]++;
		}
	}
out:
#ifdef LOSSD_HOT_V4
	for (int i = 0; lanes && i < 16; i++) {
		eng_loss_class *c = pt->cls ? &pt->cls[(col0 + i) % j->C] : NULL;
		if (c) {
			c->support += lanes->sup[i];
			c->predicted += lanes->pred[i];
			c->correct += lanes->corr[i];
			c->weight_sum += lanes->ws[i];
			c->loss_sum += lanes->ls[i];
		}
	}
	for (int i = 0; lanes && pt->conf && i < 4; i++)
		pt->conf[i] += lanes->conf[i];
#endif
	pt->wl += wl;
	pt->w += ws;
	pt->count += count;
	pt->correct += correct;
}
