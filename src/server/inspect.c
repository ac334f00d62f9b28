/*
 * inspect.c — the operator's inspections, which read a lot and so run off
 * MHD's threads: POST /projections/<name>/verify and GET /trace/<id>.
 *
 * A verify rebuilds a projection into a scratch copy from the log and
 * compares it key by key (seconds on a large model); a trace scans the
 * log for a trace or command id.  Neither may hold an MHD thread, so the
 * handler suspends the connection and hands the request to a job thread
 * of its own; the job records its answer in the request (out_rc,
 * out_body) and resumes the connection, and job_answer sends it.  At most
 * CL_JOBS_MAX jobs run at once (503 beyond), and one verify per
 * projection (409).  Shutdown waits for running jobs (they cannot be
 * cancelled) before MHD stops.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"

#define VERIFY_DIFFS_MAX 1000  /* differences listed in an answer */

/* ---- jobs ---------------------------------------------------------------- */

typedef void (*job_fn)(cl_req *r);

typedef struct job {
	cl_req *r;
	job_fn work;
	int slot; /* verify slot held, or -1 */
} job;

/* Resumed: the job's answer is in the request. */
static enum MHD_Result job_answer(cl_req *r)
{
	int rc = r->async_rc;
	if (rc == 0) {
		char *body = r->out_body;
		r->out_body = NULL;
		return cl_send_json(r, MHD_HTTP_OK, body, r->out_len);
	}
	const char *code = r->out_code[0] ? r->out_code : cleave_errname(rc);
	return cl_send_error(r, cl_status_of(rc), code, "%s",
	                     r->out_body ? r->out_body : cleave_strerror(rc));
}

static void job_release(cl_srv *s, int slot);

static void *job_main(void *arg)
{
	job *j = arg;
	cl_req *r = j->r;
	cl_srv *s = r->s;
	j->work(r);
	pthread_mutex_lock(&r->mu);
	cl_req_resume(r, r->out_rc);
	pthread_mutex_unlock(&r->mu);
	int slot = j->slot;
	free(j);
	cl_req_unref(r);
	job_release(s, slot); /* last: shutdown waits for it */
	return NULL;
}

static void job_release(cl_srv *s, int slot)
{
	if (slot >= 0)
		atomic_store(&s->verifying[slot], false);
	atomic_fetch_sub(&s->jobs, 1);
}

/* Runs work(r) on a thread of its own with r's connection suspended.
 * slot: the verify slot the caller took (released when the job ends), or
 * -1. */
static enum MHD_Result run_job(cl_req *r, job_fn work, int slot)
{
	cl_srv *s = r->s;
	/* counted before the check, so shutdown (stopping, then waiting
	 * for jobs to end) never misses one that is starting */
	int running = atomic_fetch_add(&s->jobs, 1);
	if (atomic_load(&s->stopping)) {
		job_release(s, slot);
		return cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "shutting_down", "shutting down");
	}
	if (running >= CL_JOBS_MAX) {
		job_release(s, slot);
		return cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "overloaded",
		                     "%d verify or trace runs are in progress; "
		                     "retry later",
		                     CL_JOBS_MAX);
	}
	job *j = calloc(1, sizeof(*j));
	pthread_attr_t at;
	if (!j || pthread_attr_init(&at)) {
		free(j);
		job_release(s, slot);
		return cl_send_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		                     "out_of_memory", "out of memory");
	}
	j->r = r;
	j->work = work;
	j->slot = slot;
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	pthread_mutex_lock(&r->mu);
	cl_req_ref(r);
	/* suspended before the job can resume it */
	cl_req_suspend(r, job_answer);
	int err = pthread_create(&t, &at, job_main, j);
	if (err) {
		r->out_rc = CLEAVE_EBUSY;
		cl_req_resume(r, CLEAVE_EBUSY); /* job_answer: 503 */
	}
	pthread_mutex_unlock(&r->mu);
	pthread_attr_destroy(&at);
	if (err) {
		cl_logf(CLEAVE_LOG_WARN, r->trace_id, NULL, -1,
		        "cannot start a thread for %s: %s", r->uri,
		        strerror(err));
		free(j);
		cl_req_unref(r);
		job_release(s, slot);
	}
	return MHD_YES;
}

/* Records a failure for job_answer: rc, its message (copied) and an
 * error code when not cleave_errname(rc). */
static void job_fail(cl_req *r, int rc, const char *code, const char *msg)
{
	r->out_rc = rc;
	snprintf(r->out_code, sizeof(r->out_code), "%s", code ? code : "");
	free(r->out_body);
	r->out_body = strdup(msg && *msg ? msg : cleave_strerror(rc));
}

