/*
 * vecf.h - eight-lane float vectors for the engine's hot loops, written
 * with GCC/clang vector extensions (not intrinsics) so the same code builds
 * on any target. Functions marked HOT_CLONES are compiled twice on x86-64
 * with GCC: an x86-64-v3 (AVX2, FMA) clone chosen at load time on CPUs that
 * have it, and a baseline clone (pairs of SSE2 operations). Private to the
 * engine.
 *
 * Vectors never pass by value between functions (that would change the
 * psABI between the clones): selection and splat are macros and the math
 * works in place through pointers, inlined into its caller.
 */
#ifndef LOSSD_ENGINE_VECF_H
#define LOSSD_ENGINE_VECF_H

#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) &&                             \
        !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define HOT_CLONES                                                                                 \
	__attribute__((target_clones("arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
/* kernels may add an x86-64-v4 (AVX-512) variant chosen with
 * __builtin_cpu_supports("x86-64-v4"); same guard as the clones */
#define LOSSD_HOT_V4 1
#else
#define HOT_CLONES
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

#define VSEL(m, a, b) ((v8f)(((m) & (v8i)(a)) | (~(m) & (v8i)(b))))
#define VSPLAT(f)     ((v8f){(f), (f), (f), (f), (f), (f), (f), (f)})

/* e^x for x <= 0 (x - max), 8 lanes; NaN in, NaN out; below -87 gives
 * ~1e-38 instead of 0, which no sum of at most 2^53 terms >= 1 notices. */
static inline void exp_neg(v8f *xp)
{
	v8f x = *xp;
	x = VSEL(x < VSPLAT(-87.0f), VSPLAT(-87.0f), x);
	v8f t = x * 1.44269504088896341f + 12582912.0f; /* round(x/ln2) in the low bits */
	v8f n = t - 12582912.0f;
	v8f r = x - n * 0.693359375f;
	r = r - n * -2.12194440e-4f;
	v8f y = VSPLAT(1.9875691500e-4f);
	y = y * r + 1.3981999507e-3f;
	y = y * r + 8.3334519073e-3f;
	y = y * r + 4.1665795894e-2f;
	y = y * r + 1.6666665459e-1f;
	y = y * r + 5.0000001201e-1f;
	y = y * r * r + r + 1.0f;
	v8u u = ((v8u)t - 0x4B400000u + 127u) << 23;
	*xp = y * (v8f)u;
}

/*
 * log(1 + e) for e in [0, 1], in place: with u = e / (2 + e) in [0, 1/3],
 * log1p(e) = 2 atanh(u) = 2u (1 + u^2/3 + u^4/5 + ...), eight terms, so
 * the relative error stays ~1 ulp down to the smallest e (no 1 + e).
 */
static inline void log1p_unit(v8f *ep)
{
	v8f e = *ep;
	v8f u = e / (e + 2.0f);
	v8f u2 = u * u;
	v8f s = VSPLAT(1.0f / 15);
	s = s * u2 + 1.0f / 13;
	s = s * u2 + 1.0f / 11;
	s = s * u2 + 1.0f / 9;
	s = s * u2 + 1.0f / 7;
	s = s * u2 + 1.0f / 5;
	s = s * u2 + 1.0f / 3;
	s = s * u2 + 1.0f;
	*ep = 2.0f * u * s;
}

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4l __attribute__((vector_size(32)));

#define VSEL4(m, a, b) ((v4d)(((m) & (v4l)(a)) | (~(m) & (v4l)(b))))
#define VSPLAT4(f)     ((v4d){(f), (f), (f), (f)})

/*
 * log(n + r) into *rp, four double lanes, for n >= 1 a whole number (a
 * count of exp(0) terms) and finite r >= 0 (the other terms), as log-sum-
 * exp needs it: relative error a few ulp, also where n == 1 and r is tiny,
 * where the result is log1p(r) ~ r and the rounded n + r would have lost r.
 * n + r = 2^e (1 + f) with 1 + f in [sqrt 1/2, sqrt 2); when e == 0, n is 1
 * and f is r itself, exactly. log(1 + f) = 2 atanh(s), s = f / (2 + f),
 * |s| <= 0.172: the odd series to s^21 leaves < 1e-17 relative.
 */
static inline void log_count_rest(v4d *rp, const v4d *np)
{
	v4d n = *np, r = *rp, u = n + r;
	v4l b = (v4l)u;
	v4l e = ((b >> 52) & 0x7ff) - 1023;
	v4d m = (v4d)((b & 0x000fffffffffffffLL) | 0x3ff0000000000000LL); /* [1, 2) */
	v4l big = m > VSPLAT4(1.4142135623730951);
	m = VSEL4(big, m * 0.5, m);
	e -= big; /* big is -1 where true */
	v4l e0 = e == 0;
	v4d f = VSEL4(e0, (n - 1.0) + r, m - 1.0);
	v4d s = f / (f + 2.0), z = s * s;
	v4d q = VSPLAT4(1.0 / 21);
	q = q * z + 1.0 / 19;
	q = q * z + 1.0 / 17;
	q = q * z + 1.0 / 15;
	q = q * z + 1.0 / 13;
	q = q * z + 1.0 / 11;
	q = q * z + 1.0 / 9;
	q = q * z + 1.0 / 7;
	q = q * z + 1.0 / 5;
	q = q * z + 1.0 / 3;
	q = q * z;
	/* e as a double without a 64-bit integer convert (none before AVX-512) */
	v4d ed = (v4d)(e + 0x4338000000000000LL) - 6755399441055744.0;
	v4d s2 = s + s;
	*rp = ed * 6.93147180369123816490e-01 + (ed * 1.90821492927058770002e-10 + (s2 + s2 * q));
}

#endif
