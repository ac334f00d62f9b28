/*
 * rstore_gen.c — sorted sets, counters and lists over a store's key/value
 * methods, for backends without native ones.
 *
 * Layouts (a namespace should hold one kind of structure; mixing plain keys
 * into a structure's namespace breaks it):
 *
 *  sorted set "ns":
 *    "ns"      member                      → score, int64 little-endian
 *    "~z:ns"   rank(score) member          → empty
 *              rank(s) = 16 lowercase hex digits of ~(s ^ 2^63), so byte
 *              order is score descending, then member ascending.
 *  counter "ns":
 *    "ns"      key → n int64 fields, little-endian, 1 <= n <= 16
 *  list "ns":
 *    "ns"      len list seqhex             → item
 *              len = 3 decimal digits of strlen(list); seqhex = 16
 *              lowercase hex digits of seq ^ 2^63.  The length prefix keeps
 *              the items of one list contiguous even when list keys are
 *              composite (contain 0x1F) or prefixes of one another.
 *    "~n:ns"   list                        → item count, int64 LE
 *              for the lists whose length was asked or that were trimmed
 *              (counted once then, by a scan), kept from then on by put
 *              and del; so length and trimming to the newest N cost no
 *              scan, and a list that is never measured costs one lookup
 *              per put.
 *
 * Every internal key is NUL-free text, so the string-key methods carry it.
 * Deleting what is absent (zrem, list_del) succeeds: projections replay.
 */
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_int.h"

#define BIAS            ((uint64_t)1 << 63)
#define HEX16           16
#define LIST_LEN_DIGITS 3

static const char hexd[] = "0123456789abcdef";

static void put_hex16(char *out, uint64_t v)
{
	for (int i = HEX16 - 1; i >= 0; i--) {
		out[i] = hexd[v & 15];
		v >>= 4;
	}
}

static bool get_hex16(const char *p, uint64_t *out)
{
	uint64_t v = 0;
	for (int i = 0; i < HEX16; i++) {
		char c = p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else
			return false;
		v = (v << 4) | d;
	}
	*out = v;
	return true;
}

static int need_kv(const cleave_rtx *tx, const char *op)
{
	const cl_rstore_methods *m = tx->m;
	if (m->get && m->put && m->del && m->scan)
		return 0;
	return cl_err(CLEAVE_ENOTSUP,
	              "%s: not supported by the %s read store (no key/value "
	              "access)",
	              op, m->kind);
}

/* ---- sorted sets --------------------------------------------------------- */

static void zset_ns(char out[CL_NS_IMAX + 1], const char *ns)
{
	snprintf(out, CL_NS_IMAX + 1, CL_ZSET_PREFIX "%s", ns);
}

/* Index key for (score, member) into out (HEX16 + mlen + 1 bytes). */
static void zset_key(char *out, int64_t score, const char *member, size_t mlen)
{
	put_hex16(out, ~((uint64_t)score ^ BIAS));
	memcpy(out + HEX16, member, mlen);
	out[HEX16 + mlen] = 0;
}

/* The stored score of member: 0 and *found, ENOTFOUND, or an error. */
static int zset_score(cleave_rtx *tx, const char *ns, const char *member,
                      int64_t *score)
{
	const void *v;
	size_t vlen;
	int rc = tx->m->get(tx, ns, member, &v, &vlen);
	if (rc)
		return rc;
	if (vlen != 8)
		return cl_err(CLEAVE_ECORRUPT,
		              "sorted set %s: member \"%s\" has a %zu-byte "
		              "score (want 8)",
		              ns, member, vlen);
	*score = cl_get_le64(v);
	return 0;
}

int cl_gen_zincr(cleave_rtx *tx, const char *ns, const char *member,
                 int64_t delta, int64_t *score_out)
{
	char zns[CL_NS_IMAX + 1], ik[HEX16 + CLEAVE_KEY_MAX + 1];
	unsigned char sv[8];
	size_t mlen = strlen(member);
	int64_t old = 0, now;
	bool had = true;
	int rc = need_kv(tx, "zincr");
	if (rc)
		return rc;
	rc = zset_score(tx, ns, member, &old);
	if (rc == CLEAVE_ENOTFOUND)
		had = false, old = 0;
	else if (rc)
		return rc;
	if (__builtin_add_overflow(old, delta, &now))
		return cl_err(CLEAVE_EINVAL,
		              "zincr %s: score of \"%s\" overflows int64", ns,
		              member);
	if (had && now == old)
		goto out;
	zset_ns(zns, ns);
	if (had) {
		zset_key(ik, old, member, mlen);
		if ((rc = tx->m->del(tx, zns, ik)))
			return rc;
	}
	zset_key(ik, now, member, mlen);
	if ((rc = tx->m->put(tx, zns, ik, "", 0)))
		return rc;
	cl_put_le64(sv, now);
	if ((rc = tx->m->put(tx, ns, member, sv, sizeof(sv))))
		return rc;
out:
	if (score_out)
		*score_out = now;
	return 0;
}

