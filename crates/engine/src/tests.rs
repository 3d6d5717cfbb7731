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

// ----- firing -----

#[test]
fn every_second_fires_each_second_and_dispatches() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("tick", every(1)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(1)));
    sim.advance(t0(3));
    let actions = sim.take();
    let fired = Sim::fired_summary(&actions);
    assert_eq!(
        fired,
        (1..=3)
            .map(|s| ("tick".to_string(), t0(s), Trigger::Schedule, true, false))
            .collect::<Vec<_>>()
    );
    let dispatched: Vec<(Ulid, u32)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch {
                id, attempt, job, ..
            } if job == "tick" => Some((*id, *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(dispatched.len(), 3);
    for (id, _) in dispatched {
        sim.complete(id, ExecStatus::Succeeded);
        assert_eq!(sim.execs[&id].status, ExecStatus::Succeeded);
    }
    assert_eq!(sim.engine.stats().running, 0);
    assert_eq!(sim.engine.stats().fired_total, 3);
    assert_eq!(sim.repeated_fires, 0);
}

#[test]
fn six_field_cron_fires_on_seconds() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "quarter",
        json!({"schedule": {"cron": "*/15 * * * * *", "timezone": "UTC"}}),
    ));
    sim.advance(t0(60));
    let fired: Vec<Timestamp> = Sim::fires(&sim.take())
        .iter()
        .map(|f| f.scheduled_at)
        .collect();
    assert_eq!(fired, vec![t0(15), t0(30), t0(45), t0(60)]);
}

#[test]
fn one_shot_at_fires_once_then_disarms() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "once",
        json!({"schedule": {"at": "2026-01-01T00:00:10Z"}}),
    ));
    sim.advance(t0(100));
    assert_eq!(Sim::fires(&sim.take()).len(), 1);
    assert_eq!(sim.engine.next_wakeup(), None);
    assert_eq!(sim.engine.stats().timers, 0);
}

#[test]
fn manual_and_paused_jobs_have_no_timers() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("by-hand", json!({})));
    sim.put(spec("held", with(every(1), json!({"paused": true}))));
    assert_eq!(sim.engine.next_wakeup(), None);
    sim.advance(t0(10));
    assert!(Sim::fires(&sim.take()).is_empty());
    // Resuming does not catch up on what passed while paused.
    sim.put(spec("held", every(1)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(11)));
}

/// Runs a cron job through `[from, to]`, completing each run at once; answers the
/// fired instants.
fn cron_instants(expr: &str, zone: &str, from: &str, to: &str) -> Vec<Timestamp> {
    let mut sim = started_sim(4, ts(from));
    sim.put(spec(
        "dst",
        json!({"schedule": {"cron": expr, "timezone": zone}}),
    ));
    let end = ts(to);
    let mut instants = Vec::new();
    while let Some(wake) = sim.engine.next_wakeup().filter(|w| *w <= end) {
        sim.advance(wake);
        for f in Sim::fires(&sim.take()) {
            instants.push(f.scheduled_at);
        }
        let running: Vec<Ulid> = sim.running.keys().copied().collect();
        for id in running {
            sim.complete(id, ExecStatus::Succeeded);
        }
    }
    assert_eq!(sim.repeated_fires, 0);
    instants
}

#[test]
fn dst_berlin_spring_forward_fires_skipped_time_at_three() {
    let got = cron_instants(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-03-27T12:00:00Z",
        "2026-03-30T12:00:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-03-28T01:30:00Z"), // 02:30 CET
            ts("2026-03-29T01:00:00Z"), // 02:30 does not exist: 03:00 CEST
            ts("2026-03-30T00:30:00Z"), // 02:30 CEST
        ]
    );
}

#[test]
fn dst_berlin_fall_back_fires_repeated_time_once() {
    let got = cron_instants(
        "30 2 * * *",
        "Europe/Berlin",
        "2026-10-24T12:00:00Z",
        "2026-10-26T12:00:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-10-25T00:30:00Z"), // first 02:30 (CEST); not again at 01:30Z (CET)
            ts("2026-10-26T01:30:00Z"),
        ]
    );
}

#[test]
fn dst_berlin_hourly_fires_in_both_fall_back_hours() {
    let got = cron_instants(
        "0 * * * *",
        "Europe/Berlin",
        "2026-10-24T22:30:00Z",
        "2026-10-25T02:30:00Z",
    );
    assert_eq!(
        got,
        vec![
            ts("2026-10-24T23:00:00Z"), // 01:00 CEST
            ts("2026-10-25T00:00:00Z"), // 02:00 CEST
            ts("2026-10-25T01:00:00Z"), // 02:00 CET
            ts("2026-10-25T02:00:00Z"), // 03:00 CET
        ]
    );
}

#[test]
fn dst_new_york_spring_forward_and_fall_back() {
    let spring = cron_instants(
        "30 2 * * *",
        "America/New_York",
        "2026-03-07T00:00:00Z",
        "2026-03-09T12:00:00Z",
    );
    assert_eq!(
        spring,
        vec![
            ts("2026-03-07T07:30:00Z"), // 02:30 EST
            ts("2026-03-08T07:00:00Z"), // 02:30 skipped: 03:00 EDT
            ts("2026-03-09T06:30:00Z"), // 02:30 EDT
        ]
    );
    let fall = cron_instants(
        "30 2 * * *",
        "America/New_York",
        "2026-10-31T12:00:00Z",
        "2026-11-02T12:00:00Z",
    );
    assert_eq!(
        fall,
        vec![
            // 02:30 comes after the 02:00 EDT -> 01:00 EST switch: once, in EST.
            ts("2026-11-01T07:30:00Z"),
            ts("2026-11-02T07:30:00Z"),
        ]
    );
    // The repeated hour in New York is 01:00-02:00.
    let repeated = cron_instants(
        "30 1 * * *",
        "America/New_York",
        "2026-11-01T00:00:00Z",
        "2026-11-01T12:00:00Z",
    );
    assert_eq!(repeated, vec![ts("2026-11-01T05:30:00Z")]); // first 01:30 (EDT) only
    let hourly = cron_instants(
        "0 * * * *",
        "America/New_York",
        "2026-11-01T04:30:00Z",
        "2026-11-01T07:30:00Z",
    );
    assert_eq!(
        hourly,
        vec![
            ts("2026-11-01T05:00:00Z"), // 01:00 EDT
            ts("2026-11-01T06:00:00Z"), // 01:00 EST
            ts("2026-11-01T07:00:00Z"), // 02:00 EST
        ]
    );
}

