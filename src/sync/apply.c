/*
 * apply.c — applying events to a copy: reading them (from the ring or
 * the write store), one read-store transaction per batch with the
 * checkpoint, poison events (retry, then park or skip), store failures
 * (smaller batches, backoff, reopen).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "live/live.h"
#include "sync/sync_int.h"

static bool subscribed(const cleave_projection_def *d, const char *type)
{
	if (!d->event_types)
		return true;
	for (const char *const *t = d->event_types; *t; t++)
		if (!strcmp(*t, type))
			return true;
	return false;
}

/* Running out of memory on one event, over and over, is not a passing
 * condition: after this many tries in a row (about 5 s with the
 * backoff) the copy parks at the event, so operators see it (GET
 * /projections, the 504s of min_position name it) and resume it. */
#define ENOMEM_TRIES 30

/* A handler that asks to be called again on the same event (CLEAVE_MORE)
 * more often than this is treated as failing on it. */
#define MORE_MAX (1 << 20)

static bool store_error(int rc)
{
	return rc == CLEAVE_ENOSPC || rc == CLEAVE_EIO || rc == CLEAVE_ENOMEM ||
	       rc == CLEAVE_EBUSY;
}

void cl_evlist_clear(cl_evlist *l)
{
	for (int i = 0; i < l->nrefs; i++)
		cl_evbatch_unref(l->refs[i]);
	for (int i = 0; i < l->nown; i++)
		if (!l->own_arena[i])
			cJSON_Delete((cJSON *)l->own[i].json);
	l->n = l->nrefs = l->nown = 0;
	cl_arena_free(&l->arena);
}

void cl_evlist_free(cl_evlist *l)
{
	cl_evlist_clear(l);
	free(l->ev);
	free(l->own);
	free(l->own_arena);
}

int cl_evlist_reserve(cl_evlist *l, int n)
{
	if (n > l->cap) {
		const cleave_event **p = realloc(l->ev, (size_t)n * sizeof(*p));
		if (!p)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		l->ev = p;
		l->cap = n;
	}
	if (n > l->capown) {
		cleave_event *p = realloc(l->own, (size_t)n * sizeof(*p));
		if (!p)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		l->own = p;
		bool *b = realloc(l->own_arena, (size_t)n * sizeof(*b));
		if (!b)
			return cl_err(CLEAVE_ENOMEM, "out of memory");
		l->own_arena = b;
		l->capown = n;
	}
	return 0;
}

typedef struct read_arg {
	cleave_engine *e;
	cl_evlist *l;
} read_arg;

static char *adup(cl_arena *a, const char *s)
{
	return s ? cl_arena_strdup(a, s, strlen(s)) : NULL;
}

static int collect_stored(void *arg, const cl_stored_event *s)
{
	read_arg *x = arg;
	cl_evlist *l = x->l;
	cl_arena *a = &l->arena;
	cleave_event *ev = &l->own[l->nown];
	int rc = cl_event_from_stored(x->e, s, ev, a, &l->own_arena[l->nown]);
	if (rc)
		return rc;
	l->nown++;
	ev->stream = adup(a, s->stream);
	ev->type = adup(a, s->type);
	ev->data = cl_arena_strdup(a, s->data, s->data_len);
	ev->trace_id = adup(a, s->trace_id);
	ev->command_id = adup(a, s->command_id);
	ev->idempotency_key = adup(a, s->idem_key);
	ev->causation_id = adup(a, s->causation_id);
	if (!ev->stream || !ev->type || !ev->data)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	l->ev[l->n++] = ev;
	return 0;
}

typedef struct filter_arg {
	read_arg r;
	const char *const *types;
} filter_arg;

static int collect_filtered(void *arg, const cl_stored_event *s)
{
	filter_arg *f = arg;
	for (const char *const *t = f->types; t && *t; t++)
		if (!strcmp(*t, s->type))
			return collect_stored(&f->r, s);
	return f->types ? 0 : collect_stored(&f->r, s);
}

/* Reads the subscribed events of (pos, upto] from the store, at most max;
 * sets l->upto to how far the read is complete. */
int cl_collect_store(cleave_engine *e, cl_wreader **rd,
                     const char *const *types, int64_t pos, int64_t upto,
                     int max, cl_evlist *l)
{
	if (!*rd && !(*rd = cl_reader_get(e)))
		return cl_err(CLEAVE_EIO, "cannot open a log reader: %s",
		              cleave_errmsg());
	int rc;
	if (e->wm->read_types) {
		read_arg x = {e, l};
		rc = e->wm->read_types(*rd, pos, upto, types, (size_t)max,
		                       collect_stored, &x);
	} else {
		filter_arg f = {{e, l}, types};
		upto = CL_MIN(upto, pos + max);
		rc = e->wm->read(*rd, pos, NULL, (size_t)(upto - pos),
		                 collect_filtered, &f);
	}
	if (rc)
		return rc;
	l->upto = l->n == max ? l->ev[l->n - 1]->position : upto;
	return 0;
}

