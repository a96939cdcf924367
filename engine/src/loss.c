/*
 * loss.c - eng_loss_compute(): option and shape validation, weight
 * preparation, the task split, and the reduction of partial sums into an
 * eng_loss_result; plus the result's new/free/merge/value.
 *
 * Why shaped so: the per-loss arithmetic lives in one file per family
 * (xent.c, binary.c, regress.c, gmm.c), each a task function over a range of
 * positions. Everything that is the same for every loss - what a position
 * is, how sample_weight broadcasts, which options apply, how tasks are cut
 * and summed - is here, once.
 *
 * Invariants: task boundaries depend only on shapes and options (never on
 * the thread count) and parts are added in task order, so a result is
 * bit-identical serial or parallel, and also when some tasks ran earlier
 * than the rest: eng_loss_compute is eng_loss_plan_new (checks, weights,
 * the task cut, partial tables), eng_loss_plan_finish (the tasks not run
 * yet, through par, then the reduction) and eng_loss_plan_free, and a
 * caller that has y_pred's first rows before the others runs their tasks
 * with eng_loss_plan_run in between (eng_loss_plan_pred_end: how much of
 * y_pred a prefix of tasks reads). The threads are the caller's. Weights are validated (finite, >= 0)
 * and widened to double before any task runs; y_true and y_pred are read
 * in place by the tasks, which validate them as they go.
 *
 * Deliberately not here: JSON, names of request fields beyond the `field`
 * of an eng_error, rendering of undefined values (the api layer does that).
 */
#include "loss_priv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------ */

const char *const eng_loss_names[ENG_LOSS__COUNT + 1] = {
        "sparse_categorical_crossentropy",
        "categorical_crossentropy",
        "binary_crossentropy",
        "categorical_focal_crossentropy",
        "binary_focal_crossentropy",
        "kl_divergence",
        "gaussian_mixture",
        "mean_squared_error",
        "mean_absolute_error",
        "huber",
        NULL,
};

const char *const eng_reduction_names[5] = {"mean", "sum", "sum_over_batch_size", "none", NULL};

const char *eng_loss_kind_name(eng_loss_kind k)
{
	return (unsigned)k < ENG_LOSS__COUNT ? eng_loss_names[k] : NULL;
}

const char *eng_reduction_name(eng_reduction r)
{
	return (unsigned)r < 4 ? eng_reduction_names[r] : NULL;
}

int eng_loss_kind_parse(eng_loss_kind *out, const char *name)
{
	for (int k = 0; k < ENG_LOSS__COUNT; k++) {
		if (name && strcmp(name, eng_loss_names[k]) == 0) {
			*out = (eng_loss_kind)k;
			return 0;
		}
	}
	return ENG_EINVAL;
}

int eng_reduction_parse(eng_reduction *out, const char *name)
{
	for (int r = 0; r < 4; r++) {
		if (name && strcmp(name, eng_reduction_names[r]) == 0) {
			*out = (eng_reduction)r;
			return 0;
		}
	}
	return ENG_EINVAL;
}

bool eng_loss_is_categorical(eng_loss_kind k)
{
	return k == ENG_LOSS_SPARSE_CE || k == ENG_LOSS_CATEGORICAL_CE ||
	       k == ENG_LOSS_CATEGORICAL_FOCAL || k == ENG_LOSS_KL;
}

bool eng_loss_is_binary(eng_loss_kind k)
{
	return k == ENG_LOSS_BINARY_CE || k == ENG_LOSS_BINARY_FOCAL;
}

/* ---- results ----------------------------------------------------------------- */

eng_loss_result *eng_loss_result_new(eng_loss_kind kind, int64_t nclasses, int64_t conf_n)
{
	eng_loss_result *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->kind = kind;
	r->has_accuracy = eng_loss_is_categorical(kind) || eng_loss_is_binary(kind);
	if (nclasses > 0) {
		r->per_class = calloc((size_t)nclasses, sizeof(*r->per_class));
		if (!r->per_class)
			goto fail;
		r->nclasses = nclasses;
	}
	if (conf_n > 0) {
		r->confusion = calloc((size_t)(conf_n * conf_n), sizeof(*r->confusion));
		if (!r->confusion)
			goto fail;
		r->conf_n = conf_n;
	}
	return r;
fail:
	eng_loss_result_free(r);
	return NULL;
}

void eng_loss_result_free(eng_loss_result *r)
{
	if (!r)
		return;
	free(r->per_class);
	free(r->confusion);
	free(r->per_position);
	eng_extra_result_free(r->extra);
	free(r);
}

static void add_class(eng_loss_class *dst, const eng_loss_class *src)
{
	dst->support += src->support;
	dst->predicted += src->predicted;
	dst->correct += src->correct;
	dst->weight_sum += src->weight_sum;
	dst->loss_sum += src->loss_sum;
}

