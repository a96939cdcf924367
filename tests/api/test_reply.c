/*
 * test_reply.c - api/src/reply.c: problems, problem+json and JSON replies.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "mem.h"

/* Parses a reply body back with jansson (fails the test if it is not JSON). */
static json_t *body_json(const api_reply *r)
{
	json_error_t e;
	cr_assert_not_null(r->body);
	json_t *v = json_loadb(r->body, r->len, 0, &e);
	cr_assert_not_null(v, "reply body is not JSON: %s (%.*s)", e.text, (int)r->len, r->body);
	return v;
}

Test(problem, set_fills_and_returns_minus_one)
{
	api_problem p;
	cr_assert_eq(api_problem_set(&p, 422, "shape_mismatch", "/y_true", "y has %d", 5), -1);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "shape_mismatch");
	cr_assert_str_eq(p.pointer, "/y_true");
	cr_assert_str_eq(p.detail, "y has 5");
	cr_assert_eq(api_problem_set(NULL, 400, "x", "", "y"), -1);
	api_problem_set(&p, 400, "x", NULL, NULL);
	cr_assert_str_eq(p.pointer, "");
	cr_assert_str_eq(p.detail, "");
}

Test(problem, set_truncates_long_pointer_and_detail)
{
	api_problem p;
	char longp[1000];
	memset(longp, 'a', sizeof longp - 1);
	longp[sizeof longp - 1] = 0;
	api_problem_set(&p, 422, "x", longp, "%s", longp);
	cr_assert_eq(strlen(p.pointer), sizeof p.pointer - 1);
	cr_assert_eq(strlen(p.detail), sizeof p.detail - 1);
}

/* No pointers in parameters: Criterion runs each in a fresh process. */
struct eng_case {
	int code;
	int status;
	char api_code[32];
};

ParameterizedTestParameters(problem, from_eng)
{
	static struct eng_case cases[] = {
	        {ENG_EINVAL, 422, "bad_option"},
	        {ENG_ESHAPE, 422, "shape_mismatch"},
	        {ENG_ELABEL, 422, "label_out_of_range"},
	        {ENG_EPROB, 422, "prediction_out_of_range"},
	        {ENG_ENONFINITE, 422, "non_finite"},
	        {ENG_EWEIGHT, 422, "bad_weight"},
	        {ENG_ENOMEM, 503, "out_of_memory"},
	        {ENG_ELIMIT, 507, "stream_memory_exceeded"},
	        {ENG_ESTATE, 409, "state_mismatch"},
	        {-999, 500, "internal_error"},
	};
	return cr_make_param_array(struct eng_case, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct eng_case *c, problem, from_eng)
{
	eng_error err;
	api_problem p;
	eng_error_set(&err, c->code, "y_true", 3, "label %d is out of range", 7);
	cr_assert_eq(api_problem_from_eng(&p, &err), -1);
	cr_assert_eq(p.status, c->status);
	cr_assert_str_eq(p.code, c->api_code);
	cr_assert_str_eq(p.pointer, "/y_true/3");
	cr_assert_str_eq(p.detail, "label 7 is out of range");
}

Test(problem, from_eng_pointer_forms)
{
	eng_error err;
	api_problem p;
	eng_error_set(&err, ENG_ESHAPE, "y_pred", -1, "bad");
	api_problem_from_eng(&p, &err);
	cr_assert_str_eq(p.pointer, "/y_pred");
	eng_error_set(&err, ENG_ESHAPE, NULL, 4, "bad");
	api_problem_from_eng(&p, &err);
	cr_assert_str_eq(p.pointer, "");
	api_problem_from_eng(&p, NULL);
	cr_assert_eq(p.status, 500);
	/* an empty message still gives a detail */
	eng_error_set(&err, ENG_ENOMEM, NULL, -1, "%s", "");
	api_problem_from_eng(&p, &err);
	cr_assert_neq(p.detail[0], '\0');
}

Test(reply, problem_body_is_rfc9457)
{
	api_problem p;
	api_reply r;
	api_problem_set(&p, 422, "shape_mismatch", "/y_true/3", "y_pred has shape [4, 3]");
	api_reply_problem(&r, &p);
	cr_assert_eq(r.status, 422);
	cr_assert_str_eq(r.content_type, API_PROBLEM_JSON);
	cr_assert_eq(r.len, strlen(r.body));
	json_t *v = body_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(v, "type")), "about:blank");
	cr_assert_str_eq(json_string_value(json_object_get(v, "title")), "Unprocessable Entity");
	cr_assert_eq(json_integer_value(json_object_get(v, "status")), 422);
	cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "shape_mismatch");
	cr_assert_str_eq(json_string_value(json_object_get(v, "detail")),
	                 "y_pred has shape [4, 3]");
	cr_assert_str_eq(json_string_value(json_object_get(v, "pointer")), "/y_true/3");
	cr_assert_eq(json_object_size(v), 6);
	json_decref(v);
	api_reply_free(&r);
	cr_assert_null(r.body);
	cr_assert_eq(r.len, 0);
}

