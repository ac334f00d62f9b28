/*
 * testkit.c — the test kit for domains (cleave_test.h), on the public API
 * only: the real engine on a temporary data directory, given/when/then.
 *
 * Given events go through a command the kit adds to a copy of the domain's
 * command table ("_cleave_tk_emit", which no domain can name: names are
 * [A-Za-z0-9_] and domains' own start with a letter), so they are in the
 * log as any command's events are.
 */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleave_test.h"

#define TK_EMIT "_cleave_tk_emit"

struct cleave_tk {
	cleave_domain dom;          /* the domain, with the emit command */
	cleave_command_def *cmds;
	cleave_engine *e;
	char dir[256];
	char why[2048];
	/* the last `when` */
	int rc;
	char *body;                 /* its answer */
	int64_t head_before, position;
};

static int tk_fail(cleave_tk *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int tk_fail(cleave_tk *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof(t->why), fmt, ap);
	va_end(ap);
	return 1;
}

static int tk_err(cleave_tk *t, int rc)
{
	snprintf(t->why, sizeof(t->why), "%s",
		 *cleave_errmsg() ? cleave_errmsg() : cleave_strerror(rc));
	return rc;
}

static int emit_given(cleave_cmd *c, const cJSON *in)
{
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(in, "data");
	return cleave_cmd_emit(c, cleave_json_str(in, "stream"),
			       cleave_json_str(in, "type"),
			       cJSON_Duplicate(data, true));
}

static const cleave_field emit_fields[] = {
    {"stream", CLEAVE_F_STRING, true, 0, 0, CLEAVE_STREAM_MAX, NULL},
    {"type", CLEAVE_F_STRING, true, 0, 0, CLEAVE_NAME_MAX, NULL},
    {"data", CLEAVE_F_OBJECT, true, 0, 0, 0, NULL},
    {NULL, 0, false, 0, 0, 0, NULL},
};

const char *cleave_tk_why(const cleave_tk *t)
{
	return t->why;
}

cleave_engine *cleave_tk_engine(cleave_tk *t)
{
	return t->e;
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	remove(path);
	return 0;
}

