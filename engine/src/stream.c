/*
 * stream.c - a stream's accumulated state (see stream.h): per-column AUC
 * accumulators, per-column label counts and optional loss sums.
 *
 * Layout by method:
 *   exact   every row kept as it came: scores (rows x
 *           C doubles, C = 1 for binary), labels as int32 (rows for binary
 *           and class ids, rows x C for multi-label) and weights (rows
 *           doubles, or none while every batch was unweighted). Reading is
 *           one eng_auc_exact over these arrays, so the number is
 *           scikit-learn's over all rows seen, micro average included.
 *   binned  one eng_binned per column; the micro average merges them into
 *           a scratch accumulator (Keras' counts simply add).
 *   sketch  one eng_sketch per column, each with sketch_bytes / C; micro
 *           merges them like binned.
 * With from_logits, exact and sketch take the ranking keys of
 * eng_auc_logit_keys (the logits, or the log-softmax for one-vs-rest), so
 * logits a double sigmoid would round to the same 1.0 stay distinct and a
 * sketch's error_bound stays honest; a curve's thresholds are turned back
 * into probabilities when read. Binned takes probabilities (its thresholds
 * are in [0, 1]).
 * Counts (unweighted positives/negatives and weighted sums per column,
 * batches, rows) are kept here for every method. The loss sums may carry
 * extra sums (top-k, calibration bins, perplexity; extra.h): they add like
 * the rest, merge only with sums of the same configuration, and are
 * written in a section of their own (format version 3).
 *
 * Why "a batch is a stream": eng_stream_batch validates a whole batch into a
 * fresh object and eng_stream_merge adds objects, so an update either
 * happens entirely or not at all, and the server can log and replay the
 * batch's bytes to reach the identical state (same merges, same order).
 *
 * Invariants: merge allocates everything it needs before it changes dst,
 * so every error leaves dst as it was. Every weighted sum a stream keeps is
 * finite (a batch or merge that would overflow one is ENG_ENONFINITE), so
 * whatever a stream holds serializes into bytes the reader accepts. Serialized bytes carry a magic, a
 * version, the payload length and a 64-bit checksum of the payload;
 * the reader validates every field (enums, sizes against the bytes left,
 * labels, weights) and the sections against each other (check_state), so
 * corrupt or forged input is ENG_ESTATE, never a crash, an allocation
 * larger than the input justifies, or a stream whose readings are NaN.
 *
 * Not here: locking, JSON, I/O, computing losses (the caller does and hands
 * the batch's sums in).
 */
#include "lossd/stream.h"
#include "lossd/aucci.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "bytes.h"
#include "history_priv.h"
#include "loss_priv.h"
#include "lossd/binned.h"
#include "lossd/sketch.h"

typedef struct colcount {
	int64_t pos, neg; /* unweighted rows */
	double pw, nw;    /* weighted */
} colcount;

struct eng_stream {
	eng_stream_config cfg;
	int64_t updates, rows;
	colcount *cc; /* columns entries */
	/* exact */
	int64_t n, cap; /* rows stored, rows allocated */
	double *score;  /* n * columns */
	int32_t *label; /* n * lcols */
	double *weight; /* n, or NULL: every weight 1 */
	/* binned / sketch: columns accumulators */
	eng_binned **bins;
	eng_sketch **sk;
	/* loss sums, NULL until a batch with a loss was merged */
	eng_loss_result *loss;
	/* the step series (history.c), NULL until a step-tagged batch came;
	 * hist_max is how many points it keeps (not part of the identity) */
	eng__hist *hist;
	size_t hist_max;
};

static int64_t lcols(const eng_stream_config *c)
{
	return c->kind == ENG_LABELS_MULTI ? c->columns : 1;
}

/* ---- config ------------------------------------------------------------------ */

int eng_stream_config_check(const eng_stream_config *c, eng_error *err)
{
	if ((unsigned)c->method > ENG_STREAM_EXACT)
		return eng_error_set(err, ENG_EINVAL, "method", -1, "unknown method");
	if ((unsigned)c->kind > ENG_LABELS_MULTI)
		return eng_error_set(err, ENG_EINVAL, "num_classes", -1, "unknown label kind");
	if (c->kind == ENG_LABELS_BINARY ? c->columns != 1
	                                 : (c->columns < 2 || c->columns > ENG_STREAM_MAX_COLUMNS))
		return eng_error_set(
		        err, ENG_EINVAL, "num_classes", -1,
		        "num_classes must be in [2, %d] for one-vs-rest or multi-label",
		        ENG_STREAM_MAX_COLUMNS);
	if ((unsigned)c->curve > ENG_CURVE_PR)
		return eng_error_set(err, ENG_EINVAL, "curve", -1, "unknown curve");
	if ((unsigned)c->summation > ENG_SUM_MAJORING)
		return eng_error_set(err, ENG_EINVAL, "summation_method", -1,
		                     "unknown summation method");
	if (c->method == ENG_STREAM_BINNED &&
	    (c->num_thresholds < 2 || c->num_thresholds > ENG_BINNED_MAX_THRESHOLDS))
		return eng_error_set(err, ENG_EINVAL, "num_thresholds", -1,
		                     "num_thresholds must be in [2, %lld]",
		                     (long long)ENG_BINNED_MAX_THRESHOLDS);
	if (c->method == ENG_STREAM_SKETCH &&
	    (c->sketch_bytes / (size_t)c->columns < ENG_SKETCH_MIN_CAP ||
	     c->sketch_bytes / (size_t)c->columns > ENG_SKETCH_MAX_CAP))
		return eng_error_set(err, ENG_EINVAL, "sketch_bytes", -1,
		                     "sketch_bytes must give each column between %zu and %zu bytes",
		                     (size_t)ENG_SKETCH_MIN_CAP, (size_t)ENG_SKETCH_MAX_CAP);
	if (c->has_loss && (unsigned)c->loss_kind >= ENG_LOSS__COUNT)
		return eng_error_set(err, ENG_EINVAL, "loss", -1, "unknown loss");
	/* The accumulators' fixed size must fit the cap (exact grows instead). */
	size_t fixed = 0;
	if (c->method == ENG_STREAM_BINNED)
		fixed = (size_t)c->columns * (size_t)(c->num_thresholds + 1) * 2 * sizeof(double);
	else if (c->method == ENG_STREAM_SKETCH)
		fixed = c->sketch_bytes;
	if (fixed > c->max_bytes)
		return eng_error_set(
		        err, ENG_ELIMIT,
		        c->method == ENG_STREAM_BINNED ? "num_thresholds" : "sketch_bytes", -1,
		        "the accumulators need %zu bytes, more than the cap of %zu", fixed,
		        c->max_bytes);
	return 0;
}

bool eng_stream_config_equal(const eng_stream_config *a, const eng_stream_config *b)
{
	if (a->method != b->method || a->kind != b->kind || a->columns != b->columns ||
	    a->curve != b->curve || a->from_logits != b->from_logits || a->has_loss != b->has_loss)
		return false;
	if (a->has_loss &&
	    (a->loss_kind != b->loss_kind || a->loss_fingerprint != b->loss_fingerprint))
		return false;
	if (a->method == ENG_STREAM_BINNED &&
	    (a->num_thresholds != b->num_thresholds || a->summation != b->summation))
		return false;
	if (a->method == ENG_STREAM_SKETCH && a->sketch_bytes != b->sketch_bytes)
		return false;
	return true;
}

const eng_stream_config *eng_stream_config_of(const eng_stream *s)
{
	return &s->cfg;
}

/* ---- life cycle ------------------------------------------------------------------ */

void eng_stream_free(eng_stream *s)
{
	if (!s)
		return;
	if (s->bins)
		for (int64_t c = 0; c < s->cfg.columns; c++)
			eng_binned_free(s->bins[c]);
	if (s->sk)
		for (int64_t c = 0; c < s->cfg.columns; c++)
			eng_sketch_free(s->sk[c]);
	free(s->bins);
	free(s->sk);
	free(s->cc);
	free(s->score);
	free(s->label);
	free(s->weight);
	eng_loss_result_free(s->loss);
	eng__hist_free(s->hist);
	free(s);
}

static size_t sketch_col_bytes(const eng_stream_config *c)
{
	return c->sketch_bytes / (size_t)c->columns;
}

/* A new sketch of `cap` bytes holding src's data (NULL when out of memory). */
static eng_sketch *sketch_copy(const eng_sketch *src, size_t cap)
{
	eng_sketch *k = eng_sketch_new(cap);
	if (k && eng_sketch_merge(k, src) != 0) {
		eng_sketch_free(k);
		return NULL;
	}
	return k;
}

/* An empty stream without accumulators (make_accs adds them). */
static eng_stream *alloc_stream(const eng_stream_config *cfg)
{
	eng_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->cfg = *cfg;
	s->hist_max = ENG_HISTORY_DEFAULT_POINTS;
	s->cc = calloc((size_t)cfg->columns, sizeof(*s->cc));
	if (!s->cc) {
		free(s);
		return NULL;
	}
	return s;
}

