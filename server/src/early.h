/*
 * early.h - a /v1/loss loss started on the rows already decoded, on a
 * helper thread, while the rest of the body arrives (early.c).
 */
#ifndef LOSSD_SERVER_EARLY_H
#define LOSSD_SERVER_EARLY_H

#include <stdatomic.h>

#include "lossd/api.h"
#include "budget.h"

typedef struct srv__early srv__early;

/* Helpers running at once, server-wide (each holds one plan's partial
 * tables: at most ~32 MiB, eng_loss_plan_new's cut). */
#define SRV_EARLY_MAX 2

/* Where a helper's partial tables are counted (budget.c): the request's
 * share of --max-buffered, as its body's. */
typedef struct srv__early_budget {
	srv__budget *budget;
	const char *principal; /* NULL without tokens */
	bool ro;
} srv__early_budget;

/*
 * After a chunk was fed to b (a /v1/loss body read as it arrives): hands
 * the helper the bytes decoded since, or, when b has decoded a long string
 * that no helper follows yet, starts one on it (at most *tries of them per
 * request, and SRV_EARLY_MAX running in the server, counted in *running).
 * Anything it cannot do (memory, a thread, the budget for the plan's
 * partial tables in bud) leaves the request to the buffered path. bud is
 * borrowed until the api_early srv__early_end returns is freed (the
 * tables are given back to it then, or when the answer frees them). The
 * thread feeding b only.
 */
void srv__early_feed(srv__early **ep, int *tries, atomic_int *running, const api_ctx *ctx,
                     const api_body *b, const srv__early_budget *bud);

/*
 * Stops and joins *ep's helper (after the task it is running) and clears
 * *ep: before b is freed or answered. Returns its api_early (new:
 * api_loss_early_free) when the helper planned the loss, else NULL. Any
 * thread (one at a time; the request's owner).
 */
api_early *srv__early_end(srv__early **ep, atomic_int *running);

#endif
