/*
 * http.c — the HTTP front: MHD callbacks, a request's life, routing, auth,
 * bounded bodies, answers, and the deadline on slow clients.
 *
 * Threads: MHD's pool threads run every callback here; the engine's writer
 * and watcher threads run the completion callbacks of commands and waits
 * (commands.c, queries.c), which only record a result and resume the
 * connection.  No MHD thread ever waits for the engine.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#include "http.h"
#include "log.h"

int64_t cl_mono_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- requests ----------------------------------------------------------- */

static cl_req *req_new(cl_srv *s, const char *uri, struct MHD_Connection *conn)
{
	cl_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->uri = strdup(uri ? uri : "");
	if (!r->uri) {
		free(r);
		return NULL;
	}
	r->s = s;
	r->conn = conn;
	r->qindex = -1;
	atomic_init(&r->refs, 1);
	atomic_init(&r->resumed, false);
	pthread_mutex_init(&r->mu, NULL);
	atomic_fetch_add(&s->live_reqs, 1);
	return r;
}

void cl_req_ref(cl_req *r)
{
	atomic_fetch_add(&r->refs, 1);
}

void cl_req_unref(cl_req *r)
{
	if (atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&r->mu);
	free(r->early);
	free(r->uri);
	free(r->body);
	free(r->pbuf);
	free(r->out_body);
	free(r);
}

void cl_req_suspend(cl_req *r, cl_handler_fn cont)
{
	r->cont = cont;
	r->phase = CL_P_SUSPENDED;
	atomic_store(&r->resumed, false);
	MHD_suspend_connection(r->conn);
}

bool cl_req_resume(cl_req *r, int rc)
{
	if (atomic_exchange(&r->resumed, true))
		return false;
	r->async_rc = rc;
	MHD_resume_connection(r->conn);
	return true;
}

/* ---- answers ---------------------------------------------------------------
 */

unsigned cl_status_of(int rc)
{
	switch (rc) {
	case 0:
		return MHD_HTTP_OK;
	case CLEAVE_EINVAL:
	case CLEAVE_EBADJSON:
		return MHD_HTTP_BAD_REQUEST;
	case CLEAVE_ENOTFOUND:
		return MHD_HTTP_NOT_FOUND;
	case CLEAVE_EEXIST:
	case CLEAVE_ECONFLICT:
		return MHD_HTTP_CONFLICT;
	case CLEAVE_ETOOBIG:
		return MHD_HTTP_CONTENT_TOO_LARGE;
	case CLEAVE_EREJECTED:
		return MHD_HTTP_UNPROCESSABLE_CONTENT;
	case CLEAVE_EBUSY:
	case CLEAVE_ESHUTDOWN:
	case CLEAVE_EPARKED:
	case CLEAVE_EFAILED:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	case CLEAVE_ETIMEDOUT:
		return MHD_HTTP_GATEWAY_TIMEOUT;
	case CLEAVE_ENOSPC:
		return MHD_HTTP_INSUFFICIENT_STORAGE;
	case CLEAVE_EREADONLY: /* a query node: the writer takes these */
		return MHD_HTTP_MISDIRECTED_REQUEST;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

const char *cl_header(cl_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct MHD_Response *cl_resp(const char *ctype, char *body, size_t len,
                             bool own)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    len, body, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		if (own)
			free(body);
		return NULL;
	}
	if (ctype)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
		                        ctype);
	return resp;
}

/* The method as the client sent it (logs, messages). */
static const char *method_name(const cl_req *r)
{
	return r->method_str ? r->method_str : "?";
}

