/*
 * fuzz_body.c - libFuzzer harness for api/src/body.c: a body read as it
 * arrives must be answered exactly as the whole body. The first byte of
 * the input picks the chunk size (1 to 256), the rest is the body; it goes
 * to api_loss whole and to api_body_feed + api_loss_sent in chunks, and
 * the two replies must be the same bytes. Inputs with "b64" strings of
 * 1024 characters or more exercise the decoding, arrays of 16 numbers or
 * more the lifting of number arrays (seed the corpus with such bodies:
 * tests/api/test_body.c builds them; corpus_body has both). The arena is
 * exactly api_body_arena_size(len), so ASan sees any write past it; a
 * body whose input length is odd gets it 16 bytes off a 64-byte boundary
 * (lifted arrays are then copied, not viewed where they are). The whole
 * body is decoded with b64.c's table path forced, the chunks with its AVX2
 * path where the CPU has it, so the fuzzer compares the two decoders too.
 * Build: CC=clang cmake -DLOSSD_FUZZ=ON -DLOSSD_BUILD_TESTS=OFF.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/api.h"
#include "b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	api_ctx ctx = API_CTX_INIT;
	api_reply want = {0}, got = {0};
	api_body *b = NULL;

	if (size < 1)
		return 0;
	size_t step = (size_t)data[0] + 1;
	const char *s = (const char *)data + 1;
	size_t n = size - 1;
	ctx.max_elements = 1 << 16;
	ctx.max_json_bytes = (size_t)1 << 22;

	api__b64_set_simd(false);
	api_loss(&want, &ctx, s, n);
	api__b64_set_simd(true);
	size_t cap = api_body_arena_size(n), off = size % 2 ? 16 : 0;
	char *block = aligned_alloc(64, (cap + off + 63) / 64 * 64);
	void *arena = block + off;
	if (!block || api_body_new(&b, arena, cap, n, ctx.max_depth))
		abort();
	for (size_t at = 0; at < n; at += step)
		if (api_body_feed(b, s + at, n - at < step ? n - at : step))
			abort();
	api_loss_sent(&got, &ctx, b);
	if (got.status != want.status || got.len != want.len ||
	    memcmp(got.body, want.body, want.len)) {
		fprintf(stderr, "whole: %d %.*s\nsent:  %d %.*s\n", want.status, (int)want.len,
		        want.body, got.status, (int)got.len, got.body);
		abort();
	}
	api_body_free(b);
	free(block);
	api_reply_free(&want);
	api_reply_free(&got);
	return 0;
}
