/*
 * ui.c — the operator's dashboard (GET /ui), the shop's demo page (GET
 * /ui/shop) and the files they load (GET /ui/NAME).
 *
 * The files are src/server/ui/'s, embedded in the program when it is
 * built (ui_files.h), so the pages work on a machine without a network
 * and nothing is fetched from anywhere but this server.  Each answer
 * carries headers that keep a browser from doing anything else with it:
 * a Content-Security-Policy that allows only this origin's scripts,
 * styles and connections (hence no inline script or style in the pages),
 * no framing, no type sniffing, no caching (a new build serves new
 * files at once).  The figures come from the stream GET /ui/stream
 * (live.c), which this file only routes to.
 */
#include <string.h>

#include "http.h"
#include "ui_files.h"

#define UI_CSP                                                                 \
	"default-src 'none'; script-src 'self'; style-src 'self'; "            \
	"connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "   \
	"base-uri 'none'; form-action 'none'"

/* The pages, by the name they are asked for (GET /ui is ""). */
static const struct {
	const char *name;
	const char *file;
} pages[] = {
    {"", "dashboard.html"},
    {"shop", "shop.html"},
};

static const struct {
	const char *ext;
	const char *ctype;
} types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
};

static const cl_ui_file *find_file(const char *name)
{
	for (const cl_ui_file *f = cl_ui_files; f->name; f++)
		if (!strcmp(f->name, name))
			return f;
	return NULL;
}

static const char *ctype_of(const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t e = strlen(types[i].ext);
		if (n > e && !strcmp(name + n - e, types[i].ext))
			return types[i].ctype;
	}
	return NULL;
}

/* Answers file `name` from memory, or 404. */
static enum MHD_Result send_file(cl_req *r, const char *name)
{
	for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		if (!strcmp(pages[i].name, name))
			name = pages[i].file;
	const cl_ui_file *f = find_file(name);
	const char *ctype = f ? ctype_of(f->name) : NULL;
	if (!ctype)
		return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		                     "no file '%s' in the dashboard", r->name);
	/* the bytes are static: MHD neither copies nor frees them */
	struct MHD_Response *resp =
	    cl_resp(ctype, (char *)f->data, f->len, false);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Security-Policy", UI_CSP);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
	                        "no-store");
	return cl_send(r, MHD_HTTP_OK, resp);
}

enum MHD_Result cl_h_ui(cl_req *r)
{
	return send_file(r, "");
}

enum MHD_Result cl_h_ui_file(cl_req *r)
{
	if (!strcmp(r->name, "stream"))
		return cl_h_ui_stream(r);
	return send_file(r, r->name);
}
