/*
 * pg_conn.c — a PostgreSQL connection for the write store: prepared
 * statements, the pipeline, cursors over results (pg_sql.h).
 *
 * The connection stays in libpq's pipeline mode.  Every statement goes out
 * as Parse (first use of its text on this connection) + Bind + Execute;
 * a run adds a Sync and reads every result up to it, so the statements
 * deferred before it share its round trip.  After an error the server
 * skips the rest up to the Sync (libpq reports them as "aborted"), so the
 * Sync that ends every run also ends the error; inside an explicit
 * transaction block the server then stays in the aborted state until the
 * caller rolls back (cl_pgc_xact() says CL_PGC_FAILED_TX).
 *
 * Deadlock bound: libpq is in blocking mode, and a pipeline in blocking
 * mode can deadlock when the client writes while the server is blocked
 * writing results nobody reads.  Deferred statements produce a few dozen
 * bytes each and at most PGC_PENDING_MAX of them are outstanding, far
 * below any socket buffer; a run's own result is read as soon as it is
 * sent.
 */
#include "write/pg_sql.h"

#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rows.h"
#include "core/util.h"

#define PGC_PENDING_MAX 64   /* deferred statements before a forced sync */
#define PGC_STMT_MAX    1024 /* SQL texts prepared per connection */

/* ---- the connection and its statements --------------------------------- */

typedef struct stmt {
	cleave_rows rows; /* must be first: cleave_rows* ↔ stmt* */
	cl_pgc *c;
	uint64_t hash;
	char *sql;   /* the caller's text, the cache key */
	char *pgsql; /* rewritten */
	int nparams;
	char name[24];
	bool cached;   /* in the table; otherwise freed after use */
	bool prepared; /* Parse sent and not known to have failed */
	bool open;     /* a cursor is out */
	PGresult *res;
	int row, nrows;
} stmt;

enum { P_PREPARE, P_QUERY, P_SYNC };

typedef struct pend {
	int kind;
	bool want;
	uint64_t seq;
	stmt *st;
} pend;

struct cl_pgc {
	PGconn *conn;
	char *uri, *app, *setup;
	stmt **tab;
	size_t cap, n;
	unsigned long next_name;
	pend pending[PGC_PENDING_MAX + 4];
	int npending;
	uint64_t seq, failed_seq;
	char sqlstate[6];
	PGTransactionStatusType xact;
	cleave_buf pbuf;  /* parameter texts, NUL-separated */
	size_t *poff; /* offsets into pbuf, SIZE_MAX for NULL */
	const char **pvals;
	int pcap;
};

static const cl_rows_methods rows_methods;

static void quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg; /* notices (e.g. "already exists, skipping") are noise */
}

static int connect_db(cl_pgc *c)
{
	/* Defaults first, the caller's URI next (it may override them),
	 * then what the code relies on (UTF-8 text). */
	const char *kw[] = {
	    "application_name", "connect_timeout",     "keepalives",
	    "keepalives_idle",  "keepalives_interval", "keepalives_count",
	    "dbname",           "client_encoding",     NULL};
	const char *val[] = {c->app, "10",   "1",    "30", "10",
	                     "3",    c->uri, "UTF8", NULL};
	PGconn *conn = PQconnectdbParams(kw, val, 1);
	if (!conn)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	if (PQstatus(conn) != CONNECTION_OK) {
		char red[256], msg[300];
		cl_pg_redact(c->uri, red, sizeof(red));
		cl_pg_copy_msg(msg, sizeof(msg), PQerrorMessage(conn));
		PQfinish(conn);
		return cl_err(CLEAVE_EIO,
		              "cannot connect to PostgreSQL at %s: %s", red,
		              msg);
	}
	PQsetNoticeProcessor(conn, quiet_notice, NULL);
	c->conn = conn;
	c->xact = PQTRANS_IDLE;
	int rc = cl_pgc_script(c, "SET standard_conforming_strings = on;"
	                          "SET client_min_messages = warning");
	if (!rc && c->setup)
		rc = cl_pgc_script(c, c->setup);
	if (!rc && !PQenterPipelineMode(conn))
		rc = cl_pg_err(conn, NULL, "pipeline mode");
	if (rc) {
		/* never a connection without its settings (durability) */
		PQfinish(conn);
		c->conn = NULL;
	}
	return rc;
}

static void stmt_free(stmt *st)
{
	if (!st)
		return;
	PQclear(st->res);
	free(st->sql);
	free(st->pgsql);
	free(st);
}

