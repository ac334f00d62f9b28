/*
 * rstore_redis.c — the "redis" read store: one copy of a projection as
 * keys of a Redis server, shared by every process that reaches it.  This
 * file opens, closes and drops a copy and holds its data calls, the
 * engine's records and the method table; connections are in
 * rstore_redis_conn.c, what a root keeps beside its copies in
 * rstore_redis_root.c, transactions in rstore_redis_tx.c (the shared
 * definitions: rstore_redis_int.h).
 *
 * Path: "redis://HOST:PORT/DB/PREFIX" (the engine builds it from
 * --read-store: the root that root_parse gives, then "/<name>.g<gen>");
 * PREFIX names the copy, for instance "cleave/catalog.g3".  Layout, for
 * each namespace ns (user namespaces, the generic structures' "~z:ns",
 * and the reserved "#cleave" and "#dead"):
 *
 *   PREFIX|h|ns   hash: key → value
 *   PREFIX|z|ns   sorted set of the keys, all of score 0, so that
 *                 ZRANGEBYLEX walks them in byte order (scans)
 *   PREFIX|ns     set of the namespaces written (dump, drop)
 *   PREFIX|owner  the engine that writes the copy (claim)
 *
 * The checkpoint is "#cleave" → "checkpoint" (int64 little-endian), dead
 * letters "#dead" → 16 hex digits of the position → JSON, as in "lmdb".
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_redis_int.h"

#define RD_PAGE 256 /* keys per scan round trip */

/* ---- open / close / drop ----------------------------------------------- */

void cl_rd_close(cl_rstore *base)
{
	rd_store *s = (rd_store *)base;
	if (!s)
		return;
	for (int i = 0; i < s->nidle; i++)
		redisFree(s->idle[i]);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->wmu);
	pthread_mutex_destroy(&s->pmu);
	free(s->owner);
	free(s->base.path);
	free(s);
}

