/*
 * bench_loss.c - lossd's loss kernels on the shapes of the "Performance"
 * issue, next to a float64 reference computed here.
 *
 * Cases (float32 inputs, as a PyTorch user's logits):
 *   ce/32768x1000      sparse CE from logits, (N, V)
 *   ce/8192x32000      sparse CE, an LLM-sized vocabulary (1 GiB of logits)
 *   ce/32x512x1000     sparse CE on (B, T, V), class axis last
 *   ce/32x1000x512_axis1  the same numbers laid out (B, V, T), axis = 1
 *   ce/262144x10       a small vocabulary: per-row overhead dominates
 *   bce/1000000x8      binary CE from logits with a pos_weight per column
 * each on 1 and 2 threads (an eng_parallel over the bench pool), median of
 * --runs runs after a warm-up. The figure is GB/s of the inputs read (logits
 * for CE; logits + targets for BCE), so it compares directly with
 * bench_bandwidth and with bench/peers/torch_ce.py, which measures the same
 * cases the same way. Labels are int32 (what a client sends in base64).
 *
 * Two variants are timed: "lossd" asks for the scalar only (per_class off,
 * as F.cross_entropy computes), "lossd_default" with docs/API.md's default
 * per_class on (argmax and per-class sums too). On the contiguous CE cases
 * a plain C loop ("plainc", below) is timed too, as a yardstick.
 *
 * Checks, failing the program (exit 1), which is what --smoke asserts:
 * the mean loss is within 1e-6 relative of the float64 reference, and the
 * 1- and 2-thread results are bit-identical (eng.h's promise).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "lossd/loss.h"

#define REL_TOL 1e-6

typedef struct ce_case {
	const char *id;
	int ndim;
	int64_t shape[3];
	int axis; /* class axis */
	int binary;
} ce_case;

/* Roughly normal logits, scale 3, cheaply: Irwin-Hall of four 16-bit uniforms. */
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

/* Float64 mean sparse CE with the class axis at `axis` of (d0, d1, d2): the
 * row of position (i, k) runs over class c at x[i*C*K + c*K + k]. */
static double ref_sparse_ce(const float *x, const int32_t *y, int64_t outer, int64_t C,
                            int64_t inner)
{
	double total = 0.0, comp = 0.0;

	for (int64_t i = 0; i < outer; i++)
		for (int64_t k = 0; k < inner; k++) {
			const float *row = x + i * C * inner + k;
			double m = -INFINITY, s = 0.0, l, t;

			for (int64_t c = 0; c < C; c++)
				m = fmax(m, (double)row[c * inner]);
			for (int64_t c = 0; c < C; c++)
				s += exp((double)row[c * inner] - m);
			l = m + log(s) - (double)row[(int64_t)y[i * inner + k] * inner];
			/* Kahan: the reference must be better than what it checks */
			t = total + (l - comp);
			comp = (t - total) - (l - comp);
			total = t;
		}
	return total / (double)(outer * inner);
}

static double softplus(double v)
{
	return fmax(v, 0.0) + log1p(exp(-fabs(v)));
}

/* Float64 mean binary CE from logits with pos_weight per column. */
static double ref_bce(const float *x, const float *y, const float *pw, int64_t n, int64_t k)
{
	double total = 0.0, comp = 0.0;

	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < k; j++) {
			double v = x[i * k + j], t = y[i * k + j];
			double l = (double)pw[j] * t * softplus(-v) + (1.0 - t) * softplus(v);
			double s = total + (l - comp);

			comp = (s - total) - (l - comp);
			total = s;
		}
	return total / (double)(n * k);
}

/* BENCH_IMPL: run only this impl ("lossd", "lossd_default", "plainc",
 * "plainc_avx512"), so
 * a profile shows one kernel. */
static int want_impl(const char *impl)
{
	const char *only = getenv("BENCH_IMPL");

	return !only || strcmp(only, impl) == 0;
}

