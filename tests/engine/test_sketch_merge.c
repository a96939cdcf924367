/*
 * test_sketch_merge.c - the sketch's MERGE (engine/src/sketch.c) against
 * the rule it implements, written out plainly here: walk both bucket lists
 * in order of cell start (the larger cell first on a tie, the first list's
 * bucket on a full tie), fold a bucket whose cell lies inside the cell of
 * the last output bucket into it, append it otherwise.
 *
 * merge_lists copies the runs of one list that come before the other's
 * head in one go (found by a scan); a run that starts, ends or is cut at
 * the wrong bucket shows here as a different bucket list. The destination's
 * cap is large enough that nothing is coarsened, so the result must be the
 * plain merge bit for bit (also when it is done in place: every bucket of
 * the source inside a cell of the destination, or one key between them):
 * every key and every weight, in both directions,
 * for lists of very different and of equal lengths, exact and folded, with
 * cells nested across the two lists.
 *
 * Past capacity: a merge that overflows coarsens to capacity minus a
 * headroom (capacity / 32), so the small merges after it that fit are
 * plain merges again, bit for bit, until the list fills up; checked over
 * a stream of fresh training-step updates into a full sketch, with the
 * AUC of everything merged within the reported bound of the exact one.
 * The coarsening itself (a heap of candidate folds, boundary depths worked
 * out once) against its rule written out plainly too (plain_coarsen: scan
 * every boundary for the cheapest legal fold, fold it, again), bit for
 * bit: after those overflowing merges, and for a first add of more
 * (weighted) distinct scores than the cap holds.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h" /* eng__sketch_serialize_v1 */
#include "bytes.h"
#include "lossd/auc.h"
#include "lossd/sketch.h"
#include "rng.h"

typedef struct tb {
	uint64_t lo, hi;
	double pos, neg;
} tb;

/* A sketch's buckets and counts, read from its version 1 bytes (fixed
 * width: magic, version, cap, positives, negatives, count, then lo, hi,
 * pos, neg per bucket, little-endian). */
typedef struct list {
	int64_t n;
	uint64_t positives, negatives;
	tb *b;
} list;

static list buckets_of(const eng_sketch *k)
{
	uint8_t *bytes;
	size_t len;
	cr_assert_eq(eng__sketch_serialize_v1(&bytes, &len, k), 0);
	cr_assert_geq(len, 40);
	list l;
	memcpy(&l.positives, bytes + 16, 8);
	memcpy(&l.negatives, bytes + 24, 8);
	uint64_t n;
	memcpy(&n, bytes + 32, 8);
	cr_assert_eq(len, 40 + n * 32);
	l.n = (int64_t)n;
	l.b = malloc((n ? n : 1) * sizeof(tb));
	cr_assert_not_null(l.b);
	for (uint64_t i = 0; i < n; i++)
		memcpy(&l.b[i], bytes + 40 + 32 * i, 32);
	free(bytes);
	return l;
}

static uint64_t span(const tb *x)
{
	uint64_t d = x->lo ^ x->hi;
	return d ? ~(uint64_t)0 >> __builtin_clzll(d) : 0;
}

static int64_t plain_merge(tb *out, const tb *a, int64_t na, const tb *b, int64_t nb)
{
	int64_t i = 0, j = 0, m = 0;
	while (i < na || j < nb) {
		const tb *x;
		if (j >= nb) {
			x = &a[i++];
		} else if (i >= na) {
			x = &b[j++];
		} else {
			uint64_t sa = span(&a[i]), sb = span(&b[j]);
			uint64_t ca = a[i].lo & ~sa, cb = b[j].lo & ~sb;
			x = ca < cb || (ca == cb && sa >= sb) ? &a[i++] : &b[j++];
		}
		uint64_t s = span(x), c = x->lo & ~s;
		if (m > 0) {
			tb *t = &out[m - 1];
			uint64_t ts = span(t), tc = t->lo & ~ts;
			if (c >= tc && (c | s) <= (tc | ts)) {
				t->lo = x->lo < t->lo ? x->lo : t->lo;
				t->hi = x->hi > t->hi ? x->hi : t->hi;
				t->pos += x->pos;
				t->neg += x->neg;
				continue;
			}
		}
		out[m++] = *x;
	}
	return m;
}

