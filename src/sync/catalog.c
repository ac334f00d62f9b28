/*
 * catalog.c — which copies of each projection exist (read/catalog.json),
 * sweeping the ones no catalog names, detecting a crash of the machine,
 * and opening every projection's copies at start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"

#include "sync/sync_int.h"

/* ---- the catalog --------------------------------------------------------- */

static int catalog_save_locked(cleave_engine *e);

/* Writers of the catalog (the switch on a runner thread, a rebuild request,
 * open) serialise here: one snapshot of every projection, one rename. */
int cl_catalog_save(cleave_engine *e)
{
	if (e->cfg.read_only)
		return 0;
	pthread_mutex_lock(&e->sync->catmu);
	int rc = catalog_save_locked(e);
	pthread_mutex_unlock(&e->sync->catmu);
	return rc;
}

static int catalog_save_locked(cleave_engine *e)
{
	cJSON *root = cJSON_CreateObject(), *ps = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, "format", 1);
	cJSON_AddItemToObject(root, "projections", ps);
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &e->sync->proj[i];
		cJSON *o = cJSON_CreateObject();
		pthread_mutex_lock(&p->mu);
		if (p->live) {
			cJSON *l = cJSON_AddObjectToObject(o, "live");
			cJSON_AddNumberToObject(l, "gen", p->live->gen);
			cJSON_AddNumberToObject(l, "version", p->live->version);
		}
		if (p->build) {
			cJSON *b = cJSON_AddObjectToObject(o, "build");
			cJSON_AddNumberToObject(b, "gen", p->build->gen);
			cJSON_AddNumberToObject(b, "version",
			                        p->build->version);
		}
		cJSON_AddNumberToObject(o, "next_gen", p->next_gen);
		pthread_mutex_unlock(&p->mu);
		cJSON_AddItemToObject(ps, p->def->name, o);
	}
	/* where the log and the read models are: a tool or server opened on
	 * this directory without the same stores is told (cl_sync_open) */
	char uri[1024];
	cleave_uri_redact(e->cfg.write_store ? e->cfg.write_store : "sqlite", uri,
	              sizeof(uri));
	cJSON_AddStringToObject(root, "write_store", uri);
	cJSON_AddStringToObject(root, "read_store",
	                        e->sync->shared ? e->sync->shared_root
	                                        : "embedded");
	char *text = cJSON_Print(root);
	cJSON_Delete(root);
	if (!text)
		return cl_err(CLEAVE_ENOMEM, "out of memory");
	char path[4096], tmp[4096];
	snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
	snprintf(tmp, sizeof(tmp), "%s/catalog.json.tmp", e->read_dir);
	int rc = 0;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	size_t len = strlen(text);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) ||
	    rename(tmp, path))
		rc = cl_err(errno == ENOSPC ? CLEAVE_ENOSPC : CLEAVE_EIO,
		            "writing %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (!rc)
		rc = cl_fsync_dir(e->read_dir);
	if (!rc)
		cl_follow_publish(e, text);
	free(text);
	return rc;
}

static cJSON *catalog_load(cleave_engine *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	cleave_buf b;
	cleave_buf_init(&b);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cleave_buf_add(&b, chunk, n);
	fclose(f);
	cJSON *j = b.p ? cJSON_ParseWithLength(b.p, b.len) : NULL;
	cleave_buf_free(&b);
	return j;
}

/* A copy named `name` ("<projection>.g<gen>", or a verify's scratch
 * "<projection>.verify-<hex>") found at `root`: removed when no catalog
 * entry names it (left by a crash mid-switch or mid-verify, or a
 * projection's old generations). */
static void sweep_one(cleave_engine *e, const cl_rstore_methods *m,
                      const char *name)
{
	char proj[256], path[4096];
	int gen;
	const char *dot = strrchr(name, '.');
	snprintf(path, sizeof(path), "%s/%s",
	         m ? cl_copy_root(e, m) : e->read_dir, name);
	if (strstr(name, ".verify-")) {
		m ? m->drop(path) : cl_rmtree(path);
		return;
	}
	if (!dot || sscanf(dot, ".g%d", &gen) != 1 ||
	    (size_t)(dot - name) >= sizeof(proj))
		return;
	memcpy(proj, name, (size_t)(dot - name));
	proj[dot - name] = 0;
	int k = cl_nametab_get(&e->proj_idx, proj);
	if (k < 0)
		return; /* a projection this domain lacks: keep */
	cl_proj *p = &e->sync->proj[k];
	if ((p->live && p->live->gen == gen) ||
	    (p->build && p->build->gen == gen))
		return;
	cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
	       "removing unused read-model copy %s", path);
	m ? m->drop(path) : cl_rmtree(path);
}

