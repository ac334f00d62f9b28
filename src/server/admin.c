/*
 * admin.c — the operator's routes: GET /events, GET /projections,
 * POST /projections/<name>/rebuild and /resume, GET /health.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "log.h"

#define EVENTS_DEFAULT 100
#define EVENTS_MAX     1000

typedef struct events_ctx {
	cleave_buf *b;
	int n;
	int64_t last;
} events_ctx;

static int add_event(void *arg, const cleave_event *ev)
{
	events_ctx *x = arg;
	if (x->n++)
		cleave_buf_addc(x->b, ',');
	cleave_event_json(x->b, ev);
	x->last = ev->position;
	return x->b->oom ? CLEAVE_ENOMEM : 0;
}

enum MHD_Result cl_h_events(cl_req *r)
{
	cl_srv *s = r->s;
	enum MHD_Result ret;
	int64_t from, limit;
	if (!cl_parse_params(r, &ret) ||
	    !cl_param_int(r, "from", 0, 0, INT64_C(1) << 53, &from, &ret) ||
	    !cl_param_int(r, "limit", EVENTS_DEFAULT, 1, INT64_C(1) << 53,
	                  &limit, &ret))
		return ret;
	if (limit > EVENTS_MAX)
		limit = EVENTS_MAX;
	const char *stream = cl_param(r, "stream");
	if (stream && (!*stream || strlen(stream) > CLEAVE_STREAM_MAX))
		return cl_send_error(r, MHD_HTTP_BAD_REQUEST,
		                     "invalid_parameter",
		                     "parameter 'stream' must be 1 to %d "
		                     "bytes",
		                     CLEAVE_STREAM_MAX);
	int64_t head = cleave_log_head(s->e);
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "{\"events\":[");
	/* from=P is inclusive: the events at P and after; "next" is the
	 * from of the following page */
	events_ctx x = {&b, 0, from > 0 ? from - 1 : 0};
	int rc = cleave_log_read(s->e, x.last, stream, (size_t)limit,
	                         add_event, &x);
	if (rc < 0) {
		cleave_buf_free(&b);
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "reading the log: %s", cleave_errmsg());
	}
	cleave_buf_adds(&b, "],\"next\":");
	cleave_buf_add_i64(&b, x.n ? x.last + 1 : (from > 0 ? from : 1));
	cleave_buf_adds(&b, ",\"head\":");
	cleave_buf_add_i64(&b, head > x.last ? head : x.last);
	cleave_buf_addc(&b, '}');
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	if (!body)
		return cl_send_error(r, 500, "out_of_memory", "out of memory");
	return cl_send_json(r, MHD_HTTP_OK, body, len);
}

void cl_proj_status_json(cleave_buf *b, const cleave_proj_status *st)
{
	cleave_buf_adds(b, "{\"name\":");
	cleave_buf_add_jstr(b, st->name, strlen(st->name));
	cleave_buf_addf(b,
	             ",\"version\":%d,\"state\":\"%s\",\"position\":%lld,"
	             "\"lag_events\":%lld,\"lag_seconds\":%.3f,"
	             "\"events_per_s\":%.1f",
	             st->version, cleave_proj_state_name(st->state),
	             (long long)st->position, (long long)st->lag_events,
	             st->lag_seconds, st->events_per_s);
	if (st->state == CLEAVE_PROJ_REBUILDING)
		cleave_buf_addf(b,
		             ",\"building_version\":%d,"
		             "\"building_position\":%lld",
		             st->building_version,
		             (long long)st->building_position);
	if (st->state == CLEAVE_PROJ_PARKED)
		cleave_buf_addf(b, ",\"parked_position\":%lld",
		             (long long)st->parked_position);
	cleave_buf_addf(b, ",\"dead_letters\":%lld,\"failing\":%s,"
	             "\"last_error\":",
	             (long long)st->dead_letters,
	             st->failing ? "true" : "false");
	if (st->last_error[0])
		cleave_buf_add_jstr(
		    b, st->last_error,
		    strnlen(st->last_error, sizeof(st->last_error)));
	else
		cleave_buf_adds(b, "null");
	cleave_buf_addc(b, '}');
}

enum MHD_Result cl_h_projections(cl_req *r)
{
	cl_srv *s = r->s;
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "{\"projections\":[");
	int n = cleave_projection_count(s->e);
	for (int i = 0; i < n; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(s->e, i, &st))
			continue;
		if (i)
			cleave_buf_addc(&b, ',');
		cl_proj_status_json(&b, &st);
	}
	cleave_buf_adds(&b, "],\"head\":");
	cleave_buf_add_i64(&b, cleave_log_head(s->e));
	cleave_buf_addc(&b, '}');
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	if (!body)
		return cl_send_error(r, 500, "out_of_memory", "out of memory");
	return cl_send_json(r, MHD_HTTP_OK, body, len);
}

