/*
 * shared.c — the shared read store (--read-store scheme://…, a Redis): which
 * backend and root, this engine's claim on the copies it writes there,
 * and the root itself, where the catalog for query nodes is published.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/sync_int.h"

/* --read-store: NULL or "embedded" keeps every copy under DATA/read; the
 * URI of a shared store (redis://…) puts the copies of key/value
 * projections there, while SQL projections stay embedded. */
static int read_store_open(cleave_engine *e, const char *rs)
{
	cl_sync *s = e->sync;
	if (!rs || !*rs || !strcmp(rs, "embedded"))
		return 0;
	s->shared = cl_rstore_for_uri(rs);
	if (!s->shared)
		return cl_err(CLEAVE_EINVAL,
		              "read store '%s': expected 'embedded' or %s", rs,
		              cl_rstore_uri_forms());
	return s->shared->root_parse(rs, &s->shared_root);
}

int cl_sync_shared_check(cleave_engine *e, const cleave_config *cfg)
{
	int rc = read_store_open(e, cfg->read_store);
	if (rc)
		return rc;
	if (cfg->query_node && !e->sync->shared)
		return cl_err(CLEAVE_EINVAL,
		              "a query node serves the read models another "
		              "engine writes to a shared store: give "
		              "--read-store %s (the writer's)",
		              cl_rstore_uri_forms());
	return 0;
}

/* Who writes the shared store's copies: this host's data directory (which
 * exists by now), so a restart finds its own copies and another engine pointed
 * at the same prefix is refused. */
static int owner_init(cleave_engine *e)
{
	cl_sync *s = e->sync;
	char hn[256] = "", *rp = realpath(e->data_dir, NULL);
	gethostname(hn, sizeof(hn) - 1);
	size_t on = strlen(hn) + strlen(rp ? rp : e->data_dir) + 2;
	if ((s->owner = malloc(on)))
		snprintf(s->owner, on, "%s:%s", hn, rp ? rp : e->data_dir);
	free(rp);
	return s->owner ? 0 : cl_err(CLEAVE_ENOMEM, "out of memory");
}

int cl_sync_shared_open(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (!s->shared)
		return 0;
	int rc = owner_init(e);
	if (rc)
		return rc;
	/* the root: the catalog query nodes follow, and the claim that keeps
	 * a second writing engine off this prefix */
	cl_rstore_opts ro = {.read_only = e->cfg.read_only || e->cfg.query_node,
	                     .owner = s->owner};
	/* a writer or a node starts while the store is down (a writer's
	 * claim waits for it) */
	ro.lazy = !e->cfg.read_only;
	return s->shared->open(s->shared_root, &ro, &s->root_store);
}
