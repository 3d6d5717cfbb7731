//! The `prow` executor: reads a Prow deck's job list (crate `rota-prow`), keeps
//! the builds its filters choose, prints them, and sends them to its sink as
//! `build` points. A deck that is slow, failing or answers something other than a
//! whole job list fails the run naming the URL; nothing of a partial page is sent.
//! One malformed job is skipped with a warning line, the others are kept.

use futures_util::future::BoxFuture;
use rota_core::ExecutorSpec;
use rota_prow::{build_point, deck_url, read_deck, Build, Filter};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::{interruptible, ExecError, Executor, OutputBuffer, RunOutcome, RunRequest};

/// Runs [`rota_core::prow::ProwSpec`]s with the process-wide HTTP client.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProwExecutor;

impl Executor for ProwExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            let ExecutorSpec::Prow(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "prow",
                    spec: req.spec.type_name(),
                });
            };
            let deck = match deck_url(&spec.url) {
                Ok(deck) => deck,
                Err(err) => return RunOutcome::failed(None, rota_core::error::chain(&err)),
            };
            let client = match crate::http::client() {
                Ok(client) => client,
                Err(err) => return ExecError::outcome(&err),
            };
            let filter = Filter {
                job_glob: spec.job.clone().or_else(|| deck.job.clone()),
                types: spec.types.clone(),
                states: spec.states.clone(),
            };
            let read = read_deck(client, &deck, spec.timeout.as_duration());
            let parsed = match interruptible(read, req.timeout, &cancel).await {
                Ok(Ok(parsed)) => parsed,
                Ok(Err(err)) => return RunOutcome::failed(None, rota_core::error::chain(&err)),
                Err(interrupted) => return interrupted.outcome(),
            };
            for skipped in &parsed.skipped {
                output.push(format!("warning: skipped {skipped}\n").as_bytes());
            }
            let builds = filter.apply(parsed.builds);
            for build in &builds {
                output.push(describe(build).as_bytes());
            }
            let mut summary = format!(
                "==> {} builds from {} ({} malformed skipped)",
                builds.len(),
                deck.prowjobs_url,
                parsed.skipped.len()
            );
            if let Some(sink) = &req.sink {
                let queued = sink.send(builds.iter().map(build_point).collect());
                summary.push_str(&format!("; {queued} points queued on sink {}", sink.name()));
            }
            output.push(format!("{summary}\n").as_bytes());
            debug!(job = %req.job, execution = %req.execution_id, deck = %deck.prowjobs_url,
                builds = builds.len(), skipped = parsed.skipped.len(), "prow deck read");
            RunOutcome::succeeded()
        })
    }
}

/// One line per build: state, job, build id, PR and duration.
fn describe(b: &Build) -> String {
    let pr = b
        .pull_request
        .map_or_else(String::new, |n| format!(" PR #{n}"));
    let duration = b
        .duration_s
        .map_or_else(|| "running".to_string(), |d| format!("{d:.0}s"));
    format!("{:<9} {} #{}{pr} {duration}\n", b.state, b.job, b.build_id)
}
