"""Faults under the real server: a full disk (a small tmpfs mounted as the
data directory), fsync and write errors on the write store and on the read
stores (injected by tests/faults/failio.so through LD_PRELOAD), an LMDB map
that fills up, and a projection that cannot apply an event.  In every case:
a clear error to the client and in the log, nothing acknowledged lost
(every acknowledged command replays byte for byte from its
Idempotency-Key), every command whose answer was an error retried with its
key has exactly one effect, the projections verify (`cleave verify`), and
the server recovers once the fault is gone.

What each case expects, and what the engine does today, is written down in
docs/reliability.md.  A case marked KNOWN BUG fails on purpose until the
engine is fixed.  Python standard library only; the disk-full case needs
root (mount), the others do not."""
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cleave_test as ct  # noqa: E402

FAILIO = os.environ.get("CLEAVE_FAILIO") or os.path.join(
    os.path.dirname(os.path.abspath(ct.BIN)), "tests", "faults", "failio.so")


def is_asan():
    try:
        with open(ct.BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("CLEAVE_") and k not in ("CLEAVE_BIN",
                                                          "CLEAVE_TEST_TMP"))}


def verify(data, domain="shop"):
    """`cleave verify` on a stopped server's data directory: every
    projection must be ok."""
    env = clean_env()
    p = subprocess.run([ct.BIN, "verify", "--data", data, "--domain",
                        domain], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, timeout=300)
    out = p.stdout.decode(errors="replace")
    rows = [json.loads(x) for x in out.splitlines() if x.strip()]
    bad = [r for r in rows if r.get("result", "ok") != "ok"
           or "diff" in r]
    if p.returncode != 0 or bad or not rows:
        raise AssertionError("cleave verify failed (exit %d):\n%s\n%s" % (
            p.returncode, out[-3000:], p.stderr.decode()[-2000:]))
    return rows


class Ledger:
    """Commands sent with keys: what was acknowledged (and its exact
    answer), what got an error (outcome to settle by a retry)."""

    def __init__(self):
        self.n = 0
        self.acked = {}     # key -> (name, body, answer bytes)
        self.failed = {}    # key -> (name, body, status)
        self.lock = threading.Lock()

    def key(self, prefix="k"):
        with self.lock:
            self.n += 1
            return "%s-%d" % (prefix, self.n)

    def send(self, client, name, body, key=None):
        key = key or self.key()
        r = client.command(name, body, {"Idempotency-Key": key})
        with self.lock:
            if r.status == 200:
                self.acked[key] = (name, body, r.body)
                self.failed.pop(key, None)
            elif key not in self.acked:
                self.failed[key] = (name, body, r.status)
        return r

    def retry_failed(self, tc, client, ok=(200,)):
        """Retries every failed command with its key: each must now
        succeed (or get a status in ok)."""
        for key, (name, body, st) in sorted(self.failed.items()):
            r = client.command(name, body, {"Idempotency-Key": key})
            tc.assertIn(r.status, ok, "retry of %s (%s, first %d): %r" % (
                key, name, st, r))
            if r.status == 200:
                self.acked[key] = (name, body, r.body)
        self.failed = {}

    def check_acked(self, tc, client):
        """Every acknowledged command, re-sent with its key, gets the same
        answer byte for byte, marked as a replay."""
        for key, (name, body, answer) in self.acked.items():
            r = client.command(name, body, {"Idempotency-Key": key})
            tc.assertEqual(r.status, 200, "acknowledged %s: %r" % (key, r))
            tc.assertEqual(r.header("Idempotent-Replayed"), "true", key)
            tc.assertEqual(r.body, answer, "acknowledged %s answers "
                           "differently now" % key)

    def check_log(self, tc, client):
        """The log is gapless and each key has exactly one effect."""
        after, pos, by_key = 0, 0, {}
        while True:
            d = client.get("/events?from=%d&limit=1000" % after).json()
            for ev in d["events"]:
                pos += 1
                tc.assertEqual(ev["position"], pos, "log gap")
                k = ev.get("idempotency_key")
                if k:
                    by_key.setdefault(k, set()).add(ev["command_id"])
            if not d["events"]:
                break
            after = d["next"]
        for k, cmds in by_key.items():
            tc.assertEqual(len(cmds), 1, "key %s has %d effects" % (
                k, len(cmds)))
        for k in self.acked:
            tc.assertIn(k, by_key, "acknowledged %s is not in the log" % k)
        return pos, by_key


def product(pid, stock=1000000, name=None):
    return {"productId": pid, "name": name or "product " + pid,
            "category": "faults", "price_cents": 250, "stock": stock}