int cleave_tk_open(const cleave_domain *d, cleave_tk **out)
{
	*out = NULL;
	if (!d || !d->commands)
		return cleave_error(CLEAVE_EINVAL, "test kit: no domain");
	cleave_tk *t = calloc(1, sizeof(*t));
	if (!t)
		return cleave_error(CLEAVE_ENOMEM, "out of memory");
	int n = 0;
	while (d->commands[n].name)
		n++;
	t->cmds = calloc((size_t)n + 2, sizeof(*t->cmds));
	if (!t->cmds) {
		free(t);
		return cleave_error(CLEAVE_ENOMEM, "out of memory");
	}
	memcpy(t->cmds, d->commands, (size_t)n * sizeof(*t->cmds));
	t->cmds[n] = (cleave_command_def){TK_EMIT, emit_given, emit_fields,
					  "the test kit's given events"};
	t->dom = *d;
	t->dom.commands = t->cmds;
	const char *tmp = getenv("TMPDIR");
	snprintf(t->dir, sizeof(t->dir), "%s/cleave-tk-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(t->dir)) {
		free(t->cmds);
		free(t);
		return cleave_error(CLEAVE_EIO, "test kit: cannot make a "
						"temporary directory");
	}
	cleave_config cfg = {0};
	cfg.domain = &t->dom;
	cfg.data_dir = t->dir;
	cfg.durability = CLEAVE_DURABILITY_OS;
	int rc = cleave_engine_open(&cfg, &t->e);
	if (rc) {
		nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		free(t->cmds);
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void cleave_tk_close(cleave_tk *t)
{
	if (!t)
		return;
	cleave_engine_close(t->e);
	nftw(t->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(t->body);
	free(t->cmds);
	free(t);
}

/* Runs a command; 0 with its answer and rc kept in t, or an engine error
 * (the command could not be run at all). */
static int run(cleave_tk *t, const char *command, const char *body)
{
	cleave_request r = {.command = command,
			    .body = body,
			    .body_len = body ? strlen(body) : 0,
			    .expected_version = -1};
	cleave_outcome *o;
	free(t->body);
	t->body = NULL;
	t->head_before = cleave_log_head(t->e);
	int rc = cleave_command_run(t->e, &r, &o);
	if (rc && rc != CLEAVE_ENOTFOUND && rc != CLEAVE_EINVAL &&
	    rc != CLEAVE_EBADJSON)
		return tk_err(t, rc);
	if (rc) {
		/* refused before it was queued: an answer of its own */
		cleave_buf b = CLEAVE_BUF_INIT;
		cleave_buf_add_error(&b, cleave_errname(rc), cleave_errmsg());
		t->rc = rc;
		t->position = 0;
		t->body = cleave_buf_steal(&b, NULL);
		return 0;
	}
	t->rc = o->rc;
	t->position = o->position;
	t->body = strdup(o->body ? o->body : "{}");
	cleave_outcome_free(o);
	return t->body ? 0 : cleave_error(CLEAVE_ENOMEM, "out of memory");
}

int cleave_tk_given(cleave_tk *t, const char *command, const char *body)
{
	int rc = run(t, command, body);
	if (rc)
		return rc;
	if (t->rc)
		return tk_fail(t, "given %s %s: it failed: %s", command,
			       body ? body : "", t->body);
	return 0;
}

int cleave_tk_given_event(cleave_tk *t, const char *stream, const char *type,
			  const char *data)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_buf_adds(&b, "{\"stream\":");
	cleave_buf_add_jstr(&b, stream, strlen(stream));
	cleave_buf_adds(&b, ",\"type\":");
	cleave_buf_add_jstr(&b, type, strlen(type));
	cleave_buf_adds(&b, ",\"data\":");
	cleave_buf_adds(&b, data && *data ? data : "{}");
	cleave_buf_addc(&b, '}');
	char *body = cleave_buf_steal(&b, NULL);
	if (!body)
		return cleave_error(CLEAVE_ENOMEM, "out of memory");
	int rc = run(t, TK_EMIT, body);
	if (!rc && t->rc)
		rc = tk_fail(t, "given event %s on %s: %s", type, stream,
			     t->body);
	free(body);
	return rc;
}

int cleave_tk_when(cleave_tk *t, const char *command, const char *body)
{
	return run(t, command, body);
}

/* ---- matching ------------------------------------------------------------- */

/* Whether `got` holds what `want` says (a subset), with the path of the
 * first difference in `path` when not. */
static bool match(const cJSON *want, const cJSON *got, bool top,
		  cleave_buf *path)
{
	size_t mark = path->len;
	if (cJSON_IsObject(want)) {
		if (!cJSON_IsObject(got))
			return false;
		const cJSON *w;
		cJSON_ArrayForEach(w, want)
		{
			if (top && !strcmp(w->string, "position"))
				continue;
			cleave_buf_addf(path, ".%s", w->string);
			const cJSON *g =
			    cJSON_GetObjectItemCaseSensitive(got, w->string);
			if (!g || !match(w, g, false, path))
				return false;
			path->len = mark;
			path->p[mark] = 0;
		}
		return true;
	}
	if (cJSON_IsArray(want)) {
		if (!cJSON_IsArray(got) ||
		    cJSON_GetArraySize(want) != cJSON_GetArraySize(got))
			return false;
		const cJSON *g = got->child;
		int i = 0;
		for (const cJSON *w = want->child; w; w = w->next, g = g->next) {
			cleave_buf_addf(path, "[%d]", i++);
			if (!match(w, g, false, path))
				return false;
			path->len = mark;
			path->p[mark] = 0;
		}
		return true;
	}
	if (cJSON_IsString(want))
		return cJSON_IsString(got) &&
		       !strcmp(want->valuestring, got->valuestring);
	if (cJSON_IsNumber(want))
		return cJSON_IsNumber(got) &&
		       want->valuedouble == got->valuedouble;
	if (cJSON_IsBool(want))
		return cJSON_IsBool(got) &&
		       cJSON_IsTrue(want) == cJSON_IsTrue(got);
	return cJSON_IsNull(want) && cJSON_IsNull(got);
}

/* 0 when got (text) holds want (text), else 1 with why = what/where. */
static int expect(cleave_tk *t, const char *what, const char *want_text,
		  const char *got_text)
{
	cJSON *want = cJSON_Parse(want_text);
	cJSON *got = cJSON_Parse(got_text ? got_text : "");
	cleave_buf path = CLEAVE_BUF_INIT;
	cleave_buf_addc(&path, '$');
	int rc = 0;
	if (!want)
		rc = tk_fail(t, "%s: the expectation is not JSON: %s", what,
			     want_text);
	else if (!got)
		rc = tk_fail(t, "%s: the answer is not JSON: %s", what,
			     got_text ? got_text : "(none)");
	else if (!match(want, got, true, &path))
		rc = tk_fail(t, "%s: at %s, expected %s, got %s", what,
			     path.p ? path.p : "$", want_text, got_text);
	cleave_buf_free(&path);
	cJSON_Delete(want);
	cJSON_Delete(got);
	return rc;
}

/* ---- then ------------------------------------------------------------------ */

static int add_event(void *arg, const cleave_event *ev)
{
	cleave_jw *w = arg;
	cleave_jw_open(w, '{');
	cleave_jw_key(w, "type");
	cleave_jw_str(w, ev->type);
	cleave_jw_key(w, "stream");
	cleave_jw_str(w, ev->stream);
	cleave_jw_key(w, "version");
	cleave_jw_int(w, ev->version);
	cleave_jw_key(w, "data");
	cleave_jw_raw(w, ev->data, ev->data_len);
	cleave_jw_close(w, '}');
	return 0;
}

/* 0 when a `when` ran and succeeded (ok) or failed (!ok), else 1. */
static int need_when(cleave_tk *t, const char *what, bool ok)
{
	if (!t->body)
		return tk_fail(t, "then: no command was run (when)");
	if (ok && t->rc)
		return tk_fail(t, "%s: the command failed: %s", what, t->body);
	if (!ok && !t->rc)
		return tk_fail(t, "%s: the command succeeded: %s", what,
			       t->body);
	return 0;
}

/* Whether an error document's code is `code`. */
static bool has_code(const char *body, const char *code)
{
	cJSON *j = cJSON_Parse(body ? body : "");
	const char *got = cleave_json_str(
	    cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
	bool same = got && !strcmp(got, code);
	cJSON_Delete(j);
	return same;
}

int cleave_tk_then_events(cleave_tk *t, const char *expected)
{
	if (need_when(t, "then events", true))
		return 1;
	cleave_jw w = CLEAVE_JW_INIT;
	cleave_jw_open(&w, '[');
	int rc = cleave_log_read(t->e, t->head_before, NULL, 0, add_event, &w);
	cleave_jw_close(&w, ']');
	char *got = cleave_jw_done(&w, NULL);
	if (rc || !got) {
		free(got);
		return rc ? tk_err(t, rc)
			  : cleave_error(CLEAVE_ENOMEM, "out of memory");
	}
	rc = expect(t, "then events", expected, got);
	free(got);
	return rc;
}

int cleave_tk_then_error(cleave_tk *t, const char *code)
{
	if (need_when(t, "then error", false))
		return 1;
	if (cleave_log_head(t->e) != t->head_before)
		return tk_fail(t, "then error %s: the log moved from %lld to "
				  "%lld",
			       code, (long long)t->head_before,
			       (long long)cleave_log_head(t->e));
	return has_code(t->body, code)
		   ? 0
		   : tk_fail(t, "then error %s: got %s", code, t->body);
}

int cleave_tk_then_result(cleave_tk *t, const char *expected)
{
	if (need_when(t, "then result", true))
		return 1;
	cJSON *j = cJSON_Parse(t->body);
	char *r = cJSON_PrintUnformatted(
	    cJSON_GetObjectItemCaseSensitive(j, "result"));
	int rc = expect(t, "then result", expected, r ? r : "null");
	free(r);
	cJSON_Delete(j);
	return rc;
}

/* ---- queries --------------------------------------------------------------- */

/* Runs query with params "k=v&…" once every projection applied the log. */
static int ask(cleave_tk *t, const char *query, const char *params,
	       cleave_answer *a)
{
	cleave_param p[32];
	int n = 0;
	char *copy = params ? strdup(params) : NULL, *save = NULL;
	if (params && !copy)
		return cleave_error(CLEAVE_ENOMEM, "out of memory");
	for (char *kv = copy ? strtok_r(copy, "&", &save) : NULL; kv && n < 32;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '=');
		if (eq)
			*eq = 0;
		p[n].name = kv;
		p[n].value = eq ? eq + 1 : "";
		n++;
	}
	int rc = cleave_wait_position(t->e, NULL, 0, cleave_log_head(t->e),
				      10000);
	if (!rc)
		rc = cleave_query_run(t->e, query, p, n, a);
	free(copy);
	return rc ? tk_err(t, rc) : 0;
}

int cleave_tk_query(cleave_tk *t, const char *query, const char *params,
		    const char *expected)
{
	cleave_answer a;
	int rc = ask(t, query, params, &a);
	if (rc)
		return rc;
	char what[256];
	snprintf(what, sizeof(what), "query %s?%s", query,
		 params ? params : "");
	rc = a.rc ? tk_fail(t, "%s: failed: %s", what, a.body)
		  : expect(t, what, expected, a.body);
	cleave_answer_free(&a);
	return rc;
}

int cleave_tk_query_error(cleave_tk *t, const char *query, const char *params,
			  const char *code)
{
	cleave_answer a;
	int rc = ask(t, query, params, &a);
	if (rc)
		return rc;
	rc = a.rc && has_code(a.body, code)
		 ? 0
		 : tk_fail(t, "query %s?%s: expected error %s, got %s", query,
			   params ? params : "", code, a.body);
	cleave_answer_free(&a);
	return rc;
}
