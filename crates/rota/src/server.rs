//! `rota server`: wires a node together and runs it until a signal.
//!
//! Start-up: resolve the config, start logging, read the TLS files, bind the
//! listener (first, so a taken port fails before storage is touched), start the
//! Raft [`Node`] (on a fresh data directory: a one-member cluster, one of the
//! `--peers`, or an empty node that `--join`s), spawn the scheduler, serve the API
//! and the peer endpoints on one port (HTTPS only with `tls_cert` and `tls_key`,
//! see [`crate::tls`]), then (as peers can only reach the node once it serves) ask
//! the cluster to add this node when joining, and optionally apply the demo jobs.
//!
//! Shutdown on SIGINT or SIGTERM, in dependency order: while Raft and the API go
//! on, a leader hands its leadership over and the node takes no new runs; the runs
//! going on may finish within `shutdown_grace`, then the rest are cancelled (and
//! recorded so). Then stop the scheduler (the sinks flush), shut Raft down so
//! storage is flushed, and give open requests a moment to finish. A second signal
//! exits at once.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use chrono::Utc;
use reqwest::Url;
use rota_api::{ApiState, WatchHub};
use rota_cluster::{
    Bootstrap, ClusterOptions, Node, NodeConfig, RaftTiming, CLUSTER_SECRET_HEADER,
};
use rota_core::{ClientRequest, Command, Response};
use rota_scheduler::{LivenessConfig, SchedulerConfig, SchedulerHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::ServerArgs;
use crate::config::{advertise_for, LogFormat, ServerConfig};
use crate::jobfile::{parse_job_file, JobFileFormat};
use crate::log_filter::LogReload;

/// The jobs `--demo` creates: they work on any Linux machine without network.
const DEMO_JOBS: &str = include_str!("../../../examples/demo.toml");

/// How long open requests (a followed output, a slow write) may take to finish
/// after the server stopped accepting, before they are cut.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// How long `--join` keeps asking the cluster to add this node before giving up.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest pause between two join attempts.
const JOIN_MAX_DELAY: Duration = Duration::from_secs(5);

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let cfg = ServerConfig::load(&args.settings, std::env::var("RUST_LOG").ok())?;
    if args.join.is_some() && !cfg.peers.is_empty() {
        bail!("--join and peers exclude each other: peers found a new cluster, --join enters an existing one");
    }
    // Traces, when an endpoint is set: the exporter stops last, after every worker.
    let (trace_layer, traces) = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            let (layer, exporter) =
                crate::otlp::start(endpoint, &cfg.otlp_headers, &cfg.node_name)?;
            (Some(layer), Some(exporter))
        }
        None => (None, None),
    };
    let log_reload = init_logging(&cfg.log, cfg.log_format, trace_layer)?;
    let mut signals = Signals::new()?;
    // The TLS files are read before anything starts, so that a wrong one fails at once.
    let acceptor = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key, cfg.tls_ca.as_deref())?),
        _ => None,
    };
    // Peer mTLS: serving TLS with a CA, peers present this node's certificate.
    let peer_certificates = acceptor.is_some() && cfg.tls_ca.is_some();
    let peer_tls = match (&cfg.tls_ca, &cfg.tls_cert, &cfg.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(crate::tls::peer_client_config(ca, cert, key)?),
        (Some(ca), _, _) => Some(crate::tls::client_config("tls_ca", ca)?),
        _ => None,
    };

    let listener =
        listen(cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
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

    let bootstrap = match (&args.join, cfg.peers.is_empty()) {
        (Some(_), _) => Bootstrap::Join,
        (None, false) => Bootstrap::Peers(cfg.peers.clone()),
        (None, true) => Bootstrap::Single,
    };
    // Every long-running task of this process is a worker of `workers`; health and
    // metrics list them.
    let workers = rota_background::Runner::new();
    let node = Node::start_with(
        NodeConfig {
            node_id: cfg.node_id,
            node_name: cfg.node_name.clone(),
            data_dir: cfg.data_dir.clone(),
            advertise_url: advertise_url.clone(),
            snapshot_every: cfg.snapshot_every,
            watch_retention: rota_cluster::EventRetention {
                events: cfg.watch_retention,
                age: chrono::TimeDelta::from_std(cfg.watch_retention_age)
                    .unwrap_or(rota_cluster::RETENTION_AGE),
            },
        },
        ClusterOptions {
            bootstrap,
            secret: cfg.cluster_secret.clone(),
            timing: RaftTiming {
                heartbeat_interval: cfg.heartbeat_interval,
                election_timeout: cfg.election_timeout,
            },
            tls: peer_tls.clone(),
            peer_certificates,
        },
        &workers,
    )
    .await
    .with_context(|| format!("cannot start the node in {}", cfg.data_dir.display()))?;
    // Before any run starts: the process groups a crashed earlier process of this
    // node left running are stopped (their attempts are retried as lost ones).
    let processes = cfg.data_dir.join("processes");
    let killed = rota_exec::ledger::open(&processes)
        .with_context(|| format!("cannot check the runs left in {}", processes.display()))?;
    if !killed.is_empty() {
        info!(
            groups = killed.len(),
            "stopped the process groups of runs left running by a crash"
        );
    }
    // The scheduler runs as a worker of its own scope: stopped, and awaited, before
    // the node.
    let scheduling = workers.scope();
    // Counters `/metrics` reports, and the sinks runs send records to; the sinks
    // flush what they hold when the scope stops.
    let telemetry = rota_scheduler::telemetry::Telemetry::new();
    let sinks = rota_scheduler::sinks::SinkRegistry::new();
    rota_scheduler::sinks::spawn(node.clone(), sinks.clone(), telemetry.clone(), &scheduling);
    let scheduler = SchedulerHandle::spawn_with(
        node.clone(),
        SchedulerConfig {
            node_name: cfg.node_name.clone(),
            max_running: cfg.max_running,
            tags: cfg.tags.clone(),
            sinks: Some(sinks),
            telemetry: Some(telemetry.clone()),
            fire_ahead: cfg.fire_ahead,
        },
        LivenessConfig {
            node_timeout: cfg.node_timeout,
            // A third of the timeout leaves room for two lost heartbeats.
            heartbeat_interval: cfg.node_timeout / 3,
        },
        &scheduling,
    );
    // Webhooks of runs that start and finish, sent while this node leads.
    rota_scheduler::notifier::spawn(node.clone(), &scheduling);
    rota_scheduler::run_timeouts::spawn(node.clone(), &scheduling);
    rota_scheduler::artifact_sweep::spawn(node.clone(), &scheduling);
    rota_scheduler::telemetry::spawn(node.clone(), telemetry.clone(), &scheduling);
    rota_scheduler::discovery::spawn(
        node.clone(),
        telemetry.clone(),
        cfg.discovery_throttle,
        &scheduling,
    );

    crate::log_filter::spawn(node.clone(), cfg.log.clone(), log_reload, &workers);
    check_exposure(&node, &cfg, bound, peer_certificates, args.insecure)?;

    let startup = Startup {
        join: args.join.clone(),
        secret: cfg.cluster_secret.clone(),
        tls: peer_tls,
        demo: args.demo,
        admin_token: cfg.auth_admin_token.clone(),
    };
    // The watch worker has its own scope: stopped before the HTTP server drains, so
    // open watch streams end instead of holding the drain up.
    let watching = workers.scope();
    let watch = WatchHub::with_max_connections(cfg.watch_buffer, cfg.watch_max_connections);
    watch.spawn_worker(node.store().clone(), &watching);
    let api = ApiState {
        node: node.clone(),
        scheduler: scheduler.clone(),
        started_at: Utc::now(),
        workers: workers.clone(),
        watch,
        telemetry,
        settings: cfg
            .entries()
            .into_iter()
            .map(|(key, value, source)| rota_api::StaticSetting {
                key,
                value,
                source: source.as_str(),
            })
            .collect(),
        admin_token_hash: cfg.auth_admin_token.as_deref().map(rota_api::hash_token),
    };
    let served = serve(
        &node,
        api,
        Port {
            tcp: listener,
            tls: acceptor,
        },
        bound,
        &advertise_url,
        startup,
        &mut signals,
    )
    .await;

    // Whatever ended serving (a signal, a failure), stop in dependency order: the
    // scheduler, then the node (a leader hands over to a successor, which needs
    // this node's peer routes to answer its vote request), then the HTTP server.
    let (http, outcome) = match served {
        Ok(Served { http, outcome }) => (Some(http), outcome),
        Err(err) => (None, Err(err)),
    };
    tokio::spawn(async move {
        let signal = signals.next().await;
        warn!(signal, "second signal: exiting without a clean shutdown");
        std::process::exit(130);
    });
    if outcome.is_ok() {
        hand_over_and_drain(&node, &scheduler, cfg.shutdown_grace).await;
    }
    info!("stopping the scheduler and flushing the sinks");
    scheduling.stop().await;
    info!("stopping Raft");
    let stopped = node
        .shutdown()
        .await
        .context("cannot stop the node cleanly");
    watching.stop().await;
    if let Some(http) = http {
        http.drain().await;
    }
    workers.stop().await;
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    outcome?;
    stopped?;
    info!("rota stopped");
    Ok(())
}

