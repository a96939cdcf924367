/*
 * test_stream.c - engine/src/stream.c: batches merged into a stream give the
 * numbers of one evaluation over all the data; merge and update are all or
 * nothing; serialized states round-trip and corrupt ones are refused; room
 * reserved for rows to come (a replay) and given back changes no row.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/binned.h"
#include "lossd/history.h"
#include "lossd/sketch.h"
#include "lossd/stream.h"

#define N 600
#define C 4

static double score1[N], scoreC[N * C], weight[N];
static double label1[N], labelC[N], labelM[N * C];

/* Deterministic pseudo-random data with ties (scores on a coarse grid). */
static void make_data(void)
{
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < N; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		int y = (int)(x % 2);
		label1[i] = y;
		score1[i] = (double)((x >> 8) % 50) / 50.0 * 0.6 + 0.4 * y;
		weight[i] = 0.5 + (double)((x >> 20) % 7) / 4.0;
		labelC[i] = (double)((x >> 30) % C);
		for (int c = 0; c < C; c++) {
			uint64_t z = x * (uint64_t)(c + 3);
			scoreC[i * C + c] = (double)((z >> 33) % 97) / 97.0 +
			                    (labelC[i] == c ? 0.3 : 0.0) - 0.15;
			labelM[i * C + c] = (double)((z >> 40) % 2);
		}
	}
}

static eng_tensor t1(const double *d, int64_t n)
{
	eng_tensor t = {ENG_F64, 1, {n}, n, d};
	return t;
}

static eng_tensor t2(const double *d, int64_t n, int64_t c)
{
	eng_tensor t = {ENG_F64, 2, {n, c}, n * c, d};
	return t;
}

/* Merges rows [from, to) as one batch into s. */
static void add_rows(eng_stream *s, eng_label_kind kind, int from, int to, bool weighted)
{
	const eng_stream_config *cfg = eng_stream_config_of(s);
	eng_tensor ys, yt, w = t1(weight + from, to - from);
	if (kind == ENG_LABELS_BINARY) {
		ys = t1(score1 + from, to - from);
		yt = t1(label1 + from, to - from);
	} else {
		ys = t2(scoreC + from * C, to - from, C);
		yt = kind == ENG_LABELS_CLASS_ID ? t1(labelC + from, to - from)
		                                 : t2(labelM + from * C, to - from, C);
	}
	eng_stream *b = NULL;
	eng_error err;
	int rc = eng_stream_batch(&b, cfg, &yt, &ys, weighted ? &w : NULL, NULL, &err);
	cr_assert_eq(rc, 0, "batch: %s", err.msg);
	cr_assert_eq(eng_stream_merge(s, b, &err), 0, "merge: %s", err.msg);
	eng_stream_free(b);
}

static eng_stream *new_stream(eng_stream_method m, eng_label_kind kind, eng_curve curve)
{
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = m;
	cfg.kind = kind;
	cfg.columns = kind == ENG_LABELS_BINARY ? 1 : C;
	cfg.curve = curve;
	eng_stream *s = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0, "%s", err.msg);
	return s;
}

/* The one-shot AUC of every row, per method. */
static eng_auc_result oneshot(eng_stream_method m, eng_label_kind kind, eng_curve curve,
                              int64_t col, bool weighted)
{
	eng_tensor ys, yt, w = t1(weight, N);
	if (kind == ENG_LABELS_BINARY) {
		ys = t1(score1, N);
		yt = t1(label1, N);
	} else {
		ys = t2(scoreC, N, C);
		yt = kind == ENG_LABELS_CLASS_ID ? t1(labelC, N) : t2(labelM, N, C);
	}
	eng_auc_data d = {&ys, &yt, weighted ? &w : NULL, kind};
	eng_auc_result r;
	eng_error err;
	int rc;
	if (m == ENG_STREAM_EXACT) {
		eng_auc_opts o = ENG_AUC_OPTS_INIT;
		o.curve = curve;
		rc = eng_auc_exact(&r, NULL, &d, col, &o, &err);
	} else if (m == ENG_STREAM_BINNED) {
		rc = eng_auc_binned(&r, NULL, &d, col, 200, curve, ENG_SUM_INTERPOLATION, 512,
		                    &err);
	} else {
		rc = eng_auc_sketch(&r, NULL, &d, col,
		                    ENG_STREAM_DEFAULT_SKETCH_BYTES /
		                            (kind == ENG_LABELS_BINARY ? 1 : C),
		                    curve, 512, &err);
	}
	cr_assert_eq(rc, 0, "%s", err.msg);
	return r;
}

struct combo {
	eng_stream_method m;
	eng_label_kind kind;
	eng_curve curve;
	bool weighted;
};

static struct combo combos[] = {
        {ENG_STREAM_EXACT, ENG_LABELS_BINARY, ENG_CURVE_ROC, false},
        {ENG_STREAM_EXACT, ENG_LABELS_BINARY, ENG_CURVE_PR, true},
        {ENG_STREAM_EXACT, ENG_LABELS_CLASS_ID, ENG_CURVE_ROC, true},
        {ENG_STREAM_EXACT, ENG_LABELS_MULTI, ENG_CURVE_PR, false},
        {ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_ROC, true},
        {ENG_STREAM_BINNED, ENG_LABELS_CLASS_ID, ENG_CURVE_PR, false},
        {ENG_STREAM_BINNED, ENG_LABELS_MULTI, ENG_CURVE_ROC, true},
        {ENG_STREAM_SKETCH, ENG_LABELS_BINARY, ENG_CURVE_ROC, true},
        {ENG_STREAM_SKETCH, ENG_LABELS_CLASS_ID, ENG_CURVE_ROC, false},
        {ENG_STREAM_SKETCH, ENG_LABELS_MULTI, ENG_CURVE_PR, true},
};

ParameterizedTestParameters(stream, batches_equal_one_shot)
{
	make_data();
	return cr_make_param_array(struct combo, combos, sizeof(combos) / sizeof(combos[0]));
}

ParameterizedTest(struct combo *k, stream, batches_equal_one_shot)
{
	make_data();
	eng_stream *s = new_stream(k->m, k->kind, k->curve);
	/* Uneven batches, one empty. */
	int cuts[] = {0, 7, 7, 250, 251, 480, N};
	for (size_t i = 0; i + 1 < sizeof(cuts) / sizeof(cuts[0]); i++)
		add_rows(s, k->kind, cuts[i], cuts[i + 1], k->weighted);
	eng_stream_counts cnt;
	eng_stream_counts_of(&cnt, s);
	cr_assert_eq(cnt.rows, N);
	cr_assert_eq(cnt.updates, 6);
	int64_t cols = k->kind == ENG_LABELS_BINARY ? 1 : C;
	for (int64_t col = (cols == 1 ? 0 : -1); col < cols; col++) {
		eng_auc_result want = oneshot(k->m, k->kind, k->curve, col, k->weighted);
		eng_auc_result got;
		eng_error err;
		cr_assert_eq(eng_stream_auc(&got, NULL, s, col, 512, &err), 0, "%s", err.msg);
		cr_assert_eq(got.defined, want.defined);
		cr_assert(fabs(got.auc - want.auc) <= 1e-9 * (1 + fabs(want.auc)),
		          "col %lld: %.15g vs %.15g", (long long)col, got.auc, want.auc);
		cr_assert_eq(got.positives, want.positives);
		cr_assert_eq(got.negatives, want.negatives);
		if (k->m == ENG_STREAM_SKETCH)
			cr_assert(got.error_bound == 0.0, "few distinct scores: sketch is exact");
	}
	eng_stream_free(s);
}

/* Reads every byte of a serialized state. */
static void *ser(const eng_stream *s, size_t *len)
{
	void *b = NULL;
	cr_assert_eq(eng_stream_serialize(&b, len, s), 0);
	return b;
}

Test(stream, bad_batch_changes_nothing)
{
	make_data();
	eng_stream *s = new_stream(ENG_STREAM_EXACT, ENG_LABELS_CLASS_ID, ENG_CURVE_ROC);
	add_rows(s, ENG_LABELS_CLASS_ID, 0, 100, true);
	size_t l0, l1;
	void *b0 = ser(s, &l0);

	double bad_labels[10];
	memcpy(bad_labels, labelC, sizeof(bad_labels));
	bad_labels[9] = C; /* out of range */
	eng_tensor yt = t1(bad_labels, 10), ys = t2(scoreC, 10, C);
	eng_stream *b = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, NULL, NULL, &err),
	             ENG_ELABEL);
	cr_assert_eq(err.index, 9);
	cr_assert_null(b);

	double nan_scores[10 * C];
	memcpy(nan_scores, scoreC, sizeof(nan_scores));
	nan_scores[17] = NAN;
	yt = t1(labelC, 10);
	ys = t2(nan_scores, 10, C);
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, NULL, NULL, &err),
	             ENG_ENONFINITE);

	double neg_w[10] = {1, 1, 1, -1, 1, 1, 1, 1, 1, 1};
	eng_tensor w = t1(neg_w, 10);
	ys = t2(scoreC, 10, C);
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, &w, NULL, &err),
	             ENG_EWEIGHT);

	ys = t2(scoreC, 10, C - 1); /* wrong column count */
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, NULL, NULL, &err),
	             ENG_ESHAPE);

	void *b1 = ser(s, &l1);
	cr_assert_eq(l0, l1);
	cr_assert(memcmp(b0, b1, l0) == 0, "a refused batch left a trace");
	free(b0);
	free(b1);
	eng_stream_free(s);
}

