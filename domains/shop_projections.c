/*
 * shop_projections.c — the shop's read models, each shaped for its query.
 *
 * Every handler is a pure function of (store, event): it reads only what
 * the event and its own store hold.  The engine applies each event exactly
 * once, in log order, so handlers add and subtract without guards.  An
 * event that does not fit the model (a product the store never saw, a
 * field missing) is CLEAVE_ECORRUPT: the projection parks on it.
 *
 *  catalog (lmdb)
 *    cards     productId → the product card, the exact text `product`
 *                          serves (shop_card_text)
 *  search (sqlite)
 *    products      one flat row per product (filters, sorts, cards)
 *    products_fts  FTS5 over name, description, category (external
 *                  content: the text lives in products; rowid = rid)
 *  orders (lmdb)
 *    orders    orderId → the order document `order` serves
 *    placed    orderId → position of its OrderPlaced (decimal), the seq of
 *                        its item in the user's list
 *    by_user   list per userId, seq = OrderPlaced position →
 *              {orderId, status, total_cents, placed_at}
 *  revenue (lmdb)
 *    daily     counter (country, YYYY-MM-DD of placed_at) →
 *              [orders, revenue_cents]; a cancellation subtracts from the
 *              day the order was placed
 *  bestsellers (lmdb)
 *    sold      sorted set productId → units sold net of cancellations
 *              (members leave the set when they fall back to 0)
 *    names     productId → product name
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dom.h"
#include "shop.h"

#define IS(ev, t) (!strcmp((ev)->type, (t)))

/* One line of OrderPlaced / OrderCancelled. */
typedef struct ev_line {
	const char *product_id;
	int64_t quantity, price_cents, stock_after;
} ev_line;

/* Calls fn for each line of the event's "lines". */
static int each_line(const cleave_event *ev,
                     int (*fn)(cleave_rtx *, const ev_line *, int sign, void *),
                     cleave_rtx *tx, int sign, void *arg)
{
	const cJSON *lines =
	    cJSON_GetObjectItemCaseSensitive(ev->json, "lines");
	const cJSON *l;
	if (!cJSON_IsArray(lines))
		return CLEAVE_ECORRUPT;
	cJSON_ArrayForEach(l, lines)
	{
		ev_line x;
		int rc;
		if ((rc = cleave_json_get_str(l, "productId", &x.product_id)) ||
		    (rc = cleave_json_get_int(l, "quantity", &x.quantity)) ||
		    (rc = cleave_json_get_int(l, "price_cents", &x.price_cents)) ||
		    (rc = cleave_json_get_int(l, "stock_after", &x.stock_after)) ||
		    (rc = fn(tx, &x, sign, arg)))
			return rc;
	}
	return 0;
}

/* ---- catalog ------------------------------------------------------------ */

static const char *const catalog_types[] = {
    "ProductAdded", "PriceChanged",   "ProductRestocked",
    "OrderPlaced",  "OrderCancelled", NULL,
};

/* Cards go through the transaction's document cache: a rebuild that
 * changes one card a thousand times in a batch parses and prints it once.
 * The tree keeps the field order of shop_card_text, so the stored text is
 * what `product` serves. */
static int card_put(cleave_rtx *tx, const shop_card *card)
{
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddStringToObject(o, "productId", card->product_id) ||
	    !cJSON_AddStringToObject(o, "name", card->name) ||
	    !cJSON_AddStringToObject(o, "category", card->category) ||
	    !dom_add_int(o, "price_cents", card->price_cents) ||
	    !dom_add_int(o, "stock", card->stock) ||
	    !dom_add_int(o, "sold", card->sold) ||
	    !cJSON_AddBoolToObject(o, "in_stock", card->stock > 0)) {
		cJSON_Delete(o);
		return CLEAVE_ENOMEM;
	}
	return cleave_rtx_doc_put(tx, "cards", card->product_id, o);
}

