/*
 * streams.c - the stream handlers (docs/API.md section 4): a table of streams
 * in memory, each the replay of what the store (store.c) holds on disk.
 *
 * Design. Every stream is loaded at open (checkpoint + deltas replayed) and
 * lives in a table sorted by id. The load runs on a loader thread per core
 * (srv__store_load_all), each delta decoded straight into its stream
 * (eng_stream_merge_bytes): a big store's start is bound by decoding.
 * The heads, read first, say how many deltas each stream replays, so an
 * exact stream's rows are grown once at its first delta (on_delta).
 * A write (create, update, merge, reset, delete) goes:
 *   1. decode the body into an engine delta (no lock: JSON and validation
 *      run in parallel on every worker);
 *   2. under the stream's mutex: the idempotency check, eng_stream_merge
 *      (all or nothing), seq + 1, and srv__store_submit of an op carrying
 *      the delta's bytes (or, once the deltas since the last checkpoint
 *      weigh twice the state, the whole state as a checkpoint; with ops
 *      of the stream in flight, the op is "lazy": its bytes, the delta's
 *      or for a hot stream the state's, are made by the committer when it
 *      writes the group and only if no later op covers it, resolve_lazy)
 *      together with the idempotency key and the reply;
 *   3. without the mutex, once the group commit has written the group that
 *      holds the op (one transaction, one fsync for many updates of many
 *      streams): the stream's bookkeeping (write_end), then the 2xx. An
 *      update does not wait for it: its handler returns after the submit
 *      (request.h's `deferred`), and the store's committer runs step 3
 *      for every op of the group and sends their replies (on_committed),
 *      so the store thread takes the next request at once and a group of
 *      n updates is not n sleeps and wake-ups. Other writes, and every
 *      write on a shared store, wait in srv__store_wait and run step 3
 *      themselves. Either way the state step 3 needs lives in a
 *      pending_write, and the deferred one owns the request's decoded
 *      update and its reference to the stream until its reply is out.
 * So a 2xx always follows the durable commit, many updates of one stream
 * share a commit (the mutex is held for the merge only, not for the
 * fsync), and ops of one stream reach the queue in the order they were
 * applied, which is the order the store replays them.
 *
 * Idempotency. The key is the body's batch_id, else the Idempotency-Key
 * header; it is scoped to the stream. Under the stream's mutex an update
 * first looks at the keys of its in-flight ops (a retry racing the
 * original waits for it) and then in the store (every committed key): a
 * hit returns the first reply and applies nothing. The key row is written
 * in the same transaction as the delta, so after a crash either both are
 * there or neither, and a retry after a restart is answered, not applied.
 * The record keeps the SHA-256 of the decoded delta beside the reply: a
 * key reused with other data is 409 idempotency_conflict, never a silent
 * drop of the new data (record_new / record_reply; a record written before
 * digests existed matches any body).
 * A merge also records its state's state_id (SHA-256 of the exporting
 * stream's id and the state's bytes; GET /state hands it out) as the key
 * "state:<id>" in the same transaction: merging that state again answers
 * "applied": false and adds nothing, also after a restart.
 * A reset forgets a stream's keys and state_ids (a new accumulation starts).
 *
 * Reads see committed state only: never half an update, never an update
 * whose commit is in flight (it may still fail) and never one the disk
 * refused. A read of a stream with ops in flight waits for them
 * (wait_committed), and meanwhile holds new writes of that stream back
 * (`readers`), so the wait is at most the commit in progress and its
 * successor. The moment an op fails, the store marks its stream stale
 * before the op's waiter wakes, and a stale stream answers every read and
 * write with 503 store_unavailable until the healer has reloaded it from
 * disk. A stalled store, or a wait past a second, makes such a read 503
 * store_unavailable (Retry-After) rather than hold a worker. The listing
 * does not wait: it shows each stream's counts less what its in-flight ops
 * added (`pend_updates`, `pend_rows`) and leaves out streams whose create
 * is in flight (`unborn`). (Shared stores: memory moves only by what the
 * store committed, so nothing waits. A replica folds the store's deltas
 * in seq order, its own updates among them from the decoded deltas it kept
 * at their commit (own_put), so each is decoded once per replica that did
 * not write it; an update is checked against the cache with
 * eng_stream_merge_check, no copy.)
 *
 * Healing. A failed commit (disk full, I/O error) breaks the store
 * (store.c): writes get 503 store_unavailable with Retry-After and
 * /readyz is 503. The healer thread wakes every 500 ms: while the store is
 * broken it asks srv__store_heal for a probe commit, and it reloads every
 * stale stream that has no op in flight (`inflight`) from disk, the truth
 * (a stream the disk lacks, a refused create, leaves the table; a refused
 * delete puts the stream back, stale). Reads of a stale stream resume as
 * soon as the disk can be read; writes resume once a probe commits. No
 * restart is needed.
 *
 * Stalls. A disk that blocks instead of failing (frozen, dying) makes
 * writes wait: they run on the store's own threads (loop.c, SRV_STORE
 * routes), never on the workers /v1/loss, /v1/auc and stream reads use,
 * and no lock a reader takes is held across disk I/O (the idempotency
 * lookup runs with the key claimed but s->mu released). A disk operation
 * running longer than --store-stall-s makes the store unwritable, so
 * /readyz is 503 and new writes are refused at once instead of queueing.
 *
 * Quarantine. Loading is never all or nothing: a stream whose config,
 * checkpoint or any delta does not read back, one of whose text rows (its
 * owner and config, an idempotency record, a checkpoint record, its
 * metadata) fails its checksum (store.c passes NULL text; an idempotency
 * lookup's -2 makes the stream stale, and the healer's reload finds the
 * same), whose deltas do not follow
 * each other seq by seq from its checkpoint (a gap, or a delta at or below
 * it: rows lost or keys damaged), or whose deltas have no stream row, is
 * kept in the table as `damaged` with no state: every route answers 503
 * stream_damaged (problem+json) but its owner's DELETE, it is left out of
 * the listing, an error log line names it with its principal and the
 * reason, and /metrics counts it (lossd_streams_damaged). Every other
 * stream is served. Nothing on disk is changed, so a repaired database
 * (or a fixed reader) serves the stream again after a restart.
 *
 * Invariants:
 * - A stream's state == its checkpoint merged with its deltas in seq order
 *   (store.c), because every op is submitted under the stream's mutex
 *   right after the merge it records.
 * - A stream is removed from the table before its DELETE op is submitted
 *   and `deleted` is set under its mutex, so no op follows a DELETE.
 * - A stream whose op failed is stale until resync() reloads it from disk;
 *   a stale stream takes no new op, so the reload races no write.
 *
 * Lock order: table `mu` -> a stream's `mu` -> the store's locks. Waiting
 * on the store happens with no lock held; a stream's `cv` is waited on
 * with its own mutex only.
 *
 * Ownership: a stream belongs to the principal that created it ("" when
 * auth is off); another principal gets the same 404 unknown_stream as for
 * a missing id. An admin token (request.h) reads every principal's
 * streams: the list and a reading then carry each stream's "principal",
 * and the list takes principal= (a filter on the owner, for everyone). Limits: max_streams per principal (507 too_many_streams),
 * max_bytes per stream (507 stream_memory_exceeded).
 *
 * Stream ids are 32 random hex digits (getrandom); a name is only a label.
 * A thread blocked in srv__store_wait is idle; writes run on the store's
 * threads (loop.c: one per admitted write; an update's is free again once
 * it submitted), so a commit gathers every write applied while the one
 * before it ran.
 *
 * The table is an object, srv__streams: the server makes one at startup
 * (server.c) and hands it to every handler in its srv_request
 * (req->streams); a stream points back at its table. Nothing in this file
 * is static and mutable, so a test (or a second server in one process)
 * opens tables of its own.
 *
 * Not here: HTTP (the router validated the id), JSON shapes and query
 * strings (api/src/stream_reply.c, api/src/query.c: this file hands them
 * plain values and gets plain values back).
 */
#include "streams.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "grow.h"
#include "history.h"
#include "router.h"
#include "lossd/api_history.h"
#include "lossd/api_meta.h"
#include "lossd/api_query.h"
#include "lossd/api_stream.h"
#include "lossd/api_stream_reply.h"
#include "lossd/dynbuf.h"
#include "lossd/history.h"
#include "log.h"
#include "loop.h"
#include "lossd/stream.h"
#include "store.h"
#include "thread.h"

/* Checkpoint once the deltas since the last one weigh this much and twice
 * the state: disk writes stay within 1.5x the deltas' bytes and a replay
 * reads at most ~3x the state. An exact stream's state is its deltas, so it
 * (rightly) never qualifies: rewriting it would only cost time and memory. */
#define CKPT_MIN_BYTES ((size_t)256 << 10)
/* A small state (a binned stream's, a sketch's of few distinct scores, a
 * loss's) is written in place of an update's delta whenever it weighs at
 * most twice the deltas since the last checkpoint, this one's included,
 * and those weigh a page or more (below, they share their pages and cost
 * less than the state would): writing it costs about what the delta
 * would, and the deltas it replaces are then one or two rows that were
 * just written. Deltas left to pile up between checkpoints of many
 * streams interleave in the table, so each checkpoint's delete rewrote
 * dozens of pages (32 streams, base64 updates of 1,000 scores: 35 WAL
 * pages a commit of 14 updates, 9 of them leaves of the deltas). */
#define CKPT_SMALL_BYTES ((size_t)64 << 10)
#define CKPT_SMALL_FROM  ((size_t)4 << 10)
/* Shared stores: an update checks its batch against the cache as synced at
 * most this long ago (the store decides seq and keys; the check is the
 * memory cap and finite sums), so a busy stream's updates do not each wait
 * for a round trip under the stream's mutex. Reads always sync. */
#define SYNC_EVERY_MS   20
#define OWN_MAX         64
#define OWN_MAX_BYTES   ((size_t)4 << 20)
#define OWN_TOTAL_BYTES ((size_t)32 << 20)

/* Shared stores: one of this replica's committed updates, kept for the
 * fold (stream.own). */
typedef struct own_delta {
	int64_t seq;
	eng_stream *d;
	size_t mem, len; /* its memory, and its bytes' length as stored */
	struct own_delta *next;
} own_delta;

typedef struct pending_key {
	const char *key; /* borrowed from the waiting handler */
	struct pending_key *next;
} pending_key;

typedef struct stream {
	srv__streams *ss; /* the table it belongs to (borrowed) */
	char id[129];
	char *owner;           /* "" when anonymous */
	api_stream_spec *spec; /* immutable */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* an in-flight op finished */
	/* under mu: */
	eng_stream *st;
	int64_t seq;                     /* seq of the last op applied */
	int64_t replay_left;             /* loading: deltas to replay after the checkpoint */
	size_t delta_bytes;              /* delta bytes submitted since the last checkpoint */
	size_t state_blen;               /* the state last serialized, bytes (0: not yet) */
	atomic_size_t last_blen;         /* the last delta serialized, bytes (apply's `hot`) */
	atomic_bool lazy_hint;           /* the last update had ops in flight: so will this one */
	atomic_bool small_hint;          /* the last one wrote the small state (CKPT_SMALL_BYTES) */
	unsigned small_run;              /* small states written without the delta's bytes */
	pending_key *keys;               /* keys of in-flight ops (and of key lookups) */
	srv__ckpts ckpts;                /* checkpoint records (docs/API.md section 7) */
	int inflight;                    /* ops submitted whose outcome write_end has not seen */
	int readers;                     /* reads waiting for inflight == 0 (see wait_committed) */
	int64_t pend_updates, pend_rows; /* what in-flight ops changed the counts by */
	bool unborn;                     /* its create is in flight */
	api_meta meta;                   /* tags, ttl_s, created/updated (section 8) */
	bool deleted;
	/* Set at load (or by resync(), holding the table's mu and mu): the
	 * stored state could not be read (st, and spec maybe, NULL); every
	 * route answers 503 stream_damaged but the owner's DELETE. */
	char *damaged;
	bool owner_unknown; /* only deltas were found: whose they are is lost */
	/* shared stores only (PostgreSQL), under mu: */
	bool reload;         /* memory is not the store's prefix at seq: read it whole */
	size_t folded_bytes; /* delta bytes folded in since the last checkpoint */
	int64_t synced_ms;   /* when sync_stream last succeeded */
	/* The memory of this replica's updates that the cache may not hold
	 * yet: in flight, or committed since the last sync. Near the memory
	 * cap an update syncs first, whatever SYNC_EVERY_MS says, so that the
	 * cap holds exactly for one replica's sequential updates. */
	size_t inflight_mem, unsynced_mem;
	/* This replica's committed updates not folded in yet, by seq
	 * (own_put): a sync folds them from here, neither read back from the
	 * store nor decoded again. At most OWN_MAX of them, OWN_MAX_BYTES. */
	struct own_delta *own;
	size_t own_n, own_mem;
	/* SQLite: true from a failed op until resync() reloads the stream from
	 * disk; set by the store (srv__store_op.stale), read and cleared under
	 * mu */
	atomic_bool stale;
	/* under the table's mu: */
	int refs;
} stream;

/* A state of `len` bytes was written (or is about to be) as s's
 * checkpoint: no delta since, and its size for apply's small-state rule.
 * Under s->mu. */
static void checkpointed(stream *s, size_t len)
{
	s->delta_bytes = 0;
	s->state_blen = len;
}

struct srv__streams {
	pthread_mutex_t mu;
	stream **v; /* sorted by id */
	size_t n, cap;
	srv__store *store;
	char store_url[1024], store_pwfile[1024];
	srv__store_opts store_opts;
	srv__streams_limits lim;
	bool open;
	/* the healer thread (see heal_main); stop under hmu */
	pthread_t healer;
	bool healer_started, stop;
	pthread_mutex_t hmu;
	pthread_cond_t hcv;
	uint64_t expired; /* streams deleted by ttl_s */
	/* the expiry thread (ttl_s): wakes every second until `stop` */
	pthread_t reaper;
	bool reaper_on, reaper_stop;
	pthread_cond_t reaper_cv;
	/* updates and merges applied and committed since open (/metrics) */
	atomic_uint_fast64_t updates_committed;
	/* shared stores: what every stream's kept own deltas weigh (own_put),
	 * at most OWN_TOTAL_BYTES, so idle streams cannot hold much */
	atomic_size_t own_mem;
};

/* Shared stores: drops the first of s's own deltas (own_put) and gives
 * its weight back. s's mu held, or s unreachable. */
static void own_pop(stream *s)
{
	own_delta *o = s->own;
	s->own = o->next;
	s->own_n--;
	s->own_mem -= o->mem;
	atomic_fetch_sub(&s->ss->own_mem, o->mem);
	eng_stream_free(o->d);
	free(o);
}

static api_stream_limits api_limits(srv__streams *ss)
{
	api_stream_limits l = {ss->lim.max_bytes, ss->lim.sketch_bytes};
	return l;
}

/* ---- the table --------------------------------------------------------------- */

