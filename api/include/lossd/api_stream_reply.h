/*
 * api_stream_reply.h - the reply bodies of the stream routes (docs/API.md
 * sections 4 and 8) that the server assembles from plain values: an
 * update's or merge's acknowledgement, a stream's summary (the create
 * reply, a list entry, the PATCH reply), a list page, a reading with the
 * server's extras and a state with its state_id.
 *
 * The server keeps streams, counts, owners and digests; it hands them here
 * as values and gets a jansson tree back, so no JSON shape is spelled out
 * in the server. Every function is callable from any thread and returns a
 * new reference (json_decref), or NULL when out of memory (with *p set
 * where there is a p).
 */
#ifndef LOSSD_API_API_STREAM_REPLY_H
#define LOSSD_API_API_STREAM_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lossd/api.h"
#include "lossd/api_meta.h"
#include "lossd/api_stream.h"
#include "lossd/stream.h"

/* What an acknowledgement says of "applied". */
typedef enum api_stream_applied {
	API_STREAM_APPLIED_UNSAID = 0, /* an update: no "applied" */
	API_STREAM_APPLIED_NO,         /* a merge of a state merged before */
	API_STREAM_APPLIED_YES,        /* a merge that added the state */
} api_stream_applied;

/* {"id", "updates", "count", "applied"?}: the reply of an update or a
 * merge, with the stream's counts *c after it. */
json_t *api_stream_ack(const char *id, const eng_stream_counts *c, api_stream_applied applied);

/*
 * A stream's summary: {"id", ...its config (api_stream_render_config)},
 * then "tags", "ttl_s", "created_at", "updated_at" when meta is not NULL,
 * "count" and "updates" when c is not NULL and "principal" when principal
 * is not NULL. The create reply (meta), a list entry (meta with SQLite,
 * counts, principal for an admin) and the PATCH reply (meta, counts).
 */
json_t *api_stream_summary(const api_stream_spec *s, const char *id, const api_meta *meta,
                           const eng_stream_counts *c, const char *principal);

/* {"streams": entries, "next": next or null}: a page of GET /v1/streams.
 * Steals entries (an array; NULL: an empty page), also on failure. */
json_t *api_stream_list_page(json_t *entries, const char *next);

/*
 * A page of GET /v1/streams built entry by entry, so that the server
 * passes plain values and never holds the page's JSON: _new, then
 * _add per stream (api_stream_summary's arguments), then _finish, which
 * returns the page (api_stream_list_page's shape) and frees pg. A failed
 * _add (out of memory) makes _finish return NULL. _free drops a page that
 * is not finished. Any thread; one page per thread at a time.
 */
typedef struct api_stream_page api_stream_page;
api_stream_page *api_stream_page_new(void);
int api_stream_page_add(api_stream_page *pg, const api_stream_spec *s, const char *id,
                        const api_meta *meta, const eng_stream_counts *c, const char *principal);
json_t *api_stream_page_finish(api_stream_page *pg, const char *next);
void api_stream_page_free(api_stream_page *pg);

/*
 * The reading of GET /v1/streams/{id}: api_stream_render_read's, then the
 * metadata fields (meta, when not NULL), "stale": true when stale (a
 * shared store could not be read and the client allowed it) and
 * "principal" when principal is not NULL (an admin's read). NULL with *p
 * as api_stream_render_read, or 503 out_of_memory.
 */
json_t *api_stream_reading(const api_stream_spec *s, const char *id, const eng_stream *st,
                           const api_stream_read_opts *o, const api_meta *meta, bool stale,
                           const char *principal, api_problem *p);

/*
 * The state of GET /v1/streams/{id}/state from a stream's serialized
 * bytes (eng_stream_serialize, borrowed) and counts *c: as
 * api_stream_export, plus "state_id" when state_id is not NULL. NULL with
 * *p (503 out_of_memory).
 */
json_t *api_stream_export_bytes(const api_stream_spec *s, const char *id,
                                const eng_stream_counts *c, const void *bytes, size_t len,
                                const char *state_id, api_problem *p);

#endif
