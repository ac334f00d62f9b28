/*
 * runner.c — projection runners, read-model copies and blue-green
 * rebuilds.
 *
 * A projection has a live copy (serves queries) and, during a rebuild, a
 * building copy.  Each copy with a handler has one runner thread that
 * tails the log from the copy's checkpoint: from the in-memory ring when
 * the events are there, else from the write store.  It applies a batch of
 * events and writes the new checkpoint in the same read-store transaction,
 * so a crash anywhere leaves the copy at a batch boundary: every event is
 * applied exactly once, in order.
 *
 * Which copies exist is recorded in read/catalog.json, replaced atomically
 * (write, fsync, rename, fsync dir).  A rebuild creates the next generation
 * beside the live one; once the new copy has applied the log head (so its
 * position is at least the live one's) the switch happens under the
 * projection's lock, in one step, then the catalog records it and the old
 * copy is dropped when its last reader lets go.  A crash before the catalog
 * write resumes the rebuild; after it, the new copy is live.
 *
 * Poison events: a handler failure rolls the batch back; the events before
 * the failing one are committed alone, the failing one is retried with
 * doubling backoff, then the policy applies: park (stop this copy at the
 * event, others go on) or skip (record it as a dead letter and move on, in
 * the same transaction as the checkpoint).  Store failures (full disk,
 * I/O) are not poison: the batch is retried, smaller, until the store
 * accepts it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/json.h"

/* ---- copies ---------------------------------------------------------------- */

/* The store of a projection's copies: a key/value projection's go to the
 * shared store when the engine was given one. */
static const cl_rstore_methods *copy_methods(cleave_engine *e,
					     const char *kind)
{
	const cl_rstore_methods *m = cl_rstore_find(kind);
	if (e->shared && cl_rs_has(m, CL_RS_KV))
		return e->shared;
	return m;
}

/* Where copies of that store live: DATA/read, or the shared store's
 * root. */
static const char *copy_root(cleave_engine *e, const cl_rstore_methods *m)
{
	return cl_rs_has(m, CL_RS_SHARED) ? e->shared_root : e->read_dir;
}

static void copy_path(cleave_engine *e, const cl_rstore_methods *m,
		      const char *name, int gen, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s.g%d", copy_root(e, m), name, gen);
}

static const cleave_projection_def *def_for(cl_proj *p, int version)
{
	for (int i = 0; i < p->ndefs; i++)
		if (p->defs[i]->version == version)
			return p->defs[i];
	return NULL;
}

static cl_rstore_opts store_opts(cleave_engine *e)
{
	cl_rstore_opts o = {0};
	o.read_only = e->cfg.read_only;
	o.nosync = !e->cfg.read_sync ||
		   e->cfg.durability == CLEAVE_DURABILITY_OS;
	o.map_size = e->cfg.lmdb_map_size;
	o.owner = e->owner;
	return o;
}

static int copy_setup(cl_copy *c)
{
	if (!c->def || !c->def->setup || c->proj->e->cfg.read_only)
		return 0;
	cleave_rtx *tx;
	int rc = c->store->m->begin(c->store, true, &tx);
	if (rc)
		return rc;
	rc = c->def->setup(tx);
	if (rc) {
		cl_rtx_abort(tx);
		return rc;
	}
	return cl_rtx_commit(tx);
}

static int copy_open(cl_proj *p, int gen, int version, cl_copy **out)
{
	return cl_copy_open(p, gen, version, false, out);
}

/* Opens generation gen of p at version.  A foreign copy (a query node's
 * view of one another engine writes in a shared store) is opened read-only and
 * never set up, written or dropped here. */
int cl_copy_open(cl_proj *p, int gen, int version, bool foreign,
		 cl_copy **out)
{
	cleave_engine *e = p->e;
	const cleave_projection_def *def = def_for(p, version);
	const char *kind = def ? def->store : p->def->store;
	const cl_rstore_methods *m = copy_methods(e, kind);
	char path[4096];
	copy_path(e, m, p->def->name, gen, path, sizeof(path));
	cl_copy *c = calloc(1, sizeof(*c));
	if (!c)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	c->proj = p;
	c->def = def;
	c->version = version;
	c->gen = gen;
	atomic_init(&c->refs, 1);
	pthread_mutex_init(&c->cmu, NULL);
	if (!(c->path = strdup(path))) {
		pthread_mutex_destroy(&c->cmu);
		free(c);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	cl_rstore_opts o = store_opts(e);
	o.read_only |= foreign;
	c->foreign = foreign;
	int rc = m->open(path, &o, &c->store);
	if (rc)
		goto fail;
	if (!foreign && (rc = copy_setup(c)))
		goto fail;
	cleave_rtx *tx;
	int64_t pos = 0;
	if ((rc = m->begin(c->store, false, &tx)))
		goto fail;
	rc = m->checkpoint_get(tx, &pos);
	if (!rc)
		rc = m->dead_letter_count(tx, &c->dead_letters);
	cl_rtx_abort(tx);
	if (rc)
		goto fail;
	atomic_store(&c->applied, pos);
	*out = c;
	return 0;
fail : {
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
	if (c->store)
		m->close(c->store);
	pthread_mutex_destroy(&c->cmu);
	free(c->path);
	free(c);
	return cl_err(rc, "projection %s copy g%d: %s", p->def->name, gen,
		      msg);
}
}

static void copy_destroy(cl_copy *c)
{
	const cleave_projection_def *d = c->def ? c->def : c->proj->def;
	const cl_rstore_methods *m = copy_methods(c->proj->e, d->store);
	if (c->store)
		c->store->m->close(c->store);
	if (c->retired && m && !c->proj->e->cfg.read_only && !c->foreign)
		cl_rs_drop_retired(m, c->path);
	pthread_mutex_destroy(&c->cmu);
	free(c->path);
	free(c);
}

static bool wait_backoff(cl_copy *c, int ms);
static int catalog_save(cleave_engine *e);

/* After a store failure that may have left the store unusable (LMDB
 * panics for good after a failed meta-page write, say), close it and open
 * it again.  Only when no query holds the copy: meanwhile it is not lent
 * (queries answer 503), and the runner keeps trying until it opens. */
static int copy_reopen(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&c->refs) > 1) {
		pthread_mutex_unlock(&p->mu);
		return CLEAVE_EBUSY;
	}
	c->reopening = true;
	pthread_mutex_unlock(&p->mu);
	const cl_rstore_methods *m = c->store->m;
	m->close(c->store);
	c->store = NULL;
	cl_rstore_opts o = store_opts(e);
	int rc, tries = 0;
	while ((rc = m->open(c->path, &o, &c->store))) {
		if (tries++ % 30 == 0)
			cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, -1,
			       "projection %s: reopening %s: %s", p->def->name,
			       c->path, cleave_errmsg());
		if (!wait_backoff(c, 1000))
			break; /* stopping: copy_destroy copes with no store */
	}
	if (c->store) {
		cleave_rtx *tx;
		int64_t pos = atomic_load(&c->applied);
		if (m->begin(c->store, false, &tx) == 0) {
			m->checkpoint_get(tx, &pos);
			cl_rtx_abort(tx);
		}
		atomic_store(&c->applied, pos);
		cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, pos,
		       "projection %s: store reopened at position %lld",
		       p->def->name, (long long)pos);
		/* a shared store that lost data lost the catalog published
		 * for query nodes too */
		if (e->root_store && cl_rs_has(m, CL_RS_SHARED))
			catalog_save(e);
	}
	pthread_mutex_lock(&p->mu);
	c->reopening = false;
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void cl_copy_unref(cl_copy *c)
{
	if (c && atomic_fetch_sub(&c->refs, 1) == 1)
		copy_destroy(c);
}

