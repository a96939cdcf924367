/*
 * bench_bandwidth.c - memory read bandwidth on 1 and 2 threads: the ceiling
 * the loss kernels are measured against ("at least 60% of the measured read
 * bandwidth on 2 threads").
 *
 * Reads a buffer far larger than the last-level cache with 64-bit integer
 * adds (they vectorize without -ffast-math, and are cheaper than the
 * memory they read), split into contiguous chunks, one per task, across the
 * bench pool. Reports the median over runs of bytes / seconds.
 * It deliberately measures reads only: the kernels read logits and write
 * almost nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

typedef struct job {
	const uint64_t *buf;
	int64_t n;
	int64_t ntasks;
	uint64_t sums[64];
} job;

static void read_task(void *arg, int64_t t)
{
	job *j = arg;
	int64_t lo = j->n * t / j->ntasks, hi = j->n * (t + 1) / j->ntasks;
	uint64_t a = 0, b = 0, c = 0, d = 0;
	int64_t i = lo;

	for (; i + 4 <= hi; i += 4) {
		a += j->buf[i];
		b += j->buf[i + 1];
		c += j->buf[i + 2];
		d += j->buf[i + 3];
	}
	for (; i < hi; i++)
		a += j->buf[i];
	j->sums[t] = a + b + c + d;
}

int main(int argc, char **argv)
{
	bench_opts o;
	size_t bytes;
	job j = {0};
	bench_rng rng = {42};
	uint64_t *buf;

	bench_parse_args(&o, argc, argv, 15);
	bytes = o.smoke ? (size_t)64 << 20 : (size_t)1 << 30;
	j.n = (int64_t)(bytes / sizeof(uint64_t));
	buf = bench_alloc(bytes);
	for (int64_t i = 0; i < j.n; i++)
		buf[i] = bench_rng_u64(&rng) & 0xffff;
	j.buf = buf;

	for (int ti = 0; ti < o.nthreads_list; ti++) {
		int nt = o.threads[ti];
		eng_parallel *par = bench_pool_new(nt);
		double *secs = calloc((size_t)o.runs, sizeof *secs);
		uint64_t check = 0;
		char id[64], extra[128];

		j.ntasks = nt > 64 ? 64 : nt;
		for (int r = -1; r < o.runs; r++) { /* r = -1 warms up */
			double t0 = bench_now();

			eng_parallel_for(par, j.ntasks, read_task, &j);
			if (r >= 0)
				secs[r] = bench_now() - t0;
			check = 0;
			for (int64_t t = 0; t < j.ntasks; t++)
				check += j.sums[t];
		}
		snprintf(id, sizeof id, "bw/read/t%d", nt);
		snprintf(extra, sizeof extra, "\"bytes\": %zu, \"best\": %.4g, \"check\": %llu",
		         bytes, (double)bytes / bench_min(secs, o.runs) / 1e9,
		         (unsigned long long)check);
		bench_emit(id, "memory", "GB/s", (double)bytes / bench_median(secs, o.runs) / 1e9,
		           extra);
		free(secs);
		bench_pool_free(par);
	}
	free(buf);
	return 0;
}
