/*
 * test_shop.c — the shop domain on the real engine (SQLite write store,
 * LMDB and SQLite read stores): every rule and status of docs/domains.md,
 * the promo arithmetic, failed checkouts that change nothing, cancellations
 * through every read model, search filters/sorts/pages, and rebuilds that
 * reproduce the read models (handlers are pure).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dom.h"
#include "domains.h"
#include "testutil.h"

/* ---- harness ------------------------------------------------------------ */

static char *g_dir;
static cleave_engine *g_e;
static int64_t g_pos;   /* highest position a command reached */
static cJSON *g_out;    /* last command outcome body */
static cJSON *g_ans;    /* last query answer */
static char g_code[64]; /* error code of the last failure */
static char g_msg[512]; /* its message */

static int setup(void **state)
{
	cleave_config cfg = {0};
	g_dir = tu_tmpdir("shop");
	cfg.domain = cleave_domain_find("shop");
	assert_non_null(cfg.domain);
	cfg.data_dir = g_dir;
	cfg.durability = CLEAVE_DURABILITY_OS; /* tests: no fsync per ack */
	TU_OK(cleave_engine_open(&cfg, &g_e));
	g_pos = 0;
	return 0;
}

static int teardown(void **state)
{
	cleave_engine_close(g_e);
	g_e = NULL;
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

/* Runs a command; returns its code (the submit error for bad input). */
static int run(const char *name, const char *body)
{
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

static int runf(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int runf(const char *name, const char *fmt, ...)
{
	char body[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	return run(name, body);
}

/* The result object of the last (successful) command. */
static const cJSON *result(void)
{
	return cJSON_GetObjectItem(g_out, "result");
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
		if ((want_code) &&                                             \
		    strcmp(g_code, (want_code) ? want_code : ""))              \
			fail_msg("%s: want code %s, got %s (%s)", name,        \
			         (const char *)(want_code), g_code, g_msg);    \
	} while (0)

/* Runs a query once every projection has applied g_pos.  Params are
 * name, value pairs ending with NULL.  Returns the answer's code; the
 * parsed answer is g_ans. */
static int query(const char *name, ...)
{
	cleave_param p[16];
	int n = 0;
	va_list ap;
	va_start(ap, name);
	for (const char *k; n < 16 && (k = va_arg(ap, const char *));) {
		p[n].name = k;
		p[n].value = va_arg(ap, const char *);
		n++;
	}
	va_end(ap);
	TU_OK(cleave_wait_position(g_e, NULL, 0, g_pos, 5000));
	cleave_answer a;
	TU_OK(cleave_query_run(g_e, name, p, n, &a));
	cJSON_Delete(g_ans);
	g_ans = cJSON_Parse(a.body);
	if (!g_ans)
		fail_msg("query %s: unparsable answer %s", name, a.body);
	g_code[0] = 0;
	if (a.rc)
		note_error(g_ans);
	else
		assert_true(a.position >= g_pos);
	int rc = a.rc;
	cleave_answer_free(&a);
	return rc;
}

/* The raw answer text of a query, without its "position". */
static char *query_text(const char *name, const char *k, const char *v)
{
	cleave_param p[] = {{k, v}};
	cleave_answer a;
	TU_OK(cleave_wait_position(g_e, NULL, 0, g_pos, 5000));
	TU_OK(cleave_query_run(g_e, name, p, 1, &a));
	assert_int_equal(a.rc, 0);
	char *comma = strchr(a.body, ',');
	assert_non_null(comma);
	assert_true(!strncmp(a.body, "{\"position\":", 12));
	char *s = malloc(strlen(comma) + 2);
	s[0] = '{';
	strcpy(s + 1, comma + 1);
	cleave_answer_free(&a);
	return s;
}

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

static int64_t sql_int(const char *sql)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/write.db", g_dir);
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

static void user(const char *id, const char *country)
{
	OK("RegisterUser",
	   "{\"userId\":\"%s\",\"name\":\"User %s\","
	   "\"country\":\"%s\"}",
	   id, id, country);
}

static void product(const char *id, const char *name, const char *cat,
                    int64_t price, int64_t stock)
{
	OK("AddProduct",
	   "{\"productId\":\"%s\",\"name\":\"%s\",\"category\":\"%s\","
	   "\"price_cents\":%lld,\"stock\":%lld}",
	   id, name, cat, (long long)price, (long long)stock);
}

static void add(const char *cart, const char *u, const char *p, int64_t q)
{
	OK("AddToCart",
	   "{\"cartId\":\"%s\",\"userId\":\"%s\",\"productId\":\"%s\","
	   "\"quantity\":%lld}",
	   cart, u, p, (long long)q);
}

static int64_t card(const char *id, const char *field)
{
	assert_int_equal(query("product", "productId", id, NULL), 0);
	return jint(g_ans, field);
}

static void utc_day(int64_t t, char out[11])
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

/* ---- users and products ------------------------------------------------- */

static void test_users(void **state)
{
	user("u1", "DE");
	assert_string_equal(jstr(result(), "userId"), "u1");
	FAILS(CLEAVE_EEXIST, "user_exists", "RegisterUser",
	      "{\"userId\":\"u1\",\"name\":\"again\",\"country\":\"FR\"}");
	/* not an ISO country: the handler says 400 */
	FAILS(CLEAVE_EINVAL, "invalid_country", "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"x\",\"country\":\"XX\"}");
	FAILS(CLEAVE_EINVAL, "invalid_country", "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"x\",\"country\":\"XK\"}");
	/* field checks: 400 before the handler, naming the field */
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"x\",\"country\":\"de\"}");
	assert_non_null(strstr(g_msg, "country"));
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"x\",\"country\":\"DEU\"}");
	assert_non_null(strstr(g_msg, "country"));
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u 2\",\"name\":\"x\",\"country\":\"DE\"}");
	assert_non_null(strstr(g_msg, "userId"));
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u2\",\"country\":\"DE\"}");
	assert_non_null(strstr(g_msg, "name"));
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"x\",\"country\":\"DE\","
	      "\"admin\":true}");
	assert_non_null(strstr(g_msg, "admin"));
	char name[260];
	memset(name, 'n', 201);
	name[201] = 0;
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"u2\",\"name\":\"%s\",\"country\":\"DE\"}", name);
	assert_non_null(strstr(g_msg, "name"));
	name[200] = 0; /* exactly 200 bytes is fine */
	OK("RegisterUser",
	   "{\"userId\":\"u2\",\"name\":\"%s\",\"country\":\"JP\"}", name);
	char id[80];
	memset(id, 'i', 65);
	id[65] = 0;
	FAILS(CLEAVE_EINVAL, NULL, "RegisterUser",
	      "{\"userId\":\"%s\",\"name\":\"x\",\"country\":\"DE\"}", id);
	assert_int_equal(sql_int("SELECT count(*) FROM users"), 2);
}

