/*
 * test_wstore_pg.c — the PostgreSQL write store against a real PostgreSQL
 * server this program starts (pgtest.h): placeholder rewriting, the store's
 * SQL contract (parameters, cursors, SQLSTATE mapping, savepoints, deferred
 * statements, COMMIT checks), and the engine on it: group commit with
 * failing commands, idempotency (concurrent and after reopening),
 * optimistic concurrency, upcasting, log reads and traces, read models
 * rebuilt from the PostgreSQL log, the writer's advisory lock, read-only
 * inspection, domain mismatch, the shop, lost connections.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "domains.h"
#include "pgtest.h"
#include "tdomain.h"
#include "testutil.h"
#include "write/pg_sql.h"
#include "write/wstore.h"

static cleave_engine *open_pg(const char *dir, const char *uri,
                              const cleave_domain *d)
{
	cleave_config cfg = {0};
	cfg.domain = d;
	cfg.data_dir = dir;
	cfg.write_store = uri;
	cfg.poison_backoff_ms = 5;
	cleave_engine *e;
	TU_OK(cleave_engine_open(&cfg, &e));
	return e;
}

/* ---- placeholders ------------------------------------------------------ */

static void rewrites_to(const char *in, const char *want, int nwant)
{
	char *out;
	int n;
	TU_OK(cl_pg_rewrite(in, &out, &n));
	if (strcmp(out, want) || n != nwant)
		fail_msg("rewrite of [%s]\n gave [%s] (%d)\n want [%s] (%d)",
		         in, out, n, want, nwant);
	free(out);
}

static void test_rewrite(void **state)
{
	rewrites_to("SELECT 1", "SELECT 1", 0);
	rewrites_to("SELECT ?", "SELECT $1", 1);
	rewrites_to("INSERT INTO t(a, b) VALUES(?,?)",
	            "INSERT INTO t(a, b) VALUES($1,$2)", 2);
	/* inside literals, identifiers and comments nothing changes */
	rewrites_to("SELECT '?', ? , 'it''s ?', ?",
	            "SELECT '?', $1 , 'it''s ?', $2", 2);
	rewrites_to("SELECT \"a?\"\"b?\" FROM t WHERE x = ?",
	            "SELECT \"a?\"\"b?\" FROM t WHERE x = $1", 1);
	rewrites_to("SELECT ? -- is it? yes?\n, ?",
	            "SELECT $1 -- is it? yes?\n, $2", 2);
	rewrites_to("SELECT ? /* a ? /* nested ? */ still ? */ + ?",
	            "SELECT $1 /* a ? /* nested ? */ still ? */ + $2", 2);
	rewrites_to("SELECT E'\\'?', ?, e'\\\\', ?",
	            "SELECT E'\\'?', $1, e'\\\\', $2", 2);
	/* a backslash in a standard string is just a character */
	rewrites_to("SELECT 'a\\', ?", "SELECT 'a\\', $1", 1);
	/* a name ending in E before a quote is not an E string */
	rewrites_to("SELECT some'\\', ?", "SELECT some'\\', $1", 1);
	rewrites_to("SELECT $$ ? $$, ?, $tag$ ? $x$ ? $tag$, ?",
	            "SELECT $$ ? $$, $1, $tag$ ? $x$ ? $tag$, $2", 2);
	rewrites_to("SELECT a$b, ?", "SELECT a$b, $1", 1);
	rewrites_to("SELECT ?::bigint, ?::text", "SELECT $1::bigint, $2::text",
	            2);
	/* numbered, as SQLite reads them */
	rewrites_to("SELECT ?2, ?1, ?", "SELECT $2, $1, $3", 3);
	rewrites_to("SELECT ?1, ?1", "SELECT $1, $1", 1);
	/* unterminated: copied as is (the server reports the error) */
	rewrites_to("SELECT 'abc ?", "SELECT 'abc ?", 0);
	rewrites_to("SELECT ? /* ?", "SELECT $1 /* ?", 1);
	rewrites_to("SELECT 'é?', ?, 'ü'", "SELECT 'é?', $1, 'ü'", 1);
	char *out;
	int n;
	assert_int_equal(cl_pg_rewrite("SELECT ?70000", &out, &n),
	                 CLEAVE_EINVAL);
	assert_int_equal(cl_pg_rewrite("SELECT ?0", &out, &n), CLEAVE_EINVAL);
}

static void test_redact(void **state)
{
	char out[256];
	cl_pg_redact("postgres://bob:secret@db:5432/x", out, sizeof(out));
	assert_string_equal(out, "postgres://bob:***@db:5432/x");
	cl_pg_redact("postgres://bob@db/x?password=s3&sslmode=require", out,
	             sizeof(out));
	assert_string_equal(out,
	                    "postgres://bob@db/x?password=***&sslmode=require");
	cl_pg_redact("postgresql://db/x", out, sizeof(out));
	assert_string_equal(out, "postgresql://db/x");
	cl_pg_redact("postgres://a:b@h/d", out, 8);
	assert_int_equal(strlen(out), 7);
}

/* ---- the store's SQL contract ------------------------------------------ */

static cl_wstore *open_store(const char *uri, cleave_durability dur, bool ro)
{
	cl_wstore_opts o = {"/nonexistent", uri, dur, ro};
	cl_wstore *s;
	TU_OK(cl_wstore_pg.open(&o, &s));
	return s;
}

