/*
 * serve.c — `cleave serve`: flags (server/config.c), then the server.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cleave.h"
#include "cli.h"
#include "config.h"
#include "server.h"

static void usage(FILE *f)
{
	fprintf(f,
	        "Usage: cleave serve [OPTIONS]\n\n"
	        "Serves a domain (the shop by default) over HTTP/1.1: commands "
	        "in,\nevents logged, read models out.  With no options it "
	        "listens on\n127.0.0.1:8080 and keeps its data in "
	        "./cleave-data.\n\n"
	        "Try it:\n"
	        "  cleave serve &\n"
	        "  curl -s localhost:8080/health\n"
	        "  curl -s localhost:8080/commands/AddProduct \\\n"
	        "    --json '{\"productId\":\"p1\",\"name\":\"Mug\",\"category\":"
	        "\"kitchen\",\"price_cents\":1200,\"stock\":5}'\n"
	        "  curl -s 'localhost:8080/queries/product?productId=p1"
	        "&min_position=1'\n\n"
	        "Options (each also from the environment variable shown; a "
	        "flag wins):\n");
	cl_server_config_usage(f, CL_CFG_SERVE);
	fprintf(f, "\nStop it with Ctrl-C or SIGTERM: it finishes the "
	           "commands in flight first.\n"
	           "Routes, metrics and logs: docs/http-api.md, "
	           "docs/operations.md.\n");
}

int cl_cmd_serve(int argc, char **argv)
{
	cl_server_config cfg;
	int rc = cl_server_config_init(&cfg, CL_CFG_SERVE);
	if (rc == CL_CFG_RUN)
		rc = cl_server_config_parse(&cfg, CL_CFG_SERVE, argc, argv);
	if (rc == CL_CFG_RUN && cfg.nargs) {
		fprintf(stderr,
		        "cleave serve: unexpected argument '%s' (try "
		        "--help)\n",
		        cfg.args[0]);
		rc = CL_CFG_USAGE;
	}
	if (rc != CL_CFG_RUN) {
		bool help = rc == CL_CFG_EXIT;
		for (int i = 1; help && i < argc; i++)
			if (!strcmp(argv[i], "--version") ||
			    !strcmp(argv[i], "-V"))
				help = false;
		if (help)
			usage(stdout);
		cl_server_config_free(&cfg);
		return rc == CL_CFG_EXIT ? 0 : 2;
	}
	rc = cl_server_run(&cfg);
	cl_server_config_free(&cfg);
	return rc;
}
