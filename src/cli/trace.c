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
 * The engine builds the trace (cleave_log_trace_json: the events grouped
 * by command, each projection's fate); with --server the server answers
 * the same document (GET /trace/ID), so both print through one path.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

/* An event of the trace, as the trace document gives it (the strings
 * point into that document; data is printed apart, owned). */
typedef struct tev {
	int64_t position, version, ts_us;
	int schema_version;
	const char *stream, *type, *trace_id, *command_id, *idem, *causation;
	char *data;
} tev;

typedef struct papplied {
	const char *name;
	int version;
	const char *state;
	int64_t position;
	bool subscribed, applied;
	int64_t when_us; /* 0: not recorded */
	int64_t upto;    /* the command's last event this one needs */
} papplied;

static void print_json(const tev *ev, int n, const papplied *pa, int np)
{
	char t[32];
	cJSON *o = cJSON_CreateObject();
	const tev *f = &ev[0];
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

static void print_human(const tev *ev, int n, const papplied *pa, int np)
{
	char t[32];
	const tev *f = &ev[0];
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

static void print_block(const cli_common *c, const tev *ev, int n,
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

/* The trace document (cleave_log_trace_json, or the server's answer to
 * GET /trace/ID): one block per command of "commands", with its events
 * (found by position in "events") and the fate it gives for each
 * projection. */
static int print_answer(const cli_common *c, const cJSON *j)
{
	const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "events");
	int n = cJSON_GetArraySize(all), rc = 0, blocks = 0;
	tev *ev = calloc((size_t)n + 1, sizeof(*ev));
	tev *group = malloc(((size_t)n + 1) * sizeof(*group));
	const cJSON *e, *cmd;
	int k = 0;
	cJSON_ArrayForEach(e, all)
	{
		if (!ev)
			break;
		tev *t = &ev[k++];
		t->position = cli_jint(e, "position", 0);
		t->version = cli_jint(e, "version", 0);
		t->ts_us = cli_jint(e, "ts_us", 0);
		t->schema_version = (int)cli_jint(e, "schema_version", 0);
		t->stream = cli_jstr(e, "stream");
		t->type = cli_jstr(e, "type");
		t->data = cJSON_PrintUnformatted(
		    cJSON_GetObjectItemCaseSensitive(e, "data"));
		t->trace_id = cli_jstr(e, "trace_id");
		t->command_id = cli_jstr(e, "command_id");
		t->idem = cli_jstr(e, "idempotency_key");
		t->causation = cli_jstr(e, "causation_id");
		if (!t->stream || !t->type || !t->data) {
			rc = CLI_EXIT_FAIL;
			break;
		}
	}
	papplied *pa = NULL;
	cJSON_ArrayForEach(cmd, cJSON_GetObjectItemCaseSensitive(j, "commands"))
	{
		if (!ev || !group || rc || cli_out_broken())
			break;
		int g = 0, np = 0;
		const cJSON *p;
		cJSON_ArrayForEach(
		    p, cJSON_GetObjectItemCaseSensitive(cmd, "events"))
		{
			for (int m = 0; m < n; m++)
				if (ev[m].position == (int64_t)p->valuedouble)
					group[g++] = ev[m];
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
	if (!ev || !group || rc) {
		cli_errorf(c, "out of memory");
		rc = CLI_EXIT_FAIL;
	}
	free(pa);
	free(group);
	for (int m = 0; ev && m < n; m++)
		free(ev[m].data);
	free(ev);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")))
		cli_errorf(c, "only the first %d events are shown",
		           CLEAVE_TRACE_EVENTS_MAX);
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
	cleave_buf b = CLEAVE_BUF_INIT;
	int r = cleave_log_trace_json(e, id, &b);
	if (r < 0) {
		cli_errorf(&c, "%s", cleave_errmsg());
		rc = r == CLEAVE_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
	} else {
		cJSON *j = cJSON_ParseWithLength(b.p, b.len);
		if (j) {
			rc = print_answer(&c, j);
		} else {
			cli_errorf(&c, "out of memory");
			rc = CLI_EXIT_FAIL;
		}
		cJSON_Delete(j);
	}
	cleave_buf_free(&b);
	cleave_engine_close(e);
	return cli_finish(&c, rc);
}
