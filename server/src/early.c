/*
 * early.c - the helper thread of a loss started as its body arrives.
 *
 * Why: the HTTP thread of a large base64 /v1/loss body decodes as fast as
 * it can (api/src/body.c) and is the bound of the request; the loss pass
 * that follows the last byte was 7-9% of it. When y_pred's string starts
 * and everything else came before it, the api layer can guess the request
 * and plan the loss (api_loss_early_*); a helper thread here runs the
 * plan's tasks on the rows decoded so far, off the HTTP thread, so when
 * the last byte arrives only the tail rows and the reduction remain. The
 * same for y_pred as nested JSON arrays: body.c lifts each row into
 * float64 values as it closes, and publishes those rows' bytes the same
 * way (api_body_decoding: one id per array).
 * api/src/loss.c says why the reply is bit for bit the buffered one.
 *
 * How: the HTTP thread publishes how many bytes of the string are decoded
 * for good (api_body_decoding) under mu, every EARLY_STEP bytes, and
 * signals; the helper prepares the guess (parse, tensors, plan), then runs
 * each task once its rows are covered, re-reading `ready` between tasks,
 * and waits on cv for more. The mutex orders the arena's bytes before the
 * helper reads them. The request's end (answered, failed or cut off)
 * sets stop and joins: the helper ends after at most one task (a few
 * milliseconds), before the arena it reads is given back.
 *
 * Memory: the plan's partial tables (up to ~32 MiB) are taken from the
 * request's body budget before they are allocated (budget.c; refused:
 * no early start) and given back when they are freed (api/src/loss.c
 * calls take and give).
 *
 * Bounds: SRV_EARLY_MAX helpers in the server, two tries per request (a
 * long y_true before y_pred takes the first); a string or array with
 * fewer than EARLY_MIN bytes decoded (rows' values) never starts one.
 *
 * Lock order: k->mu is a leaf.
 */
#include "early.h"
#include "thread.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#define EARLY_MIN   ((size_t)256 << 10) /* decoded bytes before a helper starts */
#define EARLY_STEP  ((size_t)256 << 10) /* bytes between hand-overs */
#define EARLY_TRIES 2

struct srv__early {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t id;        /* the string (api_body_decoding) */
	size_t ready;     /* its bytes decoded for good; under mu */
	size_t published; /* the HTTP thread's copy of ready */
	bool stop;        /* under mu */
	bool planned;     /* the helper's; read after the join */
	api_early *e;
};

static void *helper(void *arg)
{
	srv__early *k = arg;
	size_t ready = 0;
	bool stop = false;
	srv__thread_name("lossd-early");

	if (api_loss_early_prepare(k->e))
		return NULL;
	k->planned = true;
	while (!stop) {
		pthread_mutex_lock(&k->mu);
		while (!k->stop && k->ready == ready)
			pthread_cond_wait(&k->cv, &k->mu);
		ready = k->ready;
		stop = k->stop;
		pthread_mutex_unlock(&k->mu);
		while (!stop && api_loss_early_step(k->e, ready)) {
			pthread_mutex_lock(&k->mu);
			ready = k->ready;
			stop = k->stop;
			pthread_mutex_unlock(&k->mu);
		}
	}
	return NULL;
}

api_early *srv__early_end(srv__early **ep, atomic_int *running)
{
	srv__early *k = *ep;
	api_early *e;

	if (!k)
		return NULL;
	*ep = NULL;
	pthread_mutex_lock(&k->mu);
	k->stop = true;
	pthread_cond_signal(&k->cv);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->th, NULL);
	atomic_fetch_sub(running, 1);
	e = k->e;
	if (!k->planned) {
		api_loss_early_free(e);
		e = NULL;
	}
	pthread_cond_destroy(&k->cv);
	pthread_mutex_destroy(&k->mu);
	free(k);
	return e;
}

static bool take(void *arg, size_t n)
{
	const srv__early_budget *bud = arg;
	return srv__budget_take(bud->budget, bud->principal, bud->ro, n);
}

static void give(void *arg, size_t n)
{
	const srv__early_budget *bud = arg;
	srv__budget_give(bud->budget, bud->principal, bud->ro, n);
}

/* A helper on the string b is decoding (id), or nothing. */
static srv__early *start(atomic_int *running, const api_ctx *ctx, const api_body *b, size_t id,
                         size_t ready, const srv__early_budget *bud)
{
	srv__early *k;

	if (atomic_fetch_add(running, 1) >= SRV_EARLY_MAX) {
		atomic_fetch_sub(running, 1);
		return NULL;
	}
	if (!(k = calloc(1, sizeof(*k))))
		goto fail;
	k->id = id;
	k->ready = k->published = ready;
	if (api_loss_early_new(&k->e, ctx, b))
		goto fail;
	if (bud && bud->budget)
		api_loss_early_budget(k->e, take, give, (void *)bud);
	if (pthread_mutex_init(&k->mu, NULL))
		goto fail;
	if (pthread_cond_init(&k->cv, NULL)) {
		pthread_mutex_destroy(&k->mu);
		goto fail;
	}
	if (pthread_create(&k->th, NULL, helper, k)) {
		pthread_cond_destroy(&k->cv);
		pthread_mutex_destroy(&k->mu);
		goto fail;
	}
	return k;
fail:
	if (k)
		api_loss_early_free(k->e);
	free(k);
	atomic_fetch_sub(running, 1);
	return NULL;
}

void srv__early_feed(srv__early **ep, int *tries, atomic_int *running, const api_ctx *ctx,
                     const api_body *b, const srv__early_budget *bud)
{
	srv__early *k = *ep;
	size_t id, ready = api_body_decoding(b, &id);

	if (ready == SIZE_MAX)
		return;
	if (k && k->id == id) {
		if (ready - k->published < EARLY_STEP)
			return;
		k->published = ready;
		pthread_mutex_lock(&k->mu);
		k->ready = ready;
		pthread_cond_signal(&k->cv);
		pthread_mutex_unlock(&k->mu);
		return;
	}
	if (ready < EARLY_MIN || *tries >= EARLY_TRIES)
		return;
	/* another long string: a guess on the one before cannot hold
	 * (y_pred's string must end the request) */
	api_loss_early_free(srv__early_end(ep, running));
	++*tries;
	*ep = start(running, ctx, b, id, ready, bud);
}
