/*
 * inproc.c — the engine's own ceiling: shop commands through the library
 * API (cleave_command_submit), no HTTP, beside a naive SQLite loop that
 * does one transaction + fsync per command with the same schema and
 * statements.  Also seeds data directories for the HTTP benchmarks.
 *
 *   inproc seed   --data DIR [--users N --products N --scarce N]
 *   inproc cleave --data DIR --workload restock|checkout [--threads T]
 *                 [--window W] [--duration S] [--warmup S]
 *                 [--no-projections] [--durability fsync|os]
 *   inproc naive  --data DIR [--duration S]          (Restock only)
 *   inproc schema                 prints the shop's write schema (SQL)
 *
 * `cleave`: T threads each keep at most W commands in flight (a closed
 * loop: a thread waits for a completion when its window is full, and on
 * CLEAVE_EBUSY waits for one of its commands to complete; it never
 * spins).  Rate = commands completed in the measured window / its length.
 * Output: one JSON object on stdout.
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "domains.h"
#include "shopload.h"

static struct {
	const char *data;
	const char *workload;
	int threads, window;
	double duration, warmup;
	bool no_projections;
	int durability;
	int users, products, scarce;
} opt = {
    .workload = "restock",
    .threads = 2,
    .window = 1024,
    .duration = 5,
    .warmup = 1,
    .users = 1000,
    .products = 1000,
    .scarce = 10,
};

static atomic_bool stop;

typedef struct thr {
	int idx;
	cleave_engine *e;
	sl_window w;
	pthread_t th;
} thr;

static void *run_thread(void *arg)
{
	thr *t = arg;
	uint32_t rng = 0x9e3779b9u * (uint32_t)(t->idx + 1);
	char body[512], cart[64];
	bool checkout = !strcmp(opt.workload, "checkout");
	uint64_t n = 0;
	pid_t pid = getpid();
	while (!atomic_load(&stop)) {
		int len;
		if (!checkout) {
			len =
			    snprintf(body, sizeof(body),
			             "{\"productId\":\"p%u\",\"quantity\":1}",
			             sl_rnd(&rng) % (uint32_t)opt.products + 1);
			sl_submit(t->e, &t->w, "Restock", body, len);
			continue;
		}
		snprintf(cart, sizeof(cart), "ci-%d-%d-%" PRIu64, (int)pid,
		         t->idx, n++);
		int user = (int)(sl_rnd(&rng) % (uint32_t)opt.users) + 1;
		bool sc = sl_rnd(&rng) % 100 < 5, promo = sl_rnd(&rng) % 4 == 0;
		for (int step = 0; step < 4; step++) {
			const char *cmd = sl_checkout_step(
			    body, sizeof(body), &len, step, cart, user, &rng,
			    opt.products, opt.scarce, sc, promo);
			sl_submit(t->e, &t->w, cmd, body, len);
		}
	}
	sl_drain(&t->w);
	return NULL;
}

static uint64_t total_done(thr *ts)
{
	uint64_t n = 0;
	for (int i = 0; i < opt.threads; i++) {
		pthread_mutex_lock(&ts[i].w.mu);
		n += ts[i].w.completions;
		pthread_mutex_unlock(&ts[i].w.mu);
	}
	return n;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Bytes this process caused to be written to storage (/proc/self/io). */
