//! The `workflow_job` executor: one job of a workflow run, on this node.
//!
//! An attempt goes, in order:
//!
//! 1. creates the workspace and the inputs directory of its [`WorkflowContext`];
//! 2. fetches the artifacts of the job's needs into the inputs directory, checking
//!    each file's size and sha256;
//! 3. starts the services, each waited for until ready;
//! 4. runs the steps in order, all writing into the job's output: a shell step with
//!    [`crate::ShellExecutor`], in the workspace unless it names a `cwd`; an http or
//!    record step with its own executor. The first that does not succeed ends the
//!    job with its outcome, its error prefixed `step NAME: `;
//! 5. when every step succeeded, copies the job's artifacts out of the workspace and
//!    answers their records in the outcome;
//! 6. stops the services, last started first, and removes the workspace and the
//!    inputs directory, whatever happened before.
//!
//! A failure of the executor's own (an input that does not match its record, a
//! service never ready, a missing artifact) fails the job with a message naming
//! the artifact, service or step, also written to the output as a note.
//!
//! Every process (service or shell step) gets the server's environment, the job's
//! `env`, its own `env`, the `ROTA_*` variables of a shell run and `ROTA_RUN`,
//! `ROTA_WORKFLOW`, `ROTA_WORKSPACE` and `ROTA_ARTIFACTS_DIR`, later ones winning.
//! `${{ env.NAME }}` in the steps' and services' texts is substituted first (see
//! `env.rs`).
//!
//! The job's timeout covers all of it. On timeout or cancel, the running step's
//! future is dropped (which kills its process group) and the services are stopped
//! as after the steps. Dropping the attempt's future SIGKILLs the services' groups
//! and removes the directories on a blocking thread.
//!
//! The output interleaves the steps' output, the services' lines
//! (`[service NAME] ...`) and the executor's own notes (`==> step NAME`, each on a
//! line of its own).

mod artifacts;
mod env;
mod services;
#[cfg(test)]
mod tests;

use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};

use futures_util::future::BoxFuture;
use rota_core::workflow::{WorkflowJobSpec, TRIGGER_SUFFIX};
use rota_core::{ExecStatus, ExecutorSpec, ResourceUsage};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use self::env::{overlay, Vars};
use self::services::Services;
use crate::shell::run_vars;
use crate::{
    executor_for, interruptible, ExecError, Executor, OutputBuffer, RunOutcome, RunRequest,
    WorkflowContext,
};

/// Runs [`rota_core::workflow::WorkflowJobSpec`]s: the steps, services and
/// artifacts of one job of a workflow run.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowExecutor;

impl Executor for WorkflowExecutor {
    fn run(
        &self,
        req: RunRequest,
        output: OutputBuffer,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, RunOutcome> {
        Box::pin(async move {
            let ExecutorSpec::WorkflowJob(spec) = &req.spec else {
                return ExecError::outcome(&ExecError::SpecMismatch {
                    executor: "workflow_job",
                    spec: req.spec.type_name(),
                });
            };
            let ctx = match runnable(spec, req.workflow.as_ref()) {
                Ok(ctx) => ctx,
                Err(err) => return ExecError::outcome(&err),
            };
            // The steps' and services' own logs are within it too.
            let span = info_span!("workflow_job", job = %req.job,
                execution = %req.execution_id, attempt = req.attempt, run = %ctx.run);
            async {
                debug!("workflow job started");
                let outcome = run_attempt(&req, spec, ctx, &output, &cancel).await;
                debug!(
                    status = outcome.status.as_str(),
                    error = outcome.error.as_deref(),
                    artifacts = outcome.artifacts.len(),
                    "workflow job ended"
                );
                outcome
            }
            .instrument(span)
            .await
        })
    }
}

/// The context to run `spec` in, or why it cannot run.
fn runnable<'a>(
    spec: &WorkflowJobSpec,
    ctx: Option<&'a WorkflowContext>,
) -> Result<&'a WorkflowContext, ExecError> {
    if spec.job == TRIGGER_SUFFIX {
        return Err(ExecError::TriggerJob {
            workflow: spec.workflow.clone(),
        });
    }
    if spec.steps.is_empty() {
        return Err(ExecError::NoSteps);
    }
    ctx.ok_or(ExecError::WorkflowContextMissing)
}

/// Writes `==> {text}` on a line of its own.
fn note(output: &OutputBuffer, text: impl Display) {
    output.push_line(format!("==> {text}\n").as_bytes());
}

async fn run_attempt(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
    output: &OutputBuffer,
    cancel: &CancellationToken,
) -> RunOutcome {
    if cancel.is_cancelled() {
        return RunOutcome::cancelled();
    }
    let scratch = match Scratch::create(&[&ctx.workspace, &ctx.inputs_dir]).await {
        Ok(scratch) => scratch,
        Err(err) => return ExecError::outcome(&err),
    };
    // Declared after `scratch` so that it drops first: on an early drop the services
    // are killed before their workspace goes.
    let mut services = Services::new(output.clone());
    let work = run_job(req, spec, ctx, output, &mut services);
    let outcome = match interruptible(work, req.timeout, cancel).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            let outcome = ExecError::outcome(&err);
            note(output, outcome.error.as_deref().unwrap_or_default());
            outcome
        }
        Err(interrupted) => {
            let outcome = interrupted.outcome();
            note(output, outcome.error.as_deref().unwrap_or("cancelled"));
            outcome
        }
    };
    services.stop_all().await;
    scratch.remove(output).await;
    outcome
}

