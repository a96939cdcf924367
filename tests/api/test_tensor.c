/*
 * test_tensor.c - api/src/tensor.c: the three tensor encodings, every
 * rejection with its status, code and pointer, budgets and allocation
 * failures.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "mem.h"

/* Allocations made by the last decode() call. */
static uint64_t last_allocs;

/* Decodes the JSON text `text` as the tensor at pointer "/y". */
static int decode(api_tensor *t, const char *text, const api_tensor_opts *opts, api_problem *p)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
	cr_assert_not_null(v, "test JSON does not parse: %s: %s", e.text, text);
	api_problem_set(p, 0, "none", "", "none");
	uint64_t before = api__alloc_count();
	int rc = api_tensor_decode(t, v, "/y", opts, p);
	last_allocs = api__alloc_count() - before;
	json_decref(v);
	return rc;
}

/* Expects decoding text to fail with status, code and pointer. */
static void expect_fail(const char *text, int status, const char *code, const char *pointer)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	int64_t budget = 1000;
	api_tensor_opts o = {false, &budget, NULL, NULL};
	cr_assert_eq(decode(&t, text, &o, &p), -1, "accepted %s", text);
	cr_assert_eq(p.status, status, "%s: status %d (%s: %s)", text, p.status, p.code, p.detail);
	cr_assert_str_eq(p.code, code, "%s: code %s (%s)", text, p.code, p.detail);
	cr_assert_str_eq(p.pointer, pointer, "%s: pointer %s (%s)", text, p.pointer, p.detail);
	cr_assert_neq(p.detail[0], '\0');
	cr_assert_null(t.buf);
	cr_assert_null(t.t.data);
	cr_assert_eq(budget, 1000, "%s: a failed decode must not keep its charge", text);
}

static void expect_f64(const api_tensor *t, int ndim, const int64_t *shape, const double *vals)
{
	int64_t size = 1;
	cr_assert_eq(t->t.dtype, ENG_F64);
	cr_assert_eq(t->t.ndim, ndim);
	for (int i = 0; i < ndim; i++) {
		cr_assert_eq(t->t.shape[i], shape[i], "dim %d", i);
		size *= shape[i];
	}
	cr_assert_eq(t->t.size, size);
	cr_assert_not_null(t->t.data);
	cr_assert_eq((uintptr_t)t->t.data % 64, 0, "data must be 64-byte aligned");
	for (int64_t i = 0; i < size; i++)
		cr_assert_float_eq(((const double *)t->t.data)[i], vals[i], 1e-15, "element %lld",
		                   (long long)i);
}

/* An independent (bit-by-bit) base64 encoder for building test inputs. */
static char *b64(const void *data, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *d = data;
	char *out = malloc((n + 2) / 3 * 4 + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)d[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		out[o++] = a[(v >> 18) & 63];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? a[v & 63] : '=';
	}
	out[o] = 0;
	return out;
}

/* ---- scalars and nested arrays ------------------------------------------------------ */

Test(nested, scalar_is_rank0)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	double v = 3.5, w = 7;
	cr_assert_eq(decode(&t, "3.5", NULL, &p), 0);
	expect_f64(&t, 0, NULL, &v);
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "7", NULL, &p), 0);
	expect_f64(&t, 0, NULL, &w);
	api_tensor_free(&t);
	api_tensor_free(&t); /* twice is fine */
	api_tensor_free(NULL);
}

Test(nested, ranks_1_to_3)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "[1, 2.5, -3]", NULL, &p), 0);
	expect_f64(&t, 1, (int64_t[]){3}, (double[]){1, 2.5, -3});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "[[0.1, 0.9], [0.8, 0.2], [1e-300, -0.0]]", NULL, &p), 0);
	expect_f64(&t, 2, (int64_t[]){3, 2}, (double[]){0.1, 0.9, 0.8, 0.2, 1e-300, 0});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "[[[1],[2]],[[3],[4]]]", NULL, &p), 0);
	expect_f64(&t, 3, (int64_t[]){2, 2, 1}, (double[]){1, 2, 3, 4});
	api_tensor_free(&t);
}

