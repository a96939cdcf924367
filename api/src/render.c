/*
 * render.c - the reply pieces more than one handler writes: a double or
 * null, a curve, a loss' per-class row, an AUC's confidence interval, the
 * macro and weighted averages of per-class AUCs, and the option names
 * /v1/auc and the streams both accept.
 *
 * Why shaped so: /v1/auc, /v1/loss and a stream's read answer with the same
 * shapes (docs/API.md sections 3, 4 and 9), and a client compares them field by
 * field; one function per shape keeps them from drifting apart. The name
 * tables are indexed by the engine's enums, so a parsed index is the
 * engine's value and a stored config reads back the same.
 *
 * Invariants: every function returns a new reference or NULL when out of
 * memory; NaN and Inf become null, never a number. The averages add in
 * class order, so a reply is the same double every time.
 *
 * It does not decide which fields a reply has, nor when an average is
 * micro (that problem is the caller's): only how each piece looks.
 */
#include "render.h"

#include "lossd/aucci.h"

#include <math.h>

const char *const api__method_names[] = {"sketch", "binned", "exact", NULL};
const char *const api__curve_names[] = {"roc", "pr", NULL};
const char *const api__summation_names[] = {"interpolation", "minoring", "majoring", NULL};
const char *const api__average_names[] = {"macro", "weighted", "micro", "none", NULL};

void api__auc_avg_add(api_auc_avg *a, const eng_auc_result *r)
{
	if (!r->defined)
		return;
	double w = a->average == API_AVG_WEIGHTED ? r->pos_weight : 1.0;
	a->sum += w * r->auc;
	a->bsum += w * r->error_bound;
	a->wsum += w;
	a->n++;
}

bool api__auc_avg_value(double *auc, double *bound, const api_auc_avg *a)
{
	if ((a->average != API_AVG_MACRO && a->average != API_AVG_WEIGHTED) || a->n == 0 ||
	    !(a->wsum > 0.0))
		return false;
	*auc = a->sum / a->wsum;
	*bound = a->bsum / a->wsum;
	return true;
}

json_t *api__num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *api__num_array(const double *v, int64_t n)
{
	json_t *a = json_array();
	for (int64_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, api__num(v[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

json_t *api__curve_json(const eng_auc_curve *c)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	int bad = 0;
	bad |= json_object_set_new(o, "x", api__num_array(c->x, c->n));
	bad |= json_object_set_new(o, "y", api__num_array(c->y, c->n));
	bad |= json_object_set_new(o, "thresholds", api__num_array(c->thresholds, c->n));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *api__class_row(int64_t c, const eng_loss_class *k)
{
	json_t *row = json_object();
	if (!row)
		return NULL;
	bool has_p = k->predicted > 0, has_r = k->support > 0;
	double prec = has_p ? (double)k->correct / (double)k->predicted : 0;
	double rec = has_r ? (double)k->correct / (double)k->support : 0;
	/* 2 correct / (predicted + support): 0 for a class present but never
	 * predicted (scikit-learn, zero_division=0); null only when both are 0 */
	int64_t ps = k->predicted + k->support;
	json_t *f1 = ps > 0 ? json_real(2.0 * (double)k->correct / (double)ps) : json_null();
	int bad = 0;
	bad |= json_object_set_new(row, "class", json_integer(c));
	bad |= json_object_set_new(row, "support", json_integer(k->support));
	bad |= json_object_set_new(row, "weight_sum", api__num(k->weight_sum));
	bad |= json_object_set_new(row, "loss_sum", api__num(k->loss_sum));
	bad |= json_object_set_new(row, "loss_mean",
	                           k->weight_sum != 0 ? api__num(k->loss_sum / k->weight_sum)
	                                              : json_null());
	bad |= json_object_set_new(row, "predicted", json_integer(k->predicted));
	bad |= json_object_set_new(row, "correct", json_integer(k->correct));
	bad |= json_object_set_new(row, "precision", has_p ? json_real(prec) : json_null());
	bad |= json_object_set_new(row, "recall", has_r ? json_real(rec) : json_null());
	bad |= json_object_set_new(row, "f1", f1);
	if (bad) {
		json_decref(row);
		return NULL;
	}
	return row;
}

json_t *api__auc_ci_json(double level, bool delong, double a, double se, double widen)
{
	double lo, hi;
	if (!eng_auc_ci(&lo, &hi, a, se, widen, level))
		return json_null();
	json_t *o = json_object();
	int bad = !o;
	bad |= json_object_set_new(o, "level", json_real(level));
	bad |= json_object_set_new(o, "method", json_string(delong ? "delong" : "hanley_mcneil"));
	bad |= json_object_set_new(o, "lower", api__num(lo));
	bad |= json_object_set_new(o, "upper", api__num(hi));
	bad |= json_object_set_new(o, "se", api__num(se));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}
