/*
 * stream_priv.h - api-private: what history.c reads of a stream spec
 * (the spec's struct is stream.c's).
 */
#ifndef LOSSD_API_STREAM_PRIV_H
#define LOSSD_API_STREAM_PRIV_H

#include "lossd/api_stream.h"

/* The reduction a stream's loss is read with. */
eng_reduction api__stream_reduction(const api_stream_spec *s);

#endif
