/*
 * body.c - a request body read as it arrives: long base64 strings decoded
 * and rectangular arrays of JSON numbers parsed chunk by chunk into an
 * arena, the rest of the JSON kept as text.
 *
 * Why: a (8192, 32000) float32 tensor is 1.4 GB of base64. Buffered whole,
 * the body costs 1.4 GB of fresh pages before a byte is decoded, and the
 * tensor 1 GB more. Here each chunk is scanned as the HTTP layer receives
 * it: the characters of a "b64" string go through the table decoder (b64.c)
 * straight into the arena, which the server lends and reuses across
 * requests, and only the small rest of the object is kept. At the end that
 * text holds one placeholder per decoded string, exactly as packed.c's
 * skeleton would, and goes through the same parse (parse.c), so the
 * request is answered as the buffered body would be: same values, same
 * errors, same positions in them. Arrays of numbers likewise: their values
 * go to the arena as float64 as they are read, and an array that closes
 * rectangular with at least API__PACK_MIN values leaves a placeholder in
 * the text (see "number arrays" below), so what is held is the values and
 * the text of the row being read, not the body's text.
 *
 * What is taken out is what api__lift would take: the string value of a
 * "b64" key (the key unescaped in the body) directly in an object, at
 * least API__PACK_STR_MIN printable ASCII characters without a backslash,
 * before anything that stops the lifting pass (a bracket that closes the
 * wrong container, nesting past max_depth + 1). The scan keeps only what
 * decides that: the open containers, the last key, whether a ':' follows
 * it. A candidate string is held in a 1 KiB stash until it is long enough,
 * then decoded as it comes; the decoder notes the first character outside
 * the alphabet (its offset is the bad_base64 error). A backslash or a byte
 * outside printable ASCII after the stash means the string is not lifted
 * after all: its text is rebuilt (the decoded groups encoded again, the
 * last characters and the first invalid one kept raw: all that the
 * buffered path's checks can see of it, see fallback()) and the rest of it
 * is kept as text.
 *
 * Invariants: the text is never longer than the body (a placeholder is at
 * most 31 bytes, a lifted string at least 1026, a lifted array at least 33);
 * decoded strings and arrays lifted outside another candidate start on
 * 64-byte boundaries of the arena and never pass api_body_arena_size(len);
 * packs are in body order; a placeholder stands only for a rectangular nest
 * of numbers (at most ENG_MAX_RANK deep, within max_depth).
 *
 * The loss started as the body arrives: while a lifted string is decoded,
 * api_body_decoding tells how many of its bytes are final (all but the
 * last group, which the padding may decode again), and api__body_snapshot
 * lends the text and packs before it, so api_loss_early_* (loss.c) can
 * guess that it is y_pred, plan the loss and run its tasks on another
 * thread over the rows decoded so far (server/src/early.c drives that
 * thread). For that, decoded bytes are never written again while the body
 * lives: a string found not liftable after all (fallback) keeps its arena
 * bytes reserved instead of handing them to the next string or array.
 * Number arrays likewise: the outermost candidate's values are written
 * back to back from its first, so its rows are the tensor's rows as the
 * whole array would be lifted; a row is final once it has closed lifted
 * (at least API__PACK_MIN values, so akeep covers it: nothing is written
 * over it, even when the array fails later) with its siblings' shape, and
 * while the array is open api_body_decoding tells the bytes of those rows
 * (`rows`). Rows kept as text (short, or past HOLD_SLACK) publish
 * nothing.
 * When the last byte arrives, what is left of the loss is the tail rows
 * and the reduction; the answer is bit for bit the buffered one (loss.c
 * says why). Measured with bench/run.sh --only body: see
 * docs/PERFORMANCE.md, "Large base64 request read as it arrives".
 *
 * Limits: an array whose rows are shorter than API__PACK_MIN values (a
 * (N, 3) tensor, a vector) keeps its text until it closes, so its peak is
 * text and values; an array that turns out not to be a rectangular nest of
 * numbers keeps the text of what is not lifted, and packed.c finishes it.
 * It knows nothing of HTTP or threads: one thread feeds it, any one thread
 * (after a hand-off) finishes it.
 */
