/*
 * http.c - libmicrohttpd's side of lossd: read, route, bound, hand off,
 * answer.
 *
 * libmicrohttpd runs its own thread pool with poll() (srv__http_start says
 * why not epoll). Those threads only parse, route, enforce limits and
 * answer the direct routes (health,
 * metrics, version, openapi), so /healthz answers while every worker is
 * busy. A small /v1/loss (a body of at most INLINE_MAX_BODY bytes: its
 * work is linear in the numbers it carries, microseconds, nothing that
 * blocks) is answered on the HTTP thread too, counted in --max-inflight
 * like the rest: the hand-off below costs two thread switches, more than
 * the work. (/v1/auc is not: 2^20 thresholds or a curve cost as much from
 * a small body as from a large one.)
 * A worker route's body is gathered into one buffer; then the
 * connection is suspended and the request handed to the libuv loop
 * (loop.c), which runs the handler on a worker thread and, on the loop
 * thread, resumes the connection (a stream write: on the store thread
 * that ran it, or, for an update, on the thread that committed its group:
 * request.h's `deferred`). libmicrohttpd then calls the
 * access handler again on the connection's own thread, which queues the
 * reply.
 *
 * One request is one `struct req`, created by the URI-log callback (the
 * only place libmicrohttpd 0.9.75 shows the raw request target, query
 * included, before unescaping) and freed by the completion callback, which
 * also writes the log line and the metrics. Stages:
 *   NEW    headers just arrived: deadline, framing, route, bearer token
 *          (--tokens-file: /v1 needs one, writes a read-write one),
 *          Content-Type, size, body budget, admission; direct routes
 *          answered here (or at the end of the empty body, so keep-alive
 *          connections survive)
 *   BODY   body chunks appended (bounded by --max-body, also for chunked:
 *          0.9.75 cannot queue a reply mid-body, so an oversize chunked
 *          body is dropped as it arrives and answered 413 at its end, or
 *          the connection is closed once it exceeds twice the limit)
 *   PARKED admitted; suspended and handed off on libmicrohttpd's next
 *          call (park_and_submit says why not at once)
 *   QUEUED suspended, owned by the loop/worker until done() resumes it
 *   SENT   a reply was queued
 *
 * libmicrohttpd 0.9.75 pitfalls handled here: its default connection
 * timeout is "never" (we set one); its URL unescaping turns %2F into '/'
 * and %00 into an early end (we install an identity unescaper and route
 * the raw bytes); it accepts two different Content-Length headers (it
 * reads the first), Content-Length together with chunked, and unknown
 * Transfer-Encodings (as "read until close"): all three are refused on the
 * first call, before any body byte is read. Its timeout counts idle time
 * only, so a client trickling a byte a second is never idle: conns.c
 * gives each request --request-timeout from its first byte (headers
 * included), holds bodies to --min-body-rate, and shuts down the sockets
 * of those that fail. Its connection limit refuses new clients while idle
 * ones hold every slot: conns.c closes the longest-idle connection past
 * --max-connections, and libmicrohttpd's limit is set a little above it.
 * It keeps whitespace before a header's colon in the name and appends an
 * obs-folded line to the name, so neither framing header is seen:
 * headers.c refuses both (400 malformed_header, connection closed). It
 * closes a connection resumed after the client's FIN before the reply
 * (see park_and_submit). It does not require Host in HTTP/1.1 (we do),
 * and GnuTLS' default priorities still offer TLS 1.0 (we ask for 1.2+).
 *
 * Body memory: a body is gathered into one buffer that doubles as bytes
 * arrive (up to its Content-Length), and each growth is taken from the
 * budget (budget.c: --max-buffered, with tokens a principal's share and
 * the read-only tokens' half) when it happens, never for a declared
 * length up front; only the first 64 KiB are taken with the headers, so a
 * full budget is answered before the body is sent. A /v1/loss or /v1/auc
 * body declared over STREAM_MIN_BODY is instead read as it arrives
 * (api_body_feed, on this thread): its base64 decoded into an arena from
 * bodymem.c (reused across requests, so no fresh pages to clear), the rest
 * kept as text; the budget is taken as that text and the arena grow, and
 * the handler answers from them (api_loss_sent) as from the whole body.
 * For /v1/loss, early.c's helper may meanwhile run the loss on the rows
 * decoded (srv__early_feed after each chunk); it is stopped and joined
 * before the handler runs and before the arena is given back (drop_body).
 *
 * Lock order: no lock is held here; the hand-off lock lives in loop.c,
 * the log lock in log.c, the budget's in budget.c and the connection
 * table's in conns.c (which may take the log's), all leaves otherwise.
 * Invariants: a connection is suspended only while its request is admitted
 * (counted in s->inflight); done() resumes it, so inflight == 0 means no
 * connection is suspended. To stop, srv_main swaps inflight from 0 to
 * SRV_INFLIGHT_CLOSED (negative) in one compare-and-swap; admission sees a
 * negative count and answers 503, so nothing can be suspended after the
 * swap and MHD_stop_daemon is safe. A reply queued before the body was
 * read carries "Connection: close". Every request holds at most
 * --max-body bytes, and all of them together at most --max-buffered
 * (one principal at most --max-buffered-per-principal).
 * TLS, when configured, is libmicrohttpd's (GnuTLS); nothing here sees it.
 */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "bodymem.h"
