/*
 * command.c — the command pipeline: a bounded queue, one writer thread,
 * group commit.
 *
 * Callers check a request on their own thread (JSON, declared fields) and
 * queue it.  The writer takes every queued command (up to batch_max), opens
 * one transaction, runs each command in its own savepoint (a failing one
 * rolls back alone), appends the events of the successful ones in the same
 * transaction, commits once — one fsync for the whole batch — and only then
 * completes the callers.  Positions are assigned here, by the one writer,
 * in commit order; a rolled-back savepoint gives its positions back, so
 * the committed log has no gaps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "write/writer_int.h"

/* ---- outcome bodies ---------------------------------------------------- */

int cl_writer_new(cleave_engine *e)
{
	cl_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	w->cstats = calloc((size_t)(e->ncmd ? e->ncmd : 1), sizeof(*w->cstats));
	if (!w->cstats) {
		free(w);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&w->qmu, NULL);
	pthread_cond_init(&w->qcond, NULL);
	pthread_cond_init(&w->maintcond, NULL);
	pthread_mutex_init(&w->cmu, NULL);
	pthread_cond_init(&w->ccond, NULL);
	e->writer = w;
	return 0;
}

void cl_writer_free(cleave_engine *e)
{
	cl_writer *w = e->writer;
	if (!w)
		return;
	pthread_mutex_destroy(&w->qmu);
	pthread_cond_destroy(&w->qcond);
	pthread_cond_destroy(&w->maintcond);
	pthread_mutex_destroy(&w->cmu);
	pthread_cond_destroy(&w->ccond);
	free(w->cstats);
	free(w);
	e->writer = NULL;
}

static void set_failure(cleave_cmd *c, int rc, const char *code,
                        const char *msg)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_add_error(&b, code ? code : cleave_errname(rc), msg);
	free(c->body);
	c->out.rc = rc;
	c->out.position = 0;
	c->out.replayed = false;
	c->body = cleave_buf_steal(&b, &c->out.body_len);
}

static int build_success(cleave_cmd *c, int64_t position)
{
	cl_wbatch *wb = c->wb;
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "{\"position\":");
	cleave_buf_add_i64(&b, position);
	cleave_buf_adds(&b, ",\"events\":[");
	for (int i = c->ev_start; i < wb->n; i++) {
		const cleave_event *ev = &wb->ev[i];
		if (i > c->ev_start)
			cleave_buf_addc(&b, ',');
		cleave_buf_adds(&b, "{\"type\":");
		cleave_buf_add_jstr(&b, ev->type, strlen(ev->type));
		cleave_buf_adds(&b, ",\"stream\":");
		cleave_buf_add_jstr(&b, ev->stream, strlen(ev->stream));
		cleave_buf_adds(&b, ",\"version\":");
		cleave_buf_add_i64(&b, ev->version);
		cleave_buf_adds(&b, ",\"position\":");
		cleave_buf_add_i64(&b, ev->position);
		cleave_buf_addc(&b, '}');
	}
	cleave_buf_adds(&b, "],\"result\":");
	if (c->result) {
		cl_json_write(&b, c->result);
	} else {
		cleave_buf_adds(&b, "{}");
	}
	cleave_buf_adds(&b, ",\"trace_id\":");
	cleave_buf_add_jstr(&b, c->trace_id, strlen(c->trace_id));
	cleave_buf_adds(&b, ",\"command_id\":");
	cleave_buf_add_jstr(&b, c->command_id, strlen(c->command_id));
	cleave_buf_addc(&b, '}');
	free(c->body);
	c->body = cleave_buf_steal(&b, &c->out.body_len);
	if (!c->body)
		return cl_err(CLEAVE_ENOMEM, "out of memory building answer");
	c->out.rc = 0;
	c->out.position = position;
	return 0;
}

/* ---- the writer --------------------------------------------------------- */

static void wb_truncate(cl_wbatch *wb, int n)
{
	while (wb->n > n) {
		wb->n--;
		cJSON_Delete((cJSON *)wb->ev[wb->n].json);
	}
}

/* Failures that are the domain's answer, not the store's trouble. */
static bool decided(int rc)
{
	return rc == CLEAVE_EREJECTED || rc == CLEAVE_ENOTFOUND ||
	       rc == CLEAVE_EEXIST || rc == CLEAVE_ECONFLICT ||
	       rc == CLEAVE_EINVAL || rc == CLEAVE_EBADJSON;
}