static int64_t s_int(cl_wstore *s, const char *sql, const cleave_value *a,
                     int n)
{
	cleave_rows *r;
	TU_OK(s->m->query(s, sql, a, n, &r));
	int64_t v = -1;
	if (cleave_rows_next(r) == 1 && !cleave_rows_is_null(r, 0))
		v = cleave_rows_int(r, 0);
	cleave_rows_close(r);
	return v;
}

static void test_store_sql(void **state)
{
	char *uri = pgt_newdb("sql");
	cl_wstore *s = open_store(uri, CLEAVE_DURABILITY_FSYNC, false);
	const cl_wstore_methods *m = s->m;
	int64_t ch = -1;
	TU_OK(m->migrate(
	    s, "t",
	    (const char *const[]){"CREATE TABLE t(id TEXT PRIMARY KEY,"
	                          " n BIGINT CHECK (n >= 0), r DOUBLE "
	                          "PRECISION, s TEXT, b BOOLEAN);",
	                          NULL}));
	/* '?' in a literal and a comment are not parameters */
	cleave_value a1[] = {cleave_text("a"), cleave_int(5)};
	TU_OK(m->exec(s,
	              "INSERT INTO t(id, n, s) VALUES(?, ?, 'what?') -- ok?\n",
	              a1, 2, &ch));
	assert_int_equal(ch, 1);
	/* NULL, real, a text that is not NUL-terminated, big integers */
	const char buf[] = {'x', 'y', 'z', 'z', 'y'};
	cleave_value a2[] = {cleave_text("b"), cleave_int(INT64_MAX),
	                     cleave_real(2.5), cleave_textn(buf, 3),
	                     cleave_null()};
	TU_OK(m->exec(s, "INSERT INTO t(id, n, r, s, b) VALUES(?,?,?,?,?)", a2,
	              5, NULL));
	cleave_rows *r;
	TU_OK(m->query(s, "SELECT n, r, s, b, n > 0, id FROM t WHERE id = ?",
	               (cleave_value[]){cleave_text("b")}, 1, &r));
	assert_int_equal(cleave_rows_columns(r), 6);
	assert_int_equal(cleave_rows_next(r), 1);
	assert_true(cleave_rows_int(r, 0) == INT64_MAX);
	assert_true(cleave_rows_real(r, 1) == 2.5);
	assert_int_equal(cleave_rows_int(r, 1), 2);
	size_t len;
	assert_string_equal(cleave_rows_text(r, 2, &len), "xyz");
	assert_int_equal(len, 3);
	assert_true(cleave_rows_is_null(r, 3));
	assert_null(cleave_rows_text(r, 3, &len));
	assert_int_equal(cleave_rows_int(r, 4), 1); /* t → 1 */
	assert_false(cleave_rows_is_null(r, 5));
	assert_int_equal(cleave_rows_next(r), 0);
	assert_int_equal(cleave_rows_next(r), 0);
	/* one cursor per statement text; another text may be open */
	cleave_rows *r2;
	assert_int_equal(m->query(s,
	                          "SELECT n, r, s, b, n > 0, id FROM t "
	                          "WHERE id = ?",
	                          (cleave_value[]){cleave_text("b")}, 1, &r2),
	                 CLEAVE_EINVAL);
	TU_OK(m->query(s, "SELECT count(*), sum(n)::text, avg(r) FROM t", NULL,
	               0, &r2));
	assert_int_equal(cleave_rows_next(r2), 1);
	assert_int_equal(cleave_rows_int(r2, 0), 2);
	cleave_rows_close(r2);
	cleave_rows_close(r);
	/* errors: SQLSTATE mapped, the server's words kept */
	assert_int_equal(m->exec(s, "INSERT INTO t(id, n) VALUES(?, 1)",
	                         (cleave_value[]){cleave_text("a")}, 1, NULL),
	                 CLEAVE_EEXIST);
	assert_non_null(strstr(cleave_errmsg(), "23505"));
	assert_int_equal(m->exec(s, "INSERT INTO t(id, n) VALUES(?, -1)",
	                         (cleave_value[]){cleave_text("c")}, 1, NULL),
	                 CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "23514"));
	assert_int_equal(m->exec(s, "SELEC 1", NULL, 0, NULL), CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "syntax"));
	assert_int_equal(m->exec(s, "SELECT ?", NULL, 0, NULL), CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "wants 1 parameters"));
	assert_int_equal(m->exec(s, "SELECT ?::text",
	                         (cleave_value[]){cleave_textn("a\0b", 3)}, 1,
	                         NULL),
	                 CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "NUL"));
	/* a statement that failed to prepare is prepared again next time */
	assert_int_equal(m->exec(s, "SELECT * FROM later", NULL, 0, NULL),
	                 CLEAVE_EINVAL);
	TU_OK(m->exec(s, "CREATE TABLE later(x INT)", NULL, 0, NULL));
	TU_OK(m->exec(s, "SELECT * FROM later", NULL, 0, NULL));

	/* a command rolled back alone; the next one commits */
	int64_t head;
	TU_OK(m->head(s, &head));
	assert_int_equal(head, 0);
	TU_OK(m->begin(s));
	/* commands that run no statement (their savepoint is never sent) */
	TU_OK(m->savepoint(s));
	TU_OK(m->release(s));
	TU_OK(m->savepoint(s));
	TU_OK(m->rollback_to(s));
	TU_OK(m->savepoint(s));
	TU_OK(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('r1', 1)", NULL, 0, NULL));
	TU_OK(m->rollback_to(s));
	TU_OK(m->savepoint(s));
	TU_OK(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('r2', 1)", NULL, 0, NULL));
	TU_OK(m->release(s));
	/* a failed statement ends its command: nothing more runs in it */
	TU_OK(m->savepoint(s));
	assert_int_equal(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('a', 1)", NULL, 0, NULL),
	    CLEAVE_EEXIST);
	assert_int_equal(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('r3', 1)", NULL, 0, NULL),
	    CLEAVE_EINTERNAL);
	assert_non_null(strstr(cleave_errmsg(), "earlier statement"));
	assert_int_equal(m->release(s), CLEAVE_EINTERNAL);
	TU_OK(m->rollback_to(s));
	/* a deferred append that fails fails the command's release */
	cl_stored_event ev = {.position = 1,
	                      .version = 1,
	                      .ts_us = 1,
	                      .schema_version = 1,
	                      .stream = "s",
	                      .type = "T",
	                      .data = "{}",
	                      .data_len = 2};
	TU_OK(m->savepoint(s));
	TU_OK(m->append(s, &ev));
	TU_OK(m->append(s, &ev)); /* the same position again */
	assert_int_equal(m->release(s), CLEAVE_EEXIST);
	TU_OK(m->rollback_to(s));
	/* the same after a rejection: rollback_to meets the failure first */
	TU_OK(m->savepoint(s));
	TU_OK(m->append(s, &ev));
	TU_OK(m->append(s, &ev));
	TU_OK(m->rollback_to(s));
	/* and a good one */
	TU_OK(m->savepoint(s));
	TU_OK(m->append(s, &ev));
	int64_t ver;
	TU_OK(m->stream_version(s, "s", &ver));
	assert_int_equal(ver, 1);
	cl_idem_rec rec = {1, 0, "h1", "{\"ok\":1}", 8}, got;
	TU_OK(m->idem_put(s, "k1", &rec));
	TU_OK(m->idem_get(s, "k1", &got));
	assert_string_equal(got.request_hash, "h1");
	assert_int_equal(got.response_len, 8);
	assert_int_equal(got.position, 1);
	assert_int_equal(m->idem_get(s, "k2", &got), CLEAVE_ENOTFOUND);
	TU_OK(m->release(s));
	TU_OK(m->commit(s));
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM t WHERE id LIKE "
	                              "'r%'"),
	                 1);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM t WHERE id = "
	                              "'r2'"),
	                 1);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events"), 1);
	TU_OK(m->head(s, &head));
	assert_int_equal(head, 1);

	/* a failure outside any savepoint dooms the batch: COMMIT refused */
	TU_OK(m->begin(s));
	TU_OK(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('x1', 1)", NULL, 0, NULL));
	assert_int_equal(m->exec(s, "SELEC 2", NULL, 0, NULL), CLEAVE_EINVAL);
	assert_int_not_equal(m->commit(s), 0);
	m->rollback(s);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM t WHERE id = "
	                              "'x1'"),
	                 0);
	/* a deferred failure the COMMIT meets: not committed */
	TU_OK(m->begin(s));
	TU_OK(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('x2', 1)", NULL, 0, NULL));
	TU_OK(m->append(s, &ev)); /* position 1 is taken */
	assert_int_equal(m->commit(s), CLEAVE_EEXIST);
	m->rollback(s);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM t WHERE id = "
	                              "'x2'"),
	                 0);
	/* the store still works */
	TU_OK(m->begin(s));
	TU_OK(
	    m->exec(s, "INSERT INTO t(id, n) VALUES('x3', 1)", NULL, 0, NULL));
	TU_OK(m->commit(s));
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM t WHERE id = "
	                              "'x3'"),
	                 1);

	/* a command with many large deferred appends: they are checked in
	 * bounded groups and the pipeline never stalls */
	enum { NBIG = 200, BIG = 64 * 1024 };
	char *big = malloc(BIG + 1);
	memset(big, 'x', BIG);
	big[0] = '"';
	big[BIG - 1] = '"';
	big[BIG] = 0;
	TU_OK(m->begin(s));
	TU_OK(m->savepoint(s));
	for (int i = 0; i < NBIG; i++) {
		cl_stored_event e2 = {.position = 2 + i,
		                      .version = 1 + i,
		                      .ts_us = 1,
		                      .schema_version = 1,
		                      .stream = "big",
		                      .type = "T",
		                      .data = big,
		                      .data_len = BIG};
		TU_OK(m->append(s, &e2));
	}
	TU_OK(m->release(s));
	TU_OK(m->commit(s));
	free(big);
	assert_int_equal(pgt_int(uri,
	                         "SELECT count(*) FROM events WHERE "
	                         "stream = 'big' AND length(data) = 65536"),
	                 NBIG);
	TU_OK(m->head(s, &head));
	assert_int_equal(head, 1 + NBIG);

	/* durability fsync: synchronous_commit on, whatever the default */
	cleave_rows *sc;
	TU_OK(m->query(s, "SELECT current_setting('synchronous_commit')", NULL,
	               0, &sc));
	assert_int_equal(cleave_rows_next(sc), 1);
	assert_string_equal(cleave_rows_text(sc, 0, NULL), "on");
	cleave_rows_close(sc);
	/* many SQL texts: beyond the cache they run unprepared */
	for (int i = 0; i < 1100; i++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT %d + ?::int", i);
		assert_int_equal(
		    s_int(s, sql, (cleave_value[]){cleave_int(1)}, 1), i + 1);
	}
	m->close(s);

	/* durability os: synchronous_commit off on the writer's session */
	s = open_store(uri, CLEAVE_DURABILITY_OS, false);
	TU_OK(s->m->query(s, "SELECT current_setting('synchronous_commit')",
	                  NULL, 0, &sc));
	assert_int_equal(cleave_rows_next(sc), 1);
	assert_string_equal(cleave_rows_text(sc, 0, NULL), "off");
	cleave_rows_close(sc);
	s->m->close(s);
	free(uri);
}

