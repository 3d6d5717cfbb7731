//! `cron-peer`: the peer side of rota's scheduling benchmarks, with
//! tokio-cron-scheduler (in-process, in-memory, 500 ms polling tick).
//!
//! It reproduces rota's steps as closely as an embedded library allows and prints
//! the same result lines as `loadgen` (see `loadgen::Outcome`):
//! - `lag`: N jobs whose 6-field cron names one specific second; each records
//!   `Utc::now()` when invoked (`record`), or spawns `sh -c 'date +%s%N'` and takes
//!   the child's clock (`shell`). Lag = that instant minus the scheduled second.
//! - `fires`: K jobs on `* * * * * *`, invocations counted over a window.
//! - `memory`: resident set of this process with N jobs registered.
//!
//! The scheduler's broadcast channels drop messages when a burst exceeds their
//! capacity (200 by default); they are sized from the job count so that the
//! comparison measures dispatch, not loss. `--channel-size` overrides it.

mod error;

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use error::PeerError;
use loadgen::lag::next_whole_second;
use loadgen::memory::proc_memory;
use loadgen::result::{Probe, TOKIO_CRON};
use loadgen::stats::{nanos_to_ms, Summary};
use loadgen::{Measurement, Outcome};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Attempts before giving up on registering ahead of the fire time.
const ATTEMPTS: u32 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "cron-peer",
    about = "tokio-cron-scheduler side of rota's benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Capacity of the scheduler's internal channels [default: from the job count].
    #[arg(long, global = true)]
    channel_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Exec {
    /// Note the invocation instant in the job closure.
    Record,
    /// Spawn `sh -c 'date +%s%N'` and take the child's clock.
    Shell,
}

impl Exec {
    fn name(self) -> &'static str {
        match self {
            Exec::Record => "record",
            Exec::Shell => "shell",
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lag of N jobs due at the same second (one result per N).
    Lag {
        #[arg(long, value_delimiter = ',', required = true)]
        jobs: Vec<usize>,
        #[arg(long, value_enum, default_value = "record")]
        exec: Exec,
        /// Seconds between the start of registration and the fire time.
        #[arg(long)]
        lead_secs: Option<f64>,
        /// Seconds to wait for the runs after the fire time.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
    },
    /// Sustained invocations per second of K every-second jobs.
    Fires {
        #[arg(long)]
        jobs: usize,
        #[arg(long, default_value_t = 10)]
        window_secs: u64,
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
    },
    /// Resident memory with N jobs registered.
    Memory {
        #[arg(long)]
        jobs: usize,
    },
}

fn unix_ns(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())
}

/// A 6-field cron (seconds first, UTC) that fires at `t`'s second once a year.
fn cron_for(t: DateTime<Utc>) -> String {
    format!(
        "{} {} {} {} {} *",
        t.second(),
        t.minute(),
        t.hour(),
        t.day(),
        t.month()
    )
}

fn channel_size(explicit: Option<usize>, jobs: usize) -> usize {
    // Each firing passes through the activation channel once and the notification
    // channel three times (scheduled, started, done), all within one tick.
    explicit.unwrap_or_else(|| (jobs * 4 + 64).max(200))
}

/// Registers `jobs` jobs on `cron` whose runs send their instant (Unix ns) to the
/// returned receiver; answers how long registration took.
async fn register(
    sched: &JobScheduler,
    jobs: usize,
    cron: &str,
    exec: Exec,
) -> Result<(mpsc::UnboundedReceiver<i128>, f64), PeerError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    for _ in 0..jobs {
        let tx = tx.clone();
        let job = Job::new_async(cron, move |_id, _sched| {
            // Read before anything else: this is the moment the scheduler invoked us.
            let invoked = unix_ns(Utc::now());
            let tx = tx.clone();
            Box::pin(async move {
                let at = match exec {
                    Exec::Record => Some(invoked),
                    Exec::Shell => child_clock().await,
                };
                if let Some(at) = at {
                    let _ = tx.send(at);
                }
            })
        })?;
        sched.add(job).await?;
    }
    Ok((rx, started.elapsed().as_secs_f64()))
}

/// The clock of a freshly spawned `sh -c 'date +%s%N'`, as rota's shell probe reads
/// it.
async fn child_clock() -> Option<i128> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("date +%s%N")
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

async fn lag(
    jobs: usize,
    exec: Exec,
    lead_secs: Option<f64>,
    wait_secs: u64,
    channel: Option<usize>,
) -> Result<Outcome, PeerError> {
    let probe = Probe::start();
    let mut lead = lead_secs.unwrap_or(2.0 + jobs as f64 / 2000.0).max(1.0);
    for attempt in 1..=ATTEMPTS {
        let mut sched = JobScheduler::new_with_channel_size(channel_size(channel, jobs)).await?;
        let at = next_whole_second(Utc::now() + TimeDelta::milliseconds((lead * 1000.0) as i64));
        let (mut rx, secs) = register(&sched, jobs, &cron_for(at), exec).await?;
        if Utc::now() + TimeDelta::milliseconds(500) > at {
            eprintln!("[{TOKIO_CRON}] registration overran the fire time (attempt {attempt})");
            sched.shutdown().await?;
            lead = secs * 2.0 + 2.0;
            continue;
        }
        sched.start().await?;
        let until = (at - Utc::now()).to_std().unwrap_or_default();
        let deadline = Instant::now() + until + Duration::from_secs(wait_secs);
        let mut stamps = Vec::with_capacity(jobs);
        while stamps.len() < jobs {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ns)) => stamps.push(ns),
                Ok(None) | Err(_) => break,
            }
        }
        sched.shutdown().await?;
        let scheduled = unix_ns(at);
        let samples: Vec<f64> = stamps
            .iter()
            .map(|ns| nanos_to_ms(ns - scheduled))
            .collect();
        return Ok(Outcome::new(
            TOKIO_CRON,
            &probe,
            Measurement::Lag {
                executor: exec.name().to_string(),
                jobs,
                observed: samples.len(),
                lag_ms: Summary::from_samples(samples),
            },
        ));
    }
    Err(PeerError::RegistrationOverran {
        jobs,
        attempts: ATTEMPTS,
    })
}

