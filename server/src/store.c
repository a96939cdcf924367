/*
 * store.c - durable stream storage: SQLite (data_dir/lossd.db) in WAL mode
 * with synchronous=FULL, written in groups: whatever ops have queued up are
 * committed as ONE transaction (one WAL fsync), then every op of the group
 * learns its outcome.
 *
 * Group commit. One thread of the store, the committer, takes the whole
 * queue, commits it with the lock released and then finishes the group's
 * ops itself: an op with on_done (a stream update, streams.c) is completed
 * right there, on the committer's thread (its reply sent, its connection
 * resumed), and a caller of srv__store_wait (creates, deletes, merges) is
 * woken on a lock and condition of its own (op->waiter, struct waiter),
 * once the committer released mu. Ops queued meanwhile form the next
 * group. So a submitter that does not wait costs no context switch here,
 * and a group of n updates costs the committer's wake-up (none while it
 * finds work) instead of n sleeps and n wake-ups of their threads; the
 * leader/follower scheme before (a waiter led the group and woke the
 * others) had 4 context switches per durable update, this one about 2
 * (the request's hand-off to a store thread, the HTTP thread's wake).
 * The committer's role is `leader`: the healer takes it too (a probe
 * commit), and the committer then waits for it.
 * The committer may wait up to --commit-delay-us for a fuller group when
 * the traffic predicts one ("Grouping", below); a lone writer never waits.
 * Copying the WAL into the database (checkpoints) is off the commit path:
 * a thread of the store does it on its own connection ("WAL checkpoints").
 *
 * Schema:
 *   streams(id PK, owner, config, state BLOB, seq, sum)  the last checkpoint
 *   deltas(stream, data BLOB, seq) PK(stream, seq)   merged in seq order
 *                                                    on top of the checkpoint
 *   keys(stream, key, reply, sum) PK(stream, key)   idempotency records
 * (`sum`: the text rows' checksums, see "Damage").
 * A stream's state is its checkpoint merged with its deltas of larger seq.
 * `deltas` is a rowid table with its key in an index of its own: a row of
 * up to ~4 KB stays on its 4 KiB leaf page, where a WITHOUT ROWID table
 * (an index b-tree, ~1 KB per cell on the page) gave every 2 KB delta an
 * overflow page, twice the pages for start-up to check and read. Rowids
 * follow insertion, so a stream's deltas lie in seq order. Loads read a
 * delta's seq from its row, not from the index (DELTAS_OF). `data` is not
 * the last column: quick_check reads every row's last column, and a blob
 * on its page is copied out whole to be read (2 GB of copies for 10^6
 * deltas) where an integer is not. Stores of older builds (WITHOUT ROWID)
 * are migrated at open, in one transaction ("the deltas table's layout").
 *
 * Why deltas: an update is small (one batch) while a state can be large (an
 * `exact` stream keeps every score), so an update writes a row of its own
 * size; streams.c asks for a checkpoint once the deltas outweigh the state,
 * which bounds both the write amplification and the replay at load.
 *
 * Invariants:
 * - One transaction per group: an op's delta, checkpoint and idempotency
 *   key become durable together or not at all. A submitter learns the
 *   outcome only from srv__store_wait or on_done, after COMMIT returned
 *   (and, with synchronous=FULL in WAL mode, after the WAL was fsynced), so
 *   a 2xx sent after it survives kill -9 and power loss.
 * - Ops of one stream are committed in submission order, and the committer
 *   takes a prefix of the queue: a checkpoint at seq s is never committed
 *   before the deltas and keys of seq <= s (they were submitted before it,
 *   under the stream's mutex).
 * - Within a group a delta covered by a later checkpoint of the same stream
 *   is not written at all (the coalescing that keeps hot streams cheap),
 *   and a checkpoint submitted without its bytes (op->resolve: a hot
 *   stream's update) is asked for them only when nothing later in the
 *   group covers it, latest first (resolve_group), before BEGIN: a hot
 *   stream serializes its state once per group. A stream that moved on
 *   meanwhile makes the group take the queue as it is then (resolve_all):
 *   still a prefix of the queue.
 * - After a failed transaction (disk full, I/O error) the store is
 *   "broken": the group's ops fail, ops still queued fail (the healer
 *   finishes those it finds queued), and every op submitted meanwhile
 *   fails at once (one with on_done is finished by the committer), each
 *   marking its stream stale (srv__store_op.stale) before its waiter is
 *   woken or its on_done runs, so streams.c never shows memory the disk
 *   refused (it reloads a stale stream from disk). An op of a stream
 *   already stale is refused the same way after the heal, until that
 *   reload: it may follow the op that failed.
 *   srv__store_heal (the healer thread in streams.c, every 500 ms) retries:
 *   it takes the leader role, so no group is in flight, commits a probe
 *   transaction (one 64 KiB row of the `probe` table rewritten), reopening
 *   the writer connection if needed, and on success the store takes ops
 *   again. No restart is needed once the disk has room or works again.
 * - Stall detection: the start of the transaction in progress (and of the
 *   reader connection's current use) is kept under `mu`, so /readyz and
 *   /metrics can tell, without touching the disk, that an operation has
 *   run longer than --store-stall-s (a frozen or dying disk blocks rather
 *   than fails). Commit durations go to a histogram.
 *
 * Threads and locks: `mu` guards the queue, done flags, `leader` and the
 * counters; only the holder of the `leader` role (the committer, or the
 * healer; taken and given up under `mu`) uses the writer connection, and
 * on_done runs with no lock of the store held; `rmu` guards the
 * reader connection (key lookups, reloads); the checkpointer thread alone
 * uses its connection `c`, taking `mu` only around its bookkeeping. Lock
 * order: a stream's mutex
 * (streams.c), then `rmu`, then `mu` (held only to note the reader's use
 * and never across I/O, so health snapshots never wait on the disk); a
 * waiter's own lock (struct waiter) is a leaf, never taken with `mu` held.
 *
 * A data dir belongs to one process at a time: lossd.lock next to the
 * database is flock()ed for the store's lifetime (released by the kernel
 * when the process dies, so a kill -9 never leaves it stale), and so is
 * lossd.db itself, so deleting lossd.lock does not let a second lossd in.
 *
 * Damage is detected at open, never served:
 * - every group's transaction also bumps store_info 'generation', and once
 *   COMMIT returned the count is written into lossd.lock ("lossd-commits
 *   N", not synced: after a crash it can only be older than the database).
 *   A database holding fewer commits than the marker (empty, truncated, an
 *   old backup, a lost -wal file) is refused with a message saying so;
 *   deleting lossd.lock accepts it as it is.
 * - PRAGMA quick_check (page structure, truncation, flipped bits in
 *   b-tree pages) runs before anything is served or written; a finding
 *   refuses the start. Its time is logged at start-up (quick_check_ms).
 *   lossd's start-up (srv__store_opts.check_later) runs it on a thread
 *   beside the loaders when every table exists (creating the schema then
 *   writes nothing); the commit marker is written, and the store takes
 *   ops, only once it passed (srv__store_check_wait), and a failure there
 *   is reported in place of any error the load met on the damaged file.
 *   The same thread then scans for deltas without their stream row.
 * - heads(stream, seq) keeps each stream's last committed seq, written
 *   with every op, so a lost tail of deltas (which leaves no gap) shows.
 * - the start-up reads (quick_check and the orphan scan, srv__store_load_all
 *   on a connection per loader thread) map the whole file (LOAD_MMAP on
 *   store_vfs.c's lossd-map VFS); nothing else does. The writer's
 *   connection is on its lossd-wal VFS: a commit's WAL frames reach the
 *   kernel as one write, at the sync.
 * - streams.c checks each stream's rows as it loads them (checksums, the
 *   delta sequence, the head, rows without their stream: srv__store_orphans)
 *   and quarantines what fails.
 * - States and deltas carry a checksum in their bytes (the engine's); the
 *   text rows carry one in a column of their own, `sum` ("row checksums"):
 *   streams (id, owner, config), keys (stream, key, reply), checkpoints
 *   (stream, n, step, body), meta (stream, meta, updated_ms). It is written
 *   by the row's own statement (lossd_rowsum() in its SQL: an upsert sums
 *   the values it keeps, e.g. meta's max(updated_ms)), so it costs a hash
 *   of the row and no statement more. It is checked wherever the row is
 *   read: stream rows by every load and reload, each stream's keys on its
 *   reloads and idempotency lookups (-2 from srv__store_key_get: streams.c
 *   makes the stream stale, the healer's reload quarantines it), and
 *   srv__store_load_extra reads every checkpoint, meta and key row at start
 *   (a failing row names its stream to the callback with NULL text). A row
 *   whose stream id was damaged names no stream: it is traced to the stream
 *   whose id gives its checksum (bad_row_owner), and a stream row with a
 *   checksum but no meta row (creates write both) is damage too.
 *   --copy-store stops at a failing row (srv__store_export). A NULL sum (a
 *   row older builds wrote) is not checked; the column is added at open
 *   (sums_add), and a trigger clears the sum of a meta row an older build
 *   updates in place, the one row it rewrites without a new sum.
 *   PostgreSQL (store_pg.c) has none: its pages carry their own checksums
 *   where the cluster enables them, its rows are read with their stream
 *   (no quick_check-style scan of a file lossd owns), and sharing the SQL
 *   function would mean an extension on the server.
 *
 * Deleted data. SQLite zeroes what a delete frees when secure_delete is on
 * (the default of Debian's build): every delta a checkpoint replaced was
 * then written twice, its rows and overflow pages once more as zeros,
 * which was about a third of the WAL written by 32 streams' updates. The
 * writer runs with secure_delete=FAST (only what lies on pages written
 * anyway is zeroed): a replaced delta's data lives on in the checkpoint
 * that replaced it. An op that forgets data, a delete or a reset (its
 * deltas and idempotency records), turns it on for its own statements
 * (forgets, wipe_freed), so a deleted stream's data is not left on the
 * file's free pages once the WAL is copied into it.
 *
 * Backends: this file is also the store interface (store.h). A store
 * opened by srv__store_open_url on another backend's URL is a bare
 * srv__store whose `be` points at that backend's table; each srv__store_*
 * function below first forwards to it, so the SQLite bodies stay as they
 * are.
 *
 * Not here: what a state means (engine), ownership checks (streams.c).
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "grow.h"
#include "log.h"
#include "lossd/eng.h"
#include "thread.h"

struct srv__store {
	const srv__store_backend *be; /* NULL: this SQLite store; else every call goes there */
	void *impl;                   /* be's handle */
	sqlite3 *w;                   /* writer: the leader only (and open/close) */
	sqlite3 *r;                   /* reader: under rmu */
	sqlite3_stmt *ins_stream, *upd_state, *ins_delta, *del_deltas_upto, *del_stream,
	        *del_deltas, *del_keys, *ins_key, *ins_probe;
	sqlite3_stmt *get_key;
	pthread_mutex_t mu, rmu;
	pthread_cond_t cv_done;
	bool leader, broken;
	int lock_fd;  /* data_dir/lossd.lock, flock()ed: one process per store;
	               * also holds the commit marker (see "Damage") */
	int db_fd;    /* lossd.db itself, flock()ed too (the lock file may go) */
	uint64_t gen; /* commits so far: store_info 'generation'; the leader's */
	sqlite3_stmt *set_gen, *set_head, *del_head;
	double check_ms; /* how long quick_check took at open */
	/* quick_check beside the load (store_open's check_later): its thread,
	 * joined by srv__store_check_wait or close; the marker waits for it */
	pthread_t check_tid;
	bool check_running, check_failed, marker_later;
	char check_why[512];
	/* ... and, once it passed, the scan for deltas without their stream
	 * (srv__store_orphans then hands these over) */
	bool orphans_scanned, orphans_failed;
	char **orphans;
	size_t norphans;
	srv__store_op *head, *tail;
	srv__store_op *rhead, *rtail; /* on_done ops refused while broken (the committer's) */
	uint64_t groups, ops;
	/* the committer (see "Group commit"); commit_stop under mu */
	pthread_t commit_thread;
	bool committer_on, commit_stop;
	pthread_cond_t cv_commit; /* wakes it: an op was queued, the role is free, or stop */
	struct extra *x;          /* history and metadata statements (the last section) */
	/* under mu: health */
	bool committing;                          /* a transaction (group or probe) is running */
	struct timespec t0;                       /* ... since then (CLOCK_MONOTONIC) */
	bool reading;                             /* the reader connection is in use */
	struct timespec r0;                       /* ... since then */
	uint64_t failures;                        /* failed transactions */
	uint64_t recoveries;                      /* broken -> writable again */
	uint64_t lat[SRV__STORE_LAT_BUCKETS + 1]; /* commit durations, per bucket */
	double lat_sum;
	char why[160];   /* the last failure */
	int inject;      /* test hook: fail this many commits (-1: all) */
	bool hold;       /* test hook: a leader waits before committing */
	uint64_t probes; /* the leader's: probe transactions run */
	/* the WAL checkpointer (see "WAL checkpoints") */
	sqlite3 *c;                /* its connection: the checkpointer thread only */
	pthread_t ckpt_thread;     /* running when c is set */
	pthread_cond_t cv_ckpt;    /* wakes it: the WAL grew past ckpt_pages, or stop */
	bool ckpt_stop;            /* under mu */
	int wal_pages;             /* under mu: WAL frames after the last commit */
	int ckpt_from;             /* under mu: wal_pages when the checkpointer last began */
	bool ckpt_busy;            /* under mu: the checkpointer is copying */
	int ckpt_pages, ckpt_hard; /* under mu: CKPT_BYTES, CKPT_HARD_BYTES in pages */
	uint64_t ckpts;            /* under mu: checkpoints run (either thread) */
	uint64_t ckpt_inline;      /* ... of them by a leader: the WAL was past ckpt_hard */
	uint64_t ckpt_failures;    /* under mu: checkpoints that failed */
	double ckpt_sum;           /* under mu: their total duration, seconds */
	/* under mu: grouping (see "Grouping") */
	int queued;               /* ops in the queue (head) */
	uint64_t last_group;      /* the last group's ops */
	double gap;               /* mean time between submits, seconds */
	struct timespec last_sub; /* the last submit */
	bool gathering;           /* a leader waits on cv_gather */
	pthread_cond_t cv_gather;
	int delay_us;     /* the longest wait (0: none) */
	uint64_t delays;  /* groups a leader waited for */
	double delay_sum; /* its total wait, seconds */
	char path[4096];
};

/* WAL checkpoints (see that section): the WAL growth past which the
 * checkpointer copies it, and the WAL size past which a leader does; the
 * writer's page cache. */
#define CKPT_BYTES       (32 << 20)
#define CKPT_HARD_BYTES  (64 << 20)
#define WRITER_CACHE_KIB 32768

