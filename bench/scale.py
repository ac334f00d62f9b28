#!/usr/bin/env python3
"""scale.py — the scale-out tier beside the embedded default, in one run.

  python3 bench/scale.py [--build build] [--duration 5] [--events 300000]

On one machine (so ratios, not capacity): a seeded shop (1,000 products)
served four ways, each measured with the same loadgen at 50 connections on
GET /queries/product?productId=p<random>:

  embedded     cleave serve, LMDB read models (the default)
  redis        cleave serve --read-store redis://…: the same read models
               in Redis
  query node   cleave serve --query-node beside that writer (its log
               read-only, its Redis copies followed)
  redis GET    redis-server answering GET product:p<random> with the same
               document bytes (the baseline of issue 4)

then read-your-writes across nodes: Restock on the writer, then the
product query with min_position on the query node (and, as the baseline,
on the writer itself): latency of that query, p50/p99, which includes the
wait for the read model to reach the position;

and rebuild speed of catalog and orders into Redis against LMDB
(bench/rebuild measure, a generated log of --events events).

Prints a table and writes bench/results/scale.json.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (the benchmark's helpers)


def redis_start(tmp):
    port = R.free_port()
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return p, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not come up")


def loadgen(a, port, label, *req, resp=False):
    cmd = [os.path.join(a.build, "bench", "loadgen"), "--port", str(port),
           "--duration", str(a.duration), "--warmup", "1", "--conns", "50",
           "--label", label]
    if resp:
        cmd.append("--resp")
    for r in req:
        cmd += ["--req", r]
    r = R.run_json(cmd, timeout=600)
    R.log("%-11s %9.0f/s  p99 %.2f ms" % (label, r["rps"], r["p99_ms"]))
    return {"rps": r["rps"], "p99_ms": r["p99_ms"]}


def get(url):
    with urllib.request.urlopen(url, timeout=30) as f:
        return json.loads(f.read())


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 method="POST", headers={
                                     "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as f:
        return json.loads(f.read())


def ryw(writer, reader, n=400):
    """Latency of a min_position query on `reader` right after a command
    on `writer`, in ms: p50, p99."""
    lat = []
    for i in range(n):
        pid = "p%d" % (i % 1000 + 1)
        pos = post(writer.url + "/commands/Restock",
                   {"productId": pid, "quantity": 1})["position"]
        t0 = time.perf_counter()
        doc = get(reader.url + "/queries/product?productId=%s&min_position"
                  "=%d&wait_ms=5000" % (pid, pos))
        lat.append((time.perf_counter() - t0) * 1000)
        assert doc["position"] >= pos, doc
    lat.sort()
    return {"p50_ms": round(statistics.median(lat), 3),
            "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 3)}


def rebuild_rate(a, data, what, rs):
    cmd = [os.path.join(a.build, "bench", "rebuild"), "measure", "--data",
           data, "--what", what]
    if rs:
        cmd += ["--read-store", rs]
    r = R.run_json(cmd, timeout=3600)
    R.log("rebuild %-8s %-9s %9.0f events/s" % (what, "redis" if rs else
                                               "lmdb", r["events_per_s"]))
    return r["events_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--events", type=int, default=300000)
    ap.add_argument("--out", default=os.path.join(HERE, "results",
                                                  "scale.json"))
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    if not shutil.which("redis-server"):
        R.log("redis-server not installed: nothing to measure")
        return 0
    tmp = tempfile.mkdtemp(prefix="cleave-scale-")
    out = {"machine": R.machine(), "commit": R.git_commit(),
           "duration_s": a.duration}
    rproc, rport = redis_start(tmp)
    servers = []
    try:
        uri = "redis://127.0.0.1:%d/0/bench" % rport
        inproc = os.path.join(a.build, "bench", "inproc")
        for name in ["emb", "w"]:
            R.run_json_or_none([inproc, "seed", "--data",
                                os.path.join(tmp, name)])
        q = "GET /queries/product?productId=p${rnd:1000}"
        emb = R.Server(a.build, os.path.join(tmp, "emb"))
        servers.append(emb)
        emb.wait_caught_up()
        out["embedded"] = loadgen(a, emb.port, "embedded", q)
        out["ryw_embedded"] = ryw(emb, emb)
        emb.stop()
        servers.remove(emb)

        w = R.Server(a.build, os.path.join(tmp, "w"),
                     ["--read-store", uri])
        servers.append(w)
        w.wait_caught_up()
        out["redis"] = loadgen(a, w.port, "redis", q)
        qn = R.Server(a.build, os.path.join(tmp, "q"),
                      ["--query-node", "--write-store",
                       "sqlite:" + os.path.join(tmp, "w"), "--read-store",
                       uri])
        servers.append(qn)
        qn.wait_caught_up()
        out["query_node"] = loadgen(a, qn.port, "query node", q)
        out["ryw_writer"] = ryw(w, w)
        out["ryw_query_node"] = ryw(w, qn)
        R.log("read-your-writes p50/p99 ms: embedded %(p50_ms)s/%(p99_ms)s"
              % out["ryw_embedded"] +
              ", writer on Redis %(p50_ms)s/%(p99_ms)s" % out["ryw_writer"] +
              ", query node %(p50_ms)s/%(p99_ms)s" % out["ryw_query_node"])
        b = R.Bench.__new__(R.Bench)
        b.redis_fill(rport, w)
        out["redis_get"] = loadgen(a, rport, "redis GET",
                                   "GET product:p${rnd:1000}", resp=True)
        for s in list(servers):
            s.stop()
            servers.remove(s)

        # rebuilds: the same generated log, into LMDB and into Redis
        log_dir = os.path.join(tmp, "log")
        R.run_json([os.path.join(a.build, "bench", "rebuild"), "gen",
                    "--data", log_dir, "--events", str(a.events)],
                   timeout=3600)
        out["rebuild"] = {}
        for what in ["catalog", "orders"]:
            out["rebuild"][what] = {
                "lmdb": rebuild_rate(a, log_dir, what, None),
                "redis": rebuild_rate(a, log_dir, what, uri + "-rb")}
    finally:
        for s in servers:
            s.stop()
        rproc.terminate()
        rproc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    e = out["embedded"]["rps"]
    print("\n| product query, 50 conns | req/s | × embedded | p99 ms |")
    print("|---|---|---|---|")
    for k, label in [("embedded", "embedded (LMDB)"),
                     ("redis", "writer, read models in Redis"),
                     ("query_node", "query node (Redis, followed)"),
                     ("redis_get", "Redis GET, same document")]:
        print("| %s | %.0f | %.2f | %.2f |" % (label, out[k]["rps"],
                                              out[k]["rps"] / e,
                                              out[k]["p99_ms"]))
    print("\n| read-your-writes (Restock, then min_position query) | p50 ms "
          "| p99 ms |\n|---|---|---|")
    for k, label in [("ryw_embedded", "embedded, same node"),
                     ("ryw_writer", "writer on Redis, same node"),
                     ("ryw_query_node", "writer → query node")]:
        print("| %s | %s | %s |" % (label, out[k]["p50_ms"],
                                    out[k]["p99_ms"]))
    print("\n| rebuild, events/s | LMDB | Redis | ratio |\n|---|---|---|---|")
    for what, r in out["rebuild"].items():
        print("| %s (%d events) | %.0f | %.0f | %.2f |" % (
            what, a.events, r["lmdb"], r["redis"], r["redis"] / r["lmdb"]))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
