/*
 * cli_util.c — options, engine opening, output helpers shared by the
 * operator subcommands.  The HTTP client lives in cli_http.c.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_util.h"
#include "plugin.h"

/* ---- messages ------------------------------------------------------------ */

static void vmsg(const cli_common *c, const char *fmt, va_list ap)
{
	fprintf(stderr, "cleave %s: ", c && c->cmd ? c->cmd : "");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void cli_errorf(const cli_common *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(c, fmt, ap);
	va_end(ap);
}

int cli_usage_error(const cli_common *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg(c, fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try 'cleave %s --help'.\n", c->cmd);
	return CLI_EXIT_USAGE;
}

/* ---- options ------------------------------------------------------------- */

enum {
	OPT_DATA = 0x1000,
	OPT_SERVER,
	OPT_DOMAIN,
	OPT_WRITE_STORE,
	OPT_READ_STORE,
	OPT_JSON,
	OPT_VERBOSE,
	OPT_AUTH_TOKEN,
	OPT_AUTH_TOKEN_FILE,
	OPT_HTTP_TIMEOUT,
	OPT_HELP = 'h',
};

static const struct option common_opts[] = {
    {"data", required_argument, NULL, OPT_DATA},
    {"server", required_argument, NULL, OPT_SERVER},
    {"domain", required_argument, NULL, OPT_DOMAIN},
    {"write-store", required_argument, NULL, OPT_WRITE_STORE},
    {"read-store", required_argument, NULL, OPT_READ_STORE},
    {"json", no_argument, NULL, OPT_JSON},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"auth-token", required_argument, NULL, OPT_AUTH_TOKEN},
    {"auth-token-file", required_argument, NULL, OPT_AUTH_TOKEN_FILE},
    {"http-timeout", required_argument, NULL, OPT_HTTP_TIMEOUT},
    {"help", no_argument, NULL, OPT_HELP},
};

/* The help of a tool that talks only to a server (spec->server_only). */
static void print_server_help(void)
{
	printf("\nWhere to look:\n"
	       "      --server URL       a running server, http://HOST:PORT "
	       "(env\n"
	       "                         CLEAVE_SERVER; "
	       "default " CLI_DEFAULT_SERVER ")\n"
	       "      --auth-token-file PATH\n"
	       "                         the server's token, from a file (env\n"
	       "                         CLEAVE_AUTH_TOKEN_FILE, or the token "
	       "itself in\n"
	       "                         CLEAVE_AUTH_TOKEN or --auth-token "
	       "TOKEN)\n"
	       "      --http-timeout S   give up on a silent server after S "
	       "seconds (default 30)\n"
	       "  -h, --help             this help\n"
	       "\nExit status: 0 success, 1 failure, 2 usage error.\n");
}

static void print_help(const cli_cmd_spec *s)
{
	printf("Usage: cleave %s [OPTIONS]%s%s\n\n%s\n", s->name,
	       s->synopsis ? " " : "", s->synopsis ? s->synopsis : "",
	       s->description);
	if (s->options_help)
		printf("\nOptions:\n%s", s->options_help);
	if (s->server_only) {
		print_server_help();
		return;
	}
	printf("\nWhere to look (one of):\n"
	       "      --data DIR         the data directory (default "
	       "./cleave-data;\n"
	       "                         env CLEAVE_DATA); works with the "
	       "server stopped\n"
	       "      --server URL       a running server, "
	       "http://HOST:PORT (env CLEAVE_SERVER)\n"
	       "      --auth-token-file PATH\n"
	       "                         the server's admin token, from "
	       "a file (env\n"
	       "                         CLEAVE_AUTH_TOKEN_FILE, or the "
	       "token itself in\n"
	       "                         CLEAVE_AUTH_TOKEN or --auth-token "
	       "TOKEN)\n"
	       "      --http-timeout S   give up on a silent server after S "
	       "seconds (default 30)\n"
	       "\nCommon options:\n"
	       "      --domain NAME|PATH.so\n"
	       "                         the domain of the data directory, "
	       "built in:\n");
	char names[256];
	const char *dflt = cl_domains_default();
	cl_domains_names(names, sizeof(names));
	printf("                         %s%s%s (env CLEAVE_DOMAIN),\n"
	       "                         or a domain plugin: a path with a "
	       "'/' or ending\n"
	       "                         in .so (a shared object exporting "
	       "cleave_domain_entry)\n",
	       names, dflt ? "; default " : "", dflt ? dflt : "");
	printf("      --write-store URI  write store when not DIR/write.db,\n"
	       "                         e.g. postgres://… (env "
	       "CLEAVE_WRITE_STORE)\n"
	       "      --read-store URI   read store when not the embedded "
	       "one\n"
	       "                         (env CLEAVE_READ_STORE)\n"
	       "      --json             JSON lines even on a terminal (the "
	       "default when\n"
	       "                         stdout is a pipe or a file)\n"
	       "      --verbose          the engine's log lines on stderr\n"
	       "  -h, --help             this help\n"
	       "\nExit status: 0 success, 1 failure, 2 usage error.\n");
}

/* The first line of a token file; kept for the life of the process. */
static const char *read_token(const char *path)
{
	static char tok[600];
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *ok = fgets(tok, sizeof(tok), f);
	fclose(f);
	if (!ok)
		return NULL;
	tok[strcspn(tok, "\r\n")] = 0;
	return tok[0] ? tok : NULL;
}

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);
	return v && *v ? v : dflt;
}

