/*
 * metrics.c - counters, gauges and latency histograms for /metrics.
 *
 * Every number is a relaxed atomic in a fixed array indexed by route and
 * status, so counting a request costs a few uncontended atomic adds and
 * takes no lock; rendering reads the same atomics. Statuses the service
 * can send are listed in `statuses`; any other lands in the last slot,
 * labelled "other". Durations are summed in microseconds (integers keep
 * the sum exact and atomic).
 *
 * Exposed names (all prefixed lossd_): http_requests_total{route,status},
 * http_request_duration_seconds{route} (histogram), http_in_flight_requests,
 * http_queue_depth, http_request_bytes_total, http_response_bytes_total,
 * http_overloaded_total, http_buffered_bytes,
 * http_connections_cut_total{reason}, loss_early_total{outcome},
 * loss_early_tasks_total, draining,
 * build_info{version,...}; and the stream
 * store's streams, store_commit_groups_total (commits: one fsync each),
 * store_commit_ops_total (their ratio is the group-commit batching factor),
 * stream_updates_committed_total, store_broken, store_stalled,
 * store_running_seconds, store_failures_total,
 * store_recoveries_total, streams_resyncing, store_commit_seconds (a
 * histogram of transaction durations: a stalling disk shows here first),
 * store_commit_delays_total and store_commit_delay_seconds_total (leaders
 * that waited for a fuller group), store_wal_checkpoints_total{by},
 * store_wal_checkpoint_failures_total, store_wal_checkpoint_seconds_total,
 * store_wal_pages, and streams_damaged (quarantined at start-up).
 *
 * It keeps process-wide state (one daemon per process).
 */
#include "metrics.h"
#include "lossd/dynbuf.h"
#include "procstats.h"
#include "streams.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#ifndef LOSSD_VERSION
#define LOSSD_VERSION "0.0.0"
#endif

static const int statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 409,
                               413, 415, 422, 429, 500, 501, 503, 507, 0};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,   0.5,   1,      2.5,   5,    10,    30};
#define NBUCKET (sizeof(buckets) / sizeof(buckets[0]))

static atomic_uint_fast64_t requests[SRV_ROUTE_COUNT][NSTATUS];
static atomic_uint_fast64_t hist[SRV_ROUTE_COUNT][NBUCKET + 1]; /* last: +Inf */
static atomic_uint_fast64_t hist_sum_us[SRV_ROUTE_COUNT];
static atomic_uint_fast64_t bytes_in_total, bytes_out_total, overloaded_total;
static atomic_uint_fast64_t early_used_total, early_unused_total, early_tasks_total;
static atomic_uint_fast64_t cut_total[SRV_CUT__COUNT];
static const char *const cut_names[SRV_CUT__COUNT] = {"request_timeout", "slow_body",
                                                      "evicted_idle", "refused"};
static atomic_int_fast64_t inflight, queued, buffered;
static atomic_int draining;

static size_t status_slot(int status)
{
	for (size_t i = 0; i + 1 < NSTATUS; i++)
		if (statuses[i] == status)
			return i;
	return NSTATUS - 1;
}

