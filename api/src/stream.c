/*
 * stream.c - JSON <-> streams (docs/API.md section 4): update and merge bodies
 * into engine deltas, and the read and state replies. See api_stream.h;
 * the create config (a "spec") is stream_spec.c's.
 *
 * Why shaped so: the engine holds the numbers (eng_stream), the server
 * holds the streams and their storage; this file only knows field names,
 * defaults, JSON types and how replies look. A spec keeps its canonical
 * config as plain JSON text (every default written out, keys sorted), not
 * as a jansson tree, so it can live for the process' lifetime and be read
 * by many threads without touching any thread's jansson budget. The loss
 * options of the spec are checked at create time by evaluating the loss on
 * a one-row dummy batch of the stream's shape, so an update never finds a
 * config problem that create let through.
 *
 * An update's y_score (or y_pred) feeds both the AUC and the loss; a loss
 * stream may take both, y_score for the AUC and y_pred for the loss (AUC
 * on probabilities, loss on logits). Rows whose label is the loss'
 * ignore_class are left out of the AUC as they are out of the loss.
 *
 * Invariants: a spec is immutable after it is made; two specs whose engine
 * configs are equal (eng_stream_config_equal, with the loss options' hash
 * inside) describe states that may merge. A loss config's `from_logits`
 * defaults to the stream's. Unknown fields are rejected everywhere.
 *
 * Not here: locking, ids, owners, idempotency (server/src/streams.c).
 */
#include "lossd/api_stream.h"
#include "lossd/api_stream_reply.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "fields.h"
#include "lossd/aucci.h"
#include "lossd/history.h"
#include "lossd/loss.h"
#include "mem.h"
#include "render.h"
#include "stream_priv.h"

static const char *const update_fields[] = {"y_true",   "y_score", "y_pred", "sample_weight",
                                            "batch_id", "step",    NULL};
static const char *const state_fields[] = {"version", "id",    "config", "count",
                                           "updates", "state", NULL};
/* state_fields plus state_id, which the server adds to an export and
 * requires in a merge (api_stream_decode_merge_origin). */
static const char *const state_fields_all[] = {"version", "id",    "config",   "count",
                                               "updates", "state", "state_id", NULL};

/* ---- small helpers ------------------------------------------------------------ */

int api__stream_oom(api_problem *p)
{
	return api_problem_set(p, 503, "out_of_memory", "", "out of memory");
}

int api__stream_from_eng(api_problem *p, const eng_error *err, const char *score_key)
{
	eng_error e = *err;
	if (e.field && strcmp(e.field, "y_score") == 0)
		e.field = score_key;
	return api_problem_from_eng(p, &e);
}

/* ---- updates ----------------------------------------------------------------------------- */

/*
 * Rows whose label is the loss' ignore_class count for neither the loss
 * (the engine skips them) nor the AUC: copies the other rows of y_true,
 * y_score and a per-row sample_weight into new float64 tensors in place
 * of the decoded ones. Shapes are checked by the engine afterwards; rows
 * beyond the shorter tensor are left for it to reject.
 */
