/*
 * history.c - the step series of a stream (history.h): points of additive
 * aggregates ordered by step, each covering a range [step, step_end].
 *
 * Layout: parallel arrays, the fixed part of every point, the per-column
 * positive counts (n x columns int64) and, for a stream whose loss keeps
 * top-k, calibration or perplexity sums (extra.h), those sums flattened
 * into `xi` (n x ni int64: top_correct[ntop], top_count, nll_count,
 * calib_count, bin counts[bins]) and `xd` (n x nd double: nll_sum,
 * nll_weight, brier_sum, calib_weight, per bin weight, conf, acc). A point
 * costs 64 + 8 x (columns + ni + nd) bytes: a binary stream's 10,000
 * points 720 kB, with top_k [1, 5] and 15 bins 6.2 MB.
 *
 * The extra sums add like the loss sums, so a point's top-k accuracy and
 * calibration are exactly those of one batch of all its rows. A series
 * read from version-1 bytes (written before points kept them) has no extra
 * layout; adding a point that has one gives the older points zero sums
 * (no position measured: their top-k and calibration read as undefined).
 *
 * Invariants:
 * - Points are sorted and their ranges are disjoint: p[i].step_end <
 *   p[i+1].step; step <= step_end; every count < 2^62 and
 *   positives[c] <= count; weight_sum >= 0 and finite; loss_sum finite.
 * - `mag_loss` / `mag_weight` bound |loss_sum| and weight_sum of any
 *   point (the sums of the magnitudes of everything ever added), and
 *   `tot` bounds every count, so one check before a merge proves that no
 *   sum it makes overflows: a merge either fits entirely or fails as
 *   ENG_ELIMIT with nothing changed.
 *
 * Adding a series into another puts a point of step s into the point
 * whose range holds s, and merges any points a range of the source
 * overlaps into one range: equal steps add up, and totals are exact
 * whatever the order. The common case (one worker's batch of one step,
 * the newest step or one already present) is done in place; anything else
 * (a replica's whole series) builds the merged series aside and swaps.
 *
 * Retention: past max_points points, adjacent pairs (0,1), (2,3), ... are
 * merged into ranges, halving the count, until it fits. Every total stays
 * exact (sums only), the resolution stays uniform over the run, and the
 * cost is amortized O(1) per point. The rule depends only on the series
 * and max_points, so a replay of the same merges reaches the same points.
 *
 * Bytes (inside a stream state, see stream_codec.c), little-endian:
 *   u32 version (1 or 2), u32 0, u64 columns, u64 n,
 *   version 2 only: u32 ntop, u32 bins, u32 perplexity (0/1), u32 0,
 *              u64 top_k[ntop]
 *   per point: u64 step, step_end, updates, count, positions, correct,
 *              f64 weight_sum, loss_sum, u64 positives[columns],
 *              version 2 only: u64 xi[ni], f64 xd[nd]
 * A series without extra sums is written as version 1, byte for byte
 * what it was before version 2 existed; both versions are read. Every
 * field is checked on read (order, ranges, counts nested as in a stream's
 * metric section, finiteness).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "history_priv.h"
#include "loss_priv.h"

#define COUNT_LIMIT ((int64_t)1 << 62)
#define MAG_LIMIT   1e300

typedef struct hpt {
	int64_t step, step_end, updates, count, positions, correct;
	double weight_sum, loss_sum;
} hpt;

struct eng__hist {
	int64_t columns;
	size_t n, cap;
	hpt *p;
	int64_t *pos; /* n x columns */
	/* the extra sums' layout (has_x false: none) and their columns */
	bool has_x;
	eng_extra_opts xo;
	size_t ni, nd;
	int64_t *xi; /* n x ni */
	double *xd;  /* n x nd */
	int64_t tot; /* bound on every count: the sum of all counts added */
	double mag_loss, mag_weight;
	double mag_x; /* the sum of every extra double added (all >= 0) */
};

