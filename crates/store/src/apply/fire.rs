//! Fires: the executions they create, the indexes that make each instant (and each
//! event, per job) fire once with the jobs' high-water marks, and history pruning.

use std::collections::BTreeMap;

use redb::ReadableTable;
use tracing::debug;
use ulid::Ulid;

use super::Apply;
use crate::codec::encode;
use crate::codec::{
    event_fired_key, fired_key, job_exec_key, job_range, split_job_exec_key, JOB_EXEC_SUFFIX,
};
use crate::tables::OUTPUT;
use crate::StoreError;
use rota_core::probe::{ResultStatus, RunResult};
use rota_core::{
    ExecStatus, Execution, Fire, FireOutcome, JobRecord, Response, Timestamp, Trigger,
};

impl Apply<'_, '_> {
    pub(super) fn fire(&mut self, fires: &[Fire]) -> Result<Response, StoreError> {
        // Jobs touched by this command, with whether their record changed (the
        // high-water mark), written back once at the end.
        let mut jobs: BTreeMap<String, (JobRecord, bool)> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(fires.len());
        for fire in fires {
            let refused = FireOutcome {
                id: fire.id,
                job: fire.job.clone(),
                created: false,
            };
            if !jobs.contains_key(&fire.job) {
                match self.t.get_job(&fire.job)? {
                    Some(job) => {
                        jobs.insert(fire.job.clone(), (job, false));
                    }
                    None => {
                        debug!(job = %fire.job, "fire for an unknown job refused");
                        outcomes.push(refused);
                        continue;
                    }
                }
            }
            let Some((job, dirty)) = jobs.get_mut(&fire.job) else {
                outcomes.push(refused);
                continue;
            };
            if let (Trigger::Event, Some(revision)) = (fire.trigger, fire.event_revision) {
                let key = event_fired_key(&fire.job, revision, fire.event_seq);
                if let Some(existing) = self.t.fired.r()?.get(key.as_slice())? {
                    outcomes.push(FireOutcome {
                        id: Ulid(existing.value()),
                        job: fire.job.clone(),
                        created: false,
                    });
                    continue;
                }
                if job.event_handled((revision, fire.event_seq)) {
                    debug!(job = %fire.job, event_revision = revision, event_seq = fire.event_seq, "event fire at or below the high-water mark refused");
                    outcomes.push(refused);
                    continue;
                }
            }
            let deduplicated = matches!(fire.trigger, Trigger::Schedule | Trigger::Catchup);
            let key = fired_key(&fire.job, fire.scheduled_at);
            if deduplicated {
                if let Some(existing) = self.t.fired.r()?.get(key.as_slice())? {
                    outcomes.push(FireOutcome {
                        id: Ulid(existing.value()),
                        job: fire.job.clone(),
                        created: false,
                    });
                    continue;
                }
                if job
                    .last_scheduled_at
                    .is_some_and(|mark| fire.scheduled_at <= mark)
                {
                    debug!(job = %fire.job, scheduled_at = %fire.scheduled_at, "fire below the high-water mark refused");
                    outcomes.push(refused);
                    continue;
                }
            }
            if self.t.executions.r()?.get(fire.id.0)?.is_some() {
                // The id is taken (a replayed manual run): never overwrite a run.
                outcomes.push(refused);
                continue;
            }
            let mut exec = new_execution(fire, job.spec.priority, self.at);
            exec.triggered_by = self.actor.clone();
            // A workflow's trigger does not run: its execution records the instant
            // and starts a run with the same id.
            let starts_run =
                super::workflow::is_trigger(&job.spec) && exec.status != ExecStatus::Skipped;
            if starts_run {
                exec.status = ExecStatus::Succeeded;
                exec.node = None;
                exec.started_at = Some(self.at);
                exec.finished_at = Some(self.at);
            }
            self.t.put_execution(&exec)?;
            if deduplicated {
                self.t.fired.w()?.insert(key.as_slice(), fire.id.0)?;
                job.last_scheduled_at = Some(fire.scheduled_at);
                *dirty = true;
            }
            if let (Trigger::Event, Some(revision)) = (fire.trigger, fire.event_revision) {
                let key = event_fired_key(&fire.job, revision, fire.event_seq);
                self.t.fired.w()?.insert(key.as_slice(), fire.id.0)?;
                job.last_event_revision = Some(revision);
                job.last_event_seq = Some(fire.event_seq);
                *dirty = true;
            }
            self.t
                .job_execs
                .w()?
                .insert(job_exec_key(&fire.job, fire.id).as_slice(), ())?;
            let count = self.t.job_count(&fire.job)?;
            self.t.set_job_count(&fire.job, count + 1)?;
            self.emit_execution(&exec);
            self.publish_created(&exec)?;
            if starts_run {
                self.trigger_fired(&exec)?;
            }
            outcomes.push(FireOutcome {
                id: fire.id,
                job: fire.job.clone(),
                created: true,
            });
        }
        let dynamic = if jobs.is_empty() {
            Default::default()
        } else {
            self.t.dynamic_config()?
        };
        for (name, (job, dirty)) in &jobs {
            if *dirty {
                // Bookkeeping only: no JobPut event and no new revision, since
                // the spec did not change; the Execution events carry the instants.
                self.t.put_job(job)?;
            }
            self.prune_history(name, dynamic.history_limit(job.spec.history_limit))?;
        }
        Ok(Response::Fired { outcomes })
    }

