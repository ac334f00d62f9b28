/*
 * bank.c — the bank domain (contract: docs/domains.md): a ledger of
 * accounts, deposits, withdrawals and transfers.  Money is conserved: the
 * sum of all balances equals deposits minus withdrawals at every log
 * position.
 *
 * Write model (portable SQL):
 *   accounts   (account_id PK, owner, currency, balance_cents >= 0,
 *               opened_at)
 *   transfers  (transfer_id PK, from_account, to_account, amount_cents,
 *               currency, created_at; from <> to)
 *
 * Limits (each keeps amounts below 2^53; 400 from the field checks, 422
 * from the rules):
 *   accountId, transferId  1..64 bytes [A-Za-z0-9_.:-]          400
 *   owner                  1..200 bytes                          400
 *   currency               ISO 4217 code in use (iso.c)          400
 *   amount_cents           1..10^12                              400
 *   a balance              at most 10^15   422 balance_limit
 * The totals (sum of balances, deposits, withdrawals) are int64 counters
 * served as exact integers.
 *
 * Commands → events (stream):
 *   OpenAccount  accountId, owner, currency
 *       409 account_exists, 400 invalid_currency
 *       → AccountOpened {accountId, owner, currency, opened_at}
 *         (account-<id>)
 *   Deposit      accountId, amount_cents
 *       404 account_not_found, 422 balance_limit
 *       → Deposited {accountId, currency, amount_cents, balance_cents, at}
 *   Withdraw     accountId, amount_cents
 *       404 account_not_found, 422 insufficient_funds
 *       → Withdrawn {accountId, currency, amount_cents, balance_cents, at}
 *   Transfer     transferId, from, to, amount_cents
 *       checked in this order: 409 transfer_exists, 422 same_account,
 *       404 account_not_found (from, then to), 422 currency_mismatch,
 *       422 insufficient_funds, 422 balance_limit
 *       → TransferCompleted {transferId, from, to, amount_cents, currency,
 *         from_balance_cents, to_balance_cents, at} (transfer-<id>)
 * balance_cents fields are the balances after the event; times are unix
 * seconds of the command's timestamp.
 *
 * Read models:
 *   accounts (lmdb)
 *     acct     accountId → {accountId, owner, currency, balance_cents},
 *              the text `balance` serves
 *     totals   counters "*" (every account) and per currency →
 *              [accounts, balance_cents, deposits_cents, withdrawals_cents]
 *   statements (lmdb)
 *     stmt     list per accountId, seq = event position →
 *              {position, kind, amount_cents (signed), balance_after_cents}
 *              kind: "open" (amount 0), "deposit" (+), "withdrawal" (-),
 *              "transfer_in" (+), "transfer_out" (-); transfer entries add
 *              transferId and counterparty.  A transfer gives one entry on
 *              each side, both at the event's position.
 *   volume (lmdb)
 *     daily    counter (currency, YYYY-MM-DD of the transfer) →
 *              [transfers, volume_cents]
 *
 * Queries:
 *   balance(accountId)            the account document; 404
 *   statement(accountId, limit?, cursor?)
 *       {"items": [entries newest first], "next_cursor"}; limit 1..100
 *       (default 20); 404 for an account with no entries (every opened
 *       account has its "open" entry)
 *   daily_volume(currency, day)   {currency, day, transfers, volume_cents}
 *   totals(currency?)             {accounts, balance_cents, deposits_cents,
 *       withdrawals_cents} of every account (or one currency's), read from
 *       one counter in one snapshot: balance_cents = deposits_cents -
 *       withdrawals_cents holds in every answer.
 */
#include <inttypes.h>
#include <stdio.h>
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

/* ---- command helpers ---------------------------------------------------- */

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
	rc = cleave_rows_next(r);
	if (rc == 1) {
		size_t n = 0;
		const char *cur = cleave_rows_text(r, 0, &n);
		if (!cur || n != 3)
			n = 0;
		memcpy(a->currency, cur ? cur : "", n);
		a->currency[n] = 0;
		a->balance = cleave_rows_int(r, 1);
	}
	cleave_rows_close(r);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_ENOTFOUND, "account_not_found",
		                       "no %s '%s'", role, id);
	return 0;
}

static int balance_set(cleave_cmd *c, const char *id, int64_t balance)
{
	cleave_value a[] = {cleave_int(balance), cleave_text(id)};
	return cleave_cmd_exec(c,
	                       "UPDATE accounts SET balance_cents = ?"
	                       " WHERE account_id = ?",
	                       a, 2, NULL);
}