/* ---- group commit -------------------------------------------------------- */

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
	else
		fprintf(stderr, "unexpected outcome %d: %s\n", o->rc, o->body);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
}

static void wait_done(counter *c, int n)
{
	pthread_mutex_lock(&c->mu);
	while (c->done < n)
		pthread_cond_wait(&c->cond, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

typedef struct submitter {
	cleave_engine *e;
	counter *c;
	int thread, n;
} submitter;

static void *submit_many(void *arg)
{
	submitter *s = arg;
	char body[128];
	for (int i = 0; i < s->n; i++) {
		cleave_request r = {0};
		r.expected_version = -1;
		bool fail = i % 10 == 7;
		r.command = fail ? "Fail" : "Inc";
		snprintf(body, sizeof(body),
		         fail ? "{\"id\":\"f%d-%d\"}"
		              : "{\"id\":\"c%d\",\"by\":1}",
		         s->thread, i);
		r.body = body;
		r.body_len = strlen(body);
		int rc;
		while ((rc = cleave_command_submit(s->e, &r, count_done,
		                                   s->c)) == CLEAVE_EBUSY)
			cl_sleep_ms(1);
		assert_int_equal(rc, 0);
	}
	return NULL;
}

static void test_group_commit(void **state)
{
	char *dir = tu_tmpdir("pggc");
	char *uri = pgt_newdb("gc");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
	             0};
	enum { T = 8, N = 500 };
	pthread_t th[T];
	submitter s[T];
	for (int i = 0; i < T; i++) {
		s[i] = (submitter){e, &c, i, N};
		pthread_create(&th[i], NULL, submit_many, &s[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	wait_done(&c, T * N);
	assert_int_equal(c.rejected, T * 50);
	assert_int_equal(c.ok, T * 450);
	cleave_stats st;
	cleave_stats_get(e, &st);
	assert_true(st.batches < st.commands_total); /* commits were shared */
	assert_int_equal(cleave_log_head(e), T * 450);
	/* the projections applied it all, reading what they missed from
	 * PostgreSQL */
	TU_OK(cleave_wait_position(e, NULL, 0, T * 450, 30000));
	cleave_engine_close(e);
	/* the failing commands left nothing: no rows, no events, no gaps */
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM scratch"), 0);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events "
	                              "WHERE stream = 'failing'"),
	                 0);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events"), T * 450);
	assert_int_equal(pgt_int(uri, "SELECT max(position) FROM events"),
	                 T * 450);
	assert_int_equal(pgt_int(uri, "SELECT sum(n) FROM counters"), T * 450);
	/* versions per stream are gapless too */
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM (SELECT stream"
	                              " FROM events GROUP BY stream HAVING"
	                              " max(version) <> count(*)) x"),
	                 0);
	free(uri);
	tu_rmdir(dir);
}

/* ---- idempotency ------------------------------------------------------- */

typedef struct dup_arg {
	cleave_engine *e;
	char body[4096];
	int64_t pos;
	int rc;
	bool replayed;
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
		d->replayed = o->replayed;
		snprintf(d->body, sizeof(d->body), "%s", o->body);
		cleave_outcome_free(o);
	}
	return NULL;
}

