/*
 * bench_metrics.c - what the metrics of docs/API.md section 9 add to the call
 * they ride on: perplexity, top-k accuracy and calibration on top of sparse
 * cross-entropy from float32 logits, and DeLong's interval next to the
 * exact AUC it belongs to.
 *
 * Cases (full / --smoke):
 *   xent/32768x1000 (512x1000)   eng_loss_compute with o.extra = none,
 *                                perplexity (what every CE reply asks for),
 *                                top_k [1, 5], calibration 15 bins, and all
 *                                three; per_class off and on (the API
 *                                default). Figure: GB/s of logits read,
 *                                best of --runs (the variants interleaved in
 *                                each run, so a passing load on a shared
 *                                machine hits them alike); "overhead_pct" is
 *                                the CPU time (process, all threads; best of
 *                                the runs) added over the loss alone.
 *   delong/1000000 (20000)       eng_auc_exact vs eng_auc_delong on float32
 *                                and float64 scores. Figure: M scores/s;
 *                                "ratio" = DeLong time / exact AUC time.
 * Checks that fail the program (what --smoke asserts): top-k counts equal a
 * plain count computed here, perplexity equals exp(mean loss) to 1e-12,
 * the calibration bins hold every position, and DeLong's AUC equals the
 * exact AUC to 1e-12 with a standard error in (0, 0.5).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "lossd/aucci.h"
#include "lossd/loss.h"

/* CPU seconds of the whole process: on a shared, loaded machine the time
 * slices others take do not count, so the cost of a variant stays visible. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Roughly normal logits, scale 3 (bench_loss' recipe). */
static void fill_logits(float *x, int64_t n, uint64_t seed)
{
	bench_rng rng = {seed};
	for (int64_t i = 0; i < n; i++) {
		uint64_t u = bench_rng_u64(&rng);
		double s = (double)(u & 0xffff) + (double)((u >> 16) & 0xffff) +
		           (double)((u >> 32) & 0xffff) + (double)(u >> 48);
		x[i] = (float)((s / 65536.0 - 2.0) * 3.0 * 1.7320508);
	}
}

enum { V_NONE, V_PPL, V_TOPK, V_CALIB, V_ALL, V_COUNT };
static const char *const variant_names[V_COUNT] = {"loss", "+perplexity", "+top_k[1,5]",
                                                   "+calibration15", "+all"};

/* The extra figures of res against the plain counts; failures counted. */
static int check(const eng_loss_result *res, const eng_extra_opts *xo, int64_t ref1, int64_t ref5,
                 int64_t N)
{
	const eng_extra_result *e = res->extra;
	double loss, ppl;
	int fails = 0;
	if (!e)
		return 0;
	eng_loss_result_value(res, ENG_RED_MEAN, &loss);
	if (xo->ntop && (e->top_correct[0] != ref1 || e->top_correct[1] != ref5)) {
		fprintf(stderr, "bench_metrics: top-k %lld %lld vs %lld %lld\n",
		        (long long)e->top_correct[0], (long long)e->top_correct[1], (long long)ref1,
		        (long long)ref5);
		fails++;
	}
	if (xo->perplexity &&
	    !(eng_extra_perplexity(e, &ppl) && fabs(ppl - exp(loss)) <= 1e-12 * ppl)) {
		fprintf(stderr, "bench_metrics: perplexity %.17g vs %.17g\n", ppl, exp(loss));
		fails++;
	}
	if (xo->bins) {
		int64_t k = 0;
		for (int b = 0; b < e->bins; b++)
			k += e->bin[b].count;
		if (k != N) {
			fprintf(stderr, "bench_metrics: bins hold %lld\n", (long long)k);
			fails++;
		}
	}
	return fails;
}

