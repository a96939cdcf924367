/*
 * gmm.c - the gaussian_mixture loss: row n of y_pred holds K triples
 * (a_k, b_k, c_k) of a sum of Gaussians
 *     f(x) = sum_k a_k exp(-(x - b_k)^2 / (2 c_k))
 * evaluated on the grid x (Z points, default numpy.linspace(0, 1, Z)) and
 * compared with row n of y_true by the mean absolute or squared error over
 * the grid. Each row is a position (eng__gmm_task, run by loss.c).
 *
 * c_k is a variance and must be > 0: c_k <= 0 is ENG_EPROB (a prediction
 * out of range, 422 prediction_out_of_range) at its flat index in y_pred.
 */
#include "loss_priv.h"

#include <math.h>

void eng__gmm_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	eng__loss_part *pt = &j->parts[t];
	bool check = !o->propagate_nan;
	int64_t Z = j->C, K = j->K, p0, p1;

	eng__task_range(j, t, &p0, &p1);
	for (int64_t n = p0; n < p1; n++) {
		for (int64_t i = 0; i < 3 * K; i++) {
			double v = eng_tensor_at(j->yp, n * 3 * K + i);
			if (check && !isfinite(v)) {
				eng__part_fail(pt, ENG_ENONFINITE, "y_pred", n * 3 * K + i,
				               "y_pred[%lld] is not finite",
				               (long long)(n * 3 * K + i));
				return;
			}
			if (i % 3 == 2 && v <= 0) {
				eng__part_fail(pt, ENG_EPROB, "y_pred", n * 3 * K + i,
				               "y_pred[%lld] is %g: the width c_%lld of row %lld "
				               "must be > 0",
				               (long long)(n * 3 * K + i), v, (long long)(i / 3),
				               (long long)n);
				return;
			}
		}
		double acc = 0;
		for (int64_t z = 0; z < Z; z++) {
			double y = eng_tensor_at(j->yt, n * Z + z);
			if (check && !isfinite(y)) {
				eng__part_fail(pt, ENG_ENONFINITE, "y_true", n * Z + z,
				               "y_true[%lld] is not finite",
				               (long long)(n * Z + z));
				return;
			}
			double f = 0, xz = j->x[z];
			for (int64_t k = 0; k < K; k++) {
				double a = eng_tensor_at(j->yp, n * 3 * K + 3 * k);
				double b = eng_tensor_at(j->yp, n * 3 * K + 3 * k + 1);
				double c = eng_tensor_at(j->yp, n * 3 * K + 3 * k + 2);
				f += a * exp(-(xz - b) * (xz - b) / (2 * c));
			}
			double e = y - f;
			acc += o->gmm_error == ENG_GMM_MSE ? e * e : fabs(e);
		}
		double w = eng__sw(j, n);
		double l = acc / (double)Z * w;
		if (j->per_position)
			j->per_position[n] = l;
		pt->wl += l;
		pt->w += w;
		pt->count++;
	}
}