int eng_loss_result_merge(eng_loss_result *dst, const eng_loss_result *src)
{
	if (dst->kind != src->kind || dst->nclasses != src->nclasses || dst->conf_n != src->conf_n)
		return ENG_ESTATE;
	if (!dst->extra != !src->extra)
		return ENG_ESTATE;
	if (dst->extra && eng_extra_result_merge(dst->extra, src->extra))
		return ENG_ESTATE;
	dst->wloss_sum += src->wloss_sum;
	dst->weight_sum += src->weight_sum;
	dst->count += src->count;
	dst->ignored += src->ignored;
	dst->correct += src->correct;
	for (int64_t c = 0; c < dst->nclasses; c++)
		add_class(&dst->per_class[c], &src->per_class[c]);
	for (int64_t i = 0; i < dst->conf_n * dst->conf_n; i++)
		dst->confusion[i] += src->confusion[i];
	return 0;
}

bool eng_loss_result_value(const eng_loss_result *r, eng_reduction red, double *out)
{
	*out = NAN;
	if (red == ENG_RED_SUM) {
		/* The sum of no terms is 0, not undefined (PyTorch and Keras
		 * agree; docs/API.md §2); only the means of nothing are null. */
		*out = r->wloss_sum;
		return true;
	}
	if (r->count == 0)
		return false;
	switch (red) {
	case ENG_RED_SUM: break;
	case ENG_RED_MEAN:
		if (r->weight_sum == 0)
			return false;
		*out = r->wloss_sum / r->weight_sum;
		return true;
	case ENG_RED_SUM_OVER_BATCH_SIZE: *out = r->wloss_sum / (double)r->count; return true;
	case ENG_RED_NONE: return false;
	}
	return false;
}

/* ---- errors from tasks ----------------------------------------------------------- */

int eng__part_fail(eng__loss_part *pt, int code, const char *field, int64_t index, const char *fmt,
                   ...)
{
	if (pt->err)
		return code;
	va_list ap;
	pt->err = code;
	pt->err_field = field;
	pt->err_index = index;
	va_start(ap, fmt);
	vsnprintf(pt->err_msg, sizeof(pt->err_msg), fmt, ap);
	va_end(ap);
	return code;
}

/* ---- shapes ---------------------------------------------------------------------- */

/* Writes "[4, 3]" into buf. */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < ndim && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

static bool same_shape(int na, const int64_t *a, int nb, const int64_t *b)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static int shape_mismatch(eng_error *err, const eng_tensor *yt, const eng_tensor *yp,
                          const char *why)
{
	char a[96], b[96];
	return eng_error_set(err, ENG_ESHAPE, "y_true", -1,
	                     "y_pred has shape %s but y_true has shape %s%s",
	                     shape_str(a, sizeof(a), yp->ndim, yp->shape),
	                     shape_str(b, sizeof(b), yt->ndim, yt->shape), why);
}

/* Same shape, or equal after dropping one trailing size-1 axis of either. */
static bool elementwise_fits(const eng_tensor *yt, const eng_tensor *yp)
{
	if (same_shape(yt->ndim, yt->shape, yp->ndim, yp->shape))
		return true;
	if (yt->ndim == yp->ndim + 1 && yt->shape[yt->ndim - 1] == 1)
		return same_shape(yp->ndim, yp->shape, yp->ndim, yt->shape);
	if (yp->ndim == yt->ndim + 1 && yp->shape[yp->ndim - 1] == 1)
		return same_shape(yt->ndim, yt->shape, yt->ndim, yp->shape);
	return false;
}

/* ---- weights ---------------------------------------------------------------------- */

static int check_weights(const eng_tensor *t, const char *field, eng_error *err)
{
	for (int64_t i = 0; i < t->size; i++) {
		double v = eng_tensor_at(t, i);
		if (!isfinite(v) || v < 0)
			return eng_error_set(err, ENG_EWEIGHT, field, i,
			                     "%s[%lld] is %g; every weight must be finite and >= 0",
			                     field, (long long)i, v);
	}
	return 0;
}

static double *widen(const eng_tensor *t)
{
	double *d = malloc((size_t)(t->size ? t->size : 1) * sizeof(double));
	if (d)
		for (int64_t i = 0; i < t->size; i++)
			d[i] = eng_tensor_at(t, i);
	return d;
}

/*
 * sample_weight under Keras' rule: squeeze size-1 axes beyond the position
 * rank, then its shape must be a leading part of the position shape (each
 * dim equal or 1). Widens to one double per leading index; *div is the
 * number of positions each covers.
 */