const double srv__store_lat_bounds[SRV__STORE_LAT_BUCKETS] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static int extra_open(srv__store *st, char *err, size_t errlen);
static void extra_close(srv__store *st);
static bool sums_missing(sqlite3 *db);
static int sums_add(sqlite3 *db, char *err, size_t errlen);
static int writer_setup(srv__store *st, char *err, size_t errlen);
static int wipe_freed(sqlite3 *w, bool wipe);
static int checkpointer_start(srv__store *st, char *err, size_t errlen);
static void checkpointer_stop(srv__store *st);
static int committer_start(srv__store *st, char *err, size_t errlen);
static void committer_stop(srv__store *st);
static void checkpoint(srv__store *st, sqlite3 *db, bool inline_);
static int extra_write(srv__store *st, const srv__store_op *op);

static const char schema[] =
        "CREATE TABLE IF NOT EXISTS streams(id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
        " config TEXT NOT NULL, state BLOB NOT NULL, seq INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS deltas(stream TEXT NOT NULL, data BLOB NOT NULL,"
        " seq INTEGER NOT NULL, PRIMARY KEY(stream, seq));"
        "CREATE TABLE IF NOT EXISTS keys(stream TEXT NOT NULL, key TEXT NOT NULL,"
        " reply TEXT NOT NULL, PRIMARY KEY(stream, key)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS probe(id INTEGER PRIMARY KEY, n NOT NULL);"
        "CREATE TABLE IF NOT EXISTS heads(stream TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
        " WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS store_info(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
        " WITHOUT ROWID;";

/*
 * A stream's deltas (?1) in seq order, each read whole from its table row:
 * the index (stream, seq) only finds the rowids. The seq returned is the
 * row's own and a row of another stream is left out, so an index entry
 * damaged into pointing at the wrong row reads as a gap or a misplaced
 * delta (streams.c quarantines the stream) rather than as another delta's
 * data under this seq. (SQLite reads a column from the index whenever the
 * index holds it, hence the self-join on rowid: the table's loop is a
 * rowid lookup, with no index to substitute.) Append conditions on i.seq,
 * then " ORDER BY i.seq".
 */
#define DELTAS_OF                                                                                  \
	"SELECT t.seq, t.data FROM deltas AS i CROSS JOIN deltas AS t ON t.rowid = i.rowid"        \
	" WHERE i.stream = ?1 AND +t.stream = ?1"

static void errf(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- damage: the commit marker and the checks at open ------------------------ */

#define MARKER "lossd-commits "

/* The marker in the lock file: how many commits this data dir had
 * acknowledged when it was last written (0: none or unreadable). */
static uint64_t marker_read(int fd)
{
	char buf[64];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if (strncmp(buf, MARKER, strlen(MARKER)) != 0)
		return 0;
	return strtoull(buf + strlen(MARKER), NULL, 10);
}

/* Written after each commit returned (so after its fsync), never synced
 * itself: after a crash it may be older than the database, never newer. */
static void marker_write(int fd, uint64_t gen)
{
	char buf[64];
	int n = snprintf(buf, sizeof buf, MARKER "%llu\n", (unsigned long long)gen);
	if (pwrite(fd, buf, (size_t)n, 0) == n)
		(void)ftruncate(fd, n);
}

/* Rewrites err into the refusal for damage when db's last error says the
 * file is corrupt or not a database. */
static void refuse_if_damaged(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	int e = db ? sqlite3_errcode(db) : SQLITE_OK;
	if (e == SQLITE_CORRUPT || e == SQLITE_NOTADB)
		errf(err, errlen,
		     "%s is damaged (%s); refusing to start. Restore it from a backup, or try "
		     "`sqlite3 %s .recover`",
		     path, sqlite3_errmsg(db), path);
}

/* Runs PRAGMA quick_check; 0 when it says ok, else -1 with its first
 * findings in err. */
static int quick_check(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *q = NULL;
	char found[512] = "";
	size_t pos = 0;
	int rc = -1, lines = 0, src;
	if (sqlite3_prepare_v2(db, "PRAGMA quick_check(3)", -1, &q, NULL) != SQLITE_OK) {
		errf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(q, 0);
		if (lines == 0 && t && strcmp(t, "ok") == 0)
			rc = 0;
		if (pos < sizeof found - 1)
			pos += (size_t)snprintf(found + pos, sizeof found - pos, "%s%s",
			                        lines ? "; " : "", t ? t : "?");
		lines++;
	}
	if (src != SQLITE_DONE) {
		rc = -1;
		errf(err, errlen, "%s", sqlite3_errmsg(db));
	} else if (rc) {
		errf(err, errlen, "%s", found);
	}
	sqlite3_finalize(q);
	return rc;
}

/*
 * Start-up reads (quick_check, srv__store_load_all) map the database into
 * memory: SQLite then reads a page where it lies instead of one pread()
 * per 4 KiB page, which is most of the time a large store takes to read.
 * They open their connections on srv__store_map_vfs(), which maps the
 * whole file (SQLite's own mapping ends at 2 GiB, whatever this asks);
 * the PRAGMA is still what makes the pager fetch pages in place. Only then: a read error on a mapped page is a SIGBUS rather than an
 * error code, acceptable before anything is served (the start fails
 * either way) but not while serving.
 */
#define LOAD_MMAP "PRAGMA mmap_size=1099511627776"

/* ---- row checksums: the text rows (see "Damage") ------------------------------------- */
/*
 * A text row's checksum covers its key and its text: streams (id, owner,
 * config), keys (stream, key, reply), checkpoints (stream, n, step, body)
 * and meta (stream, meta, updated_ms); it is the row's `sum` column, NULL
 * in rows older builds wrote. Each value counts with its type and length,
 * through the engine's state checksum (eng_checksum64), so "ab","c" and
 * "a","bc" differ.
 */
static int64_t row_sum(int n, sqlite3_value **v)
{
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < n; i++) {
		uint64_t f;
		if (sqlite3_value_type(v[i]) == SQLITE_INTEGER) {
			int64_t x = sqlite3_value_int64(v[i]);
			f = eng_checksum64(&x, sizeof x) ^ 1u;
		} else {
			const unsigned char *t = sqlite3_value_text(v[i]);
			size_t len = (size_t)sqlite3_value_bytes(v[i]);
			f = eng_checksum64(t ? t : (const unsigned char *)"", t ? len : 0) ^
			    ((uint64_t)len << 8) ^ 2u;
		}
		h = (h ^ f) * 1099511628211ull;
		h ^= h >> 31;
	}
	return (int64_t)h;
}

/* lossd_rowsum(v, ...): row_sum in SQL, so a row and its checksum are
 * written by one statement (an upsert sums the values it keeps). */
static void rowsum_sql(sqlite3_context *cx, int n, sqlite3_value **v)
{
	sqlite3_result_int64(cx, row_sum(n, v));
}

/* True when the n columns of s from `first` on do not give the checksum
 * in column `at`; a NULL there (a row of an older build) passes. */
static bool row_bad(sqlite3_stmt *s, int first, int n, int at)
{
	sqlite3_value *v[4];
	if (sqlite3_column_type(s, at) == SQLITE_NULL)
		return false;
	assert(n <= 4);
	for (int i = 0; i < n; i++)
		v[i] = sqlite3_column_value(s, first + i);
	return row_sum(n, v) != sqlite3_column_int64(s, at);
}

/* True when an idempotency record of stream id fails its checksum; -1 when
 * they cannot be read. ks: "SELECT stream, key, reply, sum FROM keys WHERE
 * stream = ?1" on the caller's connection. */
static int keys_bad(sqlite3_stmt *ks, const char *id)
{
	int rc, bad = 0;
	sqlite3_bind_text(ks, 1, id, -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(ks)) == SQLITE_ROW)
		if (row_bad(ks, 0, 3, 3)) {
			bad = 1;
			break;
		}
	sqlite3_reset(ks);
	return bad || rc == SQLITE_DONE ? bad : -1;
}

#define KEYS_OF "SELECT stream, key, reply, sum FROM keys WHERE stream = ?1"

/* A connection on path; vfs NULL (the default) or srv__store_map_vfs()'s
 * for a start-up read. */
