/*
 * store_pg.c - the PostgreSQL backend of the store interface (store.h):
 * every lossd replica connects to the same database, so replicas keep no
 * state of their own and any number of them serve the same streams behind
 * a load balancer (docs/API.md section 10). Built only with libpq; without it
 * srv__store_pg_backend() is NULL and a postgresql:// URL is refused.
 *
 * Schema (version 1, kept in lossd_schema_version):
 *   lossd_streams(id PK, owner, config, state, ckpt_seq, seq, updates, rows,
 *                 created_at, updated_at)
 *       state is the checkpoint at ckpt_seq; seq is the last sequence
 *       number taken; updates and rows the stream's counts after seq.
 *   lossd_deltas(stream -> lossd_streams ON DELETE CASCADE, seq, data)
 *       PK(stream, seq); a stream's state = state merged with its deltas
 *       of seq > ckpt_seq in seq order.
 *   lossd_keys(stream -> lossd_streams ON DELETE CASCADE, key, reply)
 *       PK(stream, key): the idempotency records; the key constraint, not
 *       a replica, decides which request of a batch_id applies.
 *   lossd_delta(...), lossd_reset(...)  the write of one update or reset,
 *       one round trip each (PL/pgSQL).
 *   lossd_checkpoints(stream, n, step, body), lossd_meta(stream, meta,
 *       updated_ms, ttl_ms)  history and metadata (versions 2 and 5).
 * Expiry (ttl_s): every replica sweeps once a second with one DELETE of
 * the due streams it can lock (SKIP LOCKED), so each expired stream is
 * deleted, and counted, by exactly one replica. The list (GET /v1/streams)
 * is one query with the SQLite path's filters, sort and cursor.
 * The schema is created or migrated at open under a session advisory lock,
 * so replicas starting together migrate once and the others wait.
 *
 * Sequence numbers. A write takes the stream's next seq inside its own
 * transaction, under the stream row's lock (lossd_delta's UPDATE of the
 * row), and writes its delta at that seq before COMMIT. A reader that
 * sees seq = n in one statement therefore sees every delta <= n: the
 * deltas become visible as a gap-free prefix, in commit order. A replica
 * caches a stream's state with the seq it reflects and, at read, folds in
 * the deltas above it (srv__store_sync), which is what makes a read on any
 * replica include every write acknowledged on any replica. The deltas a
 * replica committed itself are not read back: it names their seqs, and
 * folds them, at their place in the order, from memory (streams.c).
 *
 * Idempotency across replicas: lossd_delta inserts the key first (ON
 * CONFLICT DO NOTHING) under the stream's row lock; when it is already
 * there - committed by this or any replica, also one racing us, whose
 * commit the row lock waited for - the op is not applied and the stored
 * reply comes back (op->replayed). Both replies are the first one's.
 *
 * Checkpoint records (docs/API.md section 7) are numbered by the store:
 * a replica proposes one more than the highest it read, and the primary
 * key (stream, n) refuses a number another replica's record took. That op
 * then writes nothing (a savepoint undoes its reset and key) and comes
 * back op->taken; streams.c reads the records again and renumbers. So the
 * acknowledged records of a stream are numbered 0, 1, 2, ... once each.
 *
 * Group commit as in store.c (leader/follower, one transaction per group),
 * on half of the --store-connections: each writer has its own queue, and
 * a stream's ops always go to the same one (a hash of its id), so a busy
 * stream's updates gather into one group while its previous group commits
 * (several groups of one stream would only queue for its row lock), and
 * different streams commit on different writers at once. A group of
 * updates only (one lossd_delta each) goes out in one round trip (libpq's
 * pipeline mode: BEGIN, the calls, COMMIT), so a row lock is held for the
 * server's work and the WAL flush, never for a round trip; other groups
 * run statement by statement. Reads (sync, load, key lookups, lists) take
 * the other connections. A 2xx goes out only after COMMIT returned
 * (synchronous_commit stays as the server has it, on by default), so
 * PostgreSQL's own durability (WAL fsync)
 * covers it: no acknowledged update is lost when PostgreSQL or a replica
 * crashes. A COMMIT whose outcome is unknown (connection lost) fails the
 * op; a retry with the same batch_id then finds the key if it did commit.
 *
 * Faults. A connection error marks the store down (srv__store_broken):
 * writes and reads fail fast (503 store_unavailable) and /readyz is 503.
 * A monitor thread probes the server (SELECT 1) every second, and while
 * down with a backoff from 100 ms to 2 s; the first probe that succeeds
 * brings the store back, and every pooled connection reconnects before its
 * next use (a generation counter). Statements run under statement_timeout
 * (--store-timeout), connects under connect_timeout.
 *
 * Threads and locks: `mu` guards the writers' queues, their busy flags
 * and the counters; `pool_mu` guards the reader slots; `down` and `gen` are
 * atomics. Lock order: a stream's mutex (streams.c), then `mu` or
 * `pool_mu`, never both.
 *
 * Not here: what a state means (engine), caching and ownership (streams.c).
 */
#include "store.h"

#include "log.h"
#include "thread.h"

#ifdef LOSSD_HAVE_LIBPQ

#include <endian.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 7
#define MIGRATE_LOCK   0x6c6f737364 /* "lossd": the advisory lock's key */
#define MAX_CONNS      64

typedef struct slot {
	PGconn *c;
	unsigned gen; /* pg->gen when connected: older ones reconnect */
	bool busy;
} slot;

typedef struct pg {
	const char **kw, **val; /* connection parameters (the URL expanded) */
	char *pw;               /* from the password file, or NULL */
	char opts[64], ctimeout[16];
	int nslots;
	int nw;                   /* writers, each with its own queue of ops */
	slot *wr;                 /* nw writers; busy (under mu) while a group commits */
	srv__store_op **qh, **qt; /* nw queues (head, tail), under mu */
	slot *r;                  /* readers, under pool_mu */
	atomic_bool down;
	atomic_uint gen;
	pthread_mutex_t mu, pool_mu;
	pthread_cond_t pool_cv, mon_cv;
	bool stop;
	uint64_t groups, ops;
	pthread_t mon;
	bool mon_started;
	char why[200]; /* the last failure, under mu */
} pg;

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

/* ---- schema ----------------------------------------------------------------- */

static const char schema_v1[] =
        "CREATE TABLE lossd_streams(id text PRIMARY KEY, owner text NOT NULL,"
        " config text NOT NULL, state bytea NOT NULL, ckpt_seq bigint NOT NULL,"
        " seq bigint NOT NULL, updates bigint NOT NULL DEFAULT 0,"
        " rows bigint NOT NULL DEFAULT 0,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now());"
        "CREATE INDEX lossd_streams_owner ON lossd_streams(owner, id);"
        "CREATE TABLE lossd_deltas(stream text NOT NULL REFERENCES lossd_streams(id)"
        " ON DELETE CASCADE, seq bigint NOT NULL, data bytea NOT NULL,"
        " PRIMARY KEY(stream, seq));"
        "CREATE TABLE lossd_keys(stream text NOT NULL REFERENCES lossd_streams(id)"
        " ON DELETE CASCADE, key text NOT NULL, reply text NOT NULL,"
        " PRIMARY KEY(stream, key));"
        /* One update (or merge): 0 applied, 1 replayed (the key's first
         * reply), 2 no such stream. With a checkpoint, and when no other
         * replica took a seq since the caller's cache (expect), the state
         * replaces the deltas; else the delta is written. */
        "CREATE FUNCTION lossd_delta(p_stream text, p_key text, p_data bytea,"
        " p_ckpt bytea, p_expect bigint, p_updates bigint, p_rows bigint)"
        " RETURNS TABLE(status int, seq bigint, reply text) LANGUAGE plpgsql AS $f$"
        " DECLARE r record; prev text; rep text;"
        " BEGIN"
        "  PERFORM 1 FROM lossd_streams s WHERE s.id = p_stream FOR UPDATE;"
        "  IF NOT FOUND THEN RETURN QUERY SELECT 2, 0::bigint, NULL::text; RETURN; END IF;"
        "  IF p_key IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key, '')"
        "    ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    SELECT k.reply INTO prev FROM lossd_keys k"
        "     WHERE k.stream = p_stream AND k.key = p_key;"
        "    RETURN QUERY SELECT 1, 0::bigint, prev; RETURN;"
        "   END IF;"
        "  END IF;"
        "  UPDATE lossd_streams s SET seq = s.seq + 1, updates = s.updates + p_updates,"
        "   rows = s.rows + p_rows, updated_at = now() WHERE s.id = p_stream"
        "   RETURNING s.seq, s.updates, s.rows INTO r;"
        "  IF p_ckpt IS NOT NULL AND r.seq = p_expect THEN"
        "   UPDATE lossd_streams s SET state = p_ckpt, ckpt_seq = r.seq WHERE s.id = p_stream;"
        "   DELETE FROM lossd_deltas d WHERE d.stream = p_stream AND d.seq <= r.seq;"
        "  ELSE"
        "   INSERT INTO lossd_deltas(stream, seq, data) VALUES (p_stream, r.seq, p_data);"
        "  END IF;"
        "  rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s}',"
        "   p_stream, r.updates, r.rows);"
        "  IF p_key IS NOT NULL THEN"
        "   UPDATE lossd_keys k SET reply = rep WHERE k.stream = p_stream AND k.key = p_key;"
        "  END IF;"
        "  RETURN QUERY SELECT 0, r.seq, rep;"
        " END $f$;"
        /* A reset: the state replaces everything, keys are forgotten. */
        "CREATE FUNCTION lossd_reset(p_stream text, p_state bytea)"
        " RETURNS bigint LANGUAGE plpgsql AS $f$"
        " DECLARE n bigint;"
        " BEGIN"
        "  UPDATE lossd_streams s SET seq = s.seq + 1, ckpt_seq = s.seq + 1, state = p_state,"
        "   updates = 0, rows = 0, updated_at = now() WHERE s.id = p_stream"
        "   RETURNING s.seq INTO n;"
        "  IF NOT FOUND THEN RETURN -1; END IF;"
        "  DELETE FROM lossd_deltas d WHERE d.stream = p_stream;"
        "  DELETE FROM lossd_keys k WHERE k.stream = p_stream;"
        "  RETURN n;"
        " END $f$;";

