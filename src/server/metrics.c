/*
 * metrics.c — GET /metrics, Prometheus text exposition 0.0.4.
 *
 * The engine's histograms count each value in the first bucket whose bound
 * holds it (values past the last bound only in count); Prometheus wants
 * cumulative buckets, so we sum as we print.  Latencies are recorded in
 * microseconds and exposed in seconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

static void help(cleave_buf *b, const char *name, const char *type,
                 const char *text)
{
	cleave_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

/* Label values here are names from the domain table ([A-Za-z0-9_]) and
 * fixed words, so they need no escaping. */
static void hist(cleave_buf *b, const char *name, const char *labels,
                 const cleave_hist *h, const uint64_t *bounds, double scale)
{
	uint64_t cum = 0;
	const char *sep = labels && *labels ? "," : "";
	for (int i = 0; i < CLEAVE_HIST_BUCKETS; i++) {
		cum += h->buckets[i];
		cleave_buf_addf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name,
		             labels ? labels : "", sep,
		             (double)bounds[i] * scale,
		             (unsigned long long)cum);
	}
	cleave_buf_addf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name,
	             labels ? labels : "", sep, (unsigned long long)h->count);
	if (labels && *labels) {
		cleave_buf_addf(b, "%s_sum{%s} %.6f\n", name, labels,
		             (double)h->sum * scale);
		cleave_buf_addf(b, "%s_count{%s} %llu\n", name, labels,
		             (unsigned long long)h->count);
	} else {
		cleave_buf_addf(b, "%s_sum %.6f\n", name, (double)h->sum * scale);
		cleave_buf_addf(b, "%s_count %llu\n", name,
		             (unsigned long long)h->count);
	}
}

static void commands(cleave_buf *b, cl_srv *s)
{
	help(b, "cleave_commands_total", "counter",
	     "Commands by name and outcome.");
	for (int i = 0; i < s->ncmds; i++) {
		cleave_command_stats st;
		if (cleave_command_stats_get(s->e, i, &st))
			continue;
		cl_cmd_counts *c = &s->cmd_counts[i];
		const struct {
			const char *outcome;
			uint64_t n;
		} rows[] = {
		    {"ok", st.ok},
		    {"rejected", st.rejected},
		    {"invalid", st.invalid + atomic_load(&c->invalid)},
		    {"not_found", st.not_found},
		    {"conflict", st.conflict},
		    {"failed", st.failed + atomic_load(&c->other)},
		    {"replayed", st.replayed},
		    {"overloaded", atomic_load(&c->overloaded)},
		    {"shutting_down", atomic_load(&c->shutting_down)},
		    {"misdirected", atomic_load(&c->misdirected)},
		};
		for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++)
			cleave_buf_addf(b,
			             "cleave_commands_total{command=\"%s\","
			             "outcome=\"%s\"} %llu\n",
			             st.name, rows[k].outcome,
			             (unsigned long long)rows[k].n);
	}
	help(b, "cleave_command_latency_seconds", "histogram",
	     "From submit to durable answer, per command.");
	for (int i = 0; i < s->ncmds; i++) {
		cleave_command_stats st;
		if (cleave_command_stats_get(s->e, i, &st))
			continue;
		char labels[128];
		snprintf(labels, sizeof(labels), "command=\"%s\"", st.name);
		hist(b, "cleave_command_latency_seconds", labels,
		     &st.latency_us, cleave_hist_bounds_us, 1e-6);
	}
}

static void engine(cleave_buf *b, cl_srv *s)
{
	cleave_stats st;
	cleave_stats_get(s->e, &st);
	help(b, "cleave_group_commit_batch_size", "histogram",
	     "Commands per group commit.");
	hist(b, "cleave_group_commit_batch_size", NULL, &st.batch_size,
	     cleave_hist_bounds_batch, 1.0);
	help(b, "cleave_group_commits_total", "counter",
	     "Group commits (write transactions).");
	cleave_buf_addf(b, "cleave_group_commits_total %llu\n",
	             (unsigned long long)st.batches);
	help(b, "cleave_fsyncs_total", "counter",
	     "fdatasync calls of commits.");
	cleave_buf_addf(b, "cleave_fsyncs_total %llu\n",
	             (unsigned long long)st.fsyncs);
	help(b, "cleave_events_appended_total", "counter",
	     "Events appended to the log.");
	cleave_buf_addf(b, "cleave_events_appended_total %llu\n",
	             (unsigned long long)st.events_appended);
	help(b, "cleave_log_head", "gauge", "Position of the last event.");
	cleave_buf_addf(b, "cleave_log_head %lld\n", (long long)st.head);
	help(b, "cleave_command_queue_depth", "gauge",
	     "Commands queued for the writer.");
	cleave_buf_addf(b, "cleave_command_queue_depth %llu\n",
	             (unsigned long long)st.queue_depth);
	help(b, "cleave_command_queue_max", "gauge",
	     "Queue limit (--queue-max).");
	cleave_buf_addf(b, "cleave_command_queue_max %llu\n",
	             (unsigned long long)st.queue_max);
	help(b, "cleave_write_store_failed", "gauge",
	     "1 once a commit failed to become durable: commands are refused "
	     "until a restart.");
	cleave_buf_addf(b, "cleave_write_store_failed %d\n",
	             st.write_failed ? 1 : 0);
}

