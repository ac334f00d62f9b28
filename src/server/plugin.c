/*
 * plugin.c — the domain a program serves: a built-in one by name, or a
 * plugin loaded from a path.
 *
 * A plugin is checked step by step, so that each way it can be wrong is a
 * message that names the file and the problem, never a crash: the file
 * exists and is a regular file; it starts with an ELF header (dlopen's own
 * words for a text file vary); dlopen(RTLD_NOW | RTLD_LOCAL) binds every
 * symbol it needs at once (a missing one is an error now, not a crash on
 * the first call); it exports cleave_domain_entry itself (not one of the
 * libraries it links); the entry point reports the API version this
 * library speaks, before the table is read; and the table passes
 * cleave_domain_check().
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin.h"

/* Borrowed from cleave_main()'s caller, for the life of the process. */
static const cleave_domain *const *builtin;

void cl_domains_set(const cleave_domain *const *b)
{
	builtin = b;
}

void cl_domains_names(char *buf, size_t cap)
{
	size_t k = 0;
	if (!cap)
		return;
	buf[0] = 0;
	for (int i = 0; builtin && builtin[i] && k < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "",
		                      builtin[i]->name);
	if (!buf[0])
		snprintf(buf, cap, "none");
}

const char *cl_domains_default(void)
{
	return builtin && builtin[0] ? builtin[0]->name : NULL;
}

bool cl_domain_is_path(const char *spec)
{
	size_t n = spec ? strlen(spec) : 0;
	return n &&
	       (strchr(spec, '/') || (n >= 3 && !strcmp(spec + n - 3, ".so")));
}

/* True when the file at path starts with the ELF magic number. */
static bool is_elf(const char *path)
{
	unsigned char m[4];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, m, sizeof(m));
	close(fd);
	return n == 4 && !memcmp(m, "\177ELF", 4);
}

/* The plugin's entry point, when the plugin itself defines it: dlsym on a
 * handle also searches the libraries the object links. */
static void *own_entry(void *h)
{
	void *sym = dlsym(h, CLEAVE_DOMAIN_ENTRY);
	struct link_map *lm = NULL;
	Dl_info info;
	if (!sym || dlinfo(h, RTLD_DI_LINKMAP, &lm) || !lm ||
	    !dladdr(sym, &info) || !info.dli_fname ||
	    strcmp(info.dli_fname, lm->l_name))
		return NULL;
	return sym;
}

static int load(const char *path, const cleave_domain **out, char *err,
                size_t cap)
{
	struct stat st;
	if (stat(path, &st)) {
		snprintf(err, cap, "domain plugin %s: %s", path,
		         errno == ENOENT ? "no such file" : strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, cap, "domain plugin %s: not a file", path);
		return -1;
	}
	if (access(path, R_OK)) {
		snprintf(err, cap, "domain plugin %s: cannot read it: %s", path,
		         strerror(errno));
		return -1;
	}
	if (!is_elf(path)) {
		snprintf(
		    err, cap,
		    "domain plugin %s: not a shared object (no ELF header)",
		    path);
		return -1;
	}
	/* a name without '/' would be searched for in the library path */
	char rel[4096];
	const char *at = path;
	if (!strchr(path, '/')) {
		snprintf(rel, sizeof(rel), "./%s", path);
		at = rel;
	}
	void *h = dlopen(at, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		snprintf(err, cap, "domain plugin %s: cannot load it: %s", path,
		         why ? why : "dlopen failed");
		return -1;
	}
	void *sym = own_entry(h);
	if (!sym) {
		snprintf(err, cap,
		         "domain plugin %s: no entry point: it does not "
		         "export %s() (define it with "
		         "CLEAVE_DOMAIN_EXPORT(your_domain))",
		         path, CLEAVE_DOMAIN_ENTRY);
		dlclose(h);
		return -1;
	}
	const cleave_domain *(*entry)(int *);
	memcpy(&entry, &sym, sizeof(entry));
	int version = -1;
	const cleave_domain *d = entry(&version);
	if (version != CLEAVE_API_VERSION) {
		snprintf(err, cap,
		         "domain plugin %s: built for Cleave API version %d, "
		         "but this cleave speaks version %d: rebuild it "
		         "against this cleave's cleave.h",
		         path, version, CLEAVE_API_VERSION);
		dlclose(h);
		return -1;
	}
	if (!d) {
		snprintf(err, cap, "domain plugin %s: %s() returned no domain",
		         path, CLEAVE_DOMAIN_ENTRY);
		dlclose(h);
		return -1;
	}
	if (cleave_domain_check(d)) {
		snprintf(err, cap,
		         "domain plugin %s: domain '%s' is not valid: %s", path,
		         d->name ? d->name : "(no name)", cleave_errmsg());
		dlclose(h);
		return -1;
	}
	*out = d; /* h stays open: the table and its handlers live in it */
	return 0;
}

int cl_domain_resolve(const char *spec, const cleave_domain **out, char *err,
                      size_t cap)
{
	char names[256];
	*out = NULL;
	if (cl_domain_is_path(spec))
		return load(spec, out, err, cap);
	cl_domains_names(names, sizeof(names));
	if (!spec || !*spec) {
		if (builtin && builtin[0]) {
			*out = builtin[0];
			return 0;
		}
		snprintf(err, cap,
		         "no domain: this program has none built in; give "
		         "--domain PATH.so to load a plugin");
		return -1;
	}
	for (int i = 0; builtin && builtin[i]; i++)
		if (!strcmp(builtin[i]->name, spec)) {
			*out = builtin[i];
			return 0;
		}
	snprintf(err, cap,
	         "unknown domain '%s' (this build has: %s; a path, with a '/' "
	         "or ending in .so, loads a plugin)",
	         spec, names);
	return -1;
}
