/*
 * test_auc_conformance.c - replays every "/v1/auc" case of
 * tests/data/conformance.jsonl (the public vectors) and of
 * tests/data/auc_extra.jsonl (generated offline by gen_auc_extra.py from a
 * reference implementation of docs/API.md's formulas) through api_auc, and checks every expected field
 * recursively: numbers within relative tolerance 2e-5, null only against
 * null, objects by the expected keys, arrays element by element.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"

#define RTOL 2e-5

/* Compares expected e with got g; on mismatch writes where into why. */
static bool match(const json_t *e, const json_t *g, char *path, size_t cap, char *why, size_t wcap)
{
	size_t plen = strlen(path);
	if (json_is_null(e)) {
		if (!json_is_null(g)) {
			snprintf(why, wcap, "%s: expected null", path);
			return false;
		}
		return true;
	}
	if (json_is_number(e)) {
		if (!json_is_number(g)) {
			snprintf(why, wcap, "%s: expected a number", path);
			return false;
		}
		double a = json_number_value(e), b = json_number_value(g);
		if (!(fabs(a - b) <= RTOL * fmax(fabs(a), fabs(b)) + 1e-12)) {
			snprintf(why, wcap, "%s: expected %.12g, got %.12g", path, a, b);
			return false;
		}
		return true;
	}
	if (json_is_string(e) || json_is_boolean(e)) {
		if (!json_equal(e, g)) {
			snprintf(why, wcap, "%s: differs", path);
			return false;
		}
		return true;
	}
	if (json_is_array(e)) {
		if (!json_is_array(g) || json_array_size(e) != json_array_size(g)) {
			snprintf(why, wcap, "%s: expected an array of %zu", path,
			         json_array_size(e));
			return false;
		}
		for (size_t i = 0; i < json_array_size(e); i++) {
			snprintf(path + plen, cap - plen, "/%zu", i);
			if (!match(json_array_get(e, i), json_array_get(g, i), path, cap, why,
			           wcap))
				return false;
		}
		path[plen] = '\0';
		return true;
	}
	if (json_is_object(e)) {
		const char *k;
		json_t *v;
		if (!json_is_object(g)) {
			snprintf(why, wcap, "%s: expected an object", path);
			return false;
		}
		json_object_foreach((json_t *)e, k, v)
		{
			json_t *gv = json_object_get(g, k);
			snprintf(path + plen, cap - plen, "/%s", k);
			if (!gv) {
				snprintf(why, wcap, "%s: missing", path);
				return false;
			}
			if (!match(v, gv, path, cap, why, wcap))
				return false;
		}
		path[plen] = '\0';
		return true;
	}
	snprintf(why, wcap, "%s: unexpected JSON type", path);
	return false;
}

/* Replays the /v1/auc cases of file; returns how many ran, or -1. */
static int replay(const char *file, int *failed)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", LOSSD_TEST_DATA, file);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	api_ctx ctx = API_CTX_INIT;
	char *line = NULL;
	size_t lcap = 0;
	int ran = 0;
	*failed = 0;
	while (getline(&line, &lcap, f) > 0) {
		json_error_t je;
		json_t *c = json_loads(line, 0, &je);
		if (!c)
			continue;
		const char *ep = json_string_value(json_object_get(c, "endpoint"));
		if (!ep || strcmp(ep, "/v1/auc") != 0) {
			json_decref(c);
			continue;
		}
		const char *name = json_string_value(json_object_get(c, "name"));
		json_t *expect = json_object_get(c, "expect");
		json_t *status = json_object_get(c, "status");
		char *body = json_dumps(json_object_get(c, "request"), JSON_COMPACT);
		api_reply r = {0};
		api_auc(&r, &ctx, body, strlen(body));
		int want = status ? (int)json_integer_value(status) : 200;
		json_t *got = json_loadb(r.body, r.len, 0, &je);
		char p[512] = "", why[600] = "";
		bool ok = r.status == want && got;
		if (!ok)
			snprintf(why, sizeof why, "status %d (want %d): %.300s", r.status, want,
			         r.body ? r.body : "");
		else if (expect)
			ok = match(expect, got, p, sizeof p, why, sizeof why);
		cr_expect(ok, "%s: %s", name, why);
		if (!ok)
			(*failed)++;
		ran++;
		json_decref(got);
		api_reply_free(&r);
		free(body);
		json_decref(c);
	}
	free(line);
	fclose(f);
	return ran;
}

Test(auc_conformance, public_vectors)
{
	int failed;
	int ran = replay("conformance.jsonl", &failed);
	cr_expect_geq(ran, 40, "only %d /v1/auc cases ran", ran);
	cr_expect_eq(failed, 0, "%d of %d cases failed", failed, ran);
}

Test(auc_conformance, extra_vectors)
{
	int failed;
	int ran = replay("auc_extra.jsonl", &failed);
	cr_expect_geq(ran, 20, "only %d extra cases ran", ran);
	cr_expect_eq(failed, 0, "%d of %d cases failed", failed, ran);
}
