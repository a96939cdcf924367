/*
 * api_meta.h - a stream's metadata (docs/API.md section 8): tags, ttl_s and
 * the created_at / updated_at times, as create fields, a JSON merge patch,
 * stored text and reply fields.
 *
 * Tags: at most API_META_MAX_TAGS string pairs; a key matches
 * [A-Za-z0-9_.-]{1,64}, a value is at most 256 characters (UTF-8 code
 * points, no NUL). ttl_s: seconds without an update or checkpoint after
 * which the server deletes the stream; 0 keeps it.
 *
 * The metadata is not part of a stream's config: two streams with
 * different tags merge, and the canonical config text stays as it was.
 * Any thread; an api_meta is a plain value (callers lock around it).
 */
#ifndef LOSSD_API_API_META_H
#define LOSSD_API_API_META_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/api.h"

#define API_META_MAX_TAGS   16
#define API_META_MAX_KEY    64
#define API_META_MAX_VALUE  256        /* characters */
#define API_META_MAX_TTL    3153600000 /* 100 years, in seconds */
#define API_META_TIME_BYTES 32

typedef struct api_meta {
	size_t ntags;
	char *key[API_META_MAX_TAGS];   /* new, sorted by key */
	char *val[API_META_MAX_TAGS];   /* new */
	int64_t ttl_s;                  /* 0: kept */
	int64_t created_ms, updated_ms; /* ms since the epoch */
} api_meta;

/* Frees the tags and zeroes *m. */
void api_meta_clear(api_meta *m);

/* *out = a deep copy of *m. 0 or -1 (out of memory; *out cleared). */
int api_meta_copy(api_meta *out, const api_meta *m);

/*
 * Reads "tags" and "ttl_s" of a create body (obj, borrowed) into *m (times
 * untouched). Returns 0 or -1 with *p: 422 bad_type, bad_option (a key
 * that is not [A-Za-z0-9_.-]{1,64}, a value too long, more than 16 tags,
 * ttl_s out of range), pointer at the field.
 */
int api_meta_parse(api_meta *m, const json_t *obj, api_problem *p);

/* api_meta_parse of a create body (borrowed text; empty means {}):
 * api_parse_body's errors, then api_meta_parse's; 503 out_of_memory. */
int api_meta_parse_create(api_meta *m, const api_ctx *ctx, const char *body, size_t len,
                          api_problem *p);

/*
 * Applies a PATCH body (RFC 7396 JSON merge patch of {"tags", "ttl_s"})
 * to *m: into a copy first, so on any error *m is unchanged. Returns 0, or
 * -1 with *p (api_parse_body's errors, 422 not_an_object, unknown_field,
 * bad_type, bad_option).
 */
int api_meta_patch(api_meta *m, const api_ctx *ctx, const char *body, size_t len, api_problem *p);

/* The stored text {"tags": {...}, "ttl_s", "created_ms"}: new (free()), or
 * NULL when out of memory. updated_ms is stored apart. */
char *api_meta_text(const api_meta *m);

/* Reads api_meta_text's output (borrowed) into *m. 0 or -1 (corrupt). */
int api_meta_load(api_meta *m, const char *text);

/* Sets "tags", "ttl_s", "created_at", "updated_at" on o. 0 or -1. */
int api_meta_render(json_t *o, const api_meta *m);

/* RFC 3339 UTC with milliseconds: "2026-12-06T14:03:07.123Z". */
void api_meta_time(char out[API_META_TIME_BYTES], int64_t ms);

/* True when m has tag key with value val. */
bool api_meta_has_tag(const api_meta *m, const char *key, const char *val);

/* True when key is a valid tag key. */
bool api_meta_key_ok(const char *key);

#endif
