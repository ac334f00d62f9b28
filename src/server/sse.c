/*
 * sse.c — server-sent event streams: live queries (GET /queries/<name>
 * with Accept: text/event-stream) and the dashboard's figures
 * (GET /ui/stream; computed in sse_stats.c).  State shared by the two
 * files: sse_int.h.
 *
 * A stream is a cl_sse: a connection whose answer is read, a piece at a
 * time, by MHD from sse_read().  With nothing to send, sse_read()
 * suspends the connection (no thread waits and nothing polls); a push
 * resumes it.  Each stream holds at most two messages: the one being
 * written and the next one.  A newer answer replaces the next one
 * (coalescing: A→B→A may send nothing, the latest always arrives), so a
 * slow reader costs two messages, and one that stops reading is closed
 * by MHD's idle timeout (--idle-timeout), which keep-alive comments
 * reset for readers that do read.
 *
 * Live queries.  Each query stream has an engine subscription
 * (cleave_live_*): the engine calls live_wake() when a commit wrote a key
 * the query's last run read; the stream is queued, and a live worker
 * thread (--live-threads) runs the query again and pushes the answer if
 * it differs from the last one sent (compared without "position").
 * Streams that must first reach a position (min_position, Last-Event-ID)
 * wait on an engine watch, as plain queries do.
 *
 * Threads: MHD's run sse_read(), the handlers and sse_free(); the live
 * workers run queries; the timer thread (once a second) writes keep-alive
 * comments, retries answers that were 5xx, samples the figures and sends
 * them to dashboard streams; engine threads call live_wake() and
 * watch_done(), which only queue the stream.
 *
 * Lifetimes: a stream is reference-counted.  MHD's response owns one
 * reference until sse_free(); each queue entry and each pending watch own
 * one.  x->runmu guards x->live: sse_free() closes the subscription under
 * it, so a worker never runs a closed one and the engine never wakes a
 * freed stream (cleave_live_close returns only when no wake is under way).
 * Lock order: hub->mu, then x->mu; libmicrohttpd is called (resumed)
 * with no lock of ours held: the timer and the shutdown sweep take
 * references to the streams under hub->mu and write to them after.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "http.h"
#include "log.h"

#include "sse_int.h"

/* ---- streams ------------------------------------------------------------- */

void cl_sse_ref(cl_sse *x)
{
	atomic_fetch_add(&x->refs, 1);
}

void cl_sse_unref(cl_sse *x)
{
	if (atomic_fetch_sub(&x->refs, 1) != 1)
		return;
	free(x->out);
	free(x->pend);
	free(x->last);
	pthread_mutex_destroy(&x->mu);
	pthread_mutex_destroy(&x->runmu);
	free(x);
}

/* Hands msg (owned) to the stream: written next, or next after the one
 * being written (replacing one waiting there).  t0: the wake it answers
 * (0: none, for the push-latency figure). */
static void push(cl_sse *x, char *msg, size_t len, int64_t t0,
                 bool idle_only);

void cl_sse_push(cl_sse *x, char *msg, size_t len, int64_t t0)
{
	push(x, msg, len, t0, false);
}

/* A keep-alive comment, only if x still has nothing to write: decided
 * under the same hold of x->mu as the push, or it could take the place
 * of an answer pushed meanwhile. */
static void push_keepalive(cl_sse *x)
{
	char *k = strdup(": keep-alive\n\n");
	if (k)
		push(x, k, strlen(k), 0, true);
}

static void push(cl_sse *x, char *msg, size_t len, int64_t t0, bool idle_only)
{
	cl_sse_hub *h = x->s->sse;
	bool resume = false;
	int64_t now = cl_mono_now_us();
	pthread_mutex_lock(&x->mu);
	if (x->closing ||
	    (idle_only && (x->pend || x->out_off < x->out_len))) {
		pthread_mutex_unlock(&x->mu);
		free(msg);
		return;
	}
	if (idle_only)
		atomic_fetch_add_explicit(&h->keepalives, 1,
		                          memory_order_relaxed);
	/* into `out` only when nothing waits in `pend`: an older message
	 * there must not be written after this one (ids never go back) */
	if (x->out_off == x->out_len && !x->pend) {
		free(x->out);
		x->out = msg;
		x->out_len = len;
		x->out_off = 0;
		x->out_t0_us = t0;
	} else {
		if (x->pend) {
			free(x->pend);
			atomic_fetch_add_explicit(&h->coalesced, 1,
			                          memory_order_relaxed);
		}
		x->pend = msg;
		x->pend_len = len;
		x->pend_t0_us = t0;
		if (x->out_len - x->out_off + len > SSE_BUF_MAX) {
			x->closing = x->dropped = true;
			atomic_fetch_add(&h->dropped, 1);
		}
	}
	x->last_out_us = now;
	if (x->suspended) {
		x->suspended = false;
		resume = true;
	}
	pthread_mutex_unlock(&x->mu);
	if (resume)
		MHD_resume_connection(x->conn);
}

