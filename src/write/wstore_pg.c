/*
 * wstore_pg.c — the PostgreSQL write store: the domain's tables, the log
 * (events) and the idempotency records in one PostgreSQL database, for
 * `--write-store postgres://user@host:port/db`.
 *
 * It behaves as the SQLite store does, with these PostgreSQL specifics:
 *
 *  - One writer per database: the writer's session holds a session-level
 *    advisory lock (PG_LOCK_KEY) from open to close; a second engine gets
 *    CLEAVE_EBUSY naming the holder's backend pid.  Read-only opens (the
 *    CLI) neither take it nor create anything.
 *  - Durability "fsync" is synchronous_commit = on (set on the writer's
 *    session whatever the server's default): COMMIT returns after the
 *    commit record is flushed.  "os" is synchronous_commit = off: COMMIT
 *    returns before the flush (the WAL writer flushes within 3 ×
 *    wal_writer_delay); a crash of the PostgreSQL server or its machine
 *    may lose the last commits, never consistency.
 *  - Transactions are READ COMMITTED.  The advisory lock makes the writer
 *    the only one changing these tables, so each statement of a batch sees
 *    the last commit plus the batch's own writes; a stricter level would
 *    add nothing but serialization failures if someone wrote behind
 *    Cleave's back.  Writers wait at most 5 s for a row or table lock held
 *    elsewhere (lock_timeout; SQLite's busy timeout is the same), then
 *    the statement fails with CLEAVE_EBUSY.
 *  - A failed statement aborts PostgreSQL's (sub)transaction: until the
 *    command is rolled back to its savepoint every further statement of
 *    it fails (CLEAVE_EINTERNAL, saying so).  Handlers return the error
 *    they get, as all of Cleave's domains do; SQLite would let a handler
 *    go on after a failed statement.
 *  - Round trips are the writer's cost, so statements whose only output
 *    is "it failed" (BEGIN, SAVEPOINT, the event and idempotency INSERTs)
 *    are deferred: they go out at once and their results come back with
 *    the next statement that needs an answer.  A command's RELEASE always
 *    waits for them, so a failed append or idempotency record fails its
 *    own command, which rolls back alone.
 *  - A lost connection fails the batch in flight; the next batch
 *    reconnects (and takes the lock again).  If the connection was lost
 *    while a COMMIT was in flight and the log moved, the store refuses to
 *    go on (the engine's positions would be wrong): restart Cleave.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "write/pg_sql.h"
#include "write/wstore_int.h"

/* The advisory lock key of the writer: "Cleave" in ASCII. */
#define PG_LOCK_KEY 0x436c65617665LL
/* Tries for the lock (a previous owner's session may still be ending). */
#define PG_LOCK_TRIES 10
/* Rows a reader fetches per round trip. */
#define PG_READ_CHUNK 4096

typedef struct pg_store {
	cl_wstore base;
	cl_pgc *c;
	char *uri;
	bool read_only;
	int64_t head;   /* last committed position as this store knows it */
	int64_t tx_pos; /* highest position appended in the batch */
	int64_t sp_pos; /* ... when the current savepoint was taken */
	int sp;         /* SP_NONE, SP_WANTED (not sent yet), SP_SENT */
	bool broken;    /* the log moved behind our back: refuse */
	bool locked;    /* this session holds the writer's advisory lock */
	cleave_buf idem;    /* the last idempotency record read */
} pg_store;

typedef struct pg_reader {
	cl_wreader base;
	cl_pgc *c;
} pg_reader;

/* TEXT COLLATE "C" on the keys: byte order, as SQLite compares, and
 * cheaper than a locale's collation. */
