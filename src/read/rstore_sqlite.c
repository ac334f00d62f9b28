/*
 * rstore_sqlite.c — the "sqlite" read store: one SQLite database
 * (path/read.db, WAL) per copy, holding tables the projection defines
 * (FTS5 available) plus two of ours:
 *
 *   __cleave(k TEXT PRIMARY KEY, v)      k = 'checkpoint' → last position
 *   __cleave_dead(position INTEGER PRIMARY KEY, type, stream, error,
 *                 data, ts)              events skipped by the poison policy
 *
 * Writes: one writer connection with a statement cache, BEGIN IMMEDIATE ..
 * COMMIT; wmu is held from begin to commit/abort (one write transaction at
 * a time).  Reads: a pool of read-only connections, each with its own
 * statement cache, created on demand up to SQ_POOL_MAX; a read transaction
 * takes one, runs BEGIN (the snapshot starts at its first read) and gives
 * it back at commit/abort.
 *
 * This store has no key/value methods: get/put/del/scan and the structures
 * built on them answer CLEAVE_ENOTSUP.  Projections that want them use
 * "lmdb"; this store is for SQL and full-text search.
 *
 * Cursors (cleave_rows) from query must be closed before the transaction
 * ends: they live in the connection's statement cache.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sqlite/sqlite_util.h"
#include "core/util.h"
#include "read/rstore_int.h"

#define SQ_FILE         "read.db"
#define SQ_POOL_MAX     64   /* read connections per store */
#define SQ_POOL_WAIT_MS 5000 /* wait for a free one, then EBUSY */
#define SQ_BUSY_MS      5000
#define SQ_MMAP_BYTES   (256 * 1024 * 1024)

typedef struct sq_store sq_store;

/* A connection and the transaction running on it. */
typedef struct sq_conn {
	cleave_rtx tx; /* first: cleave_rtx* ↔ sq_conn* */
	sq_store *s;
	sqlite3 *db;
	cl_stmt_cache *cache;
	struct sq_conn *next;
} sq_conn;

struct sq_store {
	cl_rstore base; /* first */
	char *file;
	bool read_only;

	pthread_mutex_t wmu; /* held during the write transaction */
	sq_conn w;           /* the writer; db NULL when read-only */

