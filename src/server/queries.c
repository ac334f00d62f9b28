/*
 * queries.c — GET /queries/<name>?…, with read-your-writes.
 *
 * min_position=P asks for an answer reflecting at least log position P.
 * When the query's projections are behind, the connection is suspended and
 * an engine watch resumes it when they reach P, at the deadline (wait_ms,
 * default 1000, clamped to --wait-max-ms) or at shutdown; no thread waits.
 * The suspension comes before the watch is placed, so a watch that fires at
 * once (even on this thread) finds the connection suspended.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"

int cl_query_index(cl_srv *s, const char *name)
{
	for (int i = 0; i < s->nqueries; i++)
		if (!strcmp(s->dom->queries[i].name, name))
			return i;
	return -1;
}

static void free_answer_body(void *p)
{
	cleave_answer a = {0};
	a.body = p;
	cleave_answer_free(&a);
}

/* Answers r with a query's run: rc and msg when it could not run, else
 * the answer a (taken). */
static enum MHD_Result send_answer(cl_req *r, int rc, cleave_answer *a,
                                   const char *msg, int64_t us)
{
	cl_srv *s = r->s;
	if (rc)
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "%s", msg);
	cleave_hist_add(&s->qhist[r->qindex], cleave_hist_bounds_us,
	                (uint64_t)us);
	unsigned status = cl_status_of(a->rc);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer_with_free_callback(
	        a->body_len, a->body, free_answer_body);
	if (!resp) {
		cleave_answer_free(a);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        "application/json");
	char p[24];
	snprintf(p, sizeof(p), "%lld", (long long)a->position);
	MHD_add_response_header(resp, "X-Cleave-Position", p);
	if (status >= 500)
		cl_logf(CLEAVE_LOG_ERROR, r->trace_id, NULL, a->position,
		        "query %s failed: %u %.*s", r->name, status,
		        (int)(a->body_len > 400 ? 400 : a->body_len), a->body);
	return cl_send(r, status, resp);
}

/* Resumed by the pool (qpool.c) with the answer. */
static enum MHD_Result after_pool(cl_req *r)
{
	return send_answer(r, r->pool_rc, &r->pool_answer, r->pool_msg,
	                   r->pool_us);
}

static enum MHD_Result run_query(cl_req *r)
{
	cl_srv *s = r->s;
	if (r->remote) /* never on an HTTP thread: it may block */
		return cl_qpool_submit(r, after_pool);
	cleave_answer a;
	int64_t t0 = cl_mono_now_us();
	int rc = cleave_query_run(s->e, r->name, r->params, r->nparams, &a);
	return send_answer(r, rc, &a,
	                   rc ? (*cleave_errmsg() ? cleave_errmsg()
	                                          : cleave_strerror(rc))
	                      : NULL,
	                   cl_mono_now_us() - t0);
}

static int64_t current_position(cl_req *r)
{
	int64_t pos = -1;
	if (cleave_query_position(r->s->e, r->name, &pos))
		pos = -1;
	return pos;
}

/* Resumed: the watch fired (or the shutdown sweep answered for it). */
static enum MHD_Result after_wait(cl_req *r)
{
	cl_waiter_del(r->s, r);
	int rc = r->async_rc;
	if (rc == 0)
		return run_query(r);
	int64_t now = current_position(r);
	switch (rc) {
	case CLEAVE_ETIMEDOUT: {
		char behind[768];
		cleave_query_lagging(r->s->e, r->name, r->min_pos, behind,
		                     sizeof(behind));
		return cl_send_error_pos(
		    r, MHD_HTTP_GATEWAY_TIMEOUT, cleave_errname(rc), now,
		    "min_position %lld not reached within %d ms; current "
		    "position %lld%s%s",
		    (long long)r->min_pos, r->wait_ms, (long long)now,
		    behind[0] ? "; behind: " : "", behind);
	}
	case CLEAVE_EPARKED:
		return cl_send_error_pos(
		    r, MHD_HTTP_SERVICE_UNAVAILABLE, cleave_errname(rc), now,
		    "a projection this query reads is parked before "
		    "position %lld (see GET /projections); current "
		    "position %lld",
		    (long long)r->min_pos, (long long)now);
	case CLEAVE_ESHUTDOWN:
		return cl_send_error_pos(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                         cleave_errname(rc), now,
		                         "shutting down; current position "
		                         "%lld",
		                         (long long)now);
	default:
		return cl_send_error_pos(
		    r, cl_status_of(rc), cleave_errname(rc), now,
		    "waiting for position %lld: %s", (long long)r->min_pos,
		    cleave_strerror(rc));
	}
}

