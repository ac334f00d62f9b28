/*
 * test_rstore.c — the "lmdb" read store through the public cleave_rtx_*
 * calls: key/value, scans, argument checks, checkpoints, dead letters,
 * dumps, the map-size limit, and readers racing a writer.  The sorted
 * sets, counters and lists are in test_rstore_gen.c.
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

/* ---- helpers ------------------------------------------------------------- */

static cl_rstore *open_store(const char *dir, uint64_t map, bool ro)
{
	cl_rstore_opts o = {.read_only = ro, .nosync = true, .map_size = map};
	cl_rstore *s = NULL;
	TU_OK(cl_rstore_lmdb.open(dir, &o, &s));
	assert_non_null(s);
	return s;
}

/* ---- key/value ----------------------------------------------------------- */

static void test_kv_basic(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 0, false);
	cleave_rtx *tx = rt_begin(s, true);

	rt_expect(tx, "docs", "a", NULL); /* namespace does not exist yet */
	rt_put(tx, "docs", "a", "alpha");
	rt_put(tx, "docs", "b", "beta");
	rt_expect(tx, "docs", "a", "alpha");
	rt_put(tx, "docs", "a", "ALPHA");
	rt_expect(tx, "docs", "a", "ALPHA");
	TU_OK(cleave_rtx_del(tx, "docs", "b"));
	rt_expect(tx, "docs", "b", NULL);
	TU_OK(cleave_rtx_del(tx, "docs", "b"));    /* absent: still fine */
	TU_OK(cleave_rtx_del(tx, "nothing", "b")); /* no namespace either */
	TU_OK(cleave_rtx_put(tx, "docs", "empty", NULL, 0));

	/* A value handed out in a write transaction outlives later writes. */
	const void *p;
	size_t n;
	TU_OK(cleave_rtx_get(tx, "docs", "a", &p, &n));
	char big[2000];
	memset(big, 'x', sizeof(big));
	for (int i = 0; i < 2000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%05d", i);
		TU_OK(cleave_rtx_put(tx, "docs", k, big, sizeof(big)));
	}
	TU_OK(cleave_rtx_put(tx, "docs", "a", "changed", 7));
	assert_int_equal(n, 5);
	assert_memory_equal(p, "ALPHA", 5);
	rt_put(tx, "docs", "a", "ALPHA");
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	rt_expect(tx, "docs", "a", "ALPHA");
	rt_expect(tx, "docs", "b", NULL);
	rt_expect(tx, "other", "a", NULL);
	TU_OK(cleave_rtx_get(tx, "docs", "empty", &p, &n));
	assert_int_equal(n, 0);
	/* NULL out-parameters make get an existence test. */
	TU_OK(cleave_rtx_get(tx, "docs", "a", NULL, NULL));
	s->m->abort(tx);

	s->m->close(s);
	TU_OK(cl_rstore_lmdb.drop(dir));
	tu_rmdir(dir);
}

static int stop_after_two(void *arg, const char *key, size_t klen,
                          const void *val, size_t vlen)
{
	int *n = arg;
	return ++*n == 2;
}

static int fail_cb(void *arg, const char *key, size_t klen, const void *val,
                   size_t vlen)
{
	return CLEAVE_EREJECTED;
}

