/*
 * rstore.c — the public cleave_rtx_* calls: argument checks, the read-only
 * rule, and dispatch to the store's methods (or to the generic structures
 * of rstore_gen.c when a backend has no native ones).
 *
 * Checks made here, once, so backends may trust their arguments:
 *  - tx is not NULL; writes in a read-only transaction are CLEAVE_EREADONLY;
 *  - ns is [a-z0-9_], 1..32 bytes (CLEAVE_EINVAL);
 *  - keys, members and list keys are non-NULL, non-empty and at most
 *    CLEAVE_KEY_MAX bytes (CLEAVE_EINVAL / CLEAVE_ETOOBIG);
 *  - scan bounds may be NULL or "" and are at most CLEAVE_KEY_MAX bytes;
 *  - counters take 1..CLEAVE_COUNTER_MAX fields.
 * A method the store lacks is CLEAVE_ENOTSUP, naming the store kind.
 */
#include "read/rstore.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "read/keyrec.h"
#include "read/rstore_int.h"

/* The registry: the embedded stores (by kind), then the shared ones (by
 * URI scheme). */
static const cl_rstore_methods *const all[] = {
    &cl_rstore_lmdb,
    &cl_rstore_sqlite,
    &cl_rstore_redis,
};

const cl_rstore_methods *cl_rstore_find(const char *kind)
{
	if (!kind)
		return NULL;
	for (size_t i = 0; i < CL_ARRAY_LEN(all); i++)
		if (!cl_rs_has(all[i], CL_RS_SHARED) &&
		    !strcmp(all[i]->kind, kind))
			return all[i];
	return NULL;
}

const cl_rstore_methods *cl_rstore_for_uri(const char *uri)
{
	for (size_t i = 0; uri && i < CL_ARRAY_LEN(all); i++) {
		const char *sc = all[i]->scheme;
		size_t n = sc ? strlen(sc) : 0;
		if (n && !strncmp(uri, sc, n) && !strncmp(uri + n, "://", 3))
			return all[i];
	}
	return NULL;
}

static char uri_forms[512];

static void uri_forms_init(void)
{
	size_t n = 0;
	for (size_t i = 0; i < CL_ARRAY_LEN(all); i++)
		if (all[i]->uri_form && n < sizeof(uri_forms))
			n += (size_t)snprintf(uri_forms + n,
					      sizeof(uri_forms) - n, "%s%s",
					      n ? " or " : "",
					      all[i]->uri_form);
}

const char *cl_rstore_uri_forms(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, uri_forms_init);
	return uri_forms;
}

int cl_rs_hold(cl_rstore *s, bool on)
{
	if (cl_rs_has(s->m, CL_RS_SNAPSHOT) || !s->m->hold)
		return 0;
	return s->m->hold(s, on);
}

typedef struct late_drop {
	const cl_rstore_methods *m;
	char path[];
} late_drop;

static void *late_drop_main(void *arg)
{
	late_drop *d = arg;
	cl_thread_name("cl-drop");
	sleep(CL_SHARED_DROP_GRACE_S);
	d->m->drop(d->path);
	free(d);
	return NULL;
}

void cl_rs_drop_retired(const cl_rstore_methods *m, const char *path)
{
	if (cl_rs_has(m, CL_RS_SHARED)) {
		late_drop *d = malloc(sizeof(*d) + strlen(path) + 1);
		pthread_t th;
		pthread_attr_t a;
		if (d) {
			d->m = m;
			strcpy(d->path, path);
			pthread_attr_init(&a);
			pthread_attr_setdetachstate(&a,
						    PTHREAD_CREATE_DETACHED);
			int rc = pthread_create(&th, &a, late_drop_main, d);
			pthread_attr_destroy(&a);
			if (!rc)
				return;
			free(d);
		}
	}
	m->drop(path);
}

void cl_dead_letter_json(cleave_buf *b, const cleave_event *ev, const char *error)
{
	cleave_buf_adds(b, "{\"position\":");
	cleave_buf_add_i64(b, ev->position);
	cleave_buf_adds(b, ",\"type\":");
	cleave_buf_add_jstr(b, ev->type ? ev->type : "",
	                    ev->type ? strlen(ev->type) : 0);
	cleave_buf_adds(b, ",\"stream\":");
	cleave_buf_add_jstr(b, ev->stream ? ev->stream : "",
	                    ev->stream ? strlen(ev->stream) : 0);
	cleave_buf_adds(b, ",\"error\":");
	cleave_buf_add_jstr(b, error ? error : "", error ? strlen(error) : 0);
	cleave_buf_adds(b, ",\"data\":");
	if (ev->data && ev->data_len)
		cleave_buf_add(b, ev->data, ev->data_len);
	else
		cleave_buf_adds(b, "null");
	cleave_buf_addc(b, '}');
}

