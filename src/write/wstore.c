/*
 * wstore.c — the write stores' registry: the engine finds a backend by the
 * --write-store URI and never names one.
 */
#include <string.h>

#include "write/wstore.h"

const cl_wstore_methods *cl_wstore_find(const char *uri)
{
	if (!uri || !*uri || !strcmp(uri, "sqlite"))
		return &cl_wstore_sqlite;
	if (!strncmp(uri, "postgres://", 11) ||
	    !strncmp(uri, "postgresql://", 13))
		return &cl_wstore_pg;
	return NULL;
}
