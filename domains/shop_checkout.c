/*
 * shop_checkout.c — the shop's order lifecycle on the write side: carts
 * (AddToCart), orders (Checkout) and cancellations (CancelOrder).
 *
 * Rules (docs/domains.md), checked before the first write, in this order:
 *  AddToCart    404 user_not_found, 404 product_not_found;
 *               a new cartId opens the cart for the user; 422
 *               cart_not_yours, 422 cart_closed; the same product adds to
 *               its line: 422 line_quantity_limit past 100 000; a new
 *               line: 422 cart_full past 100 lines.  Stock is not checked.
 *  Checkout     404 user_not_found, 404 cart_not_found, 422 cart_not_yours,
 *               422 cart_closed, 422 cart_empty, 422 out_of_stock (first
 *               short line), 422 promo_not_found / promo_expired
 *               (expires_at <= now, in seconds) / promo_used_up.
 *               Then: unit prices are the products' prices now;
 *               discount = subtotal * percent_off / 100 rounded down;
 *               stock is decremented, the order and its lines written,
 *               the cart emptied and closed, the promo use counted.
 *  CancelOrder  404 order_not_found, 422 order_cancelled; the units go
 *               back to stock; a promo use stays used.
 * A failure returns its code from every path, so the engine rolls the
 * command's savepoint back: nothing changes.
 *
 * Order ids are "o-" and the order sequence (shop_sequences) in 8+ hex
 * digits, taken inside the command's transaction: unique, and a failed
 * checkout takes none.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dom.h"
#include "shop.h"

/* ---- AddToCart ---------------------------------------------------------- */