/// Inputs, services, steps and artifacts; the services are left running.
async fn run_job(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
    output: &OutputBuffer,
    services: &mut Services,
) -> Result<RunOutcome, ExecError> {
    artifacts::fetch_inputs(&ctx.inputs, &ctx.fetch_headers, &ctx.inputs_dir, output).await?;
    let rota = rota_vars(req, spec, ctx);

    for service in &spec.services {
        let in_service = |err| ExecError::Service {
            service: service.name.clone(),
            source: Box::new(err),
        };
        let service = env::substitute_service(service, &spec.env).map_err(in_service)?;
        let process_env = overlay(&overlay(&spec.env, &service.env), &rota);
        services
            .start(&service, &process_env, &ctx.workspace)
            .await?;
    }

    // The steps' processes, one after the other.
    let mut usage: Option<ResourceUsage> = None;
    for step in &spec.steps {
        note(output, format_args!("step {}", step.name));
        debug!(step = %step.name, "step started");
        let executor =
            env::substitute_step(&step.executor, &spec.env).map_err(|err| ExecError::Step {
                step: step.name.clone(),
                source: Box::new(err),
            })?;
        let executor = match executor {
            ExecutorSpec::Shell(mut shell) => {
                shell.env = overlay(&overlay(&spec.env, &shell.env), &rota);
                if shell.cwd.is_none() {
                    shell.cwd = Some(ctx.workspace.to_string_lossy().into_owned());
                }
                ExecutorSpec::Shell(shell)
            }
            // Validation keeps these out of workflows.
            ExecutorSpec::WorkflowJob(_) => {
                return Err(ExecError::Step {
                    step: step.name.clone(),
                    source: Box::new(ExecError::SpecMismatch {
                        executor: "workflow step",
                        spec: "workflow_job",
                    }),
                })
            }
            other => other,
        };
        // `shell` runs with `ShellExecutor`, `http` and `record` with theirs.
        let runner = executor_for(&executor);
        let step_req = RunRequest {
            execution_id: req.execution_id,
            job: req.job.clone(),
            scheduled_at: req.scheduled_at,
            attempt: req.attempt,
            node: req.node.clone(),
            spec: executor,
            // The job's timeout and cancel stop the step by dropping its future.
            timeout: None,
            workflow: None,
            // Validation keeps fan-out and probes out of workflows.
            targets: None,
            parallelism: rota_core::job::DEFAULT_PARALLELISM,
            forward_headers: Default::default(),
            sink: None,
        };
        let outcome = runner
            .run(step_req, output.clone(), CancellationToken::new())
            .await;
        usage = match (usage, outcome.usage) {
            (Some(before), Some(step)) => Some(before.then(step)),
            (before, step) => before.or(step),
        };
        if outcome.status != ExecStatus::Succeeded {
            let why = outcome
                .error
                .clone()
                .unwrap_or_else(|| outcome.status.as_str().to_string());
            note(output, format_args!("step {} failed: {why}", step.name));
            return Ok(RunOutcome {
                error: Some(format!("step {}: {why}", step.name)),
                artifacts: Vec::new(),
                usage,
                ..outcome
            });
        }
    }

    let artifacts = artifacts::keep(
        artifacts::Keep {
            specs: &spec.artifacts,
            workspace: &ctx.workspace,
            artifacts_dir: &ctx.artifacts_dir,
            job: &spec.job,
            node: &req.node,
        },
        output,
    )
    .await?;
    Ok(RunOutcome {
        artifacts,
        usage,
        ..RunOutcome::succeeded()
    })
}

/// The `ROTA_*` variables of every process of the job.
fn rota_vars(req: &RunRequest, spec: &WorkflowJobSpec, ctx: &WorkflowContext) -> Vars {
    let mut vars: Vars = run_vars(req)
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
    vars.insert("ROTA_RUN".into(), ctx.run.to_string());
    vars.insert("ROTA_WORKFLOW".into(), spec.workflow.clone());
    vars.insert(
        "ROTA_WORKSPACE".into(),
        ctx.workspace.to_string_lossy().into_owned(),
    );
    vars.insert(
        "ROTA_ARTIFACTS_DIR".into(),
        ctx.inputs_dir.to_string_lossy().into_owned(),
    );
    vars
}

/// The directories of an attempt: removed by [`Scratch::remove`], or on drop (on a
/// blocking thread when a runtime is there).
struct Scratch {
    dirs: Vec<PathBuf>,
}

impl Scratch {
    async fn create(dirs: &[&Path]) -> Result<Self, ExecError> {
        let mut scratch = Self { dirs: Vec::new() };
        for dir in dirs {
            // On an error the drop removes those already made.
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| ExecError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            scratch.dirs.push(dir.to_path_buf());
        }
        Ok(scratch)
    }

    async fn remove(mut self, output: &OutputBuffer) {
        for dir in std::mem::take(&mut self.dirs).into_iter().rev() {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    warn!(dir = %dir.display(), error = %err, "removing a workflow job's directory");
                    note(
                        output,
                        format_args!("could not remove {}: {err}", dir.display()),
                    );
                }
                _ => {}
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let dirs = std::mem::take(&mut self.dirs);
        if dirs.is_empty() {
            return;
        }
        let remove = move || {
            for dir in dirs.iter().rev() {
                let _ = std::fs::remove_dir_all(dir);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}
