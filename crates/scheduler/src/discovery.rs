//! The worker `discovery`: while its node leads, it runs the provider of every
//! target set (crate `rota-discovery`) and commits what each finds
//! (`Command::RecordTargets`), so that every node answers the same targets.
//!
//! Each set's manager merges its provider's sources and passes a state on only
//! when it really changed, at most once per throttle window; it starts from the
//! state already committed, so a new leader re-discovering an unchanged set
//! commits nothing. A result is tied to the spec's generation: a set whose spec
//! changed or that was deleted meanwhile refuses it, and its discovery is
//! restarted or stopped here when the store says so. A commit that fails
//! (no quorum for a moment) is tried again, with backoff, until it lands or the
//! set's discovery stops; a leader that dies with a change pending leaves it to
//! the next leader's discovery, which finds the same change and commits it once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_background::{Runner, WorkerContext};
use rota_cluster::Node;
use rota_core::event::types;
use rota_core::targets::{TargetSet, TargetSetState};
use rota_core::{ClientRequest, Command, EventKind, Response};
use rota_discovery::{discover, Manager, ManagerStats};
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::telemetry::Telemetry;

/// How often the received counters are brought up to date.
const SYNC: Duration = Duration::from_secs(1);
/// Longest wait between two tries of a commit that failed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One set being discovered.
struct Running {
    generation: u64,
    /// The throttle its manager was started with.
    throttle: Duration,
    stop: CancellationToken,
    stats: Option<Arc<ManagerStats>>,
    /// Updates received already counted in the telemetry.
    counted: u64,
}

