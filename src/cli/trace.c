/*
 * trace.c — `cleave trace ID`: follow a trace id or a command id from the
 * command through its events to every read model.
 *
 * For each command found (events grouped by command id, in log order):
 * its ids and time, its events with positions, and for each projection
 * whether it has applied them and when.  A projection that subscribes to
 * none of the command's event types passes over them ("not subscribed").
 * When a projection applied a position is remembered by the engine for
 * recent positions only and not across restarts: older ones print
 * "applied (time not recorded)".
 *
 * With --server the server answers the same (GET /trace/ID, which groups
 * the events by command and gives each projection's fate), and the
 * output is the same.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"
#include "core/util.h"

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The domain's definition of projection `name` at `version`: a domain
 * may list several versions of one projection (during a migration). */
static const cleave_projection_def *proj_def(cleave_engine *e, const char *name,
                                             int version)
{
	const cleave_domain *d = cleave_engine_domain(e);
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

typedef struct papplied {
	const char *name;
	int version;
	const char *state;
	int64_t position;
	bool subscribed, applied;
	int64_t when_us; /* 0: not recorded */
	int64_t upto;    /* the command's last event this one needs */
} papplied;

static void projection_fate(cleave_engine *e, int i, const cl_evcopy *ev, int n,
                            papplied *out)
{
	cleave_proj_status s;
	memset(out, 0, sizeof(*out));
	if (cleave_projection_status(e, i, &s))
		return;
	out->name = s.name;
	out->version = s.version;
	out->state = cleave_proj_state_name(s.state);
	out->position = s.position;
	const cleave_projection_def *d = proj_def(e, s.name, s.version);
	for (int k = 0; k < n; k++)
		if (subscribes(d, ev[k].type)) {
			out->subscribed = true;
			out->upto = ev[k].position;
		}
	if (!out->subscribed)
		out->upto = ev[n - 1].position;
	int64_t when = 0;
	if (cleave_projection_applied_at(e, i, out->upto, &when) == 0) {
		out->applied = true;
		out->when_us = when;
	}
}

static void print_json(const cl_evcopy *ev, int n, const papplied *pa, int np)
{
	char t[32];
	cJSON *o = cJSON_CreateObject();
	const cl_evcopy *f = &ev[0];
	const char *meta[][2] = {{"command_id", f->command_id},
	                         {"trace_id", f->trace_id},
	                         {"idempotency_key", f->idem},
	                         {"causation_id", f->causation}};
	for (size_t i = 0; i < sizeof(meta) / sizeof(*meta); i++)
		if (meta[i][1])
			cJSON_AddStringToObject(o, meta[i][0], meta[i][1]);
		else
			cJSON_AddNullToObject(o, meta[i][0]);
	cli_add_int(o, "ts_us", f->ts_us);
	cli_fmt_time(t, f->ts_us);
	cJSON_AddStringToObject(o, "time", t);
	cJSON *evs = cJSON_AddArrayToObject(o, "events");
	for (int k = 0; k < n; k++) {
		cJSON *x = cJSON_CreateObject();
		cli_add_int(x, "position", ev[k].position);
		cJSON_AddStringToObject(x, "stream", ev[k].stream);
		cli_add_int(x, "version", ev[k].version);
		cJSON_AddStringToObject(x, "type", ev[k].type);
		cJSON_AddNumberToObject(x, "schema_version",
		                        ev[k].schema_version);
		cJSON_AddItemToObject(x, "data", cJSON_CreateRaw(ev[k].data));
		cli_add_int(x, "ts_us", ev[k].ts_us);
		cJSON_AddItemToArray(evs, x);
	}
	cJSON *ps = cJSON_AddArrayToObject(o, "projections");
	for (int i = 0; i < np; i++) {
		papplied a = pa[i];
		if (!a.name)
			continue;
		cJSON *x = cJSON_CreateObject();
		cJSON_AddStringToObject(x, "name", a.name);
		cJSON_AddNumberToObject(x, "version", a.version);
		cJSON_AddStringToObject(x, "state", a.state);
		cli_add_int(x, "position", a.position);
		cJSON_AddBoolToObject(x, "subscribed", a.subscribed);
		cJSON_AddBoolToObject(x, "applied", a.applied);
		if (a.applied && a.when_us) {
			cli_fmt_time(t, a.when_us);
			cli_add_int(x, "applied_at_us", a.when_us);
			cJSON_AddStringToObject(x, "applied_at", t);
		} else {
			cJSON_AddNullToObject(x, "applied_at_us");
			cJSON_AddNullToObject(x, "applied_at");
		}
		cJSON_AddItemToArray(ps, x);
	}
	cli_print_json(o);
	cJSON_Delete(o);
}

static void print_human(const cl_evcopy *ev, int n, const papplied *pa, int np)
{
	char t[32];
	const cl_evcopy *f = &ev[0];
	cli_fmt_time(t, f->ts_us);
	printf("command %s\n", f->command_id ? f->command_id : "-");
	printf("  trace id         %s\n", f->trace_id ? f->trace_id : "-");
	if (f->idem)
		printf("  idempotency key  %s\n", f->idem);
	if (f->causation)
		printf("  caused by        %s\n", f->causation);
	printf("  committed        %s\n\n", t);

	static const char *const eh[] = {"POSITION", "STREAM", "VERSION",
	                                 "TYPE"};
	static const bool eright[] = {true, false, true, false};
	cli_table tb;
	cli_table_init(&tb, 4, eh, eright);
	for (int k = 0; k < n; k++) {
		char p[24], v[24], s[CLEAVE_STREAM_MAX * 4 + 8];
		snprintf(p, sizeof(p), "%lld", (long long)ev[k].position);
		snprintf(v, sizeof(v), "%lld", (long long)ev[k].version);
		cli_escape(s, sizeof(s), ev[k].stream, strlen(ev[k].stream));
		const char *cells[] = {p, s, v, ev[k].type};
		cli_table_row(&tb, cells);
	}
	cli_table_print(&tb, stdout);
	cli_table_free(&tb);
	putchar('\n');

	static const char *const ph[] = {"PROJECTION", "STATE", "POSITION",
	                                 "APPLIED"};
	static const bool pright[] = {false, false, true, false};
	cli_table_init(&tb, 4, ph, pright);
	for (int i = 0; i < np; i++) {
		papplied a = pa[i];
		if (!a.name)
			continue;
		char p[24], what[160];
		snprintf(p, sizeof(p), "%lld", (long long)a.position);
		if (!a.applied) {
			snprintf(what, sizeof(what), "not yet (needs %lld)",
			         (long long)a.upto);
		} else if (!a.subscribed) {
			snprintf(what, sizeof(what),
			         "passed over (not subscribed to these "
			         "events)");
		} else if (a.when_us) {
			cli_fmt_time(t, a.when_us);
			int64_t d = a.when_us - f->ts_us;
			snprintf(what, sizeof(what),
			         "applied at %s (%.1f ms after commit)", t,
			         (double)d / 1000.0);
		} else {
			snprintf(what, sizeof(what),
			         "applied (time not recorded)");
		}
		const char *cells[] = {a.name, a.state, p, what};
		cli_table_row(&tb, cells);
	}
	cli_table_print(&tb, stdout);
	cli_table_free(&tb);
}

static void print_block(const cli_common *c, const cl_evcopy *ev, int n,
                        const papplied *pa, int np, int *blocks)
{
	if (!c->json && (*blocks)++)
		printf("\n");
	if (c->json)
		print_json(ev, n, pa, np);
	else
		print_human(ev, n, pa, np);
}

/* ---- --server ------------------------------------------------------------ */

static char *jdup(const cJSON *o, const char *key)
{
	const char *v = cli_jstr(o, key);
	return v ? strdup(v) : NULL;
}

/* The server's answer to GET /trace/ID, printed as with --data: one block
 * per command of "commands", with its events (found by position in
 * "events") and the fate it gives for each projection. */
static int print_answer(const cli_common *c, const cJSON *j)
{
	cl_evcopies x = {0};
	int rc = 0, blocks = 0;
	const cJSON *e, *cmd;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events"))
	{
		cl_evcopy *t = cl_evcopies_add(&x);
		if (!t) {
			rc = CLI_EXIT_FAIL;
			break;
		}
		t->position = cli_jint(e, "position", 0);
		t->version = cli_jint(e, "version", 0);
		t->ts_us = cli_jint(e, "ts_us", 0);
		t->schema_version = (int)cli_jint(e, "schema_version", 0);
		t->stream = jdup(e, "stream");
		t->type = jdup(e, "type");
		t->data = cJSON_PrintUnformatted(
		    cJSON_GetObjectItemCaseSensitive(e, "data"));
		t->trace_id = jdup(e, "trace_id");
		t->command_id = jdup(e, "command_id");
		t->idem = jdup(e, "idempotency_key");
		t->causation = jdup(e, "causation_id");
		if (!t->stream || !t->type || !t->data) {
			rc = CLI_EXIT_FAIL;
			break;
		}
	}
	cl_evcopy *group = rc ? NULL : malloc((size_t)x.n * sizeof(*group) + 1);
	papplied *pa = NULL;
	cJSON_ArrayForEach(cmd, cJSON_GetObjectItemCaseSensitive(j, "commands"))
	{
		if (!group || cli_out_broken())
			break;
		int g = 0, np = 0;
		const cJSON *p;
		cJSON_ArrayForEach(
		    p, cJSON_GetObjectItemCaseSensitive(cmd, "events"))
		{
			for (int k = 0; k < x.n; k++)
				if (x.ev[k].position == (int64_t)p->valuedouble)
					group[g++] = x.ev[k];
		}
		const cJSON *ps =
		    cJSON_GetObjectItemCaseSensitive(cmd, "projections");
		free(pa);
		pa = calloc((size_t)cJSON_GetArraySize(ps) + 1, sizeof(*pa));
		if (!pa)
			break;
		cJSON_ArrayForEach(p, ps)
		{
			papplied *a = &pa[np++];
			a->name = cli_jstr(p, "name");
			a->version = (int)cli_jint(p, "version", 0);
			a->state = cli_jstr(p, "state");
			if (!a->state)
				a->state = "?";
			a->position = cli_jint(p, "position", 0);
			a->subscribed = cJSON_IsTrue(
			    cJSON_GetObjectItemCaseSensitive(p, "subscribed"));
			a->applied = cJSON_IsTrue(
			    cJSON_GetObjectItemCaseSensitive(p, "applied"));
			a->when_us = cli_jint(p, "applied_at_us", 0);
			a->upto = cli_jint(p, "needs", 0);
		}
		if (g)
			print_block(c, group, g, pa, np, &blocks);
	}
	if (!group || rc) {
		cli_errorf(c, "out of memory");
		rc = CLI_EXIT_FAIL;
	}
	free(pa);
	free(group);
	cl_evcopies_free(&x);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")))
		cli_errorf(c, "only the first %d events are shown",
		           CL_TRACE_EVENTS_MAX);
	return rc;
}

static int trace_server(const cli_common *c, const char *id)
{
	char target[512] = "/trace/";
	cli_url_encode(target, sizeof(target), id);
	cli_http_resp resp;
	if (cli_server_request(c, "GET", target, cli_slow_timeout_ms(c), &resp))
		return CLI_EXIT_FAIL;
	int rc = 0;
	if (resp.status == 404) {
		cli_errorf(c,
		           "no event has trace id or command id '%s' "
		           "(a command that was rejected wrote none)",
		           id);
		rc = CLI_EXIT_FAIL;
	} else if (resp.status == 400) {
		char msg[512];
		cli_error_message(&resp, msg, sizeof(msg));
		cli_errorf(c, "%s", msg);
		rc = CLI_EXIT_USAGE;
	} else if (resp.status != 200) {
		cli_server_error(c, "GET", target, &resp);
		rc = CLI_EXIT_FAIL;
	} else {
		cJSON *j = cJSON_ParseWithLength(resp.body, resp.len);
		if (j)
			rc = print_answer(c, j);
		else {
			cli_errorf(c, "GET %s%s: the answer is not JSON",
			           c->server, target);
			rc = CLI_EXIT_FAIL;
		}
		cJSON_Delete(j);
	}
	cli_http_resp_free(&resp);
	return cli_finish(c, rc);
}

int cl_cmd_trace(int argc, char **argv)
{
	static const cli_cmd_spec spec = {
	    .name = "trace",
	    .synopsis = "ID",
	    .description =
	        "Finds the command(s) with trace id or command id ID "
	        "(a trace id comes\n"
	        "from the traceparent or X-Trace-Id header or the "
	        "\"trace_id\" of a\n"
	        "command's answer) and shows each command's events "
	        "with their log\n"
	        "positions, streams and types, and for each "
	        "projection whether it has\n"
	        "applied them and when.  Exit status 1 when nothing "
	        "matches.\n"
	        "Works beside a running server (read-only), or asks it "
	        "with --server\n"
	        "(GET /trace/ID; it waits up to --http-timeout, default "
	        "10 minutes here).",
	    .min_args = 1,
	    .max_args = 1,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	const char *id = argv[first];
	cli_signals_init();
	if (c.server)
		return trace_server(&c, id);
	cleave_engine *e;
	if ((rc = cli_engine_open(&c, true, &e)))
		return rc;
	cl_evcopies x = {0};
	int r = cleave_log_trace(e, id, cl_evcopies_copy, &x);
	if (r < 0) {
		cli_errorf(&c, "%s", cleave_errmsg());
		rc = r == CLEAVE_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	} else if (x.n == 0) {
		cli_errorf(&c,
		           "no event has trace id or command id '%s' "
		           "(a command that was rejected wrote none)",
		           id);
		rc = CLI_EXIT_FAIL;
	} else {
		/* one block per command, in log order of first events */
		bool *done = calloc((size_t)x.n, sizeof(bool));
		cl_evcopy *group = malloc((size_t)x.n * sizeof(*group));
		int blocks = 0;
		for (int i = 0; done && group && i < x.n; i++) {
			if (done[i])
				continue;
			int g = 0;
			for (int k = i; k < x.n; k++)
				if (!done[k] && same(x.ev[k].command_id,
				                     x.ev[i].command_id)) {
					group[g++] = x.ev[k];
					done[k] = true;
				}
			int np = cleave_projection_count(e);
			papplied *pa = calloc((size_t)np + 1, sizeof(*pa));
			if (!pa) {
				free(done);
				done = NULL;
				break;
			}
			for (int k = 0; k < np; k++)
				projection_fate(e, k, group, g, &pa[k]);
			print_block(&c, group, g, pa, np, &blocks);
			free(pa);
			if (cli_out_broken())
				break;
		}
		if (!done || !group) {
			cli_errorf(&c, "out of memory");
			rc = CLI_EXIT_FAIL;
		}
		free(done);
		free(group);
		if (x.truncated)
			cli_errorf(&c, "only the first %d events are shown",
			           CL_TRACE_EVENTS_MAX);
	}
	cl_evcopies_free(&x);
	cleave_engine_close(e);
	return cli_finish(&c, rc);
}
