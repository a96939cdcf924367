/*
 * test_store.c - server/src/store.c: ops written by group commit are
 * there after a reopen, in order; checkpoints drop covered deltas; keys
 * survive; many threads' ops are committed in fewer groups than ops.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lossd/stream.h"
#include "store.h"

static char dir[256];

static void mkdir_temp(void)
{
	snprintf(dir, sizeof dir, "/tmp/lossd_test_store_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_temp(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	(void)system(cmd);
}

static srv__store *open_store(void)
{
	srv__store *st = NULL;
	char err[256] = "";
	cr_assert_eq(srv__store_open(&st, dir, err, sizeof err), 0, "%s", err);
	return st;
}

/* What a load saw. */
#define MAXS 16
#define MAXD 4096
typedef struct seen {
	int nstreams;
	char id[MAXS][64], owner[MAXS][64], config[MAXS][64], state[MAXS][64];
	int64_t seq[MAXS];
	int ndeltas[MAXS];
	int64_t dseq[MAXS][MAXD];
	char dfirst[MAXS][MAXD];
} seen;

static void *on_stream(void *arg, const char *id, const char *owner, const char *config,
                       const void *state, size_t len, int64_t seq)
{
	seen *s = arg;
	int i = s->nstreams++;
	snprintf(s->id[i], 64, "%s", id);
	snprintf(s->owner[i], 64, "%s", owner);
	snprintf(s->config[i], 64, "%s", config);
	snprintf(s->state[i], 64, "%.*s", (int)len, (const char *)state);
	s->seq[i] = seq;
	return &s->ndeltas[i];
}

static int on_delta(void *arg, void *h, int64_t seq, const void *data, size_t len)
{
	seen *s = arg;
	int i = (int)((int *)h - s->ndeltas);
	cr_assert(len >= 1);
	s->dseq[i][s->ndeltas[i]] = seq;
	s->dfirst[i][s->ndeltas[i]] = ((const char *)data)[0];
	s->ndeltas[i]++;
	return 0;
}

static seen *load(srv__store *st)
{
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(srv__store_load(st, NULL, on_stream, on_delta, s), 0);
	return s;
}

static void run(srv__store *st, srv__store_op *op)
{
	srv__store_submit(st, op);
	cr_assert_eq(srv__store_wait(st, op), 0);
}

/* Creates stream `id` (no owner, config "{}") whose stored state is the
 * bytes of `state`. */
static void create(srv__store *st, const char *id, const char *state)
{
	srv__store_op op = {0};
	op.type = SRV__OP_CREATE;
	op.stream = id;
	op.config = "{}";
	op.data = state;
	op.len = strlen(state);
	run(st, &op);
}

/* A delta of stream at seq (data: its bytes; stale: NULL or the stream's
 * flag). */
static srv__store_op delta(const char *stream, int64_t seq, const char *data, atomic_bool *stale)
{
	srv__store_op op = {0};
	op.type = SRV__OP_DELTA;
	op.stream = stream;
	op.seq = seq;
	op.data = data;
	op.len = strlen(data);
	op.stale = stale;
	return op;
}

Test(store, round_trip_and_keys_across_reopen, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	srv__store_op op = {0};
	op.type = SRV__OP_CREATE;
	op.stream = "s1";
	op.owner = "alice";
	op.config = "{\"m\":1}";
	op.data = "EMPTY";
	op.len = 5;
	run(st, &op);
	for (int i = 1; i <= 5; i++) {
		char data[2] = {(char)('a' + i), 0};
		char key[8];
		snprintf(key, sizeof key, "k%d", i);
		srv__store_op d = {0};
		d.type = SRV__OP_DELTA;
		d.stream = "s1";
		d.seq = i;
		d.data = data;
		d.len = 1;
		d.key = i % 2 ? key : NULL;
		d.reply = "{\"r\":1}";
		run(st, &d);
	}
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_str_eq(s->id[0], "s1");
	cr_assert_str_eq(s->owner[0], "alice");
	cr_assert_str_eq(s->config[0], "{\"m\":1}");
	cr_assert_str_eq(s->state[0], "EMPTY");
	cr_assert_eq(s->ndeltas[0], 5);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(s->dseq[0][i], i + 1);
		cr_assert_eq(s->dfirst[0][i], 'a' + i + 1);
	}
	char *reply = NULL;
	cr_assert_eq(srv__store_key_get(st, "s1", "k3", &reply), 1);
	cr_assert_str_eq(reply, "{\"r\":1}");
	free(reply);
	cr_assert_eq(srv__store_key_get(st, "s1", "k2", &reply), 0);
	cr_assert_eq(srv__store_key_get(st, "other", "k3", &reply), 0);
	free(s);
	srv__store_close(st);
}

