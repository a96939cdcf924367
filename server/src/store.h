/*
 * store.h - private: the durable home of streams. One interface, the
 * srv__store_* functions below, over two backends picked by a store URL
 * (srv__store_open_url, docs/API.md section 10):
 *   sqlite, sqlite:DIR      an SQLite database (DIR/lossd.db) written in
 *                           groups (group commit by a committer thread): store.c
 *   postgresql://...        PostgreSQL through libpq, shared by any number
 *                           of replicas: store_pg.c
 * Every srv__store_* function has the same contract for both; store.c's
 * functions forward to the backend's table when the store is not SQLite.
 *
 * See store.c's top comment for the schema, the group commit and what a
 * finished op guarantees. streams.c is the only user.
 */
#ifndef LOSSD_SERVER_STORE_H
#define LOSSD_SERVER_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv__store srv__store;

enum srv__store_op_type {
	SRV__OP_CREATE = 1, /* new stream row: owner, config, data = empty state at seq */
	SRV__OP_DELTA,      /* one delta (a serialized stream state to merge) at seq */
	SRV__OP_CHECKPOINT, /* the full state at seq; deltas up to seq are dropped */
	SRV__OP_DELETE,     /* the stream, its deltas and its idempotency keys go */
	SRV__OP_NOTE,       /* the state is unchanged: only the key, checkpoint
	                     * record and metadata below are written */
};

/*
 * One unit of work for a group commit. Lives in the submitting thread
 * (usually on its stack) from srv__store_submit until srv__store_wait
 * returns, or until on_done is called; every pointer in it is borrowed
 * for that long.
 */
typedef struct srv__store_op {
	int type;           /* enum srv__store_op_type */
	const char *stream; /* stream id */
	int64_t seq;        /* the stream's sequence number after this op */
	const char *owner;  /* CREATE: principal ("" when anonymous) */
	const char *config; /* CREATE: canonical config JSON */
	const void *data;   /* CREATE, DELTA, CHECKPOINT: engine bytes */
	size_t len;
	bool clear_keys;   /* CHECKPOINT: forget the stream's idempotency keys */
	const char *key;   /* idempotency key to record with this op, or NULL */
	const char *reply; /* the record stored with key (opaque text: streams.c
	                    * keeps a digest of the body in it) */
	/* A second key recorded with the op, or NULL: a merge's "state:<id>"
	 * (applied once per stream). Same rules as key. The PostgreSQL backend
	 * writes its own reply (the committed counts) after reply's digest line,
	 * and decides key2 in the same transaction (replayed, "applied": false). */
	const char *key2;
	const char *reply2;
	/* Shared stores (srv__store_shared) only: */
	const void *delta;   /* CHECKPOINT standing for an update: the update's own */
	size_t delta_len;    /* bytes, written instead when another replica moved on */
	int64_t add_updates; /* DELTA, CHECKPOINT of an update: the update's counts */
	int64_t add_rows;
	int64_t committed_seq; /* out: the seq the op took in the store */
	char *stored_reply;    /* out, new (free()): the reply to send (see replayed) */
	bool replayed;         /* out: key was already used; not applied, stored_reply
	                        * is the first request's reply */
	bool gone;             /* out: the stream no longer exists; not applied */
	bool taken;            /* out: ckpt_n is another request's record (another
	                        * replica numbered one meanwhile); nothing of the op
	                        * was written: read the records again and renumber */
	/* History (docs/API.md section 7) and metadata (section 8), written in the
	 * same transaction as the rest of the op: */
	const char *ckpt_body;  /* a checkpoint record to add, or NULL */
	int64_t ckpt_n;         /* its number in the stream */
	int64_t ckpt_step;      /* its step */
	int64_t ckpt_keep_from; /* records numbered below this are dropped */
	const char *meta;       /* CREATE, NOTE: the metadata JSON to store, or NULL */
	int64_t updated_ms;     /* the stream's new updated_at (ms), or 0 */
	/* Set to true (when not NULL) the moment the op fails, before done:
	 * the stream's memory holds an op the disk refused. */
	atomic_bool *stale;
	/* NULL: the submitter learns the outcome from srv__store_wait. Else
	 * (SQLite only, never with srv__store_wait) the committer calls
	 * on_done(op) once the outcome is known (rc set, stale marked), on
	 * its own thread with no lock of the store held, also for an op
	 * refused at submit (or the healer does, on its thread, for ops it
	 * fails as it takes the queue of a broken store): never on the submitter's thread, so the
	 * submitter may hold locks on_done takes. */
	void (*on_done)(struct srv__store_op *op);
	/* A CHECKPOINT with data NULL (SQLite only): its bytes are asked for
	 * when its group is written, on the committer's thread with no lock
	 * of the store held, and only when no later op of the group covers it.
	 * resolve(op, final) sets data and len to the stream's state at seq
	 * and returns 0; when the stream has moved past seq it returns 1 (not
	 * when final: the committer then takes the ops queued since into the
	 * group, the stream's newer op among them, and asks that one), or
	 * makes op the DELTA of its own update (type, data, len) and returns
	 * 0; -1: the group fails. A hot stream so serializes its state once
	 * per group, not once per update. */
	int (*resolve)(struct srv__store_op *op, bool final);
	/* Set by the committer; read them after srv__store_wait (or in
	 * on_done). */
	int rc; /* 0, or -1 when the group's transaction failed */
	bool done;
	struct srv__store_op *next;
	void *waiter; /* private to the backend (store.c, store_pg.c): the condition its
	               * waiter sleeps on */
} srv__store_op;

