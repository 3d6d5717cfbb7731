//! The result of one benchmark step, as one JSON line on stdout.
//!
//! Each harness (`loadgen` for rota and etcd, `cron-peer` for tokio-cron-scheduler)
//! prints [`Outcome`]s in this one format; `loadgen report` turns a file of them
//! into the markdown tables of the performance document. A human summary of the
//! same result goes to stderr.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// System names as they appear in the tables.
pub const ROTA: &str = "rota";
pub const ETCD: &str = "etcd";
pub const TOKIO_CRON: &str = "tokio-cron-scheduler";

/// What one benchmark step measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "bench", rename_all = "snake_case")]
pub enum Measurement {
    /// Durable puts of distinct keys.
    Kv {
        clients: usize,
        value_bytes: usize,
        ops: u64,
        errors: u64,
        secs: f64,
        ops_per_sec: f64,
        latency_ms: Option<Summary>,
    },
    /// Job creations (`create`) or deletions (`delete`) through the API.
    Jobs {
        op: String,
        clients: usize,
        jobs: usize,
        errors: u64,
        secs: f64,
        jobs_per_sec: f64,
        latency_ms: Option<Summary>,
    },
    /// `jobs` runs due at the same instant: how late each was handed to its
    /// executor (`record`) or started its process (`shell`).
    Lag {
        executor: String,
        jobs: usize,
        observed: usize,
        lag_ms: Option<Summary>,
    },
    /// Sustained firing of `jobs` every-second jobs over `window_secs`.
    Fires {
        executor: String,
        jobs: usize,
        window_secs: u64,
        expected: u64,
        fired: u64,
        fires_per_sec: f64,
        counted_by: String,
        lag_ms: Option<Summary>,
        max_queued: Option<u64>,
        kept_up: bool,
    },
    /// Resident memory with `jobs` jobs loaded, `created` of them by this step
    /// (the rest by an earlier one); `rss_before_bytes` is the resident set before
    /// them, so that the cost of a job can be told from the process's base size.
    Memory {
        jobs: usize,
        created: usize,
        rss_before_bytes: Option<u64>,
        rss_bytes: u64,
        peak_rss_bytes: Option<u64>,
        data_bytes: Option<u64>,
        load_secs: f64,
    },
    /// Time from starting the process (after `signal` stopped the previous one)
    /// until it serves again with all `jobs` loaded.
    Restart {
        jobs: usize,
        signal: String,
        stop_ms: Option<f64>,
        ready_ms: f64,
        jobs_confirmed: bool,
        rss_bytes: Option<u64>,
    },
}

impl Measurement {
    pub fn bench(&self) -> &'static str {
        match self {
            Measurement::Kv { .. } => "kv",
            Measurement::Jobs { .. } => "jobs",
            Measurement::Lag { .. } => "lag",
            Measurement::Fires { .. } => "fires",
            Measurement::Memory { .. } => "memory",
            Measurement::Restart { .. } => "restart",
        }
    }
}

/// A measurement with the system it describes and how busy the machine was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub system: String,
    /// 1-minute load average when the step started and ended: the machine is shared,
    /// and a load above its core count means the figures were disturbed.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub finished_at: String,
    #[serde(flatten)]
    pub measurement: Measurement,
}

impl Outcome {
    pub fn new(system: &str, load_before: Option<f64>, measurement: Measurement) -> Outcome {
        Outcome {
            system: system.to_string(),
            load_before,
            load_after: load_average(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            measurement,
        }
    }

    /// Prints the JSON line on stdout and a summary for people on stderr.
    pub fn emit(&self) {
        if let Ok(line) = serde_json::to_string(self) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        eprintln!("{}", self.human());
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let lat = |s: &Option<Summary>| match s {
            Some(s) => format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
                s.p50, s.p99, s.max, s.count
            ),
            None => "no samples".to_string(),
        };
        let body = match &self.measurement {
            Measurement::Kv {
                clients,
                ops,
                errors,
                ops_per_sec,
                latency_ms,
                ..
            } => format!(
                "kv clients={clients}: {ops} ops ({errors} errors), {ops_per_sec:.0} ops/s, {}",
                lat(latency_ms)
            ),
            Measurement::Jobs {
                op,
                clients,
                jobs,
                errors,
                jobs_per_sec,
                latency_ms,
                ..
            } => format!(
                "jobs {op} {jobs} clients={clients}: {jobs_per_sec:.0} jobs/s ({errors} errors), {}",
                lat(latency_ms)
            ),
            Measurement::Lag {
                executor,
                jobs,
                observed,
                lag_ms,
            } => format!(
                "lag {executor} jobs={jobs}: observed {observed}, lag {}",
                lat(lag_ms)
            ),
            Measurement::Fires {
                executor,
                jobs,
                expected,
                fired,
                fires_per_sec,
                kept_up,
                lag_ms,
                ..
            } => format!(
                "fires {executor} jobs={jobs}: {fired}/{expected} fired, {fires_per_sec:.0}/s, \
                 kept up: {kept_up}, lag {}",
                lat(lag_ms)
            ),
            Measurement::Memory {
                jobs,
                rss_bytes,
                load_secs,
                ..
            } => format!(
                "memory jobs={jobs}: RSS {:.1} MiB (loaded in {load_secs:.1}s)",
                *rss_bytes as f64 / MIB
            ),
            Measurement::Restart {
                jobs,
                signal,
                ready_ms,
                jobs_confirmed,
                ..
            } => format!(
                "restart jobs={jobs} after {signal}: ready in {ready_ms:.0} ms \
                 (all jobs confirmed: {jobs_confirmed})"
            ),
        };
        format!("[{}] {body}", self.system)
    }
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// The 1-minute load average, when the platform has `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outcome {
        Outcome {
            system: ROTA.to_string(),
            load_before: Some(0.5),
            load_after: Some(1.5),
            finished_at: "2025-01-01T00:00:00Z".to_string(),
            measurement: Measurement::Lag {
                executor: "record".to_string(),
                jobs: 1000,
                observed: 1000,
                lag_ms: Summary::from_samples(vec![1.0, 2.0, 3.0]),
            },
        }
    }

    #[test]
    fn outcome_round_trips_as_one_flat_object() {
        let o = sample();
        let line = serde_json::to_string(&o).unwrap();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["bench"], "lag");
        assert_eq!(v["system"], "rota");
        assert_eq!(v["jobs"], 1000);
        let back: Outcome = serde_json::from_str(&line).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn human_line_names_system_and_figures() {
        let h = sample().human();
        assert!(h.starts_with("[rota] lag record jobs=1000"), "{h}");
        assert!(h.contains("p99 3.00 ms"), "{h}");
    }
}
