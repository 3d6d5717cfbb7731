//! Creating and deleting many jobs through `PUT`/`DELETE /v1/jobs/{name}` from
//! concurrent clients: a benchmark of its own (creation throughput) and the set-up
//! and tear-down of the scheduling benchmarks.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tracing::info;

use crate::client::{unique_client_id, RotaClient};
use crate::error::BenchError;
use crate::kv::{closed_loop, ClosedLoop, Stop};
use crate::result::{Measurement, Outcome, Probe, ROTA};
use crate::stats::Summary;

/// What the benchmark jobs run.
#[derive(Debug, Clone, PartialEq)]
pub enum JobExecutor {
    /// `{"type": "record", "path": ...}`: appends a line per run, no process.
    Record { path: String },
    /// `{"type": "shell", "command": ...}`.
    Shell { command: String },
}

impl JobExecutor {
    pub fn record(path: &Path) -> JobExecutor {
        JobExecutor::Record {
            path: path.display().to_string(),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            JobExecutor::Record { .. } => "record",
            JobExecutor::Shell { .. } => "shell",
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            JobExecutor::Record { path } => json!({"type": "record", "path": path}),
            JobExecutor::Shell { command } => json!({"type": "shell", "command": command}),
        }
    }
}

/// A job document as the API takes it (the name comes from the path).
pub fn job_spec(schedule: &Value, executor: &JobExecutor) -> Value {
    json!({
        "schedule": schedule,
        "executor": executor.to_json(),
        // Keep the stored history small: the benchmarks only read their own files.
        "history_limit": 1,
    })
}

/// `{prefix}-{i:07}`: sorts by index and stays a valid job name.
pub fn job_names(prefix: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("{prefix}-{i:07}")).collect()
}

/// Creates (or replaces) every job of `names` with the same document, from
/// `clients` concurrent clients.
pub async fn create_jobs(
    url: &str,
    names: Arc<Vec<String>>,
    clients: usize,
    spec: Value,
) -> Result<ClosedLoop, BenchError> {
    let spec = Arc::new(spec);
    bulk(url, names, clients, "create", move |mut c, name| {
        let spec = spec.clone();
        async move {
            let r = c.put_job(&name, &spec).await;
            (c, r)
        }
    })
    .await
}

/// Deletes every job of `names` (missing ones count as deleted).
pub async fn delete_jobs(
    url: &str,
    names: Arc<Vec<String>>,
    clients: usize,
) -> Result<ClosedLoop, BenchError> {
    bulk(url, names, clients, "delete", |mut c, name| async move {
        let r = c.delete_job(&name).await;
        (c, r)
    })
    .await
}

async fn bulk<F, Fut>(
    url: &str,
    names: Arc<Vec<String>>,
    clients: usize,
    role: &str,
    op: F,
) -> Result<ClosedLoop, BenchError>
where
    F: Fn(RotaClient, String) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (RotaClient, Result<(), BenchError>)> + Send,
{
    let clients = (0..clients.clamp(1, names.len().max(1)))
        .map(|i| RotaClient::new(url, unique_client_id(role, i)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = names.len() as u64;
    closed_loop(clients, Stop::Ops(total), move |c, _, n| {
        let name = names.get(n as usize).cloned().unwrap_or_default();
        op(c, name)
    })
    .await
}

/// Fails with the first error when any request of a set-up step failed: the
/// scheduling benchmarks need every job in place.
pub fn require_all(result: &ClosedLoop) -> Result<(), BenchError> {
    match &result.first_error {
        None => Ok(()),
        Some(first) => Err(BenchError::SetupFailed {
            errors: result.errors,
            first: first.clone(),
        }),
    }
}

/// The `jobs` benchmark: create `count` jobs, then (when `delete`) delete them, each
/// step reported on its own.
pub async fn run_jobs(
    url: &str,
    prefix: &str,
    count: usize,
    clients: usize,
    spec: Value,
    delete: bool,
) -> Result<Vec<Outcome>, BenchError> {
    let names = Arc::new(job_names(prefix, 0, count));
    let mut outcomes = Vec::new();
    let probe = Probe::start();
    info!(count, clients, "creating jobs");
    let created = create_jobs(url, names.clone(), clients, spec).await?;
    outcomes.push(bulk_outcome("create", clients, count, created, &probe));
    if delete {
        let probe = Probe::start();
        info!(count, clients, "deleting jobs");
        let deleted = delete_jobs(url, names, clients).await?;
        outcomes.push(bulk_outcome("delete", clients, count, deleted, &probe));
    }
    Ok(outcomes)
}

pub fn bulk_outcome(
    op: &str,
    clients: usize,
    jobs: usize,
    result: ClosedLoop,
    probe: &Probe,
) -> Outcome {
    let ok = result.latencies_ms.len();
    Outcome::new(
        ROTA,
        probe,
        Measurement::Jobs {
            op: op.to_string(),
            clients,
            jobs,
            errors: result.errors,
            secs: result.secs,
            jobs_per_sec: ok as f64 / result.secs.max(f64::EPSILON),
            latency_ms: Summary::from_samples(result.latencies_ms),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_and_ordered() {
        let names = job_names("lag-record-1000", 998, 1001);
        assert_eq!(
            names,
            [
                "lag-record-1000-0000998",
                "lag-record-1000-0000999",
                "lag-record-1000-0001000"
            ]
        );
        assert!(names.iter().all(|n| n.len() <= 63));
    }

    #[test]
    fn spec_has_the_contract_shape() {
        let spec = job_spec(
            &json!({"cron": "0 0 1 1 *"}),
            &JobExecutor::Record {
                path: "/tmp/r.log".into(),
            },
        );
        assert_eq!(
            spec["executor"],
            json!({"type": "record", "path": "/tmp/r.log"})
        );
        assert_eq!(spec["schedule"]["cron"], "0 0 1 1 *");
        let shell = JobExecutor::Shell {
            command: "true".into(),
        };
        assert_eq!(shell.to_json(), json!({"type": "shell", "command": "true"}));
    }

    #[test]
    fn require_all_reports_the_first_failure() {
        let ok = ClosedLoop::default();
        assert!(require_all(&ok).is_ok());
        let failed = ClosedLoop {
            errors: 2,
            first_error: Some("PUT x answered 400".into()),
            ..ClosedLoop::default()
        };
        let err = require_all(&failed).unwrap_err().to_string();
        assert!(err.contains("2 requests") && err.contains("400"), "{err}");
    }
}
