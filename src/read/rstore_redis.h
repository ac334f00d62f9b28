/*
 * rstore_redis.h — the Redis read store's own helpers, for its tests.  The
 * engine reaches the backend only through the method table (rstore.h).
 */
#ifndef CL_RSTORE_REDIS_H
#define CL_RSTORE_REDIS_H

#include "read/rstore.h"

/* Parses "redis://HOST[:PORT][/DB]" at the start of uri (port 6379, db 0
 * by default); *rest points past it ("" or "/..."). 0 or CLEAVE_EINVAL. */
int cl_redis_parse(const char *uri, char *host, size_t hcap, int *port,
		   int *db, const char **rest);
/* Calls fn(arg, name) for each copy under root ("redis://H:P/DB/PREFIX")
 * that `owner` claimed, name being what follows "PREFIX/" in its path; fn
 * returns 0 to go on.  0, or an error (< 0).  (The table's list.) */
int cl_redis_list(const char *root, const char *owner,
		  int (*fn)(void *arg, const char *name), void *arg);

#endif
