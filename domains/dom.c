/*
 * dom.c — helpers shared by the domain modules (see dom.h).
 */
#include "dom.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- command handlers --------------------------------------------------- */

int dom_oom(cleave_cmd *c)
{
	return cleave_cmd_fail(c, CLEAVE_ENOMEM, NULL, "out of memory");
}

int64_t dom_now_s(const cleave_cmd *c)
{
	int64_t us = cleave_cmd_time_us(c);
	return (us >= 0 ? us : us - 999999) / 1000000;
}

void dom_rows_text(cleave_rows *r, int col, char *out, size_t cap)
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

int dom_emit(cleave_cmd *c, const char *prefix, const char *id,
             const char *type, cJSON *data, bool built)
{
	char stream[CLEAVE_STREAM_MAX + 1];
	if (!built) {
		cJSON_Delete(data);
		return dom_oom(c);
	}
	if ((size_t)snprintf(stream, sizeof(stream), "%s-%s", prefix, id) >=
	    sizeof(stream)) {
		cJSON_Delete(data);
		return cleave_cmd_fail(c, CLEAVE_EINTERNAL, NULL,
		                       "stream name %s-%s is too long", prefix,
		                       id);
	}
	return cleave_cmd_emit(c, stream, type, data);
}

/* ---- JSON --------------------------------------------------------------- */

/* A number item; cleave_json_print (dom_print) writes it as an exact
 * integer, and every integer here is within 2^53 (see the limits). */
cJSON *dom_int_item(int64_t v)
{
	return cJSON_CreateNumber((double)v);
}

cJSON *dom_add_int(cJSON *obj, const char *name, int64_t v)
{
	cJSON *it = dom_int_item(v);
	if (!it)
		return NULL;
	if (!cJSON_AddItemToObject(obj, name, it)) {
		cJSON_Delete(it);
		return NULL;
	}
	return it;
}

char *dom_print(const cJSON *v, size_t *len)
{
	return cleave_json_print(v, len);
}

/* ---- per-batch accumulators -------------------------------------------- */

typedef struct acc_ent {
	char *id;
	uint64_t hash;
	int64_t v[2];
} acc_ent;

struct dom_acc {
	acc_ent *v; /* first-touched order */
	size_t n, cap;
	size_t *slot; /* open addressing: index + 1, 0 empty */
	size_t scap;
};

static uint64_t acc_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

void dom_acc_clear(dom_acc *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].id);
	a->n = 0;
	if (a->slot)
		memset(a->slot, 0, a->scap * sizeof(*a->slot));
}

static void acc_free(void *arg)
{
	dom_acc *a = arg;
	dom_acc_clear(a);
	free(a->v);
	free(a->slot);
	free(a);
}

int dom_acc_get(cleave_rtx *tx, const void *key, cleave_flush_fn flush,
                dom_acc **out)
{
	dom_acc *a = cleave_rtx_deferred(tx, key);
	if (!a) {
		int rc;
		if (!(a = calloc(1, sizeof(*a))))
			return CLEAVE_ENOMEM;
		if ((rc = cleave_rtx_defer(tx, key, flush, a, acc_free))) {
			free(a);
			return rc;
		}
	}
	*out = a;
	return 0;
}

static bool acc_rehash(dom_acc *a, size_t scap)
{
	size_t *slot = calloc(scap, sizeof(*slot));
	if (!slot)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		size_t j = a->v[i].hash & (scap - 1);
		while (slot[j])
			j = (j + 1) & (scap - 1);
		slot[j] = i + 1;
	}
	free(a->slot);
	a->slot = slot;
	a->scap = scap;
	return true;
}

int64_t *dom_acc_at(dom_acc *a, const char *id)
{
	uint64_t h = acc_hash(id);
	for (size_t j = a->scap ? h & (a->scap - 1) : 0; a->scap && a->slot[j];
	     j = (j + 1) & (a->scap - 1)) {
		acc_ent *x = &a->v[a->slot[j] - 1];
		if (x->hash == h && !strcmp(x->id, id))
			return x->v;
	}
	if ((a->n + 1) * 2 > a->scap &&
	    !acc_rehash(a, a->scap ? a->scap * 2 : 64))
		return NULL;
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		acc_ent *v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return NULL;
		a->v = v;
		a->cap = cap;
	}
	char *copy = strdup(id);
	if (!copy)
		return NULL;
	a->v[a->n] = (acc_ent){copy, h, {0, 0}};
	size_t j = h & (a->scap - 1);
	while (a->slot[j])
		j = (j + 1) & (a->scap - 1);
	a->slot[j] = ++a->n;
	return a->v[a->n - 1].v;
}

size_t dom_acc_count(const dom_acc *a)
{
	return a->n;
}

const char *dom_acc_id(const dom_acc *a, size_t i)
{
	return a->v[i].id;
}

int64_t *dom_acc_vals(dom_acc *a, size_t i)
{
	return a->v[i].v;
}

/* ---- query parameters --------------------------------------------------- */

void dom_hex_encode(const char *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[(unsigned char)s[i] >> 4];
		out[2 * i + 1] = hex[(unsigned char)s[i] & 15];
	}
	out[2 * n] = 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool dom_hex_decode(const char *hex, char *out, size_t cap)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 + 1 > cap)
		return false;
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		out[i] = (char)(hi << 4 | lo);
		if (!out[i])
			return false;
	}
	out[n / 2] = 0;
	return true;
}
