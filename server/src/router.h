/*
 * router.h - the routing table: raw method and path in, route out.
 */
#ifndef LOSSD_SERVER_ROUTER_H
#define LOSSD_SERVER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

/* Routes, also the metrics' route label index. SRV_ROUTE_NONE is every
 * request that matched nothing (404, 405, bad framing). */
enum srv__route {
	SRV_ROUTE_NONE = 0,
	SRV_ROUTE_HEALTHZ,
	SRV_ROUTE_LIVEZ,
	SRV_ROUTE_READYZ,
	SRV_ROUTE_METRICS,
	SRV_ROUTE_OPENAPI,
	SRV_ROUTE_VERSION,
	SRV_ROUTE_LOSS,
	SRV_ROUTE_AUC,
	SRV_ROUTE_STREAMS_CREATE,
	SRV_ROUTE_STREAMS_LIST,
	SRV_ROUTE_STREAMS_GET,
	SRV_ROUTE_STREAMS_DELETE,
	SRV_ROUTE_STREAMS_UPDATE,
	SRV_ROUTE_STREAMS_RESET,
	SRV_ROUTE_STREAMS_STATE,
	SRV_ROUTE_STREAMS_MERGE,
	SRV_ROUTE_STREAMS_CHECKPOINT,
	SRV_ROUTE_STREAMS_HISTORY,
	SRV_ROUTE_STREAMS_PATCH,
	SRV_ROUTE_TEST_SLEEP,
	SRV_ROUTE_TEST_STORE_FAIL,
	SRV_ROUTE_UI_INDEX, /* the dashboard and its assets: ui.c */
	SRV_ROUTE_UI_DOCS,
	SRV_ROUTE_UI_APP_JS,
	SRV_ROUTE_UI_STYLE_CSS,
	SRV_ROUTE_UI_DOCS_CSS,
	SRV_ROUTE_UI_FAVICON,
	SRV_ROUTE_UI_UPLOT_JS,
	SRV_ROUTE_UI_UPLOT_CSS,
	SRV_ROUTE_COUNT
};

/* How a route is answered. */
enum srv__route_kind {
	SRV_DIRECT, /* on the HTTP thread: cheap, no body, no compute */
	SRV_WORKER, /* on a libuv worker thread, counted in max-inflight */
	SRV_STORE,  /* a stream write: on the store's own threads (loop.c), so
	               one waiting on a stalled disk never holds a worker that
	               /v1/loss or /v1/auc need; counted in max-inflight */
};

typedef struct srv__route_info {
	enum srv__route route;
	const char *method;  /* "GET", "POST", "DELETE" */
	const char *pattern; /* "/v1/streams/{id}/update"; {id} is one segment */
	enum srv__route_kind kind;
	bool has_body; /* takes a JSON body (Content-Type checked) */
	bool write;    /* changes state: needs a read-write token */
} srv__route_info;

/* What srv__route_match found. */
#define SRV_MATCH_OK         0
#define SRV_MATCH_NOT_FOUND  -1 /* 404 not_found */
#define SRV_MATCH_BAD_METHOD -2 /* 405 method_not_allowed, see allow */
#define SRV_MATCH_BAD_ID     -3 /* 400 invalid_stream_id */

#define SRV_ID_MAX           128

typedef struct srv__match {
	const srv__route_info *info; /* borrowed, static; NULL unless OK */
	char id[SRV_ID_MAX + 1];     /* the {id} segment, or "" */
	char allow[96];              /* for 405: "GET, HEAD" etc. */
} srv__match;

/*
 * Matches a RAW (not unescaped) path against the table. method is the
 * request method; HEAD matches GET routes. test_hooks adds
 * POST /v1/_sleep and POST /v1/_store_fail. The {id} segment must match [A-Za-z0-9_-]{1,128} on the
 * raw bytes, so "%2F" or "%00" in an id is SRV_MATCH_BAD_ID and never an
 * id. A path with '%' elsewhere simply matches nothing. Any thread.
 */
int srv__route_match(srv__match *out, const char *method, const char *path, bool test_hooks);

/* The route's label for metrics and logs ("/v1/loss", "none"). */
const char *srv__route_name(enum srv__route r);

/* Its method ("GET"; HEAD is counted as GET), or "none" for SRV_ROUTE_NONE. */
const char *srv__route_method(enum srv__route r);

/* True if s is a valid stream id ([A-Za-z0-9_-]{1,128}). */
bool srv_route_valid_id(const char *s, size_t len);

#endif
