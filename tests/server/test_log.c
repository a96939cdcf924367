/*
 * test_log.c - server/src/log.c: JSON string escaping keeps every line
 * valid JSON, whatever bytes the client sent, and never overflows.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "log.h"

static const char *esc(const char *s, size_t cap, char *buf)
{
	size_t pos = 0;
	srv__json_str(buf, cap, &pos, s);
	cr_assert_eq(strlen(buf), pos);
	return buf;
}

Test(log, escapes)
{
	char b[256];

	cr_assert_str_eq(esc("/v1/loss", sizeof(b), b), "\"/v1/loss\"");
	cr_assert_str_eq(esc("a\"b\\c", sizeof(b), b), "\"a\\\"b\\\\c\"");
	cr_assert_str_eq(esc("\n\x01", sizeof(b), b), "\"\\u000a\\u0001\"");
	cr_assert_str_eq(esc("\xff\xc3\xa9", sizeof(b), b), "\"\\u00ff\\u00c3\\u00a9\"");
	cr_assert_str_eq(esc(NULL, sizeof(b), b), "null");
}

Test(log, truncates_inside_the_quotes)
{
	char b[16];
	const char *s = esc("0123456789abcdefghijklmnop", sizeof(b), b);

	cr_assert_eq(strlen(s), sizeof(b) - 1);
	cr_assert_eq(s[0], '"');
	cr_assert_eq(s[strlen(s) - 1], '"');
	/* An escape is never cut in half. */
	s = esc("\x01\x01\x01\x01", 12, b);
	cr_assert_str_eq(s, "\"\\u0001\"");
}

Test(log, levels)
{
	srv__log_set_level(SRV_LOG_WARN);
	cr_assert_not(srv__log_enabled(SRV_LOG_INFO));
	cr_assert(srv__log_enabled(SRV_LOG_ERROR));
	srv__log_set_level(SRV_LOG_OFF);
	cr_assert_not(srv__log_enabled(SRV_LOG_ERROR));
	cr_assert_str_eq(srv__log_level_name(SRV_LOG_DEBUG), "debug");
}
