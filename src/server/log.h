/*
 * log.h — the server's log: one JSON object per line on stderr,
 *   {"level","time","msg","trace_id"?,"command_id"?,"position"?}
 * with time in RFC 3339 UTC with milliseconds.  Thread-safe: each line is
 * one write(2).  The engine's log (cleave_config.log) comes through
 * cl_log_engine, MHD's error log through cl_log_mhd.
 */
#ifndef CL_SERVER_LOG_H
#define CL_SERVER_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include "cleave.h"

/* Levels are cleave.h's CLEAVE_LOG_DEBUG..CLEAVE_LOG_ERROR. */
void cl_log_set_level(int level);
int cl_log_level(void);
/* Parses "debug", "info", "warn", "error"; -1 when unknown. */
int cl_log_level_parse(const char *s);

/* Writes one line if `level` passes.  trace_id and command_id may be NULL,
 * position < 0 for none. */
void cl_logf(int level, const char *trace_id, const char *command_id,
             int64_t position, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void cl_logv(int level, const char *trace_id, const char *command_id,
             int64_t position, const char *fmt, va_list ap);

/* cleave_log_fn for cleave_config.log (arg unused). */
void cl_log_engine(void *arg, int level, const char *trace_id,
                   const char *command_id, int64_t position, const char *msg);
/* MHD_OPTION_EXTERNAL_LOGGER sink. */
void cl_log_mhd(void *arg, const char *fmt, va_list ap);

#endif
