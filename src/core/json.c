/*
 * json.c — the strict scanner in front of cJSON, and field checks.
 */
#include "core/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

typedef struct scan {
	const unsigned char *p, *end, *start;
	int depth, max_depth;
	bool any_number;   /* answers: JSON's grammar only, no ±2^53 rule */
	const char *watch; /* a top-level key to look for (answers) */
	bool watched;      /* ... and it was there */
} scan;

static int fail(scan *s, const char *what)
{
	return cl_err(CLEAVE_EBADJSON, "malformed JSON at byte %zu: %s",
		      (size_t)(s->p - s->start), what);
}

static void skip_ws(scan *s)
{
	while (s->p < s->end &&
	       (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hex4(scan *s, unsigned *out)
{
	if (s->end - s->p < 4)
		return fail(s, "truncated \\u escape");
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = s->p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return fail(s, "bad \\u escape");
	}
	s->p += 4;
	*out = v;
	return 0;
}

static int scan_string(scan *s)
{
	s->p++; /* opening quote */
	while (s->p < s->end) {
		unsigned char c = *s->p;
		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return fail(s, c ? "control character in string"
					 : "NUL byte in string");
		if (c == '\\') {
			s->p++;
			if (s->p >= s->end)
				break;
			c = *s->p++;
			if (c == 'u') {
				unsigned u;
				int rc = hex4(s, &u);
				if (rc)
					return rc;
				if (u == 0)
					return fail(s, "\\u0000 in string");
				if (u >= 0xDC00 && u <= 0xDFFF)
					return fail(s, "lone low surrogate");
				if (u >= 0xD800 && u <= 0xDBFF) {
					if (s->end - s->p < 6 || s->p[0] != '\\' ||
					    s->p[1] != 'u')
						return fail(s, "lone high surrogate");
					s->p += 2;
					if ((rc = hex4(s, &u)))
						return rc;
					if (u < 0xDC00 || u > 0xDFFF)
						return fail(s, "bad surrogate pair");
				}
			} else if (!strchr("\"\\/bfnrt", c) || c == 0) {
				return fail(s, "bad escape");
			}
			continue;
		}
		if (c < 0x80) {
			s->p++;
			continue;
		}
		/* multi-byte UTF-8: find the sequence length and check it */
		size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
		if ((size_t)(s->end - s->p) < len ||
		    !cleave_utf8_valid((const char *)s->p, len))
			return fail(s, "invalid UTF-8");
		s->p += len;
	}
	return fail(s, "unterminated string");
}

/* A number the scanner accepted, refused for its value (the JSON is well
 * formed): an "invalid_argument", not a "malformed_json". */
static int number_refused(scan *s, const unsigned char *b, const char *what)
{
	return cl_err(CLEAVE_EINVAL, "number at byte %zu: %s",
		      (size_t)(b - s->start), what);
}

/*
 * The rule for numbers, by the literal's exact decimal value, whatever its
 * notation: a value beyond ±2^53 is refused (1e16, 9007199254740993.0,
 * 9007199254740992.5: none survives a trip through a double unchanged), and
 * so is a fraction that a double would turn into an integer
 * (1.0000000000000001, 1e-400), so that an integer field can trust that a
 * double holding an integer came from an integer.
 */
static int number_check(scan *s, const unsigned char *b, size_t n)
{
	static const char max[] = "9007199254740992"; /* 2^53 */
	char dig[48];
	size_t nd = 0, i = 0;
	long exp = 0, frac = 0;
	bool neg = b[0] == '-';
	if (neg)
		i++;
	for (; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		if (nd || b[i] != '0')
			dig[nd++] = (char)b[i];
	if (i < n && b[i] == '.')
		for (i++; i < n && b[i] >= '0' && b[i] <= '9'; i++) {
			frac++;
			if (nd || b[i] != '0')
				dig[nd++] = (char)b[i];
		}
	if (i < n && (b[i] == 'e' || b[i] == 'E')) {
		bool eneg = b[++i] == '-';
		if (b[i] == '+' || b[i] == '-')
			i++;
		for (; i < n; i++)
			if (exp < 100000) /* beyond any double: clamp */
				exp = exp * 10 + (b[i] - '0');
		if (eneg)
			exp = -exp;
	}
	/* value = dig × 10^x, dig without leading or trailing zeros */
	long x = exp - frac;
	while (nd && dig[nd - 1] == '0') {
		nd--;
		x++;
	}
	if (!nd)
		return 0; /* zero */
	long intlen = (long)nd + x; /* digits before the point */
	bool beyond;
	if (intlen != 16) {
		beyond = intlen > 16;
	} else {
		char ip[17];
		for (int k = 0; k < 16; k++)
			ip[k] = k < (long)nd ? dig[k] : '0';
		ip[16] = 0;
		int c = strcmp(ip, max);
		/* 2^53 itself is fine; anything past it, fraction or not,
		 * is not */
		beyond = c > 0 || (c == 0 && x < 0);
	}
	if (beyond)
		return number_refused(s, b, "beyond ±2^53, not exact in "
					    "a double");
	if (x < 0) {
		char tmp[48];
		memcpy(tmp, b, n);
		tmp[n] = 0;
		double v = strtod(tmp, NULL);
		if (v == floor(v))
			return number_refused(s, b, "a fraction that a double "
						    "cannot tell from an "
						    "integer");
	}
	return 0;
}

static int scan_number(scan *s)
{
	const unsigned char *b = s->p;
	if (*s->p == '-')
		s->p++;
	if (s->p >= s->end)
		return fail(s, "truncated number");
	if (*s->p == '0') {
		s->p++;
	} else if (*s->p >= '1' && *s->p <= '9') {
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	} else {
		return fail(s, "bad number");
	}
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (s->p >= s->end || *s->p < '0' || *s->p > '9')
			return fail(s, "bad fraction");
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (s->p >= s->end || *s->p < '0' || *s->p > '9')
			return fail(s, "bad exponent");
		while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
			s->p++;
	}
	size_t n = (size_t)(s->p - b);
	if (s->any_number)
		return 0;
	if (n > 40)
		return fail(s, "number literal too long");
	return number_check(s, b, n);
}

static int scan_lit(scan *s, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n))
		return fail(s, "unexpected token");
	s->p += n;
	return 0;
}