static uint64_t io_write_bytes(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	unsigned long long v = 0;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "write_bytes: %llu", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static cleave_engine *open_engine(bool no_proj)
{
	cleave_config cfg = {0};
	cleave_engine *e = NULL;
	cfg.domain = cleave_domain_find("shop");
	cfg.data_dir = opt.data;
	cfg.durability = opt.durability;
	cfg.no_projections = no_proj;
	int rc = cleave_engine_open(&cfg, &e);
	if (rc)
		sl_die("open %s: %s (%s)", opt.data, cleave_strerror(rc),
		       cleave_errmsg());
	return e;
}

static int cmd_cleave(void)
{
	cleave_engine *e = open_engine(opt.no_projections);
	thr *ts = calloc((size_t)opt.threads, sizeof(thr));
	for (int i = 0; i < opt.threads; i++) {
		ts[i].idx = i;
		ts[i].e = e;
		sl_window_init(&ts[i].w, opt.window);
		pthread_create(&ts[i].th, NULL, run_thread, &ts[i]);
	}
	usleep((useconds_t)(opt.warmup * 1e6));
	cleave_stats s0, s1;
	uint64_t n0 = total_done(ts), t0 = sl_now_ns(), io0 = io_write_bytes();
	double cpu0 = cpu_seconds();
	cleave_stats_get(e, &s0);
	usleep((useconds_t)(opt.duration * 1e6));
	uint64_t n1 = total_done(ts), t1 = sl_now_ns(), io1 = io_write_bytes();
	double cpu1 = cpu_seconds();
	cleave_stats_get(e, &s1);
	atomic_store(&stop, true);
	for (int i = 0; i < opt.threads; i++)
		pthread_join(ts[i].th, NULL);
	/* how far behind the projections were at the end */
	int64_t max_lag = 0;
	for (int i = 0; i < cleave_projection_count(e); i++) {
		cleave_proj_status st;
		if (!cleave_projection_status(e, i, &st) &&
		    st.lag_events > max_lag)
			max_lag = st.lag_events;
	}
	hist *all = calloc(1, sizeof(hist));
	uint64_t ok = 0, rej = 0, failed = 0, busy = 0;
	for (int i = 0; i < opt.threads; i++) {
		hist_merge(all, &ts[i].w.lat);
		ok += ts[i].w.ok;
		rej += ts[i].w.rejected;
		failed += ts[i].w.failed;
		busy += ts[i].w.busy_waits;
	}
	double secs = (double)(t1 - t0) / 1e9;
	uint64_t batches = s1.batches - s0.batches;
	printf("{\"workload\":\"%s\",\"threads\":%d,\"window\":%d,"
	       "\"projections\":%s,\"durability\":\"%s\",\"duration_s\":%.3f,"
	       "\"commands_per_s\":%.1f,\"ok\":%" PRIu64
	       ",\"rejected\":%" PRIu64 ",\"failed\":%" PRIu64
	       ",\"busy_waits\":%" PRIu64 ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
	       "\"batches_per_s\":%.1f,\"mean_batch\":%.1f,"
	       "\"fsyncs_per_s\":%.1f,\"events_per_s\":%.1f,"
	       "\"write_bytes_per_command\":%.0f,\"cpu_us_per_command\":%.1f,"
	       "\"projection_lag_events_at_end\":%" PRId64 "}\n",
	       opt.workload, opt.threads, opt.window,
	       opt.no_projections ? "false" : "true",
	       opt.durability ? "os" : "fsync", secs, (double)(n1 - n0) / secs,
	       ok, rej, failed, busy, hist_q(all, 0.5), hist_q(all, 0.99),
	       (double)batches / secs,
	       batches ? (double)(s1.commands_total - s0.commands_total) /
	                     (double)batches
	               : 0,
	       (double)(s1.fsyncs - s0.fsyncs) / secs,
	       (double)(s1.events_appended - s0.events_appended) / secs,
	       n1 > n0 ? (double)(io1 - io0) / (double)(n1 - n0) : 0,
	       n1 > n0 ? (cpu1 - cpu0) * 1e6 / (double)(n1 - n0) : 0, max_lag);
	cleave_engine_close(e);
	return failed ? 1 : 0;
}

static int cmd_seed(void)
{
	cleave_engine *e = open_engine(false);
	sl_seed(e, opt.users, opt.products, opt.scarce);
	int64_t head = cleave_log_head(e);
	cleave_wait_position(e, NULL, 0, head, 60000);
	cleave_engine_close(e);
	fprintf(stderr,
	        "seeded %s: %d users, %d products, %d scarce, head %" PRId64
	        "\n",
	        opt.data, opt.users, opt.products, opt.scarce, head);
	return 0;
}

/* ---- the naive loop ---------------------------------------------------- */

static void sq(sqlite3 *db, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		sl_die("sqlite: %s: %s", sql, err ? err : "?");
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		sl_die("prepare %s: %s", sql, sqlite3_errmsg(db));
	return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		sl_die("step: %s", sqlite3_errmsg(db));
	sqlite3_reset(st);
}

/* The same write schema (the shop's migrations) and the engine's events
 * table; WAL + synchronous=FULL; one BEGIN IMMEDIATE ... COMMIT per
 * Restock doing what the Restock handler and the engine do: read the
 * stock, update it, read the stream's version, append the event. */
static int cmd_naive(void)
{
	char path[4096];
	sqlite3 *db;
	snprintf(path, sizeof(path), "%s/naive.db", opt.data);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		sl_die("open %s", path);
	sq(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	       "PRAGMA foreign_keys=ON;");
	const cleave_domain *d = cleave_domain_find("shop");
	sq(db, "BEGIN");
	for (int i = 0; d->migrations[i]; i++)
		sq(db, d->migrations[i]);
	sq(db, "CREATE TABLE events(position INTEGER PRIMARY KEY,"
	       " stream TEXT NOT NULL, version INTEGER NOT NULL,"
	       " type TEXT NOT NULL, schema_version INTEGER NOT NULL,"
	       " data TEXT NOT NULL, ts_us INTEGER NOT NULL, trace_id TEXT,"
	       " command_id TEXT, idem_key TEXT, causation_id TEXT);"
	       "CREATE UNIQUE INDEX events_stream ON events(stream, version);");
	sqlite3_stmt *ip = prep(db, "INSERT INTO products (product_id, name,"
	                            " category, description, price_cents,"
	                            " added_at) VALUES (?, 'x', 'c', '', 100,"
	                            " 0)");
	sqlite3_stmt *ii = prep(db, "INSERT INTO inventory (product_id, stock)"
	                            " VALUES (?, 1000000000)");
	for (int i = 1; i <= opt.products; i++) {
		char id[24];
		snprintf(id, sizeof(id), "p%d", i);
		sqlite3_bind_text(ip, 1, id, -1, SQLITE_TRANSIENT);
		step_done(db, ip);
		sqlite3_bind_text(ii, 1, id, -1, SQLITE_TRANSIENT);
		step_done(db, ii);
	}
	sq(db, "COMMIT");
	sqlite3_stmt *sel = prep(db, "SELECT stock FROM inventory"
	                             " WHERE product_id = ?");
	sqlite3_stmt *upd = prep(db, "UPDATE inventory SET stock = ?"
	                             " WHERE product_id = ?");
	sqlite3_stmt *ver =
	    prep(db, "SELECT version FROM events WHERE"
	             " stream = ? ORDER BY version DESC LIMIT 1");
	sqlite3_stmt *app = prep(
	    db, "INSERT INTO events(position, stream, version, type,"
	        " schema_version, data, ts_us, trace_id, command_id, idem_key,"
	        " causation_id) VALUES(NULL,?,?,'ProductRestocked',1,?,?,?,?,"
	        "NULL,NULL)");
	sqlite3_stmt *begin = prep(db, "BEGIN IMMEDIATE");
	sqlite3_stmt *commit = prep(db, "COMMIT");
	uint32_t rng = 12345;
	uint64_t n = 0, t0 = sl_now_ns(),
	         tend = t0 + (uint64_t)(opt.duration * 1e9);
	uint64_t t = t0;
	hist *h = calloc(1, sizeof(hist));
	while (t < tend) {
		char id[24], stream[32], data[160];
		unsigned p = sl_rnd(&rng) % (unsigned)opt.products + 1;
		snprintf(id, sizeof(id), "p%u", p);
		snprintf(stream, sizeof(stream), "product-p%u", p);
		step_done(db, begin);
		sqlite3_bind_text(sel, 1, id, -1, SQLITE_STATIC);
		if (sqlite3_step(sel) != SQLITE_ROW)
			sl_die("no product %s", id);
		int64_t stock = sqlite3_column_int64(sel, 0) + 1;
		sqlite3_reset(sel);
		sqlite3_bind_int64(upd, 1, stock);
		sqlite3_bind_text(upd, 2, id, -1, SQLITE_STATIC);
		step_done(db, upd);
		sqlite3_bind_text(ver, 1, stream, -1, SQLITE_STATIC);
		int64_t v = sqlite3_step(ver) == SQLITE_ROW
		                ? sqlite3_column_int64(ver, 0)
		                : 0;
		sqlite3_reset(ver);
		int dn = snprintf(data, sizeof(data),
		                  "{\"productId\":\"%s\",\"quantity\":1,"
		                  "\"stock\":%" PRId64 "}",
		                  id, stock);
		sqlite3_bind_text(app, 1, stream, -1, SQLITE_STATIC);
		sqlite3_bind_int64(app, 2, v + 1);
		sqlite3_bind_text(app, 3, data, dn, SQLITE_STATIC);
		sqlite3_bind_int64(app, 4, (int64_t)(t / 1000));
		sqlite3_bind_text(app, 5, "naive-trace", -1, SQLITE_STATIC);
		sqlite3_bind_text(app, 6, "naive-command", -1, SQLITE_STATIC);
		step_done(db, app);
		step_done(db, commit);
		uint64_t t2 = sl_now_ns();
		hist_add(h, (t2 - t) / 1000);
		t = t2;
		n++;
	}
	double secs = (double)(t - t0) / 1e9;
	printf("{\"workload\":\"restock\",\"naive_sqlite\":true,"
	       "\"duration_s\":%.3f,\"commands_per_s\":%.1f,\"p50_ms\":%.3f,"
	       "\"p99_ms\":%.3f}\n",
	       secs, (double)n / secs, hist_q(h, 0.5), hist_q(h, 0.99));
	sqlite3_close(db);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"data", 1, 0, 'D'},           {"workload", 1, 0, 'W'},
	    {"threads", 1, 0, 't'},        {"window", 1, 0, 'w'},
	    {"duration", 1, 0, 'd'},       {"warmup", 1, 0, 'u'},
	    {"no-projections", 0, 0, 'N'}, {"durability", 1, 0, 'y'},
	    {"users", 1, 0, 'U'},          {"products", 1, 0, 'P'},
	    {"scarce", 1, 0, 'S'},         {0, 0, 0, 0}};
	if (argc < 2)
		sl_die("usage: inproc seed|cleave|naive --data DIR [options]");
	const char *sub = argv[1];
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'D':
			opt.data = optarg;
			break;
		case 'W':
			opt.workload = optarg;
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'w':
			opt.window = atoi(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'u':
			opt.warmup = atof(optarg);
			break;
		case 'N':
			opt.no_projections = true;
			break;
		case 'y':
			opt.durability = !strcmp(optarg, "os");
			break;
		case 'U':
			opt.users = atoi(optarg);
			break;
		case 'P':
			opt.products = atoi(optarg);
			break;
		case 'S':
			opt.scarce = atoi(optarg);
			break;
		default:
			sl_die("bad option");
		}
	}
	if (!opt.data && strcmp(sub, "schema"))
		sl_die("--data DIR is required");
	if (!strcmp(sub, "schema")) {
		/* the shop's write schema, for the PostgreSQL baseline */
		const cleave_domain *d = cleave_domain_find("shop");
		for (int i = 0; d->migrations[i]; i++)
			printf("%s\n", d->migrations[i]);
		return 0;
	}
	if (!strcmp(sub, "seed"))
		return cmd_seed();
	if (!strcmp(sub, "cleave"))
		return cmd_cleave();
	if (!strcmp(sub, "naive"))
		return cmd_naive();
	sl_die("unknown subcommand %s", sub);
}
