/*
 * wait.c — waiting for projections to reach a log position
 * (read-your-writes): blocking waits for library callers, and watches for
 * servers that must not hold a thread per waiting client.
 *
 * Runners signal appcond after every commit (cl_applied_notify).  One
 * watcher thread re-checks the watches when signalled or at the nearest
 * deadline, and completes each exactly once: reached, timed out, parked or
 * shut down.  Lock order: appmu, then a projection's (inside
 * cl_proj_reached).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/sync_int.h"

#define MAX_WATCHES 65536

void cl_applied_notify(cleave_engine *e)
{
	cl_sync *s = e->sync;
	pthread_mutex_lock(&s->appmu);
	s->app_seq++;
	pthread_cond_broadcast(&s->appcond);
	pthread_mutex_unlock(&s->appmu);
}

/* 0 when every projection in idx has applied pos, CLEAVE_EPARKED when one
 * is parked at or before pos, CLEAVE_ETIMEDOUT when not yet. */
static int reached(cleave_engine *e, const int *idx, int n, int64_t pos)
{
	int rc = 0;
	for (int i = 0; i < (n ? n : e->nproj); i++) {
		int r = cl_proj_reached(&e->sync->proj[n ? idx[i] : i], pos);
		if (r == CLEAVE_EPARKED)
			return r;
		if (r)
			rc = r;
	}
	return rc;
}

static void deadline_ts(int64_t mono_deadline, struct timespec *ts)
{
	int64_t left = mono_deadline - cl_mono_us();
	if (left < 0)
		left = 0;
	clock_gettime(CLOCK_REALTIME, ts);
	int64_t ns = ts->tv_nsec + (left % 1000000) * 1000;
	ts->tv_sec += left / 1000000 + ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

int cleave_wait_position(cleave_engine *e, const char *const *names, int n,
                         int64_t position, int timeout_ms)
{
	cl_sync *s = e->sync;
	int idx[64];
	if (n < 0 || n > (int)CL_ARRAY_LEN(idx))
		return cl_err(CLEAVE_EINVAL, "too many projections (max %d)",
		              (int)CL_ARRAY_LEN(idx));
	for (int i = 0; i < n; i++) {
		idx[i] = cleave_projection_find(e, names[i]);
		if (idx[i] < 0)
			return idx[i];
	}
	int64_t deadline = cl_mono_us() + (int64_t)timeout_ms * 1000;
	int rc;
	pthread_mutex_lock(&s->appmu);
	for (;;) {
		rc = reached(e, idx, n, position);
		if (rc != CLEAVE_ETIMEDOUT)
			break;
		if (atomic_load(&s->stopping)) {
			rc = CLEAVE_ESHUTDOWN;
			break;
		}
		if (cl_mono_us() >= deadline)
			break;
		struct timespec ts;
		deadline_ts(deadline, &ts);
		pthread_cond_timedwait(&s->appcond, &s->appmu, &ts);
	}
	pthread_mutex_unlock(&s->appmu);
	if (rc == CLEAVE_ETIMEDOUT)
		return cl_err(rc, "position %lld not reached in %d ms",
		              (long long)position, timeout_ms);
	if (rc == CLEAVE_EPARKED)
		return cl_err(rc, "a projection is parked before position %lld",
		              (long long)position);
	if (rc == CLEAVE_ESHUTDOWN)
		return cl_err(rc, "shutting down");
	return 0;
}

int cleave_query_position(cleave_engine *e, const char *name, int64_t *out)
{
	int q = name ? cl_nametab_get(&e->query_idx, name) : -1;
	if (q < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown query '%s'",
		              name ? name : "");
	int64_t min = cl_log_head(e);
	const int *idx = &e->query_reads[q * e->query_maxreads];
	for (int i = 0; i < e->query_nreads[q]; i++) {
		int64_t p = cl_proj_position(&e->sync->proj[idx[i]]);
		if (p < min)
			min = p;
	}
	*out = min;
	return 0;
}

void cleave_query_lagging(cleave_engine *e, const char *name,
			  int64_t position, char *out, size_t cap)
{
	int q = name ? cl_nametab_get(&e->query_idx, name) : -1;
	size_t n = 0;
	if (cap)
		out[0] = 0;
	if (q < 0 || !cap)
		return;
	const int *idx = &e->query_reads[q * e->query_maxreads];
	for (int i = 0; i < e->query_nreads[q]; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(e, idx[i], &st) ||
		    st.position >= position)
			continue;
		const char *state = st.state == CLEAVE_PROJ_PARKED ? "parked"
				    : st.failing			? "failing"
									: NULL;
		int w = snprintf(out + n, cap - n, "%s%s at %lld", n ? "; " : "",
				 st.name, (long long)st.position);
		if (w > 0 && (size_t)w < cap - n)
			n += (size_t)w;
		if (state && n < cap) {
			w = snprintf(out + n, cap - n, " (%s: %s)", state,
				     st.last_error[0] ? st.last_error : "?");
			if (w > 0 && (size_t)w < cap - n)
				n += (size_t)w;
		}
	}
}

