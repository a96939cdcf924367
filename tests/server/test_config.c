/*
 * test_config.c - server/src/config.c: defaults, environment, flags,
 * precedence and usage errors; the cgroup CPU quota; CORS origins.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static int parse(srv__config *c, char *const *argv, char *const *envp, char *err)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	return srv__config_parse(c, argc, argv, envp, err, 256);
}

Test(config, defaults)
{
	srv__config c;
	char err[256];
	char *argv[] = {"lossd", NULL};

	cr_assert_eq(parse(&c, argv, NULL, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.bind, "127.0.0.1"); /* loopback unless told (the image says 0.0.0.0) */
	cr_assert_eq(c.port, 8080);
	cr_assert_str_eq(c.cors_origins, "");
	cr_assert_geq(c.threads, 1);
	cr_assert_geq(c.par_threads, 0);
	cr_assert_eq(c.http_threads, 2);
	cr_assert_str_eq(c.data_dir, "./data");
	cr_assert_eq(c.max_body, (size_t)64 << 20);
	cr_assert_eq(c.max_inflight, 256);
	cr_assert_eq(c.log_level, SRV_LOG_INFO);
	cr_assert_not(c.test_hooks);
	cr_assert_str_eq(c.check_url, "");
	cr_assert_gt(c.timeout, 0, "libmicrohttpd's default timeout is never; ours must not be");
}

/* The connection and body limits of issue 13: derived defaults, flags and
 * variables. */