static void stream_free(stream *s)
{
	if (!s)
		return;
	eng_stream_free(s->st);
	while (s->own)
		own_pop(s);
	srv__ckpts_clear(&s->ckpts);
	api_meta_clear(&s->meta);
	api_stream_spec_free(s->spec);
	free(s->owner);
	free(s->damaged);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static stream *stream_alloc(srv__streams *ss, const char *id, const char *owner)
{
	stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->ss = ss;
	snprintf(s->id, sizeof s->id, "%s", id);
	/* a stream stored before metadata existed reads as created at load */
	s->meta.created_ms = s->meta.updated_ms = srv__now_ms();
	s->owner = strdup(owner ? owner : "");
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	if (!s->owner) {
		stream_free(s);
		return NULL;
	}
	return s;
}

/* Index of id in the table, or -(insertion point) - 1. Table mu held. */
static long find(srv__streams *ss, const char *id)
{
	size_t lo = 0, hi = ss->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(ss->v[mid]->id, id);
		if (c == 0)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

/* Why a stream could not be added (create), each value answered with its
 * own status below. */
typedef enum stream_err {
	STREAM_OK = 0,
	STREAM_ETOO_MANY = -1, /* 507 too_many_streams */
	STREAM_ENOMEM = -2,    /* 503 out_of_memory */
	STREAM_ESTORE = -3,    /* 503 store_unavailable */
} stream_err;

/* Table mu held. */
static int insert_at(srv__streams *ss, size_t at, stream *s)
{
	stream **nv = srv__grow(ss->v, &ss->cap, ss->n, sizeof(*nv), 64);
	if (!nv)
		return -1;
	ss->v = nv;
	memmove(ss->v + at + 1, ss->v + at, (ss->n - at) * sizeof(*ss->v));
	ss->v[at] = s;
	ss->n++;
	return 0;
}

static const char *who(const srv_request *req)
{
	return req->principal ? req->principal : "";
}

static void stream_damaged(api_reply *out, const char *id)
{
	api_reply_error(out, 503, "stream_damaged",
	                "the stored state of stream %s cannot be read; it is not served until "
	                "an operator repairs or deletes it (see the server's log)",
	                id);
}

static void store_unavailable(srv__streams *ss, api_reply *out);
static int load_one(srv__streams *ss, const char *id);

/* The stream req->id owned by req's principal, with a reference; NULL (and
 * the 404, 503 stream_damaged, or 503 store_unavailable when a shared store
 * cannot be read) otherwise. */
static stream *acquire(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	stream *s = NULL;
	bool loaded = false;
again:
	pthread_mutex_lock(&ss->mu);
	long i = ss->open && req->id ? find(ss, req->id) : -1;
	bool damaged = false;
	if (i >= 0 &&
	    (ss->v[i]->owner_unknown || req->admin || strcmp(ss->v[i]->owner, who(req)) == 0)) {
		s = ss->v[i];
		if (s->damaged) {
			damaged = true;
			s = NULL;
		} else {
			s->refs++;
		}
	}
	bool shared = ss->open && srv__store_shared(ss->store);
	pthread_mutex_unlock(&ss->mu);
	if (damaged) {
		stream_damaged(out, req->id);
		return NULL;
	}
	if (!s && i < 0 && shared && req->id && !loaded) {
		/* Created on another replica: read it from the store. */
		loaded = true;
		if (load_one(ss, req->id) < 0) {
			store_unavailable(ss, out);
			return NULL;
		}
		goto again;
	}
	if (!s)
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s",
		                req->id ? req->id : "(none)");
	return s;
}

static void release(stream *s)
{
	srv__streams *ss = s->ss;
	pthread_mutex_lock(&ss->mu);
	bool last = --s->refs == 0 && s->deleted;
	pthread_mutex_unlock(&ss->mu);
	if (last)
		stream_free(s);
}

/* ---- open / close ------------------------------------------------------------------ */

/* A stream's last committed seq (its head), read before the start-up load. */
typedef struct head_rec {
	char *id;
	int64_t seq;
} head_rec;

typedef struct load_ctx {
	srv__streams *ss;
	atomic_int failed; /* set by any loader thread (srv__store_load_all) */
	bool lazy;         /* load_one: a stream already in the table is not an error */
	stream *held;      /* load_one: the stream read, its mu held until its last delta */
	/* start-up: the heads, sorted by id, read once: a stream knows how
	 * many deltas it is about to replay (on_delta), and after the load
	 * each is checked against the rows read (check_heads) */
	head_rec *heads;
	size_t nheads, heads_cap;
} load_ctx;

static int head_cmp(const void *a, const void *b)
{
	return strcmp(((const head_rec *)a)->id, ((const head_rec *)b)->id);
}

/* The head of stream id read before the load, or INT64_MIN. */
static int64_t head_after(const load_ctx *lc, const char *id)
{
	head_rec key = {(char *)id, 0};
	const head_rec *h =
	        lc->nheads ? bsearch(&key, lc->heads, lc->nheads, sizeof(key), head_cmp) : NULL;
	return h ? h->seq : INT64_MIN;
}

static int collect_head(void *arg, const char *id, int64_t seq)
{
	load_ctx *lc = arg;
	head_rec *v = srv__grow(lc->heads, &lc->heads_cap, lc->nheads, sizeof(*v), 1024);
	if (!v)
		return -1;
	lc->heads = v;
	head_rec *h = &v[lc->nheads];
	if (!(h->id = strdup(id)))
		return -1;
	h->seq = seq;
	lc->nheads++;
	return 0;
}

/* Reads the heads into lc, sorted for head_after. 0 or -1. */
static int read_heads(load_ctx *lc)
{
	if (srv__store_heads(lc->ss->store, collect_head, lc))
		return -1;
	if (lc->nheads)
		qsort(lc->heads, lc->nheads, sizeof(*lc->heads), head_cmp);
	return 0;
}

static void heads_free(load_ctx *lc)
{
	for (size_t i = 0; i < lc->nheads; i++)
		free(lc->heads[i].id);
	free(lc->heads);
	lc->heads = NULL;
	lc->nheads = lc->heads_cap = 0;
}

/* Marks s (being loaded) damaged: its state is dropped, every route but
 * the owner's DELETE answers 503 stream_damaged, and an error line says
 * why. Loading goes on with the other streams. */
static void quarantine(stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void quarantine(stream *s, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (s->damaged)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	s->damaged = strdup(why);
	if (!s->damaged)
		s->damaged = strdup("out of memory");
	eng_stream_free(s->st);
	s->st = NULL;
	srv__log_field f[] = {{"stream", s->id},
	                      {"principal", s->owner_unknown ? "?" : s->owner},
	                      {"reason", why}};
	srv__log_fields(SRV_LOG_ERROR, f, 3,
	                "stream damaged on disk: quarantined (503 stream_damaged)");
}

static void *on_stream(void *arg, const char *id, const char *owner, const char *config,
                       const void *state, size_t len, int64_t seq)
{
	load_ctx *lc = arg;
	srv__streams *ss = lc->ss;
	api_problem p;
	eng_error err;
	api_stream_limits lim = api_limits(ss);
	stream *s = stream_alloc(ss, id, owner);
	if (!s)
		goto fail;
	s->seq = seq;
	int64_t head = head_after(lc, id);
	s->replay_left = head > seq ? head - seq : 0;
	if (!config) {
		/* store.c: a text row of it fails its checksum. The owner read
		 * back may be wrong: any principal gets 503, none a 404. */
		s->owner_unknown = true;
		quarantine(s, "its stream row (owner, config) or an idempotency record fails its "
		              "checksum");
	} else if (api_stream_spec_load(&s->spec, config, &lim, &p))
		quarantine(s, "bad stored config: %s", p.detail);
	/* Uncapped while replaying (the cap may have shrunk since): the disk
	 * holds only what was accepted. srv__streams_open sets the cap after. */
	else if (eng_stream_deserialize(&s->st, state, len, SIZE_MAX, &err))
		quarantine(s, "bad stored state at seq %lld: %s", (long long)seq, err.msg);
	s->state_blen = len;
	/* (lazily loaded, a shared store's cache stays uncapped: it folds
	 * what was committed; check_shared applies the cap to updates) */
	if (s->st)
		eng_stream_set_history_max(s->st, ss->lim.history_points);
	/* Lazily loaded, s is in the table before its deltas are: its mu is
	 * held until load_one has them all, so no request syncs or reads it
	 * half folded. (Its own mu, then the table's: no one can wait for s
	 * before it is in the table.) */
	if (lc->lazy)
		pthread_mutex_lock(&s->mu);
	pthread_mutex_lock(&ss->mu);
	long at = find(ss, id);
	int rc = at >= 0 ? (lc->lazy ? 1 : -1) : insert_at(ss, (size_t)(-at - 1), s);
	pthread_mutex_unlock(&ss->mu);
	if (lc->lazy && rc == 0)
		lc->held = s;
	else if (lc->lazy)
		pthread_mutex_unlock(&s->mu);
	if (rc == 1) { /* another request loaded it meanwhile */
		stream_free(s);
		return NULL;
	}
	if (rc)
		goto fail;
	return s;
fail:
	lc->failed = 1;
	stream_free(s);
	return NULL;
}

/* Deltas come in seq order, each right after the last: a gap, or a delta
 * at or below the checkpoint (which deleted those), means rows were lost
 * or keys damaged, and replaying around them would serve wrong data. */
static int on_delta(void *arg, void *handle, int64_t seq, const void *data, size_t len)
{
	stream *s = handle;
	eng_error err;
	(void)arg;
	if (s->damaged)
		return 0;
	if (seq != s->seq + 1) {
		quarantine(s, "delta %lld follows %lld: deltas are missing or misplaced",
		           (long long)seq, (long long)s->seq);
		return 0;
	}
	/* Replays ignore the cap: the disk holds only what was accepted (the
	 * stream's is set after the load). Decoded into the stream in place. */
	int64_t left = s->replay_left;
	eng_stream_counts c0 = {0, 0}, c1;
	s->replay_left = 0;
	if (left > 1)
		eng_stream_counts_of(&c0, s->st);
	if (eng_stream_merge_bytes(s->st, data, len, &err)) {
		quarantine(s, "cannot replay delta %lld: %s", (long long)seq, err.msg);
		return 0;
	}
	s->seq = seq;
	if (left <= 1)
		return 0;
	/* The first of several: an exact stream's arrays grown once, for as
	 * many more deltas of this one's rows (a worker's batches are of one
	 * size), up to the memory cap; check_heads gives back any room unused.
	 * Growing by doublings copied every row about once more (5% of the
	 * start's CPU with 10^6 deltas). */
	eng_stream_counts_of(&c1, s->st);
	int64_t per = c1.rows - c0.rows;
	if (per > 0 && left - 1 <= (INT64_MAX - c1.rows) / per)
		(void)eng_stream_reserve(s->st, c1.rows + (left - 1) * per, s->ss->lim.max_bytes);
	return 0;
}

/* Deltas whose stream row is gone: the stream is damaged, whoever owned it. */
static int on_orphan(void *arg, const char *id)
{
	load_ctx *lc = arg;
	srv__streams *ss = lc->ss;
	pthread_mutex_lock(&ss->mu);
	long at = find(ss, id);
	pthread_mutex_unlock(&ss->mu);
	if (at >= 0)
		return 0;
	stream *s = stream_alloc(ss, id, "");
	if (!s) {
		lc->failed = 1;
		return -1;
	}
	s->owner_unknown = true;
	quarantine(s, "rows (deltas or its last seq) without their stream row");
	pthread_mutex_lock(&ss->mu);
	at = find(ss, id);
	int rc = at >= 0 ? -1 : insert_at(ss, (size_t)(-at - 1), s);
	pthread_mutex_unlock(&ss->mu);
	if (rc) {
		stream_free(s);
		if (at < 0) {
			lc->failed = 1;
			return -1;
		}
	}
	return 0;
}

/* Reads stream id from a shared store into the table (unless another
 * request did meanwhile). Returns 0 (also when there is no such stream)
 * or -1 when the store cannot be read. */
static int load_one(srv__streams *ss, const char *id)
{
	load_ctx lc = {.ss = ss, .lazy = true};
	int r = srv__store_load(ss->store, id, on_stream, on_delta, &lc);
	if (lc.held)
		pthread_mutex_unlock(&lc.held->mu);
	if (r == 0)
		return 0;
	pthread_mutex_lock(&ss->mu);
	bool there = find(ss, id) >= 0;
	pthread_mutex_unlock(&ss->mu);
	return there && !lc.failed ? 0 : -1;
}

/* srv__store_sync's on_state: the stored checkpoint replaces the cache. */
static void *on_state(void *arg, const char *id, const char *owner, const char *config,
                      const void *state, size_t len, int64_t seq)
{
	stream *s = arg;
	srv__streams *ss = s->ss;
	eng_stream *n = NULL;
	eng_error err;
	(void)owner;
	(void)config;
	if (eng_stream_deserialize(&n, state, len, SIZE_MAX, &err)) {
		srv_log(SRV_LOG_ERROR, NULL, "stream %s: bad stored state: %s", id, err.msg);
		return NULL;
	}
	eng_stream_set_max_bytes(n, SIZE_MAX); /* a cache folds what was committed */
	eng_stream_set_history_max(n, ss->lim.history_points);
	eng_stream_free(s->st);
	s->st = n;
	s->seq = seq;
	checkpointed(s, len);
	s->folded_bytes = 0;
	return s;
}

/* srv__store_sync's on_delta: unlike a load's, a delta that does not
 * follow or does not merge fails the sync (memory is then read whole on
 * the next try) instead of quarantining a stream that is being served. */
static int on_sync_delta(void *arg, void *handle, int64_t seq, const void *data, size_t len)
{
	stream *s = handle;
	eng_stream *d = NULL;
	eng_error err;
	(void)arg;
	if (seq != s->seq + 1)
		return -1;
	if (!data) {
		/* one of this replica's own (srv__store_sync's have) */
		own_delta *o = s->own;
		if (!o || o->seq != seq || eng_stream_merge(s->st, o->d, &err))
			return -1;
		len = o->len;
		own_pop(s);
	} else {
		if (eng_stream_deserialize(&d, data, len, SIZE_MAX, &err))
			return -1;
		int rc = eng_stream_merge(s->st, d, &err);
		eng_stream_free(d);
		if (rc)
			return -1;
	}
	s->seq = seq;
	s->folded_bytes += len;
	return 0;
}

/* Shared stores: drops s's own deltas at or below seq (folded, or covered
 * by a checkpoint read whole). s's mu held. */
static void own_drop_upto(stream *s, int64_t seq)
{
	while (s->own && s->own->seq <= seq)
		own_pop(s);
}

/* Shared stores: keeps d, this replica's update committed at seq (len
 * bytes stored), for the next sync to fold. True when kept (d is then
 * s's); false when the cache is past seq, or s's list or the replica's
 * (OWN_TOTAL_BYTES over every stream) is full. s's mu held. */
static bool own_put(stream *s, int64_t seq, eng_stream *d, size_t mem, size_t len)
{
	srv__streams *ss = s->ss;
	if (seq <= s->seq || s->reload || s->own_n >= OWN_MAX || s->own_mem + mem > OWN_MAX_BYTES)
		return false;
	/* commits of one group end in any order: keep the list sorted */
	own_delta **at = &s->own;
	while (*at && (*at)->seq < seq)
		at = &(*at)->next;
	if (*at && (*at)->seq == seq)
		return false;
	if (atomic_fetch_add(&ss->own_mem, mem) + mem > OWN_TOTAL_BYTES) {
		atomic_fetch_sub(&ss->own_mem, mem);
		return false;
	}
	own_delta *o = malloc(sizeof *o);
	if (!o) {
		atomic_fetch_sub(&ss->own_mem, mem);
		return false;
	}
	*o = (own_delta){seq, d, mem, len, *at};
	*at = o;
	s->own_n++;
	s->own_mem += mem;
	return true;
}

/*
 * Shared stores: would delta merge into the stream (finite sums, the
 * memory cap)? The cache itself is left alone (it changes only by folding
 * the store's deltas in seq order), so this is the merge's own check
 * (eng_stream_merge_check) at the cap, no copy: cloning the state was a
 * serialize and a deserialize of it per update, as much CPU as folding.
 * The cap is the merge's: an exact stream's rows. 0 or an engine error in
 * *err.
 */
static int check_shared(const stream *s, const eng_stream *delta, eng_error *err)
{
	memset(err, 0, sizeof(*err));
	return eng_stream_merge_check(s->st, delta, s->ss->lim.max_bytes, err);
}

/*
 * Shared stores: brings s's memory up to the store's latest seq (its mu
 * held, none of this replica's ops of it in flight). Returns 0, 1 when the
 * stream is gone (s->deleted is then set: call forget), -1 when the store
 * cannot be read (s->reload is then set).
 */
static int sync_stream(stream *s)
{
	srv__streams *ss = s->ss;
	if (srv__store_broken(ss->store))
		return -1;
	int64_t have[OWN_MAX];
	size_t nhave = 0;
	own_drop_upto(s, s->seq);
	for (own_delta *o = s->own; o && !s->reload && nhave < OWN_MAX; o = o->next)
		have[nhave++] = o->seq;
	int r = srv__store_sync(ss->store, s->id, s->reload ? -1 : s->seq, have, nhave, s, on_state,
	                        on_sync_delta, s);
	own_drop_upto(s, s->seq);
	if (r == 1) {
		s->reload = false;
		s->synced_ms = srv__now_ms();
		s->unsynced_mem = 0;
		/* Memory is now exactly the store's state at seq: once the deltas
		 * folded in since the stored checkpoint outweigh it, store it as
		 * the checkpoint, so that neither a replica's reload nor the
		 * deltas table grows without bound. (A full reload folds with
		 * on_delta and counts from zero.) */
		size_t mem = eng_stream_memory(s->st);
		void *state = NULL;
		size_t slen = 0;
		if (s->folded_bytes >= CKPT_MIN_BYTES && s->folded_bytes / 2 >= mem &&
		    eng_stream_serialize(&state, &slen, s->st) == 0) {
			if (srv__store_put_checkpoint(ss->store, s->id, s->seq, state, slen) == 0)
				s->folded_bytes = 0;
			free(state);
		}
		return 0;
	}
	if (r == 0) {
		s->deleted = true;
		pthread_cond_broadcast(&s->cv);
		return 1;
	}
	s->reload = true;
	return -1;
}

/* srv__store_meta_of's callback: the stored metadata replaces s's. */
static int on_own_meta(void *arg, const char *id, const char *meta, int64_t updated_ms)
{
	stream *s = arg;
	api_meta m;
	(void)id;
	if (api_meta_load(&m, meta))
		return 0; /* unreadable: keep what memory has */
	if (!m.created_ms)
		m.created_ms = s->meta.created_ms;
	/* the store keeps the latest of every replica's (no op of ours is in
	 * flight: the caller waited) */
	m.updated_ms = updated_ms ? updated_ms : m.created_ms;
	api_meta_clear(&s->meta);
	s->meta = m;
	return 0;
}

/* Shared stores: s's tags, ttl_s and times as the store holds them (any
 * replica may have changed them). s's mu held. 0, or -1 when the store
 * cannot be read. */
static int refresh_meta(stream *s)
{
	srv__streams *ss = s->ss;
	if (!srv__store_shared(ss->store))
		return 0;
	return srv__store_meta_of(ss->store, s->id, on_own_meta, s) ? -1 : 0;
}

/* Shared stores, before a read: waits for this replica's writes of s to
 * finish, then syncs. Returns as sync_stream (0 at once for SQLite).
 * s's mu held. */
static int refresh_for_read(stream *s)
{
	srv__streams *ss = s->ss;
	if (!srv__store_shared(ss->store))
		return 0;
	if (s->deleted)
		return 1;
	int r = sync_stream(s);
	return r == 0 && refresh_meta(s) ? -1 : r;
}

/* srv__store_ckpts_of's callback: one record into the stream's list. */
static int on_own_ckpt(void *arg, const char *id, int64_t n, int64_t step, const char *body)
{
	stream *s = arg;
	char *text = strdup(body);
	int64_t keep;
	(void)id;
	if (!text || srv__ckpts_reserve(&s->ckpts)) {
		free(text);
		return -1;
	}
	(void)srv__ckpts_add(&s->ckpts, step, n, text, SIZE_MAX, &keep);
	return 0;
}

/* Shared stores: s's checkpoint records as the store holds them, written
 * by any replica (s's mu held). 0, or -1 when the store cannot be read. */
static int refresh_ckpts(stream *s)
{
	srv__streams *ss = s->ss;
	if (!srv__store_shared(ss->store))
		return 0;
	srv__ckpts_clear(&s->ckpts);
	if (srv__store_ckpts_of(ss->store, s->id, on_own_ckpt, s) == 0)
		return 0;
	srv__ckpts_clear(&s->ckpts);
	return -1;
}

/* Takes s out of the table if it is still the entry of its id (under
 * ss->mu). */
static void table_drop(srv__streams *ss, stream *s)
{
	long i = find(ss, s->id);
	if (i >= 0 && ss->v[i] == s) {
		memmove(ss->v + i, ss->v + i + 1, (ss->n - (size_t)i - 1) * sizeof(*ss->v));
		ss->n--;
	}
}

/* Drops a stream that another replica deleted from the table (no lock
 * held; s->deleted set). */
static void forget(stream *s)
{
	srv__streams *ss = s->ss;
	pthread_mutex_lock(&ss->mu);
	table_drop(ss, s);
	pthread_mutex_unlock(&ss->mu);
}

/* A stored checkpoint record: into its stream's list (load, one thread). */
static int on_ckpt(void *arg, const char *id, int64_t n, int64_t step, const char *body)
{
	srv__streams *ss = ((load_ctx *)arg)->ss;
	long i = find(ss, id);
	if (i < 0)
		return 0; /* a record left by a stream since deleted */
	stream *s = ss->v[i];
	if (!body) { /* store.c: the record (n = -1: an idempotency record) fails its checksum */
		if (n < 0)
			quarantine(s, "an idempotency record fails its checksum");
		else
			quarantine(s, "checkpoint record %lld fails its checksum", (long long)n);
		return 0;
	}
	char *text = strdup(body);
	int64_t keep;
	if (!text || srv__ckpts_reserve(&s->ckpts)) {
		free(text);
		return -1;
	}
	(void)srv__ckpts_add(&s->ckpts, step, n, text, SIZE_MAX, &keep);
	return 0;
}

static int on_meta(void *arg, const char *id, const char *meta, int64_t updated_ms)
{
	srv__streams *ss = ((load_ctx *)arg)->ss;
	long i = find(ss, id);
	if (i < 0)
		return 0; /* a row left by a stream since deleted */
	stream *s = ss->v[i];
	api_meta m;
	if (!meta) { /* store.c: the row fails its checksum */
		quarantine(s, "its metadata row (tags, ttl_s, created_at, updated_at) fails its "
		              "checksum or is missing");
		return 0;
	}
	if (api_meta_load(&m, meta)) {
		srv_log(SRV_LOG_WARN, NULL, "stream %s: bad stored metadata (ignored)", id);
		return 0;
	}
	if (!m.created_ms)
		m.created_ms = s->meta.created_ms;
	m.updated_ms = updated_ms ? updated_ms : m.created_ms;
	api_meta_clear(&s->meta);
	s->meta = m;
	return 0;
}

/* After the load, each head read before it (read_heads): a stream's
 * deltas must reach its head exactly (a lost tail leaves no gap), and a
 * head without its stream means the row is gone. The room on_delta
 * reserved and did not use is given back. */
static int check_heads(load_ctx *lc)
{
	srv__streams *ss = lc->ss;
	for (size_t i = 0; i < lc->nheads; i++) {
		const head_rec *h = &lc->heads[i];
		pthread_mutex_lock(&ss->mu);
		long at = find(ss, h->id);
		stream *s = at >= 0 ? ss->v[at] : NULL;
		pthread_mutex_unlock(&ss->mu);
		if (!s) {
			if (on_orphan(lc, h->id))
				return -1;
			continue;
		}
		if (!s->damaged && s->seq != h->seq)
			quarantine(s, "its rows end at seq %lld but seq %lld was committed",
			           (long long)s->seq, (long long)h->seq);
		if (s->st)
			eng_stream_trim(s->st);
	}
	return 0;
}

srv__streams *srv__streams_new(void)
{
	srv__streams *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return NULL;
	pthread_mutex_init(&ss->mu, NULL);
	pthread_mutex_init(&ss->hmu, NULL);
	pthread_cond_init(&ss->hcv, NULL);
	pthread_cond_init(&ss->reaper_cv, NULL);
	srv__streams_limits lim = SRV__STREAMS_LIMITS_INIT;
	srv__store_opts so = SRV__STORE_OPTS_INIT;
	ss->lim = lim;
	ss->store_opts = so;
	snprintf(ss->store_url, sizeof ss->store_url, "sqlite");
	return ss;
}

void srv__streams_free(srv__streams *ss)
{
	if (!ss)
		return;
	srv__streams_close(ss);
	pthread_cond_destroy(&ss->reaper_cv);
	pthread_cond_destroy(&ss->hcv);
	pthread_mutex_destroy(&ss->hmu);
	pthread_mutex_destroy(&ss->mu);
	free(ss);
}

void srv__streams_set_limits(srv__streams *ss, const srv__streams_limits *lim)
{
	pthread_mutex_lock(&ss->mu);
	ss->lim = *lim;
	pthread_mutex_unlock(&ss->mu);
}

void srv__streams_set_store(srv__streams *ss, const char *url, int connections,
                            const char *password_file, int timeout_ms)
{
	snprintf(ss->store_url, sizeof ss->store_url, "%s", url && *url ? url : "sqlite");
	snprintf(ss->store_pwfile, sizeof ss->store_pwfile, "%s",
	         password_file ? password_file : "");
	ss->store_opts.connections = connections;
	ss->store_opts.password_file = ss->store_pwfile[0] ? ss->store_pwfile : NULL;
	ss->store_opts.timeout_ms = timeout_ms;
}

/* ---- healing ----------------------------------------------------------------------------- */

/* resync's context: the table, and the stream read back (or NULL). */
typedef struct rs_ctx {
	srv__streams *ss;
	stream *t;
} rs_ctx;

/* resync's on_stream: the stream as the disk has it, in a stream object
 * of its own (on_delta then replays into it). */
static void *rs_stream(void *arg, const char *id, const char *owner, const char *config,
                       const void *state, size_t len, int64_t seq)
{
	rs_ctx *rc = arg;
	eng_error err;
	stream *t = stream_alloc(rc->ss, id, owner);
	if (!t)
		return NULL;
	t->seq = seq;
	if (!config) /* as in on_stream */
		quarantine(t, "its stream row (owner, config) or an idempotency record fails its "
		              "checksum");
	else if (eng_stream_deserialize(&t->st, state, len, SIZE_MAX, &err))
		quarantine(t, "bad stored state at seq %lld: %s", (long long)seq, err.msg);
	t->state_blen = len;
	rc->t = t;
	return t;
}

/* Takes s (a reference held by the caller) out of the table. */
static void unlink_stream(stream *s)
{
	srv__streams *ss = s->ss;
	pthread_mutex_lock(&ss->mu);
	table_drop(ss, s);
	pthread_mutex_lock(&s->mu);
	s->deleted = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_unlock(&ss->mu);
}

/*
 * Makes a stale stream (one whose memory holds an op the disk refused)
 * what the disk says again: its state and seq reloaded, or, when the disk
 * has no such stream (its create was refused), out of the table. Only
 * once no op of it is in flight; a stale stream takes no new ops, so none
 * can start meanwhile. Leaves it stale when the disk cannot be read (the
 * next pass retries). Healer thread; the caller holds a reference.
 */
static void resync(stream *s)
{
	srv__streams *ss = s->ss;
	stream *t = NULL;

	pthread_mutex_lock(&s->mu);
	bool go = atomic_load(&s->stale) && s->inflight == 0 && !s->deleted;
	pthread_mutex_unlock(&s->mu);
	if (!go)
		return;
	rs_ctx rc = {ss, NULL};
	int lrc = srv__store_load(ss->store, s->id, rs_stream, on_delta, &rc);
	t = rc.t;
	if (lrc) {
		stream_free(t);
		return;
	}
	if (!t) {
		unlink_stream(s);
		srv_log(SRV_LOG_WARN, NULL, "stream %s: its create was not stored; removed", s->id);
		return;
	}
	pthread_mutex_lock(&ss->mu); /* acquire() reads `damaged` under it */
	pthread_mutex_lock(&s->mu);
	if (atomic_load(&s->stale) && s->inflight == 0 && !s->deleted) {
		/* what the disk holds, damage included (t quarantined) */
		eng_stream *old = s->st;
		s->st = t->st;
		t->st = old;
		char *dmg = s->damaged;
		s->damaged = t->damaged;
		t->damaged = dmg;
		if (s->st)
			eng_stream_set_max_bytes(s->st, ss->lim.max_bytes);
		s->seq = t->seq;
		checkpointed(s, t->state_blen);
		atomic_store(&s->stale, false);
	}
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_unlock(&ss->mu);
	stream_free(t);
}

/* One pass of the healer: a probe commit when the store is broken, then a
 * resync of every stale stream. */
static void heal_pass(srv__streams *ss)
{
	if (srv__store_broken(ss->store) && srv__store_heal(ss->store) == 0)
		srv_log(SRV_LOG_WARN, NULL,
		        "stream store: a commit succeeded again; writes resume");

	stream **v = NULL;
	size_t n = 0;
	pthread_mutex_lock(&ss->mu);
	for (size_t i = 0; i < ss->n; i++)
		n += atomic_load(&ss->v[i]->stale);
	if (n && (v = malloc(n * sizeof(*v)))) {
		n = 0;
		for (size_t i = 0; i < ss->n; i++)
			if (atomic_load(&ss->v[i]->stale)) {
				v[n++] = ss->v[i];
				ss->v[i]->refs++;
			}
	} else {
		n = 0;
	}
	pthread_mutex_unlock(&ss->mu);
	for (size_t i = 0; i < n; i++) {
		resync(v[i]);
		release(v[i]);
	}
	free(v);
}

/* The healer: a pass every HEAL_INTERVAL_MS, which costs a scan of the
 * table's flags while all is well. */
#define HEAL_INTERVAL_MS 500

static void *heal_main(void *arg)
{
	srv__streams *ss = arg;
	srv__thread_name("lossd-heal");
	pthread_mutex_lock(&ss->hmu);
	while (!ss->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)HEAL_INTERVAL_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&ss->hcv, &ss->hmu, &ts);
		if (ss->stop)
			break;
		pthread_mutex_unlock(&ss->hmu);
		heal_pass(ss);
		pthread_mutex_lock(&ss->hmu);
	}
	pthread_mutex_unlock(&ss->hmu);
	return NULL;
}