static int set_int(cJSON *o, const char *name, int64_t v)
{
	cJSON *x = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsNumber(x))
		return CLEAVE_ECORRUPT;
	cJSON_SetNumberValue(x, (double)v);
	return 0;
}

/* Rewrites a stored card: price and stock when >= 0, sold + sold_delta. */
static int card_update(cleave_rtx *tx, const char *id, int64_t price,
                       int64_t stock, int64_t sold_delta)
{
	cJSON *o;
	int64_t sold, cur_stock;
	int rc = cleave_rtx_doc(tx, "cards", id, &o);
	if (rc)
		return rc == CLEAVE_ENOTFOUND
		           ? cleave_error(CLEAVE_ECORRUPT,
		                          "catalog: no card for product '%s'",
		                          id)
		           : rc;
	if ((rc = cleave_json_get_int(o, "sold", &sold)) ||
	    (rc = cleave_json_get_int(o, "stock", &cur_stock)))
		return rc;
	if (price >= 0 && (rc = set_int(o, "price_cents", price)))
		return rc;
	if (stock >= 0 && (rc = set_int(o, "stock", stock)))
		return rc;
	if ((rc = set_int(o, "sold", sold + sold_delta)))
		return rc;
	cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "in_stock");
	if (!cJSON_IsBool(in))
		return CLEAVE_ECORRUPT;
	in->type = (stock >= 0 ? stock : cur_stock) > 0 ? cJSON_True
	                                                 : cJSON_False;
	return cleave_rtx_doc_put(tx, "cards", id, o);
}

static int catalog_line(cleave_rtx *tx, const ev_line *l, int sign, void *arg)
{
	return card_update(tx, l->product_id, -1, l->stock_after,
	                   sign * l->quantity);
}

static int catalog_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const cJSON *d = ev->json;
	const char *id;
	int64_t n;
	int rc;
	if (IS(ev, "OrderPlaced"))
		return each_line(ev, catalog_line, tx, 1, NULL);
	if (IS(ev, "OrderCancelled"))
		return each_line(ev, catalog_line, tx, -1, NULL);
	if ((rc = cleave_json_get_str(d, "productId", &id)))
		return rc;
	if (IS(ev, "ProductAdded")) {
		shop_card c = {id, NULL, NULL, 0, 0, 0};
		if ((rc = cleave_json_get_str(d, "name", &c.name)) ||
		    (rc = cleave_json_get_str(d, "category", &c.category)) ||
		    (rc = cleave_json_get_int(d, "price_cents", &c.price_cents)) ||
		    (rc = cleave_json_get_int(d, "stock", &c.stock)))
			return rc;
		return card_put(tx, &c);
	}
	if (IS(ev, "PriceChanged")) {
		if ((rc = cleave_json_get_int(d, "price_cents", &n)))
			return rc;
		return card_update(tx, id, n, -1, 0);
	}
	if (IS(ev, "ProductRestocked")) {
		if ((rc = cleave_json_get_int(d, "stock", &n)))
			return rc;
		return card_update(tx, id, -1, n, 0);
	}
	return 0;
}

/* ---- search ------------------------------------------------------------- */

/* Runs each time a copy opens: everything is IF NOT EXISTS. */
static int search_setup(cleave_rtx *tx)
{
	static const char *const ddl[] = {
	    "CREATE TABLE IF NOT EXISTS products ("
	    " rid INTEGER PRIMARY KEY,"
	    " product_id TEXT NOT NULL UNIQUE,"
	    " name TEXT NOT NULL,"
	    " category TEXT NOT NULL,"
	    " description TEXT NOT NULL,"
	    " price_cents INTEGER NOT NULL,"
	    " stock INTEGER NOT NULL,"
	    " sold INTEGER NOT NULL)",
	    "CREATE INDEX IF NOT EXISTS products_by_price"
	    " ON products (price_cents, product_id)",
	    "CREATE INDEX IF NOT EXISTS products_by_sold"
	    " ON products (sold, product_id)",
	    "CREATE INDEX IF NOT EXISTS products_by_category"
	    " ON products (category, price_cents, product_id)",
	    "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5("
	    " name, description, category,"
	    " content='products', content_rowid='rid',"
	    " tokenize='unicode61 remove_diacritics 2')",
	    NULL,
	};
	for (int i = 0; ddl[i]; i++) {
		int rc = cleave_rtx_exec(tx, ddl[i], NULL, 0, NULL);
		if (rc)
			return rc;
	}
	return 0;
}