/* ---- watches ------------------------------------------------------------ */

static void *watcher_main(void *arg)
{
	cleave_engine *e = arg;
	cl_sync *s = e->sync;
	cl_thread_name("cl-watch");
	cl_watch *fire = NULL;
	int *rcs = NULL;
	int cap = 0;
	pthread_mutex_lock(&s->appmu);
	while (s->watcher_running) {
		uint64_t seq = s->app_seq;
		int64_t now = cl_mono_us(), next = now + 1000000;
		int nfire = 0;
		if (cap < s->nwatches) {
			cap = s->capwatches;
			cl_watch *f = realloc(fire, (size_t)cap * sizeof(*f));
			int *r = realloc(rcs, (size_t)cap * sizeof(*r));
			if (f)
				fire = f;
			if (r)
				rcs = r;
			if (!f || !r) {
				cap = 0;
				pthread_mutex_unlock(&s->appmu);
				cl_sleep_ms(10);
				pthread_mutex_lock(&s->appmu);
				continue;
			}
		}
		for (int i = 0; i < s->nwatches;) {
			cl_watch *w = &s->watches[i];
			int q = w->query;
			int rc =
			    reached(e, &e->query_reads[q * e->query_maxreads],
			            e->query_nreads[q], w->position);
			if (rc == CLEAVE_ETIMEDOUT && now < w->deadline_us) {
				if (w->deadline_us < next)
					next = w->deadline_us;
				i++;
				continue;
			}
			fire[nfire] = *w;
			rcs[nfire++] = rc;
			*w = s->watches[--s->nwatches];
		}
		if (nfire) {
			pthread_mutex_unlock(&s->appmu);
			for (int i = 0; i < nfire; i++)
				fire[i].fn(fire[i].arg, rcs[i]);
			pthread_mutex_lock(&s->appmu);
			continue;
		}
		if (s->app_seq == seq && s->watcher_running) {
			struct timespec ts;
			deadline_ts(next, &ts);
			pthread_cond_timedwait(&s->appcond, &s->appmu, &ts);
		}
	}
	/* shutdown: everyone still waiting hears so */
	while (s->nwatches) {
		cl_watch w = s->watches[--s->nwatches];
		pthread_mutex_unlock(&s->appmu);
		w.fn(w.arg, CLEAVE_ESHUTDOWN);
		pthread_mutex_lock(&s->appmu);
	}
	pthread_mutex_unlock(&s->appmu);
	free(fire);
	free(rcs);
	return NULL;
}

int cl_watch_start(cleave_engine *e)
{
	cl_sync *s = e->sync;
	s->watcher_running = true;
	if (pthread_create(&s->watcher, NULL, watcher_main, e)) {
		s->watcher_running = false;
		return cl_err(CLEAVE_EINTERNAL, "cannot start watcher thread");
	}
	return 0;
}

void cl_watch_stop(cleave_engine *e)
{
	cl_sync *s = e->sync;
	pthread_mutex_lock(&s->appmu);
	bool running = s->watcher_running;
	s->watcher_running = false;
	atomic_store(&s->stopping, true);
	pthread_cond_broadcast(&s->appcond);
	pthread_mutex_unlock(&s->appmu);
	if (running)
		pthread_join(s->watcher, NULL);
}

int cleave_watch_position(cleave_engine *e, const char *query, int64_t position,
                          int timeout_ms, cleave_watch_fn fn, void *arg)
{
	cl_sync *s = e->sync;
	int q = query ? cl_nametab_get(&e->query_idx, query) : -1;
	if (q < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown query '%s'",
		              query ? query : "");
	pthread_mutex_lock(&s->appmu);
	if (!s->watcher_running) {
		pthread_mutex_unlock(&s->appmu);
		return cl_err(CLEAVE_ESHUTDOWN, "shutting down");
	}
	if (s->nwatches >= MAX_WATCHES) {
		pthread_mutex_unlock(&s->appmu);
		return cl_err(CLEAVE_EBUSY,
		              "too many clients waiting for a position "
		              "(max %d)",
		              MAX_WATCHES);
	}
	if (s->nwatches == s->capwatches) {
		int cap = s->capwatches ? s->capwatches * 2 : 64;
		cl_watch *w = realloc(s->watches, (size_t)cap * sizeof(*w));
		if (!w) {
			pthread_mutex_unlock(&s->appmu);
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		}
		s->watches = w;
		s->capwatches = cap;
	}
	cl_watch *w = &s->watches[s->nwatches++];
	w->query = q;
	w->position = position;
	w->deadline_us = cl_mono_us() + (int64_t)timeout_ms * 1000;
	w->fn = fn;
	w->arg = arg;
	s->app_seq++;
	pthread_cond_broadcast(&s->appcond);
	pthread_mutex_unlock(&s->appmu);
	return 0;
}
