/*
 * packed.c - lifting number arrays and base64 strings out of a request
 * body before jansson parses it.
 *
 * Why: jansson spends a 24-byte json_t plus an array slot on every number
 * (about 40 bytes of heap for 2 bytes of "0,"), parses each with strtod,
 * and copies every string through a growing buffer (70-90 MB/s for a
 * megabyte of base64). A request is mostly tensors, so one pass over the
 * raw bytes takes them out first: the values of every rectangular nest of
 * JSON numbers go straight into one float64 arena (8 bytes a number), the
 * long strings of "b64" keys stay where they are in the body, and jansson
 * parses what is left: a skeleton where each lifted value is a placeholder
 * (packed.h). The tensors' decoding then reads the arena and the body.
 *
 * How: a stack of open arrays and objects. An array stays "ok" while it
 * holds only numbers, or only ok arrays of one same shape, within
 * ENG_MAX_RANK dimensions and with JSON's syntax; a number in an ok array
 * is parsed into the arena as it is met. An ok array that closes inside
 * an object (or a failed array, or at the top) is lifted when it has at
 * least API__PACK_MIN values. When an ok array fails (a string, an object,
 * a ragged row, a bad token...), every ok array around it fails too, and
 * the pass resumes just inside the outermost of them with the arena cut
 * back to where that one began: its rows are then lifted one by one, and
 * the rest is left to jansson. A chain of ok arrays nested deeper than
 * ENG_MAX_RANK fails as it opens, so a byte is read at most ENG_MAX_RANK + 2
 * times: a resumed array is never ok again, and each resumption peels one
 * array off a chain of at most ENG_MAX_RANK.
 *
 * Numbers: exactly jansson's grammar and values. An integer token (no
 * fraction, no exponent) must fit int64 and becomes (double)int64 ("-0" is
 * +0.0, as jansson's json_integer 0); a real is correctly rounded
 * (Clinger's fast path: a mantissa below 2^53 times or divided by an exact
 * power of ten up to 1e22 is one rounding; anything else goes to strtod,
 * which is correctly rounded in glibc). A token jansson would refuse
 * (leading zeros, "1.", an integer past int64, a real that overflows) just
 * fails its array, so the error reply is jansson's own.
 *
 * Invariants: lifted spans are disjoint, in body order, and each is valid
 * JSON; the skeleton is never longer than the body (a placeholder is at
 * most 31 bytes, a lifted value at least 33) but by 19 bytes per array of
 * body.c's that it copies; the arena is sized once from
 * the pre-pass count and never moves, so packs point into it for good;
 * each lifted array starts on a 64-byte boundary, as decoded tensors do.
 *
 * Arrays body.c lifted as they arrived: the text it hands over holds a
 * placeholder for each (a rectangular nest of numbers, already parsed).
 * The pass takes one as it would the array's own text (sent_array): a
 * child of its shape in an ok array (values copied), lifted whole
 * elsewhere, failing a chain it would make deeper than ENG_MAX_RANK. So
 * what is lifted, and what is left to jansson, is what it would be over
 * the body.
 *
 * It does not judge the JSON: bodies it cannot make sense of (a ']'
 * closing an object...) are copied to the skeleton as they are from there
 * on, and jansson reports them.
 */
#include "packed.h"
#include "mem.h"
#include "pow10.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_NONE, KIND_NUMBERS, KIND_ARRAYS };
enum { EXPECT_FIRST, EXPECT_COMMA, EXPECT_NEXT }; /* after '[', a value, a ',' */

typedef struct frame {
	size_t start;       /* offset of its '[' or '{' */
	size_t arena_start; /* arena length when it opened */
	int64_t n;          /* elements so far (ok arrays) */
	int rank;           /* of each child (kind KIND_ARRAYS) */
	unsigned char array, ok, kind, expect;
	unsigned char chain;         /* ok arrays from the outermost of its chain to it */
	int64_t shape[ENG_MAX_RANK]; /* each child's shape */
} frame;

typedef struct lifter {
	const unsigned char *s;
	size_t len;
	frame *fr;
	int depth, max_frames;
	size_t alen, acap; /* arena use and size, in values */
	api_packed *pk;
	char *skel;
	size_t slen;   /* skeleton bytes written */
	size_t copied; /* body bytes [0, copied) are in the skeleton */
	size_t next;   /* the given table's next pack (body.c's, in text order) */
	size_t nstream;
} lifter;