/* The expiry thread: srv__streams_expire once a second until close. */
static void *reaper_main(void *arg)
{
	srv__streams *ss = arg;
	srv__thread_name("lossd-reaper");
	pthread_mutex_lock(&ss->mu);
	while (!ss->reaper_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&ss->reaper_cv, &ss->mu, &ts);
		if (ss->reaper_stop)
			break;
		pthread_mutex_unlock(&ss->mu);
		(void)srv__streams_expire(ss, srv__now_ms());
		pthread_mutex_lock(&ss->mu);
	}
	pthread_mutex_unlock(&ss->mu);
	return NULL;
}

int srv__streams_open(srv__streams *ss, const char *data_dir)
{
	char err[512];
	load_ctx lc = {.ss = ss};

	ss->store_opts.data_dir = data_dir;
	/* SQLite's quick_check runs beside the loaders; nothing loaded is
	 * served, and no op taken, before it passed (check_wait below). */
	ss->store_opts.check_later = true;
	ss->store_opts.commit_delay_us = ss->lim.commit_delay_us;
	if (srv__store_open_url(&ss->store, ss->store_url, &ss->store_opts, err, sizeof err)) {
		srv_log(SRV_LOG_ERROR, NULL, "stream store: %s", err);
		return -1;
	}
	/* A shared store's streams are read when first asked for. */
	/* Streams decode on a loader thread per core: a big store's start is
	 * bound by decoding, not by the disk. */
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int loaders = cores < 1                         ? 1
	              : cores > SRV__STORE_LOAD_THREADS ? SRV__STORE_LOAD_THREADS
	                                                : (int)cores;
	bool bad =
	        !srv__store_shared(ss->store) &&
	        (read_heads(&lc) ||
	         srv__store_load_all(ss->store, loaders, on_stream, on_delta, &lc) || lc.failed ||
	         srv__store_orphans(ss->store, on_orphan, &lc) || lc.failed || check_heads(&lc) ||
	         lc.failed || srv__store_load_extra(ss->store, on_ckpt, on_meta, &lc));
	heads_free(&lc);
	/* a damaged file may also fail the load: the check's refusal first */
	if (srv__store_check_wait(ss->store, err, sizeof err)) {
		srv_log(SRV_LOG_ERROR, NULL, "stream store: %s", err);
		srv__streams_close(ss);
		return -1;
	}
	if (bad) {
		srv_log(SRV_LOG_ERROR, NULL, "stream store: cannot load the streams of %s",
		        srv__store_url_is_pg(ss->store_url) ? "postgresql" : data_dir);
		srv__streams_close(ss);
		return -1;
	}
	if (!srv__store_shared(ss->store)) {
		char extra[64];
		snprintf(extra, sizeof extra, "\"quick_check_ms\":%.1f",
		         srv__store_check_ms(ss->store));
		srv_log(SRV_LOG_INFO, extra, "stream store checked and loaded");
	}
	pthread_mutex_lock(&ss->mu);
	for (size_t i = 0; i < ss->n; i++)
		if (ss->v[i]->st)
			eng_stream_set_max_bytes(ss->v[i]->st, ss->lim.max_bytes);
	ss->open = true;
	ss->reaper_stop = false;
	ss->reaper_on = pthread_create(&ss->reaper, NULL, reaper_main, ss) == 0;
	pthread_mutex_unlock(&ss->mu);
	if (!ss->reaper_on)
		srv_log(SRV_LOG_WARN, NULL, "no expiry thread: ttl_s is not enforced");
	ss->stop = false;
	if (pthread_create(&ss->healer, NULL, heal_main, ss) != 0) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot start the stream store's healer thread");
		srv__streams_close(ss);
		return -1;
	}
	ss->healer_started = true;
	return 0;
}