int cli_parse(const cli_cmd_spec *spec, cli_common *c, int argc, char **argv,
              int *first_arg)
{
	enum { MAXOPTS = 48 };
	struct option all[MAXOPTS];
	char shortopts[64];
	int n = 0;
	const char *data = NULL, *server = NULL;
	const char *token_file = NULL;

	memset(c, 0, sizeof(*c));
	c->cmd = spec->name;
	c->domain_name = env_or("CLEAVE_DOMAIN", NULL);
	c->write_store = env_or("CLEAVE_WRITE_STORE", NULL);
	c->read_store = env_or("CLEAVE_READ_STORE", NULL);
	c->json = !isatty(STDOUT_FILENO);
	c->http_timeout_ms = 30000;

	for (size_t i = 0; i < sizeof(common_opts) / sizeof(*common_opts); i++)
		all[n++] = common_opts[i];
	for (const struct option *o = spec->opts; o && o->name; o++)
		if (n < MAXOPTS - 1)
			all[n++] = *o;
	memset(&all[n], 0, sizeof(all[n]));
	snprintf(shortopts, sizeof(shortopts), ":h%s",
	         spec->shortopts ? spec->shortopts : "");

	optind = 1;
	opterr = 0;
	for (;;) {
		int idx = -1;
		int o = getopt_long(argc, argv, shortopts, all, &idx);
		if (o == -1)
			break;
		switch (o) {
		case OPT_DATA:
			if (!*optarg)
				return cli_usage_error(c, "--data needs a "
				                          "directory");
			data = optarg;
			break;
		case OPT_SERVER:
			server = optarg;
			break;
		case OPT_DOMAIN:
			c->domain_name = optarg;
			break;
		case OPT_WRITE_STORE:
			c->write_store = optarg;
			break;
		case OPT_READ_STORE:
			c->read_store = optarg;
			break;
		case OPT_JSON:
			c->json = true;
			break;
		case OPT_VERBOSE:
			c->verbose = true;
			break;
		case OPT_AUTH_TOKEN:
			c->auth_token = optarg;
			token_file = NULL;
			break;
		case OPT_AUTH_TOKEN_FILE:
			token_file = optarg;
			c->auth_token = NULL;
			break;
		case OPT_HTTP_TIMEOUT: {
			double s;
			if (!cli_parse_seconds(optarg, &s) || s < 0.001 ||
			    s > 86400)
				return cli_usage_error(c,
				                       "--http-timeout wants "
				                       "seconds, not '%s'",
				                       optarg);
			c->http_timeout_ms = (int)(s * 1000);
			c->http_timeout_set = true;
			break;
		}
		case OPT_HELP:
			print_help(spec);
			return CLI_EXIT_OK;
		case ':':
			return cli_usage_error(c, "option '%s' needs a value",
			                       argv[optind - 1]);
		case '?':
			if (optopt && optopt < 0x100)
				return cli_usage_error(
				    c, "unknown option '-%c'", optopt);
			return cli_usage_error(c, "unknown option '%s'",
			                       argv[optind - 1]);
		default:
			if (!spec->on_opt)
				return cli_usage_error(c, "unknown option");
			{
				int rc = spec->on_opt(spec->arg, o, optarg);
				if (rc == CLI_EXIT_USAGE)
					fprintf(stderr,
					        "Try 'cleave %s --help'.\n",
					        c->cmd);
				if (rc)
					return rc;
			}
		}
	}
	if (data && server)
		return cli_usage_error(c, "give --data or --server, not both");
	if (data && spec->server_only)
		return cli_usage_error(c,
		                       "asks a running server: give --server "
		                       "URL, not --data");
	if (!server && spec->server_only)
		server = env_or("CLEAVE_SERVER", CLI_DEFAULT_SERVER);
	if (!data && !server) {
		/* the environment only fills what the command line left */
		server = env_or("CLEAVE_SERVER", NULL);
		if (!server)
			data = env_or("CLEAVE_DATA", "./cleave-data");
	}
	c->data_dir = data;
	if (server) {
		/* "http://h:p/" and "http://h:p" name the same server */
		static char url[1024];
		snprintf(url, sizeof(url), "%s", server);
		size_t l = strlen(url);
		while (l > 7 && url[l - 1] == '/')
			url[--l] = 0;
		server = url;
	}
	c->server = server;
	if (!c->auth_token && !token_file) {
		c->auth_token = env_or("CLEAVE_AUTH_TOKEN", NULL);
		if (!c->auth_token)
			token_file = env_or("CLEAVE_AUTH_TOKEN_FILE", NULL);
	}
	if (token_file && server && !(c->auth_token = read_token(token_file)))
		return cli_usage_error(c, "cannot read a token from %s",
		                       token_file);
	char uerr[256];
	if (server && !strncmp(server, "https://", 8))
		return cli_usage_error(c, "--server: https is not supported, "
		                          "use http://HOST:PORT");
	if (server && cli_url_check(server, uerr, sizeof(uerr)))
		return cli_usage_error(c,
		                       "--server: %s (want "
		                       "http://HOST:PORT)",
		                       uerr);
	char derr[1024];
	if (cl_domain_resolve(c->domain_name, &c->domain, derr, sizeof(derr)))
		return cli_usage_error(c, "%s", derr);
	int nargs = argc - optind;
	if (nargs < spec->min_args)
		return cli_usage_error(c, "missing argument%s%s",
		                       spec->synopsis ? ": " : "",
		                       spec->synopsis ? spec->synopsis : "");
	if (spec->max_args >= 0 && nargs > spec->max_args)
		return cli_usage_error(c, "unexpected argument '%s'",
		                       argv[optind + spec->max_args]);
	*first_arg = optind;
	return -1;
}

