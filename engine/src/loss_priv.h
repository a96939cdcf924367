/*
 * loss_priv.h - what the loss modules (loss.c, xent.c, binary.c, regress.c,
 * gmm.c) share: the job one eng_loss_compute() call runs and the partial
 * sums one task fills. Private to the engine.
 *
 * A job is cut into ntasks tasks of rows_per_task consecutive positions
 * (the last one shorter). Task t writes only parts[t] and its own slice of
 * per_position, so tasks never share memory; loss.c adds the parts in task
 * order afterwards. A task that finds bad input records the first problem
 * in its part and stops; loss.c reports the one with the smallest index.
 */
#ifndef LOSSD_ENGINE_LOSS_PRIV_H
#define LOSSD_ENGINE_LOSS_PRIV_H

#include "lossd/loss.h"

#define ENG__EPS 1e-7

struct eng__extra_part;

typedef struct eng__loss_part {
	double wl;
	double w;
	int64_t count;
	int64_t ignored;
	int64_t correct;
	eng_loss_class *cls;        /* borrowed from the job: nclasses entries, or NULL */
	int64_t *conf;              /* borrowed from the job: conf_n^2 entries, or NULL */
	struct eng__extra_part *xp; /* extra metrics fused into the loss pass, or NULL */
	int err;                    /* 0 or the first ENG_E* this task met */
	const char *err_field;
	int64_t err_index;
	char err_msg[160];
} eng__loss_part;

/* One task's share of the extra metrics (extra.c). */
typedef struct eng__extra_part {
	int64_t top[ENG_EXTRA_MAX_TOPK];
	int64_t top_n;
	double nll, nll_w;
	int64_t nll_n;
	eng_calib_bin *bin; /* borrowed: the task's bins */
	double brier, calib_w;
	int64_t calib_n;
	int err;
} eng__extra_part;

typedef struct eng__loss_job {
	const eng_loss_opts *o;
	const eng_tensor *yt;
	const eng_tensor *yp;
	int64_t npos; /* positions */
	/* categorical: classes C, and position p = (po, pi) with po = p / inner,
	 * pi = p % inner; class c of p is y_pred[po * C * inner + c * inner + pi].
	 * binary: C = columns (positions per row of the last axis).
	 * gmm: C = Z grid points, K components. */
	int64_t C;
	int64_t inner;
	int64_t K;
	const double *sw; /* sample weight of p = sw[p / sw_div]; NULL = 1 */
	int64_t sw_div;
	const double *cw;   /* class_weight (C) or NULL */
	const double *cost; /* cost_matrix (C*C) or NULL */
	const double *pw;   /* pos_weight of p = pw[p % pw_period], NULL = 1 */
	int64_t pw_period;
	const double *x;      /* gmm grid (Z) */
	double *per_position; /* npos or NULL */
	int64_t nclasses;
	int64_t conf_n;
	int64_t rows_per_task;
	int64_t ntasks;
	eng__loss_part *parts;
	/* extra metrics (extra.c), run after the loss tasks */
	const eng_extra_opts *xo;
	bool x_nll;   /* compute nll sums (perplexity not taken from the loss) */
	bool x_work;  /* some extra figure needs a look at the rows */
	bool x_fused; /* ... and the loss pass does it (xent.c rows_block) */
	eng__extra_part *xparts;
	eng_calib_bin *xbins;
} eng__loss_job;

static inline double eng__sw(const eng__loss_job *j, int64_t p)
{
	return j->sw ? j->sw[p / j->sw_div] : 1.0;
}

/* Sample weights of positions [p, p + n) into dst (1 without weights). */
static inline void eng__load_sw(double *dst, const eng__loss_job *j, int64_t p, int64_t n)
{
	if (!j->sw) {
		for (int64_t i = 0; i < n; i++)
			dst[i] = 1.0;
		return;
	}
	int64_t li = p / j->sw_div, rem = p % j->sw_div;
	for (int64_t i = 0; i < n; i++) {
		dst[i] = j->sw[li];
		if (++rem == j->sw_div) {
			rem = 0;
			li++;
		}
	}
}

static inline void eng__task_range(const eng__loss_job *j, int64_t t, int64_t *p0, int64_t *p1)
{
	*p0 = t * j->rows_per_task;
	*p1 = *p0 + j->rows_per_task;
	if (*p1 > j->npos)
		*p1 = j->npos;
}

/* Elements [off, off + n) of t as doubles into dst: one typed loop per
 * dtype, so elementwise kernels do not switch per element. */
