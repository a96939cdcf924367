/*
 * handlers.c - the worker routes' dispatcher.
 *
 * Runs on a libuv worker thread: maps a route to the api layer (loss, auc),
 * the stream store (streams.c) or a test hook. Everything a handler needs
 * is in the srv_request; nothing here touches libmicrohttpd.
 *
 * The test hook POST /v1/_sleep?ms=N (routed only with LOSSD_TEST_HOOKS=1 /
 * --test-hooks) holds a worker for N ms (at most 60000) so the end-to-end
 * tests can saturate the workers and drain with a request in flight.
 * POST /v1/_store_fail?n=N (same switch) makes the stream store's next N
 * transactions fail as an I/O error would (N = -1: all of them until
 * n=0), for the store's recovery tests where no faulty device exists.
 */
#include "server.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "lossd/api_query.h"
#include "streams.h"

/* The integer value of name in the query (api_query_next, the one query
 * parser), or dflt when it is absent or not an integer. */
static long query_long(const char *query, const char *name, long dflt)
{
	char k[32], v[32];
	while (api_query_next(&query, k, sizeof k, v, sizeof v) == 1) {
		if (strcmp(k, name) != 0)
			continue;
		char *end;
		long x = strtol(v, &end, 10);
		return v[0] && !*end ? x : dflt;
	}
	return dflt;
}

static void test_sleep(api_reply *out, const srv_request *req)
{
	long ms = query_long(req->query, "ms", 100);
	struct timespec ts;

	if (ms < 0 || ms > 60000) {
		api_reply_error(out, 422, "bad_option", "ms must be in [0, 60000]");
		return;
	}
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
	api_reply_json(out, 200, json_pack("{s:i}", "slept_ms", (int)ms));
}

static void test_store_fail(api_reply *out, const srv_request *req)
{
	long n = query_long(req->query, "n", 1);
	if (n < -1 || n > 1000000) {
		api_reply_error(out, 422, "bad_option", "n must be in [-1, 1000000]");
		return;
	}
	srv__streams_test_store_fail(req->streams, (int)n);
	api_reply_json(out, 200, json_pack("{s:i}", "fail", (int)n));
}

void srv__dispatch(api_reply *out, enum srv__route route, const srv_request *req)
{
	switch (route) {
	case SRV_ROUTE_LOSS:
		if (req->sent)
			api_loss_sent_early(out, req->api, req->sent, req->early);
		else
			api_loss(out, req->api, req->body, req->len);
		return;
	case SRV_ROUTE_AUC:
		if (req->sent)
			api_auc_sent(out, req->api, req->sent);
		else
			api_auc(out, req->api, req->body, req->len);
		return;
	case SRV_ROUTE_STREAMS_CREATE: srv__streams_create(out, req); return;
	case SRV_ROUTE_STREAMS_LIST: srv__streams_list(out, req); return;
	case SRV_ROUTE_STREAMS_GET: srv__streams_get(out, req); return;
	case SRV_ROUTE_STREAMS_DELETE: srv__streams_delete(out, req); return;
	case SRV_ROUTE_STREAMS_UPDATE: srv__streams_update(out, req); return;
	case SRV_ROUTE_STREAMS_RESET: srv__streams_reset(out, req); return;
	case SRV_ROUTE_STREAMS_STATE: srv__streams_state(out, req); return;
	case SRV_ROUTE_STREAMS_MERGE: srv__streams_merge(out, req); return;
	case SRV_ROUTE_STREAMS_CHECKPOINT: srv__streams_checkpoint(out, req); return;
	case SRV_ROUTE_STREAMS_HISTORY: srv__streams_history(out, req); return;
	case SRV_ROUTE_STREAMS_PATCH: srv__streams_patch(out, req); return;
	case SRV_ROUTE_TEST_SLEEP: test_sleep(out, req); return;
	case SRV_ROUTE_TEST_STORE_FAIL: test_store_fail(out, req); return;
	default: break;
	}
	api_reply_error(out, 500, "internal_error", "route %d has no worker handler", (int)route);
}
