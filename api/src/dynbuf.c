/*
 * dynbuf.c - the capped growable buffer of lossd/dynbuf.h.
 *
 * Growth doubles from 256 bytes, clamped to max + 1 (the cap plus the
 * NUL), so a buffer never allocates more than its cap allows however it
 * is fed, and the doubling can never overflow: max + 1 bounds every size
 * computed here, and max is checked against SIZE_MAX at each append.
 *
 * Invariants: err != 0 implies p == NULL and len == 0; otherwise, once p is
 * allocated, len < alloc and p[len] == '\0'; always len <= max.
 *
 * Allocation goes through api__realloc, so the api's out-of-memory tests
 * (api__alloc_fail_after) reach every buffer built here. What it hands out
 * is plain malloc memory: free() releases it.
 */
#include "lossd/dynbuf.h"

#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_ALLOC 256

void api_dynbuf_init(api_dynbuf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->alloc = 0;
	b->max = max;
	b->err = 0;
}

void api_dynbuf_free(api_dynbuf *b)
{
	if (!b)
		return;
	api__free(b->p);
	api_dynbuf_init(b, b->max);
}

void api_dynbuf_reset(api_dynbuf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

/* Records err (the first one sticks), drops the content, returns err. */
static int fail(api_dynbuf *b, int err)
{
	api__free(b->p);
	b->p = NULL;
	b->len = 0;
	b->alloc = 0;
	b->err = err;
	return err;
}

/* Makes room for n more bytes and the NUL. 0 or an API_DYNBUF_* error. */
static int reserve(api_dynbuf *b, size_t n)
{
	if (b->err)
		return b->err;
	if (n > b->max || b->len > b->max - n)
		return fail(b, API_DYNBUF_TOOBIG);
	size_t need = b->len + n + 1; /* <= max + 1 */
	if (need == 0)                /* wrapped: max is SIZE_MAX and so is len + n */
		return fail(b, API_DYNBUF_TOOBIG);
	if (need <= b->alloc)
		return 0;
	size_t cap = b->alloc ? b->alloc : MIN_ALLOC;
	while (cap < need && cap <= SIZE_MAX / 2)
		cap *= 2;
	if (cap < need)
		cap = need;
	if (b->max < SIZE_MAX && cap > b->max + 1)
		cap = b->max + 1;
	char *np = api__realloc(b->p, cap);
	if (!np)
		return fail(b, API_DYNBUF_NOMEM);
	b->p = np;
	b->alloc = cap;
	return 0;
}

int api_dynbuf_add(api_dynbuf *b, const void *s, size_t n)
{
	int rc = reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int api_dynbuf_adds(api_dynbuf *b, const char *s)
{
	return api_dynbuf_add(b, s, strlen(s));
}

int api_dynbuf_vprintf(api_dynbuf *b, const char *fmt, va_list ap)
{
	char tmp[256];
	va_list aq;
	int n;

	if (b->err)
		return b->err;
	va_copy(aq, ap);
	n = vsnprintf(tmp, sizeof(tmp), fmt, aq);
	va_end(aq);
	if (n < 0)
		return fail(b, API_DYNBUF_NOMEM);
	if ((size_t)n < sizeof(tmp))
		return api_dynbuf_add(b, tmp, (size_t)n);
	/* Longer than the stack buffer: format straight into the content. */
	int rc = reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_copy(aq, ap);
	int m = vsnprintf(b->p + b->len, (size_t)n + 1, fmt, aq);
	va_end(aq);
	if (m != n)
		return fail(b, API_DYNBUF_NOMEM);
	b->len += (size_t)n;
	return 0;
}

int api_dynbuf_printf(api_dynbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = api_dynbuf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

const char *api_dynbuf_ptr(const api_dynbuf *b)
{
	if (b->err)
		return NULL;
	return b->p ? b->p : "";
}

size_t api_dynbuf_len(const api_dynbuf *b)
{
	return b->len;
}

int api_dynbuf_error(const api_dynbuf *b)
{
	return b->err;
}

char *api_dynbuf_take(api_dynbuf *b, size_t *len)
{
	char *p;

	if (len)
		*len = 0;
	if (b->err)
		return NULL;
	if (b->p) {
		p = b->p;
		if (len)
			*len = b->len;
	} else {
		if (!(p = api__malloc(1)))
			return NULL;
		p[0] = '\0';
	}
	b->p = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}
