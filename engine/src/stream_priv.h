/*
 * stream_priv.h - what a stream's two files share (engine-private): the
 * object itself and the helpers both need. stream.c keeps the state
 * (batches, merges, readings); stream_codec.c writes it to bytes and reads
 * it back, checking every section.
 */
#ifndef LOSSD_ENGINE_STREAM_PRIV_H
#define LOSSD_ENGINE_STREAM_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "history_priv.h"
#include "lossd/binned.h"
#include "lossd/sketch.h"
#include "lossd/stream.h"

typedef struct eng__colcount {
	int64_t pos, neg; /* unweighted rows */
	double pw, nw;    /* weighted */
} eng__colcount;

struct eng_stream {
	eng_stream_config cfg;
	int64_t updates, rows;
	eng__colcount *cc; /* columns entries */
	/* exact */
	int64_t n, cap; /* rows stored, rows allocated */
	double *score;  /* n * columns */
	int32_t *label; /* n * lcols */
	double *weight; /* n, or NULL: every weight 1 */
	/* score and label (weight) point into another stream's spare rows
	 * (eng_stream_merge_bytes' delta): not this stream's to free */
	bool borrowed_rows, borrowed_weight;
	/* binned / sketch: columns accumulators */
	eng_binned **bins;
	eng_sketch **sk;
	/* loss sums, NULL until a batch with a loss was merged */
	eng_loss_result *loss;
	/* the step series (history.c), NULL until a step-tagged batch came;
	 * hist_max is how many points it keeps (not part of the identity) */
	eng__hist *hist;
	size_t hist_max;
};

/* Label columns of an exact stream's rows: C for multi-label, else 1. */
static inline int64_t eng__stream_lcols(const eng_stream_config *c)
{
	return c->kind == ENG_LABELS_MULTI ? c->columns : 1;
}

/* The bytes of one column's sketch. */
static inline size_t eng__stream_sketch_col_bytes(const eng_stream_config *c)
{
	return c->sketch_bytes / (size_t)c->columns;
}

/* Room for n2 rows of row bytes each in an exact stream (capacity doubles,
 * clamped to the memory cap); the contents do not change. 0 or ENG_ENOMEM. */
int eng__stream_grow_rows(eng_stream *dst, int64_t n2, size_t row);

/* An empty stream of config cfg without accumulators (new: eng_stream_free),
 * NULL when out of memory. */
eng_stream *eng__stream_alloc(const eng_stream_config *cfg);

/* Totals of accumulator k of s (binned cells or sketch buckets); 0 for exact. */
void eng__stream_acc_weights(const eng_stream *s, int64_t k, double *pos, double *neg);

/* True when every sum of a (plus b's, when b is not NULL) is finite; else
 * *what names the first that is not. */
bool eng__stream_sums_finite(const eng_stream *a, const eng_stream *b, const char **what);

#endif