/* Forgets what was pending (the connection is gone or replaced). */
static void drop_pending(cl_pgc *c)
{
	for (int i = 0; i < c->npending; i++) {
		pend *p = &c->pending[i];
		if (p->kind == P_QUERY && !p->want && !p->st->cached)
			stmt_free(p->st);
	}
	c->npending = 0;
}

int cl_pgc_open(const char *uri, const char *app, const char *setup,
                cl_pgc **out)
{
	*out = NULL;
	cl_pgc *c = calloc(1, sizeof(*c));
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	cleave_buf_init(&c->pbuf);
	c->uri = cl_strdup(uri);
	c->app = cl_strdup(app);
	c->setup = cl_strdup(setup);
	c->cap = 64;
	c->tab = calloc(c->cap, sizeof(*c->tab));
	int rc;
	if (!c->uri || !c->app || (setup && !c->setup) || !c->tab)
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
	else
		rc = connect_db(c);
	if (rc) {
		cl_pgc_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void cl_pgc_close(cl_pgc *c)
{
	if (!c)
		return;
	drop_pending(c);
	for (size_t i = 0; i < c->cap; i++)
		stmt_free(c->tab[i]);
	free(c->tab);
	if (c->conn)
		PQfinish(c->conn);
	cleave_buf_free(&c->pbuf);
	free(c->poff);
	free(c->pvals);
	free(c->uri);
	free(c->app);
	free(c->setup);
	free(c);
}

bool cl_pgc_lost(cl_pgc *c)
{
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD)
		return true;
	if (c->npending)
		return false;
	/* A server that ended the session sent an error, then EOF: read
	 * both when they are there (a read stops after the first). */
	struct pollfd pfd = {PQsocket(c->conn), POLLIN, 0};
	for (int i = 0; i < 4 && poll(&pfd, 1, 0) == 1; i++)
		if (!PQconsumeInput(c->conn) ||
		    PQstatus(c->conn) == CONNECTION_BAD)
			return true;
	return PQstatus(c->conn) == CONNECTION_BAD;
}

int cl_pgc_reconnect(cl_pgc *c)
{
	drop_pending(c);
	if (c->conn)
		PQfinish(c->conn);
	c->conn = NULL;
	for (size_t i = 0; i < c->cap; i++)
		if (c->tab[i])
			c->tab[i]->prepared = false;
	return connect_db(c);
}

int cl_pgc_xact(cl_pgc *c)
{
	switch (c->xact) {
	case PQTRANS_INTRANS:
	case PQTRANS_ACTIVE:
		return CL_PGC_IN_TX;
	case PQTRANS_INERROR:
		return CL_PGC_FAILED_TX;
	default:
		return CL_PGC_IDLE;
	}
}

uint64_t cl_pgc_seq(cl_pgc *c)
{
	return c->seq;
}

uint64_t cl_pgc_failed_seq(cl_pgc *c)
{
	return c->failed_seq;
}

static int lost_err(cl_pgc *c)
{
	char msg[300];
	cl_pg_copy_msg(msg, sizeof(msg),
	               c->conn ? PQerrorMessage(c->conn) : "");
	return cl_err(CLEAVE_EIO, "the connection to PostgreSQL is lost%s%s",
	              *msg ? ": " : "", msg);
}

static int grow(cl_pgc *c)
{
	size_t cap = c->cap * 2;
	stmt **tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	for (size_t i = 0; i < c->cap; i++) {
		stmt *st = c->tab[i];
		if (!st)
			continue;
		size_t j = st->hash & (cap - 1);
		while (tab[j])
			j = (j + 1) & (cap - 1);
		tab[j] = st;
	}
	free(c->tab);
	c->tab = tab;
	c->cap = cap;
	return 0;
}

/* The statement for sql: cached (prepared under its name once), or, when
 * the cache is full, a one-off that runs unnamed and is freed after use. */
static int lookup(cl_pgc *c, const char *sql, stmt **out)
{
	size_t len = strlen(sql);
	uint64_t h = cl_hash(sql, len);
	size_t j = h & (c->cap - 1);
	for (stmt *st; (st = c->tab[j]); j = (j + 1) & (c->cap - 1)) {
		if (st->hash == h && !strcmp(st->sql, sql)) {
			*out = st;
			return 0;
		}
	}
	bool cache = c->n < PGC_STMT_MAX;
	if (cache && (c->n + 1) * 2 > c->cap) {
		int rc = grow(c);
		if (rc)
			return rc;
		return lookup(c, sql, out);
	}
	stmt *st = calloc(1, sizeof(*st));
	if (!st)
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	int rc = cl_pg_rewrite(sql, &st->pgsql, &st->nparams);
	if (rc) {
		free(st);
		return rc;
	}
	st->sql = cl_strndup(sql, len);
	if (!st->sql) {
		stmt_free(st);
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	}
	st->rows.m = &rows_methods;
	st->c = c;
	st->hash = h;
	if (cache) {
		st->cached = true;
		snprintf(st->name, sizeof(st->name), "cl%lu", ++c->next_name);
		c->tab[j] = st;
		c->n++;
	}
	*out = st;
	return 0;
}

/* Turns args into the NUL-terminated texts libpq sends (c->pvals). */
static int bind_params(cl_pgc *c, const stmt *st, const cleave_value *args,
                       int nargs)
{
	if (nargs != st->nparams)
		return cl_err(CLEAVE_EINVAL,
		              "SQL wants %d parameters, %d given: %s",
		              st->nparams, nargs, st->sql);
	if (nargs > c->pcap) {
		size_t *off = realloc(c->poff, (size_t)nargs * sizeof(*off));
		if (off)
			c->poff = off;
		const char **v = realloc(c->pvals, (size_t)nargs * sizeof(*v));
		if (v)
			c->pvals = v;
		if (!off || !v)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		c->pcap = nargs;
	}
	cleave_buf *b = &c->pbuf;
	cleave_buf_reset(b);
	for (int i = 0; i < nargs; i++) {
		const cleave_value *v = &args[i];
		c->poff[i] = b->len;
		switch (v->type) {
		case CLEAVE_INT:
			cleave_buf_add_i64(b, v->i);
			break;
		case CLEAVE_REAL:
			if (isnan(v->d))
				cleave_buf_adds(b, "NaN");
			else if (isinf(v->d))
				cleave_buf_adds(b, v->d > 0 ? "Infinity"
				                        : "-Infinity");
			else
				cleave_buf_addf(b, "%.17g", v->d);
			break;
		case CLEAVE_TEXT:
			if (v->s && memchr(v->s, 0, v->n))
				return cl_err(CLEAVE_EINVAL,
				              "SQL parameter %d holds a NUL "
				              "byte, which PostgreSQL text "
				              "cannot store",
				              i + 1);
			cleave_buf_add(b, v->s ? v->s : "", v->s ? v->n : 0);
			break;
		default:
			c->poff[i] = SIZE_MAX;
			continue;
		}
		cleave_buf_addc(b, 0);
	}
	if (b->oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	for (int i = 0; i < nargs; i++)
		c->pvals[i] = c->poff[i] == SIZE_MAX ? NULL : b->p + c->poff[i];
	return 0;
}

/* Reads the results of everything pending, through the Sync that ends
 * it.  *want (when not NULL) gets the result of the statement sent with
 * want, if no error came first.  Returns the first error. */
static int drain(cl_pgc *c, PGresult **want)
{
	int rc = 0;
	bool lost = false;
	if (want)
		*want = NULL;
	for (int i = 0; i < c->npending; i++) {
		pend *p = &c->pending[i];
		PGresult *res = lost ? NULL : PQgetResult(c->conn);
		if (!res) {
			if (!rc && !lost) {
				rc = PQstatus(c->conn) == CONNECTION_BAD
				         ? lost_err(c)
				         : cl_err(CLEAVE_EINTERNAL,
				                  "postgres: a result is "
				                  "missing from the "
				                  "pipeline");
				c->failed_seq = p->seq;
			}
			lost = true;
		} else if (p->kind == P_SYNC) {
			if (PQresultStatus(res) != PGRES_PIPELINE_SYNC && !rc) {
				rc = cl_pg_err(c->conn, res, "sync");
				c->failed_seq = p->seq;
			}
			PQclear(res);
			continue; /* no NULL follows a Sync's result */
		} else {
			ExecStatusType s = PQresultStatus(res);
			if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
				if (p->want && !rc && want) {
					*want = res;
					res = NULL;
				}
			} else {
				if (p->kind == P_PREPARE)
					p->st->prepared = false;
				if (!rc) {
					const char *st = PQresultErrorField(
					    res, PG_DIAG_SQLSTATE);
					snprintf(c->sqlstate,
					         sizeof(c->sqlstate), "%s",
					         st ? st : "");
					rc = s == PGRES_PIPELINE_ABORTED
					         ? cl_err(CLEAVE_EINTERNAL,
					                  "postgres: "
					                  "statement "
					                  "skipped")
					         : cl_pg_err(c->conn, res,
					                     "error");
					c->failed_seq = p->seq;
				}
			}
			PQclear(res);
			/* the NULL that ends this statement's results */
			for (int k = 0; k < 4 && (res = PQgetResult(c->conn));
			     k++)
				PQclear(res);
		}
		if (PQstatus(c->conn) == CONNECTION_BAD && !lost) {
			lost = true;
			if (!rc) {
				rc = lost_err(c);
				c->failed_seq = p->seq;
			}
		}
		if (p->kind == P_QUERY && !p->want && !p->st->cached)
			stmt_free(p->st);
	}
	c->npending = 0;
	c->xact = PQtransactionStatus(c->conn);
	if (rc && want && *want) {
		PQclear(*want);
		*want = NULL;
	}
	return rc;
}

static int push(cl_pgc *c, int kind, bool want, stmt *st)
{
	pend *p = &c->pending[c->npending++];
	p->kind = kind;
	p->want = want;
	p->st = st;
	p->seq = c->seq;
	if (kind == P_QUERY)
		c->seq++;
	return 0;
}

/* Sends one statement (Parse when new, Bind, Execute), no Sync. */
static int send_stmt(cl_pgc *c, const char *sql, const cleave_value *args,
                     int nargs, bool want, bool cursor, stmt **out)
{
	stmt *st = NULL;
	int rc;
	c->sqlstate[0] = 0;
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD)
		return lost_err(c);
	if (c->npending >= PGC_PENDING_MAX && (rc = cl_pgc_sync(c)))
		return rc;
	if ((rc = lookup(c, sql, &st)))
		return rc;
	if (cursor && st->open)
		return cl_err(CLEAVE_EINVAL,
		              "statement already has an open cursor: %s", sql);
	if ((rc = bind_params(c, st, args, nargs)))
		goto fail;
	if (st->cached && !st->prepared) {
		if (!PQsendPrepare(c->conn, st->name, st->pgsql, st->nparams,
		                   NULL)) {
			rc = cl_pg_err(c->conn, NULL, "send");
			goto fail;
		}
		push(c, P_PREPARE, false, st);
		st->prepared = true;
	}
	int ok = st->cached ? PQsendQueryPrepared(c->conn, st->name, nargs,
	                                          c->pvals, NULL, NULL, 0)
	                    : PQsendQueryParams(c->conn, st->pgsql, nargs, NULL,
	                                        c->pvals, NULL, NULL, 0);
	if (!ok) {
		rc = cl_pg_err(c->conn, NULL, "send");
		goto fail;
	}
	push(c, P_QUERY, want, st);
	if (out)
		*out = st;
	return 0;
fail:
	if (!st->cached)
		stmt_free(st);
	return rc;
}

