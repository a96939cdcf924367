/*
 * query.c - the routes' query strings (api_query.h): the one tokenizer, the
 * typed readers GET /v1/streams/{id} uses one parameter at a time, and the
 * whole queries of the stream list and of a stream's history.
 *
 * Why shaped so: every route reads its query through api_query_next, so
 * percent-decoding, '+' and the refusal of NULs and over-long parts are
 * the same everywhere; the readers turn a refusal into the 422 the route
 * answers (with the parameter's name and its range in the detail) and
 * hand the server plain values. Every buffer is the caller's or fixed
 * here; a part longer than its buffer is an error, never a truncation.
 *
 * Strictness: the list and the history refuse an unknown parameter (422
 * unknown_parameter) and any malformed pair; the single-parameter readers
 * (a reading's curve, ci, class, max_points, allow_stale) ignore the pairs
 * of other names, malformed or not, as they always have.
 *
 * Not here: HTTP (the server hands the raw string after '?'), what a
 * parameter does (the server's handlers).
 */
#include "lossd/api_query.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tokenizer ------------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes [s, e) into out (cap bytes). 0 or -1. */
static int unescape(const char *s, const char *e, char *out, size_t cap)
{
	size_t n = 0;
	while (s < e) {
		char c = *s++;
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = s < e ? hexval(s[0]) : -1, lo = s + 1 < e ? hexval(s[1]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			s += 2;
		}
		if (c == '\0' || n + 1 >= cap)
			return -1;
		out[n++] = c;
	}
	out[n] = '\0';
	return 0;
}

int api_query_next(const char **q, char *key, size_t kcap, char *val, size_t vcap)
{
	const char *p = *q;
	while (p && *p == '&')
		p++;
	if (!p || !*p) {
		*q = p;
		return 0;
	}
	const char *end = strchr(p, '&');
	if (!end)
		end = p + strlen(p);
	const char *eq = memchr(p, '=', (size_t)(end - p));
	*q = end;
	if (unescape(p, eq ? eq : end, key, kcap))
		return -1;
	if (unescape(eq ? eq + 1 : end, end, val, vcap))
		return -1;
	return 1;
}

/* ---- one parameter at a time ------------------------------------------------------------ */

int api_query_get(const char *q, const char *name, char *buf, size_t cap, api_problem *p)
{
	char k[32];
	for (;;) {
		while (q && *q == '&')
			q++;
		const char *at = q;
		int r = api_query_next(&q, k, sizeof k, buf, cap);
		if (r == 0)
			return 0;
		if (r == 1 && !strcmp(k, name))
			return 1;
		if (r < 0 && strcspn(at, "=&") == strlen(name) && !strncmp(at, name, strlen(name)))
			return api_problem_set(p, 422, "bad_option", "",
			                       "query parameter %s is malformed or too long", name);
	}
}

int api_query_int(const char *q, const char *name, long long def, long long lo, long long hi,
                  long long *v, api_problem *p)
{
	char buf[32];
	*v = def;
	int r = api_query_get(q, name, buf, sizeof buf, p);
	if (r <= 0)
		return r;
	char *end;
	errno = 0;
	long long x = strtoll(buf, &end, 10);
	if (!buf[0] || *end || errno || x < lo || x > hi)
		return api_problem_set(p, 422, "bad_option", "",
		                       "query parameter %s must be an integer in [%lld, %lld]",
		                       name, lo, hi);
	*v = x;
	return 0;
}

int api_query_level(const char *q, const char *name, double *v, api_problem *p)
{
	char buf[32];
	*v = 0;
	int r = api_query_get(q, name, buf, sizeof buf, p);
	if (r <= 0)
		return r;
	char *end;
	errno = 0;
	double x = strtod(buf, &end);
	if (!buf[0] || *end || errno || !(x > 0 && x < 1))
		return api_problem_set(p, 422, "bad_option", "",
		                       "query parameter %s must be a confidence level in (0, 1)",
		                       name);
	*v = x;
	return 0;
}

int api_query_bool(const char *q, const char *name, bool *v, api_problem *p)
{
	char buf[16];
	*v = false;
	int r = api_query_get(q, name, buf, sizeof buf, p);
	if (r <= 0)
		return r;
	if (!strcmp(buf, "") || !strcmp(buf, "1") || !strcmp(buf, "true")) {
		*v = true;
		return 0;
	}
	if (!strcmp(buf, "0") || !strcmp(buf, "false"))
		return 0;
	return api_problem_set(p, 422, "bad_option", "", "query parameter %s must be true or false",
	                       name);
}

/* ---- GET /v1/streams ------------------------------------------------------------------------- */