/* Gathers the subscribed events after `pos` (up to head) into l: from the
 * ring when it holds pos+1, else from the store.  A store read may cover
 * a range many times the batch when the projection subscribes to few
 * types; l->upto says how far. */
int cl_collect(cl_copy *c, cl_wreader **rd, int64_t pos, int64_t head, int max,
               cl_evlist *l)
{
	cleave_engine *e = c->proj->e;
	int rc = cl_evlist_reserve(l, max);
	if (rc)
		return rc;
	l->upto = pos;
	int64_t want = CL_MIN((int64_t)max, head - pos);
	cl_evbatch *b = cl_log_ring_find(e, pos + 1);
	if (b) {
		int64_t end = pos + want;
		while (b) {
			l->refs[l->nrefs++] = b;
			int64_t p;
			for (p = pos + 1; p <= b->last && p <= end; p++) {
				const cleave_event *ev = &b->ev[p - b->first];
				if (subscribed(c->def, ev->type))
					l->ev[l->n++] = ev;
			}
			pos = l->upto = p - 1;
			if (pos >= end || l->nrefs == CL_ARRAY_LEN(l->refs))
				break;
			b = cl_log_ring_find(e, pos + 1);
		}
		return 0;
	}
	int64_t span = (int64_t)max * 16;
	return cl_collect_store(e, rd, c->def->event_types, pos,
	                        CL_MIN(head, pos + span), max, l);
}

/* A deferred flush (cleave_rtx_defer) failed with a handler error over
 * ev[from, to): applies them again one at a time, flushing after each, in
 * a transaction abandoned at the end.  The index of the first event whose
 * handler or flush fails, or -1 when none does alone. */
static int flush_culprit(cl_copy *c, const cleave_event **ev, int from, int to)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	int bad = -1;
	if (m->begin(c->store, true, &tx))
		return -1;
	for (int i = from; i < to && bad < 0; i++) {
		if (!subscribed(c->def, ev[i]->type))
			continue;
		int rc, k = 0;
		do
			rc = c->def->apply(tx, ev[i]);
		while (rc == CLEAVE_MORE && ++k < MORE_MAX);
		if (rc == 0)
			rc = cl_rtx_flush(tx);
		if (rc && !store_error(rc))
			bad = i;
		else if (rc)
			break;
	}
	cl_rtx_abort(tx);
	return bad;
}

/* Applies ev[from, to) in one transaction with the checkpoint.  On a
 * handler failure returns its code with *bad = index; on a store failure
 * returns the code with *bad = -1.  A handler that returns CLEAVE_MORE on
 * ev[i] has its transaction committed so far, with the checkpoint just
 * before ev[i] (the event is not done), and CLEAVE_MORE is returned with
 * *bad = i: the caller applies ev[i] again, in a new transaction. */
int cl_apply_range(cl_copy *c, const cleave_event **ev, int from, int to,
                   int64_t ckpt, int *bad, char *err, size_t errcap)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	int more_at = -1;
	*bad = -1;
	int rc = m->begin(c->store, true, &tx);
	if (rc)
		goto fail;
	/* live queries: note what the batch writes (a building copy serves
	 * nobody until its switch, which wakes its readers wholesale) */
	bool rec = !c->building && cl_live_any(c->proj->e);
	c->live_wake = CL_LIVE_NONE;
	if (rec) {
		cl_keyrec_reset(&c->rec);
		tx->rec = &c->rec;
		tx->rec_proj = c->proj->index;
	}
	for (int i = from; i < to; i++) {
		if (!subscribed(c->def, ev[i]->type))
			continue;
		cl_err_clear();
		rc = c->def->apply(tx, ev[i]);
		if (rc == CLEAVE_MORE) {
			more_at = i;
			ckpt = ev[i]->position - 1;
			break;
		}
		if (rc) {
			if (!store_error(rc))
				*bad = i;
			cl_rtx_abort(tx);
			goto fail;
		}
	}
	/* the handler's deferred writes and cached documents, before the
	 * checkpoint: their failure is the handler's */
	if ((rc = cl_rtx_flush(tx))) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
		cl_rtx_abort(tx);
		if (!store_error(rc))
			*bad = flush_culprit(c, ev, from, to);
		cl_err(rc, "%s", msg);
		goto fail;
	}
	if ((rc = m->checkpoint_set(tx, ckpt))) {
		cl_rtx_abort(tx);
		goto fail;
	}
	if ((rc = cl_rtx_commit(tx)))
		goto fail;
	/* a live query opened since the check above may hold a snapshot
	 * from before this commit and never see its keys: wake its
	 * projection's readers instead */
	if (rec)
		c->live_wake = CL_LIVE_KEYS;
	else if (!c->building && cl_live_any(c->proj->e))
		c->live_wake = CL_LIVE_PROJ;
	if (more_at >= 0) {
		*bad = more_at;
		return CLEAVE_MORE;
	}
	return 0;
