/*
 * rstore_redis_root.c — what a "redis" root ("redis://H:P/DB/PREFIX", from
 * --read-store) keeps beside the copies under it: each copy's owner claim
 * (PREFIX/NAME|owner), the small records (PREFIX|name: the catalog query
 * nodes follow), and the listing of an engine's copies, which finds them
 * by their claims.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_redis_int.h"

/* One writing engine per copy: the first to open it for writing records
 * itself under PREFIX|owner; another engine (a second data directory
 * pointed at the same Redis and prefix) is refused rather than let two
 * writers interleave. */
int cl_rd_claim(rd_store *s, redisContext *c, const char *owner)
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
		rc = r ? cl_rd_reply_err(s, r, "claim")
		       : cl_rd_ctx_err(s, c, "claim");
	if (r)
		freeReplyObject(r);
	return rc;
}

int cl_redis_list(const char *root, const char *owner,
                  int (*fn)(void *arg, const char *name), void *arg)
{
	rd_store *s = NULL;
	int rc = cl_rd_open(root, NULL, (cl_rstore **)&s);
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
		redisReply *r =
		    redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cur, pat);
		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			rc = r && r->type == REDIS_REPLY_ERROR
			         ? cl_rd_reply_err(s, r, "list copies")
			         : cl_rd_ctx_err(s, c, "list copies");
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
	cl_rd_close(&s->base);
	return rc < 0 ? rc : 0;
}

/* GET (val NULL: the value, malloc'd, into *out, NULL when absent) or SET
 * (val) of the record "PREFIX|name". */
static int meta_cmd(rd_store *s, const char *name, const char *val, char **out)
{
	redisContext *c;
	char k[RKEY_CAP];
	int rc = cl_rd_conn_get(s, true, &c);
	if (rc)
		return rc;
	snprintf(k, sizeof(k), "%s|%s", s->prefix, name);
	const char *av[3] = {val ? "SET" : "GET", k, val};
	size_t al[3] = {3, strlen(k), val ? strlen(val) : 0};
	redisReply *r = redisCommandArgv(c, val ? 3 : 2, av, al);
	if (!r || r->type == REDIS_REPLY_ERROR)
		rc =
		    r ? cl_rd_reply_err(s, r, name) : cl_rd_ctx_err(s, c, name);
	else if (!val && r->type == REDIS_REPLY_STRING &&
	         !(*out = cl_strdup(r->str)))
		rc = cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	if (r)
		freeReplyObject(r);
	cl_rd_conn_put(s, c, !r);
	return rc;
}

int cl_rd_meta_get(cl_rstore *base, const char *name, char **out)
{
	*out = NULL;
	return meta_cmd((rd_store *)base, name, NULL, out);
}

int cl_rd_meta_set(cl_rstore *base, const char *name, const char *val)
{
	return meta_cmd((rd_store *)base, name, val, NULL);
}

/* --read-store redis://HOST[:PORT][/DB][/PREFIX]: the root of this
 * engine's copies, "redis://H:P/DB/PREFIX" (PREFIX "cleave" by
 * default). */
int cl_rd_root_parse(const char *uri, char **root)
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