/* Version 2: checkpoint records and metadata (docs/API.md sections 7, 8). */
static const char schema_v2[] =
        "CREATE TABLE lossd_checkpoints(stream text NOT NULL REFERENCES lossd_streams(id)"
        " ON DELETE CASCADE, n bigint NOT NULL, step bigint NOT NULL, body text NOT NULL,"
        " PRIMARY KEY(stream, n));"
        "CREATE TABLE lossd_meta(stream text PRIMARY KEY REFERENCES lossd_streams(id)"
        " ON DELETE CASCADE, meta text NOT NULL, updated_ms bigint NOT NULL);";

/* Version 3: an update's key record keeps the body's digest (p_prefix,
 * "digest\n" before the reply: a reuse with another body is 409), and a
 * merge's state_id is a second key (p_key2): a state merged before, through
 * any replica, is not applied again (status 1, "applied": false). */
static const char schema_v3[] =
        "DROP FUNCTION lossd_delta(text, text, bytea, bytea, bigint, bigint, bigint);"
        "CREATE FUNCTION lossd_delta(p_stream text, p_key text, p_data bytea,"
        " p_ckpt bytea, p_expect bigint, p_updates bigint, p_rows bigint, p_prefix text,"
        " p_key2 text, p_reply2 text)"
        " RETURNS TABLE(status int, seq bigint, reply text) LANGUAGE plpgsql AS $f$"
        " DECLARE r record; prev text; rep text;"
        " BEGIN"
        "  PERFORM 1 FROM lossd_streams s WHERE s.id = p_stream FOR UPDATE;"
        "  IF NOT FOUND THEN RETURN QUERY SELECT 2, 0::bigint, NULL::text; RETURN; END IF;"
        "  IF p_key IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key, '')"
        "    ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    SELECT k.reply INTO prev FROM lossd_keys k"
        "     WHERE k.stream = p_stream AND k.key = p_key;"
        "    RETURN QUERY SELECT 1, 0::bigint, prev; RETURN;"
        "   END IF;"
        "  END IF;"
        "  IF p_key2 IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key2,"
        "    coalesce(p_reply2, '')) ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    SELECT s.updates, s.rows INTO r FROM lossd_streams s WHERE s.id = p_stream;"
        "    rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s,\"applied\":false}',"
        "     p_stream, r.updates, r.rows);"
        "    IF p_key IS NOT NULL THEN"
        "     UPDATE lossd_keys k SET reply = coalesce(p_prefix, '') || rep"
        "      WHERE k.stream = p_stream AND k.key = p_key;"
        "    END IF;"
        "    RETURN QUERY SELECT 1, 0::bigint, rep; RETURN;"
        "   END IF;"
        "  END IF;"
        "  UPDATE lossd_streams s SET seq = s.seq + 1, updates = s.updates + p_updates,"
        "   rows = s.rows + p_rows, updated_at = now() WHERE s.id = p_stream"
        "   RETURNING s.seq, s.updates, s.rows INTO r;"
        "  IF p_ckpt IS NOT NULL AND r.seq = p_expect THEN"
        "   UPDATE lossd_streams s SET state = p_ckpt, ckpt_seq = r.seq WHERE s.id = p_stream;"
        "   DELETE FROM lossd_deltas d WHERE d.stream = p_stream AND d.seq <= r.seq;"
        "  ELSE"
        "   INSERT INTO lossd_deltas(stream, seq, data) VALUES (p_stream, r.seq, p_data);"
        "  END IF;"
        "  rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s%s}',"
        "   p_stream, r.updates, r.rows,"
        "   CASE WHEN p_key2 IS NOT NULL THEN ',\"applied\":true' ELSE '' END);"
        "  IF p_key IS NOT NULL THEN"
        "   UPDATE lossd_keys k SET reply = coalesce(p_prefix, '') || rep"
        "    WHERE k.stream = p_stream AND k.key = p_key;"
        "  END IF;"
        "  RETURN QUERY SELECT 0, r.seq, rep;"
        " END $f$;";

/* Version 4: states and deltas are engine bytes that pglz barely shrinks;
 * storing them uncompressed out of line saves the commit path that CPU
 * (a 1,000-score sketch delta is 5-9 KB, 32 KB before sketch format 2). */
static const char schema_v4[] =
        "ALTER TABLE lossd_deltas ALTER COLUMN data SET STORAGE EXTERNAL;"
        "ALTER TABLE lossd_streams ALTER COLUMN state SET STORAGE EXTERNAL;";

/* Version 5: expiry (ttl_s, docs/API.md section 8) by any replica: a
 * stream's ttl in ms kept beside its metadata, and an index on when it
 * falls due, so the once-a-second sweep reads only the due rows. */
static const char schema_v5[] =
        "ALTER TABLE lossd_meta ADD COLUMN ttl_ms bigint NOT NULL GENERATED ALWAYS AS"
        " (coalesce((meta::jsonb->>'ttl_s')::bigint, 0) * 1000) STORED;"
        "CREATE INDEX lossd_meta_due ON lossd_meta((updated_ms + ttl_ms)) WHERE ttl_ms > 0;";

/* Version 6: an update's updated_ms is written by lossd_delta (p_mtime), so
 * an update is one statement and a group of updates goes to the server in
 * one round trip (commit_group's pipeline). */
static const char schema_v6[] =
        "DROP FUNCTION lossd_delta(text, text, bytea, bytea, bigint, bigint, bigint, text,"
        " text, text);"
        "CREATE FUNCTION lossd_delta(p_stream text, p_key text, p_data bytea,"
        " p_ckpt bytea, p_expect bigint, p_updates bigint, p_rows bigint, p_prefix text,"
        " p_key2 text, p_reply2 text, p_mtime bigint)"
        " RETURNS TABLE(status int, seq bigint, reply text) LANGUAGE plpgsql AS $f$"
        " DECLARE r record; prev text; rep text;"
        " BEGIN"
        "  PERFORM 1 FROM lossd_streams s WHERE s.id = p_stream FOR UPDATE;"
        "  IF NOT FOUND THEN RETURN QUERY SELECT 2, 0::bigint, NULL::text; RETURN; END IF;"
        "  IF p_key IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key, '')"
        "    ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    SELECT k.reply INTO prev FROM lossd_keys k"
        "     WHERE k.stream = p_stream AND k.key = p_key;"
        "    RETURN QUERY SELECT 1, 0::bigint, prev; RETURN;"
        "   END IF;"
        "  END IF;"
        "  IF p_key2 IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key2,"
        "    coalesce(p_reply2, '')) ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    SELECT s.updates, s.rows INTO r FROM lossd_streams s WHERE s.id = p_stream;"
        "    rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s,\"applied\":false}',"
        "     p_stream, r.updates, r.rows);"
        "    IF p_key IS NOT NULL THEN"
        "     UPDATE lossd_keys k SET reply = coalesce(p_prefix, '') || rep"
        "      WHERE k.stream = p_stream AND k.key = p_key;"
        "    END IF;"
        "    RETURN QUERY SELECT 1, 0::bigint, rep; RETURN;"
        "   END IF;"
        "  END IF;"
        "  UPDATE lossd_streams s SET seq = s.seq + 1, updates = s.updates + p_updates,"
        "   rows = s.rows + p_rows, updated_at = now() WHERE s.id = p_stream"
        "   RETURNING s.seq, s.updates, s.rows INTO r;"
        "  IF p_mtime > 0 THEN"
        "   INSERT INTO lossd_meta(stream, meta, updated_ms) VALUES (p_stream, '{}', p_mtime)"
        "    ON CONFLICT (stream) DO UPDATE"
        "    SET updated_ms = greatest(lossd_meta.updated_ms, excluded.updated_ms);"
        "  END IF;"
        "  IF p_ckpt IS NOT NULL AND r.seq = p_expect THEN"
        "   UPDATE lossd_streams s SET state = p_ckpt, ckpt_seq = r.seq WHERE s.id = p_stream;"
        "   DELETE FROM lossd_deltas d WHERE d.stream = p_stream AND d.seq <= r.seq;"
        "  ELSE"
        "   INSERT INTO lossd_deltas(stream, seq, data) VALUES (p_stream, r.seq, p_data);"
        "  END IF;"
        "  rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s%s}',"
        "   p_stream, r.updates, r.rows,"
        "   CASE WHEN p_key2 IS NOT NULL THEN ',\"applied\":true' ELSE '' END);"
        "  IF p_key IS NOT NULL THEN"
        "   UPDATE lossd_keys k SET reply = coalesce(p_prefix, '') || rep"
        "    WHERE k.stream = p_stream AND k.key = p_key;"
        "  END IF;"
        "  RETURN QUERY SELECT 0, r.seq, rep;"
        " END $f$;";

/* Version 7: the store's CPU per update, four statements where there were
 * six. lossd_delta takes the stream's row lock with its UPDATE (the seq and
 * the counts), so the reply is known before the key goes in and the key
 * row is written once with it (it was inserted empty, then updated: a dead
 * row per update); a key seen before (a replay, rare) takes the UPDATE back
 * under the same lock, so nothing of it shows. The answer is the function's
 * own row (RETURN NEXT), not one more query. A delta row that fits a page
 * (up to 8,160 bytes: a sketch update of up to about 900 scores) stays in
 * its heap page (toast_tuple_target) instead of being cut into TOAST
 * chunks with their index entries, on write and on every replica's read.
 * Same arguments and answers as version 6. */