Test(nested, rank_8_is_the_limit)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "[[[[[[[[5]]]]]]]]", NULL, &p), 0);
	cr_assert_eq(t.t.ndim, 8);
	api_tensor_free(&t);
	expect_fail("[[[[[[[[[5]]]]]]]]]", 422, "shape_mismatch", "/y/0/0/0/0/0/0/0/0");
}

Test(nested, empty_tensors)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "[]", NULL, &p), 0);
	cr_assert_eq(t.t.ndim, 1);
	cr_assert_eq(t.t.shape[0], 0);
	cr_assert_eq(t.t.size, 0);
	cr_assert_not_null(t.t.data, "present tensors have data, even when empty");
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "[[], []]", NULL, &p), 0);
	cr_assert_eq(t.t.ndim, 2);
	cr_assert_eq(t.t.shape[0], 2);
	cr_assert_eq(t.t.shape[1], 0);
	cr_assert_eq(t.t.size, 0);
	api_tensor_free(&t);
}

Test(nested, ragged_points_at_the_bad_subarray)
{
	expect_fail("[[1, 2], [3]]", 422, "shape_mismatch", "/y/1");
	expect_fail("[[1, 2], [3, 4], [5, 6], [7]]", 422, "shape_mismatch", "/y/3");
	expect_fail("[[1, 2], [3, 4, 5]]", 422, "shape_mismatch", "/y/1");
	expect_fail("[[1, 2], 3]", 422, "shape_mismatch", "/y/1");
	expect_fail("[1, [2]]", 422, "shape_mismatch", "/y/1");
	expect_fail("[[[1]], [[]]]", 422, "shape_mismatch", "/y/1/0");
	expect_fail("[[], [1]]", 422, "shape_mismatch", "/y/1");
}

Test(nested, non_numeric_elements)
{
	expect_fail("[1, \"a\"]", 422, "bad_type", "/y/1");
	expect_fail("[[1, true]]", 422, "bad_type", "/y/0/1");
	expect_fail("[[null]]", 422, "bad_type", "/y/0/0");
	expect_fail("[[1], [{}]]", 422, "bad_type", "/y/1/0");
	expect_fail("[[1], \"x\"]", 422, "bad_type", "/y/1");
	expect_fail("\"abc\"", 422, "bad_type", "/y");
	expect_fail("true", 422, "bad_type", "/y");
	expect_fail("null", 422, "bad_type", "/y");
}

Test(nested, details_are_readable)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "[[1, 2], [3]]", NULL, &p), -1);
	cr_assert(strstr(p.detail, "y/1 has 1 elements, expected 2"), "%s", p.detail);
	cr_assert_eq(decode(&t, "[1, \"a\"]", NULL, &p), -1);
	cr_assert(strstr(p.detail, "a string"), "%s", p.detail);
}

Test(nested, ragged_bomb_with_overflowing_first_rows)
{
	/* first elements 1000 long at each of 8 levels (product 10^24, which
	 * overflows int64), every other element a number: a few KB of JSON. */
	size_t cap = 100000, n = 0;
	char *s = malloc(cap);
	for (int level = 0; level < 8; level++)
		s[n++] = '[';
	s[n++] = '0';
	for (int level = 0; level < 8; level++) {
		for (int i = 1; i < 1000; i++)
			n += (size_t)snprintf(s + n, cap - n, ",0");
		s[n++] = ']';
	}
	s[n] = 0;
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	int64_t budget = INT64_MAX;
	api_tensor_opts o = {false, &budget, NULL, NULL};
	cr_assert_eq(decode(&t, s, &o, &p), -1);
	cr_assert_eq(p.status, 422, "%d %s %s", p.status, p.code, p.detail);
	cr_assert_str_eq(p.code, "shape_mismatch");
	cr_assert_str_eq(p.pointer, "/y/0/0/0/0/0/0/1");
	cr_assert_eq(budget, INT64_MAX);
	cr_assert_eq(last_allocs, 0);
	free(s);
}

