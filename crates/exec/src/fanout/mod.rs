//! Fan-out: a job with `targets` runs its executor (shell, http or record) once per
//! target of the set, with `{{target.address}}` and `{{target.labels.NAME}}`
//! substituted in every text of the spec.
//!
//! At most the request's `parallelism` targets run at once. Each target's output
//! is kept apart while it runs and appended to the run's output when it ends, as a
//! block headed `==> {address}: {status}`, so blocks never interleave. The run
//! succeeds iff every target succeeded; its result says `succeeded`, `partial`,
//! `failed`, or `no_targets` for a set without targets (a failed run: a job meant
//! to reach a set that reached nothing should not look green). A label a target
//! lacks fails that target alone. The job's timeout and a cancel stop every target
//! (their futures are dropped, which kills a shell target's processes); targets
//! that had not finished are reported `timed_out` or `cancelled`.

#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use futures_util::{stream, StreamExt};
use rota_core::probe::{ResultStatus, RunResult, TargetResult};
use rota_core::targets::Target;
use rota_core::{ExecStatus, ExecutorSpec};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::texts::{map_texts, substitute_target};
use crate::{
    executor_for, interruptible, ExecError, Interrupted, OutputBuffer, RunOutcome, RunRequest,
};

/// Failing targets named in a failed run's error; the rest are counted.
const NAMED_IN_ERROR: usize = 5;

/// Runs `req` once per target of `req.targets`; without targets, runs it once as
/// it is (what [`crate::run_attempt`] does too).
pub async fn run_fan_out(
    req: RunRequest,
    output: OutputBuffer,
    cancel: CancellationToken,
) -> RunOutcome {
    let Some(targets) = req.targets.as_deref() else {
        return executor_for(&req.spec).run(req, output, cancel).await;
    };
    if let ExecutorSpec::WorkflowJob(_) | ExecutorSpec::Probe(_) = &req.spec {
        return ExecError::CannotFanOut {
            spec: req.spec.type_name(),
        }
        .outcome();
    }
    if targets.is_empty() {
        let err = ExecError::NoTargets;
        output.push_line(format!("{err}\n").as_bytes());
        return err.outcome().with_result(RunResult {
            status: ResultStatus::NoTargets,
            targets: Vec::new(),
        });
    }
    let parallelism = usize::try_from(req.parallelism.max(1)).unwrap_or(usize::MAX);
    let started: Mutex<Vec<Option<Instant>>> = Mutex::new(vec![None; targets.len()]);
    let mut finished: Vec<Option<TargetResult>> = vec![None; targets.len()];
    // Made up front: a stream over a borrowing closure trips the compiler's
    // higher-ranked lifetime check once the future must be `Send`.
    let runs: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let (req, output, started) = (&req, &output, &started);
            let cancel = cancel.child_token();
            async move {
                let at = Instant::now();
                started.lock().unwrap_or_else(PoisonError::into_inner)[i] = Some(at);
                (i, run_target(req, target, output, cancel, at).await)
            }
        })
        .collect();
    let work = stream::iter(runs)
        .buffer_unordered(parallelism)
        .for_each(|(i, result)| {
            finished[i] = Some(result);
            std::future::ready(())
        });
    let interrupted = interruptible(work, req.timeout, &cancel).await.err();
    let started = started.into_inner().unwrap_or_else(PoisonError::into_inner);
    let results: Vec<TargetResult> = targets
        .iter()
        .zip(finished)
        .zip(started)
        .map(|((target, done), at)| done.unwrap_or_else(|| unfinished(target, at, interrupted)))
        .collect();
    let outcome = outcome_of(results, interrupted);
    debug!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
        executor = req.spec.type_name(), targets = targets.len(),
        result = outcome.result.as_ref().map(|r| r.status.as_str()),
        "fan-out ended");
    outcome
}

