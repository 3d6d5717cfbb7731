//! The pure scheduler engine: inputs and the time in, actions out.
//!
//! [`Engine`] does no I/O, reads no clock and draws no random number (execution ids
//! come from an id source the caller hands in), so every rule here (firing, DST,
//! misfire, overlap, slots, priorities, retries, recovery) is tested by feeding
//! [`Input`]s and a fake clock and looking at the [`Action`]s.
//!
//! What it keeps:
//! - per job a compact entry (shared compiled schedule, policies, high-water mark)
//!   in a slab, and one min-heap of timers (schedule instants and retry due times)
//!   with lazy invalidation, so a fire is O(log n) with a million jobs;
//! - every active execution it knows of, with where it stands from this engine's
//!   point of view ([`Phase`]);
//! - a ready queue of queued executions (priority, then FIFO) feeding the slots of
//!   this node (`max_running`) and of the other registered workers
//!   ([`Input::NodeRegistered`]): each run goes to the least-loaded live node whose
//!   tags include its job's; a queued run whose job's overlap rule says "wait" is
//!   parked per job until the job has nothing running;
//! - per other node that has runs on record, when it last reported
//!   ([`Input::NodeAlive`]): a node silent for [`EngineConfig::node_timeout`] is
//!   presumed dead and its runs are finished as `lost` (and retried per policy). A
//!   node is only judged on time during which it had runs on record, and a new
//!   engine gives every node a full timeout from its start, so a leader change never
//!   loses a run that is still going.
//!
//! The runtime commits `Fire`, `Start` and `Finish` actions in the order given, hands
//! `Dispatch`ed attempts to executors, and feeds back what the store applied
//! ([`Input::Execution`]) and what the executors answered ([`Input::Completed`]).

mod jobs;
mod misfire;
mod timers;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use rota_core::command::tags_match;
use rota_core::retry::retry_at;
use rota_core::RunOutcome;
use rota_core::{
    ExecStatus, Execution, Finish, Fire, JobRecord, Misfire, NodeRecord, Overlap, RetryPolicy,
    Start, StartInfo, Timestamp, Trigger,
};
use tracing::{debug, info, warn};
use ulid::Ulid;

use jobs::{JobEntry, Jobs, ScheduleCache};
use timers::{TimerHeap, TimerKey};

/// An instant fired later than this after it was due is a misfire.
pub const DEFAULT_MISFIRE_THRESHOLD: Duration = Duration::from_secs(5);
/// Most missed instants `run_all` fires for one job at once (the newest ones).
pub const MAX_CATCHUP_FIRES: usize = 10_000;
/// Error of an attempt that was running on this node when it restarted.
pub const LOST_ERROR: &str = rota_core::execution::NODE_RESTARTED;
/// Error of an attempt whose node stopped reporting (crashed, or cut off).
pub const NODE_DOWN_ERROR: &str = "the node running the attempt stopped reporting";
/// How long another node may stay silent while runs are recorded on it.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(10);
/// Skip reason of an instant fired while an earlier run of the job was active.
pub const SKIP_ACTIVE: &str = "previous run still active";
/// Skip reason of a `buffer_one` instant that found a run already waiting.
pub const SKIP_BUFFER_FULL: &str = "previous run still active and one run already waiting";
const CANCELLED_BEFORE_START: &str = "cancelled before it started";

/// How an engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name: recorded on started executions; an execution `running` on
    /// it that this engine did not start is lost at [`Engine::start`].
    pub node: String,
    /// Most attempts running at once on this node.
    pub max_running: usize,
    /// This node's tags: jobs whose `tags` are all among them may run here.
    pub tags: BTreeMap<String, String>,
    /// How late an instant may fire and still count as on time.
    pub misfire_threshold: Duration,
    /// How long another node with runs on record may go without reporting
    /// ([`Input::NodeAlive`]) before its runs are lost.
    pub node_timeout: Duration,
}

impl EngineConfig {
    /// A config with the default misfire threshold.
    pub fn new(node: impl Into<String>, max_running: usize) -> Self {
        Self {
            node: node.into(),
            max_running,
            tags: BTreeMap::new(),
            misfire_threshold: DEFAULT_MISFIRE_THRESHOLD,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// Where new execution ids come from (`Ulid::generate` in the runtime, a counter in
/// tests).
pub type IdSource = Box<dyn FnMut() -> Ulid + Send>;

/// An attempt that ran on this node and ended (its outcome is not committed yet).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: Ulid,
    pub attempt: u32,
    pub outcome: RunOutcome,
    /// What the attempt printed, already cut to the job's limit.
    pub output: String,
    pub output_truncated: bool,
}

/// What the engine is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A job was created or changed (store event or initial load).
    JobUpserted(Arc<JobRecord>),
    /// A job was deleted.
    JobRemoved(String),
    /// An execution was created or changed (store event or initial load).
    Execution(Arc<Execution>),
    /// An attempt that ran on this node ended.
    Completed(Completion),
    /// A `Fire` this engine emitted created nothing (the instant had fired already,
    /// or the job was gone when it was applied).
    FireDropped { id: Ulid },
    /// Another node's scheduler reported that it is alive (a committed heartbeat):
    /// the runs recorded on it are going on.
    NodeAlive { node: String },
    /// A node registered as a worker (store event or initial load): runs may be
    /// placed on it while it reports.
    NodeRegistered(Arc<NodeRecord>),
}

/// What the engine asks for. `Fire`, `Start` and `Finish` are committed in the order
/// given (a `Start` may name an execution whose `Fire` comes earlier in the same
/// batch).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Fire(Fire),
    Start(Start),
    Finish(Finish),
    /// Run this attempt on this node: the store shows it `running` here, started by
    /// this engine.
    Dispatch {
        id: Ulid,
        attempt: u32,
        job: String,
        scheduled_at: Timestamp,
        trigger: Trigger,
    },
    /// Stop this attempt: cancel the local run, or, when it runs on another node,
    /// commit `Command::Cancel`.
    Cancel {
        id: Ulid,
        attempt: u32,
    },
}

impl Action {
    /// Whether the runtime commits this action through Raft.
    pub fn is_commit(&self) -> bool {
        matches!(self, Action::Fire(_) | Action::Start(_) | Action::Finish(_))
    }
}

