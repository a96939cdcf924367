/*
 * parse.c - strict parsing of a request body into a jansson tree.
 *
 * A request body is untrusted and may be large (megabytes of numbers), and
 * jansson spends about 32 heap bytes per number as mem.c counts them (a
 * 24-byte json_t plus its 8-byte slot in the array; about 40 bytes of RSS
 * with malloc's headers; measured in tests/api/test_parse.c), so the tree
 * costs 16 times a body of "0,0,0,...": 32 MB for a 2 MB body. Two guards
 * run before and during the parse:
 *
 *   1. One pass over the raw bytes (no allocation) counts number tokens and
 *      tracks nesting depth, outside strings and honouring escapes. Too
 *      many numbers is 413 too_many_elements and too deep is 400 too_deep,
 *      both answered before any tree is built (a body that opens with '['
 *      is 400 not_an_object even before that). jansson itself recurses per
 *      nesting level, so the depth check also keeps its stack small.
 *   2. jansson's heap on this thread is budgeted (mem.c) to
 *      ctx->max_json_bytes; past it the parse fails and the answer is 413
 *      body_too_large.
 *
 * Strictness: jansson rejects invalid UTF-8, NUL bytes (raw or \u0000),
 * trailing data after the value, numbers that overflow (1e400, integers
 * beyond 64 bits: 400 malformed_json naming the position); duplicate keys
 * are 400 duplicate_key; a top-level value that is not an object is 400
 * not_an_object; an empty body is 400 malformed_json.
 *
 * It does not look at field names or values: that is the handlers' job.
 */
#include "lossd/api.h"
#include "mem.h"
#include "packed.h"

#include <string.h>

/* jansson's line and column of body offset pos: lines from 1, columns in
 * UTF-8 characters since the last newline. */
