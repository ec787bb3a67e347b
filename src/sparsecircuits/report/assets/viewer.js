/* sparsecircuits report viewer: renders the embedded JSON (element #data) with the DOM and SVG.
 * All text from the data goes through textContent or setAttribute, never innerHTML. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];
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
  function isNum(x) { return typeof x === "number" && isFinite(x); }
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
  function kvTable(obj, cls) {
    var t = el("table", cls);
    Object.keys(obj || {}).forEach(function (k) {
      var tr = el("tr");
      tr.appendChild(el("th", null, k));
      var v = obj[k];
      tr.appendChild(el("td", typeof v === "number" ? "num" : "mono", fmt(v)));
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
        rows.push({name: k, rec: (r !== null && typeof r === "object") ? r : {value: r}});
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
      cols.forEach(function (c) {
        var v = row.rec[c];
        tr.appendChild(el("td", typeof v === "number" ? "num" : "", v === undefined ? "" : fmt(v)));
      });
      t.appendChild(tr);
    });
    return t;
  }
  function verdictBadge(validation) {
    if (!validation || !validation.verdict) { return el("span", "verdict none", "not validated"); }
    var st = String(validation.verdict.status || "unknown");
    return el("span", "verdict " + (st === "ok" ? "ok" : "suspect"), st);
  }
  function safeHref(href) {
    // only relative links: no scheme (javascript:, data:, http:) and no protocol-relative URLs
    var h = String(href || "");
    if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(h) || h.indexOf("//") === 0) { return null; }
    return h;
  }

  // ---------- tokens ----------
  function showWhitespace(s) {
    return String(s).replace(/\t/g, "\u2192\t").replace(/\n/g, "\u21b5\n");
  }
  function tokenSpan(text, act, maxAbs) {
    var span = el("span", "tok", showWhitespace(text));
    if (isNum(act)) {
      var a = maxAbs > 0 ? Math.min(1, Math.abs(act) / maxAbs) : 0;
      var rgb = act >= 0 ? "37,99,235" : "220,38,38";
      span.style.backgroundColor = "rgba(" + rgb + "," + (0.85 * a).toFixed(3) + ")";
      span.setAttribute("title", "activation " + fmt(act));
    }
    return span;
  }
  function tokenLine(tokens, acts, focus) {
    var div = el("div", "tokens");
    var maxAbs = 0;
    (acts || []).forEach(function (a) { if (isNum(a)) { maxAbs = Math.max(maxAbs, Math.abs(a)); } });
    tokens.forEach(function (tok, i) {
      var s = tokenSpan(tok, acts ? acts[i] : null, maxAbs);
      if (i === focus) { s.classList.add("focus"); }
      div.appendChild(s);
    });
    return div;
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
  function lineChart(spec) {
    var W = 480, H = 280, L = 58, R = 14, T = 26, B = 40;
    var root = sv("svg", {"class": "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H});
    var pts = [];
    (spec.lines || []).forEach(function (ln) {
      (ln.points || []).forEach(function (p) { if (isNum(p[0]) && isNum(p[1])) { pts.push(p); } });
    });
    root.appendChild(svText(W / 2, 15, spec.title || "", "", "middle"));
    if (!pts.length) {
      root.appendChild(svText(W / 2, H / 2, "no data", "", "middle"));
      return root;
    }
    var logx = !!spec.logx && pts.every(function (p) { return p[0] > 0; });
    var tx = logx ? function (v) { return Math.log10(v); } : function (v) { return v; };
    var xs = pts.map(function (p) { return tx(p[0]); });
    var ys = pts.map(function (p) { return p[1]; });
    (spec.refs || []).forEach(function (r) { if (isNum(r.y)) { ys.push(r.y); } });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= 1; y1 += 1; }
    var pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    function px(v) { return L + (tx(v) - x0) / (x1 - x0) * (W - L - R); }
    function py(v) { return H - B - (v - y0) / (y1 - y0) * (H - T - B); }
    niceTicks(y0, y1, 5).forEach(function (v) {
      root.appendChild(sv("line", {"class": "grid", x1: L, x2: W - R, y1: py(v), y2: py(v)}));
      root.appendChild(svText(L - 4, py(v) + 3, fmt(v, 3).replace(/\.?0+$/, ""), "", "end"));
    });
    var xt = logx ? niceTicks(Math.floor(x0), Math.ceil(x1), 5).filter(function (v) {
      return Number.isInteger(v) && v >= x0 - 1e-9 && v <= x1 + 1e-9;
    }).map(function (v) { return Math.pow(10, v); }) : niceTicks(x0, x1, 5);
    xt.forEach(function (v) {
      var x = logx ? L + (Math.log10(v) - x0) / (x1 - x0) * (W - L - R) : px(v);
      root.appendChild(svText(x, H - B + 14, Math.abs(v) >= 1e4 ? v.toExponential(1) : String(+v.toPrecision(4)), "", "middle"));
    });
    root.appendChild(sv("line", {"class": "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}));
    root.appendChild(sv("line", {"class": "axis", x1: L, x2: L, y1: T, y2: H - B}));
    root.appendChild(svText((L + W - R) / 2, H - 8, (spec.xLabel || "") + (logx ? " (log scale)" : ""), "", "middle"));
    var yl = svText(14, (T + H - B) / 2, spec.yLabel || "", "", "middle");
    yl.setAttribute("transform", "rotate(-90 14 " + (T + H - B) / 2 + ")");
    root.appendChild(yl);
    (spec.refs || []).forEach(function (r, i) {
      if (!isNum(r.y)) { return; }
      var c = PALETTE[(i + 3) % PALETTE.length];
      root.appendChild(sv("line", {"class": "ref", x1: L, x2: W - R, y1: py(r.y), y2: py(r.y), stroke: c}));
      root.appendChild(svText(W - R - 2, py(r.y) - 3, r.label || "", "", "end"));
    });
    (spec.lines || []).forEach(function (ln, i) {
      var good = (ln.points || []).filter(function (p) { return isNum(p[0]) && isNum(p[1]); });
      if (!good.length) { return; }
      var d = good.map(function (p, j) { return (j ? "L" : "M") + px(p[0]).toFixed(1) + " " + py(p[1]).toFixed(1); }).join(" ");
      var c = PALETTE[i % PALETTE.length];
      root.appendChild(sv("path", {"class": "line", d: d, stroke: c}));
      if (good.length < 60) {
        good.forEach(function (p) { root.appendChild(sv("circle", {cx: px(p[0]), cy: py(p[1]), r: 2.2, fill: c})); });
      }
      if (spec.lines.length > 1) {
        root.appendChild(sv("rect", {x: L + 8, y: T + 4 + i * 13, width: 10, height: 3, fill: c}));
        root.appendChild(svText(L + 22, T + 9 + i * 13, ln.label || "", ""));
      }
    });
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
  function renderCircuitTable(parent, entries) {
    if (!entries || !entries.length) { parent.appendChild(el("p", "muted", "no circuits found")); return; }
    var t = el("table", "circuit-index");
    var cols = ["report", "task", "method", "nodes", "edges", "full", "circuit", "ablate all", "target", "verdict"];
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
      t.appendChild(tr);
    });
    parent.appendChild(t);
  }

  // ---------- the circuit graph ----------
  var COL_W = 84, ROW_H = 20, TOP = 58, R_NODE = 6;

  function buildGraph(container, panel) {
    var nodes = data.nodes || [], edges = data.edges || [], terms = data.terminals || [];
    var locs = data.locations || [];
    var byId = {};
    // columns: embedding, then per layer every location with kept nodes, then logits
    var cols = [], colByKey = {};
    function addCol(key, label, layer, alias) {
      var c = {key: key, label: label, layer: layer, alias: alias, items: [], collapsed: false};
      cols.push(c); colByKey[key] = c; return c;
    }
    var nLayer = (data.geometry && data.geometry.n_layer) || 0;
    nodes.forEach(function (n) { nLayer = Math.max(nLayer, n.layer + 1); });
    var hasEmbed = terms.some(function (t) { return t.kind === "embed"; });
    if (hasEmbed) { addCol("embed", "embed", -1, "embed"); }
    for (var l = 0; l < nLayer; l++) {
      locs.forEach(function (alias) {
        if (nodes.some(function (n) { return n.layer === l && n.alias === alias; })) {
          addCol(l + "." + alias, alias, l, alias);
        }
      });
    }
    if (terms.some(function (t) { return t.kind === "logit"; })) { addCol("logits", "logits", nLayer, "logits"); }
    nodes.forEach(function (n) {
      var rec = {d: n, col: colByKey[n.layer + "." + n.alias], term: false, edgesIn: [], edgesOut: []};
      byId[n.id] = rec; rec.col.items.push(rec);
    });
    terms.forEach(function (t) {
      var c = colByKey[t.kind === "embed" ? "embed" : "logits"];
      var rec = {d: t, col: c, term: true, edgesIn: [], edgesOut: []};
      byId[t.id] = rec; c.items.push(rec);
    });
    // x positions, with a gap between layers
    var x = 40, prevLayer = null;
    cols.forEach(function (c) {
      if (prevLayer !== null && c.layer !== prevLayer) { x += 30; }
      c.x = x; x += COL_W; prevLayer = c.layer;
    });
    var width = x + 20;
    // y positions: q/k/v of a layer share head bands; other columns are centered lists
    var bands = [], height = 0;
    function isQKV(c) { return (data.roles || {})[c.alias] === "qkv"; }
    cols.forEach(function (c) {
      c.items.sort(function (a, b) {
        var ha = a.d.head === null || a.d.head === undefined ? -1 : a.d.head;
        var hb = b.d.head === null || b.d.head === undefined ? -1 : b.d.head;
        return ha - hb || (a.d.index || 0) - (b.d.index || 0);
      });
    });
    for (var L2 = 0; L2 < nLayer; L2++) {
      var qkv = cols.filter(function (c) { return c.layer === L2 && isQKV(c); });
      if (!qkv.length) { continue; }
      var heads = {};
      qkv.forEach(function (c) {
        c.items.forEach(function (r) { heads[r.d.head] = Math.max(heads[r.d.head] || 0, 0); });
      });
      var y = TOP;
      Object.keys(heads).map(Number).sort(function (a, b) { return a - b; }).forEach(function (h) {
        var rows = 0;
        qkv.forEach(function (c) {
          var inHead = c.items.filter(function (r) { return r.d.head === h; });
          inHead.forEach(function (r, i) { r.y = y + ROW_H / 2 + i * ROW_H; });
          rows = Math.max(rows, inHead.length);
        });
        bands.push({x0: qkv[0].x - COL_W / 2 + 6, x1: qkv[qkv.length - 1].x + COL_W / 2 - 6, y0: y, y1: y + rows * ROW_H, head: h});
        y += rows * ROW_H + 8;
      });
      height = Math.max(height, y);
    }
    cols.forEach(function (c) { if (!isQKV(c)) { height = Math.max(height, TOP + c.items.length * ROW_H); } });
    height += 20;
    cols.forEach(function (c) {
      if (!isQKV(c)) {
        var start = TOP + (height - 20 - TOP - c.items.length * ROW_H) / 2;
        c.items.forEach(function (r, i) { r.y = start + ROW_H / 2 + i * ROW_H; });
      }
      c.items.forEach(function (r) { r.x = c.x; });
      c.cy = c.items.length ? (c.items[0].y + c.items[c.items.length - 1].y) / 2 : TOP;
    });

    var root = sv("svg", {id: "graph", viewBox: "0 0 " + width + " " + height});
    var gBands = sv("g", {"class": "bands"}), gEdges = sv("g", {"class": "edges"});
    var gNodes = sv("g", {"class": "nodes"}), gLabels = sv("g", {"class": "labels"});
    root.appendChild(gBands); root.appendChild(gLabels); root.appendChild(gEdges); root.appendChild(gNodes);
    bands.forEach(function (b) {
      gBands.appendChild(sv("rect", {"class": "head-band", x: b.x0, y: b.y0, width: b.x1 - b.x0, height: b.y1 - b.y0, rx: 4}));
      gBands.appendChild(svText(b.x0 + 2, b.y0 + 8, "h" + b.head, "head-label"));
    });
    var seenLayer = {};
    cols.forEach(function (c) {
      if (c.layer >= 0 && c.layer < nLayer && !seenLayer[c.layer]) {
        seenLayer[c.layer] = true;
        gLabels.appendChild(svText(c.x - COL_W / 2 + 4, 16, "layer " + c.layer, "layer-label"));
      }
      var lab = svText(c.x, 36, c.label + " (" + c.items.length + ")", "col-label", "middle");
      lab.setAttribute("data-col", c.key);
      lab.addEventListener("click", function () { setCollapsed(c, !c.collapsed); });
      c.labelEl = lab;
      gLabels.appendChild(lab);
    });

    // edges
    var maxAbs = 0;
    edges.forEach(function (e) { maxAbs = Math.max(maxAbs, Math.abs(e.weight)); });
    var edgeRecs = [];
    function addEdge(e, cls) {
      var s = byId[e.src], t = byId[e.dst];
      if (!s || !t) { return; }
      var w = isNum(e.weight) ? e.weight : 0;
      var scale = cls === "edge" ? 3.4 : 1.2;  // links that are not circuit edges stay thin
      var p = sv("path", {"class": cls + (w >= 0 ? " pos" : " neg"), "data-src": e.src, "data-dst": e.dst,
        "data-weight": w, "stroke-width": (0.6 + scale * Math.sqrt(maxAbs > 0 ? Math.min(1, Math.abs(w) / maxAbs) : 0)).toFixed(2)});
      var rec = {el: p, s: s, t: t, w: Math.abs(w), terminal: cls !== "edge"};
      s.edgesOut.push(rec); t.edgesIn.push(rec); edgeRecs.push(rec);
      gEdges.appendChild(p);
    }
    edges.forEach(function (e) { addEdge(e, "edge"); });
    (data.terminal_links || []).forEach(function (e) { addEdge(e, "terminal-link"); });
    (data.residual_links || []).forEach(function (e) { addEdge(e, "residual-link"); });
    function pos(r) { return r.col.collapsed ? {x: r.col.x, y: r.col.cy} : {x: r.x, y: r.y}; }
    function drawEdge(rec) {
      var a = pos(rec.s), b = pos(rec.t), dx = Math.max(20, (b.x - a.x) * 0.45);
      rec.el.setAttribute("d", "M" + a.x.toFixed(1) + " " + a.y.toFixed(1) + " C" + (a.x + dx).toFixed(1) + " " +
        a.y.toFixed(1) + " " + (b.x - dx).toFixed(1) + " " + b.y.toFixed(1) + " " + b.x.toFixed(1) + " " + b.y.toFixed(1));
    }
    edgeRecs.forEach(drawEdge);

    // nodes
    var tooltip = el("div"); tooltip.id = "tooltip"; document.body.appendChild(tooltip);
    var selected = null;
    function nodeTitle(r) { return r.term ? (r.d.label || r.d.id) : r.d.id; }
    Object.keys(byId).forEach(function (id) {
      var r = byId[id];
      var g = sv("g", {"class": "node " + (r.term ? "terminal-node" : "circuit-node"), "data-node-id": id,
        transform: "translate(" + r.x + "," + r.y + ")"});
      g.appendChild(sv("circle", {r: r.term ? R_NODE + 2 : R_NODE}));
      g.appendChild(svText(R_NODE + 3, 3, r.term ? (r.d.label || r.d.id) : (r.d.head !== null && r.d.head !== undefined ? r.d.head + "." + r.d.channel : r.d.index), ""));
      g.addEventListener("mouseenter", function (ev) { hover(r, true, ev); });
      g.addEventListener("mousemove", function (ev) { moveTip(ev); });
      g.addEventListener("mouseleave", function () { hover(r, false); });
      g.addEventListener("click", function (ev) { ev.stopPropagation(); if (!dragMoved) { select(r); } });
      r.el = g;
      gNodes.appendChild(g);
    });
    cols.forEach(function (c) {
      var g = sv("g", {"class": "node collapsed-node hidden", "data-col": c.key, transform: "translate(" + c.x + "," + c.cy + ")"});
      g.appendChild(sv("circle", {r: R_NODE + 4}));
      g.appendChild(svText(R_NODE + 6, 3, c.items.length + " nodes", ""));
      g.addEventListener("click", function (ev) { ev.stopPropagation(); if (!dragMoved) { setCollapsed(c, false); } });
      c.summaryEl = g;
      gNodes.appendChild(g);
    });
    function moveTip(ev) { tooltip.style.left = (ev.clientX + 12) + "px"; tooltip.style.top = (ev.clientY + 12) + "px"; }
    function markEdges(r, cls, on) {
      r.edgesIn.concat(r.edgesOut).forEach(function (e) { e.el.classList.toggle(cls, on); });
    }
    function hover(r, on, ev) {
      r.el.classList.toggle("hover", on);
      markEdges(r, "hl", on || r === selected);
      if (on) { tooltip.textContent = nodeTitle(r); tooltip.style.display = "block"; moveTip(ev); } else { tooltip.style.display = "none"; }
    }
    function select(r) {
      if (selected) { selected.el.classList.remove("selected"); markEdges(selected, "hl", false); }
      selected = r;
      r.el.classList.add("selected");
      markEdges(r, "hl", true);
      renderPanel(panel, r, select, byId);
    }
    function setCollapsed(c, on, fromBox) {
      c.collapsed = on;
      c.labelEl.classList.toggle("collapsed", on);
      c.summaryEl.classList.toggle("hidden", !on);
      c.items.forEach(function (r) { r.el.classList.toggle("hidden", on); });
      c.items.forEach(function (r) { r.edgesIn.concat(r.edgesOut).forEach(drawEdge); });
      var box = document.querySelector('input[data-collapse="' + c.alias + '"]');
      if (box && !fromBox) { box.checked = cols.filter(function (k) { return k.alias === c.alias; }).every(function (k) { return k.collapsed; }); }
    }

    // controls: weight threshold, collapse per location, search, reset view
    var controls = el("div", "controls");
    var thrLabel = el("label", null, "min |weight| ");
    var slider = el("input"); slider.type = "range"; slider.min = "0"; slider.max = "1000"; slider.value = "0"; slider.id = "weight-threshold";
    var thrText = el("span", "mono"); thrText.id = "weight-threshold-value";
    thrLabel.appendChild(slider); thrLabel.appendChild(thrText);
    controls.appendChild(thrLabel);
    var sortedW = edgeRecs.filter(function (e) { return !e.terminal; }).map(function (e) { return e.w; }).sort(function (a, b) { return a - b; });
    function applyThreshold() {
      // the slider picks a quantile of |weight|, so it stays useful for heavy-tailed weights
      var q = Number(slider.value) / 1000;
      var thr = sortedW.length ? sortedW[Math.min(sortedW.length - 1, Math.floor(q * sortedW.length))] : 0;
      if (q === 0) { thr = 0; }
      var shown = 0;
      edgeRecs.forEach(function (e) {
        var hide = e.terminal ? !linksBox.checked : e.w < thr;
        e.el.classList.toggle("hidden", hide);
        if (!hide && !e.terminal) { shown++; }
      });
      thrText.textContent = " " + fmt(thr, 4) + " (" + shown + " of " + sortedW.length + " edges)";
    }
    slider.addEventListener("input", applyThreshold);
    var linksLabel = el("label");
    var linksBox = el("input"); linksBox.type = "checkbox"; linksBox.checked = true; linksBox.id = "show-links";
    linksBox.addEventListener("change", applyThreshold);
    linksLabel.appendChild(linksBox); linksLabel.appendChild(document.createTextNode(" show dashed links"));
    controls.appendChild(linksLabel);
    var toggles = el("span", "collapse-toggles");
    toggles.appendChild(el("span", "muted", "collapse: "));
    var aliases = [];
    cols.forEach(function (c) { if (aliases.indexOf(c.alias) < 0) { aliases.push(c.alias); } });
    aliases.forEach(function (alias) {
      var lab = el("label");
      var box = el("input"); box.type = "checkbox"; box.setAttribute("data-collapse", alias);
      box.addEventListener("change", function () {
        cols.forEach(function (c) { if (c.alias === alias) { setCollapsed(c, box.checked, true); } });
      });
      lab.appendChild(box); lab.appendChild(document.createTextNode(" " + alias));
      toggles.appendChild(lab);
    });
    controls.appendChild(toggles);
    var search = el("input"); search.type = "search"; search.id = "node-search"; search.placeholder = "find node id, e.g. mlp.hook_post:12";
    search.style.width = "240px";
    var searchInfo = el("span", "muted");
    search.addEventListener("input", function () { doSearch(false); });
    search.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { doSearch(true); } });
    function doSearch(jump) {
      var q = search.value.trim().toLowerCase();
      var hits = [];
      Object.keys(byId).forEach(function (id) {
        var hit = q.length > 0 && id.toLowerCase().indexOf(q) >= 0;
        byId[id].el.classList.toggle("search-hit", hit);
        if (hit) { hits.push(byId[id]); }
      });
      searchInfo.textContent = q ? hits.length + " match" + (hits.length === 1 ? "" : "es") : "";
      var exact = hits.filter(function (r) { return r.d.id.toLowerCase() === q; });
      var target = exact.length ? exact[0] : (jump && hits.length ? hits[0] : null);
      if (target) {
        if (target.col.collapsed) { setCollapsed(target.col, false); }
        select(target);
        centerOn(target);
      }
    }
    controls.appendChild(search); controls.appendChild(searchInfo);
    var reset = el("button", null, "reset view");
    reset.addEventListener("click", function () { setView(0, 0, width, height); });
    controls.appendChild(reset);
    container.appendChild(controls);

    // zoom and pan on the viewBox
    var view = {x: 0, y: 0, w: width, h: height};
    function setView(x, y, w, h) {
      view = {x: x, y: y, w: w, h: h};
      root.setAttribute("viewBox", [x, y, w, h].map(function (v) { return v.toFixed(2); }).join(" "));
    }
    function toSvg(cx, cy) {
      var pt = root.createSVGPoint(); pt.x = cx; pt.y = cy;
      return pt.matrixTransform(root.getScreenCTM().inverse());
    }
    function centerOn(r) {
      var w = Math.min(view.w, width), h = Math.min(view.h, height);
      setView(r.x - w / 2, r.y - h / 2, w, h);
    }
    root.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var f = Math.exp(Math.max(-0.5, Math.min(0.5, ev.deltaY * 0.0015)));
      var p = toSvg(ev.clientX, ev.clientY);
      setView(p.x - (p.x - view.x) * f, p.y - (p.y - view.y) * f, view.w * f, view.h * f);
    }, {passive: false});
    var drag = null, dragMoved = false;
    root.addEventListener("mousedown", function (ev) {
      if (ev.button !== 0) { return; }
      drag = {cx: ev.clientX, cy: ev.clientY, x: view.x, y: view.y, scale: root.getScreenCTM().a};
      dragMoved = false;
    });
    window.addEventListener("mousemove", function (ev) {
      if (!drag) { return; }
      var dx = ev.clientX - drag.cx, dy = ev.clientY - drag.cy;
      if (Math.abs(dx) + Math.abs(dy) > 3) { dragMoved = true; root.classList.add("dragging"); }
      if (dragMoved) { setView(drag.x - dx / drag.scale, drag.y - dy / drag.scale, view.w, view.h); }
    });
    window.addEventListener("mouseup", function () {
      drag = null; root.classList.remove("dragging");
      setTimeout(function () { dragMoved = false; }, 0);
    });

    var box = el("div"); box.id = "graph-box";
    box.appendChild(root);
    var status = el("div"); status.id = "graph-status";
    status.textContent = nodes.length + " nodes, " + edges.length + " edges; wheel to zoom, drag to pan, click a node for details";
    box.appendChild(status);
    applyThreshold();
    function fit() {
      // size the drawing to the graph's aspect ratio so small circuits are not drawn tiny
      var hpx = Math.max(260, Math.min(760, root.clientWidth * height / width + 24));
      root.style.height = hpx.toFixed(0) + "px";
    }
    return {box: box, byId: byId, select: select, fit: fit};
  }

  // ---------- the node panel ----------
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
  function renderPanel(panel, r, select, byId) {
    while (panel.firstChild) { panel.removeChild(panel.firstChild); }
    var d = r.d;
    panel.setAttribute("data-node-id", d.id);
    panel.appendChild(el("h3", null, r.term ? (d.label || d.id) : d.id));
    var dl = el("dl");
    function row(label, value, cls) {
      dl.appendChild(el("dt", null, label));
      dl.appendChild(el("dd", cls, value));
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
      row("head", d.head === null || d.head === undefined ? "n/a" : d.head, "field-head");
      if (d.head !== null && d.head !== undefined) { row("channel in head", d.channel, "field-channel"); }
      row("ablation value", fmt(d.ablation_value), "field-ablation");
      row("\u0394 task loss if removed alone", fmt(d.delta_loss), "field-delta");
    }
    row("edges in / out", r.edgesIn.length + " / " + r.edgesOut.length, "field-degree");
    panel.appendChild(dl);
    if (!r.term) {
      panel.appendChild(el("h3", null, "Activations on task pairs (last token)"));
      var acts = d.acts;
      if (!acts) {
        panel.appendChild(el("p", "muted", "not computed (build the report with the model to see them)"));
      } else {
        Object.keys(acts).forEach(function (which) {
          var ab = acts[which];
          panel.appendChild(el("div", "snippet-head", which + " model: mean A " + fmt(mean(ab.a), 3) + ", mean B " + fmt(mean(ab.b), 3) +
            " over " + (ab.a || []).length + " pairs"));
          panel.appendChild(actsPlot(ab.a || [], ab.b || []));
        });
      }
      panel.appendChild(el("h3", null, "Top-activating pretraining snippets"));
      if (!d.snippets) {
        panel.appendChild(el("p", "muted", "not computed (build the report with the model and --data to see them)"));
      } else if (!d.snippets.length) {
        panel.appendChild(el("p", "muted", "no nonzero activation in the sampled windows"));
      } else {
        d.snippets.forEach(function (sn) {
          panel.appendChild(el("div", "snippet-head", "activation " + fmt(sn.max, 3)));
          panel.appendChild(tokenLine(sn.tokens, sn.acts, sn.focus));
        });
      }
    }
    function edgeList(title, list, other) {
      if (!list.length) { return; }
      panel.appendChild(el("h3", null, title));
      var t = el("table");
      list.slice().sort(function (a, b) { return b.w - a.w; }).slice(0, 12).forEach(function (e) {
        var tr = el("tr");
        var td = el("td");
        var btn = el("button", "mono", other(e).d.id);
        btn.addEventListener("click", function () { select(other(e)); });
        td.appendChild(btn);
        tr.appendChild(td);
        tr.appendChild(el("td", "num", fmt(Number(e.el.getAttribute("data-weight")), 4)));
        t.appendChild(tr);
      });
      panel.appendChild(t);
    }
    edgeList("Strongest inputs", r.edgesIn, function (e) { return e.s; });
    edgeList("Strongest outputs", r.edgesOut, function (e) { return e.t; });
  }

  // ---------- pages ----------
  function renderCircuit() {
    var s = section("summary", "Summary");
    var task = data.task || {};
    var c = data.circuit || {};
    var p = el("p");
    p.appendChild(el("span", null, "Task "));
    p.appendChild(el("code", null, task.name || "?"));
    p.appendChild(el("span", null, ": " + (c.n_nodes === undefined ? "?" : c.n_nodes) + " nodes, " +
      (c.n_edges === undefined ? "?" : c.n_edges) + " edges, ablation " + fmt(c.ablation) + ", target loss " + fmt(c.target_loss) + ". Verdict: "));
    p.appendChild(verdictBadge(data.validation));
    s.appendChild(p);
    if (task.description) { s.appendChild(el("p", "muted", task.description)); }
    if (data.notes && data.notes.length) {
      var notes = el("ul", "notes muted");
      data.notes.forEach(function (n) { notes.appendChild(el("li", null, n)); });
      s.appendChild(notes);
    }
    if (c.losses) { s.appendChild(el("h3", null, "Task loss (nats, chance ln 2 = 0.693)")); s.appendChild(kvTable(c.losses)); }

    var g = section("circuit", "Circuit graph");
    var wrap = el("div"); wrap.id = "graph-wrap";
    var panel = el("aside"); panel.id = "node-panel";
    panel.appendChild(el("p", "muted", "Click a node to see its location, index, ablation value, activations and top snippets."));
    var controlsHost = el("div");
    g.appendChild(controlsHost);
    var graph = buildGraph(controlsHost, panel);
    wrap.appendChild(graph.box); wrap.appendChild(panel);
    g.appendChild(wrap);
    graph.fit();
    g.appendChild(el("p", "muted", "Edge colour: blue positive weight, red negative; width grows with |weight|. " +
      "Dashed lines are not circuit edges: embedding tokens to the nodes reading their channels, " +
      "write nodes to the answer logits (unembedding weights), and residual links from a write node to later " +
      "read nodes of the same channel (weight: the reading norm's gain)."));

    var ex = section("examples", "Task examples");
    if (!data.examples || !data.examples.length) {
      ex.appendChild(el("p", "muted", "not computed (build the report with the model's tokenizer to see tokenized examples)"));
    } else {
      data.examples.forEach(function (e, i) {
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

    var cv = section("curve", "Loss versus k");
    if (!data.curve || !data.curve.length) {
      cv.appendChild(el("p", "muted", "no pruning curve in this circuit"));
    } else {
      var losses = c.losses || {};
      cv.appendChild(lineChart({title: "task loss of the top-k circuit", xLabel: "k (kept nodes)", yLabel: "task loss",
        logx: true, lines: [{label: "circuit", points: data.curve.map(function (q) { return [q.k, q.loss]; })}],
        refs: [{y: c.target_loss, label: "target"}, {y: losses.full, label: "full model"}, {y: Math.LN2, label: "chance"}]}));
    }

    var v = section("validation", "Validation");
    v.appendChild(verdictBadge(data.validation));
    if (!data.validation) {
      v.appendChild(el("p", "muted", "No validation.json beside circuit.json: run the validation step to check sufficiency, necessity and the controls."));
    } else {
      var reasons = (data.validation.verdict && data.validation.verdict.reasons) || [];
      if (reasons.length) {
        var ul = el("ul");
        reasons.forEach(function (r) { ul.appendChild(el("li", null, r)); });
        v.appendChild(ul);
      }
      var vnotes = (data.validation.verdict && data.validation.verdict.notes) || [];
      if (vnotes.length) {
        var nl = el("ul", "muted");
        vnotes.forEach(function (n) { nl.appendChild(el("li", null, n)); });
        v.appendChild(nl);
      }
      var checks = data.validation.verdict && data.validation.verdict.checks;
      if (checks && checks.length) { v.appendChild(el("h3", null, "Checks")); v.appendChild(recordsTable(checks)); }
      if (data.validation.metrics) { v.appendChild(el("h3", null, "Metrics")); v.appendChild(kvTable(data.validation.metrics)); }
      if (data.validation.controls) { v.appendChild(el("h3", null, "Controls")); v.appendChild(recordsTable(data.validation.controls, "control")); }
    }
    renderModelCard(data.model);
    var pr = section("pruning", "Pruning settings");
    pr.appendChild(kvTable(Object.assign({seed: c.seed, version: c.version}, c.pruning || {})));
  }
  function renderRun() {
    renderModelCard(data.model);
    var t = section("training", "Training");
    var charts = el("div", "charts");
    ((data.training && data.training.charts) || []).forEach(function (ch) {
      charts.appendChild(lineChart({title: ch.title, xLabel: ch.x_label, yLabel: ch.y_label, lines: ch.lines, logx: !!ch.logx}));
    });
    if (!charts.childNodes.length) { t.appendChild(el("p", "muted", "no metrics.jsonl in this run")); }
    t.appendChild(charts);
    var c = section("circuits", "Circuits");
    renderCircuitTable(c, data.circuits);
  }
  function renderIndex() {
    var c = section("circuits", "Circuits");
    renderCircuitTable(c, data.circuits);
  }

  if (data.kind === "circuit") { renderCircuit(); } else if (data.kind === "run") { renderRun(); } else { renderIndex(); }
  document.body.setAttribute("data-ready", "1");
})();