cl_copy *cl_copy_acquire(cl_proj *p)
{
	pthread_mutex_lock(&p->mu);
	cl_copy *c = p->live;
	if (c && c->reopening)
		c = NULL;
	if (c)
		atomic_fetch_add(&c->refs, 1);
	pthread_mutex_unlock(&p->mu);
	return c;
}

int64_t cl_proj_position(cl_proj *p)
{
	pthread_mutex_lock(&p->mu);
	int64_t pos = p->live ? atomic_load(&p->live->applied) : 0;
	pthread_mutex_unlock(&p->mu);
	return pos;
}

/* ---- the catalog --------------------------------------------------------- */

static int catalog_save_locked(cleave_engine *e);

/* Writers of the catalog (the switch on a runner thread, a rebuild request,
 * open) serialise here: one snapshot of every projection, one rename. */
static int catalog_save(cleave_engine *e)
{
	if (e->cfg.read_only)
		return 0;
	pthread_mutex_lock(&e->catmu);
	int rc = catalog_save_locked(e);
	pthread_mutex_unlock(&e->catmu);
	return rc;
}

static int catalog_save_locked(cleave_engine *e)
{
	cJSON *root = cJSON_CreateObject(), *ps = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, "format", 1);
	cJSON_AddItemToObject(root, "projections", ps);
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->proj[i];
		cJSON *o = cJSON_CreateObject();
		pthread_mutex_lock(&p->mu);
		if (p->live) {
			cJSON *l = cJSON_AddObjectToObject(o, "live");
			cJSON_AddNumberToObject(l, "gen", p->live->gen);
			cJSON_AddNumberToObject(l, "version", p->live->version);
		}
		if (p->build) {
			cJSON *b = cJSON_AddObjectToObject(o, "build");
			cJSON_AddNumberToObject(b, "gen", p->build->gen);
			cJSON_AddNumberToObject(b, "version",
						p->build->version);
		}
		cJSON_AddNumberToObject(o, "next_gen", p->next_gen);
		pthread_mutex_unlock(&p->mu);
		cJSON_AddItemToObject(ps, p->def->name, o);
	}
	char *text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	char path[4096], tmp[4096];
	snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
	snprintf(tmp, sizeof(tmp), "%s/catalog.json.tmp", e->read_dir);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t len = strlen(text);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) ||
	    rename(tmp, path))
		rc = cl_err(errno == ENOSPC ? CLEAVE_ENOSPC : CLEAVE_EIO,
			    "writing %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (!rc)
		rc = cl_fsync_dir(e->read_dir);
	if (!rc)
		cl_follow_publish(e, text);
	free(text);
	return rc;
}

static cJSON *catalog_load(cleave_engine *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	cl_buf b;
	cl_buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cl_buf_add(&b, chunk, n);
	fclose(f);
	cJSON *j = b.p ? cJSON_ParseWithLength(b.p, b.len) : NULL;
	cl_buf_free(&b);
	return j;
}

/* A copy named `name` ("<projection>.g<gen>", or a verify's scratch
 * "<projection>.verify-<hex>") found at `root`: removed when no catalog
 * entry names it (left by a crash mid-switch or mid-verify, or a
 * projection's old generations). */
static void sweep_one(cleave_engine *e, const cl_rstore_methods *m,
		      const char *name)
{
	char proj[256], path[4096];
	int gen;
	const char *dot = strrchr(name, '.');
	snprintf(path, sizeof(path), "%s/%s", m ? copy_root(e, m) : e->read_dir,
		 name);
	if (strstr(name, ".verify-")) {
		m ? m->drop(path) : cl_rmtree(path);
		return;
	}
	if (!dot || sscanf(dot, ".g%d", &gen) != 1 ||
	    (size_t)(dot - name) >= sizeof(proj))
		return;
	memcpy(proj, name, (size_t)(dot - name));
	proj[dot - name] = 0;
	int k = cl_nametab_get(&e->proj_idx, proj);
	if (k < 0)
		return; /* a projection this domain lacks: keep */
	cl_proj *p = &e->proj[k];
	if ((p->live && p->live->gen == gen) ||
	    (p->build && p->build->gen == gen))
		return;
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
	       "removing unused read-model copy %s", path);
	m ? m->drop(path) : cl_rmtree(path);
}

static int sweep_shared(void *arg, const char *name)
{
	cleave_engine *e = arg;
	sweep_one(e, e->shared, name);
	return 0;
}

static void sweep_orphans(cleave_engine *e)
{
	if (e->cfg.read_only)
		return;
	DIR *d = opendir(e->read_dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			sweep_one(e, NULL, de->d_name);
		closedir(d);
	}
	if (e->shared &&
	    e->shared->list(e->shared_root, e->owner, sweep_shared, e) < 0)
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "looking for unused read-model copies in %s: %s",
		       e->shared_root, cleave_errmsg());
}

/* ---- read models after a crash of the machine ------------------------- */

/* Read models committed without fsync survive a process crash (the page
 * cache has every commit) but not a crash of the machine, which may leave
 * them torn.  read/run.json says whether the last engine closed cleanly and
 * under which boot: an unclean end under another boot id means the machine
 * went down, and every read model is rebuilt from the log. */
