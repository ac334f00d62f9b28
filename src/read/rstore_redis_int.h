/*
 * rstore_redis_int.h — what the files of the "redis" read store share.
 * Nothing outside those files includes it.
 *
 *   rstore_redis.c       open, close, drop; the data calls (get, put, del,
 *                        scan merged with the overlay); the engine's
 *                        records and the dump; the method table
 *   rstore_redis_conn.c  errors, pooled connections and their timeouts,
 *                        the URI and a copy's path, its Redis keys
 *   rstore_redis_root.c  what a root keeps beside its copies: each copy's
 *                        owner claim, the small records, the listing
 *   rstore_redis_tx.c    transactions: the checkpoint check, the overlay
 *                        and the transaction's memory, MULTI/EXEC commit
 */
#ifndef CL_RSTORE_REDIS_INT_H
#define CL_RSTORE_REDIS_INT_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <pthread.h>

#include "read/rstore.h"
#include "read/rstore_int.h"
#include "read/rstore_redis.h"

#define RD_IDLE_MAX   16 /* pooled read connections per store */
#define RD_META       "#cleave"
#define RD_DEAD       "#dead"
#define RD_CKPT       "checkpoint"
#define RD_PREFIX_MAX 512

typedef struct rd_store {
	cl_rstore base;
	char host[256];
	int port, db;
	char prefix[RD_PREFIX_MAX];
	bool read_only;
	int64_t ckpt;       /* the checkpoint in Redis as this store left it */
	pthread_mutex_t mu; /* idle */
	redisContext *idle[RD_IDLE_MAX];
	int nidle;
	pthread_mutex_t wmu; /* one writer; dump */
	/* opened lazily (cl_rstore_opts.lazy) while Redis was unreachable:
	 * the claim and the checkpoint read are owed to the first
	 * connection (pmu) */
	pthread_mutex_t pmu;
	atomic_bool pending;
	char *owner;
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
	/* a read transaction (a query's) ends by this time (monotonic µs):
	 * however many commands it sends, a hung Redis costs it at most
	 * RD_READ_TIMEOUT_MS */
	int64_t deadline_us;
	/* overlay (write transactions) */
	rd_op *ops;
	size_t nops, capops;
	uint32_t *slots; /* open addressing: index + 1 into ops */
	size_t nslots;
	rd_chunk *arena;   /* keys, values, copies handed out */
	redisReply **keep; /* replies whose strings were handed out */
	size_t nkeep, capkeep;
} rd_tx;

/* ---- rstore_redis_conn.c ----------------------------------------------- */

#define RD_TIMEOUT_S       10   /* writers, maintenance */
#define RD_READ_TIMEOUT_MS 1000 /* a query's transaction, in all */

/* CLEAVE_EIO naming the server and `what`: c's error, or no answer within
 * the timeout. */
int cl_rd_ctx_err(rd_store *s, redisContext *c, const char *what);
/* An error reply: CLEAVE_ENOSPC for Redis's OOM (maxmemory), else
 * CLEAVE_EIO. */
int cl_rd_reply_err(rd_store *s, const redisReply *r, const char *what);
/* Runs one command on t's connection; the reply (not an error reply) in
 * *out, which the caller frees.  A connection that failed is marked
 * broken (not pooled). */
int cl_rd_cmd(rd_tx *t, int argc, const char **argv, const size_t *argl,
              const char *what, redisReply **out);
/* A new connection to s's server and database, with the timeout of a
 * writer (write) or of a query. */
int cl_rd_connect(rd_store *s, bool write, redisContext **out);
/* A pooled connection, or a new one; cl_rd_conn_put gives it back (c may
 * be NULL; a broken or failed one is closed). */
int cl_rd_conn_get(rd_store *s, bool write, redisContext **out);
void cl_rd_conn_put(rd_store *s, redisContext *c, bool broken);
/* "redis://HOST:PORT/DB/PREFIX" into s's host, port, db and prefix.  0 or
 * CLEAVE_EINVAL. */
int cl_rd_parse_path(rd_store *s, const char *path);

/* Redis key "PREFIX|what|ns" (what "h" or "z"), or "PREFIX|ns" (what
 * NULL), in out (cap >= RKEY_CAP); its length. */
#define RKEY_CAP (RD_PREFIX_MAX + CL_NS_IMAX + 8)
size_t cl_rd_key(const rd_store *s, const char *what, const char *ns, char *out,
                 size_t cap);

/* ---- rstore_redis_root.c ----------------------------------------------- */

/* Records owner as the one engine that writes s's copy, on c; CLEAVE_EBUSY
 * when another engine claimed it. */
int cl_rd_claim(rd_store *s, redisContext *c, const char *owner);
/* The table's root_parse, meta_get and meta_set (rstore.h); its list is
 * cl_redis_list (rstore_redis.h). */
int cl_rd_root_parse(const char *uri, char **root);
int cl_rd_meta_get(cl_rstore *base, const char *name, char **out);
int cl_rd_meta_set(cl_rstore *base, const char *name, const char *val);

/* ---- rstore_redis_tx.c ------------------------------------------------- */

/* The checkpoint in a reply: 8 bytes little-endian, else CLEAVE_ECORRUPT. */
int cl_rd_ckpt_decode(const rd_store *s, const char *v, size_t n, int64_t *pos);
/* The checkpoint in Redis now (0 when absent), watched (WATCH) on c when
 * `watch`. */
int cl_rd_ckpt_read(rd_store *s, redisContext *c, bool watch, int64_t *pos);

/* The table's begin, commit and abort (rstore.h). */
int cl_rd_begin(cl_rstore *base, bool write, cleave_rtx **out);
int cl_rd_commit(cleave_rtx *tx);
void cl_rd_abort(cleave_rtx *tx);

/* Keeps r until the transaction ends (its strings were handed out); on
 * failure frees it and answers CLEAVE_ENOMEM. */
int cl_rd_keep_reply(rd_tx *t, redisReply *r);
/* The overlay's write of (ns, key), or NULL: what t's own reads see before
 * Redis's. */
rd_op *cl_rd_overlay_find(rd_tx *t, const char *ns, const char *key,
                          size_t klen);
/* Records a put of val (copied into the transaction) or a delete. */
int cl_rd_overlay_set(rd_tx *t, const char *ns, const char *key,
                      const void *val, size_t vlen, bool del);

/* ---- rstore_redis.c ---------------------------------------------------- */

/* The table's open and close (rstore.h). */
int cl_rd_open(const char *path, const cl_rstore_opts *o, cl_rstore **out);
void cl_rd_close(cl_rstore *base);

#endif
