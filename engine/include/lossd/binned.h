/*
 * binned.h - Keras' AUC metric (tf.keras.metrics.AUC) as a mergeable
 * accumulator: weighted true/false positives and negatives at
 * num_thresholds thresholds [-1e-7, 1/(n-1), ..., (n-2)/(n-1), 1 + 1e-7],
 * computed in double, a score counting as positive at a threshold iff
 * float32(score) > float32(threshold): Keras compares in float32.
 *
 * The state is a histogram over the n + 1 gaps between thresholds, so
 * adding, merging and serializing are exact and order-independent up to
 * double rounding of the sums; the AUC is read off cumulative sums.
 */
#ifndef LOSSD_ENGINE_BINNED_H
#define LOSSD_ENGINE_BINNED_H

#include <stddef.h>
#include <stdint.h>

#include "lossd/auc.h"

#define ENG_BINNED_MAX_THRESHOLDS ((int64_t)1 << 20)

typedef struct eng_binned eng_binned;

/* New, empty accumulator (free with eng_binned_free), or NULL when
 * num_thresholds is outside [2, ENG_BINNED_MAX_THRESHOLDS] or memory ran
 * out. */
eng_binned *eng_binned_new(int64_t num_thresholds);

/* Accepts NULL. */
void eng_binned_free(eng_binned *b);

/* Back to empty, thresholds kept. */
void eng_binned_reset(eng_binned *b);

int64_t eng_binned_num_thresholds(const eng_binned *b);

/* The histogram cell a score goes to: #{ i : float32(score) >
 * float32(t_i) } in [0, n], the number of thresholds the score is positive
 * at. score must not be NaN. */
int64_t eng_binned_cell(const eng_binned *b, double score);

/*
 * Adds column col (or ENG_AUC_ALL) of d. All or nothing: on error b is
 * unchanged. Scores outside [0, 1] are counted like Keras does (above or
 * below every threshold). Returns 0, ENG_ESHAPE, ENG_ELABEL, ENG_EWEIGHT,
 * ENG_ENONFINITE, ENG_EINVAL or ENG_ENOMEM.
 */
int eng_binned_add(eng_binned *b, const eng_auc_data *d, int64_t col, eng_error *err);

/* Adds n raw items: score, label (0/1), weight (NULL = 1). Same checks and
 * all-or-nothing rule as eng_binned_add. */
int eng_binned_add_values(eng_binned *b, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err);

/* dst += src. ENG_ESTATE when the thresholds differ, ENG_ELIMIT when a row
 * count would pass 2^53 (dst unchanged in both cases). */
int eng_binned_merge(eng_binned *dst, const eng_binned *src);

/* Total weight of the positives and of the negatives over every cell (what
 * a stream checks stays finite: Keras' suffix sums never exceed them). */
void eng_binned_weights(const eng_binned *b, double *pos, double *neg);

/*
 * Keras' result(): the ROC or PR area with the given summation method (PR
 * with interpolation is Davis & Goadrich's interpolation, as Keras).
 * defined is false while only one class has been seen (unweighted), as for
 * exact AUC. If curve is not NULL it is filled (new) with the points at
 * each threshold, downsampled to max_points. Returns 0 or ENG_ENOMEM.
 */
int eng_binned_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_binned *b, eng_curve kind,
                   eng_summation summation, int64_t max_points);

/* One-shot: the binned AUC of column col of d. */
int eng_auc_binned(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                   int64_t num_thresholds, eng_curve kind, eng_summation summation,
                   int64_t max_points, eng_error *err);

/*
 * Serialized state: versioned little-endian bytes (magic "LDBN", version,
 * num_thresholds, counts, the histogram). *out is new (free()).
 * Returns 0 or ENG_ENOMEM.
 */
int eng_binned_serialize(uint8_t **out, size_t *len, const eng_binned *b);

/* *out is new (eng_binned_free). Every field is validated: ENG_ESTATE for
 * corrupt or truncated bytes, ENG_ENOMEM. */
int eng_binned_deserialize(eng_binned **out, const uint8_t *buf, size_t len);

#endif
