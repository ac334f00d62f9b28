/*
 * rstore_int.h — what the read-store files share beyond rstore.h: name
 * limits and the generic sorted sets, counters and lists (rstore_gen.c)
 * that rstore.c falls back on when a backend has no native ones.
 *
 * The generic structures encode every internal key as a NUL-free string
 * (fixed-width lowercase hex for numbers), so they run on the plain
 * string-key get/put/del/scan methods of any backend and need no binary-key
 * variant of the method table.
 */
#ifndef CL_RSTORE_INT_H
#define CL_RSTORE_INT_H

#include <pthread.h>

#include "read/rstore.h"

/* The backends (found through the registry in rstore.c). */
extern const cl_rstore_methods cl_rstore_lmdb;
extern const cl_rstore_methods cl_rstore_sqlite;
extern const cl_rstore_methods cl_rstore_redis;

/* A user namespace: [a-z0-9_], 1..CL_NS_MAX bytes (checked in rstore.c). */
#define CL_NS_MAX 32
/* Names backends must accept: user namespaces, the derived ones of the
 * generic structures ("~z:<ns>") and each backend's reserved ones.  User
 * names can never contain '~' or '#', so derived and reserved names never
 * collide with them. */
#define CL_NS_IMAX     40
#define CL_ZSET_PREFIX "~z:"

/* A scan as cleave_rtx_scan makes it: in a write transaction, by pages
 * gathered first, so that the callback may write.  The generic structures
 * scan through it. */
#define CL_SCAN_KEY_MAX (CLEAVE_KEY_MAX + 64)
int cl_rtx_scan(cleave_rtx *tx, const char *ns, const char *from,
                const char *to, int flags, size_t limit, cleave_scan_fn fn,
                void *arg);

/* The generic implementations.  Arguments have been checked by rstore.c
 * (namespace, key lengths, read-only); each needs the backend's get, put,
 * del and scan, and answers CLEAVE_ENOTSUP naming the store kind without
 * them. */
int cl_gen_zincr(cleave_rtx *tx, const char *ns, const char *member,
                 int64_t delta, int64_t *score_out);
int cl_gen_zscore(cleave_rtx *tx, const char *ns, const char *member,
                  int64_t *out);
int cl_gen_zrem(cleave_rtx *tx, const char *ns, const char *member);
int cl_gen_zrange(cleave_rtx *tx, const char *ns, size_t offset, size_t limit,
                  cleave_zrange_fn fn, void *arg);

int cl_gen_counter_add(cleave_rtx *tx, const char *ns, const char *key,
                       const int64_t *delta, int n);
int cl_gen_counter_get(cleave_rtx *tx, const char *ns, const char *key,
                       int64_t *out, int n);
int cl_gen_counter_scan(cleave_rtx *tx, const char *ns, const char *from,
                        const char *to, size_t limit, cleave_counter_fn fn,
                        void *arg);

int cl_gen_list_put(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq, const void *val, size_t len);
int cl_gen_list_get(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq, const void **val, size_t *len);
int cl_gen_list_del(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq);
int cl_gen_list_len(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t *out);
int cl_gen_list_trim(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t keep, int64_t *removed);
int cl_gen_list_page(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t before, size_t limit, cleave_list_fn fn,
                     void *arg);

/* Little-endian int64s: counters, scores, checkpoints in every store. */
static inline void cl_put_le64(unsigned char *p, int64_t v)
{
	uint64_t u = (uint64_t)v;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(u >> (8 * i));
}

static inline int64_t cl_get_le64(const void *v)
{
	const unsigned char *p = v;
	uint64_t u = 0;
	for (int i = 7; i >= 0; i--)
		u = (u << 8) | p[i];
	return (int64_t)u;
}

/* A dead letter's record, as every store keeps it: JSON {"position",
 * "type","stream","error","data"} into b (initialised by the caller; b->oom
 * on failure). */
void cl_dead_letter_json(cleave_buf *b, const cleave_event *ev,
                         const char *error);

/* The two locks every key/value store has: mu (plain) and wmu, the one
 * writer's, error-checking so that a second begin on the same thread or an
 * unlock by another is refused rather than undefined. */
void cl_rstore_locks_init(pthread_mutex_t *mu, pthread_mutex_t *wmu);

#endif
