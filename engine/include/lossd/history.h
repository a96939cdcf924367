/*
 * history.h - a stream's step series (docs/API.md section 7): additive
 * aggregates of every batch that carried a training step, one point per
 * step (or per range of steps once retention merged neighbours).
 *
 * The series lives inside the stream (eng_stream) so that it travels with
 * it: a step-tagged batch is a one-batch stream whose series has one
 * point, eng_stream_merge adds series point by point (equal steps add up),
 * eng_stream_serialize writes it (nothing at all for a stream that never
 * saw a step) and eng_stream_reset keeps it (the running state starts
 * again, the history does not).
 *
 * Every aggregate is a sum, so points merge exactly: many workers posting
 * the same step give the point one batch of all their rows would give, and
 * a range point is the sum of the points it replaced.
 *
 * Not here: JSON, paging, the derived values' formatting (api layer).
 */
#ifndef LOSSD_ENGINE_HISTORY_H
#define LOSSD_ENGINE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "lossd/extra.h"
#include "lossd/stream.h"

/* Largest step (exclusive): steps are integers in [0, 2^63). */
#define ENG_HISTORY_DEFAULT_POINTS 10000
/* Whatever --history-points says, one stream's series stays below this
 * many bytes (a 4096-class stream keeps fewer, coarser points). */
#define ENG_HISTORY_MAX_BYTES ((size_t)16 << 20)

/* One point of the series, covering steps [step, step_end]. Counts are
 * unweighted rows (as in section 2); `positions`, `correct`, `weight_sum`
 * and `loss_sum` are the loss sums (0 for a stream without a loss). */
typedef struct eng_history_point {
	int64_t step, step_end;
	int64_t updates;          /* batches */
	int64_t count;            /* rows */
	int64_t positions;        /* positions the loss counted */
	int64_t correct;          /* of those, predicted right (accuracy) */
	double weight_sum;        /* sum of the positions' weights */
	double loss_sum;          /* sum of weight * loss */
	const int64_t *positives; /* borrowed: `columns` entries, rows per column
	                           * whose label is positive (class c for class ids) */
} eng_history_point;

/*
 * Tags a one-batch stream (from eng_stream_batch) with a step: its series
 * becomes one point holding the batch's totals. Returns 0, ENG_EINVAL
 * (step < 0, or s already has a series) or ENG_ENOMEM.
 */
int eng_stream_set_step(eng_stream *s, int64_t step);

/* The most points s keeps (not part of its identity or its bytes). A merge
 * that leaves more merges adjacent pairs of points until it fits. */
void eng_stream_set_history_max(eng_stream *s, size_t max_points);

/* Points in s's series (0 when it never saw a step). */
size_t eng_stream_history_size(const eng_stream *s);

/* Index of the first point whose step_end >= step (size when none). */
size_t eng_stream_history_find(const eng_stream *s, int64_t step);

/* Point i < size; out->positives is borrowed until s changes. */
void eng_stream_history_get(eng_history_point *out, const eng_stream *s, size_t i);

/*
 * The metric sums (top-k, calibration, perplexity; extra.h) the points of
 * s keep: their configuration (borrowed until s changes), NULL when the
 * points keep none (the stream's loss asks for none, or every point came
 * from bytes written before points kept them). A point added before the
 * series had them holds zero sums: nothing measured.
 */
const eng_extra_opts *eng_stream_history_extra_opts(const eng_stream *s);

/* Point i's metric sums into out, made by eng_extra_result_new with
 * eng_stream_history_extra_opts(s) (which must not be NULL). */
void eng_stream_history_extra(eng_extra_result *out, const eng_stream *s, size_t i);

/* Bytes one point of a stream of `columns` columns takes in memory, not
 * counting metric sums (8 bytes per top_k entry, 8 x (4 x bins + 7)
 * more with them). */
size_t eng_history_point_bytes(int64_t columns);

#endif
