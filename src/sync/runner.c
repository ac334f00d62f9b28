/*
 * runner.c — the runner threads: one per copy with a handler, tailing
 * the log; read-ahead for copies far behind; the blue-green switch; start
 * and stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "live/live.h"
#include "sync/sync_int.h"

/* ---- switching a rebuilt copy live -------------------------------------- */

/* See "Copies' lifetimes" in sync_int.h. */
static void stop_copy_thread(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	atomic_store(&c->stop, true);
	cl_log_notify(e);
	pthread_mutex_lock(&p->mu);
	pthread_cond_broadcast(&p->resume);
	if (c->has_thread && !c->joining) {
		c->joining = true;
		pthread_mutex_unlock(&p->mu);
		pthread_join(c->thread, NULL);
		pthread_mutex_lock(&p->mu);
		c->has_thread = false;
		c->joining = false;
		pthread_cond_broadcast(&p->resume);
	}
	while (c->has_thread)
		pthread_cond_wait(&p->resume, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

static void try_switch(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	if (atomic_load(&c->stop) || atomic_load(&e->sync->stopping))
		return; /* the catalog still names it: it resumes at open */
	/* the old copy's commit lock first (its runner takes it, then
	 * p->mu): its position is settled while we compare, and frozen
	 * once we switch */
	pthread_mutex_lock(&p->mu);
	cl_copy *old = p->live;
	if (old)
		atomic_fetch_add(&old->refs, 1);
	pthread_mutex_unlock(&p->mu);
	if (old)
		pthread_mutex_lock(&old->cmu);
	pthread_mutex_lock(&p->mu);
	/* Caught up means caught up with what is served: at least the old
	 * copy's position (frozen from here on), not the log's head, which
	 * under sustained writes a tailing copy is seldom exactly at. */
	int64_t pos = atomic_load(&c->applied);
	if (p->live != old || p->build != c ||
	    (old ? pos < atomic_load(&old->applied)
	         : pos < cl_log_head(e))) {
		pthread_mutex_unlock(&p->mu);
		if (old) {
			pthread_mutex_unlock(&old->cmu);
			cl_copy_unref(old);
		}
		return;
	}
	if (!c->fresh) {
		/* The rebuild applied batches of up to apply_batch_max
		 * events, and a store keeps what its largest transaction
		 * needed (LMDB holds a write transaction's dirty pages on
		 * its environment's free list until the environment
		 * closes: ~10 MiB for a batch of order documents).  Nobody
		 * holds the copy yet, so close and reopen it once before it
		 * goes live (if events came meanwhile, the runner applies
		 * them and comes back). */
		c->fresh = true;
		pthread_mutex_unlock(&p->mu);
		if (old) {
			pthread_mutex_unlock(&old->cmu);
			cl_copy_unref(old);
		}
		if (cl_copy_reopen(c) == 0)
			try_switch(c); /* at once, not at the runner's
			                  next wakeup */
		return;
	}
	p->live = c;
	p->build = NULL;
	c->building = false;
	if (old) {
		old->retired = true;
		old->frozen = true;
	}
	pthread_mutex_unlock(&p->mu);
	if (old) {
		pthread_mutex_unlock(&old->cmu);
		cl_copy_unref(old); /* p->live's reference is dropped below */
	}
	int rc = cl_catalog_save(e);
	cl_log(e, rc ? CLEAVE_LOG_ERROR : CLEAVE_LOG_INFO, NULL, NULL, pos,
	       "projection %s: g%d (v%d) is live at position %lld%s%s",
	       p->def->name, c->gen, c->version, (long long)pos,
	       rc ? "; catalog write failed: " : "", rc ? cleave_errmsg() : "");
	cl_applied_notify(e);
	cl_live_publish_proj(e, p->index); /* its readers see the new copy */
	if (old) {
		stop_copy_thread(old);
		cl_copy_unref(old);
	}
}

/* ---- the runner thread ------------------------------------------------------
 */

/* ---- catching up from the store: read ahead on another thread ----------- */

/* A copy far behind the ring (a rebuild, a restart) reads the store.  One
 * thread reads and decodes the next ranges while the runner applies the
 * previous one, so the two halves of the work use both cores.  At most
 * two ranges wait, so memory stays bounded by the batch size. */
typedef struct prefetch {
	cl_copy *c;
	int64_t pos, end;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	cl_evlist *q[2];
	int nq;
	bool done, stop;
	int rc;
} prefetch;

static void *prefetch_main(void *arg)
{
	prefetch *f = arg;
	cleave_engine *e = f->c->proj->e;
	const cleave_projection_def *def = f->c->def;
	cl_wreader *rd = NULL;
	cl_thread_name("cl-read:%s", def->name);
	int max = e->cfg.apply_batch_max;
	int64_t pos = f->pos;
	int rc = 0;
	while (pos < f->end && !atomic_load(&f->c->stop)) {
		cl_evlist *l = calloc(1, sizeof(*l));
		if (!l || (rc = cl_evlist_reserve(l, max)) ||
		    (rc = cl_collect_store(
		         e, &rd, def->event_types, pos,
		         CL_MIN(f->end, pos + (int64_t)max * 16), max, l))) {
			if (l)
				cl_evlist_free(l);
			free(l);
			if (!rc)
				rc = cl_err(CLEAVE_ENOMEM, "out of memory");
			break;
		}
		pos = l->upto;
		pthread_mutex_lock(&f->mu);
		while (f->nq == 2 && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->stop) {
			pthread_mutex_unlock(&f->mu);
			cl_evlist_free(l);
			free(l);
			break;
		}
		f->q[f->nq++] = l;
		pthread_cond_broadcast(&f->cv);
		pthread_mutex_unlock(&f->mu);
	}
	cl_reader_put(e, rd);
	pthread_mutex_lock(&f->mu);
	f->done = true;
	f->rc = rc;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Applies (pos, end] with a read-ahead thread. Returns false when the
 * copy stopped, parked, or could not read. */
static bool catch_up(cl_copy *c, int64_t pos, int64_t end)
{
	prefetch f = {.c = c, .pos = pos, .end = end};
	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	pthread_t th;
	bool ok = true;
	if (pthread_create(&th, NULL, prefetch_main, &f)) {
		pthread_mutex_destroy(&f.mu);
		pthread_cond_destroy(&f.cv);
		return true; /* the plain path will do */
	}
	for (;;) {
		pthread_mutex_lock(&f.mu);
		while (!f.nq && !f.done)
			pthread_cond_wait(&f.cv, &f.mu);
		if (!f.nq) {
			pthread_mutex_unlock(&f.mu);
			break;
		}
		cl_evlist *l = f.q[0];
		f.q[0] = f.q[1];
		f.nq--;
		pthread_cond_broadcast(&f.cv);
		pthread_mutex_unlock(&f.mu);
		if (l->upto < end && l->n)
			atomic_store(&c->pending_ts, l->ev[l->n - 1]->ts_us);
		ok = cl_apply_list(c, l);
		cl_evlist_free(l);
		free(l);
		if (!ok)
			break;
	}
	pthread_mutex_lock(&f.mu);
	f.stop = true;
	pthread_cond_broadcast(&f.cv);
	pthread_mutex_unlock(&f.mu);
	pthread_join(th, NULL);
	for (int i = 0; i < f.nq; i++) {
		cl_evlist_free(f.q[i]);
		free(f.q[i]);
	}
	if (f.rc) {
		cl_log(c->proj->e, CLEAVE_LOG_ERROR, NULL, NULL, pos,
		       "projection %s: reading the log: %s", c->proj->def->name,
		       cleave_errmsg());
		ok = false;
	}
	pthread_mutex_destroy(&f.mu);
	pthread_cond_destroy(&f.cv);
	return ok;
}

/* A quiet copy in a shared store checks now and then that the store
 * still has what it applied: a write transaction's begin does (Redis:
 * check_ckpt).  A store that lost data is reopened and
 * applied again from its checkpoint without waiting for a new event. */
static void idle_check(cl_copy *c)
{
	cleave_rtx *tx;
	int rc = c->store->m->begin(c->store, true, &tx);
	if (rc == 0) {
		c->store->m->abort(tx);
		return;
	}
	cl_proj *p = c->proj;
	cl_log(p->e, CLEAVE_LOG_ERROR, NULL, NULL, atomic_load(&c->applied),
	       "projection %s: store check: %s", p->def->name, cleave_errmsg());
	pthread_mutex_lock(&p->mu);
	snprintf(c->last_error, sizeof(c->last_error), "%s", cleave_errmsg());
	c->failing = true;
	pthread_mutex_unlock(&p->mu);
	if (rc == CLEAVE_EIO && cl_copy_reopen(c) == 0) {
		pthread_mutex_lock(&p->mu);
		c->failing = false;
		pthread_mutex_unlock(&p->mu);
	}
}

static void *runner_main(void *arg)
{
	cl_copy *c = arg;
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	cl_wreader *rd = NULL;
	cl_thread_name("cl-run:%s", c->def->name);
	cl_evlist l = {0};
	if (c->unsettled && !cl_copy_settle(c))
		return NULL; /* stopped before its store came back */
	while (!atomic_load(&c->stop)) {
		pthread_mutex_lock(&p->mu);
		while (c->parked && !atomic_load(&c->stop))
			pthread_cond_wait(&p->resume, &p->mu);
		pthread_mutex_unlock(&p->mu);
		if (atomic_load(&c->stop))
			break;
		int64_t pos = atomic_load(&c->applied);
		int64_t head = cl_log_head(e);
		if (pos >= head) {
			if (c->building)
				try_switch(c);
			/* 1 s: a fallback only, commits wake us */
			if (cl_log_wait(e, pos, 1000, &c->stop) &&
			    cl_rs_has(c->store->m, CL_RS_SHARED))
				idle_check(c);
			continue;
		}
		if (head - pos > 4 * (int64_t)e->cfg.apply_batch_max &&
		    !cl_log_ring_has(e, pos + 1)) {
			if (!catch_up(c, pos, head) && !atomic_load(&c->stop) &&
			    !c->parked)
				cl_wait_backoff(c, 200);
			continue;
		}
		int rc =
		    cl_collect(c, &rd, pos, head, e->cfg.apply_batch_max, &l);
		if (rc || l.upto <= pos) {
			if (rc)
				cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, pos,
				       "projection %s: reading the log: %s",
				       p->def->name, cleave_errmsg());
			cl_evlist_clear(&l);
			if (rd) {
				cl_reader_put(e, rd);
				rd = NULL;
			}
			cl_wait_backoff(c, 200);
			continue;
		}
		if (rd && l.nrefs) {
			/* tailing the ring again: the store reader goes back
			 * to the pool (which closes it once idle) */
			cl_reader_put(e, rd);
			rd = NULL;
		}
		if (l.upto < head && l.n)
			atomic_store(&c->pending_ts, l.ev[l.n - 1]->ts_us);
		cl_apply_list(c, &l);
		cl_evlist_clear(&l);
		if (c->building && !atomic_load(&c->stop))
			try_switch(c);
	}
	cl_evlist_free(&l);
	cl_reader_put(e, rd);
	return NULL;
}

/* Starts c's runner, unless the engine is stopping (checked under p->mu,
 * where cl_sync_stop reads the copies it stops: a copy is either seen
 * there or never started). */
int cl_copy_start(cl_copy *c)
{
	if (!c->def)
		return 0; /* frozen: an old version nobody can feed */
	cl_proj *p = c->proj;
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&p->e->sync->stopping)) {
		rc = cl_err(CLEAVE_ESHUTDOWN, "the engine is stopping");
	} else if (!c->has_thread) {
		atomic_store(&c->stop, false);
		if (pthread_create(&c->thread, NULL, runner_main, c))
			rc = cl_err(CLEAVE_EINTERNAL,
			            "cannot start runner thread");
		else
			c->has_thread = true;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int cl_sync_start(cleave_engine *e)
{
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->sync->proj[i];
		if (p->followed)
			continue; /* written elsewhere */
		int rc = cl_copy_start(p->live);
		if (!rc && p->build)
			rc = cl_copy_start(p->build);
		if (rc)
			return rc;
	}
	return 0;
}

void cl_sync_stop(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (!e->sync || !s->proj)
		return;
	atomic_store(&s->stopping, true);
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &s->proj[i];
		if (!p->def)
			continue;
		/* references of our own: the build copy's runner may switch,
		 * retire and release the live copy while we stop them */
		pthread_mutex_lock(&p->mu);
		cl_copy *a = p->build, *b = p->live;
		if (a)
			atomic_fetch_add(&a->refs, 1);
		if (b)
			atomic_fetch_add(&b->refs, 1);
		pthread_mutex_unlock(&p->mu);
		if (a)
			stop_copy_thread(a);
		if (b)
			stop_copy_thread(b);
		cl_copy_unref(a);
		cl_copy_unref(b);
	}
}

void cl_sync_close(cleave_engine *e)
{
	if (!e->sync || !e->sync->proj)
		return;
	bool mark = e->sync->opened && !e->cfg.read_only;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->sync->proj[i];
		if (!p->def)
			continue;
		if (p->build)
			cl_copy_unref(p->build);
		if (p->live)
			cl_copy_unref(p->live);
		p->build = p->live = NULL;
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->resume);
	}
	/* every store is closed, hence on disk: a clean end */
	if (mark && cl_run_mark(e, true))
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "could not record the clean shutdown: %s; read models "
		       "will be rebuilt if the machine restarts first",
		       cleave_errmsg());
}