int cl_gen_zscore(cleave_rtx *tx, const char *ns, const char *member,
                  int64_t *out)
{
	int rc = need_kv(tx, "zscore");
	if (rc)
		return rc;
	return zset_score(tx, ns, member, out);
}

int cl_gen_zrem(cleave_rtx *tx, const char *ns, const char *member)
{
	char zns[CL_NS_IMAX + 1], ik[HEX16 + CLEAVE_KEY_MAX + 1];
	int64_t score;
	int rc = need_kv(tx, "zrem");
	if (rc)
		return rc;
	rc = zset_score(tx, ns, member, &score);
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	zset_ns(zns, ns);
	zset_key(ik, score, member, strlen(member));
	if ((rc = tx->m->del(tx, zns, ik)))
		return rc;
	return tx->m->del(tx, ns, member);
}

struct zrange_ctx {
	const char *ns;
	size_t skip;
	cleave_zrange_fn fn;
	void *arg;
};

static int zrange_visit(void *arg, const char *key, size_t klen,
                        const void *val, size_t vlen)
{
	struct zrange_ctx *z = arg;
	char member[CLEAVE_KEY_MAX + 1];
	uint64_t rank;
	if (z->skip) {
		z->skip--;
		return 0;
	}
	if (klen <= HEX16 || klen - HEX16 > CLEAVE_KEY_MAX ||
	    !get_hex16(key, &rank))
		return cl_err(CLEAVE_ECORRUPT,
		              "sorted set %s: malformed index key (%zu bytes)",
		              z->ns, klen);
	memcpy(member, key + HEX16, klen - HEX16);
	member[klen - HEX16] = 0;
	return z->fn(z->arg, member, (int64_t)(~rank ^ BIAS));
}

int cl_gen_zrange(cleave_rtx *tx, const char *ns, size_t offset, size_t limit,
                  cleave_zrange_fn fn, void *arg)
{
	char zns[CL_NS_IMAX + 1];
	struct zrange_ctx z = {ns, offset, fn, arg};
	size_t n = 0;
	int rc = need_kv(tx, "zrange");
	if (rc)
		return rc;
	/* The index has no rank counts, so an offset costs a walk over the
	 * skipped members; leaderboards page near the top. */
	if (limit && __builtin_add_overflow(offset, limit, &n))
		n = 0;
	zset_ns(zns, ns);
	return cl_rtx_scan(tx, zns, NULL, NULL, 0, n, zrange_visit, &z);
}

/* ---- counters ------------------------------------------------------------ */

/* Decodes a stored counter into vals[CLEAVE_COUNTER_MAX] (zero-filled);
 * returns the stored field count or CLEAVE_ECORRUPT. */
static int counter_decode(const char *ns, const char *key, size_t klen,
                          const void *v, size_t vlen, int64_t *vals)
{
	size_t m = vlen / 8;
	if (vlen % 8 || m < 1 || m > CLEAVE_COUNTER_MAX)
		return cl_err(CLEAVE_ECORRUPT,
		              "counter %s/%.*s: stored value of %zu bytes is "
		              "not 1..%d int64 fields",
		              ns, (int)CL_MIN(klen, 64), key, vlen,
		              CLEAVE_COUNTER_MAX);
	memset(vals, 0, CLEAVE_COUNTER_MAX * sizeof(*vals));
	for (size_t i = 0; i < m; i++)
		vals[i] = cl_get_le64((const unsigned char *)v + 8 * i);
	return (int)m;
}

