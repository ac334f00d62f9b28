/*
 * handler.c — what a command handler calls while the writer runs it
 * (cleave.h "Commands"): SQL on the write model inside the command's
 * savepoint, stream versions, its result or failure, and emitting events
 * into the batch being committed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "write/writer_int.h"

int cleave_cmd_exec(cleave_cmd *c, const char *sql, const cleave_value *args,
                    int nargs, int64_t *changes)
{
	int64_t n = 0;
	int rc = c->e->wm->exec(c->e->ws, sql, args, nargs, &n);
	if (rc == 0 && n > 0)
		c->dirty = true; /* a failed statement undid itself */
	if (changes)
		*changes = n;
	return rc;
}

/* Whether sql is a plain SELECT: anything else may write. */
static bool is_select(const char *sql)
{
	while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '(')
		sql++;
	if (strncasecmp(sql, "SELECT", 6))
		return false;
	char next = sql[6];
	return next == ' ' || next == '\t' || next == '\n' || next == '(' ||
	       next == '*';
}

int cleave_cmd_query(cleave_cmd *c, const char *sql, const cleave_value *args,
                     int nargs, cleave_rows **out)
{
	int rc = c->e->wm->query(c->e->ws, sql, args, nargs, out);
	/* conservatively: the statement may have written before a failure,
	 * and a RETURNING cursor writes as it steps */
	if (!is_select(sql))
		c->dirty = true;
	return rc;
}

int cleave_cmd_query_int(cleave_cmd *c, const char *sql,
                         const cleave_value *args, int nargs, int64_t *out)
{
	cleave_rows *r;
	bool dirty = c->dirty;
	int rc = cleave_cmd_query(c, sql, args, nargs, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1 && !cleave_rows_is_null(r, 0)) {
		*out = cleave_rows_int(r, 0);
		rc = 0;
	} else if (rc == 0) {
		/* a statement with RETURNING gives a row per row it changed:
		 * none back, nothing changed (a command refused at that point
		 * needs no undo) */
		if (strcasestr(sql, "RETURNING"))
			c->dirty = dirty;
		rc = CLEAVE_ENOTFOUND;
	} else if (rc > 0) {
		rc = CLEAVE_ENOTFOUND; /* a NULL */
	}
	cleave_rows_close(r);
	return rc;
}

int cleave_cmd_stream_version(cleave_cmd *c, const char *stream, int64_t *out)
{
	return cl_vcache_get(c->e->writer->vcache, c->e, stream, out);
}

int64_t cleave_cmd_time_us(const cleave_cmd *c)
{
	return c->ts_us;
}

void cleave_cmd_result(cleave_cmd *c, cJSON *result)
{
	cJSON_Delete(c->result);
	c->result = result;
}

int cleave_cmd_failv(cleave_cmd *c, int rc, const char *code,
                     const char *fmt, va_list ap)
{
	vsnprintf(c->fail_msg, sizeof(c->fail_msg), fmt, ap);
	snprintf(c->fail_code, sizeof(c->fail_code), "%s",
	         code ? code : cleave_errname(rc));
	c->fail_rc = rc ? rc : CLEAVE_EINTERNAL;
	return c->fail_rc;
}

int cleave_cmd_fail(cleave_cmd *c, int rc, const char *code, const char *fmt,
                    ...)
{
	va_list ap;
	va_start(ap, fmt);
	rc = cleave_cmd_failv(c, rc, code, fmt, ap);
	va_end(ap);
	return rc;
}

const char *cleave_cmd_name(const cleave_cmd *c)
{
	return c->def->name;
}

static int schema_version_of(cleave_engine *e, const char *type)
{
	const cleave_event_type *t = e->dom->event_types;
	for (; t && t->type; t++)
		if (!strcmp(t->type, type))
			return t->schema_version > 0 ? t->schema_version : 1;
	return 1;
}

