#!/usr/bin/env python3
"""Tests of the social example, over HTTP, against `cleave serve --domain
social.so` — the contract of README.md, nothing else.

    python3 test_social.py [--cleave PATH] [--plugin PATH] [unittest args]

--cleave is an installed cleave program (default: `cleave` on PATH);
--plugin a built social.so (default: `make` in this folder, with
PKG_CONFIG_PATH, or else the --cleave program's PREFIX/lib/pkgconfig).
Each test class starts its own server on a free port, in a temporary data
directory (under $TMPDIR), and stops it with SIGTERM: an exit status other
than 0 (a sanitizer's report, say) fails the test.

- Commands: every check of every command, in the contract's order (400,
  404, 422, 409), each with its code, and a refused command writes
  nothing.
- Queries: each answer as the contract gives it, and bad parameters.
- A randomized session of a few thousand commands compared, answer by
  answer, with an independent model of the rules (Model below): timelines
  paged with cursors to their end, past the 1,000 cap, with older posts
  coming back after deletes and unfollows; trending with ties; searches
  with non-ASCII words and punctuation.  Then the read model is verified
  (a replay of the log gives the same tables) and rebuilt, and the answers
  are compared again.
- Scale, scaled down for `make check`: an author with 5,000 followers posts
  as fast as one with none, and the last follower's timeline shows the post
  within a second; a user following 2,000 users pages a timeline in bounded
  time and exactly.
- README.md's walk-through, run as written: every answer it shows.

Words, as the contract defines them, are SQLite FTS5's unicode61 tokens:
the model asks Python's own sqlite3 for them (a pure-Python reading of the
same rules when its SQLite has no FTS5).  Standard library only.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
CLEAVE = PLUGIN = None
TL_MAX = 1000


# ---- the program and the plugin --------------------------------------------

def find_programs(args):
    global CLEAVE, PLUGIN
    CLEAVE = os.path.abspath(args.cleave) if args.cleave else \
        shutil.which("cleave")
    if not CLEAVE:
        sys.exit("no cleave program: install Cleave or pass --cleave PATH")
    if args.plugin:
        PLUGIN = os.path.abspath(args.plugin)
        return
    env = dict(os.environ)
    if "PKG_CONFIG_PATH" not in env:
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(CLEAVE)))
        env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    p = subprocess.run(["make", "-C", HERE], env=env, capture_output=True,
                       text=True)
    if p.returncode:
        sys.exit("make failed:\n" + p.stdout + p.stderr)
    PLUGIN = os.path.join(HERE, "social.so")


def read(path):
    """The text of a file, "" when there is none."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body else {}
        for attempt in (0, 1):
            if not self.conn:
                self.conn = http.client.HTTPConnection("127.0.0.1",
                                                       self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def cmd(self, name, body):
        """(status, answer) of command `name`; body is an object or text."""
        if not isinstance(body, str):
            body = json.dumps(body)
        return self.request("POST", "/commands/" + name, body.encode())

    def query(self, name, **params):
        qs = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
        return self.request("GET", "/queries/%s?%s" % (name, qs))

    def close(self):
        if self.conn:
            self.conn.close()


class Server:
    """`cleave serve --domain social.so` on a free port."""

    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="social-test-")
        self.data = os.path.join(self.dir, "data")
        port_file = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [CLEAVE, "serve", "--domain", PLUGIN, "--data", self.data,
             "--listen", "127.0.0.1:0", "--port-file", port_file] +
            list(args), stdout=self.log, stderr=self.log,
            stdin=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not read(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                logs = self.logs()
                self.stop(check=False)
                raise AssertionError("cleave serve did not start:\n" + logs)
            time.sleep(0.02)
        self.port = int(read(port_file))
        self.url = "http://127.0.0.1:%d" % self.port

    def logs(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-5000:]

    def stop(self, check=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        logs = self.logs()
        shutil.rmtree(self.dir, ignore_errors=True)
        if check and rc != 0:
            raise AssertionError("cleave serve exited %s:\n%s" % (rc, logs))


class ServerTest(unittest.TestCase):
    server_args = ("--durability", "os")

    @classmethod
    def setUpClass(cls):
        cls.server = Server(*cls.server_args)
        cls.c = Client(cls.server.port)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        cls.server.stop()

    def ok(self, name, body):
        """Runs a command that must succeed; returns its answer."""
        st, ans = self.c.cmd(name, body)
        self.assertEqual(st, 200, (name, body, ans))
        return ans

    def refused(self, name, body, status, code):
        """A command that must be refused with status and code, writing
        nothing."""
        head = self.c.request("GET", "/health")[1]["head"]
        st, ans = self.c.cmd(name, body)
        self.assertEqual((st, ans["error"]["code"]), (status, code),
                         (name, body, ans))
        self.assertEqual(set(ans), {"error"})
        self.assertIsInstance(ans["error"]["message"], str)
        self.assertEqual(self.c.request("GET", "/health")[1]["head"], head)

    def ask(self, name, pos=0, **params):
        """(status, answer) of a query that reflects position pos at least;
        every answer carries its position."""
        st, ans = self.c.query(name, min_position=pos, **params)
        if st == 200:
            self.assertGreaterEqual(ans.pop("position"), pos)
        return st, ans


# ---- words, as FTS5's unicode61 tokenizer splits and folds them -------------

class Words:
    """The words of a text: SQLite's own tokenizer (Python's sqlite3),
    or, without FTS5 there, the same rules in Python: token characters are
    letters, digits, private-use and combining marks (Unicode categories
    L*, N*, Co, Mn); each is folded to lower case and, for Latin letters,
    without its diacritics."""

    def __init__(self):
        self.cache = {}
        try:
            self.db = sqlite3.connect(":memory:")
            self.db.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
            self.db.execute("CREATE VIRTUAL TABLE v USING "
                            "fts5vocab(t, 'instance')")
        except sqlite3.Error:
            self.db = None

    def __call__(self, text):
        if text not in self.cache:
            self.cache[text] = self.sqlite(text) if self.db else \
                self.python(text)
        return self.cache[text]

    def sqlite(self, text):
        self.db.execute("DELETE FROM t")
        self.db.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (text,))
        return [r[0] for r in self.db.execute(
            "SELECT term FROM v ORDER BY offset")]

    @staticmethod
    def python(text):
        words, cur = [], ""
        for ch in text + " ":
            cat = unicodedata.category(ch)
            if cat[0] in "LN" or cat in ("Co", "Mn"):
                base = unicodedata.normalize("NFD", ch)
                if unicodedata.category(base[0])[0] == "L" and \
                        "LATIN" in unicodedata.name(base[0], ""):
                    ch = base[0]
                cur += "" if cat == "Mn" else ch.lower()
            elif cur:
                words.append(cur)
                cur = ""
        return words


WORDS = Words()


# ---- the model: the contract's rules, in Python -----------------------------

ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
FIELDS = {
    "RegisterUser": [("userId", "id"), ("name", 100)],
    "Follow": [("followerId", "id"), ("followeeId", "id")],
    "Unfollow": [("followerId", "id"), ("followeeId", "id")],
    "Post": [("postId", "id"), ("userId", "id"), ("text", 280)],
    "Like": [("postId", "id"), ("userId", "id")],
    "DeletePost": [("postId", "id"), ("userId", "id")],
}


class Model:
    def __init__(self):
        self.users = {}       # userId -> name
        self.follows = set()  # (follower, followee)
        self.posts = {}       # postId -> post; a deleted one stays, dead

    def check(self, name, b):
        """(status, code) the contract gives command `name` with body b."""
        fields = FIELDS[name]
        if not isinstance(b, dict) or set(b) - {f for f, _ in fields}:
            return 400, "invalid_argument"
        for f, kind in fields:
            v = b.get(f)
            if not isinstance(v, str) or not v:
                return 400, "invalid_argument"
            if kind == "id" and not ID_RE.match(v):
                return 400, "invalid_argument"
            if kind != "id" and len(v) > kind:  # code points
                return 400, "invalid_argument"
        live = lambda p: p in self.posts and self.posts[p]["live"]
        if name == "RegisterUser":
            if b["userId"] in self.users:
                return 409, "user_exists"
        elif name in ("Follow", "Unfollow"):
            a, z = b["followerId"], b["followeeId"]
            if a not in self.users or z not in self.users:
                return 404, "user_not_found"
            if name == "Follow" and a == z:
                return 422, "cannot_follow_self"
            if name == "Follow" and (a, z) in self.follows:
                return 409, "already_following"
            if name == "Unfollow" and (a, z) not in self.follows:
                return 422, "not_following"
        elif name == "Post":
            if b["userId"] not in self.users:
                return 404, "user_not_found"
            if b["postId"] in self.posts:
                return 409, "post_exists"
        else:
            p, u = b["postId"], b["userId"]
            if not live(p):
                return 404, "post_not_found"
            if u not in self.users:
                return 404, "user_not_found"
            if name == "Like" and u in self.posts[p]["likers"]:
                return 409, "already_liked"
            if name == "DeletePost" and self.posts[p]["author"] != u:
                return 422, "not_author"
        return 200, None

    def apply(self, name, b, ans):
        """Records a command that succeeded, with its answer."""
        if name == "RegisterUser":
            self.users[b["userId"]] = b["name"]
        elif name == "Follow":
            self.follows.add((b["followerId"], b["followeeId"]))
        elif name == "Unfollow":
            self.follows.discard((b["followerId"], b["followeeId"]))
        elif name == "Post":
            self.posts[b["postId"]] = {
                "author": b["userId"], "text": b["text"], "live": True,
                "seq": ans["events"][0]["position"], "likers": set(),
                "at": ans["result"]["created_at"]}
        elif name == "Like":
            self.posts[b["postId"]]["likers"].add(b["userId"])
        else:
            self.posts[b["postId"]]["live"] = False

    def item(self, pid):
        p = self.posts[pid]
        return {"postId": pid, "userId": p["author"],
                "name": self.users[p["author"]], "text": p["text"],
                "created_at": p["at"]}

    def live(self, pred=lambda pid, p: True):
        """Live posts matching pred, newest first."""
        out = [pid for pid, p in self.posts.items() if p["live"] and
               pred(pid, p)]
        return sorted(out, key=lambda pid: -self.posts[pid]["seq"])

    # the answers
    def post(self, pid):
        if pid not in self.posts or not self.posts[pid]["live"]:
            return 404, "post_not_found"
        return 200, dict(self.item(pid), likes=len(self.posts[pid]["likers"]))

    def user(self, uid):
        if uid not in self.users:
            return 404, "user_not_found"
        return 200, {"userId": uid, "name": self.users[uid],
                     "followers": sum(1 for a, z in self.follows if z == uid),
                     "following": sum(1 for a, z in self.follows if a == uid),
                     "posts": len(self.live(lambda i, p: p["author"] == uid))}

    def page(self, pids, limit, cursor):
        rest = [i for i in pids if cursor is None or
                self.posts[i]["seq"] < int(cursor)]
        page = rest[:limit]
        return 200, {"items": [self.item(i) for i in page],
                     "next_cursor": str(self.posts[page[-1]]["seq"])
                     if len(rest) > limit else None}

    def timeline(self, uid, limit=20, cursor=None):
        if uid not in self.users:
            return 404, "user_not_found"
        followed = {z for a, z in self.follows if a == uid}
        return self.page(self.live(lambda i, p: p["author"] in followed)
                         [:TL_MAX], limit, cursor)

    def user_posts(self, uid, limit=20, cursor=None):
        if uid not in self.users:
            return 404, "user_not_found"
        return self.page(self.live(lambda i, p: p["author"] == uid), limit,
                         cursor)

    def trending(self, limit=10):
        pids = sorted(self.live(lambda i, p: p["likers"]),
                      key=lambda i: (-len(self.posts[i]["likers"]), i))
        return 200, {"items": [{"postId": i, "userId":
                                self.posts[i]["author"],
                                "likes": len(self.posts[i]["likers"])}
                               for i in pids[:limit]]}

    def search(self, q, limit=20, cursor=None):
        words = WORDS(q)
        if not 1 <= len(words) <= 10:
            return 400, "invalid_parameter"
        want = set(words)
        return self.page(self.live(lambda i, p: want <= set(WORDS(p["text"]))),
                         limit, cursor)


# ---- commands: every check, in order ----------------------------------------

class Commands(ServerTest):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for u in ("ada", "bob", "cy"):
            cls.c.cmd("RegisterUser", {"userId": u, "name": u.title()})
        cls.c.cmd("Follow", {"followerId": "bob", "followeeId": "ada"})
        cls.c.cmd("Post", {"postId": "p1", "userId": "ada", "text": "hi"})
        cls.c.cmd("Post", {"postId": "gone", "userId": "ada", "text": "x"})
        cls.c.cmd("Like", {"postId": "p1", "userId": "bob"})
        cls.c.cmd("DeletePost", {"postId": "gone", "userId": "ada"})

    def bad_fields(self, name, good):
        """Every field missing, empty, ill-typed, null, and an unknown one:
        400 invalid_argument."""
        for f in good:
            for v in (None, "", 5, True, ["x"], {"a": 1}, "MISSING"):
                b = dict(good)
                if v == "MISSING":
                    del b[f]
                else:
                    b[f] = v
                self.refused(name, b, 400, "invalid_argument")
        self.refused(name, dict(good, extra="x"), 400, "invalid_argument")
        self.refused(name, "[]", 400, "invalid_argument")
        self.refused(name, '{"x":', 400, "malformed_json")
        for f, kind in FIELDS[name]:
            if kind == "id":
                for v in ("a b", "é", "a/b", "x" * 65):
                    self.refused(name, dict(good, **{f: v}), 400,
                                 "invalid_argument")

    def test_register_user(self):
        good = {"userId": "dan", "name": "Dan"}
        self.bad_fields("RegisterUser", good)
        # 1-100 characters (code points): 101 of 'é' (202 bytes), or of an
        # emoji (404 bytes), are too many; 100 emoji are fine
        for name in ("é" * 101, "\U0001F600" * 101, "x" * 101):
            self.refused("RegisterUser", dict(good, name=name), 400,
                         "invalid_argument")
        # fields before duplicates
        self.refused("RegisterUser", {"userId": "ada", "name": "é" * 101},
                     400, "invalid_argument")
        self.refused("RegisterUser", {"userId": "ada", "name": "Ada"}, 409,
                     "user_exists")
        ans = self.ok("RegisterUser", {"userId": "emo",
                                       "name": "\U0001F600" * 100})
        self.assertEqual(ans["events"][0]["type"], "UserRegistered")
        ans = self.ok("RegisterUser", {"userId": "é".encode().hex() + "_1",
                                       "name": "ñ" * 100})
        self.assertEqual(set(ans), {"position", "events", "result",
                                    "trace_id", "command_id"})
        # ids are compared byte for byte: case matters
        self.ok("RegisterUser", {"userId": "ADA", "name": "Other Ada"})

    def test_follow(self):
        good = {"followerId": "cy", "followeeId": "bob"}
        self.bad_fields("Follow", good)
        # existence first (both), then oneself, then the duplicate
        self.refused("Follow", {"followerId": "nobody", "followeeId": "ada"},
                     404, "user_not_found")
        self.refused("Follow", {"followerId": "ada", "followeeId": "nobody"},
                     404, "user_not_found")
        self.refused("Follow", {"followerId": "nobody",
                                "followeeId": "nobody"}, 404,
                     "user_not_found")
        self.refused("Follow", {"followerId": "ada", "followeeId": "ada"},
                     422, "cannot_follow_self")
        self.refused("Follow", {"followerId": "bob", "followeeId": "ada"},
                     409, "already_following")
        ans = self.ok("Follow", {"followerId": "ada", "followeeId": "bob"})
        self.assertEqual(ans["events"][0]["type"], "Followed")
        self.refused("Follow", {"followerId": "ada", "followeeId": "bob"},
                     409, "already_following")

    def test_unfollow(self):
        good = {"followerId": "cy", "followeeId": "ada"}
        self.bad_fields("Unfollow", good)
        self.refused("Unfollow", {"followerId": "nobody", "followeeId": "cy"},
                     404, "user_not_found")
        self.refused("Unfollow", {"followerId": "cy", "followeeId": "nobody"},
                     404, "user_not_found")
        self.refused("Unfollow", good, 422, "not_following")
        self.refused("Unfollow", {"followerId": "cy", "followeeId": "cy"},
                     422, "not_following")
        self.ok("Follow", good)
        ans = self.ok("Unfollow", good)
        self.assertEqual(ans["events"][0]["type"], "Unfollowed")
        self.refused("Unfollow", good, 422, "not_following")

    def test_post(self):
        good = {"postId": "p-new", "userId": "cy", "text": "hello"}
        self.bad_fields("Post", good)
        # 1-280 characters, counted as code points
        for text in ("x" * 281, "é" * 281, "\U0001F600" * 281):
            self.refused("Post", dict(good, text=text), 400,
                         "invalid_argument")
        # fields, then the user, then the duplicate (deleted ones included)
        self.refused("Post", {"postId": "p1", "userId": "nobody",
                              "text": "x" * 281}, 400, "invalid_argument")
        self.refused("Post", {"postId": "p1", "userId": "nobody",
                              "text": "x"}, 404, "user_not_found")
        self.refused("Post", {"postId": "p1", "userId": "cy", "text": "x"},
                     409, "post_exists")
        self.refused("Post", {"postId": "gone", "userId": "ada",
                              "text": "x"}, 409, "post_exists")
        ans = self.ok("Post", dict(good, text="\U0001F600" * 280))
        self.assertEqual(ans["events"][0]["type"], "PostPublished")
        self.ok("Post", {"postId": "p-e", "userId": "cy", "text": "é" * 280})
        self.refused("Post", dict(good, text="again"), 409, "post_exists")

    def test_like(self):
        good = {"postId": "p1", "userId": "cy"}
        self.bad_fields("Like", good)
        # the post (live) first, then the user, then the duplicate
        self.refused("Like", {"postId": "nope", "userId": "nobody"}, 404,
                     "post_not_found")
        self.refused("Like", {"postId": "gone", "userId": "cy"}, 404,
                     "post_not_found")
        self.refused("Like", {"postId": "p1", "userId": "nobody"}, 404,
                     "user_not_found")
        self.refused("Like", {"postId": "p1", "userId": "bob"}, 409,
                     "already_liked")
        ans = self.ok("Like", {"postId": "p1", "userId": "ada"})  # her own
        self.assertEqual(ans["events"][0]["type"], "PostLiked")
        self.refused("Like", {"postId": "p1", "userId": "ada"}, 409,
                     "already_liked")

    def test_delete_post(self):
        self.ok("Post", {"postId": "d1", "userId": "bob", "text": "bye"})
        good = {"postId": "d1", "userId": "bob"}
        self.bad_fields("DeletePost", good)
        self.refused("DeletePost", {"postId": "nope", "userId": "bob"}, 404,
                     "post_not_found")
        self.refused("DeletePost", {"postId": "gone", "userId": "ada"}, 404,
                     "post_not_found")
        self.refused("DeletePost", {"postId": "d1", "userId": "nobody"}, 404,
                     "user_not_found")
        self.refused("DeletePost", {"postId": "d1", "userId": "ada"}, 422,
                     "not_author")
        ans = self.ok("DeletePost", good)
        self.assertEqual(ans["events"][0]["type"], "PostDeleted")
        self.refused("DeletePost", good, 404, "post_not_found")
        self.refused("Like", {"postId": "d1", "userId": "ada"}, 404,
                     "post_not_found")


# ---- queries: each answer --------------------------------------------------

class Queries(ServerTest):

    def test_answers(self):
        t0 = int(time.time())
        self.ok("RegisterUser", {"userId": "ada", "name": "Ada Lovelace"})
        self.ok("RegisterUser", {"userId": "bob", "name": "Bob"})
        self.ok("RegisterUser", {"userId": "cy", "name": "Cy"})
        self.ok("Follow", {"followerId": "bob", "followeeId": "ada"})
        self.ok("Follow", {"followerId": "bob", "followeeId": "cy"})
        seq = {}
        for pid, uid, text in (("p1", "ada", "Hello, wörld!"),
                               ("p2", "cy", "Café au lait"),
                               ("p3", "bob", "my own post"),
                               ("p4", "ada", "a CAFE in the world")):
            seq[pid] = self.ok("Post", {"postId": pid, "userId": uid,
                                        "text": text})["events"][0][
                                            "position"]
        self.ok("Like", {"postId": "p2", "userId": "bob"})
        self.ok("Like", {"postId": "p2", "userId": "ada"})
        pos = self.ok("Like", {"postId": "p1", "userId": "bob"})["position"]
        t1 = int(time.time()) + 1

        st, p1 = self.ask("post", pos, postId="p1")
        self.assertEqual(st, 200)
        self.assertTrue(t0 <= p1["created_at"] <= t1, p1)
        self.assertEqual(p1, {"postId": "p1", "userId": "ada",
                              "name": "Ada Lovelace", "text": "Hello, wörld!",
                              "created_at": p1["created_at"], "likes": 1})
        at = {pid: self.ask("post", pos, postId=pid)[1]["created_at"]
              for pid in seq}

        def item(pid, uid, name, text):
            return {"postId": pid, "userId": uid, "name": name, "text": text,
                    "created_at": at[pid]}
        i1 = item("p1", "ada", "Ada Lovelace", "Hello, wörld!")
        i2 = item("p2", "cy", "Cy", "Café au lait")
        i3 = item("p3", "bob", "Bob", "my own post")
        i4 = item("p4", "ada", "Ada Lovelace", "a CAFE in the world")

        self.assertEqual(self.ask("user", pos, userId="ada"),
                         (200, {"userId": "ada", "name": "Ada Lovelace",
                                "followers": 1, "following": 0, "posts": 2}))
        self.assertEqual(self.ask("user", pos, userId="bob")[1],
                         {"userId": "bob", "name": "Bob", "followers": 0,
                          "following": 2, "posts": 1})
        # the followees' posts, not one's own, newest first
        self.assertEqual(self.ask("timeline", pos, userId="bob"),
                         (200, {"items": [i4, i2, i1], "next_cursor": None}))
        st, page = self.ask("timeline", pos, userId="bob", limit=2)
        self.assertEqual(page, {"items": [i4, i2],
                                "next_cursor": str(seq["p2"])})
        self.assertEqual(self.ask("timeline", pos, userId="bob", limit=2,
                                  cursor=page["next_cursor"])[1],
                         {"items": [i1], "next_cursor": None})
        # an exactly full last page has no next cursor
        self.assertEqual(self.ask("timeline", pos, userId="bob", limit=3)[1],
                         {"items": [i4, i2, i1], "next_cursor": None})
        self.assertEqual(self.ask("timeline", pos, userId="ada")[1],
                         {"items": [], "next_cursor": None})
        self.assertEqual(self.ask("user_posts", pos, userId="ada")[1],
                         {"items": [i4, i1], "next_cursor": None})
        self.assertEqual(self.ask("user_posts", pos, userId="ada",
                                  limit=1)[1],
                         {"items": [i4], "next_cursor": str(seq["p4"])})
        self.assertEqual(self.ask("user_posts", pos, userId="bob")[1],
                         {"items": [i3], "next_cursor": None})
        self.assertEqual(self.ask("trending", pos),
                         (200, {"items": [
                             {"postId": "p2", "userId": "cy", "likes": 2},
                             {"postId": "p1", "userId": "ada", "likes": 1}]}))
        self.assertEqual(self.ask("trending", pos, limit=1)[1]["items"],
                         [{"postId": "p2", "userId": "cy", "likes": 2}])
        # whole words, folded: café matches CAFE; "caf" matches nothing
        self.assertEqual(self.ask("search_posts", pos, q="café")[1],
                         {"items": [i4, i2], "next_cursor": None})
        self.assertEqual(self.ask("search_posts", pos, q="WORLD cafe")[1],
                         {"items": [i4], "next_cursor": None})
        # ö folds to o
        self.assertEqual(self.ask("search_posts", pos, q="wörld,")[1],
                         {"items": [i4, i1], "next_cursor": None})
        self.assertEqual(self.ask("search_posts", pos, q="HELLO-world")[1],
                         {"items": [i1], "next_cursor": None})
        self.assertEqual(self.ask("search_posts", pos, q="caf")[1],
                         {"items": [], "next_cursor": None})
        self.assertEqual(self.ask("search_posts", pos, q="cafe", limit=1)[1],
                         {"items": [i4], "next_cursor": str(seq["p4"])})

        # a delete takes the post out of every answer
        pos = self.ok("DeletePost", {"postId": "p2", "userId": "cy"})[
            "position"]
        self.assertEqual(self.ask("post", pos, postId="p2")[0], 404)
        self.assertEqual(self.ask("timeline", pos, userId="bob")[1]["items"],
                         [i4, i1])
        self.assertEqual(self.ask("user", pos, userId="cy")[1]["posts"], 0)
        self.assertEqual(self.ask("trending", pos)[1]["items"],
                         [{"postId": "p1", "userId": "ada", "likes": 1}])
        self.assertEqual(self.ask("search_posts", pos, q="cafe")[1]["items"],
                         [i4])
        # an unfollow takes the followee's posts out of the timeline
        pos = self.ok("Unfollow", {"followerId": "bob", "followeeId": "ada"})[
            "position"]
        self.assertEqual(self.ask("timeline", pos, userId="bob")[1],
                         {"items": [], "next_cursor": None})
        self.assertEqual(self.ask("user", pos, userId="ada")[1]["followers"],
                         0)

    def test_not_found_and_bad_parameters(self):
        pos = self.ok("RegisterUser", {"userId": "zed", "name": "Zed"})[
            "position"]
        for name, params, code in (
                ("post", {"postId": "nope"}, "post_not_found"),
                ("user", {"userId": "nope"}, "user_not_found"),
                ("timeline", {"userId": "nope"}, "user_not_found"),
                ("user_posts", {"userId": "nope"}, "user_not_found")):
            st, ans = self.c.query(name, min_position=pos, **params)
            self.assertEqual((st, ans["error"]["code"]), (404, code))
        bad = [("post", {}), ("user", {}), ("timeline", {}),
               ("user_posts", {}), ("search_posts", {}),
               ("user", {"userId": "x" * 65})]
        for name in ("timeline", "user_posts", "search_posts"):
            p = {"q": "a"} if name == "search_posts" else {"userId": "zed"}
            for lim in ("0", "101", "-1", "abc", "1.5", "20x"):
                bad.append((name, dict(p, limit=lim)))
            for cur in ("abc", "-3", "0", "1.5", "99999999999999999999"):
                bad.append((name, dict(p, cursor=cur)))
        for lim in ("0", "101", "x"):
            bad.append(("trending", {"limit": lim}))
        # q: 1 to 10 words
        for q in ("!!!", "...,;", " ", "a b c d e f g h i j k"):
            bad.append(("search_posts", {"q": q}))
        for name, params in bad:
            st, ans = self.c.query(name, min_position=pos, **params)
            self.assertEqual(st, 400, (name, params, ans))
            self.assertIn(ans["error"]["code"], ("invalid_parameter",
                                                 "missing_parameter",
                                                 "invalid_cursor"))
        for lim in ("1", "100"):
            self.assertEqual(self.c.query("timeline", min_position=pos,
                                          userId="zed", limit=lim)[0], 200)
            self.assertEqual(self.c.query("trending", limit=lim)[0], 200)
        st, ans = self.c.query("search_posts", q="a b c d e f g h i j")
        self.assertEqual(st, 200, ans)


# ---- a randomized session against the model --------------------------------

VOCAB = ["café", "Cafe", "CAFÉ", "naïve", "naive", "hello", "Hello", "world",
         "straße", "Привет", "привет", "мир", "日本語", "e-mail", "don't",
         "x.y", "école", "ÉCOLE", "Ärger", "arger", "tea", "coffee", "green",
         "red", "blue", "#tag", "@ada", "1984", "3.14", "co-op",
         "e\u0301t\u00e9"]
JOIN = [" ", " ", ", ", "! ", " - ", "...", "\n", "/", "\u2014", "? ", "_"]


def random_text(rnd, words=None):
    n = words or rnd.randint(1, 12)
    out = rnd.choice(["", "", "(", "¿", "\""])
    for i in range(n):
        out += rnd.choice(VOCAB) + (rnd.choice(JOIN) if i < n - 1 else "")
    return out + rnd.choice(["", "", ".", "!!", ")"])


class Session(ServerTest):
    """A few thousand random commands, each outcome predicted by the model;
    every few hundred, every query compared with it."""

    OPS = 4500
    SEED = int(os.environ.get("SOCIAL_SEED", "0")) or random.randrange(1 << 30)

    def test_session(self):
        rnd = random.Random(self.SEED)
        sys.stderr.write("\n(Session seed %d)\n" % self.SEED)
        self.m = Model()
        self.pos = 0
        self.rnd = rnd
        authors = ["a%d" % i for i in range(8)]
        users = ["u%d" % i for i in range(24)] + ["fan"]
        for u in authors + users:
            self.run_cmd("RegisterUser", {"userId": u, "name": u.upper()})
        for a in authors:
            self.run_cmd("Follow", {"followerId": "fan", "followeeId": a})
        people = authors + users + ["ghost"]
        others = [u for u in people if u != "fan"]
        n_posts = 0

        def any_post():
            return rnd.choice(list(self.m.posts) + ["nopost"])

        for i in range(self.OPS):
            r = rnd.random()
            if r < 0.50:
                n_posts += 1
                pid = "p%d" % n_posts if rnd.random() > 0.04 else any_post()
                uid = rnd.choice(authors) if rnd.random() < 0.85 else \
                    rnd.choice(people)
                text = random_text(rnd)
                if rnd.random() < 0.02:
                    text = rnd.choice(["x" * 281, "é" * 280, "ü" * 281, ""])
                self.run_cmd("Post", {"postId": pid, "userId": uid,
                                      "text": text})
            elif r < 0.70:
                self.run_cmd("Like", {"postId": any_post(),
                                      "userId": rnd.choice(people)})
            elif r < 0.78:
                pid = any_post()
                p = self.m.posts.get(pid)
                uid = p["author"] if p and rnd.random() < 0.7 else \
                    rnd.choice(people)
                self.run_cmd("DeletePost", {"postId": pid, "userId": uid})
            elif r < 0.88:  # the fan's follows change below only
                self.run_cmd("Follow", {"followerId": rnd.choice(others),
                                        "followeeId": rnd.choice(people)})
            elif r < 0.94:
                pairs = sorted(f for f in self.m.follows if f[0] != "fan")
                pair = rnd.choice(pairs) if pairs and rnd.random() < 0.7 \
                    else (rnd.choice(others), rnd.choice(people))
                self.run_cmd("Unfollow", {"followerId": pair[0],
                                          "followeeId": pair[1]})
            elif r < 0.95:
                # the fan drops an author or takes one back: the dropped
                # author's posts leave the 1,000, older ones come back
                on = [a for a in authors if ("fan", a) in self.m.follows]
                off = [a for a in authors if a not in on]
                drop = not off or (len(on) > 6 and rnd.random() < 0.5)
                self.run_cmd("Unfollow" if drop else "Follow",
                             {"followerId": "fan", "followeeId":
                              rnd.choice(on if drop else off)})
            elif r < 0.97:
                uid = rnd.choice(people + ["n%d" % i])
                name = rnd.choice(["N", "é" * 100, "é" * 101, "x" * 100,
                                   "\U0001F600 Ω", ""])
                self.run_cmd("RegisterUser", {"userId": uid, "name": name})
            else:
                name = rnd.choice(list(FIELDS))
                body = {f: rnd.choice(people) for f, _ in FIELDS[name]}
                k = rnd.choice(list(body))
                body[k] = rnd.choice([None, 3, "", "bad id", "x" * 65, []])
                if rnd.random() < 0.3:
                    body["extra"] = 1
                self.run_cmd(name, body)
            if i % 800 == 799:
                self.compare_all()
        # past the cap: a delete and an unfollow bring older posts back
        def reachable():
            return [i["postId"] for i in self.m.timeline(
                "fan", limit=TL_MAX + 1)[1]["items"]]
        eligible = self.m.live(lambda i, p: ("fan", p["author"]) in
                               self.m.follows)
        sys.stderr.write("(fan: %d eligible posts)\n" % len(eligible))
        self.assertGreater(len(eligible), TL_MAX + 50)
        before = reachable()
        self.run_cmd("DeletePost", {"postId": before[0], "userId":
                                    self.m.posts[before[0]]["author"]})
        after = reachable()
        self.assertEqual(after[:-1], before[1:])  # the 1,001st is back
        self.assertNotIn(after[-1], before)
        self.compare_all()
        self.run_cmd("Unfollow", {"followerId": "fan", "followeeId":
                                  self.m.posts[after[0]]["author"]})
        self.assertEqual(len(reachable()), min(TL_MAX, len(self.m.live(
            lambda i, p: ("fan", p["author"]) in self.m.follows))))
        self.compare_all()

        # the read model is what a replay of the log gives ...
        st, v = self.c.request("POST", "/projections/social/verify")
        self.assertEqual((st, v["differences"]), (200, 0), v)
        # ... and a rebuild from the log answers the same
        st, ans = self.c.request("POST", "/projections/social/rebuild")
        self.assertEqual(st, 202, ans)
        deadline = time.time() + 300
        while self.c.request("GET", "/projections")[1]["projections"][0][
                "state"] != "live":
            self.assertLess(time.time(), deadline)
            time.sleep(0.1)
        self.compare_all()

    def run_cmd(self, name, body):
        want = self.m.check(name, body)
        st, ans = self.c.cmd(name, body)
        got = (st, ans["error"]["code"] if st != 200 else None)
        self.assertEqual(got, want, (name, body, ans))
        if st == 200:
            self.m.apply(name, body, ans)
            self.pos = ans["position"]

    def same(self, got, want, what):
        if got != want:
            self.fail("%s:\n got  %s\n want %s" % (
                what, json.dumps(got, ensure_ascii=False)[:2000],
                json.dumps(want, ensure_ascii=False)[:2000]))

    def compare(self, name, model_fn, **params):
        st, ans = self.ask(name, self.pos, **params)
        want = model_fn(**params)
        if st != 200:
            ans = ans["error"]["code"]
        self.same((st, ans), want, "%s %r" % (name, params))
        return ans

    def pages(self, name, model_fn, **params):
        """Pages through a paged query to its end, each page compared."""
        cursor, n = None, 0
        while True:
            p = dict(params) if cursor is None else dict(params,
                                                         cursor=cursor)
            ans = self.compare(name, model_fn, **p)
            if not isinstance(ans, dict):
                return n
            n += len(ans["items"])
            cursor = ans["next_cursor"]
            if cursor is None:
                return n

    def compare_all(self):
        m, rnd = self.m, self.rnd
        for uid in list(m.users) + ["ghost"]:
            st, ans = self.ask("user", self.pos, userId=uid)
            self.same((st, ans if st == 200 else ans["error"]["code"]),
                      m.user(uid), "user " + uid)
        for pid in rnd.sample(sorted(m.posts), min(60, len(m.posts))):
            st, ans = self.ask("post", self.pos, postId=pid)
            self.same((st, ans if st == 200 else ans["error"]["code"]),
                      m.post(pid), "post " + pid)
        n = self.pages("timeline", lambda **p: m.timeline(p["userId"],
                                                          int(p["limit"]),
                                                          p.get("cursor")),
                       userId="fan", limit=100)
        self.assertLessEqual(n, TL_MAX)
        for uid in rnd.sample(sorted(m.users), 4) + ["ghost"]:
            lim = rnd.choice([1, 7, 20, 100])
            for q, fn in (("timeline", m.timeline),
                          ("user_posts", m.user_posts)):
                self.pages(q, lambda **p: fn(p["userId"], int(p["limit"]),
                                             p.get("cursor")),
                           userId=uid, limit=lim)
        for lim in (1, 10, 100):
            self.compare("trending", lambda **p: m.trending(int(p["limit"])),
                         limit=lim)
        for i in range(12):
            q = random_text(rnd, rnd.randint(1, 3))
            if i == 0:
                q = "zzz " + q
            self.pages("search_posts", lambda **p: m.search(
                p["q"], int(p["limit"]), p.get("cursor")),
                q=q, limit=rnd.choice([5, 25, 100]))


class WordsModel(unittest.TestCase):
    """The model's pure-Python words agree with SQLite's on the session's
    texts (they stand in for them where SQLite has no FTS5)."""

    @unittest.skipUnless(WORDS.db, "Python's SQLite has no FTS5")
    def test_python_words_are_sqlites(self):
        rnd = random.Random(7)
        for _ in range(2000):
            text = random_text(rnd)
            self.assertEqual(Words.python(text), WORDS.sqlite(text), text)


# ---- scale, scaled down: 5,000 followers ------------------------------------

def parallel(port, jobs, threads=16):
    """Runs (command, body) jobs on `threads` connections; returns the
    answers in order."""
    out = [None] * len(jobs)
    nxt = iter(range(len(jobs)))
    lock = threading.Lock()

    def work():
        c = Client(port)
        while True:
            with lock:
                i = next(nxt, None)
            if i is None:
                break
            out[i] = c.cmd(*jobs[i])
        c.close()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


class Scale(ServerTest):
    FOLLOWERS = int(os.environ.get("SOCIAL_FOLLOWERS", "5000"))
    FOLLOWING = 2000

    def test_big_author_and_big_reader(self):
        port = self.server.port
        fs = ["f%d" % i for i in range(self.FOLLOWERS)]
        jobs = [("RegisterUser", {"userId": u, "name": u})
                for u in ["star", "lonely", "reader"] + fs]
        jobs += [("Follow", {"followerId": f, "followeeId": "star"})
                 for f in fs]
        t = time.time()
        pos = 0
        for st, ans in parallel(port, jobs):
            self.assertEqual(st, 200, ans)
            pos = max(pos, ans["position"])
        sys.stderr.write("\n(%d commands in %.1f s)\n"
                         % (len(jobs), time.time() - t))
        self.assertEqual(self.ask("user", pos, userId="star")[1][
            "followers"], self.FOLLOWERS)

        # Post's latency does not depend on the followers: interleaved
        # posts of an author with none and one with all of them
        lat = {"lonely": [], "star": []}
        for i in range(30):
            for who in ("lonely", "star"):
                t = time.perf_counter()
                pos = self.ok("Post", {"postId": "%s-%d" % (who, i),
                                       "userId": who,
                                       "text": "post %d" % i})["position"]
                lat[who].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in lat.items()}
        sys.stderr.write("(Post median: %.2f ms with 0 followers, %.2f ms "
                         "with %d)\n" % (med["lonely"] * 1e3,
                                         med["star"] * 1e3, self.FOLLOWERS))
        self.assertLess(med["star"], 3 * med["lonely"] + 0.005, med)

        # every follower's timeline shows a new post within a second: the
        # last follower's, polled without waiting, and a sample
        self.ask("timeline", pos, userId=fs[-1], limit=1)  # caught up
        t = time.perf_counter()
        pos = self.ok("Post", {"postId": "news", "userId": "star",
                               "text": "big news"})["position"]
        while True:
            st, tl = self.c.query("timeline", userId=fs[-1], limit=1)
            if st == 200 and tl["items"] and \
                    tl["items"][0]["postId"] == "news":
                break
            self.assertLess(time.perf_counter() - t, 1.0)
        seen = time.perf_counter() - t
        sys.stderr.write("(the last follower saw the post after %.1f ms)\n"
                         % (seen * 1e3))
        self.assertLess(seen, 1.0)
        for f in random.sample(fs, 50):
            st, tl = self.ask("timeline", pos, userId=f, limit=1)
            self.assertEqual(tl["items"][0]["postId"], "news")

        # a reader following 2,000 users who each posted: a page costs
        # F × page + F + 1,000 rows, and paging stays exact past the cap
        many = fs[:self.FOLLOWING]
        jobs = [("Follow", {"followerId": "reader", "followeeId": f})
                for f in many]
        jobs += [("Post", {"postId": "by-" + f, "userId": f, "text": "hi"})
                 for f in many]
        seq = {}
        for (name, body), (st, ans) in zip(jobs, parallel(port, jobs)):
            self.assertEqual(st, 200, ans)
            if name == "Post":
                seq[body["postId"]] = ans["events"][0]["position"]
        pos = max(seq.values())
        want = sorted(seq, key=lambda p: -seq[p])[:TL_MAX]
        times, got, cursor = [], [], None
        while True:
            params = {"userId": "reader", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            t = time.perf_counter()
            st, page = self.ask("timeline", pos, **params)
            times.append(time.perf_counter() - t)
            self.assertEqual(st, 200, page)
            got += [i["postId"] for i in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual(got, want)
        sys.stderr.write("(timeline of a reader following %d: %.1f ms a "
                         "page of 100, median of %d)\n"
                         % (self.FOLLOWING, statistics.median(times) * 1e3,
                            len(times)))
        self.assertLess(statistics.median(times), 1.0)


# ---- README.md's walk-through, run as written -------------------------------

class Readme(unittest.TestCase):
    """The ```sh blocks under "## Walk-through" run with bash and curl, H
    pointing at a fresh server; the `# →` lines under a command are its
    expected output, with `…` standing for any text."""

    def test_walk_through(self):
        with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
            text = f.read()
        start = text.index("## Walk-through")
        end = text.find("\n## ", start + 1)
        section = text[start:end if end > 0 else None]
        steps = []
        for block in re.findall(r"```sh\n(.*?)\n```", section, re.S):
            cmd, want = [], []
            for line in block.split("\n") + [""]:
                if line.startswith("# →"):
                    want.append(line[3:].strip())
                    continue
                if want or (not line.strip() and cmd):
                    if cmd:
                        steps.append(("\n".join(cmd), " ".join(want)))
                    cmd, want = [], []
                if line.strip() and not line.startswith("#"):
                    cmd.append(line)
        self.assertGreater(len(steps), 10)
        server = Server()
        try:
            env = dict(os.environ, H=server.url)
            for cmd, want in steps:
                p = subprocess.run(["bash", "-c", "set -e\n" + cmd], env=env,
                                   capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(p.returncode, 0, (cmd, p.stderr))
                self.assertTrue(want, "no answer shown for: " + cmd)
                pattern = ".*".join(re.escape(part)
                                    for part in want.split("…"))
                self.assertRegex(p.stdout.strip(), "^" + pattern + "$",
                                 cmd)
        finally:
            server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--cleave")
    ap.add_argument("--plugin")
    args, rest = ap.parse_known_args()
    find_programs(args)
    unittest.main(argv=[sys.argv[0]] + rest)
