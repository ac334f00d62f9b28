/*
 * guard.c — browser safety: what a web page open in the user's own
 * browser could send to a server on loopback is refused before routing,
 * and nothing is written.
 *
 * A server on 127.0.0.1 is out of reach of other machines, not of the
 * pages the user's browser opens.  Such a page can send, without asking
 * anyone (no CORS preflight): GET, HEAD and POST with a body typed
 * text/plain, application/x-www-form-urlencoded or multipart/form-data (a
 * form, fetch() in no-cors mode).  It cannot read the answer — unless it
 * rebinds its own name to 127.0.0.1 (DNS rebinding): then the browser
 * takes the server for the page's own origin, and the page reads every
 * answer, the read models and /events included.  Three checks close
 * this, each on every route and method, after the framing checks
 * (head.c) and the method and route checks (http.c):
 *
 *  1. Host.  An HTTP/1.1 request carries exactly one Host (else 400,
 *     RFC 9112 §3.2); HTTP/1.0 may omit it.  Its host part (or the
 *     authority of an absolute-form target, which RFC 9112 §3.2.2 says
 *     to use instead) must be one of this server's names: 127.0.0.1,
 *     localhost, [::1], the --listen address, or an --allow-host name.
 *     A rebinding page sends its own name: 403 forbidden_host.
 *  2. Origin.  Browsers send it on every cross-origin request and on
 *     every POST.  It must be this server's own origin — scheme http, a
 *     host of check 1, the port the server listens on (80 when absent) —
 *     or one given with --allow-origin; anything else, "null" included,
 *     is 403 forbidden_origin.  No Origin is fine (curl, the CLI, other
 *     programs; a browser's own navigation).
 *  3. Content-Type.  The only body Cleave reads is JSON, and the three
 *     types a page may send without a preflight are exactly what a
 *     forged form would use: anything but application/json (with any
 *     parameters) or no Content-Type at all is 415.
 *
 * Names are compared in guard.h's normal form, as text, never resolved.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "log.h"

/* ---- names ----------------------------------------------------------- */

/* Characters of a reg-name or IPv4 address (RFC 3986 §3.2.2: unreserved,
 * pct-encoded, sub-delims).  '@' (userinfo), '/', '?', '#', '[', ']',
 * spaces and controls are not among them. */
static bool host_char(unsigned char c)
{
	return isalnum(c) || (c && strchr("-._~%!$&'()*+,;=", c));
}

int cl_host_parse(const char *s, size_t n, char *out, size_t cap, long *port)
{
	const char *end = s + n, *p;
	size_t len;
	if (cap < 2)
		return -1;
	if (n && s[0] == '[') {
		char lit[INET6_ADDRSTRLEN + 1], canon[INET6_ADDRSTRLEN];
		struct in6_addr a;
		const char *rb = memchr(s, ']', n);
		if (!rb || (size_t)(rb - s - 1) >= sizeof(lit))
			return -1;
		memcpy(lit, s + 1, (size_t)(rb - s - 1));
		lit[rb - s - 1] = 0;
		if (inet_pton(AF_INET6, lit, &a) != 1 ||
		    !inet_ntop(AF_INET6, &a, canon, sizeof(canon)))
			return -1;
		if ((size_t)snprintf(out, cap, "[%s]", canon) >= cap)
			return -1;
		p = rb + 1;
	} else {
		for (p = s; p < end && *p != ':'; p++)
			if (!host_char((unsigned char)*p))
				return -1;
		len = (size_t)(p - s);
		if (len && s[len - 1] == '.')
			len--; /* "localhost." names "localhost" */
		if (len >= cap)
			return -1;
		for (size_t i = 0; i < len; i++)
			out[i] = (char)tolower((unsigned char)s[i]);
		out[len] = 0;
	}
	if (port)
		*port = -1;
	if (p == end)
		return 0;
	if (*p != ':' || !port)
		return -1;
	long v = 0;
	for (p++; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (v < 1000000)
			v = v * 10 + (*p - '0');
	}
	*port = p == end && end[-1] != ':' ? v : -1;
	return 0;
}

int cl_host_name(const char *s, size_t n, char *out, size_t cap)
{
	char lit[INET6_ADDRSTRLEN + 2];
	struct in6_addr a;
	if (n && n < sizeof(lit) - 2 && memchr(s, ':', n) && s[0] != '[') {
		/* a bare IPv6 literal, "::1" */
		memcpy(lit + 1, s, n);
		lit[n + 1] = 0;
		if (inet_pton(AF_INET6, lit + 1, &a) != 1)
			return -1;
		lit[0] = '[';
		lit[n + 1] = ']';
		s = lit;
		n += 2;
	}
	if (cl_host_parse(s, n, out, cap, NULL) || !out[0])
		return -1;
	return 0;
}

