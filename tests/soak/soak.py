#!/usr/bin/env python3
"""Soak: mixed load against the real `cleave serve` for a long time, with
the server's memory, open descriptors and latency sampled every 10 s.

    python3 tests/soak/soak.py [--seconds 1800] [--bin build/cleave]
                               [--threads 6] [--out bench/results]

Load (standard library only, keep-alive connections on loopback): worker
threads register users, fill carts, check out (some with a promo), cancel
some orders, restock, change prices; reader threads query every read model,
a third of them with min_position (read-your-writes waits); every
--rebuild-every seconds one projection (round robin) is rebuilt blue-green
while the load goes on.

Every 10 s a line goes to bench/results/soak-<date>.csv: elapsed seconds,
RSS (total, anonymous, file-backed, from /proc/PID/status), open fds
(/proc/PID/fd), requests in the interval, their p50/p99/max latency, the
log head and errors.  At the end gnuplot (when present) draws
soak-<date>.png beside it.

Pass ("flat"): after a warm-up (the first sixth of the run), the anonymous
RSS averaged over the last sixth is within 10% of its average over the
sixth right after the warm-up.  Anonymous RSS is the process's own heap
and stacks; file-backed RSS is the page cache of the memory-mapped stores
(SQLite mmap, LMDB), which grows with the data by design and is reported
but not judged.

Open fds: the first blue-green rebuild may leave exactly one descriptor
for the process's life, of write.db: its read-ahead opens the engine's
first log reader, the pool closes it after 10 s idle (CL_READER_IDLE_US),
and SQLite's unix VFS keeps that connection's write.db descriptor as a
pending close while the writer holds its lock on the file, for the next
reader to reuse.  Anything else it leaves fails the run.  Then the open
fds averaged over the last sixth must be no more than their maximum over
a reference window of a sixth: the one right after the warm-up, or, when
the first rebuild ends later, the one that starts FD_SETTLE_S after it
ended.  The descriptors are compared by what they name (/proc/PID/fd),
and a failure lists what was left open.

Any 5xx other than 503 (overload), or a server that exits, fails the run.
The exit status is 0 on pass, 1 on fail.
"""
import argparse
import collections
import datetime
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import cleave_test as ct  # noqa: E402

PROJECTIONS = ["catalog", "search", "orders", "revenue", "bestsellers"]
NPRODUCTS = 200
# After a rebuild, twice the time a pooled log reader may stay idle
# (CL_READER_IDLE_US, src/core/engine.h) before the upkeep closes it.
FD_SETTLE_S = 20
# What the first rebuild may leave open for good (see the docstring).
FIRST_REBUILD_LEAVES = collections.Counter({"write.db": 1})


class Stats:
    def __init__(self):
        self.mu = threading.Lock()
        self.lat = []
        self.errors = {}
        self.total = 0
        self.bad = []

    def add(self, ms, status, what):
        with self.mu:
            self.lat.append(ms)
            self.total += 1
            if status >= 500 and status != 503:
                self.bad.append((what, status))
            if status >= 500 or status == 0:
                self.errors[status] = self.errors.get(status, 0) + 1

    def take(self):
        with self.mu:
            lat, self.lat = self.lat, []
            err, self.errors = self.errors, {}
        return lat, err


def timed(stats, c, what, method, path, body=None):
    t0 = time.perf_counter()
    try:
        r = c.request(method, path, body=body)
    except OSError:
        stats.add((time.perf_counter() - t0) * 1000, 0, what)
        return None
    stats.add((time.perf_counter() - t0) * 1000, r.status, what)
    return r


def setup(c):
    c.command("CreatePromo", {"code": "SOAK10", "percent_off": 10,
                              "max_uses": 1000000000,
                              "expires_at": 253402300799})
    for i in range(NPRODUCTS):
        c.command("AddProduct", {
            "productId": "sp%d" % i, "name": "Soak product %d" % i,
            "category": "cat%d" % (i % 10), "price_cents": 100 + i,
            "stock": 1000000, "description": "a thing for the soak %d" % i})


