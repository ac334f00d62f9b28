/*
 * test_rstore_redis.c — the "redis" read store against a real
 * redis-server: URI parsing, a write transaction's overlay (its own reads
 * and scans see its writes, others do not until commit), scans across
 * pages, checkpoints and dead letters, and — differentially — every
 * key/value, sorted-set, counter and list call against the "lmdb" store
 * given the same random operations; then drop, a Redis outage and
 * restart, Redis's maxmemory (ENOSPC, nothing applied), and readers
 * racing a writer (commits are seen whole).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redistest.h"
#include "rstoretest.h"
#include "testutil.h"

#include "core/util.h"
#include "read/rstore_int.h"
#include "read/rstore_redis.h"

static int nprefix;

/* A store under a fresh prefix. */
static cl_rstore *open_redis(char **path_out)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "t/%d", ++nprefix);
	char *path = rdt_path(prefix);
	cl_rstore *s = NULL;
	TU_OK(cl_rstore_redis.open(path, NULL, &s));
	if (path_out)
		*path_out = path;
	else
		free(path);
	return s;
}

/* ---- parsing ------------------------------------------------------------- */

static void parses(const char *uri, const char *host, int port, int db,
                   const char *rest)
{
	char h[256];
	int p, d;
	const char *r;
	TU_OK(cl_redis_parse(uri, h, sizeof(h), &p, &d, &r));
	assert_string_equal(h, host);
	assert_int_equal(p, port);
	assert_int_equal(d, db);
	assert_string_equal(r, rest);
}

static void test_parse(void **state)
{
	parses("redis://h", "h", 6379, 0, "");
	parses("redis://10.0.0.1:7000", "10.0.0.1", 7000, 0, "");
	parses("redis://h:7000/3", "h", 7000, 3, "");
	parses("redis://h:7000/3/shop/a", "h", 7000, 3, "/shop/a");
	parses("redis://h/shop", "h", 6379, 0, "/shop");
	/* credentials are taken out (kept for the server, never in paths) */
	parses("redis://u:p@h:7000/2/x", "h", 7000, 2, "/x");
	parses("redis://:p%40ss@h", "h", 6379, 0, "");
	static const char *const bad[] = {
	    "http://h",       "redis://",         "redis://:1",
	    "redis://h:0",    "redis://h:99999",  "redis://u@h",
	    "redis://u:@h",   "redis://:p%4@h",   "redis://h?db=1",
	    "redis://h:12x",  "redis://h/1x",     NULL,
	};
	for (int i = 0; bad[i]; i++) {
		char h[256];
		int p, d;
		const char *r;
		if (cl_redis_parse(bad[i], h, sizeof(h), &p, &d, &r) !=
		    CLEAVE_EINVAL)
			fail_msg("%s parsed", bad[i]);
		/* a password is never repeated in a message */
		assert_null(strstr(cleave_errmsg(), ":p"));
	}
	/* a store needs a prefix, and a server */
	cl_rstore *s = NULL;
	char uri[128];
	snprintf(uri, sizeof(uri), "redis://127.0.0.1:%d/0", rdt_port());
	assert_int_equal(cl_rstore_redis.open(uri, NULL, &s), CLEAVE_EINVAL);
	snprintf(uri, sizeof(uri), "redis://127.0.0.1:%d/0/a|b", rdt_port());
	assert_int_equal(cl_rstore_redis.open(uri, NULL, &s), CLEAVE_EINVAL);
	assert_int_equal(cl_rstore_redis.open("redis://127.0.0.1:1/0/x", NULL,
	                                      &s),
	                 CLEAVE_EIO);
	assert_non_null(strstr(cleave_errmsg(), "127.0.0.1:1"));
	assert_null(s);
}

/* ---- the overlay --------------------------------------------------------- */

