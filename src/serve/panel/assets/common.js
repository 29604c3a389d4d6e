// kasm-db panel: helpers shared by the logging panel and the dashboard.
// Every piece of data reaches the page through textContent or an attribute set with
// setAttribute: never as HTML. No framework, no build step, nothing fetched from elsewhere.
"use strict";

const KASM = (function () {
  const SVG = "http://www.w3.org/2000/svg";
  const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
  const LEVEL_COLORS = {
    DEBUG: "#94a3b8",
    INFO: "#3b82f6",
    WARNING: "#f59e0b",
    ERROR: "#ef4444",
    CRITICAL: "#a21caf",
  };
  const PALETTE = ["#3b82f6", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6",
    "#06b6d4", "#f97316", "#84cc16", "#ec4899", "#64748b"];

  /** An element: el("td", {class: "x", "data-log-id": id}, "text", child, ...). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  /** An SVG element, the same way. */
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      e.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(e, children) {
    for (const c of children) {
      if (c === null || c === undefined) continue;
      if (Array.isArray(c)) append(e, c);
      else if (c instanceof Node) e.appendChild(c);
      else e.appendChild(document.createTextNode(String(c)));
    }
  }

  /** Remove every child of `e`. */
  function clear(e) {
    while (e.firstChild) e.removeChild(e.firstChild);
    return e;
  }

  /** GET `url` as JSON with the session cookie; a 401 sends the page to the sign-in form. */
  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) {
      window.location.reload();
      throw new Error("signed out");
    }
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const msg = body && typeof body.error === "string" ? body.error : r.status + " " + r.statusText;
      throw new Error(msg);
    }
    return body;
  }

  const pad = (n, w) => String(n).padStart(w || 2, "0");

  /** "2026-12-07 08:32:36" in UTC, from an RFC 3339 string or a Date. */
  function utc(t) {
    const d = t instanceof Date ? t : new Date(t);
    if (isNaN(d)) return "";
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  /** "08:32" or "12-07 08:32" for an axis label. */
  function shortTime(d, withDay) {
    const hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return withDay ? pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " + hm : hm;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "kB", "MB", "GB", "TB"];
    let v = Number(n), i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function count(n) {
    return Number(n || 0).toLocaleString("en-US");
  }

  /** Seconds as "3d 4h", "26h", "5m". */
  function ago(s) {
    s = Math.max(0, Math.round(s));
    if (s >= 3 * 86400) return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
    if (s >= 3600) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    if (s >= 60) return Math.floor(s / 60) + "m";
    return s + "s";
  }

  /** A round upper bound for an axis. */
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /**
   * A stacked bar chart as an SVG element: `bars` is [{start: Date, end: Date, counts: {key: n}}],
   * `keys` the stacking order, `colors` key -> color. `onBar(bar)` (optional) makes bars clickable.
   */
  function stackedBars(bars, keys, colors, opts) {
    opts = opts || {};
    const W = opts.width || 1000, H = opts.height || 160;
    const left = 44, right = 8, top = 8, bottom = 22;
    const iw = W - left - right, ih = H - top - bottom;
    const totals = bars.map(b => keys.reduce((s, k) => s + (b.counts[k] || 0), 0));
    const max = niceMax(Math.max(0, ...totals));
    const root = svg("svg", {
      viewBox: "0 0 " + W + " " + H, class: "chart", role: "img",
      "aria-label": opts.label || "bar chart", "data-bars": bars.length,
    });
    // Grid and value axis.
    for (const f of [0, 0.5, 1]) {
      if (!Number.isInteger(max * f)) continue; // no "1, 1, 0" on a small axis
      const y = top + ih - f * ih;
      root.appendChild(svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, class: "axis", "text-anchor": "end" },
        count(max * f)));
    }
    const n = Math.max(1, bars.length);
    const slot = iw / n, bw = Math.max(1, slot * 0.8);
    const spanDays = bars.length > 1 ? (bars[bars.length - 1].start - bars[0].start) / 86400000 : 0;
    const labels = opts.labels || Math.max(2, Math.floor(iw / (spanDays >= 1 ? 110 : 70)));
    const labelEvery = Math.max(1, Math.ceil(n / labels));
    bars.forEach((b, i) => {
      const x = left + i * slot + (slot - bw) / 2;
      let y = top + ih;
      const g = svg("g", { class: "bar" });
      for (const k of keys) {
        const v = b.counts[k] || 0;
        if (!v) continue;
        const h = (v / max) * ih;
        y -= h;
        g.appendChild(svg("rect", { x: x, y: y, width: bw, height: Math.max(h, 0.5), fill: colors[k] || "#64748b" }));
      }
      const tip = utc(b.start) + " UTC: " + count(totals[i]) +
        keys.filter(k => b.counts[k]).map(k => "\n" + k + " " + count(b.counts[k])).join("");
      // A full-height hit area carries the tooltip and the click.
      g.appendChild(svg("rect", { x: left + i * slot, y: top, width: slot, height: ih, class: "hit" },
        svg("title", {}, tip)));
      if (opts.onBar) {
        g.classList.add("clickable");
        g.addEventListener("click", () => opts.onBar(b));
      }
      root.appendChild(g);
      if (i % labelEvery === 0) {
        root.appendChild(svg("text", { x: left + i * slot + slot / 2, y: H - 6, class: "axis", "text-anchor": "middle" },
          shortTime(b.start, spanDays >= 1)));
      }
    });
    if (!bars.length) {
      root.appendChild(svg("text", { x: W / 2, y: H / 2, class: "empty", "text-anchor": "middle" }, "no records"));
    }
    return root;
  }

  /** Charts drawn at their box's width in pixels (text keeps its size), redrawn on resize. */
  const charts = new Map();
  function chartInto(box, make) {
    charts.set(box, make);
    clear(box).appendChild(make(Math.max(240, Math.round(box.clientWidth || 1000))));
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { for (const [box, make] of charts) if (box.isConnected) chartInto(box, make); }, 150);
  });

  /** A legend: [key, color] pairs, each with its total when given. */
  function legend(keys, colors, totals, onKey) {
    const ul = el("ul", { class: "legend" });
    for (const k of keys) {
      const label = (k === "" ? "(none)" : k) + (totals ? " " + count(totals[k] || 0) : "");
      const swatch = el("i", { class: "swatch", "data-color": colors[k] });
      swatch.style.background = colors[k];
      const item = onKey
        ? el("li", {}, el("button", { type: "button", class: "linklike", "data-key": k }, swatch, label))
        : el("li", {}, swatch, label);
      if (onKey) item.firstChild.addEventListener("click", () => onKey(k));
      ul.appendChild(item);
    }
    return ul;
  }

  /** Horizontal bars: items [{label, value, color?}] largest first. */
  function hbars(items, opts) {
    opts = opts || {};
    const max = Math.max(1, ...items.map(i => i.value));
    const list = el("ol", { class: "hbars" });
    for (const it of items) {
      const fill = el("span", { class: "fill" });
      fill.style.width = (100 * it.value / max).toFixed(1) + "%";
      if (it.color) fill.style.background = it.color;
      const name = it.label === "" ? "(none)" : it.label;
      const label = opts.onItem
        ? el("button", { type: "button", class: "linklike name", title: name }, name)
        : el("span", { class: "name", title: name }, name);
      if (opts.onItem) label.addEventListener("click", () => opts.onItem(it));
      list.appendChild(el("li", {}, label, el("span", { class: "track" }, fill), el("span", { class: "value" }, count(it.value))));
    }
    if (!items.length) list.appendChild(el("li", { class: "empty" }, opts.empty || "nothing"));
    return list;
  }

  return { LEVELS, LEVEL_COLORS, PALETTE, el, svg, clear, getJSON, utc, shortTime, bytes, count, ago, stackedBars, chartInto, legend, hbars };
})();
