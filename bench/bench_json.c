/*
 * bench_json.c - how fast a request's numbers get from JSON text into
 * memory, and at what heap cost.
 *
 * Built twice from this one file:
 *   bench_json        plain jansson: json_loadb of a float array (MB/s,
 *                     M numbers/s, heap bytes per number), jansson loading a
 *                     base64 body (one long string), and a bench-local
 *                     table-driven base64 decoder (MB/s of base64 text);
 *   bench_json_lossd  (BENCH_LOSSD_API) lossd's api_parse_body_packed +
 *                     api_tensor_decode on the same bodies: the path every
 *                     request takes before the engine sees a number.
 * Two programs, because the api layer installs its own counting allocator
 * into jansson at load time; measuring jansson alone needs a process where
 * that allocator is absent.
 *
 * Heap is read from mallinfo2 (in-use arena bytes plus mmapped blocks), so
 * it includes every allocator's headers and malloc's own overhead: what the
 * process really pays. Inputs are generated from a fixed seed; numbers are
 * printed with %.7g (about 11 bytes each with the separator), close to what
 * a client rounding float32 logits sends.
 */
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#ifdef BENCH_LOSSD_API
#include "lossd/api.h"
#define IMPL "lossd"
#else
#define IMPL "jansson"
#endif

static size_t heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* {"y_pred": [x0, x1, ...]} with n numbers; *vals gets them as floats. */
static char *make_json_body(int64_t n, size_t *len, float **vals)
{
	bench_rng rng = {7};
	size_t cap = (size_t)n * 24 + 64, at = 0;
	char *s = malloc(cap);
	float *v = malloc((size_t)n * sizeof *v);

	if (!s || !v)
		exit(2);
	at += (size_t)snprintf(s, cap, "{\"y_pred\": [");
	for (int64_t i = 0; i < n; i++) {
		char tmp[32];

		v[i] = (float)(3.0 * bench_rng_normal(&rng));
		snprintf(tmp, sizeof tmp, "%.7g", v[i]);
		v[i] = strtof(tmp, NULL); /* the value the text stands for */
		at += (size_t)snprintf(s + at, cap - at, i ? ", %s" : "%s", tmp);
	}
	at += (size_t)snprintf(s + at, cap - at, "]}");
	*len = at;
	*vals = v;
	return s;
}

/* {"y_pred": {"shape": [n], "dtype": "float32", "b64": "..."}}; *b64len is
 * the length of the base64 text alone. */
static char *make_b64_body(int64_t n, size_t *len, size_t *b64len, float **vals)
{
	bench_rng rng = {11};
	size_t raw = (size_t)n * sizeof(float), cap = raw / 3 * 4 + 256, at;
	float *v = malloc(raw);
	char *s = malloc(cap);

	if (!s || !v)
		exit(2);
	for (int64_t i = 0; i < n; i++)
		v[i] = (float)(3.0 * bench_rng_normal(&rng));
	at = (size_t)snprintf(
	        s, cap, "{\"y_pred\": {\"shape\": [%lld], \"dtype\": \"float32\", \"b64\": \"",
	        (long long)n);
	*b64len = bench_b64_encode(s + at, (const unsigned char *)v, raw);
	at += *b64len;
	at += (size_t)snprintf(s + at, cap - at, "\"}}");
	*len = at;
	*vals = v;
	return s;
}

#ifndef BENCH_LOSSD_API
/* A plain table-driven decoder, four characters to three bytes: the
 * reference point for lossd's. Returns bytes written or -1 on a bad char. */
static int64_t b64_decode_table(unsigned char *out, const char *in, size_t n)
{
	static int8_t tab[256];
	size_t o = 0, i = 0;

	if (!tab[0]) {
		memset(tab, -1, sizeof tab);
		for (int k = 0; k < 64; k++)
			tab[(unsigned char)bench_b64_alphabet[k]] = (int8_t)k;
	}
	while (n > 0 && in[n - 1] == '=')
		n--;
	for (; i + 4 <= n; i += 4) {
		int a = tab[(unsigned char)in[i]], b = tab[(unsigned char)in[i + 1]];
		int c = tab[(unsigned char)in[i + 2]], d = tab[(unsigned char)in[i + 3]];
		uint32_t w;

		if ((a | b | c | d) < 0)
			return -1;
		w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (unsigned char)(w >> 16);
		out[o++] = (unsigned char)(w >> 8);
		out[o++] = (unsigned char)w;
	}
	if (n - i >= 2) {
		int a = tab[(unsigned char)in[i]], b = tab[(unsigned char)in[i + 1]];
		int c = n - i == 3 ? tab[(unsigned char)in[i + 2]] : 0;

		if ((a | b | c) < 0)
			return -1;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		if (n - i == 3)
			out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
	}
	return (int64_t)o;
}
#endif

/* One parse (and decode) of body; returns seconds or a negative value on
 * failure. *heap gets the heap growth while the result was alive. */
