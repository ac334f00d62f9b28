/*
 * rstore_redis_tx.c — transactions of the "redis" read store.
 *
 * A write transaction reads through to Redis and keeps its writes in
 * memory (an overlay that its own reads and scans see); commit sends them,
 * with the checkpoint, as one MULTI/EXEC, which Redis applies atomically: a
 * reader sees a commit whole or not at all.  One write transaction at a
 * time per store (wmu), and one writing process per prefix — the engine's
 * data directory lock gives that when each engine has its own prefix.  A
 * read transaction is a connection from a pool; Redis has no snapshots, so
 * each read sees the latest commit, and two reads in one transaction may
 * see two commits (a query answer reflects at least the position it
 * states).  dump (verify) holds wmu, so it sees one commit of the copy
 * throughout.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_redis_int.h"

/* ---- the checkpoint in Redis ------------------------------------------- */

/* The checkpoint in a reply: nil is 0, else 8 bytes little-endian. */
int cl_rd_ckpt_decode(const rd_store *s, const char *v, size_t n, int64_t *pos)
{
	if (n != 8)
		return cl_err(CLEAVE_ECORRUPT,
		              "redis %s: checkpoint of %zu "
		              "bytes",
		              s->prefix, n);
	*pos = cl_get_le64(v);
	return 0;
}

/* The checkpoint in Redis now, watched (WATCH) on c when `watch`: an
 * EXEC on c then fails if anything changed it meanwhile. */
int cl_rd_ckpt_read(rd_store *s, redisContext *c, bool watch, int64_t *pos)
{
	char k[RKEY_CAP];
	size_t kl = cl_rd_key(s, "h", RD_META, k, sizeof(k));
	const char *wv[2] = {"WATCH", k};
	size_t wl[2] = {5, kl};
	const char *gv[3] = {"HGET", k, RD_CKPT};
	size_t gl[3] = {4, kl, sizeof(RD_CKPT) - 1};
	if (watch)
		redisAppendCommandArgv(c, 2, wv, wl);
	redisAppendCommandArgv(c, 3, gv, gl);
	int rc = 0;
	*pos = 0;
	for (int i = watch ? 0 : 1; i < 2; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
			if (!rc)
				rc = cl_rd_ctx_err(s, c, "checkpoint");
			return rc; /* the connection is unusable */
		}
		if (!rc && r->type == REDIS_REPLY_ERROR)
			rc = cl_rd_reply_err(s, r, "checkpoint");
		else if (!rc && i == 1 && r->type == REDIS_REPLY_STRING)
			rc = cl_rd_ckpt_decode(s, r->str, r->len, pos);
		else if (!rc && i == 1 && r->type != REDIS_REPLY_NIL)
			rc = cl_err(CLEAVE_EIO, "redis: checkpoint: unexpected "
			                        "reply");
		freeReplyObject(r);
	}
	return rc;
}

/* ---- the transaction's memory ------------------------------------------ */

static void *arena_copy(rd_tx *t, const void *p, size_t n)
{
	rd_chunk *c = t->arena;
	size_t need = n + 1; /* a NUL after keys */
	if (!c || c->cap - c->used < need) {
		size_t cap = CL_MAX((size_t)16384, need);
		rd_chunk *nc = malloc(sizeof(*nc) + cap);
		if (!nc)
			return NULL;
		nc->cap = cap;
		nc->used = 0;
		nc->next = c;
		t->arena = c = nc;
	}
	char *d = c->mem + c->used;
	if (n)
		memcpy(d, p, n);
	d[n] = 0;
	c->used += (need + 7) & ~(size_t)7; /* 8-byte aligned values */
	if (c->used > c->cap)
		c->used = c->cap;
	return d;
}

int cl_rd_keep_reply(rd_tx *t, redisReply *r)
{
	if (t->nkeep == t->capkeep) {
		size_t cap = t->capkeep ? t->capkeep * 2 : 16;
		redisReply **p = realloc(t->keep, cap * sizeof(*p));
		if (!p) {
			freeReplyObject(r);
			return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		}
		t->keep = p;
		t->capkeep = cap;
	}
	t->keep[t->nkeep++] = r;
	return 0;
}

/* ---- the overlay ------------------------------------------------------- */

static uint64_t op_hash(const char *ns, const char *key, size_t klen)
{
	return cl_hash(key, klen) ^ (cl_hash_str(ns) * 0x9e3779b97f4a7c15ull);
}

static rd_op *op_find(rd_tx *t, const char *ns, const char *key, size_t klen,
                      uint64_t h, size_t *slot)
{
	if (!t->nslots)
		return NULL;
	for (size_t i = h & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
		uint32_t v = t->slots[i];
		if (!v) {
			if (slot)
				*slot = i;
			return NULL;
		}
		rd_op *o = &t->ops[v - 1];
		if (o->hash == h && o->klen == klen && !strcmp(o->ns, ns) &&
		    !memcmp(o->key, key, klen))
			return o;
	}
}