int cl_gen_counter_add(cleave_rtx *tx, const char *ns, const char *key,
                       const int64_t *delta, int n)
{
	int64_t vals[CLEAVE_COUNTER_MAX] = {0};
	unsigned char buf[8 * CLEAVE_COUNTER_MAX];
	const void *v;
	size_t vlen;
	int m = 0;
	int rc = need_kv(tx, "counter_add");
	if (rc)
		return rc;
	rc = tx->m->get(tx, ns, key, &v, &vlen);
	if (rc == 0) {
		m = counter_decode(ns, key, strlen(key), v, vlen, vals);
		if (m < 0)
			return m;
	} else if (rc != CLEAVE_ENOTFOUND) {
		return rc;
	}
	for (int i = 0; i < n; i++)
		if (__builtin_add_overflow(vals[i], delta[i], &vals[i]))
			return cl_err(CLEAVE_EINVAL,
			              "counter_add %s/%s: field %d overflows "
			              "int64",
			              ns, key, i);
	m = CL_MAX(m, n);
	for (int i = 0; i < m; i++)
		cl_put_le64(buf + 8 * i, vals[i]);
	return tx->m->put(tx, ns, key, buf, 8 * (size_t)m);
}

int cl_gen_counter_get(cleave_rtx *tx, const char *ns, const char *key,
                       int64_t *out, int n)
{
	int64_t vals[CLEAVE_COUNTER_MAX];
	const void *v;
	size_t vlen;
	int rc = need_kv(tx, "counter_get");
	if (rc)
		return rc;
	rc = tx->m->get(tx, ns, key, &v, &vlen);
	if (rc)
		return rc;
	rc = counter_decode(ns, key, strlen(key), v, vlen, vals);
	if (rc < 0)
		return rc;
	memcpy(out, vals, (size_t)n * sizeof(*out));
	return 0;
}

struct counter_ctx {
	const char *ns;
	cleave_counter_fn fn;
	void *arg;
};

static int counter_visit(void *arg, const char *key, size_t klen,
                         const void *val, size_t vlen)
{
	struct counter_ctx *c = arg;
	int64_t vals[CLEAVE_COUNTER_MAX];
	char k[CLEAVE_KEY_MAX + 1];
	if (klen > CLEAVE_KEY_MAX)
		return cl_err(CLEAVE_ECORRUPT,
		              "counter %s: stored key of %zu bytes", c->ns,
		              klen);
	int m = counter_decode(c->ns, key, klen, val, vlen, vals);
	if (m < 0)
		return m;
	memcpy(k, key, klen);
	k[klen] = 0;
	return c->fn(c->arg, k, vals, m);
}

int cl_gen_counter_scan(cleave_rtx *tx, const char *ns, const char *from,
                        const char *to, size_t limit, cleave_counter_fn fn,
                        void *arg)
{
	struct counter_ctx c = {ns, fn, arg};
	int rc = need_kv(tx, "counter_scan");
	if (rc)
		return rc;
	return cl_rtx_scan(tx, ns, from, to, 0, limit, counter_visit, &c);
}

/* ---- lists --------------------------------------------------------------- */

#define LIST_KEY_MAX (LIST_LEN_DIGITS + CLEAVE_KEY_MAX + HEX16)

/* Writes the prefix of list's items into out (LIST_KEY_MAX + 1 bytes);
 * returns its length.  list is at most CLEAVE_KEY_MAX bytes (checked). */
static size_t list_prefix(char *out, const char *list)
{
	size_t n = strlen(list);
	out[0] = (char)('0' + n / 100);
	out[1] = (char)('0' + n / 10 % 10);
	out[2] = (char)('0' + n % 10);
	memcpy(out + LIST_LEN_DIGITS, list, n);
	out[LIST_LEN_DIGITS + n] = 0;
	return LIST_LEN_DIGITS + n;
}

static void list_key(char *out, const char *list, int64_t seq)
{
	size_t p = list_prefix(out, list);
	put_hex16(out + p, (uint64_t)seq ^ BIAS);
	out[p + HEX16] = 0;
}

/* The count namespace of list namespace ns. */
static void count_ns(char *out, const char *ns)
{
	snprintf(out, CL_NS_IMAX + 1, "~n:%s", ns);
}

static int count_item(void *arg, const char *key, size_t klen,
                      const void *val, size_t vlen)
{
	(*(int64_t *)arg)++;
	return 0;
}

/* The number of items of list: its count record, or (none yet) a count of
 * its items, recorded when tx may write. */