/// Connections the kernel may hold for the server before it accepts them (the
/// kernel caps it at `net.core.somaxconn`). tokio's `bind` asks for 128, as the
/// standard library does: a burst of more new connections than that (clients
/// reconnecting at once after a failover, a load generator's start) overflows the
/// queue, and each connection dropped waits out TCP's 1 s retransmission.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the API's listening socket with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind`: a restarted server rebinds at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The graceful part of a stop on a signal, while Raft and the API go on: a leader
/// hands its leadership over (the cluster keeps scheduling), this node takes no new
/// runs, and the runs going on may finish within `grace`; those still going then
/// are cut short when the scheduler stops.
async fn hand_over_and_drain(node: &Node, scheduler: &SchedulerHandle, grace: Duration) {
    info!("stepping down: standing for no election, handing leadership over if leading");
    if node.step_down().await {
        info!("still leading (a one-node cluster, or no voter took over in time)");
    }
    info!(grace = %rota_core::HumanDuration(grace), "taking no new runs; letting the running ones finish");
    let drained = scheduler.drain(grace).await;
    if drained.left == 0 {
        info!(marked = drained.marked, "no runs left");
    } else {
        info!(
            runs = drained.left,
            grace = %rota_core::HumanDuration(grace),
            "the grace ran out: cancelling the runs still going"
        );
    }
}