static int grow_slots(rd_tx *t)
{
	size_t n = t->nslots ? t->nslots * 2 : 256;
	uint32_t *sl = calloc(n, sizeof(*sl));
	if (!sl)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	for (size_t k = 0; k < t->nops; k++) {
		size_t i = t->ops[k].hash & (n - 1);
		while (sl[i])
			i = (i + 1) & (n - 1);
		sl[i] = (uint32_t)(k + 1);
	}
	free(t->slots);
	t->slots = sl;
	t->nslots = n;
	return 0;
}

/* Namespaces are interned in the arena once per transaction. */
static const char *ns_intern(rd_tx *t, const char *ns)
{
	for (size_t i = t->nops; i-- > 0 && i + 64 > t->nops;)
		if (!strcmp(t->ops[i].ns, ns))
			return t->ops[i].ns;
	return arena_copy(t, ns, strlen(ns));
}

int cl_rd_overlay_set(rd_tx *t, const char *ns, const char *key,
                      const void *val, size_t vlen, bool del)
{
	size_t klen = strlen(key), slot = 0;
	uint64_t h = op_hash(ns, key, klen);
	rd_op *o = op_find(t, ns, key, klen, h, &slot);
	const char *v = NULL;
	if (!del && !(v = arena_copy(t, val, vlen)))
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	if (o) { /* the old value stays in the arena: it may be held */
		o->val = v;
		o->vlen = vlen;
		o->del = del;
		return 0;
	}
	if ((t->nops + 1) * 2 > t->nslots) {
		int rc = grow_slots(t);
		if (rc)
			return rc;
		op_find(t, ns, key, klen, h, &slot);
	}
	if (t->nops == t->capops) {
		size_t cap = t->capops ? t->capops * 2 : 64;
		rd_op *p = realloc(t->ops, cap * sizeof(*p));
		if (!p)
			return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		t->ops = p;
		t->capops = cap;
	}
	const char *n = ns_intern(t, ns);
	const char *k = arena_copy(t, key, klen);
	if (!n || !k)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	t->ops[t->nops] = (rd_op){n, k, v, klen, vlen, h, del};
	t->slots[slot] = (uint32_t)(++t->nops);
	return 0;
}

rd_op *cl_rd_overlay_find(rd_tx *t, const char *ns, const char *key,
                          size_t klen)
{
	return op_find(t, ns, key, klen, op_hash(ns, key, klen), NULL);
}

/* ---- transactions ------------------------------------------------------ */

