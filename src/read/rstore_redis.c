/*
 * rstore_redis.c — the "redis" read store: one copy of a projection as
 * keys of a Redis server, shared by every process that reaches it.
 *
 * Path: "redis://HOST:PORT/DB/PREFIX" (the engine builds it from
 * --read-store, see cl_redis_path); PREFIX names the copy, for instance
 * "cleave/catalog.g3".  Layout, for each namespace ns (user namespaces,
 * the generic structures' "~z:ns", and the reserved "#cleave" and
 * "#dead"):
 *
 *   PREFIX|h|ns   hash: key → value
 *   PREFIX|z|ns   sorted set of the keys, all of score 0, so that
 *                 ZRANGEBYLEX walks them in byte order (scans)
 *   PREFIX|ns     set of the namespaces written (dump, drop)
 *   PREFIX|owner  the engine that writes the copy (claim)
 *
 * The checkpoint is "#cleave" → "checkpoint" (int64 little-endian), dead
 * letters "#dead" → 16 hex digits of the position → JSON, as in "lmdb".
 *
 * Transactions.  A write transaction reads through to Redis and keeps its
 * writes in memory (an overlay that its own reads and scans see); commit
 * sends them, with the checkpoint, as one MULTI/EXEC, which Redis applies
 * atomically: a reader sees a commit whole or not at all.  One write
 * transaction at a time per store (wmu), and one writing process per
 * prefix — the engine's data directory lock gives that when each engine
 * has its own prefix.  A read transaction is a connection from a pool;
 * Redis has no snapshots, so each read sees the latest commit, and two
 * reads in one transaction may see two commits (a query answer reflects
 * at least the position it states).  dump (verify) holds wmu, so it sees
 * one commit of the copy throughout.
 *
 * Every command has a timeout (RD_READ_TIMEOUT_MS in read transactions,
 * which hold an HTTP thread; RD_TIMEOUT_S otherwise); a connection that failed is
 * closed, not pooled, and the next transaction connects again.  Errors
 * are CLEAVE_EIO naming the server, except Redis's OOM (maxmemory), which
 * is CLEAVE_ENOSPC.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_int.h"
#include "read/rstore_redis.h"

#define RD_TIMEOUT_S 10   /* writers, maintenance */
#define RD_READ_TIMEOUT_MS 1000 /* queries: they hold an HTTP thread */
#define RD_IDLE_MAX  16   /* pooled read connections per store */
#define RD_PAGE      256  /* keys per scan round trip */
#define RD_META      "#cleave"
#define RD_DEAD      "#dead"
#define RD_CKPT      "checkpoint"
#define RD_PREFIX_MAX 512

typedef struct rd_store {
	cl_rstore base;
	char host[256];
	int port, db;
	char prefix[RD_PREFIX_MAX];
	bool read_only;
	int64_t ckpt; /* the checkpoint in Redis as this store left it */
	pthread_mutex_t mu; /* idle */
	redisContext *idle[RD_IDLE_MAX];
	int nidle;
	pthread_mutex_t wmu; /* one writer; dump */
} rd_store;

/* A write of the overlay: a put (val) or a delete. */
typedef struct rd_op {
	const char *ns, *key, *val;
	size_t klen, vlen;
	uint64_t hash;
	bool del;
} rd_op;

typedef struct rd_chunk {
	struct rd_chunk *next;
	size_t cap, used;
	char mem[];
} rd_chunk;

typedef struct rd_tx {
	cleave_rtx base;
	rd_store *s;
	redisContext *c;
	bool broken; /* c failed: do not pool it */
	/* overlay (write transactions) */
	rd_op *ops;
	size_t nops, capops;
	uint32_t *slots; /* open addressing: index + 1 into ops */
	size_t nslots;
	rd_chunk *arena; /* keys, values, copies handed out */
	redisReply **keep; /* replies whose strings were handed out */
	size_t nkeep, capkeep;
} rd_tx;

/* ---- errors and connections ---------------------------------------------- */

