/*
 * rstore_lmdb.c — the "lmdb" read store: one LMDB environment per copy,
 * one named database per namespace.
 *
 * Layout in the directory `path`: data.mdb and lock.mdb.  Namespaces are
 * named databases created on first write.  Reserved databases, whose names
 * user namespaces cannot spell: "#cleave" (key "checkpoint" → int64
 * little-endian) and "#dead" (8-byte big-endian position → JSON
 * {"position","type","stream","error","data"}).
 *
 * DBI handles.  LMDB allows mdb_dbi_open() in one transaction at a time per
 * process, and a handle opened in a transaction belongs to it until it
 * commits (an abort closes it).  So:
 *  - at open, one transaction opens every database that exists (and
 *    creates the reserved ones) and publishes them;
 *  - afterwards only the writer opens handles (it is alone: one write
 *    transaction at a time, wmu held from begin to end), keeps new ones as
 *    pending for its own use, and publishes them after its commit;
 *  - readers never open handles: a namespace missing from the published
 *    cache does not exist in their snapshot (see read_begin for why that
 *    holds even while a commit that creates a namespace is in flight).
 * The cache is an open-addressing table of immutable entries published
 * with release stores; lookups take no lock.  Entry `seq` (publication
 * order) lets a read transaction ignore entries newer than its snapshot.
 *
 * Read transactions are reused: ended ones are reset (mdb_txn_reset, which
 * keeps the reader slot under MDB_NOTLS) and parked on an idle list for
 * mdb_txn_renew.  A query costs no malloc and no reader-table lock.
 *
 * Pointer lifetimes.  In a read transaction, values (and scan keys) point
 * into the map and live until the transaction ends.  In a write
 * transaction LMDB only guarantees them until the next write, so they are
 * copied into a per-transaction arena to keep the API's promise.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "read/rstore_lmdb_int.h"

/* ---- errors ------------------------------------------------------------ */

int cl_lm_err(const lm_store *s, int mrc, const char *what)
{
	const char *p = s->base.path;
	switch (mrc) {
	case MDB_MAP_FULL:
		return cl_err(CLEAVE_ENOSPC,
		              "lmdb %s: %s: map full (map size %llu bytes); "
		              "raise it with --lmdb-map-size",
		              p, what, (unsigned long long)s->map_size);
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return cl_err(CLEAVE_ECORRUPT, "lmdb %s: %s: %s", p, what,
		              mdb_strerror(mrc));
	case MDB_DBS_FULL:
		return cl_err(CLEAVE_ETOOBIG,
		              "lmdb %s: %s: more than %d namespaces", p, what,
		              LM_MAXDBS);
	case MDB_READERS_FULL:
		return cl_err(CLEAVE_EBUSY,
		              "lmdb %s: %s: more than %d concurrent readers", p,
		              what, LM_MAXREADERS);
	case MDB_TXN_FULL:
		return cl_err(CLEAVE_ETOOBIG,
		              "lmdb %s: %s: transaction too large; apply "
		              "smaller batches",
		              p, what);
	case MDB_BAD_VALSIZE:
		return cl_err(CLEAVE_ETOOBIG, "lmdb %s: %s: %s", p, what,
		              mdb_strerror(mrc));
	case ENOMEM:
		return cl_err(CLEAVE_ENOMEM, "lmdb %s: %s: out of memory", p,
		              what);
	case ENOSPC:
		return cl_err(CLEAVE_ENOSPC, "lmdb %s: %s: disk full", p, what);
	default:
		return cl_err(CLEAVE_EIO, "lmdb %s: %s: %s", p, what,
		              mdb_strerror(mrc));
	}
}

/* ---- the write arena ----------------------------------------------------- */

static void *arena_copy(lm_store *s, const void *p, size_t n)
{
	lm_chunk *c = s->arena;
	if (!c || c->cap - c->used < n) {
		size_t cap = CL_MAX((size_t)LM_ARENA_CHUNK, n);
		lm_chunk *nc = malloc(sizeof(*nc) + cap);
		if (!nc)
			return NULL;
		nc->cap = cap;
		nc->used = 0;
		nc->next = c;
		s->arena = c = nc;
	}
	void *d = c->mem + c->used;
	memcpy(d, p, n);
	/* 8-byte alignment lets callers read counters in place. */
	c->used += (n + 7) & ~(size_t)7;
	if (c->used > c->cap)
		c->used = c->cap;
	return d;
}

