/*
 * dynbuf.h - a growable byte buffer with a hard cap, for the api and server
 * layers (dynbuf.c). The shape is curl's dynbuf (docs/internals/DYNBUF.md):
 * the maximum is given at init and is not optional, an append that would
 * take the content past it fails with API_DYNBUF_TOOBIG, and a failed
 * allocation fails with API_DYNBUF_NOMEM. Either failure frees the content
 * and sticks: every later append returns the same error, so a caller may
 * append many pieces and check once (api_dynbuf_error) at the end.
 *
 * The content is always NUL-terminated (one byte past len, not counted in
 * len nor against the cap), so text built here is a C string.
 *
 * Not thread-safe: one buffer belongs to one thread at a time.
 */
#ifndef LOSSD_API_DYNBUF_H
#define LOSSD_API_DYNBUF_H

#include <stdarg.h>
#include <stddef.h>

enum {
	API_DYNBUF_NOMEM = -1, /* an allocation failed */
	API_DYNBUF_TOOBIG = -2 /* the content would pass the cap */
};

typedef struct api_dynbuf {
	char *p;      /* owned; NULL until the first append and after a failure */
	size_t len;   /* content bytes (the NUL after them not counted) */
	size_t alloc; /* bytes allocated at p */
	size_t max;   /* the cap on len */
	int err;      /* 0 or the first API_DYNBUF_* error, sticky */
} api_dynbuf;

/* An empty buffer whose content may never pass max bytes. Allocates nothing. */
void api_dynbuf_init(api_dynbuf *b, size_t max);

/* Frees the content and makes b empty again (the cap kept, the error
 * cleared). Accepts NULL. */
void api_dynbuf_free(api_dynbuf *b);

/* Empties the content, keeping the allocation; clears nothing else. */
void api_dynbuf_reset(api_dynbuf *b);

/*
 * Appends n bytes at s (s may be NULL when n is 0). Returns 0,
 * API_DYNBUF_TOOBIG or API_DYNBUF_NOMEM (then, and for every later append,
 * the content is gone: see the file comment).
 */
int api_dynbuf_add(api_dynbuf *b, const void *s, size_t n);
/* Appends the C string s. As api_dynbuf_add. */
int api_dynbuf_adds(api_dynbuf *b, const char *s);
/* Appends printf-formatted text. As api_dynbuf_add; a vsnprintf failure
 * counts as API_DYNBUF_NOMEM. */
int api_dynbuf_printf(api_dynbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int api_dynbuf_vprintf(api_dynbuf *b, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

/* The content, NUL-terminated ("" for an empty buffer): borrowed until the
 * next call on b. NULL after a failure. */
const char *api_dynbuf_ptr(const api_dynbuf *b);
/* Bytes of content (0 after a failure). */
size_t api_dynbuf_len(const api_dynbuf *b);
/* 0 or the sticky API_DYNBUF_* error. */
int api_dynbuf_error(const api_dynbuf *b);

/*
 * Hands the content over: new, NUL-terminated (free() it), with its length
 * in *len (may be NULL); b is left empty with its cap. NULL after a
 * failure (the error stays until api_dynbuf_free) or when allocating the
 * empty string fails.
 */
char *api_dynbuf_take(api_dynbuf *b, size_t *len);

#endif
