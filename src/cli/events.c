/*
 * events.c — `cleave events`: the log, one JSON event per line.
 *
 * Each line is {"position", "stream", "version", "type",
 * "schema_version", "data": <object as stored>, "ts_us", "trace_id",
 * "command_id", "idempotency_key"?, "causation_id"?}, the same whether
 * read from a data directory or from GET /events.  --from P starts at position
 * P (inclusive).
 * --follow keeps polling for new events until interrupted; from a data
 * directory that is a read of the write store every poll (its readers see
 * each new commit), from a server GET /events.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

enum {
	OPT_FOLLOW = 'f',
	OPT_STREAM = 's',
	OPT_LIMIT = 'n',
	OPT_FROM = 0x100,
	OPT_INTERVAL,
};

#define SERVER_PAGE 1000 /* events per GET /events */

typedef struct opts {
	int64_t from; /* first position to show */
	const char *stream;
	int64_t limit; /* 0: all */
	bool follow;
	int interval_ms;
} opts;

static int on_opt(void *arg, int opt, const char *val)
{
	opts *o = arg;
	double s;
	switch (opt) {
	case OPT_FROM:
		if (!cli_parse_i64(val, 0, INT64_MAX / 2, &o->from))
			goto bad;
		return 0;
	case OPT_STREAM:
		if (!*val || strlen(val) > CLEAVE_STREAM_MAX)
			goto bad;
		o->stream = val;
		return 0;
	case OPT_LIMIT:
		if (!cli_parse_i64(val, 1, INT64_MAX / 2, &o->limit))
			goto bad;
		return 0;
	case OPT_FOLLOW:
		o->follow = true;
		return 0;
	case OPT_INTERVAL:
		if (!cli_parse_seconds(val, &s) || s < 0.01 || s > 3600)
			goto bad;
		o->interval_ms = (int)(s * 1000);
		return 0;
	}
bad:
	fprintf(stderr, "cleave events: bad value '%s' for an option\n",
	        val ? val : "");
	return CLI_EXIT_USAGE;
}

/* ---- from a data directory ----------------------------------------------- */

typedef struct emit_ctx {
	int64_t last; /* position of the last event printed */
	int64_t printed;
	int64_t limit; /* 0: no limit */
} emit_ctx;

static int emit(void *arg, const cleave_event *ev)
{
	emit_ctx *x = arg;
	cJSON *o = cJSON_CreateObject();
	cli_add_int(o, "position", ev->position);
	cJSON_AddStringToObject(o, "stream", ev->stream);
	cli_add_int(o, "version", ev->version);
	cJSON_AddStringToObject(o, "type", ev->type);
	cJSON_AddNumberToObject(o, "schema_version", ev->schema_version);
	/* the data exactly as stored (it is one JSON object) */
	cJSON_AddItemToObject(o, "data", cJSON_CreateRaw(ev->data));
	cli_add_int(o, "ts_us", ev->ts_us);
	/* as GET /events writes them: ids null when absent, the optional
	 * keys left out */
	const char *meta[][2] = {{"trace_id", ev->trace_id},
	                         {"command_id", ev->command_id},
	                         {"idempotency_key", ev->idempotency_key},
	                         {"causation_id", ev->causation_id}};
	for (size_t i = 0; i < sizeof(meta) / sizeof(*meta); i++) {
		if (meta[i][1])
			cJSON_AddStringToObject(o, meta[i][0], meta[i][1]);
		else if (i < 2)
			cJSON_AddNullToObject(o, meta[i][0]);
	}
	cli_print_json(o);
	cJSON_Delete(o);
	x->last = ev->position;
	x->printed++;
	if (cli_out_broken() || cli_interrupted)
		return 1;
	return x->limit && x->printed >= x->limit ? 1 : 0;
}

static int from_data(const cli_common *c, const opts *o)
{
	cleave_engine *e;
	int rc = cli_engine_open(c, true, &e);
	if (rc)
		return rc;
	emit_ctx x = {o->from > 0 ? o->from - 1 : 0, 0, o->limit};
	for (;;) {
		int r = cleave_log_read(e, x.last, o->stream, 0, emit, &x);
		if (r < 0) {
			cli_errorf(c, "reading the log: %s", cleave_errmsg());
			rc = CLI_EXIT_FAIL;
			break;
		}
		if (!o->follow || cli_out_gone() || cli_interrupted ||
		    (x.limit && x.printed >= x.limit))
			break;
		if (fflush(stdout) != 0)
			break;
		cli_sleep_ms(o->interval_ms);
		if (cli_interrupted)
			break;
	}
	cleave_engine_close(e);
	return rc;
}

