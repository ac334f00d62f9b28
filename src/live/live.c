/*
 * live.c — live queries: which subscription read what, and waking them.
 *
 * A subscription (cleave_live) registers one token per thing its last run
 * read (read/keyrec.h), plus the P token of each projection its query
 * reads, in one hash table: token → a list of nodes, one per subscription
 * that holds it.  A live copy's commit looks up each token it wrote and
 * calls the holders' fn — an event costs a lookup per key it wrote,
 * whatever the number of subscriptions on other keys.
 *
 * The race a wake must not lose: a run's snapshot is older than a commit
 * that writes a key it read, and that commit's publish runs before the run
 * registers the key.  So a run holds `lk` shared from before its
 * snapshot until its tokens are registered, and a publish holds it
 * exclusively: a commit published while the run is under way waits for the
 * registration and then sees it; one published before the run took the
 * lock was committed before the snapshot, which sees it.  The lock prefers
 * publishes, so runs cannot starve them; runs share it, and `tmu` orders
 * their changes to the table.
 *
 * `fired` makes a subscription's wakes one per run: the first publish that
 * finds it calls fn, later ones until the next run do nothing.
 */
#include "live/live.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/util.h"

typedef struct lnode {
	struct lnode *prev, *next;
	cleave_live *owner; /* NULL in a bucket's sentinel */
} lnode;

typedef struct bucket {
	uint64_t tok; /* 0: empty slot */
	lnode *head;  /* circular list's sentinel */
} bucket;

/* The registry's lock: shared by runs, exclusive for publishes, which
 * go first (a waiting publish holds off new runs, so a stream of runs
 * cannot starve the runners).  Written out with a mutex and a condition
 * rather than glibc's writer-preferring rwlock: a deadlock with every
 * thread waiting on that lock and none holding it was seen once in
 * development and could not be explained or reproduced; this one has
 * nothing to get wrong. */
typedef struct reglock {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int readers, writers_waiting;
	bool writer;
} reglock;

static void rl_init(reglock *l)
{
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->readers = l->writers_waiting = 0;
	l->writer = false;
}

static void rl_destroy(reglock *l)
{
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->cond);
}

static void rl_rdlock(reglock *l)
{
	pthread_mutex_lock(&l->mu);
	while (l->writer || l->writers_waiting)
		pthread_cond_wait(&l->cond, &l->mu);
	l->readers++;
	pthread_mutex_unlock(&l->mu);
}

static void rl_rdunlock(reglock *l)
{
	pthread_mutex_lock(&l->mu);
	if (--l->readers == 0)
		pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
}

static void rl_wrlock(reglock *l)
{
	pthread_mutex_lock(&l->mu);
	l->writers_waiting++;
	while (l->writer || l->readers)
		pthread_cond_wait(&l->cond, &l->mu);
	l->writers_waiting--;
	l->writer = true;
	pthread_mutex_unlock(&l->mu);
}

static void rl_wrunlock(reglock *l)
{
	pthread_mutex_lock(&l->mu);
	l->writer = false;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->mu);
}

struct cl_live_reg {
	reglock lk;
	pthread_mutex_t tmu;
	bucket *tab;
	size_t cap, used; /* used counts buckets, empty lists included */
	atomic_int_fast64_t count;
	atomic_uint_fast64_t wakes;
};

struct cleave_live {
	cleave_engine *e;
	int qi;
	cleave_param *params;
	int nparams;
	char *strs;
	cleave_live_fn fn;
	void *arg;
	atomic_bool fired;
	pthread_mutex_t rmu; /* one run at a time */
	cl_keyrec rec;       /* scratch: what a run read */
	uint64_t *tok;       /* registered, sorted */
	lnode *nodes;
	size_t ntok;
};

static uint64_t tok_fix(uint64_t t)
{
	return t ? t : 1;
}

/* ---- the table (lk held for writing, or for reading and tmu) ---------- */

static bucket *find(cl_live_reg *g, uint64_t tok)
{
	if (!g->cap)
		return NULL;
	size_t m = g->cap - 1;
	for (size_t i = tok & m;; i = (i + 1) & m) {
		if (g->tab[i].tok == tok)
			return &g->tab[i];
		if (!g->tab[i].tok)
			return NULL;
	}
}

