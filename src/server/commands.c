/*
 * commands.c — POST /commands/<Name>.
 *
 * The body (already collected, bounded) and headers become a
 * cleave_request.  We submit with the request's mutex held and suspend the
 * connection before letting go of it, so the writer's callback (which takes
 * the same mutex) always finds the connection suspended.  The callback
 * copies the outcome and resumes; cmd_answer then queues the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"

/* If-Match: "<stream version>" — a quoted non-negative integer. */
static bool parse_if_match(const char *v, int64_t *out)
{
	size_t n = strlen(v);
	if (n < 3 || n > 20 || v[0] != '"' || v[n - 1] != '"')
		return false;
	int64_t x = 0;
	for (size_t i = 1; i < n - 1; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		x = x * 10 + (v[i] - '0');
	}
	*out = x;
	return true;
}

static void count_submit_error(cl_srv *s, const char *name, int rc)
{
	const cleave_command_def *d = s->dom->commands;
	for (int i = 0; i < s->ncmds; i++)
		if (!strcmp(d[i].name, name)) {
			cl_cmd_counts *c = &s->cmd_counts[i];
			atomic_fetch_add(
			    rc == CLEAVE_EINVAL || rc == CLEAVE_EBADJSON
			        ? &c->invalid
			    : rc == CLEAVE_EBUSY     ? &c->overloaded
			    : rc == CLEAVE_ESHUTDOWN ? &c->shutting_down
			    : rc == CLEAVE_EREADONLY ? &c->misdirected
			                             : &c->other,
			    1);
			return;
		}
}

static enum MHD_Result cmd_answer(cl_req *r)
{
	unsigned status = cl_status_of(r->out_rc);
	if (status >= 500 && !r->out_logged) /* refused before the queue */
		cl_logf(status == 503 ? CLEAVE_LOG_WARN : CLEAVE_LOG_ERROR,
		        r->trace_id, r->out_cmd_id, -1,
		        "command %s failed: %u %s: %.*s", r->name, status,
		        cleave_errname(r->out_rc),
		        (int)(r->out_len > 400 ? 400 : r->out_len),
		        r->out_body ? r->out_body : "");
	struct MHD_Response *resp =
	    cl_resp("application/json", r->out_body, r->out_len, true);
	r->out_body = NULL; /* the response owns it now */
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "X-Trace-Id", r->trace_id);
	if (r->out_cmd_id[0])
		MHD_add_response_header(resp, "X-Command-Id", r->out_cmd_id);
	if (r->out_replayed)
		MHD_add_response_header(resp, "Idempotent-Replayed", "true");
	if (r->out_rc == 0) {
		char p[24];
		snprintf(p, sizeof(p), "%lld", (long long)r->out_pos);
		MHD_add_response_header(resp, "X-Cleave-Position", p);
	}
	return cl_send(r, status, resp);
}

/* A replay's outcome carries a fresh command id, but its body is the
 * first answer: X-Command-Id names the command that had the effect. */
static void replayed_command_id(cl_req *r)
{
	cJSON *j = cJSON_ParseWithLength(r->out_body, r->out_len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "command_id");
	if (cJSON_IsString(id))
		snprintf(r->out_cmd_id, sizeof(r->out_cmd_id), "%s",
		         id->valuestring);
	cJSON_Delete(j);
}

/* The writer thread, after the command's batch is durable (or failed). */
static void cmd_done(void *arg, const cleave_outcome *o)
{
	cl_req *r = arg;
	cl_srv *s = r->s;
	pthread_mutex_lock(&r->mu);
	r->out_rc = o->rc;
	r->out_pos = o->position;
	r->out_replayed = o->replayed;
	r->out_body = malloc(o->body_len + 1);
	if (r->out_body) {
		memcpy(r->out_body, o->body, o->body_len);
		r->out_body[o->body_len] = 0;
		r->out_len = o->body_len;
	} else {
		r->out_rc = CLEAVE_ENOMEM;
		r->out_len = 0;
	}
	/* a command that ran and failed is in the engine's log already
	 * (src/write/command.c complete()) */
	r->out_logged = o->rc != 0 && r->out_body;
	if (o->command_id)
		snprintf(r->out_cmd_id, sizeof(r->out_cmd_id), "%s",
		         o->command_id);
	if (o->replayed && r->out_body)
		replayed_command_id(r);
	if (o->trace_id)
		snprintf(r->trace_id, sizeof(r->trace_id), "%s", o->trace_id);
	cl_req_resume(r, o->rc);
	pthread_mutex_unlock(&r->mu);
	atomic_fetch_sub(&s->inflight_cmds, 1);
	cl_req_unref(r);
}

