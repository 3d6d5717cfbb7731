//! The public events apply publishes, with what apply knows at that point: each one
//! is written to the event log (`events` table) in the entry's transaction and
//! announced as [`EventKind::Published`] once it committed.
//!
//! Data of each type (documented in `docs/API.md`):
//! - `job.created|updated|paused|resumed`: `{"job", "revision"}`; `job.deleted`: `{"job"}`.
//! - `execution.queued|started|finished`: `{"job", "status", "attempt", "node",
//!   "trigger", "scheduled_at"}`, plus `next_attempt_at` on a retry's `queued` and
//!   `finished_at`, `exit_code`, `error` on `finished`.
//! - `kv.put`: `{"key", "mod_revision", "create_revision", "version"}` (not the value:
//!   it may be large, and the log keeps many events); `kv.deleted`: `{"key", "revision"}`.

use std::sync::Arc;

use rota_core::event::{types, Event};
use rota_core::{EventKind, ExecStatus, Execution, JobRecord, KvEntry};
use serde_json::{json, Value};

use super::Apply;
use crate::codec::encode;
use crate::tables::EVENT;
use crate::StoreError;

impl Apply<'_, '_> {
    /// Logs one public event at this entry's revision and queues its announcement.
    pub(super) fn publish(
        &mut self,
        event_type: &str,
        key: &str,
        data: Value,
    ) -> Result<(), StoreError> {
        let mut data = data;
        if let (Some(actor), Some(fields)) = (&self.actor, data.as_object_mut()) {
            fields.insert("by".to_string(), Value::from(actor.clone()));
        }
        let event = Event {
            revision: self.index,
            seq: self.event_seq,
            event_type: event_type.to_string(),
            key: key.to_string(),
            at: self.at,
            data,
        };
        self.t.events.w()?.insert(
            (self.index, self.event_seq),
            encode(EVENT, &event)?.as_slice(),
        )?;
        self.event_seq = self.event_seq.saturating_add(1);
        self.emit(EventKind::Published(Arc::new(event)));
        Ok(())
    }

    pub(super) fn publish_job(
        &mut self,
        event_type: &str,
        job: &JobRecord,
    ) -> Result<(), StoreError> {
        if rota_core::workflow::split_job_name(&job.spec.name).is_some() {
            return Ok(()); // a workflow's internal job: the workflow's events say it
        }
        let data = json!({"job": job.spec.name, "revision": job.revision});
        self.publish(event_type, &job.spec.name, data)
    }

    /// `execution.queued|started|finished` for `exec` as it now stands.
    pub(super) fn publish_execution(
        &mut self,
        event_type: &str,
        exec: &Execution,
    ) -> Result<(), StoreError> {
        let mut data = json!({
            "job": exec.job,
            "status": exec.status,
            "attempt": exec.attempt,
            "node": exec.node,
            "trigger": exec.trigger,
            "scheduled_at": exec.scheduled_at,
        });
        if event_type == types::EXECUTION_FINISHED {
            data["started_at"] = json!(exec.started_at);
            data["finished_at"] = json!(exec.finished_at);
            data["exit_code"] = json!(exec.exit_code);
            data["error"] = json!(exec.error);
        } else if event_type == types::EXECUTION_QUEUED && exec.next_attempt_at.is_some() {
            data["next_attempt_at"] = json!(exec.next_attempt_at);
        }
        self.publish(event_type, &exec.id.to_string(), data)
    }

    /// What a newly created execution went through: `queued` (and `started` when the
    /// fire started it at once), or only `finished` for a skipped instant.
    pub(super) fn publish_created(&mut self, exec: &Execution) -> Result<(), StoreError> {
        match exec.status {
            ExecStatus::Queued => self.publish_execution(types::EXECUTION_QUEUED, exec),
            ExecStatus::Running => {
                let mut queued = exec.clone();
                queued.status = ExecStatus::Queued;
                queued.node = None;
                self.publish_execution(types::EXECUTION_QUEUED, &queued)?;
                self.publish_execution(types::EXECUTION_STARTED, exec)
            }
            _ => self.publish_execution(types::EXECUTION_FINISHED, exec),
        }
    }

    pub(super) fn publish_kv_put(&mut self, entry: &KvEntry) -> Result<(), StoreError> {
        let data = json!({
            "key": entry.key,
            "mod_revision": entry.mod_revision,
            "create_revision": entry.create_revision,
            "version": entry.version,
        });
        self.publish(types::KV_PUT, &entry.key, data)
    }
}
