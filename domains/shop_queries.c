/*
 * shop_queries.c — the shop's queries, each answered from the read model
 * built for it (shop_projections.c).  Parameter errors are 400 naming the
 * parameter; a missing entity is 404.  The engine adds "position".
 *
 *  product(productId)                        catalog
 *      the card; 404 product_not_found
 *  search_products(q?, category?, min_price?, max_price?, in_stock?,
 *                  sort?, limit?, cursor?)    search
 *      {"items": [cards], "next_cursor": string or null}
 *      q        words (letters and digits; anything else separates them),
 *               at most 16, as the index's unicode61 tokenizer splits
 *               and folds them; each must match a whole word of the
 *               name, description or category, case- and
 *               accent-insensitive.  Words are quoted into the FTS5
 *               query (cleave_rtx_fts_query), never passed as syntax.  A
 *               q without any word matches nothing.
 *      category exact match.  min_price, max_price: cents, inclusive.
 *      in_stock true/false/1/0.
 *      sort     relevance (bm25, ties by productId; the default when q is
 *               given), price (ascending; the default otherwise), -price
 *               (descending), sold (descending); ties always by productId
 *               ascending.  relevance without q orders by productId.
 *      limit    1..100, default 20.
 *      cursor   the next_cursor of the previous page, with the same sort
 *               (else 400).  price, -price, sold and relevance without q
 *               page by keyset (sort value, productId); relevance with q
 *               pages by offset (scores are not stable keys).  On data
 *               that does not change between pages, the pages together
 *               are every match exactly once.
 *  order(orderId)                            orders
 *      the order document; 404 order_not_found
 *  user_orders(userId, limit?, cursor?)      orders
 *      {"items": [{orderId, status, total_cents, placed_at}],
 *       "next_cursor"}, newest first; an unknown user has no orders.
 *  revenue_daily(country, from, to)          revenue
 *      {"days": [{"day", "orders", "revenue_cents"}]}: the days in
 *      [from, to] (YYYY-MM-DD, at most 366 days) on which the country had
 *      an order placed, ascending.  A day whose orders were all cancelled
 *      stays, with 0 and 0.
 *  top_products(limit?)                      bestsellers
 *      {"items": [{"productId", "name", "sold"}]}: sold > 0, most first,
 *      ties by productId ascending; limit 1..100, default 10.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dom.h"
#include "iso.h"
#include "shop.h"

#define PAGE_MAX    CLEAVE_PAGE_MAX
#define Q_MAX       200
#define Q_WORDS_MAX 16

static int q_oom(cleave_query *q)
{
	return cleave_query_fail(q, CLEAVE_ENOMEM, NULL, "out of memory");
}

/* Replies {"items": items, "next_cursor": cursor or null}. */
static int reply_page(cleave_query *q, cJSON *items, const char *cursor)
{
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddItemToObject(o, "items", items)) {
		cJSON_Delete(o);
		cJSON_Delete(items);
		return q_oom(q);
	}
	if (!(cursor ? cJSON_AddStringToObject(o, "next_cursor", cursor)
	             : cJSON_AddNullToObject(o, "next_cursor"))) {
		cJSON_Delete(o);
		return q_oom(q);
	}
	return cleave_query_reply(q, o);
}

/* Serves a stored document by key, or 404 with `code`. */
static int reply_doc(cleave_query *q, const char *param, const char *ns,
                     const char *code, const char *what)
{
	const char *id;
	const void *v;
	size_t len;
	int rc = cleave_query_param_str(q, param, true, SHOP_ID_MAX, &id);
	if (rc)
		return rc;
	rc = cleave_rtx_get(cleave_query_rtx(q, 0), ns, id, &v, &len);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_query_fail(q, rc, code, "no %s '%s'", what, id);
	if (rc)
		return rc;
	return cleave_query_reply_raw(q, v, len);
}

/* ---- product, order ----------------------------------------------------- */

static int q_product(cleave_query *q)
{
	return reply_doc(q, "productId", "cards", "product_not_found",
	                 "product");
}

static int q_order(cleave_query *q)
{
	return reply_doc(q, "orderId", "orders", "order_not_found", "order");
}

/* ---- search_products ---------------------------------------------------- */