/*
 * Opens (creating) data_dir/lossd.db, creating data_dir itself when
 * missing. Main thread. Returns 0 or -1
 * (reason written to err, errlen bytes).
 */
int srv__store_open(srv__store **out, const char *data_dir, char *err, size_t errlen);

/* How a store URL's backend connects (ignored by SQLite but data_dir). */
typedef struct srv__store_opts {
	const char *data_dir;      /* sqlite: the directory when the URL names none */
	int connections;           /* postgresql: connections per process */
	const char *password_file; /* postgresql: the password in a file, or NULL */
	int timeout_ms;            /* postgresql: statement and connect timeout */
	bool check_later;          /* sqlite: quick_check beside the load (check_wait) */
	int commit_delay_us;       /* sqlite: a leader's longest wait for a fuller group
	                            * (store.c, "Grouping"); 0: none */
} srv__store_opts;

#define SRV__STORE_COMMIT_DELAY_US 1000

#define SRV__STORE_OPTS_INIT                                                                       \
	{                                                                                          \
		"./data", 4, NULL, 10000, false, SRV__STORE_COMMIT_DELAY_US                        \
	}

/*
 * Opens the store a URL names: "sqlite" (o->data_dir), "sqlite:DIR" or
 * "postgresql://..." / "postgres://..." (libpq's URI). Main thread.
 * Returns 0 or -1 (reason written to err, errlen bytes).
 */
int srv__store_open_url(srv__store **out, const char *url, const srv__store_opts *o, char *err,
                        size_t errlen);

/*
 * With o->check_later, a SQLite store whose tables all exist is opened
 * before its PRAGMA quick_check has finished: the check runs on a thread
 * of its own, beside srv__store_load_all, and the commit marker is
 * written once it passed. This waits for it: 0 when it passed (or ran at
 * open, or another backend), else -1 with the refusal written to err.
 * Must be called, and return 0, before the store takes an op or its
 * loaded streams are served. Main thread.
 */
int srv__store_check_wait(srv__store *st, char *err, size_t errlen);

/* Closes the database. Accepts NULL. Main thread, after every submitter
 * has returned from srv__store_wait and every on_done has been called. */
void srv__store_close(srv__store *st);

/*
 * Load callbacks: on_stream once per stream (state bytes borrowed for the
 * call) returning a handle, or NULL to stop with an error; then on_delta
 * for each of that stream's deltas in seq order (every delta stored, also
 * any at or below the checkpoint's seq, which should not exist: the caller
 * checks the sequence), returning 0 or -1 (stop). config is NULL when the
 * stream's row, or (srv__store_load) one of its idempotency records, fails
 * its checksum (SQLite; store.c "Damage"): the caller quarantines it.
 */
typedef void *(*srv__store_stream_fn)(void *arg, const char *id, const char *owner,
                                      const char *config, const void *state, size_t len,
                                      int64_t seq);