static void projections(cleave_buf *b, cl_srv *s)
{
	int n = cleave_projection_count(s->e);
	cleave_proj_status *st = calloc((size_t)(n > 0 ? n : 1), sizeof(*st));
	if (!st) {
		b->oom = true;
		return;
	}
	bool *ok = calloc((size_t)(n > 0 ? n : 1), sizeof(*ok));
	if (!ok) {
		free(st);
		b->oom = true;
		return;
	}
	for (int i = 0; i < n; i++)
		ok[i] = cleave_projection_status(s->e, i, &st[i]) == 0;
	help(b, "cleave_projection_position", "gauge",
	     "Log position applied by the serving copy.");
	for (int i = 0; i < n; i++)
		if (ok[i])
			cleave_buf_addf(b,
			             "cleave_projection_position{projection="
			             "\"%s\"} %lld\n",
			             st[i].name, (long long)st[i].position);
	help(b, "cleave_projection_lag_events", "gauge",
	     "Events in the log not yet applied.");
	for (int i = 0; i < n; i++)
		if (ok[i])
			cleave_buf_addf(b,
			             "cleave_projection_lag_events{projection="
			             "\"%s\"} %lld\n",
			             st[i].name, (long long)st[i].lag_events);
	help(b, "cleave_projection_lag_seconds", "gauge",
	     "Age of the oldest unapplied event.");
	for (int i = 0; i < n; i++)
		if (ok[i])
			cleave_buf_addf(b,
			             "cleave_projection_lag_seconds{projection="
			             "\"%s\"} %.6f\n",
			             st[i].name, st[i].lag_seconds);
	help(b, "cleave_projection_state", "gauge",
	     "1 for the projection's current state.");
	static const cleave_proj_state states[] = {
	    CLEAVE_PROJ_LIVE, CLEAVE_PROJ_REBUILDING, CLEAVE_PROJ_PARKED};
	for (int i = 0; i < n; i++)
		for (int k = 0; ok[i] && k < 3; k++)
			cleave_buf_addf(b,
			             "cleave_projection_state{projection="
			             "\"%s\",state=\"%s\"} %d\n",
			             st[i].name,
			             cleave_proj_state_name(states[k]),
			             st[i].state == states[k]);
	help(b, "cleave_projection_dead_letters_total", "counter",
	     "Events skipped by the poison policy.");
	for (int i = 0; i < n; i++)
		if (ok[i])
			cleave_buf_addf(b,
			             "cleave_projection_dead_letters_total{"
			             "projection=\"%s\"} %lld\n",
			             st[i].name, (long long)st[i].dead_letters);
	help(b, "cleave_projection_applied_total", "counter",
	     "Events applied since the server started.");
	for (int i = 0; i < n; i++)
		if (ok[i])
			cleave_buf_addf(b,
			             "cleave_projection_applied_total{"
			             "projection=\"%s\"} %lld\n",
			             st[i].name,
			             (long long)st[i].applied_total);
	free(ok);
	free(st);
}

static void http(cleave_buf *b, cl_srv *s)
{
	help(b, "cleave_query_latency_seconds", "histogram",
	     "Query handler time (after any min_position wait), per query.");
	for (int i = 0; i < s->nqueries; i++) {
		char labels[128];
		snprintf(labels, sizeof(labels), "query=\"%s\"",
		         s->dom->queries[i].name);
		cleave_hist h;
		cleave_hist_copy(&h, &s->qhist[i]);
		hist(b, "cleave_query_latency_seconds", labels, &h,
		     cleave_hist_bounds_us, 1e-6);
	}
	help(b, "cleave_http_responses_total", "counter",
	     "HTTP responses by status code.");
	for (int c = 100; c < 600; c++) {
		uint64_t n = atomic_load(&s->http_codes[c]);
		if (n)
			cleave_buf_addf(b,
			             "cleave_http_responses_total{code=\"%d\"} "
			             "%llu\n",
			             c, (unsigned long long)n);
	}
	help(b, "cleave_http_requests_in_flight", "gauge",
	     "Requests being handled (including waiting ones).");
	cleave_buf_addf(b, "cleave_http_requests_in_flight %d\n",
	             atomic_load(&s->live_reqs));
}

void cl_metrics_hist(cleave_buf *b, const char *name, const char *text,
                     const cleave_hist *h)
{
	help(b, name, "histogram", text);
	hist(b, name, NULL, h, cleave_hist_bounds_us, 1e-6);
}

enum MHD_Result cl_h_metrics(cl_req *r)
{
	cl_srv *s = r->s;
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_reserve(&b, 16384);
	commands(&b, s);
	engine(&b, s);
	projections(&b, s);
	http(&b, s);
	cl_sse_metrics(s, &b);
	size_t len;
	char *body = cleave_buf_steal(&b, &len);
	if (!body)
		return cl_send_error(r, 500, "out_of_memory", "out of memory");
	return cl_send(r, MHD_HTTP_OK,
	               cl_resp("text/plain; version=0.0.4; charset=utf-8", body,
	                       len, true));
}
