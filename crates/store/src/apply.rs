//! The semantics of every [`Command`]: how one committed request changes the tables.
//!
//! Everything here is a function of the tables, the log index and the request alone
//! (`ClientRequest.at` is "now"; ids come in the commands), so every replica that
//! applies the same log ends with the same bytes. Changes are collected as
//! [`StoreEvent`]s and published by the caller once the transaction has committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::TimeDelta;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use ulid::Ulid;

use crate::codec::{decode, encode, job_range, split_job_exec_key, FIRED_SUFFIX, JOB_EXEC_SUFFIX};
use crate::tables::{Tables, OUTPUT, SESSION};
use crate::StoreError;
use rota_core::event::types;
use rota_core::execution::NODE_RESTARTED;
use rota_core::workflow::truncate_error;
use rota_core::{
    AttemptRecord, ClientRequest, Command, EventKind, ExecStatus, Execution, Finish, FireOutcome,
    JobRecord, JobSpec, KvEntry, NodeRecord, Response, Schedule, Start, StoreEvent, Timestamp,
};

/// Sessions idle for longer than this (by the requests' own clock) are forgotten.
pub(crate) const SESSION_TTL: TimeDelta = TimeDelta::hours(24);
/// Expired sessions are swept when the log index is a multiple of this: a rule every
/// replica evaluates the same way, unlike a timer.
pub(crate) const SESSION_SWEEP_EVERY: u64 = 1024;

/// What the store remembers of a client: its last sequence number and the answer it
/// got, so that a retry is answered without applying twice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub last_seq: u64,
    pub last_at: Timestamp,
    pub response: Response,
    /// The API token that opened the session: only it may continue the session
    /// (and read its answers back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

pub use members::Member;
pub(crate) use members::{apply_membership, set_clock};

/// Applies one client request at log index `index`; `event_retention` is the
/// number of public events the log keeps at least (see [`crate::events`]).
pub(crate) fn apply_request(
    tables: &mut Tables<'_>,
    index: u64,
    req: &ClientRequest,
    events: &mut Vec<StoreEvent>,
    event_retention: crate::EventRetention,
) -> Result<Response, StoreError> {
    let mut apply = Apply {
        t: tables,
        index,
        at: req.at,
        events,
        event_seq: 0,
        fenced_out: false,
        actor: None,
    };
    let response = apply.request(req)?;
    if index.is_multiple_of(SESSION_SWEEP_EVERY) {
        expire_sessions(apply.t, req.at)?;
    }
    if index.is_multiple_of(crate::events::SWEEP_EVERY) {
        // A dynamic value (replicated, so the same on every member) wins over the
        // node's static one.
        let dynamic = apply.t.dynamic_config()?;
        let retention = crate::EventRetention {
            events: dynamic.watch_retention.unwrap_or(event_retention.events),
            age: dynamic
                .watch_retention_age
                .and_then(|age| TimeDelta::from_std(age).ok())
                .unwrap_or(event_retention.age),
        };
        crate::events::sweep(apply.t, req.at, retention)?;
    }
    Ok(response)
}

impl Apply<'_, '_> {
    /// One client request: its command, answered from the session table when it
    /// is a retry of the client's last one.
    fn request(&mut self, req: &ClientRequest) -> Result<Response, StoreError> {
        let outer_at = std::mem::replace(&mut self.at, req.at);
        let response = self.session_request(req);
        self.at = outer_at;
        response
    }

    fn session_request(&mut self, req: &ClientRequest) -> Result<Response, StoreError> {
        let apply = self;
        let response = match &req.session {
            None => apply.command(&req.command)?,
            Some(session) => {
                let previous: Option<SessionRecord> = apply
                    .t
                    .sessions
                    .r()?
                    .get(session.client_id.as_str())?
                    .map(|v| decode(SESSION, v.value()))
                    .transpose()?;
                let token = match &req.command {
                    Command::Attributed { token, .. } => Some(token.clone()),
                    _ => None,
                };
                match previous {
                    Some(prev) if prev.token != token => Response::SessionNotYours {
                        client_id: session.client_id.clone(),
                    },
                    Some(prev) if session.seq == prev.last_seq => {
                        debug!(client = %session.client_id, seq = session.seq, "session retry answered from the session table");
                        prev.response
                    }
                    Some(prev) if session.seq < prev.last_seq => Response::StaleSession {
                        client_id: session.client_id.clone(),
                        last_seq: prev.last_seq,
                    },
                    _ => {
                        let response = apply.command(&req.command)?;
                        let record = SessionRecord {
                            last_seq: session.seq,
                            last_at: req.at,
                            response: response.clone(),
                            token,
                        };
                        apply.t.sessions.w()?.insert(
                            session.client_id.as_str(),
                            encode(SESSION, &record)?.as_slice(),
                        )?;
                        response
                    }
                }
            }
        };
        Ok(response)
    }
}