static int make_accs(eng_stream *s)
{
	int64_t C = s->cfg.columns;
	if (s->cfg.method == ENG_STREAM_BINNED) {
		s->bins = calloc((size_t)C, sizeof(*s->bins));
		if (!s->bins)
			return ENG_ENOMEM;
		for (int64_t c = 0; c < C; c++)
			if (!(s->bins[c] = eng_binned_new(s->cfg.num_thresholds)))
				return ENG_ENOMEM;
	} else if (s->cfg.method == ENG_STREAM_SKETCH) {
		s->sk = calloc((size_t)C, sizeof(*s->sk));
		if (!s->sk)
			return ENG_ENOMEM;
		for (int64_t c = 0; c < C; c++)
			if (!(s->sk[c] = eng_sketch_new(sketch_col_bytes(&s->cfg))))
				return ENG_ENOMEM;
	}
	return 0;
}

int eng_stream_new(eng_stream **out, const eng_stream_config *cfg, eng_error *err)
{
	int rc = eng_stream_config_check(cfg, err);
	*out = NULL;
	if (rc)
		return rc;
	eng_stream *s = alloc_stream(cfg);
	if (!s || make_accs(s)) {
		eng_stream_free(s);
		return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
	}
	*out = s;
	return 0;
}

void eng_stream_set_max_bytes(eng_stream *s, size_t max_bytes)
{
	s->cfg.max_bytes = max_bytes;
}

size_t eng_stream_memory(const eng_stream *s)
{
	int64_t C = s->cfg.columns;
	size_t m = sizeof(*s) + (size_t)C * sizeof(colcount);
	m += (size_t)s->cap *
	     ((size_t)C * sizeof(double) + (size_t)lcols(&s->cfg) * sizeof(int32_t));
	if (s->weight)
		m += (size_t)s->cap * sizeof(double);
	if (s->bins)
		m += (size_t)C * (sizeof(void *) + 64 +
		                  2 * (size_t)(s->cfg.num_thresholds + 1) * sizeof(double));
	if (s->sk)
		for (int64_t c = 0; c < C; c++)
			m += sizeof(void *) + eng_sketch_memory(s->sk[c]);
	if (s->loss)
		m += sizeof(*s->loss) + (size_t)s->loss->nclasses * sizeof(eng_loss_class);
	if (s->loss && s->loss->extra)
		m += sizeof(eng_extra_result) +
		     (size_t)s->loss->extra->bins * sizeof(eng_calib_bin);
	return m + eng__hist_memory(s->hist);
}

void eng_stream_counts_of(eng_stream_counts *out, const eng_stream *s)
{
	out->updates = s->updates;
	out->rows = s->rows;
}

const eng_loss_result *eng_stream_loss(const eng_stream *s)
{
	return s->loss;
}

/* The options an extra result was made with (its configuration). */
static void extra_opts_of(eng_extra_opts *o, const eng_extra_result *x)
{
	eng_extra_opts z = ENG_EXTRA_OPTS_INIT;
	*o = z;
	o->ntop = x->ntop;
	memcpy(o->top_k, x->top_k, sizeof(o->top_k));
	o->bins = x->bins;
	o->perplexity = x->perplexity;
}

/* True when a and b (either may be NULL) are extra sums of one configuration. */
static bool extra_same_config(const eng_extra_result *a, const eng_extra_result *b)
{
	if (!a || !b)
		return !a && !b;
	if (a->ntop != b->ntop || a->bins != b->bins || a->perplexity != b->perplexity)
		return false;
	for (int i = 0; i < a->ntop; i++)
		if (a->top_k[i] != b->top_k[i])
			return false;
	return true;
}

/* True when x (may be NULL) has the configuration o. */
static bool hist_layout_matches(const eng_extra_result *x, const eng_extra_opts *o)
{
	if (!x || x->ntop != o->ntop || x->bins != o->bins || x->perplexity != o->perplexity)
		return false;
	return memcmp(x->top_k, o->top_k, (size_t)o->ntop * sizeof(o->top_k[0])) == 0;
}

/* An empty loss result of src's kind, classes and extra configuration. */
static eng_loss_result *loss_empty_like(const eng_loss_result *src)
{
	eng_loss_result *r = eng_loss_result_new(src->kind, src->nclasses, 0);
	if (r && src->extra) {
		eng_extra_opts o;
		extra_opts_of(&o, src->extra);
		if (!(r->extra = eng_extra_result_new(&o))) {
			eng_loss_result_free(r);
			return NULL;
		}
	}
	if (r)
		r->has_accuracy = src->has_accuracy;
	return r;
}

static eng_loss_result *loss_copy(const eng_loss_result *src)
{
	eng_loss_result *r = loss_empty_like(src);
	if (r && eng_loss_result_merge(r, src) != 0) {
		eng_loss_result_free(r);
		return NULL;
	}
	/* merge keeps dst's has_accuracy: carry src's over. */
	if (r)
		r->has_accuracy = src->has_accuracy;
	return r;
}

int eng_stream_clone(eng_stream **out, const eng_stream *s)
{
	void *buf = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = eng_stream_serialize(&buf, &len, s);
	if (!rc)
		rc = eng_stream_deserialize(out, buf, len, s->cfg.max_bytes, NULL);
	free(buf);
	return rc == ENG_ESTATE ? ENG_ENOMEM : rc;
}

int eng_stream_empty_copy(eng_stream **out, const eng_stream *s)
{
	eng_stream *e = alloc_stream(&s->cfg);
	*out = NULL;
	if (!e || make_accs(e))
		goto oom;
	/* What eng_stream_reset keeps: the step series and its size. */
	e->hist_max = s->hist_max;
	if (eng__hist_size(s->hist)) {
		uint8_t *hb = NULL;
		size_t hl = 0;
		const char *why = NULL;
		int rc = eng__hist_write(&hb, &hl, s->hist);
		if (!rc)
			rc = eng__hist_read(&e->hist, hb, hl, s->cfg.columns, &why);
		free(hb);
		if (rc)
			goto oom;
	}
	*out = e;
	return 0;
oom:
	eng_stream_free(e);
	return ENG_ENOMEM;
}

int eng_stream_reset(eng_stream *s)
{
	eng_stream *fresh = alloc_stream(&s->cfg);
	if (!fresh || make_accs(fresh)) {
		eng_stream_free(fresh);
		return ENG_ENOMEM;
	}
	/* Swap the contents, then free the old ones through `fresh`. */
	eng_stream tmp = *s;
	*s = *fresh;
	*fresh = tmp;
	/* The step series is history, not running state: it stays. */
	s->hist = fresh->hist;
	s->hist_max = fresh->hist_max;
	fresh->hist = NULL;
	eng_stream_free(fresh);
	return 0;
}

/* ---- sums that must stay finite --------------------------------------------------- */
/*
 * Every weighted sum a stream keeps (per column the positives' and the
 * negatives' weight, the accumulators' totals, the loss sums) stays finite:
 * an inf there would make the state unreadable (the reader refuses it) and
 * every reading NaN. A batch whose own sums overflow, or a merge whose
 * result would, is refused before anything changes (ENG_ENONFINITE).
 */

static bool fin(double a, double b)
{
	return isfinite(a) && isfinite(b) && isfinite(a + b);
}

/* Totals of accumulator k of s (binned cells or sketch buckets); 0 for exact. */
static void acc_weights(const eng_stream *s, int64_t k, double *pos, double *neg)
{
	*pos = *neg = 0.0;
	if (s->bins)
		eng_binned_weights(s->bins[k], pos, neg);
	else if (s->sk)
		eng_sketch_weights(s->sk[k], pos, neg);
}

/* True when every sum of a (plus b's, when b is not NULL) is finite; else
 * *what names the first that is not. */
