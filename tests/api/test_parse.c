/*
 * test_parse.c - api/src/parse.c and mem.c: strict parsing, the byte
 * pre-pass limits (numbers, depth), jansson's heap budget and allocation
 * failures.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "mem.h"

static json_t *parse_n(const api_ctx *ctx, const char *body, size_t len, api_problem *p)
{
	api_problem_set(p, 0, "none", "", "none");
	return api_parse_body(ctx, body, len, p);
}

static void expect_ok(const char *body)
{
	api_problem p;
	api_ctx ctx = API_CTX_INIT;
	json_t *v = parse_n(&ctx, body, strlen(body), &p);
	cr_assert_not_null(v, "rejected %s: %d %s %s", body, p.status, p.code, p.detail);
	cr_assert(json_is_object(v));
	json_decref(v);
}

static void expect_fail_n(const api_ctx *ctx, const char *body, size_t len, int status,
                          const char *code)
{
	api_problem p;
	json_t *v = parse_n(ctx, body, len, &p);
	cr_assert_null(v, "accepted %.*s", (int)(len > 200 ? 200 : len), body);
	cr_assert_eq(p.status, status, "%.*s: %d %s %s", (int)(len > 200 ? 200 : len), body,
	             p.status, p.code, p.detail);
	cr_assert_str_eq(p.code, code, "%.*s: %s (%s)", (int)(len > 200 ? 200 : len), body, p.code,
	                 p.detail);
	cr_assert_neq(p.detail[0], '\0');
}

static void expect_fail(const char *body, int status, const char *code)
{
	api_ctx ctx = API_CTX_INIT;
	expect_fail_n(&ctx, body, strlen(body), status, code);
}

Test(parse, accepts_objects)
{
	expect_ok("{}");
	expect_ok("  {\"a\": 1, \"b\": [1.5, -2e-3, 3E+2], \"c\": {\"d\": null}}\n");
	expect_ok("{\"s\": \"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\"}");
	/* a NULL ctx means the defaults */
	api_problem p;
	json_t *v = api_parse_body(NULL, "{\"x\": true}", 11, &p);
	cr_assert_not_null(v);
	json_decref(v);
}

Test(parse, empty_and_not_objects)
{
	expect_fail("", 400, "malformed_json");
	expect_fail("   \n\t", 400, "malformed_json");
	api_ctx ctx = API_CTX_INIT;
	expect_fail_n(&ctx, NULL, 0, 400, "malformed_json");
	expect_fail("[1, 2]", 400, "not_an_object");
	expect_fail("1", 400, "not_an_object");
	expect_fail("\"s\"", 400, "not_an_object");
	expect_fail("null", 400, "not_an_object");
	expect_fail("true", 400, "not_an_object");
}

Test(parse, strictness)
{
	expect_fail("{\"a\": 1, \"a\": 2}", 400, "duplicate_key");
	expect_fail("{\"x\": {\"a\": 1, \"b\": 2, \"a\": 3}}", 400, "duplicate_key");
	expect_fail("{} x", 400, "malformed_json");
	expect_fail("{}{}", 400, "malformed_json");
	expect_fail("{\"a\": 1,}", 400, "malformed_json");
	expect_fail("{'a': 1}", 400, "malformed_json");
	expect_fail("{\"a\": NaN}", 400, "malformed_json");
	expect_fail("{\"a\": Infinity}", 400, "malformed_json");
	expect_fail("{\"a\": 01}", 400, "malformed_json");
	expect_fail("{\"a\": 1", 400, "malformed_json");
	expect_fail("{\"a\": \"\xff\"}", 400, "malformed_json");         /* invalid UTF-8 */
	expect_fail("{\"a\": \"\xc0\xaf\"}", 400, "malformed_json");     /* overlong */
	expect_fail("{\"a\": \"\xed\xa0\x80\"}", 400, "malformed_json"); /* surrogate */
	expect_fail("{\"a\": \"\\u0000\"}", 400, "malformed_json");      /* escaped NUL */
	expect_fail("{\"a\": \"\\ud800\"}", 400, "malformed_json");      /* lone surrogate */
	api_ctx ctx = API_CTX_INIT;
	expect_fail_n(&ctx, "{\"a\": 1}\0", 9, 400, "malformed_json");      /* NUL after */
	expect_fail_n(&ctx, "{\"a\":\"x\0y\"}", 11, 400, "malformed_json"); /* NUL inside */
	expect_fail_n(&ctx, "{\0}", 3, 400, "malformed_json");
}

