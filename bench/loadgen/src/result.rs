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
    /// Durable puts of distinct keys (`op` put), or linearizable reads of keys
    /// written before the run (`op` get).
    Kv {
        #[serde(default)]
        op: KvOp,
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
        /// RSS again after `idle_secs` without requests (what the allocator gave
        /// back once the creation burst was over).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_rss_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idle_secs: Option<u64>,
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
    /// One `kill -9` of a cluster's leader while a writer kept writing: the
    /// longest time between two consecutive acknowledged writes from just before
    /// the kill until the cluster was whole again (the killed node restarted and
    /// caught up).
    Failover {
        /// Which kill of the series (from 1).
        rep: usize,
        /// The killed node, as its 1-based position in the endpoint list.
        killed: usize,
        /// `None` when no write was acknowledged after the kill.
        gap_ms: Option<f64>,
        /// From the kill to the first acknowledged write after it.
        resume_ms: Option<f64>,
        /// From the kill until the cluster was whole again.
        window_ms: f64,
        acked: usize,
        failed: usize,
        /// The writer's wait for one answer before it tried the next node.
        request_timeout_ms: u64,
    },
    /// One write sent to a follower right after the leader was frozen (`SIGSTOP`):
    /// when the follower answered, and when a new leader existed, both from the
    /// `SIGSTOP` (see `frozen`).
    Frozen {
        /// Which repetition of the series (from 1).
        rep: usize,
        /// The frozen leader and the follower asked, as 1-based positions.
        frozen: usize,
        asked: usize,
        /// `ok`, `redirect`, `error` or `no answer`.
        answer: String,
        status: Option<u16>,
        /// The leader a redirect names, or the error's message.
        detail: String,
        /// `None` when the follower did not answer within `timeout_ms`.
        answered_ms: Option<f64>,
        /// `None` when no new leader was seen within `timeout_ms`.
        elected_ms: Option<f64>,
        timeout_ms: u64,
        /// From `SIGCONT` until every node caught up; `None` when it did not.
        caught_up_ms: Option<f64>,
    },
    /// `watchers` watch streams on one prefix while `writers` clients put `events`
    /// keys under it: deliveries per second over all watchers, and the lag from a
    /// write's send to each delivery.
    Watch {
        watchers: usize,
        writers: usize,
        events: usize,
        /// Deliveries seen, over all watchers (each key once per watcher).
        delivered: u64,
        /// `events` times `watchers`.
        expected: u64,
        write_errors: u64,
        /// From the first write to the last delivery.
        secs: f64,
        deliveries_per_sec: f64,
        lag_ms: Option<Summary>,
    },
}

/// The operation of a key/value run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOp {
    /// Results written before reads existed are puts.
    #[default]
    Put,
    Get,
}

impl KvOp {
    pub fn name(self) -> &'static str {
        match self {
            KvOp::Put => "put",
            KvOp::Get => "get",
        }
    }
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
            Measurement::Failover { .. } => "failover",
            Measurement::Frozen { .. } => "frozen",
            Measurement::Watch { .. } => "watch",
        }
    }
}

/// A measurement with the system it describes and how busy the machine was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub system: String,
    /// 1-minute load average when the step started and ended. The benchmark's own
    /// processes count in it, so it is context; `other_cpu_cores` tells disturbance.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    /// CPU the step's processes did not use, in cores averaged over the step: other
    /// work on the shared machine that competed with the benchmark.
    #[serde(default)]
    pub other_cpu_cores: Option<f64>,
    pub finished_at: String,
    /// Voters of the cluster the step ran against; absent for a single node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// The round of a case measured several times with the systems alternating
    /// (`--round`); absent for a case measured once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<usize>,
    #[serde(flatten)]
    pub measurement: Measurement,
}

impl Outcome {
    /// The outcome of a step that began with `probe`.
    pub fn new(system: &str, probe: &Probe, measurement: Measurement) -> Outcome {
        Outcome {
            system: system.to_string(),
            load_before: probe.load_before,
            load_after: load_average(),
            other_cpu_cores: probe.other_cpu_cores(),
            finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            nodes: None,
            round: None,
            measurement,
        }
    }

    /// The same outcome, marked as round `round` of its case.
    pub fn in_round(mut self, round: Option<usize>) -> Outcome {
        self.round = round;
        self
    }

    /// The same outcome, marked as measured on a cluster of `nodes` voters (one
    /// voter is the single-node set-up and stays unmarked).
    pub fn on_nodes(mut self, nodes: usize) -> Outcome {
        self.nodes = (nodes > 1).then_some(nodes);
        self
    }

    /// Voters of the set-up the step ran against.
    pub fn node_count(&self) -> usize {
        self.nodes.unwrap_or(1)
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
                op,
                clients,
                ops,
                errors,
                ops_per_sec,
                latency_ms,
                ..
            } => format!(
                "kv {} clients={clients}: {ops} ops ({errors} errors), {ops_per_sec:.0} ops/s, {}",
                op.name(),
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
            Measurement::Watch {
                watchers,
                events,
                delivered,
                expected,
                deliveries_per_sec,
                lag_ms,
                ..
            } => format!(
                "watch watchers={watchers} events={events}: {delivered}/{expected} delivered, \
                 {deliveries_per_sec:.0}/s, lag {}",
                lat(lag_ms)
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
            Measurement::Failover {
                rep,
                killed,
                gap_ms,
                resume_ms,
                acked,
                failed,
                ..
            } => {
                let ms = |v: &Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.0} ms"));
                format!(
                    "failover #{rep} (killed node {killed}): gap {}, first write after {}, \
                     {acked} writes acknowledged, {failed} failed",
                    ms(gap_ms),
                    ms(resume_ms)
                )
            }
            Measurement::Frozen {
                rep,
                answer,
                answered_ms,
                elected_ms,
                detail,
                ..
            } => {
                let ms = |v: &Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.0} ms"));
                format!(
                    "frozen leader #{rep}: {answer} after {}, new leader after {} {detail}",
                    ms(answered_ms),
                    ms(elected_ms)
                )
            }
        };
        let nodes = self.nodes.map_or(String::new(), |n| format!(", {n} nodes"));
        format!("[{}{nodes}] {body}", self.system)
    }
}

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