static int ctx_err(rd_store *s, redisContext *c, const char *what)
{
	if (c && c->err == REDIS_ERR_IO &&
	    strstr(c->errstr, "temporarily unavailable")) /* EAGAIN */
		return cl_err(CLEAVE_EIO,
		              "redis %s:%d: %s: no answer within the timeout",
		              s->host, s->port, what);
	return cl_err(CLEAVE_EIO, "redis %s:%d: %s: %s", s->host, s->port,
	              what, c && c->errstr[0] ? c->errstr : "no connection");
}

static int reply_err(rd_store *s, const redisReply *r, const char *what)
{
	if (!strncmp(r->str, "OOM", 3))
		return cl_err(CLEAVE_ENOSPC,
		              "redis %s:%d: %s: out of memory (maxmemory): %s",
		              s->host, s->port, what, r->str);
	return cl_err(CLEAVE_EIO, "redis %s:%d: %s: %s", s->host, s->port,
	              what, r->str);
}

/* Runs one command on t's connection; the reply (not an error reply) in
 * *out. */
static int cmd(rd_tx *t, int argc, const char **argv, const size_t *argl,
               const char *what, redisReply **out)
{
	redisReply *r = redisCommandArgv(t->c, argc, argv, argl);
	*out = NULL;
	if (!r) {
		t->broken = true;
		return ctx_err(t->s, t->c, what);
	}
	if (r->type == REDIS_REPLY_ERROR) {
		int rc = reply_err(t->s, r, what);
		freeReplyObject(r);
		return rc;
	}
	*out = r;
	return 0;
}

static struct timeval timeout_for(bool write)
{
	struct timeval tv = {RD_TIMEOUT_S, 0};
	if (!write) {
		tv.tv_sec = RD_READ_TIMEOUT_MS / 1000;
		tv.tv_usec = (RD_READ_TIMEOUT_MS % 1000) * 1000;
	}
	return tv;
}

static int connect_to(rd_store *s, bool write, redisContext **out)
{
	struct timeval tv = timeout_for(write);
	redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
	*out = NULL;
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	if (c->err) {
		int rc = ctx_err(s, c, "connect");
		redisFree(c);
		return rc;
	}
	redisSetTimeout(c, tv);
	redisReply *r = s->db ? redisCommand(c, "SELECT %d", s->db)
	                      : redisCommand(c, "PING");
	if (!r || r->type == REDIS_REPLY_ERROR) {
		int rc = r ? cl_err(CLEAVE_EIO, "redis %s:%d: %s", s->host,
		                    s->port, r->str)
		           : ctx_err(s, c, "connect");
		if (r)
			freeReplyObject(r);
		redisFree(c);
		return rc;
	}
	freeReplyObject(r);
	*out = c;
	return 0;
}

/* A pooled connection, or a new one, with the timeout of its use: a
 * Redis that hangs (not refuses) must not hold a query's HTTP thread for
 * long, while a writer's large MULTI/EXEC may take a while. */
static int conn_get(rd_store *s, bool write, redisContext **out)
{
	pthread_mutex_lock(&s->mu);
	redisContext *c = s->nidle ? s->idle[--s->nidle] : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!c)
		return connect_to(s, write, out);
	if (redisSetTimeout(c, timeout_for(write)) != REDIS_OK) {
		redisFree(c);
		return connect_to(s, write, out);
	}
	*out = c;
	return 0;
}

