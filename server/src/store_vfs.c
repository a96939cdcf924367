/*
 * store_vfs.c - lossd's two SQLite VFS shims, each the default VFS with one
 * thing changed, sharing one file type that passes every other call to the
 * default VFS's own file unchanged (locking, shared memory, the rest):
 *
 *   "lossd-map"  the start-up reads: the main database file mapped whole,
 *                so a page or a blob's overflow content is copied from the
 *                mapping (or, for a page the pager fetches, used in place)
 *                instead of one pread() per 4 KiB page (srv__store_map_vfs);
 *   "lossd-wal"  the writer: its writes to the WAL gathered into one
 *                buffer and handed to the kernel as one write when SQLite
 *                syncs the WAL (srv__store_wal_vfs).
 *
 * Why "lossd-map": SQLite maps at most SQLITE_MAX_MMAP_SIZE bytes of
 * a database (2 GiB in Debian's build, whatever PRAGMA mmap_size asks), and
 * past that every page and every overflow blob is a system call: a 4.7 GB
 * store of 10^6 deltas spent a third of its start-up in pread() and the
 * page-cache lookups behind it. It maps the whole file at open: the WAL
 * and its shared memory are SQLite's own (a page in the WAL is read from
 * the WAL file, never from the mapping).
 * Connections on one file share one mapping (map_whole), so the pages
 * the check faulted in are mapped for the loaders too, and it is torn
 * down once, after the last close, on a thread of its own (unmap_later).
 * Used only by the start-up reads (PRAGMA quick_check and the loader
 * connections of srv__store_load_all, store.c), which are closed before
 * anything is served: a read error on a mapped page is a SIGBUS rather
 * than an error code, acceptable before the first request (the start
 * fails either way), not while serving; and nothing writes the file while
 * they run, so the mapping cannot go stale. Bytes past the mapping's end
 * (the file grew after the open) are read by the default VFS.
 *
 * Why "lossd-wal": SQLite writes a WAL frame as two pwrite() calls, its
 * 24-byte header and its page, so a group commit of 32 streams' updates
 * (~37 frames) made ~74 system calls before its fsync, on the one thread
 * that commits: 5.5 per update, 8% of lossd's CPU with the page copies.
 * Gathered, they are one write per GATHER_MAX bytes (two for that group).
 * Nothing is lost by holding the bytes until the sync: SQLite relies on a
 * frame only once the WAL is synced, and a reader learns of frames from
 * the WAL index, which the writer updates after that sync. That holds
 * with synchronous=FULL only (the writer's: the WAL synced at every
 * commit); at NORMAL a commit reaches the WAL index unsynced, and readers
 * would look for frames still gathered here. Whatever could see the file flushes first: a read that
 * overlaps the gathered bytes (a page the writer spilled and reads back),
 * xFileSize, xTruncate, xClose; so does a write that does not continue
 * them (the WAL's header when it starts over). A failed flush fails the
 * call that flushed (the sync: the commit fails and rolls back, store.c
 * breaks the store) and drops the gathered bytes, which SQLite writes
 * again with the frames it retries.
 *
 * Locks: maps_mu guards the table of mappings only; it is taken with no
 * other lock held, and nothing under it calls into SQLite. A gathering
 * file is used by its connection's thread only, as SQLite's own files are.
 *
 * Not here: what is read or written (store.c), damage checks (quick_check,
 * streams.c).
 */
#include "store.h"
#include "thread.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAP_VFS "lossd-map"
#define WAL_VFS "lossd-wal"
/* Bytes gathered before a write: the default VFS writes at most 128 KiB
 * less one byte in a call (os_unix.c's seekAndWriteFd masks the length
 * with 0x1ffff; more is a short write, SQLITE_FULL). */
#define GATHER_MAX ((size_t)124 << 10)

/* Our file: the mapping or the gathered bytes, then the default VFS's own
 * file right after. */
typedef struct shim_file {
	sqlite3_file base;  /* pMethods = &methods */
	const uint8_t *map; /* lossd-map: the main database file, read-only; NULL: none */
	size_t len;
	bool gather;      /* lossd-wal's WAL file: writes are gathered */
	uint8_t *buf;     /* the gathered bytes (GATHER_MAX, made at the first write) */
	size_t nbuf;      /* how many */
	sqlite3_int64 at; /* the file offset of buf[0] */
	sqlite3_file *real;
} shim_file;

/* where the default VFS's file starts inside ours */
#define HEAD ((sizeof(shim_file) + 15) / 16 * 16)

static sqlite3_vfs map_vfs, wal_vfs;
static sqlite3_io_methods methods;
static bool map_registered, wal_registered;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static atomic_uint_fast64_t gathered_writes, flushes; /* srv__store_vfs_stats */

