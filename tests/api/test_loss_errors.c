/*
 * test_loss_errors.c - every rejection of docs/API.md sections 1-2 by POST
 * /v1/loss (api/src/loss.c) comes back with its status, code and JSON
 * Pointer, heads included (/heads/i/...). Also: reduction "none" has no
 * "loss" key, undefined values are null.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "mem.h"

typedef struct err_case {
	const char *what;
	const char *body;
	int status;
	const char *code;
	const char *pointer;
} err_case;

#define P2   "[[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]]"
#define SCCE "\"loss\": \"sparse_categorical_crossentropy\""

/* Criterion may re-execute the binary per parameter: parameters are indices. */
static const err_case cases[] = {
        {"malformed JSON", "{\"loss\": ", 400, "malformed_json", NULL},
        {"missing loss", "{\"y_true\": [0], \"y_pred\": [[1, 0]]}", 422, "missing_field", "/loss"},
        {"missing y_pred", "{" SCCE ", \"y_true\": [0]}", 422, "missing_field", "/y_pred"},
        {"unknown loss", "{\"loss\": \"softmax_xent\", \"y_true\": [0], \"y_pred\": [[1, 0]]}", 422,
         "bad_option", "/loss"},
        {"unknown field", "{" SCCE ", \"y_true\": [0], \"y_pred\": [[1, 0]], \"from_logit\": true}",
         422, "unknown_field", "/from_logit"},
        {"bad reduction",
         "{" SCCE ", \"y_true\": [0], \"y_pred\": [[1, 0]], \"reduction\": \"avg\"}", 422,
         "bad_option", "/reduction"},
        {"from_logits not a boolean",
         "{" SCCE ", \"y_true\": [0], \"y_pred\": [[1, 0]], \"from_logits\": \"yes\"}", 422,
         "bad_type", "/from_logits"},
        {"shape mismatch",
         "{" SCCE ", \"y_true\": [0, 1, 2, 0, 1], \"y_pred\": {\"shape\": [4, 3], \"data\": "
         "[1,1,1,1,1,1,1,1,1,1,1,1]}}",
         422, "shape_mismatch", "/y_true"},
        {"label out of range", "{" SCCE ", \"y_true\": [0, 3], \"y_pred\": " P2 "}", 422,
         "label_out_of_range", "/y_true/1"},
        {"label not whole", "{" SCCE ", \"y_true\": [1.5, 0], \"y_pred\": " P2 "}", 422,
         "label_out_of_range", "/y_true/0"},
        {"negative label not ignored", "{" SCCE ", \"y_true\": [0, -100], \"y_pred\": " P2 "}", 422,
         "label_out_of_range", "/y_true/1"},
        {"negative probability",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": [[0.2, -0.3, 0.5], [0.1, 0.1, 0.8]]}", 422,
         "prediction_out_of_range", "/y_pred/1"},
        {"row sums to 0",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": [[0.2, 0.3, 0.5], [0, 0, 0]]}", 422,
         "prediction_out_of_range", "/y_pred/3"},
        {"binary probability > 1",
         "{\"loss\": \"binary_crossentropy\", \"y_true\": [0, 1], \"y_pred\": [0.5, 1.5]}", 422,
         "prediction_out_of_range", "/y_pred/1"},
        {"binary target outside [0, 1]",
         "{\"loss\": \"binary_crossentropy\", \"y_true\": [0, 2], \"y_pred\": [0.5, 0.5]}", 422,
         "label_out_of_range", "/y_true/1"},
        {"negative class weight",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"class_weight\": [1, -2, 1]}", 422,
         "bad_weight", "/class_weight/1"},
        {"NaN class weight (b64)",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": [[1, 2], [3, 4]], \"class_weight\": "
         "{\"shape\": [2], \"dtype\": \"float64\", \"b64\": \"AAAAAAAA+H8AAAAAAADwPw==\"}}",
         422, "non_finite", "/class_weight"}, /* the decoder: flat index in the detail */
        {"NaN class weight under propagate",
         "{" SCCE
         ", \"y_true\": [0, 1], \"y_pred\": [[1, 2], [3, 4]], \"nan_policy\": \"propagate\", "
         "\"class_weight\": {\"shape\": [2], \"dtype\": \"float64\", \"b64\": "
         "\"AAAAAAAA+H8AAAAAAADwPw==\"}}",
         422, "bad_weight", "/class_weight/0"},
        {"NaN logit (b64 float32)",
         "{" SCCE ", \"from_logits\": true, \"y_true\": [0, 1], \"y_pred\": "
         "{\"shape\": [2, 2], \"dtype\": \"float32\", \"b64\": \"zczMPQAAwH8AAAA/AAAAPw==\"}}",
         422, "non_finite", "/y_pred"},
        {"negative sample weight",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"sample_weight\": [-1, 1]}", 422,
         "bad_weight", "/sample_weight/0"},
        {"sample weight shape",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"sample_weight\": [1, 1, 1]}", 422,
         "shape_mismatch", "/sample_weight"},
        {"axis out of range for y_pred",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"axis\": 2}", 422, "bad_option",
         "/axis"},
        {"axis beyond any rank", "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"axis\": 99}",
         422, "bad_option", "/axis"},
        {"cost matrix shape",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"cost_matrix\": [[1, 1], [1, 1]]}",
         422, "shape_mismatch", "/cost_matrix"},
        {"class weight count",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"class_weight\": [1, 1]}", 422,
         "shape_mismatch", "/class_weight"},
        {"label_smoothing > 1",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"label_smoothing\": 2}", 422,
         "bad_option", "/label_smoothing"},
        {"pos_weight on a categorical loss",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"pos_weight\": 2}", 422, "bad_option",
         "/pos_weight"},
        {"delta on a categorical loss",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"delta\": 2}", 422, "bad_option",
         "/delta"},
        {"ignore_class and ignore_index differ",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2
         ", \"ignore_class\": -1, \"ignore_index\": -100}",
         422, "bad_option", "/ignore_index"},
        {"bad gmm error",
         "{\"loss\": \"gaussian_mixture\", \"y_true\": [[1, 2]], \"y_pred\": [[1, 0.5, 0.1]], "
         "\"error\": \"rmse\"}",
         422, "bad_option", "/error"},
        {"bad nan_policy",
         "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"nan_policy\": \"omit\"}", 422,
         "bad_option", "/nan_policy"},
        {"gmm c_k <= 0",
         "{\"loss\": \"gaussian_mixture\", \"y_true\": [[1, 2]], \"y_pred\": [[1, 0.5, 0.0]]}", 422,
         "prediction_out_of_range", "/y_pred/2"},
        {"gmm y_pred not 3K",
         "{\"loss\": \"gaussian_mixture\", \"y_true\": [[1, 2]], \"y_pred\": [[1, 0.5]]}", 422,
         "shape_mismatch", "/y_true"},
        {"ragged y_pred", "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": [[1, 2], [3]]}", 422, NULL,
         NULL},
        {"head label out of range",
         "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 "}, {" SCCE
         ", \"y_true\": [0, 7], \"y_pred\": " P2 "}]}",
         422, "label_out_of_range", "/heads/1/y_true/1"},
        {"head unknown field",
         "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"weights\": 1}]}", 422,
         "unknown_field", "/heads/0/weights"},
        {"head missing loss", "{\"heads\": [{\"y_true\": [0], \"y_pred\": [[1, 0]]}]}", 422,
         "missing_field", "/heads/0/loss"},
        {"head_weights length",
         "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2
         "}], \"head_weights\": [1, 2]}",
         422, "shape_mismatch", "/head_weights"},
        {"negative head weight",
         "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2
         "}], \"head_weights\": [-1]}",
         422, "bad_weight", "/head_weights/0"},
        {"heads not an array", "{\"heads\": {}}", 422, "bad_type", "/heads"},
        {"empty heads", "{\"heads\": []}", 422, "bad_option", "/heads"},
        {"loss fields beside heads",
         "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 "}], \"loss\": \"huber\"}",
         422, "unknown_field", "/loss"},
        {"head not an object", "{\"heads\": [3]}", 422, "bad_type", "/heads/0"},
};