/* The store's state as readiness sees it: 0 when it commits, else 1 (broken)
 * or 2 (a commit stalled), with the health snapshot in *h. */
static int store_state(srv__streams *ss, srv__store_health *h)
{
	srv__store_health_of(h, ss->store);
	if (h->broken)
		return 1;
	if (h->running_s > (double)ss->lim.stall_s)
		return 2;
	return 0;
}

void srv__streams_get_stats(srv__streams_stats *out, srv__streams *ss)
{
	srv__store_health h;
	memset(out, 0, sizeof(*out));
	if (!ss)
		return;
	pthread_mutex_lock(&ss->mu);
	if (ss->open) {
		out->streams = ss->n;
		for (size_t i = 0; i < ss->n; i++) {
			out->damaged += ss->v[i]->damaged != NULL;
			out->resyncing += atomic_load(&ss->v[i]->stale);
		}
		out->expired = ss->expired;
	}
	pthread_mutex_unlock(&ss->mu);
	out->updates_committed = atomic_load(&ss->updates_committed);
	if (!ss->store)
		return;
	int state = store_state(ss, &h);
	out->commit_groups = h.groups;
	out->commit_ops = h.ops;
	out->store_broken = state == 1;
	out->store_stalled = state == 2;
	out->store_failures = h.failures;
	out->store_recoveries = h.recoveries;
	out->commit_running_s = h.running_s;
	memcpy(out->commit_lat, h.lat, sizeof out->commit_lat);
	out->commit_lat_sum = h.lat_sum;
	out->commit_delays = h.delays;
	out->commit_delay_sum = h.delay_sum;
	out->wal_ckpts = h.ckpts;
	out->wal_ckpts_inline = h.ckpt_inline;
	out->wal_ckpt_failures = h.ckpt_failures;
	out->wal_ckpt_sum = h.ckpt_sum;
	out->wal_pages = h.wal_pages;
}

bool srv__streams_ready(api_reply *out, srv__streams *ss)
{
	srv__store_health h;
	if (!ss->store)
		return true;
	switch (store_state(ss, &h)) {
	case 1:
		api_reply_error(out, 503, "store_unavailable",
		                "the stream store cannot commit (%s); it retries every %d ms",
		                h.why[0] ? h.why : "unknown error", HEAL_INTERVAL_MS);
		break;
	case 2:
		api_reply_error(out, 503, "store_unavailable",
		                "a stream store disk operation (a commit or a read) has been "
		                "running for %.1f s "
		                "(--store-stall-s %d)",
		                h.running_s, ss->lim.stall_s);
		break;
	default: return true;
	}
	out->retry_after = 1;
	return false;
}

bool srv__streams_stalled(srv__streams *ss)
{
	srv__store_health h;
	return ss->store && store_state(ss, &h) == 2;
}

bool srv__streams_updates_defer(srv__streams *ss)
{
	return ss->open && ss->store && !srv__store_shared(ss->store);
}

bool srv__streams_writable(srv__streams *ss)
{
	srv__store_health h;
	return !ss->store || store_state(ss, &h) == 0;
}

void srv__streams_test_store_fail(srv__streams *ss, int n)
{
	if (ss->store)
		srv__store_test_fail(ss->store, n);
}

void srv__streams_test_store_hold(srv__streams *ss, bool on)
{
	if (ss->store)
		srv__store_test_hold(ss->store, on);
}

void srv__streams_close(srv__streams *ss)
{
	pthread_mutex_lock(&ss->mu);
	ss->reaper_stop = true;
	pthread_cond_broadcast(&ss->reaper_cv);
	bool joined = ss->reaper_on;
	ss->reaper_on = false;
	pthread_mutex_unlock(&ss->mu);
	if (joined)
		pthread_join(ss->reaper, NULL);
	if (ss->healer_started) {
		pthread_mutex_lock(&ss->hmu);
		ss->stop = true;
		pthread_cond_signal(&ss->hcv);
		pthread_mutex_unlock(&ss->hmu);
		pthread_join(ss->healer, NULL);
		ss->healer_started = false;
	}
	srv__store_close(ss->store);
	ss->store = NULL;
	pthread_mutex_lock(&ss->mu);
	for (size_t i = 0; i < ss->n; i++)
		stream_free(ss->v[i]);
	free(ss->v);
	ss->v = NULL;
	ss->n = ss->cap = 0;
	ss->open = false;
	pthread_mutex_unlock(&ss->mu);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Hex digits of a digest, with the NUL. */
#define DIGEST_HEX 65

/* SHA-256 of (tag, NUL, bytes) as lowercase hex into out: a state's
 * state_id (tag = the exporting stream's id) and the digest an
 * idempotency record keeps of what its key was first used with. Returns 0
 * or -1. */
static int digest_hex(char out[DIGEST_HEX], const char *tag, const void *bytes, size_t len)
{
	gnutls_hash_hd_t h;
	uint8_t d[32];
	static const char hex[] = "0123456789abcdef";
	if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
		return -1;
	if (gnutls_hash(h, tag, strlen(tag) + 1) < 0 || (len && gnutls_hash(h, bytes, len) < 0)) {
		gnutls_hash_deinit(h, NULL);
		return -1;
	}
	gnutls_hash_deinit(h, d);
	for (size_t i = 0; i < sizeof d; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * sizeof d] = '\0';
	return 0;
}

/* srv__store_wait, and on failure an error line naming the stream and its
 * principal (never a token): what the client got was 503 store_unavailable. */
static int commit_wait(srv__store_op *op, const stream *s)
{
	srv__streams *ss = s->ss;
	srv__loop_blocking(true);
	int rc = srv__store_wait(ss->store, op);
	srv__loop_blocking(false);
	if (rc) {
		srv__log_field f[] = {{"stream", s->id}, {"principal", s->owner}};
		srv__log_fields(
		        SRV_LOG_ERROR, f, 2,
		        "stream store: the write was not committed (503 store_unavailable)");
	}
	return rc;
}

/* An idempotency record of s failed its checksum (srv__store_key_get -2):
 * nothing of it is served, this request gets 503 stream_damaged, and s is
 * made stale, so it takes no new op and the healer reloads it from disk,
 * where the same record quarantines it (srv__store_load). s->mu held. */
static void key_damaged(stream *s, api_reply *out)
{
	atomic_store(&s->stale, true);
	stream_damaged(out, s->id);
}

static void store_unavailable(srv__streams *ss, api_reply *out)
{
	if (ss->store && srv__store_shared(ss->store)) {
		api_reply_error(out, 503, "store_unavailable",
		                "the stream store cannot be reached; retry later");
		out->retry_after = 1;
		return;
	}
	api_reply_error(out, 503, "store_unavailable",
	                "the stream store cannot commit right now (see /readyz); retry later");
	out->retry_after = 1;
}

/* A stream whose memory may hold an op the disk refused is not shown
 * until resync() has reloaded it. */
static void stream_resyncing(api_reply *out, const stream *s)
{
	api_reply_error(out, 503, "store_unavailable",
	                "stream %s is being reloaded from disk after a failed write; retry later",
	                s->id);
	out->retry_after = 1;
}

/*
 * Reads show committed state only. With s->mu held: waits until no op of
 * s is in flight (each acknowledged, or failed and s marked stale), while
 * s->readers holds new writes back (write_gate), so the wait is bounded
 * by the commits in progress. Returns 0, or -1 when the store is stalled
 * or the wait passes READ_WAIT_S: the caller answers 503
 * store_unavailable instead of holding a worker on a frozen disk.
 * Shared stores return 0 at once: their memory moves only by what the
 * store committed (sync_stream).
 */
#define READ_WAIT_S 1
static int wait_committed(stream *s)
{
	srv__streams *ss = s->ss;
	if (s->inflight == 0 || srv__store_shared(ss->store))
		return 0;
	/* A commit takes milliseconds; one a reader waits on for a second
	 * is not normal, and the worker it holds is one /v1/loss needs. */
	struct timespec end, t;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += READ_WAIT_S;
	int rc = 0;
	s->readers++;
	while (s->inflight > 0) {
		if (srv__streams_stalled(ss)) {
			rc = -1;
			break;
		}
		/* a stall shows without an op finishing: look every 100 ms */
		clock_gettime(CLOCK_REALTIME, &t);
		if (t.tv_sec > end.tv_sec || (t.tv_sec == end.tv_sec && t.tv_nsec >= end.tv_nsec)) {
			rc = -1;
			break;
		}
		t.tv_nsec += 100000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->mu, &t);
	}
	if (--s->readers == 0)
		pthread_cond_broadcast(&s->cv); /* writers held back by write_gate */
	return rc;
}

/* With s->mu held, before a write changes s's memory: waits while a read
 * waits for s's in-flight ops (wait_committed), so reads are not starved
 * by a stream that always has a commit in flight. The caller re-checks
 * `deleted` and `stale` after it (mu may have been released). */
static void write_gate(stream *s)
{
	while (s->readers > 0) {
		srv__loop_blocking(true);
		pthread_cond_wait(&s->cv, &s->mu);
		srv__loop_blocking(false);
	}
}

/* Replies with a copy of a stored reply body. */
static void reply_text(api_reply *out, int status, const char *text)
{
	out->status = status;
	out->content_type = API_JSON;
	out->body = strdup(text);
	out->len = out->body ? strlen(out->body) : 0;
	if (!out->body)
		api_reply_error(out, 503, "out_of_memory", "out of memory");
}

/* Renders o into *out and keeps a copy of the body in *copy (new). */
static int reply_json_copy(api_reply *out, int status, json_t *o, char **copy)
{
	api_reply_json(out, status, o);
	*copy = NULL;
	if (out->status != status || !out->body)
		return -1;
	*copy = strdup(out->body);
	return *copy ? 0 : -1;
}

