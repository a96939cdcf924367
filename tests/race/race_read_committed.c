/*
 * race_read_committed.c - reads show committed state only (issue 13 item
 * 3: never show in memory what the disk refused), through the real
 * handlers (server/src/streams.c + store.c).
 *
 * For each read route (GET reading, GET state, GET history, the list):
 * an update is applied in memory and its commit held in flight by the
 * store's test hook (srv__streams_test_store_hold), with the next commit
 * set to fail (srv__streams_test_store_fail); a reader starts meanwhile;
 * then the commit goes on and fails, so the writer gets 503. The reader
 * must answer either the committed state (the rows before the update) or
 * 503 store_unavailable, never the refused rows. Before reads waited for
 * committed state, every route answered 200 with them. Then the healer
 * reloads the stream and a write and a read work again.
 * A plain executable (Criterion aborts under ThreadSanitizer); exit status
 * 0 = pass.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../server/src/streams.h"

static const api_ctx ctx = API_CTX_INIT;
static srv__streams *table; /* the stream table under test */
static char sid[64];
static int failures;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "race_read_committed: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	failures++;
}

static srv_request request(const char *method, const char *route, const char *id, const char *body,
                           const char *query)
{
	srv_request r;
	memset(&r, 0, sizeof r);
	r.method = method;
	r.route = route;
	r.id = id;
	r.query = query ? query : "";
	r.body = body ? body : "";
	r.len = body ? strlen(body) : 0;
	r.api = &ctx;
	r.streams = table;
	return r;
}

static int update(const char *body)
{
	api_reply out = {0};
	srv_request r = request("POST", "/v1/streams/{id}/update", sid, body, NULL);
	srv__streams_update(&out, &r);
	int st = out.status;
	api_reply_free(&out);
	return st;
}

/* The rows a read shows: -1 for 503 store_unavailable, -2 otherwise. */
typedef struct reading {
	int route; /* 0 reading, 1 state, 2 history, 3 list */
	long long rows;
	int status;
	char body[300];
} reading;

static long long rows_of(int route, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	long long c = -2;
	if (route == 3) {
		json_t *a = json_object_get(j, "streams");
		for (size_t i = 0; i < json_array_size(a); i++) {
			json_t *e = json_array_get(a, i);
			if (!strcmp(json_string_value(json_object_get(e, "id")), sid))
				c = json_integer_value(json_object_get(e, "count"));
		}
	} else if (route == 2) {
		/* every step point's rows (the refused update adds step 7) */
		json_t *pts = json_object_get(j, "steps");
		c = 0;
		for (size_t i = 0; i < json_array_size(pts); i++) {
			json_t *n = json_object_get(json_array_get(pts, i), "count");
			c += json_is_integer(n) ? json_integer_value(n) : 0;
		}
	} else {
		c = json_integer_value(json_object_get(j, "count"));
	}
	json_decref(j);
	return c;
}

static void *reader(void *arg)
{
	reading *rd = arg;
	api_reply out = {0};
	srv_request r;
	switch (rd->route) {
	case 0:
		r = request("GET", "/v1/streams/{id}", sid, NULL, NULL);
		srv__streams_get(&out, &r);
		break;
	case 1:
		r = request("GET", "/v1/streams/{id}/state", sid, NULL, NULL);
		srv__streams_state(&out, &r);
		break;
	case 2:
		r = request("GET", "/v1/streams/{id}/history", sid, NULL, "series=steps");
		srv__streams_history(&out, &r);
		break;
	default:
		r = request("GET", "/v1/streams", NULL, NULL, NULL);
		srv__streams_list(&out, &r);
		break;
	}
	rd->status = out.status;
	snprintf(rd->body, sizeof rd->body, "%s", out.body ? out.body : "");
	if (out.status == 200)
		rd->rows = rows_of(rd->route, out.body, out.len);
	else if (out.status == 503 && out.body && strstr(out.body, "store_unavailable"))
		rd->rows = -1;
	else
		rd->rows = -2;
	api_reply_free(&out);
	return NULL;
}

