//! Workflows and their runs: storing a workflow with its internal jobs, starting
//! runs (by hand, or when the trigger job fires), and moving a run on each time
//! one of its executions changes. A run's progress is decided here, in the state
//! machine, so it is the same on every node and survives any leader change: the
//! executions of the next jobs are created in the same entry that ends their needs.
//!
//! A function that changes a run loads it from the table and writes it back before
//! it calls anything that may change it again (cancelling an execution moves its run
//! on), so no stale copy is ever written over a newer one.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;
use redb::ReadableTable;
use serde_json::json;
use tracing::debug;
use ulid::Ulid;

use super::Apply;
use crate::codec::job_exec_key;
use crate::StoreError;
use rota_core::event::types;
use rota_core::workflow::{
    self, final_status, job_status, ready_jobs, truncate_error, ArtifactRecord, Concurrency,
    RunJob, RunStatus, WorkflowRecord, WorkflowRun, WorkflowSpec,
};
use rota_core::{EventKind, ExecStatus, Execution, JobSpec, Response, Schedule, Trigger};

impl Apply<'_, '_> {
    pub(super) fn put_workflow(&mut self, spec: &WorkflowSpec) -> Result<Response, StoreError> {
        let previous = self.t.get_workflow(&spec.name)?;
        let created = previous.is_none();
        let record = WorkflowRecord {
            spec: spec.clone(),
            created_at: previous.as_ref().map_or(self.at, |p| p.created_at),
            updated_at: self.at,
            revision: self.index,
        };
        let jobs = spec.internal_jobs();
        let mut removed = false;
        if let Some(previous) = &previous {
            for old in previous.spec.internal_jobs() {
                if !jobs.iter().any(|j| j.name == old.name) {
                    self.delete_job(&old.name, None)?;
                    removed = true;
                }
            }
        }
        for job in &jobs {
            // An unchanged internal job keeps its revision, so that a trigger's
            // schedule does not restart from this entry.
            let unchanged = self.t.get_job(&job.name)?.is_some_and(|j| j.spec == *job);
            if !unchanged {
                self.put_job(job)?;
            }
        }
        self.t.workflows.w()?.insert(
            spec.name.as_str(),
            crate::codec::encode(crate::tables::WORKFLOW, &record)?.as_slice(),
        )?;
        if removed {
            // Active runs do not wait for jobs that no longer exist.
            for id in self.active_runs(&spec.name)? {
                self.drop_removed_jobs(id, spec)?;
            }
        }
        let event = if created {
            types::WORKFLOW_CREATED
        } else {
            types::WORKFLOW_UPDATED
        };
        let data = json!({"workflow": spec.name, "revision": self.index});
        self.publish(event, &spec.name, data)?;
        Ok(Response::WorkflowPut {
            created,
            workflow: Box::new(record),
        })
    }

    /// Ends the jobs of run `id` that `spec` no longer has (`skipped`, with why;
    /// their executions went with their internal jobs), and moves the run on.
    fn drop_removed_jobs(&mut self, id: Ulid, spec: &WorkflowSpec) -> Result<(), StoreError> {
        let Some(mut run) = self.t.get_run(id)? else {
            return Ok(());
        };
        let mut changed = false;
        for (name, job) in run.jobs.iter_mut() {
            if !spec.jobs.contains_key(name) && !job.status.is_terminal() {
                job.status = RunStatus::Skipped;
                job.error = Some(format!("skipped: job {name} was removed from the workflow"));
                changed = true;
            }
        }
        if changed {
            self.t.put_run(&run)?;
            self.advance_run(id)?;
        }
        Ok(())
    }

    pub(super) fn delete_workflow(&mut self, name: &str) -> Result<Response, StoreError> {
        let Some(record) = self.t.get_workflow(name)? else {
            return Ok(Response::WorkflowDeleted { existed: false });
        };
        for job in record.spec.internal_jobs() {
            self.delete_job(&job.name, None)?;
        }
        let mut runs = Vec::new();
        for row in self
            .t
            .workflow_runs
            .r()?
            .range((name, 0u128)..=(name, u128::MAX))?
        {
            let (key, _) = row?;
            runs.push(key.value().1);
        }
        for id in &runs {
            self.t.runs.w()?.remove(*id)?;
            self.t.workflow_runs.w()?.remove((name, *id))?;
        }
        self.t.workflows.w()?.remove(name)?;
        debug!(workflow = name, runs = runs.len(), "workflow deleted");
        self.publish(types::WORKFLOW_DELETED, name, json!({ "workflow": name }))?;
        Ok(Response::WorkflowDeleted { existed: true })
    }

