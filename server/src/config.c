/*
 * config.c - lossd's configuration from defaults, LOSSD_* variables and
 * flags.
 *
 * One table lists every setting once: its flag, its environment variable,
 * its kind, where it lands in srv__config and its help text. Parsing the
 * environment and the command line walk the same table, and --help prints
 * it, so the three cannot drift apart. Precedence: defaults < environment <
 * flags. The parser is reentrant (no getopt state) so tests can call it
 * again and again.
 *
 * Invariants: after SRV_CONFIG_RUN every field is within the bounds the
 * table states (ports 0..65535, thread counts >= 1, sizes > 0).
 * It does not touch the file system (the data dir is created at startup).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "lossd/api.h"
#include "lossd/stream.h"

#ifndef LOSSD_VERSION
#define LOSSD_VERSION "0.0.0"
#endif

enum kind { K_INT, K_SIZE, K_I64, K_STR, K_LEVEL, K_BOOL, K_ORIGINS, K_LIST };

struct opt {
	const char *flag; /* without the leading "--" */
	const char *env;  /* NULL: flag only */
	enum kind kind;
	size_t off;         /* offset in srv__config */
	size_t cap;         /* K_STR: buffer size */
	long long min, max; /* K_INT, K_I64, K_SIZE bounds */
	const char *arg;    /* metavariable in --help */
	const char *help;
	const char *dflt; /* default as shown in --help */
};

#define OFF(f) offsetof(srv__config, f)
#define CAP(f) sizeof(((srv__config *)0)->f)

