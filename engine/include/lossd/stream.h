/*
 * stream.h - a stream's state: AUC accumulators (and optionally loss sums)
 * over every batch a stream has seen, mergeable and serializable.
 *
 * A stream is the accumulated form of /v1/auc (and /v1/loss): after any
 * sequence of updates its AUC is the AUC of one request over all the
 * batches (exactly for `exact`, Keras' number for `binned`, within
 * error_bound for `sketch`), and its loss sums are those of one request.
 *
 * The shape of an update: eng_stream_batch() turns one batch of tensors
 * into a NEW stream holding only that batch (validating everything), and
 * eng_stream_merge() adds one stream into another. So an update is
 * all-or-nothing by construction (a bad batch never touches the target),
 * a batch can be serialized and replayed (the server's delta log), and a
 * replica's exported state merges the same way.
 *
 * Not here: JSON, I/O, locking (a stream is not thread-safe; callers
 * serialize access), the loss computation itself (loss.h; the caller hands
 * eng_stream_batch the batch's eng_loss_result).
 */
#ifndef LOSSD_ENGINE_STREAM_H
#define LOSSD_ENGINE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lossd/auc.h"
#include "lossd/eng.h"
#include "lossd/loss.h"
#include "lossd/sketch.h"

typedef enum {
	ENG_STREAM_SKETCH = 0, /* bounded mergeable histogram, error_bound */
	ENG_STREAM_BINNED = 1, /* Keras' confusion counts at num_thresholds */
	ENG_STREAM_EXACT = 2,  /* every score kept, up to max_bytes */
} eng_stream_method;

/* Largest number of columns (classes or labels) a stream may have. */
#define ENG_STREAM_MAX_COLUMNS 4096
/* Default memory cap of a stream (bytes), and the sketch's share of it. */
#define ENG_STREAM_DEFAULT_MAX_BYTES    ((size_t)64 << 20)
#define ENG_STREAM_DEFAULT_SKETCH_BYTES ENG_SKETCH_DEFAULT_CAP

/*
 * What a stream is. Transparent; start from ENG_STREAM_CONFIG_INIT. Two
 * streams merge only when every field but max_bytes is equal.
 */
typedef struct eng_stream_config {
	eng_stream_method method;
	eng_label_kind kind; /* binary, class ids (one-vs-rest) or multi-label */
	int64_t columns;     /* 1 for binary, C (>= 2) otherwise */
	eng_curve curve;
	eng_summation summation; /* binned */
	int64_t num_thresholds;  /* binned, >= 2 (Keras: > 1) */
	bool from_logits;        /* scores are logits: binned sees sigmoid /
	                          * softmax, exact and sketch rank the logits
	                          * (log-softmax for one-vs-rest) */
	size_t sketch_bytes;     /* sketch: memory budget of all columns together */
	size_t max_bytes;        /* cap on eng_stream_memory: ENG_ELIMIT past it */
	bool has_loss;           /* keep loss sums of loss_kind */
	eng_loss_kind loss_kind;
	uint64_t loss_fingerprint; /* the caller's hash of the loss options */
} eng_stream_config;

#define ENG_STREAM_CONFIG_INIT                                                                     \
	{                                                                                          \
		ENG_STREAM_SKETCH, ENG_LABELS_BINARY, 1, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION,     \
		        200, false, ENG_STREAM_DEFAULT_SKETCH_BYTES, ENG_STREAM_DEFAULT_MAX_BYTES, \
		        false, ENG_LOSS_BINARY_CE, 0                                               \
	}

typedef struct eng_stream eng_stream;

/* Checks a config (ranges, kind vs columns). Returns 0, ENG_EINVAL with
 * *err saying which field ("method", "num_classes", ...), or ENG_ELIMIT
 * when the binned counts or the sketch alone exceed max_bytes. */
int eng_stream_config_check(const eng_stream_config *cfg, eng_error *err);

