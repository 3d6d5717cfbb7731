//! Where each active execution stands ([`Phase`]) and the counts kept from it: per
//! job (overlap, parked runs), per node (slots), and the stats. Every phase change
//! goes through `enter`/`leave` so the counts never drift.

use super::*;

/// Position in the ready queue: higher priority first, then first come first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    pub(crate) priority: Reverse<i32>,
    pub(crate) seq: u64,
}

/// Where an active execution stands, from this engine's point of view. The
/// execution's current attempt is [`Tracked::attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
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
pub(crate) struct Class {
    /// Counts for overlap: the job has a run on record.
    pub(crate) active: bool,
    /// The job has a run going (blocks queued runs of non-`allow` jobs).
    pub(crate) running: bool,
    /// A run of the job waits (for `buffer_one`).
    pub(crate) waiting: bool,
    /// Holds one of this node's slots.
    pub(crate) slot: bool,
    /// Counts as queued in the stats.
    pub(crate) queued: bool,
}

impl Phase {
    pub(crate) fn class(self) -> Class {
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
pub(crate) struct Tracked {
    pub(crate) job: Arc<str>,
    pub(crate) scheduled_at: Timestamp,
    pub(crate) trigger: Trigger,
    pub(crate) priority: i32,
    pub(crate) attempt: u32,
    pub(crate) phase: Phase,
    /// A cancel was decided here or requested on record; a start turns into a
    /// cancelled finish, a failure is not retried.
    pub(crate) cancel: bool,
    /// The node of the current attempt, as recorded (for runs elsewhere).
    pub(crate) node: Option<Arc<str>>,
}

/// Another node, as far as liveness goes.
#[derive(Debug)]
pub(crate) struct RemoteNode {
    /// When it last reported, or when it last got runs on record after having none
    /// (by this engine's clock): it is judged from the later of the two.
    pub(crate) last_seen: Timestamp,
    /// Executions running on it (phase `Running { here: false }`).
    pub(crate) running: HashSet<Ulid>,
}

/// Another node that registered as a worker.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) max_running: usize,
    /// It runs attempts committed ahead of their instant.
    pub(crate) fire_ahead: bool,
}

/// Per job with active executions: counts by [`Class`] and the parked runs.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    pub(crate) ids: HashSet<Ulid>,
    pub(crate) active: u32,
    pub(crate) running: u32,
    pub(crate) waiting: u32,
    pub(crate) blocked: Vec<Ulid>,
}

impl Activity {
    pub(crate) fn count(&mut self, class: Class, up: bool) {
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

impl Engine {
    pub(crate) fn track(&mut self, id: Ulid, t: Tracked) {
        let (job, phase, attempt) = (t.job.clone(), t.phase, t.attempt);
        if let Some(old) = self.execs.insert(id, t) {
            // Never expected: ids are unique. Keep the counters right anyway.
            self.leave(id, &old.job, old.phase);
        }
        self.activity.entry(job.clone()).or_default().ids.insert(id);
        self.enter(id, &job, phase, attempt);
    }

    pub(crate) fn untrack(&mut self, id: Ulid) -> Option<Tracked> {
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

    pub(crate) fn set_phase(&mut self, id: Ulid, phase: Phase) {
        let Some(t) = self.execs.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut t.phase, phase);
        let (job, attempt) = (t.job.clone(), t.attempt);
        self.leave(id, &job, old);
        self.enter(id, &job, phase, attempt);
        self.unblock_if_idle(&job);
    }

    pub(crate) fn leave(&mut self, id: Ulid, job: &Arc<str>, phase: Phase) {
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

    pub(crate) fn enter(&mut self, id: Ulid, job: &Arc<str>, phase: Phase, attempt: u32) {
        match phase {
            Phase::Ready(key) => {
                self.ready.insert(key, id);
            }
            Phase::RetryWait(due) => {
                self.retry_timers += 1;
                self.exact.push(due, TimerKey::retry(id, attempt));
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
    pub(crate) fn unblock_if_idle(&mut self, job: &Arc<str>) {
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
    pub(crate) fn must_wait(&self, t: &Tracked) -> bool {
        if t.trigger == Trigger::Manual {
            return false;
        }
        let overlap = self
            .jobs
            .get(&t.job)
            .map_or(Overlap::Allow, |j| j.policy.overlap);
        overlap != Overlap::Allow && self.activity.get(&t.job).is_some_and(|a| a.running > 0)
    }
}
