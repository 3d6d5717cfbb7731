// Workflows: the list, one workflow with its runs, and one run drawn as a graph
// of its jobs with their statuses, its artifacts to download and (for
// operators) run and cancel buttons.

import { all, api, can, download, enc } from "../api.js";
import { chip, coalesce, errorBox, h, replace, section, table, toast } from "../dom.js";
import { dag, legend } from "../charts.js";
import { ago, durationMs, scheduleWords, shortId, time } from "../format.js";

const DERIVED = ["created_at", "updated_at", "revision", "next_run_at"];

function runButton(name) {
  if (!can("operator")) return null;
  return h("button", {
    type: "button",
    class: "primary",
    dataset: { action: "run-workflow", workflow: name },
    onclick: async () => {
      try {
        const run = await api(`/v1/workflows/${enc(name)}/run`, { method: "POST" });
        toast(`Run of ${name} ${run.status}: `, "ok", h("a", { href: `#/runs/${run.id}`, text: run.id }));
      } catch (err) {
        toast(`Run ${name}: ${err.message}`, "bad");
      }
    },
  }, "Run now");
}

function runMs(run) {
  if (!run.started_at) return null;
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  return end - Date.parse(run.started_at);
}

function runsTable(runs) {
  return table(["Run", "Status", "Trigger", "Created", "Duration"],
    runs.map((r) => ({
      attrs: { dataset: { run: r.id } },
      cells: [h("a", { href: `#/runs/${r.id}`, class: "mono", text: shortId(r.id) }), chip(r.status), r.trigger, time(r.created_at), durationMs(runMs(r))],
    })));
}

export function workflowsPage({ main }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "workflows" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("div", { class: "page-head" }, h("h1", { text: "Workflows" })), body);
  const reload = coalesce(async () => {
    try {
      const list = await all("/v1/workflows?limit=1000", { signal });
      if (!list.length) {
        replace(body, h("p", { class: "empty", text: "No workflows yet." }));
        return;
      }
      const latest = await Promise.all(list.map((w) => api(`/v1/workflows/${enc(w.name)}/runs?limit=1`, { signal }).then((p) => p.items[0] || null)));
      replace(body, table(["Workflow", "Jobs", "Schedule", "Next run", "Latest run", ...(can("operator") ? [""] : [])],
        list.map((w, i) => ({
          attrs: { dataset: { workflow: w.name } },
          cells: [
            h("a", { href: `#/workflows/${enc(w.name)}`, class: "name", text: w.name }),
            String(Object.keys(w.jobs || {}).length),
            scheduleWords(w.schedule),
            w.next_run_at ? ago(w.next_run_at) : "—",
            latest[i] ? h("a", { href: `#/runs/${latest[i].id}` }, chip(latest[i].status)) : chip(null, "never ran"),
            ...(can("operator") ? [runButton(w.name)] : []),
          ],
        }))));
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if (ev.type.startsWith("workflow")) reload();
    },
    dispose: () => controller.abort(),
  };
}

export function workflowPage({ main }, name) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "workflow", dataset: { workflow: name } }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/workflows", text: "Workflows" }), " / ", name), body);
  const reload = coalesce(async () => {
    try {
      const [wf, runs] = await Promise.all([
        api(`/v1/workflows/${enc(name)}`, { signal }),
        api(`/v1/workflows/${enc(name)}/runs?limit=50`, { signal }),
      ]);
      const last = runs.items[0];
      const spec = Object.fromEntries(Object.entries(wf).filter(([k]) => !DERIVED.includes(k)));
      replace(body,
        h("div", { class: "page-head" }, h("h1", { text: name }), runButton(name)),
        h("dl", { class: "facts" },
          h("dt", { text: "Schedule" }), h("dd", { text: scheduleWords(wf.schedule) }),
          h("dt", { text: "Next run" }), h("dd", { text: wf.next_run_at ? `${ago(wf.next_run_at)} (${time(wf.next_run_at)})` : "—" }),
          h("dt", { text: "Concurrency" }), h("dd", { text: wf.concurrency || "—" })),
        section(last ? "Jobs (latest run)" : "Jobs",
          dag(wf.jobs || {}, (j) => last && last.jobs[j] && last.jobs[j].status, () => (last ? `#/runs/${last.id}` : null)),
          legend(["succeeded", "failed", "running", "queued", "skipped", "cancelled", "timed_out"])),
        section("Runs", runs.items.length ? runsTable(runs.items) : h("p", { class: "empty", text: "No runs yet." })),
        section("Spec", h("pre", { class: "spec", text: JSON.stringify(spec, null, 2) })));
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if ((ev.type.startsWith("workflow") && (ev.key === name || (ev.data && ev.data.workflow === name))) ||
        (ev.type.startsWith("execution.") && ev.data && String(ev.data.job).startsWith(`${name}:`))) reload();
    },
    dispose: () => controller.abort(),
  };
}