static const struct opt opts[] = {
        {"bind", "LOSSD_BIND", K_STR, OFF(bind), CAP(bind), 0, 0, "ADDR",
         "numeric IPv4 or IPv6 address to listen on (0.0.0.0: every interface, as the "
         "container image sets)",
         "127.0.0.1"},
        {"port", "LOSSD_PORT", K_INT, OFF(port), 0, 0, 65535, "N",
         "TCP port; 0 picks a free one (see the \"listening\" log line)", "8080"},
        {"threads", "LOSSD_THREADS", K_INT, OFF(threads), 0, 1, 1024, "N",
         "worker threads running requests (libuv pool, UV_THREADPOOL_SIZE)",
         "CPUs (the cgroup CPU quota when lower than the CPUs online)"},
        {"par-threads", "LOSSD_PAR_THREADS", K_INT, OFF(par_threads), 0, 0, 256, "N",
         "helper threads one big request is split across (0: none)", "CPUs - 1"},
        {"http-threads", "LOSSD_HTTP_THREADS", K_INT, OFF(http_threads), 0, 1, 256, "N",
         "libmicrohttpd threads (parse, route, health; never compute)", "2"},
        {"data-dir", "LOSSD_DATA_DIR", K_STR, OFF(data_dir), CAP(data_dir), 0, 0, "DIR",
         "where streams are stored; created if missing", "./data"},
        {"store", "LOSSD_STORE", K_STR, OFF(store), CAP(store), 0, 0, "URL",
         "the stream store: sqlite (in --data-dir), sqlite:DIR or postgresql://user@host/db "
         "(shared by any number of replicas)",
         "sqlite"},
        {"store-connections", "LOSSD_STORE_CONNECTIONS", K_INT, OFF(store_connections), 0, 1, 1000,
         "N", "PostgreSQL connections per replica (half of them commit)", "4"},
        {"store-password-file", "LOSSD_STORE_PASSWORD_FILE", K_STR, OFF(store_password_file),
         CAP(store_password_file), 0, 0, "FILE",
         "PostgreSQL password (else PGPASSWORD or ~/.pgpass)", ""},
        {"store-timeout", "LOSSD_STORE_TIMEOUT", K_INT, OFF(store_timeout), 0, 1, 3600, "SECONDS",
         "PostgreSQL statement and connect timeout", "10"},
        {"max-body", "LOSSD_MAX_BODY", K_SIZE, OFF(max_body), 0, 1, (long long)1 << 40, "SIZE",
         "largest request body (413 past it); suffixes KiB, MiB, GiB", "64MiB"},
        {"max-inflight", "LOSSD_MAX_INFLIGHT", K_INT, OFF(max_inflight), 0, 1, 1000000, "N",
         "requests queued or running at once (503 overloaded past it; stream writes may hold "
         "at most half)",
         "256"},
        {"max-buffered", "LOSSD_MAX_BUFFERED", K_SIZE, OFF(max_buffered), 0, 1, (long long)1 << 44,
         "SIZE",
         "request bodies held in memory at once, over all requests (503 overloaded past "
         "it); raised to --max-body if lower",
         "1GiB"},
        {"body-cache", "LOSSD_BODY_CACHE", K_SIZE, OFF(body_cache), 0, 0, (long long)1 << 44,
         "SIZE",
         "memory kept between requests for decoding large base64 bodies as they arrive "
         "(reused instead of fresh pages; what is above it is returned to the system)",
         "256MiB"},
        {"max-buffered-per-principal", "LOSSD_MAX_BUFFERED_PER_PRINCIPAL", K_SIZE,
         OFF(max_buffered_per_principal), 0, 1, (long long)1 << 44, "SIZE",
         "with --tokens-file, request bodies one token's principal may hold in memory at once "
         "(503 overloaded past it); read-only tokens together hold at most half of "
         "--max-buffered; both raised to --max-body if lower",
         "a quarter of --max-buffered"},
        {"min-body-rate", "LOSSD_MIN_BODY_RATE", K_SIZE, OFF(min_body_rate), 0, 0,
         (long long)1 << 40, "SIZE",
         "bytes/s a request body must average over each --min-body-rate-window; slower "
         "uploads are cut off (0: off)",
         "1KiB"},
        {"min-body-rate-window", "LOSSD_MIN_BODY_RATE_WINDOW", K_INT, OFF(min_body_rate_window), 0,
         1, 86400, "SECONDS",
         "the window --min-body-rate is measured over; the first starts with the body (a "
         "grace period)",
         "10"},
        {"max-connections", "LOSSD_MAX_CONNECTIONS", K_INT, OFF(max_connections), 0, 1, 1000000,
         "N",
         "open connections; past it the connection idle the longest is closed to admit a new "
         "one",
         "1024"},
        {"max-per-ip", "LOSSD_MAX_PER_IP", K_INT, OFF(max_per_ip), 0, 0, 1000000, "N",
         "open connections per client address (0: no limit)", "an eighth of --max-connections"},
        {"timeout", "LOSSD_TIMEOUT", K_INT, OFF(timeout), 0, 1, 86400, "SECONDS",
         "idle connection timeout", "30"},
        {"drain-timeout", "LOSSD_DRAIN_TIMEOUT", K_INT, OFF(drain_timeout), 0, 0, 86400, "SECONDS",
         "on SIGTERM, how long open connections may take to finish", "30"},
        {"request-timeout", "LOSSD_REQUEST_TIMEOUT", K_INT, OFF(request_timeout), 0, 1, 86400,
         "SECONDS",
         "longest time a client may take to send one request, from its first byte (headers "
         "included) to the end of its body; slow clients are cut off",
         "120"},
        {"tokens-file", "LOSSD_TOKENS_FILE", K_STR, OFF(tokens_file), CAP(tokens_file), 0, 0,
         "FILE",
         "bearer tokens, one \"TOKEN PRINCIPAL [rw|ro|admin]\" per line; /v1 then needs one; "
         "SIGHUP reloads it",
         ""},
        {"cors-origin", "LOSSD_CORS_ORIGINS", K_ORIGINS, OFF(cors_origins), CAP(cors_origins), 0, 0,
         "ORIGIN",
         "let pages of this exact origin (https://dash.example.com:8443) call the API from a "
         "browser; repeatable (the variable: space-separated); never *",
         ""},
        {"tls-cert", "LOSSD_TLS_CERT", K_STR, OFF(tls_cert), CAP(tls_cert), 0, 0, "FILE",
         "PEM certificate chain: serve HTTPS (with --tls-key)", ""},
        {"tls-key", "LOSSD_TLS_KEY", K_STR, OFF(tls_key), CAP(tls_key), 0, 0, "FILE",
         "PEM private key of --tls-cert", ""},
        {"max-elements", "LOSSD_MAX_ELEMENTS", K_I64, OFF(max_elements), 0, 1, (long long)1 << 40,
         "N", "numbers per request (413 too_many_elements)", "67108864"},
        {"max-depth", "LOSSD_MAX_DEPTH", K_INT, OFF(max_depth), 0, 1, 10000, "N",
         "JSON nesting depth (400 past it)", "64"},
        {"max-json-mem", "LOSSD_MAX_JSON_MEM", K_SIZE, OFF(max_json_mem), 0, 1, (long long)1 << 44,
         "SIZE", "heap one request's JSON tree may use", "1GiB"},
        {"max-streams", "LOSSD_MAX_STREAMS", K_INT, OFF(max_streams), 0, 1, 1000000, "N",
         "streams one token may own (507 too_many_streams past it)", "1000"},
        {"stream-memory", "LOSSD_STREAM_MEMORY", K_SIZE, OFF(stream_memory), 0, 4096,
         (long long)1 << 40, "SIZE",
         "memory cap of one stream, e.g. an exact stream's scores (507 past it)", "64MiB"},
        {"sketch-memory", "LOSSD_SKETCH_MEMORY", K_SIZE, OFF(sketch_memory), 0, 1024,
         (long long)1 << 30, "SIZE",
         "default size of a sketch stream, all classes together (<= --stream-memory)", "1MiB"},
        {"metrics-streams", "LOSSD_METRICS_STREAMS", K_BOOL, OFF(metrics_streams), 0, 0, 0, NULL,
         "export lossd_stream_auc, lossd_stream_loss and lossd_stream_count per stream in "
         "/metrics (labels stream, name)",
         "off"},
        {"metrics-streams-tag", "LOSSD_METRICS_STREAMS_TAG", K_LIST, OFF(metrics_streams_tags),
         CAP(metrics_streams_tags), 0, 0, "KEY:VALUE",
         "only streams with this tag get gauges; repeatable, all must match (the variable: "
         "space-separated)",
         ""},
        {"metrics-labels", "LOSSD_METRICS_LABELS", K_LIST, OFF(metrics_labels), CAP(metrics_labels),
         0, 0, "KEY,...",
         "tags added as labels of the per-stream gauges ('.' and '-' in a key become '_')", ""},
        {"metrics-streams-max", "LOSSD_METRICS_STREAMS_MAX", K_INT, OFF(metrics_streams_max), 0, 1,
         1000000, "N", "streams with gauges at most (the most recently updated first)", "1000"},
        {"history-points", "LOSSD_HISTORY_POINTS", K_INT, OFF(history_points), 0, 2, 10000000, "N",
         "step points a stream keeps; past it neighbours merge into ranges (exactly)", "10000"},
        {"history-checkpoints", "LOSSD_HISTORY_CHECKPOINTS", K_INT, OFF(history_checkpoints), 0, 1,
         1000000, "N", "checkpoints a stream keeps; the oldest go first", "1000"},
        {"store-stall-s", "LOSSD_STORE_STALL_S", K_INT, OFF(store_stall_s), 0, 1, 86400, "SECONDS",
         "a stream store commit running longer than this makes /readyz 503 and stream writes "
         "503 store_unavailable (a stalled disk)",
         "10"},
        {"commit-delay-us", "LOSSD_COMMIT_DELAY_US", K_INT, OFF(commit_delay_us), 0, 0, 100000,
         "MICROSECONDS",
         "a SQLite store commit may wait this long for more stream writes when the traffic "
         "should fill a group of 8 within it (0: never wait)",
         "1000"},
        {"log-level", "LOSSD_LOG_LEVEL", K_LEVEL, OFF(log_level), 0, 0, 0, "LEVEL",
         "debug, info (one line per request), warn, error or off", "info"},
        {"check", NULL, K_STR, OFF(check_url), CAP(check_url), 0, 0, "URL",
         "probe: GET http(s)://URL, exit 0 on a 2xx reply, 1 otherwise (container HEALTHCHECK; "
         "https does not verify the certificate; with --tls-cert set, http://127.0.0.1 "
         "and http://localhost are probed over https)",
         ""},
        {"test-hooks", "LOSSD_TEST_HOOKS", K_BOOL, OFF(test_hooks), 0, 0, 0, NULL,
         "enable POST /v1/_sleep?ms=N and /v1/_store_fail?n=N for tests; never in production",
         "off"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

const char *srv__log_level_name(int level)
{
	if (level < 0 || level > SRV_LOG_OFF)
		return "?";
	return level_names[level];
}

/* The first two numbers of a small file ("max 100000" gives -1, 100000). */
static int read_two(const char *path, long long *a, long long *b)
{
	char buf[128] = "";
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	*b = 0;
	if (!strncmp(buf, "max", 3)) {
		*a = -1;
		return 0;
	}
	char *end;
	*a = strtoll(buf, &end, 10);
	if (end == buf)
		return -1;
	*b = strtoll(end, NULL, 10);
	return 0;
}

int srv__cpu_count(const char *root)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	long long quota = -1, period = 0, x;
	char path[512];

	if (n < 1)
		n = 1;
	snprintf(path, sizeof path, "%s/cpu.max", root);
	if (read_two(path, &quota, &period) != 0) {
		/* cgroup v1: quota and period in two files */
		const char *dirs[] = {"cpu", "cpu,cpuacct"};
		for (size_t i = 0; i < 2 && quota == -1; i++) {
			snprintf(path, sizeof path, "%s/%s/cpu.cfs_quota_us", root, dirs[i]);
			if (read_two(path, &quota, &x) != 0)
				continue;
			snprintf(path, sizeof path, "%s/%s/cpu.cfs_period_us", root, dirs[i]);
			if (read_two(path, &period, &x) != 0)
				quota = -1;
		}
	}
	if (quota > 0 && period > 0) {
		long long q = (quota + period - 1) / period;
		if (q < n)
			n = (long)q;
	}
	return n > 256 ? 256 : (int)(n < 1 ? 1 : n);
}

static int ncpus(void)
{
	return srv__cpu_count("/sys/fs/cgroup");
}

/* An origin as a browser sends it: http(s)://host[:port], nothing after. */
static bool origin_ok(const char *s, size_t n)
{
	size_t skip = n > 8 && !strncmp(s, "https://", 8)  ? 8
	              : n > 7 && !strncmp(s, "http://", 7) ? 7
	                                                   : 0;
	if (!skip)
		return false;
	for (size_t i = skip; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == ':' || c == '[' || c == ']'))
			return false;
	}
	return s[n - 1] != ':';
}

