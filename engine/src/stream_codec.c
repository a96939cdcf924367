/*
 * stream_codec.c - a stream's state as bytes and back (eng_stream_serialize,
 * eng_stream_deserialize in stream.h); the state itself is stream.c.
 *
 * The format is versioned and self-checking: a magic, a version, the
 * payload length and a 64-bit checksum of the payload (bytes.h) come
 * first, then one section after another, each written by one write_*
 * function and read back by its read_* twin in the same order. Version 1
 * and 2 states are still read; version 3 only adds the XTRA section.
 *
 * Why so much checking: a state comes back from the client (export, then
 * merge or import) and from disk, so it is hostile input. Every field is
 * checked on its own when read (enums, counts below 2^62, sizes against the
 * bytes left before anything is allocated for them, labels in range,
 * weights finite and >= 0, scores not NaN), and then the sections against
 * each other (check_state: the accumulators hold the per-column counts and
 * weights, the loss counts nest). Corrupt or forged input is ENG_ESTATE
 * with a reason, never a crash, an allocation larger than the input
 * justifies, or a stream whose readings are NaN. Every reader walks an
 * eng__reader, which cannot read past its end.
 *
 * Invariants: what eng_stream_serialize writes, eng_stream_deserialize
 * accepts and turns back into an equal stream (stream.c keeps every sum
 * finite for that). A state without extra sums is written as version 2,
 * byte for byte what earlier builds wrote.
 *
 * Not here: the accumulators' own bytes (binned.c, sketch.c) and the step
 * series' (history.c), which this file frames as blobs; locking, I/O.
 */
#include "lossd/stream.h"

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
#include "stream_priv.h"

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