Test(store, checkpoint_reset_delete, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "a", "0");
	create(st, "b", "0");
	/* One group: deltas 1..3 of a, a checkpoint at 2 (covers 1, 2), key k. */
	srv__store_op d[3] = {{0}}, ck = {0};
	for (int i = 0; i < 3; i++) {
		d[i].type = SRV__OP_DELTA;
		d[i].stream = "a";
		d[i].seq = i + 1;
		d[i].data = "d";
		d[i].len = 1;
	}
	d[0].key = "k";
	d[0].reply = "R";
	ck.type = SRV__OP_CHECKPOINT;
	ck.stream = "a";
	ck.seq = 2;
	ck.data = "CK";
	ck.len = 2;
	srv__store_submit(st, &d[0]);
	srv__store_submit(st, &d[1]);
	srv__store_submit(st, &ck);
	srv__store_submit(st, &d[2]);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(srv__store_wait(st, &d[i]), 0);
	cr_assert_eq(srv__store_wait(st, &ck), 0);
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 2);
	cr_assert_str_eq(s->id[0], "a");
	cr_assert_str_eq(s->state[0], "CK");
	cr_assert_eq(s->seq[0], 2);
	cr_assert_eq(s->ndeltas[0], 1, "only the delta after the checkpoint is replayed");
	cr_assert_eq(s->dseq[0][0], 3);
	free(s);
	char *r = NULL;
	cr_assert_eq(srv__store_key_get(st, "a", "k", &r), 1);
	free(r);

	/* A reset: checkpoint that clears keys. */
	srv__store_op rs = {0};
	rs.type = SRV__OP_CHECKPOINT;
	rs.stream = "a";
	rs.seq = 4;
	rs.data = "E";
	rs.len = 1;
	rs.clear_keys = true;
	run(st, &rs);
	cr_assert_eq(srv__store_key_get(st, "a", "k", &r), 0);

	srv__store_op del = {0};
	del.type = SRV__OP_DELETE;
	del.stream = "a";
	run(st, &del);
	srv__store_close(st);
	st = open_store();
	s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_str_eq(s->id[0], "b");
	free(s);
	srv__store_close(st);
}

#define THREADS 8
#define PER     150

typedef struct worker {
	srv__store *st;
	int t;
	int failures;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	char sid[8], key[32];
	snprintf(sid, sizeof sid, "t%d", w->t % 2);
	for (int i = 0; i < PER; i++) {
		srv__store_op op = {0};
		op.type = SRV__OP_DELTA;
		op.stream = sid;
		/* Distinct seqs per stream: thread t owns seqs = t + THREADS * i. */
		op.seq = 1 + w->t + (int64_t)THREADS * i;
		op.data = "x";
		op.len = 1;
		snprintf(key, sizeof key, "t%d-%d", w->t, i);
		op.key = key;
		op.reply = key;
		srv__store_submit(w->st, &op);
		if (srv__store_wait(w->st, &op))
			w->failures++;
	}
	return NULL;
}

Test(store, group_commit_many_threads, .init = mkdir_temp, .fini = rm_temp, .timeout = 120)
{
	srv__store *st = open_store();
	create(st, "t0", "0");
	create(st, "t1", "0");
	uint64_t g0, o0;
	srv__store_stats(st, &g0, &o0);
	pthread_t th[THREADS];
	worker w[THREADS];
	for (int t = 0; t < THREADS; t++) {
		w[t] = (worker){st, t, 0};
		pthread_create(&th[t], NULL, work, &w[t]);
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		cr_assert_eq(w[t].failures, 0);
	}
	uint64_t g1, o1;
	srv__store_stats(st, &g1, &o1);
	cr_assert_eq(o1 - o0, (uint64_t)THREADS * PER);
	cr_assert_lt(g1 - g0, (uint64_t)THREADS * PER, "no grouping: %llu groups",
	             (unsigned long long)(g1 - g0));
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 2);
	cr_assert_eq(s->ndeltas[0] + s->ndeltas[1], THREADS * PER);
	for (int k = 0; k < 2; k++)
		for (int i = 1; i < s->ndeltas[k]; i++)
			cr_assert_lt(s->dseq[k][i - 1], s->dseq[k][i]);
	char *r = NULL;
	cr_assert_eq(srv__store_key_get(st, "t1", "t3-149", &r), 1);
	cr_assert_str_eq(r, "t3-149");
	free(r);
	free(s);
	srv__store_close(st);
}