const cleave_field shop_add_to_cart_fields[] = {
    {"cartId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"userId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"productId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {"quantity", CLEAVE_F_INT, true, 1, SHOP_ADD_QTY_MAX, 0, NULL},
    {NULL},
};

/* The cart's owner and status: 0, CLEAVE_ENOTFOUND, or a store error. */
static int cart_get(cleave_cmd *c, const char *cart, char *owner, size_t cap,
                    bool *open)
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
		dom_rows_text(r, 0, owner, cap);
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

int shop_add_to_cart(cleave_cmd *c, const cJSON *in)
{
	const char *cart = cleave_json_str(in, "cartId"),
	           *user = cleave_json_str(in, "userId");
	const char *product = cleave_json_str(in, "productId");
	int64_t qty = cleave_json_int(in, "quantity", 0), v, line_qty;
	char owner[SHOP_ID_MAX + 1];
	bool open = false, opened = false;
	cleave_value au[] = {cleave_text(user)};
	int rc = cleave_cmd_query_int(
	    c, "SELECT 1 FROM users WHERE user_id = ?", au, 1, &v);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_cmd_fail(c, rc, "user_not_found", "no user '%s'",
		                       user);
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
		                    cleave_int(dom_now_s(c))};
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
	bool ok =
	    d && cJSON_AddStringToObject(d, "cartId", cart) &&
	    cJSON_AddStringToObject(d, "userId", user) &&
	    cJSON_AddStringToObject(d, "productId", product) &&
	    cJSON_AddNumberToObject(d, "quantity", (double)qty) &&
	    cJSON_AddNumberToObject(d, "line_quantity", (double)line_qty) &&
	    cJSON_AddBoolToObject(d, "opened", opened);
	if ((rc = dom_emit(c, "cart", cart, "ItemAddedToCart", d, ok)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	if (!r || !cJSON_AddStringToObject(r, "cartId", cart) ||
	    !cJSON_AddStringToObject(r, "productId", product) ||
	    !dom_add_int(r, "quantity", line_qty)) {
		cJSON_Delete(r);
		return dom_oom(c);
	}
	cleave_cmd_result(c, r);
	return 0;
}

/* ---- order lines (Checkout, CancelOrder) -------------------------------- */

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
		dom_rows_text(r, 0, l->product_id, sizeof(l->product_id));
		l->quantity = cleave_rows_int(r, 1);
		l->price_cents = cleave_rows_int(r, 2);
		dom_rows_text(r, 3, l->name, sizeof(l->name));
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

/* ---- Checkout ----------------------------------------------------------- */

const cleave_field shop_checkout_fields[] = {
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
	cleave_value ao[] = {
	    cleave_text(order),   cleave_text(user),   cleave_text(cart),
	    cleave_text(country), cleave_int(sums[0]), cleave_int(sums[1]),
	    cleave_int(sums[2]),  cleave_text(promo),  cleave_int(now)};
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

int shop_checkout(cleave_cmd *c, const cJSON *in)
{
	const char *user = cleave_json_str(in, "userId"),
	           *cart = cleave_json_str(in, "cartId");
	const char *promo = cleave_json_str(in, "promoCode");
	char country[8], owner[SHOP_ID_MAX + 1], order[32];
	line lines[SHOP_CART_LINES_MAX];
	int n = 0, rc;
	bool open = false;
	int64_t now = dom_now_s(c), pct = 0;
	cleave_rows *r;
	cleave_value au[] = {cleave_text(user)};
	if ((rc = cleave_cmd_query(
	         c, "SELECT country FROM users WHERE user_id = ?", au, 1, &r)))
		return rc;
	rc = cleave_rows_next(r);
	if (rc == 1)
		dom_rows_text(r, 0, country, sizeof(country));
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
	bool ok =
	    d && cJSON_AddStringToObject(d, "orderId", order) &&
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
	if ((rc = dom_emit(c, "order", order, "OrderPlaced", d, ok)))
		return rc;
	cJSON *res = cJSON_CreateObject();
	if (!res || !cJSON_AddStringToObject(res, "orderId", order) ||
	    !dom_add_int(res, "subtotal_cents", sums[0]) ||
	    !dom_add_int(res, "discount_cents", sums[1]) ||
	    !dom_add_int(res, "total_cents", sums[2])) {
		cJSON_Delete(res);
		return dom_oom(c);
	}
	cleave_cmd_result(c, res);
	return 0;
}

/* ---- CancelOrder -------------------------------------------------------- */

const cleave_field shop_cancel_order_fields[] = {
    {"orderId", CLEAVE_F_STRING, true, 0, 0, SHOP_ID_MAX, "id"},
    {NULL},
};

/* Cancelling returns the units to stock; a promo use stays used. */
int shop_cancel_order(cleave_cmd *c, const cJSON *in)
{
	const char *order = cleave_json_str(in, "orderId");
	char user[SHOP_ID_MAX + 1], country[8], cart[SHOP_ID_MAX + 1];
	char promo[SHOP_ID_MAX + 1];
	int64_t sums[3] = {0, 0, 0}, placed_at = 0;
	bool cancelled = false;
	line lines[SHOP_CART_LINES_MAX];
	int n = 0, rc;
	int64_t now = dom_now_s(c);
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
		dom_rows_text(r, 0, user, sizeof(user));
		dom_rows_text(r, 1, country, sizeof(country));
		cancelled = !(st && sl == 6 && !memcmp(st, "placed", 6));
		for (int i = 0; i < 3; i++)
			sums[i] = cleave_rows_int(r, 3 + i);
		placed_at = cleave_rows_int(r, 6);
		dom_rows_text(r, 7, cart, sizeof(cart));
		dom_rows_text(r, 8, promo, sizeof(promo));
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
	bool ok =
	    d && cJSON_AddStringToObject(d, "orderId", order) &&
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
	if ((rc = dom_emit(c, "order", order, "OrderCancelled", d, ok)))
		return rc;
	cJSON *res = cJSON_CreateObject();
	if (!res || !cJSON_AddStringToObject(res, "orderId", order) ||
	    !cJSON_AddStringToObject(res, "status", "cancelled") ||
	    !dom_add_int(res, "total_cents", sums[2])) {
		cJSON_Delete(res);
		return dom_oom(c);
	}
	cleave_cmd_result(c, res);
	return 0;
}
