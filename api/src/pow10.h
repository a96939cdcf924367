/*
 * pow10.h - exact powers of ten, shared by the number reader (packed.c)
 * and the number writer (dtoa.c). Private to api/.
 */
#ifndef LOSSD_API_POW10_H
#define LOSSD_API_POW10_H

#include <stdint.h>

/* 10^0 .. 10^22: every one exact in a double (5^22 < 2^53). */
static const double api__pow10_f64[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* 10^0 .. 10^19: every one that fits 64 bits. */
static const uint64_t api__pow10_u64[] = {1ull,
                                          10ull,
                                          100ull,
                                          1000ull,
                                          10000ull,
                                          100000ull,
                                          1000000ull,
                                          10000000ull,
                                          100000000ull,
                                          1000000000ull,
                                          10000000000ull,
                                          100000000000ull,
                                          1000000000000ull,
                                          10000000000000ull,
                                          100000000000000ull,
                                          1000000000000000ull,
                                          10000000000000000ull,
                                          100000000000000000ull,
                                          1000000000000000000ull,
                                          10000000000000000000ull};

#endif