static void boot_id(char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f)
		return;
	if (fgets(out, (int)cap, f))
		out[strcspn(out, "\n")] = 0;
	fclose(f);
}

static int run_mark(cleave_engine *e, bool clean)
{
	char id[64], path[4096], tmp[4096], text[256];
	boot_id(id, sizeof(id));
	int n = snprintf(text, sizeof(text),
			 "{\"boot_id\":\"%s\",\"clean\":%s,\"pid\":%d}\n", id,
			 clean ? "true" : "false", (int)getpid());
	snprintf(path, sizeof(path), "%s/run.json", e->read_dir);
	snprintf(tmp, sizeof(tmp), "%s/run.json.tmp", e->read_dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int rc = 0;
	if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) ||
	    rename(tmp, path))
		rc = cl_err(CLEAVE_EIO, "writing %s: %s", path,
			    strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc ? rc : cl_fsync_dir(e->read_dir);
}

static bool machine_crashed(cleave_engine *e)
{
	char path[4096], id[64], buf[256];
	snprintf(path, sizeof(path), "%s/run.json", e->read_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	cJSON *j = cJSON_Parse(buf);
	bool clean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "clean"));
	const char *was = cl_json_str(j, "boot_id");
	boot_id(id, sizeof(id));
	bool crashed = !clean && was && strcmp(was, id) != 0;
	cJSON_Delete(j);
	return crashed;
}

/* Removes every copy of this domain's projections (a fresh start). */
static void drop_all_copies(cleave_engine *e)
{
	DIR *d = opendir(e->read_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *dot = strrchr(de->d_name, '.');
		int gen;
		char name[256];
		if (!dot || sscanf(dot, ".g%d", &gen) != 1 ||
		    (size_t)(dot - de->d_name) >= sizeof(name))
			continue;
		memcpy(name, de->d_name, (size_t)(dot - de->d_name));
		name[dot - de->d_name] = 0;
		if (cl_nametab_get(&e->proj_idx, name) < 0)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", e->read_dir, de->d_name);
		cl_rmtree(path);
	}
	closedir(d);
}

int cl_sync_open(cleave_engine *e)
{
	if (!e->cfg.read_only && store_opts(e).nosync && machine_crashed(e)) {
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "the machine went down while cleave ran (another boot, "
		       "no clean shutdown): read models written without fsync "
		       "are rebuilt from the log");
		drop_all_copies(e);
		char path[4096];
		snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
		unlink(path);
	}
	cJSON *cat = catalog_load(e);
	cJSON *ps = cJSON_GetObjectItemCaseSensitive(cat, "projections");
	int rc = 0;
	bool dirty = false;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->proj[i];
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->resume, NULL);
		cJSON *o = cJSON_GetObjectItemCaseSensitive(ps, p->def->name);
		cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "live");
		cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "build");
		p->next_gen = (int)cl_json_int(o, "next_gen", 1);
		if (e->cfg.query_node &&
		    cl_rs_has(copy_methods(e, p->def->store), CL_RS_SHARED)) {
			/* another engine writes it: follow that one's copy */
			if ((rc = cl_follow_open(e, p)))
				break;
			continue;
		}
		if (l) {
			rc = copy_open(p, (int)cl_json_int(l, "gen", 1),
				       (int)cl_json_int(l, "version", 1),
				       &p->live);
		} else if (!e->cfg.read_only) {
			/* first build: nothing older to serve */
			int gen = p->next_gen++;
			rc = copy_open(p, gen, p->def->version, &p->live);
			dirty = true;
		} else {
			rc = cl_err(CLEAVE_ENOTFOUND,
				    "projection %s has no copy in %s",
				    p->def->name, e->read_dir);
		}
		if (rc)
			break;
		if (!e->cfg.read_only &&
		    atomic_load(&p->live->applied) > atomic_load(&e->head)) {
			/* a read model ahead of the log: the log lost its end
			 * (durability os and a crash of the machine, or a
			 * restored write store) — it cannot be trusted */
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL,
			       atomic_load(&p->live->applied),
			       "projection %s is ahead of the log (head %lld): "
			       "rebuilding it",
			       p->def->name, (long long)atomic_load(&e->head));
			p->live->retired = true;
			cl_copy_unref(p->live);
			p->live = NULL;
			if (p->next_gen <= (int)cl_json_int(l, "gen", 1))
				p->next_gen = (int)cl_json_int(l, "gen", 1) + 1;
			if ((rc = copy_open(p, p->next_gen++, p->def->version,
					    &p->live)))
				break;
			dirty = true;
			b = NULL; /* a build under way is dropped too */
		}
		if (b) {
			rc = copy_open(p, (int)cl_json_int(b, "gen", 1),
				       (int)cl_json_int(b, "version", 1),
				       &p->build);
			if (rc)
				break;
			p->build->building = true;
		}
		if (!p->build && p->live->version != p->def->version &&
		    !e->cfg.read_only) {
			/* the domain moved to another version: rebuild */
			int gen = p->next_gen++;
			if ((rc = copy_open(p, gen, p->def->version,
					    &p->build)))
				break;
			p->build->building = true;
			dirty = true;
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
			       "projection %s: version %d → %d, rebuilding "
			       "blue-green into g%d",
			       p->def->name, p->live->version,
			       p->def->version, gen);
		}
		int maxgen = CL_MAX(p->live->gen, p->build ? p->build->gen : 0);
		if (p->next_gen <= maxgen)
			p->next_gen = maxgen + 1;
	}
	cJSON_Delete(cat);
	/* with a shared store, query nodes read the catalog there: publish it at
	 * every open (a writer upgraded from an older version has none) */
	if (!rc && (dirty || (e->root_store && !e->cfg.query_node)))
		rc = catalog_save(e);
	if (!rc)
		sweep_orphans(e);
	if (!rc && !e->cfg.read_only)
		rc = run_mark(e, false);
	if (!rc)
		e->sync_opened = true;
	return rc;
}

/* ---- applying --------------------------------------------------------------- */

static bool subscribed(const cleave_projection_def *d, const char *type)
{
	if (!d->event_types)
		return true;
	for (const char *const *t = d->event_types; *t; t++)
		if (!strcmp(*t, type))
			return true;
	return false;
}

static bool store_error(int rc)
{
	return rc == CLEAVE_ENOSPC || rc == CLEAVE_EIO || rc == CLEAVE_ENOMEM ||
	       rc == CLEAVE_EBUSY;
}