Test(stream, round_trip_and_replay_identical)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	for (int i = 0; i < 3; i++) {
		eng_stream *a = new_stream(ms[i], ENG_LABELS_MULTI, ENG_CURVE_ROC);
		eng_stream *r = new_stream(ms[i], ENG_LABELS_MULTI, ENG_CURVE_ROC);
		/* a: batches merged directly; r: each batch serialized and parsed first. */
		for (int from = 0; from < N; from += 100) {
			eng_tensor ys = t2(scoreC + from * C, 100, C),
			           yt = t2(labelM + from * C, 100, C);
			eng_tensor w = t1(weight + from, 100);
			eng_stream *b = NULL, *b2 = NULL;
			eng_error err;
			cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(a), &yt, &ys,
			                              from >= 300 ? &w : NULL, NULL, &err),
			             0);
			size_t bl;
			void *bb = ser(b, &bl);
			cr_assert_eq(eng_stream_deserialize(&b2, bb, bl,
			                                    ENG_STREAM_DEFAULT_MAX_BYTES, &err),
			             0, "%s", err.msg);
			cr_assert_eq(eng_stream_merge(a, b, &err), 0);
			cr_assert_eq(eng_stream_merge(r, b2, &err), 0);
			free(bb);
			eng_stream_free(b);
			eng_stream_free(b2);
		}
		size_t la, lr;
		void *ba = ser(a, &la), *br = ser(r, &lr);
		cr_assert_eq(la, lr);
		cr_assert(memcmp(ba, br, la) == 0, "method %d: replay differs", ms[i]);
		eng_stream *c = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_deserialize(&c, ba, la, ENG_STREAM_DEFAULT_MAX_BYTES, &err),
		             0);
		size_t lc;
		void *bc = ser(c, &lc);
		cr_assert(lc == la && memcmp(ba, bc, la) == 0);
		eng_auc_result x, y;
		cr_assert_eq(eng_stream_auc(&x, NULL, a, ENG_AUC_ALL, 512, &err), 0);
		cr_assert_eq(eng_stream_auc(&y, NULL, c, ENG_AUC_ALL, 512, &err), 0);
		cr_assert(x.defined && y.defined && x.auc == y.auc);
		free(ba);
		free(br);
		free(bc);
		eng_stream_free(a);
		eng_stream_free(r);
		eng_stream_free(c);
	}
}

/* eng_stream_merge_bytes (a delta decoded straight into the stream) gives
 * the bytes deserialize + merge gives, for every label kind, with weighted
 * and unweighted deltas mixed both ways; a delta it refuses (a bad
 * checksum, another config) changes nothing, though the stream may have
 * grown room for it. */
Test(stream, merge_bytes_is_deserialize_then_merge)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_SKETCH};
	eng_label_kind ks[] = {ENG_LABELS_BINARY, ENG_LABELS_CLASS_ID, ENG_LABELS_MULTI};
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++) {
			eng_stream *a = new_stream(ms[i], ks[j], ENG_CURVE_ROC);
			eng_stream *r = new_stream(ms[i], ks[j], ENG_CURVE_ROC);
			eng_stream *src = new_stream(ms[i], ks[j], ENG_CURVE_ROC);
			eng_error err;
			for (int from = 0; from < N; from += 100) {
				/* weights in the 2nd and 4th batches only */
				bool weighted = (from / 100) % 2 == 1;
				eng_stream *b = NULL, *b2 = NULL;
				eng_stream_reset(src);
				add_rows(src, ks[j], from, from + 100, weighted);
				size_t bl;
				void *bb = ser(src, &bl);
				cr_assert_eq(eng_stream_deserialize(&b2, bb, bl, SIZE_MAX, &err),
				             0);
				cr_assert_eq(eng_stream_merge(a, b2, &err), 0);
				cr_assert_eq(eng_stream_merge_bytes(r, bb, bl, &err), 0, "%s",
				             err.msg);
				/* refused deltas leave r as it was */
				size_t l0, l1;
				void *before = ser(r, &l0);
				((uint8_t *)bb)[bl - 1] ^= 1;
				cr_assert_eq(eng_stream_merge_bytes(r, bb, bl, &err), ENG_ESTATE);
				((uint8_t *)bb)[bl - 1] ^= 1;
				eng_stream *other = new_stream(ms[i], ks[j], ENG_CURVE_PR);
				void *ob = ser(other, &l1);
				cr_assert_neq(eng_stream_merge_bytes(r, ob, l1, &err), 0);
				free(ob);
				eng_stream_free(other);
				void *after = ser(r, &l1);
				cr_assert(l0 == l1 && memcmp(before, after, l0) == 0,
				          "method %d kind %d: a refused delta left a trace", ms[i],
				          ks[j]);
				free(before);
				free(after);
				free(bb);
				eng_stream_free(b);
				eng_stream_free(b2);
			}
			size_t la, lr;
			void *ba = ser(a, &la), *br = ser(r, &lr);
			cr_assert(la == lr && memcmp(ba, br, la) == 0,
			          "method %d kind %d: merge_bytes differs", ms[i], ks[j]);
			free(ba);
			free(br);
			eng_stream_free(a);
			eng_stream_free(r);
			eng_stream_free(src);
		}
}

Test(stream, corrupt_states_refused)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	for (int i = 0; i < 3; i++) {
		eng_stream *s = new_stream(ms[i], ENG_LABELS_BINARY, ENG_CURVE_ROC);
		add_rows(s, ENG_LABELS_BINARY, 0, 40, true);
		size_t len;
		uint8_t *b = ser(s, &len);
		eng_stream *o = NULL;
		eng_error err;
		/* Every truncation. */
		for (size_t l = 0; l < len; l++) {
			cr_assert_eq(eng_stream_deserialize(&o, b, l, 1 << 20, &err), ENG_ESTATE);
			cr_assert_null(o);
		}
		/* Every single-bit flip (the checksum catches payload flips, the
		 * header checks the rest). */
		for (size_t p = 0; p < len; p++) {
			b[p] ^= 0x10;
			cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), ENG_ESTATE,
			             "flip at %zu accepted", p);
			b[p] ^= 0x10;
		}
		cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), 0);
		eng_stream_free(o);
		free(b);
		eng_stream_free(s);
	}
}

Test(stream, memory_cap)
{
	make_data();
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = ENG_STREAM_EXACT;
	cfg.max_bytes = 16 * 200; /* 200 unweighted binary rows of 12 bytes, and then some */
	eng_stream *s = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
	add_rows(s, ENG_LABELS_BINARY, 0, 200, false);
	size_t l0;
	void *b0 = ser(s, &l0);
	eng_tensor ys = t1(score1, 200), yt = t1(label1, 200);
	eng_stream *b = NULL;
	cr_assert_eq(eng_stream_batch(&b, &cfg, &yt, &ys, NULL, NULL, &err), 0);
	cr_assert_eq(eng_stream_merge(s, b, &err), ENG_ELIMIT);
	size_t l1;
	void *b1 = ser(s, &l1);
	cr_assert(l0 == l1 && memcmp(b0, b1, l0) == 0, "refused merge changed the stream");
	/* A batch larger than the cap alone is refused before it is built. */
	eng_stream *big = NULL;
	ys = t1(score1, N);
	yt = t1(label1, N);
	cr_assert_eq(eng_stream_batch(&big, &cfg, &yt, &ys, NULL, NULL, &err), ENG_ELIMIT);
	eng_stream_free(b);
	free(b0);
	free(b1);
	eng_stream_free(s);
}

/* Room reserved for rows to come changes nothing a reader sees, is taken
 * by the merges that follow without growing again, stops at the memory
 * bound given, and trim gives back what was not used; other methods have
 * no rows to make room for. */
