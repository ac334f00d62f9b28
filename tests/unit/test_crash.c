/*
 * test_crash.c — exactly once across crashes.
 *
 * A child process runs commands from several threads (each with an
 * idempotency key) while the projections run, sometimes during a
 * blue-green rebuild; the parent SIGKILLs it at a random moment, 30 times
 * or more (CLEAVE_CRASH_TRIALS).  After each kill the parent reopens the
 * data directory and checks:
 *  - every acknowledged command is durable: its key replays its position;
 *  - nothing unacknowledged is half-applied: every counter in the write
 *    model equals the sum of its events, and the log has no gaps;
 *  - retrying every command the child sent, with its key, leaves each with
 *    exactly one effect;
 *  - every read model equals a from-scratch rebuild (cleave_projection_
 *    verify), and the totals model agrees with the write model.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "tdomain.h"
#include "testutil.h"

typedef struct child_ctx {
	cleave_engine *e;
	int fd;
	int thread;
	int trial;
	atomic_int inflight; /* a client waits for answers: at most 32 */
} child_ctx;

static void log_line(int fd, const char *line)
{
	size_t n = strlen(line);
	if (write(fd, line, n) != (ssize_t)n)
		_exit(3);
}

typedef struct ack {
	child_ctx *c;
	int fd;
	char key[64];
	char body[96];
} ack;

static void on_done(void *arg, const cleave_outcome *o)
{
	ack *a = arg;
	char line[256];
	if (o->rc == 0) {
		snprintf(line, sizeof(line), "ack %s %lld %s\n", a->key,
			 (long long)o->position, a->body);
		log_line(a->fd, line);
	}
	atomic_fetch_sub(&a->c->inflight, 1);
	free(a);
}

static void *child_writer(void *arg)
{
	child_ctx *c = arg;
	unsigned seed = (unsigned)(c->trial * 131 + c->thread);
	for (int i = 0;; i++) {
		while (atomic_load(&c->inflight) >= 32)
			usleep(200);
		ack *a = malloc(sizeof(*a));
		a->c = c;
		a->fd = c->fd;
		snprintf(a->key, sizeof(a->key), "k-%d-%d-%d", c->trial,
			 c->thread, i);
		snprintf(a->body, sizeof(a->body), "{\"id\":\"x%d\",\"by\":%d}",
			 rand_r(&seed) % 20, 1 + rand_r(&seed) % 5);
		char line[256];
		snprintf(line, sizeof(line), "sent %s 0 %s\n", a->key, a->body);
		log_line(c->fd, line);
		cleave_request r = {.command = "Inc", .body = a->body,
				    .body_len = strlen(a->body),
				    .idempotency_key = a->key,
				    .expected_version = -1};
		int rc;
		while ((rc = cleave_command_submit(c->e, &r, on_done, a)) ==
		       CLEAVE_EBUSY)
			usleep(500);
		if (rc)
			_exit(4);
		atomic_fetch_add(&c->inflight, 1);
	}
	return NULL;
}

static void child_main(const char *dir, const char *logpath, int trial)
{
	int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (fd < 0)
		_exit(2);
	cleave_config cfg = {.domain = &td_domain, .data_dir = dir,
			     .apply_batch_max = 256};
	cleave_engine *e;
	if (cleave_engine_open(&cfg, &e))
		_exit(5);
	if (trial % 3 == 2)
		cleave_projection_rebuild(e, "totals"); /* killed mid-rebuild */
	if (trial % 5 == 4)
		cleave_projection_rebuild(e, "rows");
	enum { T = 4 };
	pthread_t th[T];
	child_ctx ctx[T];
	for (int i = 0; i < T; i++) {
		ctx[i] = (child_ctx){e, fd, i, trial, 0};
		pthread_create(&th[i], NULL, child_writer, &ctx[i]);
	}
	for (;;)
		pause();
}

/* ---- the parent's checks -------------------------------------------------- */

typedef struct retry retry;
typedef struct entry {
	char key[64];
	char body[96];
	int64_t pos; /* acknowledged position, 0 if never acknowledged */
	retry *slot;
	int rc;
	bool replayed;
	int64_t got;
} entry;

struct retry {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
	entry *v;
};

static void on_retry(void *arg, const cleave_outcome *o)
{
	entry *en = arg;
	en->rc = o->rc;
	en->replayed = o->replayed;
	en->got = o->position;
	pthread_mutex_lock(&en->slot->mu);
	en->slot->done++;
	pthread_cond_signal(&en->slot->cond);
	pthread_mutex_unlock(&en->slot->mu);
}

static int load_log(const char *path, entry **out)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int n = 0, cap = 0;
	entry *v = NULL;
	size_t hcap = 1 << 20;
	int *slot = malloc(hcap * sizeof(int)); /* index + 1, 0 empty */
	memset(slot, 0, hcap * sizeof(int));
	char kind[8], key[64], body[96];
	long long pos;
	while (fscanf(f, "%7s %63s %lld %95s", kind, key, &pos, body) == 4) {
		size_t j = cl_hash_str(key) & (hcap - 1);
		while (slot[j] && strcmp(v[slot[j] - 1].key, key))
			j = (j + 1) & (hcap - 1);
		if (!slot[j]) {
			assert_true((size_t)n < hcap / 2);
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				v = realloc(v, (size_t)cap * sizeof(*v));
			}
			memset(&v[n], 0, sizeof(v[n]));
			snprintf(v[n].key, sizeof(v[n].key), "%s", key);
			snprintf(v[n].body, sizeof(v[n].body), "%s", body);
			slot[j] = ++n;
		}
		if (!strcmp(kind, "ack"))
			v[slot[j] - 1].pos = pos;
	}
	fclose(f);
	free(slot);
	*out = v;
	return n;
}

