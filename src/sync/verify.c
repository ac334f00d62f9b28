/*
 * verify.c — cleave_projection_verify: replay the log into a scratch
 * copy beside the live one and compare the two, entry by entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"

#include "sync/sync_int.h"

typedef struct vent {
	char *key;   /* table \0 key */
	size_t klen; /* of both parts */
	uint64_t vhash;
	bool seen;
} vent;

typedef struct vtab {
	vent *v;
	size_t cap, n;
} vtab;

static uint64_t vkey_hash(const char *k, size_t n)
{
	return cl_hash(k, n);
}

static vent *vtab_find(vtab *t, const char *k, size_t n, bool add)
{
	if (add && (t->n + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 1024;
		vent *v = calloc(cap, sizeof(*v));
		if (!v)
			return NULL;
		for (size_t i = 0; i < t->cap; i++) {
			if (!t->v[i].key)
				continue;
			size_t j =
			    vkey_hash(t->v[i].key, t->v[i].klen) & (cap - 1);
			while (v[j].key)
				j = (j + 1) & (cap - 1);
			v[j] = t->v[i];
		}
		free(t->v);
		t->v = v;
		t->cap = cap;
	}
	if (!t->cap)
		return NULL;
	size_t j = vkey_hash(k, n) & (t->cap - 1);
	while (t->v[j].key) {
		if (t->v[j].klen == n && !memcmp(t->v[j].key, k, n))
			return &t->v[j];
		j = (j + 1) & (t->cap - 1);
	}
	if (!add)
		return NULL;
	t->v[j].key = cl_strndup(k, n);
	if (!t->v[j].key)
		return NULL;
	t->v[j].klen = n;
	t->n++;
	return &t->v[j];
}

typedef struct vctx {
	vtab t;
	cleave_buf k;
	bool live;
	cleave_diff_fn fn;
	void *arg;
	int64_t ndiff;
	int rc;
} vctx;

static int vkey(vctx *x, const char *table, const char *key, size_t klen)
{
	cleave_buf_reset(&x->k);
	cleave_buf_adds(&x->k, table);
	cleave_buf_addc(&x->k, 0);
	cleave_buf_add(&x->k, key, klen);
	return x->k.oom ? CLEAVE_ENOMEM : 0;
}

static int vdiff(vctx *x, const char *table, const char *key, size_t klen,
                 const char *what)
{
	char text[CLEAVE_KEY_MAX + 64];
	x->ndiff++;
	if (!x->fn)
		return 0;
	size_t n = cl_gen_key_text(table, key, klen, text, sizeof(text));
	return x->fn(x->arg, table, text, n, what);
}

static int vdump(void *arg, const char *table, const char *key, size_t klen,
                 const void *val, size_t vlen)
{
	vctx *x = arg;
	/* list counts are derived (and absent from copies written before
	 * they existed): the items themselves are compared */
	if (!strncmp(table, "~n:", 3))
		return 0;
	if (vkey(x, table, key, klen))
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	uint64_t h = cl_hash(val, vlen);
	if (!x->live) {
		vent *v = vtab_find(&x->t, x->k.p, x->k.len, true);
		if (!v)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		v->vhash = h;
		return 0;
	}
	vent *v = vtab_find(&x->t, x->k.p, x->k.len, false);
	if (!v)
		return vdiff(x, table, key, klen, "extra");
	v->seen = true;
	if (v->vhash != h)
		return vdiff(x, table, key, klen, "different");
	return 0;
}

int cleave_projection_verify(cleave_engine *e, const char *name,
                             cleave_diff_fn fn, void *arg, int64_t *ndiff,
                             int64_t *position)
{
	cl_sync *s = e->sync;
	int k = cl_proj_find_own(e, name, "verify");
	if (k < 0)
		return k;
	cl_proj *p = &s->proj[k];
	cl_copy *live = cl_copy_acquire(p);
	if (!live)
		return cl_err(CLEAVE_EBUSY,
		              "projection %s is reopening its store; retry",
		              name);
	const cl_rstore_methods *m = live->store->m;
	const cleave_projection_def *def = live->def;
	cleave_rtx *ltx = NULL;
	cl_copy scratch = {0};
	scratch.building = true; /* serves nobody: records nothing */
	vctx x = {0};
	cl_evlist l = {0};
	cl_wreader *rd = NULL;
	char path[4096], hex[17];
	int64_t pos = 0;
	int rc = 0;
	bool held = false;
	path[0] = 0;
	x.fn = fn;
	x.arg = arg;
	if (!def) {
		rc = cl_err(CLEAVE_ENOTSUP,
		            "projection %s: the live copy's version %d has no "
		            "handler in this build",
		            name, live->version);
		goto out;
	}
	/* a store without snapshots keeps its writer out meanwhile */
	if ((rc = cl_rs_hold(live->store, true)) == 0)
		held = true;
	if (rc || (rc = m->begin(live->store, false, &ltx)) ||
	    (rc = m->checkpoint_get(ltx, &pos)))
		goto out;
	cl_random_hex(hex, 8);
	snprintf(path, sizeof(path), "%s/%s.verify-%s", cl_copy_root(e, m),
	         name, hex);
	cl_rstore_opts o = {0};
	o.nosync = true;
	o.map_size = e->cfg.lmdb_map_size;
	o.owner = s->owner;
	scratch.proj = p;
	scratch.def = def;
	scratch.version = live->version;
	if ((rc = m->open(path, &o, &scratch.store)))
		goto out;
	if (def->setup) {
		cleave_rtx *tx;
		if ((rc = m->begin(scratch.store, true, &tx)))
			goto out;
		if ((rc = def->setup(tx))) {
			cl_rtx_abort(tx);
			goto out;
		}
		if ((rc = cl_rtx_commit(tx)))
			goto out;
	}
	/* replay the log up to the live copy's position */
	int64_t at = 0;
	while (at < pos) {
		if ((rc = cl_evlist_reserve(&l, e->cfg.apply_batch_max)))
			goto out;
		int max = e->cfg.apply_batch_max;
		if ((rc = cl_collect_store(e, &rd, def->event_types, at,
		                           CL_MIN(pos, at + (int64_t)max * 16),
		                           max, &l)))
			goto out;
		int bad;
		char err[256];
		int i = 0;
		for (;;) {
			rc = cl_apply_range(&scratch, l.ev, i, l.n, l.upto,
			                    &bad, err, sizeof(err));
			if (rc == 0)
				break;
			if (rc == CLEAVE_MORE) {
				i = bad; /* the event's next piece */
				continue;
			}
			if (bad < 0)
				goto out;
			/* a poison event: the live copy skipped it (or is
			 * parked before it); do the same */
			int bad2;
			while (bad > i &&
			       (rc = cl_apply_range(&scratch, l.ev, i, bad,
			                            l.ev[bad - 1]->position, &bad2,
			                            err, sizeof(err))) == CLEAVE_MORE)
				i = bad2;
			if (bad > i && rc)
				goto out;
			if (def->on_poison != CLEAVE_POISON_SKIP) {
				rc =
				    cl_err(CLEAVE_EPARKED,
				           "event %lld fails in the handler: "
				           "%s",
				           (long long)l.ev[bad]->position, err);
				goto out;
			}
			if ((rc = cl_dead_letter(&scratch, l.ev[bad], err)))
				goto out;
			i = bad + 1;
		}
		at = l.upto;
		cl_evlist_clear(&l);
	}
	/* compare */
	cleave_rtx *stx;
	if ((rc = m->begin(scratch.store, false, &stx)))
		goto out;
	x.live = false;
	rc = m->dump(stx, vdump, &x);
	cl_rtx_abort(stx);
	if (rc)
		goto out;
	x.live = true;
	if ((rc = m->dump(ltx, vdump, &x)))
		goto out;
	for (size_t i = 0; i < x.t.cap; i++) {
		vent *v = &x.t.v[i];
		if (!v->key || v->seen)
			continue;
		size_t tl = strlen(v->key);
		if ((rc = vdiff(&x, v->key, v->key + tl + 1, v->klen - tl - 1,
		                "missing")))
			goto out;
	}
out:
	if (ltx)
		cl_rtx_abort(ltx);
	if (held)
		cl_rs_hold(live->store, false);
	cl_evlist_free(&l);
	cl_reader_put(e, rd);
	if (scratch.store)
		m->close(scratch.store);
	cl_keyrec_free(&scratch.rec);
	if (path[0])
		m->drop(path);
	for (size_t i = 0; i < x.t.cap; i++)
		free(x.t.v[i].key);
	free(x.t.v);
	cleave_buf_free(&x.k);
	cl_copy_unref(live);
	if (ndiff)
		*ndiff = x.ndiff;
	if (position)
		*position = pos;
	return rc;
}