	pthread_mutex_t pmu; /* the read pool */
	pthread_cond_t pcv;
	sq_conn *idle;
	int nconn; /* read connections in existence */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS __cleave(k TEXT PRIMARY KEY, v);"
    "CREATE TABLE IF NOT EXISTS __cleave_dead("
    "position INTEGER PRIMARY KEY, type TEXT, stream TEXT, error TEXT, "
    "data TEXT, ts INTEGER);";

/* ---- connections --------------------------------------------------------- */

static void conn_close(sq_conn *c)
{
	if (!c)
		return;
	cl_stmt_cache_free(c->cache);
	c->cache = NULL;
	if (c->db)
		sqlite3_close_v2(c->db);
	c->db = NULL;
}

static int conn_open(sq_store *s, sq_conn *c, bool write, bool nosync)
{
	int flags = SQLITE_OPEN_NOMUTEX |
	            (write ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
	                   : SQLITE_OPEN_READONLY);
	int src = cl_sqlite_open(s->file, flags, &c->db);
	int rc;
	if (src != SQLITE_OK) {
		rc = cl_sqlite_err(c->db, src, "open");
		cl_err(rc, "sqlite open %s: %s", s->file,
		       c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(src));
		goto fail;
	}
	sqlite3_busy_timeout(c->db, SQ_BUSY_MS);
	sqlite3_extended_result_codes(c->db, 1);
	if (write) {
		rc = cl_sqlite_script(c->db, nosync
		                                 ? "PRAGMA journal_mode=WAL;"
		                                   "PRAGMA synchronous=OFF;"
		                                   "PRAGMA foreign_keys=OFF;"
		                                 : "PRAGMA journal_mode=WAL;"
		                                   "PRAGMA synchronous=NORMAL;"
		                                   "PRAGMA foreign_keys=OFF;");
		if (rc)
			goto fail;
		if ((rc = cl_sqlite_script(c->db, schema)))
			goto fail;
	}
	char mm[64];
	snprintf(mm, sizeof(mm), "PRAGMA mmap_size=%d;", SQ_MMAP_BYTES);
	if ((rc = cl_sqlite_script(c->db, mm)))
		goto fail;
	c->cache = cl_stmt_cache_new(c->db);
	if (!c->cache) {
		rc = cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
		goto fail;
	}
	c->s = s;
	c->tx.m = &cl_rstore_sqlite;
	c->tx.store = &s->base;
	c->tx.write = write;
	return 0;
fail:
	conn_close(c);
	return rc;
}

/* ---- open / close -------------------------------------------------------- */

static void sq_close(cl_rstore *base)
{
	sq_store *s = (sq_store *)base;
	if (!s)
		return;
	for (sq_conn *c = s->idle, *n; c; c = n) {
		n = c->next;
		conn_close(c);
		free(c);
	}
	/* A closed store is on disk whatever the commit mode: the engine
	 * marks a clean shutdown only after closing its stores. */
	if (s->w.db)
		cl_sqlite_script(s->w.db, "PRAGMA synchronous=FULL;"
					  "PRAGMA wal_checkpoint(TRUNCATE);");
	conn_close(&s->w);
	pthread_mutex_destroy(&s->wmu);
	pthread_mutex_destroy(&s->pmu);
	pthread_cond_destroy(&s->pcv);
	free(s->file);
	free(s->base.path);
	free(s);
}

static int sq_open(const char *path, const cl_rstore_opts *o, cl_rstore **out)
{
	static const cl_rstore_opts defaults;
	sq_store *s;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!o)
		o = &defaults;
	if (!path || !*path)
		return cl_err(CLEAVE_EINVAL, "sqlite: no path");
	if (!o->read_only && (rc = cl_mkdirs(path)))
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
	cl_rstore_locks_init(&s->pmu, &s->wmu);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->pcv, &ca);
	pthread_condattr_destroy(&ca);
	s->base.m = &cl_rstore_sqlite;
	s->base.path = cl_strdup(path);
	s->read_only = o->read_only;
	size_t n = strlen(path) + sizeof(SQ_FILE) + 1;
	s->file = malloc(n);
	if (!s->base.path || !s->file) {
		rc = cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
		goto fail;
	}
	snprintf(s->file, n, "%s/" SQ_FILE, path);
	if (!o->read_only && (rc = conn_open(s, &s->w, true, o->nosync)))
		goto fail;
	if (o->read_only) {
		/* Fail now, not at the first query, when there is no copy. */
		sq_conn probe = {0};
		if ((rc = conn_open(s, &probe, false, false)))
			goto fail;
		conn_close(&probe);
	}
	*out = &s->base;
	return 0;
fail:
	sq_close(&s->base);
	return rc;
}

static int sq_drop(const char *path)
{
	return cl_rmtree(path);
}

/* ---- transactions -------------------------------------------------------- */

static int pool_take(sq_store *s, sq_conn **out)
{
	struct timespec dl;
	int rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += SQ_POOL_WAIT_MS / 1000;
	dl.tv_nsec += (long)(SQ_POOL_WAIT_MS % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->pmu);
	while (!s->idle && s->nconn >= SQ_POOL_MAX) {
		if (pthread_cond_timedwait(&s->pcv, &s->pmu, &dl) ==
		    ETIMEDOUT) {
			pthread_mutex_unlock(&s->pmu);
			return cl_err(CLEAVE_EBUSY,
			              "sqlite %s: all %d read connections "
			              "busy for %d ms",
			              s->base.path, SQ_POOL_MAX,
			              SQ_POOL_WAIT_MS);
		}
	}
	sq_conn *c = s->idle;
	if (c) {
		s->idle = c->next;
		pthread_mutex_unlock(&s->pmu);
		*out = c;
		return 0;
	}
	s->nconn++; /* reserve the slot, open outside the lock */
	pthread_mutex_unlock(&s->pmu);
	c = calloc(1, sizeof(*c));
	if (!c)
		rc = cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
	else
		rc = conn_open(s, c, false, false);
	if (rc) {
		free(c);
		pthread_mutex_lock(&s->pmu);
		s->nconn--;
		pthread_cond_signal(&s->pcv);
		pthread_mutex_unlock(&s->pmu);
		return rc;
	}
	*out = c;
	return 0;
}