static int grow(cl_live_reg *g)
{
	size_t live = 0;
	for (size_t i = 0; i < g->cap; i++)
		if (g->tab[i].tok && g->tab[i].head->next != g->tab[i].head)
			live++;
	size_t cap = 64;
	while (cap < live * 4)
		cap *= 2;
	bucket *t = calloc(cap, sizeof(*t));
	if (!t)
		return CLEAVE_ENOMEM;
	for (size_t i = 0; i < g->cap; i++) {
		bucket *b = &g->tab[i];
		if (!b->tok)
			continue;
		if (b->head->next == b->head) {
			free(b->head); /* nobody holds it any more */
			continue;
		}
		size_t j = b->tok & (cap - 1);
		while (t[j].tok)
			j = (j + 1) & (cap - 1);
		t[j] = *b;
	}
	free(g->tab);
	g->tab = t;
	g->cap = cap;
	g->used = live;
	return 0;
}

static lnode *bucket_for(cl_live_reg *g, uint64_t tok)
{
	bucket *b = find(g, tok);
	if (b)
		return b->head;
	if ((g->used + 1) * 2 > g->cap && grow(g))
		return NULL;
	lnode *h = malloc(sizeof(*h));
	if (!h)
		return NULL;
	h->prev = h->next = h;
	h->owner = NULL;
	size_t m = g->cap - 1, i = tok & m;
	while (g->tab[i].tok)
		i = (i + 1) & m;
	g->tab[i].tok = tok;
	g->tab[i].head = h;
	g->used++;
	return h;
}

static void unlink_all(cleave_live *l)
{
	for (size_t i = 0; i < l->ntok; i++) {
		lnode *n = &l->nodes[i];
		if (n->next) {
			n->prev->next = n->next;
			n->next->prev = n->prev;
		}
	}
	free(l->nodes);
	free(l->tok);
	l->nodes = NULL;
	l->tok = NULL;
	l->ntok = 0;
}

/* Registers the tokens of rec (sorted, unique) unless they are what l
 * holds already.  On failure l keeps what it had. */
static int reg_tokens(cl_live_reg *g, cleave_live *l, const cl_keyrec *rec)
{
	if (rec->n == l->ntok &&
	    !memcmp(rec->tok, l->tok, rec->n * sizeof(*rec->tok)))
		return 0;
	uint64_t *tok = malloc(rec->n * sizeof(*tok));
	lnode *nodes = calloc(rec->n, sizeof(*nodes));
	if (!tok || !nodes) {
		free(tok);
		free(nodes);
		return CLEAVE_ENOMEM;
	}
	memcpy(tok, rec->tok, rec->n * sizeof(*tok));
	pthread_mutex_lock(&g->tmu);
	unlink_all(l);
	for (size_t i = 0; i < rec->n; i++) {
		lnode *h = bucket_for(g, tok[i]);
		if (!h)
			continue; /* out of memory: woken by P tokens at most */
		lnode *n = &nodes[i];
		n->owner = l;
		n->next = h->next;
		n->prev = h;
		h->next->prev = n;
		h->next = n;
	}
	l->tok = tok;
	l->nodes = nodes;
	l->ntok = rec->n;
	pthread_mutex_unlock(&g->tmu);
	return 0;
}

/* lk held for writing. */
static void wake_tok(cl_live_reg *g, uint64_t tok)
{
	bucket *b = find(g, tok_fix(tok));
	if (!b)
		return;
	for (lnode *n = b->head->next; n != b->head; n = n->next) {
		cleave_live *l = n->owner;
		if (!atomic_exchange(&l->fired, true)) {
			atomic_fetch_add_explicit(&g->wakes, 1,
			                          memory_order_relaxed);
			l->fn(l->arg);
		}
	}
}

/* ---- the engine's side ------------------------------------------------- */

int cl_live_init(cleave_engine *e)
{
	cl_live_reg *g = calloc(1, sizeof(*g));
	if (!g)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	rl_init(&g->lk);
	pthread_mutex_init(&g->tmu, NULL);
	e->live = g;
	return 0;
}

void cl_live_free(cleave_engine *e)
{
	cl_live_reg *g = e->live;
	if (!g)
		return;
	for (size_t i = 0; i < g->cap; i++)
		if (g->tab[i].tok)
			free(g->tab[i].head);
	free(g->tab);
	rl_destroy(&g->lk);
	pthread_mutex_destroy(&g->tmu);
	free(g);
	e->live = NULL;
}

bool cl_live_any(cleave_engine *e)
{
	return e->live &&
	       atomic_load_explicit(&e->live->count, memory_order_relaxed) > 0;
}

void cl_live_publish(cleave_engine *e, int proj, cl_keyrec *rec)
{
	cl_live_reg *g = e->live;
	if (!g || (!rec->all && !rec->n))
		return;
	cl_keyrec_finish(rec);
	rl_wrlock(&g->lk);
	if (rec->all)
		wake_tok(g, cl_tok(proj, CL_TOK_PROJ, NULL, NULL));
	else
		for (size_t i = 0; i < rec->n; i++)
			wake_tok(g, rec->tok[i]);
	rl_wrunlock(&g->lk);
}