Test(config, connection_and_body_limits)
{
	srv__config c;
	char err[256];
	char *argv[] = {"lossd", NULL};
	char *argv2[] = {"lossd", "--max-connections=100", "--min-body-rate",
	                 "0",     "--max-buffered=8MiB",   "--max-body=4MiB",
	                 NULL};
	char *argv3[] = {"lossd", "--max-per-ip", "0", "--max-buffered-per-principal=1MiB", NULL};
	char *envp[] = {"LOSSD_MIN_BODY_RATE=4KiB", "LOSSD_MIN_BODY_RATE_WINDOW=3", NULL};

	cr_assert_eq(parse(&c, argv, NULL, err), SRV_CONFIG_RUN);
	cr_assert_eq(c.max_connections, 1024);
	cr_assert_eq(c.max_per_ip, 128, "an eighth of --max-connections");
	cr_assert_eq(c.min_body_rate, 1024);
	cr_assert_eq(c.min_body_rate_window, 10);
	cr_assert_eq(c.max_buffered_per_principal, c.max_buffered / 4);
	cr_assert_eq(parse(&c, argv2, envp, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.max_per_ip, 12);
	cr_assert_eq(c.min_body_rate, 0, "the flag wins over the variable");
	cr_assert_eq(c.min_body_rate_window, 3);
	cr_assert_eq(c.max_buffered_per_principal, (size_t)4 << 20, "at least --max-body");
	cr_assert_eq(parse(&c, argv3, envp, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.max_per_ip, 0);
	cr_assert_eq(c.min_body_rate, 4096);
	cr_assert_eq(c.max_buffered_per_principal, c.max_body, "raised to --max-body");
}

Test(config, flags_both_forms)
{
	srv__config c;
	char err[256];
	char *argv[] = {"lossd",
	                "--port",
	                "9000",
	                "--bind=127.0.0.1",
	                "--threads",
	                "3",
	                "--http-threads=4",
	                "--par-threads",
	                "0",
	                "--data-dir",
	                "/tmp/x",
	                "--max-body",
	                "2MiB",
	                "--max-inflight=7",
	                "--log-level",
	                "DEBUG",
	                "--test-hooks",
	                NULL};

	cr_assert_eq(parse(&c, argv, NULL, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.port, 9000);
	cr_assert_str_eq(c.bind, "127.0.0.1");
	cr_assert_eq(c.threads, 3);
	cr_assert_eq(c.http_threads, 4);
	cr_assert_eq(c.par_threads, 0);
	cr_assert_str_eq(c.data_dir, "/tmp/x");
	cr_assert_eq(c.max_body, (size_t)2 << 20);
	cr_assert_eq(c.max_inflight, 7);
	cr_assert_eq(c.log_level, SRV_LOG_DEBUG);
	cr_assert(c.test_hooks);
}

Test(config, env_then_flags_win)
{
	srv__config c;
	char err[256];
	char *envp[] = {"PATH=/bin",
	                "LOSSD_PORT=7000",
	                "LOSSD_DATA_DIR=/srv/lossd",
	                "LOSSD_MAX_BODY=1k",
	                "LOSSD_TEST_HOOKS=1",
	                "LOSSD_THREADS=",
	                NULL};
	char *argv1[] = {"lossd", NULL};
	char *argv2[] = {"lossd", "--port", "7001", NULL};

	cr_assert_eq(parse(&c, argv1, envp, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.port, 7000);
	cr_assert_str_eq(c.data_dir, "/srv/lossd");
	cr_assert_eq(c.max_body, 1024);
	cr_assert(c.test_hooks);
	cr_assert_geq(c.threads, 1, "an empty variable keeps the default");

	cr_assert_eq(parse(&c, argv2, envp, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.port, 7001);
}

Test(config, help_version_check)
{
	srv__config c;
	char err[256];
	char *h[] = {"lossd", "--port", "1", "--help", NULL};
	char *v[] = {"lossd", "--version", NULL};
	char *k[] = {"lossd", "--check", "http://127.0.0.1:1/healthz", NULL};

	cr_assert_eq(parse(&c, h, NULL, err), SRV_CONFIG_HELP);
	cr_assert_eq(parse(&c, v, NULL, err), SRV_CONFIG_VERSION);
	cr_assert_eq(parse(&c, k, NULL, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.check_url, "http://127.0.0.1:1/healthz");
}

/* Arrays, not pointers: Criterion may run a parameterized test in a fresh
 * process where the parent's pointers mean nothing. */
struct bad {
	char a[32], b[32]; /* b "" means: no second argument */
	char needle[32];   /* in the message */
};

ParameterizedTestParameters(config, usage_errors)
{
	static struct bad cases[] = {
	        {"--port", "65536", "--port"},
	        {"--port", "-1", "--port"},
	        {"--port", "80x", "--port"},
	        {"--threads", "0", "--threads"},
	        {"--max-body", "12XB", "--max-body"},
	        {"--max-body", "0", "--max-body"},
	        {"--log-level", "loud", "--log-level"},
	        {"--frobnicate", "1", "unknown option"},
	        {"stray", "", "unexpected argument"},
	        {"--port", "", "needs a value"},
	        {"--max-inflight", "99999999999999999999", "--max-inflight"},
	        {"--bind", "localhost", "--bind"},
	        {"--bind", "10.0.0.256", "--bind"},
	        {"--cors-origin", "*", "never *"},
	        {"--cors-origin", "https://a.example/", "exact origin"},
	        {"--cors-origin", "https://a.example/app", "exact origin"},
	        {"--cors-origin", "a.example", "exact origin"},
	        {"--cors-origin", "https://A.example", "exact origin"},
	        {"--cors-origin", "https://a.example:", "exact origin"},
	};
	return cr_make_param_array(struct bad, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct bad *t, config, usage_errors)
{
	srv__config c;
	char err[256] = "";
	char *argv[] = {"lossd", t->a, t->b[0] ? t->b : NULL, NULL};

	cr_assert_eq(parse(&c, argv, NULL, err), SRV_CONFIG_EUSAGE, "%s %s", t->a, t->b);
	cr_assert(strstr(err, t->needle), "message \"%s\" lacks \"%s\"", err, t->needle);
}

Test(config, tls_files_go_together)
{
	srv__config c;
	char err[256];
	char *one[] = {"lossd", "--tls-cert", "/c.pem", NULL};
	char *both[] = {"lossd",
	                "--tls-cert",
	                "/c.pem",
	                "--tls-key=/k.pem",
	                "--tokens-file",
	                "/t",
	                "--request-timeout",
	                "5",
	                NULL};

	cr_assert_eq(parse(&c, one, NULL, err), SRV_CONFIG_EUSAGE);
	cr_assert(strstr(err, "--tls-key"), "%s", err);
	cr_assert_eq(parse(&c, both, NULL, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert_str_eq(c.tls_cert, "/c.pem");
	cr_assert_str_eq(c.tls_key, "/k.pem");
	cr_assert_str_eq(c.tokens_file, "/t");
	cr_assert_eq(c.request_timeout, 5);
}

Test(config, bad_env_is_a_usage_error)
{
	srv__config c;
	char err[256];
	char *envp[] = {"LOSSD_PORT=eighty", NULL};
	char *argv[] = {"lossd", NULL};

	cr_assert_eq(parse(&c, argv, envp, err), SRV_CONFIG_EUSAGE);
	cr_assert(strstr(err, "LOSSD_PORT"), "%s", err);
}

Test(config, sizes)
{
	size_t v;

	cr_assert_eq(srv__parse_size("0", 100, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(srv__parse_size("64MiB", (size_t)1 << 40, &v), 0);
	cr_assert_eq(v, (size_t)64 << 20);
	cr_assert_eq(srv__parse_size("3k", (size_t)1 << 40, &v), 0);
	cr_assert_eq(v, 3072);
	cr_assert_eq(srv__parse_size("1G", (size_t)1 << 40, &v), 0);
	cr_assert_eq(v, (size_t)1 << 30);
	cr_assert_eq(srv__parse_size("2GiB", (size_t)1 << 30, &v), -1, "over max");
	cr_assert_eq(srv__parse_size("", 100, &v), -1);
	cr_assert_eq(srv__parse_size("-1", 100, &v), -1);
	cr_assert_eq(srv__parse_size("1.5M", (size_t)1 << 40, &v), -1);
	cr_assert_eq(srv__parse_size("18446744073709551615k", (size_t)-1, &v), -1, "overflow");
}

Test(config, store_urls)
{
	srv__config c;
	char err[256];
	char *def[] = {"lossd", NULL};
	char *dir[] = {"lossd", "--data-dir", "/a", "--store", "sqlite:/var/lib/lossd", NULL};
	char *pg[] = {"lossd",
	              "--store=postgresql://lossd@db:5432/lossd?sslmode=require",
	              "--store-connections",
	              "8",
	              "--store-password-file",
	              "/run/pw",
	              NULL};
	char *bad[] = {"lossd", "--store", "mysql://x", NULL};
	char *nodir[] = {"lossd", "--store", "sqlite:", NULL};
	char *env[] = {"LOSSD_STORE=postgres://h/d", NULL};

	cr_assert_eq(parse(&c, def, NULL, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.store, "sqlite");
	cr_assert_eq(c.store_connections, 4);
	cr_assert_eq(c.store_timeout, 10);
	cr_assert_eq(parse(&c, dir, NULL, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.data_dir, "/var/lib/lossd", "sqlite:DIR names the data dir");
	cr_assert_eq(parse(&c, pg, NULL, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.store, "postgresql://lossd@db:5432/lossd?sslmode=require");
	cr_assert_eq(c.store_connections, 8);
	cr_assert_str_eq(c.store_password_file, "/run/pw");
	cr_assert_eq(parse(&c, def, env, err), SRV_CONFIG_RUN);
	cr_assert_str_eq(c.store, "postgres://h/d");
	cr_assert_eq(parse(&c, bad, NULL, err), SRV_CONFIG_EUSAGE);
	cr_assert(strstr(err, "--store"), "%s", err);
	cr_assert_eq(parse(&c, nodir, NULL, err), SRV_CONFIG_EUSAGE);
}

Test(config, cors_origins)
{
	srv__config c;
	char err[256];
	char *argv[] = {"lossd", "--cors-origin", "https://dash.example.com:8443",
	                "--cors-origin=http://127.0.0.1:3000", NULL};
	char *envp[] = {"LOSSD_CORS_ORIGINS=https://a.example, http://[::1]:8000", NULL};

	cr_assert_eq(parse(&c, argv, envp, err), SRV_CONFIG_RUN, "%s", err);
	cr_assert(srv__cors_allowed(&c, "https://dash.example.com:8443"));
	cr_assert(srv__cors_allowed(&c, "http://127.0.0.1:3000"));
	cr_assert(srv__cors_allowed(&c, "https://a.example"));
	cr_assert(srv__cors_allowed(&c, "http://[::1]:8000"));
	cr_assert_not(srv__cors_allowed(&c, "https://dash.example.com"), "the port is part of it");
	cr_assert_not(srv__cors_allowed(&c, "http://dash.example.com:8443"), "so is the scheme");
	cr_assert_not(srv__cors_allowed(&c, "https://a.example.evil"));
	cr_assert_not(srv__cors_allowed(&c, "https://a.exampl"));
	cr_assert_not(srv__cors_allowed(&c, "null"));
	cr_assert_not(srv__cors_allowed(&c, ""));
	cr_assert_not(srv__cors_allowed(&c, NULL));
}

/* A fake cgroup tree: root/name holds text. */
static void put(const char *root, const char *name, const char *text)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

Test(config, cpu_count_from_cgroup_quota)
{
	char root[] = "/tmp/lossd-cgroup-XXXXXX";
	char sub[600];
	long online = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_not_null(mkdtemp(root));
	cr_assert_eq(srv__cpu_count(root), online > 256 ? 256 : online, "no cgroup files");
	/* v2 */
	put(root, "cpu.max", "max 100000\n");
	cr_assert_eq(srv__cpu_count(root), online > 256 ? 256 : online, "no quota");
	put(root, "cpu.max", "100000 100000\n");
	cr_assert_eq(srv__cpu_count(root), 1);
	put(root, "cpu.max", "50000 100000\n");
	cr_assert_eq(srv__cpu_count(root), 1, "half a CPU is one thread");
	put(root, "cpu.max", "150000 100000\n");
	cr_assert_eq(srv__cpu_count(root), online >= 2 ? 2 : online, "rounded up");
	put(root, "cpu.max", "100000000 100000\n");
	cr_assert_eq(srv__cpu_count(root), online > 256 ? 256 : online, "capped by online");
	snprintf(sub, sizeof sub, "%s/cpu.max", root);
	unlink(sub);
	/* v1 */
	snprintf(sub, sizeof sub, "%s/cpu", root);
	cr_assert_eq(mkdir(sub, 0700), 0);
	put(sub, "cpu.cfs_quota_us", "-1\n");
	put(sub, "cpu.cfs_period_us", "100000\n");
	cr_assert_eq(srv__cpu_count(root), online > 256 ? 256 : online, "v1 without quota");
	put(sub, "cpu.cfs_quota_us", "100000\n");
	cr_assert_eq(srv__cpu_count(root), 1);
	put(sub, "cpu.cfs_quota_us", "200000\n");
	cr_assert_eq(srv__cpu_count(root), online >= 2 ? 2 : online);
	char cmd[700];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	cr_assert_eq(system(cmd), 0);
}