Test(parse, number_overflow)
{
	api_problem p;
	api_ctx ctx = API_CTX_INIT;
	const char *b = "{\"a\": 1e400}";
	cr_assert_null(parse_n(&ctx, b, strlen(b), &p));
	cr_assert_eq(p.status, 400);
	cr_assert_str_eq(p.code, "malformed_json");
	cr_assert(strstr(p.detail, "overflow"), "detail should say why: %s", p.detail);
	expect_fail("{\"a\": -1e400}", 400, "malformed_json");
	expect_fail("{\"a\": [1, 123456789012345678901234567890]}", 400, "malformed_json");
	expect_fail("{\"a\": -9223372036854775809}", 400, "malformed_json");
	expect_ok("{\"a\": -9223372036854775808, \"b\": 1e-400, \"c\": 1.7976931348623157e308}");
}

Test(parse, depth_limit)
{
	api_ctx ctx = API_CTX_INIT;
	ctx.max_depth = 5;
	const char *ok = "{\"a\": [[[{\"b\": 1}]]]}"; /* depth 5 */
	api_problem p;
	json_t *v = parse_n(&ctx, ok, strlen(ok), &p);
	cr_assert_not_null(v, "%s", p.detail);
	json_decref(v);
	expect_fail_n(&ctx, "{\"a\": [[[[[1]]]]]}", 18, 400, "too_deep");
	/* brackets inside strings, escaped quotes included, do not count */
	const char *s = "{\"a\": \"[[[[[[\\\"[[[[{{{{\", \"b\": [\"]]]]\"]}";
	v = parse_n(&ctx, s, strlen(s), &p);
	cr_assert_not_null(v, "%s: %s", s, p.detail);
	json_decref(v);
}

Test(parse, depth_bomb_does_not_recurse)
{
	size_t n = 100000;
	char *b = malloc(2 * n + 16);
	size_t k = 0;
	b[k++] = '{';
	memcpy(b + k, "\"a\":", 4);
	k += 4;
	for (size_t i = 0; i < n; i++)
		b[k++] = '[';
	for (size_t i = 0; i < n; i++)
		b[k++] = ']';
	b[k++] = '}';
	api_ctx ctx = API_CTX_INIT;
	uint64_t before = api__alloc_count();
	expect_fail_n(&ctx, b, k, 400, "too_deep");
	cr_assert_eq(api__alloc_count(), before, "rejected before jansson allocates anything");
	/* even with the limit off, jansson's own depth cap answers (no crash) */
	ctx.max_depth = 1 << 30;
	expect_fail_n(&ctx, b, k, 400, "too_deep");
	free(b);
}

Test(parse, element_limit_counts_numbers_only)
{
	api_ctx ctx = API_CTX_INIT;
	ctx.max_elements = 10;
	api_problem p;
	/* 10 numbers in various forms; digits in keys, strings and literals don't count */
	const char *ok =
	        "{\"a1\": [0, -1, 2.5, -3e-4, 4E+5, 1e2], \"b22\": \"1 2 3 4 5 6\\\" 7 8\","
	        " \"c\": [true, false, null, 7, 8, 9, 10]}";
	json_t *v = parse_n(&ctx, ok, strlen(ok), &p);
	cr_assert_not_null(v, "%s", p.detail);
	json_decref(v);
	const char *bad = "{\"a\": [0,1,2,3,4,5,6,7,8,9,10]}";
	expect_fail_n(&ctx, bad, strlen(bad), 413, "too_many_elements");
	const char *bad2 = "{\"a\": [0 ,1 ,2 ,3\n,4,5,6,7,8,9], \"b\": -0}";
	expect_fail_n(&ctx, bad2, strlen(bad2), 413, "too_many_elements");
}

