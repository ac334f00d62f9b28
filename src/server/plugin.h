/*
 * plugin.h — which domain a program serves: one of the built-in domains
 * that cleave_main() was given, by name, or a domain plugin, a shared
 * object loaded from a path (cleave.h, "Domains as plugins").  Used by
 * `cleave serve` and by every operator tool's --domain.
 */
#ifndef CL_SERVER_PLUGIN_H
#define CL_SERVER_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>

#include "cleave.h"

/* Sets the program's built-in domains: NULL-terminated, the first the
 * default; NULL for none.  Borrowed for the life of the process.  Called
 * once by cleave_main(), before anything else runs. */
void cl_domains_set(const cleave_domain *const *builtin);

/* The built-in domains' names, "shop, bank", into buf (cap bytes), or
 * "none". */
void cl_domains_names(char *buf, size_t cap);

/* The name of the default domain (the first built-in), or NULL. */
const char *cl_domains_default(void);

/* True when a --domain value is a path to a plugin: it contains '/' or
 * ends in ".so". */
bool cl_domain_is_path(const char *spec);

/* The domain a --domain value names: NULL or "" the default, a name one of
 * the built-in domains, a path a plugin (loaded, checked, and kept loaded
 * until the process exits; loading the same path again gives the same
 * table).  0 with *out set (borrowed for the life of the process), or -1
 * with a one-line message in err (cap bytes) that names the domain or the
 * file and what is wrong: a usage error for the caller (exit status 2). */
int cl_domain_resolve(const char *spec, const cleave_domain **out, char *err,
                      size_t cap);

#endif
