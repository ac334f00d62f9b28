/*
 * rebuild.c — `cleave rebuild NAME...`: a blue-green rebuild.
 *
 * The engine builds the next copy of the projection from position 0
 * beside the live one, which serves queries until the new copy has caught
 * up; then one atomic switch.  With --data the engine runs here, so the
 * command waits for the switch (a --no-wait rebuild is recorded in the
 * catalog and resumes the next time the engine opens the directory).
 * With --server the server runs it; --wait polls GET /projections until
 * the projection is live again.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

enum { OPT_WAIT = 0x100, OPT_NO_WAIT, OPT_TIMEOUT };

#define STALL_US (10 * 1000000LL)

typedef struct opts {
	bool wait;
	double timeout_s; /* 0: no limit */
	const cli_common *c;
} opts;

static int on_opt(void *arg, int opt, const char *val)
{
	opts *o = arg;
	switch (opt) {
	case OPT_WAIT:
		o->wait = true;
		return 0;
	case OPT_NO_WAIT:
		o->wait = false;
		return 0;
	case OPT_TIMEOUT:
		if (!cli_parse_seconds(val, &o->timeout_s)) {
			fprintf(stderr,
			        "cleave rebuild: --timeout wants "
			        "seconds, not '%s'\n",
			        val);
			return CLI_EXIT_USAGE;
		}
		return 0;
	}
	return CLI_EXIT_USAGE;
}

static void report(const cli_common *c, const char *name, const char *what,
                   int version, int64_t position, double secs)
{
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", name);
		cJSON_AddStringToObject(o, "result", what);
		if (version > 0)
			cJSON_AddNumberToObject(o, "version", version);
		if (position >= 0)
			cli_add_int(o, "position", position);
		cJSON_AddNumberToObject(o, "seconds", secs);
		cli_print_json(o);
		cJSON_Delete(o);
	} else if (!strcmp(what, "rebuilt")) {
		printf("%s: rebuilt (version %d, at position %lld) in %.2f "
		       "s\n",
		       name, version, (long long)position, secs);
	} else {
		printf("%s: %s\n", name, what);
	}
	fflush(stdout);
}

static int from_data(const cli_common *c, const opts *o, char **names, int n)
{
	cleave_engine *e;
	int rc = cli_engine_open(c, false, &e);
	if (rc)
		return rc;
	for (int i = 0; i < n && rc == 0; i++) {
		int64_t t0 = cli_now_us();
		if (cleave_projection_find(e, names[i]) < 0) {
			cli_errorf(c, "no projection '%s' in domain %s",
			           names[i], c->domain->name);
			rc = CLI_EXIT_FAIL;
			break;
		}
		if (cleave_projection_rebuild(e, names[i])) {
			cli_errorf(c, "%s: %s", names[i], cleave_errmsg());
			rc = CLI_EXIT_FAIL;
			break;
		}
		if (!o->wait) {
			report(c, names[i],
			       "rebuild started; it goes on the next time a "
			       "server opens this directory",
			       0, -1, 0);
			continue;
		}
		/* wait in slices so Ctrl-C and --timeout are honoured */
		int64_t until = o->timeout_s > 0
		                    ? t0 + (int64_t)(o->timeout_s * 1e6)
		                    : INT64_MAX;
		for (;;) {
			int w =
			    cleave_projection_wait_rebuilt(e, names[i], 200);
			if (w == 0)
				break;
			if (w != CLEAVE_ETIMEDOUT) {
				cli_errorf(c, "%s: %s", names[i],
				           cleave_errmsg());
				rc = CLI_EXIT_FAIL;
				break;
			}
			if (cli_interrupted || cli_now_us() >= until) {
				cleave_proj_status s;
				int k = cleave_projection_find(e, names[i]);
				cleave_projection_status(e, k, &s);
				cli_errorf(c,
				           "%s: %s at position %lld of %lld; "
				           "the rebuild resumes the next "
				           "time the engine opens %s",
				           names[i],
				           cli_interrupted ? "interrupted"
				                           : "timed out",
				           (long long)s.building_position,
				           (long long)cleave_log_head(e),
				           c->data_dir);
				rc = CLI_EXIT_FAIL;
				break;
			}
		}
		if (rc)
			break;
		cleave_proj_status s;
		cleave_projection_status(e, cleave_projection_find(e, names[i]),
		                         &s);
		report(c, names[i], "rebuilt", s.version, s.position,
		       (double)(cli_now_us() - t0) / 1e6);
	}
	cleave_engine_close(e);
	return rc;
}

/* The projection's entry in a GET /projections answer, or NULL. */
static const cJSON *find_proj(const cJSON *j, const char *name)
{
	const cJSON *list =
	    cJSON_IsArray(j)
	        ? j
	        : cJSON_GetObjectItemCaseSensitive(j, "projections");
	if (!list)
		list = j;
	const cJSON *p;
	cJSON_ArrayForEach(p, list)
	{
		const char *nm = cli_jstr(p, "name");
		if ((nm && !strcmp(nm, name)) ||
		    (!nm && p->string && !strcmp(p->string, name)))
			return p;
	}
	return NULL;
}

