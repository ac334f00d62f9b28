"""Every bad input of docs/http-api.md ("Bad input"), against every command
and query of the shop and the bank (docs/domains.md), over real HTTP.

Each bad request must get the exact 4xx of docs/http-api.md with the error
JSON {"error": {"code", "message"}} (field errors name the field), must write
nothing (the log head of GET /health is unchanged after it), and the server
must stay healthy (no 5xx, no error log line, /health ok at the end).  At
the end the good request that every bad one was derived from is sent and
succeeds — so each refusal was caused by the one thing that was changed.

Inputs: malformed and truncated JSON (every prefix of a good body), bodies
that are not objects, wrong types for each field, missing required fields,
unknown and duplicate fields, negative / zero / absurd numbers (1e300,
2^53, 2^53+1, 10^30, inf, each limit + 1), over-long strings (ids of 65
bytes, names of 201 bytes), bad UTF-8 and NUL bytes in strings and in
query parameters, invalid ISO codes, bad dates, limits out of range, bad
cursors, unknown routes, commands and queries, wrong methods, bad percent
escapes, over-long paths, oversized bodies, bad headers.

Findings about framing errors that libmicrohttpd answers by itself are
kept in ProtocolErrors as expected failures (see their comments).
Python standard library only.
"""
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

MAX_BODY = 1 << 20
FAR_FUTURE = 4102444800  # 2100-01-01

# (field, kind, limit, required): kind is id / text / iso2 / iso3 (a
# string of at most `limit` bytes) or int (limit = (min, max)).
SHOP_COMMANDS = {
    "RegisterUser": [("userId", "id", 64, True), ("name", "text", 200, True),
                     ("country", "iso2", 2, True)],
    "AddProduct": [("productId", "id", 64, True),
                   ("name", "text", 200, True),
                   ("category", "text", 100, True),
                   ("price_cents", "int", (1, 100000000), True),
                   ("stock", "int", (0, 1000000000), True),
                   ("description", "text", 2000, False)],
    "ChangePrice": [("productId", "id", 64, True),
                    ("price_cents", "int", (1, 100000000), True)],
    "Restock": [("productId", "id", 64, True),
                ("quantity", "int", (1, 1000000000), True)],
    "CreatePromo": [("code", "id", 64, True),
                    ("percent_off", "int", (1, 90), True),
                    ("max_uses", "int", (1, 1000000000), True),
                    ("expires_at", "int", (0, 253402300799), True)],
    "AddToCart": [("cartId", "id", 64, True), ("userId", "id", 64, True),
                  ("productId", "id", 64, True),
                  ("quantity", "int", (1, 10000), True)],
    "Checkout": [("userId", "id", 64, True), ("cartId", "id", 64, True),
                 ("promoCode", "id", 64, False)],
    "CancelOrder": [("orderId", "id", 64, True)],
}

BANK_COMMANDS = {
    "OpenAccount": [("accountId", "id", 64, True),
                    ("owner", "text", 200, True),
                    ("currency", "iso3", 3, True)],
    "Deposit": [("accountId", "id", 64, True),
                ("amount_cents", "int", (1, 10 ** 12), True)],
    "Withdraw": [("accountId", "id", 64, True),
                 ("amount_cents", "int", (1, 10 ** 12), True)],
    "Transfer": [("transferId", "id", 64, True), ("from", "id", 64, True),
                 ("to", "id", 64, True),
                 ("amount_cents", "int", (1, 10 ** 12), True)],
}

SENTINEL = "@@BAD-VALUE@@"

# Raw JSON literals for a string field that are not a valid string of it.
BAD_STRING_LITERALS = [
    (b'"a\xffb"', "invalid UTF-8 byte ff"),
    (b'"a\xc0\xafb"', "overlong UTF-8"),
    (b'"a\xed\xa0\x80b"', "UTF-8 encoded surrogate"),
    (b'"a\xf4\x90\x80\x80b"', "code point above U+10FFFF"),
    (b'"a\xe2\x82"', "truncated UTF-8 sequence"),
    (b'"\x80"', "lone continuation byte"),
    (b'"a\x00b"', "raw NUL byte"),
    (b'"a\\u0000b"', "escaped NUL"),
    (b'"a\x01b"', "raw control character"),
    (b'"a\nb"', "raw newline"),
    (b'"a\\ud800b"', "lone high surrogate"),
    (b'"a\\udc00b"', "lone low surrogate"),
    (b'"a\\xb"', "bad escape"),
    (b'"a\\u12"', "truncated \\u escape"),
    (b'"abc', "unterminated string"),
]

# Raw JSON literals that are not numbers, or not exact integers.
BAD_NUMBER_LITERALS = [
    (b"1e300", "1e300"), (b"-1e300", "-1e300"), (b"1e999", "overflows to inf"),
    (b"9007199254740993", "2^53+1"), (b"-9007199254740993", "-(2^53+1)"),
    (b"100000000000000000000000000000", "10^30"),
    (b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "-Infinity"),
    (b"0x10", "hex"), (b"+5", "leading plus"), (b"05", "leading zero"),
    (b".5", "no leading digit"), (b"5.", "no fraction digits"),
    (b"1e", "no exponent digits"), (b"--5", "double minus"),
    (b"1.5", "fraction"), (b"-0.5", "negative fraction"),
    (b"1e-7", "tiny fraction"), (b"2.000001", "almost an integer"),
]