/* Gives c back, or closes it when it is still inside a transaction
 * (ending it failed) so the next user never inherits one. */
static void pool_give(sq_store *s, sq_conn *c)
{
	bool bad = !sqlite3_get_autocommit(c->db);
	if (bad) {
		conn_close(c);
		free(c);
	}
	pthread_mutex_lock(&s->pmu);
	if (bad) {
		s->nconn--;
	} else {
		c->next = s->idle;
		s->idle = c;
	}
	pthread_cond_signal(&s->pcv);
	pthread_mutex_unlock(&s->pmu);
}

static int sq_begin(cl_rstore *base, bool write, cleave_rtx **out)
{
	sq_store *s = (sq_store *)base;
	sq_conn *c = NULL;
	int rc;
	*out = NULL;
	if (write) {
		if (s->read_only)
			return cl_err(CLEAVE_EREADONLY,
			              "sqlite %s: opened read-only",
			              s->base.path);
		/* Error-checking: a nested begin fails, never self-waits. */
		if (pthread_mutex_lock(&s->wmu))
			return cl_err(CLEAVE_EBUSY,
			              "sqlite %s: this thread already has the "
			              "write transaction",
			              s->base.path);
		rc = cl_sqlite_exec(s->w.cache, "BEGIN IMMEDIATE", NULL, 0,
		                    NULL);
		if (rc) {
			pthread_mutex_unlock(&s->wmu);
			return rc;
		}
		*out = &s->w.tx;
		return 0;
	}
	if ((rc = pool_take(s, &c)))
		return rc;
	if ((rc = cl_sqlite_exec(c->cache, "BEGIN", NULL, 0, NULL))) {
		pool_give(s, c);
		return rc;
	}
	*out = &c->tx;
	return 0;
}

static int tx_end(cleave_rtx *tx, bool commit)
{
	sq_conn *c = (sq_conn *)tx;
	sq_store *s = c->s;
	int rc = 0;
	if (commit)
		rc = cl_sqlite_exec(c->cache, "COMMIT", NULL, 0, NULL);
	/* A failed statement may already have rolled the transaction back. */
	if ((!commit || rc) && !sqlite3_get_autocommit(c->db))
		cl_sqlite_exec(c->cache, "ROLLBACK", NULL, 0, NULL);
	if (tx->write)
		pthread_mutex_unlock(&s->wmu);
	else
		pool_give(s, c);
	return rc;
}

static int sq_commit(cleave_rtx *tx)
{
	return tx_end(tx, true);
}

static void sq_abort(cleave_rtx *tx)
{
	if (tx) {
		/* Keep the caller's error message: abort follows a failure. */
		char keep[512];
		snprintf(keep, sizeof(keep), "%s", cleave_errmsg());
		tx_end(tx, false);
		cl_err(0, "%s", keep);
	}
}

/* ---- SQL ----------------------------------------------------------------- */

static int sq_exec(cleave_rtx *tx, const char *sql, const cleave_value *args,
                   int nargs, int64_t *changes)
{
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY,
		              "sqlite: exec in a read-only transaction");
	return cl_sqlite_exec(((sq_conn *)tx)->cache, sql, args, nargs,
	                      changes);
}

static int sq_query(cleave_rtx *tx, const char *sql, const cleave_value *args,
                    int nargs, cleave_rows **out)
{
	return cl_sqlite_query(((sq_conn *)tx)->cache, sql, args, nargs, out);
}

/* ---- full-text queries ---------------------------------------------------- */

/* The connection's FTS5 API (SQLite's documented way: SELECT fts5(?1)
 * with a pointer binding), or NULL. */
static fts5_api *fts5_of(sqlite3 *db)
{
	fts5_api *api = NULL;
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) ==
	    SQLITE_OK) {
		sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
		sqlite3_step(st);
	}
	sqlite3_finalize(st);
	return api;
}

typedef struct fts_ctx {
	cleave_buf *out;
	int words, max;
} fts_ctx;

/* Each token, as the tokenizer folded it, becomes a quoted FTS5 string
 * ("" inside doubled): syntax in the user's text never reaches FTS5. */