Test(stream, reserve_and_trim_keep_the_contents)
{
	make_data();
	for (int weighted = 0; weighted < 2; weighted++) {
		eng_stream *s = new_stream(ENG_STREAM_EXACT, ENG_LABELS_CLASS_ID, ENG_CURVE_ROC);
		eng_stream *ref = new_stream(ENG_STREAM_EXACT, ENG_LABELS_CLASS_ID, ENG_CURVE_ROC);
		add_rows(s, ENG_LABELS_CLASS_ID, 0, 100, weighted);
		add_rows(ref, ENG_LABELS_CLASS_ID, 0, 100, weighted);
		size_t m0 = eng_stream_memory(s),
		       row = C * sizeof(double) + sizeof(int32_t) + (weighted ? sizeof(double) : 0);
		/* bounded: room for 300 rows at most, not the 10^6 asked */
		cr_assert_eq(eng_stream_reserve(s, 1000000, 300 * row), 0);
		size_t m1 = eng_stream_memory(s);
		cr_assert_eq(m1, m0 + (300 - 128) * row, "room: %zu -> %zu (row %zu)", m0, m1, row);
		/* a reserve below the room is a no-op */
		cr_assert_eq(eng_stream_reserve(s, 200, SIZE_MAX), 0);
		cr_assert_eq(eng_stream_memory(s), m1);
		add_rows(s, ENG_LABELS_CLASS_ID, 100, 300, weighted);
		add_rows(ref, ENG_LABELS_CLASS_ID, 100, 300, weighted);
		cr_assert_eq(eng_stream_memory(s), m1, "the merges into reserved room grew it");
		add_rows(s, ENG_LABELS_CLASS_ID, 300, 310, weighted);
		add_rows(ref, ENG_LABELS_CLASS_ID, 300, 310, weighted);
		eng_stream_trim(s);
		cr_assert_eq(eng_stream_memory(s), m0 + (310 - 128) * row);
		size_t l, lr;
		void *b = ser(s, &l), *br = ser(ref, &lr);
		cr_assert(l == lr && memcmp(b, br, l) == 0, "reserve or trim changed the rows");
		/* and it goes on growing after a trim */
		add_rows(s, ENG_LABELS_CLASS_ID, 310, N, weighted);
		add_rows(ref, ENG_LABELS_CLASS_ID, 310, N, weighted);
		free(b);
		free(br);
		b = ser(s, &l);
		br = ser(ref, &lr);
		cr_assert(l == lr && memcmp(b, br, l) == 0);
		free(b);
		free(br);
		eng_stream_free(s);
		eng_stream_free(ref);
	}
	eng_stream *sk = new_stream(ENG_STREAM_SKETCH, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	size_t m = eng_stream_memory(sk);
	cr_assert_eq(eng_stream_reserve(sk, 1000000, SIZE_MAX), 0);
	eng_stream_trim(sk);
	cr_assert_eq(eng_stream_memory(sk), m);
	eng_stream_free(sk);
}

Test(stream, config_mismatch_and_reset)
{
	make_data();
	eng_stream *a = new_stream(ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	eng_stream *b = new_stream(ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_PR);
	eng_stream *e = new_stream(ENG_STREAM_EXACT, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	add_rows(b, ENG_LABELS_BINARY, 0, 50, false);
	eng_error err;
	cr_assert_eq(eng_stream_merge(a, b, &err), ENG_ESTATE);
	cr_assert_eq(eng_stream_merge(a, e, &err), ENG_ESTATE);
	add_rows(a, ENG_LABELS_BINARY, 0, 50, false);
	cr_assert_eq(eng_stream_reset(a), 0);
	eng_stream_counts cnt;
	eng_stream_counts_of(&cnt, a);
	cr_assert_eq(cnt.rows, 0);
	eng_auc_result r;
	cr_assert_eq(eng_stream_auc(&r, NULL, a, 0, 512, &err), 0);
	cr_assert(!r.defined);
	cr_assert_eq(r.positives + r.negatives, 0);
	add_rows(a, ENG_LABELS_BINARY, 0, N, false);
	eng_auc_result want =
	        oneshot(ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_ROC, 0, false);
	cr_assert_eq(eng_stream_auc(&r, NULL, a, 0, 512, &err), 0);
	cr_assert(fabs(r.auc - want.auc) < 1e-12);
	eng_stream_free(a);
	eng_stream_free(b);
	eng_stream_free(e);
}

Test(stream, loss_sums_add_up)
{
	make_data();
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = ENG_STREAM_BINNED;
	cfg.has_loss = true;
	cfg.loss_kind = ENG_LOSS_BINARY_CE;
	eng_stream *s = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_BINARY_CE;
	for (int from = 0; from < N; from += 150) {
		eng_tensor ys = t1(score1 + from, 150), yt = t1(label1 + from, 150);
		eng_loss_result *lr = NULL;
		cr_assert_eq(eng_loss_compute(&lr, &yt, &ys, &o, NULL, &err), 0, "%s", err.msg);
		eng_stream *b = NULL;
		cr_assert_eq(eng_stream_batch(&b, &cfg, &yt, &ys, NULL, lr, &err), 0, "%s",
		             err.msg);
		cr_assert_eq(eng_stream_merge(s, b, &err), 0);
		eng_stream_free(b);
		eng_loss_result_free(lr);
	}
	eng_tensor ys = t1(score1, N), yt = t1(label1, N);
	eng_loss_result *all = NULL;
	cr_assert_eq(eng_loss_compute(&all, &yt, &ys, &o, NULL, &err), 0);
	const eng_loss_result *got = eng_stream_loss(s);
	cr_assert_not_null(got);
	double a, b;
	cr_assert(eng_loss_result_value(all, ENG_RED_MEAN, &a));
	cr_assert(eng_loss_result_value(got, ENG_RED_MEAN, &b));
	cr_assert(fabs(a - b) <= 1e-12 * fabs(a), "%.17g vs %.17g", a, b);
	cr_assert_eq(got->count, all->count);
	cr_assert_eq(got->correct, all->correct);
	/* Without a loss result in a loss stream: refused. */
	eng_stream *bad = NULL;
	cr_assert_eq(eng_stream_batch(&bad, &cfg, &yt, &ys, NULL, NULL, &err), ENG_EINVAL);
	eng_loss_result_free(all);
	eng_stream_free(s);
}

Test(stream, logits_link)
{
	make_data();
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = ENG_STREAM_BINNED;
	cfg.from_logits = true;
	double logit[N];
	for (int i = 0; i < N; i++)
		logit[i] = log(score1[i] + 1e-3) - log1p(-score1[i] + 1e-3);
	eng_stream *s = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
	eng_tensor ys = t1(logit, N), yt = t1(label1, N);
	eng_stream *b = NULL;
	cr_assert_eq(eng_stream_batch(&b, &cfg, &yt, &ys, NULL, NULL, &err), 0);
	cr_assert_eq(eng_stream_merge(s, b, &err), 0);
	double p[N];
	eng_auc_logits(p, &ys, false);
	eng_tensor ps = t1(p, N);
	eng_auc_data d = {&ps, &yt, NULL, ENG_LABELS_BINARY};
	eng_auc_result want, got;
	cr_assert_eq(eng_auc_binned(&want, NULL, &d, 0, 200, ENG_CURVE_ROC, ENG_SUM_INTERPOLATION,
	                            512, &err),
	             0);
	cr_assert_eq(eng_stream_auc(&got, NULL, s, 0, 512, &err), 0);
	cr_assert(fabs(got.auc - want.auc) < 1e-12);
	eng_stream_free(b);
	eng_stream_free(s);
}

/* Exact and sketch streams fed logits rank by them: logits above 37 that a
 * double sigmoid rounds to 1.0 stay apart, so the exact stream gives the
 * Mann-Whitney AUC of the logits and the sketch (every key distinct, far
 * below its capacity) the same with an error bound that covers it. */
Test(stream, logits_rank_exact_and_sketch)
{
	enum { M = 64 };
	double z[M], y[M];
	uint8_t yb[M];
	for (int i = 0; i < M; i++) {
		yb[i] = (uint8_t)((i * 7) % 3 == 0);
		y[i] = yb[i];
		z[i] = 37.0 + 0.25 * ((i * 13) % M) + 3.0 * yb[i];
	}
	double want = 0, np = 0, nn = 0;
	for (int i = 0; i < M; i++)
		for (int j = 0; j < M; j++)
			if (yb[i] && !yb[j])
				want += (z[i] > z[j]) + 0.5 * (z[i] == z[j]);
	for (int i = 0; i < M; i++)
		np += yb[i], nn += !yb[i];
	want /= np * nn;
	cr_assert(want < 1.0 && want > 0.5);
	for (int m = 0; m < 2; m++) {
		eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
		cfg.method = m ? ENG_STREAM_SKETCH : ENG_STREAM_EXACT;
		cfg.from_logits = true;
		eng_stream *s = NULL, *b = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
		eng_tensor ys = t1(z, M), yt = t1(y, M);
		cr_assert_eq(eng_stream_batch(&b, &cfg, &yt, &ys, NULL, NULL, &err), 0);
		cr_assert_eq(eng_stream_merge(s, b, &err), 0);
		eng_auc_result got;
		eng_auc_curve c = ENG_AUC_CURVE_INIT;
		cr_assert_eq(eng_stream_auc(&got, &c, s, 0, 512, &err), 0);
		cr_expect(fabs(got.auc - want) <= got.error_bound + 1e-12,
		          "method %d: auc %.12g, bound %g, want %.12g", m, got.auc, got.error_bound,
		          want);
		cr_expect(fabs(got.auc - want) < 1e-12, "method %d", m);
		for (int64_t i = 0; i < c.n; i++)
			cr_expect(isnan(c.thresholds[i]) ||
			                  (c.thresholds[i] > 0.5 && c.thresholds[i] <= 1.0),
			          "threshold %g", c.thresholds[i]);
		eng_auc_curve_free(&c);
		eng_stream_free(b);
		eng_stream_free(s);
	}
}

/* stream_codec.c's checksum, as its format comment documents it. */
static uint64_t state_checksum(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t v = 0;
		for (int k = 0; k < 8; k++)
			v |= (uint64_t)p[i + k] << (8 * k);
		h ^= v;
		h *= 1099511628211ull;
		h ^= h >> 29;
	}
	for (; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static void fix_checksum(uint8_t *b, size_t len)
{
	uint64_t h = state_checksum(b + 24, len - 24);
	for (int k = 0; k < 8; k++)
		b[16 + k] = (uint8_t)(h >> (8 * k));
}

/* A crafted state (valid checksum, any field changed) never crashes: it is
 * refused, or it parses into a stream that reads, merges and serializes. */
Test(stream, crafted_states_are_safe)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	eng_label_kind ks[] = {ENG_LABELS_CLASS_ID, ENG_LABELS_MULTI, ENG_LABELS_BINARY};
	uint8_t vals[] = {0x00, 0xff, 0x01, 0x80, 0x7f};
	for (int i = 0; i < 3; i++) {
		eng_stream *s = new_stream(ms[i], ks[i], ENG_CURVE_PR);
		add_rows(s, ks[i], 0, 12, i != 1);
		size_t len;
		uint8_t *b = ser(s, &len);
		int accepted = 0;
		for (size_t p = 24; p < len; p++) {
			for (size_t v = 0; v < sizeof(vals); v++) {
				uint8_t old = b[p];
				if (old == vals[v])
					continue;
				b[p] = vals[v];
				fix_checksum(b, len);
				eng_stream *o = NULL;
				eng_error err;
				int rc = eng_stream_deserialize(&o, b, len, 1 << 20, &err);
				cr_assert(rc == 0 || rc == ENG_ESTATE, "rc %d at %zu", rc, p);
				if (rc == 0) {
					accepted++;
					eng_auc_result r;
					eng_auc_curve c = ENG_AUC_CURVE_INIT;
					int64_t cols = eng_stream_config_of(o)->columns;
					for (int64_t k = -1; k < cols; k++)
						(void)eng_stream_auc(&r, &c, o, k, 16, &err),
						        eng_auc_curve_free(&c);
					eng_stream *cp = NULL;
					if (eng_stream_new(&cp, eng_stream_config_of(o), &err) ==
					    0) {
						(void)eng_stream_merge(cp, o, &err);
						(void)eng_stream_merge(cp, o, &err);
					}
					size_t l2;
					void *b2 = ser(o, &l2);
					free(b2);
					eng_stream_free(cp);
					eng_stream_free(o);
				}
				b[p] = old;
			}
		}
		fix_checksum(b, len);
		cr_log_info("method %d: %d crafted states parsed", ms[i], accepted);
		free(b);
		eng_stream_free(s);
	}
}

/* ---- sums stay finite; hostile but well-formed states are refused ------------------ */

static eng_stream *batch_of(const eng_stream_config *cfg, const double *y, const double *sc,
                            const double *w, int64_t n, const eng_loss_result *lr, int *rc,
                            eng_error *err)
{
	eng_tensor yt = t1(y, n), ys = t1(sc, n), wt = t1(w, n);
	eng_stream *b = NULL;
	*rc = eng_stream_batch(&b, cfg, &yt, &ys, w ? &wt : NULL, lr, err);
	return b;
}

/* Issue "one accepted update stops every later start": weights whose sums
 * overflow are refused in a batch, and in a merge of two batches that are
 * each fine, for every method, and the stream is left as it was. */
Test(stream, sums_stay_finite)
{
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	double y3[] = {1, 1, 0}, s3[] = {0.2, 0.7, 0.5}, w3[] = {1e308, 1e308, 1};
	double y2[] = {1, 0}, s2[] = {0.2, 0.5}, w2[] = {1.7e308, 1};
	for (int i = 0; i < 3; i++) {
		eng_stream *s = new_stream(ms[i], ENG_LABELS_BINARY, ENG_CURVE_ROC);
		const eng_stream_config *cfg = eng_stream_config_of(s);
		eng_error err;
		int rc;
		eng_stream *b = batch_of(cfg, y3, s3, w3, 3, NULL, &rc, &err);
		cr_assert_eq(rc, ENG_ENONFINITE, "method %d: rc %d", ms[i], rc);
		cr_assert_null(b);
		cr_assert_str_eq(err.field, "sample_weight");

		b = batch_of(cfg, y2, s2, w2, 2, NULL, &rc, &err);
		cr_assert_eq(rc, 0, "%s", err.msg);
		cr_assert_eq(eng_stream_merge(s, b, &err), 0, "%s", err.msg);
		size_t l0, l1;
		void *b0 = ser(s, &l0);
		cr_assert_eq(eng_stream_merge(s, b, &err), ENG_ENONFINITE, "method %d", ms[i]);
		void *b1 = ser(s, &l1);
		cr_assert(l0 == l1 && memcmp(b0, b1, l0) == 0, "a refused merge left a trace");
		/* What the stream holds still reads back. */
		eng_stream *back = NULL;
		cr_assert_eq(eng_stream_deserialize(&back, b1, l1, 1 << 20, &err), 0, "%s",
		             err.msg);
		eng_stream_free(back);
		free(b0);
		free(b1);
		eng_stream_free(b);
		eng_stream_free(s);
	}
}

/* An empty stream with an MSE loss (*s) and a batch of two rows (*b) whose
 * loss sum is 1.5e308, so that merging it twice overflows; *lr is the
 * batch's loss result (the caller frees all three). */
static const double mse_y[] = {1, 0}, mse_sc[] = {0.9, 0.1};

static void mse_near_overflow(eng_stream_config *cfg, eng_stream **s, eng_stream **b,
                              eng_loss_result **lr)
{
	*cfg = (eng_stream_config)ENG_STREAM_CONFIG_INIT;
	cfg->has_loss = true;
	cfg->loss_kind = ENG_LOSS_MSE;
	*lr = eng_loss_result_new(ENG_LOSS_MSE, 0, 0);
	cr_assert_not_null(*lr);
	(*lr)->wloss_sum = 1.5e308;
	(*lr)->weight_sum = 2;
	(*lr)->count = 2;
	eng_error err;
	int rc;
	*s = NULL;
	cr_assert_eq(eng_stream_new(s, cfg, &err), 0);
	*b = batch_of(cfg, mse_y, mse_sc, NULL, 2, *lr, &rc, &err);
	cr_assert_eq(rc, 0, "%s", err.msg);
}

/* Loss sums overflow the same way (a huge squared error twice). */
Test(stream, loss_sums_stay_finite)
{
	eng_stream_config cfg;
	eng_stream *s, *b;
	eng_loss_result *lr;
	mse_near_overflow(&cfg, &s, &b, &lr);
	eng_error err;
	int rc;
	cr_assert_eq(eng_stream_merge(s, b, &err), 0);
	cr_assert_eq(eng_stream_merge(s, b, &err), ENG_ENONFINITE);
	cr_assert(strstr(err.msg, "loss sums") != NULL, "%s", err.msg);
	lr->wloss_sum = INFINITY;
	eng_stream *b2 = batch_of(&cfg, mse_y, mse_sc, NULL, 2, lr, &rc, &err);
	cr_assert_eq(rc, ENG_ENONFINITE);
	cr_assert_null(b2);
	eng_loss_result_free(lr);
	eng_stream_free(b);
	eng_stream_free(s);
}

static void put_f64_at(uint8_t *p, double v)
{
	uint64_t u;
	memcpy(&u, &v, 8);
	for (int k = 0; k < 8; k++)
		p[k] = (uint8_t)(u >> (8 * k));
}

static void put_u64_at(uint8_t *p, uint64_t u)
{
	for (int k = 0; k < 8; k++)
		p[k] = (uint8_t)(u >> (8 * k));
}

static size_t find_magic(const uint8_t *b, size_t len, const char *magic)
{
	for (size_t i = 24; i + 4 <= len; i++)
		if (memcmp(b + i, magic, 4) == 0)
			return i;
	cr_assert_fail("no %s in the state", magic);
	return 0;
}

/* Patches 8 bytes at off to v (a double, or a u64 when is_u64), fixes the
 * checksum and asserts the state is refused; then puts the bytes back. */
static void assert_refused(uint8_t *b, size_t len, size_t off, double v, bool is_u64, uint64_t u,
                           const char *what)
{
	uint8_t old[8];
	memcpy(old, b + off, 8);
	if (is_u64)
		put_u64_at(b + off, u);
	else
		put_f64_at(b + off, v);
	fix_checksum(b, len);
	eng_stream *o = NULL;
	eng_error err;
	int rc = eng_stream_deserialize(&o, b, len, 1 << 20, &err);
	cr_assert_eq(rc, ENG_ESTATE, "%s = %g accepted", what, is_u64 ? (double)u : v);
	cr_assert_null(o);
	memcpy(b + off, old, 8);
	fix_checksum(b, len);
	cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), 0, "%s", err.msg);
	eng_stream_free(o);
}

/* Payload offsets (absolute, header of 24 bytes): 8 u32 config words, then
 * columns, num_thresholds, sketch_bytes, fingerprint, updates, rows; then
 * per column pos, neg, pw, nw. */
#define OFF_UPDATES (24 + 32 + 32)
#define OFF_ROWS    (OFF_UPDATES + 8)
#define OFF_CC      (OFF_ROWS + 8)

Test(stream, hostile_values_refused)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	double bad[] = {NAN, INFINITY, -INFINITY, -1.0, -1e300, 1e300};
	for (int i = 0; i < 3; i++) {
		eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
		cfg.method = ms[i];
		cfg.has_loss = true;
		cfg.loss_kind = ENG_LOSS_BINARY_CE;
		eng_stream *s = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
		eng_loss_opts o = ENG_LOSS_OPTS_INIT;
		o.kind = ENG_LOSS_BINARY_CE;
		o.per_class = true;
		eng_tensor ys = t1(score1, 40), yt = t1(label1, 40), w = t1(weight, 40);
		o.sample_weight = &w;
		eng_loss_result *lr = NULL;
		cr_assert_eq(eng_loss_compute(&lr, &yt, &ys, &o, NULL, &err), 0, "%s", err.msg);
		cr_assert_eq(lr->nclasses, 1);
		eng_stream *bt = NULL;
		cr_assert_eq(eng_stream_batch(&bt, &cfg, &yt, &ys, &w, lr, &err), 0, "%s", err.msg);
		cr_assert_eq(eng_stream_merge(s, bt, &err), 0);
		size_t len;
		uint8_t *b = ser(s, &len);
		/* Tail: ..., f64 wloss_sum, f64 weight_sum, u64 count, ignored,
		 * correct, nclasses, then one class: u64 support, predicted,
		 * correct, f64 weight_sum, loss_sum. */
		size_t cls = len - 40, wl = cls - 48, ws = cls - 40, cnt = cls - 32;
		for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
			if (bad[k] != 1e300) {
				assert_refused(b, len, wl, bad[k], false, 0, "wloss_sum");
				assert_refused(b, len, cls + 32, bad[k], false, 0,
				               "class loss_sum");
				assert_refused(b, len, cls + 24, bad[k], false, 0,
				               "class weight_sum");
				assert_refused(b, len, ws, bad[k], false, 0, "weight_sum");
			}
			/* The per-column weights must be those of the rows. */
			assert_refused(b, len, OFF_CC + 16, bad[k], false, 0, "pw");
			assert_refused(b, len, OFF_CC + 24, bad[k], false, 0, "nw");
		}
		assert_refused(b, len, OFF_UPDATES, 0, true, 0, "updates");
		assert_refused(b, len, cls + 16, 0, true, 41, "class correct");
		assert_refused(b, len, cnt + 16, 0, true, 41, "correct");
		assert_refused(b, len, cnt, 0, true, 0, "count");
		/* Inside the accumulators: a weight that disagrees with the counts. */
		if (ms[i] == ENG_STREAM_EXACT) {
			/* score[n], label[n], weight[n]: the first weight */
			size_t wt0 = OFF_CC + 32 + 16 + 40 * 8 + 40 * 4;
			assert_refused(b, len, wt0, 1e300, false, 0, "exact weight");
			assert_refused(b, len, wt0, INFINITY, false, 0, "exact weight");
		} else if (ms[i] == ENG_STREAM_BINNED) {
			size_t cell = find_magic(b, len, "LDBN") + 32;
			assert_refused(b, len, cell + 16 * 150, 1e300, false, 0, "binned cell");
			assert_refused(b, len, cell + 16 * 150 + 8, 1e300, false, 0, "binned cell");
		} else {
			size_t bucket = find_magic(b, len, "LDSK") + 40;
			assert_refused(b, len, bucket + 16, 1e300, false, 0, "sketch bucket");
			assert_refused(b, len, bucket + 24, 1e300, false, 0, "sketch bucket");
		}
		free(b);
		eng_loss_result_free(lr);
		eng_stream_free(bt);
		eng_stream_free(s);
	}
}