static bool sums_finite(const eng_stream *a, const eng_stream *b, const char **what)
{
	for (int64_t k = 0; k < a->cfg.columns; k++) {
		double ap, an, bp = 0.0, bn = 0.0;
		if (!fin(a->cc[k].pw, b ? b->cc[k].pw : 0.0) ||
		    !fin(a->cc[k].nw, b ? b->cc[k].nw : 0.0)) {
			*what = "weight sums";
			return false;
		}
		acc_weights(a, k, &ap, &an);
		if (b)
			acc_weights(b, k, &bp, &bn);
		if (!fin(ap, bp) || !fin(an, bn)) {
			*what = "weight sums";
			return false;
		}
	}
	const eng_loss_result *la = a->loss, *lb = b ? b->loss : NULL;
	const eng_loss_result *l = la ? la : lb;
	if (!l)
		return true;
	*what = "loss sums";
	if (!fin(la ? la->wloss_sum : 0.0, lb ? lb->wloss_sum : 0.0) ||
	    !fin(la ? la->weight_sum : 0.0, lb ? lb->weight_sum : 0.0))
		return false;
	for (int64_t k = 0; k < l->nclasses; k++) {
		const eng_loss_class *x = la ? &la->per_class[k] : NULL;
		const eng_loss_class *y = lb ? &lb->per_class[k] : NULL;
		if (!fin(x ? x->weight_sum : 0.0, y ? y->weight_sum : 0.0) ||
		    !fin(x ? x->loss_sum : 0.0, y ? y->loss_sum : 0.0))
			return false;
	}
	const eng_extra_result *xa = la ? la->extra : NULL, *xb = lb ? lb->extra : NULL;
	const eng_extra_result *xe = xa ? xa : xb;
	if (!xe)
		return true;
	*what = "metric sums";
	if (!fin(xa ? xa->nll_sum : 0.0, xb ? xb->nll_sum : 0.0) ||
	    !fin(xa ? xa->nll_weight : 0.0, xb ? xb->nll_weight : 0.0) ||
	    !fin(xa ? xa->brier_sum : 0.0, xb ? xb->brier_sum : 0.0) ||
	    !fin(xa ? xa->calib_weight : 0.0, xb ? xb->calib_weight : 0.0))
		return false;
	for (int k = 0; k < xe->bins; k++) {
		const eng_calib_bin *x = xa ? &xa->bin[k] : NULL, *y = xb ? &xb->bin[k] : NULL;
		if (!fin(x ? x->weight : 0.0, y ? y->weight : 0.0) ||
		    !fin(x ? x->conf : 0.0, y ? y->conf : 0.0) ||
		    !fin(x ? x->acc : 0.0, y ? y->acc : 0.0))
			return false;
	}
	return true;
}

/* ---- one batch ------------------------------------------------------------------------ */

int eng_stream_batch(eng_stream **out, const eng_stream_config *cfg, const eng_tensor *y_true,
                     const eng_tensor *y_score, const eng_tensor *weight,
                     const eng_loss_result *loss, eng_error *err)
{
	eng_stream *s = NULL;
	double *linked = NULL, *sbuf = NULL, *wbuf = NULL;
	uint8_t *lbuf = NULL;
	eng_tensor score_view;
	int rc;

	*out = NULL;
	if ((rc = eng_stream_config_check(cfg, err)))
		return rc;
	if (!y_true || !y_score)
		return eng_error_set(err, ENG_EINVAL, "y_true", -1,
		                     "y_true and y_score are required");
	if (cfg->has_loss != (loss != NULL))
		return eng_error_set(err, ENG_EINVAL, "loss", -1,
		                     "loss sums do not match the config");
	if (loss && (loss->kind != cfg->loss_kind ||
	             (loss->nclasses != 0 && loss->nclasses != cfg->columns)))
		return eng_error_set(err, ENG_ESHAPE, "y_pred", -1,
		                     "the loss has %lld classes but the stream %lld",
		                     (long long)loss->nclasses, (long long)cfg->columns);

	eng_auc_data d = {y_score, y_true, weight, cfg->kind};
	int64_t C = eng_auc_columns(&d, err);
	if (C < 0)
		return (int)C;
	if (C != cfg->columns || (cfg->kind == ENG_LABELS_BINARY && y_score->ndim != 1 && C != 1))
		return eng_error_set(err, ENG_ESHAPE, "y_score", -1,
		                     "y_score has %lld columns but the stream has %lld",
		                     (long long)C, (long long)cfg->columns);
	int64_t N = y_score->shape[0];
	size_t L = (size_t)lcols(cfg);

	if (cfg->from_logits) {
		linked = malloc((size_t)(y_score->size ? y_score->size : 1) * sizeof(double));
		if (!linked)
			goto nomem;
		/* binned counts probabilities against its thresholds; exact and
		 * sketch keep the ranking keys (logits, or the log-softmax for
		 * one-vs-rest), which a saturating sigmoid would tie */
		bool ovr = cfg->kind == ENG_LABELS_CLASS_ID;
		rc = cfg->method == ENG_STREAM_BINNED ? eng_auc_logits(linked, y_score, ovr)
		                                      : eng_auc_logit_keys(linked, y_score, ovr);
		if (rc) {
			eng_error_set(err, rc, "y_score", -1, "cannot apply the logit link");
			goto out;
		}
		score_view = *y_score;
		score_view.dtype = ENG_F64;
		score_view.data = linked;
		d.score = &score_view;
	}

	if (!(s = alloc_stream(cfg)) || make_accs(s))
		goto nomem;
	size_t nn = (size_t)(N ? N : 1);
	sbuf = malloc(nn * sizeof(double));
	wbuf = malloc(nn * sizeof(double));
	lbuf = malloc(nn);
	if (!sbuf || !wbuf || !lbuf)
		goto nomem;
	if (cfg->method == ENG_STREAM_EXACT && N > 0) {
		size_t need = (size_t)N * ((size_t)C * sizeof(double) + L * sizeof(int32_t) +
		                           (weight ? sizeof(double) : 0));
		if (need > cfg->max_bytes) {
			rc = eng_error_set(
			        err, ENG_ELIMIT, "y_score", -1,
			        "the batch needs %zu bytes, more than the stream's cap %zu", need,
			        cfg->max_bytes);
			goto out;
		}
		s->score = malloc((size_t)N * (size_t)C * sizeof(double));
		s->label = malloc((size_t)N * L * sizeof(int32_t));
		if (weight)
			s->weight = malloc((size_t)N * sizeof(double));
		if (!s->score || !s->label || (weight && !s->weight))
			goto nomem;
		s->n = s->cap = N;
	}

	for (int64_t c = 0; c < C; c++) {
		/* Reads and validates the column (labels, weights, NaN scores). */
		if ((rc = eng__auc_gather(&d, c, 0, N, sbuf, lbuf, wbuf, err)))
			goto out;
		colcount *k = &s->cc[c];
		for (int64_t i = 0; i < N; i++) {
			if (lbuf[i]) {
				k->pos++;
				k->pw += wbuf[i];
			} else {
				k->neg++;
				k->nw += wbuf[i];
			}
		}
		if (s->bins && (rc = eng_binned_add_values(s->bins[c], sbuf, lbuf, wbuf, N, err)))
			goto out;
		if (s->sk && (rc = eng_sketch_add_values(s->sk[c], sbuf, lbuf, wbuf, N, err)))
			goto out;
		if (cfg->method == ENG_STREAM_EXACT) {
			for (int64_t i = 0; i < N; i++)
				s->score[i * C + c] = sbuf[i];
			if (cfg->kind == ENG_LABELS_MULTI)
				for (int64_t i = 0; i < N; i++)
					s->label[i * C + c] = lbuf[i];
			else if (cfg->kind == ENG_LABELS_BINARY)
				for (int64_t i = 0; i < N; i++)
					s->label[i] = lbuf[i];
			else if (c == 0) /* class ids, validated by the gather */
				for (int64_t i = 0; i < N; i++)
					s->label[i] = (int32_t)eng_tensor_at(y_true, i);
			if (c == 0 && s->weight)
				memcpy(s->weight, wbuf, (size_t)N * sizeof(double));
		}
	}
	if (loss && !(s->loss = loss_copy(loss)))
		goto nomem;
	const char *what = NULL;
	if (!sums_finite(s, NULL, &what)) {
		rc = eng_error_set(err, ENG_ENONFINITE,
		                   strcmp(what, "weight sums") == 0 && weight ? "sample_weight"
		                                                              : NULL,
		                   -1, "the batch's %s overflow to infinity", what);
		goto out;
	}
	s->updates = 1;
	s->rows = N;
	*out = s;
	s = NULL;
	rc = 0;
	goto out;
nomem:
	rc = eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
out:
	eng_stream_free(s);
	free(linked);
	free(sbuf);
	free(wbuf);
	free(lbuf);
	return rc;
}

/* ---- merge ------------------------------------------------------------------------- */

#define COUNT_MAX ((int64_t)1 << 62)

static bool over(int64_t a, int64_t b)
{
	return a < 0 || b < 0 || a >= COUNT_MAX || b >= COUNT_MAX - a;
}

/* True when adding src's counters to dst's would pass COUNT_MAX (every
 * counter, in the accumulators too, is below it, so none overflows). */
static bool counts_overflow(const eng_stream *dst, const eng_stream *src)
{
	if (over(dst->rows, src->rows) || over(dst->updates, src->updates))
		return true;
	for (int64_t k = 0; k < dst->cfg.columns; k++)
		if (over(dst->cc[k].pos, src->cc[k].pos) || over(dst->cc[k].neg, src->cc[k].neg))
			return true;
	const eng_loss_result *a = dst->loss, *b = src->loss;
	if (a && b) {
		if (over(a->count, b->count) || over(a->ignored, b->ignored) ||
		    over(a->correct, b->correct))
			return true;
		for (int64_t k = 0; k < a->nclasses && k < b->nclasses; k++)
			if (over(a->per_class[k].support, b->per_class[k].support) ||
			    over(a->per_class[k].predicted, b->per_class[k].predicted) ||
			    over(a->per_class[k].correct, b->per_class[k].correct))
				return true;
		const eng_extra_result *x = a->extra, *y = b->extra;
		if (x && y && extra_same_config(x, y)) {
			if (over(x->top_count, y->top_count) || over(x->nll_count, y->nll_count) ||
			    over(x->calib_count, y->calib_count))
				return true;
			for (int i = 0; i < x->ntop; i++)
				if (over(x->top_correct[i], y->top_correct[i]))
					return true;
			for (int i = 0; i < x->bins; i++)
				if (over(x->bin[i].count, y->bin[i].count))
					return true;
		}
	}
	return false;
}

