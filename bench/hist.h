/*
 * hist.h — the benchmarks' latency histogram (header only): log-linear
 * buckets, exact below 1024 us, then 512 buckets per power of two (~0.2%).
 * Values are microseconds; quantiles come out in milliseconds.
 */
#ifndef CL_BENCH_HIST_H
#define CL_BENCH_HIST_H

#include <stdint.h>

#define HB_SUB 512
#define HB_N   (1024 + 40 * HB_SUB)

typedef struct hist {
	uint64_t n, max, sum;
	uint64_t b[HB_N];
} hist;

static inline int hb_index(uint64_t v)
{
	if (v < 1024)
		return (int)v;
	int msb = 63 - __builtin_clzll(v);
	int shift = msb - 9;
	int i = 1024 + (shift - 1) * HB_SUB + (int)((v >> shift) - HB_SUB);
	return i < HB_N ? i : HB_N - 1;
}

static inline uint64_t hb_value(int i)
{
	if (i < 1024)
		return (uint64_t)i;
	int shift = (i - 1024) / HB_SUB + 1;
	uint64_t sub = (uint64_t)((i - 1024) % HB_SUB + HB_SUB);
	return (sub << shift) + ((1ull << shift) >> 1);
}

static inline void hist_add(hist *h, uint64_t us)
{
	h->b[hb_index(us)]++;
	h->n++;
	h->sum += us;
	if (us > h->max)
		h->max = us;
}

static inline void hist_merge(hist *into, const hist *h)
{
	for (int i = 0; i < HB_N; i++)
		into->b[i] += h->b[i];
	into->n += h->n;
	into->sum += h->sum;
	if (h->max > into->max)
		into->max = h->max;
}

/* The value at quantile q, in milliseconds. */
static inline double hist_q(const hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	uint64_t seen = 0;
	for (int i = 0; i < HB_N; i++) {
		seen += h->b[i];
		if (seen > want) {
			uint64_t v = hb_value(i);
			return (double)(v > h->max ? h->max : v) / 1000.0;
		}
	}
	return (double)h->max / 1000.0;
}

#endif