/* One batch of (N) or (N, cols) scores merged into a new stream of cfg. */
static eng_stream *one_batch(const eng_stream_config *cfg, const double *y, const double *s,
                             int64_t n, int64_t cols)
{
	eng_stream *st = NULL, *b = NULL;
	eng_error err;
	eng_tensor ys = cols > 1 ? t2(s, n, cols) : t1(s, n), yt = t1(y, n);
	cr_assert_eq(eng_stream_new(&st, cfg, &err), 0, "%s", err.msg);
	cr_assert_eq(eng_stream_batch(&b, cfg, &yt, &ys, NULL, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(eng_stream_merge(st, b, &err), 0);
	eng_stream_free(b);
	return st;
}

/*
 * A version 1 state of an exact or sketch stream with from_logits kept
 * probabilities; read today it is upgraded to the logit keys (logit(p), or
 * log(p) for one-vs-rest), so it reads the AUC of those keys and merges
 * with batches of logits in one order. Crafted here from a stream fed the
 * probabilities: version 1 and from_logits 1 written into its bytes.
 */
Test(stream, version_1_logit_states_are_upgraded)
{
	enum { M = 80 };
	double y[M], p[M], z[M], keys[2 * M], pc[M * 3], yc[M];
	uint8_t lab[2 * M];
	for (int i = 0; i < M; i++) {
		y[i] = (double)((i * 5) % 3 == 0);
		/* probabilities with ties, and 0 and 1 (keys -inf and +inf) */
		p[i] = i % 11 == 0 ? 1.0 : (i % 13 == 0 ? 0.0 : (double)((i * 7) % 20) / 20.0);
		z[i] = -3.0 + 0.09 * ((i * 17) % 67) + 1.5 * y[i];
		keys[i] = log(p[i]) - log1p(-p[i]);
		keys[M + i] = z[i];
		lab[i] = lab[M + i] = (uint8_t)y[i];
		yc[i] = (double)(i % 3);
		double r[3] = {1.0 + (i % 4), 1.0 + ((i * 3) % 5), 2.0 + (i % 2)},
		       t = r[0] + r[1] + r[2];
		for (int c = 0; c < 3; c++)
			pc[3 * i + c] = r[c] / t;
	}
	for (int m = 0; m < 3; m++) {
		eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
		cfg.method = m == 1 ? ENG_STREAM_SKETCH : ENG_STREAM_EXACT;
		if (m == 2) {
			cfg.kind = ENG_LABELS_CLASS_ID;
			cfg.columns = 3;
		}
		eng_stream *old =
		        m == 2 ? one_batch(&cfg, yc, pc, M, 3) : one_batch(&cfg, y, p, M, 1);
		size_t len;
		uint8_t *b = ser(old, &len);
		b[4] = 1;  /* version 1 */
		b[40] = 1; /* from_logits */
		fix_checksum(b, len);
		eng_stream *o = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), 0, "method %d: %s",
		             m, err.msg);
		cr_assert(eng_stream_config_of(o)->from_logits);
		eng_auc_result got, want;
		if (m == 2) {
			/* one-vs-rest: column c's keys are log(p_c) */
			for (int c = 0; c < 3; c++) {
				double k[M];
				uint8_t l[M];
				for (int i = 0; i < M; i++) {
					k[i] = log(pc[3 * i + c]);
					l[i] = yc[i] == c;
				}
				cr_assert_eq(eng_auc_exact_values(&want, NULL, k, l, NULL, M, NULL,
				                                  &err),
				             0);
				cr_assert_eq(eng_stream_auc(&got, NULL, o, c, 512, &err), 0);
				cr_expect(fabs(got.auc - want.auc) < 1e-12, "class %d", c);
			}
		} else {
			cr_assert_eq(
			        eng_auc_exact_values(&want, NULL, keys, lab, NULL, M, NULL, &err),
			        0);
			cr_assert_eq(eng_stream_auc(&got, NULL, o, 0, 512, &err), 0);
			cr_expect(fabs(got.auc - want.auc) <= got.error_bound + 1e-12, "method %d",
			          m);
			cr_expect(fabs(got.auc - want.auc) < 1e-12, "method %d: %.15g vs %.15g", m,
			          got.auc, want.auc);
			/* new batches of logits rank with the upgraded rows */
			eng_stream *nb = one_batch(eng_stream_config_of(o), y, z, M, 1);
			cr_assert_eq(eng_stream_merge(o, nb, &err), 0);
			cr_assert_eq(eng_auc_exact_values(&want, NULL, keys, lab, NULL, 2 * M, NULL,
			                                  &err),
			             0);
			cr_assert_eq(eng_stream_auc(&got, NULL, o, 0, 512, &err), 0);
			cr_expect(fabs(got.auc - want.auc) <= got.error_bound + 1e-12,
			          "method %d: %.15g +- %g vs %.15g", m, got.auc, got.error_bound,
			          want.auc);
			eng_stream_free(nb);
		}
		/* it is written back as version 2 and reads the same */
		size_t len2;
		uint8_t *b2 = ser(o, &len2);
		cr_expect_eq(b2[4], 2);
		eng_stream *o2 = NULL;
		cr_assert_eq(eng_stream_deserialize(&o2, b2, len2, 1 << 20, &err), 0);
		eng_auc_result a1, a2;
		cr_assert_eq(eng_stream_auc(&a1, NULL, o, ENG_AUC_ALL, 512, &err), 0);
		cr_assert_eq(eng_stream_auc(&a2, NULL, o2, ENG_AUC_ALL, 512, &err), 0);
		cr_expect(a1.auc == a2.auc);
		eng_stream_free(o2);
		free(b2);
		eng_stream_free(o);
		free(b);
		eng_stream_free(old);
	}
}

