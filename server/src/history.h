/*
 * history.h - private: the checkpoint records a stream keeps in memory
 * (docs/API.md section 7), ordered by (step, n), each the JSON text
 * api_history_checkpoint_record made. streams.c owns one list per stream
 * and calls these under that stream's mutex; the store keeps the same
 * records in its checkpoints table.
 */
#ifndef LOSSD_SERVER_HISTORY_H
#define LOSSD_SERVER_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv__ckpt {
	int64_t step, n;
	char *text; /* new */
} srv__ckpt;

typedef struct srv__ckpts {
	srv__ckpt *v; /* sorted by (step, n) */
	size_t len, cap;
	int64_t next_n; /* number of the next record: one more than any so far */
} srv__ckpts;

/* Room for one more record (so that adding cannot fail). 0 or -1. */
int srv__ckpts_reserve(srv__ckpts *l);

/* Adds a record (steals text; room reserved), then drops the oldest (the
 * lowest n) while more than max remain. Returns how many were dropped;
 * *keep_from gets the lowest n kept. Cannot fail. */
size_t srv__ckpts_add(srv__ckpts *l, int64_t step, int64_t n, char *text, size_t max,
                      int64_t *keep_from);

/* Index of the first record after (step, n) in order (0 for step < 0). */
size_t srv__ckpts_after(const srv__ckpts *l, int64_t step, int64_t n);

/* Frees every record. */
void srv__ckpts_clear(srv__ckpts *l);

#endif

/* Now as RFC 3339 UTC with milliseconds ("2026-12-06T14:03:07.123Z") in
 * out (at least 32 bytes), from ms since the epoch. */
void srv__rfc3339_ms(char *out, size_t cap, int64_t ms);

/* The wall clock in ms since the epoch. */
int64_t srv__now_ms(void);
