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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite/sqlite_util.h"
#include "core/util.h"
#include "write/wstore_int.h"

typedef struct sq_store {
	cl_wstore base;
	sqlite3 *db;   /* the writer's connection */
	cl_stmt_cache *cache;
	sqlite3 *ckpt; /* maintain()'s connection */
	char *path;
	bool read_only;
	int sp_depth;
	cleave_buf idem; /* the last idempotency record read */
	int wal_frames; /* frames in the WAL after the last commit */
	int64_t indexed;         /* the stream index covers events <= this */
	int64_t indexed_pending; /* what the open transaction indexed */
} sq_store;

/* The log's stream index.  A unique index on events(stream, version) puts
 * each event of a batch on another leaf page when the batch spans many
 * streams, and the WAL writes every dirty page whole: 3 KB of WAL per
 * 250-byte event, most of what a group commit writes and fsyncs.  So the
 * index is built off the event's own commit: every INDEX_BATCH events the
 * writer indexes the new ones inside one of its batches, as one row per
 * stream (cleave_stream_chunks: the stream, its first and last version in
 * the chunk, and the positions of those versions, delta-encoded) — a few
 * hundred B-tree inserts per flush instead of one per event.  Until then
 * the writer's stream-version cache holds the versions of the streams
 * written since the last flush (the engine guarantees it: it clears the
 * cache only right after a flush), versions stay unique by construction
 * (one writer; each flush checks that every stream's versions go on from
 * its last chunk without a gap or a repeat), and stream reads add the
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
	"CREATE TABLE IF NOT EXISTS cleave_stream_chunks("
	" stream TEXT NOT NULL, first_version INTEGER NOT NULL,"
	" last_version INTEGER NOT NULL, last_position INTEGER NOT NULL,"
	" positions BLOB NOT NULL, PRIMARY KEY(stream, first_version))"
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

static int open_db(const char *path, bool ro, sqlite3 **out)
{
	int flags = SQLITE_OPEN_NOMUTEX |
		    (ro ? SQLITE_OPEN_READONLY
			: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	sqlite3 *db = NULL;
	int src = cl_sqlite_open(path, flags, &db);
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
static int sq_stream_version(cl_wstore *base, const char *stream,
			     int64_t *out);
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
	cleave_buf_free(&s->idem);
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

/* A migration's statements, outside the writer's batches. */
static int sq_script(cl_wstore *base, const char *sql)
{
	return cl_sqlite_script(((sq_store *)base)->db, sql);
}

static int sq_migration_commit(cl_wstore *base)
{
	return sq_script(base, "COMMIT");
}

static void sq_migration_abort(cl_wstore *base)
{
	sq_script(base, "ROLLBACK");
}

static int sq_migrate(cl_wstore *base, const char *domain,
		      const char *const *migrations)
{
	const cl_ws_migrator mg = {
		.read_only = ((sq_store *)base)->read_only,
		.where = "this data directory",
		.instead = "--data",
		.script = sq_script,
		.begin_sql = "BEGIN IMMEDIATE",
		.commit = sq_migration_commit,
		.abort = sq_migration_abort,
	};
	return cl_ws_migrate(base, &mg, domain, migrations);
}

static int sq_head(cl_wstore *base, int64_t *out)
{
	cleave_rows *r;
	int rc = sq_query(base, CL_WS_HEAD_SQL, NULL, 0, &r);
	return rc ? rc : cl_ws_first_int(r, out);
}

/* ---- the stream index's chunks ----------------------------------------- */

typedef struct ix_ent {
	uint64_t hash;   /* of the stream id: groups sort by it, not by name */
	uint32_t stream; /* offset of the NUL-terminated id in the text buf */
	int64_t version, position;
} ix_ent;

static const char *ix_text; /* qsort has no argument: the flush's buffer */

