/*
 * conns.h - open connections and their sweeper: a client that takes longer
 * than --request-timeout to send one request (headers and body, however
 * slowly it trickles them), or sends a body under --min-body-rate, is cut
 * off; past --max-connections the longest-idle connection is cut to admit
 * a new one.
 */
#ifndef LOSSD_SERVER_CONNS_H
#define LOSSD_SERVER_CONNS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct srv__conns srv__conns;
typedef struct srv__conn srv__conn;

typedef struct srv__conns_opts {
	int request_timeout;  /* seconds, from a request's first byte to its end */
	int max_connections;  /* connections kept; past it the longest-idle goes (0: none) */
	size_t min_body_rate; /* bytes/s a body must average over each window (0: off) */
	int body_window;      /* seconds: the window (the first one is the grace) */
} srv__conns_opts;

/* Starts the sweeper thread, which every second cuts the connections past
 * their request timeout or under the body rate. Returns 0 and a new table
 * in *out, or -1 (out of memory or no thread). Main thread. */
int srv__conns_start(srv__conns **out, const srv__conns_opts *o);

/* Stops and joins the sweeper; the table stays usable (connections are
 * still closed and forgotten) until srv__conns_free. Accepts NULL. Main
 * thread, before MHD_stop_daemon. */
void srv__conns_stop(srv__conns *c);

/* Frees the table and any entry left. Accepts NULL. Main thread, after
 * MHD_stop_daemon (which reports every close). */
void srv__conns_free(srv__conns *c);

/* A connection on socket fd from client (an address for log lines, or
 * NULL) opened: its request clock starts now and it is idle. Past
 * max_connections this cuts the longest-idle connection, or this one if
 * none is idle. Returns the new entry, or NULL when out of memory (the
 * connection is then not tracked). Any thread. */
srv__conn *srv__conn_open(srv__conns *c, int fd, const char *client);

/* The connection closes (its fd is still open): forget it. Accepts NULL.
 * Any thread. */
void srv__conn_close(srv__conns *c, srv__conn *k);

/* timed: the client owes us a request, its clock (re)starts now; !timed:
 * we owe the client (its request is with the workers), no clock. Accepts
 * NULL. Any thread. */
void srv__conn_timed(srv__conns *c, srv__conn *k, bool timed);

/* busy: a request line has been read; !busy: the request is over, the
 * connection is idle (a candidate to make room) from now. Accepts NULL.
 * Any thread. */
void srv__conn_busy(srv__conns *c, srv__conn *k, bool busy);

/* reading: a request body starts, its first rate window from now;
 * !reading: it ended. Accepts NULL. Any thread. */
void srv__conn_body(srv__conns *c, srv__conn *k, bool reading);

/* n more body bytes arrived. Accepts NULL. Any thread, no lock. */
void srv__conn_body_bytes(srv__conn *k, size_t n);

/* Why the connection was cut ("request_timeout", "body_too_slow",
 * "evicted_idle", "connection_limit"), or NULL. Any thread. */
const char *srv__conn_reason(srv__conns *c, srv__conn *k);

#endif
