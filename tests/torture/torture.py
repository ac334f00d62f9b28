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
kill.

--rebuild-stops: every trial asks for blue-green rebuilds of several
projections while the load runs, then stops the server: 0-N ms later, N
being 1.5 times the longest recent rebuild of one of them (measured from
the server's log), so that stops land mid-build and after the switch; or
(--switch-rate of the trials) 0-2 ms after the log shows that one
reopening its store for the switch, so that stops land at the switch
however long rebuilds take as the log grows.  The stop is SIGTERM
(--term-rate of them; a clean stop: exit status 0, commands in flight
answered or refused with 503 shutting_down, which are retried after the
restart) or SIGKILL.  The server logs at info there, and where each stop
landed is read from its log: building, switching (its store reopened for
the switch, not yet live), live before the stop, or switched during the
shutdown.  Every check above runs after each stop.

In every mode the server's log must hold no sanitizer report (ASan,
LeakSanitizer, UBSan, TSan), whatever the signal.
Python standard library only.

  tests/torture/torture.py --kills 300 --domains shop,bank
  tests/torture/torture.py --kills 300 --rebuild-stops
  CLEAVE_BIN=build/cleave tests/torture/torture.py --kills 20 --json out.json

Exit status 0 when every check held; 1 with the failing check, the seed
and the kept data directory otherwise.
"""
import argparse
import collections
import datetime
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


# What a sanitizer writes when it finds something (the server's stderr is
# its log): ASan, LeakSanitizer, UBSan, TSan.
SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"ERROR: LeakSanitizer",
                   b"runtime error:", b"WARNING: ThreadSanitizer",
                   b"ThreadSanitizer: reported")


class Server(ct.Server):
    log_start = 0  # where this run's lines start in the log file

    def _start(self, wait):
        try:
            self.log_start = os.path.getsize(self.log_path)
        except OSError:
            self.log_start = 0
        return super()._start(wait)

    def run_log(self, since=None):
        """The bytes this run (or the part since offset `since`) wrote to
        the log."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start if since is None else since)
            return f.read()

    def log_size(self):
        return os.path.getsize(self.log_path)

    def check_sanitizers(self, what):
        """Fails when this run's log holds a sanitizer report."""
        out = self.run_log()
        for m in SANITIZER_MARKS:
            i = out.find(m)
            if i >= 0:
                fail("a sanitizer report in the server's log (%s):\n%s",
                     what, out[max(0, i - 2000):i + 6000].decode(
                         errors="replace"))

    def kill(self, sig=signal.SIGKILL, timeout=None):
        """Sends sig (SIGKILL, or SIGTERM with a timeout for the clean
        stop); returns the exit status (negative: the signal)."""
        if not self.proc:
            return None
        for c in self.clients:
            c.close()
        self.clients = []
        died_before = self.proc.poll()
        if died_before is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.log.close()
            self.proc = None
            fail("no exit %.0f s after SIGTERM:\n%s", timeout,
                 self.logs()[-4000:])
        self.log.close()
        self.proc = None
        if died_before is not None:
            fail("the server died by itself (status %s) before the %s:\n%s",
                 died_before, signal.Signals(sig).name,
                 self.logs()[-4000:])
        self.check_sanitizers("after %s" % signal.Signals(sig).name)
        return rc

    def start_and_kill(self, delay):
        """Starts the server and kills it `delay` seconds later, whatever
        it is doing then (recovery, opening stores, catching up)."""
        pf = self.data + ".port"
        if os.path.exists(pf):
            os.unlink(pf)
        env = dict(os.environ)
        env.update(self.env or {})
        self.log_start = self.log_size() if os.path.exists(self.log_path) \
            else 0
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ct.BIN, "serve", "--listen", "127.0.0.1:0", "--port-file", pf,
             "--data", self.data] + self.args,
            stdout=self.log, stderr=self.log, env=env)
        time.sleep(delay)
        return self.kill()


