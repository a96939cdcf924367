/*
 * streams.h - the stream handlers (docs/API.md section 4), called by the HTTP
 * layer's dispatcher on a libuv worker thread. Each fills *out (a JSON or
 * problem+json reply; out is zeroed by the caller) from *req (borrowed,
 * see request.h). The router has already checked the method, the route
 * and the {id} syntax ([A-Za-z0-9_-]{1,128}, on the raw path).
 */
#ifndef LOSSD_SERVER_STREAMS_H
#define LOSSD_SERVER_STREAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "request.h"
#include "store.h"
#include "lossd/stream.h"

/* The stream table: every stream in memory, the store behind them, the
 * healer and expiry threads. The server makes one at startup and hands it
 * to the handlers in each srv_request (req->streams). */
typedef struct srv__streams srv__streams;

/* Limits of the stream store (docs/API.md section 5). */
typedef struct srv__streams_limits {
	int max_streams;            /* streams per principal: 507 too_many_streams past it */
	size_t max_bytes;           /* memory per stream: 507 stream_memory_exceeded past it */
	size_t sketch_bytes;        /* default sketch size of a stream (all columns) */
	size_t history_points;      /* step points per stream (docs/API.md section 7) */
	size_t history_checkpoints; /* checkpoint records per stream */
	int stall_s; /* a disk operation running longer is a stalled store (--store-stall-s) */
	/* per-stream gauges in /metrics (docs/API.md section 6), off by default */
	bool metrics_streams;
	const char *metrics_tags;   /* KEY:VALUE lines (borrowed, lives with the config) */
	const char *metrics_labels; /* tag keys, one per line (borrowed) */
	size_t metrics_max;
	int commit_delay_us; /* SQLite: a leader's longest wait for a fuller group */
} srv__streams_limits;

#define SRV__STREAMS_DEFAULT_MAX_STREAMS 1000
#define SRV__STREAMS_LIMITS_INIT                                                                   \
	{                                                                                          \
		SRV__STREAMS_DEFAULT_MAX_STREAMS, ENG_STREAM_DEFAULT_MAX_BYTES,                    \
		        ENG_STREAM_DEFAULT_SKETCH_BYTES, 10000, 1000, 10, false, NULL, NULL, 1000, \
		        SRV__STORE_COMMIT_DELAY_US                                                 \
	}

/* A table with SRV__STREAMS_LIMITS_INIT and the SQLite store, not open
 * yet: new (srv__streams_free), NULL when out of memory. Main thread. */
srv__streams *srv__streams_new(void);

/* Closes (srv__streams_close) and frees ss; accepts NULL. Main thread,
 * after every handler has returned. */
void srv__streams_free(srv__streams *ss);

/* Sets the limits; call before srv__streams_open (main thread). Without a
 * call, SRV__STREAMS_LIMITS_INIT applies. */
void srv__streams_set_limits(srv__streams *ss, const srv__streams_limits *lim);

/* Figures for /metrics. */
typedef struct srv__streams_stats {
	uint64_t streams;           /* streams loaded (all principals) */
	uint64_t damaged;           /* of them quarantined: stored state unreadable */
	uint64_t expired;           /* deleted by ttl_s since open (docs/API.md section 8) */
	uint64_t commit_groups;     /* transactions committed since open */
	uint64_t commit_ops;        /* ops (updates, merges, resets, ...) in them */
	uint64_t updates_committed; /* updates and merges applied and committed */
	bool store_broken;          /* a commit failed: writes refused until a probe commits */
	bool store_stalled;         /* a commit has run longer than stall_s */
	uint64_t store_failures;    /* failed transactions */
	uint64_t store_recoveries;  /* broken -> writable again */
	uint64_t resyncing;         /* streams waiting to be reloaded after a failed op */
	double commit_running_s;    /* age of the store operation in progress, 0 if none */
	uint64_t commit_lat[SRV__STORE_LAT_BUCKETS + 1]; /* commits per duration bucket */
	double commit_lat_sum;                           /* seconds, all commits */
	uint64_t commit_delays;    /* groups whose leader waited for a fuller group */
	double commit_delay_sum;   /* ... seconds waited */
	uint64_t wal_ckpts;        /* WAL checkpoints by the checkpointer thread */
	uint64_t wal_ckpts_inline; /* ... by a committing thread (WAL past its bound) */
	uint64_t wal_ckpt_failures;
	double wal_ckpt_sum; /* seconds, all checkpoints */
	int64_t wal_pages;   /* WAL frames after the last commit */
} srv__streams_stats;

