/*
 * sketch.c - bounded-memory mergeable AUC summary with a sound error bound.
 *
 * DESIGN. A score s is mapped to its order-preserving 64-bit key k(s)
 * (radix.h; -0.0 ties +0.0). The sketch is a list of buckets sorted by
 * key; bucket b holds [lo_b, hi_b], the smallest and largest key it has
 * seen, and pos_b / neg_b, the weights of the positives and negatives in
 * it. Every bucket has a dyadic CELL: the set of keys sharing the first
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
 * INSERT. A batch (at most 64Ki items) is sorted by key (radix sort), equal
 * keys are summed into exact buckets, and the batch is MERGED in.
 * MERGE of two lists satisfying (I): walk both in order of cell start
 * (larger cell first on a tie); a bucket whose cell lies inside the cell of
 * the last output bucket is folded into it (its items are in that cell, so
 * the invariant holds; the output cell does not change, as lo/hi already
 * straddled its midpoint), otherwise it is appended (disjoint from all
 * earlier output). So merge is the exact set union with children folded
 * into ancestors: commutative and associative as long as no capacity fold
 * happens, and sound always. Caps may differ; the result takes dst's.
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
 * 1.8e-5 to 2.0e-5 (the true error ~4e-9), merge of two halves 2.5e-5,
 * PR bound ~1e-4.
 *
 * MEMORY. State = the struct plus the bucket array, grown by doubling and
 * never beyond capacity = (cap - sizeof struct) / 32 buckets. Insert and
 * merge use transient buffers of O(capacity + batch) that are freed before
 * returning; the cap bounds what a stream keeps, not a call's scratch.
 *
 * Does not: give max_fpr (partial AUC) or the binned Keras number, keep
 * the items (only buckets), or accept NaN scores.
 */
#include "lossd/sketch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "bytes.h"
#include "radix.h"

#define BATCH   65536
#define MAGIC   "LDSK"
#define VERSION 1u
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

/* out (room for na + nb) := union of two lists satisfying (I); returns its
 * length. */
static int64_t merge_lists(bucket *out, const bucket *a, int64_t na, const bucket *b, int64_t nb)
{
	int64_t i = 0, j = 0, m = 0;
	while (i < na || j < nb) {
		const bucket *x;
		if (j >= nb) {
			x = &a[i++];
		} else if (i >= na) {
			x = &b[j++];
		} else {
			uint64_t ca = cell_lo(&a[i]), cb = cell_lo(&b[j]);
			if (ca < cb || (ca == cb && level(&a[i]) <= level(&b[j])))
				x = &a[i++];
			else
				x = &b[j++];
		}
		if (m > 0) {
			bucket *t = &out[m - 1];
			if (cell_lo(x) >= cell_lo(t) && cell_hi(x) <= cell_hi(t)) {
				if (x->lo < t->lo)
					t->lo = x->lo;
				if (x->hi > t->hi)
					t->hi = x->hi;
				t->pos += x->pos;
				t->neg += x->neg;
				continue;
			}
		}
		out[m++] = *x;
	}
	return m;
}

typedef struct cand {
	double cost;
	int depth;
	int64_t left, right;
	uint32_t vl, vr;
} cand;

