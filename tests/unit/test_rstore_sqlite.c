/*
 * test_rstore_sqlite.c — the "sqlite" read store: projection tables and
 * FTS5 in write transactions, queries in pooled read transactions,
 * checkpoints, dead letters, dumps, and readers on many threads.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rstoretest.h"
#include "testutil.h"

#include "core/util.h"
#include "read/rstore.h"
#include "read/rstore_int.h"

static cl_rstore *open_store(const char *dir, bool ro)
{
	cl_rstore_opts o = {.read_only = ro, .nosync = true};
	cl_rstore *s = NULL;
	TU_OK(cl_rstore_sqlite.open(dir, &o, &s));
	assert_non_null(s);
	return s;
}

static const char schema[] =
    "CREATE TABLE products(id TEXT PRIMARY KEY, name TEXT, "
    "category TEXT, price INTEGER, stock INTEGER, rating REAL)";
static const char schema_fts[] =
    "CREATE VIRTUAL TABLE products_fts USING fts5(id UNINDEXED, name, "
    "description)";

static const struct product {
	const char *id, *name, *category, *desc;
	int64_t price, stock;
} products[] = {
    {"p1", "Red running shoe", "shoes", "light and fast", 5000, 3},
    {"p2", "Blue running shoe", "shoes", "cushioned for long runs", 7000, 0},
    {"p3", "Running shorts", "apparel", "breathable", 2500, 10},
    {"p4", "Trail shoe", "shoes", "grip for running on rocks", 9000, 1},
    {"p5", "Wool hat", "apparel", "warm", 1500, 4},
};

static void setup(cleave_rtx *tx)
{
	TU_OK(cleave_rtx_exec(tx, schema, NULL, 0, NULL));
	TU_OK(cleave_rtx_exec(tx, schema_fts, NULL, 0, NULL));
}

static void insert(cleave_rtx *tx, const struct product *p)
{
	cleave_value v[6] = {
	    cleave_text(p->id),       cleave_text(p->name),
	    cleave_text(p->category), cleave_int(p->price),
	    cleave_int(p->stock),     cleave_real(4.5),
	};
	int64_t changes = 0;
	TU_OK(cleave_rtx_exec(tx, "INSERT INTO products VALUES(?,?,?,?,?,?)", v,
	                      6, &changes));
	assert_int_equal(changes, 1);
	cleave_value f[3] = {cleave_text(p->id), cleave_text(p->name),
	                     cleave_text(p->desc)};
	TU_OK(cleave_rtx_exec(tx, "INSERT INTO products_fts VALUES(?,?,?)", f,
	                      3, NULL));
}

/* "id,id,..." of a search: text match, category, price cap, in stock. */
static void search(cleave_rtx *tx, const char *q, const char *cat,
                   int64_t max_price, char *out, size_t cap)
{
	static const char sql[] =
	    "SELECT p.id, p.price FROM products_fts f "
	    "JOIN products p ON p.id = f.id "
	    "WHERE products_fts MATCH ? AND p.category = ? "
	    "AND p.price <= ? AND p.stock > 0 "
	    "ORDER BY bm25(products_fts), p.id";
	cleave_value a[3] = {cleave_text(q), cleave_text(cat),
	                     cleave_int(max_price)};
	cleave_rows *r;
	int rc;
	out[0] = 0;
	TU_OK(cleave_rtx_query(tx, sql, a, 3, &r));
	assert_int_equal(cleave_rows_columns(r), 2);
	while ((rc = cleave_rows_next(r)) == 1) {
		size_t n;
		const char *id = cleave_rows_text(r, 0, &n);
		if (out[0])
			strncat(out, ",", cap - strlen(out) - 1);
		strncat(out, id, cap - strlen(out) - 1);
		assert_true(cleave_rows_int(r, 1) <= max_price);
	}
	assert_int_equal(rc, 0);
	cleave_rows_close(r);
}