enum MHD_Result cl_send(cl_req *r, unsigned status, struct MHD_Response *resp)
{
	cl_srv *s = r->s;
	if (!resp)
		return MHD_NO; /* out of memory: MHD closes the connection */
	if (r->close || atomic_load(&s->stopping))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
		                        "close");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE &&
	    !MHD_get_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	/* every answer names its trace id (commands add theirs, which the
	 * writer may have taken from a replay) */
	if (r->trace_id[0] && !MHD_get_response_header(resp, "X-Trace-Id"))
		MHD_add_response_header(resp, "X-Trace-Id", r->trace_id);
	if (r->cors)
		cl_guard_headers(r, resp);
	if (r->route && r->route->handle == cl_h_query && r->qindex >= 0 &&
	    !MHD_get_response_header(resp, "X-Cleave-Position")) {
		int64_t pos;
		if (cleave_query_position(s->e, r->name, &pos) == 0) {
			char p[24];
			snprintf(p, sizeof(p), "%lld", (long long)pos);
			MHD_add_response_header(resp, "X-Cleave-Position", p);
		}
	}
	if (status < 600)
		atomic_fetch_add_explicit(&s->http_codes[status], 1,
		                          memory_order_relaxed);
	r->phase = CL_P_DONE;
	cl_conn_receiving(r->track, false);
	enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	if (cl_log_level() <= CLEAVE_LOG_DEBUG) {
		int64_t us = r->t0_us ? cl_mono_now_us() - r->t0_us : 0;
		char path[256];
		snprintf(path, sizeof(path), "%s", r->uri);
		cl_logf(CLEAVE_LOG_DEBUG, r->trace_id, NULL, -1,
		        "%.32s %s %u %.3f ms", method_name(r), path, status,
		        (double)us / 1000.0);
	}
	return ret;
}

enum MHD_Result cl_send_json(cl_req *r, unsigned status, char *body, size_t len)
{
	return cl_send(r, status, cl_resp("application/json", body, len, true));
}

static char *error_json(const char *code, const char *msg, size_t *len)
{
	cleave_buf b = CLEAVE_BUF_INIT;
	cleave_buf_add_error(&b, code, msg);
	return cleave_buf_steal(&b, len);
}

struct MHD_Response *cl_error_resp(const char *code, const char *msg)
{
	size_t len;
	char *body = error_json(code, msg, &len);
	return body ? cl_resp("application/json", body, len, true) : NULL;
}

static enum MHD_Result send_errorv(cl_req *r, unsigned status, const char *code,
                                   int64_t pos, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	struct MHD_Response *resp = cl_error_resp(code, msg);
	if (resp && pos >= 0) {
		char p[24];
		snprintf(p, sizeof(p), "%lld", (long long)pos);
		MHD_add_response_header(resp, "X-Cleave-Position", p);
	}
	/* 501 is the client's method, not a failure of ours */
	if (status >= 500 && status != MHD_HTTP_NOT_IMPLEMENTED)
		cl_logf(status == 503 ? CLEAVE_LOG_WARN : CLEAVE_LOG_ERROR,
		        r->trace_id, NULL, pos, "%.32s %s: %u %s: %s",
		        method_name(r), r->uri, status, code, msg);
	return cl_send(r, status, resp);
}

enum MHD_Result cl_send_error(cl_req *r, unsigned status, const char *code,
                              const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum MHD_Result ret = send_errorv(r, status, code, -1, fmt, ap);
	va_end(ap);
	return ret;
}

enum MHD_Result cl_send_error_pos(cl_req *r, unsigned status, const char *code,
                                  int64_t pos, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum MHD_Result ret = send_errorv(r, status, code, pos, fmt, ap);
	va_end(ap);
	return ret;
}

/* ---- trace ids ------------------------------------------------------------
 */

static uint64_t rand64(void)
{
	static _Thread_local uint64_t x;
	if (!x) {
		if (getrandom(&x, sizeof(x), 0) != sizeof(x))
			x = (uint64_t)cl_mono_now_us() ^
			    (uint64_t)(uintptr_t)&x;
		x |= 1;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return x * 0x2545F4914F6CDD1DULL;
}

static void random_hex32(char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t a = rand64(), b = rand64();
	for (int i = 0; i < 16; i++) {
		out[i] = hex[(a >> (i * 4)) & 15];
		out[16 + i] = hex[(b >> (i * 4)) & 15];
	}
	out[32] = 0;
}

static bool is_lhex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* W3C traceparent "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex
 * flags>" (lowercase; a later version may append "-…").  Copies the
 * trace-id; false when malformed (the header is then ignored, as the
 * W3C spec asks). */
static bool traceparent_id(const char *v, char *out)
{
	size_t n = strlen(v);
	if (n < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' ||
	    (n > 55 && v[55] != '-'))
		return false;
	if (!is_lhex(v, 2) || !strncmp(v, "ff", 2) || !is_lhex(v + 3, 32) ||
	    !is_lhex(v + 36, 16) || !is_lhex(v + 53, 2))
		return false;
	if (!strncmp(v, "00", 2) && n != 55)
		return false;
	if (!strncmp(v + 3, "00000000000000000000000000000000", 32) ||
	    !strncmp(v + 36, "0000000000000000", 16))
		return false;
	memcpy(out, v + 3, 32);
	out[32] = 0;
	return true;
}

static bool trace_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CLEAVE_TRACE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '-' ||
		      c == '.' || c == ':'))
			return false;
	}
	return true;
}