static int prepare_sample_weight(eng__loss_job *j, double **own, int pos_ndim,
                                 const int64_t *pos_shape, eng_error *err)
{
	const eng_tensor *s = j->o->sample_weight;
	int r = s->ndim;
	char a[96], b[96];

	while (r > pos_ndim && s->shape[r - 1] == 1)
		r--;
	bool ok = r <= pos_ndim;
	for (int i = 0; ok && i < r; i++)
		ok = s->shape[i] == pos_shape[i] || s->shape[i] == 1;
	if (!ok)
		return eng_error_set(err, ENG_ESHAPE, "sample_weight", -1,
		                     "sample_weight has shape %s but the positions have shape %s; "
		                     "its shape must be a leading part of it",
		                     shape_str(a, sizeof(a), s->ndim, s->shape),
		                     shape_str(b, sizeof(b), pos_ndim, pos_shape));
	int rc = check_weights(s, "sample_weight", err);
	if (rc)
		return rc;
	int64_t lead = 1, div = 1;
	for (int i = 0; i < r; i++)
		lead *= pos_shape[i];
	for (int i = r; i < pos_ndim; i++)
		div *= pos_shape[i];
	double *w = malloc((size_t)(lead ? lead : 1) * sizeof(double));
	if (!w)
		return eng_error_set(err, ENG_ENOMEM, "sample_weight", -1, "out of memory");
	for (int64_t L = 0; L < lead; L++) {
		/* coordinates of L in pos_shape[0..r), mapped onto s (stride 0 on 1s) */
		int64_t rem = L, idx = 0, stride = 1;
		for (int i = r - 1; i >= 0; i--) {
			int64_t c = rem % pos_shape[i];
			rem /= pos_shape[i];
			if (s->shape[i] != 1)
				idx += c * stride;
			stride *= s->shape[i];
		}
		w[L] = eng_tensor_at(s, idx);
	}
	*own = w;
	j->sw = w;
	j->sw_div = div ? div : 1;
	return 0;
}

/*
 * pos_weight under numpy's rule against y_pred's shape (trailing
 * alignment). When its shape, leading 1s dropped, is exactly the trailing
 * part of the positions, position p uses pw[p % size]; otherwise it is
 * expanded to one value per position.
 */
static int prepare_pos_weight(eng__loss_job *j, double **own, int pos_ndim,
                              const int64_t *pos_shape, eng_error *err)
{
	const eng_tensor *s = j->o->pos_weight;
	char a[96], b[96];
	int lead = 0;
	while (lead < s->ndim && s->shape[lead] == 1)
		lead++;
	int r = s->ndim - lead;
	bool ok = r <= pos_ndim, exact = ok;
	for (int i = 0; ok && i < r; i++) {
		int64_t sd = s->shape[lead + i], pd = pos_shape[pos_ndim - r + i];
		ok = sd == pd || sd == 1;
		exact = exact && sd == pd;
	}
	if (!ok)
		return eng_error_set(
		        err, ENG_ESHAPE, "pos_weight", -1,
		        "pos_weight has shape %s, which does not broadcast to y_pred's %s",
		        shape_str(a, sizeof(a), s->ndim, s->shape),
		        shape_str(b, sizeof(b), pos_ndim, pos_shape));
	int rc = check_weights(s, "pos_weight", err);
	if (rc)
		return rc;
	if (exact) {
		double *w = widen(s);
		if (!w)
			return eng_error_set(err, ENG_ENOMEM, "pos_weight", -1, "out of memory");
		*own = w;
		j->pw = w;
		j->pw_period = s->size ? s->size : 1;
		return 0;
	}
	int64_t n = j->npos;
	double *w = malloc((size_t)(n ? n : 1) * sizeof(double));
	if (!w)
		return eng_error_set(err, ENG_ENOMEM, "pos_weight", -1, "out of memory");
	for (int64_t p = 0; p < n; p++) {
		int64_t rem = p, idx = 0, stride = 1;
		for (int i = r - 1; i >= 0; i--) {
			int64_t pd = pos_shape[pos_ndim - r + i], sd = s->shape[lead + i];
			int64_t c = rem % pd;
			rem /= pd;
			if (sd != 1)
				idx += c * stride;
			stride *= sd;
		}
		w[p] = eng_tensor_at(s, idx);
	}
	*own = w;
	j->pw = w;
	j->pw_period = n ? n : 1;
	return 0;
}

static int prepare_vector(const double **dst, double **own, const eng_tensor *t, const char *field,
                          int64_t want_ndim, int64_t C, eng_error *err)
{
	bool ok = t->ndim == want_ndim;
	for (int i = 0; ok && i < t->ndim; i++)
		ok = t->shape[i] == C;
	if (!ok) {
		char a[96];
		return eng_error_set(err, ENG_ESHAPE, field, -1,
		                     "%s has shape %s but y_pred has %lld classes (expected %s)",
		                     field, shape_str(a, sizeof(a), t->ndim, t->shape),
		                     (long long)C, want_ndim == 1 ? "[C]" : "[C, C]");
	}
	int rc = check_weights(t, field, err);
	if (rc)
		return rc;
	*own = widen(t);
	if (!*own)
		return eng_error_set(err, ENG_ENOMEM, field, -1, "out of memory");
	*dst = *own;
	return 0;
}