static void test_overlay(void **state)
{
	cl_rstore *s = open_redis(NULL);
	cleave_rtx *w = rt_begin(s, true);
	rt_put(w, "docs", "a", "1");
	rt_put(w, "docs", "b", "2");
	rt_expect(w, "docs", "a", "1");
	cleave_rtx *r = rt_begin(s, false);
	rt_expect(r, "docs", "a", NULL); /* not committed */
	assert_int_equal(cleave_rtx_put(r, "docs", "x", "y", 1),
	                 CLEAVE_EREADONLY);
	s->m->abort(r);
	TU_OK(cl_rtx_commit(w));

	w = rt_begin(s, true);
	const void *p1;
	size_t n1;
	TU_OK(cleave_rtx_get(w, "docs", "a", &p1, &n1));
	rt_put(w, "docs", "a", "changed");
	TU_OK(cleave_rtx_del(w, "docs", "b"));
	TU_OK(cleave_rtx_del(w, "docs", "never")); /* absent: fine */
	/* what get handed out lives until the transaction ends */
	assert_int_equal(n1, 1);
	assert_memory_equal(p1, "1", 1);
	rt_expect(w, "docs", "a", "changed");
	rt_expect(w, "docs", "b", NULL);
	cleave_buf sb;
	cleave_buf_init(&sb);
	assert_string_equal(rt_scan(w, "docs", NULL, NULL, 0, 0, &sb),
	                    "a=changed;");
	cleave_buf_free(&sb);
	r = rt_begin(s, false);
	rt_expect(r, "docs", "a", "1");
	rt_expect(r, "docs", "b", "2");
	s->m->abort(r);
	cl_rtx_abort(w); /* nothing of it applies */
	r = rt_begin(s, false);
	rt_expect(r, "docs", "a", "1");
	rt_expect(r, "docs", "b", "2");
	rt_expect(r, "nons", "a", NULL);
	s->m->abort(r);
	s->m->close(s);
}

/* ---- differential: the same operations on "lmdb" and "redis" ------------ */

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int zcol(void *arg, const char *m, int64_t score)
{
	cleave_buf_addf(arg, "%s:%lld;", m, (long long)score);
	return 0;
}

static int ccol(void *arg, const char *key, const int64_t *v, int n)
{
	cleave_buf_addf(arg, "%s:", key);
	for (int i = 0; i < n; i++)
		cleave_buf_addf(arg, "%lld,", (long long)v[i]);
	return 0;
}

static int lcol(void *arg, int64_t seq, const void *val, size_t len)
{
	cleave_buf_addf(arg, "%lld=", (long long)seq);
	cleave_buf_add(arg, val, len);
	cleave_buf_addc(arg, ';');
	return 0;
}

static int dcol(void *arg, const char *table, const char *key, size_t klen,
                const void *val, size_t vlen)
{
	cleave_buf *b = arg;
	cleave_buf_adds(b, table);
	cleave_buf_addc(b, '/');
	cleave_buf_add(b, key, klen);
	cleave_buf_addc(b, '=');
	cleave_buf_add(b, val, vlen);
	cleave_buf_addc(b, ';');
	return 0;
}

