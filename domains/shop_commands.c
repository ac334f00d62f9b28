/*
 * shop_commands.c — the shop's write side: declared fields and handlers.
 *
 * Field tables reject bad input before a handler runs (400 naming the
 * field).  Handlers apply the business rules of DESIGN §5 against the
 * write tables, change them, and emit one event each.  Every failure path
 * returns the code given to cleave_cmd_fail (or the store's error), so the
 * engine rolls the command's savepoint back: a rejected command changes
 * nothing.  Rule checks come before the first write, in the order DESIGN
 * lists them.
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

/* ---- small helpers ------------------------------------------------------- */

static int oom(cleave_cmd *c)
{
	return cleave_cmd_fail(c, CLEAVE_ENOMEM, NULL, "out of memory");
}

/* A declared string field (checked by the engine), or NULL when absent. */
static const char *in_str(const cJSON *in, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A declared integer field (checked: exact, within its range). */
static int64_t in_int(const cJSON *in, const char *name, int64_t dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(in, name);
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

static int64_t now_s(const cleave_cmd *c)
{
	int64_t us = cleave_cmd_time_us(c);
	return (us >= 0 ? us : us - 999999) / 1000000;
}

static void copy_text(cleave_rows *r, int col, char *out, size_t cap)
{
	size_t n = 0;
	const char *s = cleave_rows_text(r, col, &n);
	if (!s)
		n = 0;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, s ? s : "", n);
	out[n] = 0;
}

/* Emits `data` (owned in every case) on "<prefix>-<id>"; `built` false
 * means building it ran out of memory. */
static int emit(cleave_cmd *c, const char *prefix, const char *id,
		const char *type, cJSON *data, bool built)
{
	char stream[16 + SHOP_ID_MAX];
	if (!built) {
		cJSON_Delete(data);
		return oom(c);
	}
	snprintf(stream, sizeof(stream), "%s-%s", prefix, id);
	return cleave_cmd_emit(c, stream, type, data);
}

/* Sets {"<name>": id} as the result. */
static int result_id(cleave_cmd *c, const char *name, const char *id)
{
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, name, id)) {
		cJSON_Delete(r);
		return oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- RegisterUser ---------------------------------------------------------- */

static const cleave_field register_user_fields[] = {
	{"userId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"name", CLEAVE_F_STRING, true, 0, 0, SHOP_NAME_MAX, NULL},
	{"country", CLEAVE_F_STRING, true, 0, 0, 2, "upper"},
	{NULL},
};

static int register_user(cleave_cmd *c, const cJSON *in)
{
	const char *id = in_str(in, "userId"), *name = in_str(in, "name");
	const char *country = in_str(in, "country");
	int64_t now = now_s(c);
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
	bool ok = d &&
		  cJSON_AddStringToObject(d, "userId", id) &&
		  cJSON_AddStringToObject(d, "name", name) &&
		  cJSON_AddStringToObject(d, "country", country) &&
		  cJSON_AddNumberToObject(d, "registered_at", (double)now);
	if ((rc = emit(c, "user", id, "UserRegistered", d, ok)))
		return rc;
	return result_id(c, "userId", id);
}

/* ---- AddProduct ---------------------------------------------------------- */

static const cleave_field add_product_fields[] = {
	{"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"name", CLEAVE_F_STRING, true, 0, 0, SHOP_NAME_MAX, NULL},
	{"category", CLEAVE_F_STRING, true, 0, 0, SHOP_CATEGORY_MAX, NULL},
	{"price_cents", CLEAVE_F_INT, true, 1, SHOP_PRICE_MAX, 0, NULL},
	{"stock", CLEAVE_F_INT, true, 0, SHOP_STOCK_MAX, 0, NULL},
	{"description", CLEAVE_F_STRING, false, 0, 0, SHOP_DESCRIPTION_MAX,
	 NULL},
	{NULL},
};

static int add_product(cleave_cmd *c, const cJSON *in)
{
	const char *id = in_str(in, "productId"), *name = in_str(in, "name");
	const char *cat = in_str(in, "category");
	const char *desc = in_str(in, "description");
	int64_t price = in_int(in, "price_cents", 0);
	int64_t stock = in_int(in, "stock", 0);
	int rc;
	if (!desc)
		desc = "";
	cleave_value a[] = {cleave_text(id),	 cleave_text(name),
			    cleave_text(cat),	 cleave_text(desc),
			    cleave_int(price), cleave_int(now_s(c))};
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
	bool ok = d &&
		  cJSON_AddStringToObject(d, "productId", id) &&
		  cJSON_AddStringToObject(d, "name", name) &&
		  cJSON_AddStringToObject(d, "category", cat) &&
		  cJSON_AddStringToObject(d, "description", desc) &&
		  cJSON_AddNumberToObject(d, "price_cents", (double)price) &&
		  cJSON_AddNumberToObject(d, "stock", (double)stock);
	if ((rc = emit(c, "product", id, "ProductAdded", d, ok)))
		return rc;
	return result_id(c, "productId", id);
}

/* ---- ChangePrice ----------------------------------------------------------- */

static const cleave_field change_price_fields[] = {
	{"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"price_cents", CLEAVE_F_INT, true, 1, SHOP_PRICE_MAX, 0, NULL},
	{NULL},
};

static int change_price(cleave_cmd *c, const cJSON *in)
{
	const char *id = in_str(in, "productId");
	int64_t price = in_int(in, "price_cents", 0), old;
	cleave_value a[] = {cleave_text(id)};
	int rc = cleave_cmd_query_int(
		c, "SELECT price_cents FROM products WHERE product_id = ?", a,
		1, &old);
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
	bool ok = d &&
		  cJSON_AddStringToObject(d, "productId", id) &&
		  cJSON_AddNumberToObject(d, "old_price_cents", (double)old) &&
		  cJSON_AddNumberToObject(d, "price_cents", (double)price);
	if ((rc = emit(c, "product", id, "PriceChanged", d, ok)))
		return rc;
	return result_id(c, "productId", id);
}

/* ---- Restock ------------------------------------------------------------- */

static const cleave_field restock_fields[] = {
	{"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"quantity", CLEAVE_F_INT, true, 1, SHOP_STOCK_MAX, 0, NULL},
	{NULL},
};

static int restock(cleave_cmd *c, const cJSON *in)
{
	const char *id = in_str(in, "productId");
	int64_t qty = in_int(in, "quantity", 0), stock;
	cleave_value a[] = {cleave_text(id)};
	int rc = cleave_cmd_query_int(
		c, "SELECT stock FROM inventory WHERE product_id = ?", a, 1,
		&stock);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "product_not_found",
				       "no product '%s'", id);
	if (rc)
		return rc;
	if (stock + qty > SHOP_STOCK_MAX)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "stock_limit",
				       "product '%s' has %" PRId64 " in stock; "
				       "adding %" PRId64 " would pass the "
				       "limit of %lld",
				       id, stock, qty, SHOP_STOCK_MAX);
	stock += qty;
	cleave_value b[] = {cleave_int(stock), cleave_text(id)};
	if ((rc = cleave_cmd_exec(c,
				  "UPDATE inventory SET stock = ?"
				  " WHERE product_id = ?",
				  b, 2, NULL)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d &&
		  cJSON_AddStringToObject(d, "productId", id) &&
		  cJSON_AddNumberToObject(d, "quantity", (double)qty) &&
		  cJSON_AddNumberToObject(d, "stock", (double)stock);
	if ((rc = emit(c, "product", id, "ProductRestocked", d, ok)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "productId", id) ||
	    !dom_add_int(r, "stock", stock)) {
		cJSON_Delete(r);
		return oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- CreatePromo ----------------------------------------------------------- */

static const cleave_field create_promo_fields[] = {
	{"code", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"percent_off", CLEAVE_F_INT, true, 1, SHOP_PERCENT_MAX, 0, NULL},
	{"max_uses", CLEAVE_F_INT, true, 1, SHOP_PROMO_USES_MAX, 0, NULL},
	{"expires_at", CLEAVE_F_INT, true, 0, SHOP_EXPIRES_MAX, 0, NULL},
	{NULL},
};

static int create_promo(cleave_cmd *c, const cJSON *in)
{
	const char *code = in_str(in, "code");
	int64_t pct = in_int(in, "percent_off", 0);
	int64_t max_uses = in_int(in, "max_uses", 0);
	int64_t expires = in_int(in, "expires_at", 0);
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
	bool ok = d &&
		  cJSON_AddStringToObject(d, "code", code) &&
		  cJSON_AddNumberToObject(d, "percent_off", (double)pct) &&
		  cJSON_AddNumberToObject(d, "max_uses", (double)max_uses) &&
		  cJSON_AddNumberToObject(d, "expires_at", (double)expires);
	if ((rc = emit(c, "promo", code, "PromoCreated", d, ok)))
		return rc;
	return result_id(c, "code", code);
}

/* ---- AddToCart ----------------------------------------------------------- */

static const cleave_field add_to_cart_fields[] = {
	{"cartId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"userId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"quantity", CLEAVE_F_INT, true, 1, SHOP_ADD_QTY_MAX, 0, NULL},
	{NULL},
};

/* The cart's owner and status: 0, CLEAVE_ENOTFOUND, or a store error. */
static int cart_get(cleave_cmd *c, const char *cart, char *owner,
		    size_t cap, bool *open)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(cart)};
	int rc = cleave_cmd_query(c,
				  "SELECT user_id, status FROM carts"
				  " WHERE cart_id = ?",
				  a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1) {
		size_t n;
		const char *st = cleave_rows_text(r, 1, &n);
		copy_text(r, 0, owner, cap);
		*open = st && n == 4 && !memcmp(st, "open", 4);
		rc = 0;
	} else if (rc == 0) {
		rc = CLEAVE_ENOTFOUND;
	}
	cleave_rows_close(r);
	return rc;
}

/* The cart may take `user`'s items: 0, or the 422 failure. */
static int cart_check(cleave_cmd *c, const char *cart, const char *user,
		      const char *owner, bool open)
{
	if (strcmp(owner, user))
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "cart_not_yours",
				       "cart '%s' belongs to another user",
				       cart);
	if (!open)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "cart_closed",
				       "cart '%s' was checked out and is "
				       "closed",
				       cart);
	return 0;
}

static int add_to_cart(cleave_cmd *c, const cJSON *in)
{
	const char *cart = in_str(in, "cartId"), *user = in_str(in, "userId");
	const char *product = in_str(in, "productId");
	int64_t qty = in_int(in, "quantity", 0), v, line_qty;
	char owner[SHOP_ID_MAX + 1];
	bool open = false, opened = false;
	cleave_value au[] = {cleave_text(user)};
	int rc = cleave_cmd_query_int(
		c, "SELECT 1 FROM users WHERE user_id = ?", au, 1, &v);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "user_not_found",
				       "no user '%s'", user);
	if (rc)
		return rc;
	cleave_value ap[] = {cleave_text(product)};
	rc = cleave_cmd_query_int(
		c, "SELECT 1 FROM products WHERE product_id = ?", ap, 1, &v);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "product_not_found",
				       "no product '%s'", product);
	if (rc)
		return rc;
	rc = cart_get(c, cart, owner, sizeof(owner), &open);
	if (rc == CLEAVE_ENOTFOUND) {
		cleave_value a[] = {cleave_text(cart), cleave_text(user),
				    cleave_int(now_s(c))};
		rc = cleave_cmd_exec(c,
				     "INSERT INTO carts (cart_id, user_id,"
				     " status, opened_at) VALUES (?, ?,"
				     " 'open', ?)",
				     a, 3, NULL);
		if (rc)
			return rc;
		opened = true;
	} else if (rc) {
		return rc;
	} else if ((rc = cart_check(c, cart, user, owner, open))) {
		return rc;
	}
	cleave_value al[] = {cleave_text(cart), cleave_text(product)};
	rc = cleave_cmd_query_int(c,
				  "SELECT quantity FROM cart_lines"
				  " WHERE cart_id = ? AND product_id = ?",
				  al, 2, &line_qty);
	if (rc == 0) {
		line_qty += qty;
		if (line_qty > SHOP_LINE_QTY_MAX)
			return cleave_cmd_fail(
				c, CLEAVE_EREJECTED, "line_quantity_limit",
				"cart '%s' would hold %" PRId64 " of product "
				"'%s'; a line holds at most %d",
				cart, line_qty, product, SHOP_LINE_QTY_MAX);
		cleave_value a[] = {cleave_int(line_qty), cleave_text(cart),
				    cleave_text(product)};
		rc = cleave_cmd_exec(c,
				     "UPDATE cart_lines SET quantity = ?"
				     " WHERE cart_id = ? AND product_id = ?",
				     a, 3, NULL);
	} else if (rc == CLEAVE_ENOTFOUND) {
		int64_t nlines = 0, last = 0;
		cleave_rows *r;
		cleave_value ac[] = {cleave_text(cart)};
		if ((rc = cleave_cmd_query(c,
					   "SELECT count(*),"
					   " coalesce(max(line_no), 0)"
					   " FROM cart_lines WHERE cart_id = ?",
					   ac, 1, &r)))
			return rc;
		if ((rc = cleave_rows_next(r)) == 1) {
			nlines = cleave_rows_int(r, 0);
			last = cleave_rows_int(r, 1);
			rc = 0;
		}
		cleave_rows_close(r);
		if (rc < 0)
			return rc;
		if (nlines >= SHOP_CART_LINES_MAX)
			return cleave_cmd_fail(c, CLEAVE_EREJECTED, "cart_full",
					       "cart '%s' already has %d "
					       "products, the most a cart "
					       "holds",
					       cart, SHOP_CART_LINES_MAX);
		line_qty = qty;
		cleave_value a[] = {cleave_text(cart), cleave_text(product),
				    cleave_int(last + 1), cleave_int(qty)};
		rc = cleave_cmd_exec(c,
				     "INSERT INTO cart_lines (cart_id,"
				     " product_id, line_no, quantity)"
				     " VALUES (?, ?, ?, ?)",
				     a, 4, NULL);
	}
	if (rc)
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d &&
		  cJSON_AddStringToObject(d, "cartId", cart) &&
		  cJSON_AddStringToObject(d, "userId", user) &&
		  cJSON_AddStringToObject(d, "productId", product) &&
		  cJSON_AddNumberToObject(d, "quantity", (double)qty) &&
		  cJSON_AddNumberToObject(d, "line_quantity", (double)line_qty) &&
		  cJSON_AddBoolToObject(d, "opened", opened);
	if ((rc = emit(c, "cart", cart, "ItemAddedToCart", d, ok)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "cartId", cart) ||
	    !cJSON_AddStringToObject(r, "productId", product) ||
	    !dom_add_int(r, "quantity", line_qty)) {
		cJSON_Delete(r);
		return oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- order lines (Checkout, CancelOrder) ------------------------------- */

typedef struct line {
	char product_id[SHOP_ID_MAX + 1];
	char name[SHOP_NAME_MAX + 1];
	int64_t quantity, price_cents, stock;
} line;

/* Reads the rows (product_id, quantity, price_cents, name, stock) into
 * lines[SHOP_CART_LINES_MAX]; *n gets the count. */
static int read_lines(cleave_cmd *c, const char *sql, const char *key,
		      line *lines, int *n)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(key)};
	int rc = cleave_cmd_query(c, sql, a, 1, &r);
	*n = 0;
	if (rc)
		return rc;
	while ((rc = cleave_rows_next(r)) == 1) {
		if (*n == SHOP_CART_LINES_MAX) {
			rc = cleave_cmd_fail(c, CLEAVE_EINTERNAL, NULL,
					     "more than %d lines under '%s'",
					     SHOP_CART_LINES_MAX, key);
			break;
		}
		line *l = &lines[(*n)++];
		copy_text(r, 0, l->product_id, sizeof(l->product_id));
		l->quantity = cleave_rows_int(r, 1);
		l->price_cents = cleave_rows_int(r, 2);
		copy_text(r, 3, l->name, sizeof(l->name));
		l->stock = cleave_rows_int(r, 4);
	}
	cleave_rows_close(r);
	return rc < 0 ? rc : 0;
}

/* Adds the "lines" array of OrderPlaced / OrderCancelled to d: stock_after
 * is the product's stock once the command is done.  False on OOM. */
static bool add_lines(cJSON *d, const line *lines, int n)
{
	cJSON *arr = cJSON_AddArrayToObject(d, "lines");
	for (int i = 0; arr && i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		if (!o || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			return false;
		}
		if (!cJSON_AddStringToObject(o, "productId",
					     lines[i].product_id) ||
		    !cJSON_AddStringToObject(o, "name", lines[i].name) ||
		    !cJSON_AddNumberToObject(o, "quantity",
					     (double)lines[i].quantity) ||
		    !cJSON_AddNumberToObject(o, "price_cents",
					     (double)lines[i].price_cents) ||
		    !cJSON_AddNumberToObject(o, "stock_after",
					     (double)lines[i].stock))
			return false;
	}
	return arr != NULL;
}

/* ---- Checkout ------------------------------------------------------------ */

static const cleave_field checkout_fields[] = {
	{"userId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"cartId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{"promoCode", CLEAVE_F_STRING, false, 0, 0, SHOP_ID_MAX, "id"},
	{NULL},
};

/* The promo's percent_off if it can be used now: 0, or the 422 failure. */
static int promo_check(cleave_cmd *c, const char *code, int64_t now,
		       int64_t *pct)
{
	cleave_rows *r;
	cleave_value a[] = {cleave_text(code)};
	int64_t max_uses = 0, uses = 0, expires = 0;
	int rc = cleave_cmd_query(c,
				  "SELECT percent_off, max_uses, uses,"
				  " expires_at FROM promos WHERE code = ?",
				  a, 1, &r);
	if (rc)
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1) {
		*pct = cleave_rows_int(r, 0);
		max_uses = cleave_rows_int(r, 1);
		uses = cleave_rows_int(r, 2);
		expires = cleave_rows_int(r, 3);
	}
	cleave_rows_close(r);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "promo_not_found",
				       "no promo code '%s'", code);
	if (expires <= now)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "promo_expired",
				       "promo code '%s' expired at %" PRId64,
				       code, expires);
	if (uses >= max_uses)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "promo_used_up",
				       "promo code '%s' was used %" PRId64
				       " times, its limit",
				       code, uses);
	return 0;
}

