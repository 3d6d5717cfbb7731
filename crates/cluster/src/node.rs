//! The node handle: starting Raft over the node's storage, and what the node
//! reports about itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use rota_background::Runner;
use rota_store::Store;
use tokio::sync::{mpsc, watch, Mutex};
use tracing::{info, warn};

use crate::log_store::LogStore;
use crate::network::{self, Transport};
use crate::state_machine::{SnapshotDir, StateMachine};
use crate::types::Raft;
use crate::{
    batcher, check_peers, Bootstrap, ClusterError, ClusterOptions, NodeConfig, RaftTiming,
};

/// Longest a write or read barrier waits for Raft.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::start` waits for a leader that has applied its first entry.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::shutdown` waits for the storage tasks to release the files.
pub(crate) const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `GET /v1/health` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub node: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<u64>,
    pub leader_url: Option<String>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot_index: Option<u64>,
}

/// A running Raft node with its store.
pub struct Node {
    pub(crate) cfg: NodeConfig,
    pub(crate) raft: Raft,
    pub(crate) transport: Transport,
    pub(crate) store: Arc<Store>,
    pub(crate) log: LogStore,
    pub(crate) leadership: watch::Receiver<bool>,
    /// When this node last became the leader (`None` while it does not lead): a
    /// leader refuses to vote for another until its lease from then has run out.
    pub(crate) leading_since: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The node's own scope of background workers (`leadership`, `proposals`),
    /// stopped by [`Node::shutdown`] once Raft has stopped.
    pub(crate) workers: Runner,
    /// Ends (`recv` answers `None`) once the log store, the state machine and
    /// every snapshot builder are dropped, i.e. Raft let go of the files.
    pub(crate) released: Mutex<mpsc::Receiver<()>>,
    /// The Raft timing this node runs with (the handoff at shutdown waits out
    /// its leader lease).
    pub(crate) timing: RaftTiming,
    /// Every write this node proposes goes through it (batched under load).
    pub(crate) proposals: batcher::Proposals,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.cfg.node_id)
            .field("data_dir", &self.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

pub(crate) fn leader_url(
    raft: &Raft,
    leader: Option<u64>,
    node: Option<BasicNode>,
) -> Option<String> {
    if let Some(node) = node {
        return Some(node.addr);
    }
    let leader = leader?;
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

impl Node {
    /// Opens the node's storage under `data_dir` and starts Raft; a fresh data
    /// directory becomes a one-member cluster. Returns once the node can take writes.
    /// The node's background workers run in a scope of `runner`, which
    /// [`Node::shutdown`] stops; `runner` itself must not stop before that (the
    /// proposal queue serves writes during the leader handoff).
    pub async fn start(cfg: NodeConfig, runner: &Runner) -> Result<Arc<Node>, ClusterError> {
        Node::start_with(cfg, ClusterOptions::default(), runner).await
    }

    /// [`Node::start`] with cluster settings. A node whose membership is only
    /// itself returns once it can take writes; a member of a larger cluster returns
    /// at once, because its peers can only elect a leader once it serves the peer
    /// routes ([`Node::wait_for_leader`] waits for one).
    pub async fn start_with(
        cfg: NodeConfig,
        options: ClusterOptions,
        runner: &Runner,
    ) -> Result<Arc<Node>, ClusterError> {
        cfg.validate()?;
        if let Bootstrap::Peers(peers) = &options.bootstrap {
            check_peers(cfg.node_id, &cfg.advertise_url, peers)?;
        }
        let raft_config = Arc::new(cfg.raft_config(&options.timing)?);
        let Storage {
            log,
            store,
            state_machine: sm,
            released,
            gate,
        } = open_storage(cfg.data_dir.clone(), cfg.watch_retention).await?;

        let transport = Transport::new(
            cfg.node_id,
            options.secret.clone(),
            options.tls.clone(),
            options.peer_certificates,
        );
        let network = network::HttpNetwork::new(cfg.node_id, transport.clone());
        let own_log = log.detached();
        let raft = Raft::new(cfg.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        own_log.send_early_with(crate::early::EarlySend::new(
            cfg.node_id,
            raft.metrics(),
            transport.clone(),
        ));

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        // Before the peer routes are served: which cluster this node's peer calls
        // belong to (see `crate::identity`).
        let cluster_id = match cluster_identity(&cfg, &options.bootstrap, initialized) {
            Ok(id) => id,
            Err(e) => {
                let _ = raft.shutdown().await;
                return Err(e);
            }
        };
        info!(
            cluster = cluster_id.as_deref().unwrap_or("(not known yet)"),
            "cluster identity"
        );
        transport.set_identity(cluster_id, cfg.data_dir.clone());
        let first_members = match &options.bootstrap {
            _ if initialized => None,
            Bootstrap::Single => Some(BTreeMap::from([(
                cfg.node_id,
                BasicNode::new(&cfg.advertise_url),
            )])),
            Bootstrap::Peers(peers) if peers.keys().next() == Some(&cfg.node_id) => Some(
                peers
                    .iter()
                    .map(|(id, url)| (*id, BasicNode::new(url)))
                    .collect(),
            ),
            Bootstrap::Peers(_) => {
                info!(
                    node_id = cfg.node_id,
                    "waiting for the lowest peer id to initialize the cluster"
                );
                None
            }
            Bootstrap::Join => {
                info!(node_id = cfg.node_id, "waiting to be added to a cluster");
                None
            }
        };
        if let Some(members) = first_members {
            let voters: Vec<u64> = members.keys().copied().collect();
            match raft.initialize(members).await {
                Ok(()) => info!(node_id = cfg.node_id, ?voters, "new cluster initialized"),
                // Someone (a peer, or a vote) got there first: nothing to do.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(ClusterError::Initialize(Box::new(e)));
                }
            }
        }

        // Ready = a leader is known and this node has applied an entry of the
        // leader's term (a new leader's blank entry), so everything committed
        // before is applied. A node that led before the restart resumes leading in
        // the same term without a blank entry: as leader it also waits until its
        // whole log (acknowledged writes included) is applied.
        let id = cfg.node_id;
        // Asked of the Raft core itself: the metrics may not show the membership
        // just initialized or loaded yet.
        let voters = raft
            .with_raft_state(|st| {
                st.membership_state
                    .effective()
                    .voter_ids()
                    .collect::<Vec<u64>>()
            })
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        let alone = voters == [id];
        let ready = if !alone {
            Ok(())
        } else {
            raft.wait(Some(READY_TIMEOUT))
                .metrics(
                    |m| {
                        let (Some(leader), Some(applied)) = (m.current_leader, m.last_applied)
                        else {
                            return false;
                        };
                        applied.leader_id.term == m.current_term
                            && (leader != id
                                || m.last_log_index.is_some_and(|l| applied.index >= l))
                    },
                    "leader elected and the log applied",
                )
                .await
                .map(|_| ())
        };
        if let Err(e) = ready {
            warn!(error = %e, "node did not become ready");
            let _ = raft.shutdown().await;
            return Err(ClusterError::NotReady(READY_TIMEOUT));
        }

        let mut metrics = raft.metrics();
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        let (leader_tx, leadership) = watch::channel(leading);
        let leading_since = Arc::new(std::sync::Mutex::new(
            leading.then(tokio::time::Instant::now),
        ));
        let since = leading_since.clone();
        let workers = runner.scope();
        workers.spawn("leadership", move |ctx| async move {
            ctx.set_detail(if leading { "leading" } else { "not leading" });
            loop {
                let leading = metrics.borrow_and_update().state == ServerState::Leader;
                if leader_tx.send_if_modified(|v| std::mem::replace(v, leading) != leading) {
                    ctx.set_detail(if leading { "leading" } else { "not leading" });
                    *since.lock().unwrap_or_else(|e| e.into_inner()) =
                        leading.then(tokio::time::Instant::now);
                }
                tokio::select! {
                    // Errors once Raft has shut down and dropped its metrics sender.
                    changed = metrics.changed() => if changed.is_err() {
                        break;
                    },
                    _ = ctx.stopping() => break,
                }
            }
            leader_tx.send_replace(false);
            Ok(())
        });

        let status = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.current_term, m.last_applied.map_or(0, |id| id.index))
        };
        info!(
            node_id = cfg.node_id,
            node = %cfg.node_name,
            data_dir = %cfg.data_dir.display(),
            term = status.0,
            last_applied = status.1,
            "node started"
        );
        let raft_for_proposals = raft.clone();
        Ok(Arc::new(Node {
            cfg,
            raft,
            transport,
            store,
            log: own_log,
            leadership,
            leading_since,
            released: Mutex::new(released),
            timing: options.timing,
            proposals: batcher::Proposals::spawn(&workers, raft_for_proposals, gate, WRITE_TIMEOUT),
            workers,
        }))
    }

    /// An HTTP client for calls to other nodes' APIs (pooled with the peer
    /// traffic's); `None` when it could not be built.
    pub fn peer_http(&self) -> Option<reqwest::Client> {
        self.transport.client()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The Raft handle, for tests; outside this crate openraft stays an
    /// implementation detail.
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Index of the first entry still in the Raft log (`None` when empty); entries
    /// before it were purged behind a snapshot.
    pub async fn first_log_index(&self) -> Result<Option<u64>, ClusterError> {
        self.log.first_index().await
    }

    /// Waits up to `timeout` until a leader is known; answers its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Whether this node's membership config names it (as voter or learner): false
    /// for a node that still waits to be added or initialized.
    pub fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&self.cfg.node_id)
            .is_some()
    }

    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let leader_url = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        NodeStatus {
            node_id: self.cfg.node_id,
            node: self.cfg.node_name.clone(),
            role: role.to_string(),
            leader: m.current_leader,
            leader_url,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |id| id.index),
            snapshot_index: m.snapshot.map(|id| id.index),
        }
    }

    /// `true` while this node is the leader.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership.clone()
    }

    /// Peer endpoints (Raft RPCs, forwarding) to be merged into the node's HTTP
    /// router; behind the cluster secret when one is configured.
    pub fn peer_router(self: &Arc<Self>) -> axum::Router {
        network::router(self.clone())
    }

    /// Whether a request carrying `given` in the [`CLUSTER_SECRET_HEADER`], over a
    /// connection whose client certificate was `verified` or not, comes from a
    /// cluster member (always true when neither a secret nor peer certificates
    /// are required).
    pub fn admits_peer(&self, given: Option<&[u8]>, verified: bool) -> bool {
        self.transport.admits(given, verified)
    }

    /// The cluster secret, if one is set: what peers prove membership with.
    pub fn cluster_secret(&self) -> Option<&str> {
        self.transport.secret()
    }
}

