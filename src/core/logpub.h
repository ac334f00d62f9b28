/*
 * logpub.h — the log as the engine's parts share it (logpub.c): the head,
 * the ring of recent events, the "advanced" notification, and the pool of
 * log readers.  The writer (and a query node's follower) publish; runners,
 * waits and queries read.
 */
#ifndef CL_LOGPUB_H
#define CL_LOGPUB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cleave.h"

typedef struct cl_logpub cl_logpub;
typedef struct cl_evbatch cl_evbatch;
typedef struct cl_wreader cl_wreader;

/* Opens the publisher at the write store's head (the ring is empty);
 * close closes the pooled readers (the store still open). */
int cl_logpub_open(cleave_engine *e, int64_t head);
void cl_logpub_close(cleave_engine *e);

/* The last committed position (0 before the log is open). */
int64_t cl_log_head(const cleave_engine *e);
/* The writer: the batch (NULL: none to keep) goes to the ring, the head
 * moves to `head`, and waiters are woken.  A query node's follower
 * publishes the head it reads with a NULL batch. */
void cl_log_publish(cleave_engine *e, cl_evbatch *b, int64_t head);
/* The ring: the batch holding position with a reference taken (or NULL
 * when it is not in memory), whether it is there, its commit time (0). */
cl_evbatch *cl_log_ring_find(cleave_engine *e, int64_t position);
bool cl_log_ring_has(cleave_engine *e, int64_t position);
int64_t cl_log_ring_ts(cleave_engine *e, int64_t position);

/* Wakes every waiter (the log advanced, or a stop was asked). */
void cl_log_notify(cleave_engine *e);
/* Waits, at most timeout_ms, for the head to pass pos, unless *stop or
 * it already has; true when the time ran out. */
bool cl_log_wait(cleave_engine *e, int64_t pos, int timeout_ms,
		 const atomic_bool *stop);

/* Log readers on the write store, pooled: get one (NULL on error, the
 * message set), give it back; trim closes those idle for over idle_us
 * (the upkeep thread calls it: a burst of readers, such as a rebuild's, is
 * not kept for the process's life). */
cl_wreader *cl_reader_get(cleave_engine *e);
void cl_reader_put(cleave_engine *e, cl_wreader *r);
void cl_readers_trim(cleave_engine *e, int64_t idle_us);
/* How many readers the pool keeps now. */
int cl_readers_pooled(cleave_engine *e);
/* How long a pooled log reader may stay idle (an SQLite reader holds two
 * descriptors and up to 1 MiB of page cache). */
#define CL_READER_IDLE_US (10 * 1000000LL)

#endif
