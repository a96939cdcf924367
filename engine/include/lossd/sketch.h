/*
 * sketch.h - a bounded-memory, mergeable summary of (score, label, weight)
 * triples that answers ROC AUC (and average precision) with a SOUND error
 * bound: the exact AUC of everything added lies within auc +- error_bound.
 *
 * Exact (error_bound == 0, AUC equal to scikit-learn's) while the distinct
 * scores fit in the configured memory; past that, buckets of neighbouring
 * scores are folded where that loosens the bound least. Two sketches merge
 * into one that summarizes the union, with a bound that stays sound. The
 * design and the proof of soundness are in sketch.c's opening comment.
 */
#ifndef LOSSD_ENGINE_SKETCH_H
#define LOSSD_ENGINE_SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "lossd/auc.h"

#define ENG_SKETCH_DEFAULT_CAP ((size_t)1 << 20) /* bytes of state: 1 MiB */
#define ENG_SKETCH_MIN_CAP     ((size_t)1024)
#define ENG_SKETCH_MAX_CAP     ((size_t)1 << 30)

typedef struct eng_sketch eng_sketch;

/* New, empty sketch whose state never exceeds cap_bytes (see
 * eng_sketch_memory); 0 means ENG_SKETCH_DEFAULT_CAP. NULL when cap_bytes
 * is outside [ENG_SKETCH_MIN_CAP, ENG_SKETCH_MAX_CAP] or memory ran out.
 * Free with eng_sketch_free. */
eng_sketch *eng_sketch_new(size_t cap_bytes);

/* Accepts NULL. */
void eng_sketch_free(eng_sketch *s);

/* Back to empty, cap kept. */
void eng_sketch_reset(eng_sketch *s);

/*
 * Adds column col (or ENG_AUC_ALL) of d. All or nothing: on error s is
 * unchanged. Items of weight 0 are counted in positives/negatives but
 * change no bucket. Works in batches of 64Ki items, so the transient
 * memory is a few MiB whatever the input size. Returns 0, ENG_ESHAPE,
 * ENG_ELABEL, ENG_EWEIGHT, ENG_ENONFINITE, ENG_EINVAL or ENG_ENOMEM.
 */
int eng_sketch_add(eng_sketch *s, const eng_auc_data *d, int64_t col, eng_error *err);

/* Adds n raw items: score, label (0/1), weight (NULL = 1). Same rules. */
int eng_sketch_add_values(eng_sketch *s, const double *score, const uint8_t *label,
                          const double *weight, int64_t n, eng_error *err);

/*
 * dst := dst + src (src unchanged; may have another cap: the result keeps
 * dst's). Commutative and associative exactly while nothing is folded,
 * otherwise within the reported bounds. Returns 0 or ENG_ENOMEM (dst
 * unchanged).
 */
int eng_sketch_merge(eng_sketch *dst, const eng_sketch *src);

/* Total weight of the positives and of the negatives over every bucket
 * (what a stream checks stays finite). */
void eng_sketch_weights(const eng_sketch *s, double *pos, double *neg);

/* The weight of every item added (both classes), summed as the items
 * came, not over the buckets: it takes no pass over them, and as all
 * weights are finite and >= 0 it is within a relative n * 2^-53 of the sum
 * of eng_sketch_weights' two totals (n items). A state read back counts
 * its buckets' sum. */
double eng_sketch_weight_added(const eng_sketch *s);

/*
 * AUC of everything added. ROC: the Mann-Whitney area with every bucket's
 * inner pairs counted one half; error_bound = sum over folded buckets of
 * pos * neg / (2 P N). PR: average precision with each bucket as one
 * threshold (exact buckets: scikit-learn's tie rule; folded ones: the middle
 * of what any inner order gives); error_bound from the extreme orders
 * inside each folded bucket (sketch.c). defined is false while one class
 * has no (weighted) rows. If curve is not NULL it is filled (new), one point
 * per bucket, downsampled to max_points. Returns 0 or ENG_ENOMEM.
 */
int eng_sketch_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_sketch *s, eng_curve kind,
                   int64_t max_points);

/* One-shot: the sketch AUC of column col of d, with a sketch of cap_bytes
 * (0 = default). Returns 0, ENG_EINVAL (cap_bytes out of range),
 * ENG_ENOMEM (out of memory, the sketch itself included) or an
 * eng_sketch_add error. */
int eng_auc_sketch(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                   size_t cap_bytes, eng_curve kind, int64_t max_points, eng_error *err);

/* Bytes of state held now (struct plus bucket array); never above cap. */
size_t eng_sketch_memory(const eng_sketch *s);
size_t eng_sketch_cap(const eng_sketch *s);
/* Buckets in use, and how many the cap allows. */
int64_t eng_sketch_buckets(const eng_sketch *s);
int64_t eng_sketch_capacity(const eng_sketch *s);
/* Unweighted items added, by label. */
int64_t eng_sketch_positives(const eng_sketch *s);
int64_t eng_sketch_negatives(const eng_sketch *s);

/*
 * Versioned little-endian bytes: magic "LDSK", version, cap, counts and the
 * buckets (version 2, compact: sketch.c; the reader also takes version 1).
 * *out is new (free()). Returns 0 or ENG_ENOMEM.
 */
int eng_sketch_serialize(uint8_t **out, size_t *len, const eng_sketch *s);

/* *out is new (eng_sketch_free). Validates every field and the bucket
 * invariants: ENG_ESTATE for anything corrupt, truncated or of another
 * version; ENG_ENOMEM. Never reads past len. */
int eng_sketch_deserialize(eng_sketch **out, const uint8_t *buf, size_t len);

#endif