bool cli_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	if (!s || !*s || *s == ' ' || *s == '+')
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

bool cli_parse_seconds(const char *s, double *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !(v >= 0) || v > 1e7)
		return false;
	*out = v;
	return true;
}

/* ---- the engine ---------------------------------------------------------- */

static void engine_log(void *arg, int level, const char *trace_id,
                       const char *command_id, int64_t position,
                       const char *msg)
{
	const cli_common *c = arg;
	static const char *names[] = {"debug", "info", "warning", "error"};
	if (level < CLEAVE_LOG_WARN && !c->verbose)
		return;
	if (level < 0 || level > CLEAVE_LOG_ERROR)
		level = CLEAVE_LOG_ERROR;
	/* one fprintf: lines from engine threads do not interleave */
	fprintf(stderr, "cleave %s: engine %s: %s\n", c->cmd, names[level],
	        msg);
}

int cli_engine_open(const cli_common *c, bool read_only, cleave_engine **out)
{
	*out = NULL;
	const cleave_domain *d = c->domain;
	cleave_config cfg = {0};
	cfg.domain = d;
	cfg.data_dir = c->data_dir;
	cfg.write_store = c->write_store;
	cfg.read_store = c->read_store;
	cfg.read_only = true;
	cfg.log = engine_log;
	cfg.log_arg = (void *)c;
	/* A writable open creates what is missing: a data directory from a
	 * typo, or another domain's tables and read models in this one.
	 * An operator's tool must only work on what a server made, so it
	 * opens read-only first: that fails on a missing directory and on
	 * a domain whose projections have no copy here. */
	int rc = cleave_engine_open(&cfg, out);
	if (rc == 0 && !read_only) {
		cleave_engine_close(*out);
		*out = NULL;
		cfg.read_only = false;
		rc = cleave_engine_open(&cfg, out);
	}
	if (rc == 0)
		return 0;
	const char *msg = cleave_errmsg();
	cli_errorf(c, "cannot open %s: %s", c->data_dir,
	           *msg ? msg : cleave_strerror(rc));
	if (rc == CLEAVE_EBUSY && !strstr(msg, "--server"))
		fprintf(stderr,
		        "hint: a running server holds the data directory; "
		        "ask it instead with\n"
		        "      cleave %s --server http://HOST:PORT …\n",
		        c->cmd);
	else if (rc == CLEAVE_ENOTFOUND && strstr(msg, "no copy"))
		fprintf(stderr,
		        "hint: is this a data directory of domain '%s'? Give "
		        "the server's --domain;\n"
		        "      a projection new in this build gets its copy "
		        "when 'cleave serve' opens\n"
		        "      the directory\n",
		        d->name);
	else if (rc == CLEAVE_ENOTFOUND)
		fprintf(stderr, "hint: give the server's data directory with "
		                "--data DIR, or a running server with "
		                "--server URL\n");
	return CLI_EXIT_FAIL;
}

