/*
 * render.h - api-private: the reply pieces /v1/auc, /v1/loss and the
 * stream reads share (render.c), and the option names they share.
 */
#ifndef LOSSD_API_RENDER_H
#define LOSSD_API_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lossd/auc.h"
#include "lossd/loss.h"

/*
 * The cap on a rendered reply body (lossd/dynbuf.h). A reply is bounded by
 * the request's caps (64 Mi positions by default, at most 25 bytes each in
 * per-position output: 1.6 GiB; a history page of 4096-class points is
 * of that order too); the cap sits far above that and is there so that no
 * configuration turns a reply into an unbounded allocation: past it, as
 * when memory runs out, the reply is a 503.
 */
#define API__REPLY_MAX ((size_t)64 << 30)

/* "method" of /v1/auc and of a stream, indexed by eng_stream_method. */
extern const char *const api__method_names[];
/* "curve", indexed by eng_curve. */
extern const char *const api__curve_names[];
/* "summation_method", indexed by eng_summation. */
extern const char *const api__summation_names[];
/* "average", indexed by api_average. */
extern const char *const api__average_names[];

/* How per-class AUCs become one (docs/API.md section 3). */
typedef enum api_average {
	API_AVG_MACRO,    /* plain mean over the defined classes */
	API_AVG_WEIGHTED, /* weighted by each class' sample-weighted positives */
	API_AVG_MICRO,    /* every class flattened into one problem (the caller's) */
	API_AVG_NONE,     /* no average: null */
} api_average;

/* A running macro or weighted average of AUCs and their error bounds. */
typedef struct api_auc_avg {
	int average; /* api_average */
	double sum, bsum, wsum;
	int64_t n;
} api_auc_avg;

#define API_AUC_AVG_INIT(average)                                                                  \
	{                                                                                          \
		(average), 0.0, 0.0, 0.0, 0                                                        \
	}

/* Adds one class' result (ignored unless r->defined). */
void api__auc_avg_add(api_auc_avg *a, const eng_auc_result *r);

/* The average AUC and error bound so far: true, or false (both left as
 * they were) for micro, none, no defined class or zero total weight. */
bool api__auc_avg_value(double *auc, double *bound, const api_auc_avg *a);

/* A double, or null when NaN/Inf. New reference (NULL when out of memory). */
json_t *api__num(double v);

/* An array of n doubles through api__num. New (NULL when out of memory). */
json_t *api__num_array(const double *v, int64_t n);

/* A curve as {"x", "y", "thresholds"}. New (NULL when out of memory). */
json_t *api__curve_json(const eng_auc_curve *c);

/* One per_class row of a loss: class, support, weight_sum, loss_sum,
 * loss_mean, predicted, correct, precision, recall, f1. New (NULL when out
 * of memory). */
json_t *api__class_row(int64_t c, const eng_loss_class *k);

/*
 * An AUC's interval as docs/API.md section 9 renders it (/v1/auc and streams):
 * {"level", "method": "delong" | "hanley_mcneil", "lower", "upper", "se"}
 * from AUC a, standard error se and the sketch's widen (else 0), or JSON
 * null when a or se is NaN. New reference; NULL when out of memory.
 */
json_t *api__auc_ci_json(double level, bool delong, double a, double se, double widen);

#endif