/* Nested arrays whose first rows are `len` long at each of `levels` levels
 * and whose other elements are 0: a product of len^levels, few values. */
static char *first_row_bomb(int levels, int len)
{
	size_t cap = (size_t)levels * (size_t)len * 2 + 64, n = 0;
	char *s = malloc(cap);
	for (int level = 0; level < levels; level++)
		s[n++] = '[';
	s[n++] = '0';
	for (int level = 0; level < levels; level++) {
		for (int i = 1; i < len; i++) {
			s[n++] = ',';
			s[n++] = '0';
		}
		s[n++] = ']';
	}
	s[n] = 0;
	return s;
}

Test(nested, ragged_bombs_without_budget)
{
	/* 10^16 elements claimed (past 2^53) and 10^12 (8 TB: malloc fails):
	 * both are reported as ragged, where they are ragged */
	for (int levels = 3; levels <= 4; levels++) {
		char *s = first_row_bomb(levels, 10000);
		api_tensor t = API_TENSOR_INIT;
		api_problem p;
		cr_assert_eq(decode(&t, s, NULL, &p), -1);
		cr_assert_eq(p.status, 422, "%d %s %s", p.status, p.code, p.detail);
		cr_assert_str_eq(p.code, "shape_mismatch");
		cr_assert_str_eq(p.pointer, levels == 3 ? "/y/0/1" : "/y/0/0/1");
		free(s);
	}
}

/* ---- {shape, data} ------------------------------------------------------------------ */

Test(shape_data, flat_and_nested_data)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "{\"shape\": [2, 3], \"data\": [1, 2, 3, 4, 5, 6]}", NULL, &p), 0);
	expect_f64(&t, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "{\"shape\": [3, 2], \"data\": [[1, 2, 3], [4, 5, 6]]}", NULL, &p),
	             0);
	expect_f64(&t, 2, (int64_t[]){3, 2}, (double[]){1, 2, 3, 4, 5, 6});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "{\"data\": [[1, 2], [3, 4]]}", NULL, &p), 0);
	expect_f64(&t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "{\"shape\": [], \"data\": [5]}", NULL, &p), 0);
	expect_f64(&t, 0, NULL, (double[]){5});
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "{\"shape\": [2.0], \"data\": [5, 6], \"dtype\": \"float32\"}",
	                    NULL, &p),
	             0);
	expect_f64(&t, 1, (int64_t[]){2}, (double[]){5, 6});
	api_tensor_free(&t);
}

Test(shape_data, zero_dims)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "{\"shape\": [0, 3], \"data\": []}", NULL, &p), 0);
	cr_assert_eq(t.t.ndim, 2);
	cr_assert_eq(t.t.shape[0], 0);
	cr_assert_eq(t.t.shape[1], 3);
	cr_assert_eq(t.t.size, 0);
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "{\"shape\": [100000, 0, 100000], \"data\": []}", NULL, &p), 0);
	cr_assert_eq(t.t.size, 0);
	cr_assert_eq(t.t.shape[2], 100000);
	api_tensor_free(&t);
	/* but the non-zero dimensions must still multiply to a sane count, so
	 * that no product of some of them can overflow */
	expect_fail("{\"shape\": [1099511627776, 1099511627776, 0], \"data\": []}", 413,
	            "too_many_elements", "/y/shape");
}

