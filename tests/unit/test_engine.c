/*
 * test_engine.c — the engine core against real SQLite and LMDB: group
 * commit, idempotency, optimistic concurrency, upcasting, waits, poison
 * events, blue-green rebuilds under queries, limits.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/util.h"
#include "tdomain.h"
#include "testutil.h"

static cleave_engine *open_engine(const char *dir, const cleave_domain *d,
				  int queue_max)
{
	cleave_config cfg = {0};
	cfg.domain = d;
	cfg.data_dir = dir;
	cfg.queue_max = queue_max;
	cfg.poison_backoff_ms = 5;
	cleave_engine *e;
	TU_OK(cleave_engine_open(&cfg, &e));
	return e;
}

static int64_t sql_int(const char *dir, const char *sql)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/write.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	int64_t v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static cJSON *query(cleave_engine *e, const char *name, const char *id,
		    int64_t *pos, int *rc)
{
	cleave_param p[] = {{"id", id}};
	cleave_answer a;
	TU_OK(cleave_query_run(e, name, p, id ? 1 : 0, &a));
	*rc = a.rc;
	if (pos)
		*pos = a.position;
	cJSON *j = cJSON_Parse(a.body);
	cleave_answer_free(&a);
	assert_non_null(j);
	return j;
}

/* ---- group commit ------------------------------------------------------ */

typedef struct counter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done, ok, rejected;
} counter;

static void count_done(void *arg, const cleave_outcome *o)
{
	counter *c = arg;
	pthread_mutex_lock(&c->mu);
	c->done++;
	if (o->rc == 0)
		c->ok++;
	else if (o->rc == CLEAVE_EREJECTED)
		c->rejected++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
}

typedef struct submitter {
	cleave_engine *e;
	counter *c;
	int thread, n;
	const char *fail_cmd; /* the failing command; NULL = "Fail" */
} submitter;

static void *submit_many(void *arg)
{
	submitter *s = arg;
	char body[128];
	for (int i = 0; i < s->n; i++) {
		cleave_request r = {0};
		r.expected_version = -1;
		bool fail = i % 10 == 7;
		r.command = !fail ? "Inc" : s->fail_cmd ? s->fail_cmd : "Fail";
		snprintf(body, sizeof(body),
			 fail ? "{\"id\":\"f%d-%d\"}" : "{\"id\":\"c%d\",\"by\":1}",
			 s->thread, i);
		r.body = body;
		r.body_len = strlen(body);
		int rc;
		while ((rc = cleave_command_submit(s->e, &r, count_done, s->c)) ==
		       CLEAVE_EBUSY)
			cl_sleep_ms(1);
		assert_int_equal(rc, 0);
	}
	return NULL;
}

/* The failing commands write (a row, an event) before they fail: each
 * must leave nothing while the rest of its group commits.  "Fail" writes
 * with exec and emits; "FailReturning" writes only through a cursor
 * (INSERT ... RETURNING), which the engine must count as a write too. */
static void group_commit(const char *fail_cmd)
{
	char *dir = tu_tmpdir("gc");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
		     0};
	enum { T = 8, N = 500 };
	pthread_t th[T];
	submitter s[T];
	for (int i = 0; i < T; i++) {
		s[i] = (submitter){e, &c, i, N, fail_cmd};
		pthread_create(&th[i], NULL, submit_many, &s[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_lock(&c.mu);
	while (c.done < T * N)
		pthread_cond_wait(&c.cond, &c.mu);
	pthread_mutex_unlock(&c.mu);
	assert_int_equal(c.rejected, T * 50);
	assert_int_equal(c.ok, T * 450);
	cleave_stats st;
	cleave_stats_get(e, &st);
	/* many commands shared a commit */
	assert_true(st.batches < st.commands_total);
	assert_int_equal(st.head, T * 450);
	assert_int_equal(cleave_log_head(e), T * 450);
	cleave_engine_close(e);
	/* the failing commands left nothing: no rows, no events, no gaps */
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM scratch"), 0);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM events "
				      "WHERE stream = 'failing'"),
			 0);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM events"), T * 450);
	assert_int_equal(sql_int(dir, "SELECT max(position) FROM events"),
			 T * 450);
	assert_int_equal(sql_int(dir, "SELECT sum(n) FROM counters"), T * 450);
	tu_rmdir(dir);
}

static void test_group_commit(void **state)
{
	group_commit("Fail");
	group_commit("FailReturning");
}

/* ---- idempotency ---------------------------------------------------------- */

typedef struct dup_arg {
	cleave_engine *e;
	char body[4096];
	int64_t pos;
	int rc;
} dup_arg;

static void *run_dup(void *arg)
{
	dup_arg *d = arg;
	cleave_request r = {0};
	r.command = "Inc";
	r.body = "{\"id\":\"idem\",\"by\":5}";
	r.body_len = strlen(r.body);
	r.idempotency_key = "key-1";
	r.expected_version = -1;
	cleave_outcome *o;
	d->rc = cleave_command_run(d->e, &r, &o);
	if (d->rc == 0) {
		d->rc = o->rc;
		d->pos = o->position;
		snprintf(d->body, sizeof(d->body), "%s", o->body);
		cleave_outcome_free(o);
	}
	return NULL;
}

