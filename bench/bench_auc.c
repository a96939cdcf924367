/*
 * bench_auc.c - lossd's AUC engines: exact AUC next to scikit-learn's
 * roc_auc_score (bench/peers/sklearn_auc.py, the same data recipe), and the
 * update rate of the mergeable accumulators (binned, sketch), which must
 * keep up with streams of scores.
 *
 * Data: labels positive with probability 0.3, scores normal with the
 * positives shifted by +1 (AUC ~0.76); float32 like a model's output
 * (ties happen), and float64 (what JSON numbers decode to). For the binned
 * and sketch updates the scores are squashed into (0, 1) by a sigmoid, as
 * probabilities are.
 *
 * And the engine's share of one durable stream update (bench_durable.py's
 * "b64" case: 1,000 float32 probabilities to a sketch stream): the delta
 * built from the batch, merged into the stream, serialized for the store;
 * microseconds per update (engine/stream_update_1000), with each part beside it.
 *
 * Figures are M scores/s = n / median seconds, on one thread: the AUC
 * engines take no eng_parallel, so per core is per call. Checks that fail
 * the program: the exact AUC agrees with a float64 O(n log n) reference
 * computed here (sort, ties counted one half) to 1e-9, binned and sketch
 * AUCs are within their stated error of the exact one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "lossd/auc.h"
#include "lossd/binned.h"
#include "lossd/sketch.h"
#include "lossd/stream.h"

typedef struct sl {
	double s;
	int y;
} sl;

static int cmp_sl(const void *a, const void *b)
{
	double x = ((const sl *)a)->s, y = ((const sl *)b)->s;

	return (x > y) - (x < y);
}

/* Mann-Whitney with midranks, in double: the reference exact AUC. */
static double ref_auc(const double *s, const int32_t *y, int64_t n)
{
	sl *v = malloc((size_t)n * sizeof *v);
	double rank_sum = 0.0, P = 0.0, N;

	if (!v)
		exit(2);
	for (int64_t i = 0; i < n; i++) {
		v[i].s = s[i];
		v[i].y = y[i];
	}
	qsort(v, (size_t)n, sizeof *v, cmp_sl);
	for (int64_t i = 0; i < n;) {
		int64_t j = i;
		double pos = 0.0, mid;

		while (j < n && v[j].s == v[i].s)
			pos += v[j++].y;
		mid = 0.5 * (double)(i + 1 + j); /* mean of ranks i+1 .. j */
		rank_sum += pos * mid;
		P += pos;
		i = j;
	}
	free(v);
	N = (double)n - P;
	return (rank_sum - P * (P + 1.0) / 2.0) / (P * N);
}

typedef struct dataset {
	int64_t n;
	int32_t *y;
	float *s32;
	double *s64; /* the same values as s32, widened */
	double *p64; /* sigmoid(s64): probabilities for binned and sketch */
	uint8_t *y8;
	double exact; /* reference AUC of s64 */
} dataset;

static void make_data(dataset *d, int64_t n)
{
	bench_rng rng = {5};

	d->n = n;
	d->y = bench_alloc((size_t)n * sizeof *d->y);
	d->y8 = bench_alloc((size_t)n);
	d->s32 = bench_alloc((size_t)n * sizeof *d->s32);
	d->s64 = bench_alloc((size_t)n * sizeof *d->s64);
	d->p64 = bench_alloc((size_t)n * sizeof *d->p64);
	for (int64_t i = 0; i < n; i++) {
		d->y[i] = bench_rng_unif(&rng) < 0.3;
		d->y8[i] = (uint8_t)d->y[i];
		d->s32[i] = (float)(bench_rng_normal(&rng) + d->y[i]);
		d->s64[i] = d->s32[i];
		d->p64[i] = 1.0 / (1.0 + exp(-d->s64[i]));
	}
	d->exact = ref_auc(d->s64, d->y, n);
}

static void free_data(dataset *d)
{
	free(d->y);
	free(d->y8);
	free(d->s32);
	free(d->s64);
	free(d->p64);
}

static eng_tensor vec(eng_dtype t, const void *data, int64_t n)
{
	eng_tensor v = {t, 1, {n}, n, data};

	return v;
}