/* ---- the registry the shutdown sweep answers --------------------------- */

bool cl_waiter_add(cl_srv *s, cl_req *r)
{
	pthread_mutex_lock(&s->wmu);
	if (s->waiters_closed) {
		pthread_mutex_unlock(&s->wmu);
		return false;
	}
	r->wprev = NULL;
	r->wnext = s->waiters;
	if (s->waiters)
		s->waiters->wprev = r;
	s->waiters = r;
	r->waiting = true;
	pthread_mutex_unlock(&s->wmu);
	return true;
}

void cl_waiter_del(cl_srv *s, cl_req *r)
{
	pthread_mutex_lock(&s->wmu);
	if (r->waiting) {
		if (r->wprev)
			r->wprev->wnext = r->wnext;
		else
			s->waiters = r->wnext;
		if (r->wnext)
			r->wnext->wprev = r->wprev;
		r->waiting = false;
	}
	pthread_mutex_unlock(&s->wmu);
}

/* Answers every waiting query with "shutting down" and lets no new one
 * wait. */
void cl_waiters_close(cl_srv *s)
{
	pthread_mutex_lock(&s->wmu);
	s->waiters_closed = true;
	for (cl_req *r = s->waiters; r; r = r->wnext)
		cl_req_resume(r, CLEAVE_ESHUTDOWN);
	pthread_mutex_unlock(&s->wmu);
}

/* An engine thread (maybe this one, inside cleave_watch_position). */
static void watch_done(void *arg, int rc)
{
	cl_req *r = arg;
	cl_req_resume(r, rc);
	cl_req_unref(r);
}

enum MHD_Result cl_h_query(cl_req *r)
{
	cl_srv *s = r->s;
	enum MHD_Result ret;
	r->qindex = cl_query_index(s, r->name);
	if (r->qindex < 0)
		return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		                     "unknown query '%s'", r->name);
	r->remote = s->qpool && cleave_query_remote(s->e, r->name) == 1;
	if (!cl_parse_params(r, &ret))
		return ret;
	int64_t min_pos, wait_ms;
	if (!cl_param_int(r, "min_position", -1, 0, INT64_C(1) << 53, &min_pos,
	                  &ret) ||
	    !cl_param_int(r, "wait_ms", 1000, 0, INT32_MAX, &wait_ms, &ret))
		return ret;
	cl_param_drop(r, "min_position");
	cl_param_drop(r, "wait_ms");
	if (wait_ms > s->cfg->wait_max_ms)
		wait_ms = s->cfg->wait_max_ms;
	r->min_pos = min_pos;
	r->wait_ms = (int)wait_ms;
	if (cl_wants_sse(r))
		return cl_h_query_live(r);
	if (min_pos < 0 || current_position(r) >= min_pos)
		return run_query(r);

	/* Suspend first: from then on anyone (the watch, the shutdown sweep
	 * once registered) may resume it, exactly once. */
	cl_req_suspend(r, after_wait);
	if (!cl_waiter_add(s, r)) {
		cl_req_resume(r, CLEAVE_ESHUTDOWN);
		return MHD_YES;
	}
	cl_req_ref(r);
	int rc = cleave_watch_position(s->e, r->name, min_pos, r->wait_ms,
	                               watch_done, r);
	if (rc) {
		cl_req_resume(r, rc);
		cl_req_unref(r);
	}
	return MHD_YES;
}
