/*
 * util.c — error messages, buffers, time, hashing, names, files.
 */
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- errors ------------------------------------------------------------ */

static _Thread_local char errmsg_buf[512];

static const struct {
	int rc;
	const char *name, *text;
} errtab[] = {
#define CLEAVE_XX(name, val, code, text) {val, code, text},
	CLEAVE_ERRNO_MAP(CLEAVE_XX)
#undef CLEAVE_XX
};

const char *cleave_strerror(int rc)
{
	if (rc == 0)
		return "success";
	for (size_t i = 0; i < CL_ARRAY_LEN(errtab); i++)
		if (errtab[i].rc == rc)
			return errtab[i].text;
	return "unknown error";
}

const char *cleave_errname(int rc)
{
	if (rc == 0)
		return "ok";
	for (size_t i = 0; i < CL_ARRAY_LEN(errtab); i++)
		if (errtab[i].rc == rc)
			return errtab[i].name;
	return "internal";
}

const char *cleave_errmsg(void)
{
	return errmsg_buf;
}

int cl_verr(int rc, const char *fmt, va_list ap)
{
	vsnprintf(errmsg_buf, sizeof(errmsg_buf), fmt, ap);
	return rc;
}

int cl_err(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cl_verr(rc, fmt, ap);
	va_end(ap);
	return rc;
}

int cleave_error(int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cl_verr(rc, fmt, ap);
	va_end(ap);
	return rc;
}

void cl_err_clear(void)
{
	errmsg_buf[0] = 0;
}

cleave_value cleave_text(const char *s)
{
	if (!s)
		return cleave_null();
	return cleave_textn(s, strlen(s));
}

/* ---- time -------------------------------------------------------------- */

int64_t cl_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cl_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cl_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* ---- hashing, ids, strings --------------------------------------------- */

uint64_t cl_hash(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Ids need to be unique, not secret: a per-thread xoshiro256** generator
 * seeded once from getrandom() costs nanoseconds, where a getrandom()
 * system call per id cost microseconds on the command path. */
static _Thread_local uint64_t rng[4];
static _Thread_local bool rng_ready;

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* A forked child must not repeat its parent's ids. */
static void rng_forget(void)
{
	rng_ready = false;
}

static void rng_atfork(void)
{
	pthread_atfork(NULL, NULL, rng_forget);
}

static uint64_t rng_next(void)
{
	if (CL_UNLIKELY(!rng_ready)) {
		static pthread_once_t once = PTHREAD_ONCE_INIT;
		pthread_once(&once, rng_atfork);
		if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
			uint64_t v = (uint64_t)cl_mono_us() ^
				     ((uint64_t)getpid() << 32) ^
				     (uint64_t)(uintptr_t)&rng;
			for (int i = 0; i < 4; i++) {
				v += 0x9e3779b97f4a7c15ULL;
				uint64_t z = v;
				z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
				z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
				rng[i] = z ^ (z >> 31);
			}
		}
		rng_ready = true;
	}
	uint64_t r = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rotl(rng[3], 45);
	return r;
}

void cl_random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t v = 0;
	for (size_t i = 0; i < nbytes; i++) {
		if (i % 8 == 0)
			v = rng_next();
		unsigned char b = (unsigned char)(v >> ((i % 8) * 8));
		out[2 * i] = hex[b >> 4];
		out[2 * i + 1] = hex[b & 15];
	}
	out[2 * nbytes] = 0;
}

char *cl_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

char *cl_strndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

/* Character classes of cl_name_ok, as bit masks per byte. */
enum { CC_ID = 1, CC_UPPER = 2, CC_LOWER = 4, CC_WORD = 8 };

static unsigned char cc_table[256];

static void cc_init(void)
{
	for (int c = 0; c < 256; c++) {
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9');
		unsigned char m = 0;
		if (alnum || c == '_' || c == '-' || c == '.' || c == ':')
			m |= CC_ID;
		if (c >= 'A' && c <= 'Z')
			m |= CC_UPPER;
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')
			m |= CC_LOWER;
		if (alnum || c == '_')
			m |= CC_WORD;
		cc_table[c] = m;
	}
}

bool cl_name_ok(const char *s, size_t max, const char *charset)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, cc_init);
	unsigned char want;
	if (!charset || !strcmp(charset, "id"))
		want = CC_ID;
	else if (!strcmp(charset, "upper"))
		want = CC_UPPER;
	else if (!strcmp(charset, "lower"))
		want = CC_LOWER;
	else if (!strcmp(charset, "word"))
		want = CC_WORD;
	else
		return false;
	size_t n = 0;
	for (; s && s[n]; n++)
		if (n >= max || !(cc_table[(unsigned char)s[n]] & want))
			return false;
	return n > 0;
}

/* ---- files ------------------------------------------------------------- */

int cl_mkdirs(const char *path)
{
	char tmp[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(tmp))
		return cl_err(CLEAVE_EINVAL, "path too long: %s", path);
	memcpy(tmp, path, n + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0700) && errno != EEXIST)
			return cl_err(CLEAVE_EIO, "mkdir %s: %s", tmp,
				      strerror(errno));
		*p = '/';
	}
	if (mkdir(tmp, 0700) && errno != EEXIST)
		return cl_err(CLEAVE_EIO, "mkdir %s: %s", tmp, strerror(errno));
	return 0;
}

int cl_rmtree(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0
				       : cl_err(CLEAVE_EIO, "opendir %s: %s",
						path, strerror(errno));
	struct dirent *de;
	char p[4096];
	int rc = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		struct stat st;
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			rc = cl_rmtree(p);
		else if (unlink(p) && errno != ENOENT)
			rc = cl_err(CLEAVE_EIO, "unlink %s: %s", p,
				    strerror(errno));
	}
	closedir(d);
	if (rmdir(path) && errno != ENOENT)
		rc = cl_err(CLEAVE_EIO, "rmdir %s: %s", path, strerror(errno));
	return rc;
}

int cl_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return cl_err(CLEAVE_EIO, "open %s: %s", path, strerror(errno));
	int rc = fsync(fd) ? cl_err(CLEAVE_EIO, "fsync %s: %s", path,
				    strerror(errno))
			   : 0;
	close(fd);
	return rc;
}

void cl_thread_name(const char *fmt, ...)
{
	char name[16];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	pthread_setname_np(pthread_self(), name);
}

void cleave_uri_redact(const char *uri, char *out, size_t cap)
{
	snprintf(out, cap, "%s", uri ? uri : "");
	char *p = strstr(out, "://");
	if (!p)
		return;
	p += 3;
	char *at = strchr(p, '@'), *slash = strchr(p, '/');
	if (!at || (slash && slash < at))
		return;
	char *colon = memchr(p, ':', (size_t)(at - p));
	if (!colon)
		return;
	char rest[1024];
	snprintf(rest, sizeof(rest), "%s", at);
	snprintf(colon + 1, cap - (size_t)(colon + 1 - out), "***%s", rest);
}
