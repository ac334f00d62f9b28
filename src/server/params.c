/*
 * params.c — strict decoding of paths and query strings.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* ---- paths and query strings ------------------------------------------------
 */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s[0..n) in place ('+' → ' ' when plus); returns the new length
 * or -1 on a bad escape or an encoded NUL. */
long cl_pct_decode(char *s, size_t n, bool plus)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -1;
			int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			s[o++] = (char)(h * 16 + l);
			i += 2;
		} else if (c == '+' && plus) {
			s[o++] = ' ';
		} else {
			s[o++] = c;
		}
	}
	s[o] = 0;
	return (long)o;
}

bool cl_parse_params(cl_req *r, enum MHD_Result *ret)
{
	r->nparams = 0;
	if (!r->qs || !*r->qs)
		return true;
	size_t n = strlen(r->qs);
	free(r->pbuf);
	r->pbuf = malloc(n + 1);
	if (!r->pbuf) {
		*ret = MHD_NO;
		return false;
	}
	memcpy(r->pbuf, r->qs, n + 1);
	char *p = r->pbuf, *end = r->pbuf + n;
	while (p < end) {
		char *amp = memchr(p, '&', (size_t)(end - p));
		char *stop = amp ? amp : end;
		*stop = 0;
		if (stop == p) {
			p = stop + 1;
			continue;
		}
		if (r->nparams == CL_MAX_PARAMS) {
			*ret = cl_send_error(
			    r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
			    "more than %d query parameters", CL_MAX_PARAMS);
			return false;
		}
		char *eq = memchr(p, '=', (size_t)(stop - p));
		char *name = p, *val = eq ? eq + 1 : stop;
		size_t nlen = (size_t)((eq ? eq : stop) - p);
		long dn = cl_pct_decode(name, nlen, true);
		long dv = cl_pct_decode(val, (size_t)(stop - val), true);
		if (dn < 0 || dv < 0) {
			*ret = cl_send_error(r, MHD_HTTP_BAD_REQUEST,
			                     "invalid_parameter",
			                     "malformed percent-escape (or an "
			                     "encoded NUL) in the query "
			                     "string");
			return false;
		}
		if (dn == 0 || dn > CL_MAX_PARAM_NAME ||
		    !cleave_utf8_valid(name, (size_t)dn)) {
			*ret = cl_send_error(r, MHD_HTTP_BAD_REQUEST,
			                     "invalid_parameter",
			                     "query parameter names must be 1 "
			                     "to %d bytes of UTF-8",
			                     CL_MAX_PARAM_NAME);
			return false;
		}
		if (!cleave_utf8_valid(val, (size_t)dv)) {
			*ret = cl_send_error(r, MHD_HTTP_BAD_REQUEST,
			                     "invalid_parameter",
			                     "parameter '%s' is not valid "
			                     "UTF-8",
			                     name);
			return false;
		}
		if (dv > CL_MAX_PARAM_VALUE) {
			*ret = cl_send_error(r, MHD_HTTP_BAD_REQUEST,
			                     "invalid_parameter",
			                     "parameter '%s' is longer than %d "
			                     "bytes",
			                     name, CL_MAX_PARAM_VALUE);
			return false;
		}
		if (cl_param(r, name)) {
			*ret = cl_send_error(
			    r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
			    "parameter '%s' given twice", name);
			return false;
		}
		r->params[r->nparams].name = name;
		r->params[r->nparams].value = val;
		r->nparams++;
		p = stop + 1;
	}
	return true;
}

const char *cl_param(cl_req *r, const char *name)
{
	for (int i = 0; i < r->nparams; i++)
		if (!strcmp(r->params[i].name, name))
			return r->params[i].value;
	return NULL;
}

void cl_param_drop(cl_req *r, const char *name)
{
	for (int i = 0; i < r->nparams; i++)
		if (!strcmp(r->params[i].name, name)) {
			memmove(&r->params[i], &r->params[i + 1],
			        (size_t)(r->nparams - i - 1) *
			            sizeof(r->params[0]));
			r->nparams--;
			return;
		}
}

bool cl_param_int(cl_req *r, const char *name, int64_t def, int64_t min,
                  int64_t max, int64_t *out, enum MHD_Result *ret)
{
	const char *v = cl_param(r, name);
	if (!v) {
		*out = def;
		return true;
	}
	const char *d = v[0] == '-' ? v + 1 : v;
	size_t n = strlen(d);
	bool ok = n > 0 && n <= 18;
	for (size_t i = 0; ok && i < n; i++)
		ok = d[i] >= '0' && d[i] <= '9';
	long long x = ok ? strtoll(v, NULL, 10) : 0;
	if (!ok || x < min || x > max) {
		*ret =
		    cl_send_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter",
		                  "parameter '%s' must be an integer from "
		                  "%lld to %lld",
		                  name, (long long)min, (long long)max);
		return false;
	}
	*out = x;
	return true;
}