typedef struct evlist {
	const cleave_event **ev; /* the subscribed events of the range */
	int n, cap;
	int64_t upto;            /* the range covered: checkpoint after it */
	cl_evbatch *refs[64]; /* ring batches held */
	int nrefs;
	cleave_event *own;    /* events read from the store */
	bool *own_arena;      /* own[i].json lives in the arena */
	int nown, capown;
	cl_arena arena;
} evlist;

static void evlist_clear(evlist *l)
{
	for (int i = 0; i < l->nrefs; i++)
		cl_evbatch_unref(l->refs[i]);
	for (int i = 0; i < l->nown; i++)
		if (!l->own_arena[i])
			cJSON_Delete((cJSON *)l->own[i].json);
	l->n = l->nrefs = l->nown = 0;
	cl_arena_free(&l->arena);
}

static void evlist_free(evlist *l)
{
	evlist_clear(l);
	free(l->ev);
	free(l->own);
	free(l->own_arena);
}

static int evlist_reserve(evlist *l, int n)
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
	evlist *l;
} read_arg;

static char *adup(cl_arena *a, const char *s)
{
	return s ? cl_arena_strdup(a, s, strlen(s)) : NULL;
}

static int collect_stored(void *arg, const cl_stored_event *s)
{
	read_arg *x = arg;
	evlist *l = x->l;
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
static int collect_store(cleave_engine *e, cl_wreader **rd,
			 const char *const *types, int64_t pos, int64_t upto,
			 int max, evlist *l)
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
static int collect(cl_copy *c, cl_wreader **rd, int64_t pos, int64_t head,
		   int max, evlist *l)
{
	cleave_engine *e = c->proj->e;
	int rc = evlist_reserve(l, max);
	if (rc)
		return rc;
	l->upto = pos;
	int64_t want = CL_MIN((int64_t)max, head - pos);
	cl_evbatch *b = cl_ring_find(e->ring, pos + 1);
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
			b = cl_ring_find(e->ring, pos + 1);
		}
		return 0;
	}
	int64_t span = (int64_t)max * 16;
	return collect_store(e, rd, c->def->event_types, pos,
			     CL_MIN(head, pos + span), max, l);
}

/* A deferred flush (cleave_rtx_defer) failed with a handler error over
 * ev[from, to): applies them again one at a time, flushing after each, in
 * a transaction abandoned at the end.  The index of the first event whose
 * handler or flush fails, or -1 when none does alone. */
