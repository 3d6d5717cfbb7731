//! What the API shows of a job: the spec's fields, flattened, plus what the store
//! knows about it (`created_at`, `updated_at`, `revision`) and two derived fields,
//! `next_run_at` and `last_execution`. Workflows are shown the same way
//! ([`WorkflowView`]); a run ([`RunView`]) always has every key of the contract,
//! null when not known yet.

use std::collections::BTreeMap;

use rota_core::workflow::{ArtifactRecord, RunStatus, WorkflowRecord, WorkflowRun, WorkflowSpec};
use rota_core::{CompiledSchedule, Execution, JobRecord, JobSpec, Timestamp, Trigger};
use serde::Serialize;
use ulid::Ulid;

/// The contract's job view.
#[derive(Debug, Serialize)]
pub struct JobView<'a> {
    #[serde(flatten)]
    pub spec: &'a JobSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
    /// The next instant the schedule fires on its own; null when paused, manual or
    /// exhausted (an `at` in the past).
    pub next_run_at: Option<Timestamp>,
    /// For `on` jobs: the revision of the last event handled (fired for, or passed
    /// over at creation or resume); later matching events fire it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_event_revision: Option<u64>,
    /// Outer `None`: not looked up (listings omit the key, to stay one pass over
    /// the jobs table); `Some(None)`: the job never ran (`null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_execution: Option<Option<Execution>>,
}

impl<'a> JobView<'a> {
    /// The view without `last_execution` (for listings).
    pub fn brief(record: &'a JobRecord, now: Timestamp) -> Self {
        JobView {
            spec: &record.spec,
            created_at: record.created_at,
            updated_at: record.updated_at,
            revision: record.revision,
            next_run_at: next_run_at(record, now),
            last_event_revision: record.last_event_revision,
            last_execution: None,
        }
    }

    /// The full view, with the job's newest execution (or null).
    pub fn full(record: &'a JobRecord, now: Timestamp, last: Option<Execution>) -> Self {
        JobView {
            last_execution: Some(last),
            ..Self::brief(record, now)
        }
    }
}

/// The contract's workflow view: the spec's fields plus what the store knows.
#[derive(Debug, Serialize)]
pub struct WorkflowView<'a> {
    #[serde(flatten)]
    pub spec: &'a WorkflowSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub revision: u64,
    /// When the workflow's schedule starts a run next (its trigger job's next
    /// instant); null when paused, manual or `on` an event.
    pub next_run_at: Option<Timestamp>,
}

impl<'a> WorkflowView<'a> {
    /// `trigger` is the workflow's trigger job, when it could be read.
    pub fn new(record: &'a WorkflowRecord, trigger: Option<&JobRecord>, now: Timestamp) -> Self {
        WorkflowView {
            spec: &record.spec,
            created_at: record.created_at,
            updated_at: record.updated_at,
            revision: record.revision,
            next_run_at: trigger.and_then(|t| next_run_at(t, now)),
        }
    }
}

/// The contract's run view (`GET /v1/runs/{id}`).
#[derive(Debug, Serialize)]
pub struct RunView<'a> {
    pub id: Ulid,
    pub workflow: &'a str,
    /// The workflow's revision the run was made from.
    pub workflow_revision: u64,
    pub status: RunStatus,
    /// Cancelled or timed out while jobs still ran: the status the run ends with
    /// once they have stopped; null otherwise.
    pub ending: Option<RunStatus>,
    pub trigger: Trigger,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// When the run times out (its start plus the workflow's `timeout`).
    pub deadline: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_revision: Option<u64>,
    pub error: Option<&'a str>,
    pub jobs: BTreeMap<&'a str, RunJobView<'a>>,
    pub artifacts: &'a [ArtifactRecord],
}

/// One job of a run.
#[derive(Debug, Serialize)]
pub struct RunJobView<'a> {
    pub status: RunStatus,
    pub executions: &'a [Ulid],
    pub error: Option<&'a str>,
}

impl<'a> RunView<'a> {
    pub fn new(run: &'a WorkflowRun) -> Self {
        RunView {
            id: run.id,
            workflow: &run.workflow,
            workflow_revision: run.workflow_revision,
            status: run.status,
            ending: run.ending,
            trigger: run.trigger,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            deadline: run.deadline,
            event_revision: run.event_revision,
            error: run.error.as_deref(),
            jobs: run
                .jobs
                .iter()
                .map(|(name, job)| {
                    let view = RunJobView {
                        status: job.status,
                        executions: &job.executions,
                        error: job.error.as_deref(),
                    };
                    (name.as_str(), view)
                })
                .collect(),
            artifacts: &run.artifacts,
        }
    }
}

