/*
 * tensor.c - decoding a tensor field of a request (docs/API.md section 1).
 *
 * Three encodings mean the same thing: nested rectangular JSON arrays,
 * {"shape", "data"} (data flat or nested, row-major), and
 * {"shape", "dtype", "b64"} (little-endian raw values). A plain number is a
 * rank-0 tensor. JSON numbers decode to float64; b64 keeps its dtype, so a
 * float32 upload stays 4 bytes an element all the way into the engine.
 *
 * Why shaped so: the shape of nested arrays is read from the first element
 * at every level, then one iterative walk (no recursion; rank <= 8) checks
 * that every sub-array has that length and copies the leaves, so a ragged
 * or non-numeric element is reported with the JSON Pointer of exactly that
 * sub-array or element. Every element count is overflow-checked and charged
 * to the request's budget (*opts->budget) BEFORE the buffer is allocated,
 * so a 20-byte {"shape": [1e6, 1e6], ...} never allocates anything.
 *
 * Arrays the body's parse lifted (packed.c; opts->packed) arrive as
 * placeholders: one that is the whole tensor is viewed where it is, with no
 * copy; one met inside a nest (a ragged or over-deep request) is checked
 * against the expected shape and reported exactly as its JSON would be. A
 * lifted "b64" string is decoded straight from the body; a large payload
 * is split across opts->par's threads.
 *
 * Invariants: on success out->t.data is 64-byte aligned and non-NULL (also
 * for empty tensors); it views out->buf, owned by out, or, for a lifted
 * array, the api_packed table (out->buf NULL). On failure *out is
 * API_TENSOR_INIT and nothing is held. The budget is only decremented by
 * tensors that get decoded.
 *
 * In {"shape", "data"}, shape may be left out (data's own nested shape is
 * used) and a dtype is checked but data still decodes to float64.
 *
 * It does not interpret values (labels, probabilities): that is the engine's
 * job. It does not accept URL-safe or unpadded base64, nor whitespace in it.
 */
#include "lossd/api.h"
#include "b64.h"
#include "mem.h"
#include "packed.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define ALIGN      64
#define MAX_BUFFER ((size_t)1 << 40)

static const char *const tensor_keys[] = {"shape", "data", "dtype", "b64", NULL};
static const char *const dtype_names[] = {"float32", "float64", "int32", "int64", "uint8", NULL};
static const eng_dtype dtype_ids[] = {ENG_F32, ENG_F64, ENG_I32, ENG_I64, ENG_U8};

/* The field's name for details: the pointer without its leading '/'. */
static const char *name_of(const char *pointer)
{
	if (!pointer || !pointer[0])
		return "tensor";
	return pointer[0] == '/' ? pointer + 1 : pointer;
}

/* pointer + "/i0/i1/.../i(n-1)" */
static void index_pointer(char *buf, size_t cap, const char *pointer, const size_t *idx, int n)
{
	size_t len = (size_t)snprintf(buf, cap, "%s", pointer ? pointer : "");
	for (int i = 0; i < n && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "/%zu", idx[i]);
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
	size_t len = (size_t)snprintf(buf, cap, "[");
	for (int i = 0; i < ndim && len < cap; i++)
		len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "",
		                        (long long)shape[i]);
	if (len < cap)
		snprintf(buf + len, cap - len, "]");
}

static const api_packed *packed_of(const api_tensor_opts *opts)
{
	return opts ? opts->packed : NULL;
}

/* Charges n elements to the budget: 413 too_many_elements past it. */
static int charge(const api_tensor_opts *opts, int64_t n, const char *pointer, api_problem *p)
{
	if (!opts || !opts->budget)
		return 0;
	if (n > *opts->budget)
		return api_problem_set(
		        p, 413, "too_many_elements", pointer,
		        "%s has %lld elements, more than the %lld this request has left",
		        name_of(pointer), (long long)n,
		        (long long)(*opts->budget > 0 ? *opts->budget : 0));
	*opts->budget -= n;
	return 0;
}