enum sort { SORT_RELEVANCE, SORT_PRICE, SORT_PRICE_DESC, SORT_SOLD, SORT_ID };
static const char sort_codes[] = "rpdsi";

typedef struct search {
	cleave_query *q;
	cleave_buf fts; /* the FTS5 query, empty when no q */
	bool has_q, no_words;
	const char *category;
	int64_t min_price, max_price, limit;
	int in_stock;
	enum sort sort;
	bool has_cursor;
	int64_t cur_value; /* price, sold or offset */
	char cur_id[SHOP_ID_MAX + 1];
} search;

/* Turns the user's q into an FTS5 query of quoted words ("a" "b": all
 * must match), words as the index's tokenizer splits and folds them
 * (cleave_rtx_fts_query): no FTS5 syntax can get through. */
static int fts_query(search *s, const char *q)
{
	int words = 0;
	int rc = cleave_rtx_fts_query(cleave_query_rtx(s->q, 0), q, Q_WORDS_MAX,
	                              &s->fts, &words);
	if (rc == CLEAVE_EINVAL)
		return cleave_query_fail(s->q, CLEAVE_EINVAL,
		                         "invalid_parameter",
		                         "parameter 'q' has more than %d words",
		                         Q_WORDS_MAX);
	if (rc)
		return rc;
	s->no_words = words == 0;
	return 0;
}

static int parse_sort(search *s)
{
	static const struct {
		const char *name;
		enum sort sort;
	} sorts[] = {{"relevance", SORT_RELEVANCE},
	             {"price", SORT_PRICE},
	             {"-price", SORT_PRICE_DESC},
	             {"sold", SORT_SOLD}};
	const char *v = cleave_query_param(s->q, "sort");
	if (!v || !*v) {
		s->sort = s->has_q ? SORT_RELEVANCE : SORT_PRICE;
	} else {
		size_t i;
		for (i = 0; i < sizeof(sorts) / sizeof(*sorts); i++)
			if (!strcmp(v, sorts[i].name))
				break;
		if (i == sizeof(sorts) / sizeof(*sorts))
			return cleave_query_fail(
			    s->q, CLEAVE_EINVAL, "invalid_parameter",
			    "parameter 'sort' must be relevance, price, "
			    "-price or sold");
		s->sort = sorts[i].sort;
	}
	if (s->sort == SORT_RELEVANCE && !s->has_q)
		s->sort = SORT_ID;
	return 0;
}

/* Cursor text (before hex): "<sort code>|<value>|<productId>". */
static int parse_cursor(search *s)
{
	const char *v = cleave_query_param(s->q, "cursor");
	char text[128], *p, *end;
	if (!v || !*v)
		return 0;
	if (!dom_hex_decode(v, text, sizeof(text)) ||
	    text[0] != sort_codes[s->sort] || text[1] != '|')
		goto bad;
	p = text + 2;
	long long val = strtoll(p, &end, 10);
	if (end == p || *end != '|' || val < 0 || val > DOM_EXACT_MAX)
		goto bad;
	p = end + 1;
	if (strlen(p) > SHOP_ID_MAX)
		goto bad;
	s->cur_value = val;
	strcpy(s->cur_id, p);
	s->has_cursor = true;
	return 0;
bad:
	return cleave_query_fail(s->q, CLEAVE_EINVAL, "invalid_cursor",
	                         "parameter 'cursor' is not a cursor this "
	                         "query gave out for sort '%s'",
	                         cleave_query_param(s->q, "sort")
	                             ? cleave_query_param(s->q, "sort")
	                             : "(default)");
}

static void make_cursor(const search *s, int64_t value, const char *id,
                        char *out)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "%c|%" PRId64 "|%s",
	                 sort_codes[s->sort], value, id);
	dom_hex_encode(text, (size_t)n, out);
}

