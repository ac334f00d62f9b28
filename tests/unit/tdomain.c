/*
 * tdomain.c — the counters domain the engine tests run on.
 */
#include "tdomain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

atomic_bool td_cure;
atomic_long td_totals_calls;

static const char *const migrations[] = {
	"CREATE TABLE counters(id TEXT PRIMARY KEY, n BIGINT NOT NULL);"
	"CREATE TABLE scratch(id TEXT PRIMARY KEY);",
	NULL,
};

static const cleave_field id_fields[] = {
	{"id", CLEAVE_F_STRING, true, 0, 0, 64, "id"},
	{NULL, 0, false, 0, 0, 0, NULL},
};

static const cleave_field inc_fields[] = {
	{"id", CLEAVE_F_STRING, true, 0, 0, 64, "id"},
	{"by", CLEAVE_F_INT, true, 1, 1000000, 0, NULL},
	{"poison", CLEAVE_F_BOOL, false, 0, 0, 0, NULL},
	{NULL, 0, false, 0, 0, 0, NULL},
};

static int stream_of(const char *id, char *buf, size_t cap)
{
	snprintf(buf, cap, "c-%s", id);
	return 0;
}

static int cmd_create(cleave_cmd *c, const cJSON *in)
{
	const char *id = cJSON_GetObjectItem(in, "id")->valuestring;
	cleave_value a[] = {cleave_text(id)};
	int rc = cleave_cmd_exec(c, "INSERT INTO counters(id, n) VALUES(?, 0)",
				 a, 1, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "counter_exists",
				       "counter %s exists", id);
	if (rc)
		return rc;
	char s[96];
	stream_of(id, s, sizeof(s));
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", id);
	return cleave_cmd_emit(c, s, "Created", d);
}

static int cmd_inc(cleave_cmd *c, const cJSON *in)
{
	const char *id = cJSON_GetObjectItem(in, "id")->valuestring;
	int64_t by = (int64_t)cJSON_GetObjectItem(in, "by")->valuedouble;
	bool poison = cJSON_IsTrue(cJSON_GetObjectItem(in, "poison"));
	cleave_value a[] = {cleave_int(by), cleave_text(id)};
	int64_t changes = 0, n;
	int rc = cleave_cmd_exec(c, "UPDATE counters SET n = n + ? WHERE id = ?",
				 a, 2, &changes);
	if (rc)
		return rc;
	if (!changes) {
		/* an upsert keeps tests short: unknown ids start at 0 */
		cleave_value b[] = {cleave_text(id), cleave_int(by)};
		rc = cleave_cmd_exec(c, "INSERT INTO counters(id, n) VALUES(?, ?)",
				     b, 2, NULL);
		if (rc)
			return rc;
	}
	cleave_value q[] = {cleave_text(id)};
	rc = cleave_cmd_query_int(c, "SELECT n FROM counters WHERE id = ?", q, 1,
				  &n);
	if (rc)
		return rc;
	char s[96];
	stream_of(id, s, sizeof(s));
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", id);
	cJSON_AddNumberToObject(d, "by", (double)by);
	cJSON_AddNumberToObject(d, "n", (double)n);
	if (poison)
		cJSON_AddBoolToObject(d, "poison", 1);
	rc = cleave_cmd_emit(c, s, "Incremented", d);
	if (rc)
		return rc;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "n", (double)n);
	cleave_cmd_result(c, r);
	return 0;
}

/* Writes a row and an event, then is rejected: must leave nothing. */
static int cmd_fail(cleave_cmd *c, const cJSON *in)
{
	const char *id = cJSON_GetObjectItem(in, "id")->valuestring;
	cleave_value a[] = {cleave_text(id)};
	int rc = cleave_cmd_exec(c, "INSERT INTO scratch(id) VALUES(?)", a, 1,
				 NULL);
	if (rc)
		return rc;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", id);
	if ((rc = cleave_cmd_emit(c, "failing", "Incremented", d)))
		return rc;
	return cleave_cmd_fail(c, CLEAVE_EREJECTED, "always_fails",
			       "Fail always fails (%s)", id);
}

/* Writes a row through a cursor (INSERT ... RETURNING), then is rejected
 * without emitting: the engine must still count the write and undo it. */