typedef int (*srv__store_delta_fn)(void *arg, void *handle, int64_t seq, const void *data,
                                   size_t len);

/*
 * Reads every stream (only_id == NULL) or the one named only_id, in id
 * order, through the callbacks. Returns 0, -1 on a database error or when
 * a callback stopped. Any thread (uses the reader connection).
 */
int srv__store_load(srv__store *st, const char *only_id, srv__store_stream_fn on_stream,
                    srv__store_delta_fn on_delta, void *arg);

/*
 * Reads every stream as srv__store_load(st, NULL, ...) does, with up to
 * `threads` threads at once (at most SRV__STORE_LOAD_THREADS; this one
 * included), each on a read connection of its own: the callbacks are
 * called from several threads, never two at once for one stream, and in
 * no particular order across streams. For start-up only: no op may be
 * submitted meanwhile (the loaders do not share one read transaction).
 * Another backend loads with its own load(). Returns 0, -1 on a database
 * error or when a callback stopped (the other loaders stop too). Main
 * thread.
 */
#define SRV__STORE_LOAD_THREADS 8
int srv__store_load_all(srv__store *st, int threads, srv__store_stream_fn on_stream,
                        srv__store_delta_fn on_delta, void *arg);

/*
 * The name of the SQLite VFS that maps a database file whole for the
 * start-up reads (store_vfs.c; SQLite's own mapping stops at 2 GiB), or
 * NULL (then the default VFS) when it cannot be registered. A connection
 * on it must be closed before anything writes the file. Any thread.
 */
const char *srv__store_map_vfs(void);

/*
 * The name of the SQLite VFS whose connections gather their writes to the
 * WAL into one write per sync (store_vfs.c), or NULL (then the default
 * VFS) when it cannot be registered. The writer's: a connection on it must
 * run with synchronous=FULL. Any thread.
 */
const char *srv__store_wal_vfs(void);

/* Writes to a WAL gathered so far by srv__store_wal_vfs connections, and
 * the writes they became (all connections, since the process started).
 * For tests and benchmarks. Any thread. */
void srv__store_vfs_stats(uint64_t *gathered, uint64_t *written);

/*
 * Calls fn(arg, id) once per stream id that has deltas but no stream row
 * (damage: the row was lost), in id order; fn returns 0 or -1 (stop).
 * Returns 0, or -1 on a database error or when fn stopped. For start-up
 * only, as srv__store_load_all (it reads on a mapped connection of its
 * own, srv__store_map_vfs). Main thread.
 */
typedef int (*srv__store_orphan_fn)(void *arg, const char *id);
int srv__store_orphans(srv__store *st, srv__store_orphan_fn fn, void *arg);

/*
 * Calls fn(arg, id, seq) once per stream with its last committed seq (the
 * seq of its last create, delta or checkpoint), in id order; a stream
 * written before heads were kept has none. fn returns 0 or -1 (stop).
 * Returns 0 or -1. SQLite only (0 without calls elsewhere). Any thread.
 */
typedef int (*srv__store_head_fn)(void *arg, const char *id, int64_t seq);
int srv__store_heads(srv__store *st, srv__store_head_fn fn, void *arg);

/*
 * Looks up the reply recorded with (stream, key). Returns 1 and *reply
 * (new, free()) when found, 0 when not, -1 on a database error, -2 when
 * the record fails its checksum (SQLite: never served; the caller
 * quarantines the stream). Sees every group committed before the call.
 * Any thread.
 */
int srv__store_key_get(srv__store *st, const char *stream, const char *key, char **reply);

/* Queues op for the next group, or fails it at once (rc -1, done,
 * *stale set; with on_done, finished by the committer) while the store is
 * broken or *op->stale is already set. Never blocks on I/O: callable with a stream's mutex held (lock
 * order: stream, then the store's queue). Any thread. */
void srv__store_submit(srv__store *st, srv__store_op *op);

/* Blocks until op's group is committed (and fsynced) or failed. Returns
 * op->rc. Not for an op with on_done. Any thread, with no stream mutex
 * held. */
int srv__store_wait(srv__store *st, srv__store_op *op);