/*
 * One mapping per file, shared by every connection on it (the check and
 * the loaders run at once): the pages one of them faulted in are mapped
 * for the others, and the map is torn down once, when the last closes.
 */
typedef struct shared_map {
	dev_t dev;
	ino_t ino;
	const uint8_t *map;
	size_t len;
	int refs;
} shared_map;

#define MAX_MAPS 8
static shared_map maps[MAX_MAPS];
static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;

/* Maps path read-only into mf, sharing a mapping of the same file and
 * size (nothing when it cannot: then every read goes to the default VFS,
 * as without this shim). */
static void map_whole(shim_file *mf, const char *path)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || (uint64_t)sb.st_size > SIZE_MAX)
		goto out;
	pthread_mutex_lock(&maps_mu);
	shared_map *m = NULL, *free_slot = NULL;
	for (int i = 0; i < MAX_MAPS; i++) {
		if (maps[i].refs == 0 && !free_slot)
			free_slot = &maps[i];
		if (maps[i].refs > 0 && maps[i].dev == sb.st_dev && maps[i].ino == sb.st_ino &&
		    maps[i].len == (size_t)sb.st_size)
			m = &maps[i];
	}
	if (!m && free_slot) {
		void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			m = free_slot;
			*m = (shared_map){sb.st_dev, sb.st_ino, p, (size_t)sb.st_size, 0};
		}
	}
	if (m) {
		m->refs++;
		mf->map = m->map;
		mf->len = m->len;
	}
	pthread_mutex_unlock(&maps_mu);
out:
	close(fd);
}

typedef struct unmapping {
	void *p;
	size_t len;
} unmapping;

static void *unmap_main(void *arg)
{
	unmapping *u = arg;
	srv__thread_name("lossd-unmap");
	munmap(u->p, u->len);
	free(u);
	return NULL;
}

/* Unmaps [p, p + len) on a detached thread of its own: tearing down the
 * page table of a file of gigabytes takes ~0.1 s that need not delay the
 * start (nothing uses the range any more). Inline when no thread starts. */
static void unmap_later(void *p, size_t len)
{
	pthread_attr_t a;
	pthread_t t;
	unmapping *u = malloc(sizeof(*u));
	if (u && pthread_attr_init(&a) == 0) {
		*u = (unmapping){p, len};
		pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
		int rc = pthread_create(&t, &a, unmap_main, u);
		pthread_attr_destroy(&a);
		if (rc == 0)
			return;
	}
	free(u);
	munmap(p, len);
}

/* Drops mf's reference to its mapping; the last one unmaps it. */
static void unmap_whole(shim_file *mf)
{
	if (!mf->map)
		return;
	pthread_mutex_lock(&maps_mu);
	for (int i = 0; i < MAX_MAPS; i++)
		if (maps[i].refs > 0 && maps[i].map == mf->map && --maps[i].refs == 0) {
			unmap_later((void *)maps[i].map, maps[i].len);
			maps[i].map = NULL;
		}
	pthread_mutex_unlock(&maps_mu);
	mf->map = NULL;
}

static sqlite3_file *real_of(sqlite3_file *f)
{
	return ((shim_file *)f)->real;
}

/* Hands the gathered bytes to the default VFS; they are dropped either
 * way (a failed write's frames are written again when SQLite retries). */
static int flush(shim_file *mf)
{
	if (!mf->nbuf)
		return SQLITE_OK;
	int rc = mf->real->pMethods->xWrite(mf->real, mf->buf, (int)mf->nbuf, mf->at);
	mf->nbuf = 0;
	atomic_fetch_add_explicit(&flushes, 1, memory_order_relaxed);
	return rc;
}

/* True when [off, off + amt) overlaps the gathered bytes. */
static bool in_gathered(const shim_file *mf, sqlite3_int64 off, int amt)
{
	return mf->nbuf && off < mf->at + (sqlite3_int64)mf->nbuf && off + amt > mf->at;
}

static int m_close(sqlite3_file *f)
{
	shim_file *mf = (shim_file *)f;
	int rc = flush(mf);
	free(mf->buf);
	mf->buf = NULL;
	unmap_whole(mf);
	int crc = mf->real->pMethods ? mf->real->pMethods->xClose(mf->real) : SQLITE_OK;
	return rc ? rc : crc;
}

static bool in_map(const shim_file *mf, sqlite3_int64 off, int amt)
{
	return mf->map && off >= 0 && amt >= 0 && (uint64_t)off <= mf->len &&
	       (uint64_t)amt <= mf->len - (uint64_t)off;
}

