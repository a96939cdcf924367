/*
 * test_radix.c - the radix sort and the score keys (engine/src/radix.c,
 * radix.h), and the sorted labelled keys of the exact AUC built on them
 * (eng__auc_sort, engine/src/auc.c).
 *
 * The sort against qsort on keys with many equal values, both digit widths
 * (below and above 4,096 keys), with and without a carried index (stable:
 * equal keys keep their input order); below 4,096 keys, keys whose
 * differing bits are a window of every width at every offset, two windows
 * apart, and float32 scores widened to double (the digits are placed where
 * the bits differ, from one to eight passes, odd and even counts); the keys of negative zero, subnormals,
 * infinities and neighbouring doubles; and eng__auc_sort's three layouts
 * (32-bit words, 64-bit words, bare keys with labels beside them) read
 * back as the scores and labels they came from, in order.
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "radix.h"
#include "rng.h"

typedef struct kv {
	uint64_t k;
	uint32_t i;
} kv;

static int cmp_kv(const void *a, const void *b)
{
	const kv *x = a, *y = b;
	if (x->k != y->k)
		return x->k < y->k ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i; /* stable: input order */
}

/* Sorts n keys drawn by draw(i) both ways and compares with qsort. */
static void check_sort(int64_t n, int wide, uint64_t (*draw)(int64_t))
{
	kv *ref = malloc((size_t)n * sizeof(kv));
	uint64_t *k64 = malloc((size_t)n * 8), *t64 = malloc((size_t)n * 8);
	uint32_t *k32 = (uint32_t *)k64, *t32 = (uint32_t *)t64;
	uint32_t *idx = malloc((size_t)n * 4), *tidx = malloc((size_t)n * 4);
	uint64_t *keep = malloc((size_t)n * 8);
	for (int64_t i = 0; i < n; i++) {
		uint64_t k = keep[i] = draw(i);
		if (!wide)
			k &= 0xffffffffu;
		ref[i] = (kv){k, (uint32_t)i};
		if (wide)
			k64[i] = k;
		else
			k32[i] = (uint32_t)k;
		idx[i] = (uint32_t)i;
	}
	qsort(ref, (size_t)n, sizeof(kv), cmp_kv);
	if (wide)
		eng__radix_sort64(k64, idx, t64, tidx, n);
	else
		eng__radix_sort32(k32, idx, t32, tidx, n);
	for (int64_t i = 0; i < n; i++) {
		uint64_t k = wide ? k64[i] : k32[i];
		cr_assert_eq(k, ref[i].k, "n=%lld wide=%d key %lld", (long long)n, wide,
		             (long long)i);
		cr_assert_eq(idx[i], ref[i].i, "n=%lld wide=%d idx %lld: not stable", (long long)n,
		             wide, (long long)i);
	}
	/* keys only (no index) */
	for (int64_t i = 0; i < n; i++) {
		uint64_t k = keep[i];
		if (wide)
			k64[i] = k;
		else
			k32[i] = (uint32_t)k;
	}
	if (wide)
		eng__radix_sort64(k64, NULL, t64, NULL, n);
	else
		eng__radix_sort32(k32, NULL, t32, NULL, n);
	for (int64_t i = 0; i < n; i++)
		cr_assert_eq(wide ? k64[i] : k32[i], ref[i].k);
	free(keep);
	free(ref);
	free(k64);
	free(t64);
	free(idx);
	free(tidx);
}

static uint64_t draw_random(int64_t i)
{
	(void)i;
	return rnd();
}

static uint64_t draw_few(int64_t i)
{
	(void)i;
	return (rnd() % 7) << 40 | (rnd() % 3); /* many equal keys, two busy digits */
}

static uint64_t draw_equal(int64_t i)
{
	(void)i;
	return 0x0123456789abcdefull; /* every digit trivial */
}

static uint64_t draw_top(int64_t i)
{
	return (uint64_t)(i % 5) << 61; /* only the top digit differs */
}