static void test_products(void **state)
{
	OK("AddProduct",
	   "{\"productId\":\"p1\",\"name\":\"Blue \\\"Widget\\\"\","
	   "\"category\":\"tools\",\"price_cents\":1250,\"stock\":10,"
	   "\"description\":\"a widget\"}");
	char *t = query_text("product", "productId", "p1");
	assert_string_equal(t, "{\"productId\":\"p1\",\"name\":\"Blue "
	                       "\\\"Widget\\\"\",\"category\":\"tools\","
	                       "\"price_cents\":1250,\"stock\":10,\"sold\":0,"
	                       "\"in_stock\":true}");
	free(t);
	FAILS(CLEAVE_EEXIST, "product_exists", "AddProduct",
	      "{\"productId\":\"p1\",\"name\":\"x\",\"category\":\"c\","
	      "\"price_cents\":1,\"stock\":0}");
	static const char *const bad[] = {
	    "\"price_cents\":0,\"stock\":1",
	    "\"price_cents\":-5,\"stock\":1",
	    "\"price_cents\":100000001,\"stock\":1",
	    "\"price_cents\":1.5,\"stock\":1",
	    "\"price_cents\":\"12\",\"stock\":1",
	    "\"price_cents\":1,\"stock\":-1",
	    "\"price_cents\":1,\"stock\":1000000001",
	    "\"price_cents\":1",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		FAILS(CLEAVE_EINVAL, NULL, "AddProduct",
		      "{\"productId\":\"p9\",\"name\":\"x\",\"category\":"
		      "\"c\",%s}",
		      bad[i]);
	char desc[2100];
	memset(desc, 'd', 2001);
	desc[2001] = 0;
	FAILS(CLEAVE_EINVAL, NULL, "AddProduct",
	      "{\"productId\":\"p9\",\"name\":\"x\",\"category\":\"c\","
	      "\"price_cents\":1,\"stock\":0,\"description\":\"%s\"}",
	      desc);
	assert_non_null(strstr(g_msg, "description"));
	product("p2", "Empty", "tools", 99, 0);
	assert_int_equal(query("product", "productId", "p2", NULL), 0);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(g_ans, "in_stock")));

	/* ChangePrice */
	FAILS(CLEAVE_ENOTFOUND, "product_not_found", "ChangePrice",
	      "{\"productId\":\"nope\",\"price_cents\":5}");
	FAILS(CLEAVE_EINVAL, NULL, "ChangePrice",
	      "{\"productId\":\"p1\",\"price_cents\":0}");
	OK("ChangePrice", "{\"productId\":\"p1\",\"price_cents\":1300}");
	assert_int_equal(card("p1", "price_cents"), 1300);

	/* Restock */
	FAILS(CLEAVE_ENOTFOUND, "product_not_found", "Restock",
	      "{\"productId\":\"nope\",\"quantity\":5}");
	FAILS(CLEAVE_EINVAL, NULL, "Restock",
	      "{\"productId\":\"p1\",\"quantity\":0}");
	FAILS(CLEAVE_EREJECTED, "stock_limit", "Restock",
	      "{\"productId\":\"p1\",\"quantity\":999999991}");
	OK("Restock", "{\"productId\":\"p1\",\"quantity\":999999990}");
	assert_int_equal(jint(result(), "stock"), 1000000000);
	assert_int_equal(card("p1", "stock"), 1000000000);
	OK("Restock", "{\"productId\":\"p2\",\"quantity\":3}");
	assert_int_equal(query("product", "productId", "p2", NULL), 0);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(g_ans, "in_stock")));

	/* product query */
	assert_int_equal(query("product", "productId", "zzz", NULL),
	                 CLEAVE_ENOTFOUND);
	assert_string_equal(g_code, "product_not_found");
	assert_int_equal(query("product", NULL), CLEAVE_EINVAL);
}

static void test_promos(void **state)
{
	OK("CreatePromo", "{\"code\":\"SAVE10\",\"percent_off\":10,"
	                  "\"max_uses\":5,\"expires_at\":4102444800}");
	FAILS(CLEAVE_EEXIST, "promo_exists", "CreatePromo",
	      "{\"code\":\"SAVE10\",\"percent_off\":20,\"max_uses\":5,"
	      "\"expires_at\":4102444800}");
	FAILS(CLEAVE_EINVAL, NULL, "CreatePromo",
	      "{\"code\":\"X\",\"percent_off\":91,\"max_uses\":5,"
	      "\"expires_at\":4102444800}");
	assert_non_null(strstr(g_msg, "percent_off"));
	FAILS(CLEAVE_EINVAL, NULL, "CreatePromo",
	      "{\"code\":\"X\",\"percent_off\":0,\"max_uses\":5,"
	      "\"expires_at\":4102444800}");
	FAILS(CLEAVE_EINVAL, NULL, "CreatePromo",
	      "{\"code\":\"X\",\"percent_off\":5,\"max_uses\":0,"
	      "\"expires_at\":4102444800}");
	FAILS(CLEAVE_EINVAL, NULL, "CreatePromo",
	      "{\"code\":\"X\",\"percent_off\":5,\"max_uses\":1,"
	      "\"expires_at\":-1}");
}

/* ---- carts -------------------------------------------------------------- */

