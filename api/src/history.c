/*
 * history.c - a stream's history as JSON and CSV (api_history.h, docs/API.md
 * section 7).
 *
 * Pages are written straight into a growing text buffer instead of a
 * jansson tree: a 10,000-point page is one pass over the points with no
 * allocation per value, and doubles go through api__dtoa (the shortest
 * text that reads back as the same double, like every other reply).
 * Integers are written by hand and literals appended by an inlined
 * fast path, not through printf: a 10,000-point JSON page then costs
 * about 4 ms of CPU, most of it the four doubles of every point
 * (bench_streams.py --history-read).
 *
 * Derived values of a point: `loss` is the stream's reduction applied to
 * the point's sums (mean: loss_sum / weight_sum; sum: loss_sum;
 * sum_over_batch_size: loss_sum / positions), `accuracy` correct /
 * positions; both null when undefined (no loss configured, no counted
 * position, or a loss without accuracy), with the reason in
 * "null_reasons" so a dashboard can show it where the value would be.
 *
 * Metrics of section 9 per point, where the stream has them: `perplexity`
 * (from the point's nll sums when the loss asks for top_k or calibration,
 * else exp(loss / weight) of a plain cross-entropy, as the reading),
 * `top_k_accuracy` {"k": share} and `calibration` {ece, mce, rmsce, brier}
 * (the bins themselves are in the reading and in checkpoints, not in
 * every point). A point kept from before points held these sums (or with
 * nothing counted) shows null, with the reason in null_reasons. CSV gives
 * them as perplexity, top_k_<k>, ece, mce, rmsce, brier after accuracy.
 *
 * CSV: one header row, then one row per point or checkpoint; per-class
 * values as positives_class_0, ... (steps) and auc_class_0,
 * loss_mean_class_0, ... (checkpoints); an undefined value is an empty
 * cell; text cells are quoted when they hold a comma, quote or newline.
 *
 * The output is capped by the page size (API_HISTORY_MAX_LIMIT points of
 * at most ENG_STREAM_MAX_COLUMNS columns), never by request data.
 */
#include "lossd/api_history.h"
#include "lossd/dynbuf.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dtoa.h"
#include "fields.h"
#include "mem.h"
#include "lossd/history.h"
#include "lossd/loss.h"
#include "render.h"
#include "stream_priv.h"

#define API_CSV "text/csv; charset=utf-8"

/* ---- a text buffer -------------------------------------------------------------- */

/* api_dynbuf_add with its common case (room allocated, under the cap, no
 * error) inlined: a 10,000-point page is some 400,000 small appends. The
 * growth, the cap and the sticky errors stay api_dynbuf_add's. */
static inline void tadd(api_dynbuf *b, const char *s, size_t n)
{
	if (!b->err && b->p && n < b->alloc - b->len && n <= b->max - b->len) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
		b->p[b->len] = '\0';
		return;
	}
	api_dynbuf_add(b, s, n);
}

/* A string literal, its length known at compile time. */
#define TLIT(b, lit) tadd((b), "" lit, sizeof(lit) - 1)

/* An integer in decimal: the pages' most common text, so not printf. */
static void tint(api_dynbuf *b, int64_t v)
{
	char tmp[24], *p = tmp + sizeof tmp;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	tadd(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* A double, or `null_text` when it is not finite. */
static void tnum(api_dynbuf *b, double d, const char *null_text)
{
	char num[API__DTOA_MAX];
	if (!isfinite(d)) {
		api_dynbuf_adds(b, null_text);
		return;
	}
	tadd(b, num, api__dtoa(num, d));
}

static void tjson_str(api_dynbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	api_dynbuf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char e[2] = {'\\', (char)*p};
			api_dynbuf_add(b, e, 2);
		} else if (*p < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
			api_dynbuf_add(b, e, 6);
		} else {
			api_dynbuf_add(b, (const char *)p, 1);
		}
	}
	api_dynbuf_add(b, "\"", 1);
}

static void tcsv_str(api_dynbuf *b, const char *s)
{
	if (!strpbrk(s, ",\"\r\n")) {
		api_dynbuf_adds(b, s);
		return;
	}
	api_dynbuf_add(b, "\"", 1);
	for (const char *p = s; *p; p++) {
		if (*p == '"')
			api_dynbuf_add(b, "\"\"", 2);
		else
			api_dynbuf_add(b, p, 1);
	}
	api_dynbuf_add(b, "\"", 1);
}