static inline void eng__load(double *dst, const eng_tensor *t, int64_t off, int64_t n)
{
	switch (t->dtype) {
	case ENG_F32:
		for (int64_t i = 0; i < n; i++)
			dst[i] = (double)((const float *)t->data)[off + i];
		break;
	case ENG_F64:
		for (int64_t i = 0; i < n; i++)
			dst[i] = ((const double *)t->data)[off + i];
		break;
	default:
		for (int64_t i = 0; i < n; i++)
			dst[i] = eng_tensor_at(t, off + i);
		break;
	}
}

/* fn(arg, t) for every t in [from, to), through par (loss.c). */
void eng__parallel_from(const eng_parallel *par, int64_t from, int64_t to, eng_task_fn fn,
                        void *arg);

/* Records the task's first problem (later ones are dropped). Returns code. */
int eng__part_fail(eng__loss_part *pt, int code, const char *field, int64_t index, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Adds one counted position of true class tc and predicted class pc. */
static inline void eng__part_add(eng__loss_part *pt, int64_t conf_n, int64_t tc, int64_t pc,
                                 double lw, double w)
{
	pt->wl += lw;
	pt->w += w;
	pt->count++;
	pt->correct += (tc == pc);
	if (pt->cls) {
		pt->cls[tc].support++;
		pt->cls[tc].weight_sum += w;
		pt->cls[tc].loss_sum += lw;
		pt->cls[pc].predicted++;
		pt->cls[tc].correct += (tc == pc);
	}
	if (pt->conf)
		pt->conf[tc * conf_n + pc]++;
}

/* Task functions (eng_task_fn), one per family. arg is the eng__loss_job. */
void eng__xent_task(void *arg, int64_t t);
void eng__binary_task(void *arg, int64_t t);
void eng__regress_task(void *arg, int64_t t);
void eng__gmm_task(void *arg, int64_t t);

/*
 * extra.c, in the order loss.c calls them: check o->extra against the kind
 * and class count (ENG_EINVAL); prepare the per-task parts once the tasks
 * are planned (ENG_ENOMEM), fusing them into the loss pass when
 * eng__xent_fuses_extra says so; finish: run eng__extra_task unless fused
 * (on tasks [from, ntasks): eng_loss_plan_run ran those before), and add the parts into r->extra (ENG_ENOMEM); cleanup frees the parts
 * (always, also after a failure).
 */
int eng__extra_check(const eng_extra_opts *x, eng_loss_kind k, int64_t C, eng_error *err);
int eng__extra_prepare(eng__loss_job *j, eng_error *err);
/* True when a and b ask for the same sums: the same top_k list, bins and
 * perplexity (so sums made under them add). */
bool eng__extra_opts_equal(const eng_extra_opts *a, const eng_extra_opts *b);
/* The options x's sums were made under. */
void eng__extra_opts_of(eng_extra_opts *o, const eng_extra_result *x);
/* True when a and b (either may be NULL) are extra sums of one
 * configuration (eng__extra_opts_equal), so they add. */
bool eng__extra_same_config(const eng_extra_result *a, const eng_extra_result *b);
int eng__extra_finish(eng__loss_job *j, eng_loss_result *r, int64_t from, const eng_parallel *par,
                      eng_error *err);
void eng__extra_cleanup(eng__loss_job *j);
void eng__extra_task(void *arg, int64_t t);

/* xent.c: whether every position of j goes through rows_block's AVX-512 row
 * kernel, which then also gathers the extra figures. */
bool eng__xent_fuses_extra(const eng__loss_job *j);

/* What rows_block knows of each of its n rows (arrays of n), for the fused
 * extra figures: labels (-1 ignored), rows that went to the general path,
 * the count of maxima and the rest of sum exp(x - max), the rest of the sum
 * of its squares (calibration only), first argmax, classes above the true
 * one (top-k only), the unweighted loss, the max. */
typedef struct eng__extra_fused {
	const int64_t *lab;
	const unsigned char *bad;
	const double *ones, *rest, *rest2;
	const int64_t *am, *above;
	const double *lo;
	const float *m;
} eng__extra_fused;

/* Adds rows [p, p + n) (contiguous float32 rows x) into xp. */
void eng__extra_fused_rows(const eng__loss_job *j, struct eng__extra_part *xp, const float *x,
                           int64_t p, int64_t n, const eng__extra_fused *f);

/* Adds position p by the general path (a row the fast kernels left to
 * position()). 0 or ENG_ENOMEM. */
int eng__extra_position(const eng__loss_job *j, struct eng__extra_part *xp, int64_t p);

/* Classes of x[0..C) scoring strictly above t, counted up to cap (the
 * largest k: a row past it is wrong at every k) and then min(count, cap).
 * AVX-512 where there is one. */
int64_t eng__count_above_f32(const float *x, int64_t C, float t, int64_t cap);

#endif