/* Ends the stream (shutdown, or a reader dropped). */
void cl_sse_end(cl_sse *x, bool dropped)
{
	bool resume = false;
	pthread_mutex_lock(&x->mu);
	if (!x->closing) {
		x->closing = true;
		x->dropped = dropped;
	}
	if (x->suspended) {
		x->suspended = false;
		resume = true;
	}
	pthread_mutex_unlock(&x->mu);
	if (resume)
		MHD_resume_connection(x->conn);
}

/* MHD's thread: the next bytes of the stream. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	cl_sse *x = cls;
	cl_sse_hub *h = x->s->sse;
	(void)pos;
	pthread_mutex_lock(&x->mu);
	if (x->out_off == x->out_len && x->pend) {
		free(x->out);
		x->out = x->pend;
		x->out_len = x->pend_len;
		x->out_off = 0;
		x->out_t0_us = x->pend_t0_us;
		x->pend = NULL;
		x->pend_len = 0;
	}
	if (x->out_off < x->out_len && !x->dropped) {
		size_t n = x->out_len - x->out_off;
		if (n > max)
			n = max;
		memcpy(buf, x->out + x->out_off, n);
		if (x->out_off == 0 && x->out_t0_us) {
			int64_t d = cl_mono_now_us() - x->out_t0_us;
			cleave_hist_add(&h->push_us, cleave_hist_bounds_us,
			                (uint64_t)(d > 0 ? d : 0));
		}
		x->out_off += n;
		pthread_mutex_unlock(&x->mu);
		return (ssize_t)n;
	}
	if (x->closing) {
		bool dropped = x->dropped;
		pthread_mutex_unlock(&x->mu);
		return dropped ? MHD_CONTENT_READER_END_WITH_ERROR
		               : MHD_CONTENT_READER_END_OF_STREAM;
	}
	x->suspended = true;
	MHD_suspend_connection(x->conn);
	pthread_mutex_unlock(&x->mu);
	return 0;
}

static bool enqueue(cl_sse *x);

/* MHD's thread: the connection is gone (or the daemon stops). */
static void sse_free(void *cls)
{
	cl_sse *x = cls;
	cl_sse_hub *h = x->s->sse;
	pthread_mutex_lock(&h->mu);
	if (x->prev)
		x->prev->next = x->next;
	else if (h->streams == x)
		h->streams = x->next;
	if (x->next)
		x->next->prev = x->prev;
	x->prev = x->next = NULL;
	pthread_mutex_unlock(&h->mu);
	pthread_mutex_lock(&x->mu);
	x->closing = x->gone = true;
	pthread_mutex_unlock(&x->mu);
	/* the subscription is closed by a worker (work): closing waits for
	 * the run under way and for the registry's lock, which an HTTP
	 * thread must not (a run may wait for a hung Redis) */
	if (x->kind == K_QUERY && !enqueue(x)) {
		pthread_mutex_lock(&x->runmu); /* stopping: no worker left */
		cleave_live_close(x->live);
		x->live = NULL;
		pthread_mutex_unlock(&x->runmu);
	}
	atomic_fetch_sub(&h->n, 1);
	cl_sse_unref(x);
}

/* Queues x for a worker; false when the workers are stopping (it was not
 * queued and will not be). */
static bool enqueue(cl_sse *x)
{
	cl_sse_hub *h = x->s->sse;
	bool ok = true;
	pthread_mutex_lock(&h->qmu);
	if (h->stop)
		ok = false;
	else if (!x->queued) {
		x->queued = true;
		cl_sse_ref(x);
		x->qnext = NULL;
		if (h->qtail)
			h->qtail->qnext = x;
		else
			h->qhead = x;
		h->qtail = x;
		pthread_cond_signal(&h->qcond);
	}
	pthread_mutex_unlock(&h->qmu);
	return ok;
}

