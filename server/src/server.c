/*
 * server.c - the daemon's life: configure, start, wait for a signal,
 * drain, stop.
 *
 * Startup order: config, log level, open-file limit, data dir, tokens and
 * TLS files (a bad one stops startup with exit 1), parallel helpers, stream
 * store, libuv loop (which fixes UV_THREADPOOL_SIZE before any work is
 * queued), then libmicrohttpd last, so no request arrives before
 * everything it needs exists. SIGTERM and SIGINT are blocked in every
 * thread (the mask is set before any thread starts, and threads inherit
 * it) and taken synchronously by the main thread with sigtimedwait: no
 * async-signal-safety puzzles. SIGHUP, taken the same way, reloads the
 * tokens file (auth.c swaps the table; connections stay open).
 *
 * Drain, on the first SIGTERM/SIGINT: /readyz turns 503 and replies carry
 * "Connection: close"; libmicrohttpd stops accepting (quiesce); every
 * request already admitted to the workers runs to completion (its
 * connection is resumed by the loop); then we wait up to --drain-timeout
 * for connections still mid-request (uploading, or sending the reply). A
 * second signal skips that wait but never the in-flight work, which is
 * bounded by the request limits. Then the daemon stops (no connection is
 * suspended any more), the loop and the helpers are joined, the store
 * closed, and srv_main returns 0. Shutdown is the reverse of startup.
 */
#include "lossd/srv.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "tls.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "streams.h"

extern char **environ;

#ifndef LOSSD_VERSION
#define LOSSD_VERSION "0.0.0"
#endif

/* mkdir -p */
static int make_dirs(const char *path)
{
	char buf[1024];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
				return -1;
			buf[i] = c;
		}
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return -1;
	return 0;
}

/* Every connection is a descriptor: lift the soft limit towards the hard
 * one so --max-connections is reachable (1024 is a common soft default). */
static void raise_nofile(int want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want ? (rlim_t)want
	                                                                         : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		srv_log(SRV_LOG_WARN, NULL, "cannot raise the open-file limit to %d", want);
}

/* Reads a whole (small) file into a new NUL-terminated buffer. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (1L << 20) ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
out:
	fclose(f);
	return buf;
}

/* Wipes and frees a buffer that held a private key. */
static void free_secret(char *p)
{
	if (p) {
		volatile char *v = p;
		for (size_t i = 0; p[i]; i++)
			v[i] = 0;
	}
	free(p);
}

/* Loads the tokens file and the TLS files named in cfg. Returns 0 or -1
 * (logged). */
static int load_secrets(srv__server *s)
{
	char err[512];

	if (s->cfg.tokens_file[0]) {
		if (srv__auth_load(&s->auth, s->cfg.tokens_file, err, sizeof(err)) != 0) {
			srv_log(SRV_LOG_ERROR, NULL, "%s", err);
			return -1;
		}
	}
	if (s->cfg.tls_cert[0]) {
		s->tls_cert_pem = read_file(s->cfg.tls_cert);
		s->tls_key_pem = read_file(s->cfg.tls_key);
		if (!s->tls_cert_pem || !s->tls_key_pem) {
			srv_log(SRV_LOG_ERROR, NULL, "cannot read --tls-cert %s or --tls-key %s",
			        s->cfg.tls_cert, s->cfg.tls_key);
			return -1;
		}
		if (srv__tls_check(s->tls_cert_pem, s->tls_key_pem, err, sizeof(err)) != 0) {
			srv_log(SRV_LOG_ERROR, NULL, "--tls-cert %s with --tls-key %s: %s",
			        s->cfg.tls_cert, s->cfg.tls_key, err);
			return -1;
		}
	}
	return 0;
}