/* One random operation on both transactions; reads compare answers. */
static void one_op(cleave_rtx *const tx[2], int i)
{
	char key[32], val[64], from[32], to[32];
	snprintf(key, sizeof(key), "k%03u", (unsigned)(next_rand() % 700));
	snprintf(val, sizeof(val), "v%llu-%d",
	         (unsigned long long)(next_rand() % 1000), i);
	int op = (int)(next_rand() % 100);
	cleave_buf b[2];
	for (int k = 0; k < 2; k++) {
		cleave_buf_init(&b[k]);
		cleave_buf_adds(&b[k], "");
	}
	if (op < 40) {
		for (int k = 0; k < 2; k++)
			rt_put(tx[k], "kv", key, val);
	} else if (op < 55) {
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_del(tx[k], "kv", key));
	} else if (op < 62) {
		for (int k = 0; k < 2; k++) {
			const void *p;
			size_t n;
			int rc = cleave_rtx_get(tx[k], "kv", key, &p, &n);
			cleave_buf_addf(&b[k], "%d:", rc);
			if (!rc)
				cleave_buf_add(&b[k], p, n);
		}
	} else if (op < 72) {
		snprintf(from, sizeof(from), "k%03u",
		         (unsigned)(next_rand() % 700));
		snprintf(to, sizeof(to), "k%03u",
		         (unsigned)(next_rand() % 800));
		int flags = (int)(next_rand() % 2);
		size_t limit = next_rand() % 3 ? next_rand() % 300 : 0;
		bool nofrom = next_rand() % 4 == 0, noto = next_rand() % 4 == 0;
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_scan(tx[k], "kv", nofrom ? NULL : from,
			                      noto ? NULL : to, flags, limit,
			                      rt_collect, &b[k]));
	} else if (op < 80) {
		int64_t d = (int64_t)(next_rand() % 21) - 10, out[2];
		snprintf(key, sizeof(key), "m%02u",
		         (unsigned)(next_rand() % 40));
		for (int k = 0; k < 2; k++) {
			TU_OK(cleave_rtx_zincr(tx[k], "board", key, d,
			                       &out[k]));
			cleave_buf_addf(&b[k], "%lld",
			              (long long)out[k]);
		}
	} else if (op < 84) {
		size_t off = next_rand() % 10, lim = next_rand() % 20;
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_zrange(tx[k], "board", off, lim,
			                        zcol, &b[k]));
	} else if (op < 90) {
		int64_t d[3] = {(int64_t)(next_rand() % 100), 1, -2};
		snprintf(key, sizeof(key), "2026-01-%02u",
		         (unsigned)(next_rand() % 28 + 1));
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_counter_add(tx[k], "daily", key, d,
			                             3));
	} else if (op < 93) {
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_counter_scan(tx[k], "daily",
			                              "2026-01-05",
			                              "2026-01-20", 0, ccol,
			                              &b[k]));
	} else if (op < 98) {
		char list[16];
		snprintf(list, sizeof(list), "u%u",
		         (unsigned)(next_rand() % 5));
		int64_t seq = (int64_t)(next_rand() % 100);
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_list_put(tx[k], "feed", list, seq,
			                          val, strlen(val)));
	} else {
		char list[16];
		snprintf(list, sizeof(list), "u%u",
		         (unsigned)(next_rand() % 5));
		for (int k = 0; k < 2; k++)
			TU_OK(cleave_rtx_list_page(tx[k], "feed", list, 60, 7,
			                           lcol, &b[k]));
	}
	if (strcmp(b[0].p, b[1].p))
		fail_msg("op %d (%d) differs:\n lmdb:  %s\n redis: %s", i, op,
		         b[0].p, b[1].p);
	for (int k = 0; k < 2; k++)
		cleave_buf_free(&b[k]);
}

