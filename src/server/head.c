/*
 * head.c — checks on a request's head before anything runs: the framing
 * headers (request smuggling) and the size limit.
 *
 * libmicrohttpd 0.9.75 frames a body by the first Transfer-Encoding when
 * there is one (ignoring Content-Length), else by the first
 * Content-Length, and reads whatever follows as the next request.  A
 * proxy in front that frames the same bytes by the other header would
 * see other requests than we do: the request-smuggling desync.  RFC 9112
 * §6.1 and §6.3 ask for 400 and a closed connection instead, which is
 * what the access handler's first call answers here, before any route
 * runs.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/http.h"

typedef struct scan {
	cl_head_err *err;
	size_t bytes; /* request line and headers, for --max-header */
	int ncl, nte;
	const char *te; /* the first Transfer-Encoding value */
	size_t te_len;
} scan;

static void fail(cl_head_err *e, unsigned status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(cl_head_err *e, unsigned status, const char *code,
                 const char *fmt, ...)
{
	va_list ap;
	if (e->status)
		return; /* the first problem found is the one reported */
	e->status = status;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

static bool name_is(const char *k, size_t n, const char *name)
{
	return n == strlen(name) && !strncasecmp(k, name, n);
}

/* RFC 9110 §5.1: a field name is a token.  MHD 0.9.75 keeps whatever
 * precedes the colon, so "Transfer-Encoding : chunked" is a header named
 * "Transfer-Encoding " that MHD does not frame by, while a proxy may;
 * RFC 9112 §5.1 asks for 400 on whitespace there. */
static bool is_token(const char *s, size_t n)
{
	if (!n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr("!#$%&'*+-.^_`|~", c)) ||
		    !c)
			return false;
	}
	return true;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind,
                                   const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
	scan *x = cls;
	(void)kind;
	x->bytes += key_size + value_size + 4;
	if (!is_token(key, key_size)) {
		fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "header name '%.*s' is not a token (no spaces, controls "
		     "or separators; RFC 9110 5.1)",
		     (int)(key_size > 64 ? 64 : key_size), key);
		x->err->close = true;
	}
	if (name_is(key, key_size, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
		x->ncl++;
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		if (!x->nte++) {
			x->te = value;
			x->te_len = value_size;
		}
	}
	return MHD_YES;
}

/* Transfer-Encoding must be "chunked" (in any case): chunked must be the
 * last coding (RFC 9112 §6.3) and it is the only one MHD decodes.  MHD
 * compares the whole value, trailing whitespace included, and reads the
 * body of any other value until the connection closes, so nothing else
 * is accepted. */
static bool te_is_chunked(const char *v, size_t n)
{
	return n == 7 && !strncasecmp(v, "chunked", 7);
}

static void check_framing(const scan *x, const char *version, cl_head_err *e)
{
	if (x->nte > 1)
		fail(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "Transfer-Encoding is given %d times; send it once "
		     "(RFC 9112 6.3)",
		     x->nte);
	else if (x->nte && x->ncl)
		fail(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "a request must not carry both Transfer-Encoding and "
		     "Content-Length (RFC 9112 6.3)");
	else if (x->ncl > 1)
		fail(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "Content-Length is given %d times; send it once "
		     "(RFC 9112 6.3)",
		     x->ncl);
	else if (x->nte && !te_is_chunked(x->te, x->te_len))
		fail(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "Transfer-Encoding must be 'chunked', the only coding "
		     "this server decodes (RFC 9112 6.3)");
	else if (x->nte && !strcmp(version, MHD_HTTP_VERSION_1_0))
		fail(e, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "Transfer-Encoding is not allowed in an HTTP/1.0 "
		     "request (RFC 9112 6.1)");
	if (e->status)
		e->close = true;
}

bool cl_head_check(cl_req *r, const char *method, const char *url,
                   const char *version, cl_head_err *err)
{
	const cl_server_config *cfg = r->s->cfg;
	scan x = {err, 0, 0, 0, NULL, 0};
	(void)url;
	memset(err, 0, sizeof(*err));
	x.bytes = strlen(method) + strlen(r->uri) + 12;
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &x);
	check_framing(&x, version ? version : "", err);
	/* --max-header: MHD's own limit (its memory pool, a little larger)
	 * answers without our error JSON, so we check the real figure */
	if (x.bytes > cfg->max_header)
		fail(err, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, "too_large",
		     "request line and headers are larger than the limit of "
		     "%zu bytes (--max-header)",
		     cfg->max_header);
	return err->status == 0;
}
