/*
 * thread.h - names the calling thread, so that `top -H`, `perf report
 * --sort pid`, gdb and /proc/PID/task/TID/comm tell lossd's threads apart
 * ("lossd-commit" is the store's committer, ...; docs/ARCHITECTURE.md lists
 * them). At most 15 characters are kept. Linux only; elsewhere nothing.
 */
#ifndef LOSSD_SERVER_THREAD_H
#define LOSSD_SERVER_THREAD_H

#ifdef __linux__
#include <sys/prctl.h>
#endif

static inline void srv__thread_name(const char *name)
{
#ifdef __linux__
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
#else
	(void)name;
#endif
}

#endif
