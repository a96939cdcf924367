/*
 * race_store.c - many threads updating one stream through the real
 * handlers (server/src/streams.c + store.c), with retries of the same
 * batch_id racing each other and readers running alongside. Asserts that
 * nothing is lost, nothing is applied twice, reads are consistent, and
 * the same holds after closing and reopening the store. A plain
 * executable (Criterion aborts under ThreadSanitizer); exit status 0 = pass.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streams.h"

#define THREADS 6
#define PER     60
#define ROWS    10

static char id[64];
static const api_ctx ctx = API_CTX_INIT;
static srv__streams *table; /* the stream table under test */
static volatile int done_writing;
static int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "race_store: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	pthread_mutex_lock(&fail_mu);
	failures++;
	pthread_mutex_unlock(&fail_mu);
}

static srv_request request(const char *method, const char *route, const char *sid, const char *body,
                           const char *key)
{
	srv_request r;
	memset(&r, 0, sizeof r);
	r.method = method;
	r.route = route;
	r.id = sid;
	r.body = body ? body : "";
	r.len = body ? strlen(body) : 0;
	r.idempotency_key = key;
	r.api = &ctx;
	r.streams = table;
	return r;
}

static json_t *reply_json(const api_reply *out)
{
	return out->body ? json_loadb(out->body, out->len, 0, NULL) : NULL;
}

/* count and updates of the stream, -1 on failure. */
static void read_counts(long long *count, long long *updates)
{
	api_reply out = {0};
	srv_request r = request("GET", "/v1/streams/{id}", id, NULL, NULL);
	srv__streams_get(&out, &r);
	json_t *j = reply_json(&out);
	*count = *updates = -1;
	if (out.status == 200 && j) {
		*count = json_integer_value(json_object_get(j, "count"));
		*updates = json_integer_value(json_object_get(j, "updates"));
	} else {
		fail("GET answered %d: %s", out.status, out.body ? out.body : "");
	}
	json_decref(j);
	api_reply_free(&out);
}

/* One update of ROWS rows; key "k<n>". Returns the reply's count or -1. */
static long long update(int n, bool header_key)
{
	char body[1024], key[32];
	int pos = 0;
	snprintf(key, sizeof key, "k%d", n);
	pos += snprintf(body + pos, sizeof body - pos, "{\"y_true\":[");
	for (int i = 0; i < ROWS; i++)
		pos += snprintf(body + pos, sizeof body - pos, "%s%d", i ? "," : "", (n + i) % 2);
	pos += snprintf(body + pos, sizeof body - pos, "],\"y_score\":[");
	for (int i = 0; i < ROWS; i++)
		pos += snprintf(body + pos, sizeof body - pos, "%s%.3f", i ? "," : "",
		                (double)((n * 7 + i * 13) % 100) / 100.0);
	if (header_key)
		snprintf(body + pos, sizeof body - pos, "]}");
	else
		snprintf(body + pos, sizeof body - pos, "],\"batch_id\":\"%s\"}", key);
	api_reply out = {0};
	srv_request r =
	        request("POST", "/v1/streams/{id}/update", id, body, header_key ? key : NULL);
	srv__streams_update(&out, &r);
	long long c = -1;
	json_t *j = reply_json(&out);
	if (out.status == 200 && j)
		c = json_integer_value(json_object_get(j, "count"));
	else
		fail("update %d answered %d: %s", n, out.status, out.body ? out.body : "");
	json_decref(j);
	api_reply_free(&out);
	return c;
}

static void *writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int i = 0; i < PER; i++) {
		/* Keys overlap between neighbouring threads: thread t sends
		 * keys t*PER/2 + i, so each key is sent by two threads, racing. */
		int n = t * PER / 2 + i;
		(void)update(n, (n % 3) == 0);
	}
	return NULL;
}

static void *reader(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&done_writing, __ATOMIC_ACQUIRE)) {
		long long c, u;
		read_counts(&c, &u);
		if (c != u * ROWS)
			fail("inconsistent read: count %lld, updates %lld", c, u);
	}
	return NULL;
}