Test(parse, element_bomb_is_rejected_before_parsing)
{
	/* 2 MB of "0," with a limit of 100k numbers */
	size_t n = 1000000;
	char *b = malloc(2 * n + 16);
	size_t k = 0;
	memcpy(b, "{\"a\":[", 6);
	k = 6;
	for (size_t i = 0; i < n; i++) {
		b[k++] = '0';
		b[k++] = ',';
	}
	b[k - 1] = ']';
	b[k++] = '}';
	api_ctx ctx = API_CTX_INIT;
	ctx.max_elements = 100000;
	uint64_t before = api__alloc_count();
	expect_fail_n(&ctx, b, k, 413, "too_many_elements");
	cr_assert_eq(api__alloc_count(), before);
	free(b);
}

/* Builds {"a":[0,0,...]} with n zeros. */
static char *zeros_body(size_t n, size_t *len)
{
	char *b = malloc(2 * n + 16);
	size_t k = 6;
	memcpy(b, "{\"a\":[", 6);
	for (size_t i = 0; i < n; i++) {
		b[k++] = '0';
		b[k++] = ',';
	}
	b[k - 1] = ']';
	b[k++] = '}';
	*len = k;
	return b;
}

Test(heap, bytes_per_number_measured_and_freed)
{
	size_t n = 1000000, len;
	char *b = zeros_body(n, &len);
	api_ctx ctx = API_CTX_INIT;
	api_problem p;
	size_t base = api_json_heap_in_use();
	json_t *v = parse_n(&ctx, b, len, &p);
	cr_assert_not_null(v, "%s", p.detail);
	size_t used = api_json_heap_in_use() - base;
	double per = (double)used / (double)n;
	/* a json_integer is 24 bytes (32 usable) plus an 8-byte slot in an
	 * array that grows by doubling: between 32 and 56 bytes a number */
	cr_log_info("jansson heap for %zu numbers in a %zu-byte body: %zu bytes, %.1f per number",
	            n, len, used, per);
	fprintf(stderr, "jansson: %.1f heap bytes per number (%zu-byte body -> %zu bytes)\n", per,
	        len, used);
	cr_assert_geq(per, 24.0);
	cr_assert_leq(per, 64.0);
	json_decref(v);
	cr_assert_eq(api_json_heap_in_use(), base, "the counter returns to its base when freed");
	free(b);
}

Test(heap, budget_exceeded_is_413)
{
	size_t n = 1000000, len;
	char *b = zeros_body(n, &len);
	api_ctx ctx = API_CTX_INIT;
	ctx.max_json_bytes = 8u << 20; /* 8 MB: about 200k numbers */
	size_t base = api_json_heap_in_use();
	expect_fail_n(&ctx, b, len, 413, "body_too_large");
	cr_assert_eq(api_json_heap_in_use(), base, "a failed parse frees what it built");
	free(b);
	/* 100k numbers (about 3.2 MB of tree) fit in 8 MB */
	b = zeros_body(100000, &len);
	api_problem p;
	json_t *v = parse_n(&ctx, b, len, &p);
	cr_assert_not_null(v, "%s", p.detail);
	/* the budget stays in force on this thread for the tree's lifetime */
	size_t used = api_json_heap_in_use() - base;
	cr_assert_lt(used, ctx.max_json_bytes);
	size_t left = ctx.max_json_bytes - used;
	char *s = malloc(left + 1);
	memset(s, 'x', left + 1);
	cr_assert_null(json_stringn(s, left + 1), "allocations past the request's budget fail");
	json_t *small = json_stringn(s, 1000);
	cr_assert_not_null(small, "allocations within it succeed");
	json_decref(small);
	api_json_budget_clear();
	json_t *after = json_stringn(s, left + 1);
	cr_assert_not_null(after, "no limit once the budget is cleared");
	json_decref(after);
	json_decref(v);
	free(s);
	free(b);
}

