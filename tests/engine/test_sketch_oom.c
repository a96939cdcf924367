/*
 * test_sketch_oom.c - eng_auc_sketch reports a sketch it could not allocate
 * as ENG_ENOMEM (503 out_of_memory above the api layer), not as the
 * ENG_EINVAL of an out-of-range cap (422 bad_option).
 *
 * The engine has no allocation hook, so this binary interposes calloc:
 * armed, the next call fails; otherwise glibc's calloc answers. Sanitizer
 * builds intercept calloc themselves, so there the test says it is skipped.
 */
#include <criterion/criterion.h>
#include <stddef.h>

#include "lossd/auc.h"
#include "lossd/sketch.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NO_INTERPOSE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NO_INTERPOSE 1
#endif
#endif

#ifndef NO_INTERPOSE
extern void *__libc_calloc(size_t n, size_t size);
static int fail_next_calloc;

void *calloc(size_t n, size_t size)
{
	if (fail_next_calloc) {
		fail_next_calloc = 0;
		return NULL;
	}
	return __libc_calloc(n, size);
}
#endif

static double sc[] = {.9, .1, .8, .3};
static double yt[] = {1, 0, 1, 0};

Test(sketch_oom, failed_sketch_allocation_is_enomem)
{
#ifdef NO_INTERPOSE
	cr_skip_test("calloc cannot be interposed under a sanitizer");
#else
	eng_tensor ts = {ENG_F64, 1, {4}, 4, sc}, ty = {ENG_F64, 1, {4}, 4, yt};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	eng_error err;
	fail_next_calloc = 1; /* eng_sketch_new's calloc is the first */
	int rc = eng_auc_sketch(&r, NULL, &d, 0, 0, ENG_CURVE_ROC, 512, &err);
	fail_next_calloc = 0;
	cr_expect_eq(rc, ENG_ENOMEM);
	cr_expect_eq(err.code, ENG_ENOMEM);
	/* the same call with memory succeeds: the failure was the allocation */
	cr_assert_eq(eng_auc_sketch(&r, NULL, &d, 0, 0, ENG_CURVE_ROC, 512, &err), 0);
	cr_expect(r.auc == 1.0);
#endif
}

Test(sketch_oom, cap_out_of_range_is_einval)
{
	eng_tensor ts = {ENG_F64, 1, {4}, 4, sc}, ty = {ENG_F64, 1, {4}, 4, yt};
	eng_auc_data d = {&ts, &ty, NULL, ENG_LABELS_BINARY};
	eng_auc_result r;
	eng_error err;
	cr_expect_eq(
	        eng_auc_sketch(&r, NULL, &d, 0, ENG_SKETCH_MIN_CAP - 1, ENG_CURVE_ROC, 512, &err),
	        ENG_EINVAL);
	cr_expect_eq(
	        eng_auc_sketch(&r, NULL, &d, 0, ENG_SKETCH_MAX_CAP + 1, ENG_CURVE_ROC, 512, &err),
	        ENG_EINVAL);
}
