"""The social example, built and served the way a user of Cleave would:
against an installed Cleave, outside the source tree.

The build is installed into a temporary prefix P with `cmake --install
BUILD --prefix P` (what `make install PREFIX=P` runs once it has built);
examples/social is copied into a temporary folder outside the tree and
built there with `make PKG_CONFIG_PATH=P/lib/pkgconfig` in an environment
of PATH alone; then the example's own test, test_social.py, runs from the
copy against P/bin/cleave serving the copy's social.so (its commands,
queries, a randomized session against its model, 5,000 followers, its
README's walk-through).  And the promises about the source: social.c and
any header beside it are at most 400 lines, include nothing of Cleave but
<cleave.h>, and the build's command line names nothing of the tree.

Python standard library only (plus cmake, make, cc, pkg-config, bash and
curl).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

SRC = os.path.abspath(os.path.join(ct.HERE, "..", ".."))
EXAMPLE = os.path.join(SRC, "examples", "social")
BUILD = os.path.dirname(os.path.abspath(ct.BIN))
LIBC = {"<stdio.h>", "<stdlib.h>", "<string.h>", "<stdbool.h>",
        "<stdint.h>", "<stddef.h>", "<inttypes.h>"}


@unittest.skipUnless(os.path.exists(os.path.join(BUILD,
                                                 "cmake_install.cmake")),
                     "no CMake build beside CLEAVE_BIN")
class Social(unittest.TestCase):

    def setUp(self):
        # the system's temporary folder, not the build's: outside the tree
        self.dir = tempfile.mkdtemp(prefix="cleave-social-")
        self.assertFalse(os.path.realpath(self.dir).startswith(SRC + "/"))

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_social_outside_the_tree(self):
        prefix = os.path.join(self.dir, "prefix")
        p = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        copy = os.path.join(self.dir, "social")
        shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(
            "*.so", "*.o", "__pycache__"))

        # the source: small, and Cleave through <cleave.h> alone
        lines = 0
        for name in sorted(os.listdir(copy)):
            if not name.endswith((".c", ".h")):
                continue
            with open(os.path.join(copy, name), encoding="utf-8") as f:
                text = f.read()
            lines += text.count("\n")
            inc = set(re.findall(r'^\s*#\s*include\s*([<"][^>"]+[>"])',
                                 text, re.M))
            self.assertEqual(inc - LIBC, {"<cleave.h>"}, name)
        self.assertLessEqual(lines, 400)

        # built with the installed pkg-config file and nothing else
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        p = subprocess.run(["make", "PKG_CONFIG_PATH=" + os.path.join(
            prefix, "lib", "pkgconfig")], cwd=copy, env=env,
            capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn(SRC, p.stdout + p.stderr)
        self.assertIn(os.path.join(prefix, "include"), p.stdout)
        plugin = os.path.join(copy, "social.so")
        self.assertTrue(os.path.isfile(plugin))

        # the rules with the test kit (cleave_test.h), installed beside
        # cleave.h: a program linked with the copy's social.so
        kit = os.path.join(self.dir, "social_kit")
        lib = os.path.join(prefix, "lib", "libcleave.so")
        with open(lib, "rb") as f:
            data = f.read()
        san = ("-fsanitize=address,undefined" if b"__asan_init" in data else
               "-fsanitize=thread" if b"__tsan_init" in data else "")
        p = subprocess.run(
            ["sh", "-c", "cc -Wall -Wextra -Werror %s -o %s %s %s "
             "$(pkg-config --cflags --libs cleave) -Wl,-rpath,%s"
             % (san, kit, os.path.join(ct.HERE, "social_kit.c"), plugin,
                copy)],
            env=dict(env, PKG_CONFIG_PATH=os.path.join(prefix, "lib",
                                                      "pkgconfig")),
            capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        kenv = dict(env, TMPDIR=self.dir)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
            if k in os.environ:
                kenv[k] = os.environ[k]
        p = subprocess.run([kit], env=kenv, capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

        # its own test, from the copy, against the installed program; the
        # servers' data directories in the temporary folder too
        env = dict(env, TMPDIR=self.dir)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        p = subprocess.run(
            [sys.executable, os.path.join(copy, "test_social.py"),
             "--cleave", os.path.join(prefix, "bin", "cleave"),
             "--plugin", plugin, "-v"], cwd=copy, env=env,
            capture_output=True, text=True, timeout=1500)
        sys.stderr.write(p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0, "test_social.py failed (above)")
        self.assertRegex(p.stderr, r"\nOK\n?$")


if __name__ == "__main__":
    unittest.main()
