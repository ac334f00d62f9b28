/*
 * wstore_sqlite.c — the embedded write store: one SQLite database in WAL
 * mode holding the domain's tables, the log and the idempotency records.
 *
 * Durability "fsync" is synchronous=FULL: every commit fsyncs the WAL
 * before the writer acknowledges anything.  "os" is synchronous=NORMAL:
 * the WAL is written but synced only at checkpoints (a process crash loses
 * nothing; an OS crash may lose the last commits, never consistency).
 * The writer never checkpoints (auto-checkpoint off): maintain() does it
 * from a background thread so a checkpoint's fsyncs never sit in a
 * command's latency.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/sqlite_util.h"
#include "core/util.h"
#include "write/wstore.h"

typedef struct sq_store {
	cl_wstore base;
	sqlite3 *db;   /* the writer's connection */
	cl_stmt_cache *cache;
	sqlite3 *ckpt; /* maintain()'s connection */
	char *path;
	bool read_only;
	int sp_depth;
	cl_buf idem; /* the last idempotency record read */
	int wal_frames; /* frames in the WAL after the last commit */
	int64_t indexed;         /* the stream index covers events <= this */
	int64_t indexed_pending; /* what the open transaction indexed */
} sq_store;

/* The log's stream index.  A unique index on events(stream, version) puts
 * each event of a batch on another leaf page when the batch spans many
 * streams, and the WAL writes every dirty page whole: 3 KB of WAL per
 * 250-byte event, most of what a group commit writes and fsyncs.  So the
 * index is built off the event's own commit: every INDEX_BATCH events the
 * writer adds the new ones in (stream, version) order, in one transaction
 * of its own batch — a leaf page per stream per flush instead of per
 * commit.  Until then the writer's stream-version cache holds the
 * versions of the streams written since the last flush (the engine
 * guarantees it: it clears the cache only right after a flush), versions
 * stay unique by construction (one writer), and stream reads add the
 * unindexed tail, at most INDEX_BATCH events, by scanning it. */
#define INDEX_BATCH 32768

/* The WAL restarts from its beginning only when a write transaction begins
 * after a checkpoint that copied every frame.  The background checkpoint
 * (maintain) can never finish while the writer keeps appending, so on its
 * own the WAL grows without bound — and every new WAL page costs the kernel
 * a zeroed page.  So the writer, between batches, finishes the job once the
 * WAL passes WAL_RESTART_FRAMES: by then the background pass has copied
 * nearly everything, and what is left is short. */
#define WAL_RESTART_FRAMES 4096

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	((sq_store *)arg)->wal_frames = frames;
	return SQLITE_OK;
}

typedef struct sq_reader {
	cl_wreader base;
	sqlite3 *db;
	cl_stmt_cache *cache;
} sq_reader;

static const char log_schema[] =
	"CREATE TABLE IF NOT EXISTS events("
	" position INTEGER PRIMARY KEY,"
	" stream TEXT NOT NULL,"
	" version INTEGER NOT NULL,"
	" type TEXT NOT NULL,"
	" schema_version INTEGER NOT NULL,"
	" data TEXT NOT NULL,"
	" ts_us INTEGER NOT NULL,"
	" trace_id TEXT, command_id TEXT, idem_key TEXT, causation_id TEXT);"
	"CREATE TABLE IF NOT EXISTS cleave_stream_index("
	" stream TEXT NOT NULL, version INTEGER NOT NULL,"
	" position INTEGER NOT NULL, PRIMARY KEY(stream, version))"
	" WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS cleave_meta("
	" k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS cleave_idempotency("
	" key TEXT PRIMARY KEY, request_hash TEXT NOT NULL,"
	" rc INTEGER NOT NULL, position INTEGER NOT NULL,"
	" response TEXT NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS cleave_migrations("
	" domain TEXT NOT NULL, version INTEGER NOT NULL,"
	" PRIMARY KEY(domain, version));";

#define EVENT_COLS                                                           \
	"position, stream, version, type, schema_version, data, ts_us,"      \
	" trace_id, command_id, idem_key, causation_id"