Test(store, one_process_per_data_dir, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *a = open_store(), *b = NULL;
	char err[256] = "";
	/* flock locks belong to the open file description: a second open in
	 * the same process conflicts just as another process would. */
	cr_assert_eq(srv__store_open(&b, dir, err, sizeof err), -1);
	cr_assert_null(b);
	cr_assert_not_null(strstr(err, "another lossd"), "%s", err);
	srv__store_close(a);
	b = open_store();
	srv__store_close(b);
}

/* A failed transaction breaks the store: its ops fail and mark their
 * streams stale, later submits are refused at once, and srv__store_heal
 * brings it back once a probe commits; what failed is not on disk. */
Test(store, broken_then_healed, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "s", "0");

	atomic_bool stale = false;
	srv__store_op d = delta("s", 1, "1", &stale);
	srv__store_test_fail(st, -1);
	srv__store_submit(st, &d);
	cr_assert_eq(srv__store_wait(st, &d), -1);
	cr_assert(atomic_load(&stale));
	cr_assert(srv__store_broken(st));
	srv__store_health h;
	srv__store_health_of(&h, st);
	cr_assert(h.broken);
	cr_assert_eq(h.failures, 1);
	cr_assert(strstr(h.why, "injected"), "%s", h.why);

	/* refused at the door while broken, even with the fault gone */
	srv__store_test_fail(st, 0);
	atomic_bool stale2 = false;
	srv__store_op d2 = d;
	d2.stale = &stale2;
	srv__store_submit(st, &d2);
	cr_assert(d2.done);
	cr_assert_eq(srv__store_wait(st, &d2), -1);
	cr_assert(atomic_load(&stale2));

	/* a heal with the fault still there fails; without it, it succeeds */
	srv__store_test_fail(st, 1);
	cr_assert_eq(srv__store_heal(st), -1);
	cr_assert(srv__store_broken(st));
	cr_assert_eq(srv__store_heal(st), 0);
	cr_assert_not(srv__store_broken(st));
	srv__store_health_of(&h, st);
	cr_assert_eq(h.recoveries, 1);
	cr_assert_eq(h.running_s, 0);

	srv__store_op d3 = d;
	d3.seq = 2;
	d3.data = "2";
	d3.stale = NULL;
	run(st, &d3);
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_eq(s->ndeltas[0], 1, "the failed delta must not be stored");
	cr_assert_eq(s->dseq[0][0], 2);
	cr_assert_eq(s->dfirst[0][0], '2');
	free(s);
	srv__store_close(st);
}

/* ---- start-up: many pending deltas load as their checkpoint ---- */

#define NSTREAMS 4
typedef struct replay {
	pthread_mutex_t mu;
	int n;
	char id[NSTREAMS][32];
	eng_stream *st[NSTREAMS];
	int64_t seq[NSTREAMS];
	bool bad;
} replay;

/* What streams.c does at start-up: the stored state, then each delta
 * decoded into it (eng_stream_merge_bytes). Called from two loaders. */
static void *rp_stream(void *arg, const char *id, const char *owner, const char *config,
                       const void *state, size_t len, int64_t seq)
{
	replay *r = arg;
	eng_error err;
	(void)owner;
	(void)config;
	pthread_mutex_lock(&r->mu);
	int i = r->n < NSTREAMS ? r->n++ : -1;
	pthread_mutex_unlock(&r->mu);
	if (i < 0 || eng_stream_deserialize(&r->st[i], state, len, SIZE_MAX, &err)) {
		r->bad = true;
		return NULL;
	}
	snprintf(r->id[i], sizeof r->id[i], "%s", id);
	r->seq[i] = seq;
	return &r->seq[i];
}

static int rp_delta(void *arg, void *h, int64_t seq, const void *data, size_t len)
{
	replay *r = arg;
	int i = (int)((int64_t *)h - r->seq);
	eng_error err;
	if (seq != r->seq[i] + 1 || eng_stream_merge_bytes(r->st[i], data, len, &err)) {
		r->bad = true;
		return -1;
	}
	r->seq[i] = seq;
	return 0;
}

static int rp_orphan(void *arg, const char *id)
{
	char *got = arg;
	strcat(got, id);
	strcat(got, ";");
	return 0;
}

static void submit_bytes(srv__store *st, int type, const char *id, int64_t seq, void *data,
                         size_t len)
{
	srv__store_op op = {0};
	op.type = type;
	op.stream = id;
	op.owner = "o";
	op.config = "{}";
	op.seq = seq;
	op.data = data;
	op.len = len;
	run(st, &op);
	free(data);
}

static const eng_stream *find_stream(const replay *r, const char *id)
{
	for (int i = 0; i < r->n; i++)
		if (!strcmp(r->id[i], id))
			return r->st[i];
	cr_assert_fail("stream %s was not loaded", id);
	return NULL;
}