/* The same upgrade of a sketch that has folded buckets (a 1 KiB cap for
 * 3000 distinct probabilities): re-keyed and re-folded, its AUC still lies
 * within its error bound of the exact AUC of the logit keys. */
Test(stream, version_1_folded_sketch_stays_sound)
{
	enum { M = 3000 };
	static double y[M], p[M], keys[M];
	static uint8_t lab[M];
	for (int i = 0; i < M; i++) {
		uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull;
		y[i] = (double)(x >> 63);
		double u = (double)((x >> 11) % 1000003) / 1000003.0;
		p[i] = fmin(1.0, u * 0.8 + 0.2 * y[i]);
		keys[i] = log(p[i]) - log1p(-p[i]);
		lab[i] = (uint8_t)y[i];
	}
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = ENG_STREAM_SKETCH;
	cfg.sketch_bytes = ENG_SKETCH_MIN_CAP;
	eng_stream *old = one_batch(&cfg, y, p, M, 1);
	eng_auc_result before, got, want;
	eng_error err;
	cr_assert_eq(eng_stream_auc(&before, NULL, old, 0, 512, &err), 0);
	cr_assert_gt(before.error_bound, 0.0, "the sketch must have folded");
	size_t len;
	uint8_t *b = ser(old, &len);
	b[4] = 1;
	b[40] = 1;
	fix_checksum(b, len);
	eng_stream *o = NULL;
	cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), 0, "%s", err.msg);
	cr_assert_eq(eng_auc_exact_values(&want, NULL, keys, lab, NULL, M, NULL, &err), 0);
	cr_assert_eq(eng_stream_auc(&got, NULL, o, 0, 512, &err), 0);
	cr_expect(fabs(got.auc - want.auc) <= got.error_bound + 1e-12, "%.12g +- %g vs %.12g",
	          got.auc, got.error_bound, want.auc);
	cr_expect(got.error_bound >= before.error_bound - 1e-15);
	cr_expect(got.positives == before.positives && got.negatives == before.negatives);
	eng_stream_free(o);
	free(b);
	eng_stream_free(old);
}

