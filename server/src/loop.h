/*
 * loop.h - the libuv loop thread and its worker pool.
 */
#ifndef LOSSD_SERVER_LOOP_H
#define LOSSD_SERVER_LOOP_H

#include <stdbool.h>
#include <uv.h>

typedef struct srv__job srv__job;

/* A unit of work: run() on a worker thread, then done() (cancelled != 0
 * if the loop is stopping and run() never ran). lane 0 runs on libuv's
 * pool and done() on the loop thread; lane SRV_LANE_STORE runs on the
 * store's own threads (work that may wait on the disk), and done() right
 * after run() on the same thread, never cancelled, unless run() returned
 * nonzero: then the job finishes later, from whichever thread calls
 * srv__loop_finish for it (a stream write's group commit), and run()'s
 * thread takes the next job meanwhile. run() returns 0 on lane 0. */
#define SRV_LANE_STORE 1
struct srv__job {
	uv_work_t work; /* private to loop.c */
	srv__job *next; /* private to loop.c */
	int lane;       /* 0 or SRV_LANE_STORE; set before srv__loop_submit */
	/* SRV_LANE_STORE: run() computes and seldom waits, and never on another
	 * queued job (a stream update on SQLite: it does not wait for its
	 * commit; where it may wait, it says so: srv__loop_blocking). Such a
	 * job wakes a store thread only while fewer quick jobs run than there
	 * are cores; else one of those takes it when done. */
	bool quick;
	int (*run)(srv__job *job);
	void (*done)(srv__job *job, int cancelled);
};

typedef struct srv__loop srv__loop;

/*
 * Sets UV_THREADPOOL_SIZE to nworkers (libuv reads it once, at the first
 * uv_queue_work in the process, so this must come first), starts the
 * loop thread and up to nstore threads for SRV_LANE_STORE jobs (a few at
 * once, more as jobs find none idle). Returns a new loop (stop with
 * srv__loop_stop) or NULL. Main thread.
 */
srv__loop *srv__loop_start(int nworkers, int nstore);

/* Hands job to the loop. The loop thread queues it on the worker pool.
 * The job must stay valid until its done() runs. Any thread. */
void srv__loop_submit(srv__loop *l, srv__job *job);

/* A quick store job (loop.h's `quick`) is about to wait (on == true: on
 * the disk, on another request's commit) or is done waiting: while it
 * waits it does not count as running, and a queued job gets a thread.
 * Pairs; a no-op on any other thread or job. */
void srv__loop_blocking(bool on);

/* Finishes a store job whose run() returned nonzero: calls its done()
 * (job may be gone once it returns). Any thread, no lock held. */
void srv__loop_finish(srv__loop *l, srv__job *job);

/* Stops the loop once every submitted job's done() has run, joins the
 * loop thread and frees l. Accepts NULL. Main thread. */
void srv__loop_stop(srv__loop *l);

#endif
