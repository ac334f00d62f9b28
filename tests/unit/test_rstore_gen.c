/*
 * test_rstore_gen.c — the generic sorted sets, counters and lists
 * (rstore_gen.c) and cleave_key(), through the public calls on an "lmdb"
 * store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rstoretest.h"
#include "testutil.h"

#include "core/util.h"
#include "read/rstore.h"
#include "read/rstore_int.h"

static cl_rstore *open_store(const char *dir)
{
	cl_rstore_opts o = {.nosync = true};
	cl_rstore *s = NULL;
	TU_OK(cl_rstore_lmdb.open(dir, &o, &s));
	assert_non_null(s);
	return s;
}

static void test_cleave_key(void **state)
{
	char buf[CLEAVE_KEY_MAX + 1], small[8];
	const char *p2[] = {"us", "2024-01-02"};
	assert_int_equal(cleave_key(buf, sizeof(buf), 2, p2), 13);
	assert_memory_equal(buf,
	                    "us\x1f"
	                    "2024-01-02",
	                    14);
	const char *p1[] = {"solo"};
	assert_int_equal(cleave_key(buf, sizeof(buf), 1, p1), 4);
	assert_string_equal(buf, "solo");
	const char *bad[] = {"a\x1f"
	                     "b",
	                     "c"};
	assert_int_equal(cleave_key(buf, sizeof(buf), 2, bad), CLEAVE_EINVAL);
	const char *nul[] = {"a", NULL};
	assert_int_equal(cleave_key(buf, sizeof(buf), 2, nul), CLEAVE_EINVAL);
	assert_int_equal(cleave_key(small, sizeof(small), 2, p2),
	                 CLEAVE_ETOOBIG);
	assert_int_equal(cleave_key(buf, sizeof(buf), 0, p2), CLEAVE_EINVAL);
	char big[CLEAVE_KEY_MAX];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	const char *pb[] = {big, "yy"};
	char huge[2 * CLEAVE_KEY_MAX];
	assert_int_equal(cleave_key(huge, sizeof(huge), 2, pb), CLEAVE_ETOOBIG);
}

/* ---- sorted sets --------------------------------------------------------- */

static int zcollect(void *arg, const char *member, int64_t score)
{
	cleave_buf *b = arg;
	cleave_buf_addf(b, "%s:%lld;", member, (long long)score);
	return 0;
}

static const char *zrange_str(cleave_rtx *tx, const char *ns, size_t off,
                              size_t lim, cleave_buf *b)
{
	cleave_buf_reset(b);
	cleave_buf_adds(b, "");
	TU_OK(cleave_rtx_zrange(tx, ns, off, lim, zcollect, b));
	return b->p;
}

