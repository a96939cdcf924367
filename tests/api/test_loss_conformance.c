/*
 * test_loss_conformance.c - replays every "/v1/loss" vector of
 * tests/data/conformance.jsonl (the public vectors) and
 * tests/data/loss_extra.jsonl (generated offline by gen_loss_extra.py from
 * the reference semantics) through api_loss() and compares every expected
 * field recursively: numbers with relative tolerance 2e-5 (absolute 1e-9
 * near zero), null only with null, strings and booleans exactly, arrays
 * element by element. Keys the reply has beyond the expected ones are
 * allowed; a missing key is a failure.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lossd/api.h"

static int compare(const json_t *exp, const json_t *got, char *path, size_t cap, char *why,
                   size_t wcap)
{
	size_t n = strlen(path);
	if (json_is_null(exp)) {
		if (json_is_null(got))
			return 0;
		snprintf(why, wcap, "%s: expected null", path);
		return -1;
	}
	if (json_is_number(exp)) {
		if (!json_is_number(got)) {
			snprintf(why, wcap, "%s: expected a number, got %s", path,
			         got ? (json_is_null(got) ? "null" : "another type") : "nothing");
			return -1;
		}
		double e = json_number_value(exp), g = json_number_value(got);
		double tol = fmax(2e-5 * fabs(e), 1e-9);
		if (!(fabs(e - g) <= tol)) {
			snprintf(why, wcap, "%s: expected %.17g, got %.17g", path, e, g);
			return -1;
		}
		return 0;
	}
	if (json_is_string(exp) || json_is_boolean(exp)) {
		if (!json_equal((json_t *)exp, (json_t *)got)) {
			snprintf(why, wcap, "%s: differs", path);
			return -1;
		}
		return 0;
	}
	if (json_is_array(exp)) {
		if (!json_is_array(got) || json_array_size(got) != json_array_size(exp)) {
			snprintf(why, wcap, "%s: expected an array of %zu", path,
			         json_array_size(exp));
			return -1;
		}
		for (size_t i = 0; i < json_array_size(exp); i++) {
			snprintf(path + n, cap - n, "/%zu", i);
			if (compare(json_array_get(exp, i), json_array_get(got, i), path, cap, why,
			            wcap))
				return -1;
			path[n] = '\0';
		}
		return 0;
	}
	if (json_is_object(exp)) {
		const char *k;
		json_t *v;
		if (!json_is_object(got)) {
			snprintf(why, wcap, "%s: expected an object", path);
			return -1;
		}
		json_object_foreach((json_t *)exp, k, v)
		{
			json_t *g = json_object_get(got, k);
			snprintf(path + n, cap - n, "/%s", k);
			if (!g) {
				snprintf(why, wcap, "%s: missing", path);
				return -1;
			}
			if (compare(v, g, path, cap, why, wcap))
				return -1;
			path[n] = '\0';
		}
		return 0;
	}
	snprintf(why, wcap, "%s: unexpected type", path);
	return -1;
}

/* Replays the loss cases of one file; returns how many were run. */
static int replay(const char *file)
{
	char fname[512];
	snprintf(fname, sizeof fname, "%s/%s", LOSSD_TEST_DATA, file);
	FILE *f = fopen(fname, "r");
	cr_assert_not_null(f, "cannot open %s", fname);
	static char line[1 << 24];
	int cases = 0, failed = 0;
	api_ctx ctx = API_CTX_INIT;
	while (fgets(line, sizeof line, f)) {
		json_error_t je;
		json_t *c = json_loads(line, 0, &je);
		if (!c)
			continue;
		if (strcmp(json_string_value(json_object_get(c, "endpoint")), "/v1/loss") != 0) {
			json_decref(c);
			continue;
		}
		const char *name = json_string_value(json_object_get(c, "name"));
		json_t *exp = json_object_get(c, "expect");
		/* json_dumpb into our own buffer: jansson's allocator is the api's. */
		json_t *req = json_object_get(c, "request");
		size_t blen = json_dumpb(req, NULL, 0, JSON_COMPACT);
		char *body = malloc(blen);
		cr_assert_not_null(body);
		json_dumpb(req, body, blen, JSON_COMPACT);
		api_reply r = {0};
		api_loss(&r, &ctx, body, blen);
		free(body);
		cases++;
		json_t *got = json_loadb(r.body, r.len, 0, &je);
		int want_status = json_is_integer(json_object_get(c, "status"))
		                          ? (int)json_integer_value(json_object_get(c, "status"))
		                          : 200;
		char path[512] = "", why[600] = "";
		if (r.status != want_status) {
			failed++;
			cr_log_error("%s: status %d: %.*s", name, r.status, (int)r.len, r.body);
		} else if (compare(exp, got, path, sizeof path, why, sizeof why)) {
			failed++;
			cr_log_error("%s: %s", name, why);
		}
		json_decref(got);
		api_reply_free(&r);
		json_decref(c);
	}
	fclose(f);
	cr_expect_eq(failed, 0, "%s: %d of %d loss cases failed", file, failed, cases);
	return cases;
}

Test(loss_conformance, public_vectors, .timeout = 120)
{
	int n = replay("conformance.jsonl");
	cr_expect_geq(n, 30, "only %d loss cases found", n);
}

Test(loss_conformance, extra_vectors, .timeout = 120)
{
	int n = replay("loss_extra.jsonl");
	cr_expect_geq(n, 40, "only %d loss cases found", n);
}
