/*
 * test_binned.c - Keras' AUC as a histogram (engine/src/binned.c).
 *
 * Keras' docstring example, a slow per-threshold reimplementation of
 * Keras' update_state + result() (Keras' AUC formula) compared on random data
 * including scores exactly on thresholds, merge, reset, serialization and
 * corrupt state.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/binned.h"
#include "rng.h"

static eng_tensor vec(const double *v, int64_t n)
{
	eng_tensor t = {ENG_F64, 1, {n}, n, v};
	return t;
}

static double div0(double a, double b)
{
	return b != 0 ? a / b : 0;
}

/* Keras' AUC formula, one threshold at a time; f32: compare as Keras does,
 * float32(score) > float32(threshold) (else in double, to show the
 * difference). */
static double slow_keras_in(const double *y, const double *s, const double *w, int64_t n, int nt,
                            int curve, int summ, bool f32)
{
	double *tp = calloc(nt, sizeof(double)), *fp = calloc(nt, sizeof(double));
	double *tn = calloc(nt, sizeof(double)), *fn = calloc(nt, sizeof(double));
	for (int i = 0; i < nt; i++) {
		double t = i == 0        ? 0.0 - 1e-7
		           : i == nt - 1 ? 1.0 + 1e-7
		                         : (i - 1 + 1) * 1.0 / (nt - 1);
		for (int64_t k = 0; k < n; k++) {
			bool above = f32 ? (float)s[k] > (float)t : s[k] > t;
			double wk = w ? w[k] : 1.0;
			if (y[k] == 1) {
				if (above)
					tp[i] += wk;
				else
					fn[i] += wk;
			} else {
				if (above)
					fp[i] += wk;
				else
					tn[i] += wk;
			}
		}
	}
	double area = 0;
	for (int i = 0; i + 1 < nt; i++) {
		if (curve == 1 && summ == 0) {
			double dtp = tp[i] - tp[i + 1];
			double p0 = tp[i] + fp[i], p1 = tp[i + 1] + fp[i + 1];
			double slope = div0(dtp, fmax(p0 - p1, 0));
			double icpt = tp[i + 1] - slope * p1;
			double ratio = (p0 > 0 && p1 > 0) ? div0(p0, fmax(p1, 0)) : 1.0;
			area += div0(slope * (dtp + icpt * log(ratio)),
			             fmax(tp[i + 1] + fn[i + 1], 0));
			continue;
		}
		double x0, x1, y0, y1;
		if (curve == 0) {
			x0 = div0(fp[i], fp[i] + tn[i]);
			x1 = div0(fp[i + 1], fp[i + 1] + tn[i + 1]);
			y0 = div0(tp[i], tp[i] + fn[i]);
			y1 = div0(tp[i + 1], tp[i + 1] + fn[i + 1]);
		} else {
			x0 = div0(tp[i], tp[i] + fn[i]);
			x1 = div0(tp[i + 1], tp[i + 1] + fn[i + 1]);
			y0 = div0(tp[i], tp[i] + fp[i]);
			y1 = div0(tp[i + 1], tp[i + 1] + fp[i + 1]);
		}
		double h = summ == 0 ? (y0 + y1) / 2 : summ == 1 ? fmin(y0, y1) : fmax(y0, y1);
		area += (x0 - x1) * h;
	}
	free(tp);
	free(fp);
	free(tn);
	free(fn);
	return area;
}

static double slow_keras(const double *y, const double *s, const double *w, int64_t n, int nt,
                         int curve, int summ)
{
	return slow_keras_in(y, s, w, n, nt, curve, summ, true);
}

Test(binned, keras_docstring_example)
{
	double y[] = {0, 0, 1, 1}, p[] = {0, 0.5, 0.3, 0.9}, w[] = {1, 0, 0, 1};
	eng_tensor ts = vec(p, 4), ty = vec(y, 4), tw = vec(w, 4);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	eng_error err;
	cr_assert_eq(
	        eng_auc_binned(&r, NULL, &d, 0, 3, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512, &err),
	        0);
	cr_expect(fabs(r.auc - 0.75) < 1e-12, "got %g", r.auc);
	d.weight = &tw;
	cr_assert_eq(
	        eng_auc_binned(&r, NULL, &d, 0, 3, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512, &err),
	        0);
	cr_expect(fabs(r.auc - 1.0) < 1e-12, "got %g", r.auc);
}

Test(binned, torchmetrics_example_is_half_with_many_thresholds)
{
	double y[] = {0, 1, 1, 0}, p[] = {0, 0.5, 0.7, 0.8};
	eng_tensor ts = vec(p, 4), ty = vec(y, 4);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	cr_assert_eq(eng_auc_binned(&r, NULL, &d, 0, 1001, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION,
	                            512, NULL),
	             0);
	cr_expect(fabs(r.auc - 0.5) < 1e-12, "got %g", r.auc);
}