/* COARSEN's rule: while over cap, fold the cheapest legal pair of
 * neighbours, the right one into the left. Legal: the depth of their
 * boundary (the leading bits their lo keys share) exceeds both neighbouring
 * boundaries'. Cost: the bound it adds, (pos_i + pos_j)(neg_i + neg_j) less
 * each folded bucket's own pos neg, at least 0; on a tie the finer cell
 * (deeper boundary), then the leftmost. Returns the new length. */
static int64_t plain_coarsen(tb *b, int64_t n, int64_t cap)
{
	while (n > cap) {
		int64_t best = -1;
		double best_cost = 0.0;
		int best_depth = 0;
		for (int64_t i = 0; i + 1 < n; i++) {
			int d = __builtin_clzll(b[i].lo ^ b[i + 1].lo);
			if (i > 0 && __builtin_clzll(b[i - 1].lo ^ b[i].lo) >= d)
				continue;
			if (i + 2 < n && __builtin_clzll(b[i + 1].lo ^ b[i + 2].lo) >= d)
				continue;
			const tb *x = &b[i], *y = &b[i + 1];
			double c = (x->pos + y->pos) * (x->neg + y->neg);
			if (x->lo != x->hi)
				c -= x->pos * x->neg;
			if (y->lo != y->hi)
				c -= y->pos * y->neg;
			c = c > 0.0 ? c : 0.0;
			if (best < 0 || c < best_cost || (c == best_cost && d > best_depth)) {
				best = i;
				best_cost = c;
				best_depth = d;
			}
		}
		cr_assert_geq(best, 0, "no legal fold among %lld buckets", (long long)n);
		b[best].hi = b[best + 1].hi;
		b[best].pos += b[best + 1].pos;
		b[best].neg += b[best + 1].neg;
		memmove(&b[best + 1], &b[best + 2], (size_t)(n - best - 2) * sizeof(tb));
		n--;
	}
	return n;
}

/* got's buckets are want[0..m), bit for bit. */
static void expect_list(const list *got, const tb *want, int64_t m, const char *what)
{
	int64_t diff = -1;
	for (int64_t i = 0; got->n == m && i < m && diff < 0; i++)
		if (memcmp(&got->b[i], &want[i], sizeof(tb)) != 0)
			diff = i;
	cr_expect(got->n == m && diff < 0,
	          "%s: %lld buckets, the rule gives %lld; first differing %lld", what,
	          (long long)got->n, (long long)m, (long long)diff);
}

/* n scores around two class centres, at one of a few resolutions: exact
 * distinct keys, float32-rounded, or quantised to few values (ties). */
static eng_sketch *filled(size_t cap, int64_t n, double shift, int kind)
{
	double *s = malloc((size_t)(n ? n : 1) * sizeof(double));
	uint8_t *y = malloc((size_t)(n ? n : 1));
	cr_assert(s && y);
	for (int64_t i = 0; i < n; i++) {
		y[i] = (uint8_t)(rnd() & 1);
		double x = normal() * 0.2 + (y[i] ? 0.65 : 0.35) + shift;
		s[i] = kind == 0 ? x : kind == 1 ? (double)(float)x : (double)(int)(x * 64) / 64;
	}
	eng_sketch *k = eng_sketch_new(cap);
	cr_assert_not_null(k);
	cr_assert_eq(eng_sketch_add_values(k, s, y, NULL, n, NULL), 0);
	free(s);
	free(y);
	return k;
}

/* dst := dst + src through the engine, compared with the plain merge of
 * their lists (dst's cap holds both: no coarsening). */
static void check_merge(eng_sketch *dst, const eng_sketch *src)
{
	list a = buckets_of(dst), b = buckets_of(src);
	cr_assert_leq(a.n + b.n, eng_sketch_capacity(dst), "the case would coarsen");
	tb *want = malloc((size_t)(a.n + b.n + 1) * sizeof(tb));
	cr_assert_not_null(want);
	int64_t m = plain_merge(want, a.b, a.n, b.b, b.n);
	cr_assert_eq(eng_sketch_merge(dst, src), 0);
	list got = buckets_of(dst);
	cr_expect_eq(got.n, m, "%lld buckets, the plain merge has %lld", (long long)got.n,
	             (long long)m);
	int64_t diff = -1;
	for (int64_t i = 0; got.n == m && i < m && diff < 0; i++)
		if (memcmp(&got.b[i], &want[i], sizeof(tb)) != 0)
			diff = i;
	cr_expect_eq(diff, -1, "bucket %lld differs from the plain merge (%lld + %lld buckets)",
	             (long long)diff, (long long)a.n, (long long)b.n);
	cr_expect_eq(got.positives, a.positives + b.positives);
	cr_expect_eq(got.negatives, a.negatives + b.negatives);
	free(a.b);
	free(b.b);
	free(got.b);
	free(want);
}