/* A 64-byte aligned buffer of n elements of size esz (at least ALIGN bytes). */
static void *alloc_elems(int64_t n, size_t esz, const char *pointer, api_problem *p)
{
	size_t bytes;
	if (n < 0 || __builtin_mul_overflow((size_t)n, esz, &bytes) || bytes > SIZE_MAX - ALIGN) {
		api_problem_set(p, 413, "too_many_elements", pointer, "%s is too large",
		                name_of(pointer));
		return NULL;
	}
	bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
	/* Past 1 TiB no allocator will succeed; don't ask (sanitizers abort). */
	void *b = bytes <= MAX_BUFFER ? api__aligned_alloc(ALIGN, bytes ? bytes : ALIGN) : NULL;
	if (!b)
		api_problem_set(p, 503, "out_of_memory", pointer, "out of memory decoding %s",
		                name_of(pointer));
	return b;
}

static void set_view(api_tensor *out, eng_dtype dt, int ndim, const int64_t *shape, int64_t size,
                     void *buf)
{
	out->buf = buf;
	out->t.dtype = dt;
	out->t.ndim = ndim;
	memset(out->t.shape, 0, sizeof out->t.shape);
	for (int i = 0; i < ndim; i++)
		out->t.shape[i] = shape[i];
	out->t.size = size;
	out->t.data = buf;
}

/* ---- nested arrays ---------------------------------------------------------------- */

static int elem_error(const json_t *e, const char *pointer, const size_t *idx, int n,
                      api_problem *p)
{
	char ptr[sizeof p->pointer];
	index_pointer(ptr, sizeof ptr, pointer, idx, n);
	if (json_is_array(e))
		return api_problem_set(
		        p, 422, "shape_mismatch", ptr,
		        "%s is ragged: %s is an array where the first row has a number",
		        name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr);
	return api_problem_set(p, 422, "bad_type", ptr, "%s must hold numbers only, but %s is %s",
	                       name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr,
	                       json_is_string(e)    ? "a string"
	                       : json_is_object(e)  ? "an object"
	                       : json_is_boolean(e) ? "a boolean"
	                                            : "null");
}

/*
 * Walks the nested array v of the given shape: checks that every sub-array
 * has its dimension's length and every leaf is a number, and copies the
 * leaves to dst in row-major order unless dst is NULL (a check only).
 * Iterative: rank <= ENG_MAX_RANK levels of state, no recursion.
 */
/*
 * A lifted array met at tree level `level` (idx[0..level) is its path)
 * where shape[level..rank) is expected: 0 when it fits, or -1 with the
 * problem the walk below would report for the same values as JSON.
 */
static int pack_fits(const api__pack *e, const int64_t *shape, int rank, int level,
                     const size_t *idx, const char *pointer, api_problem *p)
{
	size_t path[ENG_MAX_RANK];
	char ptr[sizeof p->pointer];
	char sh[96];
	int k = rank - level;

	memcpy(path, idx, (size_t)level * sizeof path[0]);
	for (int j = 0;; j++) {
		if (j == k && j == e->rank)
			return 0;
		if (j < k)
			path[level + j] = 0;
		if (j == k) { /* an array where the leaf row has numbers */
			index_pointer(ptr, sizeof ptr, pointer, path, level + j);
			return api_problem_set(
			        p, 422, "shape_mismatch", ptr,
			        "%s is ragged: %s is an array where the first row has a number",
			        name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr);
		}
		index_pointer(ptr, sizeof ptr, pointer, path, level + j);
		shape_str(sh, sizeof sh, shape, rank);
		if (j == e->rank)
			return api_problem_set(p, 422, "shape_mismatch", ptr,
			                       "%s is ragged: %s is a number, expected an array "
			                       "(shape %s from the first elements)",
			                       name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr, sh);
		if (e->shape[j] != shape[level + j])
			return api_problem_set(p, 422, "shape_mismatch", ptr,
			                       "%s is ragged: %s has %lld elements, expected %lld "
			                       "(shape %s from the first elements)",
			                       name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr,
			                       (long long)e->shape[j], (long long)shape[level + j],
			                       sh);
	}
}

