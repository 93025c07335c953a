// Sluice console: the live parts of the server-rendered pages. Hand-written, no libraries.
// - hub overview: polls /console/api/overview and shows the ingest rate between two polls;
// - topic page: samples records from a cursor, and in follow mode keeps polling from the last
//   cursor;
// - connector page: polls the connector's status, refreshes its table and draws each shard's
//   lag over time as an inline SVG chart.
"use strict";

(function () {
  const POLL_MS = 2000;
  const FOLLOW_MS = 1000;
  const MAX_ROWS = 500;
  const CHART_POINTS = 60;

  function $(id) { return document.getElementById(id); }

  async function getJson(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    if (!r.ok) { throw new Error(body.code ? body.code + ": " + body.error : body.error); }
    return body;
  }

  function text(el, value) { if (el) { el.textContent = String(value); } }

  function formatBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n, u = 0;
    while (v >= 1024 && u + 1 < units.length) { v /= 1024; u += 1; }
    return u === 0 ? n + " B" : v.toFixed(1) + " " + units[u];
  }

  function formatTime(ms) { return ms > 0 ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : "-"; }

  // Hub overview.
  function overview(section) {
    let last = null;
    async function tick() {
      try {
        const t = await getJson(section.dataset.poll);
        text($("stat-projects"), t.projects);
        text($("stat-topics"), t.topics);
        text($("stat-records"), t.records);
        text($("stat-storage"), formatBytes(t.bytes));
        if (last && t.time_ms > last.time_ms) {
          const rate = (t.records - last.records) * 1000 / (t.time_ms - last.time_ms);
          text($("stat-ingest"), rate.toFixed(1) + " records/s");
        }
        last = t;
      } catch (e) { text($("stat-ingest"), "unavailable: " + e.message); }
    }
    tick();
    setInterval(tick, POLL_MS);
  }

  // Record sampling and follow mode.
  function sampler(form) {
    const tbody = $("records").querySelector("tbody");
    const status = $("sample-status");
    let cursor = null, timer = null, busy = false;

    function addRows(records) {
      for (const rec of records) {
        const tr = document.createElement("tr");
        tr.className = "record";
        for (const cell of [rec.sequence, formatTime(rec.system_time)].concat(rec.values)) {
          const td = document.createElement("td");
          td.textContent = cell === null ? "null" : String(cell);
          tr.appendChild(td);
        }
        tbody.appendChild(tr);
      }
      while (tbody.rows.length > MAX_ROWS) { tbody.deleteRow(0); }
    }

    async function fetchMore(params) {
      if (busy) { return; }
      busy = true;
      try {
        const q = new URLSearchParams(params);
        const page = await getJson(form.dataset.api + "?" + q.toString());
        addRows(page.records);
        cursor = page.next_cursor;
        text(status, tbody.rows.length + " record(s) shown; shard's latest sequence " + page.latest_sequence +
          ($("follow").checked ? " · following" : ""));
      } catch (e) {
        text(status, "Sampling failed: " + e.message);
        stopFollow();
      } finally { busy = false; }
    }

    function shard() { return $("sample-shard").value; }
    function stopFollow() { if (timer) { clearInterval(timer); timer = null; } }
    function startFollow() {
      stopFollow();
      timer = setInterval(() => { if (cursor) { fetchMore({ shard: shard(), cursor: cursor }); } }, FOLLOW_MS);
    }

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      tbody.replaceChildren();
      cursor = null;
      fetchMore({ shard: shard(), kind: $("sample-kind").value, value: $("sample-value").value })
        .then(() => { if ($("follow").checked) { startFollow(); } });
    });
    $("follow").addEventListener("change", (ev) => {
      if (ev.target.checked && cursor) { startFollow(); } else if (!ev.target.checked) { stopFollow(); }
    });
  }

  // Connector status and lag chart.
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];

  function drawChart(svg, history) {
    const ns = "http://www.w3.org/2000/svg";
    const w = 640, h = 160, pad = 28;
    svg.replaceChildren();
    let max = 1, t0 = Infinity, t1 = -Infinity;
    for (const points of history.values()) {
      for (const [t, lag] of points) { max = Math.max(max, lag); t0 = Math.min(t0, t); t1 = Math.max(t1, t); }
    }
    const span = Math.max(1, t1 - t0);
    const axis = document.createElementNS(ns, "path");
    axis.setAttribute("d", `M${pad},4 V${h - pad} H${w - 4}`);
    axis.setAttribute("class", "axis");
    svg.appendChild(axis);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", 12);
    label.textContent = String(max);
    svg.appendChild(label);
    const legend = [];
    let i = 0;
    for (const [shard, points] of history) {
      const color = COLORS[i++ % COLORS.length];
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", color);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("class", "lag-line");
      line.dataset.shard = shard;
      line.setAttribute("points", points.map(([t, lag]) => {
        const x = pad + (t - t0) * (w - pad - 8) / span;
        const y = (h - pad - 2) - lag * (h - pad - 10) / max; // lag 0 just above the axis
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" "));
      svg.appendChild(line);
      legend.push(`shard ${shard}: ${points.length ? points[points.length - 1][1] : 0}`);
    }
    text($("lag-legend"), "lag in records, last " + CHART_POINTS + " polls · " + legend.join(" · "));
  }

  function connector(section) {
    const history = new Map();
    const tbody = $("progress").querySelector("tbody");
    async function tick() {
      let s;
      try { s = await getJson(section.dataset.poll); } catch (e) { text($("lag-legend"), "status unavailable: " + e.message); return; }
      text($("connector-state"), s.state);
      text($("done-time"), s.done_time > 0 ? new Date(s.done_time).toUTCString() : "-");
      tbody.replaceChildren();
      for (const sh of s.shards) {
        const tr = document.createElement("tr");
        tr.dataset.shard = sh.shard;
        const cells = [["", sh.shard], ["state", sh.state], ["position", sh.position], ["end", sh.end],
          ["lag", sh.lag], ["", sh.lag_seconds], ["", sh.done_time > 0 ? new Date(sh.done_time).toUTCString() : "-"],
          ["discards", sh.discards], ["last-error", sh.last_error]];
        for (const [cls, v] of cells) {
          const td = document.createElement("td");
          if (cls) { td.className = cls; }
          td.textContent = String(v);
          tr.appendChild(td);
        }
        tbody.appendChild(tr);
        const points = history.get(sh.shard) || [];
        points.push([s.time_ms, sh.lag]);
        while (points.length > CHART_POINTS) { points.shift(); }
        history.set(sh.shard, points);
      }
      drawChart($("lag-chart"), history);
    }
    tick();
    setInterval(tick, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const hub = $("hub-stats");
    if (hub) { overview(hub); }
    const form = $("sample-form");
    if (form) { sampler(form); }
    const summary = $("connector-summary");
    if (summary) { connector(summary); }
  });
})();
