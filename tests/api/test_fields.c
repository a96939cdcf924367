/*
 * test_fields.c - api/src/fields.c: the option getters every handler uses.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "lossd/api.h"
#include "lossd/loss.h"
#include "fields.h"

static json_t *obj(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	cr_assert_not_null(v, "%s", e.text);
	return v;
}

static void expect_problem(const api_problem *p, int status, const char *code, const char *pointer)
{
	cr_assert_eq(p->status, status, "%d %s %s", p->status, p->code, p->detail);
	cr_assert_str_eq(p->code, code, "%s", p->detail);
	cr_assert_str_eq(p->pointer, pointer);
	cr_assert_neq(p->detail[0], '\0');
}

Test(fields, pointer_escapes)
{
	char b[64];
	cr_assert_str_eq(api__pointer(b, sizeof b, "", "y_true"), "/y_true");
	cr_assert_str_eq(api__pointer(b, sizeof b, NULL, "a/b~c"), "/a~1b~0c");
	cr_assert_str_eq(api__pointer(b, sizeof b, "/heads/2", "loss"), "/heads/2/loss");
	cr_assert_str_eq(api__pointer(b, 8, "/heads/2", "loss"), "/heads/");
}

Test(fields, unknown_field_suggests)
{
	static const char *const allowed[] = {"loss",        "y_true",       "y_pred",
	                                      "from_logits", "ignore_class", NULL};
	api_problem p;
	json_t *o = obj("{\"loss\": \"x\", \"from_logit\": true}");
	cr_assert_eq(api__check_fields(o, allowed, "", &p), -1);
	expect_problem(&p, 422, "unknown_field", "/from_logit");
	cr_assert(strstr(p.detail, "did you mean \"from_logits\""), "%s", p.detail);
	json_decref(o);

	o = obj("{\"ignore\": 1}");
	cr_assert_eq(api__check_fields(o, allowed, "/heads/0", &p), -1);
	expect_problem(&p, 422, "unknown_field", "/heads/0/ignore");
	cr_assert(strstr(p.detail, "ignore_class"), "%s", p.detail);
	json_decref(o);

	o = obj("{\"zzzzzzzz\": 1}");
	cr_assert_eq(api__check_fields(o, allowed, "", &p), -1);
	cr_assert_null(strstr(p.detail, "did you mean"), "%s", p.detail);
	json_decref(o);

	o = obj("{\"loss\": 1, \"y_true\": 2}");
	cr_assert_eq(api__check_fields(o, allowed, "", &p), 0);
	json_decref(o);
}

Test(fields, require)
{
	api_problem p;
	json_t *o = obj("{\"a\": 1, \"n\": null}");
	cr_assert_eq(api__require(o, "", "a", &p), 0);
	cr_assert_eq(api__require(o, "", "b", &p), -1);
	expect_problem(&p, 422, "missing_field", "/b");
	cr_assert_eq(api__require(o, "", "n", &p), -1, "null counts as missing");
	json_decref(o);
}

Test(fields, bools)
{
	api_problem p;
	bool b;
	json_t *o = obj("{\"t\": true, \"f\": false, \"s\": \"true\", \"i\": 1, \"n\": null}");
	cr_assert_eq(api__get_bool(&b, o, "", "t", false, &p), 0);
	cr_assert(b);
	cr_assert_eq(api__get_bool(&b, o, "", "f", true, &p), 0);
	cr_assert(!b);
	cr_assert_eq(api__get_bool(&b, o, "", "absent", true, &p), 0);
	cr_assert(b);
	cr_assert_eq(api__get_bool(&b, o, "", "n", true, &p), 0);
	cr_assert(b);
	cr_assert_eq(api__get_bool(&b, o, "", "s", false, &p), -1);
	expect_problem(&p, 422, "bad_type", "/s");
	cr_assert(strstr(p.detail, "s must be a boolean"), "%s", p.detail);
	cr_assert(strstr(p.detail, "got a string"), "%s", p.detail);
	cr_assert_eq(api__get_bool(&b, o, "/h", "i", false, &p), -1);
	expect_problem(&p, 422, "bad_type", "/h/i");
	json_decref(o);
}

Test(fields, numbers)
{
	api_problem p;
	double x;
	json_t *o = obj("{\"r\": 0.25, \"i\": 3, \"s\": \"1\", \"big\": 1.5}");
	cr_assert_eq(api__get_number(&x, o, "", "r", 0, -INFINITY, INFINITY, &p), 0);
	cr_assert_float_eq(x, 0.25, 1e-15);
	cr_assert_eq(api__get_number(&x, o, "", "i", 0, 0, 10, &p), 0);
	cr_assert_float_eq(x, 3.0, 1e-15);
	cr_assert_eq(api__get_number(&x, o, "", "absent", 2.0, 0, 1, &p), 0);
	cr_assert_float_eq(x, 2.0, 1e-15);
	cr_assert_eq(api__get_number(&x, o, "", "s", 0, -INFINITY, INFINITY, &p), -1);
	expect_problem(&p, 422, "bad_type", "/s");
	cr_assert_eq(api__get_number(&x, o, "", "big", 0, 0, 1, &p), -1);
	expect_problem(&p, 422, "bad_option", "/big");
	cr_assert(strstr(p.detail, "[0, 1], got 1.5"), "%s", p.detail);
	cr_assert_eq(api__get_number(&x, o, "", "big", 0, 2, INFINITY, &p), -1);
	cr_assert(strstr(p.detail, "at least 2"), "%s", p.detail);
	json_decref(o);
}

Test(fields, ints)
{
	api_problem p;
	int64_t v;
	json_t *o = obj("{\"a\": -100, \"b\": 2.0, \"c\": 2.5, \"d\": \"3\", \"e\": 1e30}");
	cr_assert_eq(api__get_int(&v, o, "", "a", 0, INT64_MIN, INT64_MAX, &p), 0);
	cr_assert_eq(v, -100);
	cr_assert_eq(api__get_int(&v, o, "", "b", 0, 0, 10, &p), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(api__get_int(&v, o, "", "absent", 200, 0, 10, &p), 0);
	cr_assert_eq(v, 200);
	cr_assert_eq(api__get_int(&v, o, "", "c", 0, 0, 10, &p), -1);
	expect_problem(&p, 422, "bad_option", "/c");
	cr_assert(strstr(p.detail, "whole number"), "%s", p.detail);
	cr_assert_eq(api__get_int(&v, o, "", "d", 0, 0, 10, &p), -1);
	expect_problem(&p, 422, "bad_type", "/d");
	cr_assert_eq(api__get_int(&v, o, "", "e", 0, INT64_MIN, INT64_MAX, &p), -1);
	expect_problem(&p, 422, "bad_option", "/e");
	cr_assert_eq(api__get_int(&v, o, "", "a", 0, 2, 10, &p), -1);
	expect_problem(&p, 422, "bad_option", "/a");
	cr_assert(strstr(p.detail, "[2, 10], got -100"), "%s", p.detail);
	json_decref(o);
}

Test(fields, enums_and_strings)
{
	static const char *const names[] = {"mean", "sum", "sum_over_batch_size", "none", NULL};
	api_problem p;
	int k;
	const char *s;
	json_t *o = obj("{\"r\": \"sum\", \"bad\": \"avg\", \"num\": 1}");
	cr_assert_eq(api__get_enum(&k, o, "", "r", names, 0, &p), 0);
	cr_assert_eq(k, 1);
	cr_assert_eq(api__get_enum(&k, o, "", "absent", names, 3, &p), 0);
	cr_assert_eq(k, 3);
	cr_assert_eq(api__get_enum(&k, o, "", "bad", names, 0, &p), -1);
	expect_problem(&p, 422, "bad_option", "/bad");
	cr_assert(strstr(p.detail, "\"mean\", \"sum\", \"sum_over_batch_size\", \"none\""), "%s",
	          p.detail);
	cr_assert(strstr(p.detail, "\"avg\""), "%s", p.detail);
	cr_assert_eq(api__get_enum(&k, o, "", "num", names, 0, &p), -1);
	expect_problem(&p, 422, "bad_type", "/num");
	cr_assert_eq(api__get_string(&s, o, "", "r", NULL, &p), 0);
	cr_assert_str_eq(s, "sum");
	cr_assert_eq(api__get_string(&s, o, "", "absent", "dflt", &p), 0);
	cr_assert_str_eq(s, "dflt");
	cr_assert_eq(api__get_string(&s, o, "", "num", NULL, &p), -1);
	expect_problem(&p, 422, "bad_type", "/num");
	json_decref(o);
}

/* The loss names are the longest list: every one appears whole in both
 * problems (it was once cut mid-word, `"mean_squared; got ...`). */