/* 421 on a query node: the error names the writer's URL when its
 * heartbeat carries one (--advertise-url), so a client can go there. */
static struct MHD_Response *misdirected(cl_req *r, const char *msg)
{
	cleave_readiness rd;
	cleave_engine_readiness(r->s->e, &rd);
	if (!rd.writer_url[0])
		return cl_error_resp(cleave_errname(CLEAVE_EREADONLY), msg);
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_buf_adds(&b, "{\"error\":{\"code\":");
	const char *code = cleave_errname(CLEAVE_EREADONLY);
	cleave_buf_add_jstr(&b, code, strlen(code));
	cleave_buf_adds(&b, ",\"message\":");
	cleave_buf_add_jstr(&b, msg, strlen(msg));
	/* in the error object and beside it: either way a client reads it */
	cleave_buf_adds(&b, ",\"writer\":");
	cleave_buf_add_jstr(&b, rd.writer_url, strlen(rd.writer_url));
	cleave_buf_adds(&b, "},\"writer\":");
	cleave_buf_add_jstr(&b, rd.writer_url, strlen(rd.writer_url));
	cleave_buf_addc(&b, '}');
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	return body ? cl_resp("application/json", body, len, true) : NULL;
}

enum MHD_Result cl_h_command(cl_req *r)
{
	cl_srv *s = r->s;
	cleave_request q = {0};
	q.command = r->name;
	q.body = r->body;
	q.body_len = r->body_len;
	q.idempotency_key = cl_header(r, "Idempotency-Key");
	q.trace_id = r->trace_id;
	q.expected_version = -1;
	const char *im = cl_header(r, MHD_HTTP_HEADER_IF_MATCH);
	if (im && !parse_if_match(im, &q.expected_version)) {
		count_submit_error(s, r->name, CLEAVE_EINVAL);
		return cl_send_error(r, MHD_HTTP_BAD_REQUEST,
		                     "invalid_argument",
		                     "If-Match must be a quoted stream "
		                     "version, e.g. If-Match: \"3\"");
	}

	pthread_mutex_lock(&r->mu);
	cl_req_ref(r);
	atomic_fetch_add(&s->inflight_cmds, 1);
	int rc = cleave_command_submit(s->e, &q, cmd_done, r);
	if (rc == 0) {
		cl_req_suspend(r, cmd_answer);
		pthread_mutex_unlock(&r->mu);
		return MHD_YES;
	}
	char msg[512];
	snprintf(msg, sizeof(msg), "%s",
	         *cleave_errmsg() ? cleave_errmsg() : cleave_strerror(rc));
	pthread_mutex_unlock(&r->mu);
	atomic_fetch_sub(&s->inflight_cmds, 1);
	cl_req_unref(r);
	count_submit_error(s, r->name, rc);
	struct MHD_Response *resp;
	if (rc == CLEAVE_EREADONLY)
		resp = misdirected(r, msg);
	else
		resp = cl_error_resp(cleave_errname(rc), msg);
	if (resp)
		MHD_add_response_header(resp, "X-Trace-Id", r->trace_id);
	unsigned status = cl_status_of(rc);
	if (status >= 500)
		cl_logf(CLEAVE_LOG_WARN, r->trace_id, NULL, -1,
		        "command %s refused: %u %s: %s", r->name, status,
		        cleave_errname(rc), msg);
	return cl_send(r, status, resp);
}
