/*
 * json_arena.c — cJSON trees built in an arena, for events read back from
 * the log.
 *
 * A runner catching up (a rebuild, a restart) parses every event it
 * applies.  cJSON allocates each node and string with malloc and frees
 * them one by one with cJSON_Delete: in a rebuild that was most of the
 * reading thread's time.  Here the nodes and strings come from the batch's
 * arena and are dropped with it — never pass these trees to cJSON_Delete
 * or to anything that frees or adds nodes.  The text is Cleave's own (the
 * log), but the parser still checks the grammar and returns NULL on
 * anything it does not understand; the caller then falls back to cJSON.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

#define MAX_DEPTH 64

typedef struct ap {
	const char *p, *end;
	cl_arena *a;
	int depth;
} ap;

static void ws(ap *x)
{
	while (x->p < x->end && (*x->p == ' ' || *x->p == '\n' ||
				 *x->p == '\t' || *x->p == '\r'))
		x->p++;
}

static cJSON *node(ap *x, int type)
{
	cJSON *n = cl_arena_alloc(x->a, sizeof(*n));
	if (n) {
		memset(n, 0, sizeof(*n));
		n->type = type;
	}
	return n;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Parses a string at x->p (on its opening quote) into the arena. */
static char *str(ap *x)
{
	const char *b = ++x->p, *q = b;
	bool esc = false;
	while (q < x->end && *q != '"') {
		if (*q == '\\') {
			esc = true;
			if (++q >= x->end)
				return NULL;
		}
		q++;
	}
	if (q >= x->end)
		return NULL;
	size_t n = (size_t)(q - b);
	char *out = cl_arena_alloc(x->a, n + 1), *o = out;
	if (!out)
		return NULL;
	if (!esc) {
		memcpy(out, b, n);
		out[n] = 0;
		x->p = q + 1;
		return out;
	}
	for (const char *p = b; p < q; p++) {
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		switch (*++p) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (q - p < 5 || hex4(p + 1, &cp))
				return NULL;
			p += 4;
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return NULL; /* a low surrogate alone */
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				if (q - p < 7 || p[1] != '\\' || p[2] != 'u' ||
				    hex4(p + 3, &lo) || lo < 0xDC00 ||
				    lo > 0xDFFF)
					return NULL;
				p += 6;
				cp = 0x10000 + ((cp - 0xD800) << 10) +
				     (lo - 0xDC00);
			}
			/* a \uXXXX never takes more bytes than its text */
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xE0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xF0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
			break;
		}
		default:
			return NULL;
		}
	}
	*o = 0;
	x->p = q + 1;
	return out;
}

static cJSON *value(ap *x);

static cJSON *number(ap *x)
{
	const char *b = x->p;
	bool neg = *x->p == '-', frac = false;
	if (neg)
		x->p++;
	int64_t v = 0;
	int digits = 0;
	while (x->p < x->end && *x->p >= '0' && *x->p <= '9') {
		if (digits < 18)
			v = v * 10 + (*x->p - '0');
		digits++;
		x->p++;
	}
	if (!digits)
		return NULL;
	while (x->p < x->end && (*x->p == '.' || *x->p == 'e' ||
				 *x->p == 'E' || *x->p == '+' ||
				 *x->p == '-' || (*x->p >= '0' && *x->p <= '9'))) {
		frac = true;
		x->p++;
	}
	cJSON *n = node(x, cJSON_Number);
	if (!n)
		return NULL;
	if (!frac && digits <= 15) {
		n->valuedouble = (double)(neg ? -v : v);
	} else {
		char tmp[64];
		size_t len = (size_t)(x->p - b);
		if (len >= sizeof(tmp))
			return NULL;
		memcpy(tmp, b, len);
		tmp[len] = 0;
		/* as cJSON does: the number is what strtod takes of the run
		 * ("5.9.1" is 5.9, and ".1" is left to fail the container) */
		char *end;
		n->valuedouble = strtod(tmp, &end);
		if (end == tmp)
			return NULL;
		x->p = b + (end - tmp);
	}
	double d = n->valuedouble;
	n->valueint = d >= INT32_MAX ? INT32_MAX
		      : d <= INT32_MIN ? INT32_MIN
				       : (int)d;
	return n;
}

static cJSON *container(ap *x, bool obj)
{
	if (++x->depth > MAX_DEPTH)
		return NULL;
	cJSON *n = node(x, obj ? cJSON_Object : cJSON_Array), *last = NULL;
	if (!n)
		return NULL;
	x->p++;
	ws(x);
	if (x->p < x->end && *x->p == (obj ? '}' : ']')) {
		x->p++;
		x->depth--;
		return n;
	}
	for (;;) {
		char *key = NULL;
		if (obj) {
			ws(x);
			if (x->p >= x->end || *x->p != '"' || !(key = str(x)))
				return NULL;
			ws(x);
			if (x->p >= x->end || *x->p != ':')
				return NULL;
			x->p++;
		}
		cJSON *c = value(x);
		if (!c)
			return NULL;
		c->string = key;
		if (last) {
			last->next = c;
			c->prev = last;
		} else {
			n->child = c;
		}
		last = c;
		n->child->prev = last; /* cJSON keeps the tail there */
		ws(x);
		if (x->p >= x->end)
			return NULL;
		if (*x->p == ',') {
			x->p++;
			continue;
		}
		if (*x->p != (obj ? '}' : ']'))
			return NULL;
		x->p++;
		x->depth--;
		return n;
	}
}

static cJSON *value(ap *x)
{
	ws(x);
	if (x->p >= x->end)
		return NULL;
	switch (*x->p) {
	case '{':
		return container(x, true);
	case '[':
		return container(x, false);
	case '"': {
		char *s = str(x);
		cJSON *n = s ? node(x, cJSON_String) : NULL;
		if (n)
			n->valuestring = s;
		return n;
	}
	case 't':
		if (x->end - x->p >= 4 && !memcmp(x->p, "true", 4)) {
			x->p += 4;
			return node(x, cJSON_True);
		}
		return NULL;
	case 'f':
		if (x->end - x->p >= 5 && !memcmp(x->p, "false", 5)) {
			x->p += 5;
			return node(x, cJSON_False);
		}
		return NULL;
	case 'n':
		if (x->end - x->p >= 4 && !memcmp(x->p, "null", 4)) {
			x->p += 4;
			return node(x, cJSON_NULL);
		}
		return NULL;
	default:
		if (*x->p == '-' || (*x->p >= '0' && *x->p <= '9'))
			return number(x);
		return NULL;
	}
}

cJSON *cl_json_parse_arena(const char *s, size_t n, cl_arena *a)
{
	ap x = {s, s + n, a, 0};
	cJSON *v = value(&x);
	ws(&x);
	return v && x.p == x.end ? v : NULL;
}
