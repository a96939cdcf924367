/*
 * sketch.c - bounded-memory mergeable AUC summary with a sound error bound.
 *
 * DESIGN. A score s is mapped to its order-preserving 64-bit key k(s)
 * (radix.h; -0.0 ties +0.0). The sketch is a list of buckets sorted by
 * key; bucket b holds lo_b <= hi_b, two keys of its items (the smallest
 * and largest it was merged, folded or grown with; items added inside its
 * cell later - INSERT - need not move them), and pos_b / neg_b, the
 * weights of the positives and negatives in it. Every bucket has a dyadic CELL: the set of keys sharing the first
 * L_b = clz(lo_b ^ hi_b) bits with lo_b (L_b = 64 for lo_b == hi_b: one
 * key). Invariant (I): the cells of the buckets are pairwise disjoint and
 * sorted. Dyadic cells are either nested or disjoint, never overlapping.
 *
 * AUC. Walking buckets from the highest key down, with T the positive
 * weight above bucket b,
 *     auc = sum_b neg_b (T_b + pos_b / 2) / (P N),
 * i.e. pairs in different buckets are ordered by the buckets and pairs
 * inside a bucket count one half. A bucket with lo == hi holds one key, so
 * its inner pairs ARE ties and one half is exact (scikit-learn's rule).
 *
 * SOUNDNESS. Cells are disjoint (I) and each bucket's items lie in its
 * cell, so for items in different buckets the sketch knows their order
 * exactly. Inside a folded bucket (lo < hi) each of its pos_b * neg_b
 * positive-negative pairs contributes 1, 1/2 or 0 to the exact
 * Mann-Whitney count, and the sketch counts 1/2; so the exact AUC differs
 * by at most
 *     error_bound = sum_{b : lo_b < hi_b} pos_b neg_b / (2 P N).
 * That holds for any history of inserts, folds and merges, because it only
 * uses (I) and "every item is in the bucket whose cell holds its key",
 * which every operation preserves (below). A tiny slack (1e-12) covers
 * double rounding when the bound is not zero.
 * For PR, a bucket's contribution to average precision depends only on
 * the weights above it (T, F) and the order inside it; over all orders it
 * lies in [p - (F+n) ln((T+F+n+p)/(T+F+n)), p (T+p)/(T+F+p)] (right
 * Riemann sums of the increasing precision (T+a)/(c+a)), so the reported
 * AP (every bucket one tie group) is within the bound given by summing
 * those intervals over folded buckets. A folded bucket reports the middle
 * of its interval (an exact one scikit-learn's tie value), so the PR bound
 * is half the summed interval widths.
 *
 * INSERT. An item whose key lies in the cell of a bucket is added to that
 * bucket: that is what MERGE does with it (below), and the cell does not
 * change. The bucket is found in O(1) by a ROUTING INDEX over the sorted
 * cells: a table per top-12-bit key prefix (one binade), and per prefix 4x
 * as many second-level entries as cells meet it; most entries lie inside
 * one cell and name its bucket, and an item there only adds its weight
 * (unweighted ones are counted in a small integer array, summed into the
 * buckets at each flush): lo/hi stay as they were, which changes neither
 * the cell nor any bound, only the threshold a curve shows for a folded
 * bucket (its lo). An entry not inside one cell is walked (lo/hi widened).
 * An item whose key lies in no cell is PENDING. At capacity, a pending key
 * may GROW a neighbouring folded bucket: it shares a longer prefix with
 * exactly one of the two buckets around it, and folding it in is legal
 * (the grown cell holds no other bucket's cell) iff the depth of that
 * common prefix exceeds the depths of the bucket's two boundaries - the
 * COARSEN rule; an exact bucket grows only if that costs no bound (it and
 * the key are of one class). Other pending keys are kept; at
 * 64Ki of them, and when the call ends, they are sorted by key (radix
 * sort), equal keys summed into exact buckets, the batch is MERGED in, the
 * list COARSENED to capacity and the index rebuilt. So while nothing is
 * folded every item keeps its own key (exact), every path keeps (I) and
 * "each item lies in its bucket's cell" (sound), and the state is a
 * function of the calls' items and their split into calls (deterministic;
 * a different split may fold differently once the sketch is at capacity).
 * MERGE of two lists satisfying (I): walk both in order of cell start
 * (larger cell first on a tie); a bucket whose cell lies inside the cell of
 * the last output bucket is folded into it (its items are in that cell, so
 * the invariant holds; the output cell does not change, as lo/hi already
 * straddled its midpoint), otherwise it is appended (disjoint from all
 * earlier output). So merge is the exact set union with children folded
 * into ancestors: commutative and associative as long as no capacity fold
 * happens, and sound always. Caps may differ; the result takes dst's. A
 * merge that overflows coarsens to capacity less a HEADROOM of 1/32 (not
 * to capacity, as INSERT's batches do), so a stream fed one training
 * step's scores at a time folds once per headroom's worth of new buckets
 * rather than at every merge (headroom() below).
 * COARSEN (over capacity). Fold two adjacent buckets i < j into one whose
 * cell is their lowest common cell, at level D(i,j) = clz(lo_i ^ lo_j).
 * That cell contains no third bucket iff D(i,j) is larger than the depths
 * of the neighbouring boundaries (a strict local maximum; adjacent depths
 * always differ, and the deepest boundary is one, so a legal fold always
 * exists). Depths of the remaining boundaries never change under a fold.
 * Among legal folds a min-heap picks the one that raises the bound least,
 * (pos_i+pos_j)(neg_i+neg_j) - [i folded] pos_i neg_i - [j folded] pos_j neg_j:
 * folds inside one-class runs are free, so the tails cost nothing and the
 * buckets concentrate where positives and negatives mix.
 *
 * WHY 1e-4 IN 1 MiB FOR 10M SMOOTH SCORES. A bucket is 32 bytes, so 1 MiB
 * holds 32766 buckets. If the region where both classes occur is cut into
 * B buckets of equal mass, pos_b ~ P/B and neg_b ~ N/B there, and the
 * bound is sum_b pos_b neg_b / (2PN) ~ 1/(2B) times the overlap of the two
 * score densities: ~1.5e-5 for B = 32k. Dyadic cells are coarser than
 * equal-mass cuts by a small factor, folds in one-class tails are
 * free, and the number of items does not enter at all. Measured by
 * bench/bench_sketch.c on 10^7 scores (N(0,1) negatives vs N(1,1)
 * positives, the same through a sigmoid, and a 0.1 shift): ROC bound
 * 1.8e-5 to 2.0e-5 (the true error ~4e-9), merge of two halves 2.6e-5 to
 * 2.7e-5 (the same with and without MERGE's headroom: its extra folds are
 * free ones, in one-class tails),
 * PR bound ~1e-4.
 *
 * MEMORY. State = the struct plus the bucket array, grown by doubling and
 * never beyond capacity = (cap - sizeof struct) / 32 buckets. Insert and
 * merge use transient buffers of O(capacity + 64Ki) (working lists, the
 * routing index: ~16 bytes per bucket) that are freed before returning;
 * the cap bounds what a stream keeps, not a call's scratch.
 *
 * Does not: give max_fpr (partial AUC) or the binned Keras number, keep
 * the items (only buckets), or accept NaN scores.
 */
#include "lossd/sketch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "aucfast.h"
#include "bytes.h"
#include "radix.h"

#define BATCH   65536
#define MAGIC   "LDSK"
#define VERSION 2u /* the one written; 1 is read too (serialization) */
#define SLACK   1e-12

typedef struct bucket {
	uint64_t lo, hi;
	double pos, neg;
} bucket;

struct eng_sketch {
	size_t cap;
	int64_t capacity; /* buckets the cap allows */
	int64_t nb, alloc;
	bucket *b;
	int64_t positives, negatives;
	double wadded; /* the weight of every item added, summed as it came */
};

/* ---- cells ----------------------------------------------------------------- */

static int level(const bucket *x)
{
	uint64_t d = x->lo ^ x->hi;
	return d ? __builtin_clzll(d) : 64;
}

static uint64_t cell_lo(const bucket *x)
{
	int l = level(x);
	return l == 0 ? 0 : (l == 64 ? x->lo : x->lo & (~(uint64_t)0 << (64 - l)));
}

static uint64_t cell_hi(const bucket *x)
{
	int l = level(x);
	return l == 0 ? ~(uint64_t)0 : (l == 64 ? x->lo : x->lo | (~(uint64_t)0 >> l));
}

static int depth(const bucket *a, const bucket *b)
{
	return __builtin_clzll(a->lo ^ b->lo); /* a, b in disjoint cells: lo differ */
}

static bool folded(const bucket *x)
{
	return x->lo != x->hi;
}

/* ---- lifecycle --------------------------------------------------------------- */

