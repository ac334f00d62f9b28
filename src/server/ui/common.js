/* common.js — what the dashboard and the shop demo share: the optional
 * token (sessionStorage, this tab only), JSON requests to this server,
 * number formatting and building elements.  No framework, nothing
 * fetched from anywhere else. */
"use strict";

const cleave = (() => {
  const TOKEN_KEY = "cleave.token";

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  /* Wires an <input> to the token kept in sessionStorage. */
  function bindToken(input) {
    input.value = token();
    input.addEventListener("change", () => {
      try {
        if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value);
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch (e) { /* storage refused: the field still works this page */ }
    });
  }

  /* POSTs (or GETs) JSON to this server, with the token unless
   * opts.token is false.  Resolves to {status, body, message, headers}:
   * body is the answer's JSON (or null), message a line for people — the
   * error JSON's message when there is one. */
  async function request(method, path, body, opts) {
    const headers = {"Accept": "application/json"};
    const t = opts && opts.token === false ? "" : token();
    if (t) headers["Authorization"] = "Bearer " + t;
    const init = {method, headers, cache: "no-store", credentials: "omit"};
    if (method === "POST") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      return {status: 0, body: null, message: "no answer: " + e.message, headers: null};
    }
    let text = "", json = null;
    try { text = await resp.text(); json = JSON.parse(text); } catch (e) { /* not JSON */ }
    let message;
    if (json && json.error && json.error.message)
      message = json.error.code + ": " + json.error.message;
    else if (!resp.ok)
      message = resp.status + " " + resp.statusText + (text ? ": " + text.slice(0, 200) : "");
    else
      message = "";
    return {status: resp.status, body: json, message, headers: resp.headers};
  }

  const intFmt = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
  function int(n) { return n == null || isNaN(n) ? "—" : intFmt.format(n); }
  /* Rates and latencies: 3 significant digits, thousands separated. */
  function num(n) {
    if (n == null || isNaN(n)) return "—";
    const a = Math.abs(n);
    const d = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a > 0 ? 3 : 0;
    return n.toLocaleString("en-US", {minimumFractionDigits: d, maximumFractionDigits: d});
  }
  /* Short axis labels: 950, 1.2k, 35k, 1.5M. */
  function short(n) {
    const a = Math.abs(n);
    if (a >= 1e6) return +(n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
    if (a >= 1e3) return +(n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
    if (a >= 10 || a === 0) return String(Math.round(n));
    return String(+n.toFixed(a >= 1 ? 1 : 2));
  }
  function clock(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  /* el("td", {class: "r"}, "text", child…) */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (attrs[k] == null || attrs[k] === false) continue;
      if (k === "class") e.className = attrs[k];
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
      else e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    }
    for (const kid of kids) {
      if (kid == null || kid === false) continue;
      e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }

  function setText(id, text) {
    const e = typeof id === "string" ? document.getElementById(id) : id;
    if (e && e.textContent !== text) e.textContent = text;
    return e;
  }

  return {token, bindToken, request, int, num, short, clock, el, setText};
})();
