"""The HTTP contract of docs/http-api.md against the real binary: every
route and status provoked on purpose, headers, read-your-writes,
idempotency, tracing, metrics, limits, slow clients, graceful shutdown and
restart.  Python standard library only."""
import json
import os
import signal
import socket
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402


def uid(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def assert_error(tc, r, status, code=None):
    tc.assertEqual(r.status, status, r)
    tc.assertTrue(r.header("content-type").startswith("application/json"))
    body = r.json()
    tc.assertEqual(set(body), {"error"}, body)
    tc.assertIsInstance(body["error"]["code"], str)
    tc.assertIsInstance(body["error"]["message"], str)
    tc.assertTrue(body["error"]["message"])
    if code:
        tc.assertEqual(body["error"]["code"], code, body)
    return body["error"]


def add_product(c, pid=None, stock=10, price=500, headers=None):
    pid = pid or uid("p")
    r = c.command("AddProduct", {"productId": pid, "name": "Thing " + pid,
                                 "category": "tools", "price_cents": price,
                                 "stock": stock}, headers)
    return pid, r


class HttpApi(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(name="http").start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self):
        self.c = self.srv.client()

    def head(self):
        return self.c.get("/health").json()["head"]

    # ---- health, routing ----------------------------------------------

    def test_health(self):
        r = self.c.get("/health")
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual(body["status"], "ok")
        self.assertIsInstance(body["head"], int)
        self.assertIn("live", body["projections"])
        self.assertIn("parked", body["projections"])
        self.assertEqual(body["projections"]["parked"], 0)

    def test_unknown_route_404(self):
        for path in ("/nope", "/commands", "/commands/", "/queries/",
                     "/health/x", "/projections/x/explode"):
            assert_error(self, self.c.get(path), 404)

    def test_wrong_method_405(self):
        r = self.c.get("/commands/AddProduct")
        assert_error(self, r, 405, "method_not_allowed")
        self.assertEqual(r.header("allow"), "POST")
        r = self.c.post("/queries/product", b"{}")
        assert_error(self, r, 405)
        self.assertEqual(r.header("allow"), "GET, HEAD")
        r = self.c.post("/health")
        assert_error(self, r, 405)
        self.assertIn("GET", r.header("allow"))

    def test_unknown_method_501(self):
        # a method no route implements is 501, whatever the path
        for m, p in (("DELETE", "/health"),
                     ("PUT", "/projections/catalog/rebuild"),
                     ("PATCH", "/commands/AddProduct"), ("BREW", "/nope"),
                     ("get", "/health")):
            assert_error(self, self.c.request(m, p), 501, "not_implemented")

    def test_options(self):
        r = self.c.request("OPTIONS", "/commands/AddProduct")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("allow"), "POST, OPTIONS")
        self.assertEqual(r.body, b"")
        self.assertIsNone(r.header("access-control-allow-origin"))
        r = self.c.request("OPTIONS", "/queries/product")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.header("allow"), "GET, HEAD, OPTIONS")
        assert_error(self, self.c.request("OPTIONS", "/nope"), 404)

    def test_every_answer_has_a_trace_id(self):
        """docs/http-api.md: every request has a trace id, answered in
        X-Trace-Id — queries, errors and refusals included."""
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for r in (self.c.get("/health"), self.c.get("/metrics"),
                  self.c.get("/projections"),
                  self.c.get("/queries/product?productId=nope"),
                  self.c.get("/queries/top_products?limit=3"),
                  self.c.get("/queries/product?productId=x&a=%zz"),
                  self.c.get("/nope"), self.c.get("/commands/AddProduct"),
                  self.c.request("OPTIONS", "/health"),
                  self.c.request("BREW", "/health"),
                  self.c.get("/health", headers={"Host": "evil.example"}),
                  self.c.command("AddProduct", b"{")):
            self.assertRegex(r.header("x-trace-id") or "",
                             r"^[0-9a-f]{32}$", r)
        r = self.c.get("/queries/product?productId=nope",
                       headers={"X-Trace-Id": "q-trace.1"})
        self.assertEqual(r.header("x-trace-id"), "q-trace.1")
        r = self.c.get("/health", headers={"traceparent": tp})
        self.assertEqual(r.header("x-trace-id"),
                         "4bf92f3577b34da6a3ce929d0e0e4736")
        # a malformed X-Trace-Id is ignored outside commands
        r = self.c.get("/health", headers={"X-Trace-Id": "bad id!"})
        self.assertEqual(r.status, 200)
        self.assertRegex(r.header("x-trace-id"), r"^[0-9a-f]{32}$")

    def test_431_headers_too_large(self):
        r = self.c.get("/health", headers={"X-Big": "a" * 20000})
        err = assert_error(self, r, 431)
        self.assertIn("--max-header", err["message"])
        self.assertEqual(self.c.get("/health").status, 200)

    def test_keep_alive(self):
        c = self.srv.client()
        for _ in range(20):
            self.assertEqual(c.get("/health").status, 200)
        sock = c.conn.sock
        self.assertEqual(c.get("/health").status, 200)
        self.assertIs(c.conn.sock, sock, "connection was not kept alive")

    # ---- commands -------------------------------------------------------

    def test_command_ok(self):
        pid, r = add_product(self.c)
        self.assertEqual(r.status, 200, r)
        body = r.json()
        self.assertIsInstance(body["position"], int)
        self.assertEqual(body["events"][0]["type"], "ProductAdded")
        self.assertIn("stream", body["events"][0])
        self.assertEqual(body["events"][0]["version"], 1)
        self.assertIsInstance(body["result"], dict)
        self.assertEqual(body["trace_id"], r.header("x-trace-id"))
        self.assertTrue(r.header("x-command-id"))
        self.assertIsNone(r.header("idempotent-replayed"))

    def test_400_malformed_json(self):
        h = self.head()
        for bad in (b"{", b"{\"productId\":", b"[1,2", b"nul", b"\xff\xfe",
                    b"{\"a\":1,\"a\":2}", b"{\"productId\":\"p\"}garbage",
                    b"{'a':1}", b"{\"a\":\"\\ud800\"}"):
            r = self.c.command("AddProduct", bad)
            assert_error(self, r, 400, "malformed_json")
            self.assertTrue(r.header("x-trace-id"))
        # well-formed JSON that is not a valid command: invalid_argument
        for bad in (b"[1,2]", b"\"x\"", b"{\"productId\":1e400}",
                    b"{\"productId\":\"p\"}"):
            r = self.c.command("AddProduct", bad)
            assert_error(self, r, 400, "invalid_argument")
        self.assertEqual(self.head(), h, "a bad command wrote something")

    def test_400_fields(self):
        pid = uid("p")
        good = {"productId": pid, "name": "n", "category": "c",
                "price_cents": 100, "stock": 1}
        for patch in ({"price_cents": "100"}, {"price_cents": -5},
                      {"stock": 1.5}, {"name": 7}, {"extra": 1},
                      {"price_cents": 10 ** 30}, {"name": "x" * 100000}):
            body = dict(good)
            body.update(patch)
            assert_error(self, self.c.command("AddProduct", body), 400)
        body = dict(good)
        del body["name"]
        assert_error(self, self.c.command("AddProduct", body), 400)

    def test_400_bad_headers(self):
        pid, _ = add_product(self.c)
        for im in ("3", "W/\"1\"", "\"x\"", "\"-1\"", "\"\""):
            r = self.c.command("Restock", {"productId": pid, "quantity": 1},
                               {"If-Match": im})
            assert_error(self, r, 400)
        r = self.c.command("Restock", {"productId": pid, "quantity": 1},
                           {"X-Trace-Id": "bad trace id!"})
        assert_error(self, r, 400)
        r = self.c.command("Restock", {"productId": pid, "quantity": 1},
                           {"Idempotency-Key": "k" * 500})
        assert_error(self, r, 400)

    def test_404_unknown_command_and_entity(self):
        assert_error(self, self.c.command("NoSuchCommand", {}), 404)
        r = self.c.command("Restock", {"productId": uid("none"),
                                       "quantity": 1})
        assert_error(self, r, 404)

    def test_409_duplicate_and_if_match(self):
        pid, r = add_product(self.c)
        self.assertEqual(r.status, 200)
        _, r = add_product(self.c, pid)
        assert_error(self, r, 409)
        r = self.c.command("Restock", {"productId": pid, "quantity": 1},
                           {"If-Match": "\"7\""})
        assert_error(self, r, 409)
        r = self.c.command("Restock", {"productId": pid, "quantity": 1},
                           {"If-Match": "\"1\""})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["events"][0]["version"], 2)

    def test_413_body_too_large(self):
        h = self.head()
        big = b"{\"productId\":\"" + b"x" * (1 << 20) + b"\"}"
        r = self.c.command("AddProduct", big)
        err = assert_error(self, r, 413)
        self.assertIn("1048576", err["message"])
        # chunked, no Content-Length: read up to the limit, then refused
        s = ct.raw_socket(self.srv.port)
        s.sendall(b"POST /commands/AddProduct HTTP/1.1\r\nHost: localhost\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 65536
        try:
            for _ in range(20):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:200])
        # refused from Content-Length alone, body never sent: a client
        # that waits for 100 Continue, and a body far past the limit
        for extra in (b"Expect: 100-continue\r\nContent-Length: 2000000",
                      b"Content-Length: 1000000000"):
            s = ct.raw_socket(self.srv.port)
            s.sendall(b"POST /commands/AddProduct HTTP/1.1\r\n"
                      b"Host: localhost\r\n"
                      + extra + b"\r\n\r\n")
            data = s.recv(65536)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 413"), data[:200])
            self.assertIn(b"--max-body", data)
        self.assertEqual(self.head(), h)

    def test_422_business_rule(self):
        u1, u2, cart = uid("u"), uid("u"), uid("c")
        for u in (u1, u2):
            r = self.c.command("RegisterUser", {"userId": u, "name": "N",
                                                "country": "DE"})
            self.assertEqual(r.status, 200, r)
        pid, _ = add_product(self.c, stock=1)
        r = self.c.command("AddToCart", {"cartId": cart, "userId": u1,
                                         "productId": pid, "quantity": 5})
        self.assertEqual(r.status, 200, r)
        h = self.head()
        r = self.c.command("AddToCart", {"cartId": cart, "userId": u2,
                                         "productId": pid, "quantity": 1})
        assert_error(self, r, 422)
        r = self.c.command("Checkout", {"userId": u1, "cartId": cart})
        assert_error(self, r, 422)  # 5 wanted, 1 in stock
        self.assertEqual(self.head(), h, "a rejected command wrote")

    def test_idempotent_retry(self):
        pid, _ = add_product(self.c, stock=1)
        key = uid("key-")
        body = {"productId": pid, "quantity": 3}
        r1 = self.c.command("Restock", body, {"Idempotency-Key": key})
        self.assertEqual(r1.status, 200, r1)
        r2 = self.c.command("Restock", body, {"Idempotency-Key": key})
        self.assertEqual(r2.status, 200, r2)
        self.assertEqual(r1.body, r2.body)
        self.assertEqual(r2.header("idempotent-replayed"), "true")
        self.assertEqual(r1.header("x-command-id"),
                         r2.header("x-command-id"))
        ev = self.c.get("/events?stream=product-%s&limit=1000" % pid).json()
        restocks = [e for e in ev["events"] if e["type"] == "ProductRestocked"]
        self.assertEqual(len(restocks), 1, ev)
        self.assertEqual(restocks[0]["idempotency_key"], key)
        # same key, different body: a conflict, not a replay
        r3 = self.c.command("Restock", {"productId": pid, "quantity": 4},
                            {"Idempotency-Key": key})
        assert_error(self, r3, 409)
        q = self.c.get("/queries/product?productId=%s&min_position=%d" %
                       (pid, r1.json()["position"]))
        self.assertEqual(q.json()["stock"], 4)

    def test_trace_propagation(self):
        trace = uuid.uuid4().hex
        tp = "00-%s-%s-01" % (trace, uuid.uuid4().hex[:16])
        pid, r = add_product(self.c, headers={"traceparent": tp})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-trace-id"), trace)
        self.assertEqual(r.json()["trace_id"], trace)
        pos = r.json()["position"]
        ev = self.c.get("/events?from=%d&limit=1" % pos).json()
        self.assertEqual(ev["events"][0]["trace_id"], trace)
        self.assertEqual(ev["events"][0]["command_id"],
                         r.header("x-command-id"))
        # X-Trace-Id works too; a malformed traceparent is ignored
        pid2, r = add_product(self.c, headers={
            "X-Trace-Id": "order-flow.42", "traceparent": "garbage"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("x-trace-id"), "order-flow.42")
        ev = self.c.get("/events?from=%d&limit=1" %
                        r.json()["position"]).json()
        self.assertEqual(ev["events"][0]["trace_id"], "order-flow.42")

    # ---- queries ----------------------------------------------------------

    def test_query_position_header(self):
        pid, r = add_product(self.c)
        pos = r.json()["position"]
        q = self.c.get("/queries/product?productId=%s&min_position=%d" %
                       (pid, pos))
        self.assertEqual(q.status, 200, q)
        self.assertTrue(q.header("content-type").startswith(
            "application/json"))
        p = int(q.header("x-cleave-position"))
        self.assertGreaterEqual(p, pos)
        self.assertEqual(q.json()["position"], p)
        self.assertEqual(q.json()["productId"], pid)
        # errors carry it too
        q = self.c.get("/queries/product?productId=" + uid("none"))
        assert_error(self, q, 404)
        self.assertIsNotNone(q.header("x-cleave-position"))
        q = self.c.get("/queries/product")
        assert_error(self, q, 400)
        self.assertIsNotNone(q.header("x-cleave-position"))

    def test_unknown_query_404(self):
        assert_error(self, self.c.get("/queries/no_such_query"), 404)

    def test_read_your_writes(self):
        pid, _ = add_product(self.c, stock=1)
        for i in range(20):
            r = self.c.command("Restock", {"productId": pid, "quantity": 1})
            self.assertEqual(r.status, 200)
            q = self.c.get("/queries/product?productId=%s&min_position=%d"
                           % (pid, r.json()["position"]))
            self.assertEqual(q.status, 200, q)
            self.assertEqual(q.json()["stock"], 2 + i)

    def test_504_min_position(self):
        head = self.head()
        # the read model first reaches the log's head (on a busy machine
        # it may still be behind it): the position the 504 names is the
        # query's, which then cannot be below head
        self.assertEqual(self.c.get("/queries/product?productId=x"
                                    "&min_position=%d&wait_ms=10000"
                                    % head).status, 404)
        t0 = time.time()
        q = self.c.get("/queries/product?productId=x&min_position=%d"
                       "&wait_ms=150" % (head + 100000))
        took = time.time() - t0
        err = assert_error(self, q, 504, "timeout")
        cur = int(q.header("x-cleave-position"))
        self.assertGreaterEqual(cur, head)
        self.assertIn("current position %d" % cur, err["message"])
        # it did wait (a lower bound cannot flake; no upper bound: tests
        # never assert speed)
        self.assertGreater(took, 0.12)

    def test_bad_query_params(self):
        bad = ["productId=%ZZ", "productId=%4", "productId=%00x",
               "productId=%C3%28", "productId=%FF", "min_position=-1",
               "min_position=abc", "wait_ms=-5", "wait_ms=1e3",
               "productId=a&productId=b",
               "&".join("p%d=1" % i for i in range(40)),
               "productId=" + "x" * 5000]
        for qs in bad:
            q = self.c.get("/queries/product?" + qs)
            assert_error(self, q, 400)

    def test_many_waiters(self):
        """Thousands of clients waiting for a position hold no thread: the
        server keeps answering others, and one write releases them all."""
        import resource
        import selectors
        n = 2000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < n + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (min(hard, n + 500), hard))
            n = min(n, min(hard, n + 500) - 200)
        pid, r = add_product(self.c)
        target = r.json()["position"] + 1
        req = ("GET /queries/product?productId=%s&min_position=%d"
               "&wait_ms=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n" %
               (pid, target)).encode()
        socks = []
        for _ in range(n):
            s = ct.raw_socket(self.srv.port, timeout=30)
            s.sendall(req)
            socks.append(s)
        time.sleep(0.5)
        # the client's socket timeout fails this if waiters stall the server
        for _ in range(10):
            self.assertEqual(self.c.get("/health").status, 200)
        m = self.c.get("/metrics").body.decode()
        inflight = [int(x.split()[1]) for x in m.splitlines()
                    if x.startswith("cleave_http_requests_in_flight ")]
        self.assertGreaterEqual(inflight[0], n)
        r = self.c.command("Restock", {"productId": pid, "quantity": 5})
        self.assertEqual(r.status, 200)
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
        done = {}
        deadline = time.time() + 30
        while len(done) < n and time.time() < deadline:
            for key, _ in sel.select(1):
                s = key.fileobj
                d = s.recv(65536)
                bufs[s] += d
                head, sep, body = bufs[s].partition(b"\r\n\r\n")
                if not d or (sep and b"content-length: %d" % len(body)
                             in head.lower()):
                    done[s] = bufs[s]
                    sel.unregister(s)
        for s in socks:
            s.close()
        self.assertEqual(len(done), n)
        for data in done.values():
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:300])
            self.assertIn(b'"stock":15', data)

    # ---- events, projections, metrics -------------------------------------

    def test_events(self):
        pid, r = add_product(self.c)
        pos = r.json()["position"]
        # from is inclusive: the page starts at the command's event
        ev = self.c.get("/events?from=%d&limit=5" % pos).json()
        e = ev["events"][0]
        for k in ("position", "stream", "version", "type", "schema_version",
                  "data", "ts_us", "trace_id", "command_id"):
            self.assertIn(k, e)
        self.assertEqual(e["position"], pos)
        self.assertIsInstance(e["data"], dict)
        self.assertEqual(e["data"]["productId"], pid)
        self.assertGreaterEqual(ev["head"], pos)
        self.assertEqual(ev["next"], ev["events"][-1]["position"] + 1)
        big = self.c.get("/events?limit=100000").json()
        self.assertLessEqual(len(big["events"]), 1000)
        empty = self.c.get("/events?from=%d" % (ev["head"] + 10)).json()
        self.assertEqual(empty["events"], [])
        self.assertEqual(empty["next"], ev["head"] + 10)
        for qs in ("from=-1", "from=x", "limit=0", "limit=-3"):
            assert_error(self, self.c.get("/events?" + qs), 400)
        s = self.c.get("/events?stream=product-%s" % pid).json()
        self.assertEqual([x["stream"] for x in s["events"]],
                         ["product-" + pid])

    def test_projections_and_rebuild(self):
        body = self.c.get("/projections").json()
        self.assertIsInstance(body["head"], int)
        names = [p["name"] for p in body["projections"]]
        self.assertIn("catalog", names)
        for p in body["projections"]:
            for k in ("name", "version", "state", "position", "lag_events",
                      "lag_seconds", "last_error"):
                self.assertIn(k, p)
            self.assertIn(p["state"], ("live", "rebuilding", "parked"))
        assert_error(self, self.c.post("/projections/nope/rebuild"), 404)
        assert_error(self, self.c.post("/projections/nope/resume"), 404)
        assert_error(self, self.c.post("/projections/catalog/resume"), 409)
        r = self.c.post("/projections/catalog/rebuild")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["rebuilding"], "catalog")
        r2 = self.c.post("/projections/catalog/rebuild")
        self.assertIn(r2.status, (202, 409), r2)
        if r2.status == 409:
            assert_error(self, r2, 409)
        deadline = time.time() + 30
        while time.time() < deadline:
            ps = self.c.get("/projections").json()["projections"]
            if all(p["state"] == "live" for p in ps):
                break
            time.sleep(0.05)
        else:
            self.fail("rebuild did not finish")
        pid, r = add_product(self.c)
        q = self.c.get("/queries/product?productId=%s&min_position=%d" %
                       (pid, r.json()["position"]))
        self.assertEqual(q.status, 200)

    def test_verify(self):
        add_product(self.c)
        r = self.c.post("/projections/catalog/verify")
        self.assertEqual(r.status, 200, r)
        v = r.json()
        self.assertEqual(v["projection"], "catalog")
        self.assertEqual((v["differences"], v["diffs"], v["truncated"]),
                         (0, [], False))
        self.assertIsInstance(v["position"], int)
        self.assertGreaterEqual(v["position"], 1)
        assert_error(self, self.c.post("/projections/nope/verify"), 404,
                     "not_found")
        r = self.c.get("/projections/catalog/verify")
        assert_error(self, r, 405)
        self.assertEqual(r.header("allow"), "POST")
        # one verify per projection at a time: the others get 409
        out = []

        def one():
            c = ct.Client(self.srv.port)
            out.append(c.post("/projections/search/verify"))
            c.close()
        ts = [threading.Thread(target=one) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertIn(200, [r.status for r in out])
        for r in out:
            if r.status != 200:
                assert_error(self, r, 409, "already_verifying")
        # the server still serves, nothing was written
        self.assertEqual(self.c.get("/health").status, 200)

    def test_trace(self):
        tid = uid("tr-")
        pid, r = add_product(self.c, headers={"X-Trace-Id": tid})
        self.assertEqual(r.status, 200, r)
        a = r.json()
        q = self.c.get("/queries/product?productId=%s&min_position=%d" %
                       (pid, a["position"]))
        self.assertEqual(q.status, 200, q)
        for key in (tid, a["command_id"]):
            r = self.c.get("/trace/" + key)
            self.assertEqual(r.status, 200, r)
            t = r.json()
            self.assertEqual(t["id"], key)
            self.assertEqual([(e["position"], e["stream"], e["version"],
                               e["type"], e["trace_id"], e["command_id"])
                              for e in t["events"]],
                             [(e["position"], e["stream"], e["version"],
                               e["type"], tid, a["command_id"])
                              for e in a["events"]])
            for e in t["events"]:
                self.assertIsInstance(e["ts_us"], int)
            self.assertEqual([c["command_id"] for c in t["commands"]],
                             [a["command_id"]])
            self.assertEqual(t["commands"][0]["events"],
                             [e["position"] for e in a["events"]])
            names = [p["name"] for p in t["projections"]]
            self.assertIn("catalog", names)
            for p in t["projections"]:
                self.assertIsInstance(p["applied"], bool)
                if p["name"] == "catalog":
                    # the query above waited for it
                    self.assertTrue(p["applied"], p)
                    self.assertTrue(p["subscribed"], p)
                    self.assertIsInstance(p["applied_at_us"], int)
                if not p["applied"]:
                    self.assertIsNone(p["applied_at_us"])
        assert_error(self, self.c.get("/trace/" + uid("none-")), 404,
                     "not_found")
        assert_error(self, self.c.get("/trace/a%20b"), 400)
        assert_error(self, self.c.post("/trace/" + tid), 405)

    def test_metrics(self):
        add_product(self.c)
        self.c.get("/queries/product?productId=x")
        r = self.c.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith(
            "text/plain; version=0.0.4"))
        m, types = ct.parse_prometheus(r.body.decode())
        names = {k[0] for k in m}
        for fam, typ in (("cleave_commands_total", "counter"),
                         ("cleave_command_latency_seconds", "histogram"),
                         ("cleave_group_commit_batch_size", "histogram"),
                         ("cleave_group_commits_total", "counter"),
                         ("cleave_fsyncs_total", "counter"),
                         ("cleave_events_appended_total", "counter"),
                         ("cleave_log_head", "gauge"),
                         ("cleave_command_queue_depth", "gauge"),
                         ("cleave_projection_position", "gauge"),
                         ("cleave_projection_lag_events", "gauge"),
                         ("cleave_projection_lag_seconds", "gauge"),
                         ("cleave_projection_state", "gauge"),
                         ("cleave_projection_dead_letters_total", "counter"),
                         ("cleave_query_latency_seconds", "histogram"),
                         ("cleave_http_responses_total", "counter")):
            self.assertEqual(types.get(fam), typ, fam)
        for n in ("cleave_command_latency_seconds_bucket",
                  "cleave_command_latency_seconds_sum",
                  "cleave_command_latency_seconds_count",
                  "cleave_query_latency_seconds_bucket",
                  "cleave_group_commit_batch_size_bucket",
                  "cleave_commands_total", "cleave_http_responses_total"):
            self.assertIn(n, names)
        ok = m[("cleave_commands_total",
                frozenset({"command": "AddProduct", "outcome": "ok"}.items()))]
        self.assertGreaterEqual(ok, 1)
        inf = m[("cleave_command_latency_seconds_bucket",
                 frozenset({"command": "AddProduct", "le": "+Inf"}.items()))]
        cnt = m[("cleave_command_latency_seconds_count",
                 frozenset({"command": "AddProduct"}.items()))]
        self.assertEqual(inf, cnt)
        self.assertGreaterEqual(m[("cleave_http_responses_total",
                                   frozenset({"code": "200"}.items()))], 1)
        self.assertEqual(m[("cleave_projection_state", frozenset(
            {"projection": "catalog", "state": "live"}.items()))], 1)


