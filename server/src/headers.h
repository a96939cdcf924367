/*
 * headers.h - pure checks of request headers, kept apart from libmicrohttpd
 * so they can be unit-tested without sockets.
 */
#ifndef LOSSD_SERVER_HEADERS_H
#define LOSSD_SERVER_HEADERS_H

#include <stdbool.h>

/* What the framing headers of one request said. Zero-initialize, feed
 * every header to srv__framing_add, then ask srv__framing_check. */
typedef struct srv__framing {
	int ncl;               /* Content-Length headers seen */
	bool cl_conflict;      /* two that differ, or one that is not digits */
	unsigned long long cl; /* the (last) Content-Length */
	int nte;               /* Transfer-Encoding headers seen */
	bool te_chunked_only;  /* exactly one, and it is "chunked" */
	bool bad_name;         /* a name that is not a token ("Transfer-Encoding ") */
	bool folded;           /* an obs-folded line (set by the caller) */
} srv__framing;

/* Records one header (any name: a name that is not an RFC 9110 token sets
 * bad_name; framing names are parsed). Any thread. */
void srv__framing_add(srv__framing *f, const char *key, const char *value);

/*
 * False if a header from libmicrohttpd 0.9.75 came from an obs-folded
 * line. 0.9.75 parses a line in place: the ':' becomes the NUL ending the
 * name, blanks are skipped and the value starts right there. A line
 * continued on the next (starting with SP or HT) is appended to the name,
 * which moves it out of the buffer or over the value, so the value no
 * longer follows the name's NUL across blanks only. key and value are
 * libmicrohttpd's own pointers (not copies). Any thread.
 */
bool srv__header_in_place(const char *key, const char *value);

/* True if a body follows the headers (or may: a malformed length). */
bool srv__framing_has_body(const srv__framing *f);

/*
 * Returns 0 if the framing is acceptable, else the HTTP status to refuse
 * with (400 malformed_header for a bad name or an obs-fold, 501 for a
 * Transfer-Encoding other than a single "chunked", 400 for
 * Content-Length with Transfer-Encoding or conflicting Content-Lengths),
 * with *code and *detail set to static strings.
 */
int srv__framing_check(const srv__framing *f, const char **code, const char **detail);

/* True if a Content-Type value names application/json (any case, any
 * parameters such as charset). NULL is false. */
bool srv__is_json_type(const char *ct);

/* True if a Content-Type value names application/merge-patch+json. */
bool srv__is_merge_patch_type(const char *ct);

/* True if a client's X-Request-Id is safe to echo and log: 1..128
 * characters of [A-Za-z0-9._:/+=-]. */
bool srv__valid_request_id(const char *s);

#endif