/* Runs one command of the batch.  With savepoints (`sp`) a failure rolls
 * the command back alone.  Without (the fast path, for stores whose failed
 * statements undo themselves), a command that fails before changing
 * anything needs no undo — the common case, since handlers check their
 * rules before they write — and one that fails after a change returns
 * false: the caller rolls the whole batch back and runs it again with
 * savepoints. */
static bool run_one(cleave_engine *e, cl_wbatch *wb, cleave_cmd *c, bool sp)
{
	const cl_wstore_methods *m = e->wm;
	int rc;
	if (!c->ts_us)
		c->ts_us = cl_now_us(); /* a rerun keeps the first time */
	c->emitted = c->dirty = false;
	if (c->idem_key) {
		cl_idem_rec rec;
		rc = m->idem_get(e->ws, c->idem_key, &rec);
		if (rc == 0) {
			if (strcmp(rec.request_hash, c->req_hash)) {
				set_failure(c, CLEAVE_ECONFLICT,
				            "idempotency_key_reused",
				            "Idempotency-Key was used before "
				            "with a different command or body");
				return true;
			}
			free(c->body);
			c->body = cl_strndup(rec.response, rec.response_len);
			c->out.body_len = rec.response_len;
			c->out.rc = rec.rc;
			c->out.position = rec.position;
			c->out.replayed = true;
			if (!c->body)
				set_failure(c, CLEAVE_ENOMEM, NULL,
				            "out of memory");
			return true;
		}
		if (rc != CLEAVE_ENOTFOUND) {
			set_failure(c, rc, NULL, cleave_errmsg());
			return true;
		}
	}
	if (sp && (rc = m->savepoint(e->ws))) {
		set_failure(c, rc, NULL, cleave_errmsg());
		return true;
	}
	int64_t pos0 = wb->next_pos;
	size_t vmark = cl_vcache_mark(e->writer->vcache);
	c->wb = wb;
	c->ev_start = wb->n;
	c->fail_rc = 0;
	cl_err_clear();
	rc = c->def->handle(c, c->input);
	if (c->fail_rc)
		rc = c->fail_rc;
	if (rc == 0)
		rc = build_success(c, wb->next_pos - 1);
	if (rc == 0 && c->idem_key) {
		cl_idem_rec rec = {c->out.position, 0, c->req_hash, c->body,
		                   c->out.body_len};
		rc = m->idem_put(e->ws, c->idem_key, &rec);
	}
	if (rc == 0 && sp)
		rc = m->release(e->ws);
	if (rc == 0)
		return true;
	if (!sp && c->dirty)
		return false; /* the batch runs again, with savepoints */
	/* roll this command back alone */
	if (!c->fail_rc) {
		c->fail_rc = rc;
		snprintf(c->fail_msg, sizeof(c->fail_msg), "%s",
		         *cleave_errmsg() ? cleave_errmsg()
		                          : cleave_strerror(rc));
		snprintf(c->fail_code, sizeof(c->fail_code), "%s",
		         cleave_errname(rc));
	}
	if (sp)
		m->rollback_to(e->ws);
	cl_vcache_undo(e->writer->vcache, vmark);
	wb_truncate(wb, c->ev_start);
	wb->next_pos = pos0;
	set_failure(c, c->fail_rc, c->fail_code, c->fail_msg);
	/* The domain's decision is the command's result too: a retry with
	 * the same key gets it again (same key → the first result: see
	 * Idempotency-Key in docs/http-api.md), even if the world changed
	 * meanwhile.  The key's record is the only
	 * row written; the domain's tables and the log are untouched.  A
	 * store failure is not a decision: nothing is recorded and a retry
	 * runs the command. */
	if (c->idem_key && decided(c->fail_rc)) {
		cl_idem_rec rec = {0, c->fail_rc, c->req_hash, c->body,
		                   c->out.body_len};
		if (m->idem_put(e->ws, c->idem_key, &rec))
			cl_log(e, CLEAVE_LOG_WARN, c->trace_id, c->command_id,
			       -1, "could not record the answer of key %s: %s",
			       c->idem_key, cleave_errmsg());
	}
	return true;
}