#include "budget.h"
#include "conns.h"
#include "early.h"
#include "headers.h"
#include "log.h"
#include "lossd/api_stream.h"
#include "metrics.h"
#include "streams.h"
#include "ui.h"

enum stage { ST_NEW, ST_BODY, ST_PARKED, ST_QUEUED, ST_SENT };

/* Bodies up to this size of /v1/loss run on the HTTP thread
 * (a 32x10 logits request is 3.3 KB; 64 KB is a few thousand numbers). */
#define INLINE_MAX_BODY ((size_t)64 * 1024)

/* The body buffer taken with the headers (the rest grows, doubling, as
 * bytes arrive). */
#define FIRST_PIECE ((size_t)64 * 1024)

/* /v1/loss and /v1/auc bodies declared larger than this are read as they
 * arrive (api_body_feed): their base64 decoded chunk by chunk into an
 * arena from s->bodymem, the rest kept as text. */
#define STREAM_MIN_BODY ((size_t)1 << 20)

struct req {
	srv__job job; /* first: the loop's view */
	srv__server *srv;
	struct MHD_Connection *conn;
	enum stage stage;
	char *target;      /* new: raw request target, split at '?' */
	const char *query; /* into target, or NULL */
	char method[16];
	srv__match match;
	enum srv__route route; /* SRV_ROUTE_NONE until matched */
	char request_id[132];
	char idem_key[API_IDEMPOTENCY_KEY_MAX + 1];
	bool has_idem;
	bool body_expected; /* Content-Length > 0 or chunked */
	bool keep_body;     /* the route takes a body */
	bool too_large;
	bool over_budget;            /* --max-buffered reached while reading */
	size_t reserved;             /* bytes of the body budget (budget.c) this request holds */
	unsigned long long declared; /* Content-Length, or 0 (chunked or none) */
	const char *www_auth;        /* WWW-Authenticate of a 401, static, or NULL */
	bool admitted;
	bool store_slot;   /* holds one of s->store_inflight */
	bool pending;      /* reply decided on the headers, sent at body end */
	const char *allow; /* Allow header of a pending 405, static or in match */
	char *body;        /* new; NUL-terminated */
	size_t len, cap;
	api_body *sent; /* new: the body read as it arrives, or NULL (then body) */
	void *arena;    /* sent's arena, from s->bodymem */
	size_t arena_cap;
	srv__early *early;              /* new: a loss started on sent's rows (early.c), or NULL */
	srv__early_budget early_budget; /* where its partial tables count */
	int early_tries;
	uint64_t bytes_in;
	api_reply reply; /* filled by the worker */
	int status;
	uint64_t bytes_out;
	const char *error; /* problem code for the log, or NULL */
	struct timespec t0;
	char client[64];
	srv__conn *timer; /* the connection's request clock (conns.c), or NULL */

	/* who is calling (auth.c copies it: a reload cannot free it under us) */
	char principal[SRV_PRINCIPAL_MAX + 1]; /* "" without auth */
	srv__role role;
	/* CORS: the request's Origin when --cors-origin lists it (borrowed
	 * from the connection's headers), and whether this is a preflight */
	const char *cors_origin;
	bool preflight;
};

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* ---- request ids -------------------------------------------------------------- */

/* splitmix64: ids are unique per process (a counter) and unpredictable
 * across processes (a random seed); they are not secrets. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void new_request_id(srv__server *s, char *out, size_t cap)
{
	uint64_t n = atomic_fetch_add(&s->next_id, 1);
	snprintf(out, cap, "%016llx%016llx", (unsigned long long)mix(s->id_seed ^ n),
	         (unsigned long long)mix(n + (s->id_seed << 1)));
}

/* ---- replies ---------------------------------------------------------------------- */

/*
 * CORS (--cors-origin). A request whose Origin is one of the listed exact
 * origins gets that origin back in Access-Control-Allow-Origin (never "*",
 * and no Access-Control-Allow-Credentials: bearer tokens travel in a
 * header the page sets, not as browser credentials); an unlisted origin
 * gets no CORS header, so the browser withholds the reply from the page.
 * A preflight (OPTIONS on a known path) is answered 204 before any token
 * check, with the path's methods and the request headers lossd reads.
 * With any origin configured every reply says Vary: Origin, so a cache
 * between never hands one origin's reply to another.
 */
static void cors_headers(const struct req *r, struct MHD_Response *resp, const char *allow)
{
	if (!r->srv->cfg.cors_origins[0])
		return;
	MHD_add_response_header(resp, "Vary", "Origin");
	if (!r->cors_origin)
		return;
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors_origin);
	if (r->preflight) {
		MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow ? allow : "");
		MHD_add_response_header(
		        resp, "Access-Control-Allow-Headers",
		        "Authorization, Content-Type, Idempotency-Key, X-Request-Id");
		MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	} else {
		MHD_add_response_header(
		        resp, "Access-Control-Expose-Headers",
		        "Retry-After, X-Request-Id, Link, Location, WWW-Authenticate");
	}
}

