/*
 * startup_store.c - builds a stream store for the start-up benchmark
 * (bench/bench_startup.py): N streams of one method, each created and then
 * given D deltas of R rows, written through the store's own group commit
 * (store.h), so the database, its heads and its commit marker are exactly
 * what a lossd that took those updates would have left.
 *
 *   startup_store DIR METHOD STREAMS DELTAS ROWS [SEED]
 *     METHOD  exact | sketch (binary labels, no loss)
 *     DIR     a fresh data dir (created); lossd must not run on it
 *
 * Why not over HTTP: 10^6 updates through lossd take minutes (one commit
 * per group of waiting clients); here one transaction carries up to
 * 64 MiB of ops, so a 1.8 GB store is written in about the time the disk
 * takes. Stream ids and scores come from SEED (default 1): the same
 * arguments give the same store.
 *
 * Prints one line: streams, deltas, bytes written. Exit 1 on any error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lossd/api_stream.h"
#include "lossd/stream.h"
#include "store.h"

/* splitmix64: reproducible ids and scores */
static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#define GROUP_BYTES ((size_t)64 << 20)
#define GROUP_OPS   4096

typedef struct pending {
	srv__store_op op[GROUP_OPS];
	void *data[GROUP_OPS];
	size_t n, bytes;
} pending;

static int flush(srv__store *st, pending *g)
{
	int rc = 0;
	for (size_t i = 0; i < g->n; i++)
		if (srv__store_wait(st, &g->op[i]))
			rc = -1;
	for (size_t i = 0; i < g->n; i++)
		free(g->data[i]);
	g->n = g->bytes = 0;
	return rc;
}

static int submit(srv__store *st, pending *g, const srv__store_op *op, void *data)
{
	g->op[g->n] = *op;
	g->op[g->n].data = data;
	g->data[g->n] = data;
	srv__store_submit(st, &g->op[g->n]);
	g->n++;
	g->bytes += op->len;
	if (g->n == GROUP_OPS || g->bytes >= GROUP_BYTES)
		return flush(st, g);
	return 0;
}

/* One delta of rows binary rows: labels alternate, scores drawn. */
static int make_delta(void **out, size_t *len, const eng_stream_config *cfg, int64_t rows,
                      uint64_t *rng, double *score, int32_t *label)
{
	eng_stream *d = NULL;
	eng_error err;
	for (int64_t i = 0; i < rows; i++) {
		label[i] = (int32_t)(i & 1);
		double u = (double)(next(rng) >> 11) * 0x1p-53;
		score[i] = 0.7 * u + 0.3 * label[i];
	}
	eng_tensor y = {ENG_I32, 1, {rows}, rows, label};
	eng_tensor p = {ENG_F64, 1, {rows}, rows, score};
	int rc = eng_stream_batch(&d, cfg, &y, &p, NULL, NULL, &err);
	if (!rc)
		rc = eng_stream_serialize(out, len, d);
	if (rc)
		fprintf(stderr, "startup_store: batch: %s\n", err.msg);
	eng_stream_free(d);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr,
		        "usage: startup_store DIR exact|sketch STREAMS DELTAS ROWS [SEED]\n");
		return 2;
	}
	const char *dir = argv[1], *method = argv[2];
	long nstreams = atol(argv[3]), ndeltas = atol(argv[4]), rows = atol(argv[5]);
	uint64_t rng = argc > 6 ? strtoull(argv[6], NULL, 10) : 1;
	char err[512], config[128];
	srv__store *st = NULL;
	api_stream_spec *spec = NULL;
	api_problem p;
	api_stream_limits lim = {SIZE_MAX, (size_t)1 << 20};
	eng_stream *empty = NULL;
	eng_error eerr;
	char *text = NULL;
	double *score = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(double));
	int32_t *label = malloc((size_t)(rows > 0 ? rows : 1) * sizeof(int32_t));
	pending *g = calloc(1, sizeof(*g));
	char *ids = calloc((size_t)(nstreams > 0 ? nstreams : 1), 33);
	int rc = 1;
	size_t total = 0, nd = 0;

	if (nstreams < 0 || ndeltas < 0 || rows < 1 || !score || !label || !g || !ids ||
	    (strcmp(method, "exact") && strcmp(method, "sketch"))) {
		fprintf(stderr, "startup_store: bad arguments\n");
		goto out;
	}
	snprintf(config, sizeof config, "{\"method\":\"%s\"}", method);
	if (api_stream_spec_load(&spec, config, &lim, &p) || !(text = api_stream_spec_text(spec))) {
		fprintf(stderr, "startup_store: config: %s\n", p.detail);
		goto out;
	}
	const eng_stream_config *cfg = api_stream_spec_engine(spec);
	if (eng_stream_new(&empty, cfg, &eerr)) {
		fprintf(stderr, "startup_store: %s\n", eerr.msg);
		goto out;
	}
	if (srv__store_open(&st, dir, err, sizeof err)) {
		fprintf(stderr, "startup_store: %s\n", err);
		goto out;
	}
	/* the metadata row the server writes with every create (created_at;
	 * a stream row whose metadata row is missing reads as damaged) */
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	char meta[96];
	snprintf(meta, sizeof meta, "{\"created_ms\":%lld,\"tags\":{},\"ttl_s\":0}",
	         (long long)now_ms);
	for (long k = 0; k < nstreams; k++) {
		/* ops borrow the id until their group is flushed */
		char *sid = ids + (size_t)k * 33;
		uint64_t a = next(&rng), b = next(&rng);
		snprintf(sid, 33, "%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
		void *state = NULL;
		size_t slen = 0;
		if (eng_stream_serialize(&state, &slen, empty))
			goto out;
		srv__store_op op = {0};
		op.type = SRV__OP_CREATE;
		op.stream = sid;
		op.owner = "";
		op.config = text;
		op.len = slen;
		op.meta = meta;
		op.updated_ms = now_ms;
		if (submit(st, g, &op, state))
			goto out;
		for (long j = 0; j < ndeltas; j++) {
			void *d = NULL;
			size_t dl = 0;
			if (make_delta(&d, &dl, cfg, rows, &rng, score, label))
				goto out;
			memset(&op, 0, sizeof op);
			op.type = SRV__OP_DELTA;
			op.stream = sid;
			op.seq = j + 1;
			op.len = dl;
			total += dl;
			nd++;
			if (submit(st, g, &op, d))
				goto out;
		}
	}
	if (flush(st, g))
		goto out;
	printf("startup_store: %ld streams, %zu deltas, %zu bytes of deltas\n", nstreams, nd,
	       total);
	rc = 0;
out:
	if (g && g->n && flush(st, g))
		rc = 1;
	srv__store_close(st);
	eng_stream_free(empty);
	api_stream_spec_free(spec);
	free(text);
	free(score);
	free(label);
	free(g);
	free(ids);
	return rc;
}