static void test_cart_rules(void **state)
{
	user("u1", "DE");
	user("u2", "FR");
	product("p1", "One", "c", 100, 5);
	FAILS(CLEAVE_ENOTFOUND, "user_not_found", "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"nobody\",\"productId\":\"p1\","
	      "\"quantity\":1}");
	FAILS(CLEAVE_ENOTFOUND, "product_not_found", "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"u1\",\"productId\":\"nope\","
	      "\"quantity\":1}");
	assert_int_equal(sql_int("SELECT count(*) FROM carts"), 0);
	FAILS(CLEAVE_EINVAL, NULL, "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"u1\",\"productId\":\"p1\","
	      "\"quantity\":0}");
	FAILS(CLEAVE_EINVAL, NULL, "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"u1\",\"productId\":\"p1\","
	      "\"quantity\":10001}");
	assert_non_null(strstr(g_msg, "quantity"));

	/* stock is not checked at AddToCart; same product adds up */
	add("c1", "u1", "p1", 7);
	assert_int_equal(jint(result(), "quantity"), 7);
	add("c1", "u1", "p1", 3);
	assert_int_equal(jint(result(), "quantity"), 10);
	assert_int_equal(sql_int("SELECT quantity FROM cart_lines"), 10);

	/* another user's cart */
	FAILS(CLEAVE_EREJECTED, "cart_not_yours", "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"u2\",\"productId\":\"p1\","
	      "\"quantity\":1}");
	FAILS(CLEAVE_EREJECTED, "cart_not_yours", "Checkout",
	      "{\"cartId\":\"c1\",\"userId\":\"u2\"}");

	/* a line holds at most 100000 */
	for (int i = 0; i < 9; i++)
		add("c2", "u1", "p1", 10000);
	add("c2", "u1", "p1", 9999);
	FAILS(CLEAVE_EREJECTED, "line_quantity_limit", "AddToCart",
	      "{\"cartId\":\"c2\",\"userId\":\"u1\",\"productId\":\"p1\","
	      "\"quantity\":2}");
	add("c2", "u1", "p1", 1);
	assert_int_equal(jint(result(), "quantity"), 100000);

	/* a cart holds at most 100 lines */
	char id[32];
	for (int i = 0; i < 101; i++) {
		snprintf(id, sizeof(id), "q%03d", i);
		product(id, "Thing", "c", 1, 1);
	}
	for (int i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "q%03d", i);
		add("c3", "u1", id, 1);
	}
	FAILS(CLEAVE_EREJECTED, "cart_full", "AddToCart",
	      "{\"cartId\":\"c3\",\"userId\":\"u1\",\"productId\":\"q100\","
	      "\"quantity\":1}");
	add("c3", "u1", "q000", 1); /* an existing line still grows */
	assert_int_equal(
	    sql_int("SELECT count(*) FROM cart_lines WHERE cart_id='c3'"), 100);
}

/* ---- checkout ----------------------------------------------------------- */

static void test_checkout_promo_math(void **state)
{
	user("u1", "DE");
	user("u2", "DE");
	product("a", "Apple", "fruit", 999, 10);
	product("b", "Banana", "fruit", 1500, 10);
	OK("CreatePromo", "{\"code\":\"P15\",\"percent_off\":15,"
	                  "\"max_uses\":1,\"expires_at\":4102444800}");
	add("c1", "u1", "a", 3);
	add("c1", "u1", "b", 2);
	/* the unit price is the price at checkout time */
	OK("ChangePrice", "{\"productId\":\"b\",\"price_cents\":1501}");
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"c1\","
	               "\"promoCode\":\"P15\"}");
	/* 3*999 + 2*1501 = 5999; 15% = 899.85 → 899; total 5100 */
	const cJSON *r = result();
	const char *oid = jstr(r, "orderId");
	char order_id[64];
	snprintf(order_id, sizeof(order_id), "%s", oid);
	assert_int_equal(jint(r, "discount_cents"), 899);
	assert_int_equal(jint(r, "total_cents"), 5100);
	assert_int_equal(jint(r, "subtotal_cents"), 5999);

	assert_int_equal(query("order", "orderId", order_id, NULL), 0);
	assert_string_equal(jstr(g_ans, "status"), "placed");
	assert_string_equal(jstr(g_ans, "userId"), "u1");
	assert_string_equal(jstr(g_ans, "country"), "DE");
	assert_string_equal(jstr(g_ans, "promoCode"), "P15");
	assert_int_equal(jint(g_ans, "subtotal_cents"), 5999);
	assert_int_equal(jint(g_ans, "discount_cents"), 899);
	assert_int_equal(jint(g_ans, "total_cents"), 5100);
	const cJSON *lines = cJSON_GetObjectItem(g_ans, "lines");
	assert_int_equal(cJSON_GetArraySize(lines), 2);
	const cJSON *l0 = cJSON_GetArrayItem(lines, 0);
	const cJSON *l1 = cJSON_GetArrayItem(lines, 1);
	assert_string_equal(jstr(l0, "productId"), "a");
	assert_int_equal(jint(l0, "quantity"), 3);
	assert_int_equal(jint(l0, "price_cents"), 999);
	assert_string_equal(jstr(l1, "productId"), "b");
	assert_int_equal(jint(l1, "price_cents"), 1501);
	assert_int_equal(jint(l1, "line_total_cents"), 3002);

	/* stock went down, sold went up */
	assert_int_equal(card("a", "stock"), 7);
	assert_int_equal(card("a", "sold"), 3);
	assert_int_equal(card("b", "stock"), 8);

	/* the cart is emptied and closed */
	assert_int_equal(
	    sql_int("SELECT count(*) FROM cart_lines WHERE cart_id='c1'"), 0);
	FAILS(CLEAVE_EREJECTED, "cart_closed", "AddToCart",
	      "{\"cartId\":\"c1\",\"userId\":\"u1\",\"productId\":\"a\","
	      "\"quantity\":1}");
	FAILS(CLEAVE_EREJECTED, NULL, "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c1\"}");

	/* the promo had one use */
	add("c2", "u1", "a", 1);
	FAILS(CLEAVE_EREJECTED, "promo_used_up", "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c2\",\"promoCode\":\"P15\"}");
	FAILS(CLEAVE_EREJECTED, "promo_not_found", "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c2\",\"promoCode\":\"NOPE\"}");
	OK("CreatePromo", "{\"code\":\"OLD\",\"percent_off\":50,"
	                  "\"max_uses\":9,\"expires_at\":1000}");
	FAILS(CLEAVE_EREJECTED, "promo_expired", "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c2\",\"promoCode\":\"OLD\"}");
	/* unknown user, unknown cart */
	FAILS(CLEAVE_ENOTFOUND, "user_not_found", "Checkout",
	      "{\"userId\":\"ghost\",\"cartId\":\"c2\"}");
	FAILS(CLEAVE_ENOTFOUND, "cart_not_found", "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c404\"}");
	FAILS(CLEAVE_EINVAL, NULL, "Checkout", "{\"userId\":\"u1\"}");
	assert_non_null(strstr(g_msg, "cartId"));

	/* 90% off: rounding down on the discount */
	OK("CreatePromo", "{\"code\":\"P90\",\"percent_off\":90,"
	                  "\"max_uses\":9,\"expires_at\":4102444800}");
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"c2\","
	               "\"promoCode\":\"P90\"}");
	assert_int_equal(jint(result(), "discount_cents"), 899); /* 899.1 */
	assert_int_equal(jint(result(), "total_cents"), 100);
	/* no promo: no discount; order ids differ */
	add("c3", "u2", "b", 1);
	OK("Checkout", "{\"userId\":\"u2\",\"cartId\":\"c3\"}");
	assert_int_equal(jint(result(), "discount_cents"), 0);
	assert_int_equal(jint(result(), "total_cents"), 1501);
	assert_string_not_equal(jstr(result(), "orderId"), order_id);
	assert_int_equal(
	    query("order", "orderId", jstr(result(), "orderId"), NULL), 0);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(g_ans, "promoCode")));
	assert_int_equal(query("order", "orderId", "o-nope", NULL),
	                 CLEAVE_ENOTFOUND);
	assert_string_equal(g_code, "order_not_found");
	assert_int_equal(sql_int("SELECT uses FROM promos WHERE code='P90'"),
	                 1);
}

