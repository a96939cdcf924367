/*
 * auc.c - POST /v1/auc (docs/API.md section 3): request fields -> one binary
 * problem per column -> the engine's exact, binned or sketch AUC -> reply.
 *
 * Why shaped so: the engine owns every formula and every check of values
 * (labels, weights, NaN scores, shapes that do not fit); this file decides
 * which columns there are and how they are averaged, which is request
 * semantics:
 *   y_score (N)                         one column, y_true (N) of 0/1
 *   y_score (N, C) + positive_class k   one column (k), y_true (N) of 0/1
 *   y_score (N, 1), y_true (N)          one column, y_true of 0/1 (Keras' shape)
 *   y_score (N, C), y_true (N)          C columns, one-vs-rest on class ids
 *   y_score (N, C), y_true (N, C)       C columns, multi-label
 * from_logits: binned AUC (thresholds are probabilities) sees a sigmoid per
 * element, or a softmax across classes for one-vs-rest; exact and sketch AUC
 * rank by the logits themselves, or by the log-softmax for one-vs-rest
 * (eng_auc_logit_keys: distinct logits stay distinct where a double sigmoid
 * would round both to 1.0), and their curve thresholds are turned back into
 * probabilities. One-vs-rest is the only case where from_logits changes an
 * exact AUC.
 * Averages: macro and weighted over the columns whose AUC is defined
 * (weighted by sample-weighted positives), micro = every column flattened
 * into one problem, none = null with the values in per_class.
 *
 * Reply keys: auc, positives, negatives (unweighted; summed over columns
 * when several), per_class [{class, auc, positives, negatives,
 * error_bound?, curve?}] when several columns, error_bound (sketch),
 * curve (return_curve: of the single column, or of the micro problem),
 * warnings (a column with one class, a NaN under nan_policy propagate:
 * then that column's auc and counts are null). Undefined values are null,
 * never NaN.
 *
 * It keeps no state and does not touch the numbers beyond averaging.
 */
#include "lossd/api.h"
#include "lossd/auc.h"
#include "lossd/aucci.h"
#include "lossd/binned.h"
#include "lossd/sketch.h"
#include "lossd/stream.h"
#include "fields.h"
#include "packed.h"
#include "render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const auc_fields[] = {
        "y_true",      "y_score",        "positive_class",   "curve",
        "method",      "num_thresholds", "summation_method", "average",
        "from_logits", "sample_weight",  "max_fpr",          "return_curve",
        "max_points",  "sketch_bytes",   "nan_policy",       "ci",
        NULL,
};

/* the stream's methods, with the same names (render.h) */
enum { M_EXACT = ENG_STREAM_EXACT, M_BINNED = ENG_STREAM_BINNED, M_SKETCH = ENG_STREAM_SKETCH };
static const char *const nan_names[] = {"raise", "propagate", NULL};

#define MAX_POINTS_LIMIT   100000
#define SKETCH_BYTES_LIMIT ((int64_t)64 << 20)

typedef struct auc_req {
	int curve, method, summation, average, nan_policy;
	bool from_logits, return_curve, has_max_fpr, has_pc, has_ci;
	int64_t num_thresholds, max_points, sketch_bytes, positive_class;
	double max_fpr;
	double ci; /* level in (0, 1) when has_ci */
} auc_req;

/* One column's outcome. */
typedef struct column {
	eng_auc_result r;
	eng_auc_curve curve;
	bool nan;  /* a NaN score under nan_policy propagate */
	double se; /* ci: standard error (DeLong or Hanley-McNeil), NaN if none */
} column;

/* ---- rendering ------------------------------------------------------------------ */

static json_t *curve_json(const column *c)
{
	if (!c->r.defined || c->nan)
		return json_null();
	return api__curve_json(&c->curve);
}

/* A count, or null when a NaN stopped the column before it was counted. */
static json_t *count(int64_t v, bool unknown)
{
	return unknown ? json_null() : json_integer(v);
}

/* A column's ci, or null when its AUC or standard error is undefined. */
static json_t *ci_json(const column *c, const auc_req *q)
{
	if (!c->r.defined || c->nan)
		return json_null();
	return api__auc_ci_json(q->ci, q->method == M_EXACT, c->r.auc, c->se,
	                        q->method == M_SKETCH ? c->r.error_bound : 0.0);
}

static json_t *auc_json(const column *c)
{
	return c->r.defined && !c->nan ? api__num(c->r.auc) : json_null();
}

