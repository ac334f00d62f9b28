/*
 * sqlite_util.c — statement cache, binding, cursors and errors for SQLite.
 *
 * The cache is an open-addressing table keyed by the SQL text.  Each entry
 * embeds its own cursor, so opening a cursor allocates nothing: one cursor
 * per statement text at a time, which handlers never need to exceed.
 */
#include "sqlite/sqlite_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static void global_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int cl_sqlite_open(const char *file, int flags, sqlite3 **db)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, global_setup);
	return sqlite3_open_v2(file, db, flags, NULL);
}

typedef struct entry {
	cleave_rows rows; /* must be first: cleave_rows* ↔ entry* */
	uint64_t hash;
	char *sql;
	sqlite3_stmt *st;
	sqlite3 *db;
	bool open;   /* cursor handed out */
	bool row;    /* cursor positioned on a row */
	bool done;
} entry;

/* Most SQL comes from string literals: a small table keyed by the text's
 * address finds those without hashing the text.  A hit is still confirmed
 * by comparing the text, so a reused buffer is never mistaken. */
#define FRONT 64

struct cl_stmt_cache {
	sqlite3 *db;
	entry **slots;
	size_t cap, n;
	struct {
		const char *sql;
		entry *e;
	} front[FRONT];
};

static const cl_rows_methods rows_methods;

cl_stmt_cache *cl_stmt_cache_new(sqlite3 *db)
{
	cl_stmt_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->db = db;
	c->cap = 64;
	c->slots = calloc(c->cap, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	return c;
}

void cl_stmt_cache_free(cl_stmt_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->cap; i++) {
		entry *e = c->slots[i];
		if (!e)
			continue;
		sqlite3_finalize(e->st);
		free(e->sql);
		free(e);
	}
	free(c->slots);
	free(c);
}

static int grow(cl_stmt_cache *c)
{
	size_t cap = c->cap * 2;
	entry **slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	for (size_t i = 0; i < c->cap; i++) {
		entry *e = c->slots[i];
		if (!e)
			continue;
		size_t j = e->hash & (cap - 1);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = e;
	}
	free(c->slots);
	c->slots = slots;
	c->cap = cap;
	return 0;
}

static int lookup_slow(cl_stmt_cache *c, const char *sql, entry **out);

static int lookup(cl_stmt_cache *c, const char *sql, entry **out)
{
	size_t f = ((uintptr_t)sql >> 3) & (FRONT - 1);
	if (c->front[f].sql == sql && !strcmp(c->front[f].e->sql, sql)) {
		*out = c->front[f].e;
		return 0;
	}
	int rc = lookup_slow(c, sql, out);
	if (rc == 0) {
		c->front[f].sql = sql;
		c->front[f].e = *out;
	}
	return rc;
}

static int lookup_slow(cl_stmt_cache *c, const char *sql, entry **out)
{
	size_t len = strlen(sql);
	uint64_t h = cl_hash(sql, len);
	size_t j = h & (c->cap - 1);
	for (entry *e; (e = c->slots[j]); j = (j + 1) & (c->cap - 1)) {
		if (e->hash == h && !strcmp(e->sql, sql)) {
			*out = e;
			return 0;
		}
	}
	if ((c->n + 1) * 2 > c->cap) {
		int rc = grow(c);
		if (rc)
			return rc;
		return lookup_slow(c, sql, out);
	}
	entry *e = calloc(1, sizeof(*e));
	if (!e)
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	int src = sqlite3_prepare_v3(c->db, sql, (int)len + 1,
				     SQLITE_PREPARE_PERSISTENT, &e->st, NULL);
	if (src != SQLITE_OK) {
		int rc = cl_sqlite_err(c->db, src, "prepare");
		free(e);
		return rc;
	}
	if (!e->st) {
		free(e);
		return cl_err(CLEAVE_EINVAL, "empty SQL statement");
	}
	e->sql = cl_strndup(sql, len);
	if (!e->sql) {
		sqlite3_finalize(e->st);
		free(e);
		return cl_err(CLEAVE_ENOMEM, "statement cache: out of memory");
	}
	e->hash = h;
	e->db = c->db;
	e->rows.m = &rows_methods;
	c->slots[j] = e;
	c->n++;
	*out = e;
	return 0;
}

int cl_stmt_get(cl_stmt_cache *c, const char *sql, sqlite3_stmt **out)
{
	entry *e;
	int rc = lookup(c, sql, &e);
	if (rc)
		return rc;
	if (e->open)
		return cl_err(CLEAVE_EINVAL,
			      "statement already has an open cursor: %s", sql);
	sqlite3_reset(e->st);
	*out = e->st;
	return 0;
}

