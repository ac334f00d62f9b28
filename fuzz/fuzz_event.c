/*
 * fuzz_event.c — turning a stored event row into what projections see:
 * cl_event_from_stored parses the stored data and upcasts it, step by
 * step, to the type's current schema version.  The stored text normally
 * comes from cl_json_print, but a damaged or hand-edited store (or an old
 * writer) can hold anything: it must be refused as CLEAVE_ECORRUPT or
 * upcast, never crash.
 *
 * The domain here is the shop's with a history of schema changes of the
 * kind real upcasters make (renaming and retyping fields, filling
 * defaults, reshaping arrays, refusing what cannot be converted), so the
 * upcast chain runs over hostile trees.
 *
 * Input: byte 0 the stored schema_version (0..7), byte 1 picks the event
 * type, the rest is the stored data.
 *
 * Invariants: on success the event carries a tree and the row's fields
 * unchanged; on failure no tree and a negative code.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/json.h"
#include "fuzz.h"

/* OrderPlaced v1 {"total": n, "items": [[productId, qty, price]...]}
 *          -> v2 {"total_cents": n, "lines": [{productId, quantity,
 *                  unit_price_cents}]} */
static int order_v1(cJSON *d)
{
	cJSON *t = cJSON_DetachItemFromObjectCaseSensitive(d, "total");
	if (t) {
		if (!cJSON_IsNumber(t)) {
			cJSON_Delete(t);
			return CLEAVE_EINVAL;
		}
		cJSON_AddItemToObject(d, "total_cents", t);
	}
	cJSON *items = cJSON_DetachItemFromObjectCaseSensitive(d, "items");
	if (!items)
		return 0;
	cJSON *lines = cJSON_CreateArray();
	const cJSON *it;
	cJSON_ArrayForEach(it, items)
	{
		if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 3)
			continue;
		const cJSON *p = cJSON_GetArrayItem(it, 0);
		const cJSON *q = cJSON_GetArrayItem(it, 1);
		const cJSON *u = cJSON_GetArrayItem(it, 2);
		if (!cJSON_IsString(p) || !cJSON_IsNumber(q) ||
		    !cJSON_IsNumber(u)) {
			cJSON_Delete(items);
			cJSON_Delete(lines);
			return CLEAVE_EINVAL;
		}
		cJSON *l = cJSON_CreateObject();
		cJSON_AddStringToObject(l, "productId", p->valuestring);
		cJSON_AddNumberToObject(l, "quantity", q->valuedouble);
		cJSON_AddNumberToObject(l, "unit_price_cents", u->valuedouble);
		cJSON_AddItemToArray(lines, l);
	}
	cJSON_Delete(items);
	cJSON_AddItemToObject(d, "lines", lines);
	return 0;
}

/* OrderPlaced v2 -> v3: discount_cents defaults to 0; country upper. */
static int order_v2(cJSON *d)
{
	if (!cJSON_GetObjectItemCaseSensitive(d, "discount_cents"))
		cJSON_AddNumberToObject(d, "discount_cents", 0);
	cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "country");
	if (cJSON_IsString(c))
		for (char *p = c->valuestring; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
	return 0;
}

/* UserRegistered v1 {"first","last"} -> v2 {"name"}. */
static int user_v1(cJSON *d)
{
	const char *f = cleave_json_str(d, "first"), *l = cleave_json_str(d, "last");
	if (!f && !l)
		return 0;
	size_t n = (f ? strlen(f) : 0) + (l ? strlen(l) : 0) + 2;
	char *name = malloc(n);
	if (!name)
		return CLEAVE_ENOMEM;
	snprintf(name, n, "%s%s%s", f ? f : "", f && l ? " " : "",
	         l ? l : "");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "first");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "last");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "name");
	cJSON_AddStringToObject(d, "name", name);
	free(name);
	return 0;
}