/* An engine thread, under the subscription registry's lock: queue only. */
static void live_wake(void *arg)
{
	cl_sse *x = arg;
	atomic_store_explicit(&x->woken_us, cl_mono_now_us(),
	                      memory_order_relaxed);
	enqueue(x);
}

/* An engine thread (maybe the caller's): the position watch ended. */
static void watch_done(void *arg, int rc)
{
	cl_sse *x = arg;
	pthread_mutex_lock(&x->mu);
	x->watch_rc = rc;
	x->watching = false;
	pthread_mutex_unlock(&x->mu);
	enqueue(x);
	cl_sse_unref(x);
}

static void watch(cl_sse *x, int64_t pos, int ms)
{
	pthread_mutex_lock(&x->mu);
	x->watching = true;
	pthread_mutex_unlock(&x->mu);
	cl_sse_ref(x);
	int rc = cleave_watch_position(x->s->e, x->qname, pos, ms, watch_done,
	                               x);
	if (rc) {
		pthread_mutex_lock(&x->mu);
		x->watching = false;
		pthread_mutex_unlock(&x->mu);
		cl_sse_unref(x);
		/* too many watches: look again in a second */
		atomic_store(&x->retry_at_us, cl_mono_now_us() + RETRY_US);
	}
}

/* ---- messages ------------------------------------------------------------ */

/* "id: P\nevent: E\ndata: JSON\n\n"; JSON's line breaks (whitespace
 * outside strings: inside, JSON has none raw) become spaces, so data is
 * one line. */
static char *message(int64_t id, const char *event, const char *json,
                     size_t len, size_t *out_len)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_addf(&b, "id: %lld\nevent: %s\ndata: ", (long long)id,
	                event);
	size_t at = b.len;
	cleave_buf_add(&b, json, len);
	for (size_t i = at; i < b.len && !b.oom; i++)
		if (b.p[i] == '\n' || b.p[i] == '\r')
			b.p[i] = ' ';
	cleave_buf_adds(&b, "\n\n");
	return cleave_buf_steal(&b, out_len);
}

/* The answer without its leading "position" member (answers that are
 * objects start with it), for comparing two answers. */
static void strip_position(const char *body, size_t len, const char **out,
                           size_t *out_len)
{
	static const char pre[] = "{\"position\":";
	*out = body;
	*out_len = len;
	if (len < sizeof(pre) || memcmp(body, pre, sizeof(pre) - 1))
		return;
	size_t i = sizeof(pre) - 1;
	while (i < len && body[i] >= '0' && body[i] <= '9')
		i++;
	if (i < len && body[i] == ',')
		i++;
	*out = body + i;
	*out_len = len - i;
}

static int64_t query_position(cl_sse *x)
{
	int64_t pos = 0;
	cleave_query_position(x->s->e, x->qname, &pos);
	return pos;
}

static void push_error(cl_sse *x, int64_t id, const char *code,
                       const char *msg)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_add_error(&b, code, msg);
	size_t len;
	char *m = b.oom ? NULL : message(id, "error", b.p, b.len, &len);
	cleave_buf_free(&b);
	if (m) {
		cl_sse_push(x, m, len, 0);
		atomic_fetch_add_explicit(&x->s->sse->pushed, 1,
		                          memory_order_relaxed);
	}
}

