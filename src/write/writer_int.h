/*
 * writer_int.h — the writer's private state, shared by command.c (the
 * queue, the writer thread, group commit) and handler.c (the API command
 * handlers call while the writer runs them).  Nothing else includes it.
 */
#ifndef CL_WRITER_INT_H
#define CL_WRITER_INT_H

#include "core/engine.h"

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