static void test_scan(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 0, false);
	cleave_rtx *tx = rt_begin(s, true);
	cleave_buf b;
	cleave_buf_init(&b);
	const char *keys[] = {"a", "b", "bb", "c", "d", "e"};
	for (size_t i = 0; i < CL_ARRAY_LEN(keys); i++)
		rt_put(tx, "s", keys[i], keys[i]);
	rt_put(tx, "t", "zz", "other namespace");
	TU_OK(s->m->commit(tx));

	for (int w = 0; w < 2; w++) { /* the same answers in both kinds */
		tx = rt_begin(s, w);
		assert_string_equal(rt_scan(tx, "s", NULL, NULL, 0, 0, &b),
		                    "a=a;b=b;bb=bb;c=c;d=d;e=e;");
		assert_string_equal(rt_scan(tx, "s", "b", "d", 0, 0, &b),
		                    "b=b;bb=bb;c=c;");
		assert_string_equal(rt_scan(tx, "s", "bc", "zz", 0, 0, &b),
		                    "c=c;d=d;e=e;");
		assert_string_equal(
		    rt_scan(tx, "s", NULL, NULL, CLEAVE_SCAN_REVERSE, 0, &b),
		    "e=e;d=d;c=c;bb=bb;b=b;a=a;");
		assert_string_equal(
		    rt_scan(tx, "s", "b", "d", CLEAVE_SCAN_REVERSE, 0, &b),
		    "c=c;bb=bb;b=b;");
		assert_string_equal(
		    rt_scan(tx, "s", "bc", "c", CLEAVE_SCAN_REVERSE, 0, &b),
		    "");
		assert_string_equal(
		    rt_scan(tx, "s", NULL, "b", CLEAVE_SCAN_REVERSE, 0, &b),
		    "a=a;");
		assert_string_equal(
		    rt_scan(tx, "s", "c", NULL, CLEAVE_SCAN_REVERSE, 2, &b),
		    "e=e;d=d;");
		assert_string_equal(
		    rt_scan(tx, "s", NULL, "zz", CLEAVE_SCAN_REVERSE, 1, &b),
		    "e=e;");
		assert_string_equal(rt_scan(tx, "s", "", "", 0, 0, &b), "");
		assert_string_equal(rt_scan(tx, "s", "", NULL, 0, 3, &b),
		                    "a=a;b=b;bb=bb;");
		assert_string_equal(rt_scan(tx, "s", "f", NULL, 0, 0, &b), "");
		assert_string_equal(rt_scan(tx, "none", NULL, NULL, 0, 0, &b),
		                    "");
		int n = 0;
		TU_OK(cleave_rtx_scan(tx, "s", NULL, NULL, 0, 0, stop_after_two,
		                      &n));
		assert_int_equal(n, 2);
		assert_int_equal(
		    cleave_rtx_scan(tx, "s", NULL, NULL, 0, 0, fail_cb, NULL),
		    CLEAVE_EREJECTED);
		assert_int_equal(
		    cleave_rtx_scan(tx, "s", NULL, NULL, 4, 0, rt_collect, &b),
		    CLEAVE_EINVAL);
		s->m->abort(tx);
	}
	cleave_buf_free(&b);
	s->m->close(s);
	tu_rmdir(dir);
}

static void test_checks(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 0, false);
	cleave_rtx *tx = rt_begin(s, true);
	char longkey[CLEAVE_KEY_MAX + 2];
	int64_t d[1] = {1}, out[1];

	assert_int_equal(cleave_rtx_put(tx, "Docs", "k", "v", 1),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, "", "k", "v", 1), CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, "a-b", "k", "v", 1), CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, NULL, "k", "v", 1), CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, "abcdefghijklmnopqrstuvwxyz0123456",
	                                "k", "v", 1),
	                 CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "32"));
	TU_OK(cleave_rtx_put(tx, "abcdefghijklmnopqrstuvwxyz012345", "k", "v",
	                     1));
	assert_int_equal(cleave_rtx_put(tx, "ns", NULL, "v", 1), CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, "ns", "", "v", 1), CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_put(tx, "ns", "k", NULL, 1), CLEAVE_EINVAL);
	memset(longkey, 'k', sizeof(longkey));
	longkey[CLEAVE_KEY_MAX + 1] = 0;
	assert_int_equal(cleave_rtx_put(tx, "ns", longkey, "v", 1),
	                 CLEAVE_ETOOBIG);
	assert_non_null(strstr(cleave_errmsg(), "480"));
	assert_int_equal(cleave_rtx_zincr(tx, "ns", longkey, 1, NULL),
	                 CLEAVE_ETOOBIG);
	assert_int_equal(cleave_rtx_list_put(tx, "ns", longkey, 1, "v", 1),
	                 CLEAVE_ETOOBIG);
	longkey[CLEAVE_KEY_MAX] = 0;
	TU_OK(cleave_rtx_put(tx, "ns", longkey, "v", 1));
	TU_OK(cleave_rtx_zincr(tx, "zs", longkey, 1, NULL));
	rt_put(tx, "ns", "k", "v");
	TU_OK(cleave_rtx_list_put(tx, "ls", longkey, 1, "v", 1));
	assert_int_equal(cleave_rtx_counter_add(tx, "c", "k", d, 0),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_counter_add(tx, "c", "k", d, 17),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_counter_get(tx, "c", "k", out, 17),
	                 CLEAVE_EINVAL);
	assert_int_equal(cleave_rtx_get(NULL, "c", "k", NULL, NULL),
	                 CLEAVE_EINVAL);

	/* SQL on a key/value store: not supported, and the message says
	 * which store. */
	assert_int_equal(cleave_rtx_exec(tx, "SELECT 1", NULL, 0, NULL),
	                 CLEAVE_ENOTSUP);
	assert_non_null(strstr(cleave_errmsg(), "lmdb"));
	cleave_rows *r = (cleave_rows *)1;
	assert_int_equal(cleave_rtx_query(tx, "SELECT 1", NULL, 0, &r),
	                 CLEAVE_ENOTSUP);
	assert_null(r);
	TU_OK(s->m->commit(tx));

	/* Every write call in a read transaction is refused. */
	tx = rt_begin(s, false);
	assert_int_equal(cleave_rtx_put(tx, "ns", "k", "v", 1),
	                 CLEAVE_EREADONLY);
	assert_non_null(strstr(cleave_errmsg(), "read-only"));
	assert_int_equal(cleave_rtx_del(tx, "ns", "k"), CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_zincr(tx, "z", "m", 1, NULL),
	                 CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_zrem(tx, "z", "m"), CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_counter_add(tx, "c", "k", d, 1),
	                 CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_list_put(tx, "l", "k", 1, "v", 1),
	                 CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_list_del(tx, "l", "k", 1),
	                 CLEAVE_EREADONLY);
	assert_int_equal(cleave_rtx_exec(tx, "SELECT 1", NULL, 0, NULL),
	                 CLEAVE_EREADONLY);
	assert_int_equal(s->m->checkpoint_set(tx, 5), CLEAVE_EREADONLY);
	rt_expect(tx, "ns", "k", "v");
	s->m->abort(tx);

	s->m->close(s);
	tu_rmdir(dir);
}

