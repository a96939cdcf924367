/*
 * race_server.c - the server's hand-off machinery under many threads, as a
 * plain executable so it runs under ThreadSanitizer (where Criterion
 * aborts): srv__par's work sharing with more callers than helpers, and
 * srv__loop's locked queue fed by several threads at once, a third of the
 * jobs going to the store lane's threads. Exits 0 when
 * every task and job ran exactly once, every pool job's done() ran on the
 * loop thread and every store job's on the thread that ran it, and a stop
 * asked while store jobs are still running waits for their done(); prints
 * what went wrong and exits 1 otherwise.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "loop.h"
#include "par.h"

static int failures;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "race_server: " __VA_ARGS__);                              \
			fputc('\n', stderr);                                                       \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

/* ---- srv__par ---------------------------------------------------------- */

struct tasks {
	atomic_int hits[512];
	double partial[512]; /* written by exactly one task each */
};

static void task(void *arg, int64_t t)
{
	struct tasks *ts = arg;
	atomic_fetch_add(&ts->hits[t], 1);
	ts->partial[t] = (double)t * 0.5;
}

static void *par_caller(void *arg)
{
	const eng_parallel *p = arg;
	int bad = 0;

	for (int round = 0; round < 300; round++) {
		struct tasks *ts = calloc(1, sizeof(*ts));
		int64_t n = 1 + (round * 53) % 512;
		double sum = 0;
		if (!ts)
			return (void *)1;
		eng_parallel_for(p, n, task, ts);
		for (int64_t i = 0; i < n; i++) {
			if (atomic_load(&ts->hits[i]) != 1)
				bad++;
			sum += ts->partial[i];
		}
		if (sum != 0.25 * (double)n * (double)(n - 1))
			bad++;
		free(ts);
	}
	return (void *)(intptr_t)bad;
}

/* ---- srv__loop ---------------------------------------------------------- */

#define SUBMITTERS 4
#define JOBS       500

struct myjob {
	srv__job job; /* first */
	atomic_int ran;
	atomic_int finished;
	pthread_t ran_on; /* written by run(), read by done() */
	bool deferred;    /* run() returns 1: another thread finishes it */
	struct myjob *next;
};

static atomic_int done_count;
static atomic_int wrong_thread;
static pthread_t loop_thread;
static atomic_int loop_thread_set;

static int job_run(srv__job *j)
{
	struct myjob *m = (struct myjob *)j;
	m->ran_on = pthread_self();
	atomic_fetch_add(&m->ran, 1);
	return 0;
}

static void job_done(srv__job *j, int cancelled)
{
	struct myjob *m = (struct myjob *)j;
	int expected = 0;

	if (j->lane == SRV_LANE_STORE) {
		/* a store job's done() right after its run(), on its thread
		 * (a deferred one's on the finisher's) */
		if (!m->deferred && !pthread_equal(m->ran_on, pthread_self()))
			atomic_fetch_add(&wrong_thread, 1);
	} else if (atomic_compare_exchange_strong(&loop_thread_set, &expected, 1)) {
		loop_thread = pthread_self();
	} else if (!pthread_equal(loop_thread, pthread_self())) {
		atomic_fetch_add(&wrong_thread, 1);
	}
	if (cancelled)
		atomic_fetch_add(&wrong_thread, 1000);
	atomic_fetch_add(&m->finished, 1);
	atomic_fetch_add(&done_count, 1);
}

/* A store job that waits a little, as one waiting on a commit. */
static int slow_run(srv__job *j)
{
	struct timespec ts = {0, 2000000};
	nanosleep(&ts, NULL);
	return job_run(j);
}

/* Deferred store jobs (as a stream update whose commit finishes it):
 * run() hands the job to the finisher thread and returns 1. */
static pthread_mutex_t fin_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fin_cv = PTHREAD_COND_INITIALIZER;
static struct myjob *fin_head;
static bool fin_stop;

