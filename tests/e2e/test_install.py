"""Install, and domains as shared objects, on the real build.

The build is installed into a temporary prefix with `cmake --install BUILD
--prefix P` (what `make install PREFIX=P` runs once it has built; the test
does not build), and then, with an environment of PATH alone (plus
PKG_CONFIG_PATH where pkg-config runs):

- the layout: P/bin/cleave, P/include/cleave.h, P/lib/libcleave.so and .a,
  P/lib/pkgconfig/cleave.pc; libcleave.so exports cleave_* names only; the
  program finds its library through its RPATH ($ORIGIN/../lib);
- a domain plugin, built from C here with `cc $(pkg-config --cflags --libs
  cleave) -shared -fPIC`, is served by the installed program with --domain
  PATH.so: a command and a query over HTTP, one libcleave.so in the
  process's maps (the program's and the plugin's), and the operator tools
  on its data directory, which refuses another domain;
- a plugin that is missing, a folder, not a shared object, without the
  entry point, built for another API version or with a bad table is refused
  with exit status 2 and a message naming the file, and nothing is created;
- a program with its own main() calling cleave_main() serves its domain;
- `make uninstall PREFIX=P` removes what the install put there, and only
  that.

In a sanitizer build the program of one's own is compiled with the same
sanitizer (a library built with one needs its runtime loaded first); the
plugins are plain `cc`, loaded into the sanitized program.
Python standard library only (plus cc, pkg-config, make, nm and readelf).
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

SRC = os.path.abspath(os.path.join(ct.HERE, "..", ".."))
BUILD = os.path.dirname(os.path.abspath(ct.BIN))
LAYOUT = ["bin/cleave", "include/cleave.h", "include/cleave_test.h",
          "lib/libcleave.so",
          "lib/libcleave.a", "lib/pkgconfig/cleave.pc"]

# A tiny domain: a note is added by a command and read back by a query.
NOTES_C = r"""
#include <stdio.h>
#include <cleave.h>

static const char *const migrations[] = {
	"CREATE TABLE notes (note_id TEXT PRIMARY KEY, body TEXT NOT NULL);",
	NULL,
};

static const cleave_field add_fields[] = {
	{"noteId", CLEAVE_F_STRING, true, 0, 0, 64, "id"},
	{"text", CLEAVE_F_STRING, true, 0, 0, 1000, NULL},
	{NULL, 0, false, 0, 0, 0, NULL},
};

static int add_note(cleave_cmd *c, const cJSON *in)
{
	const char *id = cleave_json_str(in, "noteId");
	const char *text = cleave_json_str(in, "text");
	cleave_value a[] = {cleave_text(id), cleave_text(text)};
	int rc = cleave_cmd_exec(
	    c, "INSERT INTO notes (note_id, body) VALUES (?, ?)", a, 2, NULL);
	if (rc == CLEAVE_EEXIST)
		return cleave_cmd_fail(c, rc, "note_exists",
				       "note '%s' exists", id);
	if (rc)
		return rc;
	char stream[128];
	snprintf(stream, sizeof(stream), "note-%s", id);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "noteId", id);
	cJSON_AddStringToObject(d, "text", text);
	if ((rc = cleave_cmd_emit(c, stream, "NoteAdded", d)))
		return rc;
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "noteId", id);
	cleave_cmd_result(c, r);
	return 0;
}

static const cleave_command_def commands[] = {
	{"AddNote", add_note, add_fields, "add a note"},
	{NULL, NULL, NULL, NULL},
};

static int notes_apply(cleave_rtx *tx, const cleave_event *ev)
{
	const char *id;
	int rc = cleave_json_get_str(ev->json, "noteId", &id);
	if (rc)
		return rc;
	return cleave_rtx_put(tx, "note", id, ev->data, ev->data_len);
}

static const char *const note_types[] = {"NoteAdded", NULL};
static const cleave_projection_def projections[] = {
	{"notes", 1, STORE, note_types, NULL, notes_apply,
	 CLEAVE_POISON_PARK},
	{NULL, 0, NULL, NULL, NULL, NULL, CLEAVE_POISON_PARK},
};

static int q_note(cleave_query *q)
{
	const char *id;
	const void *v;
	size_t n;
	int rc = cleave_query_param_str(q, "noteId", true, 64, &id);
	if (rc)
		return rc;
	rc = cleave_rtx_get(cleave_query_rtx(q, 0), "note", id, &v, &n);
	if (rc == CLEAVE_ENOTFOUND)
		return cleave_query_fail(q, rc, "note_not_found",
					 "no note '%s'", id);
	if (rc)
		return rc;
	return cleave_query_reply_raw(q, v, n);
}

