/* dashboard.js — the operator's dashboard (GET /ui).
 *
 * Everything it shows comes from one server-sent event stream, GET
 * /ui/stream: first "history" (up to 300 samples, one a second, oldest
 * first), then "stats" once a second (the server's figures and every
 * projection as GET /projections lists it).  Each stats message is also
 * one more sample for the plots.  EventSource reconnects by itself after
 * a network error; an answer it cannot use (not 200, not an event
 * stream) closes it, and then this script opens a new one, waiting
 * longer each time.  The buttons POST to the projection routes with the
 * optional token. */
"use strict";

(() => {
  const {el, int, num, short, setText} = cleave;
  const WINDOW_MS = 300 * 1000;  /* the plots' span */
  const SPARK_MS = 120 * 1000;   /* the table's lag sparklines */
  const STALE_MS = 5000;         /* no stats for this long: say so */
  const MAX_ACTIONS = 50;
  const PALETTE = ["#5aa9ff", "#39c98a", "#f0b44a", "#c084fc", "#ff7f6b",
                   "#4dd0e1", "#e879f9", "#a3e635", "#fca5a5", "#93c5fd"];

  const st = {
    samples: [],      /* {time_ms, head, commands_per_s, queries_per_s, projections} */
    stats: null,      /* the last stats message */
    lastMsgAt: 0,     /* Date.now() when a message last came */
    conn: "connecting",
    es: null,
    retryMs: 1000,
    retryAt: 0,
    colors: new Map(),/* projection name -> colour */
    rows: new Map(),  /* projection name -> its table row's parts */
    lagUnit: "events",
  };

  function color(name) {
    if (!st.colors.has(name))
      st.colors.set(name, PALETTE[st.colors.size % PALETTE.length]);
    return st.colors.get(name);
  }

  /* ---- the stream --------------------------------------------------- */

  function setConn(state, why) {
    st.conn = state;
    document.body.dataset.conn = state;
    const c = document.getElementById("conn");
    c.dataset.state = state;
    const words = {connecting: "connecting…", live: "live",
                   reconnecting: "reconnecting…", disconnected: "disconnected",
                   stale: "no figures"};
    setText(c, words[state] || state);
    const banner = document.getElementById("banner");
    if (state === "live" || state === "connecting") {
      banner.hidden = true;
      return;
    }
    banner.hidden = false;
    banner.classList.toggle("bad", state === "disconnected");
    const age = st.lastMsgAt ? Math.round((Date.now() - st.lastMsgAt) / 1000) : null;
    const old = age == null ? "" : " The figures below are " + age + " s old.";
    if (state === "reconnecting")
      banner.textContent = "Connection to the server lost — reconnecting…" + old;
    else if (state === "disconnected")
      banner.textContent = "Disconnected" + (why ? " (" + why + ")" : "") +
        " — retrying in " + Math.max(0, Math.ceil((st.retryAt - Date.now()) / 1000)) +
        " s." + old;
    else
      banner.textContent = "The stream is open but has sent nothing for " + age + " s.";
  }

  function connect() {
    const es = new EventSource("/ui/stream");
    st.es = es;
    setConn(st.lastMsgAt ? "reconnecting" : "connecting");
    es.addEventListener("history", (e) => {
      let h;
      try { h = JSON.parse(e.data); } catch (err) { return; }
      st.samples = (h.samples || []).slice(-300);
      received();
      drawCharts();
    });
    es.addEventListener("stats", (e) => {
      let s;
      try { s = JSON.parse(e.data); } catch (err) { return; }
      st.stats = s;
      addSample(s);
      received();
      render();
    });
    es.onerror = () => {
      if (st.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        /* refused (not 200, not text/event-stream): EventSource gives
         * up, so try again ourselves, waiting longer each time */
        es.close();
        st.retryAt = Date.now() + st.retryMs;
        setTimeout(connect, st.retryMs);
        st.retryMs = Math.min(st.retryMs * 2, 15000);
        setConn("disconnected", "the server refused the stream");
      } else {
        setConn("reconnecting");
      }
    };
  }

  function received() {
    st.lastMsgAt = Date.now();
    st.retryMs = 1000;
    if (st.conn !== "live") setConn("live");
  }

  /* A stats message as a sample (the shape of the history's). */
  function addSample(s) {
    const p = {};
    for (const x of s.projections || [])
      p[x.name] = {lag_events: x.lag_events, lag_seconds: x.lag_seconds,
                   events_per_s: x.events_per_s};
    const last = st.samples[st.samples.length - 1];
    if (last && last.time_ms >= s.time_ms) return;
    st.samples.push({time_ms: s.time_ms, head: s.head,
                     commands_per_s: s.commands ? s.commands.per_s : null,
                     queries_per_s: s.queries ? s.queries.per_s : null,
                     projections: p});
    const cut = s.time_ms - WINDOW_MS - 2000;
    while (st.samples.length > 300 || (st.samples.length && st.samples[0].time_ms < cut))
      st.samples.shift();
  }

  /* Events appended per second, from the heads of consecutive samples. */
  function appendRate(a, b) {
    const dt = (b.time_ms - a.time_ms) / 1000;
    if (dt <= 0 || dt > 5 || b.head < a.head) return null;
    return (b.head - a.head) / dt;
  }

  /* ---- figures ------------------------------------------------------ */

  function render() {
    const s = st.stats;
    setText("role", s.role === "query_node" ? "query node" : s.role || "—");
    setText("head", int(s.head));
    const c = s.commands || {}, q = s.queries || {};
    setText("cmd-rate", num(c.per_s));
    setText("cmd-p50", num(c.p50_ms));
    setText("cmd-p99", num(c.p99_ms));
    setText("cmd-total", int(c.total));
    setText("cmd-failed", int(c.failed));
    setText("q-rate", num(q.per_s));
    setText("q-p50", num(q.p50_ms));
    setText("q-p99", num(q.p99_ms));
    setText("q-total", int(q.total));
    setText("subs", int(s.subscribers));
    const n = st.samples.length;
    const ev = n >= 2 ? appendRate(st.samples[n - 2], st.samples[n - 1]) : null;
    setText("ev-rate", num(ev));
    let worst = null;
    for (const p of s.projections || [])
      if (!worst || p.lag_events > worst.lag_events) worst = p;
    setText("max-lag", worst ? int(worst.lag_events) : "—");
    setText("max-lag-sub", worst && worst.lag_events > 0
      ? "events, " + worst.name + " (" + num(worst.lag_seconds) + " s)" : "events, all caught up");
    renderTable(s);
    drawCharts();
  }

  function renderTable(s) {
    const tbody = document.querySelector("#projections tbody");
    const seen = new Set();
    const projs = s.projections || [];
    let live = 0, rebuilding = 0, parked = 0, failing = 0;
    for (const p of projs) {
      seen.add(p.name);
      let row = st.rows.get(p.name);
      if (!row) {
        row = makeRow(p.name);
        st.rows.set(p.name, row);
      }
      tbody.append(row.tr, row.err); /* keeps the server's order */
      updateRow(row, p, s.head);
      if (p.state === "live") live++;
      else if (p.state === "rebuilding") rebuilding++;
      else if (p.state === "parked") parked++;
      if (p.failing) failing++;
    }
    for (const [name, row] of st.rows)
      if (!seen.has(name)) {
        row.tr.remove();
        row.err.remove();
        st.rows.delete(name);
      }
    const parts = [projs.length + " projections", live + " live"];
    if (rebuilding) parts.push(rebuilding + " rebuilding");
    if (parked) parts.push(parked + " parked");
    if (failing) parts.push(failing + " failing");
    setText("proj-summary", parts.join(" · "));
  }

  function makeRow(name) {
    const cell = (k, cls) => el("td", {class: cls, "data-k": k});
    const row = {
      name,
      tr: el("tr", {"data-name": name}),
      err: el("tr", {class: "err", hidden: true, "data-name": name}),
      c: {
        name: el("td", {class: "name", "data-k": "name"}),
        state: cell("state"),
        position: cell("position", "r"),
        lag_events: cell("lag_events", "r"),
        lag_seconds: cell("lag_seconds", "r"),
        events_per_s: cell("events_per_s", "r"),
        dead_letters: cell("dead_letters", "r"),
        health: cell("health"),
        spark: cell("spark"),
        actions: el("td", {class: "acts"}),
      },
    };
    row.spark = svg("svg", {class: "spark", viewBox: "0 0 120 22", preserveAspectRatio: "none"});
    row.sparkPath = svg("path", {stroke: color(name)});
    row.spark.append(row.sparkPath);
    row.c.spark.append(row.spark);
    row.btn = {
      rebuild: el("button", {type: "button", class: "act", "data-act": "rebuild",
                             title: "blue-green rebuild: POST /projections/" + name + "/rebuild"}, "rebuild"),
      resume: el("button", {type: "button", class: "act", "data-act": "resume",
                            title: "resume a parked projection: POST /projections/" + name + "/resume"}, "resume"),
      verify: el("button", {type: "button", class: "act", "data-act": "verify",
                            title: "replay the log into a scratch copy and compare: POST /projections/" + name + "/verify"}, "verify"),
    };
    for (const what in row.btn) {
      row.btn[what].addEventListener("click", () => act(row, what));
      row.c.actions.append(row.btn[what]);
    }
    row.errCell = el("td", {colspan: 10});
    row.err.append(row.errCell);
    for (const k in row.c) row.tr.append(row.c[k]);
    return row;
  }

  function numCell(td, v, text, hot) {
    setText(td, text);
    td.classList.toggle("zero", !v);
    td.classList.toggle("hot", !!hot);
  }

  function updateRow(row, p, head) {
    const c = row.c;
    if (c.name.dataset.v !== p.name + "/" + p.version) {
      c.name.dataset.v = p.name + "/" + p.version;
      c.name.replaceChildren(p.name, el("span", {class: "muted"}, "v" + p.version));
    }
    const key = [p.state, p.building_version, p.building_position, p.parked_position, head].join("/");
    if (c.state.dataset.v !== key) {
      c.state.dataset.v = key;
      const kids = [el("span", {class: "state " + p.state}, p.state)];
      if (p.state === "rebuilding") {
        const pct = head > 0 ? Math.min(100, 100 * p.building_position / head) : 100;
        kids.push(el("span", {class: "state-detail", title: "a new copy (v" + p.building_version +
                             ") replays the log beside the serving one"},
                     "new copy at " + int(p.building_position)),
                  el("span", {class: "progress", title: num(pct) + " % of the log"},
                     el("i", {style: null})));
        kids[2].firstChild.style.width = pct.toFixed(1) + "%";
      } else if (p.state === "parked") {
        kids.push(el("span", {class: "state-detail"}, "at " + int(p.parked_position)));
      }
      c.state.replaceChildren(...kids);
    }
    numCell(c.position, p.position, int(p.position));
    numCell(c.lag_events, p.lag_events, int(p.lag_events), p.lag_events > 1000);
    numCell(c.lag_seconds, p.lag_seconds, num(p.lag_seconds), p.lag_seconds > 1);
    numCell(c.events_per_s, p.events_per_s, num(p.events_per_s));
    numCell(c.dead_letters, p.dead_letters, int(p.dead_letters), p.dead_letters > 0);
    setText(c.health, p.failing ? "failing" : "ok");
    c.health.className = "health " + (p.failing ? "failing" : "ok");
    row.btn.resume.disabled = p.state !== "parked";
    row.err.hidden = !p.last_error;
    row.tr.classList.toggle("has-err", !!p.last_error);
    if (p.last_error) {
      row.err.classList.toggle("old", !p.failing && p.state !== "parked");
      setText(row.errCell, (p.failing || p.state === "parked" ? "error: " : "last error (past): ") + p.last_error);
    }
    drawSpark(row);
  }

  /* ---- operator actions -------------------------------------------- */

  async function act(row, what) {
    const btn = row.btn[what];
    if (btn.classList.contains("busy")) return;
    /* a rebuild takes the model through a whole replay: ask twice */
    if (what === "rebuild" && !btn.classList.contains("armed")) {
      btn.classList.add("armed");
      btn.textContent = "confirm rebuild";
      btn.armTimer = setTimeout(() => {
        btn.classList.remove("armed");
        btn.textContent = "rebuild";
      }, 4000);
      return;
    }
    clearTimeout(btn.armTimer);
    btn.classList.remove("armed");
    btn.classList.add("busy");
    btn.textContent = what === "verify" ? "verifying…" : what + "…";
    const entry = logAction(what + " " + row.name);
    const r = await cleave.request("POST", "/projections/" + encodeURIComponent(row.name) + "/" + what, {});
    btn.classList.remove("busy");
    btn.textContent = what;
    finishAction(entry, r, summary(what, row.name, r));
  }

  function summary(what, name, r) {
    const b = r.body || {};
    if (r.status === 0) return r.message;
    if (r.status >= 400) {
      let m = r.message;
      if (r.status === 401) m += " — put the server's token in the token field";
      return m;
    }
    const p = b.projection || {};
    if (what === "rebuild")
      return "rebuild of " + name + " started: a new copy (v" +
        (p.building_version != null ? p.building_version : p.version) +
        ") replays the log from the start while the current one serves; it switches when caught up";
    if (what === "resume")
      return name + " resumed (" + (p.state || "?") + ", position " + int(p.position) + ")";
    if (what === "verify") {
      let m = name + ": " + int(b.differences) + " difference" + (b.differences === 1 ? "" : "s") +
        " at position " + int(b.position) + " (" + num(b.seconds) + " s)";
      for (const d of (b.diffs || []).slice(0, 5))
        m += "\n  " + d.what + " " + d.table + " " + (d.key != null ? d.key : d.key_hex);
      if ((b.diffs || []).length > 5 || b.truncated) m += "\n  …";
      return m;
    }
    return JSON.stringify(b);
  }

  function logAction(what) {
    const list = document.getElementById("actions");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = el("li", {class: "pend"},
                  el("span", {class: "t"}, cleave.clock(Date.now())),
                  el("span", {class: "code"}, "…"),
                  el("span", {class: "msg"}, what + " …"));
    list.prepend(li);
    while (list.children.length > MAX_ACTIONS) list.lastChild.remove();
    return li;
  }

  function finishAction(li, r, msg) {
    li.className = r.status >= 200 && r.status < 300 ? "ok" : "bad";
    li.dataset.status = r.status;
    setText(li.children[1], r.status ? String(r.status) : "—");
    setText(li.children[2], msg);
  }

  /* ---- plots -------------------------------------------------------- */

  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }

  /* The y axis: a round step (1, 2, 2.5 or 5 × 10^n) and 1 to 5 of them
   * up to the first multiple at or above the highest value. */
  function axis(v) {
    if (!(v > 0)) return {top: 1, steps: 4};
    const rough = v / 5, e = Math.pow(10, Math.floor(Math.log10(rough)));
    let step = 10 * e;
    for (const m of [1, 2, 2.5, 5])
      if (rough <= m * e) { step = m * e; break; }
    const steps = Math.max(1, Math.ceil(v / step - 1e-9));
    return {top: steps * step, steps};
  }

  /* Draws series [{name, color, points: [[t_ms, v|null], …]}] into an
   * <svg>, the last WINDOW_MS up to tEnd.  A gap of over 5 s between
   * samples (the server was down) breaks the line. */
  function plot(root, series, tEnd, opts) {
    const W = Math.max(200, root.clientWidth || 400), H = Math.max(100, root.clientHeight || 170);
    const L = 42, R = 8, T = 8, B = 18; /* margins; test_ui.py knows B */
    root.setAttribute("viewBox", "0 0 " + W + " " + H);
    let max = 0, npts = 0;
    for (const s of series)
      for (const [, v] of s.points) if (v != null && v > max) max = v;
    const {top, steps} = axis(max);
    const x = (t) => L + (W - L - R) * (1 - (tEnd - t) / WINDOW_MS);
    const y = (v) => T + (H - T - B) * (1 - Math.max(0, Math.min(v, top)) / top);
    const kids = [];
    for (let i = 0; i <= steps; i++) {
      const v = top * i / steps, yy = Math.round(y(v)) + .5;
      kids.push(svg("line", {class: "grid", x1: L, x2: W - R, y1: yy, y2: yy}));
      const t = svg("text", {x: L - 5, y: yy + 3, "text-anchor": "end"});
      t.textContent = short(v) + (opts.unit && i === steps ? opts.unit : "");
      kids.push(t);
    }
    for (let m = 0; m <= 5; m++) {
      const xx = x(tEnd - m * 60000);
      const t = svg("text", {x: xx, y: H - 4, "text-anchor": m === 0 ? "end" : m === 5 ? "start" : "middle"});
      t.textContent = m === 0 ? "now" : "−" + m + " min";
      kids.push(t);
    }
    for (const s of series) {
      let d = "", prev = null, n = 0;
      for (const [t, v] of s.points) {
        if (t < tEnd - WINDOW_MS || v == null) { prev = null; continue; }
        const cmd = prev == null || t - prev > 5000 ? "M" : "L";
        d += cmd + x(t).toFixed(1) + " " + y(v).toFixed(1);
        prev = t;
        n++;
      }
      npts += n;
      if (!d) continue;
      if (opts.area === s.name) {
        const runs = d.split("M").filter(Boolean);
        for (const run of runs) {
          const pts = run.split("L");
          const x0 = pts[0].split(" ")[0], x1 = pts[pts.length - 1].split(" ")[0];
          kids.push(svg("path", {class: "area", fill: s.color,
                                 d: "M" + run + "L" + x1 + " " + y(0) + "L" + x0 + " " + y(0) + "Z"}));
        }
      }
      const path = svg("path", {class: "series", stroke: s.color, d, "data-name": s.name, "data-points": n});
      if (s.dash) path.setAttribute("stroke-dasharray", "4 3");
      kids.push(path);
    }
    if (!npts) {
      const t = svg("text", {class: "empty", x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle"});
      t.textContent = st.samples.length ? "no data in the last 5 minutes" : "waiting for the first figures…";
      kids.push(t);
    }
    root.replaceChildren(...kids);
  }

  function legend(fig, series, fmt) {
    const box = fig.querySelector(".legend");
    box.replaceChildren(...series.map((s) => {
      let last = null;
      for (let i = s.points.length - 1; i >= 0 && last == null; i--) last = s.points[i][1];
      return el("span", {"data-name": s.name}, el("i", {style: null}), s.label || s.name,
                el("b", null, last == null ? "—" : fmt(last)));
    }));
    series.forEach((s, i) => { box.children[i].firstChild.style.background = s.color; });
  }

  function drawCharts() {
    const S = st.samples;
    if (!S.length) return;
    const tEnd = S[S.length - 1].time_ms;
    const names = [];
    const seenNames = new Set();
    const known = st.stats ? (st.stats.projections || []).map((p) => p.name) : [];
    for (const n of known) { seenNames.add(n); names.push(n); }
    for (const s of S)
      for (const n in s.projections || {})
        if (!seenNames.has(n)) { seenNames.add(n); names.push(n); }

    const ev = S.map((s, i) => [s.time_ms, i ? appendRate(S[i - 1], s) : null]);
    /* drawn in this order: commands/s last, on top (events appended/s
     * follows it closely: most commands append one event) */
    const thr = [
      {name: "queries", label: "queries/s", color: "#c084fc", points: S.map((s) => [s.time_ms, s.queries_per_s])},
      {name: "events", label: "events appended/s", color: "#39c98a", dash: true, points: ev},
      {name: "commands", label: "commands/s", color: "#5aa9ff", points: S.map((s) => [s.time_ms, s.commands_per_s])},
    ];
    const figT = document.getElementById("chart-throughput");
    plot(figT.querySelector("svg"), thr, tEnd, {area: "commands"});
    legend(figT, thr.slice().reverse(), num);

    const k = st.lagUnit === "seconds" ? "lag_seconds" : "lag_events";
    const lag = names.map((n) => ({name: n, color: color(n),
      points: S.map((s) => [s.time_ms, s.projections && s.projections[n] ? s.projections[n][k] : null])}));
    const figL = document.getElementById("chart-lag");
    plot(figL.querySelector("svg"), lag, tEnd, {unit: st.lagUnit === "seconds" ? " s" : ""});
    legend(figL, lag, k === "lag_seconds" ? (v) => num(v) + " s" : int);

    const ap = names.map((n) => ({name: n, color: color(n),
      points: S.map((s) => [s.time_ms, s.projections && s.projections[n] ? s.projections[n].events_per_s : null])}));
    const figA = document.getElementById("chart-applied");
    plot(figA.querySelector("svg"), ap, tEnd, {});
    legend(figA, ap, num);
  }

  function drawSpark(row) {
    const S = st.samples;
    if (!S.length) return;
    const tEnd = S[S.length - 1].time_ms;
    let max = 0;
    const pts = [];
    for (const s of S) {
      if (s.time_ms < tEnd - SPARK_MS) continue;
      const p = s.projections && s.projections[row.name];
      if (!p) continue;
      pts.push([s.time_ms, p.lag_events]);
      if (p.lag_events > max) max = p.lag_events;
    }
    const top = Math.max(1, max);
    let d = "";
    for (const [t, v] of pts)
      d += (d ? "L" : "M") + (120 * (1 - (tEnd - t) / SPARK_MS)).toFixed(1) + " " +
           (21 - 20 * v / top).toFixed(1);
    row.sparkPath.setAttribute("d", d);
    row.spark.setAttribute("title", "highest: " + int(max) + " events");
    row.c.spark.title = "lag over the last 2 minutes; highest " + int(max) + " events";
  }

  /* ---- start -------------------------------------------------------- */

  cleave.bindToken(document.getElementById("token"));
  for (const b of document.querySelectorAll("#chart-lag .switch button"))
    b.addEventListener("click", () => {
      st.lagUnit = b.dataset.unit;
      for (const o of b.parentNode.children) o.classList.toggle("on", o === b);
      drawCharts();
    });
  window.addEventListener("resize", drawCharts);
  setInterval(() => {
    if (st.conn === "live" && Date.now() - st.lastMsgAt > STALE_MS) setConn("stale");
    else if (st.conn !== "live" && st.conn !== "connecting") setConn(st.conn);
  }, 1000);
  connect();
})();
