/*
 * meta.c - a stream's metadata (api_meta.h, docs/API.md section 8): tags and
 * ttl_s from a create body or a JSON merge patch (RFC 7396), the text the
 * server stores, and the reply fields.
 *
 * Tags are kept sorted by key in two small arrays (at most 16 pairs), so
 * rendering is stable and a lookup is a short scan. A patch works on a
 * copy and swaps it in only when every check passed: a bad patch changes
 * nothing.
 *
 * Times are milliseconds since the epoch, rendered as RFC 3339 UTC with
 * milliseconds by hand (no locale, no strftime).
 */
#include "lossd/api_meta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "mem.h"

void api_meta_clear(api_meta *m)
{
	for (size_t i = 0; i < m->ntags; i++) {
		free(m->key[i]);
		free(m->val[i]);
	}
	memset(m, 0, sizeof(*m));
}

int api_meta_copy(api_meta *out, const api_meta *m)
{
	*out = *m;
	out->ntags = 0;
	for (size_t i = 0; i < m->ntags; i++) {
		out->key[i] = strdup(m->key[i]);
		out->val[i] = strdup(m->val[i]);
		out->ntags = i + 1;
		if (!out->key[i] || !out->val[i]) {
			api_meta_clear(out);
			return -1;
		}
	}
	return 0;
}