static void test_fts_and_checkpoint(void **state)
{
	char *dir = tu_tmpdir("rsq");
	cl_rstore *s = open_store(dir, false);
	char ids[256];
	int64_t pos = -1;

	cleave_rtx *tx = rt_begin(s, true);
	setup(tx);
	for (size_t i = 0; i < CL_ARRAY_LEN(products); i++)
		insert(tx, &products[i]);
	TU_OK(s->m->checkpoint_set(tx, 5));
	/* The writer reads its own uncommitted rows. */
	search(tx, "running", "shoes", 100000, ids, sizeof(ids));
	assert_string_equal(ids, "p1,p4");
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 5);
	search(tx, "running", "shoes", 100000, ids, sizeof(ids));
	assert_string_equal(ids, "p1,p4"); /* p2 is out of stock */
	search(tx, "running", "shoes", 6000, ids, sizeof(ids));
	assert_string_equal(ids, "p1");
	search(tx, "shoe*", "apparel", 100000, ids, sizeof(ids));
	assert_string_equal(ids, "");
	search(tx, "warm OR breathable", "apparel", 100000, ids, sizeof(ids));
	assert_true(!strcmp(ids, "p3,p5") || !strcmp(ids, "p5,p3"));
	/* Two different statements open at once on one connection. */
	cleave_rows *r1, *r2;
	TU_OK(cleave_rtx_query(tx, "SELECT id FROM products ORDER BY id", NULL,
	                       0, &r1));
	TU_OK(cleave_rtx_query(tx, "SELECT count(*) FROM products", NULL, 0,
	                       &r2));
	assert_int_equal(cleave_rows_next(r1), 1);
	assert_int_equal(cleave_rows_next(r2), 1);
	assert_int_equal(cleave_rows_int(r2, 0), 5);
	assert_string_equal(cleave_rows_text(r1, 0, NULL), "p1");
	cleave_rows_close(r1);
	cleave_rows_close(r2);
	TU_OK(s->m->commit(tx));

	/* Abort discards rows and checkpoint together. */
	tx = rt_begin(s, true);
	TU_OK(cleave_rtx_exec(tx, "DELETE FROM products", NULL, 0, NULL));
	TU_OK(s->m->checkpoint_set(tx, 6));
	s->m->abort(tx);
	s->m->close(s);

	/* Reopened, and read-only: everything committed is there. */
	s = open_store(dir, true);
	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 5);
	search(tx, "running", "shoes", 100000, ids, sizeof(ids));
	assert_string_equal(ids, "p1,p4");
	s->m->abort(tx);
	assert_int_equal(s->m->begin(s, true, &tx), CLEAVE_EREADONLY);
	s->m->close(s);

	TU_OK(cl_rstore_sqlite.drop(dir));
	tu_rmdir(dir);
}

