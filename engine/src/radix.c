/*
 * radix.c - stable LSD radix sort of integer keys with a carried index.
 *
 * Why: exact AUC and the sketch sort scores, and comparison sorts (qsort)
 * are O(n log n) with an indirect call per comparison. Scores are first
 * mapped to order-preserving unsigned keys (radix.h), then sorted with
 * 8-bit digits, least significant first. All digit histograms are built in
 * one read of the keys; a digit that is the same in every key (the top
 * bytes of scores in [0, 1], say) costs no pass.
 *
 * Invariants: stable (equal keys keep their input order), so ties carry
 * their indices in input order. The result always ends in the caller's
 * arrays (a final copy when an odd number of passes ran).
 *
 * Does not: allocate, fail, or sort anything but unsigned keys.
 */
#include "radix.h"

#include <stdbool.h>
#include <stdlib.h>

#define RADIX 256

#define DEFINE_RADIX_SORT(NAME, KT, NBYTES)                                                        \
	void NAME(KT *key, uint32_t *idx, KT *tkey, uint32_t *tidx, int64_t n)                     \
	{                                                                                          \
		int64_t hist[NBYTES][RADIX];                                                       \
		memset(hist, 0, sizeof(hist));                                                     \
		for (int64_t i = 0; i < n; i++) {                                                  \
			KT k = key[i];                                                             \
			for (int b = 0; b < NBYTES; b++)                                           \
				hist[b][(k >> (8 * b)) & 0xff]++;                                  \
		}                                                                                  \
		KT *src = key, *dst = tkey;                                                        \
		uint32_t *isrc = idx, *idst = tidx;                                                \
		for (int b = 0; b < NBYTES; b++) {                                                 \
			int64_t *h = hist[b];                                                      \
			bool trivial = false;                                                      \
			for (int d = 0; d < RADIX; d++) {                                          \
				if (h[d] == n) {                                                   \
					trivial = true;                                            \
					break;                                                     \
				}                                                                  \
				if (h[d] != 0)                                                     \
					break;                                                     \
			}                                                                          \
			if (trivial || n < 2)                                                      \
				continue;                                                          \
			int64_t off = 0;                                                           \
			for (int d = 0; d < RADIX; d++) {                                          \
				int64_t c = h[d];                                                  \
				h[d] = off;                                                        \
				off += c;                                                          \
			}                                                                          \
			int sh = 8 * b;                                                            \
			if (isrc) {                                                                \
				for (int64_t i = 0; i < n; i++) {                                  \
					int64_t p = h[(src[i] >> sh) & 0xff]++;                    \
					dst[p] = src[i];                                           \
					idst[p] = isrc[i];                                         \
				}                                                                  \
				uint32_t *it = isrc;                                               \
				isrc = idst;                                                       \
				idst = it;                                                         \
			} else {                                                                   \
				for (int64_t i = 0; i < n; i++)                                    \
					dst[h[(src[i] >> sh) & 0xff]++] = src[i];                  \
			}                                                                          \
			KT *t = src;                                                               \
			src = dst;                                                                 \
			dst = t;                                                                   \
		}                                                                                  \
		if (src != key) {                                                                  \
			memcpy(key, src, (size_t)n * sizeof(KT));                                  \
			if (idx)                                                                   \
				memcpy(idx, isrc, (size_t)n * sizeof(uint32_t));                   \
		}                                                                                  \
	}

DEFINE_RADIX_SORT(eng__radix_sort64, uint64_t, 8)
DEFINE_RADIX_SORT(eng__radix_sort32, uint32_t, 4)