/* Sets r->trace_id from traceparent, else X-Trace-Id, else a new one.
 * A malformed X-Trace-Id is noted (r->bad_trace_id): a 400 on commands
 * (it would be stored), ignored elsewhere. */
static void take_trace_id(cl_req *r)
{
	const char *tp = cl_header(r, "traceparent");
	if (tp && traceparent_id(tp, r->trace_id))
		return;
	const char *x = cl_header(r, "X-Trace-Id");
	if (x && trace_id_ok(x)) {
		snprintf(r->trace_id, sizeof(r->trace_id), "%s", x);
		return;
	}
	random_hex32(r->trace_id);
	r->bad_trace_id = x != NULL;
}

/* ---- auth -------------------------------------------------------------------
 */

/* Compares in time that depends only on the lengths. */
static bool token_eq(const char *a, size_t an, const char *b, size_t bn)
{
	unsigned char d = an != bn;
	for (size_t i = 0; i < bn; i++)
		d |= (unsigned char)(i < an ? a[i] : 0) ^ (unsigned char)b[i];
	return d == 0;
}

static bool authorized(cl_req *r)
{
	const char *tok = r->s->cfg->auth_token;
	unsigned f = r->route->flags;
	if (!tok || !*tok)
		return true;
	if (!(f & CL_R_ADMIN) && !((f & CL_R_QUERY) && r->s->cfg->auth_queries))
		return true;
	const char *h = cl_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7))
		return false;
	h += 7;
	while (*h == ' ')
		h++;
	return token_eq(h, strlen(h), tok, strlen(tok));
}

/* ---- MHD callbacks ----------------------------------------------------------
 */

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
	cl_srv *s = cls;
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	cl_conn *track = ci ? ci->socket_context : NULL;
	cl_req *r = req_new(s, uri, conn);
	if (r) {
		r->track = track;
		r->target_at = (uintptr_t)uri;
	}
	cl_conn_hold(track, r);
	return r;
}

void cl_req_drop(cl_req *r)
{
	cl_srv *s = r->s;
	cl_waiter_del(s, r);
	/* a pending engine callback must not resume what MHD dropped */
	atomic_store(&r->resumed, true);
	atomic_fetch_sub(&s->live_reqs, 1);
	if (r->busy)
		atomic_fetch_sub(&s->busy_reqs, 1);
	cl_req_unref(r);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	cl_req *r = *con_cls;
	(void)cls;
	(void)conn;
	*con_cls = NULL;
	if (!r)
		return;
	cl_conn_release(r->track, r);
	cl_conn_receiving(r->track, true);
	if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK &&
	    toe != MHD_REQUEST_TERMINATED_CLIENT_ABORT &&
	    toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN &&
	    toe != MHD_REQUEST_TERMINATED_READ_ERROR)
		cl_logf(CLEAVE_LOG_DEBUG, r->trace_id, NULL, -1,
		        "request ended early (MHD code %d)", (int)toe);
	cl_req_drop(r);
}

/* Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET. */
static unsigned method_of(const char *m)
{
	if (!strcmp(m, "GET"))
		return CL_M_GET;
	if (!strcmp(m, "POST"))
		return CL_M_POST;
	if (!strcmp(m, "HEAD"))
		return CL_M_HEAD;
	if (!strcmp(m, "OPTIONS"))
		return CL_M_OPTIONS;
	return CL_M_OTHER;
}

void cl_allow_list(unsigned allow, bool options, char *out, size_t n)
{
	out[0] = 0;
	if (allow & CL_M_GET)
		snprintf(out + strlen(out), n - strlen(out), "GET, HEAD");
	if (allow & CL_M_POST)
		snprintf(out + strlen(out), n - strlen(out), "%sPOST",
		         out[0] ? ", " : "");
	if (options)
		snprintf(out + strlen(out), n - strlen(out), "%sOPTIONS",
		         out[0] ? ", " : "");
}