static int drop_ignored(api_tensor *yt, api_tensor *ys, api_tensor *sw, int64_t ignore,
                        api_problem *p)
{
	int64_t n = yt->t.shape[0], keep = 0;
	for (int64_t i = 0; i < n; i++)
		keep += eng_tensor_at(&yt->t, i) != (double)ignore;
	if (keep == n || ys->t.ndim < 1 || ys->t.shape[0] != n)
		return 0;
	int64_t row = ys->t.ndim == 2 ? ys->t.shape[1] : 1;
	bool per_row_w = sw->t.data && sw->t.ndim == 1 && sw->t.shape[0] == n;
	double *ny = malloc((size_t)(keep ? keep : 1) * sizeof(double));
	double *nsc = malloc((size_t)(keep ? keep * row : 1) * sizeof(double));
	double *nw = per_row_w ? malloc((size_t)(keep ? keep : 1) * sizeof(double)) : NULL;
	if (!ny || !nsc || (per_row_w && !nw)) {
		free(ny);
		free(nsc);
		free(nw);
		return api__stream_oom(p);
	}
	int64_t k = 0;
	for (int64_t i = 0; i < n; i++) {
		if (eng_tensor_at(&yt->t, i) == (double)ignore)
			continue;
		ny[k] = eng_tensor_at(&yt->t, i);
		for (int64_t c = 0; c < row; c++)
			nsc[k * row + c] = eng_tensor_at(&ys->t, i * row + c);
		if (nw)
			nw[k] = eng_tensor_at(&sw->t, i);
		k++;
	}
	api_tensor_free(yt);
	yt->buf = ny;
	yt->t = (eng_tensor){ENG_F64, 1, {keep}, keep, ny};
	eng_tensor st = ys->t;
	api_tensor_free(ys);
	ys->buf = nsc;
	ys->t = st;
	ys->t.dtype = ENG_F64;
	ys->t.shape[0] = keep;
	ys->t.size = keep * row;
	ys->t.data = nsc;
	if (nw) {
		api_tensor_free(sw);
		sw->buf = nw;
		sw->t = (eng_tensor){ENG_F64, 1, {keep}, keep, nw};
	}
	return 0;
}

int api_stream_decode_update(eng_stream **delta, char **batch_id, const api_stream_spec *s,
                             const api_ctx *ctx, const char *body, size_t len, api_problem *p)
{
	api_ctx dctx = API_CTX_INIT;
	api_tensor yt = API_TENSOR_INIT, ys = API_TENSOR_INIT, yp = API_TENSOR_INIT,
	           sw = API_TENSOR_INIT;
	eng_loss_result *lr = NULL;
	eng_error err = {0};
	json_t *obj = NULL;
	api_packed *pk = NULL;
	char *bid = NULL;
	int rc = -1;

	*delta = NULL;
	*batch_id = NULL;
	if (!ctx)
		ctx = &dctx;
	if (!(obj = api_parse_body_packed(ctx, body, len, &pk, p)))
		return -1;
	if (api__check_fields(obj, update_fields, "", p) || api__require(obj, "", "y_true", p))
		goto out;
	/* One of y_score / y_pred serves both the AUC and the loss; with both,
	 * y_score feeds the AUC and y_pred the loss. */
	bool has_s = api__field(obj, "y_score") != NULL, has_p = api__field(obj, "y_pred") != NULL;
	if (!has_s && !has_p) {
		api_problem_set(p, 422, "missing_field", "/y_score",
		                "y_score (or y_pred) is required");
		goto out;
	}
	if (has_s && has_p && !s->eng.has_loss) {
		api_problem_set(p, 422, "bad_option", "/y_pred",
		                "this stream keeps no loss: send the scores once, as y_score");
		goto out;
	}
	const char *skey = has_s ? "y_score" : "y_pred";
	int64_t step = -1; /* docs/API.md section 7: an integer in [0, 2^63) */
	if (api__get_int(&step, obj, "", "step", -1, 0, INT64_MAX, p))
		goto out;
	json_t *b = api__field(obj, "batch_id");
	if (b) {
		char tmp[32];
		const char *v = NULL;
		if (json_is_string(b)) {
			v = json_string_value(b);
		} else if (json_is_integer(b)) {
			snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(b));
			v = tmp;
		} else {
			api_problem_set(p, 422, "bad_type", "/batch_id",
			                "batch_id must be a string or an integer, got %s",
			                api__type_name(b));
			goto out;
		}
		size_t n = strlen(v);
		if (n < 1 || n > API_IDEMPOTENCY_KEY_MAX ||
		    (json_is_string(b) && n != json_string_length(b))) {
			api_problem_set(p, 422, "bad_option", "/batch_id",
			                "batch_id must be 1 to %d bytes without NUL",
			                API_IDEMPOTENCY_KEY_MAX);
			goto out;
		}
		if (!(bid = strdup(v))) {
			api__stream_oom(p);
			goto out;
		}
	}
	int64_t budget = ctx->max_elements;
	api_tensor_opts topts = {false, &budget, pk, ctx->par};
	if (api__get_tensor(&yt, obj, "", "y_true", true, &topts, p) ||
	    api__get_tensor(&ys, obj, "", skey, true, &topts, p) ||
	    (has_s && has_p && api__get_tensor(&yp, obj, "", "y_pred", true, &topts, p)) ||
	    api__get_tensor(&sw, obj, "", "sample_weight", false, &topts, p))
		goto out;
	const eng_tensor *w = sw.t.data ? &sw.t : NULL;
	if (s->eng.has_loss) {
		eng_loss_opts o = s->lopts;
		const char *lkey = has_p ? "y_pred" : "y_score";
		o.sample_weight = w;
		if (eng_loss_compute(&lr, &yt.t, yp.t.data ? &yp.t : &ys.t, &o, ctx->par, &err)) {
			api__stream_from_eng(p, &err, lkey);
			if (p && strcmp(lkey, "y_score") == 0 &&
			    strncmp(p->pointer, "/y_pred", 7) == 0) {
				char tmp[sizeof p->pointer];
				snprintf(tmp, sizeof tmp, "/y_score%s", p->pointer + 7);
				memcpy(p->pointer, tmp, sizeof tmp);
			}
			goto out;
		}
	}
	if (s->eng.has_loss && s->lopts.has_ignore_class && yt.t.ndim == 1 &&
	    drop_ignored(&yt, &ys, &sw, s->lopts.ignore_class, p))
		goto out;
	w = sw.t.data ? &sw.t : NULL;
	if (eng_stream_batch(delta, &s->eng, &yt.t, &ys.t, w, lr, &err)) {
		api__stream_from_eng(p, &err, skey);
		goto out;
	}
	if (step >= 0 && eng_stream_set_step(*delta, step)) {
		eng_stream_free(*delta);
		*delta = NULL;
		api__stream_oom(p);
		goto out;
	}
	*batch_id = bid;
	bid = NULL;
	rc = 0;