/// Starts logging to stderr (and traces, when given); answers the handle that
/// swaps the log filter (the dynamic `log` setting).
fn init_logging(
    filter: &str,
    format: LogFormat,
    traces: Option<crate::otlp::TraceLayer>,
) -> anyhow::Result<LogReload> {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, Layer};
    let filter = crate::log_filter::build(filter)?;
    let (filter, reload) = tracing_subscriber::reload::Layer::new(filter);
    let builder = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        // Colour codes only help a person at a terminal; in files they are noise.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // `message` and the event's fields at the top level, beside `level`, as log
        // collectors expect them; the enclosing span as `span`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(traces.map(crate::otlp::TraceLayer::filtered))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))?;
    Ok(reload)
}

/// Refuses to serve on an address other than loopback while nobody needs a token
/// (no token stored, none configured) or without a cluster secret guarding the
/// peer routes, unless `insecure`; says plainly that a loopback node without
/// tokens serves everyone who reaches it as admin.
fn check_exposure(
    node: &Node,
    cfg: &ServerConfig,
    bound: SocketAddr,
    peer_certificates: bool,
    insecure: bool,
) -> anyhow::Result<()> {
    // The peer routes (/raft/*) take no API token: only the cluster secret or, with
    // peer mTLS, a client certificate of the cluster's CA.
    if !bound.ip().is_loopback() && cfg.cluster_secret.is_none() && !peer_certificates && !insecure
    {
        bail!(
            "refusing to listen on {bound} without a cluster secret: anyone who reaches it could \
             send Raft messages. Set ROTA_CLUSTER_SECRET (or cluster_secret in rota.toml) to the \
             same secret on every node, use peer certificates (tls_cert, tls_key and tls_ca), \
             listen on loopback (127.0.0.1), or pass --insecure"
        );
    }
    let (stored, _) = node
        .store()
        .auth_lookup(None)
        .context("cannot read the API tokens")?;
    if stored || cfg.auth_admin_token.is_some() {
        info!("API tokens are required (Authorization: Bearer TOKEN)");
        return Ok(());
    }
    if bound.ip().is_loopback() {
        warn!(
            listen = %bound,
            "no API token exists: every request is served as admin, on loopback only; create one with `rota token create --name NAME --role admin` or set ROTA_AUTH_ADMIN_TOKEN"
        );
        return Ok(());
    }
    if insecure {
        warn!(
            listen = %bound,
            "--insecure: serving without any API token on an address other than loopback; anyone who reaches this port can run commands on every node"
        );
        return Ok(());
    }
    bail!(
        "refusing to listen on {bound} without API tokens: anyone who reaches it could run commands on every node. \
         Set ROTA_AUTH_ADMIN_TOKEN (or auth_admin_token in rota.toml) to a secret of 16-256 characters, \
         listen on loopback (127.0.0.1), or pass --insecure"
    )
}

