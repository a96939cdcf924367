/*
 * test_meta.c - api/src/meta.c: a create body's tags and ttl_s read into a
 * stream's metadata (an empty body is {}), the refusals with their
 * pointers, and the reply fields.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "lossd/api_meta.h"

static const api_ctx ctx = API_CTX_INIT;

Test(meta, create_body_tags_and_ttl)
{
	api_meta m = {0};
	api_problem p = {0};
	const char *b = "{\"name\":\"x\",\"tags\":{\"run\":\"7\",\"a\":\"b\"},\"ttl_s\":60}";
	cr_assert_eq(api_meta_parse_create(&m, &ctx, b, strlen(b), &p), 0, "%s", p.detail);
	cr_assert_eq(m.ntags, 2);
	cr_assert_str_eq(m.key[0], "a"); /* sorted by key */
	cr_assert(api_meta_has_tag(&m, "run", "7"));
	cr_assert_eq(m.ttl_s, 60);
	api_meta_clear(&m);

	cr_assert_eq(api_meta_parse_create(&m, &ctx, "", 0, &p), 0);
	cr_assert_eq(m.ntags, 0);
	cr_assert_eq(m.ttl_s, 0);
}

Test(meta, create_body_refusals)
{
	api_meta m = {0};
	api_problem p = {0};
	const char *b = "{\"ttl_s\":-1}";
	cr_assert_eq(api_meta_parse_create(&m, &ctx, b, strlen(b), &p), -1);
	cr_assert_eq(p.status, 422);
	cr_assert_str_eq(p.pointer, "/ttl_s");
	b = "{\"tags\":{\"bad key\":\"v\"}}";
	cr_assert_eq(api_meta_parse_create(&m, &ctx, b, strlen(b), &p), -1);
	cr_assert_eq(p.status, 422);
	api_meta_clear(&m);
	cr_assert_eq(api_meta_parse_create(&m, &ctx, "{", 1, &p), -1);
	cr_assert_eq(p.status, 400);
}

Test(meta, render_sets_the_four_fields)
{
	api_meta m = {0};
	m.ttl_s = 5;
	m.created_ms = 1;
	m.updated_ms = 1001;
	json_t *o = json_object();
	cr_assert_eq(api_meta_render(o, &m), 0);
	cr_assert(json_is_object(json_object_get(o, "tags")));
	cr_assert_eq(json_integer_value(json_object_get(o, "ttl_s")), 5);
	cr_assert_str_eq(json_string_value(json_object_get(o, "created_at")),
	                 "1970-01-01T00:00:00.001Z");
	cr_assert_str_eq(json_string_value(json_object_get(o, "updated_at")),
	                 "1970-01-01T00:00:01.001Z");
	json_decref(o);
}
