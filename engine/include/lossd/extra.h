/*
 * extra.h - the metrics that ride on a loss evaluation (docs/API.md section 9):
 * perplexity, top-k accuracy and calibration (ECE, MCE, RMS calibration
 * error, Brier score and the reliability-diagram bins).
 *
 * They are asked for through eng_loss_opts.extra and come back in
 * eng_loss_result.extra, computed from the same validated inputs, the same
 * positions, the same ignore_class and the same sample weights as the loss.
 * Like the loss result, an eng_extra_result holds only SUMS (counts, sums
 * of weights, of weighted confidences, of weighted squared errors), so two
 * results of one configuration merge by addition and every reported figure
 * is derived from the sums when it is read: a stream keeps them exactly.
 *
 * Definitions (w = the sample weight of a position; class weights, cost
 * matrix and label smoothing never enter these figures):
 *   perplexity   exp(sum w*nll / sum w), nll = -sum_c y_c log p_c of the
 *                unsmoothed target, p as the loss sees it (softmax of
 *                logits, or probabilities divided by their sum and clipped
 *                to [1e-7, 1 - 1e-7]); TorchMetrics Perplexity
 *   top-k        a counted position is correct at k when fewer than k
 *                classes score strictly higher than its true class (ties
 *                count for the true class), ranked by y_pred as given (the
 *                softmax and the division by the row sum keep the order);
 *                unweighted, like accuracy
 *   calibration  binary: confidence = p of the positive class (sigmoid of
 *                a logit), accuracy = the target is positive (> 0.5);
 *                categorical: confidence = max_c p_c (unclipped), accuracy
 *                = the first argmax of y_pred is the true class. Bin b of B
 *                holds confidences in [b/B, (b+1)/B) (b/B a correctly
 *                rounded double), the last one also 1.0. Brier: (p - y)^2
 *                (binary), sum_c (p_c - y_c)^2 (categorical)
 */
#ifndef LOSSD_ENGINE_EXTRA_H
#define LOSSD_ENGINE_EXTRA_H

#include <stdbool.h>
#include <stdint.h>

#include "lossd/eng.h"

#define ENG_EXTRA_MAX_TOPK 32   /* entries of top_k */
#define ENG_CALIB_MAX_BINS 1000 /* calibration bins */

/*
 * What to compute. Transparent; start from ENG_EXTRA_OPTS_INIT (nothing).
 * top_k must be strictly increasing, each in [1, C] (categorical losses
 * only); bins in [1, ENG_CALIB_MAX_BINS] (categorical and binary losses);
 * perplexity for sparse and categorical cross-entropy only. Anything else
 * is ENG_EINVAL from eng_loss_compute, with field "top_k", "calibration"
 * or "perplexity".
 */
typedef struct eng_extra_opts {
	int ntop;                          /* entries of top_k, 0 = none */
	int64_t top_k[ENG_EXTRA_MAX_TOPK]; /* strictly increasing, in [1, C] */
	int bins;                          /* calibration bins, 0 = none */
	bool perplexity;                   /* sums for perplexity */
} eng_extra_opts;

#define ENG_EXTRA_OPTS_INIT                                                                        \
	{                                                                                          \
		0, {0}, 0, false                                                                   \
	}

/* One calibration bin: sums over the positions whose confidence falls in it. */
typedef struct eng_calib_bin {
	int64_t count; /* positions (unweighted) */
	double weight; /* sum of w */
	double conf;   /* sum of w * confidence */
	double acc;    /* sum of w * accuracy (0 or 1) */
} eng_calib_bin;

/*
 * The sums. Transparent so a renderer and a codec can read them; new with
 * eng_extra_result_new (or inside a loss result), free with
 * eng_extra_result_free.
 */
typedef struct eng_extra_result {
	int ntop;
	int64_t top_k[ENG_EXTRA_MAX_TOPK];
	int64_t top_correct[ENG_EXTRA_MAX_TOPK]; /* positions correct at top_k[i] */
	int64_t top_count;                       /* counted positions */
	bool perplexity;
	double nll_sum;    /* sum of w * nll */
	double nll_weight; /* sum of w */
	int64_t nll_count; /* counted positions */
	int bins;
	eng_calib_bin *bin;  /* new, bins entries, or NULL */
	double brier_sum;    /* sum of w * brier term */
	double calib_weight; /* sum of w */
	int64_t calib_count; /* counted positions */
} eng_extra_result;

/* A zeroed result for o (which must be valid). New, or NULL when out of memory. */
eng_extra_result *eng_extra_result_new(const eng_extra_opts *o);

/* Frees r. Accepts NULL. */
void eng_extra_result_free(eng_extra_result *r);

/* Adds src into dst; same configuration (top_k list, bins, perplexity)
 * or ENG_ESTATE and dst unchanged. */
int eng_extra_result_merge(eng_extra_result *dst, const eng_extra_result *src);

/* exp(nll_sum / nll_weight) into *out; false (and NaN) when nothing was
 * counted or the weights sum to 0. */
bool eng_extra_perplexity(const eng_extra_result *r, double *out);

/* Share of counted positions correct at top_k[i]; false (NaN) when none. */
bool eng_extra_top_k(const eng_extra_result *r, int i, double *out);

/*
 * The calibration figures from the bins (W = total weight, over bins with
 * weight > 0, acc_b and conf_b the bin's weighted means):
 *   ece   = sum_b (w_b / W) |acc_b - conf_b|
 *   mce   = max_b |acc_b - conf_b|
 *   rmsce = sqrt(sum_b (w_b / W) (acc_b - conf_b)^2)
 *   brier = brier_sum / W
 * Undefined (NaN, false returned) when W is 0.
 */
typedef struct eng_calib_summary {
	double ece, mce, rmsce, brier;
} eng_calib_summary;

bool eng_calib_summarize(eng_calib_summary *out, const eng_extra_result *r);

/* The bin of confidence p among B bins: the b with b/B <= p < (b+1)/B,
 * 0 below 0, B - 1 at and above 1. NaN goes to bin 0 (callers skip it). */
int eng_calib_bin_of(double p, int bins);

#endif