/* The XTRA section's length after its 16-byte frame. */
static uint64_t extra_len(uint64_t ntop, uint64_t bins)
{
	return 16 + ntop * 16 + 8 + 24 + bins * 32 + 24;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void write_config(eng__writer *w, const eng_stream *s)
{
	const eng_stream_config *c = &s->cfg;
	eng__writer_u32(w, (uint32_t)c->method);
	eng__writer_u32(w, (uint32_t)c->kind);
	eng__writer_u32(w, (uint32_t)c->curve);
	eng__writer_u32(w, (uint32_t)c->summation);
	eng__writer_u32(w, c->from_logits);
	eng__writer_u32(w, c->has_loss);
	eng__writer_u32(w, (uint32_t)c->loss_kind);
	eng__writer_u32(w, 0);
	eng__writer_u64(w, (uint64_t)c->columns);
	eng__writer_u64(w, (uint64_t)c->num_thresholds);
	eng__writer_u64(w, (uint64_t)c->sketch_bytes);
	eng__writer_u64(w, c->loss_fingerprint);
}

static void write_counts(eng__writer *w, const eng_stream *s)
{
	eng__writer_u64(w, (uint64_t)s->updates);
	eng__writer_u64(w, (uint64_t)s->rows);
	for (int64_t k = 0; k < s->cfg.columns; k++) {
		eng__writer_u64(w, (uint64_t)s->cc[k].pos);
		eng__writer_u64(w, (uint64_t)s->cc[k].neg);
		eng__writer_f64(w, s->cc[k].pw);
		eng__writer_f64(w, s->cc[k].nw);
	}
}

static void write_exact(eng__writer *w, const eng_stream *s)
{
	size_t C = (size_t)s->cfg.columns, L = (size_t)eng__stream_lcols(&s->cfg);
	size_t n = (size_t)s->n;
	eng__writer_u64(w, (uint64_t)s->n);
	eng__writer_u32(w, s->weight != NULL);
	eng__writer_u32(w, 0);
	/* The rows in one reservation, filled in place: the bulk of a state. */
	uint8_t *p = eng__writer_reserve(w, n * (C * 8 + L * 4 + (s->weight ? 8 : 0)));
	if (!p)
		return;
	for (size_t i = 0; i < n * C; i++, p += 8)
		eng__put_f64(p, s->score[i]);
	for (size_t i = 0; i < n * L; i++, p += 4)
		eng__put_u32(p, (uint32_t)s->label[i]);
	if (s->weight)
		for (size_t i = 0; i < n; i++, p += 8)
			eng__put_f64(p, s->weight[i]);
}

/* Each column's accumulator as a blob of its own bytes (binned.c, sketch.c). */
static void write_accs(eng__writer *w, const eng_stream *s)
{
	for (int64_t k = 0; k < s->cfg.columns && !w->fail; k++) {
		uint8_t *b = NULL;
		size_t bl = 0;
		int rc = s->bins ? eng_binned_serialize(&b, &bl, s->bins[k])
		                 : eng_sketch_serialize(&b, &bl, s->sk[k]);
		if (rc)
			w->fail = true;
		else
			eng__writer_blob(w, b, bl);
		free(b);
	}
}

static void write_loss(eng__writer *w, const eng_loss_result *l)
{
	eng__writer_u32(w, l != NULL);
	eng__writer_u32(w, l ? l->has_accuracy : 0);
	if (!l)
		return;
	eng__writer_u32(w, (uint32_t)l->kind);
	eng__writer_u32(w, 0);
	eng__writer_f64(w, l->wloss_sum);
	eng__writer_f64(w, l->weight_sum);
	eng__writer_u64(w, (uint64_t)l->count);
	eng__writer_u64(w, (uint64_t)l->ignored);
	eng__writer_u64(w, (uint64_t)l->correct);
	eng__writer_u64(w, (uint64_t)l->nclasses);
	for (int64_t k = 0; k < l->nclasses; k++) {
		const eng_loss_class *pc = &l->per_class[k];
		eng__writer_u64(w, (uint64_t)pc->support);
		eng__writer_u64(w, (uint64_t)pc->predicted);
		eng__writer_u64(w, (uint64_t)pc->correct);
		eng__writer_f64(w, pc->weight_sum);
		eng__writer_f64(w, pc->loss_sum);
	}
}

/* Version 3: the loss' extra sums. */
static void write_extra(eng__writer *w, const eng_extra_result *x)
{
	eng__writer_u32(w, XTRA_TAG);
	eng__writer_u32(w, 0);
	eng__writer_u64(w, extra_len((uint64_t)x->ntop, (uint64_t)x->bins));
	eng__writer_u32(w, (uint32_t)x->ntop);
	eng__writer_u32(w, (uint32_t)x->bins);
	eng__writer_u32(w, x->perplexity);
	eng__writer_u32(w, 0);
	for (int i = 0; i < x->ntop; i++) {
		eng__writer_u64(w, (uint64_t)x->top_k[i]);
		eng__writer_u64(w, (uint64_t)x->top_correct[i]);
	}
	eng__writer_u64(w, (uint64_t)x->top_count);
	eng__writer_f64(w, x->nll_sum);
	eng__writer_f64(w, x->nll_weight);
	eng__writer_u64(w, (uint64_t)x->nll_count);
	for (int b = 0; b < x->bins; b++) {
		eng__writer_u64(w, (uint64_t)x->bin[b].count);
		eng__writer_f64(w, x->bin[b].weight);
		eng__writer_f64(w, x->bin[b].conf);
		eng__writer_f64(w, x->bin[b].acc);
	}
	eng__writer_f64(w, x->brier_sum);
	eng__writer_f64(w, x->calib_weight);
	eng__writer_u64(w, (uint64_t)x->calib_count);
}

/* The optional trailing section: the step series (history.c). */
static void write_hist(eng__writer *w, const eng__hist *h)
{
	uint8_t *hb = NULL;
	size_t hl = 0;
	if (eng__hist_write(&hb, &hl, h))
		w->fail = true;
	eng__writer_u32(w, HIST_TAG);
	eng__writer_u32(w, 0);
	eng__writer_blob(w, hb, hl);
	free(hb);
}

uint64_t eng_checksum64(const void *p, size_t n)
{
	return eng__checksum64(p, n);
}

int eng_stream_serialize(void **out, size_t *len, const eng_stream *s)
{
	eng__writer w = ENG__WRITER_INIT;
	const eng_extra_result *x = s->loss ? s->loss->extra : NULL;
	uint8_t *p;

	*out = NULL;
	*len = 0;
	(void)eng__writer_reserve(&w, HEADER); /* filled in last */
	write_config(&w, s);
	write_counts(&w, s);
	if (s->cfg.method == ENG_STREAM_EXACT)
		write_exact(&w, s);
	else
		write_accs(&w, s);
	write_loss(&w, s->loss);
	if (x)
		write_extra(&w, x);
	if (eng__hist_size(s->hist)) /* absent for a stream that never saw a step */
		write_hist(&w, s->hist);
	if (!w.fail) {
		memcpy(w.p, MAGIC, 4);
		eng__put_u32(w.p + 4, x ? VERSION_X : VERSION);
		eng__put_u64(w.p + 8, (uint64_t)(w.len - HEADER));
		eng__put_u64(w.p + 16, eng__checksum64(w.p + HEADER, w.len - HEADER));
	}
	int rc = eng__writer_finish(&w, &p, len);
	*out = p;
	return rc;
}

/* ---- checks shared by the readers ------------------------------------------------------------ */

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

/* ---- reading, one section at a time ----------------------------------------------------------- */
/*
 * Each read_* takes its section from r into s and returns NULL, or why the
 * bytes are refused; *rc is ENG_ESTATE on entry and becomes ENG_ENOMEM
 * when what failed was an allocation.
 */

/* The frame: magic, a known version, the length and the checksum. The
 * payload into r, the version into *version. */
static const char *read_header(eng__reader *r, uint32_t *version, const uint8_t *b, size_t len)
{
	if (!b || len < HEADER || memcmp(b, MAGIC, 4) != 0)
		return "not a stream state";
	*version = eng__get_u32(b + 4);
	if (*version != VERSION && *version != VERSION_X && *version != 1)
		return "unsupported state version";
	if (eng__get_u64(b + 8) != len - HEADER)
		return "length mismatch";
	if (eng__get_u64(b + 16) != eng__checksum64(b + HEADER, len - HEADER))
		return "checksum mismatch";
	eng__reader_init(r, b + HEADER, len - HEADER);
	return NULL;
}

/* The config, checked as eng_stream_new checks one. */
static const char *read_config(eng_stream_config *c, eng__reader *r, size_t max_bytes)
{
	c->method = (eng_stream_method)eng__reader_u32(r);
	c->kind = (eng_label_kind)eng__reader_u32(r);
	c->curve = (eng_curve)eng__reader_u32(r);
	c->summation = (eng_summation)eng__reader_u32(r);
	uint32_t fl = eng__reader_u32(r), hl = eng__reader_u32(r);
	c->loss_kind = (eng_loss_kind)eng__reader_u32(r);
	(void)eng__reader_u32(r);
	c->columns = eng__reader_count(r);
	c->num_thresholds = eng__reader_count(r);
	c->sketch_bytes = (size_t)eng__reader_count(r);
	c->loss_fingerprint = eng__reader_u64(r);
	c->max_bytes = max_bytes;
	if (r->fail || fl > 1 || hl > 1)
		return "bad config";
	c->from_logits = fl;
	c->has_loss = hl;
	if (!c->has_loss)
		c->loss_kind = ENG_LOSS_BINARY_CE;
	if (eng_stream_config_check(c, NULL))
		return "bad config";
	return NULL;
}

/* Updates, rows and the per-column table (each column's rows add up). */
static const char *read_counts(eng_stream *s, eng__reader *r)
{
	int64_t C = s->cfg.columns;
	s->updates = eng__reader_count(r);
	s->rows = eng__reader_count(r);
	if ((size_t)C > r->left / 32)
		return "truncated counts";
	for (int64_t k = 0; k < C; k++) {
		eng__colcount *x = &s->cc[k];
		x->pos = eng__reader_count(r);
		x->neg = eng__reader_count(r);
		x->pw = eng__reader_f64(r);
		x->nw = eng__reader_f64(r);
		if (!good_weight(x->pw) || !good_weight(x->nw) || x->pos + x->neg != s->rows)
			return "bad counts";
	}
	return r->fail ? "truncated" : NULL;
}

/*
 * Points a delta's row arrays (n rows, weights when hw) at into's spare
 * rows, grown as needed, so they are decoded in place and the merge that
 * follows copies nothing. false (nothing borrowed) when into cannot take
 * them: not an exact stream of the same config, past its memory cap, or
 * out of memory (the delta then gets arrays of its own).
 */
static bool borrow_rows(eng_stream *s, eng_stream *into, int64_t n, bool hw)
{
	const eng_stream_config *c = &into->cfg;
	size_t C = (size_t)c->columns, L = (size_t)eng__stream_lcols(c);
	if (!eng_stream_config_equal(c, &s->cfg) || c->method != ENG_STREAM_EXACT ||
	    n > INT64_MAX / 2 - into->n)
		return false;
	bool w = hw || into->weight;
	size_t row = C * sizeof(double) + L * sizeof(int32_t) + (w ? sizeof(double) : 0);
	int64_t n2 = into->n + n;
	if ((size_t)n2 > c->max_bytes / row || eng__stream_grow_rows(into, n2, row))
		return false;
	s->score = into->score + (size_t)into->n * C;
	s->label = into->label + (size_t)into->n * L;
	s->borrowed_rows = true;
	if (hw && into->weight) {
		s->weight = into->weight + into->n;
		s->borrowed_weight = true;
	}
	return true;
}

/*
 * An exact stream's rows: scores not NaN, labels in range, weights >= 0.
 * Each array is copied whole (one memcpy on a little-endian host) and then
 * checked in a loop without early exit that the compiler vectorizes: an
 * exact state is most of a big store, and its load is bound by passes over
 * these arrays. With into, the rows go straight into its spare capacity.
 */
static const char *read_exact(eng_stream *s, eng__reader *r, int *rc, eng_stream *into)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	size_t L = (size_t)eng__stream_lcols(c);
	int64_t n = eng__reader_count(r);
	uint32_t hw = eng__reader_u32(r);
	(void)eng__reader_u32(r);
	size_t row = (size_t)C * 8 + L * 4 + (hw ? 8 : 0);
	if (r->fail || hw > 1 || n != s->rows || (size_t)n > r->left / row)
		return "bad exact section";
	if (n > 0) {
		if (!(into && borrow_rows(s, into, n, hw))) {
			s->score = malloc((size_t)n * (size_t)C * sizeof(double));
			s->label = malloc((size_t)n * L * sizeof(int32_t));
		}
		if (hw && !s->weight)
			s->weight = malloc((size_t)n * sizeof(double));
		if (!s->score || !s->label || (hw && !s->weight)) {
			*rc = ENG_ENOMEM;
			return "out of memory";
		}
	}
	s->n = s->cap = n;
	/* n rows fit in what is left (checked above): one take, then the
	 * unchecked primitives over it. */
	const uint8_t *p = eng__reader_take(r, (size_t)n * row);
	if (!p || n == 0)
		return NULL;
	size_t ns = (size_t)n * (size_t)C, nl = (size_t)n * L;
	unsigned bad = 0; /* not bool: the loops vectorize */
	if (ENG__LE)
		memcpy(s->score, p, ns * 8);
	else
		for (size_t i = 0; i < ns; i++)
			s->score[i] = eng__get_f64(p + 8 * i);
	p += ns * 8;
	for (size_t i = 0; i < ns; i++)
		bad |= (unsigned)(s->score[i] != s->score[i]);
	if (bad)
		return "NaN score";
	if (ENG__LE)
		memcpy(s->label, p, nl * 4);
	else
		for (size_t i = 0; i < nl; i++)
			s->label[i] = (int32_t)eng__get_u32(p + 4 * i);
	p += nl * 4;
	uint32_t top = c->kind == ENG_LABELS_CLASS_ID ? (uint32_t)C - 1 : 1;
	for (size_t i = 0; i < nl; i++)
		bad |= (unsigned)((uint32_t)s->label[i] > top);
	if (bad)
		return "bad label";
	if (!hw)
		return NULL;
	if (ENG__LE)
		memcpy(s->weight, p, (size_t)n * 8);
	else
		for (size_t i = 0; i < (size_t)n; i++)
			s->weight[i] = eng__get_f64(p + 8 * i);
	/* good_weight: finite and >= 0 (NaN fails both compares) */
	for (size_t i = 0; i < (size_t)n; i++)
		bad |= (unsigned)!(s->weight[i] >= 0.0 && s->weight[i] <= DBL_MAX);
	return bad ? "bad weight" : NULL;
}