static int open_conn_vfs(sqlite3 **db, const char *path, const char *vfs, char *err, size_t errlen)
{
	int rc = sqlite3_open_v2(
	        path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs);
	if (rc != SQLITE_OK) {
		errf(err, errlen, "cannot open %s: %s", path,
		     *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
		return -1;
	}
	sqlite3_busy_timeout(*db, 10000);
	if (sqlite3_create_function(*db, "lossd_rowsum", -1,
	                            SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
	                            rowsum_sql, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(*db,
	                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	                 " PRAGMA foreign_keys=OFF;",
	                 NULL, NULL, NULL) != SQLITE_OK) {
		errf(err, errlen, "cannot configure %s: %s", path, sqlite3_errmsg(*db));
		return -1;
	}
	return 0;
}

static int open_conn(sqlite3 **db, const char *path, char *err, size_t errlen)
{
	return open_conn_vfs(db, path, NULL, err, errlen);
}

/* The writer's connection: its WAL writes gathered into one per commit
 * (srv__store_wal_vfs; the default VFS when it is not there). */
static int open_writer(srv__store *st, char *err, size_t errlen)
{
	return open_conn_vfs(&st->w, st->path, srv__store_wal_vfs(), err, errlen);
}

static int prep(sqlite3 *db, sqlite3_stmt **st, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
		errf(err, errlen, "cannot prepare statement: %s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* fsync the directory so the database and WAL files' names are durable. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
}

static void finalize_writer(srv__store *st)
{
	sqlite3_finalize(st->ins_stream);
	sqlite3_finalize(st->upd_state);
	sqlite3_finalize(st->ins_delta);
	sqlite3_finalize(st->del_deltas_upto);
	sqlite3_finalize(st->del_stream);
	sqlite3_finalize(st->del_deltas);
	sqlite3_finalize(st->del_keys);
	sqlite3_finalize(st->ins_key);
	sqlite3_finalize(st->ins_probe);
	sqlite3_finalize(st->set_gen);
	sqlite3_finalize(st->set_head);
	sqlite3_finalize(st->del_head);
	st->set_gen = st->set_head = st->del_head = NULL;
	st->ins_stream = st->upd_state = st->ins_delta = st->del_deltas_upto = NULL;
	st->del_stream = st->del_deltas = st->del_keys = st->ins_key = st->ins_probe = NULL;
}

/* Prepares the writer connection's statements. */
static int prep_writer(srv__store *st, char *err, size_t errlen)
{
	if (prep(st->w, &st->ins_stream,
	         "INSERT INTO streams(id, owner, config, state, seq, sum)"
	         " VALUES(?1, ?2, ?3, ?4, ?5, lossd_rowsum(?1, ?2, ?3))",
	         err, errlen) ||
	    prep(st->w, &st->upd_state, "UPDATE streams SET state = ?2, seq = ?3 WHERE id = ?1",
	         err, errlen) ||
	    prep(st->w, &st->ins_delta,
	         "INSERT OR REPLACE INTO deltas(stream, seq, data) VALUES(?1, ?2, ?3)", err,
	         errlen) ||
	    prep(st->w, &st->del_deltas_upto, "DELETE FROM deltas WHERE stream = ?1 AND seq <= ?2",
	         err, errlen) ||
	    prep(st->w, &st->del_stream, "DELETE FROM streams WHERE id = ?1", err, errlen) ||
	    prep(st->w, &st->del_deltas, "DELETE FROM deltas WHERE stream = ?1", err, errlen) ||
	    prep(st->w, &st->del_keys, "DELETE FROM keys WHERE stream = ?1", err, errlen) ||
	    prep(st->w, &st->ins_key,
	         "INSERT OR IGNORE INTO keys(stream, key, reply, sum)"
	         " VALUES(?1, ?2, ?3, lossd_rowsum(?1, ?2, ?3))",
	         err, errlen) ||
	    prep(st->w, &st->ins_probe, "INSERT OR REPLACE INTO probe(id, n) VALUES(1, ?1)", err,
	         errlen) ||
	    prep(st->w, &st->set_head, "INSERT OR REPLACE INTO heads(stream, seq) VALUES(?1, ?2)",
	         err, errlen) ||
	    prep(st->w, &st->del_head, "DELETE FROM heads WHERE stream = ?1", err, errlen) ||
	    prep(st->w, &st->set_gen,
	         "INSERT OR REPLACE INTO store_info(k, v) VALUES('generation', ?1)", err, errlen))
		return -1;
	return 0;
}

/* A start-up read connection: mapped whole (srv__store_map_vfs,
 * LOAD_MMAP). */
static int open_mapped(sqlite3 **db, const char *path, char *err, size_t errlen)
{
	if (open_conn_vfs(db, path, srv__store_map_vfs(), err, errlen))
		return -1;
	if (sqlite3_exec(*db, LOAD_MMAP, NULL, NULL, NULL) != SQLITE_OK) {
		errf(err, errlen, "%s", sqlite3_errmsg(*db));
		return -1;
	}
	return 0;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Runs PRAGMA quick_check on a mapped connection of its own; 0 when it
 * says ok, else -1 with why; *ms its time. */
static int check_store(const char *path, char *why, size_t whylen, double *ms)
{
	struct timespec c0;
	sqlite3 *db = NULL;
	clock_gettime(CLOCK_MONOTONIC, &c0);
	int qc = open_mapped(&db, path, why, whylen) || quick_check(db, why, whylen);
	sqlite3_close(db);
	*ms = ms_since(&c0);
	return qc ? -1 : 0;
}

/*
 * Whether the deltas are many and small: more than 64 per stream row (as
 * heads and the checkpoints' seqs say) of at most 64 KiB each on average
 * (the file's size over their number). Only chooses how scan_orphans
 * walks the table: both ways find the same ids.
 */
static bool many_small_deltas(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	bool many = false;
	if (sqlite3_prepare_v2(db,
	                       "SELECT count(*), total(h.seq - s.seq),"
	                       " (SELECT page_count FROM pragma_page_count()) *"
	                       " (SELECT page_size FROM pragma_page_size())"
	                       " FROM streams s JOIN heads h ON h.stream = s.id",
	                       -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW) {
		double n = sqlite3_column_double(q, 0), rows = sqlite3_column_double(q, 1);
		double bytes = sqlite3_column_double(q, 2);
		many = n > 0 && rows > 64 * n && bytes / rows <= 65536;
	}
	sqlite3_finalize(q);
	return many;
}

/* scan_orphans with a seek past each stream of the deltas table (then a
 * lookup of its stream row): one seek per stream instead of a visit to
 * every delta. */
static int seek_orphans(sqlite3 *db, srv__store_orphan_fn fn, void *arg)
{
	sqlite3_stmt *first = NULL, *after = NULL, *has = NULL;
	sqlite3_value *at = NULL;
	int rc = -1, src = SQLITE_ERROR;

	if (sqlite3_prepare_v2(db, "SELECT stream FROM deltas ORDER BY stream LIMIT 1", -1, &first,
	                       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(
	            db, "SELECT stream FROM deltas WHERE stream > ?1 ORDER BY stream LIMIT 1", -1,
	            &after, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT 1 FROM streams WHERE id = ?1", -1, &has, NULL) !=
	            SQLITE_OK)
		goto out;
	for (sqlite3_stmt *q = first;; q = after) {
		if ((src = sqlite3_step(q)) != SQLITE_ROW)
			break;
		sqlite3_value_free(at);
		/* a copy: the next seek starts from exactly this value */
		at = sqlite3_value_dup(sqlite3_column_value(q, 0));
		sqlite3_reset(q);
		if (!at)
			goto out;
		sqlite3_bind_value(has, 1, at);
		int hrc = sqlite3_step(has);
		sqlite3_reset(has);
		if (hrc != SQLITE_ROW && hrc != SQLITE_DONE)
			goto out;
		const char *id = (const char *)sqlite3_value_text(at);
		if (hrc == SQLITE_DONE && fn(arg, id ? id : ""))
			goto out;
		sqlite3_bind_value(after, 1, at);
	}
	rc = src == SQLITE_DONE ? 0 : -1;
out:
	sqlite3_value_free(at);
	sqlite3_finalize(first);
	sqlite3_finalize(after);
	sqlite3_finalize(has);
	return rc;
}

/*
 * Every stream id that has deltas but no stream row, in id order, to fn.
 * Many small deltas: a seek per stream (seek_orphans; 10^6 deltas cost a
 * pass over every entry of the (stream, seq) index otherwise). Else a
 * pass over every delta's key in that index.
 */
static int scan_orphans(sqlite3 *db, srv__store_orphan_fn fn, void *arg)
{
	sqlite3_stmt *q = NULL;
	int src = SQLITE_ERROR;
	if (many_small_deltas(db))
		return seek_orphans(db, fn, arg);
	if (sqlite3_prepare_v2(db,
	                       "SELECT DISTINCT stream FROM deltas"
	                       " WHERE stream NOT IN (SELECT id FROM streams) ORDER BY stream",
	                       -1, &q, NULL) == SQLITE_OK)
		while ((src = sqlite3_step(q)) == SQLITE_ROW) {
			const char *id = (const char *)sqlite3_column_text(q, 0);
			if (fn(arg, id ? id : "")) {
				src = SQLITE_ERROR;
				break;
			}
		}
	sqlite3_finalize(q);
	return src == SQLITE_DONE ? 0 : -1;
}

/* scan_orphans' fn in the check thread: the id into st->orphans. */
static int keep_orphan(void *arg, const char *id)
{
	srv__store *st = arg;
	char **v = realloc(st->orphans, (st->norphans + 1) * sizeof(*v));
	if (!v)
		return -1;
	st->orphans = v;
	if (!(v[st->norphans] = strdup(id)))
		return -1;
	st->norphans++;
	return 0;
}

/* The check thread: quick_check, then (when it passed) the orphan scan,
 * on one mapped connection, beside the loaders. */
static void *check_main(void *arg)
{
	srv__store *st = arg;
	struct timespec c0;
	sqlite3 *db = NULL;
	srv__thread_name("lossd-check");
	clock_gettime(CLOCK_MONOTONIC, &c0);
	st->check_failed = open_mapped(&db, st->path, st->check_why, sizeof st->check_why) ||
	                   quick_check(db, st->check_why, sizeof st->check_why);
	st->check_ms = ms_since(&c0);
	if (!st->check_failed) {
		st->orphans_failed = scan_orphans(db, keep_orphan, st) != 0;
		st->orphans_scanned = true;
	}
	sqlite3_close(db);
	return NULL;
}

static void check_join(srv__store *st)
{
	if (st->check_running)
		pthread_join(st->check_tid, NULL);
	st->check_running = false;
}

static void damaged(char *err, size_t errlen, const char *path, const char *why)
{
	errf(err, errlen,
	     "%s is damaged (PRAGMA quick_check: %s); refusing to start. Restore it from "
	     "a backup, or try `sqlite3 %s .recover`",
	     path, why, path);
}

/* Whether every table of both schemas is there already (then creating
 * them writes nothing): the check may run beside the load. */
static bool schema_present(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	bool all = false;
	if (sqlite3_prepare_v2(db,
	                       "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
	                       " ('streams', 'deltas', 'keys', 'probe', 'heads', 'store_info',"
	                       " 'checkpoints', 'meta')",
	                       -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		all = sqlite3_column_int(q, 0) == 8;
	sqlite3_finalize(q);
	return all;
}

/* ---- the deltas table's layout: migrating stores of older builds ---------------- */
/*
 * Builds before this one kept deltas in a WITHOUT ROWID table, i.e. an
 * index b-tree, whose cells keep at most ~1 KB on a 4 KiB page: every
 * delta of 2 KB had an overflow page of its own (the 10^6-delta store
 * was 4.67 GB for 1.96 GB of deltas) and start-up touched twice the
 * pages. Rows of a rowid table keep up to ~4 KB on their leaf.
 *
 * Such a store is migrated at open, before anything reads it (its
 * quick_check runs first, on the old layout), in ONE transaction: a
 * kill -9 or a failure (disk full) midway leaves the old table as it was
 * and the next start migrates again. Stream by stream, each stream's rows
 * are copied in seq order (so its rowids follow each other) and deleted
 * from the old table, whose freed pages then take the copies: the file
 * does not grow by the deltas' size. It keeps its size afterwards (the
 * freed pages go to new rows; VACUUM with lossd stopped returns them).
 * The WAL, which then holds every copied page, is copied into the
 * database and truncated before the load reads it. 10^6 deltas of 2 KB
 * took 32 s on a loaded 2-core VM (126 s before the reads moved off the
 * writer and secure_delete was turned off for it: deltas_migrate).
 */

/* Whether db's deltas table is the old WITHOUT ROWID one. */
static bool deltas_old_layout(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	bool exists = false;
	if (sqlite3_prepare_v2(
	            db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'deltas'", -1,
	            &q, NULL) == SQLITE_OK)
		exists = sqlite3_step(q) == SQLITE_ROW;
	sqlite3_finalize(q);
	q = NULL;
	/* a table WITHOUT ROWID has no rowid column to select */
	bool rowid = sqlite3_prepare_v2(db, "SELECT rowid FROM deltas", -1, &q, NULL) == SQLITE_OK;
	sqlite3_finalize(q);
	return exists && !rowid;
}

#define MIGRATE_CACHE_KIB "262144"

/* Whether a and b hold the same text. */
static bool same_text(sqlite3_value *a, sqlite3_value *b)
{
	const unsigned char *x = sqlite3_value_text(a), *y = sqlite3_value_text(b);
	int n = sqlite3_value_bytes(a);
	return x && y && n == sqlite3_value_bytes(b) && memcmp(x, y, (size_t)n) == 0;
}

/*
 * The migration's transaction on the writer (nothing else open); *rows
 * gets the deltas moved. 0, or -1 with why in err (rolled back).
 * The old rows are read on a mapped connection of its own whose snapshot
 * predates the transaction (the WAL empty): its page reads skip the WAL
 * index, which grows by every page the transaction writes, and looking
 * each old page up there took a third of the time. Each stream's old rows
 * are deleted on the writer once copied.
 */
static int deltas_migrate(srv__store *st, int64_t *rows, char *err, size_t errlen)
{
	sqlite3 *db = st->w, *rd = NULL;
	sqlite3_stmt *scan = NULL, *put = NULL, *drop = NULL;
	sqlite3_value *cur = NULL; /* the stream being copied */
	int rc = -1, src;
	bool began = false;

	*rows = 0;
	(void)sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	/* A larger cache for the copy (writer_setup sets the writer's after),
	 * and no zeroing of the freed pages (secure_delete, on in Debian's
	 * build): their content is not deleted but moved, and zeroing wrote
	 * each freed page to the WAL, 13 GB written in all to move 2 GB. */
	(void)sqlite3_exec(db, "PRAGMA cache_size=-" MIGRATE_CACHE_KIB, NULL, NULL, NULL);
	int secure = -1;
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(db, "PRAGMA secure_delete", -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		secure = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	(void)sqlite3_exec(db, "PRAGMA secure_delete=0", NULL, NULL, NULL);
	if (open_mapped(&rd, st->path, err, errlen) ||
	    sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) !=
	            SQLITE_OK ||
	    sqlite3_prepare_v2(rd, "SELECT stream, data, seq FROM deltas ORDER BY stream, seq", -1,
	                       &scan, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_exec(db,
	                 "BEGIN IMMEDIATE; DROP TABLE IF EXISTS deltas_rowid;"
	                 " CREATE TABLE deltas_rowid(stream TEXT NOT NULL, data BLOB NOT NULL,"
	                 " seq INTEGER NOT NULL, PRIMARY KEY(stream, seq));",
	                 NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	began = true;
	if (sqlite3_prepare_v2(db, "INSERT INTO deltas_rowid(stream, data, seq) VALUES(?1, ?2, ?3)",
	                       -1, &put, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "DELETE FROM deltas WHERE stream = ?1", -1, &drop, NULL) !=
	            SQLITE_OK)
		goto out;
	for (;;) {
		src = sqlite3_step(scan);
		if (src != SQLITE_ROW && src != SQLITE_DONE)
			goto out;
		sqlite3_value *id = src == SQLITE_ROW ? sqlite3_column_value(scan, 0) : NULL;
		/* a stream copied whole: its old rows go, their pages take the
		 * next ones (the file does not grow by the deltas' size) */
		if (cur && (!id || !same_text(id, cur))) {
			sqlite3_bind_value(drop, 1, cur);
			if (sqlite3_step(drop) != SQLITE_DONE)
				goto out;
			sqlite3_reset(drop);
			sqlite3_value_free(cur);
			cur = NULL;
		}
		if (!id)
			break;
		if (!cur && !(cur = sqlite3_value_dup(id)))
			goto out;
		for (int c = 0; c < 3; c++)
			sqlite3_bind_value(put, c + 1, sqlite3_column_value(scan, c));
		if (sqlite3_step(put) != SQLITE_DONE)
			goto out;
		sqlite3_reset(put);
		(*rows)++;
	}
	/* the reader is done: nothing may hold the WAL's start after COMMIT */
	sqlite3_finalize(scan);
	scan = NULL;
	sqlite3_close(rd);
	rd = NULL;
	if (sqlite3_exec(db, "DROP TABLE deltas; ALTER TABLE deltas_rowid RENAME TO deltas; COMMIT",
	                 NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	rc = 0;
out:
	if (rc && !err[0])
		errf(err, errlen, "%s", sqlite3_errmsg(began || !rd ? db : rd));
	sqlite3_value_free(cur);
	sqlite3_finalize(scan);
	sqlite3_finalize(put);
	sqlite3_finalize(drop);
	sqlite3_close(rd);
	if (rc && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	if (secure >= 0) {
		char sql[40];
		snprintf(sql, sizeof sql, "PRAGMA secure_delete=%d", secure);
		(void)sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	return rc;
}

/* Migrates st's deltas table when it is the old layout (a no-op else),
 * logging that it did and how long it took. */
static int deltas_upgrade(srv__store *st, char *err, size_t errlen)
{
	struct timespec t0;
	char why[256] = "", extra[128];
	int64_t rows = 0;

	if (!deltas_old_layout(st->w))
		return 0;
	srv_log(SRV_LOG_INFO, NULL,
	        "stream store: %s keeps its deltas in the layout of older builds; migrating them "
	        "(one transaction)",
	        st->path);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (deltas_migrate(st, &rows, why, sizeof why)) {
		errf(err, errlen,
		     "cannot migrate the deltas of %s to this build's layout (%s); nothing was "
		     "changed",
		     st->path, why);
		return -1;
	}
	/* the copies are all in the WAL: into the database before the load */
	(void)sqlite3_wal_checkpoint_v2(st->w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	snprintf(extra, sizeof extra, "\"deltas\":%lld,\"migrate_ms\":%.1f", (long long)rows,
	         ms_since(&t0));
	srv_log(SRV_LOG_INFO, extra, "stream store: deltas migrated to the rowid layout");
	return 0;
}

int srv__store_check_wait(srv__store *st, char *err, size_t errlen)
{
	if (st->be)
		return 0;
	check_join(st);
	if (st->check_failed) {
		damaged(err, errlen, st->path, st->check_why);
		return -1;
	}
	if (st->marker_later)
		marker_write(st->lock_fd, st->gen);
	st->marker_later = false;
	return 0;
}

static int store_open(srv__store **out, const char *data_dir, bool check_later, char *err,
                      size_t errlen)
{
	srv__store *st = NULL;
	int rc = -1;

	*out = NULL;
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		errf(err, errlen, "cannot create %s: %s", data_dir, strerror(errno));
		return -1;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	st->lock_fd = st->db_fd = -1;
	pthread_mutex_init(&st->mu, NULL);
	pthread_mutex_init(&st->rmu, NULL);
	pthread_cond_init(&st->cv_done, NULL);
	pthread_cond_init(&st->cv_ckpt, NULL);
	pthread_cond_init(&st->cv_commit, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->cv_gather, &ca);
	pthread_condattr_destroy(&ca);
	st->delay_us = SRV__STORE_COMMIT_DELAY_US;
	st->gap = 1;
	if ((size_t)snprintf(st->path, sizeof(st->path), "%s/lossd.db", data_dir) >=
	    sizeof(st->path)) {
		errf(err, errlen, "data dir path too long");
		goto out;
	}
	/* Two processes writing one store would each replay only their own
	 * updates: the second one is refused. The lock dies with the process. */
	char lpath[4096];
	snprintf(lpath, sizeof lpath, "%s/lossd.lock", data_dir);
	st->lock_fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lock_fd < 0 || flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		errf(err, errlen, "%s: %s", lpath,
		     st->lock_fd < 0 ? strerror(errno)
		                     : "locked: another lossd is using this data dir");
		goto out;
	}
	/* The database file is locked too: with lossd.lock deleted a second
	 * lossd would otherwise open the same database and overwrite rows.
	 * (flock is separate from SQLite's fcntl locks; the fd stays open
	 * until after SQLite closes, so closing it never drops SQLite's.) */
	st->db_fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->db_fd < 0 || flock(st->db_fd, LOCK_EX | LOCK_NB) != 0) {
		errf(err, errlen, "%s: %s", st->path,
		     st->db_fd < 0 ? strerror(errno)
		                   : "locked: another lossd is using this database");
		goto out;
	}
	uint64_t acked = marker_read(st->lock_fd);
	struct stat sb;
	if (acked > 0 && fstat(st->db_fd, &sb) == 0 && sb.st_size == 0) {
		errf(err, errlen,
		     "%s is empty but %llu commits were acknowledged from it (marker in "
		     "lossd.lock): the database was lost or replaced; refusing to start. Restore "
		     "it from a backup, or delete lossd.lock to start from what is there",
		     st->path, (unsigned long long)acked);
		goto out;
	}
	if (open_writer(st, err, errlen)) {
		refuse_if_damaged(st->w, st->path, err, errlen);
		goto out;
	}
	/* Structure first (truncation, flipped bits in pages), then ours; or,
	 * with check_later and a store whose tables are all there (nothing
	 * below writes then) in this build's layout, the check runs on a
	 * thread of its own beside the load, and the marker waits for it
	 * (srv__store_check_wait). A store to migrate is checked first. */
	bool migrate = deltas_old_layout(st->w);
	if (check_later && !migrate && schema_present(st->w) && !sums_missing(st->w) &&
	    pthread_create(&st->check_tid, NULL, check_main, st) == 0) {
		st->check_running = st->marker_later = true;
	} else if (check_store(st->path, st->check_why, sizeof st->check_why, &st->check_ms)) {
		damaged(err, errlen, st->path, st->check_why);
		goto out;
	}
	if (sqlite3_exec(st->w, schema, NULL, NULL, NULL) != SQLITE_OK) {
		errf(err, errlen, "cannot create schema: %s", sqlite3_errmsg(st->w));
		refuse_if_damaged(st->w, st->path, err, errlen);
		goto out;
	}
	sqlite3_stmt *g = NULL;
	if (sqlite3_prepare_v2(st->w, "SELECT v FROM store_info WHERE k = 'generation'", -1, &g,
	                       NULL) != SQLITE_OK) {
		errf(err, errlen, "cannot read the commit count: %s", sqlite3_errmsg(st->w));
		goto out;
	}
	if (sqlite3_step(g) == SQLITE_ROW)
		st->gen = (uint64_t)sqlite3_column_int64(g, 0);
	sqlite3_finalize(g);
	if (st->gen < acked) {
		errf(err, errlen,
		     "%s holds %llu commits but %llu were acknowledged (marker in lossd.lock): "
		     "committed updates are missing (an old backup, a truncated file or a lost "
		     "-wal file); refusing to start. Restore the database, or delete lossd.lock "
		     "to start from what is there",
		     st->path, (unsigned long long)st->gen, (unsigned long long)acked);
		goto out;
	}
	/* a store of older builds, checked and not refused: to this layout */
	if (migrate && deltas_upgrade(st, err, errlen)) {
		refuse_if_damaged(st->w, st->path, err, errlen);
		goto out;
	}
	/* the text rows' checksum columns, on a store without them */
	if (sums_missing(st->w) && sums_add(st->w, err, errlen)) {
		refuse_if_damaged(st->w, st->path, err, errlen);
		goto out;
	}
	if (!st->marker_later)
		marker_write(st->lock_fd, st->gen);
	if (writer_setup(st, err, errlen) || open_conn(&st->r, st->path, err, errlen) ||
	    checkpointer_start(st, err, errlen))
		goto out;
	sync_dir(data_dir);
	if (prep_writer(st, err, errlen) ||
	    prep(st->r, &st->get_key,
	         "SELECT stream, key, reply, sum FROM keys WHERE stream = ?1 AND key = ?2", err,
	         errlen) ||
	    extra_open(st, err, errlen) || committer_start(st, err, errlen))
		goto out;
	*out = st;
	st = NULL;
	rc = 0;
out:
	/* a damaged store may fail anywhere above: the check says why */
	if (st && st->check_running) {
		check_join(st);
		if (st->check_failed)
			damaged(err, errlen, st->path, st->check_why);
	}
	srv__store_close(st);
	return rc;
}

int srv__store_open(srv__store **out, const char *data_dir, char *err, size_t errlen)
{
	return store_open(out, data_dir, false, err, errlen);
}

void srv__store_close(srv__store *st)
{
	if (!st)
		return;
	if (st->be) {
		st->be->close(st->impl);
		free(st);
		return;
	}
	committer_stop(st);
	checkpointer_stop(st);
	check_join(st);
	for (size_t i = 0; i < st->norphans; i++)
		free(st->orphans[i]);
	free(st->orphans);
	finalize_writer(st);
	sqlite3_finalize(st->get_key);
	extra_close(st);
	sqlite3_close(st->r);
	sqlite3_close(st->w);
	if (st->db_fd >= 0)
		close(st->db_fd);
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	pthread_cond_destroy(&st->cv_done);
	pthread_cond_destroy(&st->cv_ckpt);
	pthread_cond_destroy(&st->cv_commit);
	pthread_cond_destroy(&st->cv_gather);
	pthread_mutex_destroy(&st->mu);
	pthread_mutex_destroy(&st->rmu);
	free(st);
}

bool srv__store_url_is_pg(const char *url)
{
	return url && (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11));
}

int srv__store_open_url(srv__store **out, const char *url, const srv__store_opts *o, char *err,
                        size_t errlen)
{
	*out = NULL;
	const char *dir = NULL;
	if (!url || !*url || !strcmp(url, "sqlite"))
		dir = o->data_dir;
	else if (!strncmp(url, "sqlite:", 7) && url[7])
		dir = url + 7;
	if (dir) {
		int rc = store_open(out, dir, o->check_later, err, errlen);
		if (!rc)
			(*out)->delay_us = o->commit_delay_us;
		return rc;
	}
	if (!srv__store_url_is_pg(url)) {
		errf(err, errlen,
		     "unknown store \"%.40s\": expected sqlite, sqlite:DIR or postgresql://...",
		     url);
		return -1;
	}
	const srv__store_backend *be = srv__store_pg_backend();
	if (!be) {
		errf(err, errlen, "this lossd was built without PostgreSQL support (libpq)");
		return -1;
	}
	srv__store *st = calloc(1, sizeof(*st));
	if (!st) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	if (be->open(&st->impl, url, o, err, errlen)) {
		free(st);
		return -1;
	}
	st->be = be;
	*out = st;
	return 0;
}

bool srv__store_shared(srv__store *st)
{
	return st->be != NULL && st->be->sync != NULL;
}

int srv__store_sync(srv__store *st, const char *id, int64_t seq, const int64_t *have, size_t nhave,
                    void *handle, srv__store_stream_fn on_state, srv__store_delta_fn on_delta,
                    void *arg)
{
	if (!st->be || !st->be->sync)
		return -1; /* one process: memory is the truth */
	return st->be->sync(st->impl, id, seq, have, nhave, handle, on_state, on_delta, arg);
}

int srv__store_put_checkpoint(srv__store *st, const char *id, int64_t seq, const void *state,
                              size_t len)
{
	if (!st->be || !st->be->put_checkpoint)
		return -1;
	return st->be->put_checkpoint(st->impl, id, seq, state, len);
}

int srv__store_ckpts_of(srv__store *st, const char *id, srv__store_ckpt_fn on_ckpt, void *arg)
{
	if (!st->be || !st->be->ckpts_of)
		return -1;
	return st->be->ckpts_of(st->impl, id, on_ckpt, arg);
}

int srv__store_meta_of(srv__store *st, const char *id, srv__store_meta_fn on_meta, void *arg)
{
	if (!st->be || !st->be->meta_of)
		return -1;
	return st->be->meta_of(st->impl, id, on_meta, arg);
}

int srv__store_list(srv__store *st, const srv__store_list_q *q, srv__store_list_fn fn, void *arg)
{
	if (!st->be || !st->be->list)
		return -1;
	return st->be->list(st->impl, q, fn, arg);
}

int srv__store_expire(srv__store *st, int64_t now_ms, srv__store_expired_fn fn, void *arg)
{
	if (!st->be || !st->be->expire)
		return -1;
	return st->be->expire(st->impl, now_ms, fn, arg);
}

/* ---- group commit ------------------------------------------------------------ */

/* Runs stmt (already bound) to completion and resets it. */
static int step(sqlite3_stmt *stmt)
{
	int rc = sqlite3_step(stmt);
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int bind_blob(sqlite3_stmt *s, int i, const void *data, size_t len)
{
	/* A zero-length blob must still be a blob, not NULL. */
	static const char empty = 0;
	return sqlite3_bind_blob64(s, i, len ? data : &empty, len, SQLITE_STATIC);
}

/* True when a later op of the group checkpoints (or deletes) op's stream at
 * a seq that covers op: op's data need not be written. */
static bool covered(const srv__store_op *op)
{
	for (const srv__store_op *o = op->next; o; o = o->next) {
		if (strcmp(o->stream, op->stream) != 0)
			continue;
		if (o->type == SRV__OP_DELETE)
			return true;
		if (o->type == SRV__OP_CHECKPOINT && o->seq >= op->seq)
			return true;
	}
	return false;
}

/* True when op drops data no state keeps (a delete, a reset's deltas and
 * keys): the pages it frees are zeroed ("Deleted data"). */
static bool forgets(const srv__store_op *op)
{
	return op->type == SRV__OP_DELETE || (op->type == SRV__OP_CHECKPOINT && op->clear_keys);
}

static int write_op(srv__store *st, const srv__store_op *op, bool skip_data)
{
	/* The stream's last seq, beside its rows: a lost tail of deltas (which
	 * leaves no gap) shows as a head the deltas do not reach. */
	if (op->type == SRV__OP_DELETE) {
		sqlite3_bind_text(st->del_head, 1, op->stream, -1, SQLITE_STATIC);
		if (step(st->del_head))
			return -1;
	} else if (op->type != SRV__OP_NOTE) {
		sqlite3_bind_text(st->set_head, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st->set_head, 2, op->seq);
		if (step(st->set_head))
			return -1;
	}
	sqlite3_stmt *s;

	switch (op->type) {
	case SRV__OP_CREATE:
		s = st->ins_stream;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, op->owner ? op->owner : "", -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, op->config, -1, SQLITE_STATIC);
		bind_blob(s, 4, op->data, op->len);
		sqlite3_bind_int64(s, 5, op->seq);
		if (step(s))
			return -1;
		break;
	case SRV__OP_DELTA:
		if (skip_data)
			break;
		s = st->ins_delta;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, op->seq);
		bind_blob(s, 3, op->data, op->len);
		if (step(s))
			return -1;
		break;
	case SRV__OP_CHECKPOINT:
		if (op->clear_keys) {
			sqlite3_bind_text(st->del_keys, 1, op->stream, -1, SQLITE_STATIC);
			if (step(st->del_keys))
				return -1;
		}
		if (skip_data)
			break;
		s = st->upd_state;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		bind_blob(s, 2, op->data, op->len);
		sqlite3_bind_int64(s, 3, op->seq);
		if (step(s))
			return -1;
		s = st->del_deltas_upto;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, op->seq);
		if (step(s))
			return -1;
		break;
	case SRV__OP_DELETE:
		sqlite3_bind_text(st->del_stream, 1, op->stream, -1, SQLITE_STATIC);
		if (step(st->del_stream))
			return -1;
		sqlite3_bind_text(st->del_deltas, 1, op->stream, -1, SQLITE_STATIC);
		if (step(st->del_deltas))
			return -1;
		sqlite3_bind_text(st->del_keys, 1, op->stream, -1, SQLITE_STATIC);
		if (step(st->del_keys))
			return -1;
		return extra_write(st, op);
	case SRV__OP_NOTE: break;
	default: return -1;
	}
	if (extra_write(st, op))
		return -1;
	for (int k = 0; k < 2; k++) {
		const char *key = k ? op->key2 : op->key, *rep = k ? op->reply2 : op->reply;
		if (!key)
			continue;
		s = st->ins_key;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, rep ? rep : "", -1, SQLITE_STATIC);
		if (step(s))
			return -1;
	}
	return 0;
}

/* The test hook's verdict for one transaction: true = fail it. mu held. */
static bool injected(srv__store *st)
{
	if (!st->inject)
		return false;
	if (st->inject > 0)
		st->inject--;
	return true;
}

/* Commits (or, when fail_it, rolls back and fails) the transaction the
 * writer has open. Writes the reason of a failure to why. Leader only. */
static int finish(srv__store *st, int rc, bool fail_it, char *why, size_t whylen)
{
	if (!rc && fail_it) {
		snprintf(why, whylen, "injected I/O error (test hook)");
		rc = -1;
	} else if (!rc && sqlite3_exec(st->w, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		rc = -1;
	}
	if (rc) {
		if (!why[0])
			snprintf(why, whylen, "%s", sqlite3_errmsg(st->w));
		if (!sqlite3_get_autocommit(st->w))
			sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
	}
	return rc;
}

/* Gives the group's checkpoints without bytes (srv__store_op.resolve)
 * theirs, the latest first: whether an op is covered depends on the ops
 * after it, which are final by then (a later one that became a DELTA
 * covers nothing). Returns 0, -1, or 1 when an op's stream moved on (the
 * group is to take the queue: see commit_queued). No lock held. */
static int resolve_group(srv__store_op *group, bool final)
{
	size_t n = 0;
	for (srv__store_op *o = group; o; o = o->next)
		n += o->resolve && !o->data;
	if (!n)
		return 0;
	srv__store_op **v = malloc(n * sizeof *v);
	if (!v)
		return -1;
	n = 0;
	for (srv__store_op *o = group; o; o = o->next)
		if (o->resolve && !o->data)
			v[n++] = o;
	int rc = 0;
	for (size_t i = n; i-- > 0 && !rc;)
		if (!covered(v[i]))
			rc = v[i]->resolve(v[i], final);
	free(v);
	return rc;
}

/* Asks the group's checkpoints for their bytes (resolve_group). A stream
 * that moved past its last op in the group has its newer op queued (a
 * merge and its submit are one step under the stream's mutex, which
 * resolve takes), so the group takes the queue as it is and asks again:
 * its state is then written once, not the deltas of the whole group; the
 * last of RESOLVE_ROUNDS rounds settles for those deltas. Returns 0 or -1.
 * The committer only, no lock held. */
#define RESOLVE_ROUNDS 4
static int resolve_all(srv__store *st, srv__store_op *group)
{
	for (int round = 0;; round++) {
		int rc = resolve_group(group, round == RESOLVE_ROUNDS - 1);
		if (rc <= 0)
			return rc;
		srv__store_op *last = group;
		while (last->next)
			last = last->next;
		pthread_mutex_lock(&st->mu);
		last->next = st->head;
		st->last_group += (uint64_t)st->queued;
		st->head = st->tail = NULL;
		st->queued = 0;
		pthread_mutex_unlock(&st->mu);
	}
}

/* Writes one group as one transaction. No lock held; only the leader. */
static int commit_group(srv__store *st, srv__store_op *group, uint64_t *n, bool fail_it, char *why,
                        size_t whylen)
{
	int rc = 0;
	*n = 0;
	if (resolve_all(st, group)) {
		snprintf(why, whylen, "out of memory serializing a stream's state");
		return finish(st, -1, fail_it, why, whylen);
	}
	if (sqlite3_exec(st->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		rc = -1;
	for (srv__store_op *op = group; !rc && op; op = op->next, (*n)++) {
		bool skip = (op->type == SRV__OP_DELTA || op->type == SRV__OP_CHECKPOINT) &&
		            covered(op);
		bool wipe = forgets(op);
		if (wipe)
			rc = wipe_freed(st->w, true);
		if (!rc)
			rc = write_op(st, op, skip);
		if (wipe && wipe_freed(st->w, false))
			rc = -1;
	}
	if (!rc) {
		sqlite3_bind_int64(st->set_gen, 1, (sqlite3_int64)(st->gen + 1));
		rc = step(st->set_gen);
	}
	rc = finish(st, rc, fail_it, why, whylen);
	if (!rc)
		marker_write(st->lock_fd, ++st->gen);
	return rc;
}

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Marks the start of a transaction. mu held. */
static void commit_begin(srv__store *st)
{
	st->committing = true;
	clock_gettime(CLOCK_MONOTONIC, &st->t0);
}

/* Records the end of a transaction that began at commit_begin. mu held. */
static void commit_end(srv__store *st, int rc, const char *why)
{
	double d = since(&st->t0);
	size_t b = 0;
	while (b < SRV__STORE_LAT_BUCKETS && d > srv__store_lat_bounds[b])
		b++;
	st->lat[b]++;
	st->lat_sum += d;
	st->committing = false;
	if (rc) {
		st->failures++;
		snprintf(st->why, sizeof st->why, "%s", why);
	}
}

/*
 * A caller of srv__store_wait sleeping until its op is done, on its stack:
 * a lock and condition of its own, so the committer wakes it after
 * releasing mu, and it returns without taking mu (woken under mu, each
 * would sleep once more waiting for it). Whoever takes it from op->waiter
 * (under mu) is the only one to wake it.
 */
struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool woken;          /* under m */
	struct waiter *next; /* the taker's list of those to wake */
};

/* Who learns an outcome once mu is released: sleeping waiters, and ops
 * finished by their on_done (in the order they were queued). */
struct wakes {
	struct waiter *w;
	srv__store_op *ops, **tail;
};

static void wakes_init(struct wakes *k)
{
	k->w = NULL;
	k->ops = NULL;
	k->tail = &k->ops;
}

/* Tells k about op, which is done: its waiter, if one sleeps, or its
 * on_done. mu held; op->next is k's from here. */
static void take_done(srv__store_op *op, struct wakes *k)
{
	if (op->on_done) {
		op->next = NULL;
		*k->tail = op;
		k->tail = &op->next;
		return;
	}
	struct waiter *w = op->waiter;
	if (!w)
		return;
	op->waiter = NULL;
	w->next = k->w;
	k->w = w;
}

/* Wakes k's waiters and finishes its ops. mu NOT held: each may be gone
 * once told. */
static void wake(struct wakes *k)
{
	for (struct waiter *w = k->w, *next; w; w = next) {
		next = w->next;
		pthread_mutex_lock(&w->m);
		w->woken = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->m);
	}
	for (srv__store_op *o = k->ops, *next; o; o = next) {
		next = o->next;
		o->on_done(o);
	}
	wakes_init(k);
}

/* Marks op done with rc; its waiter or on_done goes onto k. mu held; op
 * may be gone once mu is released. */
static void op_done(srv__store_op *op, int rc, struct wakes *k)
{
	op->rc = rc;
	op->done = true;
	take_done(op, k);
}

/* Fails every op of list (they were never written), each marking its
 * stream stale first; they go onto k. mu held. */
static void fail_ops(srv__store_op *list, struct wakes *k)
{
	for (srv__store_op *o = list, *next; o; o = next) {
		next = o->next; /* o may be gone once its waiter sees done */
		if (o->stale)
			atomic_store(o->stale, true);
		op_done(o, -1, k);
	}
}

/* The leader role was just given up: whoever waits for it (the
 * committer, the healer) or for the test hook is woken. mu held. */
static void hand_over(srv__store *st)
{
	pthread_cond_broadcast(&st->cv_done);
	pthread_cond_signal(&st->cv_commit);
}

/*
 * Grouping. A leader takes what is queued; writes still on their way (in
 * the HTTP layer, parsing, applying) wait for the next commit. On a quiet
 * machine with a fast disk, 32 writers to one stream made groups of about
 * 5.5 while a write arrived every 130 us. Like PostgreSQL's commit_delay,
 * a leader may wait for more, at most delay_us (--commit-delay-us), and
 * only when the traffic predicts it pays: the queue holds fewer than
 * GROUP_FILL ops and the ops still missing are due (at the recent mean gap
 * between submits, `gap`) within delay_us. It waits until the queue holds
 * GROUP_FILL or for twice that forecast, whichever is first, capped at
 * delay_us. A lone writer (it alone in the queue, and alone in the group
 * before) never waits, nor does a group that is already full; writers too
 * few to fill a group show as a gap too long to forecast one. Fewer, larger
 * groups mean fewer transactions and fsyncs per write, and for a hot
 * stream one state written per group.
 */
#define GROUP_FILL 8

/* An op joined the queue (stamps the gap). mu held. */
static void arrive(srv__store *st)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double d = (double)(now.tv_sec - st->last_sub.tv_sec) +
	           (double)(now.tv_nsec - st->last_sub.tv_nsec) / 1e9;
	st->last_sub = now;
	st->gap += (d - st->gap) / 8; /* a moving mean over about 8 submits */
	st->queued++;
	if (st->gathering && st->queued >= GROUP_FILL)
		pthread_cond_signal(&st->cv_gather);
}

/* How long a leader finding `queued` ops waits (seconds, 0: not at all),
 * given the last group's size, the mean gap between submits and the cap. */
static double gather_wait(int queued, uint64_t last_group, double gap, int delay_us)
{
	if (delay_us <= 0 || queued >= GROUP_FILL || (queued <= 1 && last_group <= 1))
		return 0;
	double cap = delay_us / 1e6, due = (GROUP_FILL - queued) * gap;
	if (due > cap)
		return 0;
	return 2 * due < cap ? 2 * due : cap;
}

double srv__store_test_gather_wait(int queued, uint64_t last_group, double gap, int delay_us)
{
	return gather_wait(queued, last_group, gap, delay_us);
}

/* The leader's wait for a fuller group (see above). mu held. */
static void gather(srv__store *st)
{
	double wait = gather_wait(st->queued, st->last_group, st->gap, st->delay_us);
	if (wait <= 0)
		return;
	struct timespec t0, end;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	end = t0;
	end.tv_nsec += (long)(wait * 1e9);
	end.tv_sec += end.tv_nsec / 1000000000;
	end.tv_nsec %= 1000000000;
	st->gathering = true;
	while (st->queued < GROUP_FILL &&
	       pthread_cond_timedwait(&st->cv_gather, &st->mu, &end) != ETIMEDOUT)
		;
	st->gathering = false;
	st->delays++;
	st->delay_sum += since(&t0);
}

void srv__store_submit(srv__store *st, srv__store_op *op)
{
	if (st->be) {
		assert(!op->on_done); /* SQLite only (store.h) */
		st->be->submit(st->impl, op);
		return;
	}
	op->next = NULL;
	op->done = false;
	op->rc = 0;
	op->waiter = NULL;
	pthread_mutex_lock(&st->mu);
	/* A stream already stale (an earlier op of it failed after its
	 * submitter looked, and a heal may have cleared `broken` since) is
	 * refused too: its memory holds that op, so neither a delta after
	 * the gap nor a state including it may reach the disk. fail_ops sets
	 * stale under mu before the failed group lets go of `broken`. */
	bool refuse = st->broken || (op->stale && atomic_load(op->stale));
	if (refuse && op->on_done) {
		/* Refused at the door, finished by the committer: the
		 * submitter may hold locks on_done takes. The stream's
		 * memory already holds op. */
		if (op->stale)
			atomic_store(op->stale, true);
		op->rc = -1;
		if (st->rtail)
			st->rtail->next = op;
		else
			st->rhead = op;
		st->rtail = op;
	} else if (refuse) {
		/* Refused at the door (no waiter yet, nothing to wake). */
		struct wakes none;
		wakes_init(&none);
		fail_ops(op, &none);
	} else {
		if (st->tail)
			st->tail->next = op;
		else
			st->head = op;
		st->tail = op;
		arrive(st);
	}
	bool idle = !st->leader;
	pthread_mutex_unlock(&st->mu);
	/* After the unlock: the committer does not wait for mu. (Busy, it
	 * looks at the queue again before it sleeps.) */
	if (idle)
		pthread_cond_signal(&st->cv_commit);
}

int srv__store_wait(srv__store *st, srv__store_op *op)
{
	if (st->be)
		return st->be->wait(st->impl, op);
	assert(!op->on_done);
	/* One wake-up per waiter: when its op is done. */
	struct waiter w = {.woken = false};
	int rc;
	pthread_mutex_lock(&st->mu);
	if (op->done) {
		rc = op->rc;
		pthread_mutex_unlock(&st->mu);
		return rc;
	}
	pthread_mutex_init(&w.m, NULL);
	pthread_cond_init(&w.cv, NULL);
	op->waiter = &w;
	pthread_mutex_unlock(&st->mu);
	pthread_mutex_lock(&w.m);
	while (!w.woken)
		pthread_cond_wait(&w.cv, &w.m);
	pthread_mutex_unlock(&w.m);
	rc = op->rc; /* written under mu before the committer took w */
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.m);
	return rc;
}

/* Commits one group: everything queued, as one transaction, then tells
 * its ops (with mu released); first finishes the ops refused at the door.
 * The committer thread only; mu held on entry and on return, `leader` not
 * held by anyone. */
static void commit_queued(srv__store *st)
{
	struct wakes k;
	wakes_init(&k);
	for (srv__store_op *o = st->rhead, *next; o; o = next) {
		next = o->next;
		op_done(o, -1, &k); /* stale since submit */
	}
	st->rhead = st->rtail = NULL;
	if (!st->head) {
		pthread_mutex_unlock(&st->mu);
		wake(&k);
		pthread_mutex_lock(&st->mu);
		return;
	}
	st->leader = true;
	if (!st->broken)
		gather(st);
	srv__store_op *group = st->head;
	st->head = st->tail = NULL;
	st->last_group = (uint64_t)st->queued;
	st->queued = 0;
	bool broken = st->broken;
	bool fail_it = !broken && injected(st);
	if (!broken)
		commit_begin(st);
	while (st->hold) /* test hook: the commit is in flight meanwhile */
		pthread_cond_wait(&st->cv_done, &st->mu);
	pthread_mutex_unlock(&st->mu);

	uint64_t n = 0;
	char why[160] = "";
	int crc = broken ? -1 : commit_group(st, group, &n, fail_it, why, sizeof why);
	if (crc && !broken)
		srv_log(SRV_LOG_ERROR, NULL,
		        "stream store: transaction failed (%s); writes refused until a "
		        "retry commits",
		        why);

	pthread_mutex_lock(&st->mu);
	if (!broken)
		commit_end(st, crc, why);
	if (crc) {
		st->broken = true;
		fail_ops(group, &k);
	} else {
		st->groups++;
		st->ops += n;
		for (srv__store_op *o = group, *next; o; o = next) {
			next = o->next;
			op_done(o, 0, &k);
		}
		if (st->wal_pages >= st->ckpt_hard && !st->ckpt_busy) {
			/* The checkpointer fell behind: copy the WAL here,
			 * the group answered first, no commit running
			 * meanwhile (see "WAL checkpoints"). */
			pthread_mutex_unlock(&st->mu);
			wake(&k);
			checkpoint(st, st->w, true);
			pthread_mutex_lock(&st->mu);
		}
	}
	st->leader = false;
	hand_over(st);
	pthread_mutex_unlock(&st->mu);
	wake(&k);
	pthread_mutex_lock(&st->mu);
}

/* The committer: commits whatever is queued, group after group, while
 * the healer does not hold the leader role; ends once asked to and
 * nothing is left. */
static void *committer_main(void *arg)
{
	srv__store *st = arg;
	srv__thread_name("lossd-commit");
	pthread_mutex_lock(&st->mu);
	for (;;) {
		if (!st->leader && (st->head || st->rhead)) {
			commit_queued(st);
			continue;
		}
		if (st->commit_stop && !st->head && !st->rhead)
			break;
		pthread_cond_wait(&st->cv_commit, &st->mu);
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

static int committer_start(srv__store *st, char *err, size_t errlen)
{
	if (pthread_create(&st->commit_thread, NULL, committer_main, st) != 0) {
		errf(err, errlen, "cannot start the committer thread");
		return -1;
	}
	st->committer_on = true;
	return 0;
}

static void committer_stop(srv__store *st)
{
	if (!st->committer_on)
		return;
	pthread_mutex_lock(&st->mu);
	st->commit_stop = true;
	pthread_cond_signal(&st->cv_commit);
	pthread_mutex_unlock(&st->mu);
	pthread_join(st->commit_thread, NULL);
	st->committer_on = false;
}

/* ---- WAL checkpoints ------------------------------------------------------------ */

/*
 * SQLite's own (wal_autocheckpoint) copies the WAL into lossd.db inside the
 * commit that takes the WAL past 1,000 pages, on the committing thread:
 * with 32 streams (1.3 MB of WAL per group) every third group paid a 4 MB
 * copy (a pread and a pwrite per page) and an fsync of lossd.db before its
 * writers were answered. Here the writer's WAL hook replaces it, and a
 * thread of the store, on its own connection, runs a PASSIVE checkpoint
 * each time the WAL grew by CKPT_BYTES while leaders go on committing. A
 * page written by many commits is copied once per run, and 32 MiB spans
 * the pages a busy store rewrites (index and heads pages, the pages of
 * the deltas a checkpoint replaced, reused by the next ones): with 32
 * streams' updates the copy writes 1.7 KB per update against the WAL's
 * 13.4, where 4 MiB (SQLite's volume) copied half of what the WAL took.
 * PASSIVE never waits for a writer or a reader, and copies the frames
 * committed before it began. SQLite starts the WAL over at the
 * first write after a checkpoint that copied every frame, which under
 * steady commits seldom happens (one lands during the copy), so the
 * leader that leaves the WAL past CKPT_HARD_BYTES, with the checkpointer
 * idle, checkpoints it itself once its group is answered: only what the
 * last run left (under CKPT_BYTES), with no commit running meanwhile, so
 * everything is copied and the WAL starts over. The WAL is bounded either
 * way. Never TRUNCATE or RESTART (they wait for readers and writers). A
 * failed checkpoint loses nothing (its frames stay in the WAL, which
 * readers consult first) and is retried once the WAL has grown again.
 * Durability is the WAL's: a commit is acknowledged after the WAL's fsync,
 * never after a checkpoint.
 *
 * The writer also keeps a larger page cache (WRITER_CACHE_KIB): a group
 * deletes the deltas a checkpoint replaced (their leaf pages, and any
 * overflow page of a row past ~4 KB, must be read), and with SQLite's
 * default 2 MiB most had been evicted by the groups since, one pread()
 * each.
 */

/* True when the WAL grew by ckpt_pages since the checkpointer last began
 * (or since it started over). mu held. */
static bool ckpt_due(srv__store *st)
{
	if (st->wal_pages < st->ckpt_from)
		st->ckpt_from = 0; /* the WAL started over */
	return st->wal_pages - st->ckpt_from >= st->ckpt_pages;
}

/* After every commit of the writer (leader; no lock held). */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
	srv__store *st = arg;
	(void)db;
	(void)name;
	pthread_mutex_lock(&st->mu);
	st->wal_pages = pages;
	if (!st->ckpt_busy && ckpt_due(st))
		pthread_cond_signal(&st->cv_ckpt);
	pthread_mutex_unlock(&st->mu);
	return SQLITE_OK;
}

/* How the writer treats the pages a delete frees ("Deleted data" at the
 * top): wipe, zeroed (SQLite's secure_delete, on in Debian's build), for
 * an op that forgets data; else FAST, which zeroes only what lies on pages
 * written anyway. Returns 0 or -1. */
static int wipe_freed(sqlite3 *w, bool wipe)
{
	const char *sql = wipe ? "PRAGMA secure_delete=1" : "PRAGMA secure_delete=FAST";
	return sqlite3_exec(w, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

/* The writer connection's settings beyond open_conn's. */
static int writer_setup(srv__store *st, char *err, size_t errlen)
{
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", WRITER_CACHE_KIB);
	if (sqlite3_exec(st->w, sql, NULL, NULL, NULL) != SQLITE_OK || wipe_freed(st->w, false)) {
		errf(err, errlen, "cannot configure %s: %s", st->path, sqlite3_errmsg(st->w));
		return -1;
	}
	int page = 4096;
	sqlite3_stmt *q = NULL;
	if (sqlite3_prepare_v2(st->w, "PRAGMA page_size", -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) > 0)
		page = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	pthread_mutex_lock(&st->mu);
	st->ckpt_pages = CKPT_BYTES / page;
	st->ckpt_hard = CKPT_HARD_BYTES / page;
	pthread_mutex_unlock(&st->mu);
	sqlite3_wal_hook(st->w, on_wal, st); /* and no automatic checkpoint */
	return 0;
}

/* One PASSIVE checkpoint on db (the checkpointer's connection, or the
 * writer's by a leader: inline_). No lock held. */
static void checkpoint(srv__store *st, sqlite3 *db, bool inline_)
{
	struct timespec t0;
	int frames = 0, copied = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
	double d = since(&t0);
	bool first = false;
	pthread_mutex_lock(&st->mu);
	if (rc == SQLITE_OK) {
		st->ckpts++;
		st->ckpt_inline += inline_;
		st->ckpt_sum += d;
	} else if (rc != SQLITE_BUSY) { /* BUSY: the other one is running */
		first = st->ckpt_failures++ == 0;
	}
	pthread_mutex_unlock(&st->mu);
	if (first)
		srv_log(SRV_LOG_WARN, NULL,
		        "stream store: WAL checkpoint failed (%s); retried as the WAL grows, "
		        "see lossd_store_checkpoint_failures_total",
		        sqlite3_errmsg(db));
}

static void *checkpointer(void *arg)
{
	srv__store *st = arg;
	srv__thread_name("lossd-ckpt");
	pthread_mutex_lock(&st->mu);
	for (;;) {
		while (!st->ckpt_stop && !ckpt_due(st))
			pthread_cond_wait(&st->cv_ckpt, &st->mu);
		if (st->ckpt_stop)
			break;
		st->ckpt_from = st->wal_pages;
		st->ckpt_busy = true;
		pthread_mutex_unlock(&st->mu);
		checkpoint(st, st->c, false);
		pthread_mutex_lock(&st->mu);
		st->ckpt_busy = false;
	}
	pthread_mutex_unlock(&st->mu);
	return NULL;
}

static int checkpointer_start(srv__store *st, char *err, size_t errlen)
{
	if (open_conn(&st->c, st->path, err, errlen))
		return -1;
	if (pthread_create(&st->ckpt_thread, NULL, checkpointer, st) != 0) {
		errf(err, errlen, "cannot start the WAL checkpointer thread");
		sqlite3_close(st->c);
		st->c = NULL;
		return -1;
	}
	return 0;
}

/* Main thread, at close. */
static void checkpointer_stop(srv__store *st)
{
	if (!st->c)
		return;
	pthread_mutex_lock(&st->mu);
	st->ckpt_stop = true;
	pthread_cond_signal(&st->cv_ckpt);
	pthread_mutex_unlock(&st->mu);
	pthread_join(st->ckpt_thread, NULL);
	sqlite3_close(st->c);
	st->c = NULL;
}

/* ---- healing ------------------------------------------------------------------ */

/* One probe transaction: a 64 KiB row rewritten, so the WAL must take
 * over 64 KiB of frames and an fsync: a disk that is still full rarely has that much slack left in the
 * WAL by a failed group, so the store does not flap between broken and
 * healed while nothing was freed. Leader only. */
#define PROBE_BYTES 65536
static int probe(srv__store *st, bool fail_it, char *why, size_t whylen)
{
	int rc = 0;
	if (sqlite3_exec(st->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		rc = -1;
	if (!rc) {
		st->probes++;
		sqlite3_bind_zeroblob(st->ins_probe, 1, PROBE_BYTES);
		rc = step(st->ins_probe);
	}
	return finish(st, rc, fail_it, why, whylen);
}

/* Closes and reopens the writer connection (a connection that saw an I/O
 * error may keep failing). Leader only. Closing a descriptor of lossd.db
 * drops every POSIX (fcntl) lock this process holds on it: a lock on the
 * database file itself must be flock() or an OFD lock, never F_SETLK. */
static int reopen_writer(srv__store *st, char *why, size_t whylen)
{
	finalize_writer(st);
	extra_close(st);
	sqlite3_close(st->w);
	st->w = NULL;
	if (open_writer(st, why, whylen) || writer_setup(st, why, whylen) ||
	    prep_writer(st, why, whylen) || extra_open(st, why, whylen))
		return -1;
	return 0;
}

int srv__store_heal(srv__store *st)
{
	if (st->be)
		return st->be->broken(st->impl) ? -1 : 0;
	pthread_mutex_lock(&st->mu);
	if (!st->broken) {
		pthread_mutex_unlock(&st->mu);
		return 0;
	}
	while (st->leader)
		pthread_cond_wait(&st->cv_done, &st->mu);
	/* Lead, so no group is in flight; ops queued before the store broke
	 * fail (submits are refused while broken, so none arrive). */
	st->leader = true;
	srv__store_op *queued = st->head;
	st->head = st->tail = NULL;
	st->queued = 0;
	struct wakes k;
	wakes_init(&k);
	fail_ops(queued, &k);
	bool fail_it = injected(st);
	commit_begin(st);
	pthread_mutex_unlock(&st->mu);
	wake(&k);
	pthread_cond_broadcast(&st->cv_done);

	char why[160] = "";
	/* w is NULL when an earlier reopen failed half-way */
	int rc = st->w ? probe(st, fail_it, why, sizeof why) : -1;
	if (rc && !fail_it) {
		why[0] = '\0';
		rc = reopen_writer(st, why, sizeof why);
		if (!rc)
			rc = probe(st, false, why, sizeof why);
	}

	pthread_mutex_lock(&st->mu);
	commit_end(st, 0, NULL);
	if (rc) {
		snprintf(st->why, sizeof st->why, "%s", why);
	} else {
		st->broken = false;
		st->recoveries++;
	}
	st->leader = false;
	hand_over(st);
	pthread_mutex_unlock(&st->mu);
	return rc;
}

void srv__store_test_fail(srv__store *st, int n)
{
	if (st->be)
		return;
	pthread_mutex_lock(&st->mu);
	st->inject = n;
	pthread_mutex_unlock(&st->mu);
}

void srv__store_test_hold(srv__store *st, bool on)
{
	if (st->be)
		return;
	pthread_mutex_lock(&st->mu);
	st->hold = on;
	pthread_cond_broadcast(&st->cv_done);
	pthread_mutex_unlock(&st->mu);
}

void srv__store_stats(srv__store *st, uint64_t *groups, uint64_t *ops)
{
	if (st->be) {
		st->be->stats(st->impl, groups, ops);
		return;
	}
	pthread_mutex_lock(&st->mu);
	*groups = st->groups;
	*ops = st->ops;
	pthread_mutex_unlock(&st->mu);
}

void srv__store_health_of(srv__store_health *out, srv__store *st)
{
	memset(out, 0, sizeof(*out));
	if (st->be) {
		st->be->stats(st->impl, &out->groups, &out->ops);
		out->broken = st->be->broken(st->impl);
		return;
	}
	pthread_mutex_lock(&st->mu);
	out->groups = st->groups;
	out->ops = st->ops;
	out->broken = st->broken;
	out->failures = st->failures;
	out->recoveries = st->recoveries;
	out->running_s = st->committing ? since(&st->t0) : 0;
	double r = st->reading ? since(&st->r0) : 0;
	if (r > out->running_s)
		out->running_s = r;
	memcpy(out->lat, st->lat, sizeof out->lat);
	out->lat_sum = st->lat_sum;
	out->delays = st->delays;
	out->delay_sum = st->delay_sum;
	out->ckpts = st->ckpts - st->ckpt_inline;
	out->ckpt_inline = st->ckpt_inline;
	out->ckpt_failures = st->ckpt_failures;
	out->ckpt_sum = st->ckpt_sum;
	out->wal_pages = st->wal_pages;
	snprintf(out->why, sizeof out->why, "%s", st->why);
	pthread_mutex_unlock(&st->mu);
}

bool srv__store_broken(srv__store *st)
{
	if (st->be)
		return st->be->broken(st->impl);
	pthread_mutex_lock(&st->mu);
	bool b = st->broken;
	pthread_mutex_unlock(&st->mu);
	return b;
}

/* ---- reading ------------------------------------------------------------------ */

/* Takes the reader connection, and times its use for stall detection: a
 * read from a stalled disk blocks like a commit. */
static void reader_lock(srv__store *st)
{
	pthread_mutex_lock(&st->rmu);
	pthread_mutex_lock(&st->mu);
	st->reading = true;
	clock_gettime(CLOCK_MONOTONIC, &st->r0);
	pthread_mutex_unlock(&st->mu);
}

static void reader_unlock(srv__store *st)
{
	pthread_mutex_lock(&st->mu);
	st->reading = false;
	pthread_mutex_unlock(&st->mu);
	pthread_mutex_unlock(&st->rmu);
}

int srv__store_key_get(srv__store *st, const char *stream, const char *key, char **reply)
{
	int rc;

	if (st->be)
		return st->be->key_get(st->impl, stream, key, reply);

	*reply = NULL;
	reader_lock(st);
	sqlite3_bind_text(st->get_key, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_text(st->get_key, 2, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st->get_key);
	if (rc == SQLITE_ROW && row_bad(st->get_key, 0, 3, 3)) {
		rc = -2; /* never served: the caller quarantines the stream */
	} else if (rc == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st->get_key, 2);
		*reply = strdup(t ? t : "");
		rc = *reply ? 1 : -1;
	} else {
		rc = rc == SQLITE_DONE ? 0 : -1;
	}
	sqlite3_reset(st->get_key);
	sqlite3_clear_bindings(st->get_key);
	reader_unlock(st);
	return rc;
}

int srv__store_load(srv__store *st, const char *only_id, srv__store_stream_fn on_stream,
                    srv__store_delta_fn on_delta, void *arg)
{
	sqlite3_stmt *ss = NULL, *ds = NULL, *ks = NULL;
	int rc = -1, src;

	if (st->be)
		return st->be->load(st->impl, only_id, on_stream, on_delta, arg);

	reader_lock(st);
	/* One read transaction: the streams and deltas seen belong together. */
	if (sqlite3_exec(st->r, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_prepare_v2(st->r,
	                       only_id ? "SELECT id, owner, config, state, seq, sum FROM streams"
	                                 " WHERE id = ?1"
	                               : "SELECT id, owner, config, state, seq, sum FROM streams"
	                                 " ORDER BY id",
	                       -1, &ss, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r, DELTAS_OF " ORDER BY i.seq", -1, &ds, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r, KEYS_OF, -1, &ks, NULL) != SQLITE_OK)
		goto out;
	if (only_id)
		sqlite3_bind_text(ss, 1, only_id, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(ss)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(ss, 0);
		const char *owner = (const char *)sqlite3_column_text(ss, 1);
		const char *config = (const char *)sqlite3_column_text(ss, 2);
		const void *state = sqlite3_column_blob(ss, 3);
		size_t len = (size_t)sqlite3_column_bytes(ss, 3);
		int64_t seq = sqlite3_column_int64(ss, 4);
		/* its text rows: the stream row, its idempotency records (a lookup
		 * that met a bad one made it stale: the healer's reload is here) */
		int bad = row_bad(ss, 0, 3, 5) ? 1 : keys_bad(ks, id);
		if (bad < 0)
			goto out;
		void *h = on_stream(arg, id ? id : "", owner ? owner : "",
		                    bad      ? NULL
		                    : config ? config
		                             : "",
		                    state, len, seq);
		if (!h)
			goto out;
		sqlite3_bind_text(ds, 1, id, -1, SQLITE_TRANSIENT);
		int drc;
		while ((drc = sqlite3_step(ds)) == SQLITE_ROW) {
			if (on_delta(arg, h, sqlite3_column_int64(ds, 0),
			             sqlite3_column_blob(ds, 1),
			             (size_t)sqlite3_column_bytes(ds, 1))) {
				sqlite3_reset(ds);
				goto out;
			}
		}
		sqlite3_reset(ds);
		if (drc != SQLITE_DONE)
			goto out;
	}
	if (src == SQLITE_DONE)
		rc = 0;
out:
	sqlite3_finalize(ss);
	sqlite3_finalize(ds);
	sqlite3_finalize(ks);
	sqlite3_exec(st->r, "COMMIT", NULL, NULL, NULL);
	reader_unlock(st);
	return rc;
}

/* ---- loading every stream, several threads at once ---- */

typedef struct load_all {
	srv__store *st;
	char **ids; /* every stream id, sorted */
	size_t n, chunk;
	atomic_size_t next; /* the next unclaimed index into ids */
	atomic_int failed;
	srv__store_stream_fn on_stream;
	srv__store_delta_fn on_delta;
	void *arg;
} load_all;

/* One loader: claims chunks of ids and reads each stream whole (its row,
 * then its deltas) on a connection of its own, until none is left or a
 * loader failed. */
static void *load_worker(void *arg)
{
	load_all *la = arg;
	sqlite3 *db = NULL;
	sqlite3_stmt *ss = NULL, *ds = NULL;
	char err[256];
	bool ok = false, begun = false;

	if (open_conn_vfs(&db, la->st->path, srv__store_map_vfs(), err, sizeof err) ||
	    sqlite3_exec(db, LOAD_MMAP, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	begun = true;
	if (sqlite3_prepare_v2(
	            db, "SELECT id, owner, config, state, seq, sum FROM streams WHERE id = ?1", -1,
	            &ss, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, DELTAS_OF " ORDER BY i.seq", -1, &ds, NULL) != SQLITE_OK)
		goto out;
	for (;;) {
		size_t a = atomic_fetch_add(&la->next, la->chunk);
		if (a >= la->n) {
			ok = true;
			break;
		}
		size_t b = a + la->chunk < la->n ? a + la->chunk : la->n;
		for (size_t i = a; i < b; i++) {
			if (atomic_load(&la->failed))
				goto out;
			sqlite3_bind_text(ss, 1, la->ids[i], -1, SQLITE_STATIC);
			int src = sqlite3_step(ss);
			if (src == SQLITE_DONE) { /* cannot happen: nothing writes meanwhile */
				sqlite3_reset(ss);
				continue;
			}
			if (src != SQLITE_ROW)
				goto out;
			const char *id = (const char *)sqlite3_column_text(ss, 0);
			const char *owner = (const char *)sqlite3_column_text(ss, 1);
			const char *config = (const char *)sqlite3_column_text(ss, 2);
			const void *state = sqlite3_column_blob(ss, 3);
			size_t len = (size_t)sqlite3_column_bytes(ss, 3);
			int64_t seq = sqlite3_column_int64(ss, 4);
			bool bad = row_bad(ss, 0, 3, 5);
			void *h = la->on_stream(la->arg, id ? id : "", owner ? owner : "",
			                        bad      ? NULL
			                        : config ? config
			                                 : "",
			                        state, len, seq);
			sqlite3_reset(ss);
			if (!h)
				goto out;
			sqlite3_bind_text(ds, 1, la->ids[i], -1, SQLITE_STATIC);
			int drc;
			while ((drc = sqlite3_step(ds)) == SQLITE_ROW)
				if (la->on_delta(la->arg, h, sqlite3_column_int64(ds, 0),
				                 sqlite3_column_blob(ds, 1),
				                 (size_t)sqlite3_column_bytes(ds, 1)))
					break;
			sqlite3_reset(ds);
			if (drc != SQLITE_DONE)
				goto out;
		}
	}
out:
	if (!ok)
		atomic_store(&la->failed, 1);
	sqlite3_finalize(ss);
	sqlite3_finalize(ds);
	if (begun)
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return NULL;
}

/* A load thread of its own (the calling thread loads too, unnamed). */
static void *load_thread(void *arg)
{
	srv__thread_name("lossd-load");
	return load_worker(arg);
}

int srv__store_load_all(srv__store *st, int threads, srv__store_stream_fn on_stream,
                        srv__store_delta_fn on_delta, void *arg)
{
	load_all la = {.st = st, .on_stream = on_stream, .on_delta = on_delta, .arg = arg};
	sqlite3_stmt *q = NULL;
	pthread_t tid[SRV__STORE_LOAD_THREADS];
	size_t cap = 0;
	int rc = -1, started = 0, src;

	if (st->be)
		return st->be->load(st->impl, NULL, on_stream, on_delta, arg);
	reader_lock(st);
	if (sqlite3_prepare_v2(st->r, "SELECT id FROM streams ORDER BY id", -1, &q, NULL) !=
	    SQLITE_OK) {
		reader_unlock(st);
		goto out;
	}
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(q, 0);
		char **nv = srv__grow(la.ids, &cap, la.n, sizeof(*nv), 256);
		if (!nv)
			break;
		la.ids = nv;
		if (!(la.ids[la.n] = strdup(id ? id : "")))
			break;
		la.n++;
	}
	sqlite3_finalize(q);
	reader_unlock(st);
	if (src != SQLITE_DONE)
		goto out;
	if (threads > SRV__STORE_LOAD_THREADS)
		threads = SRV__STORE_LOAD_THREADS;
	if (threads < 1)
		threads = 1;
	/* Chunks small enough to share 150 big streams evenly, large enough
	 * that 10,000 small ones cost few claims. */
	la.chunk = la.n / ((size_t)threads * 64);
	if (la.chunk < 1)
		la.chunk = 1;
	for (int t = 1; t < threads && (size_t)t < la.n; t++) {
		if (pthread_create(&tid[started], NULL, load_thread, &la) != 0)
			break;
		started++;
	}
	load_worker(&la); /* this thread loads too */
	for (int t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	rc = atomic_load(&la.failed) ? -1 : 0;
out:
	for (size_t i = 0; i < la.n; i++)
		free(la.ids[i]);
	free(la.ids);
	return rc;
}

int srv__store_orphans(srv__store *st, srv__store_orphan_fn fn, void *arg)
{
	sqlite3 *db = NULL;
	char err[256];
	int rc = -1;

	if (st->be)
		return st->be->orphans ? st->be->orphans(st->impl, fn, arg) : 0;
	if (st->check_running || st->orphans_scanned) {
		/* the check thread scanned them, beside the loaders */
		check_join(st);
		if (st->check_failed || st->orphans_failed || !st->orphans_scanned)
			return -1;
		for (size_t i = 0; i < st->norphans; i++)
			if (fn(arg, st->orphans[i]))
				return -1;
		return 0;
	}
	if (!open_mapped(&db, st->path, err, sizeof err))
		rc = scan_orphans(db, fn, arg);
	sqlite3_close(db);
	return rc;
}

/* ---- history and metadata (docs/API.md sections 7 and 8) ------------------------------ */
/*
 * Two more tables, written by the same group transaction as the op that
 * carries them:
 *   checkpoints(stream, n, step, body, sum) PK(stream, n)  checkpoint records
 *   meta(stream PK, meta, updated_ms, sum)            tags, ttl_s, created_at
 *                                                     as JSON; updated_at
 * (`sum`: the row's checksum, see "Damage" at the top).
 * The step series needs no table: it is part of the stream's state and
 * travels in its deltas and checkpoints.
 */
static const char extra_schema[] =
        "CREATE TABLE IF NOT EXISTS checkpoints(stream TEXT NOT NULL, n INTEGER NOT NULL,"
        " step INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY(stream, n)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS meta(stream TEXT PRIMARY KEY, meta TEXT NOT NULL,"
        " updated_ms INTEGER NOT NULL) WITHOUT ROWID;";

struct extra {
	sqlite3_stmt *ins_ckpt, *trim_ckpt, *del_ckpts, *put_meta, *put_mtime, *del_meta;
};

static int extra_open(srv__store *st, char *err, size_t errlen)
{
	struct extra *x = calloc(1, sizeof(*x));
	if (!x) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	st->x = x;
	if (sqlite3_exec(st->w, extra_schema, NULL, NULL, NULL) != SQLITE_OK) {
		errf(err, errlen, "cannot create schema: %s", sqlite3_errmsg(st->w));
		return -1;
	}
	return prep(st->w, &x->ins_ckpt,
	            "INSERT OR REPLACE INTO checkpoints(stream, n, step, body, sum)"
	            " VALUES(?1, ?2, ?3, ?4, lossd_rowsum(?1, ?2, ?3, ?4))",
	            err, errlen) ||
	       prep(st->w, &x->trim_ckpt, "DELETE FROM checkpoints WHERE stream = ?1 AND n < ?2",
	            err, errlen) ||
	       prep(st->w, &x->del_ckpts, "DELETE FROM checkpoints WHERE stream = ?1", err,
	            errlen) ||
	       prep(st->w, &x->put_meta,
	            "INSERT INTO meta(stream, meta, updated_ms, sum)"
	            " VALUES(?1, ?2, ?3, lossd_rowsum(?1, ?2, ?3))"
	            " ON CONFLICT(stream) DO UPDATE SET meta = excluded.meta,"
	            " updated_ms = max(updated_ms, excluded.updated_ms),"
	            " sum = lossd_rowsum(stream, excluded.meta,"
	            " max(updated_ms, excluded.updated_ms))",
	            err, errlen) ||
	       prep(st->w, &x->put_mtime,
	            "INSERT INTO meta(stream, meta, updated_ms, sum)"
	            " VALUES(?1, '{}', ?2, lossd_rowsum(?1, '{}', ?2))"
	            " ON CONFLICT(stream) DO UPDATE SET updated_ms = excluded.updated_ms,"
	            " sum = lossd_rowsum(stream, meta, excluded.updated_ms)",
	            err, errlen) ||
	       prep(st->w, &x->del_meta, "DELETE FROM meta WHERE stream = ?1", err, errlen);
}

/* The text tables and whether each has its checksum column yet. */
static const char *const sum_tables[] = {"streams", "keys", "checkpoints", "meta"};

static bool has_sum(sqlite3 *db, const char *table)
{
	sqlite3_stmt *q = NULL;
	bool yes = false;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info(?1) WHERE name = 'sum'",
	                       -1, &q, NULL) == SQLITE_OK) {
		sqlite3_bind_text(q, 1, table, -1, SQLITE_STATIC);
		yes = sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 1;
	}
	sqlite3_finalize(q);
	return yes;
}

/* True when a text table lacks its `sum` column, or meta its trigger (a
 * new store, or one of an older build): store_open then adds them, writing,
 * so the check runs first. */
static bool sums_missing(sqlite3 *db)
{
	sqlite3_stmt *q = NULL;
	bool trigger = false;
	for (size_t i = 0; i < sizeof sum_tables / sizeof *sum_tables; i++)
		if (!has_sum(db, sum_tables[i]))
			return true;
	if (sqlite3_prepare_v2(db,
	                       "SELECT 1 FROM sqlite_master WHERE type = 'trigger'"
	                       " AND name = 'meta_sum_stale'",
	                       -1, &q, NULL) == SQLITE_OK)
		trigger = sqlite3_step(q) == SQLITE_ROW;
	sqlite3_finalize(q);
	return !trigger;
}

/*
 * Gives the text tables their checksum column, in one transaction: an
 * ALTER TABLE ... ADD COLUMN changes only the schema (the rows there keep
 * a NULL sum, accepted as before), so it costs the same for any store.
 * An older build reading the store lists its columns and never sees
 * `sum`. Rows it writes have none (its INSERT leaves it NULL, its INSERT
 * OR REPLACE of a checkpoint too), except meta, which it updates in place:
 * the trigger clears a sum that an update of the row's values left as it
 * was (this build's updates always change it with them).
 */
static int sums_add(sqlite3 *db, char *err, size_t errlen)
{
	char sql[96];
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(db, extra_schema, NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	for (size_t i = 0; i < sizeof sum_tables / sizeof *sum_tables; i++) {
		if (has_sum(db, sum_tables[i]))
			continue;
		snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN sum INTEGER", sum_tables[i]);
		if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
			goto fail;
	}
	if (sqlite3_exec(
	            db,
	            "CREATE TRIGGER IF NOT EXISTS meta_sum_stale AFTER UPDATE OF meta, updated_ms"
	            " ON meta WHEN NEW.sum IS OLD.sum AND (NEW.meta IS NOT OLD.meta OR"
	            " NEW.updated_ms IS NOT OLD.updated_ms)"
	            " BEGIN UPDATE meta SET sum = NULL WHERE stream = NEW.stream; END;"
	            " COMMIT",
	            NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	return 0;
fail:
	errf(err, errlen, "cannot add the row checksums: %s", sqlite3_errmsg(db));
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

static void extra_close(srv__store *st)
{
	struct extra *x = st->x;
	if (!x)
		return;
	sqlite3_finalize(x->ins_ckpt);
	sqlite3_finalize(x->trim_ckpt);
	sqlite3_finalize(x->del_ckpts);
	sqlite3_finalize(x->put_meta);
	sqlite3_finalize(x->put_mtime);
	sqlite3_finalize(x->del_meta);
	free(x);
	st->x = NULL;
}

/* True when a later op of the group stores op's stream's updated_at too. */
static bool mtime_covered(const srv__store_op *op)
{
	for (const srv__store_op *o = op->next; o; o = o->next)
		if ((o->updated_ms || o->type == SRV__OP_DELETE) &&
		    strcmp(o->stream, op->stream) == 0)
			return true;
	return false;
}

static int extra_write(srv__store *st, const srv__store_op *op)
{
	struct extra *x = st->x;
	sqlite3_stmt *s;

	if (op->type == SRV__OP_DELETE) {
		sqlite3_bind_text(x->del_ckpts, 1, op->stream, -1, SQLITE_STATIC);
		if (step(x->del_ckpts))
			return -1;
		sqlite3_bind_text(x->del_meta, 1, op->stream, -1, SQLITE_STATIC);
		return step(x->del_meta);
	}
	if (op->ckpt_body) {
		s = x->ins_ckpt;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, op->ckpt_n);
		sqlite3_bind_int64(s, 3, op->ckpt_step);
		sqlite3_bind_text(s, 4, op->ckpt_body, -1, SQLITE_STATIC);
		if (step(s))
			return -1;
		s = x->trim_ckpt;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, op->ckpt_keep_from);
		if (step(s))
			return -1;
	}
	if (op->meta) {
		s = x->put_meta;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, op->meta, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, op->updated_ms);
		if (step(s))
			return -1;
	} else if (op->updated_ms && !mtime_covered(op)) {
		s = x->put_mtime;
		sqlite3_bind_text(s, 1, op->stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, op->updated_ms);
		if (step(s))
			return -1;
	}
	return 0;
}

/*
 * Whose row this is, for a row of keys, checkpoints or meta (stream first,
 * its n values, checksum in column `at`) that fails its checksum: the
 * stream whose id gives the checksum with the row's other values (a
 * damaged stream id, which names no stream or another one), else the id
 * the row names. new (free()); NULL when out of memory.
 */
static char *bad_row_owner(sqlite3 *db, sqlite3_stmt *row, int n, int at)
{
	sqlite3_stmt *q = NULL;
	sqlite3_value *v[4];
	char *who = NULL;
	int64_t want = sqlite3_column_int64(row, at);

	assert(n <= 4);
	for (int i = 1; i < n; i++)
		v[i] = sqlite3_column_value(row, i);
	if (sqlite3_prepare_v2(db, "SELECT id FROM streams", -1, &q, NULL) == SQLITE_OK)
		while (!who && sqlite3_step(q) == SQLITE_ROW) {
			v[0] = sqlite3_column_value(q, 0);
			if (row_sum(n, v) == want)
				who = strdup((const char *)sqlite3_column_text(q, 0));
		}
	sqlite3_finalize(q);
	if (!who) {
		const char *id = (const char *)sqlite3_column_text(row, 0);
		who = strdup(id ? id : "");
	}
	return who;
}

int srv__store_load_extra(srv__store *st, srv__store_ckpt_fn on_ckpt, srv__store_meta_fn on_meta,
                          void *arg)
{
	sqlite3_stmt *cs = NULL, *ms = NULL, *ks = NULL, *ns = NULL;
	int rc = -1, src;
	char *who = NULL;

	if (st->be)
		return st->be->load_extra ? st->be->load_extra(st->impl, on_ckpt, on_meta, arg) : 0;
	pthread_mutex_lock(&st->rmu);
	if (sqlite3_exec(st->r, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_prepare_v2(
	            st->r, "SELECT stream, n, step, body, sum FROM checkpoints ORDER BY stream, n",
	            -1, &cs, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r, "SELECT stream, meta, updated_ms, sum FROM meta", -1, &ms,
	                       NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r, "SELECT stream, key, reply, sum FROM keys", -1, &ks, NULL) !=
	            SQLITE_OK ||
	    sqlite3_prepare_v2(st->r,
	                       "SELECT id FROM streams WHERE sum IS NOT NULL AND NOT EXISTS"
	                       " (SELECT 1 FROM meta WHERE stream = id)",
	                       -1, &ns, NULL) != SQLITE_OK)
		goto out;
	while ((src = sqlite3_step(cs)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(cs, 0);
		const char *body = (const char *)sqlite3_column_text(cs, 3);
		int64_t n = sqlite3_column_int64(cs, 1);
		if (row_bad(cs, 0, 4, 4)) {
			if (!(who = bad_row_owner(st->r, cs, 4, 4)) ||
			    on_ckpt(arg, who, n, sqlite3_column_int64(cs, 2), NULL))
				goto out;
			free(who);
			who = NULL;
			continue;
		}
		if (on_ckpt(arg, id ? id : "", n, sqlite3_column_int64(cs, 2), body ? body : "{}"))
			goto out;
	}
	if (src != SQLITE_DONE)
		goto out;
	while ((src = sqlite3_step(ms)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(ms, 0);
		const char *meta = (const char *)sqlite3_column_text(ms, 1);
		if (row_bad(ms, 0, 3, 3)) {
			if (!(who = bad_row_owner(st->r, ms, 3, 3)) || on_meta(arg, who, NULL, 0))
				goto out;
			free(who);
			who = NULL;
			continue;
		}
		if (on_meta(arg, id ? id : "", meta ? meta : "{}", sqlite3_column_int64(ms, 2)))
			goto out;
	}
	if (src != SQLITE_DONE)
		goto out;
	/* a stream row with a checksum was written with its meta row (creates
	 * write both): none is a meta row lost, e.g. to a damaged stream id */
	while ((src = sqlite3_step(ns)) == SQLITE_ROW)
		if (on_meta(arg, (const char *)sqlite3_column_text(ns, 0), NULL, 0))
			goto out;
	if (src != SQLITE_DONE)
		goto out;
	/* every idempotency record, in one pass over the table (a stream's
	 * lookups and reloads check its own again) */
	while ((src = sqlite3_step(ks)) == SQLITE_ROW) {
		if (!row_bad(ks, 0, 3, 3))
			continue;
		if (!(who = bad_row_owner(st->r, ks, 3, 3)) || on_ckpt(arg, who, -1, 0, NULL))
			goto out;
		free(who);
		who = NULL;
	}
	if (src == SQLITE_DONE)
		rc = 0;
out:
	free(who);
	sqlite3_finalize(cs);
	sqlite3_finalize(ms);
	sqlite3_finalize(ks);
	sqlite3_finalize(ns);
	sqlite3_exec(st->r, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->rmu);
	return rc;
}

/* ---- copying (lossd --copy-store) ------------------------------------------------ */

void srv__store_rec_clear(srv__store_rec *rec)
{
	for (size_t i = 0; i < rec->ndeltas; i++)
		free(rec->deltas[i].data);
	for (size_t i = 0; i < rec->nkeys; i++) {
		free(rec->keys[i].key);
		free(rec->keys[i].reply);
	}
	for (size_t i = 0; i < rec->nckpts; i++)
		free(rec->ckpts[i].body);
	free(rec->deltas);
	free(rec->keys);
	free(rec->ckpts);
	free(rec->meta);
	rec->deltas = NULL;
	rec->keys = NULL;
	rec->ckpts = NULL;
	rec->meta = NULL;
	rec->ndeltas = rec->nkeys = rec->nckpts = 0;
}

/* The checkpoint records and metadata of rec's stream (SQLite). Returns 0,
 * -1, or -2 when a row fails its checksum. */
static int export_extra(srv__store *st, srv__store_rec *rec)
{
	sqlite3_stmt *cs = NULL, *ms = NULL;
	size_t cap = 0;
	int rc = -1;

	if (sqlite3_prepare_v2(
	            st->r,
	            "SELECT stream, n, step, body, sum FROM checkpoints WHERE stream = ?1"
	            " ORDER BY n",
	            -1, &cs, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r,
	                       "SELECT stream, meta, updated_ms, sum FROM meta WHERE stream = ?1",
	                       -1, &ms, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(cs, 1, rec->id, -1, SQLITE_STATIC);
	while (sqlite3_step(cs) == SQLITE_ROW) {
		void *nv = srv__grow(rec->ckpts, &cap, rec->nckpts, sizeof(*rec->ckpts), 16);
		if (!nv)
			goto out;
		rec->ckpts = nv;
		if (row_bad(cs, 0, 4, 4)) {
			rc = -2;
			goto out;
		}
		const char *b = (const char *)sqlite3_column_text(cs, 3);
		srv__store_ckpt_row *c = &rec->ckpts[rec->nckpts];
		c->n = sqlite3_column_int64(cs, 1);
		c->step = sqlite3_column_int64(cs, 2);
		c->body = strdup(b ? b : "");
		rec->nckpts++;
		if (!c->body)
			goto out;
	}
	sqlite3_bind_text(ms, 1, rec->id, -1, SQLITE_STATIC);
	if (sqlite3_step(ms) == SQLITE_ROW) {
		if (row_bad(ms, 0, 3, 3)) {
			rc = -2;
			goto out;
		}
		const char *m = (const char *)sqlite3_column_text(ms, 1);
		rec->updated_ms = sqlite3_column_int64(ms, 2);
		if (!(rec->meta = strdup(m ? m : "{}")))
			goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(cs);
	sqlite3_finalize(ms);
	return rc;
}

int srv__store_export(srv__store *st, srv__store_rec_fn fn, void *arg)
{
	sqlite3_stmt *ss = NULL, *ds = NULL, *ks = NULL;
	int rc = -1, src = SQLITE_DONE;
	srv__store_rec rec;

	if (st->be)
		return st->be->export_all ? st->be->export_all(st->impl, fn, arg) : -1;
	memset(&rec, 0, sizeof rec);
	pthread_mutex_lock(&st->rmu);
	if (sqlite3_exec(st->r, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r,
	                       "SELECT id, owner, config, state, seq, sum FROM streams ORDER BY id",
	                       -1, &ss, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(st->r, DELTAS_OF " AND i.seq > ?2 ORDER BY i.seq", -1, &ds, NULL) !=
	            SQLITE_OK ||
	    sqlite3_prepare_v2(st->r,
	                       "SELECT stream, key, reply, sum FROM keys WHERE stream = ?1"
	                       " ORDER BY key",
	                       -1, &ks, NULL) != SQLITE_OK)
		goto out;
	while ((src = sqlite3_step(ss)) == SQLITE_ROW) {
		size_t cap = 0;
		memset(&rec, 0, sizeof rec);
		rec.id = (const char *)sqlite3_column_text(ss, 0);
		rec.owner = (const char *)sqlite3_column_text(ss, 1);
		rec.config = (const char *)sqlite3_column_text(ss, 2);
		rec.state = sqlite3_column_blob(ss, 3);
		rec.len = (size_t)sqlite3_column_bytes(ss, 3);
		rec.ckpt_seq = rec.seq = sqlite3_column_int64(ss, 4);
		if (row_bad(ss, 0, 3, 5))
			goto damaged;
		sqlite3_bind_text(ds, 1, rec.id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(ds, 2, rec.ckpt_seq);
		while (sqlite3_step(ds) == SQLITE_ROW) {
			void *nv =
			        srv__grow(rec.deltas, &cap, rec.ndeltas, sizeof(*rec.deltas), 16);
			if (!nv)
				goto out;
			rec.deltas = nv;
			srv__store_delta_row *d = &rec.deltas[rec.ndeltas];
			d->seq = sqlite3_column_int64(ds, 0);
			d->len = (size_t)sqlite3_column_bytes(ds, 1);
			d->data = malloc(d->len ? d->len : 1);
			if (!d->data)
				goto out;
			if (d->len)
				memcpy(d->data, sqlite3_column_blob(ds, 1), d->len);
			rec.ndeltas++;
			rec.seq = d->seq;
		}
		sqlite3_reset(ds);
		cap = 0;
		sqlite3_bind_text(ks, 1, rec.id, -1, SQLITE_TRANSIENT);
		while (sqlite3_step(ks) == SQLITE_ROW) {
			void *nv = srv__grow(rec.keys, &cap, rec.nkeys, sizeof(*rec.keys), 16);
			if (!nv)
				goto out;
			rec.keys = nv;
			if (row_bad(ks, 0, 3, 3)) {
				sqlite3_reset(ks);
				goto damaged;
			}
			const char *k = (const char *)sqlite3_column_text(ks, 1);
			const char *r = (const char *)sqlite3_column_text(ks, 2);
			srv__store_key_row *kr = &rec.keys[rec.nkeys];
			kr->key = strdup(k ? k : "");
			kr->reply = strdup(r ? r : "");
			rec.nkeys++;
			if (!kr->key || !kr->reply)
				goto out;
		}
		sqlite3_reset(ks);
		int xrc = export_extra(st, &rec);
		if (xrc == -2)
			goto damaged;
		if (xrc)
			goto out;
		int frc = fn(arg, &rec);
		srv__store_rec_clear(&rec);
		if (frc)
			goto out;
	}
	rc = src == SQLITE_DONE ? 0 : -1;
	goto out;
damaged: /* a copy carries no row that fails its checksum (see "Damage") */
	srv_log(SRV_LOG_ERROR, NULL,
	        "stream %s: a row (its config, an idempotency record, a checkpoint record or "
	        "its metadata) fails its checksum; the copy stops",
	        rec.id ? rec.id : "?");
out:
	srv__store_rec_clear(&rec);
	sqlite3_finalize(ss);
	sqlite3_finalize(ds);
	sqlite3_finalize(ks);
	sqlite3_exec(st->r, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&st->rmu);
	return rc;
}

int srv__store_import(srv__store *st, const srv__store_rec *rec)
{
	srv__store_op op;
	int rc = -1;

	if (st->be)
		return st->be->import ? st->be->import(st->impl, rec) : -1;
	/* No request is served while copying: the writer connection is ours. */
	if (sqlite3_exec(st->w, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_DELETE;
	op.stream = rec->id;
	if (write_op(st, &op, false))
		goto out;
	op.type = SRV__OP_CREATE;
	op.owner = rec->owner;
	op.config = rec->config;
	op.data = rec->state;
	op.len = rec->len;
	op.seq = rec->ckpt_seq;
	if (write_op(st, &op, false))
		goto out;
	op.type = SRV__OP_DELTA;
	for (size_t i = 0; i < rec->ndeltas; i++) {
		op.seq = rec->deltas[i].seq;
		op.data = rec->deltas[i].data;
		op.len = rec->deltas[i].len;
		if (write_op(st, &op, false))
			goto out;
	}
	for (size_t i = 0; i < rec->nkeys; i++) {
		sqlite3_bind_text(st->ins_key, 1, rec->id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st->ins_key, 2, rec->keys[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_text(st->ins_key, 3, rec->keys[i].reply, -1, SQLITE_STATIC);
		if (step(st->ins_key))
			goto out;
	}
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_NOTE;
	op.stream = rec->id;
	for (size_t i = 0; i < rec->nckpts; i++) {
		op.ckpt_body = rec->ckpts[i].body;
		op.ckpt_n = rec->ckpts[i].n;
		op.ckpt_step = rec->ckpts[i].step;
		if (extra_write(st, &op))
			goto out;
	}
	{ /* its meta row, "{}" for one of an older store without (see load_extra) */
		memset(&op, 0, sizeof op);
		op.type = SRV__OP_NOTE;
		op.stream = rec->id;
		op.meta = rec->meta ? rec->meta : "{}";
		op.updated_ms = rec->updated_ms;
		if (extra_write(st, &op))
			goto out;
	}
	rc = sqlite3_exec(st->w, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
out:
	if (rc)
		sqlite3_exec(st->w, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int srv__store_heads(srv__store *st, srv__store_head_fn fn, void *arg)
{
	sqlite3_stmt *q = NULL;
	int rc = -1, src;

	if (st->be)
		return 0; /* recorded by the SQLite store only */
	reader_lock(st);
	if (sqlite3_prepare_v2(st->r, "SELECT stream, seq FROM heads ORDER BY stream", -1, &q,
	                       NULL) != SQLITE_OK)
		goto out;
	while ((src = sqlite3_step(q)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(q, 0);
		if (fn(arg, id ? id : "", sqlite3_column_int64(q, 1)))
			goto out;
	}
	rc = src == SQLITE_DONE ? 0 : -1;
out:
	sqlite3_finalize(q);
	reader_unlock(st);
	return rc;
}

double srv__store_check_ms(srv__store *st)
{
	return st->be ? 0.0 : st->check_ms;
}
