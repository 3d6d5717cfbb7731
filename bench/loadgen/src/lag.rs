//! Dispatch lag: `jobs` one-shot jobs all due at the same whole second, and how
//! late each run reached its executor (`record`: the instant rota handed it over)
//! or its process (`shell`: the child's own clock, so process start-up counts).
//!
//! The fire time must lie after the last job is created, or early jobs would fire
//! while later ones are still being written. The lead time is guessed from the job
//! count; when creation overruns it, the jobs are deleted and the step is repeated
//! with a lead derived from the measured creation time.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::BenchError;
use crate::jobs::{create_jobs, delete_jobs, job_names, job_spec, require_all, JobExecutor};
use crate::result::{Measurement, Outcome, Probe, ROTA};
use crate::stamps::{
    read_stamps, remove_if_exists, shell_probe_command, wait_for_lines, Stamp, StampFormat,
};
use crate::stats::{nanos_to_ms, Summary};

/// Attempts before giving up on finishing creation ahead of the fire time.
const ATTEMPTS: u32 = 3;
/// Creation must end at least this long before the fire time.
const MARGIN: Duration = Duration::from_millis(500);

/// Parameters of [`run_lag`].
#[derive(Debug, Clone)]
pub struct LagRun {
    pub url: String,
    pub jobs: usize,
    pub executor: StampFormat,
    pub clients: usize,
    /// Where the stamp files go; the server must be able to write there.
    pub dir: PathBuf,
    /// Seconds from the start of creation to the fire time; guessed when absent.
    pub lead_secs: Option<f64>,
    /// How long after the fire time to wait for the last run.
    pub wait_secs: u64,
}

/// The first whole second at or after `t`.
pub fn next_whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = t.with_nanosecond(0).unwrap_or(t);
    if floor == t {
        t
    } else {
        floor + TimeDelta::seconds(1)
    }
}

/// The first stamp of each job whose name is in `names`, as lag in milliseconds.
/// Later stamps of the same job (a retry) do not count twice.
pub fn lag_samples(stamps: &[Stamp], names: &HashSet<&str>) -> Vec<f64> {
    let mut seen = HashSet::new();
    stamps
        .iter()
        .filter(|s| names.contains(s.job.as_str()) && seen.insert(s.job.as_str()))
        .map(|s| nanos_to_ms(s.lag_ns()))
        .collect()
}

fn format_name(format: StampFormat) -> &'static str {
    match format {
        StampFormat::Record => "record",
        StampFormat::Shell => "shell",
    }
}

/// Runs the step and reports it.
pub async fn run_lag(run: LagRun) -> Result<Outcome, BenchError> {
    let probe = Probe::start();
    let kind = format_name(run.executor);
    let mut lead = run
        .lead_secs
        .unwrap_or(2.0 + run.jobs as f64 / 500.0)
        .max(1.0);
    let mut last_secs = 0.0;
    for attempt in 1..=ATTEMPTS {
        let file = run
            .dir
            .join(format!("lag-{kind}-{}-{attempt}.log", run.jobs));
        remove_if_exists(&file)?;
        let executor = match run.executor {
            StampFormat::Record => JobExecutor::record(&file),
            StampFormat::Shell => JobExecutor::Shell {
                command: shell_probe_command(&file),
            },
        };
        let lead_delta = TimeDelta::milliseconds((lead * 1000.0) as i64);
        let at = next_whole_second(Utc::now() + lead_delta);
        let spec = job_spec(
            &json!({"at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
            &executor,
        );
        let names = Arc::new(job_names(
            &format!("lag-{kind}-{}-a{attempt}", run.jobs),
            0,
            run.jobs,
        ));
        info!(jobs = run.jobs, executor = kind, %at, attempt, "creating lag jobs");
        let created = create_jobs(&run.url, names.clone(), run.clients, spec).await?;
        let created_at = Utc::now();
        last_secs = created.secs;
        if let Err(err) = require_all(&created) {
            let _ = delete_jobs(&run.url, names, run.clients).await;
            return Err(err);
        }
        let margin = TimeDelta::from_std(MARGIN).unwrap_or_default();
        if created_at + margin > at {
            warn!(
                attempt,
                secs = created.secs,
                lead,
                "creation overran the fire time; again"
            );
            require_all(&delete_jobs(&run.url, names, run.clients).await?)?;
            lead = created.secs * 2.0 + 2.0;
            continue;
        }
        let until_fire = (at - Utc::now()).to_std().unwrap_or_default();
        let deadline = Instant::now() + until_fire + Duration::from_secs(run.wait_secs);
        let lines = wait_for_lines(&file, run.jobs, deadline).await?;
        if lines < run.jobs {
            warn!(
                lines,
                expected = run.jobs,
                "not every run arrived before the deadline"
            );
        }
        let stamps = read_stamps(&file, run.executor)?;
        if let Err(err) = require_all(&delete_jobs(&run.url, names.clone(), run.clients).await?) {
            warn!(error = %err, "could not delete every lag job");
        }
        let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
        let samples = lag_samples(&stamps, &wanted);
        return Ok(Outcome::new(
            ROTA,
            &probe,
            Measurement::Lag {
                executor: kind.to_string(),
                jobs: run.jobs,
                observed: samples.len(),
                lag_ms: Summary::from_samples(samples),
            },
        ));
    }
    Err(BenchError::CreationOverran {
        jobs: run.jobs,
        attempts: ATTEMPTS,
        last_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_second_rounds_up_only_when_needed() {
        let exact = DateTime::parse_from_rfc3339("2025-01-01T00:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(next_whole_second(exact), exact);
        let later = exact + TimeDelta::milliseconds(1);
        assert_eq!(next_whole_second(later), exact + TimeDelta::seconds(1));
    }

    #[test]
    fn samples_count_each_wanted_job_once() {
        let stamp = |job: &str, lag: i128| Stamp {
            job: job.to_string(),
            scheduled_ns: 1_000_000_000,
            at_ns: 1_000_000_000 + lag,
        };
        let stamps = [
            stamp("a", 2_000_000),
            stamp("b", 4_000_000),
            stamp("a", 9_000_000),
            stamp("other", 1),
        ];
        let wanted: HashSet<&str> = ["a", "b"].into_iter().collect();
        assert_eq!(lag_samples(&stamps, &wanted), vec![2.0, 4.0]);
    }
}
