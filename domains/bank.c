/*
 * bank.c — the bank domain: a ledger of accounts, deposits, withdrawals
 * and transfers.  The contract (every command's checks in order, events,
 * answers) is docs/domains.md, "The bank".  Money is conserved: the sum of
 * all balances equals deposits minus withdrawals at every log position.
 *
 * Limits keep every amount below 2^53: ids 1..64 bytes [A-Za-z0-9_.:-],
 * owner 1..200 bytes, amount_cents 1..10^12 (400 from the field checks), a
 * balance at most 10^15 (422 balance_limit).  Times are unix seconds of
 * the command's timestamp; balance_cents fields are balances after.
 *
 * Read models (lmdb), as stored:
 *   accounts    acct: accountId → {accountId, owner, currency,
 *                 balance_cents}, the text `balance` serves;
 *               totals: counters "*" (every account) and per currency →
 *                 [accounts, balance_cents, deposits_cents,
 *                 withdrawals_cents]: one counter read in one snapshot, so
 *                 balance_cents = deposits_cents - withdrawals_cents holds
 *                 in every `totals` answer
 *   statements  stmt: a list per accountId, seq = event position →
 *                 {position, kind, amount_cents (signed),
 *                 balance_after_cents[, transferId, counterparty]}; kind
 *                 open, deposit, withdrawal, transfer_in or transfer_out,
 *                 a transfer's two entries both at its position
 *   volume      daily: counters (currency, YYYY-MM-DD of the transfer) →
 *                 [transfers, volume_cents]
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dom.h"
#include "iso.h"

#define BANK_ID_MAX      64
#define BANK_OWNER_MAX   200
#define BANK_AMOUNT_MAX  1000000000000LL    /* 10^12 */
#define BANK_BALANCE_MAX 1000000000000000LL /* 10^15 */
#define TOTALS_ALL       "*"

static const char *const bank_migrations[] = {
    "CREATE TABLE accounts ("
    "  account_id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"
    "  currency TEXT NOT NULL CHECK (length(currency) = 3),"
    "  balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0),"
    "  opened_at BIGINT NOT NULL);"
    "CREATE TABLE transfers ("
    "  transfer_id TEXT PRIMARY KEY,"
    "  from_account TEXT NOT NULL REFERENCES accounts (account_id),"
    "  to_account TEXT NOT NULL REFERENCES accounts (account_id),"
    "  amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),"
    "  currency TEXT NOT NULL,"
    "  created_at BIGINT NOT NULL,"
    "  CHECK (from_account <> to_account));",
    NULL,
};

/* ---- JSON --------------------------------------------------------------- */

/* An object of the members `types` lists, each given as a key and then its
 * value: 's' a string (NULL leaves the member out), 'i' an int64_t (cast a
 * literal: a plain 0 is an int).  NULL when out of memory. */
static cJSON *obj(const char *types, ...)
{
	cJSON *o = cJSON_CreateObject();
	va_list ap;
	va_start(ap, types);
	for (const char *t = types; o && *t; t++) {
		const char *k = va_arg(ap, const char *), *s;
		if (*t == 'i' ? !dom_add_int(o, k, va_arg(ap, int64_t))
		              : (s = va_arg(ap, const char *)) &&
		                    !cJSON_AddStringToObject(o, k, s)) {
			cJSON_Delete(o);
			o = NULL;
		}
	}
	va_end(ap);
	return o;
}

/* ---- commands ----------------------------------------------------------- */

/* Emits `event` on "<prefix>-<id>" and answers `result`, both from obj()
 * (NULL: out of memory) and owned in every case. */
static int emit_answer(cleave_cmd *c, const char *prefix, const char *id,
                       const char *type, cJSON *event, cJSON *result)
{
	int rc = dom_emit(c, prefix, id, type, event, event != NULL);
	if (rc || !result) {
		cJSON_Delete(result);
		return rc ? rc : dom_oom(c);
	}
	cleave_cmd_result(c, result);
	return 0;
}

typedef struct acct_row {
	char currency[4];
	int64_t balance;
} acct_row;

/* Reads an account: 0, or the 404 failure naming `role` ("account",
 * "from account", ...). */
