/*
 * cli_util.h — what the operator subcommands (status, rebuild, verify,
 * events, trace) share: the common options, opening an engine on a data
 * directory, a small HTTP/1.1 client for --server, and output as human
 * tables or JSON lines.
 *
 * The CLI speaks to Cleave only through cleave.h (with --data) or over
 * HTTP (with --server); it uses none of libcleave's private headers.
 *
 * Exit codes, as in cli.h: CLI_EXIT_OK 0, CLI_EXIT_FAIL 1 (a failure, drift,
 * nothing found), CLI_EXIT_USAGE 2 (bad options or arguments).
 */
#ifndef CLI_UTIL_H
#define CLI_UTIL_H

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "cleave.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

/* ---- options ------------------------------------------------------------ */

/* The options every operator subcommand takes.  Strings are borrowed from
 * argv or the environment and live as long as the process. */
typedef struct cli_common {
	const char *cmd;         /* subcommand name, for messages */
	const char *data_dir;    /* --data, CLEAVE_DATA, "./cleave-data" */
	const char *server;      /* --server, CLEAVE_SERVER; NULL: use data */
	const char *domain_name; /* --domain, CLEAVE_DOMAIN; NULL: default */
	const char *write_store; /* --write-store, CLEAVE_WRITE_STORE */
	const char *read_store;  /* --read-store, CLEAVE_READ_STORE */
	bool json;               /* --json, or stdout is not a terminal */
	bool verbose;            /* --verbose: engine logs on stderr */
	const char
	    *auth_token;       /* --auth-token(-file), CLEAVE_AUTH_TOKEN(_FILE):
	                          sent as a bearer token to --server */
	int http_timeout_ms;   /* per request to --server */
	bool http_timeout_set; /* --http-timeout was given */
	/* the domain domain_name names (plugin.h), borrowed for the life of
	 * the process: a built-in one, or a plugin's */
	const cleave_domain *domain;
} cli_common;

/* Called for each option of a subcommand's own table: return 0 to go on,
 * CLI_EXIT_USAGE after printing why the value is bad. */
typedef int (*cli_opt_fn)(void *arg, int opt, const char *val);

typedef struct cli_cmd_spec {
	const char *name;          /* "status" */
	const char *synopsis;      /* "[NAME...]": after "cleave status " */
	const char *description;   /* paragraph(s) for --help */
	const char *options_help;  /* the subcommand's own options, or NULL */
	const struct option *opts; /* its own long options, {0}-terminated;
	                              values must be >= 0x100 or a letter
	                              also given in shortopts */
	const char *shortopts;     /* its own short options, or NULL */
	cli_opt_fn on_opt;
	void *arg;
	int min_args, max_args; /* positional arguments; max -1: any */
	/* talks only to a running server: --data is a usage error, and
	 * without --server (or CLEAVE_SERVER) the server is
	 * CLI_DEFAULT_SERVER, where `cleave serve` listens by default */
	bool server_only;
} cli_cmd_spec;

#define CLI_DEFAULT_SERVER "http://127.0.0.1:8080"

/* Parses argv (argv[0] is the subcommand) with getopt_long: the common
 * options, then spec's.  Returns -1 to go on with *first_arg the index of
 * the first positional argument, or an exit code to return at once
 * (CLI_EXIT_OK after --help, CLI_EXIT_USAGE after a message on stderr). */
int cli_parse(const cli_cmd_spec *spec, cli_common *c, int argc, char **argv,
              int *first_arg);

/* Parses a non-negative integer option value; false when it is not one. */
bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses seconds as a decimal ("2.5"); false when not a number >= 0. */
bool cli_parse_seconds(const char *s, double *out);