static int list_count(cleave_rtx *tx, const char *ns, const char *list,
                      int64_t *out)
{
	char cns[CL_NS_IMAX + 1], from[LIST_KEY_MAX + 1], to[LIST_KEY_MAX + 1];
	const void *v;
	size_t n;
	count_ns(cns, ns);
	int rc = tx->m->get(tx, cns, list, &v, &n);
	if (rc == 0 && n == 8) {
		*out = cl_get_le64(v);
		return 0;
	}
	if (rc == 0)
		return cl_err(CLEAVE_ECORRUPT, "list %s: bad count record", ns);
	if (rc != CLEAVE_ENOTFOUND)
		return rc;
	size_t p = list_prefix(from, list);
	memcpy(to, from, p);
	memset(to + p, 'g', HEX16); /* past every hex digit */
	to[p + HEX16] = 0;
	*out = 0;
	return cl_rtx_scan(tx, ns, from, to, 0, 0, count_item, out);
}

static int count_set(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t n)
{
	char cns[CL_NS_IMAX + 1];
	unsigned char b[8];
	count_ns(cns, ns);
	cl_put_le64(b, n);
	return tx->m->put(tx, cns, list, b, sizeof(b));
}

/* The list's count record: 0 with *count, CLEAVE_ENOTFOUND when the list
 * keeps none (never measured), or an error. */
static int count_get(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t *count)
{
	char cns[CL_NS_IMAX + 1];
	const void *v;
	size_t n;
	count_ns(cns, ns);
	int rc = tx->m->get(tx, cns, list, &v, &n);
	if (rc == 0 && n != 8)
		return cl_err(CLEAVE_ECORRUPT, "list %s: bad count record", ns);
	if (rc == 0)
		*count = cl_get_le64(v);
	return rc;
}

int cl_gen_list_put(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq, const void *val, size_t len)
{
	char k[LIST_KEY_MAX + 1];
	const void *v;
	size_t n;
	int64_t count;
	int rc = need_kv(tx, "list_put");
	if (rc)
		return rc;
	list_key(k, list, seq);
	rc = count_get(tx, ns, list, &count);
	if (rc == 0) {
		/* a counted list: one more unless seq replaces an item */
		rc = tx->m->get(tx, ns, k, &v, &n);
		if (rc == CLEAVE_ENOTFOUND)
			rc = count_set(tx, ns, list, count + 1);
	} else if (rc == CLEAVE_ENOTFOUND) {
		rc = 0;
	}
	return rc ? rc : tx->m->put(tx, ns, k, val, len);
}

int cl_gen_list_len(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t *out)
{
	int rc = need_kv(tx, "list_len");
	if (rc)
		return rc;
	rc = count_get(tx, ns, list, out);
	if (rc != CLEAVE_ENOTFOUND)
		return rc;
	/* first measured: counted now, and kept from here when writable */
	if ((rc = list_count(tx, ns, list, out)) || !tx->write)
		return rc;
	return count_set(tx, ns, list, *out);
}

struct trim_ctx {
	char (*keys)[LIST_KEY_MAX + 1];
	size_t n, cap;
};

static int trim_visit(void *arg, const char *key, size_t klen,
                      const void *val, size_t vlen)
{
	struct trim_ctx *t = arg;
	if (t->n == t->cap || klen > LIST_KEY_MAX)
		return 1;
	memcpy(t->keys[t->n], key, klen);
	t->keys[t->n++][klen] = 0;
	return 0;
}

int cl_gen_list_trim(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t keep, int64_t *removed)
{
	char from[LIST_KEY_MAX + 1], to[LIST_KEY_MAX + 1];
	char keys[64][LIST_KEY_MAX + 1];
	int64_t count, gone = 0;
	int rc = need_kv(tx, "list_trim");
	if (rc || (rc = list_count(tx, ns, list, &count)))
		return rc;
	size_t p = list_prefix(from, list);
	memcpy(to, from, p);
	memset(to + p, 'g', HEX16);
	to[p + HEX16] = 0;
	/* the oldest first, in rounds of at most 64 keys gathered, then
	 * deleted (no write inside a scan) */
	while (count > keep) {
		struct trim_ctx t = {keys, 0, 64};
		if ((size_t)(count - keep) < t.cap)
			t.cap = (size_t)(count - keep);
		rc = cl_rtx_scan(tx, ns, from, to, 0, t.cap, trim_visit, &t);
		if (rc < 0)
			return rc;
		if (t.n == 0)
			break; /* the count said more than there is */
		for (size_t i = 0; i < t.n; i++)
			if ((rc = tx->m->del(tx, ns, keys[i])))
				return rc;
		count -= (int64_t)t.n;
		gone += (int64_t)t.n;
	}
	/* recorded even when nothing went: the list is counted from now */
	if ((rc = count_set(tx, ns, list, count < 0 ? 0 : count)))
		return rc;
	if (removed)
		*removed = gone;
	return 0;
}