static void test_zset(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	cleave_buf b;
	int64_t sc;
	cleave_buf_init(&b);

	TU_OK(cleave_rtx_zincr(tx, "top", "p3", 5, &sc));
	assert_int_equal(sc, 5);
	TU_OK(cleave_rtx_zincr(tx, "top", "p1", 5, NULL));
	TU_OK(cleave_rtx_zincr(tx, "top", "p2", -3, NULL));
	TU_OK(cleave_rtx_zincr(tx, "top", "p4", 0, NULL)); /* created at 0 */
	TU_OK(cleave_rtx_zincr(tx, "top", "p5", INT64_MIN, NULL));
	TU_OK(cleave_rtx_zincr(tx, "top", "p6", INT64_MAX, NULL));
	assert_string_equal(zrange_str(tx, "top", 0, 0, &b),
	                    "p6:9223372036854775807;p1:5;p3:5;p4:0;p2:-3;"
	                    "p5:-9223372036854775808;");
	assert_int_equal(cleave_rtx_zincr(tx, "top", "p6", 1, NULL),
	                 CLEAVE_EINVAL);
	TU_OK(cleave_rtx_zrem(tx, "top", "p6"));
	TU_OK(cleave_rtx_zrem(tx, "top", "p5"));
	TU_OK(cleave_rtx_zrem(tx, "top", "never")); /* absent: fine */
	/* Increment an existing member past others; back to a tie. */
	TU_OK(cleave_rtx_zincr(tx, "top", "p2", 10, &sc));
	assert_int_equal(sc, 7);
	assert_string_equal(zrange_str(tx, "top", 0, 0, &b),
	                    "p2:7;p1:5;p3:5;p4:0;");
	TU_OK(cleave_rtx_zincr(tx, "top", "p2", -2, &sc));
	assert_string_equal(zrange_str(tx, "top", 0, 0, &b),
	                    "p1:5;p2:5;p3:5;p4:0;");
	TU_OK(cleave_rtx_zincr(tx, "top", "p4", -5, NULL)); /* 0 → -5 */
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	assert_string_equal(zrange_str(tx, "top", 0, 2, &b), "p1:5;p2:5;");
	assert_string_equal(zrange_str(tx, "top", 2, 2, &b), "p3:5;p4:-5;");
	assert_string_equal(zrange_str(tx, "top", 3, 10, &b), "p4:-5;");
	assert_string_equal(zrange_str(tx, "top", 4, 10, &b), "");
	assert_string_equal(zrange_str(tx, "empty", 0, 10, &b), "");
	TU_OK(cleave_rtx_zscore(tx, "top", "p3", &sc));
	assert_int_equal(sc, 5);
	assert_int_equal(cleave_rtx_zscore(tx, "top", "p6", &sc),
	                 CLEAVE_ENOTFOUND);
	s->m->abort(tx);
	cleave_buf_free(&b);
	s->m->close(s);
	tu_rmdir(dir);
}

/* ---- counters ------------------------------------------------------------ */

static int ccollect(void *arg, const char *key, const int64_t *vals, int n)
{
	cleave_buf *b = arg;
	for (const char *p = key; *p; p++)
		cleave_buf_addc(b, *p == 0x1f ? '|' : *p);
	for (int i = 0; i < n; i++)
		cleave_buf_addf(b, "%c%lld", i ? ',' : '=', (long long)vals[i]);
	cleave_buf_addc(b, ';');
	return 0;
}

static void day_key(char *buf, const char *country, const char *day)
{
	const char *parts[] = {country, day};
	assert_true(cleave_key(buf, CLEAVE_KEY_MAX + 1, 2, parts) > 0);
}