/* ---- a plain C baseline --------------------------------------------------------- */
/*
 * What a straightforward C loop gets on the contiguous sparse CE cases
 * (impl "plainc"): two passes per row, max then sum of exp(x - max) with a
 * polynomial exp, on GCC vector extensions 16 floats wide (GCC does not
 * vectorize a float max or sum reduction without -ffast-math), per-row
 * sums in double. No validation,
 * no per-class figures, no ignore_class: a yardstick for the engine's fast
 * path (the "plain C with a vectorized exp"), not a loss
 * implementation. target_clones picks AVX-512, AVX2 or SSE2 at load time.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define BASELINE_CLONES                                                                            \
	__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"),               \
	               optimize("fp-contract=fast")))
#else
#define BASELINE_CLONES
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* The 64-byte vectors only pass between static inline functions here. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

static inline v16f v16_splat(float f)
{
	return (v16f){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f};
}

/* e^t for t in [-87, 0], 16 lanes: n = round(t / ln 2), r = t - n ln 2
 * (two-part ln 2), e^r by its Taylor polynomial to degree 7 (|r| <= 0.347:
 * relative error < 1e-8), times 2^n built in the exponent bits. */
static inline v16f exp_le0(v16f t)
{
	v16i lo = t < v16_splat(-87.0f);
	v16f n, r, p;
	v16i bits;

	t = (v16f)((lo & (v16i)v16_splat(-87.0f)) | (~lo & (v16i)t));
	n = (t * 1.44269504f + 12582912.0f) - 12582912.0f;
	r = (t - n * 0.693145752f) - n * 1.42860677e-6f;
	p = v16_splat(1.0f / 5040.0f);
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	bits = (__builtin_convertvector(n, v16i) + 127) << 23;
	return p * (v16f)bits;
}

static inline float exp_le0_1(float t)
{
	v16f v = v16_splat(t);

	return exp_le0(v)[0];
}

/* log-sum-exp of one contiguous row, with the sum of exp in float lanes. */
BASELINE_CLONES
static double baseline_lse(const float *x, int64_t C)
{
	v16f mx = v16_splat(-INFINITY), acc = v16_splat(0.0f), v;
	float m = -INFINITY;
	double s = 0.0;
	int64_t c = 0;

	for (; c + 16 <= C; c += 16) {
		v16i gt;

		memcpy(&v, x + c, sizeof v);
		gt = v > mx;
		mx = (v16f)((gt & (v16i)v) | (~gt & (v16i)mx));
	}
	for (int k = 0; k < 16; k++)
		m = mx[k] > m ? mx[k] : m;
	for (; c < C; c++)
		m = x[c] > m ? x[c] : m;
	for (c = 0; c + 16 <= C; c += 16) {
		memcpy(&v, x + c, sizeof v);
		acc += exp_le0(v - m);
	}
	for (int k = 0; k < 16; k++)
		s += (double)acc[k];
	for (; c < C; c++)
		s += (double)exp_le0_1(x[c] - m);
	return (double)m + log(s);
}

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX512_BASELINE 1
/*
 * The same log-sum-exp with AVX-512 intrinsics, chosen at run time: the
 * exp uses vrndscaleps for round(t / ln 2) and vscalefps for p * 2^n (one
 * instruction each, where the portable form needs four), a degree-6 Taylor
 * polynomial in FMAs (|r| <= ln2/2: relative error < 2e-7), and two
 * accumulators. 13 vector instructions per 16 elements.
 */
