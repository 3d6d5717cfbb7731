//! `GET /metrics`: Prometheus text exposition, written by hand (a dozen series do not
//! justify a registry). Names follow `rota_<noun>_<unit>[_total]`.
//!
//! HTTP requests are counted per route template (never per concrete path, so the
//! label set stays bounded) and status code by a middleware around every route.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use rota_background::{WorkerState, WorkerStatus};
use rota_cluster::NodeStatus;
use rota_scheduler::telemetry::Counts;
use rota_scheduler::{SchedulerStats, DISPATCH_LAG_BUCKETS_SECONDS};

use crate::AppState;

/// Label used for requests that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";

/// `rota_http_requests_total{method, route, status}`.
#[derive(Debug, Default)]
pub struct HttpCounters {
    counts: Mutex<BTreeMap<(String, String, u16), u64>>,
}

impl HttpCounters {
    pub fn record(&self, method: &str, route: &str, status: u16) {
        // A poisoned lock only means another request panicked mid-increment;
        // the counts are still usable.
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    fn snapshot(&self) -> Vec<((String, String, u16), u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Middleware counting every answered request.
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE.to_string(), |m| m.as_str().to_string());
    let resp = next.run(req).await;
    state
        .shared()
        .http
        .record(&method, &route, resp.status().as_u16());
    resp
}

/// What `/metrics` reads.
pub struct Sources<'a> {
    pub node: &'a NodeStatus,
    pub sched: &'a SchedulerStats,
    pub workers: &'a [WorkerStatus],
    pub http: &'a HttpCounters,
    pub telemetry: &'a Counts,
    /// Every target set and its number of targets, by name.
    pub targets: &'a [(String, usize)],
    /// The highest log index this node knows committed, when it could be read.
    pub commit_index: Option<u64>,
}

