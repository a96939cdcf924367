/*
 * stream_spec.c - a stream's spec (docs/API.md section 4): the create config
 * read into an engine config and loss options, its canonical text (every
 * default written out, keys sorted: what the store keeps and what
 * GET /v1/streams/{id}/config shows) and the loss options' fingerprint
 * that decides which states may merge. See api_stream.h.
 *
 * Why shaped so: a spec is made once, at create or when the store is read,
 * and then only read, by any thread, for the process' lifetime; keeping
 * its config as plain text (not a jansson tree) means reading it touches
 * no thread's jansson budget. The loss options are checked at create time
 * by evaluating the loss on a one-row dummy batch of the stream's shape,
 * so an update never finds a config problem that create let through.
 *
 * Invariants: a spec is immutable after it is made; a stored config may
 * be larger than today's caps (it was accepted) and still loads; unknown
 * fields are rejected; a loss config's from_logits defaults to the
 * stream's.
 *
 * Not here: updates, merges, readings and states (stream.c).
 */
#include "lossd/api_stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "lossd/dynbuf.h"
#include "lossd/loss.h"
#include "lossd/sketch.h"
#include "mem.h"
#include "render.h"
#include "stream_priv.h"

static const char *const red_names[] = {"mean", "sum", "sum_over_batch_size", NULL};
static const char *const create_fields[] = {
        "name",
        "method",
        "curve",
        "num_classes",
        "multi_label",
        "num_thresholds",
        "summation_method",
        "average",
        "from_logits",
        "sketch_bytes",
        "loss",
        "tags", /* metadata (api_meta.h): read by the server, not config */
        "ttl_s",
        NULL,
};
static const char *const loss_fields[] = {
        "loss",
        "reduction",
        "from_logits",
        "class_weight",
        "pos_weight",
        "ignore_class",
        "ignore_index",
        "label_smoothing",
        "alpha",
        "gamma",
        "apply_class_balancing",
        "delta",
        "top_k",
        "calibration",
        NULL,
};

/* A spec's text holds at most what its request held (a body of at most
 * --max-body bytes, numbers written back with up to 17 digits: a few times
 * the body); a stored spec may come from a build with larger caps. 4 GiB
 * is above both and still a bound. */
#define SPEC_TEXT_MAX ((size_t)4 << 30)

static int dump_cb(const char *b, size_t n, void *data)
{
	return api_dynbuf_add(data, b, n) ? -1 : 0;
}

/* v as compact JSON text with sorted keys: new (free()), NULL on failure. */
static char *dump(const json_t *v)
{
	api_dynbuf d;
	api_dynbuf_init(&d, SPEC_TEXT_MAX);
	if (json_dump_callback(v, dump_cb, &d,
	                       JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) |
	                               JSON_ENCODE_ANY) != 0 ||
	    api_dynbuf_len(&d) == 0) {
		api_dynbuf_free(&d);
		return NULL;
	}
	return api_dynbuf_take(&d, NULL);
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

/* ---- specs --------------------------------------------------------------------------- */

void api_stream_spec_free(api_stream_spec *s)
{
	if (!s)
		return;
	api_tensor_free(&s->class_weight);
	api_tensor_free(&s->pos_weight);
	free(s->text);
	free(s->name);
	free(s);
}

static bool loss_is_regression(eng_loss_kind k)
{
	return k == ENG_LOSS_MSE || k == ENG_LOSS_MAE || k == ENG_LOSS_HUBER;
}

/*
 * Evaluates the spec's loss on a one-row batch of the stream's shape: the
 * check that every loss option fits the stream (class_weight length,
 * options not applicable to the loss, ...). Errors point into /loss.
 */
