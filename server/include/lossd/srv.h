/*
 * srv.h - the server layer's public entry point: the whole daemon behind
 * one call, so main.c is only `return srv_main(argc, argv);`.
 */
#ifndef LOSSD_SERVER_SRV_H
#define LOSSD_SERVER_SRV_H

/*
 * Parses the configuration (flags over LOSSD_* variables over defaults),
 * then either prints --help/--version (returns 0), runs the --check probe
 * (0 on 2xx, else 1), or runs the daemon until SIGTERM/SIGINT and a clean
 * drain (returns 0). A usage error prints a message to stderr and returns
 * 2; a startup failure is logged and returns 1.
 * Main thread, once per process (the daemon keeps process-wide state:
 * signal mask, metrics, UV_THREADPOOL_SIZE).
 */
int srv_main(int argc, char **argv);

#endif