bool srv__cors_allowed(const srv__config *c, const char *origin)
{
	size_t n = origin ? strlen(origin) : 0;
	for (const char *p = c->cors_origins; n && *p;) {
		const char *nl = strchr(p, '\n');
		if ((size_t)(nl - p) == n && !memcmp(p, origin, n))
			return true;
		p = nl + 1;
	}
	return false;
}

static void defaults(srv__config *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->bind, "127.0.0.1");
	c->port = 8080;
	c->threads = ncpus();
	c->par_threads = c->threads - 1;
	c->http_threads = 2;
	strcpy(c->data_dir, "./data");
	strcpy(c->store, "sqlite");
	c->store_connections = 4;
	c->store_timeout = 10;
	c->max_body = SRV_DEFAULT_MAX_BODY;
	c->max_inflight = 256;
	c->max_buffered = (size_t)1 << 30;
	c->body_cache = (size_t)256 << 20;
	c->max_buffered_per_principal = 0; /* a quarter of max_buffered */
	c->min_body_rate = 1024;
	c->min_body_rate_window = 10;
	c->max_connections = 1024;
	c->max_per_ip = -1; /* an eighth of max_connections */
	c->timeout = 30;
	c->drain_timeout = 30;
	c->request_timeout = 120;
	c->max_elements = API_DEFAULT_MAX_ELEMENTS;
	c->max_depth = 64;
	c->max_json_mem = (size_t)1 << 30;
	c->max_streams = 1000;
	c->stream_memory = ENG_STREAM_DEFAULT_MAX_BYTES;
	c->sketch_memory = ENG_STREAM_DEFAULT_SKETCH_BYTES;
	c->history_points = 10000;
	c->metrics_streams_max = 1000;
	c->history_checkpoints = 1000;
	c->store_stall_s = 10;
	c->commit_delay_us = 1000; /* SRV__STORE_COMMIT_DELAY_US */
	c->log_level = SRV_LOG_INFO;
	c->test_hooks = false;
	c->check_url[0] = '\0';
}

