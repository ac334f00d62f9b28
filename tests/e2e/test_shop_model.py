"""A randomized shop workload over several concurrent keep-alive clients,
checked against an independent model of docs/domains.md (shop_model.py).

1. Partitioned phase: each client owns its users, products, promos and
   carts and runs a few hundred commands one after another; the model
   predicts every status and error code exactly (stock, cart ownership,
   closed carts, promo percent / expiry / uses, discounts rounded down,
   the price at checkout time, cancellations restocking), and every 200's
   result (totals, quantities, stock).  Some commands carry an
   Idempotency-Key and are retried at once or much later: the first answer
   again, byte for byte, one effect; the same key with another body is 409.
   Now and then a query at min_position = the command's position must show
   the model's card or order list (read-your-writes).
2. Hot phase: every client checks out carts of the same few products at
   the same time.  Successes are replayed through the model in log order
   (each must have been possible there, with the answered totals); each
   refusal must be out_of_stock with a line the final stock cannot serve;
   after a restock the refused carts check out as they were.
3. At the end: the log holds exactly the acknowledged commands; every
   keyed command retried once more; then every query answer (product
   cards, orders, user_orders in pages, revenue_daily per country and day,
   top_products, search_products with filters, sorts and pages) equals the
   model, read with min_position = the last position.

The seed is printed; CLEAVE_E2E_SEED overrides it, CLEAVE_E2E_SCALE the
size.  Python standard library only.
"""
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

SEED = ct.seed(20261127)
CLIENTS = 4
COMMANDS = ct.scaled(3200, 300)
HOT_PRODUCTS = 3
HOT_CARTS = 6  # per client


