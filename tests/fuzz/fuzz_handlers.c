/*
 * fuzz_handlers.c - libFuzzer harness for the two endpoints: every input
 * goes to api_loss and to api_auc (with small limits), and every reply is
 * checked: a status in 200 / 4xx / 5xx, valid JSON of the announced type,
 * a problem with a code when it is not 200 (jansson's strict reparse also
 * rejects any NaN or Infinity token a handler might have printed).
 * Seeds: tests/fuzz/corpus_handlers (requests of the conformance vectors).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(api_reply *r, const char *who)
{
	if (!r->body) {
		if (r->status != 503)
			abort();
		return;
	}
	if (r->status != 200 && (r->status < 400 || r->status > 599)) {
		fprintf(stderr, "%s: status %d\n", who, r->status);
		abort();
	}
	json_error_t e;
	api_json_budget_clear();
	json_t *v = json_loadb(r->body, r->len, 0, &e);
	if (!v || !json_is_object(v)) {
		fprintf(stderr, "%s: reply is not a JSON object: %s: %.*s\n", who, e.text,
		        (int)(r->len > 500 ? 500 : r->len), r->body);
		abort();
	}
	int problem = strcmp(r->content_type, API_PROBLEM_JSON) == 0;
	if ((r->status == 200) == problem)
		abort();
	if (problem && !json_is_string(json_object_get(v, "code")))
		abort();
	json_decref(v);
	api_reply_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	api_ctx ctx = API_CTX_INIT;
	api_reply r;
	ctx.max_elements = 20000;
	ctx.max_json_bytes = (size_t)8 << 20;

	api_loss(&r, &ctx, (const char *)data, size);
	check(&r, "api_loss");
	api_auc(&r, &ctx, (const char *)data, size);
	check(&r, "api_auc");
	return 0;
}
