/*
 * fuzz_http.c — the whole HTTP request path, bytes in, bytes out: the
 * real server (MHD with our callbacks in http.c, conns.c, routes.c,
 * params.c, the handlers in commands.c, queries.c, admin.c, metrics.c)
 * over a real engine serving the shop from a scratch data directory.
 *
 * Why drive MHD rather than call our functions after it: our request code
 * reads everything through MHD (headers via MHD_lookup_connection_value,
 * the body in chunks from the access callback, suspend/resume), so a
 * harness that fakes MHD would test the fake.  Handing MHD one end of a
 * socketpair (MHD_add_connection) runs exactly what a network client
 * reaches — MHD's parser first, then every line of ours it lets through:
 * routing and 405s, --max-header and --max-body (413 at once, or after
 * draining), auth, trace ids, If-Match, command submission and its
 * asynchronous answer, query parameters and min_position waits, pipelined
 * and keep-alive requests on one connection.
 *
 * Input: byte 0 bit 0 picks the server (0: no token; 1: --auth-token
 * "fuzz-token" with --auth-queries); both answer to "Host: x" (--allow-host
 * x, so inputs get past the Host check) and to pages of
 * http://fuzz.example (--allow-origin); the rest is written to the
 * connection, which is then half-closed; the harness reads until the
 * server closes it or stays quiet for 100 ms.  Invariants: every answer
 * starts with "HTTP/1.", no 500 (an internal error) is answered, and
 * within 10 s of the client going away no request is left stuck (every
 * request received whole was answered or dropped, every command
 * completed).
 *
 * Engine and MHD threads run beside libFuzzer's; their coverage is
 * counted too, so coverage is slightly noisy.  Run it with
 * -detect_leaks=0 (background threads hold memory between inputs);
 * leaks are checked at exit, when the harness stops both servers.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "domains.h"
#include "fuzz.h"
#include "server/http.h"
#include "server/log.h"

typedef struct fsrv {
	cl_server_config cfg;
	cl_srv s;
	char dir[512];
} fsrv;

#define QUIET_MS 100

static fsrv srv[2];
static bool started;

static int rm_one(const char *p, const struct stat *st, int flag,
                  struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void stop_all(void)
{
	for (int i = 0; i < 2; i++) {
		cl_srv *s = &srv[i].s;
		if (!s->d)
			continue;
		atomic_store(&s->stopping, true);
		cleave_engine_stop_accepting(s->e);
		cl_waiters_close(s);
		for (int k = 0; k < 5000 && atomic_load(&s->inflight_cmds); k++)
			usleep(1000);
		MHD_stop_daemon(s->d);
		s->d = NULL;
		cleave_engine_close(s->e);
		free(s->qhist);
		free(s->cmd_counts);
		pthread_mutex_destroy(&s->wmu);
		pthread_mutex_destroy(&s->cmu);
		nftw(srv[i].dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	}
}

static void start(fsrv *f, bool auth)
{
	cl_server_config *c = &f->cfg;
	char *argv[] = {"fuzz", "--allow-host", "x", "--allow-origin",
	                "http://fuzz.example"};
	cl_server_config_init(c, CL_CFG_SERVE);
	if (cl_server_config_parse(c, CL_CFG_SERVE, 5, argv) != CL_CFG_RUN)
		abort();
	const char *tmp = getenv("CLEAVE_TEST_TMP");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	mkdir(tmp, 0700);
	snprintf(f->dir, sizeof(f->dir), "%s/fuzz-http-XXXXXX", tmp);
	if (!mkdtemp(f->dir)) {
		perror("mkdtemp");
		abort();
	}
	c->data_dir = f->dir;
	c->listen = "127.0.0.1:0";
	c->durability = CLEAVE_DURABILITY_OS;
	c->max_body = 64 * 1024; /* small, so 413s are reachable */
	c->max_header = 8 * 1024;
	c->wait_max_ms = 20; /* min_position waits end quickly */
	c->idle_timeout = 5;
	c->http_threads = 2;
	c->queue_max = 1024;
	if (auth) {
		c->auth_token = "fuzz-token";
		c->auth_queries = true;
	}
	cl_srv *s = &f->s;
	memset(s, 0, sizeof(*s));
	s->cfg = c;
	pthread_mutex_init(&s->wmu, NULL);
	pthread_mutex_init(&s->cmu, NULL);
	s->dom = cleave_domain_find("shop");
	while (s->dom->commands[s->ncmds].name)
		s->ncmds++;
	while (s->dom->queries[s->nqueries].name)
		s->nqueries++;
	s->qhist = calloc((size_t)s->nqueries + 1, sizeof(*s->qhist));
	s->cmd_counts = calloc((size_t)s->ncmds + 1, sizeof(*s->cmd_counts));
	cleave_config ec = {0};
	ec.domain = s->dom;
	ec.data_dir = c->data_dir;
	ec.durability = c->durability;
	ec.queue_max = c->queue_max;
	ec.log = cl_log_engine;
	if (cleave_engine_open(&ec, &s->e)) {
		fprintf(stderr, "engine: %s\n", cleave_errmsg());
		abort();
	}
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (cl_http_start(s, (const struct sockaddr *)&a, false)) {
		fprintf(stderr, "cannot start MHD\n");
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (started)
		return 0;
	started = true;
	/* errors only: MHD warns on every connection that a socketpair
	 * takes no TCP options; 500s are logged as errors, and wanted */
	cl_log_set_level(CLEAVE_LOG_ERROR);
	signal(SIGPIPE, SIG_IGN);
	start(&srv[0], false);
	start(&srv[1], true);
	atexit(stop_all);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Checks every status line in what the server sent. */
static void check_answers(const char *buf, size_t n)
{
	if (n == 0)
		return; /* closed without an answer: protocol abuse */
	FUZZ_CHECK(n >= 12 && !memcmp(buf, "HTTP/1.", 7));
	/* a status line at the start and after each blank line that ends a
	 * response head (bodies may hold anything, so only check those
	 * that parse) */
	for (const char *p = buf; p && p + 12 <= buf + n;) {
		if (!memcmp(p, "HTTP/1.1 ", 9) || !memcmp(p, "HTTP/1.0 ", 9)) {
			int st = atoi(p + 9);
			FUZZ_CHECK(st >= 100 && st < 600);
			/* 501/505: MHD on protocol abuse; 503: overload;
			 * 504: a min_position wait timed out */
			FUZZ_CHECK(st < 500 || st == 501 || st == 503 ||
			           st == 504 || st == 505);
		}
		p = memmem(p + 1, (size_t)(buf + n - p - 1), "\r\nHTTP/1.", 9);
		if (p)
			p += 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!started)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size < 1)
		return 0;
	cl_srv *s = &srv[data[0] & 1].s;
	data++;
	size--;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		abort();
	struct sockaddr_in peer = {0};
	peer.sin_family = AF_INET;
	peer.sin_port = htons(40000);
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (MHD_add_connection(s->d, sv[0], (const struct sockaddr *)&peer,
	                       sizeof(peer)) != MHD_YES) {
		close(sv[1]);
		return 0;
	}
	int fd = sv[1];
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	size_t off = 0, cap = 1 << 16, got = 0;
	char *out = malloc(cap);
	bool wdone = size == 0;
	if (wdone)
		shutdown(fd, SHUT_WR);
	/* Read until the server closes, or until it has been quiet for
	 * QUIET_MS after the whole input went out: MHD keeps a half-closed
	 * connection holding a partial request until its idle timeout, and
	 * waiting for that would make each such input cost seconds. */
	int64_t last = now_ms();
	for (;;) {
		struct pollfd p = {fd, (short)(POLLIN | (wdone ? 0 : POLLOUT)),
		                   0};
		int64_t t = now_ms();
		if (wdone && t - last >= QUIET_MS)
			break;
		if (poll(&p, 1, QUIET_MS) < 0 && errno != EINTR)
			abort();
		if (!wdone && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = write(fd, data + off, size - off);
			if (w > 0)
				off += (size_t)w;
			if (w < 0 && errno != EAGAIN)
				off = size; /* the server closed its end */
			if (off == size) {
				wdone = true;
				shutdown(fd, SHUT_WR);
			}
			last = now_ms();
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (got == cap)
				out = realloc(out, cap *= 2);
			ssize_t r = read(fd, out + got, cap - got);
			if (r == 0 || (r < 0 && errno != EAGAIN))
				break;
			if (r > 0)
				got += (size_t)r;
			last = now_ms();
		}
	}
	close(fd);
	check_answers(out, got);
	free(out);
	/* Nothing may stay stuck: every request received whole is answered
	 * (or dropped with its connection) and every command completes. */
	int64_t deadline = now_ms() + 10000;
	while (atomic_load(&s->busy_reqs) || atomic_load(&s->inflight_cmds)) {
		if (now_ms() > deadline) {
			fprintf(stderr, "stuck: %d request(s), %d command(s)\n",
			        atomic_load(&s->busy_reqs),
			        atomic_load(&s->inflight_cmds));
			abort();
		}
		usleep(200);
	}
	return 0;
}