/// When the job fires next on its own: the first instant after both `now` and the
/// last instant already fired, so a view never announces an instant that has been
/// recorded.
pub fn next_run_at(record: &JobRecord, now: Timestamp) -> Option<Timestamp> {
    if record.spec.paused {
        return None;
    }
    let compiled = match CompiledSchedule::compile(&record.spec.schedule) {
        Ok(c) => c,
        Err(e) => {
            // The store only holds validated specs; a schedule that no longer
            // compiles (e.g. a time zone removed from the tz database) is reported,
            // not fatal.
            tracing::warn!(job = %record.spec.name, error = %e, "stored schedule does not compile");
            return None;
        }
    };
    // An instant fired ahead of its time (within `fire_ahead`) is the next run; one
    // further ahead than any node fires means this node's clock lags the leader's,
    // and the instant is not announced again.
    let ahead_bound = now
        + chrono::TimeDelta::from_std(rota_scheduler::MAX_FIRE_AHEAD)
            .unwrap_or(chrono::TimeDelta::zero());
    match record.last_scheduled_at {
        Some(last) if last > now && last <= ahead_bound => Some(last),
        last => compiled.next_after(last.map_or(now, |l| l.max(now)), record.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rota_core::{ExecStatus, HumanDuration, Schedule, Trigger};
    use serde_json::json;
    use ulid::Ulid;

    fn at(h: u32, m: u32, s: u32) -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 3, 1, h, m, s)
            .single()
            .expect("valid time")
    }

    fn record(schedule: Schedule, paused: bool) -> JobRecord {
        let mut spec: JobSpec = serde_json::from_value(json!({
            "name": "j",
            "schedule": {"manual": true},
            "executor": {"type": "shell", "command": "true"}
        }))
        .expect("spec");
        spec.schedule = schedule;
        spec.paused = paused;
        JobRecord {
            spec,
            created_at: at(10, 0, 0),
            updated_at: at(10, 0, 0),
            revision: 4,
            last_scheduled_at: None,
            last_event_revision: None,
            last_event_seq: None,
        }
    }

    #[test]
    fn view_flattens_the_spec_and_adds_store_fields() {
        let rec = record(Schedule::Manual, false);
        let v = serde_json::to_value(JobView::brief(&rec, at(11, 0, 0))).expect("json");
        assert_eq!(v["name"], "j");
        assert_eq!(v["executor"]["type"], "shell");
        assert_eq!(v["revision"], 4);
        assert_eq!(v["created_at"], "2026-03-01T10:00:00Z");
        assert_eq!(v["next_run_at"], serde_json::Value::Null);
        assert!(v.get("last_execution").is_none(), "{v}");

        let v = serde_json::to_value(JobView::full(&rec, at(11, 0, 0), None)).expect("json");
        assert_eq!(v["last_execution"], serde_json::Value::Null);
        let exec = Execution {
            id: Ulid::nil(),
            job: "j".into(),
            scheduled_at: at(10, 30, 0),
            started_at: None,
            finished_at: None,
            attempt: 1,
            node: None,
            trigger: Trigger::Manual,
            status: ExecStatus::Queued,
            exit_code: None,
            error: None,
            output_truncated: false,
            priority: 0,
            next_attempt_at: None,
            cancel_requested: false,
            attempts: vec![],
            event_revision: None,
            event_seq: 0,
            run: None,
            result: None,
            usage: None,
            triggered_by: None,
        };
        let v = serde_json::to_value(JobView::full(&rec, at(11, 0, 0), Some(exec))).expect("json");
        assert_eq!(v["last_execution"]["status"], "queued");
    }

    #[test]
    fn paused_jobs_have_no_next_run() {
        let rec = record(Schedule::Every(HumanDuration::from_secs(60)), true);
        assert_eq!(next_run_at(&rec, at(11, 0, 0)), None);
    }

    #[test]
    fn next_run_is_after_now_and_after_the_last_fired_instant() {
        let mut rec = record(Schedule::Every(HumanDuration::from_secs(60)), false);
        let next = next_run_at(&rec, at(11, 0, 30)).expect("recurring");
        assert!(next > at(11, 0, 30), "{next}");
        // An instant already fired (the clock of this node lagging the leader's)
        // is never announced again.
        rec.last_scheduled_at = Some(at(12, 0, 0));
        let next = next_run_at(&rec, at(11, 0, 30)).expect("recurring");
        assert!(next > at(12, 0, 0), "{next}");
        // An instant fired ahead of its time, its run still to start, is the next.
        rec.last_scheduled_at = Some(at(11, 1, 0));
        assert_eq!(next_run_at(&rec, at(11, 0, 59)), Some(at(11, 1, 0)));
    }
}