static void test_differential(void **state)
{
	char *dir = tu_tmpdir("rdiff");
	cl_rstore_opts o = {.nosync = true};
	cl_rstore *s[2];
	TU_OK(cl_rstore_lmdb.open(dir, &o, &s[0]));
	s[1] = open_redis(NULL);
	int op = 0;
	for (int round = 0; round < 30; round++) {
		bool w = round % 5 != 4; /* some read-only rounds */
		cleave_rtx *tx[2] = {rt_begin(s[0], w), rt_begin(s[1], w)};
		int n = w ? 150 : 40;
		for (int i = 0; i < n; i++) {
			if (!w) { /* reads only: scans and gets */
				cleave_buf a, b;
				cleave_buf_init(&a);
				cleave_buf_init(&b);
				assert_string_equal(
				    rt_scan(tx[0], "kv", NULL, NULL, 0, 0, &a),
				    rt_scan(tx[1], "kv", NULL, NULL, 0, 0, &b));
				cleave_buf_free(&a);
				cleave_buf_free(&b);
				break;
			}
			one_op(tx, op++);
		}
		if (w && round % 7 == 3) { /* abandoned: nothing applies */
			cl_rtx_abort(tx[0]);
			cl_rtx_abort(tx[1]);
			continue;
		}
		if (w)
			for (int k = 0; k < 2; k++)
				TU_OK(tx[k]->m->checkpoint_set(tx[k], round));
		TU_OK(cl_rtx_commit(tx[0]));
		TU_OK(cl_rtx_commit(tx[1]));
	}
	/* the dumps (verify's view) are equal */
	cleave_buf d[2];
	for (int k = 0; k < 2; k++) {
		cleave_buf_init(&d[k]);
		cleave_buf_adds(&d[k], "");
		cleave_rtx *tx = rt_begin(s[k], false);
		TU_OK(s[k]->m->dump(tx, dcol, &d[k]));
		cl_rtx_abort(tx);
	}
	assert_true(d[0].len > 1000);
	assert_string_equal(d[0].p, d[1].p);
	for (int k = 0; k < 2; k++) {
		cleave_buf_free(&d[k]);
		s[k]->m->close(s[k]);
	}
	tu_rmdir(dir);
}

/* ---- the engine's records ------------------------------------------------ */

static void test_checkpoint_dead(void **state)
{
	cl_rstore *s = open_redis(NULL);
	cleave_rtx *tx = rt_begin(s, false);
	int64_t pos = -1, n = -1;
	TU_OK(s->m->checkpoint_get(tx, &pos));
	TU_OK(s->m->dead_letter_count(tx, &n));
	assert_int_equal(pos, 0);
	assert_int_equal(n, 0);
	assert_int_equal(s->m->dead_letter_add(tx, &(cleave_event){0}, "x"),
	                 CLEAVE_EREADONLY);
	cl_rtx_abort(tx);

	tx = rt_begin(s, true);
	rt_put(tx, "docs", "a", "1");
	TU_OK(s->m->checkpoint_set(tx, 5000000000LL));
	cleave_event ev = {.position = 17, .type = "T", .stream = "s-1",
	                   .data = "{\"x\":1}", .data_len = 7};
	TU_OK(s->m->dead_letter_add(tx, &ev, "bad \"thing\""));
	ev.position = 3;
	TU_OK(s->m->dead_letter_add(tx, &ev, "worse"));
	TU_OK(s->m->checkpoint_get(tx, &pos)); /* sees its own write */
	assert_int_equal(pos, 5000000000LL);
	TU_OK(cl_rtx_commit(tx));

	tx = rt_begin(s, false);
	TU_OK(s->m->checkpoint_get(tx, &pos));
	TU_OK(s->m->dead_letter_count(tx, &n));
	assert_int_equal(pos, 5000000000LL);
	assert_int_equal(n, 2);
	const void *p;
	size_t len;
	TU_OK(cleave_rtx_get(tx, "docs", "a", &p, &len));
	cleave_buf d;
	cleave_buf_init(&d);
	cleave_buf_adds(&d, "");
	TU_OK(s->m->dump(tx, dcol, &d)); /* data only */
	assert_string_equal(d.p, "docs/a=1;");
	cleave_buf_free(&d);
	cl_rtx_abort(tx);
	/* a checkpoint of the wrong size is corruption, not 0 */
	redisReply *r = rdt_cmd("HSET t/%d|h|#cleave checkpoint abc",
	                        nprefix);
	freeReplyObject(r);
	tx = rt_begin(s, false);
	assert_int_equal(s->m->checkpoint_get(tx, &pos), CLEAVE_ECORRUPT);
	cl_rtx_abort(tx);
	s->m->close(s);
}

/* ---- drop ------------------------------------------------------------------ */

