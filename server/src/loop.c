/*
 * loop.c - the libuv loop thread: hand-off queue in, worker pool out.
 *
 * libmicrohttpd threads call srv__loop_submit, which appends the job to one
 * locked queue and pokes a uv_async handle. uv_async_send coalesces, so the
 * loop drains the whole queue on every wake-up and queues each job with
 * uv_queue_work (which may only be called on the loop thread). The job's
 * done() runs on the loop thread in the after-work callback; http.c resumes
 * the suspended connection there.
 *
 * The store lane. A stream write waits for its group commit (store.c),
 * and a disk that stalls (a frozen file system, a dying device) makes that
 * wait as long as the stall. On libuv's pool such waits would take every
 * worker and starve /v1/loss and /v1/auc, so SRV_LANE_STORE jobs run on
 * threads of their own: srv__loop_submit puts them on the store queue,
 * and a store thread runs them and then calls their done() itself (http.c
 * resumes the connection from there, which libmicrohttpd allows from any
 * thread): passing them back to the loop thread cost a wake-up of it, two
 * context switches, per durable update. A stream update does not wait
 * for its commit at all: its run() submits the op and returns nonzero,
 * the store's committer finishes it (srv__loop_finish) with the rest of
 * its group, and the store thread takes the next job at once (a sleep and
 * a wake-up per update fewer). Such a job is `quick`: while as many quick
 * jobs run as there are cores (`scap`), a new one wakes no thread and
 * waits for one of them, which takes it without sleeping (a burst of
 * updates costs no wake-up each). It cannot wait forever: a quick job
 * never waits on a queued job. Other store jobs still wait, and always
 * wake a thread, so there may be more store threads than cores: one per store job admitted (http.c
 * admits at most half of --max-inflight), started when a job finds no
 * idle one and kept. A job that waited in the queue for a thread would
 * join a later commit group instead of the one in progress: with a few
 * threads, 32 writers made groups of about 1.2 and the disk's fsync rate
 * the ceiling (issue 19).
 *
 * Lock order: srv__loop.mu is a leaf; done() and run() are called without it.
 * Invariants: a job is in one queue or in libuv's pool or running, never
 * two of these; the loop ends only when stop was asked AND the queue is
 * empty AND no work is pending (libuv keeps the loop alive while work
 * requests are pending) AND no store job awaits its done() (`souts`: the
 * store thread that brings it to 0 after stop pokes the loop to end).
 * It does not bound the queues: http.c admits at most --max-inflight jobs.
 */
#include "loop.h"
#include "thread.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct srv__loop {
	uv_loop_t loop;
	uv_async_t async;
	uv_thread_t thread;
	pthread_mutex_t mu;
	srv__job *head, *tail; /* under mu */
	bool stop;             /* under mu */
	/* the store lane, under mu */
	pthread_cond_t scv;      /* a store job was queued, or sstop */
	srv__job *shead, *stail; /* store jobs waiting for a store thread */
	int souts;               /* store jobs submitted whose done() has not returned */
	bool sstop;
	pthread_t *sthreads;
	int nstore, smax; /* store threads started, and the most there may be */
	int sidle;        /* of them waiting for a job */
	int squick;       /* of them running a quick job */
	int swake;        /* idle, signalled and not awake yet (<= sidle) */
	int scap;         /* quick jobs run at once before they queue: the cores */
};

static void push(srv__job **head, srv__job **tail, srv__job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void work_cb(uv_work_t *w)
{
	static _Thread_local bool named; /* libuv's pool threads, once each */
	srv__job *job = w->data;
	if (!named) {
		srv__thread_name("lossd-work");
		named = true;
	}
	(void)job->run(job);
}

static void after_cb(uv_work_t *w, int status)
{
	srv__job *job = w->data;
	job->done(job, status == UV_ECANCELED);
}

static void async_cb(uv_async_t *a)
{
	srv__loop *l = a->data;
	srv__job *list;
	bool stop;

	pthread_mutex_lock(&l->mu);
	list = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->mu);

	while (list) {
		srv__job *job = list;
		list = job->next;
		job->next = NULL;
		job->work.data = job;
		if (uv_queue_work(&l->loop, &job->work, work_cb, after_cb) != 0)
			job->done(job, 1);
	}
	pthread_mutex_lock(&l->mu);
	stop = l->stop && l->souts == 0 && !l->head;
	pthread_mutex_unlock(&l->mu);
	/* Closing the handle lets uv_run return once pending work is done. */
	if (stop && !uv_is_closing((uv_handle_t *)&l->async))
		uv_close((uv_handle_t *)&l->async, NULL);
}

static int store_grow(srv__loop *l);
static bool store_wake(srv__loop *l);

/* The store thread's current job, for srv__loop_blocking. */
static _Thread_local srv__loop *tl_loop;
static _Thread_local bool tl_quick, tl_blocked;

void srv__loop_blocking(bool on)
{
	srv__loop *l = tl_loop;
	if (!l || !tl_quick || tl_blocked == on)
		return;
	tl_blocked = on;
	bool wake = false;
	pthread_mutex_lock(&l->mu);
	if (on) {
		l->squick--;
		/* a queued quick job may be waiting for this thread */
		if (l->shead)
			wake = store_wake(l);
	} else {
		l->squick++;
	}
	pthread_mutex_unlock(&l->mu);
	if (wake)
		pthread_cond_signal(&l->scv);
}

