/*
 * par.h - the engine's parallel-for on a small set of helper threads.
 */
#ifndef LOSSD_SERVER_PAR_H
#define LOSSD_SERVER_PAR_H

#include "lossd/eng.h"

typedef struct srv__par srv__par;

/*
 * Starts nhelpers helper threads (0 is allowed: every for_each then runs
 * serially on its caller). Returns a new pool (free with srv__par_free) or
 * NULL when out of memory or threads. Main thread.
 */
srv__par *srv__par_new(int nhelpers);

/* Stops and joins the helpers. No for_each may be running. Accepts NULL.
 * Main thread. */
void srv__par_free(srv__par *p);

/* The hook to put in api_ctx.par: borrowed, valid until srv__par_free.
 * Its for_each may be called from any number of threads at once. */
const eng_parallel *srv__par_hook(srv__par *p);

#endif
