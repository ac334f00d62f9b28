"""A short run of the crash torture (tests/torture/torture.py) in `make
check`: the real server, shop and bank, SIGKILLed at least 20 times each
under concurrent command load (some kills during startup, some just after
a blue-green rebuild started), every check of the long run after each kill.
`make torture` runs the long one (300 kills per domain by default).

CLEAVE_TORTURE_KILLS overrides the number of kills per domain; under an
ASan build the load between kills is shorter and `cleave verify` runs
after every other kill (the kills stay at 20).
Python standard library only."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torture"))
import torture  # noqa: E402


class CrashTorture(unittest.TestCase):
    def run_domain(self, domain):
        kills = int(os.environ.get("CLEAVE_TORTURE_KILLS", "20"))
        args = ["--kills", str(kills), "--domains", domain, "--progress",
                "0"]
        if torture.is_asan(torture.ct.BIN):
            # ASan: shorter load, and `cleave verify` (0.5 s a run under
            # ASan) after every other kill and the last; the normal build
            # verifies after every kill
            args += ["--load-max", "0.25", "--threads", "6",
                     "--verify-every", "2"]
        self.assertEqual(torture.main(args), 0,
                         "crash torture of %s failed (see above)" % domain)

    def test_shop(self):
        self.run_domain("shop")

    def test_bank(self):
        self.run_domain("bank")


if __name__ == "__main__":
    unittest.main(verbosity=2)