void srv__metrics_request(enum srv__route route, int status, double seconds, uint64_t bytes_in,
                          uint64_t bytes_out)
{
	size_t b = 0;

	if ((int)route < 0 || route >= SRV_ROUTE_COUNT)
		route = SRV_ROUTE_NONE;
	if (seconds < 0)
		seconds = 0;
	atomic_fetch_add_explicit(&requests[route][status_slot(status)], 1, memory_order_relaxed);
	while (b < NBUCKET && seconds > buckets[b])
		b++;
	atomic_fetch_add_explicit(&hist[route][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&hist_sum_us[route], (uint64_t)(seconds * 1e6 + 0.5),
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&bytes_in_total, bytes_in, memory_order_relaxed);
	atomic_fetch_add_explicit(&bytes_out_total, bytes_out, memory_order_relaxed);
}

void srv__metrics_inflight_add(int delta)
{
	atomic_fetch_add_explicit(&inflight, delta, memory_order_relaxed);
}

void srv__metrics_queued_add(int delta)
{
	atomic_fetch_add_explicit(&queued, delta, memory_order_relaxed);
}

int64_t srv__metrics_inflight(void)
{
	return (int64_t)atomic_load_explicit(&inflight, memory_order_relaxed);
}

int64_t srv__metrics_queued(void)
{
	return (int64_t)atomic_load_explicit(&queued, memory_order_relaxed);
}

void srv__metrics_early(bool used, int64_t ran)
{
	atomic_fetch_add_explicit(used ? &early_used_total : &early_unused_total, 1,
	                          memory_order_relaxed);
	atomic_fetch_add_explicit(&early_tasks_total, (uint_fast64_t)ran, memory_order_relaxed);
}

void srv__metrics_overloaded(void)
{
	atomic_fetch_add_explicit(&overloaded_total, 1, memory_order_relaxed);
}

void srv__metrics_buffered_add(int64_t delta)
{
	atomic_fetch_add_explicit(&buffered, delta, memory_order_relaxed);
}

void srv__metrics_conn_cut(enum srv__cut why)
{
	if ((int)why >= 0 && why < SRV_CUT__COUNT)
		atomic_fetch_add_explicit(&cut_total[why], 1, memory_order_relaxed);
}

void srv__metrics_set_draining(int on)
{
	atomic_store(&draining, on ? 1 : 0);
}

void srv__metrics_reset(void)
{
	for (size_t r = 0; r < SRV_ROUTE_COUNT; r++) {
		for (size_t s = 0; s < NSTATUS; s++)
			atomic_store(&requests[r][s], 0);
		for (size_t b = 0; b <= NBUCKET; b++)
			atomic_store(&hist[r][b], 0);
		atomic_store(&hist_sum_us[r], 0);
	}
	atomic_store(&bytes_in_total, 0);
	atomic_store(&bytes_out_total, 0);
	atomic_store(&overloaded_total, 0);
	atomic_store(&early_used_total, 0);
	atomic_store(&early_unused_total, 0);
	atomic_store(&early_tasks_total, 0);
	for (size_t i = 0; i < SRV_CUT__COUNT; i++)
		atomic_store(&cut_total[i], 0);
	atomic_store(&inflight, 0);
	atomic_store(&queued, 0);
	atomic_store(&buffered, 0);
	atomic_store(&draining, 0);
}

/* ---- rendering -------------------------------------------------------------- */

/* The exposition is a few hundred lines plus, with --metrics-streams, a
 * few per stream: 256 MiB is far above it and still a bound. */
#define METRICS_TEXT_MAX ((size_t)256 << 20)

static void bprintf(api_dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void bprintf(api_dynbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	(void)api_dynbuf_vprintf(b, fmt, ap);
	va_end(ap);
}

static uint64_t ld(atomic_uint_fast64_t *a)
{
	return (uint64_t)atomic_load_explicit(a, memory_order_relaxed);
}

char *srv__metrics_render(srv__streams *ss, size_t *len)
{
	api_dynbuf b;

	api_dynbuf_init(&b, METRICS_TEXT_MAX);

	bprintf(&b, "# HELP lossd_http_requests_total Requests answered, by route, method and "
	            "status.\n"
	            "# TYPE lossd_http_requests_total counter\n");
	for (size_t r = 0; r < SRV_ROUTE_COUNT; r++) {
		for (size_t s = 0; s < NSTATUS; s++) {
			uint64_t n = ld(&requests[r][s]);
			char st[16];
			if (!n)
				continue;
			if (statuses[s])
				snprintf(st, sizeof(st), "%d", statuses[s]);
			else
				strcpy(st, "other");
			bprintf(&b,
			        "lossd_http_requests_total{route=\"%s\",method=\"%s\",status=\"%"
			        "s\"} "
			        "%llu\n",
			        srv__route_name((enum srv__route)r),
			        srv__route_method((enum srv__route)r), st, (unsigned long long)n);
		}
	}

	bprintf(&b, "# HELP lossd_http_request_duration_seconds Time from the request line "
	            "to the last byte of the reply, by route.\n"
	            "# TYPE lossd_http_request_duration_seconds histogram\n");
	for (size_t r = 0; r < SRV_ROUTE_COUNT; r++) {
		uint64_t cum = 0, total = 0;
		char name[256]; /* the route's labels: route="...",method="..." */
		snprintf(name, sizeof name, "route=\"%s\",method=\"%s\"",
		         srv__route_name((enum srv__route)r),
		         srv__route_method((enum srv__route)r));
		for (size_t i = 0; i <= NBUCKET; i++)
			total += ld(&hist[r][i]);
		if (!total)
			continue;
		for (size_t i = 0; i < NBUCKET; i++) {
			cum += ld(&hist[r][i]);
			bprintf(&b,
			        "lossd_http_request_duration_seconds_bucket{%s,le=\"%g\"}"
			        " "
			        "%llu\n",
			        name, buckets[i], (unsigned long long)cum);
		}
		cum += ld(&hist[r][NBUCKET]);
		bprintf(&b,
		        "lossd_http_request_duration_seconds_bucket{%s,le=\"+Inf\"} "
		        "%llu\n"
		        "lossd_http_request_duration_seconds_sum{%s} %.6f\n"
		        "lossd_http_request_duration_seconds_count{%s} %llu\n",
		        name, (unsigned long long)cum, name, (double)ld(&hist_sum_us[r]) / 1e6,
		        name, (unsigned long long)cum);
	}

	bprintf(&b,
	        "# HELP lossd_http_in_flight_requests Requests handed to the workers and not yet "
	        "answered.\n"
	        "# TYPE lossd_http_in_flight_requests gauge\n"
	        "lossd_http_in_flight_requests %lld\n"
	        "# HELP lossd_http_queue_depth Of those, requests waiting for a worker thread.\n"
	        "# TYPE lossd_http_queue_depth gauge\n"
	        "lossd_http_queue_depth %lld\n"
	        "# HELP lossd_http_request_bytes_total Request body bytes received.\n"
	        "# TYPE lossd_http_request_bytes_total counter\n"
	        "lossd_http_request_bytes_total %llu\n"
	        "# HELP lossd_http_response_bytes_total Response body bytes sent.\n"
	        "# TYPE lossd_http_response_bytes_total counter\n"
	        "lossd_http_response_bytes_total %llu\n"
	        "# HELP lossd_http_overloaded_total Requests refused with 503 overloaded.\n"
	        "# TYPE lossd_http_overloaded_total counter\n"
	        "lossd_http_overloaded_total %llu\n"
	        "# HELP lossd_loss_early_total Large /v1/loss bodies whose loss a helper "
	        "planned as they arrived, by whether the answer used that work.\n"
	        "# TYPE lossd_loss_early_total counter\n"
	        "lossd_loss_early_total{outcome=\"used\"} %llu\n"
	        "lossd_loss_early_total{outcome=\"unused\"} %llu\n"
	        "# HELP lossd_loss_early_tasks_total Loss tasks those used ran before their "
	        "body ended.\n"
	        "# TYPE lossd_loss_early_tasks_total counter\n"
	        "lossd_loss_early_tasks_total %llu\n"
	        "# HELP lossd_draining 1 after SIGTERM, while open requests finish.\n"
	        "# TYPE lossd_draining gauge\n"
	        "lossd_draining %d\n",
	        (long long)srv__metrics_inflight(), (long long)srv__metrics_queued(),
	        (unsigned long long)ld(&bytes_in_total), (unsigned long long)ld(&bytes_out_total),
	        (unsigned long long)ld(&overloaded_total),
	        (unsigned long long)ld(&early_used_total),
	        (unsigned long long)ld(&early_unused_total),
	        (unsigned long long)ld(&early_tasks_total), atomic_load(&draining));

	bprintf(&b,
	        "# HELP lossd_http_buffered_bytes Request-body bytes held in memory (taken "
	        "from --max-buffered as they arrive).\n"
	        "# TYPE lossd_http_buffered_bytes gauge\n"
	        "lossd_http_buffered_bytes %lld\n",
	        (long long)atomic_load(&buffered));
	bprintf(&b, "# HELP lossd_http_connections_cut_total Connections the server cut: "
	            "request_timeout, slow_body (under --min-body-rate), evicted_idle (idle "
	            "longest at --max-connections), refused (at --max-connections, none idle).\n"
	            "# TYPE lossd_http_connections_cut_total counter\n");
	for (size_t i = 0; i < SRV_CUT__COUNT; i++)
		bprintf(&b, "lossd_http_connections_cut_total{reason=\"%s\"} %llu\n", cut_names[i],
		        (unsigned long long)ld(&cut_total[i]));

	bprintf(&b,
	        "# HELP lossd_build_info Build and library versions.\n"
	        "# TYPE lossd_build_info gauge\n"
	        "lossd_build_info{version=\"%s\",microhttpd=\"%s\",libuv=\"%s\",jansson=\"%s\"} "
	        "1\n",
	        LOSSD_VERSION, MHD_get_version(), uv_version_string(), JANSSON_VERSION);

	srv__streams_stats st;
	srv__streams_get_stats(&st, ss);
	bprintf(&b,
	        "# HELP lossd_streams Streams loaded (all tokens).\n"
	        "# TYPE lossd_streams gauge\n"
	        "lossd_streams %llu\n"
	        "# HELP lossd_store_commit_groups_total Store transactions committed (one fsync "
	        "each).\n"
	        "# TYPE lossd_store_commit_groups_total counter\n"
	        "lossd_store_commit_groups_total %llu\n"
	        "# HELP lossd_store_commit_ops_total Stream writes committed in those "
	        "transactions.\n"
	        "# TYPE lossd_store_commit_ops_total counter\n"
	        "lossd_store_commit_ops_total %llu\n"
	        "# HELP lossd_stream_updates_committed_total Stream updates and merges applied "
	        "and committed (their 2xx sent after the commit).\n"
	        "# TYPE lossd_stream_updates_committed_total counter\n"
	        "lossd_stream_updates_committed_total %llu\n"
	        "# HELP lossd_store_broken 1 from a failed commit until a retry commits: writes "
	        "refused, /readyz 503.\n"
	        "# TYPE lossd_store_broken gauge\n"
	        "lossd_store_broken %d\n"
	        "# HELP lossd_store_stalled 1 while a commit has run longer than "
	        "--store-stall-s: writes refused, /readyz 503.\n"
	        "# TYPE lossd_store_stalled gauge\n"
	        "lossd_store_stalled %d\n"
	        "# HELP lossd_store_running_seconds Age of the store's disk operation in progress "
	        "(a commit or a read; 0: none).\n"
	        "# TYPE lossd_store_running_seconds gauge\n"
	        "lossd_store_running_seconds %.6f\n"
	        "# HELP lossd_store_failures_total Store transactions that failed (disk full, I/O "
	        "error).\n"
	        "# TYPE lossd_store_failures_total counter\n"
	        "lossd_store_failures_total %llu\n"
	        "# HELP lossd_store_recoveries_total Times the store committed again after "
	        "failing.\n"
	        "# TYPE lossd_store_recoveries_total counter\n"
	        "lossd_store_recoveries_total %llu\n"
	        "# HELP lossd_streams_resyncing Streams answering 503 until reloaded from disk "
	        "after a failed write.\n"
	        "# TYPE lossd_streams_resyncing gauge\n"
	        "lossd_streams_resyncing %llu\n"
	        "# HELP lossd_streams_damaged Streams whose stored state could not be read at "
	        "start-up (quarantined: 503 stream_damaged).\n"
	        "# TYPE lossd_streams_damaged gauge\n"
	        "lossd_streams_damaged %llu\n",
	        (unsigned long long)st.streams, (unsigned long long)st.commit_groups,
	        (unsigned long long)st.commit_ops, (unsigned long long)st.updates_committed,
	        st.store_broken ? 1 : 0, st.store_stalled ? 1 : 0, st.commit_running_s,
	        (unsigned long long)st.store_failures, (unsigned long long)st.store_recoveries,
	        (unsigned long long)st.resyncing, (unsigned long long)st.damaged);
	bprintf(&b, "# HELP lossd_store_commit_seconds Duration of store transactions (group "
	            "commits and recovery probes).\n"
	            "# TYPE lossd_store_commit_seconds histogram\n");
	uint64_t cum = 0;
	for (size_t i = 0; i < SRV__STORE_LAT_BUCKETS; i++) {
		cum += st.commit_lat[i];
		bprintf(&b, "lossd_store_commit_seconds_bucket{le=\"%g\"} %llu\n",
		        srv__store_lat_bounds[i], (unsigned long long)cum);
	}
	cum += st.commit_lat[SRV__STORE_LAT_BUCKETS];
	bprintf(&b,
	        "lossd_store_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
	        "lossd_store_commit_seconds_sum %.6f\n"
	        "lossd_store_commit_seconds_count %llu\n",
	        (unsigned long long)cum, st.commit_lat_sum, (unsigned long long)cum);
	bprintf(&b,
	        "# HELP lossd_store_commit_delays_total Store transactions whose leader waited "
	        "for a fuller group (--commit-delay-us).\n"
	        "# TYPE lossd_store_commit_delays_total counter\n"
	        "lossd_store_commit_delays_total %llu\n"
	        "# HELP lossd_store_commit_delay_seconds_total Time those leaders waited.\n"
	        "# TYPE lossd_store_commit_delay_seconds_total counter\n"
	        "lossd_store_commit_delay_seconds_total %.6f\n"
	        "# HELP lossd_store_wal_checkpoints_total WAL checkpoints (copies into the "
	        "database file), by the store's checkpointer thread or by a committing thread "
	        "when the WAL had grown past its bound.\n"
	        "# TYPE lossd_store_wal_checkpoints_total counter\n"
	        "lossd_store_wal_checkpoints_total{by=\"checkpointer\"} %llu\n"
	        "lossd_store_wal_checkpoints_total{by=\"commit\"} %llu\n"
	        "# HELP lossd_store_wal_checkpoint_failures_total WAL checkpoints that failed "
	        "(retried as the log grows; nothing is lost).\n"
	        "# TYPE lossd_store_wal_checkpoint_failures_total counter\n"
	        "lossd_store_wal_checkpoint_failures_total %llu\n"
	        "# HELP lossd_store_wal_checkpoint_seconds_total Time spent in WAL checkpoints.\n"
	        "# TYPE lossd_store_wal_checkpoint_seconds_total counter\n"
	        "lossd_store_wal_checkpoint_seconds_total %.6f\n"
	        "# HELP lossd_store_wal_pages Pages in the write-ahead log after the last "
	        "commit.\n"
	        "# TYPE lossd_store_wal_pages gauge\n"
	        "lossd_store_wal_pages %lld\n",
	        (unsigned long long)st.commit_delays, st.commit_delay_sum,
	        (unsigned long long)st.wal_ckpts, (unsigned long long)st.wal_ckpts_inline,
	        (unsigned long long)st.wal_ckpt_failures, st.wal_ckpt_sum, (long long)st.wal_pages);
	bprintf(&b,
	        "# HELP lossd_streams_expired_total Streams deleted for going ttl_s seconds "
	        "without an update or checkpoint.\n"
	        "# TYPE lossd_streams_expired_total counter\n"
	        "lossd_streams_expired_total %llu\n",
	        (unsigned long long)st.expired);

	char proc[2048];
	srv__process_metrics(proc, sizeof proc);
	bprintf(&b, "%s", proc);
	char *gauges = srv__streams_gauges(ss); /* opt-in: --metrics-streams */
	if (gauges)
		bprintf(&b, "%s", gauges);
	free(gauges);

	if (api_dynbuf_error(&b)) {
		api_dynbuf_free(&b);
		return NULL;
	}
	return api_dynbuf_take(&b, len);
}
