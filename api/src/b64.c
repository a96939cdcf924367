/*
 * b64.c - standard base64 (RFC 4648 section 4, padded): decoding the
 * payload of {"shape", "dtype", "b64"} tensors and of imported stream
 * states, encoding exported stream states.
 *
 * Why shaped so: tensors arrive as megabytes of base64 (a (8192, 32000)
 * float32 tensor is 1.4 GB of it, decoded on the connection's thread as it
 * arrives: body.c), so the decoder has two paths that give the same bytes.
 *
 * The table path, everywhere: b64dK[c] is character c in position K of a
 * group of 4, already placed where its 6 bits land in the 3 output bytes as
 * a little-endian uint32 (byte 0 = first output byte), so a group decodes
 * to b64d0[s0] | b64d1[s1] | b64d2[s2] | b64d3[s3] and is stored with one
 * 4-byte memcpy (the 4th byte is overwritten by the next group). Characters
 * outside the alphabet set bit 24 (B64_BAD), which the OR carries to the
 * end of the loop; only then, off the fast path, is the offending
 * character looked for.
 *
 * The AVX2 path, on x86-64 CPUs that have AVX2 (asked once, with
 * __builtin_cpu_supports; the function alone is compiled for AVX2, so the
 * binary runs on any x86-64 and builds elsewhere without it): 32
 * characters at a time, after the method Wojciech Mula and Daniel Lemire
 * describe ("Faster Base64 Encoding and Decoding Using AVX2 Instructions",
 * 2018). A character's high nibble picks one class bit (0x2_, 0x3_, 0x4_ or
 * 0x6_, 0x5_ or 0x7_, anything else) and its low nibble the set of classes
 * in which it is NOT a base64 character, both by vpshufb; a nonzero AND
 * marks a character outside the alphabet. The high nibble (less one for
 * '/', which shares 0x2_ with '+') picks by a third vpshufb what to add to
 * the character to get its 6 bits; vpmaddubsw joins pairs into 12 bits,
 * vpmaddwd pairs of those into 24, and a vpshufb and a vpermd put the 24
 * bytes in order, stored as 16 + 8 bytes (nothing past them). A block of 32
 * with a character outside the alphabet ends the AVX2 loop: the table path
 * decodes from that block on, so every byte written, garbage included, and
 * every error are the table path's. The tail (fewer than 32 characters, and
 * the last group, which may hold '=') is always the table path's.
 *
 * Measured on one core of a shared 2-core AVX-512 machine, api__b64_decode
 * of 171 MB of base64 into a buffer already faulted in, the two paths
 * alternated in one process: tables 4.0 to 4.2 GB/s of input, AVX2 12 to
 * 14 GB/s (load 3.6); 2.1 to 2.7 against 8.1 to 9.7 GB/s at load 8.8,
 * about 3.3x either way. End to end through body.c: docs/PERFORMANCE.md,
 * "Large base64 request read as it arrives".
 *
 * Invariants: only the last group may hold '=' (one or two, at its end);
 * len must be a multiple of 4. Padding bits are not required to be zero.
 * Both paths write the same bytes for every input, valid or not (tests
 * compare them: tests/api/test_b64.c, and fuzz_body with the table path
 * forced on one side).
 *
 * The encoder is the plain one (a state is exported far less often than
 * tensors arrive) and always pads.
 *
 * It does not accept the URL-safe alphabet, unpadded input or whitespace.
 */
#include "b64.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define B64_AVX2 1
#include <immintrin.h>
#endif

#define B64_BAD 0x01000000u
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the base64 tables assume a little-endian host"
#endif

// clang-format off
static const uint32_t b64d0[256] = {
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x000000f8, 0x01000000, 0x01000000, 0x01000000, 0x000000fc, 0x000000d0,
        0x000000d4, 0x000000d8, 0x000000dc, 0x000000e0, 0x000000e4, 0x000000e8, 0x000000ec,
        0x000000f0, 0x000000f4, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x00000000, 0x00000004, 0x00000008, 0x0000000c, 0x00000010,
        0x00000014, 0x00000018, 0x0000001c, 0x00000020, 0x00000024, 0x00000028, 0x0000002c,
        0x00000030, 0x00000034, 0x00000038, 0x0000003c, 0x00000040, 0x00000044, 0x00000048,
        0x0000004c, 0x00000050, 0x00000054, 0x00000058, 0x0000005c, 0x00000060, 0x00000064,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x00000068,
        0x0000006c, 0x00000070, 0x00000074, 0x00000078, 0x0000007c, 0x00000080, 0x00000084,
        0x00000088, 0x0000008c, 0x00000090, 0x00000094, 0x00000098, 0x0000009c, 0x000000a0,
        0x000000a4, 0x000000a8, 0x000000ac, 0x000000b0, 0x000000b4, 0x000000b8, 0x000000bc,
        0x000000c0, 0x000000c4, 0x000000c8, 0x000000cc, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000,
};

