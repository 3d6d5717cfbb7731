//! The `workflow_job` executor: one job of a workflow run, on this node.
//!
//! In order: create the attempt's workspace; fetch the needs' artifacts into
//! `ROTA_ARTIFACTS_DIR` (checked against their records); start the services and
//! wait until each is ready; run the steps one after the other (the first that
//! does not succeed ends the job, its error prefixed with the step's name); keep
//! the job's artifacts; stop the services; remove the workspace. The job's
//! `timeout` and a cancel cover all of it, and stop the services and the running
//! step's processes too.
//!
//! Every process gets the job's environment (the workflow's `env` overlaid with
//! the job's and the step's), `ROTA_RUN`, `ROTA_WORKFLOW`, `ROTA_WORKSPACE`,
//! `ROTA_ARTIFACTS_DIR` and the `ROTA_*` variables of every run; `${{ env.X }}` is
//! replaced in what the specs say (see `env.rs`).

mod artifacts;
mod env;
mod services;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use futures_util::future::BoxFuture;
use rota_core::workflow::{WorkflowJobSpec, TRIGGER_SUFFIX};
use rota_core::ExecutorSpec;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::{
    executor_for, interruptible, Executor, OutputBuffer, RunOutcome, RunRequest, WorkflowContext,
};

/// Runs [`WorkflowJobSpec`]s.
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
                return RunOutcome::failed(
                    None,
                    format!(
                        "the workflow_job executor cannot run a {} spec",
                        req.spec.type_name()
                    ),
                );
            };
            let spec = spec.as_ref().clone();
            if spec.job == TRIGGER_SUFFIX {
                return RunOutcome::failed(
                    None,
                    format!(
                        "the trigger of workflow {} does not run as a job",
                        spec.workflow
                    ),
                );
            }
            let Some(ctx) = req.workflow.clone() else {
                return RunOutcome::failed(None, "the workflow context of this job is missing");
            };
            if spec.steps.is_empty() {
                return RunOutcome::failed(None, "the job has no steps");
            }
            let work = run_job(&req, &spec, &ctx, &output, cancel.child_token());
            let outcome = match interruptible(work, req.timeout, &cancel).await {
                Ok(outcome) => outcome,
                Err(interrupted) => interrupted.outcome(),
            };
            // The services and the step were dropped with `work`; what is left is
            // the attempt's directories.
            for dir in [&ctx.workspace, &ctx.inputs_dir] {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            info!(job = %req.job, execution = %req.execution_id, attempt = req.attempt,
                status = outcome.status.as_str(), error = outcome.error.as_deref(),
                "workflow job ended");
            outcome
        })
    }
}

async fn run_job(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
    output: &OutputBuffer,
    cancel: CancellationToken,
) -> RunOutcome {
    for dir in [&ctx.workspace, &ctx.inputs_dir] {
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            return RunOutcome::failed(None, format!("creating {}: {e}", dir.display()));
        }
    }
    for input in &ctx.inputs {
        if let Err(e) = artifacts::fetch(input, &ctx.inputs_dir, output).await {
            return RunOutcome::failed(None, e);
        }
    }
    let env = process_env(req, spec, ctx);
    let mut started = Vec::with_capacity(spec.services.len());
    let mut outcome = None;
    for service in &spec.services {
        let service = match env::service(service, &spec.env) {
            Ok(s) => s,
            Err(e) => {
                outcome = Some(RunOutcome::failed(
                    None,
                    format!("service {}: {e}", service.name),
                ));
                break;
            }
        };
        match services::start(&service, &ctx.workspace, &env, output).await {
            Ok(s) => started.push(s),
            Err(e) => {
                outcome = Some(RunOutcome::failed(None, e));
                break;
            }
        }
    }
    let mut outcome = match outcome {
        Some(failed) => failed,
        None => run_steps(req, spec, ctx, &env, output, &cancel).await,
    };
    if outcome.status == rota_core::ExecStatus::Succeeded {
        outcome = keep_artifacts(req, spec, ctx, output, outcome).await;
    }
    for service in started.into_iter().rev() {
        service.stop(output).await;
    }
    outcome
}

/// The environment of every process of the job.
fn process_env(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
) -> BTreeMap<String, String> {
    let mut env = spec.env.clone();
    let path = |p: &Path| p.to_string_lossy().into_owned();
    env.insert("ROTA_JOB".into(), req.job.clone());
    env.insert("ROTA_EXECUTION_ID".into(), req.execution_id.to_string());
    env.insert("ROTA_ATTEMPT".into(), req.attempt.to_string());
    env.insert("ROTA_NODE".into(), req.node.clone());
    env.insert("ROTA_RUN".into(), ctx.run.to_string());
    env.insert("ROTA_WORKFLOW".into(), spec.workflow.clone());
    env.insert("ROTA_WORKSPACE".into(), path(&ctx.workspace));
    env.insert("ROTA_ARTIFACTS_DIR".into(), path(&ctx.inputs_dir));
    env
}

async fn run_steps(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
    env: &BTreeMap<String, String>,
    output: &OutputBuffer,
    cancel: &CancellationToken,
) -> RunOutcome {
    for step in &spec.steps {
        output.push(format!("==> step {}\n", step.name).as_bytes());
        let mut step_env = spec.env.clone();
        if let ExecutorSpec::Shell(shell) = &step.executor {
            step_env.extend(shell.env.clone());
        }
        let mut executor = match env::executor(&step.executor, &step_env) {
            Ok(e) => e,
            Err(e) => return RunOutcome::failed(None, format!("step {}: {e}", step.name)),
        };
        if let ExecutorSpec::Shell(shell) = &mut executor {
            let own = std::mem::take(&mut shell.env);
            shell.env = env.clone();
            shell.env.extend(own);
            if shell.cwd.is_none() {
                shell.cwd = Some(ctx.workspace.to_string_lossy().into_owned());
            }
        }
        let step_req = RunRequest {
            spec: executor,
            timeout: None,
            workflow: None,
            ..req.clone()
        };
        let runner = executor_for(&step_req.spec);
        let outcome = runner.run(step_req, output.clone(), cancel.clone()).await;
        if outcome.status != rota_core::ExecStatus::Succeeded {
            let error = outcome
                .error
                .clone()
                .unwrap_or_else(|| outcome.status.as_str().to_string());
            return RunOutcome {
                error: Some(format!("step {}: {error}", step.name)),
                ..outcome
            };
        }
    }
    RunOutcome::succeeded()
}

async fn keep_artifacts(
    req: &RunRequest,
    spec: &WorkflowJobSpec,
    ctx: &WorkflowContext,
    output: &OutputBuffer,
    mut outcome: RunOutcome,
) -> RunOutcome {
    for artifact in &spec.artifacts {
        let (artifact, job, node) = (artifact.clone(), spec.job.clone(), req.node.clone());
        let (workspace, dir, out) = (
            ctx.workspace.clone(),
            ctx.artifacts_dir.clone(),
            output.clone(),
        );
        let kept = tokio::task::spawn_blocking(move || {
            artifacts::keep(&artifact, &job, &node, &workspace, &dir, &out)
        })
        .await;
        match kept {
            Ok(Ok(record)) => outcome.artifacts.push(record),
            Ok(Err(e)) => return RunOutcome::failed(None, e),
            Err(e) => return RunOutcome::failed(None, format!("keeping artifacts: {e}")),
        }
    }
    outcome
}