static int new_id(char *out, size_t cap)
{
	uint8_t r[16];
	size_t got = 0;
	while (got < sizeof r) {
		ssize_t n = getrandom(r + got, sizeof r - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	static const char hex[] = "0123456789abcdef";
	if (cap < 2 * sizeof r + 1)
		return -1;
	for (size_t i = 0; i < sizeof r; i++) {
		out[2 * i] = hex[r[i] >> 4];
		out[2 * i + 1] = hex[r[i] & 15];
	}
	out[2 * sizeof r] = '\0';
	return 0;
}

/* ---- create ---------------------------------------------------------------------------------- */

void srv__streams_create(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_problem p;
	api_stream_spec *spec = NULL;
	stream *s = NULL;
	void *state = NULL;
	size_t slen = 0;
	char *text = NULL, *reply = NULL, *mtext = NULL;
	eng_error err;
	api_stream_limits lim = api_limits(ss);
	srv__store_op op;
	char id[40];
	api_meta meta = {0};

	if (api_stream_spec_parse(&spec, req->api, req->body, req->len, &lim, &p)) {
		api_reply_problem(out, &p);
		goto out;
	}
	/* tags and ttl_s (docs/API.md section 8): beside the config, not in it */
	if (api_meta_parse_create(&meta, req->api, req->body, req->len, &p)) {
		api_reply_problem(out, &p);
		goto out;
	}
	meta.created_ms = meta.updated_ms = srv__now_ms();
	if (new_id(id, sizeof id)) {
		api_reply_error(out, 500, "internal_error", "no randomness for a stream id");
		goto out;
	}
	json_t *cfg = NULL;
	if (!(s = stream_alloc(ss, id, who(req))) ||
	    eng_stream_new(&s->st, api_stream_spec_engine(spec), &err) ||
	    (eng_stream_set_history_max(s->st, ss->lim.history_points), false) ||
	    eng_stream_serialize(&state, &slen, s->st) || !(text = api_stream_spec_text(spec)) ||
	    !(mtext = api_meta_text(&meta)) ||
	    !(cfg = api_stream_summary(spec, id, &meta, NULL, NULL))) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto out;
	}
	if (reply_json_copy(out, 201, cfg, &reply)) { /* steals cfg */
		api_reply_free(out);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto out;
	}
	s->spec = spec;
	spec = NULL;
	s->refs = 1;
	s->state_blen = slen;
	api_meta_clear(&s->meta);
	s->meta = meta;
	memset(&meta, 0, sizeof meta);

	memset(&op, 0, sizeof op);
	op.type = SRV__OP_CREATE;
	op.stream = s->id;
	op.owner = s->owner;
	op.config = text;
	op.data = state;
	op.len = slen;
	op.stale = &s->stale;
	op.meta = mtext;
	op.updated_ms = s->meta.updated_ms;

	pthread_mutex_lock(&ss->mu);
	size_t mine = 0;
	for (size_t i = 0; i < ss->n; i++)
		mine += strcmp(ss->v[i]->owner, s->owner) == 0;
	long at = find(ss, id);
	stream_err rc = STREAM_OK;
	if (!ss->open || !srv__streams_writable(ss))
		rc = STREAM_ESTORE;
	else if (mine >= (size_t)ss->lim.max_streams)
		rc = STREAM_ETOO_MANY;
	else if (at >= 0 || insert_at(ss, (size_t)(-at - 1), s))
		rc = STREAM_ENOMEM;
	else {
		s->inflight = 1; /* no other thread sees s before ss->mu is released */
		s->unborn = true;
		srv__store_submit(ss->store, &op); /* before any op of the stream */
	}
	pthread_mutex_unlock(&ss->mu);
	if (rc) {
		api_reply_free(out);
		if (rc == STREAM_ETOO_MANY)
			api_reply_error(out, 507, "too_many_streams",
			                "this token already has %zu streams, the "
			                "configured maximum",
			                mine);
		else if (rc == STREAM_ESTORE)
			store_unavailable(ss, out);
		else
			api_reply_error(out, 503, "out_of_memory", "cannot add the stream");
		goto out;
	}
	int wrc = commit_wait(&op, s);
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	if (!wrc)
		s->unborn = false;
	pthread_cond_broadcast(&s->cv); /* reads waiting for the create */
	pthread_mutex_unlock(&s->mu);
	if (wrc) {
		/* s is stale: the healer reloads it, or removes it if the disk
		 * has no such stream. */
		api_reply_free(out);
		store_unavailable(ss, out);
	}
	release(s);
	s = NULL;
out:
	if (s)
		stream_free(s);
	api_stream_spec_free(spec);
	api_meta_clear(&meta);
	free(state);
	free(text);
	free(mtext);
	free(reply);
}

/* ---- list ------------------------------------------------------------------------------------- */

static int hexdigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* One stream in a sorted listing. */
typedef struct lent {
	stream *s;
	int64_t t;        /* created_ms or updated_ms (sort by time) */
	const char *name; /* the spec's (immutable) */
} lent;

static int cmp_id(const lent *a, const lent *b)
{
	return strcmp(a->s->id, b->s->id);
}

static int cmp_time(const void *x, const void *y)
{
	const lent *a = x, *b = y;
	return a->t < b->t ? -1 : a->t > b->t ? 1 : cmp_id(a, b);
}

static int cmp_name(const void *x, const void *y)
{
	const lent *a = x, *b = y;
	int c = strcmp(a->name, b->name);
	return c ? c : cmp_id(a, b);
}

/* The cursor of entry e under sort: "<ms>.<id>", "<hex of name>.<id>" or
 * the id alone. */
static void list_cursor(char *out, size_t cap, const lent *e, api_list_sort sort)
{
	static const char hex[] = "0123456789abcdef";
	if (sort == API_LIST_SORT_ID) {
		snprintf(out, cap, "%s", e->s->id);
	} else if (sort == API_LIST_SORT_NAME) {
		size_t n = 0;
		for (const unsigned char *p = (const unsigned char *)e->name; *p && n + 3 < cap;
		     p++) {
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
		snprintf(out + n, cap - n, ".%s", e->s->id);
	} else {
		snprintf(out, cap, "%lld.%s", (long long)e->t, e->s->id);
	}
}

/* Parses a cursor of a sorted listing into *c (t or name, and id); the
 * name goes into nbuf. 0 or -1. */
static int list_uncursor(lent *c, stream *idholder, char *nbuf, size_t ncap, const char *cur,
                         api_list_sort sort)
{
	const char *dot = strchr(cur, '.');
	if (!dot || !srv_route_valid_id(dot + 1, strlen(dot + 1)))
		return -1;
	snprintf(idholder->id, sizeof idholder->id, "%s", dot + 1);
	c->s = idholder;
	c->t = 0;
	c->name = "";
	if (sort == API_LIST_SORT_NAME) {
		size_t n = (size_t)(dot - cur);
		if (n % 2 || n / 2 >= ncap)
			return -1;
		for (size_t i = 0; i < n; i += 2) {
			int hi = hexdigit(cur[i]), lo = hexdigit(cur[i + 1]);
			if (hi < 0 || lo < 0)
				return -1;
			nbuf[i / 2] = (char)(hi * 16 + lo);
		}
		nbuf[n / 2] = '\0';
		c->name = nbuf;
		return 0;
	}
	char *end;
	errno = 0;
	long long t = strtoll(cur, &end, 10);
	if (end != dot || errno || cur == dot)
		return -1;
	c->t = t;
	return 0;
}

/* ---- list from a shared store ---- */

typedef struct listed {
	char id[129];
	int64_t updates, rows, t;
	char *name, *meta;
	int64_t updated_ms;
} listed;

typedef struct list_ctx {
	listed *v;
	size_t n, cap;
	int sort;
} list_ctx;

static int on_listed(void *arg, const srv__store_listed *se)
{
	list_ctx *lc = arg;
	if (lc->n == lc->cap)
		return -1;
	listed *e = &lc->v[lc->n];
	snprintf(e->id, sizeof e->id, "%s", se->id);
	e->updates = se->updates;
	e->rows = se->rows;
	e->updated_ms = se->updated_ms;
	e->t = lc->sort == API_LIST_SORT_CREATED ? se->created_ms
	       : se->updated_ms                  ? se->updated_ms
	                                         : se->created_ms;
	e->name = strdup(se->name);
	e->meta = strdup(se->meta);
	if (!e->name || !e->meta) {
		free(e->name);
		free(e->meta);
		return -1;
	}
	lc->n++;
	return 0;
}

/* GET /v1/streams on a shared store: the page (filters, sort, cursor as
 * the SQLite path's below) comes from the store, every replica's streams
 * with their committed counts and metadata; each stream's config from
 * memory, read in when this replica has not seen it yet. The shared store
 * lists one owner at a time: an admin names it with principal=; anyone
 * else sees their own (another name: nothing). cur: the parsed cursor of
 * a sorted listing. */
static void list_shared(api_reply *out, const srv_request *req, const api_list_query *q,
                        const lent *cur)
{
	srv__streams *ss = req->streams;
	list_ctx lc = {calloc((size_t)q->limit + 1, sizeof(listed)), 0, (size_t)q->limit + 1,
	               q->sort};
	api_stream_page *pg = api_stream_page_new();
	const char *by_owner = q->by_owner ? q->owner : NULL;
	const char *owner = req->admin && by_owner ? by_owner : who(req);
	char *tags = NULL, next[600] = "";
	stream *holder = NULL;

	if (!lc.v || !pg || (q->ntags && !(tags = api_query_list_tags(q)))) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto out;
	}
	if (req->admin && !by_owner) {
		api_reply_error(out, 422, "bad_option",
		                "with a shared store an admin lists one principal at a time: "
		                "add principal=");
		goto out;
	}
	if (by_owner && strcmp(by_owner, owner) != 0) {
		api_reply_json(out, 200, api_stream_page_finish(pg, NULL)); /* empty */
		pg = NULL;
		goto out;
	}
	_Static_assert((int)API_LIST_SORT_NAME == (int)SRV__SORT_NAME &&
	                       (int)API_LIST_SORT_CREATED == (int)SRV__SORT_CREATED,
	               "the store takes the list's sort as is");
	srv__store_list_q sq = {owner, (int)q->limit + 1, q->sort, q->desc, NULL, 0,
	                        NULL,  q->prefix,         tags};
	if (q->after[0]) {
		sq.after_id = q->sort == API_LIST_SORT_ID ? q->after : cur->s->id;
		sq.after_t = cur->t;
		sq.after_name = cur->name;
	}
	if (srv__store_broken(ss->store) || srv__store_list(ss->store, &sq, on_listed, &lc) < 0) {
		store_unavailable(ss, out);
		goto out;
	}
	size_t shown = lc.n > (size_t)q->limit ? (size_t)q->limit : lc.n;
	for (size_t k = 0; k < shown; k++) {
		eng_stream_counts c = {lc.v[k].updates, lc.v[k].rows}; /* committed */
		api_meta m;
		bool has_meta = api_meta_load(&m, lc.v[k].meta) == 0;
		if (has_meta)
			m.updated_ms = lc.v[k].updated_ms ? lc.v[k].updated_ms : m.created_ms;
		bool found = false;
		for (int tries = 0; tries < 2 && !found; tries++) {
			pthread_mutex_lock(&ss->mu);
			long i = find(ss, lc.v[k].id);
			found = i >= 0 && !ss->v[i]->damaged;
			if (found)
				api_stream_page_add(pg, ss->v[i]->spec, ss->v[i]->id,
				                    has_meta ? &m : NULL, &c,
				                    req->admin ? owner : NULL);
			pthread_mutex_unlock(&ss->mu);
			if (i >= 0)
				break;
			if (tries == 0 && load_one(ss, lc.v[k].id) < 0) {
				if (has_meta)
					api_meta_clear(&m);
				store_unavailable(ss, out);
				goto out;
			}
		}
		if (has_meta)
			api_meta_clear(&m);
		/* (not found: deleted meanwhile, left out) */
	}
	if (lc.n > (size_t)q->limit && shown > 0) {
		const listed *l = &lc.v[shown - 1];
		if (!(holder = calloc(1, sizeof(*holder)))) {
			api_reply_error(out, 503, "out_of_memory", "out of memory");
			goto out;
		}
		snprintf(holder->id, sizeof holder->id, "%s", l->id);
		lent e = {holder, l->t, l->name};
		list_cursor(next, sizeof next, &e, q->sort);
	}
	api_reply_json(out, 200, api_stream_page_finish(pg, next[0] ? next : NULL));
	pg = NULL;
out:
	api_stream_page_free(pg);
	for (size_t k = 0; lc.v && k < lc.n; k++) {
		free(lc.v[k].name);
		free(lc.v[k].meta);
	}
	free(lc.v);
	free(tags);
	free(holder);
}

void srv__streams_list(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_list_query q;
	api_problem p;
	api_stream_page *pg = NULL;
	lent *v = NULL;
	char next[600] = "";
	const stream *stale = NULL;

	if (api_query_list(&q, req->query, &p)) {
		api_reply_problem(out, &p);
		return;
	}
	stream *cur_holder = calloc(1, sizeof(*cur_holder));
	char *nbuf = malloc(512);
	stream **page = malloc((size_t)q.limit * sizeof(*page));
	lent cur = {0};
	if (!cur_holder || !nbuf || !page) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto done;
	}
	if (q.sort != API_LIST_SORT_ID && q.after[0] &&
	    list_uncursor(&cur, cur_holder, nbuf, 512, q.after, q.sort)) {
		api_reply_error(out, 422, "bad_cursor",
		                "after must be the `next` of a previous page with the same sort");
		goto done;
	}
	if (ss->open && srv__store_shared(ss->store)) {
		list_shared(out, req, &q, &cur);
		goto done;
	}
	if (!(pg = api_stream_page_new())) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto done;
	}
	pthread_mutex_lock(&ss->mu);
	size_t n = 0;
	if (ss->n && !(v = malloc(ss->n * sizeof(*v)))) {
		pthread_mutex_unlock(&ss->mu);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto done;
	}
	size_t plen = strlen(q.prefix);
	for (size_t k = 0; k < ss->n; k++) {
		stream *s = ss->v[k];
		if (s->damaged || (!req->admin && strcmp(s->owner, who(req)) != 0))
			continue;
		pthread_mutex_lock(&s->mu);
		bool unborn = s->unborn; /* its create may still be refused */
		pthread_mutex_unlock(&s->mu);
		if (unborn)
			continue;
		if (q.by_owner && strcmp(s->owner, q.owner) != 0)
			continue;
		const char *name = api_stream_spec_name(s->spec);
		if (plen && strncmp(name, q.prefix, plen) != 0)
			continue;
		pthread_mutex_lock(&s->mu);
		bool ok = true;
		for (int t = 0; ok && t < q.ntags; t++)
			ok = api_meta_has_tag(&s->meta, q.tag_key[t], q.tag_val[t]);
		int64_t tm =
		        q.sort == API_LIST_SORT_CREATED ? s->meta.created_ms : s->meta.updated_ms;
		pthread_mutex_unlock(&s->mu);
		if (ok)
			v[n++] = (lent){s, tm, name};
	}
	/* The table is in id order already. */
	if (q.sort == API_LIST_SORT_UPDATED || q.sort == API_LIST_SORT_CREATED)
		qsort(v, n, sizeof(*v), cmp_time);
	else if (q.sort == API_LIST_SORT_NAME)
		qsort(v, n, sizeof(*v), cmp_name);
	int (*cmp)(const void *, const void *) = q.sort == API_LIST_SORT_NAME ? cmp_name : cmp_time;
	long long shown = 0;
	lent *last = NULL;
	for (size_t k = 0; k < n; k++) {
		lent *e = &v[q.desc ? n - 1 - k : k];
		if (q.after[0]) {
			int c = q.sort == API_LIST_SORT_ID ? strcmp(e->s->id, q.after)
			                                   : cmp(e, &cur);
			if (q.desc ? c >= 0 : c <= 0)
				continue;
		}
		if (shown == q.limit) {
			list_cursor(next, sizeof next, last, q.sort);
			break;
		}
		/* the page's streams, held by a reference: rendered below */
		page[shown] = e->s;
		e->s->refs++;
		last = e;
		shown++;
	}
	pthread_mutex_unlock(&ss->mu);
	/* Rendered without the table's mutex: the config, id and owner are
	 * immutable and the reference keeps them; counts and metadata are
	 * read under each stream's own mutex. */
	for (long long k = 0; k < shown; k++) {
		stream *s = page[k];
		eng_stream_counts c;
		pthread_mutex_lock(&s->mu);
		if (s->deleted || s->damaged || !s->st) { /* meanwhile: left out */
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		eng_stream_counts_of(&c, s->st);
		/* committed counts: less what ops in flight added */
		c.updates -= s->pend_updates;
		c.rows -= s->pend_rows;
		if (atomic_load(&s->stale) && !stale)
			stale = s;
		if (!stale)
			api_stream_page_add(pg, s->spec, s->id, &s->meta, &c,
			                    req->admin ? s->owner : NULL);
		pthread_mutex_unlock(&s->mu);
		if (stale)
			break;
	}
	if (stale)
		stream_resyncing(out, stale); /* before the references go */
	for (long long k = 0; k < shown; k++)
		release(page[k]);
	if (stale)
		goto done;
	api_reply_json(out, 200, api_stream_page_finish(pg, next[0] ? next : NULL));
	pg = NULL;
done:
	api_stream_page_free(pg);
	free(v);
	free(nbuf);
	free(page);
	free(cur_holder);
}

/* ---- read, state ----------------------------------------------------------------------------- */

void srv__streams_get(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_stream_read_opts o = API_STREAM_READ_OPTS_INIT;
	long long col, pts;
	api_problem p;

	bool allow_stale;
	if (api_query_bool(req->query, "curve", &o.curve, &p) ||
	    api_query_level(req->query, "ci", &o.ci, &p) ||
	    api_query_int(req->query, "class", -1, -1, ENG_STREAM_MAX_COLUMNS - 1, &col, &p) ||
	    api_query_int(req->query, "max_points", ENG_AUC_DEFAULT_MAX_POINTS, 2, 100000, &pts,
	                  &p) ||
	    api_query_bool(req->query, "allow_stale", &allow_stale, &p)) {
		api_reply_problem(out, &p);
		return;
	}
	o.curve_col = col;
	o.max_points = pts;
	stream *s = acquire(out, req);
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	int w = wait_committed(s);
	bool stale = atomic_load(&s->stale) || !s->st; /* !st: resync found damage */
	int r = stale || w ? 0 : refresh_for_read(s);
	json_t *j = NULL;
	if (!w && !stale && (r == 0 || (r < 0 && allow_stale)))
		j = api_stream_reading(s->spec, s->id, s->st, &o, &s->meta, r < 0,
		                       req->admin ? s->owner : NULL, &p);
	pthread_mutex_unlock(&s->mu);
	if (w) {
		store_unavailable(ss, out);
	} else if (stale) {
		stream_resyncing(out, s);
	} else if (r > 0) {
		forget(s);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
	} else if (r < 0 && !allow_stale) {
		store_unavailable(ss, out);
	} else if (j) {
		api_reply_json(out, 200, j);
	} else {
		api_reply_problem(out, &p);
	}
	release(s);
}

void srv__streams_state(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_problem p;
	stream *s = acquire(out, req);
	if (!s)
		return;
	void *bytes = NULL;
	size_t blen = 0;
	char sid[DIGEST_HEX];
	eng_stream_counts c;
	json_t *j = NULL;
	pthread_mutex_lock(&s->mu);
	int w = wait_committed(s);
	bool stale = atomic_load(&s->stale) || !s->st; /* !st: resync found damage */
	int r = stale || w ? 0
	                   : refresh_for_read(s); /* a state is never stale: it would be merged */
	bool ok = !w && !stale && r == 0;
	int rc = ok ? eng_stream_serialize(&bytes, &blen, s->st) : 0;
	if (ok)
		eng_stream_counts_of(&c, s->st);
	pthread_mutex_unlock(&s->mu);
	/* the bytes and their digest are taken under the mutex, the body
	 * (base64 of the bytes) is built after it */
	if (ok) {
		if (rc || digest_hex(sid, s->id, bytes, blen))
			api_problem_set(&p, 503, "out_of_memory", "", "out of memory");
		else
			j = api_stream_export_bytes(s->spec, s->id, &c, bytes, blen, sid, &p);
	}
	if (w) {
		store_unavailable(ss, out);
	} else if (stale) {
		stream_resyncing(out, s);
	} else if (r > 0) {
		forget(s);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
	} else if (r < 0) {
		store_unavailable(ss, out);
	} else if (j) {
		api_reply_json(out, 200, j);
	} else {
		api_reply_problem(out, &p);
	}
	free(bytes);
	release(s);
}

/* ---- writes ------------------------------------------------------------------------------------ */

static bool key_pending(const stream *s, const char *key)
{
	for (const pending_key *k = s->keys; k; k = k->next)
		if (strcmp(k->key, key) == 0)
			return true;
	return false;
}

static void key_remove(stream *s, pending_key *pk)
{
	for (pending_key **k = &s->keys; *k; k = &(*k)->next)
		if (*k == pk) {
			*k = pk->next;
			return;
		}
}

/*
 * An idempotency record (the store's reply text for a key): the digest of
 * what the key was first used with, a newline, then the first reply. A
 * record without the digest line (written before digests existed) starts
 * with '{' and matches any body.
 */
static char *record_new(const char *digest, const char *reply)
{
	size_t n = strlen(digest) + 1 + strlen(reply) + 1;
	char *r = malloc(n);
	if (r)
		snprintf(r, n, "%s\n%s", digest, reply);
	return r;
}