// ----- slots and priorities -----

#[test]
fn slots_go_by_priority_then_fifo() {
    let mut sim = started_sim(2, t0(0));
    let at = json!({"schedule": {"at": "2026-01-01T00:01:00Z"}});
    for (name, priority) in [("a", 1), ("b", 5), ("c", 5), ("d", 0), ("e", 1)] {
        sim.put(spec(name, with(at.clone(), json!({"priority": priority}))));
    }
    sim.advance(t0(60));
    let actions = sim.take();
    let started: Vec<String> = Sim::fires(&actions)
        .iter()
        .filter(|f| f.start.is_some())
        .map(|f| f.job.clone())
        .collect();
    assert_eq!(started, vec!["b", "c"]);
    assert_eq!(Sim::fires(&actions).len(), 5);
    assert_eq!(sim.engine.stats().queued, 3);

    let mut order = started;
    while let Some((&id, _)) = sim.running.iter().next() {
        sim.complete(id, ExecStatus::Succeeded);
        for a in sim.take() {
            if let Action::Start(s) = a {
                order.push(sim.job_of(s.id).to_string());
            }
        }
    }
    assert_eq!(order, vec!["b", "c", "a", "e", "d"]);
}

#[test]
fn a_burst_of_ten_thousand_due_jobs_queues_beyond_the_slots() {
    let mut sim = started_sim(4, t0(0));
    let at = json!({"schedule": {"at": "2026-01-01T00:01:00Z"}});
    for i in 0..10_000 {
        sim.put(spec(&format!("job-{i}"), at.clone()));
    }
    let mut out = Vec::new();
    sim.engine.tick(t0(60), &mut out);
    let fires = Sim::fires(&out);
    assert_eq!(fires.len(), 10_000);
    assert_eq!(fires.iter().filter(|f| f.start.is_some()).count(), 4);
    let stats = sim.engine.stats();
    assert_eq!((stats.running, stats.queued, stats.timers), (4, 9_996, 0));
}

#[test]
fn a_dropped_fire_gives_its_slot_back() {
    let mut sim = started_sim(1, t0(0));
    sim.put(spec("a", every(10)));
    let mut out = Vec::new();
    sim.engine.tick(t0(10), &mut out);
    let Some(Action::Fire(fire)) = out.first() else {
        panic!("expected a fire, got {out:?}");
    };
    assert!(fire.start.is_some());
    assert_eq!(sim.engine.stats().running, 1);
    let mut more = Vec::new();
    sim.engine
        .handle(Input::FireDropped { id: fire.id }, t0(10), &mut more);
    assert_eq!(sim.engine.stats().running, 0);
}

// ----- retries -----

#[test]
fn retries_back_off_then_fail_for_good() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "flaky",
        json!({
            "schedule": {"at": "2026-01-01T00:00:10Z"},
            "retry": {"max_attempts": 3, "initial_delay": "10s", "multiplier": 2.0, "jitter": false},
        }),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("flaky", t0(10));
    let mut finishes = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let attempt = sim.running[&id];
        sim.complete(id, ExecStatus::Failed);
        for a in sim.take() {
            if let Action::Finish(f) = a {
                finishes.push((f.attempt, f.status, f.retry_at));
            }
        }
        if let Some(wake) = sim.engine.next_wakeup() {
            sim.advance(wake);
        }
        for a in sim.take() {
            match a {
                Action::Start(s) => starts.push((s.attempt, s.at)),
                Action::Dispatch { attempt: a, .. } => assert_eq!(a, attempt + 1),
                _ => {}
            }
        }
    }
    assert_eq!(
        finishes,
        vec![
            (1, ExecStatus::Failed, Some(t0(20))),
            (2, ExecStatus::Failed, Some(t0(40))),
            (3, ExecStatus::Failed, None),
        ]
    );
    assert_eq!(starts, vec![(2, t0(20)), (3, t0(40))]);
    let e = &sim.execs[&id];
    assert_eq!(
        (e.status, e.attempt, e.attempts.len()),
        (ExecStatus::Failed, 3, 3)
    );
    assert_eq!(sim.engine.stats().queued, 0);
}

#[test]
fn success_and_cancel_are_never_retried() {
    let mut sim = started_sim(4, t0(0));
    let retry = json!({"retry": {"max_attempts": 5, "jitter": false}});
    sim.put(spec("ok", with(every(10), retry.clone())));
    sim.advance(t0(10));
    let id = sim.id_of("ok", t0(10));
    sim.complete(id, ExecStatus::Succeeded);
    sim.advance(t0(15));
    let id2 = sim.id_of("ok", t0(10));
    assert_eq!(id, id2);
    assert_eq!(sim.execs[&id].status, ExecStatus::Succeeded);
    sim.advance(t0(20));
    let id = sim.id_of("ok", t0(20));
    sim.complete(id, ExecStatus::Cancelled);
    assert_eq!(sim.execs[&id].status, ExecStatus::Cancelled);
}