    /// A run started by hand (`POST /v1/workflows/{name}/run`).
    pub(super) fn run_workflow(
        &mut self,
        id: Ulid,
        workflow: &str,
    ) -> Result<Response, StoreError> {
        if let Some(existing) = self.t.get_run(id)? {
            return Ok(Response::Run {
                run: Box::new(existing),
            });
        }
        let Some(record) = self.t.get_workflow(workflow)? else {
            return Ok(Response::NotFound {
                what: format!("workflow {workflow:?}"),
            });
        };
        let run = self.create_run(&record, id, Trigger::Manual, None)?;
        Ok(Response::Run { run: Box::new(run) })
    }

    /// The trigger job of a workflow fired: its execution (`exec`, already stored as
    /// succeeded) starts a run with the same id.
    pub(super) fn trigger_fired(&mut self, exec: &Execution) -> Result<(), StoreError> {
        let Some((workflow, _)) = workflow::split_job_name(&exec.job) else {
            return Ok(());
        };
        let Some(record) = self.t.get_workflow(workflow)? else {
            debug!(job = %exec.job, "trigger of an unknown workflow fired");
            return Ok(());
        };
        if self.t.get_run(exec.id)?.is_none() {
            self.create_run(&record, exec.id, exec.trigger, exec.event_revision)?;
        }
        Ok(())
    }

    fn create_run(
        &mut self,
        record: &WorkflowRecord,
        id: Ulid,
        trigger: Trigger,
        event_revision: Option<u64>,
    ) -> Result<WorkflowRun, StoreError> {
        let spec = &record.spec;
        let active = self.active_runs(&spec.name)?;
        let mut run = WorkflowRun {
            id,
            workflow: spec.name.clone(),
            workflow_revision: record.revision,
            status: RunStatus::Queued,
            trigger,
            created_at: self.at,
            started_at: None,
            finished_at: None,
            deadline: None,
            event_revision,
            ending: None,
            error: None,
            jobs: spec
                .jobs
                .keys()
                .map(|name| {
                    let job = RunJob {
                        status: RunStatus::Queued,
                        executions: Vec::new(),
                        error: None,
                    };
                    (name.clone(), job)
                })
                .collect(),
            artifacts: Vec::new(),
        };
        let start_now = match (spec.concurrency, active.is_empty()) {
            (_, true) => true,
            (Concurrency::Queue, false) => false,
            (Concurrency::Skip, false) => {
                run.status = RunStatus::Skipped;
                run.finished_at = Some(self.at);
                run.error = Some(format!(
                    "skipped: run {} is still active (concurrency: skip)",
                    active[0]
                ));
                for job in run.jobs.values_mut() {
                    job.status = RunStatus::Skipped;
                }
                false
            }
            (Concurrency::CancelRunning, false) => {
                for other in &active {
                    let reason = format!("cancelled by run {id} (concurrency: cancel_running)");
                    self.cancel_run(*other, RunStatus::Cancelled, Some(&reason))?;
                }
                true
            }
        };
        self.t.put_run(&run)?;
        self.prune_runs(&spec.name, spec.history_limit)?;
        if run.status == RunStatus::Skipped {
            self.publish_run(types::WORKFLOW_RUN_FINISHED, &run)?;
        }
        if start_now {
            self.start_run(id)?;
        }
        Ok(self.t.get_run(id)?.unwrap_or(run))
    }