int eng_stream_merge(eng_stream *dst, const eng_stream *src, eng_error *err)
{
	const eng_stream_config *c = &dst->cfg;
	int64_t C = c->columns;
	size_t L = (size_t)lcols(c);
	eng_loss_result *nloss = NULL;
	eng_sketch **nsk = NULL;
	eng__hist_plan hp = {0};
	int rc = 0;

	if (!eng_stream_config_equal(&dst->cfg, &src->cfg))
		return eng_error_set(err, ENG_ESTATE, "state", -1,
		                     "the state's config differs from the stream's");
	if (src->loss && dst->loss &&
	    (src->loss->nclasses != dst->loss->nclasses || src->loss->kind != dst->loss->kind))
		return eng_error_set(err, ENG_ESTATE, "state", -1,
		                     "the state's loss table differs from the stream's");
	if (src->loss && dst->loss && !extra_same_config(src->loss->extra, dst->loss->extra))
		return eng_error_set(
		        err, ENG_ESTATE, "state", -1,
		        "the state's top_k, calibration or perplexity sums differ from "
		        "the stream's");

	/* Phase 1: everything that can fail, dst untouched. */
	if (counts_overflow(dst, src))
		return eng_error_set(err, ENG_ELIMIT, "state", -1,
		                     "the stream's counts would pass 2^62");
	const char *what = NULL;
	if (!sums_finite(dst, src, &what))
		return eng_error_set(err, ENG_ENONFINITE, NULL, -1,
		                     "the stream's %s would overflow to infinity; "
		                     "nothing was changed",
		                     what);
	if ((rc = eng__hist_prepare(&hp, dst->hist, src->hist, C, dst->hist_max)))
		return eng_error_set(err, rc, "state", -1,
		                     rc == ENG_ENOMEM   ? "out of memory"
		                     : rc == ENG_ELIMIT ? "the step series' counts would pass 2^62"
		                     : rc == ENG_ESTATE ? "the step series' top_k, calibration or "
		                                          "perplexity sums differ from the stream's"
		                                        : "the step series' sums would overflow to "
		                                          "infinity; nothing was changed");
	if (src->loss && !dst->loss && !(nloss = loss_empty_like(src->loss)))
		goto nomem;
	int64_t n2 = dst->n + src->n;
	bool need_w = dst->weight || src->weight;
	if (c->method == ENG_STREAM_EXACT && src->n > 0) {
		size_t row = (size_t)C * sizeof(double) + L * sizeof(int32_t) +
		             (need_w ? sizeof(double) : 0);
		if (src->n > INT64_MAX / 2 || (size_t)n2 > (c->max_bytes / row)) {
			rc = eng_error_set(err, ENG_ELIMIT, "y_score", -1,
			                   "the stream would hold %lld rows, more than its "
			                   "memory cap of %zu bytes allows",
			                   (long long)n2, c->max_bytes);
			goto out;
		}
		if (n2 > dst->cap) {
			int64_t ncap = dst->cap ? dst->cap : 64;
			while (ncap < n2)
				ncap = ncap > INT64_MAX / 2 ? n2 : ncap * 2;
			if ((size_t)ncap > c->max_bytes / row)
				ncap = n2;
			double *ns = realloc(dst->score, (size_t)ncap * (size_t)C * sizeof(double));
			if (!ns)
				goto nomem;
			dst->score = ns;
			int32_t *nl = realloc(dst->label, (size_t)ncap * L * sizeof(int32_t));
			if (!nl)
				goto nomem;
			dst->label = nl;
			if (dst->weight) {
				double *nw = realloc(dst->weight, (size_t)ncap * sizeof(double));
				if (!nw)
					goto nomem;
				dst->weight = nw;
			}
			dst->cap = ncap; /* capacity only: contents unchanged */
		}
		if (need_w && !dst->weight) {
			double *nw = malloc((size_t)dst->cap * sizeof(double));
			if (!nw)
				goto nomem;
			for (int64_t i = 0; i < dst->n; i++)
				nw[i] = 1.0;
			dst->weight = nw; /* all ones: the same data, now explicit */
		}
	}
	if (src->sk && C == 1) {
		/* One sketch: its merge is all or nothing by itself, and it is
		 * the last step that can fail, so do it here. */
		if (eng_sketch_merge(dst->sk[0], src->sk[0]))
			goto nomem;
	} else if (src->sk) {
		/* Sketch merges may allocate: merge into copies, swap at the end. */
		nsk = calloc((size_t)C, sizeof(*nsk));
		if (!nsk)
			goto nomem;
		for (int64_t k = 0; k < C; k++) {
			if (!(nsk[k] = sketch_copy(dst->sk[k], eng_sketch_cap(dst->sk[k]))))
				goto nomem;
			if ((rc = eng_sketch_merge(nsk[k], src->sk[k]))) {
				eng_error_set(err, rc, "state", -1, "cannot merge the sketches");
				goto out;
			}
		}
	} else if (src->bins) {
		for (int64_t k = 0; k < C; k++)
			if (eng_binned_num_thresholds(src->bins[k]) !=
			    eng_binned_num_thresholds(dst->bins[k])) {
				rc = eng_error_set(err, ENG_ESTATE, "state", -1,
				                   "threshold counts differ");
				goto out;
			}
	}

	/* Phase 2: cannot fail. */
	if (c->method == ENG_STREAM_EXACT && src->n > 0) {
		memcpy(dst->score + dst->n * C, src->score,
		       (size_t)src->n * (size_t)C * sizeof(double));
		memcpy(dst->label + (size_t)dst->n * L, src->label,
		       (size_t)src->n * L * sizeof(int32_t));
		if (dst->weight) {
			if (src->weight)
				memcpy(dst->weight + dst->n, src->weight,
				       (size_t)src->n * sizeof(double));
			else
				for (int64_t i = 0; i < src->n; i++)
					dst->weight[dst->n + i] = 1.0;
		}
		dst->n = n2;
	}
	if (src->bins)
		for (int64_t k = 0; k < C; k++)
			(void)eng_binned_merge(dst->bins[k], src->bins[k]);
	if (nsk) {
		for (int64_t k = 0; k < C; k++) {
			eng_sketch *old = dst->sk[k];
			dst->sk[k] = nsk[k];
			nsk[k] = old; /* freed below */
		}
	}
	if (nloss) {
		dst->loss = nloss;
		nloss = NULL;
	}
	if (src->loss)
		(void)eng_loss_result_merge(dst->loss, src->loss);
	for (int64_t k = 0; k < C; k++) {
		dst->cc[k].pos += src->cc[k].pos;
		dst->cc[k].neg += src->cc[k].neg;
		dst->cc[k].pw += src->cc[k].pw;
		dst->cc[k].nw += src->cc[k].nw;
	}
	dst->updates += src->updates;
	dst->rows += src->rows;
	eng__hist_commit(&dst->hist, src->hist, &hp, dst->hist_max);
	rc = 0;
	goto out;
nomem:
	rc = eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
out:
	if (nsk) {
		for (int64_t k = 0; k < C; k++)
			eng_sketch_free(nsk[k]);
		free(nsk);
	}
	eng_loss_result_free(nloss);
	eng__hist_plan_drop(&hp);
	return rc;
}

/* ---- reading --------------------------------------------------------------------------- */