int cl_rd_open(const char *path, const cl_rstore_opts *o, cl_rstore **out)
{
	*out = NULL;
	rd_store *s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	cl_rstore_locks_init(&s->mu, &s->wmu);
	pthread_mutex_init(&s->pmu, NULL);
	s->base.m = &cl_rstore_redis;
	s->read_only = o && o->read_only;
	int rc;
	if (!(s->base.path = cl_strdup(path ? path : ""))) {
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		goto fail;
	}
	if ((rc = cl_rd_parse_path(s, s->base.path)))
		goto fail;
	/* reachable now, or the open fails with why — unless lazy: then the
	 * claim and the checkpoint wait for the first connection */
	redisContext *c;
	if ((rc = cl_rd_connect(s, true, &c))) {
		if (rc != CLEAVE_EIO || !o || !o->lazy)
			goto fail;
		if (!s->read_only && o->owner &&
		    !(s->owner = cl_strdup(o->owner))) {
			rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
			goto fail;
		}
		atomic_store(&s->pending, true);
		*out = &s->base;
		return 0;
	}
	s->idle[s->nidle++] = c;
	if (!s->read_only && o && o->owner &&
	    (rc = cl_rd_claim(s, c, o->owner)))
		goto fail;
	if (!s->read_only && (rc = cl_rd_ckpt_read(s, c, false, &s->ckpt)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	cl_rd_close(&s->base);
	return rc;
}

static int rd_drop(const char *path)
{
	rd_store *s = NULL;
	int rc = cl_rd_open(path, NULL, (cl_rstore **)&s);
	if (rc)
		return rc;
	redisContext *c = s->idle[--s->nidle];
	char k[RKEY_CAP];
	size_t kl = cl_rd_key(s, NULL, NULL, k, sizeof(k));
	const char *argv[2] = {"SMEMBERS", k};
	size_t argl[2] = {8, kl};
	redisReply *r = redisCommandArgv(c, 2, argv, argl);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		rc = r ? cl_err(CLEAVE_EIO, "redis %s:%d: drop %s: %s", s->host,
		                s->port, s->prefix,
		                r->type == REDIS_REPLY_ERROR ? r->str
		                                             : "bad reply")
		       : cl_rd_ctx_err(s, c, "drop");
		goto out;
	}
	/* one UNLINK: every namespace's hash and sorted set, the set of
	 * namespaces, the owner's claim */
	size_t n = 2 * r->elements + 2, nk = 0;
	char(*keys)[RKEY_CAP] = malloc(n * sizeof(*keys));
	const char **av = malloc((n + 1) * sizeof(*av));
	size_t *al = malloc((n + 1) * sizeof(*al));
	if (!keys || !av || !al) {
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		goto free_out;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		char ns[CL_NS_IMAX + 1];
		if (e->type != REDIS_REPLY_STRING || e->len > CL_NS_IMAX)
			continue;
		memcpy(ns, e->str, e->len);
		ns[e->len] = 0;
		for (int w = 0; w < 2; w++) {
			al[1 + nk] =
			    cl_rd_key(s, w ? "z" : "h", ns, keys[nk], RKEY_CAP);
			av[1 + nk] = keys[nk];
			nk++;
		}
	}
	av[1 + nk] = k;
	al[1 + nk] = kl;
	nk++;
	al[1 + nk] =
	    (size_t)snprintf(keys[nk - 1], RKEY_CAP, "%s|owner", s->prefix);
	av[1 + nk] = keys[nk - 1];
	nk++;
	av[0] = "UNLINK";
	al[0] = 6;
	redisReply *d = redisCommandArgv(c, (int)(1 + nk), av, al);
	if (!d || d->type == REDIS_REPLY_ERROR)
		rc = d ? cl_err(CLEAVE_EIO, "redis: drop: %s", d->str)
		       : cl_rd_ctx_err(s, c, "drop");
	if (d)
		freeReplyObject(d);
free_out:
	free(keys);
	free(av);
	free(al);
out:
	if (r)
		freeReplyObject(r);
	redisFree(c);
	cl_rd_close(&s->base);
	return rc;
}

/* ---- key/value --------------------------------------------------------- */

static int rd_get(cleave_rtx *tx, const char *ns, const char *key,
                  const void **val, size_t *len)
{
	rd_tx *t = (rd_tx *)tx;
	size_t klen = strlen(key);
	rd_op *o = tx->write ? cl_rd_overlay_find(t, ns, key, klen) : NULL;
	if (o) {
		if (o->del)
			return CLEAVE_ENOTFOUND;
		*val = o->val;
		*len = o->vlen;
		return 0;
	}
	char h[RKEY_CAP];
	const char *argv[3] = {"HGET", h, key};
	size_t argl[3] = {4, cl_rd_key(t->s, "h", ns, h, sizeof(h)), klen};
	redisReply *r;
	int rc = cl_rd_cmd(t, 3, argv, argl, "get", &r);
	if (rc)
		return rc;
	if (r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		return CLEAVE_ENOTFOUND;
	}
	if (r->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		return cl_err(CLEAVE_EIO, "redis: get: unexpected reply");
	}
	*val = r->str;
	*len = r->len;
	return cl_rd_keep_reply(t, r);
}

static int rd_put(cleave_rtx *tx, const char *ns, const char *key,
                  const void *val, size_t len)
{
	return cl_rd_overlay_set((rd_tx *)tx, ns, key, val, len, false);
}

static int rd_del(cleave_rtx *tx, const char *ns, const char *key)
{
	return cl_rd_overlay_set((rd_tx *)tx, ns, key, NULL, 0, true);
}

/* Byte order of keys, as LMDB's default comparison. */
static int kcmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, CL_MIN(al, bl));
	return c ? c : (al > bl) - (al < bl);
}

static int op_cmp(const void *x, const void *y)
{
	const rd_op *a = *(rd_op *const *)x, *b = *(rd_op *const *)y;
	return kcmp(a->key, a->klen, b->key, b->klen);
}

/* One page of keys of Redis's sorted set after `last` (NULL: from the
 * range's start) with their values. */
typedef struct rd_page {
	redisReply *keys, *vals;
	size_t i;
} rd_page;