static const char *const search_types[] = {
    "ProductAdded", "PriceChanged",   "ProductRestocked",
    "OrderPlaced",  "OrderCancelled", NULL,
};

/* Runs an UPDATE that must touch exactly one product row. */
static int update_one(cleave_rtx *tx, const char *sql, const cleave_value *a,
                      int n)
{
	int64_t changes = 0;
	int rc = cleave_rtx_exec(tx, sql, a, n, &changes);
	if (rc)
		return rc;
	return changes == 1 ? 0 : CLEAVE_ECORRUPT;
}

/* Stock and sales change on every order line and restock, and `sold` is
 * indexed: an UPDATE per line rewrites an index entry each time.  So they
 * gather per product in the transaction (dom_acc: {stock, sold delta}) and
 * each product's row is written once per batch — the stock as the last
 * event left it, the sales summed.  Every write of `stock` goes through
 * here, so the last event wins; the price is written at once (nothing
 * else writes it). */
static char stock_key; /* the registration's name */

static int stock_flush(cleave_rtx *tx, void *arg)
{
	dom_acc *a = arg;
	int rc = 0;
	for (size_t i = 0; i < dom_acc_count(a) && !rc; i++) {
		const int64_t *x = dom_acc_vals(a, i);
		cleave_value v[] = {cleave_int(x[0]), cleave_int(x[1]),
		                    cleave_text(dom_acc_id(a, i))};
		if (x[1])
			rc = update_one(tx,
			                "UPDATE products SET stock = ?,"
			                " sold = sold + ? WHERE product_id = ?",
			                v, 3);
		else
			rc = update_one(tx,
			                "UPDATE products SET stock = ?"
			                " WHERE product_id = ?",
			                (cleave_value[]){v[0], v[2]}, 2);
	}
	dom_acc_clear(a);
	return rc;
}

/* Records product `id`'s stock after an event and its sales change. */
static int stock_note(cleave_rtx *tx, const char *id, int64_t stock,
                      int64_t sold_delta)
{
	dom_acc *a;
	int64_t *v;
	int rc = dom_acc_get(tx, &stock_key, stock_flush, &a);
	if (rc)
		return rc;
	if (!(v = dom_acc_at(a, id)))
		return CLEAVE_ENOMEM;
	v[0] = stock;
	v[1] += sold_delta;
	return 0;
}

static int search_line(cleave_rtx *tx, const ev_line *l, int sign, void *arg)
{
	(void)arg;
	return stock_note(tx, l->product_id, l->stock_after,
	                  sign * l->quantity);
}