/* Adds a warning for column c (class < 0: the only column; -2: micro). */
static int warn(json_t *warnings, const column *c, int64_t cls)
{
	char buf[200], who[64];
	if (cls == -1)
		snprintf(who, sizeof who, "y_true");
	else if (cls == -2)
		snprintf(who, sizeof who, "the micro-averaged (flattened) columns");
	else
		snprintf(who, sizeof who, "class %lld", (long long)cls);
	if (c->nan)
		snprintf(buf, sizeof buf, "%s: y_score holds NaN, so its AUC is null", who);
	else if (!c->r.defined)
		snprintf(buf, sizeof buf,
		         "%s: AUC needs both classes but there are %lld positives and %lld "
		         "negatives (or one class weighs 0), so it is undefined (null)",
		         who, (long long)c->r.positives, (long long)c->r.negatives);
	else
		return 0;
	return json_array_append_new(warnings, json_string(buf));
}

/* ---- computing one column --------------------------------------------------------- */

static int run_column(column *c, const eng_auc_data *d, int64_t col, const auc_req *q,
                      bool with_fpr, eng_error *err)
{
	eng_auc_curve *cv = q->return_curve ? &c->curve : NULL;
	int rc;
	memset(c, 0, sizeof(*c));
	c->r.auc = NAN;
	if (q->method == M_EXACT) {
		eng_auc_opts o = ENG_AUC_OPTS_INIT;
		o.curve = (eng_curve)q->curve;
		o.max_fpr = with_fpr && q->has_max_fpr ? q->max_fpr : 0.0;
		o.max_points = q->max_points;
		rc = eng_auc_exact(&c->r, cv, d, col, &o, err);
	} else if (q->method == M_BINNED) {
		rc = eng_auc_binned(&c->r, cv, d, col, q->num_thresholds, (eng_curve)q->curve,
		                    (eng_summation)q->summation, q->max_points, err);
	} else {
		rc = eng_auc_sketch(&c->r, cv, d, col, (size_t)q->sketch_bytes, (eng_curve)q->curve,
		                    q->max_points, err);
	}
	if (!rc && cv && q->from_logits && q->method != M_BINNED)
		eng_auc_curve_key_probs(cv, d->kind == ENG_LABELS_CLASS_ID); /* thresholds */
	if (rc == ENG_ENONFINITE && q->nan_policy == 1) {
		/* propagate: the column's AUC (and its counts, not read) are null */
		c->nan = true;
		eng_auc_curve_free(&c->curve);
		return 0;
	}
	c->se = NAN;
	if (rc || !q->has_ci || col == ENG_AUC_ALL || !c->r.defined)
		return rc;
	if (q->method == M_EXACT) {
		/* the same scores, so the same ranking as the area just computed */
		double a;
		return eng_auc_delong(&a, &c->se, d, col, err);
	}
	c->se = eng_auc_se_hanley_mcneil(c->r.auc, (double)c->r.positives, (double)c->r.negatives);
	return 0;
}

/* ---- the request ---------------------------------------------------------------------- */

