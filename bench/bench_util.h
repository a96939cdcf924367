/*
 * bench_util.h - what every lossd benchmark program shares: a clock, medians,
 * a seeded generator, page-touched buffers, a pthread pool behind the
 * engine's eng_parallel hook, and the one output format.
 *
 * Every result is one JSON line on stdout:
 *   {"id": "ce/32768x1000/t2", "impl": "lossd", "metric": "GB/s", "value": 17.2, ...}
 * bench/report.py pairs lines with the same id across impls and prints the
 * ratio table. Human-readable notes go to stderr so stdout stays parseable.
 *
 * The pool exists only here: the engine owns no threads, and the server has
 * its own. Results of engine calls must not depend on it (eng.h's promise),
 * which the loss benchmark checks by comparing 1- and 2-thread results.
 */
#ifndef LOSSD_BENCH_UTIL_H
#define LOSSD_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "lossd/eng.h"

/* Seconds on the monotonic clock. */
double bench_now(void);

/* Median of v[0..n) (sorts v in place). n >= 1. */
double bench_median(double *v, int n);

/* Minimum of v[0..n). */
double bench_min(const double *v, int n);

/* splitmix64: a tiny, seeded, reproducible generator. */
typedef struct bench_rng {
	uint64_t s;
} bench_rng;

uint64_t bench_rng_u64(bench_rng *r);
/* Uniform in [0, 1). */
double bench_rng_unif(bench_rng *r);
/* Standard normal (Box-Muller; one of the pair is dropped). */
double bench_rng_normal(bench_rng *r);
/* n draws of mean 0 and variance 1, near-normal: the sum of four uniforms
 * (Irwin-Hall, within 3.47 of 0), two 64-bit draws for each value. For
 * load generators, whose every microsecond is taken from the server they
 * measure: ~3 ns a value on the 2-core VM of docs/PERFORMANCE.md, against
 * ~27 for bench_rng_normal's log, sqrt and cos. */
void bench_rng_near_normals(bench_rng *r, double *out, size_t n);

/* The standard base64 alphabet, and an encoder into it (padded): writes
 * 4 ceil(n / 3) characters to out, returns their count. */
extern const char bench_b64_alphabet[];
size_t bench_b64_encode(char *out, const unsigned char *in, size_t n);

/* 64-byte aligned, every page written (so timing excludes page faults).
 * New: free() it. Exits the program on failure (a benchmark, not a server). */
void *bench_alloc(size_t bytes);

/*
 * A pool of nthreads - 1 pthreads plus the calling thread, exposed as an
 * eng_parallel. New: free with bench_pool_free. nthreads <= 1 gives a serial
 * eng_parallel (for_each NULL).
 */
eng_parallel *bench_pool_new(int nthreads);
void bench_pool_free(eng_parallel *par);

/* Prints one result line. extra is NULL or a JSON fragment without braces
 * that is appended to the object ("\"rel_err\": 1e-9"). */
void bench_emit(const char *id, const char *impl, const char *metric, double value,
                const char *extra);

/* Options every benchmark takes: --smoke (tiny sizes, few runs),
 * --runs N, --threads LIST ("1,2"). */
typedef struct bench_opts {
	int smoke;
	int runs;
	int threads[4];
	int nthreads_list;
} bench_opts;

void bench_parse_args(bench_opts *o, int argc, char **argv, int default_runs);

#endif