/* Rows column k's accumulator counts: positives into *pos, negatives into
 * *neg. ENG_ENOMEM when a binned reading cannot allocate. */
static int acc_counts(const eng_stream *s, int64_t k, int64_t *pos, int64_t *neg)
{
	if (s->bins) {
		eng_auc_result ar;
		if (eng_binned_auc(&ar, NULL, s->bins[k], ENG_CURVE_ROC, ENG_SUM_INTERPOLATION, 2))
			return ENG_ENOMEM;
		*pos = ar.positives;
		*neg = ar.negatives;
	} else {
		*pos = eng_sketch_positives(s->sk[k]);
		*neg = eng_sketch_negatives(s->sk[k]);
	}
	return 0;
}

/* A binned or sketch stream's accumulators, one blob per column, each of
 * this config and counting the rows the per-column table says. */
static const char *read_accs(eng_stream *s, eng__reader *r, int *rc)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	if (c->method == ENG_STREAM_BINNED)
		s->bins = calloc((size_t)C, sizeof(*s->bins));
	else
		s->sk = calloc((size_t)C, sizeof(*s->sk));
	if (!s->bins && !s->sk) {
		*rc = ENG_ENOMEM;
		return "out of memory";
	}
	for (int64_t k = 0; k < C; k++) {
		size_t bl;
		const uint8_t *p = eng__reader_blob(r, &bl);
		if (!p)
			return "truncated accumulator";
		int e = s->bins ? eng_binned_deserialize(&s->bins[k], p, bl)
		                : eng_sketch_deserialize(&s->sk[k], p, bl);
		if (e) {
			*rc = e == ENG_ENOMEM ? ENG_ENOMEM : ENG_ESTATE;
			return "bad accumulator";
		}
		if (s->bins ? eng_binned_num_thresholds(s->bins[k]) != c->num_thresholds
		            : eng_sketch_cap(s->sk[k]) != eng__stream_sketch_col_bytes(c))
			return "accumulator of another config";
		/* The accumulators count rows as we do: they must agree. */
		int64_t ap, an;
		if (acc_counts(s, k, &ap, &an)) {
			*rc = ENG_ENOMEM;
			return "out of memory";
		}
		if (ap != s->cc[k].pos || an != s->cc[k].neg)
			return "accumulator counts disagree";
	}
	return NULL;
}

