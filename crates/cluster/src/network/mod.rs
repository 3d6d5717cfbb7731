//! Node-to-node traffic over HTTP, on the node's single port: JSON bodies POSTed
//! to `{peer}/raft/...`, answered with the JSON of a `Result`.
//!
//! - `/raft/append`, `/raft/vote`, `/raft/snapshot` carry openraft's RPCs (a lagging
//!   or new node gets the snapshot in chunks through `/raft/snapshot`, each chunk's
//!   bytes in base64: openraft's own serde form would write one JSON number per byte).
//! - `/raft/forward`, `/raft/read_index` and `/raft/members` let a follower hand a
//!   write, a ReadIndex request or a membership change to the leader; they answer
//!   with [`WireError`] when the leader refuses, so the follower can tell "not
//!   applied, try the new leader" from "may have applied".
//! - `/raft/elect` is a leader's last call at graceful shutdown: it asks the voter
//!   it picked as successor to stand for election at once (see `Node::shutdown`).
//!
//! Every call has a time limit (openraft's per-RPC TTL, or what is left of the
//! client's deadline), reuses pooled connections (one `reqwest::Client` per node)
//! and sets TCP_NODELAY. When a cluster secret is configured, every call carries it
//! in the `Rota-Cluster-Secret` header and every peer route refuses a missing or
//! different one with 401, compared in constant time. Every call also carries the
//! node's cluster id and each Raft RPC the id of the node it is meant for; a call
//! from another cluster is refused with 409, one meant for another node with 421
//! (see [`crate::identity`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes, SnapshotMeta, Vote};
use rota_core::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::PeerError;
use crate::identity;
use crate::types::TypeConfig;
use crate::{MembershipError, WriteError};

/// Largest Raft RPC body accepted: a full append batch of large outputs, or one
/// snapshot chunk, must fit.
pub(crate) const MAX_RPC_BYTES: usize = 64 * 1024 * 1024;

/// The header peers prove their membership with.
pub const CLUSTER_SECRET_HEADER: &str = "rota-cluster-secret";

/// Set on a request (as an extension) by a TLS listener that verified the client's
/// certificate against the cluster's CA: a peer, under peer mTLS.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedPeer;

/// At most one warning about refused peer calls per this much time.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

/// How long a connection attempt to a peer may take: a dead peer must not hold
/// up a heartbeat round for long.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The HTTP client and the secret shared by every outgoing peer call of a node.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    /// Built on first use, so a single node never builds one. `None` when building
    /// failed: every call then reports the peer unreachable.
    client: OnceLock<Option<reqwest::Client>>,
    /// This node's id: a Raft RPC meant for another is refused.
    node_id: u64,
    /// The cluster this node belongs to (see [`crate::identity`]): set once, at
    /// start or by the first peer call that names one; and the data directory its
    /// file goes to when it is taken from a peer.
    cluster: OnceLock<String>,
    data_dir: OnceLock<PathBuf>,
    /// When a refused call was last logged (one warning per
    /// [`REFUSAL_WARN_EVERY`]: a stranger's heartbeats come many times a second).
    refusal_logged: Mutex<Option<Instant>>,
    secret: Option<String>,
    tls: Option<rustls::ClientConfig>,
    /// See `ClusterOptions::peer_certificates`.
    peer_certificates: bool,
    /// AppendEntries calls sent back to openraft as too large (see
    /// [`MAX_APPEND_BYTES`]).
    split_appends: std::sync::atomic::AtomicU64,
}

impl Transport {
    pub fn new(
        node_id: u64,
        secret: Option<String>,
        tls: Option<rustls::ClientConfig>,
        peer_certificates: bool,
    ) -> Transport {
        Transport {
            inner: Arc::new(TransportInner {
                client: OnceLock::new(),
                node_id,
                cluster: OnceLock::new(),
                data_dir: OnceLock::new(),
                refusal_logged: Mutex::new(None),
                secret,
                tls,
                peer_certificates,
                split_appends: Default::default(),
            }),
        }
    }