/* ---- top-k, calibration and perplexity sums (docs/API.md section 9) ------------------------- */

static const int64_t xtop[2] = {1, 2};

/* A one-vs-rest stream config with sparse cross-entropy and its extra sums. */
static eng_stream_config xcfg(eng_stream_method m)
{
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	cfg.method = m;
	cfg.kind = ENG_LABELS_CLASS_ID;
	cfg.columns = C;
	cfg.has_loss = true;
	cfg.loss_kind = ENG_LOSS_SPARSE_CE;
	return cfg;
}

static eng_extra_opts xopts(int bins)
{
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	x.ntop = 2;
	memcpy(x.top_k, xtop, sizeof xtop);
	x.bins = bins;
	x.perplexity = true;
	return x;
}

/* The loss (with extra sums of x) of rows [from, to), weighted. */
static eng_loss_result *xloss(const eng_extra_opts *x, int from, int to)
{
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	o.per_class = true;
	o.extra = x;
	eng_tensor ys = t2(scoreC + from * C, to - from, C), yt = t1(labelC + from, to - from);
	eng_tensor w = t1(weight + from, to - from);
	o.sample_weight = &w;
	eng_loss_result *lr = NULL;
	eng_error err;
	cr_assert_eq(eng_loss_compute(&lr, &yt, &ys, &o, NULL, &err), 0, "%s", err.msg);
	cr_assert_not_null(lr->extra);
	return lr;
}

/* Rows [from, to) as a batch of cfg with the extra sums of x. */
static eng_stream *xbatch(const eng_stream_config *cfg, const eng_extra_opts *x, int from, int to)
{
	eng_loss_result *lr = xloss(x, from, to);
	eng_tensor ys = t2(scoreC + from * C, to - from, C), yt = t1(labelC + from, to - from);
	eng_tensor w = t1(weight + from, to - from);
	eng_stream *b = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_batch(&b, cfg, &yt, &ys, &w, lr, &err), 0, "%s", err.msg);
	eng_loss_result_free(lr);
	return b;
}

static bool near(double a, double b)
{
	return fabs(a - b) <= 1e-12 * (fabs(a) > 1 ? fabs(a) : 1);
}

/* The extra sums of got equal those of one evaluation (counts exactly). */
static void same_extra(const eng_extra_result *got, const eng_extra_result *all)
{
	cr_assert_eq(got->ntop, all->ntop);
	cr_assert_eq(got->bins, all->bins);
	cr_assert_eq(got->top_count, all->top_count);
	for (int i = 0; i < got->ntop; i++)
		cr_assert_eq(got->top_correct[i], all->top_correct[i]);
	cr_assert_eq(got->nll_count, all->nll_count);
	cr_assert(near(got->nll_sum, all->nll_sum), "%.17g %.17g", got->nll_sum, all->nll_sum);
	cr_assert(near(got->nll_weight, all->nll_weight));
	cr_assert_eq(got->calib_count, all->calib_count);
	cr_assert(near(got->brier_sum, all->brier_sum));
	cr_assert(near(got->calib_weight, all->calib_weight));
	for (int b = 0; b < got->bins; b++) {
		cr_assert_eq(got->bin[b].count, all->bin[b].count);
		cr_assert(near(got->bin[b].weight, all->bin[b].weight));
		cr_assert(near(got->bin[b].conf, all->bin[b].conf));
		cr_assert(near(got->bin[b].acc, all->bin[b].acc));
	}
}

/* Batches merged (and a state exported, parsed and merged) give the sums of
 * one evaluation over all rows; the state round-trips byte for byte. */
Test(stream, extra_sums_merge_and_round_trip)
{
	make_data();
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	eng_extra_opts x = xopts(7);
	eng_loss_result *all = xloss(&x, 0, N);
	cr_assert_gt(all->extra->top_correct[0], 0);
	cr_assert_lt(all->extra->top_correct[0], all->extra->top_correct[1]);
	for (int i = 0; i < 3; i++) {
		eng_stream_config cfg = xcfg(ms[i]);
		eng_stream *s = NULL, *t = NULL, *u = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
		cr_assert_eq(eng_stream_new(&t, &cfg, &err), 0);
		/* s: the first 400 rows in 4 batches; t: the rest, then s merged in */
		for (int from = 0; from < 400; from += 100) {
			eng_stream *b = xbatch(&cfg, &x, from, from + 100);
			cr_assert_eq(eng_stream_merge(s, b, &err), 0, "%s", err.msg);
			eng_stream_free(b);
		}
		eng_stream *b = xbatch(&cfg, &x, 400, N);
		cr_assert_eq(eng_stream_merge(t, b, &err), 0, "%s", err.msg);
		eng_stream_free(b);
		size_t len, len2;
		uint8_t *bytes = ser(s, &len);
		cr_assert_eq(bytes[4], 3, "a state with metric sums is version 3");
		cr_assert_eq(eng_stream_deserialize(&u, bytes, len, 1 << 24, &err), 0, "%s",
		             err.msg);
		uint8_t *again = ser(u, &len2);
		cr_assert_eq(len2, len);
		cr_assert_eq(memcmp(again, bytes, len), 0);
		cr_assert_eq(eng_stream_merge(t, u, &err), 0, "%s", err.msg);
		same_extra(eng_stream_loss(t)->extra, all->extra);
		cr_assert_eq(eng_stream_loss(t)->count, all->count);
		/* the clone carries them too */
		eng_stream *cl = NULL;
		cr_assert_eq(eng_stream_clone(&cl, t), 0);
		same_extra(eng_stream_loss(cl)->extra, all->extra);
		eng_stream_free(cl);
		free(again);
		free(bytes);
		eng_stream_free(u);
		eng_stream_free(t);
		eng_stream_free(s);
	}
	eng_loss_result_free(all);
}

/* Sums of another top_k or bins, or none, never merge: dst unchanged. A
 * stream without them still writes version 2. */
Test(stream, extra_config_mismatch_refused)
{
	make_data();
	eng_stream_config cfg = xcfg(ENG_STREAM_SKETCH);
	eng_extra_opts x = xopts(5), y = xopts(6);
	eng_stream *s = NULL, *b1 = xbatch(&cfg, &x, 0, 50), *b2 = xbatch(&cfg, &y, 50, 100);
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
	cr_assert_eq(eng_stream_merge(s, b1, &err), 0, "%s", err.msg);
	size_t l0, l1;
	uint8_t *before = ser(s, &l0);
	cr_assert_eq(eng_stream_merge(s, b2, &err), ENG_ESTATE);
	uint8_t *after = ser(s, &l1);
	cr_assert_eq(l0, l1);
	cr_assert_eq(memcmp(before, after, l0), 0);

	/* no extra sums at all: version 2, and refused against extra sums */
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	o.per_class = true;
	eng_tensor ys = t2(scoreC, 30, C), yt = t1(labelC, 30);
	eng_loss_result *lr = NULL;
	cr_assert_eq(eng_loss_compute(&lr, &yt, &ys, &o, NULL, &err), 0, "%s", err.msg);
	eng_stream *plain = NULL;
	cr_assert_eq(eng_stream_batch(&plain, &cfg, &yt, &ys, NULL, lr, &err), 0, "%s", err.msg);
	size_t lp;
	uint8_t *pb = ser(plain, &lp);
	cr_assert_eq(pb[4], 2);
	cr_assert_eq(eng_stream_merge(s, plain, &err), ENG_ESTATE);
	cr_assert_eq(eng_stream_merge(plain, s, &err), ENG_ESTATE);
	free(pb);
	free(before);
	free(after);
	eng_loss_result_free(lr);
	eng_stream_free(plain);
	eng_stream_free(b1);
	eng_stream_free(b2);
	eng_stream_free(s);
}

/* Forged metric sections (valid checksum) are refused: counts that do not
 * nest, sums that are not finite or negative, bins past their weight. */