static int m_read(sqlite3_file *f, void *buf, int amt, sqlite3_int64 off)
{
	shim_file *mf = (shim_file *)f;
	if (in_map(mf, off, amt)) {
		memcpy(buf, mf->map + off, (size_t)amt);
		return SQLITE_OK;
	}
	int rc = in_gathered(mf, off, amt) ? flush(mf) : SQLITE_OK;
	return rc ? rc : mf->real->pMethods->xRead(mf->real, buf, amt, off);
}

/* Writes what is gathered, then buf, through the default VFS. */
static int write_through(shim_file *mf, const void *buf, int amt, sqlite3_int64 off)
{
	int rc = flush(mf);
	return rc ? rc : mf->real->pMethods->xWrite(mf->real, buf, amt, off);
}

/* A gathering file's write continues the gathered bytes while they fit;
 * any other write, or one that does not fit, flushes them first. */
static int m_write(sqlite3_file *f, const void *buf, int amt, sqlite3_int64 off)
{
	shim_file *mf = (shim_file *)f;
	if (!mf->gather || amt < 0 || (size_t)amt > GATHER_MAX)
		return write_through(mf, buf, amt, off);
	if (mf->nbuf &&
	    (off != mf->at + (sqlite3_int64)mf->nbuf || mf->nbuf + (size_t)amt > GATHER_MAX)) {
		int rc = flush(mf);
		if (rc)
			return rc;
	}
	if (!mf->buf && !(mf->buf = malloc(GATHER_MAX)))
		return write_through(mf, buf, amt, off);
	if (!mf->nbuf)
		mf->at = off;
	memcpy(mf->buf + mf->nbuf, buf, (size_t)amt);
	mf->nbuf += (size_t)amt;
	atomic_fetch_add_explicit(&gathered_writes, 1, memory_order_relaxed);
	return SQLITE_OK;
}

static int m_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	int rc = flush((shim_file *)f);
	return rc ? rc : real_of(f)->pMethods->xTruncate(real_of(f), size);
}

static int m_sync(sqlite3_file *f, int flags)
{
	int rc = flush((shim_file *)f);
	return rc ? rc : real_of(f)->pMethods->xSync(real_of(f), flags);
}

static int m_size(sqlite3_file *f, sqlite3_int64 *size)
{
	int rc = flush((shim_file *)f);
	return rc ? rc : real_of(f)->pMethods->xFileSize(real_of(f), size);
}

static int m_lock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xLock(real_of(f), level);
}

static int m_unlock(sqlite3_file *f, int level)
{
	return real_of(f)->pMethods->xUnlock(real_of(f), level);
}

static int m_check_lock(sqlite3_file *f, int *out)
{
	return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}

static int m_fcntl(sqlite3_file *f, int op, void *arg)
{
	return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}

static int m_sector(sqlite3_file *f)
{
	return real_of(f)->pMethods->xSectorSize(real_of(f));
}

static int m_devchar(sqlite3_file *f)
{
	return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int m_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
	return real_of(f)->pMethods->xShmMap(real_of(f), pg, pgsz, extend, pp);
}

static int m_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
	return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}

static void m_shm_barrier(sqlite3_file *f)
{
	real_of(f)->pMethods->xShmBarrier(real_of(f));
}

static int m_shm_unmap(sqlite3_file *f, int del)
{
	return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

/* A page the pager asks for in place: ours when it lies in the mapping. */
static int m_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **pp)
{
	shim_file *mf = (shim_file *)f;
	if (in_map(mf, off, amt)) {
		*pp = (void *)(mf->map + off);
		return SQLITE_OK;
	}
	return mf->real->pMethods->xFetch(mf->real, off, amt, pp);
}

static int m_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	shim_file *mf = (shim_file *)f;
	if (p && (const uint8_t *)p >= mf->map && (const uint8_t *)p < mf->map + mf->len)
		return SQLITE_OK; /* ours: nothing to release until close */
	return mf->real->pMethods->xUnfetch(mf->real, off, p);
}

/* Both VFSes' xOpen: lossd-map maps a main database, lossd-wal gathers
 * the writes to a WAL. */
static int m_open(sqlite3_vfs *v, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	sqlite3_vfs *real = v->pAppData;
	bool map = v == &map_vfs;
	shim_file *mf = (shim_file *)f;
	memset(mf, 0, sizeof(*mf));
	mf->real = (sqlite3_file *)((char *)f + HEAD);
	int rc = real->xOpen(real, name, mf->real, flags, out_flags);
	if (!mf->real->pMethods)
		return rc; /* base.pMethods stays NULL: SQLite calls no xClose */
	if (mf->real->pMethods->iVersion < 3) {
		/* no shared memory or fetch to pass on: refuse the file whole */
		mf->real->pMethods->xClose(mf->real);
		return SQLITE_CANTOPEN;
	}
	mf->base.pMethods = &methods;
	if (rc == SQLITE_OK && map && (flags & SQLITE_OPEN_MAIN_DB) && name)
		map_whole(mf, name);
	mf->gather = rc == SQLITE_OK && !map && (flags & SQLITE_OPEN_WAL);
	return rc;
}