    /// Ids of the runs of `workflow` that have not ended, oldest first.
    fn active_runs(&self, workflow: &str) -> Result<Vec<Ulid>, StoreError> {
        let mut out = Vec::new();
        for row in self
            .t
            .workflow_runs
            .r()?
            .range((workflow, 0u128)..=(workflow, u128::MAX))?
        {
            let (key, _) = row?;
            let id = Ulid(key.value().1);
            if let Some(run) = self.t.get_run(id)? {
                if !run.status.is_terminal() {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Forgets the oldest ended runs of `workflow` beyond `limit`.
    fn prune_runs(&mut self, workflow: &str, limit: u32) -> Result<(), StoreError> {
        let mut ids = Vec::new();
        for row in self
            .t
            .workflow_runs
            .r()?
            .range((workflow, 0u128)..=(workflow, u128::MAX))?
        {
            ids.push(row?.0.value().1);
        }
        let Some(mut excess) = ids.len().checked_sub(limit as usize).filter(|e| *e > 0) else {
            return Ok(());
        };
        for id in ids {
            if excess == 0 {
                break;
            }
            let ended = self
                .t
                .get_run(Ulid(id))?
                .is_none_or(|r| r.status.is_terminal());
            if ended {
                self.t.runs.w()?.remove(id)?;
                self.t.workflow_runs.w()?.remove((workflow, id))?;
                excess -= 1;
            }
        }
        Ok(())
    }

    fn start_run(&mut self, id: Ulid) -> Result<(), StoreError> {
        let Some(mut run) = self.t.get_run(id)? else {
            return Ok(());
        };
        let spec = self.t.get_workflow(&run.workflow)?.map(|r| r.spec);
        run.status = RunStatus::Running;
        run.started_at = Some(self.at);
        run.deadline = spec
            .as_ref()
            .and_then(|s| s.timeout)
            .and_then(|t| TimeDelta::from_std(t.0).ok())
            .map(|t| self.at + t);
        self.t.put_run(&run)?;
        self.publish_run(types::WORKFLOW_RUN_STARTED, &run)?;
        self.advance_run(id)
    }

    /// Starts the jobs whose needs have ended, skips those whose condition failed,
    /// and ends the run once every job has ended.
    fn advance_run(&mut self, id: Ulid) -> Result<(), StoreError> {
        let Some(mut run) = self.t.get_run(id)? else {
            return Ok(());
        };
        if run.status != RunStatus::Running {
            return Ok(());
        }
        let Some(record) = self.t.get_workflow(&run.workflow)? else {
            return Ok(());
        };
        let spec = record.spec;
        loop {
            let (start, skip) = if run.ending.is_some() {
                // Ending: nothing new starts; what has not started never will.
                let waiting: Vec<(String, String)> = run
                    .jobs
                    .iter()
                    .filter(|(_, j)| j.status == RunStatus::Queued && j.executions.is_empty())
                    .map(|(name, _)| (name.clone(), String::new()))
                    .collect();
                (Vec::new(), waiting)
            } else {
                ready_jobs(&spec, &run)
            };
            if start.is_empty() && skip.is_empty() {
                break;
            }
            for (name, why) in skip {
                if let Some(job) = run.jobs.get_mut(&name) {
                    if run.ending.is_some() {
                        job.status = RunStatus::Cancelled;
                        job.error = run.error.clone();
                    } else {
                        job.status = RunStatus::Skipped;
                        job.error = Some(why);
                    }
                }
            }
            for name in start {
                let exec = self.create_job_execution(&run, &name, &spec)?;
                if let Some(job) = run.jobs.get_mut(&name) {
                    job.executions.push(exec);
                }
            }
        }
        if run.jobs.values().all(|j| j.status.is_terminal()) {
            run.status = final_status(&run);
            run.finished_at = Some(self.at);
            if run.error.is_none() && run.status == RunStatus::Failed {
                let failed: Vec<String> = run
                    .jobs
                    .iter()
                    .filter(|(_, j)| matches!(j.status, RunStatus::Failed | RunStatus::TimedOut))
                    .map(|(name, j)| format!("{name} {}", j.status.as_str()))
                    .collect();
                run.error = Some(truncate_error(&format!(
                    "jobs did not succeed: {}",
                    failed.join(", ")
                )));
            }
            self.t.put_run(&run)?;
            self.publish_run(types::WORKFLOW_RUN_FINISHED, &run)?;
            debug!(run = %run.id, workflow = %run.workflow, status = run.status.as_str(), "workflow run ended");
            // The oldest queued run of the workflow goes next.
            self.start_next_queued(&run.workflow)?;
        } else {
            self.t.put_run(&run)?;
        }
        Ok(())
    }

    /// Starts the oldest queued run of `workflow` when none of its runs is running.
    fn start_next_queued(&mut self, workflow: &str) -> Result<(), StoreError> {
        let mut oldest_queued = None;
        for id in self.active_runs(workflow)? {
            match self.t.get_run(id)?.map(|r| r.status) {
                Some(RunStatus::Running) => return Ok(()),
                Some(RunStatus::Queued) if oldest_queued.is_none() => oldest_queued = Some(id),
                _ => {}
            }
        }
        match oldest_queued {
            Some(id) => self.start_run(id),
            None => Ok(()),
        }
    }

    /// Creates the queued execution of workflow job `name` in `run`; its id is made
    /// from the run, the job and the entry (no randomness in apply).
    fn create_job_execution(
        &mut self,
        run: &WorkflowRun,
        name: &str,
        spec: &WorkflowSpec,
    ) -> Result<Ulid, StoreError> {
        let job_name = workflow::job_name(&run.workflow, name);
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes().chain(self.index.to_be_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let random = (run.id.random() ^ u128::from(hash)) & ((1u128 << 80) - 1);
        let millis = u64::try_from(self.at.timestamp_millis()).unwrap_or(0);
        let id = Ulid::from_parts(millis, random);
        let exec = Execution {
            id,
            job: job_name.clone(),
            scheduled_at: self.at,
            started_at: None,
            finished_at: None,
            attempt: 1,
            node: None,
            trigger: Trigger::Workflow,
            status: ExecStatus::Queued,
            exit_code: None,
            error: None,
            output_truncated: false,
            priority: 0,
            next_attempt_at: None,
            cancel_requested: false,
            attempts: Vec::new(),
            event_revision: None,
            event_seq: 0,
            run: Some(run.id),
            result: None,
            usage: None,
            triggered_by: None,
        };
        self.t.put_execution(&exec)?;
        self.t
            .job_execs
            .w()?
            .insert(job_exec_key(&job_name, id).as_slice(), ())?;
        let count = self.t.job_count(&job_name)?;
        self.t.set_job_count(&job_name, count + 1)?;
        self.emit_execution(&exec);
        self.publish_created(&exec)?;
        self.prune_history(&job_name, spec.history_limit)?;
        Ok(id)
    }

    /// An execution of a run changed: its job's status follows, and a job that
    /// ended moves the run on. `artifacts` are those its last attempt kept.
    pub(super) fn run_execution_changed(
        &mut self,
        exec: &Execution,
        artifacts: &[ArtifactRecord],
    ) -> Result<(), StoreError> {
        let Some(id) = exec.run else {
            return Ok(());
        };
        let Some(mut run) = self.t.get_run(id)? else {
            return Ok(());
        };
        let Some((_, name)) = workflow::split_job_name(&exec.job) else {
            return Ok(());
        };
        let Some(job) = run.jobs.get_mut(name) else {
            return Ok(());
        };
        if job.status.is_terminal() {
            return Ok(());
        }
        job.status = job_status(exec.status);
        if exec.status.is_terminal() {
            job.error = exec.error.as_deref().map(truncate_error);
            if exec.status == ExecStatus::Succeeded {
                run.artifacts.extend(artifacts.iter().cloned());
            }
        }
        let ended = exec.status.is_terminal();
        self.t.put_run(&run)?;
        if ended {
            self.advance_run(id)?;
        }
        Ok(())
    }

    /// Ends a run: its waiting jobs are cancelled at once, its running ones asked to
    /// stop; it ends with `status` once they have.
    pub(super) fn cancel_run(
        &mut self,
        id: Ulid,
        status: RunStatus,
        reason: Option<&str>,
    ) -> Result<Response, StoreError> {
        let Some(mut run) = self.t.get_run(id)? else {
            return Ok(Response::NotFound {
                what: format!("run {id}"),
            });
        };
        let status = if status == RunStatus::TimedOut {
            RunStatus::TimedOut
        } else {
            RunStatus::Cancelled
        };
        match run.status {
            RunStatus::Queued => {
                run.status = status;
                run.finished_at = Some(self.at);
                run.error = reason.map(truncate_error);
                for job in run.jobs.values_mut() {
                    job.status = RunStatus::Cancelled;
                }
                self.t.put_run(&run)?;
                self.publish_run(types::WORKFLOW_RUN_FINISHED, &run)?;
            }
            RunStatus::Running if run.ending.is_none() => {
                run.ending = Some(status);
                run.error = Some(truncate_error(reason.unwrap_or(match status {
                    RunStatus::TimedOut => "the run timed out",
                    _ => "cancelled",
                })));
                let active: Vec<Ulid> = run
                    .jobs
                    .values()
                    .filter(|j| !j.status.is_terminal())
                    .filter_map(|j| j.executions.last().copied())
                    .collect();
                self.t.put_run(&run)?;
                for exec in active {
                    self.cancel(exec)?;
                }
                self.advance_run(id)?;
            }
            _ => {}
        }
        let run = self.t.get_run(id)?.unwrap_or(run);
        Ok(Response::Run { run: Box::new(run) })
    }

    fn publish_run(&mut self, event_type: &str, run: &WorkflowRun) -> Result<(), StoreError> {
        let jobs: BTreeMap<&str, &str> = run
            .jobs
            .iter()
            .map(|(name, j)| (name.as_str(), j.status.as_str()))
            .collect();
        let mut data = json!({
            "workflow": run.workflow,
            "run": run.id,
            "status": run.status,
            "trigger": run.trigger,
            "jobs": jobs,
        });
        if event_type == types::WORKFLOW_RUN_FINISHED {
            data["finished_at"] = json!(run.finished_at);
            data["error"] = json!(run.error);
        }
        self.emit(EventKind::Run(Arc::new(run.clone())));
        self.publish(event_type, &run.id.to_string(), data)
    }
}

/// Whether `job` is a workflow's trigger job.
pub(super) fn is_trigger(job: &JobSpec) -> bool {
    matches!(&job.executor, rota_core::ExecutorSpec::WorkflowJob(w) if w.job == workflow::TRIGGER_SUFFIX)
        && !matches!(job.schedule, Schedule::At(_) | Schedule::After(_))
}
