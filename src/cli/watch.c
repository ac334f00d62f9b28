/*
 * watch.c — `cleave watch QUERY [KEY=VALUE...]`: a live query's answers,
 * one JSON object per line, each time it changes.
 *
 * It asks GET /queries/QUERY?KEY=VALUE… with Accept: text/event-stream
 * (docs/http-api.md, "Live queries") and prints the data of each `answer`
 * message on a line of its own, flushed at once, so that a pipe to jq sees
 * it when it comes; an `error` message's data (the error JSON) goes to
 * stderr as one line and watching goes on.
 *
 * A stream that drops (the server restarts, the network fails, nothing
 * comes for --http-timeout while the server writes a keep-alive comment
 * at least every 10 s) is asked again with Last-Event-ID, the last id
 * seen, after a pause that starts at 0.1 s and doubles up to 5 s.  A
 * resumed stream starts with the current answer: when it is the one
 * printed last (position aside), it is not printed again.  5xx answers
 * (503 too_many_subscribers, shutting_down) are printed to stderr and
 * tried again the same way.  Any other answer that is not a stream (400
 * bad parameters, 404 unknown query, 401, 403) is printed to stderr and
 * ends it with exit 1, and so does a first connection that fails: a
 * watch that never reached its server is a mistake to report, one that
 * lost it waits for it.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_util.h"

enum {
	OPT_COUNT = 'n',
	OPT_MIN_POSITION = 0x100,
};

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TARGET_MAX     12288 /* the encoded request target */

typedef struct opts {
	int64_t count;        /* 0: until interrupted */
	int64_t min_position; /* -1: none */
} opts;

/* The stream being read: SSE's fields (one message at a time) and what
 * watching keeps across reconnections. */
typedef struct watch {
	const cli_common *c;
	const opts *o;
	/* the message being read */
	char *line; /* an incomplete line */
	size_t line_len, line_cap;
	bool after_cr; /* the last byte was a CR */
	char *data;    /* its data lines, joined by spaces */
	size_t data_len, data_cap;
	bool has_data;
	char event[32];
	/* across messages and streams */
	char last_id[24]; /* the last id seen, sent as Last-Event-ID */
	char *last;       /* the last message shown, without "position" */
	size_t last_len;
	bool last_error;
	bool resumed;     /* a new stream: its first message may repeat */
	int64_t printed;  /* answers printed */
	int64_t messages; /* on this stream */
	int rc;           /* set to stop: an exit code */
	bool stop;
} watch;

static int on_opt(void *arg, int opt, const char *val)
{
	opts *o = arg;
	switch (opt) {
	case OPT_COUNT:
		if (!cli_parse_i64(val, 1, INT64_MAX / 2, &o->count))
			break;
		return 0;
	case OPT_MIN_POSITION:
		if (!cli_parse_i64(val, 0, INT64_C(1) << 53, &o->min_position))
			break;
		return 0;
	}
	fprintf(stderr, "cleave watch: bad value '%s' for an option\n",
	        val ? val : "");
	return CLI_EXIT_USAGE;
}

static bool grow(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return true;
	if (need > CLI_HTTP_BODY_MAX)
		return false;
	size_t c = *cap ? *cap : 4096;
	while (c < need)
		c *= 2;
	char *q = realloc(*p, c);
	if (!q)
		return false;
	*p = q;
	*cap = c;
	return true;
}

/* The answer without its leading "position" member, as the server
 * compares answers: a resumed stream's first answer that differs from the
 * last one shown only there is the same answer. */
static void strip_position(const char *s, size_t n, const char **out,
                           size_t *out_len)
{
	static const char pre[] = "{\"position\":";
	size_t i = sizeof(pre) - 1;
	*out = s;
	*out_len = n;
	if (n < i || memcmp(s, pre, i))
		return;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	if (i < n && s[i] == ',')
		i++;
	*out = s + i;
	*out_len = n - i;
}

/* Whether the message is the one shown last; if not, it becomes it. */
static bool repeated(watch *w, bool error)
{
	const char *body;
	size_t len;
	strip_position(w->data, w->data_len, &body, &len);
	if (w->last && error == w->last_error && len == w->last_len &&
	    !memcmp(body, w->last, len))
		return true;
	char *copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, body, len);
		copy[len] = 0;
	}
	free(w->last);
	w->last = copy;
	w->last_len = copy ? len : 0;
	w->last_error = error;
	return false;
}

/* A whole message came (a blank line after its fields). */
static void dispatch(watch *w)
{
	bool answer = !strcmp(w->event, "answer");
	bool error = !strcmp(w->event, "error");
	bool first = w->resumed;
	if (!w->has_data)
		goto reset; /* a comment or an id alone: nothing to show */
	w->messages++;
	w->resumed = false;
	if (!answer && !error)
		goto reset; /* a kind this version does not know */
	if (repeated(w, error) && first)
		goto reset;
	w->data[w->data_len] = 0;
	if (error) {
		fprintf(stderr, "%s\n", w->data);
		goto reset;
	}
	fwrite(w->data, 1, w->data_len, stdout);
	putchar('\n');
	fflush(stdout);
	if (cli_out_broken()) {
		w->stop = true;
		goto reset;
	}
	if (w->o->count && ++w->printed >= w->o->count)
		w->stop = true;
reset:
	w->data_len = 0;
	w->has_data = false;
	w->event[0] = 0;
}

