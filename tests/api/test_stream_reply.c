/*
 * test_stream_reply.c - api/src/stream_reply.c: the stream routes' reply
 * bodies built from plain values (acknowledgements, summaries, list pages,
 * readings with the server's extras, states with a state_id), field by
 * field and in the order the replies have always had.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api_stream_reply.h"
#include "mem.h"

static const api_ctx ctx = API_CTX_INIT;

/* j as JSON text (fields in insertion order) in malloc memory. */
static char *dumps(const json_t *j)
{
	size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	char *t = malloc(n + 1);
	cr_assert_not_null(t);
	cr_assert_eq(json_dumpb(j, t, n, JSON_COMPACT), n);
	t[n] = '\0';
	return t;
}

static api_stream_spec *spec_ok(const char *body)
{
	api_stream_spec *s = NULL;
	api_problem p = {0};
	cr_assert_eq(api_stream_spec_parse(&s, &ctx, body, strlen(body), NULL, &p), 0, "%s",
	             p.detail);
	return s;
}

/* A stream of spec s with one batch of three rows. */
static eng_stream *one_batch(const api_stream_spec *s)
{
	static const char body[] = "{\"y_true\":[0,1,1],\"y_score\":[0.1,0.7,0.4]}";
	eng_stream *st = NULL, *d = NULL;
	char *bid = NULL;
	eng_error err;
	api_problem p = {0};
	cr_assert_eq(eng_stream_new(&st, api_stream_spec_engine(s), &err), 0);
	cr_assert_eq(api_stream_decode_update(&d, &bid, s, &ctx, body, strlen(body), &p), 0, "%s",
	             p.detail);
	cr_assert_eq(eng_stream_merge(st, d, &err), 0);
	eng_stream_free(d);
	free(bid);
	return st;
}

/* The position of key (as "key":) in text, or -1. */
static long at(const char *text, const char *key)
{
	char k[64];
	snprintf(k, sizeof k, "\"%s\":", key);
	const char *p = strstr(text, k);
	return p ? (long)(p - text) : -1;
}

Test(stream_reply, ack_says_applied_only_for_merges)
{
	eng_stream_counts c = {3, 70};
	json_t *u = api_stream_ack("abc", &c, API_STREAM_APPLIED_UNSAID);
	char *t = dumps(u);
	cr_assert_str_eq(t, "{\"id\":\"abc\",\"updates\":3,\"count\":70}");
	free(t);
	json_decref(u);

	json_t *no = api_stream_ack("abc", &c, API_STREAM_APPLIED_NO);
	t = dumps(no);
	cr_assert_str_eq(t, "{\"id\":\"abc\",\"updates\":3,\"count\":70,\"applied\":false}");
	free(t);
	json_decref(no);

	json_t *yes = api_stream_ack("abc", &c, API_STREAM_APPLIED_YES);
	cr_assert(json_is_true(json_object_get(yes, "applied")));
	json_decref(yes);
}

Test(stream_reply, summary_fields_follow_what_is_given)
{
	api_stream_spec *s = spec_ok("{\"name\":\"train\",\"method\":\"exact\"}");
	api_meta m = {0};
	m.ttl_s = 60;
	m.created_ms = 1000;
	m.updated_ms = 2000;
	eng_stream_counts c = {2, 9};

	/* The create reply: config and metadata, no counts, no principal. */
	json_t *j = api_stream_summary(s, "id1", &m, NULL, NULL);
	cr_assert_not_null(j);
	cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "id1");
	cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "train");
	cr_assert_eq(json_integer_value(json_object_get(j, "ttl_s")), 60);
	cr_assert_str_eq(json_string_value(json_object_get(j, "created_at")),
	                 "1970-01-01T00:00:01.000Z");
	cr_assert_null(json_object_get(j, "count"));
	cr_assert_null(json_object_get(j, "principal"));
	json_decref(j);

	/* A list entry: metadata, then count and updates, then principal. */
	j = api_stream_summary(s, "id1", &m, &c, "alice");
	char *t = dumps(j);
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 9);
	cr_assert_eq(json_integer_value(json_object_get(j, "updates")), 2);
	cr_assert_str_eq(json_string_value(json_object_get(j, "principal")), "alice");
	cr_assert_lt(at(t, "id"), at(t, "tags"));
	cr_assert_lt(at(t, "updated_at"), at(t, "count"));
	cr_assert_lt(at(t, "count"), at(t, "updates"));
	cr_assert_lt(at(t, "updates"), at(t, "principal"));
	free(t);
	json_decref(j);

	/* A shared store's entry: counts without metadata. */
	j = api_stream_summary(s, "id1", NULL, &c, NULL);
	cr_assert_null(json_object_get(j, "tags"));
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 9);
	json_decref(j);
	api_stream_spec_free(s);
}

