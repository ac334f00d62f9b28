/*
 * rstore.h — the read-store method table (private).
 *
 * A read store holds one copy ("generation") of one projection: the
 * projection's data and its checkpoint, written in the same transaction.
 * Backends: rstore_lmdb.c ("lmdb"), rstore_sqlite.c ("sqlite"),
 * rstore_redis.c ("redis", which holds the copies of "lmdb" projections
 * when the engine is given --read-store redis://…).  The engine never includes a backend
 * header; it finds a backend by kind with cl_rstore_find().
 *
 * Every public cleave_rtx_* call dispatches through tx->m.  The sorted-set,
 * counter and list calls have generic implementations over the key/value
 * calls (rstore.c); a backend that has native ones (Redis) sets them.
 */
#ifndef CL_RSTORE_H
#define CL_RSTORE_H

#include "cleave.h"

#define CL_RSTORE_V1 1

typedef struct cl_rstore cl_rstore;
typedef struct cl_rstore_methods cl_rstore_methods;

typedef struct cl_rstore_opts {
	bool read_only;      /* open without writing (CLI inspection) */
	bool nosync;         /* durability "os": no fsync at commit */
	uint64_t map_size;   /* lmdb: bytes of address space; 0 → 64 GiB */
	const char *owner;   /* redis: the writing engine's identity; a copy
				claimed by another owner is refused */
} cl_rstore_opts;

typedef struct cl_docs cl_docs;

/* Common head of every transaction; backends embed it first.  `docs` is
 * the document cache (doccache.c), NULL until used; backends leave it
 * alone.  The engine ends transactions with cl_rtx_commit / cl_rtx_abort,
 * which write or drop the cache, then call the backend. */
struct cleave_rtx {
	const cl_rstore_methods *m;
	cl_rstore *store;
	bool write;
	cl_docs *docs;
	struct cl_defer *defer; /* cleave_rtx_defer: registrations */
	int ndefer, capdefer;
};

int cl_rtx_commit(cleave_rtx *tx);
void cl_rtx_abort(cleave_rtx *tx);
/* Runs the deferred flushes, then writes the cached documents that
 * changed (before a checkpoint, before a dump). */
int cl_rtx_flush(cleave_rtx *tx);

/* Common head of every opened store. */
struct cl_rstore {
	const cl_rstore_methods *m;
	char *path;
};

/* One entry of a store dump (verify): the same data gives the same entries
 * in the same order, whatever the history that built it. */
typedef int (*cl_dump_fn)(void *arg, const char *table, const char *key,
			  size_t klen, const void *val, size_t vlen);

struct cl_rstore_methods {
	int version; /* CL_RSTORE_V1 */
	const char *kind;

	/* Opens or creates the copy at `path` (a directory, created 0700). */
	int (*open)(const char *path, const cl_rstore_opts *o,
		    cl_rstore **out);
	void (*close)(cl_rstore *s);
	/* Deletes the copy's files; the store must be closed. */
	int (*drop)(const char *path);

	/* Transactions. Read transactions see a snapshot and may run on any
	 * thread, many at once; one write transaction at a time per store.
	 * commit and abort end (and free) the transaction. */
	int (*begin)(cl_rstore *s, bool write, cleave_rtx **out);
	int (*commit)(cleave_rtx *tx);
	void (*abort)(cleave_rtx *tx);

	/* The checkpoint: last log position applied; 0 on a fresh copy. */
	int (*checkpoint_get)(cleave_rtx *tx, int64_t *pos);
	int (*checkpoint_set)(cleave_rtx *tx, int64_t pos);
	/* Records an event skipped by the poison policy (write tx). */
	int (*dead_letter_add)(cleave_rtx *tx, const cleave_event *ev,
			       const char *error);
	int (*dead_letter_count)(cleave_rtx *tx, int64_t *n);
	/* Every entry of the projection's data (not the checkpoint nor the
	 * dead letters), in a canonical order. */
	int (*dump)(cleave_rtx *tx, cl_dump_fn fn, void *arg);
	/* Stores whose read transactions are not snapshots (NULL for those
	 * that are): hold(s, true) waits for the store's write transaction
	 * to end and keeps new ones from beginning until hold(s, false),
	 * called on the same thread, so that reads in between see one
	 * commit (verify). */
	int (*hold)(cl_rstore *s, bool on);