static int finish(api_reply *out, api_dynbuf *b, const char *ctype)
{
	char *body = api_dynbuf_take(b, &out->len);
	if (!body) {
		api_dynbuf_free(b);
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		return -1;
	}
	out->status = 200;
	out->content_type = ctype;
	out->body = body;
	return 0;
}

/* ---- cursors -------------------------------------------------------------------- */

static bool parse_i64(const char *s, const char **end, int64_t *v)
{
	int64_t x = 0;
	const char *p = s;
	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (x > (INT64_MAX - (*p - '0')) / 10)
			return false;
		x = x * 10 + (*p - '0');
	}
	*end = p;
	*v = x;
	return true;
}

int api_history_cursor_parse(api_history_query *q, const char *cursor, api_problem *p)
{
	const char *e = cursor;
	int64_t a = -1, n = -1;
	bool ok = false;
	if (!q->checkpoints && cursor[0] == 's')
		ok = parse_i64(cursor + 1, &e, &a) && *e == '\0';
	else if (q->checkpoints && cursor[0] == 'c')
		ok = parse_i64(cursor + 1, &e, &a) && *e == '.' && parse_i64(e + 1, &e, &n) &&
		     *e == '\0';
	if (!ok)
		return api_problem_set(p, 422, "bad_cursor", "/after",
		                       "after must be a cursor from a previous page's \"next\" "
		                       "of the same series");
	q->has_after = true;
	q->after_step = a;
	q->after_n = n;
	return 0;
}

/* ---- steps ---------------------------------------------------------------------- */

typedef struct derived {
	double loss, accuracy;
	const char *loss_why, *acc_why; /* reasons when null */
} derived;

static void derive(derived *d, const api_stream_spec *s, const eng_history_point *pt)
{
	const eng_stream_config *c = api_stream_spec_engine(s);
	d->loss = d->accuracy = NAN;
	d->loss_why = d->acc_why = NULL;
	if (!c->has_loss) {
		d->loss_why = d->acc_why = "the stream keeps no loss";
		return;
	}
	eng_loss_result r;
	memset(&r, 0, sizeof r);
	r.kind = c->loss_kind;
	r.wloss_sum = pt->loss_sum;
	r.weight_sum = pt->weight_sum;
	r.count = pt->positions;
	r.correct = pt->correct;
	if (!eng_loss_result_value(&r, api__stream_reduction(s), &d->loss) || !isfinite(d->loss)) {
		d->loss = NAN;
		d->loss_why = pt->positions ? "the weights of this point sum to 0"
		                            : "no position counted at this point";
	}
	if (!(eng_loss_is_categorical(c->loss_kind) || eng_loss_is_binary(c->loss_kind)))
		d->acc_why = "this loss has no accuracy";
	else if (!pt->positions)
		d->acc_why = "no position counted at this point";
	else
		d->accuracy = (double)pt->correct / (double)pt->positions;
}

/* The section 9 metrics a page shows, and a point's values of them. */
typedef struct metrics {
	const eng_extra_opts *xo; /* the stream's top_k / calibration, or NULL */
	bool ppl_plain;           /* perplexity from the loss sums */
	bool series_has;          /* the points keep the sums (else all null) */
	eng_extra_result *x;      /* the current point's sums (new) */
	/* per point */
	double ppl, top[ENG_EXTRA_MAX_TOPK];
	eng_calib_summary cal;
	bool has_cal;
	const char *why; /* why the metrics are null, or NULL */
} metrics;

static bool same_opts(const eng_extra_opts *a, const eng_extra_opts *b)
{
	if (a->ntop != b->ntop || a->bins != b->bins || a->perplexity != b->perplexity)
		return false;
	return memcmp(a->top_k, b->top_k, (size_t)a->ntop * sizeof a->top_k[0]) == 0;
}

/* Sets m up for stream s, series st (NULL: the columns only); -1 when out
 * of memory. */