int cl_origin_parse(const char *s, size_t n, cl_origin *o)
{
	const char *sep = n >= 3 ? memmem(s, n, "://", 3) : NULL;
	size_t sl = sep ? (size_t)(sep - s) : 0;
	long port;
	memset(o, 0, sizeof(*o));
	if (!sl || sl >= sizeof(o->scheme) || !isalpha((unsigned char)s[0]))
		return -1;
	for (size_t i = 0; i < sl; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '+' && c != '-' && c != '.')
			return -1;
		o->scheme[i] = (char)tolower(c);
	}
	if (cl_host_parse(sep + 3, n - sl - 3, o->host, sizeof(o->host),
	                  &port) ||
	    !o->host[0] || port == 0 || port > 65535)
		return -1;
	if (port > 0)
		o->port = (unsigned)port;
	else if (!strcmp(o->scheme, "http"))
		o->port = 80;
	else if (!strcmp(o->scheme, "https"))
		o->port = 443;
	return 0;
}

void cl_origin_format(const cl_origin *o, char *out, size_t cap)
{
	if (o->port)
		snprintf(out, cap, "%s://%s:%u", o->scheme, o->host, o->port);
	else
		snprintf(out, cap, "%s://%s", o->scheme, o->host);
}

/* ---- the server's names ------------------------------------------------ */

static void add_host(cl_guard *g, const char *name)
{
	char h[CL_HOST_MAX];
	if (cl_host_name(name, strlen(name), h, sizeof(h)))
		return;
	for (int i = 0; i < g->nhosts; i++)
		if (!strcmp(g->host[i], h))
			return;
	if (g->nhosts < CL_HOSTS_MAX)
		memcpy(g->host[g->nhosts++], h, sizeof(h));
}

/* The address (in_addr or in6_addr) and port of an AF_INET or AF_INET6
 * address. */
static const void *sa_addr(const struct sockaddr *sa, unsigned *port)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)sa;
		*port = ntohs(a->sin6_port);
		return &a->sin6_addr;
	}
	const struct sockaddr_in *a = (const void *)sa;
	*port = ntohs(a->sin_port);
	return &a->sin_addr;
}

static bool is_wildcard(const struct sockaddr *sa)
{
	unsigned port;
	const void *a = sa_addr(sa, &port);
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *)a);
	return ((const struct in_addr *)a)->s_addr == htonl(INADDR_ANY);
}

void cl_guard_init(cl_srv *s, const struct sockaddr *sa)
{
	cl_guard *g = &s->guard;
	const cl_server_config *c = s->cfg;
	unsigned port;
	memset(g, 0, sizeof(*g));
	add_host(g, "127.0.0.1");
	add_host(g, "localhost");
	add_host(g, "::1");
	if (!is_wildcard(sa)) {
		/* the --listen address as written, and as the address bound */
		char name[CL_HOST_MAX], addr[INET6_ADDRSTRLEN + 2];
		const char *l = c->listen ? c->listen : "";
		const char *colon = strrchr(l, ':');
		size_t n = colon ? (size_t)(colon - l) : 0;
		if (n >= 2 && l[0] == '[' && l[n - 1] == ']') {
			l++;
			n -= 2;
		}
		if (n < sizeof(name)) {
			memcpy(name, l, n);
			name[n] = 0;
			add_host(g, name);
		}
		if (inet_ntop(sa->sa_family, sa_addr(sa, &port), addr,
		              sizeof(addr)))
			add_host(g, addr);
	} else if (!c->allow_hosts.n) {
		cl_logf(CLEAVE_LOG_WARN, NULL, NULL, -1,
		        "listening on every address (%s), but only requests "
		        "naming 127.0.0.1, localhost or [::1] as their Host "
		        "are answered: give the names clients use with "
		        "--allow-host",
		        c->listen);
	}
	for (int i = 0; i < c->allow_hosts.n; i++)
		add_host(g, c->allow_hosts.item[i]);
	sa_addr(sa, &port);
	atomic_init(&g->port, port);
	for (int i = 0; i < c->allow_origins.n && i < CL_CFG_LIST_MAX; i++) {
		const char *o = c->allow_origins.item[i];
		if (!cl_origin_parse(o, strlen(o), &g->origin[g->norigins]))
			g->norigins++;
	}
}