static void call(api_reply *r, const char *body)
{
	api_ctx ctx = API_CTX_INIT;
	api_loss(r, &ctx, body, strlen(body));
}

static json_t *parse(const api_reply *r)
{
	json_error_t je;
	json_t *j = json_loadb(r->body, r->len, 0, &je);
	cr_assert_not_null(j, "reply is not JSON: %.*s", (int)r->len, r->body);
	return j;
}

ParameterizedTestParameters(loss_errors, rejects)
{
	static int idx[sizeof cases / sizeof *cases];
	for (size_t i = 0; i < sizeof idx / sizeof *idx; i++)
		idx[i] = (int)i;
	return cr_make_param_array(int, idx, sizeof idx / sizeof *idx);
}

ParameterizedTest(int *ip, loss_errors, rejects)
{
	const err_case *c = &cases[*ip];
	api_reply r = {0};
	call(&r, c->body);
	json_t *j = parse(&r);
	cr_expect_eq(r.status, c->status, "%s: status %d: %.*s", c->what, r.status, (int)r.len,
	             r.body);
	cr_expect_str_eq(r.content_type, API_PROBLEM_JSON, "%s", c->what);
	cr_expect_eq(json_integer_value(json_object_get(j, "status")), c->status);
	if (c->code)
		cr_expect_str_eq(json_string_value(json_object_get(j, "code")), c->code, "%s: %.*s",
		                 c->what, (int)r.len, r.body);
	if (c->pointer)
		cr_expect_str_eq(json_string_value(json_object_get(j, "pointer")), c->pointer,
		                 "%s: %.*s", c->what, (int)r.len, r.body);
	cr_expect(json_string_length(json_object_get(j, "detail")) > 0);
	json_decref(j);
	api_reply_free(&r);
}

