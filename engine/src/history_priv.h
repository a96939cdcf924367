/*
 * history_priv.h - engine-private: the step series object (history.c) and
 * the glue stream.c calls from its merge, reset, memory and codec paths.
 */
#ifndef LOSSD_ENGINE_HISTORY_PRIV_H
#define LOSSD_ENGINE_HISTORY_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/history.h"
#include "lossd/loss.h"

typedef struct eng__hist eng__hist;

/* What eng__hist_prepare decided; eng__hist_commit carries it out. */
typedef struct eng__hist_plan {
	eng__hist *fresh; /* the whole merged series, to swap in (or NULL) */
	bool fast;        /* add one single-step point at index `at` in place */
	bool inside;      /* ... into the existing point `at` (else insert there) */
	size_t at;
} eng__hist_plan;

/* A series of one point at `step` with these totals (pos: columns entries;
 * loss may be NULL). Returns 0 or ENG_ENOMEM. */
int eng__hist_from_totals(eng__hist **out, int64_t step, int64_t columns, int64_t updates,
                          int64_t rows, const int64_t *pos, const eng_loss_result *loss);

void eng__hist_free(eng__hist *h);
size_t eng__hist_memory(const eng__hist *h);
size_t eng__hist_size(const eng__hist *h);

/*
 * The checks of eng__hist_prepare that need no memory: 0, ENG_ESTATE (other
 * columns or extra sums), ENG_ELIMIT or ENG_ENONFINITE, as prepare would
 * answer them. Neither series changes.
 */
int eng__hist_check(const eng__hist *dst, const eng__hist *src, int64_t columns);

/*
 * Phase 1 of adding src into *dst (either may be NULL), keeping at most
 * max_points: everything that can fail, *dst's contents untouched (its
 * capacity may grow). Returns 0, ENG_ELIMIT (a count would pass 2^62),
 * ENG_ENONFINITE (a sum could stop being finite) or ENG_ENOMEM; on error
 * nothing is held.
 */
int eng__hist_prepare(eng__hist_plan *plan, eng__hist *dst, const eng__hist *src, int64_t columns,
                      size_t max_points);
/* Phase 2: cannot fail. */
void eng__hist_commit(eng__hist **dst, const eng__hist *src, eng__hist_plan *plan,
                      size_t max_points);
/* Releases a prepared plan that will not be committed. */
void eng__hist_plan_drop(eng__hist_plan *plan);

/* The series' bytes (new, free()); *len 0 and *out NULL for an empty or
 * NULL series. Returns 0 or ENG_ENOMEM. */
int eng__hist_write(uint8_t **out, size_t *len, const eng__hist *h);
/* Parses eng__hist_write's bytes for a stream of `columns` columns. Returns
 * 0, ENG_ESTATE (*why says what) or ENG_ENOMEM. */
int eng__hist_read(eng__hist **out, const uint8_t *p, size_t len, int64_t columns,
                   const char **why);

/* Point i of h (i < eng__hist_size(h)). */
void eng__hist_get(eng_history_point *out, const eng__hist *h, size_t i);
size_t eng__hist_find(const eng__hist *h, int64_t step);
/* h's metric-sum layout (borrowed), NULL when its points keep none. */
const eng_extra_opts *eng__hist_extra_opts(const eng__hist *h);
/* The metric sums of point i into out (made for eng__hist_extra_opts(h)). */
void eng__hist_extra(eng_extra_result *out, const eng__hist *h, size_t i);

/* stream.c: the series slot of s, and the totals a one-batch stream tags. */
eng__hist **eng__stream_hist(eng_stream *s);
const eng__hist *eng__stream_hist_c(const eng_stream *s);

#endif
