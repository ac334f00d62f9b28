/*
 * pgtest.h — a private PostgreSQL cluster for a test program.
 *
 * pgt_start() runs initdb in a fresh directory under /tmp and starts the
 * server on a free port of 127.0.0.1 (fsync on, trust authentication,
 * superuser "postgres", UTF-8, C locale).  As root it runs the server as
 * the "postgres" system user (initdb refuses root).  A watchdog process
 * stops the server and removes the directory when the test program ends
 * by any means (pgt_stop(), exit, a crash, a kill), so a failing test
 * never leaves a server behind.
 */
#ifndef CL_PGTEST_H
#define CL_PGTEST_H

#include <stdbool.h>
#include <stdint.h>

/* 0 when the server runs; 1 when PostgreSQL's server programs are not
 * installed (the caller prints "SKIPPED: ..." and exits 0).  Any other
 * failure prints why (with the server's log) and exits the program 1.
 * The programs are looked for in $CLEAVE_PG_BIN, then
 * /usr/lib/postgresql/<version>/bin. */
int pgt_start(void);
/* Stops the server and removes its directory (also done at exit). */
void pgt_stop(void);
/* The port and the URI of database `db` on it ("postgres" exists). The
 * returned string is malloc'd. */
int pgt_port(void);
char *pgt_uri(const char *db);
/* Creates a database named `<tag>_<n>` (n counts up) and returns its URI
 * (malloc'd). */
char *pgt_newdb(const char *tag);
/* Runs sql on the database at uri; the first column of the first row as
 * an integer, or -1 when there is no row or it is NULL.  A failing
 * statement fails the test. */
int64_t pgt_int(const char *uri, const char *sql);
/* Runs sql on the database at uri; 0 or the failure as -1 (the message is
 * printed), for statements a test expects may fail. */
int pgt_exec(const char *uri, const char *sql);

#endif