Test(radix, sorts_like_qsort_and_stays_stable)
{
	static const int64_t sizes[] = {0, 1, 2, 3, 255, 4095, 4096, 4097, 20000};
	uint64_t (*draws[])(int64_t) = {draw_random, draw_few, draw_equal, draw_top};
	rng_state = 7;
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		for (size_t d = 0; d < sizeof draws / sizeof draws[0]; d++)
			for (int wide = 0; wide < 2; wide++)
				check_sort(sizes[s] ? sizes[s] : 1, wide, draws[d]);
}

/* The window draw_window fills: `span` random bits from bit `low` up, on
 * a fixed base; with `gap` > 0 a second such window `gap` bits above. */
static int w_low, w_span, w_gap;

static uint64_t draw_window(int64_t i)
{
	(void)i;
	uint64_t m = w_span >= 64 ? ~(uint64_t)0 : ((uint64_t)1 << w_span) - 1;
	uint64_t k = 0x5a5a5a5a5a5a5a5aull & ~(m << w_low);
	k |= (rnd() & m) << w_low;
	int hi = w_low + w_span + w_gap;
	if (w_gap && hi < 64)
		k = (k & ~(m << hi)) | (rnd() & m) << hi;
	return k;
}

static uint64_t draw_float32_score(int64_t i)
{
	/* a training worker's scores: float32 in [0, 1], some exactly 0 or 1 */
	float f = i % 50 == 0 ? 0.0f : i % 70 == 0 ? 1.0f : (float)(rnd() >> 40) / 16777216.0f;
	return eng__key64((double)f);
}

Test(radix, small_sorts_place_digits_where_bits_differ)
{
	rng_state = 11;
	for (w_span = 1; w_span <= 64; w_span += w_span < 12 ? 1 : 5)
		for (w_low = 0; w_low + w_span <= 64; w_low += 7)
			for (w_gap = 0; w_gap <= 20; w_gap += 20) {
				check_sort(1000, 1, draw_window);
				if (w_low + w_span <= 32)
					check_sort(1000, 0, draw_window);
			}
	for (int64_t n = 2; n < 4096; n = n * 3 + 1)
		check_sort(n, 1, draw_float32_score);
}

Test(radix, keys_order_doubles_and_tie_signed_zeros)
{
	const double v[] = {-INFINITY, -DBL_MAX, -1.5,    -DBL_MIN, -4.9e-324,           0.0,
	                    4.9e-324,  1e-310,   DBL_MIN, 1.0,      nextafter(1.0, 2.0), DBL_MAX,
	                    INFINITY};
	size_t n = sizeof v / sizeof v[0];
	for (size_t i = 0; i + 1 < n; i++) {
		cr_expect(eng__key64(v[i]) < eng__key64(v[i + 1]), "%g < %g", v[i], v[i + 1]);
		cr_expect(eng__key64_value(eng__key64(v[i])) == v[i]);
		float f = (float)v[i], g = (float)v[i + 1];
		cr_expect(f < g ? eng__key32(f) < eng__key32(g) : eng__key32(f) == eng__key32(g));
		cr_expect(eng__key32_value(eng__key32(f)) == f ||
		          (f == 0 && eng__key32_value(eng__key32(f)) == 0));
	}
	cr_expect_eq(eng__key64(-0.0), eng__key64(0.0));
	cr_expect_eq(eng__key32(-0.0f), eng__key32(0.0f));
	cr_expect(!signbit(eng__key64_value(eng__key64(-0.0))));
}

/* eng__auc_sort on the scores s (float64, or float32 when f32): the sorted
 * items read back as (score, label) pairs in ascending order, the labels
 * of every score the ones given. Returns the layout used. */