/* Notes why r is refused before routing; answered by finish(), once the
 * body (if any) is read and dropped.  False when out of memory. */
static bool refuse(cl_req *r, unsigned status, const char *code,
                   const char *msg)
{
	if (!r->early && !(r->early = calloc(1, sizeof(*r->early))))
		return false;
	r->early->status = status;
	r->early->code = code;
	snprintf(r->early->msg, sizeof(r->early->msg), "%s", msg);
	return true;
}

/* Splits r->uri into path and query string.  Origin-form ("/path?q");
 * absolute-form ("http://host:port/path?q", RFC 9112 §3.2.2), whose
 * authority is kept for the Host check; "*" (OPTIONS only).  False for
 * anything else. */
static bool split_target(cl_req *r)
{
	const char *t = r->uri;
	if (!strncasecmp(t, "http://", 7)) {
		char h[CL_HOST_MAX];
		long port;
		r->authority = t + 7;
		r->authority_len = strcspn(r->authority, "/?#");
		if (cl_host_parse(r->authority, r->authority_len, h, sizeof(h),
		                  &port))
			return false;
		t = r->authority + r->authority_len;
		if (*t && *t != '/' && *t != '?')
			return false;
	} else if (!strcmp(t, "*")) {
		if (r->method != CL_M_OPTIONS)
			return false;
	} else if (t[0] != '/') {
		return false;
	}
	const char *q = strchr(t, '?');
	r->path = t;
	r->path_len = q ? (size_t)(q - t) : strlen(t);
	if (q)
		r->qs = q + 1;
	return true;
}

/* The checks before routing, in their order (after the framing ones):
 * 501 for a method no route takes, 400 for a target that is not one,
 * 414 and 400 for a path too long or badly escaped, 405 for a method
 * the route does not take, then Host, Origin and Content-Type
 * (guard.c).  Notes the first refusal; false when out of memory. */
static bool route(cl_req *r, const char *version)
{
	char path[1024], m[160];
	size_t plen;
	if (r->method == CL_M_OTHER) {
		snprintf(m, sizeof(m),
		         "method '%.32s' is not implemented by this server "
		         "(GET, HEAD, POST, OPTIONS)",
		         r->method_str);
		return refuse(r, MHD_HTTP_NOT_IMPLEMENTED, "not_implemented",
		              m);
	}
	if (!split_target(r))
		return refuse(
		    r, MHD_HTTP_BAD_REQUEST, "invalid_argument",
		    "the request target must be a path (/...), an "
		    "absolute http:// URI, or * for OPTIONS (RFC 9112 "
		    "3.2)");
	if ((plen = r->path_len) >= sizeof(path))
		return refuse(r, MHD_HTTP_URI_TOO_LONG, "too_large",
		              "path longer than 1023 bytes");
	memcpy(path, r->path, plen);
	if (!plen) /* "http://host" and "http://host?q" */
		path[plen++] = '/';
	if (cl_pct_decode(path, plen, false) < 0)
		return refuse(r, MHD_HTTP_BAD_REQUEST, "invalid_argument",
		              "malformed percent-escape in the path");
	r->route =
	    cl_route_find(path, r->method, r->name, sizeof(r->name), &r->allow);
	if (!r->route && r->allow)
		return refuse(r, MHD_HTTP_METHOD_NOT_ALLOWED,
		              "method_not_allowed",
		              "this route does not take that method");
	cl_head_err e;
	if (!cl_guard_check(r, version && strcmp(version, "HTTP/1.0"), &e)) {
		if (!refuse(r, e.status, e.code, e.msg))
			return false;
		r->route = NULL; /* nothing of the route runs */
	}
	return true;
}

/* First call of a request (headers read).  MHD 0.9.75 gives up keep-alive
 * for any answer queued on this first call when a body follows, so only a
 * head that must be refused (bad framing, too large: head.c) and a body
 * that is too large by its Content-Length are answered here — the latter
 * without reading it, when the client waits for "100 Continue" or the
 * excess is past CL_BODY_DRAIN_MAX (the connection then closes);
 * everything else is answered once the body has been read (and, past
 * --max-body, dropped), in finish(). */