static int search_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const cJSON *d = ev->json;
	const char *id;
	int64_t n;
	int rc;
	if (IS(ev, "OrderPlaced"))
		return each_line(ev, search_line, tx, 1, NULL);
	if (IS(ev, "OrderCancelled"))
		return each_line(ev, search_line, tx, -1, NULL);
	if ((rc = cleave_json_get_str(d, "productId", &id)))
		return rc;
	if (IS(ev, "ProductAdded")) {
		const char *name, *cat, *desc = cleave_json_str(d, "description");
		int64_t price, stock;
		if ((rc = cleave_json_get_str(d, "name", &name)) ||
		    (rc = cleave_json_get_str(d, "category", &cat)) ||
		    (rc = cleave_json_get_int(d, "price_cents", &price)) ||
		    (rc = cleave_json_get_int(d, "stock", &stock)))
			return rc;
		cleave_value a[] = {
		    cleave_text(id),   cleave_text(name),
		    cleave_text(cat),  cleave_text(desc ? desc : ""),
		    cleave_int(price), cleave_int(stock)};
		if ((rc = cleave_rtx_exec(tx,
		                          "INSERT INTO products (product_id,"
		                          " name, category, description,"
		                          " price_cents, stock, sold)"
		                          " VALUES (?, ?, ?, ?, ?, ?, 0)",
		                          a, 6, NULL)))
			return rc;
		cleave_value b[] = {cleave_text(id)};
		return update_one(tx,
		                  "INSERT INTO products_fts (rowid, name,"
		                  " description, category) SELECT rid, name,"
		                  " description, category FROM products"
		                  " WHERE product_id = ?",
		                  b, 1);
	}
	if (IS(ev, "ProductRestocked")) {
		if ((rc = cleave_json_get_int(d, "stock", &n)))
			return rc;
		return stock_note(tx, id, n, 0);
	}
	if (IS(ev, "PriceChanged")) {
		if ((rc = cleave_json_get_int(d, "price_cents", &n)))
			return rc;
		cleave_value a[] = {cleave_int(n), cleave_text(id)};
		return update_one(tx,
		                  "UPDATE products SET price_cents = ?"
		                  " WHERE product_id = ?",
		                  a, 2);
	}
	return 0;
}

/* ---- orders ------------------------------------------------------------- */

static const char *const orders_types[] = {"OrderPlaced", "OrderCancelled",
                                           NULL};

/* What the order document and the user-list item need, read once from
 * OrderPlaced or OrderCancelled data (both carry every field). */
typedef struct order_fields {
	const char *id, *user, *cart, *country, *promo;
	int64_t sub, disc, total, placed, cancelled_at;
	const cJSON *lines;
	bool cancelled;
} order_fields;

static int order_read(const cJSON *d, bool cancelled, order_fields *o)
{
	o->cancelled = cancelled;
	o->cancelled_at = 0;
	o->lines = cJSON_GetObjectItemCaseSensitive(d, "lines");
	if (cleave_json_get_str(d, "orderId", &o->id) ||
	    cleave_json_get_str(d, "userId", &o->user) ||
	    cleave_json_get_str(d, "cartId", &o->cart) ||
	    cleave_json_get_str(d, "country", &o->country) ||
	    cleave_json_get_int(d, "subtotal_cents", &o->sub) ||
	    cleave_json_get_int(d, "discount_cents", &o->disc) ||
	    cleave_json_get_int(d, "total_cents", &o->total) ||
	    cleave_json_get_int(d, "placed_at", &o->placed) ||
	    !cJSON_IsArray(o->lines) ||
	    (cancelled && cleave_json_get_int(d, "cancelled_at", &o->cancelled_at)))
		return CLEAVE_ECORRUPT;
	o->promo = cleave_json_str(d, "promoCode");
	return 0;
}

/* The order document: orderId, userId, cartId, country, status, lines
 * [{productId, name, quantity, price_cents, line_total_cents}],
 * subtotal_cents, discount_cents, total_cents, promoCode (or null),
 * placed_at, cancelled_at (or null). */
