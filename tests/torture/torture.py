#!/usr/bin/env python3
"""Crash torture of the real server: `cleave serve` (shop or bank) under
concurrent command load over HTTP, killed with SIGKILL at random moments
and restarted, many times.  After every kill:

 at the crash state (server dead, files as the kill left them):
  - the log is gapless; each Idempotency-Key belongs to exactly one command
    (one effect); every stored idempotency answer names its own events;
  - every acknowledged command is in the log at the position its answer
    named, with the events its answer listed, and its stored answer is
    byte-identical to the one the client got;
  - nothing unacknowledged is half-applied: the write tables (read with
    Python's sqlite3, read-only) equal a model computed from the events
    alone (stock, orders, promo uses, balances, transfers...), and the
    "after" values the events carry (stock_after, balance_cents) agree with
    the model in log order;
  - a command answered 4xx left no trace in the log;
  - `cleave verify --data DIR --domain D` finds no drift in any projection;
 after the restart (HTTP only):
  - the log head is where the crash left it; GET /events agrees;
  - a rebuild started just before the kill resumes and finishes;
  - every acknowledged command of the trial (and a sample of older ones),
    re-sent with its key, gets the same answer byte for byte, marked
    Idempotent-Replayed;
  - every command whose answer was lost is retried with its key and has
    exactly one effect (replayed if it had committed, applied once if not);
  - the queries agree with the model at the head (product stock, sold and
    price; order status; bank balances and totals, where
    balance = deposits - withdrawals).

Some trials kill the server a second time while it starts up (recovery),
some start a blue-green rebuild of a random projection just before the
kill.  Python standard library only.

  tests/torture/torture.py --kills 300 --domains shop,bank
  CLEAVE_BIN=build/cleave tests/torture/torture.py --kills 20 --json out.json

Exit status 0 when every check held; 1 with the failing check, the seed
and the kept data directory otherwise.
"""
import argparse
import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, HERE)
import cleave_test as ct  # noqa: E402
from workloads import WORKLOADS, TortureFailure, fail  # noqa: E402


# ---- HTTP -------------------------------------------------------------------

class Conn:
    """One keep-alive connection that never re-sends: any transport error
    is reported to the caller, who decides what the outcome means."""

    def __init__(self, port, timeout=60):
        self.port = port
        self.timeout = timeout
        self.c = None

    def close(self):
        if self.c:
            self.c.close()
            self.c = None

    def request(self, method, path, body=None, headers=None):
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port,
                                                timeout=self.timeout)
        try:
            self.c.request(method, path, body=body, headers=headers or {})
            r = self.c.getresponse()
            data = r.read()
            h = {k.lower(): v for k, v in r.getheaders()}
        except Exception:
            self.close()
            raise
        if h.get("connection", "").lower() == "close":
            self.close()
        return r.status, h, data

    def get_json(self, path, want=200):
        st, h, data = self.request("GET", path)
        if st != want:
            fail("GET %s: %d %r", path, st, data[:400])
        return json.loads(data)


# ---- commands ---------------------------------------------------------------

class Cmd:
    __slots__ = ("key", "name", "body", "thread", "trial", "status",
                 "resp", "position", "ctx", "retry_status", "retry_resp",
                 "replayed")

    def __init__(self, key, name, body, thread, trial, ctx=None):
        self.key = key
        self.name = name
        self.body = json.dumps(body, separators=(",", ":")).encode()
        self.thread = thread
        self.trial = trial
        self.status = None   # None: no answer (lost in the kill)
        self.resp = None
        self.position = None
        self.ctx = ctx       # workload bookkeeping
        self.retry_status = None
        self.retry_resp = None
        self.replayed = False

    def send(self, conn):
        return conn.request("POST", "/commands/" + self.name, self.body,
                            {"Idempotency-Key": self.key,
                             "Content-Type": "application/json"})


# ---- the server --------------------------------------------------------------

def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CLEAVE_")}
    return env