static const char schema_v7[] =
        "CREATE OR REPLACE FUNCTION lossd_delta(p_stream text, p_key text, p_data bytea,"
        " p_ckpt bytea, p_expect bigint, p_updates bigint, p_rows bigint, p_prefix text,"
        " p_key2 text, p_reply2 text, p_mtime bigint)"
        " RETURNS TABLE(status int, seq bigint, reply text) LANGUAGE plpgsql AS $f$"
        " DECLARE r record; rep text;"
        " BEGIN"
        "  UPDATE lossd_streams s SET seq = s.seq + 1, updates = s.updates + p_updates,"
        "   rows = s.rows + p_rows, updated_at = now() WHERE s.id = p_stream"
        "   RETURNING s.seq, s.updates, s.rows INTO r;"
        "  IF NOT FOUND THEN status := 2; seq := 0; reply := NULL; RETURN NEXT; RETURN; END IF;"
        "  rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s%s}',"
        "   p_stream, r.updates, r.rows,"
        "   CASE WHEN p_key2 IS NOT NULL THEN ',\"applied\":true' ELSE '' END);"
        "  IF p_key IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply)"
        "    VALUES (p_stream, p_key, coalesce(p_prefix, '') || rep) ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    UPDATE lossd_streams s SET seq = s.seq - 1, updates = s.updates - p_updates,"
        "     rows = s.rows - p_rows WHERE s.id = p_stream;"
        "    SELECT k.reply INTO reply FROM lossd_keys k"
        "     WHERE k.stream = p_stream AND k.key = p_key;"
        "    status := 1; seq := 0; RETURN NEXT; RETURN;"
        "   END IF;"
        "  END IF;"
        "  IF p_key2 IS NOT NULL THEN"
        "   INSERT INTO lossd_keys(stream, key, reply) VALUES (p_stream, p_key2,"
        "    coalesce(p_reply2, '')) ON CONFLICT DO NOTHING;"
        "   IF NOT FOUND THEN"
        "    UPDATE lossd_streams s SET seq = s.seq - 1, updates = s.updates - p_updates,"
        "     rows = s.rows - p_rows WHERE s.id = p_stream;"
        "    rep := format('{\"id\":\"%s\",\"updates\":%s,\"count\":%s,\"applied\":false}',"
        "     p_stream, r.updates - p_updates, r.rows - p_rows);"
        "    IF p_key IS NOT NULL THEN"
        "     UPDATE lossd_keys k SET reply = coalesce(p_prefix, '') || rep"
        "      WHERE k.stream = p_stream AND k.key = p_key;"
        "    END IF;"
        "    status := 1; seq := 0; reply := rep; RETURN NEXT; RETURN;"
        "   END IF;"
        "  END IF;"
        "  IF p_mtime > 0 THEN"
        "   INSERT INTO lossd_meta(stream, meta, updated_ms) VALUES (p_stream, '{}', p_mtime)"
        "    ON CONFLICT (stream) DO UPDATE"
        "    SET updated_ms = greatest(lossd_meta.updated_ms, excluded.updated_ms);"
        "  END IF;"
        "  IF p_ckpt IS NOT NULL AND r.seq = p_expect THEN"
        "   UPDATE lossd_streams s SET state = p_ckpt, ckpt_seq = r.seq WHERE s.id = p_stream;"
        "   DELETE FROM lossd_deltas d WHERE d.stream = p_stream AND d.seq <= r.seq;"
        "  ELSE"
        "   INSERT INTO lossd_deltas(stream, seq, data) VALUES (p_stream, r.seq, p_data);"
        "  END IF;"
        "  status := 0; seq := r.seq; reply := rep; RETURN NEXT;"
        " END $f$;"
        "ALTER TABLE lossd_deltas SET (toast_tuple_target = 8160);";

static const char *const migrations[SCHEMA_VERSION] = {schema_v1, schema_v2, schema_v3, schema_v4,
                                                       schema_v5, schema_v6, schema_v7};

/* Prepared on every connection. */
static const struct {
	const char *name, *sql;
	int nparams;
} stmts[] = {
        {"ins_stream",
         "INSERT INTO lossd_streams(id, owner, config, state, ckpt_seq, seq)"
         " VALUES($1, $2, $3, $4, $5, $5)",
         5},
        {"delta",
         "SELECT status, seq, reply FROM lossd_delta($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
         " $11)",
         11},
        {"reset", "SELECT lossd_reset($1, $2)", 2},
        {"del", "DELETE FROM lossd_streams WHERE id = $1", 1},
        {"key_get", "SELECT reply FROM lossd_keys WHERE stream = $1 AND key = $2", 2},
        {"sync",
         "SELECT s.seq, s.ckpt_seq, d.seq, d.data FROM lossd_streams s LEFT JOIN lossd_deltas d"
         " ON d.stream = s.id AND d.seq > $2 AND d.seq <> ALL($3::bigint[]) WHERE s.id = $1"
         " ORDER BY d.seq",
         3},
        {"load_one", "SELECT id, owner, config, state, ckpt_seq FROM lossd_streams WHERE id = $1",
         1},
        {"load_all", "SELECT id, owner, config, state, ckpt_seq FROM lossd_streams ORDER BY id", 0},
        {"deltas", "SELECT seq, data FROM lossd_deltas WHERE stream = $1 AND seq > $2 ORDER BY seq",
         2},
        {"ping", "SELECT 1", 0},
        /* The due streams, locked (a stream or metadata row being written
         * is skipped until the next sweep) and deleted in one statement:
         * each goes once, whichever replicas sweep at the same time. */
        {"expire",
         "WITH due AS (SELECT s.id FROM lossd_streams s JOIN lossd_meta m ON m.stream = s.id"
         " WHERE m.ttl_ms > 0 AND m.updated_ms + m.ttl_ms <= $1 LIMIT 256"
         " FOR UPDATE OF s, m SKIP LOCKED)"
         " DELETE FROM lossd_streams d USING due WHERE d.id = due.id RETURNING d.id",
         1},
        /* A record's number is decided here: the primary key refuses a
         * number another replica's record took (ON CONFLICT waits for that
         * transaction), and the op is then renumbered (op->taken). */
        {"ins_ckpt",
         "INSERT INTO lossd_checkpoints(stream, n, step, body) SELECT $1, $2, $3, $4"
         " WHERE EXISTS (SELECT 1 FROM lossd_streams WHERE id = $1)"
         " ON CONFLICT (stream, n) DO NOTHING RETURNING 1",
         4},
        {"ckpt_taken", "SELECT 1 FROM lossd_checkpoints WHERE stream = $1 AND n = $2", 2},
        {"note_key",
         "INSERT INTO lossd_keys(stream, key, reply) SELECT $1, $2, $3"
         " WHERE EXISTS (SELECT 1 FROM lossd_streams WHERE id = $1)"
         " ON CONFLICT DO NOTHING RETURNING 1",
         3},
        {"trim_ckpt", "DELETE FROM lossd_checkpoints WHERE stream = $1 AND n < $2", 2},
        {"put_meta",
         "INSERT INTO lossd_meta(stream, meta, updated_ms) SELECT $1, $2, $3"
         " WHERE EXISTS (SELECT 1 FROM lossd_streams WHERE id = $1) ON CONFLICT (stream) DO UPDATE "
         "SET meta = excluded.meta,"
         " updated_ms = greatest(lossd_meta.updated_ms, excluded.updated_ms)",
         3},
        {"put_mtime",
         "INSERT INTO lossd_meta(stream, meta, updated_ms) SELECT $1, '{}', $2"
         " WHERE EXISTS (SELECT 1 FROM lossd_streams WHERE id = $1) ON CONFLICT (stream) DO UPDATE "
         "SET"
         " updated_ms = greatest(lossd_meta.updated_ms, excluded.updated_ms)",
         2},
        {"put_ckpt",
         "UPDATE lossd_streams SET state = $2, ckpt_seq = $3 WHERE id = $1 AND ckpt_seq < $3"
         " AND seq >= $3",
         3},
        {"trim_deltas", "DELETE FROM lossd_deltas WHERE stream = $1 AND seq <= $2", 2},
        {"ckpts_of", "SELECT n, step, body FROM lossd_checkpoints WHERE stream = $1 ORDER BY n", 1},
        {"meta_of", "SELECT meta, updated_ms FROM lossd_meta WHERE stream = $1", 1},
        {"meta_all", "SELECT stream, meta, updated_ms FROM lossd_meta", 0},
        {"ckpts_all", "SELECT stream, n, step, body FROM lossd_checkpoints ORDER BY stream, n", 0},
        {"keys_all", "SELECT key, reply FROM lossd_keys WHERE stream = $1 ORDER BY key", 1},
        {"imp_stream",
         "INSERT INTO lossd_streams(id, owner, config, state, ckpt_seq, seq, updates, rows)"
         " VALUES($1, $2, $3, $4, $5, $6, $7, $8)",
         8},
        {"imp_delta", "INSERT INTO lossd_deltas(stream, seq, data) VALUES($1, $2, $3)", 3},
        {"imp_key", "INSERT INTO lossd_keys(stream, key, reply) VALUES($1, $2, $3)", 3},
};
#define NSTMTS (sizeof stmts / sizeof stmts[0])

/* ---- connections ------------------------------------------------------------- */

/* True when res (or its absence) means the server is unreachable or
 * going away, rather than that this statement was refused. */
static bool conn_error(PGconn *c, const PGresult *res)
{
	if (!c || PQstatus(c) != CONNECTION_OK || !res)
		return true;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (!state)
		return false;
	return !strncmp(state, "08", 2) ||  /* connection exception */
	       !strncmp(state, "57P", 3) || /* shutdown, crash, cannot connect now */
	       !strcmp(state, "53300");     /* too many connections */
}

static void set_why(pg *p, const char *what, PGconn *c)
{
	char buf[sizeof p->why];
	const char *m = c ? PQerrorMessage(c) : "no connection";
	snprintf(buf, sizeof buf, "%s: %s", what, m && *m ? m : "failed");
	size_t n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	pthread_mutex_lock(&p->mu);
	memcpy(p->why, buf, sizeof buf);
	pthread_mutex_unlock(&p->mu);
}

static void mark_down(pg *p, const char *what, PGconn *c)
{
	set_why(p, what, c);
	if (!atomic_exchange(&p->down, true)) {
		srv_log(SRV_LOG_ERROR, NULL, "postgresql store unavailable (%s)", p->why);
		pthread_mutex_lock(&p->mu);
		pthread_cond_broadcast(&p->mon_cv); /* probe now, with backoff */
		pthread_mutex_unlock(&p->mu);
	}
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg; /* NOTICEs ("relation already exists, skipping") are not news */
}

