/*
 * config.h — the flags of `cleave serve` (and the few the other
 * subcommands share), each also read from a CLEAVE_<UPPER_SNAKE>
 * environment variable; a flag on the command line wins over the
 * environment, which wins over the default.  One table in config.c.
 *
 * Strings in cl_server_config are borrowed from argv or the environment
 * (or owned by the struct when read from a file); they live until
 * cl_server_config_free().
 */
#ifndef CL_SERVER_CONFIG_H
#define CL_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cleave.h"

/* Which program reads a flag. */
enum {
	CL_CFG_SERVE = 1,  /* cleave serve */
	CL_CFG_CLIENT = 2, /* status, rebuild, verify, events, trace */
};

/* What cl_server_config_parse() tells its caller to do. */
enum {
	CL_CFG_RUN = 0,   /* go on */
	CL_CFG_EXIT = 1,  /* --help or --version was printed: exit 0 */
	CL_CFG_USAGE = 2, /* usage error printed on stderr: exit 2 */
};

#define CL_CFG_MAX_ARGS 16
#define CL_CFG_LIST_MAX 32 /* names in --allow-host, --allow-origin */

/* A flag that may be repeated, each value a comma-separated list: its
 * items, normalised (see guard.c) and owned.  The environment's list is
 * replaced, not extended, by the command line's. */
typedef struct cl_cfg_list {
	char *item[CL_CFG_LIST_MAX];
	int n;
	bool from_env;
} cl_cfg_list;

typedef struct cl_server_config {
	/* shared by every subcommand */
	const char *data_dir;   /* --data, default "./cleave-data" */
	const char *domain;     /* --domain NAME or PATH.so; NULL: the
	                           program's first built-in domain */
	const char *server_url; /* --server URL (client scope), or NULL */
	/* serve */
	const char *listen;      /* --listen HOST:PORT, "127.0.0.1:8080" */
	const char *write_store; /* --write-store, NULL = embedded SQLite */
	const char *read_store;  /* --read-store, NULL = embedded */
	cleave_durability durability; /* --durability fsync|os */
	int http_threads;             /* --http-threads, 2 */
	size_t max_body;              /* --max-body bytes, 1 MiB */
	size_t max_header;            /* --max-header bytes, 32 KiB */
	int max_connections;          /* --max-connections, 16384 */
	int max_subscribers;          /* --max-subscribers, 10000 */
	int live_threads;             /* --live-threads, 1 */
	int query_threads;            /* --query-threads, 4 */
	int idle_timeout;             /* --idle-timeout seconds, 30 */
	int queue_max;                /* --queue-max, 65536 */
	size_t lmdb_map_size;         /* --lmdb-map-size, 64 GiB */
	bool read_sync;               /* --read-sync */
	bool query_node;              /* --query-node */
	const char *advertise_url;    /* --advertise-url */
	int batch_max;                /* --batch-max, 4096 */
	int wait_max_ms;              /* --wait-max-ms, 10000 */
	int shutdown_grace_ms;        /* --shutdown-grace-ms, 10000 */
	int log_level;                /* --log-level, CLEAVE_LOG_INFO */
	const char *port_file;        /* --port-file PATH, or NULL */
	const char *auth_token;       /* --auth-token or --auth-token-file */
	bool auth_queries;            /* --auth-queries */
	cl_cfg_list allow_hosts;      /* --allow-host NAME,… */
	cl_cfg_list allow_origins;    /* --allow-origin ORIGIN,… */
	/* positional arguments (client scope), borrowed from argv */
	const char *args[CL_CFG_MAX_ARGS];
	int nargs;
	/* set by the caller before cl_server_run(): the domain --domain
	 * names (plugin.h), borrowed for the life of the process */
	const cleave_domain *dom;
	/* private */
	char *owned_token;
	const char *auth_token_file;
} cl_server_config;

/* Fills in the defaults, then the CLEAVE_* environment variables of the
 * flags in `scope`.  Returns CL_CFG_RUN or CL_CFG_USAGE (a bad value in the
 * environment, named on stderr). */
int cl_server_config_init(cl_server_config *c, unsigned scope);
/* Parses argv[1..argc) (argv[0] is the subcommand name, used in messages).
 * Accepts --flag VALUE and --flag=VALUE; --help, -h and --version.
 * Returns CL_CFG_RUN, CL_CFG_EXIT or CL_CFG_USAGE. */
int cl_server_config_parse(cl_server_config *c, unsigned scope, int argc,
                           char **argv);
/* Prints the flag table of `scope` (with environment names and defaults). */
void cl_server_config_usage(FILE *f, unsigned scope);
void cl_server_config_free(cl_server_config *c);

#endif
