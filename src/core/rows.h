/*
 * rows.h — the row cursor method table (private).  Write stores and SQL
 * read stores hand out cleave_rows through it.
 */
#ifndef CL_ROWS_H
#define CL_ROWS_H

#include "cleave.h"

typedef struct cl_rows_methods {
	int (*next)(cleave_rows *r);
	int (*columns)(cleave_rows *r);
	bool (*is_null)(cleave_rows *r, int col);
	int64_t (*get_int)(cleave_rows *r, int col);
	double (*get_real)(cleave_rows *r, int col);
	const char *(*get_text)(cleave_rows *r, int col, size_t *len);
	void (*close)(cleave_rows *r);
} cl_rows_methods;

struct cleave_rows {
	const cl_rows_methods *m;
};

#endif
