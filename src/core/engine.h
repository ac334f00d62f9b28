/*
 * engine.h — the engine's private state, shared by the files of the core:
 * engine.c (open/close, tables), write/command.c (queue, writer, group
 * commit), sync/ring.c (committed events in memory), sync/runner.c
 * (projection runners, copies, rebuilds), sync/wait.c (positions, waits),
 * read/query.c (queries).
 */
#ifndef CL_ENGINE_H
#define CL_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>

#include "cleave.h"
#include "core/util.h"
#include "core/logpub.h"
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

/* ---- memory arena: chunked, pointers stay put ------------------------ */

typedef struct cl_arena_chunk cl_arena_chunk;
typedef struct cl_arena {
	cl_arena_chunk *head;
	size_t used, cap;
	size_t total; /* bytes of all its chunks: what it holds in memory */
} cl_arena;

void *cl_arena_alloc(cl_arena *a, size_t n);
char *cl_arena_strdup(cl_arena *a, const char *s, size_t n);
void cl_arena_free(cl_arena *a);

/* ---- committed events in memory (the ring) --------------------------- */

/* One group commit's events.  Immutable once published; shared by the
 * runners through a reference count. */
typedef struct cl_evbatch {
	atomic_int refs;
	int64_t first, last; /* positions */
	int n;
	cleave_event *ev;    /* n events; ev[i].json is owned (cJSON) */
	cl_arena arena;      /* strings of the events */
	int64_t commit_us;
	size_t bytes;        /* memory held, roughly (the ring's budget) */
} cl_evbatch;

typedef struct cl_ring cl_ring;

/* Keeps at most max_events events and about max_bytes of memory. */
cl_ring *cl_ring_new(int max_events, size_t max_bytes);
void cl_ring_free(cl_ring *r);
/* Publishes a batch (the ring takes the caller's reference). */
void cl_ring_push(cl_ring *r, cl_evbatch *b);
/* The batch holding `position`, with a reference taken, or NULL when the
 * position is not in memory (older than the ring, or not committed). */
cl_evbatch *cl_ring_find(cl_ring *r, int64_t position);
/* Whether the event at `position` is in memory. */
bool cl_ring_has(cl_ring *r, int64_t position);
/* Commit time of the event at `position` if in memory, else 0. */
int64_t cl_ring_ts(cl_ring *r, int64_t position);
void cl_evbatch_unref(cl_evbatch *b);

/* ---- commands --------------------------------------------------------- */


/* A pending event of the command being handled (before commit). */
typedef struct cl_wbatch {
	cl_arena arena;
	cleave_event *ev;
	int n, cap;
	int64_t next_pos;
} cl_wbatch;

struct cleave_cmd {
	cleave_engine *e;
	struct cleave_cmd *next;
	int def_index;
	const cleave_command_def *def;
	cJSON *input;
	char *idem_key, *trace_id, *causation_id;
	char command_id[33];
	char req_hash[17];
	int64_t expected_version;
	cleave_done_fn done;
	void *arg;
	int64_t submit_us; /* monotonic */
	int64_t ts_us;     /* wall clock, fixed by the writer */
	/* while handled */
	cl_wbatch *wb;
	int ev_start;
	bool emitted;
	bool dirty;        /* changed the store (rows or events) */
	cJSON *result;
	int fail_rc;
	char fail_code[64];
	char fail_msg[512];
	/* outcome */
	cleave_outcome out;
	char *body;
};

/* ---- the writer's stream versions (write/streams.c) ------------------- */

typedef struct cl_vcache cl_vcache;
cl_vcache *cl_vcache_new(size_t max_streams);
void cl_vcache_free(cl_vcache *c);
void cl_vcache_clear(cl_vcache *c);
/* The stream's version as the batch in progress sees it. */
int cl_vcache_get(cl_vcache *c, cleave_engine *e, const char *stream,
		  int64_t *out);
/* Records a new version (after an append), undoable. */
int cl_vcache_set(cl_vcache *c, const char *stream, int64_t version);
size_t cl_vcache_mark(cl_vcache *c);
void cl_vcache_undo(cl_vcache *c, size_t mark);
/* More streams than it should keep: empty it at the next occasion. */
bool cl_vcache_full(const cl_vcache *c);
/* The batch committed: its versions are the store's now.  When full and
 * `may_clear` (the store's stream index was flushed at the start of this
 * batch, or the store has no lazy index), the cache is emptied of all but
 * the streams of the batch's own events ev[0..n): those came after the
 * flush, and only the cache knows their versions until the next one. */
void cl_vcache_commit(cl_vcache *c, bool may_clear, const cleave_event *ev,
		      int n);

typedef struct cl_writer cl_writer;
typedef struct cl_sync cl_sync;

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
/* json_arena.c: a cJSON tree whose nodes live in `a` (see above); NULL
 * when the text is not JSON it understands. */
cJSON *cl_json_parse_arena(const char *s, size_t n, cl_arena *a);

/* write/command.c: the writer (its state is private to command.c).
 * new after the domain is checked (stats per command), start once the
 * stores are open; stop commits and answers what was queued. */
int cl_writer_new(cleave_engine *e);
void cl_writer_free(cleave_engine *e);
int cl_writer_start(cleave_engine *e);
void cl_writer_stop(cleave_engine *e);

#endif
