/*
 * bytes.h - engine-private little-endian encoding of serialized state: the
 * one byte writer and reader of the stream codec (stream_codec.c) and the
 * binned and sketch codecs (binned.c, sketch.c).
 *
 * Two levels. The eng__put_* / eng__get_* primitives encode at a pointer
 * the caller has already bounded (bulk arrays, headers, the checksum).
 * Everything else goes through a cursor:
 *
 *   eng__writer  grows a heap buffer as values are appended (doubling). A
 *                failed allocation sets `fail`, which sticks: later puts do
 *                nothing, and eng__writer_finish reports ENG_ENOMEM once.
 *   eng__reader  walks a borrowed buffer. A get past the end sets `fail`,
 *                which sticks, and returns 0; so a codec reads a whole
 *                section, then checks `fail` once, and never reads a byte
 *                past its end, whatever the bytes say.
 *
 * Lengths that come from the bytes are checked against what is left
 * (eng__reader_take) before anything is allocated for them, so a forged
 * length costs a refusal, not an allocation.
 *
 * Varints (the compact sketch format, sketch.c): an unsigned 64-bit value
 * in 7-bit groups, least significant first, the high bit of a byte saying
 * another follows (LEB128), 1 to 10 bytes. The reader takes only the one
 * shortest encoding of each value (no trailing zero group, no bits past
 * the 64th), so equal values always have equal bytes.
 */
#ifndef LOSSD_ENGINE_BYTES_H
#define LOSSD_ENGINE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/eng.h"

static inline void eng__put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void eng__put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void eng__put_f64(uint8_t *p, double x)
{
	uint64_t v;
	memcpy(&v, &x, sizeof(v));
	eng__put_u64(p, v);
}

/* ENG__LE: the host stores integers and doubles little-endian, as the
 * format does, so a field is one unaligned load (memcpy) and an array of
 * them is one memcpy; elsewhere bytes are assembled one by one. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ENG__LE 1
#else
#define ENG__LE 0
#endif

/*
 * The varint of v at p (room for ENG__VARINT_MAX bytes): its length. A
 * value below 2^56 (up to 8 bytes) is spread into its 7-bit groups with
 * three shift-and-mask steps and stored as one 8-byte word, the bytes
 * past its length being room the caller gives back or overwrites: no
 * branch on the length, which a loop mispredicts on every varint.
 */
