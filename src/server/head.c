/*
 * head.c — checks on a request's head before anything runs: the framing
 * headers (request smuggling), NUL bytes, and the size limit.
 *
 * Framing.  libmicrohttpd 0.9.75 frames a body by the first
 * Transfer-Encoding when there is one (ignoring Content-Length), else by
 * the first Content-Length, and reads whatever follows as the next
 * request.  A proxy in front that frames the same bytes by the other
 * header would see other requests than we do: the request-smuggling
 * desync.  RFC 9112 §6.1 and §6.3 ask for 400 and a closed connection
 * instead, which is what the access handler's first call answers here,
 * before any route runs.
 *
 * NUL bytes.  MHD parses the head in place, in its read buffer, and hands
 * out C strings whose lengths are strlen()s (MHD_get_connection_values_n
 * too).  A NUL inside the target or a header value silently cuts it:
 * "POST /commands/Restock<NUL>junk" would run Restock, and
 * "Idempotency-Key: a<NUL>b" would be key "a".  The bytes cut off are
 * still in the buffer, between the strings MHD hands out, so we look for
 * them there.  The head is [method, method + its size
 * (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE)); only the blanks MHD
 * overwrote lie between the method and the target the URI callback saw
 * ("GE<NUL>T" would be method "GE"); the version starts one byte (the
 * space MHD overwrote) after that target; each header name starts one or
 * two bytes (its line end, CR LF or LF, which MHD overwrote with NULs)
 * after the end of the previous line's text; the head ends two to four
 * bytes (the last line end and the empty line) after the last line's
 * text.  Anything more there, or a byte that is
 * not NUL, is text MHD cut off: 400.  (Undetectable: a NUL just before a
 * bare-LF line end, "a<NUL>\n", which looks like "a\r\n" — the value is
 * then the same as without the NUL.)  A header that is not where a line
 * starts is a folded one (obs-fold: MHD moves its name out of the buffer,
 * and appends the continuation to the name), refused too, as RFC 9112
 * §5.2 allows.  A pointer outside the head means a layout we do not know
 * (another MHD): that stretch is not checked rather than refused.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http.h"

typedef struct scan {
	cl_req *r;
	cl_head_err *err;
	size_t bytes; /* request line and headers, for --max-header */
	int ncl, nte;
	const char *te; /* the first Transfer-Encoding value */
	size_t te_len;

	/* NUL bytes (see above); addresses in MHD's buffer */
	uintptr_t lo, hi; /* the head; hi 0: its place is not known */
	uintptr_t end;    /* the end of the previous line's text; 0: unknown */
	const char *prev; /* that line's header name (NULL: request line) */
	size_t prev_len;
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

static bool inside(const scan *x, uintptr_t a)
{
	return x->hi && a >= x->lo && a < x->hi;
}

/* True when [from, to) is between min and max bytes, all NUL: a line end
 * MHD overwrote, and nothing it cut off. */
static bool only_nuls(uintptr_t from, uintptr_t to, size_t min, size_t max)
{
	if (to < from || to - from < min || to - from > max)
		return false;
	for (const char *p = (const char *)from; p != (const char *)to; p++)
		if (*p)
			return false;
	return true;
}

/* The line whose text ended at x->end held a NUL (text after it). */
static void nul_in_prev(scan *x)
{
	if (x->prev)
		fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "header '%.*s' contains a NUL byte", (int)x->prev_len,
		     x->prev);
	else
		fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_argument",
		     "the request line contains a NUL byte");
	x->err->close = true;
}

/* One header's place: name right after the previous line's end, then
 * the colon (a NUL now) and blanks up to the value. */
static void check_place(scan *x, const char *key, size_t key_size,
                        const char *value)
{
	uintptr_t k = (uintptr_t)key, v = (uintptr_t)value;
	size_t n = key_size > 64 ? 64 : key_size;
	if (!inside(x, v)) {
		x->end = 0; /* unknown layout: not checked */
		return;
	}
	if (!inside(x, k)) {
		fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_header",
		     "header '%.*s' is folded over several lines (obsolete "
		     "line folding, RFC 9112 5.2)",
		     (int)n, key);
		x->err->close = true;
		return;
	}
	if (x->end && !only_nuls(x->end, k, 1, 2)) {
		nul_in_prev(x);
		return;
	}
	const char *p = key + key_size;
	if (v <= (uintptr_t)p || *p) {
		x->end = 0;
		return;
	}
	for (p++; (uintptr_t)p < v; p++)
		if (*p != ' ' && *p != '\t') {
			fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_header",
			     "header '%.*s' contains a NUL byte", (int)n, key);
			x->err->close = true;
			return;
		}
	x->end = v + strlen(value);
	x->prev = key;
	x->prev_len = n;
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
	if (x->hi)
		check_place(x, key, key_size, value);
	if (name_is(key, key_size, MHD_HTTP_HEADER_CONTENT_LENGTH)) {
		x->ncl++;
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_TRANSFER_ENCODING)) {
		if (!x->nte++) {
			x->te = value;
			x->te_len = value_size;
		}
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_HOST)) {
		if (!x->r->nhost++)
			x->r->host = value;
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_ORIGIN)) {
		if (!x->r->norigin++)
			x->r->origin = value;
	} else if (name_is(key, key_size, MHD_HTTP_HEADER_CONTENT_TYPE)) {
		if (!x->r->nctype++)
			x->r->ctype = value;
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

/* Where the head lies in MHD's buffer, and whether the target the URI
 * callback saw is all of it: the version must follow it after one byte. */
static void check_target(scan *x, cl_req *r, const char *method,
                         const char *url, const char *version)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
	    r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	if (!ci || !version)
		return;
	x->lo = (uintptr_t)method;
	x->hi = x->lo + ci->header_size;
	uintptr_t t = r->target_at, v = (uintptr_t)version;
	if (!inside(x, v) || !inside(x, t) || (uintptr_t)url != t) {
		x->hi = 0; /* not the layout we know */
		return;
	}
	/* the method ends where the blanks before the target start */
	for (const char *p = method + strlen(method); (uintptr_t)p < t; p++)
		if (*p && *p != ' ' && *p != '\t') {
			fail(x->err, MHD_HTTP_BAD_REQUEST, "invalid_argument",
			     "a NUL byte in the method");
			x->err->close = true;
			return;
		}
	if (v != t + strlen(r->uri) + 1) {
		bool query = strchr(r->uri, '?') != NULL;
		fail(x->err, MHD_HTTP_BAD_REQUEST,
		     query ? "invalid_parameter" : "invalid_argument",
		     "a NUL byte in the %s (percent-encode it, or better, "
		     "leave it out)",
		     query ? "query string" : "request target");
		x->err->close = true;
		return;
	}
	x->end = v + strlen(version);
}

bool cl_head_check(cl_req *r, const char *method, const char *url,
                   const char *version, cl_head_err *err)
{
	const cl_server_config *cfg = r->s->cfg;
	scan x;
	memset(&x, 0, sizeof(x));
	memset(err, 0, sizeof(*err));
	x.r = r;
	x.err = err;
	x.bytes = strlen(method) + strlen(r->uri) + 12;
	check_target(&x, r, method, url, version);
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &x);
	/* after the last line: its end and the empty line */
	if (x.hi && x.end && !only_nuls(x.end, x.hi, 2, 4))
		nul_in_prev(&x);
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
