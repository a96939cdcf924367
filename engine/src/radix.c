/*
 * radix.c - stable LSD radix sort of integer keys with a carried index.
 *
 * Why: exact AUC, DeLong and the sketch sort scores, and comparison sorts
 * (qsort) are O(n log n) with an indirect call per comparison. Scores are
 * first mapped to order-preserving unsigned keys (radix.h), then sorted
 * digit by digit, least significant first. The digits are 11 bits wide
 * (2,048 buckets: the counts of a digit stay in L1 and its scatter streams
 * stay few enough for the write-combining of L1/L2), so a 32-bit key takes
 * three passes and a 64-bit one six. A first read of the keys finds the
 * digits that differ between them; only those get a histogram (all built
 * in one more read) and a pass, so a digit that is the same in every key
 * (the low bits of float32 scores widened to double, the top bits of
 * range-reduced keys) costs nothing: callers that subtract the least key
 * and drop constant low bits (auc.c) pay only for the bits that differ.
 * Below SMALL keys (a stream update's 1,000 scores) histograms of 256 to
 * 2,048 buckets cost less to clear and scan than the sort itself, and the
 * digits are placed where the differing bits are, not at multiples of
 * their width (place_digits): a pass fewer for float32 scores.
 *
 * Invariants: stable (equal keys keep their input order), so ties carry
 * their indices in input order. The result always ends in the caller's
 * arrays (a final copy when an odd number of passes ran). n < 2^32 (the
 * counts are 32-bit, as the carried indices are).
 *
 * Does not: allocate, fail, or sort anything but unsigned keys.
 */
#include "radix.h"

#include <stdbool.h>
#include <stdlib.h>

#define SMALL 4096 /* below this many keys, digits placed by place_digits */
#define WIDE  11   /* the digits' width from SMALL keys up */

/*
 * Places a small sort's digits: each starts at the lowest differing bit
 * (of diff) not covered by the one before, and all are `w` bits wide, for
 * the w in [8, 11] that takes the fewest (the narrower on a tie). Writes
 * their shifts to sh and returns their number. The 33 differing bits of
 * float32 scores in [0, 1] widened to double take four 9-bit digits
 * instead of five 8-bit ones (and an even count: no final copy).
 */
static int place_digits(uint64_t diff, int *sh, int *width)
{
	int best = 0;
	*width = 8;
	for (int w = 8; w <= 11; w++) {
		int s[8], k = 0;
		for (uint64_t d = diff; d && k < 8;) {
			int b = __builtin_ctzll(d);
			s[k++] = b;
			d = b + w >= 64 ? 0 : d & ~((UINT64_C(1) << (b + w)) - 1);
		}
		if (w == 8 || k < best) {
			best = k;
			*width = w;
			memcpy(sh, s, (size_t)k * sizeof(int));
		}
	}
	return best;
}

/* A large sort's digits: WIDE bits at multiples of WIDE, those in which
 * the keys differ. Writes their shifts to sh; returns their number. */
static int wide_digits(uint64_t diff, int *sh)
{
	int k = 0;
	for (int b = 0; b < 64; b += WIDE)
		if ((diff >> b) & ((UINT64_C(1) << WIDE) - 1))
			sh[k++] = b;
	return k;
}

/*
 * NAME(key, idx, tkey, tidx, n): the sort of n keys of type KT, with the
 * digits place_digits (below SMALL keys) or wide_digits chooses: at most
 * 8 of 8 to 11 bits, all counted in one read, then a pass each.
 */
#define DEFINE_RADIX(NAME, KT)                                                                     \
	static void NAME(KT *key, uint32_t *idx, KT *tkey, uint32_t *tidx, int64_t n)              \
	{                                                                                          \
		uint32_t hist[8][1 << WIDE];                                                       \
		KT diff = 0;                                                                       \
		for (int64_t i = 1; i < n; i++)                                                    \
			diff |= key[i] ^ key[0];                                                   \
		int sh[8], w = WIDE;                                                               \
		int na = n < SMALL ? place_digits(diff, sh, &w) : wide_digits(diff, sh);           \
		const KT mask = (KT)((1u << w) - 1);                                               \
		const uint32_t r = 1u << w;                                                        \
		for (int a = 0; a < na; a++)                                                       \
			memset(hist[a], 0, r * sizeof(uint32_t));                                  \
		for (int64_t i = 0; i < n; i++) {                                                  \
			KT k = key[i];                                                             \
			for (int a = 0; a < na; a++)                                               \
				hist[a][(k >> sh[a]) & mask]++;                                    \
		}                                                                                  \
		KT *src = key, *dst = tkey;                                                        \
		uint32_t *isrc = idx, *idst = tidx;                                                \
		for (int a = 0; a < na; a++) {                                                     \
			uint32_t *h = hist[a];                                                     \
			uint32_t off = 0;                                                          \
			for (uint32_t d = 0; d < r; d++) {                                         \
				uint32_t c = h[d];                                                 \
				h[d] = off;                                                        \
				off += c;                                                          \
			}                                                                          \
			int s = sh[a];                                                             \
			if (isrc) {                                                                \
				for (int64_t i = 0; i < n; i++) {                                  \
					uint32_t p = h[(src[i] >> s) & mask]++;                    \
					dst[p] = src[i];                                           \
					idst[p] = isrc[i];                                         \
				}                                                                  \
				uint32_t *it = isrc;                                               \
				isrc = idst;                                                       \
				idst = it;                                                         \
			} else {                                                                   \
				for (int64_t i = 0; i < n; i++)                                    \
					dst[h[(src[i] >> s) & mask]++] = src[i];                   \
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

DEFINE_RADIX(sort64, uint64_t)
DEFINE_RADIX(sort32, uint32_t)

void eng__radix_sort64(uint64_t *key, uint32_t *idx, uint64_t *tkey, uint32_t *tidx, int64_t n)
{
	sort64(key, idx, tkey, tidx, n);
}

void eng__radix_sort32(uint32_t *key, uint32_t *idx, uint32_t *tkey, uint32_t *tidx, int64_t n)
{
	sort32(key, idx, tkey, tidx, n);
}
