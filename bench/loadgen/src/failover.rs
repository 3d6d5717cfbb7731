//! Failover gap: one writer keeps writing while the benchmark script `kill -9`s
//! the cluster's leader, again and again; the gap of a kill is the longest time
//! between two consecutive acknowledged writes around it.
//!
//! The writer sends one PUT at a time, each to a new key, to one node; on a
//! connection error, a timeout or any non-2xx answer it sends the same write to the
//! next node of the list (rota's followers forward writes to the leader, etcd's
//! members propose to theirs). rota writes carry a session (client id, sequence),
//! so a write retried on another node applies at most once. Every acknowledgement
//! is appended to a file as `<unix ns> <node>` as it arrives, so that the script
//! can see when writes resumed.
//!
//! The script owns the processes: it records each kill as a line
//! `<rep> <killed node> <kill unix ns> <end unix ns>` in a kills file, where the
//! end is when the restarted node had caught up, and creates a stop file when the
//! series is over. The writer then computes one gap per kill ([`gap_around`]) and
//! reports each as its own result.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::client::unique_client_id;
use crate::error::BenchError;
use crate::kv::Target;
use crate::result::{Measurement, Outcome, Probe};
use crate::stats::nanos_to_ms;

/// How often the writer looks for the stop file.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// Pause after every node of the list failed once in a row, so that a cluster
/// without a leader is not flooded with requests.
const ROUND_PAUSE: Duration = Duration::from_millis(5);

/// Parameters of [`run_failover`].
#[derive(Debug, Clone)]
pub struct FailoverRun {
    pub target: Target,
    /// Every node of the cluster; the writer starts with the first.
    pub urls: Vec<String>,
    /// Acknowledged writes, one line each, written as they arrive.
    pub acks: PathBuf,
    /// The script's record of the kills, read once the stop file exists.
    pub kills: PathBuf,
    /// The writer stops once this file exists.
    pub stop_file: PathBuf,
    /// Longest wait for one answer before the write goes to the next node.
    pub request_timeout: Duration,
    /// Stop after this long even without the stop file.
    pub max_duration: Duration,
}

/// One leader kill, as the script recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub rep: usize,
    /// 1-based position of the killed node in the endpoint list.
    pub killed: usize,
    pub kill_ns: i128,
    /// When the cluster was whole again (the killed node restarted and caught up).
    pub end_ns: i128,
}

/// Parses the kills file: `<rep> <killed> <kill ns> <end ns>` per line; blank
/// lines and `#` comments are skipped.
pub fn parse_kills(text: &str, path: &Path) -> Result<Vec<Kill>, BenchError> {
    let bad = |line: usize, reason: &str| BenchError::RecordLine {
        path: path.to_path_buf(),
        line,
        reason: reason.to_string(),
    };
    let mut kills = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [rep, killed, kill_ns, end_ns] = f.as_slice() else {
            return Err(bad(
                line_no,
                "expected `<rep> <killed node> <kill ns> <end ns>`",
            ));
        };
        let kill = Kill {
            rep: rep
                .parse()
                .map_err(|_| bad(line_no, "rep is not a number"))?,
            killed: killed
                .parse()
                .map_err(|_| bad(line_no, "killed node is not a number"))?,
            kill_ns: kill_ns
                .parse()
                .map_err(|_| bad(line_no, "kill time is not a number of nanoseconds"))?,
            end_ns: end_ns
                .parse()
                .map_err(|_| bad(line_no, "end time is not a number of nanoseconds"))?,
        };
        if kill.end_ns < kill.kill_ns {
            return Err(bad(line_no, "end time before kill time"));
        }
        kills.push(kill);
    }
    Ok(kills)
}

/// What the writer saw around one kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Longest interval between consecutive acknowledgements that overlaps the
    /// kill's window (from the kill to its end): the interval that spans the kill
    /// itself, and any stall while the killed node came back. `None` when no write
    /// was acknowledged after the kill.
    pub gap_ns: Option<i128>,
    /// From the kill to the first acknowledgement after it.
    pub resume_ns: Option<i128>,
    /// Acknowledgements inside the window.
    pub acked: usize,
    /// Failed attempts inside the window.
    pub failed: usize,
}