static int walk(json_t *v, const int64_t *shape, int rank, double *dst, const char *pointer,
                const api_packed *pk, api_problem *p)
{
	json_t *arrs[ENG_MAX_RANK];
	size_t idx[ENG_MAX_RANK];
	char ptr[sizeof p->pointer];
	char sh[96];
	int level = 0;

	arrs[0] = v;
	idx[0] = 0;
	for (;;) {
		if (level == rank - 1) {
			json_t *a = arrs[level];
			size_t n = (size_t)shape[level];
			for (size_t i = 0; i < n; i++) {
				json_t *e = json_array_get(a, i);
				double x;
				if (json_is_integer(e)) {
					x = (double)json_integer_value(e);
				} else if (json_is_real(e)) {
					x = json_real_value(e);
				} else {
					idx[level] = i;
					return elem_error(e, pointer, idx, level + 1, p);
				}
				if (dst)
					*dst++ = x;
			}
			/* up to the next sibling */
			for (;;) {
				if (level == 0)
					return 0;
				level--;
				if (++idx[level] < (size_t)shape[level])
					break;
			}
		}
		json_t *c = json_array_get(arrs[level], idx[level]);
		const api__pack *e = api__packed_array(pk, c);
		if (e) {
			/* a lifted sub-array: checked and copied whole */
			if (pack_fits(e, shape, rank, level + 1, idx, pointer, p))
				return -1;
			if (dst) {
				memcpy(dst, e->values, (size_t)e->size * sizeof *dst);
				dst += e->size;
			}
			while (++idx[level] == (size_t)shape[level]) {
				if (level == 0)
					return 0;
				level--;
			}
			continue;
		}
		if (!json_is_array(c) || json_array_size(c) != (size_t)shape[level + 1]) {
			index_pointer(ptr, sizeof ptr, pointer, idx, level + 1);
			if (!json_is_array(c) && !json_is_number(c))
				return elem_error(c, pointer, idx, level + 1, p);
			shape_str(sh, sizeof sh, shape, rank);
			if (json_is_array(c))
				return api_problem_set(
				        p, 422, "shape_mismatch", ptr,
				        "%s is ragged: %s has %zu elements, expected %lld "
				        "(shape %s from the first elements)",
				        name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr,
				        json_array_size(c), (long long)shape[level + 1], sh);
			return api_problem_set(p, 422, "shape_mismatch", ptr,
			                       "%s is ragged: %s is a number, expected an array "
			                       "(shape %s from the first elements)",
			                       name_of(pointer), ptr[0] == '/' ? ptr + 1 : ptr, sh);
		}
		level++;
		arrs[level] = c;
		idx[level] = 0;
	}
}

/*
 * v is an array or a number. Decodes it into a float64 tensor; `pointer` is
 * where v is in the request.
 */