/* Whether the key text [k, e) (between its quotes, escapes undone) is
 * `want`, an ASCII name. */
static bool key_is(const unsigned char *k, const unsigned char *e,
		   const char *want)
{
	size_t i = 0;
	while (k < e) {
		unsigned c = *k++;
		if (c == '\\' && k < e) {
			c = *k++;
			if (c == 'u' && e - k >= 4) {
				unsigned v = 0;
				for (int j = 0; j < 4; j++) {
					unsigned d = k[j];
					v = v * 16 +
					    (d <= '9' ? d - '0' : (d | 32) - 'a' + 10);
				}
				k += 4;
				c = v;
			}
		}
		if (!want[i] || (unsigned char)want[i] != c)
			return false;
		i++;
	}
	return !want[i];
}

static int scan_value(scan *s)
{
	skip_ws(s);
	if (s->p >= s->end)
		return fail(s, "unexpected end");
	int rc;
	switch (*s->p) {
	case '{':
	case '[': {
		bool obj = *s->p == '{';
		char close = obj ? '}' : ']';
		if (++s->depth > s->max_depth)
			return fail(s, "nesting too deep");
		s->p++;
		skip_ws(s);
		if (s->p < s->end && *s->p == close) {
			s->p++;
			s->depth--;
			return 0;
		}
		for (;;) {
			if (obj) {
				skip_ws(s);
				if (s->p >= s->end || *s->p != '"')
					return fail(s, "expected key");
				const unsigned char *k = s->p;
				if ((rc = scan_string(s)))
					return rc;
				if (s->watch && s->depth == 1 &&
				    key_is(k + 1, s->p - 1, s->watch))
					s->watched = true;
				skip_ws(s);
				if (s->p >= s->end || *s->p != ':')
					return fail(s, "expected ':'");
				s->p++;
			}
			if ((rc = scan_value(s)))
				return rc;
			skip_ws(s);
			if (s->p >= s->end)
				return fail(s, "unexpected end");
			if (*s->p == ',') {
				s->p++;
				continue;
			}
			if (*s->p == close) {
				s->p++;
				s->depth--;
				return 0;
			}
			return fail(s, obj ? "expected ',' or '}'"
					   : "expected ',' or ']'");
		}
	}
	case '"':
		return scan_string(s);
	case 't':
		return scan_lit(s, "true");
	case 'f':
		return scan_lit(s, "false");
	case 'n':
		return scan_lit(s, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return scan_number(s);
		return fail(s, "unexpected character");
	}
}

int cl_json_check_answer(const char *text, size_t n, const char *key,
			 bool *has_key)
{
	scan s = {(const unsigned char *)text, (const unsigned char *)text + n,
		  (const unsigned char *)text, 0, 512, true, key, false};
	int rc = scan_value(&s);
	if (!rc) {
		skip_ws(&s);
		if (s.p != s.end)
			rc = fail(&s, "trailing characters");
	}
	if (has_key)
		*has_key = s.watched;
	return rc;
}

int cl_json_check(const char *text, size_t n, int max_depth)
{
	scan s = {(const unsigned char *)text, (const unsigned char *)text + n,
		  (const unsigned char *)text, 0, max_depth, false, NULL,
		  false};
	int rc = scan_value(&s);
	if (rc)
		return rc;
	skip_ws(&s);
	if (s.p != s.end)
		return fail(&s, "trailing characters");
	return 0;
}

/* Duplicate keys: pairwise for small objects, a sorted copy for large. */
static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int check_dups(const cJSON *v)
{
	for (const cJSON *c = v->child; c; c = c->next)
		if (c->child) {
			int rc = check_dups(c);
			if (rc)
				return rc;
		}
	if (!cJSON_IsObject(v))
		return 0;
	size_t n = 0;
	for (const cJSON *c = v->child; c; c = c->next)
		n++;
	if (n < 2)
		return 0;
	if (n <= 16) {
		for (const cJSON *a = v->child; a; a = a->next)
			for (const cJSON *b = a->next; b; b = b->next)
				if (!strcmp(a->string, b->string))
					return cl_err(CLEAVE_EBADJSON,
						      "duplicate key \"%s\"",
						      a->string);
		return 0;
	}
	const char **keys = malloc(n * sizeof(*keys));
	if (!keys)
		return cl_err(CLEAVE_ENOMEM, "out of memory checking keys");
	size_t i = 0;
	for (const cJSON *c = v->child; c; c = c->next)
		keys[i++] = c->string;
	qsort(keys, n, sizeof(*keys), cmp_keys);
	int rc = 0;
	for (i = 1; i < n; i++)
		if (!strcmp(keys[i - 1], keys[i])) {
			rc = cl_err(CLEAVE_EBADJSON, "duplicate key \"%s\"",
				    keys[i]);
			break;
		}
	free(keys);
	return rc;
}

int cl_json_parse(const char *s, size_t n, int max_depth, cJSON **out)
{
	*out = NULL;
	int rc = cl_json_check(s, n, max_depth);
	if (rc)
		return rc;
	cJSON *v = cJSON_ParseWithLength(s, n);
	if (!v)
		return cl_err(CLEAVE_ENOMEM, "out of memory parsing JSON");
	if ((rc = check_dups(v))) {
		cJSON_Delete(v);
		return rc;
	}
	*out = v;
	return 0;
}

static const char *type_name(cleave_field_type t)
{
	switch (t) {
	case CLEAVE_F_STRING: return "a string";
	case CLEAVE_F_INT: return "an integer";
	case CLEAVE_F_BOOL: return "a boolean";
	case CLEAVE_F_OBJECT: return "an object";
	case CLEAVE_F_ARRAY: return "an array";
	}
	return "?";
}

static int check_field(const cleave_field *f, const cJSON *v)
{
	switch (f->type) {
	case CLEAVE_F_STRING: {
		if (!cJSON_IsString(v))
			break;
		size_t len = strlen(v->valuestring);
		size_t max = f->max_len ? f->max_len : 256;
		if (len == 0)
			return cl_err(CLEAVE_EINVAL, "field '%s' is empty",
				      f->name);
		if (len > max)
			return cl_err(CLEAVE_EINVAL,
				      "field '%s' is longer than %zu bytes",
				      f->name, max);
		if (f->charset && !cl_name_ok(v->valuestring, max, f->charset))
			return cl_err(CLEAVE_EINVAL,
				      "field '%s' has characters outside "
				      "the '%s' set",
				      f->name, f->charset);
		return 0;
	}
	case CLEAVE_F_INT: {
		if (!cJSON_IsNumber(v))
			break;
		double d = v->valuedouble;
		if (d != floor(d))
			return cl_err(CLEAVE_EINVAL,
				      "field '%s' must be an integer",
				      f->name);
		int64_t i = (int64_t)d;
		if ((f->min || f->max) && (i < f->min || i > f->max))
			return cl_err(CLEAVE_EINVAL,
				      "field '%s' must be between %lld and "
				      "%lld",
				      f->name, (long long)f->min,
				      (long long)f->max);
		return 0;
	}
	case CLEAVE_F_BOOL:
		if (cJSON_IsBool(v))
			return 0;
		break;
	case CLEAVE_F_OBJECT:
		if (cJSON_IsObject(v))
			return 0;
		break;
	case CLEAVE_F_ARRAY:
		if (cJSON_IsArray(v))
			return 0;
		break;
	}
	return cl_err(CLEAVE_EINVAL, "field '%s' must be %s", f->name,
		      type_name(f->type));
}

int cl_fields_check(const cleave_field *fields, const cJSON *obj)
{
	if (!cJSON_IsObject(obj))
		return cl_err(CLEAVE_EINVAL, "body must be a JSON object");
	for (const cJSON *c = obj->child; c; c = c->next) {
		const cleave_field *f = fields;
		while (f && f->name && strcmp(f->name, c->string))
			f++;
		if (!f || !f->name)
			return cl_err(CLEAVE_EINVAL, "unknown field '%s'",
				      c->string);
		if (cJSON_IsNull(c) && !f->required)
			continue;
		int rc = check_field(f, c);
		if (rc)
			return rc;
	}
	for (const cleave_field *f = fields; f && f->name; f++) {
		if (!f->required)
			continue;
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
		if (!v || cJSON_IsNull(v))
			return cl_err(CLEAVE_EINVAL,
				      "missing required field '%s'", f->name);
	}
	return 0;
}

const char *cleave_json_str(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool exact_int(const cJSON *v, int64_t *out)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	if (d != floor(d) || fabs(d) > (double)CL_JSON_MAX_SAFE_INT)
		return false;
	*out = (int64_t)d;
	return true;
}

int64_t cleave_json_int(const cJSON *obj, const char *name, int64_t dflt)
{
	int64_t v;
	return exact_int(cJSON_GetObjectItemCaseSensitive(obj, name), &v) ? v
									  : dflt;
}

int cleave_json_get_str(const cJSON *obj, const char *name, const char **out)
{
	const char *s = cleave_json_str(obj, name);
	if (!s || !*s)
		return cl_err(CLEAVE_ECORRUPT, "'%s' is not a non-empty string",
			      name);
	*out = s;
	return 0;
}

int cleave_json_get_int(const cJSON *obj, const char *name, int64_t *out)
{
	if (!exact_int(cJSON_GetObjectItemCaseSensitive(obj, name), out))
		return cl_err(CLEAVE_ECORRUPT, "'%s' is not an exact integer",
			      name);
	return 0;
}

void cl_json_write(cleave_buf *b, const cJSON *v)
{
	switch (v->type & 0xff) {
	case cJSON_NULL:
		cleave_buf_add(b, "null", 4);
		return;
	case cJSON_False:
		cleave_buf_add(b, "false", 5);
		return;
	case cJSON_True:
		cleave_buf_add(b, "true", 4);
		return;
	case cJSON_Number: {
		double d = v->valuedouble;
		if (d == floor(d) && fabs(d) <= (double)CL_JSON_MAX_SAFE_INT) {
			cleave_buf_add_i64(b, (int64_t)d);
		} else if (isfinite(d)) {
			cleave_buf_addf(b, "%.17g", d);
		} else {
			cleave_buf_add(b, "null", 4); /* JSON has no NaN/Inf */
		}
		return;
	}
	case cJSON_String:
		cleave_buf_add_jstr(b, v->valuestring ? v->valuestring : "",
				    v->valuestring ? strlen(v->valuestring) : 0);
		return;
	case cJSON_Raw:
		cleave_buf_adds(b, v->valuestring ? v->valuestring : "null");
		return;
	case cJSON_Array:
	case cJSON_Object: {
		bool obj = (v->type & 0xff) == cJSON_Object;
		cleave_buf_addc(b, obj ? '{' : '[');
		for (const cJSON *c = v->child; c; c = c->next) {
			if (c != v->child)
				cleave_buf_addc(b, ',');
			if (obj) {
				cleave_buf_add_jstr(b, c->string,
						    strlen(c->string));
				cleave_buf_addc(b, ':');
			}
			cl_json_write(b, c);
		}
		cleave_buf_addc(b, obj ? '}' : ']');
		return;
	}
	}
	cleave_buf_add(b, "null", 4);
}

char *cleave_json_print(const cJSON *v, size_t *len)
{
	return cl_json_print(v, len);
}

char *cl_json_print(const cJSON *v, size_t *len)
{
	cleave_buf b;
	cleave_buf_init(&b);
	cleave_buf_reserve(&b, 120);
	cl_json_write(&b, v);
	return cleave_buf_steal(&b, len);
}