static int search_params(search *s)
{
	const char *qp;
	int rc;
	if ((rc = cleave_query_param_str(s->q, "q", false, Q_MAX, &qp)) ||
	    (rc = cleave_query_param_str(s->q, "category", false,
	                                 SHOP_CATEGORY_MAX, &s->category)) ||
	    (rc = cleave_query_param_int(s->q, "min_price", -1, 0,
	                                 DOM_EXACT_MAX, &s->min_price)) ||
	    (rc = cleave_query_param_int(s->q, "max_price", -1, 0,
	                                 DOM_EXACT_MAX, &s->max_price)) ||
	    (rc = cleave_query_param_bool(s->q, "in_stock", &s->in_stock)) ||
	    (rc = cleave_query_param_int(s->q, "limit", CLEAVE_PAGE_DEFAULT, 1,
	                                 PAGE_MAX, &s->limit)))
		return rc;
	s->has_q = qp != NULL;
	if (qp && (rc = fts_query(s, qp)))
		return rc;
	if ((rc = parse_sort(s)) || (rc = parse_cursor(s)))
		return rc;
	return 0;
}

/* Builds the SQL and its arguments: the filters, the keyset, the order. */
static int search_sql(search *s, char *sql, size_t cap, cleave_value *a,
                      int *na)
{
	int n = 0;
	size_t o = 0;
#define ADD(str)                                                               \
	o += (size_t)snprintf(sql + o, o < cap ? cap - o : 0, "%s", str)
	ADD("SELECT p.product_id, p.name, p.category, p.price_cents,"
	    " p.stock, p.sold");
	if (s->has_q) {
		ADD(" FROM products_fts JOIN products p"
		    " ON p.rid = products_fts.rowid"
		    " WHERE products_fts MATCH ?");
		a[n++] = cleave_text(s->fts.p ? s->fts.p : "");
	} else {
		ADD(" FROM products p WHERE 1 = 1");
	}
	if (s->category) {
		ADD(" AND p.category = ?");
		a[n++] = cleave_text(s->category);
	}
	if (s->min_price >= 0) {
		ADD(" AND p.price_cents >= ?");
		a[n++] = cleave_int(s->min_price);
	}
	if (s->max_price >= 0) {
		ADD(" AND p.price_cents <= ?");
		a[n++] = cleave_int(s->max_price);
	}
	if (s->in_stock == 1)
		ADD(" AND p.stock > 0");
	else if (s->in_stock == 0)
		ADD(" AND p.stock <= 0");
	if (s->has_cursor && s->sort != SORT_RELEVANCE) {
		if (s->sort == SORT_ID) {
			ADD(" AND p.product_id > ?");
		} else {
			const char *col =
			    s->sort == SORT_SOLD ? "p.sold" : "p.price_cents";
			const char *cmp = s->sort == SORT_PRICE ? ">" : "<";
			char k[160];
			snprintf(k, sizeof(k),
			         " AND (%s %s ? OR (%s = ? AND"
			         " p.product_id > ?))",
			         col, cmp, col);
			ADD(k);
			a[n++] = cleave_int(s->cur_value);
			a[n++] = cleave_int(s->cur_value);
		}
		a[n++] = cleave_text(s->cur_id);
	}
	switch (s->sort) {
	case SORT_RELEVANCE:
		ADD(" ORDER BY products_fts.rank, p.product_id");
		break;
	case SORT_PRICE:
		ADD(" ORDER BY p.price_cents, p.product_id");
		break;
	case SORT_PRICE_DESC:
		ADD(" ORDER BY p.price_cents DESC, p.product_id");
		break;
	case SORT_SOLD:
		ADD(" ORDER BY p.sold DESC, p.product_id");
		break;
	case SORT_ID:
		ADD(" ORDER BY p.product_id");
		break;
	}
	ADD(" LIMIT ?");
	a[n++] = cleave_int(s->limit + 1); /* one more: is there a next page */
	if (s->sort == SORT_RELEVANCE) {
		ADD(" OFFSET ?");
		a[n++] = cleave_int(s->has_cursor ? s->cur_value : 0);
	}
#undef ADD
	*na = n;
	return o < cap ? 0 : CLEAVE_EINTERNAL;
}

