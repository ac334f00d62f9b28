/*
 * util.h — small shared pieces: error recording, growable buffers, time,
 * hashing, names.  Private to libcleave and its programs.
 */
#ifndef CL_UTIL_H
#define CL_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cleave.h"

#define CL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CL_LIKELY(x) __builtin_expect(!!(x), 1)
#define CL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Records the calling thread's detailed error message (cleave_errmsg) and
 * returns rc, so a failure reads `return cl_err(CLEAVE_EIO, "...", ...)`. */
int cl_err(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cl_verr(int rc, const char *fmt, va_list ap);
/* Clears the calling thread's message. */
void cl_err_clear(void);

/* Time. */
int64_t cl_now_us(void);      /* CLOCK_REALTIME, microseconds */

/* Names the calling thread for `top -H`, `ps -L`, perf and gdb (Linux
 * keeps 15 bytes; longer names are cut). */
void cl_thread_name(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
int64_t cl_mono_us(void);     /* CLOCK_MONOTONIC, microseconds */
void cl_sleep_ms(int ms);

/* Hashing (FNV-1a 64). */
uint64_t cl_hash(const void *p, size_t n);
static inline uint64_t cl_hash_str(const char *s)
{
	return cl_hash(s, strlen(s));
}

/* Random hex id of 2*nbytes characters into out (size >= 2*nbytes+1). */
void cl_random_hex(char *out, size_t nbytes);

/* Duplicates (NULL-safe). */
char *cl_strdup(const char *s);
char *cl_strndup(const char *s, size_t n);

/* Validation of names. */
bool cl_name_ok(const char *s, size_t max, const char *charset);

/* Makes directory path and its parents, mode 0700. */
int cl_mkdirs(const char *path);
/* Removes a directory tree (files one level deep and the directory). */
int cl_rmtree(const char *path);
/* fsync a directory (after renames/creates in it). */
int cl_fsync_dir(const char *path);

#endif
