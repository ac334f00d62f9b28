"""The docs say what the code does, and carry the contract themselves:

- every metric family that /metrics exports is in docs/operations.md's
  metrics table, and every row of that table is exported (by a server that
  has run a command, a query and a rebuild, so every family has samples);
- no tracked file points a reader at a design document outside the
  repository (one that its users do not have);
- every relative link in README.md and docs/*.md reaches a file of the
  repository, and a link to a heading of a Markdown page (page.md#heading)
  reaches a heading that exists.
"""
import glob
import html
import os
import re
import subprocess
import sys
import unittest
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(
    __file__)), "..", ".."))
DOCS = os.path.join(ROOT, "docs", "operations.md")
SELF = "tests/e2e/test_docs.py"

# What points at the external design document: its path beside the
# repository, its name, and the "DESIGN §n" shorthand of old comments.
EXTERNAL = re.compile(rb"\.\./shared|DESIGN\.md|DESIGN \xc2\xa7")
# An inline Markdown link or image: [text](target) / ![alt](target).
LINK = re.compile(r"!?\[[^\]\n]*\]"
                  r"\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
# A code span: within one paragraph (no blank line inside).
CODE_SPAN = re.compile(r"(`+)(?:(?!\1)(?:[^\n]|\n(?![ \t]*\n)))+?\1")


def tracked_files():
    """The repository's tracked files (paths relative to ROOT), or None
    when this is not a git checkout."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0")
            if p]


def markdown_pages():
    pages = [os.path.join(ROOT, "README.md")]
    pages += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return pages


def without_code(text):
    """The text with fenced code blocks and code spans blanked out (a link
    in an example is not a link), line numbers kept."""
    def blank(m):
        return "\n" * m.group(0).count("\n")
    return CODE_SPAN.sub(blank, FENCE.sub(blank, text))


def slug(heading):
    """The anchor GitHub gives a heading: its text (markup and entities
    resolved) in lower case, punctuation dropped, spaces made hyphens."""
    t = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    t = html.unescape(re.sub(r"<[^>]+>", "", t.replace("`", "")))
    t = re.sub(r"[^\w\- ]", "", t.strip().lower())
    return t.replace(" ", "-")


def anchors(path):
    """Every anchor of a Markdown file: its headings' slugs (a repeated one
    gets -1, -2, ... as on GitHub) and explicit <a name|id="..."> ones."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    found, seen = set(), {}
    for m in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$",
                         FENCE.sub("", text), re.M):
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        found.add(s if n == 0 else "%s-%d" % (s, n))
    found.update(re.findall(r"<a\s+(?:name|id)=\"([^\"]+)\"", text))
    return found


def relative_links(path):
    """(line, target) of every relative link of a Markdown file."""
    with open(path, encoding="utf-8") as f:
        text = without_code(f.read())
    for m in LINK.finditer(text):
        target = m.group(1)
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        yield text.count("\n", 0, m.start()) + 1, target


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

    def test_no_file_points_at_an_external_design_document(self):
        files = tracked_files()
        if files is None:
            self.skipTest("not a git checkout: no tracked files to read")
        self.assertIn(SELF, files)
        found = []
        for rel in files:
            if rel == SELF:
                continue
            path = os.path.join(ROOT, rel)
            if not os.path.isfile(path):
                continue  # deleted in the working tree, not yet committed
            with open(path, "rb") as f:
                data = f.read()
            for m in EXTERNAL.finditer(data):
                line = data.count(b"\n", 0, m.start()) + 1
                found.append("%s:%d: %s" % (rel, line, m.group(0).decode()))
        self.assertEqual(found, [], "the repository's users do not have "
                         "that document: say what it says, or link to "
                         "docs/ instead")

    def test_relative_links_reach_a_file(self):
        broken = []
        for page in markdown_pages():
            for line, target in relative_links(page):
                path = target.split("#", 1)[0]
                if not path:
                    continue  # #heading on the same page: see below
                dest = os.path.normpath(os.path.join(
                    os.path.dirname(page), unquote(path)))
                inside = os.path.commonpath([dest, ROOT]) == ROOT
                if not inside or not os.path.exists(dest):
                    broken.append("%s:%d: %s" % (
                        os.path.relpath(page, ROOT), line, target))
        self.assertEqual(broken, [], "links to files that do not exist "
                         "(or lie outside the repository)")

    def test_links_to_headings_reach_a_heading(self):
        broken = []
        for page in markdown_pages():
            for line, target in relative_links(page):
                path, sep, anchor = target.partition("#")
                if not sep or not anchor:
                    continue
                dest = page if not path else os.path.normpath(
                    os.path.join(os.path.dirname(page), unquote(path)))
                if not dest.endswith(".md") or not os.path.isfile(dest):
                    continue  # a missing file is the test above's
                if unquote(anchor).lower() not in anchors(dest):
                    broken.append("%s:%d: %s" % (
                        os.path.relpath(page, ROOT), line, target))
        self.assertEqual(broken, [], "links to headings that do not exist")


if __name__ == "__main__":
    ct.main()