static const char log_schema[] =
    "CREATE TABLE IF NOT EXISTS events("
    " position BIGINT PRIMARY KEY,"
    " stream TEXT COLLATE \"C\" NOT NULL,"
    " version BIGINT NOT NULL,"
    " type TEXT NOT NULL,"
    " schema_version INTEGER NOT NULL,"
    " data TEXT NOT NULL,"
    " ts_us BIGINT NOT NULL,"
    " trace_id TEXT, command_id TEXT, idem_key TEXT, causation_id TEXT);"
    "CREATE UNIQUE INDEX IF NOT EXISTS events_stream"
    " ON events(stream, version);"
    "CREATE TABLE IF NOT EXISTS cleave_idempotency("
    " key TEXT COLLATE \"C\" PRIMARY KEY, request_hash TEXT NOT NULL,"
    " rc INTEGER NOT NULL, position BIGINT NOT NULL,"
    " response TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS cleave_migrations("
    " domain TEXT COLLATE \"C\" NOT NULL, version INTEGER NOT NULL,"
    " PRIMARY KEY(domain, version));";

#define UNDEFINED_TABLE "42P01"

/* A command's savepoint is sent with its first statement: a command that
 * runs none (rejected on its input alone) costs no round trip. */
enum { SP_NONE, SP_WANTED, SP_SENT };

static int not_in_failed_tx(pg_store *s)
{
	if (cl_pgc_xact(s->c) != CL_PGC_FAILED_TX)
		return 0;
	return cl_err(CLEAVE_EINTERNAL,
	              "statement not run: an earlier statement of this "
	              "command failed, and PostgreSQL runs nothing more in "
	              "its transaction until the command rolls back (a "
	              "handler must return the error it gets)");
}

/* Before a statement of the writer: refuses in a failed transaction, and
 * sends the command's savepoint when it is still due. */
static int ready(pg_store *s)
{
	int rc = not_in_failed_tx(s);
	if (rc || s->sp != SP_WANTED)
		return rc;
	if ((rc = cl_pgc_defer(s->c, "SAVEPOINT c", NULL, 0)))
		return rc;
	s->sp = SP_SENT;
	return 0;
}

static int query_int(cl_pgc *c, const char *sql, const cleave_value *args,
                     int nargs, int64_t *out)
{
	cleave_rows *r;
	int rc = cl_pgc_query(c, sql, args, nargs, &r);
	return rc ? rc : cl_ws_first_int(r, out);
}

/* Takes the writer's advisory lock, or says who holds it. */
static int take_lock(pg_store *s)
{
	cleave_value key[] = {cleave_int(PG_LOCK_KEY)};
	int64_t got = 0;
	for (int i = 0; i < PG_LOCK_TRIES; i++) {
		int rc =
		    query_int(s->c, "SELECT pg_try_advisory_lock(?::bigint)",
		              key, 1, &got);
		if (rc)
			return rc;
		if (got) {
			s->locked = true;
			return 0;
		}
		cl_sleep_ms(100);
	}
	char holder[160] = "";
	cleave_rows *r;
	cleave_value a[] = {cleave_int(PG_LOCK_KEY >> 32),
	                    cleave_int(PG_LOCK_KEY & 0xffffffffLL)};
	if (!cl_pgc_query(s->c,
	                  "SELECT a.pid, coalesce(a.application_name, ''),"
	                  " coalesce(host(a.client_addr), 'local socket')"
	                  " FROM pg_locks l JOIN pg_stat_activity a"
	                  " ON a.pid = l.pid WHERE l.locktype = 'advisory'"
	                  " AND l.granted AND l.classid = ?::bigint::oid"
	                  " AND l.objid = ?::bigint::oid AND l.objsubid = 1",
	                  a, 2, &r)) {
		if (cleave_rows_next(r) == 1)
			snprintf(holder, sizeof(holder),
			         ": backend pid %lld, application '%s', "
			         "client %s",
			         (long long)cleave_rows_int(r, 0),
			         cleave_rows_text(r, 1, NULL),
			         cleave_rows_text(r, 2, NULL));
		cleave_rows_close(r);
	}
	char red[256];
	cl_pg_redact(s->uri, red, sizeof(red));
	return cl_err(CLEAVE_EBUSY,
	              "PostgreSQL database %s is in use by another cleave "
	              "engine (it holds advisory lock %lld%s); one engine "
	              "writes to a database at a time",
	              red, (long long)PG_LOCK_KEY, holder);
}