static int metrics_init(metrics *m, const api_stream_spec *s, const eng_stream *st)
{
	const eng_loss_opts *lo = &s->lopts;
	memset(m, 0, sizeof *m);
	if (!api_stream_spec_engine(s)->has_loss)
		return 0;
	if (lo->extra) {
		m->xo = lo->extra;
		const eng_extra_opts *ho = st ? eng_stream_history_extra_opts(st) : NULL;
		m->series_has = ho && same_opts(ho, lo->extra);
		if (m->series_has && !(m->x = eng_extra_result_new(ho)))
			return -1;
	} else {
		m->ppl_plain =
		        (lo->kind == ENG_LOSS_SPARSE_CE || lo->kind == ENG_LOSS_CATEGORICAL_CE) &&
		        !lo->class_weight && !lo->cost_matrix && lo->label_smoothing == 0;
	}
	return 0;
}

static bool metrics_any(const metrics *m)
{
	return m->ppl_plain || (m->xo && (m->xo->perplexity || m->xo->ntop || m->xo->bins));
}

static void metrics_point(metrics *m, const eng_stream *st, size_t i, const eng_history_point *pt)
{
	m->ppl = NAN;
	m->has_cal = false;
	m->why = NULL;
	if (m->ppl_plain) {
		if (pt->positions > 0 && pt->weight_sum > 0)
			m->ppl = exp(pt->loss_sum / pt->weight_sum);
		else
			m->why = "no position counted at this point";
		return;
	}
	if (!m->xo)
		return;
	for (int k = 0; k < m->xo->ntop; k++)
		m->top[k] = NAN;
	if (!m->series_has) {
		m->why = "not measured at this point (kept from before points held it)";
		return;
	}
	eng_stream_history_extra(m->x, st, i);
	if (m->xo->perplexity && !eng_extra_perplexity(m->x, &m->ppl))
		m->ppl = NAN;
	for (int k = 0; k < m->xo->ntop; k++)
		if (!eng_extra_top_k(m->x, k, &m->top[k]))
			m->top[k] = NAN;
	if (m->xo->bins)
		m->has_cal = eng_calib_summarize(&m->cal, m->x);
	if ((m->xo->ntop && !m->x->top_count) || (m->xo->bins && !m->x->calib_count) ||
	    (m->xo->perplexity && !m->x->nll_count))
		m->why = pt->positions
		                 ? "not measured at this point (kept from before points held it)"
		                 : "no position counted at this point";
}

static void metrics_json(api_dynbuf *b, const metrics *m)
{
	if (m->ppl_plain || (m->xo && m->xo->perplexity)) {
		TLIT(b, ",\"perplexity\":");
		tnum(b, m->ppl, "null");
	}
	if (!m->xo)
		return;
	if (m->xo->ntop) {
		TLIT(b, ",\"top_k_accuracy\":{");
		for (int k = 0; k < m->xo->ntop; k++) {
			tadd(b, k ? ",\"" : "\"", k ? 2 : 1);
			tint(b, m->xo->top_k[k]);
			TLIT(b, "\":");
			tnum(b, m->top[k], "null");
		}
		TLIT(b, "}");
	}
	if (m->xo->bins) {
		double nan = NAN;
		TLIT(b, ",\"calibration\":{\"ece\":");
		tnum(b, m->has_cal ? m->cal.ece : nan, "null");
		TLIT(b, ",\"mce\":");
		tnum(b, m->has_cal ? m->cal.mce : nan, "null");
		TLIT(b, ",\"rmsce\":");
		tnum(b, m->has_cal ? m->cal.rmsce : nan, "null");
		TLIT(b, ",\"brier\":");
		tnum(b, m->has_cal ? m->cal.brier : nan, "null");
		TLIT(b, "}");
	}
}

static void metrics_csv_header(api_dynbuf *b, const metrics *m)
{
	if (m->ppl_plain || (m->xo && m->xo->perplexity))
		TLIT(b, ",perplexity");
	for (int k = 0; m->xo && k < m->xo->ntop; k++)
		api_dynbuf_printf(b, ",top_k_%" PRId64, m->xo->top_k[k]);
	if (m->xo && m->xo->bins)
		TLIT(b, ",ece,mce,rmsce,brier");
}

