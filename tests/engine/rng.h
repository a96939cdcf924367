/*
 * rng.h - the engine tests' seeded random numbers (splitmix64): every test
 * that draws data sets rng_state first, so each run draws the same data.
 * Included by one test file per executable (static state).
 */
#ifndef LOSSD_TESTS_ENGINE_RNG_H
#define LOSSD_TESTS_ENGINE_RNG_H

#include <math.h>
#include <stdint.h>

static uint64_t rng_state;

static inline uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform on [0, 1), 53 bits. */
static inline double unif(void)
{
	return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* Uniform on (0, 1): never 0, so log() of it is finite. */
static inline double unif_open(void)
{
	return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

/* Standard normal (Box-Muller). */
static inline double normal(void)
{
	return sqrt(-2.0 * log(unif_open())) * cos(6.283185307179586 * unif_open());
}

#endif