    /// How many AppendEntries batches were sent back to openraft as too large.
    #[cfg(test)]
    pub(crate) fn split_appends(&self) -> u64 {
        self.inner
            .split_appends
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The pooled HTTP client of the peer traffic (built on first use; `None` when
    /// building it failed).
    pub fn client(&self) -> Option<reqwest::Client> {
        self.built().clone()
    }

    fn built(&self) -> &Option<reqwest::Client> {
        self.inner
            .client
            .get_or_init(|| build_client(self.inner.tls.clone()))
    }

    /// Sets the cluster this node belongs to (`None`: not known yet, taken from
    /// the first peer call that names one and stored in `data_dir`).
    pub fn set_identity(&self, cluster: Option<String>, data_dir: PathBuf) {
        if let Some(cluster) = cluster {
            let _ = self.inner.cluster.set(cluster);
        }
        let _ = self.inner.data_dir.set(data_dir);
    }

    /// The cluster id this node sends and expects, once known.
    pub fn cluster_id(&self) -> Option<&str> {
        self.inner.cluster.get().map(String::as_str)
    }

    /// Checks a peer call's identity headers (see [`crate::identity`]); a node
    /// without a cluster id takes the caller's, and keeps it.
    fn admit_identity(&self, headers: &HeaderMap) -> Result<(), identity::Refusal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let theirs = header(identity::CLUSTER_ID_HEADER);
        let meant = header(identity::PEER_NODE_HEADER);
        let Some(adopted) = identity::admit(self.inner.node_id, self.cluster_id(), theirs, meant)?
        else {
            return Ok(());
        };
        if let Err(adopted) = self.inner.cluster.set(adopted) {
            // Another call set it meanwhile: it has to be the same.
            return if self.cluster_id() == Some(adopted.as_str()) {
                Ok(())
            } else {
                Err(identity::Refusal::OtherCluster { theirs: adopted })
            };
        }
        let adopted = self.cluster_id().unwrap_or_default();
        tracing::info!(cluster = %adopted, "this node now belongs to the cluster of its first peer call");
        if let Some(dir) = self.inner.data_dir.get() {
            if let Err(e) = identity::write(dir, adopted) {
                tracing::warn!(error = %e, "could not store the cluster id; it is kept until the node stops");
            }
        }
        Ok(())
    }

    /// Whether a refused call is to be logged now (at most one warning per
    /// [`REFUSAL_WARN_EVERY`]).
    fn log_refusal_now(&self) -> bool {
        let mut last = self
            .inner
            .refusal_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < REFUSAL_WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The cluster secret, if one is set.
    pub fn secret(&self) -> Option<&str> {
        self.inner.secret.as_deref()
    }

    /// Whether `given` (a request's secret header) or a `verified` client
    /// certificate proves cluster membership.
    pub fn admits(&self, given: Option<&[u8]>, verified: bool) -> bool {
        if verified && self.inner.peer_certificates {
            return true;
        }
        match &self.inner.secret {
            None => !self.inner.peer_certificates,
            Some(secret) => given.is_some_and(|g| same_secret(secret.as_bytes(), g)),
        }
    }

    /// POSTs `req` as JSON to `{base}/raft/{path}` and decodes the JSON answer.
    pub async fn call<Req, Resp>(
        &self,
        base: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_node(base, None, path, req, timeout).await
    }

    /// [`Transport::call`] to the node `target` (when known): a process at `base`
    /// that is not that node refuses the call.
    pub async fn call_node<Req, Resp>(
        &self,
        base: &str,
        target: Option<u64>,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).map_err(PeerError::Encode)?;
        self.call_node_body(base, target, path, body, timeout).await
    }

    /// [`Transport::call_node`] with the request already encoded as JSON.
    pub(crate) async fn call_node_body<Resp: DeserializeOwned>(
        &self,
        base: &str,
        target: Option<u64>,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let client = self.built().as_ref().ok_or(PeerError::NoClient)?;
        let url = format!("{}/raft/{path}", base.trim_end_matches('/'));
        let mut request = client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(timeout);
        if let Some(secret) = &self.inner.secret {
            request = request.header(CLUSTER_SECRET_HEADER, secret);
        }
        if let Some(cluster) = self.cluster_id() {
            request = request.header(identity::CLUSTER_ID_HEADER, cluster);
        }
        if let Some(target) = target {
            request = request.header(identity::PEER_NODE_HEADER, target.to_string());
        }
        if let Some(traceparent) = crate::trace::traceparent() {
            request = request.header(rota_core::trace::TRACEPARENT_HEADER, traceparent);
        }
        let failed = |source: reqwest::Error, url: &str| {
            if source.is_timeout() {
                PeerError::Timeout {
                    url: url.to_string(),
                    timeout,
                }
            } else if source.is_connect() {
                PeerError::Unreachable {
                    url: url.to_string(),
                    source,
                }
            } else {
                PeerError::Transport {
                    url: url.to_string(),
                    source,
                }
            }
        };
        let answer = request.send().await.map_err(|e| failed(e, &url))?;
        let status = answer.status();
        if status == StatusCode::CONFLICT || status == StatusCode::MISDIRECTED_REQUEST {
            return Err(PeerError::Refused {
                url,
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(PeerError::Status {
                url,
                status: status.as_u16(),
            });
        }
        answer.json().await.map_err(|e| failed(e, &url))
    }
}

/// The most an AppendEntries call carries when it holds more than one entry.
/// openraft 0.9 gives a call one heartbeat interval (50 ms by default) and, when
/// it times out, sends the same entries again: a follower far behind after a burst
/// (hundreds of entries that each fire a thousand runs) could not take a full
/// batch in time, again and again, and the cluster committed nothing until it
/// had (3-19 s after a leader's kill in the three-node benchmark). About 1 MiB
/// is decoded, written and synced well within that.
const MAX_APPEND_BYTES: usize = 1024 * 1024;

/// How many entries to send instead of `entries` encoded in `bytes`, when that is
/// more than [`MAX_APPEND_BYTES`] (a single entry goes whatever its size).
fn fewer_entries(entries: usize, bytes: usize) -> Option<u64> {
    if entries <= 1 || bytes <= MAX_APPEND_BYTES {
        return None;
    }
    let fit = entries.saturating_mul(MAX_APPEND_BYTES) / bytes;
    Some(u64::try_from(fit.max(1)).unwrap_or(1))
}

/// Equality of two secrets in time that depends only on their lengths.
fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    if expected.len() != given.len() {
        return false;
    }
    let diff = expected
        .iter()
        .zip(given)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

fn build_client(tls: Option<rustls::ClientConfig>) -> Option<reqwest::Client> {
    // reqwest panics when building a client without a process-wide rustls crypto
    // provider; the binary installs one, this covers other embedders.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut builder = reqwest::Client::builder();
    if let Some(tls) = tls {
        builder = builder.tls_backend_preconfigured(tls);
    }
    match builder
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        // Idle pooled connections to a peer are reused by the next heartbeat.
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
    {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::error!(
                error = %rota_core::error::chain(&e),
                "building the peer HTTP client failed"
            );
            None
        }
    }
}

/// Makes one [`PeerClient`] per peer; they share the node's [`Transport`].
pub(crate) struct HttpNetwork {
    node_id: u64,
    transport: Transport,
}

impl HttpNetwork {
    pub fn new(node_id: u64, transport: Transport) -> HttpNetwork {
        HttpNetwork { node_id, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerClient {
        PeerClient {
            node_id: self.node_id,
            target,
            base: node.addr.trim_end_matches('/').to_string(),
            transport: self.transport.clone(),
        }
    }
}

/// The Raft RPC client of one peer.
pub(crate) struct PeerClient {
    node_id: u64,
    target: u64,
    base: String,
    transport: Transport,
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
        let body = serde_json::to_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&PeerError::Encode(e))))?;
        self.call_body(action, path, body, option).await
    }

