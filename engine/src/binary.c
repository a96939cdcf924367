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
 * (raw y >= 0.5), predicted = p >= 0.5 (logit >= 0), correct = both; the
 * top-level `correct` counts elements where the two thresholds agree.
 * Elements whose target equals ignore_class are skipped (a mask).
 *
 * Elements are processed in blocks of BLOCK: the inputs are widened into
 * double scratch by one typed loop each, so no per-element dtype switch or
 * division (column, sample-weight index) sits in the inner loop.
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

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));
#define VSEL4(m, a, b) ((v4d)(((m) & (v4l)(a)) | (~(m) & (v4l)(b))))

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
		cc -= ~((vy >= 0.5) ^ (vx >= zero));
	}
	double l_ = (al[0] + al[1]) + (al[2] + al[3]), w_ = (aw[0] + aw[1]) + (aw[2] + aw[3]);
	int64_t c_ = cc[0] + cc[1] + cc[2] + cc[3];
	for (; i < n; i++) {
		double v = x[i];
		lb[i] = w[i] * (pw[i] * y[i] * ((v < 0 ? -v : 0) + sp[i]) +
		                (1 - y[i]) * ((v > 0 ? v : 0) + sp[i]));
		l_ += lb[i];
		w_ += w[i];
		c_ += (y[i] >= 0.5) == (v >= 0);
	}
	*sl += l_;
	*sw += w_;
	*nc += c_;
}

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
	for (int64_t b0 = p0; b0 < p1; b0 += BLOCK) {
		int64_t n = p1 - b0 < BLOCK ? p1 - b0 : BLOCK;
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
				bool pos = yb[i] >= 0.5, pred = xb[i] >= 0;
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

			bool pos = y >= 0.5, pred = o->from_logits ? x >= 0 : x >= 0.5;
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
	pt->wl += wl;
	pt->w += ws;
	pt->count += count;
	pt->correct += correct;
}