#define ENG__VARINT_MAX 10
static inline size_t eng__put_varint(uint8_t *p, uint64_t v)
{
	if (ENG__LE && v < ((uint64_t)1 << 56)) {
		size_t n = ((size_t)(64 - __builtin_clzll(v | 1)) * 37 + 222) >>
		           8; /* ceil(bits / 7) */
		uint64_t x = (v & 0x000000000fffffffull) | ((v & 0x00fffffff0000000ull) << 4);
		x = (x & 0x00003fff00003fffull) | ((x & 0x0fffc0000fffc000ull) << 2);
		x = (x & 0x007f007f007f007full) | ((x & 0x3f803f803f803f80ull) << 1);
		x |= 0x8080808080808080ull & ((((uint64_t)1) << (8 * (n - 1))) - 1);
		memcpy(p, &x, 8);
		return n;
	}
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

static inline uint32_t eng__get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	if (ENG__LE) {
		memcpy(&v, p, sizeof v);
		return v;
	}
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t eng__get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	if (ENG__LE) {
		memcpy(&v, p, sizeof v);
		return v;
	}
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline double eng__get_f64(const uint8_t *p)
{
	uint64_t v = eng__get_u64(p);
	double x;
	memcpy(&x, &v, sizeof(x));
	return x;
}

/* ---- the writer ------------------------------------------------------------------ */

typedef struct eng__writer {
	uint8_t *p; /* owned until eng__writer_finish */
	size_t len, cap;
	bool fail; /* an allocation failed: sticky */
} eng__writer;

#define ENG__WRITER_INIT                                                                           \
	{                                                                                          \
		NULL, 0, 0, false                                                                  \
	}

/* Appends n bytes left for the caller to fill: their address, or NULL
 * (then `fail` is set) when they cannot be allocated. */
static inline uint8_t *eng__writer_reserve(eng__writer *w, size_t n)
{
	if (w->fail)
		return NULL;
	/* no object is larger than PTRDIFF_MAX bytes (nor asked of realloc) */
	if (n > (size_t)PTRDIFF_MAX - w->len) {
		w->fail = true;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t nc = w->cap ? w->cap : 256;
		while (nc < w->len + n)
			nc = nc > (size_t)PTRDIFF_MAX / 2 ? w->len + n : nc * 2;
		uint8_t *np = realloc(w->p, nc);
		if (!np) {
			w->fail = true;
			return NULL;
		}
		w->p = np;
		w->cap = nc;
	}
	uint8_t *r = w->p + w->len;
	w->len += n;
	return r;
}

/* Gives back the last n of the bytes reserved (room a variable-length
 * encoding did not use). */
static inline void eng__writer_unreserve(eng__writer *w, size_t n)
{
	if (!w->fail && n <= w->len)
		w->len -= n;
}

/* Allocates room for n bytes up front (an exact size known in advance
 * saves the doublings); a failure sets `fail`. */
static inline void eng__writer_presize(eng__writer *w, size_t n)
{
	if (w->fail || n <= w->cap)
		return;
	uint8_t *np = realloc(w->p, n);
	if (!np) {
		w->fail = true;
		return;
	}
	w->p = np;
	w->cap = n;
}

static inline void eng__writer_u8(eng__writer *w, uint8_t v)
{
	uint8_t *p = eng__writer_reserve(w, 1);
	if (p)
		*p = v;
}

static inline void eng__writer_u32(eng__writer *w, uint32_t v)
{
	uint8_t *p = eng__writer_reserve(w, 4);
	if (p)
		eng__put_u32(p, v);
}

static inline void eng__writer_u64(eng__writer *w, uint64_t v)
{
	uint8_t *p = eng__writer_reserve(w, 8);
	if (p)
		eng__put_u64(p, v);
}

static inline void eng__writer_f64(eng__writer *w, double v)
{
	uint8_t *p = eng__writer_reserve(w, 8);
	if (p)
		eng__put_f64(p, v);
}

static inline void eng__writer_varint(eng__writer *w, uint64_t v)
{
	uint8_t b[ENG__VARINT_MAX];
	size_t n = eng__put_varint(b, v);
	uint8_t *p = eng__writer_reserve(w, n);
	if (p)
		memcpy(p, b, n);
}

/* n raw bytes. */
static inline void eng__writer_raw(eng__writer *w, const void *b, size_t n)
{
	uint8_t *p = eng__writer_reserve(w, n);
	if (p && n)
		memcpy(p, b, n);
}

/* A blob: u64 n, then the n bytes. */
static inline void eng__writer_blob(eng__writer *w, const void *b, size_t n)
{
	eng__writer_u64(w, n);
	eng__writer_raw(w, b, n);
}

/* Hands the bytes over (new: free()) and returns 0, or frees them and
 * returns ENG_ENOMEM if any append failed. *out is NULL and *len 0 then. */
static inline int eng__writer_finish(eng__writer *w, uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (w->fail) {
		free(w->p);
		w->p = NULL;
		return ENG_ENOMEM;
	}
	*out = w->p;
	*len = w->len;
	w->p = NULL;
	return 0;
}

/* ---- the reader ------------------------------------------------------------------ */

typedef struct eng__reader {
	const uint8_t *p; /* borrowed */
	size_t left;
	bool fail; /* a get ran past the end (or a codec's check failed): sticky */
} eng__reader;

static inline void eng__reader_init(eng__reader *r, const void *p, size_t n)
{
	r->p = p;
	r->left = p ? n : 0;
	r->fail = !p;
}

/* The next n bytes (borrowed from the buffer), or NULL past the end. */
static inline const uint8_t *eng__reader_take(eng__reader *r, size_t n)
{
	if (r->fail || n > r->left) {
		r->fail = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static inline uint8_t eng__reader_u8(eng__reader *r)
{
	const uint8_t *p = eng__reader_take(r, 1);
	return p ? *p : 0;
}

static inline uint32_t eng__reader_u32(eng__reader *r)
{
	const uint8_t *p = eng__reader_take(r, 4);
	return p ? eng__get_u32(p) : 0;
}

static inline uint64_t eng__reader_u64(eng__reader *r)
{
	const uint8_t *p = eng__reader_take(r, 8);
	return p ? eng__get_u64(p) : 0;
}

static inline double eng__reader_f64(eng__reader *r)
{
	const uint8_t *p = eng__reader_take(r, 8);
	return p ? eng__get_f64(p) : 0.0;
}

/* A varint as eng__writer_varint wrote it; one that runs past the end,
 * past 64 bits or is longer than needed fails the reader (and gives 0). */
static inline uint64_t eng__reader_varint(eng__reader *r)
{
	uint64_t v = 0;
	if (r->fail)
		return 0;
	if (ENG__LE && r->left >= 8) {
		/* up to 8 bytes from one word: the first byte without the high
		 * bit ends it; its 7-bit groups gathered by eng__put_varint's
		 * steps backwards */
		uint64_t x, stop;
		memcpy(&x, r->p, 8);
		stop = ~x & 0x8080808080808080ull;
		if (stop) {
			size_t n = (size_t)__builtin_ctzll(stop) / 8 + 1;
			if (n < 8)
				x &= (((uint64_t)1) << (8 * n)) - 1;
			x &= 0x7f7f7f7f7f7f7f7full;
			if (n > 1 && (x >> (8 * (n - 1))) == 0) {
				r->fail = true; /* a zero group last: longer than needed */
				return 0;
			}
			x = (x & 0x007f007f007f007full) | ((x & 0x7f007f007f007f00ull) >> 1);
			x = (x & 0x00003fff00003fffull) | ((x & 0x3fff00003fff0000ull) >> 2);
			x = (x & 0x000000000fffffffull) | ((x & 0x0fffffff00000000ull) >> 4);
			r->p += n;
			r->left -= n;
			return x;
		}
	}
	for (size_t i = 0; i < r->left && i < ENG__VARINT_MAX; i++) {
		uint8_t b = r->p[i];
		v |= (uint64_t)(b & 0x7f) << (7 * i);
		if (b & 0x80)
			continue;
		/* the last byte: not a zero group after others, at most the
		 * one bit left in the tenth */
		if ((b == 0 && i > 0) || (i == ENG__VARINT_MAX - 1 && b > 1))
			break;
		r->p += i + 1;
		r->left -= i + 1;
		return v;
	}
	r->fail = true;
	return 0;
}

/* A count: below 2^62, so sums and products of counts stay checkable; a
 * larger value fails the reader. */
static inline int64_t eng__reader_count(eng__reader *r)
{
	uint64_t v = eng__reader_u64(r);
	if (v >= ((uint64_t)1 << 62))
		r->fail = true;
	return (int64_t)(v & (((uint64_t)1 << 62) - 1));
}

/* A blob as eng__writer_blob wrote it: its bytes (borrowed), their count in
 * *n; NULL (and *n 0) when the length passes the end. */
static inline const uint8_t *eng__reader_blob(eng__reader *r, size_t *n)
{
	uint64_t len = eng__reader_u64(r);
	const uint8_t *p = !r->fail && len <= r->left ? eng__reader_take(r, (size_t)len) : NULL;
	if (!p)
		r->fail = true;
	*n = p ? (size_t)len : 0;
	return p;
}

/* Takes the 4 bytes of a magic: true when they are m (false past the end). */
static inline bool eng__reader_magic(eng__reader *r, const char m[4])
{
	const uint8_t *p = eng__reader_take(r, 4);
	return p && memcmp(p, m, 4) == 0;
}

/* True when every byte was read and no get failed. */
static inline bool eng__reader_done(const eng__reader *r)
{
	return !r->fail && r->left == 0;
}

/* ---- the checksum ---------------------------------------------------------------- */

/*
 * The checksum of serialized state: FNV-1a's step over 8-byte
 * little-endian words (then the tail bytes), with an xorshift after each
 * multiply so high bits flow back down. Every step is a bijection of the
 * running value, so changing any one word (any burst of up to 64 bits
 * within it) always changes the result. Part of the stream state format
 * (stream_codec.c); the fuzz harness recomputes it to reach the payload parser.
 */
static inline uint64_t eng__checksum64(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		h ^= eng__get_u64(p + i);
		h *= 1099511628211ull;
		h ^= h >> 29;
	}
	for (; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

#endif
