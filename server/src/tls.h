/*
 * tls.h - checks a PEM certificate and key before libmicrohttpd gets them.
 */
#ifndef LOSSD_SERVER_TLS_H
#define LOSSD_SERVER_TLS_H

#include <stddef.h>

/*
 * Loads cert_pem (a certificate chain) and key_pem (its private key), both
 * NUL-terminated PEM text (borrowed), into throw-away GnuTLS credentials:
 * both must parse and the key must be the certificate's. Returns 0, or -1
 * with a one-line reason in err (GnuTLS' words; never the key's text).
 * Main thread.
 */
int srv__tls_check(const char *cert_pem, const char *key_pem, char *err, size_t errlen);

#endif