static int next_order_id(cleave_cmd *c, char *out, size_t cap)
{
	int64_t seq;
	int rc = cleave_cmd_exec(c,
				 "UPDATE shop_sequences SET value = value + 1"
				 " WHERE name = 'order'",
				 NULL, 0, NULL);
	if (!rc)
		rc = cleave_cmd_query_int(c,
					  "SELECT value FROM shop_sequences"
					  " WHERE name = 'order'",
					  NULL, 0, &seq);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, CLEAVE_EINTERNAL, NULL,
				       "the order sequence row is missing");
	if (rc)
		return rc;
	snprintf(out, cap, "o-%08" PRIx64, (uint64_t)seq);
	return 0;
}

static int checkout_write(cleave_cmd *c, const char *order, const char *user,
			  const char *cart, const char *country,
			  const char *promo, line *lines, int n,
			  const int64_t sums[3], int64_t now)
{
	int rc;
	cleave_value ao[] = {cleave_text(order),   cleave_text(user),
			     cleave_text(cart),	   cleave_text(country),
			     cleave_int(sums[0]),  cleave_int(sums[1]),
			     cleave_int(sums[2]),  cleave_text(promo),
			     cleave_int(now)};
	if ((rc = cleave_cmd_exec(c,
				  "INSERT INTO orders (order_id, user_id,"
				  " cart_id, country, status, subtotal_cents,"
				  " discount_cents, total_cents, promo_code,"
				  " placed_at) VALUES (?, ?, ?, ?, 'placed',"
				  " ?, ?, ?, ?, ?)",
				  ao, 9, NULL)))
		return rc;
	for (int i = 0; i < n; i++) {
		line *l = &lines[i];
		cleave_value al[] = {cleave_text(order), cleave_int(i + 1),
				     cleave_text(l->product_id),
				     cleave_int(l->quantity),
				     cleave_int(l->price_cents)};
		if ((rc = cleave_cmd_exec(c,
					  "INSERT INTO order_lines (order_id,"
					  " line_no, product_id, quantity,"
					  " price_cents) VALUES (?, ?, ?, ?,"
					  " ?)",
					  al, 5, NULL)))
			return rc;
		l->stock -= l->quantity;
		cleave_value as[] = {cleave_int(l->stock),
				     cleave_text(l->product_id)};
		if ((rc = cleave_cmd_exec(c,
					  "UPDATE inventory SET stock = ?"
					  " WHERE product_id = ?",
					  as, 2, NULL)))
			return rc;
	}
	cleave_value ac[] = {cleave_text(cart)};
	if ((rc = cleave_cmd_exec(c, "DELETE FROM cart_lines WHERE cart_id = ?",
				  ac, 1, NULL)))
		return rc;
	cleave_value ak[] = {cleave_text(order), cleave_text(cart)};
	if ((rc = cleave_cmd_exec(c,
				  "UPDATE carts SET status = 'closed',"
				  " order_id = ? WHERE cart_id = ?",
				  ak, 2, NULL)))
		return rc;
	if (promo) {
		cleave_value ap[] = {cleave_text(promo)};
		if ((rc = cleave_cmd_exec(c,
					  "UPDATE promos SET uses = uses + 1"
					  " WHERE code = ?",
					  ap, 1, NULL)))
			return rc;
	}
	return 0;
}