out:
	free(bid);
	eng_loss_result_free(lr);
	api_tensor_free(&sw);
	api_tensor_free(&yp);
	api_tensor_free(&ys);
	api_tensor_free(&yt);
	json_decref(obj);
	api_packed_free(pk); /* after the tensors that may view it */
	return rc;
}

/* ---- reads ---------------------------------------------------------------------------------- */

/* "loss" and "loss_detail" of the reply. */
static int render_loss(json_t *o, const api_stream_spec *s, const eng_loss_result *r)
{
	double v = NAN;
	bool def = r && eng_loss_result_value(r, s->reduction, &v);
	int bad = json_object_set_new(o, "loss", def ? api__num(v) : json_null());
	json_t *d = json_pack("{ss sI sI so}", "reduction", eng_reduction_name(s->reduction),
	                      "count", (json_int_t)(r ? r->count : 0), "ignored",
	                      (json_int_t)(r ? r->ignored : 0), "weight_sum",
	                      api__num(r ? r->weight_sum : 0.0));
	if (!d)
		return -1;
	bad |= json_object_set_new(d, "loss_sum", api__num(r ? r->wloss_sum : 0.0));
	if (r && r->has_accuracy)
		bad |= json_object_set_new(
		        d, "accuracy",
		        r->count ? json_real((double)r->correct / (double)r->count) : json_null());
	if (r && r->per_class) {
		json_t *a = json_array();
		for (int64_t c = 0; a && c < r->nclasses; c++)
			bad |= json_array_append_new(a, api__class_row(c, &r->per_class[c]));
		bad |= json_object_set_new(d, "per_class", a);
	}
	bad |= json_object_set_new(o, "loss_detail", d);
	/* perplexity (docs/API.md 9) of a cross-entropy stream whose running loss is
	 * the plain nll: no class weights, cost matrix or smoothing, so
	 * loss_sum / weight_sum is the sample-weighted mean nll. With those a
	 * stream keeps no separate nll sums, and there is no perplexity. */
	const eng_loss_opts *lo = &s->lopts;
	if (lo->extra) {
		/* top_k / calibration asked: the stream keeps the metric sums
		 * (perplexity's too, whatever the loss' weights), rendered as
		 * /v1/loss renders them; before any batch, from empty sums. */
		eng_extra_result *e0 = NULL;
		const eng_extra_result *e = r ? r->extra : NULL;
		if (!e && !(e = e0 = eng_extra_result_new(lo->extra)))
			return -1;
		bad |= api__render_extra(o, e);
		eng_extra_result_free(e0);
	} else if ((lo->kind == ENG_LOSS_SPARSE_CE || lo->kind == ENG_LOSS_CATEGORICAL_CE) &&
	           !lo->class_weight && !lo->cost_matrix && lo->label_smoothing == 0) {
		bool has = r && r->count > 0 && r->weight_sum > 0;
		bad |= json_object_set_new(o, "perplexity",
		                           has ? api__num(exp(r->wloss_sum / r->weight_sum))
		                               : json_null());
	}
	return bad ? -1 : 0;
}