class Overload(unittest.TestCase):
    def test_503_queue_full(self):
        with ct.Server("--queue-max", "1", "--batch-max", "1",
                       name="queue") as srv:
            c = srv.client()
            pid, r = add_product(c, stock=0)
            self.assertEqual(r.status, 200)
            statuses = []
            retry_after = []
            lock = threading.Lock()

            def flood():
                cc = ct.Client(srv.port)
                for _ in range(30):
                    r = cc.command("Restock", {"productId": pid,
                                               "quantity": 1})
                    with lock:
                        statuses.append(r.status)
                        if r.status == 503:
                            retry_after.append(r.header("retry-after"))
                            self.assertEqual(r.json()["error"]["code"],
                                             "overloaded")
                cc.close()

            ts = [threading.Thread(target=flood) for _ in range(48)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            self.assertTrue(set(statuses) <= {200, 503}, set(statuses))
            self.assertIn(503, statuses, "no 503 with a queue of one")
            self.assertIn(200, statuses)
            self.assertTrue(all(x == "1" for x in retry_after))
            q = c.get("/queries/product?productId=%s&min_position=%d" % (
                pid, c.get("/health").json()["head"]))
            self.assertEqual(q.json()["stock"], statuses.count(200))


class SlowClients(unittest.TestCase):
    def test_slowloris_cut_off(self):
        with ct.Server("--idle-timeout", "2", name="slow") as srv:
            slow = ct.raw_socket(srv.port, timeout=15)
            req = (b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
                   b"X-Slow: " + b"a" * 200)
            t0 = time.time()
            closed_after = None
            c = srv.client()
            for i, b in enumerate(req):
                try:
                    slow.send(bytes([b]))
                except OSError:
                    closed_after = time.time() - t0
                    break
                # others are served meanwhile
                if i % 4 == 0:
                    self.assertEqual(c.get("/health").status, 200)
                slow.settimeout(0.25)
                try:
                    if slow.recv(1024) == b"":
                        closed_after = time.time() - t0
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed_after = time.time() - t0
                    break
                if time.time() - t0 > 12:
                    break
            slow.close()
            self.assertIsNotNone(closed_after, "slow client never cut off")
            self.assertGreater(closed_after, 1.5)
            self.assertLess(closed_after, 6)
            self.assertEqual(c.get("/health").status, 200)

    def test_half_open_idle_closed(self):
        with ct.Server("--idle-timeout", "1", name="idle") as srv:
            s = ct.raw_socket(srv.port, timeout=10)
            t0 = time.time()
            self.assertEqual(s.recv(10), b"")  # closed by the server
            self.assertLess(time.time() - t0, 5)
            s.close()


class Lifecycle(unittest.TestCase):
    def test_sigterm_in_flight_then_restart(self):
        srv = ct.Server(name="term").start()
        c = srv.client()
        pid, r = add_product(c, stock=0)
        self.assertEqual(r.status, 200)
        acked = []
        other = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer():
            cc = ct.Client(srv.port, timeout=30)
            while not stop.is_set():
                try:
                    r = cc.command("Restock", {"productId": pid,
                                               "quantity": 1})
                except OSError:
                    break  # the server went away: not acknowledged
                with lock:
                    if r.status == 200:
                        acked.append(r.json()["command_id"])
                    else:
                        other.append(r.status)
                        if r.status != 503:
                            break
            cc.close()

        ts = [threading.Thread(target=writer) for _ in range(16)]
        for t in ts:
            t.start()
        time.sleep(1.0)
        srv.signal(signal.SIGTERM)
        for t in ts:
            t.join(30)
        stop.set()
        srv.stop(expect=0)
        self.assertTrue(acked)
        self.assertTrue(set(other) <= {503}, other)
        lines = srv.log_lines()
        for line in lines:
            for k in ("level", "time", "msg"):
                self.assertIn(k, line)
        msgs = [x["msg"] for x in lines]
        self.assertTrue(any(m.startswith("listening on") for m in msgs))
        self.assertTrue(any("shutting down" in m for m in msgs))

        # restart on the same data: every acknowledged command is there
        srv2 = ct.Server(data=srv.data, name="term").start()
        c2 = srv2.client()
        seen = set()
        after = 0
        while True:
            ev = c2.get("/events?from=%d&limit=1000" % after).json()
            if not ev["events"]:
                break
            for e in ev["events"]:
                seen.add(e["command_id"])
            after = ev["next"]
        missing = [a for a in acked if a not in seen]
        self.assertEqual(missing, [])
        q = c2.get("/queries/product?productId=%s&min_position=%d" %
                   (pid, after - 1))  # next is one past the last event
        self.assertEqual(q.status, 200)
        self.assertEqual(q.json()["stock"], len(acked))
        srv2.stop(expect=0)
        srv2.cleanup()

    def test_sigterm_answers_waiting_queries(self):
        srv = ct.Server(name="termwait").start()
        c = srv.client()
        head = c.get("/health").json()["head"]
        socks = []
        for _ in range(50):
            s = ct.raw_socket(srv.port, timeout=20)
            s.sendall(b"GET /queries/product?productId=x&min_position=%d"
                      b"&wait_ms=10000 HTTP/1.1\r\nHost: localhost\r\n\r\n" %
                      (head + 1000))
            socks.append(s)
        time.sleep(0.3)
        t0 = time.time()
        srv.stop(expect=0)
        self.assertLess(time.time() - t0, 8)
        for s in socks:
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
            self.assertIn(b"shutting_down", data)
        srv.cleanup()

    def test_help_version_and_bad_flags(self):
        import subprocess
        out = subprocess.run([ct.BIN, "serve", "--help"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        for flag in ("--data", "--listen", "--domain", "--durability",
                     "--max-body", "--idle-timeout", "CLEAVE_LISTEN"):
            self.assertIn(flag, out.stdout)
        out = subprocess.run([ct.BIN, "serve", "--version"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        self.assertIn("cleave", out.stdout)
        out = subprocess.run([ct.BIN, "serve", "--no-such-flag"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 2)
        out = subprocess.run([ct.BIN, "serve", "--max-body", "lots"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 2)
        d = ct.tmpdir("nonloop")
        out = subprocess.run([ct.BIN, "serve", "--listen", "0.0.0.0:0",
                              "--data", d], capture_output=True, text=True,
                             timeout=10)
        self.assertEqual(out.returncode, 2)
        self.assertIn("auth-token", out.stderr)

    def test_env_config_and_auth(self):
        srv = ct.Server(env={"CLEAVE_AUTH_TOKEN": "s3cret",
                             "CLEAVE_MAX_BODY": "1KiB"}, name="auth")
        srv.start()
        try:
            c = srv.client()
            _, r = add_product(c)
            assert_error(self, r, 401)
            self.assertIn("Bearer", r.header("www-authenticate"))
            _, r = add_product(c, headers={"Authorization": "Bearer nope"})
            assert_error(self, r, 401)
            good = {"Authorization": "Bearer s3cret"}
            pid, r = add_product(c, headers=good)
            self.assertEqual(r.status, 200, r)
            assert_error(self, c.get("/events"), 401)
            self.assertEqual(c.get("/events", headers=good).status, 200)
            # verify and trace need the token too
            assert_error(self, c.post("/projections/catalog/verify"), 401)
            assert_error(self, c.get("/trace/" + r.json()["trace_id"]),
                         401)
            self.assertEqual(c.post("/projections/catalog/verify",
                                    headers=good).status, 200)
            self.assertEqual(c.get("/trace/" + r.json()["trace_id"],
                                   headers=good).status, 200)
            pos = r.json()["position"]
            self.assertEqual(c.get("/queries/product?productId=%s"
                                   "&min_position=%d" % (pid, pos))
                             .status, 200)
            self.assertEqual(c.get("/health").status, 200)
            r = c.command("AddProduct", b"{" + b" " * 2000 + b"}", good)
            err = assert_error(self, r, 413)
            self.assertIn("1024", err["message"])
        finally:
            srv.stop()
            srv.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