static void job_done(cl_req *r, cleave_buf *b)
{
	size_t len;
	char *body = cleave_buf_steal(b, &len);
	if (!body) {
		job_fail(r, CLEAVE_ENOMEM, NULL, "out of memory");
		return;
	}
	r->out_rc = 0;
	r->out_body = body;
	r->out_len = len;
}

/* ---- POST /projections/<name>/verify ------------------------------------ */

typedef struct vstate {
	cleave_buf *b;
	int64_t n;
} vstate;

/* A key as JSON: "key" is its text; "key_hex" its bytes in hex as well
 * when the text cannot say them exactly (not UTF-8, or a NUL inside). */
static void add_key(cleave_buf *b, const char *key, size_t klen)
{
	static const char hex[] = "0123456789abcdef";
	cleave_buf_adds(b, ",\"key\":");
	cleave_buf_add_jstr(b, key, klen);
	if (cleave_utf8_valid(key, klen) && !memchr(key, 0, klen))
		return;
	cleave_buf_adds(b, ",\"key_hex\":\"");
	for (size_t i = 0; i < klen; i++) {
		unsigned char c = (unsigned char)key[i];
		char h[2] = {hex[c >> 4], hex[c & 15]};
		cleave_buf_add(b, h, 2);
	}
	cleave_buf_addc(b, '"');
}

static int on_diff(void *arg, const char *table, const char *key, size_t klen,
                   const char *what)
{
	vstate *v = arg;
	cleave_buf *b = v->b;
	if (v->n++ >= VERIFY_DIFFS_MAX)
		return 0; /* counted by the engine, not listed */
	if (v->n > 1)
		cleave_buf_addc(b, ',');
	cleave_buf_adds(b, "{\"table\":");
	cleave_buf_add_jstr(b, table, strlen(table));
	add_key(b, key, klen);
	cleave_buf_adds(b, ",\"what\":");
	cleave_buf_add_jstr(b, what, strlen(what));
	cleave_buf_addc(b, '}');
	return b->oom ? CLEAVE_ENOMEM : 0;
}

static void verify_work(cl_req *r)
{
	cl_srv *s = r->s;
	cleave_buf b;
	vstate v = {&b, 0};
	int64_t ndiff = 0, pos = 0, t0 = cl_mono_now_us();
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "{\"projection\":");
	cleave_buf_add_jstr(&b, r->name, strlen(r->name));
	cleave_buf_adds(&b, ",\"diffs\":[");
	cl_logf(CLEAVE_LOG_INFO, r->trace_id, NULL, -1,
	        "verify of projection %s started", r->name);
	int rc =
	    cleave_projection_verify(s->e, r->name, on_diff, &v, &ndiff, &pos);
	double secs = (double)(cl_mono_now_us() - t0) / 1e6;
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof(msg), "verify of '%s': %s", r->name,
		         *cleave_errmsg() ? cleave_errmsg()
		                          : cleave_strerror(rc));
		cl_logf(CLEAVE_LOG_WARN, r->trace_id, NULL, pos, "%s", msg);
		cleave_buf_free(&b);
		job_fail(r, rc, NULL, msg);
		return;
	}
	cleave_buf_addf(&b,
	             "],\"truncated\":%s,\"position\":%lld,"
	             "\"differences\":%lld,\"seconds\":%.3f}",
	             ndiff > VERIFY_DIFFS_MAX ? "true" : "false",
	             (long long)pos, (long long)ndiff, secs);
	cl_logf(ndiff ? CLEAVE_LOG_WARN : CLEAVE_LOG_INFO, r->trace_id, NULL,
	        pos, "verify of projection %s: %lld difference(s) (%.2f s)",
	        r->name, (long long)ndiff, secs);
	job_done(r, &b);
}

enum MHD_Result cl_h_verify(cl_req *r)
{
	cl_srv *s = r->s;
	int i = cleave_projection_find(s->e, r->name);
	if (i < 0)
		return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		                     "unknown projection '%s'", r->name);
	/* projections past the last slot share it */
	int slot = i < CL_VERIFY_SLOTS ? i : CL_VERIFY_SLOTS - 1;
	if (atomic_exchange(&s->verifying[slot], true))
		return cl_send_error(r, MHD_HTTP_CONFLICT, "already_verifying",
		                     "a verify of '%s' is already running",
		                     r->name);
	return run_job(r, verify_work, slot);
}

/* ---- GET /trace/<id> ----------------------------------------------------- */

static void trace_work(cl_req *r)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	int rc = cleave_log_trace_json(r->s->e, r->name, &b);
	if (rc) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s",
		         *cleave_errmsg() ? cleave_errmsg() : cleave_strerror(rc));
		cleave_buf_free(&b);
		job_fail(r, rc, NULL, msg);
		return;
	}
	job_done(r, &b);
}

enum MHD_Result cl_h_trace(cl_req *r)
{
	return run_job(r, trace_work, -1);
}