static void test_checkout_failure_changes_nothing(void **state)
{
	user("u1", "FR");
	product("a", "Apple", "fruit", 200, 5);
	product("b", "Bean", "veg", 300, 1);
	OK("CreatePromo", "{\"code\":\"ONCE\",\"percent_off\":50,"
	                  "\"max_uses\":1,\"expires_at\":4102444800}");
	add("c1", "u1", "a", 2);
	add("c1", "u1", "b", 2); /* only 1 in stock */
	int64_t head = cleave_log_head(g_e);
	FAILS(CLEAVE_EREJECTED, "out_of_stock", "Checkout",
	      "{\"userId\":\"u1\",\"cartId\":\"c1\",\"promoCode\":\"ONCE\"}");
	assert_non_null(strstr(g_msg, "b"));
	/* nothing written: no event, stock, cart, promo, order as before */
	assert_int_equal(cleave_log_head(g_e), head);
	assert_int_equal(sql_int("SELECT stock FROM inventory WHERE "
	                         "product_id='a'"),
	                 5);
	assert_int_equal(
	    sql_int("SELECT count(*) FROM cart_lines WHERE cart_id='c1'"), 2);
	assert_int_equal(sql_int("SELECT status = 'open' FROM carts"), 1);
	assert_int_equal(sql_int("SELECT uses FROM promos"), 0);
	assert_int_equal(sql_int("SELECT count(*) FROM orders"), 0);
	assert_int_equal(sql_int("SELECT value FROM shop_sequences"), 0);
	assert_int_equal(card("a", "stock"), 5);

	/* after a restock the same cart checks out, with the promo */
	OK("Restock", "{\"productId\":\"b\",\"quantity\":1}");
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"c1\","
	               "\"promoCode\":\"ONCE\"}");
	assert_string_equal(jstr(result(), "orderId"), "o-00000001");
	assert_int_equal(jint(result(), "total_cents"), 500); /* 1000 - 500 */
	assert_int_equal(card("b", "stock"), 0);
	assert_int_equal(query("product", "productId", "b", NULL), 0);
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(g_ans, "in_stock")));
}

/* ---- cancellation through every read model ------------------------------ */

