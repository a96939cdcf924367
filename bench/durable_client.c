/*
 * durable_client.c - the load generator of bench/bench_durable.py: N
 * keep-alive HTTP/1.1 connections to 127.0.0.1, each posting one body
 * after another (a closed loop: one request in flight per connection, as
 * a training worker that waits for its 2xx), for a fixed time.
 *
 * Why C and one thread: the figure to measure is lossd's, so the client
 * must cost far less than the server. Python threads top out near a few
 * thousand requests/s on 2 cores; wrk cannot say exactly how many of its
 * requests were answered when it stops mid-flight. Here one epoll thread
 * drives every connection, and at the deadline each connection stops
 * sending and waits for its last reply, so "acknowledged" is exact: the
 * driver checks that the streams' counts equal it.
 *
 *   durable_client --port P --seconds S --clients N --body FILE PATH...
 *                  [--fsync DIR SECONDS] [--fresh N]
 * Connection i posts FILE to PATH[i % number of paths]. With --fresh N it
 * posts instead a body drawn anew for every request: N binary labels and
 * N float32 scores (labels uniform, scores about 0.35 + 0.3 label with
 * spread 0.2, near-normal, clipped to [0, 1], as the driver's fixed
 * body), as base64 tensors; bench_rng_near_normals, since Box-Muller draws
 * took about half of this client's ~50 us of CPU per update, CPU that the
 * server it measures, on the same cores, could not use. A training
 * worker's scores are new at every step, so a sketch stream fills to its
 * capacity and every update merges into a full one; one fixed body
 * repeated keeps the stream at that body's buckets. Prints one JSON line:
 * {"sent", "ok", "bad", "errors", "seconds", "p50_ms", "p99_ms", "max_ms",
 * "machine_idle", "client_cpu_s", "first_bad"}; "bad" counts replies
 * other than 200, "errors" broken connections (either makes the run
 * invalid); "machine_idle" is the share
 * of all CPUs' time over the run that was idle or waiting for I/O
 * (/proc/stat: time no process ran on), "client_cpu_s" this client's own
 * CPU time. --fsync first runs write+fdatasync of 4 KiB (overwriting a
 * synced 4 MiB file, as a WAL is reused) for SECONDS in a file of DIR: the
 * disk's commit rate, the bound of one op per commit; it adds
 * "fsyncs_per_s".
 *
 * Not here: starting lossd, creating streams, checking counts (the driver).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"

#define MAX_CONNS 1024
#define MAX_PATHS 1024
#define REPLY_CAP 65536
/* latency histogram: 10 us buckets up to 10 s */
#define LAT_BUCKET_US 10
#define LAT_BUCKETS   1000000

typedef struct conn {
	int fd;
	const char *head; /* request line and headers */
	size_t head_len;
	size_t off; /* bytes of head + body sent */
	char buf[REPLY_CAP];
	size_t got;
	double t0;
	bool busy;
	char *own; /* --fresh: this connection's request text */
} conn;

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
		free(b);
		b = NULL;
	}
	fclose(f);
	if (b)
		*len = (size_t)n;
	return b;
}

/* The machine's CPU time so far, in clock ticks (/proc/stat's "cpu" line):
 * all of it, and the part idle or waiting for I/O. 0 when unreadable. */
static void machine_ticks(unsigned long long *all, unsigned long long *idle)
{
	unsigned long long v[8] = {0};
	*all = *idle = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
	           &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*all += v[i];
		*idle = v[3] + v[4];
	}
	fclose(f);
}

/* This process's CPU seconds so far (user + system). */
static double own_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double fsync_rate(const char *dir, double seconds)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/fsync-probe.%d", dir, (int)getpid());
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	if (fd < 0)
		return -1;
	char blk[4096];
	memset(blk, 'x', sizeof blk);
	/* 4 MiB written and synced first: SQLite's WAL is rewritten in place
	 * once checkpointed, so the loop overwrites allocated blocks (an
	 * append would also sync the file system's journal each time). */
	for (int i = 0; i < 1000; i++)
		if (write(fd, blk, sizeof blk) != (ssize_t)sizeof blk)
			break;
	fsync(fd);
	long n = 0;
	double t0 = bench_now(), t;
	do {
		/* 4 KiB at a time through the first 4 MiB, as a WAL is reused */
		if (pwrite(fd, blk, sizeof blk, (off_t)(n % 1000) * (off_t)sizeof blk) !=
		            (ssize_t)sizeof blk ||
		    fdatasync(fd)) {
			n = -1;
			break;
		}
		n++;
		t = bench_now();
	} while (t - t0 < seconds);
	close(fd);
	unlink(path);
	return n < 0 ? -1 : (double)n / (bench_now() - t0);
}

/* ---- --fresh bodies ---- */

static bench_rng rng = {7};

/* Bytes a body of n items takes at most: its base64 strings (n label
 * bytes, 4 n score bytes) and the JSON around them. */