/// The gap of `kill`, from the sorted acknowledgement times `acks` and the
/// failed-attempt times `failures`.
pub fn gap_around(acks: &[i128], failures: &[i128], kill: &Kill) -> Gap {
    let inside = |t: &&i128| **t >= kill.kill_ns && **t <= kill.end_ns;
    // First acknowledgement after the kill; the interval ending there began with
    // the last acknowledgement before it (if any).
    let after = acks.partition_point(|t| *t <= kill.kill_ns);
    let resume_ns = acks.get(after).map(|t| t - kill.kill_ns);
    let gap_ns = resume_ns.map(|_| {
        let from = after.saturating_sub(1);
        let mut longest = 0;
        for pair in acks[from..].windows(2) {
            if pair[0] > kill.end_ns {
                break;
            }
            longest = longest.max(pair[1] - pair[0]);
        }
        // No acknowledgement before the kill: the kill itself opens the interval.
        if after == 0 {
            longest = longest.max(acks[0] - kill.kill_ns);
        }
        longest
    });
    Gap {
        gap_ns,
        resume_ns,
        acked: acks.iter().filter(inside).count(),
        failed: failures.iter().filter(inside).count(),
    }
}

fn now_ns() -> i128 {
    i128::from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())
}

/// The one connection to one node.
fn node_client(timeout: Duration) -> Result<reqwest::Client, BenchError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .no_proxy()
        .timeout(timeout)
        .build()
        .map_err(BenchError::ClientBuild)
}

/// One write attempt; `Err` carries why it failed (for the log only).
async fn write_once(
    http: &reqwest::Client,
    target: Target,
    base: &str,
    client_id: &str,
    seq: u64,
    key: &str,
) -> Result<(), String> {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    let base = base.trim_end_matches('/');
    let req = match target {
        Target::Rota => http
            .put(format!("{base}/v1/kv/{key}"))
            .header("Rota-Client-Id", client_id)
            .header("Rota-Request-Seq", seq)
            .json(&json!({ "value": "failover-writer-v" })),
        Target::Etcd => http.post(format!("{base}/v3/kv/put")).json(&json!({
            "key": BASE64_STANDARD.encode(key),
            "value": BASE64_STANDARD.encode("failover-writer-v"),
        })),
    };
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    // etcd's gateway answers some failures with 200 and an error object.
    if status.is_success() && !text.starts_with("{\"error\"") {
        Ok(())
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        Err("503".to_string())
    } else {
        Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ))
    }
}

