/*
 * pg_sql.c — SQL text for PostgreSQL: the '?' → $n rewrite, the mapping of
 * SQLSTATEs to CLEAVE_E* codes, and URIs without their passwords.
 */
#include "write/pg_sql.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

#define PG_PARAMS_MAX 65535 /* the protocol's limit */

/* ---- placeholders ----------------------------------------------------- */

static bool is_alpha(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       ch == '_' || ch >= 0x80;
}

static bool is_digit(unsigned char ch)
{
	return ch >= '0' && ch <= '9';
}

/* May this byte continue an identifier (so a '$' or a quote after it is
 * part of a name, not the start of something)? */
static bool ident_char(unsigned char ch)
{
	return is_alpha(ch) || is_digit(ch) || ch == '$';
}

/* Length of the dollar-quote delimiter starting at p ("$$" is 2,
 * "$tag$" is 5), or 0 when p does not start one. */
static size_t dollar_tag(const char *p)
{
	size_t i = 1;
	if (p[1] != '$') {
		if (!is_alpha((unsigned char)p[1]))
			return 0;
		while (is_alpha((unsigned char)p[i]) ||
		       is_digit((unsigned char)p[i]))
			i++;
		if (p[i] != '$')
			return 0;
	}
	return i + 1;
}

/* The end of the quoted text starting at p (just past the closing quote,
 * or the end of the string when unterminated).  A doubled quote stands for
 * itself; with `backslash`, a backslash escapes the next byte. */
static const char *skip_quoted(const char *p, char q, bool backslash)
{
	for (p++; *p; p++) {
		if (backslash && *p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == q) {
			if (p[1] != q)
				return p + 1;
			p++;
		}
	}
	return p;
}

static const char *skip_block_comment(const char *p)
{
	int depth = 0;
	while (*p) {
		if (p[0] == '/' && p[1] == '*') {
			depth++;
			p += 2;
		} else if (p[0] == '*' && p[1] == '/') {
			p += 2;
			if (--depth == 0)
				break;
		} else {
			p++;
		}
	}
	return p;
}

int cl_pg_rewrite(const char *sql, char **out, int *nparams)
{
	cleave_buf b;
	long max = 0;
	const char *p = sql;
	*out = NULL;
	*nparams = 0;
	cleave_buf_init(&b);
	cleave_buf_reserve(&b, strlen(sql) + 16);
	while (*p) {
		const char *start = p;
		unsigned char ch = (unsigned char)*p;
		size_t tl;
		if (ch == '\'') {
			bool esc =
			    p > sql && (p[-1] == 'E' || p[-1] == 'e') &&
			    (p - 1 == sql || !ident_char((unsigned char)p[-2]));
			p = skip_quoted(p, '\'', esc);
		} else if (ch == '"') {
			p = skip_quoted(p, '"', false);
		} else if (ch == '-' && p[1] == '-') {
			while (*p && *p != '\n')
				p++;
		} else if (ch == '/' && p[1] == '*') {
			p = skip_block_comment(p);
		} else if (ch == '$' &&
		           (p == sql || !ident_char((unsigned char)p[-1])) &&
		           (tl = dollar_tag(p))) {
			const char *end = p + tl;
			while ((end = strchr(end, '$')) && strncmp(end, p, tl))
				end++;
			p = end ? end + tl : p + strlen(p);
		} else if (ch == '?') {
			long idx = 0;
			p++;
			if (is_digit((unsigned char)*p)) {
				while (is_digit((unsigned char)*p) &&
				       idx <= PG_PARAMS_MAX)
					idx = idx * 10 + (*p++ - '0');
				while (is_digit((unsigned char)*p))
					p++;
			} else {
				idx = max + 1;
			}
			if (idx < 1 || idx > PG_PARAMS_MAX) {
				cleave_buf_free(&b);
				return cl_err(
				    CLEAVE_EINVAL,
				    "SQL parameter number out of range "
				    "(1 to %d): %s",
				    PG_PARAMS_MAX, sql);
			}
			if (idx > max)
				max = idx;
			cleave_buf_addc(&b, '$');
			cleave_buf_add_i64(&b, idx);
			continue;
		} else {
			p++;
		}
		cleave_buf_add(&b, start, (size_t)(p - start));
	}
	if (b.oom || !cleave_buf_reserve(&b, 0)) {
		cleave_buf_free(&b);
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	}
	*out = cleave_buf_steal(&b, NULL);
	*nparams = (int)max;
	return 0;
}