#[test]
fn timed_out_attempts_are_retried() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "slow",
        json!({
            "schedule": {"at": "2026-01-01T00:00:10Z"},
            "retry": {"max_attempts": 2, "initial_delay": "5s", "jitter": false},
        }),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("slow", t0(10));
    sim.complete(id, ExecStatus::TimedOut);
    assert_eq!(sim.engine.next_wakeup(), Some(t0(15)));
    sim.advance(t0(15));
    assert_eq!(sim.running.get(&id), Some(&2));
}

// ----- overlap -----

#[test]
fn overlap_allow_runs_side_by_side() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "allow"}))));
    sim.advance(t0(20));
    let fired = Sim::fired_summary(&sim.take());
    assert_eq!(fired.iter().filter(|f| f.3).count(), 2);
    assert_eq!(sim.running.len(), 2);
}

#[test]
fn overlap_skip_records_a_skipped_run() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    sim.advance(t0(20));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 2);
    assert_eq!(fires[1].skip_reason.as_deref(), Some(SKIP_ACTIVE));
    assert_eq!(sim.execs[&fires[1].id].status, ExecStatus::Skipped);
    let first = fires[0].id;
    sim.complete(first, ExecStatus::Succeeded);
    sim.advance(t0(30));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![("a".into(), t0(30), Trigger::Schedule, true, false)]
    );
}

#[test]
fn overlap_buffer_one_keeps_one_waiting() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "buffer_one"}))));
    sim.advance(t0(30));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 3);
    assert!(fires[0].start.is_some());
    assert!(fires[1].start.is_none() && fires[1].skip_reason.is_none());
    assert_eq!(fires[2].skip_reason.as_deref(), Some(SKIP_BUFFER_FULL));
    let (first, buffered) = (fires[0].id, fires[1].id);
    assert_eq!(sim.execs[&buffered].status, ExecStatus::Queued);
    // Slots are free, yet the buffered run waits for the running one.
    assert_eq!(sim.running.len(), 1);
    sim.complete(first, ExecStatus::Succeeded);
    let starts: Vec<Ulid> = sim
        .take()
        .iter()
        .filter_map(|a| match a {
            Action::Start(s) => Some(s.id),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![buffered]);
    assert_eq!(sim.running.get(&buffered), Some(&1));
}

#[test]
fn overlap_cancel_running_cancels_then_starts() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(every(10), json!({"overlap": "cancel_running"})),
    ));
    sim.advance(t0(10));
    let first = sim.id_of("a", t0(10));
    sim.take();
    sim.advance(t0(20));
    let actions = sim.take();
    assert!(actions.contains(&Action::Cancel {
        id: first,
        attempt: 1
    }));
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 1);
    assert!(fires[0].start.is_none() && fires[0].skip_reason.is_none());
    let second = fires[0].id;
    sim.complete(first, ExecStatus::Cancelled);
    let actions = sim.take();
    assert!(
        matches!(&actions[0], Action::Finish(f) if f.id == first && f.status == ExecStatus::Cancelled && f.retry_at.is_none())
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Start(s) if s.id == second)));
    assert_eq!(sim.running.get(&second), Some(&1));
}

#[test]
fn manual_runs_ignore_overlap() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    sim.advance(t0(10));
    let manual = sim.run_now("a");
    assert_eq!(sim.running.get(&manual), Some(&1));
    assert_eq!(sim.execs[&manual].status, ExecStatus::Running);
}

// ----- misfire and recovery -----

/// A store in which job `j` (every minute, created at 0, last fired at 60 s) was
/// left alone; a new engine starts at `now`. Answers the fires of the restart.
fn restart_after_outage(extra: serde_json::Value, now: Timestamp) -> (Sim, Vec<FireSummary>) {
    let mut sim = Sim::new(100, t0(0));
    let mut record = JobRecord {
        spec: spec("j", with(json!({"schedule": {"every": "1m"}}), extra)),
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: Some(t0(60)),
    };
    record.spec.name = "j".into();
    sim.fired.insert(("j".into(), t0(60)));
    sim.jobs.insert("j".into(), record);
    sim.restart(now, &[]);
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(sim.repeated_fires, 0);
    (sim, fires)
}

#[test]
fn misfire_skip_fires_nothing_and_waits_for_the_next_instant() {
    let (sim, fires) = restart_after_outage(json!({"misfire": "skip"}), t0(630));
    assert!(fires.is_empty(), "{fires:?}");
    assert_eq!(sim.engine.next_wakeup(), Some(t0(660)));
}

#[test]
fn misfire_run_once_fires_the_latest_missed_instant() {
    let (sim, fires) = restart_after_outage(json!({"misfire": "run_once"}), t0(630));
    assert_eq!(
        fires,
        vec![("j".into(), t0(600), Trigger::Catchup, true, false)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(660)));
}

#[test]
fn misfire_run_all_fires_each_missed_instant_oldest_first() {
    let (_, fires) = restart_after_outage(json!({"misfire": "run_all"}), t0(630));
    let expected: Vec<_> = (2..=10)
        .map(|m| ("j".to_string(), t0(m * 60), Trigger::Catchup, true, false))
        .collect();
    assert_eq!(fires, expected);
}

#[test]
fn misfire_respects_the_catchup_window() {
    let (_, fires) = restart_after_outage(
        json!({"misfire": "run_all", "catchup_window": "5m"}),
        t0(630),
    );
    let got: Vec<Timestamp> = fires.iter().map(|f| f.1).collect();
    assert_eq!(got, (6..=10).map(|m| t0(m * 60)).collect::<Vec<_>>());
    // Everything missed is older than the window: nothing fires.
    let (sim, fires) = restart_after_outage(
        json!({"misfire": "run_once", "catchup_window": "20s"}),
        t0(690),
    );
    assert!(fires.is_empty(), "{fires:?}");
    assert_eq!(sim.engine.next_wakeup(), Some(t0(720)));
}