static void line_col(const unsigned char *s, size_t pos, int *line, int *col)
{
	int l = 1, c = 0;
	for (size_t i = 0; i < pos; i++) {
		if (s[i] == '\n') {
			l++;
			c = 0;
		} else if ((s[i] & 0xc0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/*
 * Positions in a text body.c built as the body arrived (its long base64
 * strings taken out: `sp`, packs [0, nstream)) are told as positions in the
 * body: the byte offset, and the line and column (a taken-out string is
 * printable ASCII on one line: a column a byte; a taken-out array is ASCII
 * too, and its pack counts its newlines). With sp NULL the text is the
 * body.
 */
static size_t sent_pos(const api_packed *sp, size_t pos)
{
	if (!sp || !sp->nstream)
		return pos;
	api_packed only = *sp;
	only.n = sp->nstream;
	only.nstream = 0;
	return api__packed_body_pos(&only, pos);
}

/* line_col of body offset pos, reading the text (sp as above). */
static void sent_line_col(const unsigned char *s, size_t n, const api_packed *sp, size_t pos,
                          int *line, int *col)
{
	int l = 1, c = 0;
	size_t t = 0, b = 0, k = 0;

	if (!sp || !sp->nstream) {
		line_col(s, pos < n ? pos : n, line, col);
		return;
	}
	while (b < pos) {
		if (k < sp->nstream && t == sp->packs[k].skel_start) {
			const api__pack *q = &sp->packs[k];
			size_t span = q->body_end - q->body_start;
			size_t take = span < pos - b ? span : pos - b;
			if (q->lines && take == span) {
				l += (int)q->lines;
				c = (int)q->last_col;
			} else {
				c += (int)take;
			}
			b += take;
			t = sp->packs[k++].skel_end;
			continue;
		}
		if (t >= n)
			break;
		if (s[t] == '\n') {
			l++;
			c = 0;
		} else if ((s[t] & 0xc0) != 0x80) {
			c++;
		}
		t++;
		b++;
	}
	*line = l;
	*col = c;
}

/* Byte classes of the pre-pass. */
enum {
	C_SPACE, /* ends a number */
	C_KEEP,  /* '.', 'e', 'E', '+': inside a number, or a literal's letter */
	C_NUM,   /* '-', digits: starts or continues a number */
	C_OTHER, /* ',', ':', letters...: ends a number */
	C_QUOTE,
	C_OPEN,
	C_CLOSE,
};

static unsigned char byte_class[256];

__attribute__((constructor)) static void byte_class_init(void)
{
	for (int c = 0; c < 256; c++)
		byte_class[c] = C_OTHER;
	byte_class[' '] = byte_class['\t'] = byte_class['\n'] = byte_class['\r'] = C_SPACE;
	byte_class['.'] = byte_class['e'] = byte_class['E'] = byte_class['+'] = C_KEEP;
	byte_class['-'] = C_NUM;
	for (int c = '0'; c <= '9'; c++)
		byte_class[c] = C_NUM;
	byte_class['"'] = C_QUOTE;
	byte_class['['] = byte_class['{'] = C_OPEN;
	byte_class[']'] = byte_class['}'] = C_CLOSE;
}

/* The raw-byte pre-pass: 0 with *count the number tokens, or -1 with *p set.
 * sp (may be NULL): body.c's lifted strings, skipped, and positions told in
 * the body. */
static int prescan(const api_ctx *ctx, const unsigned char *s, size_t n, const api_packed *sp,
                   int64_t *count, api_problem *p)
{
	size_t next = 0; /* sp's next placeholder */
	int64_t numbers = 0;
	int64_t max_numbers = ctx->max_elements;
	int depth = 0, max_depth = ctx->max_depth;
	unsigned in_num = 0, any = 0;

	/* A raw NUL is never JSON (not whitespace, and unescaped in no
	 * string). Refused here, by position: jansson's own position and
	 * column for it go astray (its reader treats a 0 byte as the end of
	 * its buffer once the lexer puts it back). */
	const unsigned char *zero = n ? memchr(s, 0, n) : NULL;
	if (zero) {
		int line, col;
		sent_line_col(s, n, sp, sent_pos(sp, (size_t)(zero - s)), &line, &col);
		return api_problem_set(p, 400, "malformed_json", "",
		                       "a NUL byte at line %d, column %d: not JSON", line, col + 1);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned k = byte_class[s[i]];
		if (k <= C_OTHER) {
			/* the common bytes, without branches */
			unsigned num = k == C_NUM;
			numbers += num & ~in_num;
			in_num = num | (in_num & (k == C_KEEP));
			any |= k >= C_NUM;
			continue;
		}
		if (numbers > max_numbers)
			break;
		in_num = 0;
		any = 1;
		if ((k == C_QUOTE || k == C_OPEN) && sp && next < sp->nstream &&
		    i == sp->packs[next].skel_start) {
			/* a lifted string (no number, no \u0000), or a lifted
			 * array: its numbers, nested within max_depth */
			if (sp->packs[next].rank)
				numbers += sp->packs[next].size;
			i = sp->packs[next++].skel_end - 1;
		} else if (k == C_QUOTE) {
			bool esc = false, nul = false;
			size_t e = api__string_end(s, i, n, &esc, &nul);
			if (nul) {
				/* jansson would refuse it too; here it also keeps
				 * the placeholders of packed.c unforgeable */
				int line, col;
				sent_line_col(s, n, sp, sent_pos(sp, i), &line, &col);
				return api_problem_set(p, 400, "malformed_json", "",
				                       "\\u0000 is not allowed in a string at line "
				                       "%d, column %d",
				                       line, col);
			}
			i = e;
		} else if (k == C_OPEN) {
			if (++depth > max_depth)
				return api_problem_set(
				        p, 400, "too_deep", "",
				        "the body nests deeper than %d levels (at byte %zu)",
				        max_depth, sent_pos(sp, i));
		} else {
			depth--;
		}
	}
	if (numbers > max_numbers)
		return api_problem_set(p, 413, "too_many_elements", "",
		                       "the body holds more than %lld numbers",
		                       (long long)max_numbers);
	if (!any)
		return api_problem_set(p, 400, "malformed_json", "", "the body is empty");
	*count = numbers;
	return 0;
}

/*
 * The parse of body (len bytes). sp (stolen, may be NULL): the strings
 * body.c lifted as the body arrived, whose placeholders body holds; errors
 * then tell positions in the body as sent, sent_len bytes.
 */
static json_t *parse(const api_ctx *ctx, const char *body, size_t len, api_packed *sp,
                     size_t sent_len, api_packed **packed, api_problem *p)
{
	static const api_ctx defaults = API_CTX_INIT;
	const unsigned char *u = (const unsigned char *)body;
	json_error_t e;
	int64_t numbers = 0;
	api_packed *pk = sp;
	char *skel = NULL;
	size_t skel_len = 0;
	json_t *v = NULL;

	if (packed)
		*packed = NULL;
	api__mem_install();
	if (!ctx)
		ctx = &defaults;
	api__json_budget_set(ctx->max_json_bytes);
	if (!body)
		len = 0;
	/* A top-level array is refused before the prescan and the parse: a
	 * 2 MB "[0,0,...]" would otherwise build a 40 MB tree only to be
	 * told it is not an object. (Other non-objects cost no tree.) */
	for (size_t i = 0; i < len; i++) {
		char c = body[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
			continue;
		if (c == '[') {
			api_packed_free(sp);
			api_problem_set(p, 400, "not_an_object", "",
			                "the body must be a JSON object ({...})");
			return NULL;
		}
		break;
	}
	if (prescan(ctx, u, len, sp, &numbers, p)) {
		api_packed_free(sp);
		return NULL;
	}
	if (packed && api__lift(&pk, &skel, &skel_len, body, len, numbers, ctx->max_depth)) {
		api_packed_free(pk);
		api_problem_set(p, 503, "out_of_memory", "",
		                "out of memory while parsing the body");
		return NULL;
	}

	/* The skeleton's placeholders hold "\u0000", which prescan refused in
	 * the body itself. */
	if (skel || sp)
		v = api__json_loadb(skel ? skel : body, skel ? skel_len : len,
		                    JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
	else
		v = api__json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
	api__free(skel);
	int why = api__json_alloc_failure();
	if (v && why != API__ALLOC_OK) {
		/* jansson 2.14's lexer ignores a failed append to its string
		 * buffer, so a refused allocation can yield a tree with a
		 * silently shortened string ("sparse_categorcal_..."). A tree
		 * built while any allocation failed is never trusted. */
		json_decref(v);
		v = NULL;
	}
	if (!v) {
		if (pk) {
			/* the error's place in the body, not in the skeleton */
			size_t at =
			        api__packed_body_pos(pk, (size_t)(e.position > 0 ? e.position : 0));
			e.position = (int)(at < (size_t)INT32_MAX ? at : INT32_MAX);
			sent_line_col(u, len, sp ? pk : NULL, at < sent_len ? at : sent_len,
			              &e.line, &e.column);
		}
		api_packed_free(pk);
		/* Allocation failures first: jansson may word a refused
		 * allocation as another error than out_of_memory. */
		if (why == API__ALLOC_BUDGET) {
			api_problem_set(p, 413, "body_too_large", "",
			                "the body needs more than %zu bytes of memory to parse",
			                ctx->max_json_bytes);
			return NULL;
		}
		switch (why == API__ALLOC_SYSTEM ? json_error_out_of_memory : json_error_code(&e)) {
		case json_error_out_of_memory:
			api_problem_set(p, 503, "out_of_memory", "",
			                "out of memory while parsing the body");
			break;
		case json_error_duplicate_key:
			api_problem_set(p, 400, "duplicate_key", "", "%s (at byte %d)", e.text,
			                e.position);
			break;
		case json_error_stack_overflow:
			api_problem_set(p, 400, "too_deep", "", "%s", e.text);
			break;
		default:
			api_problem_set(p, 400, "malformed_json", "", "%s at line %d, column %d",
			                e.text, e.line, e.column);
			break;
		}
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		api_packed_free(pk);
		api_problem_set(p, 400, "not_an_object", "",
		                "the body must be a JSON object ({...})");
		return NULL;
	}
	if (packed)
		*packed = pk;
	return v;
}

json_t *api_parse_body_packed(const api_ctx *ctx, const char *body, size_t len, api_packed **packed,
                              api_problem *p)
{
	return parse(ctx, body, len, NULL, len, packed, p);
}

json_t *api__parse_sent(const api_ctx *ctx, const char *text, size_t len, api_packed *sp,
                        size_t sent_len, api_packed **packed, api_problem *p)
{
	return parse(ctx, text, len, sp, sent_len, packed, p);
}

json_t *api_parse_body(const api_ctx *ctx, const char *body, size_t len, api_problem *p)
{
	return api_parse_body_packed(ctx, body, len, NULL, p);
}