#include "lossd/api.h"
#include "lossd/dynbuf.h"
#include "b64.h"
#include "mem.h"
#include "packed.h"

#include <stdio.h>
#include <string.h>

#define NONE  SIZE_MAX
#define BLOCK ((size_t)4096) /* groups decoded between checks */

enum { S_OUT, S_STR, S_ESC, S_STASH, S_DECODE, S_ARR };
enum { K_NONE, K_NUMBERS, K_ARRAYS }; /* what an array holds so far */
enum { E_FIRST, E_COMMA, E_NEXT };    /* after '[', a value, a ',' */
#define MAX_CANDS  (ENG_MAX_RANK + 1)
#define HOLD_SLACK ((size_t)256 << 10) /* arena and text past the body read */

/* An open array that may still be a rectangular nest of numbers. */
typedef struct cand {
	size_t start;  /* body offset of its '[' */
	size_t tstart; /* text offset of its '[' */
	size_t astart; /* arena offset of its first value */
	size_t npacks; /* packs before it (those after are its children's) */
	size_t lines;  /* newlines read in arrays before it */
	int64_t n;     /* elements */
	int rank;      /* of each child (K_ARRAYS) */
	unsigned char kind, expect;
	int64_t shape[ENG_MAX_RANK]; /* each child's */
} cand;

struct api_body {
	api_dynbuf text; /* the body less its lifted strings (never longer than it) */
	size_t max_len;
	size_t sent; /* body bytes fed */

	unsigned char *open; /* 1: an array, 0: an object, per open container */
	int depth, max_frames;
	bool stopped;   /* api__lift would have stopped: no more lifts */
	bool b64_value; /* the next value is that of a "b64" key */
	bool key_b64;   /* the last string was "b64" */

	/* the string being read */
	int mode;
	size_t start; /* body offset of its '"' */
	size_t k;     /* its characters so far */
	bool esc;
	char key3[3];
	char stash[API__PACK_STR_MIN];

	/* decoding */
	unsigned char *arena;
	size_t acap, aused, ahigh; /* ahigh: what decoded strings wrote */
	size_t seg;                /* arena offset of the string being decoded */
	size_t groups;             /* its groups decoded */
	unsigned char carry[4];
	int ncarry;
	unsigned char tail[4]; /* its last 4 characters before the current run */
	size_t first_bad;      /* string offset of its first character outside the alphabet */
	unsigned char bad_char;

	api__pack *packs;
	size_t npacks, pcap;
	size_t akeep; /* arena bytes the packs need (after the last one) */
	size_t vhigh; /* the most akeep was after a lifted array */

	/* number arrays: the open arrays that may still be lifted (the top
	 * ncand of open[]), the number token being read (its text offset) */
	cand cands[MAX_CANDS];
	int ncand;
	size_t rows; /* arena bytes of cands[0]'s children closed for good */
	size_t tok;
	size_t lines, last_nl; /* newlines read in arrays, body offset of the last */
};

size_t api_body_arena_size(size_t len)
{
	/* 3 bytes a group, and per lifted string (>= 1026 bytes of body) up
	 * to 63 bytes of alignment and 4 of store overrun */
	size_t b64 = len / 4 * 3 + (len / API__PACK_STR_MIN + 1) * 68 + 64;
	/* and 8 bytes a number (at least 2 bytes of body: "0,"), and up to
	 * 63 bytes of alignment per lifted array (at least 33 bytes) */
	return b64 + len / 2 * 8 + 8 + (len / 33 + 1) * 64;
}

int api_body_new(api_body **out, void *arena, size_t cap, size_t max_len, int max_depth)
{
	api_body *b = api__malloc(sizeof *b);

	*out = NULL;
	if (!b)
		return -1;
	memset(b, 0, sizeof *b);
	b->max_frames = max_depth > 0 ? max_depth + 1 : 1;
	b->open = api__malloc((size_t)b->max_frames);
	if (!b->open) {
		api__free(b);
		return -1;
	}
	b->arena = arena;
	b->acap = arena ? cap : 0;
	b->max_len = max_len;
	b->tok = NONE;
	api_dynbuf_init(&b->text, max_len);
	*out = b;
	return 0;
}

