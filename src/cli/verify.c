/*
 * verify.c — `cleave verify [NAME...]`: rebuild a projection into a
 * scratch copy from the log, up to the live copy's position, and compare
 * the two key by key.  Every differing key is printed; exit 1 on drift.
 *
 * The engine is opened read-only, so this works beside a running server
 * (the live copy is read from a snapshot; the scratch copy is built in
 * read/NAME.verify-* and removed afterwards).
 */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_util.h"

typedef struct vstate {
	const cli_common *c;
	const char *name;
	cli_table *t; /* terminal: rows collected per projection */
	int64_t shown;
} vstate;

/* "missing": the rebuild has it, the live copy does not; "extra": the
 * live copy only; "different": both, other values. */
static int on_diff(void *arg, const char *table, const char *key, size_t klen,
                   const char *what)
{
	vstate *v = arg;
	char k[CLEAVE_KEY_MAX * 4 + 8];
	cli_escape(k, sizeof(k), key, klen);
	v->shown++;
	if (v->c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "projection", v->name);
		cJSON_AddStringToObject(o, "table", table);
		cJSON_AddStringToObject(o, "key", k);
		cJSON_AddStringToObject(o, "diff", what);
		cli_print_json(o);
		cJSON_Delete(o);
	} else {
		const char *cells[] = {table, k, what};
		cli_table_row(v->t, cells);
	}
	return cli_out_broken() ? 1 : 0;
}

static void summary(const cli_common *c, const char *name, int64_t pos,
                    int64_t ndiff, double secs, const char *error)
{
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "projection", name);
		cli_add_int(o, "position", pos);
		if (error) {
			cJSON_AddStringToObject(o, "result", "error");
			cJSON_AddStringToObject(o, "error", error);
		} else {
			cJSON_AddStringToObject(o, "result",
			                        ndiff ? "drift" : "ok");
			cli_add_int(o, "differences", ndiff);
		}
		cJSON_AddNumberToObject(o, "seconds", secs);
		cli_print_json(o);
		cJSON_Delete(o);
		return;
	}
	if (error)
		printf("%s: could not verify: %s\n", name, error);
	else if (ndiff)
		printf("%s: DRIFT: %lld differing key%s at position %lld "
		       "(%.2f s)\n",
		       name, (long long)ndiff, ndiff == 1 ? "" : "s",
		       (long long)pos, secs);
	else
		printf("%s: ok, identical to a rebuild from the log at "
		       "position %lld (%.2f s)\n",
		       name, (long long)pos, secs);
}

static int verify_one(const cli_common *c, cleave_engine *e, const char *name,
                      bool *drift)
{
	static const char *const headers[] = {"TABLE", "KEY", "DIFF"};
	cli_table t;
	cli_table_init(&t, 3, headers, NULL);
	vstate v = {c, name, &t, 0};
	int64_t ndiff = 0, pos = 0, t0 = cli_now_us();
	int rc = cleave_projection_verify(e, name, on_diff, &v, &ndiff, &pos);
	double secs = (double)(cli_now_us() - t0) / 1e6;
	if (!c->json && t.nrows > 1) {
		printf("%s:\n", name);
		cli_table_print(&t, stdout);
	}
	cli_table_free(&t);
	if (rc && !cli_out_broken()) {
		const char *m = cleave_errmsg();
		summary(c, name, pos, ndiff, secs,
		        *m ? m : cleave_strerror(rc));
		return CLI_EXIT_FAIL;
	}
	summary(c, name, pos, ndiff, secs, NULL);
	if (ndiff)
		*drift = true;
	return 0;
}

int cl_cmd_verify(int argc, char **argv)
{
	static const cli_cmd_spec spec = {
	    .name = "verify",
	    .synopsis = "[NAME...]",
	    .description =
	        "Rebuilds projection NAME (every projection when no "
	        "NAME is given)\n"
	        "into a scratch copy from the log, up to the "
	        "position the live copy\n"
	        "has applied, and compares the two key by key.  "
	        "Prints each key that\n"
	        "differs — missing (the rebuild has it, the live copy "
	        "does not),\n"
	        "extra (only the live copy has it) or different — "
	        "and a summary line\n"
	        "with the position compared.  Exit status 1 when any "
	        "key differs.\n"
	        "Keys are shown with \\\\ and \\xHH escapes for "
	        "bytes that are not\n"
	        "printable text.  Works beside a running server "
	        "(read-only).",
	    .min_args = 0,
	    .max_args = -1,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	if (c.server) {
		cli_errorf(&c, "verify is not available over --server yet; "
		               "run it with --data DIR on the server's "
		               "machine (it works while the server runs)");
		return CLI_EXIT_USAGE;
	}
	cli_signals_init();
	cleave_engine *e;
	if ((rc = cli_engine_open(&c, true, &e)))
		return rc;
	bool drift = false;
	int n = argc - first;
	if (n == 0) {
		int np = cleave_projection_count(e);
		for (int i = 0; i < np && !cli_interrupted; i++) {
			cleave_proj_status s;
			if (cleave_projection_status(e, i, &s))
				continue;
			int r = verify_one(&c, e, s.name, &drift);
			if (r)
				rc = r;
		}
	}
	for (int i = 0; i < n && !cli_interrupted; i++) {
		if (cleave_projection_find(e, argv[first + i]) < 0) {
			cli_errorf(&c, "no projection '%s' in domain %s",
			           argv[first + i], c.domain_name);
			rc = CLI_EXIT_FAIL;
			continue;
		}
		int r = verify_one(&c, e, argv[first + i], &drift);
		if (r)
			rc = r;
	}
	cleave_engine_close(e);
	if (cli_interrupted && !rc)
		rc = CLI_EXIT_FAIL;
	if (!rc && drift)
		rc = CLI_EXIT_FAIL;
	return cli_finish(&c, rc);
}