#[test]
fn an_instant_within_the_threshold_still_fires_on_schedule_after_restart() {
    let (_, fires) = restart_after_outage(json!({"misfire": "skip"}), t0(602));
    assert_eq!(
        fires,
        vec![("j".into(), t0(600), Trigger::Schedule, true, false)]
    );
    let (_, fires) = restart_after_outage(json!({"misfire": "run_all"}), t0(602));
    assert_eq!(fires.len(), 9);
    assert_eq!(fires.last().map(|f| f.2), Some(Trigger::Schedule));
    assert!(fires[..8].iter().all(|f| f.2 == Trigger::Catchup));
}

#[test]
fn run_all_is_bounded_to_the_newest_instants() {
    let mut sim = Sim::new(1, t0(0));
    sim.jobs.insert(
        "fast".into(),
        JobRecord {
            spec: spec(
                "fast",
                with(
                    every(1),
                    json!({"misfire": "run_all", "catchup_window": "1d"}),
                ),
            ),
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
        },
    );
    // Twelve hours of one-second instants missed: 43,200 of them.
    sim.restart(t0(43_200), &[]);
    let fires = Sim::fires(&sim.log);
    assert_eq!(fires.len(), MAX_CATCHUP_FIRES);
    assert_eq!(
        fires.first().map(|f| f.scheduled_at),
        Some(t0(43_200 - 9_999))
    );
    assert_eq!(fires.last().map(|f| f.scheduled_at), Some(t0(43_200)));
}

#[test]
fn a_stalled_loop_applies_the_misfire_policy() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "once",
        with(every(10), json!({"misfire": "run_once"})),
    ));
    sim.put(spec("none", with(every(10), json!({"misfire": "skip"}))));
    sim.advance(t0(10));
    sim.take();
    // The loop does not run for 55 s: 20..60 are missed, 60 is late by 5 s.
    sim.jump(t0(65));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![
            ("once".into(), t0(60), Trigger::Schedule, true, false),
            ("none".into(), t0(60), Trigger::Schedule, true, false),
        ]
    );
    sim.jump(t0(90));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![
            ("once".into(), t0(90), Trigger::Schedule, true, false),
            ("none".into(), t0(90), Trigger::Schedule, true, false)
        ]
    );
    sim.jump(t0(126));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![("once".into(), t0(120), Trigger::Catchup, true, false)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(130)));
}

#[test]
fn attempts_running_here_at_restart_are_lost_and_retried() {
    let mut sim = Sim::new(10, t0(0));
    let job = spec(
        "work",
        json!({"retry": {"max_attempts": 2, "initial_delay": "30s", "jitter": false}}),
    );
    sim.jobs.insert(
        "work".into(),
        JobRecord {
            spec: job,
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
        },
    );
    let mut here = execution(
        Ulid(1),
        "work",
        t0(5),
        Trigger::Manual,
        ExecStatus::Running,
        0,
    );
    here.node = Some(NODE.into());
    let mut elsewhere = here.clone();
    elsewhere.id = Ulid(2);
    elsewhere.node = Some("n2".into());
    let mut adopted = here.clone();
    adopted.id = Ulid(3);
    let mut last_try = here.clone();
    last_try.id = Ulid(4);
    last_try.attempt = 2;
    for e in [here, elsewhere, adopted, last_try] {
        sim.execs.insert(e.id, e);
    }
    sim.restart(
        t0(100),
        &[LocalAttempt {
            id: Ulid(3),
            attempt: 1,
            dispatched: true,
        }],
    );
    let finishes: Vec<Finish> = sim
        .take()
        .into_iter()
        .filter_map(|a| match a {
            Action::Finish(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(finishes.len(), 2, "{finishes:?}");
    assert_eq!(finishes[0].id, Ulid(1));
    assert_eq!(finishes[0].status, ExecStatus::Lost);
    assert_eq!(finishes[0].error.as_deref(), Some(LOST_ERROR));
    assert_eq!(finishes[0].retry_at, Some(t0(130)));
    assert_eq!((finishes[1].id, finishes[1].retry_at), (Ulid(4), None));
    // The lost attempt comes back as attempt 2 of the same execution.
    assert_eq!(sim.execs[&Ulid(1)].status, ExecStatus::Queued);
    // n2 keeps reporting, so its run is left alone.
    for secs in (105..=130).step_by(5) {
        sim.input(Input::NodeAlive { node: "n2".into() });
        sim.advance(t0(secs));
    }
    assert_eq!(sim.running.get(&Ulid(1)), Some(&2));
    // The adopted run is still ours: its completion is recorded.
    assert_eq!(sim.engine.stats().running, 2);
    sim.complete(Ulid(3), ExecStatus::Succeeded);
    assert_eq!(sim.execs[&Ulid(3)].status, ExecStatus::Succeeded);
    // The run on another node is left alone.
    assert_eq!(sim.execs[&Ulid(2)].status, ExecStatus::Running);
}

#[test]
fn a_started_attempt_handed_over_is_dispatched_by_the_successor() {
    let mut sim = Sim::new(10, t0(0));
    sim.jobs.insert(
        "work".into(),
        JobRecord {
            spec: spec("work", json!({})),
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
        },
    );
    let mut e = execution(
        Ulid(7),
        "work",
        t0(5),
        Trigger::Manual,
        ExecStatus::Running,
        0,
    );
    e.node = Some(NODE.into());
    sim.execs.insert(e.id, e);
    sim.restart(
        t0(10),
        &[LocalAttempt {
            id: Ulid(7),
            attempt: 1,
            dispatched: false,
        }],
    );
    let actions = sim.take();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Dispatch { id, attempt: 1, .. } if *id == Ulid(7))),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Finish(_))));
}

