//! Engine tests: a fake clock, the real store (its apply logic, on a temporary
//! redb file) that commits what the engine asks for and feeds the resulting events
//! back as the runtime does, and assertions on the actions. No sleeps anywhere.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use rota_core::RunOutcome;
use rota_core::{
    ClientRequest, Command, EventKind, ExecStatus, Execution, JobRecord, JobSpec, Response,
    StoreEvent, Trigger,
};
use rota_store::{LogEntry, Store};
use serde_json::json;
use tokio::sync::broadcast;
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

/// The engine over a real store (the state machine's own apply logic, in a
/// temporary directory), a record of everything the engine asked for, and the
/// attempts "running" on this node.
struct Sim {
    engine: Engine,
    now: Timestamp,
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    events: broadcast::Receiver<Arc<StoreEvent>>,
    /// The log index of the last command applied.
    index: u64,
    /// The store's jobs and executions as its events announced them (read-only for
    /// tests; seeding goes through the `seed_*` methods).
    jobs: BTreeMap<String, JobRecord>,
    execs: BTreeMap<Ulid, Execution>,
    /// Schedule or catch-up fires of a known job the store refused as repeats: must
    /// stay 0.
    repeated_fires: usize,
    log: Vec<Action>,
    seen: usize,
    /// Dispatched, not yet completed: id -> attempt.
    running: BTreeMap<Ulid, u32>,
    dispatched: HashSet<(Ulid, u32)>,
    max_running: usize,
    /// The engines' look-ahead window (none unless a test asks for one).
    fire_ahead: std::time::Duration,
    /// Engines built after the first (each draws ids from its own range).
    restarts: u128,
    /// Ids of the executions seeding creates (far from the engines' ranges).
    next_seed: u128,
    /// Every public event the store published, oldest first: the event log a new
    /// engine replays after its [`Engine::event_floor`].
    published: Vec<Arc<rota_core::event::Event>>,
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
        Self::with_fire_ahead(max_running, now, std::time::Duration::ZERO)
    }

    fn with_fire_ahead(
        max_running: usize,
        now: Timestamp,
        fire_ahead: std::time::Duration,
    ) -> Self {
        let mut cfg = EngineConfig::new(NODE, max_running);
        cfg.fire_ahead = fire_ahead;
        let engine = Engine::new(cfg, counter_ids(0));
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.redb")).expect("open store");
        let events = store.subscribe();
        Self {
            engine,
            now,
            _dir: dir,
            store,
            events,
            index: 0,
            jobs: BTreeMap::new(),
            execs: BTreeMap::new(),
            repeated_fires: 0,
            log: Vec::new(),
            seen: 0,
            running: BTreeMap::new(),
            dispatched: HashSet::new(),
            max_running,
            fire_ahead,
            restarts: 0,
            next_seed: u128::from(u64::MAX),
            published: Vec::new(),
        }
    }

    /// Applies `command` at the next log index with the clock at `now`, and answers
    /// the store's response and the engine inputs its events make.
    fn apply(&mut self, command: Command) -> (Response, Vec<Input>) {
        self.index += 1;
        let req = ClientRequest {
            session: None,
            at: self.now,
            command,
        };
        let mut responses = self
            .store
            .apply(
                &[LogEntry {
                    index: self.index,
                    request: Some(&req),
                    members: None,
                }],
                b"meta",
            )
            .expect("apply");
        assert_eq!(responses.len(), 1);
        let mut inputs = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            match &event.kind {
                EventKind::JobPut(job) => {
                    self.jobs.insert(job.spec.name.clone(), (**job).clone());
                    inputs.push(Input::JobUpserted(job.clone()));
                }
                EventKind::JobDeleted { name } => {
                    self.jobs.remove(name);
                    inputs.push(Input::JobRemoved(name.clone()));
                }
                EventKind::Execution(e) => {
                    self.execs.insert(e.id, (**e).clone());
                    inputs.push(Input::Execution(e.clone()));
                }
                EventKind::Published(event) => {
                    self.published.push(event.clone());
                    inputs.push(Input::Event(event.clone()));
                }
                _ => {}
            }
        }
        (responses.remove(0), inputs)
    }

    /// Applies `command` and hands the engine what it caused.
    fn apply_and_feed(&mut self, command: Command) -> Response {
        let (response, inputs) = self.apply(command);
        for input in inputs {
            self.input(input);
        }
        response
    }

    /// Applies `command` at `at` without telling the engine: state an earlier
    /// leader left behind.
    fn seed(&mut self, at: Timestamp, command: Command) -> Response {
        let now = std::mem::replace(&mut self.now, at);
        let (response, _) = self.apply(command);
        self.now = now;
        response
    }

    /// Puts a job as it was left: created at `created_at`, its high-water mark at
    /// `last_scheduled_at` (a fire of that instant, skipped).
    fn seed_job(&mut self, record: JobRecord) {
        let name = record.spec.name.clone();
        self.seed(record.created_at, Command::PutJob { spec: record.spec });
        if let Some(at) = record.last_scheduled_at {
            let id = self.seed_id();
            self.seed(
                at,
                Command::Fire {
                    fires: vec![Fire {
                        ahead: false,
                        id,
                        job: name,
                        scheduled_at: at,
                        trigger: Trigger::Schedule,
                        start: None,
                        skip_reason: Some("seeded high-water mark".into()),
                        event_revision: None,
                        event_seq: 0,
                    }],
                },
            );
        }
    }

    /// Records an active execution as an earlier leader left it (queued or running,
    /// at its attempt), through the commands that would have made it.
    fn seed_execution(&mut self, e: &Execution) {
        let at = e.scheduled_at;
        let fired = self.seed(
            at,
            Command::Fire {
                fires: vec![Fire {
                    ahead: false,
                    id: e.id,
                    job: e.job.clone(),
                    scheduled_at: at,
                    trigger: e.trigger,
                    start: None,
                    skip_reason: None,
                    event_revision: e.event_revision,
                    event_seq: e.event_seq,
                }],
            },
        );
        assert!(
            matches!(&fired, Response::Fired { outcomes } if outcomes.iter().all(|o| o.created)),
            "seeding {} failed: {fired:?}",
            e.id
        );
        for attempt in 1..e.attempt {
            let start = Start {
                id: e.id,
                attempt,
                node: "seed".into(),
                at,
            };
            self.seed(
                at,
                Command::Start {
                    starts: vec![start],
                },
            );
            let finish = Finish {
                exit_code: Some(1),
                error: Some("seeded earlier attempt".into()),
                retry_at: Some(e.next_attempt_at.unwrap_or(at)),
                ..finish(e.id, attempt, ExecStatus::Failed, at)
            };
            self.seed(
                at,
                Command::Finish {
                    finishes: vec![finish],
                },
            );
        }
        if e.status == ExecStatus::Running {
            let start = Start {
                id: e.id,
                attempt: e.attempt,
                node: e.node.clone().expect("a running execution has a node"),
                at: e.started_at.unwrap_or(at),
            };
            self.seed(
                at,
                Command::Start {
                    starts: vec![start],
                },
            );
        }
        let stored = &self.execs[&e.id];
        assert_eq!(
            (stored.status, stored.attempt, stored.node.as_deref()),
            (e.status, e.attempt, e.node.as_deref()),
            "seeded execution {} differs from the one asked for",
            e.id
        );
    }

    fn seed_id(&mut self) -> Ulid {
        self.next_seed += 1;
        Ulid(self.next_seed)
    }

    /// A fresh engine (a restart) over the same store, loaded and started at `now`;
    /// `adopt` are local attempts handed over.
    fn restart(&mut self, now: Timestamp, adopt: &[LocalAttempt]) {
        self.restart_as(NODE, now, adopt);
    }

    /// A fresh engine on `node` (a restart, or another node taking the lead) over
    /// the same store, loaded from it as the runtime loads it.
    fn restart_as(&mut self, node: &str, now: Timestamp, adopt: &[LocalAttempt]) {
        self.now = now;
        let mut cfg = EngineConfig::new(node, self.max_running);
        cfg.fire_ahead = self.fire_ahead;
        let mut engine = Engine::new(cfg, counter_ids(1_000_000 * (self.restarts + 1)));
        self.restarts += 1;
        for a in adopt {
            engine.adopt(*a);
        }
        let mut out = Vec::new();
        for job in self.store.list_jobs().expect("jobs") {
            engine.handle(Input::JobUpserted(Arc::new(job)), now, &mut out);
        }
        for e in self.store.active_executions().expect("active executions") {
            engine.handle(Input::Execution(Arc::new(e)), now, &mut out);
        }
        engine.start(now, &mut out);
        // The events published while no engine ran, as the runtime replays them.
        if let Some(floor) = engine.event_floor() {
            for event in self.published.iter().filter(|e| e.revision > floor) {
                engine.handle(Input::Event(event.clone()), now, &mut out);
            }
        }
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

    /// Creates or replaces a job (the store keeps its high-water mark).
    fn put(&mut self, spec: JobSpec) {
        self.apply_and_feed(Command::PutJob { spec });
    }

    fn remove(&mut self, name: &str) {
        self.apply_and_feed(Command::DeleteJob {
            name: name.to_string(),
            if_revision: None,
        });
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
            started_at: None,
        }));
    }

    /// Someone asks to cancel `id` (the API's `Command::Cancel`).
    fn request_cancel(&mut self, id: Ulid) {
        self.apply_and_feed(Command::Cancel { id });
    }

    /// A worker's run ends: its `Finish`, committed by that worker, is applied.
    fn finish_remote(&mut self, status: ExecStatus, id: Ulid) {
        let attempt = self.execs[&id].attempt;
        self.apply_and_feed(Command::Finish {
            finishes: vec![finish(id, attempt, status, self.now)],
        });
    }

    /// A manual run, as the API creates it.
    fn run_now(&mut self, job: &str) -> Ulid {
        let id = Ulid(u128::from(u32::MAX) + self.execs.len() as u128);
        let fire = Fire {
            id,
            job: job.to_string(),
            scheduled_at: self.now,
            trigger: Trigger::Manual,
            start: None,
            skip_reason: None,
            event_revision: None,
            event_seq: 0,
            ahead: false,
        };
        self.apply_and_feed(Command::Fire { fires: vec![fire] });
        id
    }

    /// Carries out actions as the runtime does: the commits of one turn in one
    /// `Command::Batch`, in order, then the events they caused, until nothing more
    /// comes.
    fn process(&mut self, actions: Vec<Action>) {
        let mut commands = Vec::new();
        for action in actions {
            self.log.push(action.clone());
            match action {
                Action::Fire(f) => match commands.last_mut() {
                    Some(Command::Fire { fires }) => fires.push(f),
                    _ => commands.push(Command::Fire { fires: vec![f] }),
                },
                Action::Start(s) => match commands.last_mut() {
                    Some(Command::Start { starts }) => starts.push(s),
                    _ => commands.push(Command::Start { starts: vec![s] }),
                },
                Action::Finish(f) => match commands.last_mut() {
                    Some(Command::Finish { finishes }) => finishes.push(f),
                    _ => commands.push(Command::Finish { finishes: vec![f] }),
                },
                Action::Dispatch { id, attempt, .. } => {
                    assert!(
                        self.dispatched.insert((id, attempt)),
                        "dispatched twice: {id} attempt {attempt}"
                    );
                    self.running.insert(id, attempt);
                }
                Action::DeleteJob { job, revision } => commands.push(Command::DeleteJob {
                    name: job,
                    if_revision: Some(revision),
                }),
                // A local run is stopped by its token (the test completes it); a run
                // elsewhere gets a committed cancel request.
                Action::Cancel { id, attempt } => {
                    if self.running.get(&id) != Some(&attempt) {
                        commands.push(Command::Cancel { id });
                    }
                }
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
        if commands.is_empty() {
            return;
        }
        // What each fire was for, before applying changes the job table.
        let known: Vec<Vec<bool>> = commands
            .iter()
            .map(|c| match c {
                Command::Fire { fires } => fires
                    .iter()
                    .map(|f| self.jobs.contains_key(&f.job))
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        let (response, mut inputs) = self.apply(Command::Batch {
            commands: commands.clone(),
        });
        let Response::Batch { responses } = response else {
            panic!("a batch answers a batch, not {response:?}");
        };
        for ((command, response), known) in commands.iter().zip(&responses).zip(&known) {
            let (Command::Fire { fires }, Response::Fired { outcomes }) = (command, response)
            else {
                continue;
            };
            for ((f, outcome), known) in fires.iter().zip(outcomes).zip(known) {
                if outcome.created {
                    continue;
                }
                if *known && matches!(f.trigger, Trigger::Schedule | Trigger::Catchup) {
                    self.repeated_fires += 1;
                }
                inputs.push(Input::FireDropped { id: f.id });
            }
        }
        for input in inputs {
            self.input(input);
        }
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

    fn finishes(actions: &[Action]) -> Vec<&Finish> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Finish(f) => Some(f),
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
        event_revision: None,
        event_seq: 0,
        run: None,
        result: None,
        usage: None,
        triggered_by: None,
    }
}

/// The end of an attempt, with nothing but its status.
fn finish(id: Ulid, attempt: u32, status: ExecStatus, at: Timestamp) -> Finish {
    Finish {
        id,
        attempt,
        status,
        at,
        exit_code: None,
        error: None,
        retry_at: None,
        output: None,
        output_truncated: false,
        artifacts: Vec::new(),
        result: None,
        started_at: None,
        usage: None,
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

mod ahead;
mod cancel;
mod dynamic;
mod events;
mod firing;
mod leader_changes;
mod misfire;
mod overlap;
mod placement;
mod random;
mod retries;
mod slots;
