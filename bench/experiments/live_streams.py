#!/usr/bin/env python3
"""What 10,000 live-query streams cost the server, checked one thing at a
time (docs/performance.md, "Live queries: 10,000 streams").  Not part of
`make bench`: each check starts its own `cleave serve` on a data directory
seeded with 10,500 products, holds streams with bench/sseload as the
benchmark does (1,000 on p1001..p1500, and 9,000 more on p1501..p10500),
prints what it saw, and stops the server.

    python3 bench/experiments/live_streams.py [--build BUILD] CHECK...

    cost     server CPU per Restock (64 conns, keys no stream reads) with
             no stream, 1, 1,000 and 10,000 streams open, twice
    perf     perf profile of the server under that load with the 10,000
             open: the share of libmicrohttpd 0.9.75's walk of its
             suspended connections (perf0: the same with one stream)
    burst    a product query every 5 ms for 23 s beside 10,000 idle
             streams: the answers slower than 3 ms, and when
    zombie   1,000 streams closed, then 10,000 opened at once: how many
             are refused, and how long the server holds the closed ones
    header   server memory per stream with --max-header 16KiB and 4KiB
    rssback  server memory and threads after the streams are let go
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
RESTOCK = 'POST /commands/Restock {"productId":"p${rnd:1000}","quantity":1}'


class Check:
    def __init__(self, build, data):
        self.build = build
        self.data = data
        self.srv = None

    def bin(self, *path):
        return os.path.join(self.build, *path)

    def serve(self, *extra):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.srv = subprocess.Popen(
            [self.bin("cleave"), "serve", "--data", self.data, "--listen",
             "127.0.0.1:%d" % self.port, "--log-level", "warn"] +
            list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/health" %
                                       self.port, timeout=1)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("cleave serve did not come up")

    def stop(self):
        if self.srv:
            self.srv.send_signal(signal.SIGTERM)
            self.srv.wait(60)
            self.srv = None

    def cpu_s(self):
        f = open("/proc/%d/stat" % self.srv.pid).read().rsplit(")", 1)[1]
        f = f.split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def status(self, key):
        for line in open("/proc/%d/status" % self.srv.pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])

    def metric(self, name):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                      self.port).read().decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])

    def hold(self, conns=1000, idle=9000):
        """sseload holding conns + idle streams; (process, ready line)."""
        p = subprocess.Popen(
            [self.bin("bench", "sseload"), "--port", str(self.port),
             "--conns", str(conns), "--keys", "500", "--key-first", "1001",
             "--idle-conns", str(idle), "--idle-key-first", "1501"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return p, json.loads(p.stdout.readline())

    def close(self, p, wait=True):
        """Closes sseload's streams; with wait, until the server let them
        go.  Returns the seconds that took."""
        p.stdin.write("quit\n")
        p.stdin.flush()
        p.stdout.readline()
        p.wait()
        t = time.time()
        while wait and self.metric("cleave_live_streams") and \
                time.time() - t < 60:
            time.sleep(0.2)
        return time.time() - t

    def load(self, label, secs=4):
        c0, t0 = self.cpu_s(), time.time()
        out = subprocess.run(
            [self.bin("bench", "loadgen"), "--port", str(self.port),
             "--conns", "64", "--duration", str(secs), "--warmup", "0.5",
             "--label", label, "--req", RESTOCK],
            capture_output=True, text=True).stdout
        j = json.loads(out.strip().splitlines()[-1])
        wall = time.time() - t0
        print("%-10s %7.0f commands/s  %5.1f us server CPU/command  "
              "p99 %.1f ms" % (label, j["rps"], (self.cpu_s() - c0) * 1e6 /
                               (j["rps"] * wall), j["p99_ms"]), flush=True)

    # ---- the checks ---------------------------------------------------
    def cost(self):
        self.serve()
        for _ in range(2):
            self.load("none")
            for label, conns, idle in (("1 stream", 1, 0),
                                       ("1,000", 1000, 0),
                                       ("10,000", 1000, 9000)):
                p, _ = self.hold(conns, idle)
                self.load(label)
                self.close(p)

    def perf(self, streams=True):
        self.serve()
        p, _ = self.hold(1000 if streams else 1, 9000 if streams else 0)
        g = subprocess.Popen(
            [self.bin("bench", "loadgen"), "--port", str(self.port),
             "--conns", "64", "--duration", "7", "--warmup", "0.5",
             "--req", RESTOCK], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        pd = os.path.join(os.path.dirname(self.data), "perf.data")
        subprocess.run(["perf", "record", "-F", "499", "-p",
                        str(self.srv.pid), "-o", pd, "--", "sleep", "4"],
                       capture_output=True)
        g.wait()
        self.close(p, wait=False)
        out = subprocess.run(["perf", "report", "-i", pd, "--no-children",
                              "--sort", "dso,symbol", "--stdio"],
                             capture_output=True, text=True).stdout
        lines = [x for x in out.splitlines()
                 if "%" in x and not x.startswith("#")]
        print("\n".join(lines[:8]))
        # the loop of resume_suspended_connections in the Debian 12 build
        # of libmicrohttpd 0.9.75 (libmicrohttpd.so.12.60.0)
        walk = 0.0
        for x in lines:
            m = re.search(r"libmicrohttpd\S*\s+\[\.\]\s+0x([0-9a-f]+)", x)
            if m and 0xa729 <= int(m.group(1), 16) <= 0xa76d:
                walk += float(x.split("%")[0])
        print("libmicrohttpd 0xa729-0xa76d (the suspended list's walk): "
              "%.1f%% of the server's samples" % walk)

    def burst(self):
        self.serve()
        c0 = self.cpu_s()
        time.sleep(5)
        print("idle, no stream: %.1f%% of a core" %
              ((self.cpu_s() - c0) / 5 * 100))
        p, r = self.hold()
        print("streams with a first message: %d %s" % (r["first"],
                                                       r["statuses"]))
        c = http.client.HTTPConnection("127.0.0.1", self.port)
        t0, c0, slow, n = time.time(), self.cpu_s(), [], 0
        while time.time() - t0 < 23:
            t = time.perf_counter()
            c.request("GET", "/queries/product?productId=p5")
            c.getresponse().read()
            n += 1
            ms = (time.perf_counter() - t) * 1e3
            if ms > 3:
                slow.append((round(time.time() - t0, 2), round(ms, 1)))
            time.sleep(0.005)
        print("server CPU with 10,000 idle streams and a query every 5 ms: "
              "%.1f%% of a core" % ((self.cpu_s() - c0) / 23 * 100))
        print("%d queries; slower than 3 ms (s after the streams opened, "
              "ms): %s" % (n, slow))
        self.close(p, wait=False)

    def zombie(self):
        self.serve()
        p, r = self.hold(1000, 0)
        print("opened %d" % r["first"])
        self.close(p, wait=False)
        p, r = self.hold()
        print("10,000 opened right after closing the 1,000: %d streams, "
              "answers %s" % (r["first"], r["statuses"]))
        self.close(p, wait=False)
        t, last = time.time(), None
        while True:
            n = self.metric("cleave_live_streams")
            if n != last:
                print("  %.1f s after closing: cleave_live_streams %d" %
                      (time.time() - t, n))
                last = n
            if not n or time.time() - t > 60:
                break
            time.sleep(0.5)

    def header(self):
        for mh in ("16KiB", "4KiB"):
            self.serve("--max-header", mh)
            r0 = self.status("VmRSS")
            p, r = self.hold()
            time.sleep(2)
            r1 = self.status("VmRSS")
            print("--max-header %s: %d streams, RSS %d -> %d kB: %.1f KB "
                  "per stream" % (mh, r["first"], r0, r1,
                                  (r1 - r0) / r["first"]))
            self.close(p, wait=False)
            self.stop()

    def rssback(self):
        self.serve()
        self.load("warm-up", 2)
        r0 = self.status("VmRSS")
        p, r = self.hold()
        time.sleep(1)
        print("RSS %d MB idle, %d MB with %d streams, threads %d" % (
            r0 / 1024, self.status("VmRSS") / 1024, r["first"],
            self.status("Threads")))
        s = self.close(p)
        print("streams let go %.1f s after closing; RSS %d MB" %
              (s, self.status("VmRSS") / 1024))
        for i in range(1, 7):
            time.sleep(5)
            print("  +%d s: RSS %d MB, threads %d" % (
                5 * i, self.status("VmRSS") / 1024, self.status("Threads")))


def main():
    checks = ["cost", "perf", "perf0", "burst", "zombie", "header",
              "rssback"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("check", nargs="+", choices=checks)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    tmp = tempfile.mkdtemp(prefix="cleave-live-streams-")
    try:
        data = os.path.join(tmp, "data")
        subprocess.run([os.path.join(build, "bench", "inproc"), "seed",
                        "--data", data, "--products", "10500"], check=True,
                       capture_output=True)
        for name in a.check:
            print("== %s" % name, flush=True)
            c = Check(build, data)
            try:
                if name == "perf0":
                    c.perf(streams=False)
                else:
                    getattr(c, name)()
            finally:
                c.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