/* Slots of the flattened extra sums (see the file-top comment). */
#define XI_TOP_COUNT(o)   ((size_t)(o)->ntop)
#define XI_NLL_COUNT(o)   ((size_t)(o)->ntop + 1)
#define XI_CALIB_COUNT(o) ((size_t)(o)->ntop + 2)
#define XI_BIN(o, b)      ((size_t)(o)->ntop + 3 + (size_t)(b))
#define XD_NLL_SUM        0
#define XD_NLL_WEIGHT     1
#define XD_BRIER          2
#define XD_CALIB_WEIGHT   3
#define XD_BIN(b)         (4 + 3 * (size_t)(b))

static size_t x_ni(const eng_extra_opts *o)
{
	return (size_t)o->ntop + 3 + (size_t)o->bins;
}

static size_t x_nd(const eng_extra_opts *o)
{
	return 4 + 3 * (size_t)o->bins;
}

size_t eng_history_point_bytes(int64_t columns)
{
	return sizeof(hpt) + (size_t)columns * sizeof(int64_t);
}

static size_t point_bytes(const eng__hist *h)
{
	return eng_history_point_bytes(h->columns) + (h->ni + h->nd) * 8;
}

/* The most points h keeps under max_points and the byte bound. */
static size_t effective_max(const eng__hist *h, size_t max_points)
{
	size_t by_bytes = ENG_HISTORY_MAX_BYTES / point_bytes(h);
	size_t m = max_points < by_bytes ? max_points : by_bytes;
	return m < 2 ? 2 : m;
}

/* x: the extra layout, or NULL for none. */
static eng__hist *hist_new(int64_t columns, const eng_extra_opts *x, size_t cap)
{
	eng__hist *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->columns = columns;
	if (x) {
		h->has_x = true;
		h->xo = *x;
		h->ni = x_ni(x);
		h->nd = x_nd(x);
	}
	if (cap) {
		h->p = malloc(cap * sizeof(*h->p));
		h->pos = malloc(cap * (size_t)columns * sizeof(int64_t));
		h->xi = h->has_x ? malloc(cap * h->ni * sizeof(int64_t)) : NULL;
		h->xd = h->has_x ? malloc(cap * h->nd * sizeof(double)) : NULL;
		if (!h->p || !h->pos || (h->has_x && (!h->xi || !h->xd))) {
			eng__hist_free(h);
			return NULL;
		}
		h->cap = cap;
	}
	return h;
}

void eng__hist_free(eng__hist *h)
{
	if (!h)
		return;
	free(h->p);
	free(h->pos);
	free(h->xi);
	free(h->xd);
	free(h);
}

size_t eng__hist_memory(const eng__hist *h)
{
	return h ? sizeof(*h) + h->cap * point_bytes(h) : 0;
}

/* The extra sums of r into the slots xi, xd (r's layout). */
static void x_pack(int64_t *xi, double *xd, const eng_extra_result *r)
{
	const eng_extra_result *o = r;
	for (int i = 0; i < r->ntop; i++)
		xi[i] = r->top_correct[i];
	xi[XI_TOP_COUNT(o)] = r->top_count;
	xi[XI_NLL_COUNT(o)] = r->nll_count;
	xi[XI_CALIB_COUNT(o)] = r->calib_count;
	xd[XD_NLL_SUM] = r->nll_sum;
	xd[XD_NLL_WEIGHT] = r->nll_weight;
	xd[XD_BRIER] = r->brier_sum;
	xd[XD_CALIB_WEIGHT] = r->calib_weight;
	for (int b = 0; b < r->bins; b++) {
		xi[XI_BIN(o, b)] = r->bin[b].count;
		xd[XD_BIN(b)] = r->bin[b].weight;
		xd[XD_BIN(b) + 1] = r->bin[b].conf;
		xd[XD_BIN(b) + 2] = r->bin[b].acc;
	}
}

size_t eng__hist_size(const eng__hist *h)
{
	return h ? h->n : 0;
}