/// Environment variable listing (comma-separated) the pids of the servers a step
/// drives, so that their CPU counts as the step's own.
pub const BENCH_PIDS_ENV: &str = "BENCH_PIDS";
/// Clock ticks per second of `/proc/stat` and `/proc/<pid>/stat` (`USER_HZ`, 100 on
/// every Linux architecture the suite runs on).
const USER_HZ: f64 = 100.0;

/// What the machine looked like when a step began: the load average and the CPU
/// time used so far, by everyone and by the step's own processes (this one and
/// those named in [`BENCH_PIDS_ENV`], their reaped children included).
#[derive(Debug, Clone)]
pub struct Probe {
    load_before: Option<f64>,
    started: std::time::Instant,
    pids: Vec<u32>,
    machine_busy: Option<u64>,
    own: u64,
}

impl Probe {
    pub fn start() -> Probe {
        let mut pids = vec![std::process::id()];
        if let Ok(list) = std::env::var(BENCH_PIDS_ENV) {
            pids.extend(list.split(',').filter_map(|p| p.trim().parse::<u32>().ok()));
        }
        let own = own_ticks(&pids);
        Probe {
            load_before: load_average(),
            started: std::time::Instant::now(),
            machine_busy: machine_busy_ticks(),
            own,
            pids,
        }
    }

    /// Cores' worth of CPU used since the start by processes other than the step's.
    /// A process of the step that exited meanwhile is lost from the count, which
    /// can only overstate the others.
    pub fn other_cpu_cores(&self) -> Option<f64> {
        let secs = self.started.elapsed().as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let busy = machine_busy_ticks()?.checked_sub(self.machine_busy?)?;
        let own = own_ticks(&self.pids).saturating_sub(self.own);
        Some(busy.saturating_sub(own) as f64 / USER_HZ / secs)
    }
}

/// Non-idle ticks of all CPUs (`user nice system irq softirq steal` of `/proc/stat`).
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy(&text)
}

pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

fn own_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| parse_process_ticks(&text))
        .sum()
}

/// `utime + stime + cutime + cstime` of a `/proc/<pid>/stat` line. The command
/// name may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid ... utime(11) stime(12) cutime(13) cstime(14).
    (11..=14)
        .map(|i| f.get(i).and_then(|v| v.parse::<i64>().ok()))
        .sum::<Option<i64>>()
        .map(|t| t.max(0) as u64)
}

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
            other_cpu_cores: Some(0.1),
            finished_at: "2025-01-01T00:00:00Z".to_string(),
            nodes: None,
            round: None,
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
    fn machine_busy_skips_idle_and_iowait() {
        let stat = "cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 50 2 25 4500 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(parse_machine_busy("intr 1 2 3\n"), None);
    }

    #[test]
    fn process_ticks_survive_odd_command_names() {
        let stat = "4242 (rota (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    70 30 5 2 20 0 8 0 100 1000 50";
        assert_eq!(parse_process_ticks(stat), Some(70 + 30 + 5 + 2));
        assert_eq!(parse_process_ticks("garbage"), None);
    }

    #[test]
    fn outcomes_without_other_cpu_still_parse() {
        let line = r#"{"system":"rota","load_before":null,"load_after":null,
            "finished_at":"x","bench":"lag","executor":"record","jobs":1,"observed":1,
            "lag_ms":null}"#;
        let o: Outcome = serde_json::from_str(line).unwrap();
        assert_eq!(o.other_cpu_cores, None);
    }

    #[test]
    fn cluster_size_is_kept_and_single_nodes_stay_unmarked() {
        assert_eq!(sample().on_nodes(1).nodes, None);
        let o = sample().on_nodes(3);
        let line = serde_json::to_string(&o).unwrap();
        assert!(line.contains("\"nodes\":3"), "{line}");
        let back: Outcome = serde_json::from_str(&line).unwrap();
        assert_eq!(back.node_count(), 3);
        assert!(o.human().starts_with("[rota, 3 nodes]"), "{}", o.human());
        assert!(!serde_json::to_string(&sample()).unwrap().contains("nodes"));
    }

    #[test]
    fn kv_results_without_an_op_are_puts() {
        let line = r#"{"system":"etcd","load_before":null,"load_after":null,
            "finished_at":"x","bench":"kv","clients":1,"value_bytes":16,"ops":5,
            "errors":0,"secs":1.0,"ops_per_sec":5.0,"latency_ms":null}"#;
        let o: Outcome = serde_json::from_str(line).unwrap();
        assert!(matches!(
            o.measurement,
            Measurement::Kv { op: KvOp::Put, .. }
        ));
        assert_eq!(o.node_count(), 1);
    }

    #[test]
    fn human_line_names_system_and_figures() {
        let h = sample().human();
        assert!(h.starts_with("[rota] lag record jobs=1000"), "{h}");
        assert!(h.contains("p99 3.00 ms"), "{h}");
    }
}