static int read_options(auc_req *q, const json_t *req, api_problem *p)
{
	double fpr = 0.0;
	if (api__check_fields(req, auc_fields, "", p) || api__require(req, "", "y_true", p) ||
	    api__require(req, "", "y_score", p) ||
	    api__get_enum(&q->curve, req, "", "curve", api__curve_names, 0, p) ||
	    api__get_enum(&q->method, req, "", "method", api__method_names, M_EXACT, p) ||
	    api__get_int(&q->num_thresholds, req, "", "num_thresholds", 200, 2,
	                 ENG_BINNED_MAX_THRESHOLDS, p) ||
	    api__get_enum(&q->summation, req, "", "summation_method", api__summation_names, 0, p) ||
	    api__get_enum(&q->average, req, "", "average", api__average_names, API_AVG_MACRO, p) ||
	    api__get_bool(&q->from_logits, req, "", "from_logits", false, p) ||
	    api__get_bool(&q->return_curve, req, "", "return_curve", false, p) ||
	    api__get_int(&q->max_points, req, "", "max_points", ENG_AUC_DEFAULT_MAX_POINTS, 2,
	                 MAX_POINTS_LIMIT, p) ||
	    api__get_int(&q->sketch_bytes, req, "", "sketch_bytes", (int64_t)ENG_SKETCH_DEFAULT_CAP,
	                 (int64_t)ENG_SKETCH_MIN_CAP, SKETCH_BYTES_LIMIT, p) ||
	    api__get_enum(&q->nan_policy, req, "", "nan_policy", nan_names, 0, p) ||
	    api__get_int(&q->positive_class, req, "", "positive_class", 0, 0, INT64_MAX, p) ||
	    api__get_number(&fpr, req, "", "max_fpr", 0.0, 0.0, 1.0, p))
		return -1;
	q->has_pc = api__field(req, "positive_class") != NULL;
	q->has_ci = api__field(req, "ci") != NULL;
	if (q->has_ci) {
		if (api__get_number(&q->ci, req, "", "ci", 0.95, 0.0, 1.0, p))
			return -1;
		if (!(q->ci > 0.0 && q->ci < 1.0))
			return api_problem_set(p, 422, "bad_option", "/ci",
			                       "ci is a confidence level in (0, 1), got %g", q->ci);
		if (q->curve != 0)
			return api_problem_set(p, 422, "bad_option", "/ci",
			                       "ci is for the ROC AUC, not \"pr\"");
		if (api__field(req, "max_fpr"))
			return api_problem_set(p, 422, "bad_option", "/ci",
			                       "ci is for the full ROC AUC, not with max_fpr");
		if (api__field(req, "sample_weight"))
			return api_problem_set(
			        p, 422, "bad_option", "/ci",
			        "ci does not take sample weights (DeLong's and Hanley-McNeil's "
			        "intervals are for unweighted AUCs)");
	}
	q->has_max_fpr = api__field(req, "max_fpr") != NULL;
	q->max_fpr = fpr;
	if (q->has_max_fpr) {
		if (!(fpr > 0.0))
			return api_problem_set(p, 422, "bad_option", "/max_fpr",
			                       "max_fpr must be in (0, 1], got %g", fpr);
		if (q->curve != 0)
			return api_problem_set(p, 422, "bad_option", "/max_fpr",
			                       "max_fpr is for the ROC curve, not \"pr\"");
		if (q->method != M_EXACT)
			return api_problem_set(p, 422, "bad_option", "/max_fpr",
			                       "max_fpr needs method \"exact\", not \"%s\"",
			                       api__method_names[q->method]);
	}
	return 0;
}

/* Works out the label kind and columns; 0 or -1 with *p. */
static int layout(eng_auc_data *d, int64_t *ncols, int64_t *col0, const auc_req *q, api_problem *p)
{
	const eng_tensor *s = d->score, *l = d->label;
	if (s->ndim != 1 && s->ndim != 2)
		return api_problem_set(p, 422, "shape_mismatch", "/y_score",
		                       "y_score must have shape (N) or (N, C), got rank %d",
		                       s->ndim);
	if (l->ndim != 1 && l->ndim != 2)
		return api_problem_set(p, 422, "shape_mismatch", "/y_true",
		                       "y_true must have shape (N) or (N, C), got rank %d",
		                       l->ndim);
	if (l->shape[0] != s->shape[0])
		return api_problem_set(p, 422, "shape_mismatch", "/y_true",
		                       "y_true has %lld rows but y_score has %lld",
		                       (long long)l->shape[0], (long long)s->shape[0]);
	*col0 = 0;
	if (s->ndim == 1) {
		d->kind = ENG_LABELS_BINARY;
		*ncols = 1;
	} else if (q->has_pc) {
		if (l->ndim != 1)
			return api_problem_set(
			        p, 422, "bad_option", "/positive_class",
			        "positive_class needs y_true of 0/1 labels, shape [%lld]",
			        (long long)s->shape[0]);
		if (q->positive_class >= s->shape[1])
			return api_problem_set(
			        p, 422, "bad_option", "/positive_class",
			        "positive_class %lld is not a column of y_score (C = %lld)",
			        (long long)q->positive_class, (long long)s->shape[1]);
		d->kind = ENG_LABELS_BINARY;
		*ncols = 1;
		*col0 = q->positive_class;
	} else if (l->ndim == 1 && s->shape[1] == 1) {
		/* (N, 1) scores with (N) labels: Keras' binary shape, 0/1 labels */
		d->kind = ENG_LABELS_BINARY;
		*ncols = 1;
	} else {
		d->kind = l->ndim == 1 ? ENG_LABELS_CLASS_ID : ENG_LABELS_MULTI;
		*ncols = s->shape[1];
	}
	if (q->has_max_fpr && *ncols != 1)
		return api_problem_set(
		        p, 422, "bad_option", "/max_fpr",
		        "max_fpr is for a binary problem (one score column), not %lld "
		        "columns",
		        (long long)*ncols);
	return 0;
}

