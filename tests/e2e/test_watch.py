"""`cleave watch QUERY KEY=VALUE…` against the real server: the answers of
a live query, one JSON per line as they change; errors the stream carries
on stderr while watching goes on; resuming after the server restarts
(Last-Event-ID) without printing the same answer twice; plain HTTP errors
(unknown query, bad parameters, a missing token) exit 1; usage errors
exit 2; SIGTERM exits 0.  A stand-in server writes the event-stream forms
the real one does not (CR and CRLF line ends, data over several lines,
unknown events, a body that ends at the close).  Python standard library
only."""
import json
import os
import select
import signal
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

TOKEN = "watch-test-token-0123456789"


def uid(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("CLEAVE_") and k not in ("CLEAVE_BIN",
                                                          "CLEAVE_TEST_TMP"))}


def cli(*args, timeout=60):
    p = subprocess.run([ct.BIN] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, env=clean_env(),
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Watch:
    """`cleave watch ARGS` running, its stdout read line by line."""

    def __init__(self, *args):
        self.p = subprocess.Popen([ct.BIN, "watch"] + [str(a) for a in args],
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, env=clean_env())
        self.buf = b""

    def line(self, timeout=20):
        """The next line of stdout, parsed (fails after timeout)."""
        deadline = time.time() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no line from cleave watch within "
                                     "%d s; stderr so far: %s" %
                                     (timeout, self.stderr_now()))
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                d = os.read(self.p.stdout.fileno(), 65536)
                if not d:
                    raise AssertionError("cleave watch ended (%s): %s" % (
                        self.p.wait(), self.p.stderr.read().decode()))
                self.buf += d
        text, self.buf = self.buf.split(b"\n", 1)
        return json.loads(text)

    def stderr_now(self):
        out = b""
        while select.select([self.p.stderr], [], [], 0)[0]:
            d = os.read(self.p.stderr.fileno(), 65536)
            if not d:
                break
            out += d
        return out.decode()

    def finish(self, timeout=20):
        """Waits for the exit: (rc, the rest of stdout, stderr)."""
        out, err = self.p.communicate(timeout=timeout)
        return self.p.returncode, (self.buf + out).decode(), err.decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.communicate()


def add_product(c, pid, stock=5):
    r = c.command("AddProduct", {"productId": pid, "name": "Watched lamp",
                                 "category": "home", "price_cents": 1200,
                                 "stock": stock, "description": "a lamp"})
    assert r.status == 200, r
    return r.json()["position"]


def restock(c, pid, n=1):
    r = c.command("Restock", {"productId": pid, "quantity": n})
    assert r.status == 200, r
    return r.json()["position"]


