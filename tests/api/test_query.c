/*
 * test_query.c - api/src/query.c: the query-string tokenizer (decoding,
 * '+', NULs, over-long parts), the one-parameter readers (defaults,
 * ranges, a malformed pair of their own name refused, of another name
 * ignored) and the list and history queries (every parameter, the 422s
 * with their codes and details).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api_query.h"

Test(query, next_decodes_pairs)
{
	const char *q = "a=1&&b=%20x+y&flag&c=";
	char k[8], v[8];
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 1);
	cr_assert_str_eq(k, "a");
	cr_assert_str_eq(v, "1");
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 1);
	cr_assert_str_eq(k, "b");
	cr_assert_str_eq(v, " x y");
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 1);
	cr_assert_str_eq(k, "flag");
	cr_assert_str_eq(v, "");
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 1);
	cr_assert_str_eq(k, "c");
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 0);
	q = NULL;
	cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), 0);
}

Test(query, next_refuses_nul_bad_escape_and_long_parts)
{
	char k[8], v[4];
	const char *bad[] = {"a=%00", "a=%zz", "a=%4", "a=1234", "abcdefgh=1"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const char *q = bad[i];
		cr_assert_eq(api_query_next(&q, k, sizeof k, v, sizeof v), -1, "%s", bad[i]);
	}
}

Test(query, int_default_range_and_errors)
{
	api_problem p = {0};
	long long v = 0;
	cr_assert_eq(api_query_int(NULL, "class", -1, -1, 9, &v, &p), 0);
	cr_assert_eq(v, -1);
	cr_assert_eq(api_query_int("x=1&class=4", "class", -1, -1, 9, &v, &p), 0);
	cr_assert_eq(v, 4);
	cr_assert_eq(api_query_int("class=10", "class", -1, -1, 9, &v, &p), -1);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "bad_option");
	cr_assert_str_eq(p.detail, "query parameter class must be an integer in [-1, 9]");
	cr_assert_eq(api_query_int("class=4x", "class", -1, -1, 9, &v, &p), -1);
	/* its own malformed pair is refused, another name's is ignored */
	cr_assert_eq(api_query_int("class=%zz", "class", -1, -1, 9, &v, &p), -1);
	cr_assert_str_eq(p.detail, "query parameter class is malformed or too long");
	cr_assert_eq(api_query_int("x=%00&class=2", "class", -1, -1, 9, &v, &p), 0);
	cr_assert_eq(v, 2);
}

Test(query, level_and_bool)
{
	api_problem p = {0};
	double ci = 1;
	bool b = true;
	cr_assert_eq(api_query_level("", "ci", &ci, &p), 0);
	cr_assert(ci == 0.0);
	cr_assert_eq(api_query_level("ci=0.95", "ci", &ci, &p), 0);
	cr_assert_float_eq(ci, 0.95, 1e-15);
	cr_assert_eq(api_query_level("ci=1", "ci", &ci, &p), -1);
	cr_assert_str_eq(p.detail, "query parameter ci must be a confidence level in (0, 1)");

	cr_assert_eq(api_query_bool("curve", "curve", &b, &p), 0);
	cr_assert(b);
	cr_assert_eq(api_query_bool("curve=false", "curve", &b, &p), 0);
	cr_assert_not(b);
	cr_assert_eq(api_query_bool("curve=true", "curve", &b, &p), 0);
	cr_assert(b);
	cr_assert_eq(api_query_bool("other=1", "curve", &b, &p), 0);
	cr_assert_not(b);
	cr_assert_eq(api_query_bool("curve=yes", "curve", &b, &p), -1);
	cr_assert_str_eq(p.detail, "query parameter curve must be true or false");
}

Test(query, list_reads_every_parameter)
{
	api_list_query q;
	api_problem p = {0};
	cr_assert_eq(api_query_list(&q, NULL, &p), 0);
	cr_assert_eq(q.limit, 100);
	cr_assert_eq(q.sort, API_LIST_SORT_ID);
	cr_assert_not(q.filtered);
	cr_assert_eq(api_query_list(&q,
	                            "limit=5&after=abc&name_prefix=run%20a&tag=team:x%3Ay&tag=k:"
	                            "&sort=created&order=desc&principal=alice",
	                            &p),
	             0, "%s", p.detail);
	cr_assert_eq(q.limit, 5);
	cr_assert_str_eq(q.after, "abc");
	cr_assert_str_eq(q.prefix, "run a");
	cr_assert_eq(q.ntags, 2);
	cr_assert_str_eq(q.tag_key[0], "team");
	cr_assert_str_eq(q.tag_val[0], "x:y");
	cr_assert_str_eq(q.tag_key[1], "k");
	cr_assert_str_eq(q.tag_val[1], "");
	cr_assert_eq(q.sort, API_LIST_SORT_CREATED);
	cr_assert(q.desc);
	cr_assert(q.filtered);
	cr_assert(q.by_owner);
	cr_assert_str_eq(q.owner, "alice");
	cr_assert_eq(api_query_list(&q, "sort=updated", &p), 0);
	cr_assert_eq(q.sort, API_LIST_SORT_UPDATED);
	cr_assert_eq(api_query_list(&q, "sort=name", &p), 0);
	cr_assert_eq(q.sort, API_LIST_SORT_NAME);
}