static void test_drop(void **state)
{
	char *pa, *pb;
	cl_rstore *a = open_redis(&pa), *b = open_redis(&pb);
	int na = nprefix - 1, nb = nprefix;
	for (int k = 0; k < 2; k++) {
		cl_rstore *s = k ? b : a;
		cleave_rtx *tx = rt_begin(s, true);
		rt_put(tx, "docs", "a", "1");
		TU_OK(cleave_rtx_zincr(tx, "board", "m", 3, NULL));
		TU_OK(s->m->checkpoint_set(tx, 9));
		TU_OK(cl_rtx_commit(tx));
	}
	a->m->close(a);
	redisReply *r = rdt_cmd("KEYS t/%d|*", na);
	assert_true(r->elements >= 7); /* 3 namespaces x 2, and the set */
	freeReplyObject(r);
	TU_OK(cl_rstore_redis.drop(pa));
	r = rdt_cmd("KEYS t/%d|*", na);
	assert_int_equal(r->elements, 0);
	freeReplyObject(r);
	r = rdt_cmd("KEYS t/%d|*", nb); /* the other copy is untouched */
	assert_true(r->elements >= 7);
	freeReplyObject(r);
	TU_OK(cl_rstore_redis.drop(pa)); /* dropping nothing is fine */
	b->m->close(b);
	free(pa);
	free(pb);
}

/* ---- one writing engine per copy ------------------------------------------ */

static void test_claim(void **state)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "t/%d", ++nprefix);
	char *path = rdt_path(prefix);
	cl_rstore_opts a = {.owner = "host:/data/a"}, b = {.owner = "host:/b"};
	cl_rstore_opts ro = {.owner = "host:/b", .read_only = true};
	cl_rstore *s = NULL, *s2 = NULL;
	TU_OK(cl_rstore_redis.open(path, &a, &s));
	assert_int_equal(cl_rstore_redis.open(path, &b, &s2), CLEAVE_EBUSY);
	assert_non_null(strstr(cleave_errmsg(), "host:/data/a"));
	assert_null(s2);
	TU_OK(cl_rstore_redis.open(path, &a, &s2)); /* a restart of a */
	s2->m->close(s2);
	TU_OK(cl_rstore_redis.open(path, &ro, &s2)); /* readers: anyone */
	s2->m->close(s2);
	s->m->close(s);
	TU_OK(cl_rstore_redis.drop(path)); /* the claim goes with it */
	TU_OK(cl_rstore_redis.open(path, &b, &s));
	s->m->close(s);
	TU_OK(cl_rstore_redis.drop(path));
	free(path);
}

static int add_name(void *arg, const char *name)
{
	cleave_buf_adds(arg, name);
	cleave_buf_addc(arg, ';');
	return 0;
}

/* The engine sweeps its own unused copies: listing finds the copies one
 * owner claimed under a root, not another's, not deeper prefixes'. */
static void test_list(void **state)
{
	static const char *const names[] = {"x.g1", "x.g2", "x.g3",
	                                    "sub/x.g1", "y*.g1"};
	static const char *const owners[] = {"a", "a", "b", "a", "a"};
	char root[64], path[128];
	snprintf(root, sizeof(root), "redis://127.0.0.1:%d/0/l%d", rdt_port(),
	         ++nprefix);
	for (size_t i = 0; i < 5; i++) {
		cl_rstore_opts o = {.owner = owners[i]};
		cl_rstore *s;
		snprintf(path, sizeof(path), "%s/%s", root, names[i]);
		TU_OK(cl_rstore_redis.open(path, &o, &s));
		s->m->close(s);
	}
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "");
	TU_OK(cl_redis_list(root, "a", add_name, &b));
	/* SCAN's order is Redis's: compare as a set */
	assert_int_equal(b.len, strlen("x.g1;x.g2;y*.g1;"));
	assert_non_null(strstr(b.p, "x.g1;"));
	assert_non_null(strstr(b.p, "x.g2;"));
	assert_non_null(strstr(b.p, "y*.g1;"));
	cleave_buf_free(&b);
}

/* ---- failures ------------------------------------------------------------- */