/* The loss sums, when the stream has some: of the config's loss, per class
 * for none or every column. */
static const char *read_loss(eng_stream *s, eng__reader *r, int *rc)
{
	const eng_stream_config *c = &s->cfg;
	uint32_t has_sums = eng__reader_u32(r), has_acc = eng__reader_u32(r);
	if (r->fail || has_sums > 1 || has_acc > 1 || (has_sums && !c->has_loss))
		return "bad loss section";
	if (!has_sums)
		return NULL;
	eng_loss_kind k = (eng_loss_kind)eng__reader_u32(r);
	(void)eng__reader_u32(r);
	double wl = eng__reader_f64(r), ws = eng__reader_f64(r);
	int64_t cnt = eng__reader_count(r), ign = eng__reader_count(r);
	int64_t cor = eng__reader_count(r), nc = eng__reader_count(r);
	if (r->fail || k != c->loss_kind || (nc != 0 && nc != c->columns) ||
	    (size_t)nc > r->left / 40 || isnan(ws) || cor > cnt)
		return "bad loss section";
	eng_loss_result *l = eng_loss_result_new(k, nc, 0);
	if (!l) {
		*rc = ENG_ENOMEM;
		return "out of memory";
	}
	s->loss = l;
	l->has_accuracy = has_acc;
	l->wloss_sum = wl;
	l->weight_sum = ws;
	l->count = cnt;
	l->ignored = ign;
	l->correct = cor;
	for (int64_t j = 0; j < nc; j++) {
		eng_loss_class *pc = &l->per_class[j];
		pc->support = eng__reader_count(r);
		pc->predicted = eng__reader_count(r);
		pc->correct = eng__reader_count(r);
		pc->weight_sum = eng__reader_f64(r);
		pc->loss_sum = eng__reader_f64(r);
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
 */
static const char *read_extra(eng_stream *s, eng__reader *r, int *rc)
{
	eng_loss_result *l = s->loss;
	uint32_t tag = eng__reader_u32(r), zero = eng__reader_u32(r);
	uint64_t len = eng__reader_u64(r);
	if (r->fail || tag != XTRA_TAG || zero != 0 || len > r->left)
		return "bad metric section";
	if (!l)
		return "metric sums without loss sums";
	size_t end = r->left - (size_t)len;
	uint32_t ntop = eng__reader_u32(r), bins = eng__reader_u32(r);
	uint32_t ppl = eng__reader_u32(r), z2 = eng__reader_u32(r);
	if (r->fail || ntop > ENG_EXTRA_MAX_TOPK || bins > ENG_CALIB_MAX_BINS || ppl > 1 ||
	    z2 != 0 || len != extra_len(ntop, bins))
		return "bad metric section";
	eng_extra_opts o = ENG_EXTRA_OPTS_INIT;
	o.ntop = (int)ntop;
	o.bins = (int)bins;
	o.perplexity = ppl;
	int64_t correct[ENG_EXTRA_MAX_TOPK];
	for (uint32_t i = 0; i < ntop; i++) {
		o.top_k[i] = eng__reader_count(r);
		correct[i] = eng__reader_count(r);
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
	x->top_count = eng__reader_count(r);
	x->nll_sum = eng__reader_f64(r);
	x->nll_weight = eng__reader_f64(r);
	x->nll_count = eng__reader_count(r);
	for (int b = 0; b < x->bins; b++) {
		x->bin[b].count = eng__reader_count(r);
		x->bin[b].weight = eng__reader_f64(r);
		x->bin[b].conf = eng__reader_f64(r);
		x->bin[b].acc = eng__reader_f64(r);
	}
	x->brier_sum = eng__reader_f64(r);
	x->calib_weight = eng__reader_f64(r);
	x->calib_count = eng__reader_count(r);
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

/* True when x (may be NULL) has the configuration o. */
static bool hist_layout_matches(const eng_extra_result *x, const eng_extra_opts *o)
{
	eng_extra_opts xo;
	if (!x)
		return false;
	eng__extra_opts_of(&xo, x);
	return eng__extra_opts_equal(&xo, o);
}

/* The optional step series, then the end: nothing may follow it. */
static const char *read_tail(eng_stream *s, eng__reader *r, int *rc)
{
	const char *why = "truncated";
	if (!r->fail && r->left > 0) {
		uint32_t tag = eng__reader_u32(r), zero = eng__reader_u32(r);
		size_t hlen;
		const uint8_t *p = eng__reader_blob(r, &hlen);
		if (tag != HIST_TAG || zero != 0 || !p)
			return "bad trailing section";
		int e = eng__hist_read(&s->hist, p, hlen, s->cfg.columns, &why);
		if (e) {
			*rc = e;
			return why;
		}
		/* points with metric sums: the loss' own layout (a reset stream
		 * has no loss sums and keeps its history) */
		const eng_extra_opts *ho = eng__hist_extra_opts(s->hist);
		if (ho && s->loss && !hist_layout_matches(s->loss->extra, ho))
			return "the history's metric sums differ from the loss'";
	}
	if (r->fail || r->left != 0)
		return r->fail ? "truncated" : "trailing bytes";
	return NULL;
}

/* Per column, how many of an exact state's rows are positive (label 1, or
 * class k for one-vs-rest), in one pass that vectorizes; the labels were
 * checked to be in range. New (free()), NULL when out of memory. */
static int64_t *exact_positives(const eng_stream *s)
{
	int64_t C = s->cfg.columns;
	size_t n = (size_t)s->n;
	int64_t *pos = calloc((size_t)C, sizeof(*pos));
	if (!pos)
		return NULL;
	if (s->cfg.kind == ENG_LABELS_CLASS_ID) {
		for (size_t i = 0; i < n; i++)
			pos[s->label[i]]++;
	} else if (s->cfg.kind == ENG_LABELS_MULTI) {
		for (size_t i = 0; i < n; i++)
			for (int64_t k = 0; k < C; k++)
				pos[k] += s->label[i * (size_t)C + (size_t)k];
	} else {
		int64_t p = 0;
		for (size_t i = 0; i < n; i++)
			p += s->label[i];
		pos[0] = p;
	}
	return pos;
}

/* check_state's body; pos: exact_positives of an unweighted exact state
 * (whose weights are its counts, exact in double), else NULL. */
static const char *check_counts(const eng_stream *s, const int64_t *pos)
{
	const eng_stream_config *c = &s->cfg;
	int64_t C = c->columns;
	const char *what = NULL;

	if (!eng__stream_sums_finite(s, NULL, &what))
		return "a sum is not finite";
	if (s->rows > 0 && s->updates == 0)
		return "rows without updates";
	for (int64_t k = 0; k < C; k++) {
		const eng__colcount *x = &s->cc[k];
		if ((x->pos == 0 && x->pw != 0.0) || (x->neg == 0 && x->nw != 0.0))
			return "weight without rows";
		double ap, an;
		if (pos) {
			if (pos[k] != x->pos || s->n - pos[k] != x->neg)
				return "rows disagree with the counts";
			ap = (double)pos[k];
			an = (double)(s->n - pos[k]);
		} else if (c->method == ENG_STREAM_EXACT) {
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
			eng__stream_acc_weights(s, k, &ap, &an);
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

/*
 * The checks that tie a parsed state's sections together, beyond each
 * field's own range: every sum finite, weights >= 0, a class with no rows
 * has no weight, the accumulators (or the exact rows) hold the very counts
 * and weights of the per-column table, loss counts nest. NULL when the
 * state is consistent, else what is not.
 */
static const char *check_state(const eng_stream *s, int *rc)
{
	int64_t *pos = NULL;
	if (s->cfg.method == ENG_STREAM_EXACT && !s->weight && !(pos = exact_positives(s))) {
		*rc = ENG_ENOMEM;
		return "out of memory";
	}
	const char *why = check_counts(s, pos);
	free(pos);
	return why;
}

/* ---- version 1 ---------------------------------------------------------------------------- */

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
 * or why the state cannot be upgraded (*rc ENG_ENOMEM when memory ran out).
 */
static const char *upgrade_v1(eng_stream *s, int *rc)
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
		if (e == ENG_ENOMEM) {
			*rc = ENG_ENOMEM;
			return "out of memory";
		}
		if (e)
			return "a version 1 logit stream's sketch key is not a probability";
	}
	return NULL;
}

/* ---- eng_stream_deserialize ------------------------------------------------------------------ */

/* eng_stream_deserialize, an exact state's rows decoded into into's spare
 * capacity when into is not NULL (eng_stream_merge_bytes). */
static int deserialize(eng_stream **out, const void *data, size_t len, size_t max_bytes,
                       eng_error *err, eng_stream *into)
{
	eng_stream_config c = ENG_STREAM_CONFIG_INIT;
	eng_stream *s = NULL;
	eng__reader r;
	uint32_t version = 0;
	int rc = ENG_ESTATE;
	const char *why;

	*out = NULL;
	if ((why = read_header(&r, &version, data, len)) != NULL ||
	    (why = read_config(&c, &r, max_bytes)) != NULL)
		goto bad;
	if (!(s = eng__stream_alloc(&c))) {
		rc = ENG_ENOMEM;
		goto bad;
	}
	if ((why = read_counts(s, &r)) != NULL ||
	    (why = c.method == ENG_STREAM_EXACT ? read_exact(s, &r, &rc, into)
	                                        : read_accs(s, &r, &rc)) != NULL ||
	    (why = read_loss(s, &r, &rc)) != NULL ||
	    (version == VERSION_X && (why = read_extra(s, &r, &rc)) != NULL) ||
	    (why = read_tail(s, &r, &rc)) != NULL ||
	    (version == 1 && (why = upgrade_v1(s, &rc)) != NULL) ||
	    (why = check_state(s, &rc)) != NULL)
		goto bad;
	*out = s;
	return 0;
bad:
	eng_stream_free(s);
	if (rc == ENG_ENOMEM)
		return eng_error_set(err, ENG_ENOMEM, "state", -1, "out of memory");
	return eng_error_set(err, ENG_ESTATE, "state", -1, "corrupt stream state: %s", why);
}

int eng_stream_deserialize(eng_stream **out, const void *data, size_t len, size_t max_bytes,
                           eng_error *err)
{
	return deserialize(out, data, len, max_bytes, err, NULL);
}

int eng_stream_merge_bytes(eng_stream *dst, const void *data, size_t len, eng_error *err)
{
	eng_stream *d = NULL;
	int rc = deserialize(&d, data, len, SIZE_MAX, err, dst);
	if (!rc)
		rc = eng_stream_merge(dst, d, err);
	eng_stream_free(d);
	return rc;
}
