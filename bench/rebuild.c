/*
 * rebuild.c — how fast projections are rebuilt from the log, and with how
 * much memory.
 *
 *   rebuild gen --data DIR --events N
 *       Writes a shop log of at least N events into DIR: the seed data
 *       through the engine (no projections), then the checkout mix
 *       appended straight to the events table in the rows the engine
 *       writes (through the engine it ran at ~7k events/s here: 10M
 *       would take half an hour).  Run again with a larger N to extend
 *       the same log.
 *
 *   rebuild measure --data DIR --what all|NAME
 *       all:  opens the engine with projections on a read directory that
 *             is empty (or missing): every projection builds from 0 at
 *             once; the clock stops when all have applied the log head.
 *       NAME: opens the engine (projections caught up), then
 *             cleave_projection_rebuild(NAME) and waits for the switch:
 *             a blue-green rebuild of that projection alone.
 *       Prints JSON: seconds, events/s (log head / seconds: every event
 *       of the log is read, whichever types the projection keeps), CPU
 *       seconds of the process and events per CPU second (the machine is
 *       shared: wall time includes waiting for a core), peak
 *       RSS (VmHWM) and the largest anonymous RSS sampled every 20 ms
 *       (RssAnon: heap, not the LMDB map's file pages).
 *       --read-store URI as for cleave serve (redis://…: the key/value
 *       projections are built in Redis).
 */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "domains.h"
#include "shopload.h"

static const char *read_store; /* --read-store: NULL = embedded */

static cleave_engine *open_engine(const char *data, bool no_proj, int dur)
{
	cleave_config cfg = {0};
	cfg.read_store = read_store;
	cleave_engine *e = NULL;
	cfg.domain = cleave_domain_find("shop");
	cfg.data_dir = data;
	cfg.durability = dur;
	cfg.no_projections = no_proj;
	int rc = cleave_engine_open(&cfg, &e);
	if (rc)
		sl_die("open %s: %s (%s)", data, cleave_strerror(rc),
		       cleave_errmsg());
	return e;
}

/* Appends the checkout mix to the events table directly, in the exact
 * rows the engine writes (see src/write/wstore_sqlite.c and the shop's
 * handlers): per cart three ItemAddedToCart, then OrderPlaced unless the
 * cart holds a product out of stock (5%: then no event, as a failed
 * Checkout writes nothing); 25% of orders use the 10% promo.  Big
 * transactions, synchronous=OFF: generating is not what is measured.  The
 * write tables are not updated: this data directory is for rebuilds only. */
