/*
 * beat.c — readiness: can this engine serve what it is for?
 *
 * A writer with a shared store (Redis) writes its heartbeat there each
 * second, as the root's record "beat": {"time_ms": wall clock, "url": its
 * --advertise-url or null}.  A
 * query node's follower reads it once a second and notes when it last
 * read the log head; from those, cleave_engine_readiness() tells a load
 * balancer whether the node can serve: not when its view of the log head
 * is stale, when the writer's heartbeat stopped (the writer is gone), or
 * when the read store cannot be reached.  A writer whose read store is
 * down still takes commands: it is ready, degraded.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sync/sync_int.h"

#define STALE_MS 5000 /* a head or a beat older than this is stale */

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void *beat_main(void *arg)
{
	cleave_engine *e = arg;
	cl_sync *s = e->sync;
	cl_thread_name("cl-beat");
	bool failing = false;
	while (!atomic_load(&s->beat_stop)) {
		cleave_buf v = CLEAVE_BUF_INIT;
		cleave_buf_addf(&v, "{\"time_ms\":%lld,\"url\":",
		                (long long)wall_ms());
		const char *url = e->cfg.advertise_url;
		if (url)
			cleave_buf_add_jstr(&v, url, strlen(url));
		else
			cleave_buf_adds(&v, "null");
		cleave_buf_addc(&v, '}');
		int rc = v.oom ? CLEAVE_ENOMEM
		               : s->shared->meta_set(s->root_store, "beat",
		                                     v.p);
		cleave_buf_free(&v);
		if (rc && !failing)
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
			       "writing the heartbeat query nodes follow in "
			       "%s: %s",
			       s->shared_root, cleave_errmsg());
		else if (!rc && failing)
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
			       "the heartbeat in %s is written again",
			       s->shared_root);
		failing = rc != 0;
		for (int i = 0; i < 10 && !atomic_load(&s->beat_stop); i++)
			usleep(100000);
	}
	return NULL;
}

int cl_beat_start(cleave_engine *e)
{
	cl_sync *s = e->sync;
	atomic_store(&s->opened_us, cl_mono_us());
	if (!s->root_store || e->cfg.query_node || e->cfg.read_only)
		return 0;
	atomic_store(&s->beat_stop, false);
	if (pthread_create(&s->beat, NULL, beat_main, e))
		return cl_err(CLEAVE_EINTERNAL, "cannot start the heartbeat");
	s->beat_running = true;
	return 0;
}

void cl_beat_stop(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (!s || !s->beat_running)
		return;
	atomic_store(&s->beat_stop, true);
	pthread_join(s->beat, NULL);
	s->beat_running = false;
}

void cl_beat_follow(cleave_engine *e)
{
	cl_sync *s = e->sync;
	char *v = NULL;
	int rc = s->shared->meta_get(s->root_store, "beat", &v);
	pthread_mutex_lock(&s->why_mu);
	if (rc)
		snprintf(s->root_err, sizeof(s->root_err), "%s",
		         cleave_errmsg());
	else
		s->root_err[0] = 0;
	pthread_mutex_unlock(&s->why_mu);
	if (!rc && v) {
		cJSON *j = cJSON_Parse(v);
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "time_ms");
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "url");
		int64_t ms = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : 0;
		if (ms && ms != atomic_load(&s->beat_ms)) {
			atomic_store(&s->beat_ms, ms);
			atomic_store(&s->beat_seen_us, cl_mono_us());
		}
		pthread_mutex_lock(&s->why_mu);
		snprintf(s->writer_url, sizeof(s->writer_url), "%s",
		         cJSON_IsString(u) ? u->valuestring : "");
		pthread_mutex_unlock(&s->why_mu);
		cJSON_Delete(j);
	}
	free(v);
}

void cl_beat_head(cleave_engine *e, bool ok)
{
	cl_sync *s = e->sync;
	if (ok) {
		atomic_store(&s->head_ok_us, cl_mono_us());
		return;
	}
	pthread_mutex_lock(&s->why_mu);
	snprintf(s->head_err, sizeof(s->head_err), "%s", cleave_errmsg());
	pthread_mutex_unlock(&s->why_mu);
}

static void why(cleave_readiness *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void why(cleave_readiness *r, const char *fmt, ...)
{
	size_t n = strlen(r->reasons);
	if (n && n + 2 < sizeof(r->reasons)) {
		strcpy(r->reasons + n, "; ");
		n += 2;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->reasons + n, sizeof(r->reasons) - n, fmt, ap);
	va_end(ap);
}

void cleave_engine_readiness(cleave_engine *e, cleave_readiness *out)
{
	cl_sync *s = e->sync;
	memset(out, 0, sizeof(*out));
	out->role = e->cfg.query_node ? "query_node" : "writer";
	out->ready = true;
	int64_t now = cl_mono_us();
	int64_t since = atomic_load(&s->opened_us);
	if (e->cfg.query_node) {
		pthread_mutex_lock(&s->why_mu);
		snprintf(out->writer_url, sizeof(out->writer_url), "%s",
		         s->writer_url);
		pthread_mutex_unlock(&s->why_mu);
		int64_t h = atomic_load(&s->head_ok_us);
		int64_t age = now - (h ? h : since);
		if (age > STALE_MS * 1000) {
			char msg[256];
			pthread_mutex_lock(&s->why_mu);
			snprintf(msg, sizeof(msg), "%s", s->head_err);
			pthread_mutex_unlock(&s->why_mu);
			out->ready = false;
			why(out,
			    "the log head was last read %.1f s ago%s%s",
			    (double)age / 1e6, msg[0] ? ": " : "", msg);
		}
		int64_t b = atomic_load(&s->beat_seen_us);
		int64_t bage = now - (b ? b : since);
		if (bage > STALE_MS * 1000) {
			out->ready = false;
			if (b)
				why(out,
				    "the writer's heartbeat stopped %.1f s ago "
				    "(the writer is gone, or cannot reach %s)",
				    (double)bage / 1e6, s->shared_root);
			else
				why(out,
				    "no heartbeat from a writer in %s yet",
				    s->shared_root);
		}
		char rerr[256];
		pthread_mutex_lock(&s->why_mu);
		snprintf(rerr, sizeof(rerr), "%s", s->root_err);
		pthread_mutex_unlock(&s->why_mu);
		if (rerr[0]) {
			out->ready = false;
			why(out, "the read store cannot be reached: %s", rerr);
		}
	}
	for (int i = 0; i < e->nproj; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(e, i, &st))
			continue;
		if (st.state == CLEAVE_PROJ_PARKED) {
			out->degraded = true;
			why(out, "projection %s is parked at %lld", st.name,
			    (long long)st.parked_position);
		} else if (st.failing) {
			out->degraded = true;
			why(out, "projection %s is failing: %s", st.name,
			    st.last_error);
			/* a node serves nothing of it: not ready */
			if (e->cfg.query_node)
				out->ready = false;
		}
	}
}