static int decode_nested(api_tensor *out, json_t *v, const char *pointer,
                         const api_tensor_opts *opts, api_problem *p)
{
	int64_t shape[ENG_MAX_RANK];
	size_t idx[ENG_MAX_RANK] = {0};
	int rank = 0;
	int64_t size = 1;
	bool overflow = false;
	char ptr[sizeof p->pointer];

	const api_packed *pk = packed_of(opts);
	const api__pack *e = api__packed_array(pk, v);
	if (e) {
		/* lifted whole: rectangular already, and viewed where it is */
		if (charge(opts, e->size, pointer, p))
			return -1;
		set_view(out, ENG_F64, e->rank, e->shape, e->size, NULL);
		out->t.data = e->values;
		return 0;
	}
	if (json_is_number(v)) {
		if (charge(opts, 1, pointer, p))
			return -1;
		double *b = alloc_elems(1, sizeof(double), pointer, p);
		if (!b) {
			if (opts && opts->budget)
				*opts->budget += 1;
			return -1;
		}
		b[0] = json_number_value(v);
		set_view(out, ENG_F64, 0, shape, 1, b);
		return 0;
	}

	/* The shape, from the first element at every level. */
	for (json_t *a = v; json_is_array(a); a = json_array_get(a, 0)) {
		const api__pack *sub = api__packed_array(pk, a);
		for (int j = 0; sub && j < sub->rank; j++) {
			if (rank == ENG_MAX_RANK) {
				index_pointer(ptr, sizeof ptr, pointer, idx, rank);
				return api_problem_set(p, 422, "shape_mismatch", ptr,
				                       "%s has more than %d dimensions",
				                       name_of(pointer), ENG_MAX_RANK);
			}
			shape[rank++] = sub->shape[j];
		}
		if (sub)
			break;
		if (rank == ENG_MAX_RANK) {
			index_pointer(ptr, sizeof ptr, pointer, idx, rank);
			return api_problem_set(p, 422, "shape_mismatch", ptr,
			                       "%s has more than %d dimensions", name_of(pointer),
			                       ENG_MAX_RANK);
		}
		shape[rank++] = (int64_t)json_array_size(a);
		if (json_array_size(a) == 0)
			break;
	}
	/* The product of first-row lengths may exceed what the tree holds (a
	 * ragged bomb); then the check-only walk reports the ragged spot. */
	for (int i = 0; i < rank; i++)
		if (__builtin_mul_overflow(size, shape[i], &size))
			overflow = true;
	if (overflow || size > ((int64_t)1 << 53) ||
	    (opts && opts->budget && size > *opts->budget)) {
		if (walk(v, shape, rank, NULL, pointer, pk, p))
			return -1;
		if (overflow || size > ((int64_t)1 << 53))
			return api_problem_set(p, 413, "too_many_elements", pointer,
			                       "%s has too many elements", name_of(pointer));
	}
	if (charge(opts, size, pointer, p))
		return -1;
	double *buf = alloc_elems(size, sizeof(double), pointer, p);
	if (!buf) {
		/* a ragged array that only looked big: say so, not 503 */
		api_problem ragged;
		if (p && walk(v, shape, rank, NULL, pointer, pk, &ragged) != 0)
			*p = ragged;
		goto fail;
	}
	if (walk(v, shape, rank, buf, pointer, pk, p))
		goto fail;
	set_view(out, ENG_F64, rank, shape, size, buf);
	return 0;
fail:
	api__free(buf);
	if (opts && opts->budget)
		*opts->budget += size;
	return -1;
}

/* Index of the first NaN or Inf among elements [from, to) of a float
 * payload, or -1. float32 is checked a block at a time without branches
 * (vectorized: this pass reads a whole decoded tensor), and the block that
 * has one is searched. */
int64_t api__first_nonfinite(eng_dtype dt, const void *data, int64_t from, int64_t to)
{
	if (dt == ENG_F32) {
		const uint32_t *u = data;
		enum { BLK = 1024 };
		for (int64_t b = from; b < to; b += BLK) {
			int64_t e = to - b < BLK ? to : b + BLK;
			uint32_t any = 0;
			for (int64_t i = b; i < e; i++)
				any |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
			for (int64_t i = b; any && i < e; i++)
				if ((u[i] & 0x7f800000u) == 0x7f800000u)
					return i;
		}
	} else if (dt == ENG_F64) {
		const uint64_t *u = data;
		for (int64_t i = from; i < to; i++)
			if ((u[i] & 0x7ff0000000000000ull) == 0x7ff0000000000000ull)
				return i;
	}
	return -1;
}

/* The first non-finite element of t, or -1; what an early loss already
 * scanned of these bytes (lifted's scanned, when it views them as t's
 * dtype) is not read again. */