static int result_balance(cleave_cmd *c, const char *id, int64_t balance)
{
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "accountId", id) ||
	    !dom_add_int(r, "balance_cents", balance)) {
		cJSON_Delete(r);
		return dom_oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- commands ----------------------------------------------------------- */

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
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "accountId", id) &&
	          cJSON_AddStringToObject(d, "owner", owner) &&
	          cJSON_AddStringToObject(d, "currency", cur) &&
	          cJSON_AddNumberToObject(d, "opened_at", (double)now);
	if ((rc = dom_emit(c, "account", id, "AccountOpened", d, ok)))
		return rc;
	return result_balance(c, id, 0);
}

static const cleave_field amount_fields[] = {
    {"accountId", CLEAVE_F_STRING, true, 0, 0, BANK_ID_MAX, "id"},
    {"amount_cents", CLEAVE_F_INT, true, 1, BANK_AMOUNT_MAX, 0, NULL},
    {NULL},
};

/* Deposit (sign 1) and Withdraw (sign -1). */
static int move_money(cleave_cmd *c, const cJSON *in, int sign)
{
	const char *id = cleave_json_str(in, "accountId");
	int64_t amount = cleave_json_int(in, "amount_cents", 0);
	acct_row a;
	int rc = account_get(c, id, "account", &a);
	if (rc)
		return rc;
	if (sign < 0 && a.balance < amount)
		return cleave_cmd_fail(
		    c, CLEAVE_EREJECTED, "insufficient_funds",
		    "account '%s' holds %" PRId64 " cents, %" PRId64 " asked",
		    id, a.balance, amount);
	if (sign > 0 && a.balance + amount > BANK_BALANCE_MAX)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "balance_limit",
		                       "account '%s' would hold more than "
		                       "%lld cents",
		                       id, BANK_BALANCE_MAX);
	a.balance += sign * amount;
	if ((rc = balance_set(c, id, a.balance)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok =
	    d && cJSON_AddStringToObject(d, "accountId", id) &&
	    cJSON_AddStringToObject(d, "currency", a.currency) &&
	    cJSON_AddNumberToObject(d, "amount_cents", (double)amount) &&
	    cJSON_AddNumberToObject(d, "balance_cents", (double)a.balance) &&
	    cJSON_AddNumberToObject(d, "at", (double)dom_now_s(c));
	if ((rc = dom_emit(c, "account", id,
	                   sign > 0 ? "Deposited" : "Withdrawn", d, ok)))
		return rc;
	return result_balance(c, id, a.balance);
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
	const char *from = cleave_json_str(in, "from"), *to = cleave_json_str(in, "to");
	int64_t amount = cleave_json_int(in, "amount_cents", 0), v, now = dom_now_s(c);
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
	if (fa.balance < amount)
		return cleave_cmd_fail(
		    c, CLEAVE_EREJECTED, "insufficient_funds",
		    "account '%s' holds %" PRId64 " cents, %" PRId64 " asked",
		    from, fa.balance, amount);
	if (ta.balance + amount > BANK_BALANCE_MAX)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "balance_limit",
		                       "account '%s' would hold more than "
		                       "%lld cents",
		                       to, BANK_BALANCE_MAX);
	fa.balance -= amount;
	ta.balance += amount;
	cleave_value at[] = {cleave_text(id),          cleave_text(from),
	                     cleave_text(to),          cleave_int(amount),
	                     cleave_text(fa.currency), cleave_int(now)};
	if ((rc = balance_set(c, from, fa.balance)) ||
	    (rc = balance_set(c, to, ta.balance)) ||
	    (rc = cleave_cmd_exec(c,
	                          "INSERT INTO transfers (transfer_id,"
	                          " from_account, to_account, amount_cents,"
	                          " currency, created_at)"
	                          " VALUES (?, ?, ?, ?, ?, ?)",
	                          at, 6, NULL)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "transferId", id) &&
	          cJSON_AddStringToObject(d, "from", from) &&
	          cJSON_AddStringToObject(d, "to", to) &&
	          cJSON_AddNumberToObject(d, "amount_cents", (double)amount) &&
	          cJSON_AddStringToObject(d, "currency", fa.currency) &&
	          cJSON_AddNumberToObject(d, "from_balance_cents",
	                                  (double)fa.balance) &&
	          cJSON_AddNumberToObject(d, "to_balance_cents",
	                                  (double)ta.balance) &&
	          cJSON_AddNumberToObject(d, "at", (double)now);
	if ((rc = dom_emit(c, "transfer", id, "TransferCompleted", d, ok)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "transferId", id) ||
	    !dom_add_int(r, "from_balance_cents", fa.balance) ||
	    !dom_add_int(r, "to_balance_cents", ta.balance)) {
		cJSON_Delete(r);
		return dom_oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
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

/* ---- projection: accounts ----------------------------------------------- */

#define IS(ev, t) (!strcmp((ev)->type, (t)))

static int account_doc_put(cleave_rtx *tx, const char *id, const char *owner,
                           const char *currency, int64_t balance)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	size_t len = 0;
	if (o && cJSON_AddStringToObject(o, "accountId", id) &&
	    cJSON_AddStringToObject(o, "owner", owner) &&
	    cJSON_AddStringToObject(o, "currency", currency) &&
	    dom_add_int(o, "balance_cents", balance))
		text = dom_print(o, &len);
	cJSON_Delete(o);
	if (!text)
		return CLEAVE_ENOMEM;
	int rc = cleave_rtx_put(tx, "acct", id, text, len);
	free(text);
	return rc;
}

/* Sets a stored account's balance (the event's balance after). */
static int account_doc_balance(cleave_rtx *tx, const char *id, int64_t balance)
{
	const void *v;
	size_t len;
	const char *owner, *cur;
	int rc = cleave_rtx_get(tx, "acct", id, &v, &len);
	if (rc)
		return rc == CLEAVE_ENOTFOUND ? CLEAVE_ECORRUPT : rc;
	cJSON *o = cJSON_ParseWithLength(v, len);
	if (!o)
		return CLEAVE_ECORRUPT;
	if (!(rc = cleave_json_get_str(o, "owner", &owner)) &&
	    !(rc = cleave_json_get_str(o, "currency", &cur)))
		rc = account_doc_put(tx, id, owner, cur, balance);
	cJSON_Delete(o);
	return rc;
}

/* Adds to the totals of every account and of `currency`. */
static int totals_add(cleave_rtx *tx, const char *currency,
                      const int64_t delta[4])
{
	int rc = cleave_rtx_counter_add(tx, "totals", TOTALS_ALL, delta, 4);
	if (!rc)
		rc = cleave_rtx_counter_add(tx, "totals", currency, delta, 4);
	return rc;
}

static const char *const accounts_types[] = {
    "AccountOpened", "Deposited", "Withdrawn", "TransferCompleted", NULL};

static int accounts_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const cJSON *d = ev->json;
	const char *id, *cur, *owner, *to;
	int64_t amount, balance, to_balance;
	int rc;
	if (IS(ev, "TransferCompleted")) {
		if ((rc = cleave_json_get_str(d, "from", &id)) ||
		    (rc = cleave_json_get_str(d, "to", &to)) ||
		    (rc = cleave_json_get_int(d, "from_balance_cents", &balance)) ||
		    (rc = cleave_json_get_int(d, "to_balance_cents", &to_balance)) ||
		    (rc = account_doc_balance(tx, id, balance)))
			return rc;
		return account_doc_balance(tx, to, to_balance);
	}
	if ((rc = cleave_json_get_str(d, "accountId", &id)) ||
	    (rc = cleave_json_get_str(d, "currency", &cur)))
		return rc;
	if (IS(ev, "AccountOpened")) {
		int64_t delta[4] = {1, 0, 0, 0};
		if ((rc = cleave_json_get_str(d, "owner", &owner)) ||
		    (rc = account_doc_put(tx, id, owner, cur, 0)))
			return rc;
		return totals_add(tx, cur, delta);
	}
	if ((rc = cleave_json_get_int(d, "amount_cents", &amount)) ||
	    (rc = cleave_json_get_int(d, "balance_cents", &balance)) ||
	    (rc = account_doc_balance(tx, id, balance)))
		return rc;
	if (IS(ev, "Deposited")) {
		int64_t delta[4] = {0, amount, amount, 0};
		return totals_add(tx, cur, delta);
	}
	int64_t delta[4] = {0, -amount, 0, amount};
	return totals_add(tx, cur, delta);
}

/* ---- projection: statements --------------------------------------------- */

static int entry_put(cleave_rtx *tx, const char *account, int64_t pos,
                     const char *kind, int64_t amount, int64_t balance,
                     const char *transfer, const char *counterparty)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	size_t len = 0;
	if (o && dom_add_int(o, "position", pos) &&
	    cJSON_AddStringToObject(o, "kind", kind) &&
	    dom_add_int(o, "amount_cents", amount) &&
	    dom_add_int(o, "balance_after_cents", balance) &&
	    (!transfer ||
	     (cJSON_AddStringToObject(o, "transferId", transfer) &&
	      cJSON_AddStringToObject(o, "counterparty", counterparty))))
		text = dom_print(o, &len);
	cJSON_Delete(o);
	if (!text)
		return CLEAVE_ENOMEM;
	int rc = cleave_rtx_list_put(tx, "stmt", account, pos, text, len);
	free(text);
	return rc;
}

