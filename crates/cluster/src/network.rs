//! Raft RPCs between nodes over HTTP: JSON bodies POSTed to `{peer}/raft/append`,
//! `/raft/vote` and `/raft/snapshot` (snapshot chunks), answered with the JSON of
//! openraft's `Result`.
//!
//! A single node never sends any of these; this is the groundwork of multi-node
//! clusters. **There is no authentication yet**: the peer endpoints must only be
//! reachable by cluster members until the cluster work adds it.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{Raft, TypeConfig};

/// Largest Raft RPC body accepted: a full append batch of large outputs, or one
/// snapshot chunk, must fit.
pub(crate) const MAX_RPC_BYTES: usize = 64 * 1024 * 1024;

/// Makes one [`PeerClient`] per peer; they share one HTTP client.
pub(crate) struct HttpNetwork {
    node_id: u64,
    /// Built on first use, so a single node never builds one. `None` when building
    /// failed: every RPC then reports the peer unreachable.
    client: OnceLock<Option<reqwest::Client>>,
}

impl HttpNetwork {
    pub fn new(node_id: u64) -> HttpNetwork {
        HttpNetwork {
            node_id,
            client: OnceLock::new(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        let client = self.client.get_or_init(build_client).clone();
        PeerClient {
            node_id: self.node_id,
            target,
            base: node.addr.trim_end_matches('/').to_string(),
            client,
        }
    }
}

fn build_client() -> Option<reqwest::Client> {
    // reqwest panics when building a client without a process-wide rustls crypto
    // provider; the binary installs one, this covers other embedders.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .build()
    {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::error!(error = %e, "building the peer HTTP client failed");
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no HTTP client for peer RPCs (building it failed; see the log)")]
struct NoClient;

/// The RPC client of one peer.
pub(crate) struct PeerClient {
    node_id: u64,
    target: u64,
    base: String,
    client: Option<reqwest::Client>,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(client) = &self.client else {
            return Err(RPCError::Unreachable(Unreachable::new(&NoClient)));
        };
        let url = format!("{}/raft/{path}", self.base);
        let timeout = option.hard_ttl();
        let sent = client.post(&url).json(req).timeout(timeout).send().await;
        let answer = match sent {
            Ok(answer) => answer,
            Err(e) if e.is_timeout() => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }))
            }
            Err(e) if e.is_connect() => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => return Err(RPCError::Network(NetworkError::new(&e))),
        };
        let answer = answer
            .error_for_status()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let result: Result<Resp, RaftError<u64, E>> = answer
            .json()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RPCTypes::AppendEntries, "append", &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RPCTypes::InstallSnapshot, "snapshot", &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RPCTypes::Vote, "vote", &rpc, &option).await
    }
}

async fn append(
    State(raft): State<Raft>,
    Json(rpc): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<AppendEntriesResponse<u64>, RaftError<u64>>> {
    Json(raft.append_entries(rpc).await)
}

async fn vote(
    State(raft): State<Raft>,
    Json(rpc): Json<VoteRequest<u64>>,
) -> Json<Result<VoteResponse<u64>, RaftError<u64>>> {
    Json(raft.vote(rpc).await)
}

async fn snapshot(
    State(raft): State<Raft>,
    Json(rpc): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>> {
    Json(raft.install_snapshot(rpc).await)
}

/// The peer endpoints of a node.
pub(crate) fn router(raft: Raft) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .layer(DefaultBodyLimit::max(MAX_RPC_BYTES))
        .with_state(raft)
}