/* ---- checkpoint and dead letters ----------------------------------------- */

static void test_checkpoint(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 0, false);
	int64_t pos = -1;
	cleave_rtx *tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 0);
	s->m->abort(tx);

	/* Abort discards data and checkpoint together. */
	tx = rt_begin(s, true);
	rt_put(tx, "docs", "k", "v1");
	TU_OK(s->m->checkpoint_set(tx, 7));
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 7);
	s->m->abort(tx);
	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 0);
	rt_expect(tx, "docs", "k", NULL);
	s->m->abort(tx);

	tx = rt_begin(s, true);
	rt_put(tx, "docs", "k", "v2");
	TU_OK(s->m->checkpoint_set(tx, 42));
	TU_OK(s->m->commit(tx));
	s->m->close(s);

	s = open_store(dir, 0, false);
	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 42);
	rt_expect(tx, "docs", "k", "v2");
	s->m->abort(tx);
	s->m->close(s);

	/* Read-only: reads work, writing is refused. */
	s = open_store(dir, 0, true);
	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 42);
	rt_expect(tx, "docs", "k", "v2");
	s->m->commit(tx);
	assert_int_equal(s->m->begin(s, true, &tx), CLEAVE_EREADONLY);
	s->m->close(s);
	tu_rmdir(dir);
}

static int count_entries(void *arg, const char *table, const char *key,
                         size_t klen, const void *val, size_t vlen)
{
	(*(int *)arg)++;
	return 0;
}

static void test_dead_letters(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 0, false);
	cleave_event ev = {0};
	int64_t n = -1;
	int entries = 0;
	cleave_rtx *tx = rt_begin(s, true);
	TU_OK(s->m->dead_letter_count(tx, &n));
	assert_int_equal(n, 0);
	ev.position = 9;
	ev.type = "OrderPlaced";
	ev.stream = "order-1";
	ev.data = "{\"x\":1}";
	ev.data_len = strlen(ev.data);
	TU_OK(s->m->dead_letter_add(tx, &ev, "bad \"quote\""));
	ev.position = 10;
	ev.data = NULL;
	ev.data_len = 0;
	TU_OK(s->m->dead_letter_add(tx, &ev, "second"));
	TU_OK(s->m->commit(tx));
	tx = rt_begin(s, false);
	TU_OK(s->m->dead_letter_count(tx, &n));
	assert_int_equal(n, 2);
	TU_OK(s->m->dump(tx, count_entries, &entries));
	assert_int_equal(entries, 0); /* not projection data */
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