void cl_rstore_locks_init(pthread_mutex_t *mu, pthread_mutex_t *wmu)
{
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
	pthread_mutex_init(mu, NULL);
	pthread_mutex_init(wmu, &ma);
	pthread_mutexattr_destroy(&ma);
}

/* ---- checks -------------------------------------------------------------- */

static int tx_check(cleave_rtx *tx, const char *op, bool write)
{
	if (CL_UNLIKELY(!tx))
		return cl_err(CLEAVE_EINVAL, "%s: transaction is NULL", op);
	if (CL_UNLIKELY(write && !tx->write))
		return cl_err(CLEAVE_EREADONLY,
		              "%s: the transaction on this %s store is "
		              "read-only",
		              op, tx->m->kind);
	return 0;
}

static int notsup(const cleave_rtx *tx, const char *op)
{
	return cl_err(CLEAVE_ENOTSUP, "%s: not supported by the %s read store",
	              op, tx->m->kind);
}

static int ns_check(const char *op, const char *ns)
{
	size_t i;
	if (CL_UNLIKELY(!ns))
		return cl_err(CLEAVE_EINVAL, "%s: namespace is NULL", op);
	for (i = 0; ns[i]; i++) {
		unsigned char c = (unsigned char)ns[i];
		if (CL_UNLIKELY(i == CL_NS_MAX))
			return cl_err(CLEAVE_EINVAL,
			              "%s: namespace \"%.*s...\" is longer "
			              "than %d bytes",
			              op, CL_NS_MAX, ns, CL_NS_MAX);
		if (CL_UNLIKELY(!((c >= 'a' && c <= 'z') ||
		                  (c >= '0' && c <= '9') || c == '_')))
			return cl_err(CLEAVE_EINVAL,
			              "%s: namespace \"%.*s\" has a character "
			              "outside [a-z0-9_]",
			              op, CL_NS_MAX, ns);
	}
	if (CL_UNLIKELY(i == 0))
		return cl_err(CLEAVE_EINVAL, "%s: namespace is empty", op);
	return 0;
}

/* `what` names the argument in messages ("key", "member", "list"). */
static int key_check(const char *op, const char *what, const char *key)
{
	if (CL_UNLIKELY(!key))
		return cl_err(CLEAVE_EINVAL, "%s: %s is NULL", op, what);
	size_t n = strnlen(key, CLEAVE_KEY_MAX + 1);
	if (CL_UNLIKELY(n == 0))
		return cl_err(CLEAVE_EINVAL, "%s: %s is empty", op, what);
	if (CL_UNLIKELY(n > CLEAVE_KEY_MAX))
		return cl_err(CLEAVE_ETOOBIG,
		              "%s: %s is longer than %d bytes (CLEAVE_KEY_MAX)",
		              op, what, CLEAVE_KEY_MAX);
	return 0;
}

static int bound_check(const char *op, const char *bound)
{
	if (bound && strnlen(bound, CLEAVE_KEY_MAX + 1) > CLEAVE_KEY_MAX)
		return cl_err(CLEAVE_ETOOBIG,
		              "%s: range bound is longer than %d bytes", op,
		              CLEAVE_KEY_MAX);
	return 0;
}

static int null_check(const char *op, const void *p, const char *what)
{
	if (CL_UNLIKELY(!p))
		return cl_err(CLEAVE_EINVAL, "%s: %s is NULL", op, what);
	return 0;
}

static int count_check(const char *op, int n)
{
	if (n < 1 || n > CLEAVE_COUNTER_MAX)
		return cl_err(CLEAVE_EINVAL,
		              "%s: %d fields; a counter has 1..%d", op, n,
		              CLEAVE_COUNTER_MAX);
	return 0;
}

/* ---- key/value ----------------------------------------------------------- */

