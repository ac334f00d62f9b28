/*
 * rstore_redis_conn.c — the "redis" read store's connections to its
 * server: errors, a pool of connections per store, timeouts, and the
 * URIs and paths that name a server, a database and a copy's keys.
 *
 * Every command has a timeout (RD_TIMEOUT_S in write transactions; a read
 * transaction — a query's — has RD_READ_TIMEOUT_MS in all, its commands
 * the time left of it); a connection that
 * failed is closed, not pooled, and the next transaction connects again.
 * Errors are CLEAVE_EIO naming the server, except Redis's OOM (maxmemory),
 * which is CLEAVE_ENOSPC.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_redis_int.h"


/* ---- errors and connections -------------------------------------------- */

int cl_rd_ctx_err(rd_store *s, redisContext *c, const char *what)
{
	if (c && c->err == REDIS_ERR_IO &&
	    strstr(c->errstr, "temporarily unavailable")) /* EAGAIN */
		return cl_err(CLEAVE_EIO,
		              "redis %s:%d: %s: no answer within the timeout",
		              s->host, s->port, what);
	return cl_err(CLEAVE_EIO, "redis %s:%d: %s: %s", s->host, s->port, what,
	              c && c->errstr[0] ? c->errstr : "no connection");
}

int cl_rd_reply_err(rd_store *s, const redisReply *r, const char *what)
{
	if (!strncmp(r->str, "OOM", 3))
		return cl_err(CLEAVE_ENOSPC,
		              "redis %s:%d: %s: out of memory (maxmemory): %s",
		              s->host, s->port, what, r->str);
	return cl_err(CLEAVE_EIO, "redis %s:%d: %s: %s", s->host, s->port, what,
	              r->str);
}

/* Runs one command on t's connection; the reply (not an error reply) in
 * *out. */
int cl_rd_cmd(rd_tx *t, int argc, const char **argv, const size_t *argl,
              const char *what, redisReply **out)
{
	*out = NULL;
	if (t->deadline_us) {
		int64_t left = t->deadline_us - cl_mono_us();
		if (left <= 0)
			return cl_err(CLEAVE_EIO,
			              "redis %s:%d: %s: no answer within the "
			              "timeout (%d ms for a query)",
			              t->s->host, t->s->port, what,
			              RD_READ_TIMEOUT_MS);
		struct timeval tv = {(time_t)(left / 1000000),
		                     (suseconds_t)(left % 1000000)};
		if (redisSetTimeout(t->c, tv) != REDIS_OK) {
			t->broken = true;
			return cl_rd_ctx_err(t->s, t->c, what);
		}
	}
	redisReply *r = redisCommandArgv(t->c, argc, argv, argl);
	if (!r) {
		t->broken = true;
		return cl_rd_ctx_err(t->s, t->c, what);
	}
	if (r->type == REDIS_REPLY_ERROR) {
		int rc = cl_rd_reply_err(t->s, r, what);
		freeReplyObject(r);
		return rc;
	}
	*out = r;
	return 0;
}

static int creds_auth(rd_store *s, redisContext *c);

static struct timeval timeout_for(bool write)
{
	struct timeval tv = {RD_TIMEOUT_S, 0};
	if (!write) {
		tv.tv_sec = RD_READ_TIMEOUT_MS / 1000;
		tv.tv_usec = (RD_READ_TIMEOUT_MS % 1000) * 1000;
	}
	return tv;
}