int eng__hist_from_totals(eng__hist **out, int64_t step, int64_t columns, int64_t updates,
                          int64_t rows, const int64_t *pos, const eng_loss_result *loss)
{
	const eng_extra_result *x = loss ? loss->extra : NULL;
	eng_extra_opts xo = ENG_EXTRA_OPTS_INIT;
	if (x) {
		xo.ntop = x->ntop;
		memcpy(xo.top_k, x->top_k, sizeof xo.top_k);
		xo.bins = x->bins;
		xo.perplexity = x->perplexity;
	}
	eng__hist *h = hist_new(columns, x ? &xo : NULL, 1);
	*out = NULL;
	if (!h)
		return ENG_ENOMEM;
	hpt *p = &h->p[0];
	p->step = p->step_end = step;
	p->updates = updates;
	p->count = rows;
	p->positions = loss ? loss->count : 0;
	p->correct = loss && loss->has_accuracy ? loss->correct : 0;
	p->weight_sum = loss ? loss->weight_sum : 0.0;
	p->loss_sum = loss ? loss->wloss_sum : 0.0;
	memcpy(h->pos, pos, (size_t)columns * sizeof(int64_t));
	h->n = 1;
	h->tot = updates + rows + p->positions; /* one batch's counts: far below 2^62 */
	h->mag_loss = fabs(p->loss_sum);
	h->mag_weight = p->weight_sum;
	if (x) {
		x_pack(h->xi, h->xd, x);
		for (size_t k = 0; k < h->nd; k++)
			h->mag_x += h->xd[k];
	}
	*out = h;
	return 0;
}

/* ---- adding points -------------------------------------------------------------- */

/* Adds point q (positives qpos, extra sums qxi/qxd, NULL when q has none)
 * into point i of h. */
static void add_into(eng__hist *h, size_t i, const hpt *q, const int64_t *qpos, const int64_t *qxi,
                     const double *qxd)
{
	hpt *p = &h->p[i];
	int64_t *pp = h->pos + i * (size_t)h->columns;
	if (q->step < p->step)
		p->step = q->step;
	if (q->step_end > p->step_end)
		p->step_end = q->step_end;
	p->updates += q->updates;
	p->count += q->count;
	p->positions += q->positions;
	p->correct += q->correct;
	p->weight_sum += q->weight_sum;
	p->loss_sum += q->loss_sum;
	for (int64_t c = 0; c < h->columns; c++)
		pp[c] += qpos[c];
	if (h->has_x && qxi) {
		int64_t *xi = h->xi + i * h->ni;
		double *xd = h->xd + i * h->nd;
		for (size_t k = 0; k < h->ni; k++)
			xi[k] += qxi[k];
		for (size_t k = 0; k < h->nd; k++)
			xd[k] += qxd[k];
	}
}

/* Appends a copy of q (capacity reserved by the caller); zero extra sums
 * when q has none. */
static void append(eng__hist *h, const hpt *q, const int64_t *qpos, const int64_t *qxi,
                   const double *qxd)
{
	h->p[h->n] = *q;
	memcpy(h->pos + h->n * (size_t)h->columns, qpos, (size_t)h->columns * sizeof(int64_t));
	if (h->has_x) {
		int64_t *xi = h->xi + h->n * h->ni;
		double *xd = h->xd + h->n * h->nd;
		if (qxi) {
			memcpy(xi, qxi, h->ni * sizeof(int64_t));
			memcpy(xd, qxd, h->nd * sizeof(double));
		} else {
			memset(xi, 0, h->ni * sizeof(int64_t));
			for (size_t k = 0; k < h->nd; k++)
				xd[k] = 0.0;
		}
	}
	h->n++;
}

/* The extra sums of point i of h (NULL when h keeps none). */
static const int64_t *xi_of(const eng__hist *h, size_t i)
{
	return h->has_x ? h->xi + i * h->ni : NULL;
}

static const double *xd_of(const eng__hist *h, size_t i)
{
	return h->has_x ? h->xd + i * h->nd : NULL;
}