/// One target: the spec with the target substituted, run by its executor into an
/// output of its own, which then goes to the run's output as one block.
async fn run_target(
    req: &RunRequest,
    target: &Target,
    output: &OutputBuffer,
    cancel: CancellationToken,
    started: Instant,
) -> TargetResult {
    let spec = match map_texts(&req.spec, &mut |text| substitute_target(text, target)) {
        Ok(spec) => spec,
        Err(err) => {
            let error = err.chain();
            append_block(
                output,
                &target.address,
                ExecStatus::Failed,
                error.as_bytes(),
            );
            return TargetResult {
                address: target.address.clone(),
                code: None,
                status: ExecStatus::Failed,
                attempts: 0,
                duration_ms: 0,
                error: Some(error),
            };
        }
    };
    let is_http = matches!(spec, ExecutorSpec::Http(_));
    let own = OutputBuffer::new(output.max_bytes() as u64);
    let one = RunRequest {
        execution_id: req.execution_id,
        job: req.job.clone(),
        scheduled_at: req.scheduled_at,
        attempt: req.attempt,
        node: req.node.clone(),
        spec,
        // The job's timeout bounds the whole fan-out.
        timeout: None,
        workflow: None,
        targets: None,
        parallelism: req.parallelism,
        forward_headers: req.forward_headers.clone(),
        sink: None,
    };
    let outcome = executor_for(&one.spec).run(one, own.clone(), cancel).await;
    own.close();
    let (bytes, _) = own.snapshot();
    let code = if is_http {
        http_status(&bytes)
    } else {
        outcome.exit_code.map(i64::from)
    };
    append_block(output, &target.address, outcome.status, &bytes);
    TargetResult {
        address: target.address.clone(),
        code,
        status: outcome.status,
        attempts: 1,
        duration_ms: millis(started),
        error: outcome.error,
    }
}

/// The status of an http run, from its output's first line `HTTP <status>`.
fn http_status(output: &[u8]) -> Option<i64> {
    let rest = output.strip_prefix(b"HTTP ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn append_block(output: &OutputBuffer, address: &str, status: ExecStatus, body: &[u8]) {
    output.push_line(format!("==> {address}: {}\n", status.as_str()).as_bytes());
    output.push(body);
    if !body.is_empty() && !body.ends_with(b"\n") {
        output.push(b"\n");
    }
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A target that had not ended when the run was stopped (or had not started).
fn unfinished(
    target: &Target,
    started: Option<Instant>,
    interrupted: Option<Interrupted>,
) -> TargetResult {
    let (status, error) = match interrupted {
        Some(Interrupted::TimedOut(_)) => (ExecStatus::TimedOut, "the job's timeout ran out"),
        // Every target ends unless the run is stopped.
        Some(Interrupted::Cancelled) | None => (ExecStatus::Cancelled, "cancelled"),
    };
    let error = if started.is_some() {
        error.to_string()
    } else {
        format!("{error} before it started")
    };
    TargetResult {
        address: target.address.clone(),
        code: None,
        status,
        attempts: u32::from(started.is_some()),
        duration_ms: started.map_or(0, millis),
        error: Some(error),
    }
}

fn outcome_of(results: Vec<TargetResult>, interrupted: Option<Interrupted>) -> RunOutcome {
    let total = results.len();
    let succeeded = results
        .iter()
        .filter(|r| r.status == ExecStatus::Succeeded)
        .count();
    let status = if succeeded == total {
        ResultStatus::Succeeded
    } else if succeeded == 0 {
        ResultStatus::Failed
    } else {
        ResultStatus::Partial
    };
    if let Some(interrupted) = interrupted {
        return interrupted.outcome().with_result(RunResult {
            status,
            targets: results,
        });
    }
    if status == ResultStatus::Succeeded {
        return RunOutcome::succeeded().with_result(RunResult {
            status,
            targets: results,
        });
    }
    let mut error = format!(
        "{}: {succeeded} of {total} targets succeeded",
        status.as_str()
    );
    let failing: Vec<&TargetResult> = results
        .iter()
        .filter(|r| r.status != ExecStatus::Succeeded)
        .collect();
    for r in failing.iter().take(NAMED_IN_ERROR) {
        let why = r.error.as_deref().unwrap_or(r.status.as_str());
        let _ = write!(error, "; {}: {why}", r.address);
    }
    if failing.len() > NAMED_IN_ERROR {
        let _ = write!(error, "; and {} more", failing.len() - NAMED_IN_ERROR);
    }
    RunOutcome::failed(None, error).with_result(RunResult {
        status,
        targets: results,
    })
}
