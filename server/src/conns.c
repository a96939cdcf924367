/*
 * conns.c - a table of open connections and a sweeper thread: slow clients
 * are cut off, and at the connection limit the longest-idle connection
 * makes room for a new one.
 *
 * Why: libmicrohttpd 0.9.75's connection timeout counts idle time only, so
 * a client sending one header byte a second (slowloris) is never idle and
 * never timed out, and lossd's own --request-timeout check in http.c runs
 * only once the headers are complete. Its connection limit refuses new
 * clients while idle sockets hold every slot, for the whole idle timeout.
 * This module gives every connection:
 *
 * - a request clock: it starts when the connection opens and again when a
 *   request is done (the next one may start), and stops while a request
 *   is with the workers. Past --request-timeout the socket is cut.
 * - a body meter: while a request body is being read, the bytes that
 *   arrived in each window of --min-body-rate-window seconds (the first
 *   starting with the body) must average --min-body-rate bytes/s, or the
 *   socket is cut (a log line at warn, lossd_http_connections_cut_total
 *   {reason="slow_body"}). A client that sends a burst and then stalls
 *   holds its bytes one window at most.
 * - an idle mark: a connection is idle from its opening, and from the end
 *   of each request, until libmicrohttpd has read the next request line.
 *   When a connection opens past --max-connections, the connection idle
 *   the longest is cut to admit it, as nginx and HAProxy reuse keep-alive
 *   connections; with none idle, the new one is cut (refused).
 *   libmicrohttpd's own limit is set a little higher (http.c) so that it
 *   never refuses before this table can choose.
 *
 * "Cut" is shutdown(SHUT_RDWR): libmicrohttpd then sees the socket fail
 * and closes the connection as usual (completion callbacks included); the
 * request's log line says why (srv__conn_reason).
 *
 * Invariants: an entry is in the list from libmicrohttpd's "started"
 * notification to its "closed" one, which comes before libmicrohttpd
 * closes the fd; fds are shut down only under the lock that removal takes,
 * so never a closed (or reused) descriptor. A socket is cut at most once;
 * `live` counts the entries not cut.
 * Lock order: mu, then the log's lock (warn lines are written under mu);
 * nothing else is locked while holding mu.
 * It does not close sockets (only shuts them down) and does not decide
 * what a request is: http.c tells it when the clocks run.
 */
#include "conns.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "thread.h"

struct srv__conn {
	srv__conn *prev, *next;
	int fd;
	bool timed;                /* the request clock runs */
	bool shut;                 /* cut (once) */
	bool busy;                 /* a request between its request line and its end */
	const char *reason;        /* why it was cut, static, or NULL */
	double since;              /* monotonic seconds the request clock started */
	double idle_since;         /* when it last became idle */
	double window;             /* > 0: reading a body, this window's start */
	uint64_t window_bytes;     /* body bytes at the window's start */
	atomic_uint_fast64_t body; /* body bytes of the current request */
	char client[48];
};

struct srv__conns {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	srv__conn head; /* circular list sentinel */
	srv__conns_opts o;
	int live; /* entries not cut */
	bool stop;
	bool running;
	pthread_t thread;
};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Cuts k. Caller holds c->mu. */
static void cut(srv__conns *c, srv__conn *k, enum srv__cut why, const char *reason)
{
	if (k->shut)
		return;
	shutdown(k->fd, SHUT_RDWR);
	k->shut = true;
	k->reason = reason;
	c->live--;
	srv__metrics_conn_cut(why);
}

/* A body under --min-body-rate over its current window? Caller holds mu. */
static void check_body(srv__conns *c, srv__conn *k, double now)
{
	double span = now - k->window;
	uint64_t got;

	if (k->window <= 0 || c->o.min_body_rate == 0 || span < c->o.body_window)
		return;
	got = atomic_load(&k->body) - k->window_bytes;
	if ((double)got >= (double)c->o.min_body_rate * span) {
		k->window = now; /* a new window */
		k->window_bytes += got;
		return;
	}
	srv_log(SRV_LOG_WARN, NULL,
	        "slow request body cut off: %llu bytes in the last %.1f s from %s, under "
	        "--min-body-rate %zu bytes/s",
	        (unsigned long long)got, span, k->client[0] ? k->client : "?", c->o.min_body_rate);
	cut(c, k, SRV_CUT_SLOW_BODY, "body_too_slow");
}

