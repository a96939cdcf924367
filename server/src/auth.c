/*
 * auth.c - bearer tokens from a file (--tokens-file).
 *
 * The table is built once at startup and only read afterwards, so checks
 * from any number of libmicrohttpd threads need no lock. A check compares
 * the presented token with every token in the table, each comparison
 * touching every byte of the longer of the two, and never stops early:
 * its time depends on the table, not on how close a guess was.
 *
 * Tokens never appear in messages or logs; a parse error names the line.
 * It does not reload the file (restart to rotate tokens) and knows nothing
 * of routes: http.c decides which routes need a token and which need a
 * read-write one.
 */
#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TOKEN_MIN     16
#define TOKEN_MAX     256
#define PRINCIPAL_MAX 64

struct entry {
	char token[TOKEN_MAX + 1];
	size_t len;
	char principal[PRINCIPAL_MAX + 1];
	bool read_only;
};

struct srv_auth {
	struct entry *e;
	size_t n;
};

static bool token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

static bool principal_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '@';
}

/* Next blank-separated word of [*p, end); returns its length. */
static size_t word(const char **p, const char *end, const char **w)
{
	const char *s = *p;
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	*w = s;
	while (s < end && *s != ' ' && *s != '\t' && *s != '\r')
		s++;
	*p = s;
	return (size_t)(s - *w);
}

static int fail(char *err, size_t errlen, int line, const char *what)
{
	if (err && errlen)
		snprintf(err, errlen, "tokens file line %d: %s", line, what);
	return -1;
}

int srv_auth_parse(srv_auth **out, const char *text, char *err, size_t errlen)
{
	srv_auth *a = calloc(1, sizeof(*a));
	size_t cap = 0;
	int line = 0;
	const char *p = text;

	*out = NULL;
	if (!a)
		return fail(err, errlen, 0, "out of memory");
	while (p && *p) {
		const char *end = strchr(p, '\n');
		const char *cur = p, *w[4];
		size_t n[4];
		struct entry *e;

		if (!end)
			end = p + strlen(p);
		line++;
		for (int i = 0; i < 4; i++)
			n[i] = word(&cur, end, &w[i]);
		p = *end ? end + 1 : end;
		if (n[0] == 0 || w[0][0] == '#')
			continue;
		if (n[0] < TOKEN_MIN || n[0] > TOKEN_MAX) {
			fail(err, errlen, line, "a token must be 16 to 256 characters");
			goto fail;
		}
		for (size_t i = 0; i < n[0]; i++) {
			if (!token_char(w[0][i])) {
				fail(err, errlen, line,
				     "a token may hold only A-Z a-z 0-9 - . _ ~ + / =");
				goto fail;
			}
		}
		if (n[1] == 0 || n[1] > PRINCIPAL_MAX) {
			fail(err, errlen, line, "expected TOKEN PRINCIPAL [rw|ro]");
			goto fail;
		}
		for (size_t i = 0; i < n[1]; i++) {
			if (!principal_char(w[1][i])) {
				fail(err, errlen, line,
				     "a principal may hold only A-Z a-z 0-9 - . _ @");
				goto fail;
			}
		}
		if (n[3] || (n[2] && !(n[2] == 2 && (!strncasecmp(w[2], "rw", 2) ||
		                                     !strncasecmp(w[2], "ro", 2))))) {
			fail(err, errlen, line, "the third field, if any, must be rw or ro");
			goto fail;
		}
		for (size_t i = 0; i < a->n; i++) {
			if (a->e[i].len == n[0] && !memcmp(a->e[i].token, w[0], n[0])) {
				fail(err, errlen, line, "duplicate token");
				goto fail;
			}
		}
		if (a->n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct entry *ne = realloc(a->e, ncap * sizeof(*ne));
			if (!ne) {
				fail(err, errlen, line, "out of memory");
				goto fail;
			}
			a->e = ne;
			cap = ncap;
		}
		e = &a->e[a->n++];
		memset(e, 0, sizeof(*e));
		memcpy(e->token, w[0], n[0]);
		e->len = n[0];
		memcpy(e->principal, w[1], n[1]);
		e->read_only = n[2] && !strncasecmp(w[2], "ro", 2);
	}
	if (a->n == 0) {
		fail(err, errlen, line, "no tokens (an empty tokens file would lock everyone out)");
		goto fail;
	}
	*out = a;
	return 0;
fail:
	srv_auth_free(a);
	return -1;
}