/* One line of the stream (without its end of line). */
static void field(watch *w, const char *s, size_t n)
{
	if (n == 0) {
		dispatch(w);
		return;
	}
	if (s[0] == ':')
		return; /* a comment: the keep-alives */
	const char *colon = memchr(s, ':', n);
	size_t nl = colon ? (size_t)(colon - s) : n;
	const char *v = colon ? colon + 1 : s + n;
	size_t vl = (size_t)(s + n - v);
	if (vl && *v == ' ')
		v++, vl--;
	if (nl == 4 && !memcmp(s, "data", 4)) {
		/* lines of one message's data are joined by a space, not a
		 * line break: each answer stays one line (and JSON) */
		size_t sep = w->has_data ? 1 : 0;
		if (!grow(&w->data, &w->data_cap, w->data_len + sep + vl + 1)) {
			cli_errorf(w->c, "a message larger than %u bytes",
			           CLI_HTTP_BODY_MAX);
			w->rc = CLI_EXIT_FAIL;
			w->stop = true;
			return;
		}
		if (sep)
			w->data[w->data_len++] = ' ';
		memcpy(w->data + w->data_len, v, vl);
		w->data_len += vl;
		w->has_data = true;
	} else if (nl == 5 && !memcmp(s, "event", 5)) {
		snprintf(w->event, sizeof(w->event), "%.*s",
		         (int)(vl < sizeof(w->event) ? vl : 0), v);
	} else if (nl == 2 && !memcmp(s, "id", 2)) {
		/* the server's ids are log positions; anything else would
		 * be refused as a Last-Event-ID, so it is not kept */
		if (vl && vl < sizeof(w->last_id) &&
		    strspn(v, "0123456789") >= vl)
			snprintf(w->last_id, sizeof(w->last_id), "%.*s",
			         (int)vl, v);
	}
	/* retry: and unknown fields are ignored, as SSE says */
}

/* The body as it arrives: split into lines (LF, CRLF or CR). */
static int on_body(void *arg, const char *p, size_t n)
{
	watch *w = arg;
	for (size_t i = 0; i < n && !w->stop; i++) {
		char ch = p[i];
		bool after_cr = w->after_cr;
		w->after_cr = ch == '\r';
		if (ch == '\n' && after_cr)
			continue; /* CRLF: the CR ended the line */
		if (ch == '\n' || ch == '\r') {
			if (w->line)
				w->line[w->line_len] = 0;
			field(w, w->line ? w->line : "", w->line_len);
			w->line_len = 0;
			continue;
		}
		if (!grow(&w->line, &w->line_cap, w->line_len + 2)) {
			cli_errorf(w->c, "a line longer than %u bytes",
			           CLI_HTTP_BODY_MAX);
			w->rc = CLI_EXIT_FAIL;
			w->stop = true;
			break;
		}
		w->line[w->line_len++] = ch;
	}
	/* the reader of stdout has gone: found at the next write, or here
	 * at the latest with the next keep-alive comment */
	if (cli_out_gone())
		w->stop = true;
	return w->stop || cli_interrupted;
}

/* GET /queries/NAME?K=V&…[&min_position=P], encoded; false when a param
 * is not KEY=VALUE (printed) or the whole is too long. */
static int build_target(const cli_common *c, const opts *o, char **args,
                        int nargs, char *t, size_t cap)
{
	snprintf(t, cap, "/queries/");
	cli_url_encode(t, cap, args[0]);
	for (int i = 1; i < nargs; i++) {
		const char *eq = strchr(args[i], '=');
		if (!eq || eq == args[i])
			return cli_usage_error(c,
			                       "'%s' is not a parameter: want "
			                       "KEY=VALUE",
			                       args[i]);
		char key[256];
		size_t kl = (size_t)(eq - args[i]);
		if (kl >= sizeof(key))
			return cli_usage_error(c, "parameter name too long");
		memcpy(key, args[i], kl);
		key[kl] = 0;
		strncat(t, i == 1 ? "?" : "&", cap - strlen(t) - 1);
		cli_url_encode(t, cap, key);
		strncat(t, "=", cap - strlen(t) - 1);
		cli_url_encode(t, cap, eq + 1);
	}
	if (o->min_position >= 0) {
		size_t at = strlen(t);
		snprintf(t + at, cap - at, "%smin_position=%lld",
		         nargs > 1 ? "&" : "?", (long long)o->min_position);
	}
	/* cli_url_encode stops short of the end: a target that filled the
	 * buffer may have been cut */
	if (strlen(t) + 8 >= cap)
		return cli_usage_error(c, "the query's parameters are too "
		                          "long");
	return 0;
}