static void conn_put(rd_store *s, redisContext *c, bool broken)
{
	if (!c)
		return;
	if (!broken && !c->err) {
		pthread_mutex_lock(&s->mu);
		if (s->nidle < RD_IDLE_MAX) {
			s->idle[s->nidle++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&s->mu);
	}
	if (c)
		redisFree(c);
}

/* ---- paths ----------------------------------------------------------------- */

/* Parses "redis://HOST[:PORT][/DB]" at uri into host, port, db; *rest
 * points past it (at "/..." or the end).  0 or CLEAVE_EINVAL. */
int cl_redis_parse(const char *uri, char *host, size_t hcap, int *port,
                   int *db, const char **rest)
{
	static const char scheme[] = "redis://";
	if (!uri || strncmp(uri, scheme, sizeof(scheme) - 1))
		return cl_err(CLEAVE_EINVAL, "redis: '%s' is not redis://HOST"
		                             "[:PORT][/DB]",
		              uri ? uri : "(null)");
	const char *p = uri + sizeof(scheme) - 1;
	size_t hl = strcspn(p, ":/?#@");
	if (hl == 0 || hl >= hcap || p[hl] == '@' || p[hl] == '?' ||
	    p[hl] == '#')
		return cl_err(CLEAVE_EINVAL,
		              "redis: '%s': expected redis://HOST[:PORT][/DB] "
		              "(no user, password or options)",
		              uri);
	memcpy(host, p, hl);
	host[hl] = 0;
	p += hl;
	*port = 6379;
	*db = 0;
	if (*p == ':') {
		char *end;
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 1 || v > 65535)
			return cl_err(CLEAVE_EINVAL, "redis: '%s': bad port",
			              uri);
		*port = (int)v;
		p = end;
	}
	if (*p == '/' && p[1] >= '0' && p[1] <= '9') {
		char *end;
		long v = strtol(p + 1, &end, 10);
		if (v < 0 || v > 1000000 || (*end && *end != '/'))
			return cl_err(CLEAVE_EINVAL,
			              "redis: '%s': bad database number", uri);
		*db = (int)v;
		p = end;
	}
	if (*p && *p != '/')
		return cl_err(CLEAVE_EINVAL,
		              "redis: '%s': unexpected '%s' (expected "
		              "redis://HOST[:PORT][/DB])",
		              uri, p);
	*rest = p;
	return 0;
}

/* Redis key "PREFIX|what|ns" (what "h" or "z"), or "PREFIX|ns" (what
 * NULL), in out (cap >= RD_PREFIX_MAX + CL_NS_IMAX + 8). */
static size_t rkey(const rd_store *s, const char *what, const char *ns,
                   char *out, size_t cap)
{
	int n = what ? snprintf(out, cap, "%s|%s|%s", s->prefix, what, ns)
	             : snprintf(out, cap, "%s|ns", s->prefix);
	return (size_t)n;
}

#define RKEY_CAP (RD_PREFIX_MAX + CL_NS_IMAX + 8)

/* ---- open / close / drop ---------------------------------------------------- */

static void rd_close(cl_rstore *base)
{
	rd_store *s = (rd_store *)base;
	if (!s)
		return;
	for (int i = 0; i < s->nidle; i++)
		redisFree(s->idle[i]);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->wmu);
	free(s->base.path);
	free(s);
}

static int parse_path(rd_store *s, const char *path)
{
	const char *rest;
	int rc = cl_redis_parse(path, s->host, sizeof(s->host), &s->port,
	                        &s->db, &rest);
	if (rc)
		return rc;
	if (*rest != '/' || !rest[1] || strlen(rest + 1) >= RD_PREFIX_MAX ||
	    strchr(rest + 1, '|'))
		return cl_err(CLEAVE_EINVAL,
		              "redis: '%s': expected redis://HOST:PORT/DB/PREFIX "
		              "(a prefix without '|', under %d bytes)",
		              path, RD_PREFIX_MAX);
	snprintf(s->prefix, sizeof(s->prefix), "%s", rest + 1);
	return 0;
}

/* The checkpoint in a reply: nil is 0, else 8 bytes little-endian. */
static int ckpt_decode(const rd_store *s, const char *v, size_t n,
                       int64_t *pos)
{
	if (n != 8)
		return cl_err(CLEAVE_ECORRUPT, "redis %s: checkpoint of %zu "
		                               "bytes",
		              s->prefix, n);
	*pos = cl_get_le64(v);
	return 0;
}

/* The checkpoint in Redis now, watched (WATCH) on c when `watch`: an
 * EXEC on c then fails if anything changed it meanwhile. */