static void assert_same_bytes(const eng_stream *a, const eng_stream *b)
{
	void *x = NULL, *y = NULL;
	size_t nx = 0, ny = 0;
	cr_assert_eq(eng_stream_serialize(&x, &nx, a), 0);
	cr_assert_eq(eng_stream_serialize(&y, &ny, b), 0);
	cr_assert_eq(nx, ny);
	cr_assert(memcmp(x, y, nx) == 0, "the states differ");
	free(x);
	free(y);
}

/*
 * An exact stream of 300 pending deltas (weighted, with loss sums absent)
 * and one holding their merge as its stored checkpoint load to the same
 * bytes as the merge made in memory, through the start-up path: two
 * loader threads on the mapped VFS with quick_check running beside them.
 * Deltas of streams that have no row are found by the seeking scan, each
 * once, in id order (before, between and after the real streams).
 */
Test(store, pending_deltas_load_as_their_checkpoint, .init = mkdir_temp, .fini = rm_temp,
     .timeout = 120)
{
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = ENG_STREAM_EXACT;
	eng_stream *whole = NULL;
	eng_error err;
	void *data = NULL;
	size_t len = 0;
	cr_assert_eq(eng_stream_new(&whole, &cfg, &err), 0);
	srv__store *st = open_store();
	cr_assert_eq(eng_stream_serialize(&data, &len, whole), 0);
	submit_bytes(st, SRV__OP_CREATE, "pending", 0, data, len);
	uint64_t rng = 7;
	for (int64_t d = 1; d <= 300; d++) {
		int64_t n = 5 + d % 9;
		double score[16], w[16];
		int32_t y[16];
		for (int64_t i = 0; i < n; i++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			score[i] = (double)(rng >> 40) / (double)(1 << 24);
			y[i] = (int32_t)(rng >> 63);
			w[i] = 0.25 * (double)((rng >> 20) % 8);
		}
		eng_tensor ty = {ENG_I32, 1, {n}, n, y};
		eng_tensor ts = {ENG_F64, 1, {n}, n, score};
		eng_tensor tw = {ENG_F64, 1, {n}, n, w};
		eng_stream *b = NULL;
		cr_assert_eq(eng_stream_batch(&b, &cfg, &ty, &ts, &tw, NULL, &err), 0, "%s",
		             err.msg);
		cr_assert_eq(eng_stream_merge(whole, b, &err), 0);
		cr_assert_eq(eng_stream_serialize(&data, &len, b), 0);
		submit_bytes(st, SRV__OP_DELTA, "pending", d, data, len);
		eng_stream_free(b);
	}
	cr_assert_eq(eng_stream_serialize(&data, &len, whole), 0);
	submit_bytes(st, SRV__OP_CREATE, "checkpointed", 300, data, len);
	/* deltas without their stream row */
	const char *orphans[] = {"a-orphan", "m-orphan", "zz-orphan"};
	for (int k = 0; k < 3; k++)
		for (int64_t d = 1; d <= 2; d++) {
			cr_assert_eq(eng_stream_serialize(&data, &len, whole), 0);
			submit_bytes(st, SRV__OP_DELTA, orphans[k], d, data, len);
		}
	srv__store_close(st);

	srv__store_opts o = SRV__STORE_OPTS_INIT;
	o.data_dir = dir;
	o.check_later = true;
	char e[512] = "";
	cr_assert_eq(srv__store_open_url(&st, "sqlite", &o, e, sizeof e), 0, "%s", e);
	replay r = {.mu = PTHREAD_MUTEX_INITIALIZER};
	cr_assert_eq(srv__store_load_all(st, 2, rp_stream, rp_delta, &r), 0);
	cr_assert_eq(srv__store_check_wait(st, e, sizeof e), 0, "%s", e);
	cr_assert_not(r.bad);
	cr_assert_eq(r.n, 2);
	assert_same_bytes(find_stream(&r, "pending"), whole);
	assert_same_bytes(find_stream(&r, "checkpointed"), whole);
	char got[256] = "";
	cr_assert_eq(srv__store_orphans(st, rp_orphan, got), 0);
	cr_assert_str_eq(got, "a-orphan;m-orphan;zz-orphan;");
	for (int i = 0; i < r.n; i++)
		eng_stream_free(r.st[i]);
	eng_stream_free(whole);
	srv__store_close(st);
}

/* The grouping rule (store.c, "Grouping"): a lone writer, a full queue or
 * a zero --commit-delay-us never wait; otherwise the leader waits twice
 * the time the missing ops are due, capped, and only when they are due
 * within the cap. */