/* Queues r->reply's status/body (stolen) plus our headers. */
static enum MHD_Result send_reply(struct req *r, api_reply *rep, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	bool close = false;
	char ra[16];

	if (rep->body) {
		resp = MHD_create_response_from_buffer(rep->len, rep->body, MHD_RESPMEM_MUST_FREE);
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		rep->len = 0;
	}
	if (!resp) {
		api_reply_free(rep);
		return MHD_NO;
	}
	rep->body = NULL;                            /* now owned by resp */
	if (rep->content_type && rep->status != 204) /* 204 has no content to type */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
	cors_headers(r, resp, allow);
	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	srv__ui_headers(resp, r->route); /* Cache-Control; CSP for the dashboard */
	if (rep->retry_after > 0) {
		snprintf(ra, sizeof(ra), "%d", rep->retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	if (rep->link) {
		MHD_add_response_header(resp, "Link", rep->link);
		free(rep->link);
		rep->link = NULL;
	}
	if (r->www_auth)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_auth);
	/* The unread body is still on the socket: this connection cannot be
	 * reused. During a drain, move clients to another replica. */
	if ((r->stage == ST_NEW && r->body_expected) || atomic_load(&r->srv->draining))
		close = true;
	if (close)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	r->status = rep->status;
	r->bytes_out = rep->len;
	r->stage = ST_SENT;
	ret = MHD_queue_response(r->conn, (unsigned int)rep->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/*
 * A reply decided before the body was read. With a body on its way it goes
 * out now (413 before the body is read) and the connection closes; without
 * one it waits for libmicrohttpd's end-of-request call, because a reply
 * queued on the headers call makes 0.9.75 close the connection, and health
 * checks and errors should keep a keep-alive connection usable. Steals
 * rep's body.
 */
static enum MHD_Result early_reply(struct req *r, api_reply *rep, const char *allow)
{
	if (r->stage != ST_NEW || r->body_expected)
		return send_reply(r, rep, allow);
	r->reply = *rep;
	memset(rep, 0, sizeof(*rep));
	r->allow = allow;
	r->pending = true;
	r->stage = ST_BODY;
	return MHD_YES;
}

static enum MHD_Result send_problem(struct req *r, int status, const char *code, const char *allow,
                                    int retry_after, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

static enum MHD_Result send_problem(struct req *r, int status, const char *code, const char *allow,
                                    int retry_after, const char *fmt, ...)
{
	api_reply rep = {0};
	char detail[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	api_reply_error(&rep, status, code, "%s", detail);
	rep.retry_after = retry_after;
	r->error = code;
	return early_reply(r, &rep, allow);
}

/* ---- header checks -------------------------------------------------------------- */

static enum MHD_Result framing_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
	srv__framing *f = cls;

	(void)kind;
	if (key && value && !srv__header_in_place(key, value))
		f->folded = true;
	srv__framing_add(f, key, value);
	return MHD_YES;
}

/* ---- the body-memory budget ------------------------------------------------------ */

/* Whose budget a request's body counts against: with tokens its principal
 * (read-only and admin tokens, which write nothing, are readers), without
 * them nobody's but the total. */
static const char *budget_owner(const struct req *r)
{
	return r->srv->auth && r->principal[0] ? r->principal : NULL;
}

static bool budget_reader(const struct req *r)
{
	return r->role != SRV_ROLE_RW;
}

/* Reserves n more bytes of the body budget for r (--max-buffered, and with
 * tokens its principal's share). Any MHD thread. */
static bool reserve(struct req *r, size_t n)
{
	if (!srv__budget_take(r->srv->budget, budget_owner(r), budget_reader(r), n))
		return false;
	r->reserved += n;
	return true;
}

static void drop_body(struct req *r)
{
	free(r->body);
	r->body = NULL;
	r->len = r->cap = 0;
	/* the helper reads the arena: stopped first */
	api_loss_early_free(srv__early_end(&r->early, &r->srv->early_running));
	if (r->arena) {
		size_t used = api_body_held(r->sent);
		api_body_free(r->sent);
		r->sent = NULL;
		srv__bodymem_give(r->srv->bodymem, r->arena, r->arena_cap, used);
		r->arena = NULL;
	}
	srv__budget_give(r->srv->budget, budget_owner(r), budget_reader(r), r->reserved);
	r->reserved = 0;
}

/* ---- the stages ------------------------------------------------------------------ */

/* Reads r's body (len bytes declared) as it arrives, when an arena can be
 * had; else it is gathered whole as usual. */
static void start_sent(struct req *r, size_t len)
{
	srv__server *s = r->srv;

	r->arena = srv__bodymem_take(s->bodymem, api_body_arena_size(len), &r->arena_cap);
	if (!r->arena)
		return;
	if (api_body_new(&r->sent, r->arena, r->arena_cap, len, s->api.max_depth)) {
		srv__bodymem_give(s->bodymem, r->arena, r->arena_cap, 0);
		r->arena = NULL;
	}
}

/* A chunk of a body read as it arrives; on overflow marks over_budget and
 * drops it, like on_chunk. */
static void sent_chunk(struct req *r, const char *data, size_t n)
{
	if (api_body_feed(r->sent, data, n) == 0) {
		size_t held = api_body_held(r->sent);
		if (held <= r->reserved || reserve(r, held - r->reserved)) {
			if (r->route == SRV_ROUTE_LOSS) {
				/* set before any helper reads it, never changed */
				if (!r->early_budget.budget) {
					r->early_budget.budget = r->srv->budget;
					r->early_budget.principal = budget_owner(r);
					r->early_budget.ro = budget_reader(r);
				}
				srv__early_feed(&r->early, &r->early_tries, &r->srv->early_running,
				                &r->srv->api, r->sent, &r->early_budget);
			}
			return;
		}
	}
	r->over_budget = true;
	drop_body(r);
}

static enum MHD_Result on_headers(struct req *r, const char *url, const char *version)
{
	srv__server *s = r->srv;
	srv__framing f = {0};
	const char *v, *code, *detail;
	int m, status;

	(void)url;
	v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
	if (v && srv__valid_request_id(v))
		snprintf(r->request_id, sizeof(r->request_id), "%s", v);
	else
		new_request_id(s, r->request_id, sizeof(r->request_id));
	if (since(&r->t0) > s->cfg.request_timeout) {
		r->body_expected = true; /* whatever follows is not read: close */
		return send_problem(r, 408, "request_timeout", NULL, 0,
		                    "the headers took over %d s", s->cfg.request_timeout);
	}

	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, framing_cb, &f);
	r->body_expected = srv__framing_has_body(&f);
	/* From here a body, even one refused and drained, must keep up
	 * --min-body-rate (conns.c). */
	if (r->body_expected)
		srv__conn_body(s->conns, r->timer, true);
	status = srv__framing_check(&f, &code, &detail);
	if (status) {
		/* Whatever follows was framed by a parse we refuse: close. */
		r->body_expected = true;
		return send_problem(r, status, code, NULL, 0, "%s", detail);
	}
	/* RFC 9112 section 3.2: a 1.1 request without Host is a 400. */
	if (version && !strcmp(version, MHD_HTTP_VERSION_1_1) &&
	    !MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
		return send_problem(r, 400, "missing_host", NULL, 0,
		                    "an HTTP/1.1 request needs a Host header");

	if (s->cfg.cors_origins[0]) {
		v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
		if (v && srv__cors_allowed(&s->cfg, v))
			r->cors_origin = v;
	}
	m = srv__route_match(&r->match, r->method, r->target, s->cfg.test_hooks);
	if (m == SRV_MATCH_BAD_METHOD && !strcmp(r->method, "OPTIONS")) {
		/* A preflight, or a plain OPTIONS: the path's methods, no body. */
		api_reply rep = {.status = 204};
		r->preflight = true;
		return early_reply(r, &rep, r->match.allow);
	}
	switch (m) {
	case SRV_MATCH_NOT_FOUND:
		return send_problem(r, 404, "not_found", NULL, 0, "no route for this path");
	case SRV_MATCH_BAD_METHOD:
		return send_problem(r, 405, "method_not_allowed", r->match.allow, 0,
		                    "%s is not allowed here; allowed: %s", r->method,
		                    r->match.allow);
	case SRV_MATCH_BAD_ID:
		return send_problem(r, 400, "invalid_stream_id", NULL, 0,
		                    "a stream id must match [A-Za-z0-9_-]{1,128}");
	default: break;
	}
	r->route = r->match.info->route;

	/* Everything under /v1 needs a token once tokens are configured;
	 * health, metrics and the spec stay open for probes and scrapers. */
	if (s->auth && !strncmp(r->match.info->pattern, "/v1/", 4)) {
		int a = srv__auth_check(s->auth,
		                        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
		                                                    MHD_HTTP_HEADER_AUTHORIZATION),
		                        r->principal, &r->role);
		if (a == SRV_AUTH_MISSING) {
			r->www_auth = "Bearer realm=\"lossd\"";
			return send_problem(r, 401, "unauthorized", NULL, 0,
			                    "this route needs Authorization: Bearer <token>");
		}
		if (a != SRV_AUTH_OK) {
			r->www_auth = "Bearer realm=\"lossd\", error=\"invalid_token\"";
			return send_problem(r, 401, "unauthorized", NULL, 0,
			                    "the bearer token is not valid");
		}
		if (r->role != SRV_ROLE_RW && r->match.info->write)
			return send_problem(
			        r, 403, "forbidden", NULL, 0,
			        r->role == SRV_ROLE_ADMIN
			                ? "admin tokens read every stream and write none"
			                : "this token is read-only");
	}

	if (r->match.info->kind == SRV_DIRECT) {
		api_reply rep = {0};
		srv__ops(&rep, s, r->route);
		if (rep.status >= 400)
			r->error = rep.status == 503 ? "draining" : "error";
		return early_reply(r, &rep, NULL);
	}

	r->keep_body = r->match.info->has_body;
	const char *ctype =
	        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	/* PATCH takes a JSON merge patch under its own media type too (RFC 7396). */
	bool patch = r->match.info->route == SRV_ROUTE_STREAMS_PATCH;
	if (r->keep_body && r->body_expected && !srv__is_json_type(ctype) &&
	    !(patch && srv__is_merge_patch_type(ctype)))
		return send_problem(r, 415, "unsupported_media_type", NULL, 0,
		                    patch ? "the body must be Content-Type: application/json or "
		                            "application/merge-patch+json"
		                          : "the body must be Content-Type: application/json");
	if (f.ncl && f.cl > s->cfg.max_body)
		return send_problem(r, 413, "body_too_large", NULL, 0,
		                    "the body is %llu bytes; the limit is %zu", f.cl,
		                    s->cfg.max_body);
	if (atomic_load(&s->inflight) >= s->cfg.max_inflight) {
		srv__metrics_overloaded();
		return send_problem(r, 503, "overloaded", NULL, 1,
		                    "too many requests in flight; retry later");
	}
	/* The budget is taken as the body arrives (on_chunk), never for a
	 * declared length alone: a client announcing 64 MiB and sending a byte
	 * now and then holds only what it sent. The first piece is taken now,
	 * so a full budget is answered before the body is sent. */
	if (r->keep_body && f.ncl && f.cl > 0) {
		size_t first = f.cl < FIRST_PIECE ? (size_t)f.cl : FIRST_PIECE;
		r->declared = f.cl;
		if (!reserve(r, first)) {
			srv__metrics_overloaded();
			return send_problem(r, 503, "overloaded", NULL, 1,
			                    "request bodies in memory are at --max-buffered%s; "
			                    "retry later",
			                    budget_owner(r) ? " or this token's share" : "");
		}
		if ((r->route == SRV_ROUTE_LOSS || r->route == SRV_ROUTE_AUC) &&
		    f.cl > STREAM_MIN_BODY && f.cl < SIZE_MAX / 2)
			start_sent(r, (size_t)f.cl);
		r->body = r->sent ? NULL : malloc(first + 1);
		if (!r->body && !r->sent)
			return send_problem(r, 503, "out_of_memory", NULL, 1,
			                    "no memory for a %zu-byte body buffer", first);
		r->cap = r->sent ? 0 : first + 1;
	}
	v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
	if (v) {
		/* Refused rather than ignored: a dropped key would let a retry
		 * apply an update twice. */
		if (!*v || strlen(v) >= sizeof(r->idem_key))
			return send_problem(r, 400, "bad_idempotency_key", NULL, 0,
			                    "Idempotency-Key must be 1 to %d bytes",
			                    API_IDEMPOTENCY_KEY_MAX);
		strcpy(r->idem_key, v);
		r->has_idem = true;
	}
	r->stage = ST_BODY;
	return MHD_YES;
}

/* Appends a chunk; on overflow marks too_large (or over_budget) and drops
 * the buffer: the rest of the body is counted and discarded. */
static void on_chunk(struct req *r, const char *data, size_t n)
{
	size_t max = r->srv->cfg.max_body;

	r->bytes_in += n;
	if (r->too_large || r->over_budget)
		return;
	size_t have = r->sent ? api_body_len(r->sent) : r->len;
	if (have + n > max || have + n < have) {
		r->too_large = true;
		drop_body(r);
		return;
	}
	if (!r->keep_body)
		return;
	if (r->sent) {
		sent_chunk(r, data, n);
		return;
	}
	if (r->len + n + 1 > r->cap) {
		size_t ncap = r->cap ? r->cap : 4096;
		char *nb;
		while (ncap < r->len + n + 1)
			ncap *= 2;
		if (ncap > max + 1)
			ncap = max + 1;
		if (r->declared && ncap > r->declared + 1)
			ncap = (size_t)r->declared + 1;
		/* Capacities count the NUL; the budget counts body bytes. */
		if (!reserve(r, (ncap - 1) - (r->cap ? r->cap - 1 : 0))) {
			r->over_budget = true;
			drop_body(r);
			return;
		}
		nb = realloc(r->body, ncap);
		if (!nb) {
			/* Answered like the budget: 503, retry later. */
			r->over_budget = true;
			drop_body(r);
			return;
		}
		r->body = nb;
		r->cap = ncap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
}

static void job_finish(void *arg);

/* Runs r's handler into r->reply, on whichever thread calls it. With
 * deferred (the store lane), the handler may answer later (request.h):
 * then *deferred is true on return and r may be gone already. */
static void run_handler(struct req *r, bool *deferred)
{
	api_early *early = srv__early_end(&r->early, &r->srv->early_running);
	srv_request q = {
	        .method = r->match.info->method, /* HEAD arrives as GET */
	        .route = r->match.info->pattern,
	        .id = r->match.id[0] ? r->match.id : NULL,
	        .query = r->query,
	        .body = r->body ? r->body : "",
	        .len = r->len,
	        .sent = r->sent,
	        .early = early,
	        .idempotency_key = r->has_idem ? r->idem_key : NULL,
	        .principal = r->srv->auth ? r->principal : NULL,
	        .admin = r->srv->auth && r->role == SRV_ROLE_ADMIN,
	        .api = &r->srv->api,
	        .streams = r->srv->streams,
	        .deferred = deferred,
	        .defer_done = job_finish,
	        .defer_arg = r,
	};
	memset(&r->reply, 0, sizeof(r->reply));
	srv__dispatch(&r->reply, r->route, &q);
	if (early) {
		int64_t ran, tasks;
		bool used = api_loss_early_used(early, &ran, &tasks);
		srv__metrics_early(used, ran);
		api_loss_early_free(early);
	}
	if (deferred && *deferred)
		return;
	if (!r->reply.status)
		api_reply_error(&r->reply, 500, "internal_error", "the handler gave no reply");
}

static int job_run(srv__job *job)
{
	bool deferred = false;
	srv__metrics_queued_add(-1);
	run_handler((struct req *)job, job->lane == SRV_LANE_STORE ? &deferred : NULL);
	return deferred; /* true: job may be gone, job_finish will come */
}

/* A deferred handler's reply is in r->reply (request.h). */
static void job_finish(void *arg)
{
	struct req *r = arg;
	srv__loop_finish(r->srv->loop, &r->job);
}

static void job_done(srv__job *job, int cancelled)
{
	struct req *r = (struct req *)job;
	srv__server *s = r->srv;

	if (cancelled) {
		srv__metrics_queued_add(-1);
		api_reply_free(&r->reply);
		api_reply_error(&r->reply, 503, "overloaded", "the server is stopping");
		r->reply.retry_after = 1;
	}
	/* Before the resume: r may be gone once the connection runs again. */
	if (r->store_slot) {
		r->store_slot = false;
		atomic_fetch_sub(&s->store_inflight, 1);
	}
	MHD_resume_connection(r->conn);
	/* Count it out only after the resume: inflight == 0 then means no
	 * connection is left suspended. */
	atomic_fetch_sub(&s->inflight, 1);
	srv__metrics_inflight_add(-1);
}

static enum MHD_Result on_body_end(struct req *r)
{
	srv__server *s = r->srv;
	int prev;

	srv__conn_body(s->conns, r->timer, false);
	if (r->pending)
		return send_reply(r, &r->reply, r->allow);
	if (r->too_large)
		return send_problem(r, 413, "body_too_large", NULL, 0,
		                    "the body is over the limit of %zu bytes", s->cfg.max_body);
	if (r->over_budget) {
		srv__metrics_overloaded();
		return send_problem(r, 503, "overloaded", NULL, 1,
		                    "request bodies in memory are at --max-buffered; retry later");
	}
	if (r->match.info->kind == SRV_STORE && srv__streams_stalled(r->srv->streams)) {
		/* A write would only queue behind the stalled ones, holding an
		 * --max-inflight slot: refused here. (A broken store is the
		 * handlers' to answer: they check ownership first.) */
		return send_problem(r, 503, "store_unavailable", NULL, 1,
		                    "the stream store cannot commit right now (see /readyz); "
		                    "retry later");
	}
	prev = atomic_fetch_add(&s->inflight, 1);
	if (prev < 0 || prev >= s->cfg.max_inflight) {
		/* < 0: srv_main closed admission to stop the daemon. */
		atomic_fetch_sub(&s->inflight, 1);
		srv__metrics_overloaded();
		return send_problem(r, 503, "overloaded", NULL, 1,
		                    prev < 0 ? "the server is stopping"
		                             : "too many requests in flight; retry later");
	}
	if (r->match.info->kind == SRV_STORE) {
		/* Stream writes may wait on the disk (a stall shorter than
		 * --store-stall-s is not refused at the door): they get at most
		 * half of the slots, so /v1/loss and /v1/auc always find one. */
		int cap = s->cfg.max_inflight / 2 > 0 ? s->cfg.max_inflight / 2 : 1;
		if (atomic_fetch_add(&s->store_inflight, 1) >= cap) {
			atomic_fetch_sub(&s->store_inflight, 1);
			atomic_fetch_sub(&s->inflight, 1);
			srv__metrics_overloaded();
			return send_problem(r, 503, "overloaded", NULL, 1,
			                    "too many stream writes in flight (half of "
			                    "--max-inflight); retry later");
		}
		r->store_slot = true;
	}
	if (r->body)
		r->body[r->len] = '\0';
	r->admitted = true;
	if (r->route == SRV_ROUTE_LOSS && !r->sent && r->len <= INLINE_MAX_BODY) {
		/* Small and stateless: answered on this thread. Handing a 3 KB
		 * loss to a worker costs two thread switches and a wake-up of
		 * the loop, more than computing it; nothing here can block. */
		srv__metrics_inflight_add(1);
		run_handler(r, NULL);
		atomic_fetch_sub(&s->inflight, 1);
		srv__metrics_inflight_add(-1);
		r->stage = ST_QUEUED;
		return send_reply(r, &r->reply, NULL);
	}
	/* The request is ours now: no request clock while the workers have it. */
	srv__conn_timed(s->conns, r->timer, false);
	r->stage = ST_PARKED;
	return MHD_YES; /* suspended on the next call: see park_and_submit */
}

/*
 * The second end-of-request call of a worker route: suspend, hand off.
 *
 * Why not on the first: 0.9.75 keeps a suspended connection's poll events
 * as they were before the call that suspended it. Suspended on the first
 * end-of-request call, a connection is still polled for reading when it
 * is resumed, so a client that sent its request and then shut down its
 * side (FIN, a half-close: `curl -T`, `nc -N`, HTTP/1.0 tools) is read
 * to EOF before the reply goes out, and 0.9.75 closes it with the reply
 * unsent. Returning without a reply once makes 0.9.75 mark the
 * connection as waiting for the application (polled for errors only)
 * and call again at once; suspended then, it is resumed in that state
 * and the reply is written whatever the client's side did.
 */
static enum MHD_Result park_and_submit(struct req *r)
{
	srv__server *s = r->srv;

	r->stage = ST_QUEUED;
	srv__metrics_inflight_add(1);
	srv__metrics_queued_add(1);
	r->job.run = job_run;
	r->job.done = job_done;
	r->job.lane = r->match.info->kind == SRV_STORE ? SRV_LANE_STORE : 0;
	/* An update that does not wait for its commit (loop.h's quick) */
	r->job.quick =
	        r->route == SRV_ROUTE_STREAMS_UPDATE && srv__streams_updates_defer(s->streams);
	MHD_suspend_connection(r->conn);
	srv__loop_submit(s->loop, &r->job);
	return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;

	(void)cls;
	(void)version;
	if (!r)
		return MHD_NO; /* the URI callback failed to allocate */
	switch (r->stage) {
	case ST_NEW:
		r->conn = conn;
		snprintf(r->method, sizeof(r->method), "%s", method);
		return on_headers(r, url, version);
	case ST_BODY:
		if (*upload_data_size) {
			srv__conn_body_bytes(r->timer, *upload_data_size);
			if (r->pending)
				r->bytes_in += *upload_data_size;
			else
				on_chunk(r, upload_data, *upload_data_size);
			*upload_data_size = 0;
			/* 0.9.75 refuses a reply queued mid-body, so an oversize
			 * body is read and dropped, and the 413 goes out at its
			 * end; a body that goes on past twice the limit is cut
			 * off by closing the connection. */
			/* Slow uploads (a slowloris trickling its body) are cut
			 * off: 0.9.75's timeout only counts idle time. */
			if (since(&r->t0) > r->srv->cfg.request_timeout) {
				r->error = "request_timeout";
				return MHD_NO;
			}
			if ((r->too_large || r->over_budget) &&
			    r->bytes_in / 2 > r->srv->cfg.max_body + 65536) {
				r->error = r->too_large ? "body_too_large" : "overloaded";
				return MHD_NO;
			}
			return MHD_YES;
		}
		return on_body_end(r);
	case ST_PARKED: return park_and_submit(r);
	case ST_QUEUED: return send_reply(r, &r->reply, NULL);
	case ST_SENT:
		/* Body bytes after an early reply: drop them. */
		if (*upload_data_size) {
			srv__conn_body_bytes(r->timer, *upload_data_size);
			r->bytes_in += *upload_data_size;
			*upload_data_size = 0;
		} else {
			srv__conn_body(r->srv->conns, r->timer, false);
		}
		return MHD_YES;
	}
	return MHD_NO;
}

/* ---- request lifetime ------------------------------------------------------------- */

/* The connection's client address as text into out (cap bytes), or "". */
static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
	        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	out[0] = '\0';
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET,
			          &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
			          (socklen_t)cap);
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
			          &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
			          (socklen_t)cap);
	}
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
	srv__server *s = cls;
	struct req *r = calloc(1, sizeof(*r));
	const union MHD_ConnectionInfo *ci;
	char *q;

	if (!r)
		return NULL;
	r->target = strdup(uri ? uri : "");
	if (!r->target) {
		free(r);
		return NULL;
	}
	q = strchr(r->target, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	}
	r->srv = s;
	r->conn = conn;
	r->route = SRV_ROUTE_NONE;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	r->timer = ci ? ci->socket_context : NULL;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	client_address(conn, r->client, sizeof(r->client));
	/* A request has begun: this connection is no longer idle. */
	srv__conn_busy(s->conns, r->timer, true);
	atomic_fetch_add(&s->active, 1);
	return r;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	srv__server *s = cls;
	struct req *r = *con_cls;
	const char *cut;
	double dt;

	(void)conn;
	if (!r)
		return;
	*con_cls = NULL;
	/* Admitted but closed (a reset, the daemon stopping) before the call
	 * that would have handed it to the workers: count it out here. */
	if (r->stage == ST_PARKED) {
		if (r->store_slot)
			atomic_fetch_sub(&s->store_inflight, 1);
		atomic_fetch_sub(&s->inflight, 1);
	}
	dt = since(&r->t0);
	/* Cut by the sweeper (conns.c): say why in the log line. */
	cut = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? srv__conn_reason(s->conns, r->timer)
	                                                 : NULL;
	if (cut && !r->error)
		r->error = cut;
	srv__metrics_request(r->route, r->status, dt, r->bytes_in, r->bytes_out);
	srv__log_request(&(srv__log_request_fields){
	        .method = r->method[0] ? r->method : NULL,
	        .path = r->target,
	        .route = r->route == SRV_ROUTE_NONE ? NULL : srv__route_name(r->route),
	        .status = r->status,
	        .bytes_in = r->bytes_in,
	        .bytes_out = r->bytes_out,
	        .duration_s = dt,
	        .request_id = r->request_id[0] ? r->request_id : NULL,
	        .client = r->client[0] ? r->client : NULL,
	        .error = r->error
	                         ? r->error
	                         : (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK ? "connection_closed"
	                                                                       : NULL),
	});
	/* The next request on this connection has --request-timeout from now
	 * (an idle one goes first, at --timeout). */
	srv__conn_timed(s->conns, r->timer, true);
	srv__conn_busy(s->conns, r->timer, false);
	api_reply_free(&r->reply);
	bool large = r->arena != NULL;
	drop_body(r);
#ifdef __GLIBC__
	/* A large body's reply (a per-class row for each of 32000 classes is
	 * a 50 MB tree) leaves that much free in the worker's malloc arena,
	 * and each worker has its own: give it back, or every worker keeps
	 * its own copy resident (measured: 1.14x the decoded tensors after
	 * five (8192, 32000) requests, 1.06x with this). */
	if (large)
		malloc_trim(0);
#endif
	free(r->target);
	free(r);
	atomic_fetch_sub(&s->active, 1);
}