static int cmd_fail_returning(cleave_cmd *c, const cJSON *in)
{
	const char *id = cJSON_GetObjectItem(in, "id")->valuestring;
	cleave_value a[] = {cleave_text(id)};
	cleave_rows *r;
	int rc = cleave_cmd_query(c, "INSERT INTO scratch(id) VALUES(?)"
				     " RETURNING id",
				  a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	cleave_rows_close(r);
	if (rc != 1)
		return rc < 0 ? rc : CLEAVE_EINTERNAL;
	return cleave_cmd_fail(c, CLEAVE_EREJECTED, "always_fails",
			       "FailReturning always fails (%s)", id);
}

static int cmd_noop(cleave_cmd *c, const cJSON *in)
{
	return 0;
}

/* Holds the writer for 50 ms (queue-full tests only). */
static int cmd_slow(cleave_cmd *c, const cJSON *in)
{
	struct timespec ts = {0, 50 * 1000000L};
	nanosleep(&ts, NULL);
	return 0;
}

static const cleave_command_def commands[] = {
	{"Create", cmd_create, id_fields, "create a counter"},
	{"Inc", cmd_inc, inc_fields, "add to a counter"},
	{"Fail", cmd_fail, id_fields, "write, then fail"},
	{"FailReturning", cmd_fail_returning, id_fields,
	 "write through a cursor, then fail"},
	{"Noop", cmd_noop, NULL, "nothing"},
	{"Slow", cmd_slow, NULL, "sleep 50 ms in the writer"},
	{NULL, NULL, NULL, NULL},
};

/* ---- projections ---- */

static const char *const inc_types[] = {"Incremented", NULL};

static int apply_totals(cleave_rtx *tx, const cleave_event *ev)
{
	td_totals_calls++;
	const char *id = cJSON_GetObjectItem(ev->json, "id")->valuestring;
	if (!strcmp(ev->type, "Created")) {
		const void *v;
		size_t n;
		if (cleave_rtx_get(tx, "doc", id, &v, &n) == 0)
			return 0;
		return cleave_rtx_put(tx, "doc", id, "{\"n\":0}", 7);
	}
	int64_t by = (int64_t)cJSON_GetObjectItem(ev->json, "by")->valuedouble;
	int64_t cur = 0;
	const void *v;
	size_t n;
	int rc = cleave_rtx_get(tx, "doc", id, &v, &n);
	if (rc == 0) {
		cJSON *j = cJSON_ParseWithLength(v, n);
		cur = (int64_t)cJSON_GetObjectItem(j, "n")->valuedouble;
		cJSON_Delete(j);
	} else if (rc != CLEAVE_ENOTFOUND) {
		return rc;
	}
	char buf[64];
	int len = snprintf(buf, sizeof(buf), "{\"n\":%lld}",
			   (long long)(cur + by));
	if ((rc = cleave_rtx_put(tx, "doc", id, buf, (size_t)len)))
		return rc;
	int64_t d[2] = {by, 1};
	return cleave_rtx_counter_add(tx, "sum", "all", d, 2);
}

static int apply_poison(cleave_rtx *tx, const cleave_event *ev)
{
	if (cJSON_IsTrue(cJSON_GetObjectItem(ev->json, "poison")) && !td_cure)
		return CLEAVE_EINVAL;
	int64_t d[1] = {1};
	return cleave_rtx_counter_add(tx, "seen", "all", d, 1);
}

/* "deferred": counts per id gathered in the transaction and written at its
 * flush (cleave_rtx_defer); a poison event fails only there, so the engine
 * must find it among the batch's events. */
typedef struct td_acc {
	int n;
	char id[64][32];
	int64_t count[64];
	bool poisoned;
} td_acc;

static char td_acc_key;

static int td_acc_flush(cleave_rtx *tx, void *arg)
{
	td_acc *a = arg;
	int rc = a->poisoned ? CLEAVE_EINVAL : 0;
	for (int i = 0; i < a->n && !rc; i++) {
		int64_t d[1] = {a->count[i]};
		rc = cleave_rtx_counter_add(tx, "dseen", a->id[i], d, 1);
	}
	a->n = 0;
	a->poisoned = false;
	return rc;
}

static int apply_deferred(cleave_rtx *tx, const cleave_event *ev)
{
	td_acc *a = cleave_rtx_deferred(tx, &td_acc_key);
	if (!a) {
		int rc;
		if (!(a = calloc(1, sizeof(*a))))
			return CLEAVE_ENOMEM;
		if ((rc = cleave_rtx_defer(tx, &td_acc_key, td_acc_flush, a,
					   free))) {
			free(a);
			return rc;
		}
	}
	if (cJSON_IsTrue(cJSON_GetObjectItem(ev->json, "poison")) && !td_cure)
		a->poisoned = true;
	const char *id = cJSON_GetObjectItem(ev->json, "id")->valuestring;
	int i = 0;
	while (i < a->n && strcmp(a->id[i], id))
		i++;
	if (i == a->n) {
		if (a->n == 64)
			return CLEAVE_ENOMEM;
		snprintf(a->id[a->n], sizeof(a->id[0]), "%s", id);
		a->count[a->n++] = 0;
	}
	a->count[i]++;
	return 0;
}

static int setup_rows(cleave_rtx *tx)
{
	return cleave_rtx_exec(tx,
			       "CREATE TABLE IF NOT EXISTS rows(position "
			       "INTEGER PRIMARY KEY, id TEXT, n INTEGER)",
			       NULL, 0, NULL);
}

static int apply_rows(cleave_rtx *tx, const cleave_event *ev)
{
	const cJSON *j = ev->json;
	cleave_value a[] = {
		cleave_int(ev->position),
		cleave_text(cJSON_GetObjectItem(j, "id")->valuestring),
		cleave_int((int64_t)cJSON_GetObjectItem(j, "n")->valuedouble),
	};
	return cleave_rtx_exec(tx, "INSERT INTO rows(position, id, n) VALUES(?,?,?)",
			       a, 3, NULL);
}

static const cleave_projection_def projections[] = {
	{"totals", 1, "lmdb", NULL, NULL, apply_totals, CLEAVE_POISON_PARK},
	{"poison", 1, "lmdb", inc_types, NULL, apply_poison,
	 CLEAVE_POISON_PARK},
	{"skipper", 1, "lmdb", inc_types, NULL, apply_poison,
	 CLEAVE_POISON_SKIP},
	{"rows", 1, "sqlite", inc_types, setup_rows, apply_rows,
	 CLEAVE_POISON_PARK},
	{"deferred", 1, "lmdb", inc_types, NULL, apply_deferred,
	 CLEAVE_POISON_SKIP},
	{NULL, 0, NULL, NULL, NULL, NULL, 0},
};

/* ---- queries ---- */

static int q_count(cleave_query *q)
{
	const char *id;
	int rc = cleave_query_param_str(q, "id", true, 64, &id);
	if (rc)
		return rc;
	const void *v;
	size_t n;
	rc = cleave_rtx_get(cleave_query_rtx(q, 0), "doc", id, &v, &n);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_query_fail(q, rc, "counter_not_found",
					 "no counter %s", id);
	if (rc)
		return rc;
	return cleave_query_reply_raw(q, v, n);
}

static int q_sum(cleave_query *q)
{
	int64_t v[2] = {0, 0};
	int rc = cleave_rtx_counter_get(cleave_query_rtx(q, 0), "sum", "all",
					v, 2);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "sum", (double)v[0]);
	cJSON_AddNumberToObject(o, "incs", (double)v[1]);
	return cleave_query_reply(q, o);
}

