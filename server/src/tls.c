/*
 * tls.c - a startup check of the --tls-cert / --tls-key pair with GnuTLS,
 * the library libmicrohttpd serves TLS with.
 *
 * Why: libmicrohttpd 0.9.75 refuses a bad pair only inside
 * MHD_start_daemon, which then fails with a stale errno ("cannot listen:
 * No such file or directory") and leaks GnuTLS' half-built state. Loading
 * the pair here first gives the operator GnuTLS' own reason (a certificate
 * that does not parse, a key that is not the certificate's) and a clean
 * exit 1.
 *
 * It keeps nothing: the credentials are freed before it returns, and
 * libmicrohttpd loads the same PEM text again. It does not check dates,
 * names or chains (a client's job), nor the priorities (http.c sets them).
 */
#include "tls.h"

#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int srv__tls_check(const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
	gnutls_certificate_credentials_t cred = NULL;
	gnutls_datum_t cert, key;
	int rc;

	rc = gnutls_certificate_allocate_credentials(&cred);
	if (rc < 0)
		goto out;
	cert.data = (unsigned char *)(uintptr_t)cert_pem;
	cert.size = (unsigned int)strlen(cert_pem);
	key.data = (unsigned char *)(uintptr_t)key_pem;
	key.size = (unsigned int)strlen(key_pem);
	/* Also checks that the key belongs to the first certificate. */
	rc = gnutls_certificate_set_x509_key_mem(cred, &cert, &key, GNUTLS_X509_FMT_PEM);
out:
	if (cred)
		gnutls_certificate_free_credentials(cred);
	if (rc < 0) {
		if (err && errlen)
			snprintf(err, errlen, "%s", gnutls_strerror(rc));
		return -1;
	}
	return 0;
}