static bool cand_less(const cand *a, const cand *b)
{
	if (a->cost != b->cost)
		return a->cost < b->cost;
	if (a->depth != b->depth)
		return a->depth > b->depth; /* finer cells first */
	return a->left < b->left;
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

typedef struct links {
	int64_t *prev, *next;
	uint32_t *ver;
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

/* Pushes the fold of boundary (i, next[i]) if it is legal. */
static void consider(cand *h, int64_t *nh, const bucket *b, const links *lk, int64_t i, int64_t n)
{
	if (i < 0)
		return;
	int64_t j = lk->next[i];
	if (j >= n)
		return;
	int d = depth(&b[i], &b[j]);
	int64_t p = lk->prev[i], q = lk->next[j];
	if (p >= 0 && depth(&b[p], &b[i]) >= d)
		return;
	if (q < n && depth(&b[j], &b[q]) >= d)
		return;
	cand c = {fold_cost(&b[i], &b[j]), d, i, j, lk->ver[i], lk->ver[j]};
	heap_push(h, nh, c);
}

/* Folds b[0..n) down to at most cap buckets, in place; returns the new
 * length, or -1 when out of memory (b untouched then). */
static int64_t coarsen(bucket *b, int64_t n, int64_t cap)
{
	if (n <= cap)
		return n;
	links lk;
	lk.prev = malloc((size_t)n * sizeof(int64_t));
	lk.next = malloc((size_t)n * sizeof(int64_t));
	lk.ver = calloc((size_t)n, sizeof(uint32_t));
	cand *h = malloc((size_t)(n + 2 * (n - cap) + 2) * sizeof(cand));
	if (!lk.prev || !lk.next || !lk.ver || !h) {
		free(lk.prev);
		free(lk.next);
		free(lk.ver);
		free(h);
		return -1;
	}
	for (int64_t i = 0; i < n; i++) {
		lk.prev[i] = i - 1;
		lk.next[i] = i + 1;
	}
	int64_t nh = 0, live = n;
	for (int64_t i = 0; i + 1 < n; i++)
		consider(h, &nh, b, &lk, i, n);
	while (live > cap && nh > 0) {
		cand c = heap_pop(h, &nh);
		int64_t i = c.left, j = c.right;
		if (lk.ver[i] != c.vl || lk.next[i] != j || lk.ver[j] != c.vr)
			continue; /* stale */
		/* fold j into i */
		b[i].hi = b[j].hi;
		b[i].pos += b[j].pos;
		b[i].neg += b[j].neg;
		lk.ver[i]++;
		lk.ver[j] = UINT32_MAX; /* dead */
		lk.next[i] = lk.next[j];
		if (lk.next[j] < n)
			lk.prev[lk.next[j]] = i;
		live--;
		consider(h, &nh, b, &lk, lk.prev[i], n);
		consider(h, &nh, b, &lk, i, n);
	}
	int64_t m = 0;
	for (int64_t i = 0; i < n; i = lk.next[i])
		b[m++] = b[i];
	free(lk.prev);
	free(lk.next);
	free(lk.ver);
	free(h);
	return m;
}

/* Replaces s's buckets by cur[0..n) (n <= capacity after coarsening). */
static int install(eng_sketch *s, const bucket *cur, int64_t n)
{
	if (n > s->alloc) {
		int64_t a = s->alloc ? s->alloc : 64;
		while (a < n)
			a *= 2;
		if (a > s->capacity)
			a = s->capacity;
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

typedef struct scratch {
	double *score, *w;
	uint8_t *lab;
	uint64_t *key, *tkey;
	uint32_t *idx, *tidx;
	bucket *batch;
	bucket *cur, *next; /* working lists: O(capacity + BATCH) each */
	int64_t ncur, room;
} scratch;

static void scratch_free(scratch *x)
{
	free(x->score);
	free(x->w);
	free(x->lab);
	free(x->key);
	free(x->tkey);
	free(x->idx);
	free(x->tidx);
	free(x->batch);
	free(x->cur);
	free(x->next);
}

/* Scratch for adding n items: batches of min(n, BATCH), and working lists
 * big enough for every merge result (at most the buckets held plus one
 * batch, and never more than capacity plus one batch). */
static int scratch_init(scratch *x, const eng_sketch *s, int64_t n)
{
	memset(x, 0, sizeof(*x));
	size_t b = (size_t)(n < BATCH ? (n > 0 ? n : 1) : BATCH);
	int64_t held = s->nb + n < s->capacity ? s->nb + n : s->capacity;
	x->room = held + (int64_t)b;
	x->score = malloc(b * sizeof(double));
	x->w = malloc(b * sizeof(double));
	x->lab = malloc(b);
	x->key = malloc(b * sizeof(uint64_t));
	x->tkey = malloc(b * sizeof(uint64_t));
	x->idx = malloc(b * sizeof(uint32_t));
	x->tidx = malloc(b * sizeof(uint32_t));
	x->batch = malloc(b * sizeof(bucket));
	x->cur = malloc((size_t)x->room * sizeof(bucket));
	x->next = malloc((size_t)x->room * sizeof(bucket));
	if (!x->score || !x->w || !x->lab || !x->key || !x->tkey || !x->idx || !x->tidx ||
	    !x->batch || !x->cur || !x->next) {
		scratch_free(x);
		return ENG_ENOMEM;
	}
	if (s->nb > 0)
		memcpy(x->cur, s->b, (size_t)s->nb * sizeof(bucket));
	x->ncur = s->nb;
	return 0;
}

/* Merges the cnt gathered items in x into x->cur; counts go to *np, *nn. */
static int insert_batch(scratch *x, const eng_sketch *s, int64_t cnt, int64_t *np, int64_t *nn,
                        eng_error *err)
{
	int64_t m = 0;
	for (int64_t i = 0; i < cnt; i++) {
		if (isnan(x->score[i]))
			return eng_error_set(err, ENG_ENONFINITE, "y_score", -1, "y_score is NaN");
		if (x->lab[i] > 1)
			return eng_error_set(err, ENG_ELABEL, "y_true", -1, "label is not 0 or 1");
		if (!(x->w[i] >= 0.0 && isfinite(x->w[i])))
			return eng_error_set(err, ENG_EWEIGHT, "sample_weight", -1,
			                     "weight %g is not finite and >= 0", x->w[i]);
		if (x->lab[i])
			(*np)++;
		else
			(*nn)++;
		if (x->w[i] == 0.0)
			continue;
		x->key[m] = eng__key64(x->score[i]);
		x->idx[m] = (uint32_t)i;
		m++;
	}
	eng__radix_sort64(x->key, x->idx, x->tkey, x->tidx, m);
	int64_t nb = 0;
	for (int64_t i = 0; i < m;) {
		bucket t = {x->key[i], x->key[i], 0.0, 0.0};
		int64_t j = i;
		for (; j < m && x->key[j] == x->key[i]; j++) {
			uint32_t k = x->idx[j];
			if (x->lab[k])
				t.pos += x->w[k];
			else
				t.neg += x->w[k];
		}
		x->batch[nb++] = t;
		i = j;
	}
	int64_t n = merge_lists(x->next, x->cur, x->ncur, x->batch, nb);
	n = coarsen(x->next, n, s->capacity);
	if (n < 0)
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	bucket *t = x->cur;
	x->cur = x->next;
	x->next = t;
	x->ncur = n;
	return 0;
}

static int commit(eng_sketch *s, scratch *x, int64_t np, int64_t nn, eng_error *err)
{
	if (install(s, x->cur, x->ncur))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	s->positives += np;
	s->negatives += nn;
	return 0;
}

int eng_sketch_add(eng_sketch *s, const eng_auc_data *d, int64_t col, eng_error *err)
{
	scratch x;
	int64_t n, ncols, np = 0, nn = 0;
	int rc = eng__auc_items(d, col, &n, &ncols, err);
	if (rc)
		return rc;
	if (scratch_init(&x, s, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += BATCH) {
		int64_t cnt = n - from < BATCH ? n - from : BATCH;
		rc = eng__auc_gather(d, col, from, cnt, x.score, x.lab, x.w, err);
		if (rc)
			goto out;
		rc = insert_batch(&x, s, cnt, &np, &nn, err);
		if (rc)
			goto out;
	}
	rc = commit(s, &x, np, nn, err);
out:
	scratch_free(&x);
	return rc;
}

int eng_sketch_add_values(eng_sketch *s, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err)
{
	scratch x;
	int64_t np = 0, nn = 0;
	int rc;
	if (scratch_init(&x, s, n))
		return eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	for (int64_t from = 0; from < n; from += BATCH) {
		int64_t cnt = n - from < BATCH ? n - from : BATCH;
		memcpy(x.score, score + from, (size_t)cnt * sizeof(double));
		memcpy(x.lab, label + from, (size_t)cnt);
		for (int64_t i = 0; i < cnt; i++)
			x.w[i] = weight ? weight[from + i] : 1.0;
		rc = insert_batch(&x, s, cnt, &np, &nn, err);
		if (rc) {
			if (err && err->index == -1 && rc != ENG_ENOMEM)
				err->index = from; /* the batch, not the item */
			goto out;
		}
	}
	rc = commit(s, &x, np, nn, err);
out:
	scratch_free(&x);
	return rc;
}

int eng_sketch_merge(eng_sketch *dst, const eng_sketch *src)
{
	int64_t room = dst->nb + src->nb;
	bucket *t = malloc((size_t)(room > 0 ? room : 1) * sizeof(bucket));
	if (!t)
		return ENG_ENOMEM;
	int64_t n = merge_lists(t, dst->b, dst->nb, src->b, src->nb);
	n = coarsen(t, n, dst->capacity);
	int rc = n < 0 ? ENG_ENOMEM : install(dst, t, n);
	if (!rc) {
		dst->positives += src->positives;
		dst->negatives += src->negatives;
	}
	free(t);
	return rc;
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
	eng_sketch *s = eng_sketch_new(cap_bytes);
	if (!s)
		return eng_error_set(err, ENG_EINVAL, "sketch_bytes", -1,
		                     "sketch memory must be in [%zu, %zu] bytes",
		                     ENG_SKETCH_MIN_CAP, ENG_SKETCH_MAX_CAP);
	int rc = eng_sketch_add(s, d, col, err);
	if (!rc && eng_sketch_auc(out, curve, s, kind, max_points))
		rc = eng_error_set(err, ENG_ENOMEM, "y_score", -1, "out of memory");
	eng_sketch_free(s);
	return rc;
}

/* ---- serialization --------------------------------------------------------------- */
/* "LDSK", u32 version, u64 cap, u64 positives, u64 negatives, u64 nb, then
 * nb x (u64 lo, u64 hi, f64 pos, f64 neg). Little-endian. */
#define HEADER       (4 + 4 + 8 + 8 + 8 + 8)
#define BUCKET_BYTES 32

int eng_sketch_serialize(uint8_t **out, size_t *len, const eng_sketch *s)
{
	size_t sz = HEADER + (size_t)s->nb * BUCKET_BYTES;
	uint8_t *p = malloc(sz);
	if (!p)
		return ENG_ENOMEM;
	memcpy(p, MAGIC, 4);
	eng__put_u32(p + 4, VERSION);
	eng__put_u64(p + 8, (uint64_t)s->cap);
	eng__put_u64(p + 16, (uint64_t)s->positives);
	eng__put_u64(p + 24, (uint64_t)s->negatives);
	eng__put_u64(p + 32, (uint64_t)s->nb);
	for (int64_t i = 0; i < s->nb; i++) {
		uint8_t *q = p + HEADER + (size_t)i * BUCKET_BYTES;
		eng__put_u64(q, s->b[i].lo);
		eng__put_u64(q + 8, s->b[i].hi);
		eng__put_f64(q + 16, s->b[i].pos);
		eng__put_f64(q + 24, s->b[i].neg);
	}
	*out = p;
	*len = sz;
	return 0;
}

int eng_sketch_deserialize(eng_sketch **out, const uint8_t *buf, size_t len)
{
	*out = NULL;
	if (!buf || len < HEADER || memcmp(buf, MAGIC, 4) != 0 || eng__get_u32(buf + 4) != VERSION)
		return ENG_ESTATE;
	uint64_t cap = eng__get_u64(buf + 8);
	uint64_t np = eng__get_u64(buf + 16), nn = eng__get_u64(buf + 24);
	uint64_t nb = eng__get_u64(buf + 32);
	if (cap < ENG_SKETCH_MIN_CAP || cap > ENG_SKETCH_MAX_CAP || np > INT64_MAX ||
	    nn > INT64_MAX)
		return ENG_ESTATE;
	eng_sketch *s = eng_sketch_new((size_t)cap);
	if (!s)
		return ENG_ENOMEM;
	if (nb > (uint64_t)s->capacity || len != HEADER + (size_t)nb * BUCKET_BYTES)
		goto bad;
	if (nb > 0) {
		s->b = malloc((size_t)nb * sizeof(bucket));
		if (!s->b) {
			eng_sketch_free(s);
			return ENG_ENOMEM;
		}
		s->alloc = (int64_t)nb;
	}
	uint64_t kmin = eng__key64(-INFINITY), kmax = eng__key64(INFINITY);
	double P = 0.0, N = 0.0;
	for (uint64_t i = 0; i < nb; i++) {
		const uint8_t *q = buf + HEADER + (size_t)i * BUCKET_BYTES;
		bucket x = {eng__get_u64(q), eng__get_u64(q + 8), eng__get_f64(q + 16),
		            eng__get_f64(q + 24)};
		if (x.lo > x.hi || x.lo < kmin || x.hi > kmax)
			goto bad;
		if (!(x.pos >= 0.0 && isfinite(x.pos) && x.neg >= 0.0 && isfinite(x.neg)))
			goto bad;
		if (i > 0 && !(cell_hi(&s->b[i - 1]) < cell_lo(&x)))
			goto bad; /* invariant (I): sorted, disjoint cells */
		s->b[i] = x;
		P += x.pos;
		N += x.neg;
	}
	if (!isfinite(P) || !isfinite(N))
		goto bad;
	s->nb = (int64_t)nb;
	s->positives = (int64_t)np;
	s->negatives = (int64_t)nn;
	*out = s;
	return 0;
bad:
	eng_sketch_free(s);
	return ENG_ESTATE;
}