static void free_secrets(srv__server *s)
{
	srv__auth_free(s->auth);
	s->auth = NULL;
	free(s->tls_cert_pem);
	s->tls_cert_pem = NULL;
	free_secret(s->tls_key_pem);
	s->tls_key_pem = NULL;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Waits for a signal in set for up to ms; returns the signal or 0. */
static int wait_signal(const sigset_t *set, long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	int sig;

	if (ms < 0) {
		do
			sig = sigwaitinfo(set, NULL);
		while (sig < 0 && errno == EINTR);
		return sig < 0 ? 0 : sig;
	}
	sig = sigtimedwait(set, NULL, &ts);
	return sig < 0 ? 0 : sig;
}

static void drain(srv__server *s, const sigset_t *set)
{
	double deadline = now_s() + s->cfg.drain_timeout;
	bool forced = false;
	char extra[128];

	atomic_store(&s->draining, 1);
	srv__metrics_set_draining(1);
	srv__http_quiesce(s);
	snprintf(extra, sizeof(extra), "\"in_flight\":%d,\"open_requests\":%d",
	         atomic_load(&s->inflight), atomic_load(&s->active));
	srv_log(SRV_LOG_INFO, extra, "draining");
	for (;;) {
		int active = atomic_load(&s->active);
		if (active == 0 || forced || now_s() >= deadline) {
			/* Close admission iff nothing is in flight: after this no
			 * connection can be suspended (see http.c). */
			int zero = 0;
			if (atomic_compare_exchange_strong(&s->inflight, &zero,
			                                   SRV_INFLIGHT_CLOSED))
				break;
		}
		if (wait_signal(set, 10) && !forced) {
			forced = true;
			srv_log(SRV_LOG_WARN, NULL,
			        "second signal: not waiting for open connections any more");
		}
	}
	snprintf(extra, sizeof(extra), "\"open_requests\":%d,\"forced\":%s",
	         atomic_load(&s->active), forced || atomic_load(&s->active) ? "true" : "false");
	srv_log(SRV_LOG_INFO, extra, "drained");
}

/* SIGHUP: the tokens file again. Main thread. */
static void reload_tokens(srv__server *s)
{
	char err[512], extra[64];

	if (!s->auth) {
		srv_log(SRV_LOG_WARN, NULL, "SIGHUP: no --tokens-file to reload");
		return;
	}
	if (srv__auth_reload(s->auth, s->cfg.tokens_file, err, sizeof(err)) != 0) {
		snprintf(extra, sizeof(extra), "\"tokens\":%zu", srv__auth_count(s->auth));
		srv_log(SRV_LOG_ERROR, extra, "SIGHUP: %s; the tokens in use are kept", err);
		return;
	}
	snprintf(extra, sizeof(extra), "\"tokens\":%zu", srv__auth_count(s->auth));
	srv_log(SRV_LOG_INFO, extra, "tokens reloaded");
}

/*
 * glibc gives the free top of a thread's malloc heap back to the kernel
 * (madvise) once it exceeds the trim threshold, 128 KiB until the first
 * block that was mmap()ed is freed, which raises the mmap threshold to that
 * block's size and the trim threshold to twice it. A stream update's
 * sketch buffers (a few hundred KB, made and freed on each store thread)
 * sat just over 128 KiB: each update gave its pages back and faulted them
 * in again, about 4 page faults and a TLB shoot-down on the other core
 * per update. A merge into a full sketch stream takes more: the merged
 * list (32 bytes a bucket: 1.1 MB at the default cap) and the folding's
 * arrays (~1.3 MB), both freed at its end, which trimmed a 2 MiB threshold
 * each time: 37-167 page faults per update with fresh scores to 32 streams.
 * Freeing one 4 MiB block at start-up puts the thresholds at 4 and 8 MiB
 * (still adjusted upward by glibc as before): 4 faults per update there,
 * and at most 8 MiB stays free at the top of each heap.
 *
 * The malloc_trim here sets glibc's allocator up on the main thread before
 * any other starts. Where malloc is not glibc's (AddressSanitizer's, in
 * the sanitize stage), the first call that reaches glibc's allocator was
 * the malloc_trim after a large body (http.c), on a worker: it set the
 * allocator up there, and two workers doing so at once left its count of
 * the threads on its main arena one short, so glibc aborted as the second
 * of them exited ("a->attached_threads > 0"; tests/race/race_malloc.c).
 */
void srv__malloc_setup(void)
{
#ifdef __GLIBC__
	volatile char *p = malloc((size_t)4 << 20);
	if (p) {
		p[0] = 0; /* used, so the pair is not optimized away */
		free((void *)p);
	}
	malloc_trim(0);
#endif
}

static int run(srv__server *s)
{
	sigset_t set, stop;
	int rc = 1, sig;
	char extra[512];

	srv__log_set_level(s->cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	srv__malloc_setup();
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	stop = set; /* what drain() waits for: SIGHUP there is left pending */
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* libmicrohttpd may hold max/16 + 16 more for a moment (http.c). */
	raise_nofile(s->cfg.max_connections + s->cfg.max_connections / 16 + 256);
	bool pg = !strncmp(s->cfg.store, "postgres", 8); /* --data-dir unused */
	if (!pg && make_dirs(s->cfg.data_dir) != 0) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot create data dir %s: %s", s->cfg.data_dir,
		        strerror(errno));
		return 1;
	}
	if (getrandom(&s->id_seed, sizeof(s->id_seed), GRND_NONBLOCK) != sizeof(s->id_seed))
		s->id_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	s->listen_fd = -1;

	if (load_secrets(s) != 0)
		goto out;
	s->par = srv__par_new(s->cfg.par_threads);
	if (!s->par) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot start %d parallel helper threads",
		        s->cfg.par_threads);
		goto out;
	}
	s->api.par = srv__par_hook(s->par);
	s->api.max_elements = s->cfg.max_elements;
	s->api.max_json_bytes = s->cfg.max_json_mem;
	s->api.max_depth = s->cfg.max_depth;

	srv__streams_limits lim = SRV__STREAMS_LIMITS_INIT;
	lim.max_streams = s->cfg.max_streams;
	lim.max_bytes = s->cfg.stream_memory;
	lim.sketch_bytes = s->cfg.sketch_memory;
	lim.history_points = (size_t)s->cfg.history_points;
	lim.history_checkpoints = (size_t)s->cfg.history_checkpoints;
	lim.metrics_streams = s->cfg.metrics_streams;
	lim.metrics_tags = s->cfg.metrics_streams_tags;
	lim.metrics_labels = s->cfg.metrics_labels;
	lim.metrics_max = (size_t)s->cfg.metrics_streams_max;
	lim.stall_s = s->cfg.store_stall_s;
	lim.commit_delay_us = s->cfg.commit_delay_us;
	if (!(s->streams = srv__streams_new())) {
		srv_log(SRV_LOG_ERROR, NULL, "no memory for the stream table");
		goto out_par;
	}
	srv__streams_set_limits(s->streams, &lim);
	srv__streams_set_store(s->streams, s->cfg.store, s->cfg.store_connections,
	                       s->cfg.store_password_file, s->cfg.store_timeout * 1000);
	if (srv__streams_open(s->streams, s->cfg.data_dir) != 0) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot open the stream store %s",
		        pg ? "(postgresql)" : s->cfg.data_dir);
		goto out_streams;
	}
	/* Store threads mostly wait on commits (loop.c): one per stream write
	 * http.c admits (half of --max-inflight), so every admitted writer
	 * can be waiting on the commit in progress and join the next group. */
	int nstore = s->cfg.max_inflight / 2 < 4     ? 4
	             : s->cfg.max_inflight / 2 > 512 ? 512
	                                             : s->cfg.max_inflight / 2;
	s->loop = srv__loop_start(s->cfg.threads, nstore);
	if (!s->loop) {
		srv_log(SRV_LOG_ERROR, NULL, "cannot start the libuv loop");
		goto out_streams;
	}
	if (geteuid() == 0)
		srv_log(SRV_LOG_WARN, NULL,
		        "running as root: run lossd as an unprivileged user (the container "
		        "image does); it needs no privilege but its data dir and port");
	if (srv__http_start(s) != 0)
		goto out_loop;

	extra[0] = '\0';
	{
		size_t pos = 0;
		snprintf(extra, sizeof(extra), "\"port\":%d,\"bind\":", s->port);
		pos = strlen(extra);
		srv__json_str(extra, sizeof(extra), &pos, s->cfg.bind);
		snprintf(extra + pos, sizeof(extra) - pos,
		         ",\"version\":\"%s\",\"threads\":%d,\"par_threads\":%d,"
		         "\"http_threads\":%d,\"max_inflight\":%d,\"max_body\":%zu,"
		         "\"test_hooks\":%s,\"tls\":%s,\"tokens\":%zu",
		         LOSSD_VERSION, s->cfg.threads, s->cfg.par_threads, s->cfg.http_threads,
		         s->cfg.max_inflight, s->cfg.max_body, s->cfg.test_hooks ? "true" : "false",
		         s->tls_cert_pem ? "true" : "false", srv__auth_count(s->auth));
	}
	/* Always written, whatever the log level: tests and scripts read the
	 * port from it when started with --port 0. */
	if (srv__log_enabled(SRV_LOG_INFO))
		srv_log(SRV_LOG_INFO, extra, "listening");
	else
		printf("{\"msg\":\"listening\",%s}\n", extra), fflush(stdout);

	while ((sig = wait_signal(&set, -1)) == SIGHUP)
		reload_tokens(s);
	snprintf(extra, sizeof(extra), "\"signal\":\"%s\"", sig == SIGINT ? "SIGINT" : "SIGTERM");
	srv_log(SRV_LOG_INFO, extra, "signal received");
	drain(s, &stop);
	rc = 0;

	srv__http_stop(s);