/* The rest of the VFS: the default one's, called with its own handle. */
static sqlite3_vfs *real_vfs(sqlite3_vfs *v)
{
	return v->pAppData;
}

static int v_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
	return real_vfs(v)->xDelete(real_vfs(v), name, sync_dir);
}

static int v_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
	return real_vfs(v)->xAccess(real_vfs(v), name, flags, out);
}

static int v_full(sqlite3_vfs *v, const char *name, int n, char *out)
{
	return real_vfs(v)->xFullPathname(real_vfs(v), name, n, out);
}

static void *v_dlopen(sqlite3_vfs *v, const char *name)
{
	return real_vfs(v)->xDlOpen(real_vfs(v), name);
}

static void v_dlerror(sqlite3_vfs *v, int n, char *msg)
{
	real_vfs(v)->xDlError(real_vfs(v), n, msg);
}

static void (*v_dlsym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
	return real_vfs(v)->xDlSym(real_vfs(v), h, sym);
}

static void v_dlclose(sqlite3_vfs *v, void *h)
{
	real_vfs(v)->xDlClose(real_vfs(v), h);
}

static int v_random(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xRandomness(real_vfs(v), n, out);
}

static int v_sleep(sqlite3_vfs *v, int us)
{
	return real_vfs(v)->xSleep(real_vfs(v), us);
}

static int v_time(sqlite3_vfs *v, double *out)
{
	return real_vfs(v)->xCurrentTime(real_vfs(v), out);
}

static int v_last_error(sqlite3_vfs *v, int n, char *out)
{
	return real_vfs(v)->xGetLastError(real_vfs(v), n, out);
}

static int v_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
	return real_vfs(v)->xCurrentTimeInt64(real_vfs(v), out);
}

static void register_once(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	if (!real || real->iVersion < 2 || sqlite3_vfs_find(MAP_VFS) || sqlite3_vfs_find(WAL_VFS))
		return;
	methods = (sqlite3_io_methods){
	        .iVersion = 3,
	        .xClose = m_close,
	        .xRead = m_read,
	        .xWrite = m_write,
	        .xTruncate = m_truncate,
	        .xSync = m_sync,
	        .xFileSize = m_size,
	        .xLock = m_lock,
	        .xUnlock = m_unlock,
	        .xCheckReservedLock = m_check_lock,
	        .xFileControl = m_fcntl,
	        .xSectorSize = m_sector,
	        .xDeviceCharacteristics = m_devchar,
	        .xShmMap = m_shm_map,
	        .xShmLock = m_shm_lock,
	        .xShmBarrier = m_shm_barrier,
	        .xShmUnmap = m_shm_unmap,
	        .xFetch = m_fetch,
	        .xUnfetch = m_unfetch,
	};
	map_vfs = (sqlite3_vfs){
	        .iVersion = 2,
	        .szOsFile = (int)HEAD + real->szOsFile,
	        .mxPathname = real->mxPathname,
	        .zName = MAP_VFS,
	        .pAppData = real,
	        .xOpen = m_open,
	        .xDelete = v_delete,
	        .xAccess = v_access,
	        .xFullPathname = v_full,
	        .xDlOpen = v_dlopen,
	        .xDlError = v_dlerror,
	        .xDlSym = v_dlsym,
	        .xDlClose = v_dlclose,
	        .xRandomness = v_random,
	        .xSleep = v_sleep,
	        .xCurrentTime = v_time,
	        .xGetLastError = v_last_error,
	        .xCurrentTimeInt64 = v_time64,
	};
	wal_vfs = map_vfs;
	wal_vfs.zName = WAL_VFS;
	map_registered = sqlite3_vfs_register(&map_vfs, 0) == SQLITE_OK;
	wal_registered = sqlite3_vfs_register(&wal_vfs, 0) == SQLITE_OK;
}

const char *srv__store_map_vfs(void)
{
	pthread_once(&once, register_once);
	return map_registered ? MAP_VFS : NULL;
}

const char *srv__store_wal_vfs(void)
{
	pthread_once(&once, register_once);
	return wal_registered ? WAL_VFS : NULL;
}

void srv__store_vfs_stats(uint64_t *gathered, uint64_t *written)
{
	*gathered = atomic_load_explicit(&gathered_writes, memory_order_relaxed);
	*written = atomic_load_explicit(&flushes, memory_order_relaxed);
}
