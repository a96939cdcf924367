/*
 * budget.c - the request-body memory budget, shared and per principal.
 *
 * Why: every request body is gathered into memory before a handler runs,
 * so bodies in flight are bounded by --max-buffered. That bound alone lets
 * one client hold what everyone needs; http.c therefore takes budget as
 * body bytes arrive (never for a declared Content-Length that has not
 * come), conns.c cuts bodies that trickle in under --min-body-rate, and
 * this module keeps, once tokens are configured, one principal from
 * holding more than --max-buffered-per-principal and the read-only tokens
 * together from holding more than half of --max-buffered, so writers
 * (stream updates) always find room whatever the readers send.
 *
 * Shape: one mutex over three counters and a small array of principals
 * (its length is bounded by the tokens file; entries stay once made, their
 * names copied). Takes and gives are a few per request (the body buffer
 * doubles), so the lock is not hot.
 * Invariants: used <= total; readers <= their cap; each principal's used
 * <= per_principal; every give matches an earlier take.
 * Lock order: mu is a leaf.
 */
#include "budget.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "metrics.h"

struct holder {
	char *name;
	size_t used;
};

struct srv__budget {
	pthread_mutex_t mu;
	size_t total, per_principal, readers_cap;
	size_t used, readers;
	struct holder *h;
	size_t nh, caph;
};

srv__budget *srv__budget_new(size_t total, size_t per_principal, size_t readers)
{
	srv__budget *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	pthread_mutex_init(&b->mu, NULL);
	b->total = total;
	b->per_principal = per_principal;
	b->readers_cap = readers;
	return b;
}

void srv__budget_free(srv__budget *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nh; i++)
		free(b->h[i].name);
	free(b->h);
	pthread_mutex_destroy(&b->mu);
	free(b);
}

/* The principal's entry, made if missing; NULL when out of memory. Caller
 * holds mu. */
static struct holder *holder_of(srv__budget *b, const char *principal)
{
	struct holder *nh;

	for (size_t i = 0; i < b->nh; i++)
		if (!strcmp(b->h[i].name, principal))
			return &b->h[i];
	if (!(nh = srv__grow(b->h, &b->caph, b->nh, sizeof(*nh), 8)))
		return NULL;
	b->h = nh;
	if (!(b->h[b->nh].name = strdup(principal)))
		return NULL;
	b->h[b->nh].used = 0;
	return &b->h[b->nh++];
}

bool srv__budget_take(srv__budget *b, const char *principal, bool ro, size_t n)
{
	struct holder *h = NULL;
	bool ok = false;

	pthread_mutex_lock(&b->mu);
	if (n > b->total - b->used)
		goto out;
	if (principal) {
		if (!(h = holder_of(b, principal)) || n > b->per_principal - h->used)
			goto out;
		if (ro && n > b->readers_cap - b->readers)
			goto out;
		h->used += n;
		if (ro)
			b->readers += n;
	}
	b->used += n;
	srv__metrics_buffered_add((int64_t)n);
	ok = true;
out:
	pthread_mutex_unlock(&b->mu);
	return ok;
}

void srv__budget_give(srv__budget *b, const char *principal, bool ro, size_t n)
{
	struct holder *h;

	if (!n)
		return;
	pthread_mutex_lock(&b->mu);
	b->used -= n;
	srv__metrics_buffered_add(-(int64_t)n);
	if (principal && (h = holder_of(b, principal))) {
		h->used -= n;
		if (ro)
			b->readers -= n;
	}
	pthread_mutex_unlock(&b->mu);
}

size_t srv__budget_used(srv__budget *b)
{
	size_t u;

	pthread_mutex_lock(&b->mu);
	u = b->used;
	pthread_mutex_unlock(&b->mu);
	return u;
}