Test(store, gather_rule)
{
	cr_assert_eq(srv__store_test_gather_wait(1, 1, 1e-6, 1000), 0);   /* lone writer */
	cr_assert_eq(srv__store_test_gather_wait(8, 5, 1e-6, 1000), 0);   /* full */
	cr_assert_eq(srv__store_test_gather_wait(20, 20, 1e-6, 1000), 0); /* more than full */
	cr_assert_eq(srv__store_test_gather_wait(5, 5, 1e-4, 0), 0);      /* off */
	cr_assert_eq(srv__store_test_gather_wait(2, 2, 5e-4, 1000), 0);   /* due in 3 ms */
	/* 3 missing, due in 300 us: wait up to 600 us */
	cr_assert_float_eq(srv__store_test_gather_wait(5, 5, 1e-4, 1000), 6e-4, 1e-9);
	/* alone now, but the last group had company */
	cr_assert_float_eq(srv__store_test_gather_wait(1, 6, 1e-5, 1000), 1.4e-4, 1e-9);
	/* due exactly at the cap: wait the cap */
	cr_assert_float_eq(srv__store_test_gather_wait(7, 7, 1e-3, 1000), 1e-3, 1e-9);
}

/* A lone writer committing in a tight loop (submits microseconds after
 * its previous commit) never makes its leader wait. */
Test(store, lone_writer_never_waits, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "a", "0");
	for (int i = 0; i < 200; i++) {
		srv__store_op op = delta("a", 2 + i, "x", NULL);
		run(st, &op);
	}
	srv__store_health h;
	srv__store_health_of(&h, st);
	cr_assert_eq(h.groups, 201);
	cr_assert_eq(h.delays, 0, "a lone writer waited %llu times", (unsigned long long)h.delays);
	srv__store_close(st);
}

/* Big deltas and checkpoints past the WAL's checkpoint threshold: the
 * checkpointer copies the WAL into the database, the WAL stays bounded,
 * and everything committed is there after a reopen. */
Test(store, wal_checkpointed_off_the_commit_path, .init = mkdir_temp, .fini = rm_temp,
     .timeout = 120)
{
	enum { N = 1600, BIG = 32768 };
	char *big = malloc(BIG);
	cr_assert_not_null(big);
	memset(big, 'd', BIG);
	srv__store *st = open_store();
	create(st, "w", "s");
	int64_t seq = 1;
	for (int i = 0; i < N; i++) {
		srv__store_op op = {0};
		op.stream = "w";
		op.seq = ++seq;
		if (i % 4 == 3) { /* a checkpoint drops the three deltas before it */
			op.type = SRV__OP_CHECKPOINT;
			op.data = "S";
			op.len = 1;
		} else {
			op.type = SRV__OP_DELTA;
			op.data = big;
			op.len = BIG;
		}
		run(st, &op);
	}
	srv__store_health h;
	srv__store_health_of(&h, st);
	/* 1,200 deltas of 32 KiB: 39 MB through a WAL checkpointed each 32
	 * MiB, and by a committing thread past 64 MiB (16,384 pages of 4 KiB). */
	cr_assert_geq(h.ckpts + h.ckpt_inline, 1, "no checkpoint ran");
	cr_assert_eq(h.ckpt_failures, 0);
	cr_assert_lt(h.wal_pages, 16384, "WAL of %lld pages", (long long)h.wal_pages);
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_str_eq(s->state[0], "S");
	cr_assert_eq(s->seq[0], seq);
	cr_assert_eq(s->ndeltas[0], 0);
	free(s);
	srv__store_close(st);
	free(big);
}

/* Ops with on_done (a stream update that does not wait): the committer
 * finishes each once its group's outcome is known, never on the
 * submitter's thread; a failed group marks the stream stale before
 * on_done runs; an op refused at the door (broken store) is finished by
 * the committer too, and what failed is not on disk. */
typedef struct async_op {
	srv__store_op op; /* first */
	atomic_bool stale;
	pthread_t submitter;
	bool stale_seen; /* stale at on_done time */
	bool other_thread;
	int rc;
	atomic_int calls;
} async_op;

static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_cv = PTHREAD_COND_INITIALIZER;

static void async_done(srv__store_op *op)
{
	async_op *a = (async_op *)op;
	a->stale_seen = atomic_load(&a->stale);
	a->other_thread = !pthread_equal(a->submitter, pthread_self());
	a->rc = op->rc;
	pthread_mutex_lock(&async_mu);
	atomic_fetch_add(&a->calls, 1);
	pthread_cond_broadcast(&async_cv);
	pthread_mutex_unlock(&async_mu);
}