class WatchWithServer(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(name="watch").start()
        cls.url = "http://127.0.0.1:%d" % cls.srv.port
        cls.c = cls.srv.client()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_answers_as_they_change(self):
        pid = uid("p")
        pos = add_product(self.c, pid, stock=5)
        w = Watch("product", "productId=" + pid, "--count", "3",
                  "--server", self.url, "--min-position", pos)
        try:
            lines = [w.line()]
            # one Restock at a time: two commits before the query runs
            # again may give one answer (the latest), as documented
            for _ in range(2):
                restock(self.c, pid, 2)
                lines.append(w.line())
            rc, rest, err = w.finish()
        finally:
            w.kill()
        self.assertEqual(rc, 0, err)
        self.assertEqual(rest, "")
        self.assertEqual([x["stock"] for x in lines], [5, 7, 9])
        self.assertEqual([x["productId"] for x in lines], [pid] * 3)
        positions = [x["position"] for x in lines]
        self.assertGreaterEqual(positions[0], pos)
        self.assertEqual(positions, sorted(set(positions)), positions)

    def test_parameters_are_encoded(self):
        pid = uid("p")
        pos = add_product(self.c, pid)
        rc, out, err = cli("watch", "--server", self.url, "--count", "1",
                           "--min-position", pos, "search_products",
                           "q=watched lamp", "category=home",
                           "max_price=1200&limit=0", timeout=30)
        # the '&' is the value's, encoded: max_price gets
        # "1200&limit=0", which the query refuses as a price
        self.assertEqual(rc, 1, (out, err))
        self.assertEqual(json.loads(err.splitlines()[0])["error"]["code"],
                         "invalid_parameter", err)
        rc, out, err = cli("watch", "--server", self.url, "-n", "1",
                           "--min-position", pos, "search_products",
                           "q=watched lamp", "category=home",
                           "max_price=1200", "limit=50", timeout=30)
        self.assertEqual(rc, 0, err)
        items = json.loads(out)["items"]
        self.assertIn(pid, [x["productId"] for x in items])

    def test_stream_errors_go_to_stderr_and_watching_goes_on(self):
        pid = uid("p")
        w = Watch("product", "productId=" + pid, "--count", "1",
                  "--server", self.url)
        try:
            deadline = time.time() + 20
            err = ""
            while "product_not_found" not in err and time.time() < deadline:
                err += w.stderr_now()
                time.sleep(0.05)
            line = err.strip().splitlines()[0]
            self.assertEqual(json.loads(line)["error"]["code"],
                             "product_not_found")
            add_product(self.c, pid, stock=3)
            got = w.line()
            rc, rest, err = w.finish()
        finally:
            w.kill()
        self.assertEqual((rc, got["productId"], got["stock"]), (0, pid, 3))

    def test_plain_errors_exit_1(self):
        rc, out, err = cli("watch", "--server", self.url, "no_such_query",
                           "a=1")
        self.assertEqual((rc, out), (1, ""), err)
        self.assertEqual(json.loads(err.strip())["error"]["code"],
                         "not_found")
        rc, out, err = cli("watch", "--server", self.url, "product")
        self.assertEqual((rc, out), (1, ""), err)
        self.assertEqual(json.loads(err.strip())["error"]["code"],
                         "missing_parameter")

    def test_sigterm_exits_0(self):
        pid = uid("p")
        add_product(self.c, pid)
        for sig in (signal.SIGTERM, signal.SIGINT):
            w = Watch("product", "productId=" + pid, "--server", self.url)
            try:
                w.line()
                w.p.send_signal(sig)
                rc, rest, err = w.finish()
            finally:
                w.kill()
            self.assertEqual((rc, rest, err), (0, "", ""), sig)

    def test_reader_of_the_pipe_leaves(self):
        pid = uid("p")
        add_product(self.c, pid)
        p = subprocess.run(
            "'%s' watch --server %s product productId=%s | head -1" %
            (ct.BIN, self.url, pid), shell=True, capture_output=True,
            env=clean_env(), timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["productId"], pid)


class WatchResume(unittest.TestCase):

    def test_resumes_after_a_restart(self):
        srv = ct.Server(name="watch-resume").start()
        try:
            c = srv.client()
            port = srv.port
            pid = uid("p")
            add_product(c, pid, stock=5)
            w = Watch("product", "productId=" + pid, "--count", "3",
                      "--server", "http://127.0.0.1:%d" % port)
            try:
                first = w.line()
                srv.stop()
                time.sleep(0.3)  # the watch finds it gone, and waits
                srv.args = ["--listen", "127.0.0.1:%d" % port]
                srv.start()
                c = srv.client()
                # the resumed stream's first answer is the one printed
                # already: not printed again
                restock(c, pid, 1)
                second = w.line(timeout=30)
                restock(c, pid, 1)
                third = w.line()
                rc, rest, err = w.finish()
            finally:
                w.kill()
        finally:
            srv.stop()
        self.assertEqual(rc, 0, err)
        self.assertEqual([first["stock"], second["stock"], third["stock"]],
                         [5, 6, 7])
        self.assertLess(first["position"], second["position"])
        self.assertIn("from position %d" % first["position"], err)

    def test_first_connection_fails_exit_1(self):
        rc, out, err = cli("watch", "--server", "http://127.0.0.1:1",
                           "--http-timeout", "5", "product", "productId=p1")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("cannot connect", err)

    def test_token(self):
        with ct.Server("--auth-token", TOKEN, "--auth-queries",
                       name="watch-auth") as srv:
            url = "http://127.0.0.1:%d" % srv.port
            rc, out, err = cli("watch", "--server", url, "product",
                               "productId=p1")
            self.assertEqual((rc, out), (1, ""), err)
            self.assertEqual(json.loads(err.splitlines()[0])["error"][
                "code"], "unauthorized")
            self.assertIn("hint: give the server's token", err)
            rc, out, err = cli("watch", "--server", url, "--auth-token",
                               TOKEN, "--http-timeout", "5", "-n", "1",
                               "top_products", "limit=3")
            self.assertEqual(rc, 0, err)
            self.assertIn("items", json.loads(out))


class FakeStreams:
    """A stand-in server that writes server-sent events the way the spec
    allows and Cleave does not (CR and CRLF line ends, data over several
    lines, comments, a retry field, an unknown event, a body that ends at
    the close instead of chunked), and records each request's
    Last-Event-ID."""

    def __init__(self, bodies):
        import socket
        import threading
        self.bodies = list(bodies)  # one per connection: (chunked, bytes)
        self.last_event_ids = []
        self.targets = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.t = threading.Thread(target=self.serve, daemon=True)
        self.t.start()

    def serve(self):
        while self.bodies:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    break
                head += d
            lei = None
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("last-event-id:"):
                    lei = line.split(":", 1)[1].strip()
            self.last_event_ids.append(lei)
            self.targets.append(head.split(b" ")[1].decode())
            chunked, body = self.bodies.pop(0)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"
                      b"\r\n" + (b"Transfer-Encoding: chunked\r\n" if
                                  chunked else b"") + b"\r\n")
            for i in range(0, len(body), 7):  # in small pieces
                piece = body[i:i + 7]
                c.sendall(b"%x\r\n%s\r\n" % (len(piece), piece)
                          if chunked else piece)
                time.sleep(0.002)
            if not self.bodies:
                time.sleep(5)  # the last stays open: --count ends it
            c.close()

    def close(self):
        self.sock.close()


