/*
 * server.c — `cleave serve`: open the engine, start HTTP, wait for a
 * signal, shut down in order.
 *
 * Shutdown (SIGTERM or SIGINT, read from a signalfd in the main thread):
 *  1. stop accepting connections (MHD_quiesce_daemon) and mark the server
 *     stopping: answers carry "Connection: close", /health says 503;
 *  2. the engine stops accepting commands (new ones get 503);
 *  3. queries waiting for a position are answered 503 at once;
 *  4. every command already queued is committed and answered, and every
 *     verify or trace run finishes and is answered;
 *  5. requests still in flight get --shutdown-grace-ms to finish;
 *  6. MHD stops, the engine closes its stores; exit 0.
 * A second signal during shutdown exits at once with status 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "server.h"

/* Parses HOST:PORT ("[::1]:8080", "localhost:0") into *ss. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss,
                        bool *ipv6)
{
	char host[256];
	const char *port;
	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');
		if (!rb || rb[1] != ':' ||
		    (size_t)(rb - spec - 1) >= sizeof(host))
			return -1;
		memcpy(host, spec + 1, (size_t)(rb - spec - 1));
		host[rb - spec - 1] = 0;
		port = rb + 2;
	} else {
		const char *c = strrchr(spec, ':');
		if (!c || (size_t)(c - spec) >= sizeof(host))
			return -1;
		memcpy(host, spec, (size_t)(c - spec));
		host[c - spec] = 0;
		port = c + 1;
	}
	char *end;
	long p = strtol(port, &end, 10);
	if (!*port || *end || p < 0 || p > 65535)
		return -1;
	if (!host[0])
		strcpy(host, "127.0.0.1");
	struct addrinfo hints = {0}, *ai;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	if (getaddrinfo(host, port, &hints, &ai))
		return -1;
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*ipv6 = ai->ai_family == AF_INET6;
	freeaddrinfo(ai);
	return 0;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)ss;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
	}
	return false;
}

static int write_port_file(const char *path, unsigned port)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	fprintf(f, "%u\n", port);
	if (fclose(f) || rename(tmp, path)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Enough descriptors for --max-connections (best effort). */
static void raise_nofile(int want)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	rlim_t need = (rlim_t)want + 256;
	if (rl.rlim_cur >= need)
		return;
	rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < need)
		cl_logf(CLEAVE_LOG_WARN, NULL, NULL, -1,
		        "open-file limit %llu is below --max-connections %d",
		        (unsigned long long)rl.rlim_cur, want);
}

/* Waits up to ms for a signal on sfd; true when one came. */
static bool signalled(int sfd, int ms)
{
	struct pollfd p = {sfd, POLLIN, 0};
	if (poll(&p, 1, ms) <= 0)
		return false;
	struct signalfd_siginfo si;
	return read(sfd, &si, sizeof(si)) == sizeof(si);
}

/* Waits until *counter is 0.  limit_ms < 0: no limit.  A second signal
 * ends the process. */
static bool drain(cl_srv *s, int sfd, atomic_int *counter, int limit_ms,
                  const char *what)
{
	int64_t reaped = 0;
	int64_t t0 = cl_mono_now_us(), last_log = t0;
	while (atomic_load(counter) > 0) {
		int64_t now = cl_mono_now_us();
		if (limit_ms >= 0 && now - t0 >= (int64_t)limit_ms * 1000)
			return false;
		if (now - last_log > 5000000) {
			cl_logf(CLEAVE_LOG_INFO, NULL, NULL, -1,
			        "shutdown: %d %s still in flight",
			        atomic_load(counter), what);
			last_log = now;
		}
		if (now - reaped > 200000) {
			cl_conns_reap(s);
			reaped = now;
		}
		if (signalled(sfd, 5)) {
			cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
			        "second signal: exiting without finishing "
			        "%d %s",
			        atomic_load(counter), what);
			_exit(1);
		}
	}
	return true;
}

