/*
 * fuzz_request.c - libFuzzer harness for the api layer's request plumbing:
 * api_parse_body_packed, then every top-level member decoded as a tensor
 * (with a small element budget), the field checks, and the problem or JSON
 * reply rendered and parsed back.
 *
 * Differential: the body is also parsed by jansson alone (api_parse_body)
 * and every member decoded from that tree; lifting tensors out of the body
 * (packed.c) must never change an answer: the same problem, or the same
 * tensor bit for bit. (Only jansson alone may run out of its heap budget
 * where the lifted parse does not: that is what lifting is for.)
 *
 * Asserts what must hold for any input: a rejection carries a 4xx/5xx
 * status, a code and a detail; a decoded tensor's size is the product of
 * its shape, its data 64-byte aligned, every element readable, the budget
 * never negative; every rendered reply is valid JSON. ASan/UBSan catch the
 * rest. Build: CC=clang cmake -DLOSSD_FUZZ=ON -DLOSSD_BUILD_TESTS=OFF.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "fields.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_problem(const api_problem *a, const api_problem *b)
{
	if (a->status != b->status || strcmp(a->code, b->code) || strcmp(a->pointer, b->pointer) ||
	    strcmp(a->detail, b->detail)) {
		fprintf(stderr, "jansson: %d %s %s %s\nlifted: %d %s %s %s\n", a->status, a->code,
		        a->pointer, a->detail, b->status, b->code, b->pointer, b->detail);
		abort();
	}
}

static void check_problem(const api_problem *p)
{
	if (p->status < 400 || p->status > 599 || !p->code || !p->code[0] || !p->detail[0] ||
	    strlen(p->pointer) >= sizeof p->pointer) {
		fprintf(stderr, "bad problem: %d %s %s\n", p->status, p->code ? p->code : "(null)",
		        p->detail);
		abort();
	}
	if (p->pointer[0] && p->pointer[0] != '/')
		abort();
}

/* The reply must be JSON (problem replies too). */
static void check_reply(api_reply *r)
{
	if (r->body) {
		json_error_t e;
		json_t *v = json_loadb(r->body, r->len, JSON_DECODE_ANY, &e);
		/* the reparse may meet the thread's jansson budget: only a
		 * syntax error is a bug */
		if (!v && json_error_code(&e) != json_error_out_of_memory) {
			fprintf(stderr, "reply is not JSON: %s: %.*s\n", e.text, (int)r->len,
			        r->body);
			abort();
		}
		json_decref(v);
	}
	api_reply_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const allowed[] = {"loss",        "y_true", "y_pred",        "y_score",
	                                      "from_logits", "axis",   "sample_weight", NULL};
	api_ctx ctx = API_CTX_INIT;
	api_problem p;
	api_reply r;
	ctx.max_elements = 4096;
	ctx.max_json_bytes = (size_t)1 << 20;

	api_packed *pk = NULL;
	api_problem p2;
	json_t *v2 = api_parse_body(&ctx, (const char *)data, size, &p2);
	bool v2_budget = !v2 && (!strcmp(p2.code, "body_too_large") || p2.status == 503);
	json_t *v = api_parse_body_packed(&ctx, (const char *)data, size, &pk, &p);
	if (!v2_budget && !v != !v2) {
		fprintf(stderr, "jansson %s, lifted %s\n", v2 ? "ok" : p2.detail,
		        v ? "ok" : p.detail);
		abort();
	}
	if (!v && !v2_budget)
		same_problem(&p2, &p);
	if (!v) {
		json_decref(v2);
		if (pk)
			abort();
		check_problem(&p);
		api_reply_problem(&r, &p);
		check_reply(&r);
		return 0;
	}

	int64_t budget = 4096;
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		api_tensor t = API_TENSOR_INIT;
		api_tensor_opts o = {(size & 1) != 0, &budget, pk, NULL};
		char ptr[160];
		api__pointer(ptr, sizeof ptr, "", key);
		int rc = api_tensor_decode(&t, val, ptr, &o, &p);
		if (v2) {
			api_tensor t2 = API_TENSOR_INIT;
			api_problem q;
			int64_t budget2 = budget + (rc == 0 ? t.t.size : 0);
			api_tensor_opts o2 = {(size & 1) != 0, &budget2, NULL, NULL};
			int rc2 = api_tensor_decode(&t2, json_object_get(v2, key), ptr, &o2, &q);
			if (rc != rc2)
				abort();
			if (rc)
				same_problem(&q, &p);
			else if (t.t.ndim != t2.t.ndim || t.t.size != t2.t.size ||
			         t.t.dtype != t2.t.dtype ||
			         memcmp(t.t.shape, t2.t.shape, sizeof t.t.shape) ||
			         memcmp(t.t.data, t2.t.data,
			                (size_t)t.t.size * eng_dtype_size(t.t.dtype)))
				abort();
			api_tensor_free(&t2);
		}
		if (rc == 0) {
			/* the product of all dimensions, and of the non-zero
			 * ones, fit (tensor.c keeps both below 2^53) */
			int64_t n = 1, nz = 1;
			for (int i = 0; i < t.t.ndim; i++) {
				if (t.t.shape[i] < 0)
					abort();
				if (t.t.shape[i] && __builtin_mul_overflow(nz, t.t.shape[i], &nz))
					abort();
				n = t.t.shape[i] ? n * t.t.shape[i] : 0;
			}
			if (n != t.t.size || nz > ((int64_t)1 << 53) || !t.t.data ||
			    ((uintptr_t)t.t.data & 63) || t.t.ndim > ENG_MAX_RANK)
				abort();
			volatile double sum = 0;
			for (int64_t i = 0; i < t.t.size; i++)
				sum += eng_tensor_at(&t.t, i);
			(void)sum;
		} else {
			check_problem(&p);
			if (t.buf || t.t.data)
				abort();
		}
		api_tensor_free(&t);
		if (budget < 0)
			abort();
	}

	/* the option getters on whatever came in */
	bool b;
	double x;
	int64_t k;
	int e;
	const char *s;
	static const char *const names[] = {"mean", "sum", "none", NULL};
	if (api__check_fields(v, allowed, "", &p))
		check_problem(&p);
	if (api__get_bool(&b, v, "", "from_logits", false, &p))
		check_problem(&p);
	if (api__get_number(&x, v, "", "delta", 1.0, 0, 1e300, &p))
		check_problem(&p);
	if (api__get_int(&k, v, "", "axis", -1, -8, 7, &p))
		check_problem(&p);
	if (api__get_enum(&e, v, "", "reduction", names, 0, &p))
		check_problem(&p);
	if (api__get_string(&s, v, "", "loss", "", &p))
		check_problem(&p);

	api_reply_json(&r, 200, v); /* steals v */
	check_reply(&r);
	json_decref(v2);
	api_packed_free(pk);
	return 0;
}