static int ckpt_read(rd_store *s, redisContext *c, bool watch, int64_t *pos)
{
	char k[RKEY_CAP];
	size_t kl = rkey(s, "h", RD_META, k, sizeof(k));
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
				rc = ctx_err(s, c, "checkpoint");
			return rc; /* the connection is unusable */
		}
		if (!rc && r->type == REDIS_REPLY_ERROR)
			rc = reply_err(s, r, "checkpoint");
		else if (!rc && i == 1 && r->type == REDIS_REPLY_STRING)
			rc = ckpt_decode(s, r->str, r->len, pos);
		else if (!rc && i == 1 && r->type != REDIS_REPLY_NIL)
			rc = cl_err(CLEAVE_EIO, "redis: checkpoint: unexpected "
			                        "reply");
		freeReplyObject(r);
	}
	return rc;
}

/* One writing engine per copy: the first to open it for writing records
 * itself under PREFIX|owner; another engine (a second data directory
 * pointed at the same Redis and prefix) is refused rather than let two
 * writers interleave. */
static int claim(rd_store *s, redisContext *c, const char *owner)
{
	char k[RKEY_CAP];
	snprintf(k, sizeof(k), "%s|owner", s->prefix);
	size_t ol = strlen(owner);
	const char *av[4] = {"SET", k, owner, "NX"};
	size_t al[4] = {3, strlen(k), ol, 2};
	redisReply *r = redisCommandArgv(c, 4, av, al);
	int rc = 0;
	if (r && r->type == REDIS_REPLY_NIL) {
		freeReplyObject(r);
		const char *gv[2] = {"GET", k};
		size_t gl[2] = {3, al[1]};
		r = redisCommandArgv(c, 2, gv, gl);
		if (r && r->type == REDIS_REPLY_STRING &&
		    (r->len != ol || memcmp(r->str, owner, ol)))
			rc = cl_err(CLEAVE_EBUSY,
			            "redis %s:%d: %s is written by another "
			            "engine (%.*s); give each engine its own "
			            "--read-store prefix",
			            s->host, s->port, s->prefix, (int)r->len,
			            r->str);
	}
	if (!rc && (!r || r->type == REDIS_REPLY_ERROR))
		rc = r ? reply_err(s, r, "claim") : ctx_err(s, c, "claim");
	if (r)
		freeReplyObject(r);
	return rc;
}

static int rd_open(const char *path, const cl_rstore_opts *o, cl_rstore **out)
{
	*out = NULL;
	rd_store *s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	cl_rstore_locks_init(&s->mu, &s->wmu);
	s->base.m = &cl_rstore_redis;
	s->read_only = o && o->read_only;
	int rc;
	if (!(s->base.path = cl_strdup(path ? path : ""))) {
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
		goto fail;
	}
	if ((rc = parse_path(s, s->base.path)))
		goto fail;
	/* reachable now, or the open fails with why */
	redisContext *c;
	if ((rc = connect_to(s, true, &c)))
		goto fail;
	s->idle[s->nidle++] = c;
	if (!s->read_only && o && o->owner && (rc = claim(s, c, o->owner)))
		goto fail;
	if (!s->read_only && (rc = ckpt_read(s, c, false, &s->ckpt)))
		goto fail;
	*out = &s->base;
	return 0;
fail:
	rd_close(&s->base);
	return rc;
}

static int rd_drop(const char *path)
{
	rd_store *s = NULL;
	int rc = rd_open(path, NULL, (cl_rstore **)&s);
	if (rc)
		return rc;
	redisContext *c = s->idle[--s->nidle];
	char k[RKEY_CAP];
	size_t kl = rkey(s, NULL, NULL, k, sizeof(k));
	const char *argv[2] = {"SMEMBERS", k};
	size_t argl[2] = {8, kl};
	redisReply *r = redisCommandArgv(c, 2, argv, argl);
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		rc = r ? cl_err(CLEAVE_EIO, "redis %s:%d: drop %s: %s",
		                s->host, s->port, s->prefix,
		                r->type == REDIS_REPLY_ERROR ? r->str
		                                             : "bad reply")
		       : ctx_err(s, c, "drop");
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
			al[1 + nk] = rkey(s, w ? "z" : "h", ns, keys[nk],
			                  RKEY_CAP);
			av[1 + nk] = keys[nk];
			nk++;
		}
	}
	av[1 + nk] = k;
	al[1 + nk] = kl;
	nk++;
	al[1 + nk] = (size_t)snprintf(keys[nk - 1], RKEY_CAP, "%s|owner",
	                              s->prefix);
	av[1 + nk] = keys[nk - 1];
	nk++;
	av[0] = "UNLINK";
	al[0] = 6;
	redisReply *d = redisCommandArgv(c, (int)(1 + nk), av, al);
	if (!d || d->type == REDIS_REPLY_ERROR)
		rc = d ? cl_err(CLEAVE_EIO, "redis: drop: %s", d->str)
		       : ctx_err(s, c, "drop");
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
	rd_close(&s->base);
	return rc;
}