static void test_counters(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	char k[CLEAVE_KEY_MAX + 1], from[CLEAVE_KEY_MAX + 1],
	    to[CLEAVE_KEY_MAX + 1];
	int64_t out[4];
	cleave_buf b;
	cleave_buf_init(&b);

	/* Orders placed (1, +total) and cancelled (-1, -total). */
	const struct {
		const char *c, *d;
		int64_t n, cents;
	} ev[] = {
	    {"us", "2024-01-02", 1, 1000},  {"us", "2024-01-01", 1, 500},
	    {"usa", "2024-01-01", 1, 7},    {"de", "2024-01-01", 1, 300},
	    {"us", "2024-01-02", 1, 250},   {"us", "2024-01-03", 1, 99},
	    {"us", "2024-01-02", -1, -250}, {"us", "2024-01-05", 1, 1},
	};
	for (size_t i = 0; i < CL_ARRAY_LEN(ev); i++) {
		int64_t d[2] = {ev[i].n, ev[i].cents};
		day_key(k, ev[i].c, ev[i].d);
		TU_OK(cleave_rtx_counter_add(tx, "rev", k, d, 2));
	}
	/* A wider add extends the stored fields with zeros. */
	day_key(k, "de", "2024-01-01");
	int64_t d3[3] = {0, 0, 5};
	TU_OK(cleave_rtx_counter_add(tx, "rev", k, d3, 3));
	int64_t d1[1] = {INT64_MAX};
	assert_int_equal(cleave_rtx_counter_add(tx, "rev", k, d1, 1),
	                 CLEAVE_EINVAL);
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	day_key(k, "us", "2024-01-02");
	TU_OK(cleave_rtx_counter_get(tx, "rev", k, out, 4));
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 1000);
	assert_int_equal(out[2], 0); /* beyond the stored fields */
	assert_int_equal(out[3], 0);
	TU_OK(cleave_rtx_counter_get(tx, "rev", k, out, 1));
	day_key(k, "us", "2023-12-31");
	assert_int_equal(cleave_rtx_counter_get(tx, "rev", k, out, 2),
	                 CLEAVE_ENOTFOUND);

	/* One country's days in [from, to): "us" never picks up "usa". */
	day_key(from, "us", "2024-01-01");
	day_key(to, "us", "2024-01-04");
	TU_OK(cleave_rtx_counter_scan(tx, "rev", from, to, 0, ccollect, &b));
	assert_string_equal(b.p, "us|2024-01-01=1,500;us|2024-01-02=1,1000;"
	                         "us|2024-01-03=1,99;");
	cleave_buf_reset(&b);
	TU_OK(cleave_rtx_counter_scan(tx, "rev", from, to, 1, ccollect, &b));
	assert_string_equal(b.p, "us|2024-01-01=1,500;");
	cleave_buf_reset(&b);
	TU_OK(cleave_rtx_counter_scan(tx, "rev", NULL, "u", 0, ccollect, &b));
	assert_string_equal(b.p, "de|2024-01-01=1,300,5;");
	s->m->abort(tx);
	cleave_buf_free(&b);
	s->m->close(s);
	tu_rmdir(dir);
}

/* ---- lists --------------------------------------------------------------- */

struct page {
	cleave_buf b;
	int64_t last;
};

static int lcollect(void *arg, int64_t seq, const void *val, size_t len)
{
	struct page *p = arg;
	cleave_buf_addf(&p->b, "%lld=", (long long)seq);
	cleave_buf_add(&p->b, val, len);
	cleave_buf_addc(&p->b, ';');
	p->last = seq;
	return 0;
}

static const char *page_str(cleave_rtx *tx, const char *ns, const char *list,
                            int64_t before, size_t limit, struct page *p)
{
	cleave_buf_reset(&p->b);
	cleave_buf_adds(&p->b, "");
	TU_OK(cleave_rtx_list_page(tx, ns, list, before, limit, lcollect, p));
	return p->b.p;
}

static void test_lists(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	struct page p = {0};
	char comp[64];
	const char *parts[] = {"u1", "x"};
	cleave_buf_init(&p.b);

	/* Lists whose keys are prefixes of one another or composite must
	 * not leak into each other. */
	assert_true(cleave_key(comp, sizeof(comp), 2, parts) > 0);
	const int64_t seqs[] = {5, -3, 100, 7, 42, 0};
	for (size_t i = 0; i < CL_ARRAY_LEN(seqs); i++) {
		char v[32];
		snprintf(v, sizeof(v), "o%lld", (long long)seqs[i]);
		TU_OK(cleave_rtx_list_put(tx, "orders", "u1", seqs[i], v,
		                          strlen(v)));
	}
	TU_OK(cleave_rtx_list_put(tx, "orders", "u", 6, "X", 1));
	TU_OK(cleave_rtx_list_put(tx, "orders", "u10", 6, "Y", 1));
	TU_OK(cleave_rtx_list_put(tx, "orders", comp, 6, "Z", 1));
	TU_OK(cleave_rtx_list_put(tx, "orders", "u1", 7, "o7b", 3));
	TU_OK(cleave_rtx_list_put(tx, "orders", "u1", INT64_MIN, "min", 3));
	TU_OK(s->m->commit(tx));

	tx = rt_begin(s, false);
	assert_string_equal(page_str(tx, "orders", "u1", INT64_MAX, 3, &p),
	                    "100=o100;42=o42;7=o7b;");
	assert_string_equal(page_str(tx, "orders", "u1", p.last, 3, &p),
	                    "5=o5;0=o0;-3=o-3;");
	assert_string_equal(page_str(tx, "orders", "u1", p.last, 3, &p),
	                    "-9223372036854775808=min;");
	assert_string_equal(page_str(tx, "orders", "u1", p.last, 3, &p), "");
	assert_string_equal(page_str(tx, "orders", "u", INT64_MAX, 0, &p),
	                    "6=X;");
	assert_string_equal(page_str(tx, "orders", comp, INT64_MAX, 0, &p),
	                    "6=Z;");
	assert_string_equal(page_str(tx, "orders", "nobody", INT64_MAX, 0, &p),
	                    "");
	const void *v;
	size_t n;
	TU_OK(cleave_rtx_list_get(tx, "orders", "u1", 42, &v, &n));
	assert_int_equal(n, 3);
	assert_memory_equal(v, "o42", 3);
	assert_int_equal(cleave_rtx_list_get(tx, "orders", "u1", 43, &v, &n),
	                 CLEAVE_ENOTFOUND);
	s->m->abort(tx);

	tx = rt_begin(s, true);
	TU_OK(cleave_rtx_list_del(tx, "orders", "u1", 42));
	TU_OK(cleave_rtx_list_del(tx, "orders", "u1", 43));
	assert_string_equal(page_str(tx, "orders", "u1", 100, 2, &p),
	                    "7=o7b;5=o5;");
	TU_OK(s->m->commit(tx));
	cleave_buf_free(&p.b);
	s->m->close(s);
	tu_rmdir(dir);
}

