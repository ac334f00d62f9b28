/*
 * wstore_int.h — what the write-store backends share beyond wstore.h
 * (private to src/write): the columns and the portable SQL of the log and
 * the idempotency records, and the logic that does not depend on the SQL
 * dialect (wstore_common.c), the domain's migrations among it.  Each backend
 * keeps its own schema, transactions and reads; the engine still reaches a
 * store only through its method table.
 *
 * The SQL texts here are written so that SQLite and PostgreSQL read them
 * alike ('?' placeholders: pg_sql.c rewrites them).
 */
#ifndef CL_WSTORE_INT_H
#define CL_WSTORE_INT_H

#include "core/util.h"
#include "write/wstore.h"

/* An event row: its columns in the order cl_ws_event_values() gives and
 * cl_ws_event_row() reads them. */
#define CL_WS_EVENT_COLS                                                       \
	"position, stream, version, type, schema_version, data, ts_us,"        \
	" trace_id, command_id, idem_key, causation_id"
#define CL_WS_EVENT_NCOLS   11
#define CL_WS_EVENT_PARAMS  "(?,?,?,?,?,?,?,?,?,?,?)"
#define CL_WS_SELECT_EVENTS "SELECT " CL_WS_EVENT_COLS " FROM events"

/* An idempotency record's columns, in cl_ws_idem_values() order. */
#define CL_WS_IDEM_COLS   "key, request_hash, rc, position, response"
#define CL_WS_IDEM_NCOLS  5
#define CL_WS_IDEM_PARAMS "(?,?,?,?,?)"

/* The log's head: the last position (0 for an empty log). */
#define CL_WS_HEAD_SQL "SELECT coalesce(max(position), 0) FROM events"

/* The CL_WS_EVENT_NCOLS values of ev, in CL_WS_EVENT_COLS order; they
 * borrow ev's strings. */
void cl_ws_event_values(const cl_stored_event *ev, cleave_value *a);
/* The current row of r (CL_WS_EVENT_COLS) as an event; its strings are
 * r's, valid until the next cleave_rows_next() or cleave_rows_close(). */
void cl_ws_event_row(cleave_rows *r, cl_stored_event *ev);
/* Hands each row of `rows` (CL_WS_EVENT_COLS) to fn, then closes rows.
 * *n (may be NULL) is increased by the rows handed over, *last (may be
 * NULL) gets the last one's position.  Returns 1 when fn said stop, <0
 * when fn or the cursor failed, else 0. */
int cl_ws_emit(cleave_rows *rows, cl_stored_fn fn, void *arg, int64_t *n,
               int64_t *last);
/* The first column of the first row of r as an integer into *out (0 when
 * there is no row), and closes r.  Returns 0 or the cursor's error. */
int cl_ws_first_int(cleave_rows *r, int64_t *out);

/* The CL_WS_IDEM_NCOLS values of the record stored under key, in
 * CL_WS_IDEM_COLS order; they borrow key's and r's strings. */
void cl_ws_idem_values(const char *key, const cl_idem_rec *r, cleave_value *a);
/* The method idem_get, through s's query method: the record is copied
 * into `keep` (the store's, reset here), which *out points into until the
 * next call.  CLEAVE_ENOTFOUND when there is none. */
int cl_ws_idem_get(cl_wstore *s, cleave_buf *keep, const char *key,
                   cl_idem_rec *out);

/* What cl_ws_migrate() needs of a backend beyond the method table. */
typedef struct cl_ws_migrator {
	bool read_only; /* the store was opened read-only: check only */
	/* The store, as a refusal names it ("this data directory"), and
	 * what to use instead of it ("--data" for "another --data"). */
	const char *where, *instead;
	/* Runs statements without parameters outside the writer's batches:
	 * a migration, and begin_sql to begin its transaction. */
	int (*script)(cl_wstore *s, const char *sql);
	const char *begin_sql;
	/* Commits a migration's transaction; rolls it back after a failure
	 * (once it began). */
	int (*commit)(cl_wstore *s);
	void (*abort)(cl_wstore *s);
} cl_ws_migrator;

/* The method migrate, after the backend created the log's tables: refuses
 * a store that holds another domain (CLEAVE_EINVAL), then runs each
 * migration not yet recorded in cleave_migrations in a transaction of its
 * own, with its record.  A read-only store is only checked, and one
 * without the migrations table yet passes.  A failed migration's error
 * says which one ("migration <domain> #<n> failed: ..."). */
int cl_ws_migrate(cl_wstore *s, const cl_ws_migrator *mg, const char *domain,
                  const char *const *migrations);

#endif