int eng_stream_auc(eng_auc_result *out, eng_auc_curve *curve, const eng_stream *s, int64_t col,
                   int64_t max_points, eng_error *err)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->auc = NAN;
	if (col != ENG_AUC_ALL && (col < 0 || col >= C))
		return eng_error_set(err, ENG_EINVAL, "class", -1, "class %lld is not in [0, %lld)",
		                     (long long)col, (long long)C);
	if (max_points < 2)
		max_points = 2;
	/* Counts first: they are ours for every method. */
	colcount k = {0, 0, 0, 0};
	for (int64_t j = 0; j < C; j++) {
		if (col != ENG_AUC_ALL && j != col)
			continue;
		k.pos += s->cc[j].pos;
		k.neg += s->cc[j].neg;
		k.pw += s->cc[j].pw;
		k.nw += s->cc[j].nw;
	}

	if (c->method == ENG_STREAM_EXACT) {
		if (s->n > 0) {
			eng_tensor sc = {ENG_F64, 2, {s->n, C}, s->n * C, s->score};
			eng_tensor lb = {ENG_I32, 1, {s->n}, s->n, s->label};
			eng_tensor wt = {ENG_F64, 1, {s->n}, s->n, s->weight};
			if (c->kind == ENG_LABELS_BINARY) {
				sc.ndim = 1;
				sc.shape[1] = 0;
			}
			if (c->kind == ENG_LABELS_MULTI) {
				lb.ndim = 2;
				lb.shape[1] = C;
				lb.size = s->n * C;
			}
			eng_auc_data d = {&sc, &lb, s->weight ? &wt : NULL, c->kind};
			eng_auc_opts o = ENG_AUC_OPTS_INIT;
			o.curve = c->curve;
			o.max_points = max_points;
			rc = eng_auc_exact(out, curve, &d,
			                   c->kind == ENG_LABELS_BINARY && col == ENG_AUC_ALL ? 0
			                                                                      : col,
			                   &o, err);
		}
	} else if (c->method == ENG_STREAM_BINNED) {
		if (col != ENG_AUC_ALL || C == 1) {
			rc = eng_binned_auc(out, curve, s->bins[col == ENG_AUC_ALL ? 0 : col],
			                    c->curve, c->summation, max_points);
		} else {
			eng_binned *m = eng_binned_new(c->num_thresholds);
			if (!m)
				return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
			for (int64_t j = 0; j < C; j++)
				(void)eng_binned_merge(m, s->bins[j]);
			rc = eng_binned_auc(out, curve, m, c->curve, c->summation, max_points);
			eng_binned_free(m);
		}
	} else {
		if (col != ENG_AUC_ALL || C == 1) {
			rc = eng_sketch_auc(out, curve, s->sk[col == ENG_AUC_ALL ? 0 : col],
			                    c->curve, max_points);
		} else {
			size_t cap = c->sketch_bytes < ENG_SKETCH_MAX_CAP ? c->sketch_bytes
			                                                  : ENG_SKETCH_MAX_CAP;
			eng_sketch *m = eng_sketch_new(cap);
			if (!m)
				return eng_error_set(err, ENG_ENOMEM, NULL, -1, "out of memory");
			for (int64_t j = 0; j < C && !rc; j++)
				rc = eng_sketch_merge(m, s->sk[j]);
			if (!rc)
				rc = eng_sketch_auc(out, curve, m, c->curve, max_points);
			eng_sketch_free(m);
		}
	}
	if (rc)
		return rc == ENG_ENOMEM ? eng_error_set(err, rc, NULL, -1, "out of memory") : rc;
	if (c->from_logits && c->method != ENG_STREAM_BINNED)
		eng_auc_curve_key_probs(curve, c->kind == ENG_LABELS_CLASS_ID);
	out->positives = k.pos;
	out->negatives = k.neg;
	out->pos_weight = k.pw;
	out->neg_weight = k.nw;
	if (!out->defined)
		out->auc = NAN;
	return 0;
}

int eng_stream_auc_se(double *se, const eng_stream *s, int64_t col, eng_error *err)
{
	const eng_stream_config *c = &s->cfg;
	eng_auc_result r;
	double a;
	int rc;

	*se = NAN;
	if (c->curve != ENG_CURVE_ROC)
		return eng_error_set(err, ENG_EINVAL, "ci", -1,
		                     "ci is for the ROC AUC; this stream's curve is pr");
	if (c->method == ENG_STREAM_EXACT && s->weight)
		return eng_error_set(err, ENG_EINVAL, "ci", -1,
		                     "ci does not take sample weights, and this stream holds "
		                     "weighted rows");
	if (c->method != ENG_STREAM_EXACT) {
		if ((rc = eng_stream_auc(&r, NULL, s, col, 2, err)))
			return rc;
		if (r.defined)
			*se = eng_auc_se_hanley_mcneil(r.auc, (double)r.positives,
			                               (double)r.negatives);
		return 0;
	}
	if (s->n == 0 || col == ENG_AUC_ALL || col < 0 || col >= c->columns)
		return 0;
	/* the kept rows, viewed as eng_stream_auc views them */
	eng_tensor sc = {ENG_F64, 2, {s->n, c->columns}, s->n * c->columns, s->score};
	eng_tensor lb = {ENG_I32, 1, {s->n}, s->n, s->label};
	if (c->kind == ENG_LABELS_BINARY) {
		sc.ndim = 1;
		sc.shape[1] = 0;
	}
	if (c->kind == ENG_LABELS_MULTI) {
		lb.ndim = 2;
		lb.shape[1] = c->columns;
		lb.size = s->n * c->columns;
	}
	eng_auc_data d = {&sc, &lb, NULL, c->kind};
	return eng_auc_delong(&a, se, &d, col, err);
}

/* ---- serialization ------------------------------------------------------------------------ */
/*
 * Format, version 2, little-endian (version 1 is read too, see
 * upgrade_v1):
 *   "LSTR" u32 version u64 payload_len u64 checksum(payload) | payload
 * payload:
 *   u32 method, kind, curve, summation, from_logits, has_loss, loss_kind, 0
 *   u64 columns, num_thresholds, sketch_bytes, loss_fingerprint, updates, rows
 *   per column: u64 pos, u64 neg, f64 pw, f64 nw
 *   exact:  u64 n, u32 has_weight, u32 0, f64 score[n*C], u32 label[n*L],
 *           f64 weight[n] (if has_weight)
 *   binned/sketch: per column u64 len + the accumulator's own bytes
 *   u32 has_loss_sums, u32 has_accuracy; if set: u32 kind, u32 0,
 *   f64 wloss_sum, f64 weight_sum, u64 count, ignored, correct, nclasses,
 *   per class: u64 support, predicted, correct, f64 weight_sum, loss_sum
 * version 3 only (a state whose loss sums carry top-k, calibration or
 * perplexity sums, extra.h; a state without them is written as version 2,
 * byte for byte what earlier builds wrote; versions 1 to 3 are read):
 *   u32 "XTRA", u32 0, u64 len, then len bytes:
 *   u32 ntop, u32 bins, u32 perplexity, u32 0,
 *   per top_k entry: u64 k, u64 correct; u64 top_count,
 *   f64 nll_sum, f64 nll_weight, u64 nll_count,
 *   per bin: u64 count, f64 weight, f64 conf, f64 acc,
 *   f64 brier_sum, f64 calib_weight, u64 calib_count
 * then, in every version, optionally u32 "HIST", u32 0, u64 len + the step
 * series (history.c).
 */
#define MAGIC     "LSTR"
#define HIST_TAG  0x54534948u /* "HIST" */
#define XTRA_TAG  0x41525458u /* "XTRA" */
#define VERSION   2u
#define VERSION_X 3u /* version 2 with the XTRA section */
#define HEADER    24

typedef struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool fail;
} wbuf;

static uint8_t *wreserve(wbuf *w, size_t n)
{
	if (w->fail)
		return NULL;
	if (n > SIZE_MAX - w->len) {
		w->fail = true;
		return NULL;
	}
	if (w->len + n > w->cap) {
		size_t nc = w->cap ? w->cap : 256;
		while (nc < w->len + n)
			nc = nc > SIZE_MAX / 2 ? w->len + n : nc * 2;
		uint8_t *np = realloc(w->p, nc);
		if (!np) {
			w->fail = true;
			return NULL;
		}
		w->p = np;
		w->cap = nc;
	}
	uint8_t *r = w->p + w->len;
	w->len += n;
	return r;
}

static void w32(wbuf *w, uint32_t v)
{
	uint8_t *p = wreserve(w, 4);
	if (p)
		eng__put_u32(p, v);
}

static void w64(wbuf *w, uint64_t v)
{
	uint8_t *p = wreserve(w, 8);
	if (p)
		eng__put_u64(p, v);
}

static void wf64(wbuf *w, double v)
{
	uint8_t *p = wreserve(w, 8);
	if (p)
		eng__put_f64(p, v);
}

static void wbytes(wbuf *w, const void *b, size_t n)
{
	w64(w, n);
	uint8_t *p = wreserve(w, n);
	if (p && n)
		memcpy(p, b, n);
}

