/*
 * rows.c — public row cursor calls, dispatched to the store's methods.
 */
#include "core/rows.h"

int cleave_rows_next(cleave_rows *r)
{
	return r->m->next(r);
}

int cleave_rows_columns(cleave_rows *r)
{
	return r->m->columns(r);
}

bool cleave_rows_is_null(cleave_rows *r, int col)
{
	return r->m->is_null(r, col);
}

int64_t cleave_rows_int(cleave_rows *r, int col)
{
	return r->m->get_int(r, col);
}

double cleave_rows_real(cleave_rows *r, int col)
{
	return r->m->get_real(r, col);
}

const char *cleave_rows_text(cleave_rows *r, int col, size_t *len)
{
	return r->m->get_text(r, col, len);
}

void cleave_rows_close(cleave_rows *r)
{
	if (r)
		r->m->close(r);
}
