/*
 * test_stream_api.c - api/src/stream.c: create configs (defaults, strict
 * fields, loss checks), update bodies, reads that equal /v1/auc over the
 * same rows, state export / merge (409 on another config, 422 on corrupt
 * bytes) and the memory cap (507).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "lossd/api_stream.h"

static const api_ctx ctx = API_CTX_INIT;

/* j as JSON text in plain malloc memory (jansson's own heap is the api's
 * accounting allocator, not free()'s). */
static char *dumps(const json_t *j)
{
	size_t n = json_dumpb(j, NULL, 0, 0);
	char *t = malloc(n + 1);
	cr_assert_not_null(t);
	cr_assert_eq(json_dumpb(j, t, n, 0), n);
	t[n] = '\0';
	return t;
}

static api_stream_spec *spec_ok(const char *body)
{
	api_stream_spec *s = NULL;
	api_problem p = {0};
	int rc = api_stream_spec_parse(&s, &ctx, body, strlen(body), NULL, &p);
	cr_assert_eq(rc, 0, "%s: %s %s", body, p.code, p.detail);
	return s;
}

static api_problem spec_bad(const char *body)
{
	api_stream_spec *s = NULL;
	api_problem p = {0};
	cr_assert_eq(api_stream_spec_parse(&s, &ctx, body, strlen(body), NULL, &p), -1, "%s", body);
	cr_assert_null(s);
	return p;
}

Test(stream_api, config_defaults_and_round_trip)
{
	api_stream_spec *s = spec_ok("{}");
	const eng_stream_config *c = api_stream_spec_engine(s);
	cr_assert_eq(c->method, ENG_STREAM_SKETCH);
	cr_assert_eq(c->kind, ENG_LABELS_BINARY);
	cr_assert_eq(c->columns, 1);
	cr_assert_eq(c->curve, ENG_CURVE_ROC);
	cr_assert(!c->has_loss);
	char *t = api_stream_spec_text(s);
	cr_assert_not_null(strstr(t, "\"method\":\"sketch\""));
	cr_assert_not_null(strstr(t, "\"num_thresholds\":200"));
	cr_assert_not_null(strstr(t, "\"loss\":null"));
	api_stream_spec *s2 = NULL;
	api_problem p;
	cr_assert_eq(api_stream_spec_load(&s2, t, NULL, &p), 0);
	char *t2 = api_stream_spec_text(s2);
	cr_assert_str_eq(t, t2);
	cr_assert(eng_stream_config_equal(api_stream_spec_engine(s), api_stream_spec_engine(s2)));
	free(t);
	free(t2);
	api_stream_spec_free(s);
	api_stream_spec_free(s2);

	s = spec_ok("{\"method\":\"binned\",\"num_classes\":5,\"multi_label\":true,"
	            "\"loss\":{\"loss\":\"binary_focal_crossentropy\",\"gamma\":1.5},"
	            "\"from_logits\":true,\"name\":\"val\"}");
	c = api_stream_spec_engine(s);
	cr_assert_eq(c->kind, ENG_LABELS_MULTI);
	cr_assert_eq(c->columns, 5);
	cr_assert(c->has_loss && c->loss_kind == ENG_LOSS_BINARY_FOCAL);
	cr_assert_str_eq(api_stream_spec_name(s), "val");
	json_t *j = api_stream_render_config(s, "abc");
	cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "abc");
	json_t *l = json_object_get(j, "loss");
	cr_assert(json_is_true(json_object_get(l, "from_logits")), "loss inherits from_logits");
	cr_assert_float_eq(json_real_value(json_object_get(l, "gamma")), 1.5, 1e-12);
	json_decref(j);
	api_stream_spec_free(s);
}

