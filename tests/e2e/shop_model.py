"""An independent model of the shop's rules (docs/domains.md), a randomized
workload that drives the real server and the model side by side, and the
comparison of every query answer with the model.

Used by test_shop_model.py and test_restart_rebuild.py.  The model is
written from the rules of docs/domains.md, not from the C code: stock,
carts that belong to one user and close at checkout, promos (percent,
expiry, uses), discounts rounded down, unit prices at checkout time,
cancellations that restock, and the read models' answers (cards, orders, a
user's orders, revenue per country and UTC day, best sellers, search) —
the choices the implementation made included (error codes; an AddToCart
to a closed cart is 422 cart_closed; a day whose orders were all cancelled
stays in revenue_daily with 0 and 0).

Concurrency and an exact model: each workload client owns its users,
products, promos and carts (ids carry the client's prefix) and runs its
commands one after another, so the model predicts every status exactly
whatever the interleaving; what clients share (the order sequence, the
revenue counters of a country and day, the leaderboard, the search index)
is only compared at the end, read at the last position.  The "hot" phase
lets every client check out carts of the same few products at once; its
outcome is checked in log order instead (test_shop_model.py).
"""
import calendar
import json
import random
import re
import threading
import time
import urllib.parse
from collections import OrderedDict

import cleave_test as ct

WORDS = ["red", "blue", "green", "steel", "wooden", "lamp", "chair", "mug",
         "kettle", "espresso", "machine", "pot", "desk", "garden", "hose",
         "book", "novel", "toy", "robot", "puzzle", "quiet", "small"]
CATEGORIES = ["kitchen", "garden", "books", "toys", "office"]
COUNTRIES = ["SE", "DE", "FR", "US", "JP"]
# few distinct prices: many ties, so the tie order (productId) and keyset
# pages across equal prices are exercised
PRICES = [99, 250, 500, 999, 1250, 1500, 2500, 4999, 5000, 9999, 12000,
          19900]

ID_MAX = 64
STOCK_MAX = 10 ** 9
LINE_QTY_MAX = 100000
CART_LINES_MAX = 100

EVENT_OF = {"RegisterUser": "UserRegistered", "AddProduct": "ProductAdded",
            "ChangePrice": "PriceChanged", "Restock": "ProductRestocked",
            "CreatePromo": "PromoCreated", "AddToCart": "ItemAddedToCart",
            "Checkout": "OrderPlaced", "CancelOrder": "OrderCancelled"}


def day_of(unix_s):
    return time.strftime("%Y-%m-%d", time.gmtime(unix_s))


def tokens(text):
    return set(re.findall(r"[a-z0-9]+", text.lower()))


