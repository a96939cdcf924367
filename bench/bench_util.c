/*
 * bench_util.c - the shared helpers of bench_util.h.
 *
 * The pool: nthreads - 1 workers sleep on a condition variable; for_each
 * publishes a job under the lock, bumps a generation counter and wakes them,
 * then the caller takes tasks too. Tasks are claimed with an atomic counter,
 * so a slow thread never holds the others up. Workers spin briefly before
 * sleeping, since benchmark calls come back to back and a futex wake-up costs
 * tens of microseconds, which would show on the sub-millisecond cases.
 * Invariant: at most one job is in flight (for_each is not reentrant, which
 * eng.h forbids anyway).
 */
#include "bench_util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_min(const double *v, int n)
{
	double m = v[0];

	for (int i = 1; i < n; i++)
		if (v[i] < m)
			m = v[i];
	return m;
}

uint64_t bench_rng_u64(bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double bench_rng_unif(bench_rng *r)
{
	return (double)(bench_rng_u64(r) >> 11) * 0x1.0p-53;
}

double bench_rng_normal(bench_rng *r)
{
	double u = bench_rng_unif(r), v = bench_rng_unif(r);

	return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

void bench_rng_near_normals(bench_rng *r, double *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t a = bench_rng_u64(r), b = bench_rng_u64(r);
		double sum = (double)(a >> 32) + (double)(a & 0xffffffffu) + (double)(b >> 32) +
		             (double)(b & 0xffffffffu);

		/* four uniforms in [0, 2^32): mean 2^33, standard deviation 2^32 / sqrt(3) */
		out[i] = (sum - 0x1.0p33) * (1.7320508075688772 * 0x1.0p-32);
	}
}

const char bench_b64_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bench_b64_encode(char *out, const unsigned char *in, size_t n)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = bench_b64_alphabet[w >> 18];
		out[o++] = bench_b64_alphabet[(w >> 12) & 63];
		out[o++] = bench_b64_alphabet[(w >> 6) & 63];
		out[o++] = bench_b64_alphabet[w & 63];
	}
	if (i < n) {
		uint32_t w = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);

		out[o++] = bench_b64_alphabet[w >> 18];
		out[o++] = bench_b64_alphabet[(w >> 12) & 63];
		out[o++] = i + 1 < n ? bench_b64_alphabet[(w >> 6) & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

void *bench_alloc(size_t bytes)
{
	void *p = NULL;

	if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
		fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
		exit(2);
	}
	memset(p, 0, bytes);
	return p;
}

/* ---- the pool ------------------------------------------------------------- */
typedef struct pool {
	eng_parallel par;
	pthread_t *threads;
	int nworkers;
	pthread_mutex_t mu;
	pthread_cond_t wake, done_cv;
	atomic_uint_fast64_t gen;
	int stop;
	/* the job in flight */
	eng_task_fn fn;
	void *arg;
	int64_t ntasks;
	atomic_int_fast64_t next;
	atomic_int_fast64_t done;
} pool;

static void run_tasks(pool *p)
{
	for (;;) {
		int64_t t = atomic_fetch_add(&p->next, 1);

		if (t >= p->ntasks)
			break;
		p->fn(p->arg, t);
		if (atomic_fetch_add(&p->done, 1) + 1 == p->ntasks) {
			pthread_mutex_lock(&p->mu);
			pthread_cond_broadcast(&p->done_cv);
			pthread_mutex_unlock(&p->mu);
		}
	}
}

static void *worker(void *arg)
{
	pool *p = arg;
	uint64_t seen = 0;

	for (;;) {
		uint64_t g = 0;

		for (int spin = 0; spin < 200000; spin++) {
			g = atomic_load(&p->gen);
			if (g != seen)
				break;
		}
		if (g == seen) {
			pthread_mutex_lock(&p->mu);
			while (atomic_load(&p->gen) == seen && !p->stop)
				pthread_cond_wait(&p->wake, &p->mu);
			g = atomic_load(&p->gen);
			pthread_mutex_unlock(&p->mu);
		}
		if (p->stop)
			return NULL;
		seen = g;
		run_tasks(p);
	}
}

static void pool_for_each(const eng_parallel *self, int64_t ntasks, eng_task_fn fn, void *arg)
{
	pool *p = self->impl;

	if (ntasks <= 0)
		return;
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->ntasks = ntasks;
	atomic_store(&p->done, 0);
	atomic_store(&p->next, 0);
	atomic_fetch_add(&p->gen, 1);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);

	run_tasks(p);

	/* Spin a little first; the last task usually ends within microseconds. */
	for (int spin = 0; spin < 200000 && atomic_load(&p->done) < ntasks; spin++)
		;
	pthread_mutex_lock(&p->mu);
	while (atomic_load(&p->done) < ntasks)
		pthread_cond_wait(&p->done_cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

eng_parallel *bench_pool_new(int nthreads)
{
	pool *p = calloc(1, sizeof *p);

	if (!p) {
		fprintf(stderr, "bench: out of memory\n");
		exit(2);
	}
	p->par.nthreads = nthreads < 1 ? 1 : nthreads;
	p->par.impl = p;
	if (nthreads <= 1)
		return &p->par; /* for_each NULL: serial */
	p->par.for_each = pool_for_each;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done_cv, NULL);
	p->nworkers = nthreads - 1;
	p->threads = calloc((size_t)p->nworkers, sizeof *p->threads);
	for (int i = 0; i < p->nworkers; i++)
		if (!p->threads || pthread_create(&p->threads[i], NULL, worker, p) != 0) {
			fprintf(stderr, "bench: cannot start threads\n");
			exit(2);
		}
	return &p->par;
}

void bench_pool_free(eng_parallel *par)
{
	pool *p;

	if (!par)
		return;
	p = par->impl;
	if (p->nworkers > 0) {
		pthread_mutex_lock(&p->mu);
		p->stop = 1;
		atomic_fetch_add(&p->gen, 1);
		pthread_cond_broadcast(&p->wake);
		pthread_mutex_unlock(&p->mu);
		for (int i = 0; i < p->nworkers; i++)
			pthread_join(p->threads[i], NULL);
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->wake);
		pthread_cond_destroy(&p->done_cv);
	}
	free(p->threads);
	free(p);
}

/* ---- output and options ---------------------------------------------------- */
void bench_emit(const char *id, const char *impl, const char *metric, double value,
                const char *extra)
{
	printf("{\"id\": \"%s\", \"impl\": \"%s\", \"metric\": \"%s\", \"value\": %.6g%s%s}\n", id,
	       impl, metric, isfinite(value) ? value : -1.0, extra ? ", " : "", extra ? extra : "");
	fflush(stdout);
}

void bench_parse_args(bench_opts *o, int argc, char **argv, int default_runs)
{
	memset(o, 0, sizeof *o);
	o->runs = default_runs;
	o->threads[0] = 1;
	o->threads[1] = 2;
	o->nthreads_list = 2;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--smoke") == 0) {
			o->smoke = 1;
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			o->runs = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			char *s = argv[++i], *end;

			o->nthreads_list = 0;
			while (*s && o->nthreads_list < 4) {
				long v = strtol(s, &end, 10);

				if (end == s)
					break;
				o->threads[o->nthreads_list++] = v < 1 ? 1 : (int)v;
				s = *end == ',' ? end + 1 : end;
			}
		} else {
			fprintf(stderr, "usage: %s [--smoke] [--runs N] [--threads 1,2]\n",
			        argv[0]);
			exit(2);
		}
	}
	if (o->smoke && o->runs > 3)
		o->runs = 3;
	if (o->runs < 1)
		o->runs = 1;
}