static int search_answer(cleave_query *q, search *sp)
{
	char sql[1024], cursor[2 * 128 + 1];
	cleave_value a[12];
	int na = 0, rc;
	cleave_rows *r = NULL;
	if ((rc = search_params(sp)))
		return rc;
	cJSON *items = cJSON_CreateArray();
	if (!items)
		return q_oom(q);
	if (sp->no_words)
		return reply_page(q, items, NULL);
	if ((rc = search_sql(sp, sql, sizeof(sql), a, &na)) ||
	    (rc = cleave_rtx_query(cleave_query_rtx(q, 0), sql, a, na, &r))) {
		cJSON_Delete(items);
		return rc;
	}
	int64_t count = 0, last_value = 0;
	char last_id[SHOP_ID_MAX + 1] = "";
	bool more = false;
	while ((rc = cleave_rows_next(r)) == 1) {
		if (count == sp->limit) {
			more = true;
			break;
		}
		shop_card c;
		c.product_id = cleave_rows_text(r, 0, NULL);
		c.name = cleave_rows_text(r, 1, NULL);
		c.category = cleave_rows_text(r, 2, NULL);
		c.price_cents = cleave_rows_int(r, 3);
		c.stock = cleave_rows_int(r, 4);
		c.sold = cleave_rows_int(r, 5);
		if (!c.product_id || !c.name || !c.category) {
			rc = CLEAVE_ECORRUPT;
			break;
		}
		char *text = shop_card_text(&c, NULL);
		cJSON *it = text ? cJSON_CreateRaw(text) : NULL;
		free(text);
		if (!it || !cJSON_AddItemToArray(items, it)) {
			cJSON_Delete(it);
			rc = CLEAVE_ENOMEM;
			break;
		}
		count++;
		snprintf(last_id, sizeof(last_id), "%s", c.product_id);
		last_value = sp->sort == SORT_SOLD ? c.sold : c.price_cents;
	}
	cleave_rows_close(r);
	if (rc < 0) {
		cJSON_Delete(items);
		return rc == CLEAVE_ENOMEM ? q_oom(q) : rc;
	}
	if (more) {
		if (sp->sort == SORT_RELEVANCE)
			last_value = (sp->has_cursor ? sp->cur_value : 0) + count;
		make_cursor(sp, last_value, last_id, cursor);
	}
	return reply_page(q, items, more ? cursor : NULL);
}

static int q_search_products(cleave_query *q)
{
	search s = {.q = q};
	int rc = search_answer(q, &s);
	cleave_buf_free(&s.fts);
	return rc;
}

/* ---- user_orders -------------------------------------------------------- */

static int q_user_orders(cleave_query *q)
{
	const char *user;
	int rc = cleave_query_param_str(q, "userId", true, SHOP_ID_MAX, &user);
	if (rc)
		return rc;
	return cleave_query_reply_page(q, cleave_query_rtx(q, 0), "by_user",
	                               user, NULL);
}

/* ---- revenue_daily ------------------------------------------------------ */

typedef struct days {
	cJSON *arr;
	bool oom;
} days;

static int day_row(void *arg, const char *key, const int64_t *vals, int n)
{
	days *d = arg;
	const char *day = strchr(key, 0x1F);
	cJSON *o = cJSON_CreateObject();
	if (!o || !cJSON_AddItemToArray(d->arr, o)) {
		cJSON_Delete(o);
		d->oom = true;
		return CLEAVE_ENOMEM;
	}
	if (!day || n < 2)
		return CLEAVE_ECORRUPT;
	if (!cJSON_AddStringToObject(o, "day", day + 1) ||
	    !dom_add_int(o, "orders", vals[0]) ||
	    !dom_add_int(o, "revenue_cents", vals[1])) {
		d->oom = true;
		return CLEAVE_ENOMEM;
	}
	return 0;
}

