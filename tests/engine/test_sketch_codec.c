/*
 * test_sketch_codec.c - the sketch's byte format (engine/src/sketch.c,
 * "serialization"): version 2 (compact: varint key gaps, small-integer
 * weights as varints) round-trips bit-exact, version 1 (what earlier builds
 * stored and exported) still loads into the same sketch, the sizes the
 * format promises, and a reader as strict as before on both versions.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aucdata.h" /* eng__sketch_serialize_v1 */
#include "bytes.h"
#include "lossd/sketch.h"
#include "rng.h"

/* ---- sketches of every shape ------------------------------------------------------------ */

typedef enum {
	C_EMPTY,
	C_F64,        /* distinct float64 scores in [0, 1], unweighted */
	C_F32,        /* the same rounded to float32 (z = 29) */
	C_F32_SIGNED, /* float32 logits of both signs */
	C_WEIGHTED,   /* fractional weights, some 0 */
	C_INT_WEIGHT, /* whole weights, some huge (2^60: as f64) */
	C_TIES,       /* few distinct scores, counts > 1 */
	C_FOLDED,     /* a small cap: folded buckets */
	C_FOLDED_W,   /* folded and weighted */
	C_EXTREME,    /* +-Inf, +-1e300, denormals, zeros of both signs */
	C_COUNT
} shape;

static const char *const shape_names[] = {"empty", "f64",  "f32",    "f32_signed", "weighted",
                                          "ints",  "ties", "folded", "folded_w",   "extreme"};

static eng_sketch *make(shape c, int64_t n)
{
	double *s = malloc((size_t)n * sizeof(double)), *w = malloc((size_t)n * sizeof(double));
	uint8_t *y = malloc((size_t)n);
	cr_assert(s && w && y);
	bool weighted = c == C_WEIGHTED || c == C_INT_WEIGHT || c == C_FOLDED_W;
	for (int64_t i = 0; i < n; i++) {
		y[i] = (uint8_t)(rnd() & 1);
		double x = normal() * 0.2 + (y[i] ? 0.65 : 0.35);
		switch (c) {
		case C_F32: s[i] = (float)x; break;
		case C_F32_SIGNED: s[i] = (float)(x * 40 - 20); break;
		case C_TIES: s[i] = floor(x * 8) / 8; break;
		case C_EXTREME: {
			static const double v[] = {INFINITY, -INFINITY, 1e300, -1e300, 5e-324,
			                           -5e-324,  0.0,       -0.0,  1.0,    -1.0};
			s[i] = rnd() % 2 ? v[rnd() % 10] : x;
			break;
		}
		default: s[i] = x; break;
		}
		w[i] = c == C_INT_WEIGHT
		               ? (rnd() % 50 == 0 ? 1152921504606846976.0 : (double)(rnd() % 5))
		               : (rnd() % 4 == 0 ? 0.0 : 0.5 + unif_open() * 2);
	}
	bool small = c == C_FOLDED || c == C_FOLDED_W;
	eng_sketch *k = eng_sketch_new(small ? 2048 : 0);
	cr_assert_not_null(k);
	if (c != C_EMPTY)
		cr_assert_eq(eng_sketch_add_values(k, s, y, weighted ? w : NULL, n, NULL), 0);
	free(s);
	free(w);
	free(y);
	return k;
}

static void ser(uint8_t **b, size_t *n, const eng_sketch *k)
{
	cr_assert_eq(eng_sketch_serialize(b, n, k), 0);
}

static void ser1(uint8_t **b, size_t *n, const eng_sketch *k)
{
	cr_assert_eq(eng__sketch_serialize_v1(b, n, k), 0);
}

/* ---- round trips -------------------------------------------------------------------------- */

ParameterizedTestParameters(sketch_codec, round_trip)
{
	static int cases[C_COUNT * 2];
	for (int i = 0; i < C_COUNT * 2; i++)
		cases[i] = i;
	return cr_make_param_array(int, cases, C_COUNT * 2);
}

/* Both versions, each case at two sizes: serialize -> deserialize ->
 * serialize gives identical bytes; version 1 bytes load into the sketch
 * whose version 1 and version 2 bytes are the original's (so no bucket,
 * key or weight bit changed on the way); the AUC and its bound agree. */
