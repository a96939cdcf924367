/*
 * auth.h - bearer tokens: who is calling, and what may they do.
 */
#ifndef LOSSD_SERVER_AUTH_H
#define LOSSD_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct srv__auth srv__auth;

/* A token's role, the third field of its line. */
typedef enum srv__role {
	SRV_ROLE_RW = 0, /* reads and writes its principal's streams (the default) */
	SRV_ROLE_RO,     /* reads its principal's streams */
	SRV_ROLE_ADMIN,  /* reads every principal's streams; writes nothing */
} srv__role;

#define SRV_PRINCIPAL_MAX 64

/*
 * Reads a tokens file at path: one token per line, "TOKEN PRINCIPAL
 * [rw|ro|admin]" separated by blanks (rw when omitted); blank lines and lines
 * starting with '#' are ignored. A token is 16 to 256 characters of
 * [A-Za-z0-9._~+/=-] (RFC 6750's b64token); a principal 1 to 64 of
 * [A-Za-z0-9._@-]. Duplicate tokens and a file with no token are errors.
 * Returns 0 and a new table in *out (free with srv__auth_free), or -1 with
 * a one-line message in err (naming the line, never the token). Main
 * thread.
 */
int srv__auth_load(srv__auth **out, const char *path, char *err, size_t errlen);

/*
 * Reads path again and, when it parses, swaps the new tokens in: checks
 * from then on see only them (a token no longer in the file gets
 * SRV_AUTH_INVALID); checks already past the swap are not disturbed. On
 * any error the old tokens stay and -1 comes back with err. Main thread
 * (SIGHUP); checks on other threads may run meanwhile.
 */
int srv__auth_reload(srv__auth *a, const char *path, char *err, size_t errlen);

/* Accepts NULL. Main thread, after the last srv__auth_check. */
void srv__auth_free(srv__auth *a);

/* Number of tokens. Any thread. */
size_t srv__auth_count(srv__auth *a);

#define SRV_AUTH_OK      0
#define SRV_AUTH_MISSING 1 /* no Authorization, or not a Bearer one */
#define SRV_AUTH_INVALID 2 /* a Bearer token that is not in the table */

/*
 * Checks an Authorization header value (or NULL). On SRV_AUTH_OK copies
 * the token's principal into principal (NUL-terminated; a copy, so a
 * reload cannot pull it from under the request) and sets *role. Every
 * token is compared in constant time, so timing does not tell how much of
 * a guess was right. Any thread.
 */
int srv__auth_check(srv__auth *a, const char *authorization, char principal[SRV_PRINCIPAL_MAX + 1],
                    srv__role *role);

#endif
