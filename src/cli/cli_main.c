/*
 * cli_main.c — cleave_main(): the `cleave` program, the server and the
 * operator's tools, for any set of built-in domains.  The cleave binary
 * is a main() that calls it with the shop and the bank (main.c); a
 * program of one's own calls it with its own domains (cleave.h).
 * Subcommands are a table, not a chain of ifs.
 */
#include <stdio.h>
#include <string.h>

#include "cleave.h"
#include "cli.h"
#include "plugin.h"

static const cl_subcommand subcommands[] = {
    {"serve", cl_cmd_serve, "serve a domain over HTTP (the default)"},
    {"status", cl_cmd_status, "projections: state, position, lag"},
    {"rebuild", cl_cmd_rebuild, "rebuild a projection blue-green"},
    {"verify", cl_cmd_verify, "compare a projection with a fresh rebuild"},
    {"events", cl_cmd_events, "print the log, one JSON event per line"},
    {"trace", cl_cmd_trace, "follow a trace or command id to the models"},
    {"watch", cl_cmd_watch, "print a query's answer each time it changes"},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	char names[256];
	const char *dflt = cl_domains_default();
	cl_domains_names(names, sizeof(names));
	fprintf(f,
	        "Usage: cleave [COMMAND] [OPTIONS]\n\n"
	        "Cleave %s — a CQRS engine: commands in, events logged,\n"
	        "read models out.\n\nCommands:\n",
	        CLEAVE_VERSION);
	for (const cl_subcommand *s = subcommands; s->name; s++)
		fprintf(f, "  %-10s %s\n", s->name, s->summary);
	fprintf(f, "\nDomains built in: %s%s%s.\n", names,
	        dflt ? "; the default is " : "", dflt ? dflt : "");
	fprintf(f, "Every command takes --domain NAME (a built-in domain) or "
	           "--domain PATH.so:\na value with a '/' or ending in .so "
	           "loads a domain plugin, a shared object\nthat exports "
	           "cleave_domain_entry (see docs/writing-a-domain.md).\n");
	fprintf(f, "\nRun 'cleave COMMAND --help' for a command's options.\n"
	           "With no command, 'cleave' runs 'cleave serve'.\n");
}

int cleave_main(int argc, char **argv, const cleave_domain *const *domains)
{
	cl_domains_set(domains);
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 &&
		    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
			usage(stdout);
			return 0;
		}
		if (argc >= 2 &&
		    (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
			printf("cleave %s\n", CLEAVE_VERSION);
			return 0;
		}
		/* options without a command belong to serve */
		argv[0] = "serve";
		return cl_cmd_serve(argc, argv);
	}
	for (const cl_subcommand *s = subcommands; s->name; s++)
		if (!strcmp(argv[1], s->name))
			return s->run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "cleave: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