Test(stream_reply, list_page_empty_and_with_next)
{
	json_t *e = api_stream_list_page(NULL, NULL);
	char *t = dumps(e);
	cr_assert_str_eq(t, "{\"streams\":[],\"next\":null}");
	free(t);
	json_decref(e);

	json_t *arr = json_array();
	json_array_append_new(arr, json_string("x"));
	json_t *p = api_stream_list_page(arr, "c1.abc");
	t = dumps(p);
	cr_assert_str_eq(t, "{\"streams\":[\"x\"],\"next\":\"c1.abc\"}");
	free(t);
	json_decref(p);
}

Test(stream_reply, page_built_entry_by_entry)
{
	api_stream_spec *s = spec_ok("{\"method\":\"exact\",\"name\":\"a\"}");
	eng_stream_counts c = {2, 9};

	api_stream_page *pg = api_stream_page_new();
	cr_assert_not_null(pg);
	json_t *empty = api_stream_page_finish(pg, NULL);
	char *t = dumps(empty);
	cr_assert_str_eq(t, "{\"streams\":[],\"next\":null}");
	free(t);
	json_decref(empty);

	pg = api_stream_page_new();
	cr_assert_eq(api_stream_page_add(pg, s, "s1", NULL, &c, NULL), 0);
	cr_assert_eq(api_stream_page_add(pg, s, "s2", NULL, &c, "team"), 0);
	json_t *page = api_stream_page_finish(pg, "c1.s2");
	/* each entry is the summary api_stream_summary gives for the same values */
	json_t *e1 = api_stream_summary(s, "s1", NULL, &c, NULL);
	json_t *e2 = api_stream_summary(s, "s2", NULL, &c, "team");
	json_t *arr = json_object_get(page, "streams");
	cr_assert_eq(json_array_size(arr), 2);
	cr_assert(json_equal(json_array_get(arr, 0), e1));
	cr_assert(json_equal(json_array_get(arr, 1), e2));
	cr_assert_str_eq(json_string_value(json_object_get(page, "next")), "c1.s2");
	json_decref(e1);
	json_decref(e2);
	json_decref(page);

	/* an unfinished page is dropped whole; finishing NULL is NULL */
	pg = api_stream_page_new();
	cr_assert_eq(api_stream_page_add(pg, s, "s1", NULL, &c, NULL), 0);
	api_stream_page_free(pg);
	api_stream_page_free(NULL);
	cr_assert_null(api_stream_page_finish(NULL, NULL));

	api_stream_spec_free(s);
}

