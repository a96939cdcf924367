/*
 * test_auc_errors.c - every way POST /v1/auc rejects a request: status,
 * problem code and JSON Pointer (api/src/auc.c), plus the non-error
 * replies that look like errors (one class present, NaN under
 * nan_policy "propagate").
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "lossd/api.h"

/* Arrays, not pointers: Criterion copies parameters into the test's
 * process, where pointers into this binary's data need not be valid. */
typedef struct reject {
	char name[48];
	char body[256];
	int status;
	char code[32];
	char pointer[32];
} reject;

#define B2 "\"y_true\": [0, 1], \"y_score\": [0.2, 0.8]"
#define OVR                                                                                        \
	"\"y_true\": [0, 1, 2], \"y_score\": [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]"

ParameterizedTestParameters(auc_errors, rejects)
{
	static reject cases[] = {
	        {"malformed json", "{\"y_true\": [0, 1", 400, "malformed_json", ""},
	        {"not an object", "[1, 2]", 400, "not_an_object", ""},
	        {"duplicate key", "{" B2 ", \"curve\": \"roc\", \"curve\": \"pr\"}", 400, "", ""},
	        {"unknown field", "{" B2 ", \"from_logit\": true}", 422, "unknown_field",
	         "/from_logit"},
	        {"missing y_true", "{\"y_score\": [0.2, 0.8]}", 422, "missing_field", "/y_true"},
	        {"missing y_score", "{\"y_true\": [0, 1]}", 422, "missing_field", "/y_score"},
	        {"bad curve", "{" B2 ", \"curve\": \"det\"}", 422, "bad_option", "/curve"},
	        {"curve not a string", "{" B2 ", \"curve\": 1}", 422, "bad_type", "/curve"},
	        {"bad method", "{" B2 ", \"method\": \"fast\"}", 422, "bad_option", "/method"},
	        {"num_thresholds 1", "{" B2 ", \"method\": \"binned\", \"num_thresholds\": 1}", 422,
	         "bad_option", "/num_thresholds"},
	        {"num_thresholds 2.5", "{" B2 ", \"num_thresholds\": 2.5}", 422, "bad_option",
	         "/num_thresholds"},
	        {"num_thresholds string", "{" B2 ", \"num_thresholds\": \"200\"}", 422, "bad_type",
	         "/num_thresholds"},
	        {"bad summation", "{" B2 ", \"summation_method\": \"trapezoid\"}", 422,
	         "bad_option", "/summation_method"},
	        {"bad average", "{" B2 ", \"average\": \"samples\"}", 422, "bad_option",
	         "/average"},
	        {"from_logits string", "{" B2 ", \"from_logits\": \"yes\"}", 422, "bad_type",
	         "/from_logits"},
	        {"return_curve number", "{" B2 ", \"return_curve\": 1}", 422, "bad_type",
	         "/return_curve"},
	        {"max_points 1", "{" B2 ", \"return_curve\": true, \"max_points\": 1}", 422,
	         "bad_option", "/max_points"},
	        {"max_fpr 0", "{" B2 ", \"max_fpr\": 0}", 422, "bad_option", "/max_fpr"},
	        {"max_fpr 1.5", "{" B2 ", \"max_fpr\": 1.5}", 422, "bad_option", "/max_fpr"},
	        {"max_fpr with pr", "{" B2 ", \"max_fpr\": 0.5, \"curve\": \"pr\"}", 422,
	         "bad_option", "/max_fpr"},
	        {"max_fpr with binned", "{" B2 ", \"max_fpr\": 0.5, \"method\": \"binned\"}", 422,
	         "bad_option", "/max_fpr"},
	        {"max_fpr with sketch", "{" B2 ", \"max_fpr\": 0.5, \"method\": \"sketch\"}", 422,
	         "bad_option", "/max_fpr"},
	        {"max_fpr multi-class", "{" OVR ", \"max_fpr\": 0.5}", 422, "bad_option",
	         "/max_fpr"},
	        {"positive_class out of range",
	         "{\"y_true\": [0, 1], \"y_score\": [[0.2, 0.8], [0.6, 0.4]], \"positive_class\": "
	         "2}",
	         422, "bad_option", "/positive_class"},
	        {"positive_class negative",
	         "{\"y_true\": [0, 1], \"y_score\": [[0.2, 0.8], [0.6, 0.4]], \"positive_class\": "
	         "-1}",
	         422, "bad_option", "/positive_class"},
	        {"positive_class with multi-label",
	         "{\"y_true\": [[0, 1], [1, 0]], \"y_score\": [[0.2, 0.8], [0.6, 0.4]], "
	         "\"positive_class\": 1}",
	         422, "bad_option", "/positive_class"},
	        {"label 2", "{\"y_true\": [0, 2, 1], \"y_score\": [0.1, 0.5, 0.9]}", 422,
	         "label_out_of_range", "/y_true/1"},
	        {"label 0.5", "{\"y_true\": [0, 1, 0.5], \"y_score\": [0.1, 0.5, 0.9]}", 422,
	         "label_out_of_range", "/y_true/2"},
	        {"label -1 binned",
	         "{\"y_true\": [-1, 1], \"y_score\": [0.1, 0.5], \"method\": \"binned\"}", 422,
	         "label_out_of_range", "/y_true/0"},
	        {"class id 3 of 3",
	         "{\"y_true\": [0, 3, 2], \"y_score\": [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, "
	         "0.2, 0.6]]}",
	         422, "label_out_of_range", "/y_true/1"},
	        {"class id 1.5 sketch",
	         "{\"y_true\": [0, 1.5, 2], \"y_score\": [[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, "
	         "0.2, 0.6]], \"method\": \"sketch\"}",
	         422, "label_out_of_range", "/y_true/1"},
	        {"multi-label 2",
	         "{\"y_true\": [[0, 1], [2, 0]], \"y_score\": [[0.2, 0.8], [0.6, 0.4]]}", 422,
	         "label_out_of_range", "/y_true/2"},
	        {"rows differ", "{\"y_true\": [0, 1, 1], \"y_score\": [0.2, 0.8]}", 422,
	         "shape_mismatch", "/y_true"},
	        {"multi-label columns differ",
	         "{\"y_true\": [[0, 1, 0], [1, 0, 1]], \"y_score\": [[0.2, 0.8], [0.6, 0.4]]}", 422,
	         "shape_mismatch", "/y_true"},
	        {"labels (N, C) for scores (N)",
	         "{\"y_true\": [[0, 1], [1, 0]], \"y_score\": [0.2, 0.8]}", 422, "shape_mismatch",
	         "/y_true"},
	        {"scores rank 3", "{\"y_true\": [0], \"y_score\": [[[0.2]]]}", 422,
	         "shape_mismatch", "/y_score"},
	        {"scalar scores", "{\"y_true\": 1, \"y_score\": 0.5}", 422, "shape_mismatch",
	         "/y_score"},
	        {"ragged scores", "{\"y_true\": [0, 1], \"y_score\": [[0.2, 0.8], [0.6]]}", 422,
	         "shape_mismatch", ""},
	        {"non-numeric score", "{\"y_true\": [0, 1], \"y_score\": [0.2, \"x\"]}", 422, "",
	         ""},
	        {"negative weight", "{" B2 ", \"sample_weight\": [1, -2]}", 422, "bad_weight",
	         "/sample_weight/1"},
	        {"weight length", "{" B2 ", \"sample_weight\": [1, 2, 3]}", 422, "shape_mismatch",
	         "/sample_weight"},
	        {"NaN score",
	         "{\"y_true\": [0, 1], \"y_score\": {\"shape\": [2], \"dtype\": \"float64\", "
	         "\"b64\": \"AAAAAAAA4D8AAAAAAAD4fw==\"}}",
	         422, "non_finite", "/y_score"},
	        {"bad nan_policy", "{" B2 ", \"nan_policy\": \"omit\"}", 422, "bad_option",
	         "/nan_policy"},
	        {"sketch_bytes too small", "{" B2 ", \"method\": \"sketch\", \"sketch_bytes\": 10}",
	         422, "bad_option", "/sketch_bytes"},
	};
	return cr_make_param_array(reject, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(reject *c, auc_errors, rejects)
{
	api_ctx ctx = API_CTX_INIT;
	api_reply r = {0};
	api_auc(&r, &ctx, c->body, strlen(c->body));
	cr_expect_eq(r.status, c->status, "%s: status %d: %.300s", c->name, r.status, r.body);
	cr_expect_str_eq(r.content_type, API_PROBLEM_JSON, "%s", c->name);
	json_error_t je;
	json_t *b = json_loadb(r.body, r.len, 0, &je);
	cr_assert_not_null(b, "%s: reply is not JSON", c->name);
	cr_expect_eq(json_integer_value(json_object_get(b, "status")), c->status);
	if (c->code[0])
		cr_expect_str_eq(json_string_value(json_object_get(b, "code")), c->code, "%s: %s",
		                 c->name, r.body);
	if (c->pointer[0])
		cr_expect_str_eq(json_string_value(json_object_get(b, "pointer")), c->pointer,
		                 "%s: %s", c->name, r.body);
	cr_expect(json_string_length(json_object_get(b, "detail")) > 0, "%s: no detail", c->name);
	json_decref(b);
	api_reply_free(&r);
}

/* Not errors: an undefined AUC is null with a warning. */
static json_t *ok(const char *body)
{
	api_ctx ctx = API_CTX_INIT;
	api_reply r = {0};
	api_auc(&r, &ctx, body, strlen(body));
	cr_assert_eq(r.status, 200, "%.300s", r.body);
	cr_expect_str_eq(r.content_type, API_JSON);
	json_t *b = json_loadb(r.body, r.len, 0, NULL);
	api_reply_free(&r);
	cr_assert_not_null(b);
	return b;
}

Test(auc_errors, one_class_is_null_with_warning)
{
	json_t *b = ok("{\"y_true\": [1, 1, 1], \"y_score\": [0.1, 0.5, 0.9]}");
	cr_expect(json_is_null(json_object_get(b, "auc")));
	cr_expect_eq(json_integer_value(json_object_get(b, "positives")), 3);
	cr_expect_eq(json_integer_value(json_object_get(b, "negatives")), 0);
	cr_expect_eq(json_array_size(json_object_get(b, "warnings")), 1);
	json_decref(b);

	/* class 2 never appears: its column is null, macro averages the rest */
	b = ok("{\"y_true\": [0, 1, 0, 1], \"y_score\": [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], "
	       "[0.5, 0.4, 0.1], [0.3, 0.5, 0.2]]}");
	json_t *pc = json_object_get(b, "per_class");
	cr_assert_eq(json_array_size(pc), 3);
	cr_expect(json_is_null(json_object_get(json_array_get(pc, 2), "auc")));
	cr_expect(json_real_value(json_object_get(b, "auc")) == 1.0);
	cr_expect_eq(json_array_size(json_object_get(b, "warnings")), 1);
	json_decref(b);
}

Test(auc_errors, nan_propagates_to_null)
{
	json_t *b = ok("{\"y_true\": [0, 1, 0, 1], \"nan_policy\": \"propagate\", \"y_score\": "
	               "{\"shape\": [4], \"dtype\": \"float64\", \"b64\": "
	               "\"AAAAAAAA4D8AAAAAAAD4f5qZmZmZmck/zczMzMzM7D8=\"}}");
	cr_expect(json_is_null(json_object_get(b, "auc")));
	cr_expect(json_is_null(json_object_get(b, "positives")));
	cr_expect_eq(json_array_size(json_object_get(b, "warnings")), 1);
	json_decref(b);
}

Test(auc_errors, sketch_and_curve_replies)
{
	json_t *b = ok("{\"y_true\": [0, 0, 1, 1], \"y_score\": [0.1, 0.4, 0.35, 0.8], "
	               "\"method\": \"sketch\", \"return_curve\": true, \"max_points\": 3}");
	cr_expect(json_real_value(json_object_get(b, "auc")) == 0.75);
	cr_expect(json_number_value(json_object_get(b, "error_bound")) == 0.0);
	json_t *c = json_object_get(b, "curve");
	cr_expect_eq(json_array_size(json_object_get(c, "x")), 3);
	cr_expect_eq(json_array_size(json_object_get(c, "y")), 3);
	cr_expect(json_is_null(json_array_get(json_object_get(c, "thresholds"), 0)));
	json_decref(b);

	b = ok("{" OVR ", \"average\": \"micro\", \"return_curve\": true, \"curve\": \"pr\"}");
	cr_expect(json_is_object(json_object_get(b, "curve")));
	cr_expect(json_is_object(
	        json_object_get(json_array_get(json_object_get(b, "per_class"), 0), "curve")));
	json_decref(b);

	/* null means absent */
	b = ok("{" B2 ", \"max_fpr\": null, \"positive_class\": null, \"sample_weight\": null}");
	cr_expect(json_real_value(json_object_get(b, "auc")) == 1.0);
	json_decref(b);
}

Test(auc_errors, keras_column_shapes_are_binary)
{
	/* (N, 1) labels and weights with (N) scores, and (N, 1) scores with (N)
	 * labels, are one binary column (Keras' shapes), not one-vs-rest. */
	json_t *b = ok("{\"y_true\": [[0], [1], [1]], \"y_score\": [0.1, 0.9, 0.05], "
	               "\"sample_weight\": [[1], [2], [1]]}");
	cr_expect(fabs(json_real_value(json_object_get(b, "auc")) - 2.0 / 3.0) < 1e-12);
	cr_expect_null(json_object_get(b, "per_class"));
	json_decref(b);
	b = ok("{\"y_true\": [0, 1, 1], \"y_score\": [[0.1], [0.9], [0.05]]}");
	cr_expect(fabs(json_real_value(json_object_get(b, "auc")) - 0.5) < 1e-12);
	cr_expect_eq(json_integer_value(json_object_get(b, "positives")), 2);
	json_decref(b);
}