def field_mutations(good, fields):
    """(label, body bytes, status, field named in the message or None)."""
    out = []

    def lit(field, raw):
        text = json.dumps(dict(good, **{field: SENTINEL})).encode()
        return text.replace(json.dumps(SENTINEL).encode(), raw)

    def with_value(field, v):
        return json.dumps(dict(good, **{field: v})).encode()

    for name, kind, limit, required in fields:
        wrong_types = ([7, -1, 1.5, True, False, [], ["x"], {}, {"a": "b"}]
                       if kind != "int" else
                       ["5", "", "1e3", True, False, [], [5], {}, {"v": 5}])
        for v in wrong_types:
            out.append(("%s = %s" % (name, json.dumps(v)),
                        with_value(name, v), 400, name))
        if required:
            out.append(("%s = null" % name, with_value(name, None), 400,
                        name))
            body = dict(good)
            del body[name]
            out.append(("%s missing" % name, json.dumps(body).encode(), 400,
                        name))
        if kind == "int":
            lo, hi = limit
            bad = {lo - 1, hi + 1, -1, -(1 << 53), 1 << 53, 10 ** 15 + 1,
                   -(10 ** 15)}
            if lo >= 1:
                bad.add(0)
            for v in sorted(x for x in bad if not lo <= x <= hi):
                out.append(("%s = %d" % (name, v), with_value(name, v), 400,
                            name))
            for raw, why in BAD_NUMBER_LITERALS:
                named = name if why in ("fraction", "negative fraction",
                                        "tiny fraction",
                                        "almost an integer") else None
                out.append(("%s = %s (%s)" % (name, raw.decode(), why),
                            lit(name, raw), 400, named))
            continue
        # strings
        out.append(("%s empty" % name, with_value(name, ""), 400, name))
        out.append(("%s of %d bytes" % (name, limit + 1),
                    with_value(name, "A" * (limit + 1)), 400, name))
        out.append(("%s of 100000 bytes" % name,
                    with_value(name, "A" * 100000), 400, name))
        for raw, why in BAD_STRING_LITERALS:
            out.append(("%s: %s" % (name, why), lit(name, raw), 400, None))
        if kind == "id":
            for v in ("a b", "a/b", "caf\u00e9", "a\tb", "a\u0001b", "a\"b",
                      "a'b", "a%20b", "<script>", "a\u200bb", "\U0001F600"):
                out.append(("%s = %r (outside the id set)" % (name, v),
                            with_value(name, v), 400, name))
        elif kind == "iso2":
            for v in ("se", "Se", "S", "SWE", "XX", "XK", "AA", "12", "S1",
                      " SE"):
                out.append(("%s = %r" % (name, v), with_value(name, v), 400,
                            name))
        elif kind == "iso3":
            for v in ("eur", "EU", "EURO", "ABC", "XXX", "XTS", "E1R",
                      "EUR "):
                out.append(("%s = %r" % (name, v), with_value(name, v), 400,
                            name))
    # unknown fields
    first = fields[0][0]
    for extra in ({"extra": 1}, {first.upper(): "x"}, {first + " ": "x"},
                  {"": 1}, {"position": 1}, {"nested": {"a": [1]}}):
        if not set(extra) & set(good):
            out.append(("unknown field %r" % list(extra)[0],
                        json.dumps(dict(good, **extra)).encode(), 400,
                        list(extra)[0] or None))
    # duplicate keys: same value, and another
    text = json.dumps(good)
    dup = json.dumps({first: good[first]})[1:-1]
    out.append(("duplicate key, same value",
                ("{" + dup + ", " + text[1:]).encode(), 400, None))
    dup2 = json.dumps({first: good[first] + "x"
                       if isinstance(good[first], str) else 1})[1:-1]
    out.append(("duplicate key, other value",
                (text[:-1] + ", " + dup2 + "}").encode(), 400, None))
    return out


def body_mutations(good, every_prefix_step=1):
    """Malformed, truncated and non-object bodies."""
    text = json.dumps(good).encode()
    out = []
    for n in range(1, len(text), every_prefix_step):
        out.append(("truncated to %d bytes" % n, text[:n], 400, None))
    out.append(("empty body (= {})", b"", 400, None))
    for raw, why in [
            (b"   ", "whitespace only"), (b"[]", "an array"),
            (b"[" + text + b"]", "the body in an array"),
            (b'"x"', "a string"), (b"1", "a number"), (b"-1", "a number"),
            (b"true", "true"), (b"null", "null"),
            (b"{,}", "lone comma"), (b'{"a"}', "key without value"),
            (b'{"a":}', "missing value"), (text[:-1] + b",}", "trailing comma"),
            (text.replace(b'"', b"'"), "single quotes"),
            (re.sub(rb'"(\w+)":', rb"\1:", text), "unquoted keys"),
            (text + b"}", "extra brace"), (text + text, "two objects"),
            (text + b" x", "trailing garbage"),
            (b"/*c*/" + text, "a comment"),
            (b"\xef\xbb\xbf" + text, "UTF-8 byte order mark"),
            (text + b"\x00", "trailing NUL"), (b"\x00" + text, "leading NUL"),
            (text[:1] + b"\xff" + text[1:], "invalid UTF-8 between tokens"),
            (text.replace(b":", b"=", 1), "= for :"),
            (b"[" * 200000 + b"]" * 200000, "nesting 200000 deep"),
            (b"{\"a\":" * 5000 + b"1" + b"}" * 5000, "objects 5000 deep"),
            (json.dumps(good).encode("utf-16-le"), "UTF-16"),
    ]:
        out.append((why, raw, 400, None))
    return out