int cl_rd_connect(rd_store *s, bool write, redisContext **out)
{
	struct timeval tv = timeout_for(write);
	redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
	*out = NULL;
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "redis: out of memory");
	if (c->err) {
		int rc = cl_rd_ctx_err(s, c, "connect");
		redisFree(c);
		return rc;
	}
	redisSetTimeout(c, tv);
	int arc = creds_auth(s, c);
	if (arc) {
		redisFree(c);
		return arc;
	}
	redisReply *r = s->db ? redisCommand(c, "SELECT %d", s->db)
	                      : redisCommand(c, "PING");
	if (!r || r->type == REDIS_REPLY_ERROR) {
		int rc = r ? cl_err(CLEAVE_EIO, "redis %s:%d: %s", s->host,
		                    s->port, r->str)
		           : cl_rd_ctx_err(s, c, "connect");
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
/* What a lazy open owes (rstore_redis.c): the claim and the checkpoint,
 * on the first connection that works. */
static int settle_pending(rd_store *s, redisContext *c)
{
	int rc = 0;
	pthread_mutex_lock(&s->pmu);
	if (atomic_load(&s->pending)) {
		if (s->owner)
			rc = cl_rd_claim(s, c, s->owner);
		if (!rc && !s->read_only)
			rc = cl_rd_ckpt_read(s, c, false, &s->ckpt);
		if (!rc)
			atomic_store(&s->pending, false);
	}
	pthread_mutex_unlock(&s->pmu);
	return rc;
}

int cl_rd_conn_get(rd_store *s, bool write, redisContext **out)
{
	if (atomic_load(&s->pending)) {
		redisContext *c;
		int rc = cl_rd_connect(s, write, &c);
		if (rc)
			return rc;
		if ((rc = settle_pending(s, c))) {
			redisFree(c);
			return rc;
		}
		*out = c;
		return 0;
	}
	pthread_mutex_lock(&s->mu);
	redisContext *c = s->nidle ? s->idle[--s->nidle] : NULL;
	pthread_mutex_unlock(&s->mu);
	if (!c)
		return cl_rd_connect(s, write, out);
	if (redisSetTimeout(c, timeout_for(write)) != REDIS_OK) {
		redisFree(c);
		return cl_rd_connect(s, write, out);
	}
	*out = c;
	return 0;
}

void cl_rd_conn_put(rd_store *s, redisContext *c, bool broken)
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

/* ---- paths ------------------------------------------------------------- */

/* ---- credentials -------------------------------------------------------- */

/* "redis://[[USER]:PASSWORD@]HOST…": the credentials are kept here, by
 * server, never in a store's path (paths are logged and published to
 * query nodes): every connection to that server authenticates with them. */
#define CREDS_MAX 16
static struct {
	char host[256];
	int port;
	char *user, *pass;
} creds[CREDS_MAX];
static int ncreds;
static pthread_mutex_t creds_mu = PTHREAD_MUTEX_INITIALIZER;

static void creds_set(const char *host, int port, const char *user,
                      const char *pass)
{
	pthread_mutex_lock(&creds_mu);
	int i;
	for (i = 0; i < ncreds; i++)
		if (creds[i].port == port && !strcmp(creds[i].host, host))
			break;
	if (i == ncreds && ncreds < CREDS_MAX)
		ncreds++;
	if (i < ncreds) {
		snprintf(creds[i].host, sizeof(creds[i].host), "%s", host);
		creds[i].port = port;
		free(creds[i].user);
		free(creds[i].pass);
		creds[i].user = user && *user ? cl_strdup(user) : NULL;
		creds[i].pass = cl_strdup(pass);
	}
	pthread_mutex_unlock(&creds_mu);
}

/* AUTH on a new connection when the server has credentials. */
static int creds_auth(rd_store *s, redisContext *c)
{
	char user[256] = "", pass[512] = "";
	bool have = false;
	pthread_mutex_lock(&creds_mu);
	for (int i = 0; i < ncreds; i++)
		if (creds[i].port == s->port && !strcmp(creds[i].host, s->host)) {
			have = creds[i].pass != NULL;
			snprintf(user, sizeof(user), "%s",
			         creds[i].user ? creds[i].user : "");
			snprintf(pass, sizeof(pass), "%s",
			         creds[i].pass ? creds[i].pass : "");
		}
	pthread_mutex_unlock(&creds_mu);
	if (!have)
		return 0;
	/* AUTH PASSWORD (the default user), or AUTH USER PASSWORD (ACL) */
	const char *av[3] = {"AUTH", user, pass};
	size_t al[3] = {4, strlen(user), strlen(pass)};
	if (!user[0]) {
		av[1] = pass;
		al[1] = al[2];
	}
	redisReply *r = redisCommandArgv(c, user[0] ? 3 : 2, av, al);
	memset(pass, 0, sizeof(pass));
	int rc = 0;
	if (!r)
		rc = cl_rd_ctx_err(s, c, "AUTH");
	else if (r->type == REDIS_REPLY_ERROR)
		rc = cl_err(CLEAVE_EIO, "redis %s:%d: AUTH%s%s refused: %s",
		            s->host, s->port, user[0] ? " as " : "", user,
		            r->str);
	if (r)
		freeReplyObject(r);
	return rc;
}

/* Decodes %XX in s[0..n) into out (cap); false when bad or too long. */
static bool pct_copy(const char *s, size_t n, char *out, size_t cap)
{
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '%') {
			unsigned v;
			if (i + 2 >= n || sscanf(s + i + 1, "%2x", &v) != 1)
				return false;
			ch = (char)v;
			i += 2;
		}
		if (j + 1 >= cap || ch == 0)
			return false;
		out[j++] = ch;
	}
	out[j] = 0;
	return true;
}

