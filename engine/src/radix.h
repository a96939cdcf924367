/*
 * radix.h - engine-private: order-preserving integer keys for floating-point
 * scores and a stable LSD radix sort of (key, index) pairs.
 *
 * Shared by auc.c (exact AUC) and sketch.c (batch insertion). Not public:
 * callers outside the engine sort nothing.
 */
#ifndef LOSSD_ENGINE_RADIX_H
#define LOSSD_ENGINE_RADIX_H

#include <stdint.h>
#include <string.h>

/*
 * The key of a double: unsigned integers that sort like the doubles they
 * come from (-inf < ... < -0 == +0 < ... < +inf). -0.0 is mapped to the key
 * of +0.0 so the two tie. NaN has no place in the order; callers reject it.
 */
static inline uint64_t eng__key64(double x)
{
	uint64_t u;
	if (x == 0.0)
		x = 0.0; /* -0.0 -> +0.0 */
	memcpy(&u, &x, sizeof(u));
	return (u >> 63) ? ~u : (u | ((uint64_t)1 << 63));
}

/* The double a key came from (the inverse of eng__key64). */
static inline double eng__key64_value(uint64_t k)
{
	uint64_t u = (k >> 63) ? (k & ~((uint64_t)1 << 63)) : ~k;
	double x;
	memcpy(&x, &u, sizeof(x));
	return x;
}

/* The same for float: 32-bit keys for float32 scores. */
static inline uint32_t eng__key32(float x)
{
	uint32_t u;
	if (x == 0.0f)
		x = 0.0f;
	memcpy(&u, &x, sizeof(u));
	return (u >> 31) ? ~u : (u | ((uint32_t)1 << 31));
}

static inline float eng__key32_value(uint32_t k)
{
	uint32_t u = (k >> 31) ? (k & ~((uint32_t)1 << 31)) : ~k;
	float x;
	memcpy(&x, &u, sizeof(x));
	return x;
}

/*
 * Sorts key[0..n) ascending, stably, carrying idx along, by an LSD radix
 * sort with 11-bit digits (8-bit for small n); digits that are equal in
 * every key are skipped.
 * tkey and tidx are caller-provided scratch of n elements each. The sorted
 * result is left in key/idx. idx may be NULL (keys only; tidx ignored).
 * Never fails, never allocates.
 */
void eng__radix_sort64(uint64_t *key, uint32_t *idx, uint64_t *tkey, uint32_t *tidx, int64_t n);
void eng__radix_sort32(uint32_t *key, uint32_t *idx, uint32_t *tkey, uint32_t *tidx, int64_t n);

#endif