static void count_outcome(cleave_engine *e, cleave_cmd *c)
{
	cl_cmd_stats *s = &e->writer->cstats[c->def_index];
	if (c->out.replayed)
		s->replayed++;
	else
		switch (c->out.rc) {
		case 0:
			s->ok++;
			break;
		case CLEAVE_EREJECTED:
			s->rejected++;
			break;
		case CLEAVE_EINVAL:
		case CLEAVE_EBADJSON:
			s->invalid++;
			break;
		case CLEAVE_ENOTFOUND:
			s->not_found++;
			break;
		case CLEAVE_ECONFLICT:
		case CLEAVE_EEXIST:
			s->conflict++;
			break;
		default:
			s->failed++;
		}
	cleave_hist_add(&s->latency, cleave_hist_bounds_us,
	                (uint64_t)c->out.latency_us);
}

static void cmd_free(cleave_cmd *c)
{
	cJSON_Delete(c->input);
	cJSON_Delete(c->result);
	free(c->idem_key);
	free(c->trace_id);
	free(c->causation_id);
	free(c->body);
	free(c);
}

static void complete(cleave_engine *e, cleave_cmd *c)
{
	c->out.body = c->body ? c->body : "";
	c->out.trace_id = c->trace_id;
	c->out.command_id = c->command_id;
	c->out.latency_us = cl_mono_us() - c->submit_us;
	count_outcome(e, c);
	if (c->out.rc && c->out.rc != CLEAVE_EREJECTED &&
	    c->out.rc != CLEAVE_ENOTFOUND && c->out.rc != CLEAVE_EEXIST &&
	    c->out.rc != CLEAVE_ECONFLICT && c->out.rc != CLEAVE_EINVAL)
		cl_log(e, CLEAVE_LOG_ERROR, c->trace_id, c->command_id, -1,
		       "command %s failed: %s", c->def->name, c->body);
	c->done(c->arg, &c->out);
	cmd_free(c);
}

/* The callers hear from the completer while the writer goes on with the
 * next batch. */
static void to_completer(cleave_engine *e, cleave_cmd *list)
{
	cl_writer *w = e->writer;
	cleave_cmd *last = list;
	while (last->next)
		last = last->next;
	pthread_mutex_lock(&w->cmu);
	if (w->ctail)
		w->ctail->next = list;
	else
		w->chead = list;
	w->ctail = last;
	pthread_cond_signal(&w->ccond);
	pthread_mutex_unlock(&w->cmu);
}

/* The group's events, in the store at once (wstore append_many). */
static int append_group(cleave_engine *e, const cl_wbatch *wb)
{
	cl_stored_event *se = malloc((size_t)wb->n * sizeof(*se));
	if (!se)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	for (int i = 0; i < wb->n; i++) {
		const cleave_event *ev = &wb->ev[i];
		se[i] = (cl_stored_event){
		    .position = ev->position,
		    .version = ev->version,
		    .ts_us = ev->ts_us,
		    .schema_version = ev->schema_version,
		    .stream = ev->stream,
		    .type = ev->type,
		    .data = ev->data,
		    .data_len = ev->data_len,
		    .trace_id = ev->trace_id,
		    .command_id = ev->command_id,
		    .idem_key = ev->idempotency_key,
		    .causation_id = ev->causation_id,
		};
	}
	int rc = e->wm->append_many(e->ws, se, wb->n);
	free(se);
	return rc;
}

