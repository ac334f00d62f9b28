/*
 * test_bank.c — the bank domain on the real engine: every rule and status
 * of docs/domains.md, statements and volumes, and conservation of money
 * over many random operations checked against an independent model — at
 * the end, and in every answer taken while commands are still landing.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "domains.h"
#include "testutil.h"

/* ---- harness ------------------------------------------------------------ */

static char *g_dir;
static cleave_engine *g_e;
static int64_t g_pos;
static cJSON *g_out, *g_ans;
static char g_code[64], g_msg[512];

static int setup(void **state)
{
	cleave_config cfg = {0};
	g_dir = tu_tmpdir("bank");
	cfg.domain = cleave_domain_find("bank");
	assert_non_null(cfg.domain);
	cfg.data_dir = g_dir;
	cfg.durability = CLEAVE_DURABILITY_OS;
	TU_OK(cleave_engine_open(&cfg, &g_e));
	g_pos = 0;
	return 0;
}

static int teardown(void **state)
{
	cleave_engine_close(g_e);
	cJSON_Delete(g_out);
	cJSON_Delete(g_ans);
	g_out = g_ans = NULL;
	tu_rmdir(g_dir);
	return 0;
}

static void note_error(const cJSON *body)
{
	const cJSON *err = cJSON_GetObjectItem(body, "error");
	const cJSON *code = cJSON_GetObjectItem(err, "code");
	const cJSON *msg = cJSON_GetObjectItem(err, "message");
	snprintf(g_code, sizeof(g_code), "%s",
	         cJSON_IsString(code) ? code->valuestring : "");
	snprintf(g_msg, sizeof(g_msg), "%s",
	         cJSON_IsString(msg) ? msg->valuestring : "");
}