/* Capped lists: the count kept by put and del, trim keeps the newest. */
static void test_list_len_trim(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	struct page p = {0};
	int64_t n = -1, gone = -1;
	cleave_buf_init(&p.b);
	TU_OK(cleave_rtx_list_len(tx, "tl", "a", &n));
	assert_int_equal(n, 0);
	for (int64_t i = 1; i <= 10; i++) {
		TU_OK(cleave_rtx_list_put(tx, "tl", "a", i * 10, "x", 1));
		TU_OK(cleave_rtx_list_trim(tx, "tl", "a", 4, &gone));
		assert_int_equal(gone, i > 4 ? 1 : 0);
	}
	TU_OK(cleave_rtx_list_put(tx, "tl", "a", 100, "y", 1)); /* replace */
	TU_OK(cleave_rtx_list_put(tx, "tl", "ab", 5, "z", 1));  /* another */
	TU_OK(cleave_rtx_list_len(tx, "tl", "a", &n));
	assert_int_equal(n, 4);
	TU_OK(cleave_rtx_list_del(tx, "tl", "a", 90));
	TU_OK(cleave_rtx_list_del(tx, "tl", "a", 90)); /* absent: no change */
	TU_OK(cleave_rtx_list_len(tx, "tl", "a", &n));
	assert_int_equal(n, 3);
	TU_OK(s->m->commit(tx));
	tx = rt_begin(s, false);
	assert_string_equal(page_str(tx, "tl", "a", INT64_MAX, 0, &p),
	                    "100=y;80=x;70=x;");
	TU_OK(cleave_rtx_list_len(tx, "tl", "ab", &n));
	assert_int_equal(n, 1);
	assert_int_equal(cleave_rtx_list_trim(tx, "tl", "a", 1, NULL),
	                 CLEAVE_EREADONLY);
	s->m->abort(tx);
	/* trim to 0 empties it; trimming more than there is is fine */
	tx = rt_begin(s, true);
	TU_OK(cleave_rtx_list_trim(tx, "tl", "a", 0, &gone));
	assert_int_equal(gone, 3);
	TU_OK(cleave_rtx_list_trim(tx, "tl", "a", 0, &gone));
	assert_int_equal(gone, 0);
	TU_OK(cleave_rtx_list_len(tx, "tl", "a", &n));
	assert_int_equal(n, 0);
	assert_int_equal(cleave_rtx_list_trim(tx, "tl", "a", -1, NULL),
	                 CLEAVE_EINVAL);
	TU_OK(s->m->commit(tx));
	cleave_buf_free(&p.b);
	s->m->close(s);
	tu_rmdir(dir);
}

