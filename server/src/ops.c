/*
 * ops.c - the direct routes: /healthz, /livez, /readyz, /metrics,
 * /openapi.yaml, /v1/version, and the dashboard's files (ui.c).
 *
 * Answered on the libmicrohttpd thread that read the request, so they keep
 * answering while every worker is busy. Each is cheap and bounded: a
 * constant, a copy of the embedded spec or a metrics rendering, and none
 * touches the disk. /livez is 200 while the process runs; /readyz is 503
 * while draining or while the stream store cannot commit (broken or
 * stalled, srv__streams_ready), so an orchestrator stops sending work.
 */
#include "server.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "streams.h"
#include "ui.h"

#ifndef LOSSD_VERSION
#define LOSSD_VERSION "0.0.0"
#endif

extern const char srv_openapi_yaml[];
extern const size_t srv_openapi_yaml_len;

static void text(api_reply *out, int status, const char *ctype, const char *s, size_t n)
{
	out->status = status;
	out->content_type = ctype;
	out->body = malloc(n + 1);
	out->len = 0;
	if (out->body) {
		memcpy(out->body, s, n);
		out->body[n] = '\0';
		out->len = n;
	}
}

static void version(api_reply *out, const srv__server *s)
{
	json_t *b = json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:i, s:i}}", "version",
	                      LOSSD_VERSION, "build", "compiler",
#ifdef __VERSION__
	                      "gcc-compatible " __VERSION__,
#else
	                      "unknown",
#endif
	                      "microhttpd", MHD_get_version(), "libuv", uv_version_string(),
	                      "jansson", JANSSON_VERSION, "c_standard", "C11", "threads",
	                      s->cfg.threads, "par_threads", s->cfg.par_threads);
	api_reply_json(out, 200, b);
}

void srv__ops(api_reply *out, const srv__server *s, enum srv__route route)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	char *m;
	size_t n;

	switch (route) {
	case SRV_ROUTE_HEALTHZ:
	case SRV_ROUTE_LIVEZ: text(out, 200, API_JSON, ok, sizeof(ok) - 1); return;
	case SRV_ROUTE_READYZ:
		if (atomic_load(&((srv__server *)s)->draining)) {
			api_reply_error(out, 503, "draining", "shutting down; not taking new work");
			out->retry_after = 1;
			return;
		}
		/* A store that cannot commit (broken or stalled) is not ready:
		 * writes would 503. */
		if (!srv__streams_ready(out, s->streams))
			return;
		text(out, 200, API_JSON, ok, sizeof(ok) - 1);
		return;
	case SRV_ROUTE_METRICS:
		m = srv__metrics_render(s->streams, &n);
		if (!m) {
			api_reply_error(out, 503, "out_of_memory", "no memory to render metrics");
			return;
		}
		out->status = 200;
		out->content_type = "text/plain; version=0.0.4; charset=utf-8";
		out->body = m;
		out->len = n;
		return;
	case SRV_ROUTE_OPENAPI:
		text(out, 200, "application/yaml", srv_openapi_yaml, srv_openapi_yaml_len);
		return;
	case SRV_ROUTE_VERSION: version(out, s); return;
	default: break;
	}
	if (srv__ui_route(route)) {
		srv__ui_reply(out, route);
		return;
	}
	api_reply_error(out, 500, "internal_error", "route %d is not a direct route", (int)route);
}