/* ---- signals and output -------------------------------------------------- */

volatile sig_atomic_t cli_interrupted;
static int out_errno; /* first error writing stdout, 0 if none */

static void on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

void cli_signals_init(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	/* no SA_RESTART: a sleep or poll returns early; SA_RESETHAND: a
	 * second Ctrl-C kills a stuck process the ordinary way */
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void note_out_error(void)
{
	if (!out_errno)
		out_errno = errno ? errno : EIO;
}

bool cli_out_broken(void)
{
	return out_errno != 0 || ferror(stdout);
}

bool cli_out_gone(void)
{
	if (cli_out_broken())
		return true;
	struct pollfd p = {STDOUT_FILENO, POLLOUT, 0};
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR)) {
		out_errno = EPIPE;
		return true;
	}
	return false;
}

int cli_finish(const cli_common *c, int rc)
{
	if (fflush(stdout) != 0)
		note_out_error();
	if (!cli_out_broken())
		return rc;
	if (!out_errno) {
		/* the failed write's errno is gone: a pipe without a reader
		 * still shows POLLERR on its write end */
		struct pollfd p = {STDOUT_FILENO, POLLOUT, 0};
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLERR))
			out_errno = EPIPE;
	}
	if (out_errno == EPIPE)
		return rc; /* the reader has gone (head, jq -e, …): fine */
	cli_errorf(c, "writing output: %s",
	           strerror(out_errno ? out_errno : EIO));
	return CLI_EXIT_FAIL;
}

/* cJSON prints numbers past the int range with %g ("1.7e+15"): turn
 * exact integers into raw text first. */
static void fix_ints(cJSON *v)
{
	for (; v; v = v->next) {
		if (cJSON_IsNumber(v)) {
			double d = v->valuedouble;
			if (d == (double)(int64_t)d &&
			    d > -9007199254740992.0 && d < 9007199254740992.0 &&
			    (d > 2147483647.0 || d < -2147483648.0)) {
				char s[24];
				snprintf(s, sizeof(s), "%lld", (long long)d);
				char *r = strdup(s);
				if (r) {
					v->type = cJSON_Raw;
					v->valuestring = r;
				}
			}
		} else if (v->child) {
			fix_ints(v->child);
		}
	}
}

