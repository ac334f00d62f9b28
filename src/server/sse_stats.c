/*
 * sse_stats.c — the dashboard's figures: GET /ui/stream sends the last
 * minutes' samples (event: history), then, each second, the figures the
 * timer (sse.c) computes here (event: stats): command and query rates
 * and latency quantiles over the last second, live streams, and every
 * projection as GET /projections lists it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "sse_int.h"

/* ---- the dashboard's figures ----------------------------------------- */

static void hist_sum(cleave_hist *into, const cleave_hist *h)
{
	into->count += h->count;
	into->sum += h->sum;
	for (int i = 0; i < CLEAVE_HIST_BUCKETS; i++)
		into->buckets[i] += h->buckets[i];
}

/* The q-quantile (0..1) of what was added between `was` and `now`, in
 * ms, as the bucket bound that holds it; -1 when nothing was. */
static double quantile_ms(const cleave_hist *now, const cleave_hist *was,
                          double q)
{
	uint64_t n = now->count - was->count, seen = 0;
	if (!n)
		return -1;
	uint64_t want = (uint64_t)((double)n * q + 0.999999);
	for (int i = 0; i < CLEAVE_HIST_BUCKETS; i++) {
		seen += now->buckets[i] - was->buckets[i];
		if (seen >= want)
			return (double)cleave_hist_bounds_us[i] / 1000.0;
	}
	return (double)cleave_hist_bounds_us[CLEAVE_HIST_BUCKETS - 1] / 1000.0;
}

static void add_ms(cleave_buf *b, const char *key, double v)
{
	cleave_buf_addf(b, ",\"%s\":", key);
	if (v < 0)
		cleave_buf_adds(b, "null");
	else
		cleave_buf_addf(b, "%.3f", v);
}

/* Builds this second's stats message body and its sample. */
void cl_sse_figures(cl_srv *s, cleave_buf *stats, cleave_buf *smp)
{
	cl_sse_hub *h = s->sse;
	int64_t now_us = cl_mono_now_us();
	double dt = h->prev_us ? (double)(now_us - h->prev_us) / 1e6 : 1.0;
	if (dt <= 0)
		dt = 1.0;
	struct timeval tv;
	gettimeofday(&tv, NULL);
	long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
	int64_t head = cleave_log_head(s->e);

	cleave_hist ch = {0}, qh = {0};
	uint64_t cmds = 0, failed = 0, queries = 0;
	for (int i = 0; i < s->ncmds; i++) {
		cleave_command_stats st;
		if (cleave_command_stats_get(s->e, i, &st))
			continue;
		cmds += st.ok + st.rejected + st.invalid + st.not_found +
		        st.conflict + st.failed + st.replayed;
		failed += st.failed + atomic_load(&s->cmd_counts[i].other);
		hist_sum(&ch, &st.latency_us);
	}
	for (int i = 0; i < s->nqueries; i++) {
		cleave_hist one;
		cleave_hist_copy(&one, &s->qhist[i]);
		hist_sum(&qh, &one);
		queries += one.count;
	}
	double cps = (double)(cmds - h->prev_cmds) / dt;
	double qps = (double)(queries - h->prev_queries) / dt;
	if (!h->prev_us)
		cps = qps = 0;

	cleave_buf_addf(stats,
	                "{\"time_ms\":%lld,\"role\":\"%s\",\"head\":%lld,"
	                "\"commands\":{\"total\":%llu,\"failed\":%llu,"
	                "\"per_s\":%.1f",
	                ms, s->cfg->query_node ? "query_node" : "writer",
	                (long long)head, (unsigned long long)cmds,
	                (unsigned long long)failed, cps);
	add_ms(stats, "p50_ms", quantile_ms(&ch, &h->prev_ch, 0.50));
	add_ms(stats, "p99_ms", quantile_ms(&ch, &h->prev_ch, 0.99));
	cleave_buf_addf(stats,
	                "},\"queries\":{\"total\":%llu,\"per_s\":%.1f",
	                (unsigned long long)queries, qps);
	add_ms(stats, "p50_ms", quantile_ms(&qh, &h->prev_qh, 0.50));
	add_ms(stats, "p99_ms", quantile_ms(&qh, &h->prev_qh, 0.99));
	cleave_buf_addf(stats, "},\"subscribers\":%d,\"projections\":[",
	                atomic_load(&h->n));
	cleave_buf_addf(smp,
	                "{\"time_ms\":%lld,\"head\":%lld,\"commands_per_s\":"
	                "%.1f,\"queries_per_s\":%.1f,\"projections\":{",
	                ms, (long long)head, cps, qps);
	int n = cleave_projection_count(s->e);
	for (int i = 0; i < n; i++) {
		cleave_proj_status st;
		if (cleave_projection_status(s->e, i, &st))
			continue;
		if (i) {
			cleave_buf_addc(stats, ',');
			cleave_buf_addc(smp, ',');
		}
		cl_proj_status_json(stats, &st);
		cleave_buf_add_jstr(smp, st.name, strlen(st.name));
		cleave_buf_addf(smp,
		                ":{\"lag_events\":%lld,\"lag_seconds\":%.3f,"
		                "\"events_per_s\":%.1f}",
		                (long long)st.lag_events, st.lag_seconds,
		                st.events_per_s);
	}
	cleave_buf_adds(stats, "]}");
	cleave_buf_adds(smp, "}}");
	h->prev_cmds = cmds;
	h->prev_queries = queries;
	h->prev_ch = ch;
	h->prev_qh = qh;
	h->prev_us = now_us;
}

/* The first message of a dashboard stream: the samples so far (hub->mu
 * held). */
static char *history(cl_sse_hub *h, size_t *len)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_adds(&b, "event: history\ndata: {\"samples\":[");
	for (int i = 0; i < h->nsamples; i++) {
		int k = (h->at - h->nsamples + i + SAMPLES) % SAMPLES;
		if (i)
			cleave_buf_addc(&b, ',');
		cleave_buf_adds(&b, h->samples[k]);
	}
	cleave_buf_adds(&b, "]}\n\n");
	return cleave_buf_steal(&b, len);
}

enum MHD_Result cl_h_ui_stream(cl_req *r)
{
	cl_sse_hub *h = r->s->sse;
	enum MHD_Result ret;
	if (r->method != CL_M_GET) /* HEAD: what a GET would start with */
		return cl_send(r, MHD_HTTP_OK,
		               cl_resp("text/event-stream; charset=utf-8",
		                       (char *)"", 0, false));
	if (!cl_sse_admit(r, &ret))
		return ret;
	struct MHD_Response *resp;
	cl_sse *x = cl_sse_new(r, K_STATS, &resp);
	if (!x) {
		atomic_fetch_sub(&h->n, 1);
		return MHD_NO;
	}
	pthread_mutex_lock(&h->mu);
	x->out = history(h, &x->out_len);
	pthread_mutex_unlock(&h->mu);
	cl_sse_register(x);
	return cl_send(r, MHD_HTTP_OK, resp);
}