#[test]
fn queued_executions_start_after_restart_by_priority() {
    let mut sim = Sim::new(1, t0(0));
    for (name, priority) in [("low", 0), ("high", 9)] {
        sim.jobs.insert(
            name.into(),
            JobRecord {
                spec: spec(name, json!({"priority": priority})),
                created_at: t0(0),
                updated_at: t0(0),
                revision: 1,
                last_scheduled_at: None,
            },
        );
    }
    let low = execution(
        Ulid(1),
        "low",
        t0(1),
        Trigger::Manual,
        ExecStatus::Queued,
        0,
    );
    let high = execution(
        Ulid(2),
        "high",
        t0(2),
        Trigger::Manual,
        ExecStatus::Queued,
        9,
    );
    let mut later = execution(
        Ulid(3),
        "low",
        t0(3),
        Trigger::Manual,
        ExecStatus::Queued,
        0,
    );
    later.attempt = 2;
    later.next_attempt_at = Some(t0(50));
    for e in [low, high, later] {
        sim.execs.insert(e.id, e);
    }
    sim.restart(t0(10), &[]);
    assert_eq!(
        sim.running.keys().copied().collect::<Vec<_>>(),
        vec![Ulid(2)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(50)));
    assert_eq!(sim.engine.stats().queued, 2);
}

// ----- cancel and job changes -----

#[test]
fn cancel_requested_cancels_the_local_run() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(
            every(10),
            json!({"retry": {"max_attempts": 3, "jitter": false}}),
        ),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("a", t0(10));
    sim.take();
    sim.request_cancel(id);
    assert_eq!(sim.take(), vec![Action::Cancel { id, attempt: 1 }]);
    sim.complete(id, ExecStatus::Cancelled);
    assert_eq!(sim.execs[&id].status, ExecStatus::Cancelled);
}

#[test]
fn a_failure_after_cancel_is_not_retried() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(
            every(10),
            json!({"retry": {"max_attempts": 3, "jitter": false}}),
        ),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("a", t0(10));
    sim.request_cancel(id);
    sim.complete(id, ExecStatus::Failed);
    assert_eq!(sim.execs[&id].status, ExecStatus::Failed);
    assert_eq!(sim.execs[&id].attempt, 1);
}

#[test]
fn removing_a_job_cancels_its_runs_and_drops_its_timers() {
    let mut sim = started_sim(1, t0(0));
    sim.put(spec("a", every(10)));
    sim.advance(t0(20)); // one running, one queued (a single slot)
    let running = sim.id_of("a", t0(10));
    assert_eq!(sim.engine.stats().queued, 1);
    sim.take();
    sim.remove("a");
    assert_eq!(
        sim.take(),
        vec![Action::Cancel {
            id: running,
            attempt: 1
        }]
    );
    assert_eq!(sim.engine.next_wakeup(), None);
    let stats = sim.engine.stats();
    assert_eq!((stats.jobs, stats.queued, stats.timers), (0, 0, 0));
    sim.complete(running, ExecStatus::Cancelled);
    assert_eq!(sim.engine.stats().running, 0);
}

#[test]
fn changing_a_job_rearms_from_its_new_schedule() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", every(60)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(60)));
    sim.now = t0(30);
    sim.put(spec("a", every(10)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(40)));
    sim.advance(t0(40));
    assert_eq!(Sim::fires(&sim.take()).len(), 1);
    // A change that does not touch the timing keeps the timer.
    sim.input(Input::JobUpserted(Arc::new(sim.jobs["a"].clone())));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(50)));
    assert_eq!(sim.engine.stats().timers, 1);
}

#[test]
fn an_invalid_schedule_is_ignored() {
    let mut sim = started_sim(4, t0(0));
    let mut bad = spec("bad", json!({}));
    bad.schedule = rota_core::Schedule::Cron {
        cron: "not a cron".into(),
        timezone: "UTC".into(),
    };
    sim.put(bad);
    assert_eq!(sim.engine.stats().jobs, 0);
}

#[test]
fn many_jobs_share_one_compiled_schedule_and_stay_compact() {
    let mut sim = started_sim(4, t0(0));
    for i in 0..100 {
        sim.put(spec(
            &format!("j{i}"),
            json!({"schedule": {"cron": "0 3 * * *", "timezone": "Europe/Berlin"}}),
        ));
    }
    assert_eq!(sim.engine.schedules.len(), 1);
    // Per job: the entry, plus a timer in the heap (a name-index row and the
    // name itself come on top, about 70 bytes for a short name).
    let per_job = std::mem::size_of::<jobs::JobEntry>() + timers::TimerHeap::ENTRY_BYTES;
    assert!(per_job <= 160, "a job takes {per_job} bytes");
}

// ----- invariants under random runs -----

