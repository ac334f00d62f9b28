/*
 * follow.c — query nodes: more engines serving queries beside the one that
 * writes.
 *
 * The writer keeps its key/value read models in Redis (--read-store
 * redis://…) and publishes its catalog (which generation of each
 * projection is live) there as PREFIX|catalog.  A query node opens the
 * same log read-only (the writer's SQLite write.db as "sqlite:DIR", or the
 * same PostgreSQL) and the same Redis, and:
 *
 *  - serves the writer's Redis copies as they are ("foreign" copies, read
 *    only: never set up, written or dropped here);
 *  - runs its own copies of the SQL projections (search) under its own
 *    --data, from the log, like any engine;
 *  - on one thread ("cl-follow"), every FOLLOW_TICK_MS: reads the log
 *    head (wakes its runners), each foreign copy's checkpoint (wakes
 *    min_position waits), and the catalog (opens a switched-to
 *    generation and serves it; the writer keeps the old one readable for
 *    CL_SHARED_DROP_GRACE_S seconds meanwhile).
 *
 * So a query node's answers state their position like the writer's, and
 * read-your-writes works across nodes: a client that wrote at position P
 * on the writer asks a query node with min_position=P.  Polling keeps the
 * node independent of the writer's process (no connection between them);
 * its cost is a few Redis commands and one log query per tick.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "live/live.h"
#include "sync/sync_int.h"

#define FOLLOW_TICK_MS 2
#define CATALOG_EVERY  10 /* ticks; every tick while a switch waits */

/* gen and version of projection `name`'s live copy in a catalog text. */
static int catalog_gen(const char *text, const char *name, int *gen,
                       int *version)
{
	cJSON *j = cJSON_Parse(text);
	cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "projections");
	cJSON *o = cJSON_GetObjectItemCaseSensitive(ps, name);
	cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "live");
	cJSON *g = cJSON_GetObjectItemCaseSensitive(l, "gen");
	cJSON *v = cJSON_GetObjectItemCaseSensitive(l, "version");
	int rc = cJSON_IsNumber(g) && cJSON_IsNumber(v) ? 0 : CLEAVE_ENOTFOUND;
	if (!rc) {
		*gen = g->valueint;
		*version = v->valueint;
	}
	cJSON_Delete(j);
	return rc;
}

/* A followed copy that does not exist yet: lent to no query (reopening,
 * so they answer 503), its checkpoint never read. */
static int placeholder(cl_proj *p, cl_copy **out)
{
	cl_copy *c = calloc(1, sizeof(*c));
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	c->proj = p;
	c->def = p->def;
	c->version = p->def->version;
	c->gen = 0;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->cmu, NULL);
	c->foreign = true;
	c->unsettled = true;
	c->reopening = true;
	c->failing = true;
	snprintf(c->last_error, sizeof(c->last_error),
	         "the writer's catalog cannot be read yet");
	*out = c;
	return 0;
}

/* Opens the writer's live copy of p, as its catalog names it (read once
 * for all the projections, and kept as the catalog followed). */
int cl_follow_open(cleave_engine *e, cl_proj *p)
{
	cl_sync *s = e->sync;
	int gen = 0, version = 0, rc;
	if (!s->catalog_seen && !s->catalog_unread) {
		rc = s->shared->meta_get(s->root_store, "catalog",
		                         &s->catalog_seen);
		if (rc == CLEAVE_EIO) {
			/* the store is down: the node starts, serving these
			 * read models (503) once the catalog can be read */
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
			       "query node: cannot read the writer's catalog "
			       "in %s (%s); its read models are served once "
			       "it can",
			       s->shared_root, cleave_errmsg());
			s->catalog_unread = true;
		} else if (rc) {
			return rc;
		} else {
			s->catalog_current = true;
		}
	}
	if (s->catalog_unread) {
		/* a stand-in that serves nothing until follow_catalog
		 * opens the copy the catalog names */
		if ((rc = placeholder(p, &p->live)))
			return rc;
		p->followed = true;
		return 0;
	}
	if (!s->catalog_seen ||
	    catalog_gen(s->catalog_seen, p->def->name, &gen, &version))
		return cl_err(CLEAVE_ENOTFOUND,
		              "projection %s: the writer has published no "
		              "copy in %s yet (start the writer first)",
		              p->def->name, s->shared_root);
	if ((rc = cl_copy_open(p, gen, version, true, &p->live)))
		return rc;
	p->followed = true;
	return 0;
}

void cl_follow_publish(cleave_engine *e, const char *catalog)
{
	cl_sync *s = e->sync;
	if (!s->root_store || e->cfg.query_node || e->cfg.read_only)
		return;
	if (s->shared->meta_set(s->root_store, "catalog", catalog))
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "publishing the catalog for query nodes in %s: %s",
		       s->shared_root, cleave_errmsg());
}

/* Serves the generations the writer's catalog names; a copy that cannot
 * be opened yet is tried again at the next look. */