int cl_pgc_defer(cl_pgc *c, const char *sql, const cleave_value *args,
                 int nargs)
{
	return send_stmt(c, sql, args, nargs, false, false, NULL);
}

static int sync_and_drain(cl_pgc *c, PGresult **want)
{
	if (!PQpipelineSync(c->conn)) {
		/* nothing more goes out; what is pending cannot be read */
		int rc = cl_pg_err(c->conn, NULL, "sync");
		c->failed_seq = c->npending ? c->pending[0].seq : c->seq;
		drop_pending(c);
		return rc;
	}
	push(c, P_SYNC, false, NULL);
	return drain(c, want);
}

int cl_pgc_sync(cl_pgc *c)
{
	c->sqlstate[0] = 0;
	if (c->npending == 0)
		return 0;
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD) {
		drop_pending(c);
		return lost_err(c);
	}
	return sync_and_drain(c, NULL);
}

/* Sends sql and reads everything through its result (*res, the caller
 * clears it).  *out is its statement (to be freed when not cached). */
static int run(cl_pgc *c, const char *sql, const cleave_value *args, int nargs,
               bool cursor, stmt **out, PGresult **res)
{
	stmt *st = NULL;
	int rc = send_stmt(c, sql, args, nargs, true, cursor, &st);
	if (rc)
		return rc;
	rc = sync_and_drain(c, res);
	if (rc && !st->cached)
		stmt_free(st);
	*out = rc ? NULL : st;
	return rc;
}

