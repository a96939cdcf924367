/*
 * extra.c - perplexity, top-k accuracy and calibration over the positions
 * of a loss evaluation (extra.h): the result's new/free/merge/readers, the
 * option checks, and eng__extra_task, which loss.c runs over the same task
 * split as the loss once the loss tasks have validated every input.
 *
 * Why a pass of its own: these figures need the whole row (how many classes
 * beat the true one, the largest probability, sum_c p_c^2), not the one
 * log-probability the loss kernels keep, and the loss kernels are tuned to
 * the byte. Running after them means nothing here re-validates anything:
 * labels are in range, probabilities >= 0, rows sum above 0, and a
 * non-finite value is there only under nan_policy "propagate" (then it
 * flows into the sums as NaN and the figure reads null). Perplexity of
 * sparse cross-entropy without class weights, cost matrix or smoothing is
 * the loss's own mean, so loss.c copies those sums and no nll is computed
 * here.
 *
 * Rows: a position's class row is y_pred[po*C*inner + c*inner + pi], as in
 * xent.c. Float32 rows with the class axis last go through row_f32_stats
 * (eight lanes, one pass for the maximum, first argmax and the count of
 * classes above the true one; a second for the sums of exp(x - max) and of
 * its square only when calibration or perplexity needs them); every other
 * row is copied into doubles and done with libm. Both give the same counts;
 * the float sums agree with double to ~1e-7 relative.
 *
 * Top-k needs no selection at all: correct at k iff fewer than k classes
 * score strictly higher than the true class, so one count per row answers
 * every k of the request (O(C) a row, no sort, no heap).
 *
 * Invariant: task t writes only xparts[t] and its own bins; loss.c adds the
 * parts in task order, so results are bit-identical whatever the threads.
 */
#include "loss_priv.h"
#include "vecf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- results ------------------------------------------------------------------------ */

eng_extra_result *eng_extra_result_new(const eng_extra_opts *o)
{
	eng_extra_result *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->ntop = o->ntop;
	memcpy(r->top_k, o->top_k, sizeof(r->top_k));
	r->perplexity = o->perplexity;
	if (o->bins > 0) {
		r->bin = calloc((size_t)o->bins, sizeof(*r->bin));
		if (!r->bin) {
			free(r);
			return NULL;
		}
		r->bins = o->bins;
	}
	return r;
}

void eng_extra_result_free(eng_extra_result *r)
{
	if (!r)
		return;
	free(r->bin);
	free(r);
}

int eng_extra_result_merge(eng_extra_result *dst, const eng_extra_result *src)
{
	if (dst->ntop != src->ntop || dst->bins != src->bins || dst->perplexity != src->perplexity)
		return ENG_ESTATE;
	for (int i = 0; i < dst->ntop; i++)
		if (dst->top_k[i] != src->top_k[i])
			return ENG_ESTATE;
	for (int i = 0; i < dst->ntop; i++)
		dst->top_correct[i] += src->top_correct[i];
	dst->top_count += src->top_count;
	dst->nll_sum += src->nll_sum;
	dst->nll_weight += src->nll_weight;
	dst->nll_count += src->nll_count;
	for (int b = 0; b < dst->bins; b++) {
		dst->bin[b].count += src->bin[b].count;
		dst->bin[b].weight += src->bin[b].weight;
		dst->bin[b].conf += src->bin[b].conf;
		dst->bin[b].acc += src->bin[b].acc;
	}
	dst->brier_sum += src->brier_sum;
	dst->calib_weight += src->calib_weight;
	dst->calib_count += src->calib_count;
	return 0;
}

bool eng_extra_perplexity(const eng_extra_result *r, double *out)
{
	*out = NAN;
	if (!r || !r->perplexity || r->nll_count == 0 || !(r->nll_weight > 0))
		return false;
	*out = exp(r->nll_sum / r->nll_weight);
	return isfinite(*out) || isinf(*out);
}

bool eng_extra_top_k(const eng_extra_result *r, int i, double *out)
{
	*out = NAN;
	if (!r || i < 0 || i >= r->ntop || r->top_count == 0)
		return false;
	*out = (double)r->top_correct[i] / (double)r->top_count;
	return true;
}

/* ---- options ---------------------------------------------------------------------------- */

