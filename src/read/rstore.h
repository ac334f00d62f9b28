/*
 * rstore.h — the read-store method table (private).
 *
 * A read store holds one copy ("generation") of one projection: the
 * projection's data and its checkpoint, written in the same transaction.
 * Backends: rstore_lmdb.c ("lmdb"), rstore_sqlite.c ("sqlite"),
 * rstore_redis.c ("redis", a shared store: it holds the copies of key/value
 * projections when the engine is given --read-store redis://…).  The core
 * and the sync layer never include a backend header and never ask which
 * backend they have: they find one by kind (cl_rstore_find) or by the URI
 * of a shared store (cl_rstore_for_uri), and ask what it can do through
 * its capability flags (caps, CL_RS_*) and the cl_rs_* wrappers below,
 * which check the optional slots.
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
	bool lazy;           /* a shared store that cannot be reached is
				opened anyway: what open checks (the claim,
				the checkpoint) is done at its first
				connection, and calls fail (CLEAVE_EIO)
				until then */
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
	/* live queries: what this transaction reads (a query's) or writes
	 * (a live copy's batch), as tokens of projection rec_proj
	 * (read/keyrec.h); NULL when nobody asks.  cl_rtx_commit and
	 * cl_rtx_abort clear it. */
	struct cl_keyrec *rec;
	int rec_proj;
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

/* What a backend can do (cl_rstore_methods.caps). */
enum {
	/* key/value data calls: get, put, del, scan (a projection of store
	 * kind "lmdb" needs them, whatever backend holds its copies) */
	CL_RS_KV = 1 << 0,
	/* SQL data calls: exec, query (store kind "sqlite") */
	CL_RS_SQL = 1 << 1,
	/* Copies live in a server that other processes reach by a root URI
	 * (scheme://…/PREFIX): query nodes of another engine read them, so
	 * a retired copy is dropped CL_SHARED_DROP_GRACE_S after its switch;
	 * each copy is claimed by the engine that writes it (opts.owner);
	 * the root keeps small records beside the copies (meta_get/set, the
	 * catalog query nodes follow), lists copies (list), and the server
	 * may lose what it had, so a quiet copy checks it now and then. */
	CL_RS_SHARED = 1 << 2,
	/* Read transactions see a snapshot.  Without it, hold (required
	 * then) keeps the writer out while verify reads. */
	CL_RS_SNAPSHOT = 1 << 3,
};

/* Seconds a retired copy in a shared store stays readable after its
 * switch, for query nodes that have not yet followed it. */
#define CL_SHARED_DROP_GRACE_S 3

struct cl_rstore_methods {
	int version; /* CL_RSTORE_V1 */
	const char *kind;
	unsigned caps; /* CL_RS_* */

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
	 * that are, CL_RS_SNAPSHOT): hold(s, true) waits for the store's write transaction
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
	/* cleave_rtx_fts_query (SQL stores with full-text search). */
	int (*fts_query)(cleave_rtx *tx, const char *text, size_t n,
			 int max_words, cleave_buf *out, int *nwords);

	/* Shared stores (CL_RS_SHARED), NULL for the others. */
	const char *scheme;   /* URIs "scheme://…" name this backend */
	const char *uri_form; /* for messages: "redis://HOST[:PORT]…" */
	/* Checks a --read-store URI and gives its canonical root (malloc'd),
	 * under which copies are "ROOT/<name>.g<gen>".  CLEAVE_EINVAL. */
	int (*root_parse)(const char *uri, char **root);
	/* Calls fn(arg, name) for each copy under root that `owner`
	 * claimed, name being what follows "ROOT/"; fn returns 0 to go on.
	 * 0, or an error (< 0). */
	int (*list)(const char *root, const char *owner,
		    int (*fn)(void *arg, const char *name), void *arg);
	/* Small records beside the copies (s opened on the root): get
	 * gives a malloc'd NUL-terminated copy, or NULL when absent. */
	int (*meta_get)(cl_rstore *s, const char *name, char **out);
	int (*meta_set)(cl_rstore *s, const char *name, const char *val);
};

/* The backend for `kind` ("lmdb", "sqlite"), or NULL. */
const cl_rstore_methods *cl_rstore_find(const char *kind);
/* The shared backend whose scheme starts uri ("redis://…"), or NULL. */
const cl_rstore_methods *cl_rstore_for_uri(const char *uri);
/* "redis://HOST[:PORT][/DB][/PREFIX]" and the others: every shared
 * backend's uri_form, joined with " or " (for messages). */
const char *cl_rstore_uri_forms(void);

/* A key of a generic structure as the domain wrote it, for people (verify's
 * differences): a list item "<list> #<seq>", a sorted set's rank entry
 * "<member> (score S)", any other key as it is.  Writes at most cap bytes
 * with the NUL; returns the length written. */
size_t cl_gen_key_text(const char *table, const char *key, size_t klen,
                       char *out, size_t cap);

/* ---- wrappers: capabilities and optional slots ---------------------- */

static inline bool cl_rs_has(const cl_rstore_methods *m, unsigned caps)
{
	return m && (m->caps & caps) == caps;
}

/* Keeps a store without snapshots still while its caller reads (a no-op
 * for stores with snapshots). */
int cl_rs_hold(cl_rstore *s, bool on);
/* Deletes a retired copy: at once, or for a shared store
 * CL_SHARED_DROP_GRACE_S later on a thread of its own (query nodes may
 * still read it; a copy left by an exit meanwhile is swept at the next
 * start). */
void cl_rs_drop_retired(const cl_rstore_methods *m, const char *path);

#endif