int eng_stream_serialize(void **out, size_t *len, const eng_stream *s)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	size_t L = (size_t)lcols(c);
	wbuf w = {NULL, 0, 0, false};

	*out = NULL;
	*len = 0;
	(void)wreserve(&w, HEADER);
	w32(&w, (uint32_t)c->method);
	w32(&w, (uint32_t)c->kind);
	w32(&w, (uint32_t)c->curve);
	w32(&w, (uint32_t)c->summation);
	w32(&w, c->from_logits);
	w32(&w, c->has_loss);
	w32(&w, (uint32_t)c->loss_kind);
	w32(&w, 0);
	w64(&w, (uint64_t)C);
	w64(&w, (uint64_t)c->num_thresholds);
	w64(&w, (uint64_t)c->sketch_bytes);
	w64(&w, c->loss_fingerprint);
	w64(&w, (uint64_t)s->updates);
	w64(&w, (uint64_t)s->rows);
	for (int64_t k = 0; k < C; k++) {
		w64(&w, (uint64_t)s->cc[k].pos);
		w64(&w, (uint64_t)s->cc[k].neg);
		wf64(&w, s->cc[k].pw);
		wf64(&w, s->cc[k].nw);
	}
	if (c->method == ENG_STREAM_EXACT) {
		w64(&w, (uint64_t)s->n);
		w32(&w, s->weight != NULL);
		w32(&w, 0);
		uint8_t *p =
		        wreserve(&w, (size_t)s->n * ((size_t)C * 8 + L * 4 + (s->weight ? 8 : 0)));
		if (p) {
			for (int64_t i = 0; i < s->n * C; i++, p += 8)
				eng__put_f64(p, s->score[i]);
			for (size_t i = 0; i < (size_t)s->n * L; i++, p += 4)
				eng__put_u32(p, (uint32_t)s->label[i]);
			if (s->weight)
				for (int64_t i = 0; i < s->n; i++, p += 8)
					eng__put_f64(p, s->weight[i]);
		}
	} else {
		for (int64_t k = 0; k < C && !w.fail; k++) {
			uint8_t *b = NULL;
			size_t bl = 0;
			int rc = s->bins ? eng_binned_serialize(&b, &bl, s->bins[k])
			                 : eng_sketch_serialize(&b, &bl, s->sk[k]);
			if (rc)
				w.fail = true;
			else
				wbytes(&w, b, bl);
			free(b);
		}
	}
	const eng_loss_result *l = s->loss;
	w32(&w, l != NULL);
	w32(&w, l ? l->has_accuracy : 0);
	if (l) {
		w32(&w, (uint32_t)l->kind);
		w32(&w, 0);
		wf64(&w, l->wloss_sum);
		wf64(&w, l->weight_sum);
		w64(&w, (uint64_t)l->count);
		w64(&w, (uint64_t)l->ignored);
		w64(&w, (uint64_t)l->correct);
		w64(&w, (uint64_t)l->nclasses);
		for (int64_t k = 0; k < l->nclasses; k++) {
			const eng_loss_class *pc = &l->per_class[k];
			w64(&w, (uint64_t)pc->support);
			w64(&w, (uint64_t)pc->predicted);
			w64(&w, (uint64_t)pc->correct);
			wf64(&w, pc->weight_sum);
			wf64(&w, pc->loss_sum);
		}
	}
	/* Version 2: the loss' extra sums. */
	const eng_extra_result *x = l ? l->extra : NULL;
	if (x) {
		w32(&w, XTRA_TAG);
		w32(&w, 0);
		w64(&w, 16 + (uint64_t)x->ntop * 16 + 8 + 24 + (uint64_t)x->bins * 32 + 24);
		w32(&w, (uint32_t)x->ntop);
		w32(&w, (uint32_t)x->bins);
		w32(&w, x->perplexity);
		w32(&w, 0);
		for (int i = 0; i < x->ntop; i++) {
			w64(&w, (uint64_t)x->top_k[i]);
			w64(&w, (uint64_t)x->top_correct[i]);
		}
		w64(&w, (uint64_t)x->top_count);
		wf64(&w, x->nll_sum);
		wf64(&w, x->nll_weight);
		w64(&w, (uint64_t)x->nll_count);
		for (int b = 0; b < x->bins; b++) {
			w64(&w, (uint64_t)x->bin[b].count);
			wf64(&w, x->bin[b].weight);
			wf64(&w, x->bin[b].conf);
			wf64(&w, x->bin[b].acc);
		}
		wf64(&w, x->brier_sum);
		wf64(&w, x->calib_weight);
		w64(&w, (uint64_t)x->calib_count);
	}
	/* Optional trailing section: the step series (history.c), absent
	 * for a stream that never saw a step. */
	if (eng__hist_size(s->hist)) {
		uint8_t *hb = NULL;
		size_t hl = 0;
		if (eng__hist_write(&hb, &hl, s->hist))
			w.fail = true;
		w32(&w, HIST_TAG);
		w32(&w, 0);
		wbytes(&w, hb, hl);
		free(hb);
	}
	if (w.fail) {
		free(w.p);
		return ENG_ENOMEM;
	}
	memcpy(w.p, MAGIC, 4);
	eng__put_u32(w.p + 4, x ? VERSION_X : VERSION);
	eng__put_u64(w.p + 8, (uint64_t)(w.len - HEADER));
	eng__put_u64(w.p + 16, eng__checksum64(w.p + HEADER, w.len - HEADER));
	*out = w.p;
	*len = w.len;
	return 0;
}

typedef struct rbuf {
	const uint8_t *p;
	size_t left;
	bool fail;
} rbuf;

static const uint8_t *rtake(rbuf *r, size_t n)
{
	if (r->fail || n > r->left) {
		r->fail = true;
		return NULL;
	}
	const uint8_t *p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint32_t r32(rbuf *r)
{
	const uint8_t *p = rtake(r, 4);
	return p ? eng__get_u32(p) : 0;
}

static uint64_t r64(rbuf *r)
{
	const uint8_t *p = rtake(r, 8);
	return p ? eng__get_u64(p) : 0;
}

static double rf64(rbuf *r)
{
	const uint8_t *p = rtake(r, 8);
	return p ? eng__get_f64(p) : 0.0;
}

/* A count read from the bytes: < 2^62, so sums and products stay checked. */
static int64_t rcount(rbuf *r)
{
	uint64_t v = r64(r);
	if (v >= ((uint64_t)1 << 62))
		r->fail = true;
	return (int64_t)(v & (((uint64_t)1 << 62) - 1));
}

static bool good_weight(double x)
{
	return isfinite(x) && x >= 0.0;
}

/* Two sums of the same n non-negative terms, added in different orders
 * (per batch then merged, or row by row): each is within (n - 1) u of the
 * exact sum, so they differ by at most 2 n u relative; 8 n eps is loose
 * enough never to refuse an honest state and far too tight for a forged one. */
static bool same_sum(double a, double b, int64_t n)
{
	double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
	double tol = (1e-9 + 8.0 * ((double)n + 2.0) * DBL_EPSILON) * m;
	return fabs(a - b) <= tol;
}

/* Losses that are >= 0 for every valid input (all but KL, and focal with a
 * negative alpha, which Keras allows); their sums may dip below 0 only by
 * rounding of terms that are 0. */
static bool loss_nonnegative(eng_loss_kind k)
{
	return k != ENG_LOSS_KL && k != ENG_LOSS_CATEGORICAL_FOCAL && k != ENG_LOSS_BINARY_FOCAL;
}

static bool loss_categorical(eng_loss_kind k)
{
	return k == ENG_LOSS_SPARSE_CE || k == ENG_LOSS_CATEGORICAL_CE ||
	       k == ENG_LOSS_CATEGORICAL_FOCAL || k == ENG_LOSS_KL;
}

/*
 * The checks that tie a parsed state's sections together, beyond each
 * field's own range: every sum finite, weights >= 0, a class with no rows
 * has no weight, the accumulators (or the exact rows) hold the very counts
 * and weights of the per-column table, loss counts nest. NULL when the
 * state is consistent, else what is not.
 */
static const char *check_state(const eng_stream *s)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	const char *what = NULL;

	if (!sums_finite(s, NULL, &what))
		return "a sum is not finite";
	if (s->rows > 0 && s->updates == 0)
		return "rows without updates";
	for (int64_t k = 0; k < C; k++) {
		const colcount *x = &s->cc[k];
		if ((x->pos == 0 && x->pw != 0.0) || (x->neg == 0 && x->nw != 0.0))
			return "weight without rows";
		double ap, an;
		if (c->method == ENG_STREAM_EXACT) {
			int64_t p = 0, q = 0;
			ap = an = 0.0;
			for (int64_t i = 0; i < s->n; i++) {
				bool y = c->kind == ENG_LABELS_MULTI      ? s->label[i * C + k] == 1
				         : c->kind == ENG_LABELS_CLASS_ID ? s->label[i] == k
				                                          : s->label[i] == 1;
				double w = s->weight ? s->weight[i] : 1.0;
				if (y) {
					p++;
					ap += w;
				} else {
					q++;
					an += w;
				}
			}
			if (p != x->pos || q != x->neg)
				return "rows disagree with the counts";
		} else {
			acc_weights(s, k, &ap, &an);
		}
		if (!same_sum(ap, x->pw, x->pos) || !same_sum(an, x->nw, x->neg))
			return "weights disagree with the counts";
	}
	const eng_loss_result *l = s->loss;
	if (!l)
		return NULL;
	double slack = -1e-6 * l->weight_sum;
	if (l->weight_sum < 0.0 || (loss_nonnegative(l->kind) && l->wloss_sum < slack))
		return "negative loss sums";
	if (l->correct > l->count || (l->count == 0 && l->weight_sum != 0.0))
		return "loss counts disagree";
	int64_t sup = 0, pred = 0, cor = 0;
	for (int64_t k = 0; k < l->nclasses; k++) {
		const eng_loss_class *pc = &l->per_class[k];
		if (pc->weight_sum < 0.0 ||
		    (loss_nonnegative(l->kind) && pc->loss_sum < -1e-6 * pc->weight_sum))
			return "negative per-class sums";
		if (pc->correct > pc->support || pc->correct > pc->predicted ||
		    pc->support > l->count || pc->predicted > l->count)
			return "per-class counts disagree";
		sup += pc->support;
		pred += pc->predicted;
		cor += pc->correct;
	}
	/* Categorical: every counted position has one true and one predicted class. */
	if (l->nclasses > 0 && loss_categorical(l->kind) &&
	    (sup != l->count || pred != l->count || (l->has_accuracy && cor != l->correct)))
		return "per-class counts disagree with the totals";
	return NULL;
}

