/*
 * testutil.h — helpers shared by the unit tests (cmocka).
 */
#ifndef CL_TESTUTIL_H
#define CL_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cleave.h"

/* A fresh empty directory under $CLEAVE_TEST_TMP (or /tmp), unique per
 * call; the returned string is static storage of the caller's copy
 * (malloc'd, free it).  Removed by tu_rmdir. */
char *tu_tmpdir(const char *tag);
void tu_rmdir(char *path); /* removes the tree and frees path */

/* Asserts rc == 0 and prints cleave_errmsg() when not. */
#define TU_OK(expr)                                                          \
	do {                                                                 \
		int tu_rc_ = (expr);                                         \
		if (tu_rc_ != 0)                                             \
			fail_msg("%s -> %d (%s): %s", #expr, tu_rc_,         \
				 cleave_strerror(tu_rc_), cleave_errmsg());  \
	} while (0)

#endif
