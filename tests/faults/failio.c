/*
 * failio.c — an LD_PRELOAD shim that makes file I/O fail on demand, for
 * the fault tests (tests/e2e/test_faults.py).  Built as failio.so.
 *
 *   LD_PRELOAD=build/tests/faults/failio.so FAILIO_CTL=/tmp/ctl \
 *   FAILIO_LOG=/tmp/failio.log cleave serve ...
 *
 * FAILIO_CTL names a control file; while it is absent nothing fails.  Each
 * line of it is a rule:
 *
 *   OPS PATTERN COUNT [ERRNO]
 *
 *   OPS      comma list of fsync, fdatasync, pwrite (also pwrite64 and
 *            pwritev), write (also writev), "sync" (fsync and fdatasync)
 *            or "any"
 *   PATTERN  a substring of the file's path (as /proc/self/fd shows it);
 *            one ending in '$' must end the path ("write.db$")
 *   COUNT    fail the next COUNT matching calls, then let them pass; "*"
 *            fails every matching call while the rule stands.  COUNT+SKIP
 *            (e.g. 1+2) lets SKIP matching calls pass first.
 *   ERRNO    EIO (the default), ENOSPC or EDQUOT
 *
 * The file is read again when it changes (inode, size or mtime; looked at
 * most once a millisecond, on an intercepted call), and the counts start
 * over then.  A failed write writes nothing; a failed fsync syncs nothing.
 * What a kernel does to its page cache after a real EIO is not modelled:
 * data written before stays readable, as on most file systems.
 *
 * FAILIO_LOG names a file that gets one line per change of rules
 * ("rules GEN N") and per failure injected ("fail OP PATH ERRNO").
 *
 * FAILIO_LMDB_MAPSIZE=BYTES makes mdb_env_set_mapsize() use BYTES instead
 * of what the caller asked (LMDB "map full" without a server flag).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { OP_FSYNC = 1, OP_FDATASYNC = 2, OP_PWRITE = 4, OP_WRITE = 8 };

#define MAX_RULES 16

typedef struct rule {
	unsigned ops;
	char pattern[256];
	long left; /* < 0: every call */
	long skip; /* matching calls to let through first */
	int err;
} rule;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static rule rules[MAX_RULES];
static int nrules;
static int generation;
static struct stat ctl_st;
static bool ctl_present;
static int64_t last_look_us;

/* ---- the real functions -------------------------------------------------- */

typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);

static void *real(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);
	if (!p)
		abort(); /* nothing below us to call: a broken link order */
	return p;
}

