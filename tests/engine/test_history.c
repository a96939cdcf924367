/*
 * test_history.c - engine/src/history.c: step-tagged batches add into a
 * stream's step series point by point, in any order; retention merges
 * neighbours with exact totals; reset keeps the series; the bytes
 * round-trip and damaged ones are refused.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/history.h"
#include "lossd/stream.h"

static eng_stream *empty_stream(int64_t columns)
{
	eng_stream_config cfg = ENG_STREAM_CONFIG_INIT;
	eng_stream *s = NULL;
	cfg.method = ENG_STREAM_EXACT;
	if (columns > 1) {
		cfg.kind = ENG_LABELS_CLASS_ID;
		cfg.columns = columns;
	}
	cr_assert_eq(eng_stream_new(&s, &cfg, NULL), 0);
	return s;
}

/* A one-batch stream of n rows (labels y, scores on a grid) at step. */
static eng_stream *batch(const eng_stream *like, int64_t step, int n, int seed)
{
	double y[16], sc[16 * 3];
	const eng_stream_config *cfg = eng_stream_config_of(like);
	int64_t C = cfg->columns;
	for (int i = 0; i < n; i++) {
		y[i] = (double)((i * 7 + seed) % (C > 1 ? C : 2));
		for (int64_t c = 0; c < (C > 1 ? C : 1); c++)
			sc[i * (C > 1 ? C : 1) + c] = (double)((i * 5 + seed + (int)c) % 8) / 8.0;
	}
	eng_tensor yt = {ENG_F64, 1, {n}, n, y};
	eng_tensor ys = C > 1 ? (eng_tensor){ENG_F64, 2, {n, C}, n * C, sc}
	                      : (eng_tensor){ENG_F64, 1, {n}, n, sc};
	eng_stream *b = NULL;
	cr_assert_eq(eng_stream_batch(&b, cfg, &yt, &ys, NULL, NULL, NULL), 0);
	cr_assert_eq(eng_stream_set_step(b, step), 0);
	return b;
}

static void add(eng_stream *s, eng_stream *b)
{
	cr_assert_eq(eng_stream_merge(s, b, NULL), 0);
	eng_stream_free(b);
}

Test(history, a_stream_without_steps_has_no_series_and_no_extra_bytes)
{
	eng_stream *s = empty_stream(1);
	eng_stream *b = NULL;
	double y[2] = {0, 1}, sc[2] = {0.2, 0.7};
	eng_tensor yt = {ENG_F64, 1, {2}, 2, y}, ys = {ENG_F64, 1, {2}, 2, sc};
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, NULL, NULL, NULL), 0);
	add(s, b);
	cr_assert_eq(eng_stream_history_size(s), 0);
	eng_stream_free(s);
}

Test(history, equal_steps_add_up_in_any_order)
{
	eng_stream *s = empty_stream(3);
	int64_t steps[] = {5, 1, 5, 9, 1, 3, 9, 9};
	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++)
		add(s, batch(s, steps[i], 4 + (int)i, (int)i));
	cr_assert_eq(eng_stream_history_size(s), 4);
	int64_t want_step[] = {1, 3, 5, 9}, want_updates[] = {2, 1, 2, 3};
	int64_t rows = 0;
	for (size_t i = 0; i < 4; i++) {
		eng_history_point p;
		eng_stream_history_get(&p, s, i);
		cr_assert_eq(p.step, want_step[i]);
		cr_assert_eq(p.step_end, want_step[i]);
		cr_assert_eq(p.updates, want_updates[i]);
		int64_t pos = 0;
		for (int c = 0; c < 3; c++)
			pos += p.positives[c];
		cr_assert_eq(pos, p.count, "class ids: each row is positive for one class");
		rows += p.count;
	}
	eng_stream_counts c;
	eng_stream_counts_of(&c, s);
	cr_assert_eq(rows, c.rows);
	cr_assert_eq(eng_stream_history_find(s, 4), 2);
	cr_assert_eq(eng_stream_history_find(s, 10), 4);
	eng_stream_free(s);
}

Test(history, retention_merges_neighbours_exactly)
{
	eng_stream *s = empty_stream(1);
	eng_stream_set_history_max(s, 8);
	int64_t rows = 0, updates = 0;
	for (int64_t st = 0; st < 100; st++) {
		eng_stream *b = batch(s, st * 3, 1 + (int)(st % 5), (int)st);
		eng_stream_counts c;
		eng_stream_counts_of(&c, b);
		rows += c.rows;
		updates++;
		add(s, b);
		cr_assert_leq(eng_stream_history_size(s), 8);
	}
	/* a late step inside a range goes into that range */
	add(s, batch(s, 4, 2, 9));
	rows += 2;
	updates++;
	size_t n = eng_stream_history_size(s);
	int64_t got_rows = 0, got_updates = 0, prev_end = -1;
	for (size_t i = 0; i < n; i++) {
		eng_history_point p;
		eng_stream_history_get(&p, s, i);
		cr_assert_gt(p.step, prev_end);
		cr_assert_leq(p.step, p.step_end);
		prev_end = p.step_end;
		got_rows += p.count;
		got_updates += p.updates;
	}
	cr_assert_eq(got_rows, rows);
	cr_assert_eq(got_updates, updates);
	eng_stream_free(s);
}

