/*
 * request.h - what a worker-thread handler sees of one HTTP request.
 *
 * The HTTP layer (http.c) parses, routes and bounds a request on a
 * libmicrohttpd thread, then hands a srv_request to a libuv worker thread.
 * Everything a handler reads is in here, so handlers (handlers.c,
 * streams.c) know nothing of libmicrohttpd. Every pointer is borrowed and
 * valid for the duration of the handler call only; the strings are
 * NUL-terminated; `body` is NUL-terminated too (body[len] == '\0') but may
 * hold NULs before len.
 *
 * `principal` is the hook for bearer-token authentication: NULL while
 * auth is off. When tokens are configured, it names the token's owner and
 * handlers scope what they show to it, except for an `admin` token, which
 * reads every principal's streams (http.c never lets one write).
 */
#ifndef LOSSD_SERVER_REQUEST_H
#define LOSSD_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "lossd/api.h"

typedef struct srv_request {
	const char *method; /* "GET", "POST", ... */
	const char *route;  /* route pattern, e.g. "/v1/streams/{id}/update" */
	const char *id;     /* validated {id} or NULL */
	const char *query;  /* raw query string after '?', or NULL */
	const char *body;
	size_t len;
	api_body *sent;               /* the body read as it arrives (api_body_feed), or NULL: then
	                 * body and len (/v1/loss and /v1/auc only) */
	api_early *early;             /* borrowed, or NULL: sent's loss started as it arrived */
	const char *idempotency_key;  /* Idempotency-Key header or NULL; http.c admits 1 to
	                              * API_IDEMPOTENCY_KEY_MAX bytes (400 otherwise) */
	const char *principal;        /* owner of the bearer token, or NULL when auth is off */
	bool admin;                   /* an admin token: reads every principal's streams */
	const api_ctx *api;           /* limits + eng_parallel */
	struct srv__streams *streams; /* the server's stream table (streams.h) */
	/* A stream write on the store lane (http.c) may answer after its
	 * handler returned, once its group commit is known: it sets
	 * *deferred = true before anything can finish it, keeps `out` (the
	 * reply, valid until then) and calls defer_done(defer_arg) exactly
	 * once, from any thread, when `out` holds the reply. deferred NULL:
	 * the reply is due when the handler returns. Nothing else of this
	 * struct may be kept past the handler's return, but for what points
	 * into http.c's request (idempotency_key: its idem_key), which lives
	 * until the reply. */
	bool *deferred;
	void (*defer_done)(void *arg);
	void *defer_arg;
} srv_request;

#endif