typedef struct wscan {
	cleave_rtx *tx;
	int visited;
} wscan;

/* Writes while it scans: deletes what it visits, adds keys behind and
 * ahead of its position. */
static int write_while_scanning(void *arg, const char *key, size_t klen,
                                const void *val, size_t vlen)
{
	wscan *w = arg;
	char k[64];
	w->visited++;
	int rc = cleave_rtx_del(w->tx, "w", key);
	if (rc)
		return rc;
	snprintf(k, sizeof(k), "a-%.*s", (int)klen, key); /* behind */
	if ((rc = cleave_rtx_put(w->tx, "w", k, "b", 1)))
		return rc;
	snprintf(k, sizeof(k), "z-%.*s", (int)klen, key); /* ahead */
	return cleave_rtx_put(w->tx, "w", k, "a", 1);
}

static void test_write_inside_scan(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	char k[32];
	for (int i = 0; i < 200; i++) { /* more than one page */
		snprintf(k, sizeof(k), "m%03d", i);
		rt_put(tx, "w", k, "v");
	}
	wscan w = {tx, 0};
	TU_OK(cleave_rtx_scan(tx, "w", "m", "n", 0, 0, write_while_scanning,
	                      &w));
	assert_int_equal(w.visited, 200); /* each once, none of the new */
	rt_expect(tx, "w", "m000", NULL);
	rt_expect(tx, "w", "m199", NULL);
	rt_expect(tx, "w", "a-m150", "b");
	rt_expect(tx, "w", "z-m150", "a");
	/* in reverse, with a limit across pages */
	w.visited = 0;
	TU_OK(cleave_rtx_scan(tx, "w", "a", "b", CLEAVE_SCAN_REVERSE, 150,
	                      write_while_scanning, &w));
	assert_int_equal(w.visited, 150);
	TU_OK(s->m->commit(tx));
	s->m->close(s);
	tu_rmdir(dir);
}

/* verify prints the keys of generic structures as the domain wrote them */
static void test_key_text(void **state)
{
	char *dir = tu_tmpdir("rstore");
	cl_rstore *s = open_store(dir);
	cleave_rtx *tx = rt_begin(s, true);
	TU_OK(cleave_rtx_list_put(tx, "l", "u\x1f" "7", -42, "x", 1));
	TU_OK(cleave_rtx_zincr(tx, "z", "p1", 5, NULL));
	TU_OK(s->m->commit(tx));
	tx = rt_begin(s, false);
	cleave_buf b = CLEAVE_BUF_INIT;
	char t[256];
	rt_scan(tx, "l", NULL, NULL, 0, 0, &b);
	char *eq = strchr(b.p, '=');
	cl_gen_key_text("l", b.p, (size_t)(eq - b.p), t, sizeof(t));
	assert_string_equal(t, "u\x1f" "7 #-42");
	cleave_buf_reset(&b);
	TU_OK(tx->m->scan(tx, "~z:z", NULL, NULL, 0, 0, rt_collect, &b));
	eq = strchr(b.p, '=');
	cl_gen_key_text("~z:z", b.p, (size_t)(eq - b.p), t, sizeof(t));
	assert_string_equal(t, "p1 (score 5)");
	cl_gen_key_text("docs", "plain", 5, t, sizeof(t));
	assert_string_equal(t, "plain");
	assert_int_equal(cl_gen_key_text("docs", "plain", 5, t, 3), 2);
	cleave_buf_free(&b);
	s->m->abort(tx);
	s->m->close(s);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cleave_key),
	    cmocka_unit_test(test_zset),
	    cmocka_unit_test(test_counters),
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_list_len_trim),
	    cmocka_unit_test(test_write_inside_scan),
	    cmocka_unit_test(test_key_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
