/*
 * procstats.h - private: the standard process metrics of the Prometheus
 * client libraries (process_resident_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, ...) read from /proc, for metrics.c.
 */
#ifndef LOSSD_SERVER_PROCSTATS_H
#define LOSSD_SERVER_PROCSTATS_H

#include <stddef.h>

/* Writes the process_* families (HELP, TYPE and value lines) into out
 * (cap bytes, NUL-terminated, truncated at a line when too small). A
 * value that cannot be read is left out with its family. Returns the
 * length written. Any thread. */
size_t srv__process_metrics(char *out, size_t cap);

#endif
