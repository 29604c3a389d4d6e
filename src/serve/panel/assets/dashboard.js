// kasm-db dashboard (/): the last 24 hours of logs by level and application, errors per host,
// Kasm's metric records, the database size against its sizing tier and the backups' state,
// from GET /api/v1/dashboard, refreshed every 45 seconds. Text only (KASM.el), no HTML.
"use strict";

(function () {
  const { el, clear, getJSON, utc, count, bytes, ago, LEVELS, LEVEL_COLORS, PALETTE } = KASM;
  const $ = (sel) => document.querySelector(sel);
  const REFRESH_MS = 45000;
  const TOP_APPS = 8;
  const HOUR = 3600 * 1000;

  function perHour(v) {
    return v >= 10 ? count(Math.round(v)) : v.toLocaleString("en-US", { maximumFractionDigits: 1 });
  }

  function logsLink(params) {
    const p = new URLSearchParams(params);
    if (!p.has("since")) p.set("since", "24h");
    return "/logs?" + p.toString();
  }

  /** The window's hours, oldest first, each {start, end, counts: {}}. */
  function hours(since, until) {
    const out = [];
    let t = Math.floor(new Date(since).getTime() / HOUR) * HOUR;
    const end = new Date(until).getTime();
    while (t <= end) {
      out.push({ start: new Date(t), end: new Date(t + HOUR), counts: {} });
      t += HOUR;
    }
    return out;
  }

  function bucketOf(bars, t) {
    const first = bars.length ? bars[0].start.getTime() : 0;
    return bars[Math.floor((new Date(t).getTime() - first) / HOUR)];
  }

  function drawVolume(d) {
    const byLevel = hours(d.since, d.generated_at), byApp = hours(d.since, d.generated_at);
    const appTotals = {}, levelTotals = {};
    let total = 0, errors = 0;
    for (const v of d.volume || []) {
      appTotals[v.application] = (appTotals[v.application] || 0) + v.count;
      levelTotals[v.level] = (levelTotals[v.level] || 0) + v.count;
      total += v.count;
      if (v.level === "ERROR" || v.level === "CRITICAL") errors += v.count;
    }
    const apps = Object.keys(appTotals).sort((a, b) => appTotals[b] - appTotals[a] || a.localeCompare(b));
    const shown = apps.slice(0, TOP_APPS);
    const other = apps.length > TOP_APPS ? "other" : null;
    for (const v of d.volume || []) {
      const lb = bucketOf(byLevel, v.hour), ab = bucketOf(byApp, v.hour);
      if (lb) lb.counts[v.level] = (lb.counts[v.level] || 0) + v.count;
      const key = shown.includes(v.application) ? v.application : other;
      if (ab && key !== null) ab.counts[key] = (ab.counts[key] || 0) + v.count;
    }
    const levels = [...LEVELS.filter(l => levelTotals[l]), ...Object.keys(levelTotals).filter(l => !LEVELS.includes(l))];
    KASM.chartInto($("#by-level"), (width) => KASM.stackedBars(byLevel, levels, LEVEL_COLORS,
      { label: "records per hour by level", height: 170, width: width }));
    clear($("#by-level-legend")).appendChild(KASM.legend(levels, LEVEL_COLORS, levelTotals,
      (k) => { window.location.href = logsLink({ level: k }); }));
    const keys = other ? [...shown, other] : shown;
    const colors = {};
    keys.forEach((k, i) => { colors[k] = PALETTE[i % PALETTE.length]; });
    if (other) { colors[other] = "#94a3b8"; appTotals[other] = apps.slice(TOP_APPS).reduce((s, a) => s + appTotals[a], 0); }
    KASM.chartInto($("#by-app"), (width) => KASM.stackedBars(byApp, keys, colors,
      { label: "records per hour by application", height: 170, width: width }));
    clear($("#by-app-legend")).appendChild(KASM.legend(keys, colors, appTotals,
      (k) => { if (k !== other) window.location.href = logsLink({ app: k }); }));
    $("#records-total").textContent = count(total);
    $("#records-errors").textContent = count(errors) + " ERROR or CRITICAL";
    $("#records-errors").classList.toggle("bad", errors > 0);
  }

  function drawErrors(d) {
    const items = (d.errors_per_host || []).map(e => ({ label: e.host, value: e.count, color: LEVEL_COLORS.ERROR }));
    clear($("#errors")).appendChild(KASM.hbars(items, {
      empty: "no ERROR or CRITICAL record in 24 h",
      onItem: (it) => { window.location.href = logsLink({ host: it.label, min_level: "ERROR" }); },
    }));
  }

  function drawMetrics(d) {
    const box = clear($("#metrics"));
    const byName = new Map();
    for (const m of d.metrics || []) {
      if (!byName.has(m.name)) byName.set(m.name, []);
      byName.get(m.name).push(m);
    }
    if (!byName.size) {
      box.appendChild(el("p", { class: "muted" }, "No record carried a metric_name in the last 24 hours."));
      return;
    }
    const names = [...byName.keys()].sort((a, b) =>
      byName.get(b).reduce((s, m) => s + m.count, 0) - byName.get(a).reduce((s, m) => s + m.count, 0));
    for (const name of names.slice(0, 6)) {
      const rows = byName.get(name);
      const bars = hours(d.since, d.generated_at);
      let total = 0, weighted = 0, valued = 0;
      for (const m of rows) {
        const b = bucketOf(bars, m.hour);
        if (b) b.counts.n = (b.counts.n || 0) + m.count;
        total += m.count;
        if (m.mean_value !== null && m.mean_value !== undefined) { weighted += m.mean_value * m.count; valued += m.count; }
      }
      const mean = valued ? " · mean value " + (weighted / valued).toLocaleString("en-US", { maximumFractionDigits: 2 }) : "";
      const chart = el("div", { class: "chart-box" });
      box.appendChild(el("div", { class: "metric", "data-metric": name },
        el("h3", {}, el("code", {}, name), el("span", { class: "muted" }, " " + count(total) + " in 24 h, " +
          perHour(total / Math.max(1, bars.length)) + " per hour on average" + mean)), chart));
      KASM.chartInto(chart, (width) => KASM.stackedBars(bars, ["n"], { n: "#10b981" },
        { label: name + " per hour", height: 80, width: width }));
    }
  }

  function drawSize(d) {
    const s = d.size || {};
    const adv = clear($("#advice"));
    if (s.error) {
      $("#size-db").textContent = bytes(d.current && d.current.database_bytes);
      $("#size-tier").textContent = s.error;
      return;
    }
    $("#size-db").textContent = bytes(s.database_bytes);
    const meter = $("#size-meter");
    if (s.tier) {
      const disk = s.tier.disk_gb * 1e9;
      const pct = Math.min(100, 100 * s.database_bytes / disk);
      meter.style.width = pct.toFixed(1) + "%";
      meter.parentElement.hidden = false;
      $("#size-tier").textContent = "of " + s.tier.disk_gb + " GB for up to " + s.tier.sessions_max + " sessions (" +
        s.tier.cpus + " CPUs, " + s.tier.ram_gb + " GB RAM) · logs " + bytes(s.logs_bytes) + ", " + count(s.logs_rows) + " rows";
    } else {
      meter.parentElement.hidden = true;
      $("#size-tier").textContent = "logs " + bytes(s.logs_bytes) + ", " + count(s.logs_rows) +
        " rows · set sizing.sessions to compare with a tier";
    }
    const status = $("#size-status");
    status.textContent = "status: " + (s.status || "unknown");
    status.setAttribute("data-status", s.status || "unknown");
    meter.setAttribute("data-status", s.status || "unknown");
    for (const a of [...(s.warnings || []), ...(s.advice || [])]) adv.appendChild(el("li", {}, a));
    if (!adv.firstChild) adv.appendChild(el("li", { class: "muted" }, "Nothing to advise."));
  }

  function drawBackups(d) {
    const box = clear($("#backups"));
    if (!d.backups) {
      box.appendChild(el("p", { class: "muted" }, "No backup target configured (backup.to)."));
      return;
    }
    for (const t of d.backups) {
      const v = t.verdict;
      const ok = v ? v.ok : null;
      const head = el("p", { class: "status", "data-status": ok === null ? "unknown" : ok ? "ok" : "exceeded" },
        ok === null ? "UNKNOWN" : ok ? "OK" : "CRITICAL");
      const lines = [];
      if (!v) lines.push(t.error || "cannot read the backups");
      else {
        lines.push(count(v.count) + (v.count === 1 ? " backup" : " backups") +
          (v.newest_age_s !== null && v.newest_age_s !== undefined ? ", newest " + ago(v.newest_age_s) + " old" : ""));
        const lv = v.last_verification;
        lines.push(lv ? "last verification " + (lv.ok ? "passed " : "FAILED ") + ago(lv.age_s) + " ago (" + lv.check + ")" : "never verified");
        for (const r of v.reasons || []) lines.push(r);
      }
      box.appendChild(el("div", { class: "target" }, head, el("p", { class: "target-name" }, el("code", {}, t.target)),
        el("ul", {}, lines.map(l => el("li", {}, l)))));
    }
  }

  async function refresh() {
    try {
      const d = await getJSON("/api/v1/dashboard");
      $("#error").hidden = true;
      drawVolume(d);
      drawErrors(d);
      drawMetrics(d);
      drawSize(d);
      drawBackups(d);
      $("#updated").textContent = "Last 24 hours up to " + utc(d.generated_at) + " UTC · refreshes every " +
        REFRESH_MS / 1000 + " s";
      document.body.setAttribute("data-loaded", "yes");
    } catch (e) {
      $("#error").hidden = false;
      $("#error").textContent = "Could not load the dashboard: " + e.message;
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
