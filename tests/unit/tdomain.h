/*
 * tdomain.h — a small domain for the engine's own tests: counters.
 *
 * Commands: Create{id}, Inc{id, by, poison?}, Fail{id} (writes, then is
 * rejected), Noop{}.
 * Events: Created{id}, Incremented{id, by, n, poison?}.
 * Projections: totals (lmdb: doc per id, counter "sum"), poison (lmdb,
 * park), skipper (lmdb, skip), rows (sqlite table).
 * Queries: count{id}, sum{}, rows{}.
 */
#ifndef TDOMAIN_H
#define TDOMAIN_H

#include <stdatomic.h>

#include "cleave.h"

extern const cleave_domain td_domain;
/* The same domain with Incremented at schema version 2 and an upcaster
 * from 1 that adds "upcast": true. */
extern const cleave_domain td_domain_v2;
/* When true, the poison projections accept poison events. */
extern atomic_bool td_cure;
/* Counts calls of the totals handler (exactly-once checks). */
extern atomic_long td_totals_calls;

/* Runs a command synchronously; returns the outcome rc, fills *pos. */
int td_run(cleave_engine *e, const char *cmd, const char *body,
	   const char *key, int64_t *pos);

#endif