Test(loss_errors, shape_detail_names_both_shapes)
{
	api_reply r = {0};
	call(&r, "{" SCCE ", \"y_true\": [0, 1, 2, 0, 1], \"y_pred\": {\"shape\": [4, 3], "
	         "\"data\": [1,1,1,1,1,1,1,1,1,1,1,1]}}");
	json_t *j = parse(&r);
	cr_expect(strstr(json_string_value(json_object_get(j, "detail")),
	                 "y_pred has shape [4, 3] but y_true has shape [5]") != NULL,
	          "%.*s", (int)r.len, r.body);
	json_decref(j);
	api_reply_free(&r);
}

Test(loss_errors, reduction_none_has_no_loss_and_nested_positions)
{
	api_reply r = {0};
	call(&r,
	     "{" SCCE ", \"from_logits\": true, \"reduction\": \"none\", \"ignore_class\": -1, "
	     "\"y_true\": [[0, -1], [1, 1]], \"y_pred\": [[[0, 0], [1, 2]], [[0, 0], [5, 5]]]}");
	cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
	json_t *j = parse(&r);
	cr_expect_null(json_object_get(j, "loss"));
	json_t *pp = json_object_get(j, "per_position");
	cr_assert(json_is_array(pp) && json_array_size(pp) == 2);
	cr_expect_eq(json_array_size(json_array_get(pp, 0)), 2);
	cr_expect_eq(json_real_value(json_array_get(json_array_get(pp, 0), 1)), 0.0,
	             "ignored -> 0");
	cr_expect_eq(json_integer_value(json_object_get(j, "ignored")), 1);
	json_decref(j);
	api_reply_free(&r);
}

Test(loss_errors, undefined_values_are_null)
{
	api_reply r = {0};
	call(&r, "{" SCCE
	         ", \"ignore_index\": 0, \"y_true\": [0, 0], \"y_pred\": [[0.5, 0.5], [1, 0]], "
	         "\"confusion_matrix\": true}");
	cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
	json_t *j = parse(&r);
	cr_expect(json_is_null(json_object_get(j, "loss")));
	cr_expect(json_is_null(json_object_get(j, "accuracy")));
	json_t *pc = json_array_get(json_object_get(j, "per_class"), 0);
	cr_expect(json_is_null(json_object_get(pc, "loss_mean")));
	cr_expect(json_is_null(json_object_get(pc, "precision")));
	cr_expect(json_is_null(json_object_get(pc, "f1")));
	cr_expect(strstr(r.body, "NaN") == NULL && strstr(r.body, "nan") == NULL);
	json_decref(j);
	api_reply_free(&r);
}

/* f1 = 2 correct / (predicted + support): 0 for a class present but never
 * predicted or predicted but absent (scikit-learn, zero_division=0), null
 * only when both are 0. */