static int account_get(cleave_cmd *c, const char *id, const char *role,
                       acct_row *a)
{
	cleave_rows *r;
	cleave_value arg[] = {cleave_text(id)};
	int rc = cleave_cmd_query(c,
	                          "SELECT currency, balance_cents FROM accounts"
	                          " WHERE account_id = ?",
	                          arg, 1, &r);
	if (rc)
		return rc;
	if ((rc = cleave_rows_next(r)) == 1) {
		dom_rows_text(r, 0, a->currency, sizeof(a->currency));
		a->balance = cleave_rows_int(r, 1);
	}
	cleave_rows_close(r);
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_ENOTFOUND, "account_not_found",
		                       "no %s '%s'", role, id);
	return rc < 0 ? rc : 0;
}

/* Adds delta (taken when negative) to an account's balance and writes it:
 * 422 insufficient_funds below 0, balance_limit past BANK_BALANCE_MAX. */
static int balance_add(cleave_cmd *c, const char *id, acct_row *a,
                       int64_t delta)
{
	if (a->balance + delta < 0)
		return cleave_cmd_fail(
		    c, CLEAVE_EREJECTED, "insufficient_funds",
		    "account '%s' holds %" PRId64 " cents, %" PRId64 " asked",
		    id, a->balance, -delta);
	if (a->balance + delta > BANK_BALANCE_MAX)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "balance_limit",
		                       "account '%s' would hold more than "
		                       "%lld cents",
		                       id, BANK_BALANCE_MAX);
	a->balance += delta;
	cleave_value v[] = {cleave_int(a->balance), cleave_text(id)};
	return cleave_cmd_exec(c,
	                       "UPDATE accounts SET balance_cents = ?"
	                       " WHERE account_id = ?",
	                       v, 2, NULL);
}

static const cleave_field open_account_fields[] = {
    {"accountId", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"owner", CLEAVE_F_STRING, true, 0, 0, BANK_OWNER_MAX, NULL},
    {"currency", CLEAVE_F_STRING, true, 0, 0, 3, "upper"},
    {NULL},
};

static int open_account(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "accountId"),
	           *owner = cleave_json_str(in, "owner");
	const char *cur = cleave_json_str(in, "currency");
	int64_t now = dom_now_s(c);
	if (!iso_currency_ok(cur))
		return cleave_cmd_fail(c, CLEAVE_EINVAL, "invalid_currency",
		                       "field 'currency' must be an ISO 4217 "
		                       "currency code; '%s' is not one",
		                       cur);
	cleave_value a[] = {cleave_text(id), cleave_text(owner),
	                    cleave_text(cur), cleave_int(now)};
	int rc = cleave_cmd_exec(c,
	                         "INSERT INTO accounts (account_id, owner,"
	                         " currency, balance_cents, opened_at)"
	                         " VALUES (?, ?, ?, 0, ?)",
	                         a, 4, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "account_exists",
		                       "account '%s' already exists", id);
	if (rc)
		return rc;
	return emit_answer(
	    c, "account", id, "AccountOpened",
	    obj("sssi", "accountId", id, "owner", owner, "currency", cur,
	        "opened_at", now),
	    obj("si", "accountId", id, "balance_cents", (int64_t)0));
}

static const cleave_field amount_fields[] = {
    {"accountId", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"amount_cents", CLEAVE_F_INT, true, 1, BANK_AMOUNT_MAX, 0, NULL},
    {NULL},
};

/* Deposit (sign 1) and Withdraw (sign -1). */
static int move_money(cleave_cmd *c, const cJSON *in, int64_t sign)
{
	const char *id = cleave_json_str(in, "accountId");
	int64_t amount = cleave_json_int(in, "amount_cents", 0);
	acct_row a;
	int rc;
	if ((rc = account_get(c, id, "account", &a)) ||
	    (rc = balance_add(c, id, &a, sign * amount)))
		return rc;
	return emit_answer(
	    c, "account", id, sign > 0 ? "Deposited" : "Withdrawn",
	    obj("ssiii", "accountId", id, "currency", a.currency,
	        "amount_cents", amount, "balance_cents", a.balance, "at",
	        dom_now_s(c)),
	    obj("si", "accountId", id, "balance_cents", a.balance));
}

static int deposit(cleave_cmd *c, const cJSON *in)
{
	return move_money(c, in, 1);
}

static int withdraw(cleave_cmd *c, const cJSON *in)
{
	return move_money(c, in, -1);
}

static const cleave_field transfer_fields[] = {
    {"transferId", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"from", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"to", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"amount_cents", CLEAVE_F_INT, true, 1, BANK_AMOUNT_MAX, 0, NULL},
    {NULL},
};