ParameterizedTest(int *p, sketch_codec, round_trip)
{
	shape c = (shape)(*p % C_COUNT);
	int64_t n = *p < C_COUNT ? 1000 : 30000;
	rng_state = 900 + (uint64_t)*p;
	eng_sketch *k = make(c, n);
	uint8_t *b2, *b1, *r2, *r1, *rr2;
	size_t n2, n1, m2, m1, mm2;
	ser(&b2, &n2, k);
	ser1(&b1, &n1, k);
	cr_expect_eq(b2[4], 2, "%s: version 2 written", shape_names[c]);

	eng_sketch *a = NULL, *o = NULL;
	cr_assert_eq(eng_sketch_deserialize(&a, b2, n2), 0, "%s", shape_names[c]);
	ser(&r2, &m2, a);
	cr_expect(m2 == n2 && memcmp(r2, b2, n2) == 0, "%s: v2 round trip differs", shape_names[c]);
	ser1(&r1, &m1, a);
	cr_expect(m1 == n1 && memcmp(r1, b1, n1) == 0, "%s: v2 lost a bucket bit", shape_names[c]);

	cr_assert_eq(eng_sketch_deserialize(&o, b1, n1), 0, "%s: v1 no longer loads",
	             shape_names[c]);
	ser(&rr2, &mm2, o);
	cr_expect(mm2 == n2 && memcmp(rr2, b2, n2) == 0, "%s: v1 loads into another sketch",
	          shape_names[c]);

	for (int curve = 0; curve < 2; curve++) {
		eng_auc_result x, y;
		cr_assert_eq(eng_sketch_auc(&x, NULL, k, (eng_curve)curve, 64), 0);
		cr_assert_eq(eng_sketch_auc(&y, NULL, a, (eng_curve)curve, 64), 0);
		cr_expect_eq(x.defined, y.defined);
		cr_expect(!x.defined || (x.auc == y.auc && x.error_bound == y.error_bound), "%s",
		          shape_names[c]);
	}
	cr_expect_eq(eng_sketch_buckets(a), eng_sketch_buckets(k));
	cr_expect_eq(eng_sketch_positives(a), eng_sketch_positives(k));
	cr_expect_eq(eng_sketch_negatives(a), eng_sketch_negatives(k));
	cr_expect_eq(eng_sketch_cap(a), eng_sketch_cap(k));
	/* every byte counts: one short is refused */
	eng_sketch *bad = NULL;
	cr_expect_eq(eng_sketch_deserialize(&bad, b2, n2 - 1), ENG_ESTATE);
	for (size_t cut = 0; cut < n2 && cut < 64; cut++)
		cr_expect_eq(eng_sketch_deserialize(&bad, b2, cut), ENG_ESTATE);
	eng_sketch_free(o);
	eng_sketch_free(a);
	eng_sketch_free(k);
	free(rr2);
	free(r1);
	free(r2);
	free(b1);
	free(b2);
}

/* The sizes the format comment states, for a stream update's 1,000 scores
 * (version 1: 40 + 32 a bucket). */
Test(sketch_codec, compact_sizes)
{
	static const struct {
		shape c;
		double per_bucket; /* at most, in version 2 */
	} t[] = {
	        {C_F64, 9.5}, {C_F32, 5.0}, {C_F32_SIGNED, 6.0}, {C_TIES, 4.0}, {C_WEIGHTED, 24.0}};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
		rng_state = 7;
		eng_sketch *k = make(t[i].c, 1000);
		uint8_t *b;
		size_t n;
		ser(&b, &n, k);
		int64_t nb = eng_sketch_buckets(k);
		cr_log_info("%s: %lld buckets, %zu bytes (version 1: %lld)", shape_names[t[i].c],
		            (long long)nb, n, (long long)(40 + 32 * nb));
		cr_expect_leq((double)n, 20 + t[i].per_bucket * (double)nb,
		              "%s: %zu bytes for %lld", shape_names[t[i].c], n, (long long)nb);
		free(b);
		eng_sketch_free(k);
	}
}

