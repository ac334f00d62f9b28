/*
 * main.c — `cleave`: the server and the operator's tools in one program.
 * Subcommands are a table, not a chain of ifs.
 */
#include <stdio.h>
#include <string.h>

#include "cleave.h"
#include "cli.h"

/* Read by jemalloc (the program's allocator, see CMakeLists.txt) at start:
 * a background thread returns freed memory to the system even for arenas
 * no thread allocates from any more (a finished rebuild's reader, say).
 * Unused with any other allocator. */
extern const char *malloc_conf;
const char *malloc_conf = "background_thread:true,dirty_decay_ms:5000";

static const cl_subcommand subcommands[] = {
	{"serve", cl_cmd_serve, "serve a domain over HTTP (the default)"},
	{"status", cl_cmd_status, "projections: state, position, lag"},
	{"rebuild", cl_cmd_rebuild, "rebuild a projection blue-green"},
	{"verify", cl_cmd_verify, "compare a projection with a fresh rebuild"},
	{"events", cl_cmd_events, "print the log, one JSON event per line"},
	{"trace", cl_cmd_trace, "follow a trace or command id to the models"},
	{NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "Usage: cleave [COMMAND] [OPTIONS]\n\n"
		   "Cleave %s — a CQRS engine: commands in, events logged,\n"
		   "read models out.\n\nCommands:\n",
		CLEAVE_VERSION);
	for (const cl_subcommand *s = subcommands; s->name; s++)
		fprintf(f, "  %-10s %s\n", s->name, s->summary);
	fprintf(f, "\nRun 'cleave COMMAND --help' for a command's options.\n"
		   "With no command, 'cleave' runs 'cleave serve'.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (!strcmp(argv[1], "--help") ||
				  !strcmp(argv[1], "-h"))) {
			usage(stdout);
			return 0;
		}
		if (argc >= 2 && (!strcmp(argv[1], "--version") ||
				  !strcmp(argv[1], "-V"))) {
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
