/*
 * history.c - the in-memory list of a stream's checkpoint records (see
 * history.h). A sorted array: checkpoints arrive in step order in a
 * training loop, so an add is an append; an out-of-order step is a
 * memmove. At most --history-checkpoints (default 1,000) records per
 * stream, so every operation is bounded.
 *
 * The oldest record is the one with the lowest number n (numbers grow by
 * one per checkpoint of the stream), whatever its step: "the oldest go
 * first" is about when it was taken.
 *
 * Not thread-safe: the owning stream's mutex serializes every call.
 */
#include "history.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grow.h"

int srv__ckpts_reserve(srv__ckpts *l)
{
	srv__ckpt *nv = srv__grow(l->v, &l->cap, l->len, sizeof(*nv), 16);
	if (!nv)
		return -1;
	l->v = nv;
	return 0;
}

static bool before(const srv__ckpt *c, int64_t step, int64_t n)
{
	return c->step < step || (c->step == step && c->n < n);
}

size_t srv__ckpts_after(const srv__ckpts *l, int64_t step, int64_t n)
{
	size_t lo = 0, hi = l->len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const srv__ckpt *c = &l->v[mid];
		if (before(c, step, n) || (c->step == step && c->n == n))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

size_t srv__ckpts_add(srv__ckpts *l, int64_t step, int64_t n, char *text, size_t max,
                      int64_t *keep_from)
{
	size_t at = srv__ckpts_after(l, step, n);
	memmove(l->v + at + 1, l->v + at, (l->len - at) * sizeof(*l->v));
	l->v[at] = (srv__ckpt){step, n, text};
	l->len++;
	if (n >= l->next_n)
		l->next_n = n + 1;
	size_t dropped = 0;
	while (l->len > max && l->len > 0) {
		size_t old = 0;
		for (size_t i = 1; i < l->len; i++)
			if (l->v[i].n < l->v[old].n)
				old = i;
		free(l->v[old].text);
		memmove(l->v + old, l->v + old + 1, (l->len - old - 1) * sizeof(*l->v));
		l->len--;
		dropped++;
	}
	int64_t lo = l->next_n;
	for (size_t i = 0; i < l->len; i++)
		if (l->v[i].n < lo)
			lo = l->v[i].n;
	*keep_from = lo;
	return dropped;
}

void srv__ckpts_clear(srv__ckpts *l)
{
	for (size_t i = 0; i < l->len; i++)
		free(l->v[i].text);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ---- time ------------------------------------------------------ */

int64_t srv__now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void srv__rfc3339_ms(char *out, size_t cap, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char d[32];
	strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, cap, "%s.%03dZ", d, (int)(ms % 1000));
}
