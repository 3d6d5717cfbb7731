// The cluster as the answering node sees it: members, leader, term, its commit
// and applied indexes, each member's replication lag (known on the leader), the
// registered workers, and the node's own health.
//
// Raft's state (leader, term, indexes) is not part of the event stream, so this
// page alone reads it again every few seconds while it is open.

import { api } from "../api.js";
import { coalesce, errorBox, h, note, replace, section, table } from "../dom.js";
import { durationMs, time } from "../format.js";

const REFRESH_MS = 2000;

export function clusterPage({ main }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const body = h("div", { id: "cluster" }, h("p", { class: "muted", text: "Loading…" }));
  main.append(h("div", { class: "page-head" }, h("h1", { text: "Cluster" })), body);

  const reload = coalesce(async () => {
    try {
      const [c, health] = await Promise.all([api("/v1/cluster", { signal }), api("/v1/health", { signal })]);
      draw(c, health);
    } catch (e) {
      if (e.name !== "AbortError") replace(body, errorBox(e));
    }
  });

  function draw(c, health) {
    const onLeader = c.leader === c.node_id;
    replace(body,
      h("dl", { class: "facts", id: "cluster-facts", dataset: { leader: c.leader === null ? "" : String(c.leader), term: String(c.term) } },
        h("dt", { text: "Leader" }), h("dd", { id: "leader" }, c.leader === null ? "none known" : `node ${c.leader}`, c.leader_url ? h("span", { class: "muted", text: ` (${c.leader_url})` }) : null),
        h("dt", { text: "Term" }), h("dd", { text: String(c.term) }),
        h("dt", { text: "This node" }), h("dd", { text: `node ${c.node_id} (${health.role})` }),
        h("dt", { text: "Commit index" }), h("dd", { text: String(c.commit_index) }),
        h("dt", { text: "Applied index" }), h("dd", { text: String(c.last_applied) }),
        h("dt", { text: "Apply lag" }), h("dd", { text: String(Math.max(c.commit_index - c.last_applied, 0)) })),
      section("Members",
        table(["Node", "Role", "URL", "Matched index", "Lag"],
          c.members.map((m) => ({
            attrs: { dataset: { member: String(m.id), leader: String(m.id === c.leader) } },
            cells: [
              h("span", {}, `node ${m.id}`, m.id === c.leader ? h("span", { class: "badge leader", text: "leader" }) : null, m.id === c.node_id ? h("span", { class: "badge", text: "this node" }) : null),
              m.role,
              h("span", { class: "mono", text: m.url }),
              m.matched_index === null ? "—" : String(m.matched_index),
              m.matched_index === null ? "—" : String(Math.max(c.commit_index - m.matched_index, 0)),
            ],
          }))),
        onLeader ? null : note("Matched indexes and lag are known on the leader only; open the console on the leader's URL to see them. Each node's own applied index is on its console.")),
      section("Workers",
        table(["Node", "Tags", "Max running", "Registered"],
          (c.workers || []).map((w) => ({ cells: [w.node, Object.entries(w.tags || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "—", String(w.max_running), time(w.registered_at)] })))),
      section(`This node (${health.node}, version ${health.version})`,
        h("dl", { class: "facts" },
          h("dt", { text: "Status" }), h("dd", { text: health.status }),
          h("dt", { text: "Up for" }), h("dd", { text: durationMs(health.uptime_s * 1000) }),
          h("dt", { text: "Last log index" }), h("dd", { text: String(health.last_log_index) }),
          h("dt", { text: "Snapshot index" }), h("dd", { text: health.snapshot_index === null ? "none yet" : String(health.snapshot_index) }),
          h("dt", { text: "Scheduler" }), h("dd", { text: `${health.scheduler.jobs} jobs, ${health.scheduler.running} running, ${health.scheduler.queued} queued` }),
          ...(health.load ? [h("dt", { text: "Load" }), h("dd", { text: `${health.load["1m"]} / ${health.load["5m"]} / ${health.load["15m"]}` })] : []),
          ...(health.memory && health.memory.rss_bytes ? [h("dt", { text: "Memory (RSS)" }), h("dd", { text: `${Math.round(health.memory.rss_bytes / 1048576)} MiB` })] : [])),
        table(["Worker", "State", "Detail"], (health.workers || []).map((w) => ({ cells: [w.name, w.state, w.detail || ""] })))));
  }

  reload();
  const timer = setInterval(reload, REFRESH_MS);
  return {
    onEvent(ev) {
      if (ev.type.startsWith("member.")) reload();
    },
    dispose() {
      clearInterval(timer);
      controller.abort();
    },
  };
}
