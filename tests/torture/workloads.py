"""The torture's workloads: what each domain's client threads send, which
answers they may get, and a model of the domain computed from the events
alone (in log order), compared with the write tables (read-only SQLite) and
with the queries.  Each model also checks the "after" values the events
carry (stock_after, balance_cents) as it goes: a command applied twice or
half would break the running sums.  Python standard library only."""
import json
import threading


class TortureFailure(AssertionError):
    pass


def fail(msg, *args):
    raise TortureFailure(msg % args if args else msg)


class Shop:
    """Users, products, one promo, carts checked out by each thread, some
    cancellations, restocks, price changes, new users and products, and a
    few commands that must be refused (their keys must never appear)."""

    name = "shop"
    projections = ["catalog", "search", "orders", "revenue", "bestsellers"]
    STOCK = 100000000

    def __init__(self, rng):
        self.rng = rng
        self.lock = threading.Lock()
        self.users = []
        self.products = []
        self.serial = 0
        # model computed from the events alone
        self.stock = {}
        self.sold = {}
        self.price = {}
        self.orders = {}      # orderId -> status
        self.order_total = {}
        self.placed = 0
        self.cancelled = 0
        self.promo_uses = 0
        self.nusers = 0

    def setup_cmds(self):
        out = []
        for i in range(12):
            out.append(("RegisterUser", {"userId": "u%d" % i,
                                         "name": "user %d" % i,
                                         "country": ["SE", "DE", "FR",
                                                     "US"][i % 4]}))
        for i in range(16):
            out.append(("AddProduct", {"productId": "p%d" % i,
                                       "name": "product %d" % i,
                                       "category": "cat%d" % (i % 3),
                                       "price_cents": 100 + 37 * i,
                                       "stock": self.STOCK}))
        out.append(("CreatePromo", {"code": "TORTURE", "percent_off": 15,
                                    "max_uses": 1000000000,
                                    "expires_at": 4102444800}))
        return out

    def on_setup_ack(self, name, body):
        if name == "RegisterUser":
            self.users.append(body["userId"])
        elif name == "AddProduct":
            self.products.append(body["productId"])

    def thread_state(self, tid, trial):
        return {"tid": tid, "trial": trial, "cart": None, "lines": 0,
                "orders": [], "n": 0,
                "user": "u%d" % (tid % 12)}

    def next(self, ts):
        """(name, body, ctx) of the thread's next command."""
        r = self.rng
        ts["n"] += 1
        x = r.random()
        with self.lock:
            products = list(self.products)
        if ts["cart"] and (ts["lines"] >= 3 or x < 0.35):
            cart, ts["cart"], ts["lines"] = ts["cart"], None, 0
            body = {"userId": ts["user"], "cartId": cart}
            if r.random() < 0.3:
                body["promoCode"] = "TORTURE"
            return "Checkout", body, "checkout"
        if x < 0.55:
            if not ts["cart"]:
                ts["cart"] = "c%d-%d-%d" % (ts["trial"], ts["tid"], ts["n"])
            ts["lines"] += 1
            return "AddToCart", {"cartId": ts["cart"], "userId": ts["user"],
                                 "productId": r.choice(products),
                                 "quantity": r.randint(1, 5)}, None
        if x < 0.65 and ts["orders"]:
            o = ts["orders"].pop(r.randrange(len(ts["orders"])))
            return "CancelOrder", {"orderId": o}, None
        if x < 0.75:
            return "Restock", {"productId": r.choice(products),
                               "quantity": r.randint(1, 1000)}, None
        if x < 0.80:
            return "ChangePrice", {"productId": r.choice(products),
                                   "price_cents": r.randint(50, 5000)}, None
        if x < 0.84:
            uid = "nu%d-%d-%d" % (ts["trial"], ts["tid"], ts["n"])
            return "RegisterUser", {"userId": uid, "name": "new " + uid,
                                    "country": "NO"}, "user"
        if x < 0.88:
            pid = "np%d-%d-%d" % (ts["trial"], ts["tid"], ts["n"])
            return "AddProduct", {"productId": pid, "name": "new " + pid,
                                  "category": "new", "price_cents": 999,
                                  "stock": self.STOCK}, "product"
        if x < 0.90:
            # must be refused: unknown product (404) -- writes nothing
            return "AddToCart", {"cartId": "bad-%d-%d-%d" % (
                ts["trial"], ts["tid"], ts["n"]), "userId": ts["user"],
                "productId": "no-such-product", "quantity": 1}, "bad"
        if x < 0.92:
            return "Checkout", {"userId": ts["user"],
                                "cartId": "no-such-cart"}, "bad"
        return "Restock", {"productId": r.choice(products),
                           "quantity": r.randint(1, 10)}, None

    def expected(self, cmd):
        """Statuses a first answer or a retry may have."""
        if cmd.ctx == "bad":
            return {404}
        return {200}

    def on_ack(self, ts, cmd, result):
        if cmd.name == "Checkout" and ts is not None:
            ts["orders"].append(result["orderId"])
        self.after_success(cmd)

    def after_success(self, cmd):
        body = json.loads(cmd.body)
        with self.lock:
            if cmd.ctx == "user":
                self.users.append(body["userId"])
            elif cmd.ctx == "product" and body["productId"] not in \
                    self.products:
                self.products.append(body["productId"])

    # -- the model, from events in log order --
    def apply(self, ev):
        t, d = ev["type"], ev["data"]
        if t == "UserRegistered":
            self.nusers += 1
        elif t == "ProductAdded":
            p = d["productId"]
            self.stock[p] = d["stock"]
            self.sold[p] = 0
            self.price[p] = d["price_cents"]
        elif t == "PriceChanged":
            self.price[d["productId"]] = d["price_cents"]
        elif t == "ProductRestocked":
            p = d["productId"]
            self.stock[p] += d["quantity"]
            if d["stock"] != self.stock[p]:
                fail("event %d: ProductRestocked says stock %d, the log "
                     "sums to %d", ev["position"], d["stock"], self.stock[p])
        elif t in ("OrderPlaced", "OrderCancelled"):
            sign = -1 if t == "OrderPlaced" else 1
            sub = 0
            for ln in d["lines"]:
                p = ln["productId"]
                self.stock[p] += sign * ln["quantity"]
                self.sold[p] -= sign * ln["quantity"]
                sub += ln["quantity"] * ln["price_cents"]
                if t == "OrderPlaced" and ln["price_cents"] != self.price[p]:
                    fail("event %d: order line of %s at price %d, the log "
                         "says the price is %d", ev["position"], p,
                         ln["price_cents"], self.price[p])
                if ln["stock_after"] != self.stock[p]:
                    fail("event %d: %s says stock_after %d for %s, the log "
                         "sums to %d (an effect applied twice or lost)",
                         ev["position"], t, ln["stock_after"], p,
                         self.stock[p])
            if sub != d["subtotal_cents"] or \
                    d["total_cents"] != sub - d["discount_cents"]:
                fail("event %d: %s totals do not add up: %r", ev["position"],
                     t, d)
            o = d["orderId"]
            if t == "OrderPlaced":
                if o in self.orders:
                    fail("event %d: order %s placed twice", ev["position"], o)
                self.orders[o] = "placed"
                self.order_total[o] = d["total_cents"]
                self.placed += 1
                if d.get("promoCode"):
                    self.promo_uses += 1
                    if d["discount_cents"] != sub * 15 // 100:
                        fail("event %d: discount %d of %d", ev["position"],
                             d["discount_cents"], sub)
            else:
                if self.orders.get(o) != "placed":
                    fail("event %d: order %s cancelled while %s",
                         ev["position"], o, self.orders.get(o))
                self.orders[o] = "cancelled"
                self.cancelled += 1

    def check_tables(self, db):
        """The write model equals the model computed from the events."""
        inv = dict(db.execute("SELECT product_id, stock FROM inventory"))
        if inv != self.stock:
            diff = {p: (inv.get(p), self.stock.get(p))
                    for p in set(inv) | set(self.stock)
                    if inv.get(p) != self.stock.get(p)}
            fail("inventory differs from the log (table, log): %r", diff)
        price = dict(db.execute("SELECT product_id, price_cents FROM "
                                "products"))
        if price != self.price:
            fail("product prices differ from the log")
        n = db.execute("SELECT count(*), coalesce(sum(status = 'cancelled'),"
                       " 0) FROM orders").fetchone()
        if n != (self.placed, self.cancelled):
            fail("orders table has %r (placed, cancelled), the log %r", n,
                 (self.placed, self.cancelled))
        seq = db.execute("SELECT value FROM shop_sequences WHERE name = "
                         "'order'").fetchone()[0]
        if seq != self.placed:
            fail("order sequence at %d, the log has %d orders", seq,
                 self.placed)
        closed = db.execute("SELECT count(*) FROM carts WHERE status = "
                            "'closed'").fetchone()[0]
        if closed != self.placed:
            fail("%d carts closed, %d orders placed", closed, self.placed)
        uses = db.execute("SELECT uses FROM promos WHERE code = 'TORTURE'"
                          ).fetchone()[0]
        if uses != self.promo_uses:
            fail("promo used %d times, the log says %d", uses,
                 self.promo_uses)
        nu = db.execute("SELECT count(*) FROM users").fetchone()[0]
        if nu != self.nusers:
            fail("%d users, the log registered %d", nu, self.nusers)

    def check_queries(self, conn, head, rng):
        ps = sorted(self.stock)
        base = [p for p in ps if not p.startswith("np")]
        extra = [p for p in ps if p.startswith("np")]
        for p in base + rng.sample(extra, min(20, len(extra))):
            doc = conn.get_json("/queries/product?productId=%s&min_position="
                                "%d&wait_ms=10000" % (p, head))
            want = (self.stock[p], self.sold[p], self.price[p])
            got = (doc["stock"], doc["sold"], doc["price_cents"])
            if got != want:
                fail("product %s answers (stock, sold, price) %r, the log "
                     "says %r", p, got, want)
        orders = sorted(self.orders)[-10:]
        for o in orders:
            doc = conn.get_json("/queries/order?orderId=%s&min_position=%d"
                                % (o, head))
            if doc["status"] != self.orders[o] or \
                    doc["total_cents"] != self.order_total[o]:
                fail("order %s answers %s/%s, the log says %s/%s", o,
                     doc["status"], doc["total_cents"], self.orders[o],
                     self.order_total[o])
        return len(base) + min(20, len(extra)) + len(orders)


