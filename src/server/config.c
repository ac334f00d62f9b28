/*
 * config.c — the one flag table of `cleave serve` and the shared flags of
 * the other subcommands: name, environment variable, type, default, help.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "guard.h"
#include "log.h"

typedef enum flag_type {
	F_STR,     /* const char * */
	F_INT,     /* int in [min,max] */
	F_SIZE,    /* size_t bytes, suffixes k/K/KiB, m/M/MiB, g/G/GiB */
	F_BOOL,    /* bool; env accepts 1/0/true/false/yes/no */
	F_DUR,     /* cleave_durability: fsync|os */
	F_LEVEL,   /* log level */
	F_HOSTS,   /* cl_cfg_list of host names (guard.h's normal form) */
	F_ORIGINS, /* cl_cfg_list of origins, "scheme://host:port" */
} flag_type;

typedef struct flag {
	const char *name; /* long option without "--" */
	const char *env;  /* CLEAVE_… */
	flag_type type;
	size_t off;
	unsigned scope;
	long long min, max;
	const char *metavar;
	const char *help;
	const char *def; /* shown in --help */
} flag;

#define OFF(f) offsetof(cl_server_config, f)
#define S      CL_CFG_SERVE
#define C      CL_CFG_CLIENT

static const flag flags[] = {
    {"data", "CLEAVE_DATA", F_STR, OFF(data_dir), S | C, 0, 0, "DIR",
     "data directory (write.db and read/ live here)", "./cleave-data"},
    {"domain", "CLEAVE_DOMAIN", F_STR, OFF(domain), S | C, 0, 0, "NAME|PATH.so",
     "the domain to serve: a built-in one by name (listed below), or a "
     "plugin, a shared object, by path (with a '/' or ending in .so)",
     NULL},
    {"server", "CLEAVE_SERVER", F_STR, OFF(server_url), C, 0, 0, "URL",
     "talk to a running server instead of --data", NULL},
    {"listen", "CLEAVE_LISTEN", F_STR, OFF(listen), S, 0, 0, "HOST:PORT",
     "address to serve HTTP on; port 0 picks a free one", "127.0.0.1:8080"},
    {"write-store", "CLEAVE_WRITE_STORE", F_STR, OFF(write_store), S, 0, 0,
     "URI",
     "write store: sqlite (DIR/write.db), postgres://…, or "
     "sqlite:WRITER_DIR for a query node",
     "sqlite"},
    {"read-store", "CLEAVE_READ_STORE", F_STR, OFF(read_store), S, 0, 0, "URI",
     "read stores: embedded (LMDB + SQLite in DIR/read), or "
     "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][/PREFIX] for the key/value "
     "read models",
     "embedded"},
    {"durability", "CLEAVE_DURABILITY", F_DUR, OFF(durability), S, 0, 0, "MODE",
     "fsync (ack after fdatasync) or os (ack after write)", "fsync"},
    {"query-node", "CLEAVE_QUERY_NODE", F_BOOL, OFF(query_node), S, 0, 0, NULL,
     "serve queries beside a writer sharing the log (--write-store "
     "sqlite:DIR or postgres://…) and the Redis read store",
     NULL},
    {"advertise-url", "CLEAVE_ADVERTISE_URL", F_STR, OFF(advertise_url), S, 0,
     0, "URL",
     "a writer: the URL clients reach it at, which query nodes name in "
     "their 421 to commands",
     NULL},
    {"read-sync", "CLEAVE_READ_SYNC", F_BOOL, OFF(read_sync), S, 0, 0, NULL,
     "fsync every read-model commit (else: rebuilt after a machine crash)",
     NULL},
    {"lmdb-map-size", "CLEAVE_LMDB_MAP_SIZE", F_SIZE, OFF(lmdb_map_size), S,
     1LL << 20, 1LL << 42, "BYTES",
     "largest size of each LMDB read model (address space, not disk)", "64GiB"},
    {"http-threads", "CLEAVE_HTTP_THREADS", F_INT, OFF(http_threads), S, 1, 256,
     "N", "HTTP worker threads (poll() each)", "2"},
    {"max-body", "CLEAVE_MAX_BODY", F_SIZE, OFF(max_body), S, 2, 1LL << 30,
     "BYTES", "largest command body (413 beyond)", "1MiB"},
    {"max-header", "CLEAVE_MAX_HEADER", F_SIZE, OFF(max_header), S, 1024,
     1 << 20, "BYTES", "largest request line + headers (431 beyond)", "16KiB"},
    {"max-connections", "CLEAVE_MAX_CONNECTIONS", F_INT, OFF(max_connections),
     S, 1, 1000000, "N", "open HTTP connections at most", "16384"},
    {"max-subscribers", "CLEAVE_MAX_SUBSCRIBERS", F_INT,
     OFF(max_subscribers), S, 0, 1000000, "N",
     "live-query and dashboard streams at most (503 beyond; 0: none)",
     "10000"},
    {"live-threads", "CLEAVE_LIVE_THREADS", F_INT, OFF(live_threads), S, 1,
     64, "N", "threads that re-run woken live queries", "1"},
    {"query-threads", "CLEAVE_QUERY_THREADS", F_INT, OFF(query_threads), S,
     1, 256, "N",
     "threads that run queries on a network read store (Redis), off the "
     "HTTP threads",
     "4"},
    {"idle-timeout", "CLEAVE_IDLE_TIMEOUT", F_INT, OFF(idle_timeout), S, 1,
     86400, "SECONDS", "close a connection idle (or trickling) this long",
     "30"},
    {"queue-max", "CLEAVE_QUEUE_MAX", F_INT, OFF(queue_max), S, 1, 1 << 24, "N",
     "queued commands at most (503 beyond)", "65536"},
    {"batch-max", "CLEAVE_BATCH_MAX", F_INT, OFF(batch_max), S, 1, 1 << 20, "N",
     "commands per group commit at most", "4096"},
    {"wait-max-ms", "CLEAVE_WAIT_MAX_MS", F_INT, OFF(wait_max_ms), S, 0, 10000,
     "MS", "cap on a query's wait_ms (larger ones are clamped)", "10000"},
    {"shutdown-grace-ms", "CLEAVE_SHUTDOWN_GRACE_MS", F_INT,
     OFF(shutdown_grace_ms), S, 0, 600000, "MS",
     "on SIGTERM, time given to answer requests in flight", "10000"},
    {"log-level", "CLEAVE_LOG_LEVEL", F_LEVEL, OFF(log_level), S, 0, 0, "LEVEL",
     "debug, info, warn or error", "info"},
    {"port-file", "CLEAVE_PORT_FILE", F_STR, OFF(port_file), S, 0, 0, "PATH",
     "write the bound port here once listening", NULL},
    {"auth-token", "CLEAVE_AUTH_TOKEN", F_STR, OFF(auth_token), S, 0, 0,
     "TOKEN", "require 'Authorization: Bearer TOKEN' on writes", NULL},
    {"auth-token-file", "CLEAVE_AUTH_TOKEN_FILE", F_STR, OFF(auth_token_file),
     S, 0, 0, "PATH", "read the token from a file (first line)", NULL},
    {"auth-queries", "CLEAVE_AUTH_QUERIES", F_BOOL, OFF(auth_queries), S, 0, 0,
     NULL, "require the token on queries too", NULL},
    {"allow-host", "CLEAVE_ALLOW_HOST", F_HOSTS, OFF(allow_hosts), S, 0, 0,
     "NAME",
     "also answer requests whose Host is NAME (repeat, or a "
     "comma-separated list); loopback names always",
     NULL},
    {"allow-origin", "CLEAVE_ALLOW_ORIGIN", F_ORIGINS, OFF(allow_origins), S, 0,
     0, "ORIGIN",
     "also accept requests from web pages of ORIGIN, "
     "scheme://host[:port] (repeat, or a comma-separated list)",
     NULL},
    {NULL, NULL, 0, 0, 0, 0, 0, NULL, NULL, NULL},
};