static int transfer(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "transferId");
	const char *from = cleave_json_str(in, "from"),
	           *to = cleave_json_str(in, "to");
	int64_t amount = cleave_json_int(in, "amount_cents", 0), v,
	        now = dom_now_s(c);
	acct_row fa, ta;
	cleave_value ai[] = {cleave_text(id)};
	int rc = cleave_cmd_query_int(
	    c, "SELECT 1 FROM transfers WHERE transfer_id = ?", ai, 1, &v);
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_EEXIST, "transfer_exists",
		                       "transfer '%s' already exists", id);
	if (rc != CLEAVE_ENOTFOUND)
		return rc;
	if (!strcmp(from, to))
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "same_account",
		                       "a transfer needs two distinct "
		                       "accounts; 'from' and 'to' are both "
		                       "'%s'",
		                       from);
	if ((rc = account_get(c, from, "from account", &fa)) ||
	    (rc = account_get(c, to, "to account", &ta)))
		return rc;
	if (strcmp(fa.currency, ta.currency))
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "currency_mismatch",
		                       "account '%s' holds %s, account '%s' "
		                       "holds %s",
		                       from, fa.currency, to, ta.currency);
	cleave_value at[] = {cleave_text(id),          cleave_text(from),
	                     cleave_text(to),          cleave_int(amount),
	                     cleave_text(fa.currency), cleave_int(now)};
	/* `to` refused after `from` was written: the savepoint undoes it. */
	if ((rc = balance_add(c, from, &fa, -amount)) ||
	    (rc = balance_add(c, to, &ta, amount)) ||
	    (rc = cleave_cmd_exec(c,
	                          "INSERT INTO transfers (transfer_id,"
	                          " from_account, to_account, amount_cents,"
	                          " currency, created_at)"
	                          " VALUES (?, ?, ?, ?, ?, ?)",
	                          at, 6, NULL)))
		return rc;
	return emit_answer(c, "transfer", id, "TransferCompleted",
	                   obj("sssisiii", "transferId", id, "from", from, "to",
	                       to, "amount_cents", amount, "currency",
	                       fa.currency, "from_balance_cents", fa.balance,
	                       "to_balance_cents", ta.balance, "at", now),
	                   obj("sii", "transferId", id, "from_balance_cents",
	                       fa.balance, "to_balance_cents", ta.balance));
}

static const cleave_command_def bank_commands[] = {
    {"OpenAccount", open_account, open_account_fields,
     "open an account (accountId, owner, ISO 4217 currency)"},
    {"Deposit", deposit, amount_fields, "add money to an account"},
    {"Withdraw", withdraw, amount_fields,
     "take money from an account (no overdraft)"},
    {"Transfer", transfer, transfer_fields,
     "move money between two accounts of one currency"},
    {NULL},
};

/* ---- projections: accounts and statements ------------------------------- */

/* What an event did to one account: its statement entry. */
typedef struct entry {
	const char *account, *kind;
	int64_t amount, balance;             /* signed; the balance after */
	const char *transfer, *counterparty; /* transfers only */
} entry;

/* An event as both projections read it: its entries (a transfer's two,
 * out then in) and, but for a transfer, the account's currency (and its
 * owner when it opens). */
typedef struct bank_event {
	entry e[2];
	int n;
	const char *currency, *owner;
} bank_event;

static int event_read(const cleave_event *ev, bank_event *b)
{
	const cJSON *d = ev->json;
	const char *id, *to, *tid;
	int64_t amount, bal, to_bal;
	int rc;
	*b = (bank_event){.n = 1};
	if (!strcmp(ev->type, "TransferCompleted")) {
		if ((rc = cleave_json_get_str(d, "transferId", &tid)) ||
		    (rc = cleave_json_get_str(d, "from", &id)) ||
		    (rc = cleave_json_get_str(d, "to", &to)) ||
		    (rc = cleave_json_get_int(d, "amount_cents", &amount)) ||
		    (rc = cleave_json_get_int(d, "from_balance_cents", &bal)) ||
		    (rc = cleave_json_get_int(d, "to_balance_cents", &to_bal)))
			return rc;
		b->n = 2;
		b->e[0] = (entry){id, "transfer_out", -amount, bal, tid, to};
		b->e[1] = (entry){to, "transfer_in", amount, to_bal, tid, id};
		return 0;
	}
	if ((rc = cleave_json_get_str(d, "accountId", &id)) ||
	    (rc = cleave_json_get_str(d, "currency", &b->currency)))
		return rc;
	b->e[0] = (entry){.account = id, .kind = "open"};
	if (!strcmp(ev->type, "AccountOpened"))
		return cleave_json_get_str(d, "owner", &b->owner);
	if ((rc = cleave_json_get_int(d, "amount_cents", &amount)) ||
	    (rc = cleave_json_get_int(d, "balance_cents", &bal)))
		return rc;
	bool in = !strcmp(ev->type, "Deposited");
	b->e[0].kind = in ? "deposit" : "withdrawal";
	b->e[0].amount = in ? amount : -amount;
	b->e[0].balance = bal;
	return 0;
}