static bool host_allowed(const cl_guard *g, const char *h)
{
	for (int i = 0; i < g->nhosts; i++)
		if (!strcmp(g->host[i], h))
			return true;
	return false;
}

/* This server's own origin (http, one of its names, its port) or one
 * given with --allow-origin. */
static bool origin_allowed(const cl_srv *s, const char *v)
{
	const cl_guard *g = &s->guard;
	cl_origin o;
	if (cl_origin_parse(v, strlen(v), &o))
		return false;
	if (!strcmp(o.scheme, "http") && o.port == atomic_load(&g->port) &&
	    host_allowed(g, o.host))
		return true;
	for (int i = 0; i < g->norigins; i++)
		if (!strcmp(g->origin[i].scheme, o.scheme) &&
		    !strcmp(g->origin[i].host, o.host) &&
		    g->origin[i].port == o.port)
			return true;
	return false;
}

/* application/json, in any case, with any parameters. */
static bool is_json(const char *v)
{
	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, "application/json", 16))
		return false;
	v += 16;
	return !*v || *v == ';' || *v == ' ' || *v == '\t';
}

static void refuse(cl_head_err *e, unsigned status, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void refuse(cl_head_err *e, unsigned status, const char *code,
                   const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

bool cl_guard_check(cl_req *r, bool http11, cl_head_err *e)
{
	cl_srv *s = r->s;
	memset(e, 0, sizeof(*e));
	if (r->nhost > 1) {
		refuse(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		       "Host is given %u times; send it once (RFC 9112 3.2)",
		       r->nhost);
		return false;
	}
	if (!r->nhost && http11) {
		refuse(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		       "an HTTP/1.1 request needs a Host header (RFC 9112 "
		       "3.2)");
		return false;
	}
	const char *a = r->authority ? r->authority : r->host;
	size_t an = r->authority ? r->authority_len : a ? strlen(a) : 0;
	if (a) {
		char h[CL_HOST_MAX];
		long port;
		if (cl_host_parse(a, an, h, sizeof(h), &port)) {
			refuse(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
			       "Host '%.*s' is not host[:port]",
			       (int)(an > 100 ? 100 : an), a);
			return false;
		}
		if (!host_allowed(&s->guard, h)) {
			refuse(e, MHD_HTTP_FORBIDDEN, "forbidden_host",
			       "Host '%.*s' is not a name of this server "
			       "(a page's own name rebound to this address "
			       "is refused); name others with --allow-host",
			       (int)(an > 100 ? 100 : an), a);
			return false;
		}
	}
	if (r->norigin) {
		if (r->norigin > 1 || !origin_allowed(s, r->origin)) {
			refuse(e, MHD_HTTP_FORBIDDEN, "forbidden_origin",
			       "requests from the web page of origin '%.100s' "
			       "are refused: it is not this server's own "
			       "origin nor one given with --allow-origin",
			       r->norigin > 1 ? "(several)" : r->origin);
			return false;
		}
		r->cors = true;
	}
	if (r->nctype && (r->nctype > 1 || !is_json(r->ctype))) {
		refuse(e, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
		       "unsupported_media_type",
		       "Content-Type '%.100s' is not accepted: send JSON as "
		       "application/json (or no Content-Type)",
		       r->nctype > 1 ? "(several)" : r->ctype);
		return false;
	}
	return true;
}

/* ---- answers ----------------------------------------------------------- */

void cl_guard_headers(cl_req *r, struct MHD_Response *resp)
{
	if (!r->cors || !r->origin)
		return;
	MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
	MHD_add_response_header(resp, "Vary", "Origin");
	MHD_add_response_header(resp, "Access-Control-Expose-Headers",
	                        "X-Trace-Id, X-Command-Id, X-Cleave-Position, "
	                        "Idempotent-Replayed, Retry-After");
}

enum MHD_Result cl_h_options(cl_req *r)
{
	char allow[64];
	unsigned m = r->route ? r->route->methods : CL_M_GET | CL_M_POST;
	cl_allow_list(m, true, allow, sizeof(allow));
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	if (r->cors) {
		/* a CORS preflight from an allowed origin (never credentials:
		 * the token is a header, not a cookie) */
		MHD_add_response_header(resp, "Access-Control-Allow-Methods",
		                        allow);
		MHD_add_response_header(
		    resp, "Access-Control-Allow-Headers",
		    "Authorization, Content-Type, Idempotency-Key, If-Match, "
		    "X-Trace-Id, traceparent");
		MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
	}
	return cl_send(r, MHD_HTTP_NO_CONTENT, resp);
}
