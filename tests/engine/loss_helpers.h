/*
 * loss_helpers.h - what the loss tests share: tensor views over literal
 * arrays, the reduced loss of one call, and a tolerance check. Included by
 * tests/engine/test_loss_*.c only (static inline: each test uses a subset).
 */
#ifndef LOSSD_TESTS_LOSS_HELPERS_H
#define LOSSD_TESTS_LOSS_HELPERS_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>

#include "lossd/loss.h"

/* A view of `data` with the given dims (int64_t varargs). */
static inline eng_tensor tens(eng_dtype dt, const void *data, int ndim, ...)
{
	eng_tensor t = {dt, ndim, {0}, 1, data};
	va_list ap;
	va_start(ap, ndim);
	for (int i = 0; i < ndim; i++) {
		t.shape[i] = va_arg(ap, int64_t);
		t.size *= t.shape[i];
	}
	va_end(ap);
	return t;
}

#define D(...) ((const double[]){__VA_ARGS__})
#define I64(x) ((int64_t)(x))
#define NEAR(a, b, tol)                                                                            \
	cr_expect(fabs((a) - (b)) <= (tol), "%s = %.12g, expected %.12g", #a, (double)(a),         \
	          (double)(b))

/* Computes and returns the reduced loss (NaN when undefined); asserts
 * success. With keep, *keep gets the result (caller frees). */
static inline double run(const eng_tensor *yt, const eng_tensor *yp, const eng_loss_opts *o,
                         eng_loss_result **keep)
{
	eng_loss_result *r = NULL;
	eng_error err = {0};
	int rc = eng_loss_compute(&r, yt, yp, o, NULL, &err);
	cr_assert_eq(rc, 0, "eng_loss_compute failed: %d %s", rc, err.msg);
	double v;
	if (!eng_loss_result_value(r, o->reduction, &v))
		v = NAN;
	if (keep)
		*keep = r;
	else
		eng_loss_result_free(r);
	return v;
}

#endif
