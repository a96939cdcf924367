/*
 * test_auth.c - server/src/auth.c: the tokens file format, the bearer
 * check, the three roles and a reload that swaps tokens.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"

#define T1 "tok_aaaaaaaaaaaaaaaa1"
#define T2 "tok_bbbbbbbbbbbbbbbb2"

/* srv__auth_load of a tokens file holding text (the loader and its parser,
 * the way the server reads the file). */
static int load_text(srv__auth **out, const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/lossd-test-tokens-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	size_t n = strlen(text);
	cr_assert_eq(write(fd, text, n), (ssize_t)n);
	close(fd);
	int rc = srv__auth_load(out, path, err, errlen);
	unlink(path);
	return rc;
}

Test(auth, parse_and_check)
{
	srv__auth *a = NULL;
	char err[256];
	char who[SRV_PRINCIPAL_MAX + 1] = "";
	srv__role ro = SRV_ROLE_RO;

	cr_assert_eq(load_text(&a,
	                       "# tokens\n\n" T1 " alice\n  " T2 "\tbob@ci ro  \r\n"
	                       "tok_cccccccccccccccc3 carol RW\n"
	                       "tok_dddddddddddddddd4 org Admin\n",
	                       err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(srv__auth_count(a), 4);

	cr_assert_eq(srv__auth_check(a, "Bearer " T1, who, &ro), SRV_AUTH_OK);
	cr_assert_str_eq(who, "alice");
	cr_assert_eq(ro, SRV_ROLE_RW);
	cr_assert_eq(srv__auth_check(a, "bearer   " T2 " ", who, &ro), SRV_AUTH_OK);
	cr_assert_str_eq(who, "bob@ci");
	cr_assert_eq(ro, SRV_ROLE_RO);
	cr_assert_eq(srv__auth_check(a, "Bearer tok_cccccccccccccccc3", who, &ro), SRV_AUTH_OK);
	cr_assert_str_eq(who, "carol");
	cr_assert_eq(ro, SRV_ROLE_RW);
	cr_assert_eq(srv__auth_check(a, "Bearer tok_dddddddddddddddd4", who, &ro), SRV_AUTH_OK);
	cr_assert_str_eq(who, "org");
	cr_assert_eq(ro, SRV_ROLE_ADMIN);

	cr_assert_eq(srv__auth_check(a, NULL, who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "", who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "Bearer", who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "Bearer   ", who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "Basic dXNlcjpwYXNz", who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "Bearer" T1, who, &ro), SRV_AUTH_MISSING);
	cr_assert_eq(srv__auth_check(a, "Bearer tok_aaaaaaaaaaaaaaaa", who, &ro), SRV_AUTH_INVALID,
	             "a prefix is not the token");
	cr_assert_eq(srv__auth_check(a, "Bearer " T1 "x", who, &ro), SRV_AUTH_INVALID);
	cr_assert_eq(srv__auth_check(a, "Bearer TOK_AAAAAAAAAAAAAAAA1", who, &ro), SRV_AUTH_INVALID,
	             "tokens are case-sensitive");
	srv__auth_free(a);
	srv__auth_free(NULL);
}

struct bad {
	char text[96];
	char needle[48];
};

ParameterizedTestParameters(auth, bad_files)
{
	static struct bad cases[] = {
	        {"", "no tokens"},
	        {"# only a comment\n\n", "no tokens"},
	        {"short alice\n", "line 1: a token must be 16"},
	        {"\n" T1 "\n", "line 2: expected TOKEN PRINCIPAL"},
	        {T1 " alice\n" T1 " bob\n", "line 2: duplicate token"},
	        {T1 " alice adm\n", "must be rw, ro or admin"},
	        {T1 " alice administrator\n", "must be rw, ro or admin"},
	        {T1 " alice ro extra\n", "must be rw, ro or admin"},
	        {"tok_aaaaaaaaaaaa\"aaa alice\n", "may hold only"},
	        {T1 " al!ce\n", "a principal may hold only"},
	};
	return cr_make_param_array(struct bad, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad *t, auth, bad_files)
{
	srv__auth *a = (srv__auth *)1;
	char err[256] = "";

	cr_assert_eq(load_text(&a, t->text, err, sizeof(err)), -1, "%s", t->text);
	cr_assert_null(a);
	cr_assert(strstr(err, t->needle), "\"%s\" lacks \"%s\"", err, t->needle);
	cr_assert_null(strstr(err, "tok_"), "messages never show a token: %s", err);
}

Test(auth, load_file)
{
	char path[] = "/tmp/lossd-test-tokens-XXXXXX";
	int fd = mkstemp(path);
	srv__auth *a = NULL;
	char err[256];
	char who[SRV_PRINCIPAL_MAX + 1];
	srv__role ro;
	FILE *f;

	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	fputs(T1 " alice ro\n", f);
	fclose(f);
	cr_assert_eq(srv__auth_load(&a, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(srv__auth_check(a, "Bearer " T1, who, &ro), SRV_AUTH_OK);
	cr_assert_eq(ro, SRV_ROLE_RO);

	/* a reload swaps the whole table: T1 out, T2 in */
	f = fopen(path, "w");
	fputs(T2 " bob admin\n", f);
	fclose(f);
	cr_assert_eq(srv__auth_reload(a, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(srv__auth_check(a, "Bearer " T1, who, &ro), SRV_AUTH_INVALID);
	cr_assert_eq(srv__auth_check(a, "Bearer " T2, who, &ro), SRV_AUTH_OK);
	cr_assert_str_eq(who, "bob");
	cr_assert_eq(ro, SRV_ROLE_ADMIN);
	/* a file that does not parse keeps the tokens in use */
	f = fopen(path, "w");
	fputs("short bob\n", f);
	fclose(f);
	cr_assert_eq(srv__auth_reload(a, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "line 1"), "%s", err);
	cr_assert_eq(srv__auth_check(a, "Bearer " T2, who, &ro), SRV_AUTH_OK);
	cr_assert_eq(srv__auth_count(a), 1);
	srv__auth_free(a);
	unlink(path);
	cr_assert_eq(srv__auth_load(&a, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "cannot read"), "%s", err);
}
