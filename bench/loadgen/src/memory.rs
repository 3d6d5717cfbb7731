//! Memory with many jobs, and how long a restart takes until the server is useful
//! again.
//!
//! `memory` fills rota with jobs that never fire during the test (a yearly cron),
//! waits until its scheduler reports them all loaded and reads the server's
//! resident set from `/proc/<pid>/status`. For etcd the same job documents are
//! stored as values under `jobs/<name>`, which is what a scheduler built on etcd
//! would keep. `wait-ready` times a restart that the caller performed: from the new
//! process's start until the health answers leader with every job loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::client::{EtcdClient, RotaClient};
use crate::error::BenchError;
use crate::jobs::{bulk_outcome, create_jobs, job_names, job_spec, require_all, JobExecutor};
use crate::kv::{closed_loop, Stop, Target};
use crate::result::{Measurement, Outcome, Probe};

/// A cron that does not fire during a benchmark (midnight, 1 January).
pub const NEVER_DURING_TEST: &str = "0 0 1 1 *";
const POLL: Duration = Duration::from_millis(20);

/// Resident set and its peak, in bytes, from `/proc/<pid>/status`.
pub fn proc_memory(pid: u32) -> Result<(u64, Option<u64>), BenchError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| BenchError::io(&path, e))?;
    let rss = status_kib(&text, "VmRSS:").ok_or(BenchError::ProcField {
        pid,
        field: "VmRSS",
    })?;
    Ok((rss * 1024, status_kib(&text, "VmHWM:").map(|k| k * 1024)))
}