static enum MHD_Result begin(cl_req *r, const char *method, const char *url,
                             const char *version)
{
	cl_srv *s = r->s;
	cl_head_err he;
	r->t0_us = cl_mono_now_us();
	r->method_str = method;
	r->method = method_of(method);
	take_trace_id(r);
	if (!cl_head_check(r, method, url, version, &he)) {
		r->close = he.close;
		return cl_send_error(r, he.status, he.code, "%s", he.msg);
	}
	if (!route(r, version))
		return MHD_NO;
	const char *cl = cl_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		unsigned long long n = strtoull(cl, &end, 10);
		const char *ex = cl_header(r, MHD_HTTP_HEADER_EXPECT);
		bool waits = ex && !strcasecmp(ex, "100-continue");
		if (!*end && end != cl && n > s->cfg->max_body && !waits &&
		    n - s->cfg->max_body <= CL_BODY_DRAIN_MAX) {
			/* read and drop it, then answer: a client that writes
			 * its whole body before reading would otherwise see
			 * the connection reset instead of the 413 */
			r->body_too_big = true;
		} else if (*end || end == cl || n > s->cfg->max_body) {
			return cl_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
			                     "too_large",
			                     "request body is larger than the "
			                     "limit of %zu bytes (--max-body)",
			                     s->cfg->max_body);
		}
		if (n && !r->body_too_big && !r->early && r->route &&
		    (r->route->flags & CL_R_BODY)) {
			r->body = malloc((size_t)n + 1);
			if (!r->body)
				return MHD_NO;
			r->body_cap = (size_t)n + 1;
		}
	}
	r->phase = CL_P_BODY;
	return MHD_YES;
}

/* The whole request is in: answer a refusal noted before routing, OPTIONS,
 * an unknown route, the token, or run the route's handler. */
static enum MHD_Result finish(cl_req *r)
{
	cl_srv *s = r->s;
	cl_conn_receiving(r->track, false);
	r->busy = true;
	atomic_fetch_add(&s->busy_reqs, 1);
	if (r->early) {
		struct MHD_Response *resp =
		    cl_error_resp(r->early->code, r->early->msg);
		if (resp && r->early->status == MHD_HTTP_METHOD_NOT_ALLOWED) {
			char a[32];
			cl_allow_list(r->allow, false, a, sizeof(a));
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, a);
		}
		return cl_send(r, r->early->status, resp);
	}
	/* OPTIONS needs no token: a browser's CORS preflight never carries
	 * one, and the answer says no more than Allow */
	if (r->method == CL_M_OPTIONS && (r->route || !strcmp(r->uri, "*")))
		return cl_h_options(r);
	if (!r->route)
		return cl_send_error(
		    r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no route for %.32s %.*s", method_name(r),
		    (int)(r->path_len > 200 ? 200 : r->path_len),
		    r->path_len ? r->path : "/");
	if (!authorized(r)) {
		struct MHD_Response *resp = cl_error_resp(
		    "unauthorized",
		    "this route needs 'Authorization: Bearer <token>' "
		    "(--auth-token)");
		if (resp)
			MHD_add_response_header(
			    resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			    "Bearer realm=\"cleave\"");
		return cl_send(r, MHD_HTTP_UNAUTHORIZED, resp);
	}
	if (r->body_too_big)
		return cl_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large",
		                     "request body is larger than the limit "
		                     "of %zu bytes (--max-body)",
		                     s->cfg->max_body);
	if (r->bad_trace_id && r->route->handle == cl_h_command)
		return cl_send_error(r, MHD_HTTP_BAD_REQUEST,
		                     "invalid_argument",
		                     "X-Trace-Id must be 1 to %d characters "
		                     "of [A-Za-z0-9_.:-]",
		                     CLEAVE_TRACE_ID_MAX);
	return r->route->handle(r);
}

/* Appends a body chunk, bounded by --max-body.  Past the limit the rest
 * is read and dropped (MHD cannot answer mid-body) up to
 * CL_BODY_DRAIN_MAX bytes; beyond that the connection is closed. */
