//! The `record` executor: notes the instant a run was handed to it, for benchmarks
//! and tests that measure dispatch lag. It appends one line
//!
//! ```text
//! <job> <execution_id> <attempt> <scheduled_at unix ns> <handed_at unix ns>
//! ```
//!
//! to the spec's `path`, where `handed_at` is the wall clock read as soon as
//! [`Executor::run`] is called. The line goes out in a single `write` on a file
//! opened with `O_APPEND`, so lines from concurrent runs (even from several
//! processes) never interleave. The same line is the run's output.
//!
//! The append is made on the runtime's own thread, not in the blocking pool: it is
//! one small write to a local file, and 10,000 runs due at one instant would
//! otherwise start hundreds of pool threads whose start-up delays the hand-over of
//! the runs behind them, which is what this executor is there to measure. Point
//! `path` at a local file.

#[cfg(test)]
mod tests;

use std::fs::OpenOptions;
use std::io::{self, Write};

use chrono::Utc;
use futures_util::future::BoxFuture;
use rota_core::{ExecutorSpec, Timestamp};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::{interruptible, ExecError, Executor, OutputBuffer, RunOutcome, RunRequest};

/// Runs [`rota_core::RecordSpec`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordExecutor;

impl Executor for RecordExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        let handed_at = Utc::now();
        Box::pin(async move {
            let ExecutorSpec::Record(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "record",
                    spec: req.spec.type_name(),
                });
            };
            // A blocking write cannot be taken back once started: look first.
            if cancel.is_cancelled() {
                return RunOutcome::cancelled();
            }
            let line = record_line(&req, handed_at);
            let path = spec.path.clone();
            let bytes = line.clone().into_bytes();
            let write = async move { append_line(&path, &bytes) };
            let outcome = match interruptible(write, req.timeout, &cancel).await {
                Ok(Ok(())) => {
                    output.push(line.as_bytes());
                    RunOutcome::succeeded()
                }
                Ok(Err(err)) => ExecError::outcome(&err),
                Err(interrupted) => interrupted.outcome(),
            };
            match &outcome.error {
                None => debug!(job = %req.job, execution = %req.execution_id, path = %spec.path,
                    "run recorded"),
                Some(error) => warn!(job = %req.job, execution = %req.execution_id,
                    path = %spec.path, %error, "record failed"),
            }
            outcome
        })
    }
}

/// The line recorded for `req`, newline included.
pub fn record_line(req: &RunRequest, handed_at: Timestamp) -> String {
    format!(
        "{} {} {} {} {}\n",
        req.job,
        req.execution_id,
        req.attempt,
        unix_nanos(req.scheduled_at),
        unix_nanos(handed_at)
    )
}

/// Nanoseconds since the Unix epoch; `i128` so that no representable time overflows.
fn unix_nanos(at: Timestamp) -> i128 {
    i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos())
}

fn append_line(path: &str, line: &[u8]) -> Result<(), ExecError> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| ExecError::RecordOpen {
            path: path.to_string(),
            source,
        })?;
    // One write(2) per line: with O_APPEND the kernel places it whole at the end of
    // the file. A signal before anything was written is retried, still as one write.
    let written = loop {
        match file.write(line) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    }
    .map_err(|source| ExecError::RecordWrite {
        path: path.to_string(),
        source,
    })?;
    if written != line.len() {
        return Err(ExecError::ShortWrite {
            path: path.to_string(),
            written,
            len: line.len(),
        });
    }
    Ok(())
}
