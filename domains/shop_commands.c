/*
 * shop_commands.c — the shop's write side for users, products and promos,
 * and the table of every shop command (the order lifecycle — AddToCart,
 * Checkout, CancelOrder — lives in shop_checkout.c).
 *
 * Field tables reject bad input before a handler runs (400 naming the
 * field).  Handlers check the business rules of docs/domains.md against the
 * write tables, change them, and emit one event each.  Every failure path
 * returns the code given to cleave_cmd_fail (or the store's error), so the
 * engine rolls the command's savepoint back: a rejected command changes
 * nothing.  Rule checks come before the first write, in the order
 * docs/domains.md lists them.
 *
 * Status codes:  400 CLEAVE_EINVAL (a country outside ISO 3166-1),
 * 404 CLEAVE_ENOTFOUND (unknown user, product, cart, order),
 * 409 CLEAVE_EEXIST (duplicate userId, productId, promo code),
 * 422 CLEAVE_EREJECTED (a rule said no; the code says which).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dom.h"
#include "iso.h"
#include "shop.h"

/* ---- helpers ------------------------------------------------------------ */

/* Sets {"<name>": id} as the result. */
static int result_id(cleave_cmd *c, const char *name, const char *id)
{
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, name, id)) {
		cJSON_Delete(r);
		return dom_oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- RegisterUser ------------------------------------------------------- */

static const cleave_field register_user_fields[] = {
    {"userId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"name", CLEAVE_F_STRING, true, 0, 0, SHOP_NAME_MAX, NULL},
    {"country", CLEAVE_F_STRING, true, 0, 0, 2, "upper"},
    {NULL},
};

static int register_user(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "userId"),
	           *name = cleave_json_str(in, "name");
	const char *country = cleave_json_str(in, "country");
	int64_t now = dom_now_s(c);
	if (!iso_country_ok(country))
		return cleave_cmd_fail(c, CLEAVE_EINVAL, "invalid_country",
		                       "field 'country' must be an ISO 3166-1 "
		                       "alpha-2 code; '%s' is not one",
		                       country);
	cleave_value a[] = {cleave_text(id), cleave_text(name),
	                    cleave_text(country), cleave_int(now)};
	int rc = cleave_cmd_exec(c,
	                         "INSERT INTO users (user_id, name, country,"
	                         " registered_at) VALUES (?, ?, ?, ?)",
	                         a, 4, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "user_exists",
		                       "user '%s' already exists", id);
	if (rc)
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "userId", id) &&
	          cJSON_AddStringToObject(d, "name", name) &&
	          cJSON_AddStringToObject(d, "country", country) &&
	          cJSON_AddNumberToObject(d, "registered_at", (double)now);
	if ((rc = dom_emit(c, "user", id, "UserRegistered", d, ok)))
		return rc;
	return result_id(c, "userId", id);
}

/* ---- AddProduct --------------------------------------------------------- */