static int from_server(const cli_common *c, const opts *o, char **names, int n)
{
	int rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		char target[512] = "/projections/";
		cli_url_encode(target, sizeof(target) - 16, names[i]);
		strcat(target, "/rebuild");
		int64_t t0 = cli_now_us();
		if ((rc = cli_server_call(c, "POST", target, NULL, NULL)))
			break;
		if (!o->wait) {
			report(c, names[i], "rebuild started", 0, -1, 0);
			continue;
		}
		int64_t until = o->timeout_s > 0
		                    ? t0 + (int64_t)(o->timeout_s * 1e6)
		                    : INT64_MAX;
		int pause_ms = 20; /* small rebuilds are done in a moment */
		/* GET /projections does not say which copy an error belongs
		 * to: a new copy that reports an error and makes no progress
		 * for STALL_US is taken as parked on a failing event. */
		int64_t built = -1, moved_us = cli_now_us();
		bool noted = false;
		for (;;) {
			cJSON *j;
			if ((rc = cli_server_call(c, "GET", "/projections", &j,
			                          NULL))) {
				if (cli_interrupted)
					cli_errorf(c,
					           "%s: stopped waiting; the "
					           "server goes on "
					           "rebuilding",
					           names[i]);
				break;
			}
			const cJSON *p = find_proj(j, names[i]);
			const char *state = cli_jstr(p, "state");
			const char *err = cli_jstr(p, "last_error");
			int64_t bpos = cli_jint(p, "building_position", -1);
			if (bpos != built) {
				built = bpos;
				moved_us = cli_now_us();
			}
			bool stalled =
			    err && *err && cli_now_us() - moved_us > STALL_US;
			if (!p || !state) {
				cli_errorf(c, "%s: not in GET /projections",
				           names[i]);
				rc = CLI_EXIT_FAIL;
			} else if (!strcmp(state, "live")) {
				report(c, names[i], "rebuilt",
				       (int)cli_jint(p, "version", 0),
				       cli_jint(p, "position", 0),
				       (double)(cli_now_us() - t0) / 1e6);
				cJSON_Delete(j);
				break;
			} else if (!strcmp(state, "parked") && !noted) {
				/* the old copy is parked; the new one may well
				 * get past the event: keep waiting */
				noted = true;
				if (!c->json)
					fprintf(stderr,
					        "%s: the live copy is parked; "
					        "waiting for the new copy to "
					        "replace it\n",
					        names[i]);
			} else if ((strcmp(state, "rebuilding") &&
			            strcmp(state, "parked")) ||
			           (!strcmp(state, "rebuilding") && stalled)) {
				cli_errorf(
				    c, "%s: %s at position %lld%s%s", names[i],
				    strcmp(state, "rebuilding")
				        ? state
				        : "the new copy is stuck",
				    (long long)(bpos >= 0
				                    ? bpos
				                    : cli_jint(p, "position",
				                               0)),
				    err && *err ? ": " : "", err ? err : "");
				rc = CLI_EXIT_FAIL;
			} else if (cli_interrupted || cli_now_us() >= until) {
				cli_errorf(c,
				           "%s: %s waiting; the server goes "
				           "on rebuilding (see cleave status)",
				           names[i],
				           cli_interrupted ? "stopped"
				                           : "timed out");
				rc = CLI_EXIT_FAIL;
			}
			cJSON_Delete(j);
			if (rc)
				break;
			cli_sleep_ms(pause_ms);
			if (pause_ms < 500)
				pause_ms *= 2;
		}
	}
	return rc;
}

int cl_cmd_rebuild(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"wait", no_argument, NULL, OPT_WAIT},
	    {"no-wait", no_argument, NULL, OPT_NO_WAIT},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {0},
	};
	opts o = {.wait = true};
	cli_cmd_spec spec = {
	    .name = "rebuild",
	    .synopsis = "NAME...",
	    .description =
	        "Rebuilds projection NAME blue-green: a new copy is "
	        "built from the\n"
	        "start of the log beside the live one, which goes on "
	        "serving queries;\n"
	        "when the new copy has caught up, one atomic switch "
	        "makes it live.\n"
	        "With --data the server must be stopped (the "
	        "engine runs here);\n"
	        "with --server the running server rebuilds.",
	    .options_help =
	        "      --wait             wait until the new copy is "
	        "live (default)\n"
	        "      --no-wait          start the rebuild and return\n"
	        "      --timeout S        give up waiting after S "
	        "seconds (default: none)\n",
	    .opts = lopts,
	    .on_opt = on_opt,
	    .arg = &o,
	    .min_args = 1,
	    .max_args = -1,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	o.c = &c;
	cli_signals_init();
	rc = c.server ? from_server(&c, &o, argv + first, argc - first)
	              : from_data(&c, &o, argv + first, argc - first);
	return cli_finish(&c, rc);
}
