/*
 * keyrec.h — what a transaction read or wrote, for live queries.
 *
 * A live query (src/live) is woken only by writes to what it read.  The
 * public cleave_rtx_* calls note, on a transaction that carries a
 * recorder (tx->rec), one token per thing touched — a 64-bit hash of the
 * projection, a kind and the names — so that a query's reads and a
 * batch's writes meet in one hash table:
 *
 *   K ns key    a key, a document, a counter, a sorted-set member
 *   L ns list   a list (its items, its length)
 *   N ns        a namespace read by range (scan, zrange, counter_scan)
 *   S           the whole store (an SQL query)
 *   P           the projection itself (a switch, a query node's follow)
 *
 * A read notes what it names (K, L, N or S).  A write notes its K or L,
 * the N of its namespace and S, so range and SQL readers wake too; an
 * SQL write names no key and sets `all` (every reader of the projection
 * wakes).  Hash collisions only wake a query that then finds its answer
 * unchanged.  A recorder that overflows CL_KEYREC_MAX tokens or runs out
 * of memory sets `all` as well: it may wake too much, never too little.
 */
#ifndef CL_KEYREC_H
#define CL_KEYREC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "read/rstore.h"

#define CL_KEYREC_MAX 65536

enum {
	CL_TOK_KEY = 'K',
	CL_TOK_LIST = 'L',
	CL_TOK_NS = 'N',
	CL_TOK_STORE = 'S',
	CL_TOK_PROJ = 'P',
};

typedef struct cl_keyrec {
	uint64_t *tok;
	size_t n, cap;
	bool all;
} cl_keyrec;

uint64_t cl_tok(int proj, int kind, const char *ns, const char *key);
void cl_keyrec_reset(cl_keyrec *r);
void cl_keyrec_free(cl_keyrec *r);
/* Sorts and removes duplicates. */
void cl_keyrec_finish(cl_keyrec *r);
void cl_keyrec_add(cl_keyrec *r, uint64_t tok);

/* Called by the public rtx calls when tx->rec is set. */
void cl_rec_read(cleave_rtx *tx, int kind, const char *ns, const char *key);
void cl_rec_write(cleave_rtx *tx, int kind, const char *ns, const char *key);
void cl_rec_write_all(cleave_rtx *tx);

/* cleave_query_run for query index qi, noting in rec what the handler
 * reads (read/query.c). */
int cl_query_run_rec(cleave_engine *e, int qi, const cleave_param *params,
                     int nparams, cleave_answer *out, cl_keyrec *rec);

#define CL_REC_READ(tx, kind, ns, key)                                        \
	do {                                                                   \
		if ((tx)->rec)                                                 \
			cl_rec_read((tx), (kind), (ns), (key));                \
	} while (0)
#define CL_REC_WRITE(tx, kind, ns, key)                                       \
	do {                                                                   \
		if ((tx)->rec)                                                 \
			cl_rec_write((tx), (kind), (ns), (key));               \
	} while (0)

#endif