#define EVENT_COLS_E                                                         \
	"e.position, e.stream, e.version, e.type, e.schema_version, e.data,"  \
	" e.ts_us, e.trace_id, e.command_id, e.idem_key, e.causation_id"

static int open_db(const char *path, bool ro, sqlite3 **out)
{
	int flags = SQLITE_OPEN_NOMUTEX |
		    (ro ? SQLITE_OPEN_READONLY
			: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	sqlite3 *db = NULL;
	int src = sqlite3_open_v2(path, &db, flags, NULL);
	if (src != SQLITE_OK) {
		int rc = cl_sqlite_err(db, src, "open");
		cl_err(rc, "cannot open write store %s: %s", path,
		       db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
		sqlite3_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db, 5000);
	sqlite3_extended_result_codes(db, 1);
	*out = db;
	return 0;
}

static int sq_exec(cl_wstore *base, const char *sql, const cleave_value *args,
		   int nargs, int64_t *changes);
static int index_flush_all(sq_store *s);
static int index_load(sq_store *s);

static void sq_close(cl_wstore *base)
{
	sq_store *s = (sq_store *)base;
	if (!s)
		return;
	/* a failure is harmless: the next open indexes the tail */
	if (!s->read_only && s->cache)
		(void)index_flush_all(s);
	cl_stmt_cache_free(s->cache);
	cl_buf_free(&s->idem);
	if (s->ckpt) {
		/* a last full checkpoint keeps the next open quick */
		if (!s->read_only)
			sqlite3_wal_checkpoint_v2(s->ckpt, NULL,
						  SQLITE_CHECKPOINT_TRUNCATE,
						  NULL, NULL);
		sqlite3_close(s->ckpt);
	}
	sqlite3_close(s->db);
	free(s->path);
	free(s);
}

static int sq_open(const cl_wstore_opts *o, cl_wstore **out)
{
	char path[4096];
	*out = NULL;
	snprintf(path, sizeof(path), "%s/write.db",
		 o->data_dir ? o->data_dir : ".");
	sq_store *s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	s->base.m = &cl_wstore_sqlite;
	s->read_only = o->read_only;
	s->path = strdup(path);
	int rc = open_db(path, o->read_only, &s->db);
	if (rc)
		goto fail;
	if (!o->read_only) {
		char pragmas[512];
		snprintf(pragmas, sizeof(pragmas),
			 "PRAGMA journal_mode=WAL;"
			 "PRAGMA synchronous=%s;"
			 "PRAGMA wal_autocheckpoint=0;"
			 "PRAGMA cache_size=-16384;"
			 "PRAGMA temp_store=MEMORY;"
			 "PRAGMA foreign_keys=ON;",
			 o->durability == CLEAVE_DURABILITY_OS ? "NORMAL"
								: "FULL");
		if ((rc = cl_sqlite_script(s->db, pragmas)))
			goto fail;
		if ((rc = cl_sqlite_script(s->db, log_schema)))
			goto fail;
		if ((rc = open_db(path, false, &s->ckpt)))
			goto fail;
		/* SQLite opens the WAL lazily: a connection that never read
		 * would checkpoint nothing (log = -1) */
		if ((rc = cl_sqlite_script(s->ckpt,
					   "SELECT 1 FROM sqlite_master LIMIT 1")))
			goto fail;
		sqlite3_wal_hook(s->db, wal_hook, s);
	}
	s->cache = cl_stmt_cache_new(s->db);
	if (!s->cache) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto fail;
	}
	if (!o->read_only && (rc = index_load(s)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return rc;
}

static int sq_exec(cl_wstore *base, const char *sql, const cleave_value *args,
		   int nargs, int64_t *changes)
{
	return cl_sqlite_exec(((sq_store *)base)->cache, sql, args, nargs,
			      changes);
}

static int sq_query(cl_wstore *base, const char *sql, const cleave_value *args,
		    int nargs, cleave_rows **out)
{
	return cl_sqlite_query(((sq_store *)base)->cache, sql, args, nargs,
			       out);
}

static int sq_migrate(cl_wstore *base, const char *domain,
		      const char *const *migrations)
{
	sq_store *s = (sq_store *)base;
	cleave_rows *dr;
	int drc = sq_query(base,
			   "SELECT domain FROM cleave_migrations"
			   " WHERE domain != ? LIMIT 1",
			   (cleave_value[]){cleave_text(domain)}, 1, &dr);
	if (drc)
		return s->read_only ? 0 : drc; /* no table yet (read-only) */
	if (cleave_rows_next(dr) == 1) {
		char other[128];
		snprintf(other, sizeof(other), "%s",
			 cleave_rows_text(dr, 0, NULL));
		cleave_rows_close(dr);
		return cl_err(CLEAVE_EINVAL,
			      "this data directory holds the '%s' domain, "
			      "not '%s' (use --domain %s or another --data)",
			      other, domain, other);
	}
	cleave_rows_close(dr);
	if (s->read_only)
		return 0;
	for (int v = 1; migrations && migrations[v - 1]; v++) {
		int64_t n = 0;
		cleave_rows *r;
		cleave_value a[] = {cleave_text(domain), cleave_int(v)};
		int rc = sq_query(base,
				  "SELECT count(*) FROM cleave_migrations"
				  " WHERE domain = ? AND version = ?",
				  a, 2, &r);
		if (rc)
			return rc;
		if (cleave_rows_next(r) == 1)
			n = cleave_rows_int(r, 0);
		cleave_rows_close(r);
		if (n)
			continue;
		if ((rc = cl_sqlite_script(s->db, "BEGIN IMMEDIATE")))
			return rc;
		rc = cl_sqlite_script(s->db, migrations[v - 1]);
		if (!rc)
			rc = sq_exec(base,
				     "INSERT INTO cleave_migrations"
				     "(domain, version) VALUES(?, ?)",
				     a, 2, NULL);
		if (rc) {
			int keep = rc;
			char msg[400];
			snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
			cl_sqlite_script(s->db, "ROLLBACK");
			return cl_err(keep, "migration %s #%d failed: %s",
				      domain, v, msg);
		}
		if ((rc = cl_sqlite_script(s->db, "COMMIT")))
			return rc;
	}
	return 0;
}

static int sq_head(cl_wstore *base, int64_t *out)
{
	cleave_rows *r;
	int rc = sq_query(base, "SELECT coalesce(max(position), 0) FROM events",
			  NULL, 0, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	*out = rc == 1 ? cleave_rows_int(r, 0) : 0;
	cleave_rows_close(r);
	return rc < 0 ? rc : 0;
}

/* Indexes the events after s->indexed up to `upto` inside the open
 * transaction; s->indexed follows on commit. */
static int index_flush(sq_store *s, int64_t upto)
{
	cleave_value a[] = {cleave_int(s->indexed), cleave_int(upto)};
	int rc = sq_exec(&s->base,
			 "INSERT INTO cleave_stream_index(stream, version,"
			 " position) SELECT stream, version, position"
			 " FROM events WHERE position > ? AND position <= ?"
			 " ORDER BY stream, version",
			 a, 2, NULL);
	if (rc == CLEAVE_EEXIST)
		return cl_err(CLEAVE_ECORRUPT,
			      "the log holds two events with one stream "
			      "version (between positions %lld and %lld)",
			      (long long)s->indexed, (long long)upto);
	if (rc)
		return rc;
	cleave_value b[] = {cleave_int(upto)};
	rc = sq_exec(&s->base,
		     "INSERT INTO cleave_meta(k, v)"
		     " VALUES('stream_index_upto', ?)"
		     " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
		     b, 1, NULL);
	if (rc == 0)
		s->indexed_pending = upto;
	return rc;
}

/* Everything, in a transaction of its own (open, close). */
static int index_flush_all(sq_store *s)
{
	int64_t head = 0;
	cleave_rows *r;
	int rc = cl_sqlite_query(s->cache,
				 "SELECT coalesce(max(position), 0) FROM events",
				 NULL, 0, &r);
	if (rc)
		return rc;
	if (cleave_rows_next(r) == 1)
		head = cleave_rows_int(r, 0);
	cleave_rows_close(r);
	if (head <= s->indexed)
		return 0;
	if ((rc = sq_exec(&s->base, "BEGIN IMMEDIATE", NULL, 0, NULL)))
		return rc;
	if ((rc = index_flush(s, head)) ||
	    (rc = sq_exec(&s->base, "COMMIT", NULL, 0, NULL))) {
		sq_exec(&s->base, "ROLLBACK", NULL, 0, NULL);
		return rc;
	}
	s->indexed = s->indexed_pending;
	return 0;
}

static int index_load(sq_store *s)
{
	cleave_rows *r;
	/* a log from before the lazy index: drop the old unique index and
	 * index everything once */
	int rc = cl_sqlite_script(s->db, "DROP INDEX IF EXISTS events_stream");
	if (rc)
		return rc;
	rc = cl_sqlite_query(s->cache,
			     "SELECT v FROM cleave_meta"
			     " WHERE k = 'stream_index_upto'",
			     NULL, 0, &r);
	if (rc)
		return rc;
	s->indexed = cleave_rows_next(r) == 1 ? cleave_rows_int(r, 0) : 0;
	cleave_rows_close(r);
	s->indexed_pending = s->indexed;
	return index_flush_all(s);
}

/* Called by the writer at the start of a batch: flushes when the tail is
 * long (or `force`).  Returns 1 when it flushed, 0 when not, <0 error. */
static int sq_index_maybe(cl_wstore *base, int64_t head, bool force)
{
	sq_store *s = (sq_store *)base;
	if (head <= s->indexed ||
	    (!force && head - s->indexed < INDEX_BATCH))
		return 0;
	int rc = index_flush(s, head);
	return rc ? rc : 1;
}

static int sq_begin(cl_wstore *base)
{
	((sq_store *)base)->sp_depth = 0;
	return sq_exec(base, "BEGIN IMMEDIATE", NULL, 0, NULL);
}

static int sq_commit(cl_wstore *base)
{
	sq_store *s = (sq_store *)base;
	int rc = sq_exec(base, "COMMIT", NULL, 0, NULL);
	if (rc == 0)
		s->indexed = s->indexed_pending;
	else
		s->indexed_pending = s->indexed;
	if (rc == 0 && s->wal_frames >= WAL_RESTART_FRAMES) {
		/* durability is not at stake (the commit is in the WAL);
		 * a failure here only delays the restart */
		sqlite3_wal_checkpoint_v2(s->db, NULL,
					  SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		s->wal_frames = 0;
	}
	return rc;
}

static void sq_rollback(cl_wstore *base)
{
	sq_store *s = (sq_store *)base;
	if (!sqlite3_get_autocommit(s->db))
		sq_exec(base, "ROLLBACK", NULL, 0, NULL);
	s->indexed_pending = s->indexed;
}

static int sq_savepoint(cl_wstore *base)
{
	return sq_exec(base, "SAVEPOINT c", NULL, 0, NULL);
}

static int sq_release(cl_wstore *base)
{
	return sq_exec(base, "RELEASE c", NULL, 0, NULL);
}

static int sq_rollback_to(cl_wstore *base)
{
	int rc = sq_exec(base, "ROLLBACK TO c", NULL, 0, NULL);
	if (rc)
		return rc;
	return sq_exec(base, "RELEASE c", NULL, 0, NULL);
}

static int sq_stream_version(cl_wstore *base, const char *stream,
			     int64_t *out)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(stream)};
	/* the index only: the writer's cache answers for streams written
	 * since the last flush (see INDEX_BATCH) */
	int rc = sq_query(base,
			  "SELECT version FROM cleave_stream_index"
			  " WHERE stream = ? ORDER BY version DESC LIMIT 1",
			  a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	*out = rc == 1 ? cleave_rows_int(r, 0) : 0;
	cleave_rows_close(r);
	return rc < 0 ? rc : 0;
}

static int sq_append(cl_wstore *base, const cl_stored_event *ev)
{
	cleave_value a[] = {
		cleave_int(ev->position),
		cleave_text(ev->stream),
		cleave_int(ev->version),
		cleave_text(ev->type),
		cleave_int(ev->schema_version),
		cleave_textn(ev->data, ev->data_len),
		cleave_int(ev->ts_us),
		cleave_text(ev->trace_id),
		cleave_text(ev->command_id),
		cleave_text(ev->idem_key),
		cleave_text(ev->causation_id),
	};
	return sq_exec(base,
		       "INSERT OR FAIL INTO events(" EVENT_COLS ")"
		       " VALUES(?,?,?,?,?,?,?,?,?,?,?)",
		       a, 11, NULL);
}

static int sq_idem_get(cl_wstore *base, const char *key, cl_idem_rec *out)
{
	sq_store *s = (sq_store *)base;
	cleave_rows *r;
	cleave_value a[] = {cleave_text(key)};
	int rc = sq_query(base,
			  "SELECT request_hash, rc, position, response"
			  " FROM cleave_idempotency WHERE key = ?",
			  a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	if (rc != 1) {
		cleave_rows_close(r);
		return rc < 0 ? rc : CLEAVE_ENOTFOUND;
	}
	/* copied out so the cursor closes now (see cl_idem_rec lifetime) */
	size_t hlen, rlen;
	const char *h = cleave_rows_text(r, 0, &hlen);
	const char *resp = cleave_rows_text(r, 3, &rlen);
	cl_buf_reset(&s->idem);
	cl_buf_add(&s->idem, h ? h : "", h ? hlen : 0);
	cl_buf_addc(&s->idem, 0);
	cl_buf_add(&s->idem, resp ? resp : "", resp ? rlen : 0);
	out->rc = (int)cleave_rows_int(r, 1);
	out->position = cleave_rows_int(r, 2);
	cleave_rows_close(r);
	if (s->idem.oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	out->request_hash = s->idem.p;
	out->response = s->idem.p + hlen + 1;
	out->response_len = rlen;
	return 0;
}

static int sq_idem_put(cl_wstore *base, const char *key, const cl_idem_rec *rec)
{
	cleave_value a[] = {
		cleave_text(key),
		cleave_text(rec->request_hash),
		cleave_int(rec->rc),
		cleave_int(rec->position),
		cleave_textn(rec->response, rec->response_len),
	};
	return sq_exec(base,
		       "INSERT OR FAIL INTO cleave_idempotency"
		       "(key, request_hash, rc, position, response)"
		       " VALUES(?,?,?,?,?)",
		       a, 5, NULL);
}

static int sq_maintain(cl_wstore *base)
{
	sq_store *s = (sq_store *)base;
	if (!s->ckpt)
		return 0;
	int log = 0, done = 0;
	int src = sqlite3_wal_checkpoint_v2(s->ckpt, NULL,
					    SQLITE_CHECKPOINT_PASSIVE, &log,
					    &done);
	if (src != SQLITE_OK && src != SQLITE_BUSY)
		return cl_sqlite_err(s->ckpt, src, "checkpoint");
	if (src == SQLITE_OK && log < 0)
		return cl_err(CLEAVE_EIO, "checkpoint: the WAL is not open");
	return 0;
}

/* ---- readers ------------------------------------------------------------ */

static int sq_reader_open(cl_wstore *base, cl_wreader **out)
{
	sq_store *s = (sq_store *)base;
	sq_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	r->base.m = &cl_wstore_sqlite;
	r->base.store = base;
	int rc = open_db(s->path, true, &r->db);
	if (rc) {
		free(r);
		return rc;
	}
	/* no mmap: a reader's memory must not grow with the log */
	cl_sqlite_script(r->db, "PRAGMA cache_size=-1024;");
	r->cache = cl_stmt_cache_new(r->db);
	if (!r->cache) {
		sqlite3_close(r->db);
		free(r);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	*out = &r->base;
	return 0;
}

static void sq_reader_close(cl_wreader *base)
{
	sq_reader *r = (sq_reader *)base;
	if (!r)
		return;
	cl_stmt_cache_free(r->cache);
	sqlite3_close(r->db);
	free(r);
}

static int sq_reader_head(cl_wreader *base, int64_t *out)
{
	sq_reader *r = (sq_reader *)base;
	cleave_rows *rows;
	int rc = cl_sqlite_query(r->cache,
				 "SELECT coalesce(max(position), 0) FROM events",
				 NULL, 0, &rows);
	if (rc)
		return rc;
	rc = cleave_rows_next(rows);
	*out = rc == 1 ? cleave_rows_int(rows, 0) : 0;
	cleave_rows_close(rows);
	return rc < 0 ? rc : 0;
}

static int emit_rows(cleave_rows *rows, cl_stored_fn fn, void *arg)
{
	int rc;
	while ((rc = cleave_rows_next(rows)) == 1) {
		cl_stored_event ev;
		ev.position = cleave_rows_int(rows, 0);
		ev.stream = cleave_rows_text(rows, 1, NULL);
		ev.version = cleave_rows_int(rows, 2);
		ev.type = cleave_rows_text(rows, 3, NULL);
		ev.schema_version = (int)cleave_rows_int(rows, 4);
		ev.data = cleave_rows_text(rows, 5, &ev.data_len);
		ev.ts_us = cleave_rows_int(rows, 6);
		ev.trace_id = cleave_rows_text(rows, 7, NULL);
		ev.command_id = cleave_rows_text(rows, 8, NULL);
		ev.idem_key = cleave_rows_text(rows, 9, NULL);
		ev.causation_id = cleave_rows_text(rows, 10, NULL);
		rc = fn(arg, &ev);
		if (rc)
			break;
	}
	cleave_rows_close(rows);
	return rc < 0 ? rc : 0;
}

typedef struct count_arg {
	cl_stored_fn fn;
	void *arg;
	int64_t n;
} count_arg;

static int count_one(void *arg, const cl_stored_event *ev)
{
	count_arg *c = arg;
	c->n++;
	return c->fn(c->arg, ev);
}

/* One stream's events: the indexed ones through the stream index, then
 * the unindexed tail by a scan, in one read snapshot. */
static int read_stream(sq_reader *r, int64_t after, const char *stream,
		       int64_t lim, cl_stored_fn fn, void *arg)
{
	cleave_rows *rows;
	int64_t upto = 0;
	int rc = cl_sqlite_script(r->db, "BEGIN");
	if (rc)
		return rc;
	rc = cl_sqlite_query(r->cache,
			     "SELECT v FROM cleave_meta"
			     " WHERE k = 'stream_index_upto'",
			     NULL, 0, &rows);
	if (rc)
		goto out;
	if (cleave_rows_next(rows) == 1)
		upto = cleave_rows_int(rows, 0);
	cleave_rows_close(rows);
	count_arg c = {fn, arg, 0};
	if (after < upto) {
		cleave_value a[] = {cleave_text(stream), cleave_int(after),
				    cleave_int(upto), cleave_int(lim)};
		rc = cl_sqlite_query(r->cache,
				     "SELECT " EVENT_COLS_E
				     " FROM cleave_stream_index i"
				     " JOIN events e ON e.position = i.position"
				     " WHERE i.stream = ? AND i.position > ?"
				     " AND i.position <= ?"
				     " ORDER BY i.version LIMIT ?",
				     a, 4, &rows);
		if (rc || (rc = emit_rows(rows, count_one, &c)))
			goto out;
	}
	if (lim < 0 || c.n < lim) {
		cleave_value a[] = {cleave_int(after > upto ? after : upto),
				    cleave_text(stream),
				    cleave_int(lim < 0 ? -1 : lim - c.n)};
		rc = cl_sqlite_query(r->cache,
				     "SELECT " EVENT_COLS " FROM events"
				     " WHERE position > ? AND stream = ?"
				     " ORDER BY position LIMIT ?",
				     a, 3, &rows);
		if (!rc)
			rc = emit_rows(rows, count_one, &c);
	}
out:
	cl_sqlite_script(r->db, "COMMIT");
	return rc;
}

static int sq_read(cl_wreader *base, int64_t after, const char *stream,
		   size_t limit, cl_stored_fn fn, void *arg)
{
	sq_reader *r = (sq_reader *)base;
	cleave_rows *rows;
	int64_t lim = limit ? (int64_t)limit : -1;
	int rc;
	if (stream)
		return read_stream(r, after, stream, lim, fn, arg);
	{
		cleave_value a[] = {cleave_int(after), cleave_int(lim)};
		rc = cl_sqlite_query(r->cache,
				     "SELECT " EVENT_COLS " FROM events"
				     " WHERE position > ?"
				     " ORDER BY position LIMIT ?",
				     a, 2, &rows);
	}
	if (rc)
		return rc;
	return emit_rows(rows, fn, arg);
}

static int sq_read_types(cl_wreader *base, int64_t after, int64_t upto,
			 const char *const *types, size_t limit,
			 cl_stored_fn fn, void *arg)
{
	sq_reader *r = (sq_reader *)base;
	cleave_value a[2 + 32 + 1];
	int n = 0, nt = 0;
	char sql[1024];
	int len = snprintf(sql, sizeof(sql),
			   "SELECT " EVENT_COLS " FROM events"
			   " WHERE position > ? AND position <= ?");
	a[n++] = cleave_int(after);
	a[n++] = cleave_int(upto);
	for (const char *const *t = types; t && *t && nt < 32; t++, nt++) {
		len += snprintf(sql + len, sizeof(sql) - (size_t)len, "%s?",
				nt ? "," : " AND type IN (");
		a[n++] = cleave_text(*t);
	}
	if (types && types[nt])
		return cl_err(CLEAVE_EINVAL, "more than 32 event types");
	len += snprintf(sql + len, sizeof(sql) - (size_t)len,
			"%s ORDER BY position LIMIT ?", nt ? ")" : "");
	a[n++] = cleave_int(limit ? (int64_t)limit : -1);
	cleave_rows *rows;
	int rc = cl_sqlite_query(r->cache, sql, a, n, &rows);
	if (rc)
		return rc;
	return emit_rows(rows, fn, arg);
}

static int sq_trace(cl_wreader *base, const char *id, cl_stored_fn fn,
		    void *arg)
{
	sq_reader *r = (sq_reader *)base;
	cleave_rows *rows;
	cleave_value a[] = {cleave_text(id), cleave_text(id)};
	int rc = cl_sqlite_query(r->cache,
				 "SELECT " EVENT_COLS " FROM events"
				 " WHERE trace_id = ? OR command_id = ?"
				 " ORDER BY position",
				 a, 2, &rows);
	if (rc)
		return rc;
	return emit_rows(rows, fn, arg);
}

const cl_wstore_methods cl_wstore_sqlite = {
	.version = CL_WSTORE_V1,
	.kind = "sqlite",
	.flags = CL_WSTORE_STMT_ATOMIC,
	.open = sq_open,
	.close = sq_close,
	.migrate = sq_migrate,
	.head = sq_head,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.savepoint = sq_savepoint,
	.release = sq_release,
	.rollback_to = sq_rollback_to,
	.exec = sq_exec,
	.query = sq_query,
	.stream_version = sq_stream_version,
	.index_maybe = sq_index_maybe,
	.append = sq_append,
	.idem_get = sq_idem_get,
	.idem_put = sq_idem_put,
	.maintain = sq_maintain,
	.reader_open = sq_reader_open,
	.reader_close = sq_reader_close,
	.reader_head = sq_reader_head,
	.read = sq_read,
	.trace = sq_trace,
	.read_types = sq_read_types,
};
