/*
 * pgtest.c — a private PostgreSQL cluster for a test program (pgtest.h).
 */
#include "pgtest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* by its Debian path: the tests' include path has no libpq directory */
#include <postgresql/libpq-fe.h>

static struct {
	bool running;
	char bin[512];
	char dir[256];
	int port;
	pid_t watchdog;
	int wfd;
	int ndb;
} g = {.wfd = -1};

static bool as_root(void)
{
	return geteuid() == 0;
}

static bool find_bin(void)
{
	const char *env = getenv("CLEAVE_PG_BIN");
	char path[600];
	if (env && *env) {
		snprintf(g.bin, sizeof(g.bin), "%s", env);
		snprintf(path, sizeof(path), "%s/initdb", g.bin);
		return access(path, X_OK) == 0;
	}
	for (int v = 20; v >= 12; v--) {
		snprintf(g.bin, sizeof(g.bin), "/usr/lib/postgresql/%d/bin", v);
		snprintf(path, sizeof(path), "%s/initdb", g.bin);
		if (access(path, X_OK) == 0) {
			snprintf(path, sizeof(path), "%s/postgres", g.bin);
			if (access(path, X_OK) == 0)
				return true;
		}
	}
	return false;
}

/* Runs argv (as the postgres user when root), stdout and stderr to
 * `log`; returns the exit status (or -1). */
static int run_prog(char *const *argv, const char *log)
{
	char *full[32];
	int n = 0;
	if (as_root()) {
		full[n++] = "runuser";
		full[n++] = "-u";
		full[n++] = "postgres";
		full[n++] = "--";
	}
	for (int i = 0; argv[i] && n < 31; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		execvp(full[0], full);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void print_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f))
		fprintf(stderr, "    %s", line);
	fclose(f);
}

static void die(const char *what)
{
	char path[300];
	fprintf(stderr, "pgtest: %s\n", what);
	snprintf(path, sizeof(path), "%s/setup.log", g.dir);
	print_file(path);
	snprintf(path, sizeof(path), "%s/server.log", g.dir);
	print_file(path);
	pgt_stop();
	exit(1);
}

static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	socklen_t len = sizeof(a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

/* The watchdog: waits until the test program's end closes the pipe, then
 * stops the server and removes the directory.  Its own session, so a
 * signal to the test's process group does not take it along. */
static void start_watchdog(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		die("pipe failed");
	char pgctl[600], data[300], cmd[1600];
	snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", g.bin);
	snprintf(data, sizeof(data), "%s/data", g.dir);
	/* a shell at once: nothing of the test program (its name, its
	 * memory) stays in the watchdog */
	snprintf(cmd, sizeof(cmd),
	         "trap '' INT TERM HUP; while read x; do :; done;"
	         " %s'%s' stop -D '%s' -m immediate -w -t 30 >/dev/null 2>&1;"
	         " rm -rf '%s'",
	         as_root() ? "runuser -u postgres -- " : "", pgctl, data,
	         g.dir);
	pid_t pid = fork();
	if (pid < 0)
		die("fork failed");
	if (pid == 0) {
		setsid();
		dup2(p[0], 0);
		int nul = open("/dev/null", O_WRONLY);
		if (nul >= 0) {
			dup2(nul, 1);
			dup2(nul, 2);
		}
		char *argv[] = {"/bin/sh", "-c", cmd, NULL};
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[0]);
	g.watchdog = pid;
	g.wfd = p[1];
}

int pgt_start(void)
{
	if (g.running)
		return 0;
	if (!find_bin())
		return 1;
	snprintf(g.dir, sizeof(g.dir), "/tmp/cleave-pg-XXXXXX");
	if (!mkdtemp(g.dir))
		die("mkdtemp failed");
	if (as_root()) {
		struct passwd *pw = getpwnam("postgres");
		if (!pw)
			die("running as root, and there is no 'postgres' user "
			    "to run the server as (initdb refuses root)");
		if (chown(g.dir, pw->pw_uid, pw->pw_gid))
			die("chown of the cluster directory failed");
	}
	start_watchdog();
	char data[300], log[300], setup_log[300], initdb[600], pgctl[600];
	snprintf(data, sizeof(data), "%s/data", g.dir);
	snprintf(log, sizeof(log), "%s/server.log", g.dir);
	snprintf(setup_log, sizeof(setup_log), "%s/setup.log", g.dir);
	snprintf(initdb, sizeof(initdb), "%s/initdb", g.bin);
	snprintf(pgctl, sizeof(pgctl), "%s/pg_ctl", g.bin);
	char *init_argv[] = {initdb,  "-D",         data,       "-A",
	                     "trust", "-U",         "postgres", "-E",
	                     "UTF8",  "--locale=C", "-N",       NULL};
	if (run_prog(init_argv, setup_log))
		die("initdb failed");
	for (int attempt = 0; attempt < 5; attempt++) {
		g.port = free_port();
		if (g.port < 0)
			die("no free port");
		char opts[600];
		snprintf(opts, sizeof(opts),
		         "-p %d -k %s -c listen_addresses=127.0.0.1 "
		         "-c fsync=on -c max_connections=200 "
		         "-c shared_buffers=32MB",
		         g.port, g.dir);
		char *start_argv[] = {pgctl, "start", "-D", data, "-l", log,
		                      "-w",  "-t",    "60", "-o", opts, NULL};
		if (run_prog(start_argv, setup_log) == 0) {
			g.running = true;
			return 0;
		}
	}
	die("pg_ctl start failed");
	return -1;
}

void pgt_stop(void)
{
	if (g.wfd >= 0) {
		close(g.wfd);
		g.wfd = -1;
	}
	if (g.watchdog > 0) {
		int st;
		while (waitpid(g.watchdog, &st, 0) < 0 && errno == EINTR)
			;
		g.watchdog = 0;
	}
	g.running = false;
}

int pgt_port(void)
{
	return g.port;
}

char *pgt_uri(const char *db)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "postgres://postgres@127.0.0.1:%d/%s",
	         g.port, db);
	return strdup(buf);
}

static PGconn *connect_uri(const char *uri)
{
	PGconn *c = PQconnectdb(uri);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "pgtest: cannot connect to %s: %s\n", uri,
		        PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

int pgt_exec(const char *uri, const char *sql)
{
	PGconn *c = connect_uri(uri);
	if (!c)
		return -1;
	PGresult *r = PQexec(c, sql);
	ExecStatusType s = PQresultStatus(r);
	int rc = 0;
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
		rc = -1;
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

int64_t pgt_int(const char *uri, const char *sql)
{
	PGconn *c = connect_uri(uri);
	if (!c) {
		fprintf(stderr, "pgtest: no connection for %s\n", sql);
		abort();
	}
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
		abort();
	}
	int64_t v = -1;
	if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c);
	return v;
}

char *pgt_newdb(const char *tag)
{
	char sql[200], name[100];
	snprintf(name, sizeof(name), "%s_%d", tag, ++g.ndb);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	char *admin = pgt_uri("postgres");
	if (pgt_exec(admin, sql))
		die("CREATE DATABASE failed");
	free(admin);
	return pgt_uri(name);
}
