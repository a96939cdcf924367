/*
 * server.h - the daemon's shared state and the pieces srv_main wires up.
 */
#ifndef LOSSD_SERVER_SERVER_H
#define LOSSD_SERVER_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "lossd/api.h"
#include "par.h"
#include "request.h"
#include "router.h"

/* s->inflight after srv_main closed admission (see http.c). */
#define SRV_INFLIGHT_CLOSED (-(1 << 30))

typedef struct srv__server {
	srv__config cfg; /* read-only after startup */
	api_ctx api;     /* limits + parallel hook; read-only */
	srv__par *par;
	struct srv__auth *auth;           /* NULL: no tokens configured */
	struct srv__conns *conns;         /* open connections, request-timeout sweeper */
	struct srv__streams *streams;     /* the stream table (streams.c), made at startup */
	char *tls_cert_pem, *tls_key_pem; /* NULL: plain HTTP */
	srv__loop *loop;
	struct MHD_Daemon *mhd;
	int listen_fd;                /* after quiesce: ours to close, else -1 */
	int port;                     /* the bound port */
	atomic_int draining;          /* 1 after SIGTERM/SIGINT */
	atomic_int active;            /* requests between request line and completion */
	atomic_int store_inflight;    /* of inflight, stream writes (SRV_STORE routes):
					  at most half of --max-inflight, so writes
					  waiting on a stalled disk leave room for the
					  compute routes */
	atomic_int early_running;     /* early.c's helpers (http.c's requests) */
	atomic_int inflight;          /* admitted to the workers, not yet resumed;
					  SRV_INFLIGHT_CLOSED once stopping */
	atomic_uint_fast64_t next_id; /* request id counter */
	struct srv__budget *budget;   /* request-body memory (budget.c), made by http.c */
	struct srv__bodymem
	        *bodymem; /* arenas of bodies read as they arrive (bodymem.c), http.c's */
	uint64_t id_seed; /* random, per process */
} srv__server;

/* ---- http.c ---------------------------------------------------------------- */
/* Starts libmicrohttpd on cfg.bind:cfg.port; sets s->mhd and s->port.
 * Returns 0 or -1 (logged). Main thread. */
int srv__http_start(srv__server *s);
/* Stops accepting connections (open ones keep being served). Main thread. */
void srv__http_quiesce(srv__server *s);
/* Stops the daemon; every suspended connection must have been resumed
 * (inflight == 0). Main thread. */
void srv__http_stop(srv__server *s);

/* ---- handlers.c ------------------------------------------------------------ */
/* Runs the handler of a worker route into *out. Worker thread. */
void srv__dispatch(api_reply *out, enum srv__route route, const srv_request *req);

/* ---- ops.c ----------------------------------------------------------------- */
/* Answers a direct route (health, metrics, version, openapi) into *out.
 * Cheap, no compute. MHD thread. */
void srv__ops(api_reply *out, const srv__server *s, enum srv__route route);

/* ---- check.c --------------------------------------------------------------- */
/* GET url (http://host[:port]/path) with a timeout of timeout_s; returns 0
 * for a 2xx reply, 1 otherwise (with a message on stderr). Main thread. */
int srv__check(const char *url, int timeout_s);

/* glibc's malloc thresholds raised and its allocator set up (server.c).
 * Main thread, before any other starts. */
void srv__malloc_setup(void);

/* lossd --copy-store FROM TO (copy.c): copies every stream of store URL
 * from into store URL to and verifies the counts. Returns the exit status
 * (0 done, 1 failed, 2 usage). Main thread, no server running. */
int srv__copy_store(const char *from, const char *to, const srv__config *cfg);

#endif