static int sweep_shared(void *arg, const char *name)
{
	cleave_engine *e = arg;
	sweep_one(e, e->sync->shared, name);
	return 0;
}

static void sweep_orphans(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (e->cfg.read_only)
		return;
	DIR *d = opendir(e->read_dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			sweep_one(e, NULL, de->d_name);
		closedir(d);
	}
	if (s->shared &&
	    s->shared->list(s->shared_root, s->owner, sweep_shared, e) < 0)
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "looking for unused read-model copies in %s: %s",
		       s->shared_root, cleave_errmsg());
}

/* ---- read models after a crash of the machine ------------------------- */

/* Read models committed without fsync survive a process crash (the page
 * cache has every commit) but not a crash of the machine, which may leave
 * them torn.  read/run.json says whether the last engine closed cleanly and
 * under which boot: an unclean end under another boot id means the machine
 * went down, and every read model is rebuilt from the log. */
static void boot_id(char *out, size_t cap)
{
	out[0] = 0;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f)
		return;
	if (fgets(out, (int)cap, f))
		out[strcspn(out, "\n")] = 0;
	fclose(f);
}

int cl_run_mark(cleave_engine *e, bool clean)
{
	char id[64], path[4096], tmp[4096], text[256];
	boot_id(id, sizeof(id));
	int n = snprintf(text, sizeof(text),
	                 "{\"boot_id\":\"%s\",\"clean\":%s,\"pid\":%d}\n", id,
	                 clean ? "true" : "false", (int)getpid());
	snprintf(path, sizeof(path), "%s/run.json", e->read_dir);
	snprintf(tmp, sizeof(tmp), "%s/run.json.tmp", e->read_dir);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int rc = 0;
	if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) ||
	    rename(tmp, path))
		rc =
		    cl_err(CLEAVE_EIO, "writing %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return rc ? rc : cl_fsync_dir(e->read_dir);
}

static bool machine_crashed(cleave_engine *e)
{
	char path[4096], id[64], buf[256];
	snprintf(path, sizeof(path), "%s/run.json", e->read_dir);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	cJSON *j = cJSON_Parse(buf);
	bool clean = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "clean"));
	const char *was = cleave_json_str(j, "boot_id");
	boot_id(id, sizeof(id));
	bool crashed = !clean && was && strcmp(was, id) != 0;
	cJSON_Delete(j);
	return crashed;
}

/* Removes every copy of this domain's projections (a fresh start). */
static void drop_all_copies(cleave_engine *e)
{
	DIR *d = opendir(e->read_dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *dot = strrchr(de->d_name, '.');
		int gen;
		char name[256];
		if (!dot || sscanf(dot, ".g%d", &gen) != 1 ||
		    (size_t)(dot - de->d_name) >= sizeof(name))
			continue;
		memcpy(name, de->d_name, (size_t)(dot - de->d_name));
		name[dot - de->d_name] = 0;
		if (cl_nametab_get(&e->proj_idx, name) < 0)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", e->read_dir, de->d_name);
		cl_rmtree(path);
	}
	closedir(d);
}

static bool is_postgres(const char *uri)
{
	return uri && (!strncmp(uri, "postgres://", 11) ||
	               !strncmp(uri, "postgresql://", 13));
}

/* The stores this directory's catalog was written with, against the ones
 * given now: a read model in Redis opened without --read-store, or a log
 * in PostgreSQL opened on the embedded write store (whose empty log would
 * make every read model look ahead of it, and rebuilt), is refused with
 * the flag to give. */
static int stores_check(cleave_engine *e, const cJSON *cat)
{
	const char *rs = cleave_json_str(cat, "read_store");
	const char *ws = cleave_json_str(cat, "write_store");
	if (rs && strcmp(rs, "embedded") && !e->sync->shared)
		return cl_err(CLEAVE_EINVAL,
		              "the read models of %s are in %s: give "
		              "--read-store %s (with its password, if it needs "
		              "one) as the server that wrote them had",
		              e->data_dir, rs, rs);
	if (!e->cfg.query_node && is_postgres(ws) &&
	    !is_postgres(e->cfg.write_store))
		return cl_err(CLEAVE_EINVAL,
		              "the log of %s is in PostgreSQL (%s): give "
		              "--write-store %s as the server that wrote it had",
		              e->data_dir, ws, ws);
	return 0;
}