/* Frees all chunks but the newest, which is kept for the next writer. */
static void arena_reset(lm_store *s)
{
	lm_chunk *c = s->arena;
	if (!c)
		return;
	for (lm_chunk *o = c->next, *n; o; o = n) {
		n = o->next;
		free(o);
	}
	c->next = NULL;
	c->used = 0;
}

/* Makes k/v handed to the caller live until the transaction ends. */
static int hand_out(lm_tx *t, MDB_val *k, MDB_val *v)
{
	if (!t->base.write)
		return 0;
	if (k) {
		k->mv_data = arena_copy(t->s, k->mv_data, k->mv_size);
		if (!k->mv_data)
			return cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
	}
	if (v) {
		v->mv_data = arena_copy(t->s, v->mv_data, v->mv_size);
		if (!v->mv_data)
			return cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
	}
	return 0;
}

/* ---- namespaces ---------------------------------------------------------- */

static lm_ns *ns_find(lm_store *s, const char *name, size_t len, uint64_t h)
{
	for (size_t i = h & (LM_SLOTS - 1);; i = (i + 1) & (LM_SLOTS - 1)) {
		lm_ns *e =
		    atomic_load_explicit(&s->slots[i], memory_order_acquire);
		if (!e)
			return NULL;
		if (e->hash == h && e->len == len &&
		    !memcmp(e->name, name, len))
			return e;
	}
}

/* Publishes a handle that committed; caller holds s->mu. */
static void ns_publish(lm_store *s, const lm_ns *src)
{
	uint32_t n = atomic_load_explicit(&s->nns, memory_order_relaxed);
	if (n >= LM_MAXDBS || ns_find(s, src->name, src->len, src->hash))
		return;
	lm_ns *e = &s->ns[n];
	*e = *src;
	e->seq = n;
	size_t i = e->hash & (LM_SLOTS - 1);
	while (atomic_load_explicit(&s->slots[i], memory_order_relaxed))
		i = (i + 1) & (LM_SLOTS - 1);
	atomic_store_explicit(&s->slots[i], e, memory_order_release);
	atomic_store_explicit(&s->nns, n + 1, memory_order_release);
}

/* Opens `name` in the write transaction (creating it when `create`) and
 * keeps it pending until commit.  ENOTFOUND when absent and !create. */
static int ns_open_pending(lm_tx *t, const char *name, size_t len, uint64_t h,
                           bool create, MDB_dbi *dbi)
{
	lm_store *s = t->s;
	for (int i = 0; i < s->npend; i++) {
		lm_ns *p = &s->pend[i];
		if (p->hash == h && p->len == len &&
		    !memcmp(p->name, name, len)) {
			*dbi = p->dbi;
			return 0;
		}
	}
	int mrc = mdb_dbi_open(t->txn, name, create ? MDB_CREATE : 0, dbi);
	if (mrc == MDB_NOTFOUND)
		return CLEAVE_ENOTFOUND;
	if (mrc)
		return cl_lm_err(s, mrc, name);
	if (s->npend >= LM_MAXDBS)
		return cl_err(CLEAVE_ETOOBIG, "lmdb %s: too many namespaces",
		              s->base.path);
	lm_ns *p = &s->pend[s->npend++];
	p->hash = h;
	p->len = len;
	p->dbi = *dbi;
	memcpy(p->name, name, len);
	p->name[len] = 0;
	return 0;
}

/* The handle of namespace `name` in t.  Returns 0, CLEAVE_ENOTFOUND (no
 * message) when the namespace does not exist in t's snapshot and `create`
 * is false, or an error.  create needs a write transaction. */
int cl_lm_dbi(lm_tx *t, const char *name, bool create, MDB_dbi *dbi)
{
	size_t len = strnlen(name, CL_NS_IMAX + 1);
	if (CL_UNLIKELY(len == 0 || len > CL_NS_IMAX))
		return cl_err(CLEAVE_EINVAL, "lmdb: bad namespace name");
	uint64_t h = cl_hash(name, len);
	lm_ns *e = ns_find(t->s, name, len, h);
	if (CL_LIKELY(e && (t->base.write || e->seq < t->gen))) {
		*dbi = e->dbi;
		return 0;
	}
	if (!t->base.write)
		return CLEAVE_ENOTFOUND;
	return ns_open_pending(t, name, len, h, create, dbi);
}

/* ---- open / close -------------------------------------------------------- */