Test(heap, budget_counts_per_thread_from_the_parse)
{
	api_ctx ctx = API_CTX_INIT;
	ctx.max_json_bytes = 4096;
	api_problem p;
	/* a tree held from before does not count against the next request */
	json_t *keep = json_stringn("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 32);
	for (int i = 0; i < 10; i++) {
		json_t *v = parse_n(&ctx, "{\"a\": [1, 2, 3]}", 16, &p);
		cr_assert_not_null(v, "%s", p.detail);
		json_decref(v);
	}
	json_decref(keep);
}

Test(oom, every_allocation_failure_travels_up)
{
	const char *body = "{\"loss\": \"huber\", \"y_true\": [[1, 2], [3, 4]], "
	                   "\"y_pred\": {\"shape\": [2, 2], \"data\": [1.5, 2.5, 3.5, 4.5]}, "
	                   "\"delta\": 0.5, \"s\": \"caf\\u00e9\"}";
	size_t len = strlen(body);
	api_ctx ctx = API_CTX_INIT;
	api_problem p;
	uint64_t before = api__alloc_count();
	json_t *v = parse_n(&ctx, body, len, &p);
	uint64_t n = api__alloc_count() - before;
	cr_assert_not_null(v);
	json_decref(v);
	cr_assert_gt(n, 10);
	for (uint64_t i = 1; i <= n + 1; i++) {
		api__alloc_fail_after((long)i);
		v = parse_n(&ctx, body, len, &p);
		api__alloc_fail_after(0);
		if (i <= n) {
			cr_assert_null(v, "allocation %llu of %llu failed but the parse succeeded",
			               (unsigned long long)i, (unsigned long long)n);
			cr_assert_eq(p.status, 503, "allocation %llu: %d %s %s",
			             (unsigned long long)i, p.status, p.code, p.detail);
			cr_assert_str_eq(p.code, "out_of_memory");
		} else {
			cr_assert_not_null(v);
			json_decref(v);
		}
	}
}

Test(oom, parse_then_decode_every_allocation)
{
	/* the two together, as a handler runs them */
	const char *body = "{\"y\": [[1, 2, 3], [4, 5, 6]], \"z\": {\"shape\": [2], \"dtype\": "
	                   "\"uint8\", \"b64\": \"AQI=\"}}";
	size_t len = strlen(body);
	api_ctx ctx = API_CTX_INIT;
	uint64_t total = 0;
	for (uint64_t i = 1;; i++) {
		api_problem p;
		api_tensor y = API_TENSOR_INIT, z = API_TENSOR_INIT;
		int64_t budget = 100;
		api_tensor_opts o = {false, &budget, NULL, NULL};
		uint64_t before = api__alloc_count();
		api__alloc_fail_after((long)i);
		json_t *v = api_parse_body(&ctx, body, len, &p);
		int rc = -1;
		if (v && api_tensor_decode(&y, json_object_get(v, "y"), "/y", &o, &p) == 0 &&
		    api_tensor_decode(&z, json_object_get(v, "z"), "/z", &o, &p) == 0)
			rc = 0;
		api__alloc_fail_after(0);
		uint64_t used = api__alloc_count() - before;
		if (rc == 0) {
			cr_assert_geq(used, i - 1);
			cr_assert_float_eq(eng_tensor_at(&y.t, 5), 6.0, 1e-12);
			cr_assert_eq(eng_tensor_at(&z.t, 1), 2.0);
			total = i;
		} else {
			cr_assert_eq(p.status, 503, "allocation %llu: %s %s", (unsigned long long)i,
			             p.code, p.detail);
		}
		api_tensor_free(&y);
		api_tensor_free(&z);
		json_decref(v);
		if (rc == 0)
			break;
	}
	cr_assert_gt(total, 5);
}
