/*
 * sync.h — the sync layer as the rest of the engine sees it: opening and
 * running the projections, lending a projection's live copy to a query,
 * waits on positions, and query nodes' following.  Projections and copies
 * are opaque here; their state is private to src/sync (sync_int.h).
 */
#ifndef CL_SYNC_H
#define CL_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "cleave.h"

typedef struct cl_proj cl_proj;
typedef struct cl_copy cl_copy;
typedef struct cl_rstore cl_rstore;

/* proj.c: the projection table, from the domain's definitions (one entry
 * per name; several versions of a name may be registered).  Fills
 * e->proj, e->nproj and e->proj_idx; freed by cl_sync_free. */
int cl_sync_init(cleave_engine *e, const cleave_domain *d);
void cl_sync_free(cleave_engine *e);
cl_proj *cl_proj_at(cleave_engine *e, int i);
const char *cl_proj_name(const cl_proj *p);

/* shared.c: --read-store and --query-node are checked before anything is
 * created; the shared store's root is opened once the data directory is
 * locked (no-ops without a shared store). */
int cl_sync_shared_check(cleave_engine *e, const cleave_config *cfg);
int cl_sync_shared_open(cleave_engine *e);

/* catalog.c: opens every projection's copies (read/catalog.json). */
int cl_sync_open(cleave_engine *e);
/* runner.c: the runner threads; close releases the copies. */
int cl_sync_start(cleave_engine *e);
void cl_sync_stop(cleave_engine *e);
void cl_sync_close(cleave_engine *e);

/* copy.c: the serving copy with a reference taken (cl_copy_unref), or
 * NULL while it is being reopened after a failure. */
cl_copy *cl_copy_acquire(cl_proj *p);
void cl_copy_unref(cl_copy *c);
/* The position a copy has applied (what its store holds at least), and
 * its store; valid while the reference is held. */
int64_t cl_copy_applied(const cl_copy *c);
cl_rstore *cl_copy_store(const cl_copy *c);
/* The live copy's position. */
int64_t cl_proj_position(cl_proj *p);
/* p's copies live in a server reached over the network (a shared store:
 * Redis), whose calls may block up to their timeouts. */
bool cl_proj_remote(cl_proj *p);

/* follow.c: a query node follows the log head and the copies another
 * engine writes in a shared store (their checkpoints, their switches). */
int cl_follow_start(cleave_engine *e);
void cl_follow_stop(cleave_engine *e);
/* beat.c: a writer's heartbeat in the shared store (for nodes' readiness);
 * start notes when the engine opened. */
int cl_beat_start(cleave_engine *e);
void cl_beat_stop(cleave_engine *e);

/* wait.c */
int cl_watch_start(cleave_engine *e);
void cl_watch_stop(cleave_engine *e);
/* Called by runners after a commit or a state change. */
void cl_applied_notify(cleave_engine *e);

#endif
