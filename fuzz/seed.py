#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into
fuzz/corpus/<target>/seed-*.  Run once when seeds change; `make fuzz`
grows the corpora from them and merges (minimises) what it finds."""
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# Order of cleave_domains: shop's commands, then bank's.
COMMANDS = [
    ("RegisterUser", {"userId": "u1", "name": "Ada", "country": "SE"}),
    ("AddProduct", {"productId": "p1", "name": "Mug", "category": "kitchen",
                    "price_cents": 1200, "stock": 5, "description": "big"}),
    ("ChangePrice", {"productId": "p1", "price_cents": 1300}),
    ("Restock", {"productId": "p1", "quantity": 10}),
    ("CreatePromo", {"code": "WELCOME10", "percent_off": 10,
                     "max_uses": 100, "expires_at": 4102444800}),
    ("AddToCart", {"cartId": "c1", "userId": "u1", "productId": "p1",
                   "quantity": 2}),
    ("Checkout", {"userId": "u1", "cartId": "c1", "promoCode": "WELCOME10"}),
    ("CancelOrder", {"orderId": "o-00000001"}),
    ("OpenAccount", {"accountId": "a1", "owner": "Ada", "currency": "EUR"}),
    ("Deposit", {"accountId": "a1", "amount_cents": 1000}),
    ("Withdraw", {"accountId": "a1", "amount_cents": 10}),
    ("Transfer", {"transferId": "t1", "from": "a1", "to": "a2",
                  "amount_cents": 5}),
]

JSON_EXTRA = [
    b'{}', b'[]', b'null', b'{"a":1,"a":2}', b'{"a":{"b":[1,2,{"c":null}]}}',
    b'"\\ud83d\\ude00"', b'"\\u00e9\xc3\xa9"', b'1e400', b'9007199254740993',
    b'-9007199254740992', b'0.5e-3', b'[' * 33 + b']' * 33,
    b'{"x":"\xed\xa0\x80"}', b'{"x":"\xc0\xaf"}', b'{"k":true,"l":false}',
    b'{"price_cents":1.0}', b'{"quantity":-0}', b' \t\r\n{ } ',
]


# Browser safety (src/server/guard.c): the harness's servers answer to
# "Host: x" and to pages of http://fuzz.example.
BROWSER = [
    b"OPTIONS /commands/AddProduct HTTP/1.1\r\nHost: x\r\n"
    b"Origin: http://fuzz.example\r\n"
    b"Access-Control-Request-Method: POST\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /commands/Restock HTTP/1.1\r\nHost: x\r\n"
    b"Origin: http://fuzz.example\r\nContent-Type: application/json; "
    b"charset=utf-8\r\nContent-Length: 2\r\n\r\n{}",
    b"POST /commands/Restock HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /events HTTP/1.1\r\nHost: evil.example:8080\r\n"
    b"Origin: null\r\n\r\n",
    b"GET /queries/product?productId=p1 HTTP/1.1\r\nHost: x\r\n"
    b"Origin: http://evil.example\r\n\r\n",
    b"GET http://[::1]:80/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PUT /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
]


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    for i, (_, body) in enumerate(COMMANDS):
        write("json", bytes([i]) + json.dumps(body).encode())
        write("json", bytes([i]) + json.dumps(body, separators=(",", ":"))
              .encode())
    for i, extra in enumerate(JSON_EXTRA):
        write("json", bytes([i % len(COMMANDS)]) + extra)

    targets = [
        "/health", "/queries/product?productId=p1&min_position=3&wait_ms=10",
        "/queries/search_products?q=a+b%20c&category=k&sort=-price&limit=5",
        "/events?from=0&limit=10&stream=product-p1",
        "/projections/catalog/rebuild", "/commands/Checkout",
        "/queries/x?a=%zz", "/queries/x?a=1&a=2", "/queries/x?%00=1",
        "/queries/x?" + "&".join("p%d=v" % i for i in range(33)),
        "/queries/x?a=%C3%A9&b=%ED%A0%80", "/c%6fmmands/X?=&&&",
        "/queries/" + "n" * 70, "/queries/p?min_position=-1",
        "/queries/p?wait_ms=99999999999999999999",
    ]
    for i, t in enumerate(targets):
        write("params", bytes([i % 4]) + t.encode())

    events = [
        (1, 0, {"orderId": "o1", "total": 100, "country": "se",
                "items": [["p1", 2, 50]]}),
        (2, 0, {"orderId": "o1", "total_cents": 100, "lines": []}),
        (3, 0, {"orderId": "o1"}),
        (1, 1, {"first": "Ada", "last": "Lovelace"}),
        (1, 2, {"price": "12.34"}), (1, 2, {"price": 12.5}),
        (1, 3, {"productId": "p1"}), (1, 4, {"orderId": "o1"}),
    ]
    for v, t, d in events:
        write("event", bytes([v, t]) + json.dumps(d).encode())
    write("event", bytes([1, 3]) + b"[1,2]")
    write("event", bytes([1, 0]) + b"{\"total\":\"x\"}")
    write("event", bytes([0, 5]) + b"not json")

    tok = b"Authorization: Bearer fuzz-token\r\n"
    body = json.dumps(COMMANDS[1][1]).encode()
    reqs = [
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /queries/product?productId=p1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /queries/top_products?limit=3&min_position=1000000&wait_ms=5"
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /commands/AddProduct HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\nIdempotency-Key: k1\r\nIf-Match: \"0\"\r\n"
        b"X-Trace-Id: abc\r\n\r\n%s" % (len(body), body),
        b"POST /commands/AddProduct HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
            len(body), body),
        b"POST /commands/Restock HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 999999999\r\n\r\n{}",
        b"GET /events?from=0 HTTP/1.1\r\nHost: x\r\n" + tok + b"\r\n",
        b"POST /projections/search/rebuild HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: 0\r\n" + tok + b"\r\n",
        b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /projections HTTP/1.1"
        b"\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
        b"POST /commands/Checkout HTTP/1.1\r\nHost: x\r\n"
        b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        b"\r\nContent-Length: 2\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
    ]
    reqs += BROWSER
    for i, r in enumerate(reqs):
        write("http", bytes([0]) + r)
        write("http", bytes([1]) + r.replace(b"Host: x\r\n", b"Host: x\r\n"
                                             + tok, 1))


if __name__ == "__main__":
    main()
