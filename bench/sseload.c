/*
 * sseload.c — holds N live-query streams (server-sent events) open on one
 * server and times what arrives on them, for the benchmarks' live-query
 * workload (bench/run.py; docs/performance.md, "Live queries").
 *
 * One process, one epoll loop.  Stream i asks
 *   GET /queries/product?productId=p<K> with Accept: text/event-stream
 * for K = --key-first + i % --keys (i < --conns: the probed streams, N /
 * --keys on each key), then --idle-conns streams one per key from
 * --idle-key-first on (held, never probed: the subscribers on other
 * keys).  At most --burst streams wait for their first message at a time
 * (the server's listen backlog is 1,024).  Every message is parsed (HTTP/1.1
 * chunked body, then "id:", "event:", "data:" lines up to a blank line);
 * keep-alive comments are counted.
 *
 * Driven over stdin, one command a line, each answered by one JSON line
 * on stdout:
 *   (at start)       {"event":"ready", …}: every stream has its first
 *                    message or failed, or --open-timeout passed
 *   probe MS COUNT   COUNT Restocks of a random subscribed key, one every
 *                    MS ms (the next waits until every stream of the key
 *                    had its message, 2 s at most), on a keep-alive
 *                    connection of its own.  Push latency per stream of
 *                    the key: from the command's answer (the writer's
 *                    client knows it is durable) and from its send, to
 *                    the message's arrival.  A message that comes before
 *                    the answer counts 0 from the answer (before_answer
 *                    says how many).
 *   stats            counters: streams open, messages, keep-alives, closed
 *   quit             closes every stream, prints the counters, exits
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
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

static struct {
	const char *host;
	int port;
	int conns, keys, key_first, burst;
	int idle_conns, idle_key_first;
	double open_timeout;
	uint32_t seed;
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .conns = 1000,
    .keys = 500,
    .key_first = 1,
    .burst = 256,
    .idle_conns = 0,
    .idle_key_first = 1001,
    .open_timeout = 120,
    .seed = 1,
};

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "sseload: ");
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

/* ---- buffers ------------------------------------------------------------ */

typedef struct buf {
	char *p;
	size_t len, cap;
} buf;

