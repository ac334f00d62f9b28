"""Shared helpers for the end-to-end tests: start the real `cleave serve`
on a free port in a temporary data directory, talk HTTP/1.1 keep-alive to
it, stop it with SIGTERM (a non-zero exit status fails the test).

Environment: CLEAVE_BIN (the binary, default ../../build/cleave) and
CLEAVE_TEST_TMP (where data directories go, default the system temp dir).
Standard library only.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("CLEAVE_BIN") or os.path.join(HERE, "..", "..", "build",
                                                    "cleave")
TMP = os.environ.get("CLEAVE_TEST_TMP") or tempfile.gettempdir()


def tmpdir(prefix):
    os.makedirs(TMP, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix + "-", dir=TMP)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<%d %r>" % (self.status, self.body[:300])


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        hdrs = dict(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                r = self.conn.getresponse()
                data = r.read()
                h = {k.lower(): v for k, v in r.getheaders()}
                if h.get("connection", "").lower() == "close":
                    self.close()
                return Response(r.status, h, data)
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError, http.client.CannotSendRequest):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post(self, path, body=None, headers=None):
        return self.request("POST", path, body=body if body is not None
                            else b"", headers=headers)

    def command(self, name, body, headers=None):
        return self.post("/commands/" + name, body, headers)


class Server:
    """`cleave serve` on 127.0.0.1:0 with --port-file; use as a context
    manager or call start()/stop()."""

    def __init__(self, *args, data=None, env=None, name="srv"):
        self.args = list(args)
        self.data = data or tmpdir(name)
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = os.path.join(self.data + ".log")
        self.clients = []

    def start(self, wait=True):
        """Starts the server; on failure it is killed (no orphans)."""
        try:
            return self._start(wait)
        except BaseException:
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            if getattr(self, "log", None):
                self.log.close()
            raise

    def _start(self, wait):
        port_file = self.data + ".port"
        if os.path.exists(port_file):
            os.unlink(port_file)
        env = dict(os.environ)
        env.update(self.env or {})
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--listen", "127.0.0.1:0", "--port-file",
             port_file, "--data", self.data] + self.args,
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("cleave serve exited with %s:\n%s" %
                                     (self.proc.returncode, self.logs()))
            if os.path.exists(port_file):
                with open(port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    break
            time.sleep(0.02)
        else:
            raise AssertionError("no port file after 30 s:\n" + self.logs())
        if wait:
            c = self.client()
            while time.time() < deadline:
                try:
                    if c.get("/health").status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            else:
                raise AssertionError("not healthy:\n" + self.logs())
        return self

    def client(self, timeout=30):
        c = Client(self.port, timeout)
        self.clients.append(c)
        return c

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        out = []
        for line in self.logs().splitlines():
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout=60, expect=0):
        if not self.proc:
            return None
        for c in self.clients:
            c.close()
        self.clients = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("no exit %d s after SIGTERM:\n%s" %
                                 (timeout, self.logs()))
        self.log.close()
        self.proc = None
        if expect is not None and rc != expect:
            raise AssertionError("cleave serve exited %s (want %s):\n%s" %
                                 (rc, expect, self.logs()[-4000:]))
        return rc

    def cleanup(self):
        shutil.rmtree(self.data, ignore_errors=True)
        for suffix in (".port", ".log"):
            try:
                os.unlink(self.data + suffix)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(expect=None if exc[0] else 0)
        if not exc[0]:
            self.cleanup()


def raw_socket(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def parse_prometheus(text):
    """{(name, frozenset(labels.items())): value}; raises on bad lines."""
    out = {}
    types = {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_txt, value = rest.rsplit("} ", 1)
            labels = {}
            i = 0
            while i < len(labels_txt):
                eq = labels_txt.index("=", i)
                key = labels_txt[i:eq]
                assert labels_txt[eq + 1] == '"', line
                j = eq + 2
                val = ""
                while labels_txt[j] != '"':
                    if labels_txt[j] == "\\":
                        j += 1
                    val += labels_txt[j]
                    j += 1
                labels[key] = val
                i = j + 1
                if i < len(labels_txt) and labels_txt[i] == ",":
                    i += 1
        else:
            name, value = line.split(" ", 1)
            labels = {}
        out[(name, frozenset(labels.items()))] = float(value)
    return out, types


# ---- shared by the model, bad-input, README and restart tests -------------

_SANITIZED = None


def sanitized():
    """True when BIN is an ASan/UBSan (or TSan) build: much slower."""
    global _SANITIZED
    if _SANITIZED is None:
        try:
            with open(BIN, "rb") as f:
                data = f.read()
            _SANITIZED = b"__asan_init" in data or b"__tsan_init" in data
        except OSError:
            _SANITIZED = False
    return _SANITIZED


def scale():
    """Workload multiplier: CLEAVE_E2E_SCALE, else 0.5 for a sanitized
    binary (slower), else 1."""
    v = os.environ.get("CLEAVE_E2E_SCALE")
    if v:
        return max(0.01, float(v))
    return 0.5 if sanitized() else 1.0


def scaled(n, minimum=1):
    return max(minimum, int(round(n * scale())))


def seed(default):
    """The workload seed: CLEAVE_E2E_SEED or the test's fixed default."""
    v = os.environ.get("CLEAVE_E2E_SEED")
    return int(v) if v else default