static int bench_exact(const bench_opts *o, const dataset *d, const char *name, int f64)
{
	eng_tensor st = vec(f64 ? ENG_F64 : ENG_F32,
	                    f64 ? (const void *)d->s64 : (const void *)d->s32, d->n);
	eng_tensor lt = vec(ENG_I32, d->y, d->n);
	eng_auc_data ad = {&st, &lt, NULL, ENG_LABELS_BINARY};
	int runs = d->n >= 5000000 && o->runs > 5 ? 5 : o->runs;
	double *secs = calloc((size_t)runs, sizeof *secs), med;
	eng_auc_result res = {0};
	eng_error err;
	char id[64], extra[160];

	for (int r = -1; r < runs; r++) {
		double t0 = bench_now();
		int rc = eng_auc_exact(&res, NULL, &ad, 0, NULL, &err);

		if (r >= 0)
			secs[r] = bench_now() - t0;
		if (rc != 0) {
			fprintf(stderr, "bench_auc: eng_auc_exact: %d %s\n", rc, err.msg);
			free(secs);
			return 1;
		}
	}
	med = bench_median(secs, runs);
	free(secs);
	snprintf(id, sizeof id, "auc/exact/%s%s", name, f64 ? "_f64" : "");
	snprintf(extra, sizeof extra, "\"auc\": %.12g, \"ref\": %.12g, \"ms\": %.4g", res.auc,
	         d->exact, med * 1e3);
	bench_emit(id, "lossd", "M/s", (double)d->n / med / 1e6, extra);
	if (!(fabs(res.auc - d->exact) <= 1e-9)) {
		fprintf(stderr, "bench_auc: exact AUC %.15g, reference %.15g\n", res.auc, d->exact);
		return 1;
	}
	return 0;
}

/* Binned (Keras, 200 thresholds) updates: eng_binned_add on a float64
 * tensor (what JSON decodes to) and eng_binned_add_values on raw arrays. */
static int bench_binned(const bench_opts *o, const dataset *d)
{
	eng_tensor st = vec(ENG_F64, d->p64, d->n), lt = vec(ENG_I32, d->y, d->n);
	eng_auc_data ad = {&st, &lt, NULL, ENG_LABELS_BINARY};
	int fails = 0;

	for (int variant = 0; variant < 2; variant++) {
		double *secs = calloc((size_t)o->runs, sizeof *secs), med;
		eng_binned *b = eng_binned_new(200);
		eng_auc_result res = {0};
		eng_error err;
		char extra[160];

		for (int r = -1; r < o->runs && b; r++) {
			double t0 = bench_now();
			int rc;

			eng_binned_reset(b);
			rc = variant ? eng_binned_add_values(b, d->p64, d->y8, NULL, d->n, &err)
			             : eng_binned_add(b, &ad, 0, &err);
			if (r >= 0)
				secs[r] = bench_now() - t0;
			if (rc != 0) {
				fprintf(stderr, "bench_auc: binned add: %d %s\n", rc, err.msg);
				fails++;
				break;
			}
		}
		if (!b ||
		    eng_binned_auc(&res, NULL, b, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 2) != 0) {
			fails++;
		} else {
			med = bench_median(secs, o->runs);
			snprintf(extra, sizeof extra,
			         "\"auc\": %.8g, \"exact\": %.8g, \"per_core\": true", res.auc,
			         d->exact);
			bench_emit(variant ? "auc/binned_update_values" : "auc/binned_update",
			           "lossd", "M/s", (double)d->n / med / 1e6, extra);
			/* 200 thresholds on these scores: Keras' interpolation is
			 * within about 1e-3 of the exact AUC */
			if (!(fabs(res.auc - d->exact) < 5e-3)) {
				fprintf(stderr, "bench_auc: binned AUC %.6g vs exact %.6g\n",
				        res.auc, d->exact);
				fails++;
			}
		}
		eng_binned_free(b);
		free(secs);
	}
	return fails;
}

/* Sketch updates (default 1 MiB cap: at 1e7 distinct scores it folds):
 * eng_sketch_add on a float64 tensor and eng_sketch_add_values on raw
 * arrays. The AUC must be within its own error bound of the exact one. */
static int bench_sketch(const bench_opts *o, const dataset *d)
{
	eng_tensor st = vec(ENG_F64, d->p64, d->n), lt = vec(ENG_I32, d->y, d->n);
	eng_auc_data ad = {&st, &lt, NULL, ENG_LABELS_BINARY};
	double exact_p = ref_auc(d->p64, d->y, d->n); /* the sigmoid can merge ties */
	int fails = 0;

	for (int variant = 0; variant < 2; variant++) {
		double *secs = calloc((size_t)o->runs, sizeof *secs), med;
		eng_sketch *sk = eng_sketch_new(0);
		eng_auc_result res = {0};
		eng_error err;
		char extra[200];

		for (int r = -1; r < o->runs && sk; r++) {
			double t0 = bench_now();
			int rc;

			eng_sketch_reset(sk);
			rc = variant ? eng_sketch_add_values(sk, d->p64, d->y8, NULL, d->n, &err)
			             : eng_sketch_add(sk, &ad, 0, &err);
			if (r >= 0)
				secs[r] = bench_now() - t0;
			if (rc != 0) {
				fprintf(stderr, "bench_auc: sketch add: %d %s\n", rc, err.msg);
				fails++;
				break;
			}
		}
		if (!sk || eng_sketch_auc(&res, NULL, sk, ENG_CURVE_ROC, 2) != 0) {
			fails++;
		} else {
			med = bench_median(secs, o->runs);
			snprintf(extra, sizeof extra,
			         "\"auc\": %.10g, \"exact\": %.10g, \"error_bound\": %.3g, "
			         "\"buckets\": %lld, \"per_core\": true",
			         res.auc, exact_p, res.error_bound,
			         (long long)eng_sketch_buckets(sk));
			bench_emit(variant ? "auc/sketch_update_values" : "auc/sketch_update",
			           "lossd", "M/s", (double)d->n / med / 1e6, extra);
			if (!(fabs(res.auc - exact_p) <= res.error_bound + 1e-12)) {
				fprintf(stderr,
				        "bench_auc: sketch AUC %.12g, exact %.12g, bound %.3g\n",
				        res.auc, exact_p, res.error_bound);
				fails++;
			}
		}
		eng_sketch_free(sk);
		free(secs);
	}
	return fails;
}