/* The worker: runs x's query and pushes its answer if it changed. */
static void evaluate(cl_sse *x)
{
	cleave_answer a;
	int64_t t0 = atomic_load_explicit(&x->woken_us, memory_order_relaxed);
	if (!x->live)
		return;
	int rc = cleave_live_run(x->live, &a);
	if (rc) {
		atomic_store(&x->retry_at_us, cl_mono_now_us() + RETRY_US);
		return;
	}
	unsigned status = cl_status_of(a.rc);
	int64_t id = a.position;
	if (status != 200) {
		/* an error that came before every read model was read (one
		 * reopening, a store down) states the log head or a partial
		 * minimum: its id is no more than what the read models reached,
		 * and never less than what the stream showed */
		int64_t qp = query_position(x);
		if (qp < id)
			id = qp;
		if (id < x->last_id)
			id = x->last_id;
	} else if (a.position < x->last_id) {
		/* a copy behind what this stream already showed (a query
		 * node before it followed a switch): wait for it */
		cleave_answer_free(&a);
		watch(x, x->last_id, REWATCH_MS);
		return;
	}
	const char *body;
	size_t len;
	strip_position(a.body, a.body_len, &body, &len);
	if (x->sent && status == x->last_status && len == x->last_len &&
	    !memcmp(body, x->last, len)) {
		cleave_answer_free(&a);
		if (status >= 500)
			atomic_store(&x->retry_at_us,
			             cl_mono_now_us() + RETRY_US);
		return;
	}
	char *copy = malloc(len + 1);
	size_t mlen;
	char *m = copy ? message(id, status == 200 ? "answer" : "error",
	                         a.body, a.body_len, &mlen)
	               : NULL;
	if (!m) {
		free(copy);
		cleave_answer_free(&a);
		atomic_store(&x->retry_at_us, cl_mono_now_us() + RETRY_US);
		return;
	}
	memcpy(copy, body, len);
	free(x->last);
	x->last = copy;
	x->last_len = len;
	x->last_status = status;
	x->sent = true;
	x->last_id = id;
	cleave_answer_free(&a);
	cl_sse_push(x, m, mlen, t0);
	atomic_fetch_add_explicit(&x->s->sse->pushed, 1, memory_order_relaxed);
	/* an answer the log may not change (a store down, a projection
	 * reopening) is asked again; the others wait for their keys */
	atomic_store(&x->retry_at_us,
	             status >= 500 ? cl_mono_now_us() + RETRY_US : 0);
}

/* runmu held. */
static void work_locked(cl_sse *x)
{
	pthread_mutex_lock(&x->mu);
	bool closing = x->closing, watching = x->watching, gone = x->gone;
	int wrc = x->watch_rc;
	x->watch_rc = 0;
	pthread_mutex_unlock(&x->mu);
	if (gone) {
		/* its connection went (sse_free): the subscription is
		 * closed here, off the HTTP thread, under runmu */
		cleave_live_close(x->live);
		x->live = NULL;
		return;
	}
	if (closing || x->kind != K_QUERY || watching)
		return;
	if (x->state == ST_LIVE && wrc == CLEAVE_EPARKED) {
		/* waiting for a read model parked before the last id: ask
		 * again in a while, not at once (the watch would end at once
		 * again) */
		atomic_store(&x->retry_at_us, cl_mono_now_us() + RETRY_US);
		return;
	}
	if (x->state == ST_WAIT) {
		char msg[1024], behind[768];
		int64_t now = query_position(x);
		if (now >= x->need_pos) {
			x->state = ST_LIVE;
		} else if (wrc == CLEAVE_ETIMEDOUT && !x->waited_once) {
			x->waited_once = true;
			cleave_query_lagging(x->s->e, x->qname, x->need_pos,
			                     behind, sizeof(behind));
			snprintf(msg, sizeof(msg),
			         "position %lld not reached within %d ms; "
			         "current position %lld%s%s; the answer "
			         "follows once it is",
			         (long long)x->need_pos, x->wait_ms,
			         (long long)now, behind[0] ? "; behind: " : "",
			         behind);
			push_error(x, now, cleave_errname(CLEAVE_ETIMEDOUT),
			           msg);
			watch(x, x->need_pos, REWATCH_MS);
			return;
		} else if (wrc == CLEAVE_EPARKED) {
			if (!x->waited_once) {
				x->waited_once = true;
				snprintf(msg, sizeof(msg),
				         "a projection this query reads is "
				         "parked before position %lld (see GET "
				         "/projections); current position "
				         "%lld",
				         (long long)x->need_pos,
				         (long long)now);
				push_error(x, now,
				           cleave_errname(CLEAVE_EPARKED), msg);
			}
			atomic_store(&x->retry_at_us,
			             cl_mono_now_us() + RETRY_US);
			return;
		} else if (wrc == CLEAVE_ESHUTDOWN) {
			cl_sse_end(x, false);
			return;
		} else {
			watch(x, x->need_pos,
			      x->waited_once ? REWATCH_MS
			                     : x->wait_ms);
			return;
		}
	}
	evaluate(x);
}

/* The worker: a query stream's turn.  runmu makes it one worker's at a
 * time (a stream queued again while a worker runs it may be taken by
 * another) and keeps sse_free from closing the subscription under it. */