static void run_batch(cleave_engine *e, cleave_cmd *list, int n)
{
	cl_writer *w = e->writer;
	if (w->write_failed) {
		/* queued before the failure: refused, never run */
		char msg[512];
		snprintf(msg, sizeof(msg),
		         "commits are stopped since the write store failed to "
		         "make one durable (%s); restart the server",
		         w->write_failed_msg);
		for (cleave_cmd *c = list; c; c = c->next)
			set_failure(c, CLEAVE_EFAILED, NULL, msg);
		goto complete;
	}
	const cl_wstore_methods *m = e->wm;
	cl_wbatch wb = {0};
	wb.next_pos = cl_log_head(e) + 1;
	bool sp = !(m->flags & CL_WSTORE_STMT_ATOMIC);
	bool in_commit = false, indexed = !m->index_maybe;
	int rc;
again:
	rc = m->begin(e->ws);
	if (rc == 0 && m->index_maybe) {
		/* the store's lazy stream index, in this transaction; after
		 * it the stream-version cache may be emptied */
		int f = m->index_maybe(e->ws, cl_log_head(e),
		                       cl_vcache_full(w->vcache));
		if (f < 0)
			cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, -1,
			       "indexing the log's streams: %s",
			       cleave_errmsg());
		indexed = f == 1;
	}
	if (rc == 0) {
		for (cleave_cmd *c = list; c; c = c->next) {
			if (run_one(e, &wb, c, sp))
				continue;
			/* a command failed after changing something: undo the
			 * whole batch and run it again, each command in its own
			 * savepoint this time */
			m->rollback(e->ws);
			cl_vcache_undo(w->vcache, 0);
			wb_truncate(&wb, 0);
			wb.next_pos = cl_log_head(e) + 1;
			sp = true;
			goto again;
		}
		if (m->append_many && wb.n)
			rc = append_group(e, &wb);
		if (rc == 0) {
			rc = m->commit(e->ws);
			in_commit = rc != 0;
		}
	}
	if (rc) {
		char msg[512];
		const char *code = NULL;
		snprintf(msg, sizeof(msg), "commit failed: %s",
		         cleave_errmsg());
		m->rollback(e->ws);
		cl_vcache_undo(w->vcache, 0); /* back to what is committed */
		if (in_commit && rc != CLEAVE_ENOSPC && rc != CLEAVE_EBUSY &&
		    rc != CLEAVE_ENOMEM) {
			/* A failed sync leaves the group's pages in a state
			 * nobody can know (the kernel may have dropped them
			 * or kept them): the store's recovery at the next
			 * open decides.  Fail-stop until then. */
			code = "commit_unknown";
			pthread_mutex_lock(&w->qmu);
			w->write_failed = true;
			snprintf(w->write_failed_msg,
			         sizeof(w->write_failed_msg), "%.200s",
			         msg + strlen("commit failed: "));
			pthread_mutex_unlock(&w->qmu);
			snprintf(msg, sizeof(msg),
			         "the write store failed to make this commit "
			         "durable (%s); its outcome is unknown: retry "
			         "with the same Idempotency-Key once the "
			         "server has restarted",
			         w->write_failed_msg);
			cl_log(
			    e, CLEAVE_LOG_ERROR, NULL, NULL, -1,
			    "write store failed: commits stopped until a "
			    "restart (group of %d commands, outcome unknown)",
			    n);
		}
		cl_log(e, CLEAVE_LOG_ERROR, NULL, NULL, -1, "group of %d %s", n,
		       msg);
		for (cleave_cmd *c = list; c; c = c->next)
			set_failure(c, rc, code, msg);
		wb_truncate(&wb, 0);
		free(wb.ev);
		cl_arena_free(&wb.arena);
	} else {
		cl_vcache_commit(w->vcache, indexed, wb.ev, wb.n);
		w->batches++;
		if (e->cfg.durability == CLEAVE_DURABILITY_FSYNC && wb.n)
			w->fsyncs++;
		w->events_appended += (uint64_t)wb.n;
		cleave_hist_add(&w->batch_size, cleave_hist_bounds_batch,
		                (uint64_t)n);
		if (wb.n) {
			cl_evbatch *b = calloc(1, sizeof(*b));
			if (!b) {
				/* the ring is an accelerator: runners read
				 * the store instead */
				wb_truncate(&wb, 0);
				free(wb.ev);
				cl_arena_free(&wb.arena);
			} else {
				atomic_init(&b->refs, 1);
				b->first = wb.ev[0].position;
				b->last = wb.ev[wb.n - 1].position;
				b->n = wb.n;
				b->ev = wb.ev;
				b->arena = wb.arena;
				b->commit_us = cl_now_us();
				/* what it holds: the event array, the arena
				 * (strings, text), the parsed trees (~3x
				 * their text, plus node overhead) */
				b->bytes = sizeof(*b) +
				           (size_t)wb.cap * sizeof(*wb.ev) +
				           wb.arena.total;
				for (int i = 0; i < wb.n; i++)
					b->bytes += wb.ev[i].data_len * 3 + 128;
			}
			cl_log_publish(e, b, wb.next_pos - 1);
		} else {
			/* commands that emitted and were rolled back left
			 * their memory behind */
			free(wb.ev);
			cl_arena_free(&wb.arena);
		}
	}
	w->commands_total += (uint64_t)n;
