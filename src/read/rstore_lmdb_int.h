/*
 * rstore_lmdb_int.h — what the files of the "lmdb" read store share
 * (rstore_lmdb.c: environment, handles, transactions, key/value;
 * rstore_lmdb_meta.c: checkpoint, dead letters, dump).  Nothing outside
 * those files includes it.
 */
#ifndef CL_RSTORE_LMDB_INT_H
#define CL_RSTORE_LMDB_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "read/rstore.h"
#include "read/rstore_int.h"

#define LM_MAXDBS      128  /* named databases per environment */
#define LM_SLOTS       256  /* cache table size, power of 2 > LM_MAXDBS */
#define LM_MAXREADERS  1022 /* concurrent read transactions */
#define LM_IDLE_MAX    64   /* reset read transactions kept for reuse */
#define LM_MAP_DEFAULT ((uint64_t)64 << 30)
#define LM_ARENA_CHUNK (64 * 1024)
#define LM_META        "#cleave"
#define LM_DEAD        "#dead"
#define LM_CHECKPOINT  "checkpoint"

typedef struct lm_ns {
	uint64_t hash;
	uint32_t seq; /* publication order */
	MDB_dbi dbi;
	size_t len;
	char name[CL_NS_IMAX + 1];
} lm_ns;

typedef struct lm_chunk {
	struct lm_chunk *next;
	size_t cap, used;
	char mem[];
} lm_chunk;

typedef struct lm_store lm_store;

typedef struct lm_tx {
	cleave_rtx base; /* first: cleave_rtx* ↔ lm_tx* */
	lm_store *s;
	MDB_txn *txn;
	uint32_t gen; /* read: cache entries with seq < gen are usable */
	struct lm_tx *next;
} lm_tx;

struct lm_store {
	cl_rstore base; /* first */
	MDB_env *env;
	MDB_dbi main_dbi;
	uint64_t map_size;
	size_t maxkey;
	bool read_only;

	/* Published namespaces. */
	pthread_mutex_t mu; /* publication and the idle list */
	_Atomic(lm_ns *) slots[LM_SLOTS];
	_Atomic uint32_t nns;
	lm_ns ns[LM_MAXDBS];
	/* Odd while a commit that creates namespaces is in flight; pend_txnid
	 * is that commit's transaction id. */
	_Atomic uint64_t epoch;
	_Atomic size_t pend_txnid;

	lm_tx *idle;
	int nidle;

	/* The writer: wmu is held from begin to commit/abort. */
	pthread_mutex_t wmu;
	lm_tx wtx;
	lm_ns pend[LM_MAXDBS];
	int npend;
	lm_chunk *arena;
};

/* Maps an LMDB code to a CLEAVE_E* code, recording a message that names
 * the store and `what` (and how to raise the map size when it is full). */
int cl_lm_err(const lm_store *s, int mrc, const char *what);
/* The handle of namespace `name` in t.  Returns 0, CLEAVE_ENOTFOUND (no
 * message) when the namespace does not exist in t's snapshot and `create`
 * is false, or an error.  create needs a write transaction. */
int cl_lm_dbi(lm_tx *t, const char *name, bool create, MDB_dbi *dbi);
int cl_lm_put(cleave_rtx *tx, const char *ns, const char *key, const void *val,
              size_t len);

int cl_lm_checkpoint_get(cleave_rtx *tx, int64_t *pos);
int cl_lm_checkpoint_set(cleave_rtx *tx, int64_t pos);
int cl_lm_dead_letter_add(cleave_rtx *tx, const cleave_event *ev,
                          const char *error);
int cl_lm_dead_letter_count(cleave_rtx *tx, int64_t *n);
int cl_lm_dump(cleave_rtx *tx, cl_dump_fn fn, void *arg);

#endif
