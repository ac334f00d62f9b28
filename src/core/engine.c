/*
 * engine.c — opening and closing the engine, the domain's tables, the log
 * readers, stats and the small containers the core shares.
 *
 * Open order: check the domain table, create the data directory (0700),
 * open the write store and run migrations, open the read stores (catalog),
 * then start the writer, the runners and the watcher.  Close runs it
 * backwards: stop accepting, drain and commit the queue, stop the runners
 * after their batch, fire remaining watches, close the stores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/engine.h"
#include "live/live.h"
#include "core/json.h"

/* ---- name tables -------------------------------------------------------- */

int cl_nametab_init(cl_nametab *t, size_t n)
{
	size_t cap = 16;
	while (cap < n * 2)
		cap *= 2;
	t->names = calloc(cap, sizeof(*t->names));
	t->index = calloc(cap, sizeof(*t->index));
	t->cap = cap;
	if (!t->names || !t->index)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	return 0;
}

void cl_nametab_free(cl_nametab *t)
{
	free(t->names);
	free(t->index);
	memset(t, 0, sizeof(*t));
}

int cl_nametab_put(cl_nametab *t, const char *name, int index)
{
	size_t j = cl_hash_str(name) & (t->cap - 1);
	while (t->names[j]) {
		if (!strcmp(t->names[j], name))
			return CLEAVE_EEXIST;
		j = (j + 1) & (t->cap - 1);
	}
	t->names[j] = name;
	t->index[j] = index;
	return 0;
}

int cl_nametab_get(const cl_nametab *t, const char *name)
{
	if (!t->cap)
		return -1;
	size_t j = cl_hash_str(name) & (t->cap - 1);
	while (t->names[j]) {
		if (!strcmp(t->names[j], name))
			return t->index[j];
		j = (j + 1) & (t->cap - 1);
	}
	return -1;
}

/* ---- histograms ------------------------------------------------------------ */

const uint64_t cleave_hist_bounds_us[CLEAVE_HIST_BUCKETS] = {
	50,    100,   250,    500,    1000,    2500,    5000,     10000,
	25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};
const uint64_t cleave_hist_bounds_batch[CLEAVE_HIST_BUCKETS] = {
	1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384,
	65536};

void cleave_hist_copy(cleave_hist *out, const cleave_hist *h)
{
	out->count = __atomic_load_n(&h->count, __ATOMIC_RELAXED);
	out->sum = __atomic_load_n(&h->sum, __ATOMIC_RELAXED);
	for (int i = 0; i < CLEAVE_HIST_BUCKETS; i++)
		out->buckets[i] =
		    __atomic_load_n(&h->buckets[i], __ATOMIC_RELAXED);
}

void cleave_hist_add(cleave_hist *h, const uint64_t *bounds, uint64_t v)
{
	__atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum, v, __ATOMIC_RELAXED);
	for (int i = 0; i < CLEAVE_HIST_BUCKETS; i++)
		if (v <= bounds[i]) {
			__atomic_fetch_add(&h->buckets[i], 1, __ATOMIC_RELAXED);
			break;
		}
}

/* ---- logging ---------------------------------------------------------------- */

void cl_log(cleave_engine *e, int level, const char *trace_id,
	    const char *command_id, int64_t position, const char *fmt, ...)
{
	if (!e->cfg.log)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e->cfg.log(e->cfg.log_arg, level, trace_id, command_id, position, msg);
}

/* ---- the domain table ------------------------------------------------------- */