static void test_cancel(void **state)
{
	char day[11], o1[32], o2[32];
	user("u1", "DE");
	user("u2", "DE");
	product("a", "Apple", "fruit", 1000, 10);
	product("b", "Bean", "veg", 250, 10);
	add("c1", "u1", "a", 2);
	add("c1", "u1", "b", 4);
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"c1\"}");
	snprintf(o1, sizeof(o1), "%s", jstr(result(), "orderId"));
	add("c2", "u2", "a", 1);
	OK("Checkout", "{\"userId\":\"u2\",\"cartId\":\"c2\"}");
	snprintf(o2, sizeof(o2), "%s", jstr(result(), "orderId"));

	assert_int_equal(query("order", "orderId", o1, NULL), 0);
	int64_t placed_at = jint(g_ans, "placed_at");
	utc_day(placed_at, day);
	assert_int_equal(query("revenue_daily", "country", "DE", "from", day,
	                       "to", day, NULL),
	                 0);
	const cJSON *days = cJSON_GetObjectItem(g_ans, "days");
	assert_int_equal(cJSON_GetArraySize(days), 1);
	assert_string_equal(jstr(cJSON_GetArrayItem(days, 0), "day"), day);
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "orders"), 2);
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "revenue_cents"),
	                 4000);
	assert_int_equal(query("top_products", NULL), 0);
	const cJSON *items = cJSON_GetObjectItem(g_ans, "items");
	assert_int_equal(cJSON_GetArraySize(items), 2);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "productId"),
	                    "b");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "sold"), 4);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "name"), "Bean");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 1), "sold"), 3);

	OK("CancelOrder", "{\"orderId\":\"%s\"}", o1);
	assert_string_equal(jstr(result(), "status"), "cancelled");
	FAILS(CLEAVE_EREJECTED, "order_cancelled", "CancelOrder",
	      "{\"orderId\":\"%s\"}", o1);
	FAILS(CLEAVE_ENOTFOUND, "order_not_found", "CancelOrder",
	      "{\"orderId\":\"o-ffffffff\"}");

	/* restocked, sold net of the cancellation */
	assert_int_equal(sql_int("SELECT stock FROM inventory WHERE "
	                         "product_id='a'"),
	                 9);
	assert_int_equal(card("a", "stock"), 9);
	assert_int_equal(card("a", "sold"), 1);
	assert_int_equal(card("b", "stock"), 10);
	assert_int_equal(card("b", "sold"), 0);
	/* the order document and the user's list say cancelled */
	assert_int_equal(query("order", "orderId", o1, NULL), 0);
	assert_string_equal(jstr(g_ans, "status"), "cancelled");
	assert_true(jint(g_ans, "cancelled_at") >= placed_at);
	assert_int_equal(query("user_orders", "userId", "u1", NULL), 0);
	items = cJSON_GetObjectItem(g_ans, "items");
	assert_int_equal(cJSON_GetArraySize(items), 1);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "status"),
	                    "cancelled");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "total_cents"),
	                 3000);
	assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "placed_at"),
	                 placed_at);
	/* revenue: one order, 1000, on the day it was placed */
	assert_int_equal(query("revenue_daily", "country", "DE", "from", day,
	                       "to", day, NULL),
	                 0);
	days = cJSON_GetObjectItem(g_ans, "days");
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "orders"), 1);
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "revenue_cents"),
	                 1000);
	/* the leaderboard drops b (sold 0) */
	assert_int_equal(query("top_products", NULL), 0);
	items = cJSON_GetObjectItem(g_ans, "items");
	assert_int_equal(cJSON_GetArraySize(items), 1);
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "productId"),
	                    "a");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "sold"), 1);
	/* search reflects it too */
	assert_int_equal(query("search_products", "sort", "sold", NULL), 0);
	items = cJSON_GetObjectItem(g_ans, "items");
	assert_string_equal(jstr(cJSON_GetArrayItem(items, 0), "productId"),
	                    "a");
	assert_int_equal(jint(cJSON_GetArrayItem(items, 0), "sold"), 1);
	assert_int_equal(jint(cJSON_GetArrayItem(items, 1), "stock"), 10);

	/* cancelling the other leaves a day with 0 and 0 */
	OK("CancelOrder", "{\"orderId\":\"%s\"}", o2);
	assert_int_equal(query("revenue_daily", "country", "DE", "from", day,
	                       "to", day, NULL),
	                 0);
	days = cJSON_GetObjectItem(g_ans, "days");
	assert_int_equal(cJSON_GetArraySize(days), 1);
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "orders"), 0);
	assert_int_equal(jint(cJSON_GetArrayItem(days, 0), "revenue_cents"), 0);
	assert_int_equal(query("top_products", NULL), 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 0);
}

/* ---- queries: pages, ranges, leaderboard -------------------------------- */

static void test_user_orders_pages(void **state)
{
	char cart[16], ids[7][32];
	user("u1", "SE");
	product("a", "Apple", "fruit", 100, 100);
	for (int i = 0; i < 7; i++) {
		snprintf(cart, sizeof(cart), "c%d", i);
		add(cart, "u1", "a", i + 1);
		OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"%s\"}", cart);
		snprintf(ids[i], sizeof(ids[i]), "%s",
		         jstr(result(), "orderId"));
	}
	char cursor[64] = "";
	int seen = 0;
	for (int page = 0; page < 4; page++) {
		if (page == 0)
			assert_int_equal(query("user_orders", "userId", "u1",
			                       "limit", "3", NULL),
			                 0);
		else
			assert_int_equal(query("user_orders", "userId", "u1",
			                       "limit", "3", "cursor", cursor,
			                       NULL),
			                 0);
		const cJSON *items = cJSON_GetObjectItem(g_ans, "items");
		const cJSON *it;
		cJSON_ArrayForEach(it, items)
		{
			/* newest first */
			assert_string_equal(jstr(it, "orderId"), ids[6 - seen]);
			assert_int_equal(jint(it, "total_cents"),
			                 (7 - seen) * 100);
			assert_string_equal(jstr(it, "status"), "placed");
			seen++;
		}
		const cJSON *nc = cJSON_GetObjectItem(g_ans, "next_cursor");
		if (cJSON_IsNull(nc))
			break;
		snprintf(cursor, sizeof(cursor), "%s", nc->valuestring);
	}
	assert_int_equal(seen, 7);
	/* exactly a page: no dangling cursor */
	assert_int_equal(
	    query("user_orders", "userId", "u1", "limit", "7", NULL), 0);
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(g_ans, "next_cursor")));
	assert_int_equal(query("user_orders", "userId", "nobody", NULL), 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 0);
	assert_int_equal(
	    query("user_orders", "userId", "u1", "cursor", "x1", NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(
	    query("user_orders", "userId", "u1", "limit", "0", NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(
	    query("user_orders", "userId", "u1", "limit", "101", NULL),
	    CLEAVE_EINVAL);
	assert_int_equal(query("user_orders", NULL), CLEAVE_EINVAL);
}

static void test_revenue_params(void **state)
{
	user("u1", "US");
	user("u2", "CA");
	product("a", "Apple", "fruit", 100, 100);
	add("c1", "u1", "a", 2);
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"c1\"}");
	add("c2", "u2", "a", 5);
	OK("Checkout", "{\"userId\":\"u2\",\"cartId\":\"c2\"}");
	char day[11];
	assert_int_equal(query("order", "orderId", "o-00000001", NULL), 0);
	utc_day(jint(g_ans, "placed_at"), day);
	/* a year around today: only the day with orders, per country */
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2000-01-01", "to", "2000-12-31", NULL),
	                 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "days")),
	                 0);
	assert_int_equal(query("revenue_daily", "country", "US", "from", day,
	                       "to", day, NULL),
	                 0);
	const cJSON *d0 =
	    cJSON_GetArrayItem(cJSON_GetObjectItem(g_ans, "days"), 0);
	assert_int_equal(jint(d0, "revenue_cents"), 200);
	assert_int_equal(query("revenue_daily", "country", "CA", "from", day,
	                       "to", day, NULL),
	                 0);
	d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(g_ans, "days"), 0);
	assert_int_equal(jint(d0, "revenue_cents"), 500);
	assert_int_equal(query("revenue_daily", "country", "DE", "from", day,
	                       "to", day, NULL),
	                 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "days")),
	                 0);
	/* 366 days is the most; 2024 is a leap year */
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2024-01-01", "to", "2024-12-31", NULL),
	                 0);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2023-01-01", "to", "2024-01-01", NULL),
	                 0);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2024-01-01", "to", "2025-01-01", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2023-01-01", "to", "2024-01-02", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2024-02-02", "to", "2024-02-01", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2023-02-29", "to", "2023-03-01", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "country", "US", "from",
	                       "2023-1-01", "to", "2023-03-01", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "country", "ZZ", "from",
	                       "2023-01-01", "to", "2023-03-01", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("revenue_daily", "from", "2023-01-01", "to",
	                       "2023-03-01", NULL),
	                 CLEAVE_EINVAL);
}

