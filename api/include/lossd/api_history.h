/*
 * api_history.h - JSON and CSV of a stream's history (docs/API.md section 7):
 * the step series kept in the engine stream (lossd/history.h) and the
 * checkpoint records the server keeps beside it.
 *
 * A checkpoint record is made here once, as JSON text, when the checkpoint
 * is taken (api_history_checkpoint_record); the server stores and pages
 * those texts and hands a page back to api_history_checkpoints to render.
 *
 * Cursors are opaque to clients: "s<step>" (the last step of a steps page)
 * and "c<step>.<n>" (the last checkpoint of a page: its step and its
 * number). Anything else is 422 bad_cursor.
 *
 * Any thread; nothing here keeps state.
 */
#ifndef LOSSD_API_API_HISTORY_H
#define LOSSD_API_API_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/api.h"
#include "lossd/api_stream.h"

#define API_HISTORY_DEFAULT_LIMIT 1000
#define API_HISTORY_MAX_LIMIT     10000
#define API_HISTORY_CURSOR_MAX    48

/* GET /v1/streams/{id}/history, as the server parsed its query. */
typedef struct api_history_query {
	bool checkpoints;   /* series=checkpoints (else steps) */
	int64_t from, to;   /* inclusive step bounds */
	int64_t limit;      /* points or checkpoints per page */
	bool has_after;     /* a cursor was given: */
	int64_t after_step; /* ... continue past this step */
	int64_t after_n;    /* ... and (checkpoints) this checkpoint number */
	bool csv;           /* format=csv */
} api_history_query;

#define API_HISTORY_QUERY_INIT                                                                     \
	{                                                                                          \
		false, 0, INT64_MAX, API_HISTORY_DEFAULT_LIMIT, false, -1, -1, false               \
	}

/* Parses cursor into q (after_*). Returns 0 or -1 with *p (422 bad_cursor,
 * pointer "/after"). */
int api_history_cursor_parse(api_history_query *q, const char *cursor, api_problem *p);

/*
 * One page of st's step series as {"steps": [...], "next"} or CSV (with a
 * header row). `next` (API_HISTORY_CURSOR_MAX bytes) gets the next page's
 * cursor, "" when this is the last page. Returns 0, or -1 with *out a
 * 500/503 problem.
 */
int api_history_steps(api_reply *out, char *next, const api_stream_spec *s, const eng_stream *st,
                      const api_history_query *q);

/*
 * A page of checkpoint records (texts borrowed, made by
 * api_history_checkpoint_record for a stream of spec s) as
 * {"checkpoints": [...], "next"} or CSV; next is "" on the last page.
 */
int api_history_checkpoints(api_reply *out, const api_stream_spec *s, const char *const *texts,
                            size_t n, const char *next, bool csv);

/* A checkpoint request body {"step", "label"?, "reset"?, "batch_id"?}. */
typedef struct api_history_ckpt_req {
	int64_t step;
	char *label;    /* new, free(); NULL when absent */
	bool reset;     /* empty the stream in the same transaction */
	char *batch_id; /* new, free(); NULL when absent */
} api_history_ckpt_req;

/* Parses a checkpoint body into *out (free its strings with
 * api_history_ckpt_req_clear). Returns 0 or -1 with *p (api_parse_body's
 * errors, 422 missing_field / unknown_field / bad_type / bad_option). */
int api_history_parse_checkpoint(api_history_ckpt_req *out, const api_ctx *ctx, const char *body,
                                 size_t len, api_problem *p);
void api_history_ckpt_req_clear(api_history_ckpt_req *r);

/*
 * The record of a checkpoint of st at `step` (docs/API.md section 7): {"n",
 * "step", "label", "time", "auc", "error_bound", "count", "positives",
 * "negatives", "loss", "accuracy", "per_class"?, "warnings"?}; `time` is
 * the server's (RFC 3339, borrowed), n the checkpoint's number in its
 * stream. New text (free()), or NULL with *p set.
 */
char *api_history_checkpoint_record(const api_stream_spec *s, const char *id, const eng_stream *st,
                                    int64_t n, int64_t step, const char *label, const char *time,
                                    api_problem *p);

#endif