void api_body_free(api_body *b)
{
	if (!b)
		return;
	api_dynbuf_free(&b->text);
	api__free(b->open);
	api__free(b->packs);
	api__free(b);
}

size_t api_body_held(const api_body *b)
{
	return b ? b->text.alloc + (b->ahigh > b->vhigh ? b->ahigh : b->vhigh) : 0;
}

size_t api_body_len(const api_body *b)
{
	return b ? b->sent : 0;
}

/* cands[0] holds rows an early loss may read (see cand_close). */
static bool rows_ready(const api_body *b)
{
	return b->mode == S_ARR && b->ncand > 0 && b->rows > 0 && b->cands[0].rank < ENG_MAX_RANK;
}

size_t api_body_decoding(const api_body *b, size_t *id)
{
	*id = 0;
	if (b && rows_ready(b)) {
		*id = b->cands[0].start;
		return b->rows;
	}
	if (!b || b->mode != S_DECODE)
		return SIZE_MAX;
	*id = b->start;
	/* the last group is decoded again when the string ends padded */
	return b->groups > 1 ? (b->groups - 1) * 3 : 0;
}

int api__body_snapshot(const api_body *b, api__body_snap *out)
{
	memset(out, 0, sizeof *out);
	if (rows_ready(b)) {
		const cand *f = &b->cands[0];
		out->text = b->text.p;
		out->len = f->tstart;
		out->packs = b->packs;
		out->npacks = f->npacks;
		out->values = (const double *)(const void *)(b->arena + f->astart);
		out->rank = f->rank;
		memcpy(out->shape, f->shape, (size_t)f->rank * sizeof *f->shape);
		out->start = f->start;
		out->sent = b->sent;
		out->open = b->open;
		out->depth = b->depth - b->ncand;
		return 0;
	}
	if (b->mode != S_DECODE)
		return -1;
	out->text = b->text.p;
	out->len = b->text.len;
	out->packs = b->packs;
	out->npacks = b->npacks;
	out->decoded = b->arena + b->seg;
	out->start = b->start;
	out->sent = b->sent;
	out->open = b->open;
	out->depth = b->depth;
	return 0;
}

/* ---- the text ----------------------------------------------------------------------- */

static int put(api_body *b, const void *s, size_t n)
{
	return api_dynbuf_add(&b->text, s, n) ? -1 : 0;
}

/* ---- decoding ----------------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A character outside the alphabet at string offset pos: true when the
 * string cannot be lifted (it must be kept as text). */
static bool note_bad(api_body *b, size_t pos, unsigned char c)
{
	if (c == '\\' || c < 0x20 || c > 0x7e)
		return true;
	if (b->first_bad == NONE) {
		b->first_bad = pos;
		b->bad_char = c;
	}
	return false;
}

/*
 * The string being decoded is not lifted after all: a backslash or a byte
 * outside printable ASCII at string offset kk (r[kk - base] when r is
 * given). Writes its first kk characters to the text as the buffered path
 * would see them: the decoded groups encoded again, which gives every
 * character back while all were in the alphabet; the first that was not,
 * as it was (it is where a bad_base64 error points); the last four, as they
 * were (the padding decides the decoded size). Characters between the first
 * invalid one and those are decoded garbage: no check of the buffered path
 * reads them (the first invalid one decides). Printable ASCII on one line
 * either way, so lengths, lines and columns are the body's.
 */