/* A probability p as the key exact and sketch streams now keep for logits:
 * the logit log(p) - log1p(-p) (sigmoid columns) or log(p) (softmax rows),
 * so 1 and 0 become +inf and -inf; NaN for p outside [0, 1]. */
static double key_of_prob(double p, bool softmax_rows)
{
	if (!(p >= 0.0 && p <= 1.0))
		return NAN;
	return softmax_rows ? log(p) : log(p) - log1p(-p);
}

static double key_of_sigmoid(double p)
{
	return key_of_prob(p, false);
}

static double key_of_softmax(double p)
{
	return key_of_prob(p, true);
}

/*
 * Version 1 states of exact and sketch streams with from_logits kept
 * probabilities (a sigmoid or softmax of the logits); version 2 keeps the
 * ranking keys of eng_auc_logit_keys. Mapping each kept probability to its
 * key is monotone, so an upgraded state gives the AUC it gave before (ties
 * that the probabilities had stay ties) and merges with new batches in one
 * order. A sketch's buckets are re-keyed and folded where their cells come
 * to meet (eng__sketch_rekey: sound, the bound can only grow). Returns NULL
 * or why the state cannot be upgraded.
 */
static const char *upgrade_v1(eng_stream *s)
{
	const eng_stream_config *c = &s->cfg;
	bool ovr = c->kind == ENG_LABELS_CLASS_ID;
	if (!c->from_logits || c->method == ENG_STREAM_BINNED)
		return NULL;
	if (c->method == ENG_STREAM_EXACT) {
		for (int64_t i = 0; i < s->n * c->columns; i++) {
			s->score[i] = key_of_prob(s->score[i], ovr);
			if (isnan(s->score[i]))
				return "a version 1 logit stream's score is not a probability";
		}
		return NULL;
	}
	for (int64_t k = 0; k < c->columns; k++) {
		int e = eng__sketch_rekey(s->sk[k], ovr ? key_of_softmax : key_of_sigmoid);
		if (e)
			return e == ENG_ENOMEM ? "out of memory"
			                       : "a version 1 logit stream's sketch key is not a "
			                         "probability";
	}
	return NULL;
}

/*
 * The XTRA section into s->loss->extra (version 3). Each field is checked
 * on its own here (the options as eng_loss_compute would take them for
 * this stream, counts nested: correct at k <= correct at a larger k <=
 * counted, every count at most the loss' positions; sums finite and >= 0,
 * a bin's confidence and accuracy sums within its weight, the bins' counts
 * and weights within the totals, a Brier sum at most 2 per unit weight).
 * NULL when good, else what is wrong (*rc stays ENG_ESTATE, or ENG_ENOMEM).
 */
static const char *read_extra(eng_stream *s, rbuf *r, int *rc)
{
	eng_loss_result *l = s->loss;
	uint32_t tag = r32(r), zero = r32(r);
	uint64_t len = r64(r);
	if (r->fail || tag != XTRA_TAG || zero != 0 || len > r->left)
		return "bad metric section";
	if (!l)
		return "metric sums without loss sums";
	size_t end = r->left - (size_t)len;
	uint32_t ntop = r32(r), bins = r32(r), ppl = r32(r), z2 = r32(r);
	if (r->fail || ntop > ENG_EXTRA_MAX_TOPK || bins > ENG_CALIB_MAX_BINS || ppl > 1 ||
	    z2 != 0 || len != 16 + (uint64_t)ntop * 16 + 8 + 24 + (uint64_t)bins * 32 + 24)
		return "bad metric section";
	eng_extra_opts o = ENG_EXTRA_OPTS_INIT;
	o.ntop = (int)ntop;
	o.bins = (int)bins;
	o.perplexity = ppl;
	int64_t correct[ENG_EXTRA_MAX_TOPK];
	for (uint32_t i = 0; i < ntop; i++) {
		o.top_k[i] = rcount(r);
		correct[i] = rcount(r);
	}
	if (r->fail || eng__extra_check(&o, l->kind, s->cfg.columns, NULL) ||
	    (!o.ntop && !o.bins && !o.perplexity))
		return "bad metric options";
	eng_extra_result *x = eng_extra_result_new(&o);
	if (!x) {
		*rc = ENG_ENOMEM;
		return "out of memory";
	}
	l->extra = x;
	memcpy(x->top_correct, correct, sizeof correct[0] * ntop);
	x->top_count = rcount(r);
	x->nll_sum = rf64(r);
	x->nll_weight = rf64(r);
	x->nll_count = rcount(r);
	for (int b = 0; b < x->bins; b++) {
		x->bin[b].count = rcount(r);
		x->bin[b].weight = rf64(r);
		x->bin[b].conf = rf64(r);
		x->bin[b].acc = rf64(r);
	}
	x->brier_sum = rf64(r);
	x->calib_weight = rf64(r);
	x->calib_count = rcount(r);
	if (r->fail || r->left != end)
		return "truncated metric section";
	/* counts */
	if (x->top_count > l->count || x->nll_count > l->count || x->calib_count > l->count ||
	    (!x->ntop && x->top_count) || (!x->perplexity && x->nll_count) ||
	    (!x->bins && x->calib_count))
		return "metric counts disagree with the loss";
	for (int i = 0; i < x->ntop; i++)
		if (x->top_correct[i] > x->top_count ||
		    (i > 0 && x->top_correct[i] < x->top_correct[i - 1]))
			return "top-k counts disagree";
	/* sums */
	if (!good_weight(x->nll_sum) || !good_weight(x->nll_weight) || !good_weight(x->brier_sum) ||
	    !good_weight(x->calib_weight) ||
	    (x->nll_count == 0 && (x->nll_sum != 0.0 || x->nll_weight != 0.0)) ||
	    (x->calib_count == 0 && (x->calib_weight != 0.0 || x->brier_sum != 0.0)) ||
	    x->brier_sum > 2.0 * x->calib_weight * (1.0 + 1e-9))
		return "bad metric sums";
	int64_t nb = 0;
	double wb = 0.0;
	for (int b = 0; b < x->bins; b++) {
		const eng_calib_bin *k = &x->bin[b];
		double top = k->weight * (1.0 + 1e-9);
		if (!good_weight(k->weight) || !good_weight(k->conf) || !good_weight(k->acc) ||
		    k->conf > top || k->acc > top || (k->count == 0 && k->weight != 0.0) ||
		    k->count > x->calib_count - nb)
			return "bad calibration bins";
		nb += k->count;
		wb += k->weight;
	}
	if (!(wb <= x->calib_weight * (1.0 + 1e-9)))
		return "calibration bins disagree with the totals";
	return NULL;
}

