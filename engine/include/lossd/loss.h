/*
 * loss.h - the losses of docs/API.md section 2, computed into additive sums.
 *
 * One call, eng_loss_compute(), evaluates any loss on a pair of tensor views
 * and returns a heap result that holds SUMS (sum of w*l, sum of w, counts,
 * per-class sums), never a finished mean: two results of the same
 * configuration merge by addition (eng_loss_result_merge) and the reduced
 * loss is derived from the sums at any time (eng_loss_result_value). That
 * is what a stream accumulating batches needs, and a single request is the
 * special case of one batch.
 *
 * Inputs are borrowed eng_tensor views of any dtype; they are read in place
 * (float32 stays float32, nothing is widened into a copy) and every sum is
 * accumulated in double. Work is split into tasks whose boundaries depend
 * only on the shapes and options, and partial sums are added in task order,
 * so the result is bit-identical whatever eng_parallel runs the tasks.
 *
 * Accuracy: the general path computes in double and matches a float64
 * evaluation of the same formulas to rounding. Float32 logits take
 * vectorized float kernels (sparse cross-entropy: exp to ~1 ulp, partial
 * sums of 8 terms in float, everything else in double; binary CE from
 * logits: softplus to ~2 ulp), within 1e-6 relative of float64 per
 * position and typically 1e-10 on a mean over many positions.
 */
#ifndef LOSSD_ENGINE_LOSS_H
#define LOSSD_ENGINE_LOSS_H

#include <stdbool.h>
#include <stdint.h>

#include "lossd/eng.h"
#include "lossd/extra.h"

typedef enum {
	ENG_LOSS_SPARSE_CE = 0,     /* sparse_categorical_crossentropy */
	ENG_LOSS_CATEGORICAL_CE,    /* categorical_crossentropy */
	ENG_LOSS_BINARY_CE,         /* binary_crossentropy */
	ENG_LOSS_CATEGORICAL_FOCAL, /* categorical_focal_crossentropy */
	ENG_LOSS_BINARY_FOCAL,      /* binary_focal_crossentropy */
	ENG_LOSS_KL,                /* kl_divergence */
	ENG_LOSS_GAUSSIAN_MIXTURE,  /* gaussian_mixture */
	ENG_LOSS_MSE,               /* mean_squared_error */
	ENG_LOSS_MAE,               /* mean_absolute_error */
	ENG_LOSS_HUBER,             /* huber */
	ENG_LOSS__COUNT
} eng_loss_kind;

typedef enum {
	ENG_RED_MEAN = 0,            /* sum(w*l) / sum(w) */
	ENG_RED_SUM,                 /* sum(w*l) */
	ENG_RED_SUM_OVER_BATCH_SIZE, /* sum(w*l) / count */
	ENG_RED_NONE,                /* no scalar; per-position losses */
} eng_reduction;

typedef enum {
	ENG_GMM_MAE = 0,
	ENG_GMM_MSE,
} eng_gmm_error;

/* Names as docs/API.md spells them, indexed by the enums, NULL-terminated. */
extern const char *const eng_loss_names[ENG_LOSS__COUNT + 1];
extern const char *const eng_reduction_names[5];

/* Names as docs/API.md spells them; NULL for a value out of range. */
const char *eng_loss_kind_name(eng_loss_kind k);
const char *eng_reduction_name(eng_reduction r);
/* Parse a name; 0 on success, ENG_EINVAL for an unknown name. */
int eng_loss_kind_parse(eng_loss_kind *out, const char *name);
int eng_reduction_parse(eng_reduction *out, const char *name);

/* The categorical family: class axis, per-class table by true class. */
bool eng_loss_is_categorical(eng_loss_kind k);
/* binary_crossentropy and binary_focal_crossentropy: elementwise, per column. */
bool eng_loss_is_binary(eng_loss_kind k);