/* A column's "ci" (null when undefined; NULL when out of memory). */
static json_t *stream_ci(const eng_stream_config *c, const api_stream_read_opts *o,
                         const eng_auc_result *r, double se)
{
	if (!r->defined)
		return json_null();
	return api__auc_ci_json(o->ci, c->method == ENG_STREAM_EXACT, r->auc, se,
	                        c->method == ENG_STREAM_SKETCH ? r->error_bound : 0.0);
}

json_t *api_stream_render_read(const api_stream_spec *s, const char *id, const eng_stream *st,
                               const api_stream_read_opts *o, api_problem *p)
{
	api_stream_read_opts dflt = API_STREAM_READ_OPTS_INIT;
	const eng_stream_config *c = &s->eng;
	int64_t C = c->columns;
	eng_auc_result *per = NULL;
	double *se = NULL;
	eng_auc_curve curve = ENG_AUC_CURVE_INIT;
	eng_stream_counts cnt;
	eng_error err = {0};
	json_t *out = NULL, *warn = NULL;
	int bad = 0;

	api__mem_install();
	if (!o)
		o = &dflt;
	if (o->curve && o->curve_col != -1 && (o->curve_col < 0 || o->curve_col >= C)) {
		api_problem_set(p, 422, "bad_option", "/class", "class %lld is not in [0, %lld)",
		                (long long)o->curve_col, (long long)C);
		return NULL;
	}
	if (!(per = calloc((size_t)C, sizeof(*per))) || !(se = calloc((size_t)C, sizeof(*se))))
		goto nomem;
	eng_stream_counts_of(&cnt, st);
	for (int64_t k = 0; o->ci > 0 && k < C; k++) {
		if (eng_stream_auc_se(&se[k], st, k, &err)) {
			if (err.code == ENG_EINVAL) {
				api_problem_set(p, 422, "bad_option", "/ci", "%s", err.msg);
				goto done;
			}
			goto eng_fail;
		}
	}
	int64_t P = 0, Nn = 0;
	api_auc_avg acc = API_AUC_AVG_INIT(s->average);
	for (int64_t k = 0; k < C; k++) {
		if (eng_stream_auc(&per[k], NULL, st, k, 2, &err))
			goto eng_fail;
		P += per[k].positives;
		Nn += per[k].negatives;
		api__auc_avg_add(&acc, &per[k]);
	}
	double auc = NAN, bound = 0;
	if (C == 1) {
		auc = per[0].defined ? per[0].auc : NAN;
		bound = per[0].error_bound;
	} else if (s->average == API_AVG_MICRO) {
		eng_auc_result m;
		if (eng_stream_auc(&m, NULL, st, ENG_AUC_ALL, 2, &err))
			goto eng_fail;
		auc = m.defined ? m.auc : NAN;
		bound = m.error_bound;
	} else { /* macro, weighted, or none: null */
		api__auc_avg_value(&auc, &bound, &acc);
	}
	if (!(out = json_object()) || !(warn = json_array()))
		goto nomem;
	bad |= json_object_set_new(out, "id", json_string(id));
	bad |= json_object_set_new(out, "name", json_string(s->name));
	bad |= json_object_set_new(out, "method", json_string(api__method_names[c->method]));
	bad |= json_object_set_new(out, "auc", api__num(auc));
	if (C > 1) {
		bad |= json_object_set_new(out, "average",
		                           json_string(api__average_names[s->average]));
		json_t *a = json_array();
		for (int64_t k = 0; a && k < C; k++) {
			json_t *row = json_pack("{sI so sI sI}", "class", (json_int_t)k, "auc",
			                        per[k].defined ? api__num(per[k].auc) : json_null(),
			                        "positives", (json_int_t)per[k].positives,
			                        "negatives", (json_int_t)per[k].negatives);
			if (row && c->method == ENG_STREAM_SKETCH)
				bad |= json_object_set_new(row, "error_bound",
				                           api__num(per[k].error_bound));
			if (row && o->ci > 0)
				bad |= json_object_set_new(row, "ci",
				                           stream_ci(c, o, &per[k], se[k]));
			bad |= json_array_append_new(a, row);
		}
		bad |= json_object_set_new(out, "per_class", a);
	}
	bad |= json_object_set_new(out, "count", json_integer(cnt.rows));
	bad |= json_object_set_new(out, "updates", json_integer(cnt.updates));
	bad |= json_object_set_new(out, "positives", json_integer(P));
	bad |= json_object_set_new(out, "negatives", json_integer(Nn));
	if (c->method == ENG_STREAM_SKETCH)
		bad |= json_object_set_new(out, "error_bound",
		                           isfinite(auc) ? api__num(bound) : json_null());
	if (C == 1 && o->ci > 0)
		bad |= json_object_set_new(out, "ci", stream_ci(c, o, &per[0], se[0]));
	if (c->has_loss && render_loss(out, s, eng_stream_loss(st)))
		goto nomem;
	for (int64_t k = 0; k < C; k++)
		if (!per[k].defined && cnt.rows > 0) {
			char msg[160];
			if (C == 1)
				snprintf(msg, sizeof msg,
				         "only one class present so far: AUC is not defined");
			else
				snprintf(msg, sizeof msg,
				         "class %lld: only one class present so far, its AUC is "
				         "null",
				         (long long)k);
			bad |= json_array_append_new(warn, json_string(msg));
		}
	if (o->curve) {
		eng_auc_result r;
		if (eng_stream_auc(&r, &curve, st, C == 1 ? 0 : o->curve_col, o->max_points, &err))
			goto eng_fail;
		json_t *cj = api__curve_json(&curve);
		if (!cj)
			goto nomem;
		bad |= json_object_set_new(out, "curve", cj);
	}
	if (json_array_size(warn)) {
		bad |= json_object_set_new(out, "warnings", warn);
		warn = NULL;
	}
	if (bad)
		goto nomem;
	goto done;
eng_fail:
	api_problem_from_eng(p, &err);
	json_decref(out);
	out = NULL;
	goto done;
nomem:
	json_decref(out);
	out = NULL;
	api__stream_oom(p);
done:
	json_decref(warn);
	eng_auc_curve_free(&curve);
	free(se);
	free(per);
	return out;
}

