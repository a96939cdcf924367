/*
 * dtoa.c - printing a double in the fewest of 15, 16 or 17 significant
 * digits that read back as the same double.
 *
 * Why: a loss reply carries dozens of doubles (per-class losses,
 * precision, recall...), and the obvious way, snprintf("%.15g") then
 * strtod to check, then %.16g, then %.17g, cost more than parsing the
 * request and computing the loss together (glibc prints through
 * multi-precision arithmetic).
 *
 * How: in the range where replies live (10^-4 <= |d| < 10^15, decimal
 * exponent -4..14, where %g prints fixed notation for 15 to 17 digits),
 * d = f * 2^e with a 53-bit f and -66 <= e <= -3, so d * 10^k for k <= 20
 * is f * 10^k (at most 53 + 67 bits: exact in 128) shifted right by -e:
 * the p-digit decimal mantissa N = round(d * 10^k) comes out exact,
 * rounded half to even like printf. Whether N reads back as d is checked
 * the way a correct strtod would read it: for N <= 2^53 and k <= 22,
 * N / 10^k is one correctly rounded division (Clinger's fast path); a
 * 16-digit N above 2^53 is checked with strtod; 17 digits always read
 * back. Outside that range (and for 0, which %g prints as "0"), the
 * snprintf loop itself runs. tests/api/test_dtoa.c holds the two to the
 * same text over a million doubles.
 *
 * It does not print NaN or Inf: replies never carry them.
 */
#include "dtoa.h"
#include "pow10.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

/* 10^k for 0 <= k <= 20 */
static inline u128 pow10_u128(int k)
{
	return k < 20 ? (u128)api__pow10_u64[k] : (u128)api__pow10_u64[19] * 10;
}

/* The snprintf loop: the definition of the text, for every double. */
static size_t slow(char out[API__DTOA_MAX], double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, API__DTOA_MAX, "%.*g", prec, d);
		if (prec == 17 || strtod(out, NULL) == d)
			break;
	}
	size_t n = strlen(out);
	if (!strpbrk(out, ".eEni")) {
		memcpy(out + n, ".0", 3);
		n += 2;
	}
	return n;
}

/* a * 10^k for a = f * 2^e (e < 0): rounded half to even, and *floor. */
static uint64_t scaled(uint64_t f, int e, int k, uint64_t *floor_)
{
	u128 num = (u128)f * pow10_u128(k);
	int sh = -e;
	u128 q = num >> sh, rem = num - (q << sh), half = (u128)1 << (sh - 1);
	*floor_ = (uint64_t)q;
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return (uint64_t)q;
}

/* Fixed notation of N (p digits, decimal exponent x, -4 <= x < p) like %g:
 * trailing zeros of the fraction dropped, ".0" kept on whole numbers. */
static size_t fixed(char *out, bool neg, uint64_t n, int p, int x)
{
	char dig[24];
	size_t len = 0;
	for (int i = p - 1; i >= 0; i--) {
		dig[i] = (char)('0' + n % 10);
		n /= 10;
	}
	int last = p - 1; /* the last digit kept: trailing zeros of the fraction go */
	while (last > x && last > 0 && dig[last] == '0')
		last--;
	if (neg)
		out[len++] = '-';
	if (x >= 0) {
		for (int i = 0; i <= x; i++)
			out[len++] = dig[i];
		out[len++] = '.';
		if (last > x)
			for (int i = x + 1; i <= last; i++)
				out[len++] = dig[i];
		else
			out[len++] = '0';
	} else {
		out[len++] = '0';
		out[len++] = '.';
		for (int i = 0; i < -x - 1; i++)
			out[len++] = '0';
		for (int i = 0; i <= last; i++)
			out[len++] = dig[i];
	}
	out[len] = '\0';
	return len;
}

size_t api__dtoa(char out[API__DTOA_MAX], double d)
{
	double a = fabs(d);
	if (!(a >= 1e-4 && a < 1e15))
		return slow(out, d);
	int e2;
	double fr = frexp(a, &e2);
	uint64_t f = (uint64_t)ldexp(fr, 53);
	int e = e2 - 53; /* a = f * 2^e, -66 <= e <= -3 */
	/* x: the decimal exponent, 10^x <= a < 10^(x+1). a lies in
	 * [2^(e2-1), 2^e2), so floor((e2 - 1) log10 2) is x or x - 1 (no
	 * log10 call: it was a tenth of a history page's time); the loop
	 * below makes it exact */
	int x = (int)floor((e2 - 1) * 0.30102999566398120);
	uint64_t fl;
	for (int tries = 0;; tries++) {
		if (x < -4 || x > 14 || tries == 3)
			return slow(out, d);
		scaled(f, e, 16 - x, &fl);
		if (fl < 10000000000000000ull)
			x--;
		else if (fl >= 100000000000000000ull)
			x++;
		else
			break;
	}
	for (int p = 15; p <= 17; p++) {
		uint64_t n = scaled(f, e, p - 1 - x, &fl);
		int xo = x;
		if (n == (uint64_t)pow10_u128(p)) { /* rounded up to 10^(x+1) */
			n /= 10;
			xo++;
			if (xo > 14)
				return slow(out, d); /* %g switches to 1e+15 */
		}
		int k = p - 1 - xo;
		bool back;
		if (p == 17)
			back = true;
		else if (n <= ((uint64_t)1 << 53))
			back = (double)n / api__pow10_f64[k] == a;
		else {
			fixed(out, false, n, p, xo);
			back = strtod(out, NULL) == a;
		}
		if (back)
			return fixed(out, d < 0, n, p, xo);
	}
	return slow(out, d); /* not reached: 17 digits always read back */
}
