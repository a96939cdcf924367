/*
 * fields.c - reading a request object's fields (see fields.h).
 *
 * Every handler validates its options the same way, so the wording of
 * every type and option error lives here: "<key> must be <what>, got <a
 * type or the value>". An unknown key is reported with the closest allowed
 * name (Levenshtein distance at most 2, or a prefix), because a misspelt
 * option is the usual cause.
 *
 * Invariants: nothing here allocates except api__get_tensor; the pointer in
 * a problem is always base + "/" + key with RFC 6901 escaping.
 */
#include "fields.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *api__pointer(char *buf, size_t cap, const char *base, const char *key)
{
	size_t n = 0;
	if (cap == 0)
		return buf;
	if (base) {
		n = strlen(base);
		if (n >= cap)
			n = cap - 1;
		memcpy(buf, base, n);
	}
	if (key && n + 1 < cap) {
		buf[n++] = '/';
		for (const char *k = key; *k && n + 1 < cap; k++) {
			if (*k == '~' || *k == '/') {
				if (n + 2 >= cap)
					break;
				buf[n++] = '~';
				buf[n++] = *k == '~' ? '0' : '1';
			} else {
				buf[n++] = *k;
			}
		}
	}
	buf[n] = '\0';
	return buf;
}

const char *api__type_name(const json_t *v)
{
	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "null";
}

json_t *api__field(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return v && !json_is_null(v) ? v : NULL;
}

