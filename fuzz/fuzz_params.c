/*
 * fuzz_params.c — the request target as the server decodes it: the path
 * (percent-decoding, the route table and its captured segment) and the
 * query string (cl_parse_params: escapes, '+', UTF-8, NUL, counts,
 * lengths, duplicates), then the integer parameters the server reads
 * itself (cl_param_int) and cl_param_drop.
 *
 * Input: byte 0 picks the method; the rest is the raw request target up
 * to the first NUL (MHD hands the server C strings).  params.c, routes.c
 * and buf.c are compiled in; the answering side (cl_send_error) and the
 * handlers are stubs that record what would have been sent.
 *
 * Invariants: every accepted parameter has a 1..64-byte name and a value
 * of at most 4096 bytes, both valid UTF-8 without NUL, no name twice, at
 * most 32; a rejected query string queued exactly one 400; a route's
 * capture is 1..64 bytes without '/'.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "server/http.h"

static unsigned sent_status;
static int nsent;

enum MHD_Result cl_send_error(cl_req *r, unsigned status, const char *code,
                              const char *fmt, ...)
{
	(void)r;
	(void)code;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	sent_status = status;
	nsent++;
	return MHD_YES;
}

#define STUB(name)                                                            \
	enum MHD_Result name(cl_req *r)                                       \
	{                                                                     \
		(void)r;                                                      \
		return MHD_YES;                                               \
	}
STUB(cl_h_command)
STUB(cl_h_query)
STUB(cl_h_events)
STUB(cl_h_projections)
STUB(cl_h_rebuild)
STUB(cl_h_resume)
STUB(cl_h_verify)
STUB(cl_h_trace)
STUB(cl_h_metrics)
STUB(cl_h_health)
STUB(cl_h_ui)
STUB(cl_h_ui_file)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

static const unsigned methods[] = {CL_M_GET, CL_M_POST, CL_M_HEAD,
                                   CL_M_OTHER};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned method = methods[data[0] & 3];
	size_t n = strnlen((const char *)data + 1, size - 1);
	char *uri = malloc(n + 1);
	memcpy(uri, data + 1, n);
	uri[n] = 0;

	cl_req r;
	memset(&r, 0, sizeof(r));
	r.uri = uri;
	char *q = strchr(uri, '?');
	size_t plen = q ? (size_t)(q - uri) : n;
	r.qs = q ? q + 1 : NULL;

	/* the path, as begin() in http.c decodes and routes it */
	char path[1024];
	if (plen < sizeof(path)) {
		memcpy(path, uri, plen);
		long dl = cl_pct_decode(path, plen, false);
		if (dl >= 0) {
			FUZZ_CHECK((size_t)dl <= plen);
			FUZZ_CHECK(strlen(path) == (size_t)dl);
			unsigned allow;
			r.route = cl_route_find(path, method, r.name,
			                        sizeof(r.name), &allow);
			if (r.route) {
				size_t cl = strlen(r.name);
				FUZZ_CHECK(cl <= CLEAVE_NAME_MAX);
				FUZZ_CHECK(!strchr(r.name, '/'));
				FUZZ_CHECK(strchr(r.route->pattern, '{')
				               ? cl > 0
				               : cl == 0);
			} else {
				FUZZ_CHECK((allow & ~(CL_M_GET | CL_M_POST)) ==
				           0);
			}
		}
	}

	/* the query string */
	nsent = 0;
	enum MHD_Result ret = MHD_YES;
	if (cl_parse_params(&r, &ret)) {
		FUZZ_CHECK(nsent == 0);
		FUZZ_CHECK(r.nparams >= 0 && r.nparams <= CL_MAX_PARAMS);
		for (int i = 0; i < r.nparams; i++) {
			const char *k = r.params[i].name, *v = r.params[i].value;
			size_t kl = strlen(k), vl = strlen(v);
			FUZZ_CHECK(kl >= 1 && kl <= CL_MAX_PARAM_NAME);
			FUZZ_CHECK(vl <= CL_MAX_PARAM_VALUE);
			FUZZ_CHECK(cleave_utf8_valid(k, kl));
			FUZZ_CHECK(cleave_utf8_valid(v, vl));
			for (int j = 0; j < i; j++)
				FUZZ_CHECK(strcmp(r.params[j].name, k) != 0);
			FUZZ_CHECK(cl_param(&r, k) == v);
		}
		int64_t x;
		static const char *const ints[] = {"min_position", "wait_ms",
		                                   "from", "limit"};
		for (size_t i = 0; i < 4; i++) {
			nsent = 0;
			if (cl_param_int(&r, ints[i], -7, -5, INT64_C(1) << 53,
			                 &x, &ret)) {
				FUZZ_CHECK(nsent == 0);
				FUZZ_CHECK(x == -7 ||
				           (x >= -5 && x <= (INT64_C(1) << 53)));
			} else {
				FUZZ_CHECK(nsent == 1 && sent_status == 400);
			}
		}
		int before = r.nparams;
		bool had = cl_param(&r, "wait_ms") != NULL;
		cl_param_drop(&r, "wait_ms");
		FUZZ_CHECK(r.nparams == before - (had ? 1 : 0));
		FUZZ_CHECK(cl_param(&r, "wait_ms") == NULL);
	} else {
		FUZZ_CHECK(nsent == 1 && sent_status == 400);
	}
	free(r.pbuf);
	free(uri);
	return 0;
}
