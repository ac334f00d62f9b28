"""The bank's conservation of money under concurrent writers
(docs/domains.md, "Money is conserved"), over real HTTP.

Several threads run Deposits, Withdrawals and Transfers on shared accounts
at once (overdrafts refused with 422, cross-currency transfers 422, reused
transferIds 409, same-account transfers 422, unknown accounts 404), while a
reader thread keeps asking `totals`, `balance` and `statement`.

The writers' order is only known afterwards, from the log: every success
answers its position, so the model replays the successes in position order
and checks each answered balance; a refusal for funds must be explained by
some state the command could have seen — one after every command answered
before it was sent, and before any command sent after its answer.  Then:

- every `totals` answer (one snapshot) has balance = deposits -
  withdrawals, and equals the model at the position it reports — for every
  account and per currency;
- every `balance` and first statement page the reader saw equals the
  model at its position;
- at the end every balance, every statement (all pages, newest first,
  balance_after chained, nothing missing or repeated), daily_volume per
  currency and day, and totals equal the model; `cleave verify` finds no
  drift.

The seed is printed; CLEAVE_E2E_SEED overrides it, CLEAVE_E2E_SCALE the
size.  Python standard library only.
"""
import bisect
import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

SEED = ct.seed(5052026)
WRITERS = 4
OPS = ct.scaled(700, 60)  # per writer
ACCOUNTS = {"EUR": ["eur-a", "eur-b", "eur-c", "eur-d", "eur-e", "eur-f"],
            "USD": ["usd-a", "usd-b", "usd-c", "usd-d"],
            "SEK": ["sek-a", "sek-b"]}
RESERVE = ("eur-r0", "eur-r1")  # only the duplicate-transferId race
ABSURD = 10 ** 12  # more than any balance here: always an overdraft


def day_of(unix_s):
    return time.strftime("%Y-%m-%d", time.gmtime(unix_s))


class Clock:
    """A global order of sends and answers across threads."""

    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def tick(self):
        with self.lock:
            self.n += 1
            return self.n


class Op:
    __slots__ = ("name", "body", "sent", "recv", "status", "code", "ans",
                 "expect")

    def __init__(self, name, body, expect=None):
        self.name, self.body, self.expect = name, body, expect
        self.sent = self.recv = self.status = self.code = self.ans = None


