/*
 * auth.c - bearer tokens from a file (--tokens-file), reloaded on SIGHUP.
 *
 * The table is built from the whole file and never changed afterwards; a
 * reload (srv__auth_reload, SIGHUP) builds a new table and swaps the
 * pointer under a rwlock, so checks from any number of libmicrohttpd
 * threads take the read side only, and a check copies the principal out
 * before it lets go: no request ever holds a pointer into a table that a
 * reload may free. A file that does not parse leaves the old table in
 * place. Open connections are not touched: a reload only changes which
 * tokens the next request's check accepts.
 *
 * A check compares the presented token with every token in the table,
 * each comparison touching every byte of the longer of the two, and never
 * stops early: its time depends on the table, not on how close a guess
 * was.
 *
 * Roles (the third field): rw (default) and ro act on their principal's
 * streams; admin reads every principal's streams and writes nothing.
 * Tokens never appear in messages or logs; a parse error names the line.
 * It knows nothing of routes: http.c decides which routes need a token
 * and which need a writer, streams.c what a principal or an admin sees.
 */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grow.h"

#define TOKEN_MIN     16
#define TOKEN_MAX     256
#define PRINCIPAL_MAX SRV_PRINCIPAL_MAX

struct entry {
	char token[TOKEN_MAX + 1];
	size_t len;
	char principal[PRINCIPAL_MAX + 1];
	srv__role role;
};

/* One parsed file; immutable once built. */
struct table {
	struct entry *e;
	size_t n;
};

struct srv__auth {
	pthread_rwlock_t lock; /* guards t: checks read, a reload swaps */
	struct table *t;
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

static void table_free(struct table *a)
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

static bool role_is(const char *w, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp(w, name, n);
}

static int table_parse(struct table **out, const char *text, char *err, size_t errlen)
{
	struct table *a = calloc(1, sizeof(*a));
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
			fail(err, errlen, line, "expected TOKEN PRINCIPAL [rw|ro|admin]");
			goto fail;
		}
		for (size_t i = 0; i < n[1]; i++) {
			if (!principal_char(w[1][i])) {
				fail(err, errlen, line,
				     "a principal may hold only A-Z a-z 0-9 - . _ @");
				goto fail;
			}
		}
		if (n[3] || (n[2] && !role_is(w[2], n[2], "rw") && !role_is(w[2], n[2], "ro") &&
		             !role_is(w[2], n[2], "admin"))) {
			fail(err, errlen, line, "the third field, if any, must be rw, ro or admin");
			goto fail;
		}
		for (size_t i = 0; i < a->n; i++) {
			if (a->e[i].len == n[0] && !memcmp(a->e[i].token, w[0], n[0])) {
				fail(err, errlen, line, "duplicate token");
				goto fail;
			}
		}
		struct entry *ne = srv__grow(a->e, &cap, a->n, sizeof(*ne), 8);
		if (!ne) {
			fail(err, errlen, line, "out of memory");
			goto fail;
		}
		a->e = ne;
		e = &a->e[a->n++];
		memset(e, 0, sizeof(*e));
		memcpy(e->token, w[0], n[0]);
		e->len = n[0];
		memcpy(e->principal, w[1], n[1]);
		e->role = !n[2]                       ? SRV_ROLE_RW
		          : role_is(w[2], n[2], "ro") ? SRV_ROLE_RO
		          : role_is(w[2], n[2], "rw") ? SRV_ROLE_RW
		                                      : SRV_ROLE_ADMIN;
	}
	if (a->n == 0) {
		fail(err, errlen, line, "no tokens (an empty tokens file would lock everyone out)");
		goto fail;
	}
	*out = a;
	return 0;
fail:
	table_free(a);
	return -1;
}

static srv__auth *auth_new(struct table *t)
{
	srv__auth *a = calloc(1, sizeof(*a));
	if (!a || pthread_rwlock_init(&a->lock, NULL) != 0) {
		free(a);
		table_free(t);
		return NULL;
	}
	a->t = t;
	return a;
}

/* Reads path into a new table. */
static int table_load(struct table **out, const char *path, char *err, size_t errlen)
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
	rc = table_parse(out, buf, err, errlen);
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

int srv__auth_load(srv__auth **out, const char *path, char *err, size_t errlen)
{
	struct table *t;

	*out = NULL;
	if (table_load(&t, path, err, errlen))
		return -1;
	*out = auth_new(t);
	return *out ? 0 : fail(err, errlen, 0, "out of memory");
}

int srv__auth_reload(srv__auth *a, const char *path, char *err, size_t errlen)
{
	struct table *t, *old;

	if (table_load(&t, path, err, errlen))
		return -1;
	pthread_rwlock_wrlock(&a->lock);
	old = a->t;
	a->t = t;
	pthread_rwlock_unlock(&a->lock);
	table_free(old);
	return 0;
}

void srv__auth_free(srv__auth *a)
{
	if (!a)
		return;
	table_free(a->t);
	pthread_rwlock_destroy(&a->lock);
	free(a);
}

size_t srv__auth_count(srv__auth *a)
{
	size_t n;
	if (!a)
		return 0;
	pthread_rwlock_rdlock(&a->lock);
	n = a->t->n;
	pthread_rwlock_unlock(&a->lock);
	return n;
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

int srv__auth_check(srv__auth *a, const char *authorization, char principal[SRV_PRINCIPAL_MAX + 1],
                    srv__role *role)
{
	const char *t;
	size_t tn;
	const struct entry *hit = NULL;
	int rc = SRV_AUTH_INVALID;

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
	pthread_rwlock_rdlock(&a->lock);
	const struct table *tab = a->t;
	for (size_t i = 0; i < tab->n; i++) {
		/* No early exit: every entry is compared. */
		if (ct_equal(tab->e[i].token, tab->e[i].len, t, tn))
			hit = &tab->e[i];
	}
	if (hit) {
		memcpy(principal, hit->principal, sizeof hit->principal);
		*role = hit->role;
		rc = SRV_AUTH_OK;
	}
	pthread_rwlock_unlock(&a->lock);
	return rc;
}
