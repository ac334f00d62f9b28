/*
 * ui.c — the operator's dashboard: GET /ui and the files it loads.
 * (Placeholder until the page lands.)
 */
#include <string.h>

#include "http.h"

enum MHD_Result cl_h_ui(cl_req *r)
{
	return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
	                     "the dashboard is not built yet");
}

enum MHD_Result cl_h_ui_file(cl_req *r)
{
	if (!strcmp(r->name, "stream"))
		return cl_h_ui_stream(r);
	return cl_send_error(r, MHD_HTTP_NOT_FOUND, "not_found",
	                     "no file '%s' in the dashboard", r->name);
}