#undef S
#undef C

static int parse_ll(const char *v, long long *out)
{
	if (!v || !*v)
		return -1;
	errno = 0;
	char *end;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end)
		return -1;
	*out = x;
	return 0;
}

static int parse_size(const char *v, long long *out)
{
	if (!v || !isdigit((unsigned char)*v))
		return -1;
	errno = 0;
	char *end;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno)
		return -1;
	unsigned long long mul = 1;
	if (*end) {
		static const struct {
			const char *s;
			unsigned long long m;
		} units[] = {
		    {"k", 1024},      {"K", 1024},      {"KiB", 1024},
		    {"KB", 1024},     {"m", 1 << 20},   {"M", 1 << 20},
		    {"MiB", 1 << 20}, {"MB", 1 << 20},  {"g", 1 << 30},
		    {"G", 1 << 30},   {"GiB", 1 << 30}, {"GB", 1 << 30},
		    {"B", 1}};
		size_t i;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (!strcmp(end, units[i].s))
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return -1;
		mul = units[i].m;
	}
	if (x > (unsigned long long)LLONG_MAX / mul)
		return -1;
	*out = (long long)(x * mul);
	return 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off", ""};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	return -1;
}

static void list_clear(cl_cfg_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->item[i]);
	l->n = 0;
}