static void pg_close(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	if (!s)
		return;
	if (s->c && s->locked && !cl_pgc_lost(s->c)) {
		/* released now rather than when the server notices the
		 * session is gone, so a restarted engine finds it free */
		cleave_value key[] = {cleave_int(PG_LOCK_KEY)};
		int64_t ok;
		query_int(s->c, "SELECT pg_advisory_unlock(?::bigint)", key, 1,
		          &ok);
	}
	cl_pgc_close(s->c);
	cleave_buf_free(&s->idem);
	free(s->uri);
	free(s);
}

static int pg_open(const cl_wstore_opts *o, cl_wstore **out)
{
	*out = NULL;
	pg_store *s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	s->base.m = &cl_wstore_pg;
	s->read_only = o->read_only;
	cleave_buf_init(&s->idem);
	s->uri = cl_strdup(o->uri);
	int rc;
	if (!s->uri) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto fail;
	}
	if (o->read_only) {
		rc = cl_pgc_open(o->uri, "cleave-inspect",
		                 "SET default_transaction_read_only = on",
		                 &s->c);
		if (rc)
			goto fail;
	} else {
		char setup[256];
		snprintf(setup, sizeof(setup),
		         "SET synchronous_commit = %s;"
		         "SET lock_timeout = '5s'",
		         o->durability == CLEAVE_DURABILITY_OS ? "off" : "on");
		if ((rc = cl_pgc_open(o->uri, "cleave", setup, &s->c)))
			goto fail;
		if ((rc = take_lock(s)))
			goto fail;
		if ((rc = cl_pgc_script(s->c, log_schema)))
			goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	pg_close(&s->base);
	return rc;
}

static int pg_exec(cl_wstore *base, const char *sql, const cleave_value *args,
                   int nargs, int64_t *changes)
{
	pg_store *s = (pg_store *)base;
	int rc = ready(s);
	if (rc)
		return rc;
	return cl_pgc_exec(s->c, sql, args, nargs, changes, NULL, 0);
}

static int pg_query(cl_wstore *base, const char *sql, const cleave_value *args,
                    int nargs, cleave_rows **out)
{
	pg_store *s = (pg_store *)base;
	int rc = ready(s);
	if (rc)
		return rc;
	return cl_pgc_query(s->c, sql, args, nargs, out);
}

/* A migration's statements, outside the writer's batches. */
static int pg_script(cl_wstore *base, const char *sql)
{
	return cl_pgc_script(((pg_store *)base)->c, sql);
}

static int pg_migration_commit(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	char tag[32] = "";
	int rc = cl_pgc_exec(s->c, "COMMIT", NULL, 0, NULL, tag, sizeof(tag));
	if (!rc && strcmp(tag, "COMMIT"))
		rc = cl_err(CLEAVE_EINTERNAL, "COMMIT answered %s", tag);
	return rc;
}

static void pg_migration_abort(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	if (cl_pgc_xact(s->c) != CL_PGC_IDLE)
		cl_pgc_script(s->c, "ROLLBACK");
}

/* DDL is transactional in PostgreSQL: a migration and its record commit
 * together or not at all. */
static int pg_migrate(cl_wstore *base, const char *domain,
                      const char *const *migrations)
{
	pg_store *s = (pg_store *)base;
	char red[256], where[300];
	cl_pg_redact(s->uri, red, sizeof(red));
	snprintf(where, sizeof(where), "PostgreSQL database %s", red);
	const cl_ws_migrator mg = {
	    .read_only = s->read_only,
	    .where = where,
	    .instead = "database",
	    .script = pg_script,
	    .begin_sql = "BEGIN",
	    .commit = pg_migration_commit,
	    .abort = pg_migration_abort,
	};
	return cl_ws_migrate(base, &mg, domain, migrations);
}

