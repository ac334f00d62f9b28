/*
 * iso.h — the ISO code tables the domains check input against.
 */
#ifndef CL_ISO_H
#define CL_ISO_H

#include <stdbool.h>

/* True when `s` is an officially assigned ISO 3166-1 alpha-2 country code
 * (upper case, e.g. "DE"). */
bool iso_country_ok(const char *s);
/* True when `s` is an ISO 4217 currency code in current use (upper case,
 * e.g. "EUR"). */
bool iso_currency_ok(const char *s);

#endif
