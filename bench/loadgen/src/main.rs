//! `loadgen`: the command line of the benchmark load generator. Each subcommand
//! runs one step and prints its result as a JSON line on stdout (progress and a
//! human summary on stderr); `report` renders a file of those lines as markdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use loadgen::cluster::{wait_settled, Settled};
use loadgen::failover::{run_failover, FailoverRun};
use loadgen::frozen::{run_frozen, FrozenRun};
use loadgen::get::{run_get, GetRun};
use loadgen::jobs::{job_spec, run_jobs, JobExecutor};
use loadgen::kv::{error_chain, run_kv, KvRun, Stop, Target};
use loadgen::lag::{run_lag, LagRun};
use loadgen::memory::{run_memory, wait_ready, MemoryRun, ReadyWait};
use loadgen::stamps::StampFormat;
use loadgen::watch::{run_watch, WatchRun};
use loadgen::{fires, report, BenchError, Outcome};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Benchmark load generator for rota (and etcd)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TargetArg {
    Rota,
    Etcd,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::Rota => Target::Rota,
            TargetArg::Etcd => Target::Etcd,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExecutorArg {
    Record,
    Shell,
}

impl From<ExecutorArg> for StampFormat {
    fn from(e: ExecutorArg) -> StampFormat {
        match e {
            ExecutorArg::Record => StampFormat::Record,
            ExecutorArg::Shell => StampFormat::Shell,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Durable PUTs of distinct keys: throughput and latency.
    Kv {
        #[arg(long, value_enum)]
        target: TargetArg,
        /// Endpoints, comma-separated; clients are spread over them in turn.
        #[arg(long, value_delimiter = ',', required = true)]
        url: Vec<String>,
        /// Voters of the cluster behind the endpoints (for the report).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Total requests (across clients).
        #[arg(long, conflicts_with = "secs", required_unless_present = "secs")]
        ops: Option<u64>,
        /// Run for this many seconds.
        #[arg(long)]
        secs: Option<f64>,
        #[arg(long, default_value_t = 16)]
        value_bytes: usize,
        /// Keys are `<prefix>/<client>/<i>`.
        #[arg(long, default_value = "bench")]
        key_prefix: String,
        /// This run is round N of a case measured several times, alternating the
        /// systems; the report compares the rounds' medians.
        #[arg(long)]
        round: Option<usize>,
    },
    /// Linearizable GETs of keys written first: throughput and latency.
    Get {
        #[arg(long, value_enum)]
        target: TargetArg,
        /// Endpoints, comma-separated; clients are spread over them in turn.
        #[arg(long, value_delimiter = ',', required = true)]
        url: Vec<String>,
        /// Voters of the cluster behind the endpoints (for the report).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Total reads (across clients).
        #[arg(long, conflicts_with = "secs", required_unless_present = "secs")]
        ops: Option<u64>,
        /// Read for this many seconds.
        #[arg(long)]
        secs: Option<f64>,
        /// Distinct keys written before the reads, then read in turn.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        #[arg(long, default_value_t = 16)]
        value_bytes: usize,
        /// Keys are `<prefix>/<i>`.
        #[arg(long, default_value = "bench-get")]
        key_prefix: String,
        /// As for `kv`.
        #[arg(long)]
        round: Option<usize>,
    },
    /// Watch delivery: watchers on one prefix, then writers put keys under it.
    Watch {
        #[arg(long, value_enum)]
        target: TargetArg,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 1)]
        watchers: usize,
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Keys written (each must reach every watcher).
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        #[arg(long, default_value_t = 16)]
        value_bytes: usize,
        /// Keys are `<prefix>/<i>`; use a fresh prefix per run.
        #[arg(long)]
        key_prefix: String,
        /// How long watchers may take after the last write.
        #[arg(long, default_value_t = 30)]
        drain_secs: u64,
    },
    /// Wait until a cluster agrees on a leader; print its 1-based position in --urls.
    ClusterWait {
        #[arg(long, value_enum)]
        target: TargetArg,
        /// Every node of the cluster, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        /// Wait until every node answers and caught up with the leader, not only a
        /// majority.
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Keep writing while the script kills leaders; then one result per kill.
    Failover {
        #[arg(long, value_enum)]
        target: TargetArg,
        /// Every node of the cluster, comma-separated; the writer starts with the first.
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        /// Where acknowledged writes are logged as they arrive (`<unix ns> <node>`).
        #[arg(long)]
        acks: PathBuf,
        /// The script's kills: `<rep> <killed node> <kill unix ns> <end unix ns>`.
        #[arg(long)]
        kills: PathBuf,
        /// The writer stops once this file exists.
        #[arg(long)]
        stop_file: PathBuf,
        /// Longest wait for one answer before the write goes to the next node. Short,
        /// because a member without a leader may hold a write for seconds (etcd 3.4
        /// does): the timeout bounds how late the writer notices that another node
        /// would answer.
        #[arg(long, default_value_t = 250)]
        request_timeout_ms: u64,
        /// Stop after this long even without the stop file.
        #[arg(long, default_value_t = 3600)]
        max_secs: u64,
    },
    /// One write to a follower right after the leader is stopped (SIGSTOP); the
    /// leader is continued afterwards and the cluster waited on until caught up.
    Frozen {
        #[arg(long, value_enum)]
        target: TargetArg,
        /// Every node of the cluster, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        /// The leader's 1-based position in --urls (`cluster-wait` prints it).
        #[arg(long)]
        leader: usize,
        /// The leader's process id.
        #[arg(long)]
        pid: u32,
        /// The follower to write to (1-based); default: the node after the leader.
        #[arg(long)]
        follower: Option<usize>,
        #[arg(long, default_value_t = 1)]
        rep: usize,
        /// Longest wait for the answer, and for a new leader.
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
        /// Longest wait for every node to catch up after SIGCONT.
        #[arg(long, default_value_t = 60)]
        settle_timeout_secs: u64,
    },
    /// Create N jobs concurrently (then delete them with --delete).
    Jobs {
        #[arg(long)]
        url: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, value_enum, default_value = "record")]
        executor: ExecutorArg,
        /// Directory of the record executor's file (`jobs.log`; written only when
        /// the jobs fire, which the default schedule does not during a run).
        #[arg(long)]
        dir: PathBuf,
        /// Command of the shell executor.
        #[arg(long, default_value = "true")]
        command: String,
        /// A cron expression, or a schedule as JSON (`{"every": "1h"}`).
        #[arg(long, default_value = "0 0 1 1 *", value_parser = schedule_json)]
        schedule: Value,
        /// Job names are `<prefix>-<0000001>`.
        #[arg(long, default_value = "b")]
        prefix: String,
        #[arg(long)]
        delete: bool,
    },
    /// Dispatch lag of N jobs due at the same second (one result per N).
    Lag {
        #[arg(long)]
        url: String,
        /// Job counts, e.g. 1,1000,10000.
        #[arg(long, value_delimiter = ',', required = true)]
        jobs: Vec<usize>,
        #[arg(long, value_enum, default_value = "record")]
        executor: ExecutorArg,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Directory for the stamp files (written by the server).
        #[arg(long)]
        dir: PathBuf,
        /// Seconds between the start of creation and the fire time.
        #[arg(long)]
        lead_secs: Option<f64>,
        /// Seconds to wait for the runs after the fire time.
        #[arg(long, default_value_t = 120)]
        wait_secs: u64,
        /// Voters of the cluster behind --url (for the report).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
    },
    /// Sustained fires per second of K every-second jobs.
    Fires {
        #[arg(long)]
        url: String,
        #[arg(long)]
        jobs: usize,
        #[arg(long, value_enum, default_value = "record")]
        executor: ExecutorArg,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10)]
        window_secs: u64,
        #[arg(long, default_value_t = 3)]
        warmup_secs: u64,
        /// The server's `--fire-ahead` in milliseconds (its default: 1500). Runs are
        /// fired that long before their instant, so the fired counter is read that
        /// much earlier too (shell executor).
        #[arg(long, default_value_t = 1500)]
        fire_ahead_ms: u64,
    },
    /// Resident memory of the server with N jobs stored.
    Memory {
        #[arg(long, value_enum, default_value = "rota")]
        target: TargetArg,
        #[arg(long)]
        url: String,
        /// The server process.
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        jobs: usize,
        /// Jobs below this index exist already (from a smaller run).
        #[arg(long, default_value_t = 0)]
        from: usize,
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long)]
        dir: PathBuf,
        /// The server's data directory (its size is reported).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 900)]
        load_timeout_secs: u64,
        /// Read the RSS again after this many seconds without requests (0: not).
        #[arg(long, default_value_t = 0)]
        idle_secs: u64,
    },
    /// Time until a just-restarted server is ready with all jobs loaded.
    WaitReady {
        #[arg(long, value_enum, default_value = "rota")]
        target: TargetArg,
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 0)]
        jobs: usize,
        /// When the new process was started, Unix nanoseconds (`date +%s%N`).
        #[arg(long)]
        started_ns: i128,
        /// How long the old process took to exit, in milliseconds.
        #[arg(long)]
        stop_ms: Option<f64>,
        /// How the old process was stopped (for the table).
        #[arg(long, default_value = "SIGTERM")]
        signal: String,
        /// The new process (its memory is reported once ready).
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
    },
    /// Render a file of results as markdown.
    Report {
        #[arg(long)]
        input: PathBuf,
        /// Cores of the machine the results come from (rows above this load are marked).
        #[arg(long)]
        cores: Option<usize>,
    },
}