/// An attempt of this node that a new engine takes over from an earlier one (after
/// a rebuild or a leadership change), so that it is neither lost nor run twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAttempt {
    pub id: Ulid,
    pub attempt: u32,
    /// Handed to an executor already (otherwise only started: dispatch it once the
    /// store shows it running here).
    pub dispatched: bool,
}

/// Figures for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub jobs: usize,
    /// Slots in use on this node.
    pub running: usize,
    /// Executions waiting: for a slot, for their job's overlap rule, or for a retry.
    pub queued: usize,
    /// Armed timers (job instants and retries).
    pub timers: usize,
    pub fired_total: u64,
}

/// Position in the ready queue: higher priority first, then first come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ReadyKey {
    priority: Reverse<i32>,
    seq: u64,
}

/// Where an active execution stands, from this engine's point of view. The
/// execution's current attempt is [`Tracked::attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Queued and waiting for a slot.
    Ready(ReadyKey),
    /// Queued, waiting until its job has nothing running (overlap rule).
    Blocked(ReadyKey),
    /// Queued as a retry that is due later.
    RetryWait(Timestamp),
    /// This engine started it (holds a slot of the node it chose; `here` when that
    /// is this node) and waits for the store to show it running.
    Starting { here: bool },
    /// Running; `here` when dispatched on this node (holds a slot).
    Running { here: bool },
    /// Running on this node at load, not started by this engine: lost at `start`.
    Orphan,
    /// This engine emitted its `Finish`; `retry` when it will come back queued.
    Finishing { retry: bool },
}

/// The ways a phase counts.
#[derive(Debug, Clone, Copy, Default)]
struct Class {
    /// Counts for overlap: the job has a run on record.
    active: bool,
    /// The job has a run going (blocks queued runs of non-`allow` jobs).
    running: bool,
    /// A run of the job waits (for `buffer_one`).
    waiting: bool,
    /// Holds one of this node's slots.
    slot: bool,
    /// Counts as queued in the stats.
    queued: bool,
}

impl Phase {
    fn class(self) -> Class {
        match self {
            Phase::Ready(_) | Phase::Blocked(_) | Phase::RetryWait(_) => Class {
                active: true,
                waiting: true,
                queued: true,
                ..Class::default()
            },
            Phase::Starting { here } => Class {
                active: true,
                running: true,
                slot: here,
                ..Class::default()
            },
            Phase::Running { here } => Class {
                active: true,
                running: true,
                slot: here,
                ..Class::default()
            },
            Phase::Orphan => Class {
                active: true,
                running: true,
                ..Class::default()
            },
            Phase::Finishing { retry } => Class {
                active: retry,
                waiting: retry,
                ..Class::default()
            },
        }
    }
}

/// An active execution the engine follows.
#[derive(Debug)]
struct Tracked {
    job: Arc<str>,
    scheduled_at: Timestamp,
    trigger: Trigger,
    priority: i32,
    attempt: u32,
    phase: Phase,
    /// A cancel was decided here or requested on record; a start turns into a
    /// cancelled finish, a failure is not retried.
    cancel: bool,
    /// The node of the current attempt, as recorded (for runs elsewhere).
    node: Option<Arc<str>>,
}

/// Another node, as far as liveness goes.
#[derive(Debug)]
struct RemoteNode {
    /// When it last reported, or when it last got runs on record after having none
    /// (by this engine's clock): it is judged from the later of the two.
    last_seen: Timestamp,
    /// Executions running on it (phase `Running { here: false }`).
    running: HashSet<Ulid>,
}

/// Another node that registered as a worker.
#[derive(Debug)]
struct Worker {
    tags: BTreeMap<String, String>,
    max_running: usize,
}

/// Per job with active executions: counts by [`Class`] and the parked runs.
#[derive(Debug, Default)]
struct Activity {
    ids: HashSet<Ulid>,
    active: u32,
    running: u32,
    waiting: u32,
    blocked: Vec<Ulid>,
}

impl Activity {
    fn count(&mut self, class: Class, up: bool) {
        let step = |n: &mut u32, on: bool| {
            if on {
                *n = if up { *n + 1 } else { n.saturating_sub(1) };
            }
        };
        step(&mut self.active, class.active);
        step(&mut self.running, class.running);
        step(&mut self.waiting, class.waiting);
    }
}

