"""The operator CLI against the real binary: `cleave status`, `rebuild`,
`verify`, `events` and `trace`, each from a data directory (server stopped,
or beside a running server where read-only is enough) and over HTTP with
--server.  Read models are tampered with by hand (LMDB through mdb_dump /
mdb_load when installed, SQLite through Python's sqlite3) to see verify
name the drifted keys.  Python standard library only."""
import json
import os
import pty
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

SHOP_PROJECTIONS = {"catalog", "search", "orders", "revenue", "bestsellers"}


def uid(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def clean_env(extra=None):
    """The caller's environment without CLEAVE_* defaults that would
    change what the CLI looks at."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("CLEAVE_") and k not in ("CLEAVE_BIN",
                                                         "CLEAVE_TEST_TMP"))}
    env.update(extra or {})
    return env


def cli(*args, env=None, timeout=120):
    """Runs `cleave ARGS` with stdout a pipe (JSON lines)."""
    p = subprocess.run([ct.BIN] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, env=clean_env(env),
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def cli_tty(*args, env=None, timeout=120):
    """Runs `cleave ARGS` with stdout a terminal (tables)."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([ct.BIN] + [str(a) for a in args], stdout=slave,
                             stderr=err, stdin=subprocess.DEVNULL,
                             env=clean_env(env))
        os.close(slave)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                d = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not d:
                break
            out += d
        rc = p.wait(timeout)
        os.close(master)
        err.seek(0)
        return rc, out.decode().replace("\r\n", "\n"), err.read().decode()