static void buf_need(buf *b, size_t more)
{
	if (b->len + more + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 512;
	while (cap < b->len + more + 1)
		cap *= 2;
	if (!(b->p = realloc(b->p, cap)))
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

static void buf_drop(buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
	if (b->p)
		b->p[b->len] = 0;
}

static void buf_free(buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- streams ------------------------------------------------------------ */

enum { S_IDLE, S_CONNECTING, S_HEAD, S_BODY, S_CLOSED };
enum { C_SIZE, C_DATA, C_DATA_END }; /* chunked decoding */

typedef struct stream {
	int fd;
	int idx, key;
	int st, cst;
	uint64_t chunk_left;
	buf in;  /* raw bytes not yet decoded */
	buf msg; /* decoded body: the message being read */
	uint64_t t_open, t_first;
	uint64_t messages;
	int64_t last_id;
	/* the probe this stream's key is under */
	uint32_t probe_seen; /* the probe number last delivered here */
	uint64_t t_probe;    /* its arrival */
	int64_t probe_id;
} stream;

static stream *S;
static int **by_key; /* key - key_first -> stream indexes */
static int *nby_key;
static int ep;

static struct {
	int opened, first, failed, open_now, closed_after_first;
	uint64_t messages, keepalives, answers, errors_ev;
	uint64_t statuses[600];
	uint64_t t_start, t_ready;
	hist first_lat;
	bool ready;
	int next_to_open;
	int waiting_first; /* connecting or before their first message */
} g;

/* the probe in progress */
static struct {
	bool running, in_flight;
	int fd, st;
	buf out, in;
	uint32_t seq; /* the current probe's number */
	int key;      /* its key */
	uint64_t t_send, t_answer;
	int64_t pos; /* the answer's position */
	uint64_t t_next, t_deadline;
	int left, interval_ms, done;
	hist from_answer, from_send, command, last_from_answer;
	uint64_t deliveries, expected, missed, before_answer, stale;
	uint64_t failed_cmds;
} P;

static void ep_add(int fd, void *ptr, uint32_t events)
{
	struct epoll_event e = {.events = events, .data.ptr = ptr};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e))
		die("epoll_ctl: %s", strerror(errno));
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)opt.port)};
	inet_pton(AF_INET, opt.host, &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

static void stream_fail(stream *s, const char *why)
{
	if (s->st == S_CLOSED)
		return;
	bool had_first = s->t_first != 0;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->st = S_CLOSED;
	buf_free(&s->in);
	buf_free(&s->msg);
	g.open_now--;
	if (had_first) {
		if (++g.closed_after_first <= 5)
			fprintf(stderr, "sseload: stream %d (p%d) closed: %s\n",
			        s->idx, s->key, why);
	} else {
		g.failed++;
		g.waiting_first--;
		if (g.failed <= 5)
			fprintf(stderr, "sseload: stream %d failed: %s\n",
			        s->idx, why);
	}
}

static void stream_open(int i)
{
	stream *s = &S[i];
	s->idx = i;
	s->key = i < opt.conns ? opt.key_first + i % opt.keys
	                       : opt.idle_key_first + (i - opt.conns);
	s->last_id = -1;
	s->t_open = now_ns();
	g.opened++;
	g.open_now++;
	g.waiting_first++;
	s->fd = dial();
	if (s->fd < 0) {
		s->st = S_CONNECTING;
		stream_fail(s, strerror(errno));
		return;
	}
	char req[256];
	int n = snprintf(req, sizeof(req),
	                 "GET /queries/product?productId=p%d HTTP/1.1\r\n"
	                 "Host: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
	                 s->key, opt.host, opt.port);
	buf_add(&s->in, req, (size_t)n); /* sent once connected */
	s->st = S_CONNECTING;
	ep_add(s->fd, s, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
}

static int total(void)
{
	return opt.conns + opt.idle_conns;
}

static void open_more(void)
{
	while (g.next_to_open < total() && g.waiting_first < opt.burst)
		stream_open(g.next_to_open++);
}

/* A whole message (m: its lines, without the blank one). */
static void on_message(stream *s, const char *m, size_t n, uint64_t t)
{
	int64_t id = -1;
	bool answer = false, data = false;
	for (const char *p = m, *end = m + n; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (ln >= 4 && !memcmp(p, "id: ", 4))
			id = strtoll(p + 4, NULL, 10);
		else if (ln >= 13 && !memcmp(p, "event: answer", 13))
			answer = true;
		else if (ln >= 5 && !memcmp(p, "data:", 5))
			data = true;
		p += ln + 1;
	}
	if (!data) { /* a comment: the keep-alives */
		g.keepalives++;
		return;
	}
	g.messages++;
	s->messages++;
	if (answer)
		g.answers++;
	else
		g.errors_ev++;
	if (id >= 0)
		s->last_id = id;
	if (!s->t_first) {
		s->t_first = t;
		g.first++;
		g.waiting_first--;
		hist_add(&g.first_lat, (t - s->t_open) / 1000);
		return;
	}
	if (P.running && P.in_flight && s->key == P.key &&
	    s->probe_seen != P.seq) {
		s->probe_seen = P.seq;
		s->t_probe = t;
		s->probe_id = id;
	}
}

/* Decodes what came on s: the head, then the chunked body's messages. */
static void stream_parse(stream *s, uint64_t t)
{
	if (s->st == S_HEAD) {
		char *e = memmem(s->in.p, s->in.len, "\r\n\r\n", 4);
		if (!e) {
			if (s->in.len > 16384)
				stream_fail(s, "headers too large");
			return;
		}
		int status = 0;
		if (s->in.len > 12 && !memcmp(s->in.p, "HTTP/1.", 7))
			status = atoi(s->in.p + 9);
		if (status > 0 && status < 600)
			g.statuses[status]++;
		if (status != 200 ||
		    !memmem(s->in.p, (size_t)(e - s->in.p), "chunked", 7)) {
			char why[64];
			snprintf(why, sizeof(why), "status %d", status);
			stream_fail(s, why);
			return;
		}
		buf_drop(&s->in, (size_t)(e + 4 - s->in.p));
		s->st = S_BODY;
		s->cst = C_SIZE;
	}
	for (;;) {
		if (s->cst == C_SIZE) {
			char *nl = memchr(s->in.p, '\n', s->in.len);
			if (!nl)
				break;
			s->chunk_left = strtoull(s->in.p, NULL, 16);
			buf_drop(&s->in, (size_t)(nl + 1 - s->in.p));
			if (!s->chunk_left) {
				stream_fail(s, "the server ended the stream");
				return;
			}
			s->cst = C_DATA;
		} else if (s->cst == C_DATA) {
			if (!s->in.len)
				break;
			size_t take = s->in.len < s->chunk_left
			                  ? s->in.len
			                  : (size_t)s->chunk_left;
			buf_add(&s->msg, s->in.p, take);
			buf_drop(&s->in, take);
			s->chunk_left -= take;
			if (!s->chunk_left)
				s->cst = C_DATA_END;
		} else {
			if (s->in.len < 2)
				break;
			buf_drop(&s->in, 2); /* CRLF */
			s->cst = C_SIZE;
		}
	}
	/* messages end with a blank line */
	char *e;
	while (s->msg.len && (e = memmem(s->msg.p, s->msg.len, "\n\n", 2))) {
		on_message(s, s->msg.p, (size_t)(e - s->msg.p) + 1, t);
		buf_drop(&s->msg, (size_t)(e + 2 - s->msg.p));
	}
}

static void stream_event(stream *s, uint32_t ev)
{
	uint64_t t = now_ns();
	if (s->st == S_CONNECTING && (ev & (EPOLLOUT | EPOLLERR))) {
		int err = 0;
		socklen_t sl = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err) {
			stream_fail(s, strerror(err));
			return;
		}
		ssize_t w = send(s->fd, s->in.p, s->in.len, MSG_NOSIGNAL);
		if (w != (ssize_t)s->in.len) {
			stream_fail(s, "short send");
			return;
		}
		s->in.len = 0;
		s->st = S_HEAD;
		struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP,
		                        .data.ptr = s};
		epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &e);
		return;
	}
	if (s->st != S_HEAD && s->st != S_BODY)
		return;
	for (;;) {
		char tmp[65536];
		ssize_t r = recv(s->fd, tmp, sizeof(tmp), 0);
		if (r > 0) {
			buf_add(&s->in, tmp, (size_t)r);
			stream_parse(s, t);
			if (s->st == S_CLOSED)
				return;
			if ((size_t)r < sizeof(tmp))
				break;
			continue;
		}
		if (r == 0) {
			stream_fail(s, "closed by the server");
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		if (errno == EINTR)
			continue;
		stream_fail(s, strerror(errno));
		return;
	}
}