/* ---- state export / import -------------------------------------------------------------- */

json_t *api_stream_export(const api_stream_spec *s, const char *id, const eng_stream *st,
                          api_problem *p)
{
	void *bytes = NULL;
	size_t len = 0;
	eng_stream_counts cnt;
	json_t *o = NULL;

	if (eng_stream_serialize(&bytes, &len, st)) {
		api__stream_oom(p);
		return NULL;
	}
	eng_stream_counts_of(&cnt, st);
	o = api_stream_export_bytes(s, id, &cnt, bytes, len, NULL, p);
	free(bytes);
	return o;
}

/* True when loss sums l (NULL: none yet) carry the extra sums spec s asks
 * for, of its configuration, and none when it asks for none. */
static bool extra_fits(const api_stream_spec *s, const eng_loss_result *l)
{
	if (!l)
		return true;
	const eng_extra_result *x = l->extra;
	const eng_extra_opts *o = s->lopts.extra;
	if (!x || !o)
		return !x && !o;
	if (x->ntop != o->ntop || x->bins != o->bins || x->perplexity != o->perplexity)
		return false;
	for (int i = 0; i < x->ntop; i++)
		if (x->top_k[i] != o->top_k[i])
			return false;
	return true;
}

int api_stream_decode_merge_origin(eng_stream **delta, api_stream_origin *origin,
                                   const api_stream_spec *s, const api_ctx *ctx, const char *body,
                                   size_t len, api_problem *p)
{
	api_ctx dctx = API_CTX_INIT;
	api_stream_limits lim = {s->eng.max_bytes, s->eng.sketch_bytes};
	api_stream_spec *env = NULL;
	json_t *obj = NULL;
	uint8_t *bytes = NULL;
	size_t blen = 0;
	int64_t version, count, updates;
	const char *id;
	eng_error err = {0};
	eng_stream_counts cnt;
	int rc = -1;

	*delta = NULL;
	if (origin) {
		origin->state = NULL;
		origin->state_len = 0;
	}
	if (!(obj = api_parse_body(ctx ? ctx : &dctx, body, len, p)))
		return -1;
	/* Every field of an export is required and must agree with the bytes:
	 * a state is taken whole or not at all. */
	for (const char *const *f = state_fields; *f; f++)
		if (api__require(obj, "", *f, p))
			goto out;
	if (api__check_fields(obj, state_fields_all, "", p) ||
	    api__get_int(&version, obj, "", "version", 1, 1, API_STREAM_STATE_VERSION, p) ||
	    api__get_string(&id, obj, "", "id", "", p) ||
	    api__get_int(&count, obj, "", "count", 0, 0, INT64_MAX, p) ||
	    api__get_int(&updates, obj, "", "updates", 0, 0, INT64_MAX, p))
		goto out;
	json_t *sid = api__field(obj, "state_id");
	if (origin && api__require(obj, "", "state_id", p))
		goto out;
	if (sid &&
	    (!json_is_string(sid) || json_string_length(sid) < 1 ||
	     json_string_length(sid) >= sizeof origin->state_id ||
	     strspn(json_string_value(sid), "0123456789abcdef") != json_string_length(sid))) {
		api_problem_set(p, 422, json_is_string(sid) ? "bad_state" : "bad_type", "/state_id",
		                "state_id must be the lowercase hex digest GET /state gave");
		goto out;
	}
	if (strlen(id) < 1 || strlen(id) >= sizeof origin->id) {
		api_problem_set(p, 422, "bad_state", "/id",
		                "id must be a stream id (1 to 128 characters)");
		goto out;
	}
	if (origin) {
		snprintf(origin->id, sizeof origin->id, "%s", id);
		snprintf(origin->state_id, sizeof origin->state_id, "%s",
		         sid ? json_string_value(sid) : "");
	}
	json_t *st = api__field(obj, "state"), *cfg = api__field(obj, "config");
	if (!json_is_string(st)) {
		api_problem_set(p, 422, "bad_type", "/state",
		                "state must be a base64 string, got %s", api__type_name(st));
		goto out;
	}
	if (!json_is_object(cfg)) {
		api_problem_set(p, 422, "bad_type", "/config", "config must be an object, got %s",
		                api__type_name(cfg));
		goto out;
	}
	const char *text = json_string_value(st);
	size_t tlen = json_string_length(st);
	if ((blen = api__b64_decoded_size(text, tlen)) == SIZE_MAX) {
		api_problem_set(p, 422, "bad_state", "/state", "state is not valid base64");
		goto out;
	}
	if (!(bytes = malloc(blen + 1))) {
		api__stream_oom(p);
		goto out;
	}
	if (api__b64_decode(bytes, text, tlen, NULL)) {
		api_problem_set(p, 422, "bad_state", "/state", "state is not valid base64");
		goto out;
	}
	int e = eng_stream_deserialize(delta, bytes, blen, s->eng.max_bytes, &err);
	if (e == ENG_ENOMEM) {
		api__stream_oom(p);
		goto out;
	}
	if (e) {
		api_problem_set(p, 422, "bad_state", "/state", "%s", err.msg);
		goto out;
	}
	eng_stream_counts_of(&cnt, *delta);
	if (cnt.rows != count || cnt.updates != updates) {
		api_problem_set(p, 422, "bad_state", cnt.rows != count ? "/count" : "/updates",
		                "count and updates must be those of the state (%lld, %lld)",
		                (long long)cnt.rows, (long long)cnt.updates);
		goto out;
	}
	if (api__stream_spec_from(&env, cfg, &lim, true, p)) {
		char tmp[sizeof p->pointer];
		snprintf(tmp, sizeof tmp, "/config%.150s", p->pointer);
		memcpy(p->pointer, tmp, sizeof tmp);
		if (p->status != 503) {
			p->status = 422;
			p->code = "bad_state";
		}
		goto out;
	}
	if (!eng_stream_config_equal(&env->eng, eng_stream_config_of(*delta))) {
		api_problem_set(p, 422, "bad_state", "/config",
		                "config does not describe the state it comes with");
		goto out;
	}
	if (!extra_fits(env, eng_stream_loss(*delta))) {
		api_problem_set(p, 422, "bad_state", "/state",
		                "the state's top_k, calibration or perplexity sums are not those "
		                "its config asks for");
		goto out;
	}
	if (!eng_stream_config_equal(eng_stream_config_of(*delta), &s->eng)) {
		api_problem_set(p, 409, "state_mismatch", "/config",
		                "the state was made by a stream of another config "
		                "(method, classes, curve, thresholds, logits, sketch size or loss "
		                "differ)");
		goto out;
	}
	if (origin) {
		origin->state = bytes;
		origin->state_len = blen;
		bytes = NULL;
	}
	rc = 0;
out:
	if (rc) {
		eng_stream_free(*delta);
		*delta = NULL;
	}
	api_stream_spec_free(env);
	free(bytes);
	json_decref(obj);
	return rc;
}

