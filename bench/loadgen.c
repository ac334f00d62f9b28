/*
 * loadgen.c — a small HTTP/1.1 (and Redis RESP) load generator for the
 * benchmarks.  One process, one epoll loop per thread, N keep-alive
 * connections, one request in flight per connection (no pipelining).
 *
 * Why our own and not wrk: the checkout mix is a per-connection state
 * machine (three AddToCart on a fresh cart, then Checkout of that cart),
 * the lag workload chains a command's answer (its X-Cleave-Position) into a
 * query on another connection, and the Redis baseline must be driven by the
 * same client and connection count as the product queries.  wrk + Lua can
 * do the first, not the last two; a C loadgen does all three with one
 * latency histogram.  See docs/performance.md.
 *
 * Modes
 *   closed loop (default): every connection sends its next request as soon
 *     as the previous answer arrived.  Latency = answer - send.
 *   open loop (--rate R): requests are scheduled at R per second in total;
 *     an idle connection takes the next due one.  Latency is measured from
 *     the scheduled time (no coordinated omission): a backlog shows up.
 *
 * Scenarios
 *   --req 'METHOD PATH [BODY]'  (repeatable; one is picked at random per
 *     request).  Templates expand ${id} (unique per request), ${conn},
 *     ${seq}, ${rnd:N} (1..N), ${rnd:A-B} (A..B), ${pick:a|b|c}.  With
 *     --resp the template is a Redis command line split on spaces
 *     ("GET product:p${rnd:1000}").
 *   --scenario checkout: per connection, AddToCart x3 on a new cart of one
 *     user, then Checkout (some with --promo, some carts holding a product
 *     whose stock is 0 so their checkout fails with 422).
 *   --scenario lag: open-loop Restock commands (--rate); every answer's
 *     position P is followed at once by GET /queries/product?...&
 *     min_position=P on a separate pool of query connections.  Lag =
 *     (query answered) - (command answered): commit-to-visible as a client
 *     sees it, including one query round trip.
 *
 * Output: one JSON object on stdout (figures below), a line on stderr.
 * Nothing here asserts a time.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

/* ---- options ------------------------------------------------------------ */

enum { SC_TEMPLATE, SC_CHECKOUT, SC_LAG };

static struct {
	const char *host;
	int port;
	int conns, threads;
	double duration, warmup, rate;
	uint64_t max_requests;
	bool resp;
	int scenario;
	const char *reqs[32];
	int nreqs;
	const char *prefix;
	int users, products, scarce;
	double promo_share, scarce_share;
	const char *promo;
	int query_conns;
	const char *label;
	uint32_t seed;
	double hold_stuck; /* seconds to keep stuck connections open */
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .conns = 16,
    .threads = 1,
    .duration = 10,
    .warmup = 1,
    .prefix = "lg",
    .users = 1000,
    .products = 1000,
    .scarce = 10,
    .promo_share = 0.25,
    .scarce_share = 0.05,
    .promo = "BENCH10",
    .label = "",
    .seed = 1,
};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "loadgen: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- small buffers ------------------------------------------------------ */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void buf_need(buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + more + 1)
		cap *= 2;
	b->p = realloc(b->p, cap);
	if (!b->p)
		die("out of memory");
	b->cap = cap;
}

