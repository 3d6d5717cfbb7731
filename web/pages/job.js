// One job: its state and buttons, a timeline of executions coloured by status,
// a chart of their durations, the list, and the spec.

import { api, enc } from "../api.js";
import { chip, coalesce, errorBox, h, replace, section, table } from "../dom.js";
import { durationChart, legend, timeline } from "../charts.js";
import { ago, durationMs, execMs, scheduleWords, shortId, time } from "../format.js";
import { jobActions } from "./jobs.js";

const HISTORY = 100;
const DERIVED = ["created_at", "updated_at", "revision", "next_run_at", "last_execution", "last_event_revision"];

export function jobPage({ main }, name) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "job", dataset: { job: name } }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("p", { class: "crumbs" }, h("a", { href: "#/jobs", text: "Jobs" }), " / ", name), body);

  function draw(job, execs) {
    const spec = Object.fromEntries(Object.entries(job).filter(([k]) => !DERIVED.includes(k)));
    replace(
      body,
      h("div", { class: "page-head" },
        h("h1", {}, job.name, job.paused ? h("span", { class: "badge paused", text: "paused" }) : null),
        jobActions(job, () => reload())),
      job.description ? h("p", { class: "muted", text: job.description }) : null,
      h("dl", { class: "facts" },
        h("dt", { text: "Schedule" }), h("dd", { text: scheduleWords(job.schedule) }),
        h("dt", { text: "Next run" }), h("dd", { title: time(job.next_run_at) }, job.next_run_at ? `${ago(job.next_run_at)} (${time(job.next_run_at)})` : "—"),
        h("dt", { text: "Executor" }), h("dd", { text: job.executor ? job.executor.type : "—" }),
        h("dt", { text: "Revision" }), h("dd", { text: String(job.revision) }),
        h("dt", { text: "Updated" }), h("dd", { text: time(job.updated_at) })),
      section(`Timeline (last ${execs.length})`,
        execs.length ? timeline(execs) : h("p", { class: "empty", text: "No executions yet." }),
        legend(["succeeded", "failed", "timed_out", "cancelled", "skipped", "lost", "running", "queued"]),
        h("p", { class: "muted small", text: "A number on a square is the attempt that ended it (retries)." })),
      section("Durations", execs.length ? durationChart(execs) : h("p", { class: "empty", text: "Nothing to chart yet." })),
      section("Executions",
        table(["Execution", "Status", "Trigger", "Attempt", "Scheduled", "Duration", "Node"],
          execs.map((e) => ({
            attrs: { dataset: { execution: e.id } },
            cells: [
              h("a", { href: `#/executions/${e.id}`, class: "mono" }, shortId(e.id)),
              chip(e.status),
              e.trigger,
              String(e.attempt),
              time(e.scheduled_at),
              durationMs(execMs(e)),
              e.node || "—",
            ],
          })))),
      section("Spec", h("pre", { class: "spec", text: JSON.stringify(spec, null, 2) })),
    );
  }

  const reload = coalesce(async () => {
    try {
      const [job, page] = await Promise.all([
        api(`/v1/jobs/${enc(name)}`, { signal }),
        api(`/v1/jobs/${enc(name)}/executions?limit=${HISTORY}`, { signal }),
      ]);
      draw(job, page.items);
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if ((ev.type.startsWith("job.") && ev.key === name) || (ev.type.startsWith("execution.") && ev.data && ev.data.job === name)) reload();
    },
    dispose() {
      controller.abort();
    },
  };
}