int srv__parse_size(const char *s, size_t max, size_t *out)
{
	char *end;
	unsigned long long v, mul = 1;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		if (!strcasecmp(end, "k") || !strcasecmp(end, "kib") || !strcasecmp(end, "kb"))
			mul = 1ull << 10;
		else if (!strcasecmp(end, "m") || !strcasecmp(end, "mib") || !strcasecmp(end, "mb"))
			mul = 1ull << 20;
		else if (!strcasecmp(end, "g") || !strcasecmp(end, "gib") || !strcasecmp(end, "gb"))
			mul = 1ull << 30;
		else if (!strcasecmp(end, "b"))
			mul = 1;
		else
			return -1;
	}
	if (v > max / mul)
		return -1;
	*out = (size_t)(v * mul);
	return 0;
}

static int parse_ll(const char *s, long long *out)
{
	char *end;
	long long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return SRV_CONFIG_EUSAGE;
}

/* Stores value (from `src`, a flag or variable name for messages) into c. */
static int set(srv__config *c, const struct opt *o, const char *value, const char *src, char *err,
               size_t errlen)
{
	char *base = (char *)c + o->off;
	long long v;
	size_t sz;

	switch (o->kind) {
	case K_INT:
	case K_I64:
		if (parse_ll(value, &v) || v < o->min || v > o->max)
			return fail(err, errlen,
			            "%s: expected an integer in [%lld, %lld], got \"%s\"", src,
			            o->min, o->max, value);
		if (o->kind == K_INT)
			*(int *)base = (int)v;
		else
			*(int64_t *)base = (int64_t)v;
		return 0;
	case K_SIZE:
		if (srv__parse_size(value, (size_t)o->max, &sz) || sz < (size_t)o->min)
			return fail(
			        err, errlen,
			        "%s: expected a size such as 1048576, 512KiB or 64MiB, got \"%s\"",
			        src, value);
		*(size_t *)base = sz;
		return 0;
	case K_STR:
		if (strlen(value) >= o->cap)
			return fail(err, errlen, "%s: value too long", src);
		if (!*value && strcmp(o->flag, "check") != 0)
			return fail(err, errlen, "%s: empty value", src);
		strcpy(base, value);
		return 0;
	case K_LEVEL:
		for (int i = 0; i <= SRV_LOG_OFF; i++) {
			if (!strcasecmp(value, level_names[i])) {
				*(int *)base = i;
				return 0;
			}
		}
		return fail(err, errlen, "%s: expected debug, info, warn, error or off, got \"%s\"",
		            src, value);
	case K_ORIGINS:
		/* one origin per flag; the variable may hold several */
		for (const char *w = value; *w;) {
			size_t n = strcspn(w, " ,");
			size_t have = strlen(base);
			if (n == 0) {
				w++;
				continue;
			}
			if (!origin_ok(w, n))
				return fail(
				        err, errlen,
				        "%s: expected an exact origin such as "
				        "https://dash.example.com:8443 (scheme, lowercase host, "
				        "port; no path, never *), got \"%.*s\"",
				        src, (int)n, w);
			if (have + n + 2 > o->cap)
				return fail(err, errlen, "%s: too many origins", src);
			memcpy(base + have, w, n);
			base[have + n] = '\n';
			base[have + n + 1] = '\0';
			w += n;
		}
		return 0;
	case K_LIST:
		/* repeatable; one value may hold several, split at spaces and commas */
		for (const char *w = value; *w;) {
			size_t n = strcspn(w, " ,");
			size_t have = strlen(base);
			if (n == 0) {
				w++;
				continue;
			}
			if (have + n + 2 > o->cap)
				return fail(err, errlen, "%s: too many values", src);
			memcpy(base + have, w, n);
			base[have + n] = '\n';
			base[have + n + 1] = '\0';
			w += n;
		}
		return 0;
	case K_BOOL:
		if (!strcmp(value, "1") || !strcasecmp(value, "true") ||
		    !strcasecmp(value, "yes") || !strcasecmp(value, "on"))
			*(bool *)base = true;
		else if (!strcmp(value, "0") || !strcasecmp(value, "false") ||
		         !strcasecmp(value, "no") || !strcasecmp(value, "off") || !*value)
			*(bool *)base = false;
		else
			return fail(err, errlen, "%s: expected 1 or 0, got \"%s\"", src, value);
		return 0;
	}
	return fail(err, errlen, "%s: unknown option kind", src);
}

