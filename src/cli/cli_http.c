/*
 * cli_http.c — a minimal HTTP/1.1 client for `--server URL`.
 *
 * One request per connection ("Connection: close"), which is all an
 * operator's tool needs.  The response is complete at Content-Length, at
 * the last chunk of a chunked body, or when the server closes; a server
 * that keeps the connection open anyway is handled by the first two.
 * Every wait (connect, send, each read) is bounded by the timeout, and the
 * response is bounded in size: a server that stalls or floods gives a
 * clear error, never a hung or exhausted operator shell.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"

typedef struct url {
	char host[256];
	char port[8];
	char prefix[512]; /* path before the target, without a trailing '/' */
} url;

static int fail(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, cap, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_url(const char *s, url *u, char *err, size_t cap)
{
	memset(u, 0, sizeof(*u));
	if (strncasecmp(s, "http://", 7))
		return fail(err, cap, "'%s' is not an http:// URL", s);
	s += 7;
	const char *hend;
	if (*s == '[') { /* [IPv6] */
		hend = strchr(s, ']');
		if (!hend)
			return fail(err, cap, "unclosed '[' in the URL");
		s++;
	} else {
		hend = s + strcspn(s, ":/?#");
	}
	size_t hl = (size_t)(hend - s);
	if (hl == 0 || hl >= sizeof(u->host))
		return fail(err, cap, "no host in the URL");
	memcpy(u->host, s, hl);
	s = hend + (*hend == ']');
	strcpy(u->port, "80");
	if (*s == ':') {
		s++;
		size_t pl = strspn(s, "0123456789");
		long port = pl && pl < 6 ? strtol(s, NULL, 10) : 0;
		if (port < 1 || port > 65535)
			return fail(err, cap, "bad port in the URL");
		snprintf(u->port, sizeof(u->port), "%ld", port);
		s += pl;
	}
	if (*s && *s != '/')
		return fail(err, cap, "unexpected '%c' in the URL", *s);
	size_t pl = strcspn(s, "?#");
	while (pl && s[pl - 1] == '/')
		pl--;
	if (pl >= sizeof(u->prefix))
		return fail(err, cap, "URL path too long");
	memcpy(u->prefix, s, pl);
	return 0;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline; 0 ready, -1 timeout or
 * interrupted (errno ETIMEDOUT / EINTR). */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		struct pollfd p = {fd, events, 0};
		int r = poll(&p, 1, (int)(left > 1000 ? 1000 : left));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -1;
		if (cli_interrupted) {
			errno = EINTR;
			return -1;
		}
	}
}

static int dial(const url *u, int timeout_ms, char *err, size_t cap)
{
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int g = getaddrinfo(u->host, u->port, &hints, &res);
	if (g)
		return fail(err, cap, "cannot resolve %s: %s", u->host,
		            gai_strerror(g));
	int fd = -1, last = 0;
	for (struct addrinfo *a = res; a; a = a->ai_next) {
		fd = socket(a->ai_family,
		            a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            a->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS &&
		    wait_fd(fd, POLLOUT, mono_ms() + timeout_ms) == 0) {
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
			if (!soerr)
				break;
			errno = soerr;
		}
		last = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return fail(err, cap, "cannot connect to %s port %s: %s",
		            u->host, u->port,
		            last == ETIMEDOUT ? "timed out" : strerror(last));
	return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		if (wait_fd(fd, POLLOUT, deadline))
			return -1;
	}
	return 0;
}

/* ---- response parsing ---------------------------------------------------- */

typedef struct rbuf {
	char *p;
	size_t len, cap;
} rbuf;