/* Edit distance of a and b, or a big number when either is long. */
static size_t distance(const char *a, const char *b)
{
	enum { MAXN = 48 };
	size_t na = strlen(a), nb = strlen(b);
	size_t row[MAXN + 1];
	if (na > MAXN || nb > MAXN)
		return (size_t)-1;
	for (size_t j = 0; j <= nb; j++)
		row[j] = j;
	for (size_t i = 1; i <= na; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= nb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[nb];
}

static const char *closest(const char *key, const char *const *allowed)
{
	const char *best = NULL;
	size_t best_d = 3; /* suggest only within distance 2 */
	size_t nk = strlen(key);
	for (const char *const *a = allowed; *a; a++) {
		size_t d = distance(key, *a);
		/* "ignore" for "ignore_class": a prefix of 4+ characters counts as close */
		if (d >= best_d && nk >= 4 && strncmp(*a, key, nk) == 0)
			d = 2;
		if (d < best_d) {
			best_d = d;
			best = *a;
		}
	}
	return best;
}

int api__check_fields(const json_t *obj, const char *const *allowed, const char *base,
                      api_problem *p)
{
	const char *key;
	json_t *v;
	char ptr[sizeof p->pointer];
	json_object_foreach((json_t *)obj, key, v)
	{
		const char *const *a;
		for (a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				break;
		if (*a)
			continue;
		api__pointer(ptr, sizeof ptr, base, key);
		const char *hint = closest(key, allowed);
		if (hint)
			return api_problem_set(p, 422, "unknown_field", ptr,
			                       "unknown field \"%.80s\": did you mean \"%s\"?", key,
			                       hint);
		return api_problem_set(p, 422, "unknown_field", ptr, "unknown field \"%.80s\"",
		                       key);
	}
	return 0;
}

int api__require(const json_t *obj, const char *base, const char *key, api_problem *p)
{
	char ptr[sizeof p->pointer];
	if (api__field(obj, key))
		return 0;
	return api_problem_set(p, 422, "missing_field", api__pointer(ptr, sizeof ptr, base, key),
	                       "%s is required", key);
}

static int bad_type(const json_t *v, const char *base, const char *key, const char *what,
                    api_problem *p)
{
	char ptr[sizeof p->pointer];
	return api_problem_set(p, 422, "bad_type", api__pointer(ptr, sizeof ptr, base, key),
	                       "%s must be %s, got %s", key, what, api__type_name(v));
}

int api__get_bool(bool *out, const json_t *obj, const char *base, const char *key, bool def,
                  api_problem *p)
{
	json_t *v = api__field(obj, key);
	*out = def;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return bad_type(v, base, key, "a boolean (true or false)", p);
	*out = json_is_true(v);
	return 0;
}

/* x in the fewest of 15..17 significant digits that read back as x. */
static const char *num_str(char buf[32], double x)
{
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, 32, "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	return buf;
}

int api__get_number(double *out, const json_t *obj, const char *base, const char *key, double def,
                    double lo, double hi, api_problem *p)
{
	char ptr[sizeof p->pointer];
	char a[32], b[32], c[32];
	json_t *v = api__field(obj, key);
	*out = def;
	if (!v)
		return 0;
	if (!json_is_number(v))
		return bad_type(v, base, key, "a number", p);
	double x = json_number_value(v);
	if (!(x >= lo && x <= hi)) {
		api__pointer(ptr, sizeof ptr, base, key);
		if (lo == -INFINITY)
			return api_problem_set(p, 422, "bad_option", ptr,
			                       "%s must be at most %s, got %s", key, num_str(a, hi),
			                       num_str(c, x));
		if (hi == INFINITY)
			return api_problem_set(p, 422, "bad_option", ptr,
			                       "%s must be at least %s, got %s", key,
			                       num_str(a, lo), num_str(c, x));
		return api_problem_set(p, 422, "bad_option", ptr, "%s must be in [%s, %s], got %s",
		                       key, num_str(a, lo), num_str(b, hi), num_str(c, x));
	}
	*out = x;
	return 0;
}

int api__get_int(int64_t *out, const json_t *obj, const char *base, const char *key, int64_t def,
                 int64_t min, int64_t max, api_problem *p)
{
	char ptr[sizeof p->pointer];
	char c[32];
	json_t *v = api__field(obj, key);
	int64_t x;
	*out = def;
	if (!v)
		return 0;
	api__pointer(ptr, sizeof ptr, base, key);
	if (json_is_integer(v)) {
		x = (int64_t)json_integer_value(v);
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		/* 2^63 is exact in double; anything at or past it does not fit. */
		if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
			return api_problem_set(p, 422, "bad_option", ptr,
			                       "%s must be a whole number, got %s", key,
			                       num_str(c, d));
		x = (int64_t)d;
	} else {
		return bad_type(v, base, key, "a whole number", p);
	}
	if (x < min || x > max)
		return api_problem_set(p, 422, "bad_option", ptr,
		                       "%s must be in [%lld, %lld], got %lld", key, (long long)min,
		                       (long long)max, (long long)x);
	*out = x;
	return 0;
}

int api__get_ignore_class(bool *has, int64_t *out, const json_t *obj, const char *base,
                          api_problem *p)
{
	char ptr[sizeof p->pointer];
	bool has1 = api__field(obj, "ignore_class") != NULL;
	bool has2 = api__field(obj, "ignore_index") != NULL;
	int64_t a = 0, b = 0;
	*has = has1 || has2;
	*out = 0;
	if ((has1 && api__get_int(&a, obj, base, "ignore_class", 0, INT64_MIN, INT64_MAX, p)) ||
	    (has2 && api__get_int(&b, obj, base, "ignore_index", 0, INT64_MIN, INT64_MAX, p)))
		return -1;
	if (has1 && has2 && a != b)
		return api_problem_set(
		        p, 422, "bad_option", api__pointer(ptr, sizeof ptr, base, "ignore_index"),
		        "ignore_index is a synonym of ignore_class; they differ (%lld and %lld)",
		        (long long)a, (long long)b);
	*out = has1 ? a : b;
	return 0;
}

int api__get_enum(int *out, const json_t *obj, const char *base, const char *key,
                  const char *const *names, int def, api_problem *p)
{
	char ptr[sizeof p->pointer];
	/* Every name, whole: the longest list (the loss names) is ~240
	 * bytes, and the detail (api_problem) holds it with the key and the
	 * value echoed. A list that did not fit would end at its last whole
	 * name with ", ..." rather than mid-word. */
	char list[400];
	json_t *v = api__field(obj, key);
	*out = def;
	if (!v)
		return 0;
	size_t n = 0;
	list[0] = '\0';
	for (const char *const *a = names; *a; a++) {
		const char *sep = a == names ? "" : ", ";
		if (n + strlen(sep) + strlen(*a) + 2 + sizeof ", ..." > sizeof list) {
			snprintf(list + n, sizeof list - n, ", ...");
			break;
		}
		n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", sep, *a);
	}
	if (!json_is_string(v)) {
		api__pointer(ptr, sizeof ptr, base, key);
		return api_problem_set(p, 422, "bad_type", ptr,
		                       "%s must be a string, one of %s; got %s", key, list,
		                       api__type_name(v));
	}
	const char *s = json_string_value(v);
	for (int i = 0; names[i]; i++) {
		if (strcmp(names[i], s) == 0) {
			*out = i;
			return 0;
		}
	}
	api__pointer(ptr, sizeof ptr, base, key);
	return api_problem_set(p, 422, "bad_option", ptr, "%s must be one of %s; got \"%.60s\"",
	                       key, list, s);
}

int api__get_string(const char **out, const json_t *obj, const char *base, const char *key,
                    const char *def, api_problem *p)
{
	json_t *v = api__field(obj, key);
	*out = def;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return bad_type(v, base, key, "a string", p);
	*out = json_string_value(v);
	return 0;
}

int api__get_tensor(api_tensor *out, const json_t *obj, const char *base, const char *key,
                    bool required, const api_tensor_opts *opts, api_problem *p)
{
	char ptr[sizeof p->pointer];
	json_t *v = api__field(obj, key);
	if (!v) {
		api_tensor empty = API_TENSOR_INIT;
		*out = empty;
		return required ? api__require(obj, base, key, p) : 0;
	}
	return api_tensor_decode(out, v, api__pointer(ptr, sizeof ptr, base, key), opts, p);
}