static void test_idempotency(void **state)
{
	char *dir = tu_tmpdir("idem");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	enum { T = 16 };
	pthread_t th[T];
	dup_arg *d = calloc(T, sizeof(*d));
	for (int i = 0; i < T; i++) {
		d[i].e = e;
		pthread_create(&th[i], NULL, run_dup, &d[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < T; i++) {
		assert_int_equal(d[i].rc, 0);
		assert_string_equal(d[i].body, d[0].body);
		assert_int_equal(d[i].pos, 1);
	}
	/* the same key with another body is refused, writes nothing */
	cleave_request r = {0};
	r.command = "Inc";
	r.body = "{\"id\":\"idem\",\"by\":6}";
	r.body_len = strlen(r.body);
	r.idempotency_key = "key-1";
	r.expected_version = -1;
	cleave_outcome *o;
	TU_OK(cleave_command_run(e, &r, &o));
	assert_int_equal(o->rc, CLEAVE_ECONFLICT);
	assert_non_null(strstr(o->body, "idempotency_key_reused"));
	cleave_outcome_free(o);
	/* a refusal is the first result too: replayed, not run again */
	cleave_request f = {0};
	f.command = "Fail";
	f.body = "{\"id\":\"refused\"}";
	f.body_len = strlen(f.body);
	f.idempotency_key = "key-2";
	f.expected_version = -1;
	char first[512];
	TU_OK(cleave_command_run(e, &f, &o));
	assert_int_equal(o->rc, CLEAVE_EREJECTED);
	assert_false(o->replayed);
	snprintf(first, sizeof(first), "%s", o->body);
	cleave_outcome_free(o);
	TU_OK(cleave_command_run(e, &f, &o));
	assert_int_equal(o->rc, CLEAVE_EREJECTED);
	assert_true(o->replayed);
	assert_string_equal(o->body, first);
	cleave_outcome_free(o);

	cleave_engine_close(e);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM events"), 1);
	assert_int_equal(sql_int(dir, "SELECT n FROM counters"), 5);

	/* after reopening, the key still answers the first result */
	e = open_engine(dir, &td_domain, 0);
	dup_arg again = {.e = e};
	run_dup(&again);
	assert_int_equal(again.rc, 0);
	assert_string_equal(again.body, d[0].body);
	int64_t pos;
	assert_int_equal(td_run(e, "Inc", "{\"id\":\"idem\",\"by\":1}", NULL,
				&pos),
			 0);
	assert_int_equal(pos, 2);
	cleave_engine_close(e);
	assert_int_equal(sql_int(dir, "SELECT n FROM counters"), 6);
	free(d);
	tu_rmdir(dir);
}

/* ---- optimistic concurrency ---------------------------------------------- */

static int run_expect(cleave_engine *e, int64_t expected, char *body_out)
{
	cleave_request r = {0};
	r.command = "Inc";
	r.body = "{\"id\":\"occ\",\"by\":1}";
	r.body_len = strlen(r.body);
	r.expected_version = expected;
	cleave_outcome *o;
	TU_OK(cleave_command_run(e, &r, &o));
	int rc = o->rc;
	if (body_out)
		snprintf(body_out, 512, "%s", o->body);
	cleave_outcome_free(o);
	return rc;
}

static void test_optimistic_concurrency(void **state)
{
	char *dir = tu_tmpdir("occ");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	char body[512];
	assert_int_equal(run_expect(e, 0, NULL), 0); /* new stream */
	assert_int_equal(run_expect(e, 1, NULL), 0);
	assert_int_equal(run_expect(e, 1, body), CLEAVE_ECONFLICT);
	assert_non_null(strstr(body, "version_conflict"));
	assert_int_equal(run_expect(e, 0, NULL), CLEAVE_ECONFLICT);
	assert_int_equal(run_expect(e, 2, NULL), 0);
	assert_int_equal(run_expect(e, -1, NULL), 0);
	cleave_engine_close(e);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM events"), 4);
	assert_int_equal(sql_int(dir, "SELECT n FROM counters"), 4);
	assert_int_equal(sql_int(dir, "SELECT max(version) FROM events"), 4);
	tu_rmdir(dir);
}

/* ---- upcasting ------------------------------------------------------------ */

typedef struct seen {
	int n, upcast;
	int schema[16];
} seen;

static int collect_ev(void *arg, const cleave_event *ev)
{
	seen *s = arg;
	if (strcmp(ev->type, "Incremented"))
		return 0;
	if (cJSON_IsTrue(cJSON_GetObjectItem(ev->json, "upcast")))
		s->upcast++;
	s->schema[s->n++ % 16] = ev->schema_version;
	return 0;
}

static void test_upcasting(void **state)
{
	char *dir = tu_tmpdir("upcast");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(td_run(e, "Inc", "{\"id\":\"u\",\"by\":1}", NULL,
					NULL),
				 0);
	cleave_engine_close(e);
	e = open_engine(dir, &td_domain_v2, 0);
	assert_int_equal(td_run(e, "Inc", "{\"id\":\"u\",\"by\":1}", NULL, NULL),
			 0);
	seen s = {0};
	TU_OK(cleave_log_read(e, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 4);
	assert_int_equal(s.upcast, 3); /* the three old ones */
	assert_int_equal(s.schema[0], 1);
	assert_int_equal(s.schema[3], 2);
	/* a projection rebuilt from the log sees the upcast shape */
	s = (seen){0};
	TU_OK(cleave_log_read(e, 0, "c-u", 2, collect_ev, &s));
	assert_int_equal(s.n, 2);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- waits ------------------------------------------------------------------ */

static void test_wait_position(void **state)
{
	char *dir = tu_tmpdir("wait");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	int64_t pos;
	assert_int_equal(td_run(e, "Inc", "{\"id\":\"w\",\"by\":2}", NULL, &pos),
			 0);
	int64_t t0 = cl_mono_us();
	assert_int_equal(cleave_wait_position(e, NULL, 0, pos + 100, 50),
			 CLEAVE_ETIMEDOUT);
	int64_t waited = cl_mono_us() - t0;
	assert_true(waited >= 45000); /* it did wait, not fail at once */
	TU_OK(cleave_wait_position(e, NULL, 0, pos, 5000));
	const char *names[] = {"totals"};
	TU_OK(cleave_wait_position(e, names, 1, pos, 5000));
	const char *bad[] = {"nope"};
	assert_int_equal(cleave_wait_position(e, bad, 1, pos, 10),
			 CLEAVE_ENOTFOUND);
	/* read-your-writes: the query reflects the command */
	int rc;
	int64_t qpos;
	cJSON *j = query(e, "count", "w", &qpos, &rc);
	assert_int_equal(rc, 0);
	assert_true(qpos >= pos);
	assert_int_equal(cJSON_GetObjectItem(j, "n")->valuedouble, 2);
	assert_int_equal(cJSON_GetObjectItem(j, "position")->valuedouble, qpos);
	cJSON_Delete(j);
	j = query(e, "count", "missing", NULL, &rc);
	assert_int_equal(rc, CLEAVE_ENOTFOUND);
	cJSON_Delete(j);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- poison events --------------------------------------------------------- */

static void status_of(cleave_engine *e, const char *name, cleave_proj_status *s)
{
	int i = cleave_projection_find(e, name);
	assert_true(i >= 0);
	TU_OK(cleave_projection_status(e, i, s));
}

static void test_poison(void **state)
{
	char *dir = tu_tmpdir("poison");
	td_cure = false;
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	int64_t p1, p2, p3;
	assert_int_equal(td_run(e, "Inc", "{\"id\":\"p\",\"by\":1}", NULL, &p1),
			 0);
	assert_int_equal(td_run(e, "Inc",
				"{\"id\":\"p\",\"by\":1,\"poison\":true}", NULL,
				&p2),
			 0);
	assert_int_equal(td_run(e, "Inc", "{\"id\":\"p\",\"by\":1}", NULL, &p3),
			 0);
	/* the others go on */
	const char *others[] = {"totals", "skipper", "rows", "deferred"};
	TU_OK(cleave_wait_position(e, others, 4, p3, 5000));
	/* the parked one stops just before the poison event */
	const char *pz[] = {"poison"};
	assert_int_equal(cleave_wait_position(e, pz, 1, p3, 2000),
			 CLEAVE_EPARKED);
	cleave_proj_status s;
	status_of(e, "poison", &s);
	assert_int_equal(s.state, CLEAVE_PROJ_PARKED);
	assert_int_equal(s.parked_position, p2);
	assert_int_equal(s.position, p1);
	assert_true(s.last_error[0] != 0);
	status_of(e, "skipper", &s);
	assert_int_equal(s.state, CLEAVE_PROJ_LIVE);
	assert_int_equal(s.dead_letters, 1);
	assert_int_equal(s.position, p3);
	/* resume once the handler is fixed */
	assert_int_equal(cleave_projection_resume(e, "skipper"), CLEAVE_EINVAL);
	td_cure = true;
	TU_OK(cleave_projection_resume(e, "poison"));
	TU_OK(cleave_wait_position(e, pz, 1, p3, 5000));
	status_of(e, "poison", &s);
	assert_int_equal(s.state, CLEAVE_PROJ_LIVE);
	cleave_engine_close(e);
	td_cure = false;
	tu_rmdir(dir);
}

/* ---- blue-green rebuild while queries run ----------------------------------- */

/* Submits Inc {"id": id, "by": 1}, waiting out a full queue. */
static void submit_inc(cleave_engine *e, counter *c, const char *id)
{
	char body[96];
	snprintf(body, sizeof(body), "{\"id\":\"%s\",\"by\":1}", id);
	cleave_request r = {.command = "Inc", .body = body,
			    .body_len = strlen(body), .expected_version = -1};
	int rc;
	while ((rc = cleave_command_submit(e, &r, count_done, c)) ==
	       CLEAVE_EBUSY)
		cl_sleep_ms(1);
	assert_int_equal(rc, 0);
}

/* Waits until n submitted commands have completed. */
static void wait_done(counter *c, int n)
{
	pthread_mutex_lock(&c->mu);
	while (c->done < n)
		pthread_cond_wait(&c->cond, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

typedef struct reader {
	cleave_engine *e;
	atomic_bool stop;
	atomic_long answers;
	long bad;
	int64_t last;
} reader;

static void *read_loop(void *arg)
{
	reader *r = arg;
	while (!atomic_load(&r->stop)) {
		cleave_answer a;
		if (cleave_query_run(r->e, "sum", NULL, 0, &a))
			continue;
		cJSON *j = cJSON_Parse(a.body);
		int64_t sum = (int64_t)cJSON_GetObjectItem(j, "sum")->valuedouble;
		/* every event is an Inc by 1: a whole model has sum == position;
		 * and positions never go back */
		if (a.rc || sum != a.position || a.position < r->last)
			r->bad++;
		r->last = a.position;
		r->answers++;
		cJSON_Delete(j);
		cleave_answer_free(&a);
	}
	return NULL;
}

static void test_rebuild_under_queries(void **state)
{
	char *dir = tu_tmpdir("rebuild");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
		     0};
	enum { N = 20000 };
	for (int i = 0; i < N; i++) {
		char id[16];
		snprintf(id, sizeof(id), "r%d", i % 50);
		submit_inc(e, &c, id);
	}
	wait_done(&c, N);
	TU_OK(cleave_wait_position(e, NULL, 0, N, 10000));
	reader rd = {.e = e};
	pthread_t th;
	pthread_create(&th, NULL, read_loop, &rd);
	TU_OK(cleave_projection_rebuild(e, "totals"));
	assert_int_equal(cleave_projection_rebuild(e, "totals"), CLEAVE_EBUSY);
	cleave_proj_status s;
	/* writes go on during the rebuild */
	for (int i = 0; i < 200; i++)
		assert_int_equal(td_run(e, "Inc", "{\"id\":\"r1\",\"by\":1}", NULL,
					NULL),
				 0);
	TU_OK(cleave_projection_wait_rebuilt(e, "totals", 60000));
	status_of(e, "totals", &s);
	assert_int_equal(s.state, CLEAVE_PROJ_LIVE);
	TU_OK(cleave_wait_position(e, NULL, 0, N + 200, 10000));
	/* a loaded machine may not have run the reader yet: let it answer */
	long before = atomic_load(&rd.answers);
	for (int t = 0; t < 1000 && atomic_load(&rd.answers) < before + 5; t++)
		cl_sleep_ms(10);
	atomic_store(&rd.stop, true);
	pthread_join(th, NULL);
	assert_true(atomic_load(&rd.answers) > 0);
	assert_int_equal(rd.bad, 0);
	int rc;
	int64_t pos;
	cJSON *j = query(e, "sum", NULL, &pos, &rc);
	assert_int_equal(cJSON_GetObjectItem(j, "sum")->valuedouble, N + 200);
	cJSON_Delete(j);
	int64_t ndiff = -1, at;
	TU_OK(cleave_projection_verify(e, "totals", NULL, NULL, &ndiff, &at));
	assert_int_equal(ndiff, 0);
	TU_OK(cleave_projection_verify(e, "rows", NULL, NULL, &ndiff, &at));
	assert_int_equal(ndiff, 0);
	cleave_engine_close(e);
	/* a reopened engine serves the new copy; old copies are gone */
	e = open_engine(dir, &td_domain, 0);
	j = query(e, "sum", NULL, &pos, &rc);
	assert_int_equal(cJSON_GetObjectItem(j, "sum")->valuedouble, N + 200);
	cJSON_Delete(j);
	cleave_engine_close(e);
	char path[1024];
	snprintf(path, sizeof(path), "%s/read/totals.g1", dir);
	FILE *f = fopen(path, "r");
	assert_null(f);
	tu_rmdir(dir);
}

/* ---- bad input and limits ------------------------------------------------------ */

static int submit_body(cleave_engine *e, const char *cmd, const char *body)
{
	cleave_request r = {.command = cmd, .body = body,
			    .body_len = body ? strlen(body) : 0,
			    .expected_version = -1};
	cleave_outcome *o;
	int rc = cleave_command_run(e, &r, &o);
	if (rc == 0) {
		rc = o->rc;
		cleave_outcome_free(o);
	}
	return rc;
}

static void ignore_done(void *arg, const cleave_outcome *o)
{
	atomic_int *n = arg;
	atomic_fetch_add(n, 1);
}

static void test_bad_input(void **state)
{
	char *dir = tu_tmpdir("bad");
	cleave_engine *e = open_engine(dir, &td_domain, 1);
	static const char *const bad[] = {
		"{",
		"{\"id\":\"a\",\"by\":1",
		"{\"id\":\"a\",\"by\":1}x",
		"{\"id\":\"a\",\"id\":\"b\",\"by\":1}",
		"{\"id\":\"a\",\"by\":9007199254740993}",
		/* the rule for numbers holds in every notation */
		"{\"id\":\"a\",\"by\":9007199254740993.0}",
		"{\"id\":\"a\",\"by\":9007199254740992.5}",
		"{\"id\":\"a\",\"by\":-9007199254740992.5}",
		"{\"id\":\"a\",\"by\":1e16}",
		"{\"id\":\"a\",\"by\":90071992547409930e-1}",
		"{\"id\":\"a\",\"by\":0.9007199254740993e16}",
		"{\"id\":\"a\",\"by\":1.0000000000000001}",
		"{\"id\":\"a\",\"by\":1e-400}",
		"{\"id\":\"a\",\"by\":1.5}",
		"{\"id\":\"a\",\"by\":\"1\"}",
		"{\"id\":\"a\",\"by\":0}",
		"{\"id\":\"a\",\"by\":-3}",
		"{\"id\":\"\",\"by\":1}",
		"{\"id\":\"a b\",\"by\":1}",
		"{\"by\":1}",
		"{\"id\":\"a\",\"by\":1,\"extra\":true}",
		"[1,2]",
		"\"x\"",
		"{\"id\":\"\\ud800\",\"by\":1}",
		"{\"id\":\"a\\u0000\",\"by\":1}",
		"{\"id\":\"\xff\",\"by\":1}",
		"{\"id\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = submit_body(e, "Inc", bad[i]);
		if (rc != CLEAVE_EINVAL && rc != CLEAVE_EBADJSON)
			fail_msg("body %zu (%s) gave %d", i, bad[i], rc);
		assert_true(strlen(cleave_errmsg()) > 0);
	}
	/* what is not JSON, or has no one meaning, is told apart from
	 * JSON that the command refuses */
	assert_int_equal(submit_body(e, "Inc", "{\"id\":"), CLEAVE_EBADJSON);
	assert_int_equal(submit_body(e, "Inc", "{\"id\":\"a\",\"id\":\"b\"}"),
			 CLEAVE_EBADJSON);
	assert_int_equal(submit_body(e, "Inc", "{\"id\":\"a\",\"by\":1.5}"),
			 CLEAVE_EINVAL);
	assert_int_equal(submit_body(e, "Inc", "{\"id\":\"a\",\"by\":1e16}"),
			 CLEAVE_EINVAL);
	assert_int_equal(submit_body(e, "Nope", "{}"), CLEAVE_ENOTFOUND);
	/* a full queue answers EBUSY instead of blocking */
	atomic_int done = 0;
	int busy = 0, queued = 0;
	for (int i = 0; i < 4; i++) {
		cleave_request r = {.command = "Slow", .expected_version = -1};
		int rc = cleave_command_submit(e, &r, ignore_done, &done);
		if (rc == CLEAVE_EBUSY) {
			busy++;
			assert_non_null(strstr(cleave_errmsg(), "queue_max=1"));
		} else {
			assert_int_equal(rc, 0);
			queued++;
		}
	}
	assert_true(busy >= 1);
	while (atomic_load(&done) < queued)
		cl_sleep_ms(5);
	assert_int_equal(cleave_log_head(e), 0);
	cleave_engine_close(e);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM events"), 0);
	tu_rmdir(dir);
}

/* A projection that runs out of memory on an event, over and over, parks
 * there instead of retrying for ever, and a query waiting for it is told
 * which projection holds it back. */
static int oom_go(cleave_cmd *c, const cJSON *in)
{
	return cleave_cmd_emit(c, "s-1", "Went", cJSON_CreateObject());
}

static int oom_apply(cleave_rtx *tx, const cleave_event *ev)
{
	return CLEAVE_ENOMEM;
}

static int oom_query(cleave_query *q)
{
	return cleave_query_reply(q, cJSON_CreateObject());
}

static void test_enomem_parks(void **state)
{
	static const cleave_command_def cmds[] = {
	    {"Go", oom_go, NULL, "emit one event"}, {NULL, NULL, NULL, NULL}};
	static const cleave_projection_def projs[] = {
	    {"hungry", 1, "lmdb", NULL, NULL, oom_apply, CLEAVE_POISON_SKIP},
	    {NULL, 0, NULL, NULL, NULL, NULL, 0}};
	static const char *const reads[] = {"hungry", NULL};
	static const cleave_query_def queries[] = {
	    {"q", oom_query, reads, "nothing"}, {NULL, NULL, NULL, NULL}};
	static const char *const migrations[] = {NULL};
	static const cleave_domain dom = {.name = "oom",
					  .commands = cmds,
					  .projections = projs,
					  .queries = queries,
					  .migrations = migrations};
	char *dir = tu_tmpdir("oom");
	cleave_engine *e = open_engine(dir, &dom, 0);
	assert_int_equal(submit_body(e, "Go", NULL), 0);
	cleave_proj_status st;
	int64_t until = cl_mono_us() + 60 * 1000000LL;
	do {
		cl_sleep_ms(20);
		TU_OK(cleave_projection_status(e, 0, &st));
	} while (st.state != CLEAVE_PROJ_PARKED && cl_mono_us() < until);
	assert_int_equal(st.state, CLEAVE_PROJ_PARKED);
	assert_int_equal(st.parked_position, 1);
	assert_non_null(strstr(st.last_error, "out of memory"));
	char why[256];
	cleave_query_lagging(e, "q", 1, why, sizeof(why));
	assert_non_null(strstr(why, "hungry at 0 (parked: out of memory"));
	cleave_query_lagging(e, "q", 0, why, sizeof(why));
	assert_string_equal(why, "");
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* One event's work in pieces (CLEAVE_MORE): a fan-out of 1,000 writes, 64
 * per transaction, with the handler's cursor in the store. */
static int fan_go(cleave_cmd *c, const cJSON *in)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "n", 1000);
	return cleave_cmd_emit(c, "f-1", "Fanned", d);
}

static int fan_pieces;

static int fan_apply(cleave_rtx *tx, const cleave_event *ev)
{
	char key[32];
	int64_t n = cleave_json_int(ev->json, "n", 0), from = 0;
	const void *v;
	size_t len;
	snprintf(key, sizeof(key), "cursor-%lld", (long long)ev->position);
	int rc = cleave_rtx_get(tx, "fan", key, &v, &len);
	if (rc == 0)
		from = strtoll(v, NULL, 10);
	else if (rc != CLEAVE_ENOTFOUND)
		return rc;
	int64_t to = from + 64 < n ? from + 64 : n;
	for (int64_t i = from; i < to; i++) {
		char k[32];
		snprintf(k, sizeof(k), "item-%05lld", (long long)i);
		if ((rc = cleave_rtx_put(tx, "fan", k, "1", 1)))
			return rc;
	}
	fan_pieces++;
	if (to == n)
		return cleave_rtx_del(tx, "fan", key);
	char t[24];
	snprintf(t, sizeof(t), "%lld", (long long)to);
	rc = cleave_rtx_put(tx, "fan", key, t, strlen(t) + 1);
	return rc ? rc : CLEAVE_MORE;
}

static int fan_count(void *arg, const char *key, size_t klen, const void *val,
		     size_t vlen)
{
	(*(int *)arg)++;
	return 0;
}

static int fan_query(cleave_query *q)
{
	int n = 0;
	int rc = cleave_rtx_scan(cleave_query_rtx(q, 0), "fan", "item-",
				 "item.", 0, 0, fan_count, &n);
	if (rc)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "items", n);
	return cleave_query_reply(q, o);
}

static void test_more_pieces(void **state)
{
	static const cleave_command_def cmds[] = {
	    {"Go", fan_go, NULL, "emit one fan-out"}, {NULL, NULL, NULL, NULL}};
	static const cleave_projection_def projs[] = {
	    {"fan", 1, "lmdb", NULL, NULL, fan_apply, CLEAVE_POISON_PARK},
	    {NULL, 0, NULL, NULL, NULL, NULL, 0}};
	static const char *const reads[] = {"fan", NULL};
	static const cleave_query_def queries[] = {
	    {"items", fan_query, reads, "items written"},
	    {NULL, NULL, NULL, NULL}};
	static const char *const migrations[] = {NULL};
	static const cleave_domain dom = {.name = "fan",
					  .commands = cmds,
					  .projections = projs,
					  .queries = queries,
					  .migrations = migrations};
	char *dir = tu_tmpdir("fan");
	cleave_engine *e = open_engine(dir, &dom, 0);
	fan_pieces = 0;
	assert_int_equal(submit_body(e, "Go", NULL), 0);
	assert_int_equal(submit_body(e, "Go", NULL), 0);
	const char *names[] = {"fan"};
	TU_OK(cleave_wait_position(e, names, 1, 2, 10000));
	int64_t pos;
	int rc;
	cJSON *j = query(e, "items", NULL, &pos, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(pos, 2);
	/* both events wrote the same 1,000 keys, in 16 pieces each */
	assert_int_equal(cJSON_GetObjectItem(j, "items")->valueint, 1000);
	assert_int_equal(fan_pieces, 32);
	cJSON_Delete(j);
	int64_t ndiff = -1;
	TU_OK(cleave_projection_verify(e, "fan", NULL, NULL, &ndiff, &pos));
	assert_int_equal(ndiff, 0);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* The engine never serves invalid JSON nor a duplicate "position". */
static void test_answer_guard(void **state)
{
	char *dir = tu_tmpdir("guard");
	cleave_engine *e = open_engine(dir, &td_domain, 1);
	static const struct {
		const char *raw;
		int rc;
	} cases[] = {
	    {"{\"a\":1}", 0},
	    {"[1,2]", 0},
	    {"{\"big\":18446744073709551615,\"n\":{\"position\":1}}", 0},
	    {"{\"a\":1", CLEAVE_EINTERNAL},
	    {"{\"a\":1}}", CLEAVE_EINTERNAL},
	    {"{\"a\":\"\xff\"}", CLEAVE_EINTERNAL},
	    {"{\"position\":7}", CLEAVE_EINTERNAL},
	    {"{\"b\":1, \"posit\\u0069on\":7}", CLEAVE_EINTERNAL},
	    {"", CLEAVE_EINTERNAL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cleave_param p[] = {{"raw", cases[i].raw}};
		cleave_answer a;
		TU_OK(cleave_query_run(e, "raw", p, 1, &a));
		if (a.rc != cases[i].rc)
			fail_msg("case %zu (%s): %d %s", i, cases[i].raw, a.rc,
				 a.body);
		cJSON *j = cJSON_Parse(a.body);
		assert_non_null(j); /* whatever happened, the body is JSON */
		if (a.rc)
			assert_non_null(strstr(a.body, "invalid_answer"));
		cJSON_Delete(j);
		cleave_answer_free(&a);
	}
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* An exact integer is one in any notation. */
static void test_number_notations(void **state)
{
	char *dir = tu_tmpdir("num");
	cleave_engine *e = open_engine(dir, &td_domain, 1);
	static const char *const good[] = {
		"{\"id\":\"g1\",\"by\":1e3}",
		"{\"id\":\"g2\",\"by\":1000.0}",
		"{\"id\":\"g3\",\"by\":10000e-1}",
		"{\"id\":\"g4\",\"by\":0.1e4}",
		"{\"id\":\"g5\",\"by\":1E+3}",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = submit_body(e, "Inc", good[i]);
		if (rc != 0)
			fail_msg("body %zu (%s) gave %d: %s", i, good[i], rc,
				 cleave_errmsg());
	}
	assert_int_equal(cleave_log_head(e), 5);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

static void test_lock(void **state)
{
	char *dir = tu_tmpdir("lock");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	cleave_config cfg = {.domain = &td_domain, .data_dir = dir};
	cleave_engine *e2;
	assert_int_equal(cleave_engine_open(&cfg, &e2), CLEAVE_EBUSY);
	assert_non_null(strstr(cleave_errmsg(), "in use"));
	/* read-only inspection works beside a running engine */
	cfg.read_only = true;
	TU_OK(cleave_engine_open(&cfg, &e2));
	cleave_engine_close(e2);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- the log reader pool ------------------------------------------------------- */

/* Readers come back to the pool and are handed out again, the most recent
 * first; the upkeep's trim closes those idle past its limit (a rebuild's
 * reader was kept for the process's life: two more descriptors and up to
 * 1 MiB of page cache after the first rebuild, the soak found). */
static void test_reader_pool(void **state)
{
	char *dir = tu_tmpdir("readers");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	cleave_engine_close(e);
	/* read-only: no upkeep thread, so every trim here is the test's */
	cleave_config cfg = {.domain = &td_domain, .data_dir = dir,
			     .read_only = true};
	TU_OK(cleave_engine_open(&cfg, &e));
	cl_wreader *a = cl_reader_get(e), *b = cl_reader_get(e);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	cl_reader_put(e, a);
	cl_reader_put(e, b);
	assert_int_equal(cl_readers_pooled(e), 2);
	cl_readers_trim(e, 3600 * 1000000LL); /* none idle that long */
	assert_int_equal(cl_readers_pooled(e), 2);
	assert_ptr_equal(cl_reader_get(e), b); /* the last one back */
	cl_reader_put(e, b);
	cl_sleep_ms(2);
	cl_readers_trim(e, 1000); /* both idle for 2 ms or more */
	assert_int_equal(cl_readers_pooled(e), 0);
	/* an empty pool opens a new reader, which still reads */
	int64_t head = -1;
	cl_wreader *c = cl_reader_get(e);
	assert_non_null(c);
	TU_OK(e->wm->reader_head(c, &head));
	assert_int_equal(head, 0);
	cl_reader_put(e, c);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- read models after a crash of the machine -------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void read_file(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, cap - 1, f);
	buf[n] = 0;
	fclose(f);
}

static void test_machine_crash_rebuilds(void **state)
{
	char *dir = tu_tmpdir("boot");
	char run[1024], text[512];
	snprintf(run, sizeof(run), "%s/read/run.json", dir);
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	int64_t pos;
	for (int i = 0; i < 20; i++)
		assert_int_equal(td_run(e, "Inc", "{\"id\":\"b\",\"by\":1}",
					NULL, &pos),
				 0);
	TU_OK(cleave_wait_position(e, NULL, 0, pos, 5000));
	read_file(run, text, sizeof(text));
	assert_non_null(strstr(text, "\"clean\":false")); /* running */
	cleave_engine_close(e);
	read_file(run, text, sizeof(text));
	assert_non_null(strstr(text, "\"clean\":true"));

	/* a process crash (same boot): the copies are kept */
	write_file(run, "{\"boot_id\":\"x\",\"clean\":true}");
	char boot[64] = "";
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (f) {
		if (fgets(boot, sizeof(boot), f))
			boot[strcspn(boot, "\n")] = 0;
		fclose(f);
	}
	snprintf(text, sizeof(text), "{\"boot_id\":\"%s\",\"clean\":false}",
		 boot);
	write_file(run, text);
	e = open_engine(dir, &td_domain, 0);
	cleave_proj_status s;
	status_of(e, "totals", &s);
	assert_int_equal(s.position, pos); /* not rebuilt: */
	assert_int_equal(s.applied_total, 0); /* nothing applied again */
	cleave_engine_close(e);

	/* the machine went down: every copy is rebuilt from the log */
	write_file(run, "{\"boot_id\":\"another-boot\",\"clean\":false}");
	e = open_engine(dir, &td_domain, 0);
	TU_OK(cleave_wait_position(e, NULL, 0, pos, 5000));
	int rc;
	int64_t qpos;
	cJSON *j = query(e, "count", "b", &qpos, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(cJSON_GetObjectItem(j, "n")->valuedouble, 20);
	cJSON_Delete(j);
	int64_t nd = -1, at;
	TU_OK(cleave_projection_verify(e, "totals", NULL, NULL, &nd, &at));
	assert_int_equal(nd, 0);
	cleave_proj_status s2;
	status_of(e, "totals", &s2);
	assert_int_equal(s2.applied_total, 20); /* applied again */
	cleave_engine_close(e);
	tu_rmdir(dir);
}

static void test_model_ahead_of_log(void **state)
{
	char *dir = tu_tmpdir("ahead");
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	int64_t pos;
	for (int i = 0; i < 10; i++)
		assert_int_equal(td_run(e, "Inc", "{\"id\":\"a\",\"by\":1}",
					NULL, &pos),
				 0);
	TU_OK(cleave_wait_position(e, NULL, 0, pos, 5000));
	cleave_engine_close(e);
	/* the log loses its last 4 events (a restored backup, say) */
	char path[1024];
	snprintf(path, sizeof(path), "%s/write.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "DELETE FROM events WHERE position > 6;"
				      "UPDATE counters SET n = 6",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	e = open_engine(dir, &td_domain, 0);
	TU_OK(cleave_wait_position(e, NULL, 0, 6, 5000));
	cleave_proj_status s;
	status_of(e, "totals", &s);
	assert_int_equal(s.position, 6);
	int rc;
	cJSON *j = query(e, "count", "a", NULL, &rc);
	assert_int_equal(cJSON_GetObjectItem(j, "n")->valuedouble, 6);
	cJSON_Delete(j);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

/* ---- the log's stream index (built lazily, in batches) ------------------------ */

typedef struct stream_seen {
	int n;
	int64_t last_version, last_position;
	bool ordered;
} stream_seen;

static int check_stream(void *arg, const cleave_event *ev)
{
	stream_seen *s = arg;
	if (ev->version != s->last_version + 1 ||
	    ev->position <= s->last_position)
		s->ordered = false;
	s->last_version = ev->version;
	s->last_position = ev->position;
	s->n++;
	return 0;
}

static void submit_incs(cleave_engine *e, int n, int ids, int *per_id)
{
	counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
		     0};
	for (int i = 0; i < n; i++) {
		char sid[16];
		int id = (int)((unsigned)(i * 7919) % (unsigned)ids);
		per_id[id]++;
		snprintf(sid, sizeof(sid), "s%d", id);
		submit_inc(e, &c, sid);
	}
	wait_done(&c, n);
	assert_int_equal(c.ok, n);
}

/* A callback that says stop (1) after its first event. */
static int stop_after_one(void *arg, const cleave_event *ev)
{
	(*(int *)arg)++;
	return 1;
}

static void test_stream_index(void **state)
{
	enum { IDS = 300 };
	char *dir = tu_tmpdir("sidx");
	static int per_id[IDS];
	memset(per_id, 0, sizeof(per_id));
	cleave_engine *e = open_engine(dir, &td_domain, 0);
	/* more than one index batch (32,768 events), then a tail */
	submit_incs(e, 40000, IDS, per_id);
	for (int id = 0; id < IDS; id += 37) {
		char stream[32];
		snprintf(stream, sizeof(stream), "c-s%d", id);
		stream_seen s = {.ordered = true};
		TU_OK(cleave_log_read(e, 0, stream, 0, check_stream, &s));
		assert_int_equal(s.n, per_id[id]);
		assert_true(s.ordered);
		/* 1 stops the read, in the indexed part as in the tail */
		int got = 0;
		TU_OK(cleave_log_read(e, 0, stream, 0, stop_after_one, &got));
		assert_int_equal(got, 1);
		got = 0;
		TU_OK(cleave_log_read(e, 39000, stream, 0, stop_after_one,
				      &got));
		assert_true(got <= 1);
		/* a page from the middle, across the index's end */
		stream_seen h = {.ordered = true};
		int64_t mid = 30000;
		TU_OK(cleave_log_read(e, mid, stream, 0, check_stream, &h));
		char sql[160];
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM events WHERE stream = '%s'"
			 " AND position > %lld", stream, (long long)mid);
		assert_int_equal(h.n, sql_int(dir, sql));
		/* a page of 3 from there, then the next from its end */
		stream_seen p1 = {.ordered = true};
		TU_OK(cleave_log_read(e, mid, stream, 3, check_stream, &p1));
		stream_seen p2 = {.ordered = true,
				  .last_version = p1.last_version,
				  .last_position = p1.last_position};
		TU_OK(cleave_log_read(e, p1.last_position, stream, 0,
				      check_stream, &p2));
		assert_true(p2.ordered);
		assert_int_equal(p1.n + p2.n, h.n);
		stream_seen lim = {.ordered = true};
		TU_OK(cleave_log_read(e, 0, stream, 5, check_stream, &lim));
		assert_int_equal(lim.n, per_id[id] < 5 ? per_id[id] : 5);
	}
	cleave_engine_close(e);
	/* after a reopen, versions go on from where they were */
	e = open_engine(dir, &td_domain, 0);
	submit_incs(e, 3000, IDS, per_id);
	stream_seen s = {.ordered = true};
	TU_OK(cleave_log_read(e, 0, "c-s0", 0, check_stream, &s));
	assert_int_equal(s.n, per_id[0]);
	assert_true(s.ordered);
	cleave_engine_close(e);
	/* more distinct streams than the writer's version cache keeps
	 * (65,536): it is emptied after an index flush, keeping the streams
	 * of that batch, and read back from the index; versions still go on
	 * from where they were, with no repeat and no gap */
	e = open_engine(dir, &td_domain, 0);
	{
		enum { MANY = 140000 };
		counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			     0, 0, 0};
		for (int i = 0; i < MANY; i++) {
			char id[16];
			/* new streams, and hot ones written again after every
			 * emptying (their latest events in the very batch that
			 * empties the cache) */
			if (i % 2)
				snprintf(id, sizeof(id), "m%d", i);
			else
				snprintf(id, sizeof(id), "h%d", i / 2 % 5);
			submit_inc(e, &c, id);
		}
		wait_done(&c, MANY);
		assert_int_equal(c.ok, MANY);
	}
	submit_incs(e, 3000, IDS, per_id);
	cleave_engine_close(e);
	assert_int_equal(sql_int(dir, "SELECT max(version) FROM events "
				      "WHERE stream = 'c-s0'"),
			 per_id[0]);
	/* one event per (stream, version) in the whole log */
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM (SELECT stream, "
				      "version FROM events GROUP BY stream, "
				      "version HAVING count(*) > 1)"),
			 0);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM (SELECT stream "
				      "FROM events GROUP BY stream HAVING "
				      "max(version) != count(*))"),
			 0);
	/* the index covers every event once, as chunks of consecutive
	 * versions */
	assert_int_equal(sql_int(dir, "SELECT sum(last_version - "
				      "first_version + 1) FROM "
				      "cleave_stream_chunks"),
			 46000 + 140000);
	assert_int_equal(sql_int(dir, "SELECT count(*) FROM "
				      "cleave_stream_chunks c WHERE "
				      "first_version > 1 AND NOT EXISTS "
				      "(SELECT 1 FROM cleave_stream_chunks p "
				      "WHERE p.stream = c.stream AND "
				      "p.last_version = c.first_version - 1)"),
			 0);
	tu_rmdir(dir);
}

/* A projection whose writes wait for the transaction's flush
 * (cleave_rtx_defer) and whose flush fails for a poison event: in a batch
 * of many, the engine finds that event, commits the ones before it, skips
 * it into the dead letters (policy skip) and goes on — each other event
 * applied exactly once. */
static void test_deferred_flush(void **state)
{
	(void)state;
	char *dir = tu_tmpdir("defer");
	td_cure = false;
	cleave_config cfg = {0};
	cfg.domain = &td_domain;
	cfg.data_dir = dir;
	cfg.poison_backoff_ms = 1;
	cfg.no_projections = true; /* the log first: one catch-up batch */
	cleave_engine *e;
	TU_OK(cleave_engine_open(&cfg, &e));
	int64_t pos = 0, bad = 0;
	for (int i = 0; i < 200; i++) {
		char body[96];
		snprintf(body, sizeof(body), "{\"id\":\"d%d\",\"by\":1%s}",
			 i % 7, i == 123 ? ",\"poison\":true" : "");
		assert_int_equal(td_run(e, "Inc", body, NULL, &pos), 0);
		if (i == 123)
			bad = pos;
	}
	cleave_engine_close(e);
	e = open_engine(dir, &td_domain, 0);
	const char *d[] = {"deferred"};
	TU_OK(cleave_wait_position(e, d, 1, pos, 10000));
	cleave_proj_status s;
	status_of(e, "deferred", &s);
	assert_int_equal(s.state, CLEAVE_PROJ_LIVE);
	assert_int_equal(s.dead_letters, 1);
	assert_int_equal(s.position, pos);
	/* every other event counted once: 200 events over 7 ids, the
	 * poison one (i = 123, id d4) left out */
	int total = 0;
	for (int i = 0; i < 7; i++) {
		char id[8];
		snprintf(id, sizeof(id), "d%d", i);
		int rc;
		cJSON *j = query(e, "dseen", id, NULL, &rc);
		assert_int_equal(rc, 0);
		int n = (int)cJSON_GetObjectItem(j, "n")->valuedouble;
		int want = 0;
		for (int k = 0; k < 200; k++)
			want += k % 7 == i && k != 123;
		assert_int_equal(n, want);
		total += n;
		cJSON_Delete(j);
	}
	assert_int_equal(total, 199);
	/* the parking projection stops right before the same event (once
	 * its retries with backoff are spent) */
	for (int t = 0; t < 1000; t++) {
		status_of(e, "poison", &s);
		if (s.state == CLEAVE_PROJ_PARKED)
			break;
		cl_sleep_ms(10);
	}
	assert_int_equal(s.state, CLEAVE_PROJ_PARKED);
	assert_int_equal(s.parked_position, bad);
	/* and a from-scratch rebuild agrees with the live copy */
	int64_t ndiff = -1, at;
	TU_OK(cleave_projection_verify(e, "deferred", NULL, NULL, &ndiff, &at));
	assert_int_equal(ndiff, 0);
	cleave_engine_close(e);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_group_commit),
		cmocka_unit_test(test_idempotency),
		cmocka_unit_test(test_optimistic_concurrency),
		cmocka_unit_test(test_upcasting),
		cmocka_unit_test(test_wait_position),
		cmocka_unit_test(test_poison),
		cmocka_unit_test(test_deferred_flush),
		cmocka_unit_test(test_rebuild_under_queries),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_number_notations),
		cmocka_unit_test(test_answer_guard),
		cmocka_unit_test(test_enomem_parks),
		cmocka_unit_test(test_more_pieces),
		cmocka_unit_test(test_lock),
		cmocka_unit_test(test_reader_pool),
		cmocka_unit_test(test_machine_crash_rebuilds),
		cmocka_unit_test(test_model_ahead_of_log),
		cmocka_unit_test(test_stream_index),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