static int rbuf_reserve(rbuf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 16384;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

typedef struct head {
	int status;
	size_t hlen; /* bytes of the header block, blank line included */
	bool chunked;
	int64_t clen;     /* -1: not given */
	int64_t position; /* X-Cleave-Position, -1 */
} head;

static bool hdr_is(const char *line, size_t n, const char *name,
                   const char **val, size_t *vlen)
{
	size_t k = strlen(name);
	if (n <= k || line[k] != ':' || strncasecmp(line, name, k))
		return false;
	const char *v = line + k + 1, *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*val = v;
	*vlen = (size_t)(end - v);
	return true;
}

/* Parses the header block at b (complete: ends with CRLF CRLF at hlen). */
static int parse_head(const char *b, size_t hlen, head *h, char *err,
                      size_t cap)
{
	h->hlen = hlen;
	h->clen = -1;
	h->chunked = false;
	h->position = -1;
	if (hlen < 12 || strncmp(b, "HTTP/1.", 7) || b[8] != ' ' ||
	    b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' ||
	    b[11] < '0' || b[11] > '9')
		return fail(err, cap,
		            "the server did not answer with HTTP/1.x");
	h->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	const char *p = memchr(b, '\n', hlen) + 1, *end = b + hlen;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break;
		size_t n = (size_t)(nl - p);
		if (n && p[n - 1] == '\r')
			n--;
		const char *v;
		size_t vl;
		if (hdr_is(p, n, "Content-Length", &v, &vl)) {
			char tmp[24];
			if (!vl || vl >= sizeof(tmp) ||
			    strspn(v, "0123456789") < vl)
				return fail(err, cap, "bad Content-Length");
			memcpy(tmp, v, vl);
			tmp[vl] = 0;
			h->clen = strtoll(tmp, NULL, 10);
		} else if (hdr_is(p, n, "Transfer-Encoding", &v, &vl)) {
			if (vl >= 7 && !strncasecmp(v + vl - 7, "chunked", 7))
				h->chunked = true;
		} else if (hdr_is(p, n, "X-Cleave-Position", &v, &vl)) {
			char tmp[24];
			if (vl && vl < sizeof(tmp)) {
				memcpy(tmp, v, vl);
				tmp[vl] = 0;
				h->position = strtoll(tmp, NULL, 10);
			}
		}
		p = nl + 1;
	}
	return 0;
}

/* Decodes a chunked body in b[0..n).  1: complete (decoded into *out,
 * which the caller frees), 0: more bytes needed, -1: malformed. */
static int dechunk(const char *b, size_t n, rbuf *out)
{
	size_t i = 0;
	/* first pass: is it complete? (skips over data by size: cheap) */
	for (int pass = 0; pass < 2; pass++) {
		i = 0;
		for (;;) {
			const char *nl = memchr(b + i, '\n', n - i);
			if (!nl)
				return 0;
			char *endp;
			errno = 0;
			unsigned long long sz = strtoull(b + i, &endp, 16);
			if (endp == b + i || errno ||
			    (*endp != '\r' && *endp != ';' && *endp != '\n') ||
			    sz > CLI_HTTP_BODY_MAX)
				return -1;
			i = (size_t)(nl - b) + 1;
			if (sz == 0) {
				/* trailers, then an empty line */
				for (;;) {
					const char *t =
					    memchr(b + i, '\n', n - i);
					if (!t)
						return 0;
					size_t len = (size_t)(t - (b + i));
					i = (size_t)(t - b) + 1;
					if (len == 0 ||
					    (len == 1 && b[i - 2] == '\r'))
						break;
				}
				break;
			}
			if (n - i < sz + 1)
				return 0;
			if (pass == 1) {
				if (rbuf_reserve(out, sz))
					return -1;
				memcpy(out->p + out->len, b + i, sz);
				out->len += sz;
			}
			i += sz;
			if (b[i] == '\r') {
				if (n - i < 2)
					return 0;
				i++;
			}
			if (b[i] != '\n')
				return -1;
			i++;
		}
	}
	if (rbuf_reserve(out, 0))
		return -1;
	out->p[out->len] = 0;
	return 1;
}

static char *find_blank_line(char *p, size_t n, size_t *hlen)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n') {
			*hlen = i + 2;
			return p + i + 2;
		}
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
			*hlen = i + 3;
			return p + i + 3;
		}
	}
	return NULL;
}

/* The request's line and headers, for `accept`, with `extra` (header
 * lines, each ending in CRLF; may be NULL) added.  The connection is
 * closed after the answer.  Returns the length, or -1 with a message. */