class WatchParser(unittest.TestCase):

    def test_event_stream_variants_and_resume(self):
        first = (b"retry: 100\r\n: hello\r\nid: 5\r\nevent: answer\r\n"
                 b"data: {\"position\":5,\r\ndata: \"a\":1}\r\n\r\n"
                 b"event: ping\ndata: x\n\n"
                 b"id: 6\revent: error\rdata: {\"error\":{\"code\":\"x\"}}"
                 b"\r\r"
                 b"id: 7\r\nevent: answer\r\ndata: {\"position\":7,\"a\":1}"
                 b"\r\n\r\n")
        # resumed: its first answer is the one shown last (position
        # aside), not shown again; its id still counts
        second = (b"id: 8\nevent: answer\ndata: {\"position\":8,\"a\":1}"
                  b"\n\n")
        third = (b"id: 9\nevent: answer\ndata: {\"position\":9,\"a\":2}"
                 b"\n\n")
        fake = FakeStreams([(False, first), (True, second), (True, third)])
        try:
            rc, out, err = cli("watch", "--server", "http://127.0.0.1:%d" %
                               fake.port, "-n", "3", "q", "k=v w&x",
                               timeout=30)
        finally:
            fake.close()
        self.assertEqual(rc, 0, err)
        self.assertEqual([json.loads(x) for x in out.splitlines()],
                         [{"position": 5, "a": 1}, {"position": 7, "a": 1},
                          {"position": 9, "a": 2}])
        self.assertEqual(fake.last_event_ids, [None, "7", "8"])
        self.assertEqual(fake.targets, ["/queries/q?k=v%20w%26x"] * 3)
        self.assertIn('{"error":{"code":"x"}}\n', err)
        self.assertIn("again in 0.1 s from position 7", err)


class WatchUsage(unittest.TestCase):

    def test_usage_errors_exit_2(self):
        for args in (["watch"],
                     ["watch", "product", "productId"],
                     ["watch", "product", "=p1"],
                     ["watch", "--bogus", "product", "productId=p1"],
                     ["watch", "--count", "0", "product", "productId=p1"],
                     ["watch", "--count", "x", "product", "productId=p1"],
                     ["watch", "--min-position", "-1", "product", "a=b"],
                     ["watch", "--data", "/tmp", "product", "a=b"]):
            rc, out, err = cli(*args)
            self.assertEqual((rc, out), (2, ""), (args, err))
            self.assertIn("--help", err, args)

    def test_help(self):
        rc, out, err = cli("watch", "--help")
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.startswith("Usage: cleave watch"), out)
        for s in ("--count", "--min-position", "--server URL",
                  "--auth-token-file"):
            self.assertIn(s, out)
        rc, out, err = cli("--help")
        self.assertIn("watch", out)


if __name__ == "__main__":
    unittest.main()