static json_t *render(const column *cols, int64_t ncols, const column *micro, const auc_req *q)
{
	json_t *o = json_object(), *warnings = json_array();
	int bad = !o || !warnings;
	bool sketch = q->method == M_SKETCH;
	int64_t P = 0, N = 0;

	bool any_nan = false;
	for (int64_t c = 0; !bad && c < ncols; c++) {
		P += cols[c].r.positives;
		N += cols[c].r.negatives;
		any_nan |= cols[c].nan;
	}
	if (!bad && ncols == 1) {
		const column *c = &cols[0];
		bad |= json_object_set_new(o, "auc", auc_json(c));
		bad |= json_object_set_new(o, "positives", count(P, any_nan));
		bad |= json_object_set_new(o, "negatives", count(N, any_nan));
		if (sketch)
			bad |= json_object_set_new(
			        o, "error_bound",
			        c->r.defined && !c->nan ? api__num(c->r.error_bound) : json_null());
		if (q->return_curve)
			bad |= json_object_set_new(o, "curve", curve_json(c));
		if (q->has_ci)
			bad |= json_object_set_new(o, "ci", ci_json(c, q));
		bad |= warn(warnings, c, -1);
	} else if (!bad) {
		api_auc_avg acc = API_AUC_AVG_INIT(q->average);
		json_t *per = json_array();
		bad |= !per;
		for (int64_t k = 0; !bad && k < ncols; k++) {
			const column *c = &cols[k];
			bool def = c->r.defined && !c->nan;
			json_t *row = json_object();
			if (!row) {
				bad = 1;
				break;
			}
			bad |= json_object_set_new(row, "class", json_integer(k));
			bad |= json_object_set_new(row, "auc", auc_json(c));
			bad |= json_object_set_new(row, "positives", count(c->r.positives, c->nan));
			bad |= json_object_set_new(row, "negatives", count(c->r.negatives, c->nan));
			if (sketch)
				bad |= json_object_set_new(row, "error_bound",
				                           def ? api__num(c->r.error_bound)
				                               : json_null());
			if (q->return_curve)
				bad |= json_object_set_new(row, "curve", curve_json(c));
			if (q->has_ci)
				bad |= json_object_set_new(row, "ci", ci_json(c, q));
			bad |= json_array_append_new(per, row);
			bad |= warn(warnings, c, k);
			if (def)
				api__auc_avg_add(&acc, &c->r);
		}
		json_t *avg = json_null(), *bound = json_null();
		double a, b;
		if (q->average == API_AVG_MICRO) {
			avg = auc_json(micro);
			if (micro->r.defined && !micro->nan)
				bound = api__num(micro->r.error_bound);
			bad |= warn(warnings, micro, -2);
		} else if (api__auc_avg_value(&a, &b, &acc)) {
			avg = api__num(a);
			bound = api__num(b);
		}
		bad |= json_object_set_new(o, "auc", avg);
		bad |= json_object_set_new(o, "positives", count(P, any_nan));
		bad |= json_object_set_new(o, "negatives", count(N, any_nan));
		bad |= json_object_set_new(o, "per_class", per);
		if (sketch)
			bad |= json_object_set_new(o, "error_bound", bound);
		else
			json_decref(bound);
		if (q->return_curve && q->average == API_AVG_MICRO)
			bad |= json_object_set_new(o, "curve", curve_json(micro));
	}
	if (!bad && json_array_size(warnings) > 0) {
		bad |= json_object_set_new(o, "warnings", warnings);
		warnings = NULL;
	}
	json_decref(warnings);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The body is body[0, len), or sent when not NULL. */
static void auc(api_reply *out, const api_ctx *ctx, const char *body, size_t len, api_body *sent)
{
	api_ctx defaults = API_CTX_INIT;
	api_problem p = {0};
	eng_error err = {0};
	api_tensor ty = API_TENSOR_INIT, ts = API_TENSOR_INIT, tw = API_TENSOR_INIT;
	auc_req q = {0};
	column *cols = NULL, micro;
	json_t *req = NULL, *reply = NULL;
	api_packed *pk = NULL;
	double *logits = NULL;
	eng_tensor score_view;
	int64_t ncols = 0, col0 = 0, done = 0;
	bool have_micro = false;
	int rc = -1;

	memset(&micro, 0, sizeof(micro));
	if (!ctx)
		ctx = &defaults;
	int64_t budget = ctx->max_elements;
	req = sent ? api__body_parse(ctx, sent, &pk, &p)
	           : api_parse_body_packed(ctx, body, len, &pk, &p);
	if (!req)
		goto out;
	if (read_options(&q, req, &p))
		goto out;
	api_tensor_opts topts = {q.nan_policy == 1, &budget, pk, ctx->par};
	if (api__get_tensor(&ty, req, "", "y_true", true, &topts, &p) ||
	    api__get_tensor(&ts, req, "", "y_score", true, &topts, &p) ||
	    api__get_tensor(&tw, req, "", "sample_weight", false, &topts, &p))
		goto out;

	/* Keras' (N, 1) label and weight columns with (N) scores: squeeze. */
	if (ts.t.ndim == 1 && ty.t.ndim == 2 && ty.t.shape[1] == 1)
		ty.t.ndim = 1;
	if (tw.t.data && tw.t.ndim == 2 && tw.t.shape[1] == 1)
		tw.t.ndim = 1;
	eng_auc_data d = {&ts.t, &ty.t, tw.t.data ? &tw.t : NULL, ENG_LABELS_BINARY};
	if (layout(&d, &ncols, &col0, &q, &p))
		goto out;
	bool ovr = d.kind == ENG_LABELS_CLASS_ID;
	if (q.from_logits && (ovr || q.method == M_BINNED)) {
		/* binned: probabilities; exact and sketch: ranking keys (the
		 * logits themselves need no copy) */
		logits = malloc((size_t)(ts.t.size > 0 ? ts.t.size : 1) * sizeof(double));
		if (!logits) {
			api_problem_set(&p, 503, "out_of_memory", "", "out of memory");
			goto out;
		}
		if (q.method == M_BINNED)
			eng_auc_logits(logits, &ts.t, ovr);
		else
			eng_auc_logit_keys(logits, &ts.t, ovr);
		score_view = ts.t;
		score_view.dtype = ENG_F64;
		score_view.data = logits;
		d.score = &score_view;
	}
	if (eng_auc_columns(&d, &err) < 0) {
		api_problem_from_eng(&p, &err);
		goto out;
	}
	cols = calloc((size_t)ncols, sizeof(column));
	if (!cols) {
		api_problem_set(&p, 503, "out_of_memory", "", "out of memory");
		goto out;
	}
	for (done = 0; done < ncols; done++) {
		int64_t col = ncols == 1 ? col0 : done;
		if (ncols == 1 && d.kind != ENG_LABELS_BINARY)
			col = 0; /* (N, 1) scores: the one column */
		if (run_column(&cols[done], &d, col, &q, ncols == 1, &err)) {
			done++;
			api_problem_from_eng(&p, &err);
			goto out;
		}
	}
	if (ncols > 1 && q.average == API_AVG_MICRO) {
		have_micro = true;
		if (run_column(&micro, &d, ENG_AUC_ALL, &q, false, &err)) {
			api_problem_from_eng(&p, &err);
			goto out;
		}
	}
	reply = render(cols, ncols, &micro, &q);
	if (!reply) {
		api_problem_set(&p, 503, "out_of_memory", "",
		                "out of memory while building the reply");
		goto out;
	}
	rc = 0;
out:
	if (have_micro)
		eng_auc_curve_free(&micro.curve);
	for (int64_t i = 0; cols && i < done; i++)
		eng_auc_curve_free(&cols[i].curve);
	free(cols);
	free(logits);
	api_tensor_free(&tw);
	api_tensor_free(&ts);
	api_tensor_free(&ty);
	json_decref(req);
	api_packed_free(pk); /* after the tensors that may view it */
	if (rc)
		api_reply_problem(out, &p);
	else
		api_reply_json(out, 200, reply);
}

void api_auc(api_reply *out, const api_ctx *ctx, const char *body, size_t len)
{
	auc(out, ctx, body, len, NULL);
}

void api_auc_sent(api_reply *out, const api_ctx *ctx, api_body *b)
{
	auc(out, ctx, NULL, 0, b);
}