static int format_request(char *req, size_t cap, const url *u,
                          const char *method, const char *target,
                          const char *bearer, const char *accept,
                          const char *extra, const char *body, size_t body_len,
                          char *err, size_t errcap)
{
	bool v6 = strchr(u->host, ':') != NULL;
	size_t xl = extra ? strlen(extra) : 0;
	int n = snprintf(req, cap,
	                 "%s %s%s HTTP/1.1\r\n"
	                 "Host: %s%s%s:%s\r\n"
	                 "User-Agent: cleave-cli/" CLEAVE_VERSION "\r\n"
	                 "Accept: %s\r\n"
	                 "Connection: close\r\n",
	                 method, u->prefix, target, v6 ? "[" : "", u->host,
	                 v6 ? "]" : "", u->port, accept);
	if (n < 0 || (size_t)n + xl >= cap - 700)
		return fail(err, errcap, "request target too long");
	if (bearer) {
		if (strlen(bearer) > 512 || strpbrk(bearer, "\r\n"))
			return fail(err, errcap,
			            "the auth token is not one line of "
			            "at most 512 bytes");
		n += snprintf(req + n, cap - (size_t)n,
		              "Authorization: Bearer %s\r\n", bearer);
	}
	if (xl) {
		memcpy(req + n, extra, xl);
		n += (int)xl;
	}
	if (body || strcmp(method, "GET"))
		n += snprintf(req + n, cap - (size_t)n,
		              "Content-Type: application/json\r\n"
		              "Content-Length: %zu\r\n",
		              body ? body_len : 0);
	n += snprintf(req + n, cap - (size_t)n, "\r\n");
	return n;
}

int cli_http_request(const char *base_url, const char *method,
                     const char *target, const char *bearer, const char *body,
                     size_t body_len, int timeout_ms, cli_http_resp *out,
                     char *err, size_t errcap)
{
	url u;
	rbuf in = {0}, dec = {0};
	int fd = -1, rc = -1;
	memset(out, 0, sizeof(*out));
	out->position = -1;
	if (parse_url(base_url, &u, err, errcap))
		return -1;
	if ((fd = dial(&u, timeout_ms, err, errcap)) < 0)
		return -1;

	char req[3072];
	int n = format_request(req, sizeof(req), &u, method, target, bearer,
	                       "application/json", NULL, body, body_len, err,
	                       errcap);
	if (n < 0)
		goto out;
	int64_t deadline = mono_ms() + timeout_ms;
	if (send_all(fd, req, (size_t)n, deadline) ||
	    (body && send_all(fd, body, body_len, deadline))) {
		fail(err, errcap, "sending to %s:%s: %s", u.host, u.port,
		     errno == ETIMEDOUT ? "timed out" : strerror(errno));
		goto out;
	}

	head h = {0};
	bool have_head = false;
	for (;;) {
		/* complete yet? */
		if (!have_head && in.len) {
			size_t hlen;
			if (find_blank_line(in.p, in.len, &hlen)) {
				if (parse_head(in.p, hlen, &h, err, errcap))
					goto out;
				if (h.status < 200) { /* 100 Continue etc. */
					memmove(in.p, in.p + hlen,
					        in.len - hlen);
					in.len -= hlen;
					continue;
				}
				have_head = true;
			} else if (in.len > CLI_HTTP_HEAD_MAX) {
				fail(err, errcap,
				     "response headers larger "
				     "than %u bytes",
				     CLI_HTTP_HEAD_MAX);
				goto out;
			}
		}
		if (have_head) {
			size_t blen = in.len - h.hlen;
			if (!strcmp(method, "HEAD") || h.status == 204 ||
			    h.status == 304)
				break;
			if (h.chunked) {
				int d = dechunk(in.p + h.hlen, blen, &dec);
				if (d < 0) {
					fail(err, errcap,
					     "malformed chunked response");
					goto out;
				}
				if (d > 0)
					break;
			} else if (h.clen >= 0 && (int64_t)blen >= h.clen) {
				break;
			}
			if (blen > CLI_HTTP_BODY_MAX ||
			    h.clen > (int64_t)CLI_HTTP_BODY_MAX) {
				fail(err, errcap,
				     "response larger than %u "
				     "bytes",
				     CLI_HTTP_BODY_MAX);
				goto out;
			}
		}
		if (rbuf_reserve(&in, 65536)) {
			fail(err, errcap, "out of memory");
			goto out;
		}
		ssize_t r = recv(fd, in.p + in.len, in.cap - in.len - 1, 0);
		if (r > 0) {
			in.len += (size_t)r;
			continue;
		}
		if (r == 0) { /* closed */
			if (have_head && !h.chunked && h.clen < 0)
				break; /* body delimited by close */
			fail(err, errcap,
			     "%s:%s closed the connection "
			     "before the whole response came",
			     u.host, u.port);
			goto out;
		}
		if (errno == EINTR && !cli_interrupted)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			if (wait_fd(fd, POLLIN, mono_ms() + timeout_ms) == 0)
				continue;
		}
		fail(err, errcap, "reading from %s:%s: %s", u.host, u.port,
		     errno == ETIMEDOUT ? "timed out"
		     : errno == EINTR   ? "interrupted"
		                        : strerror(errno));
		goto out;
	}

	out->status = h.status;
	out->position = h.position;
	if (h.chunked && dec.p) {
		out->body = dec.p;
		out->len = dec.len;
		dec.p = NULL;
	} else {
		size_t blen = in.len - h.hlen;
		if (h.clen >= 0 && (int64_t)blen > h.clen)
			blen = (size_t)h.clen;
		out->body = malloc(blen + 1);
		if (!out->body) {
			fail(err, errcap, "out of memory");
			goto out;
		}
		memcpy(out->body, in.p + h.hlen, blen);
		out->body[blen] = 0;
		out->len = blen;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(in.p);
	free(dec.p);
	return rc;
}