/* Merges adjacent pairs until h has at most max points. */
static void trim(eng__hist *h, size_t max)
{
	size_t C = (size_t)h->columns;
	while (h->n > max) {
		size_t w = 0;
		for (size_t r = 0; r < h->n; r += 2, w++) {
			if (w != r) {
				h->p[w] = h->p[r];
				memmove(h->pos + w * C, h->pos + r * C, C * sizeof(int64_t));
				if (h->has_x) {
					memmove(h->xi + w * h->ni, h->xi + r * h->ni,
					        h->ni * sizeof(int64_t));
					memmove(h->xd + w * h->nd, h->xd + r * h->nd,
					        h->nd * sizeof(double));
				}
			}
			if (r + 1 < h->n)
				add_into(h, w, &h->p[r + 1], h->pos + (r + 1) * C, xi_of(h, r + 1),
				         xd_of(h, r + 1));
		}
		h->n = w;
	}
}

size_t eng__hist_find(const eng__hist *h, int64_t step)
{
	size_t lo = 0, hi = h ? h->n : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h->p[mid].step_end < step)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int reserve(eng__hist *h, size_t n)
{
	if (n <= h->cap)
		return 0;
	size_t nc = h->cap ? h->cap * 2 : 16;
	while (nc < n)
		nc *= 2;
	hpt *np = realloc(h->p, nc * sizeof(*np));
	if (!np)
		return ENG_ENOMEM;
	h->p = np;
	int64_t *npos = realloc(h->pos, nc * (size_t)h->columns * sizeof(int64_t));
	if (!npos)
		return ENG_ENOMEM;
	h->pos = npos;
	if (h->has_x) {
		int64_t *nxi = realloc(h->xi, nc * h->ni * sizeof(int64_t));
		if (!nxi)
			return ENG_ENOMEM;
		h->xi = nxi;
		double *nxd = realloc(h->xd, nc * h->nd * sizeof(double));
		if (!nxd)
			return ENG_ENOMEM;
		h->xd = nxd;
	}
	h->cap = nc;
	return 0;
}

/* a + b merged (both sorted, disjoint within themselves) into a new series
 * of layout x (NULL: none): overlapping ranges become one point. */
static eng__hist *merged(const eng__hist *a, const eng__hist *b, int64_t columns,
                         const eng_extra_opts *x)
{
	size_t na = a ? a->n : 0, nb = b->n, C = (size_t)columns;
	eng__hist *h = hist_new(columns, x, na + nb);
	if (!h)
		return NULL;
	size_t i = 0, j = 0;
	while (i < na || j < nb) {
		const eng__hist *from;
		size_t k;
		if (j >= nb || (i < na && a->p[i].step <= b->p[j].step)) {
			from = a;
			k = i++;
		} else {
			from = b;
			k = j++;
		}
		const hpt *q = &from->p[k];
		const int64_t *qxi = xi_of(from, k);
		const double *qxd = xd_of(from, k);
		if (h->n && h->p[h->n - 1].step_end >= q->step)
			add_into(h, h->n - 1, q, from->pos + k * C, qxi, qxd);
		else
			append(h, q, from->pos + k * C, qxi, qxd);
	}
	h->tot = (a ? a->tot : 0) + b->tot;
	h->mag_loss = (a ? a->mag_loss : 0) + b->mag_loss;
	h->mag_weight = (a ? a->mag_weight : 0) + b->mag_weight;
	h->mag_x = (a ? a->mag_x : 0) + b->mag_x;
	return h;
}

int eng__hist_check(const eng__hist *dst, const eng__hist *src, int64_t columns)
{
	if (!src || src->n == 0)
		return 0;
	if (src->columns != columns || (dst && dst->columns != columns))
		return ENG_ESTATE;
	int64_t dt = dst ? dst->tot : 0;
	if (src->tot >= COUNT_LIMIT || dt >= COUNT_LIMIT - src->tot)
		return ENG_ELIMIT;
	if (!((dst ? dst->mag_loss : 0) + src->mag_loss < MAG_LIMIT) ||
	    !((dst ? dst->mag_weight : 0) + src->mag_weight < MAG_LIMIT) ||
	    !((dst ? dst->mag_x : 0) + src->mag_x < MAG_LIMIT))
		return ENG_ENONFINITE;
	/* the extra layouts: equal, or one side has none (a series from
	 * version-1 bytes meeting new points) */
	if (dst && dst->has_x && src->has_x && !eng__extra_opts_equal(&dst->xo, &src->xo))
		return ENG_ESTATE;
	return 0;
}