/// Renders every series.
pub fn render(src: &Sources<'_>) -> String {
    let Sources {
        node,
        sched,
        workers,
        http,
        telemetry,
        targets,
        commit_index,
    } = *src;
    let mut out = String::with_capacity(2048);
    let mut series = |name: &str, help: &str, kind: &str, value: u64| {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    series(
        "rota_jobs",
        "Jobs known to the scheduler on this node.",
        "gauge",
        sched.jobs as u64,
    );
    series(
        "rota_executions_running",
        "Attempts running on this node.",
        "gauge",
        sched.running as u64,
    );
    series(
        "rota_executions_queued",
        "Executions waiting for a slot.",
        "gauge",
        sched.queued as u64,
    );
    series(
        "rota_timers",
        "Armed schedule and retry timers.",
        "gauge",
        sched.timers as u64,
    );
    series(
        "rota_fired_total",
        "Instants fired by this node while it led.",
        "counter",
        sched.fired_total,
    );
    series("rota_raft_term", "Current Raft term.", "gauge", node.term);
    series(
        "rota_raft_last_applied",
        "Log index of the last entry applied to the state machine.",
        "gauge",
        node.last_applied,
    );
    if let Some(commit_index) = commit_index {
        series(
            "rota_raft_commit_index",
            "Highest log index this node knows committed.",
            "gauge",
            commit_index,
        );
    }
    series(
        "rota_raft_last_log_index",
        "Log index of the last entry in this node's log.",
        "gauge",
        node.last_log_index,
    );
    series(
        "rota_raft_is_leader",
        "1 while this node is the leader.",
        "gauge",
        u64::from(node.role == "leader"),
    );
    let _ = writeln!(
        out,
        "# HELP rota_worker_up 1 while the background worker runs, 0 once it stopped, failed or panicked.\n\
         # TYPE rota_worker_up gauge"
    );
    for worker in workers {
        let _ = writeln!(
            out,
            "rota_worker_up{{worker=\"{}\"}} {}",
            escape_label(&worker.name),
            u8::from(worker.state == WorkerState::Running)
        );
    }
    let _ = writeln!(
        out,
        "# HELP rota_http_requests_total HTTP requests answered, by route template and status.\n\
         # TYPE rota_http_requests_total counter"
    );
    for ((method, route, status), n) in http.snapshot() {
        let _ = writeln!(
            out,
            "rota_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
            escape_label(&method),
            escape_label(&route)
        );
    }
    let lag = &sched.dispatch_lag;
    histogram(
        &mut out,
        "rota_schedule_lag_seconds",
        "From a scheduled instant to the hand-over of its first attempt to an executor on this node.",
        &DISPATCH_LAG_BUCKETS_SECONDS,
        &lag.buckets,
        lag.count,
        lag.sum_seconds,
    );
    family(
        &mut out,
        "rota_executions_total",
        "Executions ended for good, by job and final status (counted by the leader).",
        "counter",
        telemetry.executions.iter().map(|((job, status), n)| {
            (
                format!(
                    "job=\"{}\",status=\"{}\"",
                    escape_label(job),
                    escape_label(status)
                ),
                n.to_string(),
            )
        }),
    );
    let d = &telemetry.duration;
    histogram(
        &mut out,
        "rota_execution_duration_seconds",
        "From the start of an execution's final attempt to its end (counted by the leader).",
        d.bounds,
        &d.buckets,
        d.count,
        d.sum,
    );
    family(
        &mut out,
        "rota_job_last_success_timestamp_seconds",
        "When each job last ended succeeded (seen by the leader since it leads).",
        "gauge",
        telemetry
            .last_success
            .iter()
            .map(|(job, at)| (format!("job=\"{}\"", escape_label(job)), at.to_string())),
    );
    family(
        &mut out,
        "rota_targets",
        "Targets of each target set, as committed.",
        "gauge",
        targets
            .iter()
            .map(|(set, n)| (format!("set=\"{}\"", escape_label(set)), n.to_string())),
    );
    family(
        &mut out,
        "rota_discovery_updates_total",
        "Discovery updates received from providers and changes committed, by set (on the leader).",
        "counter",
        telemetry
            .discovery
            .iter()
            .flat_map(|(set, (received, committed))| {
                let set = escape_label(set);
                [
                    (
                        format!("set=\"{set}\",stage=\"received\""),
                        received.to_string(),
                    ),
                    (
                        format!("set=\"{set}\",stage=\"committed\""),
                        committed.to_string(),
                    ),
                ]
            }),
    );
    family(
        &mut out,
        "rota_sink_points_total",
        "Points written to or dropped by each sink on this node.",
        "counter",
        telemetry
            .sink_points
            .iter()
            .flat_map(|(sink, (written, dropped))| {
                let sink = escape_label(sink);
                [
                    (
                        format!("sink=\"{sink}\",outcome=\"written\""),
                        written.to_string(),
                    ),
                    (
                        format!("sink=\"{sink}\",outcome=\"dropped\""),
                        dropped.to_string(),
                    ),
                ]
            }),
    );
    family(
        &mut out,
        "rota_probe_results_total",
        "Probe runs on this node by job and aggregate status.",
        "counter",
        telemetry.probes.iter().map(|((job, status), n)| {
            (
                format!(
                    "job=\"{}\",status=\"{}\"",
                    escape_label(job),
                    escape_label(status)
                ),
                n.to_string(),
            )
        }),
    );
    out
}

/// One family: its HELP and TYPE lines, then a line per label set.
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    rows: impl Iterator<Item = (String, String)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A histogram family from cumulative buckets.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[f64],
    buckets: &[u64],
    count: u64,
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (bound, n) in bounds.iter().zip(buckets) {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// Escapes a label value per the exposition format.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
            node_id: 1,
            node: "n1".into(),
            role: "leader".into(),
            leader: Some(1),
            leader_url: None,
            term: 3,
            last_log_index: 42,
            last_applied: 41,
            snapshot_index: None,
        }
    }

    #[test]
    fn renders_every_series_once() {
        let http = HttpCounters::default();
        http.record("GET", "/v1/jobs/{name}", 200);
        http.record("GET", "/v1/jobs/{name}", 200);
        http.record("GET", "a\"b", 404);
        let stats = SchedulerStats {
            jobs: 5,
            running: 2,
            queued: 1,
            fired_total: 9,
            ..Default::default()
        };
        let at = chrono::Utc::now();
        let worker = |name: &str, state| WorkerStatus {
            name: name.into(),
            state,
            detail: None,
            started_at: at,
            stopped_at: None,
        };
        let workers = [
            worker("scheduler", WorkerState::Running),
            worker("proposals", WorkerState::Failed),
        ];
        let telemetry = rota_scheduler::telemetry::Telemetry::new();
        telemetry.execution_finished("nightly", "succeeded", Some(1.5), Some(1_700_000_000.0));
        telemetry.discovery("gw", 3, 1);
        let counts = telemetry.counts();
        let targets = [("gw".to_string(), 4)];
        let text = render(&Sources {
            node: &status(),
            sched: &stats,
            workers: &workers,
            http: &http,
            telemetry: &counts,
            targets: &targets,
            commit_index: Some(40),
        });
        for line in [
            "rota_jobs 5",
            "rota_executions_running 2",
            "rota_executions_queued 1",
            "rota_fired_total 9",
            "rota_raft_term 3",
            "rota_raft_last_applied 41",
            "rota_raft_commit_index 40",
            "rota_raft_is_leader 1",
            "rota_worker_up{worker=\"scheduler\"} 1",
            "rota_worker_up{worker=\"proposals\"} 0",
            "rota_http_requests_total{method=\"GET\",route=\"/v1/jobs/{name}\",status=\"200\"} 2",
            "rota_http_requests_total{method=\"GET\",route=\"a\\\"b\",status=\"404\"} 1",
            "rota_executions_total{job=\"nightly\",status=\"succeeded\"} 1",
            "rota_execution_duration_seconds_bucket{le=\"2.5\"} 1",
            "rota_execution_duration_seconds_bucket{le=\"1\"} 0",
            "rota_execution_duration_seconds_count 1",
            "rota_job_last_success_timestamp_seconds{job=\"nightly\"} 1700000000",
            "rota_targets{set=\"gw\"} 4",
            "rota_discovery_updates_total{set=\"gw\",stage=\"received\"} 3",
            "rota_discovery_updates_total{set=\"gw\",stage=\"committed\"} 1",
            "rota_schedule_lag_seconds_count 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // One TYPE line per family.
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(types, helps);
        assert_eq!(types, 20);
    }

    /// deploy/grafana/rota.json is a Grafana dashboard whose every query names
    /// only series this module renders.
    #[test]
    fn the_grafana_dashboard_asks_only_for_exported_series() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/grafana/rota.json"))
                .expect("valid JSON");
        assert!(dashboard["title"].is_string() && dashboard["schemaVersion"].is_u64());
        let http = HttpCounters::default();
        let stats = SchedulerStats::default();
        let telemetry = rota_scheduler::telemetry::Telemetry::new();
        let counts = telemetry.counts();
        let text = render(&Sources {
            node: &status(),
            sched: &stats,
            workers: &[],
            http: &http,
            telemetry: &counts,
            targets: &[],
            commit_index: Some(1),
        });
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty());
        let mut asked = 0;
        for panel in panels {
            assert!(panel["gridPos"].is_object(), "{panel}");
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{panel}");
            for target in targets {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if !word.starts_with("rota_") {
                        continue;
                    }
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| word.strip_suffix(suffix))
                        .filter(|f| families.contains(f))
                        .unwrap_or(word);
                    assert!(
                        families.contains(family),
                        "{word} in {expr:?} is not exported"
                    );
                    asked += 1;
                }
            }
        }
        assert!(asked >= panels.len(), "every panel asks for a series");
    }
}
