/*
 * domains.h — the systems built on Cleave, by name.
 */
#ifndef CL_DOMAINS_H
#define CL_DOMAINS_H

#include "cleave.h"

/* The domain called `name` ("shop", "bank"), or NULL. */
const cleave_domain *cleave_domain_find(const char *name);
/* NULL-terminated list of every domain. */
extern const cleave_domain *const cleave_domains[];

#endif