static void *writer(void *arg)
{
	int *status = arg;
	*status = update("{\"y_true\":[1,0,1],\"y_score\":[0.9,0.2,0.6],\"step\":7,"
	                 "\"batch_id\":\"refused\"}");
	return NULL;
}

/* Waits until a commit is running (the held one). */
static int wait_running(void)
{
	for (int i = 0; i < 2000; i++) {
		srv__streams_stats st;
		srv__streams_get_stats(&st, table);
		if (st.commit_running_s > 0)
			return 0;
		usleep(1000);
	}
	return -1;
}

static int wait_healed(void)
{
	for (int i = 0; i < 400; i++) {
		srv__streams_stats st;
		srv__streams_get_stats(&st, table);
		if (!st.store_broken && !st.resyncing)
			return 0;
		usleep(50000);
	}
	return -1;
}

static const char *const names[] = {"GET reading", "GET state", "GET history", "GET list"};

int main(void)
{
	char dir[] = "/tmp/lossd_race_read_committed_XXXXXX";
	if (!(table = srv__streams_new())) {
		fprintf(stderr, "no memory\n");
		return 1;
	}
	if (!mkdtemp(dir) || srv__streams_open(table, dir))
		return 2;
	api_reply out = {0};
	srv_request r = request("POST", "/v1/streams", NULL, "{\"method\":\"exact\"}", NULL);
	srv__streams_create(&out, &r);
	json_t *j = out.body ? json_loadb(out.body, out.len, 0, NULL) : NULL;
	if (out.status != 201 || !j)
		return 1;
	snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	api_reply_free(&out);

	long long committed = 0;
	for (int route = 0; route < 4; route++) {
		char body[128];
		snprintf(body, sizeof body,
		         "{\"y_true\":[0,1],\"y_score\":[0.1,0.8],\"step\":%d,\"batch_id\":\"ok%"
		         "d\"}",
		         route, route);
		if (update(body) != 200) {
			fail("%s: a committed update was refused", names[route]);
			break;
		}
		committed += 2;

		srv__streams_test_store_fail(table, 1);
		srv__streams_test_store_hold(table, true);
		int wst = 0;
		pthread_t w, rt;
		pthread_create(&w, NULL, writer, &wst);
		if (wait_running())
			fail("%s: the held commit never started", names[route]);
		usleep(20000); /* the update is in memory, its commit in flight */
		reading rd = {.route = route};
		pthread_create(&rt, NULL, reader, &rd);
		usleep(200000); /* an old reader has answered by now */
		srv__streams_test_store_hold(table, false);
		pthread_join(w, NULL);
		pthread_join(rt, NULL);
		srv__streams_test_store_fail(table, 0);

		if (wst != 503)
			fail("%s: the update whose commit failed got %d, not 503", names[route],
			     wst);
		if (rd.rows == -2)
			fail("%s: the read answered %d: %s", names[route], rd.status, rd.body);
		else if (route == 1 && rd.rows >= 0 && rd.rows != committed)
			fail("%s: the state holds %lld rows, %lld committed", names[route], rd.rows,
			     committed);
		else if (route != 1 && rd.rows > committed)
			fail("%s showed %lld rows, of which 3 the disk refused (committed: %lld)",
			     names[route], rd.rows, committed);
		fprintf(stderr,
		        "race_read_committed: %s during the failing commit: %d (%lld rows)\n",
		        names[route], rd.status, rd.rows);
		if (wait_healed())
			fail("%s: the store did not heal", names[route]);
		/* the healer reloaded the stream from disk: the committed rows */
		reading after = {.route = 0};
		reader(&after);
		if (after.rows != committed)
			fail("%s: after healing the stream shows %lld rows, %lld committed",
			     names[route], after.rows, committed);
	}
	srv__streams_close(table);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		fail("cannot remove %s", dir);
	if (failures)
		fprintf(stderr, "race_read_committed: %d failure(s)\n", failures);
	return failures ? 1 : 0;
}