static int fts_token(void *arg, int flags, const char *tok, int n, int start,
                     int end)
{
	fts_ctx *x = arg;
	if (flags & FTS5_TOKEN_COLOCATED)
		return SQLITE_OK; /* a synonym of the token before */
	if (++x->words > x->max)
		return SQLITE_DONE;
	if (x->out->len)
		cleave_buf_addc(x->out, ' ');
	cleave_buf_addc(x->out, '"');
	for (int i = 0; i < n; i++) {
		if (tok[i] == '"')
			cleave_buf_addc(x->out, '"');
		cleave_buf_addc(x->out, tok[i]);
	}
	cleave_buf_addc(x->out, '"');
	return x->out->oom ? SQLITE_NOMEM : SQLITE_OK;
}

static int sq_fts_query(cleave_rtx *tx, const char *text, size_t n,
                        int max_words, cleave_buf *out, int *nwords)
{
	sq_conn *c = (sq_conn *)tx;
	fts5_api *api = fts5_of(c->db);
	fts5_tokenizer tk;
	void *ud = NULL;
	Fts5Tokenizer *t = NULL;
	if (!api || api->xFindTokenizer(api, "unicode61", &ud, &tk) ||
	    tk.xCreate(ud, NULL, 0, &t))
		return cl_err(CLEAVE_ENOTSUP,
		              "sqlite: no FTS5 unicode61 tokenizer");
	fts_ctx x = {out, 0, max_words};
	cleave_buf_reset(out);
	int src = tk.xTokenize(t, &x, FTS5_TOKENIZE_QUERY, text, (int)n,
	                       fts_token);
	tk.xDelete(t);
	if (x.words > max_words)
		return cl_err(CLEAVE_EINVAL, "more than %d words", max_words);
	if (src != SQLITE_OK || out->oom)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	if (nwords)
		*nwords = x.words;
	return 0;
}

/* ---- checkpoint, dead letters -------------------------------------------- */

/* Runs sql (one int64 argument or none) and reads column 0 of its row. */
static int query_int(cleave_rtx *tx, const char *sql, int64_t *out)
{
	sq_conn *c = (sq_conn *)tx;
	sqlite3_stmt *st;
	int rc = cl_stmt_get(c->cache, sql, &st), src;
	if (rc)
		return rc;
	src = sqlite3_step(st);
	if (src == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = 0;
	} else if (src == SQLITE_DONE) {
		rc = CLEAVE_ENOTFOUND;
	} else {
		rc = cl_sqlite_err(c->db, src, "step");
	}
	sqlite3_reset(st);
	return rc;
}

static int sq_checkpoint_get(cleave_rtx *tx, int64_t *pos)
{
	int rc =
	    query_int(tx, "SELECT v FROM __cleave WHERE k = 'checkpoint'", pos);
	if (rc == CLEAVE_ENOTFOUND) {
		*pos = 0;
		return 0;
	}
	return rc;
}

static int sq_checkpoint_set(cleave_rtx *tx, int64_t pos)
{
	cleave_value v = cleave_int(pos);
	return sq_exec(tx,
	               "INSERT INTO __cleave(k, v) VALUES('checkpoint', ?) "
	               "ON CONFLICT(k) DO UPDATE SET v = excluded.v",
	               &v, 1, NULL);
}

static int sq_dead_letter_add(cleave_rtx *tx, const cleave_event *ev,
                              const char *error)
{
	cleave_value v[6] = {
	    cleave_int(ev->position),
	    cleave_text(ev->type),
	    cleave_text(ev->stream),
	    cleave_text(error),
	    ev->data ? cleave_textn(ev->data, ev->data_len) : cleave_null(),
	    cleave_int(cl_now_us()),
	};
	return sq_exec(tx,
	               "INSERT OR REPLACE INTO __cleave_dead(position, type, "
	               "stream, error, data, ts) VALUES(?, ?, ?, ?, ?, ?)",
	               v, 6, NULL);
}

static int sq_dead_letter_count(cleave_rtx *tx, int64_t *n)
{
	return query_int(tx, "SELECT count(*) FROM __cleave_dead", n);
}

