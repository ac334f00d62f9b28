/*
 * sync_int.h — the sync layer's private state: projections, their
 * read-model copies, and what the files of src/sync share.  Only those
 * files include it; the rest of the engine calls sync/sync.h.
 *
 * A projection has a live copy (serves queries) and, during a rebuild, a
 * building copy.  Each copy with a handler has one runner thread that
 * tails the log from the copy's checkpoint: from the in-memory ring when
 * the events are there, else from the write store.  It applies a batch of
 * events and writes the new checkpoint in the same read-store transaction,
 * so a crash anywhere leaves the copy at a batch boundary: every event is
 * applied exactly once, in order.
 *
 * Which copies exist is recorded in read/catalog.json, replaced atomically
 * (write, fsync, rename, fsync dir).  A rebuild creates the next generation
 * beside the live one; once the new copy has applied the log head (so its
 * position is at least the live one's) the switch happens under the
 * projection's lock, in one step, then the catalog records it and the old
 * copy is dropped when its last reader lets go.  A crash before the catalog
 * write resumes the rebuild; after it, the new copy is live.
 *
 * Poison events: a handler failure rolls the batch back; the events before
 * the failing one are committed alone, the failing one is retried with
 * doubling backoff, then the policy applies: park (stop this copy at the
 * event, others go on) or skip (record it as a dead letter and move on, in
 * the same transaction as the checkpoint).  Store failures (full disk,
 * I/O) are not poison: the batch is retried, smaller, until the store
 * accepts it.
 *
 * Files: copy.c (a copy's life: open, reopen, lend, release), catalog.c
 * (which copies exist, sweeping, crash detection, opening at start),
 * apply.c (reading events and applying them, poison handling), runner.c
 * (the runner threads, read-ahead, the blue-green switch, start and
 * stop), proj.c (the projection table and the public cleave_projection_*
 * operations), verify.c (replay into a scratch copy and compare),
 * wait.c (positions and waits), follow.c (query nodes), ring.c (recent
 * events in memory).
 */
#ifndef CL_SYNC_INT_H
#define CL_SYNC_INT_H

#include "core/engine.h"
#include "core/ring.h"
#include "read/keyrec.h"

/*
 * Copies' lifetimes (the rule that the switch and shutdown share):
 *
 *  - A copy is reference-counted.  p->live and p->build each own one
 *    reference; so does every caller that read the pointer out of them and
 *    uses it after dropping p->mu (queries through cl_copy_acquire, the
 *    switch for the old copy, cl_sync_stop for the copies it stops).  The
 *    last cl_copy_unref destroys the copy, and deletes its files if it was
 *    retired.
 *  - A copy's runner thread is joined once, by whichever caller claims it
 *    (joining, under p->mu); any other caller of stop_copy_thread waits on
 *    p->resume until that join is done.  So when stop_copy_thread returns
 *    the thread is gone, whoever joined it.
 *  - Only a building copy's runner stops another copy's thread (the old
 *    one, at its switch).  Once the engine is stopping, no rebuild starts
 *    and no switch happens: what was being built stays in the catalog
 *    and resumes at the next open.
 */
/* One generation of a projection's read model. */
typedef struct cl_copy {
	cl_proj *proj;
	const cleave_projection_def *def; /* NULL: frozen (no handler) */
	int version, gen;
	cl_rstore *store;
	char *path;                  /* the copy's directory */
	atomic_int_fast64_t applied; /* checkpoint, mirrored */
	atomic_int refs;
	bool retired;  /* drop when refs reach 0 */
	bool building; /* the new copy of a rebuild */
	pthread_t thread;
	bool has_thread; /* guarded by proj->mu */
	bool joining;    /* its join is under way (proj->mu) */
	atomic_bool stop;
	/* parked state (guarded by proj->mu) */
	bool failing;        /* the store refuses writes */
	bool reopening;      /* closed and reopened: not lent */
	bool fresh;          /* reopened once before its switch */
	bool foreign;        /* a query node's view of a copy
	                        another engine writes */
	bool unsettled;      /* opened while its shared store was down:
	                        position unknown until cl_copy_settle */
	pthread_mutex_t cmu; /* held over each commit and its
	                        note; the switch freezes the old
	                        copy under it */
	bool frozen;         /* retired: commits nothing more */
	bool parked;
	int64_t parked_position;
	char last_error[256];
	int64_t dead_letters;
	/* recent commits: (last position, time) for trace */
	int64_t hist_pos[256], hist_us[256];
	unsigned hist_n;
	atomic_int_fast64_t pending_ts; /* ts of the oldest unapplied
	                                   event */
	uint64_t applied_total;
	uint64_t rate_events[10]; /* per second slots */
	int64_t rate_sec[10];
	/* live queries (apply.c, the runner's thread only): what the last
	 * commit wrote, and how to wake (CL_LIVE_*) once cmu is let go */
	cl_keyrec rec;
	int live_wake;
} cl_copy;

