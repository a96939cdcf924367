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
 * whatever a stream holds serializes into bytes the reader accepts.
 *
 * Not here: the serialized form and its validation (stream_codec.c; the
 * object is shared through stream_priv.h), locking, JSON, I/O, computing
 * losses (the caller does and hands the batch's sums in).
 */
#include "lossd/stream.h"
#include "lossd/aucci.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h"
#include "aucfast.h"
#include "history_priv.h"
#include "loss_priv.h"
#include "lossd/binned.h"
#include "lossd/sketch.h"
#include "stream_priv.h"

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
	if (!s->borrowed_rows) {
		free(s->score);
		free(s->label);
	}
	if (!s->borrowed_weight)
		free(s->weight);
	eng_loss_result_free(s->loss);
	eng__hist_free(s->hist);
	free(s);
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

eng_stream *eng__stream_alloc(const eng_stream_config *cfg)
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
			if (!(s->sk[c] = eng_sketch_new(eng__stream_sketch_col_bytes(&s->cfg))))
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
	eng_stream *s = eng__stream_alloc(cfg);
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
	size_t m = sizeof(*s) + (size_t)C * sizeof(eng__colcount);
	m += (size_t)s->cap *
	     ((size_t)C * sizeof(double) + (size_t)eng__stream_lcols(&s->cfg) * sizeof(int32_t));
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

/* An empty loss result of src's kind, classes and extra configuration. */
static eng_loss_result *loss_empty_like(const eng_loss_result *src)
{
	eng_loss_result *r = eng_loss_result_new(src->kind, src->nclasses, 0);
	if (r && src->extra) {
		eng_extra_opts o;
		eng__extra_opts_of(&o, src->extra);
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
	eng_stream *e = eng__stream_alloc(&s->cfg);
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
	eng_stream *fresh = eng__stream_alloc(&s->cfg);
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

void eng__stream_acc_weights(const eng_stream *s, int64_t k, double *pos, double *neg)
{
	*pos = *neg = 0.0;
	if (s->bins)
		eng_binned_weights(s->bins[k], pos, neg);
	else if (s->sk)
		eng_sketch_weights(s->sk[k], pos, neg);
}

bool eng__stream_sums_finite(const eng_stream *a, const eng_stream *b, const char **what)
{
	for (int64_t k = 0; k < a->cfg.columns; k++) {
		double ap, an, bp = 0.0, bn = 0.0;
		if (!fin(a->cc[k].pw, b ? b->cc[k].pw : 0.0) ||
		    !fin(a->cc[k].nw, b ? b->cc[k].nw : 0.0)) {
			*what = "weight sums";
			return false;
		}
		/* a sketch whose weight, with b's, is far below overflow has
		 * finite sums whatever their order: no pass over its buckets
		 * (an update merges into a stream of up to 32,766 of them) */
		if (a->sk && eng_sketch_weight_added(a->sk[k]) +
		                             (b ? eng_sketch_weight_added(b->sk[k]) : 0.0) <
		                     DBL_MAX / 4)
			continue;
		eng__stream_acc_weights(a, k, &ap, &an);
		if (b)
			eng__stream_acc_weights(b, k, &bp, &bn);
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
	size_t L = (size_t)eng__stream_lcols(cfg);

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

	if (!(s = eng__stream_alloc(cfg)) || make_accs(s))
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
		/* Reads and validates the column (labels, weights, NaN scores):
		 * the fast reader (aucfast.h, the same values and errors as
		 * eng__auc_gather), then the weights of 1 eng__auc_gather gives
		 * without a weight tensor. */
		eng__auc_reader rd;
		const double *sc;
		eng__auc_reader_init(&rd, &d, c, C);
		if ((rc = eng__auc_read(&rd, 0, N, sbuf, &sc, lbuf, wbuf, err)))
			goto out;
		if (!rd.weighted)
			for (int64_t i = 0; i < N; i++)
				wbuf[i] = 1.0;
		eng__colcount *k = &s->cc[c];
		for (int64_t i = 0; i < N; i++) {
			if (lbuf[i]) {
				k->pos++;
				k->pw += wbuf[i];
			} else {
				k->neg++;
				k->nw += wbuf[i];
			}
		}
		if (s->bins && (rc = eng_binned_add_values(s->bins[c], sc, lbuf, wbuf, N, err)))
			goto out;
		if (s->sk && (rc = eng_sketch_add_values(s->sk[c], sc, lbuf, wbuf, N, err)))
			goto out;
		if (cfg->method == ENG_STREAM_EXACT) {
			for (int64_t i = 0; i < N; i++)
				s->score[i * C + c] = sc[i];
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
	if (!eng__stream_sums_finite(s, NULL, &what)) {
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
		if (x && y && eng__extra_same_config(x, y)) {
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

/* The arrays' room set to ncap rows (>= n, > 0). 0, or ENG_ENOMEM when an
 * array could not be moved: cap is then min(cap, ncap), which every array
 * still holds (those moved have ncap rows of room, the others their old
 * cap), so a refused growth keeps the old cap and a refused shrink the
 * smaller one. Contents unchanged. */
static int set_room(eng_stream *dst, int64_t ncap)
{
	const eng_stream_config *c = &dst->cfg;
	size_t L = (size_t)eng__stream_lcols(c);
	int rc = ENG_ENOMEM;
	double *ns = realloc(dst->score, (size_t)ncap * (size_t)c->columns * sizeof(double));
	if (!ns)
		goto out;
	dst->score = ns;
	int32_t *nl = realloc(dst->label, (size_t)ncap * L * sizeof(int32_t));
	if (!nl)
		goto out;
	dst->label = nl;
	if (dst->weight) {
		double *nw = realloc(dst->weight, (size_t)ncap * sizeof(double));
		if (!nw)
			goto out;
		dst->weight = nw;
	}
	rc = 0;
out:
	dst->cap = rc == 0 || ncap < dst->cap ? ncap : dst->cap;
	return rc;
}

int eng__stream_grow_rows(eng_stream *dst, int64_t n2, size_t row)
{
	const eng_stream_config *c = &dst->cfg;
	if (n2 <= dst->cap)
		return 0;
	int64_t ncap = dst->cap ? dst->cap : 64;
	while (ncap < n2)
		ncap = ncap > INT64_MAX / 2 ? n2 : ncap * 2;
	if ((size_t)ncap > c->max_bytes / row)
		ncap = n2;
	return set_room(dst, ncap);
}

static int hist_error(eng_error *err, int rc)
{
	return eng_error_set(err, rc, "state", -1,
	                     rc == ENG_ENOMEM   ? "out of memory"
	                     : rc == ENG_ELIMIT ? "the step series' counts would pass 2^62"
	                     : rc == ENG_ESTATE ? "the step series' top_k, calibration or "
	                                          "perplexity sums differ from the stream's"
	                                        : "the step series' sums would overflow to "
	                                          "infinity; nothing was changed");
}

/* The bytes one kept row of an exact stream takes when dst and src merge. */
static size_t exact_row(const eng_stream *dst, const eng_stream *src)
{
	const eng_stream_config *c = &dst->cfg;
	return (size_t)c->columns * sizeof(double) +
	       (size_t)eng__stream_lcols(c) * sizeof(int32_t) +
	       (dst->weight || src->weight ? sizeof(double) : 0);
}

int eng_stream_reserve(eng_stream *s, int64_t rows, size_t max_bytes)
{
	if (s->cfg.method != ENG_STREAM_EXACT)
		return 0;
	size_t row = exact_row(s, s);
	if (rows > 0 && (size_t)rows > max_bytes / row)
		rows = (int64_t)(max_bytes / row);
	return rows > s->cap ? set_room(s, rows) : 0;
}

void eng_stream_trim(eng_stream *s)
{
	/* (a shrink the allocator refuses leaves that array's room, unused) */
	if (s->cfg.method == ENG_STREAM_EXACT && s->n > 0 && s->cap > s->n)
		(void)set_room(s, s->n);
}

/* Phase 1 of a merge, the part that needs no memory: every refusal
 * eng_stream_merge can answer but out of memory, with its message, for a
 * cap of max_bytes. Both streams untouched. */
static int merge_check(const eng_stream *dst, const eng_stream *src, size_t max_bytes,
                       eng_error *err)
{
	const eng_stream_config *c = &dst->cfg;
	int64_t C = c->columns;
	int rc;
	if (!eng_stream_config_equal(&dst->cfg, &src->cfg))
		return eng_error_set(err, ENG_ESTATE, "state", -1,
		                     "the state's config differs from the stream's");
	if (src->loss && dst->loss &&
	    (src->loss->nclasses != dst->loss->nclasses || src->loss->kind != dst->loss->kind))
		return eng_error_set(err, ENG_ESTATE, "state", -1,
		                     "the state's loss table differs from the stream's");
	if (src->loss && dst->loss && !eng__extra_same_config(src->loss->extra, dst->loss->extra))
		return eng_error_set(
		        err, ENG_ESTATE, "state", -1,
		        "the state's top_k, calibration or perplexity sums differ from "
		        "the stream's");
	if (counts_overflow(dst, src))
		return eng_error_set(err, ENG_ELIMIT, "state", -1,
		                     "the stream's counts would pass 2^62");
	const char *what = NULL;
	if (!eng__stream_sums_finite(dst, src, &what))
		return eng_error_set(err, ENG_ENONFINITE, NULL, -1,
		                     "the stream's %s would overflow to infinity; "
		                     "nothing was changed",
		                     what);
	if ((rc = eng__hist_check(dst->hist, src->hist, C)))
		return hist_error(err, rc);
	if (c->method == ENG_STREAM_EXACT && src->n > 0) {
		int64_t n2 = dst->n + src->n;
		if (src->n > INT64_MAX / 2 || (size_t)n2 > (max_bytes / exact_row(dst, src)))
			return eng_error_set(err, ENG_ELIMIT, "y_score", -1,
			                     "the stream would hold %lld rows, more than its "
			                     "memory cap of %zu bytes allows",
			                     (long long)n2, max_bytes);
	}
	if (src->bins)
		for (int64_t k = 0; k < C; k++)
			if (eng_binned_num_thresholds(src->bins[k]) !=
			    eng_binned_num_thresholds(dst->bins[k]))
				return eng_error_set(err, ENG_ESTATE, "state", -1,
				                     "threshold counts differ");
	return 0;
}

int eng_stream_merge_check(const eng_stream *dst, const eng_stream *src, size_t max_bytes,
                           eng_error *err)
{
	return merge_check(dst, src, max_bytes, err);
}

int eng_stream_merge(eng_stream *dst, const eng_stream *src, eng_error *err)
{
	const eng_stream_config *c = &dst->cfg;
	int64_t C = c->columns;
	size_t L = (size_t)eng__stream_lcols(c);
	eng_loss_result *nloss = NULL;
	eng_sketch **nsk = NULL;
	eng__hist_plan hp = {0};
	int rc = 0;

	/* Phase 1: everything that can fail, dst untouched. */
	if ((rc = merge_check(dst, src, c->max_bytes, err)))
		return rc;
	if ((rc = eng__hist_prepare(&hp, dst->hist, src->hist, C, dst->hist_max)))
		return hist_error(err, rc);
	if (src->loss && !dst->loss && !(nloss = loss_empty_like(src->loss)))
		goto nomem;
	int64_t n2 = dst->n + src->n;
	bool need_w = dst->weight || src->weight;
	if (c->method == ENG_STREAM_EXACT && src->n > 0) {
		if (eng__stream_grow_rows(dst, n2, exact_row(dst, src)))
			goto nomem;
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
	}

	/* Phase 2: cannot fail. */
	if (c->method == ENG_STREAM_EXACT && src->n > 0) {
		/* (eng_stream_merge_bytes decoded src's rows in place already) */
		if (src->score != dst->score + dst->n * C)
			memcpy(dst->score + dst->n * C, src->score,
			       (size_t)src->n * (size_t)C * sizeof(double));
		if (src->label != dst->label + (size_t)dst->n * L)
			memcpy(dst->label + (size_t)dst->n * L, src->label,
			       (size_t)src->n * L * sizeof(int32_t));
		if (dst->weight) {
			if (!src->weight)
				for (int64_t i = 0; i < src->n; i++)
					dst->weight[dst->n + i] = 1.0;
			else if (src->weight != dst->weight + dst->n)
				memcpy(dst->weight + dst->n, src->weight,
				       (size_t)src->n * sizeof(double));
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

/* An exact stream's kept rows as the tensors eng_auc_exact and
 * eng_auc_delong read (views into s: valid while s is unchanged). */
static void exact_view(eng_tensor *sc, eng_tensor *lb, eng_tensor *wt, const eng_stream *s)
{
	const eng_stream_config *c = &s->cfg;
	*sc = (eng_tensor){ENG_F64, 2, {s->n, c->columns}, s->n * c->columns, s->score};
	*lb = (eng_tensor){ENG_I32, 1, {s->n}, s->n, s->label};
	*wt = (eng_tensor){ENG_F64, 1, {s->n}, s->n, s->weight};
	if (c->kind == ENG_LABELS_BINARY) {
		sc->ndim = 1;
		sc->shape[1] = 0;
	}
	if (c->kind == ENG_LABELS_MULTI) {
		lb->ndim = 2;
		lb->shape[1] = c->columns;
		lb->size = s->n * c->columns;
	}
}

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
	eng__colcount k = {0, 0, 0, 0};
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
			eng_tensor sc, lb, wt;
			exact_view(&sc, &lb, &wt, s);
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
	eng_tensor sc, lb, wt;
	exact_view(&sc, &lb, &wt, s);
	eng_auc_data d = {&sc, &lb, NULL, c->kind};
	return eng_auc_delong(&a, se, &d, col, err);
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
