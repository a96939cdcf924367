/*
 * loss.c - POST /v1/loss (docs/API.md section 2): request fields -> engine
 * options, eng_loss_compute(), and the reply rendered from the result's
 * sums; also the multi-head form {"heads": [...], "head_weights": [...]}.
 *
 * Why shaped so: the engine owns every formula and every check of values
 * (labels, probabilities, weights, shapes); this file only knows field
 * names, defaults, JSON types and how a reply looks. A head is a complete
 * loss request evaluated by the same function with the JSON Pointer base
 * "/heads/i", so its errors point into the head.
 *
 * Reply keys, in this order (undefined values are null, never NaN):
 *   reduction, loss (absent for "none"), count, ignored, weight_sum,
 *   accuracy (categorical and binary), per_class (if asked, categorical and
 *   binary), confusion_matrix (if asked), per_position (reduction "none").
 * One element budget (ctx->max_elements) is shared by every tensor of a
 * request, heads included.
 *
 * Fields (default): loss (required), y_true, y_pred (required tensors),
 * from_logits (false), axis (-1, an integer in [-8, 7], checked against
 * y_pred's rank by the engine), reduction ("mean"), sample_weight,
 * class_weight, cost_matrix, pos_weight, x (tensors, absent = none),
 * ignore_class / ignore_index (none; any integer; both given must agree),
 * label_smoothing (0, in [0, 1]), per_class (true), confusion_matrix
 * (false), alpha (0.25), gamma (2, >= 0), apply_class_balancing (false),
 * delta (1, > 0), error ("mae" | "mse"), nan_policy ("raise" | "propagate").
 * JSON null means "not given". An option that does not apply to the loss
 * (delta on a cross-entropy, pos_weight on a categorical loss, ...) is 422
 * bad_option rather than silently ignored.
 *
 * It does not decide anything numeric and keeps no state between calls.
 */
#include "lossd/api.h"
#include "lossd/loss.h"
#include "fields.h"
#include "mem.h"
#include "packed.h"
#include "render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const loss_fields[] = {
        "loss",
        "y_true",
        "y_pred",
        "from_logits",
        "axis",
        "reduction",
        "sample_weight",
        "class_weight",
        "cost_matrix",
        "pos_weight",
        "ignore_class",
        "ignore_index",
        "label_smoothing",
        "per_class",
        "confusion_matrix",
        "alpha",
        "gamma",
        "apply_class_balancing",
        "delta",
        "x",
        "error",
        "nan_policy",
        "top_k",
        "calibration",
        "beta",
        "log_target",
        NULL,
};

/*
 * PyTorch's names (docs/API.md section 2). Each is answered by a canonical loss
 * with PyTorch's conventions: cross_entropy and nll_loss take class axis 1
 * (0 for an unbatched 1-D input) and ignore -100 by default, cross_entropy
 * reads logits (class ids or, when y_true has y_pred's shape, probabilities),
 * nll_loss log-probabilities (normalised again, so exact log-probabilities
 * give -x[target]); bce reads probabilities and bce_with_logits logits;
 * smooth_l1 is huber with delta = beta, divided by beta; kl_div takes log q
 * as given and an unclipped p (log p with log_target). A from_logits that
 * contradicts the alias is a 422, as are beta and log_target elsewhere.
 */
enum alias { AL_NONE, AL_CE, AL_NLL, AL_BCE, AL_BCE_LOGITS, AL_MSE, AL_MAE, AL_SL1, AL_KL };
static const char *const alias_names[] = {
        "",    "cross_entropy", "nll_loss",  "bce",    "bce_with_logits",
        "mse", "mae",           "smooth_l1", "kl_div", NULL,
};
static const eng_loss_kind alias_kinds[] = {
        ENG_LOSS_SPARSE_CE, ENG_LOSS_SPARSE_CE, ENG_LOSS_SPARSE_CE,
        ENG_LOSS_BINARY_CE, ENG_LOSS_BINARY_CE, ENG_LOSS_MSE,
        ENG_LOSS_MAE,       ENG_LOSS_HUBER,     ENG_LOSS_KL,
};

static int alias_of(const json_t *obj)
{
	const char *name = json_string_value(json_object_get(obj, "loss"));
	for (int i = 1; name && alias_names[i]; i++)
		if (!strcmp(name, alias_names[i]))
			return i;
	return AL_NONE;
}

/* from_logits as the alias fixes it: a request saying otherwise is a 422. */
static int alias_logits(bool *out, const json_t *obj, const char *base, int al, bool want,
                        api_problem *p)
{
	char ptr[sizeof p->pointer];
	json_t *v = api__field(obj, "from_logits");
	*out = want;
	if (v && json_is_boolean(v) && json_is_true(v) != want)
		return api_problem_set(
		        p, 422, "bad_option", api__pointer(ptr, sizeof ptr, base, "from_logits"),
		        "%s takes %s (PyTorch's convention); from_logits cannot be %s",
		        alias_names[al], want ? "logits" : "probabilities",
		        want ? "false" : "true");
	return 0;
}

/* 422 bad_option for an alias-only option given to another loss. */
static int only_for(const json_t *obj, const char *base, const char *key, bool ok,
                    const char *which, api_problem *p)
{
	char ptr[sizeof p->pointer];
	if (ok || !api__field(obj, key))
		return 0;
	return api_problem_set(p, 422, "bad_option", api__pointer(ptr, sizeof ptr, base, key),
	                       "%s applies only to %s", key, which);
}

