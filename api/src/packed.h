/*
 * packed.h - number arrays and base64 strings lifted out of a request body
 * before jansson parses it (see packed.c). Private to api/.
 *
 * jansson sees a skeleton in which every lifted value is a placeholder
 * that no client can write (it holds "\u0000", which parse.c refuses in
 * any string of a body): an array becomes ["\u0000",K] and a string
 * "\u0000K", K indexing api_packed's table. Code that reads arrays of
 * numbers or "b64" strings asks api__packed_array / api__packed_string
 * whether a json_t is such a placeholder before looking into it.
 */
#ifndef LOSSD_API_PACKED_H
#define LOSSD_API_PACKED_H

#include "lossd/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct api__pack {
	const double *values; /* arrays: row-major, `size` values (in the arena) */
	const char *str;      /* strings: the body's bytes (printable ASCII, no escapes),
	                       * or NULL for a string decoded as it arrived (body.c) */
	/* a string decoded as it arrived: its bytes (64-byte aligned, in the
	 * api_body's arena), how many (api__b64_decoded_size of the text,
	 * SIZE_MAX when not in groups of 4) and the offset of its first
	 * invalid character (SIZE_MAX when it is valid padded base64) */
	const unsigned char *decoded;
	size_t nbytes, bad_at;
	int64_t size; /* arrays: elements (>= 1); strings: bytes */
	int rank;     /* arrays: 1..ENG_MAX_RANK, every dimension >= 1; strings: 0 */
	int64_t shape[ENG_MAX_RANK];
	size_t body_start, body_end; /* the value's bytes in the body */
	/* an array body.c lifted as it arrived: the newlines in its bytes and
	 * the bytes after the last of them (it may be pretty-printed) */
	size_t lines, last_col;
	size_t skel_start, skel_end; /* its placeholder's bytes in the skeleton */
	/* a string still being decoded or an array still being read (an
	 * early loss's guess, loss.c): a tensor views its bytes unchecked, as
	 * they will be, and nothing copies them */
	bool pending;
	/* a decoded string an early loss scanned for non-finite values as it
	 * arrived (loss.c): its first `scanned` elements as scanned_dt, and
	 * the first non-finite among them (-1: none); 0 when not scanned */
	int64_t scanned, scanned_bad;
	eng_dtype scanned_dt;
} api__pack;

struct api_packed {
	double *arena; /* the lifted arrays' values, back to back */
	api__pack *packs;
	size_t n, cap;
	/* packs[0, nstream) are strings and arrays body.c took out of a body
	 * as it arrived: their skel_* offsets are in the text api__lift then
	 * read, whose own lifts (packs[nstream, n)) have body_* offsets in that
	 * text; their bytes are in body.c's arena, not in `arena` */
	size_t nstream;
};

/*
 * Lifts the body's number arrays (rectangular nests of JSON numbers with
 * at least API__PACK_MIN values) and the long string values of "b64" keys.
 * `numbers` bounds the number tokens in the body (parse.c's pre-pass count).
 * On success returns 0 with *skel a new skeleton of *skel_len bytes and *out
 * the new table, or *skel and *out NULL when nothing was lifted (parse the
 * body itself). Returns -1 when out of memory. A table in *out on entry
 * (body.c's) is extended instead (and left in *out whatever happens; the
 * caller frees it). Never fails on bad JSON:
 * what it cannot lift stays in the skeleton, for jansson to judge.
 * The table points into body: body must outlive it.
 */
int api__lift(api_packed **out, char **skel, size_t *skel_len, const char *body, size_t len,
              int64_t numbers, int max_depth);

/* The lifted array v stands for, or NULL (pk may be NULL). Borrowed. */
/* The next pack of the array *packs holding n of *cap (grown to twice, or
 * to `first` when empty), zeroed; NULL when out of memory (nothing
 * changed). The caller counts it in n. */
api__pack *api__pack_next(api__pack **packs, size_t *cap, size_t n, size_t first);

const api__pack *api__packed_array(const api_packed *pk, const json_t *v);

/* The lifted string v stands for, or NULL (pk may be NULL). Borrowed. */
const api__pack *api__packed_string(const api_packed *pk, const json_t *v);

/* s[i] is '"': the offset of the closing '"' (n when there is none). Sets
 * *esc when the string has a backslash and *nul when it has "\u0000". */
size_t api__string_end(const unsigned char *s, size_t i, size_t n, bool *esc, bool *nul);

/* The JSON number at s[i..n) as jansson would read it: 0 with *x and *end
 * (one past it), or -1 when jansson would refuse the token. */
int api__json_number(const unsigned char *s, size_t i, size_t n, double *x, size_t *end);

/* The body offset of the skeleton's byte at skel_pos (outside any placeholder). */
size_t api__packed_body_pos(const api_packed *pk, size_t skel_pos);

/*
 * api_parse_body_packed of a text that body.c built as the body arrived:
 * text holds placeholders for the strings in sp (stolen; its packs
 * [0, sp->nstream)), and the body as sent was sent_len bytes, which is
 * where errors say they are. Same checks, same errors.
 */
json_t *api__parse_sent(const api_ctx *ctx, const char *text, size_t len, api_packed *sp,
                        size_t sent_len, api_packed **packed, api_problem *p);

/* The parse of a body read by body.c: ends it (a string still open is
 * text) and parses it as api_parse_body_packed would the body as sent. */
/* What api_loss_early_new copies of a body decoding a string or reading
 * the rows of a number array (body.c): the text before the string's '"'
 * (the array's '['), the packs before it, where its bytes (values) go, its
 * offset and the body's length so far; for an array, the rank and shape
 * of its rows. All borrowed from b. -1 when b publishes no bytes
 * (api_body_decoding). */
typedef struct api__body_snap {
	const char *text;
	size_t len;
	const api__pack *packs;
	size_t npacks;
	const unsigned char *decoded; /* a string's, or NULL */
	const double *values;         /* an array's, or NULL */
	int rank;
	int64_t shape[ENG_MAX_RANK];
	size_t start, sent;
	const unsigned char *open; /* 1: an array, 0: an object, per open container */
	int depth;
} api__body_snap;

int api__body_snapshot(const api_body *b, api__body_snap *out);

/* tensor.c: the first NaN or Inf among elements [from, to) of a float32
 * or float64 payload (other dtypes: none), or -1. */
int64_t api__first_nonfinite(eng_dtype dt, const void *data, int64_t from, int64_t to);

json_t *api__body_parse(const api_ctx *ctx, api_body *b, api_packed **packed, api_problem *p);

enum { API__PACK_MIN = 16, API__PACK_STR_MIN = 1024 };

#endif