Test(shape_data, rejections)
{
	expect_fail("{\"shape\": [2, 2], \"data\": [1, 2, 3]}", 422, "shape_mismatch", "/y/data");
	expect_fail("{\"shape\": [2, -1], \"data\": []}", 422, "shape_mismatch", "/y/shape/1");
	expect_fail("{\"shape\": [1.5], \"data\": [1]}", 422, "shape_mismatch", "/y/shape/0");
	expect_fail("{\"shape\": [\"2\"], \"data\": [1, 2]}", 422, "bad_type", "/y/shape/0");
	expect_fail("{\"shape\": 2, \"data\": [1, 2]}", 422, "bad_type", "/y/shape");
	expect_fail("{\"shape\": [1,1,1,1,1,1,1,1,1], \"data\": [1]}", 422, "shape_mismatch",
	            "/y/shape");
	expect_fail("{\"shape\": [2], \"data\": [1, \"x\"]}", 422, "bad_type", "/y/data/1");
	expect_fail("{\"shape\": [2], \"data\": [[1], [2, 3]]}", 422, "shape_mismatch",
	            "/y/data/1");
	expect_fail("{\"shape\": [2], \"data\": \"12\"}", 422, "bad_type", "/y/data");
	expect_fail("{\"shape\": [2], \"data\": [1, 2], \"extra\": 1}", 422, "unknown_field",
	            "/y/extra");
	expect_fail("{\"shape\": [2]}", 422, "missing_field", "/y/data");
	expect_fail("{}", 422, "missing_field", "/y/data");
	expect_fail("{\"shape\": [2], \"data\": [1, 2], \"b64\": \"AAAA\"}", 422, "bad_type",
	            "/y/b64");
	expect_fail("{\"shape\": [2], \"data\": [1, 2], \"dtype\": \"float16\"}", 422, "bad_type",
	            "/y/dtype");
}

Test(shape_data, overflowing_shape_is_413_without_allocating)
{
	/* 2^40 * 2^40 overflows int64 */
	expect_fail("{\"shape\": [1099511627776, 1099511627776], \"data\": [1]}", 413,
	            "too_many_elements", "/y/shape");
	cr_assert_eq(last_allocs, 0, "nothing may be allocated for a shape bomb");
	expect_fail("{\"shape\": [1099511627776, 1099511627776], \"b64\": \"AAAA\"}", 413,
	            "too_many_elements", "/y/shape");
	cr_assert_eq(last_allocs, 0);
	expect_fail("{\"shape\": [4294967296, 4294967296, 4294967296], \"b64\": \"\"}", 413,
	            "too_many_elements", "/y/shape");
	cr_assert_eq(last_allocs, 0);
	/* within int64 but past the budget: 413 too, before allocating */
	expect_fail("{\"shape\": [1000000, 1000000], \"dtype\": \"uint8\", \"b64\": \"AAAA\"}", 413,
	            "too_many_elements", "/y");
	cr_assert_eq(last_allocs, 0);
}

/* ---- b64 ------------------------------------------------------------------------------ */

Test(b64, api_md_example)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t,
	                    "{\"shape\": [2, 2], \"dtype\": \"float32\", "
	                    "\"b64\": \"zczMPWZmZj/NzEw/zczMPg==\"}",
	                    NULL, &p),
	             0, "%s", p.detail);
	cr_assert_eq(t.t.dtype, ENG_F32);
	cr_assert_eq(t.t.ndim, 2);
	cr_assert_eq(t.t.size, 4);
	const float *f = t.t.data;
	cr_assert_float_eq(f[0], 0.1f, 1e-7);
	cr_assert_float_eq(f[1], 0.9f, 1e-7);
	cr_assert_float_eq(f[2], 0.8f, 1e-7);
	/* docs/API.md's table says [[0.1, 0.9], [0.8, 0.2]], but these bytes are 0.4 */
	cr_assert_float_eq(f[3], 0.4f, 1e-7);
	api_tensor_free(&t);
	/* dtype defaults to float32 */
	cr_assert_eq(
	        decode(&t, "{\"shape\": [4], \"b64\": \"zczMPWZmZj/NzEw/zczMPg==\"}", NULL, &p), 0);
	cr_assert_eq(t.t.dtype, ENG_F32);
	api_tensor_free(&t);
}

