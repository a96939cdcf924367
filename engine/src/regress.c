/*
 * regress.c - the elementwise regression losses: mean squared error, mean
 * absolute error and Huber, one task function over a range of elements
 * (eng__regress_task, run by loss.c).
 *
 * With d = y_pred - y_true: MSE d^2, MAE |d|, Huber d^2/2 for |d| <= delta
 * and delta |d| - delta^2/2 beyond (Keras, PyTorch HuberLoss). Every element
 * is a position; there are no classes, so no per-class table or accuracy.
 * Inputs are widened block by block (see binary.c).
 */
#include "loss_priv.h"

#include <math.h>

#define BLOCK 256

void eng__regress_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	eng__loss_part *pt = &j->parts[t];
	bool check = !o->propagate_nan;
	double delta = o->delta;
	double yb[BLOCK], xb[BLOCK], wb[BLOCK];
	int64_t p0, p1;

	eng__task_range(j, t, &p0, &p1);
	for (int64_t b0 = p0; b0 < p1; b0 += BLOCK) {
		int64_t n = p1 - b0 < BLOCK ? p1 - b0 : BLOCK;
		eng__load(yb, j->yt, b0, n);
		eng__load(xb, j->yp, b0, n);
		eng__load_sw(wb, j, b0, n);
		for (int64_t i = 0; i < n; i++) {
			int64_t p = b0 + i;
			double y = yb[i], x = xb[i];
			if (check && (!isfinite(y) || !isfinite(x))) {
				bool yn = !isfinite(y);
				eng__part_fail(pt, ENG_ENONFINITE, yn ? "y_true" : "y_pred", p,
				               "%s[%lld] is not finite", yn ? "y_true" : "y_pred",
				               (long long)p);
				return;
			}
			double d = x - y, ad = fabs(d), l;
			switch (o->kind) {
			case ENG_LOSS_MSE: l = d * d; break;
			case ENG_LOSS_MAE: l = ad; break;
			default:
				l = ad <= delta ? 0.5 * d * d : delta * ad - 0.5 * delta * delta;
				break;
			}
			double w = wb[i];
			l *= w;
			if (j->per_position)
				j->per_position[p] = l;
			pt->wl += l;
			pt->w += w;
			pt->count++;
		}
	}
}
