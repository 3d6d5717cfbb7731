//! `rota server`: wires a node together and runs it until a signal.
//!
//! Start-up: resolve the config, start logging, bind the listener (first, so a
//! taken port fails before storage is touched), start the Raft [`Node`] (a
//! one-member cluster on a fresh data directory), spawn the scheduler, optionally
//! apply the demo jobs, then serve the API and the peer endpoints on one port.
//!
//! Shutdown on SIGINT or SIGTERM, in dependency order: stop accepting connections,
//! stop the scheduler and wait for it, give open requests a moment to finish, then
//! shut Raft down so storage is flushed. A second signal exits at once.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use chrono::Utc;
use rota_api::ApiState;
use rota_cluster::{Node, NodeConfig};
use rota_core::{ClientRequest, Command, Response};
use rota_scheduler::{SchedulerConfig, SchedulerHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::ServerArgs;
use crate::config::{advertise_for, ServerConfig};
use crate::jobfile::{parse_job_file, JobFileFormat};

/// The jobs `--demo` creates: they work on any Linux machine without network.
const DEMO_JOBS: &str = include_str!("../../../examples/demo.toml");

/// How long open requests (a followed output, a slow write) may take to finish
/// after the server stopped accepting, before they are cut.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

pub const CLUSTERING_UNAVAILABLE: &str =
    "clustering is not available in this release; run a single node (without --join and --peers)";

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.join.is_some() || !args.peers.is_empty() {
        bail!(CLUSTERING_UNAVAILABLE);
    }
    let cfg = ServerConfig::load(&args.settings, std::env::var("RUST_LOG").ok())?;
    init_logging(&cfg.log)?;
    let mut signals = Signals::new()?;

    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the address listened on")?;
    let advertise_url = cfg.advertise_url(bound);
    info!(
        node_id = cfg.node_id,
        node = %cfg.node_name,
        data_dir = %cfg.data_dir.display(),
        config_file = ?cfg.config_file,
        "starting rota"
    );

    let node = Node::start(NodeConfig {
        node_id: cfg.node_id,
        node_name: cfg.node_name.clone(),
        data_dir: cfg.data_dir.clone(),
        advertise_url: advertise_url.clone(),
        snapshot_every: cfg.snapshot_every,
    })
    .await
    .with_context(|| format!("cannot start the node in {}", cfg.data_dir.display()))?;
    let stop_scheduler = CancellationToken::new();
    let scheduler = SchedulerHandle::spawn(
        node.clone(),
        SchedulerConfig {
            node_name: cfg.node_name.clone(),
            max_running: cfg.max_running,
        },
        stop_scheduler.clone(),
    );

    let served = serve(
        &node,
        &scheduler,
        listener,
        bound,
        &advertise_url,
        args.demo,
        &mut signals,
    )
    .await;

    // Whatever ended serving (a signal, a failure), stop in dependency order.
    let (http, outcome) = match served {
        Ok(Served { http, outcome }) => (Some(http), outcome),
        Err(err) => (None, Err(err)),
    };
    if let Some(http) = &http {
        http.stop.cancel();
    }
    tokio::spawn(async move {
        let signal = signals.next().await;
        warn!(signal, "second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
    stop_scheduler.cancel();
    scheduler.stopped().await;
    if let Some(http) = http {
        http.drain().await;
    }
    let stopped = node
        .shutdown()
        .await
        .context("cannot stop the node cleanly");
    outcome?;
    stopped?;
    info!("rota stopped");
    Ok(())
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal; in files they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

/// The HTTP server task and the token that stops it from accepting.
struct Http {
    task: JoinHandle<std::io::Result<()>>,
    stop: CancellationToken,
}

impl Http {
    /// Waits for open requests to finish, up to [`HTTP_DRAIN`], then cuts them.
    async fn drain(mut self) {
        self.stop.cancel();
        match tokio::time::timeout(HTTP_DRAIN, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => warn!(error = %err, "HTTP server ended with an error"),
            Ok(Err(err)) => warn!(error = %err, "HTTP server task failed"),
            Err(_) => {
                warn!(after = ?HTTP_DRAIN, "requests still open at shutdown; closing them");
                self.task.abort();
            }
        }
    }
}

/// How serving ended: by a signal (`Ok`) or because the HTTP server stopped.
struct Served {
    http: Http,
    outcome: anyhow::Result<()>,
}

async fn serve(
    node: &Arc<Node>,
    scheduler: &Arc<SchedulerHandle>,
    listener: TcpListener,
    bound: SocketAddr,
    advertise_url: &str,
    demo: bool,
    signals: &mut Signals,
) -> anyhow::Result<Served> {
    if demo {
        apply_demo(node).await?;
    }
    let app = rota_api::router(ApiState {
        node: node.clone(),
        scheduler: scheduler.clone(),
        started_at: Utc::now(),
    })
    .merge(node.peer_router());

    let stop = CancellationToken::new();
    // axum does not set TCP_NODELAY; without it small answers can wait ~40 ms for
    // the peer's delayed ACK.
    let listener = listener.tap_io(|socket| {
        let _ = socket.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut task = tokio::spawn(async move { server.await });
    info!(
        url = %advertise_for(bound),
        advertise = %advertise_url,
        "rota is listening"
    );

    let outcome = tokio::select! {
        signal = signals.next() => {
            info!(signal, "shutting down");
            Ok(())
        }
        ended = &mut task => {
            let reason = match ended {
                Ok(Ok(())) => "the HTTP server stopped".to_string(),
                Ok(Err(err)) => format!("the HTTP server failed: {err}"),
                Err(err) => format!("the HTTP server task failed: {err}"),
            };
            error!(%reason, "shutting down");
            Err(anyhow::anyhow!(reason))
        }
    };
    Ok(Served {
        http: Http { task, stop },
        outcome,
    })
}

/// Creates or replaces the demo jobs, in one log entry.
async fn apply_demo(node: &Node) -> anyhow::Result<()> {
    let specs = parse_job_file(DEMO_JOBS, JobFileFormat::Toml).context("demo jobs")?;
    let mut commands = Vec::with_capacity(specs.len());
    for spec in specs {
        // The API validates before proposing; this path bypasses it, so do the same.
        spec.validate()
            .with_context(|| format!("demo job {:?}", spec.name))?;
        commands.push(Command::PutJob { spec });
    }
    let request = ClientRequest {
        session: None,
        at: Utc::now(),
        command: Command::Batch { commands },
    };
    let (revision, response) = node
        .write(request)
        .await
        .context("cannot apply the demo jobs")?;
    let responses = match response {
        Response::Batch { responses } => responses,
        other => vec![other],
    };
    for response in responses {
        match response {
            Response::JobPut { created, job } => {
                info!(job = %job.spec.name, created, revision, "demo job applied");
            }
            other => warn!(response = ?other, "a demo job was not applied"),
        }
    }
    Ok(())
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix), registered once at start so that a
/// signal during start-up is not lost.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_jobs_parse_and_validate() {
        let specs = parse_job_file(DEMO_JOBS, JobFileFormat::Toml).expect("demo.toml parses");
        assert!(!specs.is_empty());
        for spec in specs {
            spec.validate()
                .unwrap_or_else(|e| panic!("demo job {}: {e}", spec.name));
        }
    }

    #[tokio::test]
    async fn join_and_peers_are_refused() {
        for args in [
            ServerArgs {
                join: Some("http://10.0.0.1:7700".into()),
                ..Default::default()
            },
            ServerArgs {
                peers: vec!["http://10.0.0.1:7700".into()],
                ..Default::default()
            },
        ] {
            let err = run(args).await.unwrap_err();
            assert_eq!(err.to_string(), CLUSTERING_UNAVAILABLE);
        }
    }
}
