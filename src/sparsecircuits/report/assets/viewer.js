/* sparsecircuits report viewer: renders the embedded JSON (element #data) with the DOM and SVG.
 * All text from the data goes through textContent or setAttribute, never innerHTML. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];
  var LOC_COLORS = ["#bfdbfe", "#c7d2fe", "#ddd6fe", "#fbcfe8", "#fecaca", "#bbf7d0", "#99f6e4", "#fed7aa"];
  var FONT = "system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif";
  var data = JSON.parse(document.getElementById("data").textContent);
  var app = document.getElementById("app");
  var nav = document.getElementById("nav");

  // ---------- small DOM helpers ----------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function sv(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) { e.setAttribute(k, String(attrs[k])); }
    }
    return e;
  }
  function svText(x, y, text, cls, anchor) {
    var t = sv("text", {x: x, y: y, "class": cls || "", "text-anchor": anchor || "start"});
    t.textContent = String(text);
    return t;
  }
  function attrs(e, obj) {
    Object.keys(obj).forEach(function (k) { e.setAttribute(k, String(obj[k])); });
    return e;
  }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } }
  function isNum(x) { return typeof x === "number" && isFinite(x); }
  function isObj(x) { return x !== null && typeof x === "object" && !Array.isArray(x); }
  function has(list) { return Array.isArray(list) && list.length > 0; }
  function fmt(x, digits) {
    if (x === null || x === undefined) { return "not computed"; }
    if (typeof x === "number") {
      if (!isFinite(x)) { return String(x); }
      if (Number.isInteger(x)) { return String(x); }
      var a = Math.abs(x);
      if (a !== 0 && (a < 1e-3 || a >= 1e5)) { return x.toExponential(digits || 3); }
      return x.toFixed(digits === undefined ? 4 : digits);
    }
    if (typeof x === "object") { return JSON.stringify(x); }
    return String(x);
  }
  function notComputed(what) { return el("p", "muted not-computed", what + ": not computed"); }
  function section(id, title) {
    var s = el("section");
    s.id = id;
    s.appendChild(el("h2", null, title));
    app.appendChild(s);
    var a = el("a", null, title);
    a.setAttribute("href", "#" + id);
    nav.appendChild(a);
    return s;
  }
  function selectEl(id, options) {
    // options: [value, text] pairs
    var s = el("select");
    if (id) { s.id = id; }
    options.forEach(function (o) {
      var opt = el("option", null, o[1]);
      opt.value = o[0];
      s.appendChild(opt);
    });
    return s;
  }
  function labelled(text, control) {
    var lab = el("label", null, text);
    lab.appendChild(control);
    return lab;
  }
  var measureCtx = null;
  function textWidth(text, font) {
    if (!measureCtx) { measureCtx = document.createElement("canvas").getContext("2d"); }
    measureCtx.font = font;
    return measureCtx.measureText(String(text)).width;
  }
  function truncate(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }

  // ---------- tables: nested lists and dicts are summarized, opened on demand ----------
  function valueCell(v) {
    var td = el("td", typeof v === "number" ? "num" : "");
    if (v === undefined) { return td; }
    if (v === null || typeof v !== "object") { td.textContent = fmt(v); return td; }
    var n = Array.isArray(v) ? v.length : Object.keys(v).length;
    var what = Array.isArray(v) ? "list of " + n + " item" : "record of " + n + " field";
    var det = el("details", "nested");
    det.appendChild(el("summary", null, what + (n === 1 ? "" : "s")));
    det.addEventListener("toggle", function () {
      if (det.open && det.childNodes.length === 1) { det.appendChild(nestedView(v)); }
    });
    td.appendChild(det);
    return td;
  }
  function nestedView(v) {
    if (!Array.isArray(v)) { return kvTable(v); }
    if (v.length && v.every(isObj)) { return recordsTable(v); }
    return el("div", "wrap-list mono", v.map(function (x) { return fmt(x); }).join(", "));
  }
  function kvTable(obj, cls) {
    var t = el("table", cls);
    Object.keys(obj || {}).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("th", null, k));
      var td = valueCell(obj[k]);
      if (typeof obj[k] !== "number") { td.classList.add("mono"); }
      tr.appendChild(td);
      t.appendChild(tr);
    });
    return t;
  }
  function recordsTable(records, firstCol) {
    // records: a list of objects, or an object of name -> object (the name becomes the first column)
    var rows = [];
    if (Array.isArray(records)) {
      rows = records.map(function (r) { return {name: null, rec: r}; });
    } else {
      Object.keys(records || {}).forEach(function (k) {
        var r = records[k];
        rows.push({name: k, rec: isObj(r) ? r : {value: r}});
      });
    }
    var cols = [];
    rows.forEach(function (row) {
      Object.keys(row.rec).forEach(function (c) { if (cols.indexOf(c) < 0) { cols.push(c); } });
    });
    var t = el("table");
    var head = el("tr");
    if (!Array.isArray(records)) { head.appendChild(el("th", null, firstCol || "name")); }
    cols.forEach(function (c) { head.appendChild(el("th", null, c)); });
    t.appendChild(head);
    rows.forEach(function (row) {
      var tr = el("tr");
      if (row.name !== null) { tr.appendChild(el("th", null, row.name)); }
      cols.forEach(function (c) { tr.appendChild(valueCell(row.rec[c])); });
      t.appendChild(tr);
    });
    return t;
  }
  function verdictBadge(validation) {
    if (!validation || !validation.verdict) { return el("span", "verdict none", "not validated"); }
    var st = String(validation.verdict.status || "unknown");
    return el("span", "verdict " + (st === "ok" ? "ok" : "suspect"), st);
  }
  // a failed check's value against its threshold: the opposite of the direction it passes in
  var FAILED_AS = {"<=": ">", ">=": "<", "<": ">=", ">": "<=", "not reached or >": "<="};
  function versus(c) {
    if (!isNum(c.value) || !isNum(c.threshold)) { return fmt(c.value) + " vs " + fmt(c.threshold); }
    var d = 2;
    while (d < 6 && c.value.toFixed(d) === c.threshold.toFixed(d)) { d++; }
    return c.value.toFixed(d) + " " + (FAILED_AS[c.direction] || "vs") + " " + c.threshold.toFixed(d);
  }
  function failedChecks(validation) {
    // the line html.index_entry puts in an index row, e.g. "fails activation_agreement (0.41 < 0.70)"
    var checks = ((validation && validation.verdict) || {}).checks || [];
    var failed = checks.filter(function (c) { return !c.passed; }).map(function (c) { return c.name + " (" + versus(c) + ")"; });
    return failed.length ? "fails " + failed.join(", ") : "";
  }
  function verdictWithReason(validation) {
    var span = el("span", "verdict-line");
    span.appendChild(verdictBadge(validation));
    var reason = failedChecks(validation);
    if (reason) { span.appendChild(el("span", "reason", reason)); }
    return span;
  }
  function safeHref(href) {
    // only relative links: no scheme (javascript:, data:, http:) and no protocol-relative URLs
    var h = String(href || "");
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(h) || h.indexOf("//") === 0) { return null; }
    return h;
  }

  // ---------- tokens and colour scales ----------
  function showWhitespace(s) {
    return String(s).replace(/\t/g, "\u2192\t").replace(/\n/g, "\u21b5\n");
  }
  function divColor(v, maxAbs) {
    // diverging: blue positive, red negative, transparent at zero
    var a = maxAbs > 0 ? Math.min(1, Math.abs(v) / maxAbs) : 0;
    return "rgba(" + (v >= 0 ? "37,99,235" : "220,38,38") + "," + (0.85 * a).toFixed(3) + ")";
  }
  function mix(stops, t) {
    // stops: [[t, [r, g, b]], ...] sorted by t; t is clamped into their range
    t = Math.max(stops[0][0], Math.min(stops[stops.length - 1][0], t));
    for (var i = 1; i < stops.length; i++) {
      if (t <= stops[i][0]) {
        var a = stops[i - 1], b = stops[i], f = (t - a[0]) / (b[0] - a[0] || 1);
        return "rgb(" + [0, 1, 2].map(function (j) { return Math.round(a[1][j] + f * (b[1][j] - a[1][j])); }).join(",") + ")";
      }
    }
    return "rgb(" + stops[stops.length - 1][1].join(",") + ")";
  }
  var AGREEMENT_STOPS = [[0, [220, 38, 38]], [0.5, [234, 179, 8]], [1, [22, 163, 74]]];
  var NO_VALUE = "#cbd5e1";
  function agreementColor(v) { return isNum(v) ? mix(AGREEMENT_STOPS, v) : NO_VALUE; }
  function attnColor(v) { return "rgba(124,58,237," + Math.max(0, Math.min(1, v)).toFixed(3) + ")"; }
  function tokenSpan(text, act, maxAbs) {
    var span = el("span", "tok", showWhitespace(text));
    if (isNum(act)) {
      span.style.backgroundColor = divColor(act, maxAbs);
      span.setAttribute("title", "activation " + fmt(act));
    }
    return span;
  }
  function maxAbsOf(values) {
    return values.reduce(function (m, a) { return isNum(a) ? Math.max(m, Math.abs(a)) : m; }, 0);
  }
  function tokenLine(tokens, acts, focus) {
    var div = el("div", "tokens");
    var maxAbs = maxAbsOf(acts || []);
    (tokens || []).forEach(function (tok, i) {
      var s = tokenSpan(tok, acts ? acts[i] : null, maxAbs);
      if (i === focus) { s.classList.add("focus"); }
      div.appendChild(s);
    });
    return div;
  }
  function swatch(color, text) {
    var s = el("span", "swatch-item");
    var box = el("span", "swatch");
    box.style.backgroundColor = color;
    s.appendChild(box);
    s.appendChild(document.createTextNode(" " + text));
    return s;
  }

  // ---------- line charts ----------
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) { return [lo]; }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    if (err >= 7.5) { step *= 10; } else if (err >= 3.5) { step *= 5; } else if (err >= 1.5) { step *= 2; }
    var ticks = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) { ticks.push(v); }
    return ticks;
  }
  function goodPoints(ln) { return (ln.points || []).filter(function (p) { return isNum(p[0]) && isNum(p[1]); }); }
  function chartScale(spec, box) {
    var pts = [];
    (spec.lines || []).forEach(function (ln) { pts = pts.concat(goodPoints(ln)); });
    var xsRaw = pts.map(function (p) { return p[0]; });
    (spec.vrefs || []).forEach(function (r) { if (isNum(r.x)) { xsRaw.push(r.x); } });
    var ysRaw = pts.map(function (p) { return p[1]; });
    (spec.refs || []).forEach(function (r) { if (isNum(r.y)) { ysRaw.push(r.y); } });
    // a log axis needs every value positive; otherwise the axis stays linear
    var logx = !!spec.logx && xsRaw.every(function (v) { return v > 0; });
    var logy = !!spec.logy && ysRaw.every(function (v) { return v > 0; });
    var tx = logx ? Math.log10 : function (v) { return v; };
    var ty = logy ? Math.log10 : function (v) { return v; };
    var xs = xsRaw.map(tx), ys = ysRaw.map(ty);
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= logx ? 0.1 : 1; x1 += logx ? 0.1 : 1; }
    if (y1 === y0) { y0 -= logy ? 0.1 : 1; y1 += logy ? 0.1 : 1; }
    var pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    if (spec.padX) { var padX = (x1 - x0) * spec.padX; x0 -= padX; x1 += padX; }
    return {logx: logx, logy: logy, x0: x0, x1: x1, y0: y0, y1: y1, n: pts.length, box: box,
      px: function (v) { return box.L + (tx(v) - x0) / (x1 - x0) * (box.W - box.L - box.R); },
      py: function (v) { return box.H - box.B - (ty(v) - y0) / (y1 - y0) * (box.H - box.T - box.B); }};
  }
  // ticks of a log axis spanning log10 values lo..hi: the decades, else 1-2-5 steps, else linear ticks
  function logTicks(lo, hi, n) {
    var a = Math.pow(10, lo) * (1 - 1e-9), b = Math.pow(10, hi) * (1 + 1e-9), ticks = [];
    var k, m;
    for (k = Math.ceil(lo - 1e-9); k <= Math.floor(hi + 1e-9); k++) { ticks.push(Math.pow(10, k)); }
    if (ticks.length >= 2) {
      var every = Math.ceil(ticks.length / n);
      return ticks.filter(function (_, i) { return i % every === 0; });
    }
    ticks = [];
    for (k = Math.floor(lo); k <= Math.ceil(hi); k++) {
      for (m = 0; m < 3; m++) {
        var v = [1, 2, 5][m] * Math.pow(10, k);
        if (v >= a && v <= b) { ticks.push(v); }
      }
    }
    if (ticks.length >= 2) { return ticks; }
    return niceTicks(Math.pow(10, lo), Math.pow(10, hi), n).filter(function (v) { return v > 0; });
  }
  function chartAxes(root, sc, spec) {
    var b = sc.box;
    (sc.logy ? logTicks(sc.y0, sc.y1, 5) : niceTicks(sc.y0, sc.y1, 5)).forEach(function (v) {
      root.appendChild(sv("line", {"class": "grid", x1: b.L, x2: b.W - b.R, y1: sc.py(v), y2: sc.py(v)}));
      var label = Number.isInteger(v) || Math.abs(v) >= 1e4 ? fmt(v, 1) : fmt(v, 3).replace(/\.?0+$/, "");
      root.appendChild(svText(b.L - 4, sc.py(v) + 3, label, "", "end"));
    });
    var xt = sc.logx ? logTicks(sc.x0, sc.x1, 5) : niceTicks(sc.x0, sc.x1, 5);
    xt.forEach(function (v) {
      root.appendChild(svText(sc.px(v), b.H - b.B + 14, Math.abs(v) >= 1e4 ? v.toExponential(1) : String(+v.toPrecision(4)), "", "middle"));
    });
    root.appendChild(sv("line", {"class": "axis", x1: b.L, x2: b.W - b.R, y1: b.H - b.B, y2: b.H - b.B}));
    root.appendChild(sv("line", {"class": "axis", x1: b.L, x2: b.L, y1: b.T, y2: b.H - b.B}));
    root.appendChild(svText((b.L + b.W - b.R) / 2, b.H - 8, (spec.xLabel || "") + (sc.logx ? " (log scale)" : ""), "", "middle"));
    var yl = svText(14, (b.T + b.H - b.B) / 2, (spec.yLabel || "") + (sc.logy ? " (log scale)" : ""), "", "middle");
    yl.setAttribute("transform", "rotate(-90 14 " + (b.T + b.H - b.B) / 2 + ")");
    root.appendChild(yl);
  }
  function chartRefs(root, sc, spec) {
    var b = sc.box;
    (spec.refs || []).forEach(function (r, i) {
      if (!isNum(r.y)) { return; }
      var c = PALETTE[(i + 3) % PALETTE.length];
      root.appendChild(sv("line", {"class": "ref", x1: b.L, x2: b.W - b.R, y1: sc.py(r.y), y2: sc.py(r.y), stroke: c}));
      root.appendChild(svText(b.W - b.R - 2, sc.py(r.y) - 3, r.label || "", "", "end"));
    });
    (spec.vrefs || []).forEach(function (r) {
      if (!isNum(r.x)) { return; }
      var x = sc.px(r.x);
      root.appendChild(sv("line", {"class": "vref", x1: x, x2: x, y1: b.T, y2: b.H - b.B, "data-k": r.x}));
      root.appendChild(svText(x + 3, b.T + 10, r.label || "", "vref-label"));
    });
  }
  function chartLines(root, sc, spec) {
    var lines = spec.lines || [];
    lines.forEach(function (ln, i) {
      var good = goodPoints(ln);
      if (!good.length) { return; }
      var c = PALETTE[i % PALETTE.length];
      if (ln.path !== false) {
        var d = good.map(function (p, j) { return (j ? "L" : "M") + sc.px(p[0]).toFixed(1) + " " + sc.py(p[1]).toFixed(1); }).join(" ");
        root.appendChild(sv("path", {"class": "line", d: d, stroke: c, "data-series": ln.label || ""}));
      }
      if (ln.markers === undefined ? good.length < 60 : ln.markers) {
        var r = ln.path === false ? 3.4 : 2.2;
        good.forEach(function (p) { root.appendChild(chartMarker(sc, p, r, c, ln.label)); });
      }
      if (lines.length > 1 && spec.legend !== false) {
        root.appendChild(sv("rect", {x: sc.box.L + 8, y: sc.box.T + 4 + i * 13, width: 10, height: 3, fill: c}));
        root.appendChild(svText(sc.box.L + 22, sc.box.T + 9 + i * 13, ln.label || "", ""));
      }
    });
  }
  // a point may carry a third element {cls, hollow, attrs, title}: extra classes, an unfilled
  // marker, attributes (test hooks) and a tooltip
  function chartMarker(sc, p, r, c, label) {
    var m = isObj(p[2]) ? p[2] : {};
    var dot = sv("circle", {"class": "marker" + (m.cls ? " " + m.cls : "") + (m.hollow ? " hollow" : ""),
      cx: sc.px(p[0]), cy: sc.py(p[1]), r: m.r || r, fill: m.hollow ? "#fff" : c, stroke: c, "data-series": label || ""});
    if (isObj(m.attrs)) { attrs(dot, m.attrs); }
    if (m.title) {
      var t = sv("title", {});
      t.textContent = String(m.title);
      dot.appendChild(t);
    }
    return dot;
  }
  function lineChart(spec) {
    var box = {W: spec.width || 480, H: spec.height || 280, L: 58, R: 14, T: 26, B: 40};
    var root = sv("svg", {"class": "chart", width: box.W, height: box.H, viewBox: "0 0 " + box.W + " " + box.H});
    if (spec.name) { root.setAttribute("data-chart", spec.name); }
    root.appendChild(svText(box.W / 2, 15, spec.title || "", "", "middle"));
    var sc = chartScale(spec, box);
    if (!sc.n) {
      root.appendChild(svText(box.W / 2, box.H / 2, "no data", "", "middle"));
      return root;
    }
    chartAxes(root, sc, spec);
    chartRefs(root, sc, spec);
    chartLines(root, sc, spec);
    return root;
  }

  // ---------- shared sections ----------
  function renderModelCard(model) {
    var s = section("model", "Model card");
    if (!model) { s.appendChild(el("p", "muted", "no model information")); return; }
    var head = {};
    ["path", "fingerprint", "val_loss", "train_loss", "steps", "tokens"].forEach(function (k) {
      if (model[k] !== undefined && model[k] !== null) { head[k] = model[k]; }
    });
    s.appendChild(kvTable(head));
    if (model.nonzeros) {
      s.appendChild(el("h3", null, "Nonzero weights"));
      s.appendChild(recordsTable(model.nonzeros, "kind"));
    }
    s.appendChild(el("h3", null, "Config"));
    s.appendChild(model.config ? kvTable(model.config) : el("p", "muted", "config not available"));
  }
  function reasonCell(e) {
    // the failed checks in one line, linking to the report's validation section; the full reasons on hover
    var td = el("td", "reason");
    if (!e.reason) { return td; }
    var verdict = (e.validation && e.validation.verdict) || {};
    var href = safeHref(e.href);
    var a = el(href === null ? "span" : "a", null, e.reason);
    if (href !== null) { a.setAttribute("href", href.split("#")[0] + "#validation"); }
    a.setAttribute("title", (verdict.reasons || []).join("\n") || e.reason);
    td.appendChild(a);
    return td;
  }
  function renderCircuitTable(parent, entries) {
    if (!entries || !entries.length) { parent.appendChild(el("p", "muted", "no circuits found")); return; }
    var t = el("table", "circuit-index");
    var cols = ["report", "task", "method", "nodes", "edges", "full", "circuit", "ablate all", "target", "verdict", "failed checks"];
    var head = el("tr");
    cols.forEach(function (c) { head.appendChild(el("th", null, c)); });
    t.appendChild(head);
    entries.forEach(function (e) {
      var tr = el("tr");
      var td = el("td");
      var href = safeHref(e.href);
      if (href !== null) {
        var a = el("a", null, e.name || e.href);
        a.setAttribute("href", href);
        td.appendChild(a);
      } else {
        td.textContent = e.name || "";
      }
      tr.appendChild(td);
      var losses = e.losses || {};
      tr.appendChild(el("td", "mono", e.task));
      tr.appendChild(el("td", "mono", e.method || "masks"));
      [e.n_nodes, e.n_edges, losses.full, losses.circuit, losses.ablate_all, e.target_loss].forEach(function (v) {
        tr.appendChild(el("td", "num", v === undefined ? "" : fmt(v)));
      });
      var vtd = el("td");
      vtd.appendChild(verdictBadge(e.validation));
      tr.appendChild(vtd);
      tr.appendChild(reasonCell(e));
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }

  // ---------- the circuit graph: model and layout (1 unit = 1 px at the default zoom) ----------
  var ROW_H = 18, MIN_ROW_H = 14, R_NODE = 6, TOP = 58, HEAD_ROW = 13, BAND_GAP = 8, LAYER_GAP = 18;
  var MIN_COL = 42, MAX_COL = 120, MIN_MARGIN = 44, MAX_H = 900, MANY_NODES = 60;
  var NODE_FONT = "11px " + FONT, HEAD_FONT = "600 10px " + FONT;
  var SHORT = {attn_in: "a.in", attn_out: "a.out", attn_q: "q", attn_k: "k", attn_v: "v", mlp_in: "m.in",
    mlp_neuron: "neuron", mlp_out: "m.out", embed: "emb", logits: "logit"};

  function hasHead(d) { return d.head !== null && d.head !== undefined; }
  function termLabel(d) { return truncate(d.label || d.id, 16); }
  function nodeTitle(r) { return r.term ? (r.d.label || r.d.id) : r.d.id; }
  function graphModel(g) {
    var nodes = g.nodes || [], terms = g.terminals || [];
    var aliases = (g.locations || []).slice();
    nodes.forEach(function (n) { if (aliases.indexOf(n.alias) < 0) { aliases.push(n.alias); } });
    var nLayer = (g.geometry && g.geometry.n_layer) || 0;
    nodes.forEach(function (n) { nLayer = Math.max(nLayer, n.layer + 1); });
    var m = {cols: [], colByKey: {}, byId: {}, nLayer: nLayer, nodes: nodes, locs: aliases, boxes: {}};
    function addCol(key, label, layer) {
      var c = {key: key, label: label, alias: label, layer: layer, items: [], collapsed: false};
      m.cols.push(c); m.colByKey[key] = c;
    }
    if (terms.some(function (t) { return t.kind === "embed"; })) { addCol("embed", "embed", -1); }
    for (var l = 0; l < nLayer; l++) {
      aliases.forEach(function (alias) {
        if (nodes.some(function (n) { return n.layer === l && n.alias === alias; })) { addCol(l + "." + alias, alias, l); }
      });
    }
    if (terms.some(function (t) { return t.kind === "logit"; })) { addCol("logits", "logits", nLayer); }
    nodes.forEach(function (n) { addRec(m, n, m.colByKey[n.layer + "." + n.alias], false); });
    terms.forEach(function (t) { addRec(m, t, m.colByKey[t.kind === "embed" ? "embed" : "logits"], true); });
    return m;
  }
  function addRec(m, d, col, term) {
    if (!col) { return; }
    var rec = {d: d, col: col, term: term, edgesIn: [], edgesOut: []};
    m.byId[d.id] = rec;
    col.items.push(rec);
  }
  function sideMargin(m, key) {
    // room for the terminals' labels: embedding labels sit left of their circles, logit labels right
    var c = m.colByKey[key];
    var w = c ? maxAbsOf(c.items.map(function (r) { return textWidth(termLabel(r.d), NODE_FONT); })) : 0;
    return Math.max(MIN_MARGIN, w + R_NODE + 14);
  }
  function layoutX(m, widthPx) {
    var cols = m.cols, gaps = 0;
    cols.forEach(function (c, i) { if (i && c.layer !== cols[i - 1].layer) { gaps++; } });
    var left = sideMargin(m, "embed"), right = sideMargin(m, "logits");
    var colW = (widthPx - left - right - gaps * LAYER_GAP) / Math.max(1, cols.length - 1);
    m.colW = Math.max(MIN_COL, Math.min(MAX_COL, colW));
    var x = left;
    cols.forEach(function (c, i) {
      if (i && c.layer !== cols[i - 1].layer) { x += LAYER_GAP; }
      c.x = x; x += m.colW;
    });
    var total = x - m.colW + right, shift = Math.max(0, (widthPx - total) / 2);
    cols.forEach(function (c) { c.x += shift; });
    m.width = Math.max(widthPx, total);
  }
  function sortItems(c) {
    c.items.sort(function (a, b) {
      var ha = hasHead(a.d) ? a.d.head : -1, hb = hasHead(b.d) ? b.d.head : -1;
      return ha - hb || (a.d.index || 0) - (b.d.index || 0);
    });
  }
  function layoutBands(m, qkv) {
    // the q, k and v columns of a layer share one band per head
    var heads = [];
    qkv.forEach(function (c) { c.items.forEach(function (r) { if (heads.indexOf(r.d.head) < 0) { heads.push(r.d.head); } }); });
    heads.sort(function (a, b) { return a - b; });
    var y = TOP;
    heads.forEach(function (h) {
      var rows = 0, items = [];
      qkv.forEach(function (c) {
        var inHead = c.items.filter(function (r) { return r.d.head === h; });
        inHead.forEach(function (r, i) { r.y = y + HEAD_ROW + m.rowH / 2 + i * m.rowH; });
        rows = Math.max(rows, inHead.length);
        items = items.concat(inHead);
      });
      m.bands.push({x0: qkv[0].x - m.colW / 2 + 3, x1: qkv[qkv.length - 1].x + m.colW / 2 - 3, y0: y,
        y1: y + HEAD_ROW + rows * m.rowH, head: h, items: items});
      y += HEAD_ROW + rows * m.rowH + BAND_GAP;
    });
    return y;
  }
  function layoutY(m, roles, rowH) {
    m.bands = [];
    m.rowH = rowH;
    var height = TOP;
    m.cols.forEach(function (c) {
      sortItems(c);
      c.banded = roles[c.alias] === "qkv" && c.items.every(function (r) { return hasHead(r.d); });
    });
    for (var l = 0; l < m.nLayer; l++) {
      var qkv = m.cols.filter(function (c) { return c.layer === l && c.banded; });
      if (qkv.length) { height = Math.max(height, layoutBands(m, qkv)); }
    }
    m.cols.forEach(function (c) { if (!c.banded) { height = Math.max(height, TOP + c.items.length * rowH); } });
    m.height = height + 16;
    m.cols.forEach(function (c) {
      if (!c.banded) {
        var start = TOP + (height - TOP - c.items.length * rowH) / 2;
        c.items.forEach(function (r, i) { r.y = start + rowH / 2 + i * rowH; });
      }
      c.items.forEach(function (r) { r.x = c.x; });
      c.cy = c.items.length ? (c.items[0].y + c.items[c.items.length - 1].y) / 2 : TOP;
    });
  }

  // ---------- the circuit graph: drawing ----------
  function drawBands(m, root) {
    // the boxes go under the edges, their labels over them
    var gb = sv("g", {"class": "bands"});
    m.headLabels = sv("g", {"class": "head-labels"});
    m.bands.forEach(function (b) {
      var rect = sv("rect", {"class": "head-band", "data-head": b.head, x: b.x0, y: b.y0, width: b.x1 - b.x0, height: b.y1 - b.y0, rx: 4});
      var label = svText(b.x0 + 4, b.y0 + 10, "head " + b.head, "head-label");
      gb.appendChild(rect);
      m.headLabels.appendChild(label);
      b.parts = [rect, label];
    });
    root.appendChild(gb);
  }
  function drawLabels(m, root) {
    var g = sv("g", {"class": "labels"});
    for (var l = 0; l < m.nLayer; l++) {
      var cs = m.cols.filter(function (c) { return c.layer === l; });
      if (!cs.length) { continue; }
      var x0 = cs[0].x - m.colW / 2 + 4, x1 = cs[cs.length - 1].x + m.colW / 2 - 4;
      g.appendChild(sv("line", {"class": "layer-rule", x1: x0, x2: x1, y1: 19, y2: 19}));
      g.appendChild(svText((x0 + x1) / 2, 14, "layer " + l, "layer-label", "middle"));
    }
    // column headers: one row when they fit, else staggered over two rows, abbreviated if still too long
    var texts = m.cols.map(function (c) {
      var n = " (" + c.items.length + ")", short = SHORT[c.label] || truncate(c.label, 6);
      return [c.label + n, short + n, short];
    });
    var oneRow = texts.every(function (t) { return textWidth(t[0], HEAD_FONT) <= m.colW - 6; });
    var room = oneRow ? m.colW - 6 : 2 * m.colW - 8;
    m.cols.forEach(function (c, i) {
      var fits = texts[i].filter(function (t) { return textWidth(t, HEAD_FONT) <= room; });
      var lab = svText(c.x, oneRow || i % 2 === 0 ? 33 : 48, fits.length ? fits[0] : texts[i][2], "col-label", "middle");
      lab.setAttribute("data-col", c.key);
      var title = sv("title", {});
      title.textContent = c.label + (c.layer >= 0 && c.layer < m.nLayer ? " of layer " + c.layer : "") + ": " +
        c.items.length + " nodes (click to collapse or expand)";
      lab.appendChild(title);
      c.labelEl = lab;
      g.appendChild(lab);
    });
    root.appendChild(g);
  }
  function nodePos(r) { return r.col.collapsed ? {x: r.col.x, y: r.col.cy} : {x: r.x, y: r.y}; }
  function drawEdge(rec) {
    var a = nodePos(rec.s), b = nodePos(rec.t), dx = Math.max(20, (b.x - a.x) * 0.45);
    rec.el.setAttribute("d", "M" + a.x.toFixed(1) + " " + a.y.toFixed(1) + " C" + (a.x + dx).toFixed(1) + " " +
      a.y.toFixed(1) + " " + (b.x - dx).toFixed(1) + " " + b.y.toFixed(1) + " " + b.x.toFixed(1) + " " + b.y.toFixed(1));
  }
  function drawEdges(m, g, root) {
    var ge = sv("g", {"class": "edges"});
    var maxAbs = maxAbsOf((g.edges || []).map(function (e) { return e.weight; }));
    m.edgeRecs = [];
    function add(e, cls) {
      var s = m.byId[e.src], t = m.byId[e.dst];
      if (!s || !t) { return; }
      var w = isNum(e.weight) ? e.weight : 0;
      var scale = cls === "edge" ? 3.4 : 1.2;  // links that are not circuit edges stay thin
      var p = sv("path", {"class": cls + (w >= 0 ? " pos" : " neg"), "data-src": e.src, "data-dst": e.dst,
        "data-weight": w, "stroke-width": (0.6 + scale * Math.sqrt(maxAbs > 0 ? Math.min(1, Math.abs(w) / maxAbs) : 0)).toFixed(2)});
      var rec = {el: p, s: s, t: t, w: Math.abs(w), terminal: cls !== "edge"};
      s.edgesOut.push(rec); t.edgesIn.push(rec); m.edgeRecs.push(rec);
      ge.appendChild(p);
    }
    (g.edges || []).forEach(function (e) { add(e, "edge"); });
    (g.terminal_links || []).forEach(function (e) { add(e, "terminal-link"); });
    (g.residual_links || []).forEach(function (e) { add(e, "residual-link"); });
    m.edgeRecs.forEach(drawEdge);
    root.appendChild(ge);
  }
  function nodeLabel(r) {
    if (r.term && r.d.kind === "embed") { return svText(-R_NODE - 6, 4, termLabel(r.d), "", "end"); }
    var text = r.term ? termLabel(r.d) : (hasHead(r.d) ? r.d.head + "." + r.d.channel : r.d.index);
    return svText(R_NODE + (r.term ? 6 : 3), 4, text, "");
  }
  function drawNodes(m, root) {
    var gn = sv("g", {"class": "nodes"});
    Object.keys(m.byId).forEach(function (id) {
      var r = m.byId[id];
      r.el = sv("g", {"class": "node " + (r.term ? "terminal-node" : "circuit-node"), "data-node-id": id,
        transform: "translate(" + r.x + "," + r.y + ")"});
      r.circle = sv("circle", {r: r.term ? R_NODE + 2 : R_NODE});
      r.el.appendChild(r.circle);
      r.el.appendChild(nodeLabel(r));
      gn.appendChild(r.el);
    });
    m.cols.forEach(function (c) {
      c.summaryEl = sv("g", {"class": "node collapsed-node hidden", "data-col": c.key, transform: "translate(" + c.x + "," + c.cy + ")"});
      c.summaryEl.appendChild(sv("circle", {r: R_NODE + 4}));
      c.summaryEl.appendChild(svText(0, R_NODE + 16, c.items.length, "", "middle"));
      gn.appendChild(c.summaryEl);
    });
    root.appendChild(gn);
  }
  function locationColor(m, alias) {
    var i = m.locs.indexOf(alias);
    return i < 0 ? "#e2e8f0" : LOC_COLORS[i % LOC_COLORS.length];
  }
  function colorNodes(m, mode) {
    Object.keys(m.byId).forEach(function (id) {
      var r = m.byId[id];
      if (!r.term) { r.circle.setAttribute("fill", mode === "agreement" ? agreementColor(r.d.agreement) : locationColor(m, r.d.alias)); }
    });
  }
  function colorLegend(legend, m, mode) {
    clear(legend);
    legend.setAttribute("data-mode", mode);
    if (mode !== "agreement") {
      legend.appendChild(el("span", "muted", "node colour: location "));
      m.locs.forEach(function (a) {
        if (m.nodes.some(function (n) { return n.alias === a; })) { legend.appendChild(swatch(locationColor(m, a), a)); }
      });
      return;
    }
    legend.appendChild(el("span", "muted", "node colour: correlation of the node's activation in the circuit with the full model "));
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) { legend.appendChild(swatch(agreementColor(v), v === 0 ? "\u2264 0" : String(v))); });
    legend.appendChild(swatch(NO_VALUE, "not computed"));
    if (!m.nodes.some(function (n) { return isNum(n.agreement); })) {
      legend.appendChild(el("span", "muted", " (agreement not computed for this circuit: run validation, then rebuild the report)"));
    }
  }

  // ---------- the circuit graph: interaction ----------
  var tooltipEl = null;
  function tooltip() {
    if (!tooltipEl) { tooltipEl = el("div"); tooltipEl.id = "tooltip"; document.body.appendChild(tooltipEl); }
    return tooltipEl;
  }
  function zoomPan(root, m) {
    var v = {x: 0, y: 0, w: m.width, h: m.height}, drag = null, moved = false;
    function set(x, y, w, h) {
      v = {x: x, y: y, w: w, h: h};
      root.setAttribute("viewBox", [x, y, w, h].map(function (n) { return n.toFixed(2); }).join(" "));
    }
    function toSvg(cx, cy) {
      var pt = root.createSVGPoint(); pt.x = cx; pt.y = cy;
      return pt.matrixTransform(root.getScreenCTM().inverse());
    }
    root.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var f = Math.exp(Math.max(-0.5, Math.min(0.5, ev.deltaY * 0.0015)));
      var p = toSvg(ev.clientX, ev.clientY);
      set(p.x - (p.x - v.x) * f, p.y - (p.y - v.y) * f, v.w * f, v.h * f);
    }, {passive: false});
    root.addEventListener("mousedown", function (ev) {
      if (ev.button !== 0) { return; }
      drag = {cx: ev.clientX, cy: ev.clientY, x: v.x, y: v.y, scale: root.getScreenCTM().a};
      moved = false;
    });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) { return; }
      var dx = ev.clientX - drag.cx, dy = ev.clientY - drag.cy;
      if (Math.abs(dx) + Math.abs(dy) > 3) { moved = true; root.classList.add("dragging"); }
      if (moved) { set(drag.x - dx / drag.scale, drag.y - dy / drag.scale, v.w, v.h); }
    });
    window.addEventListener("mouseup", function () {
      drag = null; root.classList.remove("dragging");
      setTimeout(function () { moved = false; }, 0);
    });
    return {
      reset: function () { set(0, 0, m.width, m.height); },
      moved: function () { return moved; },
      centerOn: function (r) {
        var w = Math.min(v.w, m.width), h = Math.min(v.h, m.height);
        set(r.x - w / 2, r.y - h / 2, w, h);
      }
    };
  }
  function interactions(m, panel, g, view) {
    var selected = null, tip = tooltip();
    function markEdges(r, cls, on) { r.edgesIn.concat(r.edgesOut).forEach(function (e) { e.el.classList.toggle(cls, on); }); }
    function moveTip(ev) { tip.style.left = (ev.clientX + 12) + "px"; tip.style.top = (ev.clientY + 12) + "px"; }
    function hover(r, on, ev) {
      r.el.classList.toggle("hover", on);
      markEdges(r, "hl", on || r === selected);
      if (on) { tip.textContent = nodeTitle(r); tip.style.display = "block"; moveTip(ev); } else { tip.style.display = "none"; }
    }
    function select(r) {
      if (selected) { selected.el.classList.remove("selected"); markEdges(selected, "hl", false); }
      selected = r;
      r.el.classList.add("selected");
      markEdges(r, "hl", true);
      renderPanel(panel, r, g, select);
    }
    function setCollapsed(c, on, fromBox) {
      c.collapsed = on;
      c.labelEl.classList.toggle("collapsed", on);
      c.summaryEl.classList.toggle("hidden", !on);
      c.items.forEach(function (r) { r.el.classList.toggle("hidden", on); });
      c.items.forEach(function (r) { r.edgesIn.concat(r.edgesOut).forEach(drawEdge); });
      // a head band whose nodes are all collapsed would be an empty box
      m.bands.forEach(function (b) {
        var empty = b.items.every(function (r) { return r.col.collapsed; });
        b.parts.forEach(function (e) { e.classList.toggle("hidden", empty); });
      });
      var box = m.boxes[c.alias];
      if (box && !fromBox) { box.checked = m.cols.every(function (k) { return k.alias !== c.alias || k.collapsed; }); }
    }
    Object.keys(m.byId).forEach(function (id) {
      var r = m.byId[id];
      r.el.addEventListener("mouseenter", function (ev) { hover(r, true, ev); });
      r.el.addEventListener("mousemove", moveTip);
      r.el.addEventListener("mouseleave", function () { hover(r, false); });
      r.el.addEventListener("click", function (ev) { ev.stopPropagation(); if (!view.moved()) { select(r); } });
    });
    m.cols.forEach(function (c) {
      c.labelEl.addEventListener("click", function () { setCollapsed(c, !c.collapsed); });
      c.summaryEl.addEventListener("click", function (ev) { ev.stopPropagation(); if (!view.moved()) { setCollapsed(c, false); } });
    });
    return {select: select, setCollapsed: setCollapsed};
  }

  // ---------- the circuit graph: controls ----------
  function edgeFilter(m, id) {
    // the slider picks a quantile of |weight|, so it stays useful for heavy-tailed weights
    var slider = el("input"); slider.type = "range"; slider.min = "0"; slider.max = "1000"; slider.value = "0"; slider.id = id("weight-threshold");
    var text = el("span", "mono"); text.id = id("weight-threshold-value");
    var links = el("input"); links.type = "checkbox"; links.id = id("show-links");
    links.checked = m.nodes.length <= MANY_NODES;  // dashed links clutter large circuits
    var sorted = m.edgeRecs.filter(function (e) { return !e.terminal; }).map(function (e) { return e.w; }).sort(function (a, b) { return a - b; });
    function apply() {
      var q = Number(slider.value) / 1000;
      var thr = q > 0 && sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
      var shown = 0;
      m.edgeRecs.forEach(function (e) {
        var hide = e.terminal ? !links.checked : e.w < thr;
        e.el.classList.toggle("hidden", hide);
        if (!hide && !e.terminal) { shown++; }
      });
      text.textContent = " " + fmt(thr, 4) + " (" + shown + " of " + sorted.length + " edges)";
    }
    slider.addEventListener("input", apply);
    links.addEventListener("change", apply);
    var thrLabel = labelled("min |weight| ", slider);
    thrLabel.appendChild(text);
    var linksLabel = el("label");
    linksLabel.appendChild(links); linksLabel.appendChild(document.createTextNode(" show dashed links"));
    apply();
    return [thrLabel, linksLabel];
  }
  function collapseControls(m, act) {
    var toggles = el("span", "collapse-toggles");
    toggles.appendChild(el("span", "muted", "collapse: "));
    var aliases = [];
    m.cols.forEach(function (c) { if (aliases.indexOf(c.alias) < 0) { aliases.push(c.alias); } });
    function box(key, text, onChange) {
      var lab = el("label");
      var b = el("input"); b.type = "checkbox"; b.setAttribute("data-collapse", key);
      b.addEventListener("change", function () { onChange(b.checked); });
      lab.appendChild(b); lab.appendChild(document.createTextNode(" " + text));
      toggles.appendChild(lab);
      return b;
    }
    var all = box("all", "all", function (on) {
      m.cols.forEach(function (c) { act.setCollapsed(c, on, true); });
      aliases.forEach(function (a) { m.boxes[a].checked = on; });
    });
    aliases.forEach(function (alias) {
      m.boxes[alias] = box(alias, alias, function (on) {
        m.cols.forEach(function (c) { if (c.alias === alias) { act.setCollapsed(c, on, true); } });
        all.checked = aliases.every(function (a) { return m.boxes[a].checked; });
      });
    });
    return toggles;
  }
  function searchControl(m, act, view, id) {
    var span = el("span");
    var search = el("input"); search.type = "search"; search.id = id("node-search"); search.placeholder = "find node id, e.g. mlp.hook_post:12";
    var info = el("span", "muted");
    function doSearch(jump) {
      var q = search.value.trim().toLowerCase(), hits = [];
      Object.keys(m.byId).forEach(function (nid) {
        var hit = q.length > 0 && nid.toLowerCase().indexOf(q) >= 0;
        m.byId[nid].el.classList.toggle("search-hit", hit);
        if (hit) { hits.push(m.byId[nid]); }
      });
      info.textContent = q ? " " + hits.length + " match" + (hits.length === 1 ? "" : "es") : "";
      var exact = hits.filter(function (r) { return r.d.id.toLowerCase() === q; });
      var target = exact.length ? exact[0] : (jump && hits.length ? hits[0] : null);
      if (target) {
        if (target.col.collapsed) { act.setCollapsed(target.col, false); }
        act.select(target);
        view.centerOn(target);
      }
    }
    search.addEventListener("input", function () { doSearch(false); });
    search.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { doSearch(true); } });
    span.appendChild(search); span.appendChild(info);
    return span;
  }
  function colorControl(m, id, legend) {
    var s = selectEl(id("color-mode"), [["location", "location"], ["agreement", "agreement with full model"]]);
    function apply() { colorNodes(m, s.value); colorLegend(legend, m, s.value); }
    s.addEventListener("change", apply);
    apply();
    return labelled("colour ", s);
  }

  // ---------- the circuit graph: export ----------
  function graphSvgText(root, m) {
    var clone = root.cloneNode(true);
    ["id", "class", "style"].forEach(function (a) { clone.removeAttribute(a); });
    attrs(clone, {viewBox: "0 0 " + m.width.toFixed(0) + " " + m.height.toFixed(0), width: m.width.toFixed(0), height: m.height.toFixed(0)});
    var style = document.createElementNS(SVGNS, "style");
    style.textContent = document.querySelector("head style").textContent;  // the viewer's own rules
    clone.insertBefore(sv("rect", {width: "100%", height: "100%", fill: "#ffffff"}), clone.firstChild);
    clone.insertBefore(style, clone.firstChild);
    return new XMLSerializer().serializeToString(clone);
  }
  function svgDataUrl(text) { return "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text); }
  function download(href, name) {
    var a = el("a", "hidden");
    a.setAttribute("href", href);
    a.setAttribute("download", name);
    document.body.appendChild(a);
    a.click();
    document.body.removeChild(a);
  }
  function exportPng(text, m, name) {
    // the page allows images from data: URLs only, so the SVG goes through one
    var img = new Image(), k = 2;
    img.onload = function () {
      var cv = document.createElement("canvas");
      cv.width = Math.ceil(m.width * k); cv.height = Math.ceil(m.height * k);
      cv.getContext("2d").drawImage(img, 0, 0, cv.width, cv.height);
      download(cv.toDataURL("image/png"), name);
    };
    img.src = svgDataUrl(text);
  }
  function exportButtons(m, g, root, id) {
    var name = "circuit-" + String((g.task && g.task.name) || "graph").replace(/[^A-Za-z0-9_.-]+/g, "_");
    var span = el("span", "export");
    var bs = el("button", null, "export SVG"); bs.id = id("export-svg");
    bs.addEventListener("click", function () { download(svgDataUrl(graphSvgText(root, m)), name + ".svg"); });
    var bp = el("button", null, "export PNG"); bp.id = id("export-png");
    bp.addEventListener("click", function () { exportPng(graphSvgText(root, m), m, name + ".png"); });
    span.appendChild(bs); span.appendChild(bp);
    return span;
  }

  // ---------- the circuit graph ----------
  function buildGraph(host, panel, g, suffix) {
    function id(name) { return name + suffix; }
    var m = graphModel(g);
    layoutX(m, Math.max(320, host.clientWidth - 2));
    layoutY(m, g.roles || {}, ROW_H);
    if (m.height > MAX_H) {  // tall columns: tighter rows before the drawing has to shrink
      layoutY(m, g.roles || {}, Math.max(MIN_ROW_H, ROW_H * (MAX_H - TOP) / (m.height - TOP)));
    }
    var root = sv("svg", {"class": "graph", viewBox: "0 0 " + m.width + " " + m.height});
    root.id = id("graph");
    drawBands(m, root); drawLabels(m, root); drawEdges(m, g, root);
    root.appendChild(m.headLabels);
    drawNodes(m, root);
    var view = zoomPan(root, m), act = interactions(m, panel, g, view);
    var controls = el("div", "controls"), legend = el("div", "color-legend");
    edgeFilter(m, id).forEach(function (c) { controls.appendChild(c); });
    controls.appendChild(collapseControls(m, act));
    controls.appendChild(searchControl(m, act, view, id));
    controls.appendChild(colorControl(m, id, legend));
    var reset = el("button", null, "reset view");
    reset.addEventListener("click", view.reset);
    controls.appendChild(reset);
    controls.appendChild(exportButtons(m, g, root, id));
    host.appendChild(controls);
    host.appendChild(legend);
    var box = el("div", "graph-box"); box.id = id("graph-box");
    box.appendChild(root);
    var status = el("div", "graph-status", m.nodes.length + " nodes, " + (g.edges || []).length +
      " edges; wheel to zoom, drag to pan, click a node for its details below");
    status.id = id("graph-status");
    box.appendChild(status);
    return {box: box, m: m, select: act.select, fit: function () {
      // at the default zoom one unit is one pixel unless the graph is wider or taller than the page allows
      root.style.height = Math.max(200, Math.min(MAX_H, root.clientWidth * m.height / m.width)).toFixed(0) + "px";
    }};
  }
  function mountGraph(parent, g, suffix) {
    var host = el("div");
    parent.appendChild(host);
    var panel = el("aside", "node-panel"); panel.id = "node-panel" + suffix;
    panel.appendChild(el("p", "muted", "Click a node to see its location, activations, snippets and strongest links."));
    var graph = buildGraph(host, panel, g, suffix);
    var wrap = el("div", "graph-wrap");
    wrap.appendChild(graph.box); wrap.appendChild(panel);
    parent.appendChild(wrap);
    graph.fit();
    return graph;
  }

  // ---------- the node panel: facts ----------
  function actsPlot(a, b) {
    var W = 320, H = 70, L = 24, R = 8;
    var vals = a.concat(b).filter(isNum);
    var root = sv("svg", {"class": "acts-plot", width: W, height: H});
    if (!vals.length) { return root; }
    var lo = Math.min.apply(null, vals.concat([0])), hi = Math.max.apply(null, vals.concat([0]));
    if (hi === lo) { hi = lo + 1; }
    function px(v) { return L + (v - lo) / (hi - lo) * (W - L - R); }
    root.appendChild(sv("line", {x1: px(0), x2: px(0), y1: 4, y2: H - 16, stroke: "#94a3b8"}));
    root.appendChild(svText(2, 22, "A", ""));
    root.appendChild(svText(2, 46, "B", ""));
    a.forEach(function (v) { if (isNum(v)) { root.appendChild(sv("circle", {"class": "dot-a", cx: px(v), cy: 18, r: 3})); } });
    b.forEach(function (v) { if (isNum(v)) { root.appendChild(sv("circle", {"class": "dot-b", cx: px(v), cy: 42, r: 3})); } });
    root.appendChild(svText(L, H - 3, fmt(lo, 3), ""));
    root.appendChild(svText(W - R, H - 3, fmt(hi, 3), "", "end"));
    return root;
  }
  function mean(xs) {
    var g = (xs || []).filter(isNum);
    return g.length ? g.reduce(function (s, v) { return s + v; }, 0) / g.length : null;
  }
  function agreementText(d) {
    if (!isNum(d.agreement)) { return null; }
    return d.agreement.toFixed(2) + (d.agreement_trivial ? " (trivially: reads the embedding)" : "");
  }
  function steeringText(list) {
    // one line per task steered, from bridges.steer.steering_summary
    return list.map(function (s) {
      var at = (s.at || []).map(function (a) {
        return fmt(a.p_alt, 3) + " at scale " + fmt(a.scale) + " (random channels " + fmt(a.control_p_alt, 3) +
          ", sparse model " + fmt(a.sparse_p_alt, 3) + ")";
      });
      return (s.task ? s.task + ": " : "") + (s.channels > 1 ? "with " + (s.channels - 1) + " other channels, " : "") +
        "dense p(alt) " + fmt(s.baseline_p_alt, 3) + " \u2192 " + at.join(", ");
    }).join("; ");
  }
  function nodeFields(r) {
    var d = r.d, dl = el("dl");
    function row(label, value, cls) {
      dl.appendChild(el("dt", null, label));
      dl.appendChild(el("dd", cls + (value === null ? " muted" : ""), value === null ? "not computed" : value));
    }
    if (r.term) {
      row("kind", d.kind === "embed" ? "token embedding" : "logit", "field-kind");
      if (d.token !== undefined) { row("token", showWhitespace(d.token), "field-token mono"); }
      if (d.role !== undefined) { row("role", d.role, "field-role"); }
    } else {
      row("location", d.alias, "field-location");
      row("hook", d.hook, "field-hook mono");
      row("layer", d.layer, "field-layer");
      row("index", d.index, "field-index");
      row("head", hasHead(d) ? d.head : "n/a", "field-head");
      if (hasHead(d)) { row("channel in head", d.channel, "field-channel"); }
      row("ablation value", fmt(d.ablation_value), "field-ablation");
      row("\u0394 task loss if removed alone", fmt(d.delta_loss), "field-delta");
      row("agreement with full model", agreementText(d), "field-agreement");
      if (d.steering) { row("steering the dense model (bridges)", steeringText(d.steering), "field-steering"); }
    }
    row("edges in / out", r.edgesIn.length + " / " + r.edgesOut.length, "field-degree");
    return dl;
  }
  function statsBlock(st) {
    if (!st) { return notComputed("Activation statistics on pretraining text"); }
    var p = el("p", "act-stats");
    var qs = (st.quantiles || []).map(function (q) { return String(+(100 * q[0]).toPrecision(3)) + "%: " + fmt(q[1], 3); });
    p.textContent = "Over " + fmt(st.n_tokens) + " pretraining tokens: nonzero on " +
      (isNum(st.fraction_nonzero) ? (100 * st.fraction_nonzero).toFixed(1) + "%" : "not computed") +
      " of them" + (qs.length ? "; quantiles " + qs.join(", ") : "");
    return p;
  }
  function lastTokenActs(parent, acts) {
    parent.appendChild(el("h3", null, "Activations on task pairs (last token)"));
    if (!acts) { parent.appendChild(notComputed("Activations (build the report with the model to see them)")); return; }
    Object.keys(acts).forEach(function (which) {
      var ab = acts[which] || {};
      parent.appendChild(el("div", "snippet-head", which + " model: mean A " + fmt(mean(ab.a), 3) + ", mean B " + fmt(mean(ab.b), 3) +
        " over " + (ab.a || []).length + " pairs"));
      parent.appendChild(actsPlot(ab.a || [], ab.b || []));
    });
  }
  function edgeList(parent, title, list, other, select) {
    if (!list.length) { return; }
    parent.appendChild(el("h3", null, title));
    var t = el("table");
    list.slice().sort(function (a, b) { return b.w - a.w; }).slice(0, 12).forEach(function (e) {
      var tr = el("tr"), td = el("td");
      var btn = el("button", "mono", other(e).d.id);
      btn.addEventListener("click", function () { select(other(e)); });
      td.appendChild(btn);
      tr.appendChild(td);
      tr.appendChild(el("td", "num", fmt(Number(e.el.getAttribute("data-weight")), 4)));
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }

  // ---------- the node panel: snippets by activation quantile ----------
  function snippetBlock(parent, d) {
    parent.appendChild(el("h3", null, "Pretraining snippets by activation quantile"));
    if (!d.snippet_groups && d.snippets) { oldSnippets(parent, d.snippets); return; }
    if (!d.snippet_groups) { parent.appendChild(notComputed("Snippets (build the report with the model and --data to see them)")); return; }
    if (!d.snippet_groups.length) { parent.appendChild(el("p", "muted", "no snippets in the sampled windows")); return; }
    d.snippet_groups.forEach(function (grp) {
      // the extremes start open; the quantiles in between open on a click (a panel stays short)
      var box = el("details", "snippet-group");
      box.open = grp.label === "top" || grp.label === "bottom";
      box.setAttribute("data-label", grp.label);
      box.appendChild(el("summary", "snippet-group-head", grp.label + (isNum(grp.quantile) ? " (quantile " + grp.quantile + ")" : "") +
        ": activation " + fmt(grp.value, 3) + " (" + (grp.snippets || []).length + " snippets)"));
      if (!has(grp.snippets)) { box.appendChild(el("p", "muted", "no snippet at this quantile")); }
      (grp.snippets || []).forEach(function (sn) {
        if (sn.value !== grp.value) { box.appendChild(el("div", "snippet-head", "activation " + fmt(sn.value, 3))); }
        box.appendChild(tokenLine(sn.tokens, sn.acts, sn.focus));
      });
      parent.appendChild(box);
    });
  }
  function oldSnippets(parent, snippets) {
    // reports written before snippet groups: the top-activating snippets only
    parent.appendChild(el("p", "muted", "top-activating snippets only (quantile groups not computed in this report)"));
    if (!snippets.length) { parent.appendChild(el("p", "muted", "no nonzero activation in the sampled windows")); }
    snippets.forEach(function (sn) {
      parent.appendChild(el("div", "snippet-head", "activation " + fmt(sn.max, 3)));
      parent.appendChild(tokenLine(sn.tokens, sn.acts, sn.focus));
    });
  }

  // ---------- the node panel: activation heatmaps ----------
  var HM_CELL = 46, HM_LABEL = 60;
  var heatRun = "full";  // the run the panel's heatmaps show, kept from node to node

  function compactToken(s) { return String(s).replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192"); }
  function diffValues(a, b) { return a.map(function (v, i) { return isNum(v) && isNum(b[i]) ? v - b[i] : null; }); }
  function exampleSpecs(ta, run, examples) {
    var acts = ta && ta[run];
    if (!acts) { return null; }
    return (acts.a || []).map(function (a, i) {
      var ex = examples[i] || {}, b = (acts.b || [])[i] || [];
      a = a || [];
      var rows = [{key: "a", label: "A", tokens: ex.a_tokens, values: a}, {key: "b", label: "B", tokens: ex.b_tokens, values: b}];
      if (a.length === b.length) { rows.push({key: "diff", label: "A\u2212B", values: diffValues(a, b)}); }
      return {kind: "example", example: i, title: "pair " + (i + 1), rows: rows};
    });
  }
  function classSpec(ca, run, cp) {
    var acts = ca && ca[run];
    if (!acts) { return null; }
    var a = acts.a || [], b = acts.b || [];
    cp = cp || {};
    return {kind: "class", title: "mean over " + (isNum(cp.n_pairs) ? cp.n_pairs + " " : "") +
      "pairs of each class, positions aligned at the last prompt token",
      header: cp.labels || a.map(function (v, i) { return String(i - a.length + 1); }),
      rows: [{key: "a", label: "A mean", values: a}, {key: "b", label: "B mean", values: b},
        {key: "diff", label: "A\u2212B", values: diffValues(a, b)}]};
  }
  function hmCell(row, i, scale) {
    if (i >= row.values.length) { return el("td", "hm-empty"); }
    var v = row.values[i], tok = row.tokens ? row.tokens[i] : undefined;
    var td = el("td", "hm-cell", tok !== undefined ? compactToken(tok) : (isNum(v) ? fmt(v, 2) : ""));
    if (!isNum(v)) { td.classList.add("hm-none"); td.setAttribute("title", "not computed"); return td; }
    td.setAttribute("data-value", String(v));
    td.style.backgroundColor = divColor(v, scale);
    if (Math.abs(v) > 0.6 * scale) { td.classList.add("hm-strong"); }
    td.setAttribute("title", row.label + (tok !== undefined ? " " + JSON.stringify(String(tok)) : "") + ": " + fmt(v, 3));
    return td;
  }
  function hmTable(spec, start, count, scale) {
    var t = el("table", "hm");
    t.style.width = (HM_LABEL + count * HM_CELL) + "px";
    var i;
    if (spec.header) {
      var hr = el("tr");
      hr.setAttribute("data-row", "label");
      hr.appendChild(el("th", "hm-label", "position"));
      for (i = start; i < start + count; i++) { hr.appendChild(el("th", "hm-pos", spec.header[i])); }
      t.appendChild(hr);
    }
    spec.rows.forEach(function (row) {
      var tr = el("tr");
      tr.setAttribute("data-row", row.key);
      tr.appendChild(el("th", "hm-label", row.label));
      for (i = start; i < start + count; i++) { tr.appendChild(hmCell(row, i, scale)); }
      t.appendChild(tr);
    });
    return t;
  }
  function heatmapEl(spec, run, scale, chunk) {
    // long prompts wrap into several tables of `chunk` positions, each with all of its rows
    var box = attrs(el("div", "heatmap"), {"data-run": run, "data-kind": spec.kind});
    if (spec.kind === "example") { box.setAttribute("data-example", spec.example); }
    box.appendChild(el("div", "snippet-head", spec.title));
    var n = Math.max.apply(null, spec.rows.map(function (r) { return r.values.length; }));
    for (var s = 0; s < n; s += chunk) { box.appendChild(hmTable(spec, s, Math.min(chunk, n - s), scale)); }
    return box;
  }
  function runBox(run, specs, scale, chunk) {
    var box = attrs(el("div", "hm-run-box"), {"data-run": run});
    var what = run === "full" ? "full model" : "circuit";
    if (specs.examples) {
      specs.examples.forEach(function (s) { box.appendChild(heatmapEl(s, run, scale, chunk)); });
    } else {
      box.appendChild(notComputed("Per-token activations in the " + what));
    }
    box.appendChild(el("h4", null, "Class means"));
    box.appendChild(specs.cls ? heatmapEl(specs.cls, run, scale, chunk) : notComputed("Class-mean activations in the " + what));
    return box;
  }
  function heatLegend(scale) {
    var lg = attrs(el("span", "hm-legend"), {"data-max": scale});
    lg.appendChild(swatch(divColor(-scale, scale), "\u2212" + fmt(scale, 2)));
    lg.appendChild(swatch(divColor(0, scale), "0"));
    lg.appendChild(swatch(divColor(scale, scale), "+" + fmt(scale, 2)));
    lg.appendChild(el("span", "muted", " (one scale for this panel)"));
    return lg;
  }
  function heatmapBlock(parent, d, g) {
    parent.appendChild(el("h3", null, "Activation per token on the task examples"));
    if (!d.token_acts && !d.class_acts) {
      parent.appendChild(notComputed("Per-token activations (build the report with the model to see them)"));
      return;
    }
    var runs = ["full", "circuit"].map(function (run) {
      return {run: run, examples: exampleSpecs(d.token_acts, run, g.examples || []), cls: classSpec(d.class_acts, run, g.class_positions)};
    });
    var scale = 0;
    runs.forEach(function (r) {
      (r.examples || []).concat(r.cls ? [r.cls] : []).forEach(function (s) {
        s.rows.forEach(function (row) { scale = Math.max(scale, maxAbsOf(row.values)); });
      });
    });
    var chunk = Math.max(4, Math.floor(((parent.clientWidth || 600) - HM_LABEL - 8) / HM_CELL));
    var sel = selectEl(null, [["full", "full model"], ["circuit", "circuit"]]);
    sel.className = "hm-run";
    sel.value = heatRun;
    var head = el("div", "controls");
    head.appendChild(labelled("run ", sel));
    head.appendChild(heatLegend(scale));
    parent.appendChild(head);
    var boxes = runs.map(function (r) { return parent.appendChild(runBox(r.run, r, scale, chunk)); });
    function show() {
      heatRun = sel.value;
      boxes.forEach(function (b) { b.classList.toggle("hidden", b.getAttribute("data-run") !== heatRun); });
    }
    sel.addEventListener("change", show);
    show();
  }

  function renderPanel(panel, r, g, select) {
    clear(panel);
    var d = r.d;
    panel.setAttribute("data-node-id", d.id);
    panel.appendChild(el("h3", null, nodeTitle(r)));
    var facts = el("div", "panel-facts"), views = el("div", "panel-views");
    panel.appendChild(facts);
    panel.appendChild(views);
    facts.appendChild(nodeFields(r));
    if (!r.term) {
      facts.appendChild(statsBlock(d.act_stats));
      lastTokenActs(facts, d.acts);
      heatmapBlock(views, d, g);
      snippetBlock(views, d);
    }
    edgeList(facts, "Strongest inputs", r.edgesIn, function (e) { return e.s; }, select);
    edgeList(facts, "Strongest outputs", r.edgesOut, function (e) { return e.t; }, select);
  }

  // ---------- attention patterns ----------
  function headKey(h) { return h.layer + "." + h.head; }
  function headText(h) {
    return "layer " + h.layer + " head " + h.head + (h.in_circuit ? " \u2014 in circuit (" + fmt(h.n_nodes) + " nodes)" : "");
  }
  function keyTh(text, cls) {
    var th = el("th", cls || "attn-k");
    th.appendChild(el("span", null, text));
    th.setAttribute("title", text);
    return th;
  }
  function attnRow(row, q, tokens) {
    var tr = el("tr");
    var label = compactToken(tokens[q]);
    tr.appendChild(attrs(el("th", "attn-q", label), {title: q + ": " + label}));
    var sink = attrs(el("td", "attn-sink"), {"data-q": q});
    tr.appendChild(sink);
    var sum = 0;
    tokens.forEach(function (tok, k) {
      var v = row[k];
      if (k > q || !isNum(v)) { tr.appendChild(el("td", k > q ? "attn-masked" : "attn-none")); return; }
      sum += v;
      var td = attrs(el("td", "attn-cell"), {"data-q": q, "data-k": k, "data-value": v,
        title: "query " + q + " " + JSON.stringify(String(tokens[q])) + " \u2192 key " + k + " " + JSON.stringify(String(tok)) + ": " + fmt(v, 3)});
      td.style.backgroundColor = attnColor(v);
      tr.appendChild(td);
    });
    var rest = Math.max(0, 1 - sum);
    attrs(sink, {"data-value": rest, title: "query " + q + ": " + fmt(rest, 3) + " to the attention sink"});
    sink.style.backgroundColor = attnColor(rest);
    return tr;
  }
  function attnMatrix(rows, tokens, run, head, cell) {
    var t = attrs(el("table", "attn-matrix"), {"data-run": run, "data-layer": head.layer, "data-head": head.head});
    t.style.setProperty("--cell", cell + "px");
    var hr = el("tr");
    hr.appendChild(el("th", "attn-corner", "query \u2193 key \u2192"));
    hr.appendChild(keyTh("sink", "attn-k attn-sink-head"));
    tokens.forEach(function (tok) { hr.appendChild(keyTh(compactToken(tok))); });
    t.appendChild(hr);
    tokens.forEach(function (tok, q) { t.appendChild(attnRow(rows[q] || [], q, tokens)); });
    return t;
  }
  function attnBlock(head, run, pi, prompt, cell) {
    var box = el("div", "attn-block");
    box.appendChild(el("h4", null, run === "full" ? "full model" : "circuit"));
    var pats = head[run];
    if (!pats || !pats[pi]) {
      box.appendChild(notComputed(run === "circuit" ? "Pattern in the circuit" : "Pattern in the full model"));
    } else {
      box.appendChild(attnMatrix(pats[pi], prompt.tokens || [], run, head, cell));
    }
    return box;
  }
  function renderAttention(g) {
    var s = section("attention", "Attention");
    var att = g.attention;
    if (!att || !has(att.heads) || !has(att.prompts)) {
      s.appendChild(notComputed("Attention patterns (build the report with the model to see them)"));
      return;
    }
    s.appendChild(el("p", "muted", "Each row is a query position, each column a key position (causal: keys up to the query). " +
      "The sink column is the share of the row that went to the attention sink. Circuit heads are listed first."));
    var pSel = selectEl("attn-prompt", att.prompts.map(function (p, i) { return [String(i), p.label || "prompt " + (i + 1)]; }));
    var hSel = selectEl("attn-head", att.heads.map(function (h) { return [headKey(h), headText(h)]; }));
    var controls = el("div", "controls");
    controls.appendChild(labelled("prompt ", pSel));
    controls.appendChild(labelled("head ", hSel));
    s.appendChild(controls);
    var pair = el("div", "attn-pair");
    s.appendChild(pair);
    function draw() {
      clear(pair);
      var head = att.heads[hSel.selectedIndex], pi = Number(pSel.value), prompt = att.prompts[pi] || {};
      var n = (prompt.tokens || []).length;
      var cell = Math.max(8, Math.min(28, Math.floor(((pair.clientWidth - 24) / 2 - 100) / (n + 1))));
      pair.appendChild(attnBlock(head, "full", pi, prompt, cell));
      pair.appendChild(attnBlock(head, "circuit", pi, prompt, cell));
    }
    pSel.addEventListener("change", draw);
    hSel.addEventListener("change", draw);
    draw();
  }

  // ---------- validation ----------
  function checkValue(c) {
    if (c.value !== null && c.value !== undefined) { return fmt(c.value, 3); }
    return String(c.direction || "").indexOf("not reached") === 0 ? "not reached" : "none";
  }
  function textCell(text, fallback) {
    var missing = text === undefined || text === null || text === "";
    return el("td", missing ? "muted" : null, missing ? fallback : text);
  }
  function passIfCell(c) {
    if (c.direction) { return el("td", "mono pass-if", c.direction + " " + fmt(c.threshold, 3)); }
    var td = el("td", "mono pass-if", c.threshold === undefined || c.threshold === null ? "" : "threshold " + fmt(c.threshold, 3) + " ");
    td.appendChild(el("span", "muted", "(direction not computed)"));
    return td;
  }
  function checksTable(checks) {
    var t = el("table", "checks");
    var head = el("tr");
    ["check", "result", "value", "pass if", "meaning", "finding"].forEach(function (c) { head.appendChild(el("th", null, c)); });
    t.appendChild(head);
    checks.forEach(function (c) {
      var tr = attrs(el("tr"), {"data-check": c.name, "data-passed": !!c.passed});
      tr.appendChild(el("th", "mono", c.name));
      var res = el("td");
      res.appendChild(el("span", c.passed ? "check-pass" : "check-fail", c.passed ? "pass" : "fail"));
      tr.appendChild(res);
      tr.appendChild(el("td", "num", checkValue(c)));
      tr.appendChild(passIfCell(c));
      tr.appendChild(textCell(c.meaning, "not computed"));
      tr.appendChild(textCell(c.reason, ""));
      t.appendChild(tr);
    });
    return t;
  }
  function listOf(items, cls) {
    var ul = el("ul", cls);
    items.forEach(function (r) { ul.appendChild(el("li", null, r)); });
    return ul;
  }
  function controlCards(controls) {
    // one card per control: controls have many fields each, too many for the columns of one table
    var cards = el("div", "cards");
    Object.keys(controls).forEach(function (name) {
      var card = attrs(el("div", "card"), {"data-control": name});
      card.appendChild(el("h4", "mono", name));
      card.appendChild(kvTable(isObj(controls[name]) ? controls[name] : {value: controls[name]}));
      cards.appendChild(card);
    });
    return cards;
  }
  function renderValidation(val) {
    var v = section("validation", "Validation");
    v.appendChild(verdictWithReason(val));
    if (!val) {
      v.appendChild(el("p", "muted", "No validation.json beside circuit.json: run the validation step to check sufficiency, necessity and the controls."));
      return;
    }
    var verdict = val.verdict || {};
    if (has(verdict.reasons)) { v.appendChild(listOf(verdict.reasons)); }
    if (has(verdict.notes)) { v.appendChild(listOf(verdict.notes, "muted")); }
    if (has(verdict.checks)) { v.appendChild(el("h3", null, "Checks")); v.appendChild(checksTable(verdict.checks)); }
    if (val.metrics) { v.appendChild(el("h3", null, "Metrics")); v.appendChild(kvTable(val.metrics)); }
    if (val.controls) { v.appendChild(el("h3", null, "Controls")); v.appendChild(controlCards(val.controls)); }
  }

  // ---------- the circuit page ----------
  function renderSummary(g) {
    var s = section("summary", "Summary");
    var task = g.task || {}, c = g.circuit || {};
    var p = el("p");
    p.appendChild(el("span", null, "Task "));
    p.appendChild(el("code", null, task.name || "?"));
    p.appendChild(el("span", null, ": " + (c.n_nodes === undefined ? "?" : c.n_nodes) + " nodes, " +
      (c.n_edges === undefined ? "?" : c.n_edges) + " edges, ablation " + fmt(c.ablation) + ", target loss " + fmt(c.target_loss) + ". Verdict: "));
    p.appendChild(verdictWithReason(g.validation));
    s.appendChild(p);
    if (task.description) { s.appendChild(el("p", "muted", task.description)); }
    if (has(g.notes)) { s.appendChild(listOf(g.notes, "notes muted")); }
    if (c.losses) { s.appendChild(el("h3", null, "Task loss (nats, chance ln 2 = 0.693)")); s.appendChild(kvTable(c.losses)); }
  }
  function renderGraphSection(g) {
    var s = section("circuit", "Circuit graph");
    mountGraph(s, g, "");
    s.appendChild(el("p", "muted", "Edge colour: blue positive weight, red negative; width grows with |weight|. " +
      "Dashed lines are not circuit edges: embedding tokens to the nodes reading their channels, " +
      "write nodes to the answer logits (unembedding weights), and residual links from a write node to later " +
      "read nodes of the same channel (weight: the reading norm's gain)" +
      ((g.nodes || []).length > MANY_NODES ? "; they start hidden in circuits of more than " + MANY_NODES + " nodes." : ".")));
  }
  function renderExamples(g) {
    var ex = section("examples", "Task examples");
    if (!has(g.examples)) {
      ex.appendChild(el("p", "muted", "not computed (build the report with the model's tokenizer to see tokenized examples)"));
      return;
    }
    g.examples.forEach(function (e, i) {
      var box = el("div", "example");
      box.appendChild(el("h3", null, "Pair " + (i + 1)));
      [["A", e.a_tokens, e.target, e.a_probs], ["B", e.b_tokens, e.alt, e.b_probs]].forEach(function (side) {
        var line = tokenLine(side[1] || [], null, -1);
        var ans = el("span", "tok answer", showWhitespace(side[2]));
        ans.setAttribute("title", "expected next token");
        line.appendChild(ans);
        var probs = side[3] ? Object.keys(side[3]).map(function (k) { return "p(correct | " + k + ") = " + fmt(side[3][k], 3); }).join(", ") : "";
        box.appendChild(el("div", "snippet-head", "prompt " + side[0] + " \u2192 " + JSON.stringify(side[2]) + (probs ? "; " + probs : "")));
        box.appendChild(line);
      });
      ex.appendChild(box);
    });
  }
  function renderCurve(g) {
    var cv = section("curve", "Loss versus k");
    var c = g.circuit || {}, losses = c.losses || {};
    if (!has(g.curve_full) && !has(g.curve)) { cv.appendChild(notComputed("Task loss versus k (no pruning curve in this circuit)")); return; }
    var lines = [];
    if (has(g.curve_full)) {
      lines.push({label: "top-k nodes", markers: false, points: g.curve_full.map(function (q) { return [q.k, q.loss]; })});
    } else {
      cv.appendChild(notComputed("Task loss over the whole range of k (the bisection points are shown)"));
    }
    if (has(g.curve)) {
      lines.push({label: "bisection points", path: false, markers: true, points: g.curve.map(function (q) { return [q.k, q.loss]; })});
    }
    var total = isNum(c.n_total_nodes) ? ", of " + c.n_total_nodes + " nodes in the model" : "";
    cv.appendChild(lineChart({name: "loss-k", width: 760, height: 340, title: "task loss of the top-k node set" + total,
      xLabel: "k (kept nodes)", yLabel: "task loss", logx: true, lines: lines,
      vrefs: isNum(c.n_nodes) ? [{x: c.n_nodes, label: "circuit: k = " + c.n_nodes}] : [],
      refs: [{y: c.target_loss, label: "target"}, {y: losses.full, label: "full model"}, {y: Math.LN2, label: "chance"}]}));
  }
  function renderCircuit() {
    renderSummary(data);
    renderGraphSection(data);
    renderExamples(data);
    renderAttention(data);
    renderCurve(data);
    renderValidation(data.validation);
    renderModelCard(data.model);
    var c = data.circuit || {};
    var pr = section("pruning", "Pruning settings");
    pr.appendChild(kvTable(Object.assign({seed: c.seed, version: c.version}, c.pruning || {})));
  }

  // ---------- the other pages ----------
  function renderRun() {
    renderModelCard(data.model);
    var t = section("training", "Training");
    var charts = el("div", "charts");
    ((data.training && data.training.charts) || []).forEach(function (ch) {
      charts.appendChild(lineChart({title: ch.title, xLabel: ch.x_label, yLabel: ch.y_label, lines: ch.lines, logx: !!ch.logx}));
    });
    if (!charts.childNodes.length) { t.appendChild(el("p", "muted", "no metrics.jsonl in this run")); }
    t.appendChild(charts);
    renderCircuitTable(section("circuits", "Circuits"), data.circuits);
  }
  function sideHead(side) {
    var th = el("th"), href = side.href ? safeHref(side.href) : null;
    var label = side.label || "?";
    if (href === null) { th.textContent = label; return th; }
    var a = el("a", null, label);
    a.setAttribute("href", href);
    th.appendChild(a);
    return th;
  }
  function compareSummary(sides) {
    var t = el("table", "compare-summary");
    var head = el("tr");
    head.appendChild(el("th"));
    sides.forEach(function (side) { head.appendChild(sideHead(side)); });
    t.appendChild(head);
    var rows = [["nodes", "n_nodes"], ["edges", "n_edges"], ["target loss", "target_loss"],
      ["loss, full model", "full"], ["loss, circuit", "circuit"], ["loss, ablate all", "ablate_all"]];
    rows.forEach(function (row) {
      var tr = el("tr");
      tr.appendChild(el("th", null, row[0]));
      sides.forEach(function (side) {
        var c = (side.data && side.data.circuit) || {};
        var v = row[1] in c ? c[row[1]] : (c.losses || {})[row[1]];
        tr.appendChild(el("td", "num", fmt(v)));
      });
      t.appendChild(tr);
    });
    var vr = el("tr");
    vr.appendChild(el("th", null, "verdict"));
    sides.forEach(function (side) {
      var td = el("td");
      td.appendChild(verdictWithReason(side.data && side.data.validation));
      vr.appendChild(td);
    });
    t.appendChild(vr);
    return t;
  }
  function renderCompare() {
    var s = section("summary", "Summary");
    var sides = data.sides || [], task = isObj(data.task) ? data.task.name : data.task;
    var p = el("p");
    p.appendChild(el("span", null, "Task "));
    p.appendChild(el("code", null, task || "?"));
    s.appendChild(p);
    if (!sides.length) { s.appendChild(el("p", "muted", "no circuits to compare")); return; }
    s.appendChild(compareSummary(sides));
    var row = el("div", "compare-graphs");
    section("graphs", "Circuit graphs").appendChild(row);
    // every column exists before the first graph measures its width
    var cols = sides.map(function (side, i) {
      var col = attrs(el("div", "compare-side"), {"data-side": i});
      col.appendChild(el("h3", null, side.label || "?"));
      return row.appendChild(col);
    });
    sides.forEach(function (side, i) { mountGraph(cols[i], side.data || {}, "-s" + (i + 1)); });
  }

  // ---------- circuit reuse (index page): overlap between the task circuits of one model ----------
  var REUSE_STOPS = [[0, [248, 250, 252]], [0.5, [147, 197, 253]], [1, [30, 64, 175]]];
  var REUSE_KINDS = [
    {key: "node_jaccard", title: "Node Jaccard", rows: "task", cols: "task",
      note: "nodes in both circuits / nodes in either"},
    {key: "node_share", title: "Share of nodes found in another circuit", rows: "share of this task\u2019s nodes \u2026",
      cols: "\u2026 found in this task\u2019s circuit", note: "row task\u2019s nodes that are also in the column task\u2019s circuit / row task\u2019s nodes"},
    {key: "edge_jaccard", title: "Edge Jaccard", rows: "task", cols: "task",
      note: "edges (src \u2192 dst) in both circuits / edges in either"}];
  function reuseColor(v) { return isNum(v) ? mix(REUSE_STOPS, v) : NO_VALUE; }
  function reuseCell(r, kind, i, j) {
    var v = ((r[kind.key] || [])[i] || [])[j], tasks = r.tasks;
    var td = attrs(el("td", "reuse-cell num", isNum(v) ? v.toFixed(2) : "n/a"),
      {"data-row": tasks[i], "data-col": tasks[j], "data-value": isNum(v) ? v : "null"});
    td.style.backgroundColor = reuseColor(v);
    if (isNum(v) && v > 0.6) { td.classList.add("reuse-strong"); }
    if (!isNum(v)) { td.classList.add("reuse-none"); }
    td.setAttribute("title", kind.title + ", " + tasks[i] + " \u2192 " + tasks[j] + ": " +
      (isNum(v) ? fmt(v, 4) : "no value (an empty circuit)"));
    return td;
  }
  function reuseMatrix(model, r, kind) {
    var tasks = r.tasks || [];
    var box = el("div", "reuse-box");
    box.appendChild(el("h4", null, kind.title));
    box.appendChild(el("p", "muted reuse-note", kind.note));
    var t = attrs(el("table", "reuse-matrix"), {"data-model": model, "data-kind": kind.key});
    var top = el("tr"), names = el("tr");
    var corner = attrs(el("th", "reuse-corner", "rows: " + kind.rows), {rowspan: 2});
    top.appendChild(corner);
    top.appendChild(attrs(el("th", "reuse-axis", "columns: " + kind.cols), {colspan: Math.max(1, tasks.length)}));
    tasks.forEach(function (task) {
      var th = attrs(el("th", "reuse-col"), {title: task});
      th.appendChild(el("span", null, task));
      names.appendChild(th);
    });
    t.appendChild(top);
    t.appendChild(names);
    tasks.forEach(function (task, i) {
      var tr = el("tr");
      tr.appendChild(attrs(el("th", "reuse-row mono", task), {title: task}));
      tasks.forEach(function (_, j) { tr.appendChild(reuseCell(r, kind, i, j)); });
      t.appendChild(tr);
    });
    box.appendChild(t);
    return box;
  }
  function reuseSizes(r) {
    var tasks = r.tasks || [], nodes = r.n_nodes || [], edges = r.n_edges || [];
    return tasks.map(function (task, i) { return task + ": " + fmt(nodes[i]) + " nodes, " + fmt(edges[i]) + " edges"; }).join("; ");
  }
  function renderReuse(reuse) {
    if (!isObj(reuse) || !Object.keys(reuse).length) { return; }
    var s = section("reuse", "Circuit reuse");
    s.appendChild(el("p", "muted", "How many nodes (\"HOOK:INDEX\") and edges the task circuits of one model share. " +
      "Overlaps compare circuits of the same model only: node ids name the same unit only within a model. " +
      "Grey cells have no value (an empty circuit, or no edges on either side)."));
    var legend = el("div", "color-legend");
    [0, 0.25, 0.5, 0.75, 1].forEach(function (v) { legend.appendChild(swatch(reuseColor(v), v.toFixed(2))); });
    legend.appendChild(swatch(NO_VALUE, "no value"));
    s.appendChild(legend);
    Object.keys(reuse).forEach(function (model) {
      var r = reuse[model];
      if (!isObj(r) || !has(r.tasks)) { return; }
      var wrap = attrs(el("div", "reuse-model"), {"data-model": model});
      wrap.appendChild(el("h3", null, model + " model"));
      wrap.appendChild(el("p", "muted reuse-sizes", reuseSizes(r)));
      var row = el("div", "reuse-matrices");
      REUSE_KINDS.forEach(function (kind) { row.appendChild(reuseMatrix(model, r, kind)); });
      wrap.appendChild(row);
      s.appendChild(wrap);
    });
  }

  // ---------- frontier sweep: circuit size against pretraining loss, per family ----------
  function num(x, digits) { return isNum(x) ? fmt(x, digits) : "\u2013"; }
  function fixed(x, digits) { return isNum(x) ? x.toFixed(digits) : "\u2013"; }
  function setting(x) { return isNum(x) ? String(+x.toPrecision(4)) : "\u2013"; }
  function ratioText(m) { return isObj(m) && isNum(m.geomean_ratio) ? m.geomean_ratio.toFixed(2) + "x (" + m.n_tasks + ")" : "\u2013"; }
  function gridTable(id, heads, rows, numCols) {
    // rows: {attrs, cells}; a cell is text or a DOM node; numCols: indices of numeric columns
    var t = el("table", "frontier-grid");
    if (id) { t.id = id; }
    var head = el("tr");
    heads.forEach(function (h) { head.appendChild(el("th", null, h)); });
    t.appendChild(head);
    rows.forEach(function (row) {
      var tr = attrs(el("tr"), row.attrs || {});
      row.cells.forEach(function (c, i) {
        var td = el("td", (numCols || []).indexOf(i) >= 0 ? "num" : "");
        if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c === null || c === undefined ? "\u2013" : String(c); }
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
    return t;
  }
  function familiesOf(rows) {
    var fams = [];
    rows.forEach(function (r) { if (fams.indexOf(r.family) < 0) { fams.push(r.family); } });
    return fams;
  }
  function frontierLines(rows, value, cls, extra, radius) {
    // one line per family (in the same order on every chart, so colours match), through its
    // points by validation loss; value(row) gives {y, failed} or null
    return familiesOf(rows).map(function (f) {
      var pts = [];
      rows.forEach(function (r) {
        var v = r.family === f ? value(r) : null;
        if (!v || !isNum(r.val_loss) || !isNum(v.y) || v.y <= 0) { return; }
        var tip = r.name + ": " + fmt(v.y, 1) + " edges at val loss " + fmt(r.val_loss, 4) + (v.failed ? " (a circuit failed a check)" : "");
        pts.push([r.val_loss, v.y, {cls: cls, hollow: !!v.failed, title: tip, r: radius,
          attrs: Object.assign({"data-point": r.name, "data-failed": v.failed ? 1 : 0}, extra || {})}]);
      });
      pts.sort(function (a, b) { return a[0] - b[0]; });
      return {label: f, points: pts, markers: true};
    });
  }
  function frontierLegend(rows) {
    var drawn = rows.filter(function (r) { return isNum(r.val_loss) && isNum(r.geomean_edges_sufficient) && r.geomean_edges_sufficient > 0; });
    var hollow = drawn.filter(function (r) { return r.failed; }).length;
    var left = rows.filter(function (r) { return drawn.indexOf(r) < 0; }).map(function (r) { return r.name; });
    var text = drawn.length + " point(s) drawn; hollow markers: " + hollow + " point(s) with a circuit that failed a verdict check" +
      (left.length ? "; not drawn (no trusted circuit or no val loss): " + left.join(", ") : "");
    return el("p", "muted frontier-legend", text);
  }
  function renderFrontierSummary(f) {
    var s = section("summary", "Summary");
    var w = f.widening || {};
    s.appendChild(el("h3", null, "Dense/sparse edges at matched loss"));
    s.appendChild(listOf((f.matched && f.matched.statements) || ["no sparse points"], "frontier-statements"));
    s.appendChild(el("h3", null, "Widening at equal nonzeros"));
    var p = el("p", "frontier-widening", w.statement || "not computed");
    s.appendChild(p);
    if (has(w.pairs)) { s.appendChild(listOf(w.pairs.map(function (q) { return q.statement; }), "frontier-pairs")); }
    var miss = f.missing || {}, nP = (miss.points || []).length, nC = (miss.circuits || []).length;
    if (nP || nC) { s.appendChild(el("p", "warn", "Partial sweep: " + nP + " point(s) and " + nC + " circuit(s) missing (see Missing).")); }
  }
  function renderFrontierCharts(f) {
    var rows = (f.table && f.table.rows) || [], tasks = (f.table && f.table.tasks) || [];
    var s = section("frontier-chart", "Frontier");
    s.appendChild(el("p", "muted", "Geometric mean of the edges of each point's circuits that pass sufficiency on " +
      "held-out pairs (trusted), against the validation loss of the full model; one line per family."));
    s.appendChild(frontierLegend(rows));
    s.appendChild(lineChart({name: "frontier", title: "geomean edges (trusted circuits) vs validation loss", width: 760, height: 400,
      xLabel: "validation loss (nats/token)", yLabel: "geomean edges", logy: true, padX: 0.04,
      lines: frontierLines(rows, function (r) { return {y: r.geomean_edges_sufficient, failed: r.failed}; }, "frontier-point", null, 4.5)}));
    if (!tasks.length) { return; }
    var t = section("frontier-tasks", "Per task");
    t.appendChild(el("p", "muted", "Edges of each task's circuit that met the target; hollow: the circuit failed a verdict check. " +
      "Colours are the families' of the chart above."));
    var charts = el("div", "charts");
    tasks.forEach(function (task) {
      charts.appendChild(lineChart({name: "frontier-task", title: task, width: 330, height: 240, xLabel: "val loss",
        yLabel: "edges", logy: true, padX: 0.04, legend: false, lines: frontierLines(rows, function (r) {
          var c = (r.edges || {})[task];
          return c && c.target_met ? {y: c.n_edges, failed: c.failed} : null;
        }, "frontier-task-point", {"data-task": task}, 3.5)}));
    });
    t.appendChild(charts);
  }
  function taskEdges(r) {
    var box = el("div", "frontier-edges");
    Object.keys(r.edges || {}).forEach(function (task) {
      var c = r.edges[task], line = attrs(el("div", c.failed ? "reason" : ""), {"data-task": task});
      var href = c.report ? safeHref(c.report) : null, name = el(href === null ? "span" : "a", "mono", task);
      if (href !== null) { name.setAttribute("href", href); }
      line.appendChild(name);
      var why = c.failed ? " (" + (c.verdict || "failed") + (has(c.failed_checks) ? ": " + c.failed_checks.join(", ") : "") + ")" : "";
      line.appendChild(document.createTextNode(": " + fmt(c.n_edges) + " edges" + (c.target_met ? "" : ", target not met") + why));
      box.appendChild(line);
    });
    return box.childNodes.length ? box : "\u2013";
  }
  function renderFrontierTable(f) {
    var rows = (f.table && f.table.rows) || [];
    var s = section("points", "Points");
    var heads = ["point", "family", "width", "target density", "afrac", "nonzeros", "val loss", "tasks",
      "geomean edges, sufficient (tasks)", "geomean edges, all (tasks)", "failed", "insufficient", "edges per task"];
    s.appendChild(gridTable("frontier-table", heads, rows.map(function (r) {
      return {attrs: {"data-point": r.name, "data-failed": r.failed ? 1 : 0}, cells: [r.name, r.family, "x" + fmt(r.expansion),
        setting(r.target_density), setting(r.afrac), num(r.nonzeros), fixed(r.val_loss, 4), String(r.n_tasks),
        isNum(r.geomean_edges_sufficient) ? fmt(r.geomean_edges_sufficient, 1) + " (" + r.n_tasks_sufficient + ")" : "\u2013",
        isNum(r.geomean_edges_all) ? fmt(r.geomean_edges_all, 1) + " (" + r.n_tasks_all + ")" : "\u2013",
        String(r.n_failed), String(r.n_insufficient), taskEdges(r)]};
    }), [5, 6, 7, 8, 9, 10, 11]));
  }
  function perTaskRatios(m) {
    var box = el("div", "frontier-edges");
    Object.keys(m.per_task || {}).forEach(function (task) {
      var v = m.per_task[task], why = (m.reasons || {})[task];
      var line = attrs(el("div", isNum(v) ? "" : "muted", task + ": " + (isNum(v) ? v.toFixed(2) + "x" : "\u2013")), {"data-task": task});
      if (why) { line.setAttribute("title", why); }
      box.appendChild(line);
    });
    return box.childNodes.length ? box : "\u2013";
  }
  function renderMatched(f) {
    var m = f.matched || {};
    var s = section("matched", "Matched-loss ratios");
    s.appendChild(el("p", "muted", "Dense/sparse edges at each sparse point's validation loss: the dense points' " +
      "log(edges) interpolated linearly in log(loss) between the two dense points that bracket it (" +
      ((m.dense_points || []).join(", ") || "none") + "); no extrapolation. Trusted: circuits that pass sufficiency; " +
      "all: circuits that met the target. Hover a per-task value for why it is missing."));
    var heads = ["point", "family", "val loss", "dense bracket", "ratio, trusted (tasks)", "min", "median", "max",
      "ratio, all (tasks)", "per task (trusted)", "note"];
    s.appendChild(gridTable("matched-ratios", heads, (m.points || []).map(function (r) {
      var sp = r.trusted.spread || {};
      return {attrs: {"data-point": r.name}, cells: [r.name, r.family, fixed(r.val_loss, 4),
        r.bracket ? r.bracket.lower + " \u2013 " + r.bracket.upper : "\u2013", ratioText(r.trusted),
        fixed(sp.min, 2), fixed(sp.median, 2), fixed(sp.max, 2), ratioText(r.all), perTaskRatios(r.trusted), r.reason || ""]};
    }), [2, 4, 5, 6, 7, 8]));
    var fams = m.families || {};
    s.appendChild(el("h3", null, "Per family"));
    s.appendChild(gridTable("matched-families", ["family", "geomean ratio, trusted (points)", "geomean ratio, all (points)"],
      Object.keys(fams).map(function (k) {
        var t = fams[k].trusted, a = fams[k].all;
        var txt = function (x) { return isNum(x.geomean_ratio) ? x.geomean_ratio.toFixed(2) + "x (" + x.n_points + " of " + x.points_total + ")" : "\u2013"; };
        return {attrs: {"data-family": k}, cells: [k, txt(t), txt(a)]};
      }), [1, 2]));
  }
  function renderFrontierReuse(f) {
    var rs = f.reuse || [];
    if (rs.length) {
      var s = section("reuse-summary", "Reuse summary");
      s.appendChild(gridTable("frontier-reuse", ["point", "tasks", "mean node Jaccard (off-diagonal)", "mean edge Jaccard (off-diagonal)"],
        rs.map(function (r) { return {attrs: {"data-point": r.name}, cells: [r.name, String(r.n_tasks), fixed(r.mean_node_jaccard, 3), fixed(r.mean_edge_jaccard, 3)]}; }),
        [1, 2, 3]));
    }
    renderReuse(data.reuse);
  }
  function renderMissing(f) {
    var miss = f.missing || {}, items = [];
    (miss.points || []).forEach(function (m) { items.push("point " + m.name + ": " + m.reason); });
    (miss.circuits || []).forEach(function (m) { items.push(m.point + (m.task ? " / " + m.task : "") + ": " + m.reason); });
    if (items.length) { section("missing", "Missing").appendChild(listOf(items, "frontier-missing")); }
  }
  function renderFrontier() {
    var f = isObj(data.frontier) ? data.frontier : {};
    renderFrontierSummary(f);
    renderFrontierCharts(f);
    renderFrontierTable(f);
    renderMatched(f);
    renderFrontierReuse(f);
    renderMissing(f);
  }

  var pages = {circuit: renderCircuit, run: renderRun, compare: renderCompare, frontier: renderFrontier,
    index: function () {
      renderCircuitTable(section("circuits", "Circuits"), data.circuits);
      renderReuse(data.reuse);
    }};
  (pages[data.kind] || pages.index)();
  document.body.setAttribute("data-ready", "1");
})();