Test(stream_api, config_errors)
{
	api_problem p = spec_bad("{\"methd\":\"exact\"}");
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "unknown_field");
	cr_assert_str_eq(p.pointer, "/methd");
	p = spec_bad("{\"method\":\"fast\"}");
	cr_assert_str_eq(p.code, "bad_option");
	p = spec_bad("{\"num_classes\":0}");
	cr_assert_str_eq(p.pointer, "/num_classes");
	p = spec_bad("{\"multi_label\":true}");
	cr_assert_str_eq(p.pointer, "/multi_label");
	p = spec_bad("{\"method\":\"binned\",\"num_thresholds\":1}");
	cr_assert_str_eq(p.pointer, "/num_thresholds");
	p = spec_bad("{\"num_classes\":3,\"loss\":\"binary_crossentropy\"}");
	cr_assert_str_eq(p.pointer, "/loss/loss");
	p = spec_bad("{\"loss\":{\"loss\":\"binary_crossentropy\",\"from_logit\":true}}");
	cr_assert_str_eq(p.code, "unknown_field");
	cr_assert_str_eq(p.pointer, "/loss/from_logit");
	p = spec_bad("{\"num_classes\":3,\"loss\":{\"loss\":\"sparse_categorical_crossentropy\","
	             "\"class_weight\":[1,2]}}");
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.pointer, "/loss/class_weight");
	p = spec_bad("{\"loss\":{\"loss\":\"binary_crossentropy\",\"reduction\":\"none\"}}");
	cr_assert_str_eq(p.pointer, "/loss/reduction");
	p = spec_bad("[1]");
	cr_assert_eq(p.status, 400);
}

/* Updates s with body; returns the problem (status 0 when it worked). */
static api_problem upd(api_stream_spec *s, eng_stream *st, const char *body, char **bid)
{
	eng_stream *d = NULL;
	api_problem p = {0};
	char *b = NULL;
	if (api_stream_decode_update(&d, &b, s, &ctx, body, strlen(body), &p) == 0) {
		eng_error err;
		int rc = eng_stream_merge(st, d, &err);
		if (rc)
			api_stream_merge_problem(&p, &err);
		eng_stream_free(d);
	}
	if (bid)
		*bid = b;
	else
		free(b);
	return p;
}

static eng_stream *new_state(api_stream_spec *s)
{
	eng_stream *st = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&st, api_stream_spec_engine(s), &err), 0);
	return st;
}

static double json_num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	cr_assert(json_is_number(v), "%s is not a number", k);
	return json_number_value(v);
}

