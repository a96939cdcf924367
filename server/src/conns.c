/*
 * conns.c - a table of open connections and a sweeper thread that cuts off
 * clients too slow to send a request.
 *
 * Why: libmicrohttpd 0.9.75's connection timeout counts idle time only, so
 * a client sending one header byte a second (slowloris) is never idle and
 * never timed out, and lossd's own --request-timeout check in http.c runs
 * only once the headers are complete. This module gives every connection a
 * clock: it starts when the connection opens and again when a request is
 * done (the next one may start), and stops while a request is with the
 * workers. A sweeper thread wakes every second and shutdown()s the socket
 * of every connection whose clock is past the timeout; libmicrohttpd then
 * sees the socket fail and closes the connection as usual (completion
 * callbacks included).
 *
 * Invariants: an entry is in the list from libmicrohttpd's "started"
 * notification to its "closed" one, which comes before libmicrohttpd
 * closes the fd; the sweeper touches fds only under the lock that removal
 * takes, so it never shuts down a closed (or reused) descriptor. A socket
 * is shut down at most once.
 * Lock order: mu is a leaf (nothing else is locked while holding it).
 * It does not close sockets (only shuts them down) and does not decide
 * what a request is: http.c tells it when the clock runs.
 */
#include "conns.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

struct srv_conn {
	srv_conn *prev, *next;
	int fd;
	bool timed;
	bool shut;
	double since; /* monotonic seconds the clock started */
};

struct srv_conns {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	srv_conn head; /* circular list sentinel */
	double timeout;
	bool stop;
	bool running;
	pthread_t thread;
	atomic_ulong cut;
};

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *sweeper(void *arg)
{
	srv_conns *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct timespec until;
		double now = now_s();

		for (srv_conn *k = c->head.next; k != &c->head; k = k->next) {
			if (k->timed && !k->shut && now - k->since > c->timeout) {
				shutdown(k->fd, SHUT_RDWR);
				k->shut = true;
				atomic_fetch_add(&c->cut, 1);
			}
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&c->cv, &c->mu, &until);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

int srv__conns_start(srv_conns **out, int timeout_s)
{
	srv_conns *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -1;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->head.next = c->head.prev = &c->head;
	c->timeout = timeout_s;
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

void srv__conns_stop(srv_conns *c)
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

void srv__conns_free(srv_conns *c)
{
	if (!c)
		return;
	srv__conns_stop(c);
	while (c->head.next != &c->head) {
		srv_conn *k = c->head.next;
		k->next->prev = k->prev;
		k->prev->next = k->next;
		free(k);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

srv_conn *srv__conn_open(srv_conns *c, int fd)
{
	srv_conn *k;

	if (!c || !(k = calloc(1, sizeof(*k))))
		return NULL;
	k->fd = fd;
	k->timed = true;
	k->since = now_s();
	pthread_mutex_lock(&c->mu);
	k->next = &c->head;
	k->prev = c->head.prev;
	c->head.prev->next = k;
	c->head.prev = k;
	pthread_mutex_unlock(&c->mu);
	return k;
}

void srv__conn_close(srv_conns *c, srv_conn *k)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->next->prev = k->prev;
	k->prev->next = k->next;
	pthread_mutex_unlock(&c->mu);
	free(k);
}

void srv__conn_timed(srv_conns *c, srv_conn *k, bool timed)
{
	if (!c || !k)
		return;
	pthread_mutex_lock(&c->mu);
	k->timed = timed;
	k->since = now_s();
	pthread_mutex_unlock(&c->mu);
}

unsigned long srv__conns_cut(srv_conns *c)
{
	return c ? atomic_load(&c->cut) : 0;
}
