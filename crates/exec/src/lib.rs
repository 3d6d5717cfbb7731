//! Executors: what a run does. One trait, [`Executor`], one implementation per module
//! folder (`shell`, `http`, `record`), chosen from the job's
//! [`rota_core::ExecutorSpec`] by a `match` in [`executor_for`].
//!
//! An executor gets a [`RunRequest`], writes what the run prints into an
//! [`OutputBuffer`] (bounded by the job's `max_output_bytes`, readable live while the
//! run goes on), watches a cancellation token, and answers a [`RunOutcome`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rota_core::{ExecStatus, ExecutorSpec, Timestamp};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

/// Everything an executor needs to know about one attempt.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub execution_id: Ulid,
    pub job: String,
    pub scheduled_at: Timestamp,
    pub attempt: u32,
    /// Name of the node running it (`ROTA_NODE`).
    pub node: String,
    pub spec: ExecutorSpec,
    /// Kill the attempt after this long and answer `timed_out`.
    pub timeout: Option<Duration>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub status: ExecStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

/// Output of one attempt, shared between the executor writing it and readers
/// following it.
#[derive(Debug, Clone)]
pub struct OutputBuffer {
    _todo: Arc<()>,
}

impl OutputBuffer {
    /// A buffer keeping at most `max_bytes`; what comes beyond is dropped and
    /// the buffer marked truncated.
    pub fn new(max_bytes: u64) -> Self {
        let _ = max_bytes;
        todo!()
    }
    /// Appends bytes (cut at the limit).
    pub fn push(&self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }
    /// Marks the output complete: followers see the end.
    pub fn close(&self) {
        todo!()
    }
    /// Everything kept so far, and whether anything was dropped.
    pub fn snapshot(&self) -> (bytes::Bytes, bool) {
        todo!()
    }
    /// Bytes kept from `offset` on, and whether the output is complete; waits until
    /// there is something new or the output is closed when there is nothing yet.
    pub async fn read_from(&self, offset: usize) -> (bytes::Bytes, bool) {
        let _ = offset;
        todo!()
    }
}

/// One kind of run.
pub trait Executor: Send + Sync {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome>;
}

/// The executor for a spec.
pub fn executor_for(spec: &ExecutorSpec) -> Arc<dyn Executor> {
    let _ = spec;
    todo!()
}