/* By stream (hash first, the name only on a tie), then position. */
static int ix_cmp(const void *pa, const void *pb)
{
	const ix_ent *a = pa, *b = pb;
	if (a->hash != b->hash)
		return a->hash < b->hash ? -1 : 1;
	if (a->stream != b->stream) {
		int c = strcmp(ix_text + a->stream, ix_text + b->stream);
		if (c)
			return c;
	}
	return (a->position > b->position) - (a->position < b->position);
}

static void varint_put(cleave_buf *b, uint64_t v)
{
	unsigned char x[10];
	int n = 0;
	do {
		x[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			x[n] |= 0x80;
		n++;
	} while (v);
	cleave_buf_add(b, x, (size_t)n);
}

/* Decodes one varint from p[0..end); NULL when it runs past the end. */
static const unsigned char *varint_get(const unsigned char *p,
				       const unsigned char *end, uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; p < end && shift < 64; shift += 7) {
		unsigned char c = *p++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return p;
		}
	}
	return NULL;
}

/* One stream's group of the flush: checks that it goes on from the
 * stream's last chunk and inserts it. */
static int ix_put_chunk(sq_store *s, const char *stream, const ix_ent *g,
			int n, cleave_buf *blob)
{
	sqlite3_stmt *st;
	int64_t last = 0;
	int rc = sq_stream_version(&s->base, stream, &last);
	if (rc)
		return rc;
	for (int i = 0; i < n; i++)
		if (g[i].version != last + 1 + i)
			return cl_err(CLEAVE_ECORRUPT,
				      "the log's stream %s goes from version "
				      "%lld to %lld at position %lld",
				      stream, (long long)(last + i),
				      (long long)g[i].version,
				      (long long)g[i].position);
	cleave_buf_reset(blob);
	int64_t prev = 0;
	for (int i = 0; i < n; i++) {
		varint_put(blob, (uint64_t)(g[i].position - prev));
		prev = g[i].position;
	}
	if (blob->oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	if ((rc = cl_stmt_get(s->cache,
			      "INSERT INTO cleave_stream_chunks(stream,"
			      " first_version, last_version, last_position,"
			      " positions) VALUES(?,?,?,?,?)",
			      &st)))
		return rc;
	sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, g[0].version);
	sqlite3_bind_int64(st, 3, g[n - 1].version);
	sqlite3_bind_int64(st, 4, g[n - 1].position);
	sqlite3_bind_blob(st, 5, blob->p, (int)blob->len, SQLITE_STATIC);
	int src = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (src != SQLITE_DONE)
		return src == SQLITE_CONSTRAINT_PRIMARYKEY
			       ? cl_err(CLEAVE_ECORRUPT,
					"the log's stream %s has version %lld "
					"twice",
					stream, (long long)g[0].version)
			       : cl_sqlite_err(s->db, src, "stream index");
	return 0;
}

/* Indexes the events after s->indexed up to `upto` inside the open
 * transaction; s->indexed follows on commit. */
static int index_flush(sq_store *s, int64_t upto)
{
	cleave_buf text, ents, blob;
	cleave_buf_init(&text);
	cleave_buf_init(&ents);
	cleave_buf_init(&blob);
	cleave_rows *r;
	cleave_value a[] = {cleave_int(s->indexed), cleave_int(upto)};
	int rc = sq_query(&s->base,
			  "SELECT stream, version, position FROM events"
			  " WHERE position > ? AND position <= ?"
			  " ORDER BY position",
			  a, 2, &r);
	if (rc)
		goto out;
	while ((rc = cleave_rows_next(r)) == 1) {
		size_t len;
		const char *id = cleave_rows_text(r, 0, &len);
		ix_ent e = {cl_hash(id ? id : "", id ? len : 0),
			    (uint32_t)text.len, cleave_rows_int(r, 1),
			    cleave_rows_int(r, 2)};
		cleave_buf_add(&text, id ? id : "", id ? len : 0);
		cleave_buf_addc(&text, 0);
		cleave_buf_add(&ents, &e, sizeof(e));
	}
	cleave_rows_close(r);
	if (rc < 0)
		goto out;
	if (text.oom || ents.oom || text.len > UINT32_MAX) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto out;
	}
	ix_ent *e = (ix_ent *)(void *)ents.p;
	size_t n = ents.len / sizeof(ix_ent);
	ix_text = text.p;
	qsort(e, n, sizeof(*e), ix_cmp);
	rc = 0;
	for (size_t i = 0, j; i < n && !rc; i = j) {
		const char *id = text.p + e[i].stream;
		for (j = i + 1; j < n && e[j].hash == e[i].hash &&
				!strcmp(text.p + e[j].stream, id);
		     j++)
			;
		rc = ix_put_chunk(s, id, e + i, (int)(j - i), &blob);
	}
	if (rc)
		goto out;
	cleave_value b[] = {cleave_int(upto)};
	rc = sq_exec(&s->base,
		     "INSERT INTO cleave_meta(k, v)"
		     " VALUES('stream_chunks_upto', ?)"
		     " ON CONFLICT(k) DO UPDATE SET v = excluded.v",
		     b, 1, NULL);
	if (rc == 0)
		s->indexed_pending = upto;
