/*
 * race_heal.c - the store breaking and healing under load, through the
 * real handlers (server/src/streams.c + store.c): writers update two
 * streams with unique batch_ids while the main thread makes commits fail
 * (srv__streams_test_store_fail) and lets the healer bring the store back,
 * over and over; readers run throughout. Asserts that every read is 200
 * or 503 store_unavailable and never shows more rows than were sent, and
 * that at the end, once healed, each stream holds exactly the batches that
 * got a 200 (nothing acknowledged lost, nothing refused kept), also after
 * a reopen. Half the writers let the handler answer later (request.h's
 * `deferred`: the committer finishes their updates). A plain executable (Criterion aborts under ThreadSanitizer);
 * exit status 0 = pass.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../server/src/streams.h"

#define STREAMS 2
#define WRITERS 4
#define ROUNDS  4
#define ROWS    4

static char ids[STREAMS][64];
static const api_ctx ctx = API_CTX_INIT;
static srv__streams *table; /* the stream table under test */
static int done_writing, stop_writing;
static int failures;
static long long acked[STREAMS], sent[STREAMS];
static int refused;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "race_heal: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	pthread_mutex_lock(&mu);
	failures++;
	pthread_mutex_unlock(&mu);
}

static srv_request request(const char *method, const char *route, const char *sid, const char *body)
{
	srv_request r;
	memset(&r, 0, sizeof r);
	r.method = method;
	r.route = route;
	r.id = sid;
	r.body = body ? body : "";
	r.len = body ? strlen(body) : 0;
	r.api = &ctx;
	r.streams = table;
	return r;
}

static bool is_store_unavailable(const api_reply *out)
{
	return out->status == 503 && out->body && strstr(out->body, "store_unavailable");
}

/* The stream's count; -1 when it answered 503 store_unavailable. */
static long long read_count(int k)
{
	api_reply out = {0};
	srv_request r = request("GET", "/v1/streams/{id}", ids[k], NULL);
	srv__streams_get(&out, &r);
	long long c = -2;
	if (out.status == 200) {
		json_t *j = json_loadb(out.body, out.len, 0, NULL);
		c = j ? json_integer_value(json_object_get(j, "count")) : -2;
		json_decref(j);
	} else if (is_store_unavailable(&out)) {
		c = -1;
	}
	if (c == -2)
		fail("GET answered %d: %s", out.status, out.body ? out.body : "");
	api_reply_free(&out);
	return c;
}

/* A deferred update's end (request.h): the store's committer calls it
 * once the reply is in `out`. */
typedef struct later {
	pthread_mutex_t m;
	pthread_cond_t cv;
	int done;
} later;

static void later_done(void *arg)
{
	later *l = arg;
	pthread_mutex_lock(&l->m);
	l->done = 1;
	pthread_cond_signal(&l->cv);
	pthread_mutex_unlock(&l->m);
}

/* Odd writers let the handler answer later, as http.c's store lane does
 * (the committer finishes the update); even ones wait in the handler. */
static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int i = 0; !__atomic_load_n(&stop_writing, __ATOMIC_ACQUIRE); i++) {
		int k = (t + i) % STREAMS;
		char body[512];
		int pos = snprintf(body, sizeof body, "{\"y_true\":[");
		for (int j = 0; j < ROWS; j++)
			pos += snprintf(body + pos, sizeof body - pos, "%s%d", j ? "," : "",
			                (i + j) % 2);
		pos += snprintf(body + pos, sizeof body - pos, "],\"y_score\":[");
		for (int j = 0; j < ROWS; j++)
			pos += snprintf(body + pos, sizeof body - pos, "%s0.%d", j ? "," : "",
			                (i * 3 + j) % 10);
		snprintf(body + pos, sizeof body - pos, "],\"batch_id\":\"w%d-%d\"}", t, i);
		api_reply out = {0};
		srv_request r = request("POST", "/v1/streams/{id}/update", ids[k], body);
		pthread_mutex_lock(&mu);
		sent[k] += ROWS;
		pthread_mutex_unlock(&mu);
		bool deferred = false;
		later l = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
		if (t % 2) {
			r.deferred = &deferred;
			r.defer_done = later_done;
			r.defer_arg = &l;
		}
		srv__streams_update(&out, &r);
		if (deferred) {
			pthread_mutex_lock(&l.m);
			while (!l.done)
				pthread_cond_wait(&l.cv, &l.m);
			pthread_mutex_unlock(&l.m);
		}
		pthread_mutex_lock(&mu);
		if (out.status == 200)
			acked[k] += ROWS;
		else if (is_store_unavailable(&out))
			refused++;
		pthread_mutex_unlock(&mu);
		if (out.status != 200 && !is_store_unavailable(&out))
			fail("update answered %d: %s", out.status, out.body ? out.body : "");
		api_reply_free(&out);
		usleep(2000);
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&done_writing, __ATOMIC_ACQUIRE)) {
		for (int k = 0; k < STREAMS; k++) {
			long long c = read_count(k);
			pthread_mutex_lock(&mu);
			long long most = sent[k];
			pthread_mutex_unlock(&mu);
			if (c > most)
				fail("stream %d shows %lld rows, only %lld were sent", k, c, most);
		}
	}
	return NULL;
}