/* ---- the probe: Restocks of subscribed keys ----------------------------- */

static uint32_t rng = 1;

static uint32_t rnd(void)
{
	uint32_t x = rng;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return rng = x;
}

static void probe_connect(void)
{
	if (P.fd >= 0)
		return;
	P.fd = dial();
	if (P.fd < 0)
		die("probe connection: %s", strerror(errno));
	ep_add(P.fd, &P, EPOLLIN | EPOLLOUT);
	P.st = S_CONNECTING;
}

static void probe_send(void)
{
	P.seq++;
	P.key = opt.key_first + (int)(rnd() % (uint32_t)opt.keys);
	P.in_flight = true;
	P.t_answer = 0;
	P.pos = -1;
	char body[128];
	int bl = snprintf(body, sizeof(body),
	                  "{\"productId\":\"p%d\",\"quantity\":1}", P.key);
	P.out.len = 0;
	char h[256];
	int hl = snprintf(h, sizeof(h),
	                  "POST /commands/Restock HTTP/1.1\r\nHost: %s:%d\r\n"
	                  "Content-Type: application/json\r\n"
	                  "Content-Length: %d\r\n\r\n",
	                  opt.host, opt.port, bl);
	buf_add(&P.out, h, (size_t)hl);
	buf_add(&P.out, body, (size_t)bl);
	P.t_send = now_ns();
	P.t_deadline = P.t_send + 2000000000ull;
	if (P.st == S_BODY) {
		ssize_t w = send(P.fd, P.out.p, P.out.len, MSG_NOSIGNAL);
		if (w != (ssize_t)P.out.len)
			die("probe send: %s", strerror(errno));
		P.out.len = 0;
	}
}