void cl_live_publish_proj(cleave_engine *e, int proj)
{
	cl_live_reg *g = e->live;
	if (!cl_live_any(e))
		return;
	rl_wrlock(&g->lk);
	wake_tok(g, cl_tok(proj, CL_TOK_PROJ, NULL, NULL));
	rl_wrunlock(&g->lk);
}

/* ---- subscriptions ------------------------------------------------------- */

int cleave_live_open(cleave_engine *e, const char *name,
                     const cleave_param *params, int nparams,
                     cleave_live_fn fn, void *arg, cleave_live **out)
{
	*out = NULL;
	int qi = name ? cl_nametab_get(&e->query_idx, name) : -1;
	if (qi < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown query '%s'",
		              name ? name : "");
	if (nparams < 0 || (nparams && !params) || !fn)
		return cl_err(CLEAVE_EINVAL, "cleave_live_open: bad arguments");
	size_t need = 0;
	for (int i = 0; i < nparams; i++)
		need += strlen(params[i].name) + strlen(params[i].value) + 2;
	cleave_live *l = calloc(1, sizeof(*l));
	if (!l)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	l->params = calloc((size_t)nparams + 1, sizeof(*l->params));
	l->strs = malloc(need + 1);
	if (!l->params || !l->strs) {
		free(l->params);
		free(l->strs);
		free(l);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	char *p = l->strs;
	for (int i = 0; i < nparams; i++) {
		size_t a = strlen(params[i].name) + 1;
		size_t b = strlen(params[i].value) + 1;
		memcpy(p, params[i].name, a);
		l->params[i].name = p;
		p += a;
		memcpy(p, params[i].value, b);
		l->params[i].value = p;
		p += b;
	}
	l->e = e;
	l->qi = qi;
	l->nparams = nparams;
	l->fn = fn;
	l->arg = arg;
	pthread_mutex_init(&l->rmu, NULL);
	atomic_init(&l->fired, false);
	atomic_fetch_add(&e->live->count, 1);
	*out = l;
	return 0;
}

int cleave_live_run(cleave_live *l, cleave_answer *out)
{
	cleave_engine *e = l->e;
	cl_live_reg *g = e->live;
	pthread_mutex_lock(&l->rmu);
	atomic_store(&l->fired, false);
	cl_keyrec_reset(&l->rec);
	rl_rdlock(&g->lk);
	int rc = cl_query_run_rec(e, l->qi, l->params, l->nparams, out,
	                          &l->rec);
	if (rc == 0) {
		const int *idx = &e->query_reads[l->qi * e->query_maxreads];
		int n = e->query_nreads[l->qi];
		bool all = l->rec.all;
		/* the P (and S) tokens must fit: a read set that filled the
		 * recorder wakes on any write of what it reads instead */
		if (all || l->rec.n + 2 * (size_t)n > CL_KEYREC_MAX) {
			all = true;
			l->rec.n = 0;
		}
		l->rec.all = false;
		for (int i = 0; i < n; i++) {
			cl_keyrec_add(&l->rec,
			              cl_tok(idx[i], CL_TOK_PROJ, NULL, NULL));
			/* a run whose reads were not all noted wakes on any
			 * write to what it reads */
			if (all)
				cl_keyrec_add(&l->rec, cl_tok(idx[i],
				                              CL_TOK_STORE,
				                              NULL, NULL));
		}
		for (size_t i = 0; i < l->rec.n; i++)
			l->rec.tok[i] = tok_fix(l->rec.tok[i]);
		cl_keyrec_finish(&l->rec);
		if (!l->rec.all && reg_tokens(g, l, &l->rec)) {
			/* keeps the old registration: no worse than before */
		}
	}
	rl_rdunlock(&g->lk);
	pthread_mutex_unlock(&l->rmu);
	return rc;
}

void cleave_live_close(cleave_live *l)
{
	if (!l)
		return;
	cl_live_reg *g = l->e->live;
	rl_wrlock(&g->lk);
	unlink_all(l);
	rl_wrunlock(&g->lk);
	atomic_fetch_sub(&g->count, 1);
	cl_keyrec_free(&l->rec);
	pthread_mutex_destroy(&l->rmu);
	free(l->params);
	free(l->strs);
	free(l);
}

int64_t cleave_live_count(cleave_engine *e)
{
	return e && e->live ? atomic_load(&e->live->count) : 0;
}

uint64_t cleave_live_wakes(cleave_engine *e)
{
	return e && e->live ? atomic_load(&e->live->wakes) : 0;
}
