/*
 * api_stream.h - JSON <-> streams (docs/API.md section 4): the create config,
 * update and merge bodies, and the read / config / state replies.
 *
 * The api layer knows nothing of storage or HTTP: the server keeps the
 * eng_stream objects and the spec of each stream, and calls these to turn
 * bodies into engine objects and engine objects into replies. A spec is
 * the parsed, validated config of one stream; its canonical JSON text
 * (api_stream_spec_text) is what the server stores and what
 * api_stream_spec_load reads back.
 *
 * Every function is callable from any thread; specs are immutable once
 * made, so one spec may be read by several threads at once.
 */
#ifndef LOSSD_API_API_STREAM_H
#define LOSSD_API_API_STREAM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/api.h"
#include "lossd/stream.h"

/* Longest idempotency key in bytes, the one limit of both spellings: a
 * body's batch_id and the Idempotency-Key header (clients send the same
 * key as both, so they must agree). */
#define API_IDEMPOTENCY_KEY_MAX 256

/* Version of the exported state JSON ("version" field). */
#define API_STREAM_STATE_VERSION 1

typedef struct api_stream_limits {
	size_t max_bytes;    /* memory cap of one stream (507 past it) */
	size_t sketch_bytes; /* a sketch stream's budget when the config gives none */
} api_stream_limits;

#define API_STREAM_LIMITS_INIT                                                                     \
	{                                                                                          \
		ENG_STREAM_DEFAULT_MAX_BYTES, ENG_STREAM_DEFAULT_SKETCH_BYTES                      \
	}

typedef struct api_stream_spec api_stream_spec;

/*
 * Parses a create body (POST /v1/streams):
 *   {"name"?, "method"? ("sketch"), "curve"? ("roc"), "num_classes"? (none:
 *    binary), "multi_label"? (false), "num_thresholds"? (200),
 *    "summation_method"? ("interpolation"), "average"? ("macro"),
 *    "from_logits"? (false), "sketch_bytes"?, "loss"?: "name" or
 *    {"loss", "reduction"?, "from_logits"?, "class_weight"?, "pos_weight"?,
 *     "ignore_class"?, "label_smoothing"?, "alpha"?, "gamma"?,
 *     "apply_class_balancing"?, "delta"?}}
 * An empty body means {}. Unknown fields are 422 unknown_field; bad values
 * 422 bad_option / bad_type; a sketch or binned table larger than
 * lim->max_bytes 507 stream_memory_exceeded; plus api_parse_body's 400/413. *out is new
 * (api_stream_spec_free) on success (0); -1 with *p set otherwise.
 */
int api_stream_spec_parse(api_stream_spec **out, const api_ctx *ctx, const char *body, size_t len,
                          const api_stream_limits *lim, api_problem *p);

/* Rebuilds a spec from api_stream_spec_text's output (borrowed). Returns 0
 * or -1 with *p set (the text is corrupt). */
int api_stream_spec_load(api_stream_spec **out, const char *text, const api_stream_limits *lim,
                         api_problem *p);

/* Accepts NULL. */
void api_stream_spec_free(api_stream_spec *s);

/* The canonical config as JSON text: new (free()), NULL when out of memory. */
char *api_stream_spec_text(const api_stream_spec *s);

/* The engine config (borrowed from s). */
const eng_stream_config *api_stream_spec_engine(const api_stream_spec *s);

/* The stream's name, or "" (borrowed from s). */
const char *api_stream_spec_name(const api_stream_spec *s);

/* {"id": id, ...canonical config}: the create reply and a list entry.
 * New reference, NULL when out of memory. */
json_t *api_stream_render_config(const api_stream_spec *s, const char *id);

/*
 * Decodes an update body {"y_true", "y_score" and/or "y_pred",
 * "sample_weight"?, "batch_id"?} into a new one-batch stream (*delta,
 * eng_stream_free) and
 * *batch_id (new, free(); NULL when absent; a string or an integer, 1 to
 * 256 characters). With a loss in the spec, the loss of the batch is
 * computed too. One of y_score / y_pred serves both the AUC and the loss;
 * with both (loss streams only), y_score feeds the AUC and y_pred the loss.
 * Rows whose label is the loss' ignore_class are left out of the AUC.
 * Errors: api_parse_body's, 422 missing_field /
 * unknown_field / shape_mismatch / label_out_of_range / non_finite /
 * bad_weight / prediction_out_of_range, 507 stream_memory_exceeded. Returns
 * 0, or -1 with *p set and nothing allocated.
 */