static void metrics_csv(api_dynbuf *b, const metrics *m)
{
	if (m->ppl_plain || (m->xo && m->xo->perplexity)) {
		TLIT(b, ",");
		tnum(b, m->ppl, "");
	}
	for (int k = 0; m->xo && k < m->xo->ntop; k++) {
		TLIT(b, ",");
		tnum(b, m->top[k], "");
	}
	if (m->xo && m->xo->bins) {
		const double v[4] = {m->cal.ece, m->cal.mce, m->cal.rmsce, m->cal.brier};
		for (int k = 0; k < 4; k++) {
			TLIT(b, ",");
			tnum(b, m->has_cal ? v[k] : NAN, "");
		}
	}
}

static void step_json(api_dynbuf *b, const api_stream_spec *s, const eng_history_point *pt,
                      int64_t C, const metrics *m)
{
	derived d;
	derive(&d, s, pt);
	int64_t pos = 0;
	for (int64_t k = 0; k < C; k++)
		pos += pt->positives[k];
	/* binary: negatives = rows - positives; classes: every row is positive
	 * for exactly one class (ids) or counted per label (multi-label) */
	int64_t neg = C * pt->count - pos;
	TLIT(b, "{\"step\":");
	tint(b, pt->step);
	TLIT(b, ",\"step_end\":");
	tint(b, pt->step_end);
	TLIT(b, ",\"updates\":");
	tint(b, pt->updates);
	TLIT(b, ",\"count\":");
	tint(b, pt->count);
	TLIT(b, ",\"positives\":");
	tint(b, pos);
	TLIT(b, ",\"negatives\":");
	tint(b, neg);
	TLIT(b, ",\"positions\":");
	tint(b, pt->positions);
	TLIT(b, ",\"correct\":");
	tint(b, pt->correct);
	TLIT(b, ",\"weight_sum\":");
	tnum(b, pt->weight_sum, "0");
	TLIT(b, ",\"loss_sum\":");
	tnum(b, pt->loss_sum, "0");
	TLIT(b, ",\"loss\":");
	tnum(b, d.loss, "null");
	TLIT(b, ",\"accuracy\":");
	tnum(b, d.accuracy, "null");
	metrics_json(b, m);
	if (d.loss_why || d.acc_why || m->why) {
		const char *sep = "";
		TLIT(b, ",\"null_reasons\":{");
		if (d.loss_why) {
			TLIT(b, "\"loss\":");
			tjson_str(b, d.loss_why);
			sep = ",";
		}
		if (d.acc_why) {
			api_dynbuf_printf(b, "%s\"accuracy\":", sep);
			tjson_str(b, d.acc_why);
			sep = ",";
		}
		if (m->why) {
			api_dynbuf_printf(b, "%s\"metrics\":", sep);
			tjson_str(b, m->why);
		}
		TLIT(b, "}");
	}
	if (C > 1) {
		TLIT(b, ",\"per_class\":[");
		for (int64_t k = 0; k < C; k++) {
			if (k)
				TLIT(b, ",");
			TLIT(b, "{\"class\":");
			tint(b, k);
			TLIT(b, ",\"positives\":");
			tint(b, pt->positives[k]);
			TLIT(b, ",\"negatives\":");
			tint(b, pt->count - pt->positives[k]);
			TLIT(b, "}");
		}
		TLIT(b, "]");
	}
	TLIT(b, "}");
}

static void step_csv_header(api_dynbuf *b, int64_t C, const metrics *m)
{
	api_dynbuf_adds(
	        b, "step,step_end,updates,count,positives,negatives,positions,correct,weight_sum,"
	           "loss_sum,loss,accuracy");
	metrics_csv_header(b, m);
	for (int64_t k = 0; C > 1 && k < C; k++)
		api_dynbuf_printf(b, ",positives_class_%" PRId64 ",negatives_class_%" PRId64, k, k);
	TLIT(b, "\r\n");
}

