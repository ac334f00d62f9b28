"""Restart keeps everything; blue-green rebuilds under writes give the
model's answers; `cleave verify` agrees with the live read models.

1. A randomized shop workload (shop_model.py, partitioned clients, every
   status predicted) fills the store; every query answer is compared with
   the model and kept.
2. SIGTERM (exit 0), start again on the same data directory: the log is the
   same event for event, every query answers the same (same body, same
   position), Idempotency-Keys still replay their first answer, and new
   commands continue the log.
3. A writer keeps running commands (checked against the model) while
   `POST /projections/<name>/rebuild` rebuilds each of the shop's five
   projections in turn; a reader meanwhile checks that entities the writer
   does not touch keep answering exactly the model.  The rebuilds bump
   nothing (same projection versions), every projection ends live at the
   head, and then every answer equals the model.
4. With the server stopped, `cleave verify --data DIR` finds no drift in
   any projection (exit 0) and `cleave status` shows them live at the head;
   a last restart answers the same again.

The seed is printed; CLEAVE_E2E_SEED overrides it, CLEAVE_E2E_SCALE the
size.  Python standard library only.
"""
import json
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402
from shop_model import (Checker, ShopModel, Worker, fill_times,  # noqa: E402
                        log_checks)

SEED = ct.seed(31337)
CLIENTS = 3
COMMANDS = ct.scaled(2100, 240)
PROJECTIONS = ["catalog", "search", "orders", "revenue", "bestsellers"]


