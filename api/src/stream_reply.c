/*
 * stream_reply.c - the reply bodies of the stream routes that the server
 * fills from plain values (api_stream_reply.h): acknowledgements,
 * summaries, list pages, readings with the server's extras, states with
 * their state_id.
 *
 * Why here: the server's stream table (server/src/streams.c) knows
 * streams, counts, owners and digests but no JSON; every field name and
 * the order of the fields of these replies is written once, in this file,
 * beside the renderers of the stream itself (stream.c, stream_spec.c) and
 * of its metadata (meta.c), and openapi.yaml describes the same shapes.
 *
 * Invariants: fields are set in the order the replies have always had
 * (clients and golden files see the same text); a failure anywhere frees
 * what was built and returns NULL, never half a reply.
 *
 * Not here: deciding which reply a request gets (the server), reading
 * bodies (stream.c, stream_spec.c, meta.c).
 */
#include "lossd/api_stream_reply.h"

#include <stdlib.h>

#include "b64.h"
#include "mem.h"
#include "stream_priv.h"

json_t *api_stream_ack(const char *id, const eng_stream_counts *c, api_stream_applied applied)
{
	json_t *o = json_pack("{ss sI sI}", "id", id, "updates", (json_int_t)c->updates, "count",
	                      (json_int_t)c->rows);
	if (o && applied != API_STREAM_APPLIED_UNSAID &&
	    json_object_set_new(o, "applied", json_boolean(applied == API_STREAM_APPLIED_YES))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *api_stream_summary(const api_stream_spec *s, const char *id, const api_meta *meta,
                           const eng_stream_counts *c, const char *principal)
{
	json_t *o = api_stream_render_config(s, id);
	if (!o)
		return NULL;
	int bad = meta ? api_meta_render(o, meta) : 0;
	if (c) {
		bad |= json_object_set_new(o, "count", json_integer(c->rows));
		bad |= json_object_set_new(o, "updates", json_integer(c->updates));
	}
	if (principal)
		bad |= json_object_set_new(o, "principal", json_string(principal));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *api_stream_list_page(json_t *entries, const char *next)
{
	if (!entries && !(entries = json_array()))
		return NULL;
	/* "o" steals entries and the next string, also when the pack fails */
	return json_pack("{so so}", "streams", entries, "next",
	                 next ? json_string(next) : json_null());
}

struct api_stream_page {
	json_t *entries;
	bool failed;
};

api_stream_page *api_stream_page_new(void)
{
	api_stream_page *pg = api__malloc(sizeof(*pg));
	if (!pg)
		return NULL;
	pg->failed = false;
	if (!(pg->entries = json_array())) {
		api__free(pg);
		return NULL;
	}
	return pg;
}

int api_stream_page_add(api_stream_page *pg, const api_stream_spec *s, const char *id,
                        const api_meta *meta, const eng_stream_counts *c, const char *principal)
{
	json_t *e = api_stream_summary(s, id, meta, c, principal);
	/* json_array_append_new takes e, also when it fails; NULL fails */
	if (json_array_append_new(pg->entries, e))
		pg->failed = true;
	return pg->failed ? -1 : 0;
}

json_t *api_stream_page_finish(api_stream_page *pg, const char *next)
{
	if (!pg)
		return NULL;
	bool failed = pg->failed;
	json_t *o = api_stream_list_page(pg->entries, next);
	api__free(pg);
	if (failed) {
		json_decref(o);
		return NULL;
	}
	return o;
}

void api_stream_page_free(api_stream_page *pg)
{
	if (!pg)
		return;
	json_decref(pg->entries);
	api__free(pg);
}

json_t *api_stream_reading(const api_stream_spec *s, const char *id, const eng_stream *st,
                           const api_stream_read_opts *o, const api_meta *meta, bool stale,
                           const char *principal, api_problem *p)
{
	json_t *j = api_stream_render_read(s, id, st, o, p);
	if (!j)
		return NULL;
	int bad = meta ? api_meta_render(j, meta) : 0;
	if (stale)
		bad |= json_object_set_new(j, "stale", json_true());
	if (principal)
		bad |= json_object_set_new(j, "principal", json_string(principal));
	if (bad) {
		json_decref(j);
		api__stream_oom(p);
		return NULL;
	}
	return j;
}

json_t *api_stream_export_bytes(const api_stream_spec *s, const char *id,
                                const eng_stream_counts *c, const void *bytes, size_t len,
                                const char *state_id, api_problem *p)
{
	char *b = api__b64_encode(bytes, len);
	json_t *o = NULL;
	if (b)
		o = json_pack("{si ss so sI sI ss}", "version", API_STREAM_STATE_VERSION, "id", id,
		              "config", api__stream_config_obj(s), "count", (json_int_t)c->rows,
		              "updates", (json_int_t)c->updates, "state", b);
	free(b);
	if (o && state_id && json_object_set_new(o, "state_id", json_string(state_id))) {
		json_decref(o);
		o = NULL;
	}
	if (!o)
		api__stream_oom(p);
	return o;
}