struct dt_case {
	eng_dtype dt;
	char name[16];
	size_t esz;
};

Test(b64, every_dtype_round_trips)
{
	static const struct dt_case cases[] = {{ENG_F32, "float32", 4},
	                                       {ENG_F64, "float64", 8},
	                                       {ENG_I32, "int32", 4},
	                                       {ENG_I64, "int64", 8},
	                                       {ENG_U8, "uint8", 1}};
	for (size_t c = 0; c < 5; c++) {
		for (int n = 0; n <= 37; n++) {
			size_t bytes = (size_t)n * cases[c].esz;
			unsigned char *raw = malloc(bytes + 1);
			for (size_t i = 0; i < bytes; i++)
				raw[i] = (unsigned char)(i * 37 + n);
			/* keep floats finite: clear the top exponent bit of each element */
			if (cases[c].dt == ENG_F32 || cases[c].dt == ENG_F64)
				for (size_t i = cases[c].esz - 1; i < bytes; i += cases[c].esz)
					raw[i] &= 0x3f;
			char *enc = b64(raw, bytes);
			char *text = malloc(strlen(enc) + 100);
			sprintf(text, "{\"shape\": [%d], \"dtype\": \"%s\", \"b64\": \"%s\"}", n,
			        cases[c].name, enc);
			api_tensor t = API_TENSOR_INIT;
			api_problem p;
			cr_assert_eq(decode(&t, text, NULL, &p), 0, "%s: %s", text, p.detail);
			cr_assert_eq(t.t.dtype, cases[c].dt);
			cr_assert_eq(t.t.size, n);
			cr_assert_eq((uintptr_t)t.t.data % 64, 0);
			cr_assert(memcmp(t.t.data, raw, bytes) == 0, "%s", text);
			cr_assert_eq(eng_dtype_size(t.t.dtype), cases[c].esz);
			api_tensor_free(&t);
			free(text);
			free(enc);
			free(raw);
		}
	}
}

Test(b64, large_payload)
{
	size_t n = (size_t)3 << 20; /* 3M uint8 -> 4 MB of base64 */
	unsigned char *raw = malloc(n);
	for (size_t i = 0; i < n; i++)
		raw[i] = (unsigned char)((i * 2654435761u) >> 24);
	char *enc = b64(raw, n);
	json_t *v = json_pack("{s:[I], s:s, s:s}", "shape", (json_int_t)n, "dtype", "uint8", "b64",
	                      enc);
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(api_tensor_decode(&t, v, "/y", NULL, &p), 0, "%s", p.detail);
	cr_assert(memcmp(t.t.data, raw, n) == 0);
	api_tensor_free(&t);
	json_decref(v);
	free(enc);
	free(raw);
}