    async fn call_body<Resp, E>(
        &self,
        action: RPCTypes,
        path: &str,
        body: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let result: Result<Resp, RaftError<u64, E>> = self
            .transport
            .call_node_body(&self.base, Some(self.target), path, body, timeout)
            .await
            .map_err(|e| match e {
                PeerError::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.node_id,
                    target: self.target,
                    timeout,
                }),
                e @ (PeerError::NoClient
                | PeerError::Unreachable { .. }
                | PeerError::Refused { .. }) => RPCError::Unreachable(Unreachable::new(&e)),
                e => RPCError::Network(NetworkError::new(&e)),
            })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let body = serde_json::to_vec(&rpc)
            .map_err(|e| RPCError::Network(NetworkError::new(&PeerError::Encode(e))))?;
        if let Some(hint) = fewer_entries(rpc.entries.len(), body.len()) {
            self.transport
                .inner
                .split_appends
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                entries = rpc.entries.len(),
                bytes = body.len(),
                hint,
                "append batch too large for one call: sending fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        self.call_body(RPCTypes::AppendEntries, "append", body, &option)
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
        let chunk = SnapshotChunk::from(rpc);
        self.call(RPCTypes::InstallSnapshot, "snapshot", &chunk, &option)
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

/// A leader's refusal of a forwarded call, as it travels back to the follower.
/// `NotLeader` means "not applied": the follower may try the node it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub(crate) enum WireError {
    NotLeader { leader_url: Option<String> },
    Timeout { millis: u64 },
    ShuttingDown,
    Fatal { message: String },
    UnknownMember { id: u64 },
    InvalidMember { id: u64, message: String },
    InProgress,
    CatchUpTimeout { id: u64, millis: u64 },
    LastVoter { id: u64 },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<WriteError> for WireError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NotLeader { leader_url } => WireError::NotLeader { leader_url },
            WriteError::Timeout(d) => WireError::Timeout { millis: millis(d) },
            WriteError::ShuttingDown => WireError::ShuttingDown,
            WriteError::Leader { message } => WireError::Fatal { message },
            other => WireError::Fatal {
                message: rota_core::error::chain(&other),
            },
        }
    }
}