static char *order_doc(const order_fields *o, size_t *len)
{
	const cJSON *l;
	cleave_jw w = CLEAVE_JW_INIT;
	cleave_jw_open(&w, '{');
	cleave_jw_key(&w, "orderId");
	cleave_jw_str(&w, o->id);
	cleave_jw_key(&w, "userId");
	cleave_jw_str(&w, o->user);
	cleave_jw_key(&w, "cartId");
	cleave_jw_str(&w, o->cart);
	cleave_jw_key(&w, "country");
	cleave_jw_str(&w, o->country);
	cleave_jw_key(&w, "status");
	cleave_jw_str(&w, o->cancelled ? "cancelled" : "placed");
	cleave_jw_key(&w, "lines");
	cleave_jw_open(&w, '[');
	cJSON_ArrayForEach(l, o->lines)
	{
		const char *pid, *name;
		int64_t q, p;
		if (cleave_json_get_str(l, "productId", &pid) ||
		    cleave_json_get_str(l, "name", &name) ||
		    cleave_json_get_int(l, "quantity", &q) ||
		    cleave_json_get_int(l, "price_cents", &p)) {
			cleave_jw_free(&w);
			return NULL;
		}
		cleave_jw_open(&w, '{');
		cleave_jw_key(&w, "productId");
		cleave_jw_str(&w, pid);
		cleave_jw_key(&w, "name");
		cleave_jw_str(&w, name);
		cleave_jw_key(&w, "quantity");
		cleave_jw_int(&w, q);
		cleave_jw_key(&w, "price_cents");
		cleave_jw_int(&w, p);
		cleave_jw_key(&w, "line_total_cents");
		cleave_jw_int(&w, q * p);
		cleave_jw_close(&w, '}');
	}
	cleave_jw_close(&w, ']');
	cleave_jw_key(&w, "subtotal_cents");
	cleave_jw_int(&w, o->sub);
	cleave_jw_key(&w, "discount_cents");
	cleave_jw_int(&w, o->disc);
	cleave_jw_key(&w, "total_cents");
	cleave_jw_int(&w, o->total);
	cleave_jw_key(&w, "promoCode");
	cleave_jw_str(&w, o->promo);
	cleave_jw_key(&w, "placed_at");
	cleave_jw_int(&w, o->placed);
	cleave_jw_key(&w, "cancelled_at");
	if (o->cancelled)
		cleave_jw_int(&w, o->cancelled_at);
	else
		cleave_jw_null(&w);
	cleave_jw_close(&w, '}');
	return cleave_jw_done(&w, len);
}

/* The user-list item: {orderId, status, total_cents, placed_at}. */
static char *order_item(const order_fields *o, size_t *len)
{
	cleave_jw w = CLEAVE_JW_INIT;
	cleave_jw_open(&w, '{');
	cleave_jw_key(&w, "orderId");
	cleave_jw_str(&w, o->id);
	cleave_jw_key(&w, "status");
	cleave_jw_str(&w, o->cancelled ? "cancelled" : "placed");
	cleave_jw_key(&w, "total_cents");
	cleave_jw_int(&w, o->total);
	cleave_jw_key(&w, "placed_at");
	cleave_jw_int(&w, o->placed);
	cleave_jw_close(&w, '}');
	return cleave_jw_done(&w, len);
}

static int orders_apply(cleave_rtx *tx, const cleave_event *ev)
{
	order_fields o;
	char seqbuf[24];
	int64_t seq = ev->position;
	size_t dlen = 0, ilen = 0;
	char *doc = NULL, *item = NULL;
	int rc;
	if ((rc = order_read(ev->json, IS(ev, "OrderCancelled"), &o)))
		return rc;
	if (o.cancelled) {
		const void *v;
		size_t n;
		if ((rc = cleave_rtx_get(tx, "placed", o.id, &v, &n)))
			return rc == CLEAVE_ENOTFOUND ? CLEAVE_ECORRUPT : rc;
		if (n == 0 || n >= sizeof(seqbuf))
			return CLEAVE_ECORRUPT;
		memcpy(seqbuf, v, n);
		seqbuf[n] = 0;
		seq = strtoll(seqbuf, NULL, 10);
	} else {
		int n = snprintf(seqbuf, sizeof(seqbuf), "%" PRId64, seq);
		if ((rc = cleave_rtx_put(tx, "placed", o.id, seqbuf, (size_t)n)))
			return rc;
	}
	doc = order_doc(&o, &dlen);
	item = order_item(&o, &ilen);
	if (!doc || !item)
		rc = CLEAVE_ECORRUPT;
	else if (!(rc = cleave_rtx_put(tx, "orders", o.id, doc, dlen)))
		rc = cleave_rtx_list_put(tx, "by_user", o.user, seq, item, ilen);
	free(doc);
	free(item);
	return rc;
}