static int64_t first_nonfinite(const eng_tensor *t, const api__pack *lifted)
{
	int64_t from = 0;
	if (lifted && lifted->scanned > 0 && lifted->decoded == t->data &&
	    lifted->scanned_dt == t->dtype && lifted->scanned <= t->size) {
		if (lifted->scanned_bad >= 0)
			return lifted->scanned_bad;
		from = lifted->scanned;
	}
	return api__first_nonfinite(t->dtype, t->data, from, t->size);
}

/* ---- tensor objects -------------------------------------------------------------- */

static int read_shape(int64_t *shape, int *ndim, int64_t *size, json_t *s, const char *pointer,
                      const api_packed *pk, api_problem *p)
{
	char ptr[sizeof p->pointer];
	snprintf(ptr, sizeof ptr, "%s/shape", pointer ? pointer : "");
	if (!json_is_array(s))
		return api_problem_set(p, 422, "bad_type", ptr,
		                       "%s/shape must be an array of dimensions, got %s",
		                       name_of(pointer),
		                       json_is_string(s)    ? "a string"
		                       : json_is_object(s)  ? "an object"
		                       : json_is_number(s)  ? "a number"
		                       : json_is_boolean(s) ? "a boolean"
		                                            : "null");
	/* A lifted shape has 16 or more numbers, or arrays for elements. */
	const api__pack *lifted = api__packed_array(pk, s);
	size_t n = lifted ? (size_t)lifted->shape[0] : json_array_size(s);
	if (lifted && n <= ENG_MAX_RANK) {
		snprintf(ptr, sizeof ptr, "%s/shape/0", pointer ? pointer : "");
		return api_problem_set(p, 422, "bad_type", ptr, "%s/shape must hold whole numbers",
		                       name_of(pointer));
	}
	if (n > ENG_MAX_RANK)
		return api_problem_set(p, 422, "shape_mismatch", ptr,
		                       "%s has %zu dimensions, at most %d are supported",
		                       name_of(pointer), n, ENG_MAX_RANK);
	bool zero = false, overflow = false;
	int64_t prod = 1;
	for (size_t i = 0; i < n; i++) {
		json_t *d = json_array_get(s, i);
		int64_t v;
		if (json_is_integer(d)) {
			v = (int64_t)json_integer_value(d);
		} else if (json_is_real(d) && json_real_value(d) == floor(json_real_value(d)) &&
		           fabs(json_real_value(d)) < 9.2e18) {
			v = (int64_t)json_real_value(d);
		} else {
			snprintf(ptr, sizeof ptr, "%s/shape/%zu", pointer ? pointer : "", i);
			return api_problem_set(
			        p, 422, json_is_number(d) ? "shape_mismatch" : "bad_type", ptr,
			        "%s/shape must hold whole numbers", name_of(pointer));
		}
		if (v < 0) {
			snprintf(ptr, sizeof ptr, "%s/shape/%zu", pointer ? pointer : "", i);
			return api_problem_set(p, 422, "shape_mismatch", ptr,
			                       "%s/shape/%zu is %lld; dimensions must be >= 0",
			                       name_of(pointer), i, (long long)v);
		}
		shape[i] = v;
		if (v == 0)
			zero = true;
		else if (!overflow && __builtin_mul_overflow(prod, v, &prod))
			overflow = true;
	}
	*ndim = (int)n;
	/* Every element count stays below 2^53 (eng.h), and so does the
	 * product of the non-zero dimensions even when one is 0: code that
	 * multiplies some of the dimensions of an empty [2^40, 2^40, 0]
	 * must not overflow either. */
	if (overflow || prod > ((int64_t)1 << 53)) {
		char sh[96];
		shape_str(sh, sizeof sh, shape, (int)n);
		return api_problem_set(
		        p, 413, "too_many_elements", ptr,
		        "%s has shape %s, far more elements than any request may hold",
		        name_of(pointer), sh);
	}
	*size = zero ? 0 : prod;
	return 0;
}

/* ---- base64 on several threads ------------------------------------------------------ */