/* ProductAdded v1 price as a decimal string "12.34" -> v2 price_cents. */
static int product_v1(cJSON *d)
{
	cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "price");
	if (!p)
		return 0;
	double cents;
	if (cJSON_IsString(p))
		cents = strtod(p->valuestring, NULL) * 100.0;
	else if (cJSON_IsNumber(p))
		cents = p->valuedouble * 100.0;
	else
		return CLEAVE_EINVAL;
	if (!(cents >= 0 && cents <= 1e15))
		return CLEAVE_EINVAL;
	cJSON_DeleteItemFromObjectCaseSensitive(d, "price");
	cJSON_DeleteItemFromObjectCaseSensitive(d, "price_cents");
	cJSON_AddNumberToObject(d, "price_cents", (double)(int64_t)cents);
	return 0;
}

/* Not an object any more than it was: refuse (the upcaster's own rule). */
static int any_v1(cJSON *d)
{
	return cJSON_IsObject(d) ? 0 : CLEAVE_ECORRUPT;
}

static const cleave_upcaster upcasters[] = {
    {"OrderPlaced", 1, order_v1},   {"OrderPlaced", 2, order_v2},
    {"UserRegistered", 1, user_v1}, {"ProductAdded", 1, product_v1},
    {"PriceChanged", 1, any_v1},    {NULL, 0, NULL},
};

static const cleave_event_type types[] = {
    {"OrderPlaced", 3},  {"UserRegistered", 2}, {"ProductAdded", 2},
    {"PriceChanged", 2}, {NULL, 0},
};

static const char *const type_names[] = {
    "OrderPlaced", "UserRegistered", "ProductAdded", "PriceChanged",
    "OrderCancelled", "",
};

static cleave_domain dom;
static cleave_engine *eng;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	dom.name = "fuzz";
	dom.event_types = types;
	dom.upcasters = upcasters;
	/* cl_event_from_stored reads only the engine's domain */
	eng = calloc(1, sizeof(*eng));
	eng->dom = &dom;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!eng)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size < 2)
		return 0;
	cl_stored_event s;
	memset(&s, 0, sizeof(s));
	s.position = 42;
	s.version = 7;
	s.ts_us = 1700000000000000;
	s.schema_version = data[0] & 7;
	s.stream = "order-o1";
	s.type = type_names[data[1] % (sizeof(type_names) /
	                               sizeof(type_names[0]))];
	s.trace_id = "t";
	s.command_id = "c";
	/* stored data is NUL-terminated TEXT; keep that, but the length is
	 * what counts */
	char *d = malloc(size - 1);
	memcpy(d, data + 2, size - 2);
	d[size - 2] = 0;
	s.data = d;
	s.data_len = size - 2;

	cleave_event ev;
	memset(&ev, 0, sizeof(ev));
	int rc = cl_event_from_stored(eng, &s, &ev, NULL, NULL);
	char *p = NULL;
	if (rc == 0) {
		FUZZ_CHECK(ev.json != NULL);
		FUZZ_CHECK(ev.position == 42 && ev.version == 7);
		FUZZ_CHECK(ev.type == s.type && ev.data == s.data);
		FUZZ_CHECK(ev.schema_version == s.schema_version);
		/* what a projection might do with it: print it */
		size_t n;
		p = cl_json_print(ev.json, &n);
		FUZZ_CHECK(p != NULL);
		cJSON_Delete((cJSON *)ev.json);
	} else {
		FUZZ_CHECK(rc < 0);
		FUZZ_CHECK(ev.json == NULL);
	}
	/* the arena parser (runners catching up) must agree with cJSON:
	 * where it accepts the text, the tree prints the same */
	cl_arena a = {0};
	bool in_arena = false;
	cleave_event ev2;
	memset(&ev2, 0, sizeof(ev2));
	int rc2 = cl_event_from_stored(eng, &s, &ev2, &a, &in_arena);
	if (in_arena) {
		FUZZ_CHECK(rc2 == 0);
		FUZZ_CHECK(rc == 0); /* it never accepts what cJSON refuses */
		char *p2 = cl_json_print(ev2.json, NULL);
		FUZZ_CHECK(p2 != NULL && p && !strcmp(p, p2));
		free(p2);
	} else if (rc2 == 0) {
		cJSON_Delete((cJSON *)ev2.json);
	}
	cl_arena_free(&a);
	free(p);
	free(d);
	return 0;
}