def wait_for(pred, timeout=15, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def projections(client):
    return {p["name"]: p for p in client.get("/projections").json()[
        "projections"]}


class FaultServer(ct.Server):
    """ct.Server with the failio shim preloaded and a control file."""

    def __init__(self, *args, shim=True, extra_env=None, **kw):
        super().__init__(*args, **kw)
        self.ctl = self.data + ".ctl"
        self.flog = self.data + ".failio"
        env = {"CLEAVE_LOG_LEVEL": "info"}
        if shim:
            if not os.path.exists(FAILIO):
                raise AssertionError("failio.so not built: expected at %s "
                                     "(or set CLEAVE_FAILIO)" % FAILIO)
            env.update({"LD_PRELOAD": FAILIO, "FAILIO_CTL": self.ctl,
                        "FAILIO_LOG": self.flog})
            if is_asan():
                env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                                       ":verify_asan_link_order=0").lstrip(":")
        env.update(extra_env or {})
        self.env = env

    def arm(self, *rules):
        """Replaces the shim's rules (none: no faults)."""
        tmp = self.ctl + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(r + "\n" for r in rules))
        os.rename(tmp, self.ctl)
        time.sleep(0.01)  # the shim looks at the file once a millisecond

    def disarm(self):
        try:
            os.unlink(self.ctl)
        except FileNotFoundError:
            pass
        time.sleep(0.01)

    def injected(self):
        try:
            with open(self.flog) as f:
                return [ln.split() for ln in f if ln.startswith("fail ")]
        except FileNotFoundError:
            return []

    def kill9(self):
        for c in self.clients:
            c.close()
        self.clients = []
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()
        self.proc = None

    def cleanup(self):
        if os.path.islink(self.data):  # data_on(): the link, not the mount
            os.unlink(self.data)
        super().cleanup()
        for p in (self.ctl, self.flog):
            try:
                os.unlink(p)
            except OSError:
                pass


def log_has(srv, *words):
    """The server's warn and error lines holding every word."""
    out = []
    for line in srv.logs().splitlines():
        try:
            ln = json.loads(line)
        except ValueError:
            continue
        if ln.get("level") in ("error", "warn") and \
                all(w in ln.get("msg", "") for w in words):
            out.append(ln)
    return out


class FaultCase(unittest.TestCase):
    def run(self, result=None):
        self._result = result
        self._bad_before = self._bad_count()
        return super().run(result)

    def _bad_count(self):
        r = getattr(self, "_result", None)
        return len(r.errors) + len(r.failures) if r else 0

    def server(self, *args, **kw):
        srv = FaultServer(*args, **kw)
        self.addCleanup(self._stop, srv)
        return srv

    def _stop(self, srv):
        if srv.proc:
            srv.proc.kill()
            srv.proc.wait()
            srv.log.close()
            srv.proc = None
        if not self._failed():
            srv.cleanup()
        else:
            print("kept %s (server log %s)" % (srv.data, srv.log_path))

    def _failed(self):
        out = getattr(self, "_outcome", None)
        errs = getattr(out, "errors", None)  # Python < 3.11
        if errs is not None:
            return any(e for _, e in errs if e)
        return self._bad_count() > self._bad_before  # reported at once

    def assert_error(self, r, statuses, code=None, words=()):
        self.assertIn(r.status, statuses, r)
        err = r.json()["error"]
        if code:
            self.assertEqual(err["code"], code, r)
        for w in words:
            self.assertIn(w, err["message"], r)
        return err

    def finish(self, srv, led, c, domain="shop"):
        """The common end: retries settle, acknowledged answers replay,
        one effect per key, a clean stop, verify, and again after a
        restart."""
        led.retry_failed(self, c)
        head, _ = led.check_log(self, c)
        led.check_acked(self, c)
        srv.disarm()
        srv.stop()
        verify(srv.data, domain)
        srv.start()
        c = srv.client()
        led.check_acked(self, c)
        self.assertEqual(led.check_log(self, c)[0], head)
        srv.stop()
        return head


# ---- (a) disk full ------------------------------------------------------------

