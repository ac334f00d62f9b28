"""Query nodes: `cleave serve --query-node --data QDIR --write-store
sqlite:WRITER_DATA --read-store redis://127.0.0.1:P/0/qn` beside a writer
`cleave serve --data WRITER_DATA --read-store redis://127.0.0.1:P/0/qn`,
against a real redis-server this test starts (the helper of
test_redis_read_store.py: a free port, a temporary directory).

1. The README's walk through the shop, on the writer; every shop query
   (product, order, user_orders, search_products, revenue_daily,
   top_products, and a 404) asked on the query node with min_position =
   the writer's position gives exactly the writer's answer (status, body
   with its "position", X-Cleave-Position).
2. Read-your-writes under load: three writer threads send a few hundred
   commands (RegisterUser, AddProduct, AddToCart, Checkout, Restock) to the
   writer; after each acknowledged command two reader threads ask the
   query node with min_position = that command's position and check its
   effect (the card after AddProduct and Restock, the search hit from the
   node's own search projection, the order, the user's orders and the
   products' sold counts after Checkout) and that "position" and
   X-Cleave-Position are >= min_position.  Every command must succeed.
3. Blue-green: from a third of the load on, the writer rebuilds catalog
   and orders again and again (at least twice; the load goes on until
   100 commands after the second switch); a prober thread keeps asking
   the query node, without min_position, for products and orders it has
   already seen: never a 404 (or any failure), never an older position
   or a smaller sold count than before.  The node logs that it followed
   the last switch of both; the retired generations leave Redis (3 s
   after their switch) and the node serves on.  After the load, both
   nodes are caught up with the same head and the same positions, every
   product, order, user list, revenue day, the top list
   and search pages answer the same on both, verify on the writer finds 0
   differences in all five projections and verify of search on the query
   node 0 too; the node never wrote to Redis (every copy's owner is the
   writer).
4. Refusals on the query node: commands 421 read_only; rebuild, resume
   and verify of the followed projections 421 read_only; rebuild of its
   own search projection 202 (it switches, and answers stay right);
   GET /events works and equals the writer's log.
5. Restart: SIGTERM the query node, more commands and a catalog rebuild on
   the writer while it is down, start it again: it catches up (search
   included) and answers min_position right.  Then SIGKILL it while
   commands are being written, more commands, restart: the same, and
   verify of its search finds 0 differences.  Then the writer restarts
   under the running query node: the node answers meanwhile, and follows
   the writer's new commands after.
6. Misconfiguration: --query-node without a Redis read store, a writer
   given another directory's log (--write-store sqlite:DIR without
   --query-node), a query node on a Redis prefix no writer published
   its catalog to, and one given a directory without the writer's log,
   all refuse to start with a clear message.

Prints "SKIPPED: ..." and passes only when redis-server is not installed.
CLEAVE_E2E_SCALE scales the load.  Python standard library only."""
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402
# the private redis-server and the RESP client (no test of its own runs
# from here: only the module is imported)
import test_redis_read_store as rrs  # noqa: E402

PREFIX = "qn"
PROJECTIONS = ["catalog", "search", "orders", "revenue", "bestsellers"]
FOLLOWED = ["catalog", "orders", "revenue", "bestsellers"]  # in Redis
WRITERS = 3
READERS = 2
ROUNDS = ct.scaled(40, 6)  # per writer thread, at least: ~4.3
#                              commands a round
STOCK = 40
WAIT = "wait_ms=10000"


def with_min(path, pos):
    return "%s%smin_position=%d&%s" % (path, "&" if "?" in path else "?",
                                       pos, WAIT)


class Failures:
    """Failures found by the threads, kept (the first few) for the
    report."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, msg):
        with self.lock:
            self.items.append(msg)

    def __bool__(self):
        return bool(self.items)


# ---- the model of what the writer threads did -------------------------------

class Model:
    """Per product: its fixed fields, and the history of its restocked and
    sold totals by position (each product is changed by one writer thread
    only, so every entry at or before a position is known when a check of
    that position is queued)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.products = {}  # pid → {name, price, token, restock, sold}
        self.orders = {}  # oid → {userId, total, lines}
        self.users = {}  # userId → set of order ids
        self.seen_products = []  # confirmed visible on the query node
        self.seen_orders = []

    @staticmethod
    def at(history, pos):
        """The total of the last entry at or before pos."""
        v = 0
        for p, total in history:
            if p <= pos:
                v = total
        return v