/// The server resolves the record executor's path against its own working
/// directory, so the harness hands it absolute paths.
fn absolute(dir: PathBuf) -> PathBuf {
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A request count wins over a duration; neither means ten seconds.
fn stop_of(ops: Option<u64>, secs: Option<f64>) -> Stop {
    match (ops, secs) {
        (Some(n), _) => Stop::Ops(n),
        // Bounded, so that the deadline stays a representable instant.
        (None, Some(s)) if s.is_nan() => Stop::Duration(Duration::ZERO),
        (None, Some(s)) => Stop::Duration(Duration::from_secs_f64(s.clamp(0.0, 1e9))),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    }
}

fn schedule_json(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
    } else {
        Ok(json!({ "cron": text }))
    }
}

async fn run(cmd: Command) -> Result<Vec<Outcome>, BenchError> {
    Ok(match cmd {
        Command::Kv {
            target,
            url,
            nodes,
            clients,
            ops,
            secs,
            value_bytes,
            key_prefix,
            round,
        } => vec![run_kv(KvRun {
            target: target.into(),
            urls: url,
            nodes,
            clients,
            stop: stop_of(ops, secs),
            value_bytes,
            key_prefix,
        })
        .await?
        .in_round(round)],
        Command::Get {
            target,
            url,
            nodes,
            clients,
            ops,
            secs,
            keys,
            value_bytes,
            key_prefix,
            round,
        } => vec![run_get(GetRun {
            target: target.into(),
            urls: url,
            nodes,
            clients,
            stop: stop_of(ops, secs),
            keys,
            value_bytes,
            key_prefix,
        })
        .await?
        .in_round(round)],
        Command::Watch {
            target,
            url,
            watchers,
            writers,
            events,
            value_bytes,
            key_prefix,
            drain_secs,
        } => vec![
            run_watch(WatchRun {
                target: target.into(),
                url,
                watchers,
                writers,
                events,
                value_bytes,
                key_prefix,
                drain: Duration::from_secs(drain_secs),
            })
            .await?,
        ],
        Command::ClusterWait {
            target,
            urls,
            all,
            timeout_secs,
        } => {
            let settled = if all { Settled::All } else { Settled::Leader };
            let leader = wait_settled(
                target.into(),
                &urls,
                settled,
                Duration::from_secs(timeout_secs),
            )
            .await?;
            println!("{}", leader + 1);
            Vec::new()
        }
        Command::Failover {
            target,
            urls,
            acks,
            kills,
            stop_file,
            request_timeout_ms,
            max_secs,
        } => {
            run_failover(FailoverRun {
                target: target.into(),
                urls,
                acks,
                kills,
                stop_file,
                request_timeout: Duration::from_millis(request_timeout_ms.max(1)),
                max_duration: Duration::from_secs(max_secs),
            })
            .await?
        }
        Command::Frozen {
            target,
            urls,
            leader,
            pid,
            follower,
            rep,
            timeout_secs,
            settle_timeout_secs,
        } => vec![
            run_frozen(FrozenRun {
                target: target.into(),
                urls,
                leader,
                pid,
                follower,
                rep,
                timeout: Duration::from_secs(timeout_secs.max(1)),
                settle_timeout: Duration::from_secs(settle_timeout_secs),
            })
            .await?,
        ],
        Command::Jobs {
            url,
            count,
            clients,
            executor,
            dir,
            command,
            schedule,
            prefix,
            delete,
        } => {
            let executor = match executor {
                ExecutorArg::Record => JobExecutor::record(&absolute(dir).join("jobs.log")),
                ExecutorArg::Shell => JobExecutor::Shell { command },
            };
            let spec = job_spec(&schedule, &executor);
            run_jobs(&url, &prefix, count, clients, spec, delete).await?
        }
        Command::Lag {
            url,
            jobs,
            executor,
            clients,
            dir,
            lead_secs,
            wait_secs,
            nodes,
        } => {
            // Each step is printed as soon as it ends, so that a long series keeps
            // what it measured even if a later step fails.
            for n in jobs {
                let outcome = run_lag(LagRun {
                    url: url.clone(),
                    jobs: n,
                    executor: executor.into(),
                    clients,
                    dir: absolute(dir.clone()),
                    lead_secs,
                    wait_secs,
                })
                .await?
                .on_nodes(nodes);
                outcome.emit();
            }
            Vec::new()
        }
        Command::Fires {
            url,
            jobs,
            executor,
            clients,
            dir,
            window_secs,
            warmup_secs,
            fire_ahead_ms,
        } => vec![
            fires::run_fires(fires::FiresRun {
                url,
                jobs,
                executor: executor.into(),
                clients,
                dir: absolute(dir),
                window_secs: window_secs.max(1),
                warmup_secs,
                fire_ahead: Duration::from_millis(fire_ahead_ms),
            })
            .await?,
        ],
        Command::Memory {
            target,
            url,
            pid,
            jobs,
            from,
            clients,
            dir,
            data_dir,
            load_timeout_secs,
            idle_secs,
        } => {
            run_memory(MemoryRun {
                target: target.into(),
                url,
                pid,
                jobs,
                from: from.min(jobs),
                clients,
                dir: absolute(dir),
                data_dir,
                load_timeout: Duration::from_secs(load_timeout_secs),
                idle: Duration::from_secs(idle_secs),
            })
            .await?
        }
        Command::WaitReady {
            target,
            url,
            jobs,
            started_ns,
            stop_ms,
            signal,
            pid,
            timeout_secs,
        } => vec![
            wait_ready(ReadyWait {
                target: target.into(),
                url,
                jobs,
                started_ns,
                stop_ms,
                signal,
                pid,
                timeout: Duration::from_secs(timeout_secs),
            })
            .await?,
        ],
        Command::Report { input, cores } => {
            let outcomes = report::read_outcomes(&input)?;
            let cores = cores.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            });
            print!("{}", report::render(&outcomes, cores));
            Vec::new()
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    // reqwest is built without a TLS provider of its own; plain HTTP needs none, but
    // the client builder still expects one to be installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(outcomes) => {
            for o in outcomes {
                o.emit();
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("loadgen: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}
