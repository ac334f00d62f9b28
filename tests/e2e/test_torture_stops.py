"""A short run of the crash torture's rebuild-stop mode
(tests/torture/torture.py --rebuild-stops) in `make check`: the real
server, shop and bank, under concurrent command load; in every trial
blue-green rebuilds of several projections are asked for and the server is
stopped 0-N ms later (N from the rebuild times measured so far) or as the
log shows one of them reopening its store for its switch, so that stops
land mid-build, at the switch and after it; half of the time with
SIGTERM (a clean stop: exit status 0, no sanitizer report in its log) and
half with SIGKILL; then every check of the torture (nothing acknowledged
lost, one effect per key, the write tables and the read models equal to
the log).  `make torture-stops` runs the long one.

This is the window of the heap-use-after-free that shutdown during a
switch had (b676839): against the engine before that fix the ASan build
failed here in each of 3 runs, at a domain's 3rd to 15th stop.

CLEAVE_TORTURE_STOPS overrides the number of stops per domain (default
20); under an ASan or TSan build the load between stops is shorter and
`cleave verify` runs after every other stop (`make check-tsan` runs it
too).
Python standard library only."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torture"))
import torture  # noqa: E402


class RebuildStops(unittest.TestCase):
    def run_domain(self, domain):
        stops = int(os.environ.get("CLEAVE_TORTURE_STOPS", "20"))
        args = ["--kills", str(stops), "--domains", domain, "--progress",
                "0", "--rebuild-stops"]
        if torture.ct.sanitized():  # ASan or TSan: slower
            args += ["--load-max", "0.25", "--threads", "6",
                     "--verify-every", "2"]
        self.assertEqual(torture.main(args), 0,
                         "rebuild-stop torture of %s failed (see above)" %
                         domain)

    def test_shop(self):
        self.run_domain("shop")

    def test_bank(self):
        self.run_domain("bank")


if __name__ == "__main__":
    unittest.main(verbosity=2)
