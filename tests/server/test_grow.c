/*
 * test_grow.c - server/src/grow.h: room for one more, doubling from a first
 * size, and a refusal that leaves the array as it was.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "grow.h"

Test(grow, starts_at_first_then_doubles_only_when_full)
{
	int *v = NULL;
	size_t cap = 0, n = 0;
	size_t seen[8], k = 0;
	for (; n < 100; n++) {
		size_t before = cap;
		int *nv = srv__grow(v, &cap, n, sizeof(*v), 4);
		cr_assert_not_null(nv);
		v = nv;
		if (cap != before)
			seen[k++] = cap;
		cr_assert_gt(cap, n);
		v[n] = (int)n;
	}
	/* 4, 8, 16, 32, 64, 128: grown only when n reached the capacity */
	cr_assert_eq(k, 6);
	for (size_t i = 0; i < k; i++)
		cr_assert_eq(seen[i], (size_t)4 << i);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(v[i], (int)i, "element %zu moved wrong", i);
	free(v);
}

Test(grow, room_left_returns_the_same_array)
{
	size_t cap = 0;
	char *v = srv__grow(NULL, &cap, 0, 1, 16);
	cr_assert_not_null(v);
	cr_assert_eq(cap, 16);
	cr_assert_eq(srv__grow(v, &cap, 15, 1, 16), v);
	cr_assert_eq(cap, 16);
	free(v);
}

Test(grow, an_overflowing_size_is_refused_and_nothing_changes)
{
	size_t cap = SIZE_MAX / 16 + 1, n = cap;
	int probe;
	/* doubling cap elements of 16 bytes would overflow size_t */
	cr_assert_null(srv__grow(&probe, &cap, n, 16, 4));
	cr_assert_eq(cap, SIZE_MAX / 16 + 1);
}
