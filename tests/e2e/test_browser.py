"""Browser safety and HTTP conformance (docs/security.md, "A web page in
the user's browser"; docs/http-api.md, "Checks before routing"), against
the real binary.

A server on loopback is still reachable from the pages the user's own
browser opens.  What such a page could send is refused before routing,
with the error JSON, and nothing is written:

- a method no route implements → 501; a known one a route does not take
  → 405 with Allow;
- HTTP/1.1 without exactly one Host → 400 (HTTP/1.0 may omit it);
- a Host (or an absolute-form target's authority) that is not one of the
  server's names → 403 forbidden_host (DNS rebinding);
- an Origin other than the server's own or an --allow-origin one, "null"
  included → 403 forbidden_origin;
- a Content-Type other than application/json → 415
  unsupported_media_type;
- then the token (401), then routing (404, the handler).

Each refusal is tried on every route and method (queries waiting for a
position included) and must leave the log head unchanged and start no
rebuild; the order of the checks is tried pairwise; what must still work
is tried too (HTTP/1.0 without Host, JSON with parameters, no
Content-Type, the loopback names, --allow-host, --allow-origin and its
CORS answers, the server's own origin, absolute-form targets).  Python
standard library only.
"""
import http.client
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

TOKEN = "browser-token"
AUTH = {"Authorization": "Bearer " + TOKEN}
FORMS = ["text/plain", "text/plain;charset=UTF-8",
         "application/x-www-form-urlencoded",
         "multipart/form-data; boundary=----cleave", "TEXT/PLAIN"]


def user(uid):
    return {"userId": uid, "name": "Mallory", "country": "SE"}