static void work(cl_sse *x)
{
	pthread_mutex_lock(&x->runmu);
	work_locked(x);
	pthread_mutex_unlock(&x->runmu);
}

static void *worker_main(void *arg)
{
	cl_srv *s = arg;
	cl_sse_hub *h = s->sse;
	pthread_setname_np(pthread_self(), "cl-live");
	pthread_mutex_lock(&h->qmu);
	for (;;) {
		while (!h->qhead && !h->stop)
			pthread_cond_wait(&h->qcond, &h->qmu);
		if (h->stop)
			break;
		cl_sse *x = h->qhead;
		h->qhead = x->qnext;
		if (!h->qhead)
			h->qtail = NULL;
		x->queued = false;
		pthread_mutex_unlock(&h->qmu);
		work(x);
		cl_sse_unref(x);
		pthread_mutex_lock(&h->qmu);
	}
	pthread_mutex_unlock(&h->qmu);
	return NULL;
}

/* x is suspended (x->mu held, so it stays so): whether its client has
 * closed the connection.  A suspended connection is not watched by
 * libmicrohttpd, which would otherwise notice only at the next write. */
static bool peer_closed(cl_sse *x)
{
	char c;
	if (x->fd < 0)
		return false;
	ssize_t n = recv(x->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
	                  errno != EINTR);
}

/* The hub's streams, each with a reference taken, so that they can be
 * written to (and libmicrohttpd called) without hub->mu: MHD may call
 * sse_free, which takes hub->mu, while holding locks of its own. */
static cl_sse **snapshot(cl_sse_hub *h, int *n)
{
	pthread_mutex_lock(&h->mu);
	int cap = 0;
	for (cl_sse *x = h->streams; x; x = x->next)
		cap++;
	cl_sse **v = malloc(((size_t)cap + 1) * sizeof(*v));
	*n = 0;
	for (cl_sse *x = h->streams; v && x; x = x->next) {
		cl_sse_ref(x);
		v[(*n)++] = x;
	}
	pthread_mutex_unlock(&h->mu);
	return v;
}

static void tick(cl_srv *s, int64_t keepalive_us)
{
	cl_sse_hub *h = s->sse;
	cleave_buf stats, smp;
	cleave_buf_init(&stats);
	cleave_buf_init(&smp);
	cl_sse_figures(s, &stats, &smp);
	int64_t head = cleave_log_head(s->e);
	size_t slen = 0;
	char *sample_text = cleave_buf_steal(&smp, &slen);
	char idbuf[64];
	snprintf(idbuf, sizeof(idbuf), "id: %lld\n", (long long)head);
	int64_t now = cl_mono_now_us();
	pthread_mutex_lock(&h->mu);
	if (sample_text) {
		free(h->samples[h->at]);
		h->samples[h->at] = sample_text;
		h->at = (h->at + 1) % SAMPLES;
		if (h->nsamples < SAMPLES)
			h->nsamples++;
	}
	pthread_mutex_unlock(&h->mu);
	int n;
	cl_sse **v = snapshot(h, &n);
	for (int i = 0; v && i < n; i++) {
		cl_sse *x = v[i];
		if (x->kind == K_STATS && !stats.oom) {
			size_t len;
			cleave_buf m;
			cleave_buf_init(&m);
			cleave_buf_adds(&m, "event: stats\n");
			cleave_buf_adds(&m, idbuf);
			cleave_buf_adds(&m, "data: ");
			cleave_buf_add(&m, stats.p, stats.len);
			cleave_buf_adds(&m, "\n\n");
			char *t = cleave_buf_steal(&m, &len);
			if (t)
				cl_sse_push(x, t, len, 0);
			continue;
		}
		int64_t r = atomic_load(&x->retry_at_us);
		if (r && r <= now) {
			atomic_store(&x->retry_at_us, 0);
			enqueue(x);
		}
		pthread_mutex_lock(&x->mu);
		/* each stream's period is shortened by its own jitter, so
		 * streams opened together do not all write (and resume) in
		 * the same tick, every period, for ever */
		bool idle = !x->pend && x->out_off == x->out_len &&
		            now - x->last_out_us >=
		                keepalive_us - keepalive_us * x->jitter / 2000;
		bool gone = x->suspended && peer_closed(x);
		pthread_mutex_unlock(&x->mu);
		if (gone) {
			/* the reader hung up: its slot and memory go now, not
			 * at the keep-alive that would find out */
			cl_sse_end(x, false);
			continue;
		}
		if (idle)
			push_keepalive(x);
	}
	for (int i = 0; v && i < n; i++)
		cl_sse_unref(v[i]);
	free(v);
	cleave_buf_free(&stats);
}