static PGconn *connect_one(pg *p, bool prepare)
{
	PGconn *c = PQconnectdbParams(p->kw, p->val, 1);
	if (!c || PQstatus(c) != CONNECTION_OK) {
		set_why(p, "connect", c);
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	for (size_t i = 0; prepare && i < NSTMTS; i++) {
		PGresult *r = PQprepare(c, stmts[i].name, stmts[i].sql, stmts[i].nparams, NULL);
		bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			set_why(p, stmts[i].name, c);
		PQclear(r);
		if (!ok) {
			PQfinish(c);
			return NULL;
		}
	}
	return c;
}

/* Makes s usable: reconnects when it is missing, broken or from before the
 * last recovery. Fails fast while the store is down. */
static int slot_ready(pg *p, slot *s)
{
	unsigned g = atomic_load(&p->gen);
	if (s->c && s->gen == g && PQstatus(s->c) == CONNECTION_OK)
		return 0;
	PQfinish(s->c);
	s->c = NULL;
	if (atomic_load(&p->down))
		return -1;
	s->c = connect_one(p, true);
	if (!s->c) {
		mark_down(p, "connect", NULL);
		return -1;
	}
	s->gen = g;
	return 0;
}

static slot *reader_get(pg *p)
{
	slot *s = NULL;
	pthread_mutex_lock(&p->pool_mu);
	for (;;) {
		for (int i = 0; i < p->nslots && !s; i++)
			if (!p->r[i].busy)
				s = &p->r[i];
		if (s)
			break;
		pthread_cond_wait(&p->pool_cv, &p->pool_mu);
	}
	s->busy = true;
	pthread_mutex_unlock(&p->pool_mu);
	if (slot_ready(p, s)) {
		pthread_mutex_lock(&p->pool_mu);
		s->busy = false;
		pthread_cond_signal(&p->pool_cv);
		pthread_mutex_unlock(&p->pool_mu);
		return NULL;
	}
	return s;
}

static void reader_put(pg *p, slot *s)
{
	pthread_mutex_lock(&p->pool_mu);
	s->busy = false;
	pthread_cond_signal(&p->pool_cv);
	pthread_mutex_unlock(&p->pool_mu);
}

/* Runs a prepared statement; binary results. Params: text unless len[i]
 * >= 0 (then binary, len[i] bytes). Returns the result (PQclear it) or
 * NULL, marking the store down on a connection error. */
static PGresult *run(pg *p, slot *s, const char *name, int n, const char *const *v, const int *len,
                     ExecStatusType want)
{
	int fmt[16] = {0}, lens[16] = {0};
	for (int i = 0; i < n && i < 16; i++) {
		fmt[i] = len && len[i] >= 0;
		lens[i] = fmt[i] ? len[i] : 0;
	}
	PGresult *r = PQexecPrepared(s->c, name, n, v, lens, fmt, 1);
	if (PQresultStatus(r) == want)
		return r;
	if (conn_error(s->c, r))
		mark_down(p, name, s->c);
	else
		set_why(p, name, s->c);
	PQclear(r);
	return NULL;
}

static bool exec_ok(pg *p, slot *s, const char *sql)
{
	PGresult *r = PQexec(s->c, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok) {
		if (conn_error(s->c, r))
			mark_down(p, sql, s->c);
		else
			set_why(p, sql, s->c);
	}
	PQclear(r);
	return ok;
}

static int64_t get_i64(const PGresult *r, int row, int col)
{
	uint64_t v = 0;
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return -1;
	memcpy(&v, PQgetvalue(r, row, col), 8);
	return (int64_t)be64toh(v);
}

static int32_t get_i32(const PGresult *r, int row, int col)
{
	uint32_t v = 0;
	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 4)
		return -1;
	memcpy(&v, PQgetvalue(r, row, col), 4);
	return (int32_t)be32toh(v);
}

/* ---- monitor ------------------------------------------------------------------ */

static void *monitor(void *arg)
{
	pg *p = arg;
	PGconn *c = NULL;
	long backoff_ms = 100;
	srv__thread_name("lossd-pgmon");

	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		bool down = atomic_load(&p->down);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		long ms = down ? backoff_ms : 1000;
		ts.tv_sec += ms / 1000;
		ts.tv_nsec += (ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->mon_cv, &p->mu, &ts);
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		if (!c || PQstatus(c) != CONNECTION_OK) {
			PQfinish(c);
			c = connect_one(p, false);
		}
		bool ok = false;
		if (c) {
			PGresult *r = PQexec(c, "SELECT 1");
			ok = PQresultStatus(r) == PGRES_TUPLES_OK;
			PQclear(r);
			if (!ok) {
				PQfinish(c);
				c = NULL;
			}
		}
		if (ok && atomic_load(&p->down)) {
			atomic_fetch_add(&p->gen, 1); /* every pooled connection reconnects */
			atomic_store(&p->down, false);
			backoff_ms = 100;
			srv_log(SRV_LOG_WARN, NULL, "postgresql store available again");
		} else if (!ok) {
			if (!atomic_exchange(&p->down, true))
				srv_log(SRV_LOG_ERROR, NULL,
				        "postgresql store unavailable (probe failed)");
			backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	PQfinish(c);
	return NULL;
}

/* ---- open / close ------------------------------------------------------------- */

static void pg_close(void *b)
{
	pg *p = b;
	if (!p)
		return;
	if (p->mon_started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->mon_cv);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->mon, NULL);
	}
	for (int i = 0; p->wr && i < p->nw; i++)
		PQfinish(p->wr[i].c);
	for (int i = 0; i < p->nslots; i++)
		PQfinish(p->r[i].c);
	free(p->wr);
	free(p->qh);
	free(p->qt);
	free(p->r);
	free(p->kw);
	free(p->val);
	if (p->pw) {
		memset(p->pw, 0, strlen(p->pw));
		free(p->pw);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->pool_mu);
	pthread_cond_destroy(&p->pool_cv);
	pthread_cond_destroy(&p->mon_cv);
	free(p);
}

static char *read_password(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char buf[1024];
	if (!f) {
		errf(err, errlen, "cannot read the store password file %s", path);
		return NULL;
	}
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	char *pw = strdup(buf);
	memset(buf, 0, sizeof buf);
	if (!pw)
		errf(err, errlen, "out of memory");
	return pw;
}

/* Creates or migrates the schema, once, under the advisory lock. */
static int migrate(pg *p, PGconn *c, char *err, size_t errlen)
{
	char sql[128];
	int rc = -1, have = 0;
	PGresult *r;

	snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%lld)", (long long)MIGRATE_LOCK);
	r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		errf(err, errlen, "postgresql: advisory lock: %s", PQerrorMessage(c));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	r = PQexec(c, "CREATE TABLE IF NOT EXISTS lossd_schema_version(version int PRIMARY KEY,"
	              " applied_at timestamptz NOT NULL DEFAULT now());"
	              "SELECT coalesce(max(version), 0) FROM lossd_schema_version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		errf(err, errlen, "postgresql: schema version: %s", PQerrorMessage(c));
		PQclear(r);
		goto out;
	}
	have = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (have > SCHEMA_VERSION) {
		errf(err, errlen,
		     "postgresql: the schema is version %d, newer than this lossd knows (%d)", have,
		     SCHEMA_VERSION);
		goto out;
	}
	for (int v = have + 1; v <= SCHEMA_VERSION; v++) {
		char ins[96];
		snprintf(ins, sizeof ins, "INSERT INTO lossd_schema_version(version) VALUES(%d)",
		         v);
		if (!exec_ok(p, &(slot){c, 0, false}, "BEGIN") ||
		    !exec_ok(p, &(slot){c, 0, false}, migrations[v - 1]) ||
		    !exec_ok(p, &(slot){c, 0, false}, ins) ||
		    !exec_ok(p, &(slot){c, 0, false}, "COMMIT")) {
			errf(err, errlen, "postgresql: migrating to schema version %d: %s", v,
			     p->why);
			exec_ok(p, &(slot){c, 0, false}, "ROLLBACK");
			goto out;
		}
		/* warn: a change to the database an operator should see at --log-level warn */
		srv_log(SRV_LOG_WARN, NULL, "postgresql schema migrated to version %d", v);
	}
	rc = 0;
out:
	snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%lld)", (long long)MIGRATE_LOCK);
	PQclear(PQexec(c, sql));
	return rc;
}

static int pg_open(void **out, const char *url, const srv__store_opts *o, char *err, size_t errlen)
{
	pg *p = calloc(1, sizeof(*p));
	int rc = -1;

	*out = NULL;
	if (!p) {
		errf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->pool_mu, NULL);
	pthread_cond_init(&p->pool_cv, NULL);
	pthread_cond_init(&p->mon_cv, NULL);
	int n = o->connections < 2 ? 2 : o->connections > MAX_CONNS ? MAX_CONNS : o->connections;
	/* Half of the connections commit groups (several groups of a replica
	 * in flight at once), the others read. */
	p->nw = n / 2;
	p->nslots = n - p->nw;
	p->wr = calloc((size_t)p->nw, sizeof(*p->wr));
	p->qh = calloc((size_t)p->nw, sizeof(*p->qh));
	p->qt = calloc((size_t)p->nw, sizeof(*p->qt));
	p->r = calloc((size_t)p->nslots, sizeof(*p->r));
	p->kw = calloc(8, sizeof(*p->kw));
	p->val = calloc(8, sizeof(*p->val));
	if (!p->wr || !p->qh || !p->qt || !p->r || !p->kw || !p->val) {
		errf(err, errlen, "out of memory");
		goto out;
	}
	if (o->password_file && !(p->pw = read_password(o->password_file, err, errlen)))
		goto out;
	int ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
	snprintf(p->opts, sizeof p->opts, "-c statement_timeout=%d", ms);
	snprintf(p->ctimeout, sizeof p->ctimeout, "%d", ms / 1000 < 2 ? 2 : ms / 1000);
	/* The URL first: the parameters after it override what it says. */
	int k = 0;
	p->kw[k] = "dbname", p->val[k++] = url;
	p->kw[k] = "connect_timeout", p->val[k++] = p->ctimeout;
	p->kw[k] = "options", p->val[k++] = p->opts;
	p->kw[k] = "application_name", p->val[k++] = "lossd";
	if (p->pw)
		p->kw[k] = "password", p->val[k++] = p->pw;
	p->kw[k] = NULL, p->val[k] = NULL;

	PGconn *c = connect_one(p, false);
	if (!c) {
		errf(err, errlen, "postgresql: %s", p->why);
		goto out;
	}
	if (migrate(p, c, err, errlen)) {
		PQfinish(c);
		goto out;
	}
	PQfinish(c);
	if (slot_ready(p, &p->wr[0])) {
		errf(err, errlen, "postgresql: %s", p->why);
		goto out;
	}
	if (pthread_create(&p->mon, NULL, monitor, p) != 0) {
		errf(err, errlen, "cannot start the store monitor thread");
		goto out;
	}
	p->mon_started = true;
	*out = p;
	p = NULL;
	rc = 0;
out:
	pg_close(p);
	return rc;
}