static int flush_culprit(cl_copy *c, const cleave_event **ev, int from,
			 int to)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	int bad = -1;
	if (m->begin(c->store, true, &tx))
		return -1;
	for (int i = from; i < to && bad < 0; i++) {
		if (!subscribed(c->def, ev[i]->type))
			continue;
		int rc = c->def->apply(tx, ev[i]);
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
 * returns the code with *bad = -1. */
static int apply_range(cl_copy *c, const cleave_event **ev, int from, int to,
		       int64_t ckpt, int *bad, char *err, size_t errcap)
{
	const cl_rstore_methods *m = c->store->m;
	cleave_rtx *tx;
	*bad = -1;
	int rc = m->begin(c->store, true, &tx);
	if (rc)
		goto fail;
	for (int i = from; i < to; i++) {
		if (!subscribed(c->def, ev[i]->type))
			continue;
		cl_err_clear();
		rc = c->def->apply(tx, ev[i]);
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
	return 0;
fail:
	snprintf(err, errcap, "%s", *cleave_errmsg() ? cleave_errmsg()
						      : cleave_strerror(rc));
	return rc;
}

static int dead_letter(cl_copy *c, const cleave_event *ev, const char *err)
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

static bool wait_backoff(cl_copy *c, int ms)
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

/* Applies l's events; returns false when the copy stopped or parked. */
static bool apply_list(cl_copy *c, evlist *l)
{
	cleave_engine *e = c->proj->e;
	char err[256];
	int i = 0, bad, rc, store_fail = 0;
	int step = CL_MAX(l->n, 1);
	bool covered = false; /* the checkpoint reached l->upto */
	while ((i < l->n || !covered) && !atomic_load(&c->stop)) {
		int to = CL_MIN(l->n, i + step);
		/* the last chunk carries the checkpoint to the end of the
		 * range read, past events of other types */
		int64_t ckpt = to == l->n ? l->upto : l->ev[to - 1]->position;
		if (!commit_begin(c))
			return false;
		rc = apply_range(c, l->ev, i, to, ckpt, &bad, err, sizeof(err));
		if (rc == 0)
			note_applied(c, ckpt, to - i);
		pthread_mutex_unlock(&c->cmu);
		if (rc == 0) {
			if (store_fail || c->failing) { /* this thread sets it */
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
			step = CL_MAX(1, step / 2);
			if (!wait_backoff(c, CL_MIN(1000, 10 * store_fail)))
				return false;
			/* an I/O error may have broken the store for good */
			if (rc == CLEAVE_EIO && store_fail >= 3 &&
			    copy_reopen(c) == 0 && !atomic_load(&c->stop))
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
			if (!wait_backoff(c, delay))
				return false;
			delay *= 2;
			if (!commit_begin(c))
				return false;
			rc = apply_range(c, l->ev, i, i + 1, ev->position, &bad,
					 err, sizeof(err));
			if (rc == 0)
				note_applied(c, ev->position, 1);
			pthread_mutex_unlock(&c->cmu);
			if (rc == 0) {
				ok = true;
				break;
			}
		}
		if (ok) {
			i++;
			step = l->n;
			continue;
		}
		if (c->def->on_poison == CLEAVE_POISON_SKIP) {
			if (!commit_begin(c))
				return false;
			rc = dead_letter(c, ev, err);
			if (rc == 0)
				note_applied(c, ev->position, 0);
			pthread_mutex_unlock(&c->cmu);
			if (rc) {
				if (!wait_backoff(c, 100))
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

/* ---- switching a rebuilt copy live -------------------------------------- */

/*
 * Copies' lifetimes (the rule that the switch and shutdown share):
 *
 *  - A copy is reference-counted.  p->live and p->build each own one
 *    reference; so does every caller that read the pointer out of them and
 *    uses it after dropping p->mu (queries through cl_copy_acquire, the
 *    switch for the old copy, cl_sync_stop for the copies it stops).  The
 *    last cl_copy_unref destroys the copy, and deletes its files if it was
 *    retired.
 *  - A copy's runner thread is joined once, by whichever caller claims it
 *    (joining, under p->mu); any other caller of stop_copy_thread waits on
 *    p->resume until that join is done.  So when stop_copy_thread returns
 *    the thread is gone, whoever joined it.
 *  - Only a building copy's runner stops another copy's thread (the old
 *    one, at its switch).  Once the engine is stopping, no rebuild starts
 *    and no switch happens: what was being built stays in the catalog
 *    and resumes at the next open.
 */
static void stop_copy_thread(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	atomic_store(&c->stop, true);
	pthread_mutex_lock(&e->advmu);
	pthread_cond_broadcast(&e->advcond);
	pthread_mutex_unlock(&e->advmu);
	pthread_mutex_lock(&p->mu);
	pthread_cond_broadcast(&p->resume);
	if (c->has_thread && !c->joining) {
		c->joining = true;
		pthread_mutex_unlock(&p->mu);
		pthread_join(c->thread, NULL);
		pthread_mutex_lock(&p->mu);
		c->has_thread = false;
		c->joining = false;
		pthread_cond_broadcast(&p->resume);
	}
	while (c->has_thread)
		pthread_cond_wait(&p->resume, &p->mu);
	pthread_mutex_unlock(&p->mu);
}

static void try_switch(cl_copy *c)
{
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	if (atomic_load(&c->stop) || atomic_load(&e->sync_stopping))
		return; /* the catalog still names it: it resumes at open */
	/* the old copy's commit lock first (its runner takes it, then
	 * p->mu): its position is settled while we compare, and frozen
	 * once we switch */
	pthread_mutex_lock(&p->mu);
	cl_copy *old = p->live;
	if (old)
		atomic_fetch_add(&old->refs, 1);
	pthread_mutex_unlock(&p->mu);
	if (old)
		pthread_mutex_lock(&old->cmu);
	pthread_mutex_lock(&p->mu);
	/* Caught up means caught up with what is served: at least the old
	 * copy's position (frozen from here on), not the log's head, which
	 * under sustained writes a tailing copy is seldom exactly at. */
	int64_t pos = atomic_load(&c->applied);
	if (p->live != old || p->build != c ||
	    (old ? pos < atomic_load(&old->applied)
		 : pos < atomic_load(&e->head))) {
		pthread_mutex_unlock(&p->mu);
		if (old) {
			pthread_mutex_unlock(&old->cmu);
			cl_copy_unref(old);
		}
		return;
	}
	if (!c->fresh) {
		/* The rebuild applied batches of up to apply_batch_max
		 * events, and a store keeps what its largest transaction
		 * needed (LMDB holds a write transaction's dirty pages on
		 * its environment's free list until the environment
		 * closes: ~10 MiB for a batch of order documents).  Nobody
		 * holds the copy yet, so close and reopen it once before it
		 * goes live (if events came meanwhile, the runner applies
		 * them and comes back). */
		c->fresh = true;
		pthread_mutex_unlock(&p->mu);
		if (old) {
			pthread_mutex_unlock(&old->cmu);
			cl_copy_unref(old);
		}
		if (copy_reopen(c) == 0)
			try_switch(c); /* at once, not at the runner's
					  next wakeup */
		return;
	}
	p->live = c;
	p->build = NULL;
	c->building = false;
	if (old) {
		old->retired = true;
		old->frozen = true;
	}
	pthread_mutex_unlock(&p->mu);
	if (old) {
		pthread_mutex_unlock(&old->cmu);
		cl_copy_unref(old); /* p->live's reference is dropped below */
	}
	int rc = catalog_save(e);
	cl_log(e, rc ? CLEAVE_LOG_ERROR : CLEAVE_LOG_INFO, NULL, NULL, pos,
	       "projection %s: g%d (v%d) is live at position %lld%s%s",
	       p->def->name, c->gen, c->version, (long long)pos,
	       rc ? "; catalog write failed: " : "", rc ? cleave_errmsg() : "");
	cl_applied_notify(e);
	if (old) {
		stop_copy_thread(old);
		cl_copy_unref(old);
	}
}

/* ---- the runner thread ------------------------------------------------------ */

/* ---- catching up from the store: read ahead on another thread ----------- */

/* A copy far behind the ring (a rebuild, a restart) reads the store.  One
 * thread reads and decodes the next ranges while the runner applies the
 * previous one, so the two halves of the work use both cores.  At most
 * two ranges wait, so memory stays bounded by the batch size. */
typedef struct prefetch {
	cl_copy *c;
	int64_t pos, end;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	evlist *q[2];
	int nq;
	bool done, stop;
	int rc;
} prefetch;

static void *prefetch_main(void *arg)
{
	prefetch *f = arg;
	cleave_engine *e = f->c->proj->e;
	const cleave_projection_def *def = f->c->def;
	cl_wreader *rd = NULL;
	cl_thread_name("cl-read:%s", def->name);
	int max = e->cfg.apply_batch_max;
	int64_t pos = f->pos;
	int rc = 0;
	while (pos < f->end && !atomic_load(&f->c->stop)) {
		evlist *l = calloc(1, sizeof(*l));
		if (!l || (rc = evlist_reserve(l, max)) ||
		    (rc = collect_store(e, &rd, def->event_types, pos,
					CL_MIN(f->end, pos + (int64_t)max * 16),
					max, l))) {
			if (l)
				evlist_free(l);
			free(l);
			if (!rc)
				rc = cl_err(CLEAVE_ENOMEM, "out of memory");
			break;
		}
		pos = l->upto;
		pthread_mutex_lock(&f->mu);
		while (f->nq == 2 && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->stop) {
			pthread_mutex_unlock(&f->mu);
			evlist_free(l);
			free(l);
			break;
		}
		f->q[f->nq++] = l;
		pthread_cond_broadcast(&f->cv);
		pthread_mutex_unlock(&f->mu);
	}
	cl_reader_put(e, rd);
	pthread_mutex_lock(&f->mu);
	f->done = true;
	f->rc = rc;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* Applies (pos, end] with a read-ahead thread. Returns false when the
 * copy stopped, parked, or could not read. */
static bool catch_up(cl_copy *c, int64_t pos, int64_t end)
{
	prefetch f = {.c = c, .pos = pos, .end = end};
	pthread_mutex_init(&f.mu, NULL);
	pthread_cond_init(&f.cv, NULL);
	pthread_t th;
	bool ok = true;
	if (pthread_create(&th, NULL, prefetch_main, &f)) {
		pthread_mutex_destroy(&f.mu);
		pthread_cond_destroy(&f.cv);
		return true; /* the plain path will do */
	}
	for (;;) {
		pthread_mutex_lock(&f.mu);
		while (!f.nq && !f.done)
			pthread_cond_wait(&f.cv, &f.mu);
		if (!f.nq) {
			pthread_mutex_unlock(&f.mu);
			break;
		}
		evlist *l = f.q[0];
		f.q[0] = f.q[1];
		f.nq--;
		pthread_cond_broadcast(&f.cv);
		pthread_mutex_unlock(&f.mu);
		if (l->upto < end && l->n)
			c->pending_ts = l->ev[l->n - 1]->ts_us;
		ok = apply_list(c, l);
		evlist_free(l);
		free(l);
		if (!ok)
			break;
	}
	pthread_mutex_lock(&f.mu);
	f.stop = true;
	pthread_cond_broadcast(&f.cv);
	pthread_mutex_unlock(&f.mu);
	pthread_join(th, NULL);
	for (int i = 0; i < f.nq; i++) {
		evlist_free(f.q[i]);
		free(f.q[i]);
	}
	if (f.rc) {
		cl_log(c->proj->e, CLEAVE_LOG_ERROR, NULL, NULL, pos,
		       "projection %s: reading the log: %s", c->proj->def->name,
		       cleave_errmsg());
		ok = false;
	}
	pthread_mutex_destroy(&f.mu);
	pthread_cond_destroy(&f.cv);
	return ok;
}

/* A quiet copy in a shared store checks now and then that the store
 * still has what it applied: a write transaction's begin does (Redis:
 * check_ckpt).  A store that lost data is reopened and
 * applied again from its checkpoint without waiting for a new event. */
static void idle_check(cl_copy *c)
{
	cleave_rtx *tx;
	int rc = c->store->m->begin(c->store, true, &tx);
	if (rc == 0) {
		c->store->m->abort(tx);
		return;
	}
	cl_proj *p = c->proj;
	cl_log(p->e, CLEAVE_LOG_ERROR, NULL, NULL, atomic_load(&c->applied),
	       "projection %s: store check: %s", p->def->name,
	       cleave_errmsg());
	pthread_mutex_lock(&p->mu);
	snprintf(c->last_error, sizeof(c->last_error), "%s", cleave_errmsg());
	c->failing = true;
	pthread_mutex_unlock(&p->mu);
	if (rc == CLEAVE_EIO && copy_reopen(c) == 0) {
		pthread_mutex_lock(&p->mu);
		c->failing = false;
		pthread_mutex_unlock(&p->mu);
	}
}

static void *runner_main(void *arg)
{
	cl_copy *c = arg;
	cl_proj *p = c->proj;
	cleave_engine *e = p->e;
	cl_wreader *rd = NULL;
	cl_thread_name("cl-run:%s", c->def->name);
	evlist l = {0};
	while (!atomic_load(&c->stop)) {
		pthread_mutex_lock(&p->mu);
		while (c->parked && !atomic_load(&c->stop))
			pthread_cond_wait(&p->resume, &p->mu);
		pthread_mutex_unlock(&p->mu);
		if (atomic_load(&c->stop))
			break;
		int64_t pos = atomic_load(&c->applied);
		pthread_mutex_lock(&e->advmu);
		int64_t head = atomic_load(&e->head);
		if (pos >= head) {
			if (c->building) {
				pthread_mutex_unlock(&e->advmu);
				try_switch(c);
				pthread_mutex_lock(&e->advmu);
			}
			if (atomic_load(&c->stop) ||
			    pos < atomic_load(&e->head)) {
				pthread_mutex_unlock(&e->advmu);
				continue;
			}
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1; /* fallback only; commits wake us */
			int w = pthread_cond_timedwait(&e->advcond, &e->advmu,
						       &ts);
			pthread_mutex_unlock(&e->advmu);
			if (w == ETIMEDOUT &&
			    cl_rs_has(c->store->m, CL_RS_SHARED))
				idle_check(c);
			continue;
		}
		pthread_mutex_unlock(&e->advmu);
		if (head - pos > 4 * (int64_t)e->cfg.apply_batch_max &&
		    !cl_ring_has(e->ring, pos + 1)) {
			if (!catch_up(c, pos, head) && !atomic_load(&c->stop) &&
			    !c->parked)
				wait_backoff(c, 200);
			continue;
		}
		int rc = collect(c, &rd, pos, head, e->cfg.apply_batch_max, &l);
		if (rc || l.upto <= pos) {
			if (rc)
				cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, pos,
				       "projection %s: reading the log: %s",
				       p->def->name, cleave_errmsg());
			evlist_clear(&l);
			if (rd) {
				cl_reader_put(e, rd);
				rd = NULL;
			}
			wait_backoff(c, 200);
			continue;
		}
		if (rd && l.nrefs) {
			/* tailing the ring again: the store reader goes back
			 * to the pool (which closes it once idle) */
			cl_reader_put(e, rd);
			rd = NULL;
		}
		if (l.upto < head && l.n)
			c->pending_ts = l.ev[l.n - 1]->ts_us;
		apply_list(c, &l);
		evlist_clear(&l);
		if (c->building && !atomic_load(&c->stop))
			try_switch(c);
	}
	evlist_free(&l);
	cl_reader_put(e, rd);
	return NULL;
}

/* Starts c's runner, unless the engine is stopping (checked under p->mu,
 * where cl_sync_stop reads the copies it stops: a copy is either seen
 * there or never started). */
static int start_copy(cl_copy *c)
{
	if (!c->def)
		return 0; /* frozen: an old version nobody can feed */
	cl_proj *p = c->proj;
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&p->e->sync_stopping)) {
		rc = cl_err(CLEAVE_ESHUTDOWN, "the engine is stopping");
	} else if (!c->has_thread) {
		atomic_store(&c->stop, false);
		if (pthread_create(&c->thread, NULL, runner_main, c))
			rc = cl_err(CLEAVE_EINTERNAL,
				    "cannot start runner thread");
		else
			c->has_thread = true;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int cl_sync_start(cleave_engine *e)
{
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->proj[i];
		if (p->followed)
			continue; /* written elsewhere */
		int rc = start_copy(p->live);
		if (!rc && p->build)
			rc = start_copy(p->build);
		if (rc)
			return rc;
	}
	return 0;
}

void cl_sync_notify(cleave_engine *e)
{
	pthread_mutex_lock(&e->advmu);
	e->adv_seq++;
	pthread_cond_broadcast(&e->advcond);
	pthread_mutex_unlock(&e->advmu);
}

void cl_sync_stop(cleave_engine *e)
{
	if (!e->proj)
		return;
	atomic_store(&e->sync_stopping, true);
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->proj[i];
		if (!p->def)
			continue;
		/* references of our own: the build copy's runner may switch,
		 * retire and release the live copy while we stop them */
		pthread_mutex_lock(&p->mu);
		cl_copy *a = p->build, *b = p->live;
		if (a)
			atomic_fetch_add(&a->refs, 1);
		if (b)
			atomic_fetch_add(&b->refs, 1);
		pthread_mutex_unlock(&p->mu);
		if (a)
			stop_copy_thread(a);
		if (b)
			stop_copy_thread(b);
		cl_copy_unref(a);
		cl_copy_unref(b);
	}
}

void cl_sync_close(cleave_engine *e)
{
	if (!e->proj)
		return;
	bool mark = e->sync_opened && !e->cfg.read_only;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->proj[i];
		if (!p->def)
			continue;
		if (p->build)
			cl_copy_unref(p->build);
		if (p->live)
			cl_copy_unref(p->live);
		p->build = p->live = NULL;
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->resume);
	}
	/* every store is closed, hence on disk: a clean end */
	if (mark && run_mark(e, true))
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "could not record the clean shutdown: %s; read models "
		       "will be rebuilt if the machine restarts first",
		       cleave_errmsg());
}

/* ---- operations ------------------------------------------------------------ */

int cleave_projection_count(cleave_engine *e)
{
	return e->nproj;
}

int cleave_projection_find(cleave_engine *e, const char *name)
{
	int k = name ? cl_nametab_get(&e->proj_idx, name) : -1;
	return k < 0 ? cl_err(CLEAVE_ENOTFOUND, "unknown projection '%s'",
			      name ? name : "")
		     : k;
}

const char *cleave_proj_state_name(cleave_proj_state s)
{
	switch (s) {
	case CLEAVE_PROJ_LIVE: return "live";
	case CLEAVE_PROJ_REBUILDING: return "rebuilding";
	case CLEAVE_PROJ_PARKED: return "parked";
	}
	return "unknown";
}

int cleave_projection_status(cleave_engine *e, int i, cleave_proj_status *out)
{
	if (i < 0 || i >= e->nproj)
		return cl_err(CLEAVE_ENOTFOUND, "no projection #%d", i);
	cl_proj *p = &e->proj[i];
	int64_t head = atomic_load(&e->head), now = cl_now_us();
	memset(out, 0, sizeof(*out));
	out->name = p->def->name;
	pthread_mutex_lock(&p->mu);
	cl_copy *l = p->live, *b = p->build;
	out->version = l->version;
	out->position = atomic_load(&l->applied);
	out->lag_events = head > out->position ? head - out->position : 0;
	out->applied_total = (int64_t)l->applied_total;
	uint64_t sum = 0;
	int secs = 0;
	for (int k = 0; k < 10; k++)
		if (l->rate_sec[k] && now / 1000000 - l->rate_sec[k] < 10 &&
		    l->rate_sec[k] != now / 1000000) {
			sum += l->rate_events[k];
			secs++;
		}
	out->events_per_s = secs ? (double)sum / 9.0 : 0;
	out->dead_letters = l->dead_letters + (b ? b->dead_letters : 0);
	out->failing = l->failing || (b && b->failing);
	out->state = l->parked ? CLEAVE_PROJ_PARKED
		     : b       ? CLEAVE_PROJ_REBUILDING
			       : CLEAVE_PROJ_LIVE;
	if (l->parked)
		out->parked_position = l->parked_position;
	else if (b && b->parked)
		out->parked_position = b->parked_position;
	snprintf(out->last_error, sizeof(out->last_error), "%s",
		 l->last_error[0] ? l->last_error : b ? b->last_error : "");
	if (b) {
		out->building_version = b->version;
		out->building_position = atomic_load(&b->applied);
	}
	int64_t pending = l->pending_ts;
	pthread_mutex_unlock(&p->mu);
	if (out->lag_events > 0) {
		int64_t ts = cl_ring_ts(e->ring, out->position + 1);
		if (!ts)
			ts = pending;
		if (ts && now > ts)
			out->lag_seconds = (double)(now - ts) / 1e6;
	}
	return 0;
}

int cleave_projection_rebuild(cleave_engine *e, const char *name)
{
	int k = cleave_projection_find(e, name);
	if (k < 0)
		return k;
	if (e->proj[k].followed)
		return cl_err(CLEAVE_EREADONLY,
			      "projection %s is written by the writer this "
			      "query node follows: %s it there",
			      name, "rebuild");
	if (e->cfg.read_only || e->cfg.no_projections)
		return cl_err(CLEAVE_EINVAL,
			      "rebuild needs an engine that runs projections");
	cl_proj *p = &e->proj[k];
	pthread_mutex_lock(&p->mu);
	if (atomic_load(&e->sync_stopping)) {
		pthread_mutex_unlock(&p->mu);
		return cl_err(CLEAVE_ESHUTDOWN, "the engine is stopping");
	}
	if (p->build) {
		pthread_mutex_unlock(&p->mu);
		return cl_err(CLEAVE_EBUSY, "a rebuild of %s is already running",
			      name);
	}
	int gen = p->next_gen++;
	pthread_mutex_unlock(&p->mu);
	cl_copy *c;
	int rc = copy_open(p, gen, p->def->version, &c);
	if (rc)
		return rc;
	if (atomic_load(&c->applied) != 0) {
		/* a stale directory with this generation: start clean */
		char path[4096];
		snprintf(path, sizeof(path), "%s", c->store->path);
		c->store->m->close(c->store);
		pthread_mutex_destroy(&c->cmu);
		free(c->path);
		free(c);
		copy_methods(e, p->def->store)->drop(path);
		if ((rc = copy_open(p, gen, p->def->version, &c)))
			return rc;
	}
	c->building = true;
	pthread_mutex_lock(&p->mu);
	p->build = c;
	pthread_mutex_unlock(&p->mu);
	if ((rc = catalog_save(e)) || (rc = start_copy(c))) {
		pthread_mutex_lock(&p->mu);
		p->build = NULL;
		pthread_mutex_unlock(&p->mu);
		c->retired = true;
		cl_copy_unref(c);
		return rc;
	}
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
	       "projection %s: rebuild into g%d started", name, gen);
	return 0;
}

int cleave_projection_resume(cleave_engine *e, const char *name)
{
	int k = cleave_projection_find(e, name);
	if (k < 0)
		return k;
	if (e->proj[k].followed)
		return cl_err(CLEAVE_EREADONLY,
			      "projection %s is written by the writer this "
			      "query node follows: %s it there",
			      name, "resume");
	cl_proj *p = &e->proj[k];
	bool any = false;
	pthread_mutex_lock(&p->mu);
	cl_copy *cs[2] = {p->live, p->build};
	for (int i = 0; i < 2; i++)
		if (cs[i] && cs[i]->parked) {
			cs[i]->parked = false;
			cs[i]->last_error[0] = 0;
			any = true;
		}
	pthread_cond_broadcast(&p->resume);
	pthread_mutex_unlock(&p->mu);
	if (!any)
		return cl_err(CLEAVE_EINVAL, "projection %s is not parked",
			      name);
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1, "projection %s resumed",
	       name);
	cl_applied_notify(e);
	return 0;
}

