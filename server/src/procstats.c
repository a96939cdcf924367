/*
 * procstats.c - the process_* metrics every Prometheus client library
 * exports (see prometheus/client_golang's process collector), from Linux's
 * /proc and getrusage/getrlimit:
 *   process_cpu_seconds_total       user + system CPU time (getrusage)
 *   process_resident_memory_bytes   resident pages x page size (/proc/self/statm)
 *   process_virtual_memory_bytes    virtual size (/proc/self/statm)
 *   process_open_fds                entries of /proc/self/fd (minus the one
 *                                   the listing itself holds)
 *   process_max_fds                 RLIMIT_NOFILE's soft limit
 *   process_start_time_seconds      boot time (/proc/stat btime) + the
 *                                   process' start in clock ticks
 *                                   (/proc/self/stat field 22)
 * Each is read when /metrics is scraped: no thread, no state. A figure
 * that cannot be read (no /proc) is left out rather than reported as 0.
 */
#include "procstats.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct out {
	char *p;
	size_t len, cap;
} out;

/* One family; whole numbers print without a fraction. */
static void family(out *o, const char *name, const char *type, const char *help, double v,
                   int decimals)
{
	char line[512], num[64];
	snprintf(num, sizeof num, "%.*f", decimals, v);
	int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name,
	                 type, name, num);
	if (n <= 0 || (size_t)n >= sizeof line || o->len + (size_t)n + 1 > o->cap)
		return;
	memcpy(o->p + o->len, line, (size_t)n + 1);
	o->len += (size_t)n;
}

static int read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n ? 0 : -1;
}

/* Start time in seconds since the epoch, or -1. */
static double start_time(void)
{
	char st[1024], ps[8192];
	if (read_file("/proc/self/stat", st, sizeof st) || read_file("/proc/stat", ps, sizeof ps))
		return -1;
	/* fields after the command, which is in parentheses and may hold spaces */
	const char *p = strrchr(st, ')');
	if (!p)
		return -1;
	p += 2; /* field 3 */
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	const char *bt = strstr(ps, "\nbtime ");
	long hz = sysconf(_SC_CLK_TCK);
	if (!p || !bt || hz <= 0)
		return -1;
	unsigned long long ticks = strtoull(p, NULL, 10), boot = strtoull(bt + 7, NULL, 10);
	return (double)boot + (double)ticks / (double)hz;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	long n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the listing's own descriptor */
}

size_t srv__process_metrics(char *buf, size_t cap)
{
	out o = {buf, 0, cap};
	struct rusage ru;
	struct rlimit rl;
	char sm[256];

	if (!cap)
		return 0;
	buf[0] = '\0';
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		family(&o, "process_cpu_seconds_total", "counter",
		       "Total user and system CPU time spent in seconds.",
		       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
		       6);
	if (read_file("/proc/self/statm", sm, sizeof sm) == 0) {
		unsigned long long vsz = 0, rss = 0;
		long page = sysconf(_SC_PAGESIZE);
		if (sscanf(sm, "%llu %llu", &vsz, &rss) == 2 && page > 0) {
			family(&o, "process_resident_memory_bytes", "gauge",
			       "Resident memory size in bytes.", (double)rss * (double)page, 0);
			family(&o, "process_virtual_memory_bytes", "gauge",
			       "Virtual memory size in bytes.", (double)vsz * (double)page, 0);
		}
	}
	long fds = open_fds();
	if (fds >= 0)
		family(&o, "process_open_fds", "gauge", "Number of open file descriptors.",
		       (double)fds, 0);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		family(&o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
		       (double)rl.rlim_cur, 0);
	double t0 = start_time();
	if (t0 > 0)
		family(&o, "process_start_time_seconds", "gauge",
		       "Start time of the process since unix epoch in seconds.", t0, 2);
	return o.len;
}