Test(b64, rejections)
{
	/* 4 bytes of float32 expected, 3 given */
	expect_fail("{\"shape\": [1], \"b64\": \"AAAA\"}", 422, "shape_mismatch", "/y/b64");
	expect_fail("{\"shape\": [2], \"dtype\": \"float64\", \"b64\": \"AAAAAAAAAAA=\"}", 422,
	            "shape_mismatch", "/y/b64");
	expect_fail("{\"shape\": [1], \"dtype\": \"uint8\", \"b64\": \"AA\"}", 422, "bad_base64",
	            "/y/b64");
	expect_fail("{\"shape\": [3], \"dtype\": \"uint8\", \"b64\": \"AA-_\"}", 422, "bad_base64",
	            "/y/b64");
	expect_fail("{\"shape\": [3], \"dtype\": \"uint8\", \"b64\": \"AA A\"}", 422, "bad_base64",
	            "/y/b64");
	expect_fail("{\"shape\": [6], \"dtype\": \"uint8\", \"b64\": \"AA==AAAA\"}", 422,
	            "bad_base64", "/y/b64");
	expect_fail("{\"shape\": [2], \"dtype\": \"uint8\", \"b64\": \"A=B=\"}", 422, "bad_base64",
	            "/y/b64");
	expect_fail("{\"shape\": [3], \"dtype\": \"uint8\", \"b64\": \"AB=C\"}", 422, "bad_base64",
	            "/y/b64");
	expect_fail("{\"shape\": [6], \"dtype\": \"uint8\", \"b64\": \"AAAA\\nAAAA\"}", 422,
	            "bad_base64", "/y/b64");
	expect_fail("{\"shape\": [1], \"dtype\": \"float16\", \"b64\": \"AAA=\"}", 422, "bad_type",
	            "/y/dtype");
	expect_fail("{\"shape\": [1], \"dtype\": 4, \"b64\": \"AAAAAA==\"}", 422, "bad_type",
	            "/y/dtype");
	expect_fail("{\"shape\": [1], \"b64\": 12}", 422, "bad_type", "/y/b64");
	expect_fail("{\"b64\": \"AAAAAA==\"}", 422, "missing_field", "/y/shape");
	expect_fail("{\"shape\": [1], \"b64\": \"AAAAAA==\", \"strides\": [1]}", 422,
	            "unknown_field", "/y/strides");
}

Test(b64, bad_character_offset_in_detail)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, "{\"shape\": [6], \"dtype\": \"uint8\", \"b64\": \"AAAAA*AA\"}",
	                    NULL, &p),
	             -1);
	cr_assert(strstr(p.detail, "offset 5"), "%s", p.detail);
}

static void nonfinite_case(eng_dtype dt, const void *raw, size_t bytes, int64_t n,
                           int64_t bad_index)
{
	char *enc = b64(raw, bytes);
	char text[512];
	snprintf(text, sizeof text, "{\"shape\": [%lld], \"dtype\": \"%s\", \"b64\": \"%s\"}",
	         (long long)n, eng_dtype_name(dt), enc);
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	int64_t budget = 100;
	api_tensor_opts o = {false, &budget, NULL, NULL};
	cr_assert_eq(decode(&t, text, &o, &p), -1, "%s", text);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.code, "non_finite");
	cr_assert_str_eq(p.pointer, "/y");
	char want[64];
	snprintf(want, sizeof want, "flat index %lld", (long long)bad_index);
	cr_assert(strstr(p.detail, want), "%s", p.detail);
	cr_assert_null(t.buf);
	cr_assert_eq(budget, 100);
	/* nan_policy: propagate */
	o.allow_nonfinite = true;
	cr_assert_eq(decode(&t, text, &o, &p), 0, "%s", p.detail);
	cr_assert(!isfinite(eng_tensor_at(&t.t, bad_index)));
	cr_assert_eq(budget, 100 - n);
	api_tensor_free(&t);
	free(enc);
}

Test(b64, non_finite_floats)
{
	float f[4] = {0.5f, 1.0f, NAN, 2.0f};
	nonfinite_case(ENG_F32, f, sizeof f, 4, 2);
	float g[3] = {INFINITY, 1.0f, NAN};
	nonfinite_case(ENG_F32, g, sizeof g, 3, 0);
	double d[3] = {0.5, 1.0, -INFINITY};
	nonfinite_case(ENG_F64, d, sizeof d, 3, 2);
	/* a NaN with payload bits */
	uint64_t bits = 0x7ff0000000000001ull;
	double e[2];
	e[0] = 1;
	memcpy(&e[1], &bits, 8);
	nonfinite_case(ENG_F64, e, sizeof e, 2, 1);
}

