// Target sets: each set's source, its targets with their labels, when discovery
// last changed it and why a source fails now.

import { all } from "../api.js";
import { coalesce, errorBox, h, replace, table } from "../dom.js";
import { ago, time } from "../format.js";

const OWN = ["name", "provider", "generation", "targets", "refreshed_at", "error"];

export function targetsPage({ main }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "targets" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("div", { class: "page-head" }, h("h1", { text: "Target sets" })), body);
  const reload = coalesce(async () => {
    try {
      const sets = await all("/v1/targets?limit=1000", { signal });
      if (!sets.length) {
        replace(body, h("p", { class: "empty" }, "No target sets. See ", h("code", { text: "PUT /v1/targets/{name}" }), " and docs/TARGETS.md."));
        return;
      }
      replace(body, sets.map(card));
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });
  reload();
  return {
    onEvent(ev) {
      if (ev.type.startsWith("targets.")) reload();
    },
    dispose: () => controller.abort(),
  };
}

function card(set) {
  const source = Object.fromEntries(Object.entries(set).filter(([k]) => !OWN.includes(k)));
  return h("section", { class: "card", dataset: { set: set.name } },
    h("h2", {}, set.name, " ", h("span", { class: "badge", text: set.provider })),
    set.error ? h("p", { class: "error-box", text: `Discovery fails: ${set.error} (the last good targets are kept)` }) : null,
    h("dl", { class: "facts" },
      h("dt", { text: "Targets" }), h("dd", { text: String(set.targets.length) }),
      h("dt", { text: "Last refresh" }), h("dd", { title: time(set.refreshed_at) }, set.refreshed_at ? `${ago(set.refreshed_at)} (${time(set.refreshed_at)})` : "not discovered yet"),
      h("dt", { text: "Generation" }), h("dd", { text: String(set.generation) })),
    h("details", {}, h("summary", { text: "Source" }), h("pre", { class: "spec", text: JSON.stringify(source, null, 2) })),
    set.targets.length
      ? table(["Address", "Labels"], set.targets.map((t) => ({
          cells: [h("span", { class: "mono", text: t.address }), h("span", { class: "labels" }, Object.entries(t.labels || {}).map(([k, v]) => h("span", { class: "label", text: `${k}=${v}` })))],
        })))
      : h("p", { class: "empty", text: "No targets." }));
}