static int check_domain(cleave_engine *e, const cleave_domain *d)
{
	int rc;
	if (!d || !d->name || !d->commands || !d->projections || !d->queries)
		return cl_err(CLEAVE_EINVAL, "domain table incomplete");
	for (e->ncmd = 0; d->commands[e->ncmd].name; e->ncmd++) {
		const cleave_command_def *c = &d->commands[e->ncmd];
		if (!cl_name_ok(c->name, CLEAVE_NAME_MAX, "word") || !c->handle)
			return cl_err(CLEAVE_EINVAL, "bad command definition "
						     "'%s'", c->name);
	}
	for (e->nquery = 0; d->queries[e->nquery].name; e->nquery++) {
		const cleave_query_def *q = &d->queries[e->nquery];
		if (!cl_name_ok(q->name, CLEAVE_NAME_MAX, "word") || !q->handle)
			return cl_err(CLEAVE_EINVAL,
				      "bad query definition '%s'", q->name);
	}
	if ((rc = cl_nametab_init(&e->cmd_idx, (size_t)e->ncmd)) ||
	    (rc = cl_nametab_init(&e->query_idx, (size_t)e->nquery)))
		return rc;
	for (int i = 0; i < e->ncmd; i++)
		if (cl_nametab_put(&e->cmd_idx, d->commands[i].name, i))
			return cl_err(CLEAVE_EINVAL, "command '%s' twice",
				      d->commands[i].name);
	for (int i = 0; i < e->nquery; i++)
		if (cl_nametab_put(&e->query_idx, d->queries[i].name, i))
			return cl_err(CLEAVE_EINVAL, "query '%s' twice",
				      d->queries[i].name);
	if ((rc = cl_sync_init(e, d)) || (rc = cl_live_init(e)))
		return rc;
	/* queries: which projections each reads */
	e->query_maxreads = 1;
	for (int i = 0; i < e->nquery; i++) {
		int n = 0;
		for (const char *const *r = d->queries[i].reads; r && *r; r++)
			n++;
		if (n > e->query_maxreads)
			e->query_maxreads = n;
	}
	e->query_reads = calloc((size_t)(e->nquery ? e->nquery : 1) *
					(size_t)e->query_maxreads,
				sizeof(int));
	e->query_nreads = calloc((size_t)(e->nquery ? e->nquery : 1),
				 sizeof(int));
	if (!e->query_reads || !e->query_nreads)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	for (int i = 0; i < e->nquery; i++) {
		int n = 0;
		for (const char *const *r = d->queries[i].reads; r && *r; r++) {
			int k = cl_nametab_get(&e->proj_idx, *r);
			if (k < 0)
				return cl_err(CLEAVE_EINVAL,
					      "query '%s' reads unknown "
					      "projection '%s'",
					      d->queries[i].name, *r);
			e->query_reads[i * e->query_maxreads + n++] = k;
		}
		e->query_nreads[i] = n;
	}
	if ((rc = cl_writer_new(e)))
		return rc;
	return 0;
}

/* ---- open / close ----------------------------------------------------------- */

/* The store URIs, checked before anything is created: --read-store,
 * --query-node (which needs a shared read store) and "sqlite:DIR" (another
 * data directory's log: query nodes and read-only tools only). */
static int stores_check(cleave_engine *e, const cleave_config *cfg)
{
	int rc = cl_sync_shared_check(e, cfg);
	if (rc)
		return rc;
	const char *w = cfg->write_store;
	if (!w || strncmp(w, "sqlite:", 7))
		return 0;
	if (!cfg->query_node && !cfg->read_only)
		return cl_err(CLEAVE_EINVAL,
			      "write store '%s': another data directory's log "
			      "is for query nodes and read-only tools; a writer "
			      "keeps its log in --data",
			      w);
	if (!w[7])
		return cl_err(CLEAVE_EINVAL, "write store '%s': no directory",
			      w);
	if (!(e->wstore_dir = strdup(w + 7)))
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	return 0;
}

/* One engine writes a data directory at a time: a second one would be a
 * second writer of the log and of the catalog.  The lock is an flock on
 * data/LOCK, released by the kernel when the process dies. */
static int lock_data_dir(cleave_engine *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/LOCK", e->data_dir);
	e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (e->lock_fd < 0)
		return cl_err(CLEAVE_EIO, "open %s: %s", path, strerror(errno));
	if (flock(e->lock_fd, LOCK_EX | LOCK_NB)) {
		char pid[32] = "?";
		ssize_t n = pread(e->lock_fd, pid, sizeof(pid) - 1, 0);
		if (n > 0)
			pid[n] = 0;
		pid[strcspn(pid, "\n")] = 0;
		close(e->lock_fd);
		e->lock_fd = -1;
		return cl_err(CLEAVE_EBUSY,
			      "data directory %s is in use by another cleave "
			      "process (pid %s); stop it or use --server URL",
			      e->data_dir, pid);
	}
	char pid[32];
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(e->lock_fd, 0) == 0 &&
	    pwrite(e->lock_fd, pid, (size_t)n, 0) != n)
		return cl_err(CLEAVE_EIO, "write %s: %s", path, strerror(errno));
	return 0;
}

static void engine_free(cleave_engine *e)
{
	if (!e)
		return;
	cl_sync_close(e);
	cl_logpub_close(e);
	if (e->ws)
		e->wm->close(e->ws);
	cl_nametab_free(&e->cmd_idx);
	cl_nametab_free(&e->query_idx);
	free(e->query_reads);
	free(e->query_nreads);
	cl_writer_free(e);
	cl_sync_free(e);
	cl_live_free(e);
	free(e->data_dir);
	free(e->read_dir);
	free(e->wstore_dir);
	if (e->lock_fd > 0)
		close(e->lock_fd);
	free(e);
}