static int wb_push(cl_wbatch *wb, const cleave_event *ev)
{
	if (wb->n == wb->cap) {
		int cap = wb->cap ? wb->cap * 2 : 16;
		cleave_event *p = realloc(wb->ev, (size_t)cap * sizeof(*p));
		if (!p)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		wb->ev = p;
		wb->cap = cap;
	}
	wb->ev[wb->n++] = *ev;
	return 0;
}

int cleave_cmd_emit(cleave_cmd *c, const char *stream, const char *type,
                    cJSON *data)
{
	cleave_engine *e = c->e;
	cl_wbatch *wb = c->wb;
	char *text = NULL;
	int rc;
	size_t slen = stream ? strlen(stream) : 0;
	if (!wb) {
		rc = cl_err(CLEAVE_EINVAL, "emit outside a command handler");
		goto out;
	}
	if (slen == 0 || slen > CLEAVE_STREAM_MAX ||
	    !cleave_utf8_valid(stream, slen)) {
		rc = cl_err(CLEAVE_EINVAL, "bad stream id");
		goto out;
	}
	if (!cl_name_ok(type, CLEAVE_NAME_MAX, "word")) {
		rc = cl_err(CLEAVE_EINVAL, "bad event type");
		goto out;
	}
	if (!cJSON_IsObject(data)) {
		rc = cl_err(CLEAVE_EINVAL, "event data must be a JSON object");
		goto out;
	}
	int64_t ver;
	if ((rc = cl_vcache_get(e->writer->vcache, e, stream, &ver)))
		goto out;
	if (!c->emitted && c->expected_version >= 0 &&
	    ver != c->expected_version) {
		rc = cleave_cmd_fail(c, CLEAVE_ECONFLICT, "version_conflict",
		                     "stream %s is at version %lld, "
		                     "expected %lld",
		                     stream, (long long)ver,
		                     (long long)c->expected_version);
		goto out;
	}
	c->emitted = true;
	size_t tlen;
	text = cl_json_print(data, &tlen);
	if (!text) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto out;
	}
	cl_stored_event se = {
	    .position = wb->next_pos,
	    .version = ver + 1,
	    .ts_us = c->ts_us,
	    .schema_version = schema_version_of(e, type),
	    .stream = stream,
	    .type = type,
	    .data = text,
	    .data_len = tlen,
	    .trace_id = c->trace_id,
	    .command_id = c->command_id,
	    .idem_key = c->idem_key,
	    .causation_id = c->causation_id,
	};
	/* a store that appends a group at once gets it at the commit */
	if (!e->wm->append_many && (rc = e->wm->append(e->ws, &se)))
		goto out;
	c->dirty = true;
	cl_arena *a = &wb->arena;
	cleave_event ev = {
	    .position = se.position,
	    .stream = cl_arena_strdup(a, stream, slen),
	    .version = se.version,
	    .type = cl_arena_strdup(a, type, strlen(type)),
	    .schema_version = se.schema_version,
	    .data = cl_arena_strdup(a, text, tlen),
	    .data_len = tlen,
	    .json = data,
	    .ts_us = c->ts_us,
	    .trace_id = c->trace_id ? cl_arena_strdup(a, c->trace_id,
	                                              strlen(c->trace_id))
	                            : NULL,
	    .command_id =
	        cl_arena_strdup(a, c->command_id, strlen(c->command_id)),
	    .idempotency_key =
	        c->idem_key
	            ? cl_arena_strdup(a, c->idem_key, strlen(c->idem_key))
	            : NULL,
	    .causation_id = c->causation_id
	                        ? cl_arena_strdup(a, c->causation_id,
	                                          strlen(c->causation_id))
	                        : NULL,
	};
	if (!ev.stream || !ev.type || !ev.data || !ev.command_id) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = wb_push(wb, &ev)))
		goto out;
	data = NULL; /* owned by the batch now */
	if ((rc = cl_vcache_set(e->writer->vcache, stream, se.version))) {
		wb->n--; /* the event row goes with the command's rollback */
		data = (cJSON *)ev.json;
		goto out;
	}
	wb->next_pos++;
out:
	free(text);
	cJSON_Delete(data);
	return rc;
}