class WriterThread(threading.Thread):
    """One client of the writer: a user, then rounds of AddProduct,
    AddToCart (this round's product, and the last round's), Checkout, and
    every third round a Restock of the last round's product; after each
    acknowledged command a check goes on the readers' queue."""

    def __init__(self, port, model, checks, tag, fails, counter):
        super().__init__(daemon=True)
        self.client = ct.Client(port)
        self.model, self.checks, self.tag = model, checks, tag
        self.fails, self.counter = fails, counter
        self.done = 0
        self.rounds = 0
        # set when enough blue-green switches happened under the load:
        # until then the thread goes on past ROUNDS (for 40 s at most)
        self.enough = threading.Event()
        self.deadline = time.time() + 40

    def cmd(self, name, body, headers=None):
        r = self.client.command(name, body, headers)
        if r.status != 200:
            raise AssertionError("%s %s on the writer: %r" % (name, body, r))
        self.done += 1
        with self.counter[0]:
            self.counter[1] += 1
        res = r.json()
        if int(r.header("x-cleave-position")) != res["position"]:
            raise AssertionError("%s: X-Cleave-Position %s, position %d" %
                                 (name, r.header("x-cleave-position"),
                                  res["position"]))
        return res

    def run(self):
        m, t = self.model, self.tag
        user = t + "u"
        try:
            res = self.cmd("RegisterUser", {"userId": user, "name": "Load",
                                            "country": "DE"})
            with m.lock:
                m.users[user] = set()
            self.checks.put(("user", user, res["position"]))
            prev = None
            i = 0
            while i < ROUNDS or (not self.enough.is_set() and
                                 time.time() < self.deadline):
                pid = "%sp%03d" % (t, i)
                token = "tok%s%03d" % (t.lower().strip("-"), i)
                price = 100 + 13 * i
                name = "Gadget %s %d %s" % (t.rstrip("-"), i, token)
                res = self.cmd("AddProduct", {
                    "productId": pid, "name": name, "category": "qload",
                    "price_cents": price, "stock": STOCK,
                    "description": "query node load gadget"})
                with m.lock:
                    m.products[pid] = {"name": name, "price": price,
                                       "token": token,
                                       "restock": [(res["position"], 0)],
                                       "sold": [(res["position"], 0)]}
                self.checks.put(("added", pid, res["position"]))
                cart = "%sc%03d" % (t, i)
                lines = [(pid, 1 + i % 3)] + ([(prev, 1)] if prev else [])
                for p, q in lines:
                    res = self.cmd("AddToCart", {"cartId": cart,
                                                 "userId": user,
                                                 "productId": p,
                                                 "quantity": q})
                    self.checks.put(("product", p, res["position"]))
                res = self.cmd("Checkout", {"userId": user, "cartId": cart},
                               {"Idempotency-Key": "%sk%03d" % (t, i)})
                pos, oid = res["position"], res["result"]["orderId"]
                with m.lock:
                    total = 0
                    for p, q in lines:
                        pr = m.products[p]
                        pr["sold"].append((pos, pr["sold"][-1][1] + q))
                        total += q * pr["price"]
                    if res["result"]["total_cents"] != total:
                        raise AssertionError("Checkout %s: %r, want total %d"
                                             % (cart, res, total))
                    m.orders[oid] = {"userId": user, "total": total,
                                     "lines": [{"productId": p,
                                                "quantity": q}
                                               for p, q in lines]}
                    m.users[user].add(oid)
                self.checks.put(("order", oid, pos))
                if prev and i % 3 == 0:
                    q = 5 + i
                    res = self.cmd("Restock", {"productId": prev,
                                               "quantity": q})
                    with m.lock:
                        pr = m.products[prev]
                        pr["restock"].append((res["position"],
                                              pr["restock"][-1][1] + q))
                    self.checks.put(("product", prev, res["position"]))
                prev = pid
                i += 1
                self.rounds = i
        except Exception as e:  # noqa: BLE001
            self.fails.add("writer %s: %r" % (t, e))
        finally:
            self.client.close()