Test(b64, integer_bits_are_not_floats)
{
	/* 0x7f800000 is Inf as a float32 but a plain number as an int32 */
	int32_t i[2] = {0x7f800000, -1};
	char *enc = b64(i, sizeof i);
	char text[256];
	snprintf(text, sizeof text, "{\"shape\": [2], \"dtype\": \"int32\", \"b64\": \"%s\"}", enc);
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	cr_assert_eq(decode(&t, text, NULL, &p), 0, "%s", p.detail);
	cr_assert_eq(((const int32_t *)t.t.data)[0], 0x7f800000);
	cr_assert_eq(((const int32_t *)t.t.data)[1], -1);
	api_tensor_free(&t);
	free(enc);
}

/* ---- budget and allocation failures ------------------------------------------------ */

Test(budget, charged_and_exhausted)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	int64_t budget = 5;
	api_tensor_opts o = {false, &budget, NULL, NULL};
	cr_assert_eq(decode(&t, "[1, 2, 3, 4, 5, 6]", &o, &p), -1);
	cr_assert_eq(p.status, 413);
	cr_assert_str_eq(p.code, "too_many_elements");
	cr_assert_str_eq(p.pointer, "/y");
	cr_assert_eq(budget, 5);
	cr_assert_eq(decode(&t, "[[1, 2], [3, 4]]", &o, &p), 0);
	cr_assert_eq(budget, 1);
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "7", &o, &p), 0);
	cr_assert_eq(budget, 0);
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "[]", &o, &p), 0, "empty tensors cost nothing");
	api_tensor_free(&t);
	cr_assert_eq(decode(&t, "8", &o, &p), -1);
	cr_assert_eq(p.status, 413);
	/* b64 is charged by its element count, before allocating */
	budget = 3;
	cr_assert_eq(
	        decode(&t, "{\"shape\": [4], \"dtype\": \"uint8\", \"b64\": \"AAAAAA==\"}", &o, &p),
	        -1);
	cr_assert_str_eq(p.code, "too_many_elements");
	cr_assert_eq(last_allocs, 0);
	cr_assert_eq(budget, 3);
}

Test(budget, ragged_over_budget_still_reports_the_ragged_spot)
{
	api_tensor t = API_TENSOR_INIT;
	api_problem p;
	int64_t budget = 3;
	api_tensor_opts o = {false, &budget, NULL, NULL};
	cr_assert_eq(decode(&t, "[[1, 2, 3, 4], [5]]", &o, &p), -1);
	cr_assert_str_eq(p.code, "shape_mismatch");
	cr_assert_str_eq(p.pointer, "/y/1");
}

Test(oom, every_allocation_failure_is_503)
{
	static const char *inputs[] = {
	        "2.5",
	        "[[1, 2], [3, 4]]",
	        "{\"shape\": [2, 2], \"data\": [1, 2, 3, 4]}",
	        "{\"shape\": [2, 2], \"dtype\": \"float32\", \"b64\": "
	        "\"zczMPWZmZj/NzEw/zczMPg==\"}",
	};
	for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
		json_t *v = json_loads(inputs[k], JSON_DECODE_ANY, NULL);
		cr_assert_not_null(v);
		/* count the allocations of a successful decode */
		api_tensor t = API_TENSOR_INIT;
		api_problem p;
		uint64_t before = api__alloc_count();
		cr_assert_eq(api_tensor_decode(&t, v, "/y", NULL, &p), 0);
		uint64_t n = api__alloc_count() - before;
		api_tensor_free(&t);
		cr_assert_geq(n, 1);
		for (uint64_t i = 1; i <= n + 1; i++) {
			int64_t budget = 100;
			api_tensor_opts o = {false, &budget, NULL, NULL};
			api__alloc_fail_after((long)i);
			int rc = api_tensor_decode(&t, v, "/y", &o, &p);
			api__alloc_fail_after(0);
			if (i <= n) {
				cr_assert_eq(rc, -1, "input %zu, failing allocation %llu", k,
				             (unsigned long long)i);
				cr_assert_eq(p.status, 503);
				cr_assert_str_eq(p.code, "out_of_memory");
				cr_assert_null(t.buf);
				cr_assert_eq(budget, 100);
			} else {
				cr_assert_eq(rc, 0);
				api_tensor_free(&t);
			}
		}
		json_decref(v);
	}
}

