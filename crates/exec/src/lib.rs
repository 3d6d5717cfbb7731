//! Executors: what a run does. One trait, [`Executor`], one implementation per module
//! folder (`shell`, `http`, `record`, `probe`, and `workflow`, which runs one job of
//! a workflow run through the others), chosen from the job's
//! [`rota_core::ExecutorSpec`] by a `match` in [`executor_for`]. A job with a target
//! set runs through [`fanout`] instead, once per target; [`run_attempt`] picks.
//!
//! An executor gets a [`RunRequest`], writes what the run prints into an
//! [`OutputBuffer`] (bounded by the job's `max_output_bytes`, readable live while the
//! run goes on), watches a cancellation token, and answers a [`RunOutcome`]. It never
//! fails in any other way: whatever goes wrong (a program that does not exist, a
//! refused connection, an unwritable file) becomes a `failed` outcome whose `error`
//! says why.

#![warn(missing_docs)]

pub mod error;
pub mod fanout;
pub mod http;
pub mod ledger;
mod output;
pub mod probe;
pub mod prow;
pub mod record;
pub mod shell;
mod texts;
pub mod workflow;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rota_core::targets::Target;
use rota_core::{ExecutorSpec, Timestamp};
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

pub use error::ExecError;
pub use http::HttpExecutor;
pub use output::OutputBuffer;
pub use probe::{run_probe, ProbeExecutor};
pub use prow::ProwExecutor;
pub use record::RecordExecutor;
pub use rota_core::RunOutcome;
pub use shell::ShellExecutor;
pub use workflow::WorkflowExecutor;

/// Everything an executor needs to know about one attempt.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The execution this attempt belongs to (`ROTA_EXECUTION_ID`).
    pub execution_id: Ulid,
    /// Name of the job (`ROTA_JOB`).
    pub job: String,
    /// The instant the run is for (`ROTA_SCHEDULED_AT`).
    pub scheduled_at: Timestamp,
    /// 1 for the first attempt (`ROTA_ATTEMPT`).
    pub attempt: u32,
    /// Name of the node running it (`ROTA_NODE`).
    pub node: String,
    /// What to run; must be of the kind of the executor it is handed to.
    pub spec: ExecutorSpec,
    /// Kill the attempt after this long and answer `timed_out`.
    pub timeout: Option<Duration>,
    /// For a workflow job (`workflow_job` spec): where it works and what it gets.
    pub workflow: Option<WorkflowContext>,
    /// The targets of the job's set, as the replicated store holds them when the
    /// attempt starts: `None` when the job does not fan out (and for a probe whose
    /// set was not resolved), `Some` (possibly empty) when it does. For a probe,
    /// the set of its executor's `targets`.
    pub targets: Option<Vec<Target>>,
    /// With `targets` (not for a probe): at most this many targets run at once.
    pub parallelism: u32,
    /// Header values sent by whoever asked for the run now (the check endpoint),
    /// by header name; a probe passes on those its `forward_headers` name. Empty
    /// for scheduled runs.
    pub forward_headers: BTreeMap<String, String>,
    /// Where the run's records go (a prow run's builds, a probe's results), when
    /// its job names a sink that this node writes to.
    pub sink: Option<Arc<dyn RecordSink>>,
}

/// A sink a run sends records to without waiting (points beyond its buffer are
/// dropped and counted by the sink).
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    /// The sink's name, for output and logs.
    fn name(&self) -> &str;
    /// Queues `points`; answers how many were queued.
    fn send(&self, points: Vec<rota_sink::Point>) -> usize;
}

/// Where a workflow job's attempt works, and the artifacts of its needs.
#[derive(Debug, Clone)]
pub struct WorkflowContext {
    /// The run the job belongs to (`ROTA_RUN`).
    pub run: Ulid,
    /// A directory for this attempt, created by the executor (and its parents) and
    /// removed when the attempt ends: the working directory of every step and
    /// service without a `cwd`, and `ROTA_WORKSPACE`.
    pub workspace: std::path::PathBuf,
    /// Where this node keeps this run's artifacts: the files of artifact `N` go
    /// under `{artifacts_dir}/N/`, at their paths relative to the artifact.
    pub artifacts_dir: std::path::PathBuf,
    /// Where the needs' artifacts are put for the job (`ROTA_ARTIFACTS_DIR`): artifact
    /// `N`'s files under `{inputs_dir}/N/`. Created by the executor, removed with
    /// the workspace.
    pub inputs_dir: std::path::PathBuf,
    /// The needs' artifacts to fetch before the first step.
    pub inputs: Vec<ArtifactInput>,
    /// Headers of every artifact fetch: the cluster secret, which a node that
    /// requires API tokens accepts from its peers.
    pub fetch_headers: Vec<(String, String)>,
}

/// An artifact a workflow job receives: each of its files is fetched with
/// `GET {base_url}/{file.path}` and checked against its size and sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInput {
    /// The artifact's name.
    pub name: String,
    /// Where its files are served, without a trailing `/`.
    pub base_url: String,
    /// Its files as recorded.
    pub files: Vec<rota_core::workflow::ArtifactFile>,
}

/// One kind of run.
pub trait Executor: Send + Sync {
    /// Runs one attempt of `req` to its end, writing what it prints to `output`.
    ///
    /// The future stops the attempt early, with `timed_out` when `req.timeout` runs
    /// out and with `cancelled` when `cancel` fires; dropping it also stops the
    /// attempt (a shell run's processes are killed). It never closes `output`: the
    /// caller does, once it has taken the outcome.
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome>;
}

