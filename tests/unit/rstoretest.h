/*
 * rstoretest.h — helpers shared by the read-store tests (any backend,
 * through the public cleave_rtx_* calls).
 */
#ifndef CL_RSTORETEST_H
#define CL_RSTORETEST_H

#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"
#include "read/rstore.h"

/* A transaction on s, or the test fails. */
cleave_rtx *rt_begin(cl_rstore *s, bool write);
/* Puts the string v at ns/k, or the test fails. */
void rt_put(cleave_rtx *tx, const char *ns, const char *k, const char *v);
/* Asserts ns/k holds exactly v (NULL: absent). */
void rt_expect(cleave_rtx *tx, const char *ns, const char *k, const char *v);
/* A cleave_scan_fn: appends "key=value;" to the cleave_buf at arg. */
int rt_collect(void *arg, const char *key, size_t klen, const void *val,
               size_t vlen);
/* The scan's keys and values as "k=v;…" in b (reset first). */
const char *rt_scan(cleave_rtx *tx, const char *ns, const char *from,
                    const char *to, int flags, size_t limit, cleave_buf *b);

#endif