static void step_csv(api_dynbuf *b, const api_stream_spec *s, const eng_history_point *pt,
                     int64_t C, const metrics *m)
{
	derived d;
	derive(&d, s, pt);
	int64_t pos = 0;
	for (int64_t k = 0; k < C; k++)
		pos += pt->positives[k];
	const int64_t ints[8] = {pt->step, pt->step_end,        pt->updates,   pt->count,
	                         pos,      C * pt->count - pos, pt->positions, pt->correct};
	for (int k = 0; k < 8; k++) {
		tint(b, ints[k]);
		TLIT(b, ",");
	}
	tnum(b, pt->weight_sum, "");
	TLIT(b, ",");
	tnum(b, pt->loss_sum, "");
	TLIT(b, ",");
	tnum(b, d.loss, "");
	TLIT(b, ",");
	tnum(b, d.accuracy, "");
	metrics_csv(b, m);
	for (int64_t k = 0; C > 1 && k < C; k++) {
		TLIT(b, ",");
		tint(b, pt->positives[k]);
		TLIT(b, ",");
		tint(b, pt->count - pt->positives[k]);
	}
	TLIT(b, "\r\n");
}

int api_history_steps(api_reply *out, char *next, const api_stream_spec *s, const eng_stream *st,
                      const api_history_query *q)
{
	api_dynbuf b;
	api_dynbuf_init(&b, API__REPLY_MAX);
	int64_t C = api_stream_spec_engine(s)->columns;
	int64_t from = q->from;
	if (q->has_after && q->after_step >= from)
		from = q->after_step == INT64_MAX ? INT64_MAX : q->after_step + 1;
	bool done = q->has_after && q->after_step == INT64_MAX;
	size_t n = eng_stream_history_size(st);
	size_t i = done ? n : eng_stream_history_find(st, from);
	int64_t shown = 0;
	eng_history_point pt;
	metrics m;

	next[0] = '\0';
	if (metrics_init(&m, s, st)) {
		api_reply_error(out, 503, "out_of_memory", "out of memory");
		return -1;
	}
	if (q->csv)
		step_csv_header(&b, C, &m);
	else
		TLIT(&b, "{\"steps\":[");
	for (; i < n; i++) {
		eng_stream_history_get(&pt, st, i);
		if (pt.step > q->to)
			break;
		if (shown == q->limit) {
			snprintf(next, API_HISTORY_CURSOR_MAX, "s%" PRId64, pt.step - 1);
			break;
		}
		if (metrics_any(&m))
			metrics_point(&m, st, i, &pt);
		if (q->csv) {
			step_csv(&b, s, &pt, C, &m);
		} else {
			if (shown)
				TLIT(&b, ",");
			step_json(&b, s, &pt, C, &m);
		}
		shown++;
	}
	if (next[0] && shown) {
		/* the cursor names the last point shown: the next page starts
		 * after it (points never straddle it: ranges are disjoint) */
		eng_stream_history_get(&pt, st, i - 1);
		snprintf(next, API_HISTORY_CURSOR_MAX, "s%" PRId64, pt.step_end);
	}
	if (!q->csv) {
		TLIT(&b, "],\"next\":");
		if (next[0])
			tjson_str(&b, next);
		else
			TLIT(&b, "null");
		TLIT(&b, "}");
	}
	eng_extra_result_free(m.x);
	return finish(out, &b, q->csv ? API_CSV : API_JSON);
}

/* ---- checkpoints ---------------------------------------------------------------- */

static void csv_cell(api_dynbuf *b, json_t *v)
{
	char num[API__DTOA_MAX];
	if (json_is_integer(v))
		api_dynbuf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		api_dynbuf_adds(b, (api__dtoa(num, json_real_value(v)), num));
	else if (json_is_string(v))
		tcsv_str(b, json_string_value(v));
	else if (json_is_true(v))
		TLIT(b, "true");
	else if (json_is_false(v))
		TLIT(b, "false");
}

static const char *const ckpt_cols[] = {"n",         "step",        "label",    "time",
                                        "auc",       "error_bound", "count",    "positives",
                                        "negatives", "loss",        "accuracy", NULL};