static int check_loss_on_dummy(const api_stream_spec *s, api_problem *p)
{
	int64_t C = s->eng.columns;
	double *yp = calloc((size_t)C, sizeof(double)), *yt = calloc((size_t)C, sizeof(double));
	eng_loss_result *r = NULL;
	eng_error err = {0};
	int rc = 0;
	if (!yp || !yt) {
		rc = api__stream_oom(p);
		goto out;
	}
	for (int64_t c = 0; c < C; c++)
		yp[c] = s->lopts.from_logits ? 0.0 : 1.0 / (double)(C > 1 ? C : 2);
	eng_tensor tp = {ENG_F64, 2, {1, C}, C, yp}, tt = {ENG_F64, 1, {1}, 1, yt};
	if (s->eng.kind == ENG_LABELS_BINARY)
		tp.ndim = 1, tp.shape[0] = 1, tp.shape[1] = 0;
	if (s->eng.kind == ENG_LABELS_MULTI) {
		tt = tp;
		tt.data = yt;
	}
	if (eng_loss_compute(&r, &tt, &tp, &s->lopts, NULL, &err)) {
		api_problem_from_eng(p, &err);
		if (p) {
			char tmp[sizeof p->pointer];
			const char *f = err.field;
			bool option = f && strcmp(f, "y_true") != 0 && strcmp(f, "y_pred") != 0;
			snprintf(tmp, sizeof tmp, "/loss%s%s", option ? "/" : "", option ? f : "");
			if (option && strcmp(f, "top_k") == 0 && err.index >= 0) {
				size_t at = strlen(tmp);
				snprintf(tmp + at, sizeof tmp - at, "/%lld", (long long)err.index);
			}
			memcpy(p->pointer, tmp, sizeof tmp);
			p->status = 422;
			p->code = "bad_option";
		}
		rc = -1;
	} else if (r->nclasses != 0 && r->nclasses != C) {
		rc = api_problem_set(
		        p, 422, "bad_option", "/loss",
		        "the loss' per-class table does not fit the stream's %lld columns",
		        (long long)C);
	}
out:
	eng_loss_result_free(r);
	free(yp);
	free(yt);
	return rc;
}

/* Nested arrays of reals in t's shape (a number for rank 0), or null for
 * no tensor. New reference; NULL when out of memory. */