int eng__hist_prepare(eng__hist_plan *plan, eng__hist *dst, const eng__hist *src, int64_t columns,
                      size_t max_points)
{
	memset(plan, 0, sizeof(*plan));
	int rc = eng__hist_check(dst, src, columns);
	if (rc || !src || src->n == 0)
		return rc;
	bool dx = dst && dst->has_x, sx = src->has_x;
	const hpt *q = &src->p[0];
	if (dst && dst->n && dx == sx && src->n == 1 && q->step == q->step_end) {
		size_t at = eng__hist_find(dst, q->step);
		plan->fast = true;
		plan->at = at;
		plan->inside = at < dst->n && dst->p[at].step <= q->step;
		return plan->inside ? 0 : reserve(dst, dst->n + 1);
	}
	(void)max_points; /* commit trims */
	plan->fresh = merged(dst, src, columns, dx ? &dst->xo : sx ? &src->xo : NULL);
	return plan->fresh ? 0 : ENG_ENOMEM;
}

/* The fast path's addition (prepare reserved the room). */
static void add_fast(eng__hist *dst, const eng__hist *src, const eng__hist_plan *plan)
{
	size_t C = (size_t)dst->columns;
	size_t at = plan->at, tail = dst->n - at;
	if (plan->inside) {
		add_into(dst, at, &src->p[0], src->pos, xi_of(src, 0), xd_of(src, 0));
	} else {
		memmove(dst->p + at + 1, dst->p + at, tail * sizeof(*dst->p));
		memmove(dst->pos + (at + 1) * C, dst->pos + at * C, tail * C * sizeof(int64_t));
		dst->p[at] = src->p[0];
		memcpy(dst->pos + at * C, src->pos, C * sizeof(int64_t));
		if (dst->has_x) { /* prepare made sure src has the same layout */
			size_t ni = dst->ni, nd = dst->nd;
			memmove(dst->xi + (at + 1) * ni, dst->xi + at * ni,
			        tail * ni * sizeof(int64_t));
			memmove(dst->xd + (at + 1) * nd, dst->xd + at * nd,
			        tail * nd * sizeof(double));
			memcpy(dst->xi + at * ni, src->xi, ni * sizeof(int64_t));
			memcpy(dst->xd + at * nd, src->xd, nd * sizeof(double));
		}
		dst->n++;
	}
	dst->tot += src->tot;
	dst->mag_loss += src->mag_loss;
	dst->mag_weight += src->mag_weight;
	dst->mag_x += src->mag_x;
}

void eng__hist_commit(eng__hist **dstp, const eng__hist *src, eng__hist_plan *plan,
                      size_t max_points)
{
	eng__hist *dst = *dstp;
	if (plan->fresh) {
		eng__hist_free(dst);
		*dstp = dst = plan->fresh;
		plan->fresh = NULL;
	} else if (plan->fast) {
		add_fast(dst, src, plan);
	} else {
		return;
	}
	trim(dst, effective_max(dst, max_points));
}

void eng__hist_plan_drop(eng__hist_plan *plan)
{
	eng__hist_free(plan->fresh);
	plan->fresh = NULL;
}

/* ---- reading -------------------------------------------------------------------- */

void eng__hist_get(eng_history_point *out, const eng__hist *h, size_t i)
{
	const hpt *p = &h->p[i];
	out->step = p->step;
	out->step_end = p->step_end;
	out->updates = p->updates;
	out->count = p->count;
	out->positions = p->positions;
	out->correct = p->correct;
	out->weight_sum = p->weight_sum;
	out->loss_sum = p->loss_sum;
	out->positives = h->pos + i * (size_t)h->columns;
}

const eng_extra_opts *eng__hist_extra_opts(const eng__hist *h)
{
	return h && h->has_x ? &h->xo : NULL;
}