static void buf_add(buf *b, const char *s, size_t n)
{
	buf_need(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

static void buf_printf(buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char tmp[4096];
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		die("formatted piece too long");
	buf_add(b, tmp, (size_t)n);
}

/* ---- per-thread state ------------------------------------------------- */

typedef struct worker worker;

enum { R_NONE, R_CMD, R_QUERY };

typedef struct conn {
	worker *w;
	int id; /* global connection number */
	int fd;
	int role; /* lag: R_CMD or R_QUERY */
	bool busy, connected;
	buf out;
	size_t out_off;
	buf in;
	uint64_t t_start; /* send time (or scheduled time, open loop) */
	uint64_t seq;
	/* checkout scenario */
	int step; /* 0..2 AddToCart, 3 Checkout */
	char cart[96], user[32];
	bool cart_scarce;
	/* lag: the command answer this query follows */
	uint64_t t_ack;
	struct conn *next_idle;
} conn;

typedef struct pending {
	int64_t pos;
	uint64_t t_ack;
	int product;
} pending;

struct worker {
	int idx;
	int ep;
	conn *conns;
	int nconns;
	uint32_t rng;
	hist lat;     /* every request */
	hist lat_cmd; /* lag: commands; checkout: Checkout requests */
	hist lag;
	uint64_t done, errors, conn_errors, status[600];
	uint64_t checkouts, checkouts_ok;
	uint64_t t_measure, t_end;
	uint64_t sent;
	/* open loop */
	double rate;       /* this worker's share */
	uint64_t next_due; /* ns */
	uint64_t sched_n;
	uint64_t t0;
	conn *idle;   /* idle command connections */
	conn *idle_q; /* idle query connections (lag) */
	pending *pq;  /* lag: answers waiting for a query connection */
	size_t pq_head, pq_tail, pq_cap;
	uint64_t pq_max;
	uint64_t lag_timeouts;
	uint64_t stuck;
	bool stopping;
};

static uint32_t rnd(worker *w)
{
	uint32_t x = w->rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return w->rng = x;
}

static int rnd_n(worker *w, int n) /* 1..n */
{
	return n > 0 ? (int)(rnd(w) % (uint32_t)n) + 1 : 1;
}

static bool chance(worker *w, double p)
{
	return (double)(rnd(w) % 1000000) < p * 1000000.0;
}

/* ---- request building --------------------------------------------------- */

/* Expands ${...} in t into b. */
static void expand(worker *w, conn *c, const char *t, size_t tn, buf *b)
{
	const char *end = t + tn;
	while (t < end) {
		const char *d = memmem(t, (size_t)(end - t), "${", 2);
		if (!d) {
			buf_add(b, t, (size_t)(end - t));
			return;
		}
		buf_add(b, t, (size_t)(d - t));
		const char *close = memchr(d, '}', (size_t)(end - d));
		if (!close)
			die("unterminated ${ in template");
		const char *k = d + 2;
		size_t kn = (size_t)(close - k);
		if (kn == 2 && !memcmp(k, "id", 2))
			buf_printf(b, "%s-%d-%" PRIu64, opt.prefix, c->id,
			           c->seq);
		else if (kn == 4 && !memcmp(k, "conn", 4))
			buf_printf(b, "%d", c->id);
		else if (kn == 3 && !memcmp(k, "seq", 3))
			buf_printf(b, "%" PRIu64, c->seq);
		else if (kn > 4 && !memcmp(k, "rnd:", 4)) {
			/* ${rnd:N}: 1..N; ${rnd:A-B}: A..B */
			const char *dash = memchr(k + 4, '-', kn - 4);
			int lo = dash ? atoi(k + 4) : 1;
			int hi = atoi(dash ? dash + 1 : k + 4);
			buf_printf(b, "%d", lo - 1 + rnd_n(w, hi - lo + 1));
		} else if (kn > 5 && !memcmp(k, "pick:", 5)) {
			const char *opts[64];
			size_t lens[64];
			int n = 0;
			const char *s = k + 5;
			while (s <= close && n < 64) {
				const char *bar =
				    memchr(s, '|', (size_t)(close - s));
				const char *e = bar ? bar : close;
				opts[n] = s;
				lens[n++] = (size_t)(e - s);
				s = e + 1;
			}
			int i = rnd_n(w, n) - 1;
			buf_add(b, opts[i], lens[i]);
		} else
			die("unknown template key ${%.*s}", (int)kn, k);
		t = close + 1;
	}
}

static void http_request(conn *c, const char *method, const char *path,
                         const char *body, size_t blen)
{
	buf *o = &c->out;
	buf_printf(o, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", method, path,
	           opt.host, opt.port);
	if (body) {
		buf_printf(o,
		           "Content-Type: application/json\r\n"
		           "Content-Length: %zu\r\n\r\n",
		           blen);
		buf_add(o, body, blen);
	} else
		buf_add(o, "\r\n", 2);
}

static void build_template(worker *w, conn *c)
{
	const char *t = opt.reqs[opt.nreqs > 1 ? rnd_n(w, opt.nreqs) - 1 : 0];
	buf x = {0};
	expand(w, c, t, strlen(t), &x);
	if (opt.resp) {
		/* split on spaces into a RESP array */
		char *parts[32];
		int n = 0;
		char *save = NULL;
		for (char *p = strtok_r(x.p, " ", &save); p && n < 32;
		     p = strtok_r(NULL, " ", &save))
			parts[n++] = p;
		buf_printf(&c->out, "*%d\r\n", n);
		for (int i = 0; i < n; i++) {
			buf_printf(&c->out, "$%zu\r\n", strlen(parts[i]));
			buf_add(&c->out, parts[i], strlen(parts[i]));
			buf_add(&c->out, "\r\n", 2);
		}
	} else {
		char *sp1 = strchr(x.p, ' ');
		if (!sp1)
			die("template needs 'METHOD PATH [BODY]'");
		*sp1 = 0;
		char *path = sp1 + 1;
		char *sp2 = strchr(path, ' ');
		char *body = NULL;
		if (sp2) {
			*sp2 = 0;
			body = sp2 + 1;
		}
		http_request(c, x.p, path, body, body ? strlen(body) : 0);
	}
	free(x.p);
}

static void build_checkout(worker *w, conn *c)
{
	char body[512];
	int n;
	if (c->step == 0) {
		snprintf(c->cart, sizeof(c->cart), "c-%s-%d-%" PRIu64,
		         opt.prefix, c->id, c->seq);
		snprintf(c->user, sizeof(c->user), "u%d", rnd_n(w, opt.users));
		c->cart_scarce = chance(w, opt.scarce_share);
	}
	if (c->step < 3) {
		char product[32];
		if (c->step == 2 && c->cart_scarce)
			snprintf(product, sizeof(product), "s%d",
			         rnd_n(w, opt.scarce));
		else
			snprintf(product, sizeof(product), "p%d",
			         rnd_n(w, opt.products));
		n = snprintf(body, sizeof(body),
		             "{\"cartId\":\"%s\",\"userId\":\"%s\","
		             "\"productId\":\"%s\",\"quantity\":%d}",
		             c->cart, c->user, product, rnd_n(w, 3));
		http_request(c, "POST", "/commands/AddToCart", body, (size_t)n);
	} else {
		if (chance(w, opt.promo_share))
			n = snprintf(body, sizeof(body),
			             "{\"userId\":\"%s\",\"cartId\":\"%s\","
			             "\"promoCode\":\"%s\"}",
			             c->user, c->cart, opt.promo);
		else
			n = snprintf(body, sizeof(body),
			             "{\"userId\":\"%s\",\"cartId\":\"%s\"}",
			             c->user, c->cart);
		http_request(c, "POST", "/commands/Checkout", body, (size_t)n);
	}
}

static void build_lag_cmd(worker *w, conn *c)
{
	char body[128];
	int n = snprintf(body, sizeof(body),
	                 "{\"productId\":\"p%d\",\"quantity\":1}",
	                 rnd_n(w, opt.products));
	http_request(c, "POST", "/commands/Restock", body, (size_t)n);
}

/* ---- connections -------------------------------------------------------- */

static void conn_open(conn *c)
{
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)opt.port);
	if (inet_pton(AF_INET, opt.host, &a.sin_addr) != 1)
		die("bad --host %s (an IPv4 address)", opt.host);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    errno != EINPROGRESS)
		die("connect %s:%d: %s", opt.host, opt.port, strerror(errno));
	c->fd = fd;
	c->connected = false;
	c->in.len = 0;
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET,
	                         .data.ptr = c};
	if (epoll_ctl(c->w->ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll_ctl: %s", strerror(errno));
}

static void conn_reopen(conn *c)
{
	c->w->conn_errors++;
	epoll_ctl(c->w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->out.len = c->out_off = 0;
	c->busy = false;
	conn_open(c);
}

static void conn_flush(conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.p + c->out_off,
		                 c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_reopen(c);
		return;
	}
}

/* Builds and sends the connection's next request, stamped at t. */
static void conn_send(conn *c, uint64_t t)
{
	worker *w = c->w;
	c->out.len = c->out_off = 0;
	c->in.len = 0;
	c->seq++;
	if (opt.scenario == SC_CHECKOUT)
		build_checkout(w, c);
	else if (opt.scenario == SC_LAG)
		build_lag_cmd(w, c);
	else
		build_template(w, c);
	c->busy = true;
	c->t_start = t;
	w->sent++;
	conn_flush(c);
}

static void conn_send_query(conn *c, const pending *p)
{
	char path[256];
	c->out.len = c->out_off = 0;
	c->in.len = 0;
	c->seq++;
	snprintf(path, sizeof(path),
	         "/queries/product?productId=p%d&min_position=%" PRId64
	         "&wait_ms=10000",
	         p->product, p->pos);
	http_request(c, "GET", path, NULL, 0);
	c->busy = true;
	c->t_start = now_ns();
	c->t_ack = p->t_ack;
	conn_flush(c);
}

/* Parses one whole answer at the start of c->in.  Returns its length, 0 if
 * incomplete, -1 if malformed.  *status gets the HTTP status (or 200/500
 * for RESP), *pos the X-Cleave-Position (or -1). */
static long parse_answer(conn *c, int *status, int64_t *pos, bool *close_after)
{
	*close_after = false;
	char *p = c->in.p;
	size_t n = c->in.len;
	*pos = -1;
	if (opt.resp) {
		char *crlf = memmem(p, n, "\r\n", 2);
		if (!crlf)
			return 0;
		size_t head = (size_t)(crlf - p) + 2;
		if (p[0] == '$') {
			long len = strtol(p + 1, NULL, 10);
			if (len < 0) {
				*status = 404;
				return (long)head;
			}
			if (n < head + (size_t)len + 2)
				return 0;
			*status = 200;
			return (long)(head + (size_t)len + 2);
		}
		*status = p[0] == '-' ? 500 : 200;
		return (long)head;
	}
	char *eoh = memmem(p, n, "\r\n\r\n", 4);
	if (!eoh)
		return 0;
	size_t hlen = (size_t)(eoh - p) + 4;
	if (n < 12 || memcmp(p, "HTTP/1.", 7))
		return -1;
	*status = atoi(p + 9);
	long clen = -1;
	for (char *l = memchr(p, '\n', hlen); l && l < eoh;
	     l = memchr(l + 1, '\n', (size_t)(eoh - l))) {
		char *h = l + 1;
		if (!strncasecmp(h, "Content-Length:", 15))
			clen = strtol(h + 15, NULL, 10);
		else if (!strncasecmp(h, "X-Cleave-Position:", 18))
			*pos = strtoll(h + 18, NULL, 10);
		else if (!strncasecmp(h, "Connection: close", 17))
			*close_after = true;
		else if (!strncasecmp(h, "Transfer-Encoding:", 18))
			die("chunked answers are not supported");
	}
	if (clen < 0)
		clen = 0;
	if (n < hlen + (size_t)clen)
		return 0;
	return (long)(hlen + (size_t)clen);
}

static void pq_push(worker *w, pending p)
{
	if (w->pq_tail - w->pq_head == w->pq_cap) {
		size_t cap = w->pq_cap ? w->pq_cap * 2 : 1024;
		pending *np = malloc(cap * sizeof(*np));
		if (!np)
			die("out of memory");
		for (size_t i = w->pq_head; i < w->pq_tail; i++)
			np[i - w->pq_head] = w->pq[i % w->pq_cap];
		free(w->pq);
		w->pq_tail -= w->pq_head;
		w->pq_head = 0;
		w->pq = np;
		w->pq_cap = cap;
	}
	w->pq[w->pq_tail++ % w->pq_cap] = p;
	if (w->pq_tail - w->pq_head > w->pq_max)
		w->pq_max = w->pq_tail - w->pq_head;
}

static bool open_loop(void)
{
	return opt.rate > 0;
}

/* An answer came in on c. */
static void on_answer(conn *c, int status, int64_t pos)
{
	worker *w = c->w;
	uint64_t t = now_ns();
	/* closed loop: requests sent in the window; open loop: answers that
	 * came in the window, however late (a backlog shows as latency) */
	bool in_window =
	    (open_loop() ? t >= w->t_measure : c->t_start >= w->t_measure) &&
	    t <= w->t_end;
	uint64_t us = (t - c->t_start) / 1000;
	c->busy = false;
	if (c->role == R_QUERY) {
		uint64_t lag_us = (t - c->t_ack) / 1000;
		if (status == 200 && c->t_ack >= w->t_measure && t <= w->t_end)
			hist_add(&w->lag, lag_us);
		if (status == 504)
			w->lag_timeouts++;
		if (w->pq_tail > w->pq_head) {
			pending p = w->pq[w->pq_head++ % w->pq_cap];
			conn_send_query(c, &p);
		} else {
			c->next_idle = w->idle_q;
			w->idle_q = c;
		}
		return;
	}
	if (in_window) {
		hist_add(&w->lat, us);
		w->done++;
		w->status[status > 0 && status < 600 ? status : 0]++;
		if (status != 200 &&
		    !(opt.scenario == SC_CHECKOUT && status == 422))
			w->errors++;
	}
	if (opt.scenario == SC_CHECKOUT) {
		if (c->step == 3 && in_window) {
			hist_add(&w->lat_cmd, us);
			w->checkouts++;
			if (status == 200)
				w->checkouts_ok++;
		}
		c->step = (c->step + 1) % 4;
	}
	if (opt.scenario == SC_LAG && status == 200 && pos > 0) {
		/* which product: parse from the request we sent */
		const char *q = strstr(c->out.p, "\"productId\":\"p");
		pending p = {pos, t, q ? atoi(q + 14) : 1};
		if (w->idle_q) {
			conn *qc = w->idle_q;
			w->idle_q = qc->next_idle;
			conn_send_query(qc, &p);
		} else
			pq_push(w, p);
	}
	if (w->stopping)
		return;
	if (opt.max_requests && w->sent >= opt.max_requests)
		return;
	if (open_loop()) {
		c->next_idle = w->idle;
		w->idle = c;
	} else
		conn_send(c, t);
}

static void conn_read(conn *c)
{
	for (;;) {
		buf_need(&c->in, 65536);
		ssize_t n = recv(c->fd, c->in.p + c->in.len,
		                 c->in.cap - c->in.len - 1, 0);
		if (n > 0) {
			c->in.len += (size_t)n;
			int status;
			int64_t pos;
			bool close_after;
			long used =
			    parse_answer(c, &status, &pos, &close_after);
			if (used < 0) {
				conn_reopen(c);
				return;
			}
			if (used > 0) {
				if ((size_t)used != c->in.len) {
					/* nothing pipelined: extra bytes are
					 * a protocol error */
					conn_reopen(c);
					return;
				}
				c->in.len = 0;
				if (close_after) {
					/* the server ends this connection: open
					 * a new one before the next request */
					conn_reopen(c);
					c->w->conn_errors--;
				}
				on_answer(c, status, pos);
				return;
			}
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		/* closed by the server */
		bool was_busy = c->busy;
		conn_reopen(c);
		if (was_busy) {
			c->w->errors++;
			if (c->role != R_QUERY && !open_loop())
				c->busy = false; /* resent once connected */
		}
		return;
	}
}

/* Sends the scheduled requests that are due on idle connections. */
static void dispatch_due(worker *w, uint64_t t)
{
	while (w->idle && w->next_due <= t && !w->stopping) {
		if (opt.max_requests && w->sent >= opt.max_requests)
			return;
		conn *c = w->idle;
		w->idle = c->next_idle;
		conn_send(c, w->next_due);
		w->sched_n++;
		w->next_due =
		    w->t0 + (uint64_t)((double)w->sched_n * 1e9 / w->rate);
	}
}

static void *worker_run(void *arg)
{
	worker *w = arg;
	struct epoll_event evs[256];
	for (int i = 0; i < w->nconns; i++)
		conn_open(&w->conns[i]);
	/* wait until every connection is up, then start the clock */
	uint64_t deadline = now_ns() + 5000000000ull;
	for (int up = 0; up < w->nconns;) {
		int n = epoll_wait(w->ep, evs, 256, 100);
		for (int i = 0; i < n; i++) {
			conn *c = evs[i].data.ptr;
			if (!c->connected && (evs[i].events & EPOLLOUT)) {
				int err = 0;
				socklen_t l = sizeof(err);
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err,
				           &l);
				if (err)
					die("connect %s:%d: %s", opt.host,
					    opt.port, strerror(err));
				c->connected = true;
				up++;
			}
		}
		if (now_ns() > deadline)
			die("connections not up after 5 s");
	}
	w->t0 = now_ns();
	w->t_measure = w->t0 + (uint64_t)(opt.warmup * 1e9);
	w->t_end = w->t_measure + (uint64_t)(opt.duration * 1e9);
	w->next_due = w->t0;
	for (int i = 0; i < w->nconns; i++) {
		conn *c = &w->conns[i];
		if (c->role == R_QUERY) {
			c->next_idle = w->idle_q;
			w->idle_q = c;
		} else if (open_loop()) {
			c->next_idle = w->idle;
			w->idle = c;
		} else
			conn_send(c, now_ns());
	}
	for (;;) {
		uint64_t t = now_ns();
		if (t >= w->t_end && !w->stopping)
			w->stopping = true;
		if (w->stopping) {
			/* let the lag queries in flight finish (bounded) */
			bool any = false;
			for (int i = 0; i < w->nconns && !any; i++)
				any = w->conns[i].role == R_QUERY &&
				      w->conns[i].busy;
			if (!any || t > w->t_end + 2000000000ull)
				break;
		}
		if (opt.max_requests && w->sent >= opt.max_requests) {
			bool any = false;
			for (int i = 0; i < w->nconns && !any; i++)
				any = w->conns[i].busy;
			if (!any)
				break;
		}
		if (open_loop())
			dispatch_due(w, t);
		int timeout = 100;
		if (open_loop() && w->idle) {
			int64_t d = (int64_t)(w->next_due - now_ns());
			timeout = d <= 0 ? 0 : (int)(d / 1000000);
		}
		int n = epoll_wait(w->ep, evs, 256, timeout);
		for (int i = 0; i < n; i++) {
			conn *c = evs[i].data.ptr;
			if (!c->connected && (evs[i].events & EPOLLOUT))
				c->connected = true;
			if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
				conn_read(c);
			if (c->busy && c->out_off < c->out.len &&
			    (evs[i].events & EPOLLOUT))
				conn_flush(c);
			if (!c->busy && c->connected && !open_loop() &&
			    c->role != R_QUERY && !w->stopping &&
			    !(opt.max_requests && w->sent >= opt.max_requests))
				conn_send(c, now_ns());
		}
	}
	/* connections still waiting for an answer older than 1 s at the end:
	 * a server that lost a request shows up here */
	uint64_t tnow = now_ns();
	for (int i = 0; i < w->nconns; i++) {
		if (w->conns[i].busy &&
		    tnow - w->conns[i].t_start > 1000000000ull) {
			w->stuck++;
			if (opt.hold_stuck > 0) {
				/* for a look at both ends (ss -tn, the server's
				 * state): which local port, how long */
				struct sockaddr_in a;
				socklen_t al = sizeof(a);
				getsockname(w->conns[i].fd,
				            (struct sockaddr *)&a, &al);
				fprintf(stderr,
				        "loadgen: stuck conn %d, local port %d, "
				        "waiting %.1f s, request %zu bytes, "
				        "sent %zu\n",
				        i, ntohs(a.sin_port),
				        (double)(tnow - w->conns[i].t_start) /
				            1e9,
				        w->conns[i].out.len, w->conns[i].out_off);
			}
		}
	}
	if (w->stuck && opt.hold_stuck > 0)
		usleep((useconds_t)(opt.hold_stuck * 1e6));
	for (int i = 0; i < w->nconns; i++)
		close(w->conns[i].fd);
	return NULL;
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: loadgen [options]\n"
	    "  --host A --port P       target (IPv4), default 127.0.0.1:8080\n"
	    "  --conns N               connections (default 16)\n"
	    "  --threads N             epoll threads (default 1)\n"
	    "  --duration S            measured seconds (default 10)\n"
	    "  --warmup S              unmeasured seconds first (default 1)\n"
	    "  --requests N            stop after N requests instead\n"
	    "  --rate R                open loop: R requests/s in total\n"
	    "  --req 'M PATH [BODY]'   a request template (repeatable)\n"
	    "  --resp                  speak Redis RESP (templates are "
	    "command lines)\n"
	    "  --scenario checkout|lag\n"
	    "  --hold-stuck S          diagnosis: list connections waiting > 1 s\n"
	    "                          at the end and keep them open S seconds\n"
	    "  --prefix S              id prefix (unique per run)\n"
	    "  --users N --products N --scarce N   id ranges (u1.., p1.., "
	    "s1..)\n"
	    "  --promo CODE --promo-share F --scarce-share F\n"
	    "  --query-conns N         lag: query connections (default "
	    "2 x conns)\n"
	    "  --label S               copied into the JSON\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"host", 1, 0, 'h'},
	                                   {"port", 1, 0, 'p'},
	                                   {"conns", 1, 0, 'c'},
	                                   {"threads", 1, 0, 't'},
	                                   {"duration", 1, 0, 'd'},
	                                   {"warmup", 1, 0, 'w'},
	                                   {"requests", 1, 0, 'n'},
	                                   {"rate", 1, 0, 'r'},
	                                   {"req", 1, 0, 'q'},
	                                   {"resp", 0, 0, 'R'},
	                                   {"scenario", 1, 0, 's'},
	                                   {"prefix", 1, 0, 'P'},
	                                   {"users", 1, 0, 'U'},
	                                   {"products", 1, 0, 'D'},
	                                   {"scarce", 1, 0, 'S'},
	                                   {"promo", 1, 0, 'm'},
	                                   {"promo-share", 1, 0, 'M'},
	                                   {"scarce-share", 1, 0, 'X'},
	                                   {"query-conns", 1, 0, 'Q'},
	                                   {"label", 1, 0, 'L'},
	                                   {"seed", 1, 0, 'e'},
	                                   {"hold-stuck", 1, 0, 'K'},
	                                   {"help", 0, 0, 'H'},
	                                   {0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'h':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'c':
			opt.conns = atoi(optarg);
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'd':
			opt.duration = atof(optarg);
			break;
		case 'w':
			opt.warmup = atof(optarg);
			break;
		case 'n':
			opt.max_requests = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			opt.rate = atof(optarg);
			break;
		case 'q':
			if (opt.nreqs == 32)
				die("at most 32 --req");
			opt.reqs[opt.nreqs++] = optarg;
			break;
		case 'R':
			opt.resp = true;
			break;
		case 's':
			if (!strcmp(optarg, "checkout"))
				opt.scenario = SC_CHECKOUT;
			else if (!strcmp(optarg, "lag"))
				opt.scenario = SC_LAG;
			else
				die("unknown scenario %s", optarg);
			break;
		case 'P':
			opt.prefix = optarg;
			break;
		case 'U':
			opt.users = atoi(optarg);
			break;
		case 'D':
			opt.products = atoi(optarg);
			break;
		case 'S':
			opt.scarce = atoi(optarg);
			break;
		case 'm':
			opt.promo = optarg;
			break;
		case 'M':
			opt.promo_share = atof(optarg);
			break;
		case 'X':
			opt.scarce_share = atof(optarg);
			break;
		case 'Q':
			opt.query_conns = atoi(optarg);
			break;
		case 'L':
			opt.label = optarg;
			break;
		case 'e':
			opt.seed = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'K':
			opt.hold_stuck = atof(optarg);
			break;
		default:
			usage();
		}
	}
	if (opt.scenario == SC_TEMPLATE && !opt.nreqs)
		usage();
	if (opt.scenario == SC_LAG && opt.rate <= 0)
		die("--scenario lag needs --rate");
	if (opt.conns < 1 || opt.threads < 1 || opt.threads > opt.conns)
		die("need 1 <= threads <= conns");
	if (opt.max_requests)
		opt.duration = 1e6, opt.warmup = 0;
	if (opt.scenario == SC_LAG && !opt.query_conns)
		opt.query_conns = 2 * opt.conns;

	int nt = opt.threads;
	worker *ws = calloc((size_t)nt, sizeof(worker));
	if (!ws)
		die("out of memory");
	int gid = 0;
	for (int t = 0; t < nt; t++) {
		worker *w = &ws[t];
		w->idx = t;
		w->rng = opt.seed * 2654435761u + (uint32_t)t * 40503u + 1;
		int nc = opt.conns / nt + (t < opt.conns % nt);
		int nq = opt.scenario == SC_LAG
		             ? opt.query_conns / nt + (t < opt.query_conns % nt)
		             : 0;
		w->nconns = nc + nq;
		w->conns = calloc((size_t)w->nconns, sizeof(conn));
		w->ep = epoll_create1(0);
		w->rate = opt.rate / nt;
		if (!w->conns || w->ep < 0)
			die("out of memory");
		for (int i = 0; i < w->nconns; i++) {
			w->conns[i].w = w;
			w->conns[i].id = gid++;
			w->conns[i].role = i < nc ? R_CMD : R_QUERY;
		}
	}
	pthread_t *th = calloc((size_t)nt, sizeof(pthread_t));
	uint64_t t0 = now_ns();
	for (int t = 0; t < nt; t++)
		pthread_create(&th[t], NULL, worker_run, &ws[t]);
	for (int t = 0; t < nt; t++)
		pthread_join(th[t], NULL);
	double wall = (double)(now_ns() - t0) / 1e9;

	hist *all = calloc(1, sizeof(hist)), *co = calloc(1, sizeof(hist)),
	     *lag = calloc(1, sizeof(hist));
	uint64_t done = 0, errors = 0, cerr = 0, checkouts = 0, cok = 0,
	         pqmax = 0, lagto = 0, stuck = 0;
	uint64_t status[600] = {0};
	for (int t = 0; t < nt; t++) {
		worker *w = &ws[t];
		hist_merge(all, &w->lat);
		hist_merge(co, &w->lat_cmd);
		hist_merge(lag, &w->lag);
		done += w->done;
		errors += w->errors;
		cerr += w->conn_errors;
		checkouts += w->checkouts;
		cok += w->checkouts_ok;
		lagto += w->lag_timeouts;
		stuck += w->stuck;
		if (w->pq_max > pqmax)
			pqmax = w->pq_max;
		for (int s = 0; s < 600; s++)
			status[s] += w->status[s];
	}
	double secs = opt.max_requests ? wall : opt.duration;
	printf("{\"label\":\"%s\",\"mode\":\"%s\",\"protocol\":\"%s\","
	       "\"conns\":%d,\"threads\":%d,\"rate\":%.1f,"
	       "\"duration_s\":%.3f,\"requests\":%" PRIu64
	       ",\"rps\":%.1f,\"errors\":%" PRIu64 ",\"conn_errors\":%" PRIu64
	       ",\"stuck_conns\":%" PRIu64
	       ",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
	       "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f",
	       opt.label, open_loop() ? "open" : "closed",
	       opt.resp ? "resp" : "http", opt.conns, nt, opt.rate, secs, done,
	       (double)done / secs, errors, cerr, stuck, hist_q(all, 0.5),
	       hist_q(all, 0.9), hist_q(all, 0.99), hist_q(all, 0.999),
	       (double)all->max / 1000.0,
	       all->n ? (double)all->sum / (double)all->n / 1000.0 : 0);
	printf(",\"status\":{");
	bool first = true;
	for (int s = 0; s < 600; s++)
		if (status[s]) {
			printf("%s\"%d\":%" PRIu64, first ? "" : ",", s,
			       status[s]);
			first = false;
		}
	printf("}");
	if (opt.scenario == SC_CHECKOUT)
		printf(",\"checkouts\":%" PRIu64 ",\"checkouts_ok\":%" PRIu64
		       ",\"checkouts_per_s\":%.1f,\"checkout_p99_ms\":%.3f",
		       checkouts, cok, (double)checkouts / secs,
		       hist_q(co, 0.99));
	if (opt.scenario == SC_LAG)
		printf(",\"lag_count\":%" PRIu64 ",\"lag_p50_ms\":%.3f,"
		       "\"lag_p99_ms\":%.3f,\"lag_p999_ms\":%.3f,"
		       "\"lag_max_ms\":%.3f,\"lag_timeouts\":%" PRIu64
		       ",\"lag_queue_max\":%" PRIu64,
		       lag->n, hist_q(lag, 0.5), hist_q(lag, 0.99),
		       hist_q(lag, 0.999), (double)lag->max / 1000.0, lagto,
		       pqmax);
	printf("}\n");
	fprintf(stderr,
	        "loadgen %s: %d conns, %.0f req/s, p50 %.3f ms, p99 %.3f ms, "
	        "p99.9 %.3f ms, errors %" PRIu64 "\n",
	        opt.label, opt.conns, (double)done / secs, hist_q(all, 0.5),
	        hist_q(all, 0.99), hist_q(all, 0.999), errors);
	/* freed, so that a sanitized build's leak check stays quiet */
	for (int t = 0; t < nt; t++) {
		for (int i = 0; i < ws[t].nconns; i++) {
			free(ws[t].conns[i].in.p);
			free(ws[t].conns[i].out.p);
		}
		free(ws[t].conns);
		free(ws[t].pq);
		close(ws[t].ep);
	}
	free(ws);
	free(th);
	free(all);
	free(co);
	free(lag);
	return 0;
}