/* ---- dump ---------------------------------------------------------------- */

static void add_ident(cleave_buf *b, const char *name)
{
	cleave_buf_addc(b, '"');
	for (const char *p = name; *p; p++) {
		if (*p == '"')
			cleave_buf_addc(b, '"');
		cleave_buf_addc(b, *p);
	}
	cleave_buf_addc(b, '"');
}

/* Appends column i of the current row as a JSON value. */
static void add_json_col(cleave_buf *b, sqlite3_stmt *st, int i)
{
	static const char hex[] = "0123456789abcdef";
	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		cleave_buf_add_i64(b, sqlite3_column_int64(st, i));
		break;
	case SQLITE_FLOAT: {
		double d = sqlite3_column_double(st, i);
		if (isfinite(d))
			cleave_buf_addf(b, "%.17g", d);
		else
			cleave_buf_adds(b, d > 0 ? "1e999" : "-1e999");
		break;
	}
	case SQLITE_TEXT:
		cleave_buf_add_jstr(b, (const char *)sqlite3_column_text(st, i),
		                    (size_t)sqlite3_column_bytes(st, i));
		break;
	case SQLITE_BLOB: {
		const unsigned char *p = sqlite3_column_blob(st, i);
		int n = sqlite3_column_bytes(st, i);
		cleave_buf_adds(b, "\"x'");
		for (int k = 0; k < n; k++) {
			cleave_buf_addc(b, hex[p[k] >> 4]);
			cleave_buf_addc(b, hex[p[k] & 15]);
		}
		cleave_buf_adds(b, "'\"");
		break;
	}
	default:
		cleave_buf_adds(b, "null");
	}
}

#define SQ_DUMP_PK_MAX 16

/* The result columns of `sel` (a SELECT * of table `name`) that form the
 * table's declared primary key, in key order.  Returns their count, 0 when
 * there is none (rowid tables without one, virtual tables), or an error. */
static int pk_columns(sq_conn *c, const char *name, sqlite3_stmt *sel, int *idx)
{
	static const char sql[] = "SELECT name FROM pragma_table_info(?) "
	                          "WHERE pk > 0 ORDER BY pk";
	sqlite3_stmt *st;
	int n = 0, src, ncol = sqlite3_column_count(sel);
	src = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
	if (src != SQLITE_OK)
		return cl_sqlite_err(c->db, src, "dump");
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(st, 0);
		int i = 0;
		while (i < ncol && strcmp(sqlite3_column_name(sel, i), col))
			i++;
		if (i == ncol || n == SQ_DUMP_PK_MAX) {
			n = 0; /* not addressable: key rows by content */
			src = SQLITE_DONE;
			break;
		}
		idx[n++] = i;
	}
	if (src != SQLITE_DONE)
		n = cl_sqlite_err(c->db, src, "dump");
	sqlite3_finalize(st);
	return n;
}

static int dump_oom(void)
{
	return cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
}

/* Every row of one table, ordered by all its columns (binary collation, so
 * the order never depends on declared collations or insertion history).
 * The value is the row as a JSON array.  The key identifies the row, as
 * verify matches entries by (table, key): the JSON array of its primary
 * key, or for tables without one the row itself, with "#n" appended to the
 * n-th copy of a duplicated row (copies are adjacent in this order). */