Test(loss_errors, f1_is_zero_for_a_class_never_predicted)
{
	api_reply r = {0};
	call(&r, "{" SCCE ", \"y_true\": [0, 1, 0], "
	         "\"y_pred\": [[0.9, 0.1, 0], [0.8, 0.2, 0], [0.1, 0.1, 0.8]]}");
	cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
	json_t *j = parse(&r), *pc = json_object_get(j, "per_class");
	json_t *c0 = json_array_get(pc, 0), *c1 = json_array_get(pc, 1),
	       *c2 = json_array_get(pc, 2);
	/* class 0: support 2, predicted 2, correct 1 */
	cr_expect_float_eq(json_real_value(json_object_get(c0, "f1")), 0.5, 1e-15);
	/* class 1: support 1, never predicted: precision null, f1 0 */
	cr_expect(json_is_null(json_object_get(c1, "precision")));
	cr_expect(json_is_real(json_object_get(c1, "f1")), "%.*s", (int)r.len, r.body);
	cr_expect_eq(json_real_value(json_object_get(c1, "f1")), 0.0);
	/* class 2: predicted once, absent: recall null, f1 0 */
	cr_expect(json_is_null(json_object_get(c2, "recall")));
	cr_expect(json_is_real(json_object_get(c2, "f1")));
	cr_expect_eq(json_real_value(json_object_get(c2, "f1")), 0.0);
	json_decref(j);
	api_reply_free(&r);
}

Test(loss_errors, head_with_undefined_loss_makes_the_sum_null)
{
	api_reply r = {0};
	call(&r, "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 "}, "
	         "{" SCCE ", \"ignore_class\": 1, \"y_true\": [1, 1], \"y_pred\": " P2 "}]}");
	cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
	json_t *j = parse(&r);
	cr_expect(json_is_null(json_object_get(j, "loss")));
	cr_expect_eq(json_array_size(json_object_get(j, "heads")), 2);
	cr_expect(json_is_real(
	        json_object_get(json_array_get(json_object_get(j, "heads"), 0), "loss")));
	json_decref(j);
	api_reply_free(&r);
}

Test(loss_errors, per_class_false_omits_the_table)
{
	api_reply r = {0};
	call(&r, "{" SCCE ", \"per_class\": false, \"y_true\": [0, 1], \"y_pred\": " P2 "}");
	cr_assert_eq(r.status, 200, "%.*s", (int)r.len, r.body);
	json_t *j = parse(&r);
	cr_expect_null(json_object_get(j, "per_class"));
	cr_expect_null(json_object_get(j, "confusion_matrix"));
	cr_expect(json_is_real(json_object_get(j, "loss")));
	json_decref(j);
	api_reply_free(&r);
}

/* Failing the n-th allocation of the api layer, for every n, gives a 503
 * out_of_memory (never a crash, a leak under ASan, or a wrong 200), until
 * n is past the last allocation and the reply is the normal one. */
Test(loss_errors, out_of_memory_at_every_allocation, .timeout = 60)
{
	static const char *const bodies[] = {
	        "{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 ", \"confusion_matrix\": true, "
	        "\"class_weight\": [1, 2, 3], \"sample_weight\": [0.5, 1]}",
	        "{" SCCE ", \"reduction\": \"none\", \"y_true\": [[0, 1]], \"y_pred\": [" P2 "]}",
	        "{\"heads\": [{" SCCE ", \"y_true\": [0, 1], \"y_pred\": " P2 "}, "
	        "{\"loss\": \"huber\", \"y_true\": [1, 2], \"y_pred\": [1.5, 2]}], "
	        "\"head_weights\": [1, 2]}",
	};
	for (size_t b = 0; b < sizeof bodies / sizeof *bodies; b++) {
		api_reply ok = {0};
		call(&ok, bodies[b]);
		cr_assert_eq(ok.status, 200, "%.*s", (int)ok.len, ok.body);
		int fails = 0;
		for (long n = 1; n < 10000; n++) {
			api_reply r = {0};
			api__alloc_fail_after(n);
			call(&r, bodies[b]);
			api__alloc_fail_after(0);
			if (r.status == 200) {
				cr_expect(r.len == ok.len && memcmp(r.body, ok.body, ok.len) == 0,
				          "body %zu, allocation %ld: a different 200", b, n);
				api_reply_free(&r);
				break;
			}
			/* Every failed allocation is the 503, also one inside
			 * jansson's lexer (which would otherwise damage a string:
			 * api_parse_body discards such a tree). */
			cr_expect(r.status == 503, "body %zu, allocation %ld: %d %.*s", b, n,
			          r.status, (int)r.len, r.body);
			cr_expect_str_eq(r.content_type, API_PROBLEM_JSON);
			fails += r.status == 503;
			api_reply_free(&r);
		}
		cr_expect_gt(fails, 5, "body %zu: allocations were hooked", b);
		api_reply_free(&ok);
	}
}