Test(stream, extra_forged_sections_refused)
{
	make_data();
	eng_stream_config cfg = xcfg(ENG_STREAM_BINNED);
	eng_extra_opts x = xopts(3);
	eng_stream *s = xbatch(&cfg, &x, 0, 80);
	size_t len;
	uint8_t *b = ser(s, &len);
	const eng_extra_result *e = eng_stream_loss(s)->extra;
	cr_assert_gt(e->top_correct[0], 0);
	size_t at = find_magic(b, len, "XTRA");
	size_t top = at + 32;        /* (k, correct) x 2 */
	size_t tcount = top + 32;    /* top_count */
	size_t nll = tcount + 8;     /* nll_sum, nll_weight, nll_count */
	size_t bin = nll + 24;       /* (count, weight, conf, acc) x 3 */
	size_t brier = bin + 3 * 32; /* brier_sum, calib_weight, calib_count */
	int nb = e->bin[0].count ? 0 : e->bin[1].count ? 1 : 2;
	size_t b0 = bin + (size_t)nb * 32;
	double bad[] = {NAN, INFINITY, -1.0};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		assert_refused(b, len, nll, bad[k], false, 0, "nll_sum");
		assert_refused(b, len, nll + 8, bad[k], false, 0, "nll_weight");
		assert_refused(b, len, b0 + 8, bad[k], false, 0, "bin weight");
		assert_refused(b, len, b0 + 16, bad[k], false, 0, "bin conf");
		assert_refused(b, len, b0 + 24, bad[k], false, 0, "bin acc");
		assert_refused(b, len, brier, bad[k], false, 0, "brier_sum");
		assert_refused(b, len, brier + 8, bad[k], false, 0, "calib_weight");
	}
	assert_refused(b, len, b0 + 16, 1e300, false, 0, "bin conf past its weight");
	assert_refused(b, len, brier, 1e300, false, 0, "brier past 2 per weight");
	assert_refused(b, len, b0 + 8, 1e300, false, 0, "bins past the total weight");
	assert_refused(b, len, top, 0, true, 0, "k = 0");
	assert_refused(b, len, top, 0, true, C + 1, "k > C");
	assert_refused(b, len, top + 16, 0, true, 1, "k not increasing");
	assert_refused(b, len, top + 8, 0, true, (uint64_t)e->top_count + 1, "correct > counted");
	assert_refused(b, len, top + 24, 0, true, 0, "correct at 2 < correct at 1");
	assert_refused(b, len, tcount, 0, true, 1000, "top_count > positions");
	assert_refused(b, len, nll + 16, 0, true, 1000, "nll_count > positions");
	assert_refused(b, len, brier + 16, 0, true, 0, "bins past calib_count");
	assert_refused(b, len, b0, 0, true, 1000, "bin count past calib_count");
	assert_refused(b, len, at + 16, 0, true, 33, "ntop 33");
	assert_refused(b, len, at, 0, true, 0x5453494841525458ull, "another tag");
	/* version 2 with the section: refused; the version-3 bytes are fine */
	b[4] = 2;
	fix_checksum(b, len);
	eng_stream *o = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), ENG_ESTATE);
	b[4] = 3;
	fix_checksum(b, len);
	cr_assert_eq(eng_stream_deserialize(&o, b, len, 1 << 20, &err), 0, "%s", err.msg);
	eng_stream_free(o);
	free(b);
	eng_stream_free(s);
}

/* ---- the step series keeps the metric sums (docs/API.md sections 7 and 9) ------------------- */

#define XSTEPS 4

/* Rows of step k: [k N / XSTEPS, (k + 1) N / XSTEPS), posted as two batches
 * (two workers), steps in the order 2, 0, 3, 1. */
static eng_stream *xstepped(const eng_extra_opts *x, size_t max_points)
{
	eng_stream_config cfg = xcfg(ENG_STREAM_BINNED);
	eng_stream *s = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_new(&s, &cfg, &err), 0);
	eng_stream_set_history_max(s, max_points);
	int order[XSTEPS] = {2, 0, 3, 1};
	for (int i = 0; i < XSTEPS; i++) {
		int k = order[i], lo = k * N / XSTEPS, hi = (k + 1) * N / XSTEPS,
		    mid = (lo + hi) / 2;
		for (int half = 0; half < 2; half++) {
			eng_stream *b = xbatch(&cfg, x, half ? mid : lo, half ? hi : mid);
			cr_assert_eq(eng_stream_set_step(b, k), 0);
			cr_assert_eq(eng_stream_merge(s, b, &err), 0, "%s", err.msg);
			eng_stream_free(b);
		}
	}
	return s;
}

/* Every point of s holds the metric sums of one evaluation over its rows
 * (times `copies` for a series merged with copies of itself). */
static void points_match(const eng_stream *s, const eng_extra_opts *x, int64_t copies)
{
	const eng_extra_opts *o = eng_stream_history_extra_opts(s);
	cr_assert_not_null(o);
	cr_assert_eq(o->ntop, x->ntop);
	cr_assert_eq(o->bins, x->bins);
	eng_extra_result *got = eng_extra_result_new(o);
	cr_assert_not_null(got);
	for (size_t i = 0; i < eng_stream_history_size(s); i++) {
		eng_history_point p;
		eng_stream_history_get(&p, s, i);
		eng_loss_result *want =
		        xloss(x, (int)p.step * N / XSTEPS, ((int)p.step_end + 1) * N / XSTEPS);
		eng_extra_result *w = want->extra;
		w->top_count *= copies;
		w->nll_count *= copies;
		w->calib_count *= copies;
		w->nll_sum *= (double)copies;
		w->nll_weight *= (double)copies;
		w->brier_sum *= (double)copies;
		w->calib_weight *= (double)copies;
		for (int k = 0; k < w->ntop; k++)
			w->top_correct[k] *= copies;
		for (int b = 0; b < w->bins; b++) {
			w->bin[b].count *= copies;
			w->bin[b].weight *= (double)copies;
			w->bin[b].conf *= (double)copies;
			w->bin[b].acc *= (double)copies;
		}
		eng_stream_history_extra(got, s, i);
		cr_assert_eq(p.positions, copies * want->count);
		cr_assert_gt(got->top_count, 0);
		same_extra(got, w);
		eng_loss_result_free(want);
	}
	eng_extra_result_free(got);
}

Test(stream, history_points_keep_metric_sums_exactly)
{
	make_data();
	eng_extra_opts x = xopts(7);
	eng_stream *s = xstepped(&x, 1000);
	cr_assert_eq(eng_stream_history_size(s), XSTEPS);
	points_match(s, &x, 1);
	/* retention adds neighbours: ranges hold the sums of all their rows */
	eng_stream *t = xstepped(&x, 2);
	cr_assert_eq(eng_stream_history_size(t), 2);
	points_match(t, &x, 1);
	/* reset keeps them, bytes round-trip, a merged copy doubles them */
	cr_assert_eq(eng_stream_reset(t), 0);
	size_t len, len2;
	uint8_t *b = ser(s, &len);
	eng_stream *r = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_deserialize(&r, b, len, SIZE_MAX, &err), 0, "%s", err.msg);
	points_match(r, &x, 1);
	uint8_t *b2 = ser(r, &len2);
	cr_assert(len == len2 && memcmp(b, b2, len) == 0);
	cr_assert_eq(eng_stream_merge(r, s, &err), 0, "%s", err.msg);
	points_match(r, &x, 2);
	free(b2);
	b2 = ser(t, &len2);
	eng_stream *rt = NULL;
	cr_assert_eq(eng_stream_deserialize(&rt, b2, len2, SIZE_MAX, &err), 0, "%s", err.msg);
	points_match(rt, &x, 1);
	eng_stream_free(rt);
	free(b2);
	free(b);
	eng_stream_free(r);
	eng_stream_free(t);
	eng_stream_free(s);
}

/* s's bytes with its history section rewritten as version 1 (the points
 * without their metric sums), as a build before version 2 wrote them. */
static uint8_t *as_history_v1(const eng_stream *s, size_t *len)
{
	size_t n = eng_stream_history_size(s), full;
	const eng_extra_opts *o = eng_stream_history_extra_opts(s);
	uint8_t *b = ser(s, &full);
	size_t per1 = 64 + 8 * C, ni = (size_t)o->ntop + 3 + (size_t)o->bins;
	size_t per2 = per1 + 8 * (ni + 4 + 3 * (size_t)o->bins);
	size_t h2 = 24 + 16 + 8 * (size_t)o->ntop + n * per2, h1 = 24 + n * per1;
	size_t at = full - h2; /* the history bytes end the state */
	cr_assert_eq(b[at] | b[at + 1] << 8, 2, "history version 2");
	uint8_t *v = malloc(at + h1);
	memcpy(v, b, at + 24);
	v[at] = 1;
	for (size_t i = 0; i < n; i++)
		memcpy(v + at + 24 + i * per1, b + at + 24 + 16 + 8 * (size_t)o->ntop + i * per2,
		       per1);
	for (int k = 0; k < 8; k++) { /* the section's length, then the payload's */
		v[at - 8 + k] = (uint8_t)((uint64_t)h1 >> (8 * k));
		v[8 + k] = (uint8_t)((uint64_t)(at + h1 - 24) >> (8 * k));
	}
	*len = at + h1;
	fix_checksum(v, *len);
	free(b);
	return v;
}