/* ---- strings ------------------------------------------------------------------------ */

size_t api__string_end(const unsigned char *s, size_t i, size_t n, bool *esc, bool *nul)
{
	size_t j = i + 1, q = i; /* q: the next '"' at or after j, once found */
	for (;;) {
		if (q < j) {
			const unsigned char *f = j < n ? memchr(s + j, '"', n - j) : NULL;
			if (!f)
				return n;
			q = (size_t)(f - s);
		}
		const unsigned char *b = memchr(s + j, '\\', q - j);
		if (!b)
			return q;
		j = (size_t)(b - s);
		*esc = true;
		if (j + 5 < n && s[j + 1] == 'u' && memcmp(s + j + 2, "0000", 4) == 0)
			*nul = true;
		j += 2; /* the backslash and what it escapes */
		if (j > n)
			return n;
	}
}

/* Printable ASCII only: what a lifted string may hold (jansson validates the rest). */
static bool plain_ascii(const unsigned char *s, size_t n)
{
	unsigned bad = 0;
	for (size_t i = 0; i < n; i++)
		bad |= (unsigned)(s[i] < 0x20) | (unsigned)(s[i] > 0x7e);
	return !bad;
}

/* ---- numbers ------------------------------------------------------------------------ */

typedef unsigned __int128 u128;

/*
 * m / 10^k correctly rounded (half to even), for 1 <= m < 2^64 and
 * 1 <= k <= 22: m shifted to the top of 128 bits, divided by 10^k (< 2^74)
 * leaves a quotient of at least 54 bits and an exact remainder, so rounding
 * it to 53 bits sees every bit it needs. The result is >= 1e-22: normal.
 */