static void *sweeper(void *arg)
{
	srv__conns *c = arg;
	srv__thread_name("lossd-sweep");

	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct timespec until;
		double now = now_s();

		for (srv__conn *k = c->head.next; k != &c->head; k = k->next) {
			if (k->shut)
				continue;
			if (k->timed && now - k->since > c->o.request_timeout)
				cut(c, k, SRV_CUT_REQUEST_TIMEOUT, "request_timeout");
			else
				check_body(c, k, now);
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&c->cv, &c->mu, &until);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int srv__conns_start(srv__conns **out, const srv__conns_opts *o)
{
	srv__conns *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->head.next = c->head.prev = &c->head;
	c->o = *o;
	if (pthread_create(&c->thread, NULL, sweeper, c) != 0) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return -1;
	}
	c->running = true;
	*out = c;
	return 0;
}

void srv__conns_stop(srv__conns *c)
{
	if (!c || !c->running)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	c->running = false;
}

void srv__conns_free(srv__conns *c)
{
	if (!c)
		return;
	srv__conns_stop(c);
	while (c->head.next != &c->head) {
		srv__conn *k = c->head.next;
		k->next->prev = k->prev;
		k->prev->next = k->next;
		free(k);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

srv__conn *srv__conn_open(srv__conns *c, int fd, const char *client)
{
	srv__conn *k, *oldest = NULL;

	if (!c || !(k = calloc(1, sizeof(*k))))
		return NULL;
	k->fd = fd;
	k->timed = true;
	k->since = k->idle_since = now_s();
	snprintf(k->client, sizeof(k->client), "%s", client ? client : "");
	pthread_mutex_lock(&c->mu);
	k->next = &c->head;
	k->prev = c->head.prev;
	c->head.prev->next = k;
	c->head.prev = k;
	c->live++;
	if (c->o.max_connections > 0 && c->live > c->o.max_connections) {
		for (srv__conn *e = c->head.next; e != &c->head; e = e->next)
			if (e != k && !e->shut && !e->busy &&
			    (!oldest || e->idle_since < oldest->idle_since))
				oldest = e;
		if (oldest)
			cut(c, oldest, SRV_CUT_EVICTED, "evicted_idle");
		else
			cut(c, k, SRV_CUT_REFUSED, "connection_limit");
	}
	pthread_mutex_unlock(&c->mu);
	return k;
}

void srv__conn_close(srv__conns *c, srv__conn *k)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->next->prev = k->prev;
	k->prev->next = k->next;
	if (!k->shut)
		c->live--;
	pthread_mutex_unlock(&c->mu);
	free(k);
}

void srv__conn_timed(srv__conns *c, srv__conn *k, bool timed)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->timed = timed;
	k->since = now_s();
	pthread_mutex_unlock(&c->mu);
}

void srv__conn_busy(srv__conns *c, srv__conn *k, bool busy)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->busy = busy;
	if (!busy) {
		k->idle_since = now_s();
		k->window = 0;
	}
	pthread_mutex_unlock(&c->mu);
}

void srv__conn_body(srv__conns *c, srv__conn *k, bool reading)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->window = reading ? now_s() : 0;
	k->window_bytes = atomic_load(&k->body);
	pthread_mutex_unlock(&c->mu);
}

void srv__conn_body_bytes(srv__conn *k, size_t n)
{
	if (k)
		atomic_fetch_add_explicit(&k->body, n, memory_order_relaxed);
}

const char *srv__conn_reason(srv__conns *c, srv__conn *k)
{
	const char *r;

	if (!c || !k)
		return NULL;
	pthread_mutex_lock(&c->mu);
	r = k->reason;
	pthread_mutex_unlock(&c->mu);
	return r;
}
