/*
 * sse_int.h — server-sent event streams, shared by sse.c (the streams,
 * live queries, the timer) and sse_stats.c (the dashboard's figures).
 * Private to those two files.
 */
#ifndef CL_SERVER_SSE_INT_H
#define CL_SERVER_SSE_INT_H

#include "http.h"

#define SAMPLES 300 /* one a second: five minutes of history */
/* a message waiting behind one that is not written yet, and the bytes a
 * stream may hold: past them, the reader is dropped (it resumes with
 * Last-Event-ID) */
#define SSE_BUF_MAX (8u << 20)
#define RETRY_US    1000000 /* an answer that was a 5xx is tried again */
/* a watch after the first (whose deadline is wait_ms) is only re-armed:
 * a fixed period, whatever --wait-max-ms says (0 would spin) */
#define REWATCH_MS  10000

enum { K_QUERY, K_STATS };
enum { ST_WAIT, ST_LIVE };

typedef struct cl_sse cl_sse;

struct cl_sse {
	cl_srv *s;
	struct MHD_Connection *conn;
	int kind;
	atomic_int refs;
	pthread_mutex_t mu; /* the output and the flags below it */
	char *out, *pend;
	size_t out_len, out_off, pend_len;
	int64_t out_t0_us, pend_t0_us; /* the wake each message answers */
	bool suspended, closing, dropped, gone;
	int fd;             /* the connection's socket (peer_closed) */
	int jitter;         /* 0..999: its keep-alive period is shortened
	                       by jitter/2000 of it */
	int64_t last_out_us; /* last message or keep-alive queued */
	cl_sse *prev, *next; /* hub->streams (hub->mu) */
	cl_sse *qnext;       /* the work queue (hub->qmu) */
	bool queued;         /* (hub->qmu) */
	_Atomic int64_t woken_us; /* when the engine last woke it */

	/* query streams: the worker's, one worker at a time */
	pthread_mutex_t runmu; /* x->live */
	cleave_live *live;
	char qname[CLEAVE_NAME_MAX + 1];
	int state;
	int64_t need_pos; /* the first answer reflects at least this */
	int wait_ms;
	bool watching;            /* an engine watch holds a reference */
	int watch_rc;             /* its outcome (x->mu) */
	bool waited_once;         /* the first wait ran out (504 sent) */
	int64_t last_id;          /* highest id sent: ids never go back */
	char *last;               /* last answer sent, without position */
	size_t last_len;
	unsigned last_status;
	bool sent;
	atomic_int_fast64_t retry_at_us; /* 0: none */
	char trace_id[CLEAVE_TRACE_ID_MAX + 1];
};

typedef struct sample {
	char *json;
} sample;

struct cl_sse_hub {
	pthread_mutex_t mu;
	cl_sse *streams;
	atomic_int n;
	atomic_bool closed; /* shutting down: no new stream */
	/* the work queue */
	pthread_mutex_t qmu;
	pthread_cond_t qcond;
	cl_sse *qhead, *qtail;
	bool stop;
	pthread_t workers[64];
	int nworkers;
	/* the timer */
	pthread_t timer;
	bool timer_running;
	pthread_cond_t tcond;
	/* figures (the timer's; samples under mu) */
	char *samples[SAMPLES];
	int nsamples, at;
	uint64_t prev_cmds, prev_queries;
	cleave_hist prev_ch, prev_qh;
	int64_t prev_us;
	/* counters */
	atomic_uint_fast64_t pushed, dropped, coalesced, keepalives;
	cleave_hist push_us; /* engine wake → message handed to the socket */
};

void cl_sse_ref(cl_sse *x);
void cl_sse_unref(cl_sse *x);
/* Hands msg (owned) to x: written next, or after the message being
 * written, replacing one waiting there.  t0: the engine wake it answers
 * (0: none). */
void cl_sse_push(cl_sse *x, char *msg, size_t len, int64_t t0);
/* Ends the stream (shutdown, a reader gone or dropped). */
void cl_sse_end(cl_sse *x, bool dropped);
/* A stream on r with its response (not yet queued), or NULL. */
cl_sse *cl_sse_new(cl_req *r, int kind, struct MHD_Response **resp);
/* Lists x among the hub's streams (keep-alive, figures, shutdown). */
void cl_sse_register(cl_sse *x);
/* Counts a new stream, or answers 503 (limit, shutdown): false. */
bool cl_sse_admit(cl_req *r, enum MHD_Result *ret);
/* sse_stats.c: this second's stats message body and history sample. */
void cl_sse_figures(cl_srv *s, cleave_buf *stats, cleave_buf *smp);

#endif