bool api_meta_key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n < 1 || n > API_META_MAX_KEY)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = k[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* UTF-8 code points in s (jansson has validated the encoding). */
static size_t utf8_len(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static int find_tag(const api_meta *m, const char *key)
{
	for (size_t i = 0; i < m->ntags; i++)
		if (strcmp(m->key[i], key) == 0)
			return (int)i;
	return -1;
}

static void remove_tag(api_meta *m, int i)
{
	free(m->key[i]);
	free(m->val[i]);
	memmove(m->key + i, m->key + i + 1, (m->ntags - (size_t)i - 1) * sizeof(char *));
	memmove(m->val + i, m->val + i + 1, (m->ntags - (size_t)i - 1) * sizeof(char *));
	m->ntags--;
}

/* Sets key = val (both checked by the caller), keeping keys sorted. */
static int set_tag(api_meta *m, const char *key, const char *val, api_problem *p)
{
	int i = find_tag(m, key);
	char *v = strdup(val);
	if (!v)
		return api_problem_set(p, 503, "out_of_memory", "", "out of memory");
	if (i >= 0) {
		free(m->val[i]);
		m->val[i] = v;
		return 0;
	}
	if (m->ntags == API_META_MAX_TAGS) {
		free(v);
		return api_problem_set(p, 422, "bad_option", "/tags",
		                       "a stream has at most %d tags", API_META_MAX_TAGS);
	}
	char *k = strdup(key);
	if (!k) {
		free(v);
		return api_problem_set(p, 503, "out_of_memory", "", "out of memory");
	}
	size_t at = 0;
	while (at < m->ntags && strcmp(m->key[at], key) < 0)
		at++;
	memmove(m->key + at + 1, m->key + at, (m->ntags - at) * sizeof(char *));
	memmove(m->val + at + 1, m->val + at, (m->ntags - at) * sizeof(char *));
	m->key[at] = k;
	m->val[at] = v;
	m->ntags++;
	return 0;
}

/* Applies a "tags" object to m: a string sets, null (patch only) removes. */
static int apply_tags(api_meta *m, const json_t *tags, bool patch, api_problem *p)
{
	const char *k;
	json_t *v;
	char ptr[sizeof p->pointer];
	if (!json_is_object(tags))
		return api_problem_set(p, 422, "bad_type", "/tags",
		                       "tags must be an object of strings, got %s",
		                       api__type_name(tags));
	json_object_foreach((json_t *)tags, k, v)
	{
		snprintf(ptr, sizeof ptr, "/tags/%.64s", k);
		if (!api_meta_key_ok(k))
			return api_problem_set(
			        p, 422, "bad_option", ptr,
			        "a tag key must match [A-Za-z0-9_.-]{1,64}; \"%.80s\" "
			        "does not",
			        k);
		if (patch && json_is_null(v)) {
			int i = find_tag(m, k);
			if (i >= 0)
				remove_tag(m, i);
			continue;
		}
		if (!json_is_string(v))
			return api_problem_set(
			        p, 422, "bad_type", ptr, "tag %s must be a string%s, got %s", k,
			        patch ? " (or null to remove it)" : "", api__type_name(v));
		const char *s = json_string_value(v);
		if (strlen(s) != json_string_length(v) || utf8_len(s) > API_META_MAX_VALUE)
			return api_problem_set(p, 422, "bad_option", ptr,
			                       "a tag value is at most %d characters without NUL",
			                       API_META_MAX_VALUE);
		if (set_tag(m, k, s, p))
			return -1;
	}
	return 0;
}

static int get_ttl(int64_t *out, const json_t *obj, api_problem *p)
{
	return api__get_int(out, obj, "", "ttl_s", 0, 0, API_META_MAX_TTL, p);
}

int api_meta_parse(api_meta *m, const json_t *obj, api_problem *p)
{
	json_t *tags = api__field(obj, "tags");
	if (tags && !json_is_null(tags) && apply_tags(m, tags, false, p))
		return -1;
	return get_ttl(&m->ttl_s, obj, p);
}

int api_meta_parse_create(api_meta *m, const api_ctx *ctx, const char *body, size_t len,
                          api_problem *p)
{
	json_t *obj = len ? api_parse_body(ctx, body, len, p) : json_object();
	if (!obj)
		return len ? -1 : api_problem_set(p, 503, "out_of_memory", "", "out of memory");
	int rc = api_meta_parse(m, obj, p);
	json_decref(obj);
	return rc;
}

static const char *const patch_fields[] = {"tags", "ttl_s", NULL};

int api_meta_patch(api_meta *m, const api_ctx *ctx, const char *body, size_t len, api_problem *p)
{
	api_meta n;
	int rc = -1;
	json_t *obj = api_parse_body(ctx, body, len, p);
	if (!obj)
		return -1;
	if (api_meta_copy(&n, m)) {
		json_decref(obj);
		return api_problem_set(p, 503, "out_of_memory", "", "out of memory");
	}
	if (api__check_fields(obj, patch_fields, "", p))
		goto out;
	json_t *tags = json_object_get(obj, "tags"), *ttl = json_object_get(obj, "ttl_s");
	if (tags && json_is_null(tags)) {
		while (n.ntags)
			remove_tag(&n, (int)n.ntags - 1);
	} else if (tags && apply_tags(&n, tags, true, p)) {
		goto out;
	}
	if (ttl && json_is_null(ttl))
		n.ttl_s = 0;
	else if (ttl && get_ttl(&n.ttl_s, obj, p))
		goto out;
	api_meta_clear(m);
	*m = n;
	memset(&n, 0, sizeof n);
	rc = 0;
out:
	api_meta_clear(&n);
	json_decref(obj);
	return rc;
}

static json_t *tags_json(const api_meta *m)
{
	json_t *t = json_object();
	for (size_t i = 0; t && i < m->ntags; i++)
		if (json_object_set_new(t, m->key[i], json_string(m->val[i]))) {
			json_decref(t);
			return NULL;
		}
	return t;
}

char *api_meta_text(const api_meta *m)
{
	json_t *o = json_pack("{so sI sI}", "tags", tags_json(m), "ttl_s", (json_int_t)m->ttl_s,
	                      "created_ms", (json_int_t)m->created_ms);
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (!s)
		return NULL;
	char *r = strdup(s); /* free()-able whatever jansson's allocator is */
	free(s);
	return r;
}

int api_meta_load(api_meta *m, const char *text)
{
	api_problem p;
	json_t *o = api__json_loads(text, 0, NULL);
	int rc = -1;
	memset(m, 0, sizeof(*m));
	if (!json_is_object(o))
		goto out;
	json_t *tags = json_object_get(o, "tags"), *c = json_object_get(o, "created_ms");
	if ((tags && apply_tags(m, tags, false, &p)) ||
	    (json_object_get(o, "ttl_s") && get_ttl(&m->ttl_s, o, &p)))
		goto out;
	if (json_is_integer(c))
		m->created_ms = (int64_t)json_integer_value(c);
	rc = 0;
out:
	if (rc)
		api_meta_clear(m);
	json_decref(o);
	return rc;
}

void api_meta_time(char out[API_META_TIME_BYTES], int64_t ms)
{
	/* days since 1970-01-01 to a civil date (H. Hinnant's algorithm) */
	int64_t days = ms / 86400000, rem = ms % 86400000;
	if (rem < 0) {
		rem += 86400000;
		days--;
	}
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
	int64_t mo = mp < 10 ? mp + 3 : mp - 9;
	y += mo <= 2;
	if (y < 0 || y > 9999)
		y = y < 0 ? 0 : 9999; /* RFC 3339 has four-digit years */
	snprintf(out, API_META_TIME_BYTES, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, (int)mo,
	         (int)d, (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
	         (int)(rem % 1000));
}

int api_meta_render(json_t *o, const api_meta *m)
{
	char c[API_META_TIME_BYTES], u[API_META_TIME_BYTES];
	api_meta_time(c, m->created_ms);
	api_meta_time(u, m->updated_ms);
	int bad = json_object_set_new(o, "tags", tags_json(m));
	bad |= json_object_set_new(o, "ttl_s", json_integer(m->ttl_s));
	bad |= json_object_set_new(o, "created_at", json_string(c));
	bad |= json_object_set_new(o, "updated_at", json_string(u));
	return bad ? -1 : 0;
}

bool api_meta_has_tag(const api_meta *m, const char *key, const char *val)
{
	int i = find_tag(m, key);
	return i >= 0 && strcmp(m->val[i], val) == 0;
}
