/*
 * buf.c — the public text toolkit: cleave_buf, JSON string escaping and
 * UTF-8 validation (cleave.h).  One implementation of each, for the
 * engine, the server, the CLI and the domains.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void cleave_buf_init(cleave_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void cleave_buf_free(cleave_buf *b)
{
	free(b->p);
	cleave_buf_init(b);
}

void cleave_buf_reset(cleave_buf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->p)
		b->p[0] = 0;
}

bool cleave_buf_reserve(cleave_buf *b, size_t more)
{
	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 128;
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

void cleave_buf_add(cleave_buf *b, const void *p, size_t n)
{
	if (!cleave_buf_reserve(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void cleave_buf_adds(cleave_buf *b, const char *s)
{
	cleave_buf_add(b, s, strlen(s));
}

void cleave_buf_addc(cleave_buf *b, char c)
{
	if (!cleave_buf_reserve(b, 1))
		return;
	b->p[b->len++] = c;
	b->p[b->len] = 0;
}

void cleave_buf_addf(cleave_buf *b, const char *fmt, ...)
{
	va_list ap;
	char tmp[256];
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		cleave_buf_add(b, tmp, (size_t)n);
		return;
	}
	if (!cleave_buf_reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void cleave_buf_add_u64(cleave_buf *b, uint64_t u)
{
	char tmp[24], *e = tmp + sizeof(tmp), *p = e;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	cleave_buf_add(b, p, (size_t)(e - p));
}

void cleave_buf_add_i64(cleave_buf *b, int64_t v)
{
	if (v < 0) {
		cleave_buf_addc(b, '-');
		cleave_buf_add_u64(b, (uint64_t)0 - (uint64_t)v);
		return;
	}
	cleave_buf_add_u64(b, (uint64_t)v);
}

void cleave_buf_add_jstr(cleave_buf *b, const char *s, size_t n)
{
	if (!cleave_buf_reserve(b, n * 6 + 2))
		return;
	char *o = cleave_json_escape(b->p + b->len, s, n);
	b->len = (size_t)(o - b->p);
	b->p[b->len] = 0;
}

void cleave_buf_add_error(cleave_buf *b, const char *code, const char *msg)
{
	cleave_buf_adds(b, "{\"error\":{\"code\":");
	cleave_buf_add_jstr(b, code, strlen(code));
	cleave_buf_adds(b, ",\"message\":");
	cleave_buf_add_jstr(b, msg, strlen(msg));
	cleave_buf_adds(b, "}}");
}

char *cleave_buf_steal(cleave_buf *b, size_t *len)
{
	if (!b->p && !b->oom)
		cleave_buf_reserve(b, 0);
	if (b->oom) {
		cleave_buf_free(b);
		return NULL;
	}
	char *p = b->p;
	p[b->len] = 0;
	if (len)
		*len = b->len;
	cleave_buf_init(b);
	return p;
}

/* ---- UTF-8 and JSON strings ---------------------------------------------- */

/* Length of the valid UTF-8 sequence that starts s (n bytes left, n > 0),
 * or 0 when it is not one. */
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

bool cleave_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		if (u[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(u + i, n - i);
		if (!k)
			return false;
		i += k;
	}
	return true;
}

char *cleave_json_escape(char *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	*o++ = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = u[i];
		if (CL_LIKELY(c >= 0x20 && c < 0x80 && c != '"' && c != '\\')) {
			*o++ = (char)c;
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t k = utf8_seq(u + i, n - i);
			if (k) {
				memcpy(o, s + i, k);
				o += k;
				i += k;
			} else {
				memcpy(o, "\xef\xbf\xbd", 3); /* U+FFFD */
				o += 3;
				i++;
			}
			continue;
		}
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\r': *o++ = 'r'; break;
		case '\t': *o++ = 't'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
		i++;
	}
	*o++ = '"';
	return o;
}

/* ---- the JSON writer ------------------------------------------------------ */

/* A comma before every value but the first of its container, unless the
 * value follows its key. */
static void jw_sep(cleave_jw *w)
{
	if (w->more)
		cleave_buf_addc(&w->b, ',');
	w->more = true;
}

void cleave_jw_open(cleave_jw *w, char brace)
{
	jw_sep(w);
	cleave_buf_addc(&w->b, brace);
	w->more = false;
}

void cleave_jw_close(cleave_jw *w, char brace)
{
	cleave_buf_addc(&w->b, brace);
	w->more = true;
}

void cleave_jw_key(cleave_jw *w, const char *k)
{
	jw_sep(w);
	cleave_buf_add_jstr(&w->b, k, strlen(k));
	cleave_buf_addc(&w->b, ':');
	w->more = false; /* the value that follows takes no comma */
}

void cleave_jw_strn(cleave_jw *w, const char *s, size_t n)
{
	jw_sep(w);
	cleave_buf_add_jstr(&w->b, s, n);
}

void cleave_jw_str(cleave_jw *w, const char *s)
{
	if (!s)
		cleave_jw_null(w);
	else
		cleave_jw_strn(w, s, strlen(s));
}

void cleave_jw_int(cleave_jw *w, int64_t v)
{
	jw_sep(w);
	cleave_buf_add_i64(&w->b, v);
}

void cleave_jw_bool(cleave_jw *w, bool v)
{
	jw_sep(w);
	cleave_buf_adds(&w->b, v ? "true" : "false");
}

void cleave_jw_null(cleave_jw *w)
{
	jw_sep(w);
	cleave_buf_add(&w->b, "null", 4);
}

void cleave_jw_raw(cleave_jw *w, const char *json, size_t n)
{
	jw_sep(w);
	cleave_buf_add(&w->b, json, n);
}

char *cleave_jw_done(cleave_jw *w, size_t *len)
{
	w->more = false;
	return cleave_buf_steal(&w->b, len);
}

void cleave_jw_free(cleave_jw *w)
{
	cleave_buf_free(&w->b);
	w->more = false;
}
