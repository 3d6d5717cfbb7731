//! Errors of the cluster layer.
//!
//! A variant that wraps another error marks it `#[source]` and leaves it out of its
//! own message, so [`rota_core::error::chain`] prints each cause once; log lines
//! print the chain.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Why a node could not start, store, or stop.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The state file, or a record (of the state file or the Raft log) failed.
    #[error(transparent)]
    Store(#[from] rota_store::StoreError),
    /// Opening the Raft log file failed.
    #[error("opening the raft log")]
    LogOpen(#[from] redb::DatabaseError),
    /// A transaction, table, read or commit of the Raft log file failed.
    #[error("raft log")]
    LogDatabase(#[source] redb::Error),
    /// A file or directory of the node could not be created, read or written.
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A field of [`crate::NodeConfig`] is out of range.
    #[error("node config {field}: {message}")]
    InvalidConfig {
        field: &'static str,
        message: String,
    },
    /// openraft refused the derived Raft configuration.
    #[error("raft config")]
    RaftConfig(#[source] Box<openraft::ConfigError>),
    /// Raft stopped or failed while starting.
    #[error("raft failed to start")]
    RaftStart(#[source] Box<openraft::error::Fatal<u64>>),
    /// Turning a fresh data directory into a one-member cluster failed.
    #[error("initializing the cluster")]
    Initialize(
        #[source]
        Box<
            openraft::error::RaftError<
                u64,
                openraft::error::InitializeError<u64, openraft::BasicNode>,
            >,
        >,
    ),
    /// No leader was elected, or this node did not catch up with it, in time.
    #[error("no leader was ready within {0:?}")]
    NotReady(Duration),
    /// A snapshot's header does not describe what the leader said it sent.
    #[error("snapshot holds state up to log index {found:?}, but was announced as {announced:?}")]
    SnapshotMismatch {
        announced: Option<u64>,
        found: Option<u64>,
    },
    /// A blocking storage task or the Raft task panicked.
    #[error("a background task failed")]
    TaskFailed(#[from] tokio::task::JoinError),
    /// `--peers` does not describe a cluster this node can be part of.
    #[error("peers: {0}")]
    InvalidPeers(String),
}

rota_store::impl_from_redb_errors!(ClusterError, ClusterError::LogDatabase);

/// Why a write (or read barrier) did not go through. `NotLeader`, `Timeout` and
/// `ShuttingDown` are the ones a client may retry; the others are failures.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader and could not forward; `leader_url` is a hint.
    #[error("this node is not the leader")]
    NotLeader { leader_url: Option<String> },
    #[error("the write did not commit within {0:?}")]
    Timeout(std::time::Duration),
    #[error("raft is shutting down")]
    ShuttingDown,
    /// Raft stopped on a fatal error (a storage failure, a panic of its task).
    #[error("raft failed")]
    Raft(#[source] Box<openraft::error::Fatal<u64>>),
    /// openraft refused a client write with a membership error (not expected:
    /// writes never change the membership).
    #[error("raft refused the write")]
    Refused(#[source] Box<openraft::error::ChangeMembershipError<u64>>),
    /// Another node became the leader while a request forwarded to the old one
    /// was unanswered (that one is frozen or cut off). The request may still
    /// apply (it may have reached a majority before), so it is not sent again
    /// unless it carries a client session, whose sequence makes a repeat harmless;
    /// `leader_url` is the new leader, for the client to retry at.
    #[error("the leader changed while the request was forwarded to the old one")]
    LeaderMoved { leader_url: Option<String> },
    /// The call to the leader broke after the request may have been delivered.
    #[error("forwarding to the leader failed")]
    Forward(#[source] Arc<PeerError>),
    /// The leader failed the forwarded request; errors cross the wire as text.
    #[error("the leader failed: {message}")]
    Leader { message: String },
    /// The leader answered with a refusal that no write gets (a peer of another
    /// release, or a bug).
    #[error("unexpected answer from the leader: {answer}")]
    UnexpectedAnswer { answer: String },
    /// The state machine answered a batched proposal with another shape (a bug).
    #[error("the batched proposal at index {index} was answered with {answer}")]
    BatchAnswer { index: u64, answer: String },
}

impl From<openraft::error::Fatal<u64>> for WriteError {
    fn from(e: openraft::error::Fatal<u64>) -> Self {
        match e {
            openraft::error::Fatal::Stopped => WriteError::ShuttingDown,
            other => WriteError::Raft(Box::new(other)),
        }
    }
}

/// Why a membership change (join, leave) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No leader, a timeout, shutdown: the same causes as for a write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The node to remove is neither a voter nor a learner.
    #[error("node {id} is not a member of the cluster")]
    UnknownMember { id: u64 },
    /// The id or URL of the node to add is unusable (or the id is taken by
    /// another URL).
    #[error("node {id}: {message}")]
    InvalidMember { id: u64, message: String },
    /// Another membership change has not committed yet.
    #[error("another membership change is in progress; retry when it has committed")]
    InProgress,
    /// The new learner did not catch up with the leader's log in time.
    #[error("node {id} did not catch up with the leader within {timeout:?}")]
    CatchUpTimeout { id: u64, timeout: Duration },
    /// Removing the node would leave no voter.
    #[error("node {id} is the last voter; a cluster cannot remove its last voter")]
    LastVoter { id: u64 },
}

/// Why a call to a peer failed, below the Raft protocol.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The HTTP client could not be built (see the log); nothing was sent.
    #[error("no HTTP client for peer calls")]
    NoClient,
    /// No connection could be made: the request was certainly not delivered.
    #[error("peer {url} is unreachable")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No answer within the call's time limit; the peer may have acted on it.
    #[error("peer {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The connection broke, or the answer could not be read.
    #[error("call to peer {url} failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The peer answered with an HTTP error (401: wrong cluster secret).
    #[error("peer {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The peer refused the call as not meant for it: it is another node, or a
    /// node of another cluster (the address was reused). Certainly not delivered.
    #[error(
        "peer {url} refused the call (HTTP {status}): it is another node, or another cluster's"
    )]
    Refused { url: String, status: u16 },
    /// The request could not be encoded; nothing was sent.
    #[error("encoding a peer call failed")]
    Encode(#[source] serde_json::Error),
}