void eng__hist_extra(eng_extra_result *out, const eng__hist *h, size_t i)
{
	const int64_t *xi = h->xi + i * h->ni;
	const double *xd = h->xd + i * h->nd;
	const eng_extra_opts *o = &h->xo;
	for (int k = 0; k < o->ntop; k++)
		out->top_correct[k] = xi[k];
	out->top_count = xi[XI_TOP_COUNT(o)];
	out->nll_count = xi[XI_NLL_COUNT(o)];
	out->calib_count = xi[XI_CALIB_COUNT(o)];
	out->nll_sum = xd[XD_NLL_SUM];
	out->nll_weight = xd[XD_NLL_WEIGHT];
	out->brier_sum = xd[XD_BRIER];
	out->calib_weight = xd[XD_CALIB_WEIGHT];
	for (int b = 0; b < o->bins; b++) {
		out->bin[b].count = xi[XI_BIN(o, b)];
		out->bin[b].weight = xd[XD_BIN(b)];
		out->bin[b].conf = xd[XD_BIN(b) + 1];
		out->bin[b].acc = xd[XD_BIN(b) + 2];
	}
}

/* ---- bytes ---------------------------------------------------------------------- */

#define HEAD_BYTES  24u
#define XHEAD_BYTES 16u

int eng__hist_write(uint8_t **out, size_t *len, const eng__hist *h)
{
	*out = NULL;
	*len = 0;
	if (!h || h->n == 0)
		return 0;
	size_t C = (size_t)h->columns, per = 64 + 8 * (C + h->ni + h->nd);
	size_t head = HEAD_BYTES + (h->has_x ? XHEAD_BYTES + 8 * (size_t)h->xo.ntop : 0);
	size_t n = head + h->n * per;
	uint8_t *b = malloc(n), *w = b;
	if (!b)
		return ENG_ENOMEM;
	eng__put_u32(w, h->has_x ? 2 : 1);
	eng__put_u32(w + 4, 0);
	eng__put_u64(w + 8, (uint64_t)C);
	eng__put_u64(w + 16, (uint64_t)h->n);
	w += HEAD_BYTES;
	if (h->has_x) {
		eng__put_u32(w, (uint32_t)h->xo.ntop);
		eng__put_u32(w + 4, (uint32_t)h->xo.bins);
		eng__put_u32(w + 8, h->xo.perplexity ? 1 : 0);
		eng__put_u32(w + 12, 0);
		w += XHEAD_BYTES;
		for (int k = 0; k < h->xo.ntop; k++, w += 8)
			eng__put_u64(w, (uint64_t)h->xo.top_k[k]);
	}
	for (size_t i = 0; i < h->n; i++) {
		const hpt *p = &h->p[i];
		eng__put_u64(w, (uint64_t)p->step);
		eng__put_u64(w + 8, (uint64_t)p->step_end);
		eng__put_u64(w + 16, (uint64_t)p->updates);
		eng__put_u64(w + 24, (uint64_t)p->count);
		eng__put_u64(w + 32, (uint64_t)p->positions);
		eng__put_u64(w + 40, (uint64_t)p->correct);
		eng__put_f64(w + 48, p->weight_sum);
		eng__put_f64(w + 56, p->loss_sum);
		w += 64;
		for (size_t c = 0; c < C; c++, w += 8)
			eng__put_u64(w, (uint64_t)h->pos[i * C + c]);
		for (size_t k = 0; k < h->ni; k++, w += 8)
			eng__put_u64(w, (uint64_t)h->xi[i * h->ni + k]);
		for (size_t k = 0; k < h->nd; k++, w += 8)
			eng__put_f64(w, h->xd[i * h->nd + k]);
	}
	*out = b;
	*len = n;
	return 0;
}

static bool count_ok(uint64_t v)
{
	return v < (uint64_t)COUNT_LIMIT;
}

static bool sum_ok(double v)
{
	return isfinite(v) && v >= 0.0;
}

/* The extra layout of version-2 bytes at *b (advanced past it), checked
 * like a stream's metric options. */