/* A plain answer's error JSON on one line of stderr. */
static void print_answer_error(const cli_common *c, const cli_http_resp *r)
{
	if (r->body && r->len && r->body[0] == '{' &&
	    !memchr(r->body, '\n', r->len)) {
		fprintf(stderr, "%s\n", r->body);
	} else {
		char shown[600];
		cli_escape(shown, sizeof(shown), r->body ? r->body : "",
		           r->len);
		cli_errorf(c, "the server answered %d: %s", r->status, shown);
	}
	if (r->status == 401 || r->status == 403)
		fprintf(stderr, "hint: give the server's token with "
		                "--auth-token-file PATH or "
		                "CLEAVE_AUTH_TOKEN\n");
}

static int run(const cli_common *c, const opts *o, const char *target)
{
	watch w = {.c = c, .o = o};
	int backoff = BACKOFF_MIN_MS;
	bool reached = false; /* a stream was opened once */
	while (!cli_interrupted && !w.stop) {
		char extra[64] = "", err[512];
		if (w.last_id[0])
			snprintf(extra, sizeof(extra), "Last-Event-ID: %s\r\n",
			         w.last_id);
		w.line_len = w.data_len = 0;
		w.after_cr = w.has_data = false;
		w.event[0] = 0;
		w.messages = 0;
		w.resumed = true;
		cli_http_resp r;
		int rc = cli_http_stream(
		    c->server, target, c->auth_token, "text/event-stream",
		    extra[0] ? extra : NULL, c->http_timeout_ms, on_body, &w,
		    &r, err, sizeof(err));
		if (w.stop || cli_interrupted) {
			cli_http_resp_free(&r);
			break;
		}
		bool stream = r.status >= 200 && r.status <= 299;
		if (rc == 0 && r.status && !stream && r.status < 500) {
			print_answer_error(c, &r);
			cli_http_resp_free(&r);
			w.rc = CLI_EXIT_FAIL;
			break;
		}
		if (rc && !reached && !r.status) {
			cli_errorf(c, "GET %s%s: %s", c->server, target, err);
			w.rc = CLI_EXIT_FAIL;
			break;
		}
		if (rc == 0 && !stream)
			print_answer_error(c, &r); /* a 5xx: tried again */
		cli_http_resp_free(&r);
		reached = true;
		if (w.messages)
			backoff = BACKOFF_MIN_MS;
		cli_errorf(c, "%s; again in %.1f s%s%s",
		           rc       ? err
		           : stream ? "the server ended the stream"
		                    : "the server cannot serve the stream now",
		           backoff / 1000.0,
		           w.last_id[0] ? " from position " : "", w.last_id);
		if (fflush(stdout) != 0 || cli_out_gone())
			break;
		cli_sleep_ms(backoff);
		backoff =
		    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	free(w.line);
	free(w.data);
	free(w.last);
	return w.rc;
}

int cl_cmd_watch(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"count", required_argument, NULL, OPT_COUNT},
	    {"min-position", required_argument, NULL, OPT_MIN_POSITION},
	    {0},
	};
	opts o = {.count = 0, .min_position = -1};
	cli_cmd_spec spec = {
	    .name = "watch",
	    .synopsis = "QUERY [KEY=VALUE...]",
	    .description =
	        "Subscribes to a query of a running server (a live query) and "
	        "prints its\n"
	        "answer, one JSON object per line: the current one, then a "
	        "new one each\n"
	        "time it changes (each with its \"position\"). Made for "
	        "pipes:\n"
	        "  cleave watch product productId=p1 | jq .stock\n"
	        "KEY=VALUE are the query's parameters (encoded here), as in "
	        "GET /queries/QUERY?KEY=VALUE.\n"
	        "Errors the server streams (e.g. the product does not exist "
	        "yet) go to stderr\n"
	        "as one JSON line each and watching goes on; a dropped "
	        "connection is resumed\n"
	        "from the last position seen. An unknown query, bad "
	        "parameters or a refused\n"
	        "token end it (exit 1). Ctrl-C or SIGTERM ends it (exit 0).",
	    .options_help =
	        "  -n, --count N          exit 0 after N answers\n"
	        "      --min-position P   the first answer reflects at least "
	        "log position P\n"
	        "                         (e.g. a command's \"position\"): "
	        "read your writes\n",
	    .opts = lopts,
	    .shortopts = "n:",
	    .on_opt = on_opt,
	    .arg = &o,
	    .min_args = 1,
	    .max_args = -1,
	    .server_only = true,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	char target[TARGET_MAX];
	if ((rc = build_target(&c, &o, argv + first, argc - first, target,
	                       sizeof(target))))
		return rc;
	cli_signals_init();
	rc = run(&c, &o, target);
	return cli_finish(&c, rc);
}
