/*
 * test_bytes.c - engine/src/bytes.h: the byte writer and reader the state
 * codecs share.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"

Test(bytes, writer_then_reader_round_trip)
{
	eng__writer w = ENG__WRITER_INIT;
	uint8_t *p;
	size_t n;
	eng__writer_raw(&w, "ABCD", 4);
	eng__writer_u8(&w, 0xfe);
	eng__writer_u32(&w, 0xdeadbeefu);
	eng__writer_u64(&w, 0x0123456789abcdefull);
	eng__writer_f64(&w, -0.375);
	eng__writer_blob(&w, "xyz", 3);
	eng__writer_u64(&w, 42);
	cr_assert_eq(eng__writer_finish(&w, &p, &n), 0);
	cr_assert_eq(n, 4 + 1 + 4 + 8 + 8 + 8 + 3 + 8);
	cr_assert_eq(p[5], 0xef, "little-endian");

	eng__reader r;
	size_t bl;
	eng__reader_init(&r, p, n);
	cr_assert(eng__reader_magic(&r, "ABCD"));
	cr_assert_eq(eng__reader_u8(&r), 0xfe);
	cr_assert_eq(eng__reader_u32(&r), 0xdeadbeefu);
	cr_assert_eq(eng__reader_u64(&r), 0x0123456789abcdefull);
	cr_assert_eq(eng__reader_f64(&r), -0.375);
	const uint8_t *b = eng__reader_blob(&r, &bl);
	cr_assert_eq(bl, 3);
	cr_assert_eq(memcmp(b, "xyz", 3), 0);
	cr_assert_eq(eng__reader_count(&r), 42);
	cr_assert(eng__reader_done(&r));
	free(p);
}

Test(bytes, reader_stops_at_the_end_and_the_failure_sticks)
{
	uint8_t buf[6] = {1, 0, 0, 0, 7, 7};
	eng__reader r;
	eng__reader_init(&r, buf, sizeof(buf));
	cr_assert_eq(eng__reader_u32(&r), 1);
	cr_assert_eq(eng__reader_u32(&r), 0, "only 2 bytes left: 0, not a read past the end");
	cr_assert(r.fail);
	cr_assert_eq(r.left, 2, "a failed get consumes nothing");
	cr_assert_eq(eng__reader_u8(&r), 0, "sticky: even a 1-byte get fails now");
	cr_assert_null(eng__reader_take(&r, 0));
	cr_assert_not(eng__reader_done(&r));
}

Test(bytes, reader_of_null_fails)
{
	eng__reader r;
	eng__reader_init(&r, NULL, 100);
	cr_assert_eq(r.left, 0);
	cr_assert_eq(eng__reader_u8(&r), 0);
	cr_assert(r.fail);
}

Test(bytes, blob_longer_than_the_rest_is_refused)
{
	uint8_t buf[8 + 4];
	size_t bl = 99;
	eng__put_u64(buf, 5); /* says 5 bytes, 4 follow */
	memset(buf + 8, 'a', 4);
	eng__reader r;
	eng__reader_init(&r, buf, sizeof(buf));
	cr_assert_null(eng__reader_blob(&r, &bl));
	cr_assert_eq(bl, 0);
	cr_assert(r.fail);
	eng__put_u64(buf, UINT64_MAX); /* a length that would wrap a size_t sum */
	eng__reader_init(&r, buf, sizeof(buf));
	cr_assert_null(eng__reader_blob(&r, &bl));
	eng__put_u64(buf, 4);
	eng__reader_init(&r, buf, sizeof(buf));
	cr_assert_not_null(eng__reader_blob(&r, &bl));
	cr_assert_eq(bl, 4);
	cr_assert(eng__reader_done(&r));
}

