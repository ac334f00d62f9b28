/*
 * ring.h — the last committed events in memory (ring.c), shared by the
 * writer that publishes them and the runners that apply them (through
 * core/logpub.h).
 */
#ifndef CL_RING_H
#define CL_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"

/* One group commit's events.  Immutable once published; shared by the
 * runners through a reference count. */
typedef struct cl_evbatch {
	atomic_int refs;
	int64_t first, last; /* positions */
	int n;
	cleave_event *ev;    /* n events; ev[i].json is owned (cJSON) */
	cl_arena arena;      /* strings of the events */
	int64_t commit_us;
	size_t bytes;        /* memory held, roughly (the ring's budget) */
} cl_evbatch;

typedef struct cl_ring cl_ring;

/* Keeps at most max_events events and about max_bytes of memory. */
cl_ring *cl_ring_new(int max_events, size_t max_bytes);
void cl_ring_free(cl_ring *r);
/* Publishes a batch (the ring takes the caller's reference). */
void cl_ring_push(cl_ring *r, cl_evbatch *b);
/* The batch holding `position`, with a reference taken, or NULL when the
 * position is not in memory (older than the ring, or not committed). */
cl_evbatch *cl_ring_find(cl_ring *r, int64_t position);
/* Whether the event at `position` is in memory. */
bool cl_ring_has(cl_ring *r, int64_t position);
/* Commit time of the event at `position` if in memory, else 0. */
int64_t cl_ring_ts(cl_ring *r, int64_t position);
void cl_evbatch_unref(cl_evbatch *b);

#endif