static int fallback(api_body *b, const unsigned char *r, size_t base, size_t kk)
{
	char buf[256];
	size_t n = 0;

	if (put(b, "\"", 1))
		return -1;
	for (size_t pos = 0; pos < kk; pos++) {
		unsigned char c;
		if (r && pos >= base) {
			c = r[pos - base];
		} else if (pos + 4 >= base) {
			c = b->tail[4 - (base - pos)];
		} else if (pos == b->first_bad) {
			c = b->bad_char;
		} else {
			const unsigned char *g = b->arena + b->seg + pos / 4 * 3;
			uint32_t v = (uint32_t)g[0] << 16 | (uint32_t)g[1] << 8 | g[2];
			c = (unsigned char)b64chars[(v >> (18 - 6 * (pos % 4))) & 63];
		}
		buf[n++] = (char)c;
		if (n == sizeof buf) {
			if (put(b, buf, n))
				return -1;
			n = 0;
		}
	}
	if (put(b, buf, n))
		return -1;
	/* what was decoded stays reserved: an early loss (api_loss_early_step)
	 * may be reading it until the request ends */
	if (b->seg + b->groups * 3 + 4 > b->akeep)
		b->aused = b->akeep = b->seg + b->groups * 3 + 4;
	b->mode = S_STR;
	b->k = kk;
	b->esc = false;
	memcpy(b->key3, "\0\0\0", 3); /* >= 1024 characters: not a key of 3 */
	return 0;
}

/* The last 4 characters, after a run of n more at r. */
static void keep_tail(api_body *b, const unsigned char *r, size_t n)
{
	if (n >= 4) {
		memcpy(b->tail, r + n - 4, 4);
		return;
	}
	memmove(b->tail, b->tail + n, 4 - n);
	memcpy(b->tail + 4 - n, r, n);
}

/*
 * n characters at r of the string being decoded (no '"' among them).
 * Returns how many it took (n, or fewer when the string turned out to be
 * kept as text: the rest is then the caller's, in mode S_STR), or
 * SIZE_MAX when out of memory.
 */
static size_t decode_run(api_body *b, const unsigned char *r, size_t n)
{
	size_t base = b->k, i = 0;

	while (b->ncarry && i < n) {
		unsigned char c = r[i];
		if (!api__b64_alphabet(c) && note_bad(b, base + i, c))
			return fallback(b, r, base, base + i) ? SIZE_MAX : i;
		b->carry[b->ncarry++] = c;
		i++;
		if (b->ncarry == 4) {
			if (b->seg + b->groups * 3 + 4 > b->acap)
				return SIZE_MAX;
			api__b64_decode_groups(b->arena + b->seg + b->groups * 3, b->carry, 1);
			b->groups++;
			b->ncarry = 0;
		}
	}
	while (n - i >= 4) {
		size_t g = (n - i) / 4 < BLOCK ? (n - i) / 4 : BLOCK;
		if (b->seg + (b->groups + g) * 3 + 1 > b->acap)
			return SIZE_MAX;
		if (api__b64_decode_groups(b->arena + b->seg + b->groups * 3, r + i, g)) {
			for (size_t j = i; j < i + 4 * g; j++)
				if (!api__b64_alphabet(r[j]) && note_bad(b, base + j, r[j]))
					return fallback(b, r, base, base + j) ? SIZE_MAX : j;
		}
		b->groups += g;
		i += 4 * g;
	}
	for (; i < n; i++) {
		unsigned char c = r[i];
		if (!api__b64_alphabet(c) && note_bad(b, base + i, c))
			return fallback(b, r, base, base + i) ? SIZE_MAX : i;
		b->carry[b->ncarry++] = c;
	}
	b->k = base + n;
	keep_tail(b, r, n);
	return n;
}

/* The arena bytes this body has written, for api_body_held. */
static void touched(api_body *b)
{
	size_t t = b->seg + b->groups * 3 + 4;
	if (t > b->ahigh)
		b->ahigh = t;
}

/* The stash is full: from here the string is decoded as it comes. */
static int start_decoding(api_body *b)
{
	b->seg = (b->aused + 63) & ~(size_t)63;
	b->groups = 0;
	b->ncarry = 0;
	b->first_bad = NONE;
	b->mode = S_DECODE;
	if (b->seg + 64 > b->acap)
		return -1;
	b->k = 0;
	size_t took = decode_run(b, (const unsigned char *)b->stash, API__PACK_STR_MIN);
	touched(b);
	return took == SIZE_MAX ? -1 : 0; /* the stash holds no backslash: all taken */
}

