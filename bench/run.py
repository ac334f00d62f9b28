#!/usr/bin/env python3
"""Cleave's benchmarks beside their baselines, in one run (issue 4).

    python3 bench/run.py --quick      # make bench-quick: < 5 min, quick.json
    python3 bench/run.py              # make bench: longer, 10M-event rebuild,
                                      # results/<date>.md + .png, README table

Every figure is measured in this run, on this machine, next to its
baseline; nothing here asserts a time (STYLE.md rule 11).  Workloads, their
definitions and what limits them: docs/performance.md.

Programs used (built by CMake in BUILD/bench): loadgen (HTTP and Redis RESP
load), inproc (library API; naive SQLite loop; seeding), rebuild (log
generator, rebuild timing), sseload (live-query streams held open and
timed).  The social workload installs BUILD into a temporary prefix and
serves examples/social built against it.  Baselines:
PostgreSQL 15 (own cluster, pgbench with bench/pg/*.sql), Redis 7 (own
instance), naive SQLite, Emmett (npm).
"""
import argparse
import datetime
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from http import client as http_client  # (http is this file's helper)
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUICK_KEYS = [
    "commands_per_s", "checkouts_per_s", "command_p99_ms",
    "inprocess_commands_per_s", "naive_sqlite_commands_per_s",
    "postgres_checkouts_per_s", "query_rps", "redis_get_rps",
    "query_p99_ms", "rebuild_events_per_s", "rebuild_peak_rss_mb",
    "lag_p50_ms", "lag_p99_ms",
    "write_only_commands_per_s", "write_under_read_load_commands_per_s",
    "postgres_write_only_tps", "postgres_write_under_read_load_tps",
    "fanout_100k_visible_ms", "fanout_100k_post_p50_ms",
    "fanout_100k_post_p99_ms", "timeline_rps",
    "sse_subscribers", "sse_push_p50_ms", "sse_push_p99_ms",
    "sse_push_from_send_p50_ms", "sse_push_from_send_p99_ms",
    "sse_push_1k_p50_ms", "sse_push_1k_p99_ms",
    "sse_server_push_p50_ms", "sse_server_push_p99_ms",
    "commands_per_s_with_subscribers", "commands_per_s_without_subscribers",
    "commands_per_s_with_subscribers_on_written_keys",
    "sse_cpu_us_per_command_with_subscribers",
    "sse_cpu_us_per_command_without_subscribers",
    "sse_event_cost_ratio", "sse_wakes_other_keys",
    "sse_rss_per_subscriber_kb",
    "machine", "git_commit",
]
PROJECTIONS = ["catalog", "search", "orders", "revenue", "bestsellers"]
EMMETT_PKGS = ["@event-driven-io/emmett@0.38.5",
               "@event-driven-io/emmett-sqlite@0.38.5", "sqlite3@5"]


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr,
          flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_json(cmd, timeout=None, env=None):
    """Runs a bench program; returns the JSON object on its last line."""
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=timeout, env=env)
    if out.returncode not in (0, 1):
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd),
                                                   out.returncode,
                                                   out.stderr[-2000:]))
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError("%s printed no JSON: %s" % (" ".join(cmd),
                                                       out.stderr[-2000:]))
    return json.loads(lines[-1])


