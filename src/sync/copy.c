/*
 * copy.c — a read-model copy's life: open, reopen after a failure,
 * lend to queries, release (the lifetime rule is in sync_int.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/sync_int.h"

/* The store of a projection's copies: a key/value projection's go to the
 * shared store when the engine was given one. */
const cl_rstore_methods *cl_copy_methods(cleave_engine *e, const char *kind)
{
	const cl_rstore_methods *m = cl_rstore_find(kind);
	if (e->sync->shared && cl_rs_has(m, CL_RS_KV))
		return e->sync->shared;
	return m;
}

bool cl_proj_remote(cl_proj *p)
{
	return cl_rs_has(cl_copy_methods(p->e, p->def->store), CL_RS_SHARED);
}

/* Where copies of that store live: DATA/read, or the shared store's
 * root. */
const char *cl_copy_root(cleave_engine *e, const cl_rstore_methods *m)
{
	return cl_rs_has(m, CL_RS_SHARED) ? e->sync->shared_root : e->read_dir;
}

static void copy_path(cleave_engine *e, const cl_rstore_methods *m,
                      const char *name, int gen, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s.g%d", cl_copy_root(e, m), name, gen);
}

static const cleave_projection_def *def_for(cl_proj *p, int version)
{
	for (int i = 0; i < p->ndefs; i++)
		if (p->defs[i]->version == version)
			return p->defs[i];
	return NULL;
}

cl_rstore_opts cl_store_opts(cleave_engine *e)
{
	cl_rstore_opts o = {0};
	o.read_only = e->cfg.read_only;
	o.nosync =
	    !e->cfg.read_sync || e->cfg.durability == CLEAVE_DURABILITY_OS;
	o.map_size = e->cfg.lmdb_map_size;
	o.owner = e->sync->owner;
	/* a writer starts while its shared store is down: the copies there
	 * catch up once it is back (runner.c), commands work meanwhile */
	o.lazy = !e->cfg.read_only;
	return o;
}

static int copy_setup(cl_copy *c)
{
	if (!c->def || !c->def->setup || c->proj->e->cfg.read_only)
		return 0;
	cleave_rtx *tx;
	int rc = c->store->m->begin(c->store, true, &tx);
	if (rc)
		return rc;
	rc = c->def->setup(tx);
	if (rc) {
		cl_rtx_abort(tx);
		return rc;
	}
	return cl_rtx_commit(tx);
}

int cl_copy_new(cl_proj *p, int gen, int version, cl_copy **out)
{
	return cl_copy_open(p, gen, version, false, out);
}

/* The copy's checkpoint and dead letters, as its store holds them. */
static int copy_position(cl_copy *c, int64_t *pos)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	int rc = m->begin(c->store, false, &tx);
	if (rc)
		return rc;
	rc = m->checkpoint_get(tx, pos);
	if (!rc)
		rc = m->dead_letter_count(tx, &c->dead_letters);
	cl_rtx_abort(tx);
	return rc;
}

bool cl_copy_settle(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	int tries = 0;
	while (!atomic_load(&c->stop)) {
		int64_t pos = 0;
		int rc = copy_position(c, &pos);
		if (!rc) {
			atomic_store(&c->applied, pos);
			pthread_mutex_lock(&p->mu);
			c->unsettled = false;
			c->reopening = false;
			pthread_mutex_unlock(&p->mu);
			cl_copy_set_failing(c, false, NULL);
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, pos,
			       "projection %s: its store is reachable; at "
			       "position %lld",
			       p->def->name, (long long)pos);
			cl_catalog_save(e); /* nodes read it there */
			return true;
		}
		if (tries++ % 30 == 0)
			cl_copy_set_failing(c, true, cleave_errmsg());
		if (!cl_wait_backoff(c, 1000))
			break;
	}
	return false;
}

/* Opens generation gen of p at version.  A foreign copy (a query node's
 * view of one another engine writes in a shared store) is opened read-only and
 * never set up, written or dropped here. */
int cl_copy_open(cl_proj *p, int gen, int version, bool foreign, cl_copy **out)
{
	cleave_engine *e = p->e;
	const cleave_projection_def *def = def_for(p, version);
	const char *kind = def ? def->store : p->def->store;
	const cl_rstore_methods *m = cl_copy_methods(e, kind);
	char path[4096];
	copy_path(e, m, p->def->name, gen, path, sizeof(path));
	cl_copy *c = calloc(1, sizeof(*c));
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	c->proj = p;
	c->def = def;
	c->version = version;
	c->gen = gen;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->cmu, NULL);
	if (!(c->path = strdup(path))) {
		pthread_mutex_destroy(&c->cmu);
		free(c);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	cl_rstore_opts o = cl_store_opts(e);
	o.read_only |= foreign;
	c->foreign = foreign;
	int rc = m->open(path, &o, &c->store);
	if (rc)
		goto fail;
	if (!foreign && (rc = copy_setup(c)))
		goto fail;
	int64_t pos = 0;
	if ((rc = copy_position(c, &pos))) {
		if (rc != CLEAVE_EIO || foreign || !o.lazy ||
		    !cl_rs_has(m, CL_RS_SHARED))
			goto fail;
		/* its server is down: served (503) and applied once it is
		 * back and the position is known (cl_copy_settle) */
		c->unsettled = true;
		c->reopening = true;
		c->failing = true;
		snprintf(c->last_error, sizeof(c->last_error), "%s",
		         cleave_errmsg());
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "projection %s: its store cannot be reached (%s); it "
		       "is served and applied once it can",
		       p->def->name, c->last_error);
	}
	atomic_store(&c->applied, pos);
	*out = c;
	return 0;