class ShopModel:
    """The shop's state and rules.  decide() predicts a command's outcome
    without changing anything; commit() applies a success."""

    def __init__(self):
        self.users = {}     # id -> {name, country}
        self.products = {}  # id -> {name, category, description, price,
        #                            stock, sold}
        self.promos = {}    # code -> {pct, max_uses, uses, expires_at}
        self.carts = {}     # id -> {user, open, lines: OrderedDict}
        self.orders = {}    # id -> order dict (see commit)
        self.lock = threading.Lock()

    # ---- the rules ------------------------------------------------------

    def decide(self, name, b, now):
        """(status, code, plan): plan is what commit() will do."""
        with self.lock:
            return getattr(self, "_" + name)(b, now)

    def _RegisterUser(self, b, now):
        if b["userId"] in self.users:
            return 409, "user_exists", None
        return 200, None, ("user", b)

    def _AddProduct(self, b, now):
        if b["productId"] in self.products:
            return 409, "product_exists", None
        return 200, None, ("product", b)

    def _ChangePrice(self, b, now):
        if b["productId"] not in self.products:
            return 404, "product_not_found", None
        return 200, None, ("price", b)

    def _Restock(self, b, now):
        p = self.products.get(b["productId"])
        if p is None:
            return 404, "product_not_found", None
        if p["stock"] + b["quantity"] > STOCK_MAX:
            return 422, "stock_limit", None
        return 200, None, ("restock", b)

    def _CreatePromo(self, b, now):
        if b["code"] in self.promos:
            return 409, "promo_exists", None
        return 200, None, ("promo", b)

    def _AddToCart(self, b, now):
        if b["userId"] not in self.users:
            return 404, "user_not_found", None
        if b["productId"] not in self.products:
            return 404, "product_not_found", None
        cart = self.carts.get(b["cartId"])
        if cart is not None:
            if cart["user"] != b["userId"]:
                return 422, "cart_not_yours", None
            if not cart["open"]:
                return 422, "cart_closed", None
            have = cart["lines"].get(b["productId"])
            if have is not None and have + b["quantity"] > LINE_QTY_MAX:
                return 422, "line_quantity_limit", None
            if have is None and len(cart["lines"]) >= CART_LINES_MAX:
                return 422, "cart_full", None
        return 200, None, ("add", b)

    def _Checkout(self, b, now):
        user = self.users.get(b["userId"])
        if user is None:
            return 404, "user_not_found", None
        cart = self.carts.get(b["cartId"])
        if cart is None:
            return 404, "cart_not_found", None
        if cart["user"] != b["userId"]:
            return 422, "cart_not_yours", None
        if not cart["open"]:
            return 422, "cart_closed", None
        if not cart["lines"]:
            return 422, "cart_empty", None
        lines = []
        for pid, qty in cart["lines"].items():
            p = self.products[pid]
            if qty > p["stock"]:
                return 422, "out_of_stock", None
            lines.append((pid, p["name"], qty, p["price"]))
        pct = 0
        code = b.get("promoCode")
        if code is not None:
            promo = self.promos.get(code)
            if promo is None:
                return 422, "promo_not_found", None
            if promo["expires_at"] <= now:
                return 422, "promo_expired", None
            if promo["uses"] >= promo["max_uses"]:
                return 422, "promo_used_up", None
            pct = promo["pct"]
        subtotal = sum(q * price for _, _, q, price in lines)
        discount = subtotal * pct // 100
        return 200, None, ("checkout", b, lines, subtotal, discount,
                           subtotal - discount, user["country"])

    def _CancelOrder(self, b, now):
        o = self.orders.get(b["orderId"])
        if o is None:
            return 404, "order_not_found", None
        if o["status"] == "cancelled":
            return 422, "order_cancelled", None
        return 200, None, ("cancel", b)

    def commit(self, plan, answer):
        """Applies a success; `answer` is the command's 200 JSON.  Returns
        a list of differences between the answer's result and the model."""
        diffs = []
        with self.lock:
            kind, b = plan[0], plan[1]
            res = answer["result"]
            if kind == "user":
                self.users[b["userId"]] = {"name": b["name"],
                                           "country": b["country"]}
            elif kind == "product":
                self.products[b["productId"]] = {
                    "name": b["name"], "category": b["category"],
                    "description": b.get("description") or "",
                    "price": b["price_cents"], "stock": b["stock"],
                    "sold": 0}
            elif kind == "price":
                self.products[b["productId"]]["price"] = b["price_cents"]
            elif kind == "restock":
                p = self.products[b["productId"]]
                p["stock"] += b["quantity"]
                if res.get("stock") != p["stock"]:
                    diffs.append("Restock result stock %r, model %d" %
                                 (res.get("stock"), p["stock"]))
            elif kind == "promo":
                self.promos[b["code"]] = {
                    "pct": b["percent_off"], "max_uses": b["max_uses"],
                    "uses": 0, "expires_at": b["expires_at"]}
            elif kind == "add":
                cart = self.carts.setdefault(b["cartId"], {
                    "user": b["userId"], "open": True,
                    "lines": OrderedDict()})
                lines = cart["lines"]
                lines[b["productId"]] = lines.get(b["productId"], 0) + \
                    b["quantity"]
                if res.get("quantity") != lines[b["productId"]]:
                    diffs.append("AddToCart result quantity %r, model %d" %
                                 (res.get("quantity"),
                                  lines[b["productId"]]))
            elif kind == "checkout":
                _, _, lines, subtotal, discount, total, country = plan
                oid = res["orderId"]
                if oid in self.orders:
                    diffs.append("order id %s given twice" % oid)
                for pid, _, qty, _ in lines:
                    p = self.products[pid]
                    p["stock"] -= qty
                    p["sold"] += qty
                cart = self.carts[b["cartId"]]
                cart["open"] = False
                cart["lines"] = OrderedDict()
                code = b.get("promoCode")
                if code is not None:
                    self.promos[code]["uses"] += 1
                self.orders[oid] = {
                    "orderId": oid, "userId": b["userId"],
                    "cartId": b["cartId"], "country": country,
                    "status": "placed", "lines": lines,
                    "subtotal": subtotal, "discount": discount,
                    "total": total, "promoCode": code,
                    "position": answer["position"], "placed_at": None,
                    "cancelled_at": None}
                want = {"orderId": oid, "subtotal_cents": subtotal,
                        "discount_cents": discount, "total_cents": total}
                got = {k: res.get(k) for k in want}
                if got != want:
                    diffs.append("Checkout result %r, model %r" % (got,
                                                                    want))
            elif kind == "cancel":
                o = self.orders[b["orderId"]]
                o["status"] = "cancelled"
                for pid, _, qty, _ in o["lines"]:
                    p = self.products[pid]
                    p["stock"] += qty
                    p["sold"] -= qty
                if res.get("total_cents") != o["total"]:
                    diffs.append("CancelOrder result total %r, model %d" %
                                 (res.get("total_cents"), o["total"]))
        return diffs

    # ---- the read side --------------------------------------------------

    def card(self, pid):
        p = self.products[pid]
        return {"productId": pid, "name": p["name"],
                "category": p["category"], "price_cents": p["price"],
                "stock": p["stock"], "sold": p["sold"],
                "in_stock": p["stock"] > 0}

    def order_doc(self, oid):
        o = self.orders[oid]
        return {"orderId": oid, "userId": o["userId"], "cartId": o["cartId"],
                "country": o["country"], "status": o["status"],
                "lines": [{"productId": pid, "name": name, "quantity": q,
                           "price_cents": price,
                           "line_total_cents": q * price}
                          for pid, name, q, price in o["lines"]],
                "subtotal_cents": o["subtotal"],
                "discount_cents": o["discount"],
                "total_cents": o["total"], "promoCode": o["promoCode"],
                "placed_at": o["placed_at"],
                "cancelled_at": o["cancelled_at"]}

    def user_orders(self, uid):
        mine = sorted((o for o in self.orders.values()
                       if o["userId"] == uid), key=lambda o: -o["position"])
        return [{"orderId": o["orderId"], "status": o["status"],
                 "total_cents": o["total"], "placed_at": o["placed_at"]}
                for o in mine]

    def revenue(self, country):
        """{day: (orders, revenue)}: a day stays once an order was placed
        on it, even when all its orders were cancelled."""
        days = {}
        for o in self.orders.values():
            if o["country"] != country:
                continue
            d = day_of(o["placed_at"])
            n, rev = days.get(d, (0, 0))
            if o["status"] == "placed":
                n, rev = n + 1, rev + o["total"]
            days[d] = (n, rev)
        return days

    def top(self):
        items = [(-p["sold"], pid) for pid, p in self.products.items()
                 if p["sold"] > 0]
        return [{"productId": pid, "name": self.products[pid]["name"],
                 "sold": -s} for s, pid in sorted(items)]

    def search(self, q=None, category=None, min_price=None, max_price=None,
               in_stock=None, sort=None):
        """The matching cards in answer order; for relevance with q, the
        order is the engine's (bm25) and only the set is compared."""
        words = None
        if q is not None:
            words = [w.lower() for w in re.findall(r"[A-Za-z0-9]+", q)]
            if not words:
                return []
        out = []
        for pid, p in self.products.items():
            if words is not None:
                toks = tokens(p["name"]) | tokens(p["description"]) | \
                    tokens(p["category"])
                if not all(w in toks for w in words):
                    continue
            if category is not None and p["category"] != category:
                continue
            if min_price is not None and p["price"] < min_price:
                continue
            if max_price is not None and p["price"] > max_price:
                continue
            if in_stock is not None and (p["stock"] > 0) != in_stock:
                continue
            out.append(pid)
        sort = sort or ("relevance" if q is not None else "price")
        key = {"price": lambda i: (self.products[i]["price"], i),
               "-price": lambda i: (-self.products[i]["price"], i),
               "sold": lambda i: (-self.products[i]["sold"], i),
               "relevance": lambda i: i}[sort]
        return [self.card(i) for i in sorted(out, key=key)]