static void test_outage(void **state)
{
	cl_rstore *s = open_redis(NULL);
	cleave_rtx *tx = rt_begin(s, true);
	rt_put(tx, "docs", "a", "1");
	TU_OK(s->m->checkpoint_set(tx, 1));
	TU_OK(cl_rtx_commit(tx));

	rdt_stop();
	char port[32];
	snprintf(port, sizeof(port), "127.0.0.1:%d", rdt_port());
	/* a pooled connection fails at its first command, a new one at
	 * connect; both are EIO naming the server */
	for (int i = 0; i < 2; i++) {
		int rc = s->m->begin(s, false, &tx);
		if (rc == 0) {
			const void *p;
			size_t n;
			rc = cleave_rtx_get(tx, "docs", "a", &p, &n);
			cl_rtx_abort(tx);
		}
		assert_int_equal(rc, CLEAVE_EIO);
		assert_non_null(strstr(cleave_errmsg(), port));
	}
	rdt_restart(); /* the append-only file brings the data back */
	tx = rt_begin(s, true);
	rt_expect(tx, "docs", "a", "1");
	rt_put(tx, "docs", "b", "2");
	TU_OK(s->m->checkpoint_set(tx, 2));
	TU_OK(cl_rtx_commit(tx));
	tx = rt_begin(s, false);
	rt_expect(tx, "docs", "b", "2");
	cl_rtx_abort(tx);
	s->m->close(s);
}

/* Redis restarted from older data (here: its checkpoint set back by
 * hand): the next commit is refused rather than applied on top, which
 * would skip the events in between; reopened, the copy starts from what
 * Redis has. */
static void test_lost_writes(void **state)
{
	char *path;
	cl_rstore *s = open_redis(&path);
	int me = nprefix;
	cleave_rtx *tx = rt_begin(s, true);
	rt_put(tx, "docs", "a", "1");
	TU_OK(s->m->checkpoint_set(tx, 5));
	TU_OK(cl_rtx_commit(tx));
	unsigned char three[8] = {3};
	redisReply *r = rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, three,
	                        sizeof(three));
	freeReplyObject(r);
	/* refused at begin, before a handler reads what is not there */
	assert_int_equal(s->m->begin(s, true, &tx), CLEAVE_EIO);
	assert_non_null(strstr(cleave_errmsg(), "lost writes"));
	/* and a change after begin makes the commit fail (WATCH) */
	unsigned char five[8] = {5};
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, five,
	                        sizeof(five)));
	tx = rt_begin(s, true);
	rt_put(tx, "docs", "b", "2");
	TU_OK(s->m->checkpoint_set(tx, 6));
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, three,
	                        sizeof(three)));
	assert_int_equal(cl_rtx_commit(tx), CLEAVE_EIO);
	assert_non_null(strstr(cleave_errmsg(), "changed meanwhile"));
	/* an abandoned write transaction leaves no WATCH behind on the
	 * pooled connection */
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, five,
	                        sizeof(five)));
	tx = rt_begin(s, true);
	cl_rtx_abort(tx);
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, five,
	                        sizeof(five)));
	tx = rt_begin(s, true);
	TU_OK(cl_rtx_commit(tx)); /* nothing written: nothing sent */
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, five,
	                        sizeof(five)));
	tx = rt_begin(s, true);
	TU_OK(s->m->checkpoint_set(tx, 6));
	TU_OK(cl_rtx_commit(tx));
	freeReplyObject(rdt_cmd("HSET t/%d|h|#cleave checkpoint %b", me, three,
	                        sizeof(three)));
	s->m->close(s);
	TU_OK(cl_rstore_redis.open(path, NULL, &s));
	tx = rt_begin(s, false);
	int64_t pos;
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 3);
	rt_expect(tx, "docs", "b", NULL);
	cl_rtx_abort(tx);
	tx = rt_begin(s, true);
	TU_OK(s->m->checkpoint_set(tx, 4));
	TU_OK(cl_rtx_commit(tx));
	s->m->close(s);
	free(path);
}

