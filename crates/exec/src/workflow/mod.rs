//! The `workflow_job` executor: one job of a workflow run.

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::{Executor, OutputBuffer, RunOutcome, RunRequest};

/// Runs [`rota_core::workflow::WorkflowJobSpec`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowExecutor;

impl Executor for WorkflowExecutor {
    fn run(
        &self,
        _req: RunRequest,
        _output: OutputBuffer,
        _cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async { RunOutcome::failed(None, "workflow jobs cannot run on this build yet") })
    }
}