def writer(stop, stats, port, wid, head):
    """Commands on a fixed population (20 users, 200 products) so that
    the writer's bounded caches (stream versions, idempotency) settle:
    new streams come only from the 1% of checkouts (an order and the next
    cart), the rest are adds to long-lived carts, restocks, price changes
    and idempotent retries."""
    c = ct.Client(port, timeout=60)
    rnd = random.Random(wid)
    users = ["su%d-%d" % (wid, i) for i in range(20)]
    carts = {}
    for u in users:
        timed(stats, c, "RegisterUser", "POST", "/commands/RegisterUser",
              {"userId": u, "name": "Soak " + u, "country":
               rnd.choice(["SE", "DE", "FR", "US", "JP"])})
        carts[u] = [0, 0]  # cart number, lines added
    orders = []
    n = 0
    while not stop.is_set():
        n += 1
        u = rnd.choice(users)
        cart = "sc-%s-%d" % (u, carts[u][0])
        k = rnd.random()
        r = None
        if k < 0.45 or carts[u][1] == 0:
            r = timed(stats, c, "AddToCart", "POST", "/commands/AddToCart",
                      {"cartId": cart, "userId": u, "productId":
                       "sp%d" % rnd.randrange(20), "quantity": 1})
            if r is not None and r.status == 200:
                carts[u][1] += 1
            elif r is not None and r.status == 422:
                carts[u] = [carts[u][0] + 1, 0]  # full: start another
        elif k < 0.46 or carts[u][1] > 5000:
            body = {"userId": u, "cartId": cart}
            if rnd.random() < 0.3:
                body["promoCode"] = "SOAK10"
            r = timed(stats, c, "Checkout", "POST", "/commands/Checkout",
                      body)
            if r is not None and r.status == 200:
                orders.append(r.json()["result"]["orderId"])
                carts[u] = [carts[u][0] + 1, 0]
        elif k < 0.465 and orders:
            r = timed(stats, c, "CancelOrder", "POST",
                      "/commands/CancelOrder",
                      {"orderId": orders.pop(rnd.randrange(len(orders)))})
        elif k < 0.80:
            r = timed(stats, c, "Restock", "POST", "/commands/Restock",
                      {"productId": "sp%d" % rnd.randrange(NPRODUCTS),
                       "quantity": 50})
        elif k < 0.90:
            r = timed(stats, c, "ChangePrice", "POST",
                      "/commands/ChangePrice",
                      {"productId": "sp%d" % rnd.randrange(NPRODUCTS),
                       "price_cents": rnd.randint(100, 100000)})
        else:
            # an idempotent command, retried once with the same key
            key = "soak-%d-%d" % (wid, n)
            body = {"productId": "sp%d" % rnd.randrange(NPRODUCTS),
                    "quantity": 1}
            for _ in range(2):
                t0 = time.perf_counter()
                try:
                    r = c.request("POST", "/commands/Restock", body=body,
                                  headers={"Idempotency-Key": key})
                    st = r.status
                except OSError:
                    r, st = None, 0
                stats.add((time.perf_counter() - t0) * 1000, st, "Restock")
        if r is not None and r.status == 200:
            pos = r.json().get("position", 0)
            with head[1]:
                head[0] = max(head[0], pos)
        if len(orders) > 1000:
            del orders[:500]
    c.close()


def reader(stop, stats, port, rid, head):
    c = ct.Client(port, timeout=60)
    rnd = random.Random(1000 + rid)
    while not stop.is_set():
        k = rnd.randrange(7)
        with head[1]:
            pos = head[0]
        mp = "&min_position=%d&wait_ms=2000" % pos if rnd.random() < 0.33 \
            else ""
        if k == 0:
            path = "/queries/product?productId=sp%d" % rnd.randrange(
                NPRODUCTS)
        elif k == 1:
            path = "/queries/search_products?q=soak&category=cat%d" \
                "&sort=price&limit=20" % rnd.randrange(10)
        elif k == 2:
            path = "/queries/top_products?limit=10"
        elif k == 3:
            path = "/queries/revenue_daily?country=SE&from=2020-01-01" \
                "&to=2099-12-31"
        elif k == 4:
            path = "/queries/user_orders?userId=su%d-%d&limit=10" % (
                rnd.randrange(4), rnd.randrange(20))
        elif k == 5:
            path = "/projections"
            mp = ""
        else:
            path = "/health"
            mp = ""
        timed(stats, c, path.split("?")[0], "GET", path + mp)
    c.close()


def fd_names(pid, data):
    """What the process's descriptors name, as a multiset: paths relative
    to the data directory with the copies' generations left out
    (read/catalog.g*/data.mdb), sockets and pipes by kind."""
    out = collections.Counter()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue  # closed meanwhile
        if t.startswith(data + "/"):
            t = t[len(data) + 1:]
        t = re.sub(r"\.g\d+/", ".g*/", t)
        t = re.sub(r"^(socket|pipe):\[\d+\]$", r"\1", t)
        out[t] += 1
    return out


def proc_sample(pid, data):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    out["fd_names"] = fd_names(pid, data)
    out["fds"] = sum(out["fd_names"].values())
    return out


def fd_diff(a, b):
    """What b names more than a, as "name xN" strings."""
    d = b - a
    return ["%s x%d" % (k, n) if n > 1 else k for k, n in sorted(d.items())]


