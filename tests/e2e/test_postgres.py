"""`cleave serve --write-store postgres://...` against a real PostgreSQL
server this test starts (initdb on a free port of 127.0.0.1, as the
`postgres` system user when run as root): a short shop flow over HTTP,
idempotent retries and If-Match conflicts, the writer's advisory lock
refusing a second server on the same database, a restart that goes on
from the log in PostgreSQL, a new data directory whose read models are
rebuilt from that log, and `cleave events` reading it read-only.

Prints "SKIPPED: ..." and passes only when PostgreSQL's server programs
are not installed (`sh scripts/deps.sh test` installs them).  Python
standard library only."""
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402


def find_pg_bin():
    env = os.environ.get("CLEAVE_PG_BIN")
    cands = [env] if env else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit()
        else 0, reverse=True)
    for d in cands:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and \
                os.access(os.path.join(d, "postgres"), os.X_OK):
            return d
    return None


class Postgres:
    """A private cluster.  A watchdog shell (its own session) waits on a
    pipe from this process and stops the server and removes its directory
    when the pipe closes: at stop(), or when this process dies anyhow."""

    def __init__(self, bindir):
        self.bin = bindir
        self.dir = tempfile.mkdtemp(prefix="cleave-pg-", dir="/tmp")
        self.root = os.geteuid() == 0
        self.prefix = ["runuser", "-u", "postgres", "--"] if self.root \
            else []
        if self.root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        cmd = ("trap '' INT TERM HUP; while read x; do :; done; "
               "%s'%s/pg_ctl' stop -D '%s' -m immediate -w -t 30 "
               ">/dev/null 2>&1; rm -rf '%s'" %
               ("runuser -u postgres -- " if self.root else "", self.bin,
                self.data, self.dir))
        self.watchdog = subprocess.Popen(["/bin/sh", "-c", cmd],
                                         stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        self.port = None

    def run(self, *argv):
        log = os.path.join(self.dir, "setup.log")
        with open(log, "ab") as f:
            return subprocess.call(self.prefix + list(argv), stdout=f,
                                   stderr=f, stdin=subprocess.DEVNULL)

    def logs(self):
        out = ""
        for name in ("setup.log", "server.log"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def start(self):
        if self.run(os.path.join(self.bin, "initdb"), "-D", self.data, "-A",
                    "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                    "-N"):
            raise AssertionError("initdb failed:\n" + self.logs())
        for _ in range(5):
            self.port = ct.free_port()
            opts = ("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on "
                    "-c max_connections=100" % (self.port, self.dir))
            self.opts = opts
            if self.run(os.path.join(self.bin, "pg_ctl"), "start", "-D",
                        self.data, "-l", os.path.join(self.dir, "server.log"),
                        "-w", "-t", "60", "-o", opts) == 0:
                return self
        raise AssertionError("pg_ctl start failed:\n" + self.logs())

    def restart(self):
        """pg_ctl restart -m fast: every connection is cut."""
        if self.run(os.path.join(self.bin, "pg_ctl"), "restart", "-D",
                    self.data, "-l", os.path.join(self.dir, "server.log"),
                    "-m", "fast", "-w", "-t", "60", "-o", self.opts):
            raise AssertionError("pg_ctl restart failed:\n" + self.logs())

    def stop(self):
        if self.watchdog:
            self.watchdog.stdin.close()
            self.watchdog.wait(120)
            self.watchdog = None

    def uri(self, db):
        return "postgres://postgres@127.0.0.1:%d/%s" % (self.port, db)

    def sql(self, db, sql):
        """Runs sql with psql; its output, unaligned, without headers."""
        out = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-A", "-t", "-v",
             "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", db, "-c", sql],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if out.returncode:
            raise AssertionError("psql %s: %s" % (sql, out.stderr.decode()))
        return out.stdout.decode().strip()


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith("CLEAVE_") or k in ("CLEAVE_BIN",
                                                     "CLEAVE_TEST_TMP")}


def wait_projections(c, pos, timeout=60):
    """Until every projection has applied pos."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = c.get("/projections").json()
        if all(p["position"] >= pos for p in j["projections"]):
            return
        time.sleep(0.05)
    raise AssertionError("projections did not reach %d: %r" % (pos, j))


class PostgresWriteStore(unittest.TestCase):
    pg = None

    @classmethod
    def setUpClass(cls):
        cls.pg = Postgres(PG_BIN).start()
        cls.pg.sql("postgres", "CREATE DATABASE shop")
        cls.uri = cls.pg.uri("shop")

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def serve(self, data=None, name="pg"):
        return ct.Server("--write-store", self.uri, data=data, name=name,
                         env=clean_env())

    def test_shop_flow_restart_and_rebuild(self):
        srv = self.serve().start()
        c = srv.client()
        ok = lambda r: self.assertEqual(r.status, 200, r) or r.json()
        ok(c.command("RegisterUser", {"userId": "u1", "name": "Ada",
                                      "country": "SE"}))
        r = c.command("RegisterUser", {"userId": "u1", "name": "Ada",
                                       "country": "SE"})
        self.assertEqual(r.status, 409, r)
        ok(c.command("AddProduct", {
            "productId": "p1", "name": "Espresso machine",
            "category": "kitchen", "price_cents": 19900, "stock": 5,
            "description": "15 bar pump, 'quoted' -- and a ? or two"}))
        ok(c.command("CreatePromo", {"code": "WELCOME10", "percent_off": 10,
                                     "max_uses": 100,
                                     "expires_at": 4102444800}))
        ok(c.command("AddToCart", {"cartId": "c1", "userId": "u1",
                                   "productId": "p1", "quantity": 2}))
        body = {"userId": "u1", "cartId": "c1", "promoCode": "WELCOME10"}
        key = {"Idempotency-Key": "checkout-c1"}
        first = ok(c.command("Checkout", body, key))
        self.assertEqual(first["result"]["total_cents"], 39800 - 3980)
        again = c.command("Checkout", body, key)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json(), first)
        pos = first["position"]
        self.assertEqual(pos, 5)
        # optimistic concurrency: the product stream is at version 1
        r = c.command("Restock", {"productId": "p1", "quantity": 1},
                      {"If-Match": '"7"'})
        self.assertEqual(r.status, 409, r)
        ok(c.command("Restock", {"productId": "p1", "quantity": 1},
                     {"If-Match": '"1"'}))
        pos += 1
        card = ok(c.get("/queries/product?productId=p1&min_position=%d" %
                        pos))
        self.assertEqual((card["stock"], card["sold"]), (4, 2))
        evs = ok(c.get("/events?from=0&limit=100"))
        self.assertEqual([e["position"] for e in evs["events"]],
                         list(range(1, pos + 1)))
        self.assertEqual(evs["head"], pos)
        evs = ok(c.get("/events?from=0&stream=product-p1"))
        self.assertEqual([e["version"] for e in evs["events"]], [1, 2])
        # the log and the write model are in PostgreSQL
        self.assertEqual(self.pg.sql("shop", "SELECT count(*) FROM events"),
                         str(pos))
        self.assertEqual(self.pg.sql("shop",
                                     "SELECT stock FROM inventory"), "4")
        self.assertIn("'quoted' -- and a ? or two", self.pg.sql(
            "shop", "SELECT data FROM events WHERE type = 'ProductAdded'"))

        # a second server on the same database is refused
        other = ct.tmpdir("pg-other")
        p = subprocess.run([ct.BIN, "serve", "--listen", "127.0.0.1:0",
                            "--data", other, "--write-store", self.uri],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"in use by another cleave engine", p.stderr)
        shutil.rmtree(other, ignore_errors=True)

        # restart: the same data directory, the log goes on
        srv.stop()
        srv.start()
        c = srv.client()
        card = ok(c.get("/queries/product?productId=p1&min_position=%d" %
                        pos))
        self.assertEqual((card["stock"], card["sold"]), (4, 2))
        again = c.command("Checkout", body, key)
        self.assertEqual(again.json(), first)
        r = ok(c.command("Restock", {"productId": "p1", "quantity": 3}))
        self.assertEqual(r["position"], pos + 1)
        pos += 1
        orders = ok(c.get("/queries/user_orders?userId=u1&min_position=%d" %
                          pos))
        self.assertEqual(len(orders["items"]), 1)
        srv.stop()

        # a new data directory: the read models come from the log in
        # PostgreSQL
        fresh = self.serve(name="pg-fresh").start()
        c = fresh.client()
        card = ok(c.get("/queries/product?productId=p1&min_position=%d" %
                        pos))
        self.assertEqual((card["stock"], card["sold"]), (7, 2))
        top = ok(c.get("/queries/top_products?limit=5&min_position=%d" % pos))
        self.assertEqual(top["items"][0]["productId"], "p1")
        wait_projections(c, pos)
        fresh.stop()

        # the operator's tools read the log from PostgreSQL, read-only
        p = subprocess.run([ct.BIN, "events", "--data", fresh.data,
                            "--write-store", self.uri],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
        self.assertEqual([e["position"] for e in lines],
                         list(range(1, pos + 1)))
        self.assertEqual(lines[4]["type"], "OrderPlaced")
        self.assertEqual(lines[4]["idempotency_key"], "checkout-c1")
        p = subprocess.run([ct.BIN, "status", "--json", "--data", fresh.data,
                            "--write-store", self.uri],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        for line in p.stdout.decode().splitlines():
            st = json.loads(line)
            self.assertEqual(st["position"], pos, st)
        fresh.cleanup()
        srv.cleanup()

    def test_query_node_on_postgres(self):
        """A writer on PostgreSQL with its key/value read models in Redis,
        and a query node beside it on the same database (read-only) and
        the same Redis: the node answers as the writer does, with
        read-your-writes across the two, and refuses commands."""
        import test_redis_read_store as rrs
        if not rrs.REDIS_SERVER:
            self.skipTest("redis-server is not installed")
        self.pg.sql("postgres", "CREATE DATABASE shop_qn")
        uri = self.pg.uri("shop_qn")
        redis = rrs.Redis()
        servers = []
        try:
            redis.start()
            rs = "redis://127.0.0.1:%d/0/pgqn" % redis.port
            w = ct.Server("--write-store", uri, "--read-store", rs,
                          name="pg-writer", env=clean_env())
            servers.append(w)
            w.start()
            q = ct.Server("--query-node", "--write-store", uri,
                          "--read-store", rs, name="pg-node",
                          env=clean_env())
            servers.append(q)
            q.start()
            cw, cq = w.client(), q.client()
            pos = ct.readme_walk(self, cw)["position"]
            for path in ["/queries/product?productId=p1",
                         "/queries/order?orderId=o-00000001",
                         "/queries/user_orders?userId=u1",
                         "/queries/search_products?q=espresso",
                         "/queries/top_products?limit=3"]:
                sep = "&" if "?" in path else "?"
                url = "%s%smin_position=%d&wait_ms=10000" % (path, sep, pos)
                a, b = cw.get(url), cq.get(url)
                self.assertEqual((a.status, a.body), (200, b.body),
                                 (path, a.body, b.body))
            for i in range(20):
                r = cw.command("Restock", {"productId": "p1",
                                           "quantity": 1})
                self.assertEqual(r.status, 200, r)
                p = r.json()["position"]
                got = cq.get("/queries/product?productId=p1&min_position="
                             "%d&wait_ms=10000" % p)
                self.assertEqual(got.status, 200, got)
                self.assertEqual(got.json()["stock"], 3 + i + 1)
                self.assertGreaterEqual(got.json()["position"], p)
            # PostgreSQL restarts: the writer and the node reconnect by
            # themselves — the node's log head and its own SQL read model
            # (search) move on, nothing restarted
            self.pg.restart()
            deadline = time.time() + 30
            while True:
                r = cw.command("Restock", {"productId": "p1",
                                           "quantity": 1})
                if r.status == 200 or time.time() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(r.status, 200, r)
            p = r.json()["position"]
            r = cw.command("ChangePrice", {"productId": "p1",
                                           "price_cents": 777})
            self.assertEqual(r.status, 200, r)
            p = r.json()["position"]
            for path in ["/queries/product?productId=p1",
                         "/queries/search_products?q=espresso"]:
                got = cq.get("%s&min_position=%d&wait_ms=10000" % (path, p))
                self.assertEqual(got.status, 200, (path, got))
                self.assertGreaterEqual(got.json()["position"], p)
            self.assertEqual(got.json()["items"][0]["price_cents"], 777,
                             got.json())
            ct.check_error(cq.command("Restock", {"productId": "p1",
                                                  "quantity": 1}),
                           421, "read_only")
            self.assertEqual(cq.get("/events?from=0&limit=100").body,
                             cw.get("/events?from=0&limit=100").body)
        finally:
            for s in servers:
                s.stop()
            redis.stop()
            redis.cleanup()

    def test_multi_host_uri(self):
        """A PostgreSQL URI with several hosts (the first one down) and
        target_session_attrs=read-write, sslmode: libpq picks the writable
        server, and the writer works there."""
        self.pg.sql("postgres", "CREATE DATABASE shop_mh")
        dead = ct.free_port()
        uri = ("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/shop_mh"
               "?target_session_attrs=read-write&sslmode=disable"
               % (dead, self.pg.port))
        srv = ct.Server("--write-store", uri, name="pg-mh", env=clean_env())
        srv.start()
        try:
            c = srv.client()
            r = c.command("AddProduct", {"productId": "m1", "name": "M",
                                         "category": "c", "price_cents": 5,
                                         "stock": 1})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(self.pg.sql("shop_mh",
                                         "SELECT count(*) FROM events"), "1")
        finally:
            srv.stop(expect=0)
        srv.cleanup()

    def test_unreachable_server(self):
        bad = "postgres://postgres:secret@127.0.0.1:%d/shop" % ct.free_port()
        d = ct.tmpdir("pg-bad")
        t0 = time.time()
        p = subprocess.run([ct.BIN, "serve", "--listen", "127.0.0.1:0",
                            "--data", d, "--write-store", bad],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(), timeout=60)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn(b"cannot connect to PostgreSQL", p.stderr)
        self.assertNotIn(b"secret", p.stderr)
        self.assertLess(time.time() - t0, 30)
        shutil.rmtree(d, ignore_errors=True)


PG_BIN = find_pg_bin()

if __name__ == "__main__":
    if not PG_BIN:
        print("SKIPPED: PostgreSQL server programs are not installed "
              "(sh scripts/deps.sh test installs them)")
        sys.exit(0)
    unittest.main(verbosity=2)