complete:
	to_completer(e, list);
}

static void *completer_main(void *arg)
{
	cleave_engine *e = arg;
	cl_writer *w = e->writer;
	cl_thread_name("cl-complete");
	pthread_mutex_lock(&w->cmu);
	for (;;) {
		while (!w->chead && !w->completer_stop)
			pthread_cond_wait(&w->ccond, &w->cmu);
		cleave_cmd *list = w->chead;
		if (!list)
			break;
		w->chead = w->ctail = NULL;
		pthread_mutex_unlock(&w->cmu);
		for (cleave_cmd *c = list, *next; c; c = next) {
			next = c->next;
			complete(e, c);
		}
		pthread_mutex_lock(&w->cmu);
	}
	pthread_mutex_unlock(&w->cmu);
	return NULL;
}

static void *writer_main(void *arg)
{
	cleave_engine *e = arg;
	cl_writer *w = e->writer;
	cl_thread_name("cl-writer");
	int max = e->cfg.batch_max;
	for (;;) {
		pthread_mutex_lock(&w->qmu);
		while (!w->qhead && !w->stopping)
			pthread_cond_wait(&w->qcond, &w->qmu);
		if (!w->qhead) {
			pthread_mutex_unlock(&w->qmu);
			break;
		}
		cleave_cmd *list = w->qhead, *last = list;
		int n = 1;
		while (last->next && n < max) {
			last = last->next;
			n++;
		}
		w->qhead = last->next;
		if (!w->qhead)
			w->qtail = NULL;
		last->next = NULL;
		w->qlen -= n;
		pthread_mutex_unlock(&w->qmu);
		run_batch(e, list, n);
	}
	return NULL;
}

static void *maint_main(void *arg)
{
	cleave_engine *e = arg;
	cl_writer *w = e->writer;
	cl_thread_name("cl-maint");
	pthread_mutex_lock(&w->qmu);
	while (!w->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->maintcond, &w->qmu, &ts);
		if (w->stopping)
			break;
		pthread_mutex_unlock(&w->qmu);
		if (e->wm->maintain(e->ws))
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
			       "write store upkeep: %s", cleave_errmsg());
		cl_readers_trim(e, CL_READER_IDLE_US);
		pthread_mutex_lock(&w->qmu);
	}
	pthread_mutex_unlock(&w->qmu);
	return NULL;
}

int cl_writer_start(cleave_engine *e)
{
	cl_writer *w = e->writer;
	/* Emptied after an index flush once it holds more than this: every
	 * new cart, order or account is a stream, so a cache kept up to a
	 * million streams grew with the log (~100 bytes a stream; the soak
	 * test's anonymous RSS climbed 40 %).  Hot streams are read back from
	 * the stream index once after each emptying. */
	w->vcache = cl_vcache_new(1u << 16);
	if (!w->vcache)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	w->accepting = true;
	if (pthread_create(&w->completer, NULL, completer_main, e))
		return cl_err(CLEAVE_EINTERNAL,
		              "cannot start completer thread");
	w->completer_running = true;
	if (pthread_create(&w->thread, NULL, writer_main, e))
		return cl_err(CLEAVE_EINTERNAL, "cannot start writer thread");
	w->writer_running = true;
	if (pthread_create(&w->maint, NULL, maint_main, e))
		return cl_err(CLEAVE_EINTERNAL, "cannot start upkeep thread");
	w->maint_running = true;
	return 0;
}

void cleave_engine_stop_accepting(cleave_engine *e)
{
	cl_writer *w = e->writer;
	if (!e)
		return;
	pthread_mutex_lock(&w->qmu);
	w->accepting = false;
	pthread_mutex_unlock(&w->qmu);
}

