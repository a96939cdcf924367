/*
 * test_metrics.c - server/src/metrics.c: counting and the Prometheus text
 * rendering.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static char *render(void)
{
	size_t n = 0;
	char *s = srv__metrics_render(NULL, &n);
	cr_assert_not_null(s);
	cr_assert_eq(strlen(s), n);
	return s;
}

Test(metrics, counters_and_histogram)
{
	char *s;

	srv__metrics_reset();
	srv__metrics_request(SRV_ROUTE_LOSS, 200, 0.003, 100, 50);
	srv__metrics_request(SRV_ROUTE_LOSS, 200, 0.2, 10, 5);
	srv__metrics_request(SRV_ROUTE_LOSS, 422, 0.0001, 1, 1);
	srv__metrics_request(SRV_ROUTE_NONE, 404, 0.0001, 0, 7);
	srv__metrics_request(SRV_ROUTE_NONE, 418, 0.0001, 0, 0);
	s = render();
	cr_assert(strstr(s, "lossd_http_requests_total{route=\"/v1/"
	                    "loss\",method=\"POST\",status=\"200\"} 2\n"),
	          "%s", s);
	cr_assert(strstr(s, "lossd_http_requests_total{route=\"/v1/"
	                    "loss\",method=\"POST\",status=\"422\"} 1\n"));
	cr_assert(strstr(
	        s, "lossd_http_requests_total{route=\"none\",method=\"none\",status=\"404\"} 1\n"));
	cr_assert(strstr(
	        s,
	        "lossd_http_requests_total{route=\"none\",method=\"none\",status=\"other\"} 1\n"));
	/* Cumulative buckets: 0.0001 <= 0.0005; 0.003 <= 0.005; 0.2 <= 0.25. */
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_bucket{route=\"/v1/"
	                    "loss\",method=\"POST\",le=\"0.0005\"} 1\n"),
	          "%s", s);
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_bucket{route=\"/v1/"
	                    "loss\",method=\"POST\",le=\"0.005\"} 2\n"));
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_bucket{route=\"/v1/"
	                    "loss\",method=\"POST\",le=\"0.1\"} 2\n"));
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_bucket{route=\"/v1/"
	                    "loss\",method=\"POST\",le=\"0.25\"} 3\n"));
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_bucket{route=\"/v1/"
	                    "loss\",method=\"POST\",le=\"+Inf\"} 3\n"));
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_count{route=\"/v1/"
	                    "loss\",method=\"POST\"} 3\n"));
	cr_assert(strstr(s, "lossd_http_request_duration_seconds_sum{route=\"/v1/"
	                    "loss\",method=\"POST\"} 0.203100\n"),
	          "%s", s);
	cr_assert(strstr(s, "lossd_http_request_bytes_total 111\n"));
	cr_assert(strstr(s, "lossd_http_response_bytes_total 63\n"));
	cr_assert_null(strstr(s, "route=\"/v1/auc\""), "routes never hit are not rendered");
	cr_assert(strstr(s, "# TYPE lossd_http_request_duration_seconds histogram\n"));
	cr_assert(strstr(s, "lossd_build_info{version=\""));
	free(s);
}

Test(metrics, gauges)
{
	char *s;

	srv__metrics_reset();
	srv__metrics_inflight_add(3);
	srv__metrics_queued_add(2);
	srv__metrics_inflight_add(-1);
	srv__metrics_overloaded();
	srv__metrics_set_draining(1);
	s = render();
	cr_assert(strstr(s, "lossd_http_in_flight_requests 2\n"), "%s", s);
	cr_assert(strstr(s, "lossd_http_queue_depth 2\n"));
	cr_assert(strstr(s, "lossd_http_overloaded_total 1\n"));
	cr_assert(strstr(s, "lossd_draining 1\n"));
	free(s);
}

/* Every line is a comment or `name{labels} value`: a well-formed scrape. */
Test(metrics, text_format_is_well_formed)
{
	char *s, *line, *save = NULL;

	srv__metrics_reset();
	srv__metrics_request(SRV_ROUTE_AUC, 200, 1.5, 1, 1);
	s = render();
	cr_assert_eq(s[strlen(s) - 1], '\n');
	for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		/* lossd's families, and the standard process_* ones (procstats.c) */
		if (line[0] == '#') {
			cr_assert(!strncmp(line, "# HELP lossd_", 13) ||
			                  !strncmp(line, "# TYPE lossd_", 13) ||
			                  !strncmp(line, "# HELP process_", 15) ||
			                  !strncmp(line, "# TYPE process_", 15),
			          "%s", line);
			continue;
		}
		cr_assert(!strncmp(line, "lossd_", 6) || !strncmp(line, "process_", 8), "%s", line);
		char *sp = strrchr(line, ' ');
		cr_assert_not_null(sp, "%s", line);
		char *end;
		strtod(sp + 1, &end);
		cr_assert_eq(*end, '\0', "value of %s", line);
	}
	free(s);
}

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < 10000; i++)
		srv__metrics_request(SRV_ROUTE_HEALTHZ, 200, 0.0001, 1, 2);
	return NULL;
}

Test(metrics, concurrent_counting_loses_nothing)
{
	pthread_t t[4];
	char *s;

	srv__metrics_reset();
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, hammer, NULL);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	s = render();
	cr_assert(strstr(s, "lossd_http_requests_total{route=\"/"
	                    "healthz\",method=\"GET\",status=\"200\"} 40000\n"),
	          "%s", s);
	cr_assert(strstr(s, "lossd_http_request_bytes_total 40000\n"));
	cr_assert(strstr(s, "lossd_http_response_bytes_total 80000\n"));
	free(s);
}
