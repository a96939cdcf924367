/*
 * history.c - the step series of a stream (history.h): points of additive
 * aggregates ordered by step, each covering a range [step, step_end].
 *
 * Layout: two parallel arrays, the fixed part of every point and the
 * per-column positive counts (n x columns int64), so a point costs
 * 64 + 8 x columns bytes and a binary stream's 10,000 points 720 kB.
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
 * Bytes (inside a stream state, see stream.c), little-endian:
 *   u32 version (1), u32 0, u64 columns, u64 n,
 *   per point: u64 step, step_end, updates, count, positions, correct,
 *              f64 weight_sum, loss_sum, u64 positives[columns]
 * Every field is checked on read (order, ranges, counts, finiteness).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "history_priv.h"

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
	int64_t tot;  /* bound on every count: the sum of all counts added */
	double mag_loss, mag_weight;
};

size_t eng_history_point_bytes(int64_t columns)
{
	return sizeof(hpt) + (size_t)columns * sizeof(int64_t);
}

/* The most points a series of `columns` keeps under max_points and the
 * byte bound. */
static size_t effective_max(int64_t columns, size_t max_points)
{
	size_t by_bytes = ENG_HISTORY_MAX_BYTES / eng_history_point_bytes(columns);
	size_t m = max_points < by_bytes ? max_points : by_bytes;
	return m < 2 ? 2 : m;
}

static eng__hist *hist_new(int64_t columns, size_t cap)
{
	eng__hist *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->columns = columns;
	if (cap) {
		h->p = malloc(cap * sizeof(*h->p));
		h->pos = malloc(cap * (size_t)columns * sizeof(int64_t));
		if (!h->p || !h->pos) {
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
	free(h);
}

size_t eng__hist_memory(const eng__hist *h)
{
	return h ? sizeof(*h) + h->cap * eng_history_point_bytes(h->columns) : 0;
}

size_t eng__hist_size(const eng__hist *h)
{
	return h ? h->n : 0;
}

int eng__hist_from_totals(eng__hist **out, int64_t step, int64_t columns, int64_t updates,
                          int64_t rows, const int64_t *pos, const eng_loss_result *loss)
{
	eng__hist *h = hist_new(columns, 1);
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
	*out = h;
	return 0;
}

/* ---- adding points -------------------------------------------------------------- */

static void add_into(eng__hist *h, size_t i, const hpt *q, const int64_t *qpos)
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
}

/* Appends a copy of q (capacity reserved by the caller). */
static void append(eng__hist *h, const hpt *q, const int64_t *qpos)
{
	h->p[h->n] = *q;
	memcpy(h->pos + h->n * (size_t)h->columns, qpos, (size_t)h->columns * sizeof(int64_t));
	h->n++;
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
			}
			if (r + 1 < h->n)
				add_into(h, w, &h->p[r + 1], h->pos + (r + 1) * C);
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
	h->cap = nc;
	return 0;
}

/* a + b merged (both sorted, disjoint within themselves) into a new series:
 * overlapping ranges become one point. */
static eng__hist *merged(const eng__hist *a, const eng__hist *b, int64_t columns)
{
	size_t na = a ? a->n : 0, nb = b->n, C = (size_t)columns;
	eng__hist *h = hist_new(columns, na + nb);
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
		if (h->n && h->p[h->n - 1].step_end >= q->step)
			add_into(h, h->n - 1, q, from->pos + k * C);
		else
			append(h, q, from->pos + k * C);
	}
	h->tot = (a ? a->tot : 0) + b->tot;
	h->mag_loss = (a ? a->mag_loss : 0) + b->mag_loss;
	h->mag_weight = (a ? a->mag_weight : 0) + b->mag_weight;
	return h;
}