/// The scheduler engine. See the module documentation.
pub struct Engine {
    cfg: EngineConfig,
    ids: IdSource,
    /// Set by [`Engine::start`]: before it the engine only records what it loads.
    started: bool,
    jobs: Jobs,
    schedules: ScheduleCache,
    timers: TimerHeap,
    armed_jobs: usize,
    retry_timers: usize,
    execs: HashMap<Ulid, Tracked>,
    activity: HashMap<Arc<str>, Activity>,
    ready: BTreeMap<ReadyKey, Ulid>,
    queued: usize,
    running_here: usize,
    /// Local attempts whose record ended or moved on while they still run: cancelled,
    /// holding their slot until their completion comes.
    zombies: HashSet<(Ulid, u32)>,
    /// Local attempts handed over before `start`.
    adopted: HashMap<Ulid, LocalAttempt>,
    /// Executions found running here at load that nobody here runs.
    orphans: Vec<Ulid>,
    next_seq: u64,
    fired_total: u64,
    /// Fires of the current call, emitted at its end so that slots go by priority
    /// across all instants due together.
    turn_fires: Vec<Fire>,
    turn_index: HashMap<Ulid, usize>,
    /// Other nodes with runs on record, or that reported.
    remote: HashMap<Arc<str>, RemoteNode>,
    /// Other nodes registered as workers: where runs may be placed.
    workers: BTreeMap<Arc<str>, Worker>,
    /// The time of the latest call (the engine has no clock of its own).
    now: Timestamp,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .field("started", &self.started)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(cfg: EngineConfig, ids: IdSource) -> Self {
        Self {
            cfg,
            ids,
            started: false,
            jobs: Jobs::default(),
            schedules: ScheduleCache::default(),
            timers: TimerHeap::default(),
            armed_jobs: 0,
            retry_timers: 0,
            execs: HashMap::new(),
            activity: HashMap::new(),
            ready: BTreeMap::new(),
            queued: 0,
            running_here: 0,
            zombies: HashSet::new(),
            adopted: HashMap::new(),
            orphans: Vec::new(),
            next_seq: 0,
            fired_total: 0,
            turn_fires: Vec::new(),
            turn_index: HashMap::new(),
            remote: HashMap::new(),
            workers: BTreeMap::new(),
            now: Timestamp::MIN_UTC,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Takes over an attempt of this node from an earlier engine. Only before
    /// [`Engine::start`]; later calls are ignored.
    pub fn adopt(&mut self, attempt: LocalAttempt) {
        if self.started {
            warn!(execution = %attempt.id, "adopt after start ignored");
            return;
        }
        self.adopted.insert(attempt.id, attempt);
    }

    /// The attempts this engine started or runs on this node, for a successor.
    pub fn local_attempts(&self) -> Vec<LocalAttempt> {
        let mut out: Vec<LocalAttempt> = self
            .execs
            .iter()
            .filter_map(|(id, t)| {
                let dispatched = match t.phase {
                    Phase::Starting { here: true } => false,
                    Phase::Running { here: true } => true,
                    _ => return None,
                };
                Some(LocalAttempt {
                    id: *id,
                    attempt: t.attempt,
                    dispatched,
                })
            })
            .collect();
        out.extend(self.zombies.iter().map(|(id, attempt)| LocalAttempt {
            id: *id,
            attempt: *attempt,
            dispatched: true,
        }));
        out
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            jobs: self.jobs.len(),
            running: self.running_here,
            queued: self.queued,
            timers: self.armed_jobs + self.retry_timers,
            fired_total: self.fired_total,
        }
    }

    /// When [`Engine::tick`] has something to do next.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let timer = self.timers.peek().map(|(at, _)| at);
        match (timer, self.next_node_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The earliest time a node with runs on record is presumed dead.
    fn next_node_deadline(&self) -> Option<Timestamp> {
        let timeout = TimeDelta::from_std(self.cfg.node_timeout).unwrap_or(TimeDelta::MAX);
        self.remote
            .values()
            .filter(|r| !r.running.is_empty())
            .map(|r| {
                r.last_seen
                    .checked_add_signed(timeout)
                    .unwrap_or(Timestamp::MAX_UTC)
            })
            .min()
    }

    /// Ends the initial load (all jobs, then all active executions): attempts running
    /// here that nobody here runs are lost, missed instants go to each job's misfire
    /// policy, and queued executions start as slots allow.
    pub fn start(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        if self.started {
            return;
        }
        self.started = true;
        self.now = self.now.max(now);
        // Whatever the last leader knew of the other nodes is gone with it: each gets
        // a full timeout from now to report.
        for r in self.remote.values_mut() {
            r.last_seen = r.last_seen.max(now);
        }
        // Handed-over runs whose record was not loaded as running here have ended on
        // record: stop them, keeping their slot until they report back.
        for (id, a) in std::mem::take(&mut self.adopted) {
            if a.dispatched {
                self.zombie(id, a.attempt, out);
            }
        }
        for id in std::mem::take(&mut self.orphans) {
            if matches!(self.execs.get(&id), Some(t) if t.phase == Phase::Orphan) {
                self.mark_lost(id, LOST_ERROR, now, out);
            }
        }
        info!(
            jobs = self.jobs.len(),
            active = self.execs.len(),
            "scheduler engine started"
        );
        self.tick(now, out);
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now: Timestamp, out: &mut Vec<Action>) {
        self.now = self.now.max(now);
        match input {
            Input::JobUpserted(record) => self.upsert_job(&record, now),
            Input::JobRemoved(name) => self.remove_job(&name, out),
            Input::Execution(e) => self.on_execution(&e, now, out),
            Input::Completed(c) => self.on_completed(c, now, out),
            Input::FireDropped { id } => {
                if self.untrack(id).is_some() {
                    debug!(execution = %id, "fire created nothing");
                }
            }
            Input::NodeAlive { node } => self.node_alive(&node),
            Input::NodeRegistered(record) => {
                if record.node != self.cfg.node {
                    let name: Arc<str> = Arc::from(record.node.as_str());
                    self.workers.insert(
                        name,
                        Worker {
                            tags: record.tags.clone(),
                            max_running: usize::try_from(record.max_running).unwrap_or(usize::MAX),
                        },
                    );
                    self.node_alive(&record.node);
                }
            }
        }
        self.end_turn(now, out);
    }

    fn node_alive(&mut self, node: &str) {
        if node != self.cfg.node {
            let now = self.now;
            self.remote
                .entry(Arc::from(node))
                .and_modify(|r| r.last_seen = r.last_seen.max(now))
                .or_insert_with(|| RemoteNode {
                    last_seen: now,
                    running: HashSet::new(),
                });
        }
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        if !self.started {
            return;
        }
        self.now = self.now.max(now);
        self.lose_silent_nodes(now, out);
        while let Some((at, key)) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match key {
                TimerKey::Job { slot, gen } => self.job_due(slot, gen, at, now, out),
                TimerKey::Retry { id, attempt } => {
                    self.retry_due(TimerKey::retry_id(id), attempt, at)
                }
            }
        }
        self.end_turn(now, out);
    }

    // ----- jobs and timers -----

    fn upsert_job(&mut self, record: &JobRecord, now: Timestamp) {
        let spec = &record.spec;
        let schedule = match self.schedules.get(&spec.schedule) {
            Ok(s) => s,
            Err(err) => {
                warn!(job = %spec.name, error = %err, "ignoring a job whose schedule does not compile");
                return;
            }
        };
        let high_water = record.last_scheduled_at;
        match self.jobs.slot_of(&spec.name) {
            Some(slot) => {
                let Some(job) = self.jobs.at_mut(slot) else {
                    return;
                };
                let timing_same = Arc::ptr_eq(&job.schedule, &schedule)
                    && job.anchor == record.updated_at
                    && job.paused == spec.paused
                    && high_water <= job.high_water;
                let resumed = job.paused && !spec.paused;
                job.schedule = schedule;
                job.anchor = record.updated_at;
                job.high_water = job.high_water.max(high_water);
                job.catchup_window = spec.catchup_window.0;
                job.retry = spec.retry.clone().map(Box::new);
                job.priority = spec.priority;
                job.tags = (!spec.tags.is_empty()).then(|| Arc::new(spec.tags.clone()));
                job.overlap = spec.overlap;
                job.misfire = spec.misfire;
                job.paused = spec.paused;
                if !timing_same {
                    let mut from = job.high_water.map_or(job.anchor, |h| h.max(job.anchor));
                    if resumed {
                        // Instants that passed while the job was paused are not missed.
                        from = from.max(now);
                    }
                    debug!(job = %spec.name, "job changed: timer re-armed");
                    self.arm(slot, from);
                }
            }
            None => {
                let slot = self.jobs.insert(JobEntry {
                    name: Arc::from(spec.name.as_str()),
                    schedule,
                    anchor: record.updated_at,
                    high_water,
                    next_at: None,
                    catchup_window: spec.catchup_window.0,
                    retry: spec.retry.clone().map(Box::new),
                    priority: spec.priority,
                    tags: (!spec.tags.is_empty()).then(|| Arc::new(spec.tags.clone())),
                    overlap: spec.overlap,
                    misfire: spec.misfire,
                    paused: spec.paused,
                });
                let from = high_water.map_or(record.updated_at, |h| h.max(record.updated_at));
                self.arm(slot, from);
            }
        }
    }

    fn remove_job(&mut self, name: &str, out: &mut Vec<Action>) {
        let Some(job) = self.jobs.remove(name) else {
            return;
        };
        if job.next_at.is_some() {
            self.armed_jobs -= 1;
        }
        let ids: Vec<Ulid> = self
            .activity
            .get(name)
            .map(|a| a.ids.iter().copied().collect())
            .unwrap_or_default();
        // The store deletes a job's executions with it, without an event for each:
        // nothing of the job will be heard of again. A run going on here is stopped
        // and keeps its slot until it reports back.
        for id in ids {
            if let Some(t) = self.execs.get(&id) {
                if t.phase == (Phase::Running { here: true }) {
                    let attempt = t.attempt;
                    self.zombie(id, attempt, out);
                }
            }
            self.untrack(id);
        }
        info!(job = %name, "job removed");
    }

    /// Arms the job's first instant strictly after `from` (and after its high-water
    /// mark); none when paused, manual or finished.
    fn arm(&mut self, slot: u32, from: Timestamp) {
        let gen = self.jobs.bump(slot);
        let Some(job) = self.jobs.at_mut(slot) else {
            return;
        };
        let from = job.high_water.map_or(from, |h| h.max(from));
        let next = if job.paused || !job.schedule.fires_on_its_own() {
            None
        } else {
            job.schedule
                .next_after(from, job.anchor)
                .filter(|next| *next > from)
        };
        let was_armed = std::mem::replace(&mut job.next_at, next).is_some();
        match (was_armed, next) {
            (false, Some(_)) => self.armed_jobs += 1,
            (true, None) => self.armed_jobs -= 1,
            _ => {}
        }
        if let Some(at) = next {
            self.timers.push(at, TimerKey::Job { slot, gen });
        }
    }

    fn job_due(
        &mut self,
        slot: u32,
        gen: u32,
        at: Timestamp,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        if self.jobs.gen(slot) != Some(gen) {
            return;
        }
        let Some(job) = self.jobs.at_mut(slot) else {
            return;
        };
        if job.next_at != Some(at) {
            return;
        }
        job.next_at = None;
        self.armed_jobs -= 1;
        if job.high_water.is_some_and(|h| at <= h) {
            // Already fired (the clock went back, or another leader fired it).
            self.arm(slot, at);
            return;
        }
        let threshold = TimeDelta::from_std(self.cfg.misfire_threshold).unwrap_or(TimeDelta::MAX);
        if now.signed_duration_since(at) <= threshold {
            self.fire(slot, at, Trigger::Schedule, out);
            self.arm(slot, at);
            return;
        }
        // A misfire: the instant went stale (outage, restart, or a stalled loop).
        let (name, schedule, anchor, window, policy) = (
            job.name.clone(),
            job.schedule.clone(),
            job.anchor,
            job.catchup_window,
            job.misfire,
        );
        let one_ns = TimeDelta::nanoseconds(1);
        let first = at.checked_sub_signed(one_ns).unwrap_or(at);
        let lo = TimeDelta::from_std(window)
            .ok()
            .and_then(|w| now.checked_sub_signed(w))
            .and_then(|t| t.checked_sub_signed(one_ns))
            .map_or(first, |window_start| window_start.max(first));
        let limit = match policy {
            Misfire::RunAll => MAX_CATCHUP_FIRES,
            Misfire::Skip | Misfire::RunOnce => 1,
        };
        let missed = misfire::latest_instants(&schedule, anchor, lo, now, limit);
        let latest_on_time = missed
            .last()
            .is_some_and(|last| now.signed_duration_since(*last) <= threshold);
        let fired = match (policy, missed.split_last()) {
            (_, None) => 0,
            (Misfire::Skip, Some((last, _))) => {
                if latest_on_time {
                    self.fire(slot, *last, Trigger::Schedule, out);
                    1
                } else {
                    0
                }
            }
            (Misfire::RunOnce, Some((last, _))) => {
                let trigger = if latest_on_time {
                    Trigger::Schedule
                } else {
                    Trigger::Catchup
                };
                self.fire(slot, *last, trigger, out);
                1
            }
            (Misfire::RunAll, Some((last, older))) => {
                for t in older {
                    self.fire(slot, *t, Trigger::Catchup, out);
                }
                let trigger = if latest_on_time {
                    Trigger::Schedule
                } else {
                    Trigger::Catchup
                };
                self.fire(slot, *last, trigger, out);
                missed.len()
            }
        };
        info!(
            job = %name,
            first_missed = %at,
            policy = ?policy,
            in_window = missed.len(),
            fired,
            "misfired instants handled"
        );
        self.arm(slot, now);
    }

    /// Fires instant `at` of the job in `slot`, applying its overlap rule. The fire
    /// is emitted at the end of the call, with a start when it got a slot.
    fn fire(&mut self, slot: u32, at: Timestamp, trigger: Trigger, out: &mut Vec<Action>) {
        let Some(job) = self.jobs.at_mut(slot) else {
            return;
        };
        job.high_water = Some(job.high_water.map_or(at, |h| h.max(at)));
        let (name, overlap, priority) = (job.name.clone(), job.overlap, job.priority);
        let (active, waiting) = self
            .activity
            .get(&name)
            .map_or((0, 0), |a| (a.active, a.waiting));
        let skip_reason = match overlap {
            Overlap::Allow => None,
            Overlap::Skip => (active > 0).then_some(SKIP_ACTIVE),
            Overlap::BufferOne => (active > 0 && waiting > 0).then_some(SKIP_BUFFER_FULL),
            Overlap::CancelRunning => {
                self.cancel_running(&name, out);
                None
            }
        };
        self.fired_total += 1;
        let id = (self.ids)();
        debug!(job = %name, execution = %id, scheduled_at = %at, trigger = trigger.as_str(), skipped = skip_reason.is_some(), "fire");
        if skip_reason.is_none() {
            let key = self.ready_key(priority);
            self.track(
                id,
                Tracked {
                    job: name.clone(),
                    scheduled_at: at,
                    trigger,
                    priority,
                    attempt: 1,
                    phase: Phase::Ready(key),
                    cancel: false,
                    node: None,
                },
            );
            self.turn_index.insert(id, self.turn_fires.len());
        }
        self.turn_fires.push(Fire {
            id,
            job: name.to_string(),
            scheduled_at: at,
            trigger,
            start: None,
            skip_reason: skip_reason.map(str::to_string),
        });
    }

    fn retry_due(&mut self, id: Ulid, attempt: u32, at: Timestamp) {
        let Some(t) = self.execs.get(&id) else {
            return;
        };
        if t.attempt != attempt || t.phase != Phase::RetryWait(at) {
            return;
        }
        let key = self.ready_key(t.priority);
        self.set_phase(id, Phase::Ready(key));
    }

    fn ready_key(&mut self, priority: i32) -> ReadyKey {
        self.next_seq += 1;
        ReadyKey {
            priority: Reverse(priority),
            seq: self.next_seq,
        }
    }

    // ----- executions -----

    fn on_execution(&mut self, e: &Execution, now: Timestamp, out: &mut Vec<Action>) {
        let here = e.node.as_deref() == Some(self.cfg.node.as_str());
        let Some(t) = self.execs.get(&e.id) else {
            self.on_new_execution(e, here, now, out);
            return;
        };
        let (phase, attempt, cancel) = (t.phase, t.attempt, t.cancel);
        if e.status.is_terminal() {
            if phase == (Phase::Running { here: true }) {
                // Ended on record while it still runs here: stop it.
                self.zombie(e.id, attempt, out);
            }
            self.untrack(e.id);
            return;
        }
        if e.attempt < attempt {
            return; // an event from before a change this engine already knows of
        }
        match e.status {
            ExecStatus::Queued => {
                let settled = e.attempt == attempt
                    && match phase {
                        // Our Start or Finish is not applied yet.
                        Phase::Starting { .. } | Phase::Finishing { .. } => true,
                        Phase::Ready(_) | Phase::Blocked(_) => {
                            e.next_attempt_at.is_none_or(|due| due <= now)
                        }
                        Phase::RetryWait(due) => e.next_attempt_at == Some(due),
                        Phase::Running { .. } | Phase::Orphan => false,
                    };
                if settled {
                    return;
                }
                if phase == (Phase::Running { here: true }) {
                    self.zombie(e.id, attempt, out);
                }
                self.requeue(e, now);
            }
            ExecStatus::Running => {
                if e.attempt == attempt {
                    match phase {
                        Phase::Starting { here: true } if here => {
                            if cancel || e.cancel_requested {
                                self.finish_unstarted(e.id, attempt, now, out);
                            } else {
                                self.dispatch(e.id, out);
                            }
                            return;
                        }
                        Phase::Running { here: true } if here => {
                            if e.cancel_requested {
                                self.cancel(e.id, out);
                            }
                            return;
                        }
                        Phase::Running { here: false } if !here => return,
                        Phase::Finishing { .. } | Phase::Orphan => return,
                        _ => {}
                    }
                } else if phase == (Phase::Running { here: true }) {
                    self.zombie(e.id, attempt, out);
                }
                self.running_not_ours(e, here, now, out);
            }
            _ => {}
        }
    }

    fn on_new_execution(
        &mut self,
        e: &Execution,
        here: bool,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        if e.status.is_terminal() {
            return;
        }
        let Some(job) = self.jobs.get(&e.job) else {
            debug!(execution = %e.id, job = %e.job, "execution of an unknown job ignored");
            return;
        };
        let job = job.name.clone();
        let mut tracked = Tracked {
            job,
            scheduled_at: e.scheduled_at,
            trigger: e.trigger,
            priority: e.priority,
            attempt: e.attempt,
            phase: Phase::Orphan,
            cancel: e.cancel_requested,
            node: e.node.as_deref().map(Arc::from),
        };
        match e.status {
            ExecStatus::Queued => {
                tracked.phase = self.queued_phase(e, now);
                self.track(e.id, tracked);
            }
            ExecStatus::Running if here => {
                match self.adopted.remove(&e.id) {
                    Some(a) if a.attempt == e.attempt => {
                        tracked.phase = if a.dispatched {
                            Phase::Running { here: true }
                        } else {
                            Phase::Starting { here: true }
                        };
                        self.track(e.id, tracked);
                        if !a.dispatched {
                            if e.cancel_requested {
                                self.finish_unstarted(e.id, e.attempt, now, out);
                            } else {
                                self.dispatch(e.id, out);
                            }
                        } else if e.cancel_requested {
                            self.send_cancel(e.id, out);
                        }
                    }
                    other => {
                        if let Some(a) = other {
                            if a.dispatched {
                                // A different attempt than the one still running here.
                                self.zombie(a.id, a.attempt, out);
                            }
                        }
                        self.track(e.id, tracked);
                        self.running_not_ours(e, true, now, out);
                    }
                }
            }
            _ => {
                tracked.phase = Phase::Running { here: false };
                self.track(e.id, tracked);
            }
        }
    }

    /// The record shows the execution running, and not as an attempt this engine
    /// started: elsewhere it is simply followed; here nobody runs it, so it is lost
    /// (at `start` when found during the load).
    fn running_not_ours(
        &mut self,
        e: &Execution,
        here: bool,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        let mut moved = true;
        if let Some(t) = self.execs.get_mut(&e.id) {
            t.attempt = e.attempt;
            t.cancel |= e.cancel_requested;
            moved = t.phase != (Phase::Running { here: false })
                || t.node.as_deref() != e.node.as_deref();
            // Before the phase change below: leaving drops the id from every node's
            // set, entering adds it to this node's.
            t.node = e.node.as_deref().map(Arc::from);
        }
        if !here {
            // Re-entering the same node would count as news from it, which it is not.
            if moved {
                self.set_phase(e.id, Phase::Running { here: false });
            }
            return;
        }
        self.set_phase(e.id, Phase::Orphan);
        if self.started {
            self.mark_lost(e.id, LOST_ERROR, now, out);
        } else {
            self.orphans.push(e.id);
        }
    }

    /// The record shows the execution queued: it waits for its retry time or a slot.
    fn requeue(&mut self, e: &Execution, now: Timestamp) {
        if self.jobs.get(&e.job).is_none() {
            self.untrack(e.id);
            return;
        }
        let phase = self.queued_phase(e, now);
        if let Some(t) = self.execs.get_mut(&e.id) {
            t.attempt = e.attempt;
            t.priority = e.priority;
            t.cancel = e.cancel_requested;
        }
        self.set_phase(e.id, phase);
    }

    fn queued_phase(&mut self, e: &Execution, now: Timestamp) -> Phase {
        match e.next_attempt_at {
            Some(due) if due > now => Phase::RetryWait(due),
            _ => Phase::Ready(self.ready_key(e.priority)),
        }
    }

    fn dispatch(&mut self, id: Ulid, out: &mut Vec<Action>) {
        self.set_phase(id, Phase::Running { here: true });
        if let Some(t) = self.execs.get(&id) {
            debug!(job = %t.job, execution = %id, attempt = t.attempt, "dispatch");
            out.push(Action::Dispatch {
                id,
                attempt: t.attempt,
                job: t.job.to_string(),
                scheduled_at: t.scheduled_at,
                trigger: t.trigger,
            });
        }
    }

    /// An attempt this engine started was cancelled before it was handed to an
    /// executor: it ends without running.
    fn finish_unstarted(&mut self, id: Ulid, attempt: u32, now: Timestamp, out: &mut Vec<Action>) {
        out.push(Action::Finish(Finish {
            id,
            attempt,
            status: ExecStatus::Cancelled,
            at: now,
            exit_code: None,
            error: Some(CANCELLED_BEFORE_START.to_string()),
            output: None,
            output_truncated: false,
            retry_at: None,
        }));
        self.set_phase(id, Phase::Finishing { retry: false });
    }

    fn on_completed(&mut self, c: Completion, now: Timestamp, out: &mut Vec<Action>) {
        if self.zombies.remove(&(c.id, c.attempt)) {
            self.running_here -= 1;
            return;
        }
        let ours = self
            .execs
            .get(&c.id)
            .filter(|t| t.attempt == c.attempt && t.phase == (Phase::Running { here: true }));
        let Some(t) = ours else {
            // Not an attempt this engine runs (handed over without adoption): record
            // the outcome anyway; the store ignores it if the attempt moved on.
            warn!(execution = %c.id, attempt = c.attempt, "completion of an attempt this engine did not dispatch");
            out.push(Action::Finish(finish_for(c, None, true, now)));
            return;
        };
        let retry = self.jobs.get(&t.job).and_then(|j| j.retry.as_deref());
        let (job, cancel) = (t.job.clone(), t.cancel);
        let finish = finish_for(c, retry, cancel, now);
        let will_retry = finish.retry_at.is_some();
        debug!(job = %job, execution = %finish.id, attempt = finish.attempt, status = finish.status.as_str(), retry_at = ?finish.retry_at, "attempt ended");
        let id = finish.id;
        out.push(Action::Finish(finish));
        self.set_phase(id, Phase::Finishing { retry: will_retry });
    }

    /// Ends an attempt nobody runs any more (its node restarted or went silent).
    fn mark_lost(&mut self, id: Ulid, error: &str, now: Timestamp, out: &mut Vec<Action>) {
        let Some(t) = self.execs.get(&id) else {
            return;
        };
        let policy = self.jobs.get(&t.job).and_then(|j| j.retry.as_deref());
        let finish = Finish::lost(id, t.attempt, policy, t.cancel, error, now);
        info!(job = %t.job, execution = %id, attempt = t.attempt, node = ?t.node, retry_at = ?finish.retry_at, error, "attempt lost");
        let retry = finish.retry_at.is_some();
        out.push(Action::Finish(finish));
        self.set_phase(id, Phase::Finishing { retry });
    }

    /// Loses the runs of every other node that stayed silent for the node timeout.
    fn lose_silent_nodes(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        if self.next_node_deadline().is_none_or(|d| d > now) {
            return;
        }
        let timeout = TimeDelta::from_std(self.cfg.node_timeout).unwrap_or(TimeDelta::MAX);
        let silent: Vec<(Arc<str>, Timestamp, Vec<Ulid>)> = self
            .remote
            .iter()
            .filter(|(_, r)| {
                !r.running.is_empty()
                    && r.last_seen
                        .checked_add_signed(timeout)
                        .is_some_and(|d| d <= now)
            })
            .map(|(node, r)| {
                let mut ids: Vec<Ulid> = r.running.iter().copied().collect();
                ids.sort_unstable();
                (node.clone(), r.last_seen, ids)
            })
            .collect();
        for (node, last_seen, ids) in silent {
            warn!(node = %node, last_seen = %last_seen, runs = ids.len(), "node stopped reporting: its runs are lost");
            for id in ids {
                self.mark_lost(id, NODE_DOWN_ERROR, now, out);
            }
        }
    }

    /// Cancels the running attempts of a job (`cancel_running`).
    fn cancel_running(&mut self, job: &str, out: &mut Vec<Action>) {
        let ids: Vec<Ulid> = self
            .activity
            .get(job)
            .map(|a| {
                a.ids
                    .iter()
                    .copied()
                    .filter(|id| self.execs.get(id).is_some_and(|t| t.phase.class().running))
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.cancel(id, out);
        }
    }

    /// Decides to stop an execution: a running attempt gets a `Cancel`, a starting
    /// one ends when the store shows it running.
    fn cancel(&mut self, id: Ulid, out: &mut Vec<Action>) {
        let Some(t) = self.execs.get_mut(&id) else {
            return;
        };
        let first = !std::mem::replace(&mut t.cancel, true);
        if first && matches!(t.phase, Phase::Running { .. }) {
            out.push(Action::Cancel {
                id,
                attempt: t.attempt,
            });
        }
    }

    /// Like [`Engine::cancel`] for a record that asks for it (sent even if this
    /// engine decided the same before, as the decision may predate the run).
    fn send_cancel(&mut self, id: Ulid, out: &mut Vec<Action>) {
        if let Some(t) = self.execs.get_mut(&id) {
            t.cancel = true;
            out.push(Action::Cancel {
                id,
                attempt: t.attempt,
            });
        }
    }

    /// A local attempt that must stop although its record says otherwise.
    fn zombie(&mut self, id: Ulid, attempt: u32, out: &mut Vec<Action>) {
        if self.zombies.insert((id, attempt)) {
            // The slot stays taken until the run reports back; the phase change that
            // follows gives back the one it held.
            self.running_here += 1;
            out.push(Action::Cancel { id, attempt });
        }
    }

    // ----- bookkeeping -----

    fn track(&mut self, id: Ulid, t: Tracked) {
        let (job, phase, attempt) = (t.job.clone(), t.phase, t.attempt);
        if let Some(old) = self.execs.insert(id, t) {
            // Never expected: ids are unique. Keep the counters right anyway.
            self.leave(id, &old.job, old.phase);
        }
        self.activity.entry(job.clone()).or_default().ids.insert(id);
        self.enter(id, &job, phase, attempt);
    }

    fn untrack(&mut self, id: Ulid) -> Option<Tracked> {
        let t = self.execs.remove(&id)?;
        self.leave(id, &t.job, t.phase);
        if let Some(a) = self.activity.get_mut(&t.job) {
            a.ids.remove(&id);
            if a.ids.is_empty() {
                self.activity.remove(&t.job);
            }
        }
        self.unblock_if_idle(&t.job);
        Some(t)
    }

    fn set_phase(&mut self, id: Ulid, phase: Phase) {
        let Some(t) = self.execs.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut t.phase, phase);
        let (job, attempt) = (t.job.clone(), t.attempt);
        self.leave(id, &job, old);
        self.enter(id, &job, phase, attempt);
        self.unblock_if_idle(&job);
    }

    fn leave(&mut self, id: Ulid, job: &Arc<str>, phase: Phase) {
        match phase {
            Phase::Ready(key) => {
                self.ready.remove(&key);
            }
            Phase::RetryWait(_) => self.retry_timers -= 1,
            _ => {}
        }
        let class = phase.class();
        if let Some(a) = self.activity.get_mut(job) {
            if matches!(phase, Phase::Blocked(_)) {
                a.blocked.retain(|b| *b != id);
            }
            a.count(class, false);
        }
        if class.slot {
            self.running_here -= 1;
        }
        if class.queued {
            self.queued -= 1;
        }
        if matches!(
            phase,
            Phase::Running { here: false } | Phase::Starting { here: false }
        ) {
            for r in self.remote.values_mut() {
                r.running.remove(&id);
            }
        }
    }

    fn enter(&mut self, id: Ulid, job: &Arc<str>, phase: Phase, attempt: u32) {
        match phase {
            Phase::Ready(key) => {
                self.ready.insert(key, id);
            }
            Phase::RetryWait(due) => {
                self.retry_timers += 1;
                self.timers.push(due, TimerKey::retry(id, attempt));
            }
            _ => {}
        }
        let class = phase.class();
        let a = self.activity.entry(job.clone()).or_default();
        if matches!(phase, Phase::Blocked(_)) {
            a.blocked.push(id);
        }
        a.count(class, true);
        if class.slot {
            self.running_here += 1;
        }
        if class.queued {
            self.queued += 1;
        }
        if matches!(
            phase,
            Phase::Running { here: false } | Phase::Starting { here: false }
        ) {
            let node = self
                .execs
                .get(&id)
                .and_then(|t| t.node.clone())
                .unwrap_or_else(|| Arc::from(""));
            let now = self.now;
            let r = self.remote.entry(node).or_insert_with(|| RemoteNode {
                last_seen: now,
                running: HashSet::new(),
            });
            if r.running.is_empty() {
                // Judged only on time during which it had runs on record.
                r.last_seen = r.last_seen.max(now);
            }
            r.running.insert(id);
        }
    }

    /// Parked runs of a job go back to the ready queue, in their old places, once
    /// the job has nothing running.
    fn unblock_if_idle(&mut self, job: &Arc<str>) {
        let blocked = match self.activity.get_mut(job) {
            Some(a) if a.running == 0 && !a.blocked.is_empty() => std::mem::take(&mut a.blocked),
            _ => return,
        };
        for id in blocked {
            if let Some(t) = self.execs.get_mut(&id) {
                if let Phase::Blocked(key) = t.phase {
                    // Same class (queued, waiting): only the containers change.
                    t.phase = Phase::Ready(key);
                    self.ready.insert(key, id);
                }
            }
        }
    }

    /// Whether a queued execution has to wait for its job's running ones.
    fn must_wait(&self, t: &Tracked) -> bool {
        if t.trigger == Trigger::Manual {
            return false;
        }
        let overlap = self.jobs.get(&t.job).map_or(Overlap::Allow, |j| j.overlap);
        overlap != Overlap::Allow && self.activity.get(&t.job).is_some_and(|a| a.running > 0)
    }

    /// Starts queued executions while slots are free, best priority first, each on
    /// the least-loaded live node whose tags match its job's (this node on a tie).
    /// An execution no such node has room for stays in the queue without holding
    /// back the ones behind it that can run elsewhere.
    fn fill_slots(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        let mut after: Option<ReadyKey> = None;
        while self.any_free_slot(now) {
            let next = match after {
                None => self.ready.iter().next(),
                Some(k) => self
                    .ready
                    .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                    .next(),
            };
            let Some((key, id)) = next.map(|(k, id)| (*k, *id)) else {
                break;
            };
            after = Some(key);
            let Some(t) = self.execs.get(&id) else {
                self.ready.remove(&key);
                continue;
            };
            if t.phase != Phase::Ready(key) {
                self.ready.remove(&key);
                continue;
            }
            let attempt = t.attempt;
            if self.must_wait(t) {
                self.set_phase(id, Phase::Blocked(key));
                continue;
            }
            let tags = self.jobs.get(&t.job).and_then(|j| j.tags.as_deref());
            let Some(node) = self.place(tags, now) else {
                continue;
            };
            let here = node.is_none();
            let node = node.unwrap_or_else(|| Arc::from(self.cfg.node.as_str()));
            if let Some(t) = self.execs.get_mut(&id) {
                t.node = Some(node.clone());
            }
            self.set_phase(id, Phase::Starting { here });
            let start = StartInfo {
                node: node.to_string(),
                at: now,
            };
            match self
                .turn_index
                .get(&id)
                .and_then(|i| self.turn_fires.get_mut(*i))
            {
                Some(fire) => fire.start = Some(start),
                None => out.push(Action::Start(Start {
                    id,
                    attempt,
                    node: start.node,
                    at: start.at,
                })),
            }
        }
    }

    /// Whether another node reported within the node timeout.
    fn is_up(&self, node: &str, now: Timestamp) -> bool {
        let timeout = TimeDelta::from_std(self.cfg.node_timeout).unwrap_or(TimeDelta::MAX);
        self.remote.get(node).is_some_and(|r| {
            r.last_seen
                .checked_add_signed(timeout)
                .is_none_or(|deadline| deadline > now)
        })
    }

    fn remote_load(&self, node: &str) -> usize {
        self.remote.get(node).map_or(0, |r| r.running.len())
    }

    /// Whether any live node (whatever its tags) has a free slot.
    fn any_free_slot(&self, now: Timestamp) -> bool {
        self.running_here < self.cfg.max_running
            || self
                .workers
                .iter()
                .any(|(name, w)| self.remote_load(name) < w.max_running && self.is_up(name, now))
    }

    /// Where a run of a job with `tags` goes: `Some(None)` here, `Some(Some(node))`
    /// on another node, `None` when no matching live node has a free slot. Least
    /// loaded (running over capacity) first; this node wins a tie (its runs need no
    /// replication to start), then names in order.
    #[allow(clippy::option_option)]
    fn place(
        &self,
        tags: Option<&BTreeMap<String, String>>,
        now: Timestamp,
    ) -> Option<Option<Arc<str>>> {
        let fits = |have: &BTreeMap<String, String>| tags.is_none_or(|t| tags_match(have, t));
        let mut best: Option<(Option<&Arc<str>>, usize, usize)> = None;
        if self.running_here < self.cfg.max_running && fits(&self.cfg.tags) {
            best = Some((None, self.running_here, self.cfg.max_running));
        }
        for (name, w) in &self.workers {
            let load = self.remote_load(name);
            if load >= w.max_running || !fits(&w.tags) || !self.is_up(name, now) {
                continue;
            }
            // load / max < best_load / best_max, without division (u128: capacities
            // come from configuration and may be huge).
            let better = best.is_none_or(|(_, bl, bm)| {
                (load as u128) * (bm as u128) < (bl as u128) * (w.max_running as u128)
            });
            if better {
                best = Some((Some(name), load, w.max_running));
            }
        }
        best.map(|(node, _, _)| node.cloned())
    }

    fn end_turn(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        if self.started {
            self.fill_slots(now, out);
        }
        self.turn_index.clear();
        out.extend(self.turn_fires.drain(..).map(Action::Fire));
        self.drop_stale_timers();
    }

    fn timer_is_live(&self, at: Timestamp, key: TimerKey) -> bool {
        match key {
            TimerKey::Job { slot, gen } => {
                self.jobs.gen(slot) == Some(gen)
                    && self.jobs.at(slot).is_some_and(|j| j.next_at == Some(at))
            }
            TimerKey::Retry { id, attempt } => self
                .execs
                .get(&TimerKey::retry_id(id))
                .is_some_and(|t| t.attempt == attempt && t.phase == Phase::RetryWait(at)),
        }
    }

    /// Keeps the heap's top live (so `next_wakeup` is exact) and its size within
    /// twice the live timers.
    fn drop_stale_timers(&mut self) {
        while let Some((at, key)) = self.timers.peek() {
            if self.timer_is_live(at, key) {
                break;
            }
            self.timers.pop();
        }
        let live = self.armed_jobs + self.retry_timers;
        if self.timers.len() > 2 * live + 1024 {
            let mut heap = std::mem::take(&mut self.timers);
            heap.retain(|at, key| self.timer_is_live(at, key));
            self.timers = heap;
        }
    }
}

/// The `Finish` of an attempt that ended on this node: final, or a retry of the same
/// execution when `retry` allows another attempt. Also used by the runtime for runs
/// that end while the node does not lead.
pub fn finish_for(
    c: Completion,
    retry: Option<&RetryPolicy>,
    cancel_requested: bool,
    now: Timestamp,
) -> Finish {
    let (status, error) = if c.outcome.status.is_terminal() {
        (c.outcome.status, c.outcome.error)
    } else {
        (
            ExecStatus::Failed,
            Some(format!(
                "the executor answered the non-final status {}",
                c.outcome.status.as_str()
            )),
        )
    };
    Finish {
        id: c.id,
        attempt: c.attempt,
        status,
        at: now,
        exit_code: c.outcome.exit_code,
        error,
        retry_at: retry_at(retry, c.id, c.attempt, status, cancel_requested, now),
        output: (!c.output.is_empty()).then_some(c.output),
        output_truncated: c.output_truncated,
    }
}
