/*
 * routes.c — the route table: method, path pattern, handler, flags.
 * A pattern's "{}" matches one non-empty path segment, captured for the
 * handler (a command, query or projection name).  Every route also takes
 * HEAD where it takes GET, and OPTIONS (answered by guard.c).
 */
#include <string.h>

#include "http.h"

static const cl_route routes[] = {
    {CL_M_POST, "/commands/{}", cl_h_command, CL_R_BODY | CL_R_ADMIN},
    {CL_M_GET, "/queries/{}", cl_h_query, CL_R_QUERY},
    {CL_M_GET, "/events", cl_h_events, CL_R_ADMIN},
    {CL_M_GET, "/projections", cl_h_projections, 0},
    {CL_M_POST, "/projections/{}/rebuild", cl_h_rebuild,
     CL_R_BODY | CL_R_ADMIN},
    {CL_M_POST, "/projections/{}/resume", cl_h_resume, CL_R_BODY | CL_R_ADMIN},
    {CL_M_POST, "/projections/{}/verify", cl_h_verify, CL_R_BODY | CL_R_ADMIN},
    {CL_M_GET, "/trace/{}", cl_h_trace, CL_R_ADMIN},
    {CL_M_GET, "/metrics", cl_h_metrics, 0},
    {CL_M_GET, "/health", cl_h_health, 0},
    {CL_M_GET, "/ui", cl_h_ui, 0},
    {CL_M_GET, "/ui/{}", cl_h_ui_file, 0},
    {0, NULL, NULL, 0},
};

/* Matches path against pattern; copies the capture. */
static bool match(const char *pat, const char *path, char *cap, size_t capsz)
{
	for (;;) {
		if (pat[0] == '{' && pat[1] == '}') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= capsz)
				return false;
			memcpy(cap, path, n);
			cap[n] = 0;
			path += n;
			pat += 2;
			continue;
		}
		if (*pat != *path)
			return false;
		if (!*pat)
			return true;
		pat++;
		path++;
	}
}

const cl_route *cl_route_find(const char *path, unsigned method, char *cap,
                              size_t capsz, unsigned *allow)
{
	char tmp[CLEAVE_NAME_MAX + 1];
	*allow = 0;
	for (const cl_route *r = routes; r->pattern; r++) {
		if (!match(r->pattern, path, tmp,
		           sizeof(tmp) < capsz ? sizeof(tmp) : capsz))
			continue;
		unsigned m = r->methods | CL_M_OPTIONS;
		if (m & CL_M_GET)
			m |= CL_M_HEAD;
		if (m & method) {
			strcpy(cap, strchr(r->pattern, '{') ? tmp : "");
			return r;
		}
		*allow |= r->methods;
	}
	return NULL;
}
