/*
 * domains.c — the table of domains this build serves.
 */
#include <string.h>

#include "dom.h"
#include "domains.h"

const cleave_domain *const cleave_domains[] = {
    &dom_shop,
    &dom_bank,
    NULL,
};

const cleave_domain *cleave_domain_find(const char *name)
{
	for (int i = 0; name && cleave_domains[i]; i++)
		if (!strcmp(cleave_domains[i]->name, name))
			return cleave_domains[i];
	return NULL;
}
