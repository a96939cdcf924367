/*
 * reply.c - replies and problems: what every handler hands back.
 *
 * A handler fills an api_problem (status, stable code, JSON Pointer,
 * human-readable detail) as soon as something is wrong and renders it once,
 * at the end, as application/problem+json (docs/API.md section 5, RFC 9457).
 * Successful replies are jansson trees, written out here (not with
 * json_dumps) so that every double is printed in the shortest form that
 * parses back to the same double (0.1, not 0.10000000000000001, as Python,
 * JavaScript and numpy print it): a client gets exactly the double the
 * engine computed, in the digits a person expects.
 *
 * Invariants: a reply body is always plain malloc memory (free() or
 * api_reply_free()), NUL-terminated after len bytes, never jansson's heap,
 * so the server can free it on any thread. NaN and Inf cannot reach the
 * wire: jansson refuses to make a real of them (json_real(NAN) is NULL),
 * and a NULL tree becomes a 503.
 *
 * Problem bodies are written by hand (not with jansson) so that a problem
 * can still be rendered when jansson's per-request budget is exhausted;
 * when even malloc fails, the reply has the right status and content type
 * and body == NULL, len == 0.
 *
 * It does not know HTTP beyond status numbers and reason phrases.
 */
#include "lossd/api.h"
#include "lossd/dynbuf.h"
#include "dtoa.h"
#include "mem.h"
#include "render.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- problems ------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;
	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

int api_problem_set(api_problem *p, int status, const char *code, const char *pointer,
                    const char *fmt, ...)
{
	if (!p)
		return -1;
	p->status = status;
	p->code = code ? code : "internal_error";
	copy_str(p->pointer, sizeof p->pointer, pointer);
	p->detail[0] = '\0';
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->detail, sizeof p->detail, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int api_problem_from_eng(api_problem *p, const eng_error *err)
{
	int status = 422;
	const char *code;
	char ptr[sizeof p->pointer];

	if (!err)
		return api_problem_set(p, 500, "internal_error", "",
		                       "the engine failed without saying why");
	switch (err->code) {
	case ENG_EINVAL: code = "bad_option"; break;
	case ENG_ESHAPE: code = "shape_mismatch"; break;
	case ENG_ELABEL: code = "label_out_of_range"; break;
	case ENG_EPROB: code = "prediction_out_of_range"; break;
	case ENG_ENONFINITE: code = "non_finite"; break;
	case ENG_EWEIGHT: code = "bad_weight"; break;
	case ENG_ENOMEM:
		status = 503;
		code = "out_of_memory";
		break;
	case ENG_ELIMIT:
		status = 507;
		code = "stream_memory_exceeded";
		break;
	case ENG_ESTATE:
		status = 409;
		code = "state_mismatch";
		break;
	default:
		status = 500;
		code = "internal_error";
		break;
	}
	ptr[0] = '\0';
	if (err->field && err->field[0]) {
		if (err->index >= 0)
			snprintf(ptr, sizeof ptr, "/%s/%lld", err->field, (long long)err->index);
		else
			snprintf(ptr, sizeof ptr, "/%s", err->field);
	}
	if (err->msg[0])
		return api_problem_set(p, status, code, ptr, "%.*s", (int)sizeof err->msg,
		                       err->msg);
	if (err->code == ENG_ENOMEM)
		return api_problem_set(p, status, code, ptr, "out of memory");
	return api_problem_set(p, status, code, ptr, "%s", code);
}

/* ---- rendering ------------------------------------------------------------ */

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	}
	return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "Unknown";
}

/* A problem is at most a short title, a code, a 160-byte pointer and a
 * 512-byte detail, each escaped to at most 6 bytes a byte: 8 KiB holds it.
 * (A JSON reply's cap is API__REPLY_MAX, render.h.) */
#define PROBLEM_MAX ((size_t)8 << 10)

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
		return 0;
	return len;
}

/*
 * Appends s as a JSON string: quotes, escapes for '"', '\\' and controls,
 * and U+FFFD for every byte that is not part of valid UTF-8 (details quote
 * request bytes, jansson's error texts included, and a fixed-size field
 * may cut a character in two).
 */
static void db_json_str(api_dynbuf *b, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);
	size_t run = 0; /* start of bytes not yet copied */
	api_dynbuf_add(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			continue;
		}
		size_t k = c >= 0x80 ? utf8_len(s + i, n - i) : 1;
		if (c >= 0x80 && k > 0) {
			i += k;
			continue;
		}
		api_dynbuf_add(b, str + run, i - run);
		if (c >= 0x80) {
			api_dynbuf_adds(b, "\xEF\xBF\xBD"); /* U+FFFD */
		} else if (c < 0x20) {
			char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
			api_dynbuf_adds(b, esc);
		} else {
			char esc[3] = {'\\', (char)c, 0};
			api_dynbuf_adds(b, esc);
		}
		i++;
		run = i;
	}
	api_dynbuf_add(b, str + run, n - run);
	api_dynbuf_add(b, "\"", 1);
}

