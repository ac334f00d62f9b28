/*
 * status.c — `cleave status`: every projection's version, state, position
 * and lag, from a data directory or a running server.
 *
 * JSON lines carry the same fields whichever the source, named as in
 * GET /projections: name, version, state, position, lag_events,
 * lag_seconds, last_error, plus what the source knows beyond them.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

static const char *const headers[] = {"PROJECTION", "VERSION",    "STATE",
                                      "POSITION",   "LAG EVENTS", "LAG SECONDS",
                                      "LAST ERROR"};
static const bool right[] = {false, true, false, true, true, true, false};

static void add_row(cli_table *t, const char *name, int64_t version,
                    const char *state, int64_t position, int64_t lag_events,
                    double lag_seconds, const char *last_error)
{
	char v[24], p[24], le[24], ls[32];
	snprintf(v, sizeof(v), "%lld", (long long)version);
	snprintf(p, sizeof(p), "%lld", (long long)position);
	snprintf(le, sizeof(le), "%lld", (long long)lag_events);
	snprintf(ls, sizeof(ls), "%.3f", lag_seconds);
	char err[200];
	cli_escape(err, sizeof(err), last_error ? last_error : "",
	           last_error ? strlen(last_error) : 0);
	const char *cells[] = {name, v, state, p, le, ls, err[0] ? err : "-"};
	cli_table_row(t, cells);
}

/* With the server stopped, the engine opened read-only runs no runners
 * and keeps no timings, so lag in seconds is measured here: the age of
 * the first event the projection has not applied. */
typedef struct first_ts {
	int64_t ts_us;
} first_ts;

static int take_ts(void *arg, const cleave_event *ev)
{
	((first_ts *)arg)->ts_us = ev->ts_us;
	return 1;
}

static double lag_seconds(cleave_engine *e, const cleave_proj_status *s)
{
	if (s->lag_events <= 0 || s->lag_seconds > 0)
		return s->lag_seconds;
	first_ts f = {0};
	if (cleave_log_read(e, s->position, NULL, 1, take_ts, &f) < 0 ||
	    !f.ts_us)
		return 0;
	int64_t now = cli_now_us();
	return now > f.ts_us ? (double)(now - f.ts_us) / 1e6 : 0;
}

static int from_data(const cli_common *c)
{
	cleave_engine *e;
	int rc = cli_engine_open(c, true, &e);
	if (rc)
		return rc;
	int n = cleave_projection_count(e);
	int64_t head = cleave_log_head(e);
	cli_table t;
	cli_table_init(&t, 7, headers, right);
	for (int i = 0; i < n; i++) {
		cleave_proj_status s;
		if ((rc = cleave_projection_status(e, i, &s))) {
			cli_errorf(c, "projection #%d: %s", i, cleave_errmsg());
			rc = CLI_EXIT_FAIL;
			break;
		}
		double lag = lag_seconds(e, &s);
		const char *state = cleave_proj_state_name(s.state);
		if (!c->json) {
			add_row(&t, s.name, s.version, state, s.position,
			        s.lag_events, lag, s.last_error);
			continue;
		}
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", s.name);
		cJSON_AddNumberToObject(o, "version", s.version);
		cJSON_AddStringToObject(o, "state", state);
		cli_add_int(o, "position", s.position);
		cli_add_int(o, "lag_events", s.lag_events);
		cJSON_AddNumberToObject(o, "lag_seconds", lag);
		if (s.last_error[0])
			cJSON_AddStringToObject(o, "last_error", s.last_error);
		else
			cJSON_AddNullToObject(o, "last_error");
		cli_add_int(o, "head", head);
		if (s.state == CLEAVE_PROJ_REBUILDING) {
			cJSON_AddNumberToObject(o, "building_version",
			                        s.building_version);
			cli_add_int(o, "building_position",
			            s.building_position);
		}
		if (s.parked_position)
			cli_add_int(o, "parked_position", s.parked_position);
		cli_add_int(o, "dead_letters", s.dead_letters);
		cli_print_json(o);
		cJSON_Delete(o);
	}
	if (!c->json && rc == 0) {
		cli_table_print(&t, stdout);
		printf("log head %lld (read from %s)\n", (long long)head,
		       c->data_dir);
	}
	cli_table_free(&t);
	cleave_engine_close(e);
	return rc;
}

/* GET /projections answers {"projections": [...]} (or a bare array, or an
 * object keyed by name): take whichever came. */
static const cJSON *projection_list(const cJSON *j)
{
	if (cJSON_IsArray(j))
		return j;
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "projections");
	return p ? p : j;
}

static int from_server(const cli_common *c)
{
	cJSON *j;
	int rc = cli_server_call(c, "GET", "/projections", &j, NULL);
	if (rc)
		return rc;
	const cJSON *list = projection_list(j);
	const cJSON *p;
	cli_table t;
	cli_table_init(&t, 7, headers, right);
	int n = 0;
	cJSON_ArrayForEach(p, list)
	{
		if (!cJSON_IsObject(p))
			continue;
		n++;
		const char *name = cli_jstr(p, "name");
		if (!name)
			name =
			    p->string ? p->string : cli_jstr(p, "projection");
		if (c->json) {
			cJSON *o = cJSON_Duplicate(p, true);
			if (!cJSON_GetObjectItemCaseSensitive(o, "name"))
				cJSON_AddStringToObject(o, "name",
				                        name ? name : "");
			int64_t head = cli_jint(j, "head", -1);
			if (head >= 0 &&
			    !cJSON_GetObjectItemCaseSensitive(o, "head"))
				cli_add_int(o, "head", head);
			cli_print_json(o);
			cJSON_Delete(o);
			continue;
		}
		const char *state = cli_jstr(p, "state");
		add_row(&t, name ? name : "?", cli_jint(p, "version", 0),
		        state ? state : "?", cli_jint(p, "position", 0),
		        cli_jint(p, "lag_events", 0),
		        cli_jnum(p, "lag_seconds", 0),
		        cli_jstr(p, "last_error"));
	}
	if (!n && !cJSON_IsArray(list) && !cJSON_IsObject(list)) {
		cli_errorf(c, "GET /projections: unexpected answer");
		rc = CLI_EXIT_FAIL;
	} else if (!c->json) {
		cli_table_print(&t, stdout);
		int64_t head = cli_jint(j, "head", -1);
		if (head >= 0)
			printf("log head %lld (from %s)\n", (long long)head,
			       c->server);
	}
	cli_table_free(&t);
	cJSON_Delete(j);
	return rc;
}

int cl_cmd_status(int argc, char **argv)
{
	static const cli_cmd_spec spec = {
	    .name = "status",
	    .description =
	        "Shows every projection: the version serving queries, "
	        "its state (live,\n"
	        "rebuilding, parked), the log position it has "
	        "applied, how far it lags\n"
	        "behind the log head in events and in seconds, and "
	        "its last error.\n"
	        "On a terminal it prints a table; otherwise one JSON "
	        "object per projection.",
	    .min_args = 0,
	    .max_args = 0,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	cli_signals_init();
	rc = c.server ? from_server(&c) : from_data(&c);
	return cli_finish(&c, rc);
}