static const uint32_t b64d1[256] = {
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x0000e003, 0x01000000, 0x01000000, 0x01000000, 0x0000f003, 0x00004003,
        0x00005003, 0x00006003, 0x00007003, 0x00008003, 0x00009003, 0x0000a003, 0x0000b003,
        0x0000c003, 0x0000d003, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x00000000, 0x00001000, 0x00002000, 0x00003000, 0x00004000,
        0x00005000, 0x00006000, 0x00007000, 0x00008000, 0x00009000, 0x0000a000, 0x0000b000,
        0x0000c000, 0x0000d000, 0x0000e000, 0x0000f000, 0x00000001, 0x00001001, 0x00002001,
        0x00003001, 0x00004001, 0x00005001, 0x00006001, 0x00007001, 0x00008001, 0x00009001,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x0000a001,
        0x0000b001, 0x0000c001, 0x0000d001, 0x0000e001, 0x0000f001, 0x00000002, 0x00001002,
        0x00002002, 0x00003002, 0x00004002, 0x00005002, 0x00006002, 0x00007002, 0x00008002,
        0x00009002, 0x0000a002, 0x0000b002, 0x0000c002, 0x0000d002, 0x0000e002, 0x0000f002,
        0x00000003, 0x00001003, 0x00002003, 0x00003003, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000,
};

static const uint32_t b64d2[256] = {
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x00800f00, 0x01000000, 0x01000000, 0x01000000, 0x00c00f00, 0x00000d00,
        0x00400d00, 0x00800d00, 0x00c00d00, 0x00000e00, 0x00400e00, 0x00800e00, 0x00c00e00,
        0x00000f00, 0x00400f00, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x00000000, 0x00400000, 0x00800000, 0x00c00000, 0x00000100,
        0x00400100, 0x00800100, 0x00c00100, 0x00000200, 0x00400200, 0x00800200, 0x00c00200,
        0x00000300, 0x00400300, 0x00800300, 0x00c00300, 0x00000400, 0x00400400, 0x00800400,
        0x00c00400, 0x00000500, 0x00400500, 0x00800500, 0x00c00500, 0x00000600, 0x00400600,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x00800600,
        0x00c00600, 0x00000700, 0x00400700, 0x00800700, 0x00c00700, 0x00000800, 0x00400800,
        0x00800800, 0x00c00800, 0x00000900, 0x00400900, 0x00800900, 0x00c00900, 0x00000a00,
        0x00400a00, 0x00800a00, 0x00c00a00, 0x00000b00, 0x00400b00, 0x00800b00, 0x00c00b00,
        0x00000c00, 0x00400c00, 0x00800c00, 0x00c00c00, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000,
};

static const uint32_t b64d3[256] = {
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x003e0000, 0x01000000, 0x01000000, 0x01000000, 0x003f0000, 0x00340000,
        0x00350000, 0x00360000, 0x00370000, 0x00380000, 0x00390000, 0x003a0000, 0x003b0000,
        0x003c0000, 0x003d0000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x00000000, 0x00010000, 0x00020000, 0x00030000, 0x00040000,
        0x00050000, 0x00060000, 0x00070000, 0x00080000, 0x00090000, 0x000a0000, 0x000b0000,
        0x000c0000, 0x000d0000, 0x000e0000, 0x000f0000, 0x00100000, 0x00110000, 0x00120000,
        0x00130000, 0x00140000, 0x00150000, 0x00160000, 0x00170000, 0x00180000, 0x00190000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x001a0000,
        0x001b0000, 0x001c0000, 0x001d0000, 0x001e0000, 0x001f0000, 0x00200000, 0x00210000,
        0x00220000, 0x00230000, 0x00240000, 0x00250000, 0x00260000, 0x00270000, 0x00280000,
        0x00290000, 0x002a0000, 0x002b0000, 0x002c0000, 0x002d0000, 0x002e0000, 0x002f0000,
        0x00300000, 0x00310000, 0x00320000, 0x00330000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000, 0x01000000,
        0x01000000, 0x01000000, 0x01000000, 0x01000000,
};
// clang-format on