/* ---- streaming (cleave watch) ---------------------------------------------
 */

/* A chunked body decoded as it arrives: fed what has come, it hands out
 * the body's pieces. */
enum { U_SIZE, U_DATA, U_DATA_END, U_TRAILER, U_DONE };

typedef struct unchunk {
	int st;
	uint64_t left; /* U_DATA: the chunk's bytes still to come */
} unchunk;

/* One step over b[0..n): 1 with *used bytes taken (and *piece, *plen the
 * body bytes among them, plen 0 when none), 0 when more bytes are needed,
 * 2 at the end of the body, -1 when it is malformed. */
static int unchunk_step(unchunk *u, const char *b, size_t n, size_t *used,
                        const char **piece, size_t *plen)
{
	const char *nl;
	*used = *plen = 0;
	*piece = NULL;
	switch (u->st) {
	case U_SIZE: {
		if (!(nl = memchr(b, '\n', n)))
			return n > 1024 ? -1 : 0;
		uint64_t sz = 0;
		size_t i = 0;
		for (; b + i < nl && isxdigit((unsigned char)b[i]); i++) {
			int d = b[i] <= '9'   ? b[i] - '0'
			        : b[i] <= 'F' ? b[i] - 'A' + 10
			                      : b[i] - 'a' + 10;
			sz = sz * 16 + (uint64_t)d;
			if (sz > CLI_HTTP_BODY_MAX)
				return -1;
		}
		if (i == 0 || (b[i] != '\r' && b[i] != ';' && b[i] != '\n'))
			return -1;
		*used = (size_t)(nl - b) + 1;
		u->st = sz ? U_DATA : U_TRAILER;
		u->left = sz;
		return 1;
	}
	case U_DATA: {
		if (!n)
			return 0;
		size_t take = n < u->left ? n : (size_t)u->left;
		*piece = b;
		*plen = *used = take;
		u->left -= take;
		if (!u->left)
			u->st = U_DATA_END;
		return 1;
	}
	case U_DATA_END:
		if (!n || (b[0] == '\r' && n < 2))
			return 0;
		if (b[0] == '\n')
			*used = 1;
		else if (b[0] == '\r' && b[1] == '\n')
			*used = 2;
		else
			return -1;
		u->st = U_SIZE;
		return 1;
	case U_TRAILER:
		if (!(nl = memchr(b, '\n', n)))
			return n > CLI_HTTP_HEAD_MAX ? -1 : 0;
		*used = (size_t)(nl - b) + 1;
		if (nl == b || (nl == b + 1 && b[0] == '\r')) {
			u->st = U_DONE;
			return 2;
		}
		return 1;
	}
	return 2;
}

/* Waits up to timeout_ms for the stream's next bytes, asking fn (when not
 * NULL) with no bytes once a second meanwhile whether to stop: 0 when
 * bytes came, 1 when fn said stop, -1 (errno) otherwise. */
static int wait_stream(int fd, int timeout_ms, cli_http_body_fn fn, void *arg)
{
	int64_t deadline = mono_ms() + timeout_ms;
	for (;;) {
		int64_t slice = mono_ms() + 1000;
		if (!wait_fd(fd, POLLIN, slice < deadline ? slice : deadline))
			return 0;
		if (errno != ETIMEDOUT || mono_ms() >= deadline)
			return -1;
		if (fn && fn(arg, NULL, 0))
			return 1;
	}
}

