/*
 * testutil.c — temporary directories for tests.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"

char *tu_tmpdir(const char *tag)
{
	const char *base = getenv("CLEAVE_TEST_TMP");
	char hex[17];
	char path[1024];
	cl_random_hex(hex, 8);
	snprintf(path, sizeof(path), "%s/%s-%d-%s", base ? base : "/tmp",
		 tag, (int)getpid(), hex);
	if (cl_mkdirs(path))
		fail_msg("mkdir %s: %s", path, cleave_errmsg());
	return strdup(path);
}

void tu_rmdir(char *path)
{
	if (path)
		cl_rmtree(path);
	free(path);
}
