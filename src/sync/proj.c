/*
 * proj.c — the public operations on projections: count, find,
 * status, rebuild, resume, wait for a rebuild, when a position was
 * applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/sync_int.h"

/* ---- the projection table -------------------------------------------------
 */

/* One entry per name; several versions of a name may be registered (the
 * old one keeps the live copy fed during a blue-green rebuild to the new
 * one). */
int cl_sync_init(cleave_engine *e, const cleave_domain *d)
{
	int ndefs = 0, rc;
	cl_sync *s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	pthread_mutex_init(&s->catmu, NULL);
	pthread_mutex_init(&s->appmu, NULL);
	pthread_mutex_init(&s->why_mu, NULL);
	pthread_cond_init(&s->appcond, NULL);
	e->sync = s;
	while (d->projections[ndefs].name)
		ndefs++;
	if ((rc = cl_nametab_init(&e->proj_idx, (size_t)ndefs)))
		return rc;
	e->sync->proj =
	    calloc((size_t)(ndefs ? ndefs : 1), sizeof(*e->sync->proj));
	if (!e->sync->proj)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	for (int i = 0; i < ndefs; i++) {
		const cleave_projection_def *p = &d->projections[i];
		if (!cl_name_ok(p->name, 48, "lower") || !p->apply ||
		    p->version < 1 || !p->store || !cl_rstore_find(p->store))
			return cl_err(CLEAVE_EINVAL,
			              "bad projection definition '%s' (name "
			              "[a-z0-9_], version >= 1, store lmdb "
			              "or sqlite)",
			              p->name ? p->name : "");
		int k = cl_nametab_get(&e->proj_idx, p->name);
		if (k < 0) {
			k = e->nproj++;
			cl_nametab_put(&e->proj_idx, p->name, k);
			e->sync->proj[k].index = k;
			e->sync->proj[k].e = e;
		}
		cl_proj *pr = &e->sync->proj[k];
		if (pr->ndefs == (int)CL_ARRAY_LEN(pr->defs))
			return cl_err(CLEAVE_EINVAL,
			              "too many versions of '%s'", p->name);
		for (int j = 0; j < pr->ndefs; j++)
			if (pr->defs[j]->version == p->version)
				return cl_err(CLEAVE_EINVAL,
				              "projection %s v%d twice",
				              p->name, p->version);
		pr->defs[pr->ndefs++] = p;
		if (!pr->def || p->version > pr->def->version)
			pr->def = p;
	}
	return 0;
}

void cl_sync_free(cleave_engine *e)
{
	cl_nametab_free(&e->proj_idx);
	cl_sync *s = e->sync;
	if (!s)
		return;
	if (s->root_store)
		s->root_store->m->close(s->root_store);
	free(s->proj);
	free(s->watches);
	free(s->shared_root);
	free(s->owner);
	free(s->catalog_seen);
	pthread_mutex_destroy(&s->catmu);
	pthread_mutex_destroy(&s->appmu);
	pthread_mutex_destroy(&s->why_mu);
	pthread_cond_destroy(&s->appcond);
	free(s);
	e->sync = NULL;
}

cl_proj *cl_proj_at(cleave_engine *e, int i)
{
	return &e->sync->proj[i];
}

const char *cl_proj_name(const cl_proj *p)
{
	return p->def->name;
}

/* ---- operations ------------------------------------------------------------
 */

int cl_proj_find_own(cleave_engine *e, const char *name, const char *verb)
{
	int k = cleave_projection_find(e, name);
	if (k >= 0 && e->sync->proj[k].followed)
		return cl_err(CLEAVE_EREADONLY,
		              "projection %s is written by the writer this "
		              "query node follows: %s it there",
		              name, verb);
	return k;
}

int cleave_projection_count(cleave_engine *e)
{
	return e->nproj;
}

int cleave_projection_find(cleave_engine *e, const char *name)
{
	int k = name ? cl_nametab_get(&e->proj_idx, name) : -1;
	return k < 0 ? cl_err(CLEAVE_ENOTFOUND, "unknown projection '%s'",
	                      name ? name : "")
	             : k;
}

const char *cleave_proj_state_name(cleave_proj_state s)
{
	switch (s) {
	case CLEAVE_PROJ_LIVE:
		return "live";
	case CLEAVE_PROJ_REBUILDING:
		return "rebuilding";
	case CLEAVE_PROJ_PARKED:
		return "parked";
	}
	return "unknown";
}

int cleave_projection_status(cleave_engine *e, int i, cleave_proj_status *out)
{
	if (i < 0 || i >= e->nproj)
		return cl_err(CLEAVE_ENOTFOUND, "no projection #%d", i);
	cl_proj *p = &e->sync->proj[i];
	int64_t head = cl_log_head(e), now = cl_now_us();
	memset(out, 0, sizeof(*out));
	out->name = p->def->name;
	pthread_mutex_lock(&p->mu);
	cl_copy *l = p->live, *b = p->build;
	out->version = l->version;
	out->position = atomic_load(&l->applied);
	out->lag_events = head > out->position ? head - out->position : 0;
	out->applied_total = (int64_t)l->applied_total;
	uint64_t sum = 0;
	int secs = 0;
	for (int k = 0; k < 10; k++)
		if (l->rate_sec[k] && now / 1000000 - l->rate_sec[k] < 10 &&
		    l->rate_sec[k] != now / 1000000) {
			sum += l->rate_events[k];
			secs++;
		}
	out->events_per_s = secs ? (double)sum / 9.0 : 0;
	out->dead_letters = l->dead_letters + (b ? b->dead_letters : 0);
	out->failing = l->failing || (b && b->failing);
	out->state = l->parked ? CLEAVE_PROJ_PARKED
	             : b       ? CLEAVE_PROJ_REBUILDING
	                       : CLEAVE_PROJ_LIVE;
	if (l->parked)
		out->parked_position = l->parked_position;
	else if (b && b->parked)
		out->parked_position = b->parked_position;
	snprintf(out->last_error, sizeof(out->last_error), "%s",
	         l->last_error[0] ? l->last_error
	         : b              ? b->last_error
	                          : "");
	if (b) {
		out->building_version = b->version;
		out->building_position = atomic_load(&b->applied);
	}
	int64_t pending = atomic_load(&l->pending_ts);
	pthread_mutex_unlock(&p->mu);
	if (out->lag_events > 0) {
		int64_t ts = cl_log_ring_ts(e, out->position + 1);
		if (!ts)
			ts = pending;
		if (ts && now > ts)
			out->lag_seconds = (double)(now - ts) / 1e6;
	}
	return 0;
}

