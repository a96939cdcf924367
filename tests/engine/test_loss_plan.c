/*
 * test_loss_plan.c - the loss driven a range of tasks at a time
 * (eng_loss_plan_*, engine/src/loss.c): what its partial tables weigh
 * before they are asked for (eng_loss_plan_table_bytes), and that the
 * plan answers as eng_loss_compute whatever was run early.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/loss.h"

static eng_tensor view(eng_dtype dt, const void *data, int ndim, int64_t d0, int64_t d1)
{
	eng_tensor t = {dt, ndim, {d0, d1}, ndim == 1 ? d0 : d0 * d1, data};
	return t;
}

/* sparse CE of (rows, c) logits and labels r % c */
typedef struct sparse {
	double *x;
	int64_t *y;
	eng_tensor yt, yp;
} sparse;

static void sparse_new(sparse *s, int64_t rows, int64_t c)
{
	s->x = malloc((size_t)(rows * c) * sizeof *s->x);
	s->y = malloc((size_t)rows * sizeof *s->y);
	cr_assert(s->x && s->y);
	for (int64_t i = 0; i < rows * c; i++)
		s->x[i] = (double)(i % 17) / 5.0 - 1.5;
	for (int64_t r = 0; r < rows; r++)
		s->y[r] = r % c;
	s->yt = view(ENG_I64, s->y, 1, rows, 0);
	s->yp = view(ENG_F64, s->x, 2, rows, c);
}

static void sparse_free(sparse *s)
{
	free(s->x);
	free(s->y);
}

Test(loss_plan, table_bytes_grow_with_what_is_asked)
{
	sparse s;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_extra_opts x = ENG_EXTRA_OPTS_INIT;
	sparse_new(&s, 8192, 32);
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	o.per_class = false;
	int64_t plain = eng_loss_plan_table_bytes(&s.yt, &s.yp, &o);
	cr_assert_gt(plain, 0);
	o.per_class = true;
	int64_t per_class = eng_loss_plan_table_bytes(&s.yt, &s.yp, &o);
	cr_assert_geq(per_class, plain);
	o.confusion = true;
	int64_t conf = eng_loss_plan_table_bytes(&s.yt, &s.yp, &o);
	/* at least one task's 32 x 32 counts more */
	cr_assert_geq(conf, per_class + 32 * 32 * (int64_t)sizeof(int64_t));
	x.bins = 100;
	o.extra = &x;
	int64_t bins = eng_loss_plan_table_bytes(&s.yt, &s.yp, &o);
	cr_assert_gt(bins, conf);
	sparse_free(&s);
}

Test(loss_plan, table_bytes_bounded_for_many_classes)
{
	sparse s;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	sparse_new(&s, 64, 100000); /* 6.4 M logits, 100,000 per-class rows a task */
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	int64_t b = eng_loss_plan_table_bytes(&s.yt, &s.yp, &o);
	cr_assert_geq(b, (int64_t)100000 * 8, "%lld", (long long)b);
	cr_assert_leq(b, (int64_t)33 << 20, "%lld", (long long)b); /* the plan's ~32 MiB cut */
	sparse_free(&s);
}

Test(loss_plan, table_bytes_refuses_what_the_plan_refuses)
{
	sparse s;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_plan *pl = NULL;
	eng_error err = {0};
	sparse_new(&s, 100, 8);
	o.kind = ENG_LOSS_SPARSE_CE;
	s.yt.shape[0] = s.yt.size = 99; /* one label short */
	cr_assert_eq(eng_loss_plan_table_bytes(&s.yt, &s.yp, &o), -1);
	cr_assert_neq(eng_loss_plan_new(&pl, &s.yt, &s.yp, &o, &err), 0);
	cr_assert_null(pl);
	s.yt.shape[0] = s.yt.size = 100;
	o.axis = 3; /* past y_pred's rank */
	cr_assert_eq(eng_loss_plan_table_bytes(&s.yt, &s.yp, &o), -1);
	sparse_free(&s);
}

/* Tasks run a few at a time, then the rest: the same result as at once. */
Test(loss_plan, early_tasks_answer_as_compute)
{
	sparse s;
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	eng_loss_plan *pl = NULL;
	eng_loss_result *a = NULL, *b = NULL;
	eng_error err = {0};
	sparse_new(&s, 8192, 32);
	o.kind = ENG_LOSS_SPARSE_CE;
	o.from_logits = true;
	o.confusion = true;
	cr_assert_eq(eng_loss_compute(&a, &s.yt, &s.yp, &o, NULL, &err), 0);
	cr_assert_eq(eng_loss_plan_new(&pl, &s.yt, &s.yp, &o, &err), 0);
	cr_assert_gt(eng_loss_plan_tasks(pl), 1);
	eng_loss_plan_run(pl, eng_loss_plan_tasks(pl) / 2);
	cr_assert_eq(eng_loss_plan_done(pl), eng_loss_plan_tasks(pl) / 2);
	cr_assert_eq(eng_loss_plan_finish(&b, pl, NULL, &err), 0);
	cr_assert(memcmp(&a->wloss_sum, &b->wloss_sum, sizeof a->wloss_sum) == 0);
	cr_assert_eq(a->count, b->count);
	cr_assert(memcmp(a->confusion, b->confusion, 32 * 32 * sizeof *a->confusion) == 0);
	eng_loss_plan_free(pl);
	eng_loss_result_free(a);
	eng_loss_result_free(b);
	sparse_free(&s);
}