/* ---- group commit ------------------------------------------------------------- */

/* The checkpoint record and metadata an op carries (docs/API.md 7, 8). */
static int write_extra(pg *p, slot *w, srv__store_op *op, bool mtime)
{
	char n[24], step[24], keep[24], ms[24];
	PGresult *r;

	snprintf(n, sizeof n, "%lld", (long long)op->ckpt_n);
	snprintf(step, sizeof step, "%lld", (long long)op->ckpt_step);
	snprintf(keep, sizeof keep, "%lld", (long long)op->ckpt_keep_from);
	snprintf(ms, sizeof ms, "%lld", (long long)op->updated_ms);
	if (op->ckpt_body) {
		const char *v[] = {op->stream, n, step, op->ckpt_body};
		if (!(r = run(p, w, "ins_ckpt", 4, v, NULL, PGRES_TUPLES_OK)))
			return -1;
		bool added = PQntuples(r) > 0;
		PQclear(r);
		if (!added) {
			/* the number is taken, or the stream is gone */
			const char *t[] = {op->stream, n};
			if (!(r = run(p, w, "ckpt_taken", 2, t, NULL, PGRES_TUPLES_OK)))
				return -1;
			op->taken = PQntuples(r) > 0;
			op->gone = !op->taken;
			PQclear(r);
			return 0;
		}
		const char *t[] = {op->stream, keep};
		if (!(r = run(p, w, "trim_ckpt", 2, t, NULL, PGRES_COMMAND_OK)))
			return -1;
		PQclear(r);
	}
	if (op->meta) {
		const char *v[] = {op->stream, op->meta, ms};
		if (!(r = run(p, w, "put_meta", 3, v, NULL, PGRES_COMMAND_OK)))
			return -1;
		PQclear(r);
	} else if (op->updated_ms && mtime) {
		const char *v[] = {op->stream, ms};
		if (!(r = run(p, w, "put_mtime", 2, v, NULL, PGRES_COMMAND_OK)))
			return -1;
		PQclear(r);
	}
	return 0;
}

/* Records op->key with op->reply, or (the key is taken) marks op
 * replayed with the first reply. */
static int note_key(pg *p, slot *w, srv__store_op *op)
{
	const char *v[] = {op->stream, op->key, op->reply ? op->reply : ""};
	PGresult *r = run(p, w, "note_key", 3, v, NULL, PGRES_TUPLES_OK);
	if (!r)
		return -1;
	bool taken = PQntuples(r) == 0;
	PQclear(r);
	if (!taken)
		return 0;
	const char *k[] = {op->stream, op->key};
	if (!(r = run(p, w, "key_get", 2, k, NULL, PGRES_TUPLES_OK)))
		return -1;
	if (PQntuples(r) > 0) {
		op->replayed = true;
		op->stored_reply = strdup(PQgetvalue(r, 0, 0));
	} else {
		op->gone = true; /* no stream row */
	}
	PQclear(r);
	return op->replayed && !op->stored_reply ? -1 : 0;
}

/* The parameters of the "delta" statement (lossd_delta) for an update's
 * op; every pointer borrowed from op or from the struct itself. */
typedef struct delta_args {
	char expect[24], upd[24], rows[24], mtime[24];
	char prefix[160];
	const char *v[11];
	int len[11];
} delta_args;

static void delta_args_of(delta_args *a, const srv__store_op *op)
{
	bool ck = op->type == SRV__OP_CHECKPOINT;
	snprintf(a->expect, sizeof a->expect, "%lld", (long long)op->seq);
	snprintf(a->upd, sizeof a->upd, "%lld", (long long)op->add_updates);
	snprintf(a->rows, sizeof a->rows, "%lld", (long long)op->add_rows);
	snprintf(a->mtime, sizeof a->mtime, "%lld", (long long)op->updated_ms);
	/* streams.c's record is "digest\nreply": the digest line goes before
	 * the reply the function writes. */
	a->prefix[0] = '\0';
	const char *nl = op->reply && op->reply[0] != '{' ? strchr(op->reply, '\n') : NULL;
	if (nl && (size_t)(nl - op->reply) + 2 <= sizeof a->prefix) {
		memcpy(a->prefix, op->reply, (size_t)(nl - op->reply) + 1);
		a->prefix[nl - op->reply + 1] = '\0';
	}
	const char *v[] = {op->stream,
	                   op->key,
	                   ck ? op->delta : op->data,
	                   ck ? op->data : NULL,
	                   a->expect,
	                   a->upd,
	                   a->rows,
	                   a->prefix[0] ? a->prefix : NULL,
	                   op->key2,
	                   op->reply2,
	                   a->mtime};
	int len[] = {-1,
	             -1,
	             (int)(ck ? op->delta_len : op->len),
	             ck ? (int)op->len : -1,
	             -1,
	             -1,
	             -1,
	             -1,
	             -1,
	             -1,
	             -1};
	memcpy(a->v, v, sizeof v);
	memcpy(a->len, len, sizeof len);
}

/* lossd_delta's row into op (status, seq, reply). 0 or -1 (memory). */
static int delta_result(srv__store_op *op, const PGresult *r)
{
	int status = get_i32(r, 0, 0);
	op->committed_seq = get_i64(r, 0, 1);
	op->gone = status == 2;
	op->replayed = status == 1;
	if (!PQgetisnull(r, 0, 2) && !(op->stored_reply = strdup(PQgetvalue(r, 0, 2))))
		return -1;
	return 0;
}

static int write_op_body(pg *p, slot *w, srv__store_op *op)
{
	PGresult *r = NULL;
	char seq[24];
	bool mtime = true;

	snprintf(seq, sizeof seq, "%lld", (long long)op->seq);
	switch (op->type) {
	case SRV__OP_CREATE: {
		const char *v[] = {op->stream, op->owner ? op->owner : "", op->config, op->data,
		                   seq};
		int len[] = {-1, -1, -1, (int)op->len, -1};
		if (!(r = run(p, w, "ins_stream", 5, v, len, PGRES_COMMAND_OK)))
			return -1;
		op->committed_seq = op->seq;
		break;
	}
	case SRV__OP_DELTA:
	case SRV__OP_CHECKPOINT:
		if (op->clear_keys) { /* a reset */
			const char *v[] = {op->stream, op->data};
			int len[] = {-1, (int)op->len};
			if (!(r = run(p, w, "reset", 2, v, len, PGRES_TUPLES_OK)))
				return -1;
			op->committed_seq = get_i64(r, 0, 0);
			op->gone = op->committed_seq < 0;
			break;
		} else {
			delta_args a;
			delta_args_of(&a, op);
			if (!(r = run(p, w, "delta", 11, a.v, a.len, PGRES_TUPLES_OK)))
				return -1;
			if (delta_result(op, r)) {
				PQclear(r);
				return -1;
			}
			mtime = false; /* lossd_delta wrote it */
		}
		break;
	case SRV__OP_DELETE: {
		const char *v[] = {op->stream};
		if (!(r = run(p, w, "del", 1, v, NULL, PGRES_COMMAND_OK)))
			return -1;
		op->committed_seq = op->seq;
		PQclear(r);
		return 0;
	}
	case SRV__OP_NOTE: op->committed_seq = op->seq; break;
	default: return -1;
	}
	PQclear(r);
	if (op->gone || op->replayed)
		return 0;
	/* A NOTE's or a reset's key (an update's is lossd_delta's). */
	if (op->key && (op->type == SRV__OP_NOTE || op->clear_keys) && note_key(p, w, op))
		return -1;
	return op->replayed ? 0 : write_extra(p, w, op, mtime);
}

/* Writes op. An op that adds a checkpoint record runs under a savepoint:
 * when the record's number is taken (op->taken) or the stream is gone,
 * nothing it wrote (a reset, its key) stays. */
static int write_op(pg *p, slot *w, srv__store_op *op)
{
	if (!op->ckpt_body)
		return write_op_body(p, w, op);
	if (!exec_ok(p, w, "SAVEPOINT ckpt"))
		return -1;
	if (write_op_body(p, w, op))
		return -1;
	if (op->taken || op->gone) {
		free(op->stored_reply);
		op->stored_reply = NULL;
		op->replayed = false;
		op->committed_seq = -1;
		return exec_ok(p, w, "ROLLBACK TO SAVEPOINT ckpt") ? 0 : -1;
	}
	return exec_ok(p, w, "RELEASE SAVEPOINT ckpt") ? 0 : -1;
}

typedef struct ordered {
	srv__store_op *op;
	size_t i;
} ordered;