void cl_writer_stop(cleave_engine *e)
{
	cl_writer *w = e->writer;
	if (!e->writer)
		return;
	pthread_mutex_lock(&w->qmu);
	w->accepting = false;
	w->stopping = true;
	pthread_cond_broadcast(&w->qcond);
	pthread_cond_broadcast(&w->maintcond);
	pthread_mutex_unlock(&w->qmu);
	if (w->writer_running)
		pthread_join(w->thread, NULL);
	if (w->maint_running)
		pthread_join(w->maint, NULL);
	w->writer_running = w->maint_running = false;
	if (w->completer_running) {
		pthread_mutex_lock(&w->cmu);
		w->completer_stop = true;
		pthread_cond_signal(&w->ccond);
		pthread_mutex_unlock(&w->cmu);
		pthread_join(w->completer, NULL);
		w->completer_running = false;
	}
	cl_vcache_free(w->vcache);
	w->vcache = NULL;
}

/* ---- submitting --------------------------------------------------------- */

static bool header_token_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

int cleave_command_submit(cleave_engine *e, const cleave_request *req,
                          cleave_done_fn done, void *arg)
{
	cl_writer *w = e->writer;
	int rc;
	int idx = req->command ? cl_nametab_get(&e->cmd_idx, req->command) : -1;
	if (idx < 0)
		return cl_err(CLEAVE_ENOTFOUND, "unknown command '%s'",
		              req->command ? req->command : "");
	const cleave_command_def *def = &e->dom->commands[idx];
	if (e->cfg.query_node || e->cfg.read_only)
		return cl_err(CLEAVE_EREADONLY,
		              e->cfg.query_node
		                  ? "this is a query node: it serves queries; "
		                    "send commands to the writer"
		                  : "the engine is open read-only");
	if (req->idempotency_key &&
	    !header_token_ok(req->idempotency_key, CLEAVE_IDEMPOTENCY_KEY_MAX))
		return cl_err(CLEAVE_EINVAL,
		              "Idempotency-Key must be 1 to %d visible ASCII "
		              "characters",
		              CLEAVE_IDEMPOTENCY_KEY_MAX);
	if (req->trace_id &&
	    !cl_name_ok(req->trace_id, CLEAVE_TRACE_ID_MAX, "id"))
		return cl_err(CLEAVE_EINVAL,
		              "trace id must be 1 to %d characters of "
		              "[A-Za-z0-9_.:-]",
		              CLEAVE_TRACE_ID_MAX);
	if (req->causation_id &&
	    !cl_name_ok(req->causation_id, CLEAVE_TRACE_ID_MAX, "id"))
		return cl_err(CLEAVE_EINVAL, "bad causation id");
	cJSON *in = NULL;
	size_t blen = req->body ? req->body_len : 0;
	const char *body = blen ? req->body : "{}";
	if (!blen)
		blen = 2;
	if ((rc = cl_json_parse(body, blen, CLEAVE_JSON_MAX_DEPTH, &in)))
		return rc;
	if (def->fields)
		rc = cl_fields_check(def->fields, in);
	else if (!cJSON_IsObject(in))
		rc = cl_err(CLEAVE_EINVAL, "body must be a JSON object");
	if (rc) {
		cJSON_Delete(in);
		return rc;
	}
	cleave_cmd *c = calloc(1, sizeof(*c));
	if (!c) {
		cJSON_Delete(in);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	c->e = e;
	c->def_index = idx;
	c->def = def;
	c->input = in;
	c->done = done;
	c->arg = arg;
	c->expected_version = req->expected_version;
	c->submit_us = cl_mono_us();
	cl_random_hex(c->command_id, 16);
	c->idem_key = cl_strdup(req->idempotency_key);
	c->causation_id = cl_strdup(req->causation_id);
	if (req->trace_id) {
		c->trace_id = cl_strdup(req->trace_id);
	} else {
		c->trace_id = malloc(33);
		if (c->trace_id)
			cl_random_hex(c->trace_id, 16);
	}
	if (!c->trace_id || (req->idempotency_key && !c->idem_key) ||
	    (req->causation_id && !c->causation_id)) {
		cmd_free(c);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	/* what the idempotency key stands for: this command with this body */
	uint64_t h =
	    cl_hash(def->name, strlen(def->name)) ^ cl_hash(body, blen) * 31;
	snprintf(c->req_hash, sizeof(c->req_hash), "%016llx",
	         (unsigned long long)h);

	pthread_mutex_lock(&w->qmu);
	if (w->write_failed) {
		int frc = cl_err(CLEAVE_EFAILED,
		                 "commits are stopped since the write store "
		                 "failed to make one durable (%s); restart the "
		                 "server",
		                 w->write_failed_msg);
		pthread_mutex_unlock(&w->qmu);
		cmd_free(c);
		return frc;
	}
	if (!w->accepting) {
		pthread_mutex_unlock(&w->qmu);
		cmd_free(c);
		return cl_err(CLEAVE_ESHUTDOWN, "shutting down: not accepting "
		                                "commands");
	}
	if (w->qlen >= e->cfg.queue_max) {
		pthread_mutex_unlock(&w->qmu);
		cmd_free(c);
		return cl_err(CLEAVE_EBUSY,
		              "command queue full (queue_max=%d); retry later",
		              e->cfg.queue_max);
	}
	if (w->qtail)
		w->qtail->next = c;
	else
		w->qhead = c;
	w->qtail = c;
	if (w->qlen++ == 0)
		pthread_cond_signal(&w->qcond);
	pthread_mutex_unlock(&w->qmu);
	return 0;
}

/* ---- running synchronously -------------------------------------------- */

typedef struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool done;
	cleave_outcome *out;
} sync_wait;

static void sync_done(void *arg, const cleave_outcome *o)
{
	sync_wait *w = arg;
	size_t tl = strlen(o->trace_id), cl = strlen(o->command_id);
	cleave_outcome *c = malloc(sizeof(*c) + o->body_len + tl + cl + 3);
	if (c) {
		*c = *o;
		char *p = (char *)(c + 1);
		memcpy(p, o->body, o->body_len + 1);
		c->body = p;
		p += o->body_len + 1;
		memcpy(p, o->trace_id, tl + 1);
		c->trace_id = p;
		p += tl + 1;
		memcpy(p, o->command_id, cl + 1);
		c->command_id = p;
	}
	pthread_mutex_lock(&w->mu);
	w->out = c;
	w->done = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

int cleave_command_run(cleave_engine *e, const cleave_request *req,
                       cleave_outcome **out)
{
	sync_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
	               false, NULL};
	*out = NULL;
	int rc = cleave_command_submit(e, req, sync_done, &w);
	if (rc)
		return rc;
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mu);
	if (!w.out)
		return cl_err(CLEAVE_ENOMEM, "out of memory copying outcome");
	*out = w.out;
	return 0;
}