/* ---- errors ------------------------------------------------------------- */

static int map_sqlstate(const char *st)
{
	static const struct {
		const char *prefix;
		int rc;
	} tab[] = {
	    {"23505", CLEAVE_EEXIST},   {"23", CLEAVE_EINVAL},
	    {"22", CLEAVE_EINVAL},      {"42", CLEAVE_EINVAL},
	    {"40001", CLEAVE_EBUSY},    {"40P01", CLEAVE_EBUSY},
	    {"55P03", CLEAVE_EBUSY},    {"57014", CLEAVE_EBUSY},
	    {"53100", CLEAVE_ENOSPC},   {"53200", CLEAVE_ENOMEM},
	    {"53", CLEAVE_EBUSY},       {"08", CLEAVE_EIO},
	    {"57P", CLEAVE_EIO},        {"58", CLEAVE_EIO},
	    {"XX001", CLEAVE_ECORRUPT}, {"XX002", CLEAVE_ECORRUPT},
	    {"0A", CLEAVE_ENOTSUP},     {"25006", CLEAVE_EREADONLY},
	};
	for (size_t i = 0; i < CL_ARRAY_LEN(tab); i++)
		if (!strncmp(st, tab[i].prefix, strlen(tab[i].prefix)))
			return tab[i].rc;
	return CLEAVE_EINTERNAL;
}

void cl_pg_copy_msg(char *out, size_t cap, const char *msg)
{
	snprintf(out, cap, "%s", msg ? msg : "");
	size_t n = strlen(out);
	while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = 0;
	for (char *q = out; *q; q++)
		if (*q == '\n')
			*q = ' ';
}

int cl_pg_err(PGconn *conn, const PGresult *res, const char *what)
{
	const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *prim =
	    res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail =
	    res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	char msg[400];
	int rc;
	if (st)
		rc = map_sqlstate(st);
	else if (!conn || PQstatus(conn) == CONNECTION_BAD)
		rc = CLEAVE_EIO;
	else
		rc = CLEAVE_EINTERNAL;
	if (prim) {
		snprintf(msg, sizeof(msg), "%s%s%s", prim, detail ? " " : "",
		         detail ? detail : "");
	} else {
		const char *m = res ? PQresultErrorMessage(res) : "";
		if ((!m || !*m) && conn)
			m = PQerrorMessage(conn);
		cl_pg_copy_msg(msg, sizeof(msg), m);
		if (!*msg)
			snprintf(msg, sizeof(msg), "no answer from the server");
	}
	if (st)
		return cl_err(rc, "postgres %s: %s (SQLSTATE %s)", what, msg,
		              st);
	return cl_err(rc, "postgres %s: %s", what, msg);
}

static void put(char *out, size_t cap, size_t *o, const char *s)
{
	while (*s && *o + 1 < cap)
		out[(*o)++] = *s++;
}

void cl_pg_redact(const char *uri, char *out, size_t cap)
{
	const char *p = uri ? uri : "";
	const char *pw = NULL, *pw_end = NULL;
	const char *scheme = strstr(p, "://");
	size_t o = 0;
	if (!cap)
		return;
	if (scheme) {
		const char *s = scheme + 3, *at = NULL;
		size_t hl = strcspn(s, "/?#");
		for (size_t i = 0; i < hl; i++)
			if (s[i] == '@')
				at = s + i;
		const char *colon =
		    at ? memchr(s, ':', (size_t)(at - s)) : NULL;
		if (colon) {
			pw = colon + 1;
			pw_end = at;
		}
	}
	while (*p && o + 1 < cap) {
		if (p == pw) {
			put(out, cap, &o, "***");
			p = pw_end;
		} else if (!strncmp(p, "password=", 9)) {
			put(out, cap, &o, "password=***");
			p += 9;
			p += strcspn(p, "& ");
		} else {
			out[o++] = *p++;
		}
	}
	out[o] = 0;
}