eng_sketch *eng_sketch_new(size_t cap_bytes)
{
	if (cap_bytes == 0)
		cap_bytes = ENG_SKETCH_DEFAULT_CAP;
	if (cap_bytes < ENG_SKETCH_MIN_CAP || cap_bytes > ENG_SKETCH_MAX_CAP)
		return NULL;
	eng_sketch *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cap = cap_bytes;
	s->capacity = (int64_t)((cap_bytes - sizeof(*s)) / sizeof(bucket));
	return s;
}

void eng_sketch_free(eng_sketch *s)
{
	if (!s)
		return;
	free(s->b);
	free(s);
}

void eng_sketch_reset(eng_sketch *s)
{
	free(s->b);
	s->b = NULL;
	s->nb = s->alloc = 0;
	s->positives = s->negatives = 0;
	s->wadded = 0.0;
}

size_t eng_sketch_memory(const eng_sketch *s)
{
	return sizeof(*s) + (size_t)s->alloc * sizeof(bucket);
}

size_t eng_sketch_cap(const eng_sketch *s)
{
	return s->cap;
}

int64_t eng_sketch_buckets(const eng_sketch *s)
{
	return s->nb;
}

int64_t eng_sketch_capacity(const eng_sketch *s)
{
	return s->capacity;
}

int64_t eng_sketch_positives(const eng_sketch *s)
{
	return s->positives;
}

int64_t eng_sketch_negatives(const eng_sketch *s)
{
	return s->negatives;
}

/* ---- merge and coarsen ---------------------------------------------------------- */

/* The low bits a bucket's cell leaves free: its cell is [lo & ~m, lo | m]
 * (m = 0 for one key). cell_lo/cell_hi without their branches. */
static inline uint64_t cell_span(const bucket *x)
{
	uint64_t d = x->lo ^ x->hi;
	return d ? ~(uint64_t)0 >> __builtin_clzll(d) : 0;
}

/* MERGE's fold of x into t, whose cell holds x's: t's cell does not change
 * (lo/hi straddle its midpoint already, or both are the one key). */
static inline void fold_into(bucket *t, const bucket *x)
{
	if (x->lo < t->lo)
		t->lo = x->lo;
	if (x->hi > t->hi)
		t->hi = x->hi;
	t->pos += x->pos;
	t->neg += x->neg;
}

/* Whether a bucket with cell start c and span m comes before one with
 * (c2, m2) in MERGE's order: by cell start, then the larger cell first; on
 * a full tie the bucket of the first list (tie true) goes first. */
static inline bool merges_first(uint64_t c, uint64_t m, uint64_t c2, uint64_t m2, bool tie)
{
	return c < c2 || (c == c2 && (m > m2 || (m == m2 && tie)));
}

/* The first k in [i, n) whose bucket of l does not come before (c, m)
 * (n when all do). A bucket whose hi lies below c has its cell start below
 * c, so it comes first: one compare a bucket. Past the first bucket whose
 * hi does not, cells start above that hi (I), so only that one may still
 * come first, by its cell start. */
static int64_t run_end(const bucket *l, int64_t i, int64_t n, uint64_t c, uint64_t m, bool tie)
{
	/* his rise (I): eight at a time while the eighth lies below c (a
	 * small update's buckets fall ~30 apart in a full stream's), then one
	 * at a time. A stream's 1 MiB of buckets is seldom in cache when an
	 * update comes (32 streams: 32 MiB), so the walk asks for the lines
	 * 4 KiB ahead of it (an address only: no access past the end). */
	while (i + 8 <= n && l[i + 7].hi < c) {
		__builtin_prefetch((const void *)((uintptr_t)(l + i) + (7 + 128) * sizeof *l));
		i += 8;
	}
	while (i < n && l[i].hi < c)
		i++;
	if (i < n) {
		uint64_t s = cell_span(&l[i]);
		if (merges_first(l[i].lo & ~s, s, c, m, tie))
			i++;
	}
	return i;
}

/* out (room for na + nb) := union of two lists satisfying (I); returns its
 * length. The cells of the two heads and of the last output bucket are
 * kept in locals: a fold leaves the output cell as it was (see MERGE), so
 * each bucket's cell is worked out once. A RUN: once a bucket of one list
 * is appended, the buckets of that list that come before the other
 * list's head are appended unchanged (their cells are disjoint from it and
 * from each other), so they are found by a scan of one compare a bucket
 * (run_end) and copied in one go: a small update merged into a large
 * stream costs its own buckets' steps and a copy of the rest, not a full
 * step per bucket held. */
static int64_t merge_lists(bucket *out, const bucket *a, int64_t na, const bucket *b, int64_t nb)
{
	if (na == 0 || nb == 0) {
		/* One list: its cells are disjoint already (I), nothing folds
		 * (an update's batch into the empty list of its delta). */
		int64_t n = na ? na : nb;
		if (n > 0)
			memcpy(out, na ? a : b, (size_t)n * sizeof(bucket));
		return n;
	}
	int64_t i = 0, j = 0, m = 0;
	uint64_t ma = cell_span(&a[0]), ca = a[0].lo & ~ma; /* span and start of a[i] */
	uint64_t mb = cell_span(&b[0]), cb = b[0].lo & ~mb; /* and of b[j] */
	uint64_t tlo = 0, thi = 0;                          /* the cell of out[m - 1] */
	while (i < na || j < nb) {
		const bucket *x;
		uint64_t cx, mx;
		bool from_a = j >= nb || (i < na && merges_first(ca, ma, cb, mb, true));
		if (from_a) {
			x = &a[i];
			cx = ca;
			mx = ma;
			if (++i < na) {
				ma = cell_span(&a[i]);
				ca = a[i].lo & ~ma;
			}
		} else {
			x = &b[j];
			cx = cb;
			mx = mb;
			if (++j < nb) {
				mb = cell_span(&b[j]);
				cb = b[j].lo & ~mb;
			}
		}
		if (m > 0 && cx >= tlo && (cx | mx) <= thi) {
			fold_into(&out[m - 1], x);
			continue;
		}
		out[m++] = *x;
		tlo = cx;
		thi = cx | mx;
		/* the run behind x in its own list */
		const bucket *l = from_a ? a : b;
		int64_t *k = from_a ? &i : &j, n = from_a ? na : nb;
		int64_t r = *k >= n  ? n
		            : from_a ? (j < nb ? run_end(a, i, na, cb, mb, true) : na)
		                     : (i < na ? run_end(b, j, nb, ca, ma, false) : nb);
		if (r > *k) {
			memcpy(&out[m], &l[*k], (size_t)(r - *k) * sizeof(bucket));
			m += r - *k;
			*k = r;
			uint64_t s = cell_span(&out[m - 1]);
			tlo = out[m - 1].lo & ~s;
			thi = tlo | s;
			if (r < n) {
				uint64_t sr = cell_span(&l[r]);
				if (from_a) {
					ma = sr;
					ca = l[r].lo & ~sr;
				} else {
					mb = sr;
					cb = l[r].lo & ~sr;
				}
			}
		}
	}
	return m;
}

/* A fold of boundary (left, next[left]) as it was when pushed: stale once
 * either bucket's version moved (left's version moves whenever its next
 * does). 24 bytes: bucket indices stay below 2^32 (capacity + one batch).
 * The heap's order is the cost, then the finer cell (larger depth), then
 * the leftmost, packed in two words compared as integers: cost's bits
 * (a cost is never NaN or -0.0, fold_cost, and the bits of doubles >= +0.0
 * rise with them) and (63 - depth) << 32 | left. */
typedef struct cand {
	uint64_t cost;  /* the double's bits */
	uint64_t order; /* (63 - depth) << 32 | left */
	uint32_t vl, vr;
} cand;

static cand cand_make(double cost, int depth, int64_t left, uint32_t vl, uint32_t vr)
{
	cand c;
	memcpy(&c.cost, &cost, sizeof cost);
	c.order = (uint64_t)(63 - depth) << 32 | (uint32_t)left;
	c.vl = vl;
	c.vr = vr;
	return c;
}

static inline uint32_t cand_left(const cand *c)
{
	return (uint32_t)c->order;
}

static inline bool cand_less(const cand *a, const cand *b)
{
	return a->cost != b->cost ? a->cost < b->cost : a->order < b->order;
}

