/*
 * shop.c — the shop domain: an e-commerce checkout.  Its contract (fields,
 * rules, events, queries) is docs/domains.md.
 *
 * Write side: normalized tables (below), changed by the commands of
 * shop_commands.c.  Read side: five projections (shop_projections.c), each
 * shaped for its queries (shop_queries.c):
 *
 *   projection   store   serves
 *   catalog      lmdb    product            card documents by productId
 *   search       sqlite  search_products    flat products + FTS5 index
 *   orders       lmdb    order, user_orders order documents, per-user lists
 *   revenue      lmdb    revenue_daily      counters by (country, day)
 *   bestsellers  lmdb    top_products       sorted set of units sold
 *
 * Events carry everything the projections need; no projection reads the
 * write model (it could not: the API gives it none).
 *
 *   event             stream          data
 *   UserRegistered    user-<id>       userId, name, country, registered_at
 *   ProductAdded      product-<id>    productId, name, category,
 *                                     description, price_cents, stock
 *   PriceChanged      product-<id>    productId, old_price_cents,
 *                                     price_cents
 *   ProductRestocked  product-<id>    productId, quantity, stock (after)
 *   PromoCreated      promo-<code>    code, percent_off, max_uses,
 *                                     expires_at
 *   ItemAddedToCart   cart-<id>       cartId, userId, productId, quantity
 *                                     (added), line_quantity (now),
 *                                     opened (true when it opened the cart)
 *   OrderPlaced       order-<id>      orderId, userId, cartId, country,
 *                                     lines [{productId, name, quantity,
 *                                     price_cents, stock_after}],
 *                                     subtotal_cents, discount_cents,
 *                                     total_cents, promoCode (or null),
 *                                     placed_at
 *   OrderCancelled    order-<id>      orderId, userId, cartId, country,
 *                                     lines [{productId, name, quantity,
 *                                     price_cents, stock_after}],
 *                                     subtotal_cents, discount_cents,
 *                                     total_cents, promoCode (or null),
 *                                     placed_at, cancelled_at
 * Times are unix seconds of the command's timestamp (cleave_cmd_time_us).
 */
#include "shop.h"

#include <stdlib.h>

#include "dom.h"

/* Portable SQL (SQLite and PostgreSQL): TEXT, BIGINT, INTEGER, keys,
 * references and checks.  Foreign keys document the model; the handlers
 * check existence themselves (SQLite enforces them only when asked). */
static const char *const shop_migrations[] = {
    /* 1: the model */
    "CREATE TABLE users ("
    "  user_id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  country TEXT NOT NULL CHECK (length(country) = 2),"
    "  registered_at BIGINT NOT NULL);"

    "CREATE TABLE products ("
    "  product_id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  category TEXT NOT NULL,"
    "  description TEXT NOT NULL,"
    "  price_cents BIGINT NOT NULL CHECK (price_cents > 0),"
    "  added_at BIGINT NOT NULL);"

    "CREATE TABLE inventory ("
    "  product_id TEXT PRIMARY KEY REFERENCES products (product_id),"
    "  stock BIGINT NOT NULL CHECK (stock >= 0));"

    "CREATE TABLE promos ("
    "  code TEXT PRIMARY KEY,"
    "  percent_off INTEGER NOT NULL"
    "    CHECK (percent_off >= 1 AND percent_off <= 90),"
    "  max_uses BIGINT NOT NULL CHECK (max_uses > 0),"
    "  uses BIGINT NOT NULL,"
    "  expires_at BIGINT NOT NULL,"
    "  CHECK (uses >= 0 AND uses <= max_uses));"

    "CREATE TABLE carts ("
    "  cart_id TEXT PRIMARY KEY,"
    "  user_id TEXT NOT NULL REFERENCES users (user_id),"
    "  status TEXT NOT NULL CHECK (status IN ('open', 'closed')),"
    "  opened_at BIGINT NOT NULL,"
    "  order_id TEXT);"

    "CREATE TABLE cart_lines ("
    "  cart_id TEXT NOT NULL REFERENCES carts (cart_id),"
    "  product_id TEXT NOT NULL REFERENCES products (product_id),"
    "  line_no INTEGER NOT NULL,"
    "  quantity BIGINT NOT NULL CHECK (quantity > 0),"
    "  PRIMARY KEY (cart_id, product_id));"

    "CREATE TABLE orders ("
    "  order_id TEXT PRIMARY KEY,"
    "  user_id TEXT NOT NULL REFERENCES users (user_id),"
    "  cart_id TEXT NOT NULL REFERENCES carts (cart_id),"
    "  country TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('placed', 'cancelled')),"
    "  subtotal_cents BIGINT NOT NULL CHECK (subtotal_cents > 0),"
    "  discount_cents BIGINT NOT NULL CHECK (discount_cents >= 0),"
    "  total_cents BIGINT NOT NULL CHECK (total_cents > 0),"
    "  promo_code TEXT REFERENCES promos (code),"
    "  placed_at BIGINT NOT NULL,"
    "  cancelled_at BIGINT);"
    "CREATE INDEX orders_by_user ON orders (user_id);"

    "CREATE TABLE order_lines ("
    "  order_id TEXT NOT NULL REFERENCES orders (order_id),"
    "  line_no INTEGER NOT NULL,"
    "  product_id TEXT NOT NULL REFERENCES products (product_id),"
    "  quantity BIGINT NOT NULL CHECK (quantity > 0),"
    "  price_cents BIGINT NOT NULL CHECK (price_cents > 0),"
    "  PRIMARY KEY (order_id, line_no));"

    /* Order ids come from this row, inside the command's transaction:
     * unique, gapless among committed orders, and rolled back with a
     * failed checkout. */
    "CREATE TABLE shop_sequences ("
    "  name TEXT PRIMARY KEY,"
    "  value BIGINT NOT NULL);"
    "INSERT INTO shop_sequences (name, value) VALUES ('order', 0);",
    NULL,
};

char *shop_card_text(const shop_card *c, size_t *len)
{
	cJSON *o = cJSON_CreateObject();
	char *s = NULL;
	if (o && cJSON_AddStringToObject(o, "productId", c->product_id) &&
	    cJSON_AddStringToObject(o, "name", c->name) &&
	    cJSON_AddStringToObject(o, "category", c->category) &&
	    dom_add_int(o, "price_cents", c->price_cents) &&
	    dom_add_int(o, "stock", c->stock) &&
	    dom_add_int(o, "sold", c->sold) &&
	    cJSON_AddBoolToObject(o, "in_stock", c->stock > 0))
		s = dom_print(o, len);
	cJSON_Delete(o);
	return s;
}

const cleave_domain dom_shop = {
    .name = "shop",
    .migrations = shop_migrations,
    .commands = shop_commands,
    .projections = shop_projections,
    .queries = shop_queries,
    .event_types = NULL, /* every event at schema version 1 */
    .upcasters = NULL,
};