static void test_idempotency(void **state)
{
	char *dir = tu_tmpdir("pgidem");
	char *uri = pgt_newdb("idem");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	enum { T = 16 };
	pthread_t th[T];
	dup_arg *d = calloc(T, sizeof(*d));
	for (int i = 0; i < T; i++) {
		d[i].e = e;
		pthread_create(&th[i], NULL, run_dup, &d[i]);
	}
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	int fresh = 0;
	for (int i = 0; i < T; i++) {
		assert_int_equal(d[i].rc, 0);
		assert_string_equal(d[i].body, d[0].body);
		assert_int_equal(d[i].pos, 1);
		fresh += !d[i].replayed;
	}
	assert_int_equal(fresh, 1);
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
	/* a refusal is the key's answer too: recorded outside the rolled
	 * back savepoint, replayed, nothing else written */
	assert_int_equal(
	    td_run(e, "Create", "{\"id\":\"idem\"}", "key-2", NULL),
	    CLEAVE_EEXIST);
	r.command = "Create";
	r.body = "{\"id\":\"idem\"}";
	r.body_len = strlen(r.body);
	r.idempotency_key = "key-2";
	TU_OK(cleave_command_run(e, &r, &o));
	assert_int_equal(o->rc, CLEAVE_EEXIST);
	assert_true(o->replayed);
	cleave_outcome_free(o);
	cleave_engine_close(e);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM cleave_idempotency"
	                              " WHERE key = 'key-2'"),
	                 1);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events"), 1);
	assert_int_equal(pgt_int(uri, "SELECT n FROM counters"), 5);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events WHERE "
	                              "idem_key = 'key-1'"),
	                 1);

	/* after reopening, the key still answers the first result */
	e = open_pg(dir, uri, &td_domain);
	dup_arg again = {.e = e};
	run_dup(&again);
	assert_int_equal(again.rc, 0);
	assert_true(again.replayed);
	assert_string_equal(again.body, d[0].body);
	int64_t pos;
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"idem\",\"by\":1}", NULL, &pos), 0);
	assert_int_equal(pos, 2);
	cleave_engine_close(e);
	assert_int_equal(pgt_int(uri, "SELECT n FROM counters"), 6);
	free(d);
	free(uri);
	tu_rmdir(dir);
}