/* ---- revenue ------------------------------------------------------------ */

static const char *const revenue_types[] = {"OrderPlaced", "OrderCancelled",
                                            NULL};

static int revenue_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const char *country;
	int64_t total, placed;
	char day[11], key[64];
	int rc;
	if ((rc = cleave_json_get_str(ev->json, "country", &country)) ||
	    (rc = cleave_json_get_int(ev->json, "total_cents", &total)) ||
	    (rc = cleave_json_get_int(ev->json, "placed_at", &placed)))
		return rc;
	cleave_day_format(cleave_day_of(placed), day);
	const char *parts[] = {country, day};
	if ((rc = cleave_key(key, sizeof(key), 2, parts)) < 0)
		return CLEAVE_ECORRUPT;
	int64_t sign = IS(ev, "OrderPlaced") ? 1 : -1;
	int64_t delta[2] = {sign, sign * total};
	return cleave_rtx_counter_add(tx, "daily", key, delta, 2);
}

/* ---- bestsellers -------------------------------------------------------- */

static const char *const bestsellers_types[] = {"ProductAdded", "OrderPlaced",
                                                "OrderCancelled", NULL};

/* Units per product gather over the transaction (dom_acc) and each score
 * changes once per batch: a score is the sum of its lines, and one that
 * comes to zero leaves the set, whichever way the lines were grouped. */
static char sold_key;

static int sold_flush(cleave_rtx *tx, void *arg)
{
	dom_acc *a = arg;
	int rc = 0;
	for (size_t i = 0; i < dom_acc_count(a) && !rc; i++) {
		const char *id = dom_acc_id(a, i);
		int64_t d = dom_acc_vals(a, i)[0], score;
		if (d == 0)
			continue;
		rc = cleave_rtx_zincr(tx, "sold", id, d, &score);
		if (rc == 0 && score == 0)
			rc = cleave_rtx_zrem(tx, "sold", id);
	}
	dom_acc_clear(a);
	return rc;
}

static int bestsellers_line(cleave_rtx *tx, const ev_line *l, int sign,
                            void *arg)
{
	(void)arg;
	dom_acc *a;
	int64_t *v;
	int rc = dom_acc_get(tx, &sold_key, sold_flush, &a);
	if (rc)
		return rc;
	if (!(v = dom_acc_at(a, l->product_id)))
		return CLEAVE_ENOMEM;
	v[0] += sign * l->quantity;
	return 0;
}

static int bestsellers_apply(cleave_rtx *tx, const cleave_event *ev)
{
	if (IS(ev, "OrderPlaced"))
		return each_line(ev, bestsellers_line, tx, 1, NULL);
	if (IS(ev, "OrderCancelled"))
		return each_line(ev, bestsellers_line, tx, -1, NULL);
	const char *id, *name;
	int rc;
	if ((rc = cleave_json_get_str(ev->json, "productId", &id)) ||
	    (rc = cleave_json_get_str(ev->json, "name", &name)))
		return rc;
	return cleave_rtx_put(tx, "names", id, name, strlen(name));
}

/* ---- the table ---------------------------------------------------------- */

const cleave_projection_def shop_projections[] = {
    {"catalog", 1, "lmdb", catalog_types, NULL, catalog_apply,
     CLEAVE_POISON_PARK},
    {"search", 1, "sqlite", search_types, search_setup, search_apply,
     CLEAVE_POISON_PARK},
    {"orders", 1, "lmdb", orders_types, NULL, orders_apply, CLEAVE_POISON_PARK},
    {"revenue", 1, "lmdb", revenue_types, NULL, revenue_apply,
     CLEAVE_POISON_PARK},
    {"bestsellers", 1, "lmdb", bestsellers_types, NULL, bestsellers_apply,
     CLEAVE_POISON_PARK},
    {NULL},
};