/* ---- options ----------------------------------------------------------------------- */

static int check_opts(const eng_loss_opts *o, eng_error *err)
{
	eng_loss_kind k = o->kind;
	const char *name = eng_loss_kind_name(k);
	bool cat = eng_loss_is_categorical(k), bin = eng_loss_is_binary(k);
	bool focal = k == ENG_LOSS_CATEGORICAL_FOCAL || k == ENG_LOSS_BINARY_FOCAL;

	if (!name)
		return eng_error_set(err, ENG_EINVAL, "loss", -1, "unknown loss");
	if (!eng_reduction_name(o->reduction))
		return eng_error_set(err, ENG_EINVAL, "reduction", -1, "unknown reduction");
	if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
		return eng_error_set(err, ENG_EINVAL, "label_smoothing", -1,
		                     "label_smoothing must be in [0, 1]");
	if (!isfinite(o->alpha))
		return eng_error_set(err, ENG_EINVAL, "alpha", -1, "alpha must be finite");
	if (!(o->gamma >= 0 && isfinite(o->gamma)))
		return eng_error_set(err, ENG_EINVAL, "gamma", -1, "gamma must be finite and >= 0");
	if (!(o->delta > 0 && isfinite(o->delta)))
		return eng_error_set(err, ENG_EINVAL, "delta", -1, "delta must be finite and > 0");
	if ((unsigned)o->gmm_error > ENG_GMM_MSE)
		return eng_error_set(err, ENG_EINVAL, "error", -1, "error must be mae or mse");

	if (o->label_smoothing != 0 && !(cat || bin))
		return eng_error_set(err, ENG_EINVAL, "label_smoothing", -1,
		                     "label_smoothing does not apply to %s", name);
	if (o->label_smoothing != 0 && k == ENG_LOSS_KL)
		return eng_error_set(err, ENG_EINVAL, "label_smoothing", -1,
		                     "label_smoothing does not apply to %s", name);
	if ((o->log_input || o->log_target) && k != ENG_LOSS_KL)
		return eng_error_set(err, ENG_EINVAL, o->log_input ? "log_input" : "log_target", -1,
		                     "log-space inputs apply only to kl_divergence, not %s", name);
	if (o->log_target && !o->log_input)
		return eng_error_set(err, ENG_EINVAL, "log_target", -1,
		                     "log_target goes with log-probability predictions");
	if (o->log_input && o->from_logits)
		return eng_error_set(err, ENG_EINVAL, "from_logits", -1,
		                     "y_pred holds log-probabilities here, not logits");
	if (!focal && (o->alpha != 0.25 || o->gamma != 2.0))
		return eng_error_set(err, ENG_EINVAL, o->alpha != 0.25 ? "alpha" : "gamma", -1,
		                     "alpha and gamma apply only to the focal losses, not %s",
		                     name);
	if (o->apply_class_balancing && k != ENG_LOSS_BINARY_FOCAL)
		return eng_error_set(
		        err, ENG_EINVAL, "apply_class_balancing", -1,
		        "apply_class_balancing applies only to binary_focal_crossentropy, not %s",
		        name);
	if (o->delta != 1.0 && k != ENG_LOSS_HUBER)
		return eng_error_set(err, ENG_EINVAL, "delta", -1,
		                     "delta applies only to huber, not %s", name);
	if (k != ENG_LOSS_GAUSSIAN_MIXTURE && (o->gmm_error != ENG_GMM_MAE || o->x))
		return eng_error_set(err, ENG_EINVAL, o->x ? "x" : "error", -1,
		                     "x and error apply only to gaussian_mixture, not %s", name);
	if (o->from_logits && !(cat || bin))
		return eng_error_set(err, ENG_EINVAL, "from_logits", -1,
		                     "from_logits does not apply to %s", name);
	if (!cat && (o->class_weight || o->cost_matrix))
		return eng_error_set(
		        err, ENG_EINVAL, o->class_weight ? "class_weight" : "cost_matrix", -1,
		        "class_weight and cost_matrix apply only to the categorical losses, not %s "
		        "(binary losses take pos_weight)",
		        name);
	if (!bin && o->pos_weight)
		return eng_error_set(err, ENG_EINVAL, "pos_weight", -1,
		                     "pos_weight applies only to the binary losses, not %s", name);
	if (!(cat || bin) && o->has_ignore_class)
		return eng_error_set(err, ENG_EINVAL, "ignore_class", -1,
		                     "ignore_class does not apply to %s", name);
	return 0;
}