enum { B64_TASKS_MAX = 64 };
#define B64_PAR_MIN ((size_t)8 << 20) /* characters; below, one thread */

typedef struct b64_job {
	unsigned char *dst;
	const char *s;
	size_t len, chunk; /* chunk: characters per task, a multiple of 4 */
	int64_t ntasks;
	unsigned char fail[B64_TASKS_MAX];
} b64_job;

/* One stretch of groups; only the last may end in padding, so a stretch
 * whose end looks like padding is left to the serial decoder to judge. */
static void b64_task(void *arg, int64_t t)
{
	b64_job *j = arg;
	size_t s0 = (size_t)t * j->chunk;
	size_t n = j->len - s0 < j->chunk ? j->len - s0 : j->chunk;
	if (t + 1 < j->ntasks && (j->s[s0 + n - 1] == '=' || j->s[s0 + n - 2] == '=')) {
		j->fail[t] = 1;
		return;
	}
	j->fail[t] = api__b64_decode(j->dst + s0 / 4 * 3, j->s + s0, n, NULL) != 0;
}

/* api__b64_decode, split across par's threads when the payload is large:
 * the same bytes, and on failure the same offset (the serial decoder
 * finds it). Each stretch writes exactly its own 3/4 of dst. */
static int b64_decode(unsigned char *dst, const char *s, size_t len, const eng_parallel *par,
                      size_t *bad_at)
{
	if (par && par->for_each && par->nthreads > 1 && len >= B64_PAR_MIN && len % 4 == 0) {
		b64_job j = {.dst = dst, .s = s, .len = len};
		j.ntasks = (int64_t)(len / (B64_PAR_MIN / 8));
		if (j.ntasks > B64_TASKS_MAX)
			j.ntasks = B64_TASKS_MAX;
		j.chunk = (len / 4 + (size_t)j.ntasks - 1) / (size_t)j.ntasks * 4;
		j.ntasks = (int64_t)((len + j.chunk - 1) / j.chunk);
		eng_parallel_for(par, j.ntasks, b64_task, &j);
		bool failed = false;
		for (int64_t t = 0; t < j.ntasks; t++)
			failed |= j.fail[t] != 0;
		if (!failed)
			return 0;
	}
	return api__b64_decode(dst, s, len, bad_at);
}

