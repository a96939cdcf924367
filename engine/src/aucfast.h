/*
 * aucfast.h - engine-private: a fast reader of one binary AUC column for the
 * accumulators (binned.c, sketch.c), next to the general eng__auc_gather.
 *
 * eng__auc_gather reads item by item through eng_tensor_at (a dtype switch
 * per value and per tensor). The common layouts - scores of one dtype read
 * at a fixed stride, 0/1 labels at a fixed stride, weights absent, per row
 * or one scalar - are read here with one tight loop per dtype, and checked
 * in a separate pass per chunk (NaN scores, labels not 0/1, bad weights).
 * When a chunk holds a bad value, or the layout is not a common one
 * (class-id labels; per-row weights with all columns of a multi-column
 * input), the chunk is read by eng__auc_gather itself, so the error (code,
 * field, index, message) is always the one eng__auc_gather reports.
 */
#ifndef LOSSD_ENGINE_AUCFAST_H
#define LOSSD_ENGINE_AUCFAST_H

#include "lossd/auc.h"

typedef struct eng__auc_reader {
	const eng_auc_data *d;
	int64_t col;
	bool fast;           /* false: every chunk through eng__auc_gather */
	int64_t s0, sstride; /* score element of item k: s0 + k * sstride */
	int64_t l0, lstride; /* label element of item k */
	bool weighted;       /* a weight tensor is given */
	bool wscalar;        /* rank-0 weight */
} eng__auc_reader;

/* Plans the reads of column col of d (already checked by eng__auc_items,
 * which gave ncols). Never fails. */
void eng__auc_reader_init(eng__auc_reader *r, const eng_auc_data *d, int64_t col, int64_t ncols);

/*
 * Items [from, from + count) as eng__auc_gather gives them: the scores as
 * doubles at *sp (set to score, a caller buffer of count doubles, or, for a
 * contiguous float64 column, to the tensor's own memory: borrowed), label
 * as 0/1 into lab, and the weight into w when a weight tensor is given (w
 * untouched without one: every weight is 1). Same checks and errors.
 */
int eng__auc_read(const eng__auc_reader *r, int64_t from, int64_t count, double *score,
                  const double **sp, uint8_t *lab, double *w, eng_error *err);

/* The index of the first item of score/lab/w[0..n) that is invalid (NaN
 * score, label above 1, weight not finite and >= 0; w may be NULL), or -1.
 * One vectorizable pass when everything is valid. */
int64_t eng__auc_first_bad(const double *score, const uint8_t *lab, const double *w, int64_t n);

#endif