class Conn:
    """One request per connection, headers exactly as given (no Host
    unless asked for): what a hostile page's browser, or anyone, sends."""

    def __init__(self, port):
        self.port = port

    def __call__(self, method, path, headers=None, body=None, host=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.putrequest(method, path, skip_host=True,
                         skip_accept_encoding=True)
            hdrs = dict(headers or {})
            if host and not any(k.lower() == "host" for k in hdrs):
                hdrs["Host"] = "127.0.0.1:%d" % self.port
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            if body is not None:
                hdrs.setdefault("Content-Length", str(len(body)))
            for k, v in hdrs.items():
                c.putheader(k, v)
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            return ct.Response(r.status, {k.lower(): v for k, v in
                                          r.getheaders()}, data)
        finally:
            c.close()


class Base(unittest.TestCase):
    args = ()
    env = None
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(*cls.args, env=cls.env,
                            name="browser").start()
        cls.port = cls.srv.port
        cls.req = Conn(cls.port)
        c = cls.srv.client()
        r = c.command("AddProduct", {"productId": "p1", "name": "Mug",
                                     "category": "kitchen",
                                     "price_cents": 100, "stock": 5},
                      AUTH)
        assert r.status == 200, r
        # the read model has it before any test reads it (queries answer
        # from the read model, which on a busy machine may lag the write)
        q = c.get("/queries/product?productId=p1&min_position=%d"
                  "&wait_ms=10000" % r.json()["position"], AUTH)
        assert q.status == 200, q

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def head(self):
        return self.srv.client().get("/health").json()["head"]

    def projections(self):
        return {p["name"]: (p["state"], p["version"]) for p in
                self.srv.client().get("/projections").json()["projections"]}

    def refused(self, r, status, code, what, head=False):
        """r is the refusal `status` with the error JSON of `code` (a HEAD
        answer has no body to check)."""
        with self.subTest(what):
            self.assertEqual(r.status, status, "%s: %r" % (what, r))
            if not head:
                ct.check_error(r, status, code)
            self.assertTrue(r.header("x-trace-id"), what)
            self.assertIsNone(r.header("access-control-allow-origin"),
                              what)


class Refusals(Base):
    """Each refusal on every route and method; nothing written."""

    def routes(self):
        """(method, path, body) for every route the server has."""
        head = self.head()
        return [
            ("GET", "/health", None), ("HEAD", "/health", None),
            ("GET", "/metrics", None), ("GET", "/projections", None),
            ("GET", "/events?from=0", None), ("GET", "/trace/abc", None),
            ("GET", "/queries/product?productId=p1", None),
            ("HEAD", "/queries/product?productId=p1", None),
            # a live query: it would wait for a position not reached yet
            ("GET", "/queries/product?productId=p1&min_position=%d"
             "&wait_ms=5000" % (head + 1000), None),
            ("POST", "/commands/RegisterUser", user("ru1")),
            ("POST", "/commands/NoSuchCommand", user("ru2")),
            ("POST", "/projections/catalog/rebuild", None),
            ("POST", "/projections/catalog/resume", None),
            ("POST", "/projections/catalog/verify", None),
            ("OPTIONS", "/commands/RegisterUser", None),
            ("OPTIONS", "/queries/product", None),
            ("GET", "/nope", None),
        ]

    def check(self, status, code, headers, why):
        h0, p0 = self.head(), self.projections()
        for m, p, body in self.routes():
            t0 = time.time()
            r = self.req(m, p, dict(headers), body)
            self.refused(r, status, code, "%s %s, %s" % (m, p[:40], why),
                         head=m == "HEAD")
            self.assertLess(time.time() - t0, 3, "a refused query waited")
        self.assertEqual(self.head(), h0, why + ": the log moved")
        self.assertEqual(self.projections(), p0,
                         why + ": a rebuild started")
        r = self.srv.client().get("/events?stream=user-ru1", headers=AUTH)
        self.assertEqual(r.json()["events"], [], why)

    def test_forbidden_host(self):
        for host in ("evil.example", "evil.example:%d" % self.port,
                     "127.0.0.1.evil.example", "localhost.evil.example",
                     "LOCALHOST.EVIL.EXAMPLE", "127.0.0.2", "0.0.0.0",
                     "localhost..", "loca%6chost", "", ":%d" % self.port,
                     "[::2]", "x"):
            self.check(403, "forbidden_host", {"Host": host},
                       "Host %r" % host)

    def test_forbidden_origin(self):
        p = self.port
        for origin in ("http://evil.example", "null",
                       "http://127.0.0.1", "http://localhost:%d0" % p,
                       "https://127.0.0.1:%d" % p,
                       "http://127.0.0.1:%d/" % p,
                       "http://localhost:%d.evil.example" % p,
                       "http://evil.example, http://127.0.0.1:%d" % p,
                       "file://", "127.0.0.1:%d" % p, ""):
            self.check(403, "forbidden_origin", {"Origin": origin},
                       "Origin %r" % origin)

    def test_form_content_types(self):
        for t in FORMS + ["application/xml", "application/jsonx",
                          "text/json", ""]:
            self.check(415, "unsupported_media_type", {"Content-Type": t},
                       "Content-Type %r" % t)

    def test_unknown_methods(self):
        h0 = self.head()
        for m in ("PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "BREW",
                  "get", "Post", "PROPFIND"):
            for _, p, body in self.routes():
                r = self.req(m, p, body=body if body else b"{}")
                self.refused(r, 501, "not_implemented", m + " " + p)
        self.assertEqual(self.head(), h0)

    def test_405_with_allow(self):
        for m, p, allow in (("GET", "/commands/RegisterUser", "POST"),
                            ("HEAD", "/commands/RegisterUser", "POST"),
                            ("POST", "/queries/product", "GET, HEAD"),
                            ("POST", "/health", "GET, HEAD"),
                            ("GET", "/projections/catalog/rebuild",
                             "POST")):
            r = self.req(m, p, body=b"{}" if m == "POST" else None)
            self.refused(r, 405, "method_not_allowed", m + " " + p,
                         head=m == "HEAD")
            self.assertEqual(r.header("allow"), allow)

    def test_host_count(self):
        h0 = self.head()
        body = b'{"userId":"hc1","name":"M","country":"SE"}'
        for head in (b"", b"Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n",
                     b"Host: localhost\r\nHost: evil.example\r\n"):
            for v in (b"1.1", b"1.0") if head else (b"1.1",):
                r = ct.raw_request(self.port, b"POST /commands/RegisterUser "
                                   b"HTTP/" + v + b"\r\n" + head +
                                   b"Content-Length: %d\r\n\r\n" % len(body)
                                   + body)
                self.refused(r, 400, "invalid_header", "%r %r" % (v, head))
        for host in (b"127.0.0.1:abc", b"[::1", b"[nope]:80", b"a b",
                     b"127.0.0.1:80:80", b"user@127.0.0.1"):
            r = ct.raw_request(self.port, b"GET /health HTTP/1.1\r\nHost: "
                               + host + b"\r\n\r\n")
            self.assertIn(r.status, (400, 403), host)
            ct.check_error(r, r.status)
        self.assertEqual(self.head(), h0)


class Order(Base):
    """The order of the checks: framing, method, Host, Origin,
    Content-Type, token, routing."""
    args = ("--auth-token", TOKEN)

    def test_order(self):
        h0 = self.head()
        evil_host = {"Host": "evil.example"}
        evil_origin = {"Origin": "http://evil.example"}
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        cmd = "/commands/RegisterUser"
        body = user("ord1")
        cases = [
            # 501 before 405, Host, Origin, Content-Type, token, routing
            ("PUT", cmd, dict(evil_host, **evil_origin, **form), 501,
             "not_implemented"),
            ("BREW", "/nope", dict(evil_origin), 501, "not_implemented"),
            # 405 before Host
            ("GET", cmd, dict(evil_host, **form), 405,
             "method_not_allowed"),
            # Host before Origin, Content-Type and the token
            ("POST", cmd, dict(evil_host, **evil_origin, **form), 403,
             "forbidden_host"),
            ("POST", "/nope", dict(evil_host), 403, "forbidden_host"),
            # Origin before Content-Type and the token
            ("POST", cmd, dict(evil_origin, **form), 403,
             "forbidden_origin"),
            ("GET", "/events", {"Origin": "null"}, 403,
             "forbidden_origin"),
            # Content-Type (415) before the token (401)
            ("POST", cmd, dict(form), 415, "unsupported_media_type"),
            ("POST", "/projections/catalog/rebuild",
             {"Content-Type": "text/plain"}, 415,
             "unsupported_media_type"),
            # then the token, then routing
            ("POST", cmd, {}, 401, "unauthorized"),
            ("POST", "/commands/Nope", {}, 401, "unauthorized"),
            ("GET", "/nope", {}, 404, "not_found"),
            ("POST", "/commands/Nope", AUTH, 404, "not_found"),
        ]
        for m, p, hdrs, status, code in cases:
            r = self.req(m, p, hdrs, body if m in ("POST", "PUT") else None)
            self.refused(r, status, code, "%s %s %r" % (m, p, hdrs))
        # a missing Host (HTTP/1.1) is found before the Origin
        r = ct.raw_request(self.port, b"GET /events HTTP/1.1\r\n"
                           b"Origin: http://evil.example\r\n\r\n")
        self.refused(r, 400, "invalid_header", "no Host, evil Origin")
        # 501 before the missing Host
        r = ct.raw_request(self.port, b"DELETE /events HTTP/1.1\r\n\r\n")
        self.refused(r, 501, "not_implemented", "DELETE without Host")
        # framing errors come first of all (and close the connection)
        r = ct.raw_request(self.port, b"POST /commands/RegisterUser "
                           b"HTTP/1.1\r\nHost: evil.example\r\n"
                           b"Content-Length: 2\r\nTransfer-Encoding: "
                           b"chunked\r\n\r\n0\r\n\r\n")
        self.refused(r, 400, "invalid_header", "CL+TE, evil Host")
        self.assertEqual(r.header("connection"), "close")
        self.assertEqual(self.head(), h0)
        # OPTIONS needs no token (a CORS preflight never carries one)
        r = self.req("OPTIONS", "/events")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("allow"), "GET, HEAD, OPTIONS")

    def test_token_still_works(self):
        r = self.req("POST", "/commands/RegisterUser",
                     dict(AUTH, **{"Content-Type": "application/json"}),
                     user("ord-ok"))
        self.assertEqual(r.status, 200, r)