def mount_small(size_mb):
    """A small file system of its own: tmpfs, else ext4 on a loop file.
    Returns (mount point, how, undo) or raises unittest.SkipTest."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("disk full needs root to mount a small "
                                "file system")
    mnt = tempfile.mkdtemp(prefix="cleave-full-", dir=ct.TMP)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700"
                        % size_mb, "tmpfs", mnt], capture_output=True,
                       text=True)
    if p.returncode == 0:
        return mnt, "tmpfs %d MiB" % size_mb, lambda: umount(mnt)
    why = p.stderr.strip()
    img = mnt + ".img"
    try:
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", img], check=True,
                       capture_output=True)
        subprocess.run(["mount", "-o", "loop", img, mnt], check=True,
                       capture_output=True)
        return mnt, "ext4 on a loop file, %d MiB" % size_mb, \
            lambda: (umount(mnt), os.unlink(img))
    except (OSError, subprocess.CalledProcessError) as e:
        os.rmdir(mnt)
        if os.path.exists(img):
            os.unlink(img)
        raise unittest.SkipTest("cannot mount a small file system (tmpfs: "
                                "%s; loop: %s)" % (why, e))


def data_on(mnt, name):
    """A data directory on the small file system, reached through a
    symbolic link outside it, so that the server's log and port file (made
    beside the link) do not share the full disk."""
    real = os.path.join(mnt, "data")
    os.mkdir(real, 0o700)
    link = tempfile.mktemp(prefix=name + "-", dir=ct.TMP)
    os.symlink(real, link)
    return link


def umount(mnt):
    if subprocess.run(["umount", mnt], capture_output=True).returncode:
        subprocess.run(["umount", "-l", mnt], capture_output=True)
    os.rmdir(mnt)


class Filler:
    """One file that takes every free block of a file system.  Created at
    once (empty), before the disk is anywhere near full, so that setting
    up the fault can never fail from the fault; fill() then preallocates
    what statvfs says is free and writes (unbuffered) until the kernel
    answers ENOSPC: the disk is full at that moment, whatever the server
    wrote meanwhile.  Any other error is a real one and fails the test."""

    def __init__(self, mnt):
        self.path = os.path.join(mnt, "filler")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                          0o600)
        self.size = 0

    def fill(self):
        st = os.statvfs(self.path)
        want = st.f_bavail * st.f_frsize
        while want >= st.f_frsize:
            try:
                os.posix_fallocate(self.fd, self.size, want)
                self.size += want
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                want //= 2  # the server took some meanwhile
        # the last partial blocks, and proof that the disk is full
        chunk = b"\0" * st.f_frsize
        while True:
            try:
                n = os.pwrite(self.fd, chunk, self.size)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
            self.size += n
        self.close()  # nothing buffered: closing cannot fail
        return self.size

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def remove(self):
        self.close()
        os.unlink(self.path)


def reserve(mnt, mb):
    """Holds `mb` MiB of the file system in a file, to be freed later:
    the space that freeing gives back, whatever the load used."""
    path = os.path.join(mnt, "reserve")
    with open(path, "wb") as f:
        for _ in range(mb * 16):
            f.write(b"\1" * 65536)
    return path


class DiskFull(FaultCase):
    def test_disk_full(self):
        mnt, how, undo = mount_small(16)
        self.addCleanup(undo)
        spare = reserve(mnt, 4)
        filler = Filler(mnt)
        self.addCleanup(filler.close)  # before the unmount
        srv = self.server(data=data_on(mnt, "full"), shim=False)
        srv.start()
        c = srv.client()
        led = Ledger()
        for i in range(4):
            self.assertEqual(led.send(c, "AddProduct",
                                      product("p%d" % i)).status, 200)
        led.send(c, "RegisterUser", {"userId": "u0", "name": "U",
                                     "country": "SE"})
        # load from two clients while the disk fills up and stays full
        stop = threading.Event()
        statuses = {}
        odd = []

        def load(tid):
            cc = srv.client()
            n = 0
            while not stop.is_set():
                n += 1
                if n % 4:
                    r = led.send(cc, "Restock", {"productId": "p%d" % (
                        n % 4), "quantity": 1 + n % 7})
                else:
                    r = led.send(cc, "AddProduct", product("q%d-%d" % (
                        tid, n)))
                with led.lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status not in (200, 507):
                    odd.append(r)
                    return
                if r.status == 507:
                    time.sleep(0.01)
        ths = [threading.Thread(target=load, args=(i,)) for i in range(2)]
        for t in ths:
            t.start()
        try:
            time.sleep(0.3)
            filler.fill()
            # full: commands must fail with a clear 507 for a while
            full = wait_for(lambda: statuses.get(507, 0) >= 20, 30)
        finally:
            stop.set()
            for t in ths:
                t.join()
        self.assertEqual(odd, [], "answers other than 200 and 507 while "
                         "the disk filled")
        self.assertTrue(full, "no 507 with the disk full: %r" % statuses)
        r = led.send(c, "AddProduct", product("while-full"))
        err = self.assert_error(r, (507,), "no_space")
        self.assertTrue("full" in err["message"] or "space" in
                        err["message"], err)
        self.assertTrue(log_has(srv, "full"), "no log line names the full "
                        "disk:\n" + srv.logs()[-2000:])
        # reads go on, with their position
        q = c.get("/queries/product?productId=p0")
        self.assertEqual(q.status, 200, q)
        self.assertIsNotNone(q.header("X-Cleave-Position"))
        self.assertEqual(c.get("/health").status, 200)
        acked_full = len(led.acked)

        # a kill while full, and a restart while still full
        srv.kill9()
        try:
            srv.start()
            started_full = True
        except AssertionError as e:
            started_full = False
            self.assertIn("space", str(e).lower() + srv.logs().lower())
            if srv.proc:
                srv.proc.kill()
                srv.proc.wait()
                srv.log.close()
                srv.proc = None
        if started_full:
            c = srv.client()
            r = led.send(c, "AddProduct", product("still-full"))
            self.assert_error(r, (507,), "no_space")
        # space again: recovery (without a restart when it kept running)
        filler.remove()
        os.unlink(spare)
        if not started_full:
            srv.start()
        c = srv.client()
        r = led.send(c, "AddProduct", product("after-free"))
        self.assertEqual(r.status, 200, "no recovery once space is back: "
                         "%r" % r)
        led.retry_failed(self, c)
        head, _ = led.check_log(self, c)
        led.check_acked(self, c)
        self.assertEqual(c.get("/queries/product?productId=p1&min_position="
                               "%d&wait_ms=10000" % head).status, 200)
        # every projection catches up (not only the one queried)
        wait_for(lambda: all(p["position"] == head
                             for p in projections(c).values()), 30)
        for p in projections(c).values():
            self.assertEqual(p["position"], head, p)
        self.finish(srv, led, c)
        print("disk full (%s): %d commands acknowledged (%d before the "
              "kill), statuses under load %r, restart while full %s" % (
                  how, len(led.acked), acked_full, statuses,
                  "worked (commands 507)" if started_full
                  else "refused (exit 1, logged)"))

    def test_disk_full_recovers_without_restart(self):
        mnt, how, undo = mount_small(8)
        self.addCleanup(undo)
        spare = reserve(mnt, 2)
        filler = Filler(mnt)
        self.addCleanup(filler.close)  # before the unmount
        srv = self.server(data=data_on(mnt, "full2"), shim=False)
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "AddProduct", product("p0"))
        filler.fill()
        r = None
        for i in range(2000):
            r = led.send(c, "Restock", {"productId": "p0", "quantity": 1})
            if r.status != 200:
                break
        self.assert_error(r, (507,), "no_space")
        filler.remove()
        os.unlink(spare)
        r = led.send(c, "Restock", {"productId": "p0", "quantity": 1})
        self.assertEqual(r.status, 200, "no recovery once space is back: "
                         "%r" % r)
        self.finish(srv, led, c)


# ---- (b) fsync and write errors -------------------------------------------------

class WriteStoreIO(FaultCase):
    def test_fsync_eio_on_commit(self):
        srv = self.server(name="fsync")
        srv.start()
        c = srv.client()
        led = Ledger()
        for i in range(3):
            self.assertEqual(led.send(c, "AddProduct",
                                      product("p%d" % i)).status, 200)
        # one failed fsync of the WAL: the command in flight fails
        srv.arm("sync write.db-wal 1")
        r = led.send(c, "Restock", {"productId": "p0", "quantity": 7},
                     key="fsync-1")
        self.assertNotEqual(r.status, 200, "a command whose commit fsync "
                            "failed was acknowledged")
        self.assert_error(r, (500, 503), None)
        self.assertEqual(len(srv.injected()), 1, srv.injected())
        self.assertTrue(log_has(srv, "commit failed") or
                        log_has(srv, "write store failed"),
                        srv.logs()[-2000:])
        # the outcome of that commit is unknown: said so, and the engine
        # fail-stops — commands refused, /health 503 — until a restart
        self.assert_error(r, (500,), "commit_unknown")
        h = c.get("/health")
        self.assertEqual(h.status, 503, h)
        self.assertEqual(h.json()["status"], "failed", h)
        m = c.get("/metrics").body.decode()
        self.assertIn("cleave_write_store_failed 1", m)
        r = led.send(c, "Restock", {"productId": "p1", "quantity": 1})
        self.assert_error(r, (503,), "write_store_failed")
        self.assertEqual(len(srv.injected()), 1, "a refused command "
                         "touched the store")
        q = c.get("/queries/product?productId=p0")
        self.assertEqual(q.status, 200, q)  # reads go on
        policy = "continue"
        if r.status != 200:
            self.assert_error(r, (500, 503))
            policy = "fail-stop"
            srv.disarm()  # the shim's counts start over in a new process
            srv.stop(expect=None)
            srv.start()
            c = srv.client()
        led.retry_failed(self, c)
        # persistent failure: every commit fails, reads go on
        srv.arm("sync write.db-wal *")
        for i in range(5):
            r = led.send(c, "Restock", {"productId": "p2", "quantity": 1})
            self.assertIn(r.status, (500, 503), r)
        # carrying on, each command tries (and fails) a commit; failing
        # stopped, only the first does and the others are refused at once
        self.assertGreaterEqual(len(srv.injected()),
                                6 if policy == "continue" else 2)
        q = c.get("/queries/product?productId=p2")
        self.assertEqual(q.status, 200, q)
        ev = c.get("/events?from=0&limit=5")
        self.assertEqual(ev.status, 200, ev)
        srv.disarm()
        if policy == "fail-stop":
            srv.stop(expect=None)
            srv.start()
            c = srv.client()
        r = led.send(c, "Restock", {"productId": "p2", "quantity": 1})
        self.assertEqual(r.status, 200, "no recovery once fsync works: %r"
                         % r)
        led.retry_failed(self, c)
        # a failed fsync, then a crash before any other commit: the
        # failed command's outcome is decided by recovery; its key settles
        # it with exactly one effect either way
        # (every WAL sync fails until the crash: the background
        # checkpoint syncs the WAL too, and may come first)
        srv.arm("sync write.db-wal *")
        r = led.send(c, "Restock", {"productId": "p1", "quantity": 3},
                     key="fsync-crash")
        self.assertNotEqual(r.status, 200)
        srv.kill9()
        srv.disarm()
        srv.start()
        c = srv.client()
        r = c.command("Restock", {"productId": "p1", "quantity": 3},
                      {"Idempotency-Key": "fsync-crash"})
        self.assertEqual(r.status, 200, r)
        recovered = r.header("Idempotent-Replayed") == "true"
        led.acked["fsync-crash"] = ("Restock", {"productId": "p1",
                                                "quantity": 3}, r.body)
        led.failed.pop("fsync-crash", None)
        head = self.finish(srv, led, c)
        print("fsync EIO on commit: engine policy '%s'; the command whose "
              "commit fsync failed just before a crash was %s at restart "
              "(its retry %s); %d faults injected, head %d" % (
                  policy, "RECOVERED (committed)" if recovered else
                  "not recovered", "replayed it" if recovered else
                  "applied it once", len(srv.injected()), head))

    def test_write_eio_on_wal(self):
        srv = self.server(name="wal-eio")
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "AddProduct", product("p0"))
        srv.arm("pwrite,write write.db-wal 1")
        r = led.send(c, "Restock", {"productId": "p0", "quantity": 2})
        self.assertNotEqual(r.status, 200)
        self.assert_error(r, (500, 503))
        self.assertEqual(len(srv.injected()), 1, srv.injected())
        srv.disarm()
        r = led.send(c, "Restock", {"productId": "p0", "quantity": 2})
        if r.status in (500, 503):  # a fail-stop engine: restart
            srv.stop(expect=None)
            srv.start()
            c = srv.client()
            r = led.send(c, "Restock", {"productId": "p0", "quantity": 2})
        self.assertEqual(r.status, 200, r)
        self.finish(srv, led, c)

    def test_checkpoint_fsync_eio(self):
        """The background checkpoint (every 200 ms, src/write/command.c
        maint_main) copies the WAL into write.db and fsyncs it.  While that
        fsync fails: commands go on (their commits are durable in the
        WAL), the failure is logged, and once fsync works the WAL is
        checkpointed.  Checks first that the background checkpoint runs
        at all."""
        srv = self.server(name="ckpt")
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "AddProduct", product("p0"))
        db = os.path.join(srv.data, "write.db")
        size0 = os.path.getsize(db)
        for i in range(60):
            led.send(c, "Restock", {"productId": "p0", "quantity": 1})
        ran = wait_for(lambda: os.path.getsize(db) > size0, 3)
        if not ran:
            wal = os.path.getsize(db + "-wal")
            self.finish(srv, led, c)
            self.fail(
                "KNOWN BUG (engine, src/write/wstore_sqlite.c sq_open/"
                "sq_maintain): the background checkpoint never runs: "
                "write.db stayed %d bytes while the WAL grew to %d.  The "
                "checkpoint connection (s->ckpt) never read the database, "
                "so sqlite3_wal_checkpoint_v2() on it returns SQLITE_OK "
                "with log = -1 and does nothing (SQLite 3.40.1 opens the "
                "WAL lazily).  The WAL is only checkpointed by the writer "
                "itself every 4096 frames, inside a command's commit.  Fix:"
                " read once on s->ckpt after opening it (e.g. SELECT 1 "
                "FROM sqlite_master LIMIT 1), and treat log == -1 as an "
                "error." % (size0, wal))
        srv.arm("sync write.db$ *")
        t_end = time.time() + 1.0
        while time.time() < t_end:
            r = led.send(c, "Restock", {"productId": "p0", "quantity": 1})
            self.assertEqual(r.status, 200, r)
        failed = wait_for(lambda: srv.injected(), 3)
        logged = wait_for(lambda: log_has(srv, "upkeep"), 3)
        srv.disarm()
        self.finish(srv, led, c)
        self.assertTrue(failed, "the checkpoint never fsynced write.db")
        self.assertTrue(logged, "checkpoint failure not logged")


class ReadStoreIO(FaultCase):
    def test_lmdb_fsync_eio(self):
        """One failed fsync of a projection's LMDB commit: that batch is
        retried, the projection reports the error meanwhile, the others
        never notice, and it catches up.  (Read models fsync their commits
        only with --read-sync; by default they are rebuilt after a machine
        crash instead.)"""
        srv = self.server("--read-sync", name="lmdb-fsync")
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "AddProduct", product("p0"))
        srv.arm("sync read/catalog.g 1")
        for i in range(1, 6):
            self.assertEqual(led.send(c, "AddProduct",
                                      product("p%d" % i)).status, 200)
        head = c.get("/health").json()["head"]
        r = c.get("/queries/product?productId=p5&min_position=%d&wait_ms="
                  "10000" % head)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(srv.injected()), 1, srv.injected())
        self.assertTrue(wait_for(lambda: all(
            p["position"] == head for p in projections(c).values()), 20),
            projections(c))
        ps = projections(c)
        self.assertIn("Input/output error", ps["catalog"]["last_error"] or
                      "", ps["catalog"])
        for name, p in ps.items():
            if name != "catalog":
                self.assertIsNone(p["last_error"], p)
        self.assertTrue(log_has(srv, "catalog", "store failure"))
        self.finish(srv, led, c)

    def test_lmdb_meta_write_eio(self):
        """One failed write of an LMDB meta page puts that environment in
        LMDB's fatal state (MDB_PANIC): every later transaction fails.
        Wanted: the engine reopens the environment (recovery without a
        restart) or at least reports the projection as failed (state and
        /health); never a projection that says "live" while its queries
        answer 500 for ever.  After a restart everything must be whole."""
        srv = self.server(name="lmdb-meta")
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "AddProduct", product("p0"))
        c.get("/queries/product?productId=p0&min_position=1")
        srv.arm("pwrite read/catalog.g 1")
        for i in range(1, 4):
            self.assertEqual(led.send(c, "AddProduct",
                                      product("p%d" % i)).status, 200)
        head = c.get("/health").json()["head"]
        self.assertTrue(wait_for(lambda: srv.injected(), 5))
        srv.disarm()

        seen = set()

        def settled():
            ps = projections(c)
            h = c.get("/health")
            if ps["catalog"]["state"] != "live" or \
                    ps["catalog"].get("failing") or h.status != 200 or \
                    h.json().get("status") != "ok":
                seen.add("reported")
            if ps["catalog"]["position"] == head:
                seen.add("recovered")
                return True
            return False
        wait_for(settled, 10, 0.05)
        outcome = "recovered" if "recovered" in seen else \
            "reported" if seen else None
        if outcome == "recovered":
            # recovered means whole again: not still reported failing
            self.assertTrue(wait_for(
                lambda: not projections(c)["catalog"].get("failing") and
                c.get("/health").json().get("status") == "ok", 10),
                projections(c))
        ps = projections(c)
        q = c.get("/queries/product?productId=p1")
        self.assertTrue(wait_for(lambda: all(
            p["position"] == head for n, p in projections(c).items()
            if n != "catalog"), 20), projections(c))
        # a restart brings it back whole, whatever happened before
        srv.stop()
        verify(srv.data)
        srv.start()
        c = srv.client()
        r = c.get("/queries/product?productId=p3&min_position=%d&wait_ms="
                  "10000" % head)
        self.assertEqual(r.status, 200, r)
        led.check_acked(self, c)
        led.check_log(self, c)
        srv.stop()
        verify(srv.data)
        print("LMDB meta-page write EIO: the catalog projection %s%s" % (
            "recovered without a restart" if outcome == "recovered" else
            "was reported failing until the restart" if outcome else
            "neither recovered nor was reported",
            " (reported failing meanwhile)" if outcome == "recovered" and
            "reported" in seen else ""))
        if not outcome:
            self.fail(
                "KNOWN BUG (engine, src/read/rstore_lmdb.c + "
                "src/sync/runner.c): after one failed LMDB meta-page write "
                "the catalog environment is in LMDB's fatal state "
                "(MDB_PANIC); the runner retries it for ever, the "
                "projection still says state=%r, /health says ok, and its "
                "queries answer %d: %s.  Reopen the environment after "
                "MDB_PANIC (or report the projection failed).  A restart "
                "repairs it (checked above)." % (
                    ps["catalog"]["state"], q.status, q.body[:200]))


# ---- (c) LMDB map full ------------------------------------------------------------

def serve_has_flag(flag):
    p = subprocess.run([ct.BIN, "serve", "--help"], capture_output=True,
                       text=True, timeout=30)
    return flag in p.stdout + p.stderr


class MapFull(FaultCase):
    def test_lmdb_map_full(self):
        small = 1 << 20  # the smallest --lmdb-map-size
        if serve_has_flag("--lmdb-map-size"):
            srv = self.server("--lmdb-map-size", str(small), shim=False,
                              name="mapfull")
            how = "--lmdb-map-size"
        else:
            srv = self.server(name="mapfull", extra_env={
                "FAILIO_LMDB_MAPSIZE": str(small)})
            how = "failio (cleave serve has no --lmdb-map-size)"
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "RegisterUser", {"userId": "u0", "name": "U",
                                     "country": "SE"})
        for i in range(3):
            led.send(c, "AddProduct", product("p%d" % i, name="N" * 200))

        # orders (big documents) fill the "orders" projection's map
        def orders_full():
            return "map full" in (projections(c)["orders"]["last_error"] or
                                  "")

        odd = []

        def load(tid, stop):
            cc = srv.client()
            n = 0
            while not stop.is_set():
                n += 1
                cart = "c%d-%d" % (tid, n)
                for p in range(3):
                    r = led.send(cc, "AddToCart", {
                        "cartId": cart, "userId": "u0",
                        "productId": "p%d" % p, "quantity": 1})
                    if r.status != 200:
                        odd.append(r)
                        return
                r = led.send(cc, "Checkout", {"cartId": cart,
                                              "userId": "u0"})
                if r.status != 200:
                    odd.append(r)
                    return
        stop = threading.Event()
        ths = [threading.Thread(target=load, args=(i, stop))
               for i in range(3)]
        for t in ths:
            t.start()
        try:
            full = wait_for(orders_full, 60, 0.2)
            time.sleep(0.3)  # commands go on while the map is full
        finally:
            stop.set()
            for t in ths:
                t.join()
        self.assertEqual(odd, [], "commands failed while a read model's "
                         "map was full")
        self.assertTrue(full, "the orders map never filled: %r" %
                        projections(c)["orders"])
        head = c.get("/health").json()["head"]
        ps = projections(c)
        self.assertLess(ps["orders"]["position"], head)
        self.assertEqual(ps["orders"]["state"], "live")
        for name in ("catalog", "revenue", "bestsellers", "search"):
            r = wait_for(lambda: projections(c)[name]["position"] == head, 10)
            self.assertTrue(r, "%s is held back by orders' full map" % name)
        self.assertTrue(log_has(srv, "orders", "map full"),
                        srv.logs()[-2000:])
        # queries answer, each with the position it reflects
        q = c.get("/queries/product?productId=p0&min_position=%d" % head)
        self.assertEqual(q.status, 200, q)
        self.assertEqual(int(q.header("X-Cleave-Position")), head)
        oid = json.loads(led.acked[max(
            (k for k in led.acked if led.acked[k][0] == "Checkout"),
            key=lambda k: int(k.split("-")[1]))][2])["result"]["orderId"]
        q = c.get("/queries/user_orders?userId=u0&limit=1")
        self.assertEqual(q.status, 200, q)
        self.assertEqual(int(q.header("X-Cleave-Position")),
                         ps["orders"]["position"])
        q = c.get("/queries/order?orderId=%s&min_position=%d&wait_ms=300" %
                  (oid, head))
        err = self.assert_error(q, (504,), "timeout")
        self.assertIn("current position", err["message"])
        # commands are not held back
        self.assertEqual(led.send(c, "Restock", {"productId": "p0",
                                                 "quantity": 1}).status, 200)
        # a larger map (a restart without the small one): it catches up
        srv.stop()
        srv.args = []
        srv.env.pop("FAILIO_LMDB_MAPSIZE", None)
        srv.start()
        c = srv.client()
        head = c.get("/health").json()["head"]
        q = c.get("/queries/order?orderId=%s&min_position=%d&wait_ms=10000"
                  % (oid, head))
        self.assertEqual(q.status, 200, q)
        self.finish(srv, led, c)
        print("LMDB map full (%s, %d KiB): orders stopped at %d of %d, the "
              "others went on; caught up after a restart with the default "
              "map" % (how, small // 1024, ps["orders"]["position"], head))


# ---- (d) a projection that cannot apply an event ------------------------------

class Poison(FaultCase):
    def test_poison_event_parks_projection(self):
        """An event the catalog and search handlers refuse (a restock of a
        product no ProductAdded made: written into the log behind the
        engine's back, as a buggy old version could have) parks those two
        projections at it (policy park); the others go on; queries that
        need the parked ones answer 503 parked; /health says degraded;
        resume retries and parks again; commands are unaffected.  Skip
        and resume-after-fix are covered in-process by
        tests/unit/test_engine.c (test_poison)."""
        srv = self.server(shim=False, name="poison")
        srv.start()
        c = srv.client()
        led = Ledger()
        led.send(c, "RegisterUser", {"userId": "u0", "name": "U",
                                     "country": "SE"})
        led.send(c, "AddProduct", product("p0"))
        srv.stop()
        db = sqlite3.connect(os.path.join(srv.data, "write.db"))
        head = db.execute("SELECT max(position) FROM events").fetchone()[0]
        db.execute(
            "INSERT INTO events(position, stream, version, type, "
            "schema_version, data, ts_us, trace_id, command_id) VALUES "
            "(?, 'product-ghost', 1, 'ProductRestocked', 1, ?, ?, "
            "'poison', 'poison')",
            (head + 1, json.dumps({"productId": "ghost", "quantity": 5,
                                   "stock": 5}), int(time.time() * 1e6)))
        db.commit()
        db.close()
        bad = head + 1
        srv.start()
        c = srv.client()
        self.assertTrue(wait_for(lambda: projections(c)["catalog"]["state"]
                                 == "parked", 20), projections(c))
        # commands go on; the projections that do not read it too
        led.send(c, "AddToCart", {"cartId": "c1", "userId": "u0",
                                  "productId": "p0", "quantity": 2})
        r = led.send(c, "Checkout", {"cartId": "c1", "userId": "u0"})
        self.assertEqual(r.status, 200, r)
        head = r.json()["position"]
        oid = r.json()["result"]["orderId"]
        q = c.get("/queries/order?orderId=%s&min_position=%d&wait_ms=5000"
                  % (oid, head))
        self.assertEqual(q.status, 200, q)
        self.assertTrue(wait_for(lambda: all(
            projections(c)[n]["position"] == head
            for n in ("orders", "revenue", "bestsellers")), 20),
            projections(c))
        ps = projections(c)
        self.assertEqual(ps["catalog"]["parked_position"], bad, ps)
        self.assertEqual(ps["catalog"]["position"], bad - 1, ps)
        self.assertTrue(ps["catalog"]["last_error"], ps)
        # search gathers stock changes and writes them once per batch
        # (cleave_rtx_defer): its failure shows at the batch's flush, and
        # the engine still names the event and keeps the ones before it
        self.assertTrue(wait_for(lambda: projections(c)["search"]["state"]
                                 == "parked", 20), projections(c))
        ps = projections(c)
        self.assertEqual(ps["search"]["parked_position"], bad, ps)
        self.assertEqual(ps["search"]["position"], bad - 1, ps)
        for name in ("orders", "revenue", "bestsellers"):
            self.assertEqual(ps[name]["state"], "live", ps[name])
            self.assertEqual(ps[name]["position"], head, ps[name])
        h = c.get("/health")
        self.assertEqual(h.status, 200)
        self.assertEqual(h.json()["status"], "degraded", h)
        q = c.get("/queries/product?productId=p0&min_position=%d" % head)
        self.assert_error(q, (503,), "parked")
        q = c.get("/queries/product?productId=p0")
        self.assertEqual(q.status, 200, q)
        self.assertEqual(int(q.header("X-Cleave-Position")), bad - 1)
        self.assertTrue(log_has(srv, "catalog", "parked"))
        # resume retries the event: still poison, parked again
        r = c.post("/projections/catalog/resume")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(wait_for(lambda: projections(c)["catalog"]["state"]
                                 == "parked", 20))
        r = c.post("/projections/orders/resume")
        self.assert_error(r, (409,), "not_parked")
        # a restart keeps it parked at the same event, nothing lost
        srv.stop()
        srv.start()
        c = srv.client()
        self.assertTrue(wait_for(lambda: projections(c)["catalog"]["state"]
                                 == "parked", 20))
        self.assertEqual(projections(c)["catalog"]["parked_position"], bad)
        led.check_acked(self, c)
        led.check_log(self, c)
        srv.stop()
        verify(srv.data)  # the parked copy is right up to where it stopped


if __name__ == "__main__":
    warnings.simplefilter("ignore", ResourceWarning)
    unittest.main(verbosity=2)