static int checkout(cleave_cmd *c, const cJSON *in)
{
	const char *user = in_str(in, "userId"), *cart = in_str(in, "cartId");
	const char *promo = in_str(in, "promoCode");
	char country[8], owner[SHOP_ID_MAX + 1], order[32];
	line lines[SHOP_CART_LINES_MAX];
	int n = 0, rc;
	bool open = false;
	int64_t now = now_s(c), pct = 0;
	cleave_rows *r;
	cleave_value au[] = {cleave_text(user)};
	if ((rc = cleave_cmd_query(c,
				   "SELECT country FROM users WHERE user_id = ?",
				   au, 1, &r)))
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1)
		copy_text(r, 0, country, sizeof(country));
	cleave_rows_close(r);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_ENOTFOUND, "user_not_found",
				       "no user '%s'", user);
	rc = cart_get(c, cart, owner, sizeof(owner), &open);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "cart_not_found", "no cart '%s'",
				       cart);
	if (rc || (rc = cart_check(c, cart, user, owner, open)))
		return rc;
	if ((rc = read_lines(c,
			     "SELECT l.product_id, l.quantity, p.price_cents,"
			     " p.name, i.stock FROM cart_lines l"
			     " JOIN products p ON p.product_id = l.product_id"
			     " JOIN inventory i ON i.product_id = l.product_id"
			     " WHERE l.cart_id = ? ORDER BY l.line_no",
			     cart, lines, &n)))
		return rc;
	if (n == 0)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "cart_empty",
				       "cart '%s' is empty", cart);
	int64_t sums[3] = {0, 0, 0}; /* subtotal, discount, total */
	for (int i = 0; i < n; i++) {
		if (lines[i].quantity > lines[i].stock)
			return cleave_cmd_fail(
				c, CLEAVE_EREJECTED, "out_of_stock",
				"product '%s' has %" PRId64 " in stock, the "
				"cart wants %" PRId64,
				lines[i].product_id, lines[i].stock,
				lines[i].quantity);
		sums[0] += lines[i].quantity * lines[i].price_cents;
	}
	if (promo && (rc = promo_check(c, promo, now, &pct)))
		return rc;
	sums[1] = sums[0] * pct / 100;
	sums[2] = sums[0] - sums[1];
	if ((rc = next_order_id(c, order, sizeof(order))) ||
	    (rc = checkout_write(c, order, user, cart, country, promo, lines, n,
				 sums, now)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "orderId", order) &&
		  cJSON_AddStringToObject(d, "userId", user) &&
		  cJSON_AddStringToObject(d, "cartId", cart) &&
		  cJSON_AddStringToObject(d, "country", country) &&
		  add_lines(d, lines, n) &&
		  cJSON_AddNumberToObject(d, "subtotal_cents", (double)sums[0]) &&
		  cJSON_AddNumberToObject(d, "discount_cents", (double)sums[1]) &&
		  cJSON_AddNumberToObject(d, "total_cents", (double)sums[2]) &&
		  (promo ? cJSON_AddStringToObject(d, "promoCode", promo)
			 : cJSON_AddNullToObject(d, "promoCode")) &&
		  cJSON_AddNumberToObject(d, "placed_at", (double)now);
	if ((rc = emit(c, "order", order, "OrderPlaced", d, ok)))
		return rc;
	cJSON *res = cJSON_CreateObject();
	if (!res || !cJSON_AddStringToObject(res, "orderId", order) ||
	    !dom_add_int(res, "subtotal_cents", sums[0]) ||
	    !dom_add_int(res, "discount_cents", sums[1]) ||
	    !dom_add_int(res, "total_cents", sums[2])) {
		cJSON_Delete(res);
		return oom(c);
	}
	cleave_cmd_result(c, res);
	return 0;
}