fail:
	snprintf(err, errcap, "%s",
	         *cleave_errmsg() ? cleave_errmsg() : cleave_strerror(rc));
	return rc;
}

int cl_dead_letter(cl_copy *c, const cleave_event *ev, const char *err)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	int rc = m->begin(c->store, true, &tx);
	if (rc)
		return rc;
	if ((rc = m->dead_letter_add(tx, ev, err)) ||
	    (rc = m->checkpoint_set(tx, ev->position))) {
		cl_rtx_abort(tx);
		return rc;
	}
	return cl_rtx_commit(tx);
}

static void note_applied(cl_copy *c, int64_t pos, int n)
{
	cleave_engine *e = c->proj->e;
	int64_t now = cl_now_us();
	pthread_mutex_lock(&c->proj->mu);
	atomic_store(&c->applied, pos);
	c->hist_pos[c->hist_n % 256] = pos;
	c->hist_us[c->hist_n % 256] = now;
	c->hist_n++;
	c->applied_total += (uint64_t)n;
	int64_t sec = now / 1000000;
	int slot = (int)(sec % 10);
	if (c->rate_sec[slot] != sec) {
		c->rate_sec[slot] = sec;
		c->rate_events[slot] = 0;
	}
	c->rate_events[slot] += (uint64_t)n;
	pthread_mutex_unlock(&c->proj->mu);
	cl_applied_notify(e);
}

bool cl_wait_backoff(cl_copy *c, int ms)
{
	int64_t until = cl_mono_us() + (int64_t)ms * 1000;
	while (!atomic_load(&c->stop)) {
		int64_t left = until - cl_mono_us();
		if (left <= 0)
			return true;
		cl_sleep_ms((int)CL_MIN(left / 1000 + 1, 50));
	}
	return false;
}

static void park(cl_copy *c, const cleave_event *ev, const char *err)
{
	cleave_engine *e = c->proj->e;
	pthread_mutex_lock(&c->proj->mu);
	c->parked = true;
	c->parked_position = ev->position;
	snprintf(c->last_error, sizeof(c->last_error), "%s", err);
	pthread_mutex_unlock(&c->proj->mu);
	cl_log(e, CLEAVE_LOG_ERROR, ev->trace_id, ev->command_id, ev->position,
	       "projection %s v%d parked at event %lld (%s): %s",
	       c->proj->def->name, c->version, (long long)ev->position,
	       ev->type, err);
	cl_applied_notify(e);
}

/* Takes the copy's commit lock for one transaction and the note of what
 * it applied (the caller unlocks); false, unlocked, when a blue-green
 * switch has retired the copy: it must commit nothing more, or a query
 * that took it just before the switch could see it move past the new
 * live copy, and then the next query go back. */
static bool commit_begin(cl_copy *c)
{
	pthread_mutex_lock(&c->cmu);
	if (!c->frozen)
		return true;
	pthread_mutex_unlock(&c->cmu);
	atomic_store(&c->stop, true);
	return false;
}

/* After a commit, cmu let go: wakes the live queries it concerns. */
static void live_after(cl_copy *c)
{
	int w = c->live_wake;
	c->live_wake = CL_LIVE_NONE;
	if (w == CL_LIVE_KEYS)
		cl_live_publish(c->proj->e, c->proj->index, &c->rec);
	else if (w == CL_LIVE_PROJ)
		cl_live_publish_proj(c->proj->e, c->proj->index);
}