/* Adds the comma-separated items of v to l, normalised (guard.h).  The
 * first value from the command line replaces what the environment gave. */
static int set_list(cl_cfg_list *l, const flag *f, const char *v,
                    const char *from, bool env)
{
	if (!env && l->from_env)
		list_clear(l);
	l->from_env = env;
	if (!v || !*v) {
		fprintf(stderr, "cleave: %s: --%s needs a value\n", from,
		        f->name);
		return CL_CFG_USAGE;
	}
	for (const char *p = v; *p;) {
		size_t n = strcspn(p, ",");
		const char *item = p;
		p += n + (p[n] == ',');
		while (n && (*item == ' ' || *item == '\t')) {
			item++;
			n--;
		}
		while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
			n--;
		if (!n)
			continue;
		char norm[CL_HOST_MAX + 64];
		int bad;
		if (f->type == F_HOSTS) {
			bad = cl_host_name(item, n, norm, sizeof(norm));
		} else {
			cl_origin o;
			bad = cl_origin_parse(item, n, &o);
			if (!bad)
				cl_origin_format(&o, norm, sizeof(norm));
		}
		if (bad) {
			fprintf(stderr, "cleave: %s: --%s: '%.*s' is not %s\n",
			        from, f->name, (int)(n > 300 ? 300 : n), item,
			        f->type == F_HOSTS
			            ? "a host name or IP address (no port)"
			            : "an origin, scheme://host[:port] (no "
			              "path, no trailing '/'; 'null' is "
			              "never allowed)");
			return CL_CFG_USAGE;
		}
		if (l->n == CL_CFG_LIST_MAX) {
			fprintf(stderr, "cleave: %s: --%s: more than %d\n",
			        from, f->name, CL_CFG_LIST_MAX);
			return CL_CFG_USAGE;
		}
		if (!(l->item[l->n] = strdup(norm)))
			return CL_CFG_USAGE;
		l->n++;
	}
	return CL_CFG_RUN;
}

/* Sets flag f from text v; `from` names the source for messages, env
 * says whether it is the environment. */