static double div_pow10(uint64_t m, int k)
{
	int z = __builtin_clzll(m);
	u128 d = k < 20 ? (u128)api__pow10_u64[k]
	                : (u128)api__pow10_u64[19] * api__pow10_u64[k - 19];
	u128 num = (u128)(m << z) << 64;
	u128 q = num / d;
	bool sticky = num - q * d != 0;
	int bits = 128 - (q >> 64 ? __builtin_clzll((uint64_t)(q >> 64))
	                          : 64 + __builtin_clzll((uint64_t)q));
	int r = bits - 53; /* >= 1 */
	uint64_t mant = (uint64_t)(q >> r);
	u128 low = q & (((u128)1 << r) - 1), half = (u128)1 << (r - 1);
	if (low > half || (low == half && (sticky || (mant & 1))))
		mant++;
	return ldexp((double)mant, r - 64 - z); /* mant == 2^53 is exact too */
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* Whether c may follow a number inside an array. */
static inline bool ends_number(unsigned char c)
{
	return c == ',' || c == ']' || c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int api__json_number(const unsigned char *s, size_t i, size_t n, double *x, size_t *end)
{
	size_t j = i;
	bool neg = false, real = false, exact = true;
	uint64_t m = 0;
	int nd = 0;        /* digits in m, leading zeros not counted */
	int64_t scale = 0; /* value = m * 10^(scale + exp) */

	if (s[j] == '-' && ++j == n)
		return -1;
	neg = s[i] == '-';
	if (s[j] == '0') {
		j++;
	} else if (s[j] >= '1' && s[j] <= '9') {
		for (; j < n && is_digit(s[j]); j++) {
			if (nd < 19) {
				m = m * 10 + (uint64_t)(s[j] - '0');
				nd++;
			} else {
				scale++;
				exact = false;
			}
		}
	} else {
		return -1;
	}
	if (j < n && s[j] == '.') {
		real = true;
		size_t f = ++j;
		for (; j < n && is_digit(s[j]); j++) {
			if (nd < 19) {
				m = m * 10 + (uint64_t)(s[j] - '0');
				nd += m != 0;
				scale--;
			} else if (s[j] != '0') {
				exact = false;
			}
		}
		if (j == f)
			return -1;
	}
	if (j < n && (s[j] == 'e' || s[j] == 'E')) {
		real = true;
		bool eneg = false;
		int64_t e = 0;
		if (++j < n && (s[j] == '+' || s[j] == '-'))
			eneg = s[j++] == '-';
		size_t f = j;
		for (; j < n && is_digit(s[j]); j++)
			if (e < 1000000)
				e = e * 10 + (s[j] - '0');
		if (j == f)
			return -1;
		scale += eneg ? -e : e;
	}
	if (j < n && !ends_number(s[j]))
		return -1;
	*end = j;

	if (!real) {
		/* jansson: strtoll, "too big integer" past int64 */
		if (!exact || m > (uint64_t)INT64_MAX + neg)
			return -1;
		int64_t v = neg ? (int64_t)(0 - m) : (int64_t)m;
		*x = (double)v;
		return 0;
	}
	if (m == 0) {
		*x = neg ? -0.0 : 0.0;
		return 0;
	}
	if (exact && m <= ((uint64_t)1 << 53) && scale >= -22 && scale <= 22) {
		double v = (double)m;
		v = scale < 0 ? v / api__pow10_f64[-scale] : v * api__pow10_f64[scale];
		*x = neg ? -v : v;
		return 0;
	}
	if (exact && scale >= -22 && scale <= 19) {
		/* 16 to 19 digits (what Python and numpy print): exact in 128 bits */
		double v = scale >= 0 ? (double)((u128)m * api__pow10_u64[scale])
		                      : div_pow10(m, (int)-scale);
		*x = neg ? -v : v;
		return 0;
	}
	/* strtod needs a terminated copy; lossd never calls setlocale, so '.'. */
	char small[64], *buf = small;
	size_t k = j - i;
	if (k >= sizeof small && !(buf = api__malloc(k + 1)))
		return -1;
	memcpy(buf, s + i, k);
	buf[k] = '\0';
	double v = strtod(buf, NULL);
	if (buf != small)
		api__free(buf);
	if (isinf(v))
		return -1; /* jansson: "real number overflow" */
	*x = v;
	return 0;
}

/* ---- the skeleton ------------------------------------------------------------------- */

static int add_pack(lifter *L, size_t start, size_t end, const api__pack *tmpl)
{
	api_packed *pk = L->pk;
	char ph[40];
	int phn;

	api__pack *p = api__pack_next(&pk->packs, &pk->cap, pk->n, 16);
	if (!p)
		return -1;
	/* a placeholder of body.c's copied may grow by up to 19 bytes */
	if (!L->skel && !(L->skel = api__malloc(L->len + 1 + 19 * L->nstream)))
		return -1;
	if (tmpl->rank)
		phn = snprintf(ph, sizeof ph, "[\"\\u0000\",%zu]", pk->n);
	else
		phn = snprintf(ph, sizeof ph, "\"\\u0000%zu\"", pk->n);
	memcpy(L->skel + L->slen, L->s + L->copied, start - L->copied);
	L->slen += start - L->copied;
	pk->n++;
	*p = *tmpl;
	p->body_start = start;
	p->body_end = end;
	p->skel_start = L->slen;
	memcpy(L->skel + L->slen, ph, (size_t)phn);
	L->slen += (size_t)phn;
	p->skel_end = L->slen;
	L->copied = end;
	return 0;
}

/* ---- arrays ------------------------------------------------------------------------- */

/* The top frame (an ok array) fails, and every ok array around it: resumes
 * just inside the outermost of them. Returns the offset to go on from. */
static size_t fail(lifter *L)
{
	int g = L->depth - 1;
	while (g > 0 && L->fr[g - 1].array && L->fr[g - 1].ok)
		g--;
	frame *f = &L->fr[g];
	f->ok = 0;
	L->depth = g + 1;
	L->alen = f->arena_start;
	return f->start + 1;
}

/* The top frame, an ok array holding n >= 1 elements, closes at offset i.
 * Returns the offset to go on from, or SIZE_MAX when out of memory. */
static size_t close_ok(lifter *L, size_t i)
{
	frame *f = &L->fr[L->depth - 1];
	api__pack t;

	memset(&t, 0, sizeof t);
	if (f->kind == KIND_ARRAYS && f->rank == ENG_MAX_RANK)
		return fail(L);
	t.rank = f->kind == KIND_ARRAYS ? f->rank + 1 : 1;
	t.shape[0] = f->n;
	if (f->kind == KIND_ARRAYS)
		memcpy(t.shape + 1, f->shape, (size_t)f->rank * sizeof t.shape[0]);
	size_t start = f->start, astart = f->arena_start;
	L->depth--;

	frame *p = L->depth ? &L->fr[L->depth - 1] : NULL;
	if (p && p->array && p->ok) {
		/* '[' was only taken where p expected a value and held no number */
		if (p->kind == KIND_ARRAYS &&
		    (p->rank != t.rank ||
		     memcmp(p->shape, t.shape, (size_t)t.rank * sizeof t.shape[0])))
			return fail(L);
		p->kind = KIND_ARRAYS;
		p->rank = t.rank;
		memcpy(p->shape, t.shape, (size_t)t.rank * sizeof t.shape[0]);
		p->n++;
		p->expect = EXPECT_COMMA;
		return i + 1;
	}
	t.size = (int64_t)(L->alen - astart);
	if (t.size < API__PACK_MIN) {
		L->alen = astart; /* left in the skeleton: its values are not needed */
		return i + 1;
	}
	t.values = L->pk->arena + astart;
	if (add_pack(L, start, i + 1, &t))
		return SIZE_MAX;
	return i + 1;
}

/* ---- arrays body.c lifted as they arrived --------------------------------------------- */

#define STOP (SIZE_MAX - 1) /* what api__lift would stop at: the rest is copied */

/* The given table's array whose placeholder starts at text offset i, or NULL. */
static const api__pack *sent_at(const lifter *L, size_t i)
{
	size_t lo = 0, hi = L->nstream;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (L->pk->packs[mid].skel_start < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < L->nstream && L->pk->packs[lo].skel_start == i && L->pk->packs[lo].rank)
		return &L->pk->packs[lo];
	return NULL;
}

/*
 * The placeholder at i of an array body.c lifted as it arrived (always a
 * rectangular nest of at least API__PACK_MIN numbers): taken as the pass
 * would take the array's own text. In an ok array it is a child of its
 * shape (its values copied after the others); elsewhere it is lifted whole,
 * where it is when 64-byte aligned, else copied. Its nesting is what the
 * array's '[' would nest, so the chain and depth limits see it the same.
 * Returns the offset to go on from, SIZE_MAX when out of memory, or STOP.
 */
static size_t sent_array(lifter *L, const api__pack *mp, size_t i)
{
	api__pack m = *mp; /* add_pack may move the table */
	frame *top = L->depth ? &L->fr[L->depth - 1] : NULL;
	bool in_ok = top && top->array && top->ok;
	size_t end = m.skel_end;

	if (in_ok && (top->kind == KIND_NUMBERS || top->expect == EXPECT_COMMA ||
	              top->chain + m.rank > ENG_MAX_RANK || m.pending))
		return fail(L); /* (a pending array's values are not there yet) */
	if (L->depth + m.rank > L->max_frames)
		return STOP;
	if (in_ok) {
		if ((top->kind == KIND_ARRAYS &&
		     (top->rank != m.rank ||
		      memcmp(top->shape, m.shape, (size_t)m.rank * sizeof m.shape[0]))) ||
		    L->alen + (size_t)m.size > L->acap)
			return fail(L);
		memcpy(L->pk->arena + L->alen, m.values, (size_t)m.size * sizeof(double));
		L->alen += (size_t)m.size;
		top->kind = KIND_ARRAYS;
		top->rank = m.rank;
		memcpy(top->shape, m.shape, (size_t)m.rank * sizeof m.shape[0]);
		top->n++;
		top->expect = EXPECT_COMMA;
		return end;
	}
	L->alen = (L->alen + 7) & ~(size_t)7;
	if (((uintptr_t)m.values & 63) == 0 || m.pending || L->alen + (size_t)m.size > L->acap)
		return end; /* lifted where it is */
	memcpy(L->pk->arena + L->alen, m.values, (size_t)m.size * sizeof(double));
	m.values = L->pk->arena + L->alen;
	L->alen += (size_t)m.size;
	return add_pack(L, i, end, &m) ? SIZE_MAX : end;
}

/* ---- the pass ----------------------------------------------------------------------- */

static int run(lifter *L)
{
	const unsigned char *s = L->s;
	size_t n = L->len, i = 0;
	size_t key = 0, key_len = SIZE_MAX; /* the last string, a key if ':' follows */
	bool b64_value = false;             /* the next value is that of a "b64" key */

	while (i < n) {
		unsigned char c = s[i];
		frame *top = L->depth ? &L->fr[L->depth - 1] : NULL;
		bool in_ok = top && top->array && top->ok;

		if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
			i++;
			continue;
		}
		bool was_b64 = b64_value;
		b64_value = false;
		switch (c) {
		case '[': {
			const api__pack *m = L->nstream ? sent_at(L, i) : NULL;
			if (m) {
				i = sent_array(L, m, i);
				if (i == SIZE_MAX)
					return -1;
				if (i == STOP)
					return 1;
				break;
			}
			/* A chain of ok arrays deeper than a tensor's rank can
			 * never be lifted whole: failed at once, so that a deep
			 * nest with a stray token at every level is rescanned
			 * at most ENG_MAX_RANK + 1 times, not once per level. */
			if (in_ok && (top->kind == KIND_NUMBERS || top->expect == EXPECT_COMMA ||
			              top->chain >= ENG_MAX_RANK)) {
				i = fail(L);
				break;
			}
			if (L->depth == L->max_frames)
				return 1;
			if (!in_ok) /* it may be lifted whole: 64-byte aligned */
				L->alen = (L->alen + 7) & ~(size_t)7;
			L->fr[L->depth++] =
			        (frame){.start = i,
			                .arena_start = L->alen,
			                .array = 1,
			                .ok = 1,
			                .kind = KIND_NONE,
			                .expect = EXPECT_FIRST,
			                .chain = (unsigned char)(in_ok ? top->chain + 1 : 1)};
			i++;
			break;
		}
		case '{':
			if (in_ok) {
				i = fail(L);
				break;
			}
			if (L->depth == L->max_frames)
				return 1;
			L->fr[L->depth++] = (frame){.start = i, .arena_start = L->alen};
			i++;
			break;
		case ']':
			if (!top || !top->array)
				return 1;
			if (!top->ok) {
				L->depth--;
				i++;
			} else if (top->expect != EXPECT_COMMA) {
				i = fail(L); /* [] or a trailing comma */
			} else if ((i = close_ok(L, i)) == SIZE_MAX) {
				return -1;
			}
			break;
		case '}':
			if (!top || top->array)
				return 1;
			L->depth--;
			i++;
			break;
		case ',':
			if (in_ok) {
				if (top->expect != EXPECT_COMMA) {
					i = fail(L);
					break;
				}
				top->expect = EXPECT_NEXT;
			}
			i++;
			break;
		case ':':
			if (in_ok) { /* no ':' in an array: jansson's to report */
				i = fail(L);
				break;
			}
			b64_value = key_len == 3 && memcmp(s + key, "b64", 3) == 0;
			key_len = SIZE_MAX;
			i++;
			break;
		case '"': {
			if (in_ok) {
				i = fail(L);
				break;
			}
			bool esc = false, nul = false;
			size_t e = api__string_end(s, i, n, &esc, &nul);
			if (e >= n)
				return 1;
			size_t slen = e - i - 1;
			if (was_b64 && top && !top->array && !esc && slen >= API__PACK_STR_MIN &&
			    plain_ascii(s + i + 1, slen)) {
				api__pack t;
				memset(&t, 0, sizeof t);
				t.str = (const char *)s + i + 1;
				t.size = (int64_t)slen;
				if (add_pack(L, i, e + 1, &t))
					return -1;
				key_len = SIZE_MAX;
			} else {
				key = i + 1;
				key_len = esc ? SIZE_MAX : slen;
			}
			i = e + 1;
			break;
		}
		case '-':
		case '0':
		case '1':
		case '2':
		case '3':
		case '4':
		case '5':
		case '6':
		case '7':
		case '8':
		case '9':
			if (in_ok) {
				double x;
				size_t e;
				if (top->expect == EXPECT_COMMA || top->kind == KIND_ARRAYS ||
				    L->alen >= L->acap || api__json_number(s, i, n, &x, &e)) {
					i = fail(L);
					break;
				}
				L->pk->arena[L->alen++] = x;
				top->kind = KIND_NUMBERS;
				top->n++;
				top->expect = EXPECT_COMMA;
				i = e;
				break;
			}
			while (i < n && (is_digit(s[i]) || s[i] == '-' || s[i] == '+' ||
			                 s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
				i++;
			break;
		default:
			/* literals and stray bytes: not in an ok array, jansson judges them */
			if (in_ok) {
				i = fail(L);
				break;
			}
			i++;
			break;
		}
	}
	return 0;
}

int api__lift(api_packed **out, char **skel, size_t *skel_len, const char *body, size_t len,
              int64_t numbers, int max_depth)
{
	lifter L;
	int rc = -1;

	api_packed *given = *out;
	size_t n0 = given ? given->n : 0;

	*skel = NULL;
	*skel_len = 0;
	memset(&L, 0, sizeof L);
	L.s = (const unsigned char *)body;
	L.len = len;
	L.max_frames = max_depth > 0 ? max_depth + 1 : 1;
	L.nstream = given ? given->nstream : 0;
	/* every number, and up to 7 values of padding after each lifted
	 * array (>= API__PACK_MIN values) to align the next one */
	L.acap = numbers >= API__PACK_MIN ? (size_t)numbers + (size_t)numbers / 2 + 8 : 0;
	if (!L.acap && len < API__PACK_STR_MIN)
		return 0; /* nothing could be lifted */
	L.pk = given ? given : api__malloc(sizeof *L.pk);
	L.fr = api__malloc((size_t)L.max_frames * sizeof *L.fr);
	if (!L.pk || !L.fr)
		goto out;
	if (!given)
		memset(L.pk, 0, sizeof *L.pk);
	/* malloc'd, not touched: only the values written cost memory */
	if (L.acap && !(L.pk->arena = api__aligned_alloc(64, L.acap * sizeof(double))))
		goto out; /* (a given table has no arena: body.c's values are in its own) */
	int r = run(&L);
	if (r < 0)
		goto out;
	rc = 0;
	if (L.pk->n == n0)
		goto out; /* nothing lifted: the body parses as it is */
	memcpy(L.skel + L.slen, body + L.copied, len - L.copied);
	L.slen += len - L.copied;
	L.skel[L.slen] = '\0';
	*out = L.pk;
	*skel = L.skel;
	*skel_len = L.slen;
	L.pk = NULL;
	L.skel = NULL;
out:
	api__free(L.fr);
	api__free(L.skel);
	if (L.pk != given)
		api_packed_free(L.pk);
	return rc;
}

void api_packed_free(api_packed *pk)
{
	if (!pk)
		return;
	api__free(pk->arena);
	api__free(pk->packs);
	api__free(pk);
}

/* ---- lookups ------------------------------------------------------------------------ */

api__pack *api__pack_next(api__pack **packs, size_t *cap, size_t n, size_t first)
{
	if (n == *cap) {
		size_t c = *cap ? *cap * 2 : first;
		api__pack *np = api__realloc(*packs, c * sizeof *np);
		if (!np)
			return NULL;
		*packs = np;
		*cap = c;
	}
	memset(&(*packs)[n], 0, sizeof **packs);
	return &(*packs)[n];
}

const api__pack *api__packed_array(const api_packed *pk, const json_t *v)
{
	if (!pk || !json_is_array(v) || json_array_size(v) != 2)
		return NULL;
	const json_t *tag = json_array_get(v, 0), *k = json_array_get(v, 1);
	if (!json_is_string(tag) || json_string_length(tag) != 1 ||
	    json_string_value(tag)[0] != '\0' || !json_is_integer(k))
		return NULL;
	json_int_t i = json_integer_value(k);
	if (i < 0 || (size_t)i >= pk->n || pk->packs[i].rank == 0)
		return NULL;
	return &pk->packs[i];
}

const api__pack *api__packed_string(const api_packed *pk, const json_t *v)
{
	if (!pk || !json_is_string(v) || json_string_length(v) < 2 || json_string_value(v)[0])
		return NULL;
	const char *d = json_string_value(v) + 1;
	size_t i = 0;
	for (; *d; d++) {
		if (!is_digit((unsigned char)*d) || i > pk->n)
			return NULL;
		i = i * 10 + (size_t)(*d - '0');
	}
	if (i >= pk->n || pk->packs[i].rank != 0)
		return NULL;
	return &pk->packs[i];
}

/* skel_pos through packs[from, to): the offset of that byte before they were lifted. */
static size_t unshift(const api_packed *pk, size_t from, size_t to, size_t skel_pos)
{
	size_t shift_from = 0, shift_to = 0; /* skel_pos - shift_from + shift_to */
	for (size_t k = from; k < to && pk->packs[k].skel_end <= skel_pos; k++) {
		shift_from = pk->packs[k].skel_end;
		shift_to = pk->packs[k].body_end;
	}
	return skel_pos - shift_from + shift_to;
}

size_t api__packed_body_pos(const api_packed *pk, size_t skel_pos)
{
	if (!pk)
		return skel_pos;
	/* api__lift's own lifts, then those body.c made before it ran */
	return unshift(pk, 0, pk->nstream, unshift(pk, pk->nstream, pk->n, skel_pos));
}