static int runf(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int runf(const char *name, const char *fmt, ...)
{
	char body[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	cleave_request r = {0};
	cleave_outcome *o = NULL;
	r.command = name;
	r.body = body;
	r.body_len = strlen(body);
	r.expected_version = -1;
	cJSON_Delete(g_out);
	g_out = NULL;
	g_code[0] = g_msg[0] = 0;
	int rc = cleave_command_run(g_e, &r, &o);
	if (rc) {
		snprintf(g_msg, sizeof(g_msg), "%s", cleave_errmsg());
		return rc;
	}
	rc = o->rc;
	g_out = cJSON_Parse(o->body);
	assert_non_null(g_out);
	if (rc)
		note_error(g_out);
	else if (o->position > g_pos)
		g_pos = o->position;
	cleave_outcome_free(o);
	return rc;
}

#define OK(name, ...)                                                          \
	do {                                                                   \
		int rc_ = runf(name, __VA_ARGS__);                             \
		if (rc_)                                                       \
			fail_msg("%s -> %d %s: %s", name, rc_, g_code, g_msg); \
	} while (0)

#define FAILS(want_rc, want_code, name, ...)                                   \
	do {                                                                   \
		int rc_ = runf(name, __VA_ARGS__);                             \
		if (rc_ != (want_rc))                                          \
			fail_msg("%s: want %d, got %d %s: %s", name, want_rc,  \
			         rc_, g_code, g_msg);                          \
		if (strcmp(g_code, want_code))                                 \
			fail_msg("%s: want code '%s', got '%s' (%s)", name,    \
			         want_code, g_code, g_msg);                    \
	} while (0)

/* 400 from the field checks, before the handler: the message names the
 * field. */
#define BAD(field, name, ...)                                                  \
	do {                                                                   \
		int rc_ = runf(name, __VA_ARGS__);                             \
		if (rc_ != CLEAVE_EINVAL || !strstr(g_msg, field))             \
			fail_msg("%s: want 400 naming %s, got %d: %s", name,   \
			         field, rc_, g_msg);                           \
	} while (0)

static const cJSON *result(void)
{
	return cJSON_GetObjectItem(g_out, "result");
}

static int query_at(int64_t pos, const char *name, ...)
{
	cleave_param p[8];
	int n = 0;
	va_list ap;
	va_start(ap, name);
	for (const char *k; n < 8 && (k = va_arg(ap, const char *));) {
		p[n].name = k;
		p[n].value = va_arg(ap, const char *);
		n++;
	}
	va_end(ap);
	if (pos > 0)
		TU_OK(cleave_wait_position(g_e, NULL, 0, pos, 5000));
	cleave_answer a;
	TU_OK(cleave_query_run(g_e, name, p, n, &a));
	cJSON_Delete(g_ans);
	g_ans = cJSON_Parse(a.body);
	if (!g_ans)
		fail_msg("query %s: unparsable answer %s", name, a.body);
	g_code[0] = 0;
	if (a.rc)
		note_error(g_ans);
	int rc = a.rc;
	cleave_answer_free(&a);
	return rc;
}

#define query(...) query_at(g_pos, __VA_ARGS__)

static int64_t jint(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	if (!cJSON_IsNumber(v))
		fail_msg("member %s is not a number", k);
	return (int64_t)v->valuedouble;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	if (!cJSON_IsString(v))
		fail_msg("member %s is not a string", k);
	return v->valuestring;
}

static int64_t balance(const char *id)
{
	assert_int_equal(query("balance", "accountId", id, NULL), 0);
	return jint(g_ans, "balance_cents");
}

static void utc_today(char out[11])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

/* ---- accounts ----------------------------------------------------------- */

static void test_open_account(void **state)
{
	OK("OpenAccount",
	   "{\"accountId\":\"a1\",\"owner\":\"Ada\",\"currency\":\"EUR\"}");
	assert_int_equal(jint(result(), "balance_cents"), 0);
	assert_int_equal(query("balance", "accountId", "a1", NULL), 0);
	assert_string_equal(jstr(g_ans, "accountId"), "a1");
	assert_string_equal(jstr(g_ans, "owner"), "Ada");
	assert_string_equal(jstr(g_ans, "currency"), "EUR");
	assert_int_equal(jint(g_ans, "balance_cents"), 0);
	FAILS(CLEAVE_EEXIST, "account_exists", "OpenAccount",
	      "{\"accountId\":\"a1\",\"owner\":\"Bob\",\"currency\":\"USD\"}");
	static const char *const bad_cur[] = {"XYZ", "XXX", "XTS", "EUX"};
	for (int i = 0; i < 4; i++)
		FAILS(CLEAVE_EINVAL, "invalid_currency", "OpenAccount",
		      "{\"accountId\":\"a2\",\"owner\":\"B\",\"currency\":"
		      "\"%s\"}",
		      bad_cur[i]);
	BAD("currency", "OpenAccount",
	    "{\"accountId\":\"a2\",\"owner\":\"B\",\"currency\":\"eur\"}");
	BAD("currency", "OpenAccount",
	    "{\"accountId\":\"a2\",\"owner\":\"B\",\"currency\":\"EURO\"}");
	BAD("currency", "OpenAccount",
	    "{\"accountId\":\"a2\",\"owner\":\"B\",\"currency\":7}");
	BAD("owner", "OpenAccount",
	    "{\"accountId\":\"a2\",\"currency\":\"EUR\"}");
	BAD("owner", "OpenAccount",
	    "{\"accountId\":\"a2\",\"owner\":\"\",\"currency\":\"EUR\"}");
	BAD("accountId", "OpenAccount",
	    "{\"accountId\":\"a/2\",\"owner\":\"B\",\"currency\":\"EUR\"}");
	BAD("color", "OpenAccount",
	    "{\"accountId\":\"a2\",\"owner\":\"B\",\"currency\":\"EUR\","
	    "\"color\":\"red\"}");
	OK("OpenAccount", "{\"accountId\":\"a2\",\"owner\":\"B\","
	                  "\"currency\":\"JPY\"}");
	assert_int_equal(query("balance", "accountId", "nope", NULL),
	                 CLEAVE_ENOTFOUND);
	assert_string_equal(g_code, "account_not_found");
	assert_int_equal(query("balance", NULL), CLEAVE_EINVAL);
	assert_int_equal(query("totals", NULL), 0);
	assert_int_equal(jint(g_ans, "accounts"), 2);
	assert_int_equal(query("totals", "currency", "JPY", NULL), 0);
	assert_int_equal(jint(g_ans, "accounts"), 1);
	assert_int_equal(query("totals", "currency", "ABC", NULL),
	                 CLEAVE_EINVAL);
}

static void test_deposit_withdraw(void **state)
{
	OK("OpenAccount",
	   "{\"accountId\":\"a1\",\"owner\":\"Ada\",\"currency\":\"EUR\"}");
	FAILS(CLEAVE_ENOTFOUND, "account_not_found", "Deposit",
	      "{\"accountId\":\"zz\",\"amount_cents\":5}");
	FAILS(CLEAVE_ENOTFOUND, "account_not_found", "Withdraw",
	      "{\"accountId\":\"zz\",\"amount_cents\":5}");
	BAD("amount_cents", "Deposit",
	    "{\"accountId\":\"a1\",\"amount_cents\":0}");
	BAD("amount_cents", "Deposit",
	    "{\"accountId\":\"a1\",\"amount_cents\":-3}");
	BAD("amount_cents", "Deposit",
	    "{\"accountId\":\"a1\",\"amount_cents\":1000000000001}");
	/* beyond 2^53: the JSON reader refuses it before the field check */
	assert_int_equal(runf("Deposit", "{\"accountId\":\"a1\","
	                                 "\"amount_cents\":1e300}"),
	                 CLEAVE_EINVAL);
	BAD("amount_cents", "Deposit",
	    "{\"accountId\":\"a1\",\"amount_cents\":2.5}");
	BAD("amount_cents", "Withdraw", "{\"accountId\":\"a1\"}");
	OK("Deposit", "{\"accountId\":\"a1\",\"amount_cents\":1000}");
	assert_int_equal(jint(result(), "balance_cents"), 1000);
	OK("Withdraw", "{\"accountId\":\"a1\",\"amount_cents\":400}");
	assert_int_equal(jint(result(), "balance_cents"), 600);
	FAILS(CLEAVE_EREJECTED, "insufficient_funds", "Withdraw",
	      "{\"accountId\":\"a1\",\"amount_cents\":601}");
	OK("Withdraw", "{\"accountId\":\"a1\",\"amount_cents\":600}");
	assert_int_equal(balance("a1"), 0);
	FAILS(CLEAVE_EREJECTED, "insufficient_funds", "Withdraw",
	      "{\"accountId\":\"a1\",\"amount_cents\":1}");

	/* the balance limit, 10^15, reached with 10^12 deposits */
	for (int i = 0; i < 1000; i++)
		OK("Deposit",
		   "{\"accountId\":\"a1\",\"amount_cents\":1000000000000}");
	FAILS(CLEAVE_EREJECTED, "balance_limit", "Deposit",
	      "{\"accountId\":\"a1\",\"amount_cents\":1}");
	/* exact integers in answers, at 10^15 */
	cleave_param p[] = {{"accountId", "a1"}};
	cleave_answer a;
	TU_OK(cleave_wait_position(g_e, NULL, 0, g_pos, 5000));
	TU_OK(cleave_query_run(g_e, "balance", p, 1, &a));
	assert_non_null(strstr(a.body, "\"balance_cents\":1000000000000000}"));
	cleave_answer_free(&a);
	assert_int_equal(query("totals", NULL), 0);
	assert_int_equal(jint(g_ans, "balance_cents"), 1000000000000000LL);
	assert_int_equal(jint(g_ans, "deposits_cents"),
	                 1000000000000000LL + 1000);
	assert_int_equal(jint(g_ans, "withdrawals_cents"), 1000);
}

static void test_transfer_rules(void **state)
{
	char today[11];
	OK("OpenAccount", "{\"accountId\":\"a\",\"owner\":\"A\","
	                  "\"currency\":\"EUR\"}");
	OK("OpenAccount", "{\"accountId\":\"b\",\"owner\":\"B\","
	                  "\"currency\":\"EUR\"}");
	OK("OpenAccount", "{\"accountId\":\"u\",\"owner\":\"U\","
	                  "\"currency\":\"USD\"}");
	OK("Deposit", "{\"accountId\":\"a\",\"amount_cents\":1000}");
	OK("Deposit", "{\"accountId\":\"u\",\"amount_cents\":1000}");
	FAILS(CLEAVE_EREJECTED, "same_account", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"a\","
	      "\"amount_cents\":1}");
	FAILS(CLEAVE_ENOTFOUND, "account_not_found", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"x\",\"to\":\"a\","
	      "\"amount_cents\":1}");
	FAILS(CLEAVE_ENOTFOUND, "account_not_found", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"x\","
	      "\"amount_cents\":1}");
	FAILS(CLEAVE_EREJECTED, "currency_mismatch", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"u\","
	      "\"amount_cents\":1}");
	FAILS(CLEAVE_EREJECTED, "insufficient_funds", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	      "\"amount_cents\":1001}");
	BAD("amount_cents", "Transfer",
	    "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	    "\"amount_cents\":0}");
	BAD("to", "Transfer",
	    "{\"transferId\":\"t1\",\"from\":\"a\",\"amount_cents\":5}");
	BAD("transferId", "Transfer",
	    "{\"from\":\"a\",\"to\":\"b\",\"amount_cents\":5}");
	OK("Transfer", "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	               "\"amount_cents\":300}");
	assert_int_equal(jint(result(), "from_balance_cents"), 700);
	assert_int_equal(jint(result(), "to_balance_cents"), 300);
	int64_t t1_pos = g_pos;
	FAILS(CLEAVE_EEXIST, "transfer_exists", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"a\",\"to\":\"b\","
	      "\"amount_cents\":300}");
	FAILS(CLEAVE_EEXIST, "transfer_exists", "Transfer",
	      "{\"transferId\":\"t1\",\"from\":\"b\",\"to\":\"a\","
	      "\"amount_cents\":1}");
	OK("Transfer", "{\"transferId\":\"t2\",\"from\":\"b\",\"to\":\"a\","
	               "\"amount_cents\":50}");
	assert_int_equal(balance("a"), 750);
	assert_int_equal(balance("b"), 250);
	assert_int_equal(balance("u"), 1000);

	/* statements: newest first, signed amounts, both sides */
	assert_int_equal(query("statement", "accountId", "b", NULL), 0);
	const cJSON *items = cJSON_GetObjectItem(g_ans, "items");
	assert_int_equal(cJSON_GetArraySize(items), 3);
	const cJSON *e0 = cJSON_GetArrayItem(items, 0);
	const cJSON *e1 = cJSON_GetArrayItem(items, 1);
	const cJSON *e2 = cJSON_GetArrayItem(items, 2);
	assert_string_equal(jstr(e0, "kind"), "transfer_out");
	assert_int_equal(jint(e0, "amount_cents"), -50);
	assert_int_equal(jint(e0, "balance_after_cents"), 250);
	assert_string_equal(jstr(e0, "counterparty"), "a");
	assert_string_equal(jstr(e1, "kind"), "transfer_in");
	assert_int_equal(jint(e1, "amount_cents"), 300);
	assert_int_equal(jint(e1, "position"), t1_pos);
	assert_string_equal(jstr(e1, "transferId"), "t1");
	assert_string_equal(jstr(e2, "kind"), "open");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(g_ans, "next_cursor")));
	assert_int_equal(query("statement", "accountId", "a", NULL), 0);
	items = cJSON_GetObjectItem(g_ans, "items");
	assert_int_equal(cJSON_GetArraySize(items), 4);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 1), "kind"),
	                    "transfer_out");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 1), "position"),
	                 t1_pos);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 2), "kind"),
	                    "deposit");
	assert_int_equal(query("statement", "accountId", "nope", NULL),
	                 CLEAVE_ENOTFOUND);
	assert_int_equal(
	    query("statement", "accountId", "a", "cursor", "-4", NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(
	    query("statement", "accountId", "a", "limit", "101", NULL),
	    CLEAVE_EINVAL);

	/* daily volume */
	utc_today(today);
	assert_int_equal(
	    query("daily_volume", "currency", "EUR", "day", today, NULL), 0);
	assert_string_equal(jstr(g_ans, "currency"), "EUR");
	assert_string_equal(jstr(g_ans, "day"), today);
	assert_int_equal(jint(g_ans, "transfers"), 2);
	assert_int_equal(jint(g_ans, "volume_cents"), 350);
	assert_int_equal(
	    query("daily_volume", "currency", "USD", "day", today, NULL), 0);
	assert_int_equal(jint(g_ans, "transfers"), 0);
	assert_int_equal(
	    query("daily_volume", "currency", "EUR", "day", "2001-01-01", NULL),
	    0);
	assert_int_equal(jint(g_ans, "volume_cents"), 0);
	assert_int_equal(
	    query("daily_volume", "currency", "EUR", "day", "2001-13-01", NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(
	    query("daily_volume", "currency", "QQQ", "day", today, NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(query("daily_volume", "currency", "EUR", NULL),
	                 CLEAVE_EINVAL);
	/* totals: transfers move money, they do not make it */
	assert_int_equal(query("totals", "currency", "EUR", NULL), 0);
	assert_int_equal(jint(g_ans, "balance_cents"), 1000);
	assert_int_equal(jint(g_ans, "deposits_cents"), 1000);
}

/* ---- conservation ------------------------------------------------------- */

#define NACC 12
#define NOPS 3000

typedef struct model {
	int64_t bal[NACC];
	int64_t deposits, withdrawals;
	int entries[NACC];
} model;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Reads totals concurrently with the writer: every answer, whatever its
 * position, must balance.  (No cmocka asserts off the main thread: the
 * first failure is recorded and checked after the join.) */
typedef struct checker {
	atomic_bool stop;
	int answers;
	char failure[256];
} checker;

static int64_t num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItem(o, k);
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

static void *check_totals(void *arg)
{
	checker *c = arg;
	while (!atomic_load(&c->stop) && !c->failure[0]) {
		cleave_answer a;
		int rc = cleave_query_run(g_e, "totals", NULL, 0, &a);
		if (rc || a.rc) {
			snprintf(c->failure, sizeof(c->failure),
			         "totals failed: %d %d", rc, rc ? 0 : a.rc);
			if (!rc)
				cleave_answer_free(&a);
			break;
		}
		cJSON *j = cJSON_Parse(a.body);
		int64_t b = num(j, "balance_cents");
		int64_t d = num(j, "deposits_cents");
		int64_t w = num(j, "withdrawals_cents");
		if (!j || b < 0 || b != d - w)
			snprintf(c->failure, sizeof(c->failure),
			         "at position %lld: balances %lld != deposits "
			         "%lld - withdrawals %lld",
			         (long long)a.position, (long long)b,
			         (long long)d, (long long)w);
		cJSON_Delete(j);
		cleave_answer_free(&a);
		c->answers++;
	}
	return NULL;
}

static void test_conservation(void **state)
{
	model m = {0};
	char id[16], id2[16];
	for (int i = 0; i < NACC; i++) {
		OK("OpenAccount",
		   "{\"accountId\":\"acc%d\",\"owner\":\"O%d\","
		   "\"currency\":\"%s\"}",
		   i, i, i < NACC - 2 ? "EUR" : "GBP");
		m.entries[i]++;
	}
	checker ck = {0};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, check_totals, &ck), 0);
	int ok = 0, rejected = 0;
	for (int n = 0; n < NOPS; n++) {
		int op = (int)(rnd() % 10);
		int a = (int)(rnd() % NACC), b = (int)(rnd() % NACC);
		int64_t amt = (int64_t)(rnd() % 5000) + 1;
		snprintf(id, sizeof(id), "acc%d", a);
		snprintf(id2, sizeof(id2), "acc%d", b);
		int rc;
		if (op < 3) {
			rc =
			    runf("Deposit",
			         "{\"accountId\":\"%s\",\"amount_cents\":%lld}",
			         id, (long long)amt);
			assert_int_equal(rc, 0);
			m.bal[a] += amt;
			m.deposits += amt;
			m.entries[a]++;
		} else if (op < 5) {
			rc =
			    runf("Withdraw",
			         "{\"accountId\":\"%s\",\"amount_cents\":%lld}",
			         id, (long long)amt);
			bool can = m.bal[a] >= amt;
			assert_int_equal(rc, can ? 0 : CLEAVE_EREJECTED);
			if (can) {
				m.bal[a] -= amt;
				m.withdrawals += amt;
				m.entries[a]++;
			}
		} else {
			rc = runf("Transfer",
			          "{\"transferId\":\"t%d\",\"from\":\"%s\","
			          "\"to\":\"%s\",\"amount_cents\":%lld}",
			          n, id, id2, (long long)amt);
			bool same_cur = (a < NACC - 2) == (b < NACC - 2);
			bool can = a != b && same_cur && m.bal[a] >= amt;
			assert_int_equal(rc, can ? 0 : CLEAVE_EREJECTED);
			if (can) {
				m.bal[a] -= amt;
				m.bal[b] += amt;
				m.entries[a]++;
				m.entries[b]++;
			}
		}
		if (rc == 0)
			ok++;
		else
			rejected++;
	}
	atomic_store(&ck.stop, true);
	pthread_join(th, NULL);
	if (ck.failure[0])
		fail_msg("%s", ck.failure);
	assert_true(ck.answers > 0);
	assert_true(ok > NOPS / 2 && rejected > 0);

	/* the final state agrees with the model */
	int64_t sum = 0;
	for (int i = 0; i < NACC; i++) {
		snprintf(id, sizeof(id), "acc%d", i);
		assert_int_equal(balance(id), m.bal[i]);
		sum += m.bal[i];
	}
	assert_int_equal(query("totals", NULL), 0);
	assert_int_equal(jint(g_ans, "accounts"), NACC);
	assert_int_equal(jint(g_ans, "balance_cents"), sum);
	assert_int_equal(jint(g_ans, "deposits_cents"), m.deposits);
	assert_int_equal(jint(g_ans, "withdrawals_cents"), m.withdrawals);
	assert_int_equal(sum, m.deposits - m.withdrawals);

	/* every statement, paged: all entries once, amounts sum to the
	 * balance, each balance_after follows from the one before */
	for (int i = 0; i < NACC; i++) {
		char cursor[32] = "";
		int seen = 0;
		int64_t total = 0, prev_pos = INT64_MAX, newer_after = -1,
		        newer_amount = 0;
		snprintf(id, sizeof(id), "acc%d", i);
		for (;;) {
			if (cursor[0])
				assert_int_equal(query("statement", "accountId",
				                       id, "limit", "37",
				                       "cursor", cursor, NULL),
				                 0);
			else
				assert_int_equal(query("statement", "accountId",
				                       id, "limit", "37", NULL),
				                 0);
			const cJSON *it;
			cJSON_ArrayForEach(it,
			                   cJSON_GetObjectItem(g_ans, "items"))
			{
				int64_t pos = jint(it, "position");
				int64_t amt = jint(it, "amount_cents");
				int64_t after = jint(it, "balance_after_cents");
				assert_true(pos < prev_pos);
				if (newer_after >= 0)
					assert_int_equal(
					    newer_after - newer_amount, after);
				else
					assert_int_equal(after, m.bal[i]);
				prev_pos = pos;
				newer_after = after;
				newer_amount = amt;
				total += amt;
				seen++;
			}
			const cJSON *nc =
			    cJSON_GetObjectItem(g_ans, "next_cursor");
			if (cJSON_IsNull(nc))
				break;
			snprintf(cursor, sizeof(cursor), "%s", nc->valuestring);
		}
		assert_int_equal(seen, m.entries[i]);
		assert_int_equal(total, m.bal[i]);
	}

	/* a rebuilt copy agrees key by key */
	static const char *const projs[] = {"accounts", "statements", "volume"};
	for (int i = 0; i < 3; i++) {
		int64_t ndiff = -1, at = 0;
		TU_OK(cleave_projection_verify(g_e, projs[i], NULL, NULL,
		                               &ndiff, &at));
		assert_int_equal(ndiff, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_account, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deposit_withdraw, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_transfer_rules, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_conservation, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