def http(method, url, body=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "%d cores (%s), %.0f GiB, Linux %s" % (os.cpu_count(), model, mem,
                                                   platform.release())


def git_commit():
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"],
                           capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                "--", "src", "include", "domains",
                                "examples/social"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def mark_stall(r):
    """A loadgen result with no answer in its window is a stall, not a
    latency of zero: its latencies become None (n/a)."""
    if not r.get("requests"):
        r["stalled"] = True
        for k in ["p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms",
                  "mean_ms", "checkout_p99_ms"]:
            if k in r:
                r[k] = None
    if r.get("lag_count") == 0:
        for k in ["lag_p50_ms", "lag_p99_ms", "lag_p999_ms", "lag_max_ms"]:
            r[k] = None
    return r


def normalize(r):
    """Applies mark_stall to a stored run (older files kept zeros)."""
    raw = r.get("raw", {})
    for w in ["w1", "w3", "w5", "w6"]:
        x = raw.get(w, {})
        groups = x.values() if w == "w1" else [x]
        for g in groups:
            for v in g.values():
                if isinstance(v, dict) and "requests" in v:
                    mark_stall(v)
    w5 = raw.get("w5", {})
    half = w5.get(50) or w5.get("50")
    if half:
        r["lag_p50_ms"] = half.get("lag_p50_ms")
        r["lag_p99_ms"] = half.get("lag_p99_ms")
    return r


def cpu_pressure():
    """Share of the last 10 s in which some task waited for a CPU."""
    try:
        line = open("/proc/pressure/cpu").readline()
        return float(re.search(r"avg10=([0-9.]+)", line).group(1))
    except (OSError, AttributeError):
        return None


def background_load():
    """Other processes' CPU at the start of a step (the machine is shared)."""
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return "?"


# ---- Cleave server --------------------------------------------------------

class Server:
    def __init__(self, build, data, extra=(), program=None):
        self.port = free_port()
        self.data = data
        self.logf = open(os.path.join(os.path.dirname(data),
                                      "server-%d.log" % self.port), "w")
        self.proc = subprocess.Popen(
            [program or os.path.join(build, "cleave"), "serve", "--data", data,
             "--listen", "127.0.0.1:%d" % self.port, "--log-level", "warn"]
            + list(extra), stdout=self.logf, stderr=self.logf)
        self.url = "http://127.0.0.1:%d" % self.port
        for _ in range(300):
            try:
                if http("GET", self.url + "/health", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("cleave serve did not come up")

    def cpu_s(self):
        """CPU seconds the server used so far (user + system)."""
        f = open("/proc/%d/stat" % self.proc.pid).read().rsplit(")", 1)[1]
        parts = f.split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def status(self):
        """VmRSS (kB) and threads of the server process, now."""
        out = {}
        for line in open("/proc/%d/status" % self.proc.pid):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "Threads"):
                out[k] = int(v.split()[0])
        return {"rss_kb": out.get("VmRSS"), "threads": out.get("Threads")}

    def metrics(self):
        """GET /metrics: {family or family{labels}: value}."""
        out = {}
        for line in http("GET", self.url + "/metrics")[1].decode() \
                .splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()

    def wait_caught_up(self, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            st, body = http("GET", self.url + "/projections")
            j = json.loads(body)
            if all(p["lag_events"] == 0 and p["state"] == "live"
                   for p in j["projections"]):
                return
            time.sleep(0.2)


class Client:
    """One keep-alive HTTP connection (the social workload's own client:
    one request at a time, each timed by the caller)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body else {}
        for attempt in (0, 1):
            if not self.conn:
                self.conn = http_client.HTTPConnection("127.0.0.1",
                                                       self.port, timeout=60)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                body = r.read()
                self.last_bytes = len(body)
                return r.status, json.loads(body or b"null")
            except (http_client.RemoteDisconnected, ConnectionResetError,
                    BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def ok(self, command, body):
        st, ans = self.request("POST", "/commands/" + command,
                               json.dumps(body).encode())
        if st != 200:
            raise RuntimeError("%s %s: %s %s" % (command, body, st, ans))
        return ans

    def close(self):
        if self.conn:
            self.conn.close()


def quantiles_ms(xs):
    """p50, p99 and max of seconds xs, in ms (p99 of n samples: the
    ceil(0.99 n)-th smallest)."""
    xs = sorted(xs)
    q = lambda f: round(xs[min(len(xs) - 1, int(f * len(xs)))] * 1e3, 3)
    return {"n": len(xs), "p50_ms": q(0.5), "p99_ms": q(0.99),
            "max_ms": round(xs[-1] * 1e3, 3)}


def hist_quantiles_ms(before, after, family, qs=(0.5, 0.99)):
    """Quantiles (ms) of what a Prometheus histogram of seconds counted
    between two /metrics samples: the upper bound of the bucket holding
    each (what the server's own figure can tell)."""
    pre = family + '_bucket{le="'
    b = sorted((float(k[len(pre):-2]) if k[len(pre):-2] != "+Inf" else
                float("inf"), after[k] - before.get(k, 0))
               for k in after if k.startswith(pre))
    n = b[-1][1] if b else 0
    out = {"n": int(n)}
    for q in qs:
        v = None
        for le, c in b:
            if n and c >= q * n:
                v = le * 1e3
                break
        out["p%g_ms" % (q * 100)] = v
    return out


class SseLoad:
    """bench/sseload holding live-query streams, driven over its stdin
    (see the top of bench/sseload.c)."""

    def __init__(self, binary, port, logpath, *args):
        self.log = open(logpath, "a")
        self.proc = subprocess.Popen(
            [binary, "--port", str(port)] + [str(a) for a in args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            text=True, bufsize=1)
        self.ready = self.line(300)

    def line(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            raise RuntimeError("sseload said nothing for %d s" % timeout)
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError("sseload ended (%s)" % self.proc.wait())
        return json.loads(text)

    def cmd(self, text, timeout=600):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.line(timeout)

    def quit(self):
        try:
            return self.cmd("quit", 60)
        finally:
            self.proc.stdin.close()
            self.proc.wait(30)
            self.log.close()


class Bench:
    def __init__(self, args):
        self.a = args
        self.build = os.path.abspath(args.build)
        self.bin = os.path.join(self.build, "bench")
        self.tmp = tempfile.mkdtemp(prefix="cleave-bench-")
        os.chmod(self.tmp, 0o755)
        self.r = {"raw": {}}
        self.quick = args.quick
        self.d = 2.0 if self.quick else 10.0       # measured seconds
        self.warm = 0.5 if self.quick else 2.0
        self.run_id = "r%d" % (int(time.time()) % 1000000)
        self.seq = 0

    def prefix(self):
        self.seq += 1
        return "%s-%d" % (self.run_id, self.seq)

    def lg(self, port, *args, resp=False, label="", duration=None,
           srv=None):
        """Runs loadgen; with srv, adds the server's CPU microseconds per
        answered request (the machine is shared: CPU cost per request is
        steadier than requests per second)."""
        cpu0 = srv.cpu_s() if srv else None
        t0 = time.time()
        cmd = [os.path.join(self.bin, "loadgen"), "--port", str(port),
               "--duration", str(duration or self.d), "--warmup",
               str(self.warm), "--prefix", self.prefix(), "--label", label]
        if resp:
            cmd.append("--resp")
        r = mark_stall(run_json(cmd + list(args), timeout=600))
        if srv and r.get("requests"):
            # CPU over the whole run (warmup included) per request answered
            # in it, estimated from the measured rate
            wall = time.time() - t0
            total = r["rps"] * wall
            r["server_cpu_us_per_request"] = round(
                (srv.cpu_s() - cpu0) * 1e6 / total, 1) if total else None
        r["cpu_pressure"] = cpu_pressure()
        return r

    def seeded_dir(self, name):
        d = os.path.join(self.tmp, name)
        run_json_or_none([os.path.join(self.bin, "inproc"), "seed", "--data",
                          d])
        return d

    # ---- workload 1: commands over HTTP --------------------------------
    def w1_commands(self, srv):
        conns = [1, 16, 64, 256]
        out = {"restock": {}, "checkout": {}}
        for c in conns:
            r = self.lg(srv.port, "--conns", str(c), "--req",
                        'POST /commands/Restock {"productId":"p${rnd:1000}",'
                        '"quantity":1}', label="restock-%d" % c, srv=srv)
            out["restock"][c] = r
            log("W1 Restock %3d conns: %8.0f/s p99 %s ms, server %s us CPU/req%s"
                % (c, r["rps"], fmt(r["p99_ms"]),
                   r.get("server_cpu_us_per_request"),
                   " STALLED" if r.get("stalled") else ""))
        for c in conns:
            r = self.lg(srv.port, "--conns", str(c), "--scenario", "checkout",
                        label="checkout-%d" % c, srv=srv)
            out["checkout"][c] = r
            log("W1 checkout mix %3d conns: %8.0f checkouts/s (%0.f cmd/s) "
                "p99 %s ms%s" % (c, r["checkouts_per_s"], r["rps"],
                                 fmt(r["p99_ms"]),
                                 " STALLED" if r.get("stalled") else ""))
        self.r["raw"]["w1"] = out
        best = max(out["restock"].values(), key=lambda x: x["rps"])
        bestc = max(out["checkout"].values(),
                    key=lambda x: x["checkouts_per_s"])
        self.r["commands_per_s"] = best["rps"]
        self.r["command_p99_ms"] = best["p99_ms"]
        self.r["command_peak_conns"] = best["conns"]
        self.r["checkouts_per_s"] = bestc["checkouts_per_s"]
        self.r["checkout_peak_conns"] = bestc["conns"]

    # ---- workload 2: in-process ----------------------------------------
    def w2_inprocess(self):
        d = self.seeded_dir("inproc")
        ip = os.path.join(self.bin, "inproc")
        dur = str(self.d + 1)
        res = {}
        for wl in ["restock", "checkout"]:
            res[wl] = run_json([ip, "cleave", "--data", d, "--workload", wl,
                                "--duration", dur, "--warmup", "1"])
            log("W2 in-process %s: %.0f commands/s (batch %.0f, %.0f B "
                "written/command)" % (wl, res[wl]["commands_per_s"],
                                      res[wl]["mean_batch"],
                                      res[wl]["write_bytes_per_command"]))
        res["restock_write_side_only"] = run_json(
            [ip, "cleave", "--data", d, "--workload", "restock",
             "--duration", dur, "--warmup", "1", "--no-projections"])
        nd = os.path.join(self.tmp, "naive")
        os.makedirs(nd, exist_ok=True)
        res["naive"] = run_json([ip, "naive", "--data", nd, "--duration",
                                 dur])
        log("W2 naive SQLite: %.0f commands/s" %
            res["naive"]["commands_per_s"])
        self.r["raw"]["w2"] = res
        self.r["inprocess_commands_per_s"] = res["restock"]["commands_per_s"]
        self.r["naive_sqlite_commands_per_s"] = res["naive"]["commands_per_s"]

    # ---- workload 3: queries, and Redis GET ----------------------------
    def w3_queries(self, srv, redis_port):
        out = {}
        for c in [50, 256]:
            out["product-%d" % c] = self.lg(
                srv.port, "--conns", str(c), "--req",
                "GET /queries/product?productId=p${rnd:1000}",
                label="product-%d" % c, srv=srv)
            out["search-%d" % c] = self.lg(
                srv.port, "--conns", str(c),
                "--req", "GET /queries/search_products?q=${pick:espresso|"
                "lamp|chair|kettle|tent|novel}&in_stock=true&max_price="
                "${rnd:100000}&sort=price&limit=10",
                "--req", "GET /queries/search_products?category=${pick:"
                "kitchen|garden|books|toys}&min_price=${rnd:50000}&sort="
                "-price&limit=10",
                label="search-%d" % c, srv=srv)
            if redis_port:
                out["redis-%d" % c] = self.lg(
                    redis_port, "--conns", str(c), "--req",
                    "GET product:p${rnd:1000}", resp=True,
                    label="redis-%d" % c)
            for k in ["product", "search", "redis"]:
                x = out.get("%s-%d" % (k, c))
                if x:
                    log("W3 %-7s %3d conns: %8.0f/s p99 %.2f ms" %
                        (k, c, x["rps"], x["p99_ms"]))
        self.r["raw"]["w3"] = out
        self.r["query_rps"] = out["product-50"]["rps"]
        self.r["query_p99_ms"] = out["product-50"]["p99_ms"]
        self.r["redis_get_rps"] = out.get("redis-50", {}).get("rps")

    def w6_under_reads(self, srv, wconns, rebuild):
        """The checkout mix while a second loadgen saturates the query API
        (and, with rebuild, blue-green rebuilds of orders and catalog run)."""
        q = subprocess.Popen(
            [os.path.join(self.bin, "loadgen"), "--port", str(srv.port),
             "--conns", "64", "--duration", str(self.d + self.warm + 2),
             "--warmup", "0", "--label", "reads",
             "--req", "GET /queries/product?productId=p${rnd:1000}",
             "--req", "GET /queries/search_products?q=${pick:espresso|lamp"
             "|chair}&in_stock=true&sort=price&limit=10",
             "--req", "GET /queries/top_products?limit=10",
             "--req", "GET /queries/revenue_daily?country=${pick:SE|DE|FR}"
             "&from=%s&to=%s" % (  # the API takes at most 366 days
                 (datetime.date.today() - datetime.timedelta(days=30))
                 .isoformat(),
                 (datetime.date.today() + datetime.timedelta(days=1))
                 .isoformat())],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        started = []
        if rebuild:
            for p in ["orders", "catalog"]:
                st, _ = http("POST", srv.url + "/projections/%s/rebuild" % p)
                started.append((p, st))
        time.sleep(0.5)
        w = self.lg(srv.port, "--conns", str(wconns), "--scenario",
                    "checkout", label="write-under-reads%s" %
                    ("-and-rebuilds" if rebuild else ""), srv=srv)
        reads = json.loads(q.communicate()[0].strip().splitlines()[-1])
        projections = json.loads(http("GET", srv.url + "/projections")[1])
        srv.wait_caught_up()
        return {"writes": w, "reads": reads, "rebuilds": started,
                "projections": projections}

    # ---- workload 5: propagation lag -----------------------------------
    def w5_lag(self, srv):
        peak = self.r["commands_per_s"]
        conns = self.r.get("command_peak_conns", 64)
        out = {}
        for pct in [10, 50, 90]:
            rate = max(1.0, peak * pct / 100.0)
            r = self.lg(srv.port, "--conns", str(max(conns, 16)),
                        "--scenario", "lag", "--rate", "%.0f" % rate,
                        label="lag-%d" % pct)
            out[pct] = r
            log("W5 lag at %d%% (%.0f/s): p50 %s p99 %s max %s ms "
                "(commands p99 %s ms)%s" % (
                    pct, rate, fmt(r["lag_p50_ms"]), fmt(r["lag_p99_ms"]),
                    fmt(r["lag_max_ms"]), fmt(r["p99_ms"]),
                    " STALLED" if r.get("stalled") else ""))
        self.r["raw"]["w5"] = out
        self.r["lag_p50_ms"] = out[50]["lag_p50_ms"]
        self.r["lag_p99_ms"] = out[50]["lag_p99_ms"]

    # ---- workload 6: two masters ---------------------------------------
    def w6_two_masters(self, srv):
        wconns = 64
        only = self.lg(srv.port, "--conns", str(wconns), "--scenario",
                       "checkout", label="write-only", srv=srv)
        log("W6 write only: %.0f commands/s p99 %.2f ms" %
            (only["rps"], only["p99_ms"]))
        reads_only = self.w6_under_reads(srv, wconns, rebuild=False)
        loaded = self.w6_under_reads(srv, wconns, rebuild=True)
        log("W6 under reads only (%.0f q/s): %.0f commands/s p99 %.2f ms" %
            (reads_only["reads"]["rps"], reads_only["writes"]["rps"],
             reads_only["writes"]["p99_ms"]))
        log("W6 under reads (%.0f q/s) + rebuilds: %.0f commands/s p99 %.2f "
            "ms" % (loaded["reads"]["rps"], loaded["writes"]["rps"],
                    loaded["writes"]["p99_ms"]))
        self.r["raw"]["w6"] = {"write_only": only,
                               "under_reads": reads_only["writes"],
                               "reads_only_reads": reads_only["reads"],
                               "under_load": loaded["writes"],
                               "reads": loaded["reads"],
                               "rebuilds_started": loaded["rebuilds"],
                               "projections_after": loaded["projections"]}
        loaded = loaded["writes"]
        self.r["write_only_commands_per_s"] = only["rps"]
        self.r["write_under_read_load_commands_per_s"] = loaded["rps"]

    # ---- workload 4: rebuild -------------------------------------------
    def w4_rebuild(self):
        rb = os.path.join(self.bin, "rebuild")
        sizes = [250000, 1000000] if self.quick else [1000000, 10000000]
        d = os.path.join(self.tmp, "rebuild")
        out = {"sizes": {}}
        for i, n in enumerate(sizes):
            g = run_json([rb, "gen", "--data", d, "--events", str(n)],
                         timeout=3600)
            log("W4 log of %d events written (%.0f events/s)" %
                (g["generated_events"] + (0 if i else 2011),
                 g["events_per_s"]))
            shutil.rmtree(os.path.join(d, "read"), ignore_errors=True)
            allp = run_json([rb, "measure", "--data", d, "--what", "all"],
                            timeout=7200)
            log("W4 %d events, all projections from empty: %.0f events/s, "
                "peak RSS %.0f MB (anon %.0f MB)" %
                (allp["events"], allp["events_per_s"], allp["peak_rss_mb"],
                 allp["peak_anon_rss_mb"]))
            per = {}
            # one projection at a time (blue-green rebuild), on the larger
            # log: 1M events (bench-quick) or 10M (bench), as issue 4 asks;
            # "all" on both sizes shows RSS against the log's length
            if i == len(sizes) - 1:
                for p in PROJECTIONS:
                    per[p] = run_json([rb, "measure", "--data", d, "--what",
                                       p], timeout=7200)
                    log("W4   %-11s %.0f events/s, peak RSS %.0f MB (anon "
                        "%.0f MB)" % (p, per[p]["events_per_s"],
                                      per[p]["peak_rss_mb"],
                                      per[p]["peak_anon_rss_mb"]))
            out["sizes"][n] = {"gen": g, "all": allp, "each": per}
        self.r["raw"]["w4"] = out
        big = out["sizes"][sizes[-1]]["all"]
        each = [v for s in out["sizes"].values() for v in s["each"].values()]
        slowest = min(each, key=lambda x: x["events_per_s"]) if each else big
        self.r["rebuild_events_per_s"] = slowest["events_per_s"]
        self.r["rebuild_slowest_projection"] = slowest["what"]
        self.r["rebuild_all_events_per_s"] = big["events_per_s"]
        self.r["rebuild_peak_rss_mb"] = max(
            [s["all"]["peak_rss_mb"] for s in out["sizes"].values()] +
            [v["peak_rss_mb"] for v in each])
        small, large = (out["sizes"][sizes[0]]["all"],
                        out["sizes"][sizes[-1]]["all"])
        self.r["rebuild_anon_rss_mb_small_large"] = [
            small["peak_anon_rss_mb"], large["peak_anon_rss_mb"]]

    # ---- social: a post by an author with 100,000 followers -------------
    def social(self):
        """examples/social as its users build it: BUILD installed into a
        temporary prefix (`cmake --install`, no rebuild), the example copied
        out of the tree and built there with the installed pkg-config file
        (PATH alone), served by the installed program with --domain.  An
        author with F followers (F - 1 registered and following over
        parallel loadgens, then one last follower), then: the author's
        Posts, each followed at once by the last follower's timeline until
        it shows the post; the same for an author with no followers (the
        post query until it shows it); then timeline reads/s."""
        F = self.a.social_followers
        res = {"followers": F}
        self.r["raw"]["social"] = res
        srv = None
        start = time.time()
        try:
            t0 = time.time()
            prefix = os.path.join(self.tmp, "prefix")
            src = os.path.join(self.tmp, "social-src")
            run = lambda cmd, **kw: subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, **kw)
            p = run(["cmake", "--install", self.build, "--prefix", prefix])
            if p.returncode:
                raise RuntimeError("cmake --install: " +
                                   (p.stdout + p.stderr)[-800:])
            shutil.copytree(os.path.join(ROOT, "examples", "social"), src,
                            ignore=shutil.ignore_patterns(
                                "*.so", "*.o", "__pycache__"))
            p = run(["make", "PKG_CONFIG_PATH=" +
                     os.path.join(prefix, "lib", "pkgconfig")], cwd=src,
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
            if p.returncode:
                raise RuntimeError("make (examples/social): " +
                                   (p.stdout + p.stderr)[-800:])
            res["install_build_s"] = round(time.time() - t0, 1)
            d = os.path.join(self.tmp, "social")
            os.makedirs(d)
            srv = Server(self.build, os.path.join(d, "data"),
                         ["--domain", os.path.join(src, "social.so")],
                         program=os.path.join(prefix, "bin", "cleave"))
            self.social_run(srv, F, res)
        except Exception as e:  # what failed is the result
            res["error"] = str(e)[-800:]
            log("social: %s" % res["error"])
        finally:
            if srv:
                srv.stop()
            res["seconds"] = round(time.time() - start, 1)
            log("social: %.1f s in all" % res["seconds"])

    def social_run(self, srv, F, res):
        c, cq = Client(srv.port), Client(srv.port)
        for u in ["star", "lonely"]:
            c.ok("RegisterUser", {"userId": u, "name": u})
        # F - 1 followers fan<i>-0-<n> (loadgen's ${id} with --prefix
        # fan<i> and one connection: n = 1.. in order), over K loadgens of
        # one connection each, so that the Follows name the same ids
        K = 9
        parts = [x for x in ((F - 1) // K + (i < (F - 1) % K)
                             for i in range(K)) if x]

        def fan(label, template):
            t = time.time()
            procs = [subprocess.Popen(
                [os.path.join(self.bin, "loadgen"), "--port", str(srv.port),
                 "--conns", "1", "--requests", str(m), "--prefix",
                 "fan%d" % i, "--label", label, "--req", template],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for i, m in enumerate(parts)]
            outs = [p.communicate()[0] for p in procs]
            ok = 0
            for p, o in zip(procs, outs):
                lines = [l for l in o.splitlines() if l.startswith("{")]
                if p.returncode or not lines:
                    raise RuntimeError("loadgen %s failed (%d)" %
                                       (label, p.returncode))
                ok += json.loads(lines[-1])["status"].get("200", 0)
            if ok != F - 1:
                raise RuntimeError("%s: %d of %d answered 200" %
                                   (label, ok, F - 1))
            return round(time.time() - t, 1)
        res["register_s"] = fan(
            "social-register",
            'POST /commands/RegisterUser {"userId":"${id}","name":"fan"}')
        res["follow_s"] = fan(
            "social-follow",
            'POST /commands/Follow {"followerId":"${id}","followeeId":'
            '"star"}')
        last = "fan-last"
        c.ok("RegisterUser", {"userId": last, "name": last})
        pos = c.ok("Follow", {"followerId": last,
                              "followeeId": "star"})["position"]
        t = time.time()
        st, u = cq.request("GET", "/queries/user?userId=star&min_position="
                           "%d&wait_ms=120000" % pos)
        res["catch_up_s"] = round(time.time() - t, 1)
        if st != 200 or u["followers"] != F:
            raise RuntimeError("the author has %s followers, not %d" %
                               (u.get("followers"), F))
        log("social: %d followers in %.1f s (register %.1f s, follow %.1f s,"
            " projection caught up %.1f s later; install and build %.1f s)" %
            (F, res["register_s"] + res["follow_s"] + res["catch_up_s"],
             res["register_s"], res["follow_s"], res["catch_up_s"],
             res["install_build_s"]))
        srv.wait_caught_up()

        # each Post is timed to its answer, then its visibility from that
        # answer on: the last follower's timeline (the author with
        # followers) or the post query (the author with none), asked with
        # min_position=<the post's position> until the answer shows it
        n = 200 if self.quick else 1000
        lat = {"star": [], "lonely": []}
        vis = {"star": [], "lonely": []}
        polls = 0
        t0 = time.time()
        for i in range(n):
            for who in ("lonely", "star"):
                pid = "%s-%d" % (who, i)
                t = time.perf_counter()
                pos = c.ok("Post", {"postId": pid, "userId": who,
                                    "text": "post %d of %s" % (i, who)}
                           )["position"]
                ack = time.perf_counter()
                lat[who].append(ack - t)
                if who == "star":
                    path = ("/queries/timeline?userId=%s&min_position=%d" %
                            (last, pos))
                    seen = lambda a: any(x["postId"] == pid
                                         for x in a.get("items", []))
                else:
                    path = "/queries/post?postId=%s&min_position=%d" % (
                        pid, pos)
                    seen = lambda a: a.get("postId") == pid
                while True:
                    st, a = cq.request("GET", path)
                    polls += 1
                    if st == 200 and seen(a):
                        break
                    if time.perf_counter() - ack > 60:
                        raise RuntimeError("%s not visible after 60 s: %s %s"
                                           % (pid, st, a))
                vis[who].append(time.perf_counter() - ack)
        res["posts_s"] = round(time.time() - t0, 1)
        res["post"] = {k: quantiles_ms(v) for k, v in lat.items()}
        res["visible"] = {k: quantiles_ms(v) for k, v in vis.items()}
        res["visible_polls_per_post"] = round(polls / (2.0 * n), 3)
        cq.request("GET", "/queries/timeline?userId=" + last)
        res["timeline_answer_bytes"] = cq.last_bytes
        cq.request("GET", "/queries/user?userId=" + last)
        res["user_answer_bytes"] = cq.last_bytes
        c.close()
        cq.close()
        log("social: Post p50 %s p99 %s ms with %d followers, p50 %s p99 %s "
            "ms with none; the last follower's timeline shows it %s ms "
            "(p50; p99 %s) after the answer" % (
                res["post"]["star"]["p50_ms"], res["post"]["star"]["p99_ms"],
                F, res["post"]["lonely"]["p50_ms"],
                res["post"]["lonely"]["p99_ms"],
                res["visible"]["star"]["p50_ms"],
                res["visible"]["star"]["p99_ms"]))

        # timeline reads: any follower's first page (the author's newest
        # 20 posts), as W3's product query: 50 connections, same windows
        srv.wait_caught_up()
        r = self.lg(srv.port, "--conns", "50", "--req",
                    "GET /queries/timeline?userId=fan${pick:%s}-0-${rnd:%d}"
                    % ("|".join(str(i) for i in range(len(parts))),
                       min(parts)), label="timeline-50", srv=srv)
        res["timeline"] = r
        log("social: timeline 50 conns: %.0f/s p99 %s ms (errors %d)%s" % (
            r["rps"], fmt(r["p99_ms"]), r["errors"],
            " STALLED" if r.get("stalled") else ""))
        self.r["fanout_100k_visible_ms"] = res["visible"]["star"]["p50_ms"]
        self.r["fanout_100k_visible_p99_ms"] = res["visible"]["star"][
            "p99_ms"]
        self.r["fanout_100k_post_p50_ms"] = res["post"]["star"]["p50_ms"]
        self.r["fanout_100k_post_p99_ms"] = res["post"]["star"]["p99_ms"]
        self.r["post_no_followers_p50_ms"] = res["post"]["lonely"]["p50_ms"]
        self.r["timeline_rps"] = r["rps"]
        self.r["timeline_p99_ms"] = r["p99_ms"]

    # ---- live queries: 10,000 server-sent event streams -----------------
    LIVE_PRODUCTS = 10500   # p1..p1000 written by the command load,
    #                         p1001..p1500 probed (2 streams each),
    #                         p1501..p10500 held (1 stream each)

    def live(self):
        """Live queries (GET /queries/product with Accept:
        text/event-stream) held open by bench/sseload on their own server
        and data (10,500 products): 1,000 streams (2 on each of p1001..
        p1500), then the same 1,000 plus 9,000 on p1501..p10500 (one each).
        In each: push latency of one Restock every 50 ms on a random probed
        key, client-side (from the command's answer, and from its send, to
        each of the key's streams) and the server's own
        cleave_live_push_latency_seconds over the same probes; server RSS
        and threads. With the 10,000 held: the W1 Restock load on p1..p1000
        (keys no stream reads: the wakes counter must not move) and on
        p1001..p10500 (every key written has streams), beside the same
        load with no stream before and after (same run: the ratio is the
        figure)."""
        res = {}
        self.r["raw"]["live"] = res
        srv = None
        start = time.time()
        try:
            d = os.path.join(self.tmp, "live")
            run_json_or_none([os.path.join(self.bin, "inproc"), "seed",
                              "--data", d, "--products",
                              str(self.LIVE_PRODUCTS)])
            srv = Server(self.build, d)
            self.live_run(srv, res)
        except Exception as e:  # what failed is the result
            res["error"] = str(e)[-800:]
            log("live: %s" % res["error"])
        finally:
            if srv:
                srv.stop()
            res["seconds"] = round(time.time() - start, 1)
            log("live: %.1f s in all" % res["seconds"])

    def live_drained(self, srv, res, key):
        """Waits until the server has let go of the closed streams (it
        notices a closed one when it next writes to it: a keep-alive)."""
        t = time.time()
        while time.time() - t < 60:
            if srv.metrics().get("cleave_live_streams", 0) == 0:
                break
            time.sleep(0.2)
        res[key] = round(time.time() - t, 1)

    def live_run(self, srv, res):
        sl_bin = os.path.join(self.bin, "sseload")
        sl_log = os.path.join(self.tmp, "sseload.log")
        probes = 200 if self.quick else 1000
        other = ('POST /commands/Restock {"productId":"p${rnd:1000}",'
                 '"quantity":1}')
        written = ('POST /commands/Restock {"productId":'
                   '"p${rnd:1001-%d}","quantity":1}' % self.LIVE_PRODUCTS)
        srv.wait_caught_up()
        lg = lambda label, req: self.lg(srv.port, "--conns", "64", "--req",
                                        req, label=label, srv=srv)

        def load(label, req):
            m0 = srv.metrics()
            r = lg(label, req)
            m1 = srv.metrics()
            srv.wait_caught_up()
            m2 = srv.metrics()
            r["live_wakes"] = int(m2.get("cleave_live_wakes_total", 0) -
                                  m0.get("cleave_live_wakes_total", 0))
            r["live_messages"] = int(
                m2.get("cleave_live_messages_total", 0) -
                m0.get("cleave_live_messages_total", 0))
            r["live_coalesced"] = int(
                m1.get("cleave_live_coalesced_total", 0) -
                m0.get("cleave_live_coalesced_total", 0))
            r["live_dropped"] = int(m2.get("cleave_live_dropped_total", 0) -
                                    m0.get("cleave_live_dropped_total", 0))
            log("live %-26s %8.0f commands/s, %s us server CPU/command, "
                "wakes %d, messages %d%s" % (
                    label, r["rps"], r.get("server_cpu_us_per_request"),
                    r["live_wakes"], r["live_messages"],
                    " STALLED" if r.get("stalled") else ""))
            return r

        res["none_before"] = load("no streams", other)
        res["idle"] = srv.status()
        for n, idle in ((1000, 0), (10000, 9000)):
            ph = {}
            res["s%d" % n] = ph
            sl = SseLoad(sl_bin, srv.port, sl_log, "--conns", "1000",
                         "--keys", "500", "--key-first", "1001",
                         "--idle-conns", idle, "--idle-key-first", "1501")
            try:
                ph["ready"] = sl.ready
                time.sleep(1)
                ph["server"] = srv.status()
                log("live %5d streams: %d with their first message, %d "
                    "refused %s, open in %.1f s (first message p50 %.1f "
                    "p99 %.1f ms); server RSS %.0f MB, %d threads" % (
                        n, sl.ready["first"], sl.ready["failed"],
                        sl.ready["statuses"], sl.ready["open_s"],
                        sl.ready["first_message"]["p50_ms"],
                        sl.ready["first_message"]["p99_ms"],
                        ph["server"]["rss_kb"] / 1024.0,
                        ph["server"]["threads"]))
                m0 = srv.metrics()
                ph["probe"] = pr = sl.cmd("probe 50 %d" % probes)
                m1 = srv.metrics()
                ph["server_push"] = hist_quantiles_ms(
                    m0, m1, "cleave_live_push_latency_seconds")
                log("live %5d streams: push (answer -> message) p50 %.2f "
                    "p99 %.2f ms, (send -> message) p50 %.2f p99 %.2f ms, "
                    "server wake -> socket p50 <= %s p99 <= %s ms; %d of %d "
                    "delivered, %d before the answer; Restock p50 %.2f ms"
                    % (n, pr["from_answer"]["p50_ms"],
                       pr["from_answer"]["p99_ms"],
                       pr["from_send"]["p50_ms"], pr["from_send"]["p99_ms"],
                       fmt(ph["server_push"]["p50_ms"]),
                       fmt(ph["server_push"]["p99_ms"]), pr["deliveries"],
                       pr["expected"], pr["before_answer"],
                       pr["command"]["p50_ms"]))
                if not idle:
                    res["other_keys_1k"] = load("1,000 streams, other keys",
                                                other)
                if idle:
                    s0 = sl.cmd("stats")
                    res["other_keys"] = load("10,000 streams, other keys",
                                             other)
                    s1 = sl.cmd("stats")
                    res["written_keys"] = load(
                        "10,000 streams, keys written", written)
                    s2 = sl.cmd("stats")
                    res["other_keys"]["stream_messages"] = (
                        s1["messages"] - s0["messages"])
                    res["written_keys"]["stream_messages"] = (
                        s2["messages"] - s1["messages"])
                    ph["after_loads"] = s2
                    ph["server_after_loads"] = srv.status()
            finally:
                ph["quit"] = sl.quit()
            self.live_drained(srv, ph, "drained_s")
        res["none_after"] = load("no streams (after)", other)
        res["idle_after"] = srv.status()

        # the figures
        s1k, s10k = res["s1000"], res["s10000"]
        held = (s10k["after_loads"]["first"] -
                s10k["after_loads"]["closed_after_first"])
        none = [res["none_before"], res["none_after"]]
        mean = lambda xs: sum(xs) / len(xs) if all(
            x is not None for x in xs) else None
        none_rps = mean([x["rps"] for x in none])
        none_cpu = mean([x.get("server_cpu_us_per_request") for x in none])
        oth = res["other_keys"]
        self.r["sse_subscribers"] = held
        self.r["sse_push_p50_ms"] = s10k["probe"]["from_answer"]["p50_ms"]
        self.r["sse_push_p99_ms"] = s10k["probe"]["from_answer"]["p99_ms"]
        self.r["sse_push_from_send_p50_ms"] = \
            s10k["probe"]["from_send"]["p50_ms"]
        self.r["sse_push_from_send_p99_ms"] = \
            s10k["probe"]["from_send"]["p99_ms"]
        self.r["sse_push_1k_p50_ms"] = s1k["probe"]["from_answer"]["p50_ms"]
        self.r["sse_push_1k_p99_ms"] = s1k["probe"]["from_answer"]["p99_ms"]
        self.r["sse_server_push_p50_ms"] = s10k["server_push"]["p50_ms"]
        self.r["sse_server_push_p99_ms"] = s10k["server_push"]["p99_ms"]
        self.r["commands_per_s_with_subscribers"] = oth["rps"]
        self.r["commands_per_s_without_subscribers"] = none_rps
        self.r["commands_per_s_with_subscribers_on_written_keys"] = \
            res["written_keys"]["rps"]
        cpu = oth.get("server_cpu_us_per_request")
        self.r["sse_cpu_us_per_command_with_subscribers"] = cpu
        self.r["sse_cpu_us_per_command_without_subscribers"] = (
            round(none_cpu, 1) if none_cpu else None)
        self.r["sse_event_cost_ratio"] = (round(cpu / none_cpu, 3)
                                          if cpu and none_cpu else None)
        self.r["sse_wakes_other_keys"] = oth["live_wakes"]
        self.r["sse_rss_per_subscriber_kb"] = round(
            (s10k["server"]["rss_kb"] - res["idle"]["rss_kb"]) /
            max(1, s10k["ready"]["first"]), 1)
        res["rss_per_subscriber_kb_1k"] = round(
            (s1k["server"]["rss_kb"] - res["idle"]["rss_kb"]) /
            max(1, s1k["ready"]["first"]), 1)
        log("live: %d streams held; push p50 %s p99 %s ms (1,000: %s / %s); "
            "Restock %s/s beside them on other keys, %s/s with none "
            "(CPU per command x%s, wakes %s), %s/s on their keys; %s KB "
            "per stream" % (
                held, self.r["sse_push_p50_ms"], self.r["sse_push_p99_ms"],
                self.r["sse_push_1k_p50_ms"], self.r["sse_push_1k_p99_ms"],
                fmt(oth["rps"]), fmt(none_rps),
                self.r["sse_event_cost_ratio"], oth["live_wakes"],
                fmt(res["written_keys"]["rps"]),
                self.r["sse_rss_per_subscriber_kb"]))

    # ---- baselines -----------------------------------------------------
    def redis_start(self):
        rs = shutil.which("redis-server")
        if not rs:
            log("redis-server not installed: no Redis baseline")
            return None
        port = free_port()
        self.redis = subprocess.Popen(
            [rs, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not come up")

    def redis_fill(self, port, srv):
        """SET product:pK to the exact document Cleave's product query
        answers (same bytes, same size)."""
        s = socket.create_connection(("127.0.0.1", port))
        out = b""
        for k in range(1, 1001):
            st, body = http("GET", srv.url +
                            "/queries/product?productId=p%d" % k)
            key = b"product:p%d" % k
            out += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(key), key, len(body), body)
        s.sendall(out)
        got = b""
        while got.count(b"\r\n") < 1000:
            got += s.recv(65536)
        s.close()

    def pg(self):
        """PostgreSQL 15 as the single database: own cluster, pgbench."""
        pgbin = "/usr/lib/postgresql/15/bin"
        if not os.path.exists(os.path.join(pgbin, "initdb")):
            log("PostgreSQL 15 not installed: no PostgreSQL baseline")
            return
        d = os.path.join(self.tmp, "pg")
        os.makedirs(d)
        user = "postgres" if os.getuid() == 0 else None
        if user:
            shutil.chown(d, user, user)
        pre = ["runuser", "-u", user, "--"] if user else []
        port = free_port()
        sub = lambda cmd, **kw: subprocess.run(pre + cmd, check=True,
                                               capture_output=True,
                                               text=True, **kw)
        sub([pgbin + "/initdb", "-D", d + "/data", "-A", "trust", "-U",
             "postgres", "--no-sync"])
        opts = ("-p %d -k %s -c listen_addresses='' -c fsync=on "
                "-c synchronous_commit=on -c max_connections=400 "
                "-c shared_buffers=512MB" % (port, d))
        sub([pgbin + "/pg_ctl", "-D", d + "/data", "-o", opts, "-l",
             d + "/log", "-w", "start"])
        self.pg_stop = lambda: subprocess.run(
            pre + [pgbin + "/pg_ctl", "-D", d + "/data", "-m", "fast",
                   "stop"], capture_output=True)
        try:
            conn = ["-h", d, "-p", str(port), "-U", "postgres"]
            schema = subprocess.run([os.path.join(self.bin, "inproc"),
                                     "schema"], capture_output=True,
                                    text=True, check=True).stdout
            for sql in [schema, open(os.path.join(HERE, "pg",
                                                  "setup.sql")).read()]:
                subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1"] +
                               conn + ["postgres"], input=sql, text=True,
                               check=True, capture_output=True)
            res = {"checkout": {}}
            for c in [1, 16, 64, 256]:
                res["checkout"][c] = self.pgbench(conn, "checkout.sql", c)
                log("PG checkout %3d clients: %7.0f checkouts/s (%0.f "
                    "txn/s) p99 %s ms" % (c, res["checkout"][c]["tps"],
                                          4 * res["checkout"][c]["tps"],
                                          fmt(res["checkout"][c]["p99_ms"])))
            only = self.pgbench(conn, "checkout.sql", 64)
            reads = subprocess.Popen(
                ["pgbench", "-n", "-M", "prepared", "-f",
                 os.path.join(HERE, "pg", "dashboard.sql"), "-c", "64",
                 "-j", "2", "-T", str(int(self.d + self.warm + 2))] + conn +
                ["postgres"], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True)
            time.sleep(0.5)
            loaded = self.pgbench(conn, "checkout.sql", 64)
            rout = reads.communicate()[0]
            m = re.search(r"tps = ([0-9.]+)", rout)
            res["write_only"] = only
            res["under_read_load"] = loaded
            res["dashboard_qps"] = float(m.group(1)) if m else None
            log("PG two masters: write only %.0f txn/s, with dashboards "
                "%.0f txn/s (dashboards %s q/s)" %
                (4 * only["tps"], 4 * loaded["tps"], res["dashboard_qps"]))
            self.r["raw"]["postgres"] = res
            self.r["postgres_checkouts_per_s"] = max(
                x["tps"] for x in res["checkout"].values())
            # each checkout is 4 transactions (AddToCart x3, Checkout), as
            # Cleave's mix is 4 commands: tps here = transactions/s
            self.r["postgres_write_only_tps"] = 4 * only["tps"]
            self.r["postgres_write_under_read_load_tps"] = 4 * loaded["tps"]
        finally:
            self.pg_stop()

    def pgbench(self, conn, script, clients):
        logdir = tempfile.mkdtemp(dir=self.tmp)
        os.chmod(logdir, 0o777)
        out = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-f",
             os.path.join(HERE, "pg", script), "-c", str(clients), "-j",
             str(min(clients, 2)), "-T", str(max(4, int(self.d + self.warm))),
             "-l", "--log-prefix", os.path.join(logdir, "pgb")] + conn +
            ["postgres"], capture_output=True, text=True, cwd=logdir)
        if out.returncode != 0 and "tps" not in out.stdout:
            raise RuntimeError("pgbench: " + out.stdout[-1500:] +
                               out.stderr[-1500:])
        m = re.search(r"tps = ([0-9.]+)", out.stdout)
        failed = re.search(r"number of failed transactions: (\d+)",
                           out.stdout)
        lat = []
        for f in os.listdir(logdir):
            if f.startswith("pgb"):
                for line in open(os.path.join(logdir, f)):
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]))
        lat.sort()
        shutil.rmtree(logdir, ignore_errors=True)
        q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] / 1000.0 \
            if lat else None
        return {"clients": clients, "tps": float(m.group(1)) if m else 0,
                "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999),
                "failed": int(failed.group(1)) if failed else None,
                "aborted": "aborted" in out.stdout + out.stderr}

    def emmett(self):
        """Emmett (Node.js) doing command -> event -> projection on SQLite."""
        cache = os.path.join(os.environ.get("XDG_CACHE_HOME",
                                            os.path.expanduser("~/.cache")),
                             "cleave-bench", "emmett-0.38.5")
        res = {"packages": EMMETT_PKGS}
        try:
            if not os.path.exists(os.path.join(cache, "node_modules",
                                               "sqlite3", "build", "Release",
                                               "node_sqlite3.node")):
                if self.quick:
                    raise RuntimeError(
                        "not installed in %s (bench-quick does not install "
                        "it: building sqlite3@5 from source takes minutes; "
                        "`make bench` does)" % cache)
                os.makedirs(cache, exist_ok=True)
                if not os.path.exists(os.path.join(cache, "package.json")):
                    open(os.path.join(cache, "package.json"), "w").write(
                        '{"name":"cleave-bench-emmett","private":true,'
                        '"type":"module"}\n')
                inst = subprocess.run(["npm", "install", "--no-audit",
                                       "--no-fund"] + EMMETT_PKGS, cwd=cache,
                                      capture_output=True, text=True,
                                      timeout=3600)
                if inst.returncode:
                    raise RuntimeError("npm install failed: " +
                                       inst.stderr[-800:])
            shutil.copy(os.path.join(HERE, "emmett", "bench.mjs"), cache)
            d = os.path.join(self.tmp, "emmett")
            os.makedirs(d)
            for conc in [1, 16]:
                out = subprocess.run(
                    ["node", os.path.join(cache, "bench.mjs"),
                     os.path.join(d, "emmett-%d.db" % conc), str(self.d),
                     str(conc)],
                    capture_output=True, text=True, timeout=600, cwd=cache)
                line = [l for l in out.stdout.splitlines()
                        if l.startswith("{")]
                if out.returncode or not line:
                    res["c%d" % conc] = {"error": (out.stderr or
                                                   out.stdout)[-600:]}
                    log("Emmett %d concurrent: failed: %s" %
                        (conc, (out.stderr or out.stdout)[-300:]))
                else:
                    res["c%d" % conc] = json.loads(line[-1])
                    log("Emmett %d concurrent: %s" % (conc, line[-1]))
        except Exception as e:  # what failed is the result
            res["error"] = str(e)[-800:]
            log("Emmett: %s" % res["error"])
        self.r["raw"]["emmett"] = res

    # ---- the run -------------------------------------------------------
    def run(self):
        t0 = time.time()
        self.r["machine"] = machine()
        self.r["git_commit"] = self.a.commit or git_commit()
        self.r["started"] = datetime.datetime.now(
            datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.r["loadavg_at_start"] = background_load()
        only = set(self.a.only.split(",")) if self.a.only else None
        want = lambda w: only is None or w in only
        srv = None
        redis_port = None
        try:
            if want("w1") or want("w3") or want("w5") or want("w6"):
                d = self.seeded_dir("http")
                srv = Server(self.build, d)
            if want("w1"):
                self.w1_commands(srv)
            if want("w3"):
                # projections still applying W1's commands would take CPU
                # from the queries being measured
                srv.wait_caught_up()
                redis_port = self.redis_start()
                if redis_port:
                    self.redis_fill(redis_port, srv)
                self.w3_queries(srv, redis_port)
            if want("w5"):
                if "commands_per_s" not in self.r:
                    self.r["commands_per_s"] = self.lg(
                        srv.port, "--conns", "64", "--req",
                        'POST /commands/Restock {"productId":'
                        '"p${rnd:1000}","quantity":1}')["rps"]
                srv.wait_caught_up()
                self.w5_lag(srv)
            if want("w6"):
                srv.wait_caught_up()
                self.w6_two_masters(srv)
        finally:
            if srv:
                srv.stop()
            if getattr(self, "redis", None):
                self.redis.terminate()
                self.redis.wait()
        if want("social"):
            self.social()
        if want("live"):
            self.live()
        if want("w2"):
            self.w2_inprocess()
        if want("pg"):
            self.pg()
        if want("emmett"):
            self.emmett()
        if want("w4"):
            self.w4_rebuild()
        self.r["loadavg_at_end"] = background_load()
        self.r["seconds"] = round(time.time() - t0, 1)
        return self.r


def run_json_or_none(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


# ---- reporting ----------------------------------------------------------

def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v < 100:
        return "%.2f%s" % (v, unit)
    return "{:,.0f}{}".format(v, unit)


def ratio(a, b):
    if a is None or not b:
        return "n/a"
    return "%.2f×" % (a / b)


def table(r):
    """The figures beside their baselines and targets (markdown)."""
    followers = "{:,}".format(
        r.get("raw", {}).get("social", {}).get("followers", 100000))
    rows = [
        ("HTTP Restock, commands/s (best of 1/16/64/256 conns)",
         r.get("commands_per_s"), "naive SQLite loop",
         r.get("naive_sqlite_commands_per_s"), "≥ 50,000"),
        ("HTTP checkout mix, checkouts/s (AddToCart×3 + Checkout)",
         r.get("checkouts_per_s"), "PostgreSQL outbox, checkouts/s",
         r.get("postgres_checkouts_per_s"), "≥ 20,000 and ≥ 10× PG"),
        ("HTTP Restock p99 at the peak, ms", r.get("command_p99_ms"), "",
         None, ""),
        ("in-process Restock, commands/s", r.get("inprocess_commands_per_s"),
         "naive SQLite (1 txn + fsync per command)",
         r.get("naive_sqlite_commands_per_s"), "≥ 200,000"),
        ("product query, 50 conns, req/s", r.get("query_rps"),
         "Redis GET of the same document, 50 conns",
         r.get("redis_get_rps"), "≥ Redis"),
        ("product query p99, ms", r.get("query_p99_ms"), "", None, "≤ 1 ms"),
        ("social timeline query (a follower's first page), 50 conns, "
         "req/s", r.get("timeline_rps"), "product query, 50 conns",
         r.get("query_rps"), ""),
        ("social Post by an author with %s followers, p50 ms" % followers,
         r.get("fanout_100k_post_p50_ms"), "Post by an author with none",
         r.get("post_no_followers_p50_ms"), ""),
        ("… the last follower's timeline shows it, ms after the answer "
         "(p50)", r.get("fanout_100k_visible_ms"), "", None, ""),
        ("rebuild, events/s (slowest projection)",
         r.get("rebuild_events_per_s"), "", None, "≥ 1,000,000"),
        ("rebuild peak RSS, MB", r.get("rebuild_peak_rss_mb"), "", None,
         "flat in log length"),
        ("lag at 50% of peak, p50 ms", r.get("lag_p50_ms"), "", None, ""),
        ("lag at 50% of peak, p99 ms", r.get("lag_p99_ms"), "", None,
         "≤ 10 ms"),
        ("live queries: streams held, each with its first message",
         r.get("sse_subscribers"), "", None, ""),
        ("… push, a command's answer → the message on its key's streams, "
         "p99 ms", r.get("sse_push_p99_ms"), "with 1,000 streams",
         r.get("sse_push_1k_p99_ms"), ""),
        ("… HTTP Restock commands/s beside them (other keys)",
         r.get("commands_per_s_with_subscribers"), "no streams, same run",
         r.get("commands_per_s_without_subscribers"), ""),
        ("… server CPU per Restock beside them (other keys: no wake), µs",
         r.get("sse_cpu_us_per_command_with_subscribers"),
         "no streams, same run",
         r.get("sse_cpu_us_per_command_without_subscribers"), ""),
        ("… server memory per stream, KB", r.get("sse_rss_per_subscriber_kb"),
         "", None, ""),
        ("checkout-mix writes, no reads, commands/s",
         r.get("write_only_commands_per_s"), "PostgreSQL, txn/s",
         r.get("postgres_write_only_tps"), ""),
        ("… with queries saturated + rebuilds, commands/s",
         r.get("write_under_read_load_commands_per_s"),
         "PostgreSQL with dashboard queries, txn/s",
         r.get("postgres_write_under_read_load_tps"), "≥ 90% of write-only"),
    ]
    out = ["| figure | Cleave | baseline | baseline figure | ratio | target |",
           "|---|---:|---|---:|---:|---|"]
    for name, v, bname, bv, target in rows:
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt(v), bname, fmt(bv) if bname else "",
            ratio(v, bv) if bname else "", target))
    wo, wl = (r.get("write_only_commands_per_s"),
              r.get("write_under_read_load_commands_per_s"))
    po, pl = (r.get("postgres_write_only_tps"),
              r.get("postgres_write_under_read_load_tps"))
    if wo and wl:
        out.append("")
        out.append("Writes kept under read load: Cleave %.0f%%%s." % (
            100 * wl / wo, ", PostgreSQL %.0f%%" % (100 * pl / po)
            if po and pl else ""))
    return "\n".join(out)


def detail_tables(r):
    raw = r.get("raw", {})
    out = []
    w1 = raw.get("w1")
    if w1:
        out += ["", "Commands over HTTP (workload 1):", "",
                "| conns | Restock/s | p50 ms | p99 ms | p99.9 ms | "
                "checkouts/s | mix commands/s | mix p99 ms | PG checkouts/s "
                "| PG p99 ms (whole checkout) |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        pg = raw.get("postgres", {}).get("checkout", {})
        for c in sorted(int(k) for k in w1["restock"]):
            a = w1["restock"].get(c) or w1["restock"].get(str(c))
            b = w1["checkout"].get(c) or w1["checkout"].get(str(c))
            p = pg.get(c) or pg.get(str(c)) or {}
            out.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                       % (c, fmt(a["rps"]), fmt(a["p50_ms"]),
                          fmt(a["p99_ms"]), fmt(a["p999_ms"]),
                          fmt(b["checkouts_per_s"]), fmt(b["rps"]),
                          fmt(b["p99_ms"]), fmt(p.get("tps")),
                          fmt(p.get("p99_ms"))))
    w2 = raw.get("w2")
    if w2:
        out += ["", "In-process (workload 2):", "",
                "| run | commands/s | p99 ms | mean batch | fsyncs/s | "
                "bytes written/command |", "|---|---:|---:|---:|---:|---:|"]
        for k in ["restock", "checkout", "restock_write_side_only"]:
            x = w2[k]
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                k, fmt(x["commands_per_s"]), fmt(x["p99_ms"]),
                fmt(x["mean_batch"]), fmt(x["fsyncs_per_s"]),
                fmt(x["write_bytes_per_command"])))
        x = w2["naive"]
        out.append("| naive SQLite Restock | %s | %s | 1 | %s | |" % (
            fmt(x["commands_per_s"]), fmt(x["p99_ms"]),
            fmt(x["commands_per_s"])))
    w3 = raw.get("w3")
    if w3:
        out += ["", "Queries (workload 3):", "",
                "| query | conns | req/s | p50 ms | p99 ms | p99.9 ms |",
                "|---|---:|---:|---:|---:|---:|"]
        for k, x in w3.items():
            out.append("| %s | %d | %s | %s | %s | %s |" % (
                k.rsplit("-", 1)[0], x["conns"], fmt(x["rps"]),
                fmt(x["p50_ms"]), fmt(x["p99_ms"]), fmt(x["p999_ms"])))
    w4 = raw.get("w4")
    if w4:
        out += ["", "Rebuild (workload 4):", "",
                "| log events | what | events/s | seconds | peak RSS MB | "
                "peak anon RSS MB |", "|---:|---|---:|---:|---:|---:|"]
        for n, s in w4["sizes"].items():
            for x in [s["all"]] + list(s["each"].values()):
                out.append("| %s | %s | %s | %s | %s | %s |" % (
                    fmt(x["events"]), x["what"], fmt(x["events_per_s"]),
                    fmt(x["seconds"]), fmt(x["peak_rss_mb"]),
                    fmt(x["peak_anon_rss_mb"])))
    w5 = raw.get("w5")
    if w5:
        out += ["", "Commit-to-visible lag (workload 5):", "",
                "| load | rate/s | achieved/s | lag p50 ms | lag p99 ms | "
                "lag max ms | command p99 ms |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for pct, x in w5.items():
            out.append("| %s%% | %s | %s | %s | %s | %s | %s |" % (
                pct, fmt(x["rate"]), fmt(x["rps"]), fmt(x["lag_p50_ms"]),
                fmt(x["lag_p99_ms"]), fmt(x["lag_max_ms"]),
                fmt(x["p99_ms"])))
    so = raw.get("social")
    if so:
        out += ["", "Social (examples/social, installed; an author with "
                "%s followers):" % "{:,}".format(so["followers"]), ""]
        if so.get("error"):
            out.append("- failed: `%s`" % so["error"].strip()
                       .replace("\n", " ")[:400])
        if so.get("post"):
            out += ["| figure | n | p50 ms | p99 ms | max ms |",
                    "|---|---:|---:|---:|---:|"]
            for name, x in [
                    ("Post, author with followers", so["post"]["star"]),
                    ("Post, author with none", so["post"]["lonely"]),
                    ("answer → the last follower's timeline shows it",
                     so["visible"]["star"]),
                    ("answer → the post query shows it (no followers)",
                     so["visible"]["lonely"])]:
                out.append("| %s | %d | %s | %s | %s |" % (
                    name, x["n"], fmt(x["p50_ms"]), fmt(x["p99_ms"]),
                    fmt(x["max_ms"])))
        tl = so.get("timeline")
        if tl:
            p = raw.get("w3", {}).get("product-50", {})
            out += ["", "| query, 50 conns | req/s | p50 ms | p99 ms | "
                    "server CPU µs/req |", "|---|---:|---:|---:|---:|",
                    "| timeline (a follower's first page: 20 posts, %s "
                    "bytes) | %s | %s | %s | %s |" % (
                        fmt(so.get("timeline_answer_bytes")),
                        fmt(tl["rps"]), fmt(tl["p50_ms"]),
                              fmt(tl["p99_ms"]),
                              fmt(tl.get("server_cpu_us_per_request"))),
                    "| product (workload 3, same run) | %s | %s | %s | %s |"
                    % (fmt(p.get("rps")), fmt(p.get("p50_ms")),
                       fmt(p.get("p99_ms")),
                       fmt(p.get("server_cpu_us_per_request")))]
        if "register_s" in so:
            out += ["", "Setup: install and build %s s, %s RegisterUser %s s,"
                    " %s Follow %s s (9 loadgens of one connection each), "
                    "projection caught up %s s later; posts and polls %s s;"
                    " %s s in all." % (so.get("install_build_s"), "{:,}".format(
                        so["followers"]), so["register_s"], "{:,}".format(
                        so["followers"]), so["follow_s"], so["catch_up_s"],
                       so.get("posts_s"), so.get("seconds"))]
    lv = raw.get("live")
    if lv:
        out += ["", "Live queries (10,500 products; 2 streams on each of "
                "p1001..p1500, probed; 9,000 more, one on each of "
                "p1501..p10500):", ""]
        if lv.get("error"):
            out.append("- failed: `%s`" % lv["error"].strip()
                       .replace("\n", " ")[:400])
        rows = [(n, lv.get("s%d" % n)) for n in (1000, 10000)]
        if any(x and "probe" in x for _, x in rows):
            out += ["| streams | with first message | refused | open s | "
                    "push p50 / p99 / max ms (answer → message) | send → "
                    "message p50 / p99 ms | server wake → socket p50 / p99 "
                    "ms (bucket bound) | probe Restock p50 ms | server RSS MB "
                    "| threads | closed streams let go after s |",
                    "|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|"]
            for n, x in rows:
                if not x or "probe" not in x:
                    continue
                pr, rd = x["probe"], x["ready"]
                out.append("| %s | %s | %s | %s | %s / %s / %s | %s / %s | "
                           "≤ %s / ≤ %s | %s | %s | %s | %s |" % (
                               fmt(n), fmt(rd["first"]), fmt(rd["failed"]),
                               fmt(rd["open_s"]),
                               fmt(pr["from_answer"]["p50_ms"]),
                               fmt(pr["from_answer"]["p99_ms"]),
                               fmt(pr["from_answer"]["max_ms"]),
                               fmt(pr["from_send"]["p50_ms"]),
                               fmt(pr["from_send"]["p99_ms"]),
                               fmt(x["server_push"]["p50_ms"]),
                               fmt(x["server_push"]["p99_ms"]),
                               fmt(pr["command"]["p50_ms"]),
                               fmt(x["server"]["rss_kb"] / 1024.0),
                               fmt(x["server"]["threads"]),
                               fmt(x.get("drained_s"))))
        loads = [("no streams", lv.get("none_before")),
                 ("1,000 streams, other keys", lv.get("other_keys_1k")),
                 ("10,000 streams, other keys", lv.get("other_keys")),
                 ("10,000 streams, the keys written",
                  lv.get("written_keys")),
                 ("no streams, after", lv.get("none_after"))]
        if any(x for _, x in loads):
            out += ["", "| Restock, 64 conns | commands/s | p99 ms | server "
                    "CPU µs/command | live wakes | messages to streams |",
                    "|---|---:|---:|---:|---:|---:|"]
            for label, x in loads:
                if x:
                    out.append("| %s | %s | %s | %s | %s | %s |" % (
                        label, fmt(x["rps"]), fmt(x["p99_ms"]),
                        fmt(x.get("server_cpu_us_per_request")),
                        fmt(x.get("live_wakes")),
                        fmt(x.get("live_messages"))))
    w6 = raw.get("w6")
    pg = raw.get("postgres")
    if w6:
        out += ["", "Two masters (workload 6, checkout mix, 64 conns):", "",
                "| system | write only | p99 ms | under read load | p99 ms |"
                " reads/s meanwhile |", "|---|---:|---:|---:|---:|---:|"]
        if "under_reads" in w6:
            out.append("| Cleave, reads only (commands/s) | %s | %s | %s | %s"
                       " | %s |" % (
                           fmt(w6["write_only"]["rps"]),
                           fmt(w6["write_only"]["p99_ms"]),
                           fmt(w6["under_reads"]["rps"]),
                           fmt(w6["under_reads"]["p99_ms"]),
                           fmt(w6["reads_only_reads"]["rps"])))
        out.append("| Cleave, reads + 2 rebuilds (commands/s) | %s | %s | %s"
                   " | %s | %s |" % (
                       fmt(w6["write_only"]["rps"]),
                       fmt(w6["write_only"]["p99_ms"]),
                       fmt(w6["under_load"]["rps"]),
                       fmt(w6["under_load"]["p99_ms"]),
                       fmt(w6["reads"]["rps"])))
        if pg:
            out.append("| PostgreSQL (txn/s; p99 of a whole checkout) | %s |"
                       " %s | %s | %s | %s |" % (
                           fmt(4 * pg["write_only"]["tps"]),
                           fmt(pg["write_only"]["p99_ms"]),
                           fmt(4 * pg["under_read_load"]["tps"]),
                           fmt(pg["under_read_load"]["p99_ms"]),
                           fmt(pg.get("dashboard_qps"))))
    em = raw.get("emmett")
    if em:
        out += ["", "Emmett (%s):" % ", ".join(em["packages"]), ""]
        if em.get("error"):
            out.append("- failed: `%s`" % em["error"].strip()
                       .replace("\n", " ")[:400])
        for k in ["c1", "c16"]:
            if k in em:
                x = em[k]
                err = x.get("error") or (x.get("first_error")
                                         if not x.get("ok") else None)
                if err:
                    out.append("- %s concurrent: failed: `%s`" % (
                        k[1:], err.strip().replace("\n", " ")[-300:]))
                else:
                    out.append("- %s concurrent: %s commands/s (command → "
                               "event → inline projection), p99 %s ms" % (
                                   k[1:], fmt(x.get("commands_per_s")),
                                   fmt(x.get("p99_ms"))))
    return "\n".join(out)


def plot(r, png):
    gp = shutil.which("gnuplot")
    raw = r.get("raw", {})
    if not gp or "w1" not in raw:
        return False
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "w1.dat"), "w") as f:
        pg = raw.get("postgres", {}).get("checkout", {})
        for c in sorted(int(k) for k in raw["w1"]["restock"]):
            a = raw["w1"]["restock"].get(c) or raw["w1"]["restock"][str(c)]
            b = raw["w1"]["checkout"].get(c) or raw["w1"]["checkout"][str(c)]
            p = pg.get(c) or pg.get(str(c)) or {}
            nan = lambda v: "NaN" if v is None else "%f" % v
            f.write("%d %s %s %s %s %s %s\n" % (
                c, nan(a["rps"] or None), nan(b["checkouts_per_s"] or None),
                nan(p.get("tps")), nan(a["p99_ms"]), nan(b["p99_ms"]),
                nan(p.get("p99_ms"))))
    bars = []
    for label, key in [("Restock HTTP", "commands_per_s"),
                       ("in-process", "inprocess_commands_per_s"),
                       ("naive SQLite", "naive_sqlite_commands_per_s"),
                       ("checkouts HTTP", "checkouts_per_s"),
                       ("PG checkouts", "postgres_checkouts_per_s"),
                       ("product query", "query_rps"),
                       ("timeline query", "timeline_rps"),
                       ("Redis GET", "redis_get_rps"),
                       ("rebuild ev/s", "rebuild_events_per_s"),
                       ("Restock + 10k streams",
                        "commands_per_s_with_subscribers"),
                       ("writes alone", "write_only_commands_per_s"),
                       ("writes+reads", "write_under_read_load_commands_per_s"),
                       ("PG writes alone", "postgres_write_only_tps"),
                       ("PG writes+dash", "postgres_write_under_read_load_tps")]:
        if r.get(key):
            bars.append((label, r[key]))
    with open(os.path.join(d, "bars.dat"), "w") as f:
        for i, (label, v) in enumerate(bars):
            f.write('%d "%s" %f\n' % (i, label, v))
    # p99 latency per workload (ms), where the run has it
    w1, w3 = raw.get("w1", {}), raw.get("w3", {})
    w5, w6 = raw.get("w5", {}), raw.get("w6", {})
    pg = raw.get("postgres", {})
    g = lambda m, k: (m.get(k) or m.get(str(k)) or {}) if m else {}
    lat = [("Restock HTTP (peak conns)", r.get("command_p99_ms")),
           ("checkout mix 64 conns", g(w1.get("checkout"), 64).get("p99_ms")),
           ("PG checkout 16 clients", g(pg.get("checkout"), 16).get("p99_ms")),
           ("product query 50 conns", g(w3, "product-50").get("p99_ms")),
           ("Redis GET 50 conns", g(w3, "redis-50").get("p99_ms")),
           ("search 50 conns", g(w3, "search-50").get("p99_ms")),
           ("timeline 50 conns", r.get("timeline_p99_ms")),
           ("Post, 100k followers", r.get("fanout_100k_post_p99_ms")),
           ("Post → last follower sees it",
            r.get("fanout_100k_visible_p99_ms")),
           ("push, 10k streams", r.get("sse_push_p99_ms")),
           ("lag 10%", g(w5, 10).get("lag_p99_ms")),
           ("lag 50%", g(w5, 50).get("lag_p99_ms")),
           ("lag 90%", g(w5, 90).get("lag_p99_ms")),
           ("writes alone (W6)", g(w6, "write_only").get("p99_ms")),
           ("writes+reads +rebuilds", g(w6, "under_load").get("p99_ms")),
           ("PG writes +dashboards", g(pg, "under_read_load").get("p99_ms"))]
    with open(os.path.join(d, "lat.dat"), "w") as f:
        for i, (label, v) in enumerate(lat):
            f.write('%d "%s" %s\n' % (i, label, "NaN" if v is None else v))
    script = """
set terminal pngcairo size 1400,1200 font ",10"
set output '%s'
set multiplot layout 3,2 title "Cleave benchmarks %s (%s)"
set logscale x 2
set xlabel "connections"
set ylabel "per second"
set key top left
set grid
set origin 0,0.66
set size 0.5,0.33
plot '%s/w1.dat' u 1:2 w lp t "Restock commands/s", '' u 1:3 w lp t "checkouts/s", '' u 1:4 w lp t "PostgreSQL checkouts/s"
set ylabel "p99 ms"
set logscale y
set origin 0.5,0.66
set size 0.5,0.33
plot '%s/w1.dat' u 1:5 w lp t "Restock p99", '' u 1:6 w lp t "checkout mix p99", '' u 1:7 w lp t "PostgreSQL checkout p99 (4 txns)"
unset logscale x
set style fill solid 0.6
set boxwidth 0.7
set xtics rotate by -35
unset xlabel
set ylabel "per second (log)"
set origin 0,0.33
set size 1,0.33
plot '%s/bars.dat' u 1:3:xtic(2) w boxes notitle
set ylabel "p99 ms (log)"
set origin 0,0
set size 1,0.33
plot '%s/lat.dat' u 1:3:xtic(2) w boxes lc rgb "#d0783c" notitle
unset multiplot
""" % (png, r.get("started", ""), "quick" if r.get("quick") else "full", d,
       d, d, d)
    res = subprocess.run([gp], input=script, text=True, capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    if res.returncode:
        log("gnuplot failed: " + res.stderr[-500:])
        return False
    return True


def update_readme(md_table, stamp, r=None):
    path = os.path.join(ROOT, "README.md")
    text = open(path).read()
    load = ""
    if r and r.get("loadavg_at_start"):
        load = ", load average %s → %s" % (r["loadavg_at_start"],
                                            r.get("loadavg_at_end", "?"))
    block = ("<!-- bench:begin -->\n_Last full run (`make bench`): %s, "
             "commit %s, %s%s. One run; on this shared VM figures move 2–5× "
             "between runs — ratios to the baselines of the same run are "
             "what to compare. All runs, profiles and what limits each "
             "figure: [docs/performance.md](docs/performance.md)._\n\n%s\n"
             "<!-- bench:end -->" %
             (stamp, (r or {}).get("git_commit", "?")[:7],
              (r or {}).get("machine", "").split(",")[0], load, md_table))
    if "<!-- bench:begin -->" in text:
        text = re.sub(r"<!-- bench:begin -->.*?<!-- bench:end -->",
                      lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"
    open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only", help="comma list: w1,w2,w3,w4,w5,w6,social,"
                    "live,pg,emmett")
    ap.add_argument("--social-followers", type=int, default=100000,
                    metavar="F", help="the social workload's author's "
                    "followers (default 100,000, in bench-quick too)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--no-readme", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--report", metavar="JSON",
                    help="re-render the .md/.png/README of a full run's "
                    "JSON (bench/results/<date>.json) without running")
    ap.add_argument("--commit", help="the commit --build was built from "
                    "(default: this tree's HEAD, -dirty when src/ differs)")
    a = ap.parse_args()
    if a.report:
        r = normalize(json.load(open(a.report)))
        with open(a.report, "w") as f:
            json.dump(r, f, indent=1, default=str)
            f.write("\n")
        stamp = os.path.basename(a.report).rsplit(".", 1)[0]
        write_full(r, os.path.join(os.path.dirname(a.report), stamp), stamp,
                   a)
        return
    b = Bench(a)
    try:
        r = b.run()
    finally:
        if not a.keep:
            shutil.rmtree(b.tmp, ignore_errors=True)
    r["quick"] = a.quick
    os.makedirs(a.out, exist_ok=True)
    md = table(r)
    details = detail_tables(r)
    print("\n" + md + "\n" + details + "\n")
    stamp = time.strftime("%Y-%m-%d")
    if a.quick:
        q = {k: r.get(k) for k in QUICK_KEYS}
        with open(os.path.join(a.out, "quick.json"), "w") as f:
            json.dump(q, f, indent=2)
            f.write("\n")
        with open(os.path.join(a.out, "quick-raw.json"), "w") as f:
            json.dump(r, f, indent=1, default=str)
            f.write("\n")
        log("wrote %s/quick.json" % a.out)
        return
    base = os.path.join(a.out, stamp)
    with open(base + ".json", "w") as f:
        json.dump(r, f, indent=1, default=str)
        f.write("\n")
    write_full(r, base, stamp, a)


def write_full(r, base, stamp, a):
    """The full run's markdown, plot and README table."""
    md = table(r)
    details = detail_tables(r)
    has_png = plot(r, base + ".png")
    with open(base + ".md", "w") as f:
        f.write("# Cleave benchmarks, %s\n\n" % stamp)
        f.write("Machine: %s. Commit %s. Load average at start %s, at end "
                "%s (the machine is shared: other sessions' tests ran "
                "meanwhile). Run took %s s. `n/a` in a latency column: no "
                "answer came in the whole window (a stall; see "
                "docs/performance.md).\n\n" % (
                    r["machine"], r["git_commit"], r["loadavg_at_start"],
                    r["loadavg_at_end"], r["seconds"]))
        f.write(md + "\n" + details + "\n")
        if has_png:
            f.write("\n![throughput and latency](%s.png)\n" %
                    os.path.basename(base))
    log("wrote %s.md/.json%s" % (base, "/.png" if has_png else ""))
    if not a.no_readme and not a.only:
        update_readme(md, r.get("started", stamp)[:10], r)
        log("updated the README's benchmark table")


if __name__ == "__main__":
    main()