    /// A probe run on request, recorded as a finished execution (see
    /// `Command::RecordCheck`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_check(
        &mut self,
        id: Ulid,
        job: &str,
        node: &str,
        started_at: Timestamp,
        result: &RunResult,
        error: Option<&str>,
        output: Option<&str>,
        output_truncated: bool,
    ) -> Result<Response, StoreError> {
        let Some(record) = self.t.get_job(job)? else {
            return Ok(Response::NotFound {
                what: format!("job {job:?}"),
            });
        };
        let created = self.t.get_execution(id)?.is_none();
        if created {
            let synced = result.status == ResultStatus::Synced;
            let exec = Execution {
                id,
                job: job.to_string(),
                scheduled_at: started_at,
                started_at: Some(started_at),
                finished_at: Some(self.at.max(started_at)),
                attempt: 1,
                node: Some(node.to_string()),
                trigger: Trigger::Manual,
                status: if synced {
                    ExecStatus::Succeeded
                } else {
                    ExecStatus::Failed
                },
                exit_code: None,
                error: error.map(rota_core::workflow::truncate_error),
                output_truncated,
                priority: record.spec.priority,
                next_attempt_at: None,
                cancel_requested: false,
                attempts: Vec::new(),
                event_revision: None,
                event_seq: 0,
                run: None,
                result: Some(result.clone()),
                usage: None,
                triggered_by: None,
            };
            self.t.put_execution(&exec)?;
            if let Some(output) = output {
                self.t
                    .outputs
                    .w()?
                    .insert(id.0, encode(OUTPUT, &output)?.as_slice())?;
            }
            self.t
                .job_execs
                .w()?
                .insert(job_exec_key(job, id).as_slice(), ())?;
            let count = self.t.job_count(job)?;
            self.t.set_job_count(job, count + 1)?;
            self.emit_execution(&exec);
            self.publish_created(&exec)?;
            let limit = self
                .t
                .dynamic_config()?
                .history_limit(record.spec.history_limit);
            self.prune_history(job, limit)?;
        }
        Ok(Response::Fired {
            outcomes: vec![FireOutcome {
                id,
                job: job.to_string(),
                created,
            }],
        })
    }

    /// Deletes the oldest terminal executions of `job` beyond `limit`. Active ones
    /// are kept whatever their age: something is still running or waiting.
    pub(super) fn prune_history(&mut self, job: &str, limit: u32) -> Result<(), StoreError> {
        let count = self.t.job_count(job)?;
        let Some(mut excess) = count.checked_sub(u64::from(limit)).filter(|e| *e > 0) else {
            return Ok(());
        };
        let (start, end) = job_range(job, JOB_EXEC_SUFFIX);
        let mut victims = Vec::new();
        for row in self
            .t
            .job_execs
            .r()?
            .range(start.as_slice()..=end.as_slice())?
        {
            let (key, _) = row?;
            let (_, id) = split_job_exec_key(key.value())?;
            if self.t.active.r()?.get(id.0)?.is_none() {
                victims.push(id);
                excess -= 1;
                if excess == 0 {
                    break;
                }
            }
        }
        for id in &victims {
            self.delete_execution(*id)?;
        }
        if !victims.is_empty() {
            debug!(job, pruned = victims.len(), "history pruned");
        }
        Ok(())
    }

    pub(super) fn delete_execution(&mut self, id: Ulid) -> Result<(), StoreError> {
        let Some(exec) = self.t.get_execution(id)? else {
            return Ok(());
        };
        self.t.executions.w()?.remove(id.0)?;
        self.t.outputs.w()?.remove(id.0)?;
        self.t.active.w()?.remove(id.0)?;
        if self
            .t
            .job_execs
            .w()?
            .remove(job_exec_key(&exec.job, id).as_slice())?
            .is_some()
        {
            let count = self.t.job_count(&exec.job)?;
            self.t.set_job_count(&exec.job, count.saturating_sub(1))?;
        }
        let fired_row = match (exec.trigger, exec.event_revision) {
            (Trigger::Schedule | Trigger::Catchup, _) => {
                Some(fired_key(&exec.job, exec.scheduled_at))
            }
            (Trigger::Event, Some(revision)) => {
                Some(event_fired_key(&exec.job, revision, exec.event_seq))
            }
            _ => None,
        };
        if let Some(key) = fired_row {
            // Below the job's high-water mark anyway: the mark keeps refusing the
            // instant (or event) once its row is gone, which keeps this index bounded.
            let owned = self.t.fired.r()?.get(key.as_slice())?.map(|v| v.value()) == Some(id.0);
            if owned {
                self.t.fired.w()?.remove(key.as_slice())?;
            }
        }
        Ok(())
    }
}

fn new_execution(fire: &Fire, priority: i32, now: Timestamp) -> Execution {
    let mut exec = Execution {
        id: fire.id,
        job: fire.job.clone(),
        scheduled_at: fire.scheduled_at,
        started_at: None,
        finished_at: None,
        attempt: 1,
        node: None,
        trigger: fire.trigger,
        status: ExecStatus::Queued,
        exit_code: None,
        error: None,
        output_truncated: false,
        priority,
        next_attempt_at: None,
        cancel_requested: false,
        attempts: Vec::new(),
        event_revision: fire.event_revision,
        event_seq: fire.event_seq,
        run: None,
        result: None,
        usage: None,
        triggered_by: None,
    };
    if let Some(reason) = &fire.skip_reason {
        exec.status = ExecStatus::Skipped;
        exec.finished_at = Some(now);
        exec.error = Some(reason.clone());
    } else if let (Some(start), true) = (&fire.start, fire.ahead) {
        // Placed ahead of its instant: queued until its node reports the start.
        exec.node = Some(start.node.clone());
    } else if let Some(start) = &fire.start {
        exec.status = ExecStatus::Running;
        exec.node = Some(start.node.clone());
        exec.started_at = Some(start.at);
    }
    exec
}