static double run_once(const char *body, size_t len, int64_t n, const float *expect, int exact,
                       size_t *heap, int *ok)
{
	size_t h0 = heap_in_use();
	double t0 = bench_now(), secs;
	json_t *root;
#ifdef BENCH_LOSSD_API
	api_ctx ctx = API_CTX_INIT;
	api_problem p;
	api_tensor t = API_TENSOR_INIT;
	int64_t budget = n + 16;
	api_packed *pk = NULL;
	api_tensor_opts opts = {false, &budget, NULL, NULL};

	ctx.max_elements = n + 16;
	root = api_parse_body_packed(&ctx, body, len, &pk, &p); /* as the handlers parse */
	opts.packed = pk;
	if (!root ||
	    api_tensor_decode(&t, json_object_get(root, "y_pred"), "/y_pred", &opts, &p) != 0) {
		fprintf(stderr, "bench_json_lossd: %d %s: %s\n", p.status, p.code ? p.code : "?",
		        p.detail);
		json_decref(root);
		api_packed_free(pk);
		*ok = 0;
		return -1.0;
	}
	secs = bench_now() - t0;
	*heap = heap_in_use() - h0;
	*ok = t.t.size == n;
	for (int64_t i = 0; *ok && i < n; i += 1 + n / 1000) {
		double got = eng_tensor_at(&t.t, i);

		*ok = exact ? got == (double)expect[i]
		            : fabs(got - (double)expect[i]) <= 1e-6 * fabs((double)expect[i]);
	}
	api_tensor_free(&t);
	json_decref(root);
	api_packed_free(pk);
#else
	json_error_t err;
	json_t *arr;

	root = json_loadb(body, len, 0, &err);
	secs = bench_now() - t0;
	if (!root) {
		fprintf(stderr, "bench_json: %s\n", err.text);
		*ok = 0;
		return -1.0;
	}
	*heap = heap_in_use() - h0;
	arr = json_object_get(root, "y_pred");
	if (exact) {
		*ok = json_is_object(arr);
	} else {
		*ok = (int64_t)json_array_size(arr) == n;
		for (int64_t i = 0; *ok && i < n; i += 1 + n / 1000)
			*ok = (float)json_number_value(json_array_get(arr, (size_t)i)) == expect[i];
	}
	json_decref(root);
#endif
	return secs;
}

static int bench_body(const bench_opts *o, const char *id, const char *body, size_t len,
                      size_t payload, int64_t n, const float *expect, int exact)
{
	double *secs = calloc((size_t)o->runs, sizeof *secs);
	size_t heap = 0;
	int ok = 1;
	char extra[256], idb[96];
	double med;

	for (int r = 0; r < o->runs && ok; r++) {
		secs[r] = run_once(body, len, n, expect, exact, &heap, &ok);
		malloc_trim(0);
	}
	if (!ok) {
		fprintf(stderr, "%s: %s failed or decoded wrong values\n", IMPL, id);
		free(secs);
		return 1;
	}
	med = bench_median(secs, o->runs);
	snprintf(extra, sizeof extra,
	         "\"bytes\": %zu, \"numbers\": %lld, \"Mnum_per_s\": %.4g, \"heap_per_number\": "
	         "%.1f, "
	         "\"heap_over_body\": %.3g",
	         payload, (long long)n, (double)n / med / 1e6, (double)heap / (double)n,
	         (double)heap / (double)len);
	bench_emit(id, IMPL, "MB/s", (double)payload / med / 1e6, extra);
	snprintf(idb, sizeof idb, "%s/heap", id);
	bench_emit(idb, IMPL, "B/number", (double)heap / (double)n, NULL);
	free(secs);
	return 0;
}

int main(int argc, char **argv)
{
	bench_opts o;
	int64_t n_json, n_b64;
	size_t len, b64len;
	float *vals;
	char *body;
	int fails = 0;

	bench_parse_args(&o, argc, argv, 5);
	n_json = o.smoke ? 50000 : 4000000;
	n_b64 = o.smoke ? 200000 : 32000000;

	body = make_json_body(n_json, &len, &vals);
	fprintf(stderr, "%s: JSON array of %lld numbers, %.1f MB\n", IMPL, (long long)n_json,
	        (double)len / 1e6);
	fails += bench_body(&o, "json/float_array", body, len, len, n_json, vals, 0);
	free(body);
	free(vals);

	body = make_b64_body(n_b64, &len, &b64len, &vals);
	fprintf(stderr, "%s: base64 float32 tensor of %lld values, %.1f MB of base64\n", IMPL,
	        (long long)n_b64, (double)b64len / 1e6);
	fails += bench_body(&o, "json/b64_body", body, len, b64len, n_b64, vals, 1);
#ifndef BENCH_LOSSD_API
	{
		const char *b64 = strstr(body, "\"b64\": \"") + 8;
		unsigned char *out = bench_alloc((size_t)n_b64 * sizeof(float) + 4);
		double *secs = calloc((size_t)o.runs, sizeof *secs);
		int64_t got = 0;

		for (int r = 0; r < o.runs; r++) {
			double t0 = bench_now();

			got = b64_decode_table(out, b64, b64len);
			secs[r] = bench_now() - t0;
		}
		if (got != n_b64 * (int64_t)sizeof(float) || memcmp(out, vals, (size_t)got) != 0) {
			fprintf(stderr, "bench_json: base64 reference decoder is wrong\n");
			fails++;
		} else {
			bench_emit("b64/decode", "table", "MB/s",
			           (double)b64len / bench_median(secs, o.runs) / 1e6, NULL);
		}
		free(secs);
		free(out);
	}
#endif
	free(body);
	free(vals);
	return fails ? 1 : 0;
}