static void async_submit(srv__store *st, async_op *a, int64_t seq, const char *data)
{
	a->op.type = SRV__OP_DELTA;
	a->op.stream = "s";
	a->op.seq = seq;
	a->op.data = data;
	a->op.len = strlen(data);
	a->op.stale = &a->stale;
	a->op.on_done = async_done;
	a->submitter = pthread_self();
	srv__store_submit(st, &a->op);
}

static void async_wait(async_op *a, int n)
{
	pthread_mutex_lock(&async_mu);
	for (int i = 0; i < n; i++)
		while (atomic_load(&a[i].calls) == 0)
			pthread_cond_wait(&async_cv, &async_mu);
	pthread_mutex_unlock(&async_mu);
}

Test(store, on_done_ops_finished_by_the_committer, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "s", "0");

	static async_op ok[20];
	memset(ok, 0, sizeof ok);
	for (int i = 0; i < 20; i++)
		async_submit(st, &ok[i], i + 1, "d");
	async_wait(ok, 20);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(ok[i].rc, 0);
		cr_assert(ok[i].other_thread, "op %d finished on its submitter's thread", i);
		cr_assert_not(ok[i].stale_seen);
		cr_assert_eq(atomic_load(&ok[i].calls), 1);
	}

	/* a failed group: stale before on_done, rc -1 */
	async_op bad = {0};
	srv__store_test_fail(st, -1);
	async_submit(st, &bad, 21, "x");
	async_wait(&bad, 1);
	cr_assert_eq(bad.rc, -1);
	cr_assert(bad.stale_seen);
	cr_assert(srv__store_broken(st));

	/* refused at the door: finished by the committer, stale first */
	srv__store_test_fail(st, 0);
	async_op door = {0};
	async_submit(st, &door, 21, "y");
	async_wait(&door, 1);
	cr_assert_eq(door.rc, -1);
	cr_assert(door.stale_seen);
	cr_assert(door.other_thread);
	cr_assert_eq(srv__store_heal(st), 0);
	cr_assert_not(srv__store_broken(st));

	/* healed, but the stream is still stale (not reloaded yet): its
	 * next op is refused as well, whether it waits or has on_done */
	async_op after = {0};
	atomic_store(&after.stale, true);
	async_submit(st, &after, 22, "z");
	async_wait(&after, 1);
	cr_assert_eq(after.rc, -1);
	cr_assert(after.other_thread);
	atomic_bool stale = true;
	srv__store_op op = delta("s", 22, "w", &stale);
	srv__store_submit(st, &op);
	cr_assert_eq(srv__store_wait(st, &op), -1);
	cr_assert_not(srv__store_broken(st), "a stale stream's op broke the store");
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_eq(s->ndeltas[0], 20); /* no failed or refused op is there */
	free(s);
	srv__store_close(st);
}

/* Checkpoints without bytes (srv__store_op.resolve): the committer asks
 * only the last op of a stream in the group; when that one can only give
 * its own delta, the earlier ones are asked too (each its delta), so
 * nothing of the group is lost. */
typedef struct lazy_op {
	srv__store_op op; /* first */
	bool moved_on;    /* resolve: the stream moved past seq (a delta) */
	char bytes[8];
	int asked;
} lazy_op;

static int lazy_resolve(srv__store_op *op, bool final)
{
	(void) final;
	lazy_op *l = (lazy_op *)op;
	l->asked++;
	if (l->moved_on)
		op->type = SRV__OP_DELTA;
	snprintf(l->bytes, sizeof l->bytes, "%c%lld", l->moved_on ? 'd' : 'S', (long long)op->seq);
	op->data = l->bytes;
	op->len = strlen(l->bytes);
	return 0;
}

/* Waits until the committer has taken the queue and holds its group
 * (srv__store_test_hold): its transaction is then running. */
static void wait_held(srv__store *st)
{
	srv__store_health h;
	for (int i = 0; i < 20000; i++) {
		srv__store_health_of(&h, st);
		if (h.running_s > 0)
			return;
		usleep(1000);
	}
	cr_assert_fail("the committer never took the held group");
}

/* Commits ops[0..n) as one group: the committer holds a first op while
 * they queue. */
static void one_group(srv__store *st, lazy_op *ops, int n, int64_t seq0)
{
	srv__store_op first = delta("s", seq0, "f", NULL);
	srv__store_test_hold(st, true);
	srv__store_submit(st, &first);
	wait_held(st); /* the committer took `first` and holds */
	for (int i = 0; i < n; i++) {
		ops[i].op.type = SRV__OP_CHECKPOINT;
		ops[i].op.stream = "s";
		ops[i].op.seq = seq0 + 1 + i;
		ops[i].op.resolve = lazy_resolve;
		srv__store_submit(st, &ops[i].op);
	}
	srv__store_test_hold(st, false);
	cr_assert_eq(srv__store_wait(st, &first), 0);
	for (int i = 0; i < n; i++)
		cr_assert_eq(srv__store_wait(st, &ops[i].op), 0);
}

