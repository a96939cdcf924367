/*
 * par.c - eng_parallel's for_each as work sharing on helper threads.
 *
 * A call to for_each publishes a job (on the caller's stack) in a list,
 * wakes the helpers and then claims task indices itself from the job's
 * atomic counter, like every helper that joins. It returns when every task
 * has finished and no helper still holds the job. Because the caller claims
 * too, a for_each completes even when every helper is busy with other jobs
 * (or there are none): it just runs all the tasks itself. So there is no
 * deadlock however many workers call for_each at once, and the helpers
 * only ever speed things up.
 *
 * The libuv worker threads call for_each; helpers are plain pthreads owned
 * here (uv_queue_work may only be called from the loop thread, and a
 * worker waiting on another pool's slot could deadlock the pool).
 *
 * Lock order: srv__par.mu is the only lock; tasks run without it.
 * Invariants: a job is in the list only while it may have unclaimed tasks;
 * job->helpers counts helpers that hold a pointer to it, changed under mu,
 * and the caller returns only when that count is 0 and done == ntasks.
 * Tasks must not call for_each (eng.h says so); nothing nests.
 */
#include "par.h"
#include "thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct job {
	eng_task_fn fn;
	void *arg;
	int64_t ntasks;
	atomic_int_fast64_t next; /* next unclaimed task */
	int64_t done;             /* finished tasks; under mu */
	int helpers;              /* helpers holding this job; under mu */
	bool listed;              /* in the list; under mu */
	struct job *prev, *nextjob;
} job;

struct srv__par {
	eng_parallel hook;
	pthread_mutex_t mu;
	pthread_cond_t work; /* a job was listed, or stop */
	pthread_cond_t done; /* some job's done/helpers changed */
	job *head, *tail;
	bool stop;
	int nthreads;
	pthread_t *threads;
};

/* Claims and runs tasks until none is left; returns how many it ran. */
static int64_t run_claims(job *j)
{
	int64_t n = 0;
	for (;;) {
		int64_t t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
		if (t >= j->ntasks)
			return n;
		j->fn(j->arg, t);
		n++;
	}
}

/* Under mu. */
static void unlist(srv__par *p, job *j)
{
	if (!j->listed)
		return;
	if (j->prev)
		j->prev->nextjob = j->nextjob;
	else
		p->head = j->nextjob;
	if (j->nextjob)
		j->nextjob->prev = j->prev;
	else
		p->tail = j->prev;
	j->prev = j->nextjob = NULL;
	j->listed = false;
}

static void *helper_main(void *arg)
{
	srv__par *p = arg;
	srv__thread_name("lossd-par");

	pthread_mutex_lock(&p->mu);
	for (;;) {
		job *j;
		int64_t n;
		while (!p->stop && !p->head)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->stop)
			break;
		j = p->head;
		j->helpers++;
		pthread_mutex_unlock(&p->mu);

		n = run_claims(j);

		pthread_mutex_lock(&p->mu);
		/* Nothing left to claim: stop others from picking it up. */
		unlist(p, j);
		j->done += n;
		j->helpers--;
		if (j->helpers == 0 && j->done == j->ntasks)
			pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void for_each(const eng_parallel *self, int64_t ntasks, eng_task_fn fn, void *arg)
{
	srv__par *p = self->impl;
	job j;
	int64_t n;

	if (ntasks <= 0)
		return;
	if (ntasks == 1 || p->nthreads == 0) {
		for (int64_t t = 0; t < ntasks; t++)
			fn(arg, t);
		return;
	}
	j.fn = fn;
	j.arg = arg;
	j.ntasks = ntasks;
	atomic_init(&j.next, 0);
	j.done = 0;
	j.helpers = 0;
	j.prev = j.nextjob = NULL;

	pthread_mutex_lock(&p->mu);
	j.listed = true;
	j.prev = p->tail;
	if (p->tail)
		p->tail->nextjob = &j;
	else
		p->head = &j;
	p->tail = &j;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);

	n = run_claims(&j);

	pthread_mutex_lock(&p->mu);
	unlist(p, &j);
	j.done += n;
	while (j.done < j.ntasks || j.helpers > 0)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

srv__par *srv__par_new(int nhelpers)
{
	srv__par *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	if (nhelpers < 0)
		nhelpers = 0;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->hook.for_each = for_each;
	p->hook.nthreads = nhelpers + 1;
	p->hook.impl = p;
	if (nhelpers) {
		p->threads = calloc((size_t)nhelpers, sizeof(pthread_t));
		if (!p->threads)
			goto fail;
	}
	for (int i = 0; i < nhelpers; i++) {
		if (pthread_create(&p->threads[i], NULL, helper_main, p) != 0)
			goto fail;
		p->nthreads++;
	}
	return p;
fail:
	srv__par_free(p);
	return NULL;
}

void srv__par_free(srv__par *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}

const eng_parallel *srv__par_hook(srv__par *p)
{
	return p ? &p->hook : NULL;
}