/* ---- CancelOrder --------------------------------------------------------- */

static const cleave_field cancel_order_fields[] = {
	{"orderId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
	{NULL},
};

/* Cancelling returns the units to stock; a promo use stays used. */
static int cancel_order(cleave_cmd *c, const cJSON *in)
{
	const char *order = in_str(in, "orderId");
	char user[SHOP_ID_MAX + 1], country[8], cart[SHOP_ID_MAX + 1];
	char promo[SHOP_ID_MAX + 1];
	int64_t sums[3] = {0, 0, 0}, placed_at = 0;
	bool cancelled = false;
	line lines[SHOP_CART_LINES_MAX];
	int n = 0, rc;
	int64_t now = now_s(c);
	cleave_rows *r;
	cleave_value a[] = {cleave_text(order)};
	if ((rc = cleave_cmd_query(c,
				   "SELECT user_id, country, status,"
				   " subtotal_cents, discount_cents,"
				   " total_cents, placed_at, cart_id,"
				   " promo_code FROM orders"
				   " WHERE order_id = ?",
				   a, 1, &r)))
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1) {
		size_t sl;
		const char *st = cleave_rows_text(r, 2, &sl);
		copy_text(r, 0, user, sizeof(user));
		copy_text(r, 1, country, sizeof(country));
		cancelled = !(st && sl == 6 && !memcmp(st, "placed", 6));
		for (int i = 0; i < 3; i++)
			sums[i] = cleave_rows_int(r, 3 + i);
		placed_at = cleave_rows_int(r, 6);
		copy_text(r, 7, cart, sizeof(cart));
		copy_text(r, 8, promo, sizeof(promo));
	}
	cleave_rows_close(r);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return cleave_cmd_fail(c, CLEAVE_ENOTFOUND, "order_not_found",
				       "no order '%s'", order);
	if (cancelled)
		return cleave_cmd_fail(c, CLEAVE_EREJECTED, "order_cancelled",
				       "order '%s' is already cancelled",
				       order);
	if ((rc = read_lines(c,
			     "SELECT o.product_id, o.quantity, o.price_cents,"
			     " p.name, i.stock FROM order_lines o"
			     " JOIN products p ON p.product_id = o.product_id"
			     " JOIN inventory i ON i.product_id = o.product_id"
			     " WHERE o.order_id = ? ORDER BY o.line_no",
			     order, lines, &n)))
		return rc;
	for (int i = 0; i < n; i++) {
		lines[i].stock += lines[i].quantity;
		cleave_value as[] = {cleave_int(lines[i].stock),
				     cleave_text(lines[i].product_id)};
		if ((rc = cleave_cmd_exec(c,
					  "UPDATE inventory SET stock = ?"
					  " WHERE product_id = ?",
					  as, 2, NULL)))
			return rc;
	}
	cleave_value au[] = {cleave_int(now), cleave_text(order)};
	if ((rc = cleave_cmd_exec(c,
				  "UPDATE orders SET status = 'cancelled',"
				  " cancelled_at = ? WHERE order_id = ?",
				  au, 2, NULL)))
		return rc;
	cJSON *d = cJSON_CreateObject();
	bool ok = d && cJSON_AddStringToObject(d, "orderId", order) &&
		  cJSON_AddStringToObject(d, "userId", user) &&
		  cJSON_AddStringToObject(d, "cartId", cart) &&
		  cJSON_AddStringToObject(d, "country", country) &&
		  add_lines(d, lines, n) &&
		  cJSON_AddNumberToObject(d, "subtotal_cents", (double)sums[0]) &&
		  cJSON_AddNumberToObject(d, "discount_cents", (double)sums[1]) &&
		  cJSON_AddNumberToObject(d, "total_cents", (double)sums[2]) &&
		  (promo[0] ? cJSON_AddStringToObject(d, "promoCode", promo)
			    : cJSON_AddNullToObject(d, "promoCode")) &&
		  cJSON_AddNumberToObject(d, "placed_at", (double)placed_at) &&
		  cJSON_AddNumberToObject(d, "cancelled_at", (double)now);
	if ((rc = emit(c, "order", order, "OrderCancelled", d, ok)))
		return rc;
	cJSON *res = cJSON_CreateObject();
	if (!res || !cJSON_AddStringToObject(res, "orderId", order) ||
	    !cJSON_AddStringToObject(res, "status", "cancelled") ||
	    !dom_add_int(res, "total_cents", sums[2])) {
		cJSON_Delete(res);
		return oom(c);
	}
	cleave_cmd_result(c, res);
	return 0;
}

/* ---- the table --------------------------------------------------------- */

const cleave_command_def shop_commands[] = {
	{"RegisterUser", register_user, register_user_fields,
	 "register a user (userId, name, ISO country)"},
	{"AddProduct", add_product, add_product_fields,
	 "add a product to the catalog with its opening stock"},
	{"ChangePrice", change_price, change_price_fields,
	 "set a product's price"},
	{"Restock", restock, restock_fields, "add units to a product's stock"},
	{"CreatePromo", create_promo, create_promo_fields,
	 "create a promo code (percent off, uses, expiry)"},
	{"AddToCart", add_to_cart, add_to_cart_fields,
	 "add units of a product to a user's cart (opens it if new)"},
	{"Checkout", checkout, checkout_fields,
	 "turn a cart into an order: stock, promo, totals"},
	{"CancelOrder", cancel_order, cancel_order_fields,
	 "cancel a placed order and restock its units"},
	{NULL},
};