/* The probe's streams: done when every one had its message. */
static bool probe_delivered(void)
{
	int k = P.key - opt.key_first;
	for (int j = 0; j < nby_key[k]; j++) {
		stream *s = &S[by_key[k][j]];
		if (s->st == S_BODY && s->probe_seen != P.seq)
			return false;
	}
	return true;
}

static void probe_finish(void)
{
	int k = P.key - opt.key_first;
	uint64_t last = 0;
	bool any = false;
	for (int j = 0; j < nby_key[k]; j++) {
		stream *s = &S[by_key[k][j]];
		if (s->st != S_BODY && s->probe_seen != P.seq)
			continue;
		P.expected++;
		if (s->probe_seen != P.seq) {
			P.missed++;
			continue;
		}
		P.deliveries++;
		if (P.pos >= 0 && s->probe_id < P.pos)
			P.stale++; /* an older answer: should not happen */
		hist_add(&P.from_send, (s->t_probe - P.t_send) / 1000);
		uint64_t fa = 0;
		if (P.t_answer && s->t_probe > P.t_answer)
			fa = (s->t_probe - P.t_answer) / 1000;
		else
			P.before_answer++;
		hist_add(&P.from_answer, fa);
		if (!any || fa > last)
			last = fa;
		any = true;
	}
	if (any)
		hist_add(&P.last_from_answer, last);
	P.in_flight = false;
	P.done++;
	P.left--;
}

static void hist_json(FILE *f, const char *name, const hist *h)
{
	fprintf(f,
	        "\"%s\":{\"n\":%" PRIu64 ",\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
	        "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}",
	        name, h->n, hist_q(h, 0.5), hist_q(h, 0.99), hist_q(h, 0.999),
	        (double)h->max / 1000.0,
	        h->n ? (double)h->sum / (double)h->n / 1000.0 : 0.0);
}

static void probe_report(void)
{
	printf("{\"event\":\"probe\",\"probes\":%d,\"interval_ms\":%d,"
	       "\"streams_per_key\":%.1f,\"deliveries\":%" PRIu64
	       ",\"expected\":%" PRIu64 ",\"missed\":%" PRIu64
	       ",\"before_answer\":%" PRIu64 ",\"stale\":%" PRIu64
	       ",\"failed_commands\":%" PRIu64 ",",
	       P.done, P.interval_ms, (double)opt.conns / opt.keys,
	       P.deliveries, P.expected, P.missed, P.before_answer, P.stale,
	       P.failed_cmds);
	hist_json(stdout, "from_answer", &P.from_answer);
	putchar(',');
	hist_json(stdout, "from_send", &P.from_send);
	putchar(',');
	hist_json(stdout, "last_stream_from_answer", &P.last_from_answer);
	putchar(',');
	hist_json(stdout, "command", &P.command);
	printf("}\n");
	fflush(stdout);
	P.running = false;
}