static void test_errors(void **state)
{
	char *dir = tu_tmpdir("rsq");
	cl_rstore *s = open_store(dir, false);
	cleave_rtx *tx = rt_begin(s, true);
	int64_t d[1] = {1};
	cleave_rows *r;
	setup(tx);
	insert(tx, &products[0]);
	assert_int_equal(cleave_rtx_exec(tx,
	                                 "INSERT INTO products(id) "
	                                 "VALUES('p1')",
	                                 NULL, 0, NULL),
	                 CLEAVE_EEXIST);
	assert_int_equal(cleave_rtx_exec(tx, "SELEKT 1", NULL, 0, NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_query(tx, "SELECT ?", NULL, 0, &r),
	                 CLEAVE_EINVAL);
	/* No key/value access in this store, and the message names it. */
	assert_int_equal(cleave_rtx_put(tx, "ns", "k", "v", 1), CLEAVE_ENOTSUP);
	assert_non_null(strstr(cleave_errmsg(), "sqlite"));
	assert_int_equal(cleave_rtx_get(tx, "ns", "k", NULL, NULL),
	                 CLEAVE_ENOTSUP);
	assert_int_equal(cleave_rtx_zincr(tx, "ns", "m", 1, NULL),
	                 CLEAVE_ENOTSUP);
	assert_non_null(strstr(cleave_errmsg(), "sqlite"));
	assert_int_equal(cleave_rtx_counter_add(tx, "ns", "k", d, 1),
	                 CLEAVE_ENOTSUP);
	assert_int_equal(cleave_rtx_list_put(tx, "ns", "l", 1, "v", 1),
	                 CLEAVE_ENOTSUP);
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	assert_int_equal(
	    cleave_rtx_exec(tx, "DELETE FROM products", NULL, 0, NULL),
	    CLEAVE_EREADONLY);
	assert_int_equal(s->m->checkpoint_set(tx, 1), CLEAVE_EREADONLY);
	TU_OK(
	    cleave_rtx_query(tx, "SELECT count(*) FROM products", NULL, 0, &r));
	assert_int_equal(cleave_rows_next(r), 1);
	assert_int_equal(cleave_rows_int(r, 0), 1);
	cleave_rows_close(r);
	s->m->commit(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

static void test_dead_letters(void **state)
{
	char *dir = tu_tmpdir("rsq");
	cl_rstore *s = open_store(dir, false);
	cleave_event ev = {.position = 3,
	                   .type = "T",
	                   .stream = "s-1",
	                   .data = "{}",
	                   .data_len = 2};
	int64_t n = -1;
	cleave_rtx *tx = rt_begin(s, true);
	TU_OK(s->m->dead_letter_add(tx, &ev, "boom"));
	ev.position = 4;
	TU_OK(s->m->dead_letter_add(tx, &ev, "boom again"));
	TU_OK(s->m->dead_letter_add(tx, &ev, "same event twice"));
	TU_OK(s->m->commit(tx));
	tx = rt_begin(s, false);
	TU_OK(s->m->dead_letter_count(tx, &n));
	assert_int_equal(n, 2);
	s->m->abort(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

/* ---- dump ---------------------------------------------------------------- */

static int dump_collect(void *arg, const char *table, const char *key,
                        size_t klen, const void *val, size_t vlen)
{
	cleave_buf *b = arg;
	cleave_buf_addf(b, "%s|", table);
	cleave_buf_add(b, key, klen);
	cleave_buf_addc(b, '|');
	cleave_buf_add(b, val, vlen);
	cleave_buf_addc(b, '\n');
	return 0;
}

static void build(cl_rstore *s, bool reverse)
{
	cleave_rtx *tx = rt_begin(s, true);
	size_t n = CL_ARRAY_LEN(products);
	setup(tx);
	TU_OK(cleave_rtx_exec(tx, "CREATE TABLE blobs(k, v)", NULL, 0, NULL));
	TU_OK(cleave_rtx_exec(tx,
	                      "CREATE TABLE lines(qty, order_id, product_id, "
	                      "PRIMARY KEY(order_id, product_id))",
	                      NULL, 0, NULL));
	TU_OK(cleave_rtx_exec(tx,
	                      reverse ? "INSERT INTO lines VALUES(3, 'o1', "
	                                "'p2'), (3, 'o1', 'p1'), (1, 'o2', "
	                                "'p1')"
	                              : "INSERT INTO lines VALUES(1, 'o2', "
	                                "'p1'), (3, 'o1', 'p1'), (3, 'o1', "
	                                "'p2')",
	                      NULL, 0, NULL));
	for (size_t j = 0; j < n; j++) {
		size_t i = reverse ? n - 1 - j : j;
		insert(tx, &products[i]);
	}
	if (reverse) { /* a detour through other states */
		TU_OK(cleave_rtx_exec(tx, "UPDATE products SET stock = 99",
		                      NULL, 0, NULL));
		TU_OK(cleave_rtx_exec(
		    tx, "INSERT INTO products(id) VALUES('x')", NULL, 0, NULL));
		TU_OK(cleave_rtx_exec(tx, "DELETE FROM products WHERE id='x'",
		                      NULL, 0, NULL));
		for (size_t i = 0; i < n; i++) {
			cleave_value v[2] = {cleave_int(products[i].stock),
			                     cleave_text(products[i].id)};
			TU_OK(cleave_rtx_exec(tx,
			                      "UPDATE products SET stock = ? "
			                      "WHERE id = ?",
			                      v, 2, NULL));
		}
		TU_OK(cleave_rtx_exec(tx,
		                      "INSERT INTO blobs VALUES(NULL, "
		                      "x'00ff'), (2, 'a\"b'), (1.5, 2), "
		                      "(1.5, 2)",
		                      NULL, 0, NULL));
		TU_OK(s->m->checkpoint_set(tx, 77)); /* not data */
	} else {
		TU_OK(cleave_rtx_exec(tx,
		                      "INSERT INTO blobs VALUES(1.5, 2), "
		                      "(2, 'a\"b'), (1.5, 2), "
		                      "(NULL, x'00ff')",
		                      NULL, 0, NULL));
	}
	TU_OK(s->m->commit(tx));
}

static void test_dump(void **state)
{
	char *d1 = tu_tmpdir("rsq"), *d2 = tu_tmpdir("rsq");
	cl_rstore *s1 = open_store(d1, false), *s2 = open_store(d2, false);
	cleave_buf b1, b2;
	cleave_buf_init(&b1);
	cleave_buf_init(&b2);
	build(s1, false);
	build(s2, true);
	cleave_rtx *t1 = rt_begin(s1, false), *t2 = rt_begin(s2, true);
	TU_OK(s1->m->dump(t1, dump_collect, &b1));
	TU_OK(s2->m->dump(t2, dump_collect, &b2));
	s1->m->commit(t1);
	s2->m->abort(t2);
	assert_string_equal(b1.p, b2.p);
	/* Tables in name order; FTS5 dumped as its virtual table; no
	 * shadow tables, no __cleave tables. */
	/* Keys: the primary key, else the row (with #n for copies). */
	assert_non_null(strstr(b1.p, "blobs|[null,\"x'00ff'\"]|"
	                             "[null,\"x'00ff'\"]\n"
	                             "blobs|[1.5,2]|[1.5,2]\n"
	                             "blobs|[1.5,2]#2|[1.5,2]\n"
	                             "blobs|[2,\"a\\\"b\"]|[2,\"a\\\"b\"]\n"));
	assert_non_null(strstr(b1.p, "products_fts|[\"p1\",\"Red running "
	                             "shoe\",\"light and fast\"]|"));
	/* Rows in column order (qty first); keys are the primary key. */
	assert_non_null(strstr(b1.p, "lines|[\"o2\",\"p1\"]|[1,\"o2\",\"p1\"]\n"
	                             "lines|[\"o1\",\"p1\"]|[3,\"o1\",\"p1\"]\n"
	                             "lines|[\"o1\",\"p2\"]|[3,\"o1\",\"p2\"]\n"
	                             "products|[\"p1\"]|[\"p1\","));
	/* Verify matches by (table, key): no two entries share one. */
	for (char *l = b1.p; *l;) {
		char *nl = strchr(l, '\n'), *bar = strchr(l, '|');
		bar = strchr(bar + 1, '|');
		size_t n = (size_t)(bar - l) + 1;
		for (char *m = nl + 1; *m; m = strchr(m, '\n') + 1)
			assert_false(!strncmp(l, m, n));
		l = nl + 1;
	}
	assert_null(strstr(b1.p, "products_fts_"));
	assert_null(strstr(b1.p, "__cleave"));
	assert_true(strstr(b1.p, "blobs|") < strstr(b1.p, "products|"));
	assert_true(strstr(b1.p, "products|") < strstr(b1.p, "products_fts|"));
	cleave_buf_free(&b1);
	cleave_buf_free(&b2);
	s1->m->close(s1);
	s2->m->close(s2);
	tu_rmdir(d1);
	tu_rmdir(d2);
}

/* ---- readers on many threads --------------------------------------------- */

#define POOL_THREADS 12
#define POOL_COMMITS 200

struct race {
	cl_rstore *s;
	_Atomic int done;
	_Atomic int bad;
	_Atomic long reads;
};

static void *pool_writer(void *arg)
{
	struct race *r = arg;
	for (int i = 1; i <= POOL_COMMITS; i++) {
		cleave_rtx *tx;
		cleave_value v = cleave_int(i);
		if (r->s->m->begin(r->s, true, &tx)) {
			r->bad++;
			break;
		}
		int rc =
		    cleave_rtx_exec(tx, "UPDATE pair SET v = ?", &v, 1, NULL);
		rc = rc ? rc : r->s->m->checkpoint_set(tx, i);
		rc = rc ? rc : r->s->m->commit(tx);
		if (rc)
			r->bad++;
	}
	r->done = 1;
	return NULL;
}

/* Both rows of `pair` and the checkpoint move together. */
static void *pool_reader(void *arg)
{
	struct race *r = arg;
	int tail = 0;
	while (!r->done || tail++ < 20) {
		cleave_rtx *tx;
		cleave_rows *rows;
		int64_t cp, v[2] = {-1, -1};
		if (r->s->m->begin(r->s, false, &tx)) {
			r->bad++;
			return NULL;
		}
		if (cleave_rtx_query(tx, "SELECT v FROM pair ORDER BY k", NULL,
		                     0, &rows)) {
			r->bad++;
		} else {
			for (int i = 0; i < 2 && cleave_rows_next(rows) == 1;
			     i++)
				v[i] = cleave_rows_int(rows, 0);
			cleave_rows_close(rows);
		}
		if (r->s->m->checkpoint_get(tx, &cp) || v[0] != v[1] ||
		    v[0] != cp)
			r->bad++;
		if (r->s->m->commit(tx))
			r->bad++;
		r->reads++;
	}
	return NULL;
}

static void test_read_pool_threads(void **state)
{
	char *dir = tu_tmpdir("rsq");
	struct race r = {.s = open_store(dir, false)};
	pthread_t w, rd[POOL_THREADS];
	cleave_rtx *tx = rt_begin(r.s, true);
	TU_OK(cleave_rtx_exec(tx, "CREATE TABLE pair(k INTEGER PRIMARY KEY, v)",
	                      NULL, 0, NULL));
	TU_OK(cleave_rtx_exec(tx, "INSERT INTO pair VALUES(1, 0), (2, 0)", NULL,
	                      0, NULL));
	TU_OK(r.s->m->commit(tx));
	for (int i = 0; i < POOL_THREADS; i++)
		pthread_create(&rd[i], NULL, pool_reader, &r);
	pthread_create(&w, NULL, pool_writer, &r);
	pthread_join(w, NULL);
	for (int i = 0; i < POOL_THREADS; i++)
		pthread_join(rd[i], NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.reads >= POOL_THREADS * 20);

	/* More read transactions at once than one thread needs: each gets
	 * its own connection and snapshot. */
	cleave_rtx *many[20];
	for (int i = 0; i < 20; i++)
		many[i] = rt_begin(r.s, false);
	for (int i = 0; i < 20; i++)
		TU_OK(r.s->m->commit(many[i]));
	r.s->m->close(r.s);
	tu_rmdir(dir);
}

/* cleave_rtx_fts_query: every word as unicode61 splits and folds it, as a
 * quoted string, so syntax in the text is only text. */
static int64_t fts_count(cleave_rtx *tx, const char *q, int *nwords)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_rows *r;
	int64_t n = -1;
	TU_OK(cleave_rtx_fts_query(tx, q, 10, &b, nwords));
	cleave_value v = cleave_text(b.p ? b.p : "");
	if (!*nwords) {
		cleave_buf_free(&b);
		return 0;
	}
	TU_OK(cleave_rtx_query(tx, "SELECT count(*) FROM t WHERE t MATCH ?",
	                       &v, 1, &r));
	assert_int_equal(cleave_rows_next(r), 1);
	n = cleave_rows_int(r, 0);
	cleave_rows_close(r);
	cleave_buf_free(&b);
	return n;
}

static void test_fts_query(void **state)
{
	char *dir = tu_tmpdir("rsq");
	cl_rstore *s = open_store(dir, false);
	cleave_rtx *tx = rt_begin(s, true);
	TU_OK(cleave_rtx_exec(tx, "CREATE VIRTUAL TABLE t USING fts5(body)",
	                      NULL, 0, NULL));
	static const char *const rows[] = {
	    "Café au lait, hot", "the NEAR future", "foo\xe2\x80\x94" "bar baz",
	    "OR and AND", "quoted \"word\" here", "x-ray vision"};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		cleave_value v = cleave_text(rows[i]);
		TU_OK(cleave_rtx_exec(tx, "INSERT INTO t VALUES(?)", &v, 1,
		                      NULL));
	}
	TU_OK(cl_rtx_commit(tx));
	tx = rt_begin(s, false);
	int nw;
	cleave_buf b = CLEAVE_BUF_INIT;
	TU_OK(cleave_rtx_fts_query(tx, "Café, HOT!", 10, &b, &nw));
	assert_string_equal(b.p, "\"cafe\" \"hot\"");
	assert_int_equal(nw, 2);
	assert_int_equal(fts_count(tx, "cafe", &nw), 1);
	assert_int_equal(fts_count(tx, "CAFÉ lait", &nw), 1);
	assert_int_equal(fts_count(tx, "lait cold", &nw), 0); /* every word */
	assert_int_equal(fts_count(tx, "caf", &nw), 0);       /* whole words */
	/* FTS5 syntax is text */
	assert_int_equal(fts_count(tx, "NEAR(future the)", &nw), 1);
	assert_int_equal(fts_count(tx, "OR", &nw), 1);
	assert_int_equal(fts_count(tx, "hot OR vision", &nw), 0);
	assert_int_equal(fts_count(tx, "\"word\" quoted", &nw), 1);
	assert_int_equal(fts_count(tx, "lait*", &nw), 1);
	assert_int_equal(fts_count(tx, "-ray x", &nw), 1);
	/* a column filter is two words, and no row holds "body" */
	assert_int_equal(fts_count(tx, "body:baz", &nw), 0);
	assert_int_equal(fts_count(tx, "baz", &nw), 1);
	/* a Unicode separator splits words, as in the index */
	assert_int_equal(fts_count(tx, "bar\xe2\x80\x94" "foo", &nw), 1);
	assert_int_equal(nw, 2);
	/* no word at all */
	assert_int_equal(fts_count(tx, " ,;!? ", &nw), 0);
	assert_int_equal(nw, 0);
	assert_int_equal(cleave_rtx_fts_query(tx, "a b c", 2, &b, &nw),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_fts_query(tx, "\xff", 2, &b, &nw),
	                 CLEAVE_EINVAL);
	cleave_buf_free(&b);
	cl_rtx_abort(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fts_and_checkpoint),
	    cmocka_unit_test(test_fts_query),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_dead_letters),
	    cmocka_unit_test(test_dump),
	    cmocka_unit_test(test_read_pool_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