fn expire_sessions(t: &mut Tables<'_>, now: Timestamp) -> Result<(), StoreError> {
    let mut expired = Vec::new();
    for row in t.sessions.r()?.iter()? {
        let (client, value) = row?;
        let record: SessionRecord = decode(SESSION, value.value())?;
        if record.last_at + SESSION_TTL < now {
            expired.push(client.value().to_string());
        }
    }
    for client in &expired {
        t.sessions.w()?.remove(client.as_str())?;
    }
    if !expired.is_empty() {
        debug!(count = expired.len(), "expired idle client sessions");
    }
    Ok(())
}

struct Apply<'a, 't> {
    t: &'a mut Tables<'t>,
    index: u64,
    at: Timestamp,
    events: &'a mut Vec<StoreEvent>,
    /// The sequence number of the next public event of this entry (its key in the
    /// event log is `(index, event_seq)`).
    event_seq: u32,
    /// Inside a `Fenced` command of a superseded scheduler epoch: fires are refused
    /// and starts ignored.
    fenced_out: bool,
    /// Inside an `Attributed` command: the API token that made the request.
    actor: Option<String>,
}

fn job_not_found(name: &str) -> Response {
    Response::NotFound {
        what: format!("job {name:?}"),
    }
}

impl Apply<'_, '_> {
    fn emit(&mut self, kind: EventKind) {
        self.events.push(StoreEvent {
            revision: self.index,
            kind,
        });
    }

    fn emit_execution(&mut self, exec: &Execution) {
        self.emit(EventKind::Execution(Arc::new(exec.clone())));
    }

