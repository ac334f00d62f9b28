/*
 * test_live.c — live queries in the engine (cleave_live_*): a commit wakes
 * the subscriptions whose keys it wrote and no other; a query that found
 * nothing wakes when its key appears; SQL readers wake on any write of
 * their store; a switch wakes every reader; no wake is lost to the race
 * between a run's snapshot and its registration; a closed subscription is
 * never called again.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "read/keyrec.h"
#include "tdomain.h"
#include "testutil.h"

typedef struct sub {
	atomic_int wakes;
	cleave_live *l;
} sub;

static void on_wake(void *arg)
{
	sub *s = arg;
	atomic_fetch_add(&s->wakes, 1);
}

static cleave_engine *open_engine(const char *dir)
{
	cleave_config cfg = {0};
	cfg.domain = &td_domain;
	cfg.data_dir = dir;
	cleave_engine *e;
	TU_OK(cleave_engine_open(&cfg, &e));
	return e;
}

static int64_t run(cleave_engine *e, const char *cmd, const char *body)
{
	int64_t pos = 0;
	assert_int_equal(td_run(e, cmd, body, NULL, &pos), 0);
	TU_OK(cleave_wait_position(e, NULL, 0, pos, 10000));
	return pos;
}

/* Opens a subscription to query q (with id, when not NULL) and runs it
 * once; returns the answer's rc. */
static int subscribe(cleave_engine *e, sub *s, const char *q, const char *id)
{
	cleave_param p[] = {{"id", id}};
	atomic_init(&s->wakes, 0);
	TU_OK(cleave_live_open(e, q, p, id ? 1 : 0, on_wake, s, &s->l));
	cleave_answer a;
	TU_OK(cleave_live_run(s->l, &a));
	int rc = a.rc;
	cleave_answer_free(&a);
	return rc;
}

/* Waits until s was woken (true), at most ms. */
static bool woken(sub *s, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (atomic_load(&s->wakes) > 0)
			return true;
		usleep(1000);
	}
	return atomic_load(&s->wakes) > 0;
}

/* Once `probe` was woken by a commit, that commit's wake-ups are over
 * (they run under the registry's lock, which a run takes): runs probe to
 * wait for them, and re-arms it. */
static void settle(sub *probe)
{
	assert_true(woken(probe, 10000));
	cleave_answer a;
	TU_OK(cleave_live_run(probe->l, &a));
	cleave_answer_free(&a);
	atomic_store(&probe->wakes, 0);
}

