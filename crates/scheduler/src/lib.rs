//! The scheduler runtime: it feeds the pure engine ([`rota_engine`]: events and the
//! time in, actions out; no I/O, no clock, no tokio) the store's events and the time,
//! commits what the engine decides through Raft, and hands runs to executors.
//! Beside it, the [`notifier`] sends the webhooks of runs that start and finish.

use std::sync::Arc;
use std::time::Duration;

use rota_background::Runner;
use rota_exec::OutputBuffer;
use ulid::Ulid;

pub mod artifact_sweep;
pub mod discovery;
mod error;
pub mod notifier;
pub mod run_timeouts;
mod runtime;
pub mod sinks;
pub mod telemetry;

pub use error::SchedulerError;
// Re-exported so the binary's default and the runtime's are one constant.
pub use rota_engine::DEFAULT_NODE_TIMEOUT;

/// How long before their instant scheduled runs are committed, unless configured.
///
/// Not a whole number of seconds: schedules fall on whole seconds, so with a
/// window of 1 s the runs of the next second would be fired, committed and
/// prepared at the very moment this second's runs are handed over, and delay them
/// (at 5,000 runs a second, lag p99 15-22 ms with 1 s against 5-10 ms with 0.5 s
/// or 1.5 s; see docs/PERFORMANCE.md). 1.5 s also leaves a cluster's commit of a
/// large burst room to finish.
pub const DEFAULT_FIRE_AHEAD: Duration = Duration::from_millis(1500);

/// The longest `fire_ahead` a node accepts.
pub const MAX_FIRE_AHEAD: Duration = Duration::from_secs(10);

/// Where a node keeps the artifacts of workflow run `run` (under its data
/// directory): artifact `N`'s files are under `{this}/N/`, at their paths
/// relative to the artifact. The API serves them from there.
pub fn artifacts_dir(data_dir: &std::path::Path, run: Ulid) -> std::path::PathBuf {
    data_dir.join("artifacts").join(run.to_string())
}

/// Where a node runs attempt `attempt` of workflow job execution `execution`
/// (removed when the attempt ends).
pub fn workspace_dir(
    data_dir: &std::path::Path,
    execution: Ulid,
    attempt: u32,
) -> std::path::PathBuf {
    data_dir
        .join("workspaces")
        .join(format!("{execution}-{attempt}"))
}

/// Settings of the scheduler runtime.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Name of this node (recorded on executions, `ROTA_NODE`).
    pub node_name: String,
    /// Most attempts running at once on this node; more wait in priority order.
    pub max_running: usize,
    /// This node's tags: runs of jobs whose `tags` are all among them may be placed
    /// here.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The sinks runs on this node send their records to (`None`: records of jobs
    /// that name a sink are dropped, with a warning).
    pub sinks: Option<Arc<sinks::SinkRegistry>>,
    /// Where probe results of runs on this node are counted (`/metrics`).
    pub telemetry: Option<Arc<telemetry::Telemetry>>,
    /// How long before their instant scheduled runs are committed while this node
    /// leads (see [`rota_engine::EngineConfig::fire_ahead`]).
    pub fire_ahead: Duration,
}

/// How nodes vouch for the runs recorded on them, and how long the leader trusts
/// their silence.
///
/// Every node that does not lead commits a `Command::Heartbeat` every
/// `heartbeat_interval`; the leader's engine places runs only on nodes heard from
/// within `node_timeout`, and finishes the runs of a node silent that long as `lost`
/// (retried per policy). The leader itself never heartbeats, so a single node writes
/// nothing for liveness.
#[derive(Debug, Clone)]
pub struct LivenessConfig {
    /// A node silent this long while runs are recorded on it is presumed dead.
    pub node_timeout: Duration,
    /// How often a node running attempts reports while it does not lead; keep it
    /// well below `node_timeout` (a third leaves room for two lost heartbeats).
    pub heartbeat_interval: Duration,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        Self {
            node_timeout: DEFAULT_NODE_TIMEOUT,
            heartbeat_interval: DEFAULT_NODE_TIMEOUT / 3,
        }
    }
}

/// Counters for health and metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SchedulerStats {
    /// Jobs the engine knows (0 while this node does not lead).
    pub jobs: usize,
    /// Attempts running on this node (slots in use while leading).
    pub running: usize,
    /// Executions waiting for a slot, their job's overlap rule, or a retry.
    pub queued: usize,
    /// Armed schedule and retry timers.
    pub timers: usize,
    /// Instants fired (including skipped ones) since this process started.
    pub fired_total: u64,
    /// Whether this node's engine is scheduling.
    pub leading: bool,
    /// From a scheduled instant to the hand-over of its first attempt to an executor.
    pub dispatch_lag: LagHistogram,
}

/// Upper bounds, in seconds, of the [`LagHistogram`] buckets.
pub const DISPATCH_LAG_BUCKETS_SECONDS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A small fixed-bucket histogram, shaped for Prometheus: `buckets[i]` counts the
/// observations at or below `DISPATCH_LAG_BUCKETS_SECONDS[i]` (cumulative); `count`
/// is the `+Inf` bucket.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LagHistogram {
    pub buckets: [u64; 12],
    pub count: u64,
    pub sum_seconds: f64,
    pub max_seconds: f64,
}

