/*
 * test_store_vfs.c - server/src/store_vfs.c's lossd-wal VFS: a commit's
 * WAL writes reach the file as a few writes, at the sync, and nothing
 * SQLite reads or another connection sees differs from the default VFS:
 * a big blob (more than one write's worth), a transaction that spills
 * pages to the WAL and reads them back, and a second connection reading
 * what was committed.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

static char dir[256], path[300];

static void mkdir_temp(void)
{
	snprintf(dir, sizeof dir, "/tmp/lossd_test_store_vfs_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/t.db", dir);
}

static void rm_temp(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	(void)system(cmd);
}

static void exec(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql,
	             err ? err : "");
}

/* A connection as the store's writer opens it: WAL, synced at each commit,
 * no automatic checkpoint; vfs NULL is the default VFS. */
static sqlite3 *open_db(const char *vfs)
{
	sqlite3 *db = NULL;
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
	             SQLITE_OK);
	exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0");
	return db;
}

/* Inserts rows id 0..n-1, each a blob of len bytes of (id & 0xff). */
static void insert_rows(sqlite3 *db, int n, int len)
{
	sqlite3_stmt *s = NULL;
	unsigned char *b = malloc((size_t)len);
	cr_assert_not_null(b);
	cr_assert_eq(sqlite3_prepare_v2(db, "INSERT INTO t(id, b) VALUES(?1, ?2)", -1, &s, NULL),
	             SQLITE_OK);
	for (int i = 0; i < n; i++) {
		memset(b, i & 0xff, (size_t)len);
		sqlite3_bind_int(s, 1, i);
		sqlite3_bind_blob(s, 2, b, len, SQLITE_TRANSIENT);
		cr_assert_eq(sqlite3_step(s), SQLITE_DONE, "%s", sqlite3_errmsg(db));
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	free(b);
}

/* Every row of t, read on db, holds n rows as insert_rows wrote them
 * (len bytes each), and the database passes its integrity check. */
static void assert_rows(sqlite3 *db, int n, int len)
{
	sqlite3_stmt *s = NULL;
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT id, b FROM t ORDER BY id", -1, &s, NULL),
	             SQLITE_OK);
	int rows = 0;
	while (sqlite3_step(s) == SQLITE_ROW) {
		int id = sqlite3_column_int(s, 0);
		const unsigned char *b = sqlite3_column_blob(s, 1);
		cr_assert_eq(id, rows);
		cr_assert_eq(sqlite3_column_bytes(s, 1), len);
		for (int k = 0; k < len; k++)
			cr_assert_eq(b[k], id & 0xff, "row %d byte %d", id, k);
		rows++;
	}
	sqlite3_finalize(s);
	cr_assert_eq(rows, n);
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(s);
}

Test(store_vfs, a_commit_reaches_the_file_in_few_writes, .init = mkdir_temp, .fini = rm_temp)
{
	const char *vfs = srv__store_wal_vfs();
	cr_assert_not_null(vfs);
	sqlite3 *w = open_db(vfs);
	exec(w, "CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
	uint64_t g0, w0, g1, w1;
	srv__store_vfs_stats(&g0, &w0);
	exec(w, "BEGIN");
	insert_rows(w, 40, 3000); /* 40 pages and more: ~170 KB of frames */
	exec(w, "COMMIT");
	srv__store_vfs_stats(&g1, &w1);
	/* SQLite wrote each frame as two writes (header, page) */
	cr_assert_geq(g1 - g0, 80, "%llu writes gathered", (unsigned long long)(g1 - g0));
	cr_assert_leq(w1 - w0, 3, "%llu writes reached the file", (unsigned long long)(w1 - w0));
	/* what a second connection (the default VFS) reads is the commit */
	sqlite3 *r = open_db(NULL);
	assert_rows(r, 40, 3000);
	sqlite3_close(r);
	sqlite3_close(w);
}

Test(store_vfs, a_blob_past_one_write_and_spilled_pages_read_back, .init = mkdir_temp,
     .fini = rm_temp)
{
	sqlite3 *w = open_db(srv__store_wal_vfs());
	/* a cache of 8 pages: the transaction spills pages into the WAL and
	 * reads them back before it commits */
	exec(w, "PRAGMA cache_size=8; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)");
	exec(w, "BEGIN");
	insert_rows(w, 20, 150000); /* each row is more than one write's worth */
	exec(w, "UPDATE t SET b = b WHERE id % 2 = 0");
	exec(w, "COMMIT");
	assert_rows(w, 20, 150000);
	sqlite3 *r = open_db(NULL);
	assert_rows(r, 20, 150000);
	sqlite3_close(r);
	/* and after the WAL is copied into the database and starts over */
	exec(w, "PRAGMA wal_checkpoint(TRUNCATE); DELETE FROM t WHERE id >= 10");
	assert_rows(w, 10, 150000);
	sqlite3_close(w);
	r = open_db(NULL);
	assert_rows(r, 10, 150000);
	sqlite3_close(r);
}