Test(history, reset_keeps_the_series_and_bytes_round_trip)
{
	eng_stream *s = empty_stream(1);
	for (int64_t st = 0; st < 10; st++)
		add(s, batch(s, st, 3, (int)st));
	cr_assert_eq(eng_stream_reset(s), 0);
	cr_assert_eq(eng_stream_history_size(s), 10);
	void *a = NULL;
	size_t la = 0;
	cr_assert_eq(eng_stream_serialize(&a, &la, s), 0);
	eng_stream *r = NULL;
	cr_assert_eq(eng_stream_deserialize(&r, a, la, SIZE_MAX, NULL), 0);
	cr_assert_eq(eng_stream_history_size(r), 10);
	void *b = NULL;
	size_t lb = 0;
	cr_assert_eq(eng_stream_serialize(&b, &lb, r), 0);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(a, b, la), 0);
	/* a merged copy doubles every point (replicas: equal steps add up) */
	cr_assert_eq(eng_stream_merge(r, s, NULL), 0);
	for (size_t i = 0; i < 10; i++) {
		eng_history_point p, q;
		eng_stream_history_get(&p, s, i);
		eng_stream_history_get(&q, r, i);
		cr_assert_eq(q.count, 2 * p.count);
		cr_assert_eq(q.updates, 2 * p.updates);
	}
	free(b);
	free(a);
	eng_stream_free(r);
	eng_stream_free(s);
}

Test(history, damaged_bytes_are_refused)
{
	eng_stream *s = empty_stream(1);
	for (int64_t st = 0; st < 4; st++)
		add(s, batch(s, st, 3, (int)st));
	uint8_t *a = NULL;
	size_t la = 0;
	cr_assert_eq(eng_stream_serialize((void **)&a, &la, s), 0);
	/* Every truncation into the trailing section is refused. */
	for (size_t cut = 1; cut < 64; cut++) {
		eng_stream *r = NULL;
		eng_error err;
		cr_assert_neq(eng_stream_deserialize(&r, a, la - cut, SIZE_MAX, &err), 0);
		cr_assert_null(r);
	}
	free(a);
	eng_stream_free(s);
}

Test(history, bad_steps_are_refused)
{
	eng_stream *s = empty_stream(1);
	eng_stream *b = batch(s, 0, 2, 0);
	cr_assert_eq(eng_stream_set_step(b, 1), ENG_EINVAL, "already tagged");
	eng_stream_free(b);
	double y[1] = {1}, sc[1] = {0.5};
	eng_tensor yt = {ENG_F64, 1, {1}, 1, y}, ys = {ENG_F64, 1, {1}, 1, sc};
	cr_assert_eq(eng_stream_batch(&b, eng_stream_config_of(s), &yt, &ys, NULL, NULL, NULL), 0);
	cr_assert_eq(eng_stream_set_step(b, -1), ENG_EINVAL);
	eng_stream_free(b);
	eng_stream_free(s);
}

Test(history, empty_copy_is_the_reset_state_and_leaves_the_stream_alone)
{
	eng_stream *s = empty_stream(3);
	for (int64_t st = 0; st < 6; st++)
		add(s, batch(s, st, 4, (int)st));
	void *before = NULL, *copy = NULL, *reset = NULL;
	size_t lbefore = 0, lcopy = 0, lreset = 0;
	cr_assert_eq(eng_stream_serialize(&before, &lbefore, s), 0);
	eng_stream *e = NULL;
	cr_assert_eq(eng_stream_empty_copy(&e, s), 0);
	cr_assert_eq(eng_stream_serialize(&copy, &lcopy, e), 0);
	void *again = NULL;
	size_t lagain = 0;
	cr_assert_eq(eng_stream_serialize(&again, &lagain, s), 0);
	cr_assert(lagain == lbefore && memcmp(again, before, lbefore) == 0, "s changed");
	cr_assert_eq(eng_stream_reset(s), 0);
	cr_assert_eq(eng_stream_serialize(&reset, &lreset, s), 0);
	cr_assert_eq(eng_stream_history_size(e), 6);
	cr_assert(lcopy == lreset && memcmp(copy, reset, lcopy) == 0,
	          "the copy is not the reset state");
	cr_assert(lcopy != lbefore || memcmp(copy, before, lcopy) != 0, "nothing was emptied");
	free(before);
	free(again);
	free(copy);
	free(reset);
	eng_stream_free(e);
	eng_stream_free(s);
}
