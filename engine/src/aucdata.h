/*
 * aucdata.h - engine-private helpers shared by auc.c, binned.c and sketch.c:
 * reading one binary column out of an eng_auc_data, and curve buffers.
 */
#ifndef LOSSD_ENGINE_AUCDATA_H
#define LOSSD_ENGINE_AUCDATA_H

#include "lossd/auc.h"

/*
 * Checks d's shapes and col (ENG_ESHAPE, ENG_EINVAL) and sets *n to the
 * number of items of the column (N, or N * C for ENG_AUC_ALL) and *ncols
 * to C.
 */
int eng__auc_items(const eng_auc_data *d, int64_t col, int64_t *n, int64_t *ncols, eng_error *err);

/*
 * Items [from, from + count) of column col: the score as a double, the
 * label as 0/1 and the weight (1 without weights). Item k of ENG_AUC_ALL
 * is row k / C, column k % C. Validates as it reads: ENG_ELABEL,
 * ENG_EWEIGHT, ENG_ENONFINITE (NaN score). w may be NULL.
 */
int eng__auc_gather(const eng_auc_data *d, int64_t col, int64_t from, int64_t count, double *score,
                    uint8_t *lab, double *w, eng_error *err);

/* Allocates n points (new arrays; ENG_ENOMEM). */
int eng__curve_alloc(eng_auc_curve *c, int64_t n);

/* Keeps at most max_points points (>= 2), evenly spread over the index
 * range, first and last always kept. In place. */
void eng__curve_downsample(eng_auc_curve *c, int64_t max_points);

struct eng_sketch;
/*
 * Re-keys a sketch of probabilities (every item in [0, 1]) by f, a
 * monotone map to the keys it should have been built on (stream.c's
 * upgrade of version 1 logit streams), folding buckets whose cells come to
 * meet so the sketch stays sound. Returns 0, or ENG_ESTATE when a key is
 * not a probability or f gives NaN (the sketch is then unusable).
 */
int eng__sketch_rekey(struct eng_sketch *s, double (*f)(double));

#endif
