/*
 * par.h - the engine's parallel-for on a small set of helper threads.
 */
#ifndef LOSSD_SERVER_PAR_H
#define LOSSD_SERVER_PAR_H

#include "lossd/eng.h"

typedef struct srv_par srv_par;

/*
 * Starts nhelpers helper threads (0 is allowed: every for_each then runs
 * serially on its caller). Returns a new pool (free with srv_par_free) or
 * NULL when out of memory or threads. Main thread.
 */
srv_par *srv_par_new(int nhelpers);

/* Stops and joins the helpers. No for_each may be running. Accepts NULL.
 * Main thread. */
void srv_par_free(srv_par *p);

/* The hook to put in api_ctx.par: borrowed, valid until srv_par_free.
 * Its for_each may be called from any number of threads at once. */
const eng_parallel *srv_par_hook(srv_par *p);

#endif