static int by_stream(const void *a, const void *b)
{
	const ordered *x = a, *y = b;
	int c = strcmp(x->op->stream, y->op->stream);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * One transaction for the group. Its ops are written in stream id order
 * (each stream's own ops keep their order): every transaction of every
 * replica then takes the streams' row locks in the same order, so two
 * groups never deadlock (PostgreSQL would abort one after deadlock_timeout).
 */
/* True when op is one lossd_delta call and nothing else (an update). */
static bool one_statement(const srv__store_op *op)
{
	return (op->type == SRV__OP_DELTA || op->type == SRV__OP_CHECKPOINT) && !op->clear_keys &&
	       !op->ckpt_body && !op->meta;
}

/* The connection of w is unusable (a pipeline broke off): dropped, and the
 * store marked down until the monitor's probe succeeds. */
static void writer_lost(pg *p, slot *w, const char *what)
{
	mark_down(p, what, w->c);
	PQfinish(w->c);
	w->c = NULL;
}

/*
 * A group of updates in one round trip: BEGIN, one lossd_delta per op and
 * COMMIT go out together (libpq's pipeline mode) and the results are read
 * after, so the streams' row locks are held for the server's work and the
 * commit only, never for a round trip. Every op is one_statement(). 0 when
 * committed, else -1 (rolled back, or the outcome unknown: the ops fail
 * and a retry with the same key finds out).
 */
static int commit_pipelined(pg *p, slot *w, ordered *v, size_t cnt)
{
	PGconn *c = w->c;
	delta_args a;
	int fmt[11];
	bool ok = true;

	if (!PQenterPipelineMode(c)) {
		set_why(p, "pipeline", c);
		return -1;
	}
	bool sent = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
	for (size_t k = 0; sent && k < cnt; k++) {
		delta_args_of(&a, v[k].op);
		for (int i = 0; i < 11; i++)
			fmt[i] = a.len[i] >= 0;
		sent = PQsendQueryPrepared(c, "delta", 11, a.v, a.len, fmt, 1);
	}
	sent = sent && PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
	       PQpipelineSync(c);
	if (!sent) {
		writer_lost(p, w, "pipeline");
		return -1;
	}
	/* One result and a NULL per statement, then the sync. */
	for (size_t k = 0; k < cnt + 2; k++) {
		PGresult *r = PQgetResult(c);
		if (!r) {
			writer_lost(p, w, "pipeline");
			return -1;
		}
		ExecStatusType want = k == 0 || k == cnt + 1 ? PGRES_COMMAND_OK : PGRES_TUPLES_OK;
		if (ok && PQresultStatus(r) != want) {
			ok = false;
			if (conn_error(c, r))
				mark_down(p, k == cnt + 1 ? "COMMIT" : "delta", c);
			else
				set_why(p, k == cnt + 1 ? "COMMIT" : "delta", c);
		} else if (ok && k >= 1 && k <= cnt && delta_result(v[k - 1].op, r)) {
			ok = false;
		}
		PQclear(r);
		PQclear(PQgetResult(c)); /* the statement's end */
	}
	PGresult *r = PQgetResult(c);
	bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	if (!synced || !PQexitPipelineMode(c)) {
		writer_lost(p, w, "pipeline");
		return -1;
	}
	if (!ok)
		exec_ok(p, w, "ROLLBACK"); /* a failed transaction block stays open */
	return ok ? 0 : -1;
}

static int commit_group(pg *p, slot *w, srv__store_op *group, uint64_t *n)
{
	size_t cnt = 0, k = 0;
	int rc = -1;
	*n = 0;
	for (srv__store_op *op = group; op; op = op->next)
		cnt++;
	ordered *v = malloc(cnt * sizeof(*v));
	if (!v)
		return -1;
	for (srv__store_op *op = group; op; op = op->next, k++)
		v[k] = (ordered){op, k};
	qsort(v, cnt, sizeof(*v), by_stream);
	bool updates_only = true;
	for (k = 0; k < cnt && updates_only; k++)
		updates_only = one_statement(v[k].op);
	if (updates_only) {
		rc = slot_ready(p, w) ? -1 : commit_pipelined(p, w, v, cnt);
		*n = rc ? 0 : cnt;
		goto out;
	}
	if (slot_ready(p, w) || !exec_ok(p, w, "BEGIN"))
		goto out;
	for (k = 0; k < cnt; k++, (*n)++) {
		if (write_op(p, w, v[k].op)) {
			exec_ok(p, w, "ROLLBACK");
			goto out;
		}
	}
	rc = exec_ok(p, w, "COMMIT") ? 0 : -1;
out:
	free(v);
	return rc;
}

/* The writer (and queue) of a stream: all of a stream's ops go through
 * one, so a busy stream's updates gather into one group while its last
 * group commits (its groups would only queue for its row lock on several
 * writers), and different streams commit on different writers at once. */
static int writer_of(const pg *p, const char *stream)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (const unsigned char *c = (const unsigned char *)stream; *c; c++)
		h = (h ^ *c) * 16777619u;
	return (int)(h % (uint32_t)p->nw);
}

static void pg_submit(void *b, srv__store_op *op)
{
	pg *p = b;
	int k = writer_of(p, op->stream);
	op->next = NULL;
	op->done = false;
	op->rc = 0;
	op->committed_seq = -1;
	op->stored_reply = NULL;
	op->replayed = op->gone = op->taken = false;
	op->waiter = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->qt[k])
		p->qt[k]->next = op;
	else
		p->qh[k] = op;
	p->qt[k] = op;
	pthread_mutex_unlock(&p->mu);
}

/*
 * A thread in pg_wait sleeping on a lock and condition of its own (on its
 * stack): whoever takes it from op->waiter (under mu) wakes it, once, after
 * releasing mu. Leaders wake the ops of the group they committed, and one
 * waiter of a queued op to lead the next group: each waiter wakes about
 * once per update instead of at every group any writer commits (a shared
 * condition woke every replica thread in a store wait per group, and each
 * then queued for mu).
 */
struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool woken;          /* under m */
	struct waiter *next; /* the taker's list of those to wake */
};

/* Takes op's sleeping waiter, if any, onto *list. mu held. */
static void take_waiter(srv__store_op *op, struct waiter **list)
{
	struct waiter *w = op->waiter;
	if (!w)
		return;
	op->waiter = NULL;
	w->next = *list;
	*list = w;
}

/* Wakes every waiter of list. mu NOT held: each may be gone once told. */
static void wake_all(struct waiter *list)
{
	for (struct waiter *w = list, *next; w; w = next) {
		next = w->next;
		pthread_mutex_lock(&w->m);
		w->woken = true;
		pthread_cond_signal(&w->cv);
		pthread_mutex_unlock(&w->m);
	}
}

