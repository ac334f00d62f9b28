"""The real server under valgrind memcheck: a short shop flow over HTTP
(commands, queries with read-your-writes waits, the log, projections, a
blue-green rebuild, metrics, bad and oversized requests, a few hostile
ones), then SIGTERM.  Passes when valgrind finds no error (invalid read or
write, use of uninitialised memory, bad free, fd misuse) and no definite
leak, and the server exits 0.

valgrind --leak-check=full --errors-for-leak-kinds=definite
--error-exitcode=99: any error or definite leak makes the exit status 99.
The program links jemalloc, whose functions valgrind replaces through
--soname-synonyms.  Skipped when valgrind is missing or the binary is a
sanitizer build (ASan and TSan cannot run under valgrind).
Python standard library only.
"""
import os
import shutil
import stat
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

VALGRIND = shutil.which("valgrind")


def has_map_size_flag():
    """valgrind cannot map LMDB's default 64 GiB per store: the server
    must be told a smaller map (--lmdb-map-size)."""
    try:
        out = subprocess.run([ct.BIN, "serve", "--help"],
                             capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "lmdb-map-size" in out.stdout + out.stderr


def sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return True
    return b"__asan_init" in data or b"__tsan_init" in data


@unittest.skipIf(not VALGRIND, "valgrind is not installed")
@unittest.skipIf(sanitized(ct.BIN), "a sanitizer build cannot run under "
                 "valgrind")
@unittest.skipIf(not has_map_size_flag(), "no --lmdb-map-size in this build")
class Valgrind(unittest.TestCase):
    def test_shop_flow_under_memcheck(self):
        wrapper = os.path.join(ct.tmpdir("vg"), "cleave-vg")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec %s --quiet --leak-check=full "
                    "--show-leak-kinds=definite "
                    "--errors-for-leak-kinds=definite "
                    "--error-exitcode=99 --track-fds=no "
                    "--soname-synonyms=somalloc=*jemalloc* "
                    "--num-callers=30 %s \"$@\"\n" % (
                        VALGRIND, os.path.abspath(ct.BIN)))
        os.chmod(wrapper, stat.S_IRWXU)
        real = ct.BIN
        ct.BIN = wrapper
        srv = ct.Server("--idle-timeout", "5", "--lmdb-map-size", "1GiB",
                        name="valgrind")
        try:
            srv.start()
        finally:
            ct.BIN = real
        ok = False
        try:
            self.flow(srv)
            ok = True
        finally:
            rc = srv.stop(timeout=300, expect=None)
            logs = srv.logs()
            if ok and rc == 0:
                srv.cleanup()
        vg = "\n".join(ln for ln in logs.splitlines() if ln.startswith("=="))
        self.assertEqual(rc, 0, "exit %s; valgrind said:\n%s" % (
            rc, vg[-8000:]))
        self.assertNotIn("definitely lost", vg)
        self.assertNotIn("Invalid read", vg)
        self.assertNotIn("Invalid write", vg)
        self.assertNotIn("uninitialised", vg)

    def flow(self, srv):
        c = srv.client(timeout=120)

        def ok(r, status=200):
            self.assertEqual(r.status, status, r)
            return r.json() if r.body else None

        ok(c.command("RegisterUser", {"userId": "u1", "name": "Ada",
                                      "country": "SE"}))
        for i in range(3):
            ok(c.command("AddProduct", {
                "productId": "p%d" % i, "name": "Espresso %d" % i,
                "category": "kitchen", "price_cents": 1000 + i,
                "stock": 10, "description": "pump"}))
        ok(c.command("CreatePromo", {"code": "TEN", "percent_off": 10,
                                     "max_uses": 5,
                                     "expires_at": 4102444800}))
        ok(c.command("AddToCart", {"cartId": "c1", "userId": "u1",
                                   "productId": "p1", "quantity": 2}))
        ok(c.command("Restock", {"productId": "p1", "quantity": 3},
                     headers={"Idempotency-Key": "r1"}))
        again = c.command("Restock", {"productId": "p1", "quantity": 3},
                          headers={"Idempotency-Key": "r1"})
        self.assertEqual(again.header("idempotent-replayed"), "true")
        out = ok(c.command("Checkout", {"userId": "u1", "cartId": "c1",
                                        "promoCode": "TEN"},
                           headers={"X-Trace-Id": "vg-trace"}))
        pos = out["position"]
        oid = out["result"]["orderId"]
        for q in ("product?productId=p1", "order?orderId=" + oid,
                  "user_orders?userId=u1", "top_products?limit=5",
                  "search_products?q=espresso&sort=price",
                  "revenue_daily?country=SE&from=%s&to=%s" % (
                      time.strftime("%Y-%m-%d",
                                    time.gmtime(time.time() - 86400 * 30)),
                      time.strftime("%Y-%m-%d",
                                    time.gmtime(time.time() + 86400)))):
            ok(c.get("/queries/%s&min_position=%d&wait_ms=10000" % (
                q, pos)))
        ok(c.command("CancelOrder", {"orderId": oid}))
        ok(c.get("/events?from=0&limit=5"))
        ok(c.get("/projections"))
        self.assertEqual(c.get("/metrics").status, 200)
        ok(c.post("/projections/catalog/rebuild"), 202)
        # bad input on the way
        self.assertEqual(c.command("AddToCart", b"{\"cartId\":").status, 400)
        self.assertEqual(c.command("Nope", {}).status, 404)
        self.assertEqual(c.command("Checkout", {"userId": "u1",
                                                "cartId": "c1"}).status,
                         422)
        self.assertEqual(c.get("/queries/product?productId=p1&a=%zz")
                         .status, 400)
        self.assertEqual(c.get("/queries/product?productId=zz&"
                               "min_position=999999&wait_ms=50").status,
                         504)
        self.assertEqual(c.command("AddProduct", b"{" + b" " * (2 << 20) +
                                   b"}").status, 413)
        # hostile: header flood, garbage, a connection that goes away
        # mid-request, a waiting query whose client leaves
        s = ct.raw_socket(srv.port, timeout=60)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n" +
                  b"".join(b"X-%d: v\r\n" % i for i in range(4000)) +
                  b"\r\n")
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 431"))
        s.close()
        for junk in (b"GARBAGE\r\n\r\n", b"POST /commands/Restock "
                     b"HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"a\"",
                     b"GET /queries/product?productId=p1&min_position="
                     b"99999&wait_ms=10000 HTTP/1.1\r\n"
                     b"Host: localhost\r\n\r\n"):
            s = ct.raw_socket(srv.port, timeout=60)
            s.sendall(junk)
            time.sleep(0.3)
            s.close()
        ok(c.get("/queries/product?productId=p1&min_position=%d" % pos))
        self.assertEqual(c.get("/health").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
