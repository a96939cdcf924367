/*
 * test_headers.c - server/src/headers.c: framing refusals, media types and
 * request ids.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <string.h>

#include "headers.h"

/* Up to three headers, "" for none. Arrays, not pointers: Criterion may run
 * a parameterized test in a fresh process. */
struct fcase {
	char k[3][24];
	char v[3][24];
	int status;
	char code[32];
	bool body;
};

ParameterizedTestParameters(headers, framing)
{
	static struct fcase cases[] = {
	        {{""}, {""}, 0, "", false},
	        {{"Content-Length"}, {"0"}, 0, "", false},
	        {{"Content-Length"}, {"12"}, 0, "", true},
	        {{"content-length"}, {" 12 "}, 0, "", true},
	        {{"Content-Length", "Content-Length"}, {"12", "12"}, 0, "", true},
	        {{"Content-Length", "Content-Length"}, {"12", "13"}, 400, "bad_framing", true},
	        {{"Content-Length"}, {"12, 12"}, 400, "bad_framing", true},
	        {{"Content-Length"}, {"-1"}, 400, "bad_framing", true},
	        {{"Content-Length"}, {""}, 400, "bad_framing", true},
	        {{"Content-Length"}, {"99999999999999999999"}, 400, "bad_framing", true},
	        {{"Transfer-Encoding"}, {"chunked"}, 0, "", true},
	        {{"Transfer-Encoding"}, {"Chunked"}, 0, "", true},
	        {{"Transfer-Encoding"}, {"gzip"}, 501, "unsupported_transfer_encoding", true},
	        {{"Transfer-Encoding"},
	         {"gzip, chunked"},
	         501,
	         "unsupported_transfer_encoding",
	         true},
	        {{"Transfer-Encoding", "Transfer-Encoding"},
	         {"chunked", "chunked"},
	         501,
	         "unsupported_transfer_encoding",
	         true},
	        {{"Transfer-Encoding", "Content-Length"},
	         {"chunked", "5"},
	         400,
	         "bad_framing",
	         true},
	        {{"Content-Length", "Transfer-Encoding"},
	         {"5", "chunked"},
	         400,
	         "bad_framing",
	         true},
	        {{"Host", "Content-Type"}, {"x", "application/json"}, 0, "", false},
	        /* whitespace before the colon stays in 0.9.75's name */
	        {{"Transfer-Encoding ", "Content-Length"},
	         {"chunked", "5"},
	         400,
	         "malformed_header",
	         true},
	        {{"Content-Length\t"}, {"5"}, 400, "malformed_header", false},
	        {{" Host"}, {"x"}, 400, "malformed_header", false},
	        {{"X Y"}, {"x"}, 400, "malformed_header", false},
	        {{"X\x0bY"}, {"x"}, 400, "malformed_header", false},
	        {{"X-\xc3\xa9"}, {"x"}, 400, "malformed_header", false},
	        {{"X-Ok_1.2!#$%&'*+^`|~"}, {"x"}, 0, "", false},
	};
	return cr_make_param_array(struct fcase, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct fcase *t, headers, framing)
{
	srv__framing f = {0};
	const char *code = NULL, *detail = NULL;
	int status;

	for (int i = 0; i < 3 && t->k[i][0]; i++)
		srv__framing_add(&f, t->k[i], t->v[i]);
	status = srv__framing_check(&f, &code, &detail);
	cr_assert_eq(status, t->status, "%s: %s -> %d", t->k[0], t->v[0], status);
	if (status) {
		cr_assert_str_eq(code, t->code);
		cr_assert(detail && *detail);
	}
	cr_assert_eq(srv__framing_has_body(&f), t->body, "%s: %s", t->k[0], t->v[0]);
}

/* Layouts as 0.9.75 leaves them in its read buffer. */
Test(headers, header_in_place)
{
	char line[] = "Host\0  example\0\0X-Empty\0\0\0Transfer-Encodingchunked\0";
	char *host = line, *host_v = line + 7;
	char *empty = line + 16, *empty_v = line + 24;
	char *folded = line + 26;

	cr_assert(srv__header_in_place(host, host_v));
	cr_assert(srv__header_in_place(host, host_v - 2)); /* "Host:example" */
	cr_assert(srv__header_in_place(empty, empty_v));
	/* the value before the end of the name: the name grew over it */
	cr_assert_not(srv__header_in_place(folded, folded + 18));
	/* the name moved past the value (0.9.75 copies it to a new block) */
	cr_assert_not(srv__header_in_place(folded, host_v));
	/* something other than blanks between the name and the value */
	cr_assert_not(srv__header_in_place(host, empty_v));
}

Test(headers, json_media_type)
{
	cr_assert(srv__is_json_type("application/json"));
	cr_assert(srv__is_json_type("Application/JSON"));
	cr_assert(srv__is_json_type(" application/json ; charset=utf-8"));
	cr_assert(srv__is_json_type("application/json;charset=UTF-8"));
	cr_assert_not(srv__is_json_type(NULL));
	cr_assert_not(srv__is_json_type(""));
	cr_assert_not(srv__is_json_type("text/plain"));
	cr_assert_not(srv__is_json_type("application/jsonx"));
	cr_assert_not(srv__is_json_type("application/json-seq"));
	cr_assert_not(srv__is_json_type("application/problem+json"));
	cr_assert_not(srv__is_json_type("multipart/form-data; boundary=application/json"));
}

Test(headers, request_ids)
{
	char big[200];

	cr_assert(srv__valid_request_id("abc-123"));
	cr_assert(srv__valid_request_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	cr_assert(srv__valid_request_id("a/b+c=d:e.f_g"));
	cr_assert_not(srv__valid_request_id(""));
	cr_assert_not(srv__valid_request_id(NULL));
	cr_assert_not(srv__valid_request_id("has space"));
	cr_assert_not(srv__valid_request_id("quote\""));
	cr_assert_not(srv__valid_request_id("new\nline"));
	memset(big, 'a', 128);
	big[128] = '\0';
	cr_assert(srv__valid_request_id(big));
	big[128] = 'a';
	big[129] = '\0';
	cr_assert_not(srv__valid_request_id(big));
}
