/*
 * test_binned_cells.c - the fast cell lookup and the counting paths of
 * engine/src/binned.c against straightforward references.
 *
 * eng_binned_cell (one multiply, an easy case and two compares against the
 * float32 threshold table) must give #{ i : float32(s) > float32(t_i) },
 * Keras' float32 comparison, for every score:
 * every threshold and its nextafter neighbours, float32 roundings of them,
 * random doubles and floats, and specials (0, -0.0, 1, +-inf, subnormals,
 * the epsilon thresholds). The histograms eng_binned_add_values and
 * eng_binned_add build (integer sub-histograms, the AVX2 kernel, the fast
 * tensor reader) must hold exactly the reference counts, and report the
 * same errors as the per-item rules.
 */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/binned.h"

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Keras' thresholds as docs/API.md states them, computed plainly in double. */
static double ref_threshold64(int64_t n, int64_t i)
{
	if (i == 0)
		return -1e-7;
	if (i == n - 1)
		return 1.0 + 1e-7;
	return (double)i / (double)(n - 1);
}

/* ... rounded to float32, as Keras compares them. */
static float ref_threshold(int64_t n, int64_t i)
{
	return (float)ref_threshold64(n, i);
}

/* #{ i : float32(s) > T_i } by bisection over the increasing thresholds. */
static int64_t ref_cell(int64_t n, double s)
{
	float sf = (float)s;
	int64_t lo = 0, hi = n; /* answer in [lo, hi] */
	while (lo < hi) {
		int64_t mid = lo + (hi - lo) / 2;
		if (sf > ref_threshold(n, mid))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int check(const eng_binned *b, int64_t n, double s)
{
	int64_t got = eng_binned_cell(b, s), want = ref_cell(n, s);
	cr_expect_eq(got, want, "n=%lld s=%.17g (%a): cell %lld, reference %lld", (long long)n, s,
	             s, (long long)got, (long long)want);
	return got == want;
}

static void check_near(const eng_binned *b, int64_t n, double t)
{
	double up = t, dn = t;
	check(b, n, t);
	for (int k = 0; k < 3; k++) {
		up = nextafter(up, INFINITY);
		dn = nextafter(dn, -INFINITY);
		check(b, n, up);
		check(b, n, dn);
	}
	float f = (float)t;
	check(b, n, (double)f);
	check(b, n, (double)nextafterf(f, INFINITY));
	check(b, n, (double)nextafterf(f, -INFINITY));
}

static const int64_t sizes[] = {2,   3,    4,    7,    10,    101,   200,     201,
                                997, 1000, 1001, 4097, 65536, 65537, 1000003, (int64_t)1 << 20};

Test(binned_cells, every_threshold_and_its_neighbours)
{
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int64_t n = sizes[k];
		eng_binned *b = eng_binned_new(n);
		cr_assert_not_null(b);
		/* all thresholds for small n, a spread of them (and both ends) for
		 * large ones, to keep the test fast */
		int64_t step = n <= 5000 ? 1 : n / 3001;
		for (int64_t i = 0; i < n; i += step)
			check_near(b, n, ref_threshold64(n, i));
		for (int64_t i = n - 4 > 0 ? n - 4 : 0; i < n; i++)
			check_near(b, n, ref_threshold64(n, i));
		/* the products i/(n-1) the multiply can land on exactly */
		for (int64_t i = 0; i < n; i += step)
			check_near(b, n, ((double)i + 0.5) / (double)(n - 1));
		eng_binned_free(b);
	}
}

Test(binned_cells, specials)
{
	const double sp[] = {0.0,          -0.0,     1.0,      -1.0,      INFINITY,     -INFINITY,
	                     DBL_MIN,      -DBL_MIN, 4.9e-324, -4.9e-324, DBL_TRUE_MIN, DBL_MAX,
	                     -DBL_MAX,     1e-7,     -1e-7,    -1e-7 / 2, 1.0 + 1e-7,   1.0 + 2e-7,
	                     2.0,          0.5,      1e-300,   -1e-300,   1e300,        FLT_MIN,
	                     FLT_TRUE_MIN, FLT_MAX,  0.1,      0.9,       1.0 - 1e-16};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		eng_binned *b = eng_binned_new(sizes[k]);
		cr_assert_not_null(b);
		for (size_t i = 0; i < sizeof(sp) / sizeof(sp[0]); i++)
			check_near(b, sizes[k], sp[i]);
		eng_binned_free(b);
	}
}