/* A destination with a large cap whose buckets are folded: a small-cap
 * sketch merged into an empty large one keeps its folded cells. */
static eng_sketch *folded_big(int64_t n, double shift, int kind)
{
	eng_sketch *small = filled(4096, n, shift, kind), *big = eng_sketch_new(1 << 22);
	cr_assert_not_null(big);
	cr_assert_eq(eng_sketch_merge(big, small), 0);
	eng_sketch_free(small);
	return big;
}

Test(sketch_merge, equals_the_plain_merge_for_every_mix_of_sizes_and_cells)
{
	static const int64_t sizes[] = {1, 3, 40, 1000, 20000};
	for (int kind = 0; kind < 3; kind++) {
		for (size_t p = 0; p < sizeof sizes / sizeof *sizes; p++) {
			for (size_t q = 0; q < sizeof sizes / sizeof *sizes; q++) {
				rng_state = 1000u + (uint64_t)(kind * 100) + p * 10 + q;
				int64_t na = sizes[p], nb = sizes[q];
				/* exact into exact */
				eng_sketch *d = filled(1 << 22, na, 0.0, kind);
				eng_sketch *s = filled(1 << 22, nb, 0.01, kind);
				check_merge(d, s);
				/* coarse (folded) into exact, and exact into coarse:
				 * cells of one list nested over runs of the other */
				eng_sketch *fd = folded_big(na, 0.0, kind);
				eng_sketch *fs = filled(2048, nb, -0.02, kind);
				check_merge(fd, s);
				check_merge(d, fs);
				check_merge(fd, fs);
				/* a sketch merged with a copy of itself */
				eng_sketch *twin = eng_sketch_new(1 << 22);
				cr_assert_eq(eng_sketch_merge(twin, s), 0);
				check_merge(twin, s);
				eng_sketch_free(d);
				eng_sketch_free(s);
				eng_sketch_free(fd);
				eng_sketch_free(fs);
				eng_sketch_free(twin);
			}
		}
	}
}

Test(sketch_merge, disjoint_ranges_and_empty_lists)
{
	rng_state = 5;
	eng_sketch *low = filled(1 << 22, 5000, -10.0, 0), *high = filled(1 << 22, 5000, 10.0, 0);
	eng_sketch *empty = eng_sketch_new(1 << 22);
	check_merge(low, high);  /* the whole of high after low: one run */
	check_merge(high, low);  /* the whole of the source first */
	check_merge(empty, low); /* into nothing */
	check_merge(low, empty); /* nothing in */
	eng_sketch_free(low);
	eng_sketch_free(high);
	eng_sketch_free(empty);
}

/* n scores of one training step (as filled's, float32): into s, y. */
static void step_scores(double *s, uint8_t *y, int64_t n)
{
	for (int64_t i = 0; i < n; i++) {
		y[i] = (uint8_t)(rnd() & 1);
		s[i] = (double)(float)(normal() * 0.2 + (y[i] ? 0.65 : 0.35));
	}
}