/* ---- from a server ------------------------------------------------------- */

/* GET /events answers {"events": [...]} or a bare array. */
static const cJSON *event_list(const cJSON *j)
{
	if (cJSON_IsArray(j))
		return j;
	return cJSON_GetObjectItemCaseSensitive(j, "events");
}

static int from_server(const cli_common *c, const opts *o)
{
	/* Whether the server reads `from` as "after" or "at", asking from
	 * the position before the one wanted and dropping what comes
	 * before it gives the right events either way. */
	int64_t next = o->from > 0 ? o->from : 1; /* first wanted */
	int64_t printed = 0;
	int rc = 0;
	while (!cli_interrupted) {
		int64_t want = SERVER_PAGE;
		if (o->limit && o->limit - printed < want)
			want = o->limit - printed;
		char target[1024];
		int n = snprintf(target, sizeof(target),
		                 "/events?from=%lld&limit=%lld",
		                 (long long)(next - 1), (long long)want + 1);
		if (o->stream) {
			snprintf(target + n, sizeof(target) - (size_t)n,
			         "&stream=");
			cli_url_encode(target, sizeof(target), o->stream);
		}
		cJSON *j;
		if ((rc = cli_server_call(c, "GET", target, &j, NULL))) {
			if (cli_interrupted)
				rc = 0; /* Ctrl-C while waiting: a normal end */
			break;
		}
		int64_t head = cli_jint(j, "head", -1);
		const cJSON *list = event_list(j);
		if (!cJSON_IsArray(list)) {
			cli_errorf(c, "GET /events: no event list in the "
			              "answer");
			cJSON_Delete(j);
			rc = CLI_EXIT_FAIL;
			break;
		}
		cJSON *ev;
		int got = 0;
		cJSON_ArrayForEach(ev, list)
		{
			int64_t pos = cli_jint(ev, "position", -1);
			if (pos < next)
				continue;
			cli_print_json(ev);
			got++;
			printed++;
			next = pos + 1;
			if (o->limit && printed >= o->limit)
				break;
		}
		cJSON_Delete(j);
		if (cli_out_gone() || (o->limit && printed >= o->limit))
			break;
		if (got && (head < 0 || next <= head))
			continue; /* more may be there: read on at once */
		if (!o->follow)
			break;
		if (fflush(stdout) != 0)
			break;
		cli_sleep_ms(o->interval_ms);
	}
	return rc;
}

int cl_cmd_events(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"from", required_argument, NULL, OPT_FROM},
	    {"stream", required_argument, NULL, OPT_STREAM},
	    {"limit", required_argument, NULL, OPT_LIMIT},
	    {"follow", no_argument, NULL, OPT_FOLLOW},
	    {"interval", required_argument, NULL, OPT_INTERVAL},
	    {0},
	};
	opts o = {.interval_ms = 250};
	cli_cmd_spec spec = {
	    .name = "events",
	    .description =
	        "Prints the event log, one JSON object per line, "
	        "oldest first:\n"
	        "  {\"position\", \"stream\", \"version\", \"type\", "
	        "\"schema_version\",\n"
	        "   \"data\": {…}, \"ts_us\", \"trace_id\", "
	        "\"command_id\",\n"
	        "   \"idempotency_key\" and \"causation_id\" when "
	        "the command had them}\n"
	        "Works beside a running server (read-only).  Made for "
	        "pipes: cleave events | jq .type",
	    .options_help = "      --from P           start at log position P "
	                    "(default: the first)\n"
	                    "  -s, --stream S         only events of stream S\n"
	                    "  -n, --limit N          at most N events\n"
	                    "  -f, --follow           keep printing new events "
	                    "until interrupted\n"
	                    "      --interval S       --follow polls every S "
	                    "seconds (default 0.25)\n",
	    .opts = lopts,
	    .shortopts = "s:n:f",
	    .on_opt = on_opt,
	    .arg = &o,
	    .min_args = 0,
	    .max_args = 0,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	cli_signals_init();
	rc = c.server ? from_server(&c, &o) : from_data(&c, &o);
	return cli_finish(&c, rc);
}
