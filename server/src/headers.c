/*
 * headers.c - request-header checks: framing, media type, request ids.
 *
 * libmicrohttpd 0.9.75 reads the first of two different Content-Length
 * headers, accepts Content-Length together with chunked, and treats an
 * unknown Transfer-Encoding as "read until close"; each of these is a
 * request-smuggling foothold behind a proxy that reads the headers the
 * other way. http.c feeds every header here on the first call of a request
 * (before any body byte is read) and refuses what srv__framing_check
 * refuses. Pure functions: no state, no allocation, no libmicrohttpd.
 */
#include "headers.h"

#include <string.h>
#include <strings.h>

static const char *trim(const char *s, size_t *n)
{
	while (*s == ' ' || *s == '\t')
		s++;
	*n = strlen(s);
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t'))
		(*n)--;
	return s;
}

void srv__framing_add(srv_framing *f, const char *key, const char *value)
{
	size_t n;
	const char *v;

	if (!key || !value)
		return;
	v = trim(value, &n);
	if (!strcasecmp(key, "Content-Length")) {
		unsigned long long x = 0;
		bool ok = n > 0 && n <= 18; /* < 10^18: no overflow */
		for (size_t i = 0; ok && i < n; i++) {
			if (v[i] < '0' || v[i] > '9')
				ok = false;
			else
				x = x * 10 + (unsigned)(v[i] - '0');
		}
		if (!ok || (f->ncl && x != f->cl))
			f->cl_conflict = true;
		f->cl = x;
		f->ncl++;
	} else if (!strcasecmp(key, "Transfer-Encoding")) {
		/* Only one header, saying exactly "chunked" (chunked twice, or
		 * any other coding, is refused). */
		f->te_chunked_only = f->nte == 0 && n == 7 && !strncasecmp(v, "chunked", 7);
		f->nte++;
	}
}

bool srv__framing_has_body(const srv_framing *f)
{
	/* A malformed length may hide a body: assume one, so the refusal goes
	 * out at once and the connection is closed. */
	return (f->ncl && (f->cl > 0 || f->cl_conflict)) || f->nte;
}

int srv__framing_check(const srv_framing *f, const char **code, const char **detail)
{
	if (f->nte && !f->te_chunked_only) {
		*code = "unsupported_transfer_encoding";
		*detail = "only a single Transfer-Encoding: chunked is supported";
		return 501;
	}
	if (f->nte && f->ncl) {
		*code = "bad_framing";
		*detail = "Content-Length together with Transfer-Encoding is refused";
		return 400;
	}
	if (f->cl_conflict) {
		*code = "bad_framing";
		*detail = "conflicting or malformed Content-Length headers";
		return 400;
	}
	return 0;
}

bool srv__is_json_type(const char *ct)
{
	size_t n;
	const char *v, *semi;

	if (!ct)
		return false;
	v = trim(ct, &n);
	semi = memchr(v, ';', n);
	if (semi)
		n = (size_t)(semi - v);
	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return n == 16 && !strncasecmp(v, "application/json", 16);
}

bool srv__valid_request_id(const char *s)
{
	size_t n = 0;

	if (!s)
		return false;
	for (; s[n]; n++) {
		char c = s[n];
		if (n >= 128)
			return false;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == ':' || c == '/' || c == '+' ||
		      c == '='))
			return false;
	}
	return n > 0;
}