/*
 * History and metadata at load, after srv__store_load: on_ckpt for every
 * checkpoint record in (stream, n) order, on_meta for every metadata row.
 * A callback returning -1 stops the load (-1). Any thread (reader).
 * SQLite: a row that fails its checksum (store.c, "Damage") comes with
 * NULL text under the stream it belongs to: on_ckpt(body NULL) for a
 * checkpoint record, or with n = -1 for an idempotency record (every one
 * is checked here), on_meta(meta NULL) for a meta row, or for a stream
 * whose meta row is missing.
 */
typedef int (*srv__store_ckpt_fn)(void *arg, const char *stream, int64_t n, int64_t step,
                                  const char *body);
typedef int (*srv__store_meta_fn)(void *arg, const char *stream, const char *meta,
                                  int64_t updated_ms);
int srv__store_load_extra(srv__store *st, srv__store_ckpt_fn on_ckpt, srv__store_meta_fn on_meta,
                          void *arg);

/* Groups committed and ops written since open (for tests and metrics). */
void srv__store_stats(srv__store *st, uint64_t *groups, uint64_t *ops);

/* Milliseconds PRAGMA quick_check took when the store opened (SQLite; 0
 * for other backends). Any thread. */
double srv__store_check_ms(srv__store *st);

/* True from a failed transaction until srv__store_heal commits a probe:
 * meanwhile every op fails (see store.c). Any thread. */
bool srv__store_broken(srv__store *st);

/* True when other processes write the same store (PostgreSQL): a stream's
 * memory is then only a cache, brought up to date by srv__store_sync.
 * Any thread. */
bool srv__store_shared(srv__store *st);

/*
 * Shared stores: brings a cached stream up to date. When the store holds a
 * checkpoint above seq (or seq < 0), calls on_state once, as a load would
 * (its return value becomes the handle), then on_delta for each delta
 * above it; else on_delta(arg, handle, ...) for each delta above seq, in
 * seq order. All in one snapshot. have (nhave, ascending, each above seq)
 * are seqs whose deltas the caller holds already (this process's own
 * committed updates): in the second case they are not read, and on_delta
 * gets data NULL, len 0 at their place. Returns 1, 0 when the stream is
 * gone, -1 on a store error or a callback's. Any thread.
 */
int srv__store_sync(srv__store *st, const char *id, int64_t seq, const int64_t *have, size_t nhave,
                    void *handle, srv__store_stream_fn on_state, srv__store_delta_fn on_delta,
                    void *arg);

/* Shared stores: stores state (the stream's whole state at seq, as every
 * replica folds it) as the stream's checkpoint and drops the deltas up to
 * seq, unless the stored checkpoint is already at or above seq. Takes no
 * seq, so it never races a write. Its own transaction, right away (not a
 * group). Returns 0 or -1. Any thread. */
int srv__store_put_checkpoint(srv__store *st, const char *id, int64_t seq, const void *state,
                              size_t len);

/* Shared stores: one stream's checkpoint records, in n order, through
 * on_ckpt. Returns 0 or -1. Any thread. */
int srv__store_ckpts_of(srv__store *st, const char *id, srv__store_ckpt_fn on_ckpt, void *arg);

/* Shared stores: one stream's metadata row (docs/API.md 8) through on_meta
 * (not called when it has none). Returns 0 or -1. Any thread. */
int srv__store_meta_of(srv__store *st, const char *id, srv__store_meta_fn on_meta, void *arg);

/* What a shared store lists (GET /v1/streams, docs/API.md section 8),
 * with the SQLite path's semantics (streams.c): keys compare bytewise, ties
 * by id, desc reverses both. */
enum srv__store_sort {
	SRV__SORT_ID = 0,
	SRV__SORT_UPDATED, /* updated_ms (created_ms when never updated) */
	SRV__SORT_CREATED, /* created_ms */
	SRV__SORT_NAME,    /* the config's name */
};

typedef struct srv__store_list_q {
	const char *owner;
	int limit;
	int sort; /* enum srv__store_sort */
	bool desc;
	const char *after_id;   /* the cursor: entries after (id) or after (key, id); NULL: none */
	int64_t after_t;        /* the cursor's key under SRV__SORT_UPDATED, _CREATED */
	const char *after_name; /* the cursor's key under SRV__SORT_NAME */
	const char *prefix;     /* name_prefix, or NULL */
	const char *tags;       /* JSON [[key, value], ...]: every tag must match; or NULL */
} srv__store_list_q;

