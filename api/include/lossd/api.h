/*
 * api.h - the api layer's public contract: JSON request bodies in, replies
 * (JSON or application/problem+json) out. The api layer knows nothing of
 * HTTP: the server hands it a body and sends back what it returns.
 *
 * Every handler is callable from any thread; none keeps state between calls.
 */
#ifndef LOSSD_API_API_H
#define LOSSD_API_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/eng.h"

/* ---- replies ---------------------------------------------------------------- */
#define API_JSON         "application/json"
#define API_PROBLEM_JSON "application/problem+json"

typedef struct api_reply {
	int status;
	const char *content_type; /* borrowed: a static string */
	char *body;               /* new: free() or api_reply_free(); NUL after len
	                           * bytes; NULL (len 0) only when even the problem
	                           * body could not be allocated (status then 503) */
	size_t len;
	int retry_after; /* seconds for Retry-After, 0 for none */
	char *link;      /* new: a Link header's value (paging), or NULL */
} api_reply;

/* Frees the body and resets *r. Accepts NULL. */
void api_reply_free(api_reply *r);

/* ---- problems (docs/API.md section 5) -------------------------------------------- */
/*
 * A caller-owned, fixed-size validation error, like jansson's json_error_t.
 * `code` is a stable machine-readable string literal ("shape_mismatch"),
 * `pointer` a JSON Pointer to the offending value ("/y_true/3") or "".
 */
typedef struct api_problem {
	int status;
	const char *code;
	char pointer[160];
	char detail[512];
} api_problem;