static int64_t gen_direct(const char *data, int64_t target)
{
	char path[4096];
	sqlite3 *db;
	snprintf(path, sizeof(path), "%s/write.db", data);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		sl_die("open %s", path);
	sqlite3_exec(db,
	             "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
	             "PRAGMA cache_size=-262144;",
	             NULL, NULL, NULL);
	sqlite3_stmt *st = NULL, *q = NULL;
	if (sqlite3_prepare_v2(db,
	                       "INSERT INTO events(position, stream, version,"
	                       " type, schema_version, data, ts_us, trace_id,"
	                       " command_id, idem_key, causation_id)"
	                       " VALUES(?,?,?,?,1,?,?,?,?,NULL,NULL)",
	                       -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db,
	                       "SELECT coalesce(max(position),0),"
	                       " (SELECT count(*) FROM events"
	                       "  WHERE type = 'OrderPlaced') FROM events",
	                       -1, &q, NULL) != SQLITE_OK)
		sl_die("prepare: %s", sqlite3_errmsg(db));
	sqlite3_step(q);
	int64_t pos = sqlite3_column_int64(q, 0);
	int64_t orders = sqlite3_column_int64(q, 1);
	sqlite3_finalize(q);
	int64_t start = pos;
	static int64_t stock[1001];
	for (int i = 1; i <= 1000; i++)
		stock[i] = SL_STOCK; /* approximate after a restart: fine */
	uint32_t rng = 0xC1EA7Eu ^ (uint32_t)pos;
	int64_t ts = 1767225600000000LL + pos * 50; /* 2026-01-01, 20k/s */
	char buf[2048], stream[96], cart[64], trace[40], cmd[40];
	int64_t ncart = pos;
	sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
	while (pos < target) {
		snprintf(cart, sizeof(cart), "cd-%" PRId64, ncart++);
		snprintf(stream, sizeof(stream), "cart-%s", cart);
		int user = (int)(sl_rnd(&rng) % 1000) + 1;
		bool scarce = sl_rnd(&rng) % 100 < 5;
		bool promo = sl_rnd(&rng) % 4 == 0;
		int prod[3], qty[3], lq[3];
		for (int l = 0; l < 3; l++) {
			prod[l] = (int)(sl_rnd(&rng) % 1000) + 1;
			qty[l] = (int)(sl_rnd(&rng) % 3) + 1;
			lq[l] = qty[l];
			for (int m = 0; m < l; m++)
				if (prod[m] == prod[l])
					lq[l] = lq[m] += qty[l];
		}
		for (int l = 0; l < 3; l++) {
			int n;
			if (l == 2 && scarce)
				n = snprintf(
				    buf, sizeof(buf),
				    "{\"cartId\":\"%s\",\"userId\":"
				    "\"u%d\",\"productId\":\"s%d\","
				    "\"quantity\":%d,\"line_quantity\":"
				    "%d,\"opened\":false}",
				    cart, user, prod[l] % 10 + 1, qty[l],
				    qty[l]);
			else
				n = snprintf(
				    buf, sizeof(buf),
				    "{\"cartId\":\"%s\",\"userId\":"
				    "\"u%d\",\"productId\":\"p%d\","
				    "\"quantity\":%d,\"line_quantity\":"
				    "%d,\"opened\":%s}",
				    cart, user, prod[l], qty[l], lq[l],
				    l == 0 ? "true" : "false");
			snprintf(trace, sizeof(trace), "%032" PRIx64,
			         (uint64_t)pos * 2654435761u);
			snprintf(cmd, sizeof(cmd), "%032" PRIx64,
			         (uint64_t)pos * 40503u + 1);
			pos++;
			ts += 50;
			sqlite3_bind_int64(st, 1, pos);
			sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, l + 1);
			sqlite3_bind_text(st, 4, "ItemAddedToCart", -1,
			                  SQLITE_STATIC);
			sqlite3_bind_text(st, 5, buf, n, SQLITE_STATIC);
			sqlite3_bind_int64(st, 6, ts);
			sqlite3_bind_text(st, 7, trace, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 8, cmd, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				sl_die("insert: %s", sqlite3_errmsg(db));
			sqlite3_reset(st);
		}
		if (!scarce) {
			/* distinct lines in cart order, as the handler reads
			 * them (ORDER BY line_no) */
			char lines[1024];
			size_t ln = 0;
			int64_t sub = 0;
			for (int l = 0; l < 3; l++) {
				bool dup = false;
				for (int m = 0; m < l; m++)
					dup |= prod[m] == prod[l];
				if (dup)
					continue;
				int total = 0;
				for (int m = l; m < 3; m++)
					if (prod[m] == prod[l])
						total += qty[m];
				char name[96];
				int price;
				sl_product(prod[l], false, name, sizeof(name),
				           &price);
				stock[prod[l]] -= total;
				sub += (int64_t)total * price;
				ln += (size_t)snprintf(
				    lines + ln, sizeof(lines) - ln,
				    "%s{\"productId\":\"p%d\",\"name\":\"%s\","
				    "\"quantity\":%d,\"price_cents\":%d,"
				    "\"stock_after\":%" PRId64 "}",
				    ln ? "," : "", prod[l], name, total, price,
				    stock[prod[l]]);
			}
			int64_t disc = promo ? sub * 10 / 100 : 0;
			char order[32];
			snprintf(order, sizeof(order), "o-%08" PRIx64,
			         (uint64_t)++orders);
			int64_t placed = ts / 1000000;
			int n = snprintf(
			    buf, sizeof(buf),
			    "{\"orderId\":\"%s\",\"userId\":\"u%d\","
			    "\"cartId\":\"%s\",\"country\":\"%s\","
			    "\"lines\":[%s],\"subtotal_cents\":%" PRId64
			    ",\"discount_cents\":%" PRId64
			    ",\"total_cents\":%" PRId64 ",\"promoCode\":%s,"
			    "\"placed_at\":%" PRId64 "}",
			    order, user, cart, sl_country(user), lines, sub,
			    disc, sub - disc, promo ? "\"BENCH10\"" : "null",
			    placed);
			char ostream[48];
			snprintf(ostream, sizeof(ostream), "order-%s", order);
			snprintf(trace, sizeof(trace), "%032" PRIx64,
			         (uint64_t)pos * 2654435761u);
			snprintf(cmd, sizeof(cmd), "%032" PRIx64,
			         (uint64_t)pos * 40503u + 1);
			pos++;
			ts += 50;
			sqlite3_bind_int64(st, 1, pos);
			sqlite3_bind_text(st, 2, ostream, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, 1);
			sqlite3_bind_text(st, 4, "OrderPlaced", -1,
			                  SQLITE_STATIC);
			sqlite3_bind_text(st, 5, buf, n, SQLITE_STATIC);
			sqlite3_bind_int64(st, 6, ts);
			sqlite3_bind_text(st, 7, trace, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 8, cmd, -1, SQLITE_STATIC);
			if (sqlite3_step(st) != SQLITE_DONE)
				sl_die("insert: %s", sqlite3_errmsg(db));
			sqlite3_reset(st);
		}
		if (pos / 200000 != (pos - 4) / 200000) {
			sqlite3_exec(db, "COMMIT; BEGIN", NULL, NULL, NULL);
		}
	}
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		sl_die("commit: %s", sqlite3_errmsg(db));
	sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
	                          NULL);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return pos - start;
}