int srv_auth_load(srv_auth **out, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int rc = -1;

	*out = NULL;
	if (!f) {
		if (err && errlen)
			snprintf(err, errlen, "cannot read tokens file %s: %s", path,
			         strerror(errno));
		return -1;
	}
	for (;;) {
		size_t got;
		if (len + 4096 + 1 > cap) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *nb;
			if (ncap > (size_t)16 << 20) {
				if (err && errlen)
					snprintf(err, errlen, "tokens file %s is over 16 MiB",
					         path);
				goto out;
			}
			nb = realloc(buf, ncap);
			if (!nb)
				goto out;
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		if (err && errlen)
			snprintf(err, errlen, "cannot read tokens file %s", path);
		goto out;
	}
	buf[len] = '\0';
	if (memchr(buf, '\0', len)) {
		if (err && errlen)
			snprintf(err, errlen, "tokens file %s holds a NUL byte", path);
		goto out;
	}
	rc = srv_auth_parse(out, buf, err, errlen);
out:
	if (buf) {
		/* Do not leave tokens lying around in freed heap. */
		volatile char *v = buf;
		for (size_t i = 0; i < cap; i++)
			v[i] = 0;
	}
	free(buf);
	fclose(f);
	return rc;
}

void srv_auth_free(srv_auth *a)
{
	if (!a)
		return;
	if (a->e) {
		volatile char *v = (volatile char *)a->e;
		for (size_t i = 0; i < a->n * sizeof(*a->e); i++)
			v[i] = 0;
	}
	free(a->e);
	free(a);
}

size_t srv_auth_count(const srv_auth *a)
{
	return a ? a->n : 0;
}

/* 1 if equal; time depends only on the lengths' maximum. */
static int ct_equal(const char *x, size_t xn, const char *y, size_t yn)
{
	size_t n = xn > yn ? xn : yn;
	unsigned diff = (unsigned)(xn ^ yn);

	for (size_t i = 0; i < n; i++) {
		unsigned char a = i < xn ? (unsigned char)x[i] : 0;
		unsigned char b = i < yn ? (unsigned char)y[i] : 0;
		diff |= (unsigned)(a ^ b);
	}
	return diff == 0;
}

int srv_auth_check(const srv_auth *a, const char *authorization, const char **principal,
                   bool *read_only)
{
	const char *t;
	size_t tn;
	const struct entry *hit = NULL;

	if (!authorization)
		return SRV_AUTH_MISSING;
	while (*authorization == ' ' || *authorization == '\t')
		authorization++;
	if (strncasecmp(authorization, "Bearer", 6) != 0 ||
	    (authorization[6] != ' ' && authorization[6] != '\t'))
		return SRV_AUTH_MISSING;
	t = authorization + 6;
	while (*t == ' ' || *t == '\t')
		t++;
	tn = strlen(t);
	while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t'))
		tn--;
	if (tn == 0)
		return SRV_AUTH_MISSING;
	if (tn > TOKEN_MAX)
		return SRV_AUTH_INVALID;
	for (size_t i = 0; i < a->n; i++) {
		/* No early exit: every entry is compared. */
		if (ct_equal(a->e[i].token, a->e[i].len, t, tn))
			hit = &a->e[i];
	}
	if (!hit)
		return SRV_AUTH_INVALID;
	*principal = hit->principal;
	*read_only = hit->read_only;
	return SRV_AUTH_OK;
}