static void tx_free(rd_tx *t)
{
	for (size_t i = 0; i < t->nkeep; i++)
		freeReplyObject(t->keep[i]);
	free(t->keep);
	for (rd_chunk *c = t->arena, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	free(t->ops);
	free(t->slots);
	cl_rd_conn_put(t->s, t->c, t->broken);
	if (t->base.write)
		pthread_mutex_unlock(&t->s->wmu);
	free(t);
}

/* Redis may have lost commits (a restart from an older append-only file
 * or snapshot, or empty; a failover to a lagging replica): then the
 * checkpoint there is not the one this store left, and applying events on
 * top would skip those in between — or run handlers on data that is not
 * there.  A write transaction checks first and fails with EIO (the runner
 * retries, then reopens the copy and applies again from Redis's
 * checkpoint).  The WATCH makes its EXEC fail if the checkpoint changes
 * before it commits. */
static int check_ckpt(rd_tx *t)
{
	rd_store *s = t->s;
	int64_t there;
	int rc = cl_rd_ckpt_read(s, t->c, true, &there);
	if (rc || there == s->ckpt)
		return rc;
	return cl_err(CLEAVE_EIO,
	              "redis %s:%d: %s: the checkpoint there is %lld, this "
	              "engine left %lld: Redis lost writes (restarted from "
	              "older data?); the copy is read again from its "
	              "checkpoint",
	              s->host, s->port, s->prefix, (long long)there,
	              (long long)s->ckpt);
}

int cl_rd_begin(cl_rstore *base, bool write, cleave_rtx **out)
{
	rd_store *s = (rd_store *)base;
	*out = NULL;
	if (write && s->read_only)
		return cl_err(CLEAVE_EREADONLY, "redis %s: opened read-only",
		              s->prefix);
	rd_tx *t = calloc(1, sizeof(*t));
	if (!t)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	t->base.m = &cl_rstore_redis;
	t->base.store = base;
	t->base.write = write;
	t->s = s;
	if (write && pthread_mutex_lock(&s->wmu)) {
		free(t);
		return cl_err(CLEAVE_EBUSY,
		              "redis %s: a write transaction is already open "
		              "on this thread",
		              s->prefix);
	}
	if (!write)
		t->deadline_us = cl_mono_us() + RD_READ_TIMEOUT_MS * 1000;
	int rc = cl_rd_conn_get(s, write, &t->c);
	if (rc) {
		if (write)
			pthread_mutex_unlock(&s->wmu);
		free(t);
		return rc;
	}
	if (write && (rc = check_ckpt(t))) {
		t->broken = true;
		tx_free(t);
		return rc;
	}
	*out = &t->base;
	return 0;
}

void cl_rd_abort(cleave_rtx *tx)
{
	rd_tx *t = (rd_tx *)tx;
	if (tx->write && !t->broken) { /* the next EXEC is not ours */
		redisReply *r = redisCommand(t->c, "UNWATCH");
		if (!r || r->type == REDIS_REPLY_ERROR)
			t->broken = true;
		if (r)
			freeReplyObject(r);
	}
	tx_free(t);
}

/* Sends the overlay as one MULTI/EXEC: per put HSET + ZADD, per delete
 * HDEL + ZREM, one SADD of the namespaces written. */
int cl_rd_commit(cleave_rtx *tx)
{
	rd_tx *t = (rd_tx *)tx;
	rd_store *s = t->s;
	redisContext *c = t->c;
	int rc = 0;
	size_t sent = 0;
	if (!tx->write || t->nops == 0) {
		cl_rd_abort(tx); /* nothing to send; drops the begin's WATCH */
		return 0;
	}
	const rd_op *cop =
	    op_find(t, RD_META, RD_CKPT, sizeof(RD_CKPT) - 1,
	            op_hash(RD_META, RD_CKPT, sizeof(RD_CKPT) - 1), NULL);
	/* the distinct namespaces (interned: compare pointers first) */
	const char **nss = malloc((t->nops + 2) * sizeof(*nss));
	size_t argcap = 2 + t->nops + 1;
	const char **av = malloc(argcap * sizeof(*av));
	size_t *al = malloc(argcap * sizeof(*al));
	char(*keys)[RKEY_CAP] = NULL;
	size_t nns = 0;
	if (!nss || !av || !al) {
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		goto out;
	}
	for (size_t i = 0; i < t->nops; i++) {
		size_t k = 0;
		while (k < nns && nss[k] != t->ops[i].ns &&
		       strcmp(nss[k], t->ops[i].ns))
			k++;
		if (k == nns)
			nss[nns++] = t->ops[i].ns;
	}
	keys = malloc(2 * nns * sizeof(*keys));
	if (!keys) {
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		goto out;
	}
	redisAppendCommand(c, "MULTI");
	sent++;
	for (size_t k = 0; k < nns; k++) {
		char *h = keys[2 * k], *z = keys[2 * k + 1];
		size_t hl = cl_rd_key(s, "h", nss[k], h, RKEY_CAP);
		size_t zl = cl_rd_key(s, "z", nss[k], z, RKEY_CAP);
		for (size_t i = 0; i < t->nops; i++) {
			const rd_op *o = &t->ops[i];
			if (o->ns != nss[k] && strcmp(o->ns, nss[k]))
				continue;
			if (o->del) {
				const char *a1[3] = {"HDEL", h, o->key};
				size_t l1[3] = {4, hl, o->klen};
				const char *a2[3] = {"ZREM", z, o->key};
				size_t l2[3] = {4, zl, o->klen};
				redisAppendCommandArgv(c, 3, a1, l1);
				redisAppendCommandArgv(c, 3, a2, l2);
			} else {
				const char *a1[4] = {"HSET", h, o->key, o->val};
				size_t l1[4] = {4, hl, o->klen, o->vlen};
				const char *a2[4] = {"ZADD", z, "0", o->key};
				size_t l2[4] = {4, zl, 1, o->klen};
				redisAppendCommandArgv(c, 4, a1, l1);
				redisAppendCommandArgv(c, 4, a2, l2);
			}
			sent += 2;
		}
	}
	char setk[RKEY_CAP];
	av[0] = "SADD";
	al[0] = 4;
	av[1] = setk;
	al[1] = cl_rd_key(s, NULL, NULL, setk, sizeof(setk));
	for (size_t k = 0; k < nns; k++) {
		av[2 + k] = nss[k];
		al[2 + k] = strlen(nss[k]);
	}
	redisAppendCommandArgv(c, (int)(2 + nns), av, al);
	redisAppendCommand(c, "EXEC");
	sent += 2;
	/* Every reply must be read to keep the connection usable; the first
	 * error is the answer.  A command refused while queued (OOM) makes
	 * EXEC fail with EXECABORT and nothing is applied. */
	for (size_t i = 0; i < sent; i++) {
		redisReply *r = NULL;
		if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
			t->broken = true;
			if (!rc)
				rc = cl_rd_ctx_err(s, c, "commit");
			break;
		}
		if (!rc && r->type == REDIS_REPLY_ERROR)
			rc = cl_rd_reply_err(s, r, "commit");
		if (!rc && i == sent - 1) {
			if (r->type != REDIS_REPLY_ARRAY)
				rc = cl_err(
				    CLEAVE_EIO,
				    "redis %s:%d: %s: commit not applied: "
				    "the checkpoint changed meanwhile",
				    s->host, s->port, s->prefix);
			for (size_t k = 0; !rc && k < r->elements; k++)
				if (r->element[k]->type == REDIS_REPLY_ERROR)
					rc = cl_rd_reply_err(s, r->element[k],
					                     "commit");
		}
		freeReplyObject(r);
	}
	if (!rc && cop && !cop->del)
		cl_rd_ckpt_decode(s, cop->val, cop->vlen, &s->ckpt);
out:
	free(keys);
	free(nss);
	free(av);
	free(al);
	tx_free(t);
	return rc;
}