static int decode_b64(api_tensor *out, json_t *obj, const char *pointer,
                      const api_tensor_opts *opts, api_problem *p)
{
	char ptr[sizeof p->pointer];
	char sh[96];
	int64_t shape[ENG_MAX_RANK];
	int ndim;
	int64_t size;
	eng_dtype dt = ENG_F32;
	json_t *s = json_object_get(obj, "shape");
	json_t *dtv = json_object_get(obj, "dtype");
	json_t *b = json_object_get(obj, "b64");

	if (!s) {
		snprintf(ptr, sizeof ptr, "%s/shape", pointer ? pointer : "");
		return api_problem_set(p, 422, "missing_field", ptr, "%s has b64 but no shape",
		                       name_of(pointer));
	}
	if (dtv) {
		int i;
		snprintf(ptr, sizeof ptr, "%s/dtype", pointer ? pointer : "");
		if (!json_is_string(dtv))
			return api_problem_set(p, 422, "bad_type", ptr, "%s/dtype must be a string",
			                       name_of(pointer));
		for (i = 0; dtype_names[i]; i++)
			if (strcmp(dtype_names[i], json_string_value(dtv)) == 0)
				break;
		if (!dtype_names[i])
			return api_problem_set(p, 422, "bad_type", ptr,
			                       "%s/dtype must be one of \"float32\", \"float64\", "
			                       "\"int32\", \"int64\", \"uint8\"; got \"%.40s\"",
			                       name_of(pointer), json_string_value(dtv));
		dt = dtype_ids[i];
	}
	if (!json_is_string(b)) {
		snprintf(ptr, sizeof ptr, "%s/b64", pointer ? pointer : "");
		return api_problem_set(p, 422, "bad_type", ptr, "%s/b64 must be a base64 string",
		                       name_of(pointer));
	}
	if (read_shape(shape, &ndim, &size, s, pointer, packed_of(opts), p))
		return -1;

	/* A declared shape past the budget is 413 whatever the payload. */
	if (opts && opts->budget && size > *opts->budget)
		return charge(opts, size, pointer, p);

	const api__pack *lifted = api__packed_string(packed_of(opts), b);
	const char *str = lifted ? lifted->str : json_string_value(b);
	size_t len = lifted ? (size_t)lifted->size : json_string_length(b);
	/* decoded as the body arrived (body.c): the same checks, in the same
	 * order, on what the decoder noted; the tensor views the bytes */
	const unsigned char *early = lifted ? lifted->decoded : NULL;
	if (early && lifted->pending) {
		/* still arriving (an early loss's guess): checked when it has */
		if (charge(opts, size, pointer, p))
			return -1;
		set_view(out, dt, ndim, shape, size, NULL);
		out->t.data = early;
		return 0;
	}
	snprintf(ptr, sizeof ptr, "%s/b64", pointer ? pointer : "");
	size_t nbytes = early ? lifted->nbytes : api__b64_decoded_size(str, len);
	if (nbytes == SIZE_MAX)
		return api_problem_set(
		        p, 422, "bad_base64", ptr,
		        "%s/b64 has %zu characters; padded base64 comes in groups of 4",
		        name_of(pointer), len);
	size_t esz = eng_dtype_size(dt);
	/* size < 2^53 and esz <= 8: no overflow */
	if ((uint64_t)size * esz != nbytes) {
		shape_str(sh, sizeof sh, shape, ndim);
		return api_problem_set(p, 422, "shape_mismatch", ptr,
		                       "%s/b64 holds %zu bytes but shape %s of %s needs %llu",
		                       name_of(pointer), nbytes, sh, eng_dtype_name(dt),
		                       (unsigned long long)((uint64_t)size * esz));
	}
	if (charge(opts, size, pointer, p))
		return -1;
	size_t at = early ? lifted->bad_at : 0;
	unsigned char *buf = NULL;
	if (early && at == SIZE_MAX) {
		set_view(out, dt, ndim, shape, size, NULL);
		out->t.data = early;
		goto decoded;
	}
	if (!early && !(buf = alloc_elems(size, esz, pointer, p)))
		goto fail;
	if (early || b64_decode(buf, str, len, opts ? opts->par : NULL, &at)) {
		api__free(buf);
		api_problem_set(p, 422, "bad_base64", ptr,
		                "%s/b64 has an invalid character at offset %zu", name_of(pointer),
		                at);
		goto fail;
	}
	set_view(out, dt, ndim, shape, size, buf);
decoded:
	if (!opts || !opts->allow_nonfinite) {
		int64_t i = first_nonfinite(&out->t, lifted);
		if (i >= 0) {
			double x = eng_tensor_at(&out->t, i);
			api_problem_set(p, 422, "non_finite", pointer,
			                "%s has a non-finite value (%s) at flat index %lld",
			                name_of(pointer),
			                isnan(x) ? "NaN"
			                : x > 0  ? "Inf"
			                         : "-Inf",
			                (long long)i);
			api_tensor_free(out);
			goto fail;
		}
	}
	return 0;
fail:
	if (opts && opts->budget)
		*opts->budget += size;
	return -1;
}