/* Builds the same final state through different histories. */
static void build(cl_rstore *s, bool reverse)
{
	cleave_rtx *tx = rt_begin(s, true);
	for (int j = 0; j < 50; j++) {
		int i = reverse ? 49 - j : j;
		char k[16], v[16];
		snprintf(k, sizeof(k), "k%02d", i);
		snprintf(v, sizeof(v), "v%d", i * 7);
		if (reverse) /* a detour that ends in the same state */
			rt_put(tx, "docs", k, "temporary");
		rt_put(tx, "docs", k, v);
		TU_OK(cleave_rtx_zincr(tx, "top", k, i % 5, NULL));
		int64_t d[2] = {1, i};
		TU_OK(cleave_rtx_counter_add(tx, "cnt", k + 2, d, 2));
		TU_OK(cleave_rtx_list_put(tx, "feed", "all", i, v, strlen(v)));
	}
	if (reverse) {
		TU_OK(cleave_rtx_zincr(tx, "top", "k07", 100, NULL));
		TU_OK(cleave_rtx_zincr(tx, "top", "k07", -100, NULL));
		TU_OK(s->m->checkpoint_set(tx, 99)); /* not data */
	}
	TU_OK(s->m->commit(tx));
}

static void test_dump(void **state)
{
	char *d1 = tu_tmpdir("rstore"), *d2 = tu_tmpdir("rstore");
	cl_rstore *s1 = open_store(d1, 0, false),
	          *s2 = open_store(d2, 0, false);
	cleave_buf b1, b2;
	cleave_buf_init(&b1);
	cleave_buf_init(&b2);
	build(s1, false);
	build(s2, true);
	cleave_rtx *t1 = rt_begin(s1, false), *t2 = rt_begin(s2, true);
	TU_OK(s1->m->dump(t1, dump_collect, &b1));
	TU_OK(s2->m->dump(t2, dump_collect, &b2));
	assert_true(b1.len > 0);
	assert_int_equal(b1.len, b2.len);
	assert_memory_equal(b1.p, b2.p, b1.len);
	/* Namespaces come in name order (values are binary: memmem). */
	const char *order[] = {"cnt|", "docs|", "feed|", "top|", "~z:top|"};
	const char *prev = b1.p;
	for (size_t i = 0; i < CL_ARRAY_LEN(order); i++) {
		const char *at =
		    memmem(b1.p, b1.len, order[i], strlen(order[i]));
		assert_non_null(at);
		assert_true(at >= prev);
		prev = at;
	}
	s1->m->commit(t1);
	s2->m->abort(t2);

	/* A difference shows. */
	t2 = rt_begin(s2, true);
	rt_put(t2, "docs", "k03", "changed");
	cleave_buf_reset(&b2);
	TU_OK(s2->m->dump(t2, dump_collect, &b2));
	assert_false(b1.len == b2.len && !memcmp(b1.p, b2.p, b1.len));
	s2->m->abort(t2);

	cleave_buf_free(&b1);
	cleave_buf_free(&b2);
	s1->m->close(s1);
	s2->m->close(s2);
	tu_rmdir(d1);
	tu_rmdir(d2);
}

/* ---- limits -------------------------------------------------------------- */

