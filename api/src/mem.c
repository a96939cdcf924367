/*
 * mem.c - the api layer's allocator.
 *
 * jansson builds one small heap block per JSON value, so a 2 MB body of
 * "[0,0,0,...]" becomes a million json_t of 24 bytes each (32 with
 * malloc's own header) plus 8 to 16 bytes of array slot: 32 bytes a number
 * as counted here, about 40 of RSS (measured in tests/api/test_parse.c). The byte
 * pass in parse.c bounds the number count before parsing; this module
 * bounds the bytes: every jansson allocation is charged to a _Thread_local
 * counter by its malloc_usable_size (what the heap really gave, without a
 * header of our own, which would cost 16 bytes per value), and an
 * allocation that would take the counter past the thread's budget returns
 * NULL, which jansson turns into a failed parse (or a failed json_* call).
 *
 * Why per thread: the server runs each request's handler on one worker
 * thread from parse to reply, so "this thread's jansson heap" is "this
 * request's jansson heap". A tree freed on another thread than the one that
 * built it is still freed correctly; only the counters drift, and they are
 * clamped at zero.
 *
 * Invariants: the counter holds the usable size of every live block this
 * thread allocated through jansson. Installing the functions is done once,
 * by a constructor and api__mem_install() (idempotent) from the api entry
 * points; blocks allocated before that (there are none in lossd) would be
 * freed correctly but not counted. malloc_usable_size is a glibc/musl
 * extension.
 *
 * The lexing guard. jansson 2.14's lexer keeps each token's text in a
 * growable buffer and ignores a failed growth (load.c, lex_save): the
 * character is dropped and lexing goes on. For a string it then allocates
 * the value and decodes the saved text up to its closing quote, which was
 * never saved, so it reads and writes past both buffers (valgrind: invalid
 * read/write 0 bytes after a block of 16). A budget that runs out while a
 * token grows past 15 characters, then leaves room for the value, does
 * exactly that. So while api__json_loadb runs (tl_lexing), a failed
 * allocation fails every later one (tl_lex_failed): the value's buffer is
 * refused too, the lexer gives up on that token, and the parse ends in an
 * error that api__json_alloc_failure() explains.
 *
 * It budgets only jansson's heap: api__malloc (tensor buffers, bounded by
 * the element budget instead) only passes through the fault-injection hook.
 */
#include "mem.h"

#include "lossd/api.h"

#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local size_t tl_in_use;
static _Thread_local size_t tl_limit = SIZE_MAX; /* absolute, vs tl_in_use */
static _Thread_local int tl_failure;             /* API__ALLOC_* since the last budget_set */
static _Thread_local long tl_fail_after;
static _Thread_local uint64_t tl_count;
static _Thread_local bool tl_lexing, tl_lex_failed; /* the lexing guard */

/* True if this allocation must fail because of the test hook. */
static int injected_failure(void)
{
	tl_count++;
	if (tl_fail_after > 0 && --tl_fail_after == 0)
		return 1;
	return 0;
}

/* A refused jansson allocation: why, noted for api__json_alloc_failure
 * and, while lexing, for every later allocation. */
static void *refuse(int why)
{
	tl_failure = why;
	tl_lex_failed = tl_lexing;
	return NULL;
}

static void *json_alloc(size_t n)
{
	if (tl_lex_failed)
		return NULL; /* tl_failure says why already */
	if (injected_failure())
		return refuse(API__ALLOC_SYSTEM);
	/* n is what jansson asks for; the charge is what malloc really gave */
	if (n > tl_limit || tl_in_use > tl_limit - n)
		return refuse(API__ALLOC_BUDGET);
	void *p = malloc(n);
	if (!p)
		return refuse(API__ALLOC_SYSTEM);
	size_t got = malloc_usable_size(p);
	if (got > tl_limit || tl_in_use > tl_limit - got) {
		free(p);
		return refuse(API__ALLOC_BUDGET);
	}
	tl_in_use += got;
	return p;
}

json_t *api__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error)
{
	api__mem_install();
	tl_lexing = true;
	tl_lex_failed = false;
	json_t *v = json_loadb(buf, len, flags, error);
	tl_lexing = false;
	tl_lex_failed = false;
	return v;
}

json_t *api__json_loads(const char *text, size_t flags, json_error_t *error)
{
	return api__json_loadb(text, strlen(text), flags, error);
}

static void json_release(void *p)
{
	if (!p)
		return;
	size_t n = malloc_usable_size(p);
	tl_in_use = n > tl_in_use ? 0 : tl_in_use - n;
	free(p);
}

static void install(void)
{
	json_set_alloc_funcs(json_alloc, json_release);
}

static pthread_once_t install_once = PTHREAD_ONCE_INIT;

void api__mem_install(void)
{
	pthread_once(&install_once, install);
}

__attribute__((constructor)) static void install_at_load(void)
{
	api__mem_install();
}

void *api__malloc(size_t n)
{
	if (injected_failure())
		return NULL;
	return malloc(n ? n : 1);
}

void *api__realloc(void *p, size_t n)
{
	if (injected_failure())
		return NULL;
	return realloc(p, n ? n : 1);
}

void *api__aligned_alloc(size_t align, size_t n)
{
	void *p = NULL;
	if (injected_failure())
		return NULL;
	if (posix_memalign(&p, align, n ? n : 1) != 0)
		return NULL;
	return p;
}

void api__free(void *p)
{
	free(p);
}

void api__json_budget_set(size_t bytes)
{
	tl_limit = bytes > SIZE_MAX - tl_in_use ? SIZE_MAX : tl_in_use + bytes;
	tl_failure = API__ALLOC_OK;
}

void api__json_budget_clear(void)
{
	tl_limit = SIZE_MAX;
	tl_failure = API__ALLOC_OK;
}

int api__json_alloc_failure(void)
{
	return tl_failure;
}

void api__alloc_fail_after(long n)
{
	tl_fail_after = n > 0 ? n : 0;
}

uint64_t api__alloc_count(void)
{
	return tl_count;
}

size_t api_json_heap_in_use(void)
{
	return tl_in_use;
}

void api_json_budget_clear(void)
{
	api__json_budget_clear();
}