Test(stream_api, updates_equal_one_request)
{
	api_stream_spec *s =
	        spec_ok("{\"method\":\"exact\",\"num_classes\":3,"
	                "\"loss\":\"sparse_categorical_crossentropy\",\"from_logits\":true}");
	eng_stream *st = new_state(s);
	char *bid = NULL;
	api_problem p = upd(s, st,
	                    "{\"y_true\":[0,1,2,1],\"y_pred\":[[2,0,1],[0,1,0.5],"
	                    "[1,1,3],[0.2,0.1,0]],\"batch_id\":7}",
	                    &bid);
	cr_assert_eq(p.status, 0, "%s", p.detail);
	cr_assert_str_eq(bid, "7");
	free(bid);
	p = upd(s, st,
	        "{\"y_true\":[2,0],\"y_score\":[[0,0,1],[3,1,2]],"
	        "\"sample_weight\":[1,1]}",
	        NULL);
	cr_assert_eq(p.status, 0, "%s", p.detail);

	api_stream_read_opts o = API_STREAM_READ_OPTS_INIT;
	o.curve = true;
	json_t *r = api_stream_render_read(s, "x", st, &o, &p);
	cr_assert_not_null(r, "%s", p.detail);
	cr_assert_eq(json_integer_value(json_object_get(r, "count")), 6);
	cr_assert_eq(json_integer_value(json_object_get(r, "updates")), 2);
	cr_assert_eq(json_array_size(json_object_get(r, "per_class")), 3);
	cr_assert_not_null(json_object_get(r, "curve"));

	const char *all = "{\"y_true\":[0,1,2,1,2,0],\"y_score\":[[2,0,1],[0,1,0.5],[1,1,3],"
	                  "[0.2,0.1,0],[0,0,1],[3,1,2]],\"from_logits\":true}";
	api_reply a = {0};
	api_auc(&a, &ctx, all, strlen(all));
	cr_assert_eq(a.status, 200, "%s", a.body);
	json_t *w = json_loads(a.body, 0, NULL);
	cr_assert(fabs(json_num(r, "auc") - json_num(w, "auc")) < 1e-12);
	json_decref(w);
	api_reply_free(&a);

	const char *lall = "{\"loss\":\"sparse_categorical_crossentropy\",\"from_logits\":true,"
	                   "\"y_true\":[0,1,2,1,2,0],\"y_pred\":[[2,0,1],[0,1,0.5],[1,1,3],"
	                   "[0.2,0.1,0],[0,0,1],[3,1,2]]}";
	api_loss(&a, &ctx, lall, strlen(lall));
	cr_assert_eq(a.status, 200, "%s", a.body);
	w = json_loads(a.body, 0, NULL);
	cr_assert(fabs(json_num(r, "loss") - json_num(w, "loss")) < 1e-12);
	json_decref(w);
	api_reply_free(&a);
	json_decref(r);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

Test(stream_api, update_errors_change_nothing)
{
	api_stream_spec *s = spec_ok("{\"method\":\"binned\"}");
	eng_stream *st = new_state(s);
	struct {
		const char *body;
		int status;
		const char *code, *pointer;
	} cases[] = {
	        {"{\"y_true\":[0,1]}", 422, "missing_field", "/y_score"},
	        {"{\"y_true\":[0,1],\"y_score\":[1,0],\"y_pred\":[1,0]}", 422, "bad_option",
	         "/y_pred"}, /* both: only for a loss stream */
	        {"{\"y_true\":[0,3],\"y_pred\":[0.1,0.2]}", 422, "label_out_of_range", "/y_true/1"},
	        {"{\"y_true\":[0,1],\"y_score\":[0.1,0.2,0.3]}", 422, "shape_mismatch", NULL},
	        {"{\"y_true\":[0,1],\"y_score\":[0.1,0.2],\"sample_weight\":[1,-1]}", 422,
	         "bad_weight", "/sample_weight/1"},
	        {"{\"y_true\":[0,1],\"y_score\":[0.1,0.2],\"batch_id\":[1]}", 422, "bad_type",
	         "/batch_id"},
	        {"{\"y_true\":[0,1],\"y_score\":[0.1,0.2],\"batch_id\":\"\"}", 422, "bad_option",
	         "/batch_id"},
	        {"{\"y_true\":[0,1],\"y_score\":[0.1,0.2],\"weights\":[1,1]}", 422, "unknown_field",
	         "/weights"},
	        {"{\"y_true\":[0,1],\"y_score\":[[0.1],[0.2],[0.3]]}", 422, "shape_mismatch", NULL},
	        {"not json", 400, "malformed_json", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		api_problem p = upd(s, st, cases[i].body, NULL);
		cr_assert_eq(p.status, cases[i].status, "%s: %d %s", cases[i].body, p.status,
		             p.detail);
		cr_assert_str_eq(p.code, cases[i].code, "%s", cases[i].body);
		if (cases[i].pointer)
			cr_assert_str_eq(p.pointer, cases[i].pointer, "%s", cases[i].body);
	}
	eng_stream_counts c;
	eng_stream_counts_of(&c, st);
	cr_assert_eq(c.rows, 0);
	cr_assert_eq(c.updates, 0);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

Test(stream_api, export_merge_and_mismatch)
{
	api_stream_spec *s = spec_ok("{\"method\":\"sketch\",\"loss\":\"binary_crossentropy\"}");
	eng_stream *a = new_state(s), *b = new_state(s);
	api_problem p = upd(s, a, "{\"y_true\":[0,1,1],\"y_pred\":[0.1,0.7,0.4]}", NULL);
	cr_assert_eq(p.status, 0);
	p = upd(s, b, "{\"y_true\":[1,0],\"y_pred\":[0.9,0.5]}", NULL);
	cr_assert_eq(p.status, 0);
	json_t *e = api_stream_export(s, "b", b, &p);
	cr_assert_not_null(e);
	char *txt = dumps(e);
	eng_stream *d = NULL;
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, txt, strlen(txt), &p), 0,
	             "%s", p.detail);
	eng_error err;
	cr_assert_eq(eng_stream_merge(a, d, &err), 0);
	eng_stream_free(d);
	json_t *r = api_stream_render_read(s, "a", a, NULL, &p);
	cr_assert_eq(json_integer_value(json_object_get(r, "count")), 5);
	cr_assert(fabs(json_num(r, "error_bound")) == 0.0);
	json_decref(r);

	/* Another config: 409. */
	api_stream_spec *s2 = spec_ok("{\"method\":\"sketch\"}");
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s2, &ctx, txt, strlen(txt), &p), -1);
	cr_assert_eq(p.status, 409);
	cr_assert_str_eq(p.code, "state_mismatch");
	cr_assert_null(d);

	/* Corrupt bytes (a flipped base64 character) and bad base64: 422 bad_state. */
	char *st64 = strdup(json_string_value(json_object_get(e, "state")));
	char *bad = strdup(st64);
	bad[strlen(bad) / 2] = bad[strlen(bad) / 2] == 'A' ? 'B' : 'A';
	json_object_set_new(e, "state", json_string(bad));
	char *t2 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, t2, strlen(t2), &p), -1);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "bad_state");
	json_object_set_new(e, "state", json_string("@@@@"));
	char *b2 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, b2, strlen(b2), &p), -1);
	cr_assert_str_eq(p.code, "bad_state");
	/* The envelope must agree with the bytes and be whole. */
	json_object_set_new(e, "state", json_string(st64));
	json_object_set_new(e, "count", json_integer(3));
	char *b3 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, b3, strlen(b3), &p), -1);
	cr_assert_str_eq(p.code, "bad_state");
	cr_assert_str_eq(p.pointer, "/count");
	json_object_set_new(e, "count", json_integer(2));
	json_object_set_new(e, "version", json_integer(2));
	char *b4 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, b4, strlen(b4), &p), -1);
	cr_assert_str_eq(p.pointer, "/version");
	json_object_set_new(e, "version", json_integer(1));
	json_object_del(e, "id");
	char *b5 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, b5, strlen(b5), &p), -1);
	cr_assert_str_eq(p.code, "missing_field");
	json_object_set_new(e, "id", json_string("b"));
	json_object_set_new(json_object_get(e, "config"), "method", json_string("exact"));
	char *b6 = dumps(e);
	cr_assert_eq(api_stream_decode_merge_origin(&d, NULL, s, &ctx, b6, strlen(b6), &p), -1);
	cr_assert_str_eq(p.code, "bad_state");
	cr_assert_str_eq(p.pointer, "/config");
	free(b2);
	free(b3);
	free(b4);
	free(b5);
	free(b6);
	free(st64);
	free(bad);
	free(t2);
	free(txt);
	json_decref(e);
	eng_stream_free(a);
	eng_stream_free(b);
	api_stream_spec_free(s);
	api_stream_spec_free(s2);
}