/* A list entry as committed; every pointer borrowed for the call. meta is
 * the metadata text (api_meta_text's, "{}" when the stream has none). */
typedef struct srv__store_listed {
	const char *id, *name, *meta;
	int64_t updates, rows, created_ms, updated_ms;
} srv__store_listed;

/* Returns 0 or -1 (stop). */
typedef int (*srv__store_list_fn)(void *arg, const srv__store_listed *e);

/* Shared stores: the streams q selects, in its order, at most q->limit.
 * Returns how many, or -1. Any thread. */
int srv__store_list(srv__store *st, const srv__store_list_q *q, srv__store_list_fn fn, void *arg);

/* Shared stores: deletes (with everything they keep) the streams whose
 * ttl_s has passed since their updated_ms at now_ms, and calls fn(arg, id)
 * once per stream this call deleted, after its commit. Safe with any
 * number of replicas: each stream is deleted and reported by one call (a
 * stream being written is skipped for now). Returns how many, or -1. Any
 * thread. */
typedef void (*srv__store_expired_fn)(void *arg, const char *id);
int srv__store_expire(srv__store *st, int64_t now_ms, srv__store_expired_fn fn, void *arg);

/* ---- copying a store (lossd --copy-store, copy.c) ---- */

/* One stream with every row the store keeps of it. Pointers borrowed for
 * the callback (export) or the call (import). */
typedef struct srv__store_delta_row {
	int64_t seq;
	void *data;
	size_t len;
} srv__store_delta_row;

typedef struct srv__store_key_row {
	char *key, *reply;
} srv__store_key_row;

typedef struct srv__store_ckpt_row {
	int64_t n, step;
	char *body;
} srv__store_ckpt_row;

typedef struct srv__store_rec {
	const char *id, *owner, *config;
	const void *state; /* the checkpoint, at ckpt_seq */
	size_t len;
	int64_t ckpt_seq, seq;        /* seq: the last delta's (ckpt_seq without deltas) */
	int64_t updates, rows;        /* the counts after seq (import: set by the caller) */
	srv__store_delta_row *deltas; /* above ckpt_seq, in seq order */
	size_t ndeltas;
	srv__store_key_row *keys;
	size_t nkeys;
	srv__store_ckpt_row *ckpts; /* checkpoint records (docs/API.md 7), in n order */
	size_t nckpts;
	char *meta; /* metadata JSON (docs/API.md 8), or NULL */
	int64_t updated_ms;
} srv__store_rec;

typedef int (*srv__store_rec_fn)(void *arg, srv__store_rec *rec);

/* Every stream, in id order, through fn (0, or -1 to stop). Returns 0 or
 * -1. Main thread, with no request being served. */
int srv__store_export(srv__store *st, srv__store_rec_fn fn, void *arg);

/* Writes rec as the stream's only rows (replacing any stream of that id),
 * in one transaction: running a copy twice gives the same store. Returns 0
 * or -1. Main thread, with no request being served. */
int srv__store_import(srv__store *st, const srv__store_rec *rec);

/* Frees what an exporter allocated in rec (deltas, keys, ckpts, meta). */
void srv__store_rec_clear(srv__store_rec *rec);

/*
 * When broken: fails the ops still queued, then tries one small probe
 * transaction (reopening the writer connection if the first try fails).
 * If it commits, the store takes ops again. Returns 0 when the store is
 * writable, -1 when still broken. Blocks on disk I/O. Any thread (the
 * healer, see streams.c). Other backends: 0 unless they report broken.
 */
int srv__store_heal(srv__store *st);

/* Test hook: the next n transactions fail as if the disk had refused them
 * (n < 0: all of them, n == 0: none). SQLite only. Any thread. */
void srv__store_test_fail(srv__store *st, int n);

/* Test hook: while on, a group's leader waits before writing the group
 * (its ops are in flight, the commit running); off lets it go on.
 * SQLite only. Any thread. */
void srv__store_test_hold(srv__store *st, bool on);