class Allowed(Base):
    """What must keep working on a server started with no flags."""

    def test_http10_without_host(self):
        h0 = self.head()
        body = b'{"userId":"h10","name":"Ann","country":"SE"}'
        r = ct.raw_request(self.port, b"POST /commands/RegisterUser "
                           b"HTTP/1.0\r\nContent-Length: %d\r\n\r\n"
                           % len(body) + body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.head(), h0 + 1)
        r = ct.raw_request(self.port, b"GET /health HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200, r)
        # with a Host, HTTP/1.0 is checked like HTTP/1.1
        r = ct.raw_request(self.port, b"GET /health HTTP/1.0\r\n"
                           b"Host: evil.example\r\n\r\n")
        self.refused(r, 403, "forbidden_host", "HTTP/1.0, evil Host")

    def test_json_content_types(self):
        for i, t in enumerate((None, "application/json",
                               "application/json; charset=utf-8",
                               "Application/JSON;charset=UTF-8",
                               "application/json ; x=y")):
            h = {"Content-Type": t} if t else {}
            r = self.req("POST", "/commands/RegisterUser", h,
                         user("ct%d" % i))
            self.assertEqual(r.status, 200, (t, r))
        # a query or GET with a JSON Content-Type is fine too
        r = self.req("GET", "/queries/product?productId=p1",
                     {"Content-Type": "application/json"})
        self.assertEqual(r.status, 200, r)

    def test_server_names(self):
        p = self.port
        for host in ("127.0.0.1", "127.0.0.1:%d" % p, "localhost",
                     "LocalHost:%d" % p, "localhost.", "localhost.:%d" % p,
                     "[::1]", "[::1]:%d" % p, "[0:0:0:0:0:0:0:1]:1",
                     "127.0.0.1:", "localhost:99999"):
            r = self.req("GET", "/health", {"Host": host})
            self.assertEqual(r.status, 200, (host, r))

    def test_own_origin(self):
        p = self.port
        h0 = self.head()
        for i, origin in enumerate(("http://127.0.0.1:%d" % p,
                                    "http://localhost:%d" % p,
                                    "HTTP://LOCALHOST:%d" % p,
                                    "http://[::1]:%d" % p)):
            r = self.req("POST", "/commands/RegisterUser",
                         {"Origin": origin,
                          "Content-Type": "application/json"},
                         user("own%d" % i))
            self.assertEqual(r.status, 200, (origin, r))
            self.assertEqual(r.header("access-control-allow-origin"),
                             origin)
            r = self.req("GET", "/queries/product?productId=p1",
                         {"Origin": origin})
            self.assertEqual(r.status, 200, (origin, r))
        self.assertEqual(self.head(), h0 + 4)
        # no Origin: no CORS headers
        r = self.req("GET", "/health")
        self.assertIsNone(r.header("access-control-allow-origin"))

    def test_absolute_form(self):
        """RFC 9112 3.2.2: an absolute-form target is served; its
        authority is the Host that is checked."""
        p = self.port
        for target in (b"http://127.0.0.1:%d/health" % p,
                       b"HTTP://localhost/health",
                       b"http://[::1]:%d/queries/product?productId=p1" % p):
            r = ct.raw_request(p, b"GET " + target + b" HTTP/1.1\r\n"
                               b"Host: 127.0.0.1:%d\r\n\r\n" % p)
            self.assertEqual(r.status, 200, (target, r))
        r = ct.raw_request(p, b"GET http://evil.example/health HTTP/1.1\r\n"
                           b"Host: 127.0.0.1:%d\r\n\r\n" % p)
        self.refused(r, 403, "forbidden_host", "absolute-form, evil")
        h0 = self.head()
        body = b'{"userId":"abs1","name":"A","country":"SE"}'
        r = ct.raw_request(p, b"POST http://evil.example:%d/commands/"
                           b"RegisterUser HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Length: %d\r\n\r\n" % (p, len(body))
                           + body)
        self.refused(r, 403, "forbidden_host", "absolute-form POST")
        self.assertEqual(self.head(), h0)
        r = ct.raw_request(p, b"POST http://localhost:%d/commands/"
                           b"RegisterUser HTTP/1.1\r\nHost: localhost\r\n"
                           b"Content-Length: %d\r\n\r\n" % (p, len(body))
                           + body)
        self.assertEqual(r.status, 200, r)
        # targets that are neither a path nor an http URI
        for target in (b"health", b"https://127.0.0.1/health",
                       b"http://u@127.0.0.1/health", b"*"):
            r = ct.raw_request(p, b"GET " + target + b" HTTP/1.1\r\n"
                               b"Host: localhost\r\n\r\n")
            self.refused(r, 400, "invalid_argument", target)

    def test_options(self):
        r = self.req("OPTIONS", "/commands/RegisterUser")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("allow"), "POST, OPTIONS")
        self.assertIsNone(r.header("access-control-allow-origin"))
        self.assertIsNone(r.header("content-length"))
        r = ct.raw_request(self.port, b"OPTIONS * HTTP/1.1\r\n"
                           b"Host: localhost\r\n\r\n")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("allow"), "GET, HEAD, POST, OPTIONS")
        self.assertEqual(self.req("OPTIONS", "/nope").status, 404)