int cli_http_stream(const char *base_url, const char *target,
                    const char *bearer, const char *accept, const char *extra,
                    int timeout_ms, cli_http_body_fn fn, void *arg,
                    cli_http_resp *out, char *err, size_t errcap)
{
	url u;
	rbuf in = {0}, body = {0};
	int fd = -1, rc = -1;
	memset(out, 0, sizeof(*out));
	out->position = -1;
	if (parse_url(base_url, &u, err, errcap))
		return -1;
	if ((fd = dial(&u, timeout_ms, err, errcap)) < 0)
		return -1;
	/* a query's parameters may be long: room for a request as large as
	 * the server's default header limit */
	char req[16384];
	int n = format_request(req, sizeof(req), &u, "GET", target, bearer,
	                       accept, extra, NULL, 0, err, errcap);
	if (n < 0)
		goto out;
	if (send_all(fd, req, (size_t)n, mono_ms() + timeout_ms)) {
		fail(err, errcap, "sending to %s:%s: %s", u.host, u.port,
		     errno == ETIMEDOUT ? "timed out" : strerror(errno));
		goto out;
	}

	head h = {0};
	bool have_head = false, ok = false, ended = false;
	unchunk uc = {U_SIZE, 0};
	int64_t got = 0; /* body bytes so far */
	size_t off = 0;  /* bytes of `in` taken */
	for (;;) {
		if (!have_head) {
			size_t hlen;
			if (in.len && find_blank_line(in.p, in.len, &hlen)) {
				if (parse_head(in.p, hlen, &h, err, errcap))
					goto out;
				if (h.status < 200) { /* 100 Continue etc. */
					memmove(in.p, in.p + hlen,
					        in.len - hlen);
					in.len -= hlen;
					continue;
				}
				have_head = true;
				ok = h.status <= 299;
				out->status = h.status;
				out->position = h.position;
				off = hlen;
				ended = h.status == 204 || h.status == 304 ||
				        h.clen == 0;
			} else if (in.len > CLI_HTTP_HEAD_MAX) {
				fail(err, errcap,
				     "response headers larger than %u bytes",
				     CLI_HTTP_HEAD_MAX);
				goto out;
			}
		}
		/* hand out the body that came: to fn while the answer is a
		 * 2xx, into `body` otherwise */
		while (have_head && !ended) {
			const char *piece;
			size_t plen, used;
			int st;
			if (h.chunked) {
				st = unchunk_step(&uc, in.p + off, in.len - off,
				                  &used, &piece, &plen);
				if (st < 0) {
					fail(err, errcap,
					     "malformed chunked response");
					goto out;
				}
			} else {
				size_t avail = in.len - off;
				if (h.clen >= 0 &&
				    (int64_t)avail > h.clen - got)
					avail = (size_t)(h.clen - got);
				piece = in.p + off;
				plen = used = avail;
				st = h.clen >= 0 &&
				             got + (int64_t)avail >= h.clen
				         ? 2
				         : avail != 0;
			}
			off += used;
			if (plen) {
				got += (int64_t)plen;
				if (ok && fn(arg, piece, plen)) {
					ended = true;
					break;
				}
				if (!ok) {
					if (body.len + plen >
					        CLI_HTTP_BODY_MAX ||
					    rbuf_reserve(&body, plen)) {
						fail(err, errcap,
						     "response too large");
						goto out;
					}
					memcpy(body.p + body.len, piece, plen);
					body.len += plen;
				}
			}
			if (st == 2)
				ended = true;
			if (st != 1)
				break;
		}
		if (ended)
			break;
		if (have_head && off) {
			memmove(in.p, in.p + off, in.len - off);
			in.len -= off;
			off = 0;
		}
		if (rbuf_reserve(&in, 65536)) {
			fail(err, errcap, "out of memory");
			goto out;
		}
		ssize_t r = recv(fd, in.p + in.len, in.cap - in.len - 1, 0);
		if (r > 0) {
			in.len += (size_t)r;
			continue;
		}
		if (r == 0) {
			if (have_head && !h.chunked && h.clen < 0)
				break; /* a body delimited by the close */
			fail(err, errcap, "%s:%s closed the connection%s",
			     u.host, u.port,
			     have_head ? "" : " before answering");
			goto out;
		}
		if (errno == EINTR && !cli_interrupted)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
			int w =
			    wait_stream(fd, timeout_ms, ok ? fn : NULL, arg);
			if (w == 0)
				continue;
			if (w > 0)
				break; /* fn stopped it while it was quiet */
		}
		fail(err, errcap, "reading from %s:%s: %s", u.host, u.port,
		     errno == ETIMEDOUT ? "nothing came for the timeout"
		     : errno == EINTR   ? "interrupted"
		                        : strerror(errno));
		goto out;
	}
	if (!ok) {
		if (rbuf_reserve(&body, 0)) {
			fail(err, errcap, "out of memory");
			goto out;
		}
		body.p[body.len] = 0;
		out->body = body.p;
		out->len = body.len;
		body.p = NULL;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(in.p);
	free(body.p);
	return rc;
}