static int fetch_page(rd_tx *t, const char *ns, const char *from,
                      const char *to, bool rev, const char *last, size_t lastl,
                      rd_page *pg)
{
	char z[RKEY_CAP], h[RKEY_CAP], lo[CLEAVE_KEY_MAX + 2],
	    hi[CLEAVE_KEY_MAX + 2], cnt[24];
	size_t zl = cl_rd_key(t->s, "z", ns, z, sizeof(z));
	size_t lol, hil;
	/* [from, to): min "[from" or "-", max "(to" or "+" */
	if (from && *from)
		lol = (size_t)snprintf(lo, sizeof(lo), "[%s", from);
	else
		lol = (size_t)snprintf(lo, sizeof(lo), "-");
	if (to)
		hil = (size_t)snprintf(hi, sizeof(hi), "(%s", to);
	else
		hil = (size_t)snprintf(hi, sizeof(hi), "+");
	if (last) { /* continue strictly past the last key seen */
		char *b = rev ? hi : lo;
		b[0] = '(';
		memcpy(b + 1, last, lastl);
		if (rev)
			hil = lastl + 1;
		else
			lol = lastl + 1;
	}
	snprintf(cnt, sizeof(cnt), "%d", RD_PAGE);
	const char *av[7] = {rev ? "ZREVRANGEBYLEX" : "ZRANGEBYLEX",
	                     z,
	                     rev ? hi : lo,
	                     rev ? lo : hi,
	                     "LIMIT",
	                     "0",
	                     cnt};
	size_t al[7] = {strlen(av[0]),   zl, rev ? hil : lol,
	                rev ? lol : hil, 5,  1,
	                strlen(cnt)};
	memset(pg, 0, sizeof(*pg));
	int rc = cl_rd_cmd(t, 7, av, al, "scan", &pg->keys);
	if (rc)
		return rc;
	if (pg->keys->type != REDIS_REPLY_ARRAY)
		return cl_err(CLEAVE_EIO, "redis: scan: unexpected reply");
	size_t n = pg->keys->elements;
	if (!n)
		return 0;
	const char **hv = malloc((n + 2) * sizeof(*hv));
	size_t *hl = malloc((n + 2) * sizeof(*hl));
	if (!hv || !hl) {
		free(hv);
		free(hl);
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	}
	hv[0] = "HMGET";
	hl[0] = 5;
	hv[1] = h;
	hl[1] = cl_rd_key(t->s, "h", ns, h, sizeof(h));
	for (size_t i = 0; i < n; i++) {
		hv[2 + i] = pg->keys->element[i]->str;
		hl[2 + i] = pg->keys->element[i]->len;
	}
	rc = cl_rd_cmd(t, (int)(n + 2), hv, hl, "scan", &pg->vals);
	free(hv);
	free(hl);
	if (!rc &&
	    (pg->vals->type != REDIS_REPLY_ARRAY || pg->vals->elements != n))
		rc = cl_err(CLEAVE_EIO, "redis: scan: unexpected reply");
	return rc;
}

/* Ends a page: its replies are kept until the transaction ends when
 * their strings were handed out under the API's promise (keep), freed
 * otherwise. */
static int page_end(rd_tx *t, rd_page *pg, bool keep)
{
	int rc = 0;
	redisReply *r[2] = {pg->keys, pg->vals};
	for (int i = 0; i < 2; i++) {
		if (!r[i])
			continue;
		if (keep && !rc)
			rc = cl_rd_keep_reply(t, r[i]);
		else
			freeReplyObject(r[i]);
	}
	memset(pg, 0, sizeof(*pg));
	return rc;
}

static bool in_range(const char *k, size_t kl, const char *from, const char *to)
{
	if (from && *from && kcmp(k, kl, from, strlen(from)) < 0)
		return false;
	return !to || kcmp(k, kl, to, strlen(to)) < 0;
}

/* Merges Redis's keys with the overlay's (which win, and whose deletes
 * hide Redis's), both in scan order, a page of RD_PAGE keys at a time. */