static const char *const reads_notes[] = {"notes", NULL};
static const cleave_query_def queries[] = {
	{"note", q_note, reads_notes, "a note by id"},
	{NULL, NULL, NULL, NULL},
};

const cleave_domain notes_domain = {
	.name = "notes",
	.migrations = migrations,
	.commands = commands,
	.projections = projections,
	.queries = queries,
};
"""

PLUGIN_C = '#define STORE "lmdb"\n' + NOTES_C + \
    "\nCLEAVE_DOMAIN_EXPORT(notes_domain)\n"
BAD_TABLE_C = '#define STORE "nosuchstore"\n' + NOTES_C + \
    "\nCLEAVE_DOMAIN_EXPORT(notes_domain)\n"
NO_ENTRY_C = '#define STORE "lmdb"\n' + NOTES_C
OTHER_VERSION_C = '#define STORE "lmdb"\n' + NOTES_C + r"""
const cleave_domain *cleave_domain_entry(int *api_version)
{
	*api_version = CLEAVE_API_VERSION + 1;
	return &notes_domain;
}
"""
MAIN_C = r"""
#include <cleave.h>

extern const cleave_domain notes_domain;

int main(int argc, char **argv)
{
	static const cleave_domain *const domains[] = {&notes_domain, NULL};
	return cleave_main(argc, argv, domains);
}
"""


def installable():
    return os.path.exists(os.path.join(BUILD, "cmake_install.cmake"))


def sanitizer_flags(lib):
    """-fsanitize=… for a program linking lib, when lib was built with a
    sanitizer (its runtime must come first in the program)."""
    with open(lib, "rb") as f:
        data = f.read()
    if b"__asan_init" in data:
        return ["-fsanitize=address,undefined"]
    if b"__tsan_init" in data:
        return ["-fsanitize=thread"]
    return []


@unittest.skipUnless(installable(), "no CMake build beside CLEAVE_BIN")
class Install(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = ct.tmpdir("install")
        cls.prefix = os.path.join(cls.dir, "prefix")
        cls.install(cls.prefix)
        cls.bin = os.path.join(cls.prefix, "bin", "cleave")
        cls.lib = os.path.join(cls.prefix, "lib", "libcleave.so")
        # nothing but PATH: no LD_LIBRARY_PATH, no CLEAVE_*, no sanitizer
        # options
        cls.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        cls.cc_env = dict(cls.env, PKG_CONFIG_PATH=os.path.join(
            cls.prefix, "lib", "pkgconfig"))
        cls.plugin = cls.build_plugin("notes", PLUGIN_C)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @staticmethod
    def install(prefix):
        p = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr

    @classmethod
    def cc(cls, args, what):
        """Runs cc with pkg-config's flags for the installed Cleave."""
        cmd = "cc %s" % args
        p = subprocess.run(["sh", "-c", cmd], cwd=cls.dir, env=cls.cc_env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, "%s: %s\n%s" % (what, cmd, p.stderr)

    @classmethod
    def build_plugin(cls, name, source):
        with open(os.path.join(cls.dir, name + ".c"), "w") as f:
            f.write(source)
        cls.cc("$(pkg-config --cflags --libs cleave) -Wall -Wextra -Werror"
               " -shared -fPIC -o %s.so %s.c" % (name, name), name)
        return os.path.join(cls.dir, name + ".so")

    def run_bin(self, *args, binary=None, timeout=120):
        p = subprocess.run([binary or self.bin] + [str(a) for a in args],
                           capture_output=True, text=True, env=self.env,
                           cwd=self.dir, stdin=subprocess.DEVNULL,
                           timeout=timeout)
        return p.returncode, p.stdout, p.stderr

    def serve(self, data, *args, binary=None):
        """Starts `serve` on a free port; returns (process, port)."""
        port_file = data + ".port"
        log = open(data + ".log", "wb")
        proc = subprocess.Popen(
            [binary or self.bin, "serve", "--listen", "127.0.0.1:0",
             "--port-file", port_file, "--data", data] + list(args),
            stdout=log, stderr=log, env=self.env, cwd=self.dir,
            stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.time() + 30
        while time.time() < deadline:
            if proc.poll() is not None:
                self.fail("serve exited %s:\n%s" % (proc.returncode,
                                                     self.log(data)))
            if os.path.exists(port_file):
                with open(port_file) as f:
                    txt = f.read().strip()
                if txt:
                    return proc, int(txt)
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        self.fail("no port after 30 s:\n" + self.log(data))

    def log(self, data):
        with open(data + ".log", "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, proc, data):
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.fail("no exit after SIGTERM:\n" + self.log(data))
        self.assertEqual(rc, 0, self.log(data))

    def add_and_read(self, port):
        """AddNote, then the note query reading it back; returns the
        command's answer."""
        c = ct.Client(port)
        try:
            r = c.command("AddNote", {"noteId": "n1", "text": "hello"})
            self.assertEqual(r.status, 200, r)
            ans = r.json()
            self.assertEqual(ans["result"], {"noteId": "n1"})
            r = c.get("/queries/note?noteId=n1&min_position=%d"
                      % ans["position"])
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), {"position": ans["position"],
                                        "noteId": "n1", "text": "hello"})
            ct.check_error(c.get("/queries/note?noteId=n2"), 404,
                           "note_not_found")
            return ans
        finally:
            c.close()

    # ---- the layout ------------------------------------------------------

    def test_layout_and_exports(self):
        for rel in LAYOUT:
            self.assertTrue(os.path.isfile(os.path.join(self.prefix, rel)),
                            rel)
        self.assertTrue(os.access(self.bin, os.X_OK))
        # no multiarch folder, nothing else installed
        found = sorted(os.path.relpath(os.path.join(d, f), self.prefix)
                       for d, _, fs in os.walk(self.prefix) for f in fs)
        self.assertEqual(found, sorted(LAYOUT))
        # the public API and nothing else
        p = subprocess.run(["nm", "-D", "--defined-only", self.lib],
                           capture_output=True, text=True, check=True)
        names = [ln.split()[-1] for ln in p.stdout.splitlines() if ln]
        self.assertIn("cleave_main", names)
        self.assertIn("cleave_engine_open", names)
        self.assertIn("cleave_domain_check", names)
        self.assertEqual([n for n in names if not n.startswith("cleave_")],
                         [])
        p = subprocess.run(["readelf", "-d", self.bin], capture_output=True,
                           text=True, check=True)
        self.assertIn("$ORIGIN/../lib", p.stdout)
        with open(os.path.join(self.prefix, "lib/pkgconfig/cleave.pc")) as f:
            pc = f.read()
        self.assertIn("prefix=%s\n" % self.prefix, pc)
        self.assertIn("Requires: libcjson", pc)

    def test_program_runs_with_path_only(self):
        rc, out, err = self.run_bin("--version")
        self.assertEqual((rc, out.split()[0]), (0, "cleave"), err)
        rc, out, err = self.run_bin("--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("shop, bank", out)
        self.assertIn(".so", out)
        rc, out, err = self.run_bin("serve", "--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("PATH.so", out)
        self.assertIn("shop, bank", out)
        rc, out, err = self.run_bin("status", "--help")
        self.assertEqual(rc, 0, err)
        self.assertIn("PATH.so", out)
        p = subprocess.run(["ldd", self.bin], capture_output=True, text=True,
                           env=self.env)
        self.assertIn("libcleave.so => %s" % os.path.join(
            self.prefix, "bin", "..", "lib", "libcleave.so"), p.stdout)

    # ---- a plugin --------------------------------------------------------

    def test_plugin_served_and_inspected(self):
        data = os.path.join(self.dir, "notes-data")
        proc, port = self.serve(data, "--domain", self.plugin)
        try:
            ans = self.add_and_read(port)
            # one libcleave.so in the process: the program's, which the
            # plugin uses too
            with open("/proc/%d/maps" % proc.pid) as f:
                maps = [ln.split()[-1] for ln in f if "/" in ln]
            libs = {os.path.realpath(m) for m in maps if "libcleave" in m}
            self.assertEqual(libs, {os.path.realpath(self.lib)})
            self.assertIn(self.plugin, maps)
        finally:
            self.stop(proc, data)
        p = subprocess.run(["ldd", self.plugin], capture_output=True,
                           text=True, env=self.env)
        self.assertIn("libcleave.so => %s" % self.lib, p.stdout)

        # the operator's tools take the same --domain PATH.so
        rel = os.path.relpath(self.plugin, self.dir)  # "notes.so"
        for args in (["status"], ["verify", "notes"],
                     ["rebuild", "notes"], ["events"],
                     ["trace", ans["trace_id"]]):
            rc, out, err = self.run_bin(*args, "--domain", rel,
                                        "--data", data)
            self.assertEqual(rc, 0, (args, err))
            self.assertIn("notes" if args[0] != "events" else "NoteAdded",
                          out, args)
        # the data directory remembers its domain
        rc, out, err = self.run_bin("status", "--domain", "shop",
                                    "--data", data)
        self.assertEqual(rc, 1, err)
        self.assertIn("'notes'", err)
        rc, out, err = self.run_bin("serve", "--domain", "bank",
                                    "--data", data, "--listen",
                                    "127.0.0.1:0")
        self.assertEqual(rc, 1, err)
        self.assertIn("'notes'", err)
        # and a shop directory refuses the plugin
        shop = os.path.join(self.dir, "shop-data")
        proc, port = self.serve(shop)
        self.stop(proc, shop)
        rc, out, err = self.run_bin("status", "--domain", self.plugin,
                                    "--data", shop)
        self.assertEqual(rc, 1, err)
        self.assertIn("'shop'", err)

    def test_bad_plugins_exit_2(self):
        folder = os.path.join(self.dir, "folder.so")
        os.makedirs(folder, exist_ok=True)
        text = os.path.join(self.dir, "text.so")
        with open(text, "w") as f:
            f.write("not a shared object\n")
        cases = [
            (os.path.join(self.dir, "missing.so"), "no such file"),
            (folder, "not a file"),
            (text, "not a shared object"),
            (self.build_plugin("noentry", NO_ENTRY_C), "cleave_domain_entry"),
            (self.build_plugin("otherversion", OTHER_VERSION_C),
             "API version"),
            (self.build_plugin("badtable", BAD_TABLE_C), "not valid"),
        ]
        data = os.path.join(self.dir, "never-made")
        for path, why in cases:
            for args in (["serve", "--listen", "127.0.0.1:0"], ["status"]):
                rc, out, err = self.run_bin(*args, "--domain", path,
                                            "--data", data)
                self.assertEqual(rc, 2, (path, args, err))
                self.assertIn(path, err)
                self.assertIn(why, err, path)
                self.assertNotIn("Sanitizer", err)
                self.assertFalse(os.path.exists(data))
        # a name is still a built-in domain's
        rc, out, err = self.run_bin("status", "--domain", "notes",
                                    "--data", data)
        self.assertEqual(rc, 2, err)
        self.assertIn("unknown domain 'notes'", err)

    # ---- a program with its own main() -------------------------------------

    def test_own_main(self):
        with open(os.path.join(self.dir, "notesd.c"), "w") as f:
            f.write(MAIN_C)
        with open(os.path.join(self.dir, "notesdom.c"), "w") as f:
            f.write('#define STORE "lmdb"\n' + NOTES_C)
        self.cc("-Wall -Wextra -Werror %s -o notesd notesd.c notesdom.c "
                "$(pkg-config --cflags --libs cleave)"
                % " ".join(sanitizer_flags(self.lib)), "notesd")
        prog = os.path.join(self.dir, "notesd")
        rc, out, err = self.run_bin("--help", binary=prog)
        self.assertEqual(rc, 0, err)
        self.assertIn("notes", out)
        data = os.path.join(self.dir, "notesd-data")
        proc, port = self.serve(data, binary=prog)  # notes: the default
        try:
            self.add_and_read(port)
        finally:
            self.stop(proc, data)
        rc, out, err = self.run_bin("status", "--data", data, binary=prog)
        self.assertEqual(rc, 0, err)
        self.assertIn('"name":"notes"', out)

    # ---- uninstall -------------------------------------------------------

    def test_uninstall_removes_what_install_put(self):
        # with the build (its install rules list the files), and without
        # one (after make clean: the layout scripts/uninstall.sh knows)
        for name, build in (("prefix2", BUILD),
                            ("prefix3", os.path.join(self.dir, "no-build"))):
            prefix = os.path.join(self.dir, name)
            os.makedirs(os.path.join(prefix, "lib"))
            mine = os.path.join(prefix, "lib", "mine.txt")
            with open(mine, "w") as f:
                f.write("not cleave's\n")
            self.install(prefix)
            for rel in LAYOUT:
                self.assertTrue(os.path.exists(os.path.join(prefix, rel)),
                                rel)
            p = subprocess.run(["make", "-s", "-C", SRC, "uninstall",
                                "PREFIX=" + prefix, "BUILD=" + build],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            left = sorted(os.path.relpath(os.path.join(d, f), prefix)
                          for d, ds, fs in os.walk(prefix) for f in fs + ds)
            self.assertEqual(left, ["lib", "lib/mine.txt"], build)


if __name__ == "__main__":
    unittest.main()
