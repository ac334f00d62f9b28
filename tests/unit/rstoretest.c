/*
 * rstoretest.c — see rstoretest.h.
 */
#include <string.h>

#include "rstoretest.h"
#include "testutil.h"

cleave_rtx *rt_begin(cl_rstore *s, bool write)
{
	cleave_rtx *tx = NULL;
	TU_OK(s->m->begin(s, write, &tx));
	assert_non_null(tx);
	return tx;
}

void rt_put(cleave_rtx *tx, const char *ns, const char *k, const char *v)
{
	TU_OK(cleave_rtx_put(tx, ns, k, v, strlen(v)));
}

void rt_expect(cleave_rtx *tx, const char *ns, const char *k, const char *v)
{
	const void *p;
	size_t n;
	int rc = cleave_rtx_get(tx, ns, k, &p, &n);
	if (!v) {
		assert_int_equal(rc, CLEAVE_ENOTFOUND);
		return;
	}
	TU_OK(rc);
	assert_int_equal(n, strlen(v));
	assert_memory_equal(p, v, n);
}

int rt_collect(void *arg, const char *key, size_t klen, const void *val,
               size_t vlen)
{
	cleave_buf *b = arg;
	cleave_buf_add(b, key, klen);
	cleave_buf_addc(b, '=');
	cleave_buf_add(b, val, vlen);
	cleave_buf_addc(b, ';');
	return 0;
}

const char *rt_scan(cleave_rtx *tx, const char *ns, const char *from,
                    const char *to, int flags, size_t limit, cleave_buf *b)
{
	cleave_buf_reset(b);
	cleave_buf_adds(b, "");
	TU_OK(cleave_rtx_scan(tx, ns, from, to, flags, limit, rt_collect, b));
	return b->p;
}
