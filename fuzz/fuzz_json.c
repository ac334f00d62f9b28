/*
 * fuzz_json.c — the command-body path: the strict scanner and cJSON
 * (cl_json_parse), then the field checks of a real command's table
 * (cl_fields_check), as cleave_command_submit runs them.
 *
 * Input: byte 0 picks a command of the shop or bank domain (their field
 * tables cover every field type and charset); the rest is the body.
 *
 * Invariants checked beyond "no crash, no leak, no UB":
 *  - text the strict scanner accepts, cJSON accepts too (otherwise the
 *    client would get a 500 "out of memory" for a valid body);
 *  - an accepted tree printed with cl_json_print (how events are stored)
 *    is accepted again and parses to an equal tree;
 *  - a body that passes the field checks has every required field, with
 *    the declared type.
 */
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "domains.h"
#include "fuzz.h"

static const cleave_command_def *cmds[64];
static int ncmds;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (int d = 0; cleave_domains[d]; d++)
		for (const cleave_command_def *c = cleave_domains[d]->commands;
		     c->name && ncmds < 64; c++)
			cmds[ncmds++] = c;
	return 0;
}

static void check_fields(const cleave_field *fields, const cJSON *obj)
{
	for (const cleave_field *f = fields; f && f->name; f++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, f->name);
		if (!v || cJSON_IsNull(v)) {
			FUZZ_CHECK(!f->required);
			continue;
		}
		switch (f->type) {
		case CLEAVE_F_STRING:
			FUZZ_CHECK(cJSON_IsString(v));
			FUZZ_CHECK(strlen(v->valuestring) > 0);
			break;
		case CLEAVE_F_INT:
			FUZZ_CHECK(cJSON_IsNumber(v));
			if (f->min || f->max) {
				int64_t i = cleave_json_int(obj, f->name, INT64_MIN);
				FUZZ_CHECK(i != INT64_MIN && i >= f->min && i <= f->max);
			}
			break;
		case CLEAVE_F_BOOL:
			FUZZ_CHECK(cJSON_IsBool(v));
			break;
		case CLEAVE_F_OBJECT:
			FUZZ_CHECK(cJSON_IsObject(v));
			break;
		case CLEAVE_F_ARRAY:
			FUZZ_CHECK(cJSON_IsArray(v));
			break;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ncmds)
		LLVMFuzzerInitialize(NULL, NULL);
	if (size < 1)
		return 0;
	const cleave_command_def *cmd = cmds[data[0] % ncmds];
	const char *text = (const char *)data + 1;
	size_t n = size - 1;

	cJSON *j = NULL;
	int rc = cl_json_parse(text, n, CLEAVE_JSON_MAX_DEPTH, &j);
	if (cl_json_check(text, n, CLEAVE_JSON_MAX_DEPTH) == 0) {
		/* the scanner said yes: cJSON must agree */
		FUZZ_CHECK(rc != CLEAVE_ENOMEM);
	}
	if (rc) {
		FUZZ_CHECK(j == NULL);
		FUZZ_CHECK(rc == CLEAVE_EINVAL || rc == CLEAVE_EBADJSON);
		return 0;
	}
	FUZZ_CHECK(j != NULL);

	/* round trip through the printer the log uses */
	size_t plen;
	char *printed = cl_json_print(j, &plen);
	FUZZ_CHECK(printed != NULL);
	cJSON *again = NULL;
	FUZZ_CHECK(cl_json_parse(printed, plen, CLEAVE_JSON_MAX_DEPTH,
				 &again) == 0);
	FUZZ_CHECK(cJSON_Compare(j, again, true));
	cJSON_Delete(again);
	free(printed);

	if (cl_fields_check(cmd->fields, j) == 0)
		check_fields(cmd->fields, j);
	cJSON_Delete(j);
	return 0;
}