/* The reply part of a record (borrowed from rec); *digest_ok says whether
 * the record's digest is `digest` (true for a record without one). */
static const char *record_reply(const char *rec, const char *digest, bool *digest_ok)
{
	const char *nl = rec[0] == '{' ? NULL : strchr(rec, '\n');
	if (!nl) {
		*digest_ok = true;
		return rec;
	}
	*digest_ok = (size_t)(nl - rec) == strlen(digest) && !strncmp(rec, digest, strlen(digest));
	return nl + 1;
}

/* The reply to a retry of key whose stored record is rec: the first
 * reply when the retry's body has the same digest, else 409
 * idempotency_conflict. */
static void reply_replayed(api_reply *out, const char *rec, const char *digest, const char *key)
{
	bool same;
	const char *first = record_reply(rec, digest, &same);
	if (same)
		reply_text(out, 200, first);
	else
		api_reply_error(out, 409, "idempotency_conflict",
		                "%s was first used with another body; a retry must send the same "
		                "data (use a new key for new data)",
		                key ? key : "the key");
}

/* The record key of a merged state_id (beside batch ids, in one table). */
static void state_key(char *out, size_t cap, const char *state_id)
{
	snprintf(out, cap, "state:%s", state_id);
}

/*
 * An update or merge between its submit and its outcome: what the end of
 * apply (write_end) needs, on whichever thread learns the outcome. On the
 * heap: an update on the store lane is finished by the store's committer
 * after its handler returned (request.h's `deferred`).
 */
typedef struct pending_write {
	srv__store_op op; /* first: on_committed gets &op */
	stream *s;
	api_reply *out;
	const char *key;
	pending_key pk, pk2;
	bool claimed;
	char *prev, *srec, *rec, *reply;
	void *bytes, *state;
	size_t blen; /* bytes' length */
	char digest[DIGEST_HEX], skey[DIGEST_HEX + 8];
	eng_stream_counts dc;
	size_t dmem;
	/* deferred: the handler returned; freed and answered by write_end */
	bool deferred;
	eng_stream *delta; /* owned once deferred */
	bool keep;         /* shared: may be kept for the fold (own_put) */
	bool kept;         /* ...and was: it is the stream's now */
	char *bid;         /* owned once deferred (key may point into it) */
	void (*defer_done)(void *arg);
	void *defer_arg;
} pending_write;

/* The outcome of w's op is known (rc): s's bookkeeping, the reply, then,
 * when deferred, the handler's end (release, free, answer). No lock held. */
static void write_end(pending_write *w, int rc)
{
	stream *s = w->s;
	srv__streams *ss = s->ss;
	api_reply *out = w->out;
	srv__store_op *op = &w->op;
	bool shared = srv__store_shared(ss->store);

	pthread_mutex_lock(&s->mu);
	s->inflight--;
	if (!shared) {
		s->pend_updates -= (int64_t)w->dc.updates;
		s->pend_rows -= (int64_t)w->dc.rows;
	} else {
		s->inflight_mem -= w->dmem;
		if (!rc)
			s->unsynced_mem += w->dmem;
	}
	/* Another replica took a seq meanwhile, the key was used elsewhere or
	 * the commit failed: memory is no longer the store's prefix. */
	if (shared && !rc && op->gone)
		s->deleted = true;
	if (shared && !rc && w->keep && !op->gone && !op->replayed &&
	    own_put(s, op->committed_seq, w->delta, w->dmem, w->blen))
		w->kept = true;
	if (rc) {
		/* SQLite: s is stale now, 503 until the healer reloads it. */
		api_reply_free(out);
		store_unavailable(ss, out);
	} else if (shared && op->gone) {
		api_reply_free(out);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
	} else if (shared && op->stored_reply) {
		/* The committed counts, or (replayed) the key's first reply. */
		api_reply_free(out);
		if (op->replayed)
			reply_replayed(out, op->stored_reply, w->digest, w->key);
		else
			reply_text(out, 200, op->stored_reply);
	}
	if (!rc && !(shared && (op->gone || op->replayed)))
		atomic_fetch_add(&ss->updates_committed, 1);
	free(op->stored_reply);
	op->stored_reply = NULL;
	bool gone = shared && !rc && op->gone;
	if (w->claimed) {
		if (w->key)
			key_remove(s, &w->pk);
		if (w->pk2.key)
			key_remove(s, &w->pk2);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (gone)
		forget(s);
}

/* Frees what w holds; a deferred w also ends its handler: the stream's
 * reference, the decoded update, then the reply goes out. */
static void write_free(pending_write *w)
{
	free(w->prev);
	free(w->srec);
	free(w->rec);
	free(w->reply);
	free(w->bytes);
	free(w->state);
	if (w->deferred) {
		void (*done)(void *) = w->defer_done;
		void *arg = w->defer_arg;
		if (!w->kept) /* (kept: the stream's own_put list owns it) */
			eng_stream_free(w->delta);
		free(w->bid);
		release(w->s);
		free(w);
		done(arg); /* the reply (in *out) goes out */
		return;
	}
	free(w);
}

/* The store's committer writes a lazy update (store.h's resolve): a
 * hot update's checkpoint is the state as it is, when no update of s
 * followed this one, else 1 (the committer takes the newer one into the
 * group), or, when final, the update's own delta; a DELTA is its own. */
static int resolve_lazy(srv__store_op *op, bool final)
{
	pending_write *w = (pending_write *)op;
	stream *s = w->s;
	size_t len = 0;
	if (op->type == SRV__OP_CHECKPOINT) {
		pthread_mutex_lock(&s->mu);
		bool now = s->seq == op->seq && s->st;
		int rc = now && eng_stream_serialize(&w->state, &len, s->st) ? -1 : 0;
		if (now && !rc)
			s->state_blen = len;
		pthread_mutex_unlock(&s->mu);
		if (now) {
			op->data = w->state;
			op->len = len;
			return rc;
		}
		if (!final)
			return 1;
	}
	if (w->bytes) {
		len = w->blen;
	} else {
		if (eng_stream_serialize(&w->bytes, &len, w->delta))
			return -1;
		atomic_store(&s->last_blen, len);
	}
	op->type = SRV__OP_DELTA;
	op->data = w->bytes;
	op->len = len;
	return 0;
}

/* The store's committer: a deferred update's group is committed or failed. */
static void on_committed(srv__store_op *op)
{
	pending_write *w = (pending_write *)op;
	if (op->rc) {
		srv__log_field f[] = {{"stream", w->s->id}, {"principal", w->s->owner}};
		srv__log_fields(
		        SRV_LOG_ERROR, f, 2,
		        "stream store: the write was not committed (503 store_unavailable)");
	}
	write_end(w, op->rc);
	write_free(w);
}

/*
 * Applies *deltap to s as one durable op, with idempotency key `key` (or
 * NULL) and, for a merge, the merged state's state_id (or NULL). Fills
 * *out with the 200 reply, the first reply of key (409
 * idempotency_conflict when key was used with another body), a
 * {"applied": false} reply when state_id was merged before, or a problem.
 *
 * With req->deferred (an update on the store lane) and a SQLite store, an
 * op submitted is not waited for: apply returns true, and the committer
 * finishes it (write_end, then the handler's end: it then owns delta, bid
 * and the reference to s, and calls req->defer_done). Otherwise it returns
 * false with *out filled, and delta, bid and s stay the caller's; but on
 * a shared store s may keep the delta of an update it committed, to fold
 * it at its next sync (own_put): *deltap is then NULL.
 *
 * The keys are claimed (put in s->keys) before the store is asked about
 * them, so a retry with the same key waits for this call instead of
 * racing it, and with SQLite the lookups run without s->mu: a disk that
 * stalls never holds up a reader of the stream.
 */
static bool apply(api_reply *out, stream *s, eng_stream **deltap, const char *key,
                  const char *state_id, const srv_request *req, char *bid)
{
	eng_stream *delta = *deltap;
	srv__streams *ss = s->ss;
	size_t blen = 0, slen = 0;
	eng_error err;
	eng_stream_counts c;
	bool shared = srv__store_shared(ss->store);
	pending_write *w = calloc(1, sizeof *w);
	if (!w) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		return false;
	}
	w->s = s;
	w->out = out;
	w->delta = delta; /* freed by write_free only once deferred */
	w->key = key;
	w->pk.key = key;
	srv__store_op *op = &w->op;
	char *digest = w->digest;

	/* The digest is kept only with a key or a state_id: without either,
	 * nothing will compare it (SHA-256 of every delta was 5% of the time
	 * of 32 writers' updates). The delta's bytes are for the digest, a
	 * shared store and a DELTA op; an update of a stream with ops in
	 * flight, without a key, leaves them to the committer (below), which
	 * makes them only when no later op of the group covers this one
	 * (under mu, when the guess from the last update was wrong). */
	if (!key && !state_id) {
		memset(digest, '0', DIGEST_HEX - 1);
		digest[DIGEST_HEX - 1] = '\0';
	}
	bool need = key || state_id || shared ||
	            !(atomic_load(&s->lazy_hint) || atomic_load(&s->small_hint));
	if ((need && eng_stream_serialize(&w->bytes, &blen, delta)) ||
	    ((key || state_id) && digest_hex(digest, state_id ? state_id : "", w->bytes, blen))) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto out;
	}
	if (state_id) {
		state_key(w->skey, sizeof w->skey, state_id);
		w->pk2.key = w->skey;
	}
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->deleted) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		if ((!key || !key_pending(s, key)) && (!w->pk2.key || !key_pending(s, w->pk2.key)))
			break;
		srv__loop_blocking(true); /* the original is in flight */
		pthread_cond_wait(&s->cv, &s->mu);
		srv__loop_blocking(false);
	}
	if (atomic_load(&s->stale) || !s->st) {
		stream_resyncing(out, s);
		goto unlock;
	}
	if (!srv__streams_writable(ss)) {
		store_unavailable(ss, out);
		goto unlock;
	}
	w->dmem = eng_stream_memory(delta);
	bool near_cap = s->st && s->inflight_mem + s->unsynced_mem > 0 &&
	                eng_stream_memory(s->st) + s->inflight_mem + s->unsynced_mem + w->dmem >
	                        ss->lim.max_bytes;
	if (shared && (s->reload || near_cap || srv__now_ms() - s->synced_ms >= SYNC_EVERY_MS)) {
		/* The checks below see the store's state of at most SYNC_EVERY_MS
		 * ago (one query that folds in what every replica committed), or
		 * of now when this replica's own updates may reach the cap. */
		int r = sync_stream(s);
		if (r > 0) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		if (r < 0) {
			store_unavailable(ss, out);
			goto unlock;
		}
	}
	if (key) {
		w->pk.next = s->keys;
		s->keys = &w->pk;
	}
	if (w->pk2.key) {
		w->pk2.next = s->keys;
		s->keys = &w->pk2;
	}
	w->claimed = true;
	if (key || w->pk2.key) {
		/* SQLite: the lookups may wait on the disk, so not under mu (the
		 * claimed keys keep retries out). A shared store keeps mu: its
		 * sync above must still hold at the merge. */
		if (!shared) {
			pthread_mutex_unlock(&s->mu);
			srv__loop_blocking(true); /* the disk */
		}
		/* (A shared store decides both keys in the commit, replies as
		 * below; only a batch that fails the check looks its key up.) */
		int r = key && !shared ? srv__store_key_get(ss->store, s->id, key, &w->prev) : 0;
		int r2 = r == 0 && w->pk2.key && !shared
		                 ? srv__store_key_get(ss->store, s->id, w->pk2.key, &w->srec)
		                 : 0;
		if (!shared) {
			srv__loop_blocking(false);
			pthread_mutex_lock(&s->mu);
		}
		if (r == -2 || r2 == -2) {
			key_damaged(s, out);
			goto unlock;
		}
		if (r < 0 || r2 < 0) {
			store_unavailable(ss, out);
			goto unlock;
		}
		if (r == 1) {
			reply_replayed(out, w->prev, digest, key);
			goto unlock;
		}
		if (s->deleted) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		if (atomic_load(&s->stale) || !s->st) {
			stream_resyncing(out, s);
			goto unlock;
		}
	}
	if (s->readers > 0) {
		write_gate(s);
		if (s->deleted) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		if (atomic_load(&s->stale) || !s->st) {
			stream_resyncing(out, s);
			goto unlock;
		}
	}
	eng_stream_counts_of(&c, s->st);
	if (w->pk2.key) {
		if (w->srec) {
			/* Merged before: nothing to add, say so. */
			api_reply_json(out, 200, api_stream_ack(s->id, &c, API_STREAM_APPLIED_NO));
			goto unlock;
		}
		w->srec = record_new(digest, "{}");
		if (!w->srec) {
			api_reply_error(out, 503, "out_of_memory", "out of memory");
			goto unlock;
		}
	}
	/* The reply first (the counts after the merge are known), so nothing
	 * can fail once the stream has changed. */
	eng_stream_counts_of(&w->dc, delta);
	eng_stream_counts after = {c.updates + w->dc.updates, c.rows + w->dc.rows};
	json_t *body = api_stream_ack(
	        s->id, &after, state_id ? API_STREAM_APPLIED_YES : API_STREAM_APPLIED_UNSAID);
	if (reply_json_copy(out, 200, body, &w->reply) ||
	    !(w->rec = record_new(digest, w->reply))) {
		api_reply_free(out);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto unlock;
	}
	/* A hot stream (ops of it already in flight, so likely in the same
	 * group as this one) whose state weighs less than those ops' deltas:
	 * the state as a checkpoint, and the group writes it alone (store.c
	 * skips the deltas it covers). 32 writers to one sketch stream write
	 * one state per commit instead of a delta each. Decided before the
	 * merge, so the delta's bytes, when they are needed after all, are
	 * made while nothing has changed (an update's size is guessed from the
	 * last one serialized when it was not). With ops in flight, an update
	 * without bytes is "lazy": the committer serializes its state or its
	 * delta when it writes the group, and only if nothing later in the
	 * group covers it (resolve_lazy). Without, the bytes are made
	 * here. */
	size_t est = w->bytes ? blen : atomic_load(&s->last_blen);
	bool lazy = !shared && s->inflight > 0;
	bool hot = lazy && eng_stream_memory(s->st) <= (size_t)s->inflight * est / 2;
	/* The small-state rule (CKPT_SMALL_BYTES), on the state's size as last
	 * serialized and the delta's, est (a guess when its bytes were not
	 * made: every eighth such update makes them, so the guess stays
	 * fresh). Written in the delta's place, the delta's bytes are not
	 * needed. */
	size_t pending = s->delta_bytes + est;
	bool small = !shared && !lazy && s->state_blen > 0 && s->state_blen <= CKPT_SMALL_BYTES &&
	             pending >= CKPT_SMALL_FROM && s->state_blen <= 2 * pending;
	if (!w->bytes && !lazy && !small && eng_stream_serialize(&w->bytes, &blen, delta)) {
		api_reply_free(out);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto unlock;
	}
	if (shared ? check_shared(s, delta, &err) : eng_stream_merge(s->st, delta, &err)) {
		api_problem p;
		api_reply_free(out);
		if (shared && key && srv__store_key_get(ss->store, s->id, key, &w->prev) == 1) {
			/* a retry of a batch the store has: its first reply */
			reply_replayed(out, w->prev, digest, key);
			goto unlock;
		}
		api_stream_merge_problem(&p, &err);
		api_reply_problem(out, &p);
		goto unlock;
	}
	atomic_store(&s->lazy_hint, lazy);
	/* the next update skips the delta's bytes, but not after 8 in a row */
	bool skip = small && (w->bytes || ++s->small_run % 8 != 0);
	atomic_store(&s->small_hint, skip);
	if (w->bytes)
		atomic_store(&s->last_blen, blen);
	s->delta_bytes += w->bytes ? blen : est;
	size_t mem = eng_stream_memory(s->st);
	/* (A shared store's checkpoints are written by sync_stream.) */
	if (hot) {
		/* The group's last op of s is the one whose state is written
		 * (store.c skips the rest): serialized then, once, by the
		 * committer (resolve_lazy). */
		op->type = SRV__OP_CHECKPOINT;
		op->resolve = resolve_lazy;
		s->delta_bytes = 0;
	} else if (!shared &&
	           (small || (s->delta_bytes >= CKPT_MIN_BYTES && s->delta_bytes / 2 >= mem)) &&
	           eng_stream_serialize(&w->state, &slen, s->st) == 0) {
		op->type = SRV__OP_CHECKPOINT;
		op->data = w->state;
		op->len = slen;
		checkpointed(s, slen);
	} else {
		/* (no bytes: lazy, the committer makes them) */
		op->type = SRV__OP_DELTA;
		op->data = w->bytes;
		op->len = blen;
		if (!w->bytes)
			op->resolve = resolve_lazy;
	}
	/* A shared store's cache moves only by folding the store's deltas in
	 * order (sync_stream): this op's seq is taken at commit. */
	op->stream = s->id;
	op->seq = shared ? s->seq + 1 : ++s->seq;
	op->key = key;
	op->reply = w->rec;
	op->key2 = w->pk2.key;
	op->reply2 = w->srec;
	op->updated_ms = s->meta.updated_ms = srv__now_ms();
	op->add_updates = (int64_t)w->dc.updates;
	op->add_rows = (int64_t)w->dc.rows;
	op->delta = w->bytes;
	op->delta_len = blen;
	op->stale = &s->stale;
	w->blen = blen;
	s->inflight++;
	if (!shared) {
		s->pend_updates += (int64_t)w->dc.updates;
		s->pend_rows += (int64_t)w->dc.rows;
	} else {
		s->inflight_mem += w->dmem;
	}
	if (req && req->deferred && !shared) {
		/* The committer finishes it (on_committed): from the submit
		 * on, w, delta, bid and the reference to s are its. */
		w->deferred = true;
		w->bid = bid;
		w->defer_done = req->defer_done;
		w->defer_arg = req->defer_arg;
		op->on_done = on_committed;
		*req->deferred = true;
		srv__store_submit(ss->store, op);
		pthread_mutex_unlock(&s->mu);
		return true;
	}
	w->keep = shared;
	srv__store_submit(ss->store, op);
	pthread_mutex_unlock(&s->mu);
	write_end(w, commit_wait(op, s));
	if (w->kept)
		*deltap = NULL; /* s folds it at its next sync */
	write_free(w);
	return false;