int api_stream_decode_update(eng_stream **delta, char **batch_id, const api_stream_spec *s,
                             const api_ctx *ctx, const char *body, size_t len, api_problem *p);

/* Checks a reset body (POST /v1/streams/{id}/reset): empty or an object
 * without fields. 0, or -1 with *p: api_parse_body's errors, 422
 * unknown_field. */
int api_stream_parse_reset(const api_ctx *ctx, const char *body, size_t len, api_problem *p);

typedef struct api_stream_read_opts {
	bool curve;         /* include "curve" */
	int64_t curve_col;  /* column of the curve, or -1: binary's / pooled (micro) */
	int64_t max_points; /* curve points, >= 2 */
	double ci;          /* a confidence level in (0, 1): add "ci"; 0 = none */
} api_stream_read_opts;

#define API_STREAM_READ_OPTS_INIT                                                                  \
	{                                                                                          \
		false, -1, ENG_AUC_DEFAULT_MAX_POINTS, 0.0                                         \
	}

/*
 * The read reply of GET /v1/streams/{id}: {"id", "name", "method", "auc",
 * "average", "per_class"?, "count", "updates", "positives", "negatives",
 * "error_bound"?, "loss"?, "loss_detail"?, "curve"?, "warnings"?}; with
 * o->ci, a "ci" (aucci.h: DeLong for exact streams, Hanley-McNeil else) on
 * a binary stream's reading and in each per_class entry. New reference, or
 * NULL with *p set (422 bad_option for a bad curve column, and at /ci for
 * a PR stream or an exact stream holding sample weights; 500 on out of
 * memory).
 */
json_t *api_stream_render_read(const api_stream_spec *s, const char *id, const eng_stream *st,
                               const api_stream_read_opts *o, api_problem *p);

/* The figures of a reading (api_stream_render_read's "auc", "loss" and
 * "count") for the per-stream gauges: NaN for an AUC or a loss that is
 * undefined or absent. 0, or -1 (out of memory). */
int api_stream_figures(const api_stream_spec *s, const eng_stream *st, double *auc, double *loss,
                       int64_t *count);

/*
 * The mergeable state (GET /v1/streams/{id}/state):
 * {"version": 1, "id", "config": {...}, "count", "updates",
 *  "state": base64 of eng_stream_serialize}. NULL with *p on out of memory.
 * (The server adds "state_id", a digest of id and bytes: the api layer
 * has no digest of its own.)
 */
json_t *api_stream_export(const api_stream_spec *s, const char *id, const eng_stream *st,
                          api_problem *p);

/* Where a merged state says it comes from: the envelope's "id" (the
 * exporting stream), its "state_id" ("" when the envelope has none; the
 * server recomputes the digest from the bytes and compares) and the
 * state's bytes as carried (new: free(); NULL unless the decode succeeded).
 * The digest is of those bytes, not of their re-serialization, which
 * differs for a state an earlier build wrote (an older sketch format). */
typedef struct api_stream_origin {
	char id[129];
	char state_id[65];
	uint8_t *state;
	size_t state_len;
} api_stream_origin;

/*
 * Decodes a merge body (an exported state, as above, whole: every field
 * required, "count", "updates" and "config" agreeing with the bytes) into
 * *delta (new) for eng_stream_merge into a stream of spec s. 409
 * state_mismatch when its config differs from s's (names, averages and
 * memory caps aside); 422 bad_state for bytes that do not parse or an
 * envelope that disagrees with them; 422 unknown_field / missing_field /
 * bad_type for the envelope's shape. Fills *origin when origin is not
 * NULL; with origin (the server's merge) the envelope must carry "state_id"
 * (422 missing_field), lowercase hex, up to 64 digits (else 422 bad_state,
 * or bad_type when not a string); without, it may.
 */
int api_stream_decode_merge_origin(eng_stream **delta, api_stream_origin *origin,
                                   const api_stream_spec *s, const api_ctx *ctx, const char *body,
                                   size_t len, api_problem *p);

/* Fills *p for a failed eng_stream_merge (err->code): 409 state_mismatch,
 * 422 non_finite (a sum would overflow), 507 stream_memory_exceeded, 503
 * out_of_memory. Returns -1. */
int api_stream_merge_problem(api_problem *p, const eng_error *err);

#endif