int cl_gen_list_get(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq, const void **val, size_t *len)
{
	char k[LIST_KEY_MAX + 1];
	int rc = need_kv(tx, "list_get");
	if (rc)
		return rc;
	list_key(k, list, seq);
	return tx->m->get(tx, ns, k, val, len);
}

int cl_gen_list_del(cleave_rtx *tx, const char *ns, const char *list,
                    int64_t seq)
{
	char k[LIST_KEY_MAX + 1];
	const void *v;
	size_t n;
	int64_t count;
	int rc = need_kv(tx, "list_del");
	if (rc)
		return rc;
	list_key(k, list, seq);
	rc = count_get(tx, ns, list, &count);
	if (rc == CLEAVE_ENOTFOUND)
		return tx->m->del(tx, ns, k); /* an uncounted list */
	if (rc)
		return rc;
	rc = tx->m->get(tx, ns, k, &v, &n);
	if (rc == CLEAVE_ENOTFOUND)
		return 0; /* deleting what is absent succeeds */
	if (rc || (rc = count_set(tx, ns, list, count > 0 ? count - 1 : 0)))
		return rc;
	return tx->m->del(tx, ns, k);
}

struct list_ctx {
	const char *ns;
	size_t plen;
	cleave_list_fn fn;
	void *arg;
};

static int list_visit(void *arg, const char *key, size_t klen, const void *val,
                      size_t vlen)
{
	struct list_ctx *l = arg;
	uint64_t u;
	/* Only the items of this list lie in the scanned range; a key of
	 * another shape means someone wrote plain keys into the namespace. */
	if (klen != l->plen + HEX16 || !get_hex16(key + l->plen, &u))
		return cl_err(CLEAVE_ECORRUPT,
		              "list %s: malformed item key (%zu bytes)", l->ns,
		              klen);
	return l->fn(l->arg, (int64_t)(u ^ BIAS), val, vlen);
}

int cl_gen_list_page(cleave_rtx *tx, const char *ns, const char *list,
                     int64_t before, size_t limit, cleave_list_fn fn, void *arg)
{
	char from[LIST_KEY_MAX + 1], to[LIST_KEY_MAX + 1];
	struct list_ctx l = {ns, 0, fn, arg};
	int rc = need_kv(tx, "list_page");
	if (rc)
		return rc;
	l.plen = list_prefix(from, list);
	list_key(to, list, before);
	return cl_rtx_scan(tx, ns, from, to, CLEAVE_SCAN_REVERSE, limit,
	                   list_visit, &l);
}

/* ---- keys as the domain wrote them ----------------------------------------- */

size_t cl_gen_key_text(const char *table, const char *key, size_t klen,
                       char *out, size_t cap)
{
	uint64_t u;
	int n = -1;
	if (!strncmp(table, CL_ZSET_PREFIX, strlen(CL_ZSET_PREFIX)) &&
	    klen > HEX16 && get_hex16(key, &u)) {
		/* rank(score) member */
		n = snprintf(out, cap, "%.*s (score %lld)", (int)(klen - HEX16),
		             key + HEX16, (long long)(int64_t)~(u ^ BIAS));
	} else if (klen >= LIST_LEN_DIGITS + HEX16 && key[0] >= '0' &&
	           key[0] <= '9' && key[1] >= '0' && key[1] <= '9' &&
	           key[2] >= '0' && key[2] <= '9') {
		size_t l = (size_t)((key[0] - '0') * 100 + (key[1] - '0') * 10 +
		                    (key[2] - '0'));
		if (klen == LIST_LEN_DIGITS + l + HEX16 &&
		    get_hex16(key + LIST_LEN_DIGITS + l, &u))
			n = snprintf(out, cap, "%.*s #%lld", (int)l,
			             key + LIST_LEN_DIGITS,
			             (long long)(int64_t)(u ^ BIAS));
	}
	if (n < 0)
		n = snprintf(out, cap, "%.*s", (int)klen, key);
	return cap && (size_t)n >= cap ? cap - 1 : (size_t)n;
}