int cl_redis_list(const char *root, const char *owner,
                  int (*fn)(void *arg, const char *name), void *arg)
{
	rd_store *s = NULL;
	int rc = rd_open(root, NULL, (cl_rstore **)&s);
	if (rc)
		return rc;
	redisContext *c = s->idle[--s->nidle];
	/* every copy opened for writing has PREFIX/NAME|owner; the pattern
	 * escapes the prefix's glob characters */
	char pat[2 * RD_PREFIX_MAX + 16], cur[32] = "0";
	size_t pl = 0;
	for (const char *p = s->prefix; *p; p++) {
		if (strchr("*?[]\\", *p))
			pat[pl++] = '\\';
		pat[pl++] = *p;
	}
	memcpy(pat + pl, "/*|owner", 9);
	size_t plen = strlen(s->prefix);
	do {
		redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000",
		                             cur, pat);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			rc = r && r->type == REDIS_REPLY_ERROR
			         ? reply_err(s, r, "list copies")
			         : ctx_err(s, c, "list copies");
			if (r)
				freeReplyObject(r);
			break;
		}
		snprintf(cur, sizeof(cur), "%s", r->element[0]->str);
		const redisReply *ks = r->element[1];
		for (size_t i = 0; i < ks->elements && !rc; i++) {
			const redisReply *k = ks->element[i];
			char name[256];
			size_t nl = k->len - plen - 1 - 6; /* "/", "|owner" */
			if (k->type != REDIS_REPLY_STRING ||
			    k->len <= plen + 7 || nl >= sizeof(name))
				continue;
			memcpy(name, k->str + plen + 1, nl);
			name[nl] = 0;
			if (strchr(name, '/'))
				continue;
			const char *gv[2] = {"GET", k->str};
			size_t gl[2] = {3, k->len};
			redisReply *o = redisCommandArgv(c, 2, gv, gl);
			if (o && o->type == REDIS_REPLY_STRING &&
			    o->len == strlen(owner) &&
			    !memcmp(o->str, owner, o->len))
				rc = fn(arg, name);
			if (o)
				freeReplyObject(o);
		}
		freeReplyObject(r);
	} while (!rc && strcmp(cur, "0"));
	redisFree(c);
	rd_close(&s->base);
	return rc < 0 ? rc : 0;
}

/* GET (val NULL: the value, malloc'd, into *out, NULL when absent) or SET
 * (val) of the record "PREFIX|name". */
static int meta_cmd(rd_store *s, const char *name, const char *val,
                    char **out)
{
	redisContext *c;
	char k[RKEY_CAP];
	int rc = conn_get(s, true, &c);
	if (rc)
		return rc;
	snprintf(k, sizeof(k), "%s|%s", s->prefix, name);
	const char *av[3] = {val ? "SET" : "GET", k, val};
	size_t al[3] = {3, strlen(k), val ? strlen(val) : 0};
	redisReply *r = redisCommandArgv(c, val ? 3 : 2, av, al);
	if (!r || r->type == REDIS_REPLY_ERROR)
		rc = r ? reply_err(s, r, name) : ctx_err(s, c, name);
	else if (!val && r->type == REDIS_REPLY_STRING &&
	         !(*out = cl_strdup(r->str)))
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	if (r)
		freeReplyObject(r);
	conn_put(s, c, !r);
	return rc;
}

static int rd_meta_get(cl_rstore *base, const char *name, char **out)
{
	*out = NULL;
	return meta_cmd((rd_store *)base, name, NULL, out);
}

static int rd_meta_set(cl_rstore *base, const char *name, const char *val)
{
	return meta_cmd((rd_store *)base, name, val, NULL);
}

