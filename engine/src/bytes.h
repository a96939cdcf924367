/*
 * bytes.h - engine-private little-endian encoding helpers for serialized
 * state (binned.c, sketch.c, stream.c). A reader never reads past its end: every get
 * checks the remaining length and reports failure instead.
 */
#ifndef LOSSD_ENGINE_BYTES_H
#define LOSSD_ENGINE_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

static inline uint32_t eng__get_u32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static inline uint64_t eng__get_u64(const uint8_t *p)
{
	uint64_t v = 0;
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

/*
 * The checksum of serialized state: FNV-1a's step over 8-byte
 * little-endian words (then the tail bytes), with an xorshift after each
 * multiply so high bits flow back down. Every step is a bijection of the
 * running value, so changing any one word (any burst of up to 64 bits
 * within it) always changes the result. Part of the stream state format
 * (stream.c); the fuzz harness recomputes it to reach the payload parser.
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
