/*
 * testbuf.h - a growing text buffer for the api tests that build request
 * bodies piece by piece (test_body.c, test_packed.c, test_body_early.c).
 */
#ifndef LOSSD_TESTS_API_TESTBUF_H
#define LOSSD_TESTS_API_TESTBUF_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
	char *s;
	size_t n, cap;
} buf;

static inline void put(buf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
		cr_assert_not_null(b->s);
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static inline void puts_(buf *b, const char *s)
{
	put(b, s, strlen(s));
}

#endif