static void test_keys(void **state)
{
	(void)state;
	char *dir = tu_tmpdir("live");
	cleave_engine *e = open_engine(dir);
	run(e, "Create", "{\"id\":\"a\"}");
	run(e, "Create", "{\"id\":\"b\"}");
	sub sa, sb, sz, ssum, srows;
	assert_int_equal(subscribe(e, &sa, "count", "a"), 0);
	assert_int_equal(subscribe(e, &sb, "count", "b"), 0);
	/* a counter that does not exist yet: its read is noted all the same */
	assert_int_equal(subscribe(e, &sz, "count", "z"), CLEAVE_ENOTFOUND);
	assert_int_equal(subscribe(e, &ssum, "sum", NULL), 0);
	assert_int_equal(subscribe(e, &srows, "rows", NULL), 0);
	assert_int_equal(cleave_live_count(e), 5);

	/* b's commit wakes b, the sum (one key every Inc writes) and the
	 * SQL reader; not a, not z */
	run(e, "Inc", "{\"id\":\"b\",\"by\":1}");
	settle(&sb);
	assert_int_equal(atomic_load(&sa.wakes), 0);
	assert_int_equal(atomic_load(&sz.wakes), 0);
	settle(&ssum);
	settle(&srows);

	/* a command that emits nothing wakes nobody; then a's commit */
	run(e, "Noop", "{}");
	run(e, "Inc", "{\"id\":\"a\",\"by\":2}");
	settle(&sa);
	assert_int_equal(atomic_load(&sb.wakes), 0);
	assert_int_equal(atomic_load(&sz.wakes), 0);
	settle(&ssum);

	/* z appears */
	run(e, "Create", "{\"id\":\"z\"}");
	settle(&sz);
	assert_int_equal(atomic_load(&sa.wakes), 0);

	/* one wake per run: two commits, one call until the next run */
	atomic_store(&sb.wakes, 0);
	run(e, "Inc", "{\"id\":\"b\",\"by\":1}");
	run(e, "Inc", "{\"id\":\"b\",\"by\":1}");
	assert_true(woken(&sb, 10000));
	usleep(20000);
	assert_int_equal(atomic_load(&sb.wakes), 1);

	/* a blue-green switch wakes every reader of the projection */
	atomic_store(&sa.wakes, 0);
	{
		cleave_answer x;
		TU_OK(cleave_live_run(sa.l, &x)); /* re-arm */
		cleave_answer_free(&x);
	}
	TU_OK(cleave_projection_rebuild(e, "totals"));
	TU_OK(cleave_projection_wait_rebuilt(e, "totals", 20000));
	assert_true(woken(&sa, 10000));

	/* closed: never called again (ASan would see a call on freed s) */
	cleave_live_close(sb.l);
	cleave_live_close(sz.l);
	run(e, "Inc", "{\"id\":\"b\",\"by\":1}");
	run(e, "Inc", "{\"id\":\"z\",\"by\":1}");
	cleave_live_close(sa.l);
	cleave_live_close(ssum.l);
	cleave_live_close(srows.l);
	assert_int_equal(cleave_live_count(e), 0);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- no lost wake ------------------------------------------------------ */

typedef struct incer {
	cleave_engine *e;
	int n;
} incer;

static void *inc_loop(void *arg)
{
	incer *x = arg;
	for (int i = 0; i < x->n; i++) {
		int64_t pos;
		assert_int_equal(
		    td_run(x->e, "Inc", "{\"id\":\"r\",\"by\":1}", NULL, &pos),
		    0);
	}
	return NULL;
}

static int64_t count_of(cleave_live *l)
{
	cleave_answer a;
	TU_OK(cleave_live_run(l, &a));
	cJSON *j = cJSON_Parse(a.body);
	cleave_answer_free(&a);
	assert_non_null(j);
	cJSON *n = cJSON_GetObjectItem(j, "n");
	int64_t v = n ? (int64_t)n->valuedouble : -1;
	cJSON_Delete(j);
	return v;
}

/* A client that runs again only when woken must always reach the final
 * state while commits race with its runs: a wake lost between a run's
 * snapshot and its registration would leave it waiting forever. */
static void test_no_lost_wake(void **state)
{
	(void)state;
	char *dir = tu_tmpdir("livelost");
	cleave_engine *e = open_engine(dir);
	run(e, "Create", "{\"id\":\"r\"}");
	for (int round = 0; round < 5; round++) {
		sub s;
		cleave_param p[] = {{"id", "r"}};
		atomic_init(&s.wakes, 0);
		TU_OK(cleave_live_open(e, "count", p, 1, on_wake, &s, &s.l));
		int64_t base = count_of(s.l);
		incer x = {e, 300};
		pthread_t th;
		assert_int_equal(pthread_create(&th, NULL, inc_loop, &x), 0);
		int64_t seen = base;
		while (seen < base + x.n) {
			/* only a wake lets it look again */
			if (!woken(&s, 10000))
				fail_msg("round %d: stuck at %lld of %lld: a "
					 "wake was lost",
					 round, (long long)seen,
					 (long long)(base + x.n));
			atomic_store(&s.wakes, 0);
			seen = count_of(s.l);
		}
		pthread_join(th, NULL);
		assert_int_equal(seen, base + x.n);
		cleave_live_close(s.l);
	}
	cleave_engine_close(e);
	tu_rmdir(dir);
}

static void test_bad_open(void **state)
{
	(void)state;
	char *dir = tu_tmpdir("livebad");
	cleave_engine *e = open_engine(dir);
	cleave_live *l = NULL;
	sub s;
	assert_int_equal(cleave_live_open(e, "nope", NULL, 0, on_wake, &s, &l),
			 CLEAVE_ENOTFOUND);
	assert_null(l);
	assert_int_equal(cleave_live_open(e, "sum", NULL, 0, NULL, &s, &l),
			 CLEAVE_EINVAL);
	cleave_live_close(NULL);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* Tokens of different projections, kinds and names are different: a
 * collision wakes a subscription for nothing (its answer is compared, so
 * nothing is pushed, but the work is done).  (proj 0, 'P') and (proj 3,
 * 'S') once met, by XOR-ing both into one byte. */
static void test_tokens_distinct(void **state)
{
	(void)state;
	static const int kinds[] = {CL_TOK_KEY, CL_TOK_LIST, CL_TOK_NS,
	                            CL_TOK_STORE, CL_TOK_PROJ};
	static const char *const names[] = {NULL, "", "a", "b", "ab", "ba",
	                                    "cards", "p1", "p2"};
	uint64_t seen[64 * 5 * 9 * 9];
	int n = 0;
	for (int p = 0; p < 64; p++)
		for (int k = 0; k < 5; k++)
			for (int a = 0; a < 9; a++)
				for (int b = 0; b < 9; b++) {
					/* "" and NULL name the same field */
					if ((a == 1) || (b == 1))
						continue;
					uint64_t t = cl_tok(p, kinds[k], names[a],
					                    names[b]);
					for (int i = 0; i < n; i++)
						if (seen[i] == t)
							fail_msg("token of (%d,%c,%s,%s) "
							         "met another",
							         p, kinds[k],
							         names[a] ? names[a]
							                  : "NULL",
							         names[b] ? names[b]
							                  : "NULL");
					seen[n++] = t;
				}
	/* names split differently are different fields */
	assert_true(cl_tok(0, CL_TOK_KEY, "ab", "c") !=
	            cl_tok(0, CL_TOK_KEY, "a", "bc"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tokens_distinct),
	    cmocka_unit_test(test_keys),
	    cmocka_unit_test(test_no_lost_wake),
	    cmocka_unit_test(test_bad_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
