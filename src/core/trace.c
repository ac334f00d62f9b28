/*
 * trace.c — following a trace id or a command id through the log
 * (cleave_log_trace_json), and an event as JSON (cleave_event_json): what
 * GET /trace/<id>, GET /events and `cleave trace` show.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static void add_opt_str(cleave_buf *b, const char *key, const char *v,
                        bool null_when_absent)
{
	if (!v && !null_when_absent)
		return;
	cleave_buf_addc(b, ',');
	cleave_buf_add_jstr(b, key, strlen(key));
	cleave_buf_addc(b, ':');
	if (v)
		cleave_buf_add_jstr(b, v, strlen(v));
	else
		cleave_buf_adds(b, "null");
}

void cleave_event_json(cleave_buf *b, const cleave_event *ev)
{
	cleave_buf_adds(b, "{\"position\":");
	cleave_buf_add_i64(b, ev->position);
	cleave_buf_adds(b, ",\"stream\":");
	cleave_buf_add_jstr(b, ev->stream, strlen(ev->stream));
	cleave_buf_adds(b, ",\"version\":");
	cleave_buf_add_i64(b, ev->version);
	cleave_buf_adds(b, ",\"type\":");
	cleave_buf_add_jstr(b, ev->type, strlen(ev->type));
	cleave_buf_adds(b, ",\"schema_version\":");
	cleave_buf_add_i64(b, ev->schema_version);
	/* the stored JSON text as is, with the stored schema_version */
	cleave_buf_adds(b, ",\"data\":");
	if (ev->data && ev->data_len)
		cleave_buf_add(b, ev->data, ev->data_len);
	else
		cleave_buf_adds(b, "{}");
	cleave_buf_adds(b, ",\"ts_us\":");
	cleave_buf_add_i64(b, ev->ts_us);
	add_opt_str(b, "trace_id", ev->trace_id, true);
	add_opt_str(b, "command_id", ev->command_id, true);
	add_opt_str(b, "idempotency_key", ev->idempotency_key, false);
	add_opt_str(b, "causation_id", ev->causation_id, false);
	cleave_buf_addc(b, '}');
}

/* Owned copies of events: a cleave_event's strings live only as long as
 * the callback that receives it, and a trace keeps what it found. */

typedef struct cl_evcopy {
	int64_t position, version, ts_us;
	int schema_version;
	char *stream, *type, *data, *trace_id, *command_id, *idem, *causation;
} cl_evcopy;

typedef struct cl_evcopies {
	cl_evcopy *ev;
	int n, cap;
	bool truncated; /* an event past CLEAVE_TRACE_EVENTS_MAX was refused */
} cl_evcopies;

static cl_evcopy *cl_evcopies_add(cl_evcopies *l)
{
	if (l->n == l->cap) {
		int cap = l->cap ? l->cap * 2 : 16;
		cl_evcopy *p = realloc(l->ev, (size_t)cap * sizeof(*p));
		if (!p)
			return NULL;
		l->ev = p;
		l->cap = cap;
	}
	cl_evcopy *t = &l->ev[l->n++];
	memset(t, 0, sizeof(*t));
	return t;
}

static char *dup0(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int cl_evcopies_copy(void *arg, const cleave_event *e)
{
	cl_evcopies *l = arg;
	if (l->n == CLEAVE_TRACE_EVENTS_MAX) {
		l->truncated = true;
		return 1;
	}
	cl_evcopy *t = cl_evcopies_add(l);
	if (!t)
		return CLEAVE_ENOMEM;
	t->position = e->position;
	t->version = e->version;
	t->ts_us = e->ts_us;
	t->schema_version = e->schema_version;
	t->stream = dup0(e->stream);
	t->type = dup0(e->type);
	t->data = dup0(e->data);
	t->trace_id = dup0(e->trace_id);
	t->command_id = dup0(e->command_id);
	t->idem = dup0(e->idempotency_key);
	t->causation = dup0(e->causation_id);
	if (!t->stream || !t->type || !t->data ||
	    (e->trace_id && !t->trace_id) ||
	    (e->command_id && !t->command_id) ||
	    (e->idempotency_key && !t->idem) ||
	    (e->causation_id && !t->causation))
		return CLEAVE_ENOMEM;
	return 0;
}

static void cl_evcopies_free(cl_evcopies *l)
{
	for (int i = 0; i < l->n; i++) {
		cl_evcopy *t = &l->ev[i];
		free(t->stream);
		free(t->type);
		free(t->data);
		free(t->trace_id);
		free(t->command_id);
		free(t->idem);
		free(t->causation);
	}
	free(l->ev);
	memset(l, 0, sizeof(*l));
}

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
	cleave_event_json(x->b, e);
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
static void add_fates(cleave_buf *b, cleave_engine *e, const cl_evcopy *ev, const bool *pick,
                      int n)
{
	int np = cleave_projection_count(e);
	cleave_buf_addc(b, '[');
	for (int i = 0, out = 0; i < np; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(e, i, &st))
			continue;
		const cleave_projection_def *d =
		    proj_def(cleave_engine_domain(e), st.name, st.version);
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
		    cleave_projection_applied_at(e, i, upto, &when) == 0;
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
static void add_commands(cleave_buf *b, cleave_engine *e, const cl_evcopy *ev, int n,
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
		add_fates(b, e, ev, pick, n);
		cleave_buf_addc(b, '}');
	}
	cleave_buf_addc(b, ']');
}

int cleave_log_trace_json(cleave_engine *e, const char *id, cleave_buf *b)
{
	tstate x = {b, {0}};
	cleave_buf_adds(b, "{\"id\":");
	cleave_buf_add_jstr(b, id, strlen(id));
	cleave_buf_adds(b, ",\"events\":[");
	int rc = cleave_log_trace(e, id, collect, &x);
	if (rc >= 0 && x.l.n == 0)
		rc = cl_err(CLEAVE_ENOTFOUND,
			    "no event has trace id or command id '%s' (a "
			    "command that was rejected wrote none)",
			    id);
	if (rc < 0) {
		cl_evcopies_free(&x.l);
		return rc;
	}
	bool *done = calloc((size_t)x.l.n, sizeof(bool));
	bool *pick = calloc((size_t)x.l.n, sizeof(bool));
	if (done && pick) {
		cleave_buf_addf(b, "],\"truncated\":%s,\"commands\":",
				x.l.truncated ? "true" : "false");
		add_commands(b, e, x.l.ev, x.l.n, done, pick);
		for (int k = 0; k < x.l.n; k++)
			pick[k] = true;
		cleave_buf_adds(b, ",\"projections\":");
		add_fates(b, e, x.l.ev, pick, x.l.n);
		cleave_buf_addc(b, '}');
	}
	free(done);
	free(pick);
	cl_evcopies_free(&x.l);
	if (!done || !pick || b->oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	return 0;
}
