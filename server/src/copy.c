/*
 * copy.c - `lossd --copy-store FROM TO`: every stream of one store, with
 * its checkpoint, deltas, idempotency keys, checkpoint records and
 * metadata (the step series is part of the state), written into another (docs/API.md
 * section 10), so a one-node SQLite deployment can move to PostgreSQL, or
 * back.
 *
 * How. FROM is read through srv__store_export (one snapshot); each stream
 * is replayed (checkpoint + deltas, engine) to learn its counts, which the
 * PostgreSQL schema keeps beside the rows, and written to TO with
 * srv__store_import, one transaction per stream that replaces any stream
 * of that id: running the copy again gives the same TO (idempotent), and a
 * copy cut short can simply be rerun. Then TO is read back and, stream by
 * stream, the number of deltas and keys and the replayed counts are
 * compared with FROM's; any difference fails the copy (exit 1).
 *
 * Streams already in TO that FROM does not have are left alone (reported).
 * No lossd may serve either store meanwhile: the SQLite store's lock file
 * refuses a data dir in use; for PostgreSQL that is the operator's word.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "grow.h"
#include "lossd/stream.h"
#include "server.h"
#include "store.h"

typedef struct copied {
	char id[129];
	int64_t updates, rows;
	size_t ndeltas, nkeys, nckpts;
	bool seen; /* found again in TO */
} copied;

typedef struct copy_ctx {
	srv__store *to;
	copied *v;
	size_t n, cap;
	size_t deltas, keys, ckpts, extra, bad;
} copy_ctx;

/* The counts of rec's stream after all its deltas. */
static int replay(const srv__store_rec *rec, int64_t *updates, int64_t *rows)
{
	eng_stream *s = NULL, *d = NULL;
	eng_error err;
	eng_stream_counts c;
	int rc = -1;

	if (eng_stream_deserialize(&s, rec->state, rec->len, SIZE_MAX, &err)) {
		fprintf(stderr, "lossd: copy: stream %s: bad state: %s\n", rec->id, err.msg);
		goto out;
	}
	for (size_t i = 0; i < rec->ndeltas; i++) {
		if (eng_stream_deserialize(&d, rec->deltas[i].data, rec->deltas[i].len, SIZE_MAX,
		                           &err) ||
		    eng_stream_merge(s, d, &err)) {
			fprintf(stderr, "lossd: copy: stream %s: delta %lld: %s\n", rec->id,
			        (long long)rec->deltas[i].seq, err.msg);
			goto out;
		}
		eng_stream_free(d);
		d = NULL;
	}
	eng_stream_counts_of(&c, s);
	*updates = c.updates;
	*rows = c.rows;
	rc = 0;
out:
	eng_stream_free(d);
	eng_stream_free(s);
	return rc;
}

static int on_from(void *arg, srv__store_rec *rec)
{
	copy_ctx *cc = arg;
	if (replay(rec, &rec->updates, &rec->rows))
		return -1;
	if (srv__store_import(cc->to, rec)) {
		fprintf(stderr, "lossd: copy: cannot write stream %s\n", rec->id);
		return -1;
	}
	copied *nv = srv__grow(cc->v, &cc->cap, cc->n, sizeof(*nv), 64);
	if (!nv)
		return -1;
	cc->v = nv;
	copied *c = &cc->v[cc->n++];
	snprintf(c->id, sizeof c->id, "%s", rec->id);
	c->updates = rec->updates;
	c->rows = rec->rows;
	c->ndeltas = rec->ndeltas;
	c->nkeys = rec->nkeys;
	c->nckpts = rec->nckpts;
	c->seen = false;
	cc->deltas += rec->ndeltas;
	cc->keys += rec->nkeys;
	cc->ckpts += rec->nckpts;
	return 0;
}

static int on_to(void *arg, srv__store_rec *rec)
{
	copy_ctx *cc = arg;
	int64_t updates, rows;
	copied *c = NULL;
	for (size_t i = 0; i < cc->n && !c; i++) /* ids come in order: a scan is fine */
		if (!strcmp(cc->v[i].id, rec->id))
			c = &cc->v[i];
	if (!c) {
		cc->extra++;
		return 0;
	}
	c->seen = true;
	if (replay(rec, &updates, &rows) || updates != c->updates || rows != c->rows ||
	    rec->ndeltas != c->ndeltas || rec->nkeys != c->nkeys || rec->nckpts != c->nckpts) {
		fprintf(stderr, "lossd: copy: stream %s differs after the copy\n", rec->id);
		cc->bad++;
	}
	return 0;
}

static int open_store(srv__store **out, const char *url, const srv__config *cfg)
{
	srv__store_opts o = SRV__STORE_OPTS_INIT;
	char err[512];
	o.data_dir = cfg->data_dir;
	o.connections = 2;
	o.password_file = cfg->store_password_file[0] ? cfg->store_password_file : NULL;
	o.timeout_ms = cfg->store_timeout * 1000;
	if (srv__store_open_url(out, url, &o, err, sizeof err)) {
		fprintf(stderr, "lossd: copy: %s: %s\n",
		        srv__store_url_is_pg(url) ? "postgresql" : url, err);
		return -1;
	}
	return 0;
}

int srv__copy_store(const char *from, const char *to, const srv__config *cfg)
{
	srv__store *a = NULL, *b = NULL;
	copy_ctx cc;
	int rc = 1;

	memset(&cc, 0, sizeof cc);
	if (!strcmp(from, to)) {
		fprintf(stderr, "lossd: copy: FROM and TO are the same store\n");
		return 2;
	}
	if (open_store(&a, from, cfg) || open_store(&b, to, cfg))
		goto out;
	cc.to = b;
	if (srv__store_export(a, on_from, &cc)) {
		fprintf(stderr,
		        "lossd: copy: failed after %zu streams (rerun it: it is idempotent)\n",
		        cc.n);
		goto out;
	}
	if (srv__store_export(b, on_to, &cc)) {
		fprintf(stderr, "lossd: copy: cannot read the copy back\n");
		goto out;
	}
	for (size_t i = 0; i < cc.n; i++)
		if (!cc.v[i].seen) {
			fprintf(stderr, "lossd: copy: stream %s missing after the copy\n",
			        cc.v[i].id);
			cc.bad++;
		}
	printf("{\"msg\":\"copied\",\"streams\":%zu,\"deltas\":%zu,\"keys\":%zu,"
	       "\"checkpoints\":%zu,\"verified\":%s,\"other_streams_in_target\":%zu}\n",
	       cc.n, cc.deltas, cc.keys, cc.ckpts, cc.bad ? "false" : "true", cc.extra);
	rc = cc.bad ? 1 : 0;
out:
	srv__store_close(a);
	srv__store_close(b);
	free(cc.v);
	return rc;
}