/* Writes an account's document: a new one when it opens, else with the
 * event's balance after (parsed once per transaction: cleave_rtx_doc). */
static int account_put(cleave_rtx *tx, const bank_event *b, const entry *e)
{
	cJSON *o, *balance;
	int rc;
	if (b->owner) {
		o = obj("sssi", "accountId", e->account, "owner", b->owner,
		        "currency", b->currency, "balance_cents", (int64_t)0);
		return o ? cleave_rtx_doc_put(tx, "acct", e->account, o)
		         : CLEAVE_ENOMEM;
	}
	if ((rc = cleave_rtx_doc(tx, "acct", e->account, &o)))
		return rc == CLEAVE_ENOTFOUND ? CLEAVE_ECORRUPT : rc;
	balance = cJSON_GetObjectItemCaseSensitive(o, "balance_cents");
	if (!cJSON_IsNumber(balance))
		return CLEAVE_ECORRUPT;
	cJSON_SetNumberValue(balance, (double)e->balance);
	return cleave_rtx_doc_put(tx, "acct", e->account, o);
}

static const char *const accounts_types[] = {
    "AccountOpened", "Deposited", "Withdrawn", "TransferCompleted", NULL};

static int accounts_apply(cleave_rtx *tx, const cleave_event *ev)
{
	bank_event b;
	int rc = event_read(ev, &b);
	for (int i = 0; !rc && i < b.n; i++)
		rc = account_put(tx, &b, &b.e[i]);
	if (rc || !b.currency) /* a transfer leaves the totals as they are */
		return rc;
	/* totals: [accounts, balance, deposits, withdrawals] */
	int64_t s = b.e[0].amount,
	        delta[4] = {b.owner != NULL, s, s > 0 ? s : 0, s < 0 ? -s : 0};
	if (!(rc = cleave_rtx_counter_add(tx, "totals", TOTALS_ALL, delta, 4)))
		rc = cleave_rtx_counter_add(tx, "totals", b.currency, delta, 4);
	return rc;
}

static int statements_apply(cleave_rtx *tx, const cleave_event *ev)
{
	bank_event b;
	int rc = event_read(ev, &b);
	for (int i = 0; !rc && i < b.n; i++) {
		const entry *e = &b.e[i];
		size_t len = 0;
		cJSON *o = obj("isiiss", "position", ev->position, "kind",
		               e->kind, "amount_cents", e->amount,
		               "balance_after_cents", e->balance, "transferId",
		               e->transfer, "counterparty", e->counterparty);
		char *text = o ? cleave_json_print(o, &len) : NULL;
		cJSON_Delete(o);
		if (!text)
			return CLEAVE_ENOMEM;
		rc = cleave_rtx_list_put(tx, "stmt", e->account, ev->position,
		                         text, len);
		free(text);
	}
	return rc;
}

/* ---- projection: volume ------------------------------------------------- */

static const char *const volume_types[] = {"TransferCompleted", NULL};

static int volume_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const char *cur;
	int64_t amount, at;
	char day[11], key[32];
	int rc;
	if ((rc = cleave_json_get_str(ev->json, "currency", &cur)) ||
	    (rc = cleave_json_get_int(ev->json, "amount_cents", &amount)))
		return rc;
	if (cleave_json_get_int(ev->json, "at", &at))
		at = ev->ts_us / 1000000;
	cleave_day_format(cleave_day_of(at), day);
	const char *parts[] = {cur, day};
	if (cleave_key(key, sizeof(key), 2, parts) < 0)
		return CLEAVE_ECORRUPT;
	int64_t delta[2] = {1, amount};
	return cleave_rtx_counter_add(tx, "daily", key, delta, 2);
}