/* ---- compute ------------------------------------------------------------------------ */

/*
 * Task count: ~32K elements each, at most 64 tasks; and each task's
 * partial tables (per-class rows, confusion counts) at most 1/8 of the
 * elements it reads and ~32 MiB in all, so zeroing and adding them never
 * costs more than the work. A function of shapes and options only.
 */
static void plan_tasks(eng__loss_job *j, int64_t work_per_pos)
{
	int64_t wp = work_per_pos > 0 ? work_per_pos : 1;
	int64_t min_rows = 32768 / wp;
	if (min_rows < 1)
		min_rows = 1;
	int64_t nt = (j->npos + min_rows - 1) / min_rows;
	if (nt > 64)
		nt = 64;
	int64_t entries = j->nclasses + j->conf_n * j->conf_n;
	if (entries > 0 && nt > j->npos * wp / (8 * entries))
		nt = j->npos * wp / (8 * entries);
	int64_t per_task = j->nclasses * (int64_t)sizeof(eng_loss_class) +
	                   j->conf_n * j->conf_n * (int64_t)sizeof(int64_t);
	if (per_task > 0 && nt > ((int64_t)32 << 20) / per_task)
		nt = ((int64_t)32 << 20) / per_task;
	if (nt < 1)
		nt = 1;
	j->rows_per_task = (j->npos + nt - 1) / nt;
	if (j->rows_per_task < 1)
		j->rows_per_task = 1;
	j->ntasks = (j->npos + j->rows_per_task - 1) / j->rows_per_task;
}

/*
 * What a position is for this loss: the positions' shape, the family's task
 * function and the work per position, with the job's C, K, inner, nclasses
 * and conf_n. The shapes are checked here; each family has its own rule.
 */
typedef struct positions {
	int ndim;
	int64_t shape[ENG_MAX_RANK];
	int64_t work; /* elements a task reads per position */
	eng_task_fn fn;
} positions;

/* Categorical: one position per slice along the class axis. */
static int positions_categorical(positions *p, eng__loss_job *j, eng_error *err)
{
	const eng_loss_opts *o = j->o;
	const eng_tensor *y_true = j->yt, *y_pred = j->yp;
	eng_loss_kind k = o->kind;
	int nd = y_pred->ndim;
	char a[96];

	if (nd < 1)
		return eng_error_set(err, ENG_ESHAPE, "y_pred", -1,
		                     "y_pred is a scalar but %s needs a class axis",
		                     eng_loss_kind_name(k));
	if (o->axis < -nd || o->axis >= nd)
		return eng_error_set(err, ENG_EINVAL, "axis", -1,
		                     "axis %d is out of range for y_pred of shape %s", o->axis,
		                     shape_str(a, sizeof(a), nd, y_pred->shape));
	int ax = o->axis < 0 ? o->axis + nd : o->axis;
	j->C = y_pred->shape[ax];
	j->inner = 1;
	for (int i = 0; i < nd; i++) {
		if (i == ax)
			continue;
		p->shape[p->ndim++] = y_pred->shape[i];
		if (i > ax)
			j->inner *= y_pred->shape[i];
	}
	if (k == ENG_LOSS_SPARSE_CE) {
		bool fits = same_shape(y_true->ndim, y_true->shape, p->ndim, p->shape) ||
		            (y_true->ndim == p->ndim + 1 && y_true->shape[p->ndim] == 1 &&
		             same_shape(p->ndim, y_true->shape, p->ndim, p->shape));
		if (!fits) {
			char b[96], why[140];
			snprintf(why, sizeof(why), " (class axis %d; expected %s)", ax,
			         shape_str(b, sizeof(b), p->ndim, p->shape));
			return shape_mismatch(err, y_true, y_pred, why);
		}
	} else if (!same_shape(y_true->ndim, y_true->shape, nd, y_pred->shape)) {
		return shape_mismatch(err, y_true, y_pred, " (they must be equal)");
	}
	if (j->C == 0 && y_true->size > 0)
		return eng_error_set(err, ENG_ESHAPE, "y_pred", -1,
		                     "y_pred has shape %s: the class axis is empty",
		                     shape_str(a, sizeof(a), nd, y_pred->shape));
	if (o->confusion && j->C > ENG_LOSS_MAX_CONFUSION)
		return eng_error_set(err, ENG_EINVAL, "confusion_matrix", -1,
		                     "a confusion matrix of %lld classes is too large; at most %d",
		                     (long long)j->C, ENG_LOSS_MAX_CONFUSION);
	p->work = j->C;
	j->nclasses = o->per_class ? j->C : 0;
	j->conf_n = o->confusion ? j->C : 0;
	p->fn = eng__xent_task;
	return 0;
}