static void *timer_main(void *arg)
{
	cl_srv *s = arg;
	cl_sse_hub *h = s->sse;
	pthread_setname_np(pthread_self(), "cl-sse-timer");
	/* comments at least every 15 s, and well within the idle timeout
	 * that closes readers that stopped reading */
	int64_t ka = (int64_t)s->cfg->idle_timeout * 1000000 / 3;
	if (ka > 10000000)
		ka = 10000000;
	if (ka < 500000)
		ka = 500000;
	pthread_mutex_lock(&h->qmu);
	while (!h->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&h->tcond, &h->qmu, &ts);
		if (h->stop)
			break;
		pthread_mutex_unlock(&h->qmu);
		tick(s, ka);
		pthread_mutex_lock(&h->qmu);
	}
	pthread_mutex_unlock(&h->qmu);
	return NULL;
}

/* ---- the server's side ------------------------------------------------- */

int cl_sse_start(cl_srv *s)
{
	cl_sse_hub *h = calloc(1, sizeof(*h));
	if (!h)
		return -1;
	pthread_mutex_init(&h->mu, NULL);
	pthread_mutex_init(&h->qmu, NULL);
	pthread_cond_init(&h->qcond, NULL);
	pthread_cond_init(&h->tcond, NULL);
	s->sse = h;
	int n = s->cfg->live_threads;
	if (n < 1)
		n = 1;
	if (n > 64)
		n = 64;
	for (int i = 0; i < n; i++) {
		if (pthread_create(&h->workers[i], NULL, worker_main, s))
			return -1;
		h->nworkers++;
	}
	if (pthread_create(&h->timer, NULL, timer_main, s))
		return -1;
	h->timer_running = true;
	return 0;
}

void cl_sse_close_all(cl_srv *s)
{
	cl_sse_hub *h = s->sse;
	if (!h)
		return;
	atomic_store(&h->closed, true);
	int n;
	cl_sse **v = snapshot(h, &n);
	if (!v) { /* out of memory: every stream must end all the same */
		pthread_mutex_lock(&h->mu);
		for (cl_sse *x = h->streams; x; x = x->next)
			cl_sse_end(x, false);
		pthread_mutex_unlock(&h->mu);
		return;
	}
	for (int i = 0; i < n; i++) {
		cl_sse_end(v[i], false);
		cl_sse_unref(v[i]);
	}
	free(v);
}

void cl_sse_stop(cl_srv *s)
{
	cl_sse_hub *h = s->sse;
	if (!h)
		return;
	pthread_mutex_lock(&h->qmu);
	h->stop = true;
	pthread_cond_broadcast(&h->qcond);
	pthread_cond_broadcast(&h->tcond);
	pthread_mutex_unlock(&h->qmu);
	for (int i = 0; i < h->nworkers; i++)
		pthread_join(h->workers[i], NULL);
	if (h->timer_running)
		pthread_join(h->timer, NULL);
	pthread_mutex_lock(&h->qmu);
	while (h->qhead) {
		cl_sse *x = h->qhead;
		h->qhead = x->qnext;
		if (!h->qhead)
			h->qtail = NULL;
		pthread_mutex_unlock(&h->qmu);
		/* MHD has stopped: every stream is gone; what the workers did
		 * not get to is closed here, while the engine is open */
		pthread_mutex_lock(&x->runmu);
		cleave_live_close(x->live);
		x->live = NULL;
		pthread_mutex_unlock(&x->runmu);
		cl_sse_unref(x);
		pthread_mutex_lock(&h->qmu);
	}
	pthread_mutex_unlock(&h->qmu);
}

/* After the engine closed: its watches have called back (a stream waiting
 * for a position is answered at the engine's close, after MHD stopped),
 * so the hub can go. */
