/*
 * page.c — query helpers every domain needs (cleave.h "Queries"): boolean
 * and cursor parameters, and a page of a list, newest first, with a cursor.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleave.h"

int cleave_query_param_bool(cleave_query *q, const char *name, int *out)
{
	const char *v = cleave_query_param(q, name);
	*out = -1;
	if (!v || !*v)
		return 0;
	if (!strcmp(v, "true") || !strcmp(v, "1"))
		*out = 1;
	else if (!strcmp(v, "false") || !strcmp(v, "0"))
		*out = 0;
	else
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_parameter",
		                         "parameter '%s' must be true, false, "
		                         "1 or 0",
		                         name);
	return 0;
}

int cleave_query_param_cursor(cleave_query *q, const char *name, int64_t *out)
{
	const char *v = cleave_query_param(q, name);
	*out = INT64_MAX;
	if (!v || !*v)
		return 0;
	size_t n = strlen(v);
	bool ok = n <= 18 && v[0] != '0';
	for (size_t i = 0; ok && i < n; i++)
		ok = v[i] >= '0' && v[i] <= '9';
	if (!ok)
		return cleave_query_fail(q, CLEAVE_EINVAL, "invalid_cursor",
		                         "parameter '%s' is not a cursor this "
		                         "query gave out",
		                         name);
	*out = strtoll(v, NULL, 10);
	return 0;
}

typedef struct page {
	cJSON *items;
	int64_t want, count, last_seq;
	bool more, oom;
} page;

static int page_item(void *arg, int64_t seq, const void *val, size_t len)
{
	page *p = arg;
	if (p->count == p->want) {
		p->more = true; /* one item past the page: there is a next */
		return 1;
	}
	char *text = malloc(len + 1);
	cJSON *it = NULL;
	if (text) {
		memcpy(text, val, len);
		text[len] = 0;
		it = cJSON_CreateRaw(text);
		free(text);
	}
	if (!it || !cJSON_AddItemToArray(p->items, it)) {
		cJSON_Delete(it);
		p->oom = true;
		return CLEAVE_ENOMEM;
	}
	p->count++;
	p->last_seq = seq;
	return 0;
}

int cleave_query_reply_page(cleave_query *q, cleave_rtx *tx, const char *ns,
                            const char *list, const cleave_page_opts *o)
{
	static const cleave_page_opts dflt = {0};
	if (!o)
		o = &dflt;
	const char *lp = o->limit_param ? o->limit_param : "limit";
	const char *cp = o->cursor_param ? o->cursor_param : "cursor";
	const char *ik = o->items_key ? o->items_key : "items";
	const char *nk = o->next_key ? o->next_key : "next_cursor";
	int64_t ld = o->limit_default ? o->limit_default : CLEAVE_PAGE_DEFAULT;
	int64_t lm = o->limit_max ? o->limit_max : CLEAVE_PAGE_MAX;
	int64_t before;
	page p = {0};
	char cursor[24];
	int rc;
	if ((rc = cleave_query_param_int(q, lp, ld, 1, lm, &p.want)) ||
	    (rc = cleave_query_param_cursor(q, cp, &before)))
		return rc;
	cJSON *ans = cJSON_CreateObject();
	p.items = ans ? cJSON_AddArrayToObject(ans, ik) : NULL;
	if (!p.items) {
		cJSON_Delete(ans);
		return cleave_query_fail(q, CLEAVE_ENOMEM, NULL,
		                         "out of memory");
	}
	rc = cleave_rtx_list_page(tx, ns, list, before, (size_t)p.want + 1,
	                          page_item, &p);
	if (rc < 0) {
		cJSON_Delete(ans);
		return p.oom ? cleave_query_fail(q, CLEAVE_ENOMEM, NULL,
		                                 "out of memory")
		             : rc;
	}
	if (o->missing_code && p.count == 0 && before == INT64_MAX) {
		cJSON_Delete(ans);
		return cleave_query_fail(q, CLEAVE_ENOTFOUND, o->missing_code,
		                         "no %s '%s'",
		                         o->what ? o->what : "list", list);
	}
	snprintf(cursor, sizeof(cursor), "%" PRId64, p.last_seq);
	if (!(p.more ? cJSON_AddStringToObject(ans, nk, cursor)
	             : cJSON_AddNullToObject(ans, nk))) {
		cJSON_Delete(ans);
		return cleave_query_fail(q, CLEAVE_ENOMEM, NULL,
		                         "out of memory");
	}
	return cleave_query_reply(q, ans);
}
