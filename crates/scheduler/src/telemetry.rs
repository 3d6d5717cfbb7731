//! What `/metrics` reports beyond the scheduler's own gauges: executions by job
//! and status, their durations, the last success of each job, discovery updates,
//! probe results and sink points. Writers count into one shared [`Telemetry`];
//! the API renders it.
//!
//! Executions are counted from the store's `execution.finished` events by the
//! worker `telemetry` while its node leads, so the cluster's counts come from one
//! node at a time and summing over nodes counts each execution once (a leader
//! change restarts the new leader's counters, as a process restart would).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rota_background::Runner;
use rota_cluster::Node;
use rota_core::event::types;
use rota_core::EventKind;
use tokio::sync::broadcast::error::RecvError;

/// Upper bounds, in seconds, of the execution duration buckets.
pub const DURATION_BUCKETS_SECONDS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A fixed-bucket histogram, shaped for Prometheus: `buckets[i]` counts the
/// observations at or below `bounds[i]` (cumulative); `count` is the `+Inf` bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let value = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        for (bucket, bound) in self.buckets.iter_mut().zip(self.bounds) {
            if value <= *bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// The counters; every family is keyed by its label values in order.
#[derive(Debug)]
pub struct Counts {
    /// `rota_executions_total{job,status}`.
    pub executions: BTreeMap<(String, String), u64>,
    /// `rota_execution_duration_seconds`: from the final attempt's start to the end.
    pub duration: Histogram,
    /// `rota_job_last_success_timestamp_seconds{job}`.
    pub last_success: BTreeMap<String, f64>,
    /// `rota_discovery_updates_total{set,stage}`: (received, committed).
    pub discovery: BTreeMap<String, (u64, u64)>,
    /// `rota_probe_results_total{job,status}`.
    pub probes: BTreeMap<(String, String), u64>,
    /// `rota_sink_points_total{sink,outcome}`: (written, dropped).
    pub sink_points: BTreeMap<String, (u64, u64)>,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            executions: BTreeMap::new(),
            duration: Histogram::new(&DURATION_BUCKETS_SECONDS),
            last_success: BTreeMap::new(),
            discovery: BTreeMap::new(),
            probes: BTreeMap::new(),
            sink_points: BTreeMap::new(),
        }
    }
}

/// Shared by every writer on a node, read by `/metrics`.
#[derive(Debug, Default)]
pub struct Telemetry {
    counts: Mutex<Counts>,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The counters, for reading or counting. A poisoned lock only means a
    /// writer panicked mid-increment; the counts are still usable.
    pub fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One execution ended for good.
    pub fn execution_finished(
        &self,
        job: &str,
        status: &str,
        duration_s: Option<f64>,
        finished_at_s: Option<f64>,
    ) {
        let mut c = self.counts();
        *c.executions
            .entry((job.to_string(), status.to_string()))
            .or_default() += 1;
        if let Some(d) = duration_s {
            c.duration.observe(d);
        }
        if status == "succeeded" {
            if let Some(at) = finished_at_s {
                let last = c.last_success.entry(job.to_string()).or_default();
                *last = last.max(at);
            }
        }
    }

    /// Discovery of `set` received `received` more updates and committed
    /// `committed` more changes.
    pub fn discovery(&self, set: &str, received: u64, committed: u64) {
        let mut c = self.counts();
        let entry = c.discovery.entry(set.to_string()).or_default();
        entry.0 += received;
        entry.1 += committed;
    }

    /// A probe of `job` ended with `status` (`synced`, `partial`, ...).
    pub fn probe_result(&self, job: &str, status: &str) {
        *self
            .counts()
            .probes
            .entry((job.to_string(), status.to_string()))
            .or_default() += 1;
    }

    /// Sink `sink` wrote or dropped points.
    pub fn sink_points(&self, sink: &str, written: u64, dropped: u64) {
        let mut c = self.counts();
        let entry = c.sink_points.entry(sink.to_string()).or_default();
        entry.0 += written;
        entry.1 += dropped;
    }
}

/// Seconds since the epoch of an RFC 3339 time in event data.
fn epoch_seconds(value: &serde_json::Value) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(value.as_str()?).ok()?;
    Some(at.timestamp_micros() as f64 / 1e6)
}

/// Starts the worker `telemetry`: counts finished executions while the node leads.
pub fn spawn(node: Arc<Node>, telemetry: Arc<Telemetry>, workers: &Runner) {
    workers.spawn("telemetry", move |ctx| async move {
        let mut events = node.store().subscribe_without_kv();
        let leadership = node.leadership();
        ctx.set_detail("counting finished executions while leading");
        loop {
            let event = tokio::select! {
                () = ctx.stopping() => return Ok(()),
                event = events.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "telemetry fell behind the store's events");
                    continue;
                }
                Err(RecvError::Closed) => return Ok(()),
            };
            let EventKind::Published(e) = &event.kind else {
                continue;
            };
            if e.event_type != types::EXECUTION_FINISHED || !*leadership.borrow() {
                continue;
            }
            let data = &e.data;
            let job = data["job"].as_str().unwrap_or_default();
            if rota_core::workflow::split_job_name(job).is_some_and(|(_, j)| j.starts_with('@')) {
                continue; // a workflow's trigger job does not run anything
            }
            let status = data["status"].as_str().unwrap_or_default();
            let started = epoch_seconds(&data["started_at"]);
            let finished = epoch_seconds(&data["finished_at"]);
            let duration = started.zip(finished).map(|(s, f)| (f - s).max(0.0));
            telemetry.execution_finished(job, status, duration, finished);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.5, 3.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.buckets, [2, 3]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum, 5.0);
    }

    #[test]
    fn executions_count_by_job_and_status_and_keep_the_last_success() {
        let t = Telemetry::new();
        t.execution_finished("a", "succeeded", Some(2.0), Some(100.0));
        t.execution_finished("a", "succeeded", Some(4.0), Some(90.0));
        t.execution_finished("a", "failed", None, Some(110.0));
        let c = t.counts();
        assert_eq!(c.executions[&("a".into(), "succeeded".into())], 2);
        assert_eq!(c.executions[&("a".into(), "failed".into())], 1);
        assert_eq!(c.last_success["a"], 100.0);
        assert_eq!(c.duration.count, 2);
    }
}