/* Gaussian mixture: one position per row of y_true (N, Z) and y_pred (N, 3K). */
static int positions_gmm(positions *p, eng__loss_job *j, eng_error *err)
{
	const eng_tensor *y_true = j->yt, *y_pred = j->yp;
	if (y_true->ndim != 2 || y_pred->ndim != 2 || y_true->shape[0] != y_pred->shape[0] ||
	    y_pred->shape[1] % 3 != 0 || y_pred->shape[1] == 0 || y_true->shape[1] == 0)
		return shape_mismatch(err, y_true, y_pred,
		                      " (gaussian_mixture needs y_true (N, Z) and y_pred (N, 3K), "
		                      "Z >= 1, K >= 1)");
	p->ndim = 1;
	p->shape[0] = y_true->shape[0];
	j->C = y_true->shape[1];
	j->K = y_pred->shape[1] / 3;
	p->work = j->C * j->K;
	p->fn = eng__gmm_task;
	return 0;
}

/* Binary and regression losses: one position per element. */
static int positions_elementwise(positions *p, eng__loss_job *j, eng_error *err)
{
	const eng_loss_opts *o = j->o;
	const eng_tensor *y_true = j->yt, *y_pred = j->yp;
	if (!elementwise_fits(y_true, y_pred))
		return shape_mismatch(err, y_true, y_pred, " (they must be equal)");
	p->ndim = y_pred->ndim;
	memcpy(p->shape, y_pred->shape, sizeof(int64_t) * (size_t)p->ndim);
	if (o->axis != -1 && o->axis != p->ndim - 1)
		return eng_error_set(err, ENG_EINVAL, "axis", -1, "axis does not apply to %s",
		                     eng_loss_kind_name(o->kind));
	if (eng_loss_is_binary(o->kind)) {
		j->C = p->ndim >= 2 ? p->shape[p->ndim - 1] : 1;
		j->nclasses = o->per_class ? j->C : 0;
		j->conf_n = o->confusion ? 2 : 0;
		p->fn = eng__binary_task;
	} else {
		p->fn = eng__regress_task;
	}
	return 0;
}

/* The per-kind dispatch, then the position count and the extra options. */
static int plan_positions(positions *p, eng__loss_job *j, eng_error *err)
{
	eng_loss_kind k = j->o->kind;
	int rc;

	p->ndim = 0;
	p->work = 1;
	if (eng_loss_is_categorical(k))
		rc = positions_categorical(p, j, err);
	else if (k == ENG_LOSS_GAUSSIAN_MIXTURE)
		rc = positions_gmm(p, j, err);
	else
		rc = positions_elementwise(p, j, err);
	if (rc)
		return rc;
	j->npos = 1;
	for (int i = 0; i < p->ndim; i++)
		j->npos *= p->shape[i];
	if (j->o->extra)
		return eng__extra_check(j->o->extra, k, j->C, err);
	return 0;
}

/* What one eng_loss_compute owns until it returns. */
typedef struct owned {
	double *sw, *cw, *cost, *pw, *xg; /* widened weights and the mixture's grid */
	eng_loss_class *cls;              /* ntasks x nclasses partial rows */
	int64_t *conf;                    /* ntasks x conf_n^2 partial counts */
} owned;

/* The mixture's grid x (Z points; numpy.linspace(0, 1, Z) when absent). */
static int prepare_grid(eng__loss_job *j, owned *own, eng_error *err)
{
	const eng_loss_opts *o = j->o;
	double *xg;
	char a[96];

	if (o->x) {
		if (o->x->ndim != 1 || o->x->shape[0] != j->C)
			return eng_error_set(err, ENG_ESHAPE, "x", -1,
			                     "x has shape %s but y_true has %lld grid points",
			                     shape_str(a, sizeof(a), o->x->ndim, o->x->shape),
			                     (long long)j->C);
		xg = own->xg = widen(o->x);
	} else {
		xg = own->xg = malloc((size_t)j->C * sizeof(double));
		if (xg) {
			double step = j->C > 1 ? 1.0 / (double)(j->C - 1) : 0.0;
			for (int64_t z = 0; z < j->C; z++)
				xg[z] = (double)z * step;
			if (j->C > 1)
				xg[j->C - 1] = 1.0;
		}
	}
	if (!xg)
		return eng_error_set(err, ENG_ENOMEM, "x", -1, "out of memory");
	for (int64_t z = 0; o->x && !o->propagate_nan && z < j->C; z++)
		if (!isfinite(xg[z]))
			return eng_error_set(err, ENG_ENONFINITE, "x", z, "x[%lld] is not finite",
			                     (long long)z);
	j->x = xg;
	return 0;
}