static int pg_wait(void *b, srv__store_op *op)
{
	pg *p = b;
	int k = writer_of(p, op->stream);
	slot *w = &p->wr[k];
	struct waiter me;
	pthread_mutex_init(&me.m, NULL);
	pthread_cond_init(&me.cv, NULL);
	pthread_mutex_lock(&p->mu);
	while (!op->done) {
		if (w->busy || !p->qh[k]) {
			/* Sleep until told: op is done, or the writer is free with
			 * ops queued and this thread is to lead them. */
			me.woken = false;
			op->waiter = &me;
			pthread_mutex_unlock(&p->mu);
			pthread_mutex_lock(&me.m);
			while (!me.woken)
				pthread_cond_wait(&me.cv, &me.m);
			pthread_mutex_unlock(&me.m);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		/* Lead the writer's queued ops: one transaction. */
		w->busy = true;
		srv__store_op *group = p->qh[k];
		p->qh[k] = p->qt[k] = NULL;
		pthread_mutex_unlock(&p->mu);

		uint64_t n = 0;
		int rc = atomic_load(&p->down) ? -1 : commit_group(p, w, group, &n);

		struct waiter *wake = NULL;
		pthread_mutex_lock(&p->mu);
		w->busy = false;
		if (!rc) {
			p->groups++;
			p->ops += n;
		}
		for (srv__store_op *o = group, *next; o; o = next) {
			next = o->next; /* o may be gone once its waiter sees done */
			if (rc) {
				free(o->stored_reply);
				o->stored_reply = NULL;
				o->replayed = o->gone = o->taken = false;
			}
			o->rc = rc;
			o->done = true;
			take_waiter(o, &wake);
		}
		/* The next group's leader: a sleeping waiter of a queued op (one
		 * that sleeps not yet finds the writer free on its own). */
		for (srv__store_op *o = p->qh[k]; o; o = o->next)
			if (o->waiter) {
				take_waiter(o, &wake);
				break;
			}
		if (wake) {
			pthread_mutex_unlock(&p->mu);
			wake_all(wake);
			pthread_mutex_lock(&p->mu);
		}
	}
	int rc = op->rc;
	pthread_mutex_unlock(&p->mu);
	pthread_cond_destroy(&me.cv);
	pthread_mutex_destroy(&me.m);
	return rc;
}

static void pg_stats(void *b, uint64_t *groups, uint64_t *ops)
{
	pg *p = b;
	pthread_mutex_lock(&p->mu);
	*groups = p->groups;
	*ops = p->ops;
	pthread_mutex_unlock(&p->mu);
}

static bool pg_broken(void *b)
{
	return atomic_load(&((pg *)b)->down);
}

/* ---- reading ------------------------------------------------------------------- */

static int pg_key_get(void *b, const char *stream, const char *key, char **reply)
{
	pg *p = b;
	*reply = NULL;
	slot *s = reader_get(p);
	if (!s)
		return -1;
	const char *v[] = {stream, key};
	PGresult *r = run(p, s, "key_get", 2, v, NULL, PGRES_TUPLES_OK);
	int rc = -1;
	if (r) {
		rc = 0;
		if (PQntuples(r) > 0) {
			*reply = strdup(PQgetvalue(r, 0, 0));
			rc = *reply ? 1 : -1;
		}
	}
	PQclear(r);
	reader_put(p, s);
	return rc;
}

/* Feeds the deltas of stream id above seq to on_delta. */
static int feed_deltas(pg *p, slot *s, const char *id, int64_t seq, void *h,
                       srv__store_delta_fn on_delta, void *arg)
{
	char sq[24];
	snprintf(sq, sizeof sq, "%lld", (long long)seq);
	const char *v[] = {id, sq};
	PGresult *r = run(p, s, "deltas", 2, v, NULL, PGRES_TUPLES_OK);
	if (!r)
		return -1;
	int rc = 0;
	for (int i = 0; i < PQntuples(r) && !rc; i++)
		rc = on_delta(arg, h, get_i64(r, i, 0), PQgetvalue(r, i, 1),
		              (size_t)PQgetlength(r, i, 1))
		             ? -1
		             : 0;
	PQclear(r);
	return rc;
}

/* Loads streams (one, or all) in one repeatable-read snapshot. Returns the
 * number of streams loaded, or -1. */
static int load(pg *p, slot *s, const char *only_id, srv__store_stream_fn on_stream,
                srv__store_delta_fn on_delta, void *arg)
{
	int rc = -1, n = 0;
	PGresult *r = NULL;

	if (!exec_ok(p, s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
		return -1;
	const char *v[] = {only_id};
	r = only_id ? run(p, s, "load_one", 1, v, NULL, PGRES_TUPLES_OK)
	            : run(p, s, "load_all", 0, NULL, NULL, PGRES_TUPLES_OK);
	if (!r)
		goto out;
	for (int i = 0; i < PQntuples(r); i++) {
		const char *id = PQgetvalue(r, i, 0);
		int64_t seq = get_i64(r, i, 4);
		void *h = on_stream(arg, id, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
		                    PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3), seq);
		if (!h || feed_deltas(p, s, id, seq, h, on_delta, arg))
			goto out;
		n++;
	}
	rc = n;
out:
	PQclear(r);
	exec_ok(p, s, "COMMIT");
	return rc;
}

static int pg_load(void *b, const char *only_id, srv__store_stream_fn on_stream,
                   srv__store_delta_fn on_delta, void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	if (!s)
		return -1;
	int rc = load(p, s, only_id, on_stream, on_delta, arg);
	reader_put(p, s);
	return rc < 0 ? -1 : 0;
}

/* The most seqs a sync is told it need not read (the array's text). */
#define MAX_HAVE 64

static int pg_sync(void *b, const char *id, int64_t seq, const int64_t *have, size_t nhave,
                   void *handle, srv__store_stream_fn on_state, srv__store_delta_fn on_delta,
                   void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	int rc = -1;
	if (!s)
		return -1;
	char sq[24], arr[MAX_HAVE * 21 + 3];
	size_t at = 0;
	snprintf(sq, sizeof sq, "%lld", (long long)(seq < 0 ? 0 : seq));
	if (seq < 0 || nhave > MAX_HAVE)
		nhave = 0; /* (a reload reads everything) */
	arr[at++] = '{';
	for (size_t i = 0; i < nhave; i++)
		at += (size_t)snprintf(arr + at, sizeof arr - at, "%s%lld", i ? "," : "",
		                       (long long)have[i]);
	snprintf(arr + at, sizeof arr - at, "}");
	const char *v[] = {id, sq, arr};
	PGresult *r = run(p, s, "sync", 3, v, NULL, PGRES_TUPLES_OK);
	if (!r)
		goto out;
	if (PQntuples(r) == 0) {
		rc = 0; /* gone */
		goto out;
	}
	if (seq < 0 || get_i64(r, 0, 1) > seq) {
		/* A checkpoint (or a reset) above the cache: read it whole. */
		PQclear(r);
		r = NULL;
		int n = load(p, s, id, on_state, on_delta, arg);
		rc = n < 0 ? -1 : n > 0 ? 1 : 0;
		goto out;
	}
	/* The deltas read and the ones the caller has, in seq order, up to
	 * the stream's seq in this snapshot. */
	int64_t head = get_i64(r, 0, 0);
	size_t h = 0;
	rc = 1;
	for (int i = 0; i <= PQntuples(r) && rc == 1; i++) {
		bool row = i < PQntuples(r) && !PQgetisnull(r, i, 2);
		int64_t q = row ? get_i64(r, i, 2) : head + 1;
		for (; h < nhave && have[h] < q && have[h] <= head; h++)
			if (have[h] > seq && on_delta(arg, handle, have[h], NULL, 0))
				rc = -1;
		if (row && rc == 1 &&
		    on_delta(arg, handle, q, PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3)))
			rc = -1;
	}
out:
	PQclear(r);
	reader_put(p, s);
	return rc;
}

/*
 * The list's SQL: the SQLite path's filters, sort and cursor (streams.c)
 * over every replica's streams. Keys compare bytewise (COLLATE "C", as
 * strcmp); the metadata text is api_meta_text's JSON.
 */
static int pg_list(void *b, const srv__store_list_q *q, srv__store_list_fn fn, void *arg)
{
	static const char *const keys[] = {"id", "updated", "created", "name"};
	pg *p = b;
	char sql[2048], lim[16], t[24];
	const char *v[6];
	int n = 0, len = 0, rc = -1;
	const char *dir = q->desc ? "DESC" : "ASC", *cmp = q->desc ? "<" : ">";
	int sort = q->sort >= SRV__SORT_ID && q->sort <= SRV__SORT_NAME ? q->sort : SRV__SORT_ID;

	v[n++] = q->owner;
	len = snprintf(sql, sizeof sql,
	               "SELECT id, updates, rows, meta, updated_ms, name, created, updated FROM ("
	               "SELECT s.id COLLATE \"C\" AS id, s.updates, s.rows,"
	               " coalesce(m.meta, '{}') AS meta, coalesce(m.updated_ms, 0) AS updated_ms,"
	               " (s.config::jsonb->>'name') COLLATE \"C\" AS name,"
	               " coalesce((m.meta::jsonb->>'created_ms')::bigint, 0) AS created,"
	               " coalesce(nullif(m.updated_ms, 0), (m.meta::jsonb->>'created_ms')::bigint,"
	               " 0) AS updated, coalesce(m.meta::jsonb->'tags', '{}') AS tags"
	               " FROM lossd_streams s LEFT JOIN lossd_meta m ON m.stream = s.id"
	               " WHERE s.owner = $1) x WHERE true");
	if (q->prefix && q->prefix[0]) {
		v[n++] = q->prefix;
		len += snprintf(sql + len, sizeof sql - (size_t)len, " AND starts_with(name, $%d)",
		                n);
	}
	if (q->tags) {
		v[n++] = q->tags;
		len += snprintf(sql + len, sizeof sql - (size_t)len,
		                " AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($%d::jsonb) e"
		                " WHERE (x.tags->>(e->>0)) IS DISTINCT FROM (e->>1))",
		                n);
	}
	if (q->after_id && sort == SRV__SORT_ID) {
		v[n++] = q->after_id;
		len += snprintf(sql + len, sizeof sql - (size_t)len, " AND id %s $%d", cmp, n);
	} else if (q->after_id) {
		snprintf(t, sizeof t, "%lld", (long long)q->after_t);
		v[n++] = sort == SRV__SORT_NAME ? (q->after_name ? q->after_name : "") : t;
		v[n++] = q->after_id;
		len += snprintf(sql + len, sizeof sql - (size_t)len,
		                " AND (%s, id) %s ($%d::%s, $%d)", keys[sort], cmp, n - 1,
		                sort == SRV__SORT_NAME ? "text" : "bigint", n);
	}
	snprintf(lim, sizeof lim, "%d", q->limit);
	v[n++] = lim;
	if (sort == SRV__SORT_ID)
		len += snprintf(sql + len, sizeof sql - (size_t)len, " ORDER BY id %s LIMIT $%d",
		                dir, n);
	else
		len += snprintf(sql + len, sizeof sql - (size_t)len,
		                " ORDER BY %s %s, id %s LIMIT $%d", keys[sort], dir, dir, n);
	if (len <= 0 || (size_t)len >= sizeof sql)
		return -1;

	slot *s = reader_get(p);
	if (!s)
		return -1;
	PGresult *r = PQexecParams(s->c, sql, n, NULL, v, NULL, NULL, 1);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		if (conn_error(s->c, r))
			mark_down(p, "list", s->c);
		else
			set_why(p, "list", s->c);
		goto out;
	}
	rc = 0;
	for (int i = 0; i < PQntuples(r) && rc >= 0; i++) {
		srv__store_listed e = {
		        .id = PQgetvalue(r, i, 0),
		        .updates = get_i64(r, i, 1),
		        .rows = get_i64(r, i, 2),
		        .meta = PQgetvalue(r, i, 3),
		        .updated_ms = get_i64(r, i, 4),
		        .name = PQgetvalue(r, i, 5),
		        .created_ms = get_i64(r, i, 6),
		};
		rc = fn(arg, &e) ? -1 : rc + 1;
	}
out:
	PQclear(r);
	reader_put(p, s);
	return rc;
}

static int pg_expire(void *b, int64_t now_ms, srv__store_expired_fn fn, void *arg)
{
	pg *p = b;
	char now[24];
	int total = 0, got;
	snprintf(now, sizeof now, "%lld", (long long)now_ms);
	do {
		slot *s = reader_get(p);
		if (!s)
			return -1;
		const char *v[] = {now};
		PGresult *r = run(p, s, "expire", 1, v, NULL, PGRES_TUPLES_OK);
		reader_put(p, s); /* the result stays; fn may wait on a stream's mutex */
		got = r ? PQntuples(r) : -1;
		for (int i = 0; i < got; i++)
			fn(arg, PQgetvalue(r, i, 0));
		PQclear(r);
		if (got < 0)
			return -1;
		total += got;
	} while (got == 256);
	return total;
}

static int pg_load_extra(void *b, srv__store_ckpt_fn on_ckpt, srv__store_meta_fn on_meta, void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	PGresult *r = NULL;
	int rc = -1;
	if (!s)
		return -1;
	if (!(r = run(p, s, "ckpts_all", 0, NULL, NULL, PGRES_TUPLES_OK)))
		goto out;
	for (int i = 0; i < PQntuples(r); i++)
		if (on_ckpt(arg, PQgetvalue(r, i, 0), get_i64(r, i, 1), get_i64(r, i, 2),
		            PQgetvalue(r, i, 3)))
			goto out;
	PQclear(r);
	if (!(r = run(p, s, "meta_all", 0, NULL, NULL, PGRES_TUPLES_OK)))
		goto out;
	for (int i = 0; i < PQntuples(r); i++)
		if (on_meta(arg, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), get_i64(r, i, 2)))
			goto out;
	rc = 0;
out:
	PQclear(r);
	reader_put(p, s);
	return rc;
}

