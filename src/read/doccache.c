/*
 * doccache.c — JSON documents parsed once per read-store transaction.
 *
 * A document projection's handler reads a document, changes a field and
 * writes it back, event after event.  Parsing and printing it each time
 * costs more than the store does.  cleave_rtx_doc hands out the parsed
 * tree, kept by the transaction for its lifetime; cleave_rtx_doc_put marks
 * it changed; the changed ones are printed and written once, when the
 * transaction commits (cl_rtx_commit), in the order they were first
 * touched.  A rebuild applies thousands of events per transaction, so a
 * hot document is parsed and printed once per batch instead of once per
 * event.
 */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/util.h"
#include "read/rstore_int.h"

typedef struct doc {
	char *ns, *key;
	uint64_t hash;
	cJSON *tree; /* NULL: known absent (or deleted) */
	bool dirty;
} doc;

struct cl_docs {
	doc *v;        /* insertion order */
	size_t n, cap;
	size_t *slot;  /* open addressing: index + 1, 0 empty */
	size_t scap;
};

static uint64_t doc_hash(const char *ns, const char *key)
{
	return cl_hash_str(ns) * 31 ^ cl_hash_str(key);
}

static void docs_free(cl_docs *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++) {
		cJSON_Delete(d->v[i].tree);
		free(d->v[i].ns);
		free(d->v[i].key);
	}
	free(d->v);
	free(d->slot);
	free(d);
}

static doc *docs_find(cl_docs *d, const char *ns, const char *key,
		      uint64_t h)
{
	if (!d || !d->scap)
		return NULL;
	size_t j = h & (d->scap - 1);
	for (; d->slot[j]; j = (j + 1) & (d->scap - 1)) {
		doc *x = &d->v[d->slot[j] - 1];
		if (x->hash == h && !strcmp(x->key, key) && !strcmp(x->ns, ns))
			return x;
	}
	return NULL;
}

static int docs_rehash(cl_docs *d, size_t scap)
{
	size_t *slot = calloc(scap, sizeof(*slot));
	if (!slot)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	for (size_t i = 0; i < d->n; i++) {
		size_t j = d->v[i].hash & (scap - 1);
		while (slot[j])
			j = (j + 1) & (scap - 1);
		slot[j] = i + 1;
	}
	free(d->slot);
	d->slot = slot;
	d->scap = scap;
	return 0;
}

static int docs_add(cleave_rtx *tx, const char *ns, const char *key,
		    uint64_t h, cJSON *tree, doc **out)
{
	cl_docs *d = tx->docs;
	if (!d && !(d = tx->docs = calloc(1, sizeof(*d))))
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		doc *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		d->v = v;
		d->cap = cap;
	}
	if ((d->n + 1) * 2 > d->scap) {
		int rc = docs_rehash(d, d->scap ? d->scap * 2 : 128);
		if (rc)
			return rc;
	}
	doc *x = &d->v[d->n];
	x->ns = strdup(ns);
	x->key = strdup(key);
	if (!x->ns || !x->key) {
		free(x->ns);
		free(x->key);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	x->hash = h;
	x->tree = tree;
	x->dirty = false;
	size_t j = h & (d->scap - 1);
	while (d->slot[j])
		j = (j + 1) & (d->scap - 1);
	d->slot[j] = ++d->n;
	*out = x;
	return 0;
}

int cleave_rtx_doc(cleave_rtx *tx, const char *ns, const char *key,
		   cJSON **out)
{
	*out = NULL;
	uint64_t h = doc_hash(ns, key);
	doc *x = docs_find(tx->docs, ns, key, h);
	if (x) {
		*out = x->tree;
		return x->tree ? 0 : CLEAVE_ENOTFOUND;
	}
	const void *v;
	size_t len;
	int rc = cleave_rtx_get(tx, ns, key, &v, &len);
	if (rc && rc != CLEAVE_ENOTFOUND)
		return rc;
	cJSON *tree = NULL;
	if (rc == 0 && !(tree = cJSON_ParseWithLength(v, len)))
		return cl_err(CLEAVE_ECORRUPT,
			      "document %s/%s is not JSON", ns, key);
	int arc = docs_add(tx, ns, key, h, tree, &x);
	if (arc) {
		cJSON_Delete(tree);
		return arc;
	}
	*out = tree;
	return rc;
}