unlock:
	if (w->claimed) {
		if (key)
			key_remove(s, &w->pk);
		if (w->pk2.key)
			key_remove(s, &w->pk2);
		pthread_cond_broadcast(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
out:
	write_free(w);
	return false;
}

void srv__streams_update(api_reply *out, const srv_request *req)
{
	api_problem p;
	eng_stream *delta = NULL;
	char *bid = NULL;
	stream *s = acquire(out, req);
	if (!s)
		return;
	if (api_stream_decode_update(&delta, &bid, s->spec, req->api, req->body, req->len, &p))
		api_reply_problem(out, &p);
	else if (apply(out, s, &delta, bid ? bid : req->idempotency_key, NULL, req, bid))
		return; /* deferred: the store's committer ends it */
	eng_stream_free(delta);
	free(bid);
	release(s);
}

void srv__streams_merge(api_reply *out, const srv_request *req)
{
	api_problem p;
	eng_stream *delta = NULL;
	stream *s = acquire(out, req);
	if (!s)
		return;
	api_stream_origin from;
	char sid[DIGEST_HEX];
	/* the digest of the bytes as exported (an earlier build's format
	 * re-serializes to other bytes) */
	if (api_stream_decode_merge_origin(&delta, &from, s->spec, req->api, req->body, req->len,
	                                   &p))
		api_reply_problem(out, &p);
	else if (digest_hex(sid, from.id, from.state, from.state_len))
		api_reply_error(out, 503, "out_of_memory", "out of memory");
	else if (from.state_id[0] && strcmp(from.state_id, sid) != 0) {
		api_problem_set(&p, 422, "bad_state", "/state_id",
		                "state_id is not the digest of this state");
		api_reply_problem(out, &p);
	} else
		(void)apply(out, s, &delta, req->idempotency_key, sid, NULL, NULL);
	free(from.state);
	eng_stream_free(delta);
	release(s);
}

void srv__streams_reset(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_problem p;
	void *state = NULL;
	size_t slen = 0;
	eng_stream *fresh = NULL;
	srv__store_op op;

	stream *s = acquire(out, req);
	if (!s)
		return;
	if (api_stream_parse_reset(req->api, req->body, req->len, &p)) {
		api_reply_problem(out, &p);
		release(s);
		return;
	}
	pthread_mutex_lock(&s->mu);
	if (s->deleted) {
		pthread_mutex_unlock(&s->mu);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
		goto out;
	}
	write_gate(s);
	if (s->deleted) {
		pthread_mutex_unlock(&s->mu);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
		goto out;
	}
	if (atomic_load(&s->stale) || !s->st) {
		pthread_mutex_unlock(&s->mu);
		stream_resyncing(out, s);
		goto out;
	}
	/* The empty state is built and serialized before the stream is
	 * touched (as apply() does): a failure leaves it as it was. */
	if (!srv__streams_writable(ss) || eng_stream_empty_copy(&fresh, s->st) ||
	    eng_stream_serialize(&state, &slen, fresh)) {
		pthread_mutex_unlock(&s->mu);
		store_unavailable(ss, out);
		goto out;
	}
	eng_stream_counts c0;
	eng_stream_counts_of(&c0, s->st);
	eng_stream_free(s->st);
	s->st = fresh;
	fresh = NULL;
	json_t *j = api_stream_render_read(s->spec, s->id, s->st, NULL, &p);
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_CHECKPOINT;
	op.stream = s->id;
	op.seq = ++s->seq;
	op.data = state;
	op.len = slen;
	op.clear_keys = true;
	op.stale = &s->stale;
	op.updated_ms = s->meta.updated_ms = srv__now_ms();
	checkpointed(s, slen);
	s->inflight++;
	s->pend_updates -= (int64_t)c0.updates;
	s->pend_rows -= (int64_t)c0.rows;
	srv__store_submit(ss->store, &op);
	pthread_mutex_unlock(&s->mu);
	int rc = commit_wait(&op, s);
	bool shared = srv__store_shared(ss->store);
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	s->pend_updates += (int64_t)c0.updates;
	s->pend_rows += (int64_t)c0.rows;
	if (shared)
		s->reload = true; /* memory was reset ahead of the store */
	if (shared && !rc && op.gone)
		s->deleted = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	free(op.stored_reply);
	if (rc) {
		json_decref(j);
		store_unavailable(ss, out);
	} else if (shared && op.gone) {
		json_decref(j);
		forget(s);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
	} else if (j) {
		api_reply_json(out, 200, j);
	} else {
		api_reply_problem(out, &p);
	}
out:
	eng_stream_free(fresh);
	free(state);
	release(s);
}

void srv__streams_delete(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	srv__store_op op;
	stream *s = NULL;
	bool busy = false;

	memset(&op, 0, sizeof op);
	pthread_mutex_lock(&ss->mu);
	long i = ss->open && req->id ? find(ss, req->id) : -1;
	bool lazy = i < 0 && ss->open && req->id && srv__store_shared(ss->store);
	pthread_mutex_unlock(&ss->mu);
	if (lazy && load_one(ss, req->id) < 0) { /* created on another replica? */
		store_unavailable(ss, out);
		return;
	}
	pthread_mutex_lock(&ss->mu);
	i = ss->open && req->id ? find(ss, req->id) : -1;
	/* Ownership first: another principal's stream is a 404 whatever state
	 * the store is in. A damaged stream goes with its owner's DELETE; one
	 * whose owner is lost (deltas without a stream row) stays for the
	 * operator. */
	bool mine = i >= 0 && !ss->v[i]->owner_unknown && strcmp(ss->v[i]->owner, who(req)) == 0;
	bool lost = i >= 0 && ss->v[i]->owner_unknown;
	if (mine) {
		stream *c = ss->v[i];
		pthread_mutex_lock(&c->mu);
		busy = atomic_load(&c->stale) || !srv__streams_writable(ss);
		if (!busy) {
			s = c;
			memmove(ss->v + i, ss->v + i + 1, (ss->n - (size_t)i - 1) * sizeof(*ss->v));
			ss->n--;
			s->refs++;
			s->deleted = true;
			op.type = SRV__OP_DELETE;
			op.stream = s->id;
			op.seq = ++s->seq;
			/* a damaged stream has no state to reload: back as it was */
			op.stale = s->damaged ? NULL : &s->stale;
			s->inflight++;
			srv__store_submit(ss->store, &op);
		}
		pthread_mutex_unlock(&c->mu);
	}
	pthread_mutex_unlock(&ss->mu);
	if (!s) {
		if (busy)
			store_unavailable(ss, out);
		else if (lost)
			stream_damaged(out, req->id);
		else
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s",
			                req->id ? req->id : "(none)");
		return;
	}
	int rc = commit_wait(&op, s);
	if (rc) {
		/* The disk still has the stream: back into the table, stale,
		 * for the healer to reload (or drop, if the delete did land). */
		pthread_mutex_lock(&ss->mu);
		long at = find(ss, s->id);
		pthread_mutex_lock(&s->mu);
		if (at < 0 && insert_at(ss, (size_t)(-at - 1), s) == 0)
			s->deleted = false;
		pthread_mutex_unlock(&s->mu);
		pthread_mutex_unlock(&ss->mu);
	}
	free(op.stored_reply);
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	pthread_cond_broadcast(&s->cv); /* waiters on a key see `deleted` */
	pthread_mutex_unlock(&s->mu);
	if (rc)
		store_unavailable(ss, out);
	else {
		out->status = 204; /* no body */
		out->content_type = API_JSON;
		out->body = NULL;
		out->len = 0;
	}
	release(s);
}

/* ---- history (docs/API.md section 7) --------------------------------------------------------- */

/* Splices ,"dropped":n into a record's text (a JSON object). New text. */
static char *with_dropped(const char *text, size_t dropped)
{
	size_t n = strlen(text);
	char *r = malloc(n + 40);
	if (!r || n < 2)
		return free(r), NULL;
	memcpy(r, text, n - 1);
	snprintf(r + n - 1, 40, ",\"dropped\":%zu}", dropped);
	return r;
}

void srv__streams_checkpoint(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_problem p;
	api_history_ckpt_req cr = {0};
	void *state = NULL;
	size_t slen = 0;
	char *prev = NULL, *text = NULL, *reply = NULL;
	char when[40];
	srv__store_op op;
	pending_key pk = {NULL, NULL};
	eng_stream_counts c0; /* the counts a reset takes away */
	memset(&c0, 0, sizeof c0);

	stream *s = acquire(out, req);
	if (!s)
		return;
	if (api_history_parse_checkpoint(&cr, req->api, req->body, req->len, &p)) {
		api_reply_problem(out, &p);
		goto done;
	}
	const char *key = cr.batch_id ? cr.batch_id : req->idempotency_key;
	pk.key = key;
	int64_t now = srv__now_ms();
	srv__rfc3339_ms(when, sizeof when, now);
	int tries = 0;

	pthread_mutex_lock(&s->mu);
again: /* a shared store: another replica's record took the number */
	for (;;) {
		if (s->deleted) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		/* (and no read waits for committed state: write_gate) */
		if ((!key || !key_pending(s, key)) && s->readers == 0)
			break;
		pthread_cond_wait(&s->cv, &s->mu);
	}
	if (srv__store_broken(ss->store)) {
		store_unavailable(ss, out);
		goto unlock;
	}
	if (srv__store_shared(ss->store)) {
		/* The reading and the record numbers as every replica left them. */
		while (s->inflight > 0)
			pthread_cond_wait(&s->cv, &s->mu);
		int r = s->deleted ? 1 : sync_stream(s);
		if (!r && refresh_ckpts(s))
			r = -1;
		if (r > 0) {
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
			goto unlock;
		}
		if (r < 0) {
			store_unavailable(ss, out);
			goto unlock;
		}
	}
	if (atomic_load(&s->stale) || !s->st) {
		stream_resyncing(out, s);
		goto unlock;
	}
	if (key) {
		int r = srv__store_key_get(ss->store, s->id, key, &prev);
		if (r == -2) {
			key_damaged(s, out);
			goto unlock;
		}
		if (r < 0) {
			store_unavailable(ss, out);
			goto unlock;
		}
		if (r == 1) {
			reply_text(out, 201, prev);
			goto unlock;
		}
	}
	int64_t n = s->ckpts.next_n;
	if (!(text = api_history_checkpoint_record(s->spec, s->id, s->st, n, cr.step, cr.label,
	                                           when, &p))) {
		api_reply_problem(out, &p);
		goto unlock;
	}
	if (srv__ckpts_reserve(&s->ckpts)) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto unlock;
	}
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_NOTE;
	if (cr.reset) {
		/* The epoch-end pattern: the reading above, then empty, in one
		 * transaction (the step series stays: it is history). */
		eng_stream_counts_of(&c0, s->st);
		if (eng_stream_reset(s->st) || eng_stream_serialize(&state, &slen, s->st)) {
			store_unavailable(ss, out);
			goto unlock;
		}
		op.type = SRV__OP_CHECKPOINT;
		op.data = state;
		op.len = slen;
		op.clear_keys = true;
		checkpointed(s, slen);
	}
	int64_t keep_from;
	size_t dropped = srv__ckpts_add(&s->ckpts, cr.step, n, text, ss->lim.history_checkpoints,
	                                &keep_from);
	const char *stored = text;
	text = NULL; /* the list owns it; it lives while we hold the mutex */
	/* the record may be the one just dropped (history_checkpoints 0 is
	 * refused by the config, so it is not) */
	if (!(reply = with_dropped(stored, dropped))) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto unlock;
	}
	op.stream = s->id;
	/* A note writes no delta, so it takes no seq: a stream's deltas stay
	 * numbered one after another, which the load checks. */
	op.seq = op.type == SRV__OP_NOTE ? s->seq : ++s->seq;
	op.key = key;
	op.reply = reply;
	op.ckpt_n = n;
	op.ckpt_step = cr.step;
	op.ckpt_keep_from = keep_from;
	op.stale = &s->stale;
	op.updated_ms = s->meta.updated_ms = now;
	char *body_copy = NULL;
	if (!(body_copy = strdup(stored))) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto unlock;
	}
	op.ckpt_body = body_copy; /* the list's text may go with a later drop */
	if (key) {
		pk.next = s->keys;
		s->keys = &pk;
	}
	s->inflight++;
	s->pend_updates -= (int64_t)c0.updates;
	s->pend_rows -= (int64_t)c0.rows;
	srv__store_submit(ss->store, &op);
	pthread_mutex_unlock(&s->mu);

	int rc = commit_wait(&op, s);
	free(body_copy);

	pthread_mutex_lock(&s->mu);
	s->inflight--;
	s->pend_updates += (int64_t)c0.updates;
	s->pend_rows += (int64_t)c0.rows;
	if (key)
		key_remove(s, &pk);
	if (srv__store_shared(ss->store))
		s->reload = true; /* the op took no seq in the store (or reset it) */
	pthread_cond_broadcast(&s->cv);
	if (!rc && op.taken && ++tries < 64) {
		/* Nothing was written: read the records as they are now and
		 * number this one after them (the store decides, see store.h). */
		free(op.stored_reply);
		free(reply);
		free(state);
		reply = NULL;
		state = NULL;
		goto again;
	}
	pthread_mutex_unlock(&s->mu);
	if (rc || op.taken) {
		store_unavailable(ss, out);
	} else if (op.gone) {
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
	} else if (op.replayed && op.stored_reply) {
		reply_text(out, 201, op.stored_reply); /* another replica took the key first */
	} else {
		out->status = 201;
		out->content_type = API_JSON;
		out->body = reply;
		out->len = strlen(reply);
		reply = NULL;
	}
	free(op.stored_reply);
	goto done;
unlock:
	pthread_mutex_unlock(&s->mu);
done:
	free(prev);
	free(text);
	free(reply);
	free(state);
	api_history_ckpt_req_clear(&cr);
	release(s);
}