export function runPage({ main }, id) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "run", dataset: { run: id } }, h("p", { class: "muted", text: "Loading…" }));
  main.append(body);
  let workflow = null;
  const reload = coalesce(async () => {
    try {
      const run = await api(`/v1/runs/${enc(id)}`, { signal });
      workflow = run.workflow;
      let jobs = Object.fromEntries(Object.keys(run.jobs).map((j) => [j, { needs: [] }]));
      try {
        const wf = await api(`/v1/workflows/${enc(run.workflow)}`, { signal });
        jobs = { ...jobs, ...wf.jobs };
      } catch {
        // The workflow was deleted or changed: draw the run's jobs alone.
      }
      const firstExec = (j) => run.jobs[j] && run.jobs[j].executions && run.jobs[j].executions[0];
      const cancel = can("operator") && ["queued", "running"].includes(run.status)
        ? h("button", {
            type: "button",
            class: "danger",
            dataset: { action: "cancel-run" },
            onclick: async () => {
              try {
                await api(`/v1/runs/${enc(id)}/cancel`, { method: "POST" });
                toast("Cancel requested.", "ok");
              } catch (err) {
                toast(`Cancel: ${err.message}`, "bad");
              }
            },
          }, "Cancel run")
        : null;
      replace(body,
        h("p", { class: "crumbs" }, h("a", { href: "#/workflows", text: "Workflows" }), " / ", h("a", { href: `#/workflows/${enc(run.workflow)}`, text: run.workflow }), " / run"),
        h("div", { class: "page-head" }, h("h1", { class: "mono", text: id }), h("span", { class: "actions" }, chip(run.status), cancel)),
        h("dl", { class: "facts" },
          h("dt", { text: "Trigger" }), h("dd", { text: run.trigger }),
          h("dt", { text: "Created" }), h("dd", { text: time(run.created_at) }),
          h("dt", { text: "Started" }), h("dd", { text: time(run.started_at) }),
          h("dt", { text: "Finished" }), h("dd", { text: time(run.finished_at) }),
          h("dt", { text: "Duration" }), h("dd", { text: durationMs(runMs(run)) }),
          ...(run.ending ? [h("dt", { text: "Ending" }), h("dd", { text: run.ending })] : [])),
        run.error ? h("p", { class: "error-box", text: run.error }) : null,
        section("Jobs",
          dag(jobs, (j) => run.jobs[j] && run.jobs[j].status, (j) => (firstExec(j) ? `#/executions/${firstExec(j)}` : null)),
          legend(["succeeded", "failed", "running", "queued", "skipped", "cancelled", "timed_out"]),
          h("p", { class: "muted small", text: "Click a job that ran to see its execution and output." })),
        section("Artifacts", artifacts(run)));
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if ((ev.type.startsWith("workflow_run.") && ev.key === id) ||
        (workflow && ev.type.startsWith("execution.") && ev.data && String(ev.data.job).startsWith(`${workflow}:`))) reload();
    },
    dispose: () => controller.abort(),
  };
}

function artifacts(run) {
  const list = run.artifacts || [];
  if (!list.length) return h("p", { class: "empty", text: "This run kept no artifacts." });
  const rows = [];
  for (const a of list) {
    for (const f of a.files || []) {
      const path = `/v1/runs/${enc(run.id)}/artifacts/${enc(a.name)}/${f.path.split("/").map(enc).join("/")}`;
      rows.push({
        cells: [
          a.name,
          a.job,
          h("button", { type: "button", class: "link", onclick: () => download(path, f.path.split("/").pop()).catch((e) => toast(e.message, "bad")) }, f.path),
          `${f.size} B`,
          a.node,
        ],
      });
    }
  }
  return table(["Artifact", "Job", "File", "Size", "Kept on"], rows);
}
