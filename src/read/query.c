/*
 * query.c — answering queries from read models only.
 *
 * A query names the projections it reads.  Before its handler runs, the
 * engine takes the serving copy of each (a reference, so a blue-green
 * switch cannot drop it underneath) and opens one read transaction on it:
 * the handler sees a snapshot, and the answer's position is the smallest
 * checkpoint read in those same snapshots — the data and the position it
 * states always agree.  The write store is never touched.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/json.h"
#include "read/keyrec.h"

#define MAX_READS 8

struct cleave_query {
	cleave_engine *e;
	const cleave_query_def *def;
	const cleave_param *params;
	int nparams;
	cl_copy *copy[MAX_READS];
	cleave_rtx *tx[MAX_READS];
	int n;
	int64_t position;
	int fail_rc;
	char fail_code[64];
	char fail_msg[512];
	char *body;
	size_t body_len;
};

const char *cleave_query_param(cleave_query *q, const char *name)
{
	for (int i = 0; i < q->nparams; i++)
		if (!strcmp(q->params[i].name, name))
			return q->params[i].value;
	return NULL;
}

int cleave_query_fail(cleave_query *q, int rc, const char *code,
		      const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->fail_msg, sizeof(q->fail_msg), fmt, ap);
	va_end(ap);
	snprintf(q->fail_code, sizeof(q->fail_code), "%s",
		 code ? code : cleave_errname(rc));
	q->fail_rc = rc ? rc : CLEAVE_EINTERNAL;
	return q->fail_rc;
}

int cleave_query_param_int(cleave_query *q, const char *name, int64_t def,
			   int64_t min, int64_t max, int64_t *out)
{
	const char *v = cleave_query_param(q, name);
	if (!v || !*v) {
		*out = def;
		return 0;
	}
	const char *d = v[0] == '-' ? v + 1 : v;
	size_t n = strlen(d);
	bool ok = n > 0 && n <= 18;
	for (size_t i = 0; ok && i < n; i++)
		ok = d[i] >= '0' && d[i] <= '9';
	long long x = ok ? strtoll(v, NULL, 10) : 0;
	if (!ok || x < min || x > max)
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
					 "parameter '%s' must be an integer "
					 "between %lld and %lld",
					 name, (long long)min, (long long)max);
	*out = x;
	return 0;
}

int cleave_query_param_str(cleave_query *q, const char *name, bool required,
			   size_t max_len, const char **out)
{
	const char *v = cleave_query_param(q, name);
	*out = NULL;
	if (!v || !*v) {
		if (required)
			return cleave_query_fail(q, CLEAVE_EINVAL,
						 "missing_parameter",
						 "missing parameter '%s'",
						 name);
		return 0;
	}
	if (strlen(v) > max_len)
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
					 "parameter '%s' is longer than %zu "
					 "bytes",
					 name, max_len);
	*out = v;
	return 0;
}

const char *cleave_query_name(const cleave_query *q)
{
	return q->def->name;
}

cleave_rtx *cleave_query_rtx(cleave_query *q, int i)
{
	return i >= 0 && i < q->n ? q->tx[i] : NULL;
}

/* Puts "position":P first in an object's text, or returns it as is.  A
 * handler's text is checked first: invalid JSON (a projection that stored
 * a broken document) or an object with its own top-level "position" (the
 * answer would carry the key twice) is never served. */
static int with_position(cleave_query *q, const char *json, size_t len)
{
	bool has_position = false;
	if (cl_json_check_answer(json, len, "position", &has_position)) {
		char why[256];
		snprintf(why, sizeof(why), "%s", cleave_errmsg());
		return cleave_query_fail(q, CLEAVE_EINTERNAL, "invalid_answer",
					 "query %s built an answer that is not "
					 "valid JSON (%s): a projection stored "
					 "a broken document",
					 q->def->name, why);
	}
	if (has_position)
		return cleave_query_fail(q, CLEAVE_EINTERNAL, "invalid_answer",
					 "query %s built an answer with its own "
					 "top-level \"position\", which the engine "
					 "sets: rename that key in the read model",
					 q->def->name);
	size_t i = 0;
	while (i < len && (json[i] == ' ' || json[i] == '\n' ||
			   json[i] == '\t' || json[i] == '\r'))
		i++;
	cleave_buf b;
	cleave_buf_init(&b);
	if (i < len && json[i] == '{') {
		size_t j = i + 1;
		while (j < len && (json[j] == ' ' || json[j] == '\n' ||
				   json[j] == '\t' || json[j] == '\r'))
			j++;
		cleave_buf_reserve(&b, len + 32);
		cleave_buf_adds(&b, "{\"position\":");
		cleave_buf_add_i64(&b, q->position);
		if (j < len && json[j] != '}')
			cleave_buf_addc(&b, ',');
		cleave_buf_add(&b, json + j, len - j);
	} else {
		cleave_buf_add(&b, json, len);
	}
	free(q->body);
	q->body = cleave_buf_steal(&b, &q->body_len);
	return q->body ? 0 : cl_err(CLEAVE_ENOMEM, "out of memory");
}

int cleave_query_reply_raw(cleave_query *q, const char *json, size_t len)
{
	return with_position(q, json, len);
}