/* Applies l's events; returns false when the copy stopped or parked. */
bool cl_apply_list(cl_copy *c, cl_evlist *l)
{
	cleave_engine *e = c->proj->e;
	char err[256];
	int i = 0, bad, rc, store_fail = 0, more_i = -1, more_n = 0;
	int step = CL_MAX(l->n, 1);
	bool covered = false; /* the checkpoint reached l->upto */
	while ((i < l->n || !covered) && !atomic_load(&c->stop)) {
		int to = CL_MIN(l->n, i + step);
		/* the last chunk carries the checkpoint to the end of the
		 * range read, past events of other types */
		int64_t ckpt = to == l->n ? l->upto : l->ev[to - 1]->position;
		if (!commit_begin(c))
			return false;
		rc = cl_apply_range(c, l->ev, i, to, ckpt, &bad, err,
		                    sizeof(err));
		if (rc == 0)
			note_applied(c, ckpt, to - i);
		else if (rc == CLEAVE_MORE)
			note_applied(c, l->ev[bad]->position - 1, bad - i);
		pthread_mutex_unlock(&c->cmu);
		live_after(c);
		if (rc == CLEAVE_MORE) {
			/* the event's work goes on in its next transaction */
			if (bad == more_i) {
				if (++more_n >= MORE_MAX) {
					park(c, l->ev[bad],
					     "the handler returned CLEAVE_MORE "
					     "on this event too many times");
					return false;
				}
			} else {
				more_i = bad;
				more_n = 1;
			}
			i = bad;
			step = 1;
			store_fail = 0;
			continue;
		}
		if (rc == 0) {
			if (store_fail ||
			    c->failing) { /* this thread sets it */
				/* last_error stays: it says what happened */
				pthread_mutex_lock(&c->proj->mu);
				c->failing = false;
				pthread_mutex_unlock(&c->proj->mu);
			}
			covered = to == l->n;
			i = to;
			store_fail = 0;
			continue;
		}
		if (bad < 0) {
			/* the store refused: smaller batches, back off */
			if (store_fail++ % 50 == 0)
				cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL,
				       i < l->n ? l->ev[i]->position : l->upto,
				       "projection %s: store failure, "
				       "retrying: %s",
				       c->proj->def->name, err);
			pthread_mutex_lock(&c->proj->mu);
			snprintf(c->last_error, sizeof(c->last_error), "%s",
			         err);
			c->failing = true;
			pthread_mutex_unlock(&c->proj->mu);
			if (rc == CLEAVE_ENOMEM && step == 1 && i < l->n &&
			    store_fail >= ENOMEM_TRIES) {
				char why[300];
				snprintf(why, sizeof(why),
				         "out of memory %d times in a row: %s",
				         store_fail, err);
				park(c, l->ev[i], why);
				return false;
			}
			step = CL_MAX(1, step / 2);
			if (!cl_wait_backoff(c, CL_MIN(1000, 10 * store_fail)))
				return false;
			/* an I/O error may have broken the store for good */
			if (rc == CLEAVE_EIO && store_fail >= 3 &&
			    cl_copy_reopen(c) == 0 && !atomic_load(&c->stop))
				return true; /* the caller re-reads from the
				                checkpoint */
			continue;
		}
		if (bad > i) {
			/* commit what came before the failing event */
			step = bad - i;
			continue;
		}
		/* l->ev[i] fails alone: retry with backoff, then policy */
		const cleave_event *ev = l->ev[i];
		int delay = e->cfg.poison_backoff_ms;
		bool ok = false;
		for (int t = 1; t < e->cfg.poison_retries; t++) {
			if (!cl_wait_backoff(c, delay))
				return false;
			delay *= 2;
			if (!commit_begin(c))
				return false;
			rc = cl_apply_range(c, l->ev, i, i + 1, ev->position,
			                    &bad, err, sizeof(err));
			if (rc == 0)
				note_applied(c, ev->position, 1);
			else if (rc == CLEAVE_MORE)
				note_applied(c, ev->position - 1, 0);
			pthread_mutex_unlock(&c->cmu);
			live_after(c);
			if (rc == 0 || rc == CLEAVE_MORE) {
				ok = true;
				break;
			}
		}
		if (ok) {
			if (rc == 0)
				i++;
			step = rc == 0 ? l->n : 1;
			continue;
		}
		if (c->def->on_poison == CLEAVE_POISON_SKIP) {
			if (!commit_begin(c))
				return false;
			rc = cl_dead_letter(c, ev, err);
			if (rc == 0)
				note_applied(c, ev->position, 0);
			pthread_mutex_unlock(&c->cmu);
			live_after(c);
			if (rc) {
				if (!cl_wait_backoff(c, 100))
					return false;
				continue;
			}
			pthread_mutex_lock(&c->proj->mu);
			c->dead_letters++;
			snprintf(c->last_error, sizeof(c->last_error), "%s",
			         err);
			pthread_mutex_unlock(&c->proj->mu);
			cl_log(e, CLEAVE_LOG_WARN, ev->trace_id, ev->command_id,
			       ev->position,
			       "projection %s skipped event %lld (%s) into "
			       "dead letters: %s",
			       c->proj->def->name, (long long)ev->position,
			       ev->type, err);
			i++;
			step = l->n;
			continue;
		}
		park(c, ev, err);
		return false;
	}
	return !atomic_load(&c->stop);
}