static int cmd_gen(const char *data, int64_t events)
{
	uint64_t t0 = sl_now_ns();
	cleave_engine *e = open_engine(data, true, CLEAVE_DURABILITY_OS);
	if (cleave_log_head(e) == 0)
		sl_seed(e, 1000, 1000, 10);
	cleave_engine_close(e);
	int64_t n = gen_direct(data, events);
	double secs = (double)(sl_now_ns() - t0) / 1e9;
	printf("{\"generated_events\":%" PRId64 ",\"target\":%" PRId64
	       ",\"seconds\":%.2f,\"events_per_s\":%.0f}\n",
	       n, events, secs, (double)n / secs);
	return 0;
}

/* ---- measuring --------------------------------------------------------- */

static void mem_now(long *hwm_kb, long *anon_kb)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof(line), f)) {
		sscanf(line, "VmHWM: %ld", hwm_kb);
		sscanf(line, "RssAnon: %ld", anon_kb);
	}
	if (f)
		fclose(f);
}

/* CPU seconds this process used (all threads), user + system. */
static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static bool all_caught_up(cleave_engine *e, int64_t head)
{
	for (int i = 0; i < cleave_projection_count(e); i++) {
		cleave_proj_status st;
		if (cleave_projection_status(e, i, &st))
			sl_die("status: %s", cleave_errmsg());
		if (st.state == CLEAVE_PROJ_PARKED)
			sl_die("projection %s parked: %s", st.name,
			       st.last_error);
		if (st.position < head)
			return false;
	}
	return true;
}

static int cmd_measure(const char *data, const char *what)
{
	long hwm = 0, anon = 0, anon_max = 0;
	bool all = !strcmp(what, "all");
	double cpu0 = cpu_seconds();
	uint64_t t0 = sl_now_ns();
	cleave_engine *e = open_engine(data, false, CLEAVE_DURABILITY_FSYNC);
	int64_t head = cleave_log_head(e);
	if (!all) {
		/* the live copies first (already built: quick) */
		while (!all_caught_up(e, head))
			usleep(20000);
		if (cleave_projection_find(e, what) < 0)
			sl_die("no projection %s", what);
		t0 = sl_now_ns();
		cpu0 = cpu_seconds();
		int rc = cleave_projection_rebuild(e, what);
		if (rc)
			sl_die("rebuild %s: %s (%s)", what, cleave_strerror(rc),
			       cleave_errmsg());
		for (;;) {
			rc = cleave_projection_wait_rebuilt(e, what, 20);
			mem_now(&hwm, &anon);
			if (anon > anon_max)
				anon_max = anon;
			if (rc == 0)
				break;
			if (rc != CLEAVE_ETIMEDOUT)
				sl_die("rebuild %s: %s (%s)", what,
				       cleave_strerror(rc), cleave_errmsg());
		}
	} else {
		while (!all_caught_up(e, head)) {
			usleep(20000);
			mem_now(&hwm, &anon);
			if (anon > anon_max)
				anon_max = anon;
		}
	}
	double secs = (double)(sl_now_ns() - t0) / 1e9;
	double cpu = cpu_seconds() - cpu0;
	mem_now(&hwm, &anon);
	if (anon > anon_max)
		anon_max = anon;
	cleave_engine_close(e);
	printf("{\"what\":\"%s\",\"events\":%" PRId64 ",\"seconds\":%.3f,"
	       "\"events_per_s\":%.0f,\"cpu_seconds\":%.3f,"
	       "\"events_per_cpu_s\":%.0f,\"peak_rss_mb\":%.1f,"
	       "\"peak_anon_rss_mb\":%.1f}\n",
	       what, head, secs, (double)head / secs, cpu,
	       cpu > 0 ? (double)head / cpu : 0, (double)hwm / 1024.0,
	       (double)anon_max / 1024.0);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"data", 1, 0, 'D'},
	                                   {"events", 1, 0, 'n'},
	                                   {"what", 1, 0, 'w'},
	                                   {"read-store", 1, 0, 'r'},
	                                   {0, 0, 0, 0}};
	const char *data = NULL, *what = "all";
	int64_t events = 1000000;
	int ch;
	if (argc < 2)
		sl_die("usage: rebuild gen|measure --data DIR ...");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'D':
			data = optarg;
			break;
		case 'n':
			events = strtoll(optarg, NULL, 10);
			break;
		case 'w':
			what = optarg;
			break;
		case 'r':
			read_store = optarg;
			break;
		default:
			sl_die("bad option");
		}
	}
	if (!data)
		sl_die("--data DIR is required");
	if (!strcmp(argv[1], "gen"))
		return cmd_gen(data, events);
	if (!strcmp(argv[1], "measure"))
		return cmd_measure(data, what);
	sl_die("unknown subcommand %s", argv[1]);
}
