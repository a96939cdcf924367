/*
 * budget.h - the memory request bodies may hold: all of them together
 * (--max-buffered), each token's principal (--max-buffered-per-principal)
 * and the read-only tokens together (half of --max-buffered).
 */
#ifndef LOSSD_SERVER_BUDGET_H
#define LOSSD_SERVER_BUDGET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct srv__budget srv__budget;

/* A budget of `total` bytes; with a principal, at most per_principal of
 * them for one principal and at most readers for all read-only ones.
 * Returns NULL when out of memory. Main thread. */
srv__budget *srv__budget_new(size_t total, size_t per_principal, size_t readers);

/* Accepts NULL. Main thread, once nothing is taken. */
void srv__budget_free(srv__budget *b);

/* Takes n bytes for principal (borrowed; NULL without tokens: only the
 * total counts), a read-only token's if ro. Returns true, or false having
 * taken nothing (a limit would be passed, or no memory for a new
 * principal's entry). Any thread. */
bool srv__budget_take(srv__budget *b, const char *principal, bool ro, size_t n);

/* Gives back n bytes taken with the same principal and ro. Any thread. */
void srv__budget_give(srv__budget *b, const char *principal, bool ro, size_t n);

/* Bytes taken now, all principals. Any thread. */
size_t srv__budget_used(srv__budget *b);

#endif
