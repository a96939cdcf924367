/*
 * test_dynbuf.c - api/src/dynbuf.c: the capped growable buffer.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/dynbuf.h"
#include "mem.h"

Test(dynbuf, empty_buffer_is_the_empty_string)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 100);
	cr_assert_str_eq(api_dynbuf_ptr(&b), "");
	cr_assert_eq(api_dynbuf_len(&b), 0);
	cr_assert_eq(api_dynbuf_error(&b), 0);
	cr_assert_null(b.p, "init allocates nothing");
	api_dynbuf_free(&b);
}

Test(dynbuf, appends_and_stays_nul_terminated)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 1000);
	cr_assert_eq(api_dynbuf_adds(&b, "abc"), 0);
	cr_assert_eq(api_dynbuf_add(&b, "de\0f", 4), 0);
	cr_assert_eq(api_dynbuf_add(&b, NULL, 0), 0);
	cr_assert_eq(api_dynbuf_printf(&b, "%d-%s", 42, "x"), 0);
	cr_assert_eq(api_dynbuf_len(&b), 11);
	cr_assert_eq(memcmp(api_dynbuf_ptr(&b), "abcde\0f42-x", 12), 0, "content and its NUL");
	api_dynbuf_free(&b);
	cr_assert_null(b.p);
	cr_assert_eq(b.max, 1000, "free keeps the cap");
}

Test(dynbuf, content_may_reach_the_cap_exactly)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 10);
	cr_assert_eq(api_dynbuf_adds(&b, "0123456789"), 0);
	cr_assert_eq(api_dynbuf_len(&b), 10);
	cr_assert_str_eq(api_dynbuf_ptr(&b), "0123456789");
	cr_assert_leq(b.alloc, 11, "never allocates past the cap and its NUL (%zu)", b.alloc);
	api_dynbuf_free(&b);
}

Test(dynbuf, passing_the_cap_fails_and_sticks)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 10);
	cr_assert_eq(api_dynbuf_adds(&b, "012345"), 0);
	cr_assert_eq(api_dynbuf_adds(&b, "6789a"), API_DYNBUF_TOOBIG);
	cr_assert_eq(api_dynbuf_error(&b), API_DYNBUF_TOOBIG);
	cr_assert_null(api_dynbuf_ptr(&b), "the content is dropped");
	cr_assert_eq(api_dynbuf_len(&b), 0);
	cr_assert_eq(api_dynbuf_adds(&b, "x"), API_DYNBUF_TOOBIG, "a small append still fails");
	cr_assert_eq(api_dynbuf_printf(&b, "%d", 1), API_DYNBUF_TOOBIG);
	size_t len = 99;
	cr_assert_null(api_dynbuf_take(&b, &len));
	cr_assert_eq(len, 0);
	api_dynbuf_free(&b);
	cr_assert_eq(api_dynbuf_error(&b), 0, "free clears the error");
	cr_assert_eq(api_dynbuf_adds(&b, "again"), 0);
	cr_assert_str_eq(api_dynbuf_ptr(&b), "again");
	api_dynbuf_free(&b);
}

Test(dynbuf, zero_cap_takes_only_empty_appends)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 0);
	cr_assert_eq(api_dynbuf_add(&b, "", 0), 0);
	cr_assert_eq(api_dynbuf_adds(&b, "a"), API_DYNBUF_TOOBIG);
	api_dynbuf_free(&b);
}

Test(dynbuf, huge_lengths_do_not_wrap)
{
	api_dynbuf b;
	api_dynbuf_init(&b, SIZE_MAX);
	cr_assert_eq(api_dynbuf_adds(&b, "ab"), 0);
	/* len + n would wrap past SIZE_MAX: must be refused, not overflow. */
	cr_assert_eq(api_dynbuf_add(&b, "x", SIZE_MAX - 1), API_DYNBUF_TOOBIG);
	api_dynbuf_free(&b);
	api_dynbuf_init(&b, 64);
	cr_assert_eq(api_dynbuf_add(&b, "x", SIZE_MAX), API_DYNBUF_TOOBIG);
	api_dynbuf_free(&b);
}