Test(query, list_tags_as_the_store_takes_them)
{
	api_list_query q;
	api_problem p = {0};
	cr_assert_eq(api_query_list(&q, "tag=run:7&tag=team:a%22b", &p), 0);
	char *t = api_query_list_tags(&q);
	cr_assert_str_eq(t, "[[\"run\",\"7\"],[\"team\",\"a\\\"b\"]]");
	free(t);
	cr_assert_eq(api_query_list(&q, "", &p), 0);
	t = api_query_list_tags(&q);
	cr_assert_str_eq(t, "[]");
	free(t);
}

Test(query, list_refusals)
{
	static const struct {
		const char *q, *code, *detail;
	} bad[] = {
	        {"limit=0", "bad_option", "query parameter limit must be an integer in [1, 1000]"},
	        {"limit=1001", "bad_option",
	         "query parameter limit must be an integer in [1, 1000]"},
	        {"sort=size", "bad_option", "sort must be updated, created or name"},
	        {"order=up", "bad_option", "order must be asc or desc"},
	        {"tag=nocolon", "bad_option",
	         "tag must be KEY:VALUE with KEY matching [A-Za-z0-9_.-]{1,64}"},
	        {"tag=b%20d:1", "bad_option",
	         "tag must be KEY:VALUE with KEY matching [A-Za-z0-9_.-]{1,64}"},
	        {"x=1", "unknown_parameter",
	         "unknown query parameter x (the list takes limit, after, name_prefix, tag, "
	         "sort, order, principal)"},
	        {"limit=%zz", "bad_option", "a query parameter is malformed or too long"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		api_list_query q;
		api_problem p = {0};
		cr_assert_eq(api_query_list(&q, bad[i].q, &p), -1, "%s", bad[i].q);
		cr_assert_eq(p.status, 422);
		cr_assert_str_eq(p.code, bad[i].code, "%s", bad[i].q);
		cr_assert_str_eq(p.detail, bad[i].detail, "%s", bad[i].q);
	}
	/* 16 tag filters at most */
	char q17[17 * 8 + 1] = "";
	for (int i = 0; i < 17; i++)
		strcat(q17, i ? "&tag=k:v" : "tag=k:v");
	api_list_query q;
	api_problem p = {0};
	cr_assert_eq(api_query_list(&q, q17, &p), -1);
	cr_assert_str_eq(p.detail, "at most 16 tag filters");
	char q16[16 * 8 + 1] = "";
	for (int i = 0; i < 16; i++)
		strcat(q16, i ? "&tag=k:v" : "tag=k:v");
	cr_assert_eq(api_query_list(&q, q16, &p), 0);
	cr_assert_eq(q.ntags, 16);
	/* a cursor longer than any page gives is refused, not cut short */
	char longer[6 + sizeof q.after + 1];
	memcpy(longer, "after=", 6);
	memset(longer + 6, 'a', sizeof q.after);
	longer[6 + sizeof q.after] = '\0';
	cr_assert_eq(api_query_list(&q, longer, &p), -1);
	cr_assert_str_eq(p.code, "bad_cursor");
	longer[6 + sizeof q.after - 1] = '\0'; /* the longest that fits */
	cr_assert_eq(api_query_list(&q, longer, &p), 0);
	cr_assert_eq(strlen(q.after), sizeof q.after - 1);
}

Test(query, history_reads_and_refuses)
{
	api_history_query q = API_HISTORY_QUERY_INIT;
	api_problem p = {0};
	char after[64];
	cr_assert_eq(api_query_history(&q,
	                               "series=checkpoints&format=csv&from=3&to=9&limit=7"
	                               "&after=c4.2",
	                               after, sizeof after, &p),
	             0, "%s", p.detail);
	cr_assert(q.checkpoints);
	cr_assert(q.csv);
	cr_assert_eq(q.from, 3);
	cr_assert_eq(q.to, 9);
	cr_assert_eq(q.limit, 7);
	cr_assert_str_eq(after, "c4.2");
	cr_assert(q.has_after);
	cr_assert_eq(q.after_step, 4);
	cr_assert_eq(q.after_n, 2);

	static const struct {
		const char *q, *code, *detail;
	} bad[] = {
	        {"from=5&to=4", "bad_option", "from (5) is after to (4)"},
	        {"limit=0", "bad_option", "limit must be an integer in [1, 10000]"},
	        {"from=-1", "bad_option", "from must be a step: an integer in [0, 2^63)"},
	        {"series=x", "bad_option", "series must be steps or checkpoints"},
	        {"format=xml", "bad_option", "format must be json or csv"},
	        {"step=1", "unknown_parameter",
	         "unknown query parameter step (history takes series, from, to, limit, after, "
	         "format)"},
	        {"after=c1.1", "bad_cursor",
	         "after must be a cursor from a previous page's \"next\" of the same series"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		api_history_query h = API_HISTORY_QUERY_INIT;
		cr_assert_eq(api_query_history(&h, bad[i].q, after, sizeof after, &p), -1, "%s",
		             bad[i].q);
		cr_assert_eq(p.status, 422);
		cr_assert_str_eq(p.code, bad[i].code, "%s", bad[i].q);
		cr_assert_str_eq(p.detail, bad[i].detail, "%s", bad[i].q);
	}
}