static int read_head(cl_pgc *c, bool empty_ok, int64_t *out)
{
	int rc = query_int(c, CL_WS_HEAD_SQL, NULL, 0, out);
	if (rc && empty_ok && !strcmp(cl_pgc_sqlstate(c), UNDEFINED_TABLE)) {
		*out = 0; /* read-only on a database without a log yet */
		return 0;
	}
	return rc;
}

static int pg_head(cl_wstore *base, int64_t *out)
{
	pg_store *s = (pg_store *)base;
	/* a query node's head reader (the follower's) connects again after
	 * a lost connection (a PostgreSQL restart), as readers do; the
	 * writer's own connection is recover()'s */
	if (s->read_only && cl_pgc_lost(s->c)) {
		int rc = cl_pgc_reconnect(s->c);
		if (rc)
			return rc;
	}
	int rc = read_head(s->c, s->read_only, out);
	if (!rc)
		s->head = *out;
	return rc;
}

/* Reconnects the writer after a lost connection (between batches). */
static int recover(pg_store *s)
{
	s->locked = false; /* the session that held it is gone */
	int rc = cl_pgc_reconnect(s->c);
	if (rc)
		return rc;
	if ((rc = take_lock(s)))
		return rc;
	int64_t head;
	if ((rc = read_head(s->c, false, &head)))
		return rc;
	if (head != s->head) {
		s->broken = true;
		return cl_err(CLEAVE_EIO,
		              "the log in PostgreSQL is at position %lld, "
		              "this engine expected %lld: a commit whose "
		              "answer was lost did happen, or another engine "
		              "wrote meanwhile; restart cleave to go on from "
		              "the log as stored",
		              (long long)head, (long long)s->head);
	}
	return 0;
}

static int pg_begin(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	int rc;
	if (s->read_only)
		return cl_err(CLEAVE_EREADONLY, "write store opened read-only");
	if (s->broken)
		return cl_err(CLEAVE_EIO,
		              "the log in PostgreSQL moved behind this engine "
		              "(see the earlier error): restart cleave");
	if (cl_pgc_lost(s->c) && (rc = recover(s)))
		return rc;
	if (cl_pgc_xact(s->c) != CL_PGC_IDLE &&
	    (rc = cl_pgc_exec(s->c, "ROLLBACK", NULL, 0, NULL, NULL, 0)))
		return rc;
	s->tx_pos = s->sp_pos = s->head;
	s->sp = SP_NONE;
	return cl_pgc_defer(s->c, "BEGIN ISOLATION LEVEL READ COMMITTED", NULL,
	                    0);
}

/* A failed COMMIT (or one PostgreSQL turned into a rollback) means
 * nothing of the batch is durable. */
static int pg_commit(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	char tag[32] = "";
	if (cl_pgc_xact(s->c) == CL_PGC_FAILED_TX)
		return cl_err(CLEAVE_EINTERNAL,
		              "a statement outside the commands' savepoints "
		              "failed, so PostgreSQL aborted the batch");
	int rc = cl_pgc_exec(s->c, "COMMIT", NULL, 0, NULL, tag, sizeof(tag));
	if (rc)
		return rc;
	if (strcmp(tag, "COMMIT"))
		return cl_err(CLEAVE_EINTERNAL,
		              "PostgreSQL answered COMMIT with %s: the batch "
		              "was rolled back",
		              tag);
	s->head = s->tx_pos;
	return 0;
}

static void pg_rollback(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	if (cl_pgc_lost(s->c))
		return; /* the server rolls back a session that ends */
	cl_pgc_sync(s->c);
	if (cl_pgc_xact(s->c) != CL_PGC_IDLE)
		cl_pgc_exec(s->c, "ROLLBACK", NULL, 0, NULL, NULL, 0);
}

static int pg_savepoint(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	int rc = not_in_failed_tx(s);
	if (rc)
		return rc;
	s->sp_pos = s->tx_pos;
	s->sp = SP_WANTED;
	return 0;
}