static void test_top_products(void **state)
{
	char id[16], cart[16];
	user("u1", "IT");
	/* p0..p5 sold 0,5,5,3,1,9: order 9(p5) 5(p1) 5(p2) 3 1 */
	static const int sold[] = {0, 5, 5, 3, 1, 9};
	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "p%d", i);
		product(id, "Thing", "c", 10, 100);
	}
	for (int i = 0; i < 6; i++) {
		if (!sold[i])
			continue;
		snprintf(id, sizeof(id), "p%d", i);
		snprintf(cart, sizeof(cart), "c%d", i);
		add(cart, "u1", id, sold[i]);
		OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"%s\"}", cart);
	}
	assert_int_equal(query("top_products", NULL), 0);
	const cJSON *items = cJSON_GetObjectItem(g_ans, "items");
	static const char *const order[] = {"p5", "p1", "p2", "p3", "p4"};
	assert_int_equal(cJSON_GetArraySize(items), 5);
	for (int i = 0; i < 5; i++)
		assert_string_equal(
		    jstr(cJSON_GetArrayItem(items, i), "productId"), order[i]);
	assert_int_equal(query("top_products", "limit", "2", NULL), 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 2);
	assert_int_equal(query("top_products", "limit", "0", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("top_products", "limit", "abc", NULL),
	                 CLEAVE_EINVAL);
}

/* ---- search ------------------------------------------------------------- */

#define NP 40

typedef struct sp {
	char id[16], name[64], cat[16];
	int64_t price, stock, sold;
} sp;
static sp g_sp[NP];

static void search_fixture(void)
{
	static const char *const cats[] = {"kitchen", "garden", "office"};
	static const char *const words[] = {"steel", "wooden", "red", "blue"};
	user("u1", "NL");
	for (int i = 0; i < NP; i++) {
		sp *p = &g_sp[i];
		snprintf(p->id, sizeof(p->id), "s%02d", (i * 7) % NP);
		snprintf(p->name, sizeof(p->name), "%s %s %d", words[i % 4],
		         i % 3 == 0 ? "Lamp" : "Chair", i);
		snprintf(p->cat, sizeof(p->cat), "%s", cats[i % 3]);
		p->price = 100 + (i % 5) * 50; /* many ties */
		p->stock = i % 4 == 0 ? 0 : 10;
		p->sold = 0;
		OK("AddProduct",
		   "{\"productId\":\"%s\",\"name\":\"%s\",\"category\":\"%s\","
		   "\"price_cents\":%lld,\"stock\":%lld,"
		   "\"description\":\"%s\"}",
		   p->id, p->name, p->cat, (long long)p->price,
		   (long long)p->stock, i % 2 ? "Sturdy and élégant" : "plain");
	}
	/* sales: s-products with stock get i % 3 units */
	for (int i = 0; i < NP; i++) {
		sp *p = &g_sp[i];
		if (!p->stock || !(i % 3))
			continue;
		char cart[16];
		snprintf(cart, sizeof(cart), "k%d", i);
		add(cart, "u1", p->id, i % 3);
		OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"%s\"}", cart);
		p->stock -= i % 3;
		p->sold = i % 3;
	}
}

/* Pages through search_products with extra params; checks that items come
 * in `cmp` order, without duplicates, and returns how many matched. */
static int page_all(const char *sort, int limit, const char *const *extra,
                    int nextra, bool (*match)(const sp *), bool check_order)
{
	char cursor[512] = "", lim[16];
	char seen_ids[NP][16];
	int seen = 0;
	snprintf(lim, sizeof(lim), "%d", limit);
	int64_t prev_v = 0;
	char prev_id[16] = "";
	for (int page = 0; page < NP + 2; page++) {
		cleave_param p[16];
		int n = 0;
		p[n++] = (cleave_param){"limit", lim};
		if (sort)
			p[n++] = (cleave_param){"sort", sort};
		if (page)
			p[n++] = (cleave_param){"cursor", cursor};
		for (int i = 0; i < nextra; i += 2)
			p[n++] = (cleave_param){extra[i], extra[i + 1]};
		TU_OK(cleave_wait_position(g_e, NULL, 0, g_pos, 5000));
		cleave_answer a;
		TU_OK(cleave_query_run(g_e, "search_products", p, n, &a));
		if (a.rc)
			fail_msg("search: %s", a.body);
		cJSON_Delete(g_ans);
		g_ans = cJSON_Parse(a.body);
		cleave_answer_free(&a);
		const cJSON *items = cJSON_GetObjectItem(g_ans, "items");
		assert_true(cJSON_GetArraySize(items) <= limit);
		const cJSON *it;
		cJSON_ArrayForEach(it, items)
		{
			const char *id = jstr(it, "productId");
			const sp *x = NULL;
			for (int i = 0; i < NP; i++)
				if (!strcmp(g_sp[i].id, id))
					x = &g_sp[i];
			assert_non_null(x);
			assert_true(match(x));
			assert_int_equal(jint(it, "price_cents"), x->price);
			assert_int_equal(jint(it, "stock"), x->stock);
			assert_int_equal(jint(it, "sold"), x->sold);
			assert_string_equal(jstr(it, "category"), x->cat);
			for (int i = 0; i < seen; i++)
				assert_string_not_equal(seen_ids[i], id);
			int64_t v = !sort || !strcmp(sort, "price") ||
			                    !strcmp(sort, "-price")
			                ? x->price
			                : x->sold;
			if (check_order && seen) {
				int d = 0;
				if (!sort || !strcmp(sort, "price"))
					d = v > prev_v   ? 1
					    : v < prev_v ? -1
					                 : 0;
				else
					d = v < prev_v   ? 1
					    : v > prev_v ? -1
					                 : 0;
				assert_true(d > 0 || (d == 0 &&
				                      strcmp(id, prev_id) > 0));
			}
			prev_v = v;
			snprintf(prev_id, sizeof(prev_id), "%s", id);
			snprintf(seen_ids[seen++], 16, "%s", id);
		}
		const cJSON *nc = cJSON_GetObjectItem(g_ans, "next_cursor");
		if (cJSON_IsNull(nc))
			return seen;
		assert_true(cJSON_IsString(nc));
		assert_int_equal(cJSON_GetArraySize(items), limit);
		snprintf(cursor, sizeof(cursor), "%s", nc->valuestring);
	}
	fail_msg("paging did not end");
	return -1;
}

