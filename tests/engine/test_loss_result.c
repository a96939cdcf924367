/*
 * test_loss_result.c - the additive result of engine/src/loss.c: merge,
 * value under each reduction, and the promise that results do not depend
 * on how tasks are run (a fake eng_parallel runs them in reverse order).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lossd/loss.h"
#include "loss_helpers.h"

/* Runs the tasks last to first: any order dependence shows up. */
static void reverse_for_each(const eng_parallel *self, int64_t n, eng_task_fn fn, void *arg)
{
	int *calls = self->impl;
	(*calls)++;
	for (int64_t t = n - 1; t >= 0; t--)
		fn(arg, t);
}

static bool same_result(const eng_loss_result *a, const eng_loss_result *b)
{
	if (memcmp(&a->wloss_sum, &b->wloss_sum, sizeof(double)) ||
	    memcmp(&a->weight_sum, &b->weight_sum, sizeof(double)) || a->count != b->count ||
	    a->correct != b->correct || a->ignored != b->ignored || a->nclasses != b->nclasses)
		return false;
	if (a->nclasses &&
	    memcmp(a->per_class, b->per_class, sizeof(eng_loss_class) * (size_t)a->nclasses))
		return false;
	if (a->conf_n &&
	    memcmp(a->confusion, b->confusion, sizeof(int64_t) * (size_t)(a->conf_n * a->conf_n)))
		return false;
	if (a->per_position &&
	    memcmp(a->per_position, b->per_position, sizeof(double) * (size_t)a->pos_size))
		return false;
	return true;
}

/* One loss kind on generated data, serial vs reversed parallel. */
static void check_kind(eng_loss_kind kind, bool logits, int axis)
{
	enum { N = 3000, C = 37 };
	float *x = malloc(sizeof(float) * N * C), *yd = malloc(sizeof(float) * N * C);
	int32_t *yl = malloc(sizeof(int32_t) * N);
	double *sw = malloc(sizeof(double) * N);
	cr_assert(x && yd && yl && sw);
	for (int i = 0; i < N * C; i++) {
		x[i] = logits ? (float)(sin(i * 0.37) * 5)
		              : (float)(0.01 + fabs(sin(i * 0.37)) * 0.98);
		yd[i] = (i % C == (i / C) % C) ? 1.0f : 0.0f;
	}
	for (int i = 0; i < N; i++) {
		yl[i] = i % 11 == 0 ? -100 : (i * 13) % C;
		sw[i] = 0.5 + (i % 7) * 0.25;
	}
	eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
	eng_tensor yt;
	if (kind == ENG_LOSS_SPARSE_CE)
		yt = tens(ENG_I32, yl, 1, I64(N));
	else if (kind == ENG_LOSS_GAUSSIAN_MIXTURE || eng_loss_is_binary(kind) ||
	         kind == ENG_LOSS_MSE)
		yt = tens(ENG_F32, yd, 2, I64(N), I64(C));
	else
		yt = tens(ENG_F32, yd, 2, I64(N), I64(C));
	eng_tensor swt = tens(ENG_F64, sw, 1, I64(N));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.kind = kind;
	o.from_logits = logits;
	o.axis = axis;
	o.sample_weight = &swt;
	o.confusion = eng_loss_is_categorical(kind);
	o.per_position = true;
	if (kind == ENG_LOSS_SPARSE_CE) {
		o.has_ignore_class = true;
		o.ignore_class = -100;
	}
	if (axis == 0) { /* (C, N) view of the same buffer for the strided path */
		yp = tens(ENG_F32, x, 2, I64(C), I64(N));
	}
	int calls = 0;
	eng_parallel par = {reverse_for_each, 2, &calls};
	eng_loss_result *a = NULL, *b = NULL;
	eng_error err = {0};
	cr_assert_eq(eng_loss_compute(&a, &yt, &yp, &o, NULL, &err), 0, "%s", err.msg);
	cr_assert_eq(eng_loss_compute(&b, &yt, &yp, &o, &par, &err), 0, "%s", err.msg);
	cr_expect_eq(calls, 1, "the parallel hook was used (more than one task)");
	cr_expect(same_result(a, b), "kind %d: serial and reversed-parallel results differ", kind);
	eng_loss_result_free(a);
	eng_loss_result_free(b);
	free(x);
	free(yd);
	free(yl);
	free(sw);
}

Test(result, parallel_equals_serial_sparse_fast_path)
{
	check_kind(ENG_LOSS_SPARSE_CE, true, -1);
}

Test(result, parallel_equals_serial_sparse_strided)
{
	check_kind(ENG_LOSS_SPARSE_CE, true, 0);
}

Test(result, parallel_equals_serial_other_kinds)
{
	check_kind(ENG_LOSS_CATEGORICAL_CE, false, -1);
	check_kind(ENG_LOSS_CATEGORICAL_FOCAL, true, -1);
	check_kind(ENG_LOSS_KL, false, -1);
	check_kind(ENG_LOSS_BINARY_CE, true, -1);
	check_kind(ENG_LOSS_BINARY_FOCAL, false, -1);
	check_kind(ENG_LOSS_HUBER, false, -1);
}

