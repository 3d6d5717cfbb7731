//! Errors of the scheduler runtime. The engine itself cannot fail: what it cannot
//! use (an invalid schedule, an execution of an unknown job) it logs and ignores.

use rota_core::Response;

/// Why the runtime could not (re)build its engine from the store.
///
/// Each variant names what was being done and chains its cause as `source`; log it
/// with [`rota_core::error::chain`] to see the whole story on one line.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Reading jobs or executions from the store failed.
    #[error("reading the store")]
    Store(#[from] rota_store::StoreError),
    /// The blocking task that loads the store into a new engine died.
    #[error("the engine load task failed")]
    LoadTask(#[from] tokio::task::JoinError),
    /// Committing `ClaimScheduler` (the fence against the previous leader) failed.
    #[error("claiming the scheduler")]
    Claim(#[from] rota_cluster::WriteError),
    /// This node stopped leading before it could claim the scheduler.
    #[error("claiming the scheduler: this node does not lead")]
    NotLeader,
    /// A leader of a later term claimed the scheduler first.
    #[error("claiming the scheduler in term {term}: term {epoch} claimed it already")]
    Superseded { term: u64, epoch: u64 },
    /// The store answered `ClaimScheduler` with something else than an epoch (a
    /// state machine of another release, or a bug).
    #[error("claiming the scheduler: unexpected answer {0:?}")]
    ClaimAnswer(Response),
    /// The HTTP client of the notifier could not be built (TLS set-up).
    #[error("building the webhook HTTP client")]
    WebhookClient(#[source] reqwest::Error),
}