static int decode_object(api_tensor *out, json_t *obj, const char *pointer,
                         const api_tensor_opts *opts, api_problem *p)
{
	char ptr[sizeof p->pointer];
	const char *key;
	json_t *val;

	json_object_foreach(obj, key, val)
	{
		int i;
		for (i = 0; tensor_keys[i]; i++)
			if (strcmp(tensor_keys[i], key) == 0)
				break;
		if (!tensor_keys[i]) {
			snprintf(ptr, sizeof ptr, "%s/%.60s", pointer ? pointer : "", key);
			return api_problem_set(
			        p, 422, "unknown_field", ptr,
			        "unknown field \"%.60s\" in tensor %s; a tensor object "
			        "has shape and data, or shape, dtype and b64",
			        key, name_of(pointer));
		}
	}
	json_t *data = json_object_get(obj, "data");
	json_t *b = json_object_get(obj, "b64");
	if (data && b) {
		snprintf(ptr, sizeof ptr, "%s/b64", pointer ? pointer : "");
		return api_problem_set(p, 422, "bad_type", ptr,
		                       "%s has both data and b64; give one", name_of(pointer));
	}
	if (b)
		return decode_b64(out, obj, pointer, opts, p);
	if (!data) {
		snprintf(ptr, sizeof ptr, "%s/data", pointer ? pointer : "");
		return api_problem_set(p, 422, "missing_field", ptr,
		                       "%s is an object without data or b64", name_of(pointer));
	}

	/* {"shape", "data"}: data flat (or nested), reshaped to shape. */
	json_t *s = json_object_get(obj, "shape");
	json_t *dtv = json_object_get(obj, "dtype");
	int64_t shape[ENG_MAX_RANK];
	int ndim = 0;
	int64_t size = 0;
	if (dtv) {
		/* JSON numbers always decode to float64; the name is still checked. */
		int i;
		for (i = 0; json_is_string(dtv) && dtype_names[i]; i++)
			if (strcmp(dtype_names[i], json_string_value(dtv)) == 0)
				break;
		if (!json_is_string(dtv) || !dtype_names[i]) {
			snprintf(ptr, sizeof ptr, "%s/dtype", pointer ? pointer : "");
			return api_problem_set(p, 422, "bad_type", ptr,
			                       "%s/dtype must be one of \"float32\", \"float64\", "
			                       "\"int32\", \"int64\", \"uint8\"",
			                       name_of(pointer));
		}
	}
	if (s && read_shape(shape, &ndim, &size, s, pointer, packed_of(opts), p))
		return -1;
	snprintf(ptr, sizeof ptr, "%s/data", pointer ? pointer : "");
	if (!json_is_array(data) && !json_is_number(data))
		return api_problem_set(p, 422, "bad_type", ptr,
		                       "%s/data must be an array of numbers", name_of(pointer));
	if (decode_nested(out, data, ptr, opts, p))
		return -1;
	if (!s)
		return 0;
	if (out->t.size != size) {
		char sh[96];
		shape_str(sh, sizeof sh, shape, ndim);
		api_problem_set(p, 422, "shape_mismatch", ptr,
		                "%s/data has %lld elements but shape %s needs %lld",
		                name_of(pointer), (long long)out->t.size, sh, (long long)size);
		if (opts && opts->budget)
			*opts->budget += out->t.size;
		api_tensor_free(out);
		return -1;
	}
	const void *vals = out->t.data; /* out->buf, or the lifted values */
	set_view(out, ENG_F64, ndim, shape, size, out->buf);
	out->t.data = vals;
	return 0;
}

/* ---- entry points ---------------------------------------------------------------- */

int api_tensor_decode(api_tensor *out, json_t *v, const char *pointer, const api_tensor_opts *opts,
                      api_problem *p)
{
	api_tensor empty = API_TENSOR_INIT;
	*out = empty;
	if (json_is_array(v) || json_is_number(v))
		return decode_nested(out, v, pointer, opts, p);
	if (json_is_object(v))
		return decode_object(out, v, pointer, opts, p);
	return api_problem_set(p, 422, "bad_type", pointer,
	                       "%s must be a number, an array or a tensor object, got %s",
	                       name_of(pointer),
	                       json_is_string(v)    ? "a string"
	                       : json_is_boolean(v) ? "a boolean"
	                                            : "null");
}

void api_tensor_free(api_tensor *t)
{
	if (!t)
		return;
	api__free(t->buf);
	api_tensor empty = API_TENSOR_INIT;
	*t = empty;
}
