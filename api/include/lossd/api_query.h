/*
 * api_query.h - the query strings of the routes (docs/API.md sections 4 and
 * 7): one tokenizer, typed readers of one parameter, and the whole query
 * of the stream list and of a stream's history, each refusal a 422
 * problem (code bad_option, unknown_parameter or bad_cursor) the caller
 * replies with.
 *
 * The server hands over the raw query string (after '?', or NULL) and gets
 * plain values back. Any thread; nothing here allocates.
 */
#ifndef LOSSD_API_API_QUERY_H
#define LOSSD_API_API_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/api.h"
#include "lossd/api_history.h"
#include "lossd/api_meta.h"

/*
 * Takes the next pair of a query string ("a=1&b=%20x"): key and value
 * percent-decoded ('+' is a space) into key (kcap bytes) and val (vcap
 * bytes); a pair without '=' has the value "". Advances *q. Returns 1 for
 * a pair, 0 at the end, -1 when a part is longer than its buffer, holds a
 * NUL or a bad %-escape.
 */
int api_query_next(const char **q, char *key, size_t kcap, char *val, size_t vcap);

/* The value of name in q, decoded into buf (cap bytes). 1 found, 0 absent,
 * -1 with *p (422 bad_option) when name's own pair is malformed or longer
 * than buf; a malformed pair of another name is ignored, as every unknown
 * parameter of the routes that read one parameter at a time is. */
int api_query_get(const char *q, const char *name, char *buf, size_t cap, api_problem *p);

/* An integer in [lo, hi] (*v = def when absent). 0, or -1 with *p (422). */
int api_query_int(const char *q, const char *name, long long def, long long lo, long long hi,
                  long long *v, api_problem *p);

/* A confidence level in (0, 1) (*v = 0 when absent). 0, or -1 with *p. */
int api_query_level(const char *q, const char *name, double *v, api_problem *p);

/* "", "1" or "true" (true), "0" or "false" (false; also when absent). 0,
 * or -1 with *p. */
int api_query_bool(const char *q, const char *name, bool *v, api_problem *p);

/* Order of GET /v1/streams. */
typedef enum api_list_sort {
	API_LIST_SORT_ID = 0,
	API_LIST_SORT_UPDATED,
	API_LIST_SORT_CREATED,
	API_LIST_SORT_NAME,
} api_list_sort;

#define API_LIST_MAX_TAGS 16

/* The query of GET /v1/streams, decoded. */
typedef struct api_list_query {
	long long limit; /* [1, 1000], 100 when absent */
	api_list_sort sort;
	bool desc;
	char after[2 * 257 + 160]; /* the cursor, "" when absent */
	char prefix[260];          /* name_prefix, "" when absent */
	char tag_key[API_LIST_MAX_TAGS][API_META_MAX_KEY + 1];
	char tag_val[API_LIST_MAX_TAGS][4 * API_META_MAX_VALUE + 1];
	int ntags;
	bool filtered; /* name_prefix, tag, sort or order given */
	bool by_owner; /* principal= given: */
	char owner[3 * 64 + 1];
} api_list_query;

/* Reads the query of GET /v1/streams (limit, after, name_prefix, tag,
 * sort, order, principal) into *out. 0, or -1 with *p: 422 bad_option or
 * unknown_parameter. */
int api_query_list(api_list_query *out, const char *query, api_problem *p);

/* q's tag filters as a shared store takes them, [[key, value], ...]: new
 * text (free()), NULL when out of memory. */
char *api_query_list_tags(const api_list_query *q);

/* Reads the query of GET /v1/streams/{id}/history (series, format, from,
 * to, limit, after) into *q (API_HISTORY_QUERY_INIT first), the raw cursor
 * into after (acap bytes, "" when absent). 0, or -1 with *p: 422
 * bad_option, unknown_parameter, or the cursor's bad_cursor. */
int api_query_history(api_history_query *q, const char *query, char *after, size_t acap,
                      api_problem *p);

#endif