class Base(unittest.TestCase):
    """One server per class; a baseline of entities so that every good
    body would succeed."""
    srv = None
    args = ()
    cases = 0

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(*cls.args, name="bad-" + cls.__name__.lower())
        cls.srv.start()
        # stops the server even when setUpClass fails (tearDownClass does
        # the orderly stop otherwise)
        cls.addClassCleanup(cls.srv.stop, expect=None)
        cls.c = cls.srv.client()
        cls.seed()
        cls.head0 = cls.c.get("/health").json()["head"]
        cls.cases = 0

    @classmethod
    def tearDownClass(cls):
        print("\n%s: %d bad requests" % (cls.__name__, cls.cases))
        failed = False
        try:
            cls.final_checks()
        except Exception:
            failed = True
            raise
        finally:
            cls.srv.stop(expect=None if failed else 0)
            if not failed:
                cls.srv.cleanup()

    @classmethod
    def ok(cls, name, body):
        r = cls.c.command(name, body)
        if r.status != 200:
            raise AssertionError("seeding %s %r: %r" % (name, body, r))
        return r.json()

    @classmethod
    def final_checks(cls):
        """The server is still healthy and never answered 5xx (but 501,
        the answer to the unknown methods sent on purpose); bad input
        logged no error."""
        c = cls.c
        r = c.get("/health")
        assert r.status == 200 and r.json()["status"] == "ok", r
        m, _ = ct.parse_prometheus(c.get("/metrics").body.decode())
        fivexx = {dict(k[1])["code"]: v for k, v in m.items()
                  if k[0] == "cleave_http_responses_total"
                  and dict(k[1]).get("code", "").startswith("5") and v
                  and dict(k[1])["code"] != "501"}
        assert not fivexx, "5xx answers: %r" % fivexx
        errors = [ln for ln in cls.srv.log_lines()
                  if ln.get("level") in ("error", "fatal")]
        assert not errors, "error log lines: %r" % errors[:5]

    def head(self):
        r = self.c.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "ok", r)
        return r.json()["head"]

    def expect(self, label, r, status, field=None, code=None):
        """The exact status, the error JSON, the field named, and nothing
        written."""
        type(self).cases += 1
        with self.subTest(label):
            err = ct.check_error(r, status, code)
            if field:
                self.assertIn("'%s'" % field, err["message"],
                              "the message does not name the field")
            self.assertEqual(self.head(), self.head0,
                             "a refused request wrote to the log")

    def run_command_cases(self, name, cases):
        for label, body, status, field in cases:
            r = self.c.command(name, body)
            self.expect("%s: %s" % (name, label), r, status, field)

    def command_cases(self, commands, goods):
        for name, fields in commands.items():
            good = goods[name]
            self.run_command_cases(name, field_mutations(good, fields))
            self.run_command_cases(name, body_mutations(good))

    def oversized(self, commands, goods):
        for name in commands:
            text = json.dumps(goods[name]).encode()
            # valid JSON one byte over the limit: whitespace padding
            pad = text[:-1] + b" " * (MAX_BODY + 1 - len(text)) + b"}"
            self.assertEqual(len(pad), MAX_BODY + 1)
            r = self.c.command(name, pad)
            self.expect("%s: body of max-body + 1 bytes" % name, r, 413,
                        code="too_large")
            big = dict(goods[name])
            key = [k for k, v in big.items() if isinstance(v, str)][0]
            big[key] = "x" * (3 * MAX_BODY)
            r = self.c.command(name, big)
            self.expect("%s: a 3 MiB string" % name, r, 413,
                        code="too_large")

    def bad_headers(self, name, good):
        for hdrs, why in [
                ({"Idempotency-Key": ""}, "empty Idempotency-Key"),
                ({"Idempotency-Key": "k" * 129}, "Idempotency-Key of 129"),
                ({"Idempotency-Key": "a b"}, "Idempotency-Key with a space"),
                ({"Idempotency-Key": "a\tb"}, "Idempotency-Key with a tab"),
                ({"If-Match": "1"}, "If-Match unquoted"),
                ({"If-Match": "\"-1\""}, "If-Match negative"),
                ({"If-Match": "\"1.5\""}, "If-Match fraction"),
                ({"If-Match": "\"99999999999999999999999\""},
                 "If-Match absurd"),
                ({"If-Match": "*"}, "If-Match star"),
                ({"X-Trace-Id": "has space"}, "X-Trace-Id with a space"),
                ({"X-Trace-Id": "t" * 65}, "X-Trace-Id of 65"),
                ({"X-Trace-Id": ""}, "empty X-Trace-Id")]:
            r = self.c.command(name, good, hdrs)
            self.expect("%s: %s" % (name, why), r, 400)
        # what a web page in the user's browser would send with the same
        # good body: refused before routing, nothing written
        for hdrs, status, code in [
                ({"Content-Type": "text/plain"}, 415,
                 "unsupported_media_type"),
                ({"Content-Type": "application/x-www-form-urlencoded"}, 415,
                 "unsupported_media_type"),
                ({"Content-Type": "multipart/form-data; boundary=b"}, 415,
                 "unsupported_media_type"),
                ({"Origin": "http://evil.example"}, 403, "forbidden_origin"),
                ({"Origin": "null"}, 403, "forbidden_origin"),
                ({"Host": "evil.example"}, 403, "forbidden_host")]:
            r = self.c.command(name, good, hdrs)
            self.expect("%s: %r" % (name, hdrs), r, status, code=code)
        # non-ASCII header values need raw bytes
        body = json.dumps(good).encode()
        for hdr in (b"Idempotency-Key: caf\xc3\xa9", b"Idempotency-Key: \xff",
                    b"X-Trace-Id: caf\xc3\xa9"):
            r = ct.raw_request(self.srv.port, b"POST /commands/" +
                               name.encode() + b" HTTP/1.1\r\n"
                               b"Host: localhost\r\n" + hdr +
                               b"\r\nContent-Length: %d\r\n\r\n" %
                               len(body) + body)
            self.expect("%s: %r" % (name, hdr), r, 400)

    # ---- queries ---------------------------------------------------------

    def query(self, path):
        return self.c.get(path)

    def run_query_cases(self, cases):
        for path, status, code in cases:
            r = self.query(path)
            self.expect("GET " + path[:200], r, status, code=code)
            if path.startswith("/queries/") and r.status in (400, 404) and \
                    code not in (None, "not_found"):
                with self.subTest("X-Cleave-Position on " + path[:100]):
                    self.assertIsNotNone(r.header("x-cleave-position"))

    def query_cases(self, name, good, spec):
        """spec: {param: kind}; kinds: id, text:N, int:lo:hi, bool, sort,
        iso2, iso3, date, cursor_seq, cursor_hex; a trailing ! marks a
        required parameter."""
        base = "/queries/%s?" % name

        def qs(params):
            return base + "&".join("%s=%s" % kv for kv in params.items())

        cases = []
        for p, kind in spec.items():
            required = kind.endswith("!")
            kind = kind.rstrip("!")
            if required:
                params = dict(good)
                del params[p]
                cases.append((qs(params), 400, "missing_parameter"))
                cases.append((qs(dict(good, **{p: ""})), 400,
                               "missing_parameter"))
            bad = []
            if kind == "id":
                bad += ["A" * 65]
            elif kind.startswith("text:"):
                bad += ["a" * (int(kind[5:]) + 1)]
            elif kind.startswith("int:"):
                lo, hi = (int(x) for x in kind.split(":")[1:])
                bad += [str(lo - 1), str(hi + 1), "-1", "abc", "1.5", "1e2",
                        "0x10", "%2B5", "%205", "99999999999999999999",
                        "9007199254740993"]
                bad = [b for b in bad if not (b.lstrip("-").isdigit() and
                                              lo <= int(b) <= hi)]
            elif kind == "bool":
                bad += ["yes", "TRUE", "2", "-1", "on", "t"]
            elif kind == "sort":
                bad += ["name", "PRICE", "price%20", "-sold", "%2Bprice",
                        "relevance,price"]
            elif kind == "iso2":
                bad += ["se", "XX", "SWE", "S", "12"]
            elif kind == "iso3":
                bad += ["eur", "XXX", "EU", "EURO", "XTS"]
            elif kind == "date":
                bad += ["2026-02-30", "2026-13-01", "2026-00-10",
                        "2026-01-00", "2026-1-1", "20260101", "2026/01/01",
                        "0000-01-01", "2026-01-01T00:00:00Z", "abcd-ef-gh",
                        "2025-02-29", "%202026-01-01", "-2026-01-01",
                        "99999-01-01"]
            elif kind == "cursor_seq":
                bad += ["0", "-1", "abc", "01", "1.5", "1e3",
                        "9999999999999999999", "%20"]
            elif kind == "cursor_hex":
                bad += ["zz", "0", "abc", "7c7c", "707c317c",
                        "ZZ" * 10, "00", "x" * 300,
                        "707c2d317c61",  # "p|-1|a"
                        "707c3130303030303030303030303030303030307c61"]
            for v in bad:
                cases.append((qs(dict(good, **{p: v})), 400, None))
        return cases

    def generic_query_cases(self, name, good):
        base = "/queries/%s?" % name
        g = "&".join("%s=%s" % kv for kv in good.items())
        first = list(good)[0] if good else "limit"
        return [
            (base + g + "&min_position=-1", 400, "invalid_parameter"),
            (base + g + "&min_position=x", 400, "invalid_parameter"),
            (base + g + "&min_position=1.5", 400, "invalid_parameter"),
            (base + g + "&min_position=9007199254740993", 400,
             "invalid_parameter"),
            (base + g + "&min_position=99999999999999999999", 400,
             "invalid_parameter"),
            (base + g + "&wait_ms=-1", 400, "invalid_parameter"),
            (base + g + "&wait_ms=soon", 400, "invalid_parameter"),
            (base + g + "&wait_ms=1.5", 400, "invalid_parameter"),
            (base + g + "&dup=1&dup=1", 400, "invalid_parameter"),
            (base + (g + "&" + g.split("&")[0] if g else "limit=5&limit=5"),
             400, "invalid_parameter"),
            (base + "%s=%%zz" % first, 400, "invalid_parameter"),
            (base + "%s=%%4" % first, 400, "invalid_parameter"),
            (base + "%s=%%" % first, 400, "invalid_parameter"),
            (base + "%s=a%%00b" % first, 400, "invalid_parameter"),
            (base + "%s=%%00" % first, 400, "invalid_parameter"),
            (base + "%s=%%ff" % first, 400, "invalid_parameter"),
            (base + "%s=a%%C0%%AFb" % first, 400, "invalid_parameter"),
            (base + "%s=%%ED%%A0%%80" % first, 400, "invalid_parameter"),
            (base + "%s=%%F4%%90%%80%%80" % first, 400, "invalid_parameter"),
            (base + "%s=%%E2%%82" % first, 400, "invalid_parameter"),
            (base + "%%ff=1&" + g, 400, "invalid_parameter"),
            (base + "a%%00=1&" + g, 400, "invalid_parameter"),
            (base + "=1&" + g, 400, "invalid_parameter"),
            (base + "n" * 65 + "=1&" + g, 400, "invalid_parameter"),
            (base + g + "&v=" + "x" * 4097, 400, "invalid_parameter"),
            (base + g + "&" + "&".join("x%d=1" % i for i in range(33)), 400,
             "invalid_parameter"),
        ]

    def raw_target_cases(self, path_ok):
        """Bad bytes sent raw (not percent-encoded) in the request line."""
        for raw in (path_ok.encode() + b"\xff", path_ok.encode() +
                    b"\xc0\xaf", path_ok.encode() + b"\xed\xa0\x80"):
            r = ct.raw_request(self.srv.port, b"GET " + raw +
                               b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
            self.expect("GET raw %r" % raw, r, 400, code="invalid_parameter")

    def route_cases(self, commands, other_commands, queries, other_queries):
        cmd = list(commands)[0]
        q = list(queries)[0]
        cases = []
        for m, p in [("GET", "/"), ("GET", "/nope"), ("POST", "/commands"),
                     ("POST", "/commands/"), ("POST", "/commands/%s/x" % cmd),
                     ("POST", "/commands//%s" % cmd), ("GET", "/queries"),
                     ("GET", "/queries/"), ("GET", "/queries/%s/x" % q),
                     ("GET", "/projections/x"),
                     ("POST", "/projections/nope/rebuild"),
                     ("POST", "/projections/nope/resume"),
                     ("POST", "/projections//rebuild"),
                     ("GET", "/health/x"), ("GET", "/eventsx"),
                     ("GET", "//health"), ("GET", "/metrics/x"),
                     ("POST", "/commands/" + cmd.lower()),
                     ("POST", "/commands/" + cmd.upper()),
                     ("POST", "/commands/%s%%20" % cmd),
                     ("POST", "/commands/Nope"),
                     ("POST", "/commands/%C3%A9"),
                     ("POST", "/commands/" + "A" * 300),
                     ("GET", "/queries/" + q.upper()),
                     ("GET", "/queries/nope"),
                     ("GET", "/queries/" + "a" * 300),
                     ("GET", "/queries/%ff")] + \
                [("POST", "/commands/" + n) for n in other_commands] + \
                [("GET", "/queries/%s?x=1" % n) for n in other_queries]:
            cases.append((m, p, 404, None))
        # a known method on a route that does not take it: 405 and Allow
        for m, p, allow in [
                ("GET", "/commands/" + cmd, "POST"),
                ("HEAD", "/commands/" + cmd, "POST"),
                ("GET", "/commands/Nope", "POST"),
                ("POST", "/queries/" + q, "GET"),
                ("POST", "/health", "GET"), ("POST", "/metrics", "GET"),
                ("POST", "/events", "GET"), ("POST", "/projections", "GET"),
                ("GET", "/projections/catalog/rebuild", "POST")]:
            cases.append((m, p, 405, allow))
        # a method no route implements: 501, wherever it is sent
        for m, p in [("PUT", "/commands/" + cmd),
                     ("DELETE", "/commands/" + cmd),
                     ("PATCH", "/commands/" + cmd),
                     ("PUT", "/queries/" + q), ("DELETE", "/queries/" + q),
                     ("DELETE", "/events"), ("TRACE", "/health"),
                     ("DELETE", "/projections/catalog/rebuild"),
                     ("BREW", "/health"), ("BREW", "/nope"),
                     ("post", "/commands/" + cmd)]:
            cases.append((m, p, 501, None))
        for m, p in [("POST", "/commands/%s%%zz" % cmd),
                     ("POST", "/commands/%s%%00" % cmd),
                     ("GET", "/queries/%s%%4" % q), ("GET", "/%")]:
            cases.append((m, p, 400, None))
        cases.append(("GET", "/queries/" + "a" * 1100, 414, None))
        cases.append(("POST", "/commands/" + "A" * 2000, 414, None))
        for m, p, status, allow in cases:
            body = b"{}" if m in ("POST", "PUT", "PATCH") else None
            r = self.c.request(m, p, body=body)
            if m == "HEAD":  # no body to check
                with self.subTest("%s %s" % (m, p)):
                    self.assertEqual(r.status, status, r)
            else:
                self.expect("%s %s" % (m, p[:120]), r, status)
            if allow:
                with self.subTest("Allow on %s %s" % (m, p)):
                    self.assertIn(allow, (r.header("allow") or "").split(
                        ", "), r.headers)
        r = self.c.get("/health", headers={"X-Big": "a" * 20000})
        self.expect("headers of 20 kB (over 16 KiB)", r, 431,
                    code="too_large")

    def events_cases(self):
        for qs in ("from=-1", "from=x", "from=1.5", "from=9007199254740993",
                   "limit=0", "limit=-3", "limit=x", "limit=1e3",
                   "stream=" + "s" * 257, "stream=a%00b", "stream=%ff",
                   "from=1&from=2", "from=%zz"):
            self.expect("GET /events?" + qs[:80], self.c.get("/events?" + qs),
                        400)

    def good_at_the_end(self, commands, goods, queries):
        """Every good body and query the bad ones came from is accepted:
        the refusals were about the one thing changed."""
        h = self.head()
        self.assertEqual(h, self.head0)
        # a refused command does not burn its Idempotency-Key
        name = list(commands)[0]
        key = "bad-then-good"
        r = self.c.command(name, b"{", {"Idempotency-Key": key})
        self.expect("bad body with a key", r, 400)
        for name in commands:
            hdrs = {"Idempotency-Key": key} if name == list(commands)[0] \
                else None
            r = self.c.command(name, goods[name], hdrs)
            self.assertEqual(r.status, 200, "the good %s was refused: %r" %
                             (name, r))
            self.assertIsNone(r.header("idempotent-replayed"))
            h += 1
            self.assertEqual(r.json()["position"], h)
        for path in queries:
            # after what was written (the read model may lag on a busy
            # machine)
            r = self.c.get("%s%smin_position=%d&wait_ms=10000"
                           % (path, "&" if "?" in path else "?", h))
            self.assertEqual(r.status, 200, "GET %s: %r" % (path, r))


class Shop(Base):
    @classmethod
    def seed(cls):
        ok = cls.ok
        ok("RegisterUser", {"userId": "bu1", "name": "Ann", "country": "SE"})
        ok("RegisterUser", {"userId": "bu2", "name": "Bob", "country": "DE"})
        for p in ("bp1", "bp2"):
            ok("AddProduct", {"productId": p, "name": "Lamp " + p,
                              "category": "home", "price_cents": 1000,
                              "stock": 1000})
        ok("CreatePromo", {"code": "BPROMO", "percent_off": 10,
                           "max_uses": 100, "expires_at": FAR_FUTURE})
        ok("AddToCart", {"cartId": "bc0", "userId": "bu1",
                         "productId": "bp1", "quantity": 1})
        cls.order = ok("Checkout", {"userId": "bu1",
                                    "cartId": "bc0"})["result"]["orderId"]
        ok("AddToCart", {"cartId": "bc1", "userId": "bu1",
                         "productId": "bp1", "quantity": 1})
        cls.goods = {
            "RegisterUser": {"userId": "bu-new", "name": "Cy",
                             "country": "FR"},
            "AddProduct": {"productId": "bp-new", "name": "Desk lamp",
                           "category": "home", "price_cents": 1200,
                           "stock": 5, "description": "a lamp"},
            "ChangePrice": {"productId": "bp1", "price_cents": 1500},
            "Restock": {"productId": "bp1", "quantity": 3},
            "CreatePromo": {"code": "BP-NEW", "percent_off": 10,
                            "max_uses": 5, "expires_at": FAR_FUTURE},
            "AddToCart": {"cartId": "bc1", "userId": "bu1",
                          "productId": "bp2", "quantity": 1},
            "Checkout": {"userId": "bu1", "cartId": "bc1",
                         "promoCode": "BPROMO"},
            "CancelOrder": {"orderId": cls.order},
        }
        # a real cursor of each sort, to misuse with another
        r = cls.c.get("/queries/search_products?sort=price&limit=1")
        cls.price_cursor = r.json()["next_cursor"]
        assert cls.price_cursor, r

    def test_commands_fields_and_bodies(self):
        self.command_cases(SHOP_COMMANDS, self.goods)

    def test_command_headers(self):
        for name in ("Restock", "Checkout"):
            self.bad_headers(name, self.goods[name])

    def test_oversized_bodies(self):
        self.oversized(SHOP_COMMANDS, self.goods)

    def test_queries(self):
        specs = {
            "product": ({"productId": "bp1"}, {"productId": "id!"}),
            "order": ({"orderId": self.order}, {"orderId": "id!"}),
            "user_orders": ({"userId": "bu1"},
                            {"userId": "id!", "limit": "int:1:100",
                             "cursor": "cursor_seq"}),
            "search_products": ({"q": "lamp"},
                                {"q": "text:200", "category": "text:100",
                                 "min_price": "int:0:9007199254740992",
                                 "max_price": "int:0:9007199254740992",
                                 "in_stock": "bool", "sort": "sort",
                                 "limit": "int:1:100",
                                 "cursor": "cursor_hex"}),
            "revenue_daily": ({"country": "SE", "from": "2020-01-01",
                               "to": "2020-12-31"},
                              {"country": "iso2!", "from": "date!",
                               "to": "date!"}),
            "top_products": ({}, {"limit": "int:1:100"}),
        }
        for name, (good, spec) in specs.items():
            self.run_query_cases(self.query_cases(name, good, spec))
            self.run_query_cases(self.generic_query_cases(name, good))
        s = "/queries/search_products?"
        self.run_query_cases([
            # a cursor of sort=price given to other sorts
            (s + "sort=sold&cursor=" + self.price_cursor, 400,
             "invalid_cursor"),
            (s + "sort=-price&cursor=" + self.price_cursor, 400,
             "invalid_cursor"),
            (s + "q=lamp&cursor=" + self.price_cursor, 400,
             "invalid_cursor"),
            # seventeen words
            (s + "q=" + "+".join(["lamp"] * 17), 400, "invalid_parameter"),
            # dates: from after to, and a range over 366 days
            ("/queries/revenue_daily?country=SE&from=2026-01-02"
             "&to=2026-01-01", 400, "invalid_parameter"),
            ("/queries/revenue_daily?country=SE&from=2024-01-01"
             "&to=2025-01-01", 400, "invalid_parameter"),
            ("/queries/revenue_daily?country=SE&from=0001-01-01"
             "&to=9999-12-31", 400, "invalid_parameter"),
            # entities that are not there
            ("/queries/product?productId=nope", 404, "product_not_found"),
            ("/queries/order?orderId=o-ffffffff", 404, "order_not_found"),
        ])
        self.raw_target_cases("/queries/product?productId=bp1")

    def test_routes_and_methods(self):
        self.route_cases(SHOP_COMMANDS, BANK_COMMANDS,
                         ["product", "search_products"],
                         ["balance", "statement", "totals"])

    def test_events(self):
        self.events_cases()

    def test_zz_good_at_the_end(self):  # runs last (alphabetical order)
        self.good_at_the_end(SHOP_COMMANDS, self.goods, [
            "/queries/product?productId=bp1",
            "/queries/order?orderId=" + self.order,
            "/queries/user_orders?userId=bu1",
            "/queries/search_products?q=lamp",
            "/queries/revenue_daily?country=SE&from=2020-01-01"
            "&to=2020-12-31",
            "/queries/top_products"])
        # the boundaries are exact: the longest strings and the largest
        # numbers are accepted
        r = self.c.command("AddProduct", {
            "productId": "P" * 64, "name": "n" * 200, "category": "c" * 100,
            "price_cents": 100000000, "stock": 1000000000,
            "description": "d" * 2000})
        self.assertEqual(r.status, 200, r)
        r = self.c.command("AddToCart", {"cartId": "C" * 64, "userId": "bu2",
                                         "productId": "P" * 64,
                                         "quantity": 10000})
        self.assertEqual(r.status, 200, r)
        text = json.dumps({"productId": "bp2", "quantity": 1}).encode()
        exact = text[:-1] + b" " * (MAX_BODY - len(text)) + b"}"
        r = self.c.command("Restock", exact)
        self.assertEqual(r.status, 200, "a body of exactly --max-body: %r"
                         % r)


class Bank(Base):
    args = ("--domain", "bank")

    @classmethod
    def seed(cls):
        ok = cls.ok
        for a in ("ba1", "ba2"):
            ok("OpenAccount", {"accountId": a, "owner": "Ann",
                               "currency": "EUR"})
        ok("OpenAccount", {"accountId": "ba3", "owner": "Bob",
                           "currency": "USD"})
        ok("Deposit", {"accountId": "ba1", "amount_cents": 100000})
        for i in range(3):
            ok("Transfer", {"transferId": "bt%d" % i, "from": "ba1",
                            "to": "ba2", "amount_cents": 10})
        cls.goods = {
            "OpenAccount": {"accountId": "ba-new", "owner": "Cy",
                            "currency": "SEK"},
            "Deposit": {"accountId": "ba1", "amount_cents": 100},
            "Withdraw": {"accountId": "ba1", "amount_cents": 100},
            "Transfer": {"transferId": "bt-new", "from": "ba1", "to": "ba2",
                         "amount_cents": 100},
        }

    def test_commands_fields_and_bodies(self):
        self.command_cases(BANK_COMMANDS, self.goods)

    def test_command_headers(self):
        self.bad_headers("Transfer", self.goods["Transfer"])

    def test_oversized_bodies(self):
        self.oversized(BANK_COMMANDS, self.goods)

    def test_queries(self):
        specs = {
            "balance": ({"accountId": "ba1"}, {"accountId": "id!"}),
            "statement": ({"accountId": "ba1"},
                          {"accountId": "id!", "limit": "int:1:100",
                           "cursor": "cursor_seq"}),
            "daily_volume": ({"currency": "EUR", "day": "2026-01-01"},
                             {"currency": "iso3!", "day": "date!"}),
            "totals": ({}, {"currency": "iso3"}),
        }
        for name, (good, spec) in specs.items():
            self.run_query_cases(self.query_cases(name, good, spec))
            self.run_query_cases(self.generic_query_cases(name, good))
        self.run_query_cases([
            ("/queries/balance?accountId=nope", 404, "account_not_found"),
            ("/queries/statement?accountId=nope", 404, "account_not_found"),
        ])
        self.raw_target_cases("/queries/balance?accountId=ba1")

    def test_routes_and_methods(self):
        self.route_cases(BANK_COMMANDS, SHOP_COMMANDS,
                         ["balance", "statement"],
                         ["product", "search_products", "top_products"])

    def test_events(self):
        self.events_cases()

    def test_zz_good_at_the_end(self):
        self.good_at_the_end(BANK_COMMANDS, self.goods, [
            "/queries/balance?accountId=ba1",
            "/queries/statement?accountId=ba1",
            "/queries/daily_volume?currency=EUR&day=2026-01-01",
            "/queries/totals", "/queries/totals?currency=EUR"])
        r = self.c.command("OpenAccount", {"accountId": "A" * 64,
                                           "owner": "o" * 200,
                                           "currency": "JPY"})
        self.assertEqual(r.status, 200, r)
        r = self.c.command("Deposit", {"accountId": "A" * 64,
                                       "amount_cents": 10 ** 12})
        self.assertEqual(r.status, 200, r)


class ProtocolErrors(unittest.TestCase):
    """HTTP framing that libmicrohttpd checks before Cleave sees the
    request.  The statuses are right; two things are not (expected
    failures below, each naming the finding):

    KNOWN LIMITATION (was FINDING 1; docs/security.md, Known issues):
    these framing errors are answered by libmicrohttpd's own HTML page,
    not the error JSON of docs/http-api.md — a malformed Content-Length
    ("abc", "-5", "0x2"), bad chunked framing, a Content-Length past 2^64
    (its own 413).  MHD 0.9.75 queues that answer while parsing the
    headers (or the chunks) and then never calls our access handler, so it
    cannot be replaced; the status is right and the connection closes, which
    test_framing_status checks.

    FIXED (was FINDING 2): a raw NUL byte in the request target or in a
    header value is refused with 400 and the error JSON (naming the
    header) — before, the C string ended there, so
    `POST /commands/Restock<NUL>junk` ran Restock,
    `GET /queries/product?productId=p1<NUL>junk` answered p1, and
    `Idempotency-Key: a<NUL>b` was key "a".  Percent-encoded %00 is
    refused as documented.

    FIXED (was FINDING 4): two Content-Length headers (equal or not),
    Content-Length with Transfer-Encoding, or two Transfer-Encodings are
    refused with 400 and the error JSON, and the connection closes
    (RFC 9112 §6.3) — before, the first Content-Length won and the
    command ran.
    """
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = ct.Server(name="bad-protocol").start()
        cls.addClassCleanup(cls.srv.stop, expect=None)
        c = cls.srv.client()
        r = c.command("AddProduct", {"productId": "p1", "name": "n",
                                     "category": "c", "price_cents": 1,
                                     "stock": 1})
        assert r.status == 200, r
        cls.c = c

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.cleanup()

    BODY = b'{"productId":"p1","quantity":1}'
    FRAMING = [
        (b"Content-Length: abc\r\n", b"", 400),
        (b"Content-Length: -5\r\n", b"", 400),
        (b"Content-Length: 0x2\r\n", b"{}", 400),
        (b"Content-Length: 99999999999999999999999\r\n", b"", 413),
        (b"Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n",
         400),
    ]

    def send(self, head, body):
        return ct.raw_request(self.srv.port,
                              b"POST /commands/Restock HTTP/1.1\r\n"
                              b"Host: localhost"
                              b"\r\n" + head + b"\r\n" + body, timeout=10)

    def head(self):
        return self.c.get("/health").json()["head"]

    def test_framing_status(self):
        h = self.head()
        for head, body, status in self.FRAMING:
            with self.subTest(head=head):
                r = self.send(head, body)
                self.assertIsNotNone(r, "no answer")
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.header("connection"), "close", r)
        self.assertEqual(self.head(), h)

    @unittest.expectedFailure  # libmicrohttpd's own pages (known issue)
    def test_framing_error_json(self):
        for head, body, status in self.FRAMING:
            ct.check_error(self.send(head, body), status)

    def test_conflicting_content_lengths(self):
        h = self.head()
        b = self.BODY
        for first, second in ((len(b), 2), (2, len(b)), (len(b), len(b))):
            r = self.send(b"Content-Length: %d\r\nContent-Length: %d\r\n" %
                          (first, second), b)
            self.assertEqual(self.head(), h, "the command ran: %r" % r)
            ct.check_error(r, 400, "invalid_header")
            self.assertEqual(r.header("connection"), "close")

    def test_content_length_with_transfer_encoding(self):
        h = self.head()
        b = self.BODY
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(b), b)
        for head in (b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n"
                     % len(chunked),
                     b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n"
                     % len(chunked),
                     b"Transfer-Encoding: chunked\r\n"
                     b"Transfer-Encoding: chunked\r\n",
                     b"Transfer-Encoding: gzip, chunked\r\n"):
            with self.subTest(head=head):
                r = self.send(head, chunked)
                ct.check_error(r, 400, "invalid_header")
                self.assertEqual(r.header("connection"), "close")
        self.assertEqual(self.head(), h)
        # one chunked body, framed one way, is still served
        r = self.send(b"Transfer-Encoding: chunked\r\n", chunked)
        self.assertEqual(r.status, 200, r)

    def test_raw_nul_in_target(self):
        h = self.head()
        b = self.BODY
        r = ct.raw_request(self.srv.port, b"POST /commands/Restock\x00junk "
                           b"HTTP/1.1\r\n"
                           b"Host: localhost\r\nContent-Length: %d\r\n"
                           b"\r\n" % len(b) + b)
        self.assertEqual(self.head(), h, "the command ran: %r" % r)
        ct.check_error(r, 400)

    def test_raw_nul_in_query_parameter(self):
        r = ct.raw_request(self.srv.port, b"GET /queries/product?productId="
                           b"p1\x00junk HTTP/1.1\r\nHost: localhost\r\n\r\n")
        ct.check_error(r, 400, "invalid_parameter")

    def test_raw_nul_in_idempotency_key(self):
        b = self.BODY
        r = ct.raw_request(self.srv.port, b"POST /commands/Restock HTTP/1.1"
                           b"\r\n"
                           b"Host: localhost\r\nIdempotency-Key: k\x00x\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(b) + b)
        err = ct.check_error(r, 400, "invalid_header")
        self.assertIn("Idempotency-Key", err["message"])

    def test_raw_nul_in_other_headers(self):
        h = self.head()
        b = self.BODY
        for hdr in (b"X-Trace-Id: t\x00x", b"If-Match: \"1\x00\"",
                    b"Authorization: Bearer \x00", b"Idempotency-Key: k\x00",
                    b"X-Anything: \x00\x00\x00"):
            with self.subTest(header=hdr):
                r = self.send(hdr + b"\r\nContent-Length: %d\r\n" % len(b),
                              b)
                err = ct.check_error(r, 400, "invalid_header")
                self.assertIn(hdr.split(b":")[0].decode(), err["message"])
                self.assertEqual(r.header("connection"), "close")
        self.assertEqual(self.head(), h)


if __name__ == "__main__":
    ct.main()
