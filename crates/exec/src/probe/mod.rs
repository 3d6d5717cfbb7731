//! The `probe` executor: asks every target of a set the same HTTP question and sums
//! the answers up (see [`rota_core::probe`]).
//!
//! Each target gets `{scheme}://{address}{path}` with the spec's headers plus the
//! forwarded values of `forward_headers`. All targets are asked at once (at most
//! [`MAX_IN_FLIGHT`] requests in flight), over the client the http executor uses.
//! A status in `expect_status` is the answer; one in `retry_on` is asked again after
//! `retry_delay`, at most `max_retries` times. A connection error (refused, reset,
//! TLS) is retried the same way: during a rollout a replica that restarts refuses
//! connections for a moment, and that is what a probe is there to wait out. Any
//! other status ends that target as not synced at once.
//!
//! The whole probe is bounded by `deadline`: a target still waiting then (for an
//! answer, or between two attempts) is reported with error `deadline passed`, and
//! the probe's status is `timeout`. With fewer targets than `min_targets` nothing is
//! asked and the status is `below_min`.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::future::BoxFuture;
use futures_util::{stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method};
use rota_core::probe::{ProbeSpec, ProbeStatus, ResultStatus, RunResult, TargetResult};
use rota_core::targets::Target;
use rota_core::{ExecStatus, ExecutorSpec};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{interruptible, ExecError, Executor, OutputBuffer, RunOutcome, RunRequest};

/// Requests of one probe in flight at once, at most.
pub const MAX_IN_FLIGHT: usize = 256;

/// The error of a target still pending when the deadline passed.
pub const DEADLINE_PASSED: &str = "deadline passed";

/// Failing targets named in a failed run's error; the rest are counted.
const NAMED_IN_ERROR: usize = 5;

/// Runs [`ProbeSpec`]s over the targets of the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeExecutor;

impl Executor for ProbeExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            let ExecutorSpec::Probe(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "probe",
                    spec: req.spec.type_name(),
                });
            };
            let Some(targets) = &req.targets else {
                return ExecError::TargetsNotResolved {
                    set: spec.targets.clone(),
                }
                .outcome();
            };
            let probe = run_probe(spec, targets, &req.forward_headers, &cancel);
            let outcome = match interruptible(probe, req.timeout, &cancel).await {
                Ok(result) => {
                    output.push(describe(&result).as_bytes());
                    if let Some(sink) = &req.sink {
                        sink.send(probe_points(&req.job, &result));
                    }
                    outcome_of(spec, result)
                }
                Err(interrupted) => interrupted.outcome(),
            };
            debug!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
                set = %spec.targets, targets = targets.len(),
                result = outcome.result.as_ref().map(|r| r.status.as_str()),
                "probe ended");
            outcome
        })
    }
}

/// Asks every target and sums the answers up; see the module's description. A
/// cancel stops the requests still pending, which are reported `cancelled` (and
/// count as not synced).
pub async fn run_probe(
    spec: &ProbeSpec,
    targets: &[Target],
    forwarded: &BTreeMap<String, String>,
    cancel: &CancellationToken,
) -> RunResult {
    if targets.len() < spec.min_targets as usize {
        return below_min(spec, targets);
    }
    let deadline = Instant::now() + spec.deadline.0;
    let asking = match Asking::new(spec, forwarded) {
        Ok(asking) => asking,
        Err(err) => {
            // Nothing could be sent to anyone (a bad header, no TLS set-up).
            let error = err.chain();
            let targets = targets
                .iter()
                .map(|t| TargetResult {
                    address: t.address.clone(),
                    code: None,
                    status: ExecStatus::Failed,
                    attempts: 0,
                    duration_ms: 0,
                    error: Some(error.clone()),
                })
                .collect();
            return RunResult {
                status: ResultStatus::NotSynced,
                targets,
            };
        }
    };
    // Made up front: a stream over a borrowing closure trips the compiler's
    // higher-ranked lifetime check once the future must be `Send`.
    let asks: Vec<_> = targets
        .iter()
        .map(|target| asking.target(target, deadline, cancel))
        .collect();
    let results: Vec<TargetResult> = stream::iter(asks).buffered(MAX_IN_FLIGHT).collect().await;
    RunResult {
        status: aggregate(&results).into(),
        targets: results,
    }
}

