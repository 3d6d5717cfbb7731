//! Background workers: every long-running task of a node (the proposal batcher, the
//! leadership watcher, the scheduler runtime, heartbeats; later discovery, watch
//! fan-out and sinks) runs under one [`Runner`], never as a detached task.
//!
//! A worker is a named future that gets a [`WorkerContext`]: the shutdown signal it
//! must honour and a place to say what it is doing. The runner keeps its
//! [`WorkerStatus`] (running, stopped, failed with the error, panicked) for health and
//! metrics, and [`Runner::stop`] cancels and then awaits every worker it started, so
//! a node that says it stopped has nothing left running.
//!
//! Stop order matters on a node (the scheduler stops before Raft, Raft before the
//! HTTP server), so a runner hands out [`Runner::scope`]s: a scope has its own
//! shutdown signal (also fired when its parent stops) and its own set of workers,
//! and shares the parent's status list.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::{debug, error};

/// What a worker ends with when it cannot go on.
pub type WorkerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a worker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Its future is still going.
    Running,
    /// It ended by itself without an error (normally after the shutdown signal).
    Stopped,
    /// It ended with an error (in `detail`).
    Failed,
    /// It panicked (the message in `detail`).
    Panicked,
}

impl WorkerState {
    /// The name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
            WorkerState::Panicked => "panicked",
        }
    }
}

/// One worker as health and metrics report it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerStatus {
    /// The worker's name, unique on a node (`scheduler`, `proposals`, ...).
    pub name: String,
    pub state: WorkerState,
    /// What it last said it is doing, or why it failed.
    pub detail: Option<String>,
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running.
    pub stopped_at: Option<DateTime<Utc>>,
}

type Cell = Arc<Mutex<WorkerStatus>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned list is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a running worker is given.
#[derive(Clone)]
pub struct WorkerContext {
    shutdown: CancellationToken,
    status: Cell,
}

impl WorkerContext {
    /// Resolves once the worker should stop.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Whether the worker should stop.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The shutdown signal itself, for code that takes a token.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Says what the worker is doing now (shown by health).
    pub fn set_detail(&self, detail: impl Into<String>) {
        lock(&self.status).detail = Some(detail.into());
    }
}

struct Scope {
    token: CancellationToken,
    handles: Mutex<Vec<JoinHandle<()>>>,
    children: Mutex<Vec<Arc<Scope>>>,
}

impl Scope {
    fn new(token: CancellationToken) -> Arc<Scope> {
        Arc::new(Scope {
            token,
            handles: Mutex::new(Vec::new()),
            children: Mutex::new(Vec::new()),
        })
    }

    /// Awaits every worker of this scope and of its children, including any started
    /// while it waits.
    async fn join(&self) {
        loop {
            let handles: Vec<_> = lock(&self.handles).drain(..).collect();
            let children: Vec<_> = lock(&self.children).clone();
            if handles.is_empty() {
                for child in &children {
                    Box::pin(child.join()).await;
                }
                if lock(&self.handles).is_empty() {
                    return;
                }
                continue;
            }
            for h in handles {
                // The task body catches panics itself; an abort is the only other end.
                let _ = h.await;
            }
        }
    }
}

/// Starts, lists and stops a node's workers. Cheap to clone: clones share
/// everything.
#[derive(Clone)]
pub struct Runner {
    scope: Arc<Scope>,
    statuses: Arc<Mutex<Vec<Cell>>>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("stopping", &self.scope.token.is_cancelled())
            .field("workers", &lock(&self.statuses).len())
            .finish()
    }
}

impl Runner {
    /// A runner with no workers.
    pub fn new() -> Runner {
        Runner {
            scope: Scope::new(CancellationToken::new()),
            statuses: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A scope of this runner: its own workers and shutdown signal (fired by
    /// [`Runner::stop`] on the scope, or when this runner stops), the same status list.
    pub fn scope(&self) -> Runner {
        let child = Scope::new(self.scope.token.child_token());
        lock(&self.scope.children).push(child.clone());
        Runner {
            scope: child,
            statuses: self.statuses.clone(),
        }
    }

    /// Starts a worker named `name` (a later worker of the same name replaces its
    /// status entry). Must be called within a tokio runtime.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, work: F)
    where
        F: FnOnce(WorkerContext) -> Fut,
        Fut: Future<Output = Result<(), WorkerError>> + Send + 'static,
    {
        let name = name.into();
        let cell: Cell = Arc::new(Mutex::new(WorkerStatus {
            name: name.clone(),
            state: WorkerState::Running,
            detail: None,
            started_at: Utc::now(),
            stopped_at: None,
        }));
        {
            let mut statuses = lock(&self.statuses);
            statuses.retain(|c| lock(c).name != name);
            statuses.push(cell.clone());
        }
        let ctx = WorkerContext {
            shutdown: self.scope.token.clone(),
            status: cell.clone(),
        };
        let fut = work(ctx);
        debug!(worker = %name, "worker started");
        let handle = tokio::spawn(async move {
            let ended = AssertUnwindSafe(fut).catch_unwind().await;
            let mut status = lock(&cell);
            status.stopped_at = Some(Utc::now());
            match ended {
                Ok(Ok(())) => {
                    status.state = WorkerState::Stopped;
                    debug!(worker = %status.name, "worker stopped");
                }
                Ok(Err(e)) => {
                    let why = rota_core::error::chain(e.as_ref());
                    error!(worker = %status.name, error = %why, "worker failed");
                    status.state = WorkerState::Failed;
                    status.detail = Some(why);
                }
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic without a message".to_string());
                    error!(worker = %status.name, panic = %why, "worker panicked");
                    status.state = WorkerState::Panicked;
                    status.detail = Some(why);
                }
            }
        });
        lock(&self.scope.handles).push(handle);
    }

    /// This scope's shutdown signal (for code that must see it outside a worker).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.scope.token.clone()
    }

    /// Whether this scope was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.scope.token.is_cancelled()
    }

    /// Tells every worker of this scope (and its scopes) to stop and waits until
    /// all have ended.
    pub async fn stop(&self) {
        self.scope.token.cancel();
        self.scope.join().await;
    }

    /// Waits until every worker of this scope (and its scopes) has ended, without
    /// telling them to stop.
    pub async fn join(&self) {
        self.scope.join().await;
    }

    /// Every worker started on this runner or any of its scopes, in start order.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        lock(&self.statuses)
            .iter()
            .map(|c| lock(c).clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