static int deferred_run(srv__job *j)
{
	struct myjob *m = (struct myjob *)j;
	(void)job_run(j);
	pthread_mutex_lock(&fin_mu);
	m->next = fin_head;
	fin_head = m;
	pthread_cond_signal(&fin_cv);
	pthread_mutex_unlock(&fin_mu);
	return 1;
}

static void *finisher(void *arg)
{
	srv__loop *l = arg;
	pthread_mutex_lock(&fin_mu);
	for (;;) {
		while (!fin_head && !fin_stop)
			pthread_cond_wait(&fin_cv, &fin_mu);
		if (!fin_head)
			break;
		struct myjob *m = fin_head;
		fin_head = m->next;
		pthread_mutex_unlock(&fin_mu);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL); /* a commit */
		srv__loop_finish(l, &m->job);
		pthread_mutex_lock(&fin_mu);
	}
	pthread_mutex_unlock(&fin_mu);
	return NULL;
}

/* A quick store job that blocks (as an update waiting on a key lookup
 * says so with srv__loop_blocking) while others are queued behind it. */
static int blocking_run(srv__job *j)
{
	struct timespec ts = {0, 50000};
	srv__loop_blocking(true);
	nanosleep(&ts, NULL);
	srv__loop_blocking(false);
	return job_run(j);
}

struct feed {
	srv__loop *loop;
	struct myjob *jobs;
};

static void *submitter(void *arg)
{
	struct feed *f = arg;
	for (int i = 0; i < JOBS; i++) {
		f->jobs[i].job.run = job_run;
		f->jobs[i].job.done = job_done;
		/* every third job on the store lane's own threads */
		f->jobs[i].job.lane = i % 3 == 0 ? SRV_LANE_STORE : 0;
		/* half of those quick (loop.h): they may queue for a running
		 * thread instead of waking one, and must all run all the same */
		f->jobs[i].job.quick = i % 6 == 0;
		srv__loop_submit(f->loop, &f->jobs[i].job);
	}
	return NULL;
}

