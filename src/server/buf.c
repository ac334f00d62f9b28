/*
 * buf.c — growable buffer and JSON string escaping for the server.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/buf.h"

void cl_sbuf_init(cl_sbuf *b)
{
	memset(b, 0, sizeof(*b));
}

void cl_sbuf_free(cl_sbuf *b)
{
	free(b->p);
	cl_sbuf_init(b);
}

bool cl_sbuf_reserve(cl_sbuf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void cl_sbuf_add(cl_sbuf *b, const void *s, size_t n)
{
	if (!cl_sbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}

void cl_sbuf_adds(cl_sbuf *b, const char *s)
{
	cl_sbuf_add(b, s, strlen(s));
}

void cl_sbuf_addc(cl_sbuf *b, char c)
{
	cl_sbuf_add(b, &c, 1);
}

void cl_sbuf_addf(cl_sbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !cl_sbuf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void cl_sbuf_add_i64(cl_sbuf *b, int64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
	cl_sbuf_add(b, tmp, (size_t)n);
}

void cl_sbuf_add_u64(cl_sbuf *b, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	cl_sbuf_add(b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	unsigned cp = c & (0xff >> (len + 1));
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool cl_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq(u + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

void cl_sbuf_add_jstr(cl_sbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	if (!cl_sbuf_reserve(b, n + 2))
		return;
	cl_sbuf_addc(b, '"');
	size_t i = 0;
	while (i < n) {
		size_t run = i;
		while (run < n && u[run] >= 0x20 && u[run] < 0x80 &&
		       u[run] != '"' && u[run] != '\\')
			run++;
		if (run > i) {
			cl_sbuf_add(b, s + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = u[i];
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			cl_sbuf_add(b, e, 2);
			i++;
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u',         '0',
			             '0',  hex[c >> 4], hex[c & 15]};
			if (c == '\n')
				cl_sbuf_add(b, "\\n", 2);
			else if (c == '\t')
				cl_sbuf_add(b, "\\t", 2);
			else if (c == '\r')
				cl_sbuf_add(b, "\\r", 2);
			else
				cl_sbuf_add(b, e, 6);
			i++;
		} else {
			size_t k = utf8_seq(u + i, n - i);
			if (k) {
				cl_sbuf_add(b, s + i, k);
				i += k;
			} else {
				cl_sbuf_add(b, "\xef\xbf\xbd", 3);
				i++;
			}
		}
	}
	cl_sbuf_addc(b, '"');
}

char *cl_sbuf_steal(cl_sbuf *b, size_t *len)
{
	if (b->oom) {
		cl_sbuf_free(b);
		return NULL;
	}
	if (!b->p && !cl_sbuf_reserve(b, 0))
		return NULL;
	char *p = b->p;
	if (len)
		*len = b->len;
	p[b->len] = 0;
	cl_sbuf_init(b);
	return p;
}
