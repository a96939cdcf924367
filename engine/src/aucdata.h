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

/*
 * The scores of one unweighted binary column, sorted with their labels
 * (exact AUC and DeLong): every score becomes its order-preserving key
 * (radix.h; 32-bit keys for float32 scores), bits that are equal in every
 * key are dropped (low bits all zero in the scores, e.g. float32 values
 * read as doubles; the least key is subtracted), and the label rides in the
 * lowest bit of the reduced key, so one radix sort of 32- or 64-bit words
 * orders everything and the walk down the scores reads one array in order
 * (no gather of labels through a carried index). When reduced keys need
 * all 64 bits (e.g. -Inf and +Inf together) the labels ride beside them as
 * the sort's carried index instead. A run of equal keys is one score.
 */
typedef struct eng__auc_sorted {
	int64_t n, positives;
	uint32_t *k32; /* sorted words (key << 1 | label) when the keys fit in 31 bits */
	uint64_t *k64; /* otherwise: sorted words, or bare keys when lab is set */
	uint32_t *lab; /* labels of k64's bare keys, or NULL */
	void *mem[4];  /* what to free */
	bool narrow;   /* keys of float32 scores */
	int shift;     /* low bits dropped from every key */
	uint64_t base; /* the least key, shifted */
} eng__auc_sorted;

/* The reduced key and the label of sorted item i. */
static inline uint64_t eng__sorted_key(const eng__auc_sorted *s, int64_t i)
{
	return s->k32 ? s->k32[i] >> 1 : s->lab ? s->k64[i] : s->k64[i] >> 1;
}
static inline unsigned eng__sorted_label(const eng__auc_sorted *s, int64_t i)
{
	return s->k32 ? s->k32[i] & 1 : s->lab ? s->lab[i] : (unsigned)(s->k64[i] & 1);
}

/*
 * Reads column col of d (n items, ncols columns, from eng__auc_items;
 * weights are not read) with eng__auc_read's checks and errors, counts the
 * positives and, when both classes are present, sorts. ENG_ENOMEM or a
 * read error; on error nothing is left to free. Free with
 * eng__auc_sorted_free (also after an error, or with nothing sorted).
 */
int eng__auc_sort(eng__auc_sorted *s, const eng_auc_data *d, int64_t col, int64_t n, int64_t ncols,
                  eng_error *err);
void eng__auc_sorted_free(eng__auc_sorted *s);

/* The score a reduced key came from. */
double eng__auc_sorted_value(const eng__auc_sorted *s, uint64_t key);

/* Allocates n points (new arrays; ENG_ENOMEM). */
int eng__curve_alloc(eng_auc_curve *c, int64_t n);

/* Keeps at most max_points points (>= 2), evenly spread over the index
 * range, first and last always kept. In place. */
void eng__curve_downsample(eng_auc_curve *c, int64_t max_points);

struct eng_sketch;
/*
 * Re-keys a sketch of probabilities (every item in [0, 1]) by f, a
 * monotone map to the keys it should have been built on (stream_codec.c's
 * upgrade of version 1 logit streams), folding buckets whose cells come to
 * meet so the sketch stays sound. Returns 0, or ENG_ESTATE when a key is
 * not a probability or f gives NaN (the sketch is then unusable).
 */
int eng__sketch_rekey(struct eng_sketch *s, double (*f)(double));

/* The sketch in version 1 of its format (sketch.c), which earlier builds
 * wrote: for tests that prove those bytes still load. *out is new (free()).
 * Returns 0 or ENG_ENOMEM. */
int eng__sketch_serialize_v1(uint8_t **out, size_t *len, const struct eng_sketch *s);

#endif
