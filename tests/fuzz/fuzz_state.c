/*
 * fuzz_state.c - libFuzzer harness for the stream state a merge accepts
 * from the network (POST /v1/streams/{id}/merge carries it as base64):
 * eng_stream_deserialize on hostile bytes.
 *
 * The input is the payload; the harness wraps it in a valid header (magic,
 * version, length and checksum, computed with the engine's own
 * eng__checksum64 from engine/src/bytes.h), so the fuzzer reaches the payload
 * parser instead of stopping at the checksum. Whatever parses must then be
 * usable: counts, AUC of every column (and pooled), serialize and parse
 * back to identical bytes, merge into a copy of itself. ASan/UBSan and
 * libFuzzer's leak check do the rest.
 * Each payload is tried under versions 1, 2 and 3 of the header.
 * Seeds: tests/fuzz/corpus_state (payloads of real streams' states, some
 * with top-k and calibration sums, sketches in both byte formats).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/stream.h"
#include "bytes.h" /* the state format's helpers and checksum */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The payload under header version `version`. */
static void one(const uint8_t *data, size_t size, uint8_t version)
{
	uint8_t *blob = malloc(24 + size);
	eng_stream *st = NULL, *back = NULL, *copy = NULL;
	void *bytes = NULL, *bytes2 = NULL;
	size_t len = 0, len2 = 0;
	eng_error err = {0};

	if (!blob)
		return;
	memcpy(blob, "LSTR", 4);
	blob[4] = version, blob[5] = blob[6] = blob[7] = 0;
	eng__put_u64(blob + 8, size);
	eng__put_u64(blob + 16, eng__checksum64(data, size));
	if (size)
		memcpy(blob + 24, data, size);

	if (eng_stream_deserialize(&st, blob, 24 + size, (size_t)64 << 20, &err) != 0)
		goto out;

	eng_stream_counts cnt;
	eng_stream_counts_of(&cnt, st);
	if (cnt.rows < 0 || cnt.updates < 0)
		abort();
	(void)eng_stream_memory(st);
	const eng_loss_result *lr = eng_stream_loss(st);
	if (lr && lr->extra) { /* the metric sums read (version 3) */
		double v;
		eng_calib_summary cs;
		(void)eng_extra_perplexity(lr->extra, &v);
		for (int i = 0; i < lr->extra->ntop; i++)
			(void)eng_extra_top_k(lr->extra, i, &v);
		(void)eng_calib_summarize(&cs, lr->extra);
	}
	const eng_stream_config *cfg = eng_stream_config_of(st);
	int64_t cols = cfg->columns < 8 ? cfg->columns : 8;
	for (int64_t c = -1; c < cols; c++) {
		eng_auc_result r;
		eng_auc_curve curve;
		memset(&curve, 0, sizeof curve);
		if (eng_stream_auc(&r, &curve, st, c, 16, &err) == 0)
			eng_auc_curve_free(&curve);
	}

	/* What parsed serializes back to the same bytes and parses again. */
	if (eng_stream_serialize(&bytes, &len, st) != 0)
		goto out;
	if (eng_stream_deserialize(&back, bytes, len, (size_t)64 << 20, &err) != 0) {
		fprintf(stderr, "a parsed state does not parse back: %s\n", err.msg);
		abort();
	}
	if (eng_stream_serialize(&bytes2, &len2, back) != 0)
		goto out;
	if (len != len2 || memcmp(bytes, bytes2, len) != 0) {
		fprintf(stderr, "serialize(parse(serialize(x))) differs\n");
		abort();
	}
	/* and merges into a copy of itself (or refuses cleanly) */
	if (eng_stream_clone(&copy, st) == 0)
		(void)eng_stream_merge(copy, back, &err);
out:
	eng_stream_free(copy);
	eng_stream_free(back);
	eng_stream_free(st);
	free(bytes2);
	free(bytes);
	free(blob);
}

/* Every payload under each header version the reader takes: 1 (upgraded
 * on read), 2 and 3 (with the metric sums' XTRA section). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (uint8_t v = 1; v <= 3; v++)
		one(data, size, v);
	return 0;
}