Test(stream_reply, reading_adds_meta_stale_and_principal)
{
	api_stream_spec *s = spec_ok("{\"method\":\"exact\"}");
	eng_stream *st = one_batch(s);
	api_meta m = {0};
	api_problem p = {0};

	json_t *plain = api_stream_render_read(s, "r", st, NULL, &p);
	json_t *j = api_stream_reading(s, "r", st, NULL, NULL, false, NULL, &p);
	cr_assert(json_equal(plain, j), "no extras asked: the render's reading");
	json_decref(j);

	j = api_stream_reading(s, "r", st, NULL, &m, true, "bob", &p);
	cr_assert_not_null(j);
	cr_assert_eq(json_integer_value(json_object_get(j, "count")), 3);
	cr_assert(json_is_object(json_object_get(j, "tags")));
	cr_assert(json_is_true(json_object_get(j, "stale")));
	cr_assert_str_eq(json_string_value(json_object_get(j, "principal")), "bob");
	char *t = dumps(j);
	cr_assert_lt(at(t, "updated_at"), at(t, "stale"));
	cr_assert_lt(at(t, "stale"), at(t, "principal"));
	free(t);
	json_decref(j);

	/* The render's own error comes through: a curve of a column that is
	 * not there. */
	api_stream_read_opts o = API_STREAM_READ_OPTS_INIT;
	o.curve = true;
	o.curve_col = 5;
	cr_assert_null(api_stream_reading(s, "r", st, &o, &m, false, NULL, &p));
	cr_assert_eq(p.status, 422);
	json_decref(plain);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

Test(stream_reply, export_bytes_is_the_export_plus_state_id)
{
	api_stream_spec *s = spec_ok("{\"method\":\"sketch\"}");
	eng_stream *st = one_batch(s);
	api_problem p = {0};
	void *bytes = NULL;
	size_t len = 0;
	eng_stream_counts c;
	cr_assert_eq(eng_stream_serialize(&bytes, &len, st), 0);
	eng_stream_counts_of(&c, st);

	json_t *e = api_stream_export(s, "src", st, &p);
	json_t *b = api_stream_export_bytes(s, "src", &c, bytes, len, NULL, &p);
	cr_assert(json_equal(e, b));
	json_t *w = api_stream_export_bytes(s, "src", &c, bytes, len, "ab12", &p);
	cr_assert_str_eq(json_string_value(json_object_get(w, "state_id")), "ab12");
	cr_assert(json_object_del(w, "state_id") == 0 && json_equal(e, w));
	char *t = dumps(b);
	cr_assert_lt(at(t, "version"), at(t, "id"));
	cr_assert_lt(at(t, "updates"), at(t, "state"));
	free(t);

	/* The state merges back as one batch of three rows. */
	t = dumps(b);
	eng_stream *d = NULL;
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, t, strlen(t), &p), 0, "%s",
	             p.detail);
	eng_stream_counts dc;
	eng_stream_counts_of(&dc, d);
	cr_assert_eq(dc.rows, 3);
	eng_stream_free(d);
	free(t);
	json_decref(e);
	json_decref(b);
	json_decref(w);
	free(bytes);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

/* Every allocation of every builder may fail (api__alloc_fail_after): each
 * gives NULL (or its error) or the whole reply, never a partial one, and
 * leaks nothing (the sanitizer and valgrind runs check that part). */
Test(stream_reply, builders_survive_every_failed_allocation)
{
	api_stream_spec *s = spec_ok("{\"method\":\"sketch\",\"name\":\"n\"}");
	eng_stream *st = one_batch(s);
	eng_stream_counts c;
	eng_stream_counts_of(&c, st);
	api_meta m = {0};
	api_problem p = {0};
	json_t *want[4] = {
	        api_stream_summary(s, "s1", &m, &c, "team"),
	        api_stream_reading(s, "s1", st, NULL, &m, true, "bob", &p),
	        api_stream_export(s, "s1", st, &p),
	        NULL,
	};
	api_stream_page *pg0 = api_stream_page_new();
	cr_assert_eq(api_stream_page_add(pg0, s, "s1", &m, &c, NULL), 0);
	want[3] = api_stream_page_finish(pg0, "next");
	for (int k = 0; k < 4; k++)
		cr_assert_not_null(want[k]);

	for (int k = 0; k < 4; k++) {
		int failed = 0, whole = 0;
		for (long n = 1; n < 5000 && whole < 2; n++) {
			json_t *j = NULL;
			api__alloc_fail_after(n);
			if (k == 0) {
				j = api_stream_summary(s, "s1", &m, &c, "team");
			} else if (k == 1) {
				j = api_stream_reading(s, "s1", st, NULL, &m, true, "bob", &p);
			} else if (k == 2) {
				j = api_stream_export(s, "s1", st, &p);
			} else {
				api_stream_page *pg = api_stream_page_new();
				if (pg && api_stream_page_add(pg, s, "s1", &m, &c, NULL) != 0) {
					api_stream_page_free(pg);
					pg = NULL;
				}
				j = api_stream_page_finish(pg, "next");
			}
			api__alloc_fail_after(0);
			if (!j) {
				failed++;
				continue;
			}
			whole++;
			cr_assert(json_equal(j, want[k]),
			          "builder %d, failure at %ld: a partial reply", k, n);
			json_decref(j);
		}
		cr_assert_gt(failed, 0, "builder %d: no injected failure reached it", k);
		cr_assert_eq(whole, 2, "builder %d: never succeeded", k);
	}
	for (int k = 0; k < 4; k++)
		json_decref(want[k]);
	eng_stream_free(st);
	api_stream_spec_free(s);
}