/* Opens every existing database, and creates the reserved ones unless the
 * store is read-only, in one transaction; publishes them after commit. */
static int open_all(lm_store *s)
{
	static const char *const reserved[] = {LM_META, LM_DEAD};
	lm_ns *found = NULL;
	int nfound = 0, rc = 0, mrc;
	MDB_txn *txn;
	MDB_cursor *cur = NULL;
	MDB_val k, v;

	mrc = mdb_txn_begin(s->env, NULL, s->read_only ? MDB_RDONLY : 0, &txn);
	if (mrc)
		return cl_lm_err(s, mrc, "begin");
	if ((mrc = mdb_dbi_open(txn, NULL, 0, &s->main_dbi)))
		goto fail;
	if (!s->read_only) {
		MDB_dbi d;
		for (size_t i = 0; i < CL_ARRAY_LEN(reserved); i++)
			if ((mrc = mdb_dbi_open(txn, reserved[i], MDB_CREATE,
			                        &d)))
				goto fail;
	}
	found = calloc(LM_MAXDBS, sizeof(*found));
	if (!found) {
		rc = cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
		goto out;
	}
	if ((mrc = mdb_cursor_open(txn, s->main_dbi, &cur)))
		goto fail;
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !mrc;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		/* Names are stored without their NUL; longer ones, or names
		 * with NUL inside, are not ours. */
		if (k.mv_size == 0 || k.mv_size > CL_NS_IMAX ||
		    memchr(k.mv_data, 0, k.mv_size) || nfound == LM_MAXDBS)
			continue;
		lm_ns *f = &found[nfound++];
		memcpy(f->name, k.mv_data, k.mv_size);
		f->name[k.mv_size] = 0;
		f->len = k.mv_size;
	}
	mdb_cursor_close(cur);
	cur = NULL;
	if (mrc != MDB_NOTFOUND)
		goto fail;
	for (int i = 0; i < nfound; i++) {
		lm_ns *f = &found[i];
		mrc = mdb_dbi_open(txn, f->name, 0, &f->dbi);
		if (mrc == MDB_INCOMPATIBLE || mrc == MDB_NOTFOUND) {
			f->len = 0; /* a plain key in the main database */
			continue;
		}
		if (mrc)
			goto fail;
		f->hash = cl_hash(f->name, f->len);
	}
	if ((mrc = mdb_txn_commit(txn))) {
		txn = NULL;
		goto fail;
	}
	txn = NULL;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < nfound; i++)
		if (found[i].len)
			ns_publish(s, &found[i]);
	pthread_mutex_unlock(&s->mu);
	goto out;
fail:
	rc = cl_lm_err(s, mrc, "open namespaces");
out:
	if (cur)
		mdb_cursor_close(cur);
	if (txn)
		mdb_txn_abort(txn);
	free(found);
	return rc;
}

static void lm_close(cl_rstore *base)
{
	lm_store *s = (lm_store *)base;
	if (!s)
		return;
	for (lm_tx *t = s->idle, *n; t; t = n) {
		n = t->next;
		mdb_txn_abort(t->txn);
		free(t);
	}
	/* Whatever the commit mode, a closed store is on disk: the engine
	 * marks a clean shutdown only after closing its stores. */
	if (s->env && !s->read_only)
		mdb_env_sync(s->env, 1);
	if (s->env)
		mdb_env_close(s->env);
	arena_reset(s);
	free(s->arena);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->wmu);
	free(s->base.path);
	free(s);
}