static enum MHD_Result status_answer(cl_req *r, unsigned code, const char *key)
{
	cl_srv *s = r->s;
	int i = cleave_projection_find(s->e, r->name);
	cleave_proj_status st;
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_addc(&b, '{');
	cleave_buf_add_jstr(&b, key, strlen(key));
	cleave_buf_addc(&b, ':');
	cleave_buf_add_jstr(&b, r->name, strlen(r->name));
	if (i >= 0 && cleave_projection_status(s->e, i, &st) == 0) {
		cleave_buf_adds(&b, ",\"projection\":");
		cl_proj_status_json(&b, &st);
	}
	cleave_buf_addc(&b, '}');
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	if (!body)
		return cl_send_error(r, 500, "out_of_memory", "out of memory");
	return cl_send_json(r, code, body, len);
}

enum MHD_Result cl_h_rebuild(cl_req *r)
{
	cl_srv *s = r->s;
	if (cleave_projection_find(s->e, r->name) < 0)
		return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		                     "unknown projection '%s'", r->name);
	int rc = cleave_projection_rebuild(s->e, r->name);
	if (rc == CLEAVE_EBUSY)
		return cl_send_error(r, MHD_HTTP_CONFLICT, "already_rebuilding",
		                     "a rebuild of '%s' is already running",
		                     r->name);
	if (rc)
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "rebuild of '%s': %s", r->name,
		                     cleave_errmsg());
	cl_logf(CLEAVE_LOG_INFO, r->trace_id, NULL, -1,
	        "rebuild of projection %s started", r->name);
	return status_answer(r, MHD_HTTP_ACCEPTED, "rebuilding");
}

enum MHD_Result cl_h_resume(cl_req *r)
{
	cl_srv *s = r->s;
	if (cleave_projection_find(s->e, r->name) < 0)
		return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		                     "unknown projection '%s'", r->name);
	int rc = cleave_projection_resume(s->e, r->name);
	if (rc == CLEAVE_EINVAL)
		return cl_send_error(r, MHD_HTTP_CONFLICT, "not_parked",
		                     "projection '%s' is not parked", r->name);
	if (rc)
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "resume of '%s': %s", r->name,
		                     cleave_errmsg());
	cl_logf(CLEAVE_LOG_INFO, r->trace_id, NULL, -1, "projection %s resumed",
	        r->name);
	return status_answer(r, MHD_HTTP_OK, "resumed");
}

/* "reasons": the readiness reasons as a JSON array. */
static void add_reasons(cleave_buf *b, const char *reasons)
{
	cleave_buf_adds(b, ",\"reasons\":[");
	const char *p = reasons;
	for (int n = 0; *p; n++) {
		const char *q = strstr(p, "; ");
		size_t len = q ? (size_t)(q - p) : strlen(p);
		if (n)
			cleave_buf_addc(b, ',');
		cleave_buf_add_jstr(b, p, len);
		p += len + (q ? 2 : 0);
	}
	cleave_buf_addc(b, ']');
}

enum MHD_Result cl_h_health(cl_req *r)
{
	cl_srv *s = r->s;
	enum MHD_Result ret;
	cleave_readiness rd;
	if (atomic_load(&s->stopping))
		return cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "shutting_down", "shutting down");
	if (!cl_parse_params(r, &ret))
		return ret;
	bool live_only = cl_param(r, "live") != NULL;
	cleave_engine_readiness(s->e, &rd);
	cleave_buf b;
	cleave_buf_init(&b);
	unsigned status = MHD_HTTP_OK;
	char reason[256];
	if (live_only) {
		/* liveness alone: the process answers */
		cleave_buf_adds(&b, "{\"status\":\"alive\"");
	} else if (cleave_engine_health(s->e, reason, sizeof(reason))) {
		/* a supervisor should restart us: commands are refused */
		cleave_buf_adds(&b, "{\"status\":\"failed\",\"reason\":");
		cleave_buf_add_jstr(&b, reason, strlen(reason));
		status = MHD_HTTP_SERVICE_UNAVAILABLE;
	} else {
		const char *st = !rd.ready     ? "unavailable"
		                 : rd.degraded ? "degraded"
		                               : "ok";
		cleave_buf_addf(&b, "{\"status\":\"%s\"", st);
		if (!rd.ready)
			status = MHD_HTTP_SERVICE_UNAVAILABLE;
		add_reasons(&b, rd.reasons);
		int n = cleave_projection_count(s->e), live = 0, parked = 0,
		    rebuilding = 0, failing = 0;
		for (int i = 0; i < n; i++) {
			cleave_proj_status ps;
			if (cleave_projection_status(s->e, i, &ps))
				continue;
			if (ps.state == CLEAVE_PROJ_PARKED)
				parked++;
			else
				live++; /* a rebuilding projection serves */
			if (ps.state == CLEAVE_PROJ_REBUILDING)
				rebuilding++;
			if (ps.failing)
				failing++;
		}
		cleave_buf_addf(&b,
		                ",\"projections\":{\"live\":%d,\"parked\":%d,"
		                "\"rebuilding\":%d,\"failing\":%d}",
		                live, parked, rebuilding, failing);
	}
	cleave_buf_addf(&b, ",\"role\":\"%s\",\"head\":%lld}", rd.role,
	                (long long)cleave_log_head(s->e));
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	if (!body)
		return MHD_NO;
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		return cl_send(r, status,
		               cl_resp("application/json", body, len, true));
	return cl_send_json(r, status, body, len);
}
