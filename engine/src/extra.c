/*
 * extra.c - perplexity, top-k accuracy and calibration over the positions
 * of a loss evaluation (extra.h): the result's new/free/merge/readers, the
 * option checks, and eng__extra_task, which loss.c runs over the same task
 * split as the loss once the loss tasks have validated every input.
 *
 * Where the work happens: these figures need more of a row than the one
 * log-probability a loss keeps (how many classes beat the true one, the
 * largest probability, sum_c p_c^2). In the hot case - sparse CE from
 * float32 logits, class axis last, more than 32 classes, an AVX-512 CPU -
 * they are gathered inside the loss pass itself (eng__xent_fuses_extra):
 * xent.c's row kernel also sums exp(x - max)^2 when calibration wants it,
 * the count of classes above the true one is taken while the row is in L1,
 * and eng__extra_fused_rows adds the block's rows from what the kernel
 * left (max, sum of exp, first argmax, loss). Everywhere else
 * eng__extra_task makes its own pass after the loss tasks: float32 rows
 * with the class axis last through row_f32_stats (eight lanes), every other
 * row copied into doubles and done with libm. All paths give the same
 * counts; the float sums agree with double to ~1e-7 relative.
 *
 * Running after (or inside) the loss pass means nothing here re-validates
 * anything: labels are in range, probabilities >= 0, rows sum above 0, and
 * a non-finite value is there only under nan_policy "propagate" (then it
 * flows into the sums as NaN and the figure reads null; the fast paths hand
 * such rows to the double path). Perplexity of sparse cross-entropy without
 * class weights, cost matrix or smoothing is the loss's own weighted mean,
 * so those sums are copied and no nll is computed.
 *
 * Rows: a position's class row is y_pred[po*C*inner + c*inner + pi], as in
 * xent.c.
 *
 * Top-k needs no selection at all: correct at k iff fewer than k classes
 * score strictly higher than the true class, so one count per row answers
 * every k of the request (O(C) a row, no sort, no heap); it is 0 without
 * counting when the true class holds the maximum, and stops at the largest
 * k (a row past it is wrong at every k).
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

bool eng__extra_opts_equal(const eng_extra_opts *a, const eng_extra_opts *b)
{
	if (a->ntop != b->ntop || a->bins != b->bins || a->perplexity != b->perplexity)
		return false;
	for (int i = 0; i < a->ntop; i++)
		if (a->top_k[i] != b->top_k[i])
			return false;
	return true;
}

void eng__extra_opts_of(eng_extra_opts *o, const eng_extra_result *x)
{
	eng_extra_opts z = ENG_EXTRA_OPTS_INIT;
	*o = z;
	o->ntop = x->ntop;
	memcpy(o->top_k, x->top_k, sizeof(o->top_k));
	o->bins = x->bins;
	o->perplexity = x->perplexity;
}

bool eng__extra_same_config(const eng_extra_result *a, const eng_extra_result *b)
{
	eng_extra_opts oa, ob;
	if (!a || !b)
		return !a && !b;
	eng__extra_opts_of(&oa, a);
	eng__extra_opts_of(&ob, b);
	return eng__extra_opts_equal(&oa, &ob);
}

int eng_extra_result_merge(eng_extra_result *dst, const eng_extra_result *src)
{
	if (!eng__extra_same_config(dst, src))
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

/* ---- the general path: one position -------------------------------------------------------- */

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

static void add_nll(eng__extra_part *xp, double nll, double w)
{
	xp->nll += w * nll;
	xp->nll_w += w;
	xp->nll_n++;
}

/* Binary losses: element p is a position. */
static void binary_position(const eng__loss_job *j, eng__extra_part *xp, int64_t p)
{
	const eng_loss_opts *o = j->o;
	double y = eng_tensor_at(j->yt, p);
	if (o->has_ignore_class && y == (double)o->ignore_class)
		return;
	double v = eng_tensor_at(j->yp, p), pr = v;
	if (o->from_logits) {
		double e = exp(-fabs(v));
		pr = v >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
	}
	add_calib(xp, j->xo->bins, pr, y > 0.5, (pr - y) * (pr - y), eng__sw(j, p));
}