static void heap_push(cand *h, int64_t *n, cand c)
{
	int64_t i = (*n)++;
	while (i > 0) {
		int64_t p = (i - 1) / 2;
		if (!cand_less(&c, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = c;
}

/* Puts c at slot i of the heap h[0..n) whose subtrees below i are heaps. */
static void sift_down(cand *h, int64_t n, int64_t i, cand last)
{
	for (;;) {
		int64_t l = 2 * i + 1, r = l + 1, s = i;
		const cand *best = &last;
		if (l < n && cand_less(&h[l], best)) {
			s = l;
			best = &h[l];
		}
		if (r < n && cand_less(&h[r], best))
			s = r;
		if (s == i)
			break;
		h[i] = h[s];
		i = s;
	}
	h[i] = last;
}

static cand heap_pop(cand *h, int64_t *n)
{
	cand top = h[0], last = h[--(*n)];
	int64_t i = 0;
	for (;;) {
		int64_t l = 2 * i + 1, r = l + 1, s = i;
		const cand *best = &last;
		if (l < *n && cand_less(&h[l], best)) {
			s = l;
			best = &h[l];
		}
		if (r < *n && cand_less(&h[r], best))
			s = r;
		if (s == i)
			break;
		h[i] = h[s];
		i = s;
	}
	if (*n > 0)
		h[i] = last;
	return top;
}

/* COARSEN's working set: the live buckets as a doubly linked list (int32:
 * indices stay below 2^31, as for cand), each bucket's version, and the
 * depth of the boundary on each bucket's left, bd[j] = depth(prev j, j)
 * (bd[0] and bd[n]: -1, no boundary). A fold of j into i keeps lo_i, and
 * the new boundary (i, q) has the depth (j, q) had: lo_i and lo_j share
 * more leading bits than lo_j and lo_q (the fold was legal), so lo_i and
 * lo_q share exactly as many as lo_j and lo_q. So bd is computed once, one
 * clz a boundary, and never again. */
typedef struct links {
	int32_t *prev, *next;
	uint32_t *ver;
	int8_t *bd;
} links;

static double fold_cost(const bucket *x, const bucket *y)
{
	double c = (x->pos + y->pos) * (x->neg + y->neg);
	if (folded(x))
		c -= x->pos * x->neg;
	if (folded(y))
		c -= y->pos * y->neg;
	return c > 0.0 ? c : 0.0;
}

/* Pushes the fold of boundary (i, next[i]) if it is legal: its depth a
 * strict local maximum. */
static void consider(cand *h, int64_t *nh, const bucket *b, const links *lk, int64_t i, int64_t n)
{
	if (i < 0)
		return;
	int64_t j = lk->next[i];
	if (j >= n)
		return;
	int d = lk->bd[j];
	if (lk->bd[i] >= d || lk->bd[lk->next[j]] >= d)
		return;
	heap_push(h, nh, cand_make(fold_cost(&b[i], &b[j]), d, i, lk->ver[i], lk->ver[j]));
}

/* Folds b[0..n) down to at most cap buckets, in place; returns the new
 * length, or -1 when out of memory (b untouched then). */
static int64_t coarsen(bucket *b, int64_t n, int64_t cap)
{
	if (n <= cap)
		return n;
	/* the candidates: at most one boundary in two is a local maximum,
	 * and each fold pushes two */
	size_t nc = (size_t)(n / 2 + 2 * (n - cap) + 2);
	size_t per = 2 * sizeof(int32_t) + sizeof(uint32_t);
	uint8_t *mem = malloc(nc * sizeof(cand) + (size_t)n * per + (size_t)n + 1);
	if (!mem)
		return -1;
	cand *h = (cand *)mem;
	links lk;
	lk.prev = (int32_t *)(h + nc);
	lk.next = lk.prev + n;
	lk.ver = (uint32_t *)(lk.next + n);
	lk.bd = (int8_t *)(lk.ver + n);
	lk.bd[0] = lk.bd[n] = -1;
	for (int64_t i = 0; i < n; i++) {
		lk.prev[i] = (int32_t)(i - 1);
		lk.next[i] = (int32_t)(i + 1);
		lk.ver[i] = 0;
		if (i > 0)
			lk.bd[i] = (int8_t)depth(&b[i - 1], &b[i]);
	}
	/* the legal folds as they stand: boundary i+1 (buckets i, i + 1)
	 * deeper than both its neighbours */
	int64_t nh = 0, live = n;
	for (int64_t i = 0; i + 1 < n; i++) {
		int d = lk.bd[i + 1];
		if (lk.bd[i] < d && lk.bd[i + 2] < d)
			h[nh++] = cand_make(fold_cost(&b[i], &b[i + 1]), d, i, 0, 0);
	}
	for (int64_t i = nh / 2 - 1; i >= 0; i--) /* heapify: O(n), same pops */
		sift_down(h, nh, i, h[i]);
	while (live > cap && nh > 0) {
		cand c = heap_pop(h, &nh);
		int64_t i = cand_left(&c), j = lk.next[i];
		if (lk.ver[i] != c.vl || j >= n || lk.ver[j] != c.vr)
			continue; /* stale */
		/* fold j into i (bd of the boundary after i: bd[next j], as is) */
		b[i].hi = b[j].hi;
		b[i].pos += b[j].pos;
		b[i].neg += b[j].neg;
		lk.ver[i]++;
		lk.ver[j] = UINT32_MAX; /* dead */
		lk.next[i] = lk.next[j];
		if (lk.next[j] < n)
			lk.prev[lk.next[j]] = (int32_t)i;
		live--;
		consider(h, &nh, b, &lk, lk.prev[i], n);
		consider(h, &nh, b, &lk, i, n);
	}
	/* the live buckets, in order (a fold unlinks, never moves) */
	int64_t m = 0;
	for (int64_t i = 0; i < n; i++)
		if (lk.ver[i] != UINT32_MAX)
			b[m++] = b[i];
	free(mem);
	return m;
}

/* The buckets s's array has room for once it holds n (n <= capacity):
 * grown by doubling, never beyond capacity. (A merge hands over its own
 * array instead, trimmed to this or to the merged list's length.) */
static int64_t alloc_for(const eng_sketch *s, int64_t n)
{
	if (n <= s->alloc)
		return s->alloc;
	int64_t a = s->alloc ? s->alloc : 64;
	while (a < n)
		a *= 2;
	return a > s->capacity ? s->capacity : a;
}

/* The buckets a MERGE that overflows leaves free below capacity: it
 * coarsens to capacity - headroom, so the next merges of small updates
 * (a training step's scores into a full stream) append without folding
 * until they fill it again. Coarsening walks every boundary, so folding
 * once per headroom's worth of new buckets instead of at every merge
 * divides that cost by the updates that fit; the sketch holds between
 * capacity - headroom and capacity buckets. The folds it adds are the
 * cheapest left (free ones first): a stream of 2,600 steps of 1,000
 * smooth scores ends with a bound 3.4% larger (1.83e-5 against 1.77e-5),
 * a merge of two full halves with the same bound. */
static int64_t headroom(const eng_sketch *s)
{
	return s->capacity / 32;
}

/* Replaces s's buckets by cur[0..n) (n <= capacity after coarsening). */
static int install(eng_sketch *s, const bucket *cur, int64_t n)
{
	if (n > s->alloc) {
		int64_t a = alloc_for(s, n);
		bucket *nbuf = realloc(s->b, (size_t)a * sizeof(bucket));
		if (!nbuf)
			return ENG_ENOMEM;
		s->b = nbuf;
		s->alloc = a;
	}
	if (n > 0)
		memcpy(s->b, cur, (size_t)n * sizeof(bucket));
	s->nb = n;
	return 0;
}

/* ---- insertion ----------------------------------------------------------------- */

/*
 * ROUTING INDEX over the working list (sorted, disjoint cells): which
 * bucket's cell holds a key, in O(1) expected. Level one has an entry per
 * top-12-bit prefix of the key (sign and exponent: one binade); a prefix
 * whose binade meets m > 1 cells gets 2^b level-two entries, b = bits(m) + 2,
 * indexed by the next b bits. Each level-two entry holds the first bucket
 * whose cell ends at or after the entry's first key, so a lookup reads two
 * entries and then steps over the few cells that end before the key (about
 * a quarter of one on average). ch[nb] = UINT64_MAX stops every walk.
 */
#define L1_BITS  12
#define L1_SIZE  (1u << L1_BITS)
#define L2_MAX_B 20

typedef struct route {
	uint64_t *l1; /* L1_SIZE: level-two offset | b << 32 */
	uint32_t *l2;
	int64_t l2_len, l2_alloc;
	uint64_t *cl, *ch; /* cell bounds, nb + 1 (sentinel) */
	int64_t cap;       /* room in cl, ch */
} route;

static void route_free(route *r)
{
	free(r->l1);
	free(r->l2);
	free(r->cl);
	free(r->ch);
}

static int bits_for(int64_t m)
{
	int b = 0;
	while (((int64_t)1 << b) < m)
		b++;
	b += 2;
	return b > L2_MAX_B ? L2_MAX_B : b;
}

/* Level-two entry: a bucket index, and whether the entry's whole key range
 * lies in that bucket's cell (WHOLE: no walk, no check; an item there only
 * adds its weight, see INSERT). */
#define E_WHOLE ((uint32_t)1 << 31)
#define E_INDEX (E_WHOLE - 1)

/* Builds the index of b[0..n) (n < 2^31). Returns 0 or ENG_ENOMEM. */
static int route_build(route *r, const bucket *b, int64_t n)
{
	if (!r->l1 && !(r->l1 = malloc(L1_SIZE * sizeof(uint64_t))))
		return ENG_ENOMEM;
	if (n + 1 > r->cap) {
		uint64_t *cl = realloc(r->cl, (size_t)(n + 1) * sizeof(uint64_t));
		if (cl)
			r->cl = cl;
		uint64_t *ch = realloc(r->ch, (size_t)(n + 1) * sizeof(uint64_t));
		if (ch)
			r->ch = ch;
		if (!cl || !ch)
			return ENG_ENOMEM;
		r->cap = n + 1;
	}
	for (int64_t j = 0; j < n; j++) {
		r->cl[j] = cell_lo(&b[j]);
		r->ch[j] = cell_hi(&b[j]);
	}
	r->cl[n] = r->ch[n] = UINT64_MAX;
	/* level one: for each prefix, how many cells meet it */
	int64_t len = 0, j = 0;
	int bt[L1_SIZE];
	for (uint32_t t = 0; t < L1_SIZE; t++) {
		uint64_t lo = (uint64_t)t << (64 - L1_BITS), hi = lo | (~(uint64_t)0 >> L1_BITS);
		while (r->ch[j] < lo)
			j++;
		int64_t m = 0;
		for (int64_t q = j; q < n && r->cl[q] <= hi; q++)
			m++;
		bt[t] = m > 1 ? bits_for(m) : 0;
		r->l1[t] = (uint64_t)len | ((uint64_t)bt[t] << 32);
		len += (int64_t)1 << bt[t];
	}
	if (len > r->l2_alloc) {
		uint32_t *l2 = realloc(r->l2, (size_t)len * sizeof(uint32_t));
		if (!l2)
			return ENG_ENOMEM;
		r->l2 = l2;
		r->l2_alloc = len;
	}
	r->l2_len = len;
	j = 0;
	for (uint32_t t = 0; t < L1_SIZE; t++) {
		uint64_t base = (uint64_t)t << (64 - L1_BITS);
		uint32_t *e = r->l2 + (uint32_t)r->l1[t];
		int sh = 64 - L1_BITS - bt[t];
		for (int64_t u = 0; u < ((int64_t)1 << bt[t]); u++) {
			uint64_t start = base + ((uint64_t)u << sh);
			uint64_t end = start + ((~(uint64_t)0) >> (64 - sh));
			while (r->ch[j] < start)
				j++;
			uint32_t v = (uint32_t)j;
			if (j < n && r->cl[j] <= start && end <= r->ch[j])
				v |= E_WHOLE;
			e[u] = v;
		}
	}
	return 0;
}

/* The level-two entry for key k. */
static inline uint32_t route_entry(const route *r, uint64_t k)
{
	uint64_t e = r->l1[k >> (64 - L1_BITS)];
	uint32_t bb = (uint32_t)(e >> 32);
	uint64_t sub = ((k << L1_BITS) >> 1) >> (63 - bb);
	return r->l2[(uint32_t)e + sub];
}

/*
 * One call's insertion. Items whose key lies in the cell of a bucket of the
 * working list are added to it where they are (what MERGE would do with
 * them: fold into the bucket whose cell holds them), others may GROW a
 * neighbour at capacity (grow_into). The rest are PENDING: kept as (key,
 * label, weight) and, when PENDING items are held or the call ends, sorted,
 * summed per key into exact buckets, MERGED in and the list COARSENED: the
 * old batch insertion, for the items that need it.
 */
#define PENDING BATCH
/* Smaller calls find cells by binary search: building the index costs
 * about as much as a few thousand searches. Same state either way. */
#define INDEX_MIN 2048
/* uint32 counts are settled before they could reach 2^32 */
#define COUNT_SETTLE ((int64_t)1 << 31)

typedef struct scratch {
	double *score, *w; /* read buffers: CHUNK items */
	uint8_t *lab;
	uint64_t *key, *tkey; /* pending */
	uint32_t *idx, *tidx;
	uint8_t *plab;
	double *pw;
	int64_t npend;
	bucket *batch;
	bucket *cur, *next; /* working lists: O(capacity + PENDING) each */
	int64_t ncur, room;
	uint32_t *cnt;   /* 2 per bucket of cur */
	int64_t counted; /* items since the counts were settled */
	bool indexed;    /* rt is built (calls of INDEX_MIN items or more) */
	route rt;
	int64_t np, nn;
	double wadd; /* the items' weight */
	void *mem;   /* every array above but rt's, in one block (scratch_init) */
} scratch;

#define CHUNK 4096

static void scratch_free(scratch *x)
{
	free(x->mem);
	x->mem = NULL;
	route_free(&x->rt);
}

/* The next n bytes of the block at *p (n a multiple of the alignment the
 * arrays after it need: the 8-byte ones come first, then the 4-byte, then
 * the bytes). */
static void *carve(uint8_t **p, size_t n)
{
	void *r = *p;
	*p += n;
	return r;
}

/* Scratch for adding n items: pending room of min(n, PENDING), and working
 * lists big enough for every merge result (at most the buckets held plus
 * one batch of pending items, and never more than capacity plus one). One
 * allocation for all of it: a small update made thirteen before, a good
 * part of its cost. */
static int scratch_init(scratch *x, const eng_sketch *s, int64_t n)
{
	memset(x, 0, sizeof(*x));
	size_t b = (size_t)(n < PENDING ? (n > 0 ? n : 1) : PENDING);
	size_t c = (size_t)(n < CHUNK ? (n > 0 ? n : 1) : CHUNK);
	int64_t held = s->nb + n < s->capacity ? s->nb + n : s->capacity;
	x->room = held + (int64_t)b;
	size_t r = (size_t)x->room;
	size_t wide = 2 * c * sizeof(double) + 2 * b * sizeof(uint64_t) + b * sizeof(double) +
	              (b + 2 * r) * sizeof(bucket);
	size_t narrow = (2 * b + 2 * r) * sizeof(uint32_t);
	uint8_t *p = malloc(wide + narrow + c + b);
	if (!p)
		return ENG_ENOMEM;
	x->mem = p;
	x->score = carve(&p, c * sizeof(double));
	x->w = carve(&p, c * sizeof(double));
	x->key = carve(&p, b * sizeof(uint64_t));
	x->tkey = carve(&p, b * sizeof(uint64_t));
	x->pw = carve(&p, b * sizeof(double));
	x->batch = carve(&p, b * sizeof(bucket));
	x->cur = carve(&p, r * sizeof(bucket));
	x->next = carve(&p, r * sizeof(bucket));
	x->idx = carve(&p, b * sizeof(uint32_t));
	x->tidx = carve(&p, b * sizeof(uint32_t));
	x->cnt = carve(&p, 2 * r * sizeof(uint32_t));
	memset(x->cnt, 0, 2 * r * sizeof(uint32_t));
	x->lab = carve(&p, c);
	x->plab = carve(&p, b);
	if (s->nb > 0)
		memcpy(x->cur, s->b, (size_t)s->nb * sizeof(bucket));
	x->ncur = s->nb;
	x->indexed = n >= INDEX_MIN;
	if (x->indexed && route_build(&x->rt, x->cur, x->ncur)) {
		scratch_free(x);
		return ENG_ENOMEM;
	}
	return 0;
}

/* Adds the counts into the buckets and clears them. */
static void settle_counts(scratch *x)
{
	x->counted = 0;
	for (int64_t j = 0; j < x->ncur; j++) {
		uint32_t q = x->cnt[2 * j], p = x->cnt[2 * j + 1];
		if (p | q) {
			x->cur[j].pos += (double)p;
			x->cur[j].neg += (double)q;
			x->cnt[2 * j] = x->cnt[2 * j + 1] = 0;
		}
	}
}

/* Merges the pending items into the working list and rebuilds the index. */
static int flush(scratch *x, const eng_sketch *s, eng_error *err)
{
	settle_counts(x);
	int64_t m = x->npend;
	if (m == 0)
		return 0;
	for (int64_t i = 0; i < m; i++)
		x->idx[i] = (uint32_t)i;
	eng__radix_sort64(x->key, x->idx, x->tkey, x->tidx, m);
	int64_t nb = 0;
	for (int64_t i = 0; i < m;) {
		bucket t = {x->key[i], x->key[i], 0.0, 0.0};
		int64_t j = i;
		for (; j < m && x->key[j] == x->key[i]; j++) {
			uint32_t k = x->idx[j];
			if (x->plab[k])
				t.pos += x->pw[k];
			else
				t.neg += x->pw[k];
		}
		x->batch[nb++] = t;
		i = j;
	}
	x->npend = 0;
	int64_t n = merge_lists(x->next, x->cur, x->ncur, x->batch, nb);
	n = coarsen(x->next, n, s->capacity);
	if (n < 0)
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	bucket *t = x->cur;
	x->cur = x->next;
	x->next = t;
	x->ncur = n;
	if (x->indexed && route_build(&x->rt, x->cur, x->ncur))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	return 0;
}

/* Cell bounds of bucket j of the working list (UINT64_MAX past its end):
 * from the index's arrays when there is one, else from the bucket. */
static uint64_t cell_start(const scratch *x, int64_t j)
{
	if (j >= x->ncur)
		return UINT64_MAX;
	return x->indexed ? x->rt.cl[j] : cell_lo(&x->cur[j]);
}

static uint64_t cell_end(const scratch *x, int64_t j)
{
	if (j >= x->ncur)
		return UINT64_MAX;
	return x->indexed ? x->rt.ch[j] : cell_hi(&x->cur[j]);
}

/* The first bucket whose cell ends at or after k (ncur if none): a walk
 * from the key's index entry, or a binary search without an index. */
static int64_t first_after(const scratch *x, uint64_t k, uint32_t e)
{
	if (x->indexed) {
		int64_t j = e & E_INDEX;
		while (x->rt.ch[j] < k)
			j++;
		return j;
	}
	int64_t lo = 0, hi = x->ncur;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (cell_hi(&x->cur[mid]) < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * GROW (only when the list is at capacity, where a new bucket would cost a
 * fold anyway): key k lies between the cells of buckets i and j = i + 1.
 * It shares a longer prefix with exactly one of them; folding it into that
 * one (if already folded, or exact with no weight of the key's other class:
 * a fold that COARSEN would count free) grows that bucket's cell to the
 * cell of the common prefix, which is legal iff the grown cell holds no
 * neighbour's cell: its depth must exceed the depths of the bucket's two
 * boundaries (the same rule as COARSEN). Then (I) holds and k is in its
 * bucket's cell: sound. lo/hi take k (they now span the grown cell).
 * Returns the bucket, or -1 (k pends).
 */
static int64_t grow_into(scratch *x, uint64_t k, uint8_t y, int64_t j)
{
	int64_t n = x->ncur, i = j - 1, b;
	if (i >= 0 &&
	    (j >= n || __builtin_clzll(x->cur[i].lo ^ k) > __builtin_clzll(k ^ x->cur[j].lo)))
		b = i;
	else if (j < n)
		b = j;
	else
		return -1;
	bucket *t = &x->cur[b];
	/* an exact bucket only grows for free: it and the key of one class */
	if (!folded(t) &&
	    (y ? t->neg + (double)x->cnt[2 * b] : t->pos + (double)x->cnt[2 * b + 1]) > 0.0)
		return -1;
	int d = __builtin_clzll(t->lo ^ k);
	if (b > 0 && depth(&x->cur[b - 1], t) >= d)
		return -1;
	if (b + 1 < n && depth(t, &x->cur[b + 1]) >= d)
		return -1;
	if (k < t->lo)
		t->lo = k;
	if (k > t->hi)
		t->hi = k;
	if (x->indexed) {
		x->rt.cl[b] = cell_lo(t);
		x->rt.ch[b] = cell_hi(t);
	}
	return b;
}

/* eng__key64 without branches (-0.0 ties +0.0; NaN never comes here). */
static inline uint64_t key_of(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	u &= -(uint64_t)(v != 0.0);
	uint64_t neg = (uint64_t)((int64_t)u >> 63);
	return u ^ (neg | ((uint64_t)1 << 63));
}

/* An item whose entry is not WHOLE (or any item without an index): find
 * the cell that holds it, grow one, or pend it. A hit only adds the weight
 * (lo/hi stay), so the state does not depend on whether an index was used.
 * Returns 0 or an error of flush. */
static int insert_slow(scratch *x, const eng_sketch *s, uint64_t k, uint32_t e, uint8_t y,
                       double wi, eng_error *err)
{
	int64_t j = first_after(x, k, e);
	if (cell_start(x, j) > k) {
		/* in no cell; a bucket grown before may hold it now */
		j = j > 0 && cell_end(x, j - 1) >= k ? j - 1
		    : x->ncur >= s->capacity         ? grow_into(x, k, y, j)
		                                     : -1;
	}
	if (j < 0) {
		x->key[x->npend] = k;
		x->plab[x->npend] = y;
		x->pw[x->npend] = wi;
		return ++x->npend == PENDING ? flush(x, s, err) : 0;
	}
	if (y)
		x->cur[j].pos += wi;
	else
		x->cur[j].neg += wi;
	return 0;
}

/* Items looked up ahead of their update: the lookups of a group have no
 * branch between them, so their cache misses overlap. */
#define GROUP 32

/* Adds cnt valid items (w NULL: all weigh 1). The common case - the key's
 * entry lies inside one bucket's cell - only adds a weight: unweighted
 * items are counted in cnt (2 j + label; the list's buckets), a small
 * array that stays in cache, and summed into the buckets at flushes. */
static int insert_items(scratch *x, const eng_sketch *s, const double *score, const uint8_t *lab,
                        const double *w, int64_t cnt, eng_error *err)
{
	int64_t ones = 0;
	for (int64_t i = 0; i < cnt; i++)
		ones += lab[i];
	x->np += ones;
	x->nn += cnt - ones;
	double wsum = w ? 0.0 : (double)cnt;
	for (int64_t i = 0; w && i < cnt; i++)
		wsum += w[i];
	x->wadd += wsum;
	if (x->counted > COUNT_SETTLE)
		settle_counts(x);
	x->counted += cnt;
	uint64_t kk[GROUP];
	uint32_t ee[GROUP];
	/* locals: the tree builds with -fno-strict-aliasing, so fields of x
	 * would be reloaded after every store */
	uint32_t *counts = x->cnt;
	bucket *cur = x->cur;
	for (int64_t g = 0; g < cnt; g += GROUP) {
		int64_t ng = cnt - g < GROUP ? cnt - g : GROUP;
		const route *r = &x->rt;
		for (int64_t i = 0; i < ng; i++) {
			uint64_t k = key_of(score[g + i]);
			kk[i] = k;
			ee[i] = x->indexed ? route_entry(r, k) : 0;
		}
		for (int64_t i = 0; i < ng; i++) {
			uint8_t y = lab[g + i];
			uint32_t e = ee[i];
			if (!w) {
				if (e & E_WHOLE) {
					counts[2 * (e & E_INDEX) + y]++;
					continue;
				}
			} else {
				double wi = w[g + i];
				if (wi == 0.0)
					continue;
				if (e & E_WHOLE) {
					bucket *t = &cur[e & E_INDEX];
					if (y)
						t->pos += wi;
					else
						t->neg += wi;
					continue;
				}
			}
			int64_t before = x->npend;
			int rc = insert_slow(x, s, kk[i], e, y, w ? w[g + i] : 1.0, err);
			if (rc)
				return rc;
			cur = x->cur;
			if (x->npend < before && x->indexed) /* flushed: new index */
				for (int64_t q = i + 1; q < ng; q++)
					ee[q] = route_entry(&x->rt, kk[q]);
		}
	}
	return 0;
}

static int commit(eng_sketch *s, scratch *x, eng_error *err)
{
	int rc = flush(x, s, err);
	if (rc)
		return rc;
	if (install(s, x->cur, x->ncur))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	s->positives += x->np;
	s->negatives += x->nn;
	s->wadded += x->wadd;
	return 0;
}

int eng_sketch_add(eng_sketch *s, const eng_auc_data *d, int64_t col, eng_error *err)
{
	scratch x;
	eng__auc_reader r;
	int64_t n, ncols;
	int rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	eng__auc_reader_init(&r, d, col, ncols);
	if (scratch_init(&x, s, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += CHUNK) {
		int64_t cnt = n - from < CHUNK ? n - from : CHUNK;
		const double *sp;
		rc = eng__auc_read(&r, from, cnt, x.score, &sp, x.lab, x.w, err);
		if (rc)
			goto out;
		rc = insert_items(&x, s, sp, x.lab, r.weighted ? x.w : NULL, cnt, err);
		if (rc)
			goto out;
	}
	rc = commit(s, &x, err);
out:
	scratch_free(&x);
	return rc;
}

/* INSERT into an EMPTY sketch of at most one batch of items (validated):
 * every item is pending, so the whole call is one flush - keys in input
 * order, sorted stably, equal keys summed in that order, coarsened to
 * capacity - which this does without the scratch's working lists, index
 * and per-item lookups. The same state, bit for bit (test_sketch.c):
 * a stream update's delta, built on every update, is this case. */
static int add_fresh(eng_sketch *s, const double *score, const uint8_t *label, const double *w,
                     int64_t n, eng_error *err)
{
	size_t m = (size_t)n;
	uint8_t *mem = malloc(m * (2 * sizeof(uint64_t) + 2 * sizeof(uint32_t) + sizeof(bucket)));
	if (!mem)
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	uint8_t *p = mem;
	bucket *b = carve(&p, m * sizeof(bucket));
	uint64_t *key = carve(&p, m * sizeof(uint64_t)), *tkey = carve(&p, m * sizeof(uint64_t));
	uint32_t *idx = carve(&p, m * sizeof(uint32_t)), *tidx = carve(&p, m * sizeof(uint32_t));
	int64_t k = 0, ones = 0;
	double wadd = 0.0;
	for (int64_t from = 0; from < n; from += CHUNK) {
		/* the weight added, summed by chunks as insert_items does */
		int64_t to = n - from < CHUNK ? n : from + CHUNK;
		double wsum = w ? 0.0 : (double)(to - from);
		for (int64_t i = from; i < to; i++) {
			ones += label[i];
			if (w) {
				wsum += w[i];
				if (w[i] == 0.0)
					continue;
			}
			key[k] = key_of(score[i]);
			idx[k++] = (uint32_t)i;
		}
		wadd += wsum;
	}
	eng__radix_sort64(key, idx, tkey, tidx, k);
	int64_t nb = 0;
	for (int64_t i = 0; i < k;) {
		bucket t = {key[i], key[i], 0.0, 0.0};
		for (; i < k && key[i] == t.lo; i++) {
			double wi = w ? w[idx[i]] : 1.0;
			if (label[idx[i]])
				t.pos += wi;
			else
				t.neg += wi;
		}
		b[nb++] = t;
	}
	nb = coarsen(b, nb, s->capacity);
	int rc = nb < 0 || install(s, b, nb) ? ENG_ENOMEM : 0;
	free(mem);
	if (rc)
		return eng_error_set(err, rc, "y_score", -1, "out of memory");
	s->positives += ones;
	s->negatives += n - ones;
	s->wadded += wadd;
	return 0;
}

int eng_sketch_add_values(eng_sketch *s, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err)
{
	scratch x;
	int rc = 0;
	if (s->nb == 0 && n > 0 && n <= PENDING) {
		int64_t i = eng__auc_first_bad(score, label, weight, n);
		if (i < 0)
			return add_fresh(s, score, label, weight, n, err);
	}
	if (scratch_init(&x, s, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += CHUNK) {
		int64_t cnt = n - from < CHUNK ? n - from : CHUNK;
		const double *sc = score + from, *w = weight ? weight + from : NULL;
		const uint8_t *lb = label + from;
		int64_t i = eng__auc_first_bad(sc, lb, w, cnt);
		if (i >= 0) {
			if (isnan(sc[i]))
				rc = eng_error_set(err, ENG_ENONFINITE, "y_score", from + i,
				                   "y_score is NaN");
			else if (lb[i] > 1)
				rc = eng_error_set(err, ENG_ELABEL, "y_true", from + i,
				                   "label is not 0 or 1");
			else
				rc = eng_error_set(err, ENG_EWEIGHT, "sample_weight", from + i,
				                   "weight %g is not finite and >= 0", w[i]);
			goto out;
		}
		rc = insert_items(&x, s, sc, lb, w, cnt, err);
		if (rc)
			goto out;
	}
	rc = commit(s, &x, err);
out:
	scratch_free(&x);
	return rc;
}

/* Where MERGE puts each bucket of b among a's when none of b's needs more
 * than that (see eng_sketch_merge): at[j] >= 0 is the bucket of a whose
 * cell holds b[j]'s (b[j] folds into it); at[j] = -1 - q says b[j] holds
 * one key that lies in no cell of a, so it is appended between a[q - 1]
 * and a[q]. Returns how many are appended, or -1 when a bucket of b is
 * folded and lies in no cell of a (it may hold some of a's: the full
 * MERGE) or when more than room are appended (the result would not fit:
 * the full MERGE, which coarsens; a stream at capacity stops here after
 * room + 1 of them instead of walking all of a). The cells of b rise, so
 * each search starts at the last one found. */
static int64_t place(const bucket *a, int64_t na, const bucket *b, int64_t nb, int64_t room,
                     int64_t *at)
{
	int64_t i = 0, k = 0;
	for (int64_t j = 0; j < nb; j++) {
		uint64_t mb = cell_span(&b[j]), cb = b[j].lo & ~mb;
		/* the last bucket of a whose cell starts at or before b[j]'s */
		i = run_end(a, i > 0 ? i : 0, na, cb, 0, true) - 1;
		uint64_t ma = i >= 0 ? cell_span(&a[i]) : 0, ca = i >= 0 ? a[i].lo & ~ma : 0;
		if (i >= 0 && cb >= ca && (cb | mb) <= (ca | ma)) {
			at[j] = i;
		} else if (mb == 0) {
			at[j] = -2 - i; /* q = i + 1 */
			if (++k > room)
				return -1;
		} else {
			return -1;
		}
	}
	return k;
}

int eng_sketch_merge(eng_sketch *dst, const eng_sketch *src)
{
	/* IN PLACE: when every bucket of src lies in the cell of one of dst,
	 * or holds one key in none (one training step's scores into a full
	 * stream: most fall in its cells, a few between them), MERGE would
	 * fold each of the first into that bucket, in src's order (a bucket
	 * of dst goes first on a tie; cells inside one cell follow it), and
	 * append each of the others where its key falls (its cell meets no
	 * other): the same here, dst's list moved up once from the back to
	 * make room, instead of copied into a new list and back. While the
	 * result fits in capacity, as nothing is coarsened then. */
	int64_t *at = dst->nb > 0 && src->nb > 0 ? malloc((size_t)src->nb * sizeof(int64_t)) : NULL;
	int64_t k = at ? place(dst->b, dst->nb, src->b, src->nb, dst->capacity - dst->nb, at) : -1;
	if (k >= 0) {
		int64_t n = dst->nb + k;
		if (n > dst->alloc) {
			int64_t a = alloc_for(dst, n);
			bucket *nbuf = realloc(dst->b, (size_t)a * sizeof(bucket));
			if (!nbuf) {
				free(at);
				return ENG_ENOMEM;
			}
			dst->b = nbuf;
			dst->alloc = a;
		}
		bucket *b = dst->b;
		for (int64_t j = 0; j < src->nb; j++)
			if (at[j] >= 0)
				fold_into(&b[at[j]], &src->b[j]);
		int64_t end = dst->nb, w = n;
		for (int64_t j = src->nb - 1; k > 0 && j >= 0; j--) {
			if (at[j] >= 0)
				continue;
			int64_t q = -1 - at[j];
			w -= end - q;
			memmove(&b[w], &b[q], (size_t)(end - q) * sizeof(bucket));
			end = q;
			b[--w] = src->b[j];
			k--;
		}
		free(at);
		dst->nb = n;
		dst->positives += src->positives;
		dst->negatives += src->negatives;
		dst->wadded += src->wadded;
		return 0;
	}
	free(at);
	int64_t room = dst->nb + src->nb;
	bucket *t = malloc((size_t)(room > 0 ? room : 1) * sizeof(bucket));
	if (!t)
		return ENG_ENOMEM;
	int64_t n = merge_lists(t, dst->b, dst->nb, src->b, src->nb);
	if (n > dst->capacity)
		n = coarsen(t, n, dst->capacity - headroom(dst));
	if (n < 0) {
		free(t);
		return ENG_ENOMEM;
	}
	/* t becomes dst's array, trimmed to what alloc_for allows (a shrink
	 * in place), instead of a copy of it into dst's */
	int64_t a = alloc_for(dst, n);
	if (a < room) {
		bucket *u = realloc(t, (size_t)(a > 0 ? a : 1) * sizeof(bucket));
		if (!u) {
			free(t);
			return ENG_ENOMEM;
		}
		t = u;
	} else {
		a = room;
	}
	free(dst->b);
	dst->b = t;
	dst->alloc = a;
	dst->nb = n;
	dst->positives += src->positives;
	dst->negatives += src->negatives;
	dst->wadded += src->wadded;
	return 0;
}

void eng_sketch_weights(const eng_sketch *s, double *pos, double *neg)
{
	double p = 0.0, q = 0.0;
	for (int64_t i = 0; i < s->nb; i++) {
		p += s->b[i].pos;
		q += s->b[i].neg;
	}
	*pos = p;
	*neg = q;
}

double eng_sketch_weight_added(const eng_sketch *s)
{
	return s->wadded;
}

/* ---- answers ----------------------------------------------------------------- */

int eng_sketch_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_sketch *s, eng_curve kind,
                   int64_t max_points)
{
	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (curve)
		memset(curve, 0, sizeof(*curve));
	out->positives = s->positives;
	out->negatives = s->negatives;
	double P = 0.0, N = 0.0;
	for (int64_t i = 0; i < s->nb; i++) {
		P += s->b[i].pos;
		N += s->b[i].neg;
	}
	out->pos_weight = P;
	out->neg_weight = N;
	if (!(P > 0.0) || !(N > 0.0) || !isfinite(P) || !isfinite(N))
		return 0;

	/* Weights are scaled by the larger total so no product overflows
	 * (areas and precisions are ratios, unchanged by a common scale). */
	double S = P > N ? P : N;
	double T = 0.0, F = 0.0, area = 0.0, loose = 0.0;
	double ap = 0.0, ap_lo = 0.0, ap_hi = 0.0;
	bool any_folded = false;
	P /= S;
	N /= S;
	for (int64_t i = s->nb - 1; i >= 0; i--) {
		const bucket *x = &s->b[i];
		double p = x->pos / S, n = x->neg / S;
		area += n * (T + p / 2.0);
		/* scikit-learn's value when the bucket is one tie group */
		double est = p > 0.0 ? p * ((T + p) / (T + F + p + n)) : 0.0;
		if (folded(x)) {
			any_folded = true;
			loose += p * n / 2.0;
			if (p > 0.0) {
				double c = T + F + n;
				double lo = c > 0.0 ? p - (F + n) * log((c + p) / c) : p;
				double hi = p * ((T + p) / (T + F + p));
				if (lo > est)
					lo = est;
				if (hi < est)
					hi = est;
				est = (lo + hi) / 2.0; /* the middle of what any order gives */
				ap_lo += lo;
				ap_hi += hi;
			}
		} else {
			ap_lo += est;
			ap_hi += est;
		}
		ap += est;
		T += p;
		F += n;
	}
	if (kind == ENG_CURVE_ROC) {
		out->auc = area / (P * N);
		out->error_bound = loose / (P * N);
	} else {
		out->auc = ap / P;
		double up = (ap_hi - ap) / P, dn = (ap - ap_lo) / P;
		out->error_bound = up > dn ? up : dn;
	}
	if (any_folded)
		out->error_bound += SLACK;
	out->defined = true;

	if (curve) {
		if (eng__curve_alloc(curve, s->nb + 1))
			return ENG_ENOMEM;
		curve->x[0] = 0.0;
		curve->y[0] = kind == ENG_CURVE_ROC ? 0.0 : 1.0;
		curve->thresholds[0] = NAN;
		T = F = 0.0;
		for (int64_t i = s->nb - 1, j = 1; i >= 0; i--, j++) {
			T += s->b[i].pos / S;
			F += s->b[i].neg / S;
			if (kind == ENG_CURVE_ROC) {
				curve->x[j] = F / N;
				curve->y[j] = T / P;
			} else {
				curve->x[j] = T / P;
				curve->y[j] = T + F > 0.0 ? T / (T + F) : 0.0;
			}
			curve->thresholds[j] = eng__key64_value(s->b[i].lo);
		}
		eng__curve_downsample(curve, max_points);
	}
	return 0;
}

int eng_auc_sketch(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                   size_t cap_bytes, eng_curve kind, int64_t max_points, eng_error *err)
{
	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (curve)
		memset(curve, 0, sizeof(*curve));
	/* A cap out of range is the caller's error (422); NULL from
	 * eng_sketch_new after that check is out of memory (503). */
	if (cap_bytes != 0 && (cap_bytes < ENG_SKETCH_MIN_CAP || cap_bytes > ENG_SKETCH_MAX_CAP))
		return eng_error_set(err, ENG_EINVAL, "sketch_bytes", -1,
		                     "sketch memory must be in [%zu, %zu] bytes",
		                     ENG_SKETCH_MIN_CAP, ENG_SKETCH_MAX_CAP);
	eng_sketch *s = eng_sketch_new(cap_bytes);
	if (!s)
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	int rc = eng_sketch_add(s, d, col, err);
	if (!rc && eng_sketch_auc(out, curve, s, kind, max_points))
		rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	eng_sketch_free(s);
	return rc;
}

/* ---- serialization --------------------------------------------------------------- */
/*
 * Two versions, little-endian (bytes.h); the writer writes version 2, the
 * reader takes both, so states stored or exported by earlier builds load.
 *
 * Version 1: "LDSK", u32 1, u64 cap, u64 positives, u64 negatives, u64 nb,
 * then nb x (u64 lo, u64 hi, f64 pos, f64 neg): 32 bytes a bucket.
 *
 * Version 2: "LDSK", u32 2, varints cap, positives, negatives, nb, u8 z,
 * then per bucket, in order:
 *   varint gap = (w(lo) - w(previous hi)) >> z  (the first: w(lo) >> z)
 *   varint pc  = 4 pos + 2 folded     when pos is a small integer (below),
 *                2 folded + 1, f64 pos otherwise
 *   varint nc  = 2 neg                when neg is a small integer,
 *                1, f64 neg           otherwise
 *   varint span = (w(hi) - w(lo)) >> z  only when folded (lo < hi; span > 0)
 * A small integer is a non-negative whole number below 2^52 (not -0.0):
 * the weights of unweighted items, so an unweighted bucket costs its gap
 * and two bytes. w(k) = k for keys of scores >= 0 and k + 1 below (a
 * negative score's key is the complement of its bits, so a negative
 * float32 score's key ends in 29 one bits; plus one makes them zeros), and z
 * is the number of trailing zero bits all the w's share: 29 for scores
 * that came as float32, so their gaps shrink by 2^29. w is monotone and
 * one-to-one on keys other than 2^63 - 1, which is -0.0's and never a
 * sketch key (eng__key64 folds -0.0 into +0.0); both readers refuse it.
 * 1,000 distinct float64 scores in [0, 1] take ~9 bytes a bucket, float32
 * ones ~5, against 32 in version 1 (tests/engine/test_sketch_codec.c).
 *
 * Both readers check the same: cap in range, counts below 2^63, nb within
 * the capacity and the bytes left before anything is allocated, every key
 * a score's (not NaN's, not -0.0's), lo <= hi, weights finite and >= 0,
 * cells sorted and disjoint (I), the sums finite, every byte used. Version
 * 2 takes only the bytes its writer would write (shortest varints, a small
 * integer never as f64, z the largest shared, folded iff span > 0), so a
 * sketch has one encoding and serialize(deserialize(b)) == b.
 */
#define HEADER_V1     (4 + 4 + 8 + 8 + 8 + 8)
#define BUCKET_V1     32
#define VERSION_V1    1u
#define KEY_NEG_ZERO  (((uint64_t)1 << 63) - 1)
#define SMALL_INT     4503599627370496.0 /* 2^52 */
#define BUCKET_V2_MIN 3                  /* gap, pc, nc: one byte each at least */
#define BUCKET_V2_MAX 38                 /* gap, span: 10 bytes; a weight 9 */

/* Whether the cells of a and b share a key (dyadic cells: one holds the
 * other). */
static bool cells_meet(const bucket *a, const bucket *b)
{
	return cell_lo(a) <= cell_hi(b) && cell_lo(b) <= cell_hi(a);
}

/* The value of key k clamped to [0, 1] (NaN keys: to the side they lie on). */
static double unit_value(uint64_t k, bool high)
{
	double v = eng__key64_value(k);
	if (isnan(v))
		return high ? 1.0 : 0.0;
	return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
}

int eng__sketch_rekey(eng_sketch *s, double (*f)(double))
{
	/* Every item of a bucket lies in its cell (not only in [lo, hi]: an
	 * insert inside the cell leaves lo and hi alone), and every item is in
	 * [0, 1]; so a folded bucket becomes [f(cell start), f(cell end)] with
	 * the cell clamped to [0, 1], an exact one (lo == hi, the items' one
	 * key) f(lo). f keeps the order of the buckets but not their dyadic
	 * cells: walk them in order and fold each into the output's last
	 * bucket while their cells meet (an earlier cell it met would hold the
	 * last one too, so the output stays sorted and disjoint, (I)). Folding
	 * only adds pos * neg terms to the bound: sound. In place. */
	for (int64_t i = 0; i < s->nb; i++) {
		double v = eng__key64_value(s->b[i].lo);
		if (!folded(&s->b[i]) && !(v >= 0.0 && v <= 1.0))
			return ENG_ESTATE;
	}
	int64_t m = 0;
	for (int64_t i = 0; i < s->nb; i++) {
		bucket x = s->b[i];
		double lo, hi;
		if (folded(&x)) {
			lo = f(unit_value(cell_lo(&x), false));
			hi = f(unit_value(cell_hi(&x), true));
		} else {
			lo = hi = f(eng__key64_value(x.lo));
		}
		if (isnan(lo) || isnan(hi))
			return ENG_ESTATE; /* s is left partly re-keyed: the caller drops it */
		x.lo = eng__key64(lo);
		x.hi = eng__key64(hi);
		while (m > 0 && cells_meet(&s->b[m - 1], &x)) {
			const bucket *t = &s->b[m - 1];
			x.lo = t->lo < x.lo ? t->lo : x.lo;
			x.hi = t->hi > x.hi ? t->hi : x.hi;
			x.pos += t->pos;
			x.neg += t->neg;
			m--;
		}
		s->b[m++] = x;
	}
	s->nb = m;
	return 0;
}

/* The key in the form version 2 takes gaps of (above). */
static uint64_t wire_key(uint64_t k)
{
	return k >> 63 ? k : k + 1;
}

/* Its inverse; 0 (no key's) gives ~0, which no range check lets pass. */
static uint64_t key_of_wire(uint64_t v)
{
	return v >> 63 ? v : v - 1;
}

static bool small_int(double x)
{
	/* (int64_t: one instruction; x is below 2^52 when it is converted) */
	return x >= 0.0 && x < SMALL_INT && !signbit(x) && x == (double)(int64_t)x;
}

/* A weight code at p: 2 x (+ tag) for a small integer, 1 + tag and the
 * f64 otherwise (tag: 2 for pos's folded bit, else 0; pos's integer is
 * doubled again: scale 4). Returns the end. */
static inline uint8_t *put_weight(uint8_t *p, double x, uint64_t scale, uint64_t tag)
{
	/* the usual count, below 32: one byte (its varint), one branch */
	int32_t i = x >= 0.0 && x < 32.0 ? (int32_t)x : -1;
	if (i >= 0 && (double)i == x && !signbit(x)) {
		*p = (uint8_t)((uint64_t)i * scale + tag);
		return p + 1;
	}
	if (small_int(x))
		return p + eng__put_varint(p, (uint64_t)(int64_t)x * scale + tag);
	*p++ = (uint8_t)(tag + 1);
	eng__put_f64(p, x);
	return p + 8;
}

int eng_sketch_serialize(uint8_t **out, size_t *len, const eng_sketch *s)
{
	eng__writer w = ENG__WRITER_INIT;
	uint64_t all = 0;
	for (int64_t i = 0; i < s->nb; i++)
		all |= wire_key(s->b[i].lo) | wire_key(s->b[i].hi);
	unsigned z = all ? (unsigned)__builtin_ctzll(all) : 0;
	size_t room = (size_t)s->nb * BUCKET_V2_MAX;
	eng__writer_presize(&w, 64 + room);
	eng__writer_raw(&w, MAGIC, 4);
	eng__writer_u32(&w, VERSION);
	eng__writer_varint(&w, (uint64_t)s->cap);
	eng__writer_varint(&w, (uint64_t)s->positives);
	eng__writer_varint(&w, (uint64_t)s->negatives);
	eng__writer_varint(&w, (uint64_t)s->nb);
	eng__writer_u8(&w, (uint8_t)z);
	/* the buckets into one reservation of their largest size, the
	 * unused rest given back */
	uint8_t *p0 = eng__writer_reserve(&w, room), *p = p0;
	uint64_t prev = 0;
	for (int64_t i = 0; p0 && i < s->nb; i++) {
		const bucket *x = &s->b[i];
		uint64_t lo = wire_key(x->lo), hi = wire_key(x->hi);
		p += eng__put_varint(p, (lo - prev) >> z);
		p = put_weight(p, x->pos, 4, folded(x) ? 2 : 0);
		p = put_weight(p, x->neg, 2, 0);
		if (folded(x))
			p += eng__put_varint(p, (hi - lo) >> z);
		prev = hi;
	}
	if (p0)
		eng__writer_unreserve(&w, room - (size_t)(p - p0));
	return eng__writer_finish(&w, out, len);
}

/* A weight as put_weight wrote it: the value, and the tag bits (pos: its
 * folded bit) in *tag. A raw f64 that a small integer would have been
 * written as fails the reader; so does anything not finite or below 0. */
static double get_weight(eng__reader *r, uint64_t scale, uint64_t *tag)
{
	uint64_t c = eng__reader_varint(r);
	*tag = c & (scale - 2);
	if (!(c & 1)) {
		if (c / scale >= ((uint64_t)1 << 52))
			r->fail = true;
		return (double)(c / scale);
	}
	double x = eng__reader_f64(r);
	if ((c & ~(scale - 2)) != 1 || !(x >= 0.0 && isfinite(x)) || small_int(x))
		r->fail = true;
	return x;
}

/* Adds g << z to *v; false when that overflows 64 bits. */
static bool add_gap(uint64_t *v, uint64_t g, unsigned z)
{
	if (g > (UINT64_MAX >> z) || (g << z) > UINT64_MAX - *v)
		return false;
	*v += g << z;
	return true;
}

/* Version 2's buckets into s->b (room for nb): 0, or ENG_ESTATE when a
 * field is out of range or not as the writer writes it. */
static int read_buckets_v2(eng_sketch *s, eng__reader *r, uint64_t nb, unsigned z)
{
	uint64_t prev = 0, all = 0;
	for (uint64_t i = 0; i < nb; i++) {
		bucket *x = &s->b[i];
		uint64_t lo = prev, hi, fold, none;
		if (!add_gap(&lo, eng__reader_varint(r), z))
			return ENG_ESTATE;
		x->pos = get_weight(r, 4, &fold);
		x->neg = get_weight(r, 2, &none);
		hi = lo;
		if (fold) {
			uint64_t span = eng__reader_varint(r);
			if (span == 0 || !add_gap(&hi, span, z))
				return ENG_ESTATE;
		}
		if (r->fail)
			return ENG_ESTATE;
		x->lo = key_of_wire(lo);
		x->hi = key_of_wire(hi);
		all |= lo | hi;
		prev = hi;
	}
	/* z the largest shift the keys allow (0 for none): one encoding */
	if (z != (all ? (unsigned)__builtin_ctzll(all) : 0))
		return ENG_ESTATE;
	return 0;
}

/* Version 1's buckets into s->b (its bytes left: nb of 32). */
static void read_buckets_v1(eng_sketch *s, eng__reader *r, uint64_t nb)
{
	for (uint64_t i = 0; i < nb; i++) {
		bucket *x = &s->b[i];
		x->lo = eng__reader_u64(r);
		x->hi = eng__reader_u64(r);
		x->pos = eng__reader_f64(r);
		x->neg = eng__reader_f64(r);
	}
}

int eng_sketch_deserialize(eng_sketch **out, const uint8_t *buf, size_t len)
{
	eng__reader r;
	*out = NULL;
	eng__reader_init(&r, buf, len);
	if (!eng__reader_magic(&r, MAGIC))
		return ENG_ESTATE;
	uint32_t version = eng__reader_u32(&r);
	bool v1 = version == VERSION_V1;
	if (!v1 && version != VERSION)
		return ENG_ESTATE;
	uint64_t cap = v1 ? eng__reader_u64(&r) : eng__reader_varint(&r);
	uint64_t np = v1 ? eng__reader_u64(&r) : eng__reader_varint(&r);
	uint64_t nn = v1 ? eng__reader_u64(&r) : eng__reader_varint(&r);
	uint64_t nb = v1 ? eng__reader_u64(&r) : eng__reader_varint(&r);
	unsigned z = v1 ? 0 : eng__reader_u8(&r);
	if (r.fail || cap < ENG_SKETCH_MIN_CAP || cap > ENG_SKETCH_MAX_CAP || np > INT64_MAX ||
	    nn > INT64_MAX || z > 63)
		return ENG_ESTATE;
	eng_sketch *s = eng_sketch_new((size_t)cap);
	if (!s)
		return ENG_ENOMEM;
	/* nb against the bytes left before the allocation it asks for */
	if (nb > (uint64_t)s->capacity ||
	    (v1 ? r.left != (size_t)nb * BUCKET_V1 : nb > r.left / BUCKET_V2_MIN))
		goto bad;
	if (nb > 0) {
		s->b = malloc((size_t)nb * sizeof(bucket));
		if (!s->b) {
			eng_sketch_free(s);
			return ENG_ENOMEM;
		}
		s->alloc = (int64_t)nb;
	}
	if (v1)
		read_buckets_v1(s, &r, nb);
	else if (read_buckets_v2(s, &r, nb, z))
		goto bad;
	uint64_t kmin = eng__key64(-INFINITY), kmax = eng__key64(INFINITY);
	double P = 0.0, N = 0.0;
	for (uint64_t i = 0; i < nb; i++) {
		const bucket *x = &s->b[i];
		if (x->lo > x->hi || x->lo < kmin || x->hi > kmax || x->lo == KEY_NEG_ZERO ||
		    x->hi == KEY_NEG_ZERO)
			goto bad;
		if (!(x->pos >= 0.0 && isfinite(x->pos) && x->neg >= 0.0 && isfinite(x->neg)))
			goto bad;
		if (i > 0 && !(cell_hi(&s->b[i - 1]) < cell_lo(x)))
			goto bad; /* invariant (I): sorted, disjoint cells */
		P += x->pos;
		N += x->neg;
	}
	if (!eng__reader_done(&r) || !isfinite(P) || !isfinite(N))
		goto bad;
	s->nb = (int64_t)nb;
	s->positives = (int64_t)np;
	s->negatives = (int64_t)nn;
	s->wadded = P + N;
	*out = s;
	return 0;
bad:
	eng_sketch_free(s);
	return ENG_ESTATE;
}

int eng__sketch_serialize_v1(uint8_t **out, size_t *len, const eng_sketch *s)
{
	eng__writer w = ENG__WRITER_INIT;
	eng__writer_presize(&w, HEADER_V1 + (size_t)s->nb * BUCKET_V1);
	eng__writer_raw(&w, MAGIC, 4);
	eng__writer_u32(&w, VERSION_V1);
	eng__writer_u64(&w, (uint64_t)s->cap);
	eng__writer_u64(&w, (uint64_t)s->positives);
	eng__writer_u64(&w, (uint64_t)s->negatives);
	eng__writer_u64(&w, (uint64_t)s->nb);
	for (int64_t i = 0; i < s->nb; i++) {
		eng__writer_u64(&w, s->b[i].lo);
		eng__writer_u64(&w, s->b[i].hi);
		eng__writer_f64(&w, s->b[i].pos);
		eng__writer_f64(&w, s->b[i].neg);
	}
	return eng__writer_finish(&w, out, len);
}