/// Stores the configured first admin token as `admin` unless the cluster holds a
/// token already (every node may propose it; only the first one to apply into an
/// empty token table stores it).
async fn store_admin_token(node: &Node, token: &str) -> anyhow::Result<()> {
    if node.wait_for_leader(JOIN_TIMEOUT).await.is_none() {
        bail!("no leader was elected within {JOIN_TIMEOUT:?}; the admin token was not stored");
    }
    let record = rota_core::auth::TokenRecord {
        name: rota_core::auth::BOOTSTRAP_TOKEN_NAME.to_string(),
        role: rota_core::auth::Role::Admin,
        hash: rota_api::hash_token(token),
        created_at: Utc::now(),
        created_by: None,
        revision: 0,
    };
    let req = ClientRequest {
        session: None,
        at: Utc::now(),
        command: Command::PutToken {
            record,
            only_if_none: true,
        },
    };
    match node.write(req).await {
        Ok((_, Response::TokenPut { created: true })) => {
            info!("the configured admin token is stored as the token \"admin\"");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(err) => Err(anyhow::Error::from(err).context("cannot store the admin token")),
    }
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

/// What runs once the node serves.
struct Startup {
    /// Ask the cluster at this URL to add this node.
    join: Option<Url>,
    secret: Option<String>,
    /// The join request's TLS: trusting `tls_ca`, presenting this node's
    /// certificate under peer mTLS.
    tls: Option<rustls::ClientConfig>,
    demo: bool,
    /// `auth_admin_token`: stored as the token `admin` if the store holds none.
    admin_token: Option<String>,
}

impl Startup {
    async fn run(self, node: &Node, advertise_url: &str) -> anyhow::Result<()> {
        if let Some(via) = &self.join {
            join_cluster(
                node,
                via,
                advertise_url,
                self.secret.as_deref(),
                self.tls.clone(),
            )
            .await?;
        }
        if let Some(token) = &self.admin_token {
            store_admin_token(node, token).await?;
        }
        if self.demo {
            // In a cluster the first leader may take a while: all peers must run.
            if node.wait_for_leader(JOIN_TIMEOUT).await.is_none() {
                bail!(
                    "no leader was elected within {JOIN_TIMEOUT:?}; the demo jobs were not applied"
                );
            }
            apply_demo(node).await?;
        }
        Ok(())
    }
}

/// The bound port, and how to shake hands on it when it serves HTTPS.
struct Port {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

async fn serve(
    node: &Arc<Node>,
    api: ApiState,
    port: Port,
    bound: SocketAddr,
    advertise_url: &str,
    startup: Startup,
    signals: &mut Signals,
) -> anyhow::Result<Served> {
    let app = rota_api::router(api).merge(node.peer_router());

    let stop = CancellationToken::new();
    // The client's address reaches handlers (the per-address limit on failed
    // sign-ins).
    let router = app.clone();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let stopped = stop.clone().cancelled_owned();
    let mut url = advertise_for(bound);
    let Port { tcp: listener, tls } = port;
    let mut task = match tls {
        // The TLS listener sets TCP_NODELAY itself, before the handshake.
        Some(acceptor) => {
            url = url.replacen("http", "https", 1);
            let listener = crate::tls::TlsListener::new(listener, acceptor)
                .context("cannot read the address listened on")?;
            // Per connection: the client's address (as `ConnectInfo` does) and
            // whether its certificate was verified (a peer, under peer mTLS).
            let make = tower::service_fn(
                move |incoming: axum::serve::IncomingStream<'_, crate::tls::TlsListener>| {
                    let addr = *incoming.remote_addr();
                    let verified = crate::tls::client_verified(incoming.io());
                    let service = tower::ServiceExt::map_request(
                        router.clone(),
                        move |mut request: axum::extract::Request| {
                            request
                                .extensions_mut()
                                .insert(axum::extract::ConnectInfo(addr));
                            if verified {
                                request.extensions_mut().insert(rota_cluster::VerifiedPeer);
                            }
                            request
                        },
                    );
                    std::future::ready(Ok::<_, std::convert::Infallible>(service))
                },
            );
            let server = axum::serve(listener, make).with_graceful_shutdown(stopped);
            tokio::spawn(async move { server.await })
        }
        None => {
            // axum does not set TCP_NODELAY; without it small answers can wait ~40 ms
            // for the peer's delayed ACK.
            let listener = listener.tap_io(|socket| {
                let _ = socket.set_nodelay(true);
            });
            let server = axum::serve(listener, app).with_graceful_shutdown(stopped);
            tokio::spawn(async move { server.await })
        }
    };
    info!(
        url = %url,
        advertise = %advertise_url,
        "rota is listening"
    );

    // Start-up actions run while serving; a failed one stops the server. Once done
    // the future waits forever, leaving the other branches to end serving.
    let started = async {
        startup.run(node, advertise_url).await?;
        std::future::pending::<anyhow::Result<()>>().await
    };
    let outcome = tokio::select! {
        signal = signals.next() => {
            info!(signal, "shutting down");
            Ok(())
        }
        failed = started => {
            let err = failed.err().unwrap_or_else(|| anyhow::anyhow!("start-up ended"));
            error!(error = %format!("{err:#}"), "start-up failed; shutting down");
            Err(err)
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

/// Asks the cluster at `via` to add this node (`POST /v1/cluster/members`), again
/// while the answer is retryable (unreachable, no leader, another change in
/// progress), up to [`JOIN_TIMEOUT`]. A node that is a member already skips it.
async fn join_cluster(
    node: &Node,
    via: &Url,
    advertise_url: &str,
    secret: Option<&str>,
    tls: Option<rustls::ClientConfig>,
) -> anyhow::Result<()> {
    if node.is_member() {
        info!(via = %via, "already a cluster member; not joining again");
        return Ok(());
    }
    let id = node.config().node_id;
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        builder = builder.tls_backend_preconfigured(tls);
    }
    let http = builder
        .connect_timeout(Duration::from_secs(2))
        // The leader waits for this node to catch up (maybe through a snapshot)
        // before it answers.
        .timeout(Duration::from_secs(90))
        .build()
        .context("cannot build the HTTP client to join with")?;
    let url = format!("{}/v1/cluster/members", via.as_str().trim_end_matches('/'));
    let body = serde_json::json!({ "id": id, "url": advertise_url });
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut delay = Duration::from_millis(200);
    info!(via = %via, node_id = id, url = %advertise_url, "asking the cluster to add this node");
    loop {
        let mut request = http.post(&url).json(&body);
        if let Some(secret) = secret {
            request = request.header(CLUSTER_SECRET_HEADER, secret);
        }
        let reason = match request.send().await {
            Ok(answer) if answer.status().is_success() => {
                info!(via = %via, node_id = id, "joined the cluster");
                return Ok(());
            }
            Ok(answer) => {
                let status = answer.status();
                let text = answer.text().await.unwrap_or_default();
                if !status.is_server_error() {
                    bail!("{url} refused to add node {id} ({status}): {text}");
                }
                format!("{status}: {text}")
            }
            Err(err) => rota_core::error::chain(&err),
        };
        if tokio::time::Instant::now() + delay > deadline {
            bail!("could not join the cluster through {via} within {JOIN_TIMEOUT:?}: {reason}");
        }
        warn!(via = %via, %reason, retry_in = ?delay, "join not accepted yet");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(JOIN_MAX_DELAY);
    }
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

    /// More connections than tokio's default backlog (128) arrive before the
    /// server accepts any: the kernel queues them all. With a 128 backlog the
    /// 130th connect is dropped and retried by TCP for minutes.
    #[tokio::test]
    async fn a_burst_of_connections_is_queued_before_any_is_accepted() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listening");
        let addr = listener.local_addr().unwrap();
        // The kernel caps the backlog at `net.core.somaxconn` (4096 on current
        // kernels, 128 before Linux 5.4).
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let burst = 300.min(cap);
        let mut held = Vec::new();
        for n in 1..=burst {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(Duration::from_secs(30), connect)
                .await
                .unwrap_or_else(|_| panic!("connection {n} was not queued"))
                .expect("connected");
            held.push(stream);
        }
        assert_eq!(held.len(), burst);
    }
}