class Server(ct.Server):
    def kill(self):
        """SIGKILL; returns the exit status (negative: the signal)."""
        if not self.proc:
            return None
        for c in self.clients:
            c.close()
        self.clients = []
        died_before = self.proc.poll()
        if died_before is None:
            self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self.log.close()
        self.proc = None
        if died_before is not None:
            fail("the server died by itself (status %s) before the kill:\n%s",
                 died_before, self.logs()[-4000:])
        return rc

    def start_and_kill(self, delay):
        """Starts the server and kills it `delay` seconds later, whatever
        it is doing then (recovery, opening stores, catching up)."""
        pf = self.data + ".port"
        if os.path.exists(pf):
            os.unlink(pf)
        env = dict(os.environ)
        env.update(self.env or {})
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ct.BIN, "serve", "--listen", "127.0.0.1:0", "--port-file", pf,
             "--data", self.data] + self.args,
            stdout=self.log, stderr=self.log, env=env)
        time.sleep(delay)
        return self.kill()


# ---- one domain's run --------------------------------------------------------

class Stats:
    def __init__(self):
        self.kills = 0
        self.startup_kills = 0
        self.trials = 0
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.lost = 0
        self.lost_committed = 0
        self.lost_applied_on_retry = 0
        self.lost_refused_on_retry = 0
        self.replays = 0
        self.dup_sends = 0
        self.dup_pairs = 0
        self.rebuild_kills = 0
        self.rebuild_resumed = 0
        self.verify_runs = 0
        self.query_checks = 0
        self.head = 0
        self.seconds = 0.0

        self.phases = {}

    def phase(self, name, t0):
        self.phases[name] = self.phases.get(name, 0.0) + time.time() - t0

    def as_dict(self):
        return dict(self.__dict__)