static int scan(rd_tx *t, const char *ns, const char *from, const char *to,
                bool rev, size_t limit, cleave_scan_fn fn, void *arg, bool keep)
{
	rd_op **ov = NULL;
	size_t nov = 0, io = 0, n = 0;
	int rc = 0;
	if (to && !*to)
		return 0; /* nothing sorts below "" */
	for (size_t i = 0; i < t->nops; i++) {
		rd_op *o = &t->ops[i];
		if (strcmp(o->ns, ns) || !in_range(o->key, o->klen, from, to))
			continue;
		if (!ov && !(ov = malloc((t->nops - i) * sizeof(*ov))))
			return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		ov[nov++] = o;
	}
	if (nov > 1)
		qsort(ov, nov, sizeof(*ov), op_cmp);
	if (rev)
		for (size_t i = 0; i < nov / 2; i++) {
			rd_op *x = ov[i];
			ov[i] = ov[nov - 1 - i];
			ov[nov - 1 - i] = x;
		}
	rd_page pg = {0};
	bool more = true; /* Redis may have keys past the page */
	char last[CLEAVE_KEY_MAX + 1];
	size_t lastl = 0;
	bool started = false;
	for (;;) {
		if (more && (!pg.keys || pg.i == pg.keys->elements)) {
			size_t got = pg.keys ? pg.keys->elements : 0;
			if (started && got < RD_PAGE) {
				more = false;
			} else {
				if (got) {
					const redisReply *lk =
					    pg.keys->element[got - 1];
					if (lk->len > CLEAVE_KEY_MAX) {
						rc = cl_err(
						    CLEAVE_ECORRUPT,
						    "redis: a key of %zu "
						    "bytes in %s",
						    lk->len, ns);
						break;
					}
					memcpy(last, lk->str, lk->len);
					lastl = lk->len;
				}
				if ((rc = page_end(t, &pg, keep)) ||
				    (rc = fetch_page(t, ns, from, to, rev,
				                     started ? last : NULL,
				                     lastl, &pg)))
					break;
				started = true;
				if (pg.keys->elements == 0)
					more = false;
			}
		}
		const redisReply *rk = more ? pg.keys->element[pg.i] : NULL;
		const rd_op *o = io < nov ? ov[io] : NULL;
		if (!rk && !o)
			break;
		int c = !rk  ? 1
		        : !o ? -1
		             : kcmp(rk->str, rk->len, o->key, o->klen);
		if (rev && rk && o)
			c = -c;
		const char *k, *v;
		size_t kl, vl;
		if (c < 0) { /* Redis's key comes first */
			const redisReply *rv = pg.vals->element[pg.i++];
			if (rv->type != REDIS_REPLY_STRING)
				continue; /* deleted since the key was read */
			k = rk->str;
			kl = rk->len;
			v = rv->str;
			vl = rv->len;
		} else {
			if (c == 0)
				pg.i++; /* the overlay's version wins */
			io++;
			if (o->del)
				continue;
			k = o->key;
			kl = o->klen;
			v = o->val;
			vl = o->vlen;
		}
		rc = fn(arg, k, kl, v, vl);
		if (rc) {
			rc = rc < 0 ? rc : 0;
			break;
		}
		if (limit && ++n == limit)
			break;
	}
	int rc2 = page_end(t, &pg, keep);
	free(ov);
	return rc ? rc : rc2;
}

static int rd_scan(cleave_rtx *tx, const char *ns, const char *from,
                   const char *to, int flags, size_t limit, cleave_scan_fn fn,
                   void *arg)
{
	return scan((rd_tx *)tx, ns, from, to, flags & CLEAVE_SCAN_REVERSE,
	            limit, fn, arg, true);
}

/* ---- the engine's records ---------------------------------------------- */

static int rd_checkpoint_get(cleave_rtx *tx, int64_t *pos)
{
	const void *v;
	size_t n;
	*pos = 0;
	int rc = rd_get(tx, RD_META, RD_CKPT, &v, &n);
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	return rc ? rc : cl_rd_ckpt_decode(((rd_tx *)tx)->s, v, n, pos);
}

static int rd_checkpoint_set(cleave_rtx *tx, int64_t pos)
{
	unsigned char b[8];
	cl_put_le64(b, pos);
	return rd_put(tx, RD_META, RD_CKPT, b, sizeof(b));
}

static int rd_dead_letter_add(cleave_rtx *tx, const cleave_event *ev,
                              const char *error)
{
	char key[17];
	cleave_buf b;
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY, "redis: dead letter in a "
		                                "read-only transaction");
	snprintf(key, sizeof(key), "%016llx", (unsigned long long)ev->position);
	cleave_buf_init(&b);
	cl_dead_letter_json(&b, ev, error);
	int rc = b.oom ? cl_err(CLEAVE_ENOMEM, "redis: out of memory")
	               : rd_put(tx, RD_DEAD, key, b.p, b.len);
	cleave_buf_free(&b);
	return rc;
}

static int count_fn(void *arg, const char *k, size_t kl, const void *v,
                    size_t vl)
{
	(*(int64_t *)arg)++;
	return 0;
}