static bool read_layout(eng_extra_opts *o, const uint8_t **b, size_t *left)
{
	if (*left < XHEAD_BYTES)
		return false;
	uint32_t ntop = eng__get_u32(*b), bins = eng__get_u32(*b + 4), ppl = eng__get_u32(*b + 8);
	if (ntop > ENG_EXTRA_MAX_TOPK || bins > ENG_CALIB_MAX_BINS || ppl > 1 ||
	    eng__get_u32(*b + 12) != 0 || (!ntop && !bins && !ppl) ||
	    *left - XHEAD_BYTES < 8 * (size_t)ntop)
		return false;
	*b += XHEAD_BYTES;
	*left -= XHEAD_BYTES;
	o->ntop = (int)ntop;
	o->bins = (int)bins;
	o->perplexity = ppl;
	for (uint32_t k = 0; k < ntop; k++, *b += 8, *left -= 8) {
		uint64_t v = eng__get_u64(*b);
		if (v < 1 || !count_ok(v) || (k > 0 && (int64_t)v <= o->top_k[k - 1]))
			return false;
		o->top_k[k] = (int64_t)v;
	}
	return true;
}

/* Point i's extra sums are consistent with its `positions` (the rules of a
 * stream's metric section: counts nested, sums finite and >= 0, a bin's
 * confidence and accuracy within its weight, the bins within the totals). */
static bool extra_ok(const eng__hist *h, size_t i, int64_t positions)
{
	const eng_extra_opts *o = &h->xo;
	const int64_t *xi = h->xi + i * h->ni;
	const double *xd = h->xd + i * h->nd;
	int64_t top = xi[XI_TOP_COUNT(o)], nll = xi[XI_NLL_COUNT(o)], cal = xi[XI_CALIB_COUNT(o)];
	for (size_t k = 0; k < h->nd; k++)
		if (!sum_ok(xd[k]))
			return false;
	if (top > positions || nll > positions || cal > positions || (!o->ntop && top) ||
	    (!o->perplexity && nll) || (!o->bins && cal) ||
	    (nll == 0 && (xd[XD_NLL_SUM] != 0.0 || xd[XD_NLL_WEIGHT] != 0.0)) ||
	    (cal == 0 && (xd[XD_CALIB_WEIGHT] != 0.0 || xd[XD_BRIER] != 0.0)) ||
	    xd[XD_BRIER] > 2.0 * xd[XD_CALIB_WEIGHT] * (1.0 + 1e-9))
		return false;
	for (int k = 0; k < o->ntop; k++)
		if (xi[k] > top || (k > 0 && xi[k] < xi[k - 1]))
			return false;
	int64_t nb = 0;
	double wb = 0.0;
	for (int b = 0; b < o->bins; b++) {
		int64_t c = xi[XI_BIN(o, b)];
		double w = xd[XD_BIN(b)], top_w = w * (1.0 + 1e-9);
		if (xd[XD_BIN(b) + 1] > top_w || xd[XD_BIN(b) + 2] > top_w ||
		    (c == 0 && w != 0.0) || c > cal - nb)
			return false;
		nb += c;
		wb += w;
	}
	return wb <= xd[XD_CALIB_WEIGHT] * (1.0 + 1e-9);
}