def check_error(r, status, code=None):
    """Asserts r is `status` with the error JSON of docs/http-api.md;
    returns the error object."""
    where = "%r" % (r,)
    if r.status != status:
        raise AssertionError("status %d, want %d: %s" % (r.status, status,
                                                         where))
    ctype = r.header("content-type") or ""
    if not ctype.startswith("application/json"):
        raise AssertionError("content-type %r: %s" % (ctype, where))
    try:
        body = r.json()
    except ValueError:
        raise AssertionError("error body is not JSON: " + where)
    if not isinstance(body, dict) or set(body) != {"error"}:
        raise AssertionError("error body shape: " + where)
    err = body["error"]
    if not isinstance(err, dict) or set(err) != {"code", "message"}:
        raise AssertionError("error object shape: " + where)
    if not isinstance(err["code"], str) or not err["code"]:
        raise AssertionError("error code: " + where)
    if not isinstance(err["message"], str) or not err["message"]:
        raise AssertionError("error message: " + where)
    if code is not None and err["code"] != code:
        raise AssertionError("code %r, want %r: %s" % (err["code"], code,
                                                       where))
    return err




def free_port():
    """A loopback port free right now (for servers started beside ours)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(test, what, fn, timeout, step=0.02):
    """Polls fn until it returns something true, and returns that; fails
    the test, naming `what` and fn's last value, after timeout seconds."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(step)
    test.fail("%s within %d s (last: %r)" % (what, timeout, last))

def readme_walk(test, c):
    """The README's walk through the shop on client c: a user, a product,
    a promo, a cart and its checkout with an Idempotency-Key, replayed
    once (the same answer, marked as a replay).  Returns the checkout's
    answer, asserted: position 5, the 10 % promo applied."""
    def ok(r):
        test.assertEqual(r.status, 200, r)
        return r.json()
    ok(c.command("RegisterUser", {"userId": "u1", "name": "Ada",
                                  "country": "SE"}))
    ok(c.command("AddProduct", {
        "productId": "p1", "name": "Espresso machine",
        "category": "kitchen", "price_cents": 19900, "stock": 5,
        "description": "15 bar pump"}))
    ok(c.command("CreatePromo", {"code": "WELCOME10", "percent_off": 10,
                                 "max_uses": 100,
                                 "expires_at": 4102444800}))
    ok(c.command("AddToCart", {"cartId": "c1", "userId": "u1",
                               "productId": "p1", "quantity": 2}))
    body = {"userId": "u1", "cartId": "c1", "promoCode": "WELCOME10"}
    key = {"Idempotency-Key": "checkout-c1"}
    first = ok(c.command("Checkout", body, key))
    test.assertEqual((first["position"], first["result"]), (5, {
        "orderId": "o-00000001", "subtotal_cents": 39800,
        "discount_cents": 3980, "total_cents": 35820}))
    again = c.command("Checkout", body, key)
    test.assertEqual((again.status, again.json()), (200, first))
    test.assertEqual(again.header("idempotent-replayed"), "true")
    return first

def wait_caught_up(c, timeout=60):
    """Waits until every projection is live at the log head; returns it."""
    deadline = time.time() + timeout
    j = None
    while time.time() < deadline:
        j = c.get("/projections").json()
        if all(p["position"] == j["head"] and p["state"] == "live"
               for p in j["projections"]):
            return j["head"]
        time.sleep(0.02)
    raise AssertionError("projections did not catch up: %r" % (j,))


def all_events(c, stream=None):
    """The whole log (or one stream), in position order."""
    out = []
    after = 0
    while True:
        path = "/events?from=%d&limit=1000" % after
        if stream:
            path += "&stream=" + stream
        r = c.get(path)
        if r.status != 200:
            raise AssertionError("GET %s: %r" % (path, r))
        page = r.json()
        if not page["events"]:
            return out
        out.extend(page["events"])
        after = page["next"]


def raw_request(port, data, timeout=15):
    """Sends raw bytes on a fresh connection and reads one response:
    Response(status, headers, body), or None when the server closed the
    connection without answering."""
    s = raw_socket(port, timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            buf += d
        if b"\r\n\r\n" not in buf:
            return None
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(body) < n:
            try:
                d = s.recv(65536)
            except OSError:
                d = b""
            if not d:
                break
            body += d
        return Response(status, headers, body[:n])
    finally:
        s.close()


def clean_env(extra=None):
    """The environment without CLEAVE_* settings that would change what a
    CLI or server looks at."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CLEAVE_") and k not in ("CLEAVE_BIN",
                                                         "CLEAVE_TEST_TMP"))}
    env.update(extra or {})
    return env


def run_cli(*args, cwd=None, timeout=300):
    """Runs `cleave ARGS`; returns (exit code, stdout, stderr)."""
    p = subprocess.run([BIN] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, env=clean_env(), cwd=cwd,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def main(seed_value=None):
    """unittest.main that prints the seed (when given) before and, on
    failure, after the run, and times the file."""
    import sys
    import unittest
    t0 = time.time()
    if seed_value is not None:
        print("seed %d (set CLEAVE_E2E_SEED to override), scale %.2f%s" %
              (seed_value, scale(), ", sanitized binary" if sanitized()
               else ""), flush=True)
    prog = unittest.main(verbosity=2, exit=False)
    ok = prog.result.wasSuccessful()
    print("%s in %.1f s" % ("passed" if ok else "FAILED",
                            time.time() - t0), flush=True)
    if not ok and seed_value is not None:
        print("FAILED with seed %d: rerun with CLEAVE_E2E_SEED=%d" %
              (seed_value, seed_value), flush=True)
    sys.exit(0 if ok else 1)
