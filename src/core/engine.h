/*
 * engine.h — the composition root: the engine's configuration, the domain
 * index (names → commands, projections, queries; what each query reads),
 * the stores, and one handle per subsystem, each with its state private
 * behind its own header:
 *
 *   writer  write/command.c, handler.c (writer_int.h): the command queue,
 *           the writer thread, group commit, the handler's API
 *   log     core/logpub.c (logpub.h): head, ring, "advanced", readers
 *   sync    src/sync (sync.h; sync_int.h inside): projections, copies,
 *           runners, rebuilds, waits, query nodes' following
 *   live    src/live (live.h): live queries, woken by the keys that
 *           live copies' commits wrote
 *
 * Stores are reached through their method tables (read/rstore.h,
 * write/wstore.h), never by name.  Who may call whom: docs/design.md.
 */
#ifndef CL_ENGINE_H
#define CL_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "cleave.h"
#include "core/arena.h"
#include "core/logpub.h"
#include "core/util.h"
#include "read/rstore.h"
#include "sync/sync.h"
#include "write/wstore.h"

/* ---- name tables ----------------------------------------------------- */

typedef struct cl_nametab {
	const char **names; /* open addressing, NULL = empty */
	int *index;
	size_t cap;
} cl_nametab;

int cl_nametab_init(cl_nametab *t, size_t n);
void cl_nametab_free(cl_nametab *t);
int cl_nametab_put(cl_nametab *t, const char *name, int index);
int cl_nametab_get(const cl_nametab *t, const char *name); /* -1 absent */

typedef struct cl_writer cl_writer;
typedef struct cl_sync cl_sync;
typedef struct cl_live_reg cl_live_reg;

/* ---- the engine ------------------------------------------------------- */

struct cleave_engine {
	cleave_config cfg;
	const cleave_domain *dom;
	char *data_dir, *read_dir;
	char *wstore_dir;  /* --write-store sqlite:DIR (query nodes) */
	int lock_fd;
	int ncmd, nproj, nquery;
	cl_nametab cmd_idx, proj_idx, query_idx;
	int *query_reads;          /* nquery * max_reads projection indexes */
	int *query_nreads;
	int query_maxreads;

	/* write side */
	const cl_wstore_methods *wm;
	cl_wstore *ws;
	cl_writer *writer;         /* the queue, the writer thread (private) */
	cl_logpub *log;            /* head, ring, advanced, readers (logpub.c) */

	/* sync: projections, copies, waits, following (private to src/sync) */
	cl_sync *sync;
	/* live queries (private to src/live) */
	cl_live_reg *live;
};

/* engine.c */
void cl_log(cleave_engine *e, int level, const char *trace_id,
	    const char *command_id, int64_t position, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Turns a stored row into an event (parsing and upcasting data).  With an
 * arena, an event that needs no upcasting is parsed into it (*in_arena
 * true: drop it with the arena, never cJSON_Delete); otherwise the json
 * must be freed with cJSON_Delete. */
int cl_event_from_stored(cleave_engine *e, const cl_stored_event *s,
			 cleave_event *ev, cl_arena *a, bool *in_arena);
/* write/command.c: the writer (its state is private to command.c).
 * new after the domain is checked (stats per command), start once the
 * stores are open; stop commits and answers what was queued. */
int cl_writer_new(cleave_engine *e);
void cl_writer_free(cleave_engine *e);
int cl_writer_start(cleave_engine *e);
void cl_writer_stop(cleave_engine *e);

#endif