/* Weights and grids, validated and widened once, before any task runs. */
static int prepare_inputs(eng__loss_job *j, owned *own, const positions *p, eng_error *err)
{
	const eng_loss_opts *o = j->o;
	int rc;

	if (o->sample_weight && (rc = prepare_sample_weight(j, &own->sw, p->ndim, p->shape, err)))
		return rc;
	if (o->class_weight &&
	    (rc = prepare_vector(&j->cw, &own->cw, o->class_weight, "class_weight", 1, j->C, err)))
		return rc;
	if (o->cost_matrix && (rc = prepare_vector(&j->cost, &own->cost, o->cost_matrix,
	                                           "cost_matrix", 2, j->C, err)))
		return rc;
	if (o->pos_weight && (rc = prepare_pos_weight(j, &own->pw, p->ndim, p->shape, err)))
		return rc;
	if (o->kind == ENG_LOSS_GAUSSIAN_MIXTURE)
		return prepare_grid(j, own, err);
	return 0;
}

/* An empty result of the positions' shape (with per-position values when
 * the options want them, which the tasks then write). */
static int new_result(eng_loss_result **out, eng__loss_job *j, const positions *p, eng_error *err)
{
	const eng_loss_opts *o = j->o;
	eng_loss_result *r = eng_loss_result_new(o->kind, j->nclasses, j->conf_n);
	*out = r;
	if (!r)
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	r->pos_ndim = p->ndim;
	memcpy(r->pos_shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
	r->pos_size = j->npos;
	if (o->per_position || o->reduction == ENG_RED_NONE) {
		r->per_position = calloc((size_t)(j->npos ? j->npos : 1), sizeof(double));
		if (!r->per_position)
			return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
		j->per_position = r->per_position;
	}
	return 0;
}

/* Cuts the job into tasks and gives each its partial tables. */
static int plan_parts(eng__loss_job *j, owned *own, const positions *p, eng_error *err)
{
	plan_tasks(j, p->work);
	j->parts = calloc((size_t)(j->ntasks ? j->ntasks : 1), sizeof(*j->parts));
	if (j->nclasses)
		own->cls = calloc((size_t)(j->ntasks * j->nclasses), sizeof(*own->cls));
	if (j->conf_n)
		own->conf = calloc((size_t)(j->ntasks * j->conf_n * j->conf_n), sizeof(*own->conf));
	if (!j->parts || (j->nclasses && !own->cls) || (j->conf_n && !own->conf))
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	for (int64_t t = 0; t < j->ntasks; t++) {
		j->parts[t].cls = own->cls ? own->cls + t * j->nclasses : NULL;
		j->parts[t].conf = own->conf ? own->conf + t * j->conf_n * j->conf_n : NULL;
	}
	if (j->o->extra)
		return eng__extra_prepare(j, err);
	return 0;
}

/* Tasks [from, from + n) of fn, through par. */
typedef struct span {
	eng_task_fn fn;
	void *arg;
	int64_t from;
} span;

static void span_task(void *arg, int64_t t)
{
	const span *s = arg;
	s->fn(s->arg, s->from + t);
}

void eng__parallel_from(const eng_parallel *par, int64_t from, int64_t to, eng_task_fn fn,
                        void *arg)
{
	span s = {fn, arg, from};
	if (to > from)
		eng_parallel_for(par, to - from, span_task, &s);
}

/* The first problem a task met, by index (0 when none). */
static int task_error(const eng__loss_job *j, eng_error *err)
{
	const eng__loss_part *bad = NULL;
	for (int64_t t = 0; t < j->ntasks; t++) {
		const eng__loss_part *pt = &j->parts[t];
		if (pt->err && (!bad || pt->err_index < bad->err_index))
			bad = pt;
	}
	if (bad)
		return eng_error_set(err, bad->err, bad->err_field, bad->err_index, "%s",
		                     bad->err_msg);
	return 0;
}

/* Adds the parts into r in task order (so serial and parallel agree bit
 * for bit). */
static void reduce_parts(eng_loss_result *r, const eng__loss_job *j)
{
	for (int64_t t = 0; t < j->ntasks; t++) {
		const eng__loss_part *pt = &j->parts[t];
		r->wloss_sum += pt->wl;
		r->weight_sum += pt->w;
		r->count += pt->count;
		r->ignored += pt->ignored;
		r->correct += pt->correct;
		for (int64_t c = 0; c < j->nclasses; c++)
			add_class(&r->per_class[c], &pt->cls[c]);
		for (int64_t i = 0; i < j->conf_n * j->conf_n; i++)
			r->confusion[i] += pt->conf[i];
	}
}

/* ---- plans ------------------------------------------------------------------------ */

struct eng_loss_plan {
	eng__loss_job job;
	owned own;
	positions pos;
	eng_loss_result *r;
	int64_t done; /* tasks [0, done) have run */
};

void eng_loss_plan_free(eng_loss_plan *pl)
{
	if (!pl)
		return;
	eng__extra_cleanup(&pl->job);
	eng_loss_result_free(pl->r);
	free(pl->own.conf);
	free(pl->own.cls);
	free(pl->job.parts);
	free(pl->own.xg);
	free(pl->own.pw);
	free(pl->own.cost);
	free(pl->own.cw);
	free(pl->own.sw);
	free(pl);
}

int eng_loss_plan_new(eng_loss_plan **out, const eng_tensor *y_true, const eng_tensor *y_pred,
                      const eng_loss_opts *o, eng_error *err)
{
	eng_loss_plan *pl = NULL;
	eng__loss_job *j;
	int rc;

	*out = NULL;
	if ((rc = check_opts(o, err)))
		return rc;
	if (!(pl = calloc(1, sizeof(*pl))))
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	j = &pl->job;
	j->o = o;
	j->yt = y_true;
	j->yp = y_pred;
	if ((rc = plan_positions(&pl->pos, j, err)) ||
	    (rc = prepare_inputs(j, &pl->own, &pl->pos, err)) ||
	    (rc = new_result(&pl->r, j, &pl->pos, err)) ||
	    (rc = plan_parts(j, &pl->own, &pl->pos, err)))
		goto out;
	*out = pl;
	pl = NULL;
out:
	eng_loss_plan_free(pl);
	return rc;
}

int64_t eng_loss_plan_table_bytes(const eng_tensor *y_true, const eng_tensor *y_pred,
                                  const eng_loss_opts *o)
{
	eng__loss_job j;
	positions p;
	eng_error err = {0};

	memset(&j, 0, sizeof j); /* as eng_loss_plan_new's (calloc) */
	j.o = o;
	j.yt = y_true;
	j.yp = y_pred;
	if (check_opts(o, &err) || plan_positions(&p, &j, &err))
		return -1;
	plan_tasks(&j, p.work); /* plan_parts' cut */
	int64_t per = (int64_t)sizeof(eng__loss_part) +
	              j.nclasses * (int64_t)sizeof(eng_loss_class) +
	              j.conf_n * j.conf_n * (int64_t)sizeof(int64_t);
	if (o->extra) /* eng__extra_prepare's, at most */
		per += (int64_t)sizeof(eng__extra_part) +
		       o->extra->bins * (int64_t)sizeof(eng_calib_bin);
	return (j.ntasks ? j.ntasks : 1) * per;
}

int64_t eng_loss_plan_tasks(const eng_loss_plan *pl)
{
	return pl->job.ntasks;
}

int64_t eng_loss_plan_done(const eng_loss_plan *pl)
{
	return pl->done;
}

int64_t eng_loss_plan_pred_end(const eng_loss_plan *pl, int64_t t)
{
	const eng__loss_job *j = &pl->job;
	int64_t p0, p1;

	if (t < 0)
		return 0;
	eng__task_range(j, t < j->ntasks ? t : j->ntasks - 1, &p0, &p1);
	if (eng_loss_is_categorical(j->o->kind))
		return (p1 + j->inner - 1) / j->inner * j->C * j->inner;
	if (j->o->kind == ENG_LOSS_GAUSSIAN_MIXTURE)
		return p1 * 3 * j->K;
	return p1; /* one element a position */
}

void eng_loss_plan_run(eng_loss_plan *pl, int64_t to)
{
	eng__loss_job *j = &pl->job;

	if (to > j->ntasks)
		to = j->ntasks;
	for (; pl->done < to; pl->done++) {
		pl->pos.fn(j, pl->done);
		/* the metrics trust the labels the loss task checked: after a
		 * bad one they would index a row by it (the finish reports it
		 * before any metric is read) */
		if (j->x_work && !j->x_fused && !j->parts[pl->done].err)
			eng__extra_task(j, pl->done);
	}
}

int eng_loss_plan_finish(eng_loss_result **out, eng_loss_plan *pl, const eng_parallel *par,
                         eng_error *err)
{
	eng__loss_job *j = &pl->job;
	int rc;

	*out = NULL;
	eng__parallel_from(par, pl->done, j->ntasks, pl->pos.fn, j);
	if ((rc = task_error(j, err)))
		return rc;
	reduce_parts(pl->r, j);
	if (j->o->extra && (rc = eng__extra_finish(j, pl->r, pl->done, par, err)))
		return rc;
	pl->done = j->ntasks;
	*out = pl->r;
	pl->r = NULL;
	return 0;
}

int eng_loss_compute(eng_loss_result **out, const eng_tensor *y_true, const eng_tensor *y_pred,
                     const eng_loss_opts *o, const eng_parallel *par, eng_error *err)
{
	eng_loss_plan *pl = NULL;
	int rc;

	*out = NULL;
	if (!(rc = eng_loss_plan_new(&pl, y_true, y_pred, o, err)))
		rc = eng_loss_plan_finish(out, pl, par, err);
	eng_loss_plan_free(pl);
	return rc;
}