/// synced, partial or not_synced by the count of targets that answered; timeout
/// when one was still pending at the deadline.
fn aggregate(results: &[TargetResult]) -> ProbeStatus {
    if results.iter().any(|r| r.status == ExecStatus::TimedOut) {
        return ProbeStatus::Timeout;
    }
    let synced = results
        .iter()
        .filter(|r| r.status == ExecStatus::Succeeded)
        .count();
    if synced == results.len() {
        // Also a set of none, which only gets here with min_targets 0: whoever
        // wrote that accepts an empty set.
        ProbeStatus::Synced
    } else if synced == 0 {
        ProbeStatus::NotSynced
    } else {
        ProbeStatus::Partial
    }
}

fn below_min(spec: &ProbeSpec, targets: &[Target]) -> RunResult {
    let error = format!(
        "not asked: the set has {} target(s), fewer than min_targets {}",
        targets.len(),
        spec.min_targets
    );
    RunResult {
        status: spec.below_min.into(),
        targets: targets
            .iter()
            .map(|t| TargetResult {
                address: t.address.clone(),
                code: None,
                status: ExecStatus::Skipped,
                attempts: 0,
                duration_ms: 0,
                error: Some(error.clone()),
            })
            .collect(),
    }
}

/// What every target is asked, prepared once.
struct Asking<'a> {
    spec: &'a ProbeSpec,
    client: &'static Client,
    method: Method,
    headers: HeaderMap,
}

/// How far one target got; read when its wait is cut short.
#[derive(Default)]
struct Progress {
    attempts: u32,
    code: Option<u16>,
    error: Option<String>,
}

enum Ending {
    Answered(bool),
    DeadlinePassed,
    Cancelled,
}

impl<'a> Asking<'a> {
    fn new(spec: &'a ProbeSpec, forwarded: &BTreeMap<String, String>) -> Result<Self, ExecError> {
        let method = Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| ExecError::InvalidMethod(spec.method.clone()))?;
        let mut headers = HeaderMap::new();
        let forwarded_values = spec.forward_headers.iter().filter_map(|name| {
            forwarded
                .iter()
                .find(|(sent, _)| sent.eq_ignore_ascii_case(name))
                .map(|(_, value)| (name, value))
        });
        // Forwarded values replace the spec's own for the same header.
        for (name, value) in spec.headers.iter().chain(forwarded_values) {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ExecError::InvalidHeaderName(name.clone()))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ExecError::InvalidHeaderValue(name.clone()))?;
            headers.insert(header, value);
        }
        Ok(Self {
            spec,
            client: crate::http::client()?,
            method,
            headers,
        })
    }

    async fn target(
        &self,
        target: &Target,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> TargetResult {
        let url = format!(
            "{}://{}{}",
            self.spec.scheme, target.address, self.spec.path
        );
        let started = Instant::now();
        let mut progress = Progress::default();
        let ending = tokio::select! {
            biased;
            () = cancel.cancelled() => Ending::Cancelled,
            () = tokio::time::sleep_until(deadline) => Ending::DeadlinePassed,
            synced = self.ask(&url, &mut progress) => Ending::Answered(synced),
        };
        let (status, error) = match ending {
            Ending::Answered(true) => (ExecStatus::Succeeded, None),
            Ending::Answered(false) => (ExecStatus::Failed, progress.error),
            Ending::DeadlinePassed => (ExecStatus::TimedOut, Some(DEADLINE_PASSED.to_string())),
            Ending::Cancelled => (ExecStatus::Cancelled, Some("cancelled".to_string())),
        };
        TargetResult {
            address: target.address.clone(),
            code: progress.code.map(i64::from),
            status,
            attempts: progress.attempts,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            error,
        }
    }

    /// Asks until an answer decides (`true`: an expected status) or the retries
    /// run out; the caller bounds it by the deadline.
    async fn ask(&self, url: &str, progress: &mut Progress) -> bool {
        let spec = self.spec;
        loop {
            progress.attempts += 1;
            let sent = self
                .client
                .request(self.method.clone(), url)
                .headers(self.headers.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(response) => {
                    let code = response.status().as_u16();
                    progress.code = Some(code);
                    if spec.expect_status.contains(&code) {
                        progress.error = None;
                        return true;
                    }
                    if spec.retry_on.contains(&code) {
                        progress.error =
                            Some(format!("{code} after {}", attempts(progress.attempts)));
                        true
                    } else {
                        progress.error = Some(format!(
                            "unexpected status {code} (expected {})",
                            list(&spec.expect_status)
                        ));
                        false
                    }
                }
                Err(err) => {
                    progress.code = None;
                    progress.error = Some(format!(
                        "{} (after {})",
                        ExecError::Request(err).chain(),
                        attempts(progress.attempts)
                    ));
                    true
                }
            };
            if !retry || progress.attempts > spec.max_retries {
                return false;
            }
            tokio::time::sleep(spec.retry_delay.0).await;
        }
    }
}

