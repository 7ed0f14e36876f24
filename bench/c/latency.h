/* Shared by the bench's C load generators (loadgen.c, tlsgen.c): the clock,
 * a log-linear latency histogram (SUB_BITS sub-buckets per power of two;
 * values in ns) and percentiles read from it, and die().  Header-only: each
 * program is one .c file and includes this once. */
#ifndef BENCH_LATENCY_H
#define BENCH_LATENCY_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define SUB_BITS 6
#define NBUCKETS (64 << SUB_BITS)

static uint64_t hist[NBUCKETS];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t v)
{
    if (v < (1u << SUB_BITS))
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* GCC/Clang builtin: index of top bit */
    unsigned shift = msb - SUB_BITS;
    return ((shift + 1) << SUB_BITS) + (unsigned)((v >> shift) & ((1u << SUB_BITS) - 1));
}

static uint64_t bucket_value(unsigned b)
{
    if (b < (1u << SUB_BITS))
        return b;
    unsigned shift = (b >> SUB_BITS) - 1;
    uint64_t sub = b & ((1u << SUB_BITS) - 1);
    return ((uint64_t)((1u << SUB_BITS) | sub) << shift) + ((1ull << shift) >> 1);
}

/* The p-quantile of the `total` values in hist, in µs. */
static double percentile(uint64_t total, double p)
{
    uint64_t want = (uint64_t)(p * (double)total), seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen > want)
            return (double)bucket_value(b) / 1000.0;
    }
    return 0;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

#endif
