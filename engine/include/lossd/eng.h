/*
 * eng.h - what every engine module shares: error codes, the tensor view,
 * the validation-error struct and the parallel-for hook.
 *
 * The engine is a pure numeric library. It does no I/O, parses no JSON, reads
 * no clock, keeps no globals and owns no threads: a caller that wants work
 * split across cores passes an eng_parallel whose for_each runs tasks on the
 * caller's threads. Results never depend on how many threads ran them,
 * because the engine decides the task boundaries and reduces the partial
 * results in task order.
 */
#ifndef LOSSD_ENGINE_ENG_H
#define LOSSD_ENGINE_ENG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- error codes: 0 or one of these (negative) ------------------------ */
#define ENG_OK         0
#define ENG_EINVAL     -1 /* bad option or argument (maps to bad_option) */
#define ENG_ENOMEM     -2 /* allocation failed */
#define ENG_ESHAPE     -3 /* shapes do not fit together (shape_mismatch) */
#define ENG_ELABEL     -4 /* label not whole or out of range (label_out_of_range) */
#define ENG_EPROB      -5 /* probability out of range (prediction_out_of_range) */
#define ENG_ENONFINITE -6 /* NaN or Inf where not allowed (non_finite) */
#define ENG_EWEIGHT    -7 /* negative or non-finite weight (bad_weight) */
#define ENG_ELIMIT     -8 /* a configured memory cap was reached */
#define ENG_ESTATE     -9 /* serialized state is corrupt or of another config */

/* ---- tensors ----------------------------------------------------------- */
typedef enum {
	ENG_F32 = 0,
	ENG_F64,
	ENG_I32,
	ENG_I64,
	ENG_U8,
} eng_dtype;

#define ENG_MAX_RANK 8

/*
 * A borrowed, dense, row-major view of little-endian values. `data` is not
 * owned by the view. `size` is the product of `shape` (1 for ndim == 0, a
 * scalar). Every element count is below 2^53 (the api layer bounds it far
 * lower), so indices fit in int64_t and in a double.
 */
typedef struct eng_tensor {
	eng_dtype dtype;
	int ndim;
	int64_t shape[ENG_MAX_RANK];
	int64_t size;
	const void *data;
} eng_tensor;

/* Bytes of one element of dtype d. */
size_t eng_dtype_size(eng_dtype d);
/* The dtype's name as docs/API.md spells it ("float32", ...). */
const char *eng_dtype_name(eng_dtype d);

/* Element i of t converted to double. */
static inline double eng_tensor_at(const eng_tensor *t, int64_t i)
{
	switch (t->dtype) {
	case ENG_F32: return (double)((const float *)t->data)[i];
	case ENG_F64: return ((const double *)t->data)[i];
	case ENG_I32: return (double)((const int32_t *)t->data)[i];
	case ENG_I64: return (double)((const int64_t *)t->data)[i];
	case ENG_U8: return (double)((const uint8_t *)t->data)[i];
	}
	return 0.0;
}

/* ---- validation errors -------------------------------------------------- */
/*
 * Filled by a failing engine call; caller-owned, fixed size, no heap.
 * `field` names the request field the problem is in ("y_true", "y_pred",
 * "sample_weight", ...; a string literal), `index` is the flat element index
 * in that tensor or -1, and `msg` says what is wrong in words a user reads.
 */
typedef struct eng_error {
	int code;
	const char *field;
	int64_t index;
	char msg[200];
} eng_error;

/* Sets *err (err may be NULL) and returns code. printf-style message. */
int eng_error_set(eng_error *err, int code, const char *field, int64_t index, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));

/* ---- parallel-for --------------------------------------------------------- */
typedef void (*eng_task_fn)(void *arg, int64_t task);

/*
 * Runs fn(arg, t) once for every t in [0, ntasks), possibly concurrently,
 * and returns when all have finished. The caller owns the threads. NULL or
 * a NULL for_each means serial. Tasks must not call for_each again.
 */
typedef struct eng_parallel {
	void (*for_each)(const struct eng_parallel *self, int64_t ntasks, eng_task_fn fn,
	                 void *arg);
	int nthreads; /* threads for_each may use, >= 1 */
	void *impl;
} eng_parallel;

void eng_parallel_for(const eng_parallel *par, int64_t ntasks, eng_task_fn fn, void *arg);

/* ---- checksums ---------------------------------------------------------- */
/*
 * The 64-bit checksum that frames a serialized stream state (stream.h),
 * over any n bytes: for callers that keep bytes of their own beside states
 * (the server's store checksums its text rows with it). Not cryptographic:
 * it detects damage, not tampering.
 */
uint64_t eng_checksum64(const void *p, size_t n);

#endif