static bool valid(unsigned char c)
{
	return !(b64d0[c] & B64_BAD);
}

/*
 * Which path decodes: -1 not asked yet, 0 the tables, 1 AVX2. Asked once
 * (racing first callers all store the same answer); api__b64_set_simd
 * changes it for tests.
 */
static atomic_int simd = -1;

static bool cpu_avx2(void)
{
#ifdef B64_AVX2
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
#else
	return false;
#endif
}

#ifdef B64_AVX2
static bool use_avx2(void)
{
	int m = atomic_load_explicit(&simd, memory_order_relaxed);
	if (m < 0) {
		m = cpu_avx2();
		atomic_store_explicit(&simd, m, memory_order_relaxed);
	}
	return m == 1;
}
#endif

bool api__b64_set_simd(bool on)
{
	int m = on && cpu_avx2();
	atomic_store_explicit(&simd, m, memory_order_relaxed);
	return m == 1;
}

#ifdef B64_AVX2
/*
 * Decodes up to `blocks` blocks of 32 characters at s into 24 bytes each at
 * dst, writing nothing else. Stops before the first block that holds a
 * character outside the alphabet ('=' included). Returns how many it
 * decoded.
 */
__attribute__((target("avx2"))) static size_t decode_avx2(unsigned char *dst,
                                                          const unsigned char *s, size_t blocks)
{
	/* class bits: 0x01 high nibble 2, 0x02 3, 0x04 4 or 6, 0x08 5 or 7,
	 * 0x10 any other; by low nibble, the classes where it is not base64:
	 * 0x2_ holds only '+' (b) and '/' (f), 0x3_ only 0-9, 0x4_ and 0x6_
	 * all but 0, 0x5_ and 0x7_ only 0 to a */
	const __m256i lo_bad =
	        _mm256_setr_epi8(0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13,
	                         0x1a, 0x1b, 0x1b, 0x1b, 0x1a, 0x15, 0x11, 0x11, 0x11, 0x11, 0x11,
	                         0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a);
	const __m256i hi_class =
	        _mm256_setr_epi8(0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10,
	                         0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x01, 0x02, 0x04, 0x08,
	                         0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10);
	/* what to add, by high nibble ('/' one lower): '/' 63-47, '+' 62-43,
	 * digits 52-48, A-Z 0-65, a-z 26-97 */
	const __m256i add =
	        _mm256_setr_epi8(0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16,
	                         19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0);
	const __m256i nibble = _mm256_set1_epi8(0x0f), slash = _mm256_set1_epi8('/');
	/* bytes a, b -> a * 64 + b; words ab, cd -> ab * 4096 + cd */
	const __m256i join12 = _mm256_set1_epi16(0x0140), join24 = _mm256_set1_epi32(0x00011000);
	/* each 24-bit value's bytes high to low, 12 bytes a lane */
	const __m256i order =
	        _mm256_setr_epi8(2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1, 2, 1, 0, 6,
	                         5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1);
	const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
	size_t b;

	for (b = 0; b < blocks; b++, s += 32, dst += 24) {
		__m256i c = _mm256_loadu_si256((const __m256i *)(const void *)s);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi32(c, 4), nibble);
		__m256i lo = _mm256_and_si256(c, nibble);
		__m256i bad = _mm256_and_si256(_mm256_shuffle_epi8(lo_bad, lo),
		                               _mm256_shuffle_epi8(hi_class, hi));
		if (!_mm256_testz_si256(bad, bad))
			break;
		__m256i pick = _mm256_add_epi8(hi, _mm256_cmpeq_epi8(c, slash));
		__m256i v = _mm256_add_epi8(c, _mm256_shuffle_epi8(add, pick));
		v = _mm256_madd_epi16(_mm256_maddubs_epi16(v, join12), join24);
		v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, order), lanes);
		_mm_storeu_si128((__m128i *)(void *)dst, _mm256_castsi256_si128(v));
		_mm_storel_epi64((__m128i *)(void *)(dst + 16), _mm256_extracti128_si256(v, 1));
	}
	return b;
}
#endif

