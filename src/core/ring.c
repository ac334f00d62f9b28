/*
 * ring.c — the last committed events, in memory, for the runners.
 *
 * The writer publishes each group commit's events here right after the
 * commit; live runners apply them without reading the store back.  The
 * ring keeps whole batches, newest last, while their events number at most
 * max_events; a runner that falls further behind (or a rebuild) reads the
 * store instead.  Batches are reference counted: a runner holds the ones it
 * is applying, so eviction never frees memory in use.  The budget is both
 * a count of events and (roughly) bytes: parsed events are several times
 * the size of their text.
 */
#include <stdlib.h>

#include <pthread.h>

#include "core/ring.h"

struct cl_ring {
	pthread_mutex_t mu;
	cl_evbatch **slot; /* circular, oldest at `start` */
	size_t cap, start, n;
	int64_t events;
	size_t bytes, max_bytes;
	int max_events;
};

cl_ring *cl_ring_new(int max_events, size_t max_bytes)
{
	cl_ring *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->cap = 4096;
	r->slot = calloc(r->cap, sizeof(*r->slot));
	if (!r->slot) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	r->max_events = max_events;
	r->max_bytes = max_bytes;
	return r;
}

void cl_evbatch_unref(cl_evbatch *b)
{
	if (!b || atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	for (int i = 0; i < b->n; i++)
		cJSON_Delete((cJSON *)b->ev[i].json);
	free(b->ev);
	cl_arena_free(&b->arena);
	free(b);
}

void cl_ring_free(cl_ring *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		cl_evbatch_unref(r->slot[(r->start + i) % r->cap]);
	free(r->slot);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

static void drop_oldest(cl_ring *r)
{
	cl_evbatch *b = r->slot[r->start];
	r->slot[r->start] = NULL;
	r->start = (r->start + 1) % r->cap;
	r->n--;
	r->events -= b->n;
	r->bytes -= b->bytes;
	cl_evbatch_unref(b);
}

void cl_ring_push(cl_ring *r, cl_evbatch *b)
{
	pthread_mutex_lock(&r->mu);
	while (r->n && (r->n == r->cap || r->events + b->n > r->max_events ||
	                r->bytes + b->bytes > r->max_bytes))
		drop_oldest(r);
	r->slot[(r->start + r->n) % r->cap] = b;
	r->n++;
	r->events += b->n;
	r->bytes += b->bytes;
	pthread_mutex_unlock(&r->mu);
}

/* Index (0..n-1 from oldest) of the batch holding pos, or -1. */
static long locate(cl_ring *r, int64_t pos)
{
	if (!r->n)
		return -1;
	size_t lo = 0, hi = r->n;
	if (pos < r->slot[r->start]->first ||
	    pos > r->slot[(r->start + r->n - 1) % r->cap]->last)
		return -1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		cl_evbatch *b = r->slot[(r->start + mid) % r->cap];
		if (pos < b->first)
			hi = mid;
		else if (pos > b->last)
			lo = mid + 1;
		else
			return (long)mid;
	}
	return -1;
}

cl_evbatch *cl_ring_find(cl_ring *r, int64_t pos)
{
	cl_evbatch *b = NULL;
	pthread_mutex_lock(&r->mu);
	long i = locate(r, pos);
	if (i >= 0) {
		b = r->slot[(r->start + (size_t)i) % r->cap];
		atomic_fetch_add(&b->refs, 1);
	}
	pthread_mutex_unlock(&r->mu);
	return b;
}

bool cl_ring_has(cl_ring *r, int64_t pos)
{
	pthread_mutex_lock(&r->mu);
	bool has = locate(r, pos) >= 0;
	pthread_mutex_unlock(&r->mu);
	return has;
}

int64_t cl_ring_ts(cl_ring *r, int64_t pos)
{
	int64_t ts = 0;
	pthread_mutex_lock(&r->mu);
	long i = locate(r, pos);
	if (i >= 0) {
		cl_evbatch *b = r->slot[(r->start + (size_t)i) % r->cap];
		ts = b->ev[pos - b->first].ts_us;
	}
	pthread_mutex_unlock(&r->mu);
	return ts;
}