fail : {
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
	if (c->store)
		m->close(c->store);
	pthread_mutex_destroy(&c->cmu);
	free(c->path);
	free(c);
	return cl_err(rc, "projection %s copy g%d: %s", p->def->name, gen, msg);
}
}

static void copy_destroy(cl_copy *c)
{
	const cleave_projection_def *d = c->def ? c->def : c->proj->def;
	const cl_rstore_methods *m = cl_copy_methods(c->proj->e, d->store);
	if (c->store)
		c->store->m->close(c->store);
	if (c->retired && m && !c->proj->e->cfg.read_only && !c->foreign)
		cl_rs_drop_retired(m, c->path);
	pthread_mutex_destroy(&c->cmu);
	cl_keyrec_free(&c->rec);
	free(c->path);
	free(c);
}

/* After a store failure that may have left the store unusable (LMDB
 * panics for good after a failed meta-page write, say), close it and open
 * it again.  Only when no query holds the copy: meanwhile it is not lent
 * (queries answer 503), and the runner keeps trying until it opens. */
int cl_copy_reopen(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&c->refs) > 1) {
		pthread_mutex_unlock(&p->mu);
		return CLEAVE_EBUSY;
	}
	c->reopening = true;
	pthread_mutex_unlock(&p->mu);
	const cl_rstore_methods *m = c->store->m;
	m->close(c->store);
	c->store = NULL;
	cl_rstore_opts o = cl_store_opts(e);
	int rc, tries = 0;
	while ((rc = m->open(c->path, &o, &c->store))) {
		if (tries++ % 30 == 0)
			cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, -1,
			       "projection %s: reopening %s: %s", p->def->name,
			       c->path, cleave_errmsg());
		if (!cl_wait_backoff(c, 1000))
			break; /* stopping: copy_destroy copes with no store */
	}
	if (c->store) {
		cleave_rtx *tx;
		int64_t pos = atomic_load(&c->applied);
		if (m->begin(c->store, false, &tx) == 0) {
			m->checkpoint_get(tx, &pos);
			cl_rtx_abort(tx);
		}
		atomic_store(&c->applied, pos);
		cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, pos,
		       "projection %s: store reopened at position %lld",
		       p->def->name, (long long)pos);
		/* a shared store that lost data lost the catalog published
		 * for query nodes too */
		if (e->sync->root_store && cl_rs_has(m, CL_RS_SHARED))
			cl_catalog_save(e);
	}
	pthread_mutex_lock(&p->mu);
	c->reopening = false;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void cl_copy_unref(cl_copy *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		copy_destroy(c);
}

cl_copy *cl_copy_acquire(cl_proj *p)
{
	pthread_mutex_lock(&p->mu);
	cl_copy *c = p->live;
	if (c && c->reopening)
		c = NULL;
	if (c)
		atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&p->mu);
	return c;
}

int64_t cl_proj_position(cl_proj *p)
{
	pthread_mutex_lock(&p->mu);
	int64_t pos = p->live ? atomic_load(&p->live->applied) : 0;
	pthread_mutex_unlock(&p->mu);
	return pos;
}

int64_t cl_copy_applied(const cl_copy *c)
{
	return atomic_load(&c->applied);
}

cl_rstore *cl_copy_store(const cl_copy *c)
{
	return c->store;
}

int cl_proj_reached(cl_proj *p, int64_t pos)
{
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	cl_copy *c = p->live;
	if (atomic_load(&c->applied) < pos)
		rc = c->parked && c->parked_position <= pos ? CLEAVE_EPARKED
		                                            : CLEAVE_ETIMEDOUT;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

cl_copy *cl_proj_swap_live(cl_proj *p, cl_copy *c)
{
	pthread_mutex_lock(&p->mu);
	cl_copy *old = p->live;
	p->live = c;
	pthread_mutex_unlock(&p->mu);
	return old;
}

void cl_copy_set_failing(cl_copy *c, bool on, const char *msg)
{
	cl_proj *p = c->proj;
	pthread_mutex_lock(&p->mu);
	if (on)
		snprintf(c->last_error, sizeof(c->last_error), "%s", msg);
	c->failing = on;
	pthread_mutex_unlock(&p->mu);
}