class Torture:
    def __init__(self, domain, args, seed, log):
        self.domain = domain
        self.args = args
        self.seed = seed
        self.rng = random.Random(seed)
        self.wl = WORKLOADS[domain](random.Random(seed + 1))
        self.log = log
        self.stats = Stats()
        self.srv = Server("--domain", domain, "--durability",
                          args.durability, data=ct.tmpdir(
                              "torture-" + domain), name="torture-" + domain)
        self.srv.env = {"CLEAVE_LOG_LEVEL": "warn"}
        self.model_pos = 0          # last event fed to the model
        self.keys = {}              # idempotency key -> [command_id, positions]
        self.refused_keys = set()   # keys answered 4xx: must never appear
        self.refusals = {}          # key -> recorded refusal, at the crash
        self.acked = []             # every acknowledged command
        self.trial_cmds = []
        self.errors = []

    # -- the model and the key index --
    def feed(self, ev):
        pos = ev["position"]
        if pos != self.model_pos + 1:
            fail("log gap: event %d after %d", pos, self.model_pos)
        self.model_pos = pos
        key = ev.get("idempotency_key")
        if key is None:
            fail("event %d has no idempotency key (every command here has "
                 "one)", pos)
        if key in self.refused_keys:
            fail("event %d belongs to key %s, whose command was refused "
                 "with a 4xx: a rejected command wrote", pos, key)
        k = self.keys.get(key)
        if k is None:
            self.keys[key] = [ev["command_id"], [pos]]
        elif k[0] != ev["command_id"]:
            fail("key %s has two effects: command %s (positions %r) and "
                 "command %s (position %d)", key, k[0], k[1],
                 ev["command_id"], pos)
        elif k[1][-1] != pos - 1:
            fail("key %s: events %r and %d are not contiguous", key, k[1],
                 pos)
        else:
            k[1].append(pos)
        self.wl.apply(ev)

    def db(self):
        path = os.path.join(self.srv.data, "write.db")
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True,
                               timeout=30)

    def crash_checks(self):
        """The files as the kill left them, before any restart."""
        db = self.db()
        try:
            db.execute("BEGIN")
            n, mx = db.execute("SELECT count(*), coalesce(max(position), 0) "
                               "FROM events").fetchone()
            if n != mx:
                fail("log has %d events but its last position is %d", n, mx)
            if mx < self.model_pos:
                fail("log head went back from %d to %d: committed events "
                     "lost", self.model_pos, mx)
            for row in db.execute(
                    "SELECT position, stream, version, type, data, "
                    "command_id, idem_key FROM events WHERE position > ? "
                    "ORDER BY position", (self.model_pos,)):
                self.feed({"position": row[0], "stream": row[1],
                           "version": row[2], "type": row[3],
                           "data": json.loads(row[4]), "command_id": row[5],
                           "idempotency_key": row[6]})
            self.wl.check_tables(db)
            # a success record per key in the log; refusals (the domain's
            # 404/409/422, replayed like successes) have no events
            nidem = db.execute("SELECT count(*) FROM cleave_idempotency "
                               "WHERE rc = 0").fetchone()[0]
            if nidem != len(self.keys):
                fail("%d success records for %d keys in the log", nidem,
                     len(self.keys))
            bad = db.execute(
                "SELECT count(*) FROM cleave_idempotency i WHERE rc = 0 AND "
                "NOT EXISTS (SELECT 1 FROM events WHERE idem_key = i.key AND"
                " position = i.position)").fetchone()[0]
            if bad:
                fail("%d idempotency records name a position that is not "
                     "their command's", bad)
            self.refusals = dict(db.execute(
                "SELECT key, response FROM cleave_idempotency WHERE rc != 0"))
            both = [k for k in self.refusals if k in self.keys]
            if both:
                fail("keys %r have a refusal recorded and events", both[:5])
            for c in self.trial_cmds:
                if c.status in (404, 409, 422) and \
                        (self.refusals.get(c.key) or "").encode() != c.resp:
                    fail("the %d answer of %s %s is not recorded under its "
                         "key (or differs): %r", c.status, c.name, c.key,
                         self.refusals.get(c.key))
            # acknowledged commands: durable, at their position, same answer
            stored = {}
            acked = [c for c in self.trial_cmds if c.status == 200]
            for i in range(0, len(acked), 500):
                part = acked[i:i + 500]
                q = "SELECT key, position, response FROM cleave_idempotency "\
                    "WHERE key IN (%s)" % ",".join("?" * len(part))
                for k, p, r in db.execute(q, [c.key for c in part]):
                    stored[k] = (p, r)
            for c in acked:
                k = self.keys.get(c.key)
                if k is None or c.key not in stored:
                    fail("acknowledged command %s %s (position %d) is not in "
                         "the log after the kill", c.name, c.key, c.position)
                if k[1][-1] != c.position or stored[c.key][0] != c.position:
                    fail("acknowledged %s at %d, the log has it at %r", c.key,
                         c.position, k[1])
                if stored[c.key][1].encode() != c.resp:
                    fail("stored answer of %s differs from the one sent:\n"
                         "%r\n%r", c.key, stored[c.key][1], c.resp)
                ans = json.loads(c.resp)
                if ans["command_id"] != k[0] or \
                        [e["position"] for e in ans["events"]] != k[1]:
                    fail("answer of %s names events %r of command %s, the "
                         "log has %r of %s", c.key, ans["events"],
                         ans["command_id"], k[1], k[0])
            db.execute("COMMIT")
        finally:
            db.close()

    def verify(self):
        p = subprocess.run([ct.BIN, "verify", "--data", self.srv.data,
                            "--domain", self.domain],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, env=clean_env(),
                           timeout=600)
        self.stats.verify_runs += 1
        out = p.stdout.decode(errors="replace")
        results = {}
        for line in out.splitlines():
            o = json.loads(line)
            if "result" in o:
                results[o["projection"]] = o["result"]
        if p.returncode != 0 or \
                set(results) != set(self.wl.projections) or \
                any(v != "ok" for v in results.values()):
            fail("cleave verify found drift or failed (exit %d):\n%s\n%s",
                 p.returncode, out[-3000:],
                 p.stderr.decode(errors="replace")[-2000:])

    # -- load --
    def send_twice(self, c, conn, conn2):
        """Sends c on two connections at once (a client retrying while its
        first try is in flight).  Returns the answers that came back; both
        must be the same answer, exactly one of them not a replay."""
        got = {}

        def second():
            try:
                got[2] = c.send(conn2)
            except (OSError, http.client.HTTPException):
                pass
        t = threading.Thread(target=second, daemon=True)
        t.start()
        try:
            got[1] = c.send(conn)
        except (OSError, http.client.HTTPException):
            pass
        t.join(120)
        self.stats.dup_sends += 1
        if len(got) == 2:
            (s1, h1, d1), (s2, h2, d2) = got[1], got[2]
            fresh = [h.get("idempotent-replayed") != "true"
                     for h in (h1, h2)]
            if (s1, d1) != (s2, d2) or fresh.count(True) != 1:
                self.errors.append(
                    "%s %s sent twice at once: %d %r (replayed %s) and %d "
                    "%r (replayed %s)" % (c.name, c.key, s1, d1[:200],
                                          h1.get("idempotent-replayed"), s2,
                                          d2[:200],
                                          h2.get("idempotent-replayed")))
            self.stats.dup_pairs += 1
        return [got[k] for k in sorted(got)]

    def worker(self, tid, trial, stop, out):
        conn = Conn(self.srv.port)
        conn2 = Conn(self.srv.port)
        ts = self.wl.thread_state(tid, trial)
        n = 0
        try:
            while not stop.is_set():
                name, body, ctx = self.wl.next(ts)
                n += 1
                c = Cmd("k%d-%d-%d" % (trial, tid, n), name, body, tid,
                        trial, ctx)
                out.append(c)
                if self.rng.random() < self.args.dup_rate:
                    answers = self.send_twice(c, conn, conn2)
                    if not answers:
                        return  # the kill: the outcome is unknown
                    st, h, data = answers[0]
                    lost_one = len(answers) < 2
                else:
                    try:
                        st, h, data = c.send(conn)
                    except (OSError, http.client.HTTPException):
                        return  # the kill: this one's outcome is unknown
                    lost_one = False
                    if h.get("idempotent-replayed"):
                        self.errors.append("first send of %s was answered "
                                           "as a replay" % c.key)
                c.status, c.resp = st, data
                if st == 200:
                    ans = json.loads(data)
                    c.position = ans["position"]
                    self.wl.on_ack(ts, c, ans.get("result") or {})
                elif st not in self.wl.expected(c):
                    self.errors.append("%s %s answered %d: %r" % (
                        name, c.key, st, data[:300]))
                    c.status = None  # treat as unknown: retried later
                    return
                if lost_one:
                    return  # one of the two was cut by the kill
        finally:
            conn.close()
            conn2.close()

    def run_load(self, trial, seconds, rebuild=None):
        stop = threading.Event()
        outs = [[] for _ in range(self.args.threads)]
        ths = [threading.Thread(target=self.worker,
                                args=(i, trial, stop, outs[i]), daemon=True)
               for i in range(self.args.threads)]
        for t in ths:
            t.start()
        if rebuild:
            time.sleep(max(0.0, seconds - rebuild[1]))
            conn = Conn(self.srv.port)
            st, _, data = conn.request("POST", "/projections/%s/rebuild"
                                       % rebuild[0])
            conn.close()
            if st not in (202, 409):
                fail("rebuild of %s answered %d %r", rebuild[0], st, data)
            time.sleep(rebuild[1])
        else:
            time.sleep(seconds)
        rc = self.srv.kill()
        stop.set()
        self.stats.kills += 1
        if rc != -signal.SIGKILL:
            fail("server exit status %s, not SIGKILL", rc)
        for t in ths:
            t.join(60)
            if t.is_alive():
                fail("a client thread hangs after the kill")
        cmds = [c for o in outs for c in o]
        return cmds

    # -- after the restart --
    def replay(self, cmds, check):
        """Sends cmds again (with their keys) from several connections;
        check(cmd, status, headers, body) judges each answer."""
        if not cmds:
            return
        lock = threading.Lock()
        it = iter(cmds)
        errs = []

        def run():
            conn = Conn(self.srv.port)
            try:
                while True:
                    with lock:
                        c = next(it, None)
                    if c is None or errs:
                        return
                    st, h, data = c.send(conn)
                    try:
                        check(c, st, h, data)
                    except TortureFailure as e:
                        errs.append(e)
            finally:
                conn.close()
        ths = [threading.Thread(target=run, daemon=True)
               for _ in range(min(8, len(cmds)))]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        if errs:
            raise errs[0]

    def check_replay(self, c, st, h, data):
        self.stats.replays += 1
        if st != c.status or h.get("idempotent-replayed") != "true":
            fail("%s %s (answered %d) re-sent after the restart: %d "
                 "(replayed %s) %r", c.name, c.key, c.status, st,
                 h.get("idempotent-replayed"), data[:300])
        if data != c.resp:
            fail("acknowledged %s re-sent: answer differs\nfirst: %r\n"
                 "now:   %r", c.key, c.resp, data)

    def retry_lost(self, lost):
        """Retries each command whose answer was lost, in the order each
        thread sent them; each must have exactly one effect."""
        known = dict((c.key, c) for c in lost)
        by_thread = {}
        for c in lost:
            by_thread.setdefault(c.thread, []).append(c)
        conn = Conn(self.srv.port)
        try:
            for tid in sorted(by_thread):
                for c in by_thread[tid]:
                    st, h, data = c.send(conn)
                    c.retry_status, c.retry_resp = st, data
                    c.replayed = h.get("idempotent-replayed") == "true"
                    if st not in self.wl.expected(c):
                        fail("retry of lost %s %s answered %d %r", c.name,
                             c.key, st, data[:300])
                    committed = c.key in self.keys
                    decided = committed or c.key in self.refusals
                    if c.replayed != decided:
                        fail("retry of %s: replayed=%s but the crash state "
                             "%s it", c.key, c.replayed,
                             "has" if decided else "does not have")
                    if c.key in self.refusals and \
                            data != self.refusals[c.key].encode():
                        fail("retry of %s replays %r, the recorded refusal "
                             "is %r", c.key, data, self.refusals[c.key])
                    if st == 200:
                        ans = json.loads(data)
                        if committed:
                            self.stats.lost_committed += 1
                            k = self.keys[c.key]
                            if ans["position"] != k[1][-1] or \
                                    ans["command_id"] != k[0]:
                                fail("retry of %s replays position %d of %s,"
                                     " the log has %r of %s", c.key,
                                     ans["position"], ans["command_id"],
                                     k[1], k[0])
                        else:
                            self.stats.lost_applied_on_retry += 1
                        c.status, c.resp = 200, data
                        c.position = ans["position"]
                        self.wl.after_success(c)
                    else:
                        self.stats.lost_refused_on_retry += 1
                        self.refused_keys.add(c.key)
                        c.status, c.resp = st, data
        finally:
            conn.close()
        return known

    def http_log(self, conn, after):
        """Events after `after` from GET /events."""
        out = []
        frm = after + 1  # from is inclusive; next is the following from
        while True:
            d = conn.get_json("/events?from=%d&limit=1000" % frm)
            if not d["events"]:
                return out, d["head"]
            out.extend(d["events"])
            frm = d["next"]

    def wait_rebuilds(self, conn, timeout=120):
        deadline = time.time() + timeout
        while True:
            ps = conn.get_json("/projections")["projections"]
            busy = [p["name"] for p in ps if p["state"] != "live"]
            if not busy:
                return
            if time.time() > deadline:
                fail("projections not live %d s after the restart: %r",
                     timeout, ps)
            time.sleep(0.02)

    def restart_checks(self, trial, rebuild):
        conn = Conn(self.srv.port)
        try:
            h = conn.get_json("/health")
            if h["head"] != self.model_pos:
                fail("after the restart the head is %d, the crash left %d",
                     h["head"], self.model_pos)
            if rebuild:
                ps = {p["name"]: p for p in
                      conn.get_json("/projections")["projections"]}
                if ps[rebuild[0]]["state"] == "rebuilding":
                    self.stats.rebuild_resumed += 1
                self.wait_rebuilds(conn)
            evs, head = self.http_log(conn, max(0, self.model_pos - 50))
            if head != self.model_pos or \
                    (evs and evs[-1]["position"] != self.model_pos):
                fail("GET /events head %d, the crash left %d", head,
                     self.model_pos)
            for ev in evs:
                k = self.keys[ev["idempotency_key"]]
                if ev["position"] not in k[1] or ev["command_id"] != k[0]:
                    fail("GET /events disagrees with the files at %d",
                         ev["position"])
            answered = [c for c in self.trial_cmds if c.status is not None]
            self.replay(answered, self.check_replay)
            if self.acked:
                sample = self.rng.sample(self.acked, min(20, len(self.acked)))
                self.replay(sample, self.check_replay)
            lost = [c for c in self.trial_cmds if c.status is None]
            self.retry_lost(lost)
            evs, head = self.http_log(conn, self.model_pos)
            for ev in evs:
                self.feed(ev)
            if head != self.model_pos:
                fail("log head %d after the retries, model at %d", head,
                     self.model_pos)
            for c in lost:
                if c.retry_status == 200 and not c.replayed:
                    k = self.keys.get(c.key)
                    if not k or k[1][-1] != c.position:
                        fail("retried %s answered position %d, the log has "
                             "%r", c.key, c.position, k)
            self.stats.query_checks += self.wl.check_queries(conn, head, self.rng)
            self.stats.head = head
            self.acked.extend(c for c in self.trial_cmds if c.status == 200)
        finally:
            conn.close()

    def setup(self):
        conn = Conn(self.srv.port)
        try:
            for i, (name, body) in enumerate(self.wl.setup_cmds()):
                c = Cmd("setup-%d" % i, name, body, 0, -1)
                st, h, data = c.send(conn)
                if st != 200:
                    fail("setup %s: %d %r", name, st, data)
                c.status, c.resp = st, data
                c.position = json.loads(data)["position"]
                self.wl.on_setup_ack(name, body)
                self.acked.append(c)
            evs, head = self.http_log(conn, 0)
            for ev in evs:
                self.feed(ev)
        finally:
            conn.close()

    def run(self):
        t0 = time.time()
        try:
            self.run_trials()
        finally:
            self.stats.seconds = time.time() - t0

    def run_trials(self):
        a = self.args
        t0 = time.time()
        self.srv.start()
        self.setup()
        for trial in range(a.kills):
            self.stats.trials += 1
            seconds = self.rng.uniform(a.load_min, a.load_max)
            rebuild = None
            if self.rng.random() < a.rebuild_rate:
                # mostly within a few ms of the kill, so the rebuild is
                # still running when the kill lands
                gap = self.rng.uniform(0, 0.004)
                if self.rng.random() < 0.3:
                    gap = self.rng.uniform(0, 0.05)
                rebuild = (self.rng.choice(self.wl.projections), gap)
                self.stats.rebuild_kills += 1
            t1 = time.time()
            self.trial_cmds = self.run_load(trial, seconds, rebuild)
            self.stats.phase("load", t1)
            for msg in self.errors:
                fail("during the load: %s", msg)
            st = self.stats
            st.sent += len(self.trial_cmds)
            st.acked += sum(1 for c in self.trial_cmds if c.status == 200)
            st.refused += sum(1 for c in self.trial_cmds
                              if c.status is not None and c.status != 200)
            st.lost += sum(1 for c in self.trial_cmds if c.status is None)
            for c in self.trial_cmds:
                if c.status is not None and c.status != 200:
                    self.refused_keys.add(c.key)
            t1 = time.time()
            self.crash_checks()
            self.stats.phase("crash_checks", t1)
            if trial % a.verify_every == 0 or trial == a.kills - 1:
                t1 = time.time()
                self.verify()
                self.stats.phase("verify", t1)
            if self.rng.random() < a.startup_kill_rate:
                # kill it again while it recovers and starts
                self.srv.start_and_kill(self.rng.uniform(0, 0.08))
                self.stats.kills += 1
                self.stats.startup_kills += 1
                self.crash_checks()
            t1 = time.time()
            self.srv.start()
            self.stats.phase("restart", t1)
            t1 = time.time()
            self.restart_checks(trial, rebuild)
            self.stats.phase("restart_checks", t1)
            if a.progress and (trial + 1) % a.progress == 0:
                self.log("%s: %d/%d kills, %d acknowledged, head %d, %.0f s"
                         % (self.domain, trial + 1, a.kills, st.acked,
                            st.head, time.time() - t0))
        # the end: the whole log over HTTP against the model's key index,
        # a clean stop, a last look at the files and a last verify
        conn = Conn(self.srv.port)
        try:
            evs, head = self.http_log(conn, 0)
        finally:
            conn.close()
        if [e["position"] for e in evs] != list(range(1, head + 1)) or \
                head != self.model_pos:
            fail("GET /events from 0 is not the gapless log 1..%d",
                 self.model_pos)
        for ev in evs:
            k = self.keys[ev["idempotency_key"]]
            if ev["command_id"] != k[0] or ev["position"] not in k[1]:
                fail("GET /events disagrees with the files at %d",
                     ev["position"])
        self.srv.stop()
        self.crash_checks()
        self.verify()


