/*
 * grow.h - the one way server/ grows an array it appends to: capacity
 * doubled from a first size when the next element would not fit.
 */
#ifndef LOSSD_SERVER_GROW_H
#define LOSSD_SERVER_GROW_H

#include <stdint.h>
#include <stdlib.h>

/* The array v (of *cap elements of elem bytes, n of them used) with room
 * for one more: v itself while n < *cap, else v moved to twice *cap (first
 * when *cap is 0), *cap updated. NULL when out of memory or the size would
 * overflow; v and *cap are then unchanged (the caller still owns v). */
static inline void *srv__grow(void *v, size_t *cap, size_t n, size_t elem, size_t first)
{
	if (n < *cap)
		return v;
	size_t nc = *cap ? 2 * *cap : first;
	if (nc <= n || nc > SIZE_MAX / elem)
		return NULL;
	void *nv = realloc(v, nc * elem);
	if (nv)
		*cap = nc;
	return nv;
}

#endif