/* Link: <...>; rel="next" for the page after `next`. */
static void link_next(api_reply *out, const char *id, const api_history_query *q, const char *next)
{
	char buf[512];
	if (!next[0] || out->status != 200)
		return;
	int n = snprintf(buf, sizeof buf,
	                 "</v1/streams/%s/history?series=%s&format=%s&from=%lld&to=%lld&limit=%lld"
	                 "&after=%s>; rel=\"next\"",
	                 id, q->checkpoints ? "checkpoints" : "steps", q->csv ? "csv" : "json",
	                 (long long)q->from, (long long)q->to, (long long)q->limit, next);
	if (n > 0 && (size_t)n < sizeof buf)
		out->link = strdup(buf);
}

void srv__streams_history(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_history_query q = API_HISTORY_QUERY_INIT;
	char after[API_HISTORY_CURSOR_MAX + 16], next[API_HISTORY_CURSOR_MAX];
	const char **texts = NULL;

	api_problem p;
	if (api_query_history(&q, req->query, after, sizeof after, &p)) {
		api_reply_problem(out, &p);
		return;
	}
	stream *s = acquire(out, req);
	if (!s)
		return;
	next[0] = '\0';
	pthread_mutex_lock(&s->mu);
	if (wait_committed(s)) {
		pthread_mutex_unlock(&s->mu);
		store_unavailable(ss, out);
		goto out;
	}
	if (atomic_load(&s->stale) || !s->st) {
		pthread_mutex_unlock(&s->mu);
		stream_resyncing(out, s);
		goto out;
	}
	int r = refresh_for_read(s);
	if (!r && q.checkpoints && refresh_ckpts(s))
		r = -1;
	if (r) {
		pthread_mutex_unlock(&s->mu);
		if (r > 0) {
			forget(s);
			api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
		} else {
			store_unavailable(ss, out);
		}
		goto out;
	}
	if (!q.checkpoints) {
		(void)api_history_steps(out, next, s->spec, s->st, &q);
	} else {
		const srv__ckpts *l = &s->ckpts;
		size_t i = q.has_after ? srv__ckpts_after(l, q.after_step, q.after_n)
		                       : srv__ckpts_after(l, q.from, -1);
		while (i < l->len && l->v[i].step < q.from)
			i++;
		size_t cap = (size_t)q.limit, k = 0;
		if (!(texts = malloc(cap * sizeof(*texts)))) {
			pthread_mutex_unlock(&s->mu);
			api_reply_error(out, 503, "out_of_memory", "out of memory");
			goto out;
		}
		for (; i < l->len && l->v[i].step <= q.to; i++) {
			if (k == cap) {
				const srv__ckpt *last = &l->v[i - 1];
				snprintf(next, sizeof next, "c%lld.%lld", (long long)last->step,
				         (long long)last->n);
				break;
			}
			texts[k++] = l->v[i].text;
		}
		(void)api_history_checkpoints(out, s->spec, texts, k, next, q.csv);
	}
	pthread_mutex_unlock(&s->mu);
	link_next(out, s->id, &q, next);
out:
	free(texts);
	release(s);
}

/* ---- metadata (docs/API.md section 8) ------------------------------------------------------ */

void srv__streams_patch(api_reply *out, const srv_request *req)
{
	srv__streams *ss = req->streams;
	api_problem p;
	api_meta n = {0};
	char *text = NULL;
	json_t *j = NULL;
	srv__store_op op;

	stream *s = acquire(out, req);
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	write_gate(s);
	/* A shared store: every replica's writes and patches (the reply has
	 * the counts; a gone stream is 404 below). */
	if (srv__store_shared(ss->store) && refresh_for_read(s) < 0) {
		pthread_mutex_unlock(&s->mu);
		store_unavailable(ss, out);
		goto out;
	}
	if (s->deleted) {
		pthread_mutex_unlock(&s->mu);
		api_reply_error(out, 404, "unknown_stream", "no stream with id %s", s->id);
		goto out;
	}
	if (srv__store_broken(ss->store)) {
		pthread_mutex_unlock(&s->mu);
		store_unavailable(ss, out);
		goto out;
	}
	if (atomic_load(&s->stale) || !s->st) {
		pthread_mutex_unlock(&s->mu);
		stream_resyncing(out, s);
		goto out;
	}
	if (api_meta_copy(&n, &s->meta) || api_meta_patch(&n, req->api, req->body, req->len, &p)) {
		pthread_mutex_unlock(&s->mu);
		if (!n.created_ms)
			api_problem_set(&p, 503, "out_of_memory", "", "out of memory");
		api_reply_problem(out, &p);
		goto out;
	}
	eng_stream_counts c;
	eng_stream_counts_of(&c, s->st);
	if (!(text = api_meta_text(&n)) ||
	    !(j = api_stream_summary(s->spec, s->id, &n, &c, NULL))) {
		pthread_mutex_unlock(&s->mu);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		goto out;
	}
	api_meta_clear(&s->meta);
	s->meta = n;
	memset(&n, 0, sizeof n);
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_NOTE;
	op.stream = s->id;
	/* (a shared store's cache seq moves only by folding the store's deltas) */
	op.seq = srv__store_shared(ss->store) ? s->seq : ++s->seq;
	op.meta = text;
	op.updated_ms = s->meta.updated_ms;
	op.stale = &s->stale;
	s->inflight++;
	srv__store_submit(ss->store, &op);
	pthread_mutex_unlock(&s->mu);
	int wrc = srv__store_wait(ss->store, &op);
	pthread_mutex_lock(&s->mu);
	s->inflight--;
	pthread_cond_broadcast(&s->cv); /* reads waiting for committed state */
	pthread_mutex_unlock(&s->mu);
	if (wrc) {
		store_unavailable(ss, out);
	} else {
		api_reply_json(out, 200, j);
		j = NULL;
	}
out:
	json_decref(j);
	api_meta_clear(&n);
	free(text);
	release(s);
}

/* ---- expiry: ttl_s -------------------------------------------------------------------- */

/* Deletes the stream at table index i (ss->mu held) as DELETE would, and
 * waits for it with ss->mu released. Returns 0 when deleted. */
static int expire_at(srv__streams *ss, size_t i)
{
	srv__store_op op;
	stream *s = ss->v[i];
	memset(&op, 0, sizeof op);
	memmove(ss->v + i, ss->v + i + 1, (ss->n - i - 1) * sizeof(*ss->v));
	ss->n--;
	s->refs++;
	pthread_mutex_lock(&s->mu);
	s->deleted = true;
	op.type = SRV__OP_DELETE;
	op.stream = s->id;
	op.seq = ++s->seq;
	srv__store_submit(ss->store, &op);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_unlock(&ss->mu);
	int rc = srv__store_wait(ss->store, &op);
	free(op.stored_reply);
	pthread_mutex_lock(&s->mu);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	release(s);
	pthread_mutex_lock(&ss->mu);
	return rc;
}

/* srv__store_expire's callback: a stream this replica's sweep deleted
 * from a shared store leaves the table (when cached) and is counted. */
static void on_expired(void *arg, const char *id)
{
	srv__streams *ss = arg;
	pthread_mutex_lock(&ss->mu);
	ss->expired++;
	long i = find(ss, id);
	stream *s = i >= 0 ? ss->v[i] : NULL;
	if (s)
		s->refs++;
	pthread_mutex_unlock(&ss->mu);
	srv_log(SRV_LOG_INFO, NULL, "stream %s expired (ttl_s)", id);
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->deleted = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	forget(s);
	release(s);
}

size_t srv__streams_expire(srv__streams *ss, int64_t now_ms)
{
	size_t n = 0;
	pthread_mutex_lock(&ss->mu);
	if (ss->open && srv__store_shared(ss->store)) {
		/* Any replica's sweep deletes a due stream, in the store. */
		pthread_mutex_unlock(&ss->mu);
		if (srv__store_broken(ss->store))
			return 0;
		int r = srv__store_expire(ss->store, now_ms, on_expired, ss);
		return r > 0 ? (size_t)r : 0;
	}
	if (!ss->open) {
		pthread_mutex_unlock(&ss->mu);
		return 0;
	}
	for (size_t i = 0; i < ss->n && !srv__store_broken(ss->store);) {
		stream *s = ss->v[i];
		pthread_mutex_lock(&s->mu);
		bool due = !s->damaged && s->st && !atomic_load(&s->stale) && s->inflight == 0 &&
		           s->meta.ttl_s > 0 && s->keys == NULL &&
		           now_ms - s->meta.updated_ms >= s->meta.ttl_s * 1000;
		pthread_mutex_unlock(&s->mu);
		if (!due) {
			i++;
			continue;
		}
		char id[sizeof s->id];
		snprintf(id, sizeof id, "%s", s->id);
		if (expire_at(ss, i) == 0) {
			n++;
			ss->expired++;
			srv_log(SRV_LOG_INFO, NULL, "stream %s expired (ttl_s)", id);
		}
		/* the table may have changed while ss->mu was released */
		long at = find(ss, id);
		i = at >= 0 ? (size_t)at + 1 : (size_t)(-at - 1);
	}
	pthread_mutex_unlock(&ss->mu);
	return n;
}

/* ---- per-stream gauges (docs/API.md section 6) ------------------------------------------------- */
/*
 * Opt-in (--metrics-streams): for the streams with every --metrics-streams-tag
 * (at most --metrics-streams-max, the most recently updated first), the
 * gauges lossd_stream_auc, lossd_stream_loss and lossd_stream_count with the
 * labels stream (id), name and one per --metrics-labels key (the tag's value,
 * "" when absent; '.' and '-' in the key become '_'; a key that starts
 * with a digit or is "stream" or "name" gets "tag_" before it). An undefined AUC or loss leaves that series out for the
 * scrape. Each scrape computes every reading, so the cap bounds its cost.
 */

/* The gauges' text: at most this much (about 200 bytes per stream and
 * family at --metrics-streams-max). */
#define GAUGES_TEXT_MAX ((size_t)64 << 20)
/* A label's text: an id, a name and the tags the operator lists. */
#define GAUGE_LABELS_MAX ((size_t)64 << 10)

static void gput(api_dynbuf *g, const char *s, size_t n)
{
	api_dynbuf_add(g, s, n); /* an error sticks: checked once at the end */
}

static void gputs(api_dynbuf *g, const char *s)
{
	gput(g, s, strlen(s));
}

/* A label value, escaped as the text format wants (\\, \", \n). */
static void gval(api_dynbuf *g, const char *v)
{
	gput(g, "\"", 1);
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			gput(g, "\\", 1);
		if (*v == '\n')
			gput(g, "\\n", 2);
		else
			gput(g, v, 1);
	}
	gput(g, "\"", 1);
}

/* A tag key as a label name. */
static void gname(api_dynbuf *g, const char *k, size_t n)
{
	if ((n && k[0] >= '0' && k[0] <= '9') || !strcmp(k, "stream") || !strcmp(k, "name"))
		gput(g, "tag_", 4); /* a label name, never one of ours twice */
	for (size_t i = 0; i < n; i++)
		gput(g, k[i] == '.' || k[i] == '-' ? "_" : k + i, 1);
}

typedef struct gent {
	stream *s;
	int64_t updated;
	double auc, loss;
	int64_t count;
	char *labels; /* {stream="...",...} */
} gent;

static int gent_cmp(const void *x, const void *y)
{
	const gent *a = x, *b = y;
	if (a->updated != b->updated)
		return a->updated > b->updated ? -1 : 1;
	return strcmp(a->s->id, b->s->id);
}

/* True when m has every KEY:VALUE line of tags. */
static bool has_all_tags(const api_meta *m, const char *tags)
{
	char k[API_META_MAX_KEY + 1], v[4 * API_META_MAX_VALUE + 1];
	for (const char *l = tags; l && *l;) {
		size_t n = strcspn(l, "\n");
		const char *colon = memchr(l, ':', n);
		if (!colon || (size_t)(colon - l) > API_META_MAX_KEY ||
		    n - (size_t)(colon - l) - 1 > sizeof v - 1)
			return false;
		memcpy(k, l, (size_t)(colon - l));
		k[colon - l] = '\0';
		memcpy(v, colon + 1, n - (size_t)(colon - l) - 1);
		v[n - (size_t)(colon - l) - 1] = '\0';
		if (!api_meta_has_tag(m, k, v))
			return false;
		l += n + (l[n] == '\n');
	}
	return true;
}

static void gfamily(api_dynbuf *g, const gent *v, size_t n, int which)
{
	static const char *const names[] = {"lossd_stream_auc", "lossd_stream_loss",
	                                    "lossd_stream_count"};
	static const char *const helps[] = {
	        "The stream's AUC (its reading; absent while undefined).",
	        "The stream's running loss (absent without a loss or while undefined).",
	        "Rows the stream has seen since its last reset."};
	char line[96];
	snprintf(line, sizeof line, "# HELP %s ", names[which]);
	gputs(g, line);
	gputs(g, helps[which]);
	snprintf(line, sizeof line, "\n# TYPE %s gauge\n", names[which]);
	gputs(g, line);
	for (size_t i = 0; i < n; i++) {
		double x = which == 0 ? v[i].auc : which == 1 ? v[i].loss : (double)v[i].count;
		if (!isfinite(x) || !v[i].labels)
			continue;
		char num[64];
		snprintf(num, sizeof num, " %.17g\n", x);
		gputs(g, names[which]);
		gputs(g, v[i].labels);
		gputs(g, num);
	}
}

char *srv__streams_gauges(srv__streams *ss)
{
	if (!ss)
		return NULL;
	api_dynbuf g;
	gent *v = NULL;
	size_t n = 0;

	pthread_mutex_lock(&ss->mu);
	if (!ss->open || !ss->lim.metrics_streams) {
		pthread_mutex_unlock(&ss->mu);
		return NULL;
	}
	if (ss->n && !(v = calloc(ss->n, sizeof(*v)))) {
		pthread_mutex_unlock(&ss->mu);
		return NULL;
	}
	for (size_t i = 0; i < ss->n; i++) {
		stream *s = ss->v[i];
		if (s->damaged)
			continue;
		pthread_mutex_lock(&s->mu);
		bool ok = s->st && has_all_tags(&s->meta, ss->lim.metrics_tags);
		int64_t up = s->meta.updated_ms;
		pthread_mutex_unlock(&s->mu);
		if (!ok)
			continue;
		s->refs++;
		v[n++] = (gent){s, up, NAN, NAN, 0, NULL};
	}
	pthread_mutex_unlock(&ss->mu);
	qsort(v, n, sizeof(*v), gent_cmp);
	size_t keep = n < ss->lim.metrics_max ? n : ss->lim.metrics_max;
	for (size_t i = 0; i < keep; i++) {
		stream *s = v[i].s;
		api_dynbuf l;
		api_dynbuf_init(&l, GAUGE_LABELS_MAX);
		pthread_mutex_lock(&s->mu);
		bool read =
		        s->st && !s->deleted &&
		        api_stream_figures(s->spec, s->st, &v[i].auc, &v[i].loss, &v[i].count) == 0;
		gputs(&l, "{stream=");
		gval(&l, s->id);
		gputs(&l, ",name=");
		gval(&l, api_stream_spec_name(s->spec));
		for (const char *k = ss->lim.metrics_labels; k && *k;) {
			size_t kn = strcspn(k, "\n");
			char key[API_META_MAX_KEY + 1];
			snprintf(key, sizeof key, "%.*s", (int)kn, k);
			gputs(&l, ",");
			gname(&l, key, strlen(key));
			gputs(&l, "=");
			const char *val = "";
			for (size_t t = 0; t < s->meta.ntags; t++)
				if (!strcmp(s->meta.key[t], key))
					val = s->meta.val[t];
			gval(&l, val);
			k += kn + (k[kn] == '\n');
		}
		gputs(&l, "}");
		pthread_mutex_unlock(&s->mu);
		if (read && !api_dynbuf_error(&l))
			v[i].labels = api_dynbuf_take(&l, NULL);
		api_dynbuf_free(&l);
	}
	api_dynbuf_init(&g, GAUGES_TEXT_MAX);
	for (int f = 0; f < 3; f++)
		gfamily(&g, v, keep, f);
	for (size_t i = 0; i < n; i++) {
		free(v[i].labels);
		release(v[i].s);
	}
	free(v);
	char *text = api_dynbuf_error(&g) ? NULL : api_dynbuf_take(&g, NULL);
	api_dynbuf_free(&g);
	return text;
}