/// A node's storage: what Raft takes (the log and the state machine), the store
/// the node reads, and the receiver that ends once Raft let go of the files.
pub(crate) struct Storage {
    pub log: LogStore,
    pub store: Arc<Store>,
    pub state_machine: StateMachine,
    /// Ends (`recv` answers `None`) once the log store, the state machine and
    /// every snapshot builder are dropped.
    pub released: mpsc::Receiver<()>,
    /// The proposal queue's state, which the log and the state machine read.
    pub gate: Arc<batcher::Gate>,
}

/// Opens the files of the data directory `dir` (creating what is missing):
/// `raft-log.redb`, `raft-log/`, `state.redb` and `snapshots/`. File calls block, so this runs
/// on the blocking pool.
pub(crate) async fn open_storage(
    dir: PathBuf,
    watch_retention: rota_store::EventRetention,
) -> Result<Storage, ClusterError> {
    let (alive, released) = mpsc::channel(1);
    let gate = batcher::Gate::new();
    let opened_gate = gate.clone();
    let (log, store, state_machine) = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::Io {
            path: dir.clone(),
            source,
        })?;
        let log = LogStore::open(
            &dir.join("raft-log.redb"),
            &dir.join("raft-log"),
            alive.clone(),
            opened_gate.clone(),
        )?;
        let store = Store::open_with(&dir.join("state.redb"), watch_retention)?;
        let snapshots = SnapshotDir::open(dir.join("snapshots"))?;
        let state_machine = StateMachine::open(store.clone(), snapshots, alive, opened_gate)?;
        Ok::<_, ClusterError>((log, store, state_machine))
    })
    .await??;
    Ok(Storage {
        log,
        store,
        state_machine,
        released,
        gate,
    })
}

/// The cluster id of this node: the one stored in its data directory, else one
/// made now and stored (derived from `--peers`, or random for a new single node);
/// `None` for a node that learns it from its first peer call (see
/// `crate::identity`).
fn cluster_identity(
    cfg: &NodeConfig,
    bootstrap: &Bootstrap,
    initialized: bool,
) -> Result<Option<String>, ClusterError> {
    let io = |source| ClusterError::Io {
        path: cfg.data_dir.join(crate::identity::FILE),
        source,
    };
    if let Some(id) = crate::identity::read(&cfg.data_dir).map_err(io)? {
        return Ok(Some(id));
    }
    let made = match bootstrap {
        Bootstrap::Peers(peers) => Some(crate::identity::from_peers(peers)),
        Bootstrap::Single if !initialized => Some(crate::identity::random()),
        _ => None,
    };
    if let Some(id) = &made {
        crate::identity::write(&cfg.data_dir, id).map_err(io)?;
    }
    Ok(made)
}