static void test_maxmemory(void **state)
{
	cl_rstore *s = open_redis(NULL);
	cleave_rtx *tx = rt_begin(s, true);
	TU_OK(s->m->checkpoint_set(tx, 1));
	TU_OK(cl_rtx_commit(tx));
	freeReplyObject(rdt_cmd("CONFIG SET maxmemory 1"));
	tx = rt_begin(s, true);
	rt_put(tx, "docs", "a", "1");
	TU_OK(s->m->checkpoint_set(tx, 2));
	assert_int_equal(cl_rtx_commit(tx), CLEAVE_ENOSPC);
	assert_non_null(strstr(cleave_errmsg(), "maxmemory"));
	freeReplyObject(rdt_cmd("CONFIG SET maxmemory 0"));
	/* nothing of the refused commit applied */
	tx = rt_begin(s, false);
	int64_t pos;
	TU_OK(s->m->checkpoint_get(tx, &pos));
	assert_int_equal(pos, 1);
	rt_expect(tx, "docs", "a", NULL);
	cl_rtx_abort(tx);
	tx = rt_begin(s, true);
	rt_put(tx, "docs", "a", "1");
	TU_OK(s->m->checkpoint_set(tx, 2));
	TU_OK(cl_rtx_commit(tx));
	s->m->close(s);
}

/* ---- readers racing a writer ------------------------------------------------ */

#define RACE_COMMITS 300

typedef struct race {
	cl_rstore *s;
	_Atomic bool done;
	int bad, reads;
	pthread_mutex_t mu;
} race;

static int64_t num(cleave_rtx *tx, const char *k)
{
	const void *p;
	size_t n;
	if (cleave_rtx_get(tx, "r", k, &p, &n))
		return -1;
	return strtoll(p, NULL, 10);
}

/* Each commit writes a = b = checkpoint = i; a reader reading the
 * checkpoint, then a, then b never sees them go backwards: a commit is
 * seen whole, and later. */
static void *reader(void *arg)
{
	race *r = arg;
	while (!r->done) {
		cleave_rtx *tx;
		if (r->s->m->begin(r->s, false, &tx)) {
			r->bad++;
			break;
		}
		int64_t c;
		r->s->m->checkpoint_get(tx, &c);
		int64_t a = num(tx, "a"), b = num(tx, "b");
		cl_rtx_abort(tx);
		pthread_mutex_lock(&r->mu);
		if ((c > 0 && a < c) || b < a)
			r->bad++;
		r->reads++;
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

static void test_race(void **state)
{
	race r = {.s = open_redis(NULL)};
	pthread_mutex_init(&r.mu, NULL);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, reader, &r);
	for (int i = 1; i <= RACE_COMMITS; i++) {
		char v[24];
		snprintf(v, sizeof(v), "%d", i);
		cleave_rtx *tx = rt_begin(r.s, true);
		rt_put(tx, "r", "a", v);
		rt_put(tx, "r", "b", v);
		TU_OK(r.s->m->checkpoint_set(tx, i));
		TU_OK(cl_rtx_commit(tx));
	}
	r.done = true;
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(r.bad, 0);
	assert_true(r.reads > 0);
	pthread_mutex_destroy(&r.mu);
	r.s->m->close(r.s);
}

int main(void)
{
	int rc = rdt_start();
	if (rc == 1) {
		printf("SKIPPED: redis-server is not installed\n");
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_overlay),
	    cmocka_unit_test(test_differential),
	    cmocka_unit_test(test_checkpoint_dead),
	    cmocka_unit_test(test_drop),
	    cmocka_unit_test(test_claim),
	    cmocka_unit_test(test_list),
	    cmocka_unit_test(test_outage),
	    cmocka_unit_test(test_lost_writes),
	    cmocka_unit_test(test_maxmemory),
	    cmocka_unit_test(test_race),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	rdt_stop();
	return rc;
}