int cleave_query_reply(cleave_query *q, cJSON *body)
{
	size_t len;
	char *s = cl_json_print(body, &len);
	cJSON_Delete(body);
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	int rc = with_position(q, s, len);
	free(s);
	return rc;
}

static void error_answer(cleave_answer *a, int rc, const char *code,
			 const char *msg)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_buf_add_error(&b, code, msg);
	a->rc = rc;
	a->body = cleave_buf_steal(&b, &a->body_len);
}

int cleave_query_run(cleave_engine *e, const char *name,
		     const cleave_param *params, int nparams,
		     cleave_answer *out)
{
	memset(out, 0, sizeof(*out));
	int qi = name ? cl_nametab_get(&e->query_idx, name) : -1;
	if (qi < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown query '%s'",
			      name ? name : "");
	return cl_query_run_rec(e, qi, params, nparams, out, NULL);
}

int cl_query_run_rec(cleave_engine *e, int qi, const cleave_param *params,
		     int nparams, cleave_answer *out, cl_keyrec *rec)
{
	memset(out, 0, sizeof(*out));
	cleave_query q = {0};
	q.e = e;
	q.def = &e->dom->queries[qi];
	q.params = params;
	q.nparams = nparams;
	q.position = INT64_MAX;
	int rc = 0;
	const int *idx = &e->query_reads[qi * e->query_maxreads];
	int nreads = CL_MIN(e->query_nreads[qi], MAX_READS);
	for (int i = 0; i < nreads; i++) {
		cl_proj *pj = cl_proj_at(e, idx[i]);
		cl_copy *c = cl_copy_acquire(pj);
		if (!c) {
			rc = cl_err(CLEAVE_EBUSY,
				    "read model %s is reopening its store "
				    "after a failure; retry",
				    cl_proj_name(pj));
			break;
		}
		q.copy[q.n] = c;
		/* what the copy had applied before this read began: its
		 * store cannot be behind that (the runner commits first) */
		int64_t before = cl_copy_applied(c);
		cl_rstore *st = cl_copy_store(c);
		rc = st->m->begin(st, false, &q.tx[q.n]);
		if (rc) {
			q.tx[q.n] = NULL;
		} else if (rec) {
			q.tx[q.n]->rec = rec;
			q.tx[q.n]->rec_proj = idx[i];
		}
		q.n++;
		int64_t pos;
		if (!rc)
			rc = st->m->checkpoint_get(q.tx[q.n - 1], &pos);
		if (!rc && pos < before)
			/* …unless the store lost data (a Redis restarted
			 * empty) or the copy was deleted under a query node
			 * that had not yet followed a switch: an answer from
			 * it would go back in time */
			rc = cl_err(CLEAVE_EBUSY,
				    "read model %s went back from position "
				    "%lld to %lld (its store lost data, or its "
				    "generation was retired); it is being "
				    "caught up: retry",
				    cl_proj_name(pj),
				    (long long)before, (long long)pos);
		if (rc == CLEAVE_EIO) {
			/* a store that cannot be reached (a Redis down):
			 * the answer may come on a retry */
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
			rc = cl_err(CLEAVE_EBUSY,
				    "read model %s is unavailable: %s; retry",
				    cl_proj_name(pj), msg);
		}
		if (rc)
			break;
		if (pos < q.position)
			q.position = pos;
	}
	if (q.position == INT64_MAX)
		q.position = cl_log_head(e);
	out->position = q.position;
	if (rc) {
		error_answer(out, rc, cleave_errname(rc), cleave_errmsg());
	} else {
		cl_err_clear();
		rc = q.def->handle(&q);
		if (q.fail_rc)
			rc = q.fail_rc;
		if (rc == CLEAVE_EIO && !q.fail_rc) {
			/* a store that cannot be reached now (a Redis that
			 * hangs or restarts): the answer may come on a
			 * retry, as when the read could not begin */
			char msg[512];
			snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
			rc = cl_err(CLEAVE_EBUSY,
				    "a read model this query reads is "
				    "unavailable: %s; retry",
				    msg);
		}
		if (rc)
			error_answer(out, rc,
				     q.fail_rc ? q.fail_code : cleave_errname(rc),
				     q.fail_rc ? q.fail_msg
					       : (*cleave_errmsg()
							  ? cleave_errmsg()
							  : cleave_strerror(rc)));
		else if (!q.body)
			rc = with_position(&q, "{}", 2);
		if (!rc) {
			out->rc = 0;
			out->body = q.body;
			out->body_len = q.body_len;
			q.body = NULL;
		}
	}
	for (int i = 0; i < q.n; i++) {
		if (q.tx[i])
			cl_rtx_abort(q.tx[i]);
		cl_copy_unref(q.copy[i]);
	}
	free(q.body);
	if (!out->body)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	return 0;
}

int cleave_query_remote(cleave_engine *e, const char *name)
{
	int qi = name ? cl_nametab_get(&e->query_idx, name) : -1;
	if (qi < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown query '%s'",
			      name ? name : "");
	const int *idx = &e->query_reads[qi * e->query_maxreads];
	for (int i = 0; i < e->query_nreads[qi]; i++)
		if (cl_proj_remote(cl_proj_at(e, idx[i])))
			return 1;
	return 0;
}

void cleave_answer_free(cleave_answer *a)
{
	if (a) {
		free(a->body);
		a->body = NULL;
	}
}
