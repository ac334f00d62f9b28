/*
 * verify.c — `cleave verify [NAME...]`: rebuild a projection into a
 * scratch copy from the log, up to the live copy's position, and compare
 * the two key by key.  Every differing key is printed; exit 1 on drift.
 *
 * With --data the engine is opened read-only, so this works beside a
 * running server (the live copy is read from a snapshot; the scratch copy
 * is built in read/NAME.verify-* and removed afterwards).  With --server
 * the server does the same (POST /projections/NAME/verify) and lists the
 * differing keys, the first 1000 of them; the output is the same.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cli_util.h"

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

/* ---- --server ------------------------------------------------------------ */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A differing key from the server: "key_hex" (its bytes) when the text
 * could not say them exactly, else "key".  Returns its length in buf. */
static size_t diff_key(const cJSON *d, char *buf, size_t cap)
{
	const char *hex = cli_jstr(d, "key_hex");
	const char *key = cli_jstr(d, "key");
	size_t n = 0;
	if (hex) {
		for (; hex[0] && hex[1] && n < cap; hex += 2) {
			int h = hexval(hex[0]), l = hexval(hex[1]);
			if (h < 0 || l < 0)
				break;
			buf[n++] = (char)(h * 16 + l);
		}
		return n;
	}
	n = key ? strlen(key) : 0;
	if (n > cap)
		n = cap;
	memcpy(buf, key ? key : "", n);
	return n;
}

static int verify_remote(const cli_common *c, const char *name, bool *drift)
{
	static const char *const headers[] = {"TABLE", "KEY", "DIFF"};
	char target[512] = "/projections/", msg[512];
	cli_url_encode(target, sizeof(target) - 8, name);
	strcat(target, "/verify");
	int64_t t0 = cli_now_us();
	cli_http_resp resp;
	if (cli_server_request(c, "POST", target, cli_slow_timeout_ms(c),
	                       &resp))
		return CLI_EXIT_FAIL;
	double secs = (double)(cli_now_us() - t0) / 1e6;
	if (resp.status == 404) {
		cli_errorf(c, "no projection '%s' on the server", name);
		cli_http_resp_free(&resp);
		return CLI_EXIT_FAIL;
	}
	if (resp.status == 401 || resp.status == 403) {
		cli_server_error(c, "POST", target, &resp);
		cli_http_resp_free(&resp);
		return CLI_EXIT_FAIL;
	}
	if (resp.status != 200) {
		/* the engine's failure (or a verify already running): the
		 * same summary as with --data */
		cli_error_message(&resp, msg, sizeof(msg));
		cli_http_resp_free(&resp);
		summary(c, name, 0, 0, secs, msg);
		return CLI_EXIT_FAIL;
	}
	cJSON *j = cJSON_ParseWithLength(resp.body, resp.len);
	cli_http_resp_free(&resp);
	const cJSON *diffs = cJSON_GetObjectItemCaseSensitive(j, "diffs");
	if (!cJSON_IsArray(diffs)) {
		cli_errorf(c, "POST %s%s: not a verify answer", c->server,
		           target);
		cJSON_Delete(j);
		return CLI_EXIT_FAIL;
	}
	cli_table t;
	cli_table_init(&t, 3, headers, NULL);
	vstate v = {c, name, &t, 0};
	const cJSON *d;
	cJSON_ArrayForEach(d, diffs)
	{
		char key[CLEAVE_KEY_MAX * 4 + 8]; /* what on_diff shows */
		size_t klen = diff_key(d, key, sizeof(key));
		const char *table = cli_jstr(d, "table");
		const char *what = cli_jstr(d, "what");
		if (on_diff(&v, table ? table : "?", key, klen,
		            what ? what : "?"))
			break;
	}
	if (!c->json && t.nrows > 1) {
		printf("%s:\n", name);
		cli_table_print(&t, stdout);
	}
	cli_table_free(&t);
	int64_t ndiff = cli_jint(j, "differences", 0);
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")))
		cli_errorf(c,
		           "%s: the server lists the first %lld of %lld "
		           "differing keys",
		           name, (long long)v.shown, (long long)ndiff);
	summary(c, name, cli_jint(j, "position", 0), ndiff, secs, NULL);
	cJSON_Delete(j);
	if (ndiff)
		*drift = true;
	return 0;
}

static int verify_server(const cli_common *c, char **names, int n)
{
	bool drift = false;
	int rc = 0;
	cJSON *j = NULL;
	if (n == 0) {
		if ((rc = cli_server_call(c, "GET", "/projections", &j, NULL)))
			return rc;
		const cJSON *ps =
		    cJSON_GetObjectItemCaseSensitive(j, "projections");
		const cJSON *p;
		cJSON_ArrayForEach(p, ps)
		{
			const char *name = cli_jstr(p, "name");
			if (!name || cli_interrupted || cli_out_broken())
				continue;
			int r = verify_remote(c, name, &drift);
			if (r)
				rc = r;
		}
		cJSON_Delete(j);
	}
	for (int i = 0; i < n && !cli_interrupted; i++) {
		int r = verify_remote(c, names[i], &drift);
		if (r)
			rc = r;
	}
	if (cli_interrupted && !rc)
		rc = CLI_EXIT_FAIL;
	if (!rc && drift)
		rc = CLI_EXIT_FAIL;
	return cli_finish(c, rc);
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
	        "(read-only).\n"
	        "With --server the server verifies (POST "
	        "/projections/NAME/verify)\n"
	        "and lists at most 1000 differing keys per projection; "
	        "it waits for\n"
	        "the answer up to --http-timeout (default 10 minutes "
	        "here).",
	    .min_args = 0,
	    .max_args = -1,
	};
	cli_common c;
	int first;
	int rc = cli_parse(&spec, &c, argc, argv, &first);
	if (rc >= 0)
		return rc;
	cli_signals_init();
	if (c.server)
		return verify_server(&c, argv + first, argc - first);
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
			           argv[first + i], c.domain->name);
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
