//! Sustained firing: `jobs` jobs on a every-second cron, observed over a window of
//! whole seconds after a warm-up. With the `record` executor every run leaves a
//! stamp, so the count and the lag of the window's instants are exact; with `shell`
//! (`true`) runs are counted by rota's fired counter (`rota_fired_total`, else the
//! health's `scheduler.fired_total`) read at the window's edges.
//!
//! The scheduler "kept up" when (record) every instant of the window fired and no
//! run was handed over later than one period (1 s), or (shell) at least 99 % of the
//! expected runs fired and the queue never held more than one period's worth. A
//! run is fired (and counted) up to the server's fire-ahead before its instant, so
//! the counter is read that long plus half a period before the window's edges: it
//! counts exactly the window's instants as long as runs are fired less than half a
//! period from that time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use tracing::{info, warn};

use crate::client::{unique_client_id, RotaClient};
use crate::error::BenchError;
use crate::jobs::{create_jobs, delete_jobs, job_names, job_spec, require_all, JobExecutor};
use crate::lag::next_whole_second;
use crate::result::{Measurement, Outcome, Probe, ROTA};
use crate::stamps::{read_stamps, remove_if_exists, Stamp, StampFormat};
use crate::stats::{nanos_to_ms, Summary};

/// Every second, with the seconds field (6-field cron).
pub const EVERY_SECOND: &str = "*/1 * * * * *";
/// How long past the window's end late runs of its instants are waited for.
const GRACE: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// Parameters of [`run_fires`].
#[derive(Debug, Clone)]
pub struct FiresRun {
    pub url: String,
    pub jobs: usize,
    pub executor: StampFormat,
    pub clients: usize,
    pub dir: PathBuf,
    pub window_secs: u64,
    pub warmup_secs: u64,
    /// The server's `--fire-ahead`.
    pub fire_ahead: Duration,
}

/// Stamps of the instants in `[from_ns, to_ns)`.
pub fn in_window(stamps: &[Stamp], from_ns: i128, to_ns: i128) -> Vec<&Stamp> {
    stamps
        .iter()
        .filter(|s| s.scheduled_ns >= from_ns && s.scheduled_ns < to_ns)
        .collect()
}

/// How many runs rota says it fired so far, and which figure says so.
async fn fired_counter(rota: &RotaClient) -> Option<(u64, &'static str)> {
    if let Ok(Some(n)) = rota.fired_total().await {
        return Some((n, "rota_fired_total"));
    }
    match rota.health().await {
        Ok(h) => h.fired_total.map(|n| (n, "health scheduler.fired_total")),
        Err(_) => None,
    }
}