/*
 * Options of one loss evaluation. Transparent; start from ENG_LOSS_OPTS_INIT
 * and set what the request says. Every tensor pointer is borrowed for the
 * duration of eng_loss_compute() and may be NULL (= not given).
 *
 * Applicability (anything else set to a non-default value is ENG_EINVAL,
 * so a request never silently gets a different loss than it asked for):
 *   axis, class_weight, cost_matrix             categorical family
 *   label_smoothing                             categorical family except KL,
 *                                               and binary (Keras: y*(1-e)+e/2)
 *   pos_weight                                  binary losses
 *   ignore_class                                categorical and binary
 *   alpha, gamma                                focal losses
 *   apply_class_balancing                       binary focal
 *   delta                                       huber
 *   x, gmm_error                                gaussian_mixture
 *   from_logits                                 all but regression and GMM
 *   log_input, log_target                       kl_divergence
 *   sample_weight, reduction, nan_policy        all
 */
typedef struct eng_loss_opts {
	eng_loss_kind kind;
	bool from_logits;
	int axis; /* class axis of y_pred; negative from the end */
	eng_reduction reduction;
	bool has_ignore_class;
	int64_t ignore_class;   /* any integer, e.g. -100 */
	double label_smoothing; /* [0, 1] */
	double alpha;           /* focal, 0.25 */
	double gamma;           /* focal, 2.0, >= 0 */
	bool apply_class_balancing;
	double delta; /* huber, 1.0, > 0 */
	eng_gmm_error gmm_error;
	bool propagate_nan; /* nan_policy "propagate": NaN flows into the sums */
	/*
	 * kl_divergence in PyTorch's form (F.kl_div): y_pred holds log q, used
	 * as given (no softmax, no clipping), and the target p is not clipped:
	 * Σ_c p_c·(log p_c − log q_c) with 0·log 0 = 0. With log_target, y_true
	 * holds log p: Σ_c exp(t_c)·(t_c − log q_c). KL only (else ENG_EINVAL);
	 * from_logits must be false with log_input.
	 */
	bool log_input;
	bool log_target;
	/*
	 * sample_weight: one weight per position, Keras' rule: its shape is a
	 * leading part of the position shape (each of its dims equal to the
	 * position dim or 1) and it broadcasts over the rest. Dims of size 1
	 * beyond the position rank are squeezed first, so (N, 1) weights go
	 * with (N) positions as in Keras. A scalar weights everything.
	 */
	const eng_tensor *sample_weight;
	const eng_tensor *class_weight; /* (C) */
	const eng_tensor *cost_matrix;  /* (C, C): weight cost[true][argmax pred] */
	const eng_tensor *pos_weight;   /* scalar, (K) per column, or any shape
					 * that broadcasts to y_pred (numpy rule) */
	const eng_tensor *x;            /* gaussian_mixture grid (Z); default linspace(0, 1, Z) */
	/* What to collect besides the sums. */
	bool per_class;    /* per-class (categorical) / per-column (binary) table */
	bool confusion;    /* C x C counts (categorical, C <= ENG_LOSS_MAX_CONFUSION,
				* else ENG_EINVAL), 2 x 2 (binary) */
	bool per_position; /* weighted loss per position; implied by ENG_RED_NONE */
	/* perplexity, top-k accuracy, calibration (extra.h); NULL = none.
	 * Borrowed. Checked against the kind and class count (ENG_EINVAL). */
	const eng_extra_opts *extra;
} eng_loss_opts;

/* Largest class count with a confusion matrix: 2048^2 cells, 32 MiB. */
#define ENG_LOSS_MAX_CONFUSION 2048

/* The defaults of docs/API.md section 2; every member not named is 0 / false / NULL. */
#define ENG_LOSS_OPTS_INIT                                                                         \
	{                                                                                          \
		.kind = ENG_LOSS_SPARSE_CE, .axis = -1, .reduction = ENG_RED_MEAN, .alpha = 0.25,  \
		.gamma = 2.0, .delta = 1.0, .gmm_error = ENG_GMM_MAE, .per_class = true            \
	}

/*
 * Per-class figures, unweighted counts over counted (not ignored) positions
 * and weighted sums.
 *
 * Categorical losses, by class c:
 *   support    positions whose true class is c (argmax of a distribution y_true)
 *   predicted  positions whose argmax of y_pred is c (first maximum wins)
 *   correct    both
 *   weight_sum sum of w over positions of true class c; loss_sum sum of w*l
 *              (w: see eng_loss_result; an all-zero distribution row is a
 *              counted position of class 0, the argmax)
 * Binary losses, by column c (the last axis of y_pred; one column for rank <= 1):
 *   support    elements of the column with y_true > 0.5 (positives)
 *   predicted  elements with p > 0.5 (logit > 0 with from_logits): exactly
 *              0.5 is negative, as Keras' binary_accuracy and TorchMetrics
 *   correct    both (true positives), so precision/recall/F1 are those of
 *              the positive class of that column
 *   weight_sum, loss_sum over every counted element of the column
 */