int cli_url_check(const char *base_url, char *err, size_t errcap)
{
	url u;
	return parse_url(base_url, &u, err, errcap);
}

void cli_http_resp_free(cli_http_resp *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->len = 0;
}

int cli_server_request(const cli_common *c, const char *method,
                       const char *target, int timeout_ms, cli_http_resp *resp)
{
	char err[512];
	if (cli_http_request(c->server, method, target, c->auth_token, NULL, 0,
	                     timeout_ms, resp, err, sizeof(err))) {
		if (!cli_interrupted)
			cli_errorf(c, "%s %s%s: %s", method, c->server, target,
			           err);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

int cli_slow_timeout_ms(const cli_common *c)
{
	return c->http_timeout_set ? c->http_timeout_ms : 600000;
}

void cli_error_message(const cli_http_resp *r, char *buf, size_t cap)
{
	cJSON *e = cJSON_ParseWithLength(r->body, r->len);
	const char *msg =
	    cli_jstr(cJSON_GetObjectItemCaseSensitive(e, "error"), "message");
	if (msg)
		snprintf(buf, cap, "%s", msg);
	else
		cli_escape(buf, cap, r->body, r->len);
	cJSON_Delete(e);
}

void cli_server_error(const cli_common *c, const char *method,
                      const char *target, const cli_http_resp *r)
{
	cJSON *e = cJSON_ParseWithLength(r->body, r->len);
	const cJSON *eo = cJSON_GetObjectItemCaseSensitive(e, "error");
	const char *code = cli_jstr(eo, "code");
	const char *msg = cli_jstr(eo, "message");
	char shown[300];
	cli_escape(shown, sizeof(shown), r->body, r->len);
	cli_errorf(c, "%s %s%s: the server answered %d%s%s%s%s", method,
	           c->server, target, r->status, code ? " " : "",
	           code ? code : "", msg || !code ? ": " : "",
	           msg ? msg : shown);
	if (r->status == 401 || r->status == 403)
		fprintf(stderr, "hint: give the server's token with "
		                "--auth-token-file PATH or "
		                "CLEAVE_AUTH_TOKEN\n");
	cJSON_Delete(e);
}

int cli_server_call(const cli_common *c, const char *method, const char *target,
                    cJSON **json, cli_http_resp *resp)
{
	cli_http_resp r;
	if (json)
		*json = NULL;
	if (cli_server_request(c, method, target, c->http_timeout_ms, &r))
		return CLI_EXIT_FAIL;
	if (r.status < 200 || r.status > 299) {
		cli_server_error(c, method, target, &r);
		cli_http_resp_free(&r);
		return CLI_EXIT_FAIL;
	}
	if (json) {
		*json = cJSON_ParseWithLength(r.body, r.len);
		if (!*json) {
			cli_errorf(c, "%s %s%s: the answer is not JSON", method,
			           c->server, target);
			cli_http_resp_free(&r);
			return CLI_EXIT_FAIL;
		}
	}
	if (resp)
		*resp = r;
	else
		cli_http_resp_free(&r);
	return 0;
}

void cli_url_encode(char *buf, size_t cap, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = strlen(buf);
	for (; *s && o + 4 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch)) {
			buf[o++] = (char)ch;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[ch >> 4];
			buf[o++] = hex[ch & 15];
		}
	}
	buf[o] = 0;
}
