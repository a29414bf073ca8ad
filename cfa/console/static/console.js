// cfa console: live updates of the run page from its server-sent events.
// No framework, no inline code (the page's CSP forbids it): the server renders the first state,
// this script every later one, in place. The formatters mirror cfa/console/views.py.
"use strict";

(function () {
  const DASH = "\u2014";

  function fmtG(v, p) {
    // Python's format(v, f".{p}g")
    if (!isFinite(v)) return String(v);
    if (v === 0) return "0";
    const exp = Number(v.toExponential(p - 1).split("e")[1]);
    if (exp < -4 || exp >= p) {
      let [mant, e] = v.toExponential(p - 1).split("e");
      if (mant.indexOf(".") >= 0) mant = mant.replace(/0+$/, "").replace(/\.$/, "");
      const n = Number(e);
      return mant + "e" + (n < 0 ? "-" : "+") + String(Math.abs(n)).padStart(2, "0");
    }
    let s = v.toFixed(Math.max(p - 1 - exp, 0));
    if (s.indexOf(".") >= 0) s = s.replace(/0+$/, "").replace(/\.$/, "");
    return s;
  }
  const fmt = {
    price: (v) => (v === null || v === undefined ? DASH : Number(v).toFixed(3)),
    signed: (v) => {
      if (v === null || v === undefined) return DASH;
      const f = Number(v);
      const t = fmtG(f, 6);
      return f > 0 ? "+" + t : t;
    },
    money: (v) => {
      if (v === null || v === undefined) return DASH;
      const f = Number(v);
      return (f >= 0 ? "+" : "") + f.toFixed(4);
    },
    num: (v) => (v === null || v === undefined ? DASH : fmtG(Number(v), 4)),
    int: (v) => (v === null || v === undefined ? DASH : String(v)),
    ts: (ms, date) => {
      if (ms === null || ms === undefined) return DASH;
      const iso = new Date(Number(ms)).toISOString();
      return date === false ? iso.slice(11, 19) : iso.slice(0, 10) + " " + iso.slice(11, 19);
    },
  };
  const FIELDS = {
    mid: fmt.price, our_bid: fmt.price, our_ask: fmt.price, inventory: fmt.signed,
    fills: fmt.int, realized_pnl: fmt.money, marked_pnl: fmt.money, gamma: fmt.num,
    sigma: fmt.num,
  };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function setText(node, text) {
    if (node && node.textContent !== text) {
      node.textContent = text;
      node.classList.add("changed");
      setTimeout(() => node.classList.remove("changed"), 600);
    }
  }
  function short(text, n) {
    const t = String(text || "").split(/\s+/).join(" ").trim();
    return t.length <= n ? t : t.slice(0, n - 1) + "\u2026";
  }

  const root = document.getElementById("live");
  if (!root) return;
  const run = root.dataset.run;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const age = document.getElementById("age");
  let lastUpdate = Date.now();
  let ended = false;
  let problem = null;

  function updateMarkets(state) {
    for (const m of state.markets) {
      const row = document.querySelector(`#markets tr[data-market="${CSS.escape(m.market)}"]`);
      if (!row) continue;
      for (const [f, format] of Object.entries(FIELDS)) {
        setText(row.querySelector(`[data-f="${f}"]`), format(m[f]));
      }
      const st = row.querySelector('[data-f="state"]');
      if (st) {
        setText(st, m.state);
        st.className = "state s-" + m.state;
      }
      setText(row.querySelector('[data-f="frozen"]'), (m.frozen || []).join(", "));
      const cell = row.querySelector('[data-f="last_decision"]');
      const d = m.last_decision;
      if (cell && d) {
        const text = d.outcome + (d.change ? " " + d.change : "") + " \u00b7 " + fmt.ts(d.ts_ms, false);
        let a = cell.querySelector("a");
        if (!a) { a = el("a"); cell.replaceChildren(a); }
        a.setAttribute("href", "/decisions/" + d.seq);
        setText(a, text);
      }
    }
    const glob = document.getElementById("global-state");
    setText(glob, state.global_state);
    if (glob) glob.className = "state s-" + state.global_state;
    setText(document.getElementById("total-realized_pnl"), fmt.money(state.realized_pnl));
    setText(document.getElementById("total-marked_pnl"), fmt.money(state.marked_pnl));
    setText(document.getElementById("total-decisions"), String(state.decisions));
    setText(document.getElementById("seq"), String(state.seq));
    const badge = document.getElementById("live-badge");
    if (badge) {
      badge.textContent = state.ended_ms ? "ended " + fmt.ts(state.ended_ms) : state.live ? "live" : "not running";
      badge.className = "badge" + (state.live ? " live" : "");
    }
  }

  function whoFields(form) {
    const op = document.querySelector("input.operator");
    const opVal = (op && op.value) || "";
    form.append(el("label", {}, "operator "));
    form.lastChild.append(el("input", { name: "operator", value: opVal, required: "", maxlength: "64", class: "operator" }));
    form.append(" ");
    form.append(el("label", {}, "reason "));
    form.lastChild.append(el("input", { name: "reason", required: "", maxlength: "2000", class: "reason" }));
  }

  function updatePending(pending) {
    const body = document.getElementById("pending");
    if (!body) return;
    const want = pending.map((p) => p.request_id).join("\n");
    const have = Array.from(body.querySelectorAll("tr")).map((r) => r.dataset.request).join("\n");
    document.getElementById("pending-count").textContent = "(" + pending.length + ")";
    document.getElementById("no-pending").hidden = pending.length > 0;
    if (want === have) return;
    const rows = [];
    for (const p of pending) {
      const tr = el("tr", { "data-request": p.request_id });
      tr.append(el("td", {}, p.request_id), el("td", {}, p.market), el("td", {}, p.param),
        el("td", { class: "num" }, fmt.num(p.base)), el("td", { class: "num" }, fmt.num(p.value)),
        el("td", {}, p.source), el("td", { class: "rationale" }, short(p.why || p.rationale, 160)));
      const form = el("form", { method: "post", action: "/actions", class: "inline decide" });
      form.append(el("input", { type: "hidden", name: "csrf", value: csrf }),
        el("input", { type: "hidden", name: "run_id", value: run }),
        el("input", { type: "hidden", name: "tool", value: "approve_change" }),
        el("input", { type: "hidden", name: "request_id", value: p.request_id }));
      whoFields(form);
      form.append(" ", el("button", { type: "submit", name: "decision", value: "approve", class: "approve" }, "approve"),
        " ", el("button", { type: "submit", name: "decision", value: "deny", class: "deny" }, "deny"));
      const td = el("td");
      td.append(form);
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  function updateRequests(requests) {
    const body = document.getElementById("requests");
    if (!body || !requests) return;
    const top = requests.length ? String(requests[0].seq) : "";
    if (body.dataset.top === top) return;
    body.dataset.top = top;
    body.replaceChildren(...requests.map((r) => {
      const tr = el("tr");
      tr.append(el("td", { class: "num" }, r.seq), el("td", {}, fmt.ts(r.ts_ms, false)),
        el("td", {}, r.market || "(all)"), el("td", {}, r.action), el("td", {}, r.actor),
        el("td", { class: "status st-" + (r.status || "") }, r.status || ""),
        el("td", {}, short(r.reason, 80)), el("td", {}, short(r.message || "", 120)));
      return tr;
    }));
  }

  function apply(state) {
    lastUpdate = Date.now();
    problem = null;
    root.dataset.version = String(state.version);
    updateMarkets(state);
    updatePending(state.pending || []);
    updateRequests(state.requests);
  }

  function tick() {
    if (!age) return;
    const s = Math.max(0, (Date.now() - lastUpdate) / 1000);
    let text = ended ? "run ended; last update " : "updated ";
    text += s < 1 ? "just now" : s < 90 ? Math.floor(s) + " s ago" : Math.floor(s / 60) + " min ago";
    if (problem) text += " \u00b7 " + problem;
    age.textContent = text;
  }

  const source = new EventSource("/runs/" + encodeURIComponent(run) + "/events");
  source.addEventListener("state", (ev) => apply(JSON.parse(ev.data)));
  source.addEventListener("ended", () => { ended = true; source.close(); tick(); });
  source.addEventListener("problem", (ev) => { problem = JSON.parse(ev.data).error; tick(); });
  source.addEventListener("error", () => { if (!ended) problem = "connection lost, retrying"; });
  source.addEventListener("open", () => { problem = null; });
  setInterval(tick, 500);
  tick();
})();