static json_t *tensor_rec(const eng_tensor *t, int dim, int64_t *at)
{
	if (dim == t->ndim)
		return json_real(eng_tensor_at(t, (*at)++));
	json_t *a = json_array();
	for (int64_t i = 0; a && i < t->shape[dim]; i++)
		if (json_array_append_new(a, tensor_rec(t, dim + 1, at))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

static json_t *tensor_json(const eng_tensor *t)
{
	int64_t at = 0;
	return t ? tensor_rec(t, 0, &at) : json_null();
}

/*
 * Reads the loss config v (a loss name or an object) into s and the
 * canonical object *canon (new). Called after the stream fields are known.
 */
static int parse_loss(api_stream_spec *s, json_t *v, json_t **canon, api_problem *p)
{
	const char *base = "/loss";
	json_t *obj = NULL, *c = NULL;
	int kind = 0, red = 0;
	int rc = -1;
	eng_loss_opts *o = &s->lopts;

	*canon = NULL;
	if (json_is_string(v)) {
		obj = json_pack("{sO}", "loss", v);
		if (!obj)
			return api__stream_oom(p);
	} else if (json_is_object(v)) {
		obj = json_incref(v);
	} else {
		return api_problem_set(p, 422, "bad_type", base,
		                       "loss must be a loss name or an object, got %s",
		                       api__type_name(v));
	}
	if (api__check_fields(obj, loss_fields, base, p) || api__require(obj, base, "loss", p) ||
	    api__get_enum(&kind, obj, base, "loss", eng_loss_names, 0, p) ||
	    api__get_enum(&red, obj, base, "reduction", red_names, ENG_RED_MEAN, p) ||
	    api__get_bool(&o->from_logits, obj, base, "from_logits",
	                  loss_is_regression((eng_loss_kind)kind) ? false : s->eng.from_logits,
	                  p) ||
	    api__get_number(&o->label_smoothing, obj, base, "label_smoothing", 0.0, 0.0, 1.0, p) ||
	    api__get_number(&o->alpha, obj, base, "alpha", 0.25, -INFINITY, INFINITY, p) ||
	    api__get_number(&o->gamma, obj, base, "gamma", 2.0, 0.0, INFINITY, p) ||
	    api__get_bool(&o->apply_class_balancing, obj, base, "apply_class_balancing", false,
	                  p) ||
	    api__get_number(&o->delta, obj, base, "delta", 1.0, 0.0, INFINITY, p))
		goto out;
	if (api__get_ignore_class(&o->has_ignore_class, &o->ignore_class, obj, base, p) ||
	    api__read_top_k(&s->xopts, obj, base, NULL, p) ||
	    api__read_calibration(&s->xopts, obj, base, p))
		goto out;
	o->kind = (eng_loss_kind)kind;
	/* The extra sums are kept only when asked for (top_k or calibration),
	 * so a config without them keeps its state (and fingerprint) as before;
	 * with them, a cross-entropy loss keeps its perplexity sums as well. */
	if (s->xopts.ntop || s->xopts.bins) {
		s->xopts.perplexity =
		        o->kind == ENG_LOSS_SPARSE_CE || o->kind == ENG_LOSS_CATEGORICAL_CE;
		o->extra = &s->xopts;
	}
	o->reduction = ENG_RED_MEAN; /* the stream reduces at read time */
	o->per_class = true;
	o->confusion = false;
	o->per_position = false;
	s->reduction = (eng_reduction)red;

	/* Which losses fit which labels: the update's y_true serves both. */
	bool ok;
	switch (s->eng.kind) {
	case ENG_LABELS_CLASS_ID: ok = o->kind == ENG_LOSS_SPARSE_CE; break;
	default: ok = eng_loss_is_binary(o->kind) || loss_is_regression(o->kind); break;
	}
	if (!ok) {
		api_problem_set(
		        p, 422, "bad_option", "/loss/loss", "%s does not fit a %s stream (%s)",
		        eng_loss_kind_name(o->kind),
		        s->eng.kind == ENG_LABELS_CLASS_ID ? "one-vs-rest"
		        : s->eng.kind == ENG_LABELS_MULTI  ? "multi-label"
		                                           : "binary",
		        s->eng.kind == ENG_LABELS_CLASS_ID
		                ? "class-id labels take sparse_categorical_crossentropy"
		                : "0/1 labels take binary_crossentropy, binary_focal_crossentropy "
		                  "or a regression loss");
		goto out;
	}
	int64_t budget = 1 << 20;
	api_tensor_opts topts = {false, &budget, NULL, NULL}; /* the spec keeps its tensors */
	if (api__get_tensor(&s->class_weight, obj, base, "class_weight", false, &topts, p) ||
	    api__get_tensor(&s->pos_weight, obj, base, "pos_weight", false, &topts, p))
		goto out;
	o->class_weight = s->class_weight.t.data ? &s->class_weight.t : NULL;
	o->pos_weight = s->pos_weight.t.data ? &s->pos_weight.t : NULL;
	if (check_loss_on_dummy(s, p))
		goto out;

	/* Canonical: every option explicit. */
	c = json_pack("{ss ss sb sf sf sf sb sf}", "loss", eng_loss_kind_name(o->kind), "reduction",
	              red_names[red], "from_logits", o->from_logits, "label_smoothing",
	              o->label_smoothing, "alpha", o->alpha, "gamma", o->gamma,
	              "apply_class_balancing", o->apply_class_balancing, "delta", o->delta);
	if (!c) {
		api__stream_oom(p);
		goto out;
	}
	int bad = 0;
	/* Tensors as their decoded values (1 and 1.0 alike), so equal options
	 * give equal text and equal fingerprints. */
	bad |= json_object_set_new(c, "class_weight", tensor_json(o->class_weight));
	bad |= json_object_set_new(c, "pos_weight", tensor_json(o->pos_weight));
	bad |= json_object_set_new(c, "ignore_class",
	                           o->has_ignore_class ? json_integer(o->ignore_class)
	                                               : json_null());
	if (s->xopts.ntop) { /* only when given: older configs keep their text */
		json_t *a = json_array();
		for (int i = 0; a && i < s->xopts.ntop; i++)
			bad |= json_array_append_new(a, json_integer(s->xopts.top_k[i]));
		bad |= json_object_set_new(c, "top_k", a);
	}
	if (s->xopts.bins)
		bad |= json_object_set_new(c, "calibration",
		                           json_pack("{si}", "bins", s->xopts.bins));
	if (bad) {
		api__stream_oom(p);
		goto out;
	}
	char *t = dump(c);
	if (!t) {
		api__stream_oom(p);
		goto out;
	}
	s->eng.loss_fingerprint = fnv1a(t);
	free(t);
	s->eng.has_loss = true;
	s->eng.loss_kind = o->kind;
	*canon = c;
	c = NULL;
	rc = 0;
out:
	json_decref(c);
	json_decref(obj);
	return rc;
}

/* The spec of config object obj (a create body or a stored config). */
int api__stream_spec_from(api_stream_spec **out, json_t *obj, const api_stream_limits *lim,
                          bool stored, api_problem *p)
{
	api_stream_spec *s = calloc(1, sizeof(*s));
	json_t *canon = NULL, *lcanon = NULL;
	const char *name = NULL;
	int method = 0, curve = 0, summ = 0, avg = 0;
	int64_t ncls = 1, nth = 200, skb;
	bool multi = false;
	int rc = -1;
	eng_error err;
	api_stream_limits dl = API_STREAM_LIMITS_INIT;

	*out = NULL;
	if (!s)
		return api__stream_oom(p);
	if (!lim)
		lim = &dl;
	api_tensor e = API_TENSOR_INIT;
	s->class_weight = e;
	s->pos_weight = e;
	eng_loss_opts lo = ENG_LOSS_OPTS_INIT;
	s->lopts = lo;
	eng_extra_opts xo = ENG_EXTRA_OPTS_INIT;
	s->xopts = xo;
	s->eng = (eng_stream_config)ENG_STREAM_CONFIG_INIT;
	size_t max_sk = lim->max_bytes < ENG_SKETCH_MAX_CAP ? lim->max_bytes : ENG_SKETCH_MAX_CAP;

	if (api__check_fields(obj, create_fields, "", p) ||
	    api__get_string(&name, obj, "", "name", "", p) ||
	    api__get_enum(&method, obj, "", "method", api__method_names, ENG_STREAM_SKETCH, p) ||
	    api__get_enum(&curve, obj, "", "curve", api__curve_names, ENG_CURVE_ROC, p) ||
	    api__get_int(&ncls, obj, "", "num_classes", 1, 1, ENG_STREAM_MAX_COLUMNS, p) ||
	    api__get_bool(&multi, obj, "", "multi_label", false, p) ||
	    api__get_int(&nth, obj, "", "num_thresholds", 200, 2, 1 << 16, p) ||
	    api__get_enum(&summ, obj, "", "summation_method", api__summation_names,
	                  ENG_SUM_INTERPOLATION, p) ||
	    api__get_enum(&avg, obj, "", "average", api__average_names, API_AVG_MACRO, p) ||
	    api__get_bool(&s->eng.from_logits, obj, "", "from_logits", false, p))
		goto out;
	if (api__get_int(&skb, obj, "", "sketch_bytes",
	                 (int64_t)(lim->sketch_bytes < max_sk ? lim->sketch_bytes : max_sk),
	                 (int64_t)ENG_SKETCH_MIN_CAP,
	                 (int64_t)ENG_SKETCH_MAX_CAP * ENG_STREAM_MAX_COLUMNS, p))
		goto out;
	if (strlen(name) > 256) {
		api_problem_set(p, 422, "bad_option", "/name", "name is longer than 256 bytes");
		goto out;
	}
	if (multi && ncls < 2) {
		api_problem_set(p, 422, "bad_option", "/multi_label",
		                "multi_label needs num_classes >= 2");
		goto out;
	}
	s->eng.method = (eng_stream_method)method;
	s->eng.curve = (eng_curve)curve;
	s->eng.summation = (eng_summation)summ;
	s->eng.num_thresholds = nth;
	s->eng.columns = ncls;
	s->eng.kind = ncls == 1 ? ENG_LABELS_BINARY
	              : multi   ? ENG_LABELS_MULTI
	                        : ENG_LABELS_CLASS_ID;
	s->eng.sketch_bytes = (size_t)skb;
	/* A stored config may be larger than today's cap: it was accepted. */
	s->eng.max_bytes = stored ? SIZE_MAX : lim->max_bytes;
	s->average = avg;
	int crc = eng_stream_config_check(&s->eng, &err);
	s->eng.max_bytes = lim->max_bytes;
	if (crc) {
		char ptr[64];
		snprintf(ptr, sizeof ptr, "/%s", err.field ? err.field : "");
		if (err.code == ENG_ELIMIT)
			api_problem_set(p, 507, "stream_memory_exceeded", ptr, "%s", err.msg);
		else
			api_problem_set(p, 422, "bad_option", ptr, "%s", err.msg);
		goto out;
	}
	if (api__field(obj, "loss") && parse_loss(s, api__field(obj, "loss"), &lcanon, p))
		goto out;

	canon = json_pack("{ss ss ss sI sb sI ss ss sb sI}", "name", name, "method",
	                  api__method_names[method], "curve", api__curve_names[curve],
	                  "num_classes", (json_int_t)ncls, "multi_label", multi, "num_thresholds",
	                  (json_int_t)nth, "summation_method", api__summation_names[summ],
	                  "average", api__average_names[avg], "from_logits", s->eng.from_logits,
	                  "sketch_bytes", (json_int_t)skb);
	if (!canon || json_object_set(canon, "loss", lcanon ? lcanon : json_null())) {
		api__stream_oom(p);
		goto out;
	}
	if (!(s->text = dump(canon)) || !(s->name = strdup(name))) {
		api__stream_oom(p);
		goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	json_decref(lcanon);
	json_decref(canon);
	api_stream_spec_free(s);
	return rc;
}

int api_stream_spec_parse(api_stream_spec **out, const api_ctx *ctx, const char *body, size_t len,
                          const api_stream_limits *lim, api_problem *p)
{
	api_ctx dctx = API_CTX_INIT;
	*out = NULL;
	if (len == 0) { /* every field is optional: no body means {} */
		body = "{}";
		len = 2;
	}
	json_t *obj = api_parse_body(ctx ? ctx : &dctx, body, len, p);
	if (!obj)
		return -1;
	int rc = api__stream_spec_from(out, obj, lim, false, p);
	json_decref(obj);
	return rc;
}

int api_stream_spec_load(api_stream_spec **out, const char *text, const api_stream_limits *lim,
                         api_problem *p)
{
	json_error_t je;
	*out = NULL;
	api__mem_install();
	json_t *obj = api__json_loads(text, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return api_problem_set(p, 500, "bad_state", "", "stored stream config is corrupt");
	}
	int rc = api__stream_spec_from(out, obj, lim, true, p);
	json_decref(obj);
	return rc;
}

char *api_stream_spec_text(const api_stream_spec *s)
{
	return strdup(s->text);
}

const eng_stream_config *api_stream_spec_engine(const api_stream_spec *s)
{
	return &s->eng;
}

const char *api_stream_spec_name(const api_stream_spec *s)
{
	return s->name;
}

json_t *api__stream_config_obj(const api_stream_spec *s)
{
	api__mem_install();
	return api__json_loads(s->text, 0, NULL);
}

json_t *api_stream_render_config(const api_stream_spec *s, const char *id)
{
	json_t *o = api__stream_config_obj(s);
	if (o && json_object_set_new(o, "id", json_string(id))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* ---- for history.c ---------------------------------------------------------------------- */

eng_reduction api__stream_reduction(const api_stream_spec *s)
{
	return s->reduction;
}