int cl_sync_open(cleave_engine *e)
{
	cl_sync *s = e->sync;
	if (!e->cfg.read_only && cl_store_opts(e).nosync &&
	    machine_crashed(e)) {
		cl_log(e, CLEAVE_LOG_WARN, NULL, NULL, -1,
		       "the machine went down while cleave ran (another boot, "
		       "no clean shutdown): read models written without fsync "
		       "are rebuilt from the log");
		drop_all_copies(e);
		char path[4096];
		snprintf(path, sizeof(path), "%s/catalog.json", e->read_dir);
		unlink(path);
	}
	cJSON *cat = catalog_load(e);
	int src = stores_check(e, cat);
	if (src) {
		cJSON_Delete(cat);
		return src;
	}
	cJSON *ps = cJSON_GetObjectItemCaseSensitive(cat, "projections");
	int rc = 0;
	bool dirty = false;
	for (int i = 0; i < e->nproj; i++) {
		cl_proj *p = &s->proj[i];
		pthread_mutex_init(&p->mu, NULL);
		pthread_cond_init(&p->resume, NULL);
		cJSON *o = cJSON_GetObjectItemCaseSensitive(ps, p->def->name);
		cJSON *l = cJSON_GetObjectItemCaseSensitive(o, "live");
		cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "build");
		p->next_gen = (int)cleave_json_int(o, "next_gen", 1);
		if (e->cfg.query_node &&
		    cl_rs_has(cl_copy_methods(e, p->def->store),
		              CL_RS_SHARED)) {
			/* another engine writes it: follow that one's copy */
			if ((rc = cl_follow_open(e, p)))
				break;
			continue;
		}
		if (l) {
			rc = cl_copy_new(p, (int)cleave_json_int(l, "gen", 1),
			                 (int)cleave_json_int(l, "version", 1),
			                 &p->live);
		} else if (!e->cfg.read_only) {
			/* first build: nothing older to serve */
			int gen = p->next_gen++;
			rc = cl_copy_open(p, gen, p->def->version, false,
			                  &p->live);
			dirty = true;
		} else {
			rc = cl_err(CLEAVE_ENOTFOUND,
			            "projection %s has no copy in %s",
			            p->def->name, e->read_dir);
		}
		if (rc)
			break;
		if (!e->cfg.read_only &&
		    atomic_load(&p->live->applied) > cl_log_head(e)) {
			/* a read model ahead of the log: the log lost its end
			 * (durability os and a crash of the machine, or a
			 * restored write store) — it cannot be trusted */
			cl_log(e, CLEAVE_LOG_WARN, NULL, NULL,
			       atomic_load(&p->live->applied),
			       "projection %s is ahead of the log (head %lld): "
			       "rebuilding it",
			       p->def->name, (long long)cl_log_head(e));
			p->live->retired = true;
			cl_copy_unref(p->live);
			p->live = NULL;
			if (p->next_gen <= (int)cleave_json_int(l, "gen", 1))
				p->next_gen = (int)cleave_json_int(l, "gen", 1) + 1;
			if ((rc = cl_copy_new(p, p->next_gen++, p->def->version,
			                      &p->live)))
				break;
			dirty = true;
			b = NULL; /* a build under way is dropped too */
		}
		if (b) {
			rc = cl_copy_new(p, (int)cleave_json_int(b, "gen", 1),
			                 (int)cleave_json_int(b, "version", 1),
			                 &p->build);
			if (rc)
				break;
			p->build->building = true;
		}
		if (!p->build && p->live->version != p->def->version &&
		    !e->cfg.read_only) {
			/* the domain moved to another version: rebuild */
			int gen = p->next_gen++;
			if ((rc = cl_copy_new(p, gen, p->def->version,
			                      &p->build)))
				break;
			p->build->building = true;
			dirty = true;
			cl_log(e, CLEAVE_LOG_INFO, NULL, NULL, -1,
			       "projection %s: version %d → %d, rebuilding "
			       "blue-green into g%d",
			       p->def->name, p->live->version, p->def->version,
			       gen);
		}
		int maxgen = CL_MAX(p->live->gen, p->build ? p->build->gen : 0);
		if (p->next_gen <= maxgen)
			p->next_gen = maxgen + 1;
	}
	cJSON_Delete(cat);
	/* with a shared store, query nodes read the catalog there: publish it
	 * at every open (a writer upgraded from an older version has none) */
	if (!rc && (dirty || (s->root_store && !e->cfg.query_node)))
		rc = cl_catalog_save(e);
	if (!rc)
		sweep_orphans(e);
	if (!rc && !e->cfg.read_only)
		rc = cl_run_mark(e, false);
	if (!rc)
		s->opened = true;
	return rc;
}