fn attempts(n: u32) -> String {
    if n == 1 {
        "1 attempt".to_string()
    } else {
        format!("{n} attempts")
    }
}

fn list(statuses: &[u16]) -> String {
    statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `probe` points of a result, one per target: tags `job`, `target`, `status`
/// (`synced`, `not_synced`, `timeout`, `skipped`); fields `code` (0 when none
/// came), `attempts`, `duration_ms`; at the time they are made.
pub fn probe_points(job: &str, result: &RunResult) -> Vec<rota_sink::Point> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    result
        .targets
        .iter()
        .map(|t| {
            let status = match t.status {
                ExecStatus::Succeeded => "synced",
                ExecStatus::TimedOut => "timeout",
                ExecStatus::Skipped => "skipped",
                _ => "not_synced",
            };
            rota_sink::Point::new("probe", now)
                .tag("job", job)
                .tag("target", t.address.as_str())
                .tag("status", status)
                .field("code", t.code.unwrap_or(0))
                .field("attempts", i64::from(t.attempts))
                .field("duration_ms", t.duration_ms)
        })
        .collect()
}

/// One line per target, then the summary, for people (a run's output).
pub fn describe(result: &RunResult) -> String {
    let mut text = String::new();
    for t in &result.targets {
        let verdict = match t.status {
            ExecStatus::Succeeded => "synced",
            ExecStatus::TimedOut => "pending",
            ExecStatus::Skipped => "not asked",
            ExecStatus::Cancelled => "cancelled",
            _ => "not synced",
        };
        let code = t.code.map_or_else(|| "-".to_string(), |c| c.to_string());
        let _ = write!(
            text,
            "{}: {verdict}, status {code}, {} in {}ms",
            t.address,
            attempts(t.attempts),
            t.duration_ms
        );
        if let Some(error) = &t.error {
            let _ = write!(text, ": {error}");
        }
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "probe {}: {} of {} targets synced",
        result.status.as_str(),
        synced(result),
        result.targets.len()
    );
    text
}

fn synced(result: &RunResult) -> usize {
    result
        .targets
        .iter()
        .filter(|t| t.status == ExecStatus::Succeeded)
        .count()
}

/// `succeeded` iff the probe's status is `synced`; else `failed`, naming the
/// targets that were not.
/// The run's outcome for a result: succeeded iff synced, else failed saying why.
pub fn outcome_of(spec: &ProbeSpec, result: RunResult) -> RunOutcome {
    if result.status == ResultStatus::Synced {
        return RunOutcome::succeeded().with_result(result);
    }
    let total = result.targets.len();
    let mut error = if total < spec.min_targets as usize {
        format!(
            "{}: the set has {total} target(s), fewer than min_targets {}",
            result.status.as_str(),
            spec.min_targets
        )
    } else {
        format!(
            "{}: {} of {total} targets synced",
            result.status.as_str(),
            synced(&result)
        )
    };
    let failing: Vec<&TargetResult> = result
        .targets
        .iter()
        .filter(|t| !matches!(t.status, ExecStatus::Succeeded | ExecStatus::Skipped))
        .collect();
    for t in failing.iter().take(NAMED_IN_ERROR) {
        let why = t.error.as_deref().unwrap_or(t.status.as_str());
        let _ = write!(error, "; {}: {why}", t.address);
    }
    if failing.len() > NAMED_IN_ERROR {
        let _ = write!(error, "; and {} more", failing.len() - NAMED_IN_ERROR);
    }
    RunOutcome::failed(None, error).with_result(result)
}