/// Starts the worker `discovery` of `workers`. `throttle` is the least time
/// between two committed changes of one set, unless the dynamic setting
/// `discovery_throttle` says otherwise (a change restarts every set's discovery).
pub fn spawn(node: Arc<Node>, telemetry: Arc<Telemetry>, throttle: Duration, workers: &Runner) {
    workers.spawn("discovery", move |ctx| async move {
        let mut leadership = node.leadership();
        loop {
            ctx.set_detail("following");
            if *leadership.borrow_and_update() {
                lead(&node, &ctx, &mut leadership, &telemetry, throttle).await;
            }
            tokio::select! {
                () = ctx.stopping() => return Ok(()),
                changed = leadership.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    });
}

async fn lead(
    node: &Arc<Node>,
    ctx: &WorkerContext,
    leadership: &mut watch::Receiver<bool>,
    telemetry: &Arc<Telemetry>,
    throttle: Duration,
) {
    let http = rota_exec::http::shared_client();
    let mut events = node.store().subscribe_without_kv();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut sync = tokio::time::interval(SYNC);
    // The sets are read again only when one may have changed (or a read failed);
    // the sync tick only brings the counters up to date.
    let mut reread = true;
    loop {
        if reread {
            let dynamic = node.store().dynamic_config().map(|c| c.discovery_throttle);
            match (node.store().target_sets(), dynamic) {
                (Ok(sets), Ok(dynamic)) => {
                    let throttle = dynamic.unwrap_or(throttle);
                    reconcile(node, &http, telemetry, throttle, &sets, &mut running);
                    reread = false;
                }
                (Err(err), _) | (_, Err(err)) => {
                    warn!(error = %rota_core::error::chain(&err), "cannot read the target sets")
                }
            }
        }
        for (name, r) in running.iter_mut() {
            if let Some(stats) = &r.stats {
                let received = stats.updates_received();
                telemetry.discovery(name, received - r.counted, 0);
                r.counted = received;
            }
        }
        ctx.set_detail(format!(
            "leading: discovering {} target sets",
            running.len()
        ));
        match wait_for_change(ctx, leadership, &mut events, &mut sync).await {
            Wake::Changed => reread = true,
            Wake::Tick => {}
            Wake::Stop => break,
        }
    }
    for (name, r) in running {
        debug!(set = %name, "discovery stopped: no longer leading");
        r.stop.cancel();
    }
}

/// Why [`wait_for_change`] returned.
enum Wake {
    /// A set's spec may have changed: read them again.
    Changed,
    /// The sync tick.
    Tick,
    /// No longer leading, or the worker ends.
    Stop,
}

/// Waits until a set's spec may have changed (a `targets.*` event other than
/// discovery's own, a snapshot install, missed events), the sync tick, or the end
/// of leading.
async fn wait_for_change(
    ctx: &WorkerContext,
    leadership: &mut watch::Receiver<bool>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<rota_core::StoreEvent>>,
    sync: &mut tokio::time::Interval,
) -> Wake {
    loop {
        tokio::select! {
            () = ctx.stopping() => return Wake::Stop,
            changed = leadership.changed() => {
                if changed.is_err() || !*leadership.borrow_and_update() {
                    return Wake::Stop;
                }
            }
            event = events.recv() => match event {
                Ok(e) => match &e.kind {
                    EventKind::Published(p)
                        if p.event_type.starts_with("targets.")
                            && p.event_type != types::TARGETS_DISCOVERED =>
                    {
                        debug!(set = %p.key, event = %p.event_type, "target set changed");
                        return Wake::Changed;
                    }
                    EventKind::Published(p)
                        if p.event_type == types::CONFIG_CHANGED && p.key == "discovery_throttle" =>
                    {
                        return Wake::Changed;
                    }
                    EventKind::Reset => return Wake::Changed,
                    _ => {}
                },
                Err(RecvError::Lagged(_)) => return Wake::Changed,
                Err(RecvError::Closed) => return Wake::Stop,
            },
            _ = sync.tick() => return Wake::Tick,
        }
    }
}

/// Starts discovery of new sets and of sets whose spec changed; stops it for
/// deleted ones.
fn reconcile(
    node: &Arc<Node>,
    http: &reqwest::Client,
    telemetry: &Arc<Telemetry>,
    throttle: Duration,
    sets: &[TargetSet],
    running: &mut BTreeMap<String, Running>,
) {
    running.retain(|name, r| {
        let current = sets
            .iter()
            .any(|s| s.spec.name == *name && s.generation == r.generation);
        if current && r.throttle != throttle {
            info!(set = %name, throttle = ?throttle, "discovery restarted: the throttle changed");
            r.stop.cancel();
            return false;
        }
        if !current {
            info!(set = %name, "discovery stopped: the set was deleted or changed");
            r.stop.cancel();
        }
        current
    });
    for set in sets {
        if running.contains_key(&set.spec.name) {
            continue;
        }
        let name = set.spec.name.clone();
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel::<TargetSetState>(4);
        let stats = match rota_discovery::build(&set.spec.provider, http.clone()) {
            Ok(provider) => {
                let committed = set.refreshed_at.is_some().then(|| set.state());
                let manager = Manager::new(name.clone(), throttle).with_last_committed(committed);
                let stats = manager.stats();
                tokio::spawn(discover(provider, manager, tx, stop.clone()));
                Some(stats)
            }
            Err(err) => {
                // Validated when it was put; a spec this build cannot run (one
                // stored by a newer version) keeps its targets and says why.
                let state = TargetSetState {
                    targets: set.targets.clone(),
                    error: Some(format!("cannot start discovery: {err}")),
                };
                let _ = tx.try_send(state);
                None
            }
        };
        info!(set = %name, provider = set.spec.provider.kind(), generation = set.generation, "discovery started");
        tokio::spawn(commit_states(
            node.clone(),
            telemetry.clone(),
            name.clone(),
            set.generation,
            rx,
            stop.clone(),
        ));
        running.insert(
            name,
            Running {
                generation: set.generation,
                throttle,
                stop,
                stats,
                counted: 0,
            },
        );
    }
}

/// Commits every state discovery of one set sends, in order, each until it lands.
async fn commit_states(
    node: Arc<Node>,
    telemetry: Arc<Telemetry>,
    name: String,
    generation: u64,
    mut states: mpsc::Receiver<TargetSetState>,
    stop: CancellationToken,
) {
    loop {
        let state = tokio::select! {
            () = stop.cancelled() => return,
            state = states.recv() => match state {
                Some(state) => state,
                None => return,
            },
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let request = ClientRequest {
                session: None,
                at: Utc::now(),
                command: Command::RecordTargets {
                    name: name.clone(),
                    generation,
                    state: state.clone(),
                },
            };
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = node.write(request) => outcome,
            };
            match outcome {
                Ok((_, Response::TargetsRecorded { changed })) => {
                    if changed {
                        telemetry.discovery(&name, 0, 1);
                        info!(set = %name, targets = state.targets.len(), error = state.error.as_deref(), "targets committed");
                    }
                    break;
                }
                Ok((_, other)) => {
                    warn!(set = %name, response = ?other, "unexpected answer to recording targets");
                    break;
                }
                Err(err) => {
                    warn!(set = %name, error = %rota_core::error::chain(&err), retry_in = ?backoff, "cannot commit discovered targets; trying again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