Test(binned_cells, random_doubles_and_floats)
{
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		int64_t n = sizes[k];
		eng_binned *b = eng_binned_new(n);
		cr_assert_not_null(b);
		int bad = 0;
		for (int i = 0; i < 200000 && bad < 5; i++) {
			uint64_t r = rnd();
			double s;
			switch (i % 4) {
			case 0: s = (double)(r >> 11) / 9007199254740992.0 * 1.2 - 0.1; break;
			case 1: s = (double)(float)((double)(r >> 11) / 9007199254740992.0); break;
			case 2: /* any bit pattern that is not NaN */
				memcpy(&s, &r, sizeof(s));
				if (isnan(s))
					s = 0.25;
				break;
			default: { /* a grid point (i / (n-1)) moved by a few ulps */
				double g = (double)(r % (uint64_t)n) / (double)(n - 1);
				int64_t ulps = (int64_t)((r >> 40) % 9) - 4;
				for (; ulps > 0; ulps--)
					g = nextafter(g, INFINITY);
				for (; ulps < 0; ulps++)
					g = nextafter(g, -INFINITY);
				s = g;
			}
			}
			bad += !check(b, n, s);
		}
		eng_binned_free(b);
	}
}

/* Reference histogram of n_items items: ref[2 m + y] summed weights. */
static void ref_hist(double *ref, int64_t n, const double *s, const uint8_t *y, const double *w,
                     int64_t items)
{
	memset(ref, 0, (size_t)(2 * (n + 1)) * sizeof(double));
	for (int64_t i = 0; i < items; i++)
		ref[2 * ref_cell(n, s[i]) + y[i]] += w ? w[i] : 1.0;
}

/* The serialized cells (pos, neg) must be ref's. */
static void expect_hist(const eng_binned *b, int64_t n, const double *ref, int64_t np, int64_t nn)
{
	uint8_t *buf;
	size_t len;
	cr_assert_eq(eng_binned_serialize(&buf, &len, b), 0);
	cr_assert_eq(len, 32 + (size_t)(n + 1) * 16);
	uint64_t p, q;
	memcpy(&p, buf + 16, 8);
	memcpy(&q, buf + 24, 8);
	cr_expect_eq((int64_t)p, np);
	cr_expect_eq((int64_t)q, nn);
	for (int64_t m = 0; m <= n; m++) {
		double pos, neg;
		memcpy(&pos, buf + 32 + 16 * m, 8);
		memcpy(&neg, buf + 32 + 16 * m + 8, 8);
		cr_expect(fabs(pos - ref[2 * m + 1]) <= 1e-9 * (1.0 + ref[2 * m + 1]),
		          "cell %lld pos %.17g ref %.17g", (long long)m, pos, ref[2 * m + 1]);
		cr_expect(fabs(neg - ref[2 * m]) <= 1e-9 * (1.0 + ref[2 * m]),
		          "cell %lld neg %.17g ref %.17g", (long long)m, neg, ref[2 * m]);
	}
	free(buf);
}

/* Items mixing threshold hits, their neighbours, out-of-range and random
 * scores. */
