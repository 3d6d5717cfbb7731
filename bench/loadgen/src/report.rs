//! Turns a file of [`Outcome`] lines into the markdown of the performance document:
//! one section per benchmark, its method in a paragraph, then a table with rota
//! beside its peer (etcd for the store, tokio-cron-scheduler for the scheduler)
//! and their ratio.
//!
//! Every row carries the machine's 1-minute load average before and after the
//! step; a row whose load exceeded the core count is marked, because the machine
//! was shared and the figures were disturbed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::BenchError;
use crate::result::{KvOp, Measurement, Outcome, ETCD, MIB, ROTA, TOKIO_CRON};
use crate::stats::Summary;

/// Reads a JSON-lines file of outcomes; blank lines and lines starting with `#`
/// are skipped.
pub fn read_outcomes(path: &Path) -> Result<Vec<Outcome>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| BenchError::ResultLine {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// A markdown table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.header);
        let rule: Vec<String> = self.header.iter().map(|_| "---".to_string()).collect();
        out.push_str(&line(&rule));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

pub(crate) fn ms(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn dist(s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!("{} / {} / {}", ms(s.p50), ms(s.p99), ms(s.max)),
        None => "–".to_string(),
    }
}

pub(crate) fn rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MIB)
}

/// `a / b` as `1.23×`, or a dash when it means nothing.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON && a.is_finite() && b.is_finite() => {
            format!("{:.2}×", a / b)
        }
        _ => "–".to_string(),
    }
}

/// Share of the machine above which other work marks a step as disturbed.
const DISTURBED_SHARE: f64 = 0.1;

/// The disturbance cell: other processes' CPU during each step of the row, in
/// cores, marked when above [`DISTURBED_SHARE`] of the machine. Results without
/// that figure fall back to the load average, marked above the core count.
pub(crate) fn load_cell(outcomes: &[&Outcome], cores: usize) -> String {
    let mut disturbed = false;
    let cells: Vec<String> = outcomes
        .iter()
        .map(|o| match o.other_cpu_cores {
            Some(other) => {
                disturbed |= other > DISTURBED_SHARE * cores as f64;
                format!("{other:.2}")
            }
            None => {
                let f = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1}"));
                disturbed |= [o.load_before, o.load_after]
                    .into_iter()
                    .flatten()
                    .any(|l| l > cores as f64);
                format!("load {}→{}", f(o.load_before), f(o.load_after))
            }
        })
        .collect();
    let mark = if disturbed { " ⚠" } else { "" };
    format!("{}{mark}", cells.join(", "))
}

pub(crate) fn latest_of<'a>(outcomes: &[&'a Outcome], system: &str) -> Option<&'a Outcome> {
    // The last run of a case wins: a re-run replaces a disturbed one.
    outcomes.iter().rev().find(|o| o.system == system).copied()
}

/// The throughput of a key/value run.
fn kv_ops(o: &Outcome) -> Option<f64> {
    match o.measurement {
        Measurement::Kv { ops_per_sec, .. } => Some(ops_per_sec),
        _ => None,
    }
}

/// The latest run of `system` in each round of a case measured in rounds.
fn rounds_of<'a>(outcomes: &[&'a Outcome], system: &str) -> BTreeMap<usize, &'a Outcome> {
    let mut rounds = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.system == system) {
        if let Some(round) = o.round {
            rounds.insert(round, *o); // a later run of a round replaces it
        }
    }
    rounds
}

/// The key/value run of `system` a row shows: the latest one, or for a case
/// measured in rounds the round with the median throughput (the lower of the two
/// middle ones for an even count), so that one disturbed round moves neither the
/// row nor its ratio.
fn kv_pick<'a>(outcomes: &[&'a Outcome], system: &str) -> Option<&'a Outcome> {
    let mut rounds: Vec<&Outcome> = rounds_of(outcomes, system).into_values().collect();
    if rounds.is_empty() {
        return latest_of(outcomes, system);
    }
    rounds.sort_by(|a, b| {
        kv_ops(a)
            .unwrap_or(0.0)
            .total_cmp(&kv_ops(b).unwrap_or(0.0))
    });
    rounds.get((rounds.len() - 1) / 2).copied()
}

/// `rota / etcd` of each round both systems ran, in round order.
fn kv_round_ratios(outcomes: &[&Outcome]) -> String {
    let rota = rounds_of(outcomes, ROTA);
    let etcd = rounds_of(outcomes, ETCD);
    let cells: Vec<String> = rota
        .iter()
        .filter_map(|(round, r)| {
            let e = etcd.get(round)?;
            Some(ratio(kv_ops(r), kv_ops(e)))
        })
        .collect();
    if cells.is_empty() {
        "–".to_string()
    } else {
        cells.join(", ")
    }
}

/// Renders the section of one benchmark from its outcomes.
type Section = fn(&[&Outcome], usize) -> String;