Test(binned, matches_slow_per_threshold_loop)
{
	static const int nts[] = {2, 3, 4, 7, 11, 50, 200, 1000};
	rng_state = 42;
	for (size_t a = 0; a < sizeof nts / sizeof nts[0]; a++) {
		int nt = nts[a];
		int64_t n = 400;
		double *y = malloc(n * sizeof(double)), *s = malloc(n * sizeof(double));
		double *w = malloc(n * sizeof(double));
		for (int64_t i = 0; i < n; i++) {
			y[i] = (double)(rnd() & 1);
			switch (i % 4) {
			case 0: s[i] = unif(); break;
			/* exactly on a threshold k / (n-1), computed as Keras does */
			case 1:
				s[i] = (double)(rnd() % nt) * 1.0 / (nt - 1);
				if (i % 8 == 5) /* on the float32 threshold Keras compares */
					s[i] = (double)(float)s[i];
				break;
			case 2: s[i] = fmin(1.0, fmax(0.0, unif() * 0.6 + 0.4 * y[i])); break;
			default: s[i] = i % 8 == 3 ? 0.0 : 1.0; break;
			}
			w[i] = (double)(rnd() % 5) / 2.0;
		}
		for (int weighted = 0; weighted < 2; weighted++)
			for (int curve = 0; curve < 2; curve++)
				for (int summ = 0; summ < 3; summ++) {
					eng_tensor ts = vec(s, n), ty = vec(y, n), tw = vec(w, n);
					eng_auc_data d = {&ts, &ty, weighted ? &tw : NULL,
					                  ENG_LABELS_BINARY};
					eng_auc_result r;
					eng_error err;
					cr_assert_eq(eng_auc_binned(&r, NULL, &d, 0, nt,
					                            (eng_curve)curve,
					                            (eng_summation)summ, 512, &err),
					             0);
					double want = slow_keras(y, s, weighted ? w : NULL, n, nt,
					                         curve, summ);
					cr_expect(fabs(r.auc - want) < 1e-10,
					          "nt=%d w=%d curve=%d summ=%d: %.15g vs %.15g", nt,
					          weighted, curve, summ, r.auc, want);
				}
		free(y);
		free(s);
		free(w);
	}
}

/* Keras compares float32(score) > float32(threshold): a score placed on
 * the float32 rounding of a threshold counts as below it, although in
 * double it may lie above (when the rounding went up) and a score just
 * above a threshold in double may round onto it. */
Test(binned, compares_in_float32_as_keras)
{
	enum { N = 600 };
	int nt = 200;
	double y[N], s[N];
	int differ = 0;
	for (int i = 0; i < N; i++) {
		int k = 1 + i % (nt - 2);
		double t = (double)k * 1.0 / (nt - 1);
		y[i] = (double)((i * 7 + i / 3) % 2);
		s[i] = i % 3 == 0 ? (double)(float)t : (i % 3 == 1 ? nextafter(t, 2.0) : t);
		differ += ((float)s[i] > (float)t) != (s[i] > t);
	}
	cr_assert_gt(differ, 100, "the data must tell the two comparisons apart");
	eng_tensor ts = vec(s, N), ty = vec(y, N);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	for (int curve = 0; curve < 2; curve++) {
		eng_auc_result r;
		cr_assert_eq(eng_auc_binned(&r, NULL, &d, 0, nt, (eng_curve)curve,
		                            ENG_SUM_INTERPOLATION, 512, NULL),
		             0);
		double f32 = slow_keras_in(y, s, NULL, N, nt, curve, 0, true);
		double f64 = slow_keras_in(y, s, NULL, N, nt, curve, 0, false);
		cr_expect(fabs(f32 - f64) > 1e-6, "curve %d: %.12g %.12g", curve, f32, f64);
		cr_expect(fabs(r.auc - f32) < 1e-12, "curve %d: %.12g, Keras %.12g (double %.12g)",
		          curve, r.auc, f32, f64);
		/* the same through a stream's accumulator, scores as raw values */
		eng_binned *b = eng_binned_new(nt);
		uint8_t lab[N];
		for (int i = 0; i < N; i++)
			lab[i] = (uint8_t)y[i];
		cr_assert_eq(eng_binned_add_values(b, s, lab, NULL, N, NULL), 0);
		eng_auc_result r2;
		cr_assert_eq(
		        eng_binned_auc(&r2, NULL, b, (eng_curve)curve, ENG_SUM_INTERPOLATION, 512),
		        0);
		cr_expect(fabs(r2.auc - f32) < 1e-12);
		eng_binned_free(b);
	}
}