typedef struct eng_loss_class {
	int64_t support;
	int64_t predicted;
	int64_t correct;
	double weight_sum;
	double loss_sum;
} eng_loss_class;

/*
 * A loss result: additive sums. Transparent so a renderer can read it;
 * create with eng_loss_result_new or eng_loss_compute, free with
 * eng_loss_result_free.
 *
 * `correct` is the number of counted positions whose argmax of y_pred is the
 * true class (categorical), or elements whose thresholded prediction
 * (p > 0.5) matches the thresholded target (y > 0.5) (binary: Keras
 * BinaryAccuracy); 0 and meaningless for regression and GMM (has_accuracy
 * false).
 *
 * A position's weight w is the product of the weights that apply to it:
 * its sample weight, the cost_matrix factor, and for the sparse loss its
 * true class's class_weight (PyTorch's weight= with class ids). With
 * distribution targets (categorical, categorical focal, KL) class_weight
 * acts inside the sum over classes only and w is the sample weight times
 * the cost factor (PyTorch's mean with probability targets), so "mean"
 * without sample weights divides by the number of counted positions,
 * whatever the targets sum to.
 */
typedef struct eng_loss_result {
	eng_loss_kind kind;
	double wloss_sum;  /* sum over counted positions of w*l */
	double weight_sum; /* sum over counted positions of w */
	int64_t count;     /* counted positions */
	int64_t ignored;   /* positions whose true class is ignore_class */
	int64_t correct;
	bool has_accuracy;
	int64_t nclasses;          /* entries of per_class (classes or columns), 0 if none */
	eng_loss_class *per_class; /* new, nclasses entries, or NULL */
	int64_t conf_n;            /* confusion is conf_n x conf_n, 0 if none */
	int64_t *confusion;        /* new, row = true class, column = predicted, or NULL */
	/* Weighted loss per position, 0 where ignored; NaN only with propagate. */
	double *per_position; /* new, pos_size entries, or NULL */
	int pos_ndim;
	int64_t pos_shape[ENG_MAX_RANK];
	int64_t pos_size;
	/* the sums of o->extra (new; merged with the rest), or NULL */
	eng_extra_result *extra;
} eng_loss_result;

/*
 * A zeroed result (sums 0, counts 0) with room for nclasses per-class rows
 * (0 for none) and a conf_n x conf_n confusion matrix (0 for none), to
 * merge batches into. Returns new (eng_loss_result_free) or NULL when out
 * of memory.
 */
eng_loss_result *eng_loss_result_new(eng_loss_kind kind, int64_t nclasses, int64_t conf_n);

/* Frees r and what it owns. Accepts NULL. */
void eng_loss_result_free(eng_loss_result *r);

/*
 * Adds src's sums into dst. Both must be of the same kind, nclasses and
 * conf_n, and carry extra sums of one configuration or none (else
 * ENG_ESTATE, dst unchanged). per_position is not merged:
 * dst keeps its own. Returns 0 or ENG_ESTATE.
 */
int eng_loss_result_merge(eng_loss_result *dst, const eng_loss_result *src);

/*
 * The reduced loss of r under reduction red, into *out. Returns true when
 * defined; false (and *out = NaN) for ENG_RED_NONE, for a mean or
 * sum_over_batch_size of no counted position (undefined, never a made-up 0),
 * and for a mean whose weight sum is 0. ENG_RED_SUM is always defined: the
 * sum of no terms is 0, as in PyTorch and Keras. *out may be NaN or Inf only when NaN was
 * propagated into the sums.
 */
bool eng_loss_result_value(const eng_loss_result *r, eng_reduction red, double *out);

