/*
 * guard.h — host names and origins, in the one normal form in which the
 * browser-safety checks (guard.c) compare them and the flags that name
 * them (--allow-host, --allow-origin; config.c) store them.
 *
 * The normal form of a host: lower case; one trailing dot dropped
 * ("localhost." is "localhost"); an IPv6 literal in brackets, in its
 * canonical text ("[0:0::1]" is "[::1]").  Host names are compared as
 * text in that form, never resolved.
 */
#ifndef CL_SERVER_GUARD_H
#define CL_SERVER_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#define CL_HOST_MAX 256 /* a host in normal form, brackets and NUL included */

typedef struct cl_origin {
	char scheme[24];        /* lower case */
	char host[CL_HOST_MAX]; /* normal form */
	unsigned port;          /* the default port of the scheme when absent
	                           (http 80, https 443; 0 for others) */
} cl_origin;

/* Parses the authority s[0..n), "host[:port]" (RFC 9110 §7.2 Host; no
 * userinfo), writing its host in normal form to out.  *port is the port,
 * or -1 when absent (an empty port, "host:", is absent too); port NULL:
 * a port is refused.  Returns 0, or -1 when s is not such an authority
 * (an unclosed bracket, a bad IPv6 literal, a port that is not digits,
 * spaces, controls, or a character no host name has).  The host may be
 * empty. */
int cl_host_parse(const char *s, size_t n, char *out, size_t cap, long *port);

/* A host name as --allow-host takes it: a name or IP literal, an IPv6
 * literal with or without brackets, no port.  Writes its normal form;
 * -1 when it is not one (or empty). */
int cl_host_name(const char *s, size_t n, char *out, size_t cap);

/* Parses a serialised origin, scheme "://" host [":" port] (RFC 6454),
 * nothing after it.  -1 for anything else, "null" included. */
int cl_origin_parse(const char *s, size_t n, cl_origin *o);

/* Writes o as text, its port always explicit: "http://localhost:8080". */
void cl_origin_format(const cl_origin *o, char *out, size_t cap);

#endif
