/*
 * mhd_ceiling.c - the ceiling for lossd's HTTP figures: a bare
 * libmicrohttpd + jansson server with nothing else in the way.
 *
 * It answers every POST by reading the whole body and then, by --mode:
 *   fixed  replies a fixed JSON object without looking at the body;
 *   parse  parses the body with json_loadb and replies a fixed object;
 *   loss   (default) parses the body and computes the mean sparse
 *          cross-entropy from the logits in "y_pred" with labels "y_true"
 *          (rows of a nested array), replying {"loss": x}.
 * lossd does strictly more per request (validation, per-class figures,
 * metrics, limits), so "loss" mode is the honest ceiling for lossd's small
 * requests, and "fixed" shows what HTTP alone costs.
 *
 * Threads: libmicrohttpd's own pool (--threads, default 2) with epoll, each
 * thread running the handler inline, as the cheapest configuration.
 * Deliberately no validation beyond what keeps it from crashing, no limits,
 * no logging: it is a measuring stick, built by bench/ and never shipped.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MODE_FIXED, MODE_PARSE, MODE_LOSS };

static int g_mode = MODE_LOSS;

typedef struct body {
	char *buf;
	size_t len, cap;
} body;

static const char fixed_reply[] = "{\"loss\": 2.302585, \"count\": 32}";

static double mean_sparse_ce(json_t *root, int *ok)
{
	json_t *yt = json_object_get(root, "y_true"), *yp = json_object_get(root, "y_pred");
	size_t n = json_array_size(yt);
	double total = 0.0;

	*ok = json_is_array(yt) && json_is_array(yp) && json_array_size(yp) == n && n > 0;
	for (size_t i = 0; *ok && i < n; i++) {
		json_t *row = json_array_get(yp, i);
		size_t c = json_array_size(row);
		json_int_t y = json_integer_value(json_array_get(yt, i));
		double m = -INFINITY, s = 0.0;

		if (c == 0 || y < 0 || (size_t)y >= c) {
			*ok = 0;
			break;
		}
		for (size_t k = 0; k < c; k++)
			m = fmax(m, json_number_value(json_array_get(row, k)));
		for (size_t k = 0; k < c; k++)
			s += exp(json_number_value(json_array_get(row, k)) - m);
		total += m + log(s) - json_number_value(json_array_get(row, (size_t)y));
	}
	return *ok ? total / (double)n : NAN;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text,
                             size_t len)
{
	struct MHD_Response *r =
	        MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
	body *b = *con_cls;
	json_t *root;
	json_error_t jerr;
	char out[128];
	int ok = 1, n;
	double loss;

	if (!b) {
		b = calloc(1, sizeof *b);
		if (!b)
			return MHD_NO;
		*con_cls = b;
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (b->len + *upload_size > b->cap) {
			size_t cap = b->cap ? b->cap : 4096;
			char *nb;

			while (cap < b->len + *upload_size)
				cap *= 2;
			nb = realloc(b->buf, cap);
			if (!nb)
				return MHD_NO;
			b->buf = nb;
			b->cap = cap;
		}
		memcpy(b->buf + b->len, upload, *upload_size);
		b->len += *upload_size;
		*upload_size = 0;
		return MHD_YES;
	}
	if (g_mode == MODE_FIXED)
		return reply(c, MHD_HTTP_OK, fixed_reply, sizeof fixed_reply - 1);
	root = json_loadb(b->buf ? b->buf : "", b->len, 0, &jerr);
	if (!root) {
		n = snprintf(out, sizeof out, "{\"error\": \"malformed_json\"}");
		return reply(c, MHD_HTTP_BAD_REQUEST, out, (size_t)n);
	}
	if (g_mode == MODE_PARSE) {
		json_decref(root);
		return reply(c, MHD_HTTP_OK, fixed_reply, sizeof fixed_reply - 1);
	}
	loss = mean_sparse_ce(root, &ok);
	json_decref(root);
	if (!ok) {
		n = snprintf(out, sizeof out, "{\"error\": \"bad_request\"}");
		return reply(c, 422, out, (size_t)n);
	}
	n = snprintf(out, sizeof out, "{\"loss\": %.17g}", loss);
	return reply(c, MHD_HTTP_OK, out, (size_t)n);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
	body *b = *con_cls;

	if (b) {
		free(b->buf);
		free(b);
		*con_cls = NULL;
	}
}

int main(int argc, char **argv)
{
	unsigned port = 8089, threads = 2;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	sigset_t set;
	int sig;
	struct sockaddr_in addr;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			port = (unsigned)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
			threads = (unsigned)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
			const char *m = argv[++i];

			g_mode = strcmp(m, "fixed") == 0   ? MODE_FIXED
			         : strcmp(m, "parse") == 0 ? MODE_PARSE
			                                   : MODE_LOSS;
		} else {
			fprintf(stderr,
			        "usage: %s [--port N] [--threads N] [--mode fixed|parse|loss]\n",
			        argv[0]);
			return 2;
		}
	}
	/* Block the stop signals before MHD starts its threads, then wait for one. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	/* Loopback only: this server is for local load tests. */
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(
	        MHD_USE_EPOLL | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, handle,
	        NULL, MHD_OPTION_THREAD_POOL_SIZE, threads < 1 ? 1u : threads,
	        MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_CONNECTION_LIMIT, 4096u,
	        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "mhd_ceiling: cannot listen on port %u\n", port);
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	fprintf(stderr, "mhd_ceiling: listening on 127.0.0.1:%u, %u threads\n",
	        info ? (unsigned)info->port : port, threads);
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}