/* srv__store_heads into two slots, s and t (-1: no head). */
static int on_head(void *arg, const char *id, int64_t seq)
{
	int64_t *h = arg;
	h[strcmp(id, "s") == 0 ? 0 : 1] = seq;
	return 0;
}

/* A group leaves each stream's head at its last op's seq: the heads after
 * one group of interleaved deltas of two streams, and after one that ends
 * with a delete, are those the ops written one by one would leave, and the
 * store opens with them (its check that the deltas reach every head). */
Test(store, a_group_leaves_each_streams_last_head, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "s", "0");
	create(st, "t", "0");
	srv__store_op first = delta("s", 1, "a", NULL);
	srv__store_op ops[] = {delta("t", 1, "b", NULL), delta("s", 2, "c", NULL),
	                       delta("s", 3, "d", NULL), delta("t", 2, "e", NULL),
	                       delta("s", 4, "f", NULL)};
	enum { N = sizeof ops / sizeof *ops };
	srv__store_test_hold(st, true);
	srv__store_submit(st, &first);
	wait_held(st);
	for (int i = 0; i < N; i++)
		srv__store_submit(st, &ops[i]);
	srv__store_test_hold(st, false);
	cr_assert_eq(srv__store_wait(st, &first), 0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(srv__store_wait(st, &ops[i]), 0);
	int64_t h[2] = {-1, -1};
	cr_assert_eq(srv__store_heads(st, on_head, h), 0);
	cr_assert_eq(h[0], 4);
	cr_assert_eq(h[1], 2);

	/* deltas of t, then its delete, in one group: t has no head left */
	srv__store_op more[] = {delta("t", 3, "g", NULL),
	                        delta("s", 5, "h", NULL),
	                        {.type = SRV__OP_DELETE, .stream = "t"}};
	srv__store_op lead = delta("s", 5, "x", NULL);
	lead.type = SRV__OP_NOTE;
	srv__store_test_hold(st, true);
	srv__store_submit(st, &lead);
	wait_held(st);
	for (int i = 0; i < 3; i++)
		srv__store_submit(st, &more[i]);
	srv__store_test_hold(st, false);
	cr_assert_eq(srv__store_wait(st, &lead), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(srv__store_wait(st, &more[i]), 0);
	h[0] = h[1] = -1;
	cr_assert_eq(srv__store_heads(st, on_head, h), 0);
	cr_assert_eq(h[0], 5);
	cr_assert_eq(h[1], -1);
	srv__store_close(st);

	/* and the store opens with them: the deltas reach each head */
	st = open_store();
	seen *l = load(st);
	cr_assert_eq(l->nstreams, 1);
	cr_assert_eq(l->ndeltas[0], 5);
	free(l);
	srv__store_close(st);
}

Test(store, lazy_checkpoints_resolved_latest_first, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = open_store();
	create(st, "s", "0");

	/* the last one is the state: only it is asked, the rest covered */
	lazy_op a[3];
	memset(a, 0, sizeof a);
	one_group(st, a, 3, 0);
	cr_assert_eq(a[0].asked, 0);
	cr_assert_eq(a[1].asked, 0);
	cr_assert_eq(a[2].asked, 1);

	/* the last one moved on (a delta): every one is asked, each a delta */
	lazy_op b[3];
	memset(b, 0, sizeof b);
	for (int i = 0; i < 3; i++)
		b[i].moved_on = true;
	one_group(st, b, 3, 4);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(b[i].asked, 1, "op %d asked %d times", i, b[i].asked);
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->nstreams, 1);
	cr_assert_eq(s->seq[0], 3);
	cr_assert_str_eq(s->state[0], "S3");
	/* the deltas after the checkpoint: `first` (4) and the three (5..7) */
	cr_assert_eq(s->ndeltas[0], 4);
	const char firsts[] = {'f', 'd', 'd', 'd'};
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(s->dseq[0][i], 4 + i);
		cr_assert_eq(s->dfirst[0][i], firsts[i]);
	}
	free(s);
	srv__store_close(st);
}

/* A stream that moved past the group's last op of it (a newer op was
 * queued meanwhile): the group takes the queue and asks the newer op, so
 * the state is written once, at the newest seq, in the same commit. */
static srv__store *ext_st;
static lazy_op ext[3];

