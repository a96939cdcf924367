/*
 * auth.h - bearer tokens: who is calling, and may they write.
 */
#ifndef LOSSD_SERVER_AUTH_H
#define LOSSD_SERVER_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct srv_auth srv_auth;

/*
 * Parses a tokens file's text: one token per line, "TOKEN PRINCIPAL
 * [rw|ro]" separated by blanks (rw when omitted); blank lines and lines
 * starting with '#' are ignored. A token is 16 to 256 characters of
 * [A-Za-z0-9._~+/=-] (RFC 6750's b64token); a principal 1 to 64 of
 * [A-Za-z0-9._@-]. Duplicate tokens and a file with no token are errors.
 * Returns 0 and a new table in *out (free with srv_auth_free), or -1 with
 * a one-line message in err (naming the line, never the token). Main
 * thread.
 */
int srv_auth_parse(srv_auth **out, const char *text, char *err, size_t errlen);

/* Reads path and parses it as above. Main thread. */
int srv_auth_load(srv_auth **out, const char *path, char *err, size_t errlen);

/* Accepts NULL. Main thread, after the last srv_auth_check. */
void srv_auth_free(srv_auth *a);

/* Number of tokens. */
size_t srv_auth_count(const srv_auth *a);

#define SRV_AUTH_OK      0
#define SRV_AUTH_MISSING 1 /* no Authorization, or not a Bearer one */
#define SRV_AUTH_INVALID 2 /* a Bearer token that is not in the table */

/*
 * Checks an Authorization header value (or NULL). On SRV_AUTH_OK sets
 * *principal (borrowed from a, valid until srv_auth_free) and *read_only.
 * Every token is compared in constant time, so timing does not tell how
 * much of a guess was right. Any thread (the table is read-only).
 */
int srv_auth_check(const srv_auth *a, const char *authorization, const char **principal,
                   bool *read_only);

#endif