static int q_rows(cleave_query *q)
{
	cleave_rows *r;
	int rc = cleave_rtx_query(cleave_query_rtx(q, 0),
				  "SELECT count(*), coalesce(max(position),0) "
				  "FROM rows",
				  NULL, 0, &r);
	if (rc)
		return rc;
	cJSON *o = cJSON_CreateObject();
	if (cleave_rows_next(r) == 1) {
		cJSON_AddNumberToObject(o, "rows", (double)cleave_rows_int(r, 0));
		cJSON_AddNumberToObject(o, "max", (double)cleave_rows_int(r, 1));
	}
	cleave_rows_close(r);
	return cleave_query_reply(q, o);
}

static int q_dseen(cleave_query *q)
{
	const char *id;
	int rc = cleave_query_param_str(q, "id", true, 64, &id);
	if (rc)
		return rc;
	int64_t v[1] = {0};
	rc = cleave_rtx_counter_get(cleave_query_rtx(q, 0), "dseen", id, v, 1);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "n", (double)v[0]);
	return cleave_query_reply(q, o);
}

/* Answers the text given as parameter "raw" as it is (guard-rail tests). */
static int q_raw(cleave_query *q)
{
	const char *raw = cleave_query_param(q, "raw");
	return cleave_query_reply_raw(q, raw ? raw : "", raw ? strlen(raw) : 0);
}

static const char *const reads_totals[] = {"totals", NULL};
static const char *const reads_deferred[] = {"deferred", NULL};
static const char *const reads_rows[] = {"rows", NULL};

static const cleave_query_def queries[] = {
	{"count", q_count, reads_totals, "one counter"},
	{"sum", q_sum, reads_totals, "sum of all counters"},
	{"rows", q_rows, reads_rows, "rows projection stats"},
	{"dseen", q_dseen, reads_deferred, "deferred projection's count"},
	{"raw", q_raw, reads_totals, "answers parameter raw as it is"},
	{NULL, NULL, NULL, NULL},
};

const cleave_domain td_domain = {
	.name = "t",
	.migrations = migrations,
	.commands = commands,
	.projections = projections,
	.queries = queries,
};

static int upcast_inc(cJSON *data)
{
	cJSON_AddBoolToObject(data, "upcast", 1);
	return 0;
}

static const cleave_event_type types_v2[] = {
	{"Incremented", 2},
	{NULL, 0},
};

static const cleave_upcaster upcasters_v2[] = {
	{"Incremented", 1, upcast_inc},
	{NULL, 0, NULL},
};

const cleave_domain td_domain_v2 = {
	.name = "t",
	.migrations = migrations,
	.commands = commands,
	.projections = projections,
	.queries = queries,
	.event_types = types_v2,
	.upcasters = upcasters_v2,
};

int td_run(cleave_engine *e, const char *cmd, const char *body,
	   const char *key, int64_t *pos)
{
	cleave_request r = {0};
	r.command = cmd;
	r.body = body;
	r.body_len = body ? strlen(body) : 0;
	r.idempotency_key = key;
	r.expected_version = -1;
	cleave_outcome *o;
	int rc = cleave_command_run(e, &r, &o);
	if (rc)
		return rc;
	rc = o->rc;
	if (pos)
		*pos = o->position;
	cleave_outcome_free(o);
	return rc;
}