int cl_sqlite_err(sqlite3 *db, int src, const char *what)
{
	int base = src & 0xff, rc;
	switch (base) {
	case SQLITE_CONSTRAINT:
		rc = (src == SQLITE_CONSTRAINT_UNIQUE ||
		      src == SQLITE_CONSTRAINT_PRIMARYKEY)
			     ? CLEAVE_EEXIST
			     : CLEAVE_EINVAL;
		break;
	case SQLITE_FULL:
		rc = CLEAVE_ENOSPC;
		break;
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PERM:
		rc = CLEAVE_EIO;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		rc = CLEAVE_ECORRUPT;
		break;
	case SQLITE_NOMEM:
		rc = CLEAVE_ENOMEM;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		rc = CLEAVE_EBUSY;
		break;
	case SQLITE_ERROR:
	case SQLITE_MISMATCH:
	case SQLITE_RANGE:
	case SQLITE_TOOBIG:
		rc = CLEAVE_EINVAL;
		break;
	default:
		rc = CLEAVE_EINTERNAL;
	}
	return cl_err(rc, "sqlite %s: %s (%d)", what,
		      db ? sqlite3_errmsg(db) : sqlite3_errstr(src), src);
}

int cl_sqlite_bind(sqlite3 *db, sqlite3_stmt *st, const cleave_value *args,
		   int nargs)
{
	int want = sqlite3_bind_parameter_count(st);
	if (want != nargs)
		return cl_err(CLEAVE_EINVAL,
			      "SQL wants %d parameters, %d given: %s", want,
			      nargs, sqlite3_sql(st));
	for (int i = 0; i < nargs; i++) {
		const cleave_value *v = &args[i];
		int src;
		switch (v->type) {
		case CLEAVE_INT:
			src = sqlite3_bind_int64(st, i + 1, v->i);
			break;
		case CLEAVE_REAL:
			src = sqlite3_bind_double(st, i + 1, v->d);
			break;
		case CLEAVE_TEXT:
			src = sqlite3_bind_text(st, i + 1, v->s ? v->s : "",
						(int)v->n, SQLITE_STATIC);
			break;
		default:
			src = sqlite3_bind_null(st, i + 1);
		}
		if (src != SQLITE_OK)
			return cl_sqlite_err(db, src, "bind");
	}
	return 0;
}

int cl_sqlite_exec(cl_stmt_cache *c, const char *sql, const cleave_value *args,
		   int nargs, int64_t *changes)
{
	sqlite3_stmt *st;
	int rc = cl_stmt_get(c, sql, &st);
	if (rc)
		return rc;
	rc = cl_sqlite_bind(c->db, st, args, nargs);
	if (rc)
		return rc;
	int src;
	while ((src = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (src != SQLITE_DONE) {
		rc = cl_sqlite_err(c->db, src, "step");
		sqlite3_reset(st);
		return rc;
	}
	if (changes)
		*changes = sqlite3_changes64(c->db);
	sqlite3_reset(st);
	return 0;
}

int cl_sqlite_query(cl_stmt_cache *c, const char *sql,
		    const cleave_value *args, int nargs, cleave_rows **out)
{
	entry *e;
	int rc = lookup(c, sql, &e);
	if (rc)
		return rc;
	if (e->open)
		return cl_err(CLEAVE_EINVAL,
			      "statement already has an open cursor: %s", sql);
	sqlite3_reset(e->st);
	rc = cl_sqlite_bind(c->db, e->st, args, nargs);
	if (rc)
		return rc;
	e->open = true;
	e->row = false;
	e->done = false;
	*out = &e->rows;
	return 0;
}

static int rows_next(cleave_rows *r)
{
	entry *e = (entry *)r;
	if (e->done)
		return 0;
	int src = sqlite3_step(e->st);
	if (src == SQLITE_ROW) {
		e->row = true;
		return 1;
	}
	e->row = false;
	e->done = true;
	if (src == SQLITE_DONE)
		return 0;
	return cl_sqlite_err(e->db, src, "step");
}

static int rows_columns(cleave_rows *r)
{
	return sqlite3_column_count(((entry *)r)->st);
}

static bool rows_is_null(cleave_rows *r, int col)
{
	entry *e = (entry *)r;
	return !e->row || sqlite3_column_type(e->st, col) == SQLITE_NULL;
}

static int64_t rows_int(cleave_rows *r, int col)
{
	entry *e = (entry *)r;
	return e->row ? sqlite3_column_int64(e->st, col) : 0;
}

static double rows_real(cleave_rows *r, int col)
{
	entry *e = (entry *)r;
	return e->row ? sqlite3_column_double(e->st, col) : 0;
}

static const char *rows_text(cleave_rows *r, int col, size_t *len)
{
	entry *e = (entry *)r;
	const char *s = e->row ? (const char *)sqlite3_column_text(e->st, col)
			       : NULL;
	if (len)
		*len = s ? (size_t)sqlite3_column_bytes(e->st, col) : 0;
	return s;
}

static void rows_close(cleave_rows *r)
{
	entry *e = (entry *)r;
	sqlite3_reset(e->st);
	e->open = false;
	e->row = false;
}

static const cl_rows_methods rows_methods = {
	rows_next, rows_columns, rows_is_null, rows_int,
	rows_real, rows_text,    rows_close,
};

int cl_sqlite_script(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int src = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (src == SQLITE_OK)
		return 0;
	int rc = cl_sqlite_err(db, src, "script");
	if (msg) {
		cl_err(rc, "sqlite: %s", msg);
		sqlite3_free(msg);
	}
	return rc;
}
