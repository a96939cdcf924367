/*
 * test_mem.c - api/src/mem.c: the lexing guard. jansson 2.14's lexer drops a
 * character whose buffer growth failed and then decodes the string up to a
 * closing quote it never saved, past the end of its buffers. Through
 * api__json_loadb a parse whose budget runs out anywhere, or whose n-th
 * allocation fails, gives either the whole tree or NULL with the failure
 * noted, and never touches memory it does not own (the sanitizer and
 * valgrind runs of this test check that part).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "mem.h"

/* Tokens of 16 to 90 characters: each one grows the lexer's buffer. */
static const char doc[] =
        "{\"average_over_all_columns\":\"interpolation_of_the_curve\","
        "\"a_much_longer_key_that_grows_the_token_buffer_again_past_sixty_four\":"
        "[12345678901234567,0.000123456789012345678,\"x\"],"
        "\"k\":\"a string long enough to need one hundred and twenty-eight bytes of "
        "buffer, which is one more growth\"}";

static void check(json_t *v, json_t *want, const char *how, long n)
{
	if (v) {
		cr_assert(json_equal(v, want), "%s %ld: a tree unlike the document", how, n);
		json_decref(v);
	} else {
		cr_assert_neq(api__json_alloc_failure(), API__ALLOC_OK,
		              "%s %ld: NULL without a noted failure", how, n);
	}
}

Test(mem, budget_running_out_anywhere_in_a_parse)
{
	json_error_t e;
	json_t *want = api__json_loads(doc, 0, &e);
	cr_assert_not_null(want, "%s", e.text);
	int whole = 0, refused = 0;
	for (long b = 0; b < 4096; b += 8) {
		api__json_budget_set((size_t)b);
		json_t *v = api__json_loads(doc, 0, &e);
		v ? whole++ : refused++;
		check(v, want, "budget", b);
		api__json_budget_clear();
	}
	cr_assert_gt(refused, 0);
	cr_assert_gt(whole, 0);
	json_decref(want);
}

Test(mem, any_one_failed_allocation_in_a_parse)
{
	json_error_t e;
	json_t *want = api__json_loads(doc, 0, &e);
	cr_assert_not_null(want);
	int whole = 0;
	for (long n = 1; n < 200 && whole < 2; n++) {
		api__json_budget_clear();
		api__alloc_fail_after(n);
		json_t *v = api__json_loadb(doc, strlen(doc), 0, &e);
		api__alloc_fail_after(0);
		if (v)
			whole++;
		check(v, want, "failure at", n);
	}
	cr_assert_eq(whole, 2, "past its allocations the parse succeeds");
	/* the guard ends with the parse: a later allocation is not refused */
	json_t *s = json_string("after");
	cr_assert_not_null(s);
	json_decref(s);
	json_decref(want);
}