static void make_items(int64_t n, double *s, uint8_t *y, double *w, int64_t items)
{
	for (int64_t i = 0; i < items; i++) {
		uint64_t r = rnd();
		double g = (double)(r % (uint64_t)n) / (double)(n - 1);
		switch (i % 5) {
		case 0: s[i] = g; break;
		case 1: s[i] = nextafter(g, (r >> 20) & 1 ? INFINITY : -INFINITY); break;
		case 2: s[i] = ((double)(r >> 11) / 9007199254740992.0) * 1.4 - 0.2; break;
		case 3: s[i] = (double)(float)((double)(r >> 11) / 9007199254740992.0); break;
		default: s[i] = (r >> 30) % 3 == 0 ? -0.0 : ((r >> 30) % 3 == 1 ? 1.0 : 1e-310);
		}
		y[i] = (uint8_t)((r >> 50) & 1);
		w[i] = (double)((r >> 52) % 7) * 0.25;
	}
}

Test(binned_cells, histograms_equal_reference, .timeout = 60)
{
	const int64_t ns[] = {2, 200, 1001, 70000};
	const int64_t items = 300000;
	double *s = malloc((size_t)items * sizeof(double)),
	       *w = malloc((size_t)items * sizeof(double));
	uint8_t *y = malloc((size_t)items);
	double *ref = malloc((size_t)(2 * 70001) * sizeof(double));
	cr_assert(s && w && y && ref);
	for (size_t k = 0; k < sizeof(ns) / sizeof(ns[0]); k++) {
		int64_t n = ns[k], np = 0;
		make_items(n, s, y, w, items);
		for (int64_t i = 0; i < items; i++)
			np += y[i];
		eng_error err;
		for (int weighted = 0; weighted < 2; weighted++) {
			eng_binned *b = eng_binned_new(n);
			cr_assert_not_null(b);
			/* uneven pieces: the tails of the 4-wide loops, small adds */
			int64_t cuts[] = {0, 1, 7, 4099, 150001, items};
			for (int c = 0; c + 1 < 6; c++)
				cr_assert_eq(eng_binned_add_values(b, s + cuts[c], y + cuts[c],
				                                   weighted ? w + cuts[c] : NULL,
				                                   cuts[c + 1] - cuts[c], &err),
				             0, "%s", err.msg);
			ref_hist(ref, n, s, y, weighted ? w : NULL, items);
			expect_hist(b, n, ref, np, items - np);

			/* the same through tensors: float64 column of (N, 3), int32
			 * labels; exactly the same state */
			double *s3 = malloc((size_t)items * 3 * sizeof(double));
			int32_t *y32 = malloc((size_t)items * sizeof(int32_t));
			cr_assert(s3 && y32);
			for (int64_t i = 0; i < items; i++) {
				s3[3 * i] = -5.0;
				s3[3 * i + 1] = s[i];
				s3[3 * i + 2] = NAN; /* never read */
				y32[i] = y[i];
			}
			eng_tensor st = {ENG_F64, 2, {items, 3}, items * 3, s3};
			eng_tensor lt = {ENG_I32, 1, {items}, items, y32};
			eng_tensor wt = {ENG_F64, 1, {items}, items, w};
			eng_auc_data d = {&st, &lt, weighted ? &wt : NULL, ENG_LABELS_BINARY};
			eng_binned *c = eng_binned_new(n);
			cr_assert_eq(eng_binned_add(c, &d, 1, &err), 0, "%s", err.msg);
			uint8_t *b1, *b2;
			size_t l1, l2;
			cr_assert_eq(eng_binned_serialize(&b1, &l1, b), 0);
			cr_assert_eq(eng_binned_serialize(&b2, &l2, c), 0);
			cr_expect(l1 == l2 && memcmp(b1, b2, l1) == 0,
			          "tensor and raw adds differ (n=%lld)", (long long)n);
			free(b1);
			free(b2);
			free(s3);
			free(y32);
			eng_binned_free(b);
			eng_binned_free(c);
		}
	}
	free(s);
	free(w);
	free(y);
	free(ref);
}

