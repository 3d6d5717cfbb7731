// Jobs: name, schedule in words, next run, last status and a sparkline of recent
// durations, with a filter box and (for operators) run, pause and resume.

import { all, api, can, enc } from "../api.js";
import { chip, coalesce, errorBox, h, replace, table, toast } from "../dom.js";
import { sparkline } from "../charts.js";
import { ago, scheduleWords, time } from "../format.js";

const HISTORY = 20;

// Buttons shared with the job page. `after(job view)` is called with the answer.
export function jobActions(job, after) {
  if (!can("operator")) return null;
  const run = h("button", {
    type: "button",
    class: "primary",
    dataset: { action: "run", job: job.name },
    onclick: async () => {
      try {
        const e = await api(`/v1/jobs/${enc(job.name)}/run`, { method: "POST" });
        toast(`Started ${job.name}: `, "ok", h("a", { href: `#/executions/${e.id}`, dataset: { execution: e.id } }, `execution ${e.id}`));
      } catch (err) {
        toast(`Run ${job.name}: ${err.message}`, "bad");
      }
    },
  }, "Run now");
  const verb = job.paused ? "resume" : "pause";
  const toggle = h("button", {
    type: "button",
    dataset: { action: verb, job: job.name },
    onclick: async () => {
      try {
        after(await api(`/v1/jobs/${enc(job.name)}/${verb}`, { method: "POST" }));
      } catch (err) {
        toast(`${verb} ${job.name}: ${err.message}`, "bad");
      }
    },
  }, job.paused ? "Resume" : "Pause");
  return h("span", { class: "actions" }, run, toggle);
}

export function jobsPage({ main }) {
  const jobs = new Map(); // name -> {job, history}
  const query = h("input", { type: "search", id: "filter", placeholder: "Filter by name, description or tag", "aria-label": "filter jobs" });
  const status = h("select", { id: "status-filter", "aria-label": "status" },
    ["all", "failing", "running", "paused"].map((s) => h("option", { value: s, text: s })));
  const body = h("div", { id: "jobs" }, h("p", { class: "muted", text: "Loading jobs…" }));
  main.append(h("div", { class: "page-head" }, h("h1", { text: "Jobs" }), h("div", { class: "toolbar" }, query, status)), body);
  query.addEventListener("input", draw);
  status.addEventListener("change", draw);
  const controller = new AbortController();
  const signal = controller.signal;

  function matches(j) {
    const q = query.value.trim().toLowerCase();
    const text = [j.name, j.description || "", ...Object.entries(j.tags || {}).map(([k, v]) => `${k}=${v}`)].join(" ").toLowerCase();
    if (q && !text.includes(q)) return false;
    const last = j.last_execution && j.last_execution.status;
    if (status.value === "failing") return ["failed", "timed_out", "lost"].includes(last);
    if (status.value === "running") return last === "running" || last === "queued";
    if (status.value === "paused") return !!j.paused;
    return true;
  }

  function draw() {
    const shown = [...jobs.values()].filter((r) => matches(r.job));
    if (jobs.size === 0) {
      replace(body, h("p", { class: "empty" }, "No jobs yet. Apply one with ", h("code", { text: "rota job apply -f job.toml" }), "."));
      return;
    }
    const rows = shown.map(({ job, history }) => ({
      attrs: { dataset: { job: job.name } },
      cells: [
        h("div", {},
          h("a", { href: `#/jobs/${enc(job.name)}`, class: "name" }, job.name),
          job.paused ? h("span", { class: "badge paused", text: "paused" }) : null,
          job.description ? h("div", { class: "muted small clamp", text: job.description }) : null),
        scheduleWords(job.schedule),
        h("span", { title: time(job.next_run_at) }, job.next_run_at ? ago(job.next_run_at) : "—"),
        job.last_execution ? h("a", { href: `#/executions/${job.last_execution.id}` }, chip(job.last_execution.status)) : chip(null, "never ran"),
        history ? sparkline(history) : h("span", { class: "muted", text: "…" }),
        ...(can("operator") ? [jobActions(job, (view) => refreshJob(view.name))] : []),
      ],
    }));
    replace(body, table(["Job", "Schedule", "Next run", "Last", "Recent durations", ...(can("operator") ? ["Actions"] : [])], rows, { class: "jobs" }),
      shown.length < jobs.size ? h("p", { class: "muted", text: `${jobs.size - shown.length} of ${jobs.size} jobs hidden by the filter` }) : null);
  }

  async function history(name) {
    const page = await api(`/v1/jobs/${enc(name)}/executions?limit=${HISTORY}`, { signal });
    return page.items;
  }

  async function refreshJob(name) {
    try {
      const [job, hist] = await Promise.all([api(`/v1/jobs/${enc(name)}`, { signal }), history(name)]);
      jobs.set(name, { job, history: hist });
    } catch (e) {
      if (e.status === 404) jobs.delete(name);
      else if (e.name !== "AbortError") throw e;
    }
    draw();
  }

  const reload = coalesce(async () => {
    try {
      const list = await all("/v1/jobs?last_execution=true&limit=1000", { signal });
      const old = new Map(jobs);
      jobs.clear();
      for (const job of list) jobs.set(job.name, { job, history: old.get(job.name)?.history || null });
      draw();
      // Histories a few at a time, so a long list does not flood the server.
      const names = list.map((j) => j.name);
      const worker = async () => {
        while (names.length && !signal.aborted) {
          const name = names.shift();
          const row = jobs.get(name);
          if (row) row.history = await history(name);
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
      draw();
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });

  const pending = new Set();
  const refreshPending = coalesce(async () => {
    const names = [...pending];
    pending.clear();
    for (const n of names) await refreshJob(n).catch(() => {});
  });

  reload();
  return {
    onEvent(ev) {
      if (ev.type.startsWith("job.")) reload();
      else if (ev.type.startsWith("execution.") && ev.data && jobs.has(ev.data.job)) {
        pending.add(ev.data.job);
        refreshPending();
      }
    },
    dispose() {
      controller.abort();
    },
  };
}