static int rd_dead_letter_count(cleave_rtx *tx, int64_t *n)
{
	rd_tx *t = (rd_tx *)tx;
	*n = 0;
	if (!tx->write) { /* no overlay to merge: the hash's length */
		char h[RKEY_CAP];
		const char *av[2] = {"HLEN", h};
		size_t al[2] = {4, cl_rd_key(t->s, "h", RD_DEAD, h, sizeof(h))};
		redisReply *r;
		int rc = cl_rd_cmd(t, 2, av, al, "dead letters", &r);
		if (rc)
			return rc;
		*n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
		freeReplyObject(r);
		return 0;
	}
	return scan((rd_tx *)tx, RD_DEAD, NULL, NULL, false, 0, count_fn, n,
	            false);
}

typedef struct dump_ctx {
	cl_dump_fn fn;
	void *arg;
	const char *ns;
} dump_ctx;

static int dump_one(void *arg, const char *k, size_t kl, const void *v,
                    size_t vl)
{
	dump_ctx *d = arg;
	return d->fn(d->arg, d->ns, k, kl, v, vl);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Namespaces in name order, keys in byte order; "#" ones are not data.
 * Redis has no snapshots: a caller that needs the dump to be one commit
 * holds the store (rd_hold) around it, as verify does. */
static int rd_dump(cleave_rtx *tx, cl_dump_fn fn, void *arg)
{
	rd_tx *t = (rd_tx *)tx;
	char k[RKEY_CAP];
	const char *av[2] = {"SMEMBERS", k};
	size_t al[2] = {8, cl_rd_key(t->s, NULL, NULL, k, sizeof(k))};
	redisReply *r;
	char **names = NULL;
	size_t nn = 0;
	int rc = cl_rd_cmd(t, 2, av, al, "dump", &r);
	if (rc)
		return rc;
	names = calloc(r->elements + t->nops + 1, sizeof(*names));
	if (!names) {
		freeReplyObject(r);
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		if (e->type == REDIS_REPLY_STRING && e->len &&
		    e->len <= CL_NS_IMAX && e->str[0] != '#')
			names[nn++] = e->str;
	}
	for (size_t i = 0; i < t->nops; i++) { /* written, not committed */
		size_t j = 0;
		while (j < nn && strcmp(names[j], t->ops[i].ns))
			j++;
		if (j == nn && t->ops[i].ns[0] != '#')
			names[nn++] = (char *)t->ops[i].ns;
	}
	qsort(names, nn, sizeof(*names), name_cmp);
	for (size_t i = 0; i < nn && !rc; i++) {
		dump_ctx d = {fn, arg, names[i]};
		rc = scan(t, names[i], NULL, NULL, false, 0, dump_one, &d,
		          false);
	}
	free(names);
	freeReplyObject(r);
	return rc < 0 ? rc : 0;
}

static int rd_hold(cl_rstore *base, bool on)
{
	rd_store *s = (rd_store *)base;
	if (on ? pthread_mutex_lock(&s->wmu) : pthread_mutex_unlock(&s->wmu))
		return cl_err(CLEAVE_EBUSY, "redis %s: hold: this thread %s",
		              s->prefix,
		              on ? "already writes or holds the store"
		                 : "does not hold the store");
	return 0;
}

const cl_rstore_methods cl_rstore_redis = {
    .version = CL_RSTORE_V1,
    .kind = "redis",
    .caps = CL_RS_KV | CL_RS_SHARED,
    .scheme = "redis",
    .uri_form = "redis://HOST[:PORT][/DB][/PREFIX]",
    .root_parse = cl_rd_root_parse,
    .list = cl_redis_list,
    .meta_get = cl_rd_meta_get,
    .meta_set = cl_rd_meta_set,
    .open = cl_rd_open,
    .close = cl_rd_close,
    .drop = rd_drop,
    .begin = cl_rd_begin,
    .commit = cl_rd_commit,
    .abort = cl_rd_abort,
    .checkpoint_get = rd_checkpoint_get,
    .checkpoint_set = rd_checkpoint_set,
    .dead_letter_add = rd_dead_letter_add,
    .dead_letter_count = rd_dead_letter_count,
    .dump = rd_dump,
    .hold = rd_hold,
    .get = rd_get,
    .put = rd_put,
    .del = rd_del,
    .scan = rd_scan,
};