mod random {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Step {
        Advance(u8),
        Complete(u8, bool),
        Manual(u8),
        Cancel(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u8..4).prop_map(Step::Advance),
            4 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Step::Complete(i, ok)),
            1 => any::<u8>().prop_map(Step::Manual),
            1 => any::<u8>().prop_map(Step::Cancel),
        ]
    }

    fn job() -> impl Strategy<Value = (u64, i32, u8, u8)> {
        (1u64..5, -2i32..3, 0u8..4, 0u8..3)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn no_instant_fires_twice_and_slots_hold(
            max_running in 1usize..4,
            jobs in proptest::collection::vec(job(), 1..6),
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let mut sim = started_sim(max_running, t0(0));
            let overlaps = ["allow", "skip", "buffer_one", "cancel_running"];
            for (i, (secs, priority, overlap, retries)) in jobs.iter().enumerate() {
                sim.put(spec(&format!("j{i}"), with(every(*secs), json!({
                    "priority": priority,
                    "overlap": overlaps[usize::from(*overlap)],
                    "retry": {"max_attempts": 1 + u32::from(*retries), "initial_delay": "1s", "jitter": false},
                }))));
            }
            let names: Vec<String> = sim.jobs.keys().cloned().collect();
            for step in steps {
                match step {
                    Step::Advance(s) => {
                        let to = sim.now + TimeDelta::seconds(i64::from(s));
                        sim.advance(to);
                    }
                    Step::Complete(i, ok) => {
                        if !sim.running.is_empty() {
                            let id = *sim.running.keys().nth(usize::from(i) % sim.running.len()).expect("index in range");
                            let status = if ok { ExecStatus::Succeeded } else { ExecStatus::Failed };
                            sim.complete(id, status);
                        }
                    }
                    Step::Manual(i) => {
                        let name = names[usize::from(i) % names.len()].clone();
                        sim.run_now(&name);
                    }
                    Step::Cancel(i) => {
                        let active: Vec<Ulid> = sim.execs.values().filter(|e| e.is_active()).map(|e| e.id).collect();
                        if !active.is_empty() {
                            sim.request_cancel(active[usize::from(i) % active.len()]);
                        }
                    }
                }
                prop_assert_eq!(sim.repeated_fires, 0);
                prop_assert!(sim.engine.stats().running <= max_running);
                prop_assert!(sim.running.len() <= max_running);
                // The engine's slot count matches the runs it has out.
                let starting = sim.execs.values().filter(|e| {
                    e.status == ExecStatus::Running && !sim.running.contains_key(&e.id)
                }).count();
                prop_assert_eq!(starting, 0, "every running execution is dispatched here");
                prop_assert_eq!(sim.engine.stats().running, sim.running.len());
            }
            // Queued work drains once every run completes.
            for _ in 0..1000 {
                let Some((&id, _)) = sim.running.iter().next() else { break };
                sim.complete(id, ExecStatus::Succeeded);
            }
            let queued = sim.execs.values().filter(|e| e.status == ExecStatus::Queued && e.next_attempt_at.is_none_or(|d| d <= sim.now)).count();
            prop_assert_eq!(queued, 0);
        }
    }
}

/// Scale check, run by hand: `cargo test -p rota-scheduler --release -- --ignored
/// a_million_jobs --nocapture`. Prints load and fire costs; asserts only counts.
#[test]
#[ignore = "scale measurement, run by hand in release mode"]
fn a_million_jobs() {
    const JOBS: usize = 1_000_000;
    let mut engine = Engine::new(EngineConfig::new(NODE, 10_000), counter_ids(0));
    let mut out = Vec::new();
    let rss_before = resident_bytes();
    let started = std::time::Instant::now();
    for i in 0..JOBS {
        let record = JobRecord {
            spec: spec(
                &format!("job-{i}"),
                json!({"schedule": {"cron": "*/10 * * * *", "timezone": "Europe/Berlin"}}),
            ),
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
        };
        engine.handle(Input::JobUpserted(Arc::new(record)), t0(0), &mut out);
    }
    let loaded = started.elapsed();
    let per_job = resident_bytes().saturating_sub(rss_before) / JOBS as u64;
    engine.start(t0(1), &mut out);
    assert!(out.is_empty());
    let fire_started = std::time::Instant::now();
    engine.tick(t0(600), &mut out);
    let fired = fire_started.elapsed();
    assert_eq!(Sim::fires(&out).len(), JOBS);
    eprintln!(
        "{JOBS} jobs: load {loaded:?} ({:?}/job, about {per_job} bytes/job resident), one tick firing all {fired:?} ({:?}/fire); stats {:?}",
        loaded / JOBS as u32,
        fired / JOBS as u32,
        engine.stats()
    );
}

/// Resident memory of this process (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

// ----- leader changes and node liveness -----