int eng__extra_check(const eng_extra_opts *x, eng_loss_kind k, int64_t C, eng_error *err)
{
	bool cat = eng_loss_is_categorical(k), bin = eng_loss_is_binary(k);
	const char *name = eng_loss_kind_name(k);
	if (x->ntop < 0 || x->ntop > ENG_EXTRA_MAX_TOPK)
		return eng_error_set(err, ENG_EINVAL, "top_k", -1, "top_k has at most %d entries",
		                     ENG_EXTRA_MAX_TOPK);
	if (x->ntop > 0 && !cat)
		return eng_error_set(err, ENG_EINVAL, "top_k", -1,
		                     "top_k applies only to the categorical losses, not %s", name);
	for (int i = 0; i < x->ntop; i++) {
		int64_t v = x->top_k[i];
		if (v < 1 || v > C)
			return eng_error_set(
			        err, ENG_EINVAL, "top_k", i,
			        "top_k[%d] is %lld; each k must be in [1, C] = [1, %lld]", i,
			        (long long)v, (long long)C);
		if (i > 0 && v <= x->top_k[i - 1])
			return eng_error_set(err, ENG_EINVAL, "top_k", i,
			                     "top_k must be strictly increasing; top_k[%d] = %lld "
			                     "follows %lld",
			                     i, (long long)v, (long long)x->top_k[i - 1]);
	}
	if (x->bins != 0 && !(cat || bin))
		return eng_error_set(
		        err, ENG_EINVAL, "calibration", -1,
		        "calibration applies to the categorical and binary losses, not %s", name);
	if (x->bins < 0 || x->bins > ENG_CALIB_MAX_BINS)
		return eng_error_set(err, ENG_EINVAL, "calibration", -1,
		                     "calibration bins must be in [1, %d], got %d",
		                     ENG_CALIB_MAX_BINS, x->bins);
	if (x->perplexity && k != ENG_LOSS_SPARSE_CE && k != ENG_LOSS_CATEGORICAL_CE)
		return eng_error_set(err, ENG_EINVAL, "perplexity", -1,
		                     "perplexity applies to the cross-entropy losses, not %s",
		                     name);
	return 0;
}

/* ---- one row, float32 with the class axis last -------------------------------------------- */

/*
 * Over the row x[0..C): *above = classes with x > xt, *amax = first index
 * of the maximum, *mx = the maximum; with sums, *s1 = sum exp(x - max) and
 * *s2 = sum exp(x - max)^2 (float lanes per 64 elements, then double).
 * A row with NaN or Inf gives a non-finite *mx, *s1 or *s2 (when sums), or
 * finite garbage without sums: the caller redoes non-finite rows in double.
 */
HOT_CLONES
static void row_f32_stats(const float *x, int64_t C, float xt, bool sums, int64_t *above,
                          int64_t *amax, float *mx, double *s1, double *s2)
{
	v8f vm = VSPLAT(-INFINITY), vt = VSPLAT(xt);
	v8i vi = {-1, -1, -1, -1, -1, -1, -1, -1}, cnt = {0, 0, 0, 0, 0, 0, 0, 0};
	int64_t c = 0;
	for (; c + 8 <= C; c += 8) {
		v8f v;
		memcpy(&v, x + c, sizeof(v));
		cnt -= v > vt;
		v8i gt = v > vm;
		v8i ci = {(int32_t)c,     (int32_t)c + 1, (int32_t)c + 2, (int32_t)c + 3,
		          (int32_t)c + 4, (int32_t)c + 5, (int32_t)c + 6, (int32_t)c + 7};
		vm = VSEL(gt, v, vm);
		vi = (gt & ci) | (~gt & vi);
	}
	float m = -INFINITY;
	int64_t am = -1, n = 0;
	for (int k = 0; k < 8; k++) {
		n += cnt[k];
		if (vi[k] >= 0 && (vm[k] > m || (vm[k] == m && vi[k] < am))) {
			m = vm[k];
			am = vi[k];
		}
	}
	for (; c < C; c++) {
		n += x[c] > xt;
		if (x[c] > m || am < 0) {
			m = x[c];
			am = c;
		}
	}
	*above = n;
	*amax = am < 0 ? 0 : am;
	*mx = m;
	if (!sums)
		return;
	v8f mm = VSPLAT(m);
	double a1 = 0, a2 = 0;
	for (c = 0; c + 64 <= C; c += 64) {
		v8f b1 = VSPLAT(0.0f), b2 = VSPLAT(0.0f);
		for (int64_t k = 0; k < 64; k += 8) {
			v8f v;
			memcpy(&v, x + c + k, sizeof(v));
			v -= mm;
			exp_neg(&v);
			b1 += v;
			b2 += v * v;
		}
		for (int k = 0; k < 8; k++) {
			a1 += (double)b1[k];
			a2 += (double)b2[k];
		}
	}
	for (; c < C; c++) {
		double e = exp((double)x[c] - (double)m);
		a1 += e;
		a2 += e * e;
	}
	*s1 = a1;
	*s2 = a2;
}