int api_query_list(api_list_query *q, const char *query, api_problem *p)
{
	char k[32], v[4 * API_META_MAX_VALUE + API_META_MAX_KEY + 8];
	int r;
	memset(q, 0, sizeof(*q));
	q->limit = 100;
	while ((r = api_query_next(&query, k, sizeof k, v, sizeof v)) == 1) {
		if (!strcmp(k, "limit")) {
			char *end;
			errno = 0;
			q->limit = strtoll(v, &end, 10);
			if (!v[0] || *end || errno || q->limit < 1 || q->limit > 1000)
				return api_problem_set(
				        p, 422, "bad_option", "",
				        "query parameter limit must be an integer in [1, 1000]");
		} else if (!strcmp(k, "after")) {
			/* longer than any cursor a page gives: not one (cut
			 * short, it could name another page) */
			if (strlen(v) >= sizeof q->after)
				return api_problem_set(p, 422, "bad_cursor", "",
				                       "after must be the `next` of a previous "
				                       "page with the same sort");
			memcpy(q->after, v, strlen(v) + 1);
		} else if (!strcmp(k, "principal")) {
			if (strlen(v) >= sizeof q->owner)
				return api_problem_set(p, 422, "bad_option", "",
				                       "principal is at most 64 bytes");
			memcpy(q->owner, v, strlen(v) + 1);
			q->by_owner = true;
		} else if (!strcmp(k, "name_prefix")) {
			if (strlen(v) > 256)
				return api_problem_set(p, 422, "bad_option", "",
				                       "name_prefix is at most 256 bytes");
			memcpy(q->prefix, v, strlen(v) + 1);
			q->filtered = true;
		} else if (!strcmp(k, "tag")) {
			char *colon = strchr(v, ':');
			if (colon)
				*colon = '\0';
			if (!colon || !api_meta_key_ok(v) ||
			    strlen(colon + 1) > 4 * API_META_MAX_VALUE)
				return api_problem_set(p, 422, "bad_option", "",
				                       "tag must be KEY:VALUE with KEY matching "
				                       "[A-Za-z0-9_.-]{1,64}");
			if (q->ntags == API_LIST_MAX_TAGS)
				return api_problem_set(p, 422, "bad_option", "",
				                       "at most %d tag filters", API_LIST_MAX_TAGS);
			memcpy(q->tag_key[q->ntags], v, strlen(v) + 1); /* <= 64 bytes: checked */
			snprintf(q->tag_val[q->ntags], sizeof q->tag_val[0], "%s", colon + 1);
			q->ntags++;
			q->filtered = true;
		} else if (!strcmp(k, "sort")) {
			static const char *const names[] = {"updated", "created", "name"};
			static const api_list_sort sorts[] = {
			        API_LIST_SORT_UPDATED, API_LIST_SORT_CREATED, API_LIST_SORT_NAME};
			int found = -1;
			for (int i = 0; i < 3; i++)
				if (!strcmp(v, names[i]))
					found = i;
			if (found < 0)
				return api_problem_set(p, 422, "bad_option", "",
				                       "sort must be updated, created or name");
			q->sort = sorts[found];
			q->filtered = true;
		} else if (!strcmp(k, "order")) {
			if (strcmp(v, "asc") && strcmp(v, "desc"))
				return api_problem_set(p, 422, "bad_option", "",
				                       "order must be asc or desc");
			q->desc = !strcmp(v, "desc");
			q->filtered = true;
		} else {
			return api_problem_set(
			        p, 422, "unknown_parameter", "",
			        "unknown query parameter %.31s (the list takes limit, after, "
			        "name_prefix, tag, sort, order, principal)",
			        k);
		}
	}
	if (r < 0)
		return api_problem_set(p, 422, "bad_option", "",
		                       "a query parameter is malformed or too long");
	return 0;
}

char *api_query_list_tags(const api_list_query *q)
{
	json_t *a = json_array();
	for (int t = 0; a && t < q->ntags; t++)
		if (json_array_append_new(a, json_pack("[ss]", q->tag_key[t], q->tag_val[t]))) {
			json_decref(a);
			a = NULL;
		}
	char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
	json_decref(a);
	if (!text)
		return NULL;
	char *r = strdup(text); /* free()-able whatever jansson's allocator is */
	free(text);
	return r;
}

/* ---- GET /v1/streams/{id}/history ------------------------------------------------------------ */

int api_query_history(api_history_query *q, const char *query, char *after, size_t acap,
                      api_problem *p)
{
	char k[32], v[64];
	bool has_from = false, has_to = false;
	int r;
	after[0] = '\0';
	while ((r = api_query_next(&query, k, sizeof k, v, sizeof v)) == 1) {
		char *end = NULL;
		long long x = 0;
		bool num = !strcmp(k, "from") || !strcmp(k, "to") || !strcmp(k, "limit");
		if (num) {
			errno = 0;
			x = strtoll(v, &end, 10);
			if (!v[0] || *end || errno || x < 0 ||
			    (!strcmp(k, "limit") && (x < 1 || x > API_HISTORY_MAX_LIMIT))) {
				if (!strcmp(k, "limit"))
					return api_problem_set(
					        p, 422, "bad_option", "",
					        "limit must be an integer in [1, 10000]");
				return api_problem_set(p, 422, "bad_option", "",
				                       "%s must be a step: an integer in [0, 2^63)",
				                       k);
			}
		}
		if (!strcmp(k, "series")) {
			if (strcmp(v, "steps") && strcmp(v, "checkpoints"))
				return api_problem_set(p, 422, "bad_option", "",
				                       "series must be steps or checkpoints");
			q->checkpoints = !strcmp(v, "checkpoints");
		} else if (!strcmp(k, "format")) {
			if (strcmp(v, "json") && strcmp(v, "csv"))
				return api_problem_set(p, 422, "bad_option", "",
				                       "format must be json or csv");
			q->csv = !strcmp(v, "csv");
		} else if (!strcmp(k, "from")) {
			q->from = x;
			has_from = true;
		} else if (!strcmp(k, "to")) {
			q->to = x;
			has_to = true;
		} else if (!strcmp(k, "limit")) {
			q->limit = x;
		} else if (!strcmp(k, "after")) {
			snprintf(after, acap, "%s", v);
		} else {
			return api_problem_set(p, 422, "unknown_parameter", "",
			                       "unknown query parameter %.31s (history takes "
			                       "series, from, to, limit, after, format)",
			                       k);
		}
	}
	if (r < 0)
		return api_problem_set(p, 422, "bad_option", "",
		                       "a query parameter is malformed or too long");
	if (has_from && has_to && q->from > q->to)
		return api_problem_set(p, 422, "bad_option", "", "from (%lld) is after to (%lld)",
		                       (long long)q->from, (long long)q->to);
	if (after[0] && api_history_cursor_parse(q, after, p))
		return -1;
	return 0;
}