out:
	cleave_buf_free(&text);
	cleave_buf_free(&ents);
	cleave_buf_free(&blob);
	return rc;
}

/* How far the stream index reaches: events <= *out are in its chunks. */
static int index_upto(cl_stmt_cache *c, int64_t *out)
{
	cleave_rows *r;
	int rc = cl_sqlite_query(c,
				 "SELECT v FROM cleave_meta"
				 " WHERE k = 'stream_chunks_upto'",
				 NULL, 0, &r);
	return rc ? rc : cl_ws_first_int(r, out);
}

/* Everything, in a transaction of its own (open, close). */
static int index_flush_all(sq_store *s)
{
	int64_t head = 0;
	cleave_rows *r;
	int rc = cl_sqlite_query(s->cache, CL_WS_HEAD_SQL, NULL, 0, &r);
	if (rc || (rc = cl_ws_first_int(r, &head)))
		return rc;
	/* in windows, so a long unindexed log (an old data directory)
	 * needs bounded memory */
	while (s->indexed < head) {
		int64_t upto = head - s->indexed > 4 * INDEX_BATCH
				       ? s->indexed + 4 * INDEX_BATCH
				       : head;
		if ((rc = sq_exec(&s->base, "BEGIN IMMEDIATE", NULL, 0, NULL)))
			return rc;
		if ((rc = index_flush(s, upto)) ||
		    (rc = sq_exec(&s->base, "COMMIT", NULL, 0, NULL))) {
			sq_exec(&s->base, "ROLLBACK", NULL, 0, NULL);
			s->indexed_pending = s->indexed;
			return rc;
		}
		s->indexed = s->indexed_pending;
	}
	return 0;
}

static int index_load(sq_store *s)
{
	/* a log from before the chunked index: drop the old index (a unique
	 * index on events, then a row per event) and index everything once */
	int rc = cl_sqlite_script(s->db,
				  "DROP INDEX IF EXISTS events_stream;"
				  "DROP TABLE IF EXISTS cleave_stream_index;"
				  "DELETE FROM cleave_meta"
				  " WHERE k = 'stream_index_upto';");
	if (rc || (rc = index_upto(s->cache, &s->indexed)))
		return rc;
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
			  "SELECT last_version FROM cleave_stream_chunks"
			  " WHERE stream = ? ORDER BY first_version DESC"
			  " LIMIT 1",
			  a, 1, &r);
	return rc ? rc : cl_ws_first_int(r, out);
}

static int sq_append(cl_wstore *base, const cl_stored_event *ev)
{
	cleave_value a[CL_WS_EVENT_NCOLS];
	cl_ws_event_values(ev, a);
	return sq_exec(base,
		       "INSERT OR FAIL INTO events(" CL_WS_EVENT_COLS ")"
		       " VALUES" CL_WS_EVENT_PARAMS,
		       a, CL_WS_EVENT_NCOLS, NULL);
}

/* A group's events, APPEND_ROWS rows per statement: one statement run
 * instead of one per event.  The statement text is built once (the
 * statement cache knows a statement by its text's address). */