int main(void)
{
	srv__par *p = srv__par_new(3);
	pthread_t t[SUBMITTERS > 6 ? SUBMITTERS : 6];
	struct feed feeds[SUBMITTERS];
	srv__loop *loop;
	struct timespec ts = {0, 1000000};

	CHECK(p != NULL, "srv__par_new failed");
	if (!p)
		return 1;
	for (int i = 0; i < 6; i++)
		pthread_create(&t[i], NULL, par_caller, (void *)srv__par_hook(p));
	for (int i = 0; i < 6; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		CHECK(bad == NULL, "par caller %d saw %ld wrong results", i, (long)(intptr_t)bad);
	}
	srv__par_free(p);

	loop = srv__loop_start(3, 2);
	CHECK(loop != NULL, "srv__loop_start failed");
	if (!loop)
		return 1;
	for (int i = 0; i < SUBMITTERS; i++) {
		feeds[i].loop = loop;
		feeds[i].jobs = calloc(JOBS, sizeof(struct myjob));
		pthread_create(&t[i], NULL, submitter, &feeds[i]);
	}
	for (int i = 0; i < SUBMITTERS; i++)
		pthread_join(t[i], NULL);
	for (int w = 0; w < 30000 && atomic_load(&done_count) < SUBMITTERS * JOBS; w++)
		nanosleep(&ts, NULL);
	CHECK(atomic_load(&done_count) == SUBMITTERS * JOBS, "%d of %d jobs done",
	      atomic_load(&done_count), SUBMITTERS * JOBS);
	srv__loop_stop(loop);
	CHECK(atomic_load(&wrong_thread) == 0,
	      "done() off the loop thread (pool) or its run()'s thread (store), or "
	      "cancelled: %d",
	      atomic_load(&wrong_thread));
	for (int i = 0; i < SUBMITTERS; i++) {
		for (int j = 0; j < JOBS; j++)
			CHECK(atomic_load(&feeds[i].jobs[j].ran) == 1 &&
			              atomic_load(&feeds[i].jobs[j].finished) == 1,
			      "job %d/%d ran %d, done %d", i, j, atomic_load(&feeds[i].jobs[j].ran),
			      atomic_load(&feeds[i].jobs[j].finished));
		free(feeds[i].jobs);
	}

	/* A stop asked while store jobs run (slowly) returns after their done(). */
	loop = srv__loop_start(2, 4);
	CHECK(loop != NULL, "srv__loop_start failed");
	if (!loop)
		return 1;
	struct myjob *slow = calloc(16, sizeof(*slow));
	for (int i = 0; i < 16; i++) {
		slow[i].job.run = slow_run;
		slow[i].job.done = job_done;
		slow[i].job.lane = SRV_LANE_STORE;
		srv__loop_submit(loop, &slow[i].job);
	}
	srv__loop_stop(loop);
	for (int i = 0; i < 16; i++)
		CHECK(atomic_load(&slow[i].ran) == 1 && atomic_load(&slow[i].finished) == 1,
		      "slow store job %d: ran %d, done %d by the time the stop returned", i,
		      atomic_load(&slow[i].ran), atomic_load(&slow[i].finished));
	free(slow);

	/* Deferred store jobs: finished by another thread, and a stop asked
	 * meanwhile returns only after every done(). */
	loop = srv__loop_start(2, 4);
	CHECK(loop != NULL, "srv__loop_start failed");
	if (!loop)
		return 1;
	pthread_t fin;
	pthread_create(&fin, NULL, finisher, loop);
	struct myjob *later = calloc(64, sizeof(*later));
	atomic_store(&wrong_thread, 0);
	for (int i = 0; i < 64; i++) {
		later[i].deferred = true;
		later[i].job.run = deferred_run;
		later[i].job.done = job_done;
		later[i].job.lane = SRV_LANE_STORE;
		later[i].job.quick = i % 2 == 0;
		srv__loop_submit(loop, &later[i].job);
	}
	srv__loop_stop(loop);
	for (int i = 0; i < 64; i++)
		CHECK(atomic_load(&later[i].ran) == 1 && atomic_load(&later[i].finished) == 1,
		      "deferred store job %d: ran %d, done %d by the time the stop returned", i,
		      atomic_load(&later[i].ran), atomic_load(&later[i].finished));
	CHECK(atomic_load(&wrong_thread) == 0, "a deferred job was cancelled");
	pthread_mutex_lock(&fin_mu);
	fin_stop = true;
	pthread_cond_signal(&fin_cv);
	pthread_mutex_unlock(&fin_mu);
	pthread_join(fin, NULL);
	free(later);

	/* Waves of quick jobs that block (srv__loop_blocking) while others
	 * queue: every wave runs to the end, none is left queued with the
	 * store threads idle. */
	loop = srv__loop_start(2, 2);
	CHECK(loop != NULL, "srv__loop_start failed");
	if (!loop)
		return 1;
	enum { WAVES = 300, WAVE = 3 };
	struct myjob *wave = calloc((size_t)WAVES * WAVE, sizeof(*wave));
	atomic_store(&done_count, 0);
	for (int w = 0; w < WAVES; w++) {
		for (int i = 0; i < WAVE; i++) {
			struct myjob *m = &wave[w * WAVE + i];
			m->job.run = blocking_run;
			m->job.done = job_done;
			m->job.lane = SRV_LANE_STORE;
			m->job.quick = true;
			srv__loop_submit(loop, &m->job);
		}
		int want = (w + 1) * WAVE;
		for (int k = 0; k < 10000 && atomic_load(&done_count) < want; k++)
			nanosleep(&ts, NULL);
		if (atomic_load(&done_count) < want) {
			CHECK(0, "wave %d: %d of %d quick jobs done after 10 s", w,
			      atomic_load(&done_count), want);
			return 1; /* a stop would wait for the stuck queue */
		}
	}
	srv__loop_stop(loop);
	free(wave);
	if (failures)
		return 1;
	printf("race_server: ok\n");
	return 0;
}