/* Waits (up to 20 s) until the store takes writes and no stream is being
 * reloaded. */
static bool wait_healed(void)
{
	for (int i = 0; i < 400; i++) {
		srv__streams_stats st;
		srv__streams_get_stats(&st, table);
		if (!st.store_broken && !st.resyncing)
			return true;
		usleep(50000);
	}
	return false;
}

int main(void)
{
	char dir[] = "/tmp/lossd_race_heal_XXXXXX";
	if (!(table = srv__streams_new())) {
		fprintf(stderr, "no memory\n");
		return 1;
	}
	if (!mkdtemp(dir) || srv__streams_open(table, dir))
		return 2;
	for (int k = 0; k < STREAMS; k++) {
		api_reply out = {0};
		srv_request r = request("POST", "/v1/streams", NULL, "{\"method\":\"exact\"}");
		srv__streams_create(&out, &r);
		json_t *j = out.body ? json_loadb(out.body, out.len, 0, NULL) : NULL;
		if (out.status != 201 || !j)
			return 1;
		snprintf(ids[k], sizeof ids[k], "%s", json_string_value(json_object_get(j, "id")));
		json_decref(j);
		api_reply_free(&out);
	}

	pthread_t w[WRITERS], rd;
	pthread_create(&rd, NULL, reader, NULL);
	for (int t = 0; t < WRITERS; t++)
		pthread_create(&w[t], NULL, writer, (void *)(intptr_t)t);
	/* Break and heal while they write: every commit fails for a while
	 * (or just the next one), then the healer brings the store back. */
	for (int round = 0; round < ROUNDS; round++) {
		usleep(100000);
		srv__streams_test_store_fail(table, round % 2 ? 1 : -1);
		usleep(100000);
		srv__streams_test_store_fail(table, 0);
		if (!wait_healed())
			fail("round %d: the store did not heal", round);
	}
	usleep(100000);
	__atomic_store_n(&stop_writing, 1, __ATOMIC_RELEASE);
	for (int t = 0; t < WRITERS; t++)
		pthread_join(w[t], NULL);
	__atomic_store_n(&done_writing, 1, __ATOMIC_RELEASE);
	pthread_join(rd, NULL);

	if (!wait_healed())
		fail("the store did not heal");
	srv__streams_stats st;
	srv__streams_get_stats(&st, table);
	if (!st.store_failures || !st.store_recoveries)
		fail("no failure was injected (%llu failures, %llu recoveries)",
		     (unsigned long long)st.store_failures,
		     (unsigned long long)st.store_recoveries);
	for (int k = 0; k < STREAMS; k++) {
		long long c = read_count(k);
		if (c != acked[k])
			fail("stream %d holds %lld rows; %lld were acknowledged", k, c, acked[k]);
	}
	srv__streams_close(table);
	if (srv__streams_open(table, dir)) {
		fail("reopen failed");
	} else {
		for (int k = 0; k < STREAMS; k++) {
			long long c = read_count(k);
			if (c != acked[k])
				fail("after reopen stream %d holds %lld rows; %lld acknowledged", k,
				     c, acked[k]);
		}
		srv__streams_close(table);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	if (failures) {
		fprintf(stderr, "race_heal: %d failures\n", failures);
		return 1;
	}
	printf("race_heal: ok (%lld + %lld rows acknowledged, %d writes refused, %llu failed "
	       "transactions, %llu recoveries)\n",
	       acked[0], acked[1], refused, (unsigned long long)st.store_failures,
	       (unsigned long long)st.store_recoveries);
	return 0;
}
