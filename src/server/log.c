/*
 * log.c — JSON log lines on stderr.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static atomic_int min_level = CLEAVE_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cl_log_set_level(int level)
{
	atomic_store(&min_level, level);
}

int cl_log_level(void)
{
	return atomic_load(&min_level);
}

int cl_log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, level_names[i]))
			return i;
	if (!strcmp(s, "warning"))
		return CLEAVE_LOG_WARN;
	return -1;
}

static void write_line(int level, const char *trace_id, const char *command_id,
                       int64_t position, const char *msg, size_t msglen)
{
	struct timespec ts;
	struct tm tm;
	char when[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);

	cleave_buf heap;
	cleave_buf_init(&heap);
	cleave_buf *o = &heap;
	cleave_buf_adds(o, "{\"level\":\"");
	cleave_buf_adds(o, level_names[level < 0 ? 0 : level > 3 ? 3 : level]);
	cleave_buf_adds(o, "\",\"time\":\"");
	cleave_buf_adds(o, when);
	cleave_buf_adds(o, "\",\"msg\":");
	cleave_buf_add_jstr(o, msg, msglen);
	if (trace_id && *trace_id) {
		cleave_buf_adds(o, ",\"trace_id\":");
		cleave_buf_add_jstr(o, trace_id, strlen(trace_id));
	}
	if (command_id && *command_id) {
		cleave_buf_adds(o, ",\"command_id\":");
		cleave_buf_add_jstr(o, command_id, strlen(command_id));
	}
	if (position >= 0) {
		cleave_buf_adds(o, ",\"position\":");
		cleave_buf_add_i64(o, position);
	}
	cleave_buf_adds(o, "}\n");
	if (!o->oom) {
		ssize_t w = write(STDERR_FILENO, o->p, o->len);
		(void)w;
	}
	cleave_buf_free(&heap);
}

void cl_logv(int level, const char *trace_id, const char *command_id,
             int64_t position, const char *fmt, va_list ap)
{
	if (level < atomic_load(&min_level))
		return;
	char msg[2048];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	write_line(level, trace_id, command_id, position, msg, (size_t)n);
}

void cl_logf(int level, const char *trace_id, const char *command_id,
             int64_t position, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	cl_logv(level, trace_id, command_id, position, fmt, ap);
	va_end(ap);
}

void cl_log_engine(void *arg, int level, const char *trace_id,
                   const char *command_id, int64_t position, const char *msg)
{
	(void)arg;
	if (level < atomic_load(&min_level))
		return;
	write_line(level, trace_id, command_id, position, msg, strlen(msg));
}

void cl_log_mhd(void *arg, const char *fmt, va_list ap)
{
	(void)arg;
	if (CLEAVE_LOG_WARN < atomic_load(&min_level))
		return;
	char msg[1024];
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
	while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
		len--;
	char line[1100];
	int m = snprintf(line, sizeof(line), "http: %.*s", (int)len, msg);
	write_line(CLEAVE_LOG_WARN, NULL, NULL, -1, line,
	           (size_t)m < sizeof(line) ? (size_t)m : sizeof(line) - 1);
}