class Bank:
    """Accounts in two currencies, deposits, withdrawals (some refused for
    lack of funds), transfers within a currency, new accounts."""

    name = "bank"
    projections = ["accounts", "statements", "volume"]

    def __init__(self, rng):
        self.rng = rng
        self.lock = threading.Lock()
        self.accounts = {"EUR": [], "USD": []}
        self.balance = {}
        self.currency = {}
        self.deposits = 0
        self.withdrawals = 0
        self.transfers = 0

    def setup_cmds(self):
        out = []
        for i in range(16):
            cur = "EUR" if i % 2 else "USD"
            out.append(("OpenAccount", {"accountId": "a%d" % i,
                                        "owner": "owner %d" % i,
                                        "currency": cur}))
        for i in range(16):
            out.append(("Deposit", {"accountId": "a%d" % i,
                                    "amount_cents": 50000}))
        return out

    def on_setup_ack(self, name, body):
        if name == "OpenAccount":
            self.accounts[body["currency"]].append(body["accountId"])

    def thread_state(self, tid, trial):
        return {"tid": tid, "trial": trial, "n": 0}

    def next(self, ts):
        r = self.rng
        ts["n"] += 1
        cur = r.choice(("EUR", "USD"))
        with self.lock:
            accts = list(self.accounts[cur])
        x = r.random()
        if x < 0.35:
            return "Deposit", {"accountId": r.choice(accts),
                               "amount_cents": r.randint(1, 20000)}, None
        if x < 0.55:
            return "Withdraw", {"accountId": r.choice(accts),
                                "amount_cents": r.randint(1, 10000)}, "funds"
        if x < 0.93:
            a, b = r.sample(accts, 2)
            return "Transfer", {"transferId": "t%d-%d-%d" % (
                ts["trial"], ts["tid"], ts["n"]), "from": a, "to": b,
                "amount_cents": r.randint(1, 20000)}, "funds"
        if x < 0.97:
            aid = "na%d-%d-%d" % (ts["trial"], ts["tid"], ts["n"])
            return "OpenAccount", {"accountId": aid, "owner": "new",
                                   "currency": cur}, "account"
        return "Deposit", {"accountId": "no-such-account",
                           "amount_cents": 1}, "bad"

    def expected(self, cmd):
        if cmd.ctx == "bad":
            return {404}
        if cmd.ctx == "funds":
            return {200, 422}
        return {200}

    def on_ack(self, ts, cmd, result):
        self.after_success(cmd)

    def after_success(self, cmd):
        if cmd.ctx == "account":
            body = json.loads(cmd.body)
            with self.lock:
                if body["accountId"] not in self.accounts[body["currency"]]:
                    self.accounts[body["currency"]].append(body["accountId"])

    def apply(self, ev):
        t, d = ev["type"], ev["data"]
        pos = ev["position"]
        if t == "AccountOpened":
            a = d["accountId"]
            if a in self.balance:
                fail("event %d: account %s opened twice", pos, a)
            self.balance[a] = 0
            self.currency[a] = d["currency"]
        elif t == "Deposited":
            self.balance[d["accountId"]] += d["amount_cents"]
            self.deposits += d["amount_cents"]
            self.after(pos, d["accountId"], d["balance_cents"])
        elif t == "Withdrawn":
            self.balance[d["accountId"]] -= d["amount_cents"]
            self.withdrawals += d["amount_cents"]
            self.after(pos, d["accountId"], d["balance_cents"])
        elif t == "TransferCompleted":
            self.balance[d["from"]] -= d["amount_cents"]
            self.balance[d["to"]] += d["amount_cents"]
            self.transfers += 1
            self.after(pos, d["from"], d["from_balance_cents"])
            self.after(pos, d["to"], d["to_balance_cents"])

    def after(self, pos, acct, said):
        if said != self.balance[acct] or said < 0:
            fail("event %d: says balance %d for %s, the log sums to %d "
                 "(an effect applied twice or lost)", pos, said, acct,
                 self.balance[acct])

    def check_tables(self, db):
        bal = dict(db.execute("SELECT account_id, balance_cents FROM "
                              "accounts"))
        if bal != self.balance:
            diff = {a: (bal.get(a), self.balance.get(a))
                    for a in set(bal) | set(self.balance)
                    if bal.get(a) != self.balance.get(a)}
            fail("balances differ from the log (table, log): %r", diff)
        total = sum(bal.values())
        if total != self.deposits - self.withdrawals:
            fail("money not conserved in the write model: balances %d, "
                 "deposits - withdrawals %d", total,
                 self.deposits - self.withdrawals)
        n = db.execute("SELECT count(*) FROM transfers").fetchone()[0]
        if n != self.transfers:
            fail("%d transfers in the table, %d in the log", n,
                 self.transfers)

    def check_queries(self, conn, head, rng):
        t = conn.get_json("/queries/totals?min_position=%d&wait_ms=10000"
                          % head)
        total = sum(self.balance.values())
        if t["balance_cents"] != t["deposits_cents"] - t["withdrawals_cents"]:
            fail("totals not conserved: %r", t)
        if (t["balance_cents"], t["deposits_cents"], t["withdrawals_cents"],
                t["accounts"]) != (total, self.deposits, self.withdrawals,
                                   len(self.balance)):
            fail("totals %r, the log says balance %d deposits %d "
                 "withdrawals %d accounts %d", t, total, self.deposits,
                 self.withdrawals, len(self.balance))
        accts = sorted(self.balance)
        base = [a for a in accts if not a.startswith("na")]
        extra = [a for a in accts if a.startswith("na")]
        accts = base + rng.sample(extra, min(20, len(extra)))
        for a in accts:
            doc = conn.get_json("/queries/balance?accountId=%s&min_position="
                                "%d" % (a, head))
            if doc["balance_cents"] != self.balance[a]:
                fail("balance of %s answers %d, the log says %d", a,
                     doc["balance_cents"], self.balance[a])
        return 1 + len(accts)


WORKLOADS = {"shop": Shop, "bank": Bank}