static int64_t sql_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		fail_msg("sql %s: %s", sql, sqlite3_errmsg(db));
	int64_t v = -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void check_write_model(const char *dir)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/write.db", dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	/* killed before the first migration committed: nothing else yet */
	if (sql_int(db, "SELECT count(*) FROM sqlite_master WHERE name = "
			"'counters'") == 0) {
		assert_true(sql_int(db, "SELECT count(*) FROM sqlite_master "
					"WHERE name = 'events'") != 1 ||
			    sql_int(db, "SELECT count(*) FROM events") == 0);
		sqlite3_close(db);
		return;
	}
	/* gapless log */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM events"),
			 sql_int(db, "SELECT coalesce(max(position),0) "
				     "FROM events"));
	/* each counter is exactly the sum of its events */
	assert_int_equal(
		sql_int(db, "SELECT count(*) FROM counters c WHERE n != "
			    "(SELECT coalesce(sum(json_extract(data,'$.by')),0)"
			    " FROM events WHERE stream = 'c-' || c.id)"),
		0);
	/* one event per key: never two effects */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM (SELECT idem_key "
				     "FROM events WHERE idem_key IS NOT NULL "
				     "GROUP BY idem_key HAVING count(*) > 1)"),
			 0);
	/* every key's stored answer names its event's position */
	assert_int_equal(sql_int(db, "SELECT count(*) FROM cleave_idempotency i"
				     " WHERE NOT EXISTS (SELECT 1 FROM events"
				     " WHERE idem_key = i.key AND position = "
				     "i.position)"),
			 0);
	sqlite3_close(db);
}

static void verify_all(cleave_engine *e)
{
	static const char *const names[] = {"totals", "poison", "skipper",
					    "rows", "deferred"};
	for (size_t i = 0; i < 5; i++) {
		int64_t nd = -1, at;
		TU_OK(cleave_projection_verify(e, names[i], NULL, NULL, &nd,
					       &at));
		if (nd != 0)
			fail_msg("projection %s drifted: %lld differences",
				 names[i], (long long)nd);
	}
}

static void test_crash_trials(void **state)
{
	const char *env = getenv("CLEAVE_CRASH_TRIALS");
	int trials = env ? atoi(env) : 30;
	char *dir = tu_tmpdir("crash");
	char logpath[1024];
	snprintf(logpath, sizeof(logpath), "%s.log", dir);
	unlink(logpath);
	unsigned seed = (unsigned)getpid();
	int64_t acked_total = 0, sent_total = 0;
	for (int t = 0; t < trials; t++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			child_main(dir, logpath, t);
		usleep(30000 + (useconds_t)(rand_r(&seed) % 250000));
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		assert_true(WIFSIGNALED(st));

		check_write_model(dir);
		entry *v = NULL;
		int n = load_log(logpath, &v);
		cleave_config cfg = {.domain = &td_domain, .data_dir = dir};
		cleave_engine *e;
		TU_OK(cleave_engine_open(&cfg, &e));
		/* acknowledged: durable, answered again from the key; the
		 * others get exactly one effect from their retry */
		retry r = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			   0, v};
		for (int i = 0; i < n; i++) {
			cleave_request rq = {.command = "Inc",
					     .body = v[i].body,
					     .body_len = strlen(v[i].body),
					     .idempotency_key = v[i].key,
					     .expected_version = -1};
			v[i].slot = &r;
			int rc;
			while ((rc = cleave_command_submit(e, &rq, on_retry,
							   &v[i])) ==
			       CLEAVE_EBUSY)
				usleep(1000);
			TU_OK(rc);
		}
		pthread_mutex_lock(&r.mu);
		while (r.done < n)
			pthread_cond_wait(&r.cond, &r.mu);
		pthread_mutex_unlock(&r.mu);
		for (int i = 0; i < n; i++) {
			if (v[i].rc)
				fail_msg("retry of %s: %d", v[i].key, v[i].rc);
			if (v[i].pos) {
				if (!v[i].replayed || v[i].got != v[i].pos)
					fail_msg("acknowledged %s at %lld, "
						 "now %lld (replayed %d)",
						 v[i].key, (long long)v[i].pos,
						 (long long)v[i].got,
						 v[i].replayed);
				acked_total++;
			}
		}
		sent_total += n;
		check_write_model(dir);
		/* retried ones are durable too; the models catch up */
		TU_OK(cleave_projection_wait_rebuilt(e, "totals", 60000));
		TU_OK(cleave_projection_wait_rebuilt(e, "rows", 60000));
		TU_OK(cleave_wait_position(e, NULL, 0, cleave_log_head(e),
					   30000));
		verify_all(e);
		cleave_engine_close(e);
		free(v);
		unlink(logpath);
	}
	print_message("crash trials: %d kills, %lld commands sent, %lld "
		      "acknowledged before the kill\n",
		      trials, (long long)sent_total, (long long)acked_total);
	assert_true(acked_total > 0);
	tu_rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_trials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