Test(sketch_merge, an_overflowing_merge_leaves_headroom_the_next_ones_fill)
{
	enum { STEP = 1000, STEPS = 400 };
	static double s[STEP * STEPS];
	static uint8_t y[STEP * STEPS];
	rng_state = 31;
	eng_sketch *dst = eng_sketch_new(1 << 18);
	cr_assert_not_null(dst);
	int64_t cap = eng_sketch_capacity(dst), room = cap / 32;
	int plain = 0, coarsened = 0;
	for (int t = 0; t < STEPS; t++) {
		double *st = s + (int64_t)t * STEP;
		uint8_t *yt = y + (int64_t)t * STEP;
		step_scores(st, yt, STEP);
		eng_sketch *up = eng_sketch_new(0);
		cr_assert_not_null(up);
		cr_assert_eq(eng_sketch_add_values(up, st, yt, NULL, STEP, NULL), 0);
		list a = buckets_of(dst), b = buckets_of(up);
		tb *want = malloc((size_t)(a.n + b.n) * sizeof(tb));
		cr_assert_not_null(want);
		int64_t m = plain_merge(want, a.b, a.n, b.b, b.n);
		cr_assert_eq(eng_sketch_merge(dst, up), 0);
		list got = buckets_of(dst);
		if (m <= cap) {
			/* fits: nothing folds, the plain merge bit for bit */
			plain++;
			cr_expect(got.n == m && memcmp(got.b, want, (size_t)m * sizeof(tb)) == 0,
			          "step %d: a merge that fits (%lld of %lld) was coarsened", t,
			          (long long)m, (long long)cap);
		} else {
			coarsened++;
			cr_expect_leq(got.n, cap - room, "step %d: %lld buckets after a fold", t,
			              (long long)got.n);
			if (coarsened <= 12) { /* the rule is quadratic: the first dozen */
				m = plain_coarsen(want, m, cap - room);
				expect_list(&got, want, m, "an overflowing merge, coarsened");
			}
		}
		cr_expect_leq(eng_sketch_memory(dst), (size_t)1 << 18);
		free(a.b);
		free(b.b);
		free(got.b);
		free(want);
		eng_sketch_free(up);
	}
	/* the stream filled, then folded once per few steps, not at each */
	cr_expect_gt(coarsened, 0);
	cr_expect_gt(plain, 2 * coarsened, "%d plain merges, %d folded", plain, coarsened);
	int64_t n = (int64_t)STEP * STEPS;
	eng_tensor ts = {ENG_F64, 1, {n}, n, s}, ty = {ENG_U8, 1, {n}, n, y};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_opts o = ENG_AUC_OPTS_INIT;
	eng_auc_result e, r;
	cr_assert_eq(eng_auc_exact(&e, NULL, &d, 0, &o, NULL), 0);
	cr_assert_eq(eng_sketch_auc(&r, NULL, dst, ENG_CURVE_ROC, 512), 0);
	cr_expect(r.error_bound > 0.0);
	cr_expect(fabs(r.auc - e.auc) <= r.error_bound, "%.12f vs exact %.12f +- %g", r.auc, e.auc,
	          r.error_bound);
	eng_sketch_free(dst);
}

Test(sketch_merge, a_first_add_past_the_cap_coarsens_by_the_rule)
{
	enum { N = 3000 };
	static double sc[N], w[N];
	static uint8_t y[N];
	rng_state = 77;
	for (int round = 0; round < 6; round++) {
		int64_t n = 200 + (int64_t)(rnd() % (N - 200));
		for (int64_t i = 0; i < n; i++) {
			y[i] = (uint8_t)(rnd() & 1);
			double x = normal() * 0.2 + (y[i] ? 0.6 : 0.4);
			/* distinct keys, float32 ones, or few values (folds that tie) */
			sc[i] = round % 3 == 0   ? x
			        : round % 3 == 1 ? (double)(float)x
			                         : (double)(int)(x * 512) / 512;
			w[i] = round < 3 ? 1.0 : 0.25 + (double)(rnd() % 16) / 4;
		}
		/* the exact buckets (a cap that holds them all), then the rule */
		eng_sketch *big = eng_sketch_new(1 << 22), *small = eng_sketch_new(2048);
		cr_assert(big && small);
		cr_assert_eq(eng_sketch_add_values(big, sc, y, w, n, NULL), 0);
		cr_assert_eq(eng_sketch_add_values(small, sc, y, w, n, NULL), 0);
		list all = buckets_of(big), got = buckets_of(small);
		cr_assert_gt(all.n, eng_sketch_capacity(small), "the case would not coarsen");
		int64_t m = plain_coarsen(all.b, all.n, eng_sketch_capacity(small));
		expect_list(&got, all.b, m, "a first add past the cap");
		free(all.b);
		free(got.b);
		eng_sketch_free(big);
		eng_sketch_free(small);
	}
}