int cleave_domain_check(const cleave_domain *d)
{
	cleave_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	e->lock_fd = -1;
	e->dom = d;
	int rc = check_domain(e, d);
	engine_free(e);
	return rc;
}

int cleave_engine_open(const cleave_config *cfg, cleave_engine **out)
{
	int rc;
	*out = NULL;
	cleave_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	e->cfg = *cfg;
	e->lock_fd = -1;
	if (!e->cfg.queue_max)
		e->cfg.queue_max = 65536;
	if (!e->cfg.batch_max)
		e->cfg.batch_max = 4096;
	if (!e->cfg.apply_batch_max)
		e->cfg.apply_batch_max = 8192;
	if (!e->cfg.ring_events)
		e->cfg.ring_events = 65536;
	if (!e->cfg.poison_retries)
		e->cfg.poison_retries = 3;
	if (!e->cfg.poison_backoff_ms)
		e->cfg.poison_backoff_ms = 20;
	if (e->cfg.queue_max < 1 || e->cfg.batch_max < 1 ||
	    e->cfg.apply_batch_max < 1 || e->cfg.ring_events < 1 ||
	    e->cfg.poison_retries < 1 || e->cfg.poison_backoff_ms < 1) {
		rc = cl_err(CLEAVE_EINVAL, "limits must be positive");
		goto fail;
	}
	e->dom = cfg->domain;
	if ((rc = check_domain(e, cfg->domain)))
		goto fail;
	e->data_dir = strdup(cfg->data_dir ? cfg->data_dir : "./cleave-data");
	size_t rl = strlen(e->data_dir) + 8;
	e->read_dir = malloc(rl);
	if (!e->data_dir || !e->read_dir) {
		rc = cl_err(CLEAVE_ENOMEM, "out of memory");
		goto fail;
	}
	snprintf(e->read_dir, rl, "%s/read", e->data_dir);
	if ((rc = stores_check(e, cfg)))
		goto fail;
	if (!cfg->read_only) {
		if ((rc = cl_mkdirs(e->data_dir)) ||
		    (rc = cl_mkdirs(e->read_dir)))
			goto fail;
		chmod(e->data_dir, 0700);
		if ((rc = lock_data_dir(e)))
			goto fail;
	} else {
		struct stat st;
		if (stat(e->data_dir, &st)) {
			rc = cl_err(CLEAVE_ENOTFOUND,
				    "no data directory at %s", e->data_dir);
			goto fail;
		}
	}
	if ((rc = cl_sync_shared_open(e)))
		goto fail;
	const char *wuri = e->wstore_dir ? "sqlite" : cfg->write_store;
	e->wm = cl_wstore_find(wuri);
	if (!e->wm) {
		rc = cl_err(CLEAVE_EINVAL, "unknown write store '%s'",
			    cfg->write_store);
		goto fail;
	}
	cl_wstore_opts wo = {e->wstore_dir ? e->wstore_dir : e->data_dir,
			     wuri, cfg->durability,
			     cfg->read_only || cfg->query_node};
	if ((rc = e->wm->open(&wo, &e->ws)))
		goto fail;
	if ((rc = e->wm->migrate(e->ws, e->dom->name, e->dom->migrations)))
		goto fail;
	int64_t head;
	if ((rc = e->wm->head(e->ws, &head)))
		goto fail;
	if ((rc = cl_logpub_open(e, head)))
		goto fail;
	if ((rc = cl_sync_open(e)))
		goto fail;
	if (!cfg->read_only && !cfg->query_node) {
		if ((rc = cl_writer_start(e)))
			goto fail_stop;
	}
	if (!cfg->read_only && !cfg->no_projections) {
		if ((rc = cl_sync_start(e)))
			goto fail_stop;
	}
	if (cfg->query_node && (rc = cl_follow_start(e)))
		goto fail_stop;
	if ((rc = cl_beat_start(e)))
		goto fail_stop;
	if ((rc = cl_watch_start(e)))
		goto fail_stop;
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, head,
	       "engine open: domain %s, data %s, log head %lld", e->dom->name,
	       e->data_dir, (long long)head);
	*out = e;
	return 0;