Test(stream_api, memory_cap_is_507)
{
	api_stream_limits lim = {4096, 1 << 20};
	api_stream_spec *s = NULL;
	api_problem p;
	const char *cfg = "{\"method\":\"exact\"}";
	cr_assert_eq(api_stream_spec_parse(&s, &ctx, cfg, strlen(cfg), &lim, &p), 0);
	eng_stream *st = new_state(s);
	char body[8192];
	int pos = snprintf(body, sizeof body, "{\"y_true\":[");
	for (int i = 0; i < 200; i++)
		pos += snprintf(body + pos, sizeof body - pos, "%s%d", i ? "," : "", i % 2);
	pos += snprintf(body + pos, sizeof body - pos, "],\"y_score\":[");
	for (int i = 0; i < 200; i++)
		pos += snprintf(body + pos, sizeof body - pos, "%s0.%d", i ? "," : "", i % 10);
	snprintf(body + pos, sizeof body - pos, "]}");
	p = upd(s, st, body, NULL);
	cr_assert_eq(p.status, 0, "%s", p.detail); /* 200 rows x 12 bytes fit */
	p = upd(s, st, body, NULL);
	cr_assert_eq(p.status, 507);
	cr_assert_str_eq(p.code, "stream_memory_exceeded");
	eng_stream_counts c;
	eng_stream_counts_of(&c, st);
	cr_assert_eq(c.rows, 200);
	eng_stream_free(st);
	api_stream_spec_free(s);

	/* A sketch larger than the memory cap is refused at create. */
	const char *big = "{\"sketch_bytes\":8192}";
	cr_assert_eq(api_stream_spec_parse(&s, &ctx, big, strlen(big), &lim, &p), -1);
	cr_assert_eq(p.status, 507);
	cr_assert_str_eq(p.pointer, "/sketch_bytes");
	/* So are binned counts that do not fit. */
	const char *bins = "{\"method\":\"binned\",\"num_thresholds\":1000}";
	cr_assert_eq(api_stream_spec_parse(&s, &ctx, bins, strlen(bins), &lim, &p), -1);
	cr_assert_eq(p.status, 507);
	cr_assert_str_eq(p.code, "stream_memory_exceeded");
	cr_assert_str_eq(p.pointer, "/num_thresholds");
}