class RestartRebuild(unittest.TestCase):
    def setUp(self):
        self.srv = ct.Server(name="restart")
        self.srv.start()
        self.ok = False

    def tearDown(self):
        if self.srv.proc:
            self.srv.stop(expect=0 if self.ok else None)
        if self.ok:
            self.srv.cleanup()
        else:
            print("server data and log kept in %s" % self.srv.data)

    def check_model(self, c, model, workers, head):
        """Every answer equals the model at `head`; returns the answers."""
        events = ct.all_events(c)
        problems = fill_times(model, events) + log_checks(events, workers,
                                                          head)
        self.assertFalse(problems, "\n".join(problems))
        chk = Checker(c, model, head, random.Random(SEED))
        diffs = chk.check_all(search_rounds=15)
        self.assertFalse(diffs, "answers differ from the model (seed %d):\n"
                         "%s" % (SEED, "\n".join(diffs)))
        return chk.answers, events, chk.queries

    def restart(self):
        t = time.time()
        self.srv.stop(expect=0)
        self.srv.start()
        return time.time() - t

    def test_restart_and_rebuild_under_writes(self):
        t0 = time.time()
        model = ShopModel()
        workers = [Worker(self.srv.port, model, "r%d-" % i, SEED * 10 + i,
                          COMMANDS // CLIENTS, {}) for i in range(CLIENTS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
        errors = [w.error for w in workers if w.error]
        self.assertFalse(errors, "\n\n".join(errors))
        c = self.srv.client()
        head = ct.wait_caught_up(c)
        answers, events, nq = self.check_model(c, model, workers, head)
        versions = {p["name"]: p["version"] for p in
                    c.get("/projections").json()["projections"]}
        self.assertEqual(sorted(versions), sorted(PROJECTIONS))
        t1 = time.time()

        # ---- restart keeps everything ------------------------------------
        took = self.restart()
        c = self.srv.client()
        self.assertEqual(c.get("/health").json()["head"], head)
        self.assertEqual(ct.all_events(c), events, "the log changed")
        self.assertEqual(ct.wait_caught_up(c), head)
        for path, body in answers.items():
            sep = "&" if "?" in path else "?"
            r = c.get("%s%smin_position=%d" % (path, sep, head))
            self.assertEqual(r.status, 200, (path, r))
            got = r.json()
            self.assertEqual(got.pop("position"), head, path)
            self.assertEqual(got, body, "after a restart: " + path)
        for w in workers:
            w.client.close()
            w.client.port = self.srv.port  # a new port after the restart
            for rec in w.keyed:
                w.retry(rec)  # the idempotency records survived
        self.assertEqual(c.get("/health").json()["head"], head)
        t2 = time.time()

        # ---- rebuild every projection while a writer keeps going ----------
        writer = Worker(self.srv.port, model, "w-", SEED + 5,
                        ct.scaled(200, 40), {})
        writer.until = threading.Event()
        stop_reader = threading.Event()
        reader_errors, reads = [], [0]
        rd = threading.Thread(target=self.reader, args=(
            model, workers, head, stop_reader, reader_errors, reads))
        writer.start()
        rd.start()
        rebuilt = []
        try:
            # one at a time, then all five at once, then one at a time
            for rnd, group in enumerate([[n] for n in PROJECTIONS] +
                                        [PROJECTIONS] +
                                        [[n] for n in PROJECTIONS]):
                before = c.get("/health").json()["head"]
                for name in group:
                    r = c.post("/projections/%s/rebuild" % name)
                    self.assertEqual(r.status, 202, r)
                    self.assertEqual(r.json()["rebuilding"], name)
                    self.assertEqual(r.json()["projection"]["state"],
                                     "rebuilding")
                self.wait_rebuilt(c, group)
                after = c.get("/health").json()["head"]
                rebuilt.append(("+".join(group) if len(group) == 1 else
                                "all", after - before))
                if writer.error or reader_errors:
                    break
        finally:
            writer.until.set()
            writer.join(300)
            stop_reader.set()
            rd.join(60)
        self.assertIsNone(writer.error, writer.error)
        self.assertFalse(reader_errors, "\n".join(reader_errors[:10]))
        head2 = ct.wait_caught_up(c)
        self.assertGreater(head2, head, "the writer wrote nothing")
        ps = c.get("/projections").json()["projections"]
        self.assertEqual({p["name"]: p["version"] for p in ps}, versions,
                         "a rebuild changed a projection version")
        for p in ps:
            self.assertEqual((p["state"], p["position"], p["last_error"],
                              p.get("dead_letters", 0)),
                             ("live", head2, None, 0), p)
        answers2, events2, nq2 = self.check_model(c, model,
                                                  workers + [writer], head2)
        t3 = time.time()

        # ---- verify with the server stopped -------------------------------
        self.srv.stop(expect=0)
        rc, out, err = ct.run_cli("verify", "--data", self.srv.data)
        self.assertEqual(rc, 0, "cleave verify found drift:\n%s%s" % (out,
                                                                     err))
        lines = [json.loads(x) for x in out.splitlines()]
        summary = {x["projection"]: x for x in lines if "result" in x}
        self.assertEqual(sorted(summary), sorted(PROJECTIONS), out)
        for name, x in summary.items():
            self.assertEqual((x["result"], x["differences"]), ("ok", 0), x)
        self.assertFalse([x for x in lines if "diff" in x], out)
        rc, out, err = ct.run_cli("status", "--data", self.srv.data)
        self.assertEqual(rc, 0, err)
        st = [json.loads(x) for x in out.splitlines()]
        self.assertEqual(sorted(x["name"] for x in st), sorted(PROJECTIONS))
        for x in st:
            self.assertEqual((x["state"], x["position"], x["lag_events"]),
                             ("live", head2, 0), x)

        # ---- and once more: a restart answers the same ---------------------
        self.srv.start()
        c = self.srv.client()
        self.assertEqual(ct.all_events(c), events2)
        for path, body in answers2.items():
            sep = "&" if "?" in path else "?"
            got = c.get("%s%smin_position=%d" % (path, sep, head2)).json()
            self.assertEqual(got.pop("position"), head2, path)
            self.assertEqual(got, body, "after the rebuilds and a restart: "
                             + path)
        t4 = time.time()
        print("\nseed %d: %d events, %d queries compared; restart %.1f s;"
              " rebuilds under %d writes (%s) with %d exact reads meanwhile;"
              " phases %.1f / %.1f / %.1f / %.1f s" % (
                  SEED, head2, nq + nq2, took, writer.steps,
                  ", ".join("%s +%d events" % x for x in rebuilt), reads[0],
                  t1 - t0, t2 - t1, t3 - t2, t4 - t3))
        for w in workers + [writer]:
            w.client.close()
        self.ok = True

    def wait_rebuilt(self, c, names):
        deadline = time.time() + 120
        while time.time() < deadline:
            ps = [x for x in c.get("/projections").json()["projections"]
                  if x["name"] in names]
            for p in ps:
                self.assertIn(p["state"], ("rebuilding", "live"), p)
            if all(p["state"] == "live" and "building_version" not in p
                   for p in ps):
                return
            time.sleep(0.01)
        self.fail("rebuild of %s did not finish" % names)

    def reader(self, model, workers, head, stop, errors, reads):
        """During the rebuilds: what the writer does not touch answers
        exactly the model (the live copy serves until the switch)."""
        rng = random.Random(SEED + 11)
        c = ct.Client(self.srv.port, timeout=60)
        products = sorted(p for w in workers for p in w.products)
        orders = sorted(o for w in workers for o in w.orders)
        users = sorted(u for w in workers for u in w.users)
        try:
            while not stop.is_set():
                r = rng.random()
                with model.lock:  # the writer changes the model meanwhile
                    if r < 0.5:
                        pid = rng.choice(products)
                        path = "/queries/product?productId=" + pid
                        want = model.card(pid)
                    elif r < 0.8:
                        oid = rng.choice(orders)
                        path = "/queries/order?orderId=" + oid
                        want = model.order_doc(oid)
                    else:
                        uid = rng.choice(users)
                        path = "/queries/user_orders?userId=%s&limit=100" \
                            % uid
                        mine = model.user_orders(uid)
                        want = {"items": mine[:100], "next_cursor":
                                None if len(mine) <= 100 else "?"}
                resp = c.get("%s&min_position=%d" % (path, head))
                body = resp.json() if resp.status == 200 else None
                if body is None:
                    errors.append("during a rebuild, GET %s: %r" % (path,
                                                                    resp))
                    continue
                if body.pop("position") < head:
                    errors.append("position below min_position: " + path)
                if want.get("next_cursor") == "?":
                    want["next_cursor"] = body.get("next_cursor")
                if body != want:
                    errors.append("during a rebuild, GET %s:\n got  %s\n "
                                  "want %s" % (path, body, want))
                reads[0] += 1
                time.sleep(0.002)
        except Exception as e:  # noqa: BLE001
            errors.append("reader: %r" % e)
        finally:
            c.close()


if __name__ == "__main__":
    ct.main(SEED)