/* An empty stream of cfg (copied). Returns 0, ENG_EINVAL (bad config) or
 * ENG_ENOMEM; *out is new (eng_stream_free) on success, NULL otherwise. */
int eng_stream_new(eng_stream **out, const eng_stream_config *cfg, eng_error *err);

/* Frees s. Accepts NULL. */
void eng_stream_free(eng_stream *s);

/* The stream's config (borrowed, valid while s lives). */
const eng_stream_config *eng_stream_config_of(const eng_stream *s);

/* A deep copy. Returns 0 or ENG_ENOMEM. */
int eng_stream_clone(eng_stream **out, const eng_stream *s);

/*
 * A new stream of cfg holding one batch: scores y_score ((N), or (N, C)),
 * labels y_true as cfg->kind says ((N) 0/1, (N) class ids, (N, C) 0/1),
 * weights (NULL, rank 0 or (N)). With cfg->has_loss, loss (borrowed) is
 * the batch's loss result, of cfg->loss_kind and with `columns` per-class
 * rows (or none); without, loss must be NULL. Validation is /v1/auc's:
 * ENG_ESHAPE (shapes, columns != cfg->columns), ENG_ELABEL, ENG_EWEIGHT,
 * ENG_ENONFINITE (a NaN score, or weight or loss sums that overflow to
 * infinity: every sum a stream keeps stays finite), ENG_EINVAL, ENG_ELIMIT
 * (the batch alone exceeds max_bytes), ENG_ENOMEM; *err says where. *out is
 * new on success.
 */
int eng_stream_batch(eng_stream **out, const eng_stream_config *cfg, const eng_tensor *y_true,
                     const eng_tensor *y_score, const eng_tensor *weight,
                     const eng_loss_result *loss, eng_error *err);

/*
 * Adds src's data into dst. All or nothing: on any error dst is unchanged.
 * Returns 0, ENG_ESTATE (configs differ, or the loss sums' extra sums are
 * of another top_k, bins or perplexity, or present in one only), ENG_ELIMIT (dst would exceed its
 * max_bytes), ENG_ENONFINITE (a weight or loss sum of dst would overflow to
 * infinity) or ENG_ENOMEM.
 */
int eng_stream_merge(eng_stream *dst, const eng_stream *src, eng_error *err);

/*
 * Would eng_stream_merge(dst, src) succeed if dst's memory cap were
 * max_bytes? Runs every check of the merge but the allocations, with the
 * merge's errors and messages (ENG_ESTATE, ENG_ELIMIT, ENG_ENONFINITE; out
 * of memory is the one refusal it cannot foresee), and changes neither
 * stream: a replica whose cached state only moves by what its store
 * committed checks an update against it without a copy.
 */
int eng_stream_merge_check(const eng_stream *dst, const eng_stream *src, size_t max_bytes,
                           eng_error *err);

/* Back to empty, config kept. Returns 0 or ENG_ENOMEM (s then unchanged). */
int eng_stream_reset(eng_stream *s);

/* New (free with eng_stream_free): what eng_stream_reset would make of s
 * (its config and step series, no data), s untouched, so a caller can
 * build and store the empty state before changing s. 0 or ENG_ENOMEM. */
int eng_stream_empty_copy(eng_stream **out, const eng_stream *s);

/* Sets the memory cap of s (not part of its identity). */
void eng_stream_set_max_bytes(eng_stream *s, size_t max_bytes);

/*
 * Room for `rows` rows in all in an exact stream, or for as many as
 * max_bytes of rows hold if fewer (no-op for the other methods and when it
 * has that room): a caller that knows how many rows are coming (a replay of
 * stored deltas) grows the arrays once instead of by doublings, each a
 * copy of all rows so far. Contents unchanged. 0, or ENG_ENOMEM (the room
 * may have grown in part).
 */
int eng_stream_reserve(eng_stream *s, int64_t rows, size_t max_bytes);

/* Gives back an exact stream's room beyond its rows (after a reserve that
 * guessed high). Contents unchanged; a shrink the allocator refuses keeps
 * that array's room. */
