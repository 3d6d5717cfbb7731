//! Errors of the cluster layer.

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("store: {0}")]
    Store(#[from] rota_store::StoreError),
}

/// Why a write (or read barrier) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader and could not forward; `leader_url` is a hint.
    #[error("this node is not the leader")]
    NotLeader { leader_url: Option<String> },
    #[error("the write did not commit within {0:?}")]
    Timeout(std::time::Duration),
    #[error("raft is shutting down")]
    ShuttingDown,
    #[error("raft failed: {0}")]
    Fatal(String),
}
