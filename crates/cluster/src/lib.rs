//! openraft wiring. Every openraft-facing type lives here, so an openraft upgrade
//! touches one crate: the type config (`types`), the redb-backed log storage
//! (`log_store`, reached only through openraft's traits), the adapter that lets
//! openraft drive [`rota_store::Store`] (`state_machine`), the peer network, and
//! [`Node`], the handle the rest of rota uses to write, read and watch leadership.
//!
//! A node's data directory holds `raft-log.redb` (the log: fsynced on every append,
//! the durable record), `state.redb` (the state machine: applied without fsync and
//! rebuilt from the log after a crash) and `snapshots/current.snap`. A fresh
//! directory becomes a one-member cluster of this node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use rota_core::{ClientRequest, Response};
use rota_store::Store;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{info, warn};

mod error;
mod log_store;
mod network;
mod state_machine;
mod types;

pub use error::{ClusterError, WriteError};
use types::Raft;

use log_store::LogStore;
use state_machine::{SnapshotDir, StateMachine};

/// Longest a write or read barrier waits for Raft.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::start` waits for a leader that has applied its first entry.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::shutdown` waits for the storage tasks to release the files.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Log entries kept behind a snapshot at most (for followers a little behind).
const MAX_LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1000;

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft node id (unique in the cluster).
    pub node_id: u64,
    /// Human name of the node, reported in executions and health (`ROTA_NODE`).
    pub node_name: String,
    /// Directory of `raft-log.redb`, `state.redb` and snapshots.
    pub data_dir: PathBuf,
    /// URL peers and clients reach this node at, e.g. `http://127.0.0.1:7700`.
    pub advertise_url: String,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
}

