// One execution: its record, its output (followed live while it runs) and, for
// operators, a cancel button.

import { api, authHeaders, can, enc } from "../api.js";
import { chip, coalesce, errorBox, h, replace, section, table, toast } from "../dom.js";
import { durationMs, ended, execMs, time } from "../format.js";

export function executionPage({ main }, id) {
  const controller = new AbortController();
  const signal = controller.signal;
  const head = h("div", { id: "execution", dataset: { execution: id } }, h("p", { class: "muted", text: "Loading…" }));
  const output = h("pre", { id: "output", class: "output", dataset: { state: "idle" } });
  const outputNote = h("p", { class: "muted small", id: "output-note" });
  main.append(head, section("Output", outputNote, output));
  let exec = null;
  let following = false;
  let fetchedFinal = false;

  function draw(e) {
    const job = e.job.includes(":") ? null : e.job;
    const cancel = can("operator") && !ended(e.status)
      ? h("button", {
          type: "button",
          class: "danger",
          dataset: { action: "cancel" },
          onclick: async () => {
            try {
              await api(`/v1/executions/${enc(id)}/cancel`, { method: "POST" });
              toast("Cancel requested.", "ok");
            } catch (err) {
              toast(`Cancel: ${err.message}`, "bad");
            }
          },
        }, "Cancel")
      : null;
    replace(
      head,
      h("p", { class: "crumbs" }, h("a", { href: "#/jobs", text: "Jobs" }), " / ",
        job ? h("a", { href: `#/jobs/${enc(job)}`, text: job }) : e.job, " / execution"),
      h("div", { class: "page-head" }, h("h1", { class: "mono", text: id }), h("span", { class: "actions" }, chip(e.status), cancel)),
      h("dl", { class: "facts" },
        ...fact("Job", e.job),
        ...fact("Trigger", e.trigger),
        ...fact("Attempt", String(e.attempt)),
        ...fact("Node", e.node || "—"),
        ...fact("Scheduled", time(e.scheduled_at)),
        ...fact("Started", time(e.started_at)),
        ...fact("Finished", time(e.finished_at)),
        ...fact("Duration", durationMs(execMs(e))),
        ...fact("Exit code", e.exit_code === null || e.exit_code === undefined ? "—" : String(e.exit_code)),
        ...(e.next_attempt_at ? fact("Next attempt", time(e.next_attempt_at)) : []),
        ...(e.cancel_requested ? fact("Cancel", "requested") : []),
        ...(e.usage ? fact("CPU", `${e.usage.cpu_user_ms} ms user, ${e.usage.cpu_system_ms} ms system${e.usage.max_rss_kib ? `, peak ${e.usage.max_rss_kib} KiB` : ""}`) : []),
        ...(e.run ? [h("dt", { text: "Workflow run" }), h("dd", {}, h("a", { href: `#/runs/${e.run}`, class: "mono", text: e.run }))] : [])),
      e.error ? h("p", { class: "error-box", text: e.error }) : null,
      e.attempts && e.attempts.length
        ? section("Attempts", h("pre", { class: "spec", text: JSON.stringify(e.attempts, null, 2) }))
        : null,
      e.result && e.result.targets
        ? section(`Targets (${e.result.status})`,
          table(["Address", "Status", "Code", "Attempts", "Duration", "Error"],
            e.result.targets.map((t) => ({ cells: [t.address, chip(t.status), String(t.code ?? "—"), String(t.attempts), durationMs(t.duration_ms), t.error || ""] }))))
        : null,
    );
  }

  function fact(k, v) {
    return [h("dt", { text: k }), h("dd", { text: v })];
  }

  // Streams the output while the execution runs (the stream ends when it
  // ends); a cut stream is read again from the start.
  async function follow() {
    if (following) return;
    following = true;
    output.dataset.state = "following";
    outputNote.textContent = "Following the output live…";
    try {
      const resp = await fetch(`/v1/executions/${enc(id)}/output?follow=true`, { headers: authHeaders(), signal });
      if (!resp.ok) throw new Error(`output: ${resp.status}`);
      truncated(resp);
      output.textContent = "";
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        output.append(value);
      }
    } catch (e) {
      if (signal.aborted) return;
    } finally {
      following = false;
    }
    await reload();
    if (exec && !ended(exec.status) && !signal.aborted) {
      setTimeout(() => exec && !ended(exec.status) && follow(), 1000);
    }
  }

  function truncated(resp) {
    if (resp.headers.get("Rota-Output-Truncated") === "true") outputNote.textContent = "The output was cut at the job's max_output_bytes.";
  }

  async function finalOutput() {
    if (fetchedFinal || following) return;
    fetchedFinal = true;
    try {
      const resp = await fetch(`/v1/executions/${enc(id)}/output`, { headers: authHeaders(), signal });
      if (!resp.ok) throw new Error(`output: ${resp.status}`);
      output.textContent = await resp.text();
      output.dataset.state = "done";
      outputNote.textContent = output.textContent ? "" : "No output.";
      truncated(resp);
    } catch (e) {
      if (!signal.aborted) outputNote.textContent = e.message;
    }
  }

  const reload = coalesce(async () => {
    try {
      exec = await api(`/v1/executions/${enc(id)}`, { signal });
      draw(exec);
      if (exec.status === "running") follow();
      else if (ended(exec.status)) {
        if (output.dataset.state === "following" && !following) output.dataset.state = "done";
        if (output.dataset.state !== "done") finalOutput();
      } else {
        outputNote.textContent = "Waiting for the execution to start…";
      }
    } catch (e) {
      if (e.name !== "AbortError") replace(head, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if (ev.type.startsWith("execution.") && ev.key === id) reload();
    },
    dispose() {
      controller.abort();
    },
  };
}
