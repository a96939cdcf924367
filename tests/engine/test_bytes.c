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