static int check_sorted(const double *s, const uint8_t *y, int64_t n, bool f32)
{
	float *f = malloc((size_t)n * sizeof(float));
	for (int64_t i = 0; i < n; i++)
		f[i] = (float)s[i];
	eng_tensor ts = {
	        f32 ? ENG_F32 : ENG_F64, 1, {n}, n, f32 ? (const void *)f : (const void *)s};
	eng_tensor ty = {ENG_U8, 1, {n}, n, y};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng__auc_sorted st;
	eng_error err;
	cr_assert_eq(eng__auc_sort(&st, &d, 0, n, 1, &err), 0);
	int64_t pos = 0;
	for (int64_t i = 0; i < n; i++)
		pos += y[i];
	cr_assert_eq(st.positives, pos);
	int layout = st.k32 ? 32 : st.lab ? 0 : 64;
	/* the reference: (score, label) sorted */
	kv *ref = malloc((size_t)n * sizeof(kv));
	for (int64_t i = 0; i < n; i++)
		ref[i] = (kv){eng__key64(f32 ? (double)f[i] : s[i]), (uint32_t)y[i]};
	qsort(ref, (size_t)n, sizeof(kv), cmp_kv);
	for (int64_t i = 0; i < n && pos > 0 && pos < n; i++) {
		double got = eng__auc_sorted_value(&st, eng__sorted_key(&st, i));
		double want = eng__key64_value(ref[i].k);
		cr_assert(got == want && signbit(got) == signbit(want),
		          "layout %d item %lld: %a vs %a", layout, (long long)i, got, want);
		if (i > 0)
			cr_assert(eng__sorted_key(&st, i - 1) <= eng__sorted_key(&st, i));
	}
	/* labels: per distinct score, the same count of positives */
	for (int64_t i = 0; i < n && pos > 0 && pos < n;) {
		int64_t j = i, a = 0, b = 0;
		while (j < n && eng__sorted_key(&st, j) == eng__sorted_key(&st, i)) {
			a += eng__sorted_label(&st, j);
			b += ref[j].i;
			j++;
		}
		cr_assert_eq(a, b, "layout %d run at %lld", layout, (long long)i);
		cr_assert(j == n || ref[j].k != ref[j - 1].k, "a run of equal scores ends at %lld",
		          (long long)j);
		i = j;
	}
	eng__auc_sorted_free(&st);
	free(ref);
	free(f);
	return layout;
}

Test(radix, auc_sort_layouts_read_back_scores_and_labels)
{
	enum { N = 6000 };
	static double s[N];
	static uint8_t y[N];
	rng_state = 11;
	for (int v = 0; v < 5; v++) {
		for (int i = 0; i < N; i++) {
			y[i] = (uint8_t)(rnd() & 1);
			double x = normal() + y[i];
			switch (v) {
			case 0: s[i] = (float)x; break; /* float32 values: 32-bit words */
			case 1: s[i] = x; break;        /* full doubles */
			case 2:                         /* -0, +0, subnormals, ties */
				s[i] = (double[]){-0.0,   0.0,     4.9e-324, -4.9e-324,
				                  1e-310, -1e-310, DBL_MIN,  0.5}[rnd() % 8];
				break;
			case 3: /* -inf and +inf with full doubles: bare keys */
				s[i] = i % 97 == 0 ? -INFINITY : i % 89 == 0 ? INFINITY : x;
				break;
			default: s[i] = floor(x * 3); break; /* few distinct, negative too */
			}
		}
		int l32 = check_sorted(s, y, N, false);
		int lf = check_sorted(s, y, N, true);
		/* float32 values of both signs span 2^31 keys: with the label,
		 * 64-bit words; a few small whole numbers fit 32-bit ones */
		if (v == 0)
			cr_expect_eq(l32, 64, "v %d", v);
		if (v == 4)
			cr_expect_eq(l32, 32, "v %d", v);
		if (v == 3)
			cr_expect_eq(l32, 0, "v %d", v);
		(void)lf;
		check_sorted(s, y, 100, false); /* 8-bit digits */
	}
}

Test(radix, auc_sort_reports_nan_with_its_index)
{
	double s[5] = {0.1, 0.2, NAN, 0.4, 0.5};
	uint8_t y[5] = {0, 1, 0, 1, 0};
	eng_tensor ts = {ENG_F64, 1, {5}, 5, s}, ty = {ENG_U8, 1, {5}, 5, y};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng__auc_sorted st;
	eng_error err;
	cr_expect_eq(eng__auc_sort(&st, &d, 0, 5, 1, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 2);
	eng__auc_sorted_free(&st);
}
