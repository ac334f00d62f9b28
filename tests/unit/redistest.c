/*
 * redistest.c — see redistest.h.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redistest.h"
#include "testutil.h"

static pid_t pid = -1;
static int port;
static char *dir;

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t l = sizeof(a);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &l)) {
		perror("free port");
		exit(1);
	}
	close(fd);
	return ntohs(a.sin_port);
}

static void spawn(void)
{
	char p[16];
	snprintf(p, sizeof(p), "%d", port);
	pid_t parent = getpid();
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int null = open("/dev/null", 1);
		dup2(null, 1);
		execlp("redis-server", "redis-server", "--port", p, "--bind",
		       "127.0.0.1", "--dir", dir, "--save", "",
		       "--appendonly", "yes", "--appendfsync", "always",
		       (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) { /* up to 5 s */
		redisContext *c = redisConnect("127.0.0.1", port);
		if (c && !c->err) {
			redisReply *r = redisCommand(c, "PING");
			bool ok = r && r->type == REDIS_REPLY_STATUS;
			if (r)
				freeReplyObject(r);
			redisFree(c);
			if (ok)
				return;
		} else if (c) {
			redisFree(c);
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "redis-server exited (%d)\n", st);
			exit(1);
		}
		usleep(10000);
	}
	fprintf(stderr, "redis-server did not come up on port %d\n", port);
	exit(1);
}

int rdt_start(void)
{
	if (system("command -v redis-server >/dev/null 2>&1") != 0)
		return 1;
	dir = tu_tmpdir("redis");
	port = free_port();
	spawn();
	return 0;
}

void rdt_stop(void)
{
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		pid = -1;
	}
}

void rdt_restart(void)
{
	rdt_stop();
	spawn();
}

int rdt_port(void)
{
	return port;
}

char *rdt_path(const char *prefix)
{
	char *p = malloc(strlen(prefix) + 64);
	sprintf(p, "redis://127.0.0.1:%d/0/%s", port, prefix);
	return p;
}

static redisReply *vcmd(const char *fmt, va_list ap)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	if (!c || c->err)
		fail_msg("redis connect: %s", c ? c->errstr : "no memory");
	redisReply *r = redisvCommand(c, fmt, ap);
	if (!r)
		fail_msg("redis command: %s", c->errstr);
	redisFree(c);
	return r;
}

redisReply *rdt_cmd(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(fmt, ap);
	va_end(ap);
	return r;
}

long long rdt_int(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = vcmd(fmt, ap);
	va_end(ap);
	if (r->type != REDIS_REPLY_INTEGER)
		fail_msg("redis: %s: not an integer reply (%d: %s)", fmt,
		         r->type, r->str ? r->str : "");
	long long v = r->integer;
	freeReplyObject(r);
	return v;
}