Test(bytes, count_of_2_to_the_62_fails)
{
	uint8_t buf[16];
	eng__put_u64(buf, ((uint64_t)1 << 62) - 1);
	eng__put_u64(buf + 8, (uint64_t)1 << 62);
	eng__reader r;
	eng__reader_init(&r, buf, sizeof(buf));
	cr_assert_eq(eng__reader_count(&r), ((int64_t)1 << 62) - 1);
	cr_assert_not(r.fail);
	(void)eng__reader_count(&r);
	cr_assert(r.fail);
}

Test(bytes, magic_mismatch_is_false)
{
	eng__reader r;
	eng__reader_init(&r, "LSTX", 4);
	cr_assert_not(eng__reader_magic(&r, "LSTR"));
	eng__reader_init(&r, "LS", 2);
	cr_assert_not(eng__reader_magic(&r, "LSTR"));
	cr_assert(r.fail);
}

Test(bytes, writer_grows_through_many_values_and_presizes)
{
	eng__writer w = ENG__WRITER_INIT;
	uint8_t *p;
	size_t n;
	eng__writer_presize(&w, 64);
	cr_assert_geq(w.cap, 64);
	cr_assert_eq(w.len, 0, "presize writes nothing");
	for (uint64_t i = 0; i < 10000; i++)
		eng__writer_u64(&w, i * 3);
	cr_assert_eq(eng__writer_finish(&w, &p, &n), 0);
	cr_assert_eq(n, 80000);
	for (uint64_t i = 0; i < 10000; i++)
		cr_assert_eq(eng__get_u64(p + 8 * i), i * 3);
	free(p);
}

Test(bytes, failed_writer_reports_out_of_memory_once)
{
	eng__writer w = ENG__WRITER_INIT;
	uint8_t *p = (uint8_t *)&w;
	size_t n = 7;
	eng__writer_u32(&w, 1);
	cr_assert_null(eng__writer_reserve(&w, SIZE_MAX), "a size that cannot fit fails");
	cr_assert(w.fail);
	eng__writer_u32(&w, 2); /* ignored */
	cr_assert_eq(eng__writer_finish(&w, &p, &n), ENG_ENOMEM);
	cr_assert_null(p);
	cr_assert_eq(n, 0);
}

/* Varints: the lengths of LEB128, every edge of a 7-bit group, and back. */
Test(bytes, varint_round_trip_and_lengths)
{
	static const struct {
		uint64_t v;
		size_t len;
	} t[] = {{0, 1},
	         {1, 1},
	         {127, 1},
	         {128, 2},
	         {16383, 2},
	         {16384, 3},
	         {((uint64_t)1 << 21) - 1, 3},
	         {(uint64_t)1 << 21, 4},
	         {(uint64_t)1 << 28, 5},
	         {(uint64_t)1 << 35, 6},
	         {(uint64_t)1 << 42, 7},
	         {((uint64_t)1 << 56) - 1, 8},
	         {(uint64_t)1 << 56, 9},
	         {((uint64_t)1 << 49) - 1, 7},
	         {(uint64_t)1 << 49, 8},
	         {((uint64_t)1 << 63) - 1, 9},
	         {(uint64_t)1 << 63, 10},
	         {UINT64_MAX, 10}};
	eng__writer w = ENG__WRITER_INIT;
	uint8_t *p, one[ENG__VARINT_MAX];
	size_t n, total = 0;
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		cr_expect_eq(eng__put_varint(one, t[i].v), t[i].len, "%llu",
		             (unsigned long long)t[i].v);
		eng__writer_varint(&w, t[i].v);
		total += t[i].len;
	}
	cr_assert_eq(eng__writer_finish(&w, &p, &n), 0);
	cr_assert_eq(n, total);
	eng__reader r;
	eng__reader_init(&r, p, n);
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		cr_expect_eq(eng__reader_varint(&r), t[i].v, "%zu", i);
	cr_expect(eng__reader_done(&r));
	free(p);
}

/* Only the shortest encoding reads; truncated or too long ones fail the
 * reader (sticky) and consume nothing. */