/*
 * Categorical position p with scratch q and d (C doubles each): the row
 * copied into doubles, everything in double with libm.
 */
static void cat_position(const eng__loss_job *j, eng__extra_part *xp, int64_t p, double *q,
                         double *d)
{
	const eng_loss_opts *o = j->o;
	const eng_extra_opts *x = j->xo;
	int64_t C = j->C, inner = j->inner, tc;
	int64_t base = (p / inner) * C * inner + p % inner;
	bool sparse = o->kind == ENG_LOSS_SPARSE_CE;
	double w = eng__sw(j, p);

	if (sparse) {
		double v = eng_tensor_at(j->yt, p);
		if (o->has_ignore_class && v == (double)o->ignore_class)
			return;
		tc = (int64_t)v;
	} else {
		read_row(j->yt, base, C, inner, d);
		tc = argmax_d(d, C);
		if (o->has_ignore_class && tc == o->ignore_class)
			return;
	}
	read_row(j->yp, base, C, inner, q);
	if (x->ntop) {
		double xt = q[tc];
		int64_t above = 0;
		for (int64_t c = 0; c < C; c++)
			above += q[c] > xt;
		top_add(xp, x, above);
	}
	if (!x->bins && !j->x_nll)
		return;
	int64_t am = argmax_d(q, C);
	double nll = 0, brier = 0;
	if (o->from_logits) { /* probabilities into q; log-probabilities on the fly */
		double m = q[am], s = 0;
		for (int64_t c = 0; c < C; c++)
			s += exp(q[c] - m);
		double ls = log(s);
		for (int64_t c = 0; c < C; c++) {
			double lp = (q[c] - m) - ls;
			if (sparse ? c == tc : d[c] != 0)
				nll -= (sparse ? 1.0 : d[c]) * lp;
			q[c] = exp(lp);
		}
	} else {
		double z = 0;
		for (int64_t c = 0; c < C; c++)
			z += q[c];
		for (int64_t c = 0; c < C; c++) {
			q[c] /= z;
			if (sparse ? c == tc : d[c] != 0)
				nll -= (sparse ? 1.0 : d[c]) * log(clip(q[c]));
		}
	}
	if (j->x_nll)
		add_nll(xp, nll, w);
	if (!x->bins)
		return;
	for (int64_t c = 0; c < C; c++) {
		double y = sparse ? (c == tc ? 1.0 : 0.0) : d[c];
		brier += (q[c] - y) * (q[c] - y);
	}
	add_calib(xp, x->bins, q[am], am == tc, brier, w);
}

int eng__extra_position(const eng__loss_job *j, eng__extra_part *xp, int64_t p)
{
	double *q = malloc((size_t)(2 * j->C + 1) * sizeof(double));
	if (!q)
		return ENG_ENOMEM;
	cat_position(j, xp, p, q, q + j->C);
	free(q);
	return 0;
}

/* ---- the fast paths: float32 rows with the class axis last ------------------------------------- */

#ifdef LOSSD_HOT_V4
#include <immintrin.h>

__attribute__((target("arch=x86-64-v4"))) static int64_t count_above_v4(const float *x, int64_t C,
                                                                        float t, int64_t cap)
{
	const __m512 vt = _mm512_set1_ps(t);
	int64_t n = 0, c = 0;
	for (; c + 64 <= C && n < cap; c += 64) {
		uint64_t m =
		        (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c), vt, _CMP_GT_OQ) |
		        (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c + 16), vt, _CMP_GT_OQ)
		                << 16 |
		        (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c + 32), vt, _CMP_GT_OQ)
		                << 32 |
		        (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(x + c + 48), vt, _CMP_GT_OQ)
		                << 48;
		n += __builtin_popcountll(m);
	}
	for (; c < C && n < cap; c += 16) {
		int64_t left = C - c < 16 ? C - c : 16;
		__mmask16 k = (__mmask16)((1u << left) - 1);
		__m512 v = _mm512_maskz_loadu_ps(k, x + c);
		n += __builtin_popcount(_mm512_mask_cmp_ps_mask(k, v, vt, _CMP_GT_OQ));
	}
	return n < cap ? n : cap;
}
#endif