class AllowFlags(Base):
    """--allow-host and --allow-origin (and their environment
    variables: the command line replaces the environment's list)."""
    args = ("--allow-host", "shop.internal,Cleave.Example.",
            "--allow-host", "10.1.2.3", "--allow-origin",
            "http://app.example:3000", "--allow-origin",
            "https://admin.example")
    env = {"CLEAVE_ALLOW_HOST": "from-env.example"}

    def test_allowed_hosts(self):
        p = self.port
        for host in ("shop.internal", "SHOP.INTERNAL:%d" % p,
                     "cleave.example", "cleave.example.:80", "10.1.2.3",
                     "localhost"):
            r = self.req("GET", "/health", {"Host": host})
            self.assertEqual(r.status, 200, (host, r))
        for host in ("from-env.example", "internal", "shop.internal.x"):
            r = self.req("GET", "/health", {"Host": host})
            self.refused(r, 403, "forbidden_host", host)

    def test_allowed_origins(self):
        p = self.port
        h0 = self.head()
        for i, origin in enumerate(("http://app.example:3000",
                                    "https://admin.example",
                                    "https://admin.example:443",
                                    "http://shop.internal:%d" % p)):
            r = self.req("POST", "/commands/RegisterUser",
                         {"Origin": origin,
                          "Content-Type": "application/json"},
                         user("ao%d" % i))
            self.assertEqual(r.status, 200, (origin, r))
            self.assertEqual(r.header("access-control-allow-origin"),
                             origin)
            self.assertEqual(r.header("vary"), "Origin")
            self.assertIn("X-Cleave-Position",
                          r.header("access-control-expose-headers"))
        self.assertEqual(self.head(), h0 + 4)
        for origin in ("http://app.example", "http://app.example:3001",
                       "https://app.example:3000", "http://admin.example",
                       "http://shop.internal"):
            r = self.req("GET", "/health", {"Origin": origin})
            self.refused(r, 403, "forbidden_origin", origin)
            # even a JSON command from it writes nothing
            r = self.req("POST", "/commands/RegisterUser",
                         {"Origin": origin,
                          "Content-Type": "application/json"},
                         user("no-" + origin[-4:]))
            self.refused(r, 403, "forbidden_origin", origin)
        self.assertEqual(self.head(), h0 + 4)

    def test_preflight(self):
        r = self.req("OPTIONS", "/commands/RegisterUser",
                     {"Origin": "http://app.example:3000",
                      "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers":
                      "content-type, idempotency-key"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("access-control-allow-origin"),
                         "http://app.example:3000")
        self.assertEqual(r.header("access-control-allow-methods"),
                         "POST, OPTIONS")
        allowed = r.header("access-control-allow-headers").lower()
        for h in ("content-type", "idempotency-key", "authorization",
                  "if-match", "x-trace-id"):
            self.assertIn(h, allowed)
        self.assertIsNone(r.header("access-control-allow-credentials"))
        r = self.req("OPTIONS", "/commands/RegisterUser",
                     {"Origin": "http://evil.example",
                      "Access-Control-Request-Method": "POST"})
        self.refused(r, 403, "forbidden_origin", "preflight from evil")


class EnvLists(Base):
    """The environment variables alone, comma-separated."""
    env = {"CLEAVE_ALLOW_HOST": " a.example , b.example",
           "CLEAVE_ALLOW_ORIGIN": "http://a.example:8000,http://b.example"}

    def test_env(self):
        for host in ("a.example", "b.example:1"):
            self.assertEqual(self.req("GET", "/health",
                                      {"Host": host}).status, 200, host)
        for origin in ("http://a.example:8000", "http://b.example:80"):
            r = self.req("GET", "/health", {"Origin": origin})
            self.assertEqual(r.status, 200, origin)
        r = self.req("GET", "/health", {"Origin": "http://a.example"})
        self.refused(r, 403, "forbidden_origin", "a.example:80")


class Config(unittest.TestCase):
    def run_serve(self, *args, env=None):
        d = ct.tmpdir("browser-cfg")
        return subprocess.run([ct.BIN, "serve", "--listen", "127.0.0.1:0",
                               "--data", d] + list(args),
                              capture_output=True, text=True, timeout=60,
                              env=ct.clean_env(env))

    def test_bad_values_are_usage_errors(self):
        for flag, value in (("--allow-origin", "http://a.example/"),
                            ("--allow-origin", "null"),
                            ("--allow-origin", "a.example"),
                            ("--allow-origin", "http://a.example:0"),
                            ("--allow-origin", "http://u@a.example"),
                            ("--allow-origin", "*"),
                            ("--allow-host", "a.example:80"),
                            ("--allow-host", "a b"),
                            ("--allow-host", "http://a.example"),
                            ("--allow-host", "[::1")):
            out = self.run_serve(flag, value)
            self.assertEqual(out.returncode, 2, (flag, value, out.stderr))
            self.assertIn(flag, out.stderr)
        out = self.run_serve(env={"CLEAVE_ALLOW_ORIGIN": "null"})
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn("CLEAVE_ALLOW_ORIGIN", out.stderr)

    def test_help_lists_the_flags(self):
        out = subprocess.run([ct.BIN, "serve", "--help"],
                             capture_output=True, text=True, timeout=60)
        self.assertIn("--allow-host", out.stdout)
        self.assertIn("CLEAVE_ALLOW_ORIGIN", out.stdout)

    def test_wildcard_listen(self):
        """On 0.0.0.0 only the loopback names (and --allow-host ones)
        are answered, and the log says so at start."""
        srv = ct.Server("--auth-token", TOKEN, "--listen", "0.0.0.0:0",
                        name="browser-any").start()
        try:
            req = Conn(srv.port)
            for host in ("127.0.0.1", "localhost", "[::1]"):
                self.assertEqual(req("GET", "/health",
                                     {"Host": host}).status, 200, host)
            for host in ("0.0.0.0", "192.0.2.1", "myhost.lan"):
                self.assertEqual(req("GET", "/health",
                                     {"Host": host}).status, 403, host)
            self.assertIn("--allow-host", srv.logs())
        finally:
            srv.stop()
            srv.cleanup()
        srv = ct.Server("--auth-token", TOKEN, "--listen", "0.0.0.0:0",
                        "--allow-host", "myhost.lan",
                        name="browser-any2").start()
        try:
            req = Conn(srv.port)
            self.assertEqual(req("GET", "/health",
                                 {"Host": "myhost.lan"}).status, 200)
        finally:
            srv.stop()
            srv.cleanup()



if __name__ == "__main__":
    ct.main()
