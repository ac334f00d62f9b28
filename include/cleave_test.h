/*
 * cleave_test.h — a test kit for domains: given, when, then.
 *
 * A domain's rules are tested the way they are stated: given these
 * commands (the write model is tables, so commands set it up) or these
 * events (for projections and queries), when this command, then these
 * events or this error; given these events, this query answers that.  The
 * kit runs the real engine, in-process, on a temporary data directory, so
 * what it checks is what a served domain does.  The anchors are Axon's
 * aggregate fixtures and Emmett's DeciderSpecification.
 *
 *     cleave_tk *t;
 *     cleave_tk_open(&my_domain, &t);
 *     cleave_tk_given(t, "RegisterUser", "{\"userId\":\"u1\",\"name\":\"A\"}");
 *     cleave_tk_when(t, "Follow", "{\"followerId\":\"u1\",\"followeeId\":\"u1\"}");
 *     if (cleave_tk_then_error(t, "cannot_follow_self"))
 *         fail(cleave_tk_why(t));
 *     cleave_tk_close(t);
 *
 * Every check returns 0 when things are as expected and 1 when they are not
 * (cleave_tk_why says what was expected and what came); a negative code is
 * the engine's own error.  JSON expectations are matched as subsets: every
 * member an expected object names must be there and match (recursively);
 * members it does not name are ignored; arrays match element by element
 * and must have the same length; "position" in a query's answer is never
 * compared.  Link with libcleave (pkg-config cleave).
 */
#ifndef CLEAVE_TEST_H
#define CLEAVE_TEST_H

#include "cleave.h"

#pragma GCC visibility push(default)

typedef struct cleave_tk cleave_tk;

/* A fresh engine for domain d on a temporary data directory (under
 * $TMPDIR or /tmp), with durability "os" (tests need no fsync).  Close
 * removes the directory. */
int cleave_tk_open(const cleave_domain *d, cleave_tk **out);
void cleave_tk_close(cleave_tk *t);
/* Why the last check returned 1 (or the engine's message after a negative
 * code).  Valid until the next call on t. */
const char *cleave_tk_why(const cleave_tk *t);
/* The engine, for anything the kit does not cover. */
cleave_engine *cleave_tk_engine(cleave_tk *t);

/* Given a command that must succeed (1 when it does not). */
int cleave_tk_given(cleave_tk *t, const char *command, const char *body);
/* Given an event, appended to the log as it is: projections and queries
 * see it, the write model does not.  data is a JSON object. */
int cleave_tk_given_event(cleave_tk *t, const char *stream, const char *type,
			  const char *data);

/* When: runs a command (its outcome is kept for the then_ calls). */
int cleave_tk_when(cleave_tk *t, const char *command, const char *body);
/* Then the command succeeded and emitted exactly these events, in order:
 * a JSON array of {"type", "stream"?, "data"?}. */
int cleave_tk_then_events(cleave_tk *t, const char *expected);
/* Then the command failed with this error code ("out_of_stock",
 * "invalid_argument", "not_found", …) and wrote nothing. */
int cleave_tk_then_error(cleave_tk *t, const char *code);
/* Then its "result" matches expected (a JSON object). */
int cleave_tk_then_result(cleave_tk *t, const char *expected);

/* A query, once every projection has applied the whole log, with params
 * "k=v&k2=v2" (NULL for none; values as they are, no escaping) answers
 * expected, or fails with code. */
int cleave_tk_query(cleave_tk *t, const char *query, const char *params,
		    const char *expected);
int cleave_tk_query_error(cleave_tk *t, const char *query, const char *params,
			  const char *code);

#pragma GCC visibility pop

#endif
