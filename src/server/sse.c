/*
 * sse.c — server-sent event streams: live queries and the dashboard's
 * figures.  (Placeholder.)
 */
#include "http.h"

enum MHD_Result cl_h_ui_stream(cl_req *r)
{
	return cl_send_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable",
	                     "not built yet");
}