static const cleave_field add_product_fields[] = {
    {"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"name", CLEAVE_F_STRING, true, 0, 0, SHOP_NAME_MAX, NULL},
    {"category", CLEAVE_F_STRING, true, 0, 0, SHOP_CATEGORY_MAX, NULL},
    {"price_cents", CLEAVE_F_INT, true, 1, SHOP_PRICE_MAX, 0, NULL},
    {"stock", CLEAVE_F_INT, true, 0, SHOP_STOCK_MAX, 0, NULL},
    {"description", CLEAVE_F_STRING, false, 0, 0, SHOP_DESCRIPTION_MAX, NULL},
    {NULL},
};

static int add_product(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "productId"),
	           *name = cleave_json_str(in, "name");
	const char *cat = cleave_json_str(in, "category");
	const char *desc = cleave_json_str(in, "description");
	int64_t price = cleave_json_int(in, "price_cents", 0);
	int64_t stock = cleave_json_int(in, "stock", 0);
	int rc;
	if (!desc)
		desc = "";
	cleave_value a[] = {cleave_text(id),   cleave_text(name),
	                    cleave_text(cat),  cleave_text(desc),
	                    cleave_int(price), cleave_int(dom_now_s(c))};
	rc = cleave_cmd_exec(c,
	                     "INSERT INTO products (product_id, name, category,"
	                     " description, price_cents, added_at)"
	                     " VALUES (?, ?, ?, ?, ?, ?)",
	                     a, 6, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "product_exists",
		                       "product '%s' already exists", id);
	if (rc)
		return rc;
	cleave_value b[] = {cleave_text(id), cleave_int(stock)};
	if ((rc = cleave_cmd_exec(c,
	                          "INSERT INTO inventory (product_id, stock)"
	                          " VALUES (?, ?)",
	                          b, 2, NULL)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "productId", id) &&
	          cJSON_AddStringToObject(d, "name", name) &&
	          cJSON_AddStringToObject(d, "category", cat) &&
	          cJSON_AddStringToObject(d, "description", desc) &&
	          cJSON_AddNumberToObject(d, "price_cents", (double)price) &&
	          cJSON_AddNumberToObject(d, "stock", (double)stock);
	if ((rc = dom_emit(c, "product", id, "ProductAdded", d, ok)))
		return rc;
	return result_id(c, "productId", id);
}

/* ---- ChangePrice -------------------------------------------------------- */

static const cleave_field change_price_fields[] = {
    {"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"price_cents", CLEAVE_F_INT, true, 1, SHOP_PRICE_MAX, 0, NULL},
    {NULL},
};

static int change_price(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "productId");
	int64_t price = cleave_json_int(in, "price_cents", 0), old;
	cleave_value a[] = {cleave_text(id)};
	int rc = cleave_cmd_query_int(
	    c, "SELECT price_cents FROM products WHERE product_id = ?", a, 1,
	    &old);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "product_not_found",
		                       "no product '%s'", id);
	if (rc)
		return rc;
	cleave_value b[] = {cleave_int(price), cleave_text(id)};
	if ((rc = cleave_cmd_exec(c,
	                          "UPDATE products SET price_cents = ?"
	                          " WHERE product_id = ?",
	                          b, 2, NULL)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "productId", id) &&
	          cJSON_AddNumberToObject(d, "old_price_cents", (double)old) &&
	          cJSON_AddNumberToObject(d, "price_cents", (double)price);
	if ((rc = dom_emit(c, "product", id, "PriceChanged", d, ok)))
		return rc;
	return result_id(c, "productId", id);
}

/* ---- Restock ------------------------------------------------------------ */

static const cleave_field restock_fields[] = {
    {"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"quantity", CLEAVE_F_INT, true, 1, SHOP_STOCK_MAX, 0, NULL},
    {NULL},
};

static int restock(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "productId");
	int64_t qty = cleave_json_int(in, "quantity", 0), stock;
	/* the rule and the change in one statement: no row comes back when
	 * the product is missing or the limit would be passed, and then
	 * nothing changed */
	cleave_value b[] = {cleave_int(qty), cleave_text(id), cleave_int(qty),
	                    cleave_int(SHOP_STOCK_MAX)};
	int rc = cleave_cmd_query_int(c,
	                              "UPDATE inventory SET stock = stock + ?"
	                              " WHERE product_id = ?"
	                              " AND stock + ? <= ? RETURNING stock",
	                              b, 4, &stock);
	if (rc == CLEAVE_ENOTFOUND) {
		cleave_value a[] = {cleave_text(id)};
		rc = cleave_cmd_query_int(
		    c, "SELECT stock FROM inventory WHERE product_id = ?", a, 1,
		    &stock);
		if (rc == CLEAVE_ENOTFOUND)
			return cleave_cmd_fail(c, rc, "product_not_found",
			                       "no product '%s'", id);
		if (rc)
			return rc;
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "stock_limit",
		                       "product '%s' has %" PRId64 " in stock; "
		                       "adding %" PRId64 " would pass the "
		                       "limit of %lld",
		                       id, stock, qty, SHOP_STOCK_MAX);
	}
	if (rc)
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "productId", id) &&
	          cJSON_AddNumberToObject(d, "quantity", (double)qty) &&
	          cJSON_AddNumberToObject(d, "stock", (double)stock);
	if ((rc = dom_emit(c, "product", id, "ProductRestocked", d, ok)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "productId", id) ||
	    !dom_add_int(r, "stock", stock)) {
		cJSON_Delete(r);
		return dom_oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- CreatePromo -------------------------------------------------------- */

static const cleave_field create_promo_fields[] = {
    {"code", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"percent_off", CLEAVE_F_INT, true, 1, SHOP_PERCENT_MAX, 0, NULL},
    {"max_uses", CLEAVE_F_INT, true, 1, SHOP_PROMO_USES_MAX, 0, NULL},
    {"expires_at", CLEAVE_F_INT, true, 0, SHOP_EXPIRES_MAX, 0, NULL},
    {NULL},
};

static int create_promo(cleave_cmd *c, const cJSON *in)
{
	const char *code = cleave_json_str(in, "code");
	int64_t pct = cleave_json_int(in, "percent_off", 0);
	int64_t max_uses = cleave_json_int(in, "max_uses", 0);
	int64_t expires = cleave_json_int(in, "expires_at", 0);
	cleave_value a[] = {cleave_text(code), cleave_int(pct),
	                    cleave_int(max_uses), cleave_int(expires)};
	int rc = cleave_cmd_exec(c,
	                         "INSERT INTO promos (code, percent_off,"
	                         " max_uses, uses, expires_at)"
	                         " VALUES (?, ?, ?, 0, ?)",
	                         a, 4, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "promo_exists",
		                       "promo code '%s' already exists", code);
	if (rc)
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "code", code) &&
	          cJSON_AddNumberToObject(d, "percent_off", (double)pct) &&
	          cJSON_AddNumberToObject(d, "max_uses", (double)max_uses) &&
	          cJSON_AddNumberToObject(d, "expires_at", (double)expires);
	if ((rc = dom_emit(c, "promo", code, "PromoCreated", d, ok)))
		return rc;
	return result_id(c, "code", code);
}

/* ---- the table ---------------------------------------------------------- */

const cleave_command_def shop_commands[] = {
    {"RegisterUser", register_user, register_user_fields,
     "register a user (userId, name, ISO country)"},
    {"AddProduct", add_product, add_product_fields,
     "add a product to the catalog with its opening stock"},
    {"ChangePrice", change_price, change_price_fields, "set a product's price"},
    {"Restock", restock, restock_fields, "add units to a product's stock"},
    {"CreatePromo", create_promo, create_promo_fields,
     "create a promo code (percent off, uses, expiry)"},
    {"AddToCart", shop_add_to_cart, shop_add_to_cart_fields,
     "add units of a product to a user's cart (opens it if new)"},
    {"Checkout", shop_checkout, shop_checkout_fields,
     "turn a cart into an order: stock, promo, totals"},
    {"CancelOrder", shop_cancel_order, shop_cancel_order_fields,
     "cancel a placed order and restock its units"},
    {NULL},
};