static int lm_open(const char *path, const cl_rstore_opts *o, cl_rstore **out)
{
	static const cl_rstore_opts defaults;
	lm_store *s = NULL;
	unsigned flags;
	int rc, mrc;

	*out = NULL;
	if (!o)
		o = &defaults;
	if (!path || !*path)
		return cl_err(CLEAVE_EINVAL, "lmdb: no path");
	if (!o->read_only && (rc = cl_mkdirs(path)))
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
	cl_rstore_locks_init(&s->mu, &s->wmu);
	s->base.m = &cl_rstore_lmdb;
	s->base.path = cl_strdup(path);
	s->read_only = o->read_only;
	s->map_size = o->map_size ? o->map_size : LM_MAP_DEFAULT;
	if (!s->base.path) {
		rc = cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
		goto fail;
	}
	if ((mrc = mdb_env_create(&s->env))) {
		s->env = NULL;
		goto mfail;
	}
	if ((mrc = mdb_env_set_mapsize(s->env, (size_t)s->map_size)) ||
	    (mrc = mdb_env_set_maxdbs(s->env, LM_MAXDBS)) ||
	    (mrc = mdb_env_set_maxreaders(s->env, LM_MAXREADERS)))
		goto mfail;
	/* NOTLS: read transactions move between pool threads and are kept
	 * reset for reuse.  NOMETASYNC: a crash may undo the last commit,
	 * never tear it; the checkpoint commits with the data, so the
	 * projection simply re-applies. */
	flags = MDB_NOTLS;
	if (o->read_only)
		flags |= MDB_RDONLY;
	else
		flags |= MDB_NOMETASYNC;
	if (o->nosync)
		flags |= MDB_NOSYNC;
	if ((mrc = mdb_env_open(s->env, path, flags, 0600)))
		goto mfail;
	/* Reader slots of crashed processes would pin old pages forever. */
	int dead;
	mdb_reader_check(s->env, &dead);
	s->maxkey = (size_t)mdb_env_get_maxkeysize(s->env);
	if ((rc = open_all(s)))
		goto fail;
	*out = &s->base;
	return 0;
mfail:
	rc = cl_lm_err(s, mrc, "open");
fail:
	lm_close(&s->base);
	return rc;
}

static int lm_drop(const char *path)
{
	return cl_rmtree(path);
}

/* ---- transactions -------------------------------------------------------- */

static lm_tx *idle_pop(lm_store *s)
{
	pthread_mutex_lock(&s->mu);
	lm_tx *t = s->idle;
	if (t) {
		s->idle = t->next;
		s->nidle--;
	}
	pthread_mutex_unlock(&s->mu);
	return t;
}

static void read_end(lm_tx *t)
{
	lm_store *s = t->s;
	mdb_txn_reset(t->txn);
	pthread_mutex_lock(&s->mu);
	if (s->nidle < LM_IDLE_MAX) {
		t->next = s->idle;
		s->idle = t;
		s->nidle++;
		t = NULL;
	}
	pthread_mutex_unlock(&s->mu);
	if (t) {
		mdb_txn_abort(t->txn);
		free(t);
	}
}

/* Starts a read snapshot whose view of the namespace cache is exact: every
 * published entry with seq < gen is a valid handle in the snapshot, and a
 * namespace of the snapshot is never missing from it.  The danger is a
 * commit that creates namespaces: its data becomes visible to new readers
 * inside mdb_txn_commit, before the writer can publish the handles.  The
 * writer makes `epoch` odd around such a commit; a reader that overlapped
 * one retries unless its snapshot is older than that commit. */
static int read_begin(lm_store *s, lm_tx **out)
{
	lm_tx *t = idle_pop(s);
	int mrc;
	if (!t) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return cl_err(CLEAVE_ENOMEM, "lmdb: out of memory");
		t->s = s;
		t->base.m = &cl_rstore_lmdb;
		t->base.store = &s->base;
	}
	for (;;) {
		uint64_t e1 =
		    atomic_load_explicit(&s->epoch, memory_order_acquire);
		t->gen = atomic_load_explicit(&s->nns, memory_order_acquire);
		if (t->txn)
			mrc = mdb_txn_renew(t->txn);
		else
			mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &t->txn);
		if (mrc)
			goto fail;
		atomic_thread_fence(memory_order_seq_cst);
		uint64_t e2 =
		    atomic_load_explicit(&s->epoch, memory_order_relaxed);
		if (CL_LIKELY(e1 == e2 && !(e1 & 1)))
			break;
		if (e1 == e2 && mdb_txn_id(t->txn) <
		                    atomic_load_explicit(&s->pend_txnid,
		                                         memory_order_relaxed))
			break;
		mdb_txn_reset(t->txn);
		sched_yield();
	}
	t->base.write = false;
	*out = t;
	return 0;
fail:
	if (t->txn)
		mdb_txn_abort(t->txn);
	free(t);
	return cl_lm_err(s, mrc, "begin read");
}

