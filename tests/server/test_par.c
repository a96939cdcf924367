/*
 * test_par.c - server/src/par.c: every task runs exactly once, from many
 * callers at once, with and without helpers.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "par.h"

struct counts {
	atomic_int *hits;
	int64_t n;
};

static void task(void *arg, int64_t t)
{
	struct counts *c = arg;
	atomic_fetch_add(&c->hits[t], 1);
}

static void run_and_check(const eng_parallel *p, int64_t n)
{
	struct counts c = {calloc((size_t)n + 1, sizeof(atomic_int)), n};

	cr_assert_not_null(c.hits);
	eng_parallel_for(p, n, task, &c);
	for (int64_t i = 0; i < n; i++)
		cr_assert_eq(atomic_load(&c.hits[i]), 1, "task %lld ran %d times", (long long)i,
		             atomic_load(&c.hits[i]));
	free(c.hits);
}

Test(par, no_helpers_runs_serially)
{
	srv__par *p = srv__par_new(0);
	cr_assert_not_null(p);
	cr_assert_eq(srv__par_hook(p)->nthreads, 1);
	run_and_check(srv__par_hook(p), 100);
	run_and_check(srv__par_hook(p), 0);
	srv__par_free(p);
}

Test(par, helpers_share_tasks)
{
	srv__par *p = srv__par_new(3);
	cr_assert_not_null(p);
	cr_assert_eq(srv__par_hook(p)->nthreads, 4);
	for (int64_t n = 1; n < 2000; n = n * 3 + 1)
		run_and_check(srv__par_hook(p), n);
	srv__par_free(p);
}

static void *caller(void *arg)
{
	const eng_parallel *p = arg;
	for (int i = 0; i < 200; i++)
		run_and_check(p, 1 + (i * 37) % 300);
	return NULL;
}

/* More callers than helpers: nobody waits for a helper that never comes. */
Test(par, many_callers_no_deadlock, .timeout = 60)
{
	srv__par *p = srv__par_new(2);
	pthread_t t[6];

	cr_assert_not_null(p);
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, caller, (void *)srv__par_hook(p));
	for (int i = 0; i < 6; i++)
		pthread_join(t[i], NULL);
	srv__par_free(p);
}

Test(par, free_null)
{
	srv__par_free(NULL);
	cr_assert_null(srv__par_hook(NULL));
}