Test(dynbuf, grows_through_many_appends)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 1 << 20);
	for (int i = 0; i < 10000; i++)
		cr_assert_eq(api_dynbuf_printf(&b, "%04d,", i % 10000), 0);
	cr_assert_eq(api_dynbuf_len(&b), 50000);
	const char *p = api_dynbuf_ptr(&b);
	cr_assert_eq(memcmp(p, "0000,0001,", 10), 0);
	cr_assert_eq(memcmp(p + 49995, "9999,", 6), 0, "ends with the last piece and a NUL");
	api_dynbuf_free(&b);
}

Test(dynbuf, printf_longer_than_the_stack_piece)
{
	char big[3000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	api_dynbuf b;
	api_dynbuf_init(&b, 10000);
	cr_assert_eq(api_dynbuf_adds(&b, "<"), 0);
	cr_assert_eq(api_dynbuf_printf(&b, "%s|%d", big, 7), 0);
	cr_assert_eq(api_dynbuf_len(&b), 1 + 2999 + 2);
	const char *p = api_dynbuf_ptr(&b);
	cr_assert_eq(p[0], '<');
	cr_assert_eq(p[1], 'q');
	cr_assert_eq(p[2999], 'q');
	cr_assert_str_eq(p + 3000, "|7");
	/* The same text past the cap: refused before formatting into it. */
	api_dynbuf_reset(&b);
	b.max = 2000;
	cr_assert_eq(api_dynbuf_printf(&b, "%s", big), API_DYNBUF_TOOBIG);
	api_dynbuf_free(&b);
}

Test(dynbuf, reset_keeps_the_allocation)
{
	api_dynbuf b;
	api_dynbuf_init(&b, 100);
	cr_assert_eq(api_dynbuf_adds(&b, "hello"), 0);
	char *p = b.p;
	api_dynbuf_reset(&b);
	cr_assert_eq(api_dynbuf_len(&b), 0);
	cr_assert_str_eq(api_dynbuf_ptr(&b), "");
	cr_assert_eq(b.p, p);
	cr_assert_eq(api_dynbuf_adds(&b, "hi"), 0);
	cr_assert_str_eq(api_dynbuf_ptr(&b), "hi");
	api_dynbuf_free(&b);
}

Test(dynbuf, take_hands_over_the_content)
{
	api_dynbuf b;
	size_t len = 0;
	api_dynbuf_init(&b, 100);
	char *s = api_dynbuf_take(&b, &len);
	cr_assert_not_null(s, "an empty buffer gives the empty string");
	cr_assert_str_eq(s, "");
	cr_assert_eq(len, 0);
	free(s);
	cr_assert_eq(api_dynbuf_adds(&b, "payload"), 0);
	s = api_dynbuf_take(&b, &len);
	cr_assert_str_eq(s, "payload");
	cr_assert_eq(len, 7);
	cr_assert_null(b.p, "b is left empty");
	cr_assert_eq(api_dynbuf_len(&b), 0);
	free(s);
	api_dynbuf_free(&b);
}

/* Every allocation failing in turn: the error is NOMEM, it sticks, and a
 * run without the failure produces the full content. */
Test(dynbuf, out_of_memory_at_every_allocation)
{
	int failed_runs = 0;
	for (long n = 1;; n++) {
		api_dynbuf b;
		api_dynbuf_init(&b, 1 << 16);
		api__alloc_fail_after(n);
		int rc = 0;
		for (int i = 0; i < 500 && rc == 0; i++)
			rc = api_dynbuf_printf(&b, "piece %d;", i);
		api__alloc_fail_after(0);
		if (rc == 0) {
			cr_assert_eq(api_dynbuf_error(&b), 0);
			cr_assert_gt(api_dynbuf_len(&b), 4000);
			api_dynbuf_free(&b);
			break;
		}
		failed_runs++;
		cr_assert_eq(rc, API_DYNBUF_NOMEM, "failure %ld", n);
		cr_assert_eq(api_dynbuf_error(&b), API_DYNBUF_NOMEM);
		cr_assert_null(api_dynbuf_ptr(&b));
		cr_assert_eq(api_dynbuf_adds(&b, "x"), API_DYNBUF_NOMEM, "sticks");
		api_dynbuf_free(&b);
		cr_assert_lt(n, 100, "allocations keep failing");
	}
	cr_assert_gt(failed_runs, 3, "the growth took several allocations (%d)", failed_runs);
}