	/* Data: key/value (required for "lmdb", may be NULL for SQL). */
	int (*get)(cleave_rtx *tx, const char *ns, const char *key,
		   const void **val, size_t *len);
	int (*put)(cleave_rtx *tx, const char *ns, const char *key,
		   const void *val, size_t len);
	int (*del)(cleave_rtx *tx, const char *ns, const char *key);
	int (*scan)(cleave_rtx *tx, const char *ns, const char *from,
		    const char *to, int flags, size_t limit, cleave_scan_fn fn,
		    void *arg);

	/* Optional native structures; NULL uses the generic ones over kv. */
	int (*zincr)(cleave_rtx *tx, const char *ns, const char *member,
		     int64_t delta, int64_t *score_out);
	int (*zscore)(cleave_rtx *tx, const char *ns, const char *member,
		      int64_t *out);
	int (*zrem)(cleave_rtx *tx, const char *ns, const char *member);
	int (*zrange)(cleave_rtx *tx, const char *ns, size_t offset,
		      size_t limit, cleave_zrange_fn fn, void *arg);
	int (*counter_add)(cleave_rtx *tx, const char *ns, const char *key,
			   const int64_t *delta, int n);
	int (*counter_get)(cleave_rtx *tx, const char *ns, const char *key,
			   int64_t *out, int n);
	int (*counter_scan)(cleave_rtx *tx, const char *ns, const char *from,
			    const char *to, size_t limit,
			    cleave_counter_fn fn, void *arg);
	int (*list_put)(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq, const void *val, size_t len);
	int (*list_get)(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq, const void **val, size_t *len);
	int (*list_del)(cleave_rtx *tx, const char *ns, const char *list,
			int64_t seq);
	int (*list_page)(cleave_rtx *tx, const char *ns, const char *list,
			 int64_t before, size_t limit, cleave_list_fn fn,
			 void *arg);

	/* SQL (required for "sqlite", NULL for key/value stores). */
	int (*exec)(cleave_rtx *tx, const char *sql, const cleave_value *args,
		    int nargs, int64_t *changes);
	int (*query)(cleave_rtx *tx, const char *sql, const cleave_value *args,
		     int nargs, cleave_rows **out);
};

/* The backend for `kind` ("lmdb", "sqlite"), or NULL. */
const cl_rstore_methods *cl_rstore_find(const char *kind);

extern const cl_rstore_methods cl_rstore_lmdb;
extern const cl_rstore_methods cl_rstore_sqlite;
extern const cl_rstore_methods cl_rstore_redis;

/* Parses "redis://HOST[:PORT][/DB]" at the start of uri (port 6379, db 0
 * by default); *rest points past it ("" or "/..."). 0 or CLEAVE_EINVAL. */
int cl_redis_parse(const char *uri, char *host, size_t hcap, int *port,
		   int *db, const char **rest);
/* Calls fn(arg, name) for each copy under root ("redis://H:P/DB/PREFIX")
 * that `owner` claimed, name being what follows "PREFIX/" in its path; fn
 * returns 0 to go on.  0, or an error (< 0). */
int cl_redis_list(const char *root, const char *owner,
		  int (*fn)(void *arg, const char *name), void *arg);
/* Small records beside the copies, "PREFIX|name" (s opened on the root):
 * get gives a malloc'd NUL-terminated copy, or NULL when absent. */
int cl_redis_meta_get(cl_rstore *s, const char *name, char **out);
int cl_redis_meta_set(cl_rstore *s, const char *name, const char *val);

#endif