#define REAL(type, name)                                                       \
	static type real_##name;                                               \
	if (!real_##name)                                                      \
	real_##name = (type)real(#name)

/* ---- rules --------------------------------------------------------------- */

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void log_line(const char *line)
{
	const char *path = getenv("FAILIO_LOG");
	if (!path)
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	REAL(write_fn, write);
	(void)!real_write(fd, line, strlen(line));
	close(fd);
}

static unsigned parse_ops(char *s)
{
	unsigned ops = 0;
	for (char *t = strtok(s, ","); t; t = strtok(NULL, ",")) {
		if (!strcmp(t, "fsync"))
			ops |= OP_FSYNC;
		else if (!strcmp(t, "fdatasync"))
			ops |= OP_FDATASYNC;
		else if (!strcmp(t, "sync"))
			ops |= OP_FSYNC | OP_FDATASYNC;
		else if (!strcmp(t, "pwrite"))
			ops |= OP_PWRITE;
		else if (!strcmp(t, "write"))
			ops |= OP_WRITE;
		else if (!strcmp(t, "any"))
			ops |= OP_FSYNC | OP_FDATASYNC | OP_PWRITE | OP_WRITE;
	}
	return ops;
}

/* Reads the control file (mu held). */
static void load_rules(const char *path)
{
	nrules = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[512];
	while (nrules < MAX_RULES && fgets(line, sizeof(line), f)) {
		char ops[128], pat[256], count[32], err[32] = "EIO";
		int n =
		    sscanf(line, "%127s %255s %31s %31s", ops, pat, count, err);
		if (n < 3 || ops[0] == '#')
			continue;
		rule *r = &rules[nrules];
		r->ops = parse_ops(ops);
		snprintf(r->pattern, sizeof(r->pattern), "%s", pat);
		char *plus = strchr(count, '+');
		r->skip = plus ? atol(plus + 1) : 0;
		if (plus)
			*plus = 0;
		r->left = !strcmp(count, "*") ? -1 : atol(count);
		r->err = !strcmp(err, "ENOSPC")   ? ENOSPC
		         : !strcmp(err, "EDQUOT") ? EDQUOT
		                                  : EIO;
		if (r->ops)
			nrules++;
	}
	fclose(f);
}

/* Looks at the control file when a millisecond has passed (mu held). */
static void refresh(void)
{
	const char *path = getenv("FAILIO_CTL");
	if (!path)
		return;
	int64_t now = now_us();
	if (now - last_look_us < 1000)
		return;
	last_look_us = now;
	struct stat st;
	bool present = stat(path, &st) == 0;
	if (present == ctl_present &&
	    (!present ||
	     (st.st_ino == ctl_st.st_ino && st.st_size == ctl_st.st_size &&
	      st.st_mtim.tv_sec == ctl_st.st_mtim.tv_sec &&
	      st.st_mtim.tv_nsec == ctl_st.st_mtim.tv_nsec)))
		return;
	ctl_present = present;
	ctl_st = st;
	if (present)
		load_rules(path);
	else
		nrules = 0;
	generation++;
	char msg[64];
	snprintf(msg, sizeof(msg), "rules %d %d\n", generation, nrules);
	log_line(msg);
}

static const char *op_name(unsigned op)
{
	switch (op) {
	case OP_FSYNC:
		return "fsync";
	case OP_FDATASYNC:
		return "fdatasync";
	case OP_PWRITE:
		return "pwrite";
	default:
		return "write";
	}
}

static bool path_matches(const char *path, const char *pat)
{
	size_t pl = strlen(pat);
	if (pl && pat[pl - 1] == '$') {
		size_t n = strlen(path);
		return n >= pl - 1 && !memcmp(path + n - (pl - 1), pat, pl - 1);
	}
	return strstr(path, pat) != NULL;
}

/* 0 to let the call through, or the errno to fail it with. */
static int should_fail(unsigned op, int fd)
{
	if (!getenv("FAILIO_CTL"))
		return 0;
	int err = 0;
	pthread_mutex_lock(&mu);
	refresh();
	bool any = false;
	for (int i = 0; i < nrules; i++)
		if ((rules[i].ops & op) && rules[i].left != 0)
			any = true;
	if (!any) {
		pthread_mutex_unlock(&mu);
		return 0;
	}
	char link[64], path[1024];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = 0;
	for (int i = 0; i < nrules && n > 0; i++) {
		rule *r = &rules[i];
		if (!(r->ops & op) || r->left == 0 ||
		    !path_matches(path, r->pattern))
			continue;
		if (r->skip > 0) {
			r->skip--;
			break;
		}
		if (r->left > 0)
			r->left--;
		err = r->err;
		break;
	}
	pthread_mutex_unlock(&mu);
	if (err) {
		char msg[1200];
		snprintf(msg, sizeof(msg), "fail %s %s %s\n", op_name(op), path,
		         err == EIO      ? "EIO"
		         : err == ENOSPC ? "ENOSPC"
		                         : "EDQUOT");
		log_line(msg);
	}
	return err;
}

/* ---- the interposed calls ---------------------------------------------- */

int fsync(int fd)
{
	REAL(sync_fn, fsync);
	int err = should_fail(OP_FSYNC, fd);
	if (err) {
		errno = err;
		return -1;
	}
	return real_fsync(fd);
}

int fdatasync(int fd)
{
	REAL(sync_fn, fdatasync);
	int err = should_fail(OP_FDATASYNC, fd);
	if (err) {
		errno = err;
		return -1;
	}
	return real_fdatasync(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite_fn, pwrite);
	int err = should_fail(OP_PWRITE, fd);
	if (err) {
		errno = err;
		return -1;
	}
	return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite_fn, pwrite64);
	int err = should_fail(OP_PWRITE, fd);
	if (err) {
		errno = err;
		return -1;
	}
	return real_pwrite64(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	REAL(pwritev_fn, pwritev);
	int err = should_fail(OP_PWRITE, fd);
	if (err) {
		errno = err;
		return -1;
	}
	return real_pwritev(fd, iov, cnt, off);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	REAL(write_fn, write);
	int err = fd > 2 ? should_fail(OP_WRITE, fd) : 0;
	if (err) {
		errno = err;
		return -1;
	}
	return real_write(fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	REAL(writev_fn, writev);
	int err = fd > 2 ? should_fail(OP_WRITE, fd) : 0;
	if (err) {
		errno = err;
		return -1;
	}
	return real_writev(fd, iov, cnt);
}

/* ---- LMDB map size ---------------------------------------------------------
 */

typedef struct MDB_env MDB_env;
int mdb_env_set_mapsize(MDB_env *env, size_t size);
typedef int (*mapsize_fn)(MDB_env *, size_t);

int mdb_env_set_mapsize(MDB_env *env, size_t size)
{
	REAL(mapsize_fn, mdb_env_set_mapsize);
	const char *v = getenv("FAILIO_LMDB_MAPSIZE");
	if (v && *v)
		size = (size_t)strtoull(v, NULL, 10);
	return real_mdb_env_set_mapsize(env, size);
}