static int dump_table(sq_conn *c, const char *name, cl_dump_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	cleave_buf sql, row, key, prev;
	int rc = 0, src, ncol, npk, pk[SQ_DUMP_PK_MAX], dup = 0;
	cleave_buf_init(&sql);
	cleave_buf_init(&row);
	cleave_buf_init(&key);
	cleave_buf_init(&prev);
	cleave_buf_adds(&sql, "SELECT * FROM ");
	add_ident(&sql, name);
	if (sql.oom) {
		rc = dump_oom();
		goto out;
	}
	src = sqlite3_prepare_v2(c->db, sql.p, -1, &st, NULL);
	if (src != SQLITE_OK) {
		rc = cl_sqlite_err(c->db, src, "dump");
		goto out;
	}
	ncol = sqlite3_column_count(st);
	sqlite3_finalize(st);
	st = NULL;
	for (int i = 1; i <= ncol; i++)
		cleave_buf_addf(&sql, "%s%d COLLATE BINARY",
		              i == 1 ? " ORDER BY " : ", ", i);
	if (sql.oom) {
		rc = dump_oom();
		goto out;
	}
	src = sqlite3_prepare_v2(c->db, sql.p, -1, &st, NULL);
	if (src != SQLITE_OK) {
		rc = cl_sqlite_err(c->db, src, "dump");
		goto out;
	}
	if ((npk = pk_columns(c, name, st, pk)) < 0) {
		rc = npk;
		goto out;
	}
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		cleave_buf_reset(&row);
		cleave_buf_addc(&row, '[');
		for (int i = 0; i < ncol; i++) {
			if (i)
				cleave_buf_addc(&row, ',');
			add_json_col(&row, st, i);
		}
		cleave_buf_addc(&row, ']');
		cleave_buf_reset(&key);
		if (npk) {
			cleave_buf_addc(&key, '[');
			for (int i = 0; i < npk; i++) {
				if (i)
					cleave_buf_addc(&key, ',');
				add_json_col(&key, st, pk[i]);
			}
			cleave_buf_addc(&key, ']');
		} else {
			if (dup && prev.len == row.len &&
			    !memcmp(prev.p, row.p, row.len)) {
				dup++;
			} else {
				dup = 1;
				cleave_buf_reset(&prev);
				cleave_buf_add(&prev, row.p, row.len);
			}
			cleave_buf_add(&key, row.p, row.len);
			if (dup > 1)
				cleave_buf_addf(&key, "#%d", dup);
		}
		if (row.oom || key.oom || prev.oom) {
			rc = dump_oom();
			goto out;
		}
		rc = fn(arg, name, key.p, key.len, row.p, row.len);
		if (rc)
			goto out;
	}
	if (src != SQLITE_DONE)
		rc = cl_sqlite_err(c->db, src, "dump");
out:
	sqlite3_finalize(st);
	cleave_buf_free(&sql);
	cleave_buf_free(&row);
	cleave_buf_free(&key);
	cleave_buf_free(&prev);
	return rc;
}

/* User tables and FTS5 virtual tables in name order; our tables, SQLite's
 * own, views and the shadow tables behind virtual tables are skipped. */
static int sq_dump(cleave_rtx *tx, cl_dump_fn fn, void *arg)
{
	static const char list_sql[] =
	    "SELECT name FROM pragma_table_list "
	    "WHERE schema = 'main' AND type IN ('table', 'virtual') "
	    "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
	    "AND name NOT LIKE '\\_\\_cleave%' ESCAPE '\\' "
	    "ORDER BY name COLLATE BINARY";
	sq_conn *c = (sq_conn *)tx;
	sqlite3_stmt *st = NULL;
	int rc = 0, src;
	src = sqlite3_prepare_v2(c->db, list_sql, -1, &st, NULL);
	if (src != SQLITE_OK)
		return cl_sqlite_err(c->db, src, "dump");
	while ((src = sqlite3_step(st)) == SQLITE_ROW) {
		char *name =
		    cl_strdup((const char *)sqlite3_column_text(st, 0));
		if (!name) {
			rc = cl_err(CLEAVE_ENOMEM, "sqlite: out of memory");
			break;
		}
		rc = dump_table(c, name, fn, arg);
		free(name);
		if (rc)
			break;
	}
	if (!rc && src != SQLITE_DONE)
		rc = cl_sqlite_err(c->db, src, "dump");
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

const cl_rstore_methods cl_rstore_sqlite = {
    .version = CL_RSTORE_V1,
    .kind = "sqlite",
    .caps = CL_RS_SQL | CL_RS_SNAPSHOT,
    .open = sq_open,
    .close = sq_close,
    .drop = sq_drop,
    .begin = sq_begin,
    .commit = sq_commit,
    .abort = sq_abort,
    .checkpoint_get = sq_checkpoint_get,
    .checkpoint_set = sq_checkpoint_set,
    .dead_letter_add = sq_dead_letter_add,
    .dead_letter_count = sq_dead_letter_count,
    .dump = sq_dump,
    .exec = sq_exec,
    .query = sq_query,
    .fts_query = sq_fts_query,
};