/* One stream update's engine work, repeated: microseconds per update
 * (median over runs of UPDATES updates each), the three parts beside it.
 * The scores are the first 1,000 probabilities, as float32. */
static int bench_stream_update(const bench_opts *o, const dataset *d)
{
	enum { N = 1000, UPDATES = 2000 };
	float sc[N];
	for (int i = 0; i < N; i++)
		sc[i] = (float)d->p64[i];
	eng_tensor yt = vec(ENG_U8, d->y8, N), st = vec(ENG_F32, sc, N);
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	eng_stream *s = NULL;
	eng_error err;
	double *secs = calloc((size_t)o->runs, sizeof *secs), part[3] = {0, 0, 0};
	size_t bytes = 0;
	int fails = 0;

	if (!secs || eng_stream_new(&s, &cfg, &err))
		fails++;
	for (int r = -1; r < o->runs && !fails; r++) {
		double t[4], sum[3] = {0, 0, 0};
		for (int u = 0; u < UPDATES && !fails; u++) {
			eng_stream *delta = NULL;
			void *b = NULL;
			t[0] = bench_now();
			fails += eng_stream_batch(&delta, &cfg, &yt, &st, NULL, NULL, &err) != 0;
			t[1] = bench_now();
			fails += !fails && eng_stream_merge(s, delta, &err) != 0;
			t[2] = bench_now();
			fails += !fails && eng_stream_serialize(&b, &bytes, delta) != 0;
			t[3] = bench_now();
			for (int k = 0; k < 3; k++)
				sum[k] += t[k + 1] - t[k];
			free(b);
			eng_stream_free(delta);
		}
		if (r >= 0) {
			secs[r] = sum[0] + sum[1] + sum[2];
			for (int k = 0; k < 3; k++)
				part[k] += sum[k] / o->runs;
		}
	}
	if (fails) {
		fprintf(stderr, "bench_auc: stream update failed: %s\n", err.msg);
	} else {
		char extra[200];
		snprintf(extra, sizeof extra,
		         "\"batch_us\": %.3f, \"merge_us\": %.3f, \"serialize_us\": %.3f, "
		         "\"delta_bytes\": %zu, \"per_core\": true",
		         part[0] / UPDATES * 1e6, part[1] / UPDATES * 1e6, part[2] / UPDATES * 1e6,
		         bytes);
		bench_emit("engine/stream_update_1000", "lossd", "us",
		           bench_median(secs, o->runs) / UPDATES * 1e6, extra);
	}
	eng_stream_free(s);
	free(secs);
	return fails;
}

int main(int argc, char **argv)
{
	bench_opts o;
	int fails = 0;
	dataset d;
	static const struct {
		int64_t n;
		const char *name;
	} full[] = {{1000000, "1e6"}, {10000000, "1e7"}}, smoke[] = {{100000, "1e5"}};
	int nsizes;
	/* BENCH_ONLY: a substring of "<size>/<part>" to run, e.g. "1e7/exact" */
	const char *only = getenv("BENCH_ONLY");
	char key[64];

	bench_parse_args(&o, argc, argv, 9);
	nsizes = o.smoke ? 1 : 2;
	for (int i = 0; i < nsizes; i++) {
		int64_t n = o.smoke ? smoke[i].n : full[i].n;
		const char *name = o.smoke ? smoke[i].name : full[i].name;

#define WANT(part) (snprintf(key, sizeof key, "%s/%s", name, part), !only || strstr(key, only))
		if (!WANT("exact") && !WANT("binned") && !WANT("sketch") && !WANT("stream"))
			continue;
		fprintf(stderr, "bench_auc: n = %s\n", name);
		make_data(&d, n);
		if (WANT("exact")) {
			fails += bench_exact(&o, &d, name, 0);
			fails += bench_exact(&o, &d, name, 1);
		}
		if (i == nsizes - 1 && WANT("binned"))
			fails += bench_binned(&o, &d);
		if (i == nsizes - 1 && WANT("sketch"))
			fails += bench_sketch(&o, &d);
		if (i == nsizes - 1 && WANT("stream"))
			fails += bench_stream_update(&o, &d);
		free_data(&d);
	}
	return fails ? 1 : 0;
}