int cleave_projection_wait_rebuilt(cleave_engine *e, const char *name,
				   int timeout_ms)
{
	int k = cleave_projection_find(e, name);
	if (k < 0)
		return k;
	cl_proj *p = &e->proj[k];
	int64_t until = cl_mono_us() + (int64_t)timeout_ms * 1000;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		bool building = p->build != NULL;
		bool parked = building && p->build->parked;
		pthread_mutex_unlock(&p->mu);
		if (!building)
			return 0;
		if (parked)
			return cl_err(CLEAVE_EPARKED,
				      "the new copy of %s is parked", name);
		if (cl_mono_us() >= until)
			return cl_err(CLEAVE_ETIMEDOUT,
				      "rebuild of %s still running", name);
		cl_sleep_ms(5);
	}
}

int cleave_projection_applied_at(cleave_engine *e, int i, int64_t position,
				 int64_t *when_us)
{
	if (i < 0 || i >= e->nproj)
		return CLEAVE_ENOTFOUND;
	cl_proj *p = &e->proj[i];
	int rc = CLEAVE_ENOTFOUND;
	*when_us = 0;
	pthread_mutex_lock(&p->mu);
	cl_copy *c = p->live;
	if (atomic_load(&c->applied) >= position) {
		rc = 0;
		unsigned n = CL_MIN(c->hist_n, 256u);
		for (unsigned k = 0; k < n; k++) {
			unsigned idx = (c->hist_n - n + k) % 256;
			if (c->hist_pos[idx] >= position) {
				if (k > 0 || c->hist_n <= 256)
					*when_us = c->hist_us[idx];
				break;
			}
		}
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

/* ---- verify ------------------------------------------------------------------ */

typedef struct vent {
	char *key;      /* table \0 key */
	size_t klen;    /* of both parts */
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
			size_t j = vkey_hash(t->v[i].key, t->v[i].klen) &
				   (cap - 1);
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
	cl_buf k;
	bool live;
	cleave_diff_fn fn;
	void *arg;
	int64_t ndiff;
	int rc;
} vctx;

static int vkey(vctx *x, const char *table, const char *key, size_t klen)
{
	cl_buf_reset(&x->k);
	cl_buf_adds(&x->k, table);
	cl_buf_addc(&x->k, 0);
	cl_buf_add(&x->k, key, klen);
	return x->k.oom ? CLEAVE_ENOMEM : 0;
}

static int vdiff(vctx *x, const char *table, const char *key, size_t klen,
		 const char *what)
{
	x->ndiff++;
	return x->fn ? x->fn(x->arg, table, key, klen, what) : 0;
}

static int vdump(void *arg, const char *table, const char *key, size_t klen,
		 const void *val, size_t vlen)
{
	vctx *x = arg;
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
	int k = cleave_projection_find(e, name);
	if (k < 0)
		return k;
	if (e->proj[k].followed)
		return cl_err(CLEAVE_EREADONLY,
			      "projection %s is written by the writer this "
			      "query node follows: %s it there",
			      name, "verify");
	cl_proj *p = &e->proj[k];
	cl_copy *live = cl_copy_acquire(p);
	if (!live)
		return cl_err(CLEAVE_EBUSY,
			      "projection %s is reopening its store; retry",
			      name);
	const cl_rstore_methods *m = live->store->m;
	const cleave_projection_def *def = live->def;
	cleave_rtx *ltx = NULL;
	cl_copy scratch = {0};
	vctx x = {0};
	evlist l = {0};
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
	snprintf(path, sizeof(path), "%s/%s.verify-%s", copy_root(e, m), name,
		 hex);
	cl_rstore_opts o = {0};
	o.nosync = true;
	o.map_size = e->cfg.lmdb_map_size;
	o.owner = e->owner;
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
		if ((rc = evlist_reserve(&l, e->cfg.apply_batch_max)))
			goto out;
		int max = e->cfg.apply_batch_max;
		if ((rc = collect_store(e, &rd, def->event_types, at,
					CL_MIN(pos, at + (int64_t)max * 16), max,
					&l)))
			goto out;
		int bad;
		char err[256];
		int i = 0;
		for (;;) {
			rc = apply_range(&scratch, l.ev, i, l.n, l.upto, &bad,
					 err, sizeof(err));
			if (rc == 0)
				break;
			if (bad < 0)
				goto out;
			/* a poison event: the live copy skipped it (or is
			 * parked before it); do the same */
			int bad2;
			if (bad > i &&
			    (rc = apply_range(&scratch, l.ev, i, bad,
					      l.ev[bad - 1]->position, &bad2,
					      err, sizeof(err))))
				goto out;
			if (def->on_poison != CLEAVE_POISON_SKIP) {
				rc = cl_err(CLEAVE_EPARKED,
					    "event %lld fails in the handler: "
					    "%s",
					    (long long)l.ev[bad]->position, err);
				goto out;
			}
			if ((rc = dead_letter(&scratch, l.ev[bad], err)))
				goto out;
			i = bad + 1;
		}
		at = l.upto;
		evlist_clear(&l);
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
	evlist_free(&l);
	cl_reader_put(e, rd);
	if (scratch.store)
		m->close(scratch.store);
	if (path[0])
		m->drop(path);
	for (size_t i = 0; i < x.t.cap; i++)
		free(x.t.v[i].key);
	free(x.t.v);
	cl_buf_free(&x.k);
	cl_copy_unref(live);
	if (ndiff)
		*ndiff = x.ndiff;
	if (position)
		*position = pos;
	return rc;
}