/* ---- optimistic concurrency -------------------------------------------- */

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
	char *dir = tu_tmpdir("pgocc");
	char *uri = pgt_newdb("occ");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	char body[512];
	assert_int_equal(run_expect(e, 0, NULL), 0); /* new stream */
	assert_int_equal(run_expect(e, 1, NULL), 0);
	assert_int_equal(run_expect(e, 1, body), CLEAVE_ECONFLICT);
	assert_non_null(strstr(body, "version_conflict"));
	assert_int_equal(run_expect(e, 0, NULL), CLEAVE_ECONFLICT);
	assert_int_equal(run_expect(e, 2, NULL), 0);
	assert_int_equal(run_expect(e, -1, NULL), 0);
	cleave_engine_close(e);
	/* a reopened engine reads the version from PostgreSQL */
	e = open_pg(dir, uri, &td_domain);
	assert_int_equal(run_expect(e, 3, NULL), CLEAVE_ECONFLICT);
	assert_int_equal(run_expect(e, 4, NULL), 0);
	cleave_engine_close(e);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events"), 5);
	assert_int_equal(pgt_int(uri, "SELECT n FROM counters"), 5);
	assert_int_equal(pgt_int(uri, "SELECT max(version) FROM events"), 5);
	free(uri);
	tu_rmdir(dir);
}

/* ---- upcasting ----------------------------------------------------------- */

typedef struct seen {
	int n, upcast;
	int schema[16];
	int64_t last;
	bool ordered;
} seen;

static int collect_ev(void *arg, const cleave_event *ev)
{
	seen *s = arg;
	if (ev->position <= s->last)
		s->ordered = false;
	s->last = ev->position;
	if (strcmp(ev->type, "Incremented"))
		return 0;
	if (cJSON_IsTrue(cJSON_GetObjectItem(ev->json, "upcast")))
		s->upcast++;
	s->schema[s->n++ % 16] = ev->schema_version;
	return 0;
}

static void test_upcasting(void **state)
{
	char *dir = tu_tmpdir("pgupcast");
	char *uri = pgt_newdb("upcast");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	for (int i = 0; i < 3; i++)
		assert_int_equal(
		    td_run(e, "Inc", "{\"id\":\"u\",\"by\":1}", NULL, NULL), 0);
	cleave_engine_close(e);
	e = open_pg(dir, uri, &td_domain_v2);
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"u\",\"by\":1}", NULL, NULL), 0);
	seen s = {.ordered = true};
	TU_OK(cleave_log_read(e, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 4);
	assert_int_equal(s.upcast, 3); /* the three old ones */
	assert_int_equal(s.schema[0], 1);
	assert_int_equal(s.schema[3], 2);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, 0, "c-u", 2, collect_ev, &s));
	assert_int_equal(s.n, 2);
	cleave_engine_close(e);
	free(uri);
	tu_rmdir(dir);
}

/* ---- log reads, traces, read models rebuilt from PostgreSQL ------------ */

static int stop_at_3(void *arg, const cleave_event *ev)
{
	int *n = arg;
	return ++*n == 3 ? 1 : 0;
}

static int64_t query_sum(cleave_engine *e, int64_t *pos)
{
	cleave_answer a;
	TU_OK(cleave_query_run(e, "sum", NULL, 0, &a));
	assert_int_equal(a.rc, 0);
	cJSON *j = cJSON_Parse(a.body);
	int64_t v = (int64_t)cJSON_GetObjectItem(j, "sum")->valuedouble;
	*pos = a.position;
	cJSON_Delete(j);
	cleave_answer_free(&a);
	return v;
}

