/*
 * wstore_pg.c — PostgreSQL write store (not implemented yet: open fails
 * with CLEAVE_ENOTSUP and says so).
 */
#include "core/util.h"
#include "write/wstore.h"

static int pg_open(const cl_wstore_opts *o, cl_wstore **out)
{
	*out = NULL;
	return cl_err(CLEAVE_ENOTSUP,
		      "the PostgreSQL write store is not available in this "
		      "build yet (%s)",
		      o->uri);
}

const cl_wstore_methods cl_wstore_pg = {
	.version = CL_WSTORE_V1,
	.kind = "postgres",
	.open = pg_open,
};
