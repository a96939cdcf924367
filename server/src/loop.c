/*
 * loop.c - the libuv loop thread: hand-off queue in, worker pool out.
 *
 * libmicrohttpd threads call srv_loop_submit, which appends the job to one
 * locked queue and pokes a uv_async handle. uv_async_send coalesces, so the
 * loop drains the whole queue on every wake-up and queues each job with
 * uv_queue_work (which may only be called on the loop thread). The job's
 * done() runs on the loop thread in the after-work callback; http.c resumes
 * the suspended connection there.
 *
 * Lock order: srv_loop.mu is a leaf; done() and run() are called without it.
 * Invariants: a job is in the queue or in libuv's pool, never both; the loop
 * ends only when stop was asked AND the queue is empty AND no work is
 * pending (libuv keeps the loop alive while work requests are pending).
 * It does not bound the queue: http.c admits at most --max-inflight jobs.
 */
#include "loop.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

struct srv_loop {
	uv_loop_t loop;
	uv_async_t async;
	uv_thread_t thread;
	pthread_mutex_t mu;
	srv_job *head, *tail; /* under mu */
	bool stop;            /* under mu */
};

static void work_cb(uv_work_t *w)
{
	srv_job *job = w->data;
	job->run(job);
}

static void after_cb(uv_work_t *w, int status)
{
	srv_job *job = w->data;
	job->done(job, status == UV_ECANCELED);
}

static void async_cb(uv_async_t *a)
{
	srv_loop *l = a->data;
	srv_job *list;
	bool stop;

	pthread_mutex_lock(&l->mu);
	list = l->head;
	l->head = l->tail = NULL;
	stop = l->stop;
	pthread_mutex_unlock(&l->mu);

	while (list) {
		srv_job *job = list;
		list = job->next;
		job->next = NULL;
		job->work.data = job;
		if (uv_queue_work(&l->loop, &job->work, work_cb, after_cb) != 0)
			job->done(job, 1);
	}
	/* Closing the handle lets uv_run return once pending work is done. */
	if (stop && !uv_is_closing((uv_handle_t *)&l->async))
		uv_close((uv_handle_t *)&l->async, NULL);
}

static void loop_main(void *arg)
{
	srv_loop *l = arg;
	uv_run(&l->loop, UV_RUN_DEFAULT);
}

srv_loop *srv_loop_start(int nworkers)
{
	srv_loop *l = calloc(1, sizeof(*l));
	char n[16];

	if (!l)
		return NULL;
	snprintf(n, sizeof(n), "%d", nworkers < 1 ? 1 : nworkers);
	setenv("UV_THREADPOOL_SIZE", n, 1);
	pthread_mutex_init(&l->mu, NULL);
	if (uv_loop_init(&l->loop) != 0)
		goto fail_mu;
	if (uv_async_init(&l->loop, &l->async, async_cb) != 0)
		goto fail_loop;
	l->async.data = l;
	if (uv_thread_create(&l->thread, loop_main, l) != 0)
		goto fail_async;
	return l;

fail_async:
	uv_close((uv_handle_t *)&l->async, NULL);
	uv_run(&l->loop, UV_RUN_DEFAULT);
fail_loop:
	uv_loop_close(&l->loop);
fail_mu:
	pthread_mutex_destroy(&l->mu);
	free(l);
	return NULL;
}

void srv_loop_submit(srv_loop *l, srv_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&l->mu);
	if (l->tail)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->async);
}

void srv_loop_stop(srv_loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->async);
	uv_thread_join(&l->thread);
	uv_loop_close(&l->loop);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