/* The decoded string closed at body offset end (its '"' included). */
static int lifted(api_body *b, size_t end)
{
	size_t k = b->k, nbytes = NONE, bad = b->first_bad;
	char ph[40];

	if (k % 4 == 0) {
		nbytes = k / 4 * 3;
		if (b->tail[3] == '=')
			nbytes -= b->tail[2] == '=' ? 2 : 1;
		if (bad != NONE && b->bad_char == '=' &&
		    (bad == k - 1 || (bad == k - 2 && b->tail[3] == '=')))
			bad = NONE; /* padding */
		if (bad == NONE && b->tail[3] == '=')
			api__b64_decode(b->arena + b->seg + (k / 4 - 1) * 3, (const char *)b->tail,
			                4, NULL);
	}
	api__pack *p = api__pack_next(&b->packs, &b->pcap, b->npacks, 8);
	if (!p)
		return -1;
	p->decoded = b->arena + b->seg;
	p->size = (int64_t)k;
	p->nbytes = nbytes;
	p->bad_at = bad;
	p->body_start = b->start;
	p->body_end = end;
	p->skel_start = b->text.len;
	int phn = snprintf(ph, sizeof ph, "\"\\u0000%zu\"", b->npacks);
	if (put(b, ph, (size_t)phn))
		return -1;
	p->skel_end = b->text.len;
	b->npacks++;
	b->aused = b->akeep = b->seg + b->groups * 3 + 1;
	b->key_b64 = false;
	b->mode = S_OUT;
	return 0;
}

/* ---- number arrays ------------------------------------------------------------------ */

/*
 * An open array is a candidate while it holds only JSON numbers, or only
 * candidates closed with one same shape, within ENG_MAX_RANK dimensions:
 * what packed.c calls an ok array, judged on the array alone. Its numbers
 * go to the arena as they are read (parsed exactly as packed.c parses
 * them), its text is kept, and when it closes with at least API__PACK_MIN
 * values its text becomes a placeholder ["\u0000",K] (its children's
 * placeholders merged into it). Anything else in it (a string, an object,
 * a ragged row, a bad token, a full arena...) ends every open candidate:
 * from there they are text like any other array, and the placeholders of
 * rows that closed before stay. packed.c then takes each placeholder as
 * the array it stands for (sent_array), so the pass over the text lifts
 * what it would have lifted over the body: what is kept as text is the
 * body's own text, and a placeholder stands only for an array that the
 * pass takes whole wherever it meets it.
 */

static bool space(unsigned char c);

static bool numchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/* No open array can be lifted whole any more: they are text. */
static void cands_fail(api_body *b)
{
	b->ncand = 0;
	b->tok = NONE;
	b->aused = b->akeep;
	b->mode = S_OUT;
}

/* An array opens at s[i] (a candidate: the caller checked). */
static int cand_open(api_body *b, size_t i)
{
	if (!b->ncand) {
		b->aused = (b->aused + 63) & ~(size_t)63; /* it may be lifted whole */
		b->rows = 0;
	}
	cand *f = &b->cands[b->ncand++];
	f->start = b->sent + i;
	f->tstart = b->text.len;
	f->astart = b->aused;
	f->npacks = b->npacks;
	f->lines = b->lines;
	f->n = 0;
	f->rank = 0;
	f->kind = K_NONE;
	f->expect = E_FIRST;
	b->open[b->depth++] = 1;
	b->mode = S_ARR;
	return put(b, "[", 1);
}

/*
 * The number token read ends before c, at body offset at: 0 with its value
 * in the arena, or 1 when the candidates ended (c is then read as text).
 * Values are taken only while they and the text stay within the body read
 * (and HOLD_SLACK), and while those not yet in a lifted array stay within
 * HOLD_SLACK: short numbers ("0,1,", 8 bytes of value for 2 of text) and
 * long vectors (their text kept until they close) are text as they would
 * be buffered, never more memory than that and HOLD_SLACK of arena (which
 * api_body_held does not count: it is written over by the next values).
 */
