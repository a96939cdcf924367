/*
 * log.h - JSON lines on stdout: one per request, plus daemon events.
 */
#ifndef LOSSD_SERVER_LOG_H
#define LOSSD_SERVER_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Sets the lowest level written. Call before starting threads. */
void srv__log_set_level(int level);

/* True if lines at `level` are written. Any thread. */
int srv__log_enabled(int level);

/* Writes {"ts","level","msg"} plus `extra` (a JSON object's members
 * without braces, e.g. "\"port\":8080", or NULL) as one line. Any thread. */
void srv_log(int level, const char *extra, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A string field of a daemon event: key (a plain name, written as is) and
 * val (any bytes, escaped as srv__json_str does; NULL: the field is left
 * out). */
typedef struct srv__log_field {
	const char *key;
	const char *val;
} srv__log_field;

/* srv_log with fields given as values rather than a pre-built `extra`:
 * {"ts","level","msg"} then each of the n fields in order. Any thread. */
void srv__log_fields(int level, const srv__log_field *f, size_t n, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

typedef struct srv__log_request_fields {
	const char *method;
	const char *path;  /* raw, may hold any bytes; escaped */
	const char *route; /* matched pattern or NULL */
	int status;        /* 0: no reply was sent */
	uint64_t bytes_in;
	uint64_t bytes_out;
	double duration_s;
	const char *request_id;
	const char *client; /* address, or NULL */
	const char *error;  /* problem code, or NULL */
} srv__log_request_fields;

/* The per-request line, at SRV_LOG_INFO. Never given Authorization. Any thread. */
void srv__log_request(const srv__log_request_fields *f);

/* Appends s as a JSON string (with quotes) to buf[*pos..cap), escaping
 * control characters, quotes, backslashes and bytes >= 0x80 (as \u00XX, so
 * the line stays valid UTF-8 whatever the client sent). Truncates, never
 * overflows; buf stays NUL-terminated. */
void srv__json_str(char *buf, size_t cap, size_t *pos, const char *s);

#endif
