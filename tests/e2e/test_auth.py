"""--auth-token against the real server, beyond test_http's basics: which
routes need the token (commands, /events, rebuild, resume; queries only
with --auth-queries), which stay open (/health, /metrics, /projections),
what counts as the token (scheme case, exact bytes, no prefix or suffix),
that a refused request does nothing and reveals nothing (401 comes before
routing to a command, before body checks), --auth-token-file, and binding
beyond loopback only with a token.  Python standard library only.
"""
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

TOKEN = "t0k-3n_with.odd:chars"
GOOD = {"Authorization": "Bearer " + TOKEN}
USER = {"userId": "a1", "name": "Ann", "country": "SE"}


class AuthToken(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server("--auth-token", TOKEN, "--auth-queries",
                            name="auth").start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self):
        self.c = self.srv.client()

    def head(self):
        return self.c.get("/health").json()["head"]

    def assert_401(self, r):
        self.assertEqual(r.status, 401, r)
        self.assertIn("Bearer", r.header("www-authenticate"))
        self.assertEqual(r.json()["error"]["code"], "unauthorized")

    def test_routes_that_need_the_token(self):
        h0 = self.head()
        c = self.c
        self.assert_401(c.command("RegisterUser", USER))
        self.assert_401(c.command("NoSuchCommand", USER))  # no probing
        self.assert_401(c.command("RegisterUser", b"{not json"))
        self.assert_401(c.get("/events"))
        self.assert_401(c.post("/projections/catalog/rebuild"))
        self.assert_401(c.post("/projections/catalog/resume"))
        self.assert_401(c.get("/queries/product?productId=p1"))
        self.assert_401(c.get("/queries/nope?x=%zz"))
        self.assertEqual(self.head(), h0, "a refused request wrote")

    def test_routes_that_stay_open(self):
        for path in ("/health", "/metrics", "/projections"):
            self.assertEqual(self.c.get(path).status, 200, path)
        # unknown routes are 404 with or without a token
        self.assertEqual(self.c.get("/nope").status, 404)

    def test_what_counts_as_the_token(self):
        c = self.c
        bad = ["Bearer", "Bearer ", "Bearer " + TOKEN[:-1],
               "Bearer " + TOKEN + "x", "Bearer x" + TOKEN,
               "Bearer " + TOKEN.upper(), "Basic " + TOKEN, TOKEN,
               "Bearer  " + TOKEN[1:], "Bearer " + TOKEN + " ",
               "Token " + TOKEN]
        for v in bad:
            self.assert_401(c.get("/events", headers={"Authorization": v}))
        for v in ("Bearer " + TOKEN, "bearer " + TOKEN, "BEARER " + TOKEN,
                  "Bearer   " + TOKEN):
            r = c.get("/events", headers={"Authorization": v})
            self.assertEqual(r.status, 200, (v, r))

    def test_with_the_token_everything_works(self):
        c = self.c
        r = c.command("RegisterUser", dict(USER, userId="a-ok"), GOOD)
        self.assertEqual(r.status, 200, r)
        pos = r.json()["position"]
        self.assertEqual(c.get("/queries/user_orders?userId=a-ok"
                               "&min_position=%d" % pos,
                               headers=GOOD).status, 200)
        self.assertEqual(c.get("/events?from=0", headers=GOOD).status, 200)
        self.assertEqual(c.post("/projections/catalog/rebuild",
                                headers=GOOD).status, 202)
        self.assertEqual(c.post("/projections/catalog/resume",
                                headers=GOOD).status, 409)  # not parked
        # with the token, validation answers as usual
        self.assertEqual(c.command("RegisterUser", b"{not json",
                                   GOOD).status, 400)


class AuthConfig(unittest.TestCase):
    def test_token_file_and_queries_open_by_default(self):
        d = ct.tmpdir("authfile")
        path = os.path.join(d, "token")
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o600)
        with ct.Server("--auth-token-file", path, name="authf") as srv:
            c = srv.client()
            self.assertEqual(c.command("RegisterUser", USER).status, 401)
            r = c.command("RegisterUser", USER, GOOD)
            self.assertEqual(r.status, 200, r)
            # without --auth-queries, queries are open
            self.assertEqual(c.get("/queries/user_orders?userId=a1")
                             .status, 200)

    def test_non_loopback_needs_a_token(self):
        d = ct.tmpdir("nonloop")
        out = subprocess.run([ct.BIN, "serve", "--listen", "0.0.0.0:0",
                              "--data", d], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 2)
        self.assertIn("auth-token", out.stderr)
        out = subprocess.run([ct.BIN, "serve", "--listen", "[::]:0",
                              "--data", d], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 2)
        # with a token it starts (any address; the test talks to
        # loopback only)
        # Server passes --listen 127.0.0.1:0 first; the later flag wins
        srv = ct.Server("--auth-token", TOKEN, "--listen", "0.0.0.0:0",
                        name="nonloop-ok").start()
        try:
            c = srv.client()
            self.assertEqual(c.get("/health").status, 200)
            self.assertEqual(c.get("/events").status, 401)
            self.assertEqual(c.get("/events", headers=GOOD).status, 200)
        finally:
            srv.stop()
            srv.cleanup()

    def test_data_directory_is_private(self):
        # a data directory the server creates itself (tmpdir's are 0700
        # already)
        data = os.path.join(ct.tmpdir("perm"), "data")
        with ct.Server(data=data, name="perm") as srv:
            c = srv.client()
            c.command("RegisterUser", USER)
            time.sleep(0.2)
            mode = os.stat(srv.data).st_mode & 0o777
            self.assertEqual(mode, 0o700, oct(mode))
            # every directory inside is 0700 too; no file is writable by
            # group or others (SQLite creates its files 0644 under umask
            # 022: readable only through the 0700 directories, see
            # docs/security.md)
            for root, dirs, files in os.walk(srv.data):
                for n in dirs:
                    m = os.stat(os.path.join(root, n)).st_mode & 0o777
                    self.assertEqual(m, 0o700, "%s/%s is %o" % (root, n, m))
                for n in files:
                    m = os.stat(os.path.join(root, n)).st_mode & 0o777
                    self.assertEqual(m & 0o022, 0, "%s/%s is %o" % (root, n,
                                                                     m))


if __name__ == "__main__":
    unittest.main(verbosity=2)