static void *store_main(void *arg)
{
	srv__loop *l = arg;
	srv__thread_name("lossd-store");
	pthread_mutex_lock(&l->mu);
	for (;;) {
		l->sidle++;
		while (!l->shead && !l->sstop) {
			pthread_cond_wait(&l->scv, &l->mu);
			/* awake: one signal taken (or none, if spurious) */
			if (l->swake > 0)
				l->swake--;
		}
		l->sidle--;
		if (!l->shead)
			break; /* sstop, and nothing left */
		srv__job *job = l->shead;
		l->shead = job->next;
		if (!l->shead)
			l->stail = NULL;
		bool quick = job->quick;
		l->squick += quick;
		pthread_mutex_unlock(&l->mu);
		job->next = NULL;
		tl_loop = l;
		tl_quick = quick;
		tl_blocked = false;
		if (!job->run(job))
			srv__loop_finish(l, job); /* job may be gone from here */
		pthread_mutex_lock(&l->mu);
		l->squick -= quick && !tl_blocked;
		tl_quick = tl_blocked = false;
	}
	pthread_mutex_unlock(&l->mu);
	return NULL;
}

static void loop_main(void *arg)
{
	srv__loop *l = arg;
	srv__thread_name("lossd-loop");
	uv_run(&l->loop, UV_RUN_DEFAULT);
}

/* Stops and joins the store threads (their queue must be empty). */
static void store_stop(srv__loop *l)
{
	pthread_mutex_lock(&l->mu);
	l->sstop = true;
	pthread_cond_broadcast(&l->scv);
	pthread_mutex_unlock(&l->mu);
	for (int i = 0; i < l->nstore; i++)
		pthread_join(l->sthreads[i], NULL);
	free(l->sthreads);
	l->sthreads = NULL;
	l->nstore = 0;
}

/* Under mu, for a job just queued: true when an idle thread that no one
 * signalled yet is there (counted in swake; the caller signals after the
 * unlock), else a thread is started for it (a thread that cannot start is
 * not an error: the queue drains). swake counts only signals an idle
 * thread will take, each undone by its wake-up, so it never stays up
 * after a job was taken by another thread (a leak of it would stop
 * quick jobs from waking anyone). */
static bool store_wake(srv__loop *l)
{
	if (l->sidle > l->swake) {
		l->swake++;
		return true;
	}
	(void)store_grow(l);
	return false;
}

/* Starts one more store thread if the limit allows. l->mu held. */
static int store_grow(srv__loop *l)
{
	if (l->nstore >= l->smax ||
	    pthread_create(&l->sthreads[l->nstore], NULL, store_main, l) != 0)
		return -1;
	l->nstore++;
	return 0;
}

srv__loop *srv__loop_start(int nworkers, int nstore)
{
	srv__loop *l = calloc(1, sizeof(*l));
	char n[16];

	if (!l)
		return NULL;
	snprintf(n, sizeof(n), "%d", nworkers < 1 ? 1 : nworkers);
	setenv("UV_THREADPOOL_SIZE", n, 1);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->scv, NULL);
	if (uv_loop_init(&l->loop) != 0)
		goto fail_mu;
	if (uv_async_init(&l->loop, &l->async, async_cb) != 0)
		goto fail_loop;
	l->async.data = l;
	if (nstore < 1)
		nstore = 1;
	l->sthreads = calloc((size_t)nstore, sizeof(*l->sthreads));
	if (!l->sthreads)
		goto fail_async;
	l->smax = nstore;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	l->scap = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
	/* a few now, the rest as jobs find none idle (srv__loop_submit) */
	while (l->nstore < (nstore < 4 ? nstore : 4))
		if (store_grow(l))
			goto fail_store;
	if (uv_thread_create(&l->thread, loop_main, l) != 0)
		goto fail_store;
	return l;

fail_store:
	store_stop(l);
fail_async:
	uv_close((uv_handle_t *)&l->async, NULL);
	uv_run(&l->loop, UV_RUN_DEFAULT);
fail_loop:
	uv_loop_close(&l->loop);
fail_mu:
	pthread_cond_destroy(&l->scv);
	pthread_mutex_destroy(&l->mu);
	free(l->sthreads);
	free(l);
	return NULL;
}

void srv__loop_submit(srv__loop *l, srv__job *job)
{
	pthread_mutex_lock(&l->mu);
	if (job->lane == SRV_LANE_STORE) {
		l->souts++;
		push(&l->shead, &l->stail, job);
		/* Enough quick jobs running (or about to) to keep the cores
		 * busy: one of them takes this one when done (it never waits
		 * on a queued job), and no thread is woken. */
		if (job->quick && l->squick + l->swake >= l->scap) {
			pthread_mutex_unlock(&l->mu);
			return;
		}
		bool wake = store_wake(l);
		pthread_mutex_unlock(&l->mu);
		/* After the unlock: the woken thread does not wait for mu. */
		if (wake)
			pthread_cond_signal(&l->scv);
		return;
	}
	push(&l->head, &l->tail, job);
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->async);
}

void srv__loop_finish(srv__loop *l, srv__job *job)
{
	job->done(job, 0); /* job may be gone from here */
	pthread_mutex_lock(&l->mu);
	/* The last one after a stop was asked: the loop may end now. */
	if (--l->souts == 0 && l->stop)
		uv_async_send(&l->async);
	pthread_mutex_unlock(&l->mu);
}

void srv__loop_stop(srv__loop *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stop = true;
	pthread_mutex_unlock(&l->mu);
	uv_async_send(&l->async);
	uv_thread_join(&l->thread);
	store_stop(l);
	uv_loop_close(&l->loop);
	pthread_cond_destroy(&l->scv);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