static int moving_resolve(srv__store_op *op, bool final)
{
	lazy_op *l = (lazy_op *)op;
	if (l != &ext[1])
		return lazy_resolve(op, final);
	l->asked++;
	if (l->asked == 1) {
		/* a newer update merged and submitted meanwhile */
		ext[2].op.type = SRV__OP_CHECKPOINT;
		ext[2].op.stream = "s";
		ext[2].op.seq = op->seq + 1;
		ext[2].op.resolve = lazy_resolve;
		srv__store_submit(ext_st, &ext[2].op);
		return 1;
	}
	cr_assert(false, "asked again although covered");
	return -1;
}

Test(store, lazy_checkpoint_takes_the_newer_op, .init = mkdir_temp, .fini = rm_temp)
{
	srv__store *st = ext_st = open_store();
	create(st, "s", "0");
	uint64_t g0, o0, g1, o1;
	srv__store_stats(st, &g0, &o0);

	srv__store_op first = delta("s", 1, "f", NULL);
	memset(ext, 0, sizeof ext);
	srv__store_test_hold(st, true);
	srv__store_submit(st, &first);
	wait_held(st); /* the committer took `first` and holds */
	for (int i = 0; i < 2; i++) {
		ext[i].op.type = SRV__OP_CHECKPOINT;
		ext[i].op.stream = "s";
		ext[i].op.seq = 2 + i;
		ext[i].op.resolve = moving_resolve;
		srv__store_submit(st, &ext[i].op);
	}
	srv__store_test_hold(st, false);
	cr_assert_eq(srv__store_wait(st, &first), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(srv__store_wait(st, &ext[i].op), 0);
	cr_assert_eq(ext[0].asked, 0);
	cr_assert_eq(ext[1].asked, 1);
	cr_assert_eq(ext[2].asked, 1);
	srv__store_stats(st, &g1, &o1);
	cr_assert_eq(g1 - g0, 2, "first, then the three in one group: %llu groups",
	             (unsigned long long)(g1 - g0));
	cr_assert_eq(o1 - o0, 4);
	srv__store_close(st);

	st = open_store();
	seen *s = load(st);
	cr_assert_eq(s->seq[0], 4);
	cr_assert_str_eq(s->state[0], "S4");
	cr_assert_eq(s->ndeltas[0], 0);
	free(s);
	srv__store_close(st);
}

/* How much of `pat` (a run of one byte) the file at path holds: 1 when a
 * run of 256 of its bytes is there. */
static bool holds_run(const char *path, char pat)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	size_t run = 0;
	int c;
	while ((c = getc(f)) != EOF && run < 256)
		run = c == pat ? run + 1 : 0;
	fclose(f);
	return run >= 256;
}

/* A stream in a store of its own (dir/sub) with one 12 KB delta of `pat`
 * bytes (overflow pages), then `last`: a delete, a reset or a plain
 * checkpoint. Returns whether lossd.db still holds the delta's bytes once
 * the store is closed (the WAL copied into it). */
static bool left_on_disk(const char *sub, char pat, int last)
{
	enum { BIG = 12000 };
	char d[300], db[320];
	snprintf(d, sizeof d, "%s/%s", dir, sub);
	snprintf(db, sizeof db, "%s/lossd.db", d);
	char *big = malloc(BIG + 1);
	cr_assert_not_null(big);
	memset(big, pat, BIG);
	big[BIG] = 0;
	srv__store *st = NULL;
	char err[256] = "";
	cr_assert_eq(srv__store_open(&st, d, err, sizeof err), 0, "%s", err);
	create(st, "s", "0");
	srv__store_op op = delta("s", 1, big, NULL);
	op.key = "k";
	op.reply = big;
	run(st, &op);
	memset(&op, 0, sizeof op);
	op.type = last;
	op.stream = "s";
	op.seq = 2;
	op.data = "E";
	op.len = 1;
	op.clear_keys = pat == 'R';
	run(st, &op);
	srv__store_close(st);
	free(big);
	return holds_run(db, pat);
}

/* A delete and a reset zero the pages they free: the stream's data is not
 * left on the file's free pages. A checkpoint does not zero the deltas it
 * replaces (their data is in the state it writes; zeroing wrote each twice):
 * the control, which shows the test sees data left on free pages. */
Test(store, deleted_data_is_wiped, .init = mkdir_temp, .fini = rm_temp)
{
	cr_assert_not(left_on_disk("del", 'D', SRV__OP_DELETE), "a deleted stream's delta");
	cr_assert_not(left_on_disk("reset", 'R', SRV__OP_CHECKPOINT), "a reset stream's delta");
	cr_assert(left_on_disk("ckpt", 'C', SRV__OP_CHECKPOINT),
	          "a replaced delta's pages were zeroed: the test cannot tell");
}