Test(result, first_error_is_deterministic_across_orders)
{
	enum { N = 5000, C = 20 };
	static float x[N * C];
	static int32_t y[N];
	for (int i = 0; i < N * C; i++)
		x[i] = (float)(i % 5);
	for (int i = 0; i < N; i++)
		y[i] = i % C;
	y[1234] = C; /* two bad labels in different tasks: the first one wins */
	y[4321] = -3;
	eng_tensor yt = tens(ENG_I32, y, 1, I64(N));
	eng_tensor yp = tens(ENG_F32, x, 2, I64(N), I64(C));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	int calls = 0;
	eng_parallel par = {reverse_for_each, 2, &calls};
	eng_loss_result *r = NULL;
	eng_error err = {0};
	cr_expect_eq(eng_loss_compute(&r, &yt, &yp, &o, &par, &err), ENG_ELABEL);
	cr_expect_eq(err.index, 1234);
	cr_expect_null(r);
}

Test(result, merge_adds_and_value_reduces)
{
	double ya[] = {0, 1, 2}, pa[] = {1, 2, 3, 3, 2, 1, 0, 0, 5};
	double yb[] = {2, 2}, pb[] = {1, 1, 1, 4, 0, 0};
	eng_tensor ta = tens(ENG_F64, ya, 1, I64(3)), tpa = tens(ENG_F64, pa, 2, I64(3), I64(3));
	eng_tensor tb = tens(ENG_F64, yb, 1, I64(2)), tpb = tens(ENG_F64, pb, 2, I64(2), I64(3));
	double ball[] = {0, 1, 2, 2, 2}, pall[15];
	memcpy(pall, pa, sizeof pa);
	memcpy(pall + 9, pb, sizeof pb);
	eng_tensor tall = tens(ENG_F64, ball, 1, I64(5)),
	           tpall = tens(ENG_F64, pall, 2, I64(5), I64(3));
	eng_loss_opts o = ENG_LOSS_OPTS_INIT;
	o.from_logits = true;
	o.confusion = true;
	eng_loss_result *a, *b, *all, *acc = eng_loss_result_new(ENG_LOSS_SPARSE_CE, 3, 3);
	eng_error err;
	cr_assert_not_null(acc);
	cr_assert_eq(eng_loss_compute(&a, &ta, &tpa, &o, NULL, &err), 0);
	cr_assert_eq(eng_loss_compute(&b, &tb, &tpb, &o, NULL, &err), 0);
	cr_assert_eq(eng_loss_compute(&all, &tall, &tpall, &o, NULL, &err), 0);
	double v;
	cr_expect_not(eng_loss_result_value(acc, ENG_RED_MEAN, &v), "empty mean: undefined");
	cr_expect(isnan(v));
	cr_expect(eng_loss_result_value(acc, ENG_RED_SUM, &v), "empty sum: 0");
	cr_expect_eq(v, 0.0);
	cr_expect_eq(eng_loss_result_merge(acc, a), 0);
	cr_expect_eq(eng_loss_result_merge(acc, b), 0);
	cr_expect_eq(acc->count, 5);
	cr_expect_eq(acc->correct, all->correct);
	for (int red = 0; red < 3; red++) {
		double x1, x2;
		cr_expect(eng_loss_result_value(acc, (eng_reduction)red, &x1));
		cr_expect(eng_loss_result_value(all, (eng_reduction)red, &x2));
		cr_expect(fabs(x1 - x2) <= 1e-12 * fabs(x2), "reduction %d", red);
	}
	cr_expect_not(eng_loss_result_value(acc, ENG_RED_NONE, &v));
	for (int i = 0; i < 9; i++)
		cr_expect_eq(acc->confusion[i], all->confusion[i]);
	for (int c = 0; c < 3; c++)
		cr_expect_eq(acc->per_class[c].support, all->per_class[c].support);
	eng_loss_result *other = eng_loss_result_new(ENG_LOSS_SPARSE_CE, 4, 0);
	cr_expect_eq(eng_loss_result_merge(acc, other), ENG_ESTATE);
	cr_expect_eq(acc->count, 5, "a refused merge changes nothing");
	eng_loss_result_free(other);
	eng_loss_result_free(a);
	eng_loss_result_free(b);
	eng_loss_result_free(all);
	eng_loss_result_free(acc);
	eng_loss_result_free(NULL);
}

Test(result, names_round_trip)
{
	for (int k = 0; k < ENG_LOSS__COUNT; k++) {
		eng_loss_kind back;
		cr_assert_not_null(eng_loss_kind_name((eng_loss_kind)k));
		cr_expect_eq(eng_loss_kind_parse(&back, eng_loss_kind_name((eng_loss_kind)k)), 0);
		cr_expect_eq(back, (eng_loss_kind)k);
	}
	eng_loss_kind k;
	cr_expect_eq(eng_loss_kind_parse(&k, "softmax"), ENG_EINVAL);
	eng_reduction r;
	cr_expect_eq(eng_reduction_parse(&r, "sum_over_batch_size"), 0);
	cr_expect_eq(r, ENG_RED_SUM_OVER_BATCH_SIZE);
	cr_expect_eq(eng_reduction_parse(&r, "avg"), ENG_EINVAL);
}