/* --read-store redis://HOST[:PORT][/DB][/PREFIX]: the root of this
 * engine's copies, "redis://H:P/DB/PREFIX" (PREFIX "cleave" by
 * default). */
static int rd_root_parse(const char *uri, char **root)
{
	char host[256];
	int port, db;
	const char *rest;
	int rc = cl_redis_parse(uri, host, sizeof(host), &port, &db, &rest);
	if (rc)
		return rc;
	const char *prefix = *rest ? rest + 1 : "cleave";
	size_t pl = strlen(prefix);
	if (!pl || pl > 200 || strchr(prefix, '|') || prefix[pl - 1] == '/')
		return cl_err(CLEAVE_EINVAL,
		              "read store '%s': the key prefix must be 1..200 "
		              "bytes, without '|' or a trailing '/'",
		              uri);
	size_t n = strlen(host) + pl + 64;
	if (!(*root = malloc(n)))
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	snprintf(*root, n, "redis://%s:%d/%d/%s", host, port, db, prefix);
	return 0;
}

/* ---- the transaction's memory ------------------------------------------------ */

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

static int keep_reply(rd_tx *t, redisReply *r)
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

/* ---- the overlay ---------------------------------------------------------------- */

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

static int op_set(rd_tx *t, const char *ns, const char *key, const void *val,
                  size_t vlen, bool del)
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

/* ---- transactions ---------------------------------------------------------------- */

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
	conn_put(t->s, t->c, t->broken);
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
	int rc = ckpt_read(s, t->c, true, &there);
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

static int rd_begin(cl_rstore *base, bool write, cleave_rtx **out)
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
	int rc = conn_get(s, write, &t->c);
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

static void rd_abort(cleave_rtx *tx)
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
static int rd_commit(cleave_rtx *tx)
{
	rd_tx *t = (rd_tx *)tx;
	rd_store *s = t->s;
	redisContext *c = t->c;
	int rc = 0;
	size_t sent = 0;
	if (!tx->write || t->nops == 0) {
		rd_abort(tx); /* nothing to send; drops the begin's WATCH */
		return 0;
	}
	const rd_op *cop = op_find(t, RD_META, RD_CKPT, sizeof(RD_CKPT) - 1,
	                           op_hash(RD_META, RD_CKPT,
	                                   sizeof(RD_CKPT) - 1),
	                           NULL);
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
		size_t hl = rkey(s, "h", nss[k], h, RKEY_CAP);
		size_t zl = rkey(s, "z", nss[k], z, RKEY_CAP);
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
	al[1] = rkey(s, NULL, NULL, setk, sizeof(setk));
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
				rc = ctx_err(s, c, "commit");
			break;
		}
		if (!rc && r->type == REDIS_REPLY_ERROR)
			rc = reply_err(s, r, "commit");
		if (!rc && i == sent - 1) {
			if (r->type != REDIS_REPLY_ARRAY)
				rc = cl_err(CLEAVE_EIO,
				            "redis %s:%d: %s: commit not applied: "
				            "the checkpoint changed meanwhile",
				            s->host, s->port, s->prefix);
			for (size_t k = 0; !rc && k < r->elements; k++)
				if (r->element[k]->type == REDIS_REPLY_ERROR)
					rc = reply_err(s, r->element[k],
					               "commit");
		}
		freeReplyObject(r);
	}
	if (!rc && cop && !cop->del)
		ckpt_decode(s, cop->val, cop->vlen, &s->ckpt);
out:
	free(keys);
	free(nss);
	free(av);
	free(al);
	tx_free(t);
	return rc;
}

/* ---- key/value --------------------------------------------------------------------- */

static int rd_get(cleave_rtx *tx, const char *ns, const char *key,
                  const void **val, size_t *len)
{
	rd_tx *t = (rd_tx *)tx;
	size_t klen = strlen(key);
	rd_op *o = tx->write ? op_find(t, ns, key, klen,
	                               op_hash(ns, key, klen), NULL)
	                     : NULL;
	if (o) {
		if (o->del)
			return CLEAVE_ENOTFOUND;
		*val = o->val;
		*len = o->vlen;
		return 0;
	}
	char h[RKEY_CAP];
	const char *argv[3] = {"HGET", h, key};
	size_t argl[3] = {4, rkey(t->s, "h", ns, h, sizeof(h)), klen};
	redisReply *r;
	int rc = cmd(t, 3, argv, argl, "get", &r);
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
	return keep_reply(t, r);
}