/* ---- strictness ------------------------------------------------------------------------------ */

/* A version 2 blob built by hand: header fields, z, then raw bytes. */
static size_t hand(uint8_t *out, uint64_t nb, unsigned z, const uint8_t *body, size_t n)
{
	size_t o = 0;
	memcpy(out, "LDSK", 4);
	eng__put_u32(out + 4, 2);
	o = 8;
	o += eng__put_varint(out + o, 4096);
	o += eng__put_varint(out + o, 1);
	o += eng__put_varint(out + o, 1);
	o += eng__put_varint(out + o, nb);
	out[o++] = (uint8_t)z;
	memcpy(out + o, body, n);
	return o + n;
}

/* The wire key (w(k) >> z) of a score, as a varint at p. */
static size_t gap_of(uint8_t *p, double score, uint64_t prev, unsigned z)
{
	uint64_t k = 0;
	double x = score == 0.0 ? 0.0 : score;
	memcpy(&k, &x, 8);
	k = (k >> 63) ? ~k + 1 : (k | ((uint64_t)1 << 63));
	return eng__put_varint(p, (k - prev) >> z);
}

Test(sketch_codec, v2_accepts_only_what_the_writer_writes)
{
	uint8_t body[64], blob[128];
	eng_sketch *k = NULL;
	size_t n, m;
	uint64_t w05; /* wire key of 0.5 */
	{
		double h = 0.5;
		memcpy(&w05, &h, 8);
		w05 |= (uint64_t)1 << 63;
	}
	unsigned z = (unsigned)__builtin_ctzll(w05);

	/* the control: one exact bucket at 0.5, pos 1, neg 1 */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 4, body[m++] = 2;
	n = hand(blob, 1, z, body, m);
	cr_assert_eq(eng_sketch_deserialize(&k, blob, n), 0);
	uint8_t *again;
	size_t na;
	ser(&again, &na, k);
	cr_expect(na == n && memcmp(again, blob, n) == 0);
	free(again);
	eng_sketch_free(k);
	k = NULL;

	/* z smaller than the keys allow: another encoding of the same */
	m = gap_of(body, 0.5, 0, z - 1);
	body[m++] = 4, body[m++] = 2;
	n = hand(blob, 1, z - 1, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "z not the largest");
	/* z past 63 */
	n = hand(blob, 1, 64, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE);

	/* an overlong varint weight: 0x84 0x00 for 4 */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 0x84, body[m++] = 0x00, body[m++] = 2;
	n = hand(blob, 1, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "overlong varint");

	/* a small integer as raw f64 */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 1;
	eng__put_f64(body + m, 1.0);
	m += 8;
	body[m++] = 2;
	n = hand(blob, 1, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "1.0 as f64");
	/* fractional as raw f64 is fine; negative, NaN, Inf are not */
	static const double raw[] = {0.25, -0.25, NAN, INFINITY, -0.0, 1e300};
	static const int ok[] = {1, 0, 0, 0, 1, 1};
	for (int i = 0; i < 6; i++) {
		m = gap_of(body, 0.5, 0, z);
		body[m++] = 4; /* pos 1, exact */
		body[m++] = 1; /* neg raw */
		eng__put_f64(body + m, raw[i]);
		m += 8;
		n = hand(blob, 1, z, body, m);
		int rc = eng_sketch_deserialize(&k, blob, n);
		cr_expect_eq(rc, ok[i] ? 0 : ENG_ESTATE, "raw neg %g", raw[i]);
		eng_sketch_free(k);
		k = NULL;
	}
	/* neg code 3 (a tag neg does not have) */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 4, body[m++] = 3;
	eng__put_f64(body + m, 0.25);
	m += 8;
	n = hand(blob, 1, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "neg tag");
	/* folded with span 0 */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 6, body[m++] = 2, body[m++] = 0;
	n = hand(blob, 1, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "folded, span 0");
	/* a gap past 64 bits */
	m = 0;
	for (int i = 0; i < 9; i++)
		body[m++] = 0xff;
	body[m++] = 0x01;
	body[m++] = 4, body[m++] = 2;
	n = hand(blob, 1, 0, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "key past the range");
	/* two buckets out of order: second gap 0 (same key) */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 4, body[m++] = 0, body[m++] = 0, body[m++] = 0, body[m++] = 2;
	n = hand(blob, 2, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "equal keys");
	/* a bucket count the bytes cannot hold is refused before allocating */
	m = gap_of(body, 0.5, 0, z);
	body[m++] = 4, body[m++] = 2;
	n = hand(blob, 100, z, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "nb > bytes");
	/* a NaN key: the wire key of a NaN */
	m = 0;
	m += eng__put_varint(body, 0xfff8000000000000ull);
	body[m++] = 4, body[m++] = 2;
	n = hand(blob, 1, 0, body, m);
	cr_expect_eq(eng_sketch_deserialize(&k, blob, n), ENG_ESTATE, "NaN key");
	cr_expect_null(k);
}