Test(stream_api, ignored_rows_count_for_neither)
{
	api_stream_spec *s = spec_ok("{\"method\":\"exact\",\"num_classes\":3,\"loss\":{\"loss\":"
	                             "\"sparse_categorical_crossentropy\",\"ignore_index\":-100}}");
	eng_stream *st = new_state(s);
	api_problem p = upd(s, st,
	                    "{\"y_true\":[0,-100,2,1],\"y_pred\":[[0.7,0.2,0.1],"
	                    "[0.1,0.1,0.8],[0.2,0.2,0.6],[0.3,0.4,0.3]],"
	                    "\"sample_weight\":[1,5,2,1]}",
	                    NULL);
	cr_assert_eq(p.status, 0, "%s", p.detail);
	json_t *r = api_stream_render_read(s, "x", st, NULL, &p);
	cr_assert_eq(json_integer_value(json_object_get(r, "count")), 3);
	json_t *d = json_object_get(r, "loss_detail");
	cr_assert_eq(json_integer_value(json_object_get(d, "ignored")), 1);
	const char *all = "{\"y_true\":[0,2,1],\"y_score\":[[0.7,0.2,0.1],[0.2,0.2,0.6],"
	                  "[0.3,0.4,0.3]],\"sample_weight\":[1,2,1]}";
	api_reply a = {0};
	api_auc(&a, &ctx, all, strlen(all));
	json_t *w = json_loads(a.body, 0, NULL);
	cr_assert(fabs(json_num(r, "auc") - json_num(w, "auc")) < 1e-12);
	json_decref(w);
	api_reply_free(&a);
	const char *lall = "{\"loss\":\"sparse_categorical_crossentropy\",\"ignore_class\":-100,"
	                   "\"y_true\":[0,-100,2,1],\"y_pred\":[[0.7,0.2,0.1],[0.1,0.1,0.8],"
	                   "[0.2,0.2,0.6],[0.3,0.4,0.3]],\"sample_weight\":[1,5,2,1]}";
	api_loss(&a, &ctx, lall, strlen(lall));
	w = json_loads(a.body, 0, NULL);
	cr_assert(fabs(json_num(r, "loss") - json_num(w, "loss")) < 1e-12);
	json_decref(w);
	api_reply_free(&a);
	json_decref(r);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

Test(stream_api, score_for_auc_pred_for_loss)
{
	api_stream_spec *s = spec_ok("{\"method\":\"exact\",\"loss\":{\"loss\":"
	                             "\"binary_crossentropy\",\"from_logits\":true}}");
	eng_stream *st = new_state(s);
	api_problem p = upd(s, st,
	                    "{\"y_true\":[0,1,1],\"y_score\":[0.1,0.2,0.3],"
	                    "\"y_pred\":[5,-2,0]}",
	                    NULL);
	cr_assert_eq(p.status, 0, "%s", p.detail);
	json_t *r = api_stream_render_read(s, "x", st, NULL, &p);
	/* AUC of y_score (perfect), loss of the logits y_pred. */
	cr_assert(fabs(json_num(r, "auc") - 1.0) < 1e-12);
	double want = (log1p(exp(5.0)) + log1p(exp(2.0)) + log(2.0)) / 3.0;
	cr_assert(fabs(json_num(r, "loss") - want) < 1e-9, "%.12g vs %.12g", json_num(r, "loss"),
	          want);
	json_decref(r);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

Test(stream_api, reset_body_is_empty_or_an_empty_object)
{
	api_problem p = {0};
	cr_assert_eq(api_stream_parse_reset(&ctx, "", 0, &p), 0);
	cr_assert_eq(api_stream_parse_reset(&ctx, "{}", 2, &p), 0);
	cr_assert_eq(api_stream_parse_reset(&ctx, "{\"a\":1}", 7, &p), -1);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "unknown_field");
	cr_assert_str_eq(p.detail, "reset takes no fields");
	cr_assert_eq(api_stream_parse_reset(&ctx, "{", 1, &p), -1);
	cr_assert_eq(p.status, 400);
}

Test(stream_api, figures_are_the_readings)
{
	api_stream_spec *s = spec_ok("{\"method\":\"exact\",\"loss\":\"binary_crossentropy\"}");
	eng_stream *st = new_state(s);
	double auc = 0, loss = 0;
	int64_t count = -1;
	/* nothing seen: both undefined */
	cr_assert_eq(api_stream_figures(s, st, &auc, &loss, &count), 0);
	cr_assert(isnan(auc) && isnan(loss));
	cr_assert_eq(count, 0);
	api_problem p = upd(s, st, "{\"y_true\":[0,1,1],\"y_pred\":[0.1,0.7,0.4]}", NULL);
	cr_assert_eq(p.status, 0);
	cr_assert_eq(api_stream_figures(s, st, &auc, &loss, &count), 0);
	json_t *r = api_stream_render_read(s, "x", st, NULL, &p);
	cr_assert_float_eq(auc, json_num(r, "auc"), 0);
	cr_assert_float_eq(loss, json_num(r, "loss"), 0);
	cr_assert_float_eq(auc, 1.0, 1e-12);
	cr_assert_eq(count, 3);
	json_decref(r);
	eng_stream_free(st);
	api_stream_spec_free(s);
}

/* Every allocation of rendering a config may fail: the render gives NULL or
 * a whole object, never a partial one, and leaks nothing (ASan/valgrind). */
Test(stream_api, render_config_survives_every_failed_allocation)
{
	api_stream_spec *s =
	        spec_ok("{\"method\":\"binned\",\"num_classes\":5,\"multi_label\":true,"
	                "\"loss\":{\"loss\":\"binary_focal_crossentropy\",\"gamma\":1.5},"
	                "\"from_logits\":true,\"name\":\"val\",\"tags\":{\"a\":\"b\",\"c\":\"d\","
	                "\"e\":\"f\",\"g\":\"h\",\"i\":\"j\",\"k\":\"l\",\"m\":\"n\",\"o\":\"p\","
	                "\"q\":\"r\",\"s\":\"t\",\"u\":\"v\"}}");
	int failed = 0, whole = 0;
	for (long n = 1; n < 2000 && whole < 3; n++) {
		api__alloc_fail_after(n);
		json_t *j = api_stream_render_config(s, "abc");
		api__alloc_fail_after(0);
		if (!j) {
			failed++;
			continue;
		}
		whole++;
		cr_assert_str_eq(json_string_value(json_object_get(j, "id")), "abc");
		cr_assert_str_eq(json_string_value(json_object_get(j, "name")), "val");
		json_decref(j);
	}
	cr_assert_gt(failed, 0, "some injected failure reached the render");
	cr_assert_eq(whole, 3, "once past its allocations the render succeeds");
	api_stream_spec_free(s);
}