/// Renders every benchmark present in `outcomes`. `cores` decides which rows are
/// marked as disturbed.
pub fn render(outcomes: &[Outcome], cores: usize) -> String {
    let mut out = String::new();
    let sections: [(&str, Section); 9] = [
        ("kv", kv_section),
        ("failover", failover_section),
        ("frozen", crate::frozen::frozen_section),
        ("jobs", jobs_section),
        ("lag", lag_section),
        ("fires", fires_section),
        ("memory", memory_section),
        ("restart", restart_section),
        ("watch", crate::watch::watch_section),
    ];
    for (bench, section) in sections {
        let of: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| o.measurement.bench() == bench)
            .collect();
        if !of.is_empty() {
            out.push_str(&section(&of, cores));
            out.push('\n');
        }
    }
    let _ = writeln!(
        out,
        "Others' CPU: cores' worth of CPU used during the step by processes other than the \
         servers and the harness, averaged over the step (per system where a row has two). \
         ⚠ marks steps where it exceeded {:.0} % of the {cores} cores: other work competed \
         for the CPU and the figures are disturbed.",
        DISTURBED_SHARE * 100.0
    );
    out
}

/// One section per (cluster size, operation), single-node writes first.
fn kv_section(of: &[&Outcome], cores: usize) -> String {
    let mut groups: BTreeMap<(usize, KvOp), Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Kv { op, .. } = o.measurement {
            groups.entry((o.node_count(), op)).or_default().push(o);
        }
    }
    groups
        .iter()
        .map(|((nodes, op), runs)| kv_table(runs, cores, *nodes, *op))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The method paragraph of a key/value section.
fn kv_method(nodes: usize, op: KvOp) -> String {
    match (nodes, op) {
        (1, KvOp::Put) => "## Key/value writes: rota vs etcd\n\n\
             Closed loop: each client has one HTTP/1.1 keep-alive connection and one request \
             in flight, and PUTs distinct keys. rota: `PUT /v1/kv/{key}` with session headers; \
             etcd 3.4: `POST /v3/kv/put` on its JSON gateway. Both acknowledge after fsync on a \
             single node. Latency is per successful request. `rota / etcd` above 1 means rota \
             is faster."
            .to_string(),
        (n, KvOp::Put) => format!(
            "## Key/value writes on {n} nodes: rota vs etcd\n\n\
             {n} voters on loopback, each with its own data directory; the clients talk to the \
             leader (`bench/cluster.sh` finds it before each step). Closed loop: each client \
             has one HTTP/1.1 keep-alive connection and one request in flight, and PUTs \
             distinct keys. rota: `PUT /v1/kv/{{key}}` with session headers; etcd 3.4: \
             `POST /v3/kv/put` on its JSON gateway. Both acknowledge once a majority has the \
             entry on disk (fsync) and the leader applied it. Latency is per successful \
             request. `rota / etcd` above 1 means rota is faster."
        ),
        (n, KvOp::Get) => {
            let place = if n == 1 {
                "## Linearizable reads: rota vs etcd\n\nOne node.".to_string()
            } else {
                format!(
                    "## Linearizable reads on {n} nodes: rota vs etcd\n\n\
                     {n} voters on loopback; the clients talk to the leader."
                )
            };
            format!(
                "{place} The keys (`loadgen get --keys`, 1,000 by default) are written first, then read in turn in \
                 a closed loop: each client has one HTTP/1.1 keep-alive connection and one \
                 request in flight. rota: `GET /v1/kv/{{key}}` (linearizable by default: the \
                 leader confirms its leadership with a quorum, read index); etcd 3.4: \
                 `POST /v3/kv/range` (linearizable by default, read index). Neither is a stale \
                 read. `rota / etcd` above 1 means rota is faster."
            )
        }
    }
}

fn kv_table(runs: &[&Outcome], cores: usize, nodes: usize, op: KvOp) -> String {
    let mut cases: BTreeMap<(usize, usize), Vec<&Outcome>> = BTreeMap::new();
    for o in runs {
        if let Measurement::Kv {
            clients,
            value_bytes,
            ..
        } = o.measurement
        {
            cases.entry((clients, value_bytes)).or_default().push(o);
        }
    }
    let mut t = Table::new(&[
        "clients",
        "value",
        "rota ops/s",
        "etcd ops/s",
        "rota / etcd",
        "rota / etcd by round",
        "rota p50 / p99 / max ms",
        "etcd p50 / p99 / max ms",
        "errors (rota, etcd)",
        "others' CPU",
    ]);
    for ((clients, value_bytes), runs) in &cases {
        let pick = |system| match kv_pick(runs, system).map(|o| &o.measurement) {
            Some(Measurement::Kv {
                ops_per_sec,
                latency_ms,
                errors,
                ..
            }) => (Some(*ops_per_sec), *latency_ms, Some(*errors)),
            _ => (None, None, None),
        };
        let (r_ops, r_lat, r_err) = pick(ROTA);
        let (e_ops, e_lat, e_err) = pick(ETCD);
        let opt = |v: Option<f64>| v.map_or("–".to_string(), rate);
        let err = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
        t.row(vec![
            clients.to_string(),
            format!("{value_bytes} B"),
            opt(r_ops),
            opt(e_ops),
            ratio(r_ops, e_ops),
            kv_round_ratios(runs),
            dist(&r_lat),
            dist(&e_lat),
            format!("{}, {}", err(r_err), err(e_err)),
            load_cell(runs, cores),
        ]);
    }
    let rounds = if runs.iter().any(|o| o.round.is_some()) {
        " Each case ran in rounds, the two systems taking turns (rota then etcd in odd \
         rounds, etcd then rota in even ones): a row shows each system's median round, and `rota / etcd by round` the ratio \
         within each round, so that a spell of noise on the machine falls on both."
    } else {
        ""
    };
    format!("{}{rounds}\n\n{}", kv_method(nodes, op), t.render())
}