int main(void)
{
	char dir[] = "/tmp/lossd_race_store_XXXXXX";
	if (!(table = srv__streams_new())) {
		fprintf(stderr, "no memory\n");
		return 1;
	}
	if (!mkdtemp(dir))
		return 2;
	if (srv__streams_open(table, dir))
		return 2;

	api_reply out = {0};
	srv_request r = request("POST", "/v1/streams", NULL,
	                        "{\"method\":\"binned\",\"loss\":\"binary_crossentropy\"}", NULL);
	srv__streams_create(&out, &r);
	json_t *j = reply_json(&out);
	if (out.status != 201 || !j) {
		fprintf(stderr, "create answered %d\n", out.status);
		return 1;
	}
	snprintf(id, sizeof id, "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	api_reply_free(&out);

	pthread_t w[THREADS], rd;
	pthread_create(&rd, NULL, reader, NULL);
	for (int t = 0; t < THREADS; t++)
		pthread_create(&w[t], NULL, writer, (void *)(intptr_t)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(w[t], NULL);
	__atomic_store_n(&done_writing, 1, __ATOMIC_RELEASE);
	pthread_join(rd, NULL);

	/* Distinct keys: t*PER/2 + i for t < THREADS, i < PER. */
	int distinct = (THREADS - 1) * PER / 2 + PER;
	long long c, u;
	read_counts(&c, &u);
	if (u != distinct || c != (long long)distinct * ROWS)
		fail("after the race: %lld updates, %lld rows; want %d, %d", u, c, distinct,
		     distinct * ROWS);

	srv__streams_stats stats;
	srv__streams_get_stats(&stats, table);
	if (stats.streams != 1 || stats.commit_ops < (uint64_t)distinct ||
	    stats.commit_groups >= stats.commit_ops || stats.store_broken)
		fail("stats: %llu streams, %llu groups for %llu ops",
		     (unsigned long long)stats.streams, (unsigned long long)stats.commit_groups,
		     (unsigned long long)stats.commit_ops);
	else
		printf("race_store: %llu ops in %llu group commits\n",
		       (unsigned long long)stats.commit_ops,
		       (unsigned long long)stats.commit_groups);

	/* Reopen: the same state, and retries are answered, not applied. */
	srv__streams_close(table);
	if (srv__streams_open(table, dir)) {
		fail("reopen failed");
	} else {
		long long c2, u2;
		read_counts(&c2, &u2);
		if (c2 != c || u2 != u)
			fail("after reopen: %lld/%lld, before %lld/%lld", c2, u2, c, u);
		/* k5 was sent with a header key (5 % 3 != 0 sends batch_id...):
		 * either way it is a key of this stream; its first reply comes back. */
		if (update(5, false) < ROWS)
			fail("retry of k5 after reopen did not get a reply");
		read_counts(&c2, &u2);
		if (c2 != c || u2 != u)
			fail("a retry after reopen was applied: %lld rows", c2);
		(void)update(100000, false);
		read_counts(&c2, &u2);
		if (c2 != c + ROWS)
			fail("a new batch after reopen: %lld rows, want %lld", c2, c + ROWS);
		srv__streams_close(table);
	}

	/* Owners and the per-owner stream limit. */
	srv__streams_limits lim = SRV__STREAMS_LIMITS_INIT;
	lim.max_streams = 2;
	srv__streams_set_limits(table, &lim);
	if (srv__streams_open(table, dir)) {
		fail("reopen with limits failed");
	} else {
		/* bob cannot see alice's (anonymous) stream: the same 404. */
		api_reply o = {0};
		srv_request g = request("GET", "/v1/streams/{id}", id, NULL, NULL);
		g.principal = "bob";
		srv__streams_get(&o, &g);
		if (o.status != 404)
			fail("another principal got %d, not 404", o.status);
		api_reply_free(&o);
		g.route = "/v1/streams";
		g.id = NULL;
		srv__streams_list(&o, &g);
		if (o.status != 200 || !strstr(o.body, "\"streams\":[]"))
			fail("bob's list is not empty: %s", o.body ? o.body : "");
		api_reply_free(&o);
		int codes[3];
		for (int k = 0; k < 3; k++) {
			srv_request cr = request("POST", "/v1/streams", NULL, "{}", NULL);
			cr.principal = "bob";
			srv__streams_create(&o, &cr);
			codes[k] = o.status;
			if (k == 2 && (!o.body || !strstr(o.body, "too_many_streams")))
				fail("third create: %s", o.body ? o.body : "");
			api_reply_free(&o);
		}
		if (codes[0] != 201 || codes[1] != 201 || codes[2] != 507)
			fail("creates answered %d %d %d, want 201 201 507", codes[0], codes[1],
			     codes[2]);
		srv__streams_close(table);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	if (failures) {
		fprintf(stderr, "race_store: %d failures\n", failures);
		return 1;
	}
	printf("race_store: ok (%d updates, %lld rows)\n", distinct, c);
	return 0;
}