#define APPEND_ROWS 32
static char append_sql[64 + sizeof(CL_WS_EVENT_COLS) +
		       APPEND_ROWS * sizeof("," CL_WS_EVENT_PARAMS)];
static pthread_once_t append_once = PTHREAD_ONCE_INIT;

static void append_sql_init(void)
{
	int n = snprintf(append_sql, sizeof(append_sql),
			 "INSERT OR FAIL INTO events(" CL_WS_EVENT_COLS ")"
			 " VALUES");
	for (int i = 0; i < APPEND_ROWS; i++)
		n += snprintf(append_sql + n, sizeof(append_sql) - (size_t)n,
			      "%s" CL_WS_EVENT_PARAMS, i ? "," : "");
}

static int sq_append_many(cl_wstore *base, const cl_stored_event *ev, int n)
{
	cleave_value a[CL_WS_EVENT_NCOLS * APPEND_ROWS];
	int i = 0, rc = 0;
	pthread_once(&append_once, append_sql_init);
	for (; n - i >= APPEND_ROWS && !rc; i += APPEND_ROWS) {
		for (int k = 0; k < APPEND_ROWS; k++)
			cl_ws_event_values(&ev[i + k],
					   a + CL_WS_EVENT_NCOLS * k);
		rc = sq_exec(base, append_sql, a,
			     CL_WS_EVENT_NCOLS * APPEND_ROWS, NULL);
	}
	for (; i < n && !rc; i++)
		rc = sq_append(base, &ev[i]);
	return rc;
}

static int sq_idem_get(cl_wstore *base, const char *key, cl_idem_rec *out)
{
	return cl_ws_idem_get(base, &((sq_store *)base)->idem, key, out);
}

static int sq_idem_put(cl_wstore *base, const char *key, const cl_idem_rec *rec)
{
	cleave_value a[CL_WS_IDEM_NCOLS];
	cl_ws_idem_values(key, rec, a);
	return sq_exec(base,
		       "INSERT OR FAIL INTO cleave_idempotency"
		       "(" CL_WS_IDEM_COLS ") VALUES" CL_WS_IDEM_PARAMS,
		       a, CL_WS_IDEM_NCOLS, NULL);
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
	int rc = cl_sqlite_query(r->cache, CL_WS_HEAD_SQL, NULL, 0, &rows);
	return rc ? rc : cl_ws_first_int(rows, out);
}

/* Runs a query of events (CL_WS_SELECT_EVENTS ...) and hands its rows to
 * fn, whose stop is a success. */
static int read_rows(sq_reader *r, const char *sql, const cleave_value *a,
		     int n, cl_stored_fn fn, void *arg)
{
	cleave_rows *rows;
	int rc = cl_sqlite_query(r->cache, sql, a, n, &rows);
	if (rc)
		return rc;
	rc = cl_ws_emit(rows, fn, arg, NULL, NULL);
	return rc < 0 ? rc : 0;
}

typedef struct count_arg {
	cl_stored_fn fn;
	void *arg;
	int64_t n;
	bool stopped; /* the callback said stop (1) */
} count_arg;

static int count_one(void *arg, const cl_stored_event *ev)
{
	count_arg *c = arg;
	c->n++;
	int rc = c->fn(c->arg, ev);
	if (rc > 0)
		c->stopped = true;
	return rc;
}

/* One stream's events: the indexed ones through the stream index's
 * chunks, then the unindexed tail by a scan, in one read snapshot. */