/// Writes until the stop file appears, then reports one result per recorded kill.
pub async fn run_failover(run: FailoverRun) -> Result<Vec<Outcome>, BenchError> {
    if run.urls.is_empty() {
        return Err(BenchError::NoEndpoint);
    }
    let probe = Probe::start();
    let clients = run
        .urls
        .iter()
        .map(|_| node_client(run.request_timeout))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ack_file =
        std::fs::File::create(&run.acks).map_err(|e| BenchError::io(&run.acks, e))?;
    let client_id = unique_client_id("failover", 0);
    let started = Instant::now();
    let mut last_stop_check = started;
    let mut acks: Vec<i128> = Vec::new();
    let mut failures: Vec<i128> = Vec::new();
    let mut node = 0usize;
    let mut seq = 0u64;
    info!(
        system = run.target.system(),
        nodes = run.urls.len(),
        "failover writer started"
    );
    'writes: loop {
        seq += 1;
        let key = format!("failover/{client_id}/{seq}");
        let mut failed_in_row = 0usize;
        loop {
            if last_stop_check.elapsed() >= STOP_CHECK {
                last_stop_check = Instant::now();
                if run.stop_file.exists() || started.elapsed() >= run.max_duration {
                    break 'writes;
                }
            }
            let result = write_once(
                &clients[node],
                run.target,
                &run.urls[node],
                &client_id,
                seq,
                &key,
            )
            .await;
            let at = now_ns();
            match result {
                Ok(()) => {
                    acks.push(at);
                    let line = format!("{at} {}\n", node + 1);
                    ack_file
                        .write_all(line.as_bytes())
                        .map_err(|e| BenchError::io(&run.acks, e))?;
                    break;
                }
                Err(why) => {
                    debug!(node = node + 1, seq, %why, "write failed; next node");
                    failures.push(at);
                    node = (node + 1) % run.urls.len();
                    failed_in_row += 1;
                    if failed_in_row.is_multiple_of(run.urls.len()) {
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                }
            }
        }
    }
    info!(
        acked = acks.len(),
        failed = failures.len(),
        "failover writer stopped"
    );
    let text = std::fs::read_to_string(&run.kills).map_err(|e| BenchError::io(&run.kills, e))?;
    let kills = parse_kills(&text, &run.kills)?;
    if kills.is_empty() {
        return Err(BenchError::NoKills { path: run.kills });
    }
    let nodes = run.urls.len();
    Ok(kills
        .iter()
        .map(|kill| {
            let gap = gap_around(&acks, &failures, kill);
            if gap.gap_ns.is_none() {
                warn!(rep = kill.rep, "no write was acknowledged after the kill");
            }
            let mut outcome = Outcome::new(
                run.target.system(),
                &probe,
                Measurement::Failover {
                    rep: kill.rep,
                    killed: kill.killed,
                    gap_ms: gap.gap_ns.map(nanos_to_ms),
                    resume_ms: gap.resume_ns.map(nanos_to_ms),
                    window_ms: nanos_to_ms(kill.end_ns - kill.kill_ns),
                    acked: gap.acked,
                    failed: gap.failed,
                    request_timeout_ms: u64::try_from(run.request_timeout.as_millis())
                        .unwrap_or(u64::MAX),
                },
            )
            .on_nodes(nodes);
            // Restarted nodes run under new process ids, which the probe cannot
            // tell from other work: the figure would overstate disturbance.
            outcome.other_cpu_cores = None;
            outcome
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    fn kill(kill_ms: i128, end_ms: i128) -> Kill {
        Kill {
            rep: 1,
            killed: 2,
            kill_ns: kill_ms * MS,
            end_ns: end_ms * MS,
        }
    }

    fn ms(v: &[i128]) -> Vec<i128> {
        v.iter().map(|t| t * MS).collect()
    }

    #[test]
    fn the_interval_spanning_the_kill_is_the_gap() {
        // Writes every 10 ms, nothing from 100 to 900, the kill at 105.
        let acks = ms(&[80, 90, 100, 900, 910, 920, 2000]);
        let gap = gap_around(&acks, &ms(&[300, 600]), &kill(105, 915));
        assert_eq!(gap.gap_ns, Some(800 * MS));
        assert_eq!(gap.resume_ns, Some(795 * MS));
        assert_eq!(gap.acked, 2);
        assert_eq!(gap.failed, 2);
    }

    #[test]
    fn a_later_stall_inside_the_window_counts() {
        // Resumed quickly, then stalled 1.5 s while the killed node came back.
        let acks = ms(&[100, 150, 200, 1700, 1710]);
        let gap = gap_around(&acks, &[], &kill(110, 1800));
        assert_eq!(gap.gap_ns, Some(1500 * MS));
        assert_eq!(gap.resume_ns, Some(40 * MS));
    }

    #[test]
    fn stalls_outside_the_window_do_not_count() {
        // A long pause before the kill and one after the window ended.
        let acks = ms(&[0, 5000, 5010, 5020, 5030, 9000]);
        let gap = gap_around(&acks, &[], &kill(5012, 5025));
        assert_eq!(gap.gap_ns, Some(10 * MS));
    }

    #[test]
    fn an_interval_straddling_the_end_counts() {
        let acks = ms(&[100, 110, 120, 700]);
        let gap = gap_around(&acks, &[], &kill(105, 500));
        assert_eq!(gap.gap_ns, Some(580 * MS));
    }

    #[test]
    fn no_write_after_the_kill_has_no_gap() {
        let gap = gap_around(&ms(&[10, 20]), &[], &kill(30, 40));
        assert_eq!(gap.gap_ns, None);
        assert_eq!(gap.resume_ns, None);
        assert_eq!(gap.acked, 0);
    }

    #[test]
    fn no_write_before_the_kill_measures_from_the_kill() {
        let gap = gap_around(&ms(&[400, 410]), &[], &kill(100, 500));
        assert_eq!(gap.gap_ns, Some(300 * MS));
    }

    #[test]
    fn kills_file_parses_and_names_bad_lines() {
        let path = Path::new("kills.log");
        let kills =
            parse_kills("# rep killed kill end\n1 2 100 200\n\n2 3 300 450\n", path).unwrap();
        assert_eq!(kills.len(), 2);
        assert_eq!(
            kills[1],
            Kill {
                rep: 2,
                killed: 3,
                kill_ns: 300,
                end_ns: 450
            }
        );
        let err = parse_kills("1 2 100 200\n1 2 x 4\n", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kills.log:2"), "{err}");
        let err = parse_kills("1 2 300 200\n", path).unwrap_err().to_string();
        assert!(err.contains("before kill"), "{err}");
        assert!(parse_kills("1 2 3\n", path).is_err());
    }
}