static size_t fresh_body_room(int n)
{
	return 256 + 4 * (((size_t)n + 2) / 3) + 4 * ((4 * (size_t)n + 2) / 3);
}

/* Bytes the request text of such a body to path takes at most. */
static size_t fresh_room(const char *path, int n)
{
	return strlen(path) + 256 + fresh_body_room(n);
}

/* The request text of a new body of n items to path into buf (room from
 * fresh_room); returns its length. */
static size_t fresh_request(char *buf, const char *path, int n)
{
	/* one thread: the scratch is kept from one request to the next */
	static unsigned char *y, *f;
	static double *z;
	static char *body;
	static int room;
	if (n > room) {
		free(y);
		free(f);
		free(z);
		free(body);
		y = malloc((size_t)n);
		f = malloc((size_t)n * 4);
		z = malloc((size_t)n * sizeof *z);
		body = malloc(fresh_body_room(n));
		if (!y || !f || !z || !body)
			abort();
		room = n;
	}
	bench_rng_near_normals(&rng, z, (size_t)n);
	for (int i = 0; i < n; i++) {
		y[i] = (unsigned char)(bench_rng_u64(&rng) >> 63);
		double x = 0.35 + 0.3 * y[i] + 0.2 * z[i];
		float v = (float)(x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x);
		memcpy(f + 4 * (size_t)i, &v, 4);
	}
	size_t b = (size_t)sprintf(body,
	                           "{\"y_true\": {\"shape\": [%d], \"dtype\": \"uint8\", "
	                           "\"b64\": \"",
	                           n);
	b += bench_b64_encode(body + b, y, (size_t)n);
	b += (size_t)sprintf(body + b,
	                     "\"}, \"y_score\": {\"shape\": [%d], \"dtype\": \"float32\", "
	                     "\"b64\": \"",
	                     n);
	b += bench_b64_encode(body + b, f, (size_t)n * 4);
	b += (size_t)sprintf(body + b, "\"}}");
	int h = sprintf(buf,
	                "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
	                "application/json\r\nContent-Length: %zu\r\n\r\n",
	                path, b);
	memcpy(buf + h, body, b);
	return (size_t)h + b;
}

static int connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A complete reply in c->buf: returns its length (headers + body) and its
 * status, 0 when more bytes are needed, -1 when it cannot be parsed. */
static long reply_done(const conn *c, int *status)
{
	const char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
	if (!end)
		return c->got >= REPLY_CAP ? -1 : 0;
	size_t hlen = (size_t)(end - c->buf) + 4;
	if (sscanf(c->buf, "HTTP/1.%*d %d", status) != 1)
		return -1;
	size_t clen = 0;
	for (const char *p = c->buf; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		if (*p == '\n')
			p++;
		if (!strncasecmp(p, "content-length:", 15)) {
			clen = strtoul(p + 15, NULL, 10);
			break;
		}
	}
	if (hlen + clen > REPLY_CAP)
		return -1;
	return c->got >= hlen + clen ? (long)(hlen + clen) : 0;
}