/* Version 1 keeps every check it had (offsets of its fixed layout). */
Test(sketch_codec, v1_reader_as_strict_as_before)
{
	rng_state = 5;
	eng_sketch *k = make(C_FOLDED_W, 20000);
	uint8_t *buf;
	size_t len;
	ser1(&buf, &len, k);
	eng_sketch *bad = NULL, *c = NULL;
	cr_assert_eq(eng_sketch_deserialize(&c, buf, len), 0);
	eng_sketch_free(c);
	uint8_t *x = malloc(len);
	cr_expect_eq(eng_sketch_deserialize(&bad, buf, len - 1), ENG_ESTATE);
	cr_expect_eq(eng_sketch_deserialize(&bad, buf, 10), ENG_ESTATE);
	memcpy(x, buf, len);
	x[4] = 3; /* version */
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len);
	x[8] = 0, x[9] = 0, x[10] = 0; /* cap 0 */
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len);
	x[32] ^= 0x01; /* bucket count no longer matches the length */
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len); /* swap the first two buckets: order broken */
	memcpy(x + 40, buf + 72, 32);
	memcpy(x + 72, buf + 40, 32);
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len); /* a negative weight */
	x[40 + 23] |= 0x80;
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	memcpy(x, buf, len); /* -0.0's key, which no sketch holds */
	eng__put_u64(x + 40, ((uint64_t)1 << 63) - 1);
	eng__put_u64(x + 48, ((uint64_t)1 << 63) - 1);
	cr_expect_eq(eng_sketch_deserialize(&bad, x, len), ENG_ESTATE);
	cr_expect_null(bad);
	free(x);
	free(buf);
	eng_sketch_free(k);
}

/* Random flips and truncations of version 2 bytes never crash; whatever
 * loads is a valid sketch that serializes to its own bytes. */
Test(sketch_codec, v2_corruption_never_crashes)
{
	for (int c = C_F64; c < C_COUNT; c++) {
		rng_state = 40 + (uint64_t)c;
		eng_sketch *k = make((shape)c, 3000);
		uint8_t *buf, *x;
		size_t len;
		ser(&buf, &len, k);
		x = malloc(len);
		for (int t = 0; t < 1500; t++) {
			eng_sketch *bad = NULL;
			memcpy(x, buf, len);
			for (int f = 0; f < 1 + t % 4; f++)
				x[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
			size_t n = t % 5 == 0 ? rnd() % len : len;
			if (eng_sketch_deserialize(&bad, x, n) == 0) {
				eng_auc_result r;
				cr_assert_eq(eng_sketch_auc(&r, NULL, bad, ENG_CURVE_ROC, 16), 0);
				cr_expect(!r.defined || (r.auc >= -1e-12 && r.auc <= 1 + 1e-12));
				cr_expect_leq(eng_sketch_memory(bad), eng_sketch_cap(bad));
				uint8_t *y;
				size_t ny;
				ser(&y, &ny, bad);
				cr_expect(ny == n && memcmp(y, x, n) == 0,
				          "%s: accepted bytes "
				          "that are not the writer's",
				          shape_names[c]);
				free(y);
				eng_sketch_free(bad);
			}
		}
		free(x);
		free(buf);
		eng_sketch_free(k);
	}
}
