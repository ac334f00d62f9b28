/*
 * streams.c — the writer's cache of stream versions.
 *
 * Every emitted event needs its stream's current version.  Reading it from
 * the store is an index seek per event; the writer, being the only writer,
 * can keep the answer instead.  The cache holds committed versions plus the
 * changes of the batch in progress, with an undo log so that a command
 * rolled back to its savepoint (or a batch whose commit failed) restores
 * exactly what the store holds.  Owned and used by the writer thread only.
 *
 * With a store whose stream index is built lazily (SQLite), the cache is
 * also the only place that knows the versions of streams written since
 * the last index flush: it must not lose an entry, so failing to record
 * one is an error, and it is emptied only right after a flush.
 */
#include <stdlib.h>
#include <string.h>

#include "write/writer_int.h"

typedef struct slot {
	char *stream;
	uint64_t hash;
	int64_t version;
} slot;

typedef struct undo {
	size_t slot;
	int64_t version;
} undo;

struct cl_vcache {
	slot *s;
	size_t cap, n, max;
	undo *u;
	size_t nu, capu;
};

cl_vcache *cl_vcache_new(size_t max)
{
	cl_vcache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->max = max;
	return c;
}

void cl_vcache_clear(cl_vcache *c)
{
	for (size_t i = 0; i < c->cap; i++)
		free(c->s[i].stream);
	free(c->s);
	c->s = NULL;
	c->cap = c->n = 0;
	c->nu = 0;
}

void cl_vcache_free(cl_vcache *c)
{
	if (!c)
		return;
	cl_vcache_clear(c);
	free(c->u);
	free(c);
}

static bool grow(cl_vcache *c)
{
	size_t cap = c->cap ? c->cap * 2 : 4096;
	slot *s = calloc(cap, sizeof(*s));
	if (!s)
		return false;
	size_t *map = NULL;
	if (c->nu && !(map = malloc(c->cap * sizeof(*map)))) {
		free(s);
		return false;
	}
	for (size_t i = 0; i < c->cap; i++) {
		if (!c->s[i].stream)
			continue;
		size_t j = c->s[i].hash & (cap - 1);
		while (s[j].stream)
			j = (j + 1) & (cap - 1);
		s[j] = c->s[i];
		if (map)
			map[i] = j;
	}
	for (size_t k = 0; k < c->nu; k++)
		c->u[k].slot = map[c->u[k].slot];
	free(map);
	free(c->s);
	c->s = s;
	c->cap = cap;
	return true;
}

static slot *find(cl_vcache *c, const char *stream, uint64_t h)
{
	if (!c->cap)
		return NULL;
	size_t j = h & (c->cap - 1);
	for (; c->s[j].stream; j = (j + 1) & (c->cap - 1))
		if (c->s[j].hash == h && !strcmp(c->s[j].stream, stream))
			return &c->s[j];
	return &c->s[j]; /* the empty slot where it would go */
}

int cl_vcache_get(cl_vcache *c, cleave_engine *e, const char *stream,
		  int64_t *out)
{
	uint64_t h = cl_hash_str(stream);
	slot *s = find(c, stream, h);
	if (s && s->stream) {
		*out = s->version;
		return 0;
	}
	int rc = e->wm->stream_version(e->ws, stream, out);
	if (rc)
		return rc;
	/* A miss is the committed version: this batch has not written the
	 * stream, or the slot would exist. */
	if ((c->n + 1) * 2 > c->cap && !grow(c))
		return cl_err(CLEAVE_ENOMEM, "stream versions: out of memory");
	s = find(c, stream, h);
	s->stream = strdup(stream);
	if (!s->stream)
		return cl_err(CLEAVE_ENOMEM, "stream versions: out of memory");
	s->hash = h;
	s->version = *out;
	c->n++;
	return 0;
}

int cl_vcache_set(cl_vcache *c, const char *stream, int64_t version)
{
	slot *s = find(c, stream, cl_hash_str(stream));
	if (!s || !s->stream)
		return cl_err(CLEAVE_EINTERNAL,
			      "stream %s: version set before it was read",
			      stream);
	if (c->nu == c->capu) {
		size_t cap = c->capu ? c->capu * 2 : 1024;
		undo *u = realloc(c->u, cap * sizeof(*u));
		if (!u)
			return cl_err(CLEAVE_ENOMEM,
				      "stream versions: out of memory");
		c->u = u;
		c->capu = cap;
	}
	c->u[c->nu++] = (undo){(size_t)(s - c->s), s->version};
	s->version = version;
	return 0;
}

size_t cl_vcache_mark(cl_vcache *c)
{
	return c->nu;
}

void cl_vcache_undo(cl_vcache *c, size_t mark)
{
	while (c->nu > mark) {
		c->nu--;
		c->s[c->u[c->nu].slot].version = c->u[c->nu].version;
	}
}

bool cl_vcache_full(const cl_vcache *c)
{
	return c->n > c->max;
}

/* Records stream's version (a new slot, or the one it has). */
static bool put(cl_vcache *c, const char *stream, int64_t version)
{
	uint64_t h = cl_hash_str(stream);
	slot *s = find(c, stream, h);
	if (s && s->stream) {
		s->version = version;
		return true;
	}
	if ((c->n + 1) * 2 > c->cap && !grow(c))
		return false;
	s = find(c, stream, h);
	if (!(s->stream = strdup(stream)))
		return false;
	s->hash = h;
	s->version = version;
	c->n++;
	return true;
}

void cl_vcache_commit(cl_vcache *c, bool may_clear, const cleave_event *ev,
		      int n)
{
	c->nu = 0;
	if (!may_clear || c->n <= c->max)
		return;
	/* the batch's streams into a fresh table first: out of memory, the
	 * full cache stays as it is (nothing may be lost) */
	cl_vcache fresh = {.max = c->max};
	for (int i = 0; i < n; i++) {
		if (!put(&fresh, ev[i].stream, ev[i].version)) {
			cl_vcache_clear(&fresh);
			return;
		}
	}
	cl_vcache_clear(c);
	c->s = fresh.s;
	c->cap = fresh.cap;
	c->n = fresh.n;
}