static void follow_catalog(cleave_engine *e)
{
	cl_sync *s = e->sync;
	char *text = NULL;
	if (s->shared->meta_get(s->root_store, "catalog", &text) || !text)
		return;
	s->catalog_unread = false;
	if (s->catalog_seen && !strcmp(text, s->catalog_seen)) {
		free(text);
		return;
	}
	bool all = true;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &s->proj[i];
		int gen, version;
		if (!p->followed ||
		    catalog_gen(text, p->def->name, &gen, &version) ||
		    (p->live->gen == gen && p->live->version == version))
			continue;
		cl_copy *c;
		if (cl_copy_open(p, gen, version, true, &c)) {
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
			       "projection %s: following g%d: %s", p->def->name,
			       gen, cleave_errmsg());
			all = false;
			continue;
		}
		if (atomic_load(&c->applied) < atomic_load(&p->live->applied)) {
			/* the writer switches when the new copy has caught
			 * up, but its old runner may apply a little more
			 * before it stops: serving the new one now would go
			 * back in time.  Look again at the next tick. */
			cl_copy_unref(c);
			all = false;
			continue;
		}
		cl_copy *old = cl_proj_swap_live(p, c);
		cl_live_publish_proj(e, p->index);
		cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, atomic_load(&c->applied),
		       "projection %s: the writer switched to g%d (v%d); "
		       "serving it",
		       p->def->name, gen, version);
		cl_copy_unref(old);
	}
	if (all) {
		free(s->catalog_seen);
		s->catalog_seen = text;
	} else {
		free(text);
	}
	s->catalog_current = all;
	cl_applied_notify(e);
}

/* Mirrors each foreign copy's checkpoint; true when one moved. */
static bool follow_checkpoints(cleave_engine *e)
{
	bool moved = false;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->sync->proj[i];
		if (!p->followed)
			continue;
		cl_copy *c = p->live; /* only this thread replaces it */
		if (c->unsettled)
			continue; /* a stand-in: no store yet */
		cleave_rtx *tx;
		int64_t pos = 0;
		int rc = c->store->m->begin(c->store, false, &tx);
		if (!rc) {
			rc = c->store->m->checkpoint_get(tx, &pos);
			cl_rtx_abort(tx);
		}
		if (rc) {
			if (!c->failing)
				cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, -1,
				       "projection %s: following %s: %s",
				       p->def->name, c->path, cleave_errmsg());
			cl_copy_set_failing(c, true, cleave_errmsg());
			continue;
		}
		if (c->failing) {
			/* followed again: said once, and the error that was
			 * is no longer this copy's state */
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, pos,
			       "projection %s: following %s again",
			       p->def->name, c->path);
			cl_copy_set_failing(c, false, NULL);
			pthread_mutex_lock(&p->mu);
			c->last_error[0] = 0;
			pthread_mutex_unlock(&p->mu);
		}
		/* forward only: a copy that went back (retired and deleted
		 * before this node followed the switch, or a Redis that lost
		 * data) keeps its position, so queries refuse to answer from
		 * it (read/query.c) until the catalog or the writer moves on */
		if (pos > atomic_load(&c->applied)) {
			atomic_store(&c->applied, pos);
			pthread_mutex_lock(&p->mu); /* status reads it so */
			c->applied_total++;
			pthread_mutex_unlock(&p->mu);
			moved = true;
			/* another engine wrote it: which keys, this one
			 * cannot tell, so every reader looks again */
			cl_live_publish_proj(e, i);
		}
	}
	return moved;
}

static void *follow_main(void *arg)
{
	cleave_engine *e = arg;
	cl_thread_name("cl-follow");
	bool head_failing = false;
	int64_t beat_at = 0;
	for (unsigned tick = 0; !atomic_load(&e->sync->follower_stop); tick++) {
		int64_t head;
		int rc = e->wm->head(e->ws, &head);
		cl_beat_head(e, rc == 0);
		if (cl_mono_us() - beat_at >= 1000000) {
			cl_beat_follow(e); /* the writer's heartbeat */
			beat_at = cl_mono_us();
		}
		if (rc == 0 && head != cl_log_head(e))
			cl_log_publish(e, NULL, head); /* wakes the runners */
		/* a log that cannot be read is said, once, and so is its
		 * return: the store reconnects by itself */
		if (rc && !head_failing)
			cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, cl_log_head(e),
			       "query node: cannot read the writer's log "
			       "head: %s; retrying",
			       cleave_errmsg());
		else if (!rc && head_failing)
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, head,
			       "query node: the writer's log head is readable "
			       "again");
		head_failing = rc != 0;
		if (tick % CATALOG_EVERY == 0 || !e->sync->catalog_current)
			follow_catalog(e);
		if (follow_checkpoints(e))
			cl_applied_notify(e);
		usleep(FOLLOW_TICK_MS * 1000);
	}
	return NULL;
}

int cl_follow_start(cleave_engine *e)
{
	cl_sync *s = e->sync;
	atomic_store(&s->follower_stop, false);
	if (pthread_create(&s->follower, NULL, follow_main, e))
		return cl_err(CLEAVE_EINTERNAL, "cannot start the follower");
	s->follower_running = true;
	return 0;
}

void cl_follow_stop(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (!s->follower_running)
		return;
	atomic_store(&s->follower_stop, true);
	pthread_join(s->follower, NULL);
	s->follower_running = false;
}