static int cand_number(api_body *b, unsigned char c, size_t at)
{
	const unsigned char *t = (const unsigned char *)b->text.p + b->tok;
	size_t k = b->text.len - b->tok, e;
	cand *f = &b->cands[b->ncand - 1];
	double x;

	b->tok = NONE;
	if (api__json_number(t, 0, k, &x, &e) || e != k || !(c == ',' || c == ']' || space(c)) ||
	    b->aused + sizeof x > b->acap || b->aused + sizeof x - b->akeep > HOLD_SLACK ||
	    b->aused + sizeof x + b->text.len > at + HOLD_SLACK) {
		cands_fail(b);
		return 1;
	}
	memcpy(b->arena + b->aused, &x, sizeof x);
	b->aused += sizeof x;
	f->n++;
	f->kind = K_NUMBERS;
	f->expect = E_COMMA;
	return 0;
}

/* The candidate f closed at body offset end with these values: its text
 * (children's placeholders included) becomes one placeholder. */
static int cand_lift(api_body *b, const cand *f, int rank, const int64_t *shape, size_t size,
                     size_t end)
{
	char ph[40];

	b->text.len = f->tstart;
	b->text.p[b->text.len] = '\0';
	b->npacks = f->npacks;
	api__pack *p = api__pack_next(&b->packs, &b->pcap, b->npacks, 8);
	if (!p)
		return -1;
	p->values = (const double *)(const void *)(b->arena + f->astart);
	p->size = (int64_t)size;
	p->rank = rank;
	memcpy(p->shape, shape, (size_t)rank * sizeof *shape);
	p->body_start = f->start;
	p->body_end = end;
	p->lines = b->lines - f->lines;
	p->last_col = p->lines ? end - (b->last_nl + 1) : 0;
	p->skel_start = b->text.len;
	int phn = snprintf(ph, sizeof ph, "[\"\\u0000\",%zu]", b->npacks);
	if (put(b, ph, (size_t)phn))
		return -1;
	p->skel_end = b->text.len;
	b->npacks++;
	b->akeep = b->aused;
	if (b->akeep > b->vhigh)
		b->vhigh = b->akeep;
	return 0;
}

/* The top candidate closes at s[i] (a ']' after a value). */
static int cand_close(api_body *b, size_t i)
{
	cand f = b->cands[--b->ncand];
	int64_t shape[ENG_MAX_RANK];
	int rank = f.kind == K_ARRAYS ? f.rank + 1 : 1;
	size_t size = (b->aused - f.astart) / sizeof(double);

	shape[0] = f.n;
	if (f.kind == K_ARRAYS)
		memcpy(shape + 1, f.shape, (size_t)f.rank * sizeof *shape);
	b->depth--;
	if (put(b, "]", 1))
		return -1;
	if (size >= API__PACK_MIN && cand_lift(b, &f, rank, shape, size, b->sent + i + 1))
		return -1;
	if (!b->ncand) {
		b->aused = b->akeep; /* lifted, or its values are not needed */
		b->mode = S_OUT;
		return 0;
	}
	cand *p = &b->cands[b->ncand - 1];
	if (p->kind == K_ARRAYS &&
	    (p->rank != rank || memcmp(p->shape, shape, (size_t)rank * sizeof *shape))) {
		cands_fail(b); /* ragged */
		return 0;
	}
	p->kind = K_ARRAYS;
	p->rank = rank;
	memcpy(p->shape, shape, (size_t)rank * sizeof *shape);
	p->n++;
	p->expect = E_COMMA;
	/* a row of the outermost candidate, lifted (so akeep covers it) and of
	 * its siblings' shape: its values are final (the file-top comment) */
	if (b->ncand == 1 && size >= API__PACK_MIN)
		b->rows = b->aused - p->astart;
	return 0;
}