class ReaderThread(threading.Thread):
    """Takes (kind, id, position) checks off the queue and asks the query
    node with min_position = position."""

    def __init__(self, port, model, checks, fails):
        super().__init__(daemon=True)
        self.client = ct.Client(port)
        self.model, self.checks, self.fails = model, checks, fails
        self.queries = 0
        self.max_wait = 0.0

    def get(self, path, pos):
        t0 = time.time()
        r = self.client.get(with_min(path, pos))
        self.max_wait = max(self.max_wait, time.time() - t0)
        self.queries += 1
        if r.status != 200:
            raise AssertionError("query node: GET %s min_position=%d: %r" %
                                 (path, pos, r))
        body = r.json()
        hdr = int(r.header("x-cleave-position"))
        if body["position"] < pos or hdr < pos:
            raise AssertionError(
                "query node: GET %s min_position=%d answered position %d "
                "(X-Cleave-Position %d)" % (path, pos, body["position"],
                                            hdr))
        return body

    def card_ok(self, card, pid, pos, where):
        m = self.model
        with m.lock:
            pr = m.products[pid]
            sold_min = m.at(pr["sold"], pos)
            restock_min = m.at(pr["restock"], pos)
            name, price = pr["name"], pr["price"]
        if (card["productId"], card["name"], card["category"],
                card["price_cents"]) != (pid, name, "qload", price):
            raise AssertionError("%s: card %r, want %s %r %d" %
                                 (where, card, pid, name, price))
        if card["sold"] < sold_min or \
                card["stock"] + card["sold"] < STOCK + restock_min or \
                card["stock"] < 0 or card["in_stock"] != (card["stock"] > 0):
            raise AssertionError(
                "%s: card %r at min_position %d misses an acknowledged "
                "write (want sold >= %d, stock + sold >= %d)" %
                (where, card, pos, sold_min, STOCK + restock_min))

    def check(self, kind, ident, pos):
        m = self.model
        if kind == "user":
            # (the writer thread may have placed orders meanwhile)
            got = self.get("/queries/user_orders?userId=" + ident, pos)
            if not isinstance(got["items"], list):
                raise AssertionError("user_orders of %s: %r" % (ident, got))
        elif kind in ("added", "product"):
            card = self.get("/queries/product?productId=" + ident, pos)
            card.pop("position")
            self.card_ok(card, ident, pos, "product " + ident)
            if kind == "added":
                with m.lock:
                    token = m.products[ident]["token"]
                got = self.get("/queries/search_products?q=" + token, pos)
                if [x["productId"] for x in got["items"]] != [ident]:
                    raise AssertionError("search q=%s at min_position %d: "
                                         "%r, want %s" % (token, pos, got,
                                                          ident))
                self.card_ok(got["items"][0], ident, pos,
                             "search hit " + ident)
                with m.lock:
                    m.seen_products.append(ident)
        elif kind == "order":
            with m.lock:
                o = dict(m.orders[ident])
            doc = self.get("/queries/order?orderId=" + ident, pos)
            if (doc["orderId"], doc["userId"], doc["status"],
                    doc["total_cents"]) != (ident, o["userId"], "placed",
                                            o["total"]) or \
                    [{"productId": x["productId"], "quantity": x["quantity"]}
                     for x in doc["lines"]] != o["lines"]:
                raise AssertionError("order %s at min_position %d: %r, "
                                     "want %r" % (ident, pos, doc, o))
            path = "/queries/user_orders?userId=%s&limit=100" % o["userId"]
            mine = self.get(path, pos)
            ids = [x["orderId"] for x in mine["items"]]
            while ident not in ids and mine["next_cursor"]:
                mine = self.get(path + "&cursor=" + mine["next_cursor"],
                                pos)
                ids += [x["orderId"] for x in mine["items"]]
            if ident not in ids:
                raise AssertionError("user_orders of %s at min_position %d "
                                     "lacks %s: %r" % (o["userId"], pos,
                                                       ident, ids))
            for ln in o["lines"]:
                card = self.get("/queries/product?productId=" +
                                ln["productId"], pos)
                card.pop("position")
                self.card_ok(card, ln["productId"], pos,
                             "product %s after order %s" %
                             (ln["productId"], ident))
            with m.lock:
                m.seen_orders.append(ident)

    def run(self):
        try:
            while True:
                item = self.checks.get()
                if item is None:
                    return
                try:
                    self.check(*item)
                except Exception as e:  # noqa: BLE001
                    self.fails.add("reader, check %r: %r" % (item, e))
        finally:
            self.client.close()


class Prober(threading.Thread):
    """Asks the query node, without min_position, for products and orders
    it has already shown: never a 404 or another failure, and never an
    older position or fewer units sold than an earlier answer."""

    def __init__(self, port, model, fails):
        super().__init__(daemon=True)
        self.client = ct.Client(port)
        self.model, self.fails = model, fails
        self.halt = threading.Event()
        self.queries = 0
        self.rng = random.Random(7)

    def run(self):
        m = self.model
        last_pos = {"catalog": 0, "orders": 0}
        last_sold = {}
        try:
            while not self.halt.is_set():
                with m.lock:
                    pids = list(m.seen_products[-50:])
                    oids = list(m.seen_orders[-50:])
                if not pids or not oids:
                    time.sleep(0.005)
                    continue
                pid, oid = self.rng.choice(pids), self.rng.choice(oids)
                for proj, path in (
                        ("catalog", "/queries/product?productId=" + pid),
                        ("orders", "/queries/order?orderId=" + oid)):
                    r = self.client.get(path)
                    self.queries += 1
                    if r.status != 200:
                        self.fails.add("prober: GET %s (shown before) on "
                                       "the query node: %r" % (path, r))
                        continue
                    body = r.json()
                    if body["position"] < last_pos[proj]:
                        self.fails.add(
                            "prober: GET %s on the query node answered "
                            "position %d after an answer of %s at %d: it "
                            "went back in time.  ENGINE BUG "
                            "(src/sync/follow.c follow_catalog): at a "
                            "blue-green switch the node serves the new "
                            "generation at once, though the retired one "
                            "it served was further on (the writer's old "
                            "runner applies on until it is stopped, after "
                            "the catalog is published); the writer itself "
                            "never goes back (try_switch wants build >= "
                            "live)" % (path, body["position"], proj,
                                       last_pos[proj]))
                    last_pos[proj] = max(last_pos[proj], body["position"])
                    if proj == "catalog":
                        if body["sold"] < last_sold.get(pid, 0):
                            self.fails.add(
                                "prober: product %s sold %d after an "
                                "answer of %d" % (pid, body["sold"],
                                                  last_sold[pid]))
                        last_sold[pid] = max(last_sold.get(pid, 0),
                                             body["sold"])
        except Exception as e:  # noqa: BLE001
            self.fails.add("prober: %r" % (e,))
        finally:
            self.client.close()


# ---- the test ---------------------------------------------------------------