__attribute__((target("avx512f,fma"))) static double lse_avx512(const float *x, int64_t C)
{
	__m512 mx = _mm512_set1_ps(-INFINITY), acc0 = _mm512_setzero_ps(), acc1 = acc0;
	const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2hi = _mm512_set1_ps(-0.693145752f),
	             ln2lo = _mm512_set1_ps(-1.42860677e-6f);
	const __m512 c6 = _mm512_set1_ps(1.0f / 720.0f), c5 = _mm512_set1_ps(1.0f / 120.0f),
	             c4 = _mm512_set1_ps(1.0f / 24.0f), c3 = _mm512_set1_ps(1.0f / 6.0f),
	             c2 = _mm512_set1_ps(0.5f), c1 = _mm512_set1_ps(1.0f);
#define EXP16(t, out)                                                                              \
	do {                                                                                       \
		__m512 n_ = _mm512_roundscale_ps(_mm512_mul_ps(t, log2e),                          \
		                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);   \
		__m512 r_ = _mm512_fmadd_ps(n_, ln2hi, t);                                         \
		r_ = _mm512_fmadd_ps(n_, ln2lo, r_);                                               \
		__m512 p_ = _mm512_fmadd_ps(c6, r_, c5);                                           \
		p_ = _mm512_fmadd_ps(p_, r_, c4);                                                  \
		p_ = _mm512_fmadd_ps(p_, r_, c3);                                                  \
		p_ = _mm512_fmadd_ps(p_, r_, c2);                                                  \
		p_ = _mm512_fmadd_ps(p_, r_, c1);                                                  \
		p_ = _mm512_fmadd_ps(p_, r_, c1);                                                  \
		out = _mm512_scalef_ps(p_, n_);                                                    \
	} while (0)
	int64_t c = 0;
	float m;
	double s;

	if (C <= 16) { /* one masked register holds the row: one pass */
		__mmask16 k = (__mmask16)((1u << C) - 1);
		__m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x), t0, e0;

		m = _mm512_reduce_max_ps(v);
		t0 = _mm512_max_ps(_mm512_sub_ps(v, _mm512_set1_ps(m)), _mm512_set1_ps(-104.0f));
		EXP16(t0, e0);
		return (double)m + log((double)_mm512_mask_reduce_add_ps(k, e0));
	}
	for (; c + 16 <= C; c += 16)
		mx = _mm512_max_ps(_mm512_loadu_ps(x + c), mx);
	m = _mm512_reduce_max_ps(mx);
	for (; c < C; c++)
		m = x[c] > m ? x[c] : m;
	const __m512 vm = _mm512_set1_ps(m);

	for (c = 0; c + 32 <= C; c += 32) {
		__m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(x + c), vm), e0;
		__m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(x + c + 16), vm), e1;

		EXP16(t0, e0);
		EXP16(t1, e1);
		acc0 = _mm512_add_ps(acc0, e0);
		acc1 = _mm512_add_ps(acc1, e1);
	}
	for (; c + 16 <= C; c += 16) {
		__m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(x + c), vm), e0;

		EXP16(t0, e0);
		acc0 = _mm512_add_ps(acc0, e0);
	}
	if (c < C) { /* the tail, masked: lanes past C add exp(-inf) = 0 */
		__mmask16 k = (__mmask16)((1u << (C - c)) - 1);
		__m512 t0 = _mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + c),
		                          vm),
		       e0;

		t0 = _mm512_max_ps(t0, _mm512_set1_ps(-104.0f));
		EXP16(t0, e0);
		acc1 = _mm512_add_ps(acc1, _mm512_maskz_mov_ps(k, e0));
	}
#undef EXP16
	s = (double)_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
	return (double)m + log(s);
}
#endif

typedef struct baseline_job {
	const float *x;
	const int32_t *y;
	int64_t rows, C, ntasks;
	int avx512;
	double part[64];
} baseline_job;

static void baseline_task(void *arg, int64_t t)
{
	baseline_job *j = arg;
	int64_t lo = j->rows * t / j->ntasks, hi = j->rows * (t + 1) / j->ntasks;
	double s = 0.0;

#ifdef HAVE_AVX512_BASELINE
	if (j->avx512) {
		for (int64_t i = lo; i < hi; i++)
			s += lse_avx512(j->x + i * j->C, j->C) - (double)j->x[i * j->C + j->y[i]];
		j->part[t] = s;
		return;
	}
#endif
	for (int64_t i = lo; i < hi; i++)
		s += baseline_lse(j->x + i * j->C, j->C) - (double)j->x[i * j->C + j->y[i]];
	j->part[t] = s;
}

static double baseline_mean_ce(baseline_job *j, const eng_parallel *par)
{
	double s = 0.0;

	j->ntasks = j->rows < 64 ? j->rows : 64;
	eng_parallel_for(par, j->ntasks, baseline_task, j);
	for (int64_t t = 0; t < j->ntasks; t++)
		s += j->part[t];
	return s / (double)j->rows;
}

