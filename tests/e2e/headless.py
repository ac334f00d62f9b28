"""A headless Chromium driven over the DevTools protocol, for the tests of
the pages the server serves (test_ui.py) and the dashboard's screenshot
(scripts/dashboard-screenshot.py).  Standard library only.

The protocol runs over a pipe (--remote-debugging-pipe): Chromium reads
commands from its fd 3 and writes answers and events to its fd 4, each a
JSON object ended by a NUL byte — no port, no websocket.  One reader
thread sorts what comes back: answers go to the caller waiting for their
id, events into a list per session (console messages, exceptions, the
browser's own log: a Content-Security-Policy violation shows there).

    with Browser() as b:
        page = b.open("http://127.0.0.1:8080/ui")
        page.wait("document.querySelector('tbody tr')", "a row", 60)
        page.eval("document.title")
        page.screenshot("out.png")

Browser() raises Unavailable when no Chromium can be started at all.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class Unavailable(Exception):
    """No Chromium could be started (not installed, or it dies at once)."""


class ProtocolError(Exception):
    pass


def find_chromium():
    """The Chromium binary: $CHROMIUM, else the first of CANDIDATES on the
    PATH (Debian's is chromium), else None."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


class Page:
    """One tab, attached with its own session."""

    def __init__(self, browser, target_id, session_id):
        self.b = browser
        self.target_id = target_id
        self.session = session_id

    def send(self, method, params=None, timeout=60):
        return self.b.send(method, params, session=self.session,
                           timeout=timeout)

    def eval(self, expr, timeout=60):
        """The value of a JavaScript expression in the page (awaited when
        it is a promise; JSON-able values only)."""
        r = self.send("Runtime.evaluate", {"expression": expr,
                                           "returnByValue": True,
                                           "awaitPromise": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise ProtocolError("%s: %s" % (expr[:200], d.get(
                "exception", {}).get("description") or d.get("text")))
        return r.get("result", {}).get("value")

    def wait(self, expr, what, timeout, step=0.1):
        """Polls expr until it is truthy and returns it; raises
        AssertionError naming `what` and its last value after timeout
        seconds.  An expression that throws counts as not yet."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                last = self.eval(expr)
            except ProtocolError as e:
                last = e  # the page is still loading (no body yet…)
            else:
                if last:
                    return last
            time.sleep(step)
        raise AssertionError("%s: not within %d s (last: %r)" %
                             (what, timeout, last))

    def navigate(self, url):
        self.send("Page.navigate", {"url": url})

    def screenshot(self, path):
        r = self.send("Page.captureScreenshot", {"format": "png"},
                      timeout=120)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))

    def events(self, method=None):
        """The events received for this page so far (a copy)."""
        with self.b.lock:
            ev = list(self.b.events.get(self.session, []))
        return [e for e in ev if method is None or e["method"] == method]

    def problems(self):
        """Lines for every JavaScript exception, console error and browser
        log entry at warning or error level (a CSP violation, a failed
        load) seen so far."""
        out = []
        for e in self.events():
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % (d.get("exception", {}).get(
                    "description") or d.get("text")))
            elif e["method"] == "Runtime.consoleAPICalled" and \
                    p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description")))
                    for a in p.get("args", []))))
            elif e["method"] == "Log.entryAdded":
                ent = p.get("entry", {})
                if ent.get("level") in ("error", "warning"):
                    out.append("log %s %s: %s %s" % (
                        ent.get("level"), ent.get("source"),
                        ent.get("text"), ent.get("url", "")))
        return out


class Browser:
    """A headless Chromium on a temporary profile; close() (or the with
    block) ends it and removes the profile."""

    def __init__(self, width=1400, height=1000, binary=None):
        self.width, self.height = width, height
        self.binary = binary or find_chromium()
        if not self.binary:
            raise Unavailable("no chromium on the PATH (set CHROMIUM)")
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.answers = {}
        self.events = {}
        self.next_id = 0
        self.proc = None
        self.profile = tempfile.mkdtemp(prefix="cleave-chromium-")
        self.stderr = open(os.path.join(self.profile, "stderr.log"), "w+b")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium wants the pipe on fds 3 and 4 exactly; a small Python
        # puts it there and execs it (the pipe's own fds may be any
        # number, 3 and 4 included, so they are moved out of the way
        # first; dash's redirections stop at fd 9)
        args = [self.binary, "--headless", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps",
                "--disable-breakpad", "--mute-audio", "--hide-scrollbars",
                "--disable-dev-shm-usage", "--password-store=basic",
                "--user-data-dir=" + self.profile,
                "--window-size=%d,%d" % (self.width, self.height),
                "about:blank"]
        hi = [fcntl_high(fd) for fd in (to_chrome_r, from_chrome_w)]
        boot = ("import os, sys\n"
                "os.dup2(%d, 3); os.dup2(%d, 4)\n"
                "os.close(%d); os.close(%d)\n"
                "os.execv(sys.argv[1], sys.argv[1:])\n" % (hi[0], hi[1],
                                                          hi[0], hi[1]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot] + args, stdin=subprocess.DEVNULL,
            stdout=self.stderr, stderr=self.stderr, pass_fds=hi,
            start_new_session=True)
        for fd in hi:
            os.close(fd)
        self.wfd = to_chrome_w
        self.rfd = from_chrome_r
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        try:
            v = self.send("Browser.getVersion", timeout=60)
        except (ProtocolError, OSError) as e:
            raise Unavailable("chromium did not answer: %s\n%s" %
                              (e, self.log()[-2000:]))
        self.version = v.get("product", "?")

    def log(self):
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def _read(self):
        buf = b""
        while True:
            try:
                d = os.read(self.rfd, 1 << 16)
            except OSError:
                d = b""
            if not d:
                with self.lock:
                    self.answers[None] = "closed"
                    self.cond.notify_all()
                return
            buf += d
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                try:
                    m = json.loads(msg)
                except ValueError:
                    continue
                with self.lock:
                    if "id" in m:
                        self.answers[m["id"]] = m
                        self.cond.notify_all()
                    else:
                        self.events.setdefault(m.get("sessionId"),
                                               []).append(m)

    def send(self, method, params=None, session=None, timeout=60):
        """Sends one command and returns its result; raises ProtocolError
        on an error answer, a timeout, or a browser that went away."""
        with self.lock:
            self.next_id += 1
            mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        data = json.dumps(m).encode() + b"\0"
        try:
            while data:
                n = os.write(self.wfd, data)
                data = data[n:]
        except OSError as e:
            raise ProtocolError("%s: the browser is gone (%s)" % (method, e))
        deadline = time.time() + timeout
        with self.lock:
            while mid not in self.answers:
                if None in self.answers:
                    raise ProtocolError("%s: the browser closed the pipe"
                                        % method)
                left = deadline - time.time()
                if left <= 0:
                    raise ProtocolError("%s: no answer in %d s" %
                                        (method, timeout))
                self.cond.wait(left)
            a = self.answers.pop(mid)
        if "error" in a:
            raise ProtocolError("%s: %s" % (method, a["error"]))
        return a.get("result", {})

    def open(self, url):
        """A new tab at url, with exceptions, console and log events on."""
        t = self.send("Target.createTarget", {"url": "about:blank"})
        s = self.send("Target.attachToTarget", {"targetId": t["targetId"],
                                                "flatten": True})
        page = Page(self, t["targetId"], s["sessionId"])
        for m in ("Runtime.enable", "Log.enable", "Page.enable"):
            page.send(m)
        page.send("Emulation.setDeviceMetricsOverride", {
            "width": self.width, "height": self.height,
            "deviceScaleFactor": 1, "mobile": False})
        page.navigate(url)
        return page

    def close(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.send("Browser.close", timeout=10)
            except (ProtocolError, OSError):
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc and self.proc.poll() is None:
            # the whole session: Chromium's helper processes too
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
            self.proc.wait()
        if self.proc:
            # helpers that outlived the browser process
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
        self.proc = None
        if getattr(self, "reader", None):
            self.reader.join(10)  # it ends at the pipe's end of file
        for name in ("wfd", "rfd"):
            fd = getattr(self, name, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)
        try:
            self.stderr.close()
        except OSError:
            pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def fcntl_high(fd, low=10):
    """fd moved to a number >= low (inheritable), the old one closed."""
    import fcntl
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, low)
    os.close(fd)
    os.set_inheritable(new, True)
    return new