/// The kills of one system on one cluster size, by rep; a re-run of a rep replaces
/// the earlier one.
fn kills_by_rep<'a>(
    of: &[&'a Outcome],
    system: &str,
    nodes: usize,
) -> BTreeMap<usize, &'a Outcome> {
    let mut reps = BTreeMap::new();
    for o in of {
        if let Measurement::Failover { rep, .. } = o.measurement {
            if o.system == system && o.node_count() == nodes {
                reps.insert(rep, *o);
            }
        }
    }
    reps
}

/// Gap and first-write-after-kill summaries over a series of kills, and how many
/// of them saw writes resume.
fn failover_summary(reps: &BTreeMap<usize, &Outcome>) -> (Option<Summary>, Option<Summary>, usize) {
    let mut gaps = Vec::new();
    let mut resumes = Vec::new();
    for o in reps.values() {
        if let Measurement::Failover {
            gap_ms, resume_ms, ..
        } = &o.measurement
        {
            gaps.extend(*gap_ms);
            resumes.extend(*resume_ms);
        }
    }
    let resumed = gaps.len();
    (
        Summary::from_samples(gaps),
        Summary::from_samples(resumes),
        resumed,
    )
}

fn failover_section(of: &[&Outcome], cores: usize) -> String {
    let sizes: std::collections::BTreeSet<usize> = of.iter().map(|o| o.node_count()).collect();
    let mut out = String::new();
    for nodes in sizes {
        let rota = kills_by_rep(of, ROTA, nodes);
        let etcd = kills_by_rep(of, ETCD, nodes);
        let (r_gap, r_resume, r_resumed) = failover_summary(&rota);
        let (e_gap, e_resume, e_resumed) = failover_summary(&etcd);
        let resumed = |n: usize, of: usize| {
            if of == 0 {
                "–".to_string()
            } else {
                format!("{n}/{of}")
            }
        };
        let p50_max = |s: &Option<Summary>| match s {
            Some(s) => format!("{} / {}", ms(s.p50), ms(s.max)),
            None => "–".to_string(),
        };
        // One disturbance figure per system: the series' last kill.
        let loads: Vec<&Outcome> = [rota.values().next_back(), etcd.values().next_back()]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let mut t = Table::new(&[
            "kills with writes resumed (rota, etcd)",
            "rota gap p50 / max ms",
            "etcd gap p50 / max ms",
            "gap p50 rota / etcd",
            "gap max rota / etcd",
            "rota first write p50 / max ms",
            "etcd first write p50 / max ms",
            "others' CPU",
        ]);
        t.row(vec![
            format!(
                "{}, {}",
                resumed(r_resumed, rota.len()),
                resumed(e_resumed, etcd.len())
            ),
            p50_max(&r_gap),
            p50_max(&e_gap),
            ratio(r_gap.map(|s| s.p50), e_gap.map(|s| s.p50)),
            ratio(r_gap.map(|s| s.max), e_gap.map(|s| s.max)),
            p50_max(&r_resume),
            p50_max(&e_resume),
            load_cell(&loads, cores),
        ]);
        let mut each = Table::new(&[
            "kill",
            "rota node killed",
            "rota gap ms",
            "rota failed attempts",
            "etcd node killed",
            "etcd gap ms",
            "etcd failed attempts",
        ]);
        let cells = |o: Option<&&Outcome>| match o.map(|o| &o.measurement) {
            Some(Measurement::Failover {
                killed,
                gap_ms,
                failed,
                ..
            }) => [
                killed.to_string(),
                gap_ms.map_or("no write after the kill".to_string(), ms),
                failed.to_string(),
            ],
            _ => ["–".to_string(), "–".to_string(), "–".to_string()],
        };
        let reps: std::collections::BTreeSet<usize> =
            rota.keys().chain(etcd.keys()).copied().collect();
        for rep in reps {
            let mut row = vec![rep.to_string()];
            row.extend(cells(rota.get(&rep)));
            row.extend(cells(etcd.get(&rep)));
            each.row(row);
        }
        let timeouts: std::collections::BTreeSet<u64> = rota
            .values()
            .chain(etcd.values())
            .filter_map(|o| match o.measurement {
                Measurement::Failover {
                    request_timeout_ms, ..
                } => Some(request_timeout_ms),
                _ => None,
            })
            .collect();
        let timeouts: Vec<String> = timeouts.iter().map(|t| format!("{t} ms")).collect();
        let _ = write!(
            out,
            "## Failover gap on {nodes} nodes: rota vs etcd\n\n\
             One writer PUTs new keys back to back, one request at a time, to one node; on a \
             connection error, no answer within {} or an error answer it sends the same write \
             to the next node (rota's followers forward writes to the leader; rota writes carry \
             a session, so a retried write applies at most once). The timeout is short because \
             a member without a leader may hold a write for seconds (etcd 3.4 does); it bounds \
             how late the writer notices that another node would answer. Meanwhile the leader is \
             killed with `kill -9`; once writes resume it is restarted on its data, and the \
             next kill waits until it caught up. Gap = the longest time between two \
             consecutive acknowledged writes from just before the kill until the restarted \
             node caught up; first write = from the kill to the first acknowledged write. \
             etcd runs with its default timing (heartbeat 100 ms, election timeout 1000 ms). \
             Ratios below 1 mean rota recovers faster.\n\n{}\n{}",
            timeouts.join(" / "),
            t.render(),
            each.render()
        );
    }
    out
}