class QueryNode(unittest.TestCase):
    def setUp(self):
        self.redis = rrs.Redis()
        self.addCleanup(self.redis.stop)
        self.redis.start()
        self.uri = "redis://127.0.0.1:%d/0/%s" % (self.redis.port, PREFIX)
        self.ok_run = False
        self.servers = []

    def tearDown(self):
        for s in reversed(self.servers):
            if s.proc:
                s.stop(expect=None)
        self.redis.stop()
        if self.ok_run:
            for s in self.servers:
                s.cleanup()
            self.redis.cleanup()
        else:
            for s in self.servers:
                print("--- %s: data and log kept in %s(.log); log tail ---\n%s"
                      % (s.role, s.data, s.logs()[-6000:]))
            print("--- redis (%s) log tail ---\n%s" % (self.redis.dir,
                                                       self.redis.logs()))

    # -- helpers --

    def writer(self):
        s = ct.Server("--read-store", self.uri, name="qn-writer")
        s.role = "writer"
        self.servers.append(s)
        return s.start()

    def query_node(self, writer):
        s = ct.Server("--query-node", "--write-store", "sqlite:" +
                      writer.data, "--read-store", self.uri, name="qn-node")
        s.role = "query node"
        self.servers.append(s)
        return s.start()

    def gens(self, name):
        """The generations of projection `name` that have keys in Redis."""
        out = set()
        for k in self.redis.call("KEYS", "%s/%s.g*" % (PREFIX, name)):
            m = re.match(r"%s/%s\.g(\d+)\|" % (PREFIX, name), k.decode())
            if m:
                out.add(int(m.group(1)))
        return out

    def ok(self, r):
        self.assertEqual(r.status, 200, r)
        return r.json()

    def projections(self, c):
        return {p["name"]: p for p in c.get("/projections").json()
                ["projections"]}

    def same_answer(self, cw, cq, path, pos, status=200):
        """The query node answers `path` at min_position=pos exactly as the
        writer does; returns the body."""
        full = with_min(path, pos)
        rw, rq = cw.get(full), cq.get(full)
        self.assertEqual(rw.status, status, "writer: %s: %r" % (full, rw))
        self.assertEqual(rq.status, status, "query node: %s: %r (writer: "
                         "%r)" % (full, rq, rw))
        self.assertEqual(rq.json(), rw.json(), "query node vs writer: " +
                         full)
        self.assertEqual(rq.body, rw.body, full)
        if status == 200:
            self.assertGreaterEqual(rw.json()["position"], pos)
            self.assertEqual(rq.header("x-cleave-position"),
                             rw.header("x-cleave-position"), full)
        return rw.json()

    def wait_rebuilt(self, c, names, timeout=30):
        def done():
            ps = self.projections(c)
            for n in names:
                self.assertIn(ps[n]["state"], ("rebuilding", "live"), ps[n])
            return all(ps[n]["state"] == "live" and "building_version" not
                       in ps[n] for n in names) and ps
        return ct.wait_until(self, "the rebuild of %s finished" % names, done,
                               timeout)

    def caught_up_both(self, cw, cq, timeout=30):
        """Both nodes live at the writer's head, with the same positions
        and versions; returns the head."""
        head = ct.wait_caught_up(cw, timeout)
        def node_at_head():
            j = cq.get("/projections").json()
            return j["head"] == head and all(
                p["position"] == head and p["state"] == "live" and
                not p["failing"] for p in j["projections"])
        ct.wait_until(self, "the query node at the writer's head %d" % head,
                        node_at_head, timeout)
        pw, pq = self.projections(cw), self.projections(cq)
        self.assertEqual(sorted(pq), sorted(PROJECTIONS))
        for n in PROJECTIONS:
            self.assertEqual((pq[n]["position"], pq[n]["version"],
                              pq[n]["lag_events"], pq[n]["dead_letters"]),
                             (pw[n]["position"], pw[n]["version"],
                              pw[n]["lag_events"], pw[n]["dead_letters"]),
                             "%s: query node %r, writer %r" % (n, pq[n],
                                                              pw[n]))
        return head

    def verify(self, c, name, head):
        v = self.ok(c.post("/projections/%s/verify" % name))
        self.assertEqual((v["projection"], v["position"], v["differences"],
                          v["truncated"]), (name, head, 0, False), v)

    def pages(self, c, path, pos):
        items, cursor = [], None
        while True:
            p = path + ("&cursor=" + cursor if cursor else "")
            got = self.ok(c.get(with_min(p, pos)))
            items += got["items"]
            cursor = got["next_cursor"]
            if not cursor:
                return items

    def compare_all(self, cw, cq, model, head):
        """Every product, order, user list, revenue, top list and search
        page: the same answer on both nodes."""
        with model.lock:
            pids = sorted(model.products) + ["p1"]
            oids = sorted(model.orders)
            users = sorted(model.users)
        for pid in pids:
            self.same_answer(cw, cq, "/queries/product?productId=" + pid,
                             head)
        for oid in oids:
            self.same_answer(cw, cq, "/queries/order?orderId=" + oid, head)
        for u in users:
            path = "/queries/user_orders?userId=%s&limit=100" % u
            self.assertEqual(self.pages(cq, path, head),
                             self.pages(cw, path, head), path)
        today = rrs.day_of(time.time())
        for country in ("DE", "SE"):
            self.same_answer(cw, cq, "/queries/revenue_daily?country=%s"
                             "&from=%s&to=%s" % (country, "2026-01-01",
                                                 "2026-12-31"), head)
            self.same_answer(cw, cq, "/queries/revenue_daily?country=%s"
                             "&from=%s&to=%s" % (country, today, today),
                             head)
        self.same_answer(cw, cq, "/queries/top_products?limit=100", head)
        for sort in ("price", "-price", "sold"):
            path = "/queries/search_products?category=qload&limit=100" \
                "&sort=" + sort
            self.assertEqual(self.pages(cq, path, head),
                             self.pages(cw, path, head), path)
        self.same_answer(cw, cq, "/queries/search_products?q=gadget&limit=5",
                         head)

    def must_not_start(self, args, *words):
        """`cleave serve ARGS` exits non-zero by itself, saying all of
        `words`; returns its output."""
        p = subprocess.Popen([ct.BIN, "serve", "--listen", "127.0.0.1:0"] +
                             args, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=ct.clean_env())
        try:
            out, _ = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            self.fail("cleave serve %s started (still running after 20 s); "
                      "it must refuse:\n%s" % (" ".join(args),
                                               out.decode()[-2000:]))
        out = out.decode("utf-8", "replace")
        self.assertNotEqual(p.returncode, 0, "cleave serve %s exited 0:\n%s"
                            % (" ".join(args), out))
        self.assertGreater(p.returncode, 0, "cleave serve %s died of signal "
                           "%d:\n%s" % (" ".join(args), -p.returncode, out))
        for w in words:
            self.assertIn(w, out, "cleave serve %s: the error does not say "
                          "%r:\n%s" % (" ".join(args), w, out))
        return out

    # -- the tests --

    def test_query_node(self):
        t0 = time.time()
        phases = []
        w = self.writer()
        q = self.query_node(w)
        cw, cq = w.client(), q.client()
        ok = self.ok

        # ---- 1. the README walk-through on the writer, asked on both -------
        first = ct.readme_walk(self, cw)
        ct.check_error(cw.command("AddToCart", {
            "cartId": "c2", "userId": "u1", "productId": "p1",
            "quantity": -1}), 400, "invalid_argument")
        pos = first["position"]
        card = self.same_answer(cw, cq, "/queries/product?productId=p1", pos)
        self.assertEqual((card["stock"], card["sold"]), (3, 2), card)
        order = self.same_answer(cw, cq, "/queries/order?orderId=o-00000001",
                                 pos)
        self.assertEqual(order["total_cents"], 35820)
        day = rrs.day_of(order["placed_at"])
        mine = self.same_answer(cw, cq, "/queries/user_orders?userId=u1", pos)
        self.assertEqual([x["orderId"] for x in mine["items"]],
                         ["o-00000001"])
        for path in ("/queries/search_products?q=espresso&max_price=50000"
                     "&sort=price", "/queries/search_products?q=espresso"):
            got = self.same_answer(cw, cq, path, pos)
            self.assertEqual([x["productId"] for x in got["items"]], ["p1"])
        for frm, to in (("2026-01-01", "2026-12-31"), (day, day)):
            self.same_answer(cw, cq, "/queries/revenue_daily?country=SE"
                             "&from=%s&to=%s" % (frm, to), pos)
        got = self.same_answer(cw, cq, "/queries/revenue_daily?country=SE"
                               "&from=%s&to=%s" % (day, day), pos)
        self.assertEqual(got["days"], [{"day": day, "orders": 1,
                                        "revenue_cents": 35820}])
        got = self.same_answer(cw, cq, "/queries/top_products?limit=10", pos)
        self.assertEqual(got["items"], [{"productId": "p1",
                                         "name": "Espresso machine",
                                         "sold": 2}])
        self.same_answer(cw, cq, "/queries/product?productId=nope", pos, 404)
        self.same_answer(cw, cq, "/queries/order?orderId=o-99999999", pos,
                         404)
        head = self.caught_up_both(cw, cq)
        self.assertEqual(head, pos)
        phases.append(("walk-through, every query the same on both",
                       time.time() - t0))

        # ---- 2 + 3. read-your-writes under load, with blue-green rebuilds --
        t1 = time.time()
        model = Model()
        fails = Failures()
        checks = queue.Queue()
        counter = [threading.Lock(), 0]
        writers = [WriterThread(w.port, model, checks, "W%d-" % i, fails,
                                counter) for i in range(WRITERS)]
        readers = [ReaderThread(q.port, model, checks, fails)
                   for _ in range(READERS)]
        prober = Prober(q.port, model, fails)
        for th in readers + writers + [prober]:
            th.start()
        ct.wait_until(self, "a third of the load acknowledged",
                        lambda: counter[1] >= WRITERS * ROUNDS * 4 // 3 or
                        not any(x.is_alive() for x in writers), 60)
        # blue-green switches of catalog and orders, again and again while
        # the load runs: at least two, and the load goes on until a while
        # after the second one (the writer threads go past ROUNDS if
        # needed)
        switches = []  # commands acknowledged when each cycle was live
        at_rebuild = counter[1]
        while len(switches) < 2 or (any(x.is_alive() for x in writers) and
                                    len(switches) < 8):
            self.assertTrue(any(x.is_alive() for x in writers) or fails,
                            "the load ended (40 s) before two blue-green "
                            "switches on the writer: %s" % switches)
            for name in ("catalog", "orders"):
                r = cw.post("/projections/%s/rebuild" % name)
                self.assertEqual(r.status, 202, r)
            self.wait_rebuilt(cw, ["catalog", "orders"])
            switches.append(counter[1])
            if len(switches) == 2:
                after = counter[1] + 100
                ct.wait_until(self, "100 more commands after the second switch",
                                lambda: counter[1] >= after or
                                not any(x.is_alive() for x in writers), 60)
                for x in writers:
                    x.enough.set()
        gen = 1 + len(switches)
        for th in writers:
            th.join(120)
            self.assertFalse(th.is_alive(), "a writer thread hangs")
        for _ in readers:
            checks.put(None)
        for th in readers:
            th.join(120)
            self.assertFalse(th.is_alive(), "a reader thread hangs")
        # the prober goes on over the switch and a bit after
        time.sleep(0.2)
        prober.halt.set()
        prober.join(30)
        self.assertFalse(fails, "\n".join(fails.items[:20]))
        ncmd = counter[1]
        # per writer: RegisterUser; AddProduct, AddToCart (x2 but in the
        # first round), Checkout a round; Restock in rounds 3, 6, ...
        self.assertEqual(ncmd, sum(1 + x.rounds * 4 - 1 + (x.rounds - 1) // 3
                                   for x in writers))
        self.assertEqual(ncmd, sum(x.done for x in writers))
        nq = sum(x.queries for x in readers)
        self.assertGreater(prober.queries, 0)
        for name in ("catalog", "orders"):
            ct.wait_until(self, 
                "the query node following the writer's switch of %s to g%d"
                % (name, gen),
                lambda: "projection %s: the writer switched to g%d (v1); "
                "serving it" % (name, gen) in q.logs(), 10)
        head = self.caught_up_both(cw, cq)
        # the retired generations go from Redis (3 s after their switch);
        # the node serves on
        ct.wait_until(self, "the retired generations dropped from Redis",
                        lambda: (self.gens("catalog"), self.gens("orders"))
                        == ({gen}, {gen}), 15)
        self.compare_all(cw, cq, model, head)
        for name in PROJECTIONS:
            self.verify(cw, name, head)
        self.verify(cq, "search", head)
        owners = {self.redis.call("GET", k) for k in
                  self.redis.call("KEYS", PREFIX + "/*|owner")}
        self.assertTrue(owners)
        for o in owners:
            o = o.decode()
            self.assertTrue(o.endswith(":" + os.path.realpath(w.data)),
                            "a copy in Redis owned by %r, not the writer"
                            % o)
        phases.append((
            "load: %d commands, %d read-your-writes queries (slowest %.3f "
            "s), %d probes; %d switches of catalog and orders (asked "
            "after %d commands, live after %s); same answers, verify 0" % (
                ncmd, nq, max(x.max_wait for x in readers), prober.queries,
                len(switches), at_rebuild, switches), time.time() - t1))

        # ---- 4. refusals on the query node ---------------------------------
        t2 = time.time()
        err = ct.check_error(cq.command("Restock", {"productId": "p1",
                                                    "quantity": 1}),
                             421, "read_only")
        self.assertIn("writer", err["message"])
        ct.check_error(cq.command("NoSuchCommand", {}), 404)
        for name in FOLLOWED:
            for op in ("rebuild", "resume", "verify"):
                r = cq.post("/projections/%s/%s" % (name, op))
                err = ct.check_error(r, 421, "read_only")
                self.assertIn(name, err["message"])
        self.assertEqual(cw.get(with_min("/queries/product?productId=p1",
                                         head)).json()["stock"], 3,
                         "a refused command changed something")
        self.assertEqual(ct.all_events(cw)[-1]["position"], head)
        r = cq.post("/projections/search/rebuild")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["rebuilding"], "search")
        ps = self.wait_rebuilt(cq, ["search"])
        self.assertEqual(ps["search"]["position"], head)
        ct.wait_until(self, "the query node's search rebuild logged live",
                        lambda: "projection search: g2 (v1) is live" in
                        q.logs(), 10)
        self.compare_all(cw, cq, model, head)
        self.verify(cq, "search", head)
        ew, eq = ct.all_events(cw), ct.all_events(cq)
        self.assertEqual(len(eq), head)
        self.assertEqual(eq, ew)
        page = "/events?from=%d&limit=7" % (head // 2)
        self.assertEqual(cq.get(page).json(), cw.get(page).json())
        phases.append(("refusals (421 read_only), local search rebuild, "
                       "/events", time.time() - t2))

        # ---- 5. restarts of the query node ---------------------------------
        t3 = time.time()
        q.stop(expect=0)
        more = self.more_commands(cw, model, "R1", 6)
        r = cw.post("/projections/catalog/rebuild")
        self.assertEqual(r.status, 202, r)
        self.wait_rebuilt(cw, ["catalog"])
        more.extend(self.more_commands(cw, model, "R2", 3))
        # the retired catalog generation is gone from Redis: the node
        # must find the new one
        ct.wait_until(self, "the retired catalog dropped from Redis", lambda:
                        self.gens("catalog") == {gen + 1}, 15)
        q.start()
        cq = q.client()
        self.check_restarted(cw, cq, model, more)
        # SIGKILL while the writer is taking commands
        bg_out, bg_err = [], []

        def background():
            c = ct.Client(w.port)
            try:
                bg_out.extend(self.more_commands(c, model, "K1", 8))
            except Exception as e:  # noqa: BLE001
                bg_err.append(repr(e))
            finally:
                c.close()
        bg = threading.Thread(target=background, daemon=True)
        bg.start()
        ct.wait_until(self, "commands on the writer before the kill",
                        lambda: len(cw.get("/events?from=%d&limit=20" %
                                           more[-1][2]).json()["events"])
                        >= 10 or not bg.is_alive(), 30)
        q.signal(signal.SIGKILL)
        q.stop(expect=-signal.SIGKILL)
        bg.join(60)
        self.assertFalse(bg.is_alive())
        self.assertEqual(bg_err, [])
        more.extend(bg_out)
        more.extend(self.more_commands(cw, model, "K2", 4))
        q.start()
        cq = q.client()
        head = self.check_restarted(cw, cq, model, more)
        self.verify(cq, "search", head)
        phases.append(("query node: SIGTERM + restart, SIGKILL + restart",
                       time.time() - t3))

        # ---- the writer restarts under the running query node -------------
        t4 = time.time()
        w.stop(expect=0)
        for path in ("/queries/product?productId=p1",
                     "/queries/order?orderId=o-00000001",
                     "/queries/search_products?q=espresso"):
            r = cq.get(with_min(path, head))
            self.assertEqual(r.status, 200, "query node, writer down: %s: %r"
                             % (path, r))
            self.assertEqual(r.json()["position"], head, r)
        w.start()
        cw = w.client()
        more = self.more_commands(cw, model, "WR", 3)
        head = self.check_restarted(cw, cq, model, more)
        for name in PROJECTIONS:
            self.verify(cw, name, head)
        self.verify(cq, "search", head)
        self.compare_all(cw, cq, model, head)
        phases.append(("writer restarted under the query node",
                       time.time() - t4))

        q.stop(expect=0)
        w.stop(expect=0)
        self.ok_run = True
        print("\n" + "\n".join("  %s: %.1f s" % p for p in phases))

    def more_commands(self, c, model, tag, n):
        """n rounds of AddProduct + AddToCart + Checkout (+ Restock) on the
        writer; returns [(kind, id, position)] to check."""
        out = []
        for i in range(n):
            pid = "%s-p%02d" % (tag, i)
            token = "tok%s%02d" % (tag.lower(), i)
            name = "Restart %s %d %s" % (tag, i, token)
            res = self.ok(c.command("AddProduct", {
                "productId": pid, "name": name, "category": "qload",
                "price_cents": 500 + i, "stock": STOCK}))
            with model.lock:
                model.products[pid] = {"name": name, "price": 500 + i,
                                       "token": token,
                                       "restock": [(res["position"], 0)],
                                       "sold": [(res["position"], 0)]}
                model.users.setdefault("u1", set())
            out.append(("added", pid, res["position"]))
            cart = "%s-c%02d" % (tag, i)
            self.ok(c.command("AddToCart", {"cartId": cart, "userId": "u1",
                                            "productId": pid,
                                            "quantity": 2}))
            res = self.ok(c.command("Checkout", {"userId": "u1",
                                                 "cartId": cart}))
            oid = res["result"]["orderId"]
            with model.lock:
                pr = model.products[pid]
                pr["sold"].append((res["position"], 2))
                model.orders[oid] = {"userId": "u1", "total": 2 * (500 + i),
                                     "lines": [{"productId": pid,
                                                "quantity": 2}]}
                model.users["u1"].add(oid)
            out.append(("order", oid, res["position"]))
            if i % 2:
                res = self.ok(c.command("Restock", {"productId": pid,
                                                    "quantity": 3}))
                with model.lock:
                    pr["restock"].append((res["position"], 3))
                out.append(("product", pid, res["position"]))
        return out

    def check_restarted(self, cw, cq, model, checks):
        """The restarted query node answers every check at its position,
        the last product exactly as the writer, and catches up."""
        fails = Failures()
        reader = ReaderThread(cq.port, model, None, fails)
        for item in checks:
            reader.check(*item)
        reader.client.close()
        last = checks[-1][2]
        for kind, ident, pos in checks[-3:]:
            if kind == "added":
                self.same_answer(cw, cq, "/queries/product?productId=" +
                                 ident, last)
                self.same_answer(cw, cq, "/queries/search_products?q=" +
                                 model.products[ident]["token"], last)
            elif kind == "order":
                self.same_answer(cw, cq, "/queries/order?orderId=" + ident,
                                 last)
        return self.caught_up_both(cw, cq)

    def test_readiness(self):
        """/health is readiness: a node answers 200 with its role while it
        can serve, 503 with the reasons once the writer is gone (its
        heartbeat stopped) or Redis cannot be reached, and 200 again by
        itself when they are back; ?live is liveness alone.  Its 421 to a
        command names the writer's --advertise-url."""
        w = ct.Server("--read-store", self.uri, "--advertise-url",
                      "http://writer.example:8080", name="qn-writer")
        w.role = "writer"
        self.servers.append(w)
        w.start()
        cw = w.client()
        h = cw.get("/health")
        self.assertEqual((h.status, h.json()["role"]), (200, "writer"), h)
        self.ok(cw.command("AddProduct", {"productId": "r1", "name": "R",
                                          "category": "c",
                                          "price_cents": 100, "stock": 1}))
        q = self.query_node(w)
        cq = q.client()

        def wait_health(c, status, why=None, timeout=20):
            deadline = time.time() + timeout
            while True:
                r = c.get("/health")
                body = r.json()
                if r.status == status and (why is None or any(
                        why in x for x in body.get("reasons", []))):
                    return body
                if time.time() > deadline:
                    self.fail("health: wanted %d %r, got %r" %
                              (status, why, r))
                time.sleep(0.2)

        body = wait_health(cq, 200)
        self.assertEqual(body["role"], "query_node")
        self.assertEqual(body["status"], "ok", body)
        r = cq.command("Restock", {"productId": "r1", "quantity": 1})
        self.assertEqual(r.status, 421, r)
        e = r.json()["error"]
        self.assertEqual(e["code"], "read_only", r)
        self.assertEqual(e["writer"], "http://writer.example:8080", r)
        self.assertEqual(r.json()["writer"], "http://writer.example:8080")
        m = cq.get("/metrics").body.decode()
        self.assertIn('cleave_commands_total{command="Restock",'
                      'outcome="misdirected"} 1', m)
        self.assertIn('cleave_commands_total{command="Restock",'
                      'outcome="failed"} 0', m)
        # the writer goes away: within its 5 s the node says it cannot
        # serve, and why; liveness is still fine
        w.stop(expect=0)
        t = time.time()
        body = wait_health(cq, 503, "heartbeat stopped")
        self.assertLess(time.time() - t, 15)
        self.assertEqual(body["status"], "unavailable", body)
        live = cq.get("/health?live")
        self.assertEqual((live.status, live.json()["status"]),
                         (200, "alive"), live)
        # back
        w.start()
        cw = w.client()
        wait_health(cq, 200)
        # Redis hangs: the node cannot read its read store
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        try:
            body = wait_health(cq, 503)
            self.assertTrue(body["reasons"], body)
            # the writer still takes commands meanwhile
            self.ok(cw.command("Restock", {"productId": "r1",
                                           "quantity": 1}))
        finally:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
        wait_health(cq, 200, timeout=40)
        self.ok_run = True

    def test_misconfiguration(self):
        data = ct.tmpdir("qn-bad")
        wdata = ct.tmpdir("qn-bad-writer")
        try:
            # a query node without Redis
            self.must_not_start(["--data", data, "--query-node",
                                 "--write-store", "sqlite:" + wdata],
                                "read-store")
            self.must_not_start(["--data", data, "--query-node",
                                 "--write-store", "sqlite:" + wdata,
                                 "--read-store", "embedded"], "read-store")
            # a writer with another directory's log
            out = self.must_not_start(["--data", data, "--write-store",
                                       "sqlite:" + wdata,
                                       "--read-store", self.uri],
                                      "write store")
            self.assertIn(wdata, out)
            out = self.must_not_start(["--data", data, "--write-store",
                                       "sqlite:" + wdata], "write store")
            # a query node on a prefix no writer published a catalog to
            w = ct.Server("--read-store", self.uri + "x", data=wdata,
                          name="qn-bad-writer")
            w.start()  # a writer elsewhere: its log exists
            w.stop(expect=0)
            out = self.must_not_start(["--data", data, "--query-node",
                                       "--write-store", "sqlite:" + wdata,
                                       "--read-store", self.uri],
                                      "start the writer first")
            self.assertIn(PREFIX, out)
            self.assertEqual(self.redis.call("KEYS", PREFIX + "/*"), [],
                             "a refused query node wrote to Redis")
            # ... and on that writer's Redis, but a directory without its
            # log
            empty = ct.tmpdir("qn-bad-nolog")
            os.rmdir(empty)
            out = self.must_not_start(["--data", data, "--query-node",
                                       "--write-store", "sqlite:" + empty,
                                       "--read-store", self.uri + "x"],
                                      os.path.join(empty, "write.db"))
            self.assertFalse(os.path.exists(empty), "a query node created "
                             "the writer's directory")
            self.ok_run = True
        finally:
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(wdata, ignore_errors=True)
            for s in (".port", ".log"):
                try:
                    os.unlink(wdata + s)
                except OSError:
                    pass


if __name__ == "__main__":
    if not rrs.REDIS_SERVER:
        print("SKIPPED: redis-server is not installed "
              "(sh scripts/deps.sh test installs it)")
        sys.exit(0)
    ct.main()