enum { CL_LIVE_NONE, CL_LIVE_KEYS, CL_LIVE_PROJ };

struct cl_proj {
	cleave_engine *e;
	int index;
	const cleave_projection_def *def;     /* highest registered version */
	const cleave_projection_def *defs[8]; /* every registered version */
	int ndefs;
	const char **types; /* subscribed types or NULL */
	pthread_mutex_t mu;
	pthread_cond_t resume;
	cl_copy *live;
	cl_copy *build;
	int next_gen;
	bool followed; /* query node: live is foreign */
};

/* ---- watches (async min_position) -------------------------------------- */

typedef struct cl_watch {
	int query;
	int64_t position;
	int64_t deadline_us; /* monotonic */
	cleave_watch_fn fn;
	void *arg;
} cl_watch;

/* ---- the sync layer's state (e->sync) ------------------------------- */

struct cl_sync {
	cl_proj *proj;         /* e->nproj entries (proj.c) */
	pthread_mutex_t catmu; /* the catalog file */
	pthread_mutex_t appmu;
	pthread_cond_t appcond; /* a projection applied more, or state */
	uint64_t app_seq;
	atomic_bool stopping;
	bool opened; /* read stores opened: mark run.json at close */

	/* --read-store scheme://…: the shared store (CL_RS_SHARED) that holds
	 * the copies of key/value projections, or NULL (shared.c) */
	const cl_rstore_methods *shared;
	char *shared_root; /* its canonical root: copies are ROOT/<name>.g<n> */
	char *owner;       /* "host:/real/data/dir", claims those copies */
	cl_rstore
	    *root_store; /* the root itself: the catalog for query nodes */

	/* watches (wait.c) */
	cl_watch *watches;
	int nwatches, capwatches;
	pthread_t watcher;
	bool watcher_running;

	/* query node: the follower thread (follow.c) */
	pthread_t follower;
	bool follower_running;
	atomic_bool follower_stop;
	char *catalog_seen;   /* the writer's catalog text last applied */
	bool catalog_current; /* every switch in it followed */
	bool catalog_unread;  /* the store was down at open: followed
	                         projections are stand-ins until read */

	/* readiness (beat.c): a writer with a shared store writes a
	 * heartbeat there each second ("cl-beat"); a query node's follower
	 * notes when it last read the log head and the writer's beat, and
	 * why the root could not be read */
	pthread_t beat;
	bool beat_running;
	atomic_bool beat_stop;
	atomic_int_fast64_t opened_us;  /* monotonic */
	atomic_int_fast64_t head_ok_us; /* last log-head read (monotonic) */
	atomic_int_fast64_t beat_ms;    /* the writer's last beat (wall) */
	atomic_int_fast64_t beat_seen_us; /* when it was read (monotonic) */
	pthread_mutex_t why_mu;
	char head_err[256], root_err[256];
	char writer_url[256]; /* from the writer's beat (why_mu) */
};

/* ---- readiness (beat.c) ------------------------------------------------ */

/* The follower, once a second: reads the writer's beat. */
void cl_beat_follow(cleave_engine *e);
/* The follower's head read: ok, or failed with the store's message. */
void cl_beat_head(cleave_engine *e, bool ok);

/* ---- copies (copy.c) ----------------------------------------------- */