fn jobs_section(of: &[&Outcome], cores: usize) -> String {
    let mut t = Table::new(&[
        "op",
        "jobs",
        "clients",
        "jobs/s",
        "p50 / p99 / max ms",
        "errors",
        "others' CPU",
    ]);
    for o in of {
        if let Measurement::Jobs {
            op,
            clients,
            jobs,
            errors,
            jobs_per_sec,
            latency_ms,
            ..
        } = &o.measurement
        {
            t.row(vec![
                op.clone(),
                jobs.to_string(),
                clients.to_string(),
                rate(*jobs_per_sec),
                dist(latency_ms),
                errors.to_string(),
                load_cell(&[o], cores),
            ]);
        }
    }
    format!(
        "## Job creation and deletion (rota)\n\n\
         `PUT /v1/jobs/{{name}}` (then `DELETE`) from concurrent clients, one connection \
         each; every request is a Raft commit. The peer has no API of this kind; compare \
         with the key/value rows, which commit the same way.\n\n{}",
        t.render()
    )
}

/// Single-node lag beside tokio-cron-scheduler; lag measured on a cluster gets a
/// section per cluster size.
fn lag_section(of: &[&Outcome], cores: usize) -> String {
    let mut groups: BTreeMap<usize, Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        // tokio-cron-scheduler runs in one process: its rows go beside single-node rota.
        let nodes = if o.system == TOKIO_CRON {
            1
        } else {
            o.node_count()
        };
        groups.entry(nodes).or_default().push(o);
    }
    groups
        .iter()
        .map(|(nodes, runs)| {
            if *nodes == 1 {
                lag_peer_section(runs, cores)
            } else {
                lag_cluster_section(runs, cores, *nodes)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn lag_cluster_section(of: &[&Outcome], cores: usize, nodes: usize) -> String {
    let mut cases: BTreeMap<(String, usize), Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Lag { executor, jobs, .. } = &o.measurement {
            cases.entry((executor.clone(), *jobs)).or_default().push(o);
        }
    }
    let mut t = Table::new(&[
        "executor",
        "jobs due at once",
        "runs seen",
        "p50 / p99 / max ms",
        "others' CPU",
    ]);
    for ((executor, jobs), runs) in &cases {
        let Some(o) = latest_of(runs, ROTA) else {
            continue;
        };
        if let Measurement::Lag {
            observed, lag_ms, ..
        } = &o.measurement
        {
            t.row(vec![
                executor.clone(),
                jobs.to_string(),
                format!("{observed}/{jobs}"),
                dist(lag_ms),
                load_cell(&[o], cores),
            ]);
        }
    }
    format!(
        "## Dispatch lag on {nodes} nodes (rota)\n\n\
         The single-node lag step against the leader of a {nodes}-node cluster: N one-shot \
         jobs all due at the same whole second; lag = the instant the run was handed to its \
         executor (`record`; `shell`: the clock of the child process) minus the scheduled \
         instant. Each firing is committed through Raft (a \
         majority's fsync) before dispatch, and a run may execute on any node. Compare with \
         the single-node rows.\n\n{}",
        t.render()
    )
}

fn lag_peer_section(of: &[&Outcome], cores: usize) -> String {
    let mut cases: BTreeMap<(String, usize), Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Lag { executor, jobs, .. } = &o.measurement {
            cases.entry((executor.clone(), *jobs)).or_default().push(o);
        }
    }
    let mut t = Table::new(&[
        "executor",
        "jobs due at once",
        "rota runs seen",
        "rota p50 / p99 / max ms",
        "tokio-cron-scheduler runs seen",
        "tokio-cron-scheduler p50 / p99 / max ms",
        "p50 rota / peer",
        "p99 rota / peer",
        "others' CPU",
    ]);
    for ((executor, jobs), runs) in &cases {
        let pick = |system| match latest_of(runs, system).map(|o| &o.measurement) {
            Some(Measurement::Lag {
                observed, lag_ms, ..
            }) => (Some(*observed), *lag_ms),
            _ => (None, None),
        };
        let (r_seen, r_lag) = pick(ROTA);
        let (p_seen, p_lag) = pick(TOKIO_CRON);
        let seen = |v: Option<usize>| v.map_or("–".to_string(), |v| format!("{v}/{jobs}"));
        t.row(vec![
            executor.clone(),
            jobs.to_string(),
            seen(r_seen),
            dist(&r_lag),
            seen(p_seen),
            dist(&p_lag),
            ratio(r_lag.map(|s| s.p50), p_lag.map(|s| s.p50)),
            ratio(r_lag.map(|s| s.p99), p_lag.map(|s| s.p99)),
            load_cell(runs, cores),
        ]);
    }
    format!(
        "## Dispatch lag: rota vs tokio-cron-scheduler\n\n\
         N one-shot jobs all due at the same whole second, created well before it. \
         `record`: lag = the instant the run was handed to its executor minus the scheduled \
         instant (rota's `record` executor; for tokio-cron-scheduler, `Utc::now()` at the \
         start of the job closure). `shell`: lag = the clock read by `date +%s%N` in the \
         child process minus the scheduled instant, so process start-up is included. \
         rota commits each firing through Raft (fsync) before it dispatches; \
         tokio-cron-scheduler keeps everything in memory and polls every 500 ms from its \
         start, so its lag for a single instant is that tick's phase (0–500 ms, by chance) \
         plus dispatch. Runs seen below the job count are runs that never arrived within \
         the wait (120 s). Ratios below 1 mean rota is faster.\n\n{}",
        t.render()
    )
}

fn fires_section(of: &[&Outcome], cores: usize) -> String {
    let mut t = Table::new(&[
        "executor",
        "jobs",
        "system",
        "window s",
        "fired / expected",
        "fires/s",
        "counted by",
        "lag p50 / p99 / max ms",
        "max queued",
        "kept up",
        "others' CPU",
    ]);
    for o in of {
        if let Measurement::Fires {
            executor,
            jobs,
            window_secs,
            expected,
            fired,
            fires_per_sec,
            counted_by,
            lag_ms,
            max_queued,
            kept_up,
        } = &o.measurement
        {
            t.row(vec![
                executor.clone(),
                jobs.to_string(),
                o.system.clone(),
                window_secs.to_string(),
                format!("{fired} / {expected}"),
                rate(*fires_per_sec),
                counted_by.clone(),
                dist(lag_ms),
                max_queued.map_or("–".to_string(), |q| q.to_string()),
                kept_up_cell(*kept_up, *fired, *expected, lag_ms),
                load_cell(&[o], cores),
            ]);
        }
    }
    format!(
        "## Sustained firing\n\n\
         K jobs on `*/1 * * * * *`, measured over a window of whole seconds after a \
         warm-up. With `record`, the runs of the window's instants are counted from the \
         record file and their lag measured; kept up = every instant fired and no run was \
         more than one period (1 s) late. With `shell` (`true`), runs are counted by the \
         fired counter read half a second before the window's edges less the server's fire-ahead (1.5 s by default: runs are fired and counted that early); kept up = at least 99 % fired and the queue \
         stayed within one period's worth. tokio-cron-scheduler runs the same closure as \
         in the lag test; its lag there is the phase within the second (it cannot tell \
         which instant a run was for), so it is meaningful only below 1 s.\n\n{}",
        t.render()
    )
}

/// "yes", or "no" with the reason the figures show: runs missing from the window,
/// or runs later than one period.
fn kept_up_cell(kept_up: bool, fired: u64, expected: u64, lag: &Option<Summary>) -> String {
    if kept_up {
        return "yes".to_string();
    }
    let mut why = Vec::new();
    if fired < expected {
        let missing = expected - fired;
        let runs = if missing == 1 { "run" } else { "runs" };
        why.push(format!("{missing} {runs} missing"));
    }
    if lag.is_some_and(|l| l.max >= 1000.0) {
        why.push("runs over 1 s late".to_string());
    }
    if why.is_empty() {
        "**no**".to_string()
    } else {
        format!("**no** ({})", why.join(", "))
    }
}

fn memory_section(of: &[&Outcome], cores: usize) -> String {
    let mut cases: BTreeMap<usize, Vec<&Outcome>> = BTreeMap::new();
    for o in of {
        if let Measurement::Memory { jobs, .. } = o.measurement {
            cases.entry(jobs).or_default().push(o);
        }
    }
    let mut t = Table::new(&[
        "jobs",
        "system",
        "RSS MiB",
        "RSS before MiB",
        "RSS added per job (bytes)",
        "peak RSS MiB",
        "RSS after idle MiB",
        "data on disk MiB",
        "load time s",
        "RSS vs rota",
        "others' CPU",
    ]);
    for (jobs, runs) in &cases {
        let rota_rss = match latest_of(runs, ROTA).map(|o| &o.measurement) {
            Some(Measurement::Memory { rss_bytes, .. }) => Some(*rss_bytes as f64),
            _ => None,
        };
        for system in [ROTA, ETCD, TOKIO_CRON] {
            let Some(o) = latest_of(runs, system) else {
                continue;
            };
            let Measurement::Memory {
                created,
                rss_before_bytes,
                rss_bytes,
                peak_rss_bytes,
                data_bytes,
                load_secs,
                idle_rss_bytes,
                idle_secs,
                ..
            } = &o.measurement
            else {
                continue;
            };
            t.row(vec![
                jobs.to_string(),
                system.to_string(),
                mib(*rss_bytes),
                rss_before_bytes.map_or("–".to_string(), mib),
                rss_before_bytes.map_or("–".to_string(), |before| {
                    let added = rss_bytes.saturating_sub(before) as f64;
                    format!("{:.0}", added / (*created).max(1) as f64)
                }),
                peak_rss_bytes.map_or("–".to_string(), mib),
                match (idle_rss_bytes, idle_secs) {
                    (Some(rss), Some(secs)) => format!("{} ({secs} s)", mib(*rss)),
                    (Some(rss), None) => mib(*rss),
                    _ => "–".to_string(),
                },
                data_bytes.map_or("–".to_string(), mib),
                format!("{load_secs:.1}"),
                ratio(Some(*rss_bytes as f64), rota_rss),
                load_cell(&[o], cores),
            ]);
        }
    }
    format!(
        "## Memory with many jobs\n\n\
         Jobs on a cron that does not fire during the test (`0 0 1 1 *`, `record` \
         executor). rota: resident set (VmRSS) of the server once its scheduler reports \
         every job loaded; load time = creation through the API plus that wait. etcd: \
         the same job documents stored as values under `jobs/<name>` (what a scheduler \
         built on etcd would keep), RSS of etcd. tokio-cron-scheduler: RSS of the harness \
         process after registering the jobs in memory. RSS added per job = (RSS − RSS \
         before the step) / jobs created by the step; the 1,000,000 row adds to the \
         100,000 jobs of the row before. Data on disk is the apparent size of the data \
         directory (etcd preallocates 64 MiB WAL segments). RSS after idle: read again \
         once the server went that long without requests (when the step asked for it); \
         peak RSS is the high-water mark (VmHWM) at the last reading.\n\n{}",
        t.render()
    )
}

fn restart_section(of: &[&Outcome], cores: usize) -> String {
    let mut t = Table::new(&[
        "jobs",
        "system",
        "stopped by",
        "stop ms",
        "ready ms",
        "all jobs confirmed",
        "RSS after MiB",
        "others' CPU",
    ]);
    for o in of {
        if let Measurement::Restart {
            jobs,
            signal,
            stop_ms,
            ready_ms,
            jobs_confirmed,
            rss_bytes,
        } = &o.measurement
        {
            t.row(vec![
                jobs.to_string(),
                o.system.clone(),
                signal.clone(),
                stop_ms.map_or("–".to_string(), ms),
                ms(*ready_ms),
                if *jobs_confirmed {
                    "yes"
                } else {
                    "no (health only)"
                }
                .to_string(),
                rss_bytes.map_or("–".to_string(), mib),
                load_cell(&[o], cores),
            ]);
        }
    }
    format!(
        "## Restart\n\n\
         The server is stopped (SIGTERM: graceful; SIGKILL: crash), then started again on \
         the same data. Ready = from the new process's start until `GET /v1/health` answers \
         role leader and its `scheduler.jobs` reaches the job count (etcd: until \
         `GET /health` answers true). tokio-cron-scheduler keeps no state across a restart \
         and is not listed.\n\n{}",
        t.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(system: &str, other: f64, m: Measurement) -> Outcome {
        Outcome {
            system: system.to_string(),
            load_before: Some(1.0),
            load_after: Some(1.0),
            other_cpu_cores: Some(other),
            finished_at: "2025-01-01T00:00:00Z".to_string(),
            nodes: None,
            round: None,
            measurement: m,
        }
    }

    fn kv(ops_per_sec: f64) -> Measurement {
        Measurement::Kv {
            op: KvOp::Put,
            clients: 16,
            value_bytes: 16,
            ops: 100,
            errors: 0,
            secs: 1.0,
            ops_per_sec,
            latency_ms: Summary::from_samples(vec![1.0, 2.0]),
        }
    }

    #[test]
    fn kv_rows_pair_rota_with_etcd_and_compute_the_ratio() {
        let md = render(
            &[
                outcome(ROTA, 0.05, kv(3000.0)),
                outcome(ETCD, 0.05, kv(1500.0)),
            ],
            2,
        );
        assert!(md.contains("## Key/value writes"), "{md}");
        let row = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        assert!(row.contains("| 3000 | 1500 | 2.00× |"), "{row}");
        assert!(!row.contains('⚠'), "{row}");
    }

    #[test]
    fn rows_above_the_core_count_are_marked() {
        let md = render(&[outcome(ROTA, 3.5, kv(10.0))], 2);
        let row = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        assert!(row.contains('⚠'), "{row}");
        assert!(
            row.contains("| – | – |"),
            "missing etcd shows dashes: {row}"
        );
    }

    #[test]
    fn only_present_benchmarks_get_a_section() {
        let md = render(&[outcome(ROTA, 0.1, kv(10.0))], 2);
        assert!(!md.contains("## Dispatch lag"));
        assert!(!md.contains("## Memory"));
    }

    #[test]
    fn lag_ratio_compares_percentiles() {
        let lag = |p: f64| Measurement::Lag {
            executor: "record".into(),
            jobs: 1000,
            observed: 1000,
            lag_ms: Summary::from_samples(vec![p]),
        };
        let md = render(
            &[
                outcome(ROTA, 0.1, lag(5.0)),
                outcome(TOKIO_CRON, 0.1, lag(250.0)),
            ],
            2,
        );
        let row = md
            .lines()
            .find(|l| l.starts_with("| record | 1000 |"))
            .unwrap();
        assert!(row.contains("1000/1000"), "{row}");
        assert!(row.contains("| 0.02× | 0.02× |"), "{row}");
    }

    #[test]
    fn memory_rows_show_the_cost_per_added_job() {
        let mem = |rss_mib: u64| Measurement::Memory {
            jobs: 100_000,
            created: 100_000,
            rss_before_bytes: Some(20 * 1024 * 1024),
            rss_bytes: rss_mib * 1024 * 1024,
            peak_rss_bytes: None,
            data_bytes: None,
            load_secs: 10.0,
            idle_rss_bytes: None,
            idle_secs: None,
        };
        let md = render(
            &[outcome(ROTA, 0.1, mem(120)), outcome(ETCD, 0.1, mem(220))],
            2,
        );
        let rota = md
            .lines()
            .find(|l| l.starts_with("| 100000 | rota |"))
            .unwrap();
        // (120 - 20) MiB over 100,000 jobs.
        assert!(rota.contains("| 120.0 | 20.0 | 1049 |"), "{rota}");
        let etcd = md
            .lines()
            .find(|l| l.starts_with("| 100000 | etcd |"))
            .unwrap();
        assert!(etcd.contains("| 1.83× |"), "{etcd}");
    }

    #[test]
    fn kept_up_says_why_not() {
        let late = Summary::from_samples(vec![10.0, 1500.0]);
        let fast = Summary::from_samples(vec![10.0]);
        assert_eq!(kept_up_cell(true, 10, 10, &fast), "yes");
        assert_eq!(kept_up_cell(false, 9, 10, &fast), "**no** (1 run missing)");
        assert_eq!(
            kept_up_cell(false, 10, 10, &late),
            "**no** (runs over 1 s late)"
        );
        assert_eq!(kept_up_cell(false, 10, 10, &None), "**no**");
    }

    #[test]
    fn a_case_in_rounds_shows_each_systems_median_round_and_every_rounds_ratio() {
        let round = |system, ops, r| outcome(system, 0.01, kv(ops)).in_round(Some(r));
        let md = render(
            &[
                round(ROTA, 1000.0, 1),
                round(ETCD, 1000.0, 1),
                round(ROTA, 9000.0, 2), // disturbed: replaced by its re-run
                round(ETCD, 1000.0, 2),
                round(ROTA, 3000.0, 2),
                round(ETCD, 1000.0, 3),
                round(ROTA, 2000.0, 3),
                round(ROTA, 500.0, 4), // etcd did not run round 4
            ],
            2,
        );
        let row = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        // rota's rounds 1-4: 1000, 3000, 2000, 500; the lower middle is 1000.
        assert!(
            row.contains("| 1000 | 1000 | 1.00× | 1.00×, 3.00×, 2.00× |"),
            "{row}"
        );
    }

    #[test]
    fn a_case_without_rounds_has_no_ratios_by_round() {
        let md = render(
            &[
                outcome(ROTA, 0.01, kv(3000.0)),
                outcome(ETCD, 0.01, kv(1500.0)),
            ],
            2,
        );
        let row = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        assert!(row.contains("| 2.00× | – |"), "{row}");
    }

    #[test]
    fn a_later_run_of_the_same_case_wins() {
        let md = render(
            &[outcome(ROTA, 0.1, kv(10.0)), outcome(ROTA, 0.1, kv(20.0))],
            2,
        );
        let row = md.lines().find(|l| l.starts_with("| 16 |")).unwrap();
        assert!(row.contains("| 20.0 |"), "{row}");
    }

    fn on(nodes: usize, o: Outcome) -> Outcome {
        o.on_nodes(nodes)
    }

    fn get(ops_per_sec: f64) -> Measurement {
        match kv(ops_per_sec) {
            Measurement::Kv {
                clients,
                value_bytes,
                ops,
                errors,
                secs,
                latency_ms,
                ..
            } => Measurement::Kv {
                op: KvOp::Get,
                clients,
                value_bytes,
                ops,
                errors,
                secs,
                ops_per_sec,
                latency_ms,
            },
            other => other,
        }
    }

    #[test]
    fn cluster_puts_and_gets_get_their_own_sections_with_ratios() {
        let md = render(
            &[
                outcome(ROTA, 0.05, kv(900.0)),
                outcome(ETCD, 0.05, kv(1800.0)),
                on(3, outcome(ROTA, 0.05, kv(600.0))),
                on(3, outcome(ETCD, 0.05, kv(300.0))),
                on(3, outcome(ROTA, 0.05, get(5000.0))),
                on(3, outcome(ETCD, 0.05, get(4000.0))),
            ],
            2,
        );
        let section = |title: &str| {
            let start = md.find(title).unwrap_or_else(|| panic!("no {title}: {md}"));
            let rest = &md[start..];
            let end = rest[1..].find("\n## ").map_or(rest.len(), |e| e + 1);
            rest[..end].to_string()
        };
        let single = section("## Key/value writes: rota vs etcd");
        assert!(single.contains("| 900 | 1800 | 0.50× |"), "{single}");
        let puts = section("## Key/value writes on 3 nodes: rota vs etcd");
        assert!(puts.contains("| 600 | 300 | 2.00× |"), "{puts}");
        assert!(!puts.contains("1800"), "{puts}");
        let gets = section("## Linearizable reads on 3 nodes: rota vs etcd");
        assert!(gets.contains("| 5000 | 4000 | 1.25× |"), "{gets}");
        assert!(gets.contains("`POST /v3/kv/range`"), "{gets}");
    }

    fn kill(rep: usize, gap_ms: Option<f64>) -> Measurement {
        Measurement::Failover {
            rep,
            killed: 1 + rep % 3,
            gap_ms,
            resume_ms: gap_ms.map(|g| g / 2.0),
            window_ms: 5000.0,
            acked: 100,
            failed: 3,
            request_timeout_ms: 250,
        }
    }

    #[test]
    fn failover_summarises_each_system_and_lists_every_kill() {
        let mut results = Vec::new();
        for (rep, (r, e)) in [(400.0, 1200.0), (600.0, 1000.0), (500.0, 3000.0)]
            .into_iter()
            .enumerate()
        {
            results.push(on(3, outcome(ROTA, 0.0, kill(rep + 1, Some(r)))));
            results.push(on(3, outcome(ETCD, 0.0, kill(rep + 1, Some(e)))));
        }
        // A re-run of rota's third kill replaces the first record of it, and one
        // etcd kill never saw writes resume.
        results.push(on(3, outcome(ROTA, 0.0, kill(3, Some(800.0)))));
        results.push(on(3, outcome(ETCD, 0.0, kill(4, None))));
        let md = render(&results, 2);
        assert!(
            md.contains("## Failover gap on 3 nodes: rota vs etcd"),
            "{md}"
        );
        assert!(md.contains("no answer within 250 ms"), "{md}");
        // rota gaps 400, 600, 800; etcd 1200, 1000, 3000 (and one without a gap).
        let summary = md
            .lines()
            .find(|l| l.starts_with("| 3/3, 3/4 |"))
            .unwrap_or_else(|| panic!("{md}"));
        assert!(
            summary.contains("| 600 / 800 | 1200 / 3000 | 0.50× | 0.27× |"),
            "{summary}"
        );
        assert!(summary.contains("| 300 / 400 | 600 / 1500 |"), "{summary}");
        let third = md.lines().find(|l| l.starts_with("| 3 |")).unwrap();
        assert_eq!(third, "| 3 | 1 | 800 | 3 | 1 | 3000 | 3 |");
        let fourth = md.lines().find(|l| l.starts_with("| 4 |")).unwrap();
        assert_eq!(
            fourth,
            "| 4 | – | – | – | 2 | no write after the kill | 3 |"
        );
    }

    #[test]
    fn cluster_lag_has_its_own_section() {
        let lag = |p: f64| Measurement::Lag {
            executor: "record".into(),
            jobs: 1000,
            observed: 999,
            lag_ms: Summary::from_samples(vec![p]),
        };
        let md = render(
            &[
                outcome(ROTA, 0.1, lag(5.0)),
                outcome(TOKIO_CRON, 0.1, lag(250.0)),
                on(3, outcome(ROTA, 0.1, lag(40.0))),
            ],
            2,
        );
        assert!(
            md.contains("## Dispatch lag: rota vs tokio-cron-scheduler"),
            "{md}"
        );
        assert!(md.contains("## Dispatch lag on 3 nodes (rota)"), "{md}");
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| record | 1000 |"))
            .collect();
        assert_eq!(rows.len(), 2, "{md}");
        assert!(rows[0].contains("| 0.02× |"), "{}", rows[0]);
        assert_eq!(
            rows[1],
            "| record | 1000 | 999/1000 | 40.0 / 40.0 / 40.0 | 0.10 |"
        );
    }

    #[test]
    fn read_outcomes_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let good = serde_json::to_string(&outcome(ROTA, 0.1, kv(1.0))).unwrap();
        std::fs::write(
            &path,
            format!("{good}\n\n# comment\n{{\"bench\": \"nope\"}}\n"),
        )
        .unwrap();
        let err = read_outcomes(&path).unwrap_err().to_string();
        assert!(err.contains("r.jsonl:4"), "{err}");
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(read_outcomes(&path).unwrap().len(), 1);
    }
}