impl LagHistogram {
    pub fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        for (bucket, bound) in self.buckets.iter_mut().zip(DISPATCH_LAG_BUCKETS_SECONDS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
        self.max_seconds = self.max_seconds.max(seconds);
    }
}

/// Handle to the running scheduler.
pub struct SchedulerHandle {
    shared: Arc<runtime::Shared>,
    node: Arc<rota_cluster::Node>,
}

/// Longest a stopping node tries to tell the leader it takes no new runs.
const MARK_DRAINING_TIMEOUT: Duration = Duration::from_secs(5);

/// How a stopping node's runs ended within its grace ([`SchedulerHandle::drain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Whether the leader was told this node takes no new runs.
    pub marked: bool,
    /// Runs still going (or whose outcome is not committed) when the grace ran out.
    pub left: usize,
}

impl SchedulerHandle {
    /// Starts the runtime on this node as the worker `scheduler` of `workers` (the
    /// caller's scope): it schedules while the node leads. Stopping that scope stops
    /// it; once [`Runner::stop`] returns, the loop has ended and the local runs were
    /// cancelled and awaited. Must be called within a tokio runtime.
    pub fn spawn(
        node: Arc<rota_cluster::Node>,
        cfg: SchedulerConfig,
        workers: &Runner,
    ) -> Arc<SchedulerHandle> {
        Self::spawn_with(node, cfg, LivenessConfig::default(), workers)
    }

    /// [`SchedulerHandle::spawn`] with liveness settings other than the defaults.
    pub fn spawn_with(
        node: Arc<rota_cluster::Node>,
        cfg: SchedulerConfig,
        liveness: LivenessConfig,
        workers: &Runner,
    ) -> Arc<SchedulerHandle> {
        Arc::new(SchedulerHandle {
            shared: runtime::spawn(node.clone(), cfg, liveness, workers),
            node,
        })
    }

    /// The first part of a node's graceful stop: this node takes no new runs (none
    /// starts here any more, and the leader stops placing runs here: this node
    /// registers again, same incarnation, with no capacity, which every engine
    /// takes as "place nothing here"), then the runs going on may end, and their
    /// outcomes commit as usual, until `grace` (counted from the call) runs out.
    /// Once the scheduler's scope stops after this, the runs still going are
    /// cancelled and recorded `cancelled` with a reason naming the grace (and
    /// retried elsewhere per their job's policy).
    pub async fn drain(&self, grace: Duration) -> Drained {
        let now = tokio::time::Instant::now();
        let deadline = now + grace;
        self.shared.start_draining();
        // Side by side: a node that cannot reach a quorum (the last ones of a
        // cluster going down) must not wait out the whole grace for the mark.
        let (marked, waited) = tokio::join!(
            self.mark_draining(deadline.min(now + MARK_DRAINING_TIMEOUT)),
            tokio::time::timeout_at(deadline, self.shared.no_runs_left()),
        );
        let left = if waited.is_ok() {
            0
        } else {
            self.shared.live_runs()
        };
        if left > 0 {
            self.shared.cut_short(format!(
                "node shutting down (grace {} ran out)",
                rota_core::HumanDuration(grace)
            ));
        }
        Drained { marked, left }
    }

    /// Commits this node's registration again with no capacity, retrying until
    /// `deadline` (tried at least once); answers whether it committed.
    async fn mark_draining(&self, deadline: tokio::time::Instant) -> bool {
        let Some(record) = self.shared.registration() else {
            return false; // not registered: the leader places nothing here yet
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            let request = rota_core::ClientRequest {
                session: None,
                at: chrono::Utc::now(),
                command: rota_core::Command::RegisterNode {
                    node: record.node.clone(),
                    incarnation: record.incarnation,
                    tags: record.tags.clone(),
                    max_running: 0,
                    url: record.url.clone(),
                    fire_ahead: record.fire_ahead,
                },
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left.max(Duration::from_secs(1)), self.node.write(request))
                .await
            {
                Ok(Ok((index, _))) => {
                    tracing::info!(
                        index,
                        "registered with no capacity: no new runs are placed here"
                    );
                    return true;
                }
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "the no-capacity registration did not commit yet")
                }
                Err(_) => {}
            }
            if tokio::time::Instant::now() + backoff >= deadline {
                tracing::warn!("could not tell the leader this node takes no new runs; runs placed here are handed back");
                return false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether this node stopped taking runs (it is shutting down).
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Live output of an attempt running on this node (kept until its outcome is
    /// committed, so a follower sees the end).
    pub fn live_output(&self, id: Ulid) -> Option<OutputBuffer> {
        self.shared.live_output(id)
    }

    pub fn stats(&self) -> SchedulerStats {
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_histogram_counts_cumulatively() {
        let mut h = LagHistogram::default();
        h.observe(0.003);
        h.observe(0.2);
        h.observe(30.0);
        h.observe(f64::NAN);
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets[0], 1); // NaN counted as 0
        assert_eq!(h.buckets[1], 2); // <= 5 ms
        assert_eq!(h.buckets[6], 3); // <= 250 ms
        assert_eq!(h.buckets[11], 3); // 30 s is only in +Inf
        assert_eq!(h.max_seconds, 30.0);
        assert!((h.sum_seconds - 30.203).abs() < 1e-9);
    }
}
