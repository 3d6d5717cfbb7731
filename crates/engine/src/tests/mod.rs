//! Engine tests: a fake clock, a small in-memory stand-in for the store that applies
//! `Fire`/`Start`/`Finish` the way the state machine does and feeds the resulting
//! execution events back, and assertions on the actions. No sleeps anywhere.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rota_core::RunOutcome;
use rota_core::{AttemptRecord, ExecStatus, Execution, JobRecord, JobSpec, Trigger};
use serde_json::json;
use ulid::Ulid;

use super::*;

const NODE: &str = "n1";

/// `(job, scheduled_at, trigger, started, skipped)` of a fire.
type FireSummary = (String, Timestamp, Trigger, bool, bool);

fn ts(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

/// 2026-01-01T00:00:00Z plus `secs`.
fn t0(secs: i64) -> Timestamp {
    ts("2026-01-01T00:00:00Z") + TimeDelta::seconds(secs)
}

/// A job spec from JSON, with a record executor and every other field defaulted.
fn spec(name: &str, extra: serde_json::Value) -> JobSpec {
    let mut doc = json!({
        "name": name,
        "schedule": {"manual": true},
        "executor": {"type": "record", "path": "/dev/null"},
    });
    if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            doc.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(doc).expect("job spec")
}

/// The engine plus a stand-in store, a record of everything the engine asked for,
/// and the attempts "running" on this node.
struct Sim {
    engine: Engine,
    now: Timestamp,
    jobs: BTreeMap<String, JobRecord>,
    execs: BTreeMap<Ulid, Execution>,
    /// `(job, scheduled_at)` of schedule and catch-up fires, as the store's index.
    fired: HashSet<(String, Timestamp)>,
    /// Fires the store had to refuse as repeats: must stay 0.
    repeated_fires: usize,
    log: Vec<Action>,
    seen: usize,
    /// Dispatched, not yet completed: id -> attempt.
    running: BTreeMap<Ulid, u32>,
    dispatched: HashSet<(Ulid, u32)>,
    max_running: usize,
    /// Engines built after the first (each draws ids from its own range).
    restarts: u128,
}

fn counter_ids(start: u128) -> IdSource {
    let mut next = start;
    Box::new(move || {
        next += 1;
        Ulid(next)
    })
}

impl Sim {
    fn new(max_running: usize, now: Timestamp) -> Self {
        let engine = Engine::new(EngineConfig::new(NODE, max_running), counter_ids(0));
        Self {
            engine,
            now,
            jobs: BTreeMap::new(),
            execs: BTreeMap::new(),
            fired: HashSet::new(),
            repeated_fires: 0,
            log: Vec::new(),
            seen: 0,
            running: BTreeMap::new(),
            dispatched: HashSet::new(),
            max_running,
            restarts: 0,
        }
    }

    /// A fresh engine (a restart) over the same store, loaded and started at `now`;
    /// `adopt` are local attempts handed over.
    fn restart(&mut self, now: Timestamp, adopt: &[LocalAttempt]) {
        self.restart_as(NODE, now, adopt);
    }

    /// A fresh engine on `node` (a restart, or another node taking the lead) over
    /// the same store.
    fn restart_as(&mut self, node: &str, now: Timestamp, adopt: &[LocalAttempt]) {
        self.now = now;
        let mut engine = Engine::new(
            EngineConfig::new(node, self.max_running),
            counter_ids(1_000_000 * (self.restarts + 1)),
        );
        self.restarts += 1;
        for a in adopt {
            engine.adopt(*a);
        }
        let mut out = Vec::new();
        for job in self.jobs.values() {
            engine.handle(Input::JobUpserted(Arc::new(job.clone())), now, &mut out);
        }
        for e in self.execs.values().filter(|e| e.is_active()) {
            engine.handle(Input::Execution(Arc::new(e.clone())), now, &mut out);
        }
        engine.start(now, &mut out);
        self.engine = engine;
        // Only the runs handed over survive a restart.
        self.running = adopt
            .iter()
            .filter(|a| a.dispatched)
            .map(|a| (a.id, a.attempt))
            .collect();
        self.process(out);
    }

    fn start(&mut self) {
        let mut out = Vec::new();
        self.engine.start(self.now, &mut out);
        self.process(out);
    }

    /// Creates or replaces a job as the store would (keeping its high-water mark).
    fn put(&mut self, spec: JobSpec) {
        let old = self.jobs.get(&spec.name);
        let record = JobRecord {
            created_at: old.map_or(self.now, |j| j.created_at),
            updated_at: self.now,
            revision: 1,
            last_scheduled_at: old.and_then(|j| j.last_scheduled_at),
            spec,
        };
        self.jobs.insert(record.spec.name.clone(), record.clone());
        self.input(Input::JobUpserted(Arc::new(record)));
    }

    fn remove(&mut self, name: &str) {
        self.jobs.remove(name);
        self.input(Input::JobRemoved(name.to_string()));
    }

    fn input(&mut self, input: Input) {
        let mut out = Vec::new();
        self.engine.handle(input, self.now, &mut out);
        self.process(out);
    }

    /// Moves the clock to `to`, ticking at every wake-up on the way.
    fn advance(&mut self, to: Timestamp) {
        while let Some(wake) = self.engine.next_wakeup() {
            if wake > to {
                break;
            }
            self.now = self.now.max(wake);
            self.tick();
        }
        self.now = self.now.max(to);
        self.tick();
    }

    /// Moves the clock to `to` without ticking on the way (a stalled loop).
    fn jump(&mut self, to: Timestamp) {
        self.now = to;
        self.tick();
    }

    fn tick(&mut self) {
        let mut out = Vec::new();
        self.engine.tick(self.now, &mut out);
        self.process(out);
    }

    /// The local run of `id` ends with `status`.
    fn complete(&mut self, id: Ulid, status: ExecStatus) {
        let attempt = self.running.remove(&id).expect("attempt running here");
        let outcome = match status {
            ExecStatus::Succeeded => RunOutcome::succeeded(),
            ExecStatus::Cancelled => RunOutcome::cancelled(),
            ExecStatus::TimedOut => RunOutcome::timed_out(std::time::Duration::from_secs(1)),
            _ => RunOutcome::failed(Some(1), "exit status 1"),
        };
        self.input(Input::Completed(Completion {
            id,
            attempt,
            outcome,
            output: "out".to_string(),
            output_truncated: false,
        }));
    }

    /// Someone asks to cancel `id` (the API's `Command::Cancel`).
    fn request_cancel(&mut self, id: Ulid) {
        let e = self.execs.get_mut(&id).expect("execution");
        match e.status {
            ExecStatus::Queued => {
                e.status = ExecStatus::Cancelled;
                e.finished_at = Some(self.now);
            }
            ExecStatus::Running => e.cancel_requested = true,
            _ => return,
        }
        let e = Arc::new(e.clone());
        self.input(Input::Execution(e));
    }

    /// A manual run, as the API creates it.
    fn run_now(&mut self, job: &str) -> Ulid {
        let id = Ulid(u128::from(u32::MAX) + self.execs.len() as u128);
        let priority = self.jobs.get(job).map_or(0, |j| j.spec.priority);
        let e = execution(
            id,
            job,
            self.now,
            Trigger::Manual,
            ExecStatus::Queued,
            priority,
        );
        self.execs.insert(id, e.clone());
        self.input(Input::Execution(Arc::new(e)));
        id
    }

    /// Carries out actions (commits in order, then the events they caused), until
    /// nothing more comes.
    fn process(&mut self, actions: Vec<Action>) {
        let mut inputs = Vec::new();
        for action in actions {
            self.log.push(action.clone());
            match action {
                Action::Fire(f) => inputs.extend(self.apply_fire(f)),
                Action::Start(s) => inputs.extend(self.apply_start(s)),
                Action::Finish(f) => inputs.extend(self.apply_finish(f)),
                Action::Dispatch { id, attempt, .. } => {
                    assert!(
                        self.dispatched.insert((id, attempt)),
                        "dispatched twice: {id} attempt {attempt}"
                    );
                    self.running.insert(id, attempt);
                }
                Action::Cancel { .. } => {}
            }
            assert!(
                self.running.len() <= self.max_running,
                "too many local runs"
            );
            assert!(
                self.engine.stats().running <= self.max_running,
                "too many slots in use"
            );
        }
        for input in inputs {
            self.input(input);
        }
    }

    fn apply_fire(&mut self, f: Fire) -> Option<Input> {
        let Some(job) = self.jobs.get_mut(&f.job) else {
            return Some(Input::FireDropped { id: f.id });
        };
        if matches!(f.trigger, Trigger::Schedule | Trigger::Catchup) {
            let below = job.last_scheduled_at.is_some_and(|h| f.scheduled_at <= h);
            if below || !self.fired.insert((f.job.clone(), f.scheduled_at)) {
                self.repeated_fires += 1;
                return Some(Input::FireDropped { id: f.id });
            }
            job.last_scheduled_at = Some(f.scheduled_at);
        }
        let mut e = execution(
            f.id,
            &f.job,
            f.scheduled_at,
            f.trigger,
            ExecStatus::Queued,
            job.spec.priority,
        );
        if let Some(reason) = f.skip_reason {
            e.status = ExecStatus::Skipped;
            e.error = Some(reason);
            e.finished_at = Some(self.now);
        } else if let Some(start) = f.start {
            e.status = ExecStatus::Running;
            e.node = Some(start.node);
            e.started_at = Some(start.at);
        }
        self.execs.insert(f.id, e.clone());
        Some(Input::Execution(Arc::new(e)))
    }

    fn apply_start(&mut self, s: Start) -> Option<Input> {
        let e = self.execs.get_mut(&s.id)?;
        if e.status != ExecStatus::Queued || e.attempt != s.attempt {
            return None;
        }
        e.status = ExecStatus::Running;
        e.node = Some(s.node);
        e.started_at = Some(s.at);
        e.next_attempt_at = None;
        Some(Input::Execution(Arc::new(e.clone())))
    }

    fn apply_finish(&mut self, f: Finish) -> Option<Input> {
        let e = self.execs.get_mut(&f.id)?;
        if e.status != ExecStatus::Running || e.attempt != f.attempt {
            return None;
        }
        e.attempts.push(AttemptRecord {
            attempt: e.attempt,
            node: e.node.clone(),
            started_at: e.started_at,
            finished_at: Some(f.at),
            status: f.status,
            exit_code: f.exit_code,
            error: f.error.clone(),
        });
        if let Some(retry_at) = f.retry_at {
            e.status = ExecStatus::Queued;
            e.attempt += 1;
            e.node = None;
            e.started_at = None;
            e.next_attempt_at = Some(retry_at);
        } else {
            e.status = f.status;
            e.finished_at = Some(f.at);
            e.exit_code = f.exit_code;
            e.error = f.error;
        }
        Some(Input::Execution(Arc::new(e.clone())))
    }

    /// Actions since the last call.
    fn take(&mut self) -> Vec<Action> {
        let new = self.log[self.seen..].to_vec();
        self.seen = self.log.len();
        new
    }

    fn fires(actions: &[Action]) -> Vec<&Fire> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Fire(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// `(job, scheduled_at, trigger, started, skipped)` of every fire.
    fn fired_summary(actions: &[Action]) -> Vec<FireSummary> {
        Self::fires(actions)
            .into_iter()
            .map(|f| {
                (
                    f.job.clone(),
                    f.scheduled_at,
                    f.trigger,
                    f.start.is_some(),
                    f.skip_reason.is_some(),
                )
            })
            .collect()
    }

    fn id_of(&self, job: &str, scheduled_at: Timestamp) -> Ulid {
        self.execs
            .values()
            .find(|e| e.job == job && e.scheduled_at == scheduled_at)
            .map(|e| e.id)
            .unwrap_or_else(|| panic!("no execution of {job} at {scheduled_at}"))
    }

    fn job_of(&self, id: Ulid) -> &str {
        &self.execs[&id].job
    }
}

fn execution(
    id: Ulid,
    job: &str,
    scheduled_at: Timestamp,
    trigger: Trigger,
    status: ExecStatus,
    priority: i32,
) -> Execution {
    Execution {
        id,
        job: job.to_string(),
        scheduled_at,
        started_at: None,
        finished_at: None,
        attempt: 1,
        node: None,
        trigger,
        status,
        exit_code: None,
        error: None,
        output_truncated: false,
        priority,
        next_attempt_at: None,
        cancel_requested: false,
        attempts: Vec::new(),
    }
}

fn started_sim(max_running: usize, now: Timestamp) -> Sim {
    let mut sim = Sim::new(max_running, now);
    sim.start();
    sim
}

fn every(secs: u64) -> serde_json::Value {
    json!({"schedule": {"every": format!("{secs}s")}})
}

fn with(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
    a
}

mod cancel;
mod firing;
mod leader_changes;
mod misfire;
mod overlap;
mod placement;
mod random;
mod retries;
mod slots;
