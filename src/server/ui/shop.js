/* shop.js — the shop demo (GET /ui/shop): eventual consistency made
 * visible.
 *
 * A command's answer carries the log position P of its events.  An order
 * is "pending" from the moment its command is answered until a live query
 * of the order — EventSource on /queries/order?orderId=ID&min_position=P,
 * whose messages are "answer" (the JSON a plain GET answers, with its
 * "position") or "error" (the error JSON; the stream stays open), each
 * with the position it reflects as its id — delivers an answer at P or
 * later; then it is "live".  Cancelling makes it pending again, until the
 * stream delivers the cancelled order.  The product card is a live query
 * too, so its stock moves as orders are placed. */
"use strict";

(() => {
  const {el, int, setText} = cleave;
  const orders = new Map(); /* orderId -> its state */
  const product = {id: null, es: null, pendingPos: 0, pos: null, doc: null};

  function money(cents) {
    return cents == null ? "—" : (cents / 100).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }

  /* ---- the commands ---------------------------------------------------- */

  const log = document.getElementById("log");
  let logged = 0;
  function note(line) {
    if (!logged++) log.textContent = "";
    log.textContent = cleave.clock(Date.now()) + "  " + line + "\n" + log.textContent;
  }

  async function command(name, body, okCodes) {
    const r = await cleave.request("POST", "/commands/" + name, body);
    if (r.status === 200)
      note(name + " → 200, position " + r.body.position);
    else if (okCodes && r.body && r.body.error && okCodes.includes(r.body.error.code))
      note(name + " → " + r.status + " " + r.body.error.code + " (already there: fine)");
    else
      note(name + " → " + (r.status || "no answer") + " " + r.message +
           (r.status === 401 ? " — put the server's token in the token field" : ""));
    return r;
  }

  function ids() {
    return {userId: document.getElementById("user").value.trim(),
            productId: document.getElementById("product").value.trim()};
  }

  async function setup() {
    const {userId, productId} = ids();
    await command("RegisterUser", {userId, name: "Ada Lovelace", country: "SE"}, ["user_exists"]);
    const r = await command("AddProduct", {productId, name: "Cleave mug", category: "kitchen",
                                           price_cents: 1200, stock: 50,
                                           description: "holds one event log of coffee"},
                            ["product_exists"]);
    if (r.status === 200) productPending(r.body.position);
    watchProduct(productId);
  }

  async function restock() {
    const {productId} = ids();
    const r = await command("Restock", {productId, quantity: 10});
    if (r.status === 200) productPending(r.body.position);
  }

  async function placeOrder() {
    const {userId, productId} = ids();
    const quantity = Math.max(1, Math.min(100, parseInt(document.getElementById("qty").value, 10) || 1));
    const cartId = "cart-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 8);
    const btn = document.getElementById("order");
    btn.disabled = true;
    try {
      const a = await command("AddToCart", {cartId, userId, productId, quantity});
      if (a.status !== 200) return;
      const c = await command("Checkout", {userId, cartId});
      if (c.status !== 200) return;
      productPending(c.body.position);
      addOrder(c.body.result.orderId, c.body.position, c.body.result);
    } finally {
      btn.disabled = false;
    }
  }

  /* ---- the orders ------------------------------------------------------ */

  function addOrder(id, pos, result) {
    /* cmdPos: the position of the last command on the order; ansPos:
     * the position of the last answer the stream delivered; rmPos: the
     * furthest position the read model is known to have reached */
    const o = {id, cmdPos: pos, ansPos: null, rmPos: null, doc: null, result,
               state: "pending", es: null, problem: null, card: null};
    orders.set(id, o);
    const none = document.getElementById("no-orders");
    if (none) none.remove();
    o.card = el("div", {class: "card order", "data-order": id});
    document.getElementById("orders").prepend(o.card);
    render(o);
    readModelAt(o);
    watchOrder(o);
  }

  /* Asks where the order's read model is now (a plain query's
   * X-Cleave-Position), for the pending card; it may have it already. */
  function readModelAt(o) {
    cleave.request("GET", "/queries/order?orderId=" + encodeURIComponent(o.id)).then((r) => {
      const q = r.headers && Number(r.headers.get("X-Cleave-Position"));
      if (q && (o.rmPos == null || q > o.rmPos)) { o.rmPos = q; render(o); }
    });
  }

  /* Live once the stream has delivered an answer that reflects the
   * order's last command: the answer may come before the command's own
   * answer does. */
  function settle(o) {
    o.state = o.ansPos != null && o.ansPos >= o.cmdPos ? "live" : "pending";
  }

  function watchOrder(o) {
    const url = "/queries/order?orderId=" + encodeURIComponent(o.id) + "&min_position=" + o.cmdPos;
    const es = new EventSource(url);
    o.es = es;
    es.addEventListener("answer", (e) => {
      let doc;
      try { doc = JSON.parse(e.data); } catch (err) { return; }
      const pos = doc.position != null ? doc.position : Number(e.lastEventId);
      o.problem = null;
      if (o.rmPos == null || pos > o.rmPos) o.rmPos = pos;
      if (o.ansPos == null || pos >= o.ansPos) {
        o.doc = doc;
        o.ansPos = pos;
      }
      settle(o);
      render(o);
    });
    es.addEventListener("error", (e) => {
      if (e.data !== undefined) {
        /* an error message of the stream: not found yet, min_position
         * not reached yet…; the stream stays open */
        let err = null;
        try { err = JSON.parse(e.data).error; } catch (x) { /* keep null */ }
        const pos = Number(e.lastEventId);
        if (pos && (o.rmPos == null || pos > o.rmPos)) o.rmPos = pos;
        o.problem = err ? err.code + ": " + err.message : "error";
        render(o);
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        o.problem = "live query refused";
        render(o);
        refused(url).then((why) => { o.problem = why; render(o); });
      } else {
        o.problem = "stream interrupted — reconnecting…";
        render(o);
      }
    });
  }

  /* Why a live query was refused: EventSource does not say, so ask the
   * same URL once with fetch, without the token as EventSource sent it. */
  async function refused(url) {
    const r = await cleave.request("GET", url, null, {token: false});
    if (r.status === 401)
      return "live query refused: the server wants the token on queries (--auth-queries), " +
        "which a browser's EventSource cannot send";
    return "live query refused: " + (r.message || r.status);
  }

  async function cancel(o, btn) {
    btn.disabled = true;
    const r = await command("CancelOrder", {orderId: o.id});
    btn.disabled = false;
    if (r.status !== 200) return;
    o.cmdPos = r.body.position;
    settle(o);
    productPending(r.body.position);
    render(o);
    if (o.state === "pending") readModelAt(o);
  }

  function render(o) {
    const c = o.card;
    const d = o.doc || {};
    const status = d.status || "placed";
    c.dataset.state = o.state;
    c.dataset.status = o.doc ? status : "";
    const badge = el("span", {class: "badge " + o.state, "data-k": "state"}, o.state);
    const where = o.state === "pending"
      ? "pending — command at position " + int(o.cmdPos) + ", read model at " +
        (o.rmPos == null ? "…" : int(o.rmPos))
      : "live (position " + int(o.ansPos) + ")";
    const lines = (d.lines || []).map((l) =>
      el("li", null, l.quantity + " × " + l.name + " (" + l.productId + ") at " + money(l.price_cents)));
    const btn = el("button", {type: "button", class: "act", "data-act": "cancel"}, "cancel order");
    btn.disabled = status === "cancelled" || o.state === "pending";
    btn.addEventListener("click", () => cancel(o, btn));
    c.replaceChildren(...[
      el("header", null,
         el("span", {class: "title"}, "Order " + o.id),
         el("span", null, o.doc ? el("span", {class: "badge status", "data-k": "status"}, status) : null, " ", badge)),
      el("div", {class: "note", "data-k": "where"}, where),
      o.doc
        ? el("div", {class: "figures"},
             el("div", null, el("div", {class: "label"}, "total"), el("div", {class: "big"}, money(d.total_cents))),
             el("div", null, el("div", {class: "label"}, "user"), el("div", null, d.userId)),
             el("div", null, el("div", {class: "label"}, "placed"),
                el("div", null, d.placed_at ? new Date(d.placed_at * 1000).toLocaleTimeString() : "—")))
        : el("div", {class: "note"}, "total " + money(o.result && o.result.total_cents) +
             " (from the command's answer; the read model has not shown it yet)"),
      lines.length ? el("ul", {class: "lines"}, ...lines) : null,
      o.problem ? el("div", {class: "note", "data-k": "problem"}, o.problem) : null,
      el("div", {class: "buttons"}, btn)].filter(Boolean));
  }

  /* ---- the product ----------------------------------------------------- */

  function productPending(pos) {
    if (pos > product.pendingPos) product.pendingPos = pos;
    renderProduct();
  }

  function watchProduct(id) {
    if (product.id === id && product.es && product.es.readyState !== EventSource.CLOSED) return;
    if (product.es) product.es.close();
    product.id = id;
    product.doc = null;
    product.pos = null;
    product.problem = null;
    const es = new EventSource("/queries/product?productId=" + encodeURIComponent(id));
    product.es = es;
    es.addEventListener("answer", (e) => {
      let doc;
      try { doc = JSON.parse(e.data); } catch (err) { return; }
      const before = product.doc;
      product.doc = doc;
      product.pos = doc.position != null ? doc.position : Number(e.lastEventId);
      product.problem = null;
      renderProduct(before);
    });
    es.addEventListener("error", (e) => {
      if (e.data !== undefined) {
        let err = null;
        try { err = JSON.parse(e.data).error; } catch (x) { /* keep null */ }
        const pos = Number(e.lastEventId);
        if (pos) product.pos = pos;
        product.problem = err && err.code.endsWith("not_found")
          ? "not in the read model (yet): create it with step 1"
          : err ? err.code + ": " + err.message : "error";
      } else if (es.readyState === EventSource.CLOSED) {
        product.problem = "live query refused";
        refused(es.url).then((why) => {
          if (product.es === es) { product.problem = why; renderProduct(); }
        });
      } else {
        product.problem = "stream interrupted — reconnecting…";
      }
      renderProduct();
    });
    renderProduct();
  }

  function renderProduct(before) {
    const card = document.getElementById("product-card");
    const d = product.doc;
    const pending = d && product.pendingPos > (product.pos || 0);
    const state = !d ? (product.problem ? "error" : "connecting") : pending ? "pending" : "live";
    card.dataset.state = state;
    const badge = document.getElementById("p-badge");
    badge.className = "badge " + (state === "connecting" ? "pending" : state);
    setText(badge, state === "connecting" ? "connecting…" : state === "error" ? "no answer" : state);
    setText("p-title", d ? d.name + " (" + d.productId + ")" : product.id || "—");
    for (const [k, v] of [["p-stock", d ? int(d.stock) : "—"], ["p-sold", d ? int(d.sold) : "—"],
                          ["p-price", d ? money(d.price_cents) : "—"]]) {
      const e = document.getElementById(k);
      if (e.textContent !== v) {
        e.textContent = v;
        if (before) { e.classList.remove("flash"); void e.offsetWidth; e.classList.add("flash"); }
      }
    }
    let text = product.problem || "";
    if (d && !product.problem)
      text = pending
        ? "pending — command at position " + int(product.pendingPos) + ", read model at " + int(product.pos)
        : "live (position " + int(product.pos) + ")";
    setText("p-note", text);
  }

  /* ---- start ----------------------------------------------------------- */

  cleave.bindToken(document.getElementById("token"));
  document.getElementById("setup").addEventListener("click", setup);
  document.getElementById("restock").addEventListener("click", restock);
  document.getElementById("order").addEventListener("click", placeOrder);
  document.getElementById("product").addEventListener("change", () => watchProduct(ids().productId));
  watchProduct(ids().productId);
})();