static int lm_begin(cl_rstore *base, bool write, cleave_rtx **out)
{
	lm_store *s = (lm_store *)base;
	*out = NULL;
	if (!write) {
		lm_tx *t = NULL;
		int rc = read_begin(s, &t);
		if (rc == 0)
			*out = &t->base;
		return rc;
	}
	if (s->read_only)
		return cl_err(CLEAVE_EREADONLY, "lmdb %s: opened read-only",
		              s->base.path);
	/* wmu is error-checking: a second begin on the writer's own thread
	 * would otherwise wait forever for itself. */
	if (pthread_mutex_lock(&s->wmu))
		return cl_err(CLEAVE_EBUSY,
		              "lmdb %s: this thread already has the write "
		              "transaction",
		              s->base.path);
	lm_tx *t = &s->wtx;
	int mrc = mdb_txn_begin(s->env, NULL, 0, &t->txn);
	if (mrc) {
		t->txn = NULL;
		pthread_mutex_unlock(&s->wmu);
		return cl_lm_err(s, mrc, "begin write");
	}
	t->s = s;
	t->base.m = &cl_rstore_lmdb;
	t->base.store = &s->base;
	t->base.write = true;
	s->npend = 0;
	*out = &t->base;
	return 0;
}

static void write_end(lm_store *s)
{
	s->wtx.txn = NULL;
	s->npend = 0;
	arena_reset(s);
	pthread_mutex_unlock(&s->wmu);
}

static int lm_commit(cleave_rtx *tx)
{
	lm_tx *t = (lm_tx *)tx;
	lm_store *s = t->s;
	int mrc;
	if (!tx->write) {
		read_end(t);
		return 0;
	}
	if (!s->npend) {
		mrc = mdb_txn_commit(t->txn);
	} else {
		atomic_store(&s->pend_txnid, mdb_txn_id(t->txn));
		atomic_fetch_add(&s->epoch, 1);
		mrc = mdb_txn_commit(t->txn);
		if (!mrc) {
			pthread_mutex_lock(&s->mu);
			for (int i = 0; i < s->npend; i++)
				ns_publish(s, &s->pend[i]);
			pthread_mutex_unlock(&s->mu);
		}
		atomic_fetch_add(&s->epoch, 1);
	}
	write_end(s);
	return mrc ? cl_lm_err(s, mrc, "commit") : 0;
}

static void lm_abort(cleave_rtx *tx)
{
	lm_tx *t = (lm_tx *)tx;
	if (!tx)
		return;
	if (!tx->write) {
		read_end(t);
		return;
	}
	/* Handles opened in the transaction die with it: drop the pending. */
	mdb_txn_abort(t->txn);
	write_end(t->s);
}

/* ---- key/value ----------------------------------------------------------- */

static int key_val(const lm_store *s, const char *key, MDB_val *k)
{
	k->mv_size = strlen(key);
	k->mv_data = (void *)key;
	if (CL_UNLIKELY(k->mv_size == 0 || k->mv_size > s->maxkey))
		return cl_err(CLEAVE_ETOOBIG,
		              "lmdb: key of %zu bytes (1..%zu allowed)",
		              k->mv_size, s->maxkey);
	return 0;
}

static int lm_get(cleave_rtx *tx, const char *ns, const char *key,
                  const void **val, size_t *len)
{
	lm_tx *t = (lm_tx *)tx;
	MDB_val k, v;
	MDB_dbi dbi;
	int rc = cl_lm_dbi(t, ns, false, &dbi);
	if (rc == CLEAVE_ENOTFOUND)
		goto notfound;
	if (rc || (rc = key_val(t->s, key, &k)))
		return rc;
	int mrc = mdb_get(t->txn, dbi, &k, &v);
	if (mrc == MDB_NOTFOUND)
		goto notfound;
	if (CL_UNLIKELY(mrc))
		return cl_lm_err(t->s, mrc, "get");
	if ((rc = hand_out(t, NULL, &v)))
		return rc;
	*val = v.mv_data;
	*len = v.mv_size;
	return 0;
notfound:
	return cl_err(CLEAVE_ENOTFOUND, "key not found");
}

int cl_lm_put(cleave_rtx *tx, const char *ns, const char *key, const void *val,
              size_t len)
{
	lm_tx *t = (lm_tx *)tx;
	MDB_val k, v = {len, (void *)val};
	MDB_dbi dbi;
	int rc;
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY, "lmdb: put in a read-only "
		                                "transaction");
	if ((rc = key_val(t->s, key, &k)) ||
	    (rc = cl_lm_dbi(t, ns, true, &dbi)))
		return rc;
	int mrc = mdb_put(t->txn, dbi, &k, &v, 0);
	return mrc ? cl_lm_err(t->s, mrc, "put") : 0;
}

