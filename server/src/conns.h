/*
 * conns.h - open connections and the request-timeout sweeper: a client
 * that takes longer than --request-timeout to send one request (headers
 * and body, however slowly it trickles them) is cut off.
 */
#ifndef LOSSD_SERVER_CONNS_H
#define LOSSD_SERVER_CONNS_H

#include <stdbool.h>

typedef struct srv_conns srv_conns;
typedef struct srv_conn srv_conn;

/* Starts the sweeper thread, which every second shuts down the socket of
 * each connection whose clock has run over timeout_s. Returns 0 and a new
 * table in *out, or -1 (out of memory or no thread). Main thread. */
int srv__conns_start(srv_conns **out, int timeout_s);

/* Stops and joins the sweeper; the table stays usable (connections are
 * still closed and forgotten) until srv__conns_free. Accepts NULL. Main
 * thread, before MHD_stop_daemon. */
void srv__conns_stop(srv_conns *c);

/* Frees the table and any entry left. Accepts NULL. Main thread, after
 * MHD_stop_daemon (which reports every close). */
void srv__conns_free(srv_conns *c);

/* A connection on socket fd opened: its clock starts now. Returns the new
 * entry, or NULL when out of memory (the connection is then not timed).
 * Any thread. */
srv_conn *srv__conn_open(srv_conns *c, int fd);

/* The connection closes (its fd is still open): forget it. Accepts NULL.
 * Any thread. */
void srv__conn_close(srv_conns *c, srv_conn *k);

/* timed: the client owes us a request, its clock (re)starts now; !timed:
 * we owe the client (its request is with the workers), no clock. Accepts
 * NULL. Any thread. */
void srv__conn_timed(srv_conns *c, srv_conn *k, bool timed);

/* Connections cut off so far. Any thread. */
unsigned long srv__conns_cut(srv_conns *c);

#endif