fn unix_ns(t: chrono::DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

async fn sleep_until_wall(t: chrono::DateTime<Utc>) {
    if let Ok(d) = (t - Utc::now()).to_std() {
        tokio::time::sleep(d).await;
    }
}

/// Runs the step and reports it.
pub async fn run_fires(run: FiresRun) -> Result<Outcome, BenchError> {
    let probe = Probe::start();
    let (kind, executor, file) = match run.executor {
        StampFormat::Record => {
            let file = run.dir.join(format!("fires-record-{}.log", run.jobs));
            remove_if_exists(&file)?;
            ("record", JobExecutor::record(&file), Some(file))
        }
        StampFormat::Shell => (
            "shell",
            JobExecutor::Shell {
                command: "true".to_string(),
            },
            None,
        ),
    };
    let spec = job_spec(&json!({"cron": EVERY_SECOND}), &executor);
    let names = Arc::new(job_names(
        &format!("fires-{kind}-{}", run.jobs),
        0,
        run.jobs,
    ));
    info!(
        jobs = run.jobs,
        executor = kind,
        "creating every-second jobs"
    );
    let created = create_jobs(&run.url, names.clone(), run.clients, spec).await?;
    if let Err(err) = require_all(&created) {
        let _ = delete_jobs(&run.url, names, run.clients).await;
        return Err(err);
    }

    let rota = RotaClient::new(&run.url, unique_client_id("fires", 0))?;
    let t0 = next_whole_second(Utc::now() + TimeDelta::seconds(run.warmup_secs as i64));
    let window = TimeDelta::seconds(run.window_secs as i64);
    let t1 = t0 + window;
    info!(%t0, %t1, "measuring");
    // The counter is read half a period before each edge's fire time (the edge
    // less the fire-ahead), when no instant is being fired: read at that time
    // itself, it would race the edge's own runs and count one instant too many or
    // too few. (With a 1.5 s fire-ahead, reading half a period before the edges
    // raced every other run.)
    let half_period =
        TimeDelta::milliseconds(500) + TimeDelta::from_std(run.fire_ahead).unwrap_or_default();
    sleep_until_wall(t0 - half_period).await;
    let fired_before = fired_counter(&rota).await;
    sleep_until_wall(t0).await;
    let mut max_queued: Option<u64> = None;
    let mut fired_after = None;
    while Utc::now() < t1 {
        if fired_after.is_none() && Utc::now() >= t1 - half_period {
            fired_after = Some(fired_counter(&rota).await);
        }
        if let Ok(h) = rota.health().await {
            if let Some(q) = h.queued {
                max_queued = Some(max_queued.map_or(q, |m| m.max(q)));
            }
        }
        let next = Utc::now() + TimeDelta::from_std(SAMPLE_EVERY).unwrap_or_default();
        let next = if fired_after.is_none() {
            next.min(t1 - half_period)
        } else {
            next.min(t1)
        };
        sleep_until_wall(next).await;
    }
    let fired_after = match fired_after {
        Some(after) => after,
        None => fired_counter(&rota).await,
    };

    let expected = run.jobs as u64 * run.window_secs;
    let (t0_ns, t1_ns) = (unix_ns(t0), unix_ns(t1));
    let mut window_stamps = Vec::new();
    if let Some(file) = &file {
        // Runs of the window's last instants may still be on their way.
        let deadline = t1 + TimeDelta::from_std(GRACE).unwrap_or_default();
        loop {
            let stamps = read_stamps(file, StampFormat::Record)?;
            let n = in_window(&stamps, t0_ns, t1_ns).len() as u64;
            if n >= expected || Utc::now() >= deadline {
                window_stamps = stamps;
                break;
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }
    if let Err(err) = require_all(&delete_jobs(&run.url, names, run.clients).await?) {
        warn!(error = %err, "could not delete every fires job");
    }

    let (fired, counted_by, lag_ms) = if file.is_some() {
        let stamps = in_window(&window_stamps, t0_ns, t1_ns);
        let lags = stamps.iter().map(|s| nanos_to_ms(s.lag_ns())).collect();
        (
            stamps.len() as u64,
            "record file".to_string(),
            Summary::from_samples(lags),
        )
    } else {
        match (fired_before, fired_after) {
            (Some((a, by)), Some((b, _))) => (b.saturating_sub(a), by.to_string(), None),
            _ => (0, "unavailable".to_string(), None),
        }
    };
    let kept_up = match &lag_ms {
        Some(lag) => fired >= expected && lag.max < 1000.0,
        None => fired * 100 >= expected * 99 && max_queued.is_none_or(|q| q <= run.jobs as u64),
    };
    Ok(Outcome::new(
        ROTA,
        &probe,
        Measurement::Fires {
            executor: kind.to_string(),
            jobs: run.jobs,
            window_secs: run.window_secs,
            expected,
            fired,
            fires_per_sec: fired as f64 / run.window_secs.max(1) as f64,
            counted_by,
            lag_ms,
            max_queued,
            kept_up,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_is_half_open() {
        let stamp = |s: i128| Stamp {
            job: "j".into(),
            scheduled_ns: s,
            at_ns: s + 1,
        };
        let stamps = [stamp(9), stamp(10), stamp(15), stamp(20)];
        let inside: Vec<i128> = in_window(&stamps, 10, 20)
            .iter()
            .map(|s| s.scheduled_ns)
            .collect();
        assert_eq!(inside, vec![10, 15]);
    }

    #[test]
    fn unix_ns_of_a_known_instant() {
        let t = chrono::DateTime::parse_from_rfc3339("2023-11-14T22:13:20.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(unix_ns(t), 1_700_000_000_500_000_000);
    }
}
