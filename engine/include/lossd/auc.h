/*
 * auc.h - area under the ROC and precision-recall curves.
 *
 * Three ways to get an AUC, one input description:
 *   eng_auc_exact()   scikit-learn's roc_auc_score / average_precision_score
 *                     (this file), O(n log n) by a radix sort of the scores;
 *   eng_binned_*      Keras' AUC metric at num_thresholds thresholds, as a
 *                     mergeable accumulator (binned.h);
 *   eng_sketch_*      a bounded-memory mergeable summary with a sound error
 *                     bound (sketch.h).
 *
 * Inputs are borrowed eng_tensor views (any dtype). A "column" is one
 * binary problem carved out of them: the scores of one column of an (N, C)
 * score tensor with its 0/1 labels (eng_auc_data.kind says how the labels
 * are given), or, with col == ENG_AUC_ALL, every column flattened into one
 * problem (the "micro" average).
 */
#ifndef LOSSD_ENGINE_AUC_H
#define LOSSD_ENGINE_AUC_H

#include <stdbool.h>
#include <stdint.h>

#include "lossd/eng.h"

typedef enum {
	ENG_CURVE_ROC = 0, /* x = false-positive rate, y = true-positive rate */
	ENG_CURVE_PR = 1,  /* x = recall, y = precision */
} eng_curve;

typedef enum {
	ENG_SUM_INTERPOLATION = 0, /* Keras summation_method names */
	ENG_SUM_MINORING = 1,
	ENG_SUM_MAJORING = 2,
} eng_summation;

typedef enum {
	/* label (N) of 0/1; score (N), or (N, C) with col choosing the column
	 * (positive_class). */
	ENG_LABELS_BINARY = 0,
	/* label (N) of class ids in [0, C); score (N, C); column c is the
	 * problem "label == c" (one-vs-rest). */
	ENG_LABELS_CLASS_ID = 1,
	/* label (N, C) of 0/1; score (N, C); column c is label[:, c]. */
	ENG_LABELS_MULTI = 2,
} eng_label_kind;

/*
 * What to compute an AUC of. All pointers borrowed for the duration of the
 * call. Labels must be whole numbers: 0/1, or class ids in [0, C) (else
 * ENG_ELABEL with the flat index into y_true). Weights must be finite and
 * >= 0 (ENG_EWEIGHT); a rank-0 weight applies to every row. Scores may be
 * any finite value or +-inf; a NaN score is ENG_ENONFINITE.
 */
typedef struct eng_auc_data {
	const eng_tensor *score;  /* (N) or (N, C) */
	const eng_tensor *label;  /* shape per kind */
	const eng_tensor *weight; /* NULL, (N) or rank 0 */
	eng_label_kind kind;
} eng_auc_data;

/* col value: all columns flattened into one problem (micro average). */
#define ENG_AUC_ALL ((int64_t)-1)

/*
 * The outcome for one column. `defined` is false when only one class is
 * present (no positive or no negative row, or all of one class weigh 0):
 * then auc is NaN and it is not an error.
 */
typedef struct eng_auc_result {
	double auc;
	bool defined;
	int64_t positives, negatives;  /* unweighted counts of rows */
	double pos_weight, neg_weight; /* sample-weighted sums */
	double error_bound;            /* sketch: |auc - exact| <= error_bound; else 0 */
} eng_auc_result;

/*
 * Curve points in order of decreasing threshold (ROC from (0, 0) to (1, 1);
 * PR from recall 0 to 1). thresholds[i] is NaN for a point that has no
 * threshold: exact ROC's starting (0, 0), exact PR's starting (0, 1).
 * Arrays are new: release with eng_auc_curve_free.
 */
typedef struct eng_auc_curve {
	int64_t n;
	double *x, *y, *thresholds;
} eng_auc_curve;

#define ENG_AUC_CURVE_INIT                                                                         \
	{                                                                                          \
		0, NULL, NULL, NULL                                                                \
	}

/* Frees the arrays and resets *c. Accepts NULL and empty curves. */
void eng_auc_curve_free(eng_auc_curve *c);

#define ENG_AUC_DEFAULT_MAX_POINTS 512

