/*
 * buf.h — a growable byte buffer for building answers (JSON, Prometheus
 * text).  Private to the server.  Out of memory is sticky: appends after a
 * failed allocation do nothing and cl_sbuf_steal() returns NULL, so callers
 * check once at the end.
 */
#ifndef CL_SERVER_BUF_H
#define CL_SERVER_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cl_sbuf {
	char *p;
	size_t len, cap;
	bool oom;
} cl_sbuf;

void cl_sbuf_init(cl_sbuf *b);
void cl_sbuf_free(cl_sbuf *b);
bool cl_sbuf_reserve(cl_sbuf *b, size_t more);
void cl_sbuf_add(cl_sbuf *b, const void *s, size_t n);
void cl_sbuf_adds(cl_sbuf *b, const char *s);
void cl_sbuf_addc(cl_sbuf *b, char c);
void cl_sbuf_addf(cl_sbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cl_sbuf_add_i64(cl_sbuf *b, int64_t v);
void cl_sbuf_add_u64(cl_sbuf *b, uint64_t v);
/* A JSON string literal, quotes included; invalid UTF-8 bytes become
 * U+FFFD so the output is always valid JSON. */
void cl_sbuf_add_jstr(cl_sbuf *b, const char *s, size_t n);
/* True when s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool cl_utf8_valid(const char *s, size_t n);
/* Hands the NUL-terminated contents to the caller (free()), or NULL after
 * an allocation failure; the buffer is left empty. */
char *cl_sbuf_steal(cl_sbuf *b, size_t *len);

#endif
