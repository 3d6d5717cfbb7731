// Small SVG charts: a sparkline of durations, a duration bar chart, a timeline
// of executions, and a workflow's jobs as a graph. Colours come from the
// stylesheet (`.st-<status>`), so the charts follow the theme.

import { h, svg } from "./dom.js";
import { durationMs, execMs, time } from "./format.js";

// `execs` newest first (as the API lists them); drawn oldest to newest.
export function sparkline(execs, width = 120, height = 28) {
  const points = execs
    .slice()
    .reverse()
    .map((e) => ({ e, ms: execMs(e) }))
    .filter((p) => p.ms !== null);
  const box = svg("svg", { class: "spark", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  if (points.length === 0) {
    box.append(svg("text", { x: 2, y: height / 2 + 4, class: "muted-fill" }, "no runs yet"));
    return box;
  }
  const max = Math.max(...points.map((p) => p.ms), 1);
  const dx = points.length > 1 ? (width - 6) / (points.length - 1) : 0;
  const xy = points.map((p, i) => [3 + i * dx, height - 3 - (p.ms / max) * (height - 6)]);
  box.append(svg("title", {}, `durations of the last ${points.length} runs (longest ${durationMs(max)})`));
  box.append(svg("polyline", { class: "spark-line", points: xy.map((p) => p.join(",")).join(" ") }));
  points.forEach((p, i) => box.append(svg("circle", { class: `st st-${p.e.status}`, cx: xy[i][0], cy: xy[i][1], r: 2.2 })));
  return box;
}

// Bars of each run's duration, coloured by status; `execs` newest first. The
// bars are placed in percent of the width, so the chart fills its box on any
// screen while its text keeps its size.
export function durationChart(execs, height = 120) {
  const runs = execs.slice().reverse();
  const slots = Math.max(runs.length, 30);
  const longest = Math.max(...runs.map((e) => execMs(e) || 0));
  const max = Math.max(longest, 1);
  const box = svg("svg", { class: "chart", width: "100%", height: height + 16, role: "img" });
  box.append(svg("title", {}, `run durations, longest ${durationMs(max)}`));
  box.append(svg("line", { x1: 0, x2: "100%", y1: height, y2: height, class: "axis" }));
  runs.forEach((e, i) => {
    const ms = execMs(e);
    const bar = ms === null ? 2 : Math.max((ms / max) * (height - 4), 2);
    box.append(
      svg(
        "rect",
        { class: `st st-${e.status}`, x: `${(100 * i) / slots}%`, y: height - bar, width: `${80 / slots}%`, height: bar },
        svg("title", {}, `${e.status} · ${durationMs(ms)} · ${time(e.scheduled_at)}`),
      ),
    );
  });
  box.append(svg("text", { x: 0, y: height + 13, class: "muted-fill" }, `longest ${durationMs(longest)}; oldest left`));
  return box;
}

// One square per execution, oldest left, each a link to it; retries marked.
export function timeline(execs) {
  return h(
    "div",
    { class: "timeline" },
    execs
      .slice()
      .reverse()
      .map((e) =>
        h(
          "a",
          {
            class: `tick st st-${e.status}${e.attempt > 1 ? " retried" : ""}`,
            href: `#/executions/${e.id}`,
            title: `${e.status} · ${time(e.scheduled_at)} · ${e.trigger}${e.attempt > 1 ? ` · attempt ${e.attempt}` : ""}`,
            dataset: { id: e.id, status: e.status },
          },
          e.attempt > 1 ? String(e.attempt) : "",
        ),
      ),
  );
}

export function legend(statuses) {
  return h(
    "div",
    { class: "legend" },
    statuses.map((s) => h("span", {}, h("i", { class: `st st-${s}` }), s.replace("_", " "))),
  );
}

// A workflow's jobs laid out by depth (a job sits one column right of the
// deepest job it needs), edges from each need to the job.
// `jobs`: {name: {needs: [..]}}; `status(name)` its status; `href(name)` a link or null.
export function dag(jobs, status, href) {
  const names = Object.keys(jobs).sort();
  const depth = {};
  const visit = (n, seen = new Set()) => {
    if (depth[n] !== undefined) return depth[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    const needs = (jobs[n] && jobs[n].needs) || [];
    depth[n] = needs.length ? Math.max(...needs.map((m) => (jobs[m] ? visit(m, seen) + 1 : 0))) : 0;
    return depth[n];
  };
  names.forEach((n) => visit(n));
  const columns = [];
  names.forEach((n) => (columns[depth[n]] = columns[depth[n]] || []).push(n));
  const W = 150, H = 40, GX = 50, GY = 16;
  const pos = {};
  columns.forEach((col, c) => col.forEach((n, r) => (pos[n] = { x: 8 + c * (W + GX), y: 8 + r * (H + GY) })));
  const width = 16 + columns.length * (W + GX) - GX;
  const height = 16 + Math.max(...columns.map((c) => c.length)) * (H + GY) - GY;
  const box = svg("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  for (const n of names) {
    for (const m of (jobs[n] && jobs[n].needs) || []) {
      if (!pos[m]) continue;
      const a = pos[m], b = pos[n];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      box.append(svg("path", { class: "edge", d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
    }
  }
  for (const n of names) {
    const st = status(n) || "none";
    const g = svg("g", { class: "node", dataset: { job: n, status: st } },
      svg("rect", { class: `st st-${st}`, x: pos[n].x, y: pos[n].y, width: W, height: H, rx: 6 }),
      svg("text", { x: pos[n].x + 8, y: pos[n].y + 17, class: "node-name" }, n.length > 20 ? n.slice(0, 19) + "…" : n),
      svg("text", { x: pos[n].x + 8, y: pos[n].y + 32, class: "node-status" }, st === "none" ? "not run" : st.replace("_", " ")),
      svg("title", {}, `${n}: ${st}`));
    const link = href(n);
    box.append(link ? svg("a", { href: link }, g) : g);
  }
  return h("div", { class: "dag-wrap" }, box);
}