static int run_baseline(const bench_opts *o, const ce_case *cs, const float *x, const int32_t *y,
                        int64_t rows, int64_t C, double ref)
{
	baseline_job j = {x, y, rows, C, 0, 0, {0}};
	double bytes = (double)rows * (double)C * sizeof(float);
	int fails = 0;

	for (int ti = 0; ti < 2 * o->nthreads_list; ti++) {
		const char *impl = ti % 2 ? "plainc_avx512" : "plainc";

		j.avx512 = ti % 2;
#ifdef HAVE_AVX512_BASELINE
		if (j.avx512 && !__builtin_cpu_supports("avx512f"))
			continue;
#else
		if (j.avx512)
			continue;
#endif
		if (!want_impl(impl))
			continue;
		int nt = o->threads[ti / 2];
		eng_parallel *par = bench_pool_new(nt);
		double *secs = calloc((size_t)o->runs, sizeof *secs), value = NAN, rel;
		char id[96], extra[160];

		for (int r = -1; r < o->runs; r++) {
			double t0 = bench_now();

			value = baseline_mean_ce(&j, par);
			if (r >= 0)
				secs[r] = bench_now() - t0;
		}
		rel = fabs(value - ref) / fabs(ref);
		if (!(rel <= REL_TOL)) {
			fprintf(stderr, "bench_loss: %s %s: rel err %.3g\n", impl, cs->id, rel);
			fails++;
		}
		snprintf(id, sizeof id, "%s/t%d", cs->id, nt);
		snprintf(extra, sizeof extra, "\"rel_err\": %.3g, \"ms\": %.4g", rel,
		         bench_median(secs, o->runs) * 1e3);
		bench_emit(id, impl, "GB/s", bytes / bench_median(secs, o->runs) / 1e9, extra);
		free(secs);
		bench_pool_free(par);
	}
	return fails;
}

static int run_case(const bench_opts *o, const ce_case *cs)
{
	int64_t n = 1, outer = 1, inner = 1, C, npos;
	eng_tensor yt = {0}, yp = {0}, pwt = {0};
	eng_loss_opts lo = ENG_LOSS_OPTS_INIT;
	float *x, *yf = NULL, *pw = NULL;
	int32_t *yi = NULL;
	double ref, bytes, first_value = NAN;
	int fails = 0;
	bench_rng rng = {99};

	for (int d = 0; d < cs->ndim; d++)
		n *= cs->shape[d];
	C = cs->shape[cs->axis];
	for (int d = 0; d < cs->axis; d++)
		outer *= cs->shape[d];
	for (int d = cs->axis + 1; d < cs->ndim; d++)
		inner *= cs->shape[d];
	npos = outer * inner;

	x = bench_alloc((size_t)n * sizeof *x);
	fill_logits(x, n, 1234);
	yp.dtype = ENG_F32;
	yp.ndim = cs->ndim;
	memcpy(yp.shape, cs->shape, sizeof cs->shape);
	yp.size = n;
	yp.data = x;

	if (cs->binary) {
		yf = bench_alloc((size_t)n * sizeof *yf);
		pw = bench_alloc((size_t)C * sizeof *pw);
		for (int64_t i = 0; i < n; i++)
			yf[i] = bench_rng_unif(&rng) < 0.3 ? 1.0f : 0.0f;
		for (int64_t j = 0; j < C; j++)
			pw[j] = 0.5f + (float)j * 0.5f;
		yt = yp;
		yt.data = yf;
		pwt.dtype = ENG_F32;
		pwt.ndim = 1;
		pwt.shape[0] = C;
		pwt.size = C;
		pwt.data = pw;
		lo.kind = ENG_LOSS_BINARY_CE;
		lo.pos_weight = &pwt;
		ref = ref_bce(x, yf, pw, cs->shape[0], C);
		bytes = 2.0 * (double)n * sizeof(float);
	} else {
		yi = bench_alloc((size_t)npos * sizeof *yi);
		for (int64_t i = 0; i < npos; i++)
			yi[i] = (int32_t)(bench_rng_u64(&rng) % (uint64_t)C);
		yt.dtype = ENG_I32;
		yt.ndim = 0;
		for (int d = 0; d < cs->ndim; d++)
			if (d != cs->axis)
				yt.shape[yt.ndim++] = cs->shape[d];
		yt.size = npos;
		yt.data = yi;
		lo.kind = ENG_LOSS_SPARSE_CE;
		lo.axis = cs->axis;
		ref = ref_sparse_ce(x, yi, outer, C, inner);
		bytes = (double)n * sizeof(float);
	}
	lo.from_logits = true;

	if (!cs->binary && inner == 1)
		fails += run_baseline(o, cs, x, yi, npos, C, ref);

	for (int variant = 0; variant < 2; variant++) {
		const char *impl = variant ? "lossd_default" : "lossd";

		if (!want_impl(impl))
			continue;
		lo.per_class = variant == 1;
		for (int ti = 0; ti < o->nthreads_list; ti++) {
			int nt = o->threads[ti];
			eng_parallel *par = bench_pool_new(nt);
			double *secs = calloc((size_t)o->runs, sizeof *secs), value = NAN, rel;
			char id[96], extra[256];
			eng_error err;

			for (int r = -1; r < o->runs; r++) {
				eng_loss_result *res = NULL;
				double t0 = bench_now();
				int rc = eng_loss_compute(&res, &yt, &yp, &lo, par, &err);

				if (r >= 0)
					secs[r] = bench_now() - t0;
				if (rc != 0) {
					fprintf(stderr, "bench_loss: %s: eng_loss_compute: %d %s\n",
					        cs->id, rc, err.msg);
					eng_loss_result_free(res);
					free(secs);
					bench_pool_free(par);
					fails++;
					goto out;
				}
				eng_loss_result_value(res, ENG_RED_MEAN, &value);
				eng_loss_result_free(res);
			}
			rel = fabs(value - ref) / fabs(ref);
			if (!(rel <= REL_TOL)) {
				fprintf(stderr,
				        "bench_loss: %s t%d: loss %.17g vs float64 %.17g, rel %.3g "
				        "> %g\n",
				        cs->id, nt, value, ref, rel, REL_TOL);
				fails++;
			}
			if (variant == 0 && ti == 0) {
				first_value = value;
			} else if (variant == 0 && value != first_value) {
				fprintf(stderr,
				        "bench_loss: %s: %d threads gave %.17g, 1 gave %.17g\n",
				        cs->id, nt, value, first_value);
				fails++;
			}
			snprintf(id, sizeof id, "%s/t%d", cs->id, nt);
			snprintf(
			        extra, sizeof extra,
			        "\"rel_err\": %.3g, \"loss\": %.10g, \"ms\": %.4g, \"best\": %.4g, "
			        "\"Mrows_per_s\": %.4g",
			        rel, value, bench_median(secs, o->runs) * 1e3,
			        bytes / bench_min(secs, o->runs) / 1e9,
			        (double)npos / bench_median(secs, o->runs) / 1e6);
			bench_emit(id, impl, "GB/s", bytes / bench_median(secs, o->runs) / 1e9,
			           extra);
			free(secs);
			bench_pool_free(par);
		}
	}
out:
	free(x);
	free(yf);
	free(pw);
	free(yi);
	return fails;
}

