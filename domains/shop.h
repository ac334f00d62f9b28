/*
 * shop.h — the parts of the shop domain shared by its files (private):
 *   shop.c             the domain table, write schema, limits
 *   shop_commands.c    users, products, promos; the command table
 *   shop_checkout.c    carts, checkout, cancellation (write side)
 *   shop_projections.c read models
 *   shop_queries.c     queries
 */
#ifndef CL_SHOP_H
#define CL_SHOP_H

#include <stdbool.h>
#include <stdint.h>

#include "cleave.h"

/* Limits.  Each keeps every amount the shop computes below 2^53, so JSON
 * numbers stay exact, and each is checked where it can be hit: field
 * checks (400) before the handler runs, business rules (422) in the
 * handler, against the write model.
 *
 *  what                        limit                      status
 *  ids (user, product, cart,   1..64 bytes [A-Za-z0-9_.:-]  400
 *    order, promo code)
 *  user / product name         1..200 bytes                 400
 *  product category            1..100 bytes                 400
 *  product description         1..2000 bytes                400
 *  price_cents                 1..100 000 000               400
 *  stock at AddProduct         0..1 000 000 000             400
 *  Restock quantity            1..1 000 000 000             400
 *  stock after a Restock       <= 1 000 000 000             422 stock_limit
 *  AddToCart quantity          1..10 000                    400
 *  units on one cart line      <= 100 000     422 line_quantity_limit
 *  lines in one cart           <= 100                       422 cart_full
 *  percent_off                 1..90                        400
 *  max_uses                    1..1 000 000 000             400
 *  expires_at                  0..253 402 300 799           400
 *                              (9999-12-31T23:59:59Z)
 *
 * So an order's subtotal is at most 100 lines * 100 000 units * 10^8
 * cents = 10^15 < 2^53.  A cancellation puts units back without a cap
 * (it returns what an order took), so stock may pass 10^9 by at most the
 * units of orders cancelled after a Restock filled it; still far below
 * 2^53.
 */
#define SHOP_ID_MAX          64
#define SHOP_NAME_MAX        200
#define SHOP_CATEGORY_MAX    100
#define SHOP_DESCRIPTION_MAX 2000
#define SHOP_PRICE_MAX       100000000LL
#define SHOP_STOCK_MAX       1000000000LL
#define SHOP_ADD_QTY_MAX     10000
#define SHOP_LINE_QTY_MAX    100000
#define SHOP_CART_LINES_MAX  100
#define SHOP_PERCENT_MAX     90
#define SHOP_PROMO_USES_MAX  1000000000LL
#define SHOP_EXPIRES_MAX     253402300799LL

extern const cleave_command_def shop_commands[];
/* shop_checkout.c: the order lifecycle, listed in shop_commands[]. */
extern const cleave_field shop_add_to_cart_fields[];
extern const cleave_field shop_checkout_fields[];
extern const cleave_field shop_cancel_order_fields[];
int shop_add_to_cart(cleave_cmd *c, const cJSON *in);
int shop_checkout(cleave_cmd *c, const cJSON *in);
int shop_cancel_order(cleave_cmd *c, const cJSON *in);
extern const cleave_projection_def shop_projections[];
extern const cleave_query_def shop_queries[];

/* The product card: the answer of the `product` query, the items of
 * `search_products`, stored as this exact text by "catalog".  Fields in
 * this order: productId, name, category, price_cents, stock, sold,
 * in_stock (stock > 0).  Returns malloc'd text (free()) or NULL on OOM. */
typedef struct shop_card {
	const char *product_id, *name, *category;
	int64_t price_cents, stock, sold;
} shop_card;
char *shop_card_text(const shop_card *c, size_t *len);

#endif