static void test_log_reads(void **state)
{
	char *dir = tu_tmpdir("pgread");
	char *uri = pgt_newdb("reads");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	counter c = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0,
	             0};
	enum { N = 9000 }; /* more than two read chunks */
	for (int i = 0; i < N; i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"id\":\"r%d\",\"by\":1}",
		         i % 3);
		cleave_request r = {.command = "Inc",
		                    .body = body,
		                    .body_len = strlen(body),
		                    .expected_version = -1};
		while (cleave_command_submit(e, &r, count_done, &c) ==
		       CLEAVE_EBUSY)
			cl_sleep_ms(1);
	}
	wait_done(&c, N);
	assert_int_equal(c.ok, N);
	seen s = {.ordered = true};
	TU_OK(cleave_log_read(e, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, N);
	assert_true(s.ordered);
	assert_int_equal(s.last, N);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, 100, NULL, 4500, collect_ev, &s));
	assert_int_equal(s.n, 4500);
	assert_int_equal(s.last, 4600);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, N - 10, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 10);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, 0, "c-r1", 0, collect_ev, &s));
	assert_int_equal(s.n, N / 3);
	assert_true(s.ordered);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, N, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 0);
	int n = 0;
	TU_OK(cleave_log_read(e, 0, NULL, 0, stop_at_3, &n));
	assert_int_equal(n, 3);
	/* traces, by trace id and by command id */
	cleave_request r = {.command = "Inc",
	                    .body = "{\"id\":\"t\",\"by\":2}",
	                    .trace_id = "trace-pg-1",
	                    .expected_version = -1};
	r.body_len = strlen(r.body);
	cleave_outcome *o;
	TU_OK(cleave_command_run(e, &r, &o));
	assert_int_equal(o->rc, 0);
	char cmd_id[64];
	snprintf(cmd_id, sizeof(cmd_id), "%s", o->command_id);
	cleave_outcome_free(o);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_trace(e, "trace-pg-1", collect_ev, &s));
	assert_int_equal(s.n, 1);
	assert_int_equal(s.last, N + 1);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_trace(e, cmd_id, collect_ev, &s));
	assert_int_equal(s.n, 1);
	TU_OK(cleave_wait_position(e, NULL, 0, N + 1, 30000));
	int64_t pos;
	assert_int_equal(query_sum(e, &pos), N + 2);
	cleave_engine_close(e);

	/* a new data directory: every read model is built from the log in
	 * PostgreSQL, through the readers */
	char *dir2 = tu_tmpdir("pgread2");
	e = open_pg(dir2, uri, &td_domain);
	TU_OK(cleave_wait_position(e, NULL, 0, N + 1, 60000));
	assert_int_equal(query_sum(e, &pos), N + 2);
	assert_int_equal(pos, N + 1);
	int64_t ndiff = -1, at;
	TU_OK(cleave_projection_verify(e, "rows", NULL, NULL, &ndiff, &at));
	assert_int_equal(ndiff, 0);
	cleave_engine_close(e);
	free(uri);
	tu_rmdir(dir2);
	tu_rmdir(dir);
}

/* ---- one writer per database; read-only inspection ----------------------- */

static void test_lock(void **state)
{
	char *dir = tu_tmpdir("pglock");
	char *dir2 = tu_tmpdir("pglock2");
	char *uri = pgt_newdb("lock");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"l\",\"by\":1}", NULL, NULL), 0);
	/* another engine (its own data directory) on the same database */
	cleave_config cfg = {
	    .domain = &td_domain, .data_dir = dir2, .write_store = uri};
	cleave_engine *e2;
	assert_int_equal(cleave_engine_open(&cfg, &e2), CLEAVE_EBUSY);
	assert_non_null(strstr(cleave_errmsg(), "in use by another cleave"));
	assert_non_null(strstr(cleave_errmsg(), "backend pid"));
	/* read-only inspection works beside the writer */
	cfg.data_dir = dir;
	cfg.read_only = true;
	TU_OK(cleave_engine_open(&cfg, &e2));
	assert_int_equal(cleave_log_head(e2), 1);
	seen s = {.ordered = true};
	TU_OK(cleave_log_read(e2, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 1);
	cleave_engine_close(e2);
	cleave_engine_close(e);
	/* closing released the lock at once */
	cfg.data_dir = dir2;
	cfg.read_only = false;
	TU_OK(cleave_engine_open(&cfg, &e2));
	cleave_engine_close(e2);

	/* read-only on an empty database creates nothing and sees no log */
	char *empty = pgt_newdb("empty");
	cfg.write_store = empty;
	cfg.read_only = true;
	TU_OK(cleave_engine_open(&cfg, &e2));
	assert_int_equal(cleave_log_head(e2), 0);
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e2, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 0);
	cleave_engine_close(e2);
	assert_int_equal(pgt_int(empty, "SELECT count(*) FROM pg_tables WHERE "
	                                "schemaname = 'public'"),
	                 0);
	free(empty);
	/* an unreachable server: a clear error, not a hang */
	char bad[128];
	snprintf(bad, sizeof(bad),
	         "postgres://postgres:pw@127.0.0.1:%d/nosuchdb", pgt_port());
	cfg.write_store = bad;
	cfg.read_only = false;
	assert_int_equal(cleave_engine_open(&cfg, &e2), CLEAVE_EIO);
	assert_non_null(strstr(cleave_errmsg(), "cannot connect"));
	assert_null(strstr(cleave_errmsg(), ":pw@"));
	free(uri);
	tu_rmdir(dir2);
	tu_rmdir(dir);
}

static void test_domain_mismatch(void **state)
{
	char *dir = tu_tmpdir("pgdom");
	char *dir2 = tu_tmpdir("pgdom2");
	char *uri = pgt_newdb("dom");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	cleave_engine_close(e);
	cleave_config cfg = {.domain = cleave_domain_find("shop"),
	                     .data_dir = dir2,
	                     .write_store = uri};
	assert_int_equal(cleave_engine_open(&cfg, &e), CLEAVE_EINVAL);
	assert_non_null(strstr(cleave_errmsg(), "holds the 't' domain"));
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM pg_tables WHERE "
	                              "tablename = 'users'"),
	                 0);
	free(uri);
	tu_rmdir(dir2);
	tu_rmdir(dir);
}