void eng_stream_trim(eng_stream *s);

/* Bytes of heap s holds (what max_bytes bounds). */
size_t eng_stream_memory(const eng_stream *s);

/* ---- counters ------------------------------------------------------------- */
typedef struct eng_stream_counts {
	int64_t updates; /* batches merged in (a merged state adds its own) */
	int64_t rows;    /* rows (samples) seen */
} eng_stream_counts;

void eng_stream_counts_of(eng_stream_counts *out, const eng_stream *s);

/* The running loss sums (borrowed, valid until s changes), or NULL when the
 * stream keeps no loss or has not seen a batch yet. */
const eng_loss_result *eng_stream_loss(const eng_stream *s);

/* ---- reading the AUC ---------------------------------------------------------- */
/*
 * AUC of column col in [0, columns), or of every column pooled (col ==
 * ENG_AUC_ALL, the micro average). `positives`/`negatives` are unweighted
 * row counts, `pos_weight`/`neg_weight` weighted; `error_bound` is 0
 * except for sketch. If curve is not NULL it gets the curve (new, at most
 * max_points points; empty when undefined). Returns 0, ENG_EINVAL (bad
 * col) or ENG_ENOMEM.
 */
int eng_stream_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_stream *s, int64_t col,
                   int64_t max_points, eng_error *err);

/*
 * The standard error of column col's ROC AUC (0 for a binary stream; not
 * ENG_AUC_ALL) into *se (aucci.h): DeLong's over the kept scores for
 * `exact` streams, Hanley and McNeil's from the AUC and the row counts for
 * `binned` and `sketch`. NaN when the AUC is undefined (or, for DeLong, a
 * class has fewer than 2 rows). Returns 0, ENG_EINVAL with field "ci" for
 * a PR stream or an exact stream that holds sample weights, or ENG_ENOMEM.
 */
int eng_stream_auc_se(double *se, const eng_stream *s, int64_t col, eng_error *err);

/* ---- serialization ------------------------------------------------------------- */
/*
 * The state as bytes: versioned, little-endian, with a checksum over
 * everything. *out is new (free()), *len its size. Returns 0 or ENG_ENOMEM.
 */
int eng_stream_serialize(void **out, size_t *len, const eng_stream *s);

/*
 * Parses bytes made by eng_stream_serialize (any stream, any version this
 * build reads). Every field is validated, and the sections against each
 * other: every sum finite, weights >= 0, the per-column counts and weights
 * those of the accumulators (or of the exact rows), loss counts nested
 * (correct <= count, per class correct <= support and predicted), loss sums
 * >= 0 for losses that cannot be negative, and the loss' extra sums
 * (top-k, calibration, perplexity; extra.h) valid options for the loss,
 * counts nested within the loss' positions, sums finite, >= 0 and within
 * their weights. A state with extra sums is written as version 3, one
 * without as version 2 (as earlier builds wrote it); versions 1 to 3 are
 * read. Corrupt, truncated, unsupported
 * or inconsistent input is ENG_ESTATE, never a crash, and nothing larger
 * than the input justifies is allocated. max_bytes (not part of the bytes) is
 * set on the result and bounds later merges into it, not this parse.
 * Returns 0, ENG_ESTATE or ENG_ENOMEM; *out is new on success.
 */
int eng_stream_deserialize(eng_stream **out, const void *data, size_t len, size_t max_bytes,
                           eng_error *err);

/*
 * dst merged with the state serialized in data: eng_stream_deserialize
 * then eng_stream_merge, all or nothing, with that pair's errors, but an
 * exact state's rows are decoded straight into dst's spare capacity (so
 * replaying a log of deltas copies each row once). dst's capacity may grow
 * even when the call fails; its contents do not change.
 */
int eng_stream_merge_bytes(eng_stream *dst, const void *data, size_t len, eng_error *err);

/* True when streams of a and b can merge (all but max_bytes equal). */
bool eng_stream_config_equal(const eng_stream_config *a, const eng_stream_config *b);

#endif