int cl_pgc_exec(cl_pgc *c, const char *sql, const cleave_value *args, int nargs,
                int64_t *changes, char *tag, size_t cap)
{
	stmt *st;
	PGresult *res;
	int rc = run(c, sql, args, nargs, false, &st, &res);
	if (rc)
		return rc;
	if (changes)
		*changes = strtoll(PQcmdTuples(res), NULL, 10);
	if (tag && cap)
		snprintf(tag, cap, "%s", PQcmdStatus(res));
	PQclear(res);
	if (!st->cached)
		stmt_free(st);
	return 0;
}

int cl_pgc_query(cl_pgc *c, const char *sql, const cleave_value *args,
                 int nargs, cleave_rows **out)
{
	stmt *st;
	PGresult *res;
	int rc = run(c, sql, args, nargs, true, &st, &res);
	if (rc)
		return rc;
	PQclear(st->res);
	st->res = res;
	st->row = -1;
	st->nrows = PQntuples(res);
	st->open = true;
	*out = &st->rows;
	return 0;
}

int cl_pgc_script(cl_pgc *c, const char *sql)
{
	int rc = cl_pgc_sync(c);
	if (rc)
		return rc;
	if (!c->conn || PQstatus(c->conn) == CONNECTION_BAD)
		return lost_err(c);
	c->sqlstate[0] = 0;
	bool piped = PQpipelineStatus(c->conn) != PQ_PIPELINE_OFF;
	if (piped && !PQexitPipelineMode(c->conn))
		return cl_pg_err(c->conn, NULL, "pipeline mode");
	PGresult *res = PQexec(c->conn, sql);
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK &&
	    s != PGRES_EMPTY_QUERY) {
		const char *st =
		    res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", st ? st : "");
		rc = cl_pg_err(c->conn, res, "script");
	}
	PQclear(res);
	c->xact = PQtransactionStatus(c->conn);
	if (piped && PQstatus(c->conn) != CONNECTION_BAD &&
	    !PQenterPipelineMode(c->conn) && !rc)
		rc = cl_pg_err(c->conn, NULL, "pipeline mode");
	return rc;
}

