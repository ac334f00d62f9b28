/*
 * writer_int.h — the writer's private state, shared by command.c (the
 * queue, the writer thread, group commit) and handler.c (the API command
 * handlers call while the writer runs them).  Nothing else includes it.
 */
#ifndef CL_WRITER_INT_H
#define CL_WRITER_INT_H

#include "core/engine.h"
#include "core/ring.h"

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


/* The command queue, the writer thread, the completer and the upkeep
 * thread, and the command counters: private to this file. */
typedef struct cl_cmd_stats {
	atomic_uint_fast64_t ok, rejected, invalid, not_found, conflict, failed,
	    replayed;
	cleave_hist latency;
} cl_cmd_stats;

struct cl_writer {
	pthread_mutex_t qmu;
	pthread_cond_t qcond;     /* the writer's: work queued or stop */
	pthread_cond_t maintcond; /* the upkeep thread's: stop */
	cleave_cmd *qhead, *qtail;
	int qlen;
	bool accepting, stopping;
	bool write_failed; /* sticky: a commit's outcome is unknown */
	char write_failed_msg[256];
	pthread_t thread, maint;
	bool writer_running, maint_running;
	cl_vcache *vcache;
	/* completion: callbacks and frees run off the writer thread */
	pthread_t completer;
	bool completer_running, completer_stop;
	pthread_mutex_t cmu;
	pthread_cond_t ccond;
	cleave_cmd *chead, *ctail;
	/* stats */
	cl_cmd_stats *cstats; /* one per command */
	atomic_uint_fast64_t batches, fsyncs, events_appended, commands_total;
	cleave_hist batch_size;
};

#endif
