/*
 * check.c - `lossd --check URL`: a self-probe for container health checks.
 *
 * Images built on a slim base have no curl; the daemon's own binary GETs
 * the URL over HTTP/1.1 with "Connection: close" and exits 0 when the
 * status line says 2xx. It understands http:// and https://
 * host[:port][/path] with a numeric or resolvable host; not redirects or
 * proxies. The whole exchange is bounded by a timeout (socket send/receive
 * timeouts, which on Linux also bound connect, and GnuTLS' handshake
 * timeout) and it reads only the status line.
 *
 * https: GnuTLS (the library libmicrohttpd serves TLS with) speaks TLS to
 * the server but does not verify its certificate: the probe asks "does the
 * lossd on this port answer?" (typically https://127.0.0.1:8080/livez
 * inside the container, where no certificate names 127.0.0.1), not "is
 * this the right server?". It sends SNI when the host is a name.
 */
#include "server.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int split_url(const char *url, char *host, size_t hcap, char *port, size_t pcap,
                     const char **path)
{
	const char *p, *h, *hend, *slash;
	bool tls = !strncmp(url, "https://", 8);

	if (!tls && strncmp(url, "http://", 7) != 0)
		return -1;
	h = url + (tls ? 8 : 7);
	slash = strchr(h, '/');
	*path = slash ? slash : "/";
	hend = slash ? slash : h + strlen(h);
	if (*h == '[') { /* [v6]:port */
		const char *rb = memchr(h, ']', (size_t)(hend - h));
		if (!rb || (size_t)(rb - h - 1) >= hcap)
			return -1;
		memcpy(host, h + 1, (size_t)(rb - h - 1));
		host[rb - h - 1] = '\0';
		p = rb + 1;
	} else {
		const char *colon = memchr(h, ':', (size_t)(hend - h));
		const char *e = colon ? colon : hend;
		if (e == h || (size_t)(e - h) >= hcap)
			return -1;
		memcpy(host, h, (size_t)(e - h));
		host[e - h] = '\0';
		p = e;
	}
	if (p < hend && *p == ':') {
		p++;
		if (p == hend || (size_t)(hend - p) >= pcap)
			return -1;
		memcpy(port, p, (size_t)(hend - p));
		port[hend - p] = '\0';
	} else if (p == hend) {
		snprintf(port, pcap, tls ? "443" : "80");
	} else {
		return -1;
	}
	return 0;
}

/* One send or recv, through TLS when sess is set: bytes, or -1. */
static ssize_t io(int fd, gnutls_session_t sess, char *buf, size_t n, bool out)
{
	for (;;) {
		ssize_t r;
		if (sess) {
			r = out ? gnutls_record_send(sess, buf, n)
			        : gnutls_record_recv(sess, buf, n);
			if (r == GNUTLS_E_INTERRUPTED)
				continue;
			if (r == GNUTLS_E_PREMATURE_TERMINATION)
				return 0;
			return r < 0 ? -1 : r;
		}
		r = out ? send(fd, buf, n, MSG_NOSIGNAL) : recv(fd, buf, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		return r;
	}
}

/* A TLS client session on fd, handshake done; NULL (and a message). */
static gnutls_session_t tls_open(int fd, const char *host, int timeout_s,
                                 gnutls_certificate_credentials_t *cred)
{
	gnutls_session_t sess = NULL;
	unsigned char addr[16];
	int rc;

	if ((rc = gnutls_certificate_allocate_credentials(cred)) < 0 ||
	    (rc = gnutls_init(&sess, GNUTLS_CLIENT)) < 0 ||
	    (rc = gnutls_set_default_priority(sess)) < 0 ||
	    (rc = gnutls_credentials_set(sess, GNUTLS_CRD_CERTIFICATE, *cred)) < 0)
		goto fail;
	/* SNI for a name; an IP address is not sent (RFC 6066) */
	if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
		gnutls_server_name_set(sess, GNUTLS_NAME_DNS, host, strlen(host));
	gnutls_transport_set_int(sess, fd);
	gnutls_handshake_set_timeout(sess, (unsigned)timeout_s * 1000u);
	do
		rc = gnutls_handshake(sess);
	while (rc < 0 && !gnutls_error_is_fatal(rc) && rc != GNUTLS_E_AGAIN);
	if (rc < 0)
		goto fail;
	return sess;
fail:
	fprintf(stderr, "lossd --check: TLS with %s failed: %s\n", host, gnutls_strerror(rc));
	if (sess)
		gnutls_deinit(sess);
	return NULL;
}

int srv__check(const char *url, int timeout_s)
{
	char host[256], port[16], req[2048], resp[256];
	const char *path;
	struct addrinfo hints = {0}, *ai = NULL, *a;
	struct timeval tv = {timeout_s, 0};
	gnutls_session_t sess = NULL;
	gnutls_certificate_credentials_t cred = NULL;
	int fd = -1, rc = 1, code = 0;
	size_t got = 0, off = 0;
	int n;

	if (split_url(url, host, sizeof(host), port, sizeof(port), &path)) {
		fprintf(stderr, "lossd --check: expected http(s)://host[:port]/path, got \"%s\"\n",
		        url);
		return 1;
	}
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai) {
		fprintf(stderr, "lossd --check: cannot resolve %s\n", host);
		return 1;
	}
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		fprintf(stderr, "lossd --check: cannot connect to %s port %s: %s\n", host, port,
		        strerror(errno));
		goto out;
	}
	if (!strncmp(url, "https://", 8) && !(sess = tls_open(fd, host, timeout_s, &cred)))
		goto out;
	n = snprintf(req, sizeof(req),
	             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lossd-check\r\n"
	             "Connection: close\r\n\r\n",
	             path, host);
	if (n < 0 || (size_t)n >= sizeof(req)) {
		fprintf(stderr, "lossd --check: URL too long\n");
		goto out;
	}
	while (off < (size_t)n) {
		ssize_t w = io(fd, sess, req + off, (size_t)n - off, true);
		if (w <= 0) {
			fprintf(stderr, "lossd --check: send failed: %s\n", strerror(errno));
			goto out;
		}
		off += (size_t)w;
	}
	while (got < sizeof(resp) - 1 && !memchr(resp, '\n', got)) {
		ssize_t r = io(fd, sess, resp + got, sizeof(resp) - 1 - got, false);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/%*d.%*d %d", &code) != 1) {
		fprintf(stderr, "lossd --check: no HTTP status line from %s\n", url);
		goto out;
	}
	if (code >= 200 && code < 300)
		rc = 0;
	else
		fprintf(stderr, "lossd --check: %s answered %d\n", url, code);
out:
	if (sess) {
		gnutls_bye(sess, GNUTLS_SHUT_WR);
		gnutls_deinit(sess);
	}
	if (cred)
		gnutls_certificate_free_credentials(cred);
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc;
}