static int rd_put(cleave_rtx *tx, const char *ns, const char *key,
                  const void *val, size_t len)
{
	return op_set((rd_tx *)tx, ns, key, val, len, false);
}

static int rd_del(cleave_rtx *tx, const char *ns, const char *key)
{
	return op_set((rd_tx *)tx, ns, key, NULL, 0, true);
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
                      const char *to, bool rev, const char *last,
                      size_t lastl, rd_page *pg)
{
	char z[RKEY_CAP], h[RKEY_CAP], lo[CLEAVE_KEY_MAX + 2],
	    hi[CLEAVE_KEY_MAX + 2], cnt[24];
	size_t zl = rkey(t->s, "z", ns, z, sizeof(z));
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
	const char *av[7] = {rev ? "ZREVRANGEBYLEX" : "ZRANGEBYLEX", z,
	                     rev ? hi : lo, rev ? lo : hi, "LIMIT", "0", cnt};
	size_t al[7] = {strlen(av[0]), zl, rev ? hil : lol, rev ? lol : hil,
	                5, 1, strlen(cnt)};
	memset(pg, 0, sizeof(*pg));
	int rc = cmd(t, 7, av, al, "scan", &pg->keys);
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
	hl[1] = rkey(t->s, "h", ns, h, sizeof(h));
	for (size_t i = 0; i < n; i++) {
		hv[2 + i] = pg->keys->element[i]->str;
		hl[2 + i] = pg->keys->element[i]->len;
	}
	rc = cmd(t, (int)(n + 2), hv, hl, "scan", &pg->vals);
	free(hv);
	free(hl);
	if (!rc && (pg->vals->type != REDIS_REPLY_ARRAY ||
	            pg->vals->elements != n))
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
			rc = keep_reply(t, r[i]);
		else
			freeReplyObject(r[i]);
	}
	memset(pg, 0, sizeof(*pg));
	return rc;
}

static bool in_range(const char *k, size_t kl, const char *from,
                     const char *to)
{
	if (from && *from && kcmp(k, kl, from, strlen(from)) < 0)
		return false;
	return !to || kcmp(k, kl, to, strlen(to)) < 0;
}

/* Merges Redis's keys with the overlay's (which win, and whose deletes
 * hide Redis's), both in scan order, a page of RD_PAGE keys at a time. */
static int scan(rd_tx *t, const char *ns, const char *from, const char *to,
                bool rev, size_t limit, cleave_scan_fn fn, void *arg,
                bool keep)
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
						rc = cl_err(CLEAVE_ECORRUPT,
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

/* ---- the engine's records --------------------------------------------------------- */

static int rd_checkpoint_get(cleave_rtx *tx, int64_t *pos)
{
	const void *v;
	size_t n;
	*pos = 0;
	int rc = rd_get(tx, RD_META, RD_CKPT, &v, &n);
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	return rc ? rc : ckpt_decode(((rd_tx *)tx)->s, v, n, pos);
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
		size_t al[2] = {4, rkey(t->s, "h", RD_DEAD, h, sizeof(h))};
		redisReply *r;
		int rc = cmd(t, 2, av, al, "dead letters", &r);
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
	size_t al[2] = {8, rkey(t->s, NULL, NULL, k, sizeof(k))};
	redisReply *r;
	char **names = NULL;
	size_t nn = 0;
	int rc = cmd(t, 2, av, al, "dump", &r);
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
    .root_parse = rd_root_parse,
    .list = cl_redis_list,
    .meta_get = rd_meta_get,
    .meta_set = rd_meta_set,
    .open = rd_open,
    .close = rd_close,
    .drop = rd_drop,
    .begin = rd_begin,
    .commit = rd_commit,
    .abort = rd_abort,
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
