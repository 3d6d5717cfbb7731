//! `probe-bench`: the pieces of the targets, probes and sinks benchmark
//! (`bench/targets.sh`). `targets` serves many loopback targets from one process;
//! `fanout` times `GET /v1/jobs/{name}/check` over a large set; `check` hammers the
//! same endpoint from concurrent callers; `sink` writes points to InfluxDB through
//! `rota_sink::Sink` or through a telegraf-style batching loop; `report` renders
//! the JSON lines these print as markdown. Each measuring subcommand prints one JSON
//! line on stdout and a human summary on stderr.

mod check;
mod fanout;
mod proc;
mod report;
mod sink;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "probe-bench",
    about = "Benchmark pieces for rota's targets, probes and sinks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listens on `--count` loopback ports (one process) answering `GET /v1/synced`
    /// with 200; writes the addresses, one a line, to `--addresses` once all listen.
    Targets {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        addresses: PathBuf,
        /// Answer with `Connection: close`, so every request needs a new connection.
        #[arg(long)]
        close: bool,
    },
    /// Times `GET {url}/v1/jobs/{job}/check` `--reps` times, one after another.
    Fanout {
        #[arg(long)]
        url: String,
        #[arg(long)]
        job: String,
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Targets every answer must list, all synced.
        #[arg(long)]
        targets: usize,
        /// A label for the report (how the targets answer).
        #[arg(long)]
        variant: String,
        /// rota's process id, to report its CPU time per check.
        #[arg(long)]
        pid: Option<u32>,
        /// The target server's process id, to report its CPU time per check.
        #[arg(long)]
        targets_pid: Option<u32>,
    },
    /// `--callers` closed-loop callers of `GET {url}/v1/jobs/{job}/check` for `--secs`.
    Check {
        #[arg(long)]
        url: String,
        #[arg(long)]
        job: String,
        #[arg(long, default_value_t = 10)]
        callers: usize,
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// rota's process id, to report its CPU use during the run.
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Writes `--points` points to a fresh database of the InfluxDB 1.x at `--influx`.
    Sink {
        #[arg(long)]
        influx: String,
        #[arg(long, value_enum)]
        writer: WriterArg,
        #[arg(long)]
        batch_size: usize,
        #[arg(long, default_value_t = 200_000)]
        points: usize,
        /// The database written (created first; should not exist yet).
        #[arg(long)]
        database: String,
        /// rota: hand the points to `Sink::send` this many at a time (as jobs do,
        /// a result at a time) rather than all in one call.
        #[arg(long)]
        send_chunk: Option<usize>,
    },
    /// Renders a file of the JSON lines above (and the script's) as markdown.
    Report {
        #[arg(long)]
        input: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WriterArg {
    /// `rota_sink::Sink`.
    Rota,
    /// Sequential POSTs of `--batch-size` points, the way telegraf's output flushes
    /// a full batch.
    Telegraf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("probe-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Targets {
                count,
                addresses,
                close,
            } => targets::serve(count, &addresses, close).await,
            Command::Fanout {
                url,
                job,
                reps,
                targets,
                variant,
                pid,
                targets_pid,
            } => {
                let pids = fanout::Pids {
                    rota: pid,
                    targets: targets_pid,
                };
                fanout::run(&url, &job, reps, targets, &variant, pids).await
            }
            Command::Check {
                url,
                job,
                callers,
                secs,
                pid,
            } => check::run(&url, &job, callers, secs, pid).await,
            Command::Sink {
                influx,
                writer,
                batch_size,
                points,
                database,
                send_chunk,
            } => {
                let writer = match writer {
                    WriterArg::Rota => sink::Writer::Rota,
                    WriterArg::Telegraf => sink::Writer::Telegraf,
                };
                let run = sink::SinkRun {
                    influx: &influx,
                    writer,
                    batch_size,
                    points,
                    database: &database,
                    send_chunk: send_chunk.unwrap_or(points).max(1),
                };
                sink::run(run).await
            }
            Command::Report { input } => report::render(&input),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("probe-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The HTTP client of the drivers: rustls with ring, as rota builds its own.
pub(crate) fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
