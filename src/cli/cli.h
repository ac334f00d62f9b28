/*
 * cli.h — the `cleave` program's subcommands.  Each lives in its own file
 * (serve.c, status.c, rebuild.c, verify.c, events.c, trace.c, watch.c) and
 * is listed in cli_main.c's table.  Exit codes: 0 success, 1 failure (or
 * drift found), 2 usage error.
 */
#ifndef CL_CLI_H
#define CL_CLI_H

typedef struct cl_subcommand {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
	const char *summary;
} cl_subcommand;

int cl_cmd_serve(int argc, char **argv);
int cl_cmd_status(int argc, char **argv);
int cl_cmd_rebuild(int argc, char **argv);
int cl_cmd_verify(int argc, char **argv);
int cl_cmd_events(int argc, char **argv);
int cl_cmd_trace(int argc, char **argv);
int cl_cmd_watch(int argc, char **argv);

#endif