static enum MHD_Result body_chunk(cl_req *r, const char *data, size_t n)
{
	size_t max = r->s->cfg->max_body;
	if (r->early) {
		/* refused before routing: read and dropped like an oversized
		 * body, so that the client sees why */
		r->discarded += n;
		return r->discarded > CL_BODY_DRAIN_MAX ? MHD_NO : MHD_YES;
	}
	if (!r->route || !(r->route->flags & CL_R_BODY)) {
		/* a body nobody reads: dropped, bounded like any other */
		r->discarded += n;
		return r->discarded > max ? MHD_NO : MHD_YES;
	}
	if (r->body_too_big || r->body_len + n > max) {
		r->body_too_big = true;
		r->discarded += n;
		return r->discarded > CL_BODY_DRAIN_MAX ? MHD_NO : MHD_YES;
	}
	if (r->body_len + n + 1 > r->body_cap) {
		size_t cap = r->body_cap ? r->body_cap : 4096;
		while (cap < r->body_len + n + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		char *p = realloc(r->body, cap);
		if (!p)
			return MHD_NO;
		r->body = p;
		r->body_cap = cap;
	}
	memcpy(r->body + r->body_len, data, n);
	r->body_len += n;
	r->body[r->body_len] = 0;
	return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
	cl_srv *s = cls;
	cl_req *r = *con_cls;
	if (!r) {
		/* no record from the URI callback (out of memory there) */
		r = req_new(s, url, conn);
		if (!r)
			return MHD_NO;
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		    conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		r->track = ci ? ci->socket_context : NULL;
		cl_conn_hold(r->track, r);
		*con_cls = r;
	}
	r->conn = conn;
	switch (r->phase) {
	case CL_P_NEW:
		return begin(r, method, url, version);
	case CL_P_BODY:
		if (*upload_data_size) {
			enum MHD_Result ret =
			    body_chunk(r, upload_data, *upload_data_size);
			*upload_data_size = 0;
			return ret;
		}
		return finish(r);
	case CL_P_SUSPENDED:
		if (!atomic_load(&r->resumed))
			return MHD_YES;
		return r->cont(r);
	case CL_P_DONE:
		if (*upload_data_size)
			*upload_data_size = 0;
		return MHD_YES;
	}
	return MHD_NO;
}

/* ---- the daemon -------------------------------------------------------------
 */

int cl_http_start(cl_srv *s, const struct sockaddr *sa, bool ipv6)
{
	const cl_server_config *c = s->cfg;
	/* poll(), not epoll: with libmicrohttpd 0.9.75 (Debian 12) in epoll
	 * mode, under hundreds of connections suspended and resumed from the
	 * completer thread, some resumed connections were never read again —
	 * their next request unread in the socket while both HTTP threads
	 * slept in epoll_wait, until a timeout or any other event woke them
	 * (reproduced within a few rounds of 2 s at 256 connections; with
	 * poll() not in 18; tests/e2e/test_liveness.py).  Suspended
	 * connections leave the poll set, so clients waiting on commands or
	 * min_position cost nothing per wake-up; the open idle ones cost a
	 * pollfd each. */
	unsigned flags = MHD_USE_POLL | MHD_USE_INTERNAL_POLLING_THREAD |
	                 MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
	                 MHD_USE_ERROR_LOG;
	if (ipv6)
		flags |= MHD_USE_IPv6;
	/* MHD's pool holds the request line, headers and read buffer; the
	 * header limit itself is checked by MHD against what is left.  MHD
	 * 0.9.75 zeroes the pool for every keep-alive request, so it is kept
	 * small: the limit plus 8 KiB (a 16 KiB limit gives a 24 KiB pool,
	 * where 48 KiB cost 15% of a product lookup's cycles). */
	size_t pool = c->max_header + 8192;
	cl_guard_init(s, sa);
	s->header_deadline_us = (int64_t)c->idle_timeout * 1000000;
	s->d = MHD_start_daemon(
	    flags, 0, NULL, NULL, access_cb, s, MHD_OPTION_EXTERNAL_LOGGER,
	    cl_log_mhd, s, MHD_OPTION_SOCK_ADDR, sa,
	    MHD_OPTION_THREAD_POOL_SIZE,
	    (unsigned)(c->http_threads > 1 ? c->http_threads : 0),
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->idle_timeout,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_URI_LOG_CALLBACK,
	    uri_cb, s, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
	    MHD_OPTION_NOTIFY_CONNECTION, cl_conn_notify, s, MHD_OPTION_END);
	if (!s->d)
		return -1;
	const union MHD_DaemonInfo *di =
	    MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : 0;
	atomic_store(&s->guard.port, s->port);
	return 0;
}