int cleave_rtx_doc_put(cleave_rtx *tx, const char *ns, const char *key,
		       cJSON *tree)
{
	if (!tx->write) {
		if (!docs_find(tx->docs, ns, key, doc_hash(ns, key)))
			cJSON_Delete(tree);
		return cl_err(CLEAVE_EREADONLY, "read-only transaction");
	}
	if (!tree)
		return cl_err(CLEAVE_EINVAL, "document is NULL");
	uint64_t h = doc_hash(ns, key);
	doc *x = docs_find(tx->docs, ns, key, h);
	if (!x) {
		int rc = docs_add(tx, ns, key, h, tree, &x);
		if (rc) {
			cJSON_Delete(tree);
			return rc;
		}
	} else if (x->tree != tree) {
		cJSON_Delete(x->tree);
		x->tree = tree;
	}
	x->dirty = true;
	return 0;
}

int cleave_rtx_doc_del(cleave_rtx *tx, const char *ns, const char *key)
{
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY, "read-only transaction");
	uint64_t h = doc_hash(ns, key);
	doc *x = docs_find(tx->docs, ns, key, h);
	if (!x) {
		int rc = docs_add(tx, ns, key, h, NULL, &x);
		if (rc)
			return rc;
	}
	cJSON_Delete(x->tree);
	x->tree = NULL;
	x->dirty = true;
	return 0;
}

/* Writes the changed documents; the cache stays until the end. */
static int docs_flush(cleave_rtx *tx)
{
	cl_docs *d = tx->docs;
	if (!d)
		return 0;
	cleave_buf b;
	cleave_buf_init(&b);
	int rc = 0;
	for (size_t i = 0; i < d->n && !rc; i++) {
		doc *x = &d->v[i];
		if (!x->dirty)
			continue;
		if (!x->tree) {
			rc = cleave_rtx_del(tx, x->ns, x->key);
			continue;
		}
		cleave_buf_reset(&b);
		cl_json_write(&b, x->tree);
		if (b.oom)
			rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		else
			rc = cleave_rtx_put(tx, x->ns, x->key, b.p, b.len);
		x->dirty = false;
	}
	cleave_buf_free(&b);
	return rc;
}

/* ---- deferred writes ---------------------------------------------------- */

struct cl_defer {
	const void *key;
	cleave_flush_fn flush;
	void *arg;
	void (*free_fn)(void *arg);
};

int cleave_rtx_defer(cleave_rtx *tx, const void *key, cleave_flush_fn flush,
		     void *arg, void (*free_fn)(void *arg))
{
	if (!tx || !key || !flush)
		return cl_err(CLEAVE_EINVAL, "defer: NULL key or flush");
	if (!tx->write)
		return cl_err(CLEAVE_EINVAL, "defer: a read-only transaction");
	if (cleave_rtx_deferred(tx, key))
		return cl_err(CLEAVE_EINVAL, "defer: key already registered");
	if (tx->ndefer == tx->capdefer) {
		int cap = tx->capdefer ? tx->capdefer * 2 : 4;
		struct cl_defer *v = realloc(tx->defer, (size_t)cap * sizeof(*v));
		if (!v)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		tx->defer = v;
		tx->capdefer = cap;
	}
	tx->defer[tx->ndefer++] = (struct cl_defer){key, flush, arg, free_fn};
	return 0;
}

void *cleave_rtx_deferred(cleave_rtx *tx, const void *key)
{
	for (int i = 0; tx && i < tx->ndefer; i++)
		if (tx->defer[i].key == key)
			return tx->defer[i].arg;
	return NULL;
}

static void defer_free(cleave_rtx *tx)
{
	for (int i = 0; i < tx->ndefer; i++)
		if (tx->defer[i].free_fn)
			tx->defer[i].free_fn(tx->defer[i].arg);
	free(tx->defer);
	tx->defer = NULL;
	tx->ndefer = tx->capdefer = 0;
}

int cl_rtx_flush(cleave_rtx *tx)
{
	for (int i = 0; i < tx->ndefer; i++) {
		int rc = tx->defer[i].flush(tx, tx->defer[i].arg);
		if (rc)
			return rc;
	}
	return docs_flush(tx);
}

int cl_rtx_commit(cleave_rtx *tx)
{
	int rc = cl_rtx_flush(tx);
	defer_free(tx);
	docs_free(tx->docs);
	tx->docs = NULL;
	tx->rec = NULL;
	if (rc) {
		tx->m->abort(tx);
		return rc;
	}
	return tx->m->commit(tx);
}

void cl_rtx_abort(cleave_rtx *tx)
{
	defer_free(tx);
	docs_free(tx->docs);
	tx->docs = NULL;
	tx->rec = NULL;
	tx->m->abort(tx);
}
