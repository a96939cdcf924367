/*
 * bench_sketch.c - measures the AUC sketch on 10 million smooth scores:
 * time per insert, error_bound reached under the default 1 MiB cap, the
 * state's memory, and that the exact AUC (eng_auc_exact on the same data)
 * lies within auc +- error_bound. Also a two-way merge of halves.
 *
 * Then what a durable stream's update costs in the engine: training steps
 * of 1,000 fresh float32 scores (as bench/durable_client --fresh draws
 * them) merged into 32 default-cap streams in turn, the time per merge
 * over the first steps (the streams fill, then coarsen at almost every
 * other merge) and later ones (most scores fall in cells already there).
 * 32 streams' 32 MiB of buckets do not stay in cache between two
 * updates of one stream, as in the server.
 *
 * Built by bench/CMakeLists.txt (LOSSD_BUILD_BENCH); bench/run.sh keeps its
 * text beside the table.
 * Usage: bench_sketch [n] [steps] (defaults 10000000 and 2000)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lossd/auc.h"
#include "lossd/sketch.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_u64(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform(void)
{
	return ((double)(next_u64() >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
	return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int run(const char *name, int64_t n, int sigmoid, double shift)
{
	double *score = malloc((size_t)n * sizeof(double));
	uint8_t *label = malloc((size_t)n);
	if (!score || !label)
		return 1;
	for (int64_t i = 0; i < n; i++) {
		label[i] = (uint8_t)(next_u64() & 1);
		double x = normal() + (label[i] ? shift : 0.0);
		score[i] = sigmoid ? 1.0 / (1.0 + exp(-x)) : x;
	}
	eng_error err;
	eng_sketch *s = eng_sketch_new(0);
	double t0 = now();
	/* streamed in requests of 100k, as a stream would see them */
	for (int64_t from = 0; from < n; from += 100000) {
		int64_t cnt = n - from < 100000 ? n - from : 100000;
		if (eng_sketch_add_values(s, score + from, label + from, NULL, cnt, &err)) {
			fprintf(stderr, "add: %s\n", err.msg);
			return 1;
		}
	}
	double t1 = now();
	eng_auc_result sk, ex, pr;
	eng_sketch_auc(&sk, NULL, s, ENG_CURVE_ROC, 0);
	eng_sketch_auc(&pr, NULL, s, ENG_CURVE_PR, 0);

	/* merge of two halves */
	eng_sketch *a = eng_sketch_new(0), *b = eng_sketch_new(0);
	eng_sketch_add_values(a, score, label, NULL, n / 2, &err);
	eng_sketch_add_values(b, score + n / 2, label + n / 2, NULL, n - n / 2, &err);
	eng_sketch_merge(a, b);
	eng_auc_result mg;
	eng_sketch_auc(&mg, NULL, a, ENG_CURVE_ROC, 0);

	eng_tensor ts = {ENG_F64, 1, {n}, n, score};
	eng_tensor tl = {ENG_U8, 1, {n}, n, label};
	eng_auc_data d = {&ts, &tl, NULL, ENG_LABELS_BINARY};
	double t2 = now();
	eng_auc_exact(&ex, NULL, &d, 0, NULL, &err);
	double t3 = now();
	eng_auc_opts po = ENG_AUC_OPTS_INIT;
	po.curve = ENG_CURVE_PR;
	eng_auc_result exp_;
	eng_auc_exact(&exp_, NULL, &d, 0, &po, &err);

	printf("%s n=%lld: sketch %.3fs (%.1f ns/item), exact %.3fs\n", name, (long long)n, t1 - t0,
	       1e9 * (t1 - t0) / (double)n, t3 - t2);
	printf("  ROC  sketch %.9f  bound %.3g  exact %.9f  |diff| %.3g  sound %s\n", sk.auc,
	       sk.error_bound, ex.auc, fabs(sk.auc - ex.auc),
	       fabs(sk.auc - ex.auc) <= sk.error_bound ? "yes" : "NO");
	printf("  PR   sketch %.9f  bound %.3g  exact %.9f  |diff| %.3g  sound %s\n", pr.auc,
	       pr.error_bound, exp_.auc, fabs(pr.auc - exp_.auc),
	       fabs(pr.auc - exp_.auc) <= pr.error_bound ? "yes" : "NO");
	printf("  merge of halves: auc %.9f bound %.3g sound %s\n", mg.auc, mg.error_bound,
	       fabs(mg.auc - ex.auc) <= mg.error_bound ? "yes" : "NO");
	printf("  memory %zu bytes (cap %zu), buckets %lld / %lld\n", eng_sketch_memory(s),
	       eng_sketch_cap(s), (long long)eng_sketch_buckets(s),
	       (long long)eng_sketch_capacity(s));
	eng_sketch_free(s);
	eng_sketch_free(a);
	eng_sketch_free(b);
	free(score);
	free(label);
	return 0;
}

/* STREAMS streams, `steps` training steps of STEP fresh scores into each
 * (one step into every stream, then the next): mean us per merge over
 * the step ranges of `edges`. */
#define STREAMS 32
#define STEP    1000
static int fresh_steps(int steps)
{
	static const int edges[] = {50, 200, 400, 1000, 2000, 5000, 1 << 30};
	enum { NE = sizeof edges / sizeof *edges };
	double spent[NE] = {0};
	double score[STEP];
	uint8_t label[STEP];
	eng_sketch *s[STREAMS];
	for (int k = 0; k < STREAMS; k++)
		if (!(s[k] = eng_sketch_new(0)))
			return 1;
	for (int t = 0; t < steps; t++) {
		int e = 0;
		while (t >= edges[e])
			e++;
		for (int k = 0; k < STREAMS; k++) {
			for (int i = 0; i < STEP; i++) {
				label[i] = (uint8_t)(next_u64() >> 63);
				double x = 0.35 + 0.3 * label[i] + 0.2 * normal();
				score[i] = (float)(x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x);
			}
			eng_sketch *d = eng_sketch_new(0);
			eng_error err;
			if (!d || eng_sketch_add_values(d, score, label, NULL, STEP, &err))
				return 1;
			double t0 = now();
			int rc = eng_sketch_merge(s[k], d);
			spent[e] += now() - t0;
			eng_sketch_free(d);
			if (rc)
				return 1;
		}
	}
	printf("fresh steps of %d float32 scores merged into %d streams in turn:\n", STEP, STREAMS);
	double total = 0.0;
	for (int e = 0, lo = 0; e < NE && lo < steps; lo = edges[e++]) {
		int hi = edges[e] < steps ? edges[e] : steps;
		printf("  steps %4d-%4d: %6.1f us a merge\n", lo, hi,
		       spent[e] / ((double)(hi - lo) * STREAMS) * 1e6);
		total += spent[e];
	}
	printf("  all %d steps: %.1f us a merge; buckets %lld / %lld\n", steps,
	       total / ((double)steps * STREAMS) * 1e6, (long long)eng_sketch_buckets(s[0]),
	       (long long)eng_sketch_capacity(s[0]));
	for (int k = 0; k < STREAMS; k++)
		eng_sketch_free(s[k]);
	return 0;
}

int main(int argc, char **argv)
{
	int64_t n = argc > 1 ? atoll(argv[1]) : 10000000;
	int steps = argc > 2 ? atoi(argv[2]) : 2000;
	if (run("normal shift 1", n, 0, 1.0))
		return 1;
	if (run("sigmoid shift 1", n, 1, 1.0))
		return 1;
	if (run("normal shift 0.1", n, 0, 0.1))
		return 1;
	return steps > 0 ? fresh_steps(steps) : 0;
}
