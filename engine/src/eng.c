/*
 * eng.c - the engine's shared helpers: dtype facts, error filling and the
 * serial fallback of the parallel-for hook. See eng.h.
 */
#include "lossd/eng.h"

#include <stdarg.h>
#include <stdio.h>

size_t eng_dtype_size(eng_dtype d)
{
	switch (d) {
	case ENG_F32: return 4;
	case ENG_F64: return 8;
	case ENG_I32: return 4;
	case ENG_I64: return 8;
	case ENG_U8: return 1;
	}
	return 0;
}

const char *eng_dtype_name(eng_dtype d)
{
	switch (d) {
	case ENG_F32: return "float32";
	case ENG_F64: return "float64";
	case ENG_I32: return "int32";
	case ENG_I64: return "int64";
	case ENG_U8: return "uint8";
	}
	return "?";
}

int eng_error_set(eng_error *err, int code, const char *field, int64_t index, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		err->field = field;
		err->index = index;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

void eng_parallel_for(const eng_parallel *par, int64_t ntasks, eng_task_fn fn, void *arg)
{
	if (ntasks <= 0)
		return;
	if (par && par->for_each && ntasks > 1) {
		par->for_each(par, ntasks, fn, arg);
		return;
	}
	for (int64_t t = 0; t < ntasks; t++)
		fn(arg, t);
}