Test(reply, problem_without_pointer_omits_it)
{
	api_reply r;
	api_reply_error(&r, 413, "too_many_elements", "more than %d numbers", 10);
	cr_assert_eq(r.status, 413);
	json_t *v = body_json(&r);
	cr_assert_null(json_object_get(v, "pointer"));
	cr_assert_str_eq(json_string_value(json_object_get(v, "title")), "Payload Too Large");
	cr_assert_str_eq(json_string_value(json_object_get(v, "detail")), "more than 10 numbers");
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, titles)
{
	static const struct {
		int status;
		const char *title;
	} t[] = {{400, "Bad Request"},
	         {404, "Not Found"},
	         {409, "Conflict"},
	         {503, "Service Unavailable"},
	         {507, "Insufficient Storage"},
	         {429, "Too Many Requests"},
	         {418, "Client Error"}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		api_reply r;
		api_reply_error(&r, t[i].status, "x", "y");
		json_t *v = body_json(&r);
		cr_assert_str_eq(json_string_value(json_object_get(v, "title")), t[i].title);
		json_decref(v);
		api_reply_free(&r);
	}
}

Test(reply, detail_is_escaped)
{
	api_reply r;
	const char *nasty = "quote \" backslash \\ tab \t nl \n bell \x07 utf8 \xc3\xa9";
	api_reply_error(&r, 400, "malformed_json", "%s", nasty);
	json_t *v = body_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(v, "detail")), nasty);
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, invalid_utf8_in_detail_is_replaced)
{
	/* jansson's error texts quote raw request bytes */
	api_reply r;
	api_reply_error(&r, 400, "malformed_json",
	                "near '\xc7\xa3\xdd' and \xed\xa0\x80 and \xff ok \xc3\xa9");
	json_t *v = body_json(&r);
	const char *d = json_string_value(json_object_get(v, "detail"));
	cr_assert(strstr(d, "\xc7\xa3\xef\xbf\xbd'"), "%s", d);
	cr_assert(strstr(d, "ok \xc3\xa9"), "%s", d);
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, truncated_utf8_detail_stays_valid)
{
	api_problem p;
	api_reply r;
	char detail[sizeof p.detail + 80];
	/* 'x' then 2-byte characters so the cut (sizeof p.detail - 1 bytes,
	 * an odd number) lands mid-character */
	size_t n = 0;
	detail[n++] = 'x';
	while (n + 2 < sizeof detail) {
		detail[n++] = (char)0xc3;
		detail[n++] = (char)0xa9;
	}
	detail[n] = 0;
	api_problem_set(&p, 422, "bad_option", "/a", "%s", detail);
	api_reply_problem(&r, &p);
	json_t *v = body_json(&r); /* jansson rejects invalid UTF-8 */
	cr_assert_gt(strlen(json_string_value(json_object_get(v, "detail"))), sizeof p.detail - 8);
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, json_is_compact_and_steals)
{
	api_reply r;
	json_t *o = json_pack("{s:i, s:[i, i], s:n, s:b}", "count", 3, "a", 1, 2, "x", "ok", 1);
	json_incref(o);
	api_reply_json(&r, 200, o);
	cr_assert_eq(o->refcount, 1, "api_reply_json must steal exactly one reference");
	json_decref(o);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.content_type, API_JSON);
	cr_assert_null(memchr(r.body, ' ', r.len), "not compact: %.*s", (int)r.len, r.body);
	cr_assert_null(memchr(r.body, '\n', r.len));
	json_t *v = body_json(&r);
	cr_assert_eq(json_integer_value(json_object_get(v, "count")), 3);
	cr_assert(json_is_null(json_object_get(v, "x")));
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, doubles_round_trip)
{
	json_t *a = json_array();
	double xs[2000];
	srand(12345);
	for (int i = 0; i < 2000; i++) {
		/* random bit patterns of finite doubles over many magnitudes */
		double m = (double)rand() / RAND_MAX;
		xs[i] = ldexp(m, (rand() % 2000) - 1000) * (i % 2 ? -1 : 1);
		if (i == 0)
			xs[i] = 0.1;
		if (i == 1)
			xs[i] = 1.0 / 3.0;
		if (i == 2)
			xs[i] = 5e-324;
		if (i == 3)
			xs[i] = 1.7976931348623157e308;
		cr_assert_eq(json_array_append_new(a, json_real(xs[i])), 0);
	}
	api_reply r;
	api_reply_json(&r, 200, a);
	json_error_t e;
	json_t *v = json_loadb(r.body, r.len, JSON_DECODE_ANY, &e);
	cr_assert_not_null(v, "%s", e.text);
	for (int i = 0; i < 2000; i++) {
		double got = json_number_value(json_array_get(v, (size_t)i));
		cr_assert(memcmp(&got, &xs[i], sizeof got) == 0, "element %d: %.17g != %.17g", i,
		          got, xs[i]);
	}
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, doubles_are_printed_in_their_shortest_form)
{
	static const struct {
		double x;
		const char *text;
	} cases[] = {
	        {0.1, "0.1"},
	        {0.51552076992710683, "0.5155207699271068"},
	        {1.0, "1.0"},
	        {-0.0, "-0.0"},
	        {1.0 / 3.0, "0.3333333333333333"},
	        {1e300, "1e+300"},
	        {5e-324, "4.94065645841247e-324"},
	        {2.5, "2.5"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		api_reply r;
		api_reply_json(&r, 200, json_pack("[f]", cases[i].x));
		char want[64];
		snprintf(want, sizeof want, "[%s]", cases[i].text);
		cr_expect_str_eq(r.body, want, "%.17g", cases[i].x);
		api_reply_free(&r);
	}
}

Test(reply, nan_cannot_reach_the_wire)
{
	/* jansson refuses non-finite reals; a caller that forgets to check
	 * simply loses the member, and a NULL body is a 503, not a crash. */
	cr_assert_null(json_real(NAN));
	cr_assert_null(json_real(INFINITY));
	json_t *o = json_object();
	cr_assert_eq(json_object_set_new(o, "loss", json_real(NAN)), -1);
	json_t *r1 = json_real(1.0);
	cr_assert_eq(json_real_set(r1, NAN), -1);
	json_object_set_new(o, "x", r1);
	api_reply r;
	api_reply_json(&r, 200, o);
	cr_assert_eq(r.status, 200);
	cr_assert_null(strstr(r.body, "nan"));
	cr_assert_null(strstr(r.body, "NaN"));
	api_reply_free(&r);

	api_reply_json(&r, 200, NULL);
	cr_assert_eq(r.status, 503);
	cr_assert_str_eq(r.content_type, API_PROBLEM_JSON);
	json_t *v = body_json(&r);
	cr_assert_str_eq(json_string_value(json_object_get(v, "code")), "out_of_memory");
	json_decref(v);
	api_reply_free(&r);
}

Test(reply, free_accepts_null_and_empty)
{
	api_reply r = {0};
	api_reply_free(NULL);
	api_reply_free(&r);
	api_reply_free(&r);
	cr_assert_null(r.body);
}

Test(reply, allocation_failures_still_give_a_status)
{
	api_reply r;
	/* the problem body itself cannot be allocated: 503 without a body */
	api__alloc_fail_after(1);
	api_reply_error(&r, 422, "bad_option", "x");
	api__alloc_fail_after(0);
	cr_assert_eq(r.status, 503);
	cr_assert_str_eq(r.content_type, API_PROBLEM_JSON);
	cr_assert_null(r.body);
	cr_assert_eq(r.len, 0);
	api_reply_free(&r);

	/* every allocation of a JSON reply failing in turn: a 200 with its
	 * body, or a 503 (with a body when that one could be allocated) */
	for (long i = 1; i < 40; i++) {
		json_t *o = json_pack("{s:[f, f, f], s:s}", "a", 0.5, 1.5, 2.5, "b",
		                      "a string long enough to need the buffer to grow past its "
		                      "first 256 bytes, which takes a few more words than one "
		                      "would think, so here are some more of them, and then "
		                      "a few more, until the buffer has had to be reallocated");
		cr_assert_not_null(o);
		api__alloc_fail_after(i);
		api_reply_json(&r, 200, o);
		api__alloc_fail_after(0);
		cr_assert(r.status == 200 || r.status == 503, "%d", r.status);
		if (r.status == 200) {
			json_t *v = body_json(&r);
			cr_assert_eq(json_array_size(json_object_get(v, "a")), 3);
			json_decref(v);
		} else if (r.body) {
			json_t *v = body_json(&r);
			cr_assert_str_eq(json_string_value(json_object_get(v, "code")),
			                 "out_of_memory");
			json_decref(v);
		}
		api_reply_free(&r);
	}
}
