//! Errors of the scheduler runtime. The engine itself cannot fail: what it cannot
//! use (an invalid schedule, an execution of an unknown job) it logs and ignores.

/// Why the runtime could not (re)build its engine from the store.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Reading jobs or executions from the store failed.
    #[error("reading the store: {0}")]
    Store(#[from] rota_store::StoreError),
    /// The blocking task that loads the store into a new engine died.
    #[error("the engine load task failed: {0}")]
    LoadTask(#[from] tokio::task::JoinError),
}
