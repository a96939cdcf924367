/*
 * mem.h - the api layer's allocator: jansson's heap accounted per thread,
 * a budget on it, and a fault-injection hook for out-of-memory tests.
 *
 * Private to api/ (tests reach it by relative path). See mem.c.
 */
#ifndef LOSSD_API_MEM_H
#define LOSSD_API_MEM_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Installs the accounting allocator into jansson (idempotent, any thread).
 * Runs from a constructor too, so it is in place before the first json_t. */
void api__mem_install(void);

/* malloc/free/posix_memalign for api buffers (tensor data): subject to the
 * fault-injection hook but not charged to the jansson budget. api__free
 * releases both kinds (plain free underneath). */
void *api__malloc(size_t n);
void *api__realloc(void *p, size_t n);
void *api__aligned_alloc(size_t align, size_t n);
void api__free(void *p);

/* Limits jansson's heap on this thread to `bytes` more than it holds now.
 * In force until the next call or api__json_budget_clear(). */
void api__json_budget_set(size_t bytes);
void api__json_budget_clear(void);
/* Whether a jansson allocation failed on this thread since the last
 * api__json_budget_set / _clear, and why (the latest failure wins): jansson
 * does not always report a failed allocation as out_of_memory. */
enum { API__ALLOC_OK = 0, API__ALLOC_BUDGET = 1, API__ALLOC_SYSTEM = 2 };
int api__json_alloc_failure(void);

/* json_loadb with this allocator's lexing guard: while it runs, the first
 * jansson allocation that fails (budget, system, or the test hook) fails
 * every later one until it returns, so jansson 2.14's lexer never decodes a
 * token its buffer could not hold (see mem.c). Every JSON text in api/ is
 * parsed through it. */
json_t *api__json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error);
json_t *api__json_loads(const char *text, size_t flags, json_error_t *error);

/* Test hook, this thread only: the n-th allocation from now (1 = the next
 * one) through jansson or api__malloc fails; n <= 0 disables. */
void api__alloc_fail_after(long n);
/* Allocations made on this thread through jansson or api__malloc so far. */
uint64_t api__alloc_count(void);

#endif
