/*
 * stream_priv.h - api-private: a stream spec's struct and what
 * stream_spec.c, stream.c and history.c share of it.
 */
#ifndef LOSSD_API_STREAM_PRIV_H
#define LOSSD_API_STREAM_PRIV_H

#include "lossd/api_stream.h"
#include "lossd/extra.h"
#include "lossd/loss.h"

#include <jansson.h>
#include <stdbool.h>

struct api_stream_spec {
	char *text; /* canonical config JSON (new) */
	char *name; /* "" when none */
	eng_stream_config eng;
	int average; /* api_average */
	/* loss, when eng.has_loss */
	eng_loss_opts lopts; /* tensor pointers point into the tensors below */
	api_tensor class_weight, pos_weight;
	eng_reduction reduction;
	/* top_k / calibration (and then the perplexity sums of a cross-entropy
	 * loss), docs/API.md section 9; lopts.extra points here when any is asked */
	eng_extra_opts xopts;
};

/* Reads a create config (or, with stored, a config the store kept) into a
 * new spec. 0, or -1 with *p. */
int api__stream_spec_from(api_stream_spec **out, json_t *obj, const api_stream_limits *lim,
                          bool stored, api_problem *p);

/* The spec's canonical config as a new object (NULL when out of memory). */
json_t *api__stream_config_obj(const api_stream_spec *s);

/* The out-of-memory problem (503); returns -1. */
int api__stream_oom(api_problem *p);

/* An engine error with the field the user actually sent (score_key, e.g.
 * y_pred, for y_score); returns -1. */
int api__stream_from_eng(api_problem *p, const eng_error *err, const char *score_key);

/* The reduction a stream's loss is read with. */
eng_reduction api__stream_reduction(const api_stream_spec *s);

#endif