void cli_print_json(cJSON *v)
{
	if (v && v->child)
		fix_ints(v->child);
	char *s = cJSON_PrintUnformatted(v);
	if (!s) {
		fprintf(stderr, "cleave: out of memory\n");
		return;
	}
	if (fputs(s, stdout) == EOF || putchar('\n') == EOF)
		note_out_error();
	free(s);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned min;
	unsigned cp;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0) {
		len = 2, min = 0x80, cp = s[0] & 0x1F;
	} else if ((s[0] & 0xF0) == 0xE0) {
		len = 3, min = 0x800, cp = s[0] & 0x0F;
	} else if ((s[0] & 0xF8) == 0xF0) {
		len = 4, min = 0x10000, cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

void cli_escape(char *out, size_t cap, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0, i = 0;
	if (!cap)
		return;
	while (i < n) {
		char tmp[8];
		size_t tl;
		size_t seq = utf8_seq(u + i, n - i);
		if (u[i] == '\\') {
			memcpy(tmp, "\\\\", 2);
			tl = 2;
			seq = 1;
		} else if (seq == 0 || u[i] < 0x20 || u[i] == 0x7F) {
			snprintf(tmp, sizeof(tmp), "\\x%02x", u[i]);
			tl = 4;
			seq = 1;
		} else {
			memcpy(tmp, u + i, seq);
			tl = seq;
		}
		if (o + tl + 4 > cap) { /* room for "…" and NUL */
			memcpy(out + o, "\xE2\x80\xA6", 3);
			o += 3;
			break;
		}
		memcpy(out + o, tmp, tl);
		o += tl;
		i += seq;
	}
	out[o] = 0;
}

void cli_fmt_time(char out[32], int64_t us)
{
	time_t s = (time_t)(us / 1000000);
	struct tm tm;
	if (us <= 0 || !gmtime_r(&s, &tm)) {
		snprintf(out, 32, "-");
		return;
	}
	char d[24];
	strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 32, "%s.%03dZ", d, (int)(us % 1000000 / 1000));
}

int64_t cli_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cli_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL); /* a signal ends it early, on purpose */
}

/* ---- tables -------------------------------------------------------------- */

void cli_table_init(cli_table *t, int ncols, const char *const *headers,
                    const bool *right)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	t->right = calloc((size_t)ncols, sizeof(bool));
	if (t->right && right)
		memcpy(t->right, right, (size_t)ncols * sizeof(bool));
	cli_table_row(t, headers);
}

void cli_table_row(cli_table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **p = realloc(t->cells,
		                   (size_t)cap * (size_t)t->ncols * sizeof(*p));
		if (!p)
			return;
		t->cells = p;
		t->cap = cap;
	}
	char **row = t->cells + (size_t)t->nrows * (size_t)t->ncols;
	for (int i = 0; i < t->ncols; i++)
		row[i] = strdup(cells[i] ? cells[i] : "-");
	t->nrows++;
}

/* Display width: code points, which is right for the text we print. */
static int width(const char *s)
{
	int w = 0;
	for (; s && *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			w++;
	return w;
}

void cli_table_print(cli_table *t, FILE *f)
{
	int *w = calloc((size_t)t->ncols, sizeof(int));
	if (!w)
		return;
	for (int r = 0; r < t->nrows; r++)
		for (int i = 0; i < t->ncols; i++) {
			int x = width(t->cells[r * t->ncols + i]);
			if (x > w[i])
				w[i] = x;
		}
	for (int r = 0; r < t->nrows; r++) {
		for (int i = 0; i < t->ncols; i++) {
			const char *s = t->cells[r * t->ncols + i];
			const char *cell = s ? s : "";
			int pad = w[i] - width(cell);
			bool last = i == t->ncols - 1;
			if (t->right && t->right[i])
				fprintf(f, "%*s%s", pad, "", cell);
			else
				fprintf(f, "%s%*s", cell, last ? 0 : pad, "");
			if (!last)
				fputs("  ", f);
		}
		if (fputc('\n', f) == EOF || ferror(f))
			note_out_error();
	}
	free(w);
}

void cli_table_free(cli_table *t)
{
	for (int i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->right);
	memset(t, 0, sizeof(*t));
}

/* ---- JSON ---------------------------------------------------------------- */

void cli_add_int(cJSON *o, const char *key, int64_t v)
{
	char s[24];
	snprintf(s, sizeof(s), "%lld", (long long)v);
	cJSON_AddItemToObject(o, key, cJSON_CreateRaw(s));
}

const char *cli_jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int64_t cli_jint(const cJSON *o, const char *key, int64_t dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

double cli_jnum(const cJSON *o, const char *key, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}