/* ---- paths ------------------------------------------------------------- */

/* Parses "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]" at uri into host,
 * port, db (credentials: kept for that server, see above); *rest points
 * past it (at "/..." or the end).  0 or CLEAVE_EINVAL, whose message never
 * repeats a password. */
int cl_redis_parse(const char *uri, char *host, size_t hcap, int *port, int *db,
                   const char **rest)
{
	static const char scheme[] = "redis://";
	if (!uri || strncmp(uri, scheme, sizeof(scheme) - 1))
		return cl_err(CLEAVE_EINVAL,
		              "redis: a read store URI must be "
		              "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]/PREFIX");
	const char *p = uri + sizeof(scheme) - 1;
	char user[256] = "", pass[512] = "";
	bool auth = false;
	const char *at = strchr(p, '@'), *slash = strchr(p, '/');
	if (at && (!slash || at < slash)) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon || !pct_copy(p, (size_t)(colon - p), user,
		                        sizeof(user)) ||
		    !pct_copy(colon + 1, (size_t)(at - colon - 1), pass,
		              sizeof(pass)) || !pass[0])
			return cl_err(CLEAVE_EINVAL,
			              "redis: the credentials of a read store "
			              "URI must be [USER]:PASSWORD@ "
			              "(percent-encoded)");
		auth = true;
		p = at + 1;
	}
	size_t hl = strcspn(p, ":/?#@");
	if (hl == 0 || hl >= hcap || p[hl] == '@' || p[hl] == '?' ||
	    p[hl] == '#')
		return cl_err(CLEAVE_EINVAL,
		              "redis: expected redis://[[USER]:PASSWORD@]HOST"
		              "[:PORT][/DB] (no options)");
	memcpy(host, p, hl);
	host[hl] = 0;
	p += hl;
	*port = 6379;
	*db = 0;
	if (*p == ':') {
		char *end;
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 1 || v > 65535)
			return cl_err(CLEAVE_EINVAL, "redis %s: bad port", host);
		*port = (int)v;
		p = end;
	}
	if (*p == '/' && p[1] >= '0' && p[1] <= '9') {
		char *end;
		long v = strtol(p + 1, &end, 10);
		if (v < 0 || v > 1000000 || (*end && *end != '/'))
			return cl_err(CLEAVE_EINVAL,
			              "redis %s: bad database number", host);
		*db = (int)v;
		p = end;
	}
	if (*p && *p != '/')
		return cl_err(CLEAVE_EINVAL,
		              "redis %s: unexpected '%s' (expected "
		              "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
		              host, p);
	if (auth)
		creds_set(host, *port, user, pass);
	memset(pass, 0, sizeof(pass));
	*rest = p;
	return 0;
}

int cl_rd_parse_path(rd_store *s, const char *path)
{
	const char *rest;
	int rc = cl_redis_parse(path, s->host, sizeof(s->host), &s->port,
	                        &s->db, &rest);
	if (rc)
		return rc;
	if (*rest != '/' || !rest[1] || strlen(rest + 1) >= RD_PREFIX_MAX ||
	    strchr(rest + 1, '|'))
		return cl_err(
		    CLEAVE_EINVAL,
		    "redis: '%s': expected redis://HOST:PORT/DB/PREFIX "
		    "(a prefix without '|', under %d bytes)",
		    path, RD_PREFIX_MAX);
	snprintf(s->prefix, sizeof(s->prefix), "%s", rest + 1);
	return 0;
}

/* Redis key "PREFIX|what|ns" (what "h" or "z"), or "PREFIX|ns" (what
 * NULL), in out (cap >= RD_PREFIX_MAX + CL_NS_IMAX + 8). */
size_t cl_rd_key(const rd_store *s, const char *what, const char *ns, char *out,
                 size_t cap)
{
	int n = what ? snprintf(out, cap, "%s|%s|%s", s->prefix, what, ns)
	             : snprintf(out, cap, "%s|ns", s->prefix);
	return (size_t)n;
}