int cl_server_run(const cl_server_config *cfg)
{
	cl_srv s;
	int code = 1, sfd = -1;
	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	pthread_mutex_init(&s.wmu, NULL);
	pthread_mutex_init(&s.cmu, NULL);
	cl_log_set_level(cfg->log_level);

	s.dom = cfg->dom;
	if (!s.dom) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1, "no domain to serve");
		return 2;
	}
	struct sockaddr_storage ss;
	bool ipv6 = false;
	if (parse_listen(cfg->listen, &ss, &ipv6)) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "--listen '%s' is not HOST:PORT", cfg->listen);
		return 2;
	}
	if (!is_loopback(&ss) && !(cfg->auth_token && *cfg->auth_token)) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "refusing to listen on non-loopback address '%s' "
		        "without --auth-token or --auth-token-file",
		        cfg->listen);
		return 2;
	}
	raise_nofile(cfg->max_connections);

	/* Signals: blocked in every thread (created below, they inherit the
	 * mask) and read here from a signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1, "signalfd: %s",
		        strerror(errno));
		return 1;
	}

	s.ncmds = 0;
	while (s.dom->commands[s.ncmds].name)
		s.ncmds++;
	s.nqueries = 0;
	while (s.dom->queries[s.nqueries].name)
		s.nqueries++;
	s.qhist = calloc((size_t)s.nqueries + 1, sizeof(*s.qhist));
	s.cmd_counts = calloc((size_t)s.ncmds + 1, sizeof(*s.cmd_counts));
	if (!s.qhist || !s.cmd_counts)
		goto out;

	cleave_config ec = {0};
	ec.domain = s.dom;
	ec.data_dir = cfg->data_dir;
	ec.write_store = cfg->write_store;
	ec.read_store = cfg->read_store;
	ec.durability = cfg->durability;
	ec.queue_max = cfg->queue_max;
	ec.lmdb_map_size = cfg->lmdb_map_size;
	ec.read_sync = cfg->read_sync;
	ec.query_node = cfg->query_node;
	ec.advertise_url = cfg->advertise_url;
	ec.batch_max = cfg->batch_max;
	ec.log = cl_log_engine;
	int rc = cleave_engine_open(&ec, &s.e);
	if (rc) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "cannot open the engine: %s: %s", cleave_errname(rc),
		        cleave_errmsg());
		goto out;
	}
	if (cl_qpool_start(&s) || cl_sse_start(&s)) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "cannot start the live-query threads");
		goto out_engine;
	}
	if (cl_http_start(&s, (const struct sockaddr *)&ss, ipv6)) {
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "cannot listen on %s (in use, or not an address of "
		        "this host?)",
		        cfg->listen);
		goto out_engine;
	}
	char host[INET6_ADDRSTRLEN] = "?";
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
		          sizeof(host));
	else
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr,
		          host, sizeof(host));
	if (cfg->port_file && write_port_file(cfg->port_file, s.port))
		cl_logf(CLEAVE_LOG_ERROR, NULL, NULL, -1,
		        "cannot write --port-file %s: %s", cfg->port_file,
		        strerror(errno));
	char ws[256], rs[256];
	cleave_uri_redact(cfg->write_store ? cfg->write_store : "sqlite", ws, sizeof(ws));
	cleave_uri_redact(cfg->read_store ? cfg->read_store : "embedded", rs, sizeof(rs));
	cl_logf(CLEAVE_LOG_INFO, NULL, NULL, cleave_log_head(s.e),
	        "listening on http://%s%s%s:%u (%s, domain %s, data %s, write "
	        "store %s, read store %s, %d HTTP threads, durability %s)",
	        ipv6 ? "[" : "", host, ipv6 ? "]" : "", s.port,
	        cfg->query_node ? "query node" : "writer", s.dom->name,
	        cfg->data_dir, ws, rs, cfg->http_threads,
	        cfg->durability == CLEAVE_DURABILITY_OS ? "os" : "fsync");

	/* Serve: the main thread reaps slow clients and waits for a signal. */
	while (!signalled(sfd, 200))
		cl_conns_reap(&s);

	cl_logf(CLEAVE_LOG_INFO, NULL, NULL, cleave_log_head(s.e),
	        "shutting down: no new connections; finishing %d command(s) "
	        "and %d request(s) in flight",
	        atomic_load(&s.inflight_cmds), atomic_load(&s.busy_reqs));
	atomic_store(&s.stopping, true);
	MHD_socket lsock = MHD_quiesce_daemon(s.d);
	cleave_engine_stop_accepting(s.e);
	cl_waiters_close(&s);
	cl_sse_close_all(&s);
	cl_qpool_close(&s); /* its requests are suspended: before MHD stops */
	drain(&s, sfd, &s.inflight_cmds, -1, "command(s)");
	/* a verify or trace cannot be cancelled, and MHD must not stop
	 * while their connections are suspended */
	drain(&s, sfd, &s.jobs, -1, "verify or trace run(s)");
	if (!drain(&s, sfd, &s.busy_reqs, cfg->shutdown_grace_ms, "request(s)"))
		cl_logf(CLEAVE_LOG_WARN, NULL, NULL, -1,
		        "shutdown: closing %d request(s) still open after "
		        "%d ms",
		        atomic_load(&s.busy_reqs), cfg->shutdown_grace_ms);
	MHD_stop_daemon(s.d);
	if (lsock != MHD_INVALID_SOCKET)
		close(lsock);
	s.d = NULL;
	code = 0;
out_engine:
	cl_sse_stop(&s); /* after MHD: no stream is left */
	cl_qpool_stop(&s);
	cleave_engine_close(s.e);
	cl_sse_free(&s); /* after the engine: its watches called back */
	if (code == 0)
		cl_logf(CLEAVE_LOG_INFO, NULL, NULL, -1, "stopped cleanly");
out:
	if (sfd >= 0)
		close(sfd);
	free(s.qhist);
	free(s.cmd_counts);
	pthread_mutex_destroy(&s.wmu);
	pthread_mutex_destroy(&s.cmu);
	return code;
}