static void probe_event(uint32_t ev)
{
	if (P.st == S_CONNECTING && (ev & (EPOLLOUT | EPOLLERR))) {
		int err = 0;
		socklen_t sl = sizeof(err);
		getsockopt(P.fd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err)
			die("probe connection: %s", strerror(err));
		P.st = S_BODY;
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &P};
		epoll_ctl(ep, EPOLL_CTL_MOD, P.fd, &e);
		if (P.out.len) {
			ssize_t w =
			    send(P.fd, P.out.p, P.out.len, MSG_NOSIGNAL);
			if (w != (ssize_t)P.out.len)
				die("probe send: %s", strerror(errno));
			P.out.len = 0;
		}
		return;
	}
	for (;;) {
		char tmp[16384];
		ssize_t r = recv(P.fd, tmp, sizeof(tmp), 0);
		if (r > 0) {
			buf_add(&P.in, tmp, (size_t)r);
			continue;
		}
		if (r == 0)
			die("the server closed the probe connection");
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		if (errno != EINTR)
			die("probe recv: %s", strerror(errno));
	}
	char *e = P.in.len ? memmem(P.in.p, P.in.len, "\r\n\r\n", 4) : NULL;
	if (!e)
		return;
	size_t hl = (size_t)(e + 4 - P.in.p);
	const char *cl = strcasestr(P.in.p, "\r\nContent-Length:");
	size_t blen = cl && cl < e ? strtoul(cl + 17, NULL, 10) : 0;
	if (P.in.len < hl + blen)
		return;
	uint64_t t = now_ns();
	int status = atoi(P.in.p + 9);
	const char *ps = strcasestr(P.in.p, "\r\nX-Cleave-Position:");
	if (status == 200 && ps && ps < e) {
		P.pos = strtoll(ps + 20, NULL, 10);
		P.t_answer = t;
		hist_add(&P.command, (t - P.t_send) / 1000);
	} else {
		P.failed_cmds++;
		fprintf(stderr, "sseload: probe Restock answered %d\n", status);
	}
	buf_drop(&P.in, hl + blen);
}

/* ---- control ------------------------------------------------------------ */

static void stats_json(const char *event)
{
	printf("{\"event\":\"%s\",\"conns\":%d,\"idle_conns\":%d,\"opened\":%d,"
	       "\"first\":%d,"
	       "\"failed\":%d,\"open\":%d,\"closed_after_first\":%d,"
	       "\"messages\":%" PRIu64 ",\"answers\":%" PRIu64
	       ",\"error_events\":%" PRIu64 ",\"keepalives\":%" PRIu64
	       ",\"keys\":%d,\"key_first\":%d,\"open_s\":%.3f,\"statuses\":{",
	       event, opt.conns, opt.idle_conns, g.opened, g.first, g.failed,
	       g.open_now, g.closed_after_first, g.messages, g.answers,
	       g.errors_ev, g.keepalives, opt.keys, opt.key_first,
	       g.t_ready ? (double)(g.t_ready - g.t_start) / 1e9 : -1.0);
	bool comma = false;
	for (int i = 0; i < 600; i++)
		if (g.statuses[i]) {
			printf("%s\"%d\":%" PRIu64, comma ? "," : "", i,
			       g.statuses[i]);
			comma = true;
		}
	printf("},");
	hist_json(stdout, "first_message", &g.first_lat);
	printf("}\n");
	fflush(stdout);
}

static buf ctl;
static bool quitting;

static void control_line(char *line)
{
	int ms, count;
	if (sscanf(line, "probe %d %d", &ms, &count) == 2 && ms >= 0 &&
	    count > 0) {
		memset(&P.from_answer, 0, sizeof(P.from_answer));
		memset(&P.from_send, 0, sizeof(P.from_send));
		memset(&P.command, 0, sizeof(P.command));
		memset(&P.last_from_answer, 0, sizeof(P.last_from_answer));
		P.deliveries = P.expected = P.missed = P.before_answer = 0;
		P.stale = P.failed_cmds = 0;
		P.done = 0;
		P.left = count;
		P.interval_ms = ms;
		P.running = true;
		P.t_next = now_ns();
		probe_connect();
	} else if (!strcmp(line, "stats")) {
		stats_json("stats");
	} else if (!strcmp(line, "quit")) {
		quitting = true;
	} else {
		fprintf(stderr, "sseload: unknown command '%s'\n", line);
	}
}