/* Keeps the target exactly as sent: no %-decoding anywhere. */
static size_t unescape_cb(void *cls, struct MHD_Connection *c, char *str)
{
	(void)cls;
	(void)c;
	return strlen(str);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	srv_log(SRV_LOG_DEBUG, "\"component\":\"microhttpd\"", "%s", msg);
}

/* Registers each connection with the request-timeout sweeper (conns.c):
 * "started" comes before any byte is read, "closed" before the fd is. */
static void conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                    enum MHD_ConnectionNotificationCode code)
{
	srv__server *s = cls;
	const union MHD_ConnectionInfo *ci;
	char client[64];

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		client_address(conn, client, sizeof(client));
		*socket_context = ci ? srv__conn_open(s->conns, ci->connect_fd, client) : NULL;
	} else {
		srv__conn_close(s->conns, *socket_context);
		*socket_context = NULL;
	}
}

/* ---- daemon ------------------------------------------------------------------------ */

int srv__http_start(srv__server *s)
{
	struct addrinfo hints = {0}, *ai = NULL;
	unsigned int flags;
	const union MHD_DaemonInfo *di;
	struct MHD_OptionItem tls[4] = {{MHD_OPTION_END, 0, NULL}};
	unsigned int mhd_limit;
	int rc;

	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(s->cfg.bind, NULL, &hints, &ai);
	if (rc != 0 || !ai) {
		srv_log(SRV_LOG_ERROR, NULL, "--bind %s: %s", s->cfg.bind, gai_strerror(rc));
		return -1;
	}
	if (ai->ai_family == AF_INET)
		((struct sockaddr_in *)(void *)ai->ai_addr)->sin_port =
		        htons((uint16_t)s->cfg.port);
	else
		((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_port =
		        htons((uint16_t)s->cfg.port);

	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (s->tls_cert_pem) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			srv_log(SRV_LOG_ERROR, NULL,
			        "this libmicrohttpd is built without TLS: --tls-cert cannot be "
			        "served");
			freeaddrinfo(ai);
			return -1;
		}
		flags |= MHD_USE_TLS;
		tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key_pem};
		tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert_pem};
		/* TLS 1.2 and 1.3 only (GnuTLS' NORMAL still offers 1.0/1.1). */
		tls[2] = (struct MHD_OptionItem){
		        MHD_OPTION_HTTPS_PRIORITIES, 0,
		        (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"};
		tls[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	}
	srv__conns_opts co = {
	        .request_timeout = s->cfg.request_timeout,
	        .max_connections = s->cfg.max_connections,
	        .min_body_rate = s->cfg.min_body_rate,
	        .body_window = s->cfg.min_body_rate_window,
	};
	s->bodymem = srv__bodymem_new(s->cfg.body_cache);
	s->budget =
	        srv__budget_new(s->cfg.max_buffered, s->cfg.max_buffered_per_principal,
	                        s->cfg.max_buffered / 2 > s->cfg.max_body ? s->cfg.max_buffered / 2
	                                                                  : s->cfg.max_body);
	if (!s->budget || !s->bodymem || srv__conns_start(&s->conns, &co) != 0) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot start the connection sweeper");
		srv__budget_free(s->budget);
		s->budget = NULL;
		srv__bodymem_free(s->bodymem);
		s->bodymem = NULL;
		freeaddrinfo(ai);
		return -1;
	}
	/* libmicrohttpd refuses past its own limit before conns.c can make
	 * room; it is set above --max-connections, which conns.c enforces
	 * by closing the longest-idle connection (or the new one). The
	 * margin covers connections cut but not yet closed. */
	mhd_limit = (unsigned int)s->cfg.max_connections + 16u +
	            (unsigned int)s->cfg.max_connections / 16u;
	for (int attempt = 0; attempt < 2 && !s->mhd; attempt++) {
		/* poll, not epoll: 0.9.75's edge-triggered epoll loses the EOF
		 * of a client that sends part of a request and closes at once
		 * (the connection then sits in CLOSE_WAIT until --timeout). */
		unsigned int poll = attempt == 0 ? MHD_USE_POLL : MHD_USE_AUTO;
		/* clang-format off */
		s->mhd = MHD_start_daemon(
			flags | poll, (uint16_t)s->cfg.port, NULL, NULL, access_cb, s,
			MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
			MHD_OPTION_SOCK_ADDR, ai->ai_addr,
			MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)s->cfg.http_threads,
			MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->cfg.timeout,
			MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
			MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)s->cfg.max_per_ip,
			MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
			MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s,
			MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
			MHD_OPTION_NOTIFY_CONNECTION, conn_cb, s,
			MHD_OPTION_UNESCAPE_CALLBACK, unescape_cb, s,
			MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
			MHD_OPTION_ARRAY, tls,
			MHD_OPTION_END);
		/* clang-format on */
	}
	freeaddrinfo(ai);
	if (!s->mhd) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot listen on %s port %d: %s", s->cfg.bind,
		        s->cfg.port, strerror(errno));
		srv__conns_free(s->conns);
		s->conns = NULL;
		srv__budget_free(s->budget);
		s->budget = NULL;
		srv__bodymem_free(s->bodymem);
		s->bodymem = NULL;
		return -1;
	}
	di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : s->cfg.port;
	return 0;
}

void srv__http_quiesce(srv__server *s)
{
	if (s->mhd && s->listen_fd < 0)
		s->listen_fd = MHD_quiesce_daemon(s->mhd);
}

void srv__http_stop(srv__server *s)
{
	/* The sweeper first (it must not shut down sockets MHD is closing);
	 * the table after MHD, which reports every close into it. */
	srv__conns_stop(s->conns);
	if (s->mhd) {
		MHD_stop_daemon(s->mhd);
		s->mhd = NULL;
	}
	srv__conns_free(s->conns);
	s->conns = NULL;
	srv__budget_free(s->budget);
	s->budget = NULL;
	srv__bodymem_free(s->bodymem);
	s->bodymem = NULL;
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		s->listen_fd = -1;
	}
}
