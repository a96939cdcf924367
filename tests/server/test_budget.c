/*
 * test_budget.c - server/src/budget.c: the request-body budget, shared,
 * per principal and for the read-only tokens together.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "../../server/src/budget.h"

Test(budget, total_without_tokens)
{
	srv__budget *b = srv__budget_new(100, 40, 50);
	cr_assert_not_null(b);
	cr_assert(srv__budget_take(b, NULL, false, 60));
	cr_assert(srv__budget_take(b, NULL, false, 40));
	cr_assert_not(srv__budget_take(b, NULL, false, 1));
	cr_assert_eq(srv__budget_used(b), 100);
	srv__budget_give(b, NULL, false, 60);
	cr_assert(srv__budget_take(b, NULL, false, 60));
	srv__budget_give(b, NULL, false, 100);
	cr_assert_eq(srv__budget_used(b), 0);
	srv__budget_free(b);
}

Test(budget, per_principal_and_readers)
{
	srv__budget *b = srv__budget_new(100, 40, 50);
	/* one principal: 40 at most, whatever is left */
	cr_assert(srv__budget_take(b, "alice", false, 40));
	cr_assert_not(srv__budget_take(b, "alice", false, 1));
	/* read-only principals: 50 together, each 40 */
	cr_assert(srv__budget_take(b, "r1", true, 30));
	cr_assert_not(srv__budget_take(b, "r1", true, 11)); /* would be 41 for r1 */
	cr_assert(srv__budget_take(b, "r2", true, 20));
	cr_assert_not(srv__budget_take(b, "r3", true, 1)); /* readers at 50 */
	/* a failed take took nothing: the writer still finds the rest */
	cr_assert_eq(srv__budget_used(b), 90);
	cr_assert(srv__budget_take(b, "bob", false, 10));
	cr_assert_not(srv__budget_take(b, "bob", false, 1)); /* total at 100 */
	srv__budget_give(b, "r1", true, 30);
	cr_assert(srv__budget_take(b, "r3", true, 30));
	srv__budget_give(b, "alice", false, 40);
	srv__budget_give(b, "r2", true, 20);
	srv__budget_give(b, "r3", true, 30);
	srv__budget_give(b, "bob", false, 10);
	cr_assert_eq(srv__budget_used(b), 0);
	/* many principals: the table grows */
	char name[16];
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof name, "p%d", i);
		cr_assert(srv__budget_take(b, name, false, 2));
	}
	cr_assert_eq(srv__budget_used(b), 100);
	srv__budget_free(b);
}