    fn command(&mut self, cmd: &Command) -> Result<Response, StoreError> {
        match cmd {
            Command::PutJob { spec } => self.put_job(spec),
            Command::DeleteJob { name, if_revision } => self.delete_job(name, *if_revision),
            Command::SetPaused { name, paused } => self.set_paused(name, *paused),
            Command::PruneJobs { apply_set, keep } => self.prune_jobs(apply_set, keep),
            Command::Fire { fires } if self.fenced_out => {
                debug!(
                    fires = fires.len(),
                    "fires of a superseded scheduler refused"
                );
                Ok(Response::Fired {
                    outcomes: fires
                        .iter()
                        .map(|f| FireOutcome {
                            id: f.id,
                            job: f.job.clone(),
                            created: false,
                        })
                        .collect(),
                })
            }
            Command::Fire { fires } => self.fire(fires),
            Command::Start { starts } if self.fenced_out => {
                debug!(
                    starts = starts.len(),
                    "starts of a superseded scheduler ignored"
                );
                Ok(Response::Ok)
            }
            Command::Start { starts } => self.start(starts),
            Command::Finish { finishes } => self.finish(finishes),
            Command::Cancel { id } => self.cancel(*id),
            Command::KvPut {
                key,
                value,
                if_revision,
            } => self.kv_put(key, value, *if_revision),
            Command::KvDelete { key, if_revision } => self.kv_delete(key, *if_revision),
            Command::Batch { commands } => self.batch(commands),
            Command::Requests { requests } => {
                let responses = requests
                    .iter()
                    .map(|r| self.request(r))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Response::Batch { responses })
            }
            Command::ClaimScheduler { node, term } => {
                let current = self.t.scheduler_epoch()?;
                if *term > current {
                    self.t.set_scheduler_epoch(*term)?;
                    debug!(node = %node, epoch = term, "scheduler claimed");
                } else if *term < current {
                    debug!(node = %node, term, current, "stale scheduler claim ignored");
                }
                Ok(Response::SchedulerClaimed {
                    epoch: current.max(*term),
                })
            }
            Command::Attributed { token, command } => {
                let outer = self.actor.replace(token.clone());
                let response = self.command(command);
                self.actor = outer;
                response
            }
            Command::Fenced { epoch, commands } => {
                let outer = self.fenced_out;
                self.fenced_out |= *epoch != self.t.scheduler_epoch()?;
                let response = self.batch(commands);
                self.fenced_out = outer;
                response
            }
            Command::Heartbeat { node } => {
                self.emit(EventKind::Heartbeat {
                    node: node.clone(),
                    at: self.at,
                });
                Ok(Response::Ok)
            }
            Command::PublishEvent { event_type, data } => {
                self.publish(event_type, event_type, data.clone())?;
                Ok(Response::Published {
                    revision: self.index,
                })
            }
            Command::PutWebhook { name, spec } => self.put_webhook(name, spec),
            Command::DeleteWebhook { name } => self.delete_webhook(name),
            Command::RecordDeliveries { deliveries, cursor } => {
                self.record_deliveries(deliveries, *cursor)
            }
            Command::PutWorkflow { spec } => self.put_workflow(spec),
            Command::DeleteWorkflow { name } => self.delete_workflow(name),
            Command::RunWorkflow { id, workflow } => self.run_workflow(*id, workflow),
            Command::CancelRun { id, status, reason } => {
                self.cancel_run(*id, *status, reason.as_deref())
            }
            Command::PutTargetSet { spec } => self.put_target_set(spec),
            Command::DeleteTargetSet { name } => self.delete_target_set(name),
            Command::RecordTargets {
                name,
                generation,
                state,
            } => self.record_targets(name, *generation, state),
            Command::PutSink { name, spec } => self.put_sink(name, spec),
            Command::SetConfig { key, value } => self.set_config(key, value),
            Command::PutToken {
                record,
                only_if_none,
            } => self.put_token(record, *only_if_none),
            Command::RevokeToken { name } => self.revoke_token(name),
            Command::ResetConfig { key } => self.reset_config(key.as_deref()),
            Command::RecordCheck {
                id,
                job,
                node,
                started_at,
                result,
                error,
                output,
                output_truncated,
            } => self.record_check(
                *id,
                job,
                node,
                *started_at,
                result,
                error.as_deref(),
                output.as_deref(),
                *output_truncated,
            ),
            Command::DeleteSink { name } => self.delete_sink(name),
            Command::RegisterNode {
                node,
                incarnation,
                tags,
                max_running,
                url,
                fire_ahead,
            } => self.register_node(
                node,
                *incarnation,
                tags,
                *max_running,
                url.as_deref(),
                *fire_ahead,
            ),
        }
    }

    /// Records a worker; a new incarnation loses the attempts of the earlier one.
    fn register_node(
        &mut self,
        node: &str,
        incarnation: Ulid,
        tags: &BTreeMap<String, String>,
        max_running: u32,
        url: Option<&str>,
        fire_ahead: bool,
    ) -> Result<Response, StoreError> {
        let restarted = self
            .t
            .get_node(node)?
            .is_none_or(|previous| previous.incarnation != incarnation);
        let mut lost = Vec::new();
        if restarted {
            let active: Vec<u128> = self
                .t
                .active
                .r()?
                .iter()?
                .map(|row| row.map(|(id, _)| id.value()))
                .collect::<Result<_, _>>()?;
            let mut finishes = Vec::new();
            for id in active {
                let Some(exec) = self.t.get_execution(Ulid(id))? else {
                    continue;
                };
                // Attempts placed on it ahead of their instant were its earlier
                // life's too: the new process never saw them.
                if exec.placed_on() != Some(node) {
                    continue;
                }
                let policy = match self.t.get_job(&exec.job)?.and_then(|j| j.spec.retry) {
                    Some(own) => Some(own),
                    None => self.t.dynamic_config()?.default_retry,
                };
                finishes.push(Finish::lost(
                    exec.id,
                    exec.attempt,
                    policy.as_ref(),
                    exec.cancel_requested,
                    NODE_RESTARTED,
                    self.at,
                ));
                lost.push(exec.id);
            }
            if !finishes.is_empty() {
                warn!(
                    node,
                    lost = finishes.len(),
                    "node restarted: attempts of its earlier life lost"
                );
            }
            self.finish(&finishes)?;
        }
        let record = NodeRecord {
            node: node.to_string(),
            incarnation,
            tags: tags.clone(),
            max_running,
            url: url.map(str::to_string),
            registered_at: self.at,
            revision: self.index,
            fire_ahead,
        };
        self.t.put_node(&record)?;
        self.emit(EventKind::NodeRegistered(Arc::new(record.clone())));
        Ok(Response::NodeRegistered {
            record: Box::new(record),
            lost,
        })
    }

    fn batch(&mut self, commands: &[Command]) -> Result<Response, StoreError> {
        let responses = commands
            .iter()
            .map(|c| self.command(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::Batch { responses })
    }

    fn put_job(&mut self, spec: &JobSpec) -> Result<Response, StoreError> {
        let previous = self.t.get_job(&spec.name)?;
        // Re-applying the same spec changes nothing: a new revision or `updated_at`
        // would re-arm an `after` job and shift the phase of an `every` one.
        if let Some(unchanged) = previous.as_ref().filter(|p| p.spec == *spec) {
            debug!(job = %spec.name, revision = unchanged.revision, "unchanged job kept");
            return Ok(Response::JobPut {
                created: false,
                job: Box::new(unchanged.clone()),
            });
        }
        let created = previous.is_none();
        // An `on` job handles the events after its trigger was set: a new or changed
        // trigger starts at this entry, an unchanged one keeps its mark.
        let (last_event_revision, last_event_seq) = match (&spec.schedule, &previous) {
            (Schedule::On(_), Some(p))
                if p.spec.schedule == spec.schedule && p.last_event_revision.is_some() =>
            {
                (p.last_event_revision, p.last_event_seq)
            }
            (Schedule::On(_), _) => (Some(self.index), None),
            _ => (None, None),
        };
        let record = JobRecord {
            spec: spec.clone(),
            created_at: previous.as_ref().map_or(self.at, |p| p.created_at),
            updated_at: self.at,
            revision: self.index,
            last_scheduled_at: previous.and_then(|p| p.last_scheduled_at),
            last_event_revision,
            last_event_seq,
        };
        self.t.put_job(&record)?;
        self.emit(EventKind::JobPut(Arc::new(record.clone())));
        let public = if created {
            types::JOB_CREATED
        } else {
            types::JOB_UPDATED
        };
        self.publish_job(public, &record)?;
        Ok(Response::JobPut {
            created,
            job: Box::new(record),
        })
    }

    fn delete_job(&mut self, name: &str, if_revision: Option<u64>) -> Result<Response, StoreError> {
        if let Some(want) = if_revision {
            let current = self.t.get_job(name)?.map(|j| j.revision);
            if current != Some(want) {
                debug!(
                    job = name,
                    want,
                    ?current,
                    "conditional delete of a changed job ignored"
                );
                return Ok(Response::JobDeleted { existed: false });
            }
        }
        let existed = self.t.jobs.w()?.remove(name)?.is_some();
        // Executions only exist for existing jobs, but the rows are cleared regardless
        // so that a damaged index cannot outlive its job.
        let (start, end) = job_range(name, JOB_EXEC_SUFFIX);
        let mut ids = Vec::new();
        for row in self
            .t
            .job_execs
            .r()?
            .range(start.as_slice()..=end.as_slice())?
        {
            let (key, _) = row?;
            ids.push(split_job_exec_key(key.value())?.1);
        }
        for id in &ids {
            self.t.executions.w()?.remove(id.0)?;
            self.t.outputs.w()?.remove(id.0)?;
            self.t.active.w()?.remove(id.0)?;
        }
        self.t
            .job_execs
            .w()?
            .retain_in(start.as_slice()..=end.as_slice(), |_, _| false)?;
        let (start, end) = job_range(name, FIRED_SUFFIX);
        self.t
            .fired
            .w()?
            .retain_in(start.as_slice()..=end.as_slice(), |_, _| false)?;
        self.t.job_counts.w()?.remove(name)?;
        if existed {
            debug!(job = name, executions = ids.len(), "job deleted");
            self.emit(EventKind::JobDeleted {
                name: name.to_string(),
            });
            if rota_core::workflow::split_job_name(name).is_none() {
                self.publish(types::JOB_DELETED, name, serde_json::json!({ "job": name }))?;
            }
        }
        Ok(Response::JobDeleted { existed })
    }

    /// Deletes the jobs of `apply_set` not named in `keep`.
    fn prune_jobs(&mut self, apply_set: &str, keep: &[String]) -> Result<Response, StoreError> {
        let keep: std::collections::BTreeSet<&str> = keep.iter().map(String::as_str).collect();
        let mut doomed = Vec::new();
        for row in self.t.jobs.r()?.iter()? {
            let (name, value) = row?;
            let name = name.value();
            if keep.contains(name) || rota_core::workflow::split_job_name(name).is_some() {
                continue;
            }
            let record: JobRecord = decode(crate::tables::JOB, value.value())?;
            if record.spec.apply_set() == Some(apply_set) {
                doomed.push(name.to_string());
            }
        }
        for name in &doomed {
            self.delete_job(name, None)?;
        }
        debug!(apply_set, deleted = doomed.len(), "apply set pruned");
        Ok(Response::JobsPruned { deleted: doomed })
    }

    fn set_paused(&mut self, name: &str, paused: bool) -> Result<Response, StoreError> {
        let Some(mut job) = self.t.get_job(name)? else {
            return Ok(job_not_found(name));
        };
        job.spec.paused = paused;
        // A resumed job schedules from now on instead of catching up the pause, and
        // an `on` job does not fire for the events of the pause.
        job.updated_at = self.at;
        if !paused
            && matches!(job.spec.schedule, Schedule::On(_))
            && job.last_event_revision.is_none_or(|mark| mark < self.index)
        {
            job.last_event_revision = Some(self.index);
            job.last_event_seq = None;
        }
        job.revision = self.index;
        self.t.put_job(&job)?;
        self.emit(EventKind::JobPut(Arc::new(job.clone())));
        let public = if paused {
            types::JOB_PAUSED
        } else {
            types::JOB_RESUMED
        };
        self.publish_job(public, &job)?;
        Ok(Response::JobPut {
            created: false,
            job: Box::new(job),
        })
    }

    fn start(&mut self, starts: &[Start]) -> Result<Response, StoreError> {
        for start in starts {
            let Some(mut exec) = self.t.get_execution(start.id)? else {
                debug!(execution = %start.id, "start of an unknown execution ignored");
                continue;
            };
            if exec.status != ExecStatus::Queued || exec.attempt != start.attempt {
                debug!(execution = %start.id, attempt = start.attempt, "stale start ignored");
                continue;
            }
            if exec
                .node
                .as_deref()
                .is_some_and(|placed| placed != start.node)
            {
                // Placed on another node ahead of its instant: only that one runs it.
                debug!(execution = %start.id, node = %start.node, "start on another node than the placed one ignored");
                continue;
            }
            exec.status = ExecStatus::Running;
            exec.node = Some(start.node.clone());
            exec.started_at = Some(start.at);
            exec.next_attempt_at = None;
            self.t.put_execution(&exec)?;
            self.emit_execution(&exec);
            self.publish_execution(types::EXECUTION_STARTED, &exec)?;
            self.run_execution_changed(&exec, &[])?;
        }
        Ok(Response::Ok)
    }

    fn finish(&mut self, finishes: &[Finish]) -> Result<Response, StoreError> {
        for finish in finishes {
            let Some(mut exec) = self.t.get_execution(finish.id)? else {
                debug!(execution = %finish.id, "finish of an unknown execution ignored");
                continue;
            };
            if !exec.is_active() || exec.attempt != finish.attempt {
                debug!(execution = %finish.id, attempt = finish.attempt, "stale finish ignored");
                continue;
            }
            if let Some(at) = finish.started_at {
                exec.started_at = Some(at);
                if exec.is_placed_ahead() {
                    // Placed ahead and over before its node's start was committed:
                    // it did start, and says so before it ends.
                    exec.status = ExecStatus::Running;
                    self.publish_execution(types::EXECUTION_STARTED, &exec)?;
                }
            }
            match finish.retry_at {
                Some(retry_at) if !exec.cancel_requested => {
                    exec.attempts.push(AttemptRecord {
                        attempt: exec.attempt,
                        node: exec.node.take(),
                        started_at: exec.started_at.take(),
                        finished_at: Some(finish.at),
                        status: finish.status,
                        exit_code: finish.exit_code,
                        error: finish.error.as_deref().map(truncate_error),
                    });
                    exec.attempt = exec.attempt.saturating_add(1);
                    exec.status = ExecStatus::Queued;
                    exec.next_attempt_at = Some(retry_at);
                    exec.finished_at = None;
                    exec.exit_code = None;
                    exec.error = None;
                    exec.output_truncated = false;
                    // The retried attempt's per-target results, until the next one ends.
                    exec.result = finish.result.clone();
                    exec.usage = finish.usage;
                }
                _ => {
                    exec.status = if exec.cancel_requested {
                        ExecStatus::Cancelled
                    } else if finish.status.is_terminal() {
                        finish.status
                    } else {
                        warn!(execution = %finish.id, status = finish.status.as_str(), "finish with a non-terminal status recorded as failed");
                        ExecStatus::Failed
                    };
                    exec.finished_at = Some(finish.at);
                    exec.exit_code = finish.exit_code;
                    exec.error = finish.error.as_deref().map(truncate_error);
                    exec.output_truncated = finish.output_truncated;
                    exec.result = finish.result.clone();
                    exec.usage = finish.usage;
                    exec.next_attempt_at = None;
                    if let Some(output) = &finish.output {
                        self.t
                            .outputs
                            .w()?
                            .insert(exec.id.0, encode(OUTPUT, output)?.as_slice())?;
                    }
                }
            }
            self.t.put_execution(&exec)?;
            self.emit_execution(&exec);
            let public = if exec.is_active() {
                types::EXECUTION_QUEUED
            } else {
                types::EXECUTION_FINISHED
            };
            self.publish_execution(public, &exec)?;
            self.run_execution_changed(&exec, &finish.artifacts)?;
        }
        Ok(Response::Ok)
    }

    fn cancel(&mut self, id: Ulid) -> Result<Response, StoreError> {
        let Some(mut exec) = self.t.get_execution(id)? else {
            return Ok(Response::NotFound {
                what: format!("execution {id}"),
            });
        };
        match exec.status {
            ExecStatus::Queued => {
                exec.status = ExecStatus::Cancelled;
                exec.finished_at = Some(self.at);
                exec.next_attempt_at = None;
                self.t.put_execution(&exec)?;
                self.emit_execution(&exec);
                self.publish_execution(types::EXECUTION_FINISHED, &exec)?;
                self.run_execution_changed(&exec, &[])?;
            }
            ExecStatus::Running => {
                if !exec.cancel_requested {
                    exec.cancel_requested = true;
                    self.t.put_execution(&exec)?;
                    self.emit_execution(&exec);
                }
            }
            _ => {
                return Ok(Response::AlreadyFinished {
                    execution: Box::new(exec),
                })
            }
        }
        Ok(Response::Cancelled {
            execution: Box::new(exec),
        })
    }

    fn kv_current(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        self.t
            .kv
            .r()?
            .get(key)?
            .map(|v| decode(crate::tables::KV_ENTRY, v.value()))
            .transpose()
    }

    fn kv_put(
        &mut self,
        key: &str,
        value: &str,
        if_revision: Option<u64>,
    ) -> Result<Response, StoreError> {
        let current = self.kv_current(key)?;
        let current_revision = current.as_ref().map_or(0, |e| e.mod_revision);
        if if_revision.is_some_and(|want| want != current_revision) {
            return Ok(Response::RevisionMismatch {
                key: key.to_string(),
                current: current_revision,
            });
        }
        let entry = KvEntry {
            key: key.to_string(),
            value: value.to_string(),
            mod_revision: self.index,
            create_revision: current.as_ref().map_or(self.index, |e| e.create_revision),
            version: current.as_ref().map_or(1, |e| e.version.saturating_add(1)),
        };
        self.t
            .kv
            .w()?
            .insert(key, encode(crate::tables::KV_ENTRY, &entry)?.as_slice())?;
        self.publish_kv_put(&entry)?;
        self.emit(EventKind::KvPut(Arc::new(entry)));
        Ok(Response::KvPut {
            key: key.to_string(),
            revision: self.index,
        })
    }

    fn kv_delete(&mut self, key: &str, if_revision: Option<u64>) -> Result<Response, StoreError> {
        let current = self.kv_current(key)?;
        let current_revision = current.as_ref().map_or(0, |e| e.mod_revision);
        if if_revision.is_some_and(|want| want != current_revision) {
            return Ok(Response::RevisionMismatch {
                key: key.to_string(),
                current: current_revision,
            });
        }
        let deleted = current.is_some();
        if deleted {
            self.t.kv.w()?.remove(key)?;
            self.emit(EventKind::KvDeleted {
                key: key.to_string(),
            });
            let data = serde_json::json!({ "key": key, "revision": self.index });
            self.publish(types::KV_DELETED, key, data)?;
        }
        Ok(Response::KvDeleted {
            key: key.to_string(),
            revision: self.index,
            deleted,
        })
    }
}

mod config;
mod fire;
mod members;
mod notify;
mod publish;
mod targets;
mod workflow;

#[cfg(test)]
mod tests;