fn finishes(actions: &[Action]) -> Vec<Finish> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Finish(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Completes every local run but `keep`, successfully.
fn complete_all_but(sim: &mut Sim, keep: &[Ulid]) {
    let ids: Vec<Ulid> = sim
        .running
        .keys()
        .copied()
        .filter(|id| !keep.contains(id))
        .collect();
    for id in ids {
        sim.complete(id, ExecStatus::Succeeded);
    }
}

/// A run recorded as running on `node` (another node than the engine's).
fn running_on(id: u128, job: &str, node: &str, at: Timestamp) -> Execution {
    let mut e = execution(Ulid(id), job, at, Trigger::Manual, ExecStatus::Running, 0);
    e.node = Some(node.into());
    e.started_at = Some(at);
    e
}

fn job_record(spec: JobSpec) -> JobRecord {
    JobRecord {
        spec,
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: None,
    }
}

#[test]
fn a_leader_change_fires_each_instant_once_and_loses_the_dead_leaders_runs() {
    let mut sim = started_sim(100, t0(0));
    let no_retry = json!({"misfire": "run_all", "catchup_window": "1h"});
    sim.put(spec("all", with(every(1), no_retry)));
    sim.put(spec("once", with(every(1), json!({"misfire": "run_once"}))));
    sim.put(spec("skip", with(every(1), json!({"misfire": "skip"}))));
    sim.put(spec(
        "long",
        json!({"retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false}}),
    ));
    let long = sim.run_now("long");
    assert_eq!(sim.running.get(&long), Some(&1), "n1 runs the long job");
    for secs in 1..=3 {
        sim.advance(t0(secs));
        complete_all_but(&mut sim, &[long]);
    }
    // n1 fires instant 4 but dies before the batch is committed.
    let mut lost_batch = Vec::new();
    sim.engine.tick(t0(4), &mut lost_batch);
    assert_eq!(Sim::fires(&lost_batch).len(), 3, "{lost_batch:?}");

    // n2 is elected 16 s later and builds its engine from the replicated state.
    sim.take();
    sim.restart_as("n2", t0(20), &[]);
    let fired_by_b = Sim::fired_summary(&sim.take());
    let at = |job: &str| -> Vec<Timestamp> {
        fired_by_b
            .iter()
            .filter(|f| f.0 == job)
            .map(|f| f.1)
            .collect()
    };
    // run_all: every missed instant (4..=20) once; run_once: the latest only;
    // skip: only the one still on time.
    assert_eq!(at("all"), (4..=20).map(t0).collect::<Vec<_>>());
    assert_eq!(at("once"), vec![t0(20)]);
    assert_eq!(at("skip"), vec![t0(20)]);
    // The run of the dead leader is still trusted for a node timeout.
    assert_eq!(sim.execs[&long].status, ExecStatus::Running);
    assert!(
        !sim.running.contains_key(&long),
        "n1's run is not run on n2"
    );

    let mut lost = Vec::new();
    for secs in 21..=31 {
        sim.advance(t0(secs));
        lost.extend(
            finishes(&sim.take())
                .into_iter()
                .filter(|f| f.status == ExecStatus::Lost),
        );
        if secs < 30 {
            assert!(lost.is_empty(), "lost too early, at {secs}: {lost:?}");
        }
        complete_all_but(&mut sim, &[long]);
    }
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].id, long);
    assert_eq!(lost[0].error.as_deref(), Some(NODE_DOWN_ERROR));
    assert_eq!(lost[0].retry_at, Some(t0(31)));
    // Retried once, on n2, as attempt 2 of the same execution.
    assert_eq!(sim.running.get(&long), Some(&2));
    sim.complete(long, ExecStatus::Failed);
    let e = &sim.execs[&long];
    assert_eq!(
        e.status,
        ExecStatus::Failed,
        "max_attempts 2: no third attempt"
    );
    assert_eq!(e.attempts.len(), 2);
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].node.as_deref(), Some(NODE));
    assert_eq!(e.attempts[1].node.as_deref(), Some("n2"));

    // Across both leaders, no instant fired twice and none was left out.
    assert_eq!(sim.repeated_fires, 0);
    let mut count: BTreeMap<(String, Timestamp), usize> = BTreeMap::new();
    for f in Sim::fires(&sim.log) {
        *count.entry((f.job.clone(), f.scheduled_at)).or_default() += 1;
    }
    assert!(count.values().all(|n| *n == 1), "{count:?}");
    let instants = |job: &str| -> Vec<i64> {
        count
            .keys()
            .filter(|(j, _)| j == job)
            .map(|(_, at)| at.signed_duration_since(t0(0)).num_seconds())
            .collect()
    };
    assert_eq!(instants("all"), (1..=31).collect::<Vec<_>>());
    let expected: Vec<i64> = (1..=3).chain(20..=31).collect();
    assert_eq!(instants("once"), expected);
    assert_eq!(instants("skip"), expected);
}

#[test]
fn a_silent_node_loses_its_runs_and_a_reporting_one_keeps_them() {
    let mut sim = Sim::new(10, t0(0));
    let retry = json!({"retry": {"max_attempts": 3, "initial_delay": "1s", "jitter": false}});
    sim.jobs
        .insert("work".into(), job_record(spec("work", retry)));
    for e in [
        running_on(1, "work", "n2", t0(50)),
        running_on(2, "work", "n3", t0(50)),
    ] {
        sim.execs.insert(e.id, e);
    }
    // n3 reported long before this engine started: that does not count against it.
    sim.input(Input::NodeAlive { node: "n3".into() });
    sim.restart(t0(100), &[]);
    let beat = |sim: &mut Sim| sim.input(Input::NodeAlive { node: "n2".into() });
    for secs in (101..=109).step_by(4) {
        beat(&mut sim);
        sim.advance(t0(secs));
    }
    assert!(finishes(&sim.take()).is_empty());
    beat(&mut sim);
    assert_eq!(sim.engine.next_wakeup(), Some(t0(110)), "n3's deadline");
    sim.advance(t0(110));
    let lost = finishes(&sim.take());
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!((lost[0].id, lost[0].status), (Ulid(2), ExecStatus::Lost));
    assert_eq!(lost[0].retry_at, Some(t0(111)));
    // The retry runs here; n2 keeps its run for as long as it reports.
    sim.advance(t0(111));
    assert_eq!(sim.running.get(&Ulid(2)), Some(&2));
    for secs in (115..=200).step_by(5) {
        sim.advance(t0(secs));
        beat(&mut sim);
    }
    let on_n2 = |sim: &Sim| {
        let e = &sim.execs[&Ulid(1)];
        (e.attempt, e.node.clone())
    };
    assert_eq!(on_n2(&sim), (1, Some("n2".to_string())));
    // It falls silent at 200 (its last report): lost 10 s later, not before.
    sim.advance(t0(209));
    assert_eq!(on_n2(&sim), (1, Some("n2".to_string())));
    sim.advance(t0(210));
    let e = &sim.execs[&Ulid(1)];
    assert_eq!((e.attempt, e.status), (2, ExecStatus::Queued));
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].error.as_deref(), Some(NODE_DOWN_ERROR));

    // A node that reported long ago and then gets a run is judged from then on.
    sim.advance(t0(300));
    let e = running_on(3, "work", "n3", t0(300));
    sim.execs.insert(e.id, e.clone());
    sim.input(Input::Execution(Arc::new(e)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(310)));
}