def json_lines(text):
    out = []
    for line in text.splitlines():
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def wait_caught_up(c, timeout=30):
    """Waits until every projection has applied the log head."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        j = c.get("/projections").json()
        if all(p["position"] == j["head"] and p["state"] == "live"
               for p in j["projections"]):
            return j["head"]
        time.sleep(0.02)
    raise AssertionError("projections did not catch up: %r" % j)


def seed_shop(c):
    """A small shop: users, products, carts, orders, a cancellation.
    Returns the command answers by label."""
    out = {}

    def cmd(label, name, body, trace=None):
        h = {"X-Trace-Id": trace} if trace else None
        r = c.command(name, body, h)
        assert r.status == 200, (name, r)
        out[label] = r.json()
        return out[label]

    u1, u2 = uid("u"), uid("u")
    p1, p2, p3 = uid("p"), uid("p"), uid("p")
    cmd("user1", "RegisterUser", {"userId": u1, "name": "Ann",
                                  "country": "DE"}, trace=uid("tr-user-"))
    cmd("user2", "RegisterUser", {"userId": u2, "name": "Bob",
                                  "country": "FR"})
    for i, p in enumerate((p1, p2, p3)):
        cmd("product%d" % i, "AddProduct",
            {"productId": p, "name": "Lamp %d" % i, "category": "home",
             "price_cents": 1000 + i, "stock": 20})
    cmd("cart1", "AddToCart", {"cartId": uid("c"), "userId": u1,
                               "productId": p1, "quantity": 2})
    cart2 = uid("c")
    cmd("cart2", "AddToCart", {"cartId": cart2, "userId": u2,
                               "productId": p2, "quantity": 1})
    cmd("cart2b", "AddToCart", {"cartId": cart2, "userId": u2,
                                "productId": p3, "quantity": 3})
    out["checkout_trace"] = uid("tr-checkout-")
    cmd("checkout", "Checkout", {"userId": u2, "cartId": cart2},
        trace=out["checkout_trace"])
    cmd("restock", "Restock", {"productId": p1, "quantity": 5})
    cmd("price", "ChangePrice", {"productId": p2, "price_cents": 1500})
    cart3 = uid("c")
    cmd("cart3", "AddToCart", {"cartId": cart3, "userId": u1,
                               "productId": p3, "quantity": 1})
    order = cmd("checkout3", "Checkout", {"userId": u1, "cartId": cart3})
    cmd("cancel", "CancelOrder", {"orderId": order["result"]["orderId"]})
    out["products"] = (p1, p2, p3)
    return out


def expected_events(answers):
    """(position, type, stream, version, trace_id, command_id) of every
    event the seeded commands produced, from their answers."""
    ev = []
    for a in answers.values():
        if not isinstance(a, dict) or "events" not in a:
            continue
        for e in a["events"]:
            ev.append((e["position"], e["type"], e["stream"], e["version"],
                       a["trace_id"], a["command_id"]))
    return sorted(ev)


class CliWithServer(unittest.TestCase):
    """One server for the class, seeded once."""
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(name="cli").start()
        cls.url = "http://127.0.0.1:%d" % cls.srv.port
        c = cls.srv.client()
        cls.answers = seed_shop(c)
        cls.head = wait_caught_up(c)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    def setUp(self):
        self.c = self.srv.client()

    # ---- events -------------------------------------------------------

    def check_events(self, lines, want):
        got = [(e["position"], e["type"], e["stream"], e["version"],
                e["trace_id"], e["command_id"]) for e in lines]
        self.assertEqual(got, want)
        for e in lines:
            self.assertIsInstance(e["data"], dict)
            self.assertIsInstance(e["schema_version"], int)
            self.assertIsInstance(e["ts_us"], int)
            self.assertGreater(e["ts_us"], 10 ** 15)

    def test_events_match_commands(self):
        want = [e for e in expected_events(self.answers)
                if e[0] <= self.head]
        self.assertEqual([e[0] for e in want],
                         list(range(1, self.head + 1)))
        # from the data directory beside the running server, read-only
        rc, out, err = cli("events", "--data", self.srv.data)
        self.assertEqual(rc, 0, err)
        data_lines = json_lines(out)[:self.head]
        self.check_events(data_lines, want)
        # over HTTP: the same lines
        rc, out, err = cli("events", "--server", self.url)
        self.assertEqual(rc, 0, err)
        srv_lines = json_lines(out)[:self.head]
        self.check_events(srv_lines, want)
        self.assertEqual(data_lines, srv_lines)
        # the data of an OrderPlaced event is the order
        placed = [e for e in data_lines if e["type"] == "OrderPlaced"][0]
        self.assertIn("orderId", placed["data"])
        self.assertIn("total_cents", placed["data"])

    def test_events_filters(self):
        want = [e for e in expected_events(self.answers)
                if e[0] <= self.head]
        stream = want[3][2]
        for where in (["--data", self.srv.data], ["--server", self.url]):
            rc, out, err = cli("events", "--from", 3, "--limit", 4, *where)
            self.assertEqual(rc, 0, err)
            self.assertEqual([e["position"] for e in json_lines(out)],
                             [3, 4, 5, 6])
            rc, out, err = cli("events", "-n", 2, *where)
            self.assertEqual(rc, 0, err)
            self.assertEqual([e["position"] for e in json_lines(out)],
                             [1, 2])
            rc, out, err = cli("events", "--stream", stream, *where)
            self.assertEqual(rc, 0, err)
            lines = json_lines(out)
            self.assertEqual([e["position"] for e in lines],
                             [e[0] for e in want if e[2] == stream])
            self.assertTrue(all(e["stream"] == stream for e in lines))
            rc, out, err = cli("events", "--from", 10 ** 9, *where)
            self.assertEqual((rc, out), (0, ""), err)

    def follow(self, where):
        head = self.c.get("/health").json()["head"]
        p = subprocess.Popen([ct.BIN, "events", "--follow", "--from",
                              str(head + 1), "--interval", "0.05"] + where,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=clean_env())
        try:
            time.sleep(0.3)
            pid = uid("p")
            r = self.c.command("AddProduct", {
                "productId": pid, "name": "Followed", "category": "x",
                "price_cents": 5, "stock": 1})
            self.assertEqual(r.status, 200, r)
            line = json.loads(p.stdout.readline())
            self.assertEqual(line["position"], r.json()["position"])
            self.assertEqual(line["type"], "ProductAdded")
            self.assertEqual(line["data"]["productId"], pid)
            p.send_signal(signal.SIGINT)
            rc = p.wait(30)
            self.assertEqual(rc, 0, p.stderr.read())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()

    def test_events_follow_data(self):
        self.follow(["--data", self.srv.data])

    def test_events_follow_server(self):
        self.follow(["--server", self.url])

    def test_events_closed_pipe_is_quiet(self):
        for where in (["--data", self.srv.data], ["--server", self.url]):
            p = subprocess.Popen([ct.BIN, "events", "--follow",
                                  "--interval", "0.05"] + where,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, env=clean_env())
            json.loads(p.stdout.readline())
            p.stdout.close()  # like `| head -1`
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise AssertionError("events --follow kept running after "
                                     "its reader left")
            err = p.stderr.read().decode()
            p.stderr.close()
            self.assertEqual(rc, 0, err)
            self.assertEqual(err, "")

    # ---- status -------------------------------------------------------

    def test_status_json(self):
        head = wait_caught_up(self.c)
        for where in (["--server", self.url], ["--data", self.srv.data]):
            rc, out, err = cli("status", *where)
            self.assertEqual(rc, 0, err)
            lines = json_lines(out)
            self.assertEqual({p["name"] for p in lines}, SHOP_PROJECTIONS)
            for p in lines:
                self.assertEqual(p["state"], "live", p)
                self.assertEqual(p["position"], head, p)
                self.assertEqual(p["lag_events"], 0, p)
                self.assertEqual(p["lag_seconds"], 0, p)
                self.assertIsNone(p["last_error"], p)
                self.assertGreaterEqual(p["version"], 1)
                self.assertEqual(p["head"], head)

    def test_status_table_on_a_terminal(self):
        for where in (["--server", self.url], ["--data", self.srv.data]):
            rc, out, err = cli_tty("status", *where)
            self.assertEqual(rc, 0, err)
            lines = out.splitlines()
            for col in ("PROJECTION", "VERSION", "STATE", "POSITION",
                        "LAG EVENTS", "LAG SECONDS", "LAST ERROR"):
                self.assertIn(col, lines[0])
            for name in SHOP_PROJECTIONS:
                row = [ln for ln in lines if ln.split()[:1] == [name]]
                self.assertEqual(len(row), 1, out)
                self.assertIn("live", row[0])
            # --json wins over the terminal
            rc, out, err = cli_tty("status", "--json", *where)
            self.assertEqual(rc, 0, err)
            self.assertEqual({p["name"] for p in json_lines(out)},
                             SHOP_PROJECTIONS)

    # ---- rebuild and verify while serving -----------------------------

    def test_rebuild_over_server_then_verify(self):
        rc, out, err = cli("rebuild", "catalog", "orders", "--server",
                           self.url, "--timeout", 60)
        self.assertEqual(rc, 0, err)
        res = json_lines(out)
        self.assertEqual([r["name"] for r in res], ["catalog", "orders"])
        self.assertTrue(all(r["result"] == "rebuilt" for r in res), res)
        pid = self.answers["products"][0]
        r = self.c.get("/queries/product?productId=" + pid)
        self.assertEqual(r.status, 200, r)
        # verify beside the running server (read-only): no drift
        rc, out, err = cli("verify", "--data", self.srv.data)
        self.assertEqual(rc, 0, out + err)
        lines = json_lines(out)
        self.assertEqual({ln["projection"] for ln in lines},
                         SHOP_PROJECTIONS)
        for ln in lines:
            self.assertEqual(ln["result"], "ok", ln)
            self.assertEqual(ln["differences"], 0)
            self.assertGreaterEqual(ln["position"], 1)
        # a scratch copy never outlives verify
        self.assertFalse([d for d in os.listdir(
            os.path.join(self.srv.data, "read")) if ".verify-" in d])

    def test_rebuild_no_wait_and_unknown(self):
        rc, out, err = cli("rebuild", "bestsellers", "--no-wait",
                           "--server", self.url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json_lines(out)[0]["name"], "bestsellers")
        rc, out, err = cli("rebuild", "no_such_projection", "--server",
                           self.url)
        self.assertEqual(rc, 1)
        self.assertIn("404", err)
        self.assertIn("no_such_projection", err)

    def test_locked_data_dir(self):
        rc, out, err = cli("rebuild", "catalog", "--data", self.srv.data)
        self.assertEqual(rc, 1, err)
        self.assertIn("in use", err)
        self.assertIn("--server", err)
        self.assertEqual(out, "")

    # ---- trace --------------------------------------------------------

    def test_trace_by_trace_id(self):
        wait_caught_up(self.c)
        a = self.answers["checkout"]
        tid = self.answers["checkout_trace"]
        self.assertEqual(a["trace_id"], tid)
        rc, out, err = cli("trace", tid, "--data", self.srv.data)
        self.assertEqual(rc, 0, err)
        cmds = json_lines(out)
        self.assertEqual(len(cmds), 1)
        t = cmds[0]
        self.assertEqual(t["trace_id"], tid)
        self.assertEqual(t["command_id"], a["command_id"])
        self.assertEqual([(e["position"], e["type"], e["stream"])
                          for e in t["events"]],
                         [(e["position"], e["type"], e["stream"])
                          for e in a["events"]])
        self.assertEqual({p["name"] for p in t["projections"]},
                         SHOP_PROJECTIONS)
        for p in t["projections"]:
            self.assertTrue(p["applied"], p)
        self.assertTrue(all(p["subscribed"] for p in t["projections"]
                            if p["name"] in ("orders", "revenue",
                                             "bestsellers")))
        # by command id: the same command
        rc, out, err = cli("trace", a["command_id"], "--data",
                           self.srv.data)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json_lines(out)[0]["command_id"], a["command_id"])
        # a terminal gets a report per projection
        rc, out, err = cli_tty("trace", tid, "--data", self.srv.data)
        self.assertEqual(rc, 0, err)
        self.assertIn(a["command_id"], out)
        self.assertIn("OrderPlaced", out)
        for name in SHOP_PROJECTIONS:
            row = [ln for ln in out.splitlines()
                   if ln.split()[:1] == [name]]
            self.assertEqual(len(row), 1, out)
            self.assertIn("applied", row[0])
            self.assertNotIn("not yet", row[0])

    def test_trace_event_nobody_reads(self):
        a = self.answers["user1"]
        rc, out, err = cli("trace", a["trace_id"], "--data", self.srv.data)
        self.assertEqual(rc, 0, err)
        t = json_lines(out)[0]
        self.assertEqual(t["events"][0]["type"], "UserRegistered")
        for p in t["projections"]:
            self.assertTrue(p["applied"], p)  # the position passed it

    def test_trace_not_found(self):
        rc, out, err = cli("trace", uid("nothing-"), "--data",
                           self.srv.data)
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("no event", err)

    # ---- verify and trace over --server --------------------------------

    def test_verify_over_server(self):
        wait_caught_up(self.c)
        rc, out, err = cli("verify", "--server", self.url)
        self.assertEqual(rc, 0, out + err)
        srv_lines = json_lines(out)
        self.assertEqual({ln["projection"] for ln in srv_lines},
                         SHOP_PROJECTIONS)
        for ln in srv_lines:
            self.assertEqual(ln["result"], "ok", ln)
            self.assertEqual(ln["differences"], 0)
            self.assertGreaterEqual(ln["position"], 1)
        # the same lines as from the data directory (times aside)
        rc, out, err = cli("verify", "--data", self.srv.data)
        self.assertEqual(rc, 0, out + err)
        data_lines = json_lines(out)
        for ln in srv_lines + data_lines:
            del ln["seconds"]
        self.assertEqual(srv_lines, data_lines)
        rc, out, err = cli("verify", "catalog", "--server", self.url)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([ln["projection"] for ln in json_lines(out)],
                         ["catalog"])
        rc, out, err = cli_tty("verify", "orders", "--server", self.url)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("orders: ok, identical to a rebuild", out)
        rc, out, err = cli("verify", "no_such_projection", "--server",
                           self.url)
        self.assertEqual(rc, 1, err)
        self.assertIn("no projection 'no_such_projection'", err)
        # no scratch copy left behind by the server either
        self.assertFalse([d for d in os.listdir(
            os.path.join(self.srv.data, "read")) if ".verify-" in d])

    def trace_both(self, tid, tty=False):
        run = cli_tty if tty else cli
        a = run("trace", tid, "--server", self.url)
        b = run("trace", tid, "--data", self.srv.data)
        return a, b

    @staticmethod
    def timeless(lines):
        """Trace lines without when projections applied: the server
        remembers recent times, a read-only engine none."""
        for t in lines:
            for p in t["projections"]:
                p.pop("applied_at_us")
                p.pop("applied_at")
        return lines

    def test_trace_over_server(self):
        wait_caught_up(self.c)
        a = self.answers["checkout"]
        for tid in (self.answers["checkout_trace"], a["command_id"],
                    self.answers["user1"]["trace_id"]):
            (rc, out, err), (rc2, out2, err2) = self.trace_both(tid)
            self.assertEqual(rc, 0, err)
            self.assertEqual(rc2, 0, err2)
            srv_lines = json_lines(out)
            self.assertTrue(srv_lines)
            # the server remembers when each projection applied them
            for t in srv_lines:
                for p in t["projections"]:
                    self.assertTrue(p["applied"], p)
                    self.assertIsInstance(p["applied_at_us"], int, p)
            self.assertEqual(self.timeless(srv_lines),
                             self.timeless(json_lines(out2)))
        t = json_lines(cli("trace", a["command_id"], "--server",
                           self.url)[1])[0]
        self.assertEqual([(e["position"], e["type"], e["stream"])
                          for e in t["events"]],
                         [(e["position"], e["type"], e["stream"])
                          for e in a["events"]])
        # a terminal gets the same report
        (rc, out, err), (rc2, out2, err2) = self.trace_both(
            self.answers["checkout_trace"], tty=True)
        self.assertEqual((rc, rc2), (0, 0), err + err2)
        srv_rows, data_rows = out.splitlines(), out2.splitlines()
        self.assertEqual(len(srv_rows), len(data_rows), out + out2)
        for x, y in zip(srv_rows, data_rows):
            if x.split()[:1] and x.split()[0] in SHOP_PROJECTIONS:
                self.assertEqual(x.split()[:3], y.split()[:3])
                self.assertIn("applied at", x)
            else:
                self.assertEqual(x, y)
        # nothing found, and a malformed id
        rc, out, err = cli("trace", uid("nothing-"), "--server", self.url)
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("no event", err)
        rc, out, err = cli("trace", "not an id", "--server", self.url)
        self.assertEqual((rc, out), (2, ""), err)


class CliServerStopped(unittest.TestCase):
    """Rebuild and verify on a data directory with no server running;
    drift made by hand is found, named, and repaired by a rebuild."""

    def setUp(self):
        self.srv = ct.Server(name="cli-stopped").start()
        self.answers = seed_shop(self.srv.client())
        wait_caught_up(self.srv.client())
        self.srv.stop()
        self.data = self.srv.data

    def tearDown(self):
        self.srv.cleanup()

    def catalog(self):
        with open(os.path.join(self.data, "read", "catalog.json")) as f:
            return json.load(f)["projections"]

    def live_dir(self, name):
        gen = self.catalog()[name]["live"]["gen"]
        return os.path.join(self.data, "read", "%s.g%d" % (name, gen))

    def verify(self, *names):
        rc, out, err = cli("verify", "--data", self.data, *names)
        lines = json_lines(out)
        diffs = [ln for ln in lines if "diff" in ln]
        summary = [ln for ln in lines if "result" in ln]
        return rc, diffs, summary, err

    def test_rebuild_then_verify(self):
        gen_before = self.catalog()["catalog"]["live"]["gen"]
        rc, out, err = cli("rebuild", "catalog", "search", "--data",
                           self.data)
        self.assertEqual(rc, 0, err)
        res = json_lines(out)
        self.assertEqual([(r["name"], r["result"]) for r in res],
                         [("catalog", "rebuilt"), ("search", "rebuilt")])
        self.assertGreater(self.catalog()["catalog"]["live"]["gen"],
                           gen_before)
        rc, diffs, summary, err = self.verify()
        self.assertEqual(rc, 0, err)
        self.assertEqual(diffs, [])
        self.assertEqual({s["projection"] for s in summary},
                         SHOP_PROJECTIONS)
        # status from the data directory, server stopped
        rc, out, err = cli("status", "--data", self.data)
        self.assertEqual(rc, 0, err)
        self.assertTrue(all(p["state"] == "live" and p["lag_events"] == 0
                            for p in json_lines(out)))

    def tamper_sqlite(self, name):
        """Changes one row of one of the projection's own tables, deletes
        another; returns the table."""
        path = os.path.join(self.live_dir(name), "read.db")
        db = sqlite3.connect(path)
        try:
            tables = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND "
                "name NOT LIKE 'sqlite%' AND name NOT LIKE '\\_\\_%' "
                "ESCAPE '\\' AND name NOT LIKE '%fts%' ORDER BY name")]
            for t in tables:
                n = db.execute("SELECT count(*) FROM \"%s\"" % t)
                if n.fetchone()[0] < 2:
                    continue
                cols = db.execute("PRAGMA table_info(\"%s\")" % t)
                cols = [c for c in cols.fetchall() if not c[5]]
                col = cols[-1][1]
                rows = [r[0] for r in db.execute(
                    "SELECT rowid FROM \"%s\" ORDER BY rowid LIMIT 2" % t)]
                db.execute("UPDATE \"%s\" SET \"%s\" = \"%s\" || 'x' "
                           "WHERE rowid = ?" % (t, col, col), (rows[0],))
                db.execute("DELETE FROM \"%s\" WHERE rowid = ?" % t,
                           (rows[1],))
                db.commit()
                return t
        finally:
            db.close()
        raise AssertionError("no table with rows in %s" % path)

    def same_over_server(self, name):
        """verify NAME over --server finds the drift --data finds."""
        rc, out, err = cli("verify", name, "--data", self.data)
        self.assertEqual(rc, 1, err)
        want = json_lines(out)
        srv = ct.Server(data=self.data, name="cli-drift").start()
        try:
            url = "http://127.0.0.1:%d" % srv.port
            rc, out, err = cli("verify", name, "--server", url)
            self.assertEqual(rc, 1, err)
            got = json_lines(out)
            rc, tty, err = cli_tty("verify", name, "--server", url)
            self.assertEqual(rc, 1, err)
            self.assertIn("DRIFT", tty)
        finally:
            srv.stop()  # the data directory stays
        for ln in got + want:
            ln.pop("seconds", None)
        key = lambda ln: json.dumps(ln, sort_keys=True)  # noqa: E731
        self.assertEqual(sorted(got, key=key), sorted(want, key=key))

    def test_verify_finds_sqlite_drift(self):
        table = self.tamper_sqlite("search")
        rc, diffs, summary, err = self.verify("search")
        self.assertEqual(rc, 1, err)
        self.assertTrue(all(d["projection"] == "search" for d in diffs))
        # the changed row and the deleted one (an index over the table,
        # e.g. full-text, may show the deleted row too)
        self.assertEqual(sorted(d["diff"] for d in diffs
                                if d["table"] == table),
                         ["different", "missing"], diffs)
        self.assertEqual(summary[0]["result"], "drift")
        self.assertEqual(summary[0]["differences"], len(diffs))
        # the other projections are fine; all together is still drift
        rc, diffs, summary, err = self.verify("catalog", "orders")
        self.assertEqual((rc, diffs), (0, []), err)
        rc, diffs, summary, err = self.verify()
        self.assertEqual(rc, 1, err)
        # a terminal gets a table and a summary line
        rc, out, err = cli_tty("verify", "search", "--data", self.data)
        self.assertEqual(rc, 1, err)
        self.assertIn("DRIFT", out)
        self.assertIn(table, out)
        self.same_over_server("search")
        # a rebuild repairs it
        rc, out, err = cli("rebuild", "search", "--data", self.data)
        self.assertEqual(rc, 0, err)
        rc, diffs, summary, err = self.verify("search")
        self.assertEqual((rc, diffs), (0, []), err)

    @unittest.skipUnless(shutil.which("mdb_dump") and
                         shutil.which("mdb_load"),
                         "lmdb-utils (mdb_dump, mdb_load) not installed")
    def test_verify_finds_lmdb_drift(self):
        path = self.live_dir("catalog")
        dump = subprocess.run(["mdb_dump", "-a", "-p", path],
                              stdout=subprocess.PIPE, check=True,
                              timeout=60).stdout.decode()
        # the first plain key of a namespace of the projection's own
        db, key, header = None, None, []
        lines = dump.splitlines()
        for i, ln in enumerate(lines):
            if ln.startswith("VERSION="):
                header = []
            header.append(ln)
            if ln.startswith("database="):
                db = ln[len("database="):]
            if (ln == "HEADER=END" and db and not db.startswith("#") and
                    i + 1 < len(lines) and lines[i + 1] != "DATA=END" and
                    "\\" not in lines[i + 1]):
                key = lines[i + 1][1:]
                break
        self.assertIsNotNone(key, dump)
        load = "\n".join(header) + "\n %s\n %s\n ghost-key\n {}\nDATA=END\n" \
            % (key, '{"tampered":true}')
        subprocess.run(["mdb_load", "-s", db, path], input=load.encode(),
                       check=True, stderr=subprocess.DEVNULL, timeout=60)
        rc, diffs, summary, err = self.verify("catalog")
        self.assertEqual(rc, 1, err)
        got = sorted((d["table"], d["key"], d["diff"]) for d in diffs)
        self.assertEqual(got, sorted([(db, key, "different"),
                                      (db, "ghost-key", "extra")]))
        self.assertEqual(summary[0]["differences"], 2)
        self.assertEqual(summary[0]["position"],
                         max(e["position"] for a in self.answers.values()
                             if isinstance(a, dict) and "events" in a
                             for e in a["events"]))
        self.same_over_server("catalog")
        rc, out, err = cli("rebuild", "catalog", "--data", self.data)
        self.assertEqual(rc, 0, err)
        rc, diffs, summary, err = self.verify("catalog")
        self.assertEqual((rc, diffs), (0, []), err)

    def test_wrong_domain_or_directory_changes_nothing(self):
        before = sorted(os.listdir(os.path.join(self.data, "read")))
        rc, out, err = cli("rebuild", "accounts", "--domain", "bank",
                           "--data", self.data)
        self.assertEqual(rc, 1, err)
        self.assertIn("--domain", err)
        self.assertEqual(sorted(os.listdir(os.path.join(self.data, "read"))),
                         before)
        missing = os.path.join(self.data + "-typo")
        for args in (["status"], ["rebuild", "catalog"], ["events"],
                     ["verify"], ["trace", "x"]):
            rc, out, err = cli(*args, "--data", missing)
            self.assertEqual(rc, 1, (args, err))
            self.assertIn("no data directory", err)
            self.assertFalse(os.path.exists(missing))

    def test_environment_defaults(self):
        rc, out, err = cli("status", env={"CLEAVE_DATA": self.data})
        self.assertEqual(rc, 0, err)
        self.assertEqual({p["name"] for p in json_lines(out)},
                         SHOP_PROJECTIONS)
        rc, out, err = cli("status", env={"CLEAVE_DATA": self.data,
                                          "CLEAVE_DOMAIN": "bank"})
        self.assertEqual(rc, 1, err)
        rc, out, err = cli("status", "--domain", "nope", "--data",
                           self.data)
        self.assertEqual(rc, 2, err)
        self.assertIn("shop", err)


class CliUsage(unittest.TestCase):

    def test_usage_errors_exit_2(self):
        cases = [
            ["status", "--bogus"],
            ["status", "extra-argument"],
            ["status", "--data"],
            ["status", "--data", "a", "--server", "http://127.0.0.1:1"],
            ["status", "--server", "https://example.com"],
            ["status", "--server", "http://127.0.0.1:99999"],
            ["rebuild"],
            ["rebuild", "catalog", "--timeout", "soon"],
            ["events", "--limit", "0"],
            ["events", "--limit", "many"],
            ["events", "--from", "-1"],
            ["events", "unexpected"],
            ["trace"],
            ["trace", "a", "b"],
            ["verify", "--json=yes"],
        ]
        for args in cases:
            rc, out, err = cli(*args)
            self.assertEqual(rc, 2, (args, out, err))
            self.assertEqual(out, "", args)
            self.assertIn("--help", err, args)

    def test_help(self):
        for sub in ("status", "rebuild", "verify", "events", "trace"):
            rc, out, err = cli(sub, "--help")
            self.assertEqual(rc, 0, err)
            self.assertTrue(out.startswith("Usage: cleave " + sub), out)
            self.assertIn("--data DIR", out)
            self.assertIn("--server URL", out)
            rc, out2, err = cli(sub, "-h")
            self.assertEqual((rc, out2), (0, out))

    def test_server_unreachable(self):
        rc, out, err = cli("status", "--server", "http://127.0.0.1:1",
                           "--http-timeout", "5")
        self.assertEqual(rc, 1)
        self.assertIn("cannot connect", err)


class FakeServer:
    """A stand-in for `cleave serve` that answers GET /projections and
    GET /events with chunked bodies on kept-alive connections, and checks
    the bearer token: the CLI's HTTP client must not wait for a close."""

    def __init__(self, token=None):
        events = [{"position": i, "stream": "s-%d" % (i % 3), "version": i,
                   "type": "T", "schema_version": 1, "data": {"i": i},
                   "ts_us": 1700000000000000 + i, "trace_id": "t%d" % i,
                   "command_id": "c%d" % i} for i in range(1, 2501)]
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send_chunked(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 1000):
                    part = body[i:i + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def do_GET(self):
                fake.requests.append(self.path)
                if token and self.headers.get("Authorization") != \
                        "Bearer " + token:
                    return self.send_chunked(401, {"error": {
                        "code": "unauthorized",
                        "message": "a bearer token is required"}})
                path, _, query = self.path.partition("?")
                q = dict(kv.split("=", 1) for kv in query.split("&") if kv)
                if path == "/projections":
                    return self.send_chunked(200, {"projections": [
                        {"name": "alpha", "version": 2, "state": "live",
                         "position": 2500, "lag_events": 0,
                         "lag_seconds": 0, "last_error": None}],
                        "head": 2500})
                if path == "/events":
                    after = int(q.get("from", 0))
                    limit = min(int(q.get("limit", 100)), 1000)
                    page = [e for e in events if e["position"] > after
                            and ("stream" not in q or
                                 e["stream"] == q["stream"])][:limit]
                    return self.send_chunked(200, {"events": page,
                                                   "head": 2500})
                self.send_chunked(404, {"error": {"code": "not_found",
                                                  "message": "no route"}})

        self.requests = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever,
                         daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class CliHttpClient(unittest.TestCase):

    def test_chunked_keep_alive_and_pages(self):
        fake = FakeServer()
        try:
            rc, out, err = cli("status", "--server", fake.url + "/")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json_lines(out)[0]["name"], "alpha")
            rc, out, err = cli("events", "--server", fake.url)
            self.assertEqual(rc, 0, err)
            lines = json_lines(out)
            self.assertEqual([e["position"] for e in lines],
                             list(range(1, 2501)))
            self.assertEqual(lines[0]["ts_us"], 1700000000000001)
            self.assertIn('"ts_us":1700000000000001', out)  # no exponent
            rc, out, err = cli("events", "--server", fake.url, "--from",
                               "1200", "--limit", "3", "--stream", "s-1")
            self.assertEqual(rc, 0, err)
            self.assertEqual([e["position"] for e in json_lines(out)],
                             [1201, 1204, 1207])
        finally:
            fake.close()

    def test_bearer_token(self):
        fake = FakeServer(token="s3cret")
        tokfile = os.path.join(ct.tmpdir("cli-token"), "token")
        with open(tokfile, "w") as f:
            f.write("s3cret\n")
        try:
            rc, out, err = cli("status", "--server", fake.url)
            self.assertEqual(rc, 1)
            self.assertIn("401", err)
            self.assertIn("token", err)
            rc, out, err = cli("status", "--server", fake.url,
                               "--auth-token-file", tokfile)
            self.assertEqual(rc, 0, err)
            rc, out, err = cli("status", env={"CLEAVE_SERVER": fake.url,
                                              "CLEAVE_AUTH_TOKEN": "s3cret"})
            self.assertEqual(rc, 0, err)
        finally:
            fake.close()
            shutil.rmtree(os.path.dirname(tokfile), ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