def is_asan(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def run_parallel(a, argv):
    """One child process per domain (same options); the figures merged."""
    rest = []
    skip = False
    for x in argv:
        if skip:
            skip = False
        elif x in ("--domains", "--json"):
            skip = True
        elif x != "--parallel" and not x.startswith(("--domains=",
                                                     "--json=")):
            rest.append(x)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    if "--seed" not in rest:
        rest += ["--seed", str(seed)]
    procs = []
    for i, dom in enumerate(a.domains.split(",")):
        out = "%s.%s.json" % (a.json, dom) if a.json else None
        cmd = [sys.executable, os.path.abspath(__file__)] + rest + \
            ["--domains", dom] + (["--json", out] if out else [])
        if not a.bin:
            cmd += ["--bin", ct.BIN]
        procs.append((dom, out, subprocess.Popen(cmd)))
    ok = True
    figures = {"seed": seed, "binary": ct.BIN, "domains": {}}
    try:
        for dom, out, p in procs:
            ok = p.wait() == 0 and ok
    finally:
        for dom, out, p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    for dom, out, p in procs:
        if out and os.path.exists(out):
            with open(out) as f:
                figures["domains"].update(json.load(f)["domains"])
            os.unlink(out)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)
    print("torture: %s" % ("PASS" if ok else "FAIL"), flush=True)
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=300,
                    help="SIGKILLs during load, per domain (default 300)")
    ap.add_argument("--domains", default="shop,bank")
    ap.add_argument("--threads", type=int, default=8,
                    help="concurrent clients (default 8)")
    ap.add_argument("--load-min", type=float, default=0.05,
                    help="shortest load before a kill, seconds")
    ap.add_argument("--load-max", type=float, default=0.6,
                    help="longest load before a kill, seconds")
    ap.add_argument("--dup-rate", type=float, default=0.03,
                    help="share of commands sent twice at once (same key)")
    ap.add_argument("--rebuild-rate", type=float, default=0.25,
                    help="share of kills just after a rebuild started")
    ap.add_argument("--startup-kill-rate", type=float, default=0.1,
                    help="share of restarts killed again during startup")
    ap.add_argument("--verify-every", type=int, default=1,
                    help="run `cleave verify` after every Nth kill")
    ap.add_argument("--durability", default="fsync",
                    choices=("fsync", "os"),
                    help="the server's --durability (a process kill loses "
                    "nothing acknowledged in either)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bin", default=None, help="the cleave binary")
    ap.add_argument("--keep", action="store_true",
                    help="keep the data directories even on success")
    ap.add_argument("--json", default=None,
                    help="write the figures of the run here")
    ap.add_argument("--progress", type=int, default=25,
                    help="print a line every N kills (0: never)")
    ap.add_argument("--parallel", action="store_true",
                    help="run the domains at the same time, one process "
                    "each")
    a = ap.parse_args(argv)
    # SIGTERM ends the run like Ctrl-C: servers killed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if a.bin:
        ct.BIN = a.bin
    if a.parallel and len(a.domains.split(",")) > 1:
        return run_parallel(a, argv if argv is not None else sys.argv[1:])
    if not os.path.exists(ct.BIN):
        print("torture: no cleave binary at %s (build first, or set "
              "CLEAVE_BIN / --bin)" % ct.BIN, file=sys.stderr)
        return 2
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)

    def log(msg):
        print("torture: " + msg, flush=True)

    log("binary %s%s, seed %d, %d kills per domain, %d clients, "
        "durability %s" % (ct.BIN, " (ASan)" if is_asan(ct.BIN) else "",
                           seed, a.kills, a.threads, a.durability))
    figures = {"seed": seed, "binary": ct.BIN, "domains": {}}
    ok = True
    for i, dom in enumerate(a.domains.split(",")):
        t = Torture(dom, a, seed + 1000 * i, log)
        try:
            t.run()
        except Exception as e:
            ok = False
            what = str(e) if isinstance(e, TortureFailure) else \
                traceback.format_exc()
            log("FAILED (%s, seed %d, trial %d): %s" % (dom, seed,
                                                        t.stats.trials - 1,
                                                        what))
            journal = t.srv.data + ".trial.json"
            with open(journal, "w") as f:
                json.dump([{"key": c.key, "command": c.name,
                            "body": c.body.decode(), "thread": c.thread,
                            "status": c.status, "position": c.position,
                            "answer": c.resp.decode(errors="replace")
                            if c.resp else None,
                            "retry_status": c.retry_status}
                           for c in t.trial_cmds], f, indent=0)
            log("data directory kept: %s (server log %s, the failing "
                "trial's commands in %s)" % (t.srv.data, t.srv.log_path,
                                             journal))
            log("server log tail:\n" + t.srv.logs()[-3000:])
        finally:
            if t.srv.proc:
                t.srv.proc.kill()
                t.srv.proc.wait()
                t.srv.log.close()
                t.srv.proc = None
        s = t.stats
        figures["domains"][dom] = s.as_dict()
        figures["domains"][dom]["ok"] = ok
        log("%s: %d kills (%d during startup, %d just after a rebuild "
            "started, %d rebuilds resumed after restart), %d commands sent, "
            "%d acknowledged, %d refused (4xx), %d answers lost in a kill "
            "(%d had committed, %d applied once on retry), %d replays "
            "byte-identical, %d sent twice at once (%d with both answers), "
            "%d verify runs, %d query checks, log head %d, %.1f s"
            % (dom, s.kills, s.startup_kills, s.rebuild_kills,
               s.rebuild_resumed, s.sent, s.acked, s.refused, s.lost,
               s.lost_committed, s.lost_applied_on_retry, s.replays,
               s.dup_sends, s.dup_pairs, s.verify_runs, s.query_checks,
               s.head, s.seconds))
        log("%s: time by phase: %s" % (dom, ", ".join(
            "%s %.1f s" % kv for kv in sorted(s.phases.items()))))
        if ok and not a.keep:
            t.srv.cleanup()
        if not ok:
            break
    if a.json:
        with open(a.json, "w") as f:
            json.dump(figures, f, indent=1)
    log("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