Test(binned, boundary_scores_land_below_their_threshold)
{
	/* n = 4: thresholds -1e-7, 1/3, 2/3, 1+1e-7. A positive at exactly 1/3
	 * is not > 1/3, so with a negative at 0.34 (> 1/3) ROC is inverted at
	 * that threshold: tpr(1/3) = 0, fpr(1/3) = 1. */
	double y[] = {1, 0}, s[] = {1.0 / 3.0, 0.34};
	eng_tensor ts = vec(s, 2), ty = vec(y, 2);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	cr_assert_eq(
	        eng_auc_binned(&r, NULL, &d, 0, 4, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512, NULL),
	        0);
	cr_expect(fabs(r.auc - slow_keras(y, s, NULL, 2, 4, 0, 0)) < 1e-15);
	cr_expect(fabs(r.auc - 0.0) < 1e-15, "got %g", r.auc);
	/* scores outside [0, 1] fall below / above every threshold: the
	 * negative at -3 is never predicted positive, so no ROC point reaches
	 * fpr > 0 and Keras' area is 0 (a quirk kept on purpose). */
	double s2[] = {7.0, -3.0};
	eng_tensor t2 = vec(s2, 2);
	d.score = &t2;
	cr_assert_eq(eng_auc_binned(&r, NULL, &d, 0, 200, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512,
	                            NULL),
	             0);
	cr_expect(fabs(r.auc - slow_keras(y, s2, NULL, 2, 200, 0, 0)) < 1e-15);
	cr_expect(fabs(r.auc) < 1e-15, "got %g", r.auc);
}

Test(binned, one_class_is_undefined)
{
	double y[] = {1, 1}, s[] = {.2, .7};
	eng_tensor ts = vec(s, 2), ty = vec(y, 2);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	cr_assert_eq(eng_auc_binned(&r, NULL, &d, 0, 200, ENG_CURVE_PR, ENG_SUM_INTERPOLATION, 512,
	                            NULL),
	             0);
	cr_expect(!r.defined && isnan(r.auc));
	cr_expect_eq(r.positives, 2);
}