static int q_revenue_daily(cleave_query *q)
{
	const char *country, *from_s, *to_s;
	int64_t from, to;
	char from_key[32], to_key[32], end_day[11];
	int rc;
	if ((rc = cleave_query_param_str(q, "country", true, 2, &country)) ||
	    (rc = cleave_query_param_str(q, "from", true, 10, &from_s)) ||
	    (rc = cleave_query_param_str(q, "to", true, 10, &to_s)))
		return rc;
	if (!iso_country_ok(country))
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_country",
		                         "parameter 'country' must be an ISO "
		                         "3166-1 alpha-2 code");
	if (!cleave_day_parse(from_s, &from) || !cleave_day_parse(to_s, &to))
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
		                         "parameters 'from' and 'to' must be "
		                         "dates YYYY-MM-DD");
	if (from > to || to - from >= 366)
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
		                         "'from' must not be after 'to', and "
		                         "the range must be at most 366 days");
	cleave_day_format(to + 1, end_day);
	const char *fp[] = {country, from_s}, *tp[] = {country, end_day};
	if (cleave_key(from_key, sizeof(from_key), 2, fp) < 0 ||
	    cleave_key(to_key, sizeof(to_key), 2, tp) < 0)
		return cleave_query_fail(q, CLEAVE_EINTERNAL, NULL,
		                         "cannot build the range keys");
	days d = {cJSON_CreateArray(), false};
	cJSON *o = cJSON_CreateObject();
	if (!d.arr || !o || !cJSON_AddItemToObject(o, "days", d.arr)) {
		cJSON_Delete(o);
		cJSON_Delete(d.arr);
		return q_oom(q);
	}
	rc = cleave_rtx_counter_scan(cleave_query_rtx(q, 0), "daily", from_key,
	                             to_key, 0, day_row, &d);
	if (rc < 0) {
		cJSON_Delete(o);
		return d.oom ? q_oom(q) : rc;
	}
	return cleave_query_reply(q, o);
}

/* ---- top_products ------------------------------------------------------- */

typedef struct top {
	char ids[PAGE_MAX][SHOP_ID_MAX + 1];
	int64_t sold[PAGE_MAX];
	int n;
} top;

static int top_member(void *arg, const char *member, int64_t score)
{
	top *t = arg;
	if (score <= 0 || t->n == PAGE_MAX)
		return 1;
	snprintf(t->ids[t->n], sizeof(t->ids[0]), "%s", member);
	t->sold[t->n++] = score;
	return 0;
}

static int q_top_products(cleave_query *q)
{
	int64_t limit;
	top t;
	cleave_rtx *tx = cleave_query_rtx(q, 0);
	int rc = cleave_query_param_int(q, "limit", 10, 1, PAGE_MAX, &limit);
	if (rc)
		return rc;
	t.n = 0;
	if ((rc = cleave_rtx_zrange(tx, "sold", 0, (size_t)limit, top_member,
	                            &t)) < 0)
		return rc;
	cJSON *o = cJSON_CreateObject();
	cJSON *items = o ? cJSON_AddArrayToObject(o, "items") : NULL;
	bool ok = items != NULL;
	for (int i = 0; ok && i < t.n; i++) {
		const void *v;
		size_t len;
		char name[SHOP_NAME_MAX + 1] = "";
		rc = cleave_rtx_get(tx, "names", t.ids[i], &v, &len);
		if (rc && rc != CLEAVE_ENOTFOUND) {
			cJSON_Delete(o);
			return rc;
		}
		if (!rc) {
			len = len < SHOP_NAME_MAX ? len : SHOP_NAME_MAX;
			memcpy(name, v, len);
			name[len] = 0;
		}
		cJSON *it = cJSON_CreateObject();
		if (it && !cJSON_AddItemToArray(items, it)) {
			cJSON_Delete(it);
			it = NULL;
		}
		ok = it && cJSON_AddStringToObject(it, "productId", t.ids[i]) &&
		     cJSON_AddStringToObject(it, "name", name) &&
		     dom_add_int(it, "sold", t.sold[i]);
	}
	if (!ok) {
		cJSON_Delete(o);
		return q_oom(q);
	}
	return cleave_query_reply(q, o);
}

/* ---- the table ---------------------------------------------------------- */

static const char *const reads_catalog[] = {"catalog", NULL};
static const char *const reads_search[] = {"search", NULL};
static const char *const reads_orders[] = {"orders", NULL};
static const char *const reads_revenue[] = {"revenue", NULL};
static const char *const reads_bestsellers[] = {"bestsellers", NULL};

const cleave_query_def shop_queries[] = {
    {"product", q_product, reads_catalog, "a product card by productId"},
    {"search_products", q_search_products, reads_search,
     "full-text search with filters, sorts and cursor pages"},
    {"order", q_order, reads_orders, "an order with lines and totals"},
    {"user_orders", q_user_orders, reads_orders,
     "a user's orders, newest first, in cursor pages"},
    {"revenue_daily", q_revenue_daily, reads_revenue,
     "a country's orders and revenue per UTC day"},
    {"top_products", q_top_products, reads_bestsellers,
     "best sellers by units sold net of cancellations"},
    {NULL},
};