/* Waits for everything the command deferred: it succeeded only if they
 * all did. */
static int pg_release(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	int rc = not_in_failed_tx(s);
	if (rc)
		return rc;
	if (s->sp != SP_SENT) {
		s->sp = SP_NONE; /* it ran no statement */
		return 0;
	}
	rc = cl_pgc_exec(s->c, "RELEASE SAVEPOINT c", NULL, 0, NULL, NULL, 0);
	if (!rc)
		s->sp = SP_NONE;
	return rc;
}

static int pg_rollback_to(cl_wstore *base)
{
	pg_store *s = (pg_store *)base;
	int rc = 0;
	s->tx_pos = s->sp_pos;
	if (s->sp != SP_SENT) {
		s->sp = SP_NONE;
		return 0;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t mark = cl_pgc_seq(s->c);
		rc = cl_pgc_defer(s->c, "ROLLBACK TO SAVEPOINT c", NULL, 0);
		if (!rc)
			rc = cl_pgc_defer(s->c, "RELEASE SAVEPOINT c", NULL, 0);
		if (!rc)
			rc = cl_pgc_sync(s->c);
		/* a deferred statement of the command failed before ours
		 * ran: they were skipped, send them again */
		if (!rc || cl_pgc_failed_seq(s->c) >= mark || cl_pgc_lost(s->c))
			break;
	}
	if (!rc)
		s->sp = SP_NONE;
	return rc;
}

static int pg_stream_version(cl_wstore *base, const char *stream, int64_t *out)
{
	pg_store *s = (pg_store *)base;
	int rc = ready(s);
	if (rc)
		return rc;
	cleave_value a[] = {cleave_text(stream)};
	return query_int(s->c,
	                 "SELECT version FROM events WHERE stream = ?"
	                 " ORDER BY version DESC LIMIT 1",
	                 a, 1, out);
}

static int pg_append(cl_wstore *base, const cl_stored_event *ev)
{
	pg_store *s = (pg_store *)base;
	int rc = ready(s);
	if (rc)
		return rc;
	cleave_value a[CL_WS_EVENT_NCOLS];
	cl_ws_event_values(ev, a);
	rc = cl_pgc_defer(s->c,
	                  "INSERT INTO events(" CL_WS_EVENT_COLS ")"
	                  " VALUES" CL_WS_EVENT_PARAMS,
	                  a, CL_WS_EVENT_NCOLS);
	if (!rc && ev->position > s->tx_pos)
		s->tx_pos = ev->position;
	return rc;
}

static int pg_idem_get(cl_wstore *base, const char *key, cl_idem_rec *out)
{
	return cl_ws_idem_get(base, &((pg_store *)base)->idem, key, out);
}

static int pg_idem_put(cl_wstore *base, const char *key, const cl_idem_rec *rec)
{
	pg_store *s = (pg_store *)base;
	int rc = ready(s);
	if (rc)
		return rc;
	cleave_value a[CL_WS_IDEM_NCOLS];
	cl_ws_idem_values(key, rec, a);
	return cl_pgc_defer(s->c,
	                    "INSERT INTO cleave_idempotency"
	                    "(" CL_WS_IDEM_COLS ") VALUES" CL_WS_IDEM_PARAMS,
	                    a, CL_WS_IDEM_NCOLS);
}

/* PostgreSQL checkpoints and vacuums by itself. */
static int pg_maintain(cl_wstore *base)
{
	return 0;
}

/* ---- readers ------------------------------------------------------------ */

static int pg_reader_open(cl_wstore *base, cl_wreader **out)
{
	pg_store *s = (pg_store *)base;
	*out = NULL;
	pg_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	r->base.m = &cl_wstore_pg;
	r->base.store = base;
	int rc = cl_pgc_open(s->uri, "cleave-reader",
	                     "SET default_transaction_read_only = on", &r->c);
	if (rc) {
		free(r);
		return rc;
	}
	*out = &r->base;
	return 0;
}

