/*
 * wstore_common.c — the write stores' logic that does not depend on the
 * SQL dialect, written once for both backends (wstore_int.h): events and
 * idempotency records to and from rows, and the domain's migrations.
 */
#include <stdio.h>

#include "write/wstore_int.h"

void cl_ws_event_values(const cl_stored_event *ev, cleave_value *a)
{
	a[0] = cleave_int(ev->position);
	a[1] = cleave_text(ev->stream);
	a[2] = cleave_int(ev->version);
	a[3] = cleave_text(ev->type);
	a[4] = cleave_int(ev->schema_version);
	a[5] = cleave_textn(ev->data, ev->data_len);
	a[6] = cleave_int(ev->ts_us);
	a[7] = cleave_text(ev->trace_id);
	a[8] = cleave_text(ev->command_id);
	a[9] = cleave_text(ev->idem_key);
	a[10] = cleave_text(ev->causation_id);
}

void cl_ws_event_row(cleave_rows *r, cl_stored_event *ev)
{
	ev->position = cleave_rows_int(r, 0);
	ev->stream = cleave_rows_text(r, 1, NULL);
	ev->version = cleave_rows_int(r, 2);
	ev->type = cleave_rows_text(r, 3, NULL);
	ev->schema_version = (int)cleave_rows_int(r, 4);
	ev->data = cleave_rows_text(r, 5, &ev->data_len);
	ev->ts_us = cleave_rows_int(r, 6);
	ev->trace_id = cleave_rows_text(r, 7, NULL);
	ev->command_id = cleave_rows_text(r, 8, NULL);
	ev->idem_key = cleave_rows_text(r, 9, NULL);
	ev->causation_id = cleave_rows_text(r, 10, NULL);
}

int cl_ws_emit(cleave_rows *rows, cl_stored_fn fn, void *arg, int64_t *n,
               int64_t *last)
{
	int rc;
	while ((rc = cleave_rows_next(rows)) == 1) {
		cl_stored_event ev;
		cl_ws_event_row(rows, &ev);
		if (n)
			(*n)++;
		if (last)
			*last = ev.position;
		rc = fn(arg, &ev);
		if (rc)
			break;
	}
	cleave_rows_close(rows);
	return rc < 0 ? rc : rc > 0 ? 1 : 0;
}

int cl_ws_first_int(cleave_rows *r, int64_t *out)
{
	int rc = cleave_rows_next(r);
	*out = rc == 1 ? cleave_rows_int(r, 0) : 0;
	cleave_rows_close(r);
	return rc < 0 ? rc : 0;
}

/* ---- idempotency records ------------------------------------------------- */

void cl_ws_idem_values(const char *key, const cl_idem_rec *r, cleave_value *a)
{
	a[0] = cleave_text(key);
	a[1] = cleave_text(r->request_hash);
	a[2] = cleave_int(r->rc);
	a[3] = cleave_int(r->position);
	a[4] = cleave_textn(r->response, r->response_len);
}

int cl_ws_idem_get(cl_wstore *s, cleave_buf *keep, const char *key,
                   cl_idem_rec *out)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(key)};
	int rc = s->m->query(s,
	                     "SELECT request_hash, rc, position, response"
	                     " FROM cleave_idempotency WHERE key = ?",
	                     a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	if (rc != 1) {
		cleave_rows_close(r);
		return rc < 0 ? rc : CLEAVE_ENOTFOUND;
	}
	/* copied out so the cursor closes now (see cl_idem_rec lifetime) */
	size_t hlen, rlen;
	const char *h = cleave_rows_text(r, 0, &hlen);
	const char *resp = cleave_rows_text(r, 3, &rlen);
	cleave_buf_reset(keep);
	cleave_buf_add(keep, h ? h : "", h ? hlen : 0);
	cleave_buf_addc(keep, 0);
	cleave_buf_add(keep, resp ? resp : "", resp ? rlen : 0);
	out->rc = (int)cleave_rows_int(r, 1);
	out->position = cleave_rows_int(r, 2);
	cleave_rows_close(r);
	if (keep->oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	out->request_hash = keep->p;
	out->response = keep->p + hlen + 1;
	out->response_len = rlen;
	return 0;
}

/* ---- migrations ---------------------------------------------------------- */

/* Refuses a store that holds another domain's tables. */
static int check_domain(cl_wstore *s, const cl_ws_migrator *mg,
                        const char *domain)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(domain)};
	int rc = s->m->query(s,
	                     "SELECT domain FROM cleave_migrations"
	                     " WHERE domain <> ? LIMIT 1",
	                     a, 1, &r);
	if (rc)
		return mg->read_only ? 0 : rc; /* no table yet (read-only) */
	if (cleave_rows_next(r) != 1) {
		cleave_rows_close(r);
		return 0;
	}
	char other[128];
	snprintf(other, sizeof(other), "%s", cleave_rows_text(r, 0, NULL));
	cleave_rows_close(r);
	return cl_err(CLEAVE_EINVAL,
	              "%s holds the '%s' domain, not '%s' (use --domain %s or "
	              "another %s)",
	              mg->where, other, domain, other, mg->instead);
}

/* Migration #v, with its record, in one transaction. */
static int run_one(cl_wstore *s, const cl_ws_migrator *mg, const char *domain,
                   int v, const char *sql)
{
	cleave_value a[] = {cleave_text(domain), cleave_int(v)};
	int rc = mg->script(s, mg->begin_sql);
	if (rc)
		return rc;
	rc = mg->script(s, sql);
	if (!rc)
		rc = s->m->exec(s,
		                "INSERT INTO cleave_migrations(domain, version)"
		                " VALUES(?, ?)",
		                a, 2, NULL);
	if (!rc)
		rc = mg->commit(s);
	if (rc) {
		char msg[400];
		snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
		mg->abort(s);
		return cl_err(rc, "migration %s #%d failed: %s", domain, v,
		              msg);
	}
	return 0;
}

int cl_ws_migrate(cl_wstore *s, const cl_ws_migrator *mg, const char *domain,
                  const char *const *migrations)
{
	int rc = check_domain(s, mg, domain);
	if (rc || mg->read_only)
		return rc;
	for (int v = 1; migrations && migrations[v - 1]; v++) {
		int64_t n = 0;
		cleave_rows *r;
		cleave_value a[] = {cleave_text(domain), cleave_int(v)};
		rc = s->m->query(s,
		                 "SELECT count(*) FROM cleave_migrations"
		                 " WHERE domain = ? AND version = ?",
		                 a, 2, &r);
		if (rc || (rc = cl_ws_first_int(r, &n)))
			return rc;
		if (!n && (rc = run_one(s, mg, domain, v, migrations[v - 1])))
			return rc;
	}
	return 0;
}
