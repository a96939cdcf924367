/*
 * test_router.c - server/src/router.c: matches, 404, 405 with Allow, and
 * stream ids checked on the raw path.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

/* Arrays, not pointers: Criterion may run a parameterized test in a fresh
 * process where the parent's pointers mean nothing. */
struct rcase {
	char method[8], path[48];
	int rc;
	enum srv__route route;
	char id[16];    /* expected id, or "" */
	char allow[24]; /* expected Allow for 405 */
};

ParameterizedTestParameters(router, table)
{
	static struct rcase cases[] = {
	        {"GET", "/healthz", SRV_MATCH_OK, SRV_ROUTE_HEALTHZ, "", ""},
	        {"HEAD", "/healthz", SRV_MATCH_OK, SRV_ROUTE_HEALTHZ, "", ""},
	        {"GET", "/livez", SRV_MATCH_OK, SRV_ROUTE_LIVEZ, "", ""},
	        {"GET", "/readyz", SRV_MATCH_OK, SRV_ROUTE_READYZ, "", ""},
	        {"GET", "/metrics", SRV_MATCH_OK, SRV_ROUTE_METRICS, "", ""},
	        {"GET", "/openapi.yaml", SRV_MATCH_OK, SRV_ROUTE_OPENAPI, "", ""},
	        {"GET", "/v1/version", SRV_MATCH_OK, SRV_ROUTE_VERSION, "", ""},
	        {"POST", "/v1/loss", SRV_MATCH_OK, SRV_ROUTE_LOSS, "", ""},
	        {"POST", "/v1/auc", SRV_MATCH_OK, SRV_ROUTE_AUC, "", ""},
	        {"GET", "/v1/loss", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "", "POST"},
	        {"POST", "/healthz", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "", "GET, HEAD"},
	        {"POST", "/v1/streams", SRV_MATCH_OK, SRV_ROUTE_STREAMS_CREATE, "", ""},
	        {"GET", "/v1/streams", SRV_MATCH_OK, SRV_ROUTE_STREAMS_LIST, "", ""},
	        {"PUT", "/v1/streams", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "", "POST, GET, HEAD"},
	        {"GET", "/v1/streams/abc_-9", SRV_MATCH_OK, SRV_ROUTE_STREAMS_GET, "abc_-9", ""},
	        {"DELETE", "/v1/streams/x", SRV_MATCH_OK, SRV_ROUTE_STREAMS_DELETE, "x", ""},
	        {"PATCH", "/v1/streams/x", SRV_MATCH_OK, SRV_ROUTE_STREAMS_PATCH, "x", ""},
	        {"PUT", "/v1/streams/x", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "",
	         "GET, HEAD, DELETE, PATCH"},
	        {"POST", "/v1/streams/s1/update", SRV_MATCH_OK, SRV_ROUTE_STREAMS_UPDATE, "s1", ""},
	        {"POST", "/v1/streams/s1/reset", SRV_MATCH_OK, SRV_ROUTE_STREAMS_RESET, "s1", ""},
	        {"POST", "/v1/streams/s1/merge", SRV_MATCH_OK, SRV_ROUTE_STREAMS_MERGE, "s1", ""},
	        {"GET", "/v1/streams/s1/state", SRV_MATCH_OK, SRV_ROUTE_STREAMS_STATE, "s1", ""},
	        {"GET", "/v1/streams/s1/update", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "", "POST"},
	        {"GET", "/v1/streams/a%2Fb", SRV_MATCH_BAD_ID, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/v1/streams/a%00b", SRV_MATCH_BAD_ID, SRV_ROUTE_NONE, "", ""},
	        {"POST", "/v1/streams/..%2F..%2Fetc/update", SRV_MATCH_BAD_ID, SRV_ROUTE_NONE, "",
	         ""},
	        {"GET", "/v1/streams/", SRV_MATCH_BAD_ID, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/v1/streams/a.b", SRV_MATCH_BAD_ID, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/v1/streams/a/b", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/v1/%6Coss", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/", SRV_MATCH_OK, SRV_ROUTE_UI_INDEX, "", ""},
	        {"HEAD", "/docs", SRV_MATCH_OK, SRV_ROUTE_UI_DOCS, "", ""},
	        {"GET", "/ui/uPlot.iife.min.js", SRV_MATCH_OK, SRV_ROUTE_UI_UPLOT_JS, "", ""},
	        {"POST", "/", SRV_MATCH_BAD_METHOD, SRV_ROUTE_NONE, "", "GET, HEAD"},
	        {"GET", "/ui/", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/ui/app.js/x", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/docs/", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"GET", "/healthz/", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	        {"POST", "/v1/_sleep", SRV_MATCH_NOT_FOUND, SRV_ROUTE_NONE, "", ""},
	};
	return cr_make_param_array(struct rcase, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct rcase *t, router, table)
{
	srv__match m;
	int rc = srv__route_match(&m, t->method, t->path, false);

	cr_assert_eq(rc, t->rc, "%s %s: rc %d, expected %d", t->method, t->path, rc, t->rc);
	if (rc == SRV_MATCH_OK) {
		cr_assert_not_null(m.info);
		cr_assert_eq(m.info->route, t->route, "%s %s", t->method, t->path);
		cr_assert_str_eq(m.id, t->id);
	} else {
		cr_assert_null(m.info);
	}
	if (rc == SRV_MATCH_BAD_METHOD)
		cr_assert_str_eq(m.allow, t->allow, "%s %s", t->method, t->path);
}

Test(router, test_hook_only_when_enabled)
{
	srv__match m;

	cr_assert_eq(srv__route_match(&m, "POST", "/v1/_sleep", true), SRV_MATCH_OK);
	cr_assert_eq(m.info->route, SRV_ROUTE_TEST_SLEEP);
	cr_assert_eq(m.info->kind, SRV_WORKER);
	cr_assert_eq(srv__route_match(&m, "POST", "/v1/_sleep", false), SRV_MATCH_NOT_FOUND);
}

Test(router, id_length_limit)
{
	char path[300], id[200];
	srv__match m;

	memset(id, 'a', 128);
	id[128] = '\0';
	snprintf(path, sizeof(path), "/v1/streams/%s/state", id);
	cr_assert_eq(srv__route_match(&m, "GET", path, false), SRV_MATCH_OK);
	cr_assert_str_eq(m.id, id);
	id[128] = 'a';
	id[129] = '\0';
	snprintf(path, sizeof(path), "/v1/streams/%s/state", id);
	cr_assert_eq(srv__route_match(&m, "GET", path, false), SRV_MATCH_BAD_ID);
}

Test(router, kinds_and_names)
{
	srv__match m;

	cr_assert_eq(srv__route_match(&m, "GET", "/healthz", false), SRV_MATCH_OK);
	cr_assert_eq(m.info->kind, SRV_DIRECT);
	cr_assert_not(m.info->has_body);
	cr_assert_eq(srv__route_match(&m, "POST", "/v1/loss", false), SRV_MATCH_OK);
	cr_assert_eq(m.info->kind, SRV_WORKER);
	cr_assert(m.info->has_body);
	cr_assert_str_eq(srv__route_name(SRV_ROUTE_LOSS), "/v1/loss");
	cr_assert_str_eq(srv__route_name(SRV_ROUTE_NONE), "none");
	cr_assert_str_eq(srv__route_name(SRV_ROUTE_STREAMS_UPDATE), "/v1/streams/{id}/update");
	for (int r = 1; r < SRV_ROUTE_COUNT; r++)
		cr_assert_str_neq(srv__route_name((enum srv__route)r), "none", "route %d", r);
}
