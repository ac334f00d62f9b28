"""The README's walk through the shop, run as written.

The fenced ```sh blocks under "A walk through the shop" are extracted from
README.md and every command in them is run with bash, H pointing at a fresh
test server (and ./cleave-data being that server's data directory, so the
operator commands of the second block see it too).  Each answer is checked
against what the README says about it:

- a `# → …` comment under a command is the expected output; `…` stands for
  any text, everything else must match exactly;
- the prose comments are claims too: the Idempotency-Key makes a retry safe
  (same answer, one order), `min_position` reads the writes back, bad input
  writes nothing, what a web page could send (a form, as `curl -d` sends
  it; another Origin; another Host) is refused and writes nothing, the
  operations commands show the projections, the log, a rebuild and
  metrics;
- commands send their JSON with `curl --json`: a `curl -d` (a form body)
  must be one of the refused examples;
- commands without a `# →` are checked against the state the walk-through
  built (the order, the card, the user's orders, search, revenue, the
  leaderboard).

If the README changes, this test runs the new text: a wrong README fails
it.  Python standard library only (plus curl, which the README uses).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

README = os.environ.get("CLEAVE_README") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
SECTION = "## A walk through the shop"


# ---- reading the README ----------------------------------------------------

def sh_blocks(text):
    """The ```sh blocks of the walk-through section, as lists of lines."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end > 0 else len(text)]
    return [m.group(1).split("\n") for m in
            re.finditer(r"```sh\n(.*?)\n```", section, re.S)]


def split_commands(lines):
    """Shell commands (quotes may span lines, a trailing backslash
    continues one) with the `# →` expectation that follows each, and the
    prose comment before it (its lines joined).  Returns [(command,
    expected or None, comment)]."""
    out = []
    cur, quote = [], None
    comment = ""
    in_comment = False  # the previous line was a line of prose comment
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not cur and not line.strip():
            comment = ""
            in_comment = False
            continue
        if not cur and line.lstrip().startswith("#"):
            body = line.strip()[1:].strip()
            if body.startswith("→") and out:
                exp = [body[1:].strip()]
                while (i < len(lines) and lines[i].lstrip().startswith("#")
                       and not lines[i].strip()[1:].strip().startswith("→")):
                    exp.append(lines[i].strip()[1:].strip())
                    i += 1
                cmd, prev, why = out[-1]
                out[-1] = (cmd, (prev or "") + "".join(exp), why)
                in_comment = False
            else:
                comment = comment + " " + body if in_comment else body
                in_comment = True
            continue
        in_comment = False
        cur.append(line)
        j = 0
        while j < len(line):
            ch = line[j]
            if quote is None and ch == "#" and (j == 0 or line[j - 1]
                                                in " \t"):
                break  # a trailing comment
            if quote is None and ch in "'\"":
                quote = ch
            elif quote == ch:
                quote = None
            elif ch == "\\" and quote != "'":
                j += 1
            j += 1
        if quote is None and not line.rstrip().endswith("\\"):
            out.append(("\n".join(cur), None, comment))
            cur = []
    if cur:
        raise AssertionError("unterminated command in the README: %r" % cur)
    return out


def pattern(expected):
    """A regex for an expected output: `…` is any text."""
    return re.compile(".*?".join(re.escape(p) for p in expected.split("…")),
                      re.S)


def strip_position(doc):
    return {k: v for k, v in doc.items() if k != "position"}


class Readme(unittest.TestCase):
    def setUp(self):
        self.tmp = ct.tmpdir("readme")
        self.srv = ct.Server(data=os.path.join(self.tmp, "cleave-data"),
                             name="readme")
        self.ok = False
        self.srv.start()
        self.addCleanup(self.finish)  # runs even when setUp fails
        self.c = self.srv.client()
        self.H = "http://127.0.0.1:%d" % self.srv.port
        with open(README, encoding="utf-8") as f:
            self.blocks = sh_blocks(f.read())

    def finish(self):
        self.srv.stop(expect=0 if self.ok else None)
        if self.ok:
            self.srv.cleanup()
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print("server data and log kept in %s" % self.tmp)

    def bash(self, cmd):
        env = ct.clean_env({"H": self.H})
        # no pipefail: `curl … | head` may see SIGPIPE, as in a terminal
        p = subprocess.run(["bash", "-c", cmd],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, cwd=self.tmp, timeout=120)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def head(self):
        return self.c.get("/health").json()["head"]

    # ---- the walk-through ------------------------------------------------

    def test_walk_through(self):
        self.assertGreaterEqual(len(self.blocks), 1, "no ```sh block under "
                                "%r in README.md" % SECTION)
        cmds = split_commands(self.blocks[0])
        # the first line points H at the server: ours instead
        self.assertTrue(cmds[0][0].startswith("H="), cmds[0])
        ran = []
        state = {}
        for cmd, expected, comment in cmds[1:]:
            head_before = self.head()
            rc, out, err = self.bash(cmd)
            ran.append(cmd)
            with self.subTest(cmd=cmd, check="the README's output"):
                self.assertEqual(rc, 0, "exit %d: %s\n%s" % (rc, cmd, err))
                self.assertTrue(out.strip(), "no output: " + cmd)
                if expected is not None:
                    self.assertTrue(pattern(expected).fullmatch(
                        out.strip()), "\nthe README says\n  %s\ngives\n"
                        "  %s\nbut it gives\n  %s" % (cmd, expected,
                                                      out.strip()))
            with self.subTest(cmd=cmd, check="the README's claims"):
                self.check_answer(cmd, out, comment, head_before, state)
        # every kind of command of the walk-through was there and checked
        for what in ("RegisterUser", "AddProduct", "CreatePromo",
                     "AddToCart", "Checkout", "queries/order",
                     "queries/product", "user_orders", "search_products",
                     "revenue_daily", "top_products", "/projections",
                     "/events", "rebuild", "/metrics"):
            self.assertTrue(any(what in c for c in ran),
                            "the walk-through no longer runs " + what)
        self.assertIn("checkout", state)
        self.assertIn("bad_input", state, "no bad-input example was run")
        self.assertEqual(state.get("browser"), {
            "unsupported_media_type", "forbidden_origin", "forbidden_host"},
            "the browser-safety examples")
        self.operator_block(state)
        self.ok = True

    def check_answer(self, cmd, out, comment, head_before, state):
        """What the README's text claims about each command."""
        if re.search(r"\s-d\s|--data|Origin:|Host:", cmd):
            # "what a web page in your browser could send is refused
            # before routing, nothing written"
            self.assertIn("web page", comment, cmd)
            body = json.loads(out)
            self.assertEqual(set(body), {"error"}, out)
            code = body["error"]["code"]
            self.assertIn(code, ("unsupported_media_type",
                                 "forbidden_origin", "forbidden_host"), out)
            self.assertEqual(self.head(), head_before,
                             "a refused request wrote something")
            state.setdefault("browser", set()).add(code)
            return
        if "/commands/" in cmd:
            self.assertIn("--json", cmd, "a command without curl --json: "
                          + cmd)
            body = json.loads(out)
            name = re.search(r"/commands/(\w+)", cmd).group(1)
            if "error" in body:
                # "bad input is refused with a clear error, and writes
                # nothing"
                self.assertIn("bad input", comment, "a README command "
                              "failed: %s\n%s" % (cmd, out))
                self.assertEqual(set(body), {"error"})
                self.assertEqual(set(body["error"]), {"code", "message"})
                self.assertEqual(self.head(), head_before,
                                 "the bad input wrote something")
                r = self.c.get("/health")
                self.assertEqual(r.json()["status"], "ok")
                state["bad_input"] = True
                return
            self.assertEqual(body["position"], head_before + 1, out)
            self.assertEqual(body["events"][-1]["position"],
                             body["position"],
                             "a command's answer carries the position of "
                             "its last event")
            for k in ("position", "events", "result", "trace_id",
                      "command_id"):
                self.assertIn(k, body)
            if name == "Checkout":
                state["checkout"] = body
                self.check_checkout(cmd, out, body, state)
            state.setdefault("commands", []).append(body)
            return
        m = re.search(r"/queries/(\w+)\?([^\"' ]*)", cmd)
        if m:
            self.check_query(m.group(1), out, state)
            return
        if "/rebuild" in cmd:
            body = json.loads(out)
            name = re.search(r"/projections/(\w+)/rebuild", cmd).group(1)
            self.assertEqual(body["rebuilding"], name, out)
            self.assertEqual(body["projection"]["name"], name)
            # the rebuild finishes, and serves the same answer
            ct.wait_caught_up(self.c)
            if name == "catalog" and "card" in state:
                r = self.c.get("/queries/product?productId=p1")
                self.assertEqual(strip_position(r.json()), state["card"])
            return
        if "/projections" in cmd:
            body = json.loads(out)
            names = {p["name"] for p in body["projections"]}
            self.assertEqual(names, {"catalog", "search", "orders",
                                     "revenue", "bestsellers"})
            for p in body["projections"]:
                # "position, lag, state of every read model"
                for k in ("position", "lag_events", "lag_seconds", "state"):
                    self.assertIn(k, p)
                self.assertEqual(p["state"], "live", p)
            self.assertEqual(body["head"], self.head())
            return
        if "/events" in cmd:
            body = json.loads(out)
            lim = re.search(r"limit=(\d+)", cmd)
            evs = body["events"]
            self.assertEqual([e["position"] for e in evs],
                             list(range(1, min(self.head(),
                                               int(lim.group(1)) if lim
                                               else 100) + 1)))
            self.assertEqual([e["type"] for e in evs[:5]],
                             ["UserRegistered", "ProductAdded",
                              "PromoCreated", "ItemAddedToCart",
                              "OrderPlaced"])
            self.assertEqual(evs[4]["idempotency_key"], "checkout-c1")
            return
        if "/metrics" in cmd:
            lines = out.splitlines()
            if "| head" in cmd:
                self.assertEqual(len(lines), 10)
            self.assertTrue(lines[0].startswith("# HELP "), out)
            for ln in lines:
                self.assertTrue(ln.startswith("# HELP ") or
                                ln.startswith("# TYPE ") or
                                re.match(r"^[a-z_]+(\{.*\})? \S+$", ln), ln)
            return
        self.fail("a README command this test does not know how to "
                  "check: " + cmd)

    def check_checkout(self, cmd, out, body, state):
        """"the Idempotency-Key makes a retry safe (same answer, one
        order)": run the same curl again."""
        self.assertEqual(body["events"][0]["type"], "OrderPlaced")
        res = body["result"]
        # the README's numbers follow from its commands: 2 x 19900, 10 %
        self.assertEqual(res["subtotal_cents"], 2 * 19900)
        self.assertEqual(res["discount_cents"], 2 * 19900 * 10 // 100)
        self.assertEqual(res["total_cents"],
                         res["subtotal_cents"] - res["discount_cents"])
        self.assertIn("Idempotency-Key", cmd)
        head = self.head()
        rc, again, err = self.bash(cmd)
        self.assertEqual(rc, 0, err)
        self.assertEqual(again, out, "a retry with the same "
                         "Idempotency-Key answered differently")
        self.assertEqual(self.head(), head, "the retry wrote something")
        r = self.c.get("/queries/user_orders?userId=u1&min_position=%d" %
                       head)
        self.assertEqual(len(r.json()["items"]), 1, "two orders")

    def check_query(self, name, out, state):
        body = json.loads(out)
        self.assertNotIn("error", body, "a README query failed: " + out)
        pos = body["position"]
        self.assertIsInstance(pos, int)
        chk = state.get("checkout")
        self.assertIsNotNone(chk, "a query before the checkout")
        order_id = chk["result"]["orderId"]
        self.assertEqual(order_id, "o-00000001")
        if name == "order":
            self.assertGreaterEqual(pos, chk["position"])
            self.assertEqual(body["orderId"], order_id)
            self.assertEqual(body["userId"], "u1")
            self.assertEqual(body["status"], "placed")
            self.assertEqual(body["country"], "SE")
            self.assertEqual(body["promoCode"], "WELCOME10")
            self.assertEqual([(ln["productId"], ln["quantity"],
                               ln["price_cents"]) for ln in body["lines"]],
                             [("p1", 2, 19900)])
            for k in ("subtotal_cents", "discount_cents", "total_cents"):
                self.assertEqual(body[k], chk["result"][k])
            state["placed_at"] = body["placed_at"]
        elif name == "product":
            self.assertGreaterEqual(pos, chk["position"])
            # 5 in stock, 2 ordered
            self.assertEqual((body["stock"], body["sold"],
                              body["in_stock"]), (3, 2, True))
            state["card"] = strip_position(body)
        elif name == "user_orders":
            self.assertEqual(body["items"], [
                {"orderId": order_id, "status": "placed",
                 "total_cents": chk["result"]["total_cents"],
                 "placed_at": state["placed_at"]}])
            self.assertIsNone(body["next_cursor"])
        elif name == "search_products":
            self.assertEqual([strip_position(i) for i in body["items"]],
                             [state["card"]])
        elif name == "revenue_daily":
            # the README asks for 2026; the order is on today's UTC date
            day = time.strftime("%Y-%m-%d", time.gmtime(state["placed_at"]))
            want = [{"day": day, "orders": 1,
                     "revenue_cents": chk["result"]["total_cents"]}]
            if not day.startswith("2026-"):
                want = []
                print("note: the README's revenue_daily example asks for "
                      "2026, today is %s: an empty answer" % day)
            self.assertEqual(body["days"], want)
        elif name == "top_products":
            self.assertEqual(body["items"], [
                {"productId": "p1", "name": "Espresso machine", "sold": 2}])
        else:
            self.fail("a README query this test does not check: " + name)
        r = self.c.get("/queries/%s?%s" % (name, "productId=p1"
                                           if name == "product" else
                                           "limit=10"))
        if r.status == 200:
            # "Every query answer states the log position it reflects"
            self.assertEqual(int(r.header("x-cleave-position")),
                             r.json()["position"])

    def operator_block(self, state):
        """The second block: the operator's tools on ./cleave-data."""
        self.assertGreaterEqual(len(self.blocks), 2,
                                "the operator tools block is gone")
        cmds = split_commands(self.blocks[1])
        self.assertTrue(cmds)
        binary = os.path.abspath(ct.BIN)
        seen = set()
        for cmd, expected, _ in cmds:
            self.assertTrue(cmd.startswith("build/cleave "), cmd)
            run = binary + cmd[len("build/cleave"):]
            run = run.replace("<trace-or-command-id>",
                              state["checkout"]["trace_id"])
            if "| jq" in run and not shutil.which("jq"):
                run = run.split("|")[0]  # no jq here: the JSON lines
            rc, out, err = self.bash(run)
            with self.subTest(cmd=cmd):
                self.assertEqual(rc, 0, "%s: exit %d\n%s%s" % (cmd, rc, out,
                                                               err))
                sub = cmd.split()[1]
                seen.add(sub)
                if expected is not None:
                    self.assertTrue(pattern(expected).fullmatch(
                        out.strip()), (cmd, expected, out))
                if sub == "status":
                    rows = [json.loads(x) for x in out.splitlines()]
                    self.assertEqual(len(rows), 5)
                    self.assertTrue(all(r["state"] == "live" for r in rows))
                elif sub == "verify":
                    rows = [json.loads(x) for x in out.splitlines()]
                    self.assertEqual([(r["projection"], r["result"])
                                      for r in rows if "result" in r],
                                     [("catalog", "ok")])
                elif sub == "events":
                    text = out if "| jq" not in cmd else out
                    self.assertIn("OrderPlaced", text)
                    self.assertIn("checkout-c1", text)
                elif sub == "trace":
                    t = json.loads(out.splitlines()[0])
                    self.assertEqual(t["command_id"],
                                     state["checkout"]["command_id"])
                    self.assertEqual(t["events"][0]["type"], "OrderPlaced")
        self.assertEqual(seen, {"status", "verify", "events", "trace"})


class ReadmeParser(unittest.TestCase):
    """The extraction itself, on a known text (so a README edit cannot
    silently make the walk-through empty)."""

    def test_split(self):
        lines = ["H=x", "", "# say", "curl --json '{\"a\":",
                 "   1}'", "# → {\"a\":…,", "#    \"b\":2}",
                 "curl a \\", "  b", "", "# prose", "# more", "curl c | head"]
        cmds = split_commands(lines)
        self.assertEqual(cmds, [
            ("H=x", None, ""),
            ("curl --json '{\"a\":\n   1}'", "{\"a\":…,\"b\":2}", "say"),
            ("curl a \\\n  b", None, "say"),
            ("curl c | head", None, "prose more")])
        self.assertTrue(pattern("{\"a\":…,\"b\":2}").fullmatch(
            "{\"a\":[1,2],\"b\":2}"))
        self.assertFalse(pattern("{\"a\":…,\"b\":2}").fullmatch(
            "{\"a\":1,\"b\":3}"))


if __name__ == "__main__":
    ct.main()