/// A `kB` field of a `/proc/<pid>/status` text.
pub fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Bytes of the regular files under `path` (apparent size); `None` when it cannot
/// be read.
pub fn dir_size(path: &Path) -> Option<u64> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if meta.is_file() {
        return Some(meta.len());
    }
    if !meta.is_dir() {
        return Some(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()? {
        total += dir_size(&entry.ok()?.path()).unwrap_or(0);
    }
    Some(total)
}

/// Parameters of [`run_memory`].
#[derive(Debug, Clone)]
pub struct MemoryRun {
    pub target: Target,
    pub url: String,
    pub pid: u32,
    /// Total jobs wanted; jobs `from..jobs` are created by this run (earlier ones
    /// exist from a previous run).
    pub jobs: usize,
    pub from: usize,
    pub clients: usize,
    /// Where the (never written) record file of the jobs points.
    pub dir: PathBuf,
    /// The server's data directory, to report its size.
    pub data_dir: Option<PathBuf>,
    /// Longest wait for the scheduler to report every job loaded.
    pub load_timeout: Duration,
    /// When non-zero, the resident set is read again after this long without
    /// requests.
    pub idle: Duration,
}

/// Creates the jobs, waits for them to be loaded and reports memory (and, for
/// rota, the creation throughput at this scale).
pub async fn run_memory(run: MemoryRun) -> Result<Vec<Outcome>, BenchError> {
    let probe = Probe::start();
    let record = JobExecutor::record(&run.dir.join("memory-never.log"));
    let spec = job_spec(&json!({"cron": NEVER_DURING_TEST}), &record);
    let names = Arc::new(job_names("mem", run.from, run.jobs));
    let mut outcomes = Vec::new();
    let rss_before_bytes = proc_memory(run.pid).ok().map(|(rss, _)| rss);
    info!(
        system = run.target.system(),
        jobs = names.len(),
        "storing jobs"
    );
    let load_secs = match run.target {
        Target::Rota => {
            let created = create_jobs(&run.url, names.clone(), run.clients, spec).await?;
            require_all(&created)?;
            let secs = created.secs;
            outcomes.push(bulk_outcome(
                "create",
                run.clients,
                names.len(),
                created,
                &probe,
            ));
            let started = Instant::now();
            let rota = RotaClient::new(&run.url, String::new())?;
            if !wait_jobs_loaded(&rota, run.jobs, run.load_timeout).await? {
                warn!("health has no scheduler job count; memory read without waiting");
            }
            secs + started.elapsed().as_secs_f64()
        }
        Target::Etcd => {
            let clients = (0..run.clients.max(1))
                .map(|_| EtcdClient::new(&run.url))
                .collect::<Result<Vec<_>, _>>()?;
            let names_for_op = names.clone();
            let result = closed_loop(clients, Stop::Ops(names.len() as u64), move |c, _, n| {
                let name = names_for_op.get(n as usize).cloned().unwrap_or_default();
                let mut doc = spec.clone();
                doc["name"] = json!(name);
                let value = doc.to_string();
                async move {
                    let r = c.put(&format!("jobs/{name}"), &value).await;
                    (c, r)
                }
            })
            .await?;
            require_all(&result)?;
            result.secs
        }
    };
    let (rss_bytes, mut peak_rss_bytes) = proc_memory(run.pid)?;
    let (idle_rss_bytes, idle_secs) = if run.idle.is_zero() {
        (None, None)
    } else {
        info!(secs = run.idle.as_secs(), "idle before reading RSS again");
        tokio::time::sleep(run.idle).await;
        let (idle_rss, idle_peak) = proc_memory(run.pid)?;
        peak_rss_bytes = idle_peak.or(peak_rss_bytes);
        (Some(idle_rss), Some(run.idle.as_secs()))
    };
    outcomes.push(Outcome::new(
        run.target.system(),
        &probe,
        Measurement::Memory {
            jobs: run.jobs,
            created: names.len(),
            rss_before_bytes,
            rss_bytes,
            peak_rss_bytes,
            data_bytes: run.data_dir.as_deref().and_then(dir_size),
            load_secs,
            idle_rss_bytes,
            idle_secs,
        },
    ));
    Ok(outcomes)
}

/// Polls rota's health until its scheduler reports at least `jobs` jobs. Answers
/// `false` when the health has no scheduler job count to wait for.
async fn wait_jobs_loaded(
    rota: &RotaClient,
    jobs: usize,
    timeout: Duration,
) -> Result<bool, BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        let h = rota.health().await?;
        match h.scheduler_jobs {
            None => return Ok(false),
            Some(n) if n >= jobs as u64 => return Ok(true),
            Some(n) if Instant::now() >= deadline => {
                return Err(BenchError::NotReady {
                    url: rota.base().to_string(),
                    waited_secs: timeout.as_secs(),
                    last: format!("scheduler reports {n} of {jobs} jobs"),
                })
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Parameters of [`wait_ready`].
#[derive(Debug, Clone)]
pub struct ReadyWait {
    pub target: Target,
    pub url: String,
    /// Jobs the scheduler must report loaded (rota only).
    pub jobs: usize,
    /// When the new process was started (Unix ns, from the caller's clock).
    pub started_ns: i128,
    /// How long the previous process took to exit, as the caller measured it.
    pub stop_ms: Option<f64>,
    pub signal: String,
    /// The new process, to read its memory once ready.
    pub pid: Option<u32>,
    pub timeout: Duration,
}

/// What the server answered to one readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    NotYet,
    /// Serving; `confirmed` when the job count could be checked.
    Ready {
        confirmed: bool,
    },
}

/// Whether a rota health answer means "leader with `jobs` jobs loaded".
pub fn rota_readiness(h: &crate::client::Health, jobs: usize) -> Readiness {
    if !h.is_leader() {
        return Readiness::NotYet;
    }
    match h.scheduler_jobs {
        None => Readiness::Ready { confirmed: false },
        Some(n) if n >= jobs as u64 => Readiness::Ready { confirmed: true },
        Some(_) => Readiness::NotYet,
    }
}

/// Polls until the restarted server is ready and reports the time it took.
pub async fn wait_ready(w: ReadyWait) -> Result<Outcome, BenchError> {
    let probe = Probe::start();
    let deadline = Instant::now() + w.timeout;
    let rota = RotaClient::new(&w.url, String::new())?;
    let etcd = EtcdClient::new(&w.url)?;
    let mut last = String::from("no answer yet");
    let confirmed = loop {
        let state = match w.target {
            Target::Rota => match rota.health().await {
                Ok(h) => {
                    last = format!("role {:?}, scheduler jobs {:?}", h.role, h.scheduler_jobs);
                    rota_readiness(&h, w.jobs)
                }
                Err(e) => {
                    last = e.to_string();
                    Readiness::NotYet
                }
            },
            Target::Etcd => match etcd.healthy().await {
                Ok(true) => Readiness::Ready { confirmed: true },
                Ok(false) => Readiness::NotYet,
                Err(e) => {
                    last = e.to_string();
                    Readiness::NotYet
                }
            },
        };
        if let Readiness::Ready { confirmed } = state {
            break confirmed;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::NotReady {
                url: w.url,
                waited_secs: w.timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    };
    let now_ns = i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let ready_ms = (now_ns - w.started_ns) as f64 / 1e6;
    let rss_bytes = w.pid.and_then(|p| proc_memory(p).ok()).map(|(rss, _)| rss);
    Ok(Outcome::new(
        w.target.system(),
        &probe,
        Measurement::Restart {
            jobs: w.jobs,
            signal: w.signal,
            stop_ms: w.stop_ms,
            ready_ms,
            jobs_confirmed: confirmed,
            rss_bytes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Health;

    #[test]
    fn reads_kib_fields() {
        let text = "Name:\trota\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_kib(text, "VmRSS:"), Some(102_400));
        assert_eq!(status_kib(text, "VmHWM:"), Some(204_800));
        assert_eq!(status_kib(text, "VmSwap:"), None);
    }

    #[test]
    fn own_process_has_a_resident_set() {
        let (rss, peak) = proc_memory(std::process::id()).unwrap();
        assert!(rss > 0);
        assert!(peak.unwrap() >= rss);
    }

    #[test]
    fn a_missing_process_is_an_error() {
        // Above the kernel's pid_max limit (2^22), so never a live process.
        assert!(proc_memory(u32::MAX).is_err());
    }

    #[test]
    fn dir_size_adds_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_size(dir.path()), Some(15));
        assert_eq!(dir_size(&dir.path().join("missing")), None);
    }

    #[test]
    fn readiness_needs_leader_and_all_jobs() {
        let h = |role: &str, jobs: Option<u64>| Health {
            role: role.to_string(),
            scheduler_jobs: jobs,
            ..Health::default()
        };
        assert_eq!(
            rota_readiness(&h("follower", Some(10)), 10),
            Readiness::NotYet
        );
        assert_eq!(rota_readiness(&h("leader", Some(9)), 10), Readiness::NotYet);
        assert_eq!(
            rota_readiness(&h("leader", Some(10)), 10),
            Readiness::Ready { confirmed: true }
        );
        assert_eq!(
            rota_readiness(&h("leader", None), 10),
            Readiness::Ready { confirmed: false }
        );
    }
}
