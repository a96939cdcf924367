/*
 * aucfast.c - the fast column reader of aucfast.h.
 *
 * Why: the accumulators (binned, sketch) must take hundreds of millions of
 * scores a second, and reading through eng_tensor_at costs a dtype switch
 * per value. Here a chunk is read with one loop per dtype at a fixed
 * stride, labels and weights are checked by or-ing "is bad" flags over the
 * chunk (no early exit, so the loops vectorize), and only a chunk that
 * turns out to hold a bad value is read again by eng__auc_gather, which
 * stops at the first bad value and reports it. So results and errors are
 * exactly eng__auc_gather's.
 *
 * Invariants: a chunk either fills score/lab(/w) with valid values and
 * returns 0, or returns eng__auc_gather's error for it.
 *
 * Does not: read class-id labels (their per-column comparison stays in
 * eng__auc_gather), or per-row weights of a flattened multi-column input.
 */
#include "aucfast.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "aucdata.h"

void eng__auc_reader_init(eng__auc_reader *r, const eng_auc_data *d, int64_t col, int64_t ncols)
{
	const eng_tensor *s = d->score;
	r->d = d;
	r->col = col;
	r->weighted = d->weight != NULL;
	r->wscalar = d->weight && d->weight->ndim == 0;
	r->fast = d->kind != ENG_LABELS_CLASS_ID;
	if (col == ENG_AUC_ALL) {
		/* item k: score element k; label element k (multi) or row k
		 * (binary, which has one column here) */
		r->s0 = 0;
		r->sstride = 1;
		r->l0 = 0;
		r->lstride = 1;
		if (ncols > 1 && r->weighted && !r->wscalar)
			r->fast = false; /* weight of row k / C */
	} else {
		bool two = s->ndim == 2;
		r->s0 = two ? col : 0;
		r->sstride = two ? ncols : 1;
		r->l0 = d->kind == ENG_LABELS_MULTI ? col : 0;
		r->lstride = d->kind == ENG_LABELS_MULTI ? ncols : 1;
	}
}

/* Scores as doubles (checked for NaN by the caller). */
#define READ_SCORES(T)                                                                             \
	do {                                                                                       \
		const T *restrict p = (const T *)t->data + r->s0 + from * r->sstride;              \
		if (r->sstride == 1)                                                               \
			for (int64_t j = 0; j < count; j++)                                        \
				score[j] = (double)p[j];                                           \
		else                                                                               \
			for (int64_t j = 0; j < count; j++)                                        \
				score[j] = (double)p[j * r->sstride];                              \
	} while (0)

/* Integer labels: bad when not 0 or 1. */
#define READ_LABELS_INT(T, UT)                                                                     \
	do {                                                                                       \
		const T *p = (const T *)t->data + r->l0 + from * r->lstride;                       \
		UT acc = 0;                                                                        \
		if (r->lstride == 1)                                                               \
			for (int64_t j = 0; j < count; j++) {                                      \
				UT v = (UT)p[j];                                                   \
				acc |= v;                                                          \
				lab[j] = (uint8_t)v;                                               \
			}                                                                          \
		else                                                                               \
			for (int64_t j = 0; j < count; j++) {                                      \
				UT v = (UT)p[j * r->lstride];                                      \
				acc |= v;                                                          \
				lab[j] = (uint8_t)v;                                               \
			}                                                                          \
		bad = acc > 1;                                                                     \
	} while (0)

#define READ_LABELS_FLOAT(T)                                                                       \
	do {                                                                                       \
		const T *p = (const T *)t->data + r->l0 + from * r->lstride;                       \
		int acc = 0;                                                                       \
		for (int64_t j = 0; j < count; j++) {                                              \
			T v = p[j * r->lstride];                                                   \
			acc |= !(v == (T)0 || v == (T)1);                                          \
			lab[j] = v == (T)1;                                                        \
		}                                                                                  \
		bad = acc != 0;                                                                    \
	} while (0)