/// The executor for a spec.
pub fn executor_for(spec: &ExecutorSpec) -> Arc<dyn Executor> {
    match spec {
        ExecutorSpec::Shell(_) => Arc::new(ShellExecutor),
        ExecutorSpec::Http(_) => Arc::new(HttpExecutor),
        ExecutorSpec::Record(_) => Arc::new(RecordExecutor),
        ExecutorSpec::WorkflowJob(_) => Arc::new(WorkflowExecutor),
        ExecutorSpec::Probe(_) => Arc::new(ProbeExecutor),
        ExecutorSpec::Prow(_) => Arc::new(ProwExecutor),
    }
}

/// Runs one attempt of `req`: once per target through [`fanout`] when the request
/// carries targets and its executor is not a probe (a probe asks its targets
/// itself), else with the spec's own executor. What the dispatcher calls.
pub fn run_attempt(
    req: RunRequest,
    output: OutputBuffer,
    cancel: CancellationToken,
) -> BoxFuture<'static, RunOutcome> {
    match (&req.spec, &req.targets) {
        (ExecutorSpec::Probe(_), _) | (_, None) => executor_for(&req.spec).run(req, output, cancel),
        (_, Some(_)) => Box::pin(fanout::run_fan_out(req, output, cancel)),
    }
}

/// Why [`interruptible`] stopped a future before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    TimedOut(Duration),
    Cancelled,
}

impl Interrupted {
    pub(crate) fn outcome(self) -> RunOutcome {
        match self {
            Interrupted::TimedOut(after) => RunOutcome::timed_out(after),
            Interrupted::Cancelled => RunOutcome::cancelled(),
        }
    }
}

/// Runs `work` until it finishes, `timeout` runs out or `cancel` fires, whichever
/// comes first; a cancel that came before the start wins, so no work is begun.
pub(crate) async fn interruptible<F: Future>(
    work: F,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<F::Output, Interrupted> {
    let deadline = async {
        match timeout {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Interrupted::Cancelled),
        () = deadline => Err(Interrupted::TimedOut(timeout.unwrap_or_default())),
        done = work => Ok(done),
    }
}

/// A request for job `test-job`, attempt 1 on node `n1`, scheduled at
/// 2026-11-22T10:00:01Z.
#[cfg(test)]
pub(crate) fn test_request(spec: ExecutorSpec, timeout: Option<Duration>) -> RunRequest {
    use chrono::TimeZone;
    RunRequest {
        execution_id: Ulid::from_parts(1_700_000_000_000, 42),
        job: "test-job".into(),
        scheduled_at: chrono::Utc
            .with_ymd_and_hms(2026, 11, 22, 10, 0, 1)
            .single()
            .expect("valid test time"),
        attempt: 1,
        node: "n1".into(),
        spec,
        timeout,
        workflow: None,
        targets: None,
        parallelism: rota_core::job::DEFAULT_PARALLELISM,
        forward_headers: BTreeMap::new(),
        sink: None,
    }
}

#[cfg(test)]
mod tests {
    use rota_core::{HttpSpec, RecordSpec, ShellSpec};

    use super::*;

    #[tokio::test]
    async fn executor_for_picks_by_kind() {
        // Each executor refuses a spec of another kind, which tells them apart.
        let specs = [
            ExecutorSpec::Shell(ShellSpec {
                command: "true".into(),
                args: None,
                env: Default::default(),
                cwd: None,
            }),
            ExecutorSpec::Http(HttpSpec {
                method: "GET".into(),
                url: "http://127.0.0.1:1/".into(),
                headers: Default::default(),
                body: None,
                expect_status: vec![],
            }),
            ExecutorSpec::Record(RecordSpec {
                path: "/nonexistent".into(),
            }),
        ];
        for chosen in &specs {
            for handed in &specs {
                let req = test_request(handed.clone(), None);
                let cancel = CancellationToken::new();
                if chosen != handed {
                    let outcome = executor_for(chosen)
                        .run(req, OutputBuffer::new(10), cancel)
                        .await;
                    let expected = format!(
                        "the {} executor cannot run a {} spec",
                        chosen.type_name(),
                        handed.type_name()
                    );
                    assert_eq!(outcome, RunOutcome::failed(None, expected));
                }
            }
        }
    }

    #[tokio::test]
    async fn interruptible_prefers_an_earlier_cancel() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let got = interruptible(async { 1 }, None, &cancel).await;
        assert_eq!(got, Err(Interrupted::Cancelled));
    }

    #[tokio::test]
    async fn interruptible_times_out() {
        let cancel = CancellationToken::new();
        let got = interruptible(
            std::future::pending::<()>(),
            Some(Duration::from_millis(10)),
            &cancel,
        )
        .await;
        assert_eq!(got, Err(Interrupted::TimedOut(Duration::from_millis(10))));
    }

    #[tokio::test]
    async fn interruptible_finishes_work() {
        let cancel = CancellationToken::new();
        let got = interruptible(async { 7 }, Some(Duration::from_secs(60)), &cancel).await;
        assert_eq!(got, Ok(7));
        let got = interruptible(async { 8 }, Some(Duration::MAX), &cancel).await;
        assert_eq!(got, Ok(8));
    }
}