static int set_flag(cl_server_config *c, const flag *f, const char *v,
                    const char *from, bool env)
{
	char *base = (char *)c;
	long long x;
	switch (f->type) {
	case F_STR:
		if (!v || !*v) {
			fprintf(stderr, "cleave: %s: --%s needs a value\n",
			        from, f->name);
			return CL_CFG_USAGE;
		}
		*(const char **)(base + f->off) = v;
		return CL_CFG_RUN;
	case F_INT:
		if (parse_ll(v, &x) || x < f->min || x > f->max) {
			fprintf(stderr,
			        "cleave: %s: --%s must be an integer from "
			        "%lld to %lld, not '%s'\n",
			        from, f->name, f->min, f->max, v ? v : "");
			return CL_CFG_USAGE;
		}
		*(int *)(base + f->off) = (int)x;
		return CL_CFG_RUN;
	case F_SIZE:
		if (parse_size(v, &x) || x < f->min || x > f->max) {
			fprintf(stderr,
			        "cleave: %s: --%s must be a size in bytes "
			        "from %lld to %lld (suffixes KiB, MiB, GiB), "
			        "not '%s'\n",
			        from, f->name, f->min, f->max, v ? v : "");
			return CL_CFG_USAGE;
		}
		*(size_t *)(base + f->off) = (size_t)x;
		return CL_CFG_RUN;
	case F_BOOL: {
		bool b;
		if (!v)
			b = true;
		else if (parse_bool(v, &b)) {
			fprintf(stderr,
			        "cleave: %s: --%s takes true or false, not "
			        "'%s'\n",
			        from, f->name, v);
			return CL_CFG_USAGE;
		}
		*(bool *)(base + f->off) = b;
		return CL_CFG_RUN;
	}
	case F_DUR:
		if (v && !strcmp(v, "fsync"))
			*(cleave_durability *)(base + f->off) =
			    CLEAVE_DURABILITY_FSYNC;
		else if (v && !strcmp(v, "os"))
			*(cleave_durability *)(base + f->off) =
			    CLEAVE_DURABILITY_OS;
		else {
			fprintf(stderr,
			        "cleave: %s: --%s is fsync or os, not '%s'\n",
			        from, f->name, v ? v : "");
			return CL_CFG_USAGE;
		}
		return CL_CFG_RUN;
	case F_LEVEL: {
		int l = v ? cl_log_level_parse(v) : -1;
		if (l < 0) {
			fprintf(stderr,
			        "cleave: %s: --%s is debug, info, warn or "
			        "error, not '%s'\n",
			        from, f->name, v ? v : "");
			return CL_CFG_USAGE;
		}
		*(int *)(base + f->off) = l;
		return CL_CFG_RUN;
	}
	case F_HOSTS:
	case F_ORIGINS:
		return set_list((cl_cfg_list *)(base + f->off), f, v, from,
		                env);
	}
	return CL_CFG_USAGE;
}

int cl_server_config_init(cl_server_config *c, unsigned scope)
{
	memset(c, 0, sizeof(*c));
	c->data_dir = "./cleave-data";
	c->listen = "127.0.0.1:8080";
	c->durability = CLEAVE_DURABILITY_FSYNC;
	c->http_threads = 2;
	c->max_body = 1 << 20;
	c->max_header = 16 << 10;
	c->max_connections = 16384;
	c->max_subscribers = 10000;
	c->live_threads = 1;
	c->query_threads = 4;
	c->idle_timeout = 30;
	c->queue_max = 65536;
	c->lmdb_map_size = (size_t)64 << 30;
	c->batch_max = 4096;
	c->wait_max_ms = 10000;
	c->shutdown_grace_ms = 10000;
	c->log_level = CLEAVE_LOG_INFO;
	for (const flag *f = flags; f->name; f++) {
		if (!(f->scope & scope))
			continue;
		const char *v = getenv(f->env);
		if (!v || (!*v && f->type != F_BOOL))
			continue;
		char from[64];
		snprintf(from, sizeof(from), "environment %s", f->env);
		if (set_flag(c, f, v, from, true))
			return CL_CFG_USAGE;
	}
	return CL_CFG_RUN;
}

