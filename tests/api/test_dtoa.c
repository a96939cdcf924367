/*
 * test_dtoa.c - api/src/dtoa.c: the fast path prints exactly what the
 * snprintf loop prints (the shortest of %.15g, %.16g, %.17g that reads
 * back, ".0" on whole numbers), and what it prints reads back.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtoa.h"

/* The definition, written out independently of dtoa.c. */
static void reference(char *out, double d)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, API__DTOA_MAX, "%.*g", prec, d);
		if (prec == 17 || strtod(out, NULL) == d)
			break;
	}
	if (!strpbrk(out, ".eEni"))
		strcat(out, ".0");
}

static uint64_t state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return state;
}

static void check(double d)
{
	char got[API__DTOA_MAX], want[API__DTOA_MAX];
	size_t n = api__dtoa(got, d);
	reference(want, d);
	cr_assert_str_eq(got, want, "%.17g: got %s, want %s", d, got, want);
	cr_assert_eq(n, strlen(got));
	cr_assert(strtod(got, NULL) == d, "%s does not read back as %.17g", got, d);
}

Test(dtoa, same_text_as_printf)
{
	static const double fixed[] = {
	        0.0,
	        -0.0,
	        1.0,
	        -1.0,
	        0.1,
	        0.5,
	        2.5,
	        1e-4,
	        9.99999999999999e-5,
	        1e-5,
	        1e15,
	        999999999999999.9,
	        1e14,
	        123456789012345.6,
	        0.30000000000000004,
	        2.220446049250313e-16,
	        1e300,
	        5e-324,
	        1.7976931348623157e308,
	        0.6931471805599453,
	        100.0,
	        1234.5,
	        0.001,
	        0.000123,
	        3.0e-4,
	        9007199254740993.0,
	        1e-3 + 1e-19,
	        0.1 + 0.2,
	        1.0 / 3.0,
	        2.0 / 3.0,
	        10.0 / 3.0,
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		check(fixed[i]);
	/* near every power of ten and its neighbours */
	for (int k = -6; k <= 16; k++) {
		double p = pow(10, k);
		check(p);
		check(nextafter(p, 0));
		check(nextafter(p, INFINITY));
		check(-p);
	}
	/* what replies hold: ratios, logs, sums; and every bit pattern */
	for (int i = 0; i < 400000; i++) {
		uint64_t u = rnd();
		double d;
		switch (i % 4) {
		case 0: d = (double)(u >> 11) / 9007199254740992.0; break; /* [0, 1) */
		case 1: d = -log((double)((u >> 11) | 1) / 9007199254740992.0); break;
		case 2: d = (double)(u % 1000000) / (double)(1 + (u >> 40) % 1000); break;
		default:
			memcpy(&d, &u, sizeof d);
			if (!isfinite(d))
				continue;
			break;
		}
		check(d);
		check(-d);
		check((double)(float)d); /* float32 values widened */
	}
}