int64_t eng__count_above_f32(const float *x, int64_t C, float t, int64_t cap)
{
#ifdef LOSSD_HOT_V4
	if (__builtin_cpu_supports("x86-64-v4"))
		return count_above_v4(x, C, t, cap);
#endif
	int64_t n = 0;
	for (int64_t c = 0; c < C; c++)
		n += x[c] > t;
	return n < cap ? n : cap;
}

/* eng_calib_bin_of (calib.c) with its edges b / B read from edge[0..bins]
 * (the same doubles it divides out): no division, no call, per row. */
static inline int bin_of_edges(double pr, int bins, double B, const double *edge)
{
	if (!(pr > 0))
		return 0;
	if (pr >= 1)
		return bins - 1;
	int b = (int)(pr * B);
	if (b > bins - 1)
		b = bins - 1;
	if (b > 0 && pr < edge[b])
		b--;
	else if (b + 1 < bins && pr >= edge[b + 1])
		b++;
	return b;
}

void eng__extra_fused_rows(const eng__loss_job *j, eng__extra_part *xp, const float *x, int64_t p,
                           int64_t n, const eng__extra_fused *f)
{
	const eng_extra_opts *xo = j->xo;
	int64_t C = j->C;
	int bins = xo->bins;
	float et[64 + 8];
	double edge[64 + 1];
	bool table = bins > 0 && bins <= 64;
	/* exp(x_true - max) of the block, eight lanes at a time (~1 ulp of
	 * float): the true class's probability for the Brier score */
	for (int64_t k0 = 0; bins && k0 < n; k0 += 8) {
		v8f d = VSPLAT(0.0f);
		for (int64_t k = k0; k < k0 + 8 && k < n; k++)
			if (f->lab[k] >= 0 && !f->bad[k])
				d[k - k0] = x[k * C + f->lab[k]] - f->m[k];
		exp_neg(&d);
		memcpy(et + k0, &d, sizeof(d));
	}
	for (int b = 0; table && b <= bins; b++)
		edge[b] = (double)b / (double)bins;
	for (int64_t k = 0; k < n; k++) {
		int64_t tc = f->lab[k];
		if (tc < 0 || f->bad[k])
			continue;
		double w = eng__sw(j, p + k);
		if (xo->ntop)
			top_add(xp, xo, f->above[k]);
		if (j->x_nll)
			add_nll(xp, f->lo[k], w);
		if (bins) {
			/* one division a row: conf = 1 / s, p_true = e_true / s,
			 * sum p^2 = s2 / s^2 */
			double s = f->ones[k] + f->rest[k], s2 = f->ones[k] + f->rest2[k];
			double inv = 1.0 / s, pt = (double)et[k] * inv;
			double brier = s2 * inv * inv - 2 * pt + 1;
			brier = brier < 0 ? 0 : brier;
			xp->brier += w * brier;
			xp->calib_w += w;
			xp->calib_n++;
			/* conf = 1 / s is in (0, 1]: never NaN here */
			int b = table ? bin_of_edges(inv, bins, (double)bins, edge)
			              : eng_calib_bin_of(inv, bins);
			eng_calib_bin *bk = &xp->bin[b];
			bk->count++;
			bk->weight += w;
			bk->conf += w * inv;
			bk->acc += f->am[k] == tc ? w : 0.0;
		}
	}
}

/* The extra task's own pass for sparse CE from float32 logits, class axis
 * last, when the loss pass did not gather the figures. */