const char *cl_pgc_sqlstate(cl_pgc *c)
{
	return c->sqlstate;
}

/* ---- cursors ------------------------------------------------------------ */

static bool on_row(const stmt *st)
{
	return st->res && st->row >= 0 && st->row < st->nrows;
}

static int rows_next(cleave_rows *r)
{
	stmt *st = (stmt *)r;
	if (st->row < st->nrows)
		st->row++;
	return st->row < st->nrows ? 1 : 0;
}

static int rows_columns(cleave_rows *r)
{
	stmt *st = (stmt *)r;
	return st->res ? PQnfields(st->res) : 0;
}

static bool rows_is_null(cleave_rows *r, int col)
{
	stmt *st = (stmt *)r;
	return !on_row(st) || col < 0 || col >= PQnfields(st->res) ||
	       PQgetisnull(st->res, st->row, col);
}

/* A cell as a number's text: NULL for NULL; booleans come as t/f and are
 * read as 1/0, as SQLite says. */
static const char *number_text(cleave_rows *r, int col)
{
	stmt *st = (stmt *)r;
	if (rows_is_null(r, col))
		return NULL;
	const char *s = PQgetvalue(st->res, st->row, col);
	if (s[0] == 't' && !s[1])
		return "1";
	if (s[0] == 'f' && !s[1])
		return "0";
	return s;
}

/* Integers come as decimal text; numeric and real values are truncated
 * toward zero, as SQLite does. */
static int64_t rows_int(cleave_rows *r, int col)
{
	const char *s = number_text(r, col);
	if (!s)
		return 0;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*end) { /* not an integer: numeric, real, or text */
		double d = strtod(s, NULL);
		if (isnan(d))
			return 0;
		if (d >= 9223372036854775807.0)
			return INT64_MAX;
		if (d <= -9223372036854775808.0)
			return INT64_MIN;
		return (int64_t)d;
	}
	return v;
}

static double rows_real(cleave_rows *r, int col)
{
	const char *s = number_text(r, col);
	return s ? strtod(s, NULL) : 0;
}

static const char *rows_text(cleave_rows *r, int col, size_t *len)
{
	stmt *st = (stmt *)r;
	if (rows_is_null(r, col)) {
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = (size_t)PQgetlength(st->res, st->row, col);
	return PQgetvalue(st->res, st->row, col);
}

static void rows_close(cleave_rows *r)
{
	stmt *st = (stmt *)r;
	PQclear(st->res);
	st->res = NULL;
	st->open = false;
	st->row = st->nrows = 0;
	if (!st->cached)
		stmt_free(st);
}

static const cl_rows_methods rows_methods = {
    rows_next, rows_columns, rows_is_null, rows_int,
    rows_real, rows_text,    rows_close,
};