int main(int argc, char **argv)
{
	int port = 0, nconn = 32, fresh = 0;
	double seconds = 10, fsync_s = 0;
	const char *body_path = NULL, *fsync_dir = NULL;
	const char *paths[MAX_PATHS];
	int npaths = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port") && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
			nconn = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--body") && i + 1 < argc)
			body_path = argv[++i];
		else if (!strcmp(argv[i], "--fresh") && i + 1 < argc)
			fresh = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fsync") && i + 2 < argc) {
			fsync_dir = argv[++i];
			fsync_s = atof(argv[++i]);
		} else if (argv[i][0] != '-' && npaths < MAX_PATHS)
			paths[npaths++] = argv[i];
		else {
			fprintf(stderr, "durable_client: bad argument %s\n", argv[i]);
			return 2;
		}
	}
	if (!port || !body_path || !npaths || nconn < 1 || nconn > MAX_CONNS) {
		fprintf(stderr,
		        "usage: durable_client --port P --seconds S --clients N --body FILE "
		        "PATH... [--fsync DIR SECONDS] [--fresh N]\n");
		return 2;
	}
	size_t blen = 0;
	char *body = slurp(body_path, &blen);
	if (!body) {
		fprintf(stderr, "durable_client: cannot read %s\n", body_path);
		return 2;
	}
	double fsyncs = fsync_dir ? fsync_rate(fsync_dir, fsync_s) : 0;

	/* one request text per path: headers then the body */
	char **reqs = calloc((size_t)npaths, sizeof *reqs);
	size_t *rlen = calloc((size_t)npaths, sizeof *rlen);
	for (int p = 0; p < npaths; p++) {
		size_t cap = strlen(paths[p]) + 256 + blen;
		reqs[p] = malloc(cap);
		int h = snprintf(reqs[p], cap,
		                 "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
		                 "application/json\r\nContent-Length: %zu\r\n\r\n",
		                 paths[p], blen);
		memcpy(reqs[p] + h, body, blen);
		rlen[p] = (size_t)h + blen;
	}
	uint32_t *lat = calloc(LAT_BUCKETS + 1, sizeof *lat);
	conn *cs = calloc((size_t)nconn, sizeof *cs);
	int ep = epoll_create1(0);
	if (!reqs || !rlen || !lat || !cs || ep < 0)
		return 1;

	long sent = 0, ok = 0, bad = 0, errors = 0, live = 0;
	double lat_max = 0;
	char first_bad[256] = "";
	unsigned long long all0, idle0, all1, idle1;
	machine_ticks(&all0, &idle0);
	double cpu0 = own_cpu();
	double t_start = bench_now(), deadline = t_start + seconds;
	for (int i = 0; i < nconn; i++) {
		conn *c = &cs[i];
		c->fd = connect_to(port);
		if (c->fd < 0) {
			errors++;
			continue;
		}
		c->head = reqs[i % npaths];
		c->head_len = rlen[i % npaths];
		if (fresh > 0) {
			c->own = malloc(fresh_room(paths[i % npaths], fresh));
			if (!c->own)
				return 1;
			c->head_len = fresh_request(c->own, paths[i % npaths], fresh);
			c->head = c->own;
		}
		c->busy = true;
		c->t0 = bench_now();
		sent++;
		live++;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
	}
	struct epoll_event evs[64];
	while (live > 0) {
		int n = epoll_wait(ep, evs, 64, 1000);
		for (int k = 0; k < n; k++) {
			conn *c = evs[k].data.ptr;
			bool dead = false;
			if ((evs[k].events & EPOLLOUT) && c->off < c->head_len) {
				ssize_t w = send(c->fd, c->head + c->off, c->head_len - c->off,
				                 MSG_NOSIGNAL);
				if (w > 0)
					c->off += (size_t)w;
				else if (w < 0 && errno != EAGAIN)
					dead = true;
				if (!dead && c->off == c->head_len) {
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			}
			if (!dead && (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				ssize_t r = recv(c->fd, c->buf + c->got, REPLY_CAP - c->got, 0);
				if (r > 0)
					c->got += (size_t)r;
				else if (r == 0 || errno != EAGAIN)
					dead = true;
				int status = 0;
				long len = dead ? 0 : reply_done(c, &status);
				if (len < 0)
					dead = true;
				if (len > 0) {
					double t = bench_now(), d = t - c->t0;
					size_t b = (size_t)(d * 1e6 / LAT_BUCKET_US);
					lat[b > LAT_BUCKETS ? LAT_BUCKETS : b]++;
					if (d > lat_max)
						lat_max = d;
					if (status == 200) {
						ok++;
					} else {
						if (!bad)
							snprintf(first_bad, sizeof first_bad,
							         "%.*s",
							         (int)(c->got < 200 ? c->got : 200),
							         c->buf);
						bad++;
					}
					memmove(c->buf, c->buf + len, c->got - (size_t)len);
					c->got -= (size_t)len;
					if (t < deadline) {
						if (c->own)
							c->head_len = fresh_request(
							        c->own, paths[(c - cs) % npaths],
							        fresh);
						c->off = 0;
						c->t0 = t;
						sent++;
						struct epoll_event ev = {.events =
						                                 EPOLLIN | EPOLLOUT,
						                         .data.ptr = c};
						epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
					} else {
						c->busy = false;
						epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
						close(c->fd);
						live--;
					}
				}
			}
			if (dead) {
				errors++;
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				live--;
			}
		}
		if (n == 0 && bench_now() > deadline + 60) {
			fprintf(stderr, "durable_client: %ld replies missing after 60 s\n", live);
			errors += live;
			break;
		}
	}
	double elapsed = bench_now() - t_start;
	double cpu = own_cpu() - cpu0;
	machine_ticks(&all1, &idle1);
	double idle = all1 > all0 ? (double)(idle1 - idle0) / (double)(all1 - all0) : 0;
	long total = ok + bad, acc = 0;
	double p50 = 0, p99 = 0;
	for (size_t b = 0; b <= LAT_BUCKETS && total; b++) {
		long prev = acc;
		acc += lat[b];
		double ms = (double)(b + 1) * LAT_BUCKET_US / 1000.0;
		if (prev < (total + 1) / 2 && acc >= (total + 1) / 2)
			p50 = ms;
		if (prev < (long)((double)total * 0.99 + 0.5) &&
		    acc >= (long)((double)total * 0.99 + 0.5))
			p99 = ms;
	}
	printf("{\"sent\": %ld, \"ok\": %ld, \"bad\": %ld, \"errors\": %ld, \"seconds\": %.3f, "
	       "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"fsyncs_per_s\": %.1f, "
	       "\"machine_idle\": %.4f, \"client_cpu_s\": %.3f, \"first_bad\": \"",
	       sent, ok, bad, errors, elapsed, p50, p99, lat_max * 1000, fsyncs, idle, cpu);
	for (const char *p = first_bad; *p; p++)
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			putchar(*p);
	printf("\"}\n");
	return 0;
}
