/*
 * dtoa.h - doubles as reply text. Private to api/ (see dtoa.c).
 */
#ifndef LOSSD_API_DTOA_H
#define LOSSD_API_DTOA_H

#include <stddef.h>

/* Longest text api__dtoa writes, its NUL included. */
#define API__DTOA_MAX 32

/*
 * Writes the finite double d into out as the shortest of "%.15g",
 * "%.16g" and "%.17g" that reads back as d, with ".0" added to whole
 * numbers ("3.0", "1e+20" stays); returns its length. Same text as those
 * printf calls, without printf in the common range.
 */
size_t api__dtoa(char out[API__DTOA_MAX], double d);

#endif