static const cleave_projection_def bank_projections[] = {
    {"accounts", 1, "lmdb", accounts_types, NULL, accounts_apply,
     CLEAVE_POISON_PARK},
    {"statements", 1, "lmdb", accounts_types, NULL, statements_apply,
     CLEAVE_POISON_PARK},
    {"volume", 1, "lmdb", volume_types, NULL, volume_apply, CLEAVE_POISON_PARK},
    {NULL},
};

/* ---- queries ------------------------------------------------------------ */

/* Answers with o, from obj(): NULL is out of memory. */
static int reply(cleave_query *q, cJSON *o)
{
	return o ? cleave_query_reply(q, o)
	         : cleave_query_fail(q, CLEAVE_ENOMEM, NULL, "out of memory");
}

static int q_balance(cleave_query *q)
{
	const char *id;
	const void *v;
	size_t len;
	int rc = cleave_query_param_str(q, "accountId", true, BANK_ID_MAX, &id);
	if (!rc)
		rc = cleave_rtx_get(cleave_query_rtx(q, 0), "acct", id, &v,
		                    &len);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_query_fail(q, rc, "account_not_found",
		                         "no account '%s'", id);
	return rc ? rc : cleave_query_reply_raw(q, v, len);
}

static int q_statement(cleave_query *q)
{
	const char *id;
	int rc = cleave_query_param_str(q, "accountId", true, BANK_ID_MAX, &id);
	if (rc)
		return rc;
	static const cleave_page_opts o = {.missing_code = "account_not_found",
	                                   .what = "account"};
	return cleave_query_reply_page(q, cleave_query_rtx(q, 0), "stmt", id,
	                               &o);
}

static int currency_param(cleave_query *q, bool required, const char **out)
{
	int rc = cleave_query_param_str(q, "currency", required, 3, out);
	if (rc)
		return rc;
	if (*out && !iso_currency_ok(*out))
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_currency",
		                         "parameter 'currency' must be an ISO "
		                         "4217 currency code");
	return 0;
}

static int q_daily_volume(cleave_query *q)
{
	const char *cur, *day_s;
	int64_t day, vals[2] = {0, 0};
	char key[32];
	int rc;
	if ((rc = currency_param(q, true, &cur)) ||
	    (rc = cleave_query_param_str(q, "day", true, 10, &day_s)))
		return rc;
	if (!cleave_day_parse(day_s, &day))
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
		                         "parameter 'day' must be a date "
		                         "YYYY-MM-DD");
	const char *parts[] = {cur, day_s};
	if (cleave_key(key, sizeof(key), 2, parts) < 0)
		return cleave_query_fail(q, CLEAVE_EINTERNAL, NULL,
		                         "cannot build the key");
	rc = cleave_rtx_counter_get(cleave_query_rtx(q, 0), "daily", key, vals,
	                            2);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	return reply(q, obj("ssii", "currency", cur, "day", day_s, "transfers",
	                    vals[0], "volume_cents", vals[1]));
}

static int q_totals(cleave_query *q)
{
	const char *cur;
	int64_t v[4] = {0, 0, 0, 0};
	int rc = currency_param(q, false, &cur);
	if (rc)
		return rc;
	rc = cleave_rtx_counter_get(cleave_query_rtx(q, 0), "totals",
	                            cur ? cur : TOTALS_ALL, v, 4);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	return reply(q, obj("siiii", "currency", cur, "accounts", v[0],
	                    "balance_cents", v[1], "deposits_cents", v[2],
	                    "withdrawals_cents", v[3]));
}

static const char *const reads_accounts[] = {"accounts", NULL};
static const char *const reads_statements[] = {"statements", NULL};
static const char *const reads_volume[] = {"volume", NULL};

static const cleave_query_def bank_queries[] = {
    {"balance", q_balance, reads_accounts,
     "an account's owner, currency and balance"},
    {"statement", q_statement, reads_statements,
     "an account's entries, newest first, in cursor pages"},
    {"daily_volume", q_daily_volume, reads_volume,
     "transfers and volume of one currency on one UTC day"},
    {"totals", q_totals, reads_accounts,
     "accounts, balances, deposits and withdrawals in one snapshot"},
    {NULL},
};

const cleave_domain dom_bank = {
    .name = "bank",
    .migrations = bank_migrations,
    .commands = bank_commands,
    .projections = bank_projections,
    .queries = bank_queries,
    .event_types = NULL,
    .upcasters = NULL,
};