static void set_reply(api_reply *out, int status, const char *ctype, api_dynbuf *b)
{
	out->status = status;
	out->content_type = ctype;
	out->retry_after = 0;
	out->link = NULL;                          /* callers may pass an uninitialized reply */
	out->body = api_dynbuf_take(b, &out->len); /* NUL-terminated */
	if (!out->body) {
		api_dynbuf_free(b);
		out->status = 503;
		out->content_type = API_PROBLEM_JSON;
	}
}

void api_reply_problem(api_reply *out, const api_problem *p)
{
	api_dynbuf b;
	char num[16];
	int status = p ? p->status : 500;
	if (status < 100 || status > 599)
		status = 500;

	api_dynbuf_init(&b, PROBLEM_MAX);
	api_dynbuf_adds(&b, "{\"type\":\"about:blank\",\"title\":");
	db_json_str(&b, reason(status));
	snprintf(num, sizeof num, "%d", status);
	api_dynbuf_adds(&b, ",\"status\":");
	api_dynbuf_adds(&b, num);
	api_dynbuf_adds(&b, ",\"code\":");
	db_json_str(&b, p && p->code ? p->code : "internal_error");
	api_dynbuf_adds(&b, ",\"detail\":");
	db_json_str(&b, p ? p->detail : "");
	if (p && p->pointer[0]) {
		api_dynbuf_adds(&b, ",\"pointer\":");
		db_json_str(&b, p->pointer);
	}
	api_dynbuf_adds(&b, "}");
	set_reply(out, status, API_PROBLEM_JSON, &b);
}

void api_reply_error(api_reply *out, int status, const char *code, const char *fmt, ...)
{
	api_problem p;
	api_problem_set(&p, status, code, "", NULL);
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p.detail, sizeof p.detail, fmt, ap);
		va_end(ap);
	}
	api_reply_problem(out, &p);
}

/* The shortest of %.15g, %.16g, %.17g that reads back as d (dtoa.c). */
static void db_double(api_dynbuf *b, double d)
{
	char num[API__DTOA_MAX];
	api_dynbuf_adds(b, (api__dtoa(num, d), num));
}

/* Writes v compactly; objects in insertion order (jansson keeps it). */
static void db_json(api_dynbuf *b, json_t *v)
{
	char num[32];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *x;
		int first = 1;
		api_dynbuf_add(b, "{", 1);
		json_object_foreach(v, key, x)
		{
			if (!first)
				api_dynbuf_add(b, ",", 1);
			first = 0;
			db_json_str(b, key);
			api_dynbuf_add(b, ":", 1);
			db_json(b, x);
		}
		api_dynbuf_add(b, "}", 1);
		break;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *x;
		api_dynbuf_add(b, "[", 1);
		json_array_foreach(v, i, x)
		{
			if (i)
				api_dynbuf_add(b, ",", 1);
			db_json(b, x);
		}
		api_dynbuf_add(b, "]", 1);
		break;
	}
	case JSON_STRING: db_json_str(b, json_string_value(v)); break;
	case JSON_INTEGER:
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		api_dynbuf_adds(b, num);
		break;
	case JSON_REAL: db_double(b, json_real_value(v)); break;
	case JSON_TRUE: api_dynbuf_adds(b, "true"); break;
	case JSON_FALSE: api_dynbuf_adds(b, "false"); break;
	case JSON_NULL: api_dynbuf_adds(b, "null"); break;
	}
}

void api_reply_json(api_reply *out, int status, json_t *body)
{
	api_dynbuf b;

	api__mem_install();
	if (!body) {
		api_reply_error(out, 503, "out_of_memory",
		                "out of memory while building the reply");
		return;
	}
	api_dynbuf_init(&b, API__REPLY_MAX);
	db_json(&b, body);
	if (api_dynbuf_error(&b)) {
		api_dynbuf_free(&b);
		json_decref(body);
		api_reply_error(out, 503, "out_of_memory",
		                "out of memory while rendering the reply");
		return;
	}
	json_decref(body);
	set_reply(out, status, API_JSON, &b);
}

void api_reply_free(api_reply *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->link);
	r->link = NULL;
	r->status = 0;
	r->content_type = NULL;
	r->body = NULL;
	r->len = 0;
	r->retry_after = 0;
}