void cl_sse_free(cl_srv *s)
{
	cl_sse_hub *h = s->sse;
	if (!h)
		return;
	while (h->qhead) { /* queued by watches that ended at the close */
		cl_sse *x = h->qhead;
		h->qhead = x->qnext;
		cl_sse_unref(x);
	}
	for (int i = 0; i < SAMPLES; i++)
		free(h->samples[i]);
	pthread_mutex_destroy(&h->mu);
	pthread_mutex_destroy(&h->qmu);
	pthread_cond_destroy(&h->qcond);
	pthread_cond_destroy(&h->tcond);
	free(h);
	s->sse = NULL;
}

bool cl_wants_sse(cl_req *r)
{
	const char *a = cl_header(r, MHD_HTTP_HEADER_ACCEPT);
	if (r->method != CL_M_GET || !a)
		return false;
	for (const char *p = a; (p = strcasestr(p, "text/event-stream"));
	     p++)
		return true;
	return false;
}

void cl_sse_metrics(cl_srv *s, cleave_buf *b)
{
	cl_sse_hub *h = s->sse;
	if (!h)
		return;
	cleave_buf_addf(
	    b,
	    "# HELP cleave_live_streams Open live-query and dashboard "
	    "streams.\n# TYPE cleave_live_streams gauge\n"
	    "cleave_live_streams %d\n"
	    "# HELP cleave_live_messages_total Answers pushed on live "
	    "queries' streams.\n# TYPE cleave_live_messages_total counter\n"
	    "cleave_live_messages_total %llu\n"
	    "# HELP cleave_live_coalesced_total Answers replaced by a newer "
	    "one before a slow reader took them.\n"
	    "# TYPE cleave_live_coalesced_total counter\n"
	    "cleave_live_coalesced_total %llu\n"
	    "# HELP cleave_live_dropped_total Streams closed because their "
	    "reader held too much unread.\n"
	    "# TYPE cleave_live_dropped_total counter\n"
	    "cleave_live_dropped_total %llu\n"
	    "# HELP cleave_live_wakes_total Live queries woken by commits "
	    "that wrote what they read.\n"
	    "# TYPE cleave_live_wakes_total counter\n"
	    "cleave_live_wakes_total %llu\n",
	    atomic_load(&h->n),
	    (unsigned long long)atomic_load(&h->pushed),
	    (unsigned long long)atomic_load(&h->coalesced),
	    (unsigned long long)atomic_load(&h->dropped),
	    (unsigned long long)cleave_live_wakes(s->e));
	cl_metrics_hist(b, "cleave_live_push_latency_seconds",
	                "From the commit that woke a live query to its new "
	                "answer handed to the socket.",
	                &h->push_us);
}

/* A new stream on r (not yet answered): registered, with its response. */
cl_sse *cl_sse_new(cl_req *r, int kind, struct MHD_Response **resp)
{
	cl_srv *s = r->s;
	cl_sse *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->s = s;
	x->conn = r->conn;
	x->kind = kind;
	atomic_init(&x->refs, 1);
	pthread_mutex_init(&x->mu, NULL);
	pthread_mutex_init(&x->runmu, NULL);
	x->last_id = -1;
	x->last_out_us = cl_mono_now_us();
	snprintf(x->trace_id, sizeof(x->trace_id), "%s", r->trace_id);
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	x->fd = ci ? ci->connect_fd : -1;
	/* up to half the keep-alive period taken off, per stream */
	x->jitter = (int)(((uintptr_t)x >> 4) % 1000);
	/* the response's own buffer: small, as a stream's messages are (a
	 * longer one goes out in several pieces) — a stream costs this
	 * besides its connection's pool */
	*resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024,
	                                          sse_read, x, sse_free);
	if (!*resp) {
		cl_sse_unref(x);
		return NULL;
	}
	MHD_add_response_header(*resp, MHD_HTTP_HEADER_CONTENT_TYPE,
	                        "text/event-stream; charset=utf-8");
	MHD_add_response_header(*resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                        "no-store");
	MHD_add_response_header(*resp, "X-Accel-Buffering", "no");
	return x;
}

void cl_sse_register(cl_sse *x)
{
	cl_sse_hub *h = x->s->sse;
	pthread_mutex_lock(&h->mu);
	x->next = h->streams;
	if (h->streams)
		h->streams->prev = x;
	h->streams = x;
	pthread_mutex_unlock(&h->mu);
	/* registered as the shutdown sweep ran: ended here instead */
	if (atomic_load(&h->closed))
		cl_sse_end(x, false);
}

/* 503 when the limit is reached or the server stops; counts the stream
 * otherwise (false: answered). */