static bool numeric_address(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static const struct opt *find_flag(const char *name, size_t n)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strlen(opts[i].flag) == n && !strncmp(opts[i].flag, name, n))
			return &opts[i];
	return NULL;
}

int srv__config_parse(srv__config *out, int argc, char *const *argv, char *const *envp, char *err,
                      size_t errlen)
{
	int rc;

	defaults(out);
	if (err && errlen)
		err[0] = '\0';

	for (char *const *e = envp; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		if (!eq || strncmp(*e, "LOSSD_", 6) != 0)
			continue;
		for (size_t i = 0; i < NOPTS; i++) {
			const struct opt *o = &opts[i];
			size_t n = (size_t)(eq - *e);
			if (!o->env || strlen(o->env) != n || strncmp(o->env, *e, n) != 0)
				continue;
			/* An empty variable means "not set", as in most daemons. */
			if (!eq[1] && o->kind != K_BOOL)
				break;
			rc = set(out, o, eq + 1, o->env, err, errlen);
			if (rc)
				return rc;
			break;
		}
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *name, *eq, *value;
		const struct opt *o;
		char src[64];
		size_t n;

		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return SRV_CONFIG_HELP;
		if (!strcmp(a, "--version") || !strcmp(a, "-V"))
			return SRV_CONFIG_VERSION;
		if (strncmp(a, "--", 2) != 0 || !a[2])
			return fail(err, errlen, "unexpected argument \"%s\" (see --help)", a);
		name = a + 2;
		eq = strchr(name, '=');
		n = eq ? (size_t)(eq - name) : strlen(name);
		o = find_flag(name, n);
		if (!o)
			return fail(err, errlen, "unknown option \"--%.*s\" (see --help)", (int)n,
			            name);
		snprintf(src, sizeof(src), "--%s", o->flag);
		if (eq) {
			value = eq + 1;
		} else if (o->kind == K_BOOL) {
			value = "1";
		} else {
			if (i + 1 >= argc)
				return fail(err, errlen, "%s needs a value", src);
			value = argv[++i];
		}
		rc = set(out, o, value, src, err, errlen);
		if (rc)
			return rc;
	}
	if (out->par_threads < 0)
		out->par_threads = 0;
	if (out->max_buffered < out->max_body)
		out->max_buffered = out->max_body;
	if (!out->max_buffered_per_principal)
		out->max_buffered_per_principal = out->max_buffered / 4;
	if (out->max_buffered_per_principal < out->max_body)
		out->max_buffered_per_principal = out->max_body;
	if (out->max_per_ip < 0)
		out->max_per_ip = out->max_connections / 8 > 0 ? out->max_connections / 8 : 1;
	if (!numeric_address(out->bind))
		return fail(err, errlen,
		            "--bind: expected a numeric IPv4 or IPv6 address, got \"%s\"",
		            out->bind);
	if (strcmp(out->store, "sqlite") != 0 && strncmp(out->store, "sqlite:", 7) != 0 &&
	    strncmp(out->store, "postgresql://", 13) != 0 &&
	    strncmp(out->store, "postgres://", 11) != 0)
		return fail(err, errlen,
		            "--store: expected sqlite, sqlite:DIR or postgresql://..., got \"%s\"",
		            out->store);
	if (!strncmp(out->store, "sqlite:", 7)) {
		if (!out->store[7] || strlen(out->store + 7) >= sizeof out->data_dir)
			return fail(err, errlen, "--store: sqlite:DIR needs a directory");
		strcpy(out->data_dir, out->store + 7); /* the store names the data dir */
	}
	if (!out->tls_cert[0] != !out->tls_key[0])
		return fail(err, errlen, "--tls-cert and --tls-key go together");
	return SRV_CONFIG_RUN;
}

void srv__config_usage(FILE *f)
{
	fprintf(f,
	        "lossd %s - loss and AUC evaluation service (HTTP/JSON)\n\n"
	        "Usage: lossd [options]\n"
	        "       lossd --check http://127.0.0.1:8080/healthz\n"
	        "       lossd --copy-store FROM TO [--store-password-file FILE]   (store URLs:\n"
	        "             sqlite:DIR, postgresql://...; copies every stream, verifies "
	        "counts)\n\n"
	        "Options (each also read from its environment variable; flags win):\n",
	        LOSSD_VERSION);
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt *o = &opts[i];
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", o->flag, o->arg ? " " : "",
		         o->arg ? o->arg : "");
		fprintf(f, "  %-26s %s\n", left, o->help);
		fprintf(f, "  %-26s %s%sdefault: %s\n", "", o->env ? o->env : "",
		        o->env ? ", " : "", *o->dflt ? o->dflt : "none");
	}
	fprintf(f, "  %-26s %s\n  %-26s %s\n", "--help", "this text", "--version",
	        "print the version and exit");
	fprintf(f, "\nExit status: 0 after a clean SIGTERM/SIGINT drain, 1 on a startup\n"
	           "failure, 2 on a usage error.\n");
}
