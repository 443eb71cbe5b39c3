/**
 * The viewer page's script (served as /app.js). Vanilla JavaScript, no framework, no library.
 *
 * Entries hold attacker-chosen strings (a tool name, a claimed caller, a reason), so everything
 * from the server is put into the page with `textContent`, `createElement` and
 * `createElementNS` (the charts' SVG) and `setAttribute` for titles: never `innerHTML`, never a
 * URL built from data. The server filters and pages; the page holds one page of rows.
 *
 * Written without template literals: this text is itself a TypeScript template string.
 */
export const PAGE_SCRIPT = String.raw`"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var FILTERS = ["q", "caller", "person", "callee", "tool", "decision", "code", "outcome", "since", "until", "toolCallId", "traceId", "state", "log"];
  var REASON_COLOURS = ["#b3261e", "#e8710a", "#8e24aa", "#c5221f", "#a142f4", "#d01884", "#795548", "#5f6368"];
  var ALLOWED_COLOUR = "#34a853";
  var STATE_TEXT = {
    signed: "\u2713 signed",
    checkpointed: "\u2713 chained",
    uncovered: "chained only",
    bad: "\u2717 FIRST BAD ENTRY",
    unverified: "\u26A0 UNVERIFIED"
  };
  var STATE_TITLE = {
    signed: "the hash chain holds and a checkpoint whose signature was checked covers this entry",
    checkpointed: "the hash chain holds and a checkpoint covers this entry; checkpoint signatures were NOT checked (--no-signatures)",
    uncovered: "the hash chain holds up to this entry, but no checkpoint whose signature was checked covers it (it is after the newest one, or after a bad line): anyone able to write the file could have written it",
    bad: "verification failed here: this is the first bad entry of its log",
    unverified: "this entry comes after its log's first bad entry: nothing about it is verified"
  };
  var STATE_BADGE = { signed: "ok", checkpointed: "warn", uncovered: "warn", bad: "bad", unverified: "bad" };

  var view = { filter: {}, offset: 0, limit: 50, version: -1, shownVersion: -1, ready: false, open: null, busy: false, again: false, logs: [], painted: false, total: 0 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function add(parent) { for (var i = 1; i < arguments.length; i++) { var c = arguments[i]; if (c === null || c === undefined) continue; parent.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } return parent; }
  function short(id) {
    if (typeof id !== "string") return "";
    var m = /^(?:spiffe|aztp):\/\/[^/]+\/(.*)$/.exec(id);
    if (!m) return id;
    var i = id.lastIndexOf("/");
    return id.slice(i + 1) || id;
  }
  function personName(p) { var i = p.indexOf("#"); return i >= 0 ? p.slice(i + 1) : p; }
  function pad(n, w) { var s = String(n); while (s.length < (w || 2)) s = "0" + s; return s; }
  function localTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." + pad(d.getMilliseconds(), 3);
  }
  function toLocalInput(ms) {
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function num(n) { return Number(n).toLocaleString("en"); }
  function count(n, one, many) { return num(n) + " " + (Number(n) === 1 ? one : many || one + "s"); }
  function text(v) { return typeof v === "string" ? v : JSON.stringify(v); }

  function api(path, params) {
    var q = params ? "?" + params.toString() : "";
    return fetch(path + q, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; }, function () { return { status: r.status, body: null }; });
    });
  }
  function filterParams(extra) {
    var p = new URLSearchParams();
    FILTERS.forEach(function (k) { var v = view.filter[k]; if (v !== undefined && v !== "") p.set(k, v); });
    if (extra) for (var k in extra) if (Object.prototype.hasOwnProperty.call(extra, k)) p.set(k, String(extra[k]));
    return p;
  }

  // ---- filters, kept in the address's fragment (never sent anywhere) --------------------
  function readHash() {
    var p = new URLSearchParams(location.hash.replace(/^#/, ""));
    var f = {};
    FILTERS.forEach(function (k) { var v = p.get(k); if (v) f[k] = v; });
    view.filter = f;
    view.offset = Number(p.get("offset")) || 0;
  }
  function writeHash() {
    var p = filterParams(view.offset ? { offset: view.offset } : null);
    var h = p.toString();
    history.replaceState(null, "", h ? "#" + h : location.pathname);
  }
  function fillInputs() {
    FILTERS.forEach(function (k) {
      var input = $("f-" + k);
      if (!input) return;
      var v = view.filter[k] || "";
      if ((k === "since" || k === "until") && v) v = toLocalInput(Number(v) || Date.parse(v));
      input.value = v;
    });
  }
  function readInputs() {
    var f = {};
    FILTERS.forEach(function (k) {
      var input = $("f-" + k);
      if (!input) return;
      var v = input.value.trim();
      if (!v) return;
      if (k === "since" || k === "until") { var ms = new Date(v).getTime(); if (isNaN(ms)) return; v = String(ms); }
      f[k] = v;
    });
    return f;
  }
  function setFilter(f) {
    view.filter = f;
    view.offset = 0;
    fillInputs();
    writeHash();
    closeDetail();
    refresh(true);
  }
  function addFilter(k, v) { var f = Object.assign({}, view.filter); f[k] = v; setFilter(f); }

  // ---- verdicts --------------------------------------------------------------------------
  var KNOWN = { ok: 1, entries: 1, checkpoints: 1, lastSeq: 1, head: 1, uncovered: 1, signaturesChecked: 1, witness: 1, firstBad: 1, at: 1, ms: 1, tree: 1 };
  function describeValue(v) {
    if (v === null || v === undefined) return "";
    if (typeof v !== "object") return String(v);
    if (Array.isArray(v)) return v.map(describeValue).join(", ");
    return Object.keys(v).map(function (k) { return k + " " + describeValue(v[k]); }).join(" \u00B7 ");
  }
  function renderVerdicts(state) {
    var box = $("verdicts");
    clear(box);
    var select = $("f-log");
    var chosen = select.value;
    while (select.options.length > 1) select.remove(1);
    state.logs.forEach(function (log) {
      var o = el("option", null, log.name);
      o.value = String(log.id);
      select.appendChild(o);
      var v = log.verdict;
      var torn = v && !v.ok && v.firstBad && v.firstBad.reason === "torn-line" && !log.live.fault;
      var failed = !log.ok && !torn;
      var card = el("article", "verdict" + (failed ? " bad" : torn || log.signatures !== "checked" ? " warn" : ""));
      card.setAttribute("data-log", String(log.id));
      var h = el("h2");
      add(h, el("span", null, log.name));
      if (log.error || log.readError) add(h, el("span", "badge bad", "CANNOT BE VERIFIED"));
      else if (!v) add(h, el("span", "badge muted", "verifying"));
      else if (failed) add(h, el("span", "badge bad", "FAILS VERIFICATION"));
      else if (torn) add(h, el("span", "badge warn", "LAST LINE INCOMPLETE"));
      else add(h, el("span", "badge ok", "VERIFIED"));
      if (log.signatures !== "checked") add(h, el("span", "badge warn", "SIGNATURES NOT CHECKED"));
      card.appendChild(h);
      add(card, el("div", "path", log.path));
      if (log.error) add(card, el("p", "first-bad", log.error));
      if (log.readError) add(card, el("p", "first-bad", "cannot read: " + log.readError));
      if (v) {
        add(card, el("p", null, count(v.entries, "entry", "entries") + " verified, " + count(v.checkpoints, "checkpoint") + ", witness " + v.witness));
        add(card, el("p", null, log.signatures === "checked" ? "checkpoint signatures checked against " + (log.trustSource || "the trust source") : "checkpoint signatures NOT checked (--no-signatures): the chain and its structure only"));
        if (v.uncovered > 0) add(card, el("p", null, count(v.uncovered, "entry", "entries") + " after the last checkpoint: no signature covers " + (v.uncovered === 1 ? "it" : "them") + " yet"));
        var t = v.tree;
        if (t) {
          var treeText =
            t.state === "proven"
              ? "Merkle tree of " + count(t.size, "entry", "entries") + " signed as a C2SP checkpoint (" + t.origin + ")" + (t.notesChecked ? ", its note's signature checked" : "") + (t.predatingCheckpoints > 0 ? "; " + count(t.predatingCheckpoints, "older checkpoint") + " predate proofs" : "")
              : t.state === "predates-proofs"
                ? "No Merkle tree: this log predates proofs (its chain and checkpoints are checked as before)"
                : "No checkpoint yet: no Merkle tree signed";
          add(card, el("p", "tree", treeText));
        }
        if (v.firstBad) {
          var fb = v.firstBad;
          var where = fb.line > 0 ? "line " + fb.line + (fb.seq !== null ? " (" + fb.kind + " " + fb.seq + ")" : "") : "the witness";
          add(card, el("p", "first-bad", "First bad: " + where + ": " + fb.reason));
          add(card, el("p", null, fb.message));
        }
        var live = log.live;
        if (live.entries > 0 || live.checkpoints > 0 || live.fault) {
          add(card, el("p", null, "since: " + count(live.entries, "appended entry", "appended entries") + " and " + count(live.checkpoints, "checkpoint") + " checked as they arrived"));
          if (live.fault) {
            add(card, el("p", "first-bad", "First bad (appended): line " + live.fault.line + ": " + live.fault.reason));
            add(card, el("p", null, live.fault.message));
          }
        }
        var dl = el("dl");
        var extra = Object.keys(v).filter(function (k) { return !KNOWN[k]; });
        extra.forEach(function (k) { add(dl, el("dt", null, k), el("dd", null, describeValue(v[k]))); });
        add(dl, el("dt", null, "head"), el("dd", null, "entry " + v.lastSeq + " " + String(v.head).slice(0, 16) + "\u2026"));
        if (t && t.state === "proven") add(dl, el("dt", null, "root"), el("dd", null, String(t.root).slice(0, 16) + "\u2026"));
        add(dl, el("dt", null, "verified"), el("dd", null, localTime(v.at) + " in " + v.ms + " ms"));
        card.appendChild(dl);
        if (log.badLine !== null) {
          var b1 = el("button", null, "Show the first bad entry");
          b1.type = "button";
          b1.addEventListener("click", function () { setFilter({ log: String(log.id), state: "bad" }); });
          var b2 = el("button", null, "Show what is unverified");
          b2.type = "button";
          b2.addEventListener("click", function () { setFilter({ log: String(log.id), state: "unverified" }); });
          add(card, el("p", null, ""), b1, " ", b2);
        }
      }
      box.appendChild(card);
    });
    select.value = chosen;
  }
  function fillFacets(f) {
    if (!f) return;
    [["dl-callers", f.callers], ["dl-persons", f.persons], ["dl-callees", f.callees], ["dl-tools", f.tools], ["dl-codes", f.codes]].forEach(function (pair) {
      var list = $(pair[0]);
      clear(list);
      pair[1].forEach(function (v) { var o = el("option"); o.value = v; list.appendChild(o); });
    });
  }

  // ---- rows --------------------------------------------------------------------------------
  function whoCell(r) {
    var td = el("td");
    var name = el("strong", null, r.malformed ? "" : short(r.caller));
    name.setAttribute("title", r.caller);
    add(td, name, el("span", "tag " + (r.callerVerified ? "verified" : "claimed"), r.callerVerified ? "verified" : "claimed only"));
    if (r.delegation && r.delegation.length) {
      var chain = el("span", "sub", "on behalf of " + r.delegation.slice().reverse().map(short).join(" \u2190 "));
      chain.setAttribute("title", r.delegation.join(" \u2192 "));
      td.appendChild(chain);
    }
    if (r.person) {
      var p = el("span", "sub", "for " + personName(r.person));
      p.setAttribute("title", r.person + (r.actors ? " (acting: " + r.actors.join(" \u2192 ") + ")" : ""));
      td.appendChild(p);
    }
    if (r.approvedBy) add(td, el("span", "sub", "approved by " + personName(r.approvedBy)));
    if (r.authMethod === "bearer") add(td, el("span", "sub", "bearer token (not signed)"));
    return td;
  }
  function whatCell(r) {
    var td = el("td");
    if (r.malformed) { add(td, el("strong", null, "not an entry"), el("span", "sub", r.malformed)); return td; }
    add(td, el("strong", "mono", r.tool));
    var d = el("span", "sub digest", "args " + String(r.argsDigest).slice(0, 12) + "\u2026");
    d.setAttribute("title", "SHA-256 of the canonical arguments: " + r.argsDigest);
    td.appendChild(d);
    if (r.hasArgs) add(td, el("span", "tag", "arguments kept (redacted)"));
    if (r.toolCallId) { var c = el("span", "sub mono", r.toolCallId); c.setAttribute("title", "tool-call id"); td.appendChild(c); }
    if (r.traceId) {
      var tr = el("span", "sub mono trace", "trace " + String(r.traceId).slice(0, 12) + "…");
      tr.setAttribute("title", "trace " + r.traceId + ": show every call of this trace");
      tr.addEventListener("click", function (ev) { ev.stopPropagation(); setFilter({ traceId: r.traceId }); });
      td.appendChild(tr);
    }
    return td;
  }
  function sidesCell(r) {
    var td = el("td");
    r.sides.forEach(function (s) {
      var line = el("span", "sub", s.side + ": " + s.logName + " #" + s.seq);
      line.setAttribute("title", s.logName + " line " + s.line + ", " + STATE_TITLE[s.state]);
      td.appendChild(line);
    });
    if (r.sides.length === 1 && !r.malformed) add(td, el("span", "tag one-side", "only the " + r.sides[0].side + " side"));
    return td;
  }
  function outcomeText(r) {
    var outs = [];
    r.sides.forEach(function (s) { if (s.outcome && outs.indexOf(s.side + ": " + s.outcome) < 0) outs.push(s.side + ": " + s.outcome); });
    var distinct = {};
    r.sides.forEach(function (s) { if (s.outcome) distinct[s.outcome] = 1; });
    return Object.keys(distinct).length > 1 ? outs.join(", ") : r.outcome || "";
  }
  function renderRows(page) {
    var body = $("rows").tBodies[0];
    clear(body);
    view.total = page.total;
    if (page.rows.length === 0) {
      var tr = el("tr");
      var td = el("td", "empty", view.ready ? "No call matches." : "");
      td.colSpan = 9;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    page.rows.forEach(function (r) {
      var tr = el("tr", "row state-" + r.state);
      tr.setAttribute("data-call", String(r.id));
      tr.setAttribute("data-state", r.state);
      if (view.open === r.id) tr.classList.add("selected");
      var v = el("td");
      var badge = el("span", "badge " + STATE_BADGE[r.state], STATE_TEXT[r.state]);
      badge.setAttribute("title", STATE_TITLE[r.state]);
      v.appendChild(badge);
      tr.appendChild(v);
      add(tr, el("td", "mono", localTime(r.time)));
      tr.appendChild(whoCell(r));
      tr.appendChild(whatCell(r));
      var where = el("td", null, short(r.callee));
      where.setAttribute("title", r.callee);
      tr.appendChild(where);
      var dec = el("td");
      add(dec, el("span", "decision-" + r.decision, r.decision));
      if (r.reason) add(dec, el("span", "sub mono", r.reason));
      tr.appendChild(dec);
      add(tr, el("td", null, outcomeText(r)));
      add(tr, el("td", "mono", r.durationMs !== undefined ? (Math.round(r.durationMs * 10) / 10) + " ms" : ""));
      tr.appendChild(sidesCell(r));
      tr.addEventListener("click", function () { openDetail(r.id); });
      body.appendChild(tr);
    });
    var from = page.total === 0 ? 0 : page.offset + 1;
    var to = page.offset + page.rows.length;
    $("count").textContent = "Calls " + num(from) + "\u2013" + num(to) + " of " + num(page.total) + " (newest first)";
    $("newer").disabled = page.offset === 0;
    $("older").disabled = to >= page.total;
    if (!view.painted && page.rows.length > 0) {
      view.painted = true;
      requestAnimationFrame(function () {
        document.documentElement.setAttribute("data-first-rows-ms", String(Math.round(performance.now())));
      });
    }
  }

  // ---- charts ------------------------------------------------------------------------------
  function colourOf(reasons, reason) { var i = reasons.indexOf(reason); return REASON_COLOURS[Math.min(i < 0 ? REASON_COLOURS.length - 1 : i, REASON_COLOURS.length - 1)]; }
  function swatch(colour) { var s = svg("svg", { viewBox: "0 0 12 12", "aria-hidden": "true" }); s.appendChild(svg("rect", { x: 0, y: 0, width: 12, height: 12, rx: 2, fill: colour })); return s; }
  function renderCharts(c) {
    var box = $("chart-time");
    clear(box);
    var legend = $("chart-legend");
    clear(legend);
    if (!c.buckets.length) { box.appendChild(el("p", "empty", "No call matches.")); $("chart-callers").textContent = ""; $("chart-tools").textContent = ""; return; }
    var W = 900, H = 190, left = 40, bottom = 22, top = 8;
    var max = 1;
    c.buckets.forEach(function (b) { if (b.total > max) max = b.total; });
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "calls over time" });
    var plotW = W - left - 4, plotH = H - bottom - top;
    var bw = plotW / c.buckets.length;
    s.appendChild(svg("line", { x1: left, y1: top + plotH, x2: W - 4, y2: top + plotH, stroke: "#bbb" }));
    var yMax = svg("text", { x: left - 6, y: top + 10, "text-anchor": "end" }); yMax.textContent = String(max); s.appendChild(yMax);
    var y0 = svg("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }); y0.textContent = "0"; s.appendChild(y0);
    c.buckets.forEach(function (b, i) {
      var g = svg("g", { "class": "bar" });
      var x = left + i * bw + 1;
      var y = top + plotH;
      var parts = [["allowed", b.allowed, ALLOWED_COLOUR]];
      c.reasons.forEach(function (r) { if (b.denied[r]) parts.push([r, b.denied[r], colourOf(c.reasons, r)]); });
      parts.forEach(function (p) {
        if (!p[1]) return;
        var h = (p[1] / max) * plotH;
        y -= h;
        g.appendChild(svg("rect", { x: x, y: y, width: Math.max(bw - 2, 1), height: h, fill: p[2] }));
      });
      g.appendChild(svg("rect", { x: x, y: top, width: Math.max(bw - 2, 1), height: plotH, fill: "transparent" }));
      var t = svg("title", {});
      var lines = [localTime(new Date(b.start).toISOString()) + ": " + b.total + " calls", b.allowed + " not denied"];
      c.reasons.forEach(function (r) { if (b.denied[r]) lines.push(b.denied[r] + " denied: " + r); });
      t.textContent = lines.join("\n");
      g.appendChild(t);
      g.addEventListener("click", function () { var f = Object.assign({}, view.filter); f.since = String(b.start); f.until = String(b.start + c.bucketMs); setFilter(f); });
      s.appendChild(g);
    });
    [0, Math.floor(c.buckets.length / 2), c.buckets.length - 1].forEach(function (i, k, all) {
      if (k > 0 && i === all[k - 1]) return;
      var b = c.buckets[i];
      var label = svg("text", { x: left + i * bw + bw / 2, y: H - 6, "text-anchor": k === 0 ? "start" : k === 2 ? "end" : "middle" });
      label.textContent = localTime(new Date(b.start).toISOString()).slice(5, c.bucketMs < 1000 ? 23 : 19);
      s.appendChild(label);
    });
    box.appendChild(s);
    var li = el("li"); add(li, swatch(ALLOWED_COLOUR), "not denied"); legend.appendChild(li);
    c.reasons.forEach(function (r) {
      var item = el("li"); add(item, swatch(colourOf(c.reasons, r)), "denied: " + r);
      item.addEventListener("click", function () { addFilter("code", r); });
      legend.appendChild(item);
    });
    renderBusiest($("chart-callers"), c.callers, "caller");
    renderBusiest($("chart-tools"), c.tools, "tool");
  }
  function renderBusiest(list, rows, key) {
    clear(list);
    var max = 1;
    rows.forEach(function (r) { if (r.calls > max) max = r.calls; });
    rows.forEach(function (r) {
      var li = el("li");
      var name = el("span", "name", key === "caller" ? short(r.name.replace(/ \(claimed\)$/, "")) + (/ \(claimed\)$/.test(r.name) ? " (claimed)" : "") : r.name);
      name.setAttribute("title", r.name);
      add(li, name, el("span", "n", num(r.calls) + (r.denied ? " (" + num(r.denied) + " denied)" : "")));
      var bar = svg("svg", { viewBox: "0 0 100 6", preserveAspectRatio: "none", "aria-hidden": "true" });
      var w = (r.calls / max) * 100, wd = (r.denied / max) * 100;
      bar.appendChild(svg("rect", { x: 0, y: 0, width: w - wd, height: 6, fill: ALLOWED_COLOUR }));
      if (wd > 0) bar.appendChild(svg("rect", { x: w - wd, y: 0, width: wd, height: 6, fill: REASON_COLOURS[0] }));
      li.appendChild(bar);
      li.addEventListener("click", function () { addFilter(key, r.name.replace(/ \(claimed\)$/, "")); });
      list.appendChild(li);
    });
  }

  // ---- detail ------------------------------------------------------------------------------
  function kvTable(obj) {
    var t = el("table");
    Object.keys(obj).forEach(function (k) {
      var tr = el("tr");
      add(tr, el("td", "key", k), el("td", "value", text(obj[k])));
      t.appendChild(tr);
    });
    return t;
  }
  function pre(obj) { return el("pre", null, JSON.stringify(obj, null, 2)); }
  function tokenSection(title, tv) {
    var box = el("div", "token");
    add(box, el("h4", null, title));
    var sig = tv.signature;
    if (!sig.checked) add(box, el("p", "check none", "Signature NOT checked (--no-signatures): what follows is only what the token says."));
    else if (sig.ok) add(box, el("p", "check ok", "\u2713 Signature and certificate chain verified" + (sig.against ? " against " + sig.against : "") + ", as of the entry's time (" + localTime(sig.at) + "): signed by " + sig.signer.id + " (SVID serial " + sig.signer.serial + ", valid until " + localTime(sig.signer.notAfter) + ")."));
    else add(box, el("p", "check bad", "\u2717 Does not verify" + (sig.code ? " [" + sig.code + (sig.rule ? ", " + sig.rule : "") + "]" : "") + ": " + sig.message));
    if (tv.decodeError) add(box, el("p", "check bad", tv.decodeError));
    if (tv.agreement.length) {
      var t = el("table");
      var head = el("tr");
      add(head, el("th", null, "the entry says"), el("th", null, ""), el("th", null, "the signed token says"), el("th", null, ""));
      t.appendChild(head);
      tv.agreement.forEach(function (a) {
        var tr = el("tr");
        add(tr, el("td", "key", a.what), el("td", "value", a.entry === null ? "(none)" : a.entry), el("td", "value", a.token === null ? "(none)" : a.token), el("td", a.agree ? "agree-yes" : "agree-no", a.agree ? "\u2713 agree" : "\u2717 differ"));
        t.appendChild(tr);
      });
      box.appendChild(t);
    }
    if (tv.header) { add(box, el("h4", null, title + ": header")); box.appendChild(pre(tv.header)); }
    if (tv.claims) { add(box, el("h4", null, title + ": claims")); box.appendChild(pre(tv.claims)); }
    tv.nested.forEach(function (n) {
      add(box, el("h4", null, n.label + " (decoded only: the callee checked it when it decided)"));
      box.appendChild(pre({ header: n.header, claims: n.claims }));
    });
    return box;
  }
  function closeDetail() {
    view.open = null;
    var d = $("detail");
    d.hidden = true;
    clear(d);
    Array.prototype.forEach.call(document.querySelectorAll("tr.selected"), function (tr) { tr.classList.remove("selected"); });
  }
  function openDetail(id) {
    view.open = id;
    Array.prototype.forEach.call(document.querySelectorAll("tbody tr"), function (tr) { tr.classList.toggle("selected", tr.getAttribute("data-call") === String(id)); });
    var d = $("detail");
    d.hidden = false;
    clear(d);
    add(d, el("p", "empty", "Reading the entries back and checking their tokens\u2026"));
    api("/api/call", new URLSearchParams({ id: String(id) })).then(function (res) {
      if (view.open !== id) return;
      clear(d);
      var h = el("h2", null, "Call " + id);
      var close = el("button", null, "Close");
      close.type = "button";
      close.addEventListener("click", closeDetail);
      h.appendChild(close);
      d.appendChild(h);
      if (res.status !== 200) { add(d, el("p", "check bad", res.body && res.body.error ? res.body.error.message : "cannot read it")); return; }
      res.body.entries.forEach(function (e) {
        var sec = el("section", "entry state-" + e.state);
        sec.setAttribute("data-state", e.state);
        var title = el("h3");
        add(title, e.log.name + " \u00B7 line " + e.line + (e.seq ? " \u00B7 entry " + e.seq : "") + (e.record ? " \u00B7 " + e.record.side + " side " : " "));
        var badge = el("span", "badge " + STATE_BADGE[e.state], STATE_TEXT[e.state]);
        badge.setAttribute("title", STATE_TITLE[e.state]);
        title.appendChild(badge);
        sec.appendChild(title);
        if (e.state === "bad" || e.state === "unverified") add(sec, el("p", "check bad", e.state === "bad" ? "Verification of " + e.log.name + " fails at this line: nothing below is established." : "This entry comes after the first bad entry of " + e.log.name + ": nothing below is established."));
        if (!e.intact) { add(sec, el("p", "check bad", e.problem)); d.appendChild(sec); return; }
        if (e.raw !== undefined) { add(sec, el("p", "check bad", e.malformed), el("pre", null, e.raw)); d.appendChild(sec); return; }
        sec.appendChild(kvTable(e.record));
        if (e.token) sec.appendChild(tokenSection("Invocation token", e.token));
        if (e.receipt) sec.appendChild(tokenSection("Receipt", e.receipt));
        d.appendChild(sec);
      });
      d.scrollIntoView({ block: "nearest" });
    });
  }

  // ---- loading ---------------------------------------------------------------------------
  function showStatus(message, isError) {
    var s = $("status");
    clear(s);
    if (message) s.appendChild(el("p", isError ? "error" : null, message));
  }
  function refresh(rowsToo) {
    if (view.busy) { view.again = true; return; }
    view.busy = true;
    var state = api("/api/state");
    // Asked together with the state: the first rows need not wait for the verdicts' answer (the
    // server answers 503 until every log is verified, and the rows are then asked again).
    var wantRows = rowsToo || view.offset === 0;
    var rows = wantRows ? api("/api/calls", filterParams({ offset: view.offset, limit: view.limit })) : null;
    state.then(function (s) {
      if (s.status !== 200 || !s.body) { showStatus("The server refused: open the link aztp audit view printed.", true); return null; }
      var st = s.body;
      if (st.title) $("source").textContent = st.title;
      renderVerdicts(st);
      if (st.failure) { showStatus(st.failure, true); return null; }
      if (!st.ready) { showStatus("Verifying " + st.logs.length + " logs\u2026 nothing is shown until each log's verdict is in."); return null; }
      showStatus(num(st.calls) + " calls in " + st.logs.length + " logs" + (st.logs.every(function (l) { return l.ok; }) ? ", every log verified." : ": SOME LOGS FAIL VERIFICATION (see above)."), !st.logs.every(function (l) { return l.ok; }));
      var first = !view.ready;
      view.ready = true;
      view.version = st.version;
      fillFacets(st.facets);
      $("filters").hidden = false;
      $("charts").hidden = false;
      $("calls").hidden = false;
      if (first) fillInputs();
      var again = function () { return api("/api/calls", filterParams({ offset: view.offset, limit: view.limit })); };
      var got = rows ? rows.then(function (r) { return r.status === 503 ? again() : r; }) : again();
      return got.then(function (r) {
        if (r.status === 200) { renderRows(r.body); view.shownVersion = st.version; $("fresh").hidden = true; }
        else if (r.body && r.body.error) showStatus(r.body.error.message, true);
        return api("/api/charts", filterParams()).then(function (c) { if (c.status === 200) renderCharts(c.body); });
      });
    }).catch(function (e) { showStatus("Cannot reach the viewer: " + e, true); }).then(function () {
      view.busy = false;
      if (view.again) { view.again = false; refresh(true); }
    });
  }
  function onChange(version) {
    if (!view.ready || view.offset === 0) { refresh(false); return; }
    // Not on the newest page: the rows stay put; say that newer calls came.
    api("/api/state").then(function (s) {
      if (s.status !== 200) return;
      renderVerdicts(s.body);
      if (s.body.version !== view.shownVersion) { var f = $("fresh"); f.hidden = false; f.textContent = "new entries \u2013 show the newest"; }
    });
    void version;
  }

  function start() {
    readHash();
    $("apply").addEventListener("click", function () { setFilter(readInputs()); });
    $("clear").addEventListener("click", function () { setFilter({}); });
    FILTERS.forEach(function (k) {
      var input = $("f-" + k);
      if (!input) return;
      input.addEventListener(input.tagName === "SELECT" ? "change" : "keydown", function (ev) {
        if (input.tagName === "SELECT" || ev.key === "Enter") setFilter(readInputs());
      });
    });
    $("newer").addEventListener("click", function () { view.offset = Math.max(0, view.offset - view.limit); writeHash(); refresh(true); });
    $("older").addEventListener("click", function () { if (view.offset + view.limit < view.total) { view.offset += view.limit; writeHash(); refresh(true); } });
    $("limit").addEventListener("change", function () { view.limit = Number($("limit").value) || 50; view.offset = 0; writeHash(); refresh(true); });
    $("fresh").addEventListener("click", function () { view.offset = 0; writeHash(); refresh(true); });
    $("reverify").addEventListener("click", function () {
      var b = $("reverify");
      b.disabled = true;
      b.textContent = "Verifying\u2026";
      fetch("/api/reverify", { method: "POST", credentials: "same-origin" }).then(function () { refresh(true); }).catch(function () {}).then(function () { b.disabled = false; b.textContent = "Verify again"; });
    });
    var live = $("live");
    var source = new EventSource("/api/events");
    source.addEventListener("open", function () { live.className = "live on"; live.textContent = "live"; });
    source.addEventListener("error", function () { live.className = "live off"; live.textContent = "reconnecting"; });
    source.addEventListener("change", function (ev) {
      var data = {};
      try { data = JSON.parse(ev.data); } catch (e) { data = {}; }
      if (data.version !== view.version || !view.ready) onChange(data.version);
    });
    refresh(true);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
`;