static int statements_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const cJSON *d = ev->json;
	const char *id, *to, *tid;
	int64_t amount = 0, balance = 0, to_balance;
	int rc;
	if (IS(ev, "TransferCompleted")) {
		if ((rc = cleave_json_get_str(d, "transferId", &tid)) ||
		    (rc = cleave_json_get_str(d, "from", &id)) ||
		    (rc = cleave_json_get_str(d, "to", &to)) ||
		    (rc = cleave_json_get_int(d, "amount_cents", &amount)) ||
		    (rc = cleave_json_get_int(d, "from_balance_cents", &balance)) ||
		    (rc = cleave_json_get_int(d, "to_balance_cents", &to_balance)) ||
		    (rc = entry_put(tx, id, ev->position, "transfer_out",
		                    -amount, balance, tid, to)))
			return rc;
		return entry_put(tx, to, ev->position, "transfer_in", amount,
		                 to_balance, tid, id);
	}
	if ((rc = cleave_json_get_str(d, "accountId", &id)))
		return rc;
	if (IS(ev, "AccountOpened"))
		return entry_put(tx, id, ev->position, "open", 0, 0, NULL,
		                 NULL);
	if ((rc = cleave_json_get_int(d, "amount_cents", &amount)) ||
	    (rc = cleave_json_get_int(d, "balance_cents", &balance)))
		return rc;
	if (IS(ev, "Deposited"))
		return entry_put(tx, id, ev->position, "deposit", amount,
		                 balance, NULL, NULL);
	return entry_put(tx, id, ev->position, "withdrawal", -amount, balance,
	                 NULL, NULL);
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

