/*
 * serve.c — `cleave serve`: flags (server/config.c), then the server.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cleave.h"
#include "cli.h"
#include "config.h"
#include "plugin.h"
#include "server.h"

static void usage(FILE *f)
{
	const char *dflt = cl_domains_default();
	char names[256];
	cl_domains_names(names, sizeof(names));
	fprintf(f,
	        "Usage: cleave serve [OPTIONS]\n\n"
	        "Serves a domain (%s%s by default) over HTTP/1.1: commands "
	        "in,\nevents logged, read models out.  With no options it "
	        "listens on\n127.0.0.1:8080 and keeps its data in "
	        "./cleave-data.\n\n",
	        dflt ? "the " : "none built in: give --domain PATH.so",
	        dflt ? dflt : "");
	if (dflt && !strcmp(dflt, "shop"))
		fprintf(f,
		        "Try it:\n"
		        "  cleave serve &\n"
		        "  curl -s localhost:8080/health\n"
		        "  curl -s localhost:8080/commands/AddProduct \\\n"
		        "    --json '{\"productId\":\"p1\",\"name\":\"Mug\","
		        "\"category\":\"kitchen\",\"price_cents\":1200,"
		        "\"stock\":5}'\n"
		        "  curl -s 'localhost:8080/queries/product?productId=p1"
		        "&min_position=1'\n\n");
	fprintf(f, "Options (each also from the environment variable shown; a "
	           "flag wins):\n");
	cl_server_config_usage(f, CL_CFG_SERVE);
	fprintf(f,
	        "\nDomains built in: %s%s.\n"
	        "A --domain value with a '/' or ending in .so is the path of "
	        "a domain plugin,\na shared object that exports "
	        "cleave_domain_entry (docs/writing-a-domain.md):\n"
	        "  cleave serve --domain ./notes.so\n",
	        names, dflt ? " (the first is the default)" : "");
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
	char err[1024];
	if (cl_domain_resolve(cfg.domain, &cfg.dom, err, sizeof(err))) {
		fprintf(stderr, "cleave serve: %s\n", err);
		cl_server_config_free(&cfg);
		return 2;
	}
	rc = cl_server_run(&cfg);
	cl_server_config_free(&cfg);
	return rc;
}
