/*
 * redistest.h — a private Redis server for a test program.
 *
 * rdt_start() starts redis-server on a free port of 127.0.0.1 in a fresh
 * directory (no RDB snapshots; append-only file with fsync always, so a
 * restart keeps the data), as a child that dies with the test program
 * (PR_SET_PDEATHSIG), so a failing test never leaves a server behind.
 */
#ifndef CL_REDISTEST_H
#define CL_REDISTEST_H

#include <hiredis/hiredis.h>

/* 0 when the server runs; 1 when redis-server is not installed (the
 * caller prints "SKIPPED: ..." and exits 0).  Other failures exit 1. */
int rdt_start(void);
/* Stops the server (SIGTERM, waits); rdt_restart() starts it again on
 * the same port and directory. */
void rdt_stop(void);
void rdt_restart(void);
int rdt_port(void);
/* "redis://127.0.0.1:PORT/0/<prefix>" (malloc'd). */
char *rdt_path(const char *prefix);
/* Runs a command (printf-style, as redisCommand) on a fresh connection;
 * the reply (free it with freeReplyObject), or fails the test. */
redisReply *rdt_cmd(const char *fmt, ...);
/* The integer reply of a command. */
long long rdt_int(const char *fmt, ...);

#endif