class BankConservation(unittest.TestCase):
    def setUp(self):
        self.srv = ct.Server("--domain", "bank", name="bank").start()
        self.ok = False
        self.clock = Clock()
        self.ops = []
        self.lock = threading.Lock()

    def tearDown(self):
        if self.srv.proc:
            self.srv.stop(expect=0 if self.ok else None)
        if self.ok:
            self.srv.cleanup()
        else:
            print("server data and log kept in %s" % self.srv.data)

    # ---- running commands -------------------------------------------------

    def run_op(self, c, op):
        op.sent = self.clock.tick()
        r = c.command(op.name, op.body)
        op.recv = self.clock.tick()
        op.status = r.status
        if r.status == 200:
            op.ans = r.json()
        else:
            op.code = ct.check_error(r, r.status)["code"]
        with self.lock:
            self.ops.append(op)
        return op

    def writer(self, idx, errors):
        rng = random.Random(SEED * 10 + idx)
        c = ct.Client(self.srv.port, timeout=60)
        mine_ok = []  # transferIds of this writer that succeeded
        cur_of = {a: cur for cur, accts in ACCOUNTS.items() for a in accts}
        every = [a for accts in ACCOUNTS.values() for a in accts]
        try:
            for n in range(OPS):
                r = rng.random()
                acct = rng.choice(every)
                cur = cur_of[acct]
                if r < 0.28:
                    op = Op("Deposit", {"accountId": acct,
                                        "amount_cents": rng.randint(1, 5000)})
                elif r < 0.52:
                    op = Op("Withdraw", {"accountId": acct, "amount_cents":
                                         rng.randint(1, 7000)})
                elif r < 0.88:
                    to = rng.choice([a for a in ACCOUNTS[cur] if a != acct])
                    op = Op("Transfer", {"transferId": "w%d-t%d" % (idx, n),
                                         "from": acct, "to": to,
                                         "amount_cents": rng.randint(1,
                                                                     9000)})
                elif r < 0.91:
                    other = rng.choice([a for a in every
                                        if cur_of[a] != cur])
                    op = Op("Transfer", {"transferId": "w%d-x%d" % (idx, n),
                                         "from": acct, "to": other,
                                         "amount_cents": rng.randint(1, 50)},
                            (422, "currency_mismatch"))
                elif r < 0.93:
                    op = Op("Withdraw", {"accountId": acct,
                                         "amount_cents": ABSURD},
                            (422, "insufficient_funds"))
                elif r < 0.95:
                    to = rng.choice([a for a in ACCOUNTS[cur] if a != acct])
                    op = Op("Transfer", {"transferId": "w%d-o%d" % (idx, n),
                                         "from": acct, "to": to,
                                         "amount_cents": ABSURD},
                            (422, "insufficient_funds"))
                elif r < 0.97 and mine_ok:
                    op = Op("Transfer", {"transferId": rng.choice(mine_ok),
                                         "from": acct, "to": rng.choice(
                                             every), "amount_cents": 1},
                            (409, "transfer_exists"))
                elif r < 0.98:
                    op = Op("Transfer", {"transferId": "w%d-s%d" % (idx, n),
                                         "from": acct, "to": acct,
                                         "amount_cents": 1},
                            (422, "same_account"))
                else:
                    op = Op(rng.choice(["Deposit", "Withdraw"]),
                            {"accountId": "nobody-%d" % n,
                             "amount_cents": 5}, (404, "account_not_found"))
                self.run_op(c, op)
                if op.status == 200 and op.name == "Transfer":
                    mine_ok.append(op.body["transferId"])
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append("writer %d: %r" % (idx, e))
        finally:
            c.close()

    def reader(self, stop, seen, errors):
        """Reads while the writers write; keeps (query, answer)."""
        rng = random.Random(SEED + 99)
        c = ct.Client(self.srv.port, timeout=60)
        every = [a for accts in ACCOUNTS.values() for a in accts]
        try:
            while not stop.is_set():
                r = rng.random()
                if r < 0.4:
                    cur = rng.choice([None, "EUR", "USD", "SEK"])
                    path = "/queries/totals" + ("?currency=" + cur
                                                if cur else "")
                elif r < 0.7:
                    path = "/queries/balance?accountId=" + rng.choice(every)
                else:
                    path = "/queries/statement?accountId=%s&limit=%d" % (
                        rng.choice(every), rng.choice([1, 5, 20, 100]))
                resp = c.get(path)
                if resp.status != 200:
                    errors.append("GET %s: %r" % (path, resp))
                    return
                body = resp.json()
                if body["position"] != int(resp.header("x-cleave-position")):
                    errors.append("position header %r" % resp)
                if path.startswith("/queries/totals") and \
                        body["balance_cents"] != body["deposits_cents"] - \
                        body["withdrawals_cents"]:
                    errors.append("totals not conserved in one answer: %r"
                                  % body)
                seen.append((path, body))
                time.sleep(0.002)  # leave the writers most of the GIL
        except Exception as e:  # noqa: BLE001
            errors.append("reader: %r" % e)
        finally:
            c.close()

    # ---- the test ----------------------------------------------------------

    def test_conservation_under_concurrent_transfers(self):
        t0 = time.time()
        c = self.srv.client()
        setup = []
        for cur, accts in ACCOUNTS.items():
            for a in accts + (list(RESERVE) if cur == "EUR" else []):
                setup.append(self.run_op(c, Op("OpenAccount", {
                    "accountId": a, "owner": "owner of " + a,
                    "currency": cur})))
        for a in [a for accts in ACCOUNTS.values() for a in accts]:
            setup.append(self.run_op(c, Op("Deposit", {"accountId": a,
                                                       "amount_cents":
                                                       20000})))
        setup.append(self.run_op(c, Op("Deposit", {"accountId": RESERVE[0],
                                                   "amount_cents": 10 ** 6})))
        for op in setup:
            self.assertEqual(op.status, 200, op.ans or op.code)

        errors, seen = [], []
        stop = threading.Event()
        rd = threading.Thread(target=self.reader, args=(stop, seen, errors))
        rd.start()
        ws = [threading.Thread(target=self.writer, args=(i, errors))
              for i in range(WRITERS)]
        for w in ws:
            w.start()
        dup_results = self.duplicate_race()
        for w in ws:
            w.join(600)
        stop.set()
        rd.join(60)
        self.assertFalse(errors, "\n".join(errors[:10]))
        t1 = time.time()

        # every racing group of one transferId: one 200, the rest 409
        for tid, statuses in dup_results.items():
            self.assertEqual(sorted(statuses), [200] + [409] *
                             (len(statuses) - 1), tid)

        head = c.get("/health").json()["head"]
        events = ct.all_events(c)
        self.assertEqual(len(events), head)
        model = self.replay(events, head)
        self.check_refusals(model)
        self.check_reads(model, seen)
        self.check_final(c, model, head)
        t2 = time.time()

        self.srv.stop()
        rc, out, err = ct.run_cli("verify", "--data", self.srv.data,
                                  "--domain", "bank")
        self.assertEqual(rc, 0, "cleave verify: %s%s" % (out, err))
        self.assertIn('"result":"ok"', out.replace(" ", ""))
        counts = {}
        for op in self.ops:
            k = "%s %s %s" % (op.name, op.status, op.code or "")
            counts[k] = counts.get(k, 0) + 1
        for what in ("Transfer 200", "Transfer 422 insufficient_funds",
                     "Withdraw 422 insufficient_funds",
                     "Transfer 422 currency_mismatch",
                     "Transfer 409 transfer_exists", "Withdraw 200"):
            self.assertTrue(any(k.startswith(what) for k in counts),
                            "never happened: %s (%r)" % (what, counts))
        print("\nseed %d: %d commands from %d writers in %.1f s, %d "
              "concurrent reads checked at their positions, final checks "
              "%.1f s" % (SEED, len(self.ops), WRITERS, t1 - t0, len(seen),
                          t2 - t1))
        for k in sorted(counts):
            print("  %-45s %d" % (k, counts[k]))
        self.ok = True

    def duplicate_race(self):
        """Groups of threads send the same new transferId at once."""
        out = {}
        for g in range(ct.scaled(12, 3)):
            tid = "dup-%d" % g
            barrier = threading.Barrier(6)
            statuses = []

            def go():
                cc = ct.Client(self.srv.port, timeout=60)
                barrier.wait()
                op = self.run_op(cc, Op("Transfer", {
                    "transferId": tid, "from": RESERVE[0], "to": RESERVE[1],
                    "amount_cents": 1}, "race"))
                statuses.append(op.status)
                if op.status == 409:
                    assert op.code == "transfer_exists", op.code
                cc.close()

            ts = [threading.Thread(target=go) for _ in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            out[tid] = statuses
        return out

    # ---- the model: the log's order ----------------------------------------

    def replay(self, events, head):
        """Applies the successes in position order; checks each answer
        and that the log holds exactly them.  Returns the model."""
        by_pos = {}
        for op in self.ops:
            if op.status == 200:
                p = op.ans["position"]
                self.assertNotIn(p, by_pos, "two answers at position %d" % p)
                self.assertEqual(len(op.ans["events"]), 1)
                by_pos[p] = op
        self.assertEqual(sorted(by_pos), list(range(1, head + 1)),
                         "the log is not exactly the acknowledged commands")
        m = {"bal": {}, "cur": {}, "owner": {}, "hist": {}, "entries": {},
             "totals": {}, "volume": {}, "timeline": []}
        kinds = {"OpenAccount": "AccountOpened", "Deposit": "Deposited",
                 "Withdraw": "Withdrawn", "Transfer": "TransferCompleted"}

        def tot(cur, accounts=0, bal=0, dep=0, wd=0):
            for k in ("*", cur):
                t = m["totals"].setdefault(k, [0, 0, 0, 0])
                t[0] += accounts
                t[1] += bal
                t[2] += dep
                t[3] += wd

        def setbal(a, v, p):
            self.assertGreaterEqual(v, 0, "account %s below zero at %d" %
                                    (a, p))
            m["bal"][a] = v
            m["hist"].setdefault(a, ([], []))
            m["hist"][a][0].append(p)
            m["hist"][a][1].append(v)

        for e in events:
            p = e["position"]
            op = by_pos[p]
            b, res = op.body, op.ans["result"]
            self.assertEqual(e["type"], kinds[op.name])
            self.assertEqual(e["command_id"], op.ans["command_id"])
            if op.name == "OpenAccount":
                a = b["accountId"]
                m["cur"][a], m["owner"][a] = b["currency"], b["owner"]
                setbal(a, 0, p)
                m["entries"][a] = [{"position": p, "kind": "open",
                                    "amount_cents": 0,
                                    "balance_after_cents": 0}]
                tot(b["currency"], accounts=1)
            elif op.name in ("Deposit", "Withdraw"):
                a, amt = b["accountId"], b["amount_cents"]
                sign = 1 if op.name == "Deposit" else -1
                new = m["bal"][a] + sign * amt
                setbal(a, new, p)
                self.assertEqual(res["balance_cents"], new,
                                 "%s at %d answered a balance the log order "
                                 "does not give" % (op.name, p))
                m["entries"][a].append({
                    "position": p, "kind": "deposit" if sign > 0 else
                    "withdrawal", "amount_cents": sign * amt,
                    "balance_after_cents": new})
                if sign > 0:
                    tot(m["cur"][a], bal=amt, dep=amt)
                else:
                    tot(m["cur"][a], bal=-amt, wd=amt)
            else:
                f, t, amt = b["from"], b["to"], b["amount_cents"]
                self.assertEqual(m["cur"][f], m["cur"][t])
                setbal(f, m["bal"][f] - amt, p)
                setbal(t, m["bal"][t] + amt, p)
                self.assertEqual((res["from_balance_cents"],
                                  res["to_balance_cents"]),
                                 (m["bal"][f], m["bal"][t]),
                                 "transfer at %d" % p)
                tid = b["transferId"]
                m["entries"][f].append({
                    "position": p, "kind": "transfer_out",
                    "amount_cents": -amt,
                    "balance_after_cents": m["bal"][f], "transferId": tid,
                    "counterparty": t})
                m["entries"][t].append({
                    "position": p, "kind": "transfer_in",
                    "amount_cents": amt, "balance_after_cents": m["bal"][t],
                    "transferId": tid, "counterparty": f})
                at = e["data"]["at"]
                self.assertEqual(at, e["ts_us"] // 1000000)
                k = (m["cur"][f], day_of(at))
                v = m["volume"].setdefault(k, [0, 0])
                v[0] += 1
                v[1] += amt
            # conservation at every position of the log
            for k, t in m["totals"].items():
                self.assertEqual(t[1], t[2] - t[3], "position %d, %s" %
                                 (p, k))
            self.assertEqual(sum(m["bal"].values()), m["totals"]["*"][1])
            m["timeline"].append({k: list(v) for k, v in
                                  m["totals"].items()})
        return m

    def balance_at(self, m, acct, pos):
        """The account's balance after the log prefix ending at pos."""
        ps, vs = m["hist"][acct]
        i = bisect.bisect_right(ps, pos) - 1
        return vs[i] if i >= 0 else None

    def min_balance(self, m, acct, lo, hi):
        """The lowest balance over the prefixes lo..hi-1."""
        ps, vs = m["hist"][acct]
        vals = [self.balance_at(m, acct, lo)]
        i = bisect.bisect_right(ps, lo)
        while i < len(ps) and ps[i] < hi:
            vals.append(vs[i])
            i += 1
        return min(v for v in vals if v is not None)

    def check_refusals(self, m):
        """Deterministic refusals have their code; a refusal for funds was
        possible in some state the command could have seen."""
        done = sorted((op.recv, op.ans["position"]) for op in self.ops
                      if op.status == 200)
        sent = sorted((op.sent, op.ans["position"]) for op in self.ops
                      if op.status == 200)
        recv_ticks = [r for r, _ in done]
        prefix_max = []
        mx = 0
        for _, p in done:
            mx = max(mx, p)
            prefix_max.append(mx)
        sent_ticks = [s for s, _ in sent]
        suffix_min = [0] * len(sent)
        mn = 1 << 62
        for i in range(len(sent) - 1, -1, -1):
            mn = min(mn, sent[i][1])
            suffix_min[i] = mn
        checked = 0
        for op in self.ops:
            if op.expect == "race":
                continue  # checked by its group: one 200, the rest 409
            if op.expect:
                self.assertEqual((op.status, op.code), op.expect,
                                 "%s %r" % (op.name, op.body))
                continue
            if op.status == 200:
                continue
            self.assertEqual((op.status, op.code),
                             (422, "insufficient_funds"),
                             "%s %r" % (op.name, op.body))
            i = bisect.bisect_left(recv_ticks, op.sent) - 1
            lo = prefix_max[i] if i >= 0 else 0
            j = bisect.bisect_right(sent_ticks, op.recv)
            hi = suffix_min[j] if j < len(sent) else (1 << 62)
            acct = op.body.get("accountId") or op.body["from"]
            low = self.min_balance(m, acct, lo, hi)
            self.assertLess(low, op.body["amount_cents"],
                            "%s %r refused for funds, but %s held at least "
                            "%d at every position (%d..%d) it could have "
                            "seen" % (op.name, op.body, acct, low, lo, hi))
            checked += 1
        self.assertGreater(checked, 0)

    def check_reads(self, m, seen):
        """Every concurrent read equals the model at its position."""
        for path, body in seen:
            p = body.pop("position")
            if path.startswith("/queries/totals"):
                cur = path.partition("currency=")[2] or "*"
                t = m["timeline"][p - 1].get(cur, [0, 0, 0, 0]) if p else \
                    [0, 0, 0, 0]
                want = {"accounts": t[0], "balance_cents": t[1],
                        "deposits_cents": t[2], "withdrawals_cents": t[3]}
                if cur != "*":
                    want["currency"] = cur
                self.assertEqual(body, want, "totals at position %d" % p)
            elif path.startswith("/queries/balance"):
                a = path.partition("accountId=")[2]
                self.assertEqual(body, {
                    "accountId": a, "owner": m["owner"][a],
                    "currency": m["cur"][a],
                    "balance_cents": self.balance_at(m, a, p)},
                    "balance at position %d" % p)
            else:
                a = path.split("accountId=")[1].split("&")[0]
                limit = int(path.split("limit=")[1])
                want = [x for x in m["entries"][a] if x["position"] <= p]
                want = want[::-1]
                self.assertEqual(body["items"], want[:limit],
                                 "statement %s at position %d" % (a, p))
                self.assertEqual(body["next_cursor"] is None,
                                 len(want) <= limit)

    def check_final(self, c, m, head):
        rng = random.Random(SEED + 3)
        q = "&min_position=%d" % head
        for a in m["bal"]:
            r = c.get("/queries/balance?accountId=" + a + q)
            body = r.json()
            body.pop("position")
            self.assertEqual(body, {"accountId": a, "owner": m["owner"][a],
                                    "currency": m["cur"][a],
                                    "balance_cents": m["bal"][a]})
            # the statement, in pages
            limit = rng.choice([1, 3, 7, 20, 100])
            items, cursor, pages = [], None, 0
            while True:
                path = "/queries/statement?accountId=%s&limit=%d%s" % (
                    a, limit, q)
                if cursor:
                    path += "&cursor=" + cursor
                r = c.get(path)
                self.assertEqual(r.status, 200, r)
                body = r.json()
                self.assertLessEqual(len(body["items"]), limit)
                items += body["items"]
                cursor = body["next_cursor"]
                pages += 1
                if cursor is None:
                    break
                self.assertTrue(body["items"], "empty page with a cursor")
            self.assertEqual(items, m["entries"][a][::-1],
                             "statement of %s in pages of %d" % (a, limit))
            # consistent on its own: newest first, balance_after chained
            poss = [x["position"] for x in items]
            self.assertEqual(poss, sorted(poss, reverse=True))
            self.assertEqual(len(set(poss)), len(poss))
            for newer, older in zip(items, items[1:]):
                self.assertEqual(newer["balance_after_cents"],
                                 older["balance_after_cents"] +
                                 newer["amount_cents"])
            self.assertEqual((items[-1]["kind"], items[-1]["amount_cents"],
                              items[-1]["balance_after_cents"]),
                             ("open", 0, 0))
            self.assertEqual(items[0]["balance_after_cents"], m["bal"][a])
        for cur in ("*", "EUR", "USD", "SEK", "JPY"):
            path = "/queries/totals?%smin_position=%d" % (
                "currency=%s&" % cur if cur != "*" else "", head)
            body = c.get(path).json()
            body.pop("position")
            body.pop("currency", None)
            t = m["totals"].get(cur, [0, 0, 0, 0])
            self.assertEqual(body, {"accounts": t[0], "balance_cents": t[1],
                                    "deposits_cents": t[2],
                                    "withdrawals_cents": t[3]}, cur)
        self.assertEqual(sum(m["bal"].values()), m["totals"]["*"][1])
        days = {d for _, d in m["volume"]} | {"2001-02-03"}
        for cur in ("EUR", "USD", "SEK", "JPY"):
            for d in sorted(days):
                body = c.get("/queries/daily_volume?currency=%s&day=%s%s" %
                             (cur, d, q)).json()
                v = m["volume"].get((cur, d), [0, 0])
                self.assertEqual((body["currency"], body["day"],
                                  body["transfers"], body["volume_cents"]),
                                 (cur, d, v[0], v[1]))


if __name__ == "__main__":
    ct.main(SEED)
