// CI: the Prow collector jobs (executor `prow`) with their runs over time. rota
// keeps no Prow build history of its own: each run reads the deck and writes
// `build` points to the job's InfluxDB sink, where the long-term pass rate and
// durations live (Grafana dashboard deploy/grafana/ci-builds.json).

import { all, api, enc } from "../api.js";
import { coalesce, errorBox, h, note, replace, section } from "../dom.js";
import { durationChart, legend, timeline } from "../charts.js";
import { ago, durationMs, execMs } from "../format.js";

const HISTORY = 100;

export function ciPage({ main }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "ci" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(
    h("div", { class: "page-head" }, h("h1", { text: "CI" })),
    note(
      h("strong", { text: "Where the build history is. " }),
      "rota does not store Prow builds. Each run of a ",
      h("code", { text: "prow" }),
      " job reads the Prow deck and writes one ",
      h("code", { text: "build" }),
      " point per build to the job's InfluxDB sink; pass rates and build durations over time are in that database, and the Grafana dashboard ",
      h("code", { text: "deploy/grafana/ci-builds.json" }),
      " draws them. This page shows what rota itself knows: the collector jobs and how their runs went.",
    ),
    body,
  );
  const prowJobs = new Set();
  const reload = coalesce(async () => {
    try {
      const jobs = (await all("/v1/jobs?last_execution=true&limit=1000", { signal })).filter((j) => j.executor && j.executor.type === "prow");
      prowJobs.clear();
      jobs.forEach((j) => prowJobs.add(j.name));
      if (!jobs.length) {
        replace(body, h("p", { class: "empty" }, "No job uses the ", h("code", { text: "prow" }), " executor yet (see docs/JOBS.md)."));
        return;
      }
      const histories = await Promise.all(jobs.map((j) => api(`/v1/jobs/${enc(j.name)}/executions?limit=${HISTORY}`, { signal }).then((p) => p.items)));
      replace(body, jobs.map((j, i) => card(j, histories[i])));
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if (ev.type.startsWith("job.") || (ev.type === "execution.finished" && ev.data && prowJobs.has(ev.data.job))) reload();
    },
    dispose: () => controller.abort(),
  };
}

function card(job, execs) {
  const finished = execs.filter((e) => ["succeeded", "failed", "timed_out", "lost"].includes(e.status));
  const passed = finished.filter((e) => e.status === "succeeded").length;
  const rate = finished.length ? Math.round((100 * passed) / finished.length) : null;
  const times = finished.map(execMs).filter((x) => x !== null);
  const mean = times.length ? times.reduce((a, b) => a + b, 0) / times.length : null;
  const ex = job.executor;
  return section(job.name,
    h("dl", { class: "facts" },
      h("dt", { text: "Deck" }), h("dd", { class: "mono", text: ex.url || "—" }),
      h("dt", { text: "Prow jobs" }), h("dd", { class: "mono", text: ex.job || "all" }),
      h("dt", { text: "Sink" }), h("dd", { text: ex.sink || "none: builds are only printed in the run's output" }),
      h("dt", { text: "Collector runs" }), h("dd", { text: rate === null ? "none finished" : `${rate}% succeeded of the last ${finished.length}` }),
      h("dt", { text: "Mean run time" }), h("dd", { text: durationMs(mean) }),
      h("dt", { text: "Last run" }), h("dd", { text: job.last_execution ? `${job.last_execution.status}, ${ago(job.last_execution.scheduled_at)}` : "never" })),
    execs.length ? [timeline(execs), durationChart(execs)] : h("p", { class: "empty", text: "No runs yet." }),
    legend(["succeeded", "failed", "timed_out", "running"]),
    h("p", { class: "muted small" }, "A run's output lists the builds it read; open one from the timeline."));
}