/* Multiplies every loss figure of r by f (smooth_l1 = huber / beta). */
static void scale_losses(eng_loss_result *r, double f)
{
	r->wloss_sum *= f;
	for (int64_t c = 0; c < r->nclasses && r->per_class; c++)
		r->per_class[c].loss_sum *= f;
	for (int64_t i = 0; r->per_position && i < r->pos_size; i++)
		r->per_position[i] *= f;
}

static const char *const calibration_fields[] = {"bins", NULL};

static const char *const head_fields[] = {"heads", "head_weights", NULL};

static const char *const error_names[] = {"mae", "mse", NULL};
static const char *const nan_names[] = {"raise", "propagate", NULL};

/* One tensor per tensor field of a request. */
enum { T_TRUE, T_PRED, T_SW, T_CW, T_COST, T_PW, T_X, T_COUNT };
static const char *const tensor_keys[T_COUNT] = {
        "y_true", "y_pred", "sample_weight", "class_weight", "cost_matrix", "pos_weight", "x",
};

/* ---- rendering ------------------------------------------------------------------ */

static json_t *ratio(int64_t a, int64_t b)
{
	return b ? json_real((double)a / (double)b) : json_null();
}

/* Nested arrays of values in shape (a plain number for rank 0). */
static json_t *nested(const double *v, int ndim, const int64_t *shape)
{
	if (ndim == 0)
		return api__num(v[0]);
	json_t *a = json_array();
	int64_t step = 1;
	for (int i = 1; i < ndim; i++)
		step *= shape[i];
	for (int64_t i = 0; a && i < shape[0]; i++) {
		if (json_array_append_new(a, nested(v + i * step, ndim - 1, shape + 1))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *calibration_json(const eng_extra_result *e)
{
	eng_calib_summary cs;
	json_t *o = json_object(), *bins = json_array();
	int bad = !o || !bins;
	eng_calib_summarize(&cs, e);
	for (int b = 0; !bad && b < e->bins; b++) {
		const eng_calib_bin *k = &e->bin[b];
		json_t *row = json_object();
		bool def = k->weight > 0;
		bad |= !row;
		bad |= json_object_set_new(row, "lo", json_real((double)b / e->bins));
		bad |= json_object_set_new(row, "hi", json_real((double)(b + 1) / e->bins));
		bad |= json_object_set_new(row, "count", json_integer(k->count));
		bad |= json_object_set_new(row, "weight", api__num(k->weight));
		bad |= json_object_set_new(row, "confidence",
		                           def ? api__num(k->conf / k->weight) : json_null());
		bad |= json_object_set_new(row, "accuracy",
		                           def ? api__num(k->acc / k->weight) : json_null());
		bad |= json_array_append_new(bins, row);
	}
	bad |= json_object_set_new(o, "ece", api__num(cs.ece));
	bad |= json_object_set_new(o, "mce", api__num(cs.mce));
	bad |= json_object_set_new(o, "rmsce", api__num(cs.rmsce));
	bad |= json_object_set_new(o, "brier", api__num(cs.brier));
	bad |= json_object_set(o, "bins", bins);
	json_decref(bins);
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* perplexity, top_k_accuracy and calibration into o; nonzero when out of memory. */
int api__render_extra(json_t *o, const eng_extra_result *e)
{
	int bad = 0;
	double v;
	if (e->perplexity)
		bad |= json_object_set_new(o, "perplexity",
		                           eng_extra_perplexity(e, &v) ? api__num(v) : json_null());
	if (e->ntop > 0) {
		json_t *t = json_object();
		char key[24];
		bad |= !t;
		for (int i = 0; t && i < e->ntop; i++) {
			snprintf(key, sizeof key, "%lld", (long long)e->top_k[i]);
			bad |= json_object_set_new(
			        t, key, eng_extra_top_k(e, i, &v) ? api__num(v) : json_null());
		}
		bad |= json_object_set_new(o, "top_k_accuracy", t);
	}
	if (e->bins > 0)
		bad |= json_object_set_new(o, "calibration", calibration_json(e));
	return bad;
}

/* The reply object of one loss; NULL when out of memory. */
static json_t *render(const eng_loss_result *r, eng_reduction red)
{
	json_t *o = json_object();
	double v;
	int bad = 0;
	if (!o)
		return NULL;
	bad |= json_object_set_new(o, "reduction", json_string(eng_reduction_name(red)));
	if (red != ENG_RED_NONE) {
		bool def = eng_loss_result_value(r, red, &v);
		bad |= json_object_set_new(o, "loss", def ? api__num(v) : json_null());
	}
	bad |= json_object_set_new(o, "count", json_integer(r->count));
	bad |= json_object_set_new(o, "ignored", json_integer(r->ignored));
	bad |= json_object_set_new(o, "weight_sum", api__num(r->weight_sum));
	if (r->has_accuracy)
		bad |= json_object_set_new(o, "accuracy", ratio(r->correct, r->count));
	if (r->extra)
		bad |= api__render_extra(o, r->extra);
	if (r->per_class) {
		json_t *a = json_array();
		for (int64_t c = 0; a && c < r->nclasses; c++)
			if (json_array_append_new(a, api__class_row(c, &r->per_class[c])))
				bad = 1;
		bad |= json_object_set_new(o, "per_class", a);
	}
	if (r->confusion) {
		json_t *m = json_array();
		for (int64_t i = 0; m && i < r->conf_n; i++) {
			json_t *row = json_array();
			for (int64_t k = 0; row && k < r->conf_n; k++)
				bad |= json_array_append_new(
				        row, json_integer(r->confusion[i * r->conf_n + k]));
			bad |= json_array_append_new(m, row);
		}
		bad |= json_object_set_new(o, "confusion_matrix", m);
	}
	if (red == ENG_RED_NONE && r->per_position)
		bad |= json_object_set_new(o, "per_position",
		                           nested(r->per_position, r->pos_ndim, r->pos_shape));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- one loss request ------------------------------------------------------------ */

/* Prefixes the engine's pointer with base ("/heads/2"). */
static int from_eng(api_problem *p, const eng_error *err, const char *base)
{
	api_problem_from_eng(p, err);
	if (p && base && base[0]) {
		char tmp[sizeof p->pointer];
		snprintf(tmp, sizeof tmp, "%s%s", base, p->pointer);
		memcpy(p->pointer, tmp, sizeof tmp);
	}
	return -1;
}

/*
 * top_k: a non-empty array of whole numbers, each >= 1 and strictly
 * increasing (checked here, with the pointer of the entry); <= C is the
 * engine's check. Lifted arrays (16 or more entries) are read from pk.
 */
int api__read_top_k(eng_extra_opts *x, const json_t *obj, const char *base, const api_packed *pk,
                    api_problem *p)
{
	const json_t *v = api__field(obj, "top_k");
	char ptr[96], at[120];
	if (!v)
		return 0;
	api__pointer(ptr, sizeof ptr, base, "top_k");
	const api__pack *lk = api__packed_array(pk, v);
	if (!json_is_array(v) || (lk && lk->rank != 1))
		return api_problem_set(p, 422, "bad_type", ptr,
		                       "top_k must be an array of whole numbers, got %s",
		                       lk ? "nested arrays" : api__type_name(v));
	size_t n = lk ? (size_t)lk->shape[0] : json_array_size(v);
	if (n == 0 || n > ENG_EXTRA_MAX_TOPK)
		return api_problem_set(p, 422, "bad_option", ptr,
		                       "top_k must have 1 to %d entries, got %zu",
		                       ENG_EXTRA_MAX_TOPK, n);
	for (size_t i = 0; i < n; i++) {
		json_t *e = lk ? NULL : json_array_get(v, i);
		snprintf(at, sizeof at, "%s/%zu", ptr, i);
		if (!lk && !json_is_number(e))
			return api_problem_set(p, 422, "bad_type", at,
			                       "top_k[%zu] must be a whole number, got %s", i,
			                       api__type_name(e));
		double k = lk ? lk->values[i] : json_number_value(e);
		if (!(k == floor(k)) || k < 1 || k > 1e15)
			return api_problem_set(
			        p, 422, "bad_option", at,
			        "top_k[%zu] is %g; each k must be a whole number >= 1", i, k);
		x->top_k[i] = (int64_t)k;
		if (i > 0 && x->top_k[i] <= x->top_k[i - 1])
			return api_problem_set(p, 422, "bad_option", at,
			                       "top_k must be strictly increasing; top_k[%zu] = %g "
			                       "follows %lld",
			                       i, k, (long long)x->top_k[i - 1]);
	}
	x->ntop = (int)n;
	return 0;
}

/* calibration: {"bins": B}, B in [1, 1000], 15 when absent. */
int api__read_calibration(eng_extra_opts *x, const json_t *obj, const char *base, api_problem *p)
{
	const json_t *v = api__field(obj, "calibration");
	char ptr[96];
	int64_t bins;
	if (!v)
		return 0;
	api__pointer(ptr, sizeof ptr, base, "calibration");
	if (!json_is_object(v))
		return api_problem_set(
		        p, 422, "bad_type", ptr,
		        "calibration must be an object such as {\"bins\": 15}, got %s",
		        api__type_name(v));
	if (api__check_fields(v, calibration_fields, ptr, p) ||
	    api__get_int(&bins, v, ptr, "bins", 15, 1, ENG_CALIB_MAX_BINS, p))
		return -1;
	x->bins = (int)bins;
	return 0;
}

/* What one loss request asks for: the engine's options and tensors (o
 * points into x and t: never moved once read). */
typedef struct loss_in {
	eng_loss_opts o;
	eng_extra_opts x;
	api_tensor t[T_COUNT];
	int al;
	double beta;
} loss_in;

static void loss_in_init(loss_in *in)
{
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	in->o = o;
	in->x = x;
	for (int i = 0; i < T_COUNT; i++) {
		api_tensor e = API_TENSOR_INIT;
		in->t[i] = e;
	}
	in->al = AL_NONE;
	in->beta = 1.0;
}

static void loss_in_free(loss_in *in)
{
	for (int i = T_COUNT - 1; i >= 0; i--)
		api_tensor_free(&in->t[i]);
}

/* Reads the loss request obj (pointer base) into *in (loss_in_init'ed;
 * loss_in_free it either way). Returns 0 or -1 with *p. */
static int loss_read(loss_in *in, const api_ctx *ctx, const json_t *obj, const char *base,
                     int64_t *budget, const api_packed *pk, api_problem *p)
{
	eng_loss_opts *o = &in->o;
	int kind = 0, red = 0, gerr = 0, nanp = 0;
	int64_t axis = -1;
	int al;

	if (!json_is_object(obj))
		return api_problem_set(p, 422, "bad_type", base,
		                       "a loss request must be an object, got %s",
		                       api__type_name(obj));
	if (api__check_fields(obj, loss_fields, base, p) || api__require(obj, base, "loss", p))
		return -1;
	al = in->al = alias_of(obj);
	if (al == AL_NONE && api__get_enum(&kind, obj, base, "loss", eng_loss_names, 0, p))
		return -1;
	if (al != AL_NONE)
		kind = (int)alias_kinds[al];
	if (only_for(obj, base, "beta", al == AL_SL1, "smooth_l1", p) ||
	    only_for(obj, base, "log_target", al == AL_KL, "kl_div", p) ||
	    only_for(obj, base, "delta", al != AL_SL1, "huber (smooth_l1 takes beta)", p) ||
	    api__get_number(&in->beta, obj, base, "beta", 1.0, 0.0, INFINITY, p) ||
	    api__get_bool(&o->log_target, obj, base, "log_target", false, p) ||
	    api__get_enum(&nanp, obj, base, "nan_policy", nan_names, 0, p) ||
	    api__get_bool(&o->from_logits, obj, base, "from_logits", false, p) ||
	    api__get_int(&axis, obj, base, "axis", -1, -ENG_MAX_RANK, ENG_MAX_RANK - 1, p) ||
	    api__get_enum(&red, obj, base, "reduction", eng_reduction_names, ENG_RED_MEAN, p) ||
	    api__get_number(&o->label_smoothing, obj, base, "label_smoothing", 0.0, 0.0, 1.0, p) ||
	    api__get_number(&o->alpha, obj, base, "alpha", 0.25, -INFINITY, INFINITY, p) ||
	    api__get_number(&o->gamma, obj, base, "gamma", 2.0, 0.0, INFINITY, p) ||
	    api__get_bool(&o->apply_class_balancing, obj, base, "apply_class_balancing", false,
	                  p) ||
	    api__get_number(&o->delta, obj, base, "delta", 1.0, 0.0, INFINITY, p) ||
	    api__get_enum(&gerr, obj, base, "error", error_names, ENG_GMM_MAE, p) ||
	    api__get_bool(&o->per_class, obj, base, "per_class", true, p) ||
	    api__get_bool(&o->confusion, obj, base, "confusion_matrix", false, p))
		return -1;
	if (api__get_ignore_class(&o->has_ignore_class, &o->ignore_class, obj, base, p) ||
	    api__read_top_k(&in->x, obj, base, pk, p) ||
	    api__read_calibration(&in->x, obj, base, p))
		return -1;
	if (((al == AL_CE || al == AL_BCE_LOGITS) &&
	     alias_logits(&o->from_logits, obj, base, al, true, p)) ||
	    ((al == AL_NLL || al == AL_BCE || al == AL_KL) &&
	     alias_logits(&o->from_logits, obj, base, al, false, p)))
		return -1;
	if (al == AL_SL1) {
		if (!(in->beta > 0)) {
			char ptr[sizeof p->pointer];
			return api_problem_set(p, 422, "bad_option",
			                       api__pointer(ptr, sizeof ptr, base, "beta"),
			                       "beta must be > 0 (PyTorch's beta = 0 is mae)");
		}
		o->delta = in->beta;
	}
	if (al == AL_NLL)
		o->from_logits = true; /* log_softmax of log-probabilities is themselves */
	o->log_input = al == AL_KL;
	o->kind = (eng_loss_kind)kind;
	o->reduction = (eng_reduction)red;
	o->gmm_error = (eng_gmm_error)gerr;
	o->axis = (int)axis;
	o->propagate_nan = nanp == 1;

	api_tensor *t = in->t;
	api_tensor_opts topts = {o->propagate_nan, budget, pk, ctx ? ctx->par : NULL};
	for (int i = 0; i < T_COUNT; i++)
		if (api__get_tensor(&t[i], obj, base, tensor_keys[i], i <= T_PRED, &topts, p))
			return -1;
	o->sample_weight = t[T_SW].t.data ? &t[T_SW].t : NULL;
	o->class_weight = t[T_CW].t.data ? &t[T_CW].t : NULL;
	o->cost_matrix = t[T_COST].t.data ? &t[T_COST].t : NULL;
	o->pos_weight = t[T_PW].t.data ? &t[T_PW].t : NULL;
	o->x = t[T_X].t.data ? &t[T_X].t : NULL;
	if (al == AL_CE || al == AL_NLL) {
		const eng_tensor *yt = &t[T_TRUE].t, *yp = &t[T_PRED].t;
		bool probs = al == AL_CE && yt->ndim == yp->ndim &&
		             !memcmp(yt->shape, yp->shape, (size_t)yt->ndim * sizeof yt->shape[0]);
		o->kind = probs ? ENG_LOSS_CATEGORICAL_CE : ENG_LOSS_SPARSE_CE;
		if (!api__field(obj, "axis"))
			o->axis = yp->ndim >= 2 ? 1 : 0;
		if (!probs && !o->has_ignore_class) {
			o->has_ignore_class = true;
			o->ignore_class = -100;
		}
	}
	in->x.perplexity = o->kind == ENG_LOSS_SPARSE_CE || o->kind == ENG_LOSS_CATEGORICAL_CE;
	if (in->x.ntop || in->x.bins || in->x.perplexity)
		o->extra = &in->x;
	return 0;
}

static bool early_holds(const api_early *e, const json_t *obj, const loss_in *in);
static int early_finish(eng_loss_result **out, api_early *e, const eng_parallel *par,
                        eng_error *err);

/*
 * Evaluates the loss request obj (pointer base) into *reply (new) and
 * *value (the reduced loss, NaN when undefined); pk is what the body's
 * parse lifted (tensors may view it). early (may be NULL) is a loss
 * started as the body arrived: used when its guess holds. Returns 0 or -1
 * with *p.
 */
static int one_loss(json_t **reply, double *value, const api_ctx *ctx, const json_t *obj,
                    const char *base, int64_t *budget, const api_packed *pk, api_early *early,
                    api_problem *p)
{
	loss_in in;
	eng_loss_result *res = NULL;
	eng_error err = {0};
	const eng_parallel *par = ctx ? ctx->par : NULL;
	int rc = -1, erc;

	loss_in_init(&in);
	*reply = NULL;
	*value = NAN;
	if (loss_read(&in, ctx, obj, base, budget, pk, p))
		goto out;
	if (early_holds(early, obj, &in))
		erc = early_finish(&res, early, par, &err);
	else
		erc = eng_loss_compute(&res, &in.t[T_TRUE].t, &in.t[T_PRED].t, &in.o, par, &err);
	if (erc) {
		from_eng(p, &err, base);
		goto out;
	}
	if (in.al == AL_SL1)
		scale_losses(res, 1.0 / in.beta);
	*reply = render(res, in.o.reduction);
	if (*reply &&
	    json_object_set_new(*reply, "loss_name", json_string(eng_loss_kind_name(in.o.kind)))) {
		json_decref(*reply);
		*reply = NULL;
	}
	if (!*reply) {
		api_problem_set(p, 503, "out_of_memory", "",
		                "out of memory while building the reply");
		goto out;
	}
	if (in.o.reduction != ENG_RED_NONE && !eng_loss_result_value(res, in.o.reduction, value))
		*value = NAN;
	rc = 0;
out:
	eng_loss_result_free(res);
	loss_in_free(&in);
	return rc;
}

/* ---- a loss started as the body arrives ---------------------------------------------- */

/*
 * How the early loss answers bit for bit as the buffered path. When body.c
 * starts decoding a long "b64" string, api_loss_early_new takes a guess:
 * the text read so far, a placeholder for the string (a pending pack: its
 * tensor views the arena unchecked) and the brackets that close what is
 * open. Prepared on another thread, the guess is read as a request
 * (loss_read, the buffered path's own reading) and planned
 * (eng_loss_plan_new); then the plan's tasks run, in task order, each once
 * the string's decoded bytes cover the rows it reads (eng_loss_plan_pred_end).
 * Those bytes are final when read (api_body_decoding) and each task writes
 * only its own part.
 *
 * At the end the whole request is read as always, and the early work is
 * used only when the guess held: the request object equals the guess's
 * (json_equal: every option, every tensor field, y_pred's placeholder at
 * the same index, nothing after it) and y_pred's tensor, now checked
 * (size, base64, non-finite values), is the same dtype and shape over the
 * same bytes. Reading is a function of the object and the packs it points
 * to, which are the same (the packs before the string never change), so
 * the options and tensors are those the plan was made from; the plan's
 * tasks are the buffered path's (task cuts depend on shapes and options
 * only), eng_loss_plan_finish runs the rest and reduces in task order. Any
 * other outcome (the guess did not hold, or failed to read or plan) is the
 * buffered path, untouched: errors and their positions are its own.
 *
 * y_pred as nested JSON arrays: body.c lifts the rows as they close, back
 * to back where the whole array's values will be, and publishes the bytes
 * of those closed for good (api_body_decoding). The guess then holds a
 * pending array placeholder ["\u0000",K] of those rows' shape; how many
 * rows is read from the parsed guess (guess_rows: y_pred's "shape", else
 * y_true's first dimension), and the whole request must say the same (its
 * shape is compared). Nothing copies a pending array (packed.c), and
 * JSON numbers are finite, so there is no scan. A ragged row, a value that
 * is not a number, rows kept as text: the array is not lifted whole, the
 * request object differs from the guess, and the buffered path answers.
 *
 * Non-finite values: with nan_policy "raise", the steps also scan y_pred's
 * decoded elements in order (before the tasks that read them); what was
 * scanned, and the first non-finite found, goes to the whole request's
 * pack (early_mark), and tensor.c's check starts where the scan stopped:
 * the same first index, so the same error. A non-finite value found stops
 * the tasks (the request fails before the loss).
 *
 * Not started early: reduction "none" (the plan would hold a value per
 * position through the upload, and rendering them, not the loss, is that
 * request's cost). What a plan holds is then its partial tables, at most
 * ~32 MiB by eng_loss_plan_new's cut (counted in the caller's budget when
 * it gives one: api_loss_early_budget), and the guess's small tree.
 */
#define EARLY_SCAN ((int64_t)1 << 20) /* elements scanned a step */

struct api_early {
	const api_ctx *ctx;
	char *text; /* the guess (NUL-terminated) */
	size_t len;
	api_packed *sp; /* its packs until parsed (then pk) */
	size_t sent;
	const unsigned char *pred; /* where the string's bytes (the array's values) go */
	bool array;                /* y_pred is guessed a number array (rows) */
	size_t kpack;              /* its pack's index */
	json_t *req;
	api_packed *pk;
	loss_in in;
	bool read;
	eng_loss_plan *plan;
	size_t esz;       /* y_pred's element size */
	bool scan;        /* y_pred is scanned (nan_policy raise, a float dtype) */
	int64_t scanned;  /* its elements scanned for non-finite values */
	int64_t scan_bad; /* the first non-finite among them, or -1 */
	eng_dtype scan_dt;
	bool (*take)(void *, size_t); /* the caller's budget (api_loss_early_budget) */
	void (*give)(void *, size_t);
	void *barg;
	size_t held;        /* taken for the plan's tables */
	bool used;          /* the guess held: the answer used the plan */
	int64_t ran, tasks; /* then: its tasks run early, of all */
};

/* Frees the plan and gives back what its tables took of the budget. */
static void plan_free(api_early *e)
{
	eng_loss_plan_free(e->plan);
	e->plan = NULL;
	if (e->held && e->give)
		e->give(e->barg, e->held);
	e->held = 0;
}

void api_loss_early_free(api_early *e)
{
	if (!e)
		return;
	plan_free(e);
	if (e->read)
		loss_in_free(&e->in);
	api_packed_free(e->pk);
	json_decref(e->req);
	api_packed_free(e->sp);
	api__free(e->text);
	api__free(e);
}

int api_loss_early_new(api_early **out, const api_ctx *ctx, const api_body *b)
{
	api__body_snap sn;
	api_early *e = NULL;
	char ph[40];
	int rc = -1;

	*out = NULL;
	if (api__body_snapshot(b, &sn))
		return -1;
	bool array = sn.values != NULL;
	int phn = array ? snprintf(ph, sizeof ph, "[\"\\u0000\",%zu]", sn.npacks)
	                : snprintf(ph, sizeof ph, "\"\\u0000%zu\"", sn.npacks);
	size_t cap = sn.len + (size_t)phn + (size_t)sn.depth + 1;
	if (!(e = api__malloc(sizeof *e)))
		return -1;
	memset(e, 0, sizeof *e);
	e->ctx = ctx;
	e->sent = sn.sent;
	e->pred = array ? (const unsigned char *)(const void *)sn.values : sn.decoded;
	e->array = array;
	e->kpack = sn.npacks;
	if (!(e->text = api__malloc(cap)) || !(e->sp = api__malloc(sizeof *e->sp)))
		goto out;
	memset(e->sp, 0, sizeof *e->sp);
	if (!(e->sp->packs = api__malloc((sn.npacks + 1) * sizeof *e->sp->packs)))
		goto out;
	if (sn.len)
		memcpy(e->text, sn.text, sn.len);
	memcpy(e->text + sn.len, ph, (size_t)phn);
	e->len = sn.len + (size_t)phn;
	for (int d = sn.depth - 1; d >= 0; d--)
		e->text[e->len++] = sn.open[d] ? ']' : '}';
	e->text[e->len] = '\0';
	if (sn.npacks)
		memcpy(e->sp->packs, sn.packs, sn.npacks * sizeof *sn.packs);
	api__pack *pp = &e->sp->packs[sn.npacks];
	memset(pp, 0, sizeof *pp);
	pp->pending = true;
	if (array) {
		/* rows of sn.shape; how many is guessed once parsed (guess_rows) */
		pp->values = sn.values;
		pp->rank = sn.rank + 1;
		pp->shape[0] = 1;
		memcpy(pp->shape + 1, sn.shape, (size_t)sn.rank * sizeof sn.shape[0]);
		pp->size = 1;
		for (int d = 0; d < sn.rank; d++)
			pp->size *= sn.shape[d];
	} else {
		pp->decoded = sn.decoded;
		pp->nbytes = pp->bad_at = SIZE_MAX;
	}
	pp->body_start = sn.start;
	pp->body_end = sn.sent;
	pp->skel_start = sn.len;
	pp->skel_end = sn.len + (size_t)phn;
	e->sp->n = e->sp->nstream = e->sp->cap = sn.npacks + 1;
	*out = e;
	e = NULL;
	rc = 0;
out:
	api_loss_early_free(e);
	return rc;
}

/* The leading dimension of a tensor field v, or 0 when it does not say
 * (or when v is the guessed array `self` itself). */
static int64_t leading_dim(const json_t *v, const api_packed *pk, const api__pack *self)
{
	const json_t *s = json_object_get(v, "shape");
	if (json_is_object(v) && json_is_array(s) && json_is_integer(json_array_get(s, 0)))
		return json_integer_value(json_array_get(s, 0));
	if (json_is_object(v))
		v = json_object_get(v, "data");
	const api__pack *lk = api__packed_array(pk, v);
	if (lk)
		return lk == self ? 0 : lk->shape[0];
	return json_is_array(v) ? (int64_t)json_array_size(v) : 0;
}

/*
 * How many rows the guessed array of y_pred will have when it closes:
 * y_pred's own "shape", else y_true's leading dimension (every loss pairs
 * y_pred's first axis with y_true's). Only a guess: the whole request
 * decides (early_holds). Sets its pack's shape and size; -1 when nothing
 * tells.
 */
static int guess_rows(api_early *e)
{
	api__pack *pp = &e->pk->packs[e->kpack];
	int64_t n = leading_dim(json_object_get(e->req, "y_pred"), e->pk, pp);
	if (n <= 0)
		n = leading_dim(json_object_get(e->req, "y_true"), e->pk, pp);
	if (n <= 0 || n > INT64_MAX / pp->size)
		return -1;
	pp->size *= n;
	pp->shape[0] = n;
	return 0;
}

int api_loss_early_prepare(api_early *e)
{
	static const api_ctx defaults = API_CTX_INIT;
	const api_ctx *ctx = e->ctx ? e->ctx : &defaults;
	api_problem p = {0};
	eng_error err = {0};
	int64_t budget = ctx->max_elements;

	e->req = api__parse_sent(ctx, e->text, e->len, e->sp, e->sent, &e->pk, &p);
	e->sp = NULL; /* parse's now */
	if (!e->req || !json_is_object(e->req) || api__field(e->req, "heads"))
		return -1;
	if (e->array && (!e->pk || e->pk->nstream <= e->kpack || guess_rows(e)))
		return -1;
	loss_in_init(&e->in);
	e->read = true;
	if (loss_read(&e->in, ctx, e->req, "", &budget, e->pk, &p))
		return -1;
	const eng_tensor *yp = &e->in.t[T_PRED].t;
	if (yp->data != (const void *)e->pred)
		return -1; /* the string is not y_pred */
	if (e->in.o.reduction == ENG_RED_NONE)
		return -1; /* a value per position: its reply, not the loss, is the cost,
		            * and the plan would hold them through the upload */
	e->esz = eng_dtype_size(yp->dtype);
	e->scan_dt = yp->dtype;
	e->scan_bad = -1;
	/* (JSON numbers are finite: parse.c refuses an overflow) */
	e->scan = !e->array && !e->in.o.propagate_nan &&
	          (yp->dtype == ENG_F32 || yp->dtype == ENG_F64);
	/* the partial tables, counted before they are asked for */
	int64_t tables = eng_loss_plan_table_bytes(&e->in.t[T_TRUE].t, yp, &e->in.o);
	if (tables < 0 || (e->take && !e->take(e->barg, (size_t)tables)))
		return -1;
	e->held = e->take ? (size_t)tables : 0;
	if (eng_loss_plan_new(&e->plan, &e->in.t[T_TRUE].t, yp, &e->in.o, &err)) {
		plan_free(e);
		return -1;
	}
	return 0;
}

void api_loss_early_budget(api_early *e, bool (*take)(void *arg, size_t n),
                           void (*give)(void *arg, size_t n), void *arg)
{
	e->take = take;
	e->give = give;
	e->barg = arg;
}

int api_loss_early_step(api_early *e, size_t ready)
{
	if (!e || !e->plan || e->scan_bad >= 0)
		return 0; /* a non-finite value: the request fails before the loss */
	int64_t have = (int64_t)(ready / e->esz), size = e->in.t[T_PRED].t.size;
	if (e->scan && e->scanned < size && e->scanned < have) {
		int64_t to = have < size ? have : size;
		if (to - e->scanned > EARLY_SCAN)
			to = e->scanned + EARLY_SCAN;
		e->scan_bad = api__first_nonfinite(e->scan_dt, e->pred, e->scanned, to);
		e->scanned = to;
		return 1;
	}
	int64_t t = eng_loss_plan_done(e->plan);
	if (t >= eng_loss_plan_tasks(e->plan) ||
	    (uint64_t)eng_loss_plan_pred_end(e->plan, t) * e->esz > ready)
		return 0;
	eng_loss_plan_run(e->plan, t + 1);
	return 1;
}

/* Hands what e scanned of y_pred's string to its pack in pk (the whole
 * request's), so the tensor's check does not read it again. */
static void early_mark(const api_early *e, api_packed *pk)
{
	if (!e || !e->scan || !e->scanned || !pk)
		return;
	for (size_t i = 0; i < pk->nstream; i++) {
		api__pack *q = &pk->packs[i];
		if (q->rank == 0 && q->decoded == e->pred) {
			q->scanned = e->scanned;
			q->scanned_bad = e->scan_bad;
			q->scanned_dt = e->scan_dt;
		}
	}
}

bool api_loss_early_used(const api_early *e, int64_t *ran, int64_t *tasks)
{
	*ran = e && e->used ? e->ran : 0;
	*tasks = e && e->used ? e->tasks : 0;
	return e && e->used;
}

static bool early_holds(const api_early *e, const json_t *obj, const loss_in *in)
{
	if (!e || !e->plan || !json_equal(e->req, (json_t *)obj))
		return false;
	const eng_tensor *a = &e->in.t[T_PRED].t, *b = &in->t[T_PRED].t;
	return a->dtype == b->dtype && a->ndim == b->ndim && a->size == b->size &&
	       a->data == b->data &&
	       !memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]);
}

/* The early plan's result; the plan is freed here (before the reply is
 * built: its parts are the larger). */
static int early_finish(eng_loss_result **out, api_early *e, const eng_parallel *par,
                        eng_error *err)
{
	e->used = true;
	e->ran = eng_loss_plan_done(e->plan);
	e->tasks = eng_loss_plan_tasks(e->plan);
	int rc = eng_loss_plan_finish(out, e->plan, par, err);
	plan_free(e);
	return rc;
}

/* ---- multi-head ------------------------------------------------------------------- */

static int heads(json_t **reply, const api_ctx *ctx, const json_t *obj, int64_t *budget,
                 const api_packed *pk, api_problem *p)
{
	json_t *hs = json_object_get(obj, "heads");
	json_t *hw = api__field(obj, "head_weights");
	json_t *out = NULL, *list = NULL;
	char base[48];
	double total = 0;
	size_t n;
	int rc = -1;

	*reply = NULL;
	if (api__check_fields(obj, head_fields, "", p))
		return -1;
	if (!json_is_array(hs) || json_array_size(hs) == 0)
		return api_problem_set(p, 422, json_is_array(hs) ? "bad_option" : "bad_type",
		                       "/heads",
		                       "heads must be a non-empty array of loss requests, got %s",
		                       json_is_array(hs) ? "an empty array" : api__type_name(hs));
	n = json_array_size(hs);
	/* 16 or more weights arrive lifted (packed.c); a lifted array of
	 * arrays has arrays for elements. */
	const api__pack *lw = api__packed_array(pk, hw);
	if (hw) {
		if (!json_is_array(hw))
			return api_problem_set(p, 422, "bad_type", "/head_weights",
			                       "head_weights must be an array of numbers, got %s",
			                       api__type_name(hw));
		size_t nw = lw ? (size_t)lw->shape[0] : json_array_size(hw);
		if (nw != n)
			return api_problem_set(
			        p, 422, "shape_mismatch", "/head_weights",
			        "head_weights has %zu entries but there are %zu heads", nw, n);
		for (size_t i = 0; i < n; i++) {
			json_t *w = lw ? NULL : json_array_get(hw, i);
			snprintf(base, sizeof base, "/head_weights/%zu", i);
			if (lw ? lw->rank > 1 : !json_is_number(w))
				return api_problem_set(p, 422, "bad_type", base,
				                       "head_weights[%zu] must be a number, got %s",
				                       i, lw ? "an array" : api__type_name(w));
			double v = lw ? lw->values[i] : json_number_value(w);
			if (!isfinite(v) || v < 0)
				return api_problem_set(
				        p, 422, "bad_weight", base,
				        "head_weights[%zu] is %g; weights must be finite and >= 0",
				        i, v);
		}
	}
	out = json_object();
	list = json_array();
	if (!out || !list) {
		api_problem_set(p, 503, "out_of_memory", "", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *r;
		double v;
		snprintf(base, sizeof base, "/heads/%zu", i);
		if (one_loss(&r, &v, ctx, json_array_get(hs, i), base, budget, pk, NULL, p))
			goto out;
		if (json_array_append_new(list, r)) {
			api_problem_set(p, 503, "out_of_memory", "", "out of memory");
			goto out;
		}
		double w = lw ? lw->values[i] : hw ? json_number_value(json_array_get(hw, i)) : 1.0;
		total += w * v;
	}
	if (json_object_set_new(out, "loss", api__num(total)) ||
	    json_object_set(out, "heads", list)) {
		api_problem_set(p, 503, "out_of_memory", "", "out of memory");
		goto out;
	}
	*reply = out;
	out = NULL;
	rc = 0;
out:
	json_decref(list);
	json_decref(out);
	return rc;
}

/* ---- the endpoint --------------------------------------------------------------------- */

/* The body is body[0, len), or sent when not NULL (early: its loss
 * started as it arrived, or NULL). */
static void loss(api_reply *out, const api_ctx *ctx, const char *body, size_t len, api_body *sent,
                 api_early *early)
{
	api_ctx defaults = API_CTX_INIT;
	api_problem p = {0};
	json_t *req, *reply = NULL;
	api_packed *pk = NULL;
	double v;
	int rc;

	if (!ctx)
		ctx = &defaults;
	int64_t budget = ctx->max_elements;
	req = sent ? api__body_parse(ctx, sent, &pk, &p)
	           : api_parse_body_packed(ctx, body, len, &pk, &p);
	if (!req) {
		api_reply_problem(out, &p);
		return;
	}
	early_mark(early, pk);
	if (api__field(req, "heads"))
		rc = heads(&reply, ctx, req, &budget, pk, &p);
	else
		rc = one_loss(&reply, &v, ctx, req, "", &budget, pk, early, &p);
	json_decref(req);
	api_packed_free(pk);
	if (rc) {
		api_reply_problem(out, &p);
		return;
	}
	api_reply_json(out, 200, reply);
}

void api_loss(api_reply *out, const api_ctx *ctx, const char *body, size_t len)
{
	loss(out, ctx, body, len, NULL, NULL);
}

void api_loss_sent(api_reply *out, const api_ctx *ctx, api_body *b)
{
	loss(out, ctx, NULL, 0, b, NULL);
}

void api_loss_sent_early(api_reply *out, const api_ctx *ctx, api_body *b, api_early *e)
{
	loss(out, ctx, NULL, 0, b, e);
}