/* Reads s[i, n) while there are candidates: the offset it stopped at (the
 * end, or a byte to read as text), or SIZE_MAX when out of memory. */
static size_t cand_run(api_body *b, const unsigned char *s, size_t i, size_t n)
{
	while (i < n && b->ncand) {
		cand *f = &b->cands[b->ncand - 1];
		unsigned char c = s[i];
		if (b->tok != NONE) {
			size_t j = i;
			while (j < n && numchar(s[j]))
				j++;
			if (j > i && put(b, s + i, j - i))
				return SIZE_MAX;
			i = j;
			if (i == n || cand_number(b, s[i], b->sent + i))
				continue;
			c = s[i];
		}
		switch (c) {
		case ' ':
		case '\t':
		case '\r':
		case '\n': {
			size_t j = i;
			for (; j < n && space(s[j]); j++) {
				if (s[j] == '\n') {
					b->lines++;
					b->last_nl = b->sent + j;
				}
			}
			if (put(b, s + i, j - i))
				return SIZE_MAX;
			i = j;
			break;
		}
		case ',':
			if (f->expect != E_COMMA) {
				cands_fail(b);
				break;
			}
			f->expect = E_NEXT;
			if (put(b, s + i, 1))
				return SIZE_MAX;
			i++;
			break;
		case '[':
			if (f->kind == K_NUMBERS || f->expect == E_COMMA || b->ncand == MAX_CANDS ||
			    b->depth + 1 >= b->max_frames) {
				cands_fail(b);
				break;
			}
			if (cand_open(b, i))
				return SIZE_MAX;
			i++;
			break;
		case ']':
			if (f->expect != E_COMMA ||
			    (f->kind == K_ARRAYS && f->rank == ENG_MAX_RANK)) {
				cands_fail(b); /* [], [1,] or too many dimensions */
				break;
			}
			if (cand_close(b, i))
				return SIZE_MAX;
			i++;
			break;
		default:
			if ((c == '-' || (c >= '0' && c <= '9')) && f->expect != E_COMMA &&
			    f->kind != K_ARRAYS) {
				b->tok = b->text.len;
				break;
			}
			cands_fail(b);
			break;
		}
	}
	return i;
}

/* ---- the scan ----------------------------------------------------------------------- */

/* Bytes that change nothing outside a string but b64_value (all but these). */
static bool structural(unsigned char c)
{
	return c == '"' || c == ':' || c == '[' || c == ']' || c == '{' || c == '}';
}