int eng_stream_deserialize(eng_stream **out, const void *data, size_t len, size_t max_bytes,
                           eng_error *err)
{
	const uint8_t *b = data;
	eng_stream_config c = ENG_STREAM_CONFIG_INIT;
	eng_stream *s = NULL;
	rbuf r;
	int rc = ENG_ESTATE;
	const char *why = "truncated";

	*out = NULL;
	if (!b || len < HEADER || memcmp(b, MAGIC, 4) != 0) {
		why = "not a stream state";
		goto bad;
	}
	uint32_t version = eng__get_u32(b + 4);
	if (version != VERSION && version != VERSION_X && version != 1) {
		why = "unsupported state version";
		goto bad;
	}
	if (eng__get_u64(b + 8) != len - HEADER) {
		why = "length mismatch";
		goto bad;
	}
	if (eng__get_u64(b + 16) != eng__checksum64(b + HEADER, len - HEADER)) {
		why = "checksum mismatch";
		goto bad;
	}
	r.p = b + HEADER;
	r.left = len - HEADER;
	r.fail = false;
	c.method = (eng_stream_method)r32(&r);
	c.kind = (eng_label_kind)r32(&r);
	c.curve = (eng_curve)r32(&r);
	c.summation = (eng_summation)r32(&r);
	uint32_t fl = r32(&r), hl = r32(&r);
	c.loss_kind = (eng_loss_kind)r32(&r);
	(void)r32(&r);
	c.columns = rcount(&r);
	c.num_thresholds = rcount(&r);
	c.sketch_bytes = (size_t)rcount(&r);
	c.loss_fingerprint = r64(&r);
	c.max_bytes = max_bytes;
	if (r.fail || fl > 1 || hl > 1) {
		why = "bad config";
		goto bad;
	}
	c.from_logits = fl;
	c.has_loss = hl;
	if (!c.has_loss)
		c.loss_kind = ENG_LOSS_BINARY_CE;
	if (eng_stream_config_check(&c, NULL)) {
		why = "bad config";
		goto bad;
	}
	int64_t C = c.columns;
	size_t L = (size_t)lcols(&c);
	if (!(s = alloc_stream(&c))) {
		rc = ENG_ENOMEM;
		goto bad;
	}
	s->updates = rcount(&r);
	s->rows = rcount(&r);
	if ((size_t)C > r.left / 32) {
		why = "truncated counts";
		goto bad;
	}
	for (int64_t k = 0; k < C; k++) {
		s->cc[k].pos = rcount(&r);
		s->cc[k].neg = rcount(&r);
		s->cc[k].pw = rf64(&r);
		s->cc[k].nw = rf64(&r);
		if (!good_weight(s->cc[k].pw) || !good_weight(s->cc[k].nw) ||
		    s->cc[k].pos + s->cc[k].neg != s->rows) {
			why = "bad counts";
			goto bad;
		}
	}
	if (r.fail)
		goto bad;
	if (c.method == ENG_STREAM_EXACT) {
		int64_t n = rcount(&r);
		uint32_t hw = r32(&r);
		(void)r32(&r);
		size_t row = (size_t)C * 8 + L * 4 + (hw ? 8 : 0);
		if (r.fail || hw > 1 || n != s->rows || (size_t)n > r.left / row) {
			why = "bad exact section";
			goto bad;
		}
		if (n > 0) {
			s->score = malloc((size_t)n * (size_t)C * sizeof(double));
			s->label = malloc((size_t)n * L * sizeof(int32_t));
			if (hw)
				s->weight = malloc((size_t)n * sizeof(double));
			if (!s->score || !s->label || (hw && !s->weight)) {
				rc = ENG_ENOMEM;
				goto bad;
			}
		}
		s->n = s->cap = n;
		const uint8_t *p = rtake(&r, (size_t)n * row);
		for (int64_t i = 0; p && i < n * C; i++, p += 8) {
			s->score[i] = eng__get_f64(p);
			if (isnan(s->score[i])) {
				why = "NaN score";
				goto bad;
			}
		}
		for (size_t i = 0; p && i < (size_t)n * L; i++, p += 4) {
			uint32_t y = eng__get_u32(p);
			if (c.kind == ENG_LABELS_CLASS_ID ? y >= (uint32_t)C : y > 1) {
				why = "bad label";
				goto bad;
			}
			s->label[i] = (int32_t)y;
		}
		for (int64_t i = 0; p && hw && i < n; i++, p += 8) {
			s->weight[i] = eng__get_f64(p);
			if (!good_weight(s->weight[i])) {
				why = "bad weight";
				goto bad;
			}
		}
	} else {
		if (c.method == ENG_STREAM_BINNED)
			s->bins = calloc((size_t)C, sizeof(*s->bins));
		else
			s->sk = calloc((size_t)C, sizeof(*s->sk));
		if (!s->bins && !s->sk) {
			rc = ENG_ENOMEM;
			goto bad;
		}
		for (int64_t k = 0; k < C; k++) {
			uint64_t bl = r64(&r);
			const uint8_t *p = bl <= r.left ? rtake(&r, (size_t)bl) : NULL;
			if (!p) {
				why = "truncated accumulator";
				goto bad;
			}
			int e = s->bins ? eng_binned_deserialize(&s->bins[k], p, (size_t)bl)
			                : eng_sketch_deserialize(&s->sk[k], p, (size_t)bl);
			if (e) {
				rc = e == ENG_ENOMEM ? ENG_ENOMEM : ENG_ESTATE;
				why = "bad accumulator";
				goto bad;
			}
			if (s->bins ? eng_binned_num_thresholds(s->bins[k]) != c.num_thresholds
			            : eng_sketch_cap(s->sk[k]) != sketch_col_bytes(&c)) {
				why = "accumulator of another config";
				goto bad;
			}
			/* The accumulators count rows as we do: they must agree. */
			int64_t ap, an;
			if (s->bins) {
				eng_auc_result ar;
				if (eng_binned_auc(&ar, NULL, s->bins[k], ENG_CURVE_ROC,
				                   ENG_SUM_INTERPOLATION, 2)) {
					rc = ENG_ENOMEM;
					goto bad;
				}
				ap = ar.positives;
				an = ar.negatives;
			} else {
				ap = eng_sketch_positives(s->sk[k]);
				an = eng_sketch_negatives(s->sk[k]);
			}
			if (ap != s->cc[k].pos || an != s->cc[k].neg) {
				why = "accumulator counts disagree";
				goto bad;
			}
		}
	}
	uint32_t has_sums = r32(&r), has_acc = r32(&r);
	if (r.fail || has_sums > 1 || has_acc > 1 || (has_sums && !c.has_loss)) {
		why = "bad loss section";
		goto bad;
	}
	if (has_sums) {
		eng_loss_kind k = (eng_loss_kind)r32(&r);
		(void)r32(&r);
		double wl = rf64(&r), ws = rf64(&r);
		int64_t cnt = rcount(&r), ign = rcount(&r), cor = rcount(&r), nc = rcount(&r);
		if (r.fail || k != c.loss_kind || (nc != 0 && nc != C) ||
		    (size_t)nc > r.left / 40 || isnan(ws) || cor > cnt) {
			why = "bad loss section";
			goto bad;
		}
		if (!(s->loss = eng_loss_result_new(k, nc, 0))) {
			rc = ENG_ENOMEM;
			goto bad;
		}
		s->loss->has_accuracy = has_acc;
		s->loss->wloss_sum = wl;
		s->loss->weight_sum = ws;
		s->loss->count = cnt;
		s->loss->ignored = ign;
		s->loss->correct = cor;
		for (int64_t j = 0; j < nc; j++) {
			eng_loss_class *pc = &s->loss->per_class[j];
			pc->support = rcount(&r);
			pc->predicted = rcount(&r);
			pc->correct = rcount(&r);
			pc->weight_sum = rf64(&r);
			pc->loss_sum = rf64(&r);
		}
	}
	if (version == VERSION_X && (why = read_extra(s, &r, &rc)) != NULL)
		goto bad;
	why = "truncated";
	if (!r.fail && r.left > 0) {
		uint32_t tag = r32(&r), zero = r32(&r);
		uint64_t hlen = r64(&r);
		const uint8_t *p = !r.fail && hlen <= r.left ? rtake(&r, (size_t)hlen) : NULL;
		if (tag != HIST_TAG || zero != 0 || !p) {
			why = "bad trailing section";
			goto bad;
		}
		int e = eng__hist_read(&s->hist, p, (size_t)hlen, C, &why);
		if (e) {
			rc = e;
			goto bad;
		}
		/* points with metric sums: the loss' own layout (a reset stream
		 * has no loss sums and keeps its history) */
		const eng_extra_opts *ho = eng__hist_extra_opts(s->hist);
		if (ho && s->loss && !hist_layout_matches(s->loss->extra, ho)) {
			why = "the history's metric sums differ from the loss'";
			goto bad;
		}
	}
	if (r.fail || r.left != 0) {
		why = r.fail ? "truncated" : "trailing bytes";
		goto bad;
	}
	if (version == 1 && (why = upgrade_v1(s)) != NULL) {
		rc = strcmp(why, "out of memory") == 0 ? ENG_ENOMEM : ENG_ESTATE;
		goto bad;
	}
	if ((why = check_state(s)) != NULL)
		goto bad;
	*out = s;
	return 0;
bad:
	eng_stream_free(s);
	if (rc == ENG_ENOMEM)
		return eng_error_set(err, ENG_ENOMEM, "state", -1, "out of memory");
	return eng_error_set(err, ENG_ESTATE, "state", -1, "corrupt stream state: %s", why);
}

/* ---- the step series (history.h; the series itself is history.c) ---------------------------- */

eng__hist **eng__stream_hist(eng_stream *s)
{
	return &s->hist;
}

const eng__hist *eng__stream_hist_c(const eng_stream *s)
{
	return s->hist;
}

int eng_stream_set_step(eng_stream *s, int64_t step)
{
	if (step < 0 || s->hist)
		return ENG_EINVAL;
	int64_t *pos = malloc((size_t)s->cfg.columns * sizeof(int64_t));
	if (!pos)
		return ENG_ENOMEM;
	for (int64_t k = 0; k < s->cfg.columns; k++)
		pos[k] = s->cc[k].pos;
	int rc = eng__hist_from_totals(&s->hist, step, s->cfg.columns, s->updates, s->rows, pos,
	                               s->loss);
	free(pos);
	return rc;
}

void eng_stream_set_history_max(eng_stream *s, size_t max_points)
{
	s->hist_max = max_points;
}