out_loop:
	srv__loop_stop(s->loop);
	s->loop = NULL;
out_streams:
	srv__streams_free(s->streams);
	s->streams = NULL;
out_par:
	srv__par_free(s->par);
	s->par = NULL;
out:
	free_secrets(s);
	srv_log(rc == 0 ? SRV_LOG_INFO : SRV_LOG_ERROR, NULL,
	        rc == 0 ? "stopped" : "startup failed");
	return rc;
}

int srv_main(int argc, char **argv)
{
	static srv__server s; /* large; and one per process */
	char err[512];
	int rc;

	if (argc >= 2 && !strcmp(argv[1], "--copy-store")) {
		/* lossd --copy-store FROM TO [options]: the options as for the daemon
		 * (--data-dir, --store-password-file, --store-timeout). */
		if (argc < 4) {
			fprintf(stderr, "lossd: --copy-store needs FROM and TO store URLs\n");
			return 2;
		}
		char *rest[64];
		int n = 0;
		rest[n++] = argv[0];
		for (int i = 4; i < argc && n < 63; i++)
			rest[n++] = argv[i];
		rest[n] = NULL;
		if (srv__config_parse(&s.cfg, n, rest, environ, err, sizeof(err)) !=
		    SRV_CONFIG_RUN) {
			fprintf(stderr, "lossd: %s\n",
			        err[0] ? err : "bad options for --copy-store");
			return 2;
		}
		return srv__copy_store(argv[2], argv[3], &s.cfg);
	}
	rc = srv__config_parse(&s.cfg, argc, argv, environ, err, sizeof(err));
	switch (rc) {
	case SRV_CONFIG_HELP: srv__config_usage(stdout); return 0;
	case SRV_CONFIG_VERSION: printf("lossd %s\n", LOSSD_VERSION); return 0;
	case SRV_CONFIG_RUN: break;
	default: fprintf(stderr, "lossd: %s\n", err); return 2;
	}
	if (s.cfg.check_url[0]) {
		/* The image's HEALTHCHECK probes http://127.0.0.1:8080: when this
		 * configuration serves TLS (LOSSD_TLS_CERT), a loopback probe
		 * speaks TLS too, so turning TLS on does not break it. */
		char url[sizeof s.cfg.check_url + 1];
		const char *u = s.cfg.check_url;
		if (s.cfg.tls_cert[0] &&
		    (!strncmp(u, "http://127.0.0.1", 16) || !strncmp(u, "http://localhost", 16) ||
		     !strncmp(u, "http://[::1]", 12))) {
			size_t n = strlen(u + 7); /* < sizeof check_url - 7 */
			memcpy(url, "https://", 8);
			memcpy(url + 8, u + 7, n + 1);
			u = url;
		}
		return srv__check(u, 5);
	}
	return run(&s);
}