static int count_matching(bool (*match)(const sp *))
{
	int n = 0;
	for (int i = 0; i < NP; i++)
		n += match(&g_sp[i]);
	return n;
}

static bool m_all(const sp *p)
{
	return true;
}
static bool m_lamp(const sp *p)
{
	return strstr(p->name, "Lamp") != NULL;
}
static bool m_red_lamp(const sp *p)
{
	return strstr(p->name, "Lamp") && strstr(p->name, "red");
}
static bool m_kitchen_in_stock_mid(const sp *p)
{
	return !strcmp(p->cat, "kitchen") && p->stock > 0 && p->price >= 150 &&
	       p->price <= 250;
}
static bool m_out_of_stock(const sp *p)
{
	return p->stock == 0;
}
static bool m_garden_word(const sp *p)
{
	return !strcmp(p->cat, "garden");
}

static void test_search(void **state)
{
	search_fixture();
	static const char *const sorts[] = {NULL, "price", "-price", "sold"};
	for (int s = 0; s < 4; s++)
		for (int lim = 1; lim <= 8; lim += 7) {
			assert_int_equal(
			    page_all(sorts[s], lim, NULL, 0, m_all, true), NP);
		}
	/* relevance without q (productId order) and with q (offset pages) */
	assert_int_equal(page_all("relevance", 6, NULL, 0, m_all, false), NP);
	static const char *const q_lamp[] = {"q", "lamp"};
	assert_int_equal(page_all(NULL, 4, q_lamp, 2, m_lamp, false),
	                 count_matching(m_lamp));
	assert_int_equal(page_all("relevance", 3, q_lamp, 2, m_lamp, false),
	                 count_matching(m_lamp));
	assert_int_equal(page_all("price", 3, q_lamp, 2, m_lamp, true),
	                 count_matching(m_lamp));
	static const char *const q_red_lamp[] = {"q", "LAMP, red!"};
	assert_int_equal(page_all("-price", 2, q_red_lamp, 2, m_red_lamp, true),
	                 count_matching(m_red_lamp));
	static const char *const filt[] = {"category",  "kitchen",   "in_stock",
	                                   "true",      "min_price", "150",
	                                   "max_price", "250"};
	assert_int_equal(
	    page_all("price", 2, filt, 8, m_kitchen_in_stock_mid, true),
	    count_matching(m_kitchen_in_stock_mid));
	static const char *const oos[] = {"in_stock", "0"};
	assert_int_equal(page_all("sold", 5, oos, 2, m_out_of_stock, true),
	                 count_matching(m_out_of_stock));
	/* the category is searchable text too; accents fold */
	static const char *const q_garden[] = {"q", "garden"};
	assert_int_equal(
	    page_all("price", 50, q_garden, 2, m_garden_word, true),
	    count_matching(m_garden_word));
	assert_int_equal(query("search_products", "q", "elegant", NULL), 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 20);

	/* user text is never FTS5 syntax */
	static const char *const nasty[] = {"\"",
	                                    "lamp*",
	                                    "NEAR(lamp red)",
	                                    "lamp OR chair",
	                                    "-lamp",
	                                    "name:lamp",
	                                    "^lamp",
	                                    "lamp\"\"",
	                                    "(",
	                                    "AND",
	                                    "*"};
	for (size_t i = 0; i < sizeof(nasty) / sizeof(*nasty); i++)
		assert_int_equal(query("search_products", "q", nasty[i], NULL),
		                 0);
	assert_int_equal(query("search_products", "q", "!!!", NULL), 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 0);
	/* "lamp OR chair" means all three words: none has "or" */
	assert_int_equal(query("search_products", "q", "lamp OR chair", NULL),
	                 0);
	assert_int_equal(
	    cJSON_GetArraySize(cJSON_GetObjectItem(g_ans, "items")), 0);

	/* bad parameters: 400 */
	assert_int_equal(query("search_products", "sort", "name", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "limit", "0", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "limit", "101", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "in_stock", "yes", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "min_price", "-1", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "cursor", "zz", NULL),
	                 CLEAVE_EINVAL);
	assert_int_equal(query("search_products", "cursor", "7031", NULL),
	                 CLEAVE_EINVAL);
	/* a cursor belongs to its sort */
	assert_int_equal(
	    query("search_products", "sort", "price", "limit", "2", NULL), 0);
	char cur[256];
	snprintf(cur, sizeof(cur), "%s", jstr(g_ans, "next_cursor"));
	assert_int_equal(
	    query("search_products", "sort", "price", "cursor", cur, NULL), 0);
	assert_int_equal(
	    query("search_products", "sort", "sold", "cursor", cur, NULL),
	    CLEAVE_EINVAL);
	assert_string_equal(g_code, "invalid_cursor");
	char words[400] = "";
	for (int i = 0; i < 17; i++)
		strcat(words, "w ");
	assert_int_equal(query("search_products", "q", words, NULL),
	                 CLEAVE_EINVAL);
}