bool cl_sse_admit(cl_req *r, enum MHD_Result *ret)
{
	cl_srv *s = r->s;
	cl_sse_hub *h = s->sse;
	int max = s->cfg->max_subscribers;
	if (atomic_load(&s->stopping) || atomic_load(&h->closed)) {
		*ret = cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "shutting_down", "shutting down");
		return false;
	}
	if (atomic_fetch_add(&h->n, 1) >= max) {
		atomic_fetch_sub(&h->n, 1);
		*ret = cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		                     "too_many_subscribers",
		                     "this server holds %d live streams, its "
		                     "limit (--max-subscribers)",
		                     max);
		return false;
	}
	return true;
}

/* Resumed by the pool (qpool.c) with the first run. */
static enum MHD_Result live_after_pool(cl_req *r)
{
	return cl_h_query_live_checked(r, r->pool_rc, &r->pool_answer,
	                               r->pool_msg);
}

enum MHD_Result cl_h_query_live(cl_req *r)
{
	cl_srv *s = r->s;
	int64_t need = r->min_pos;
	const char *lei = cl_header(r, "Last-Event-ID");
	if (lei && *lei) {
		char *end;
		long long v = strtoll(lei, &end, 10);
		if (*end || end == lei || v < 0 || v > (INT64_C(1) << 53) ||
		    lei[0] == '+' || lei[0] == ' ')
			return cl_send_error(r, MHD_HTTP_BAD_REQUEST,
			                     "invalid_argument",
			                     "Last-Event-ID must be a log "
			                     "position (a decimal 0 to 2^53) as "
			                     "this stream's ids are");
		if (v > need)
			need = v;
	}
	r->min_pos = need;
	/* errors the log cannot change (bad parameters) are plain answers:
	 * one run tells (on the pool for a network store: it may block) */
	if (r->remote)
		return cl_qpool_submit(r, live_after_pool);
	cleave_answer a;
	int rc = cleave_query_run(s->e, r->name, r->params, r->nparams, &a);
	return cl_h_query_live_checked(
	    r, rc, &a,
	    rc ? (*cleave_errmsg() ? cleave_errmsg() : cleave_strerror(rc))
	       : NULL);
}

enum MHD_Result cl_h_query_live_checked(cl_req *r, int rc, cleave_answer *a,
                                        const char *msg)
{
	cl_srv *s = r->s;
	enum MHD_Result ret;
	int64_t need = r->min_pos;
	if (rc)
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "%s", msg);
	unsigned status = cl_status_of(a->rc);
	if (status == MHD_HTTP_BAD_REQUEST ||
	    status == MHD_HTTP_CONTENT_TOO_LARGE) {
		struct MHD_Response *resp =
		    cl_resp("application/json", a->body, a->body_len, true);
		return cl_send(r, status, resp);
	}
	cleave_answer_free(a);
	if (!cl_sse_admit(r, &ret))
		return ret;
	struct MHD_Response *resp;
	cl_sse *x = cl_sse_new(r, K_QUERY, &resp);
	if (!x) {
		atomic_fetch_sub(&s->sse->n, 1);
		return MHD_NO;
	}
	snprintf(x->qname, sizeof(x->qname), "%s", r->name);
	x->need_pos = need;
	x->wait_ms = r->wait_ms;
	rc = cleave_live_open(s->e, r->name, r->params, r->nparams, live_wake,
	                      x, &x->live);
	if (rc) {
		MHD_destroy_response(resp); /* sse_free: the count, x */
		return cl_send_error(r, cl_status_of(rc), cleave_errname(rc),
		                     "%s", cleave_errmsg());
	}
	cl_sse_register(x);
	x->state = need >= 0 && query_position(x) < need ? ST_WAIT : ST_LIVE;
	/* a reference of our own across cl_send: if MHD does not take the
	 * response (it is stopping), sse_free runs inside it */
	cl_sse_ref(x);
	ret = cl_send(r, MHD_HTTP_OK, resp);
	pthread_mutex_lock(&x->mu);
	bool gone = x->gone;
	pthread_mutex_unlock(&x->mu);
	if (ret == MHD_YES && !gone) {
		if (x->state == ST_WAIT)
			watch(x, need, x->wait_ms);
		else
			enqueue(x);
	}
	cl_sse_unref(x);
	return ret;
}
