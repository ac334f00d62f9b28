/*
 * live.h — live queries as the rest of the engine sees them: the sync
 * layer tells which keys a live copy's commit wrote (cl_live_publish) or
 * that a projection changed wholesale (cl_live_publish_proj); the query
 * side's subscriptions (cleave_live_*, include/cleave.h) are private to
 * live.c.
 */
#ifndef CL_LIVE_H
#define CL_LIVE_H

#include <stdbool.h>

#include "cleave.h"
#include "read/keyrec.h"

typedef struct cl_live_reg cl_live_reg;

int cl_live_init(cleave_engine *e);
void cl_live_free(cleave_engine *e);
/* True while any live query is open: runners then record what their
 * commits write. */
bool cl_live_any(cleave_engine *e);
/* After projection proj's live copy committed what rec recorded: wakes
 * the live queries that read any of it (rec is sorted on the way). */
void cl_live_publish(cleave_engine *e, int proj, cl_keyrec *rec);
/* Wakes every live query that reads projection proj (a blue-green
 * switch, a query node's followed copy moving). */
void cl_live_publish_proj(cleave_engine *e, int proj);

#endif