void cleave_outcome_free(cleave_outcome *o)
{
	free(o);
}

/* ---- health and stats ---------------------------------------------------- */

int cleave_engine_health(cleave_engine *e, char *reason, size_t cap)
{
	cl_writer *w = e->writer;
	int rc = 0;
	pthread_mutex_lock(&w->qmu);
	if (w->write_failed) {
		rc = CLEAVE_EFAILED;
		if (reason && cap)
			snprintf(reason, cap, "%s", w->write_failed_msg);
	} else if (reason && cap) {
		reason[0] = 0;
	}
	pthread_mutex_unlock(&w->qmu);
	return rc;
}

void cleave_stats_get(cleave_engine *e, cleave_stats *out)
{
	cl_writer *w = e->writer;
	memset(out, 0, sizeof(*out));
	out->batches = w->batches;
	out->fsyncs = w->fsyncs;
	out->events_appended = w->events_appended;
	out->commands_total = w->commands_total;
	pthread_mutex_lock(&w->qmu);
	out->queue_depth = (uint64_t)w->qlen;
	out->write_failed = w->write_failed;
	pthread_mutex_unlock(&w->qmu);
	out->queue_max = (uint64_t)e->cfg.queue_max;
	out->head = cl_log_head(e);
	out->batch_size = w->batch_size;
}

int cleave_command_stats_get(cleave_engine *e, int i, cleave_command_stats *out)
{
	if (i < 0 || i >= e->ncmd)
		return CLEAVE_ENOTFOUND;
	cl_cmd_stats *s = &e->writer->cstats[i];
	out->name = e->dom->commands[i].name;
	out->ok = s->ok;
	out->rejected = s->rejected;
	out->invalid = s->invalid;
	out->not_found = s->not_found;
	out->conflict = s->conflict;
	out->failed = s->failed;
	out->replayed = s->replayed;
	cleave_hist_copy(&out->latency_us, &s->latency);
	return 0;
}