/* ---- the shop on PostgreSQL -------------------------------------------- */

static int shop_cmd(cleave_engine *e, const char *cmd, const char *body,
                    const char *key, cJSON **out)
{
	cleave_request r = {.command = cmd,
	                    .body = body,
	                    .body_len = strlen(body),
	                    .idempotency_key = key,
	                    .expected_version = -1};
	cleave_outcome *o;
	TU_OK(cleave_command_run(e, &r, &o));
	int rc = o->rc;
	if (out)
		*out = cJSON_Parse(o->body);
	cleave_outcome_free(o);
	return rc;
}

static cJSON *shop_query(cleave_engine *e, const char *name, const char *k,
                         const char *v, int64_t min_pos)
{
	TU_OK(cleave_wait_position(e, NULL, 0, min_pos, 10000));
	cleave_param p[] = {{k, v}};
	cleave_answer a;
	TU_OK(cleave_query_run(e, name, p, 1, &a));
	assert_int_equal(a.rc, 0);
	cJSON *j = cJSON_Parse(a.body);
	cleave_answer_free(&a);
	return j;
}

static int64_t jint(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	if (!cJSON_IsNumber(v))
		fail_msg("member %s is not a number", k);
	return (int64_t)v->valuedouble;
}

static void test_shop(void **state)
{
	char *dir = tu_tmpdir("pgshop");
	char *uri = pgt_newdb("shop");
	cleave_engine *e = open_pg(dir, uri, cleave_domain_find("shop"));
	assert_int_equal(shop_cmd(e, "RegisterUser",
	                          "{\"userId\":\"u1\",\"name\":\"Ada\","
	                          "\"country\":\"SE\"}",
	                          NULL, NULL),
	                 0);
	assert_int_equal(shop_cmd(e, "RegisterUser",
	                          "{\"userId\":\"u1\",\"name\":\"Ada\","
	                          "\"country\":\"SE\"}",
	                          NULL, NULL),
	                 CLEAVE_EEXIST);
	assert_int_equal(shop_cmd(e, "AddProduct",
	                          "{\"productId\":\"p1\",\"name\":\"Espresso "
	                          "machine\",\"category\":\"kitchen\","
	                          "\"price_cents\":19900,\"stock\":5,"
	                          "\"description\":\"it's 15 bar?\"}",
	                          NULL, NULL),
	                 0);
	assert_int_equal(shop_cmd(e, "CreatePromo",
	                          "{\"code\":\"WELCOME10\",\"percent_off\":10,"
	                          "\"max_uses\":100,\"expires_at\":4102444800}",
	                          NULL, NULL),
	                 0);
	assert_int_equal(shop_cmd(e, "AddToCart",
	                          "{\"cartId\":\"c1\",\"userId\":\"u1\","
	                          "\"productId\":\"p1\",\"quantity\":6}",
	                          NULL, NULL),
	                 0);
	/* not enough stock: rejected, nothing changes */
	assert_int_equal(shop_cmd(e, "Checkout",
	                          "{\"userId\":\"u1\",\"cartId\":\"c1\"}", NULL,
	                          NULL),
	                 CLEAVE_EREJECTED);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM orders"), 0);
	assert_int_equal(pgt_int(uri, "SELECT stock FROM inventory"), 5);
	assert_int_equal(shop_cmd(e, "Restock",
	                          "{\"productId\":\"p1\",\"quantity\":1}", NULL,
	                          NULL),
	                 0);
	cJSON *out, *again;
	const char *co = "{\"userId\":\"u1\",\"cartId\":\"c1\","
	                 "\"promoCode\":\"WELCOME10\"}";
	assert_int_equal(shop_cmd(e, "Checkout", co, "co-c1", &out), 0);
	assert_int_equal(shop_cmd(e, "Checkout", co, "co-c1", &again), 0);
	char *a = cJSON_PrintUnformatted(out),
	     *b = cJSON_PrintUnformatted(again);
	assert_string_equal(a, b);
	free(a);
	free(b);
	const cJSON *res = cJSON_GetObjectItem(out, "result");
	assert_int_equal(jint(res, "total_cents"), 6 * 19900 - 6 * 19900 / 10);
	int64_t pos = jint(out, "position");
	cJSON_Delete(out);
	cJSON_Delete(again);
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM orders"), 1);
	cJSON *card = shop_query(e, "product", "productId", "p1", pos);
	assert_int_equal(jint(card, "stock"), 0);
	assert_int_equal(jint(card, "sold"), 6);
	cJSON_Delete(card);
	cleave_engine_close(e);
	/* the event data is stored as the exact text */
	assert_int_equal(pgt_int(uri, "SELECT count(*) FROM events WHERE data "
	                              "LIKE '%it''s 15 bar?%'"),
	                 1);
	free(uri);
	tu_rmdir(dir);
}

