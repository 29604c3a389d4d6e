// kasm-db logging panel (/logs): filters in the page's URL, records newest first with paging
// to older ones, a record's data and context, live tail (Server-Sent Events) with pause, the
// volume histogram stacked by level, facets to filter by, exports of what is shown.
// Data is shown with textContent only (KASM.el): a logged <script> stays text.
"use strict";

(function () {
  const { el, clear, getJSON, utc, count, LEVELS, LEVEL_COLORS } = KASM;
  const $ = (sel) => document.querySelector(sel);

  const form = $("#filters");
  const tbody = $("#records tbody");
  const FILTERS = ["q", "level", "min_level", "app", "host", "user", "where"];
  const SPANS = ["15m", "1h", "4h", "24h", "7d"];
  const DEFAULT_SPAN = "1h";
  /** Live mode keeps at most this many rows on the page (older ones stay one "older" away). */
  const MAX_LIVE_ROWS = 1000;

  const state = {
    byId: new Map(),     // log_id -> record shown
    next: null,          // cursor of the next older page
    tail: null,          // where a stream opened after the last page load starts
    es: null,            // the live EventSource
    live: false,
    paused: false,
    lastCursor: null,    // the last record the stream delivered (else the tail)
    loadSeq: 0,
    refreshTimer: null,
    current: null,       // the record open in the detail dialog
    context: null,
  };

  // ---- The view's parameters: the page URL <-> the form <-> the API's query ----------------

  /** The page URL's parameters, as the form shows them. */
  function fromUrl() {
    const p = new URLSearchParams(window.location.search);
    for (const f of FILTERS) setField(f, p.get(f) || "");
    const since = p.get("since") || DEFAULT_SPAN;
    const until = p.get("until") || "";
    if (SPANS.includes(since) && !until) {
      form.range.value = since;
      form.start.value = "";
      form.end.value = "";
    } else if (/^\d+[smhd]$/.test(since) && !until) {
      addOption(form.range, since, "last " + since);
      form.range.value = since;
    } else {
      form.range.value = "custom";
      form.start.value = toLocalInput(since);
      form.end.value = toLocalInput(until);
    }
    const limit = p.get("limit") || "100";
    addOption(form.limit, limit, limit);
    form.limit.value = limit;
    state.live = p.get("live") === "1";
    showCustom();
  }

  function setField(name, value) {
    const f = form.elements[name];
    if (f.tagName === "SELECT") addOption(f, value, value);
    f.value = value;
  }

  function addOption(select, value, label) {
    if (value === "" || [...select.options].some(o => o.value === value)) return;
    select.appendChild(el("option", { value: value }, label));
  }

  /** "2026-12-07T08:00:00Z" -> "2026-12-07T08:00:00" (the inputs are in UTC). */
  function toLocalInput(t) {
    if (!t) return "";
    const d = new Date(t);
    return isNaN(d) ? "" : d.toISOString().slice(0, 19);
  }

  function fromLocalInput(v) {
    if (!v) return "";
    const d = new Date(v.length === 16 ? v + ":00Z" : v + "Z");
    return isNaN(d) ? "" : d.toISOString().replace(".000Z", "Z");
  }

  /** The view as page parameters (what a link reproduces). */
  function viewParams() {
    const p = new URLSearchParams();
    for (const f of FILTERS) {
      const v = form.elements[f].value.trim();
      if (v) p.set(f, v);
    }
    if (form.range.value === "custom") {
      const s = fromLocalInput(form.start.value), u = fromLocalInput(form.end.value);
      p.set("since", s || "24h");
      if (u) p.set("until", u);
    } else {
      p.set("since", form.range.value);
    }
    p.set("limit", form.limit.value);
    if (state.live) p.set("live", "1");
    return p;
  }

  /** The API's filter parameters; `keep` names the extra ones wanted (limit, since, until). */
  function apiParams(keep) {
    const v = viewParams();
    const p = new URLSearchParams();
    for (const f of FILTERS) if (v.has(f)) p.set(f, v.get(f));
    for (const k of keep) if (v.has(k)) p.set(k, v.get(k));
    return p;
  }

  function showCustom() {
    form.classList.toggle("show-custom", form.range.value === "custom");
  }

  /** On a phone the filters but the search fold away behind "More filters", which counts them. */
  function showMore() {
    const active = ["level", "min_level", "app", "host", "user", "where"].filter(f => form.elements[f].value).length +
      (form.range.value !== DEFAULT_SPAN ? 1 : 0);
    const b = $("#more-filters");
    b.textContent = form.classList.contains("expanded") ? "Fewer filters" : "More filters" + (active ? " (" + active + ")" : "");
    b.setAttribute("aria-expanded", form.classList.contains("expanded") ? "true" : "false");
  }

  function writeUrl() {
    showMore();
    const url = "/logs?" + viewParams().toString();
    if (url !== window.location.pathname + window.location.search) {
      history.replaceState(null, "", url);
    }
    const exp = apiParams(["since", "until"]);
    for (const fmt of ["ndjson", "csv"]) {
      const q = new URLSearchParams(exp);
      q.set("format", fmt);
      $("#export-" + fmt).setAttribute("href", "/api/v1/logs/export?" + q.toString());
    }
  }

  // ---- Loading ------------------------------------------------------------------------------

  async function load() {
    const seq = ++state.loadSeq;
    stopStream();
    writeUrl();
    showError(null);
    $("#summary").textContent = "Loading…";
    const recordsUrl = "/api/v1/logs?" + apiParams(["since", "until", "limit"]).toString();
    const side = Promise.allSettled([loadVolume(), loadFacets()]);
    try {
      const page = await getJSON(recordsUrl);
      if (seq !== state.loadSeq) return;
      clear(tbody);
      state.byId.clear();
      for (const r of page.records) tbody.appendChild(row(r));
      state.next = page.next;
      // Where a stream opened now starts (the tail's order is commit order, not time): with
      // this page it misses nothing; a record in both is shown once (by log_id).
      state.tail = page.tail || null;
      state.lastCursor = state.tail;
      afterRows();
    } catch (e) {
      if (seq !== state.loadSeq) return;
      clear(tbody);
      state.byId.clear();
      state.next = null;
      afterRows();
      showError("Could not load the records: " + e.message);
    }
    await side;
    if (state.live && seq === state.loadSeq) startStream(state.lastCursor);
  }

  async function older() {
    if (!state.next) return;
    const p = apiParams(["since", "until", "limit"]);
    p.set("before", state.next);
    $("#older").disabled = true;
    try {
      const page = await getJSON("/api/v1/logs?" + p.toString());
      for (const r of page.records) if (!state.byId.has(r.log_id)) tbody.appendChild(row(r));
      state.next = page.next;
    } catch (e) {
      showError("Could not load older records: " + e.message);
    }
    $("#older").disabled = false;
    afterRows();
  }

  function afterRows() {
    const n = state.byId.size;
    $("#empty").hidden = n > 0;
    $("#older").hidden = !state.next;
    const what = describe();
    $("#summary").textContent = count(n) + (n === 1 ? " record" : " records") + " shown, newest first" +
      (what ? " · " + what : "");
  }

  /** The filters in words, for the summary line. */
  function describe() {
    const v = viewParams();
    const parts = [];
    const names = { q: "message contains", level: "level", min_level: "level ≥", app: "application", host: "host", user: "user", where: "data" };
    for (const f of FILTERS) if (v.has(f)) parts.push(names[f] + " “" + v.get(f) + "”");
    if (v.has("until")) parts.push(utc(v.get("since")) + " – " + utc(v.get("until")) + " UTC");
    else if (/^\d+[smhd]$/.test(v.get("since"))) parts.push("last " + v.get("since"));
    else parts.push("since " + utc(v.get("since")) + " UTC");
    return parts.join(", ");
  }

  function showError(msg) {
    const e = $("#error");
    e.hidden = !msg;
    e.textContent = msg || "";
  }

  // ---- Rows ---------------------------------------------------------------------------------

  function levelBadge(level) {
    return el("span", { class: "level lvl-" + String(level || "").toLowerCase() }, level || "");
  }

  function row(r) {
    state.byId.set(r.log_id, r);
    const tr = el("tr", { "data-log-id": r.log_id, tabindex: "0", class: "rec" },
      el("td", { class: "c-time", title: "received " + r.ingest_date + (r.log_time ? "\nlogged " + r.log_time : "") }, utc(r.ingest_date)),
      el("td", { class: "c-level" }, levelBadge(r.levelname)),
      el("td", { class: "c-host" }, r.host || ""),
      el("td", { class: "c-app" }, r.application || ""),
      el("td", { class: "c-user" }, r.kasm_user_name || ""),
      el("td", { class: "c-msg" }, r.message || ""));
    tr.addEventListener("click", () => openDetail(r));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openDetail(r); });
    return tr;
  }

  // ---- One record: its data and its context -------------------------------------------------

  const FIELDS = [["log_id", "log_id"], ["ingest_date", "received"], ["log_time", "logged"],
    ["levelname", "level"], ["host", "host"], ["application", "application"],
    ["kasm_user_name", "user"], ["message", "message"]];

  async function openDetail(r) {
    state.current = r;
    state.context = null;
    const dlg = $("#detail");
    $("#detail-title").textContent = (r.levelname || "") + " · " + utc(r.ingest_date) + " UTC";
    const dl = clear($("#detail-fields"));
    for (const [k, label] of FIELDS) {
      if (r[k] === null || r[k] === undefined || r[k] === "") continue;
      dl.appendChild(el("dt", {}, label));
      dl.appendChild(el("dd", { "data-field": k }, k === "levelname" ? levelBadge(r[k]) : String(r[k])));
    }
    $("#detail-data").textContent = JSON.stringify(r.data, null, 2);
    const ctx = clear($("#detail-context tbody"));
    ctx.appendChild(el("tr", {}, el("td", { colspan: "4", class: "muted" }, "Loading the records around it…")));
    if (!dlg.open) dlg.showModal();
    try {
      const c = await getJSON("/api/v1/logs/" + encodeURIComponent(r.log_id) + "/context?n=5");
      if (state.current !== r) return;
      state.context = c;
      clear(ctx);
      const rows = [...(c.before || []).map(x => [x, "before"]), [c.record || r, "current"], ...(c.after || []).map(x => [x, "after"])];
      for (const [x, kind] of rows) {
        const tr = el("tr", { class: "ctx " + kind, "data-context-id": x.log_id, tabindex: "0" },
          el("td", { class: "c-time" }, utc(x.ingest_date)),
          el("td", { class: "c-level" }, levelBadge(x.levelname)),
          el("td", { class: "c-host" }, x.host || ""),
          el("td", { class: "c-msg" }, x.message || ""));
        if (kind !== "current") tr.addEventListener("click", () => openDetail(x));
        ctx.appendChild(tr);
      }
    } catch (e) {
      if (state.current !== r) return;
      clear(ctx).appendChild(el("tr", {}, el("td", { colspan: "4", class: "error" }, "No context: " + e.message)));
    }
  }

  function downloadCurrent() {
    const r = state.current;
    if (!r) return;
    const doc = { record: r, context: state.context };
    const blob = new Blob([JSON.stringify(doc, null, 2) + "\n"], { type: "application/json" });
    const a = el("a", { href: URL.createObjectURL(blob), download: "kasm-log-" + r.log_id + ".json" });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  // ---- Histogram and facets -----------------------------------------------------------------

  const BUCKETS = [[60, "1m"], [120, "2m"], [300, "5m"], [600, "10m"], [900, "15m"], [1800, "30m"],
    [3600, "1h"], [7200, "2h"], [10800, "3h"], [21600, "6h"], [43200, "12h"], [86400, "24h"]];

  function spanSeconds() {
    const v = viewParams();
    const since = v.get("since");
    const m = /^(\d+)([smhd])$/.exec(since);
    if (m) return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2]];
    const end = v.has("until") ? new Date(v.get("until")) : new Date();
    return Math.max(60, (end - new Date(since)) / 1000);
  }

  function bucketFor(span) {
    for (const [s, name] of BUCKETS) if (span / s <= 60) return [s, name];
    return BUCKETS[BUCKETS.length - 1];
  }

  async function loadVolume() {
    const [secs, bucket] = bucketFor(spanSeconds());
    const p = apiParams(["since", "until"]);
    p.set("bucket", bucket);
    const box = $("#histogram-chart");
    try {
      const v = await getJSON("/api/v1/logs/volume?" + p.toString());
      const bars = (v.buckets || []).map(b => {
        const start = new Date(b.start);
        return { start: start, end: new Date(start.getTime() + secs * 1000), counts: b.counts || {} };
      });
      const present = new Set();
      for (const b of bars) for (const k of Object.keys(b.counts)) present.add(k);
      const keys = [...LEVELS.filter(l => present.has(l)), ...[...present].filter(l => !LEVELS.includes(l))];
      const totals = {};
      for (const b of bars) for (const k of keys) totals[k] = (totals[k] || 0) + (b.counts[k] || 0);
      KASM.chartInto(box, (width) => KASM.stackedBars(bars, keys, LEVEL_COLORS, {
        label: "records per " + bucket + " by level", height: 120, width: width,
        onBar: (b) => zoomTo(b.start, b.end),
      }));
      clear($("#histogram-legend")).appendChild(KASM.legend(keys, LEVEL_COLORS, totals, (k) => facetClick("level", k)));
    } catch (e) {
      clear(box).appendChild(el("p", { class: "error" }, "No histogram: " + e.message));
    }
  }

  function zoomTo(start, end) {
    form.range.value = "custom";
    form.start.value = start.toISOString().slice(0, 19);
    form.end.value = end.toISOString().slice(0, 19);
    showCustom();
    load();
  }

  const FACETS = [["levels", "level", "Levels"], ["hosts", "host", "Hosts"],
    ["applications", "app", "Applications"], ["users", "user", "Users"]];
  const DATALISTS = { hosts: "#hosts", applications: "#apps", users: "#users" };

  async function loadFacets() {
    const box = $("#facet-lists");
    try {
      const f = await getJSON("/api/v1/logs/facets?" + apiParams(["since", "until"]).toString());
      clear(box);
      for (const [key, param, title] of FACETS) {
        const entries = Object.entries(f[key] || {});
        if (key === "levels") entries.sort((a, b) => LEVELS.indexOf(a[0]) - LEVELS.indexOf(b[0]));
        else entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
        const active = form.elements[param].value;
        const ul = el("ul", { class: "facet", "data-facet": param });
        for (const [value, n] of entries.slice(0, 12)) {
          const b = el("button", { type: "button", class: "facet-value" + (value === active ? " active" : ""),
            "data-facet": param, "data-value": value, "aria-pressed": value === active ? "true" : "false" },
          key === "levels" ? levelBadge(value) : el("span", { class: "v" }, value === "" ? "(none)" : value),
          el("span", { class: "n" }, count(n)));
          b.addEventListener("click", () => facetClick(param, value === active ? "" : value));
          ul.appendChild(el("li", {}, b));
        }
        if (!entries.length) ul.appendChild(el("li", { class: "muted" }, "none"));
        box.appendChild(el("section", {}, el("h3", {}, title), ul));
        if (DATALISTS[key]) {
          const dl = clear($(DATALISTS[key]));
          for (const [value] of entries.slice(0, 50)) dl.appendChild(el("option", { value: value }));
        }
      }
    } catch (e) {
      clear(box).appendChild(el("p", { class: "error" }, "No facets: " + e.message));
    }
  }

  function facetClick(param, value) {
    setField(param, value);
    load();
  }

  // ---- Live tail ----------------------------------------------------------------------------

  function startStream(after) {
    stopStream();
    const p = apiParams([]);
    if (after) p.set("after", after);
    const es = new EventSource("/api/v1/logs/stream?" + p.toString());
    state.es = es;
    setLiveState("connecting…");
    es.onopen = () => setLiveState("live");
    es.onerror = () => setLiveState(es.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    es.onmessage = (e) => {
      let r;
      try { r = JSON.parse(e.data); } catch (_) { return; }
      state.lastCursor = e.lastEventId || r.cursor || state.lastCursor;
      if (!r || !r.log_id || state.byId.has(r.log_id)) return;
      const tr = row(r);
      tr.classList.add("fresh");
      tbody.insertBefore(tr, tbody.firstChild);
      trimLive();
      afterRows();
    };
    clearInterval(state.refreshTimer);
    state.refreshTimer = setInterval(() => { if (!state.paused) { loadVolume(); loadFacets(); } }, 30000);
  }

  function stopStream() {
    if (state.es) state.es.close();
    state.es = null;
    clearInterval(state.refreshTimer);
    state.refreshTimer = null;
  }

  /** Keep at most MAX_LIVE_ROWS rows; the dropped ones are one "older" page away. */
  function trimLive() {
    const keep = Math.max(MAX_LIVE_ROWS, Number(form.limit.value) || 0);
    let dropped = false;
    while (tbody.rows.length > keep) {
      const last = tbody.lastElementChild;
      state.byId.delete(last.getAttribute("data-log-id"));
      last.remove();
      dropped = true;
    }
    if (dropped) {
      const last = state.byId.get(tbody.lastElementChild.getAttribute("data-log-id"));
      state.next = last ? last.cursor : state.next;
    }
  }

  function setLiveState(text) {
    $("#live-state").textContent = state.live ? (state.paused ? "paused" : text) : "";
    $("#live-state").setAttribute("data-state", state.live ? (state.paused ? "paused" : text) : "off");
  }

  function showLiveButtons() {
    $("#live").setAttribute("aria-pressed", state.live ? "true" : "false");
    $("#live").textContent = state.live ? "Live: on" : "Live";
    $("#pause").hidden = !state.live;
    $("#pause").textContent = state.paused ? "Resume" : "Pause";
    $("#pause").setAttribute("aria-pressed", state.paused ? "true" : "false");
    document.body.classList.toggle("is-live", state.live);
  }

  function toggleLive() {
    state.live = !state.live;
    state.paused = false;
    showLiveButtons();
    writeUrl();
    if (state.live) startStream(state.lastCursor || state.tail);
    else { stopStream(); setLiveState(""); }
  }

  function togglePause() {
    if (!state.live) return;
    state.paused = !state.paused;
    if (state.paused) {
      // Closed, not just hidden: the server holds nothing for us. The last cursor is kept.
      stopStream();
      setLiveState("paused");
    } else {
      startStream(state.lastCursor || state.tail);
    }
    showLiveButtons();
  }

  // ---- Wiring -------------------------------------------------------------------------------

  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  for (const name of ["level", "min_level", "limit"]) form.elements[name].addEventListener("change", () => load());
  form.range.addEventListener("change", () => { showCustom(); if (form.range.value !== "custom") load(); });
  $("#reset").addEventListener("click", () => {
    for (const f of FILTERS) setField(f, "");
    form.range.value = DEFAULT_SPAN;
    form.limit.value = "100";
    showCustom();
    load();
  });
  $("#older").addEventListener("click", older);
  $("#more-filters").addEventListener("click", () => { form.classList.toggle("expanded"); showMore(); });
  $("#live").addEventListener("click", toggleLive);
  $("#pause").addEventListener("click", togglePause);
  $("#detail-close").addEventListener("click", () => $("#detail").close());
  $("#detail-download").addEventListener("click", downloadCurrent);

  fromUrl();
  showLiveButtons();
  load();
})();