int cleave_rtx_get(cleave_rtx *tx, const char *ns, const char *key,
                   const void **val, size_t *len)
{
	const void *v;
	size_t n;
	int rc;
	if ((rc = tx_check(tx, "get", false)) || (rc = ns_check("get", ns)) ||
	    (rc = key_check("get", "key", key)))
		return rc;
	CL_REC_READ(tx, CL_TOK_KEY, ns, key);
	if (!tx->m->get)
		return notsup(tx, "get");
	rc = tx->m->get(tx, ns, key, &v, &n);
	if (rc == 0) {
		if (val)
			*val = v;
		if (len)
			*len = n;
	}
	return rc;
}

int cleave_rtx_put(cleave_rtx *tx, const char *ns, const char *key,
                   const void *val, size_t len)
{
	int rc;
	if ((rc = tx_check(tx, "put", true)) || (rc = ns_check("put", ns)) ||
	    (rc = key_check("put", "key", key)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_KEY, ns, key);
	if (!val && len)
		return cl_err(CLEAVE_EINVAL, "put: value is NULL");
	if (!tx->m->put)
		return notsup(tx, "put");
	return tx->m->put(tx, ns, key, val ? val : "", len);
}

int cleave_rtx_del(cleave_rtx *tx, const char *ns, const char *key)
{
	int rc;
	if ((rc = tx_check(tx, "del", true)) || (rc = ns_check("del", ns)) ||
	    (rc = key_check("del", "key", key)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_KEY, ns, key);
	if (!tx->m->del)
		return notsup(tx, "del");
	return tx->m->del(tx, ns, key);
}

/* A write transaction's scans visit pages gathered first (keys and values
 * copied), so that a callback may write to the store: a backend's cursor
 * does not survive a write under it (LMDB's may skip or repeat, Redis's
 * overlay changes, SQLite's statement sees its own changes).  The next
 * page starts just past the last key visited: keys hold no NUL, so the
 * least key after K is K "\x01". */
#define SCAN_PAGE 64

typedef struct scan_page {
	cleave_buf b;           /* key \0 value, one after the other */
	size_t koff[SCAN_PAGE], klen[SCAN_PAGE], voff[SCAN_PAGE],
	    vlen[SCAN_PAGE];
	int n;
} scan_page;

static int gather(void *arg, const char *key, size_t klen, const void *val,
                  size_t vlen)
{
	scan_page *g = arg;
	g->koff[g->n] = g->b.len;
	g->klen[g->n] = klen;
	cleave_buf_add(&g->b, key, klen);
	cleave_buf_addc(&g->b, 0);
	g->voff[g->n] = g->b.len;
	g->vlen[g->n] = vlen;
	cleave_buf_add(&g->b, val, vlen);
	g->n++;
	return g->b.oom ? CLEAVE_ENOMEM : 0;
}

int cl_rtx_scan(cleave_rtx *tx, const char *ns, const char *from,
                const char *to, int flags, size_t limit, cleave_scan_fn fn,
                void *arg)
{
	if (!tx->write)
		return tx->m->scan(tx, ns, from, to, flags, limit, fn, arg);
	bool rev = flags & CLEAVE_SCAN_REVERSE;
	char lo[CL_SCAN_KEY_MAX + 2], hi[CL_SCAN_KEY_MAX + 2];
	const char *f = from, *t = to;
	size_t seen = 0;
	scan_page g;
	cleave_buf_init(&g.b);
	int rc = 0;
	for (;;) {
		size_t want = SCAN_PAGE;
		if (limit && limit - seen < want)
			want = limit - seen;
		g.n = 0;
		cleave_buf_reset(&g.b);
		rc = tx->m->scan(tx, ns, f, t, flags, want, gather, &g);
		if (rc < 0 || g.n == 0)
			break;
		for (int i = 0; i < g.n && rc == 0; i++)
			rc = fn(arg, g.b.p + g.koff[i], g.klen[i],
			        g.b.p + g.voff[i], g.vlen[i]);
		seen += (size_t)g.n;
		if (rc || (size_t)g.n < want || (limit && seen >= limit))
			break;
		const char *last = g.b.p + g.koff[g.n - 1];
		size_t ll = g.klen[g.n - 1];
		if (ll > CL_SCAN_KEY_MAX) {
			rc = cl_err(CLEAVE_EINTERNAL, "scan: key too long");
			break;
		}
		if (rev) {
			memcpy(hi, last, ll + 1);
			t = hi;
		} else {
			memcpy(lo, last, ll);
			lo[ll] = '\x01';
			lo[ll + 1] = 0;
			f = lo;
		}
	}
	cleave_buf_free(&g.b);
	return rc < 0 ? rc : 0;
}

int cleave_rtx_scan(cleave_rtx *tx, const char *ns, const char *from,
                    const char *to, int flags, size_t limit, cleave_scan_fn fn,
                    void *arg)
{
	int rc;
	if ((rc = tx_check(tx, "scan", false)) || (rc = ns_check("scan", ns)) ||
	    (rc = bound_check("scan", from)) ||
	    (rc = bound_check("scan", to)) ||
	    (rc = null_check("scan", (const void *)fn, "callback")))
		return rc;
	CL_REC_READ(tx, CL_TOK_NS, ns, NULL);
	if (flags & ~CLEAVE_SCAN_REVERSE)
		return cl_err(CLEAVE_EINVAL, "scan: unknown flags 0x%x", flags);
	if (!tx->m->scan)
		return notsup(tx, "scan");
	return cl_rtx_scan(tx, ns, from, to, flags, limit, fn, arg);
}

/* ---- sorted sets --------------------------------------------------------- */

int cleave_rtx_zincr(cleave_rtx *tx, const char *ns, const char *member,
                     int64_t delta, int64_t *score_out)
{
	int rc;
	if ((rc = tx_check(tx, "zincr", true)) ||
	    (rc = ns_check("zincr", ns)) ||
	    (rc = key_check("zincr", "member", member)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_KEY, ns, member);
	if (tx->m->zincr)
		return tx->m->zincr(tx, ns, member, delta, score_out);
	return cl_gen_zincr(tx, ns, member, delta, score_out);
}

int cleave_rtx_zscore(cleave_rtx *tx, const char *ns, const char *member,
                      int64_t *out)
{
	int rc;
	if ((rc = tx_check(tx, "zscore", false)) ||
	    (rc = ns_check("zscore", ns)) ||
	    (rc = key_check("zscore", "member", member)) ||
	    (rc = null_check("zscore", out, "out")))
		return rc;
	CL_REC_READ(tx, CL_TOK_KEY, ns, member);
	if (tx->m->zscore)
		return tx->m->zscore(tx, ns, member, out);
	return cl_gen_zscore(tx, ns, member, out);
}

int cleave_rtx_zrem(cleave_rtx *tx, const char *ns, const char *member)
{
	int rc;
	if ((rc = tx_check(tx, "zrem", true)) || (rc = ns_check("zrem", ns)) ||
	    (rc = key_check("zrem", "member", member)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_KEY, ns, member);
	if (tx->m->zrem)
		return tx->m->zrem(tx, ns, member);
	return cl_gen_zrem(tx, ns, member);
}

int cleave_rtx_zrange(cleave_rtx *tx, const char *ns, size_t offset,
                      size_t limit, cleave_zrange_fn fn, void *arg)
{
	int rc;
	if ((rc = tx_check(tx, "zrange", false)) ||
	    (rc = ns_check("zrange", ns)) ||
	    (rc = null_check("zrange", (const void *)fn, "callback")))
		return rc;
	CL_REC_READ(tx, CL_TOK_NS, ns, NULL);
	if (tx->m->zrange)
		return tx->m->zrange(tx, ns, offset, limit, fn, arg);
	return cl_gen_zrange(tx, ns, offset, limit, fn, arg);
}

/* ---- counters ------------------------------------------------------------ */

int cleave_rtx_counter_add(cleave_rtx *tx, const char *ns, const char *key,
                           const int64_t *delta, int n)
{
	int rc;
	if ((rc = tx_check(tx, "counter_add", true)) ||
	    (rc = ns_check("counter_add", ns)) ||
	    (rc = key_check("counter_add", "key", key)) ||
	    (rc = null_check("counter_add", delta, "delta")) ||
	    (rc = count_check("counter_add", n)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_KEY, ns, key);
	if (tx->m->counter_add)
		return tx->m->counter_add(tx, ns, key, delta, n);
	return cl_gen_counter_add(tx, ns, key, delta, n);
}

int cleave_rtx_counter_get(cleave_rtx *tx, const char *ns, const char *key,
                           int64_t *out, int n)
{
	int rc;
	if ((rc = tx_check(tx, "counter_get", false)) ||
	    (rc = ns_check("counter_get", ns)) ||
	    (rc = key_check("counter_get", "key", key)) ||
	    (rc = null_check("counter_get", out, "out")) ||
	    (rc = count_check("counter_get", n)))
		return rc;
	CL_REC_READ(tx, CL_TOK_KEY, ns, key);
	if (tx->m->counter_get)
		return tx->m->counter_get(tx, ns, key, out, n);
	return cl_gen_counter_get(tx, ns, key, out, n);
}

int cleave_rtx_counter_scan(cleave_rtx *tx, const char *ns, const char *from,
                            const char *to, size_t limit, cleave_counter_fn fn,
                            void *arg)
{
	int rc;
	if ((rc = tx_check(tx, "counter_scan", false)) ||
	    (rc = ns_check("counter_scan", ns)) ||
	    (rc = bound_check("counter_scan", from)) ||
	    (rc = bound_check("counter_scan", to)) ||
	    (rc = null_check("counter_scan", (const void *)fn, "callback")))
		return rc;
	CL_REC_READ(tx, CL_TOK_NS, ns, NULL);
	if (tx->m->counter_scan)
		return tx->m->counter_scan(tx, ns, from, to, limit, fn, arg);
	return cl_gen_counter_scan(tx, ns, from, to, limit, fn, arg);
}

/* ---- lists --------------------------------------------------------------- */

int cleave_rtx_list_put(cleave_rtx *tx, const char *ns, const char *list,
                        int64_t seq, const void *val, size_t len)
{
	int rc;
	if ((rc = tx_check(tx, "list_put", true)) ||
	    (rc = ns_check("list_put", ns)) ||
	    (rc = key_check("list_put", "list", list)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_LIST, ns, list);
	if (!val && len)
		return cl_err(CLEAVE_EINVAL, "list_put: value is NULL");
	if (!val)
		val = "";
	if (tx->m->list_put)
		return tx->m->list_put(tx, ns, list, seq, val, len);
	return cl_gen_list_put(tx, ns, list, seq, val, len);
}

int cleave_rtx_list_get(cleave_rtx *tx, const char *ns, const char *list,
                        int64_t seq, const void **val, size_t *len)
{
	const void *v;
	size_t n;
	int rc;
	if ((rc = tx_check(tx, "list_get", false)) ||
	    (rc = ns_check("list_get", ns)) ||
	    (rc = key_check("list_get", "list", list)))
		return rc;
	CL_REC_READ(tx, CL_TOK_LIST, ns, list);
	if (tx->m->list_get)
		rc = tx->m->list_get(tx, ns, list, seq, &v, &n);
	else
		rc = cl_gen_list_get(tx, ns, list, seq, &v, &n);
	if (rc == 0) {
		if (val)
			*val = v;
		if (len)
			*len = n;
	}
	return rc;
}

int cleave_rtx_list_del(cleave_rtx *tx, const char *ns, const char *list,
                        int64_t seq)
{
	int rc;
	if ((rc = tx_check(tx, "list_del", true)) ||
	    (rc = ns_check("list_del", ns)) ||
	    (rc = key_check("list_del", "list", list)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_LIST, ns, list);
	if (tx->m->list_del)
		return tx->m->list_del(tx, ns, list, seq);
	return cl_gen_list_del(tx, ns, list, seq);
}

int cleave_rtx_list_len(cleave_rtx *tx, const char *ns, const char *list,
                        int64_t *out)
{
	int rc;
	if ((rc = tx_check(tx, "list_len", false)) ||
	    (rc = ns_check("list_len", ns)) ||
	    (rc = key_check("list_len", "list", list)) ||
	    (rc = null_check("list_len", (const void *)out, "out")))
		return rc;
	CL_REC_READ(tx, CL_TOK_LIST, ns, list);
	return cl_gen_list_len(tx, ns, list, out);
}

int cleave_rtx_list_trim(cleave_rtx *tx, const char *ns, const char *list,
                         int64_t keep, int64_t *removed)
{
	int rc;
	if ((rc = tx_check(tx, "list_trim", true)) ||
	    (rc = ns_check("list_trim", ns)) ||
	    (rc = key_check("list_trim", "list", list)))
		return rc;
	CL_REC_WRITE(tx, CL_TOK_LIST, ns, list);
	if (keep < 0)
		return cl_err(CLEAVE_EINVAL, "list_trim: keep is negative");
	return cl_gen_list_trim(tx, ns, list, keep, removed);
}

int cleave_rtx_list_page(cleave_rtx *tx, const char *ns, const char *list,
                         int64_t before, size_t limit, cleave_list_fn fn,
                         void *arg)
{
	int rc;
	if ((rc = tx_check(tx, "list_page", false)) ||
	    (rc = ns_check("list_page", ns)) ||
	    (rc = key_check("list_page", "list", list)) ||
	    (rc = null_check("list_page", (const void *)fn, "callback")))
		return rc;
	CL_REC_READ(tx, CL_TOK_LIST, ns, list);
	if (tx->m->list_page)
		return tx->m->list_page(tx, ns, list, before, limit, fn, arg);
	return cl_gen_list_page(tx, ns, list, before, limit, fn, arg);
}

/* ---- SQL ----------------------------------------------------------------- */

static int sql_check(const char *op, const char *sql, const cleave_value *args,
                     int nargs)
{
	if (!sql)
		return cl_err(CLEAVE_EINVAL, "%s: SQL is NULL", op);
	if (nargs < 0 || (nargs > 0 && !args))
		return cl_err(CLEAVE_EINVAL, "%s: bad argument array (%d)", op,
		              nargs);
	return 0;
}

int cleave_rtx_exec(cleave_rtx *tx, const char *sql, const cleave_value *args,
                    int nargs, int64_t *changes)
{
	int rc;
	if ((rc = tx_check(tx, "exec", true)) ||
	    (rc = sql_check("exec", sql, args, nargs)))
		return rc;
	if (tx->rec)
		cl_rec_write_all(tx);
	if (!tx->m->exec)
		return notsup(tx, "exec (SQL)");
	return tx->m->exec(tx, sql, args, nargs, changes);
}

int cleave_rtx_query(cleave_rtx *tx, const char *sql, const cleave_value *args,
                     int nargs, cleave_rows **out)
{
	int rc;
	if ((rc = tx_check(tx, "query", false)) ||
	    (rc = sql_check("query", sql, args, nargs)) ||
	    (rc = null_check("query", out, "out")))
		return rc;
	CL_REC_READ(tx, CL_TOK_STORE, NULL, NULL);
	*out = NULL;
	if (!tx->m->query)
		return notsup(tx, "query (SQL)");
	return tx->m->query(tx, sql, args, nargs, out);
}

/* ---- composite keys ------------------------------------------------------ */

int cleave_key(char *buf, size_t cap, int n, const char *const *parts)
{
	size_t len = 0;
	if (!buf || !parts || n < 1)
		return cl_err(CLEAVE_EINVAL,
		              "cleave_key: no parts or no buffer");
	for (int i = 0; i < n; i++) {
		const char *p = parts[i];
		if (!p)
			return cl_err(CLEAVE_EINVAL,
			              "cleave_key: part %d is NULL", i);
		size_t pn = strnlen(p, CLEAVE_KEY_MAX + 1);
		if (memchr(p, 0x1F, pn))
			return cl_err(CLEAVE_EINVAL,
			              "cleave_key: part %d contains the "
			              "separator 0x1F",
			              i);
		size_t need = len + (i > 0) + pn;
		if (need > CLEAVE_KEY_MAX || need + 1 > cap)
			return cl_err(
			    CLEAVE_ETOOBIG,
			    "cleave_key: key longer than %zu bytes",
			    CL_MIN((size_t)CLEAVE_KEY_MAX, cap ? cap - 1 : 0));
		if (i > 0)
			buf[len++] = 0x1F;
		memcpy(buf + len, p, pn);
		len += pn;
	}
	buf[len] = 0;
	return (int)len;
}

int cleave_rtx_fts_query(cleave_rtx *tx, const char *text, int max_words,
                         cleave_buf *out, int *nwords)
{
	int rc;
	if ((rc = tx_check(tx, "fts_query", false)) ||
	    (rc = null_check("fts_query", (const void *)text, "text")) ||
	    (rc = null_check("fts_query", (const void *)out, "out")))
		return rc;
	if (max_words < 1)
		return cl_err(CLEAVE_EINVAL, "fts_query: max_words < 1");
	if (!cleave_utf8_valid(text, strlen(text)))
		return cl_err(CLEAVE_EINVAL, "fts_query: text is not UTF-8");
	if (!tx->m->fts_query)
		return notsup(tx, "fts_query");
	return tx->m->fts_query(tx, text, strlen(text), max_words, out, nwords);
}
