/*
 * json.h — strict JSON input on top of cJSON.
 *
 * cJSON accepts duplicate keys, rounds integers past 2^53, and trusts
 * UTF-8.  Cleave's input path does not: cl_json_parse() first checks the
 * text with its own one-pass scanner (grammar, UTF-8, escapes, depth,
 * number magnitude), then builds the tree with cJSON and rejects duplicate
 * keys.  Every rejection is CLEAVE_EINVAL with a message that says where.
 */
#ifndef CL_JSON_H
#define CL_JSON_H

#include <cjson/cJSON.h>

#include "cleave.h"
#include "core/util.h"

#define CL_JSON_MAX_SAFE_INT 9007199254740992LL /* 2^53 */

/* Parses n bytes of JSON text.  On 0, *out is the tree (cJSON_Delete). */
int cl_json_parse(const char *s, size_t n, int max_depth, cJSON **out);
/* Checks the text only (no tree). */
int cl_json_check(const char *s, size_t n, int max_depth);
/* An answer about to be served: JSON's grammar and UTF-8 only (any
 * number, nesting up to 512), and whether its top-level object has the key
 * `key` (*has_key).  CLEAVE_EBADJSON naming the byte when it is not JSON. */
int cl_json_check_answer(const char *s, size_t n, const char *key,
			 bool *has_key);

/* Checks a command body against its declared fields (cleave_field). */
int cl_fields_check(const cleave_field *fields, const cJSON *obj);

/* Accessors for checked trees: NULL / dflt when absent or of another
 * type.  Strings are borrowed from the tree. */

/* Serialises compactly, integers exactly (no printf on the hot path);
 * malloc'd (free()), NULL on out of memory. */
char *cl_json_print(const cJSON *v, size_t *len);
/* Appends v's compact text to b. */
void cl_json_write(cleave_buf *b, const cJSON *v);

#endif
