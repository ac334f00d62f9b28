/*
 * pg_sql.h — what the PostgreSQL write store stands on (private): the
 * rewrite of portable '?' placeholders to PostgreSQL's $n, the mapping
 * of SQLSTATEs to CLEAVE_E* codes and libpq's messages to one-line ones
 * (pg_sql.c); a connection with its prepared-statement cache and its
 * pipeline, and row cursors over results (pg_conn.c).
 *
 * A cl_pgc is one libpq connection in pipeline mode, used by one thread at
 * a time.  A statement is either run (sent, then a Sync, then every result
 * up to it read: one round trip) or deferred (sent, its result read by the
 * next run or sync).  A deferred statement's failure is reported by that
 * next run or sync, which fails with the deferred statement's error: the
 * caller decides what is safe to defer (statements whose only output is
 * "it failed", checked before anything depends on them).  Every SQL text
 * is prepared once per connection under a generated name.
 */
#ifndef CL_PG_SQL_H
#define CL_PG_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleave.h"

/* Rewrites the '?' placeholders of sql to $1..$n.  '?NNN' is parameter NNN
 * (as in SQLite), a bare '?' the one after the largest so far.  Nothing is
 * rewritten inside '…' and E'…' string literals, "…" identifiers,
 * $tag$…$tag$ strings, -- comments and (nested) block comments.  *out is
 * malloc'd (free it); *nparams gets the largest parameter number.
 * Errors: CLEAVE_EINVAL (a parameter number above 65535), CLEAVE_ENOMEM. */
int cl_pg_rewrite(const char *sql, char **out, int *nparams);

/* Maps a failed result (or, when res is NULL, the connection's state) to
 * a CLEAVE_E* code as cl_pgc_exec() lists, and records the server's words
 * with cl_err.  `what` names the action ("statement", "sync", ...). */
struct pg_conn;
struct pg_result;
int cl_pg_err(struct pg_conn *conn, const struct pg_result *res,
              const char *what);

/* Copies uri into out with any password replaced by "***" (for messages). */
void cl_pg_redact(const char *uri, char *out, size_t cap);
/* Copies a libpq message into out (cap bytes) as one line, without its
 * trailing newlines and spaces. */
void cl_pg_copy_msg(char *out, size_t cap, const char *msg);

typedef struct cl_pgc cl_pgc;

/* Connects to uri (a postgres:// URI or a libpq conninfo string) with
 * application_name `app` (the URI may override it) and UTF8 as the client
 * encoding, runs `setup` (one or more SET statements, may be NULL), and
 * enters pipeline mode.  Errors: CLEAVE_EIO (cannot connect; the message
 * says why, without the password), CLEAVE_ENOMEM. */
int cl_pgc_open(const char *uri, const char *app, const char *setup,
                cl_pgc **out);
/* Closes the connection; NULL-safe.  Open cursors must be closed first. */
void cl_pgc_close(cl_pgc *c);
/* True when the connection is known lost (this reads what the server
 * may have sent meanwhile, without blocking). */
bool cl_pgc_lost(cl_pgc *c);
/* Connects again with the same parameters and setup, forgetting prepared
 * statements and anything pending.  Errors as cl_pgc_open. */
int cl_pgc_reconnect(cl_pgc *c);
/* The server's transaction state as of the last result read. */
enum { CL_PGC_IDLE, CL_PGC_IN_TX, CL_PGC_FAILED_TX };
int cl_pgc_xact(cl_pgc *c);
/* Sequence number the next statement sent will get; cl_pgc_failed_seq()
 * is the number of the statement whose error the last run or sync
 * reported. */
uint64_t cl_pgc_seq(cl_pgc *c);
uint64_t cl_pgc_failed_seq(cl_pgc *c);

/* Sends a statement whose result only matters if it fails (see above).
 * Errors (nothing sent): CLEAVE_EINVAL (parameter count, a NUL byte in a
 * text value), CLEAVE_EIO (connection lost), and those of a pending
 * statement when too many are pending and they are checked first. */
int cl_pgc_defer(cl_pgc *c, const char *sql, const cleave_value *args,
                 int nargs);
/* Runs every pending statement to completion; returns the first error. */
int cl_pgc_sync(cl_pgc *c);
/* Runs a statement (after the pending ones) to completion.  changes (may
 * be NULL) gets the rows it changed; tag (may be NULL, cap bytes) its
 * command tag, e.g. "COMMIT".  Errors, with the server's words recorded
 * (cl_err): SQLSTATE 23505 → CLEAVE_EEXIST; other 23xxx, 22xxx and 42xxx
 * → EINVAL; 40001, 40P01, 55P03 (lock timeout), 57014 (statement timeout)
 * and 53xxx → EBUSY, but 53100 → ENOSPC and 53200 → ENOMEM; 08xxx, 57P0x,
 * 58xxx and a lost connection → EIO; XX001/XX002 → ECORRUPT; 0Axxx →
 * ENOTSUP; 25006 → EREADONLY; anything else → EINTERNAL.  A pending
 * statement's error comes first (this one then did not run). */
int cl_pgc_exec(cl_pgc *c, const char *sql, const cleave_value *args, int nargs,
                int64_t *changes, char *tag, size_t cap);
/* Runs a query and opens a cursor on its rows (all of them are in memory;
 * callers bound large reads with LIMIT).  At most one cursor per SQL text
 * is open at a time (CLEAVE_EINVAL otherwise).  Text pointers are valid
 * until the next cleave_rows_next() or cleave_rows_close(). */
int cl_pgc_query(cl_pgc *c, const char *sql, const cleave_value *args,
                 int nargs, cleave_rows **out);
/* Runs a script of statements without parameters (simple query protocol,
 * outside the pipeline).  Nothing may be pending. */
int cl_pgc_script(cl_pgc *c, const char *sql);
/* The SQLSTATE of the last error a statement of c got ("" if none). */
const char *cl_pgc_sqlstate(cl_pgc *c);

#endif