int eng__hist_prepare(eng__hist_plan *plan, eng__hist *dst, const eng__hist *src, int64_t columns,
                      size_t max_points)
{
	memset(plan, 0, sizeof(*plan));
	if (!src || src->n == 0)
		return 0;
	if (src->columns != columns || (dst && dst->columns != columns))
		return ENG_ESTATE;
	int64_t dt = dst ? dst->tot : 0;
	if (src->tot >= COUNT_LIMIT || dt >= COUNT_LIMIT - src->tot)
		return ENG_ELIMIT;
	if (!((dst ? dst->mag_loss : 0) + src->mag_loss < MAG_LIMIT) ||
	    !((dst ? dst->mag_weight : 0) + src->mag_weight < MAG_LIMIT))
		return ENG_ENONFINITE;
	const hpt *q = &src->p[0];
	if (dst && dst->n && src->n == 1 && q->step == q->step_end) {
		size_t at = eng__hist_find(dst, q->step);
		plan->fast = true;
		plan->at = at;
		plan->inside = at < dst->n && dst->p[at].step <= q->step;
		return plan->inside ? 0 : reserve(dst, dst->n + 1);
	}
	(void)max_points; /* commit trims */
	plan->fresh = merged(dst, src, columns);
	return plan->fresh ? 0 : ENG_ENOMEM;
}

/* The fast path's addition (prepare reserved the room). */
static void add_fast(eng__hist *dst, const eng__hist *src, const eng__hist_plan *plan)
{
	size_t C = (size_t)dst->columns;
	if (plan->inside) {
		add_into(dst, plan->at, &src->p[0], src->pos);
	} else {
		memmove(dst->p + plan->at + 1, dst->p + plan->at,
		        (dst->n - plan->at) * sizeof(*dst->p));
		memmove(dst->pos + (plan->at + 1) * C, dst->pos + plan->at * C,
		        (dst->n - plan->at) * C * sizeof(int64_t));
		dst->p[plan->at] = src->p[0];
		memcpy(dst->pos + plan->at * C, src->pos, C * sizeof(int64_t));
		dst->n++;
	}
	dst->tot += src->tot;
	dst->mag_loss += src->mag_loss;
	dst->mag_weight += src->mag_weight;
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
	trim(dst, effective_max(dst->columns, max_points));
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

/* ---- bytes ---------------------------------------------------------------------- */

#define HEAD_BYTES 24u

int eng__hist_write(uint8_t **out, size_t *len, const eng__hist *h)
{
	*out = NULL;
	*len = 0;
	if (!h || h->n == 0)
		return 0;
	size_t C = (size_t)h->columns, per = 64 + 8 * C;
	size_t n = HEAD_BYTES + h->n * per;
	uint8_t *b = malloc(n), *w = b;
	if (!b)
		return ENG_ENOMEM;
	eng__put_u32(w, 1);
	eng__put_u32(w + 4, 0);
	eng__put_u64(w + 8, (uint64_t)C);
	eng__put_u64(w + 16, (uint64_t)h->n);
	w += HEAD_BYTES;
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
	}
	*out = b;
	*len = n;
	return 0;
}

static bool count_ok(uint64_t v)
{
	return v < (uint64_t)COUNT_LIMIT;
}

int eng__hist_read(eng__hist **out, const uint8_t *b, size_t len, int64_t columns, const char **why)
{
	*out = NULL;
	*why = "bad history section";
	if (len < HEAD_BYTES || eng__get_u32(b) != 1 || eng__get_u32(b + 4) != 0 ||
	    eng__get_u64(b + 8) != (uint64_t)columns)
		return ENG_ESTATE;
	size_t C = (size_t)columns, per = 64 + 8 * C;
	uint64_t n = eng__get_u64(b + 16);
	if (n == 0 || n > (len - HEAD_BYTES) / per || HEAD_BYTES + n * per != len) {
		*why = "history section of the wrong length";
		return ENG_ESTATE;
	}
	eng__hist *h = hist_new(columns, (size_t)n);
	if (!h)
		return ENG_ENOMEM;
	const uint8_t *r = b + HEAD_BYTES;
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
		    !(h->mag_loss + fabs(ls) < MAG_LIMIT) || !(h->mag_weight + ws < MAG_LIMIT)) {
			eng__hist_free(h);
			*why = "history totals too large";
			return ENG_ESTATE;
		}
		h->tot += t;
		h->mag_loss += fabs(ls);
		h->mag_weight += ws;
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