fail_stop : {
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", cleave_errmsg());
	cl_beat_stop(e);
	cl_follow_stop(e);
	cl_writer_stop(e);
	cl_sync_stop(e);
	cl_watch_stop(e);
	cl_err(rc, "%s", msg);
}
fail:
	engine_free(e);
	return rc;
}

void cleave_engine_close(cleave_engine *e)
{
	if (!e)
		return;
	cl_beat_stop(e);
	cl_follow_stop(e);
	cl_writer_stop(e);
	cl_sync_stop(e);
	cl_watch_stop(e);
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, cl_log_head(e),
	       "engine closed");
	engine_free(e);
}

const cleave_domain *cleave_engine_domain(const cleave_engine *e)
{
	return e->dom;
}

static bool needs_upcast(cleave_engine *e, const char *type, int version)
{
	for (const cleave_upcaster *u = e->dom->upcasters; u && u->type; u++)
		if (u->from_version == version && !strcmp(u->type, type))
			return true;
	return false;
}

int cl_event_from_stored(cleave_engine *e, const cl_stored_event *s,
			 cleave_event *ev, cl_arena *a, bool *in_arena)
{
	if (in_arena)
		*in_arena = false;
	ev->position = s->position;
	ev->stream = s->stream;
	ev->version = s->version;
	ev->type = s->type;
	ev->schema_version = s->schema_version;
	ev->data = s->data;
	ev->data_len = s->data_len;
	ev->ts_us = s->ts_us;
	ev->trace_id = s->trace_id;
	ev->command_id = s->command_id;
	ev->idempotency_key = s->idem_key;
	ev->causation_id = s->causation_id;
	if (a && !needs_upcast(e, s->type, s->schema_version)) {
		cJSON *t = cl_json_parse_arena(s->data, s->data_len, a);
		if (t) {
			ev->json = t;
			*in_arena = true;
			return 0;
		}
		/* not understood: cJSON decides */
	}
	cJSON *j = cJSON_ParseWithLength(s->data, s->data_len);
	if (!j)
		return cl_err(CLEAVE_ECORRUPT,
			      "event %lld: data is not JSON",
			      (long long)s->position);
	/* Upcast step by step to the type's current schema version. */
	int v = s->schema_version;
	for (;;) {
		const cleave_upcaster *u = e->dom->upcasters;
		while (u && u->type &&
		       (u->from_version != v || strcmp(u->type, s->type)))
			u++;
		if (!u || !u->type)
			break;
		int rc = u->upcast(j);
		if (rc) {
			cJSON_Delete(j);
			return cl_err(rc < 0 ? rc : CLEAVE_EINTERNAL,
				      "event %lld: upcasting %s v%d failed",
				      (long long)s->position, s->type, v);
		}
		v++;
	}
	ev->json = j;
	return 0;
}

/* ---- the log ---------------------------------------------------------------- */

int64_t cleave_log_head(cleave_engine *e)
{
	return cl_log_head(e);
}

typedef struct read_ctx {
	cleave_engine *e;
	cleave_event_fn fn;
	void *arg;
	int rc;
} read_ctx;

static int read_one(void *arg, const cl_stored_event *s)
{
	read_ctx *x = arg;
	cleave_event ev;
	int rc = cl_event_from_stored(x->e, s, &ev, NULL, NULL);
	if (rc)
		return rc;
	rc = x->fn(x->arg, &ev);
	cJSON_Delete((cJSON *)ev.json);
	return rc;
}

int cleave_log_read(cleave_engine *e, int64_t after, const char *stream,
		    size_t limit, cleave_event_fn fn, void *arg)
{
	cl_wreader *r = cl_reader_get(e);
	if (!r)
		return cl_err(CLEAVE_EIO, "cannot open a log reader: %s",
			      cleave_errmsg());
	read_ctx x = {e, fn, arg, 0};
	int rc = e->wm->read(r, after, stream, limit, read_one, &x);
	cl_reader_put(e, r);
	return rc;
}

int cleave_log_trace(cleave_engine *e, const char *id, cleave_event_fn fn,
		     void *arg)
{
	if (!cl_name_ok(id, CLEAVE_TRACE_ID_MAX, "id"))
		return cl_err(CLEAVE_EINVAL, "bad trace or command id");
	cl_wreader *r = cl_reader_get(e);
	if (!r)
		return cl_err(CLEAVE_EIO, "cannot open a log reader: %s",
			      cleave_errmsg());
	read_ctx x = {e, fn, arg, 0};
	int rc = e->wm->trace(r, id, read_one, &x);
	cl_reader_put(e, r);
	return rc;
}
