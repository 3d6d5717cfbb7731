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

mod executions;
mod firing;
mod jobs;
mod misfire;
mod phases;
mod placement;
mod timers;
mod triggers;
mod types;

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

use jobs::{JobEntry, Jobs, PolicyCache, ScheduleCache};
use phases::{Activity, Phase, ReadyKey, RemoteNode, Tracked, Worker};

pub use executions::finish_for;
use timers::{TimerHeap, TimerKey};
use triggers::EventJobs;
pub use types::{Action, Completion, EngineConfig, EngineStats, IdSource, Input, LocalAttempt};

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

/// The scheduler engine. See the module documentation.
pub struct Engine {
    cfg: EngineConfig,
    ids: IdSource,
    /// Set by [`Engine::start`]: before it the engine only records what it loads.
    started: bool,
    jobs: Jobs,
    schedules: ScheduleCache,
    policies: PolicyCache,
    /// Job instants, due `fire_ahead` before them.
    timers: TimerHeap,
    /// Retries, and job instants that wait for their time (not fired ahead).
    exact: TimerHeap,
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
    /// Jobs that fire on events, indexed by event type.
    event_jobs: EventJobs,
    /// `delete_after_run` jobs, with the revision of the record that said so.
    delete_after_run: HashMap<Arc<str>, u64>,
    /// The cluster's dynamic settings ([`Input::Config`]).
    dynamic: Arc<rota_core::config::DynamicConfig>,
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
            policies: PolicyCache::default(),
            timers: TimerHeap::default(),
            exact: TimerHeap::default(),
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
            event_jobs: EventJobs::default(),
            delete_after_run: HashMap::new(),
            dynamic: Arc::default(),
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
        let ahead = self.ahead_window();
        let instant = self
            .timers
            .peek()
            .map(|(at, _)| ahead.and_then(|w| at.checked_sub_signed(w)).unwrap_or(at));
        let exact = self.exact.peek().map(|(at, _)| at);
        [instant, exact, self.next_node_deadline()]
            .into_iter()
            .flatten()
            .min()
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
        // Jobs whose run ended while no engine ran (or whose delete did not land).
        let mut done: Vec<Arc<str>> = self.delete_after_run.keys().cloned().collect();
        done.sort_unstable();
        for name in done {
            self.delete_if_done(&name, out);
        }
        info!(
            jobs = self.jobs.len(),
            event_jobs = self.event_jobs.len(),
            active = self.execs.len(),
            "scheduler engine started"
        );
        self.tick(now, out);
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now: Timestamp, out: &mut Vec<Action>) {
        self.now = self.now.max(now);
        match input {
            Input::JobUpserted(record) => {
                self.upsert_job(&record, now);
                self.delete_if_done(&record.spec.name, out);
            }
            Input::JobRemoved(name) => self.remove_job(&name, out),
            Input::Execution(e) => {
                self.on_execution(&e, now, out);
                if e.status.is_terminal() {
                    self.delete_if_done(&e.job, out);
                }
            }
            Input::Event(event) => self.on_event(&event, out),
            Input::Completed(c) => self.on_completed(c, now, out),
            Input::FireDropped { id } => {
                if self.untrack(id).is_some() {
                    debug!(execution = %id, "fire created nothing");
                }
            }
            Input::NodeAlive { node } => self.node_alive(&node),
            Input::Config(config) => {
                if *config != *self.dynamic {
                    info!(max_running = ?config.max_running, cluster_max_running = ?config.cluster_max_running, default_retry = config.default_retry.is_some(), "dynamic settings in force");
                }
                self.dynamic = config;
            }
            Input::NodeRegistered(record) => {
                if record.node == self.cfg.node {
                    // This node's own record sets its capacity too: a stopping node
                    // registers again with none (same incarnation), and takes no
                    // new runs while it leads.
                    let capacity = usize::try_from(record.max_running).unwrap_or(usize::MAX);
                    if capacity != self.cfg.max_running {
                        info!(node = %record.node, max_running = capacity, "this node's capacity changed");
                        self.cfg.max_running = capacity;
                    }
                } else {
                    let name: Arc<str> = Arc::from(record.node.as_str());
                    self.workers.insert(
                        name,
                        Worker {
                            tags: record.tags.clone(),
                            max_running: usize::try_from(record.max_running).unwrap_or(usize::MAX),
                            fire_ahead: record.fire_ahead,
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
        while let Some((at, key)) = self.exact.peek() {
            if at > now {
                break;
            }
            self.exact.pop();
            self.timer_due(at, key, now, out);
        }
        // Instants inside the look-ahead window are fired now; their runs are handed
        // to executors at the instant, on their node.
        let horizon = self
            .ahead_window()
            .and_then(|w| now.checked_add_signed(w))
            .unwrap_or(now);
        while let Some((at, key)) = self.timers.peek() {
            if at > horizon {
                break;
            }
            self.timers.pop();
            if let TimerKey::Job { slot, .. } = key {
                if at > now && !self.may_fire_ahead(slot) {
                    if self.timer_is_live(at, key) {
                        self.exact.push(at, key);
                    }
                    continue;
                }
            }
            self.timer_due(at, key, now, out);
        }
        self.end_turn(now, out);
    }

    fn timer_due(&mut self, at: Timestamp, key: TimerKey, now: Timestamp, out: &mut Vec<Action>) {
        match key {
            TimerKey::Job { slot, gen } => self.job_due(slot, gen, at, now, out),
            TimerKey::Retry { id, attempt } => self.retry_due(TimerKey::retry_id(id), attempt, at),
        }
    }

    // ----- jobs and timers -----

    fn end_turn(&mut self, now: Timestamp, out: &mut Vec<Action>) {
        if self.started {
            self.fill_slots(now, out);
        }
        // A run fired ahead that got no slot waits for its instant like a retry:
        // it is placed then, not before.
        let waiting: Vec<(Ulid, Timestamp)> = self
            .turn_fires
            .iter()
            .filter(|f| f.start.is_none() && f.skip_reason.is_none() && f.scheduled_at > now)
            .map(|f| (f.id, f.scheduled_at))
            .collect();
        for (id, at) in waiting {
            if matches!(
                self.execs.get(&id).map(|t| t.phase),
                Some(Phase::Ready(_) | Phase::Blocked(_))
            ) {
                self.set_phase(id, Phase::RetryWait(at));
            }
        }
        self.turn_index.clear();
        out.extend(self.turn_fires.drain(..).map(Action::Fire));
        self.drop_stale_timers();
    }
}