impl From<MembershipError> for WireError {
    fn from(e: MembershipError) -> Self {
        match e {
            MembershipError::Write(e) => e.into(),
            MembershipError::UnknownMember { id } => WireError::UnknownMember { id },
            MembershipError::InvalidMember { id, message } => {
                WireError::InvalidMember { id, message }
            }
            MembershipError::InProgress => WireError::InProgress,
            MembershipError::CatchUpTimeout { id, timeout } => WireError::CatchUpTimeout {
                id,
                millis: millis(timeout),
            },
            MembershipError::LastVoter { id } => WireError::LastVoter { id },
        }
    }
}

impl From<WireError> for MembershipError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::UnknownMember { id } => MembershipError::UnknownMember { id },
            WireError::InvalidMember { id, message } => {
                MembershipError::InvalidMember { id, message }
            }
            WireError::InProgress => MembershipError::InProgress,
            WireError::CatchUpTimeout { id, millis } => MembershipError::CatchUpTimeout {
                id,
                timeout: Duration::from_millis(millis),
            },
            WireError::LastVoter { id } => MembershipError::LastVoter { id },
            other => MembershipError::Write(other.into_write_error()),
        }
    }
}

impl WireError {
    /// The write error a refusal stands for; membership refusals never answer a
    /// write or a read index, so they only appear here through a bug in a peer.
    pub fn into_write_error(self) -> WriteError {
        match self {
            WireError::NotLeader { leader_url } => WriteError::NotLeader { leader_url },
            WireError::Timeout { millis } => WriteError::Timeout(Duration::from_millis(millis)),
            WireError::ShuttingDown => WriteError::ShuttingDown,
            WireError::Fatal { message } => WriteError::Leader { message },
            other => WriteError::UnexpectedAnswer {
                answer: format!("{other:?}"),
            },
        }
    }
}

/// What a follower makes of a failed call to the leader at `url`.
pub(crate) fn peer_failure(e: PeerError, url: &str) -> WriteError {
    match e {
        // Certainly not delivered: as good as "not the leader", so a retry (with
        // whoever leads next) cannot apply the request twice.
        PeerError::NoClient | PeerError::Unreachable { .. } | PeerError::Refused { .. } => {
            tracing::debug!(error = %rota_core::error::chain(&e), "leader unreachable");
            WriteError::NotLeader {
                leader_url: Some(url.to_string()),
            }
        }
        PeerError::Timeout { timeout, .. } => WriteError::Timeout(timeout),
        e @ (PeerError::Transport { .. } | PeerError::Status { .. } | PeerError::Encode(_)) => {
            tracing::warn!(error = %rota_core::error::chain(&e), "forwarding to the leader failed");
            WriteError::Forward(Arc::new(e))
        }
    }
}