static void test_map_full(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir, 1 << 20, false);
	static char big[64 * 1024];
	int rc = 0, i;
	memset(big, 'b', sizeof(big));

	cleave_rtx *tx = rt_begin(s, true);
	rt_put(tx, "docs", "keep", "kept");
	TU_OK(s->m->checkpoint_set(tx, 1));
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, true);
	for (i = 0; i < 1000 && !rc; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%04d", i);
		rc = cleave_rtx_put(tx, "docs", k, big, sizeof(big));
	}
	assert_int_equal(rc, CLEAVE_ENOSPC);
	assert_non_null(strstr(cleave_errmsg(), "--lmdb-map-size"));
	assert_non_null(strstr(cleave_errmsg(), "1048576"));
	s->m->abort(tx);

	/* Still usable: a small write commits, old data is intact. */
	tx = rt_begin(s, true);
	rt_put(tx, "docs", "after", "ok");
	TU_OK(s->m->checkpoint_set(tx, 2));
	TU_OK(s->m->commit(tx));
	tx = rt_begin(s, false);
	rt_expect(tx, "docs", "keep", "kept");
	rt_expect(tx, "docs", "after", "ok");
	rt_expect(tx, "docs", "k0000", NULL);
	int64_t pos;
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 2);
	s->m->abort(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

/* ---- concurrency --------------------------------------------------------- */

#define RACE_COMMITS 400
#define RACE_READERS 6
#define RACE_NS      60

struct race {
	cl_rstore *s;
	_Atomic int done;
	_Atomic long reads;
	_Atomic int bad;
};

/* Commit i keeps a == b == i == checkpoint, and (for i < RACE_NS) creates
 * namespace n<i> holding "x" — so a reader whose snapshot has checkpoint c
 * must find every n<j> with j <= c. */
static int race_txn(struct race *r, int i, bool commit)
{
	cleave_rtx *tx;
	char v[24], ns[16];
	int rc = r->s->m->begin(r->s, true, &tx);
	if (rc)
		return rc;
	snprintf(v, sizeof(v), "%d", i);
	rc = cleave_rtx_put(tx, "pair", "a", v, strlen(v));
	rc = rc ? rc : cleave_rtx_put(tx, "pair", "b", v, strlen(v));
	if (i < RACE_NS) {
		snprintf(ns, sizeof(ns), "n%d", i);
		rc = rc ? rc : cleave_rtx_put(tx, ns, "x", "1", 1);
	}
	rc = rc ? rc : r->s->m->checkpoint_set(tx, i);
	if (!commit) {
		rc = rc ? rc : cleave_rtx_put(tx, "ghost", "g", "1", 1);
		r->s->m->abort(tx);
		return rc;
	}
	if (rc) {
		r->s->m->abort(tx);
		return rc;
	}
	return r->s->m->commit(tx);
}

/* Commit i keeps a == b == i == checkpoint, and (for i < RACE_NS) creates
 * namespace n<i> holding "x" — so a reader whose snapshot has checkpoint c
 * must find every n<j> with j <= c.  Some commits are preceded by an
 * aborted attempt that opened the same namespaces and a "ghost" one. */
static void *race_writer(void *arg)
{
	struct race *r = arg;
	for (int i = 1; i <= RACE_COMMITS; i++) {
		if ((i % 7 == 0 && race_txn(r, i, false)) ||
		    race_txn(r, i, true)) {
			r->bad++;
			break;
		}
	}
	r->done = 1;
	return NULL;
}

static void *race_reader(void *arg)
{
	struct race *r = arg;
	int tick = 0;
	while (!r->done || tick < 10) {
		cleave_rtx *tx;
		const void *pa, *pb;
		size_t na, nb;
		int64_t cp;
		tick += r->done;
		if (r->s->m->begin(r->s, false, &tx)) {
			r->bad++;
			return NULL;
		}
		if (r->s->m->checkpoint_get(tx, &cp))
			r->bad++;
		int ra = cleave_rtx_get(tx, "pair", "a", &pa, &na);
		int rb = cleave_rtx_get(tx, "pair", "b", &pb, &nb);
		if (cp == 0) {
			if (ra != CLEAVE_ENOTFOUND || rb != CLEAVE_ENOTFOUND)
				r->bad++;
		} else {
			char va[24] = "";
			if (!ra && na < sizeof(va))
				memcpy(va, pa, na);
			if (ra || rb || na != nb || memcmp(pa, pb, na) ||
			    atoll(va) != cp)
				r->bad++;
		}
		for (int j = 1; j < RACE_NS; j++) {
			char ns[16];
			snprintf(ns, sizeof(ns), "n%d", j);
			int rc = cleave_rtx_get(tx, ns, "x", NULL, NULL);
			if (rc != (j <= cp ? 0 : CLEAVE_ENOTFOUND))
				r->bad++;
		}
		if (cleave_rtx_get(tx, "ghost", "g", NULL, NULL) !=
		    CLEAVE_ENOTFOUND)
			r->bad++;
		r->s->m->commit(tx);
		r->reads++;
	}
	return NULL;
}

static void test_readers_race_writer(void **state)
{
	char *dir = tu_tmpdir("rstore");
	struct race r = {.s = open_store(dir, 0, false)};
	pthread_t w, rd[RACE_READERS];
	for (int i = 0; i < RACE_READERS; i++)
		pthread_create(&rd[i], NULL, race_reader, &r);
	pthread_create(&w, NULL, race_writer, &r);
	pthread_join(w, NULL);
	for (int i = 0; i < RACE_READERS; i++)
		pthread_join(rd[i], NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.reads > 0);
	r.s->m->close(r.s);

	/* Every namespace is found again after reopening. */
	cl_rstore *s = open_store(dir, 0, false);
	cleave_rtx *tx = rt_begin(s, false);
	for (int j = 1; j < RACE_NS; j++) {
		char ns[16];
		snprintf(ns, sizeof(ns), "n%d", j);
		rt_expect(tx, ns, "x", "1");
	}
	rt_expect(tx, "ghost", "g", NULL);
	s->m->abort(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kv_basic),
	    cmocka_unit_test(test_scan),
	    cmocka_unit_test(test_checks),
	    cmocka_unit_test(test_checkpoint),
	    cmocka_unit_test(test_dead_letters),
	    cmocka_unit_test(test_dump),
	    cmocka_unit_test(test_map_full),
	    cmocka_unit_test(test_readers_race_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