async fn fires(
    jobs: usize,
    window_secs: u64,
    warmup_secs: u64,
    channel: Option<usize>,
) -> Result<Outcome, PeerError> {
    let probe = Probe::start();
    let mut sched = JobScheduler::new_with_channel_size(channel_size(channel, jobs)).await?;
    let (mut rx, _) = register(&sched, jobs, "* * * * * *", Exec::Record).await?;
    sched.start().await?;
    let t0 = next_whole_second(Utc::now() + TimeDelta::seconds(warmup_secs as i64));
    let t1 = t0 + TimeDelta::seconds(window_secs as i64);
    // Runs of the window's last second arrive within one tick (500 ms) after it.
    let stop = t1 + TimeDelta::seconds(1);
    let mut stamps = Vec::new();
    let until = (stop - Utc::now()).to_std().unwrap_or_default();
    let deadline = Instant::now() + until;
    while let Ok(Some(ns)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        stamps.push(ns);
    }
    sched.shutdown().await?;
    let (t0_ns, t1_ns) = (unix_ns(t0), unix_ns(t1));
    let second = 1_000_000_000;
    let lags: Vec<f64> = stamps
        .iter()
        .filter(|ns| **ns >= t0_ns && **ns < t1_ns)
        .map(|ns| nanos_to_ms(ns.rem_euclid(second)))
        .collect();
    let fired = lags.len() as u64;
    let expected = jobs as u64 * window_secs;
    Ok(Outcome::new(
        TOKIO_CRON,
        &probe,
        Measurement::Fires {
            executor: "record".to_string(),
            jobs,
            window_secs,
            expected,
            fired,
            fires_per_sec: fired as f64 / window_secs.max(1) as f64,
            counted_by: "closure calls".to_string(),
            lag_ms: Summary::from_samples(lags),
            max_queued: None,
            kept_up: fired * 100 >= expected * 99,
        },
    ))
}

async fn memory(jobs: usize, channel: Option<usize>) -> Result<Outcome, PeerError> {
    let probe = Probe::start();
    let mut sched = JobScheduler::new_with_channel_size(channel_size(channel, 0)).await?;
    let rss_before_bytes = proc_memory(std::process::id()).ok().map(|(rss, _)| rss);
    // Midnight, 1 January: never during the test.
    let (_rx, secs) = register(&sched, jobs, "0 0 0 1 1 *", Exec::Record).await?;
    sched.start().await?;
    let (rss_bytes, peak_rss_bytes) = proc_memory(std::process::id())?;
    sched.shutdown().await?;
    Ok(Outcome::new(
        TOKIO_CRON,
        &probe,
        Measurement::Memory {
            jobs,
            created: jobs,
            rss_before_bytes,
            rss_bytes,
            peak_rss_bytes,
            data_bytes: None,
            load_secs: secs,
            idle_rss_bytes: None,
            idle_secs: None,
        },
    ))
}

async fn run(cli: Cli) -> Result<(), PeerError> {
    match cli.command {
        Command::Lag {
            jobs,
            exec,
            lead_secs,
            wait_secs,
        } => {
            for n in jobs {
                lag(n, exec, lead_secs, wait_secs, cli.channel_size)
                    .await?
                    .emit();
            }
        }
        Command::Fires {
            jobs,
            window_secs,
            warmup_secs,
        } => fires(jobs, window_secs.max(1), warmup_secs, cli.channel_size)
            .await?
            .emit(),
        Command::Memory { jobs } => memory(jobs, cli.channel_size).await?.emit(),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // tokio-cron-scheduler reports dropped messages only through tracing. Its
    // `cron_job` module logs an error for every run whose "done" notification has no
    // listener, which is every run here: silenced as noise.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("warn,tokio_cron_scheduler::job::cron_job=off")
            }),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cron-peer: {}", loadgen::kv::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_names_one_second() {
        let t = DateTime::parse_from_rfc3339("2025-03-09T07:05:42Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(cron_for(t), "42 5 7 9 3 *");
    }

    #[test]
    fn channels_grow_with_the_burst() {
        assert_eq!(channel_size(None, 1), 200);
        assert_eq!(channel_size(None, 10_000), 40_064);
        assert_eq!(channel_size(Some(50), 10_000), 50);
    }

    #[tokio::test]
    async fn child_clock_reads_a_plausible_time() {
        let before = unix_ns(Utc::now());
        let child = child_clock().await.unwrap();
        assert!(child >= before - 1_000_000_000, "{child} vs {before}");
    }
}