/* ---- the task ---------------------------------------------------------------------------------- */

/* First maximum of v[0..C), numpy's argmax (a NaN wins). */
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

static void read_row(const eng_tensor *t, int64_t base, int64_t C, int64_t st, double *buf)
{
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
}

static inline double clip(double v)
{
	return v < ENG__EPS ? ENG__EPS : (v > 1 - ENG__EPS ? 1 - ENG__EPS : v);
}

static void add_calib(eng__extra_part *xp, int bins, double conf, bool acc, double brier, double w)
{
	xp->brier += w * brier;
	xp->calib_w += w;
	xp->calib_n++;
	if (isnan(conf))
		return;
	eng_calib_bin *b = &xp->bin[eng_calib_bin_of(conf, bins)];
	b->count++;
	b->weight += w;
	b->conf += w * conf;
	b->acc += acc ? w : 0.0;
}

static void top_add(eng__extra_part *xp, const eng_extra_opts *x, int64_t above)
{
	for (int i = 0; i < x->ntop; i++)
		xp->top[i] += above < x->top_k[i];
	xp->top_n++;
}

/* Binary losses: every element a position. */
static void binary_range(const eng__loss_job *j, eng__extra_part *xp, int64_t p0, int64_t p1)
{
	const eng_loss_opts *o = j->o;
	for (int64_t p = p0; p < p1; p++) {
		double y = eng_tensor_at(j->yt, p);
		if (o->has_ignore_class && y == (double)o->ignore_class)
			continue;
		double v = eng_tensor_at(j->yp, p), pr = v;
		if (o->from_logits) {
			double e = exp(-fabs(v));
			pr = v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
		}
		add_calib(xp, j->xo->bins, pr, y > 0.5, (pr - y) * (pr - y), eng__sw(j, p));
	}
}

void eng__extra_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	const eng_extra_opts *x = j->xo;
	eng__extra_part *xp = &j->xparts[t];
	int64_t p0, p1, C = j->C, inner = j->inner;
	bool sparse = o->kind == ENG_LOSS_SPARSE_CE;
	bool want_nll = j->x_nll, want_cal = x->bins > 0, want_top = x->ntop > 0;
	bool fast = j->yp->dtype == ENG_F32 && inner == 1 && o->from_logits && sparse;
	double *q = NULL, *d = NULL;

	eng__task_range(j, t, &p0, &p1);
	if (p0 >= p1)
		return;
	if (eng_loss_is_binary(o->kind)) {
		binary_range(j, xp, p0, p1);
		return;
	}
	q = malloc((size_t)(2 * C + 1) * sizeof(double));
	if (!q) {
		xp->err = ENG_ENOMEM;
		return;
	}
	d = q + C;
	for (int64_t p = p0; p < p1; p++) {
		int64_t po = p / inner, pi = p % inner, base = po * C * inner + pi, tc;
		double w = eng__sw(j, p);
		if (sparse) {
			double v = eng_tensor_at(j->yt, p);
			if (o->has_ignore_class && v == (double)o->ignore_class)
				continue;
			tc = (int64_t)v;
		} else {
			read_row(j->yt, base, C, inner, d);
			tc = argmax_d(d, C);
			if (o->has_ignore_class && tc == o->ignore_class)
				continue;
		}

		if (fast) {
			const float *row = (const float *)j->yp->data + base;
			int64_t above, am;
			float m;
			double s1 = 1, s2 = 1;
			row_f32_stats(row, C, row[tc], want_cal || want_nll, &above, &am, &m, &s1,
			              &s2);
			if (!(isfinite(m) && isfinite(s1) && isfinite(s2)))
				goto general; /* NaN or Inf (nan_policy propagate) */
			if (want_top)
				top_add(xp, x, above);
			double xt = (double)row[tc] - (double)m;
			if (want_nll) {
				xp->nll += w * (log(s1) - xt);
				xp->nll_w += w;
				xp->nll_n++;
			}
			if (want_cal) {
				double pt = exp(xt) / s1;
				double brier = s2 / (s1 * s1) - 2 * pt + 1;
				add_calib(xp, x->bins, 1.0 / s1, am == tc, brier < 0 ? 0 : brier,
				          w);
			}
			continue;
		}
	general:
		read_row(j->yp, base, C, inner, q);
		if (want_top) {
			double xt = q[tc];
			int64_t above = 0;
			for (int64_t c = 0; c < C; c++)
				above += q[c] > xt;
			top_add(xp, x, above);
		}
		if (!want_cal && !want_nll)
			continue;
		int64_t am = argmax_d(q, C);
		/* probabilities into q, log-probabilities (for nll) computed on the fly */
		double conf, nll = 0, brier = 0;
		if (o->from_logits) {
			double m = q[am], s = 0;
			for (int64_t c = 0; c < C; c++)
				s += exp(q[c] - m);
			double ls = log(s);
			for (int64_t c = 0; c < C; c++) {
				double lp = (q[c] - m) - ls;
				if (want_nll && (sparse ? c == tc : d[c] != 0))
					nll -= (sparse ? 1.0 : d[c]) * lp;
				q[c] = exp(lp);
			}
		} else {
			double z = 0;
			for (int64_t c = 0; c < C; c++)
				z += q[c];
			for (int64_t c = 0; c < C; c++) {
				q[c] /= z;
				if (want_nll && (sparse ? c == tc : d[c] != 0))
					nll -= (sparse ? 1.0 : d[c]) * log(clip(q[c]));
			}
		}
		conf = q[am];
		for (int64_t c = 0; c < C; c++) {
			double y = sparse ? (c == tc ? 1.0 : 0.0) : d[c];
			brier += (q[c] - y) * (q[c] - y);
		}
		if (want_nll) {
			xp->nll += w * nll;
			xp->nll_w += w;
			xp->nll_n++;
		}
		if (want_cal)
			add_calib(xp, x->bins, conf, am == tc, brier, w);
	}
	free(q);
}