def judge_fds(rows, names, first_rebuild, w, verdict):
    """The open-fd rule of the docstring; returns why it fails, or None.
    rows[i][4] is the fd count and rows[i][13] how many projections were
    rebuilding, names[i] the descriptors' names, at sample i;
    first_rebuild is the first sample taken after the first rebuild was
    asked for (None: no rebuild)."""
    n = len(rows)
    ref = w  # the sixth right after the warm-up
    if first_rebuild is not None:
        i = first_rebuild
        done = next((j for j in range(i, n) if rows[j][13] == 0), None)
        if done is None:
            return "the first rebuild (at %.0f s) never ended" % rows[i][0]
        settled = next((j for j in range(done, n)
                        if rows[j][0] >= rows[done][0] + FD_SETTLE_S), None)
        if settled is None:
            return "too short to judge open fds after the first rebuild"
        if i > 0:
            left = names[settled] - names[i - 1]
            verdict["fds_first_rebuild_left"] = fd_diff(names[i - 1],
                                                        names[settled])
            extra = left - FIRST_REBUILD_LEAVES
            # descriptors of clients and of work in flight come and go;
            # judge only the engine's files
            extra = collections.Counter({k: v for k, v in extra.items()
                                         if k not in ("socket", "pipe")})
            if extra:
                return "the first rebuild left open %s (at %.0f s, settled " \
                    "at %.0f s)" % (", ".join(fd_diff(collections.Counter(),
                                                      extra)),
                                    rows[i][0], rows[settled][0])
        ref = max(ref, settled)
    if ref + w > n - w:
        return "too short to judge open fds: the reference window (from " \
            "%.0f s) reaches the last sixth" % rows[min(ref, n - 1)][0]
    refw = range(ref, ref + w)
    top = max(refw, key=lambda j: rows[j][4])
    last = rows[n - w:]
    verdict["fds_ref_window_s"] = [rows[ref][0], rows[ref + w - 1][0]]
    verdict["fds_first_max"] = rows[top][4]
    verdict["fds_last_avg"] = round(sum(r[4] for r in last) / len(last), 1)
    if verdict["fds_last_avg"] > verdict["fds_first_max"]:
        return "open fds grew: %.1f on average over the last sixth, at " \
            "most %d in the reference window; open at the end and not " \
            "then: %s" % (verdict["fds_last_avg"], verdict["fds_first_max"],
                          ", ".join(fd_diff(names[top], names[-1])) or
                          "(only counts differ)")
    return None


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def plot(csv, png):
    if not shutil.which("gnuplot"):
        print("soak: gnuplot not found, no plot")
        return
    script = """
set terminal pngcairo size 1200,900 noenhanced
set output '{png}'
set datafile separator ','
set key top left
set multiplot layout 3,1 title 'cleave soak: {name}'
set ylabel 'MiB'
plot '{csv}' using ($1/60):($2/1024) every ::1 with lines title 'RSS', \\
     '' using ($1/60):($3/1024) every ::1 with lines title 'RSS anon', \\
     '' using ($1/60):($4/1024) every ::1 with lines title 'RSS file'
set ylabel 'open fds'
set yrange [0:*]
plot '{csv}' using ($1/60):5 every ::1 with lines title 'fds'
set ylabel 'ms'
set yrange [*:*]
set xlabel 'minutes'
set logscale y
plot '{csv}' using ($1/60):8 every ::1 with lines title 'p99', \\
     '' using ($1/60):7 every ::1 with lines title 'p50'
unset multiplot
""".format(png=png, csv=csv, name=os.path.basename(csv))
    r = subprocess.run(["gnuplot"], input=script, text=True,
                       capture_output=True)
    if r.returncode:
        # no cairo: the plain png terminal
        r = subprocess.run(["gnuplot"], input=script.replace(
            "pngcairo", "png"), text=True, capture_output=True)
    if r.returncode:
        print("soak: gnuplot failed: " + r.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=int(
        os.environ.get("SOAK_SECONDS", "1800")))
    ap.add_argument("--bin", default=os.environ.get("CLEAVE_BIN") or
                    os.path.join(ROOT, "build", "cleave"))
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--rebuild-every", type=int, default=180)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args()
    ct.BIN = a.bin
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    csv = os.path.join(a.out, "soak-%s.csv" % stamp)
    png = os.path.join(a.out, "soak-%s.png" % stamp)

    srv = ct.Server(name="soak").start()
    pid = srv.proc.pid
    c = srv.client()
    setup(c)
    stats = Stats()
    stop = threading.Event()
    head = [0, threading.Lock()]
    ths = [threading.Thread(target=writer, args=(stop, stats, srv.port, i,
                                                 head), daemon=True)
           for i in range(a.writers)]
    ths += [threading.Thread(target=reader, args=(stop, stats, srv.port, i,
                                                  head), daemon=True)
            for i in range(a.readers)]
    for t in ths:
        t.start()
    rows = []
    t0 = time.time()
    next_rebuild = t0 + a.rebuild_every
    nrebuild = 0
    rebuilds = []
    first_rebuild = None  # the index of the first sample after it
    failed = None
    names = []
    with open(csv, "w") as f:
        f.write("elapsed_s,rss_kib,rss_anon_kib,rss_file_kib,fds,threads,"
                "p50_ms,p99_ms,max_ms,requests,req_per_s,head,errors,"
                "rebuilding\n")
        last = t0
        while time.time() - t0 < a.seconds:
            time.sleep(max(0.0, last + a.interval - time.time()))
            now = time.time()
            if srv.proc.poll() is not None:
                failed = "server exited with %s" % srv.proc.returncode
                break
            if now >= next_rebuild:
                name = PROJECTIONS[nrebuild % len(PROJECTIONS)]
                r = c.post("/projections/%s/rebuild" % name)
                rebuilds.append((round(now - t0), name, r.status))
                if first_rebuild is None:
                    first_rebuild = len(rows)
                nrebuild += 1
                next_rebuild += a.rebuild_every
            lat, err = stats.take()
            s = proc_sample(pid, os.path.realpath(srv.data))
            h = c.get("/health").json()["head"]
            # after the fds: a rebuild seen here was running then too
            # (only this thread starts them)
            busy = sum(1 for p in c.get("/projections").json()[
                "projections"] if p["state"] != "live")
            row = [round(now - t0, 1), s["VmRSS"], s.get("RssAnon", 0),
                   s.get("RssFile", 0), s["fds"], s.get("Threads", 0),
                   round(pct(lat, 0.50), 2), round(pct(lat, 0.99), 2),
                   round(max(lat) if lat else 0, 2), len(lat),
                   round(len(lat) / (now - last), 1), h,
                   ";".join("%s:%d" % kv for kv in sorted(err.items())),
                   busy]
            rows.append(row)
            names.append(s["fd_names"])
            f.write(",".join(str(x) for x in row) + "\n")
            f.flush()
            print("soak %6.0fs rss %6.1f MiB (anon %6.1f) fds %3d p99 %7.2f "
                  "ms %6.0f req/s head %d %s" % (
                      row[0], row[1] / 1024, row[2] / 1024, row[4], row[7],
                      row[10], h, row[12]), flush=True)
            last = now
    stop.set()
    for t in ths:
        t.join(30)
    srv.stop(expect=0)
    plot(csv, png)

    # judge
    n = len(rows)
    w = max(1, n // 6)
    verdict = {"csv": csv, "png": png, "samples": n,
               "requests": stats.total, "rebuilds": rebuilds}
    if n >= 3 * w and n >= 3:
        first = rows[w:2 * w]
        lastw = rows[n - w:]

        def avg(rs, i):
            return sum(r[i] for r in rs) / len(rs)
        verdict["rss_anon_first_kib"] = round(avg(first, 2))
        verdict["rss_anon_last_kib"] = round(avg(lastw, 2))
        verdict["rss_anon_drift_pct"] = round(
            100.0 * (avg(lastw, 2) / avg(first, 2) - 1), 2)
        verdict["rss_first_kib"] = round(avg(first, 1))
        verdict["rss_last_kib"] = round(avg(lastw, 1))
        verdict["rss_drift_pct"] = round(
            100.0 * (avg(lastw, 1) / avg(first, 1) - 1), 2)
        verdict["p99_first_ms"] = round(avg(first, 7), 2)
        verdict["p99_last_ms"] = round(avg(lastw, 7), 2)
        if failed is None and verdict["rss_anon_drift_pct"] > 10:
            failed = "anonymous RSS drifted %.1f%% (> 10%%)" % \
                verdict["rss_anon_drift_pct"]
        why = judge_fds(rows, names, first_rebuild, w, verdict)
        if failed is None and why:
            failed = why
    else:
        failed = failed or "too few samples to judge (%d)" % n
    if failed is None and stats.bad:
        failed = "server errors: %r" % stats.bad[:10]
    verdict["bad_5xx"] = len(stats.bad)
    verdict["result"] = "FAIL: " + failed if failed else "pass"
    print(json.dumps(verdict, indent=1))
    with open(csv[:-4] + ".json", "w") as f:
        json.dump(verdict, f, indent=1)
    srv.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