Test(stream, history_without_metric_sums_still_loads_and_gains_them)
{
	make_data();
	eng_extra_opts x = xopts(5);
	eng_stream *s = xstepped(&x, 1000);
	size_t len;
	uint8_t *v1 = as_history_v1(s, &len);
	eng_stream *r = NULL;
	eng_error err;
	cr_assert_eq(eng_stream_deserialize(&r, v1, len, SIZE_MAX, &err), 0, "%s", err.msg);
	cr_assert_eq(eng_stream_history_size(r), XSTEPS);
	cr_assert_null(eng_stream_history_extra_opts(r));
	for (size_t i = 0; i < XSTEPS; i++) {
		eng_history_point p, q;
		eng_stream_history_get(&p, s, i);
		eng_stream_history_get(&q, r, i);
		cr_assert(p.step == q.step && p.count == q.count && p.correct == q.correct &&
		          p.loss_sum == q.loss_sum && p.weight_sum == q.weight_sum);
	}
	/* a new step brings the sums: old points hold zeros (nothing measured) */
	eng_stream_config cfg = xcfg(ENG_STREAM_BINNED);
	eng_stream *b = xbatch(&cfg, &x, 0, N / 2);
	cr_assert_eq(eng_stream_set_step(b, 9), 0);
	cr_assert_eq(eng_stream_merge(r, b, &err), 0, "%s", err.msg);
	eng_stream_free(b);
	const eng_extra_opts *o = eng_stream_history_extra_opts(r);
	cr_assert_not_null(o);
	eng_extra_result *got = eng_extra_result_new(o);
	for (size_t i = 0; i < XSTEPS; i++) {
		eng_stream_history_extra(got, r, i);
		cr_assert_eq(got->top_count, 0);
		cr_assert_eq(got->calib_count, 0);
		cr_assert_eq(got->calib_weight, 0.0);
	}
	eng_stream_history_extra(got, r, XSTEPS);
	eng_loss_result *want = xloss(&x, 0, N / 2);
	same_extra(got, want->extra);
	/* and the mixed series round-trips as version 2 */
	size_t l2, l3;
	uint8_t *b2 = ser(r, &l2);
	eng_stream *r2 = NULL;
	cr_assert_eq(eng_stream_deserialize(&r2, b2, l2, SIZE_MAX, &err), 0, "%s", err.msg);
	uint8_t *b3 = ser(r2, &l3);
	cr_assert(l2 == l3 && memcmp(b2, b3, l2) == 0);
	free(b3);
	free(b2);
	eng_stream_free(r2);
	eng_loss_result_free(want);
	eng_extra_result_free(got);
	eng_stream_free(r);
	free(v1);
	eng_stream_free(s);
}

/* Metric sums that disagree with their point are refused, checksum or not. */
Test(stream, history_metric_sums_are_checked_on_read)
{
	make_data();
	eng_extra_opts x = xopts(3);
	eng_stream *s = xstepped(&x, 1000);
	size_t len, n = eng_stream_history_size(s);
	uint8_t *b = ser(s, &len);
	size_t per1 = 64 + 8 * C, ni = 2 + 3 + 3, nd = 4 + 9, per2 = per1 + 8 * (ni + nd);
	size_t first = len - n * per2;          /* point 0 */
	size_t slots[] = {first + per1 + 8 * 0, /* top_correct[0] */
	                  first + per1 + 8 * 2, /* top_count */
	                  first + per1 + 8 * 4, /* calib_count */
	                  first + per1 + 8 * ni + 8 * 3 /* calib_weight (f64) */};
	for (size_t k = 0; k < sizeof slots / sizeof *slots; k++) {
		uint8_t *c = malloc(len);
		memcpy(c, b, len);
		c[slots[k] + 7] ^= 0x40; /* a huge count, or a huge / NaN-ish double */
		fix_checksum(c, len);
		eng_stream *r = NULL;
		eng_error err;
		cr_assert_eq(eng_stream_deserialize(&r, c, len, SIZE_MAX, &err), ENG_ESTATE,
		             "slot %zu", k);
		cr_assert_null(r);
		free(c);
	}
	for (size_t cut = 1; cut < 200; cut += 7) {
		eng_stream *r = NULL;
		cr_assert_neq(eng_stream_deserialize(&r, b, len - cut, SIZE_MAX, NULL), 0);
	}
	free(b);
	eng_stream_free(s);
}

/* eng_stream_merge_check answers what eng_stream_merge would, with the
 * same message, without changing either stream; and its cap is the one
 * it is given, not dst's. */
static void check_as_merge(eng_stream *dst, const eng_stream *src, size_t cap, int want)
{
	size_t l0, l1;
	void *b0 = ser(dst, &l0);
	eng_error ce, me;
	memset(&ce, 0, sizeof ce);
	memset(&me, 0, sizeof me);
	int rc = eng_stream_merge_check(dst, src, cap, &ce);
	void *b1 = ser(dst, &l1);
	cr_assert(l0 == l1 && memcmp(b0, b1, l0) == 0, "the check changed the stream");
	cr_assert_eq(rc, want, "check: %d (%s), want %d", rc, ce.msg, want);
	eng_stream_set_max_bytes(dst, cap);
	cr_assert_eq(eng_stream_merge(dst, src, &me), want, "merge: %s", me.msg);
	cr_assert_str_eq(ce.msg, me.msg);
	free(b0);
	free(b1);
}

Test(stream, merge_check_answers_as_merge)
{
	make_data();
	eng_error err;
	int rc;
	/* fine, for every method: the merge then goes through */
	eng_stream_method ms[] = {ENG_STREAM_EXACT, ENG_STREAM_BINNED, ENG_STREAM_SKETCH};
	for (int i = 0; i < 3; i++) {
		eng_stream *s = new_stream(ms[i], ENG_LABELS_BINARY, ENG_CURVE_ROC);
		eng_stream *b = new_stream(ms[i], ENG_LABELS_BINARY, ENG_CURVE_ROC);
		add_rows(s, ENG_LABELS_BINARY, 0, 100, true);
		add_rows(b, ENG_LABELS_BINARY, 100, 200, false);
		check_as_merge(s, b, SIZE_MAX, 0);
		eng_stream_counts cnt;
		eng_stream_counts_of(&cnt, s);
		cr_assert_eq(cnt.rows, 200);
		eng_stream_free(b);
		eng_stream_free(s);
	}
	/* configs that differ */
	eng_stream *a = new_stream(ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	eng_stream *p = new_stream(ENG_STREAM_BINNED, ENG_LABELS_BINARY, ENG_CURVE_PR);
	add_rows(p, ENG_LABELS_BINARY, 0, 50, false);
	check_as_merge(a, p, SIZE_MAX, ENG_ESTATE);
	eng_stream_free(a);
	eng_stream_free(p);
	/* weight sums that would overflow, for every method */
	double y2[] = {1, 0}, s2[] = {0.2, 0.5}, w2[] = {1.7e308, 1};
	for (int i = 0; i < 3; i++) {
		eng_stream *s = new_stream(ms[i], ENG_LABELS_BINARY, ENG_CURVE_ROC);
		eng_stream *b = batch_of(eng_stream_config_of(s), y2, s2, w2, 2, NULL, &rc, &err);
		cr_assert_eq(rc, 0, "%s", err.msg);
		check_as_merge(s, b, SIZE_MAX, 0);
		check_as_merge(s, b, SIZE_MAX, ENG_ENONFINITE);
		eng_stream_free(b);
		eng_stream_free(s);
	}
	/* an exact stream's rows past the cap given: refused at 16 * 200
	 * bytes although the stream's own cap is far larger */
	eng_stream *e = new_stream(ENG_STREAM_EXACT, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	eng_stream *eb = new_stream(ENG_STREAM_EXACT, ENG_LABELS_BINARY, ENG_CURVE_ROC);
	add_rows(e, ENG_LABELS_BINARY, 0, 200, false);
	add_rows(eb, ENG_LABELS_BINARY, 200, 400, false);
	eng_error ce;
	cr_assert_eq(eng_stream_merge_check(e, eb, SIZE_MAX, &ce), 0, "%s", ce.msg);
	check_as_merge(e, eb, 16 * 200, ENG_ELIMIT);
	eng_stream_free(eb);
	eng_stream_free(e);
	/* loss sums that would overflow */
	eng_stream_config cfg;
	eng_stream *l, *lb;
	eng_loss_result *lr;
	mse_near_overflow(&cfg, &l, &lb, &lr);
	check_as_merge(l, lb, SIZE_MAX, 0);
	check_as_merge(l, lb, SIZE_MAX, ENG_ENONFINITE);
	eng_loss_result_free(lr);
	eng_stream_free(lb);
	eng_stream_free(l);
	/* extra sums of another layout */
	eng_stream_config xc = xcfg(ENG_STREAM_SKETCH);
	eng_extra_opts x5 = xopts(5), x6 = xopts(6);
	eng_stream *xs = NULL, *x1 = xbatch(&xc, &x5, 0, 50), *x2 = xbatch(&xc, &x6, 50, 100);
	cr_assert_eq(eng_stream_new(&xs, &xc, &err), 0);
	check_as_merge(xs, x1, SIZE_MAX, 0);
	check_as_merge(xs, x2, SIZE_MAX, ENG_ESTATE);
	eng_stream_free(x1);
	eng_stream_free(x2);
	eng_stream_free(xs);
}