int eng__hist_read(eng__hist **out, const uint8_t *b, size_t len, int64_t columns, const char **why)
{
	*out = NULL;
	*why = "bad history section";
	if (len < HEAD_BYTES)
		return ENG_ESTATE;
	uint32_t version = eng__get_u32(b);
	if ((version != 1 && version != 2) || eng__get_u32(b + 4) != 0 ||
	    eng__get_u64(b + 8) != (uint64_t)columns)
		return ENG_ESTATE;
	uint64_t n = eng__get_u64(b + 16);
	const uint8_t *r = b + HEAD_BYTES;
	size_t left = len - HEAD_BYTES;
	eng_extra_opts xo = ENG_EXTRA_OPTS_INIT;
	if (version == 2 && !read_layout(&xo, &r, &left)) {
		*why = "bad history metric layout";
		return ENG_ESTATE;
	}
	size_t C = (size_t)columns;
	size_t per = 64 + 8 * (C + (version == 2 ? x_ni(&xo) + x_nd(&xo) : 0));
	if (n == 0 || n > left / per || n * per != left) {
		*why = "history section of the wrong length";
		return ENG_ESTATE;
	}
	eng__hist *h = hist_new(columns, version == 2 ? &xo : NULL, (size_t)n);
	if (!h)
		return ENG_ENOMEM;
	for (size_t i = 0; i < n; i++, r += per) {
		uint64_t f[6];
		for (int k = 0; k < 6; k++)
			f[k] = eng__get_u64(r + 8 * k);
		double ws = eng__get_f64(r + 48), ls = eng__get_f64(r + 56);
		bool ok = f[0] <= f[1] && f[1] <= (uint64_t)INT64_MAX && count_ok(f[2]) &&
		          count_ok(f[3]) && count_ok(f[4]) && f[5] <= f[4] && isfinite(ws) &&
		          ws >= 0 && isfinite(ls) &&
		          (i == 0 || (int64_t)f[0] > h->p[i - 1].step_end);
		for (size_t c = 0; ok && c < C; c++) {
			uint64_t v = eng__get_u64(r + 64 + 8 * c);
			ok = v <= f[3];
			h->pos[i * C + c] = (int64_t)v;
		}
		double xsum = 0.0;
		if (ok && h->has_x) {
			const uint8_t *x = r + 64 + 8 * C;
			for (size_t k = 0; k < h->ni; k++, x += 8) {
				uint64_t v = eng__get_u64(x);
				ok = ok && count_ok(v);
				h->xi[i * h->ni + k] = ok ? (int64_t)v : 0;
			}
			for (size_t k = 0; k < h->nd; k++, x += 8)
				xsum += (h->xd[i * h->nd + k] = eng__get_f64(x));
			ok = ok && extra_ok(h, i, (int64_t)f[4]);
		}
		if (!ok) {
			eng__hist_free(h);
			*why = "bad history point";
			return ENG_ESTATE;
		}
		hpt *p = &h->p[i];
		p->step = (int64_t)f[0];
		p->step_end = (int64_t)f[1];
		p->updates = (int64_t)f[2];
		p->count = (int64_t)f[3];
		p->positions = (int64_t)f[4];
		p->correct = (int64_t)f[5];
		p->weight_sum = ws;
		p->loss_sum = ls;
		h->n = i + 1;
		uint64_t t = f[2] + f[3] + f[4]; /* each < 2^62: no overflow */
		if (t >= (uint64_t)COUNT_LIMIT || h->tot >= COUNT_LIMIT - (int64_t)t ||
		    !(h->mag_loss + fabs(ls) < MAG_LIMIT) || !(h->mag_weight + ws < MAG_LIMIT) ||
		    !(h->mag_x + xsum < MAG_LIMIT)) {
			eng__hist_free(h);
			*why = "history totals too large";
			return ENG_ESTATE;
		}
		h->tot += t;
		h->mag_loss += fabs(ls);
		h->mag_weight += ws;
		h->mag_x += xsum;
	}
	*out = h;
	return 0;
}

/* ---- the public readers (history.h) ------------------------------------------------ */

size_t eng_stream_history_size(const eng_stream *s)
{
	return eng__hist_size(eng__stream_hist_c(s));
}

size_t eng_stream_history_find(const eng_stream *s, int64_t step)
{
	return eng__hist_find(eng__stream_hist_c(s), step);
}

void eng_stream_history_get(eng_history_point *out, const eng_stream *s, size_t i)
{
	eng__hist_get(out, eng__stream_hist_c(s), i);
}

const eng_extra_opts *eng_stream_history_extra_opts(const eng_stream *s)
{
	return eng__hist_extra_opts(eng__stream_hist_c(s));
}

void eng_stream_history_extra(eng_extra_result *out, const eng_stream *s, size_t i)
{
	eng__hist_extra(out, eng__stream_hist_c(s), i);
}