static int q_oom(cleave_query *q)
{
	return cleave_query_fail(q, CLEAVE_ENOMEM, NULL, "out of memory");
}

static int q_balance(cleave_query *q)
{
	const char *id;
	const void *v;
	size_t len;
	int rc = cleave_query_param_str(q, "accountId", true, BANK_ID_MAX, &id);
	if (rc)
		return rc;
	rc = cleave_rtx_get(cleave_query_rtx(q, 0), "acct", id, &v, &len);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_query_fail(q, rc, "account_not_found",
		                         "no account '%s'", id);
	if (rc)
		return rc;
	return cleave_query_reply_raw(q, v, len);
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
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddStringToObject(o, "currency", cur) ||
	    !cJSON_AddStringToObject(o, "day", day_s) ||
	    !dom_add_int(o, "transfers", vals[0]) ||
	    !dom_add_int(o, "volume_cents", vals[1])) {
		cJSON_Delete(o);
		return q_oom(q);
	}
	return cleave_query_reply(q, o);
}

static int q_totals(cleave_query *q)
{
	const char *cur;
	int64_t vals[4] = {0, 0, 0, 0};
	int rc = currency_param(q, false, &cur);
	if (rc)
		return rc;
	rc = cleave_rtx_counter_get(cleave_query_rtx(q, 0), "totals",
	                            cur ? cur : TOTALS_ALL, vals, 4);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	cJSON *o = cJSON_CreateObject();
	if (!o || (cur && !cJSON_AddStringToObject(o, "currency", cur)) ||
	    !dom_add_int(o, "accounts", vals[0]) ||
	    !dom_add_int(o, "balance_cents", vals[1]) ||
	    !dom_add_int(o, "deposits_cents", vals[2]) ||
	    !dom_add_int(o, "withdrawals_cents", vals[3])) {
		cJSON_Delete(o);
		return q_oom(q);
	}
	return cleave_query_reply(q, o);
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
