"""The docs say what the code does: every metric family that /metrics
exports is in docs/operations.md's metrics table, and every row of that
table is exported (by a server that has run a command, a query and a
rebuild, so every family has samples)."""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "docs", "operations.md")


class Docs(unittest.TestCase):
    def test_metrics_table_matches_the_exposition(self):
        with open(DOCS, encoding="utf-8") as f:
            documented = set(re.findall(r"^\| `(cleave_[a-z0-9_]+)` \|",
                                        f.read(), re.M))
        self.assertTrue(documented, "no metrics table in operations.md")
        with ct.Server() as s:
            c = s.client()
            r = c.command("RegisterUser", {"userId": "d1", "name": "Ann",
                                           "country": "SE"})
            self.assertEqual(r.status, 200, r)
            pos = r.json()["position"]
            self.assertEqual(c.get("/queries/user_orders?userId=d1"
                                   "&min_position=%d" % pos).status, 200)
            text = c.get("/metrics").body.decode()
        exported = set(re.findall(r"^# TYPE (cleave_[a-z0-9_]+) ", text,
                                  re.M))
        self.assertTrue(exported, text[:500])
        self.assertEqual(sorted(exported - documented), [],
                         "exported but not in docs/operations.md")
        self.assertEqual(sorted(documented - exported), [],
                         "in docs/operations.md but not exported")


if __name__ == "__main__":
    ct.main()
