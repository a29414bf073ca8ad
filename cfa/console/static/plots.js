/* cfa console: the run's charts, drawn from /api/runs/<run>/charts, zoomable on time.
 *
 * Every element with a data-charts-url attribute is filled with the charts that URL returns
 * (cfa.reports.charts.run_charts): per market, mid and our quotes with our fills, inventory,
 * PnL, gamma and sigma with the agents' decisions (each marker links to its decision page),
 * and our fills as bars. All charts on the page share one time window:
 *   - drag across any chart to zoom to that span; double-click (or "reset zoom") to see all;
 *   - "<" and ">" pan by half the window, "-" zooms out by 2x.
 * The window is kept in the URL hash (#t=<from>,<to> in epoch seconds), so a zoomed view can
 * be linked. No library, nothing fetched but the JSON.
 */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 960, H = 190, ML = 64, MR = 12, MT = 24, MB = 22;

  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function niceTicks(lo, hi, n) {
    if (!(isFinite(lo) && isFinite(hi)) || hi <= lo) return [lo];
    var raw = (hi - lo) / Math.max(n - 1, 1);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 2.5, 5, 10], step = 10 * mag;
    for (var i = 0; i < steps.length; i++) if (steps[i] * mag >= raw) { step = steps[i] * mag; break; }
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return out;
  }

  function timeTicks(t0, t1, n) {
    var span = Math.max(t1 - t0, 1e-9);
    var cands = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400];
    var step = 86400 * Math.ceil(span / (86400 * n));
    for (var i = 0; i < cands.length; i++) if (span / cands[i] <= n) { step = cands[i]; break; }
    var out = [];
    for (var t = Math.ceil(t0 / step) * step; t <= t1; t += step) out.push(t);
    return out;
  }

  function fmtTime(t, span) {
    var s = new Date(t * 1000).toISOString();
    return span < 600 ? s.substring(11, 19) : s.substring(11, 16);
  }

  function fmtVal(v, step) {
    if (step >= 1) return Math.round(v).toLocaleString("en-US");
    var digits = Math.min(Math.max(0, -Math.floor(Math.log10(step)) + 1), 8);
    return String(parseFloat(v.toFixed(digits)));
  }

  function shapePath(shape, x, y) {
    var r = 3.5;
    if (shape === "up") return "M" + x + "," + (y - r) + "L" + (x + r) + "," + (y + r) + "L" + (x - r) + "," + (y + r) + "Z";
    if (shape === "down") return "M" + x + "," + (y + r) + "L" + (x + r) + "," + (y - r) + "L" + (x - r) + "," + (y - r) + "Z";
    if (shape === "diamond") return "M" + x + "," + (y - r) + "L" + (x + r) + "," + y + "L" + x + "," + (y + r) + "L" + (x - r) + "," + y + "Z";
    return "M" + (x - r) + "," + y + "a" + r + "," + r + " 0 1,0 " + 2 * r + ",0a" + r + "," + r + " 0 1,0 " + -2 * r + ",0Z";
  }

  /* The value range of the points inside [a, b] (plus the last point before a, which a step or
   * line carries into the window). */
  function yRange(chart, a, b) {
    var lo = Infinity, hi = -Infinity, bars = false;
    chart.series.forEach(function (s) {
      if (s.kind === "vlines") return;
      if (s.kind === "bars") bars = true;
      var prev = null;
      s.points.forEach(function (p) {
        var v = p[1];
        if (p[0] < a) { prev = v; return; }
        if (p[0] > b) return;
        if (v !== null && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      });
      if (prev !== null && isFinite(prev) && (s.kind === "step" || s.kind === "line")) {
        lo = Math.min(lo, prev); hi = Math.max(hi, prev);
      }
    });
    if (bars) { lo = Math.min(lo, 0); hi = Math.max(hi, 0); }
    if (chart.y_min !== null) lo = chart.y_min;
    if (chart.y_max !== null) hi = chart.y_max;
    if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
    var pad = hi - lo < 1e-12 ? (Math.abs(hi) * 0.05 || 1) : (hi - lo) * 0.06;
    return [lo - pad, hi + pad];
  }

  function linked(parent, href) {
    if (!href) return parent;
    var a = el("a", { href: href }, parent);
    a.setAttribute("class", "decision-link");
    return a;
  }

  function draw(svg, chart, a, b) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var x0 = ML, x1 = W - MR, y0 = MT, y1 = H - MB;
    var r = yRange(chart, a, b), lo = r[0], hi = r[1];
    /* not clamped: lines keep their slope into the window; the clip path cuts them */
    function sx(t) { return x0 + (t - a) / (b - a) * (x1 - x0); }
    function sy(v) { return y1 - (v - lo) / (hi - lo) * (y1 - y0); }
    el("title", {}, svg).textContent = chart.title;
    el("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0, "class": "bg" }, svg);
    var grid = "";
    var yt = niceTicks(lo, hi, 5), ystep = yt.length > 1 ? yt[1] - yt[0] : Math.max(Math.abs(hi), 1e-9);
    yt.forEach(function (v) {
      if (v < lo || v > hi) return;
      var y = sy(v);
      grid += "M" + x0 + "," + y.toFixed(1) + "H" + x1;
      el("text", { x: x0 - 4, y: (y + 3).toFixed(1), "class": "yl" }, svg).textContent = fmtVal(v, ystep);
    });
    timeTicks(a, b, 6).forEach(function (t) {
      var x = sx(t);
      grid += "M" + x.toFixed(1) + "," + y0 + "V" + y1;
      el("text", { x: x.toFixed(1), y: H - 6, "class": "xl" }, svg).textContent = fmtTime(t, b - a);
    });
    if (grid) el("path", { "class": "grid", d: grid }, svg);
    el("text", { x: x0, y: y0 - 8, "class": "ct" }, svg).textContent = chart.title;
    var clip = "clip-" + chart.id.replace(/[^A-Za-z0-9_-]/g, "_");
    var defs = el("defs", {}, svg);
    el("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, el("clipPath", { id: clip }, defs));
    var plot = el("g", { "clip-path": "url(#" + clip + ")" }, svg);
    var legend = el("text", { x: x1, y: y0 - 8, "class": "lg" }, svg);
    chart.series.forEach(function (s) {
      var style = { stroke: s.color, "stroke-width": s.width, fill: "none", "stroke-dasharray": s.dash };
      var pts = s.points, d = "", i;
      if (s.kind === "line" || s.kind === "step") {
        var pen = false, lastY = null, started = false;
        for (i = 0; i < pts.length; i++) {
          var t = pts[i][0], v = pts[i][1];
          var nextT = i + 1 < pts.length ? pts[i + 1][0] : Infinity;
          if (nextT < a && s.kind === "step") continue;   /* wholly before the window */
          if (t < a && s.kind === "line" && nextT < a) continue;
          if (started && t > b) {                          /* first point after the window */
            if (v !== null && pen) d += s.kind === "step" ? "H" + x1 : "L" + sx(t).toFixed(1) + "," + sy(v).toFixed(1);
            pen = false;
            break;
          }
          started = true;
          if (v === null || !isFinite(v)) {
            if (s.kind === "step" && pen) d += "H" + sx(t).toFixed(1);
            pen = false; lastY = null; continue;
          }
          var x = sx(t), y = sy(v);
          if (!pen) { d += "M" + x.toFixed(1) + "," + y.toFixed(1); pen = true; }
          else if (s.kind === "step") d += (y !== lastY ? "H" + x.toFixed(1) + "V" + y.toFixed(1) : "H" + x.toFixed(1));
          else d += "L" + x.toFixed(1) + "," + y.toFixed(1);
          lastY = y;
        }
        if (s.kind === "step" && pen) d += "H" + x1;
        if (d) el("path", Object.assign({ d: d }, style), plot);
      } else if (s.kind === "bars") {
        var y0b = sy(0);
        pts.forEach(function (p) {
          if (p[1] === null || p[0] < a || p[0] > b) return;
          d += "M" + sx(p[0]).toFixed(1) + "," + y0b.toFixed(1) + "V" + sy(p[1]).toFixed(1);
        });
        if (d) el("path", Object.assign({ d: d }, style), plot);
      } else if (s.kind === "vlines") {
        pts.forEach(function (p, i) {
          if (p[0] < a || p[0] > b) return;
          var x = sx(p[0]).toFixed(1);
          var href = s.links ? s.links[i] : null;
          var g = linked(plot, href);
          var path = el("path", Object.assign({ d: "M" + x + "," + y0 + "V" + y1, "class": "vline" }, style), g);
          el("title", {}, path).textContent = s.titles ? s.titles[i] : "";
          if (href) {  /* a wider, invisible target on top, with the same tooltip */
            var hit = el("rect", { x: +x - 4, y: y0, width: 8, height: y1 - y0, "class": "hit" }, g);
            el("title", {}, hit).textContent = s.titles ? s.titles[i] : "";
          }
        });
      } else {
        pts.forEach(function (p, i) {
          if (p[1] === null || p[0] < a || p[0] > b) return;
          var g = linked(plot, s.links ? s.links[i] : null);
          var path = el("path", { fill: s.color, stroke: "none", d: shapePath(s.shape, sx(p[0]), sy(p[1])), "class": "marker" }, g);
          el("title", {}, path).textContent = s.titles ? s.titles[i] : "";
        });
      }
      var sw = el("tspan", { fill: s.color }, legend);
      sw.textContent = "\u25A0";
      el("tspan", {}, legend).textContent = " " + s.label + "  ";
    });
    var band = el("rect", { x: 0, y: y0, width: 0, height: y1 - y0, "class": "band" }, svg);
    band.setAttribute("visibility", "hidden");
    return { band: band, x0: x0, x1: x1 };
  }

  function mount(root, data) {
    var full = [data.t0, data.t1];
    var win = full.slice();
    var views = [];
    var m = /#t=([0-9.]+),([0-9.]+)/.exec(location.hash);
    if (m && +m[2] > +m[1]) win = [Math.max(+m[1], full[0]), Math.min(+m[2], full[1])];
    root.textContent = "";
    var bar = document.createElement("div");
    bar.className = "zoombar";
    function button(label, title, fn) {
      var b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.title = title;
      b.addEventListener("click", fn);
      bar.appendChild(b);
      return b;
    }
    var span = document.createElement("span");
    span.className = "window";
    button("\u2039", "pan left", function () { var h = (win[1] - win[0]) / 2; setWindow(win[0] - h, win[1] - h); });
    button("\u203A", "pan right", function () { var h = (win[1] - win[0]) / 2; setWindow(win[0] + h, win[1] + h); });
    button("\u2212", "zoom out", function () { var h = (win[1] - win[0]) / 2; setWindow(win[0] - h, win[1] + h); });
    button("reset zoom", "show the whole run", function () { setWindow(full[0], full[1]); }).className = "reset";
    bar.appendChild(span);
    root.appendChild(bar);

    function setWindow(a, b) {
      var w = Math.max(b - a, 1);
      if (w >= full[1] - full[0]) { a = full[0]; b = full[1]; }
      else {
        if (a < full[0]) { a = full[0]; b = a + w; }
        if (b > full[1]) { b = full[1]; a = b - w; }
      }
      win = [a, b];
      root.setAttribute("data-window", a.toFixed(3) + "," + b.toFixed(3));
      span.textContent = new Date(a * 1000).toISOString().substring(0, 19).replace("T", " ") +
        " \u2013 " + new Date(b * 1000).toISOString().substring(11, 19) + " UTC";
      var whole = a <= full[0] && b >= full[1];
      if (history.replaceState) {
        history.replaceState(null, "", whole ? location.pathname + location.search :
          "#t=" + a.toFixed(3) + "," + b.toFixed(3));
      }
      views.forEach(function (v) { v.geom = draw(v.svg, v.chart, a, b); });
    }

    data.markets.forEach(function (mk) {
      var h = document.createElement("h2");
      h.id = "m-" + mk.slug;
      h.textContent = mk.market;
      root.appendChild(h);
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = mk.fills + " fills \u00B7 " + mk.decisions + " decisions";
      root.appendChild(p);
      mk.charts.forEach(function (c) {
        var svg = el("svg", { "class": "chart interactive", viewBox: "0 0 " + W + " " + H, width: "100%",
          preserveAspectRatio: "xMidYMid meet", role: "img", "data-plot": c.id });
        root.appendChild(svg);
        var v = { svg: svg, chart: c, geom: null };
        views.push(v);
        attachZoom(v);
      });
    });

    function toT(v, clientX) {
      var box = v.svg.getBoundingClientRect();
      var x = (clientX - box.left) / box.width * W;
      var g = v.geom;
      var f = Math.min(Math.max((x - g.x0) / (g.x1 - g.x0), 0), 1);
      return { t: win[0] + f * (win[1] - win[0]), x: Math.min(Math.max(x, g.x0), g.x1) };
    }

    function attachZoom(v) {
      var start = null;
      v.svg.addEventListener("mousedown", function (e) {
        if (e.button !== 0 || e.target.closest("a")) return;
        start = toT(v, e.clientX);
        e.preventDefault();
      });
      v.svg.addEventListener("mousemove", function (e) {
        if (!start) return;
        var cur = toT(v, e.clientX);
        var band = v.geom.band;
        band.setAttribute("x", Math.min(start.x, cur.x));
        band.setAttribute("width", Math.abs(cur.x - start.x));
        band.setAttribute("visibility", "visible");
      });
      window.addEventListener("mouseup", function (e) {
        if (!start) return;
        var cur = toT(v, e.clientX), s = start;
        start = null;
        v.geom.band.setAttribute("visibility", "hidden");
        if (Math.abs(cur.x - s.x) < 4) return;
        setWindow(Math.min(s.t, cur.t), Math.max(s.t, cur.t));
      });
      v.svg.addEventListener("dblclick", function () { setWindow(full[0], full[1]); });
    }

    setWindow(win[0], win[1]);
    root.setAttribute("data-ready", "1");
  }

  function load(root) {
    var url = root.getAttribute("data-charts-url");
    root.textContent = "loading the charts\u2026";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      })
      .then(function (data) { mount(root, data); })
      .catch(function (err) { root.textContent = "cannot load the charts: " + err.message; });
  }

  window.CfaPlots = { mount: mount, load: load };
  document.addEventListener("DOMContentLoaded", function () {
    var roots = document.querySelectorAll("[data-charts-url]");
    for (var i = 0; i < roots.length; i++) load(roots[i]);
  });
})();