typedef struct eng_auc_opts {
	eng_curve curve;
	double max_fpr;     /* ROC only: standardized partial AUC up to it, in (0, 1]; 0 = none */
	int64_t max_points; /* curve: at most this many points (>= 2), end points kept */
} eng_auc_opts;

#define ENG_AUC_OPTS_INIT                                                                          \
	{                                                                                          \
		ENG_CURVE_ROC, 0.0, ENG_AUC_DEFAULT_MAX_POINTS                                     \
	}

/* Number of columns of d's score tensor (1 for rank 1), or a negative
 * code with *err set when the shapes do not fit together (ENG_ESHAPE). */
int64_t eng_auc_columns(const eng_auc_data *d, eng_error *err);

/*
 * Exact AUC of column col (or ENG_AUC_ALL) with scikit-learn's semantics:
 * ROC area by the trapezoid rule over distinct thresholds (a tie between a
 * positive and a negative counts one half), optionally standardized partial
 * up to o->max_fpr (McClish, as sklearn's _binary_roc_auc_score); PR as
 * average precision, sum over distinct thresholds of (R_n - R_{n-1}) P_n.
 * Writes *out; if curve is not NULL, fills it (new) with the curve,
 * downsampled to o->max_points (left empty when undefined). o may be NULL
 * (defaults). Relative error of the result ~1e-12.
 * Returns 0, ENG_ESHAPE, ENG_ELABEL, ENG_EWEIGHT, ENG_ENONFINITE,
 * ENG_EINVAL (max_fpr out of (0, 1] or with PR, bad col), ENG_ELIMIT
 * (2^32 items or more) or ENG_ENOMEM.
 */
int eng_auc_exact(eng_auc_result *out, eng_auc_curve *curve, const eng_auc_data *d, int64_t col,
                  const eng_auc_opts *o, eng_error *err);

/*
 * eng_auc_exact on raw arrays (a stream's kept items): n scores, labels
 * (0/1, else ENG_ELABEL) and weights (NULL = 1), all borrowed.
 */
int eng_auc_exact_values(eng_auc_result *out, eng_auc_curve *curve, const double *score,
                         const uint8_t *label, const double *weight, int64_t n,
                         const eng_auc_opts *o, eng_error *err);

/*
 * Applies the link that turns logits into probabilities, into out
 * (score->size doubles, caller-owned): a sigmoid per element, or, with
 * softmax_rows, a softmax across the last axis of a rank-2 tensor (for
 * one-vs-rest class-id labels), in stable forms. For binned AUC, whose
 * thresholds are probabilities; exact and sketch AUC rank by
 * eng_auc_logit_keys instead. Returns 0 or ENG_ESHAPE (softmax on a tensor
 * that is not rank 2).
 */
int eng_auc_logits(double *out, const eng_tensor *score, bool softmax_rows);

/*
 * The keys exact and sketch AUC rank logits by, into out (score->size
 * doubles, caller-owned): the logits themselves (binary, multi-label), or,
 * with softmax_rows, the log-softmax across the last axis of a rank-2
 * tensor (one-vs-rest), computed so that distinct values stay distinct: the
 * row's top class (first maximum) is -log1p(sum_{j != top} e^(x_j - max)),
 * the others (x_j - max) - that log1p. Each is a monotone map of the
 * probability, so the AUC is the one of the probabilities without the ties
 * a double sigmoid or softmax makes when it rounds to 1 or 0 (logits 40 and
 * 41 stay apart). A row with a NaN, a +inf, or only -inf is all NaN.
 * Returns 0 or ENG_ESHAPE (softmax_rows on a tensor that is not rank 2).
 */
int eng_auc_logit_keys(double *out, const eng_tensor *score, bool softmax_rows);

/* The probability of a key of eng_auc_logit_keys: sigmoid(key), or
 * exp(key) with softmax_rows. */
double eng_auc_key_prob(double key, bool softmax_rows);

/* Turns c's thresholds (keys of eng_auc_logit_keys) into probabilities, in
 * place; NaN entries (points without a threshold) stay NaN. c may be NULL. */
void eng_auc_curve_key_probs(eng_auc_curve *c, bool softmax_rows);

#endif