/* Prints "cleave CMD: <message>\n" on stderr. */
void cli_errorf(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A usage error: the message, a hint to --help; returns CLI_EXIT_USAGE. */
int cli_usage_error(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- the engine on a data directory -------------------------------------- */

/* Opens the engine on c->data_dir for c->domain.  read_only opens
 * the log and the read stores without writing (and without the data
 * directory's lock, so it works beside a running server); otherwise the
 * engine runs its writer and projection runners.  Prints the failure
 * (with a hint to --server when a server holds the directory) and returns
 * CLI_EXIT_FAIL; 0 with *out. */
int cli_engine_open(const cli_common *c, bool read_only, cleave_engine **out);

/* ---- HTTP client (--server) ---------------------------------------------- */

#define CLI_HTTP_BODY_MAX (256u << 20) /* responses larger are refused */
#define CLI_HTTP_HEAD_MAX (64u << 10)

typedef struct cli_http_resp {
	int status; /* e.g. 200 */
	char *body; /* NUL-terminated, malloc'd; cli_http_resp_free */
	size_t len;
	int64_t position; /* X-Cleave-Position, or -1 */
} cli_http_resp;

/* Sends METHOD base_url+target (target starts with '/', already
 * percent-encoded) with an optional body (JSON), over a new connection,
 * and reads the whole response (Content-Length, chunked, or until close).
 * base_url is http://host[:port][/prefix]; host may be a name, IPv4, or
 * [IPv6].  bearer (may be NULL) is sent as "Authorization: Bearer".
 * timeout_ms bounds connecting and each wait for data.  Returns 0
 * with *out filled (any status), or -1 with a message in err. */
int cli_http_request(const char *base_url, const char *method,
                     const char *target, const char *bearer, const char *body,
                     size_t body_len, int timeout_ms, cli_http_resp *out,
                     char *err, size_t errcap);
void cli_http_resp_free(cli_http_resp *r);

/* Receives a piece of a streamed body as it arrives (p borrowed for the
 * call), and n == 0 about once a second while nothing comes; nonzero
 * stops the stream. */
typedef int (*cli_http_body_fn)(void *arg, const char *p, size_t n);
/* GET base_url+target asking for `accept`, with the header lines `extra`
 * (each ending in CRLF; may be NULL), reading the answer as it arrives.
 * A 2xx answer's body goes to fn a piece at a time (dechunked) until the
 * server ends it or fn returns nonzero; any other answer is read whole
 * into out->body.  timeout_ms bounds connecting and each wait for data:
 * a stream silent for longer fails.  Returns 0 with out->status (and
 * out->body, cli_http_resp_free, unless 2xx), or -1 with a message in err
 * (out->status is set when the failure came after the answer's head). */
int cli_http_stream(const char *base_url, const char *target,
                    const char *bearer, const char *accept, const char *extra,
                    int timeout_ms, cli_http_body_fn fn, void *arg,
                    cli_http_resp *out, char *err, size_t errcap);
/* Checks that url is one cli_http_request can use; -1 with a message. */
int cli_url_check(const char *url, char *err, size_t errcap);

/* GET/POST for the subcommands: on a transport failure or a status other
 * than 2xx, prints the server's error (its {"error":{…}} when there is
 * one) and returns CLI_EXIT_FAIL; on success 0 with *json the parsed body
 * (cJSON_Delete) when json is not NULL. */
int cli_server_call(const cli_common *c, const char *method, const char *target,
                    cJSON **json, cli_http_resp *resp);
/* The same request, waiting up to timeout_ms for each piece of the
 * answer, and returning any status: CLI_EXIT_FAIL (printed) only on a
 * transport failure, else 0 with *resp (cli_http_resp_free). */
int cli_server_request(const cli_common *c, const char *method,
                       const char *target, int timeout_ms, cli_http_resp *resp);
/* Prints the error a non-2xx answer carries (with a hint on 401/403). */
void cli_server_error(const cli_common *c, const char *method,
                      const char *target, const cli_http_resp *r);
/* The "message" of an answer's {"error":{…}}, copied to buf (cap bytes),
 * or the answer itself, escaped, when it has none. */
void cli_error_message(const cli_http_resp *r, char *buf, size_t cap);
/* How long to wait for a server that works before it answers (verify,
 * trace): --http-timeout when given, else 10 minutes. */
int cli_slow_timeout_ms(const cli_common *c);

/* Appends s percent-encoded (RFC 3986 unreserved kept) to buf. */
void cli_url_encode(char *buf, size_t cap, const char *s);

/* ---- output -------------------------------------------------------------- */

/* Ignores SIGPIPE (writes then fail with EPIPE, handled quietly) and
 * catches SIGINT/SIGTERM into cli_interrupted. */
void cli_signals_init(void);
extern volatile sig_atomic_t cli_interrupted;
/* True once writing stdout failed (e.g. the reader of a pipe left). */
bool cli_out_broken(void);
/* The same, or (one poll(2), without writing) stdout is a pipe whose
 * reader has gone: `cleave events --follow | head -1` ends while the log
 * is quiet. */
bool cli_out_gone(void);
/* Flushes stdout and turns the subcommand's result into an exit code: a
 * closed pipe is quiet (rc kept), another write error is reported (1). */
int cli_finish(const cli_common *c, int rc);

/* Adds an exact integer member (cJSON would print a double, losing digits
 * past 2^53 and writing large ones with an exponent). */
void cli_add_int(cJSON *o, const char *key, int64_t v);

/* Prints v compactly on one line of stdout.  Integral numbers are
 * written as integers (e.g. microsecond times from a server's answer),
 * which changes them into raw items in v. */
void cli_print_json(cJSON *v);

/* Bytes made printable: \\, \xHH for control and non-ASCII bytes that are
 * not valid UTF-8; valid UTF-8 text is kept.  Writes at most cap-1 bytes
 * (NUL-terminated), "…" at the end when cut. */
void cli_escape(char *out, size_t cap, const char *s, size_t n);

/* "2024-05-01T12:00:00.123Z" from microseconds since the epoch. */
void cli_fmt_time(char out[32], int64_t us);
int64_t cli_now_us(void);
void cli_sleep_ms(int ms);

/* A table for terminals: columns padded to their widest cell. */
typedef struct cli_table {
	int ncols, nrows, cap;
	char **cells; /* nrows * ncols, malloc'd */
	bool *right;  /* per column: right-aligned (numbers) */
} cli_table;

void cli_table_init(cli_table *t, int ncols, const char *const *headers,
                    const bool *right);
/* Adds a row of ncols cells (copied; NULL prints as "-"). */
void cli_table_row(cli_table *t, const char *const *cells);
void cli_table_print(cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/* Small helpers for reading server JSON tolerantly. */
const char *cli_jstr(const cJSON *o, const char *key);
int64_t cli_jint(const cJSON *o, const char *key, int64_t dflt);
double cli_jnum(const cJSON *o, const char *key, double dflt);

#endif
