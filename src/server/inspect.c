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

#include "core/util.h"
#include "server/http.h"
#include "server/log.h"

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

typedef struct tstate {
	cleave_buf *b;
	cl_evcopies l;
} tstate;

static int collect(void *arg, const cleave_event *e)
{
	tstate *x = arg;
	int rc = cl_evcopies_copy(&x->l, e);
	if (rc)
		return rc;
	if (x->l.n > 1)
		cleave_buf_addc(x->b, ',');
	cl_event_json(x->b, e);
	return x->b->oom ? CLEAVE_ENOMEM : 0;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The domain's definition of projection `name` at `version` (a domain
 * may list several versions of one projection while migrating). */
static const cleave_projection_def *proj_def(const cleave_domain *d,
                                             const char *name, int version)
{
	const cleave_projection_def *any = NULL;
	for (const cleave_projection_def *p = d->projections; p && p->name;
	     p++) {
		if (strcmp(p->name, name))
			continue;
		if (p->version == version)
			return p;
		any = p;
	}
	return any;
}

static bool subscribes(const cleave_projection_def *d, const char *type)
{
	if (!d || !d->event_types)
		return true;
	for (const char *const *t = d->event_types; *t; t++)
		if (!strcmp(*t, type))
			return true;
	return false;
}

static void add_str_or_null(cleave_buf *b, const char *key, const char *v)
{
	cleave_buf_addf(b, "\"%s\":", key);
	if (v)
		cleave_buf_add_jstr(b, v, strlen(v));
	else
		cleave_buf_adds(b, "null");
}

/* For each projection, whether its serving copy has applied the events
 * ev[k] with pick[k] (the last one it subscribes to; the last of all when
 * it subscribes to none) and when. */
static void add_fates(cleave_buf *b, cl_srv *s, const cl_evcopy *ev, const bool *pick,
                      int n)
{
	int np = cleave_projection_count(s->e);
	cleave_buf_addc(b, '[');
	for (int i = 0, out = 0; i < np; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(s->e, i, &st))
			continue;
		const cleave_projection_def *d =
		    proj_def(s->dom, st.name, st.version);
		bool sub = false;
		int64_t upto = 0, last = 0, when = 0;
		for (int k = 0; k < n; k++) {
			if (!pick[k])
				continue;
			last = ev[k].position;
			if (subscribes(d, ev[k].type)) {
				sub = true;
				upto = ev[k].position;
			}
		}
		if (!sub)
			upto = last;
		bool applied =
		    cleave_projection_applied_at(s->e, i, upto, &when) == 0;
		if (out++)
			cleave_buf_addc(b, ',');
		cleave_buf_adds(b, "{\"name\":");
		cleave_buf_add_jstr(b, st.name, strlen(st.name));
		cleave_buf_addf(b,
		             ",\"version\":%d,\"state\":\"%s\",\"position\":"
		             "%lld,\"subscribed\":%s,\"needs\":%lld,"
		             "\"applied\":%s,\"applied_at_us\":",
		             st.version, cleave_proj_state_name(st.state),
		             (long long)st.position, sub ? "true" : "false",
		             (long long)upto, applied ? "true" : "false");
		if (applied && when)
			cleave_buf_add_i64(b, when);
		else
			cleave_buf_adds(b, "null");
		cleave_buf_addc(b, '}');
	}
	cleave_buf_addc(b, ']');
}

/* One object per command (events grouped by command id, in log order of
 * their first event): its ids, time, event positions and the fate of
 * its events in each projection. */
static void add_commands(cleave_buf *b, cl_srv *s, const cl_evcopy *ev, int n,
                         bool *done, bool *pick)
{
	cleave_buf_addc(b, '[');
	for (int i = 0, blocks = 0; i < n; i++) {
		if (done[i])
			continue;
		const cl_evcopy *f = &ev[i];
		if (blocks++)
			cleave_buf_addc(b, ',');
		cleave_buf_addc(b, '{');
		add_str_or_null(b, "command_id", f->command_id);
		cleave_buf_addc(b, ',');
		add_str_or_null(b, "trace_id", f->trace_id);
		cleave_buf_addc(b, ',');
		add_str_or_null(b, "idempotency_key", f->idem);
		cleave_buf_addc(b, ',');
		add_str_or_null(b, "causation_id", f->causation);
		cleave_buf_addf(b, ",\"ts_us\":%lld,\"events\":[",
		             (long long)f->ts_us);
		for (int k = i, m = 0; k < n; k++) {
			pick[k] =
			    !done[k] && same(ev[k].command_id, f->command_id);
			if (!pick[k])
				continue;
			done[k] = true;
			if (m++)
				cleave_buf_addc(b, ',');
			cleave_buf_add_i64(b, ev[k].position);
		}
		for (int k = 0; k < i; k++)
			pick[k] = false;
		cleave_buf_adds(b, "],\"projections\":");
		add_fates(b, s, ev, pick, n);
		cleave_buf_addc(b, '}');
	}
	cleave_buf_addc(b, ']');
}

static void trace_work(cl_req *r)
{
	cl_srv *s = r->s;
	cleave_buf b;
	tstate x = {&b, {0}};
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "{\"id\":");
	cleave_buf_add_jstr(&b, r->name, strlen(r->name));
	cleave_buf_adds(&b, ",\"events\":[");
	int rc = cleave_log_trace(s->e, r->name, collect, &x);
	if (rc < 0 || x.l.n == 0) {
		char msg[512];
		if (rc < 0)
			snprintf(msg, sizeof(msg), "%s",
			         *cleave_errmsg() ? cleave_errmsg()
			                          : cleave_strerror(rc));
		else
			snprintf(msg, sizeof(msg),
			         "no event has trace id or command id '%s' (a "
			         "command that was rejected wrote none)",
			         r->name);
		cl_evcopies_free(&x.l);
		cleave_buf_free(&b);
		job_fail(r, rc < 0 ? rc : CLEAVE_ENOTFOUND,
		         rc == CLEAVE_EINVAL ? "invalid_argument" : NULL, msg);
		return;
	}
	bool *done = calloc((size_t)x.l.n, sizeof(bool));
	bool *pick = calloc((size_t)x.l.n, sizeof(bool));
	if (done && pick) {
		cleave_buf_addf(&b, "],\"truncated\":%s,\"commands\":",
		             x.l.truncated ? "true" : "false");
		add_commands(&b, s, x.l.ev, x.l.n, done, pick);
		for (int k = 0; k < x.l.n; k++)
			pick[k] = true;
		cleave_buf_adds(&b, ",\"projections\":");
		add_fates(&b, s, x.l.ev, pick, x.l.n);
		cleave_buf_addc(&b, '}');
	} else {
		b.oom = true;
	}
	free(done);
	free(pick);
	cl_evcopies_free(&x.l);
	job_done(r, &b);
}

enum MHD_Result cl_h_trace(cl_req *r)
{
	return run_job(r, trace_work, -1);
}