def log_lines(raw):
    """The JSON lines of a piece of the server's log, each with its time
    as seconds since the epoch ("t")."""
    out = []
    for ln in raw.splitlines():
        if not ln.startswith(b"{"):
            continue
        try:
            o = json.loads(ln)
            o["t"] = datetime.datetime.strptime(
                o["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
        except (ValueError, KeyError):
            continue
        out.append(o)
    return out


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
        # --rebuild-stops
        self.term_stops = 0
        self.kill_stops = 0
        self.rebuilds_asked = 0
        self.at_stop = {"building": 0, "switching": 0, "live": 0}
        self.switched_in_shutdown = 0
        self.refused_stopping = 0
        self.stop_delay_ms_max = 0.0
        self.switch_aimed = 0
        self.rebuild_ms_max = 0.0
        self.term_exit_s_max = 0.0
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
        # at info, the log says when each rebuild started, reopened its
        # store for the switch and went live
        self.srv.env = {"CLEAVE_LOG_LEVEL": "info" if args.rebuild_stops
                        else "warn"}
        self.stopping = threading.Event()  # a SIGTERM is on its way
        # each projection's latest rebuild times, ms (from the log)
        self.rebuild_ms = collections.defaultdict(
            lambda: collections.deque(maxlen=10))
        self.term_timeout = 120.0
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
    def refused_stop(self, st, data):
        """True for the 503 shutting_down of a server we sent SIGTERM: the
        command was refused before the queue (it wrote nothing; it is
        retried after the restart like one whose answer was lost)."""
        if st != 503 or not self.stopping.is_set():
            return False
        try:
            return json.loads(data)["error"]["code"] == "shutting_down"
        except (ValueError, KeyError, TypeError):
            return False

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
        for k in [k for k in got if self.refused_stop(got[k][0], got[k][2])]:
            del got[k]
            self.stats.refused_stopping += 1
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
                    if self.refused_stop(st, data):
                        self.stats.refused_stopping += 1
                        return  # not run: retried after the restart
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

    def run_load(self, trial, seconds, rebuild=None, stops=None):
        """Load for `seconds`, then the stop: SIGKILL (a rebuild asked for
        rebuild[1] s before it), or, with stops = (names, signal), the
        rebuilds of names and that signal 0-N ms later."""
        stop = threading.Event()
        self.stopping.clear()
        outs = [[] for _ in range(self.args.threads)]
        ths = [threading.Thread(target=self.worker,
                                args=(i, trial, stop, outs[i]), daemon=True)
               for i in range(self.args.threads)]
        for t in ths:
            t.start()
        if stops:
            time.sleep(seconds)
            self.rebuilds_then_stop(*stops)
        else:
            if rebuild:
                time.sleep(max(0.0, seconds - rebuild[1]))
                self.ask_rebuilds([rebuild[0]])
                time.sleep(rebuild[1])
            else:
                time.sleep(seconds)
            rc = self.srv.kill()
            if rc != -signal.SIGKILL:
                fail("server exit status %s, not SIGKILL", rc)
        stop.set()
        self.stats.kills += 1
        for t in ths:
            t.join(60)
            if t.is_alive():
                fail("a client thread hangs after the kill")
        cmds = [c for o in outs for c in o]
        return cmds

    def ask_rebuilds(self, names):
        conn = Conn(self.srv.port)
        try:
            for name in names:
                st, _, data = conn.request("POST", "/projections/%s/rebuild"
                                           % name)
                if st not in (202, 409):
                    fail("rebuild of %s answered %d %r", name, st, data)
        finally:
            conn.close()

    def rebuild_estimate(self, name=None):
        """The longest recent rebuild of name (of any projection without
        one), in seconds, as the log showed them."""
        ms = list(self.rebuild_ms.get(name) or []) or \
            [x for d in self.rebuild_ms.values() for x in d]
        return max(ms) / 1000.0 if ms else 0.05

    def rebuilds_then_stop(self, names, sig):
        """Asks for the rebuilds of names, waits 0 to --stop-spread times
        a recent rebuild time of one of them, and sends sig: SIGTERM must
        give a clean stop (exit 0), SIGKILL kills."""
        off = self.srv.log_size()
        t0 = time.time()
        self.ask_rebuilds(names)
        self.stats.rebuilds_asked += len(names)
        st = self.stats
        target = self.rng.choice(names)
        latest = self.args.stop_spread * self.rebuild_estimate(target)
        if self.rng.random() < self.args.switch_rate:
            # at the switch: as soon as the log says the target reopened
            # its store for it (then the swap, the catalog, the old
            # copy's stop follow), give or take 2 ms; the window stays
            # a few ms wide however long the rebuild
            st.switch_aimed += 1
            self.wait_log(off, ("projection %s: store reopened" %
                                target).encode(), t0 + latest)
            time.sleep(self.rng.uniform(0, 0.002))
        else:
            # so that about two thirds of these land before the target's
            # switch
            time.sleep(self.rng.uniform(0, latest))
        st.stop_delay_ms_max = max(st.stop_delay_ms_max,
                                   (time.time() - t0) * 1000)
        t_sig = time.time()
        if sig == signal.SIGTERM:
            self.stopping.set()
            rc = self.srv.kill(signal.SIGTERM, self.term_timeout)
            st.term_exit_s_max = max(st.term_exit_s_max, time.time() - t_sig)
            st.term_stops += 1
            if rc != 0:
                fail("exit status %s after SIGTERM, not 0 (66: a TSan "
                     "report):\n%s", rc, self.srv.logs()[-6000:])
        else:
            rc = self.srv.kill()
            st.kill_stops += 1
            if rc != -signal.SIGKILL:
                fail("server exit status %s, not SIGKILL", rc)
        self.where_stopped(names, off, t_sig)

    def wait_log(self, off, what, deadline):
        """Waits until the server's log (from offset off) holds `what`, or
        until the deadline."""
        with open(self.srv.log_path, "rb") as f:
            f.seek(off)
            seen = b""
            while time.time() < deadline:
                seen = seen[-len(what):] + f.read()
                if what in seen:
                    return True
                time.sleep(0.0005)
        return False

    def where_stopped(self, names, off, t_sig):
        """Reads from the server's log where each rebuild was when the
        signal went (building, switching, live) and whether it went live
        during a clean stop; records each rebuild's time (or, cut short,
        a lower bound of it) for the next delays."""
        lines = log_lines(self.srv.run_log(off))
        shut = next((i for i, o in enumerate(lines)
                     if o["msg"].startswith("shutting down")), None)
        st = self.stats
        for name in names:
            pre = "projection %s: " % name
            start = next((o for o in lines if o["msg"].startswith(
                pre + "rebuild into g")), None)
            if start is None:
                continue  # answered 409: one was running already
            gen = start["msg"][len(pre + "rebuild into g"):].split()[0]
            reopen = next((o for o in lines
                           if o["msg"].startswith(pre + "store reopened")
                           and o["t"] >= start["t"]), None)
            live = next((i for i, o in enumerate(lines)
                         if o["msg"].startswith(pre + "g%s (" % gen) and
                         " is live " in o["msg"]), None)
            live_t = lines[live]["t"] if live is not None else None
            if live_t is not None and live_t < t_sig:
                st.at_stop["live"] += 1
            elif reopen is not None and reopen["t"] < t_sig:
                st.at_stop["switching"] += 1
            else:
                st.at_stop["building"] += 1
            if live is not None and shut is not None and live > shut:
                st.switched_in_shutdown += 1
            ms = ((live_t if live_t is not None else t_sig) -
                  start["t"]) * 1000
            self.rebuild_ms[name].append(max(ms, 1.0))
            st.rebuild_ms_max = max(st.rebuild_ms_max, ms)

    def calibrate(self):
        """--rebuild-stops: one rebuild of every projection, to the end,
        for the first delays; and one clean stop, whose time sets how long
        a SIGTERM may take under load."""
        off = self.srv.log_size()
        conn = Conn(self.srv.port)
        try:
            self.ask_rebuilds(self.wl.projections)
            self.wait_rebuilds(conn)
        finally:
            conn.close()
        # all live now (the last "is live" line may still be on its way:
        # then the time until now stands for it)
        self.where_stopped(self.wl.projections, off, time.time())
        self.stats.at_stop = {k: 0 for k in self.stats.at_stop}
        self.stats.switched_in_shutdown = 0
        t0 = time.time()
        self.srv.stop()
        self.srv.check_sanitizers("the first clean stop")
        self.term_timeout = max(120.0, 100 * (time.time() - t0))
        self.srv.start()

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

    def wait_rebuilds(self, conn, timeout=None):
        if timeout is None:  # generous: 100 times the longest rebuild
            timeout = max(120.0, 100 * self.rebuild_estimate())
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
                self.stats.rebuild_resumed += sum(
                    1 for n in rebuild if ps[n]["state"] == "rebuilding")
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
        if a.rebuild_stops:
            self.calibrate()
        for trial in range(a.kills):
            self.stats.trials += 1
            seconds = self.rng.uniform(a.load_min, a.load_max)
            rebuild = stops = None
            if a.rebuild_stops:
                names = self.rng.sample(self.wl.projections, self.rng.randint(
                    2, len(self.wl.projections)))
                stops = (names, signal.SIGTERM if self.rng.random() <
                         a.term_rate else signal.SIGKILL)
            elif self.rng.random() < a.rebuild_rate:
                # mostly within a few ms of the kill, so the rebuild is
                # still running when the kill lands
                gap = self.rng.uniform(0, 0.004)
                if self.rng.random() < 0.3:
                    gap = self.rng.uniform(0, 0.05)
                rebuild = (self.rng.choice(self.wl.projections), gap)
                self.stats.rebuild_kills += 1
            t1 = time.time()
            self.trial_cmds = self.run_load(trial, seconds, rebuild, stops)
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
            self.restart_checks(trial, stops[0] if stops else
                                [rebuild[0]] if rebuild else None)
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
        self.srv.check_sanitizers("the last clean stop")
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
    ap.add_argument("--rebuild-stops", action="store_true",
                    help="every trial: rebuilds of several projections "
                    "asked for under load, then SIGTERM or SIGKILL 0-N ms "
                    "later (N: --stop-spread times a recent rebuild's "
                    "time); --kills counts these stops")
    ap.add_argument("--term-rate", type=float, default=0.5,
                    help="with --rebuild-stops: share of stops that are "
                    "SIGTERM (a clean stop) rather than SIGKILL")
    ap.add_argument("--switch-rate", type=float, default=0.3,
                    help="with --rebuild-stops: share of stops sent as "
                    "the log shows a rebuild reopening its store for the "
                    "switch (0-2 ms after), not at a random delay")
    ap.add_argument("--stop-spread", type=float, default=1.5,
                    help="with --rebuild-stops: the latest stop, in "
                    "rebuild times (default 1.5)")
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

    log("binary %s%s, seed %d, %d %s per domain, %d clients, "
        "durability %s" % (ct.BIN, " (ASan)" if is_asan(ct.BIN) else "",
                           seed, a.kills, "stops just after rebuilds "
                           "(SIGTERM or SIGKILL)" if a.rebuild_stops
                           else "kills", a.threads, a.durability))
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
        if a.rebuild_stops:
            log("%s: %d stops just after rebuilds were asked for (%d "
                "SIGTERM, %d SIGKILL; %d aimed at a switch), %d rebuilds "
                "asked; at the stop %d "
                "were building, %d switching (store reopened, not yet "
                "live), %d live; %d went live during a clean stop; %d "
                "resumed after the restart; %d commands refused while "
                "stopping (retried); stops 0-%.0f ms after the rebuilds "
                "were asked, the longest rebuild %.0f ms; the longest "
                "clean stop %.2f s"
                % (dom, s.term_stops + s.kill_stops, s.term_stops,
                   s.kill_stops, s.switch_aimed, s.rebuilds_asked,
                   s.at_stop["building"],
                   s.at_stop["switching"], s.at_stop["live"],
                   s.switched_in_shutdown, s.rebuild_resumed,
                   s.refused_stopping, s.stop_delay_ms_max,
                   s.rebuild_ms_max, s.term_exit_s_max))
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