static int pg_put_checkpoint(void *b, const char *id, int64_t seq, const void *state, size_t len)
{
	pg *p = b;
	slot *s = reader_get(p);
	PGresult *r = NULL;
	int rc = -1;
	char sq[24];
	if (!s)
		return -1;
	snprintf(sq, sizeof sq, "%lld", (long long)seq);
	const char *v[] = {id, state, sq};
	int lens[] = {-1, (int)len, -1};
	if (!exec_ok(p, s, "BEGIN"))
		goto out;
	if (!(r = run(p, s, "put_ckpt", 3, v, lens, PGRES_COMMAND_OK)))
		goto rollback;
	bool moved = strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	r = NULL;
	if (moved) {
		const char *t[] = {id, sq};
		if (!(r = run(p, s, "trim_deltas", 2, t, NULL, PGRES_COMMAND_OK)))
			goto rollback;
	}
	rc = exec_ok(p, s, "COMMIT") ? 0 : -1;
	goto out;
rollback:
	exec_ok(p, s, "ROLLBACK");
out:
	PQclear(r);
	reader_put(p, s);
	return rc;
}

static int pg_ckpts_of(void *b, const char *id, srv__store_ckpt_fn on_ckpt, void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	int rc = -1;
	if (!s)
		return -1;
	const char *v[] = {id};
	PGresult *r = run(p, s, "ckpts_of", 1, v, NULL, PGRES_TUPLES_OK);
	if (r) {
		rc = 0;
		for (int i = 0; i < PQntuples(r) && !rc; i++)
			rc = on_ckpt(arg, id, get_i64(r, i, 0), get_i64(r, i, 1),
			             PQgetvalue(r, i, 2));
	}
	PQclear(r);
	reader_put(p, s);
	return rc;
}

static int pg_meta_of(void *b, const char *id, srv__store_meta_fn on_meta, void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	int rc = -1;
	if (!s)
		return -1;
	const char *v[] = {id};
	PGresult *r = run(p, s, "meta_of", 1, v, NULL, PGRES_TUPLES_OK);
	if (r) {
		rc = 0;
		if (PQntuples(r) > 0)
			rc = on_meta(arg, id, PQgetvalue(r, 0, 0), get_i64(r, 0, 1));
	}
	PQclear(r);
	reader_put(p, s);
	return rc;
}

/* ---- copying (lossd --copy-store) ---------------------------------------------- */

static int export_one(pg *p, slot *s, const PGresult *sr, int row, srv__store_rec_fn fn, void *arg)
{
	srv__store_rec rec;
	PGresult *r = NULL;
	int rc = -1;
	char sq[24];

	memset(&rec, 0, sizeof rec);
	rec.id = PQgetvalue(sr, row, 0);
	rec.owner = PQgetvalue(sr, row, 1);
	rec.config = PQgetvalue(sr, row, 2);
	rec.state = PQgetvalue(sr, row, 3);
	rec.len = (size_t)PQgetlength(sr, row, 3);
	rec.ckpt_seq = rec.seq = get_i64(sr, row, 4);
	snprintf(sq, sizeof sq, "%lld", (long long)rec.ckpt_seq);
	const char *v[] = {rec.id, sq};
	if (!(r = run(p, s, "deltas", 2, v, NULL, PGRES_TUPLES_OK)))
		goto out;
	int n = PQntuples(r);
	rec.deltas = calloc((size_t)n + 1, sizeof(*rec.deltas));
	if (!rec.deltas)
		goto out;
	for (int i = 0; i < n; i++, rec.ndeltas++) {
		srv__store_delta_row *d = &rec.deltas[i];
		d->seq = get_i64(r, i, 0);
		d->len = (size_t)PQgetlength(r, i, 1);
		if (!(d->data = malloc(d->len + 1)))
			goto out;
		memcpy(d->data, PQgetvalue(r, i, 1), d->len);
		rec.seq = d->seq;
	}
	PQclear(r);
	if (!(r = run(p, s, "keys_all", 1, v, NULL, PGRES_TUPLES_OK)))
		goto out;
	n = PQntuples(r);
	rec.keys = calloc((size_t)n + 1, sizeof(*rec.keys));
	if (!rec.keys)
		goto out;
	for (int i = 0; i < n; i++, rec.nkeys++) {
		rec.keys[i].key = strdup(PQgetvalue(r, i, 0));
		rec.keys[i].reply = strdup(PQgetvalue(r, i, 1));
		if (!rec.keys[i].key || !rec.keys[i].reply) {
			rec.nkeys++;
			goto out;
		}
	}
	PQclear(r);
	if (!(r = run(p, s, "ckpts_of", 1, v, NULL, PGRES_TUPLES_OK)))
		goto out;
	n = PQntuples(r);
	rec.ckpts = calloc((size_t)n + 1, sizeof(*rec.ckpts));
	if (!rec.ckpts)
		goto out;
	for (int i = 0; i < n; i++, rec.nckpts++) {
		rec.ckpts[i].n = get_i64(r, i, 0);
		rec.ckpts[i].step = get_i64(r, i, 1);
		if (!(rec.ckpts[i].body = strdup(PQgetvalue(r, i, 2)))) {
			rec.nckpts++;
			goto out;
		}
	}
	PQclear(r);
	if (!(r = run(p, s, "meta_of", 1, v, NULL, PGRES_TUPLES_OK)))
		goto out;
	if (PQntuples(r) > 0) {
		rec.updated_ms = get_i64(r, 0, 1);
		if (!(rec.meta = strdup(PQgetvalue(r, 0, 0))))
			goto out;
	}
	rc = fn(arg, &rec) ? -1 : 0;
out:
	PQclear(r);
	srv__store_rec_clear(&rec);
	return rc;
}

static int pg_export(void *b, srv__store_rec_fn fn, void *arg)
{
	pg *p = b;
	slot *s = reader_get(p);
	PGresult *r = NULL;
	int rc = -1;
	if (!s)
		return -1;
	if (!exec_ok(p, s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
		goto out;
	if (!(r = run(p, s, "load_all", 0, NULL, NULL, PGRES_TUPLES_OK)))
		goto out;
	rc = 0;
	for (int i = 0; i < PQntuples(r) && !rc; i++)
		rc = export_one(p, s, r, i, fn, arg);
out:
	PQclear(r);
	exec_ok(p, s, "COMMIT");
	reader_put(p, s);
	return rc;
}

static int pg_import(void *b, const srv__store_rec *rec)
{
	pg *p = b;
	PGresult *r = NULL;
	char ck[24], sq[24], up[24], rw[24];

	/* No request is served while copying: the writer connection is ours. */
	if (slot_ready(p, p->wr) || !exec_ok(p, p->wr, "BEGIN"))
		return -1;
	snprintf(ck, sizeof ck, "%lld", (long long)rec->ckpt_seq);
	snprintf(sq, sizeof sq, "%lld", (long long)rec->seq);
	snprintf(up, sizeof up, "%lld", (long long)rec->updates);
	snprintf(rw, sizeof rw, "%lld", (long long)rec->rows);
	const char *dv[] = {rec->id};
	if (!(r = run(p, p->wr, "del", 1, dv, NULL, PGRES_COMMAND_OK)))
		goto fail;
	PQclear(r);
	const char *v[] = {rec->id, rec->owner, rec->config, rec->state, ck, sq, up, rw};
	int len[] = {-1, -1, -1, (int)rec->len, -1, -1, -1, -1};
	if (!(r = run(p, p->wr, "imp_stream", 8, v, len, PGRES_COMMAND_OK)))
		goto fail;
	PQclear(r);
	for (size_t i = 0; i < rec->ndeltas; i++) {
		char ds[24];
		snprintf(ds, sizeof ds, "%lld", (long long)rec->deltas[i].seq);
		const char *w[] = {rec->id, ds, rec->deltas[i].data};
		int wl[] = {-1, -1, (int)rec->deltas[i].len};
		if (!(r = run(p, p->wr, "imp_delta", 3, w, wl, PGRES_COMMAND_OK)))
			goto fail;
		PQclear(r);
	}
	for (size_t i = 0; i < rec->nkeys; i++) {
		const char *w[] = {rec->id, rec->keys[i].key, rec->keys[i].reply};
		if (!(r = run(p, p->wr, "imp_key", 3, w, NULL, PGRES_COMMAND_OK)))
			goto fail;
		PQclear(r);
	}
	srv__store_op op;
	memset(&op, 0, sizeof op);
	op.type = SRV__OP_NOTE;
	op.stream = rec->id;
	for (size_t i = 0; i < rec->nckpts; i++) {
		op.ckpt_body = rec->ckpts[i].body;
		op.ckpt_n = rec->ckpts[i].n;
		op.ckpt_step = rec->ckpts[i].step;
		if (write_extra(p, p->wr, &op, true))
			goto fail;
	}
	if (rec->meta) {
		memset(&op, 0, sizeof op);
		op.type = SRV__OP_NOTE;
		op.stream = rec->id;
		op.meta = rec->meta;
		op.updated_ms = rec->updated_ms;
		if (write_extra(p, p->wr, &op, true))
			goto fail;
	}
	return exec_ok(p, p->wr, "COMMIT") ? 0 : -1;
fail:
	exec_ok(p, p->wr, "ROLLBACK");
	return -1;
}

static const srv__store_backend backend = {
        .name = "postgresql",
        .open = pg_open,
        .close = pg_close,
        .load = pg_load,
        .key_get = pg_key_get,
        .submit = pg_submit,
        .wait = pg_wait,
        .stats = pg_stats,
        .broken = pg_broken,
        .sync = pg_sync,
        .list = pg_list,
        .expire = pg_expire,
        .export_all = pg_export,
        .import = pg_import,
        .load_extra = pg_load_extra,
        .ckpts_of = pg_ckpts_of,
        .meta_of = pg_meta_of,
        .put_checkpoint = pg_put_checkpoint,
};

const srv__store_backend *srv__store_pg_backend(void)
{
	return &backend;
}

#else /* !LOSSD_HAVE_LIBPQ */

const srv__store_backend *srv__store_pg_backend(void)
{
	return NULL;
}

#endif