/* Fills *p (p may be NULL) and returns -1, so `return api_problem_set(...)`. */
int api_problem_set(api_problem *p, int status, const char *code, const char *pointer,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Fills *p from a failed engine call: the code by err->code, the pointer
 * from err->field and err->index. Returns -1. */
int api_problem_from_eng(api_problem *p, const eng_error *err);

/* Renders p as an application/problem+json reply into *out. */
void api_reply_problem(api_reply *out, const api_problem *p);

/* Shorthand: a problem reply without a pointer. */
void api_reply_error(api_reply *out, int status, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Renders body as an application/json reply; steals body. NaN and Inf
 * never reach the wire: callers put json_null() for undefined values. */
void api_reply_json(api_reply *out, int status, json_t *body);

/* ---- limits and shared resources of one request ------------------------------ */
typedef struct api_ctx {
	const eng_parallel *par; /* borrowed; NULL runs serially */
	int64_t max_elements;    /* numbers per request, over all tensors and arrays */
	size_t max_json_bytes;   /* heap jansson may use for one request's tree */
	int max_depth;           /* JSON nesting */
} api_ctx;

#define API_DEFAULT_MAX_ELEMENTS   ((int64_t)64 << 20)
#define API_DEFAULT_MAX_JSON_BYTES ((size_t)1024 * 1024 * 1024)
#define API_DEFAULT_MAX_DEPTH      64
#define API_CTX_INIT                                                                               \
	{                                                                                          \
		NULL, API_DEFAULT_MAX_ELEMENTS, API_DEFAULT_MAX_JSON_BYTES, API_DEFAULT_MAX_DEPTH  \
	}

/*
 * Parses a request body strictly: valid UTF-8 JSON, an object at the top,
 * no duplicate keys, nesting within ctx->max_depth, at most
 * ctx->max_elements numbers (counted on the raw bytes before any tree is
 * built), and jansson's heap within ctx->max_json_bytes. Returns a new
 * reference, or NULL with *p set (400 malformed_json / not_an_object /
 * too_deep, 413 too_many_elements / body_too_large).
 */
json_t *api_parse_body(const api_ctx *ctx, const char *body, size_t len, api_problem *p);

/*
 * The tensors of a request, lifted out of its body before jansson parses
 * the rest (api/src/packed.c): rectangular arrays of at least 16 numbers
 * as float64 values, and long "b64" strings as spans of the body. In the
 * tree they are placeholders that only api_tensor_decode (given the table
 * in its opts) reads; to anything else they look like an array or a string.
 */
typedef struct api_packed api_packed;

/*
 * api_parse_body, lifting tensors as it goes: the same checks and errors,
 * about 8 bytes a number instead of jansson's 40, and base64 decoded
 * straight from the body. *packed gets the new table, or NULL when nothing
 * was lifted. body must stay unchanged until the table is freed.
 */
json_t *api_parse_body_packed(const api_ctx *ctx, const char *body, size_t len, api_packed **packed,
                              api_problem *p);

/* Frees a table from api_parse_body_packed. Accepts NULL. */
void api_packed_free(api_packed *pk);

/*
 * Bytes of jansson heap held right now by values allocated on the calling
 * thread (their malloc_usable_size): what ctx->max_json_bytes bounds.
 * api_parse_body limits this thread's jansson heap to max_json_bytes more
 * than it held when the parse began, until the thread's next
 * api_parse_body, so the budget covers the tree's lifetime and the reply a
 * handler builds on the same thread. Any thread; counts its own.
 */
size_t api_json_heap_in_use(void);

/* Lifts the calling thread's jansson budget set by api_parse_body (a
 * worker may call it when a request is done, before building JSON that no
 * request limit should bound). Any thread; affects its own. */
void api_json_budget_clear(void);

/* ---- tensors (docs/API.md section 1) ---------------------------------------------- */
typedef struct api_tensor {
	eng_tensor t; /* a view of buf (or of a scalar held in buf), or of an
	               * api_packed's memory when buf is NULL */
	void *buf;    /* new: released by api_tensor_free; NULL for a view */
} api_tensor;

#define API_TENSOR_INIT                                                                            \
	{                                                                                          \
		{ENG_F64, 0, {0}, 0, NULL}, NULL                                                   \
	}

typedef struct api_tensor_opts {
	bool allow_nonfinite; /* "nan_policy": "propagate" */
	int64_t *budget;      /* elements left for this request; decremented */
	/* borrowed, may be NULL: what the body's parse lifted. A tensor
	 * decoded from a lifted array views the table's memory (its buf is
	 * NULL): free the table only after the tensor. */
	const api_packed *packed;
	/* borrowed, may be NULL: threads for decoding a large base64 payload */
	const eng_parallel *par;
} api_tensor_opts;

/*
 * Decodes v, in any of the three encodings (nested arrays, {shape, data},
 * {shape, dtype, b64}), or a plain number (a rank-0 tensor), into *out.
 * JSON numbers decode to float64; b64 keeps its dtype (float32 stays
 * float32). `pointer` is the JSON Pointer of v, used in problems. Shape
 * products are overflow-checked and bounded by *opts->budget before any
 * allocation. Errors: 422 bad_type, shape_mismatch, bad_base64,
 * non_finite (with the flat index), 413 too_many_elements.
 * On success returns 0; on failure -1 with *p set and *out empty.
 */
int api_tensor_decode(api_tensor *out, json_t *v, const char *pointer, const api_tensor_opts *opts,
                      api_problem *p);

/* Releases what api_tensor_decode allocated. Accepts NULL and empty. */
void api_tensor_free(api_tensor *t);

/* ---- bodies read as they arrive (api/src/body.c) ---------------------------------- */
/*
 * A body fed chunk by chunk as the HTTP layer receives it: the long "b64"
 * strings are decoded into a caller's arena on the way, the rest is kept
 * as text, and api_loss_sent / api_auc_sent answer exactly as api_loss /
 * api_auc would the whole body. Not thread-safe: one thread at a time
 * (feeding on one, answering on another after a hand-off is fine).
 */
typedef struct api_body api_body;

/* Arena bytes a body of at most len bytes may decode into. */
size_t api_body_arena_size(size_t len);

/* *out new (api_body_free): a body of at most max_len bytes, decoding into
 * arena (borrowed until api_body_free; cap bytes, at least
 * api_body_arena_size(max_len); NULL and 0 decode nothing: then every
 * string is kept as text, up to max_len) with ctx's max_depth. Returns 0,
 * or -1 when out of memory. */
int api_body_new(api_body **out, void *arena, size_t cap, size_t max_len, int max_depth);

/* The next n bytes of the body. Returns 0, or -1 when out of memory or
 * past max_len (the body is then unusable: free it). */
int api_body_feed(api_body *b, const char *data, size_t n);

/* Bytes b holds: its text's buffer and the arena bytes its decoded strings
 * and lifted arrays need (up to 256 KiB more may be written for the row of
 * numbers being read). */
size_t api_body_held(const api_body *b);

/* Body bytes fed so far. */
size_t api_body_len(const api_body *b);

/* Accepts NULL. The arena is the caller's again. */
void api_body_free(api_body *b);

/* While b decodes a lifted "b64" string: the bytes of it decoded for good
 * so far (in b's arena; they never change again, while b lives), and in
 * *id the string's offset in the body (one per string). Likewise while b
 * reads a nested array of numbers whose first rows closed lifted: the
 * bytes of those rows' float64 values, back to back from the array's
 * first, and the array's offset. SIZE_MAX when b publishes neither. For
 * api_loss_early_new's caller. */
size_t api_body_decoding(const api_body *b, size_t *id);

/* ---- endpoints ------------------------------------------------------------------ */
/* POST /v1/loss (docs/API.md section 2). Any thread. */
void api_loss(api_reply *out, const api_ctx *ctx, const char *body, size_t len);

/* POST /v1/auc (docs/API.md section 3). Any thread. */
void api_auc(api_reply *out, const api_ctx *ctx, const char *body, size_t len);

/* api_loss and api_auc of a body read with api_body_feed (ended by this
 * call: b can only be freed afterwards). Any thread. */
void api_loss_sent(api_reply *out, const api_ctx *ctx, api_body *b);
void api_auc_sent(api_reply *out, const api_ctx *ctx, api_body *b);

/*
 * A /v1/loss loss started on the rows of y_pred already decoded, while the
 * rest of the body arrives (api/src/loss.c says how and why it answers bit
 * for bit as the buffered path). A guess taken when b starts decoding a
 * long string (or has read the first rows of a number array): that it is
 * y_pred's "b64" (y_pred's nested arrays, as many rows as its "shape" or
 * y_true says), every other field came before it, and only closing
 * brackets follow. api_loss_sent_early checks
 * the guess against the whole request and uses the early work only when
 * it held; otherwise it answers as api_loss_sent.
 *
 * api_loss_early_new: on the thread feeding b, while api_body_decoding(b)
 * is not SIZE_MAX; copies what it needs (the text so far, the pack table:
 * small), so b may be fed on. *out new (api_loss_early_free), or NULL
 * (returns -1) when out of memory. ctx borrowed until the free.
 * api_loss_early_budget: before prepare, counts the plan's partial tables
 * (eng_loss_plan_table_bytes: up to ~32 MiB) in the caller's memory
 * budget: take(arg, n) before they are allocated (false: the loss is not
 * started early), give(arg, n) with the same n once they are freed (in
 * api_loss_sent_early or api_loss_early_free, on the thread calling it).
 * arg borrowed until then.
 * api_loss_early_prepare: then on any one thread: parses the guess,
 * decodes its other tensors, plans the loss; 0 when the loss can start
 * early, -1 when not (the guess is then simply not used).
 * api_loss_early_step: runs the next task of the plan when its rows lie
 * within the string's first `ready` bytes (api_body_decoding, handed over
 * by the caller with a happens-before); 1 when one ran, 0 when none could.
 * Reads b's arena: stop calling it before b is freed.
 * api_loss_sent_early: as api_loss_sent, e (may be NULL) borrowed and no
 * longer stepped by anyone. Any thread. Then api_loss_early_used says
 * whether the answer used e's work, and how many of its tasks had run
 * early (*ran) of all (*tasks); 0 and false otherwise.
 */
typedef struct api_early api_early;

int api_loss_early_new(api_early **out, const api_ctx *ctx, const api_body *b);
void api_loss_early_budget(api_early *e, bool (*take)(void *arg, size_t n),
                           void (*give)(void *arg, size_t n), void *arg);
int api_loss_early_prepare(api_early *e);
int api_loss_early_step(api_early *e, size_t ready);
void api_loss_early_free(api_early *e);
void api_loss_sent_early(api_reply *out, const api_ctx *ctx, api_body *b, api_early *e);
bool api_loss_early_used(const api_early *e, int64_t *ran, int64_t *tasks);

#endif