Test(binned, merge_equals_one_add_and_reset)
{
	enum { N = 1000 };
	static double s[N], y[N];
	rng_state = 5;
	for (int i = 0; i < N; i++) {
		y[i] = (double)(rnd() & 1);
		s[i] = fmin(1, unif() * 0.8 + 0.2 * y[i]);
	}
	eng_binned *all = eng_binned_new(200), *a = eng_binned_new(200), *b = eng_binned_new(200);
	eng_tensor ts = vec(s, N), ty = vec(y, N), ta = vec(s, 300), tya = vec(y, 300);
	eng_tensor tb = vec(s + 300, N - 300), tyb = vec(y + 300, N - 300);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_data da = {&ta, &tya, NULL, ENG_LABELS_BINARY};
	eng_auc_data db = {&tb, &tyb, NULL, ENG_LABELS_BINARY};
	cr_assert_eq(eng_binned_add(all, &d, 0, NULL), 0);
	cr_assert_eq(eng_binned_add(a, &da, 0, NULL), 0);
	cr_assert_eq(eng_binned_add(b, &db, 0, NULL), 0);
	cr_assert_eq(eng_binned_merge(b, a), 0);
	eng_auc_result r1, r2;
	eng_binned_auc(&r1, NULL, all, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512);
	eng_binned_auc(&r2, NULL, b, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512);
	cr_expect(fabs(r1.auc - r2.auc) < 1e-12);
	cr_expect_eq(r1.positives, r2.positives);
	eng_binned *other = eng_binned_new(50);
	cr_expect_eq(eng_binned_merge(b, other), ENG_ESTATE);
	eng_binned_reset(b);
	eng_binned_auc(&r2, NULL, b, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512);
	cr_expect(!r2.defined);
	cr_expect_eq(r2.positives + r2.negatives, 0);
	/* a failed add leaves the state alone */
	double bad_y[] = {0, 1, 3}, bs[] = {.1, .2, .3};
	eng_tensor tbad = vec(bad_y, 3), tbs = vec(bs, 3);
	eng_auc_data dbad = {&tbs, &tbad, NULL, ENG_LABELS_BINARY};
	eng_error err;
	cr_expect_eq(eng_binned_add(all, &dbad, 0, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 2);
	eng_binned_auc(&r2, NULL, all, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512);
	cr_expect(fabs(r1.auc - r2.auc) < 1e-15);
	cr_expect_eq(r1.positives, r2.positives);
	cr_expect_null(eng_binned_new(1));
	eng_binned_free(NULL);
	eng_binned_free(other);
	eng_binned_free(all);
	eng_binned_free(a);
	eng_binned_free(b);
}

Test(binned, serialization_round_trip_and_corruption)
{
	enum { N = 500 };
	static double s[N];
	static uint8_t y[N];
	rng_state = 11;
	for (int i = 0; i < N; i++) {
		y[i] = (uint8_t)(rnd() & 1);
		s[i] = unif();
	}
	eng_binned *b = eng_binned_new(37);
	cr_assert_eq(eng_binned_add_values(b, s, y, NULL, N, NULL), 0);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(eng_binned_serialize(&buf, &len, b), 0);
	eng_binned *c;
	cr_assert_eq(eng_binned_deserialize(&c, buf, len), 0);
	eng_auc_result r1, r2;
	eng_binned_auc(&r1, NULL, b, ENG_CURVE_PR, ENG_SUM_MAJORING, 512);
	eng_binned_auc(&r2, NULL, c, ENG_CURVE_PR, ENG_SUM_MAJORING, 512);
	cr_expect(r1.auc == r2.auc && r1.positives == r2.positives);
	cr_expect_eq(eng_binned_num_thresholds(c), 37);
	eng_binned_free(c);

	eng_binned *bad;
	cr_expect_eq(eng_binned_deserialize(&bad, buf, len - 1), ENG_ESTATE);
	cr_expect_eq(eng_binned_deserialize(&bad, buf, 3), ENG_ESTATE);
	cr_expect_eq(eng_binned_deserialize(&bad, NULL, 0), ENG_ESTATE);
	uint8_t *copy = malloc(len);
	memcpy(copy, buf, len);
	copy[0] ^= 1; /* magic */
	cr_expect_eq(eng_binned_deserialize(&bad, copy, len), ENG_ESTATE);
	memcpy(copy, buf, len);
	copy[4] = 9; /* version */
	cr_expect_eq(eng_binned_deserialize(&bad, copy, len), ENG_ESTATE);
	memcpy(copy, buf, len);
	copy[8] = 1; /* num_thresholds 1 */
	cr_expect_eq(eng_binned_deserialize(&bad, copy, len), ENG_ESTATE);
	memcpy(copy, buf, len);
	copy[len - 1] = 0xff; /* last weight becomes NaN / negative */
	copy[len - 2] = 0xff;
	cr_expect_eq(eng_binned_deserialize(&bad, copy, len), ENG_ESTATE);
	cr_expect_null(bad);

	/* Counts are bounded so merges can never overflow the int64 counters:
	 * a state claiming 2^53 + 1 positives is corrupt; two states at the
	 * bound do not merge. */
	memcpy(copy, buf, len);
	for (int k = 0; k < 8; k++)
		copy[16 + k] = (uint8_t)((((uint64_t)1 << 53) + 1) >> (8 * k));
	cr_expect_eq(eng_binned_deserialize(&bad, copy, len), ENG_ESTATE);
	memcpy(copy, buf, len);
	for (int k = 0; k < 8; k++)
		copy[16 + k] = (uint8_t)(((uint64_t)1 << 53) >> (8 * k));
	eng_binned *big1, *big2;
	cr_assert_eq(eng_binned_deserialize(&big1, copy, len), 0);
	cr_assert_eq(eng_binned_deserialize(&big2, copy, len), 0);
	cr_expect_eq(eng_binned_merge(big1, big2), ENG_ELIMIT);
	eng_binned_free(big1);
	eng_binned_free(big2);
	free(copy);
	free(buf);
	eng_binned_free(b);
}

Test(binned, curve_points)
{
	double y[] = {0, 0, 1, 1}, p[] = {0, 0.5, 0.3, 0.9};
	eng_tensor ts = vec(p, 4), ty = vec(y, 4);
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	eng_auc_curve c = ENG_AUC_CURVE_INIT;
	cr_assert_eq(
	        eng_auc_binned(&r, &c, &d, 0, 3, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 512, NULL),
	        0);
	cr_assert_eq(c.n, 3);
	/* decreasing thresholds 1+1e-7, 0.5, -1e-7 */
	cr_expect(c.thresholds[0] > 1 && c.thresholds[1] == 0.5 && c.thresholds[2] < 0);
	cr_expect(c.x[0] == 0 && c.y[0] == 0);
	cr_expect(c.x[1] == 0 && c.y[1] == 0.5);
	cr_expect(c.x[2] == 1 && c.y[2] == 1);
	eng_auc_curve_free(&c);
}