int api_stream_merge_problem(api_problem *p, const eng_error *err)
{
	switch (err->code) {
	case ENG_ESTATE: return api_problem_set(p, 409, "state_mismatch", "", "%s", err->msg);
	case ENG_ELIMIT:
		return api_problem_set(p, 507, "stream_memory_exceeded", "", "%s", err->msg);
	case ENG_ENOMEM: return api__stream_oom(p);
	default: return api_problem_from_eng(p, err);
	}
}

int api_stream_parse_reset(const api_ctx *ctx, const char *body, size_t len, api_problem *p)
{
	if (len == 0)
		return 0;
	json_t *b = api_parse_body(ctx, body, len, p);
	if (!b)
		return -1;
	size_t n = json_object_size(b);
	json_decref(b);
	if (n)
		return api_problem_set(p, 422, "unknown_field", "", "reset takes no fields");
	return 0;
}

int api_stream_figures(const api_stream_spec *s, const eng_stream *st, double *auc, double *loss,
                       int64_t *count)
{
	api_problem p;
	*auc = *loss = NAN;
	*count = 0;
	json_t *j = api_stream_render_read(s, "", st, NULL, &p);
	if (!j)
		return -1;
	json_t *a = json_object_get(j, "auc"), *l = json_object_get(j, "loss");
	*auc = json_is_number(a) ? json_number_value(a) : NAN;
	*loss = json_is_number(l) ? json_number_value(l) : NAN;
	*count = (int64_t)json_integer_value(json_object_get(j, "count"));
	json_decref(j);
	return 0;
}