#[test]
fn overlap_holds_against_runs_of_the_previous_leader() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec("skip", with(every(10), json!({"overlap": "skip"}))));
    sim.put(spec(
        "cancel",
        with(every(10), json!({"overlap": "cancel_running"})),
    ));
    sim.advance(t0(10));
    let skip_run = sim.id_of("skip", t0(10));
    let cancel_run = sim.id_of("cancel", t0(10));
    assert_eq!(sim.running.len(), 2);

    // n2 takes over while n1's runs go on (n1 keeps reporting).
    sim.restart_as("n2", t0(15), &[]);
    sim.take();
    sim.input(Input::NodeAlive { node: NODE.into() });
    sim.advance(t0(20));
    let actions = sim.take();
    let fired = Sim::fired_summary(&actions);
    assert!(
        fired.contains(&("skip".into(), t0(20), Trigger::Schedule, false, true)),
        "skipped while n1's run is active: {fired:?}"
    );
    // cancel_running asks for the run on n1 to stop (committed as a Cancel).
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Cancel { id, attempt: 1 } if *id == cancel_run)),
        "{actions:?}"
    );
    // n1 reports the end of its skip run; the next instant runs on n2.
    let done = Finish {
        id: skip_run,
        attempt: 1,
        status: ExecStatus::Succeeded,
        at: t0(21),
        exit_code: Some(0),
        error: None,
        output: None,
        output_truncated: false,
        retry_at: None,
    };
    if let Some(input) = sim.apply_finish(done) {
        sim.input(input);
    }
    sim.input(Input::NodeAlive { node: NODE.into() });
    sim.advance(t0(30));
    let fired = Sim::fired_summary(&sim.take());
    assert!(
        fired.contains(&("skip".into(), t0(30), Trigger::Schedule, true, false)),
        "{fired:?}"
    );
}

// ----- placement on other nodes -----

fn register(sim: &mut Sim, node: &str, tags: &[(&str, &str)], max_running: u32) {
    sim.input(Input::NodeRegistered(Arc::new(NodeRecord {
        node: node.into(),
        incarnation: Ulid(7),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        max_running,
        url: None,
        registered_at: sim.now,
        revision: 1,
    })));
}

/// Where each execution of `job` is recorded as running, in id order.
fn placed(sim: &Sim, job: &str) -> Vec<Option<String>> {
    sim.execs
        .values()
        .filter(|e| e.job == job)
        .map(|e| (e.status == ExecStatus::Running).then(|| e.node.clone().unwrap_or_default()))
        .collect()
}

/// A worker's run ends (the worker's `Finish` applied), as the store announces it.
fn finish_remote(sim: &mut Sim, id: Ulid) {
    let e = sim.execs.get_mut(&id).expect("execution");
    e.status = ExecStatus::Succeeded;
    e.finished_at = Some(sim.now);
    let e = Arc::new(e.clone());
    sim.input(Input::Execution(e));
}

#[test]
fn runs_go_to_the_least_loaded_node_whose_tags_match() {
    let mut sim = started_sim(2, t0(0));
    register(&mut sim, "n2", &[("zone", "a")], 2);
    register(&mut sim, "n3", &[("zone", "b")], 2);
    sim.put(spec("zoned", json!({"tags": {"zone": "a"}})));
    sim.put(spec("any", json!({})));

    let zoned: Vec<Ulid> = (0..3).map(|_| sim.run_now("zoned")).collect();
    // Only n2 matches; its two slots fill, the third run waits.
    assert_eq!(
        placed(&sim, "zoned"),
        vec![Some("n2".into()), Some("n2".into()), None]
    );
    assert!(sim.running.is_empty(), "nothing of `zoned` runs here");

    // Without tags: this node wins a tie, then the least loaded goes first.
    for _ in 0..4 {
        sim.run_now("any");
    }
    assert_eq!(
        placed(&sim, "any"),
        vec![
            Some(NODE.into()),
            Some("n3".into()),
            Some(NODE.into()),
            Some("n3".into())
        ]
    );
    assert_eq!(sim.running.len(), 2, "the runs placed here were dispatched");
    let remote_starts = sim
        .log
        .iter()
        .filter(|a| matches!(a, Action::Dispatch { id, .. } if sim.execs[id].node.as_deref() != Some(NODE)))
        .count();
    assert_eq!(
        remote_starts, 0,
        "runs placed elsewhere are not dispatched here"
    );

    // A run on n2 ends: the waiting one takes its slot there.
    finish_remote(&mut sim, zoned[0]);
    assert_eq!(sim.execs[&zoned[2]].node.as_deref(), Some("n2"));
    assert_eq!(sim.execs[&zoned[2]].status, ExecStatus::Running);
}

#[test]
fn a_silent_worker_gets_no_runs_until_it_reports_again() {
    let mut sim = started_sim(1, t0(0));
    register(&mut sim, "n2", &[("gpu", "yes")], 4);
    sim.put(spec("train", json!({"tags": {"gpu": "yes"}})));
    // n2 registered at 0 and said nothing since: at 10 s it counts as down.
    sim.advance(t0(10));
    let waiting = sim.run_now("train");
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Queued);
    assert!(sim.running.is_empty(), "no other node has the tag");
    sim.input(Input::NodeAlive { node: "n2".into() });
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Running);
    assert_eq!(sim.execs[&waiting].node.as_deref(), Some("n2"));
}

#[test]
fn a_worker_that_dies_under_a_run_loses_it_and_the_retry_goes_elsewhere() {
    let mut sim = started_sim(1, t0(0));
    register(&mut sim, "n2", &[("zone", "a")], 1);
    register(&mut sim, "n3", &[("zone", "a")], 1);
    let retry = json!({"tags": {"zone": "a"}, "retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false}});
    sim.put(spec("job", retry));
    let id = sim.run_now("job");
    assert_eq!(
        sim.execs[&id].node.as_deref(),
        Some("n2"),
        "names break the tie"
    );
    // n3 keeps reporting, n2 falls silent.
    for secs in [3, 6, 9] {
        sim.advance(t0(secs));
        sim.input(Input::NodeAlive { node: "n3".into() });
    }
    sim.advance(t0(12));
    let e = &sim.execs[&id];
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].node.as_deref(), Some("n2"));
    assert_eq!((e.attempt, e.status), (2, ExecStatus::Running));
    assert_eq!(
        e.node.as_deref(),
        Some("n3"),
        "the retry avoids the silent node"
    );
}