Test(fields, enum_lists_every_loss_name)
{
	api_problem p;
	int k;
	char quoted[64];
	json_t *o =
	        obj("{\"loss\": \"nope_nope_nope_nope_nope_nope_nope_nope_nope_nope_nope_nope\", "
	            "\"n\": 1}");
	const char *keys[] = {"loss", "n"};
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(api__get_enum(&k, o, "", keys[i], eng_loss_names, 0, &p), -1);
		for (const char *const *a = eng_loss_names; *a; a++) {
			snprintf(quoted, sizeof quoted, "\"%s\"", *a);
			cr_assert(strstr(p.detail, quoted), "%s missing from: %s", quoted,
			          p.detail);
		}
		cr_assert(strstr(p.detail, "; got "), "%s", p.detail);
	}
	json_decref(o);
}

Test(fields, tensors)
{
	api_problem p;
	api_tensor t = API_TENSOR_INIT;
	int64_t budget = 10;
	api_tensor_opts opts = {false, &budget, NULL, NULL};
	json_t *o = obj("{\"y\": [[1, 2], [3, 4]], \"bad\": [1, [2]], \"n\": null}");
	cr_assert_eq(api__get_tensor(&t, o, "/heads/1", "y", true, &opts, &p), 0);
	cr_assert_eq(t.t.size, 4);
	cr_assert_eq(budget, 6);
	api_tensor_free(&t);
	cr_assert_eq(api__get_tensor(&t, o, "", "absent", false, &opts, &p), 0);
	cr_assert_null(t.t.data);
	cr_assert_eq(api__get_tensor(&t, o, "", "n", false, &opts, &p), 0);
	cr_assert_null(t.t.data);
	cr_assert_eq(api__get_tensor(&t, o, "/heads/1", "absent", true, &opts, &p), -1);
	expect_problem(&p, 422, "missing_field", "/heads/1/absent");
	cr_assert_eq(api__get_tensor(&t, o, "/heads/1", "bad", true, &opts, &p), -1);
	expect_problem(&p, 422, "shape_mismatch", "/heads/1/bad/1");
	json_decref(o);
}

Test(fields, type_names)
{
	json_t *o = obj("{\"a\": [], \"b\": {}, \"c\": \"\", \"d\": 1, \"e\": 1.5, \"f\": true, "
	                "\"g\": null}");
	cr_assert_str_eq(api__type_name(json_object_get(o, "a")), "an array");
	cr_assert_str_eq(api__type_name(json_object_get(o, "b")), "an object");
	cr_assert_str_eq(api__type_name(json_object_get(o, "c")), "a string");
	cr_assert_str_eq(api__type_name(json_object_get(o, "d")), "a number");
	cr_assert_str_eq(api__type_name(json_object_get(o, "e")), "a number");
	cr_assert_str_eq(api__type_name(json_object_get(o, "f")), "a boolean");
	cr_assert_str_eq(api__type_name(json_object_get(o, "g")), "null");
	json_decref(o);
}