/* Opens generation gen of p at version; a foreign copy (a query node's
 * view of one another engine writes) is read-only, never set up, written
 * or dropped here. */
int cl_copy_open(cl_proj *p, int gen, int version, bool foreign, cl_copy **out);
/* 0 when p's live copy has applied pos, CLEAVE_EPARKED when it is parked
 * at or before pos, CLEAVE_ETIMEDOUT when not yet. */
int cl_proj_reached(cl_proj *p, int64_t pos);
/* Makes c p's live copy; returns the old one with p->live's reference
 * (the caller releases it).  Query nodes' following only. */
cl_copy *cl_proj_swap_live(cl_proj *p, cl_copy *c);
/* Records that c's store fails (msg) or works again. */
void cl_copy_set_failing(cl_copy *c, bool on, const char *msg);

/* The store that holds p's copies of store kind `kind`, and where. */
const cl_rstore_methods *cl_copy_methods(cleave_engine *e, const char *kind);
const char *cl_copy_root(cleave_engine *e, const cl_rstore_methods *m);
cl_rstore_opts cl_store_opts(cleave_engine *e);
/* Opens generation gen of p at version, a copy this engine writes. */
int cl_copy_new(cl_proj *p, int gen, int version, cl_copy **out);
/* Closes and reopens c's store after a failure (not while lent). */
int cl_copy_reopen(cl_copy *c);
/* An unsettled copy's runner, first: reads its position once its store
 * answers (failing meanwhile); false when stopped first. */
bool cl_copy_settle(cl_copy *c);

/* ---- the catalog (catalog.c) --------------------------------------- */

/* follow.c: opens the copy the writer's published catalog names for p
 * (query nodes), and publishes this writer's catalog text. */
int cl_follow_open(cleave_engine *e, cl_proj *p);
void cl_follow_publish(cleave_engine *e, const char *catalog);

int cl_catalog_save(cleave_engine *e);
/* Records in read/run.json whether the engine ended cleanly. */
int cl_run_mark(cleave_engine *e, bool clean);

/* ---- applying (apply.c) -------------------------------------------- */

typedef struct cl_evlist {
	const cleave_event **ev; /* the subscribed events of the range */
	int n, cap;
	int64_t upto;         /* the range covered: checkpoint after it */
	cl_evbatch *refs[64]; /* ring batches held */
	int nrefs;
	cleave_event *own; /* events read from the store */
	bool *own_arena;   /* own[i].json lives in the arena */
	int nown, capown;
	cl_arena arena;
} cl_evlist;

void cl_evlist_clear(cl_evlist *l);
void cl_evlist_free(cl_evlist *l);
int cl_evlist_reserve(cl_evlist *l, int n);
/* Reads up to max subscribed events of (pos, end] from the write store. */
int cl_collect_store(cleave_engine *e, cl_wreader **rd,
                     const char *const *types, int64_t pos, int64_t end,
                     int max, cl_evlist *l);
/* The next events for c after pos, from the ring or the store. */
int cl_collect(cl_copy *c, cl_wreader **rd, int64_t pos, int64_t head, int max,
               cl_evlist *l);
int cl_apply_range(cl_copy *c, const cleave_event **ev, int from, int to,
                   int64_t ckpt, int *bad, char *err, size_t errcap);
int cl_dead_letter(cl_copy *c, const cleave_event *ev, const char *err);
/* Sleeps ms unless c is stopped meanwhile (false then). */
bool cl_wait_backoff(cl_copy *c, int ms);
/* Applies l's events; false when the copy stopped or parked. */
bool cl_apply_list(cl_copy *c, cl_evlist *l);

/* ---- operations (proj.c) -------------------------------------------- */

/* The index of projection name, or CLEAVE_ENOTFOUND, or CLEAVE_EREADONLY
 * when a query node follows it (`verb` it on the writer). */
int cl_proj_find_own(cleave_engine *e, const char *name, const char *verb);

/* ---- runners (runner.c) -------------------------------------------- */

/* Starts c's runner thread (CLEAVE_ESHUTDOWN once the engine stops). */
int cl_copy_start(cl_copy *c);

#endif