Test(binned_cells, float32_scores_and_contiguous_float64_agree)
{
	const int64_t items = 50000, n = 200;
	float *f = malloc((size_t)items * sizeof(float));
	double *d = malloc((size_t)items * sizeof(double));
	uint8_t *y = malloc((size_t)items);
	cr_assert(f && d && y);
	for (int64_t i = 0; i < items; i++) {
		uint64_t r = rnd();
		f[i] = (float)((double)(r % 200) / 199.0); /* float32 roundings of thresholds */
		if (i % 3 == 0)
			f[i] = (float)((double)(r >> 11) / 9007199254740992.0);
		d[i] = (double)f[i];
		y[i] = (uint8_t)((r >> 40) & 1);
	}
	eng_tensor ft = {ENG_F32, 1, {items}, items, f};
	eng_tensor dt = {ENG_F64, 1, {items}, items, d};
	eng_tensor yt = {ENG_U8, 1, {items}, items, y};
	eng_auc_data df = {&ft, &yt, NULL, ENG_LABELS_BINARY};
	eng_auc_data dd = {&dt, &yt, NULL, ENG_LABELS_BINARY};
	eng_binned *a = eng_binned_new(n), *b = eng_binned_new(n);
	eng_error err;
	cr_assert_eq(eng_binned_add(a, &df, 0, &err), 0);
	cr_assert_eq(eng_binned_add(b, &dd, 0, &err), 0);
	double *ref = malloc((size_t)(2 * (n + 1)) * sizeof(double));
	int64_t np = 0;
	for (int64_t i = 0; i < items; i++)
		np += y[i];
	ref_hist(ref, n, d, y, NULL, items);
	expect_hist(a, n, ref, np, items - np);
	expect_hist(b, n, ref, np, items - np);
	eng_binned_free(a);
	eng_binned_free(b);
	free(ref);
	free(f);
	free(d);
	free(y);
}

Test(binned_cells, errors_name_the_first_bad_item_and_change_nothing)
{
	const int64_t items = 10000;
	double *s = calloc((size_t)items, sizeof(double)),
	       *w = calloc((size_t)items, sizeof(double));
	uint8_t *y = calloc((size_t)items, 1);
	cr_assert(s && w && y);
	for (int64_t i = 0; i < items; i++) {
		s[i] = 0.5;
		w[i] = 1.0;
	}
	eng_binned *b = eng_binned_new(200);
	eng_error err;
	/* first bad item wins whatever its kind; the rest of its block too */
	s[7000] = NAN;
	y[6000] = 2;
	w[6500] = -1.0;
	cr_expect_eq(eng_binned_add_values(b, s, y, w, items, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 6000);
	y[6000] = 1;
	cr_expect_eq(eng_binned_add_values(b, s, y, w, items, &err), ENG_EWEIGHT);
	cr_expect_eq(err.index, 6500);
	w[6500] = INFINITY;
	cr_expect_eq(eng_binned_add_values(b, s, y, w, items, &err), ENG_EWEIGHT);
	w[6500] = 1.0;
	cr_expect_eq(eng_binned_add_values(b, s, y, w, items, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 7000);
	cr_expect_eq(eng_binned_add_values(b, s, y, NULL, items, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 7000);
	/* through a tensor: NaN at row 7000 of a float64 column */
	eng_tensor st = {ENG_F64, 1, {items}, items, s};
	eng_tensor yt = {ENG_U8, 1, {items}, items, y};
	eng_auc_data d = {&st, &yt, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_binned_add(b, &d, 0, &err), ENG_ENONFINITE);
	cr_expect_eq(err.index, 7000);
	s[7000] = 0.25;
	int32_t *y32 = calloc((size_t)items, sizeof(int32_t));
	y32[9999] = -1;
	eng_tensor yt32 = {ENG_I32, 1, {items}, items, y32};
	eng_auc_data d32 = {&st, &yt32, NULL, ENG_LABELS_BINARY};
	cr_expect_eq(eng_binned_add(b, &d32, 0, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 9999);
	eng_auc_result r;
	cr_assert_eq(eng_binned_auc(&r, NULL, b, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 2), 0);
	cr_expect_eq(r.positives + r.negatives, 0, "a failed add changed the state");
	eng_binned_free(b);
	free(y32);
	free(s);
	free(w);
	free(y);
}
