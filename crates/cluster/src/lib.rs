//! openraft wiring. Every openraft-facing type lives here, so an openraft upgrade
//! touches one crate: the type config, the redb-backed log storage, the adapter
//! that lets openraft drive [`rota_store::Store`], the peer network, and [`Node`],
//! the handle the rest of rota uses to write, read and watch leadership.

use std::path::PathBuf;
use std::sync::Arc;

use rota_core::{ClientRequest, Response};
use rota_store::Store;
use tokio::sync::watch;

mod error;
pub use error::{ClusterError, WriteError};

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
    _todo: (),
}

impl Node {
    /// Opens the node's storage under `data_dir` and starts Raft; a fresh data
    /// directory becomes a one-member cluster. Returns once the node can take writes.
    pub async fn start(cfg: NodeConfig) -> Result<Arc<Node>, ClusterError> {
        let _ = cfg;
        todo!()
    }

    pub fn config(&self) -> &NodeConfig {
        todo!()
    }

    pub fn store(&self) -> &Arc<Store> {
        todo!()
    }

    /// Commits a request through Raft (durable on a majority) and answers with the
    /// log index it got and the state machine's response.
    pub async fn write(&self, req: ClientRequest) -> Result<(u64, Response), WriteError> {
        let _ = req;
        todo!()
    }

    /// Returns once the local state machine reflects every write committed before
    /// the call (ReadIndex, confirmed with a quorum).
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        todo!()
    }

    pub fn status(&self) -> NodeStatus {
        todo!()
    }

    /// `true` while this node is the leader.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        todo!()
    }

    /// Peer endpoints (Raft RPCs) to be merged into the node's HTTP router.
    pub fn peer_router(self: &Arc<Self>) -> axum::Router {
        todo!()
    }

    /// Stops Raft and flushes storage.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        todo!()
    }
}
