/*
 * router.c - the routing table.
 *
 * A fixed table of (method, pattern) pairs, matched segment by segment on
 * the raw path as it came off the wire. libmicrohttpd 0.9.75 would
 * otherwise unescape the path before the application sees it, turning
 * "%2F" into a path separator and "%00" into an early end; http.c disables
 * that, and this file never unescapes, so a stream id is checked on the
 * exact bytes the client sent.
 *
 * Matching: a path first selects the patterns it fits regardless of
 * method. If none fits, 404; if some fit but not for this method, 405 with
 * the union of their methods in Allow. A pattern with {id} fits any
 * single segment there, and the id's syntax is checked only after the
 * method, so `GET /v1/streams/a%2Fb` is a 400 invalid_stream_id but
 * `PUT /v1/streams/a%2Fb` is a 405.
 *
 * It keeps no state and allocates nothing.
 */
#include "router.h"

#include <string.h>

static const srv__route_info table[] = {
        {SRV_ROUTE_HEALTHZ, "GET", "/healthz", SRV_DIRECT, false, false},
        {SRV_ROUTE_LIVEZ, "GET", "/livez", SRV_DIRECT, false, false},
        {SRV_ROUTE_READYZ, "GET", "/readyz", SRV_DIRECT, false, false},
        {SRV_ROUTE_METRICS, "GET", "/metrics", SRV_DIRECT, false, false},
        {SRV_ROUTE_OPENAPI, "GET", "/openapi.yaml", SRV_DIRECT, false, false},
        {SRV_ROUTE_VERSION, "GET", "/v1/version", SRV_DIRECT, false, false},
        {SRV_ROUTE_LOSS, "POST", "/v1/loss", SRV_WORKER, true, false},
        {SRV_ROUTE_AUC, "POST", "/v1/auc", SRV_WORKER, true, false},
        {SRV_ROUTE_STREAMS_CREATE, "POST", "/v1/streams", SRV_STORE, true, true},
        {SRV_ROUTE_STREAMS_LIST, "GET", "/v1/streams", SRV_WORKER, false, false},
        {SRV_ROUTE_STREAMS_GET, "GET", "/v1/streams/{id}", SRV_WORKER, false, false},
        {SRV_ROUTE_STREAMS_DELETE, "DELETE", "/v1/streams/{id}", SRV_STORE, false, true},
        {SRV_ROUTE_STREAMS_PATCH, "PATCH", "/v1/streams/{id}", SRV_STORE, true, true},
        {SRV_ROUTE_STREAMS_UPDATE, "POST", "/v1/streams/{id}/update", SRV_STORE, true, true},
        {SRV_ROUTE_STREAMS_RESET, "POST", "/v1/streams/{id}/reset", SRV_STORE, true, true},
        {SRV_ROUTE_STREAMS_STATE, "GET", "/v1/streams/{id}/state", SRV_WORKER, false, false},
        {SRV_ROUTE_STREAMS_MERGE, "POST", "/v1/streams/{id}/merge", SRV_STORE, true, true},
        {SRV_ROUTE_STREAMS_CHECKPOINT, "POST", "/v1/streams/{id}/checkpoint", SRV_STORE, true,
         true},
        {SRV_ROUTE_STREAMS_HISTORY, "GET", "/v1/streams/{id}/history", SRV_WORKER, false, false},
        {SRV_ROUTE_TEST_SLEEP, "POST", "/v1/_sleep", SRV_WORKER, true, false},
        {SRV_ROUTE_TEST_STORE_FAIL, "POST", "/v1/_store_fail", SRV_WORKER, true, false},
        {SRV_ROUTE_UI_INDEX, "GET", "/", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_DOCS, "GET", "/docs", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_APP_JS, "GET", "/ui/app.js", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_STYLE_CSS, "GET", "/ui/style.css", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_DOCS_CSS, "GET", "/ui/docs.css", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_FAVICON, "GET", "/ui/favicon.svg", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_UPLOT_JS, "GET", "/ui/uPlot.iife.min.js", SRV_DIRECT, false, false},
        {SRV_ROUTE_UI_UPLOT_CSS, "GET", "/ui/uPlot.min.css", SRV_DIRECT, false, false},
};
#define NROUTES (sizeof(table) / sizeof(table[0]))

const char *srv__route_name(enum srv__route r)
{
	if (r == SRV_ROUTE_NONE || (int)r < 0 || r >= SRV_ROUTE_COUNT)
		return "none";
	for (size_t i = 0; i < NROUTES; i++)
		if (table[i].route == r)
			return table[i].pattern;
	return "none";
}

const char *srv__route_method(enum srv__route r)
{
	for (size_t i = 0; i < NROUTES; i++)
		if (table[i].route == r)
			return table[i].method;
	return "none";
}

bool srv_route_valid_id(const char *s, size_t len)
{
	if (len < 1 || len > SRV_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Does path fit pattern? On a fit, *id and *idlen point at the {id}
 * segment of path (or NULL). */
static bool fits(const char *pattern, const char *path, const char **id, size_t *idlen)
{
	const char *p = pattern, *s = path;

	*id = NULL;
	*idlen = 0;
	while (*p) {
		if (!strncmp(p, "{id}", 4)) {
			const char *end = strchr(s, '/');
			if (!end)
				end = s + strlen(s);
			*id = s;
			*idlen = (size_t)(end - s);
			s = end;
			p += 4;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *s == '\0';
}

static void allow_add(char *allow, size_t cap, const char *m)
{
	size_t n = strlen(allow);
	if (strstr(allow, m))
		return;
	if (n + strlen(m) + 3 >= cap)
		return;
	if (n) {
		memcpy(allow + n, ", ", 2);
		n += 2;
	}
	strcpy(allow + n, m);
}

int srv__route_match(srv__match *out, const char *method, const char *path, bool test_hooks)
{
	const srv__route_info *hit = NULL;
	const char *id = NULL;
	size_t idlen = 0;
	bool any = false;
	bool head = !strcmp(method, "HEAD");

	out->info = NULL;
	out->id[0] = '\0';
	out->allow[0] = '\0';
	for (size_t i = 0; i < NROUTES; i++) {
		const srv__route_info *r = &table[i];
		const char *rid;
		size_t rlen;
		if ((r->route == SRV_ROUTE_TEST_SLEEP || r->route == SRV_ROUTE_TEST_STORE_FAIL) &&
		    !test_hooks)
			continue;
		if (!fits(r->pattern, path, &rid, &rlen))
			continue;
		any = true;
		allow_add(out->allow, sizeof(out->allow), r->method);
		if (!strcmp(r->method, "GET"))
			allow_add(out->allow, sizeof(out->allow), "HEAD");
		if (!hit && (!strcmp(r->method, method) || (head && !strcmp(r->method, "GET")))) {
			hit = r;
			id = rid;
			idlen = rlen;
		}
	}
	if (!any)
		return SRV_MATCH_NOT_FOUND;
	if (!hit)
		return SRV_MATCH_BAD_METHOD;
	out->allow[0] = '\0';
	if (id) {
		if (!srv_route_valid_id(id, idlen))
			return SRV_MATCH_BAD_ID;
		memcpy(out->id, id, idlen);
		out->id[idlen] = '\0';
	}
	out->info = hit;
	return SRV_MATCH_OK;
}