static int read_stream(sq_reader *r, int64_t after, const char *stream,
		       int64_t lim, cl_stored_fn fn, void *arg)
{
	int64_t upto = 0;
	cleave_buf pos;
	cleave_buf_init(&pos);
	int rc = cl_sqlite_script(r->db, "BEGIN");
	if (rc)
		return rc;
	if ((rc = index_upto(r->cache, &upto)))
		goto out;
	count_arg c = {fn, arg, 0, false};
	/* a chunk at a time: its positions are copied out and its cursor
	 * reset before the events are read */
	int64_t from_version = 0; /* the last chunk read began here */
	while (after < upto && (lim < 0 || c.n < lim) && !c.stopped) {
		sqlite3_stmt *st;
		if ((rc = cl_stmt_get(r->cache,
				      "SELECT first_version, positions"
				      " FROM cleave_stream_chunks"
				      " WHERE stream = ? AND first_version > ?"
				      " AND last_position > ?"
				      " ORDER BY first_version LIMIT 1",
				      &st)))
			goto out;
		sqlite3_bind_text(st, 1, stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, from_version);
		sqlite3_bind_int64(st, 3, after);
		int src = sqlite3_step(st);
		if (src != SQLITE_ROW) {
			if (src != SQLITE_DONE)
				rc = cl_sqlite_err(r->db, src, "stream index");
			sqlite3_reset(st);
			if (rc)
				goto out;
			break;
		}
		from_version = sqlite3_column_int64(st, 0);
		const unsigned char *p = sqlite3_column_blob(st, 1);
		const unsigned char *end = p + sqlite3_column_bytes(st, 1);
		cleave_buf_reset(&pos);
		int64_t at = 0;
		while (p && p < end) {
			uint64_t d;
			if (!(p = varint_get(p, end, &d)) || d == 0) {
				rc = cl_err(CLEAVE_ECORRUPT,
					    "stream index of %s: bad chunk at "
					    "version %lld",
					    stream, (long long)from_version);
				break;
			}
			at += (int64_t)d;
			if (at > after && at <= upto)
				cleave_buf_add(&pos, &at, sizeof(at));
		}
		sqlite3_reset(st);
		if (!rc && pos.oom)
			rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		if (rc)
			goto out;
		const int64_t *pp = (const int64_t *)(void *)pos.p;
		size_t np = pos.len / sizeof(int64_t);
		for (size_t i = 0; i < np && (lim < 0 || c.n < lim) && !c.stopped;
		     i++) {
			cleave_value a[] = {cleave_int(pp[i])};
			if ((rc = read_rows(r,
					    CL_WS_SELECT_EVENTS
					    " WHERE position = ?",
					    a, 1, count_one, &c)))
				goto out;
		}
	}
	if ((lim < 0 || c.n < lim) && !c.stopped) {
		cleave_value a[] = {cleave_int(after > upto ? after : upto),
				    cleave_text(stream),
				    cleave_int(lim < 0 ? -1 : lim - c.n)};
		rc = read_rows(r,
			       CL_WS_SELECT_EVENTS
			       " WHERE position > ? AND stream = ?"
			       " ORDER BY position LIMIT ?",
			       a, 3, count_one, &c);
	}
out:
	cleave_buf_free(&pos);
	cl_sqlite_script(r->db, "COMMIT");
	return rc;
}

static int sq_read(cl_wreader *base, int64_t after, const char *stream,
		   size_t limit, cl_stored_fn fn, void *arg)
{
	sq_reader *r = (sq_reader *)base;
	int64_t lim = limit ? (int64_t)limit : -1;
	if (stream)
		return read_stream(r, after, stream, lim, fn, arg);
	cleave_value a[] = {cleave_int(after), cleave_int(lim)};
	return read_rows(r,
			 CL_WS_SELECT_EVENTS
			 " WHERE position > ?"
			 " ORDER BY position LIMIT ?",
			 a, 2, fn, arg);
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
			   CL_WS_SELECT_EVENTS
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
	return read_rows(r, sql, a, n, fn, arg);
}

static int sq_trace(cl_wreader *base, const char *id, cl_stored_fn fn,
		    void *arg)
{
	cleave_value a[] = {cleave_text(id), cleave_text(id)};
	return read_rows((sq_reader *)base,
			 CL_WS_SELECT_EVENTS
			 " WHERE trace_id = ? OR command_id = ?"
			 " ORDER BY position",
			 a, 2, fn, arg);
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
	.append_many = sq_append_many,
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
