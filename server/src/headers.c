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
 *
 * Two more shapes get past 0.9.75 and are refused here (RFC 9112 section
 * 5: 400, and the connection closed): a header name with whitespace
 * before its colon, `Transfer-Encoding : chunked` (0.9.75 keeps the blank
 * in the name, so nothing sees a Transfer-Encoding and Content-Length
 * frames the body), and an obs-folded line, `Transfer-Encoding:` followed
 * by a line ` chunked` (0.9.75 appends the continuation to the *name*,
 * "Transfer-Encodingchunked"). The first shows as a name that is not an
 * RFC 9110 token; the second only in where 0.9.75 left the name and the
 * value in its read buffer (srv__header_in_place).
 */
#include "headers.h"

#include <stdint.h>
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

/* RFC 9110 section 5.6.2: tchar. */
static bool is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

bool srv__header_in_place(const char *key, const char *value)
{
	uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
	uintptr_t end = k + strlen(key) + 1; /* past the NUL that was the ':' */

	/* A gap longer than any header buffer (64 KiB) is no gap of blanks. */
	if (v < end || v - end > 65536)
		return false;
	for (const char *p = key + (end - k); (uintptr_t)p < v; p++)
		if (*p != ' ' && *p != '\t')
			return false;
	return true;
}

void srv__framing_add(srv__framing *f, const char *key, const char *value)
{
	size_t n;
	const char *v;

	if (!key || !value)
		return;
	if (!*key)
		f->bad_name = true;
	for (const char *p = key; *p && !f->bad_name; p++)
		if (!is_tchar((unsigned char)*p))
			f->bad_name = true;
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

bool srv__framing_has_body(const srv__framing *f)
{
	/* A malformed length may hide a body: assume one, so the refusal goes
	 * out at once and the connection is closed. */
	return (f->ncl && (f->cl > 0 || f->cl_conflict)) || f->nte;
}

int srv__framing_check(const srv__framing *f, const char **code, const char **detail)
{
	if (f->bad_name) {
		*code = "malformed_header";
		*detail = "a header name must be a token: no whitespace before the colon";
		return 400;
	}
	if (f->folded) {
		*code = "malformed_header";
		*detail = "a header line continued on the next (obs-fold) is refused";
		return 400;
	}
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

bool srv__is_merge_patch_type(const char *ct)
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
	return n == 28 && !strncasecmp(v, "application/merge-patch+json", 28);
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