/* ---- base64 split across threads ---------------------------------------------------- */

#include <pthread.h>
#include <stdatomic.h>

typedef struct pool_run {
	const eng_parallel *par;
	int64_t ntasks;
	eng_task_fn fn;
	void *arg;
	atomic_llong next;
} pool_run;

static void *pool_worker(void *p)
{
	pool_run *r = p;
	for (int64_t t; (t = atomic_fetch_add(&r->next, 1)) < r->ntasks;)
		r->fn(r->arg, t);
	return NULL;
}

/* A plain eng_parallel: three threads claiming tasks (the server's par.c
 * is in another layer). */
static void pool_for_each(const eng_parallel *self, int64_t ntasks, eng_task_fn fn, void *arg)
{
	pool_run r = {self, ntasks, fn, arg, 0};
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, pool_worker, &r), 0);
	pool_worker(&r);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
}

Test(b64, split_across_threads_same_bytes_same_errors)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	eng_parallel par = {pool_for_each, 3, NULL};
	size_t n = (size_t)7 << 20; /* bytes: 9.3 M characters, 9 stretches */
	size_t chars = (n + 2) / 3 * 4;
	char *text = malloc(chars + 128);
	cr_assert_not_null(text);
	int head = snprintf(text, 128, "{\"shape\": [%zu], \"dtype\": \"uint8\", \"b64\": \"", n);
	char *s = text + head;
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < chars; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		s[i] = al[x % 64];
	}
	s[chars - 1] = '='; /* n % 3 == 1: "==" */
	s[chars - 2] = '=';
	s[chars - 3] = 'A'; /* canonical: the last group's spare bits are 0 */
	memcpy(s + chars, "\"}", 3);

	/* the same bytes as one thread */
	api_tensor a = API_TENSOR_INIT, b = API_TENSOR_INIT;
	api_problem pa, pb;
	int64_t ba = (int64_t)n, bb = (int64_t)n;
	api_tensor_opts oa = {false, &ba, NULL, NULL}, ob = {false, &bb, NULL, &par};
	cr_assert_eq(decode(&a, text, &oa, &pa), 0, "%s", pa.detail);
	cr_assert_eq(decode(&b, text, &ob, &pb), 0, "%s", pb.detail);
	cr_assert_eq(a.t.size, (int64_t)n);
	cr_assert(memcmp(a.t.data, b.t.data, n) == 0);
	api_tensor_free(&a);
	api_tensor_free(&b);

	/* damage at stretch boundaries, inside stretches and in the last
	 * group: the same problem either way */
	size_t stretch = (chars / 4 + 8) / 9 * 4; /* tensor.c's split of 9 tasks */
	size_t spots[] = {0, stretch - 2, stretch - 1, stretch, chars / 2, chars - 5, chars - 3};
	const char bad[] = {'*', '=', '-'};
	for (size_t k = 0; k < sizeof spots / sizeof spots[0]; k++) {
		for (size_t c = 0; c < sizeof bad; c++) {
			char keep = s[spots[k]];
			s[spots[k]] = bad[c];
			ba = bb = (int64_t)n;
			int ra = decode(&a, text, &oa, &pa), rb = decode(&b, text, &ob, &pb);
			s[spots[k]] = keep;
			cr_assert_eq(ra, rb, "spot %zu char %d", spots[k], bad[c]);
			if (ra == 0) {
				cr_assert(memcmp(a.t.data, b.t.data, n) == 0);
			} else {
				cr_assert_str_eq(pa.code, pb.code);
				cr_assert_str_eq(pa.detail, pb.detail, "spot %zu", spots[k]);
			}
			api_tensor_free(&a);
			api_tensor_free(&b);
		}
	}
	free(text);
}
