// The class board: draws the matrix from the JSON document in #board-data (the same document as
// `jam check --json`). Every string from a server goes in with textContent, never as markup, so
// a server that answers "<script>" shows those characters and runs nothing.
"use strict";
(function () {
  const byId = (id) => document.getElementById(id);
  let doc = JSON.parse(byId("board-data").textContent);
  let fetchedAt = Date.now();
  let open = null; // the cell whose detail is shown: [target label, case id]

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  const label = (t) => t.name || t.target;
  // What a row is: a server (jam check) or a client (jam check-client).
  const what = () => (doc.tool.endsWith("check-client") ? "client" : "server");
  const tally = (t) => t.passed + "/" + t.total;
  const failures = (t) => t.error ? 1000 : t.cases.filter((c) => c.status === "fail" || c.status === "timeout").length;
  const notSelected = (c) => c.skip_reason === "not-selected";

  // The columns: every case, less those that --only/--skip left out everywhere.
  function columns() {
    if (!doc.targets.length) return doc.catalogue;
    return doc.catalogue.filter((c) => doc.targets.some((t) => t.cases.some((r) => r.id === c.id && !notSelected(r))));
  }

  function took(s) {
    return s < 10 ? (Math.round(s * 10) / 10).toFixed(1) + "s" : seconds(s);
  }

  function seconds(s) {
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  }

  function score(t) {
    const s = t.summary.score;
    const n = (x) => String(Math.round(x * 100) / 100);
    return n(s.earned) + "/" + n(s.max);
  }

  function rows() {
    let list = doc.targets.map((t, i) => ({ t, i }));
    if (byId("failing-only").checked) list = list.filter((r) => !r.t.passed);
    const by = document.querySelector('input[name="sort"]:checked').value;
    list.sort((a, b) => {
      if (by === "failures") {
        const d = failures(b.t) - failures(a.t);
        if (d !== 0) return d;
      }
      return label(a.t).localeCompare(label(b.t), undefined, { numeric: true }) || a.i - b.i;
    });
    return list;
  }

  function head(live) {
    const tr = el("tr", {},
      el("th", { scope: "col", text: what() }),
      el("th", { scope: "col", text: "result" }),
      el("th", { scope: "col", text: "must" }),
      el("th", { scope: "col", text: "should" }),
      el("th", { scope: "col", text: "score" }),
      el("th", { scope: "col", text: "time" }));
    if (live) {
      tr.append(el("th", { scope: "col", text: "state for" }), el("th", { scope: "col", text: "last runs" }));
    }
    for (const c of columns()) {
      tr.append(el("th", { scope: "col", class: "case " + c.level, title: c.title },
        el("span", { class: "id", text: c.id }), " ", el("span", { class: "lvl", text: c.level })));
    }
    return tr;
  }

  function row(t, live) {
    const result = t.error ? "error" : t.passed ? "pass" : "fail";
    const name = el("th", { scope: "row" }, label(t));
    if (t.name || t.address) name.append(el("span", { class: "addr", text: t.address || t.target }));
    const tr = el("tr", { "data-target": label(t), "data-result": result },
      name,
      el("td", { class: "result " + result, title: t.error || null, text: result }),
      el("td", { class: "num must", text: tally(t.summary.must) }),
      el("td", { class: "num should", text: tally(t.summary.should) }),
      el("td", { class: "num score", text: score(t) }),
      el("td", { class: "num", text: took(t.duration_ms / 1000) }));
    if (live) {
      const since = t.since_s === undefined ? "" : seconds(t.since_s + (Date.now() - fetchedAt) / 1000);
      tr.append(el("td", { class: "num since", "data-since": t.since_s, text: since }));
      const strip = el("td", { class: "history", "aria-label": "last runs, oldest first" });
      for (const h of t.history || []) {
        const word = h.passed ? "pass" : "fail";
        strip.append(el("span", { class: "mark " + word, title: h.at + ": " + word + ", must " + h.must, text: h.passed ? "✓" : "✗" }));
      }
      tr.append(strip);
    }
    for (const c of columns()) {
      const r = t.cases.find((x) => x.id === c.id);
      if (!r || notSelected(r)) {
        tr.append(el("td", { class: "cell none", text: "—", title: "not selected" }));
        continue;
      }
      const button = el("button", {
        type: "button",
        class: r.status + " " + r.level,
        "data-case": r.id,
        "aria-label": label(t) + ", " + r.id + " (" + r.level + "): " + r.status,
        text: r.status,
      });
      button.addEventListener("click", () => show(label(t), r.id));
      tr.append(el("td", { class: "cell " + r.status + " " + r.level, "data-case": r.id }, button));
    }
    return tr;
  }

  function foot(live) {
    const tr = el("tr", {}, el("th", { scope: "row", text: "passed by" }));
    tr.append(el("td", { colspan: live ? 7 : 5, class: "num", text: doc.summary.passed + " of " + doc.summary.targets + " " + what() + "s pass" }));
    for (const c of columns()) {
      const pct = c.checked ? Math.round((100 * c.passed) / c.checked) + "%" : "";
      tr.append(el("td", { class: "num rate", "data-case": c.id, title: c.passed + " of " + c.checked + " " + what() + "s", text: c.checked ? c.passed + "/" + c.checked : "—" },
        c.checked ? el("br") : null, pct));
    }
    return tr;
  }

  function render() {
    const board = doc.board || {};
    const live = !!board.live;
    document.title = (live ? "live board: " : "") + doc.tool + " — " + doc.summary.passed + " of " + doc.summary.targets + " pass";
    byId("title").textContent = (live ? "Live board: " : "") + doc.tool;
    const meta = byId("meta");
    meta.replaceChildren(
      "jam " + doc.version + " · checked " + (board.generated_at || "") + " · points " + doc.points + (doc.strict ? " · --strict" : "") + " · ",
      el("code", { text: board.command || "" }));
    byId("summary").textContent = doc.summary.passed + " of " + doc.summary.targets + " " + what() + "s pass every must case" + (doc.strict ? " and every should case" : "") + ".";
    const table = byId("matrix");
    table.tHead.replaceChildren(head(live));
    table.tBodies[0].replaceChildren(...rows().map((r) => row(r.t, live)));
    table.tFoot.replaceChildren(foot(live));
    if (open && byId("detail").open) show(open[0], open[1]);
  }

  function show(targetLabel, caseId) {
    const t = doc.targets.find((x) => label(x) === targetLabel);
    const r = t && t.cases.find((x) => x.id === caseId);
    if (!r) return;
    open = [targetLabel, caseId];
    byId("detail-title").textContent = targetLabel + " — " + r.id + ": " + r.status;
    byId("detail-meta").textContent = r.level + " · " + r.title + " · " + Math.round(r.duration_ms) + " ms" + (t.address ? " · " + t.address : "");
    byId("detail-text").textContent = t.error && r.status === "skip" ? "Not checked: " + t.error : r.detail || "(nothing to add)";
    byId("detail-transcript").textContent = r.transcript.length ? r.transcript.join("\n") : "(nothing was sent)";
    const dialog = byId("detail");
    if (!dialog.open) dialog.showModal();
  }

  byId("detail").addEventListener("close", () => { open = null; });
  byId("failing-only").addEventListener("change", render);
  for (const input of document.querySelectorAll('input[name="sort"]')) input.addEventListener("change", render);

  // The live board: poll the document; draw again only when a round finished.
  function poll() {
    const board = doc.board || {};
    if (!board.live || location.protocol === "file:") return;
    const status = byId("live");
    status.hidden = false;
    const every = Math.min(2000, Math.max(500, board.live.interval_s * 250));
    fetch("board.json", { cache: "no-store" })
      .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then((next) => {
        // A new round number means a finished round: the one change worth drawing again.
        const changed = next.board.live.round !== doc.board.live.round;
        doc = next;
        if (changed) { fetchedAt = Date.now(); render(); }
        const l = doc.board.live;
        status.className = "";
        status.textContent = "Live: round " + l.round + (l.checking ? ", checking now" : "") + "; every " + seconds(l.interval_s) + ".";
      })
      .catch((e) => { status.className = "stale"; status.textContent = "The board is not answering (" + e.message + "); showing the last results."; })
      .finally(() => setTimeout(poll, every));
  }

  // "state for" keeps counting between rounds.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.since[data-since]")) {
      td.textContent = seconds(Number(td.dataset.since) + (Date.now() - fetchedAt) / 1000);
    }
  }, 1000);

  render();
  poll();
})();
