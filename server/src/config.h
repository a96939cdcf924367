/*
 * config.h - lossd's configuration: defaults, LOSSD_* environment variables
 * and command-line flags, in that order of precedence.
 */
#ifndef LOSSD_SERVER_CONFIG_H
#define LOSSD_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Default largest request body (--max-body), bytes: 64 MiB. */
#define SRV_DEFAULT_MAX_BODY ((size_t)64 << 20)

enum srv__log_level {
	SRV_LOG_DEBUG = 0,
	SRV_LOG_INFO,
	SRV_LOG_WARN,
	SRV_LOG_ERROR,
	SRV_LOG_OFF,
};

typedef struct srv__config {
	char bind[256];   /* numeric IPv4 or IPv6 address */
	int port;         /* 0: any free port, reported in the "listening" log line */
	int threads;      /* libuv worker pool (UV_THREADPOOL_SIZE) */
	int par_threads;  /* helper threads of the engine's parallel-for */
	int http_threads; /* libmicrohttpd thread pool */
	char data_dir[1024];
	size_t max_body;     /* bytes */
	int max_inflight;    /* requests handed to workers and not yet answered */
	size_t max_buffered; /* request bodies held in memory, all requests; >= max_body */
	size_t max_buffered_per_principal; /* the same, one token's principal; >= max_body */
	size_t body_cache; /* idle arena bytes kept for bodies decoded as they arrive (bodymem.c) */
	size_t min_body_rate;     /* bytes/s a body must average per window (0: off) */
	int min_body_rate_window; /* seconds */
	int max_connections;
	int max_per_ip;
	int timeout;                     /* idle connection timeout, seconds */
	int drain_timeout;               /* seconds SIGTERM waits for open requests */
	int request_timeout;             /* seconds from request line to end of body */
	char tokens_file[1024];          /* bearer tokens, or "" for no authentication */
	char tls_cert[1024];             /* PEM certificate (chain), or "" for plain HTTP */
	char tls_key[1024];              /* PEM private key, with tls_cert */
	int64_t max_elements;            /* numbers per request */
	int max_depth;                   /* JSON nesting */
	size_t max_json_mem;             /* jansson heap per request */
	int max_streams;                 /* streams per principal (507 too_many_streams) */
	size_t stream_memory;            /* memory cap of one stream (507 stream_memory_exceeded) */
	size_t sketch_memory;            /* default sketch size of a stream, all classes together */
	int history_points;              /* step points per stream (docs/API.md section 7) */
	int history_checkpoints;         /* checkpoint records per stream */
	bool metrics_streams;            /* per-stream gauges in /metrics (docs/API.md section 6) */
	char metrics_streams_tags[2048]; /* KEY:VALUE lines: only streams with all of them */
	char metrics_labels[1024];       /* tag keys added as labels, one per line */
	int metrics_streams_max;         /* streams with gauges at most */
	int store_stall_s;    /* a store disk operation running longer makes /readyz 503 */
	int commit_delay_us;  /* a store leader's longest wait for a fuller group */
	int log_level;        /* enum srv__log_level */
	bool test_hooks;      /* LOSSD_TEST_HOOKS=1: POST /v1/_sleep exists */
	char check_url[1024]; /* --check URL, or "" */
	/* --cors-origin (repeatable): exact origins, each ending in '\n' */
	char cors_origins[4096];
	/* The stream store (docs/API.md section 10). */
	char store[1024];               /* --store URL: sqlite, sqlite:DIR, postgresql://... */
	int store_connections;          /* PostgreSQL connections per process */
	char store_password_file[1024]; /* PostgreSQL password in a file, or "" */
	int store_timeout;              /* PostgreSQL statement timeout, seconds */
} srv__config;

/* What srv__config_parse found. */
#define SRV_CONFIG_RUN     0  /* run the daemon (or the --check probe) */
#define SRV_CONFIG_HELP    1  /* --help: print srv__config_usage, exit 0 */
#define SRV_CONFIG_VERSION 2  /* --version: print the version, exit 0 */
#define SRV_CONFIG_EUSAGE  -1 /* bad flag or value: err says which, exit 2 */

/*
 * Fills *out from the defaults, then envp (a NULL-terminated array of
 * "NAME=value" strings, borrowed; NULL for none), then argv[1..argc).
 * Flags are `--name value` or `--name=value`. Returns one of SRV_CONFIG_*;
 * on SRV_CONFIG_EUSAGE, err (errlen bytes) holds a one-line message.
 * Any thread; keeps no state.
 */
int srv__config_parse(srv__config *out, int argc, char *const *argv, char *const *envp, char *err,
                      size_t errlen);

/* Writes the --help text (every flag, its variable and default) to f. */
void srv__config_usage(FILE *f);

/* Parses a byte size: digits with an optional k/K/KiB, M/MiB, G/GiB
 * suffix (binary multiples). Returns 0, or -1 when malformed or > max. */
int srv__parse_size(const char *s, size_t max, size_t *out);

/*
 * CPUs the process may use: the cgroup CPU quota under root (normally
 * "/sys/fs/cgroup"; v2 cpu.max, else v1 cpu/cpu.cfs_quota_us with
 * cpu.cfs_period_us), rounded up, capped by the CPUs online. 1..256.
 * Any thread.
 */
int srv__cpu_count(const char *root);

/* Does the list of --cors-origin values hold origin (exact match)? */
bool srv__cors_allowed(const srv__config *c, const char *origin);

/* The name of a log level ("info"), or "?" */
const char *srv__log_level_name(int level);

#endif