int api_history_checkpoints(api_reply *out, const api_stream_spec *s, const char *const *texts,
                            size_t n, const char *next, bool csv)
{
	api_dynbuf b;
	api_dynbuf_init(&b, API__REPLY_MAX);
	int64_t C = api_stream_spec_engine(s)->columns;
	if (!csv) {
		TLIT(&b, "{\"checkpoints\":[");
		for (size_t i = 0; i < n; i++) {
			if (i)
				TLIT(&b, ",");
			api_dynbuf_adds(&b, texts[i]);
		}
		TLIT(&b, "],\"next\":");
		if (next && next[0])
			tjson_str(&b, next);
		else
			TLIT(&b, "null");
		TLIT(&b, "}");
		return finish(out, &b, API_JSON);
	}
	for (size_t k = 0; ckpt_cols[k]; k++)
		api_dynbuf_printf(&b, "%s%s", k ? "," : "", ckpt_cols[k]);
	metrics m;
	metrics_init(&m, s, NULL); /* no series: allocates nothing */
	metrics_csv_header(&b, &m);
	for (int64_t k = 0; C > 1 && k < C; k++)
		api_dynbuf_printf(&b, ",auc_class_%" PRId64 ",loss_mean_class_%" PRId64, k, k);
	TLIT(&b, "\r\n");
	for (size_t i = 0; i < n; i++) {
		json_t *o = api__json_loads(texts[i], 0, NULL);
		if (!o) { /* as finish() answers a failed buffer */
			api_dynbuf_free(&b);
			api_reply_error(out, 503, "out_of_memory", "out of memory");
			return -1;
		}
		for (size_t k = 0; ckpt_cols[k]; k++) {
			if (k)
				TLIT(&b, ",");
			csv_cell(&b, json_object_get(o, ckpt_cols[k]));
		}
		if (m.ppl_plain || (m.xo && m.xo->perplexity)) {
			TLIT(&b, ",");
			csv_cell(&b, json_object_get(o, "perplexity"));
		}
		json_t *tk = json_object_get(o, "top_k_accuracy");
		for (int k = 0; m.xo && k < m.xo->ntop; k++) {
			char key[24];
			snprintf(key, sizeof key, "%" PRId64, m.xo->top_k[k]);
			TLIT(&b, ",");
			csv_cell(&b, json_object_get(tk, key));
		}
		json_t *cal = json_object_get(o, "calibration");
		static const char *const cal_keys[] = {"ece", "mce", "rmsce", "brier"};
		for (int k = 0; m.xo && m.xo->bins && k < 4; k++) {
			TLIT(&b, ",");
			csv_cell(&b, json_object_get(cal, cal_keys[k]));
		}
		json_t *pc = json_object_get(o, "per_class");
		for (int64_t k = 0; C > 1 && k < C; k++) {
			json_t *row = json_array_get(pc, (size_t)k);
			TLIT(&b, ",");
			csv_cell(&b, json_object_get(row, "auc"));
			TLIT(&b, ",");
			csv_cell(&b, json_object_get(row, "loss_mean"));
		}
		TLIT(&b, "\r\n");
		json_decref(o);
	}
	return finish(out, &b, API_CSV);
}

static const char *const ckpt_fields[] = {"step", "label", "reset", "batch_id", NULL};

void api_history_ckpt_req_clear(api_history_ckpt_req *r)
{
	free(r->label);
	free(r->batch_id);
	r->label = r->batch_id = NULL;
}

int api_history_parse_checkpoint(api_history_ckpt_req *out, const api_ctx *ctx, const char *body,
                                 size_t len, api_problem *p)
{
	const char *label = NULL;
	int rc = -1;
	memset(out, 0, sizeof(*out));
	json_t *obj = api_parse_body(ctx, body, len, p);
	if (!obj)
		return -1;
	if (api__check_fields(obj, ckpt_fields, "", p) || api__require(obj, "", "step", p) ||
	    api__get_int(&out->step, obj, "", "step", 0, 0, INT64_MAX, p) ||
	    api__get_bool(&out->reset, obj, "", "reset", false, p))
		goto out;
	json_t *l = api__field(obj, "label");
	if (l && !json_is_null(l)) {
		if (!json_is_string(l)) {
			api_problem_set(p, 422, "bad_type", "/label",
			                "label must be a string, got %s", api__type_name(l));
			goto out;
		}
		label = json_string_value(l);
		if (json_string_length(l) > 256 || strlen(label) != json_string_length(l)) {
			api_problem_set(p, 422, "bad_option", "/label",
			                "label must be at most 256 characters without NUL");
			goto out;
		}
		if (!(out->label = strdup(label)))
			goto oom;
	}
	json_t *bid = api__field(obj, "batch_id");
	if (bid) {
		char tmp[32];
		const char *v = tmp;
		if (json_is_string(bid))
			v = json_string_value(bid);
		else if (json_is_integer(bid))
			snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(bid));
		else {
			api_problem_set(p, 422, "bad_type", "/batch_id",
			                "batch_id must be a string or an integer, got %s",
			                api__type_name(bid));
			goto out;
		}
		size_t n = strlen(v);
		if (n < 1 || n > 256 || (json_is_string(bid) && n != json_string_length(bid))) {
			api_problem_set(p, 422, "bad_option", "/batch_id",
			                "batch_id must be 1 to 256 characters without NUL");
			goto out;
		}
		if (!(out->batch_id = strdup(v)))
			goto oom;
	}
	rc = 0;
	goto out;