int main(int argc, char **argv)
{
	bench_opts o;
	int fails = 0;
	static const ce_case full[] = {
	        {"ce/32768x1000", 2, {32768, 1000}, 1, 0},
	        {"ce/8192x32000", 2, {8192, 32000}, 1, 0},
	        {"ce/32x512x1000", 3, {32, 512, 1000}, 2, 0},
	        {"ce/32x1000x512_axis1", 3, {32, 1000, 512}, 1, 0},
	        {"ce/262144x10", 2, {262144, 10}, 1, 0},
	        {"bce/1000000x8", 2, {1000000, 8}, 1, 1},
	};
	static const ce_case smoke[] = {
	        {"ce/512x1000", 2, {512, 1000}, 1, 0},
	        {"ce/16x32000", 2, {16, 32000}, 1, 0},
	        {"ce/4x64x100", 3, {4, 64, 100}, 2, 0},
	        {"ce/4x100x64_axis1", 3, {4, 100, 64}, 1, 0},
	        {"ce/4096x10", 2, {4096, 10}, 1, 0},
	        {"bce/10000x8", 2, {10000, 8}, 1, 1},
	};
	const ce_case *cases;
	size_t ncases;
	const char *only = getenv("BENCH_ONLY"); /* substring filter on the case id */

	bench_parse_args(&o, argc, argv, 11);
	cases = o.smoke ? smoke : full;
	ncases = o.smoke ? sizeof smoke / sizeof *smoke : sizeof full / sizeof *full;
	for (size_t i = 0; i < ncases; i++) {
		if (only && !strstr(cases[i].id, only))
			continue;
		fprintf(stderr, "bench_loss: %s\n", cases[i].id);
		fails += run_case(&o, &cases[i]);
	}
	return fails ? 1 : 0;
}