static const flag *find_flag(const char *name, size_t n, unsigned scope)
{
	for (const flag *f = flags; f->name; f++)
		if ((f->scope & scope) && strlen(f->name) == n &&
		    !strncmp(f->name, name, n))
			return f;
	return NULL;
}

void cl_server_config_usage(FILE *out, unsigned scope)
{
	for (const flag *f = flags; f->name; f++) {
		if (!(f->scope & scope))
			continue;
		char left[64];
		snprintf(left, sizeof(left), "--%s%s%s", f->name,
		         f->metavar ? " " : "", f->metavar ? f->metavar : "");
		fprintf(out, "  %-26s %s\n", left, f->help);
		fprintf(out, "  %-26s env %s", "", f->env);
		if (f->def)
			fprintf(out, ", default %s", f->def);
		fputc('\n', out);
	}
	fprintf(out, "  %-26s %s\n", "-h, --help", "show this help");
	fprintf(out, "  %-26s %s\n", "--version", "print the version");
}

static int load_token_file(cl_server_config *c)
{
	FILE *f = fopen(c->auth_token_file, "r");
	if (!f) {
		fprintf(stderr, "cleave: --auth-token-file %s: %s\n",
		        c->auth_token_file, strerror(errno));
		return CL_CFG_USAGE;
	}
	char line[1024];
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	line[strcspn(line, "\r\n")] = 0;
	if (!line[0]) {
		fprintf(stderr, "cleave: --auth-token-file %s is empty\n",
		        c->auth_token_file);
		return CL_CFG_USAGE;
	}
	free(c->owned_token);
	c->owned_token = strdup(line);
	if (!c->owned_token)
		return CL_CFG_USAGE;
	c->auth_token = c->owned_token;
	return CL_CFG_RUN;
}

int cl_server_config_parse(cl_server_config *c, unsigned scope, int argc,
                           char **argv)
{
	const char *cmd = argc > 0 ? argv[0] : "cleave";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			return CL_CFG_EXIT;
		if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
			printf("cleave %s\n", CLEAVE_VERSION);
			return CL_CFG_EXIT;
		}
		if (!strcmp(a, "--")) {
			for (i++; i < argc; i++) {
				if (c->nargs == CL_CFG_MAX_ARGS)
					goto too_many;
				c->args[c->nargs++] = argv[i];
			}
			break;
		}
		if (strncmp(a, "--", 2)) {
			if (a[0] == '-' && a[1]) {
				fprintf(stderr,
				        "cleave %s: unknown option '%s' (try "
				        "--help)\n",
				        cmd, a);
				return CL_CFG_USAGE;
			}
			if (c->nargs == CL_CFG_MAX_ARGS)
				goto too_many;
			c->args[c->nargs++] = a;
			continue;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		size_t n = eq ? (size_t)(eq - name) : strlen(name);
		const flag *f = find_flag(name, n, scope);
		if (!f) {
			fprintf(stderr,
			        "cleave %s: unknown option '--%.*s' (try "
			        "--help)\n",
			        cmd, (int)n, name);
			return CL_CFG_USAGE;
		}
		const char *v = eq ? eq + 1 : NULL;
		if (!v && f->type != F_BOOL) {
			if (i + 1 >= argc) {
				fprintf(stderr,
				        "cleave %s: --%s needs a value\n", cmd,
				        f->name);
				return CL_CFG_USAGE;
			}
			v = argv[++i];
		}
		int rc = set_flag(c, f, v, cmd, false);
		if (rc)
			return rc;
	}
	if ((scope & CL_CFG_SERVE) && c->auth_token_file)
		return load_token_file(c);
	return CL_CFG_RUN;
too_many:
	fprintf(stderr, "cleave %s: too many arguments (max %d)\n", cmd,
	        CL_CFG_MAX_ARGS);
	return CL_CFG_USAGE;
}

void cl_server_config_free(cl_server_config *c)
{
	free(c->owned_token);
	c->owned_token = NULL;
	list_clear(&c->allow_hosts);
	list_clear(&c->allow_origins);
}