oom:
	api_problem_set(p, 503, "out_of_memory", "", "out of memory");
out:
	if (rc)
		api_history_ckpt_req_clear(out);
	json_decref(obj);
	return rc;
}

/* Copies key of src into dst (null when absent). */
static int copy_key(json_t *dst, const char *dkey, json_t *src, const char *skey)
{
	json_t *v = src ? json_object_get(src, skey) : NULL;
	return json_object_set(dst, dkey, v ? v : json_null());
}

char *api_history_checkpoint_record(const api_stream_spec *s, const char *id, const eng_stream *st,
                                    int64_t n, int64_t step, const char *label, const char *time,
                                    api_problem *p)
{
	json_t *r = api_stream_render_read(s, id, st, NULL, p), *o = NULL;
	char *text = NULL;
	int bad = 0;
	if (!r)
		return NULL;
	json_t *ld = json_object_get(r, "loss_detail");
	if (!(o = json_object()))
		goto nomem;
	bad |= json_object_set_new(o, "n", json_integer(n));
	bad |= json_object_set_new(o, "step", json_integer(step));
	bad |= json_object_set_new(o, "label", label ? json_string(label) : json_null());
	bad |= json_object_set_new(o, "time", json_string(time));
	bad |= copy_key(o, "auc", r, "auc");
	bad |= copy_key(o, "error_bound", r, "error_bound");
	bad |= copy_key(o, "count", r, "count");
	bad |= copy_key(o, "positives", r, "positives");
	bad |= copy_key(o, "negatives", r, "negatives");
	bad |= copy_key(o, "loss", r, "loss");
	bad |= copy_key(o, "accuracy", ld, "accuracy");
	/* section 9's metrics where the reading has them (bins included) */
	static const char *const extra_keys[] = {"perplexity", "top_k_accuracy", "calibration"};
	for (size_t k = 0; k < 3; k++)
		if (json_object_get(r, extra_keys[k]))
			bad |= copy_key(o, extra_keys[k], r, extra_keys[k]);
	int64_t C = api_stream_spec_engine(s)->columns;
	if (C > 1) {
		json_t *pc = json_object_get(r, "per_class"),
		       *lpc = json_object_get(ld, "per_class");
		json_t *a = json_array();
		for (int64_t k = 0; a && k < C; k++) {
			json_t *row = json_object(), *src = json_array_get(pc, (size_t)k);
			json_t *lrow = json_array_get(lpc, (size_t)k);
			if (!row) {
				bad = 1;
				break;
			}
			bad |= json_object_set_new(row, "class", json_integer(k));
			bad |= copy_key(row, "auc", src, "auc");
			bad |= copy_key(row, "positives", src, "positives");
			bad |= copy_key(row, "negatives", src, "negatives");
			bad |= copy_key(row, "loss_mean", lrow, "loss_mean");
			bad |= json_array_append_new(a, row);
		}
		bad |= json_object_set_new(o, "per_class", a);
	}
	json_t *w = json_object_get(r, "warnings");
	if (w)
		bad |= json_object_set(o, "warnings", w);
	if (bad)
		goto nomem;
	api_reply tmp = {0};
	api_reply_json(&tmp, 200, o); /* steals o: the reply layer's number format */
	o = NULL;
	if (tmp.status == 200 && tmp.body)
		text = tmp.body;
	else {
		api_reply_free(&tmp);
		goto nomem;
	}
	json_decref(r);
	return text;
nomem:
	json_decref(o);
	json_decref(r);
	api_problem_set(p, 503, "out_of_memory", "", "out of memory");
	return NULL;
}