Test(bytes, varint_reader_refuses_other_encodings)
{
	static const struct {
		uint8_t b[12];
		size_t n;
	} bad[] = {
	        {{0x80}, 1},             /* runs past the end */
	        {{0x81, 0x00}, 2},       /* 1 with a zero group after it */
	        {{0x80, 0x80, 0x00}, 3}, /* 0, overlong */
	        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 10}, /* bit 65 */
	        {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00},
	         11},     /* 11 bytes */
	        {{0}, 0}, /* nothing */
	        /* 8 bytes or more left: the word-at-a-time path */
	        {{0x81, 0x00, 0, 0, 0, 0, 0, 0}, 8},                         /* 1, overlong */
	        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 8},       /* 0 in 8 bytes */
	        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, 8},       /* past the end */
	        {{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, 9}, /* 0 in 9 bytes */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		eng__reader r;
		eng__reader_init(&r, bad[i].b, bad[i].n);
		cr_expect_eq(eng__reader_varint(&r), 0, "case %zu", i);
		cr_expect(r.fail, "case %zu", i);
		cr_expect_eq(r.left, bad[i].n, "case %zu consumed bytes", i);
		cr_expect_eq(eng__reader_u8(&r), 0, "sticky");
	}
	/* the largest value and a lone zero are fine */
	uint8_t max[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	        zero[1] = {0};
	eng__reader r;
	eng__reader_init(&r, max, 10);
	cr_expect_eq(eng__reader_varint(&r), UINT64_MAX);
	cr_expect(eng__reader_done(&r));
	eng__reader_init(&r, zero, 1);
	cr_expect_eq(eng__reader_varint(&r), 0);
	cr_expect(eng__reader_done(&r));
}

/* The rules by the book, one byte at a time: the value, or -1 for bytes
 * the reader must refuse. */
static int ref_varint(uint64_t *v, const uint8_t *p, size_t n, size_t *used)
{
	*v = 0;
	for (size_t i = 0; i < n && i < 10; i++) {
		*v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (p[i] & 0x80)
			continue;
		if ((p[i] == 0 && i > 0) || (i == 9 && p[i] > 1))
			return -1;
		*used = i + 1;
		return 0;
	}
	return -1;
}

/* Both of the reader's paths (a word at a time with 8 bytes left, a byte
 * at a time near the end) agree with the rules on random bytes of every
 * varint length, and put_varint's word store writes what the rules say. */
Test(bytes, varint_paths_agree_with_the_rules)
{
	uint64_t st = 12345;
	for (int t = 0; t < 200000; t++) {
		uint8_t b[16];
		st = st * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t h = st;
		size_t len = 1 + (size_t)(h >> 60) % 11; /* 1..11 bytes: continuation bits */
		for (int i = 0; i < 16; i++) {
			st = st * 6364136223846793005ull + 1442695040888963407ull;
			uint8_t x = (uint8_t)(st >> 56);
			if ((st >> 40) % 8 == 0)
				x &= 0x80; /* zero groups */
			b[i] = (uint8_t)((size_t)i + 1 < len ? x | 0x80 : x & 0x7f);
		}
		if (t % 3 == 0)
			b[len - 1] |= 0x80; /* no end */
		for (size_t n = 1; n <= 16; n++) {
			uint64_t want, got;
			size_t used = 0;
			int rc = ref_varint(&want, b, n, &used);
			eng__reader r;
			eng__reader_init(&r, b, n);
			got = eng__reader_varint(&r);
			cr_assert_eq(r.fail, rc != 0, "t=%d n=%zu", t, n);
			if (rc == 0) {
				cr_assert_eq(got, want, "t=%d n=%zu", t, n);
				cr_assert_eq(r.left, n - used);
				uint8_t out[16];
				cr_assert_eq(eng__put_varint(out, want), used);
				cr_assert_eq(memcmp(out, b, used), 0, "t=%d: put differs", t);
			}
		}
	}
}