static bool space(unsigned char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* A string kept as text ended: it may be the next key. */
static void key_end(api_body *b)
{
	b->key_b64 = !b->esc && b->k == 3 && memcmp(b->key3, "b64", 3) == 0;
}

int api_body_feed(api_body *b, const char *data, size_t n)
{
	const unsigned char *s = (const unsigned char *)data;
	size_t i = 0;

	if (n > b->max_len - b->sent)
		return -1;
	while (i < n) {
		unsigned char c = s[i];
		switch (b->mode) {
		case S_OUT: {
			if (b->stopped) {
				if (put(b, s + i, n - i))
					return -1;
				i = n;
				break;
			}
			size_t j = i;
			bool any = false;
			while (j < n && !structural(s[j])) {
				any |= !space(s[j]);
				j++;
			}
			if (any)
				b->b64_value = false;
			if (j > i && put(b, s + i, j - i))
				return -1;
			if (j == n) {
				i = n;
				break;
			}
			c = s[j];
			i = j + 1;
			bool was_b64 = b->b64_value;
			b->b64_value = false;
			if (c == '"') {
				b->start = b->sent + j;
				b->k = 0;
				b->esc = false;
				memset(b->key3, 0, sizeof b->key3);
				if (was_b64 && b->acap && b->depth > 0 && !b->open[b->depth - 1]) {
					b->mode = S_STASH;
					break;
				}
				b->mode = S_STR;
			} else if (c == ':') {
				b->b64_value = b->key_b64;
				b->key_b64 = false;
			} else if (c == '[' && b->acap && b->depth + 1 < b->max_frames) {
				if (cand_open(b, j))
					return -1;
				break;
			} else if (c == '[' || c == '{') {
				if (b->depth == b->max_frames)
					b->stopped = true;
				else
					b->open[b->depth++] = c == '[';
			} else if (b->depth == 0 || b->open[b->depth - 1] != (c == ']')) {
				b->stopped = true; /* closes what is not open */
			} else {
				b->depth--;
			}
			if (put(b, &c, 1))
				return -1;
			break;
		}
		case S_STR: {
			size_t j = i;
			while (j < n && s[j] != '"' && s[j] != '\\') {
				if (b->k < 3)
					b->key3[b->k] = (char)s[j];
				b->k++;
				j++;
			}
			if (j > i && put(b, s + i, j - i))
				return -1;
			i = j;
			if (j == n)
				break;
			if (put(b, s + j, 1))
				return -1;
			i++;
			if (s[j] == '\\') {
				b->esc = true;
				b->k++;
				b->mode = S_ESC;
			} else {
				key_end(b);
				b->mode = S_OUT;
			}
			break;
		}
		case S_ESC:
			if (put(b, &c, 1))
				return -1;
			b->k++;
			i++;
			b->mode = S_STR;
			break;
		case S_STASH:
			if (c == '"' || c == '\\' || c < 0x20 || c > 0x7e) {
				/* short, or not liftable: kept as text */
				size_t k = b->k;
				if (put(b, "\"", 1) || put(b, b->stash, k))
					return -1;
				memcpy(b->key3, b->stash, k < 3 ? k : 3);
				b->mode = S_STR;
				break; /* c again, as text */
			}
			b->stash[b->k++] = (char)c;
			i++;
			if (b->k == API__PACK_STR_MIN && start_decoding(b))
				return -1;
			break;
		case S_ARR:
			i = cand_run(b, s, i, n);
			if (i == SIZE_MAX)
				return -1;
			break;
		case S_DECODE: {
			const unsigned char *q = memchr(s + i, '"', n - i);
			size_t run = (q ? (size_t)(q - s) : n) - i;
			size_t took = decode_run(b, s + i, run);
			touched(b);
			if (took == SIZE_MAX)
				return -1;
			i += took;
			if (took < run || !q)
				break; /* kept as text from s[i] on (S_STR), or more to come */
			i++;           /* the closing '"' */
			if (lifted(b, b->sent + i))
				return -1;
			break;
		}
		}
	}
	b->sent += n;
	return 0;
}

/* The body has ended: a string still open is kept as text. */
static int finish(api_body *b)
{
	if (b->mode == S_STASH) {
		if (put(b, "\"", 1) || put(b, b->stash, b->k))
			return -1;
	} else if (b->mode == S_DECODE) {
		if (fallback(b, NULL, b->k, b->k))
			return -1;
	}
	b->ncand = 0; /* open arrays: text */
	b->mode = S_OUT;
	return api_dynbuf_error(&b->text) ? -1 : 0;
}

json_t *api__body_parse(const api_ctx *ctx, api_body *b, api_packed **packed, api_problem *p)
{
	api_packed *sp = NULL;

	*packed = NULL;
	if (finish(b)) {
		api_problem_set(p, 503, "out_of_memory", "",
		                "out of memory while parsing the body");
		return NULL;
	}
	if (b->npacks) {
		sp = api__malloc(sizeof *sp);
		if (!sp) {
			api_problem_set(p, 503, "out_of_memory", "",
			                "out of memory while parsing the body");
			return NULL;
		}
		memset(sp, 0, sizeof *sp);
		sp->packs = b->packs;
		sp->n = sp->nstream = b->npacks;
		sp->cap = b->pcap;
		b->packs = NULL; /* the table's now */
		b->npacks = b->pcap = 0;
	}
	return api__parse_sent(ctx, api_dynbuf_ptr(&b->text), api_dynbuf_len(&b->text), sp, b->sent,
	                       packed, p);
}
