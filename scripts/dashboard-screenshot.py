#!/usr/bin/env python3
"""Takes docs/dashboard.png: the dashboard (GET /ui) of a shop under load,
as a headless Chromium shows it at 1400 x 1000.

    python3 scripts/dashboard-screenshot.py [--build build] [--seconds 180]
                                            [--out docs/dashboard.png]

It serves the shop from a fresh data directory seeded by the benchmarks'
seeder (BUILD/bench/inproc seed: 1,000 users, 1,000 products), runs the
benchmarks' load generator (BUILD/bench/loadgen, open loop) beside it — the
checkout mix, restocks and product queries — and a few live queries
(server-sent event streams) so the subscriber count is not the page's
alone; two thirds of the way it presses "verify" on catalog and "rebuild"
on search in the page, so the actions list and the table show them; at the
end it takes the screenshot.  Everything it starts is stopped.  Needs the
bench targets (ninja -C BUILD builds them) and Chromium.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(
    __file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import headless  # noqa: E402


def wait_port(path, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("cleave serve exited with %s" % proc.returncode)
        try:
            with open(path) as f:
                txt = f.read().strip()
            if txt:
                return int(txt)
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("no port file after %d s" % timeout)


def open_streams(port, n):
    """n live queries on product cards, held open (read by nobody)."""
    socks = []
    for i in range(1, n + 1):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(("GET /queries/product?productId=p%d HTTP/1.1\r\n"
                   "Host: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n"
                   % (i, port)).encode())
        socks.append(s)
    return socks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=180,
                    help="load before the screenshot (the plots span 300)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs",
                                                  "dashboard.png"))
    a = ap.parse_args()
    binary = os.path.join(a.build, "cleave")
    loadgen = os.path.join(a.build, "bench", "loadgen")
    inproc = os.path.join(a.build, "bench", "inproc")
    for p in (binary, loadgen, inproc):
        if not os.access(p, os.X_OK):
            raise SystemExit("missing %s (ninja -C %s)" % (p, a.build))

    tmp = tempfile.mkdtemp(prefix="cleave-shot-")
    procs, socks, browser = [], [], None
    try:
        data = os.path.join(tmp, "data")
        subprocess.run([inproc, "seed", "--data", data], check=True,
                       stdout=subprocess.DEVNULL)
        port_file = os.path.join(tmp, "port")
        log = open(os.path.join(tmp, "serve.log"), "wb")
        srv = subprocess.Popen([binary, "serve", "--data", data, "--listen",
                                "127.0.0.1:0", "--port-file", port_file],
                               stdout=log, stderr=log)
        procs.append(srv)
        port = wait_port(port_file, srv)
        base = "http://127.0.0.1:%d" % port
        print("serving on %s, data %s" % (base, data), flush=True)

        def lg(*args):
            p = subprocess.Popen(
                [loadgen, "--port", str(port), "--duration",
                 str(int(a.seconds) + 30), "--warmup", "0"] + list(args),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
        lg("--scenario", "checkout", "--conns", "8", "--rate", "1200",
           "--users", "1000", "--products", "1000", "--scarce", "10",
           "--prefix", "shot")
        lg("--conns", "4", "--rate", "600", "--req",
           'POST /commands/Restock {"productId":"p${rnd:1000}",'
           '"quantity":1}')
        lg("--conns", "8", "--rate", "2500", "--req",
           "GET /queries/product?productId=p${rnd:1000}")
        socks = open_streams(port, 12)

        browser = headless.Browser(1400, 1000)
        page = browser.open(base + "/ui")
        page.wait("document.body.dataset.conn === 'live'", "live", 60)
        t0 = time.time()
        acted = False
        while time.time() - t0 < a.seconds:
            if not acted and time.time() - t0 > a.seconds * 2 / 3:
                click = ("document.querySelector('#projections tr[data-name="
                         "%s]:not(.err) [data-act=%s]').click()")
                page.eval(click % ("catalog", "verify"))
                page.eval(click % ("search", "rebuild"))
                page.eval(click % ("search", "rebuild"))
                acted = True
            left = a.seconds - (time.time() - t0)
            print("\r%3.0f s to the screenshot " % max(0, left), end="",
                  flush=True)
            time.sleep(min(5, max(0.1, left)))
        print()
        page.wait("document.querySelectorAll('#actions li[data-status]')"
                  ".length === 2", "the actions' answers", 120)
        page.screenshot(a.out)
        problems = page.problems()
        if problems:
            print("the page reported:\n  " + "\n  ".join(problems))
        print("wrote %s" % a.out)
    finally:
        if browser:
            browser.close()
        for s in socks:
            s.close()
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
