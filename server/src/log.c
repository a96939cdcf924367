/*
 * log.c - JSON lines on stdout.
 *
 * Each line is formatted into a stack buffer and written with one write(2)
 * under a mutex, so lines from the HTTP threads, the loop and main never
 * interleave, and no stdio buffering delays them (a container's log
 * collector sees each request as it ends). Lines are capped at 4 KiB: a
 * huge raw path is truncated, never allowed to grow the line.
 *
 * Lock order: log_mu is a leaf (nothing is locked while holding it).
 * It deliberately never logs headers, so Authorization cannot leak.
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = SRV_LOG_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

#define LINE_MAX_BYTES 4096

void srv__log_set_level(int level)
{
	atomic_store(&min_level, level);
}

int srv__log_enabled(int level)
{
	return level >= atomic_load(&min_level) && level < SRV_LOG_OFF;
}

void srv__json_str(char *buf, size_t cap, size_t *pos, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t p = *pos;

	if (cap == 0)
		return;
	if (!s) {
		if (p + 5 <= cap) {
			memcpy(buf + p, "null", 4);
			p += 4;
		}
		goto out;
	}
	/* Reserve room for the closing quote and the NUL. */
	if (p + 3 > cap)
		goto out;
	buf[p++] = '"';
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		char esc[7];
		size_t n;
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			n = 2;
		} else if (*c < 0x20 || *c >= 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*c >> 4];
			esc[5] = hex[*c & 15];
			n = 6;
		} else {
			esc[0] = (char)*c;
			n = 1;
		}
		if (p + n + 2 > cap)
			break;
		memcpy(buf + p, esc, n);
		p += n;
	}
	buf[p++] = '"';
out:
	if (p >= cap)
		p = cap - 1;
	buf[p] = '\0';
	*pos = p;
}

static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos >= cap - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*pos += (size_t)n;
	if (*pos >= cap)
		*pos = cap - 1;
}

static void stamp(char *buf, size_t cap, size_t *pos, int level)
{
	struct timespec ts;
	struct tm tm;
	char t[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
	put(buf, cap, pos, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\"", t, ts.tv_nsec / 1000000,
	    srv__log_level_name(level));
}

static void emit(char *buf, size_t pos)
{
	size_t off = 0;

	pthread_mutex_lock(&log_mu);
	while (off < pos) {
		ssize_t n = write(STDOUT_FILENO, buf + off, pos - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	pthread_mutex_unlock(&log_mu);
}

static void finish(char *buf, size_t cap, size_t *pos)
{
	/* Always end the line, even if the fields were truncated. */
	if (*pos > cap - 3)
		*pos = cap - 3;
	buf[(*pos)++] = '}';
	buf[(*pos)++] = '\n';
	buf[*pos] = '\0';
}

/* One line: the stamp, msg (fmt with ap), then extra (preformatted JSON
 * members, may be NULL) and the n fields f (escaped here; a NULL value is
 * left out). */
static void vline(int level, const char *extra, const srv__log_field *f, size_t n, const char *fmt,
                  va_list ap)
{
	char buf[LINE_MAX_BYTES], msg[1024];
	size_t pos = 0;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	stamp(buf, sizeof(buf), &pos, level);
	put(buf, sizeof(buf), &pos, ",\"msg\":");
	srv__json_str(buf, sizeof(buf), &pos, msg);
	if (extra && *extra)
		put(buf, sizeof(buf), &pos, ",%s", extra);
	for (size_t i = 0; i < n; i++) {
		if (!f[i].val)
			continue;
		put(buf, sizeof(buf), &pos, ",\"%s\":", f[i].key);
		srv__json_str(buf, sizeof(buf), &pos, f[i].val);
	}
	finish(buf, sizeof(buf), &pos);
	emit(buf, pos);
}

void srv_log(int level, const char *extra, const char *fmt, ...)
{
	va_list ap;

	if (!srv__log_enabled(level))
		return;
	va_start(ap, fmt);
	vline(level, extra, NULL, 0, fmt, ap);
	va_end(ap);
}

void srv__log_fields(int level, const srv__log_field *f, size_t n, const char *fmt, ...)
{
	va_list ap;

	if (!srv__log_enabled(level))
		return;
	va_start(ap, fmt);
	vline(level, NULL, f, n, fmt, ap);
	va_end(ap);
}

void srv__log_request(const srv__log_request_fields *f)
{
	char buf[LINE_MAX_BYTES];
	size_t pos = 0;

	if (!srv__log_enabled(SRV_LOG_INFO))
		return;
	stamp(buf, sizeof(buf), &pos, SRV_LOG_INFO);
	put(buf, sizeof(buf), &pos, ",\"msg\":\"request\",\"request_id\":");
	srv__json_str(buf, sizeof(buf), &pos, f->request_id);
	put(buf, sizeof(buf), &pos, ",\"method\":");
	srv__json_str(buf, sizeof(buf), &pos, f->method);
	put(buf, sizeof(buf), &pos,
	    ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,"
	    "\"duration_ms\":%.3f,\"route\":",
	    f->status, (unsigned long long)f->bytes_in, (unsigned long long)f->bytes_out,
	    f->duration_s * 1e3);
	srv__json_str(buf, sizeof(buf), &pos, f->route);
	if (f->error) {
		put(buf, sizeof(buf), &pos, ",\"error\":");
		srv__json_str(buf, sizeof(buf), &pos, f->error);
	}
	if (f->client) {
		put(buf, sizeof(buf), &pos, ",\"client\":");
		srv__json_str(buf, sizeof(buf), &pos, f->client);
	}
	/* The path last: it is the field a client controls and may truncate. */
	put(buf, sizeof(buf), &pos, ",\"path\":");
	srv__json_str(buf, sizeof(buf) - 2, &pos, f->path);
	finish(buf, sizeof(buf), &pos);
	emit(buf, pos);
}