static void control_event(void)
{
	char tmp[4096];
	ssize_t r = read(0, tmp, sizeof(tmp));
	if (r <= 0) {
		if (r == 0 || (errno != EAGAIN && errno != EINTR))
			quitting = true; /* the driver has gone */
		return;
	}
	buf_add(&ctl, tmp, (size_t)r);
	char *nl;
	while ((nl = memchr(ctl.p, '\n', ctl.len))) {
		*nl = 0;
		control_line(ctl.p);
		buf_drop(&ctl, (size_t)(nl + 1 - ctl.p));
	}
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: sseload [--host H] [--port P] [--conns N] [--keys K]\n"
	        "               [--key-first F] [--idle-conns M] "
	        "[--idle-key-first G]\n"
	        "               [--burst B] [--open-timeout S]\n"
	        "Holds N live-query streams on product p<F + i %% K>; "
	        "commands on stdin:\n"
	        "probe MS COUNT, stats, quit (see the top of sseload.c).\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},
	    {"conns", required_argument, NULL, 'c'},
	    {"keys", required_argument, NULL, 'k'},
	    {"key-first", required_argument, NULL, 'f'},
	    {"burst", required_argument, NULL, 'b'},
	    {"open-timeout", required_argument, NULL, 't'},
	    {"seed", required_argument, NULL, 's'},
	    {"idle-conns", required_argument, NULL, 'i'},
	    {"idle-key-first", required_argument, NULL, 'j'},
	    {0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (o) {
		case 'h':
			opt.host = optarg;
			break;
		case 'p':
			opt.port = atoi(optarg);
			break;
		case 'c':
			opt.conns = atoi(optarg);
			break;
		case 'k':
			opt.keys = atoi(optarg);
			break;
		case 'f':
			opt.key_first = atoi(optarg);
			break;
		case 'b':
			opt.burst = atoi(optarg);
			break;
		case 't':
			opt.open_timeout = atof(optarg);
			break;
		case 'i':
			opt.idle_conns = atoi(optarg);
			break;
		case 'j':
			opt.idle_key_first = atoi(optarg);
			break;
		case 's':
			opt.seed = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (opt.conns < 1 || opt.keys < 1 || opt.burst < 1 ||
	    opt.idle_conns < 0)
		usage();
	rng = opt.seed ? opt.seed : 1;

	/* a descriptor per stream, and some */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) &&
	    rl.rlim_cur < (rlim_t)total() + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)total() + 64)
			die("the open-file limit (%llu) is below the %d "
			    "streams",
			    (unsigned long long)rl.rlim_cur, total());
	}
	S = calloc((size_t)total(), sizeof(*S));
	by_key = calloc((size_t)opt.keys, sizeof(*by_key));
	nby_key = calloc((size_t)opt.keys, sizeof(*nby_key));
	if (!S || !by_key || !nby_key)
		die("out of memory");
	for (int i = 0; i < total(); i++)
		S[i].fd = -1;
	for (int i = 0; i < opt.conns; i++) {
		int k = i % opt.keys;
		int *p =
		    realloc(by_key[k], (size_t)(nby_key[k] + 1) * sizeof(int));
		if (!p)
			die("out of memory");
		by_key[k] = p;
		p[nby_key[k]++] = i;
	}
	P.fd = -1;
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1: %s", strerror(errno));
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	static int ctl_tag;
	ep_add(0, &ctl_tag, EPOLLIN);

	g.t_start = now_ns();
	open_more();
	struct epoll_event evs[512];
	while (!quitting) {
		uint64_t now = now_ns();
		int timeout = 100;
		if (!g.ready &&
		    (g.first + g.failed >= total() ||
		     now - g.t_start > (uint64_t)(opt.open_timeout * 1e9))) {
			g.ready = true;
			g.t_ready = now;
			stats_json("ready");
		}
		if (P.running) {
			if (P.in_flight && ((P.t_answer && probe_delivered()) ||
			                    now > P.t_deadline)) {
				probe_finish();
				if (P.left <= 0)
					probe_report();
			}
			if (P.running && !P.in_flight && P.st == S_BODY &&
			    now >= P.t_next) {
				P.t_next =
				    now + (uint64_t)P.interval_ms * 1000000;
				probe_send();
			}
			timeout = 1;
		}
		int n = epoll_wait(ep, evs, 512, timeout);
		for (int i = 0; i < n; i++) {
			void *ptr = evs[i].data.ptr;
			if (ptr == &ctl_tag)
				control_event();
			else if (ptr == &P)
				probe_event(evs[i].events);
			else
				stream_event(ptr, evs[i].events);
		}
		open_more();
	}
	for (int i = 0; i < total(); i++)
		if (S[i].fd >= 0)
			close(S[i].fd);
	g.open_now = 0;
	stats_json("quit");
	return 0;
}
