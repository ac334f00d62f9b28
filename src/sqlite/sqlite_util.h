/*
 * sqlite_util.h — what the SQLite write store and the SQLite read store
 * share: opening a connection, a prepared-statement cache, binding of
 * cleave_value arrays, row cursors over statements, and mapping of SQLite
 * errors to CLEAVE_E*.  Only those two backends include it (nor does
 * anything else include <sqlite3.h>).
 */
#ifndef CL_SQLITE_UTIL_H
#define CL_SQLITE_UTIL_H

#include <sqlite3.h>

#include "cleave.h"
#include "core/rows.h"

/* sqlite3_open_v2, after the process-wide settings (once, before SQLite
 * initialises itself): no memory statistics, which take a global mutex on
 * every allocation and which Cleave does not read. */
int cl_sqlite_open(const char *file, int flags, sqlite3 **db);

/* A statement cache for one connection, keyed by the SQL text. */
typedef struct cl_stmt_cache cl_stmt_cache;

cl_stmt_cache *cl_stmt_cache_new(sqlite3 *db);
/* Finalizes every statement.  NULL-safe. */
void cl_stmt_cache_free(cl_stmt_cache *c);
/* A reset statement for sql, prepared on first use.  The statement stays
 * owned by the cache.  Errors: CLEAVE_EINVAL (SQL error, message says). */
int cl_stmt_get(cl_stmt_cache *c, const char *sql, sqlite3_stmt **out);

/* Binds args to stmt (after clearing bindings). */
int cl_sqlite_bind(sqlite3 *db, sqlite3_stmt *st, const cleave_value *args,
		   int nargs);
/* Maps a SQLite result code to a CLEAVE_E* code, recording the message. */
int cl_sqlite_err(sqlite3 *db, int src, const char *what);
/* Runs a statement to completion (DDL, UPDATE, ...). */
int cl_sqlite_exec(cl_stmt_cache *c, const char *sql, const cleave_value *args,
		   int nargs, int64_t *changes);
/* Opens a cursor on a cached statement. At most one cursor per statement
 * text may be open at once (CLEAVE_EINVAL otherwise). */
int cl_sqlite_query(cl_stmt_cache *c, const char *sql,
		    const cleave_value *args, int nargs, cleave_rows **out);
/* Runs a script of several statements without parameters. */
int cl_sqlite_script(sqlite3 *db, const char *sql);

#endif