# ---- the workload ---------------------------------------------------------

def vocab_name(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Divergence(Exception):
    pass


class Worker(threading.Thread):
    """One client: its own keep-alive connection, its own entities (ids
    prefixed with `prefix`), commands one after another, each checked
    against the model's prediction."""

    def __init__(self, port, model, prefix, seed, n_commands, stats,
                 idem_rate=0.08, check_reads=0.03):
        super().__init__(daemon=True)
        self.client = ct.Client(port, timeout=60)
        self.model = model
        self.p = prefix
        self.rng = random.Random(seed)
        self.n = n_commands
        self.stats = stats
        self.idem_rate = idem_rate
        self.check_reads = check_reads
        self.users, self.products, self.promos = [], [], []
        self.carts = {}  # cart id -> user (every cart this client opened)
        self.orders = []
        self.ghost = 0
        self.keyed = []  # (name, body, key, first answer bytes, cmd id)
        self.history = []
        self.error = None
        self.successes = []  # (position, command_id, name, key)
        self.last_position = 0
        self.seq = 0
        self.until = None
        self.steps = 0

    def count(self, what):
        self.stats[what] = self.stats.get(what, 0) + 1

    # ---- ids ----------------------------------------------------------

    def new_id(self, kind):
        self.seq += 1
        return "%s%s-%d" % (self.p, kind, self.seq)

    def ghost_id(self, kind):
        self.ghost += 1
        return "%s%s-ghost-%d" % (self.p, kind, self.ghost)

    # ---- command choice -----------------------------------------------

    def pick(self):
        rng = self.rng
        now = time.time()
        if len(self.users) < 2:
            return "RegisterUser", self.user_body()
        if len(self.products) < 3:
            return "AddProduct", self.product_body()
        r = rng.random()
        if r < 0.05:
            if rng.random() < 0.15:
                b = self.user_body()
                b["userId"] = rng.choice(self.users)
                return "RegisterUser", b
            return "RegisterUser", self.user_body()
        if r < 0.11:
            b = self.product_body()
            if rng.random() < 0.12:
                b["productId"] = rng.choice(self.products)
            return "AddProduct", b
        if r < 0.16:
            pid = rng.choice(self.products) if rng.random() < 0.9 else \
                self.ghost_id("p")
            return "ChangePrice", {"productId": pid,
                                   "price_cents": rng.choice(PRICES)}
        if r < 0.22:
            pid = rng.choice(self.products) if rng.random() < 0.9 else \
                self.ghost_id("p")
            return "Restock", {"productId": pid,
                               "quantity": rng.randint(1, 15)}
        if r < 0.25:
            code = self.new_id("PROMO") if rng.random() < 0.88 or \
                not self.promos else rng.choice(self.promos)
            expired = rng.random() < 0.25
            return "CreatePromo", {
                "code": code, "percent_off": rng.randint(1, 90),
                "max_uses": rng.randint(1, 4),
                "expires_at": rng.randint(0, int(now) - 86400) if expired
                else int(now) + 10 * 365 * 86400 + rng.randint(0, 10 ** 6)}
        if r < 0.62:
            return "AddToCart", self.add_body()
        if r < 0.88:
            return "Checkout", self.checkout_body()
        return "CancelOrder", self.cancel_body()

    def user_body(self):
        return {"userId": self.new_id("u"),
                "name": vocab_name(self.rng, 2).title(),
                "country": self.rng.choice(COUNTRIES)}

    def product_body(self):
        rng = self.rng
        b = {"productId": self.new_id("p"),
             "name": vocab_name(rng, rng.randint(1, 3)),
             "category": rng.choice(CATEGORIES),
             "price_cents": rng.choice(PRICES),
             "stock": rng.choice([0, 1, 2, 3, 5, 8, 13, 20])}
        if rng.random() < 0.6:
            b["description"] = vocab_name(rng, rng.randint(1, 5))
        return b

    def open_carts(self):
        return [c for c in self.carts
                if self.model.carts.get(c, {}).get("open")]

    def closed_carts(self):
        return [c for c in self.carts
                if c in self.model.carts and not self.model.carts[c]["open"]]

    def add_body(self):
        rng = self.rng
        r = rng.random()
        qty = rng.randint(1, 4) if rng.random() < 0.9 else \
            rng.randint(5, 10)
        pid = rng.choice(self.products)
        opened = self.open_carts()
        if r < 0.55 and opened:
            cart = rng.choice(opened)
            user = self.carts[cart]
            lines = self.model.carts[cart]["lines"]
            if len(lines) >= 6:
                pid = rng.choice(list(lines))
        elif r < 0.77 or not opened:
            cart = self.new_id("c")
            user = rng.choice(self.users)
            self.carts[cart] = user
        elif r < 0.84 and self.closed_carts():
            cart = rng.choice(self.closed_carts())
            user = self.carts[cart]
        elif r < 0.90:
            cart = rng.choice(list(self.carts))
            user = rng.choice(self.users)  # often another user's cart
        elif r < 0.95:
            cart = rng.choice(list(self.carts))
            user = self.ghost_id("u")
        else:
            cart = rng.choice(list(self.carts)) if self.carts else \
                self.new_id("c")
            user = self.carts.get(cart) or rng.choice(self.users)
            pid = self.ghost_id("p")
        return {"cartId": cart, "userId": user, "productId": pid,
                "quantity": qty}

    def checkout_body(self):
        rng = self.rng
        r = rng.random()
        opened = self.open_carts()
        if r < 0.72 and opened:
            cart = rng.choice(opened)
            user = self.carts[cart]
        elif r < 0.80 and self.closed_carts():
            cart = rng.choice(self.closed_carts())
            user = self.carts[cart]
        elif r < 0.88 and self.carts:
            cart = rng.choice(list(self.carts))
            user = rng.choice(self.users)
        elif r < 0.94:
            cart = self.ghost_id("c")
            user = rng.choice(self.users)
        else:
            cart = rng.choice(list(self.carts)) if self.carts else \
                self.ghost_id("c")
            user = self.ghost_id("u")
        b = {"userId": user, "cartId": cart}
        r = rng.random()
        if r < 0.35 and self.promos:
            b["promoCode"] = rng.choice(self.promos)
        elif r < 0.40:
            b["promoCode"] = self.ghost_id("PROMO")
        return b

    def cancel_body(self):
        rng = self.rng
        r = rng.random()
        placed = [o for o in self.orders
                  if self.model.orders[o]["status"] == "placed"]
        if r < 0.7 and placed:
            return {"orderId": rng.choice(placed)}
        if r < 0.9 and self.orders:
            return {"orderId": rng.choice(self.orders)}
        return {"orderId": "o-ghost-" + self.ghost_id("o")}

    # ---- running ------------------------------------------------------

    def fail(self, msg):
        tail = "\n".join("  %s" % h for h in self.history[-12:])
        raise Divergence("client %s: %s\nlast commands:\n%s" %
                         (self.p, msg, tail))

    def send(self, name, body, key=None):
        """Runs one command against the model's prediction."""
        now = time.time()
        status, code, plan = self.model.decide(name, body, now)
        hdrs = {"Idempotency-Key": key} if key else None
        r = self.client.command(name, body, hdrs)
        self.history.append("%s %s -> %d %s (model %d %s)" % (
            name, json.dumps(body), r.status, r.body[:160].decode(
                "utf-8", "replace"), status, code))
        if r.status != status:
            self.fail("%s %s: status %d, the model says %d (%s)\n%r" % (
                name, json.dumps(body), r.status, status, code, r))
        if status != 200:
            err = ct.check_error(r, status)
            if code and err["code"] != code:
                self.fail("%s %s: code %r, the model says %r" % (
                    name, json.dumps(body), err["code"], code))
            self.count("%s %d %s" % (name, status, err["code"]))
            return r, None
        ans = r.json()
        diffs = self.model.commit(plan, ans)
        if diffs:
            self.fail("%s %s: %s" % (name, json.dumps(body),
                                     "; ".join(diffs)))
        if len(ans["events"]) != 1 or \
                ans["events"][0]["type"] != EVENT_OF[name]:
            self.fail("%s: events %r" % (name, ans["events"]))
        self.successes.append((ans["position"], ans["command_id"], name,
                               key))
        self.last_position = max(self.last_position, ans["position"])
        self.count(name + " 200")
        self.after_success(name, body, ans)
        return r, ans

    def after_success(self, name, body, ans):
        if name == "RegisterUser":
            self.users.append(body["userId"])
        elif name == "AddProduct":
            self.products.append(body["productId"])
        elif name == "CreatePromo":
            self.promos.append(body["code"])
        elif name == "Checkout":
            self.orders.append(ans["result"]["orderId"])
        if self.rng.random() < self.check_reads:
            self.read_your_writes(name, body, ans)

    def read_your_writes(self, name, body, ans):
        """A query at min_position = this command's position sees it and
        (no other client touches these entities) matches the model."""
        pos = ans["position"]
        pids = []
        if "productId" in body and name != "AddToCart":
            pids = [body["productId"]]
        elif name in ("Checkout", "CancelOrder"):
            oid = body.get("orderId") or ans["result"]["orderId"]
            pids = [pid for pid, _, _, _ in self.model.orders[oid]["lines"]]
        for pid in pids:
            r = self.client.get("/queries/product?productId=%s"
                                "&min_position=%d" % (pid, pos))
            if r.status != 200:
                self.fail("read-your-writes product %s: %r" % (pid, r))
            got = r.json()
            if got.pop("position") < pos:
                self.fail("position below min_position")
            with self.model.lock:
                want = self.model.card(pid)
            if got != want:
                self.fail("read-your-writes after %s at %d: card %r, model "
                          "%r" % (name, pos, got, want))
        if name in ("Checkout", "CancelOrder"):
            uid = self.model.orders[body.get("orderId") or
                                    ans["result"]["orderId"]]["userId"]
            r = self.client.get("/queries/user_orders?userId=%s&limit=100"
                                "&min_position=%d" % (uid, pos))
            if r.status != 200:
                self.fail("user_orders: %r" % r)
            with self.model.lock:
                want = [(o["orderId"], o["status"], o["total_cents"])
                        for o in self.model.user_orders(uid)][:100]
            got = [(o["orderId"], o["status"], o["total_cents"])
                   for o in r.json()["items"]]
            if got != want:
                self.fail("read-your-writes user_orders %s: %r, model %r" %
                          (uid, got, want))

    def step(self):
        rng = self.rng
        # now and then, retry an earlier keyed command: the first answer
        # again, byte for byte, however the state moved since
        if self.keyed and rng.random() < 0.03:
            self.retry(rng.choice(self.keyed))
            return
        name, body = self.pick()
        key = None
        if rng.random() < self.idem_rate:
            key = "%skey-%d" % (self.p, self.seq)
            self.seq += 1
        r, ans = self.send(name, body, key)
        if key and ans is not None:
            rec = (name, body, key, r.body, r.header("x-command-id"))
            self.keyed.append(rec)
            if rng.random() < 0.5:
                self.retry(rec)  # at once, as a client whose answer got lost
            if rng.random() < 0.1:
                # the same key with another body: refused, no effect
                other = dict(body)
                k = [f for f, v in other.items() if isinstance(v, int)]
                if k:
                    other[k[0]] += 1
                else:
                    f = list(other)[0]  # an id: still a valid body
                    other[f] += "x"
                r2 = self.client.command(name, other,
                                         {"Idempotency-Key": key})
                self.history.append("%s %s key %s -> %d" % (
                    name, json.dumps(other), key, r2.status))
                try:
                    ct.check_error(r2, 409, "idempotency_key_reused")
                except AssertionError as e:
                    self.fail("key reused with another body: %s" % e)

    def retry(self, rec):
        name, body, key, first, cmd_id = rec
        r = self.client.command(name, body, {"Idempotency-Key": key})
        self.history.append("retry %s %s key %s -> %d" % (
            name, json.dumps(body), key, r.status))
        if r.status != 200 or r.body != first:
            self.fail("retry of %s with key %s: %r, first answer %r" % (
                name, key, r, first))
        if r.header("idempotent-replayed") != "true" or \
                r.header("x-command-id") != cmd_id:
            self.fail("retry of %s: headers %r" % (name, r.headers))
        self.count("idempotent replays")

    def run(self):
        """n commands; with `until` (an Event) set before start, keeps
        going until it is set too (at most 50 000 commands)."""
        try:
            done = 0
            while done < self.n or (self.until is not None and
                                    not self.until.is_set() and
                                    done < 50000):
                self.step()
                done += 1
            self.steps = done
        except Divergence as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - reported by the test
            import traceback
            self.error = "client %s: %s\n%s" % (self.p, e,
                                                traceback.format_exc())
        finally:
            self.client.close()


# ---- comparing every answer with the model --------------------------------

def fill_times(model, events):
    """placed_at and cancelled_at come from the log (the command's time);
    returns a list of problems with the log's order events."""
    problems = []
    for e in events:
        if e["type"] not in ("OrderPlaced", "OrderCancelled"):
            continue
        d = e["data"]
        o = model.orders.get(d["orderId"])
        if o is None:
            problems.append("the log has an order the model has not: %r" % d)
            continue
        if e["type"] == "OrderPlaced":
            o["placed_at"] = d["placed_at"]
            if d["placed_at"] != e["ts_us"] // 1000000:
                problems.append("placed_at %r is not the command's time %r"
                                % (d["placed_at"], e["ts_us"]))
        else:
            o["cancelled_at"] = d["cancelled_at"]
    for o in model.orders.values():
        if o["placed_at"] is None:
            problems.append("order %s not in the log" % o["orderId"])
        if (o["cancelled_at"] is None) != (o["status"] == "placed"):
            problems.append("order %s: status %s, cancelled_at %r" % (
                o["orderId"], o["status"], o["cancelled_at"]))
    return problems


class Checker:
    """Reads every query the model can answer at min_position=P and
    collects the differences (up to a limit)."""

    def __init__(self, client, model, position, rng):
        self.c = client
        self.m = model
        self.P = position
        self.rng = rng
        self.diffs = []
        self.queries = 0
        self.answers = {}  # path -> body without position (for snapshots)

    def get(self, path):
        sep = "&" if "?" in path else "?"
        r = self.c.get("%s%smin_position=%d&wait_ms=10000" % (path, sep,
                                                             self.P))
        self.queries += 1
        if r.status != 200:
            self.diff("GET %s: %r" % (path, r))
            return None
        body = r.json()
        pos = body.pop("position", None)
        if not isinstance(pos, int) or pos < self.P:
            self.diff("GET %s: position %r below %d" % (path, pos, self.P))
        if int(r.header("x-cleave-position") or -1) != pos:
            self.diff("GET %s: X-Cleave-Position %r, body %r" % (
                path, r.header("x-cleave-position"), pos))
        self.answers[path] = body
        return body

    def diff(self, msg):
        if len(self.diffs) < 40:
            self.diffs.append(msg)

    def eq(self, what, got, want):
        if got != want:
            self.diff("%s:\n   got  %s\n   want %s" % (
                what, json.dumps(got)[:1500], json.dumps(want)[:1500]))

    def pages(self, path, limit):
        """Every page of a cursor-paged list: items, and checks that the
        last page has next_cursor null and the others a cursor."""
        items, cursor, n = [], None, 0
        while True:
            p = "%s&limit=%d" % (path, limit)
            if cursor is not None:
                p += "&cursor=" + cursor
            body = self.get(p)
            if body is None:
                return None
            page = body["items"]
            if len(page) > limit:
                self.diff("%s: %d items over limit %d" % (p, len(page),
                                                          limit))
            items += page
            cursor = body["next_cursor"]
            n += 1
            if cursor is None:
                return items
            if not page:
                self.diff("%s: an empty page with a next_cursor" % p)
                return items
            if n > 2000:
                self.diff("%s: endless pages" % path)
                return items

    def check_all(self, search_rounds=30):
        m = self.m
        for pid in sorted(m.products):
            body = self.get("/queries/product?productId=" + pid)
            if body is not None:
                self.eq("product " + pid, body, m.card(pid))
        for oid in sorted(m.orders):
            body = self.get("/queries/order?orderId=" + oid)
            if body is not None:
                self.eq("order " + oid, body, m.order_doc(oid))
        users = sorted(m.users) + ["nobody-at-all"]
        for uid in users:
            want = m.user_orders(uid) if uid in m.users else []
            first = self.get("/queries/user_orders?userId=" + uid)
            if first is not None:
                self.eq("user_orders %s first page" % uid, first["items"],
                        want[:20])
                if (first["next_cursor"] is None) != (len(want) <= 20):
                    self.diff("user_orders %s: next_cursor %r with %d "
                              "orders" % (uid, first["next_cursor"],
                                          len(want)))
            if want:
                lim = self.rng.choice([1, 2, 3, len(want)])
                got = self.pages("/queries/user_orders?userId=" + uid, lim)
                self.eq("user_orders %s in pages of %d" % (uid, lim), got,
                        want)
        self.check_revenue()
        top = m.top()
        body = self.get("/queries/top_products")
        if body is not None:
            self.eq("top_products", body["items"], top[:10])
        for lim in (1, 3, 100):
            body = self.get("/queries/top_products?limit=%d" % lim)
            if body is not None:
                self.eq("top_products limit %d" % lim, body["items"],
                        top[:lim])
        self.check_search(search_rounds)
        return self.diffs

    def check_revenue(self):
        m = self.m
        days = [day_of(o["placed_at"]) for o in m.orders.values()]
        if not days:
            lo = hi = day_of(time.time())
        else:
            lo, hi = min(days), max(days)
        frm = day_of(calendar.timegm(time.strptime(lo, "%Y-%m-%d")) -
                     2 * 86400)
        to = day_of(calendar.timegm(time.strptime(hi, "%Y-%m-%d")) +
                    2 * 86400)
        countries = set(COUNTRIES) | {u["country"] for u in m.users.values()}
        for country in sorted(countries | {"IS"}):  # IS: no orders at all
            want = [{"day": d, "orders": n, "revenue_cents": rev}
                    for d, (n, rev) in sorted(m.revenue(country).items())]
            body = self.get("/queries/revenue_daily?country=%s&from=%s&to=%s"
                            % (country, frm, to))
            if body is not None:
                self.eq("revenue_daily %s %s..%s" % (country, frm, to),
                        body["days"], want)
            if want:
                # a one-day window
                d = want[0]["day"]
                body = self.get("/queries/revenue_daily?country=%s&from=%s"
                                "&to=%s" % (country, d, d))
                if body is not None:
                    self.eq("revenue_daily %s %s" % (country, d),
                            body["days"], want[:1])

    def search_one(self, params, limit):
        """params: q, category (str), min_price, max_price (int), in_stock
        (bool), sort (str)."""
        want = self.m.search(**params)
        qs = "&".join("%s=%s" % (k, urllib.parse.quote_plus(
            ("true" if v else "false") if isinstance(v, bool) else str(v)))
            for k, v in sorted(params.items()))
        path = "/queries/search_products?" + qs
        got = self.pages(path, limit)
        if got is None:
            return
        sort = params.get("sort") or ("relevance" if "q" in params
                                      else "price")
        if sort == "relevance" and "q" in params:
            ids = [x["productId"] for x in got]
            if len(ids) != len(set(ids)):
                self.diff("search %s: duplicates across pages" % qs)
            key = lambda x: x["productId"]  # noqa: E731
            self.eq("search %s (as a set, pages of %d)" % (qs, limit),
                    sorted(got, key=key), sorted(want, key=key))
        else:
            self.eq("search %s (pages of %d)" % (qs, limit), got, want)

    def check_search(self, rounds):
        rng = self.rng
        m = self.m
        prices = sorted(p["price"] for p in m.products.values())
        fixed = [{}, {"sort": "price"}, {"sort": "-price"}, {"sort": "sold"},
                 {"sort": "relevance"}, {"in_stock": True},
                 {"in_stock": False}, {"q": "lamp"}, {"q": "LAMP Red"},
                 {"q": "espresso machine", "sort": "price"},
                 {"q": "kitchen"}, {"q": "zzz"}, {"q": "!!"},
                 {"category": "books", "sort": "-price"},
                 {"category": "nothing"}]
        for params in fixed:
            self.search_one(params, rng.choice([1, 4, 7, 20, 100]))
        for _ in range(rounds):
            params = {}
            if rng.random() < 0.5:
                params["q"] = " ".join(rng.choice(WORDS + CATEGORIES)
                                       for _ in range(rng.randint(1, 2)))
            if rng.random() < 0.3:
                params["category"] = rng.choice(CATEGORIES)
            if prices and rng.random() < 0.3:
                params["min_price"] = rng.choice(prices)
            if prices and rng.random() < 0.3:
                params["max_price"] = rng.choice(prices)
            if rng.random() < 0.3:
                params["in_stock"] = rng.random() < 0.5
            if rng.random() < 0.8:
                params["sort"] = rng.choice(["price", "-price", "sold",
                                             "relevance"])
            self.search_one(params, rng.choice([1, 2, 5, 13, 50, 100]))


def log_checks(events, workers, head):
    """The log holds exactly the acknowledged commands, once each: every
    success at its position with its command id, nothing else; an
    Idempotency-Key on at most one event."""
    problems = []
    if [e["position"] for e in events] != list(range(1, head + 1)):
        problems.append("the log's positions are not 1..%d" % head)
    by_pos = {e["position"]: e for e in events}
    acked = {}
    for w in workers:
        for pos, cmd_id, name, key in w.successes:
            if pos in acked:
                problems.append("two answers at position %d" % pos)
            acked[pos] = (cmd_id, name, key)
    for pos, (cmd_id, name, key) in acked.items():
        e = by_pos.get(pos)
        if e is None or e["command_id"] != cmd_id or \
                e["type"] != EVENT_OF[name] or \
                e.get("idempotency_key") != key:
            problems.append("position %d: acknowledged %s %s key %s, the "
                            "log has %r" % (pos, name, cmd_id, key, e))
    extra = [e for e in events if e["position"] not in acked]
    if extra:
        problems.append("%d events no command acknowledged, e.g. %r" %
                        (len(extra), extra[0]))
    keys = [e["idempotency_key"] for e in events if "idempotency_key" in e]
    if len(keys) != len(set(keys)):
        problems.append("an Idempotency-Key had two effects")
    return problems[:20]
