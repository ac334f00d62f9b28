/*
 * wstore.h — the write-store method table (private).
 *
 * A write store holds the domain's normalized tables and the log (events
 * table), and the idempotency records, all changed in one transaction per
 * group commit.  One connection writes (the writer thread's); readers
 * (projection runners catching up, /events, the CLI) use their own
 * connections through cl_wreader.  Backends: wstore_sqlite.c ("sqlite"),
 * wstore_pg.c ("postgres").
 */
#ifndef CL_WSTORE_H
#define CL_WSTORE_H

#include "cleave.h"

#define CL_WSTORE_V1 1

typedef struct cl_wstore cl_wstore;
typedef struct cl_wreader cl_wreader;
typedef struct cl_wstore_methods cl_wstore_methods;

typedef struct cl_wstore_opts {
	const char *data_dir; /* for embedded stores */
	const char *uri;      /* NULL/"sqlite" or "postgres://…" */
	cleave_durability durability;
	bool read_only;
} cl_wstore_opts;

struct cl_wstore {
	const cl_wstore_methods *m;
};
struct cl_wreader {
	const cl_wstore_methods *m;
	cl_wstore *store;
};

/* An event row as stored.  Pointers are borrowed (valid for the call). */
typedef struct cl_stored_event {
	int64_t position, version, ts_us;
	int schema_version;
	const char *stream, *type, *data;
	size_t data_len;
	const char *trace_id, *command_id, *idem_key, *causation_id;
} cl_stored_event;

typedef int (*cl_stored_fn)(void *arg, const cl_stored_event *ev);

/* An idempotency record: the request's hash and the full answer. */
typedef struct cl_idem_rec {
	int64_t position;
	int rc;
	const char *request_hash;
	const char *response;
	size_t response_len;
} cl_idem_rec;

/* The store rolls a failed statement back by itself, leaving the
 * transaction usable (SQLite does; PostgreSQL aborts the transaction).
 * With it, the writer runs a batch without savepoints and falls back to
 * them only when a command fails after it changed something. */
#define CL_WSTORE_STMT_ATOMIC 1u

struct cl_wstore_methods {
	int version; /* CL_WSTORE_V1 */
	const char *kind;
	unsigned flags; /* CL_WSTORE_* */

	int (*open)(const cl_wstore_opts *o, cl_wstore **out);
	void (*close)(cl_wstore *s);

	/* Creates the log tables and runs the domain's migrations not yet
	 * applied, each in its own transaction. */
	int (*migrate)(cl_wstore *s, const char *domain,
		       const char *const *migrations);
	int (*head)(cl_wstore *s, int64_t *out);

	/* The writer's transaction. */
	int (*begin)(cl_wstore *s);
	int (*commit)(cl_wstore *s);
	void (*rollback)(cl_wstore *s);
	int (*savepoint)(cl_wstore *s);
	int (*release)(cl_wstore *s);
	int (*rollback_to)(cl_wstore *s);
	int (*exec)(cl_wstore *s, const char *sql, const cleave_value *args,
		    int nargs, int64_t *changes);
	int (*query)(cl_wstore *s, const char *sql, const cleave_value *args,
		     int nargs, cleave_rows **out);

	/* The stream's last version.  A store with index_maybe may answer
	 * from its stream index only, which lags the log: the writer's
	 * stream-version cache must then hold every stream written since
	 * the last flush (it is cleared only right after index_maybe
	 * flushed). */
	int (*stream_version)(cl_wstore *s, const char *stream, int64_t *out);
	/* Optional: brings a lazily built stream index up to `head` inside
	 * the writer's open transaction, when it lags by enough (or
	 * `force`).  Returns 1 when it did, 0 when not needed, <0 error. */
	int (*index_maybe)(cl_wstore *s, int64_t head, bool force);
	int (*append)(cl_wstore *s, const cl_stored_event *ev);
	/* Optional: appends a group's events at once, in the writer's
	 * transaction, just before it commits.  A store that has it gets no
	 * append() calls from handlers' emits: their events wait in memory
	 * (where a failing command's are dropped) until then. */
	int (*append_many)(cl_wstore *s, const cl_stored_event *ev, int n);
	/* CLEAVE_ENOTFOUND when absent; pointers valid until the next call
	 * on s. */
	int (*idem_get)(cl_wstore *s, const char *key, cl_idem_rec *out);
	int (*idem_put)(cl_wstore *s, const char *key, const cl_idem_rec *r);

	/* Background upkeep (WAL checkpoints); called from another thread
	 * than the writer. */
	int (*maintain)(cl_wstore *s);

	/* Log readers: one per thread at a time. */
	int (*reader_open)(cl_wstore *s, cl_wreader **out);
	void (*reader_close)(cl_wreader *r);
	int (*reader_head)(cl_wreader *r, int64_t *out);
	/* Events with position > after (in stream when not NULL), in order,
	 * at most limit (0 = all).  fn returns 0 go on, 1 stop, <0 fail. */
	int (*read)(cl_wreader *r, int64_t after, const char *stream,
		    size_t limit, cl_stored_fn fn, void *arg);
	int (*trace)(cl_wreader *r, const char *id, cl_stored_fn fn,
		     void *arg);
	/* Events with after < position <= upto whose type is in `types`
	 * (NULL-terminated; NULL = every type), in order, at most limit.
	 * Runners read only what their projection subscribes to; the store
	 * skips the rest without decoding it.  May be NULL: the engine then
	 * uses read() and filters itself. */
	int (*read_types)(cl_wreader *r, int64_t after, int64_t upto,
			  const char *const *types, size_t limit,
			  cl_stored_fn fn, void *arg);
};

const cl_wstore_methods *cl_wstore_find(const char *uri);
extern const cl_wstore_methods cl_wstore_sqlite;
extern const cl_wstore_methods cl_wstore_pg;

#endif