class ShopModelTest(unittest.TestCase):
    def setUp(self):
        self.srv = ct.Server(name="model").start()
        self.ok = False

    def tearDown(self):
        self.srv.stop(expect=0 if self.ok else None)
        if self.ok:
            self.srv.cleanup()
        else:
            print("server data and log kept in %s" % self.srv.data)

    def test_randomized_workload(self):
        t0 = time.time()
        model = ShopModel()
        workers = [Worker(self.srv.port, model, "k%d-" % i, SEED * 100 + i,
                          COMMANDS // CLIENTS, {}) for i in range(CLIENTS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
            self.assertFalse(w.is_alive(), "a client hung")
        errors = [w.error for w in workers if w.error]
        self.assertFalse(errors, "the server and the model disagree "
                         "(seed %d):\n%s" % (SEED, "\n\n".join(errors)))
        t1 = time.time()

        hot = self.hot_phase(model, workers)
        t2 = time.time()

        c = self.srv.client()
        head = c.get("/health").json()["head"]
        for w in workers:
            for rec in w.keyed:
                w.retry(rec)
        self.assertEqual(c.get("/health").json()["head"], head,
                         "idempotent replays wrote")
        events = ct.all_events(c)
        problems = fill_times(model, events)
        problems += log_checks(events, workers + [hot], head)
        self.assertFalse(problems, "\n".join(problems))

        checker = Checker(c, model, head, random.Random(SEED))
        diffs = checker.check_all()
        self.assertFalse(diffs, "query answers differ from the model (seed "
                         "%d):\n%s" % (SEED, "\n".join(diffs)))
        t3 = time.time()

        # the workload did exercise the rules
        stats = {}
        for w in workers + [hot]:
            for k, v in w.stats.items():
                stats[k] = stats.get(k, 0) + v
        for what in ("out_of_stock", "cart_closed", "cart_not_yours",
                     "promo_expired", "promo_used_up", "promo_not_found",
                     "order_cancelled", "user_exists", "product_exists",
                     "user_not_found", "product_not_found", "cart_not_found",
                     "order_not_found", "Checkout 200", "CancelOrder 200",
                     "idempotent replays"):
            self.assertTrue(any(what in k for k in stats),
                            "the workload never produced %r: %r" % (what,
                                                                   stats))
        n = sum(v for k, v in stats.items() if k != "idempotent replays")
        print("\nseed %d: %d commands from %d clients (%d events) in %.1f s,"
              " hot phase %.1f s, %d queries checked in %.1f s" % (
                  SEED, n, CLIENTS, head, t1 - t0, t2 - t1,
                  checker.queries, t3 - t2))
        for k in sorted(stats):
            print("  %-40s %d" % (k, stats[k]))
        for w in workers + [hot]:
            w.client.close()
        self.ok = True

    def hot_phase(self, model, workers):
        """Every client checks out carts of the same products at once."""
        rng = random.Random(SEED + 7)
        hw = Worker(self.srv.port, model, "hot-", SEED + 8, 0, {})
        hot = []
        for j in range(HOT_PRODUCTS):
            pid = "hot-p%d" % j
            hw.send("AddProduct", {"productId": pid, "name": "hot lamp",
                                   "category": "kitchen",
                                   "price_cents": 1000 + j,
                                   "stock": 4 * CLIENTS})
            hot.append(pid)
        carts = {}
        for w in workers:
            mine = []
            for k in range(HOT_CARTS):
                cart = "%shc-%d" % (w.p, k)
                user = rng.choice(w.users)
                w.carts[cart] = user
                for pid in rng.sample(hot, rng.randint(1, 2)):
                    w.send("AddToCart", {"cartId": cart, "userId": user,
                                         "productId": pid,
                                         "quantity": rng.randint(1, 3)})
                mine.append((cart, user))
            carts[w.p] = mine
        results = {w.p: [] for w in workers}
        barrier = threading.Barrier(len(workers))

        def run(w):
            barrier.wait()
            for cart, user in carts[w.p]:
                body = {"userId": user, "cartId": cart}
                results[w.p].append((body, w.client.command("Checkout",
                                                            body)))

        ts = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        done = sorted(((r.json()["position"], body, r, w)
                       for w in workers for body, r in results[w.p]
                       if r.status == 200), key=lambda x: x[0])
        refused = [(body, r, w) for w in workers
                   for body, r in results[w.p] if r.status != 200]
        # successes, in log order, through the model
        now = time.time()
        for pos, body, r, w in done:
            status, code, plan = model.decide("Checkout", body, now)
            self.assertEqual(status, 200, "checkout %r succeeded at position"
                             " %d; there the model says %s" % (body, pos,
                                                               code))
            ans = r.json()
            diffs = model.commit(plan, ans)
            self.assertFalse(diffs, diffs)
            hw.successes.append((pos, ans["command_id"], "Checkout", None))
            w.orders.append(ans["result"]["orderId"])
            hw.count("hot Checkout 200")
        for p in hot:
            self.assertGreaterEqual(model.products[p]["stock"], 0)
        # each refusal: out of stock, for a line the stock cannot serve
        for body, r, w in refused:
            err = ct.check_error(r, 422, "out_of_stock")
            lines = model.carts[body["cartId"]]["lines"]
            self.assertTrue(any(q > model.products[p]["stock"]
                                for p, q in lines.items()),
                            "checkout %r refused (%s) though the final stock"
                            " serves every line %r" % (body, err, {
                                p: model.products[p]["stock"]
                                for p in lines}))
            hw.count("hot Checkout 422 out_of_stock")
        self.assertTrue(done, "no hot checkout succeeded")
        # a refused checkout changed nothing: after a restock the cart
        # checks out as it was, with every line
        for p in hot:
            hw.send("Restock", {"productId": p, "quantity": 1000})
        for body, r, w in refused:
            _, ans = hw.send("Checkout", body)
            self.assertIsNotNone(ans)
            w.orders.append(ans["result"]["orderId"])
        # one user with more orders than a page holds (user_orders pages)
        hw.send("RegisterUser", {"userId": "hot-heavy", "name": "Heavy",
                                 "country": "NO"})
        for k in range(27):
            cart = "hot-heavy-c%d" % k
            hw.send("AddToCart", {"cartId": cart, "userId": "hot-heavy",
                                  "productId": hot[k % HOT_PRODUCTS],
                                  "quantity": 1 + k % 3})
            _, ans = hw.send("Checkout", {"userId": "hot-heavy",
                                          "cartId": cart})
            if k % 5 == 2:
                hw.send("CancelOrder", {"orderId": ans["result"]["orderId"]})
        return hw

    def test_concurrent_retries_have_one_effect(self):
        """The same keyed Checkout sent by 8 clients at once: one order,
        the same answer byte for byte to all of them."""
        c = self.srv.client()
        for name, body in [
                ("RegisterUser", {"userId": "u1", "name": "A",
                                  "country": "SE"}),
                ("AddProduct", {"productId": "p1", "name": "n",
                                "category": "c", "price_cents": 100,
                                "stock": 10}),
                ("AddToCart", {"cartId": "c1", "userId": "u1",
                               "productId": "p1", "quantity": 2})]:
            self.assertEqual(c.command(name, body).status, 200)
        barrier = threading.Barrier(8)
        answers = []

        def go():
            cc = ct.Client(self.srv.port)
            barrier.wait()
            answers.append(cc.command("Checkout", {"userId": "u1",
                                                   "cartId": "c1"},
                                      {"Idempotency-Key": "race"}))
            cc.close()

        ts = [threading.Thread(target=go) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual({(r.status, r.body) for r in answers},
                         {(200, answers[0].body)})
        self.assertEqual(sorted(r.header("idempotent-replayed") or "-"
                                for r in answers), ["-"] + ["true"] * 7)
        pos = answers[0].json()["position"]
        r = c.get("/queries/product?productId=p1&min_position=%d" % pos)
        self.assertEqual((r.json()["stock"], r.json()["sold"]), (8, 2))
        orders = [e for e in ct.all_events(c) if e["type"] == "OrderPlaced"]
        self.assertEqual(len(orders), 1)
        self.ok = True

    def rejected_checkout(self):
        """A checkout refused (out of stock) under an Idempotency-Key."""
        c = self.srv.client()
        for name, body in [
                ("RegisterUser", {"userId": "u1", "name": "A",
                                  "country": "SE"}),
                ("AddProduct", {"productId": "p1", "name": "n",
                                "category": "c", "price_cents": 100,
                                "stock": 1}),
                ("AddToCart", {"cartId": "c1", "userId": "u1",
                               "productId": "p1", "quantity": 2})]:
            self.assertEqual(c.command(name, body).status, 200)
        key = {"Idempotency-Key": "checkout-c1"}
        body = {"userId": "u1", "cartId": "c1"}
        r1 = c.command("Checkout", body, key)
        ct.check_error(r1, 422, "out_of_stock")
        return c, body, key, r1

    def test_retry_of_a_rejected_command(self):
        c, body, key, r1 = self.rejected_checkout()
        r2 = c.command("Checkout", body, key)
        self.assertEqual((r2.status, r2.body), (r1.status, r1.body))
        self.ok = True

    # The domain's refusal is the command's result: a retry with the same
    # key gets it again even after the state changed (the engine stores
    # decided failures — 404/409/422 and handler 400s — under the key).
    def test_retry_of_a_rejected_command_after_a_change(self):
        c, body, key, r1 = self.rejected_checkout()
        self.ok = True
        r = c.command("Restock", {"productId": "p1", "quantity": 5})
        if r.status != 200:
            raise RuntimeError("setup: %r" % r)  # not the expected failure
        r3 = c.command("Checkout", body, key)
        self.assertEqual((r3.status, r3.body), (r1.status, r1.body),
                         "same Idempotency-Key, first 422 then %d" %
                         r3.status)


if __name__ == "__main__":
    ct.main(SEED)