/* Test hook: how long a leader that finds `queued` ops waits for a fuller
 * group (seconds; 0: it commits at once), after a group of last_group ops,
 * with submits `gap` seconds apart on average (store.c, "Grouping"). */
double srv__store_test_gather_wait(int queued, uint64_t last_group, double gap, int delay_us);

/* Commit durations: bucket upper bounds in seconds (the last bucket,
 * index SRV__STORE_LAT_BUCKETS, is +Inf). */
#define SRV__STORE_LAT_BUCKETS 13
extern const double srv__store_lat_bounds[SRV__STORE_LAT_BUCKETS];

typedef struct srv__store_health {
	uint64_t groups, ops; /* as srv__store_stats */
	bool broken;          /* see srv__store_broken */
	uint64_t failures;    /* failed transactions since open */
	uint64_t recoveries;  /* broken -> writable again */
	double running_s;     /* age of the disk operation in progress (a transaction
	                              or a read), 0 if none */
	uint64_t lat[SRV__STORE_LAT_BUCKETS + 1]; /* transactions per duration bucket */
	double lat_sum;                           /* their total duration, seconds */
	char why[160];                            /* the last failure's reason, or "" */
	uint64_t delays;        /* groups whose leader waited for a fuller group */
	double delay_sum;       /* ... the total wait, seconds */
	uint64_t ckpts;         /* WAL checkpoints run by the checkpointer thread */
	uint64_t ckpt_inline;   /* ... by a leader (the WAL was past its bound) */
	uint64_t ckpt_failures; /* WAL checkpoints that failed */
	double ckpt_sum;        /* their total duration, seconds */
	int64_t wal_pages;      /* WAL frames after the last commit */
} srv__store_health;

/* A snapshot of the store's health (other backends: groups, ops and
 * broken only). Any thread; never blocks on I/O. */
void srv__store_health_of(srv__store_health *out, srv__store *st);

/*
 * A backend other than SQLite: one function per srv__store_* function,
 * with that function's contract, on the backend's own handle.
 */
typedef struct srv__store_backend {
	const char *name;
	int (*open)(void **out, const char *url, const srv__store_opts *o, char *err,
	            size_t errlen);
	void (*close)(void *b);
	int (*load)(void *b, const char *only_id, srv__store_stream_fn on_stream,
	            srv__store_delta_fn on_delta, void *arg);
	int (*key_get)(void *b, const char *stream, const char *key, char **reply);
	void (*submit)(void *b, srv__store_op *op);
	int (*wait)(void *b, srv__store_op *op);
	void (*stats)(void *b, uint64_t *groups, uint64_t *ops);
	bool (*broken)(void *b);
	int (*orphans)(void *b, srv__store_orphan_fn fn, void *arg); /* NULL: none */
	int (*sync)(void *b, const char *id, int64_t seq, const int64_t *have, size_t nhave,
	            void *handle, srv__store_stream_fn on_state, srv__store_delta_fn on_delta,
	            void *arg);
	int (*export_all)(void *b, srv__store_rec_fn fn, void *arg);
	int (*import)(void *b, const srv__store_rec *rec);
	int (*list)(void *b, const srv__store_list_q *q, srv__store_list_fn fn, void *arg);
	int (*expire)(void *b, int64_t now_ms, srv__store_expired_fn fn, void *arg);
	/* checkpoint records and metadata (docs/API.md sections 7, 8); a backend
	 * without them (NULL) loads none */
	int (*load_extra)(void *b, srv__store_ckpt_fn on_ckpt, srv__store_meta_fn on_meta,
	                  void *arg);
	int (*ckpts_of)(void *b, const char *id, srv__store_ckpt_fn on_ckpt, void *arg);
	int (*meta_of)(void *b, const char *id, srv__store_meta_fn on_meta, void *arg);
	int (*put_checkpoint)(void *b, const char *id, int64_t seq, const void *state, size_t len);
} srv__store_backend;

/* The PostgreSQL backend (store_pg.c), or NULL when built without libpq. */
const srv__store_backend *srv__store_pg_backend(void);

/* True when url names a store of the PostgreSQL backend. */
bool srv__store_url_is_pg(const char *url);

#endif