static void pg_reader_close(cl_wreader *base)
{
	pg_reader *r = (pg_reader *)base;
	if (!r)
		return;
	cl_pgc_close(r->c);
	free(r);
}

/* A reader whose connection was lost connects again before reading. */
static int reader_ready(pg_reader *r)
{
	return cl_pgc_lost(r->c) ? cl_pgc_reconnect(r->c) : 0;
}

static int pg_reader_head(cl_wreader *base, int64_t *out)
{
	pg_reader *r = (pg_reader *)base;
	int rc = reader_ready(r);
	return rc ? rc : read_head(r->c, true, out);
}

/* Runs sql (its last two parameters: after, chunk size) chunk by chunk, so
 * a long read never holds more than PG_READ_CHUNK rows in memory. */
static int read_chunks(pg_reader *r, const char *sql, cleave_value *a,
                       int nargs, int64_t after, size_t limit, cl_stored_fn fn,
                       void *arg)
{
	int rc = reader_ready(r);
	if (rc)
		return rc;
	size_t left = limit;
	for (;;) {
		int64_t want = PG_READ_CHUNK, n = 0;
		if (limit && left < (size_t)want)
			want = (int64_t)left;
		a[nargs - 2] = cleave_int(after);
		a[nargs - 1] = cleave_int(want);
		cleave_rows *rows;
		rc = cl_pgc_query(r->c, sql, a, nargs, &rows);
		if (rc)
			return strcmp(cl_pgc_sqlstate(r->c), UNDEFINED_TABLE)
			           ? rc
			           : 0; /* no log yet: nothing to read */
		rc = cl_ws_emit(rows, fn, arg, &n, &after);
		if (rc)
			return rc < 0 ? rc : 0;
		if (n < want)
			return 0;
		if (limit && (left -= (size_t)n) == 0)
			return 0;
	}
}

static int pg_read(cl_wreader *base, int64_t after, const char *stream,
                   size_t limit, cl_stored_fn fn, void *arg)
{
	pg_reader *r = (pg_reader *)base;
	if (stream) {
		cleave_value a[] = {cleave_text(stream), cleave_null(),
		                    cleave_null()};
		return read_chunks(r,
		                   CL_WS_SELECT_EVENTS
		                   " WHERE stream = ? AND position > ?"
		                   " ORDER BY position LIMIT ?",
		                   a, 3, after, limit, fn, arg);
	}
	cleave_value a[] = {cleave_null(), cleave_null()};
	return read_chunks(r,
	                   CL_WS_SELECT_EVENTS
	                   " WHERE position > ? ORDER BY position LIMIT ?",
	                   a, 2, after, limit, fn, arg);
}

static int pg_trace(cl_wreader *base, const char *id, cl_stored_fn fn,
                    void *arg)
{
	pg_reader *r = (pg_reader *)base;
	cleave_value a[] = {cleave_text(id), cleave_text(id), cleave_null(),
	                    cleave_null()};
	return read_chunks(r,
	                   CL_WS_SELECT_EVENTS
	                   " WHERE (trace_id = ? OR command_id = ?)"
	                   " AND position > ? ORDER BY position LIMIT ?",
	                   a, 4, 0, 0, fn, arg);
}

const cl_wstore_methods cl_wstore_pg = {
    .version = CL_WSTORE_V1,
    .kind = "postgres",
    .open = pg_open,
    .close = pg_close,
    .migrate = pg_migrate,
    .head = pg_head,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_to = pg_rollback_to,
    .exec = pg_exec,
    .query = pg_query,
    .stream_version = pg_stream_version,
    .append = pg_append,
    .idem_get = pg_idem_get,
    .idem_put = pg_idem_put,
    .maintain = pg_maintain,
    .reader_open = pg_reader_open,
    .reader_close = pg_reader_close,
    .reader_head = pg_reader_head,
    .read = pg_read,
    .trace = pg_trace,
};