/* ---- driver (called by loss.c) ------------------------------------------------------------------- */

int eng__extra_run(eng__loss_job *j, eng_loss_result *r, const eng_parallel *par, eng_error *err)
{
	const eng_extra_opts *x = j->o->extra;
	const eng_loss_opts *o = j->o;
	eng_calib_bin *bins = NULL;
	int rc = 0;

	r->extra = eng_extra_result_new(x);
	if (!r->extra)
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	eng_extra_result *e = r->extra;
	/* perplexity of the plain sparse loss is its own weighted mean */
	j->x_nll = x->perplexity;
	if (x->perplexity && o->kind == ENG_LOSS_SPARSE_CE && !j->cw && !j->cost &&
	    o->label_smoothing == 0) {
		e->nll_sum = r->wloss_sum;
		e->nll_weight = r->weight_sum;
		e->nll_count = r->count;
		j->x_nll = false;
	}
	if (!j->x_nll && x->ntop == 0 && x->bins == 0)
		return 0;
	j->xo = x;
	j->xparts = calloc((size_t)(j->ntasks ? j->ntasks : 1), sizeof(*j->xparts));
	if (x->bins > 0)
		bins = calloc((size_t)(j->ntasks * x->bins), sizeof(*bins));
	if (!j->xparts || (x->bins > 0 && !bins)) {
		rc = eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
		goto out;
	}
	for (int64_t t = 0; t < j->ntasks; t++)
		j->xparts[t].bin = bins ? bins + t * x->bins : NULL;
	eng_parallel_for(par, j->ntasks, eng__extra_task, j);
	for (int64_t t = 0; t < j->ntasks; t++) {
		const eng__extra_part *xp = &j->xparts[t];
		if (xp->err) {
			rc = eng_error_set(err, xp->err, NULL, -1, "out of memory");
			goto out;
		}
		for (int i = 0; i < x->ntop; i++)
			e->top_correct[i] += xp->top[i];
		e->top_count += xp->top_n;
		if (j->x_nll) {
			e->nll_sum += xp->nll;
			e->nll_weight += xp->nll_w;
			e->nll_count += xp->nll_n;
		}
		for (int b = 0; b < x->bins; b++) {
			e->bin[b].count += xp->bin[b].count;
			e->bin[b].weight += xp->bin[b].weight;
			e->bin[b].conf += xp->bin[b].conf;
			e->bin[b].acc += xp->bin[b].acc;
		}
		e->brier_sum += xp->brier;
		e->calib_weight += xp->calib_w;
		e->calib_count += xp->calib_n;
	}
out:
	free(bins);
	free(j->xparts);
	j->xparts = NULL;
	return rc;
}