static void sparse_f32_position(const eng__loss_job *j, eng__extra_part *xp, int64_t p, double *q,
                                double *d)
{
	const eng_loss_opts *o = j->o;
	const eng_extra_opts *x = j->xo;
	int64_t C = j->C;
	double v = eng_tensor_at(j->yt, p);
	if (o->has_ignore_class && v == (double)o->ignore_class)
		return;
	int64_t tc = (int64_t)v, above, am;
	const float *row = (const float *)j->yp->data + p * C;
	double w = eng__sw(j, p), s1 = 1, s2 = 1;
	float m;
	row_f32_stats(row, C, row[tc], x->bins || j->x_nll, &above, &am, &m, &s1, &s2);
	if (!(isfinite(m) && isfinite(s1) && isfinite(s2))) {
		cat_position(j, xp, p, q, d); /* NaN or Inf (nan_policy propagate) */
		return;
	}
	if (x->ntop)
		top_add(xp, x, above);
	double xt = (double)row[tc] - (double)m;
	if (j->x_nll)
		add_nll(xp, log(s1) - xt, w);
	if (x->bins) {
		double pt = exp(xt) / s1, brier = s2 / (s1 * s1) - 2 * pt + 1;
		add_calib(xp, x->bins, 1.0 / s1, am == tc, brier < 0 ? 0 : brier, w);
	}
}

/* ---- the task and the driver ---------------------------------------------------------------------- */

void eng__extra_task(void *arg, int64_t t)
{
	const eng__loss_job *j = arg;
	const eng_loss_opts *o = j->o;
	eng__extra_part *xp = &j->xparts[t];
	int64_t p0, p1;
	bool fast = o->kind == ENG_LOSS_SPARSE_CE && o->from_logits && j->yp->dtype == ENG_F32 &&
	            j->inner == 1;

	eng__task_range(j, t, &p0, &p1);
	if (p0 >= p1)
		return;
	if (eng_loss_is_binary(o->kind)) {
		for (int64_t p = p0; p < p1; p++)
			binary_position(j, xp, p);
		return;
	}
	double *q = malloc((size_t)(2 * j->C + 1) * sizeof(double));
	if (!q) {
		xp->err = ENG_ENOMEM;
		return;
	}
	for (int64_t p = p0; p < p1; p++) {
		if (fast)
			sparse_f32_position(j, xp, p, q, q + j->C);
		else
			cat_position(j, xp, p, q, q + j->C);
	}
	free(q);
}

int eng__extra_prepare(eng__loss_job *j, eng_error *err)
{
	const eng_extra_opts *x = j->o->extra;
	const eng_loss_opts *o = j->o;
	j->xo = x;
	/* perplexity of the plain sparse loss is its own weighted mean */
	j->x_nll = x->perplexity && !(o->kind == ENG_LOSS_SPARSE_CE && !j->cw && !j->cost &&
	                              o->label_smoothing == 0);
	j->x_work = j->x_nll || x->ntop > 0 || x->bins > 0;
	if (!j->x_work)
		return 0;
	j->xparts = calloc((size_t)(j->ntasks ? j->ntasks : 1), sizeof(*j->xparts));
	if (x->bins > 0)
		j->xbins = calloc((size_t)(j->ntasks * x->bins), sizeof(*j->xbins));
	if (!j->xparts || (x->bins > 0 && !j->xbins))
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	j->x_fused = eng__xent_fuses_extra(j);
	for (int64_t t = 0; t < j->ntasks; t++) {
		j->xparts[t].bin = j->xbins ? j->xbins + t * x->bins : NULL;
		j->parts[t].xp = j->x_fused ? &j->xparts[t] : NULL;
	}
	return 0;
}

int eng__extra_finish(eng__loss_job *j, eng_loss_result *r, int64_t from, const eng_parallel *par,
                      eng_error *err)
{
	const eng_extra_opts *x = j->xo;
	r->extra = eng_extra_result_new(x);
	if (!r->extra)
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	eng_extra_result *e = r->extra;
	if (x->perplexity && !j->x_nll) {
		e->nll_sum = r->wloss_sum;
		e->nll_weight = r->weight_sum;
		e->nll_count = r->count;
	}
	if (!j->x_work)
		return 0;
	if (!j->x_fused)
		eng__parallel_from(par, from, j->ntasks, eng__extra_task, j);
	for (int64_t t = 0; t < j->ntasks; t++) {
		const eng__extra_part *xp = &j->xparts[t];
		if (xp->err)
			return eng_error_set(err, xp->err, NULL, -1, "out of memory");
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
	return 0;
}

void eng__extra_cleanup(eng__loss_job *j)
{
	free(j->xbins);
	free(j->xparts);
	j->xbins = NULL;
	j->xparts = NULL;
}