/* Any thread; all zero before srv__streams_open (or for a NULL ss). */
void srv__streams_get_stats(srv__streams_stats *out, srv__streams *ss);

/* Which store srv__streams_open opens (docs/API.md section 10): url is "sqlite"
 * (data_dir), "sqlite:DIR" or "postgresql://..."; connections, the password
 * file (or NULL) and the statement timeout apply to PostgreSQL. Strings are
 * copied. Call before srv__streams_open (main thread); without a call the
 * SQLite store under data_dir is used. */
void srv__streams_set_store(srv__streams *ss, const char *url, int connections,
                            const char *password_file, int timeout_ms);

/* True when the store commits; otherwise fills *out (zeroed) with a 503
 * store_unavailable problem and Retry-After, for /readyz: the store is
 * broken (a transaction failed and no retry has committed since) or a
 * commit has run longer than stall_s. Any thread; never blocks on I/O. */
bool srv__streams_ready(api_reply *out, srv__streams *ss);

/* True when a write may be tried: the store is neither broken nor
 * stalled. Any thread; never blocks on I/O. */
bool srv__streams_writable(srv__streams *ss);

/* True while a store disk operation has run longer than stall_s. Any
 * thread; never blocks on I/O. */
bool srv__streams_stalled(srv__streams *ss);

/* True when an update's handler returns before its commit (request.h's
 * `deferred`): the store is SQLite, its committer finishes the update.
 * Any thread, once the table is open. */
bool srv__streams_updates_defer(srv__streams *ss);

/* Test hook: the next n store transactions fail (n < 0: all, 0: none). */
void srv__streams_test_store_fail(srv__streams *ss, int n);

/* Test hook: while on, the store's next commit waits before it writes
 * (its ops stay in flight); off lets it go on. SQLite only. */
void srv__streams_test_store_hold(srv__streams *ss, bool on);

/* Opens (creating if missing) the stream store under data_dir. Called once
 * at startup, before any handler, from the main thread. Returns 0 or a
 * negative code (the daemon then exits 1). */
int srv__streams_open(srv__streams *ss, const char *data_dir);

/* Flushes and closes the store. Called once at shutdown, after every
 * handler has returned, from the main thread. */
void srv__streams_close(srv__streams *ss);

/* The handlers: each works on req->streams (open). */
/* Worker thread. POST /v1/streams */
void srv__streams_create(api_reply *out, const srv_request *req);
/* Worker thread. GET /v1/streams */
void srv__streams_list(api_reply *out, const srv_request *req);
/* Worker thread. GET /v1/streams/{id} */
void srv__streams_get(api_reply *out, const srv_request *req);
/* Worker thread. DELETE /v1/streams/{id} */
void srv__streams_delete(api_reply *out, const srv_request *req);
/* Worker thread. POST /v1/streams/{id}/update */
void srv__streams_update(api_reply *out, const srv_request *req);
/* Worker thread. POST /v1/streams/{id}/reset */
void srv__streams_reset(api_reply *out, const srv_request *req);
/* Worker thread. GET /v1/streams/{id}/state */
void srv__streams_state(api_reply *out, const srv_request *req);
/* Worker thread. POST /v1/streams/{id}/merge */
void srv__streams_merge(api_reply *out, const srv_request *req);
/* Worker thread. POST /v1/streams/{id}/checkpoint (docs/API.md section 7) */
void srv__streams_checkpoint(api_reply *out, const srv_request *req);
/* Worker thread. GET /v1/streams/{id}/history */
void srv__streams_history(api_reply *out, const srv_request *req);
/* The per-stream gauges (lossd_stream_auc, _loss, _count) as Prometheus
 * text: new (free()), NULL when off or out of memory. Any thread. */
char *srv__streams_gauges(srv__streams *ss);

/* Worker thread. PATCH /v1/streams/{id} (docs/API.md section 8) */
void srv__streams_patch(api_reply *out, const srv_request *req);

/* Deletes every stream whose ttl_s has passed since its last update or
 * checkpoint at now_ms; returns how many. The expiry thread srv__streams_open
 * starts calls it every second (tests may too). Any thread, no lock held. */
size_t srv__streams_expire(srv__streams *ss, int64_t now_ms);

#endif