/* ---- rebuilds reproduce the read models --------------------------------- */

/* Closes and reopens the engine on the same data directory. */
static void reopen(void)
{
	cleave_config cfg = {0};
	cleave_engine_close(g_e);
	cfg.domain = cleave_domain_find("shop");
	cfg.data_dir = g_dir;
	cfg.durability = CLEAVE_DURABILITY_OS;
	TU_OK(cleave_engine_open(&cfg, &g_e));
}

static void test_rebuild_and_verify(void **state)
{
	search_fixture();
	OK("CreatePromo", "{\"code\":\"R\",\"percent_off\":33,"
	                  "\"max_uses\":9,\"expires_at\":4102444800}");
	add("z1", "u1", "s01", 1);
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"z1\","
	               "\"promoCode\":\"R\"}");
	OK("CancelOrder", "{\"orderId\":\"%s\"}", jstr(result(), "orderId"));
	int64_t orders = sql_int("SELECT value FROM shop_sequences");
	TU_OK(cleave_wait_position(g_e, NULL, 0, g_pos, 5000));
	char *before = query_text("product", "productId", "s01");
	static const char *const projs[] = {"catalog", "search", "orders",
	                                    "revenue", "bestsellers"};
	for (int i = 0; i < 5; i++) {
		int64_t ndiff = -1, at = 0;
		TU_OK(cleave_projection_verify(g_e, projs[i], NULL, NULL,
		                               &ndiff, &at));
		if (ndiff)
			fail_msg("%s: %lld differences", projs[i],
			         (long long)ndiff);
		TU_OK(cleave_projection_rebuild(g_e, projs[i]));
		TU_OK(cleave_projection_wait_rebuilt(g_e, projs[i], 10000));
		/* A reopen between rebuilds: the switch's catalog write has
		 * finished (see the report on runner.c catalog_save), and
		 * the copies — search's setup included — open again. */
		reopen();
	}
	char *after = query_text("product", "productId", "s01");
	assert_string_equal(before, after);
	free(before);
	free(after);
	assert_int_equal(page_all("sold", 7, NULL, 0, m_all, true), NP);
	/* the write side goes on where it was */
	add("z2", "u1", "s01", 1);
	OK("Checkout", "{\"userId\":\"u1\",\"cartId\":\"z2\"}");
	char want[32];
	snprintf(want, sizeof(want), "o-%08llx",
	         (unsigned long long)orders + 1);
	assert_string_equal(jstr(result(), "orderId"), want);
	assert_int_equal(query("order", "orderId", want, NULL), 0);
}

/* The projections' direct JSON writer gives the bytes the cJSON tree
 * printer gives for the same document: stored documents must not change
 * with the way they are built (verify compares bytes). */
static void test_json_writer(void **state)
{
	(void)state;
	const char *odd = "q\"b\\s/\n\r\t\b\f\x01\x1f é €";
	cJSON *o = cJSON_CreateObject(), *arr;
	assert_non_null(o);
	cJSON_AddStringToObject(o, "id", "o-1");
	cJSON_AddStringToObject(o, odd, odd);
	arr = cJSON_AddArrayToObject(o, "lines");
	for (int i = 0; i < 3; i++) {
		cJSON *x = cJSON_CreateObject();
		cJSON_AddItemToArray(arr, x);
		cJSON_AddStringToObject(x, "p", i ? "b" : "a");
		dom_add_int(x, "n", i == 2 ? -DOM_EXACT_MAX : i - 1);
		dom_add_int(x, "m", DOM_EXACT_MAX);
	}
	cJSON_AddArrayToObject(o, "empty");
	cJSON_AddNullToObject(o, "none");
	dom_add_int(o, "zero", 0);
	size_t n1, n2;
	char *want = dom_print(o, &n1);
	cJSON_Delete(o);
	cleave_jw w = CLEAVE_JW_INIT;
	cleave_jw_open(&w, '{');
	cleave_jw_key(&w, "id");
	cleave_jw_str(&w, "o-1");
	cleave_jw_key(&w, odd);
	cleave_jw_str(&w, odd);
	cleave_jw_key(&w, "lines");
	cleave_jw_open(&w, '[');
	for (int i = 0; i < 3; i++) {
		cleave_jw_open(&w, '{');
		cleave_jw_key(&w, "p");
		cleave_jw_str(&w, i ? "b" : "a");
		cleave_jw_key(&w, "n");
		cleave_jw_int(&w, i == 2 ? -DOM_EXACT_MAX : i - 1);
		cleave_jw_key(&w, "m");
		cleave_jw_int(&w, DOM_EXACT_MAX);
		cleave_jw_close(&w, '}');
	}
	cleave_jw_close(&w, ']');
	cleave_jw_key(&w, "empty");
	cleave_jw_open(&w, '[');
	cleave_jw_close(&w, ']');
	cleave_jw_key(&w, "none");
	cleave_jw_str(&w, NULL);
	cleave_jw_key(&w, "zero");
	cleave_jw_int(&w, 0);
	cleave_jw_close(&w, '}');
	char *got = cleave_jw_done(&w, &n2);
	assert_non_null(want);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(n1, n2);
	free(want);
	free(got);
	/* past 2^53 the writer stays exact */
	cleave_jw x = CLEAVE_JW_INIT;
	cleave_jw_open(&x, '[');
	cleave_jw_int(&x, INT64_MIN);
	cleave_jw_int(&x, INT64_MAX);
	cleave_jw_close(&x, ']');
	got = cleave_jw_done(&x, &n2);
	assert_string_equal(got, "[-9223372036854775808,9223372036854775807]");
	free(got);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_writer),
	    cmocka_unit_test_setup_teardown(test_users, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_products, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_promos, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cart_rules, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_checkout_promo_math, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_checkout_failure_changes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_user_orders_pages, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_revenue_params, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_top_products, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_search, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rebuild_and_verify, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