int cleave_projection_rebuild(cleave_engine *e, const char *name)
{
	cl_sync *s = e->sync;
	int k = cl_proj_find_own(e, name, "rebuild");
	if (k < 0)
		return k;
	if (e->cfg.read_only || e->cfg.no_projections)
		return cl_err(CLEAVE_EINVAL,
		              "rebuild needs an engine that runs projections");
	cl_proj *p = &s->proj[k];
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&s->stopping)) {
		pthread_mutex_unlock(&p->mu);
		return cl_err(CLEAVE_ESHUTDOWN, "the engine is stopping");
	}
	if (p->build) {
		pthread_mutex_unlock(&p->mu);
		return cl_err(CLEAVE_EBUSY,
		              "a rebuild of %s is already running", name);
	}
	int gen = p->next_gen++;
	pthread_mutex_unlock(&p->mu);
	cl_copy *c;
	int rc = cl_copy_open(p, gen, p->def->version, false, &c);
	if (rc)
		return rc;
	if (atomic_load(&c->applied) != 0) {
		/* a stale directory with this generation: start clean */
		char path[4096];
		snprintf(path, sizeof(path), "%s", c->store->path);
		c->store->m->close(c->store);
		pthread_mutex_destroy(&c->cmu);
		free(c->path);
		free(c);
		cl_copy_methods(e, p->def->store)->drop(path);
		if ((rc = cl_copy_open(p, gen, p->def->version, false, &c)))
			return rc;
	}
	c->building = true;
	pthread_mutex_lock(&p->mu);
	p->build = c;
	pthread_mutex_unlock(&p->mu);
	if ((rc = cl_catalog_save(e)) || (rc = cl_copy_start(c))) {
		pthread_mutex_lock(&p->mu);
		p->build = NULL;
		pthread_mutex_unlock(&p->mu);
		c->retired = true;
		cl_copy_unref(c);
		return rc;
	}
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
	       "projection %s: rebuild into g%d started", name, gen);
	return 0;
}

int cleave_projection_resume(cleave_engine *e, const char *name)
{
	int k = cl_proj_find_own(e, name, "resume");
	if (k < 0)
		return k;
	cl_proj *p = &e->sync->proj[k];
	bool any = false;
	pthread_mutex_lock(&p->mu);
	cl_copy *cs[2] = {p->live, p->build};
	for (int i = 0; i < 2; i++)
		if (cs[i] && cs[i]->parked) {
			cs[i]->parked = false;
			cs[i]->last_error[0] = 0;
			any = true;
		}
	pthread_cond_broadcast(&p->resume);
	pthread_mutex_unlock(&p->mu);
	if (!any)
		return cl_err(CLEAVE_EINVAL, "projection %s is not parked",
		              name);
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1, "projection %s resumed",
	       name);
	cl_applied_notify(e);
	return 0;
}

int cleave_projection_wait_rebuilt(cleave_engine *e, const char *name,
                                   int timeout_ms)
{
	int k = cleave_projection_find(e, name);
	if (k < 0)
		return k;
	cl_proj *p = &e->sync->proj[k];
	int64_t until = cl_mono_us() + (int64_t)timeout_ms * 1000;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		bool building = p->build != NULL;
		bool parked = building && p->build->parked;
		pthread_mutex_unlock(&p->mu);
		if (!building)
			return 0;
		if (parked)
			return cl_err(CLEAVE_EPARKED,
			              "the new copy of %s is parked", name);
		if (cl_mono_us() >= until)
			return cl_err(CLEAVE_ETIMEDOUT,
			              "rebuild of %s still running", name);
		cl_sleep_ms(5);
	}
}

int cleave_projection_applied_at(cleave_engine *e, int i, int64_t position,
                                 int64_t *when_us)
{
	if (i < 0 || i >= e->nproj)
		return CLEAVE_ENOTFOUND;
	cl_proj *p = &e->sync->proj[i];
	int rc = CLEAVE_ENOTFOUND;
	*when_us = 0;
	pthread_mutex_lock(&p->mu);
	cl_copy *c = p->live;
	if (atomic_load(&c->applied) >= position) {
		rc = 0;
		unsigned n = CL_MIN(c->hist_n, 256u);
		for (unsigned k = 0; k < n; k++) {
			unsigned idx = (c->hist_n - n + k) % 256;
			if (c->hist_pos[idx] >= position) {
				if (k > 0 || c->hist_n <= 256)
					*when_us = c->hist_us[idx];
				break;
			}
		}
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}