static bool read_labels(const eng__auc_reader *r, int64_t from, int64_t count,
                        uint8_t *restrict lab)
{
	const eng_tensor *t = r->d->label;
	bool bad = false;
	switch (t->dtype) {
	case ENG_F32: READ_LABELS_FLOAT(float); break;
	case ENG_F64: READ_LABELS_FLOAT(double); break;
	case ENG_I32: READ_LABELS_INT(int32_t, uint32_t); break;
	case ENG_I64: READ_LABELS_INT(int64_t, uint64_t); break;
	case ENG_U8: READ_LABELS_INT(uint8_t, uint8_t); break;
	default: bad = true;
	}
	return bad;
}

typedef double v2d __attribute__((vector_size(16)));
typedef int64_t v2l __attribute__((vector_size(16)));

/* Written with vector extensions: GCC does not vectorize the scalar
 * or-reduction of comparisons. */
static bool any_nan(const double *score, int64_t n)
{
	v2l acc = {0, 0}, acc2 = {0, 0};
	int64_t i = 0;
	for (; i + 4 <= n; i += 4) {
		v2d v, u;
		memcpy(&v, score + i, sizeof(v));
		memcpy(&u, score + i + 2, sizeof(u));
		acc |= v != v;
		acc2 |= u != u;
	}
	acc |= acc2;
	int64_t a = acc[0] | acc[1];
	for (; i < n; i++)
		a |= score[i] != score[i];
	return a != 0;
}

int eng__auc_read(const eng__auc_reader *r, int64_t from, int64_t count, double *restrict score,
                  const double **sp, uint8_t *restrict lab, double *restrict w, eng_error *err)
{
	*sp = score;
	if (!r->fast)
		return eng__auc_gather(r->d, r->col, from, count, score, lab,
		                       r->weighted ? w : NULL, err);
	const eng_tensor *t = r->d->score;
	bool bad = false;
	if (t->dtype == ENG_F64 && r->sstride == 1) {
		/* no copy: the caller reads the tensor */
		*sp = (const double *)t->data + r->s0 + from;
		bad = any_nan(*sp, count);
		goto labels;
	}
	switch (t->dtype) {
	case ENG_F32: READ_SCORES(float); break;
	case ENG_F64: READ_SCORES(double); break;
	case ENG_I32: READ_SCORES(int32_t); break;
	case ENG_I64: READ_SCORES(int64_t); break;
	case ENG_U8: READ_SCORES(uint8_t); break;
	default: goto slow;
	}
	if (t->dtype == ENG_F32 || t->dtype == ENG_F64)
		bad = any_nan(score, count);
labels:
	bad |= read_labels(r, from, count, lab);
	if (r->weighted) {
		const eng_tensor *wt = r->d->weight;
		if (r->wscalar) {
			double x = eng_tensor_at(wt, 0);
			for (int64_t j = 0; j < count; j++)
				w[j] = x;
		} else {
			for (int64_t j = 0; j < count; j++)
				w[j] = eng_tensor_at(wt, from + j);
		}
	}
	if (r->weighted) {
		int acc = 0;
		for (int64_t j = 0; j < count; j++)
			acc |= !(w[j] >= 0.0 && w[j] <= DBL_MAX);
		bad |= acc != 0;
	}
	if (bad)
		goto slow;
	return 0;
slow:
	*sp = score;
	return eng__auc_gather(r->d, r->col, from, count, score, lab, r->weighted ? w : NULL, err);
}

/* Items per or-reduction block: small enough that the exact search after
 * a hit is cheap, large enough to vectorize. */
#define BLOCK 256

int64_t eng__auc_first_bad(const double *score, const uint8_t *lab, const double *w, int64_t n)
{
	for (int64_t b = 0; b < n; b += BLOCK) {
		int64_t e = n - b < BLOCK ? n - b : BLOCK;
		int acc = 0;
		for (int64_t i = b; i < b + e; i++)
			acc |= (score[i] != score[i]) | (lab[i] > 1);
		if (w)
			for (int64_t i = b; i < b + e; i++)
				acc |= !(w[i] >= 0.0 && w[i] <= DBL_MAX);
		if (!acc)
			continue;
		for (int64_t i = b; i < b + e; i++)
			if (isnan(score[i]) || lab[i] > 1 ||
			    (w && !(w[i] >= 0.0 && isfinite(w[i]))))
				return i;
	}
	return -1;
}