/* The whole blocks of 32 characters among `groups` groups at s that the
 * AVX2 path decoded into dst (0 without it): groups done. */
static size_t decode_fast(unsigned char *dst, const unsigned char *s, size_t groups)
{
#ifdef B64_AVX2
	if (groups >= 8 && use_avx2())
		return decode_avx2(dst, s, groups / 8) * 8;
#endif
	(void)dst;
	(void)s;
	(void)groups;
	return 0;
}

size_t api__b64_decoded_size(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	if (len % 4 != 0)
		return SIZE_MAX;
	size_t n = len / 4 * 3;
	if (len && s[len - 1] == '=')
		n -= s[len - 2] == '=' ? 2 : 1;
	return n;
}

/* Offset of the first character that makes s invalid (len when none). */
static size_t first_bad(const unsigned char *s, size_t len)
{
	size_t at;
	for (at = 0; at < len; at++) {
		unsigned char c = s[at];
		bool pad = c == '=' && (at + 1 == len || (at + 2 == len && s[at + 1] == '='));
		if (!valid(c) && !pad)
			break;
	}
	return at;
}

int api__b64_decode(void *out, const char *str, size_t len, size_t *bad_at)
{
	const unsigned char *s = (const unsigned char *)str;
	const unsigned char *start = s;
	unsigned char *dst = out;
	size_t groups = len / 4;
	uint32_t bad = 0;

	if (len % 4 != 0) {
		if (bad_at)
			*bad_at = len;
		return -1;
	}
	if (groups == 0)
		return 0;
	/* All groups but the last: 32 characters -> 24 bytes while AVX2 can,
	 * then 4 characters -> 3 bytes, storing 4. */
	size_t done = decode_fast(dst, s, groups - 1);
	s += done * 4;
	dst += done * 3;
	for (size_t g = done; g + 1 < groups; g++, s += 4, dst += 3) {
		uint32_t x = b64d0[s[0]] | b64d1[s[1]] | b64d2[s[2]] | b64d3[s[3]];
		bad |= x;
		memcpy(dst, &x, 4);
	}
	/* The last group, which may end in "=" or "==". */
	uint32_t x = b64d0[s[0]] | b64d1[s[1]];
	if (s[3] != '=')
		x |= b64d2[s[2]] | b64d3[s[3]];
	else if (s[2] != '=')
		x |= b64d2[s[2]];
	bad |= x;
	dst[0] = (unsigned char)x;
	if (s[2] != '=')
		dst[1] = (unsigned char)(x >> 8);
	if (s[3] != '=')
		dst[2] = (unsigned char)(x >> 16);
	if (bad & B64_BAD) {
		if (bad_at)
			*bad_at = first_bad(start, len);
		return -1;
	}
	return 0;
}

uint32_t api__b64_decode_groups(unsigned char *dst, const unsigned char *s, size_t groups)
{
	uint32_t bad = 0;
	size_t done = decode_fast(dst, s, groups);
	s += done * 4;
	dst += done * 3;
	for (size_t g = done; g < groups; g++, s += 4, dst += 3) {
		uint32_t x = b64d0[s[0]] | b64d1[s[1]] | b64d2[s[2]] | b64d3[s[3]];
		bad |= x;
		memcpy(dst, &x, 4);
	}
	return bad & B64_BAD;
}

bool api__b64_alphabet(unsigned char c)
{
	return valid(c);
}

static const char b64e[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *api__b64_encode(const void *bytes, size_t n)
{
	const unsigned char *in = bytes;
	if (n > (SIZE_MAX - 1) / 4 * 3 - 2)
		return NULL;
	char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
	if (!o)
		return NULL;
	size_t i = 0;
	for (; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		*q++ = b64e[v >> 18];
		*q++ = b64e[(v >> 12) & 63];
		*q++ = b64e[(v >> 6) & 63];
		*q++ = b64e[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
		*q++ = b64e[v >> 18];
		*q++ = b64e[(v >> 12) & 63];
		*q++ = i + 1 < n ? b64e[(v >> 6) & 63] : '=';
		*q++ = '=';
	}
	*q = '\0';
	return o;
}