static int lm_del(cleave_rtx *tx, const char *ns, const char *key)
{
	lm_tx *t = (lm_tx *)tx;
	MDB_val k;
	MDB_dbi dbi;
	int rc;
	if (!tx->write)
		return cl_err(CLEAVE_EREADONLY, "lmdb: del in a read-only "
		                                "transaction");
	if ((rc = key_val(t->s, key, &k)))
		return rc;
	rc = cl_lm_dbi(t, ns, false, &dbi);
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	int mrc = mdb_del(t->txn, dbi, &k, NULL);
	if (mrc && mrc != MDB_NOTFOUND)
		return cl_lm_err(t->s, mrc, "del");
	return 0;
}

static int cmp_key(const MDB_val *k, const char *b, size_t blen)
{
	size_t n = CL_MIN(k->mv_size, blen);
	int c = memcmp(k->mv_data, b, n);
	if (c)
		return c;
	return k->mv_size < blen ? -1 : k->mv_size > blen;
}

/* Positions c on the first key of the scan; returns an MDB code. */
static int scan_first(MDB_cursor *c, MDB_val *k, MDB_val *v, const char *from,
                      size_t flen, const char *to, size_t tlen, bool rev)
{
	int mrc;
	if (!rev) {
		if (!flen)
			return mdb_cursor_get(c, k, v, MDB_FIRST);
		k->mv_size = flen;
		k->mv_data = (void *)from;
		return mdb_cursor_get(c, k, v, MDB_SET_RANGE);
	}
	if (!to)
		return mdb_cursor_get(c, k, v, MDB_LAST);
	if (!tlen)
		return MDB_NOTFOUND; /* nothing sorts below "" */
	k->mv_size = tlen;
	k->mv_data = (void *)to;
	mrc = mdb_cursor_get(c, k, v, MDB_SET_RANGE);
	if (mrc == MDB_NOTFOUND)
		return mdb_cursor_get(c, k, v, MDB_LAST);
	if (mrc)
		return mrc;
	return mdb_cursor_get(c, k, v, MDB_PREV);
}

static int lm_scan(cleave_rtx *tx, const char *ns, const char *from,
                   const char *to, int flags, size_t limit, cleave_scan_fn fn,
                   void *arg)
{
	lm_tx *t = (lm_tx *)tx;
	bool rev = flags & CLEAVE_SCAN_REVERSE;
	size_t flen = from ? strlen(from) : 0, tlen = to ? strlen(to) : 0;
	MDB_cursor *c = NULL;
	MDB_val k, v;
	MDB_dbi dbi;
	size_t n = 0;
	int rc = cl_lm_dbi(t, ns, false, &dbi), mrc;
	if (rc == CLEAVE_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	if ((mrc = mdb_cursor_open(t->txn, dbi, &c)))
		return cl_lm_err(t->s, mrc, "scan");
	for (mrc = scan_first(c, &k, &v, from, flen, to, tlen, rev); !mrc;
	     mrc = mdb_cursor_get(c, &k, &v, rev ? MDB_PREV : MDB_NEXT)) {
		if (!rev && to && cmp_key(&k, to, tlen) >= 0)
			break;
		if (rev && flen && cmp_key(&k, from, flen) < 0)
			break;
		if ((rc = hand_out(t, &k, &v)))
			goto out;
		rc = fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
		if (rc) {
			rc = rc < 0 ? rc : 0;
			goto out;
		}
		if (limit && ++n == limit)
			break;
	}
	if (mrc && mrc != MDB_NOTFOUND)
		rc = cl_lm_err(t->s, mrc, "scan");
out:
	mdb_cursor_close(c);
	return rc;
}
const cl_rstore_methods cl_rstore_lmdb = {
    .version = CL_RSTORE_V1,
    .kind = "lmdb",
    .caps = CL_RS_KV | CL_RS_SNAPSHOT,
    .open = lm_open,
    .close = lm_close,
    .drop = lm_drop,
    .begin = lm_begin,
    .commit = lm_commit,
    .abort = lm_abort,
    .checkpoint_get = cl_lm_checkpoint_get,
    .checkpoint_set = cl_lm_checkpoint_set,
    .dead_letter_add = cl_lm_dead_letter_add,
    .dead_letter_count = cl_lm_dead_letter_count,
    .dump = cl_lm_dump,
    .get = lm_get,
    .put = cl_lm_put,
    .del = lm_del,
    .scan = lm_scan,
};