/*
 * Evaluates the loss o->kind of y_pred against y_true (both borrowed).
 *
 * Shapes:
 *   sparse CE      y_pred (..., C, ...) with the class axis o->axis; y_true the
 *                  position shape (y_pred without that axis), or that shape
 *                  followed by a size-1 axis (squeezed)
 *   categorical,   y_true of the shape of y_pred
 *   focal, KL
 *   binary         y_true of the shape of y_pred; every element a position
 *   regression     same shapes; every element a position
 *   GMM            y_true (N, Z), y_pred (N, 3K) with c_k > 0; positions (N)
 *   (for binary and regression a trailing size-1 axis on either side is
 *    tolerated: (N) with (N, 1))
 *
 * Validation (fills *err with the field and the flat index into it):
 *   ENG_ESHAPE      shapes that do not fit, sample_weight/class_weight/
 *                   cost_matrix/pos_weight/x of the wrong shape
 *   ENG_ELABEL      a class id that is not whole or not in [0, C) unless it is
 *                   ignore_class; a binary target outside [0, 1]; a negative
 *                   entry of a distribution y_true
 *   ENG_EPROB       from_logits false: a probability < 0 (or > 1 for the
 *                   binary losses), a categorical row summing to 0 (CE, focal);
 *                   gaussian_mixture c_k <= 0 (a prediction out of range)
 *   ENG_ENONFINITE  NaN/Inf in y_true or y_pred unless o->propagate_nan
 *   ENG_EWEIGHT     a weight that is negative or not finite (always)
 *   ENG_EINVAL      an option out of range or not applicable to the loss
 *   ENG_ENOMEM      out of memory
 * On success *out is new (eng_loss_result_free) and 0 is returned; on
 * failure *out is NULL. par may be NULL (serial).
 */
int eng_loss_compute(eng_loss_result **out, const eng_tensor *y_true, const eng_tensor *y_pred,
                     const eng_loss_opts *o, const eng_parallel *par, eng_error *err);

/*
 * The same computation, driven a range of tasks at a time: for a caller
 * that has y_pred's first elements before the rest (a body decoded as it
 * arrives) and runs the tasks that read only those early, on a thread of
 * its own. eng_loss_plan_new does every check and preparation of
 * eng_loss_compute that reads no y_pred value (the same errors), and cuts
 * the same tasks; eng_loss_plan_run(pl, to) runs tasks [done, to) serially,
 * in this thread; eng_loss_plan_finish runs the rest through par, then
 * reports the first problem by index and adds the parts in task order, so
 * *out is bit for bit eng_loss_compute's, whatever was run early.
 * eng_loss_plan_pred_end(pl, t) is the count of y_pred elements, from the
 * first in row-major order, that tasks [0, t] read: run task t only once
 * those hold their final values.
 *
 * y_true, y_pred and o (and the tensors o points to) are borrowed until
 * eng_loss_plan_free; y_pred's elements past what the tasks run so far
 * read may still change. Not thread-safe: one thread at a time (the hand-off
 * between threads is the caller's). Returns as eng_loss_compute; after
 * eng_loss_plan_finish only eng_loss_plan_free may be called.
 */
typedef struct eng_loss_plan eng_loss_plan;

int eng_loss_plan_new(eng_loss_plan **out, const eng_tensor *y_true, const eng_tensor *y_pred,
                      const eng_loss_opts *o, eng_error *err);
int64_t eng_loss_plan_tasks(const eng_loss_plan *pl);
int64_t eng_loss_plan_done(const eng_loss_plan *pl);
int64_t eng_loss_plan_pred_end(const eng_loss_plan *pl, int64_t t);
void eng_loss_plan_run(eng_loss_plan *pl, int64_t to);
int eng_loss_plan_finish(eng_loss_result **out, eng_loss_plan *pl, const eng_parallel *par,
                         eng_error *err);
void eng_loss_plan_free(eng_loss_plan *pl);

/* The bytes of partial tables (per-task sums, per-class rows, confusion
 * counts, calibration bins) eng_loss_plan_new would allocate for these
 * arguments, so a caller can count them against a memory budget before
 * asking for them; -1 when eng_loss_plan_new would refuse the shapes or
 * options. Allocates nothing; inputs borrowed for the call. */
int64_t eng_loss_plan_table_bytes(const eng_tensor *y_true, const eng_tensor *y_pred,
                                  const eng_loss_opts *o);

#endif