static void test_bank(void **state)
{
	char *dir = tu_tmpdir("pgbank");
	char *uri = pgt_newdb("bank");
	cleave_engine *e = open_pg(dir, uri, cleave_domain_find("bank"));
	static const struct {
		const char *cmd, *body;
		int rc;
	} steps[] = {
	    {"OpenAccount",
	     "{\"accountId\":\"a\",\"owner\":\"Ann\",\"currency\":\"EUR\"}", 0},
	    {"OpenAccount",
	     "{\"accountId\":\"b\",\"owner\":\"Bo\",\"currency\":\"EUR\"}", 0},
	    {"OpenAccount",
	     "{\"accountId\":\"a\",\"owner\":\"Ann\",\"currency\":\"EUR\"}",
	     CLEAVE_EEXIST},
	    {"Deposit", "{\"accountId\":\"a\",\"amount_cents\":1000}", 0},
	    {"Transfer",
	     "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	     "\"amount_cents\":300}",
	     0},
	    {"Transfer",
	     "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	     "\"amount_cents\":300}",
	     CLEAVE_EEXIST},
	    {"Withdraw", "{\"accountId\":\"b\",\"amount_cents\":301}",
	     CLEAVE_EREJECTED},
	    {"Withdraw", "{\"accountId\":\"b\",\"amount_cents\":300}", 0},
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int rc = shop_cmd(e, steps[i].cmd, steps[i].body, NULL, NULL);
		if (rc != steps[i].rc)
			fail_msg("step %zu %s gave %d", i, steps[i].cmd, rc);
	}
	cJSON *bal =
	    shop_query(e, "balance", "accountId", "a", cleave_log_head(e));
	assert_int_equal(jint(bal, "balance_cents"), 700);
	cJSON_Delete(bal);
	cleave_engine_close(e);
	/* money is conserved in the write model */
	assert_int_equal(
	    pgt_int(uri, "SELECT sum(balance_cents) FROM accounts"), 700);
	free(uri);
	tu_rmdir(dir);
}

/* ---- lost connections -------------------------------------------------- */

static void terminate(const char *uri, const char *app)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT count(pg_terminate_backend(pid)) FROM "
	         "pg_stat_activity WHERE application_name = '%s' AND "
	         "datname = current_database()",
	         app);
	assert_true(pgt_int(uri, sql) >= 1);
	cl_sleep_ms(200);
}

static void test_reconnect(void **state)
{
	char *dir = tu_tmpdir("pgre");
	char *uri = pgt_newdb("re");
	cleave_engine *e = open_pg(dir, uri, &td_domain);
	int64_t pos;
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"x\",\"by\":1}", NULL, &pos), 0);
	/* the writer's session ends between batches: the next batch
	 * reconnects, takes the lock again and goes on */
	terminate(uri, "cleave");
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"x\",\"by\":1}", NULL, &pos), 0);
	assert_int_equal(pos, 2);
	/* readers too */
	seen s = {.ordered = true};
	TU_OK(cleave_log_read(e, 0, NULL, 0, collect_ev, &s));
	terminate(uri, "cleave-reader");
	s = (seen){.ordered = true};
	TU_OK(cleave_log_read(e, 0, NULL, 0, collect_ev, &s));
	assert_int_equal(s.n, 2);
	/* the log moved while the writer was away: it refuses to go on
	 * rather than write at positions it no longer knows */
	assert_int_equal(pgt_exec(uri, "INSERT INTO events(position, stream,"
	                               " version, type, schema_version, data,"
	                               " ts_us) VALUES(3, 'c-y', 1,"
	                               " 'Incremented', 1, '{\"id\":\"y\","
	                               "\"by\":1,\"n\":1}', 0)"),
	                 0);
	terminate(uri, "cleave");
	int rc = td_run(e, "Inc", "{\"id\":\"x\",\"by\":1}", NULL, &pos);
	assert_int_equal(rc, CLEAVE_EIO);
	rc = td_run(e, "Inc", "{\"id\":\"x\",\"by\":1}", NULL, &pos);
	assert_int_equal(rc, CLEAVE_EIO);
	cleave_engine_close(e);
	assert_int_equal(pgt_int(uri, "SELECT n FROM counters"), 2);
	/* a restart goes on from the log as stored */
	e = open_pg(dir, uri, &td_domain);
	assert_int_equal(
	    td_run(e, "Inc", "{\"id\":\"x\",\"by\":1}", NULL, &pos), 0);
	assert_int_equal(pos, 4);
	cleave_engine_close(e);
	free(uri);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest offline[] = {
	    cmocka_unit_test(test_rewrite),
	    cmocka_unit_test(test_redact),
	};
	const struct CMUnitTest online[] = {
	    cmocka_unit_test(test_store_sql),
	    cmocka_unit_test(test_group_commit),
	    cmocka_unit_test(test_idempotency),
	    cmocka_unit_test(test_optimistic_concurrency),
	    cmocka_unit_test(test_upcasting),
	    cmocka_unit_test(test_log_reads),
	    cmocka_unit_test(test_lock),
	    cmocka_unit_test(test_domain_mismatch),
	    cmocka_unit_test(test_shop),
	    cmocka_unit_test(test_bank),
	    cmocka_unit_test(test_reconnect),
	};
	int rc = cmocka_run_group_tests_name("offline", offline, NULL, NULL);
	int started = pgt_start();
	if (started == 1) {
		printf("SKIPPED: PostgreSQL server programs are not installed "
		       "(sh scripts/deps.sh test installs them); the "
		       "PostgreSQL write store was not tested\n");
		return rc;
	}
	rc |= cmocka_run_group_tests_name("postgres", online, NULL, NULL);
	pgt_stop();
	return rc;
}
