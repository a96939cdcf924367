/*
 * b64.h - standard padded base64 (b64.c): tensor payloads and stream states.
 */
#ifndef LOSSD_API_B64_H
#define LOSSD_API_B64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes that len characters of padded base64 at s decode to, or SIZE_MAX
 * when len is not a multiple of 4. Looks only at the padding. */
size_t api__b64_decoded_size(const char *s, size_t len);

/*
 * Decodes len characters at s into dst, which must hold exactly
 * api__b64_decoded_size(s, len) bytes. Returns 0, or -1 when s is not
 * valid padded base64, with *bad_at (may be NULL) the offset of the first
 * offending character (len when the length itself is wrong); dst then
 * holds garbage.
 */
int api__b64_decode(void *dst, const char *s, size_t len, size_t *bad_at);

/*
 * The streaming decoder's inner loop (body.c): decodes `groups` groups of 4
 * characters at s into 3 * groups bytes at dst, storing 4 bytes a group (dst
 * must have one byte of room past them). No padding: '=' counts as outside
 * the alphabet. Returns nonzero when any character was outside it (the
 * bytes of its group are then garbage).
 */
uint32_t api__b64_decode_groups(unsigned char *dst, const unsigned char *s, size_t groups);

/*
 * Tests only, never while another thread decodes: on = false makes every
 * decode take the table path; on = true the AVX2 path where this build and
 * CPU have it (the default). Returns whether the AVX2 path is now used.
 */
bool api__b64_set_simd(bool on);

/* Whether c is one of the 64 characters of the alphabet ('=' is not). */
bool api__b64_alphabet(unsigned char c);

/* n bytes at bytes as padded base64, NUL-terminated: new (free()), NULL
 * when out of memory. */
char *api__b64_encode(const void *bytes, size_t n);

#endif