static int run_xent(const bench_opts *o, int64_t N, int64_t C)
{
	float *x = bench_alloc((size_t)(N * C) * sizeof *x);
	int32_t *y = bench_alloc((size_t)N * sizeof *y);
	bench_rng rng = {7};
	int64_t ref1 = 0, ref5 = 0;
	double bytes = (double)N * (double)C * sizeof(float);
	char id[96], extra[256];
	int fails = 0;

	fill_logits(x, N * C, 4321);
	for (int64_t i = 0; i < N; i++) {
		y[i] = (int32_t)(bench_rng_u64(&rng) % (uint64_t)C);
		int64_t above = 0;
		for (int64_t c = 0; c < C; c++)
			above += x[i * C + c] > x[i * C + y[i]];
		ref1 += above < 1;
		ref5 += above < 5;
	}
	eng_tensor yp = {ENG_F32, 2, {N, C}, N * C, x};
	eng_tensor yt = {ENG_I32, 1, {N}, N, y};

	for (int pc = 0; pc < 2; pc++) {
		for (int ti = 0; ti < o->nthreads_list; ti++) {
			int nt = o->threads[ti];
			eng_parallel *par = bench_pool_new(nt);
			eng_extra_opts xo[V_COUNT];
			eng_loss_opts lo[V_COUNT];
			double *secs[V_COUNT], *cpu[V_COUNT];
			for (int v = 0; v < V_COUNT; v++) {
				eng_extra_opts x0 = ENG_EXTRA_OPTS_INIT;
				eng_loss_opts l0 = ENG_LOSS_OPTS_INIT;
				xo[v] = x0;
				lo[v] = l0;
				lo[v].from_logits = true;
				lo[v].per_class = pc == 1;
				xo[v].perplexity = v == V_PPL || v == V_ALL;
				if (v == V_TOPK || v == V_ALL) {
					xo[v].ntop = 2;
					xo[v].top_k[0] = 1;
					xo[v].top_k[1] = 5;
				}
				if (v == V_CALIB || v == V_ALL)
					xo[v].bins = 15;
				lo[v].extra = v == V_NONE ? NULL : &xo[v];
				secs[v] = calloc((size_t)o->runs, sizeof(double));
				cpu[v] = calloc((size_t)o->runs, sizeof(double));
			}
			/* variants interleaved within each run, so a load that comes
			 * and goes hits them alike */
			for (int r = -1; r < o->runs; r++) {
				for (int v = 0; v < V_COUNT; v++) {
					eng_loss_result *res = NULL;
					eng_error err;
					double t0 = bench_now(), c0 = cpu_now();
					int rc =
					        eng_loss_compute(&res, &yt, &yp, &lo[v], par, &err);
					if (r >= 0) {
						secs[v][r] = bench_now() - t0;
						cpu[v][r] = cpu_now() - c0;
					}
					if (rc) {
						fprintf(stderr, "bench_metrics: %s\n", err.msg);
						fails++;
						continue;
					}
					fails += check(res, &xo[v], ref1, ref5, N);
					eng_loss_result_free(res);
				}
			}
			double base = bench_min(cpu[V_NONE], o->runs);
			for (int v = 0; v < V_COUNT; v++) {
				double best = bench_min(secs[v], o->runs);
				double med = bench_median(secs[v], o->runs);
				double cbest = bench_min(cpu[v], o->runs);
				snprintf(id, sizeof id, "xent/%lldx%lld%s/t%d %s", (long long)N,
				         (long long)C, pc ? ",per_class" : "", nt,
				         variant_names[v]);
				snprintf(extra, sizeof extra,
				         "\"ms_best\": %.4g, \"ms_median\": %.4g, \"cpu_ms_best\": "
				         "%.4g, "
				         "\"overhead_pct\": %.3g",
				         best * 1e3, med * 1e3, cbest * 1e3,
				         (cbest / base - 1) * 100);
				bench_emit(id, "lossd", "GB/s", bytes / best / 1e9, extra);
				free(secs[v]);
				free(cpu[v]);
			}
			bench_pool_free(par);
		}
	}
	free(x);
	free(y);
	return fails;
}

static int run_delong(const bench_opts *o, int64_t n)
{
	float *s32 = bench_alloc((size_t)n * sizeof *s32);
	double *s64 = bench_alloc((size_t)n * sizeof *s64);
	uint8_t *y = bench_alloc((size_t)n);
	bench_rng rng = {11};
	int fails = 0;

	for (int64_t i = 0; i < n; i++) {
		y[i] = bench_rng_unif(&rng) < 0.3;
		s64[i] = bench_rng_normal(&rng) + (y[i] ? 1.0 : 0.0);
		s32[i] = (float)s64[i];
	}
	for (int dt = 0; dt < 2; dt++) {
		eng_tensor ts = {dt ? ENG_F64 : ENG_F32, 1, {n}, n, dt ? (void *)s64 : (void *)s32};
		eng_tensor ty = {ENG_U8, 1, {n}, n, y};
		eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
		double *te = calloc((size_t)o->runs, sizeof *te);
		double *td = calloc((size_t)o->runs, sizeof *td);
		double a_exact = NAN, a_delong = NAN, se = NAN;
		char id[64], extra[200];
		eng_error err;
		for (int r = -1; r < o->runs; r++) {
			eng_auc_result res;
			double t0 = bench_now();
			if (eng_auc_exact(&res, NULL, &d, 0, NULL, &err))
				fails++;
			double t1 = bench_now();
			if (eng_auc_delong(&a_delong, &se, &d, 0, &err))
				fails++;
			double t2 = bench_now();
			a_exact = res.auc;
			if (r >= 0) {
				te[r] = t1 - t0;
				td[r] = t2 - t1;
			}
		}
		if (!(fabs(a_exact - a_delong) <= 1e-12 && se > 0 && se < 0.5)) {
			fprintf(stderr, "bench_metrics: delong auc %.17g se %g vs exact %.17g\n",
			        a_delong, se, a_exact);
			fails++;
		}
		double me = bench_median(te, o->runs), md = bench_median(td, o->runs);
		snprintf(id, sizeof id, "delong/%lld/%s", (long long)n, dt ? "float64" : "float32");
		snprintf(extra, sizeof extra, "\"ms\": %.4g, \"auc\": %.6f, \"se\": %.3g", me * 1e3,
		         a_exact, se);
		bench_emit(id, "exact_auc", "M/s", (double)n / me / 1e6, extra);
		snprintf(extra, sizeof extra, "\"ms\": %.4g, \"ratio\": %.3g", md * 1e3, md / me);
		bench_emit(id, "delong", "M/s", (double)n / md / 1e6, extra);
		free(te);
		free(td);
	}
	free(s32);
	free(s64);
	free(y);
	return fails;
}

int main(int argc, char **argv)
{
	bench_opts o;
	int fails = 0;
	bench_parse_args(&o, argc, argv, 11);
	fails += run_xent(&o, o.smoke ? 512 : 32768, 1000);
	fails += run_delong(&o, o.smoke ? 20000 : 1000000);
	return fails ? 1 : 0;
}
