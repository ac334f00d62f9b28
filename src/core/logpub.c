/*
 * logpub.c — the log as the engine's parts share it: its head (the last
 * committed position), the ring of recent events in memory, the
 * notification that the log advanced (runners wait on it), and the pool
 * of log readers on the write store.  The writer publishes; runners,
 * waits and queries read.  Private state; see core/logpub.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "core/ring.h"

struct cl_logpub {
	atomic_int_fast64_t head;
	cl_ring *ring;
	pthread_mutex_t advmu;
	pthread_cond_t advcond; /* the log advanced, or a stop */
	/* log readers (pool): a stack, the most recently returned on top;
	 * readers_idle[i] is when readers[i] came back */
	pthread_mutex_t rdmu;
	cl_wreader *readers[16];
	int64_t readers_idle[16];
	int nreaders;
};

int cl_logpub_open(cleave_engine *e, int64_t head)
{
	cl_logpub *l = calloc(1, sizeof(*l));
	if (!l)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	if (!(l->ring = cl_ring_new(e->cfg.ring_events, (size_t)64 << 20))) {
		free(l);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	atomic_init(&l->head, head);
	pthread_mutex_init(&l->advmu, NULL);
	pthread_cond_init(&l->advcond, NULL);
	pthread_mutex_init(&l->rdmu, NULL);
	e->log = l;
	return 0;
}

void cl_logpub_close(cleave_engine *e)
{
	cl_logpub *l = e->log;
	if (!l)
		return;
	for (int i = 0; i < l->nreaders; i++)
		e->wm->reader_close(l->readers[i]);
	cl_ring_free(l->ring);
	pthread_mutex_destroy(&l->advmu);
	pthread_cond_destroy(&l->advcond);
	pthread_mutex_destroy(&l->rdmu);
	free(l);
	e->log = NULL;
}

/* ---- the head and the ring ----------------------------------------------- */

int64_t cl_log_head(const cleave_engine *e)
{
	return e->log ? atomic_load(&e->log->head) : 0;
}

void cl_log_publish(cleave_engine *e, cl_evbatch *b, int64_t head)
{
	if (b)
		cl_ring_push(e->log->ring, b);
	atomic_store(&e->log->head, head);
	cl_log_notify(e);
}

cl_evbatch *cl_log_ring_find(cleave_engine *e, int64_t position)
{
	return cl_ring_find(e->log->ring, position);
}

bool cl_log_ring_has(cleave_engine *e, int64_t position)
{
	return cl_ring_has(e->log->ring, position);
}

int64_t cl_log_ring_ts(cleave_engine *e, int64_t position)
{
	return cl_ring_ts(e->log->ring, position);
}

/* ---- advancing ------------------------------------------------------------- */

/* Waiters check the head under advmu and publishers notify under it after
 * storing the head, so no advance between the check and the wait is
 * missed. */
void cl_log_notify(cleave_engine *e)
{
	pthread_mutex_lock(&e->log->advmu);
	pthread_cond_broadcast(&e->log->advcond);
	pthread_mutex_unlock(&e->log->advmu);
}

bool cl_log_wait(cleave_engine *e, int64_t pos, int timeout_ms,
		 const atomic_bool *stop)
{
	cl_logpub *l = e->log;
	bool timed_out = false;
	pthread_mutex_lock(&l->advmu);
	if (!atomic_load(stop) && atomic_load(&l->head) <= pos) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t ns = ts.tv_nsec + (int64_t)(timeout_ms % 1000) * 1000000;
		ts.tv_sec += timeout_ms / 1000 + ns / 1000000000;
		ts.tv_nsec = ns % 1000000000;
		timed_out = pthread_cond_timedwait(&l->advcond, &l->advmu,
						   &ts) == ETIMEDOUT;
	}
	pthread_mutex_unlock(&l->advmu);
	return timed_out;
}

/* ---- readers ----------------------------------------------------------------- */

cl_wreader *cl_reader_get(cleave_engine *e)
{
	cl_wreader *r = NULL;
	pthread_mutex_lock(&e->log->rdmu);
	if (e->log->nreaders)
		r = e->log->readers[--e->log->nreaders];
	pthread_mutex_unlock(&e->log->rdmu);
	if (!r && e->wm->reader_open(e->ws, &r))
		return NULL;
	return r;
}

void cl_reader_put(cleave_engine *e, cl_wreader *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&e->log->rdmu);
	if (e->log->nreaders < (int)CL_ARRAY_LEN(e->log->readers)) {
		e->log->readers_idle[e->log->nreaders] = cl_mono_us();
		e->log->readers[e->log->nreaders++] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&e->log->rdmu);
	if (r)
		e->wm->reader_close(r);
}

void cl_readers_trim(cleave_engine *e, int64_t idle_us)
{
	cl_wreader *old[CL_ARRAY_LEN(e->log->readers)];
	int64_t since = cl_mono_us() - idle_us;
	int n = 0;
	pthread_mutex_lock(&e->log->rdmu);
	/* the bottom of the stack has been idle longest */
	while (n < e->log->nreaders && e->log->readers_idle[n] < since)
		n++;
	memcpy(old, e->log->readers, (size_t)n * sizeof(old[0]));
	e->log->nreaders -= n;
	memmove(e->log->readers, e->log->readers + n,
		(size_t)e->log->nreaders * sizeof(e->log->readers[0]));
	memmove(e->log->readers_idle, e->log->readers_idle + n,
		(size_t)e->log->nreaders * sizeof(e->log->readers_idle[0]));
	pthread_mutex_unlock(&e->log->rdmu);
	for (int i = 0; i < n; i++)
		e->wm->reader_close(old[i]);
}

int cl_readers_pooled(cleave_engine *e)
{
	pthread_mutex_lock(&e->log->rdmu);
	int n = e->log->nreaders;
	pthread_mutex_unlock(&e->log->rdmu);
	return n;
}