/// A write committed by the leader on a follower's behalf.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ForwardedWrite {
    pub index: u64,
    pub response: Response,
}

/// A shutting-down leader's request that its successor stand for election.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ElectRequest {
    /// The leader handing over.
    pub from: u64,
    /// Its term; a successor that saw a newer one leaves the election alone.
    pub term: u64,
}

/// A membership change sent to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub(crate) enum MemberChange {
    Add { id: u64, url: String },
    Remove { id: u64 },
}

/// [`InstallSnapshotRequest`] on the wire, its bytes in base64.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotChunk {
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, BasicNode>,
    offset: u64,
    data: String,
    done: bool,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(rpc: InstallSnapshotRequest<TypeConfig>) -> Self {
        SnapshotChunk {
            vote: rpc.vote,
            meta: rpc.meta,
            offset: rpc.offset,
            data: base64::engine::general_purpose::STANDARD.encode(&rpc.data),
            done: rpc.done,
        }
    }
}

impl SnapshotChunk {
    fn into_request(self) -> Result<InstallSnapshotRequest<TypeConfig>, base64::DecodeError> {
        Ok(InstallSnapshotRequest {
            vote: self.vote,
            meta: self.meta,
            offset: self.offset,
            data: base64::engine::general_purpose::STANDARD.decode(&self.data)?,
            done: self.done,
        })
    }
}

mod routes;
pub(crate) use routes::router;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_batch_over_the_limit_asks_for_fewer_entries() {
        assert_eq!(fewer_entries(300, 200_000), None);
        assert_eq!(fewer_entries(300, MAX_APPEND_BYTES), None);
        // 300 entries in 30 MiB: 10 of them fit.
        assert_eq!(fewer_entries(300, 30 * MAX_APPEND_BYTES), Some(10));
        // Entries larger than the limit go one at a time.
        assert_eq!(fewer_entries(2, 5 * MAX_APPEND_BYTES), Some(1));
        assert_eq!(fewer_entries(1, 5 * MAX_APPEND_BYTES), None);
        assert_eq!(fewer_entries(0, 0), None);
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b""));
        let open = Transport::new(1, None, None, false);
        assert!(open.admits(None, false));
        let closed = Transport::new(1, Some("k".into()), None, false);
        assert!(!closed.admits(None, false));
        assert!(!closed.admits(Some(b"x"), false));
        assert!(closed.admits(Some(b"k"), false));
        // Without peer mTLS a certificate proves nothing.
        assert!(!closed.admits(None, true));

        let mtls = Transport::new(1, None, None, true);
        assert!(mtls.admits(None, true));
        assert!(!mtls.admits(None, false));
        assert!(!mtls.admits(Some(b"k"), false));
        let both = Transport::new(1, Some("k".into()), None, true);
        assert!(both.admits(None, true));
        assert!(both.admits(Some(b"k"), false));
        assert!(!both.admits(Some(b"x"), false));
    }

    #[test]
    fn snapshot_chunks_round_trip_in_base64() {
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta::default(),
            offset: 4096,
            data: (0..=255u8).collect(),
            done: true,
        };
        let json = serde_json::to_string(&SnapshotChunk::from(rpc.clone())).unwrap();
        assert!(json.len() < 600, "bytes travel as base64: {json}");
        let back: SnapshotChunk = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_request().unwrap(), rpc);
        let bad = SnapshotChunk {
            data: "not base64!".into(),
            ..SnapshotChunk::from(rpc)
        };
        assert!(bad.into_request().is_err());
    }

    #[test]
    fn refusals_round_trip_through_the_wire_form() {
        let cases = [
            WireError::NotLeader {
                leader_url: Some("http://a".into()),
            },
            WireError::Timeout { millis: 5 },
            WireError::ShuttingDown,
            WireError::LastVoter { id: 3 },
            WireError::CatchUpTimeout { id: 2, millis: 9 },
        ];
        for case in cases {
            let json = serde_json::to_string(&case).unwrap();
            let back: WireError = serde_json::from_str(&json).unwrap();
            assert_eq!(back, case);
            let again: WireError = MembershipError::from(back).into();
            assert_eq!(again, case);
        }
    }
}
