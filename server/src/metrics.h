/*
 * metrics.h - counters and histograms, rendered in Prometheus text format.
 */
#ifndef LOSSD_SERVER_METRICS_H
#define LOSSD_SERVER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"

/* Counts one finished request. route may be SRV_ROUTE_NONE. Any thread. */
void srv__metrics_request(enum srv__route route, int status, double seconds, uint64_t bytes_in,
                          uint64_t bytes_out);

/* Gauges: requests admitted to the workers and not yet answered; of
 * those, the ones waiting for a worker. Any thread. */
void srv__metrics_inflight_add(int delta);
void srv__metrics_queued_add(int delta);
int64_t srv__metrics_inflight(void);
int64_t srv__metrics_queued(void);

/* A /v1/loss answered after early.c's helper planned its loss: whether
 * the answer used that work, and its tasks run early. Any thread. */
void srv__metrics_early(bool used, int64_t ran);

/* Requests refused with 503 overloaded. Any thread. */
void srv__metrics_overloaded(void);

/* Why the server cut a connection (conns.c). */
enum srv__cut {
	SRV_CUT_REQUEST_TIMEOUT, /* one request took longer than --request-timeout */
	SRV_CUT_SLOW_BODY,       /* a body under --min-body-rate */
	SRV_CUT_EVICTED,         /* idle longest at --max-connections, to admit a new one */
	SRV_CUT_REFUSED,         /* new at --max-connections with none idle */
	SRV_CUT__COUNT
};

/* Request-body bytes held in memory (lossd_http_buffered_bytes), by the
 * body budget as it changes. Any thread. */
void srv__metrics_buffered_add(int64_t delta);

/* Counts one connection cut (lossd_http_connections_cut_total{reason}).
 * Any thread. */
void srv__metrics_conn_cut(enum srv__cut why);

/* Sets the draining gauge (1 after SIGTERM). Any thread. */
void srv__metrics_set_draining(int on);

/* Resets every counter and gauge; for tests only. */
void srv__metrics_reset(void);

/*
 * Renders every metric as Prometheus text format 0.0.4 into a new
 * malloc'd, NUL-terminated buffer (caller frees) and its length in *len.
 * Returns NULL when out of memory. Any thread; it reads the atomics one by
 * one, so a scrape is not a snapshot of one instant (as in every
 * Prometheus client). The stream figures come from ss (the server's
 * stream table; NULL: zero streams, no per-stream gauges).
 */
struct srv__streams;
char *srv__metrics_render(struct srv__streams *ss, size_t *len);

#endif
