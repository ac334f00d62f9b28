/*
 * server.h — `cleave serve`: the HTTP server over one engine.
 */
#ifndef CL_SERVER_SERVER_H
#define CL_SERVER_SERVER_H

#include "config.h"

/* Opens the engine for cfg->dom, serves HTTP until SIGTERM or SIGINT,
 * then shuts down gracefully.  Returns the process exit code: 0 after a
 * clean shutdown, 1 when it could not start (reason logged). */
int cl_server_run(const cl_server_config *cfg);

#endif