impl NodeConfig {
    fn validate(&self) -> Result<(), ClusterError> {
        if self.snapshot_every == 0 {
            return Err(ClusterError::InvalidConfig {
                field: "snapshot_every",
                message: "must be at least 1".into(),
            });
        }
        if !(self.advertise_url.starts_with("http://")
            || self.advertise_url.starts_with("https://"))
        {
            return Err(ClusterError::InvalidConfig {
                field: "advertise_url",
                message: format!("{:?} is not an http:// or https:// URL", self.advertise_url),
            });
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let config = openraft::Config {
            cluster_name: "rota".into(),
            heartbeat_interval: 100,
            // Short, so a restarted single node elects itself quickly.
            election_timeout_min: 300,
            election_timeout_max: 600,
            install_snapshot_timeout: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // Keep about one snapshot interval of log behind a snapshot, so the log
            // is purged at every snapshot and does not grow forever.
            max_in_snapshot_log_to_keep: self.snapshot_every.min(MAX_LOG_KEPT_BEHIND_SNAPSHOT),
            purge_batch_size: 1,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| ClusterError::RaftConfig(Box::new(e)))
    }
}

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
    cfg: NodeConfig,
    raft: Raft,
    store: Arc<Store>,
    log: LogStore,
    leadership: watch::Receiver<bool>,
    leadership_task: Mutex<Option<JoinHandle<()>>>,
    /// Ends (`recv` answers `None`) once the log store, the state machine and
    /// every snapshot builder are dropped, i.e. Raft let go of the files.
    released: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.cfg.node_id)
            .field("data_dir", &self.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

fn leader_url(raft: &Raft, leader: Option<u64>, node: Option<BasicNode>) -> Option<String> {
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
    pub async fn start(cfg: NodeConfig) -> Result<Arc<Node>, ClusterError> {
        cfg.validate()?;
        let raft_config = Arc::new(cfg.raft_config()?);
        tokio::fs::create_dir_all(&cfg.data_dir)
            .await
            .map_err(|source| ClusterError::Io {
                path: cfg.data_dir.clone(),
                source,
            })?;

        let (alive, released) = mpsc::channel(1);
        let dir = cfg.data_dir.clone();
        let opened = {
            let alive = alive.clone();
            tokio::task::spawn_blocking(move || {
                let log = LogStore::open(&dir.join("raft-log.redb"), alive.clone())?;
                let store = Store::open(&dir.join("state.redb"))?;
                let snapshots = SnapshotDir::open(dir.join("snapshots"))?;
                let sm = StateMachine::open(store.clone(), snapshots, alive)?;
                Ok::<_, ClusterError>((log, store, sm))
            })
            .await??
        };
        drop(alive);
        let (log, store, sm) = opened;

        let network = network::HttpNetwork::new(cfg.node_id);
        let own_log = log.detached();
        let raft = Raft::new(cfg.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        if !initialized {
            let members = BTreeMap::from([(cfg.node_id, BasicNode::new(&cfg.advertise_url))]);
            match raft.initialize(members).await {
                Ok(()) => info!(node_id = cfg.node_id, "new one-member cluster initialized"),
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
        let ready = raft
            .wait(Some(READY_TIMEOUT))
            .metrics(
                |m| {
                    let (Some(leader), Some(applied)) = (m.current_leader, m.last_applied) else {
                        return false;
                    };
                    applied.leader_id.term == m.current_term
                        && (leader != id || m.last_log_index.is_some_and(|l| applied.index >= l))
                },
                "leader elected and the log applied",
            )
            .await;
        if let Err(e) = ready {
            warn!(error = %e, "node did not become ready");
            let _ = raft.shutdown().await;
            return Err(ClusterError::NotReady(READY_TIMEOUT));
        }

        let mut metrics = raft.metrics();
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        let (leader_tx, leadership) = watch::channel(leading);
        let leadership_task = tokio::spawn(async move {
            loop {
                let leading = metrics.borrow_and_update().state == ServerState::Leader;
                leader_tx.send_if_modified(|v| std::mem::replace(v, leading) != leading);
                // Errors once Raft has shut down and dropped its metrics sender.
                if metrics.changed().await.is_err() {
                    break;
                }
            }
            leader_tx.send_replace(false);
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
        Ok(Arc::new(Node {
            cfg,
            raft,
            store,
            log: own_log,
            leadership,
            leadership_task: Mutex::new(Some(leadership_task)),
            released: Mutex::new(released),
        }))
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The Raft handle, for tests; outside this crate openraft stays an
    /// implementation detail (membership changes will be methods of [`Node`]).
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Index of the first entry still in the Raft log (`None` when empty); entries
    /// before it were purged behind a snapshot.
    pub async fn first_log_index(&self) -> Result<Option<u64>, ClusterError> {
        self.log.first_index().await
    }

    /// Commits a request through Raft (durable on a majority) and answers with the
    /// log index it got and the state machine's response.
    pub async fn write(&self, req: ClientRequest) -> Result<(u64, Response), WriteError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(req)).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(Ok(written)) => Ok((written.log_id.index, written.data)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, f.leader_id, f.leader_node),
                })
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(WriteError::Fatal(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(fatal(e)),
        }
    }

    /// Returns once the local state machine reflects every write committed before
    /// the call (ReadIndex, confirmed with a quorum).
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        match tokio::time::timeout(WRITE_TIMEOUT, self.raft.ensure_linearizable()).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, f.leader_id, f.leader_node),
                })
            }
            // Leadership could not be confirmed: another leader may exist.
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(WriteError::NotLeader { leader_url: None })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(fatal(e)),
        }
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

    /// Peer endpoints (Raft RPCs) to be merged into the node's HTTP router.
    /// Unauthenticated for now: see the `network` module.
    pub fn peer_router(self: &Arc<Self>) -> axum::Router {
        network::router(self.raft.clone())
    }

    /// Stops Raft and flushes storage. Once it returns and the last handle to the
    /// node and its store is dropped, the data directory can be opened again.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        self.raft.shutdown().await?;
        if let Some(task) = self.leadership_task.lock().await.take() {
            task.await?;
        }
        {
            let mut released = self.released.lock().await;
            if tokio::time::timeout(RELEASE_TIMEOUT, released.recv())
                .await
                .is_err()
            {
                warn!("raft storage was not released in time after shutdown");
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        info!(node_id = self.cfg.node_id, "node stopped");
        Ok(())
    }
}

fn fatal(e: Fatal<u64>) -> WriteError {
    match e {
        Fatal::Stopped => WriteError::ShuttingDown,
        other => WriteError::Fatal(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
