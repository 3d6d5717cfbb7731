//! Jobs and their timers: compiling a job's schedule, arming the next instant, and
//! what happens when an instant (or a retry) comes due: overlap and misfire rules,
//! then a `Fire` for the runtime to commit.

use super::*;

impl Engine {
    pub(crate) fn upsert_job(&mut self, record: &JobRecord, now: Timestamp) {
        let spec = &record.spec;
        let schedule = match self.schedules.get(&spec.schedule) {
            Ok(s) => s,
            Err(err) => {
                warn!(job = %spec.name, error = %err, "ignoring a job whose schedule does not compile");
                return;
            }
        };
        let policy = self.policies.get(spec);
        let high_water = record.last_scheduled_at;
        let name: Arc<str> = self
            .jobs
            .get(&spec.name)
            .map_or_else(|| Arc::from(spec.name.as_str()), |j| j.name.clone());
        self.event_jobs.upsert(&name, record);
        if spec.delete_after_run {
            self.delete_after_run.insert(name.clone(), record.revision);
        } else {
            self.delete_after_run.remove(&name);
        }
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
                job.policy = policy;
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
                    name,
                    schedule,
                    anchor: record.updated_at,
                    high_water,
                    next_at: None,
                    policy,
                    paused: spec.paused,
                });
                let from = high_water.map_or(record.updated_at, |h| h.max(record.updated_at));
                self.arm(slot, from);
            }
        }
    }

    pub(crate) fn remove_job(&mut self, name: &str, out: &mut Vec<Action>) {
        self.event_jobs.remove(name);
        self.delete_after_run.remove(name);
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
    pub(crate) fn arm(&mut self, slot: u32, from: Timestamp) {
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

    pub(crate) fn job_due(
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
            job.policy.catchup_window,
            job.policy.misfire,
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
    pub(crate) fn fire(
        &mut self,
        slot: u32,
        at: Timestamp,
        trigger: Trigger,
        out: &mut Vec<Action>,
    ) {
        if let Some(job) = self.jobs.at_mut(slot) {
            job.high_water = Some(job.high_water.map_or(at, |h| h.max(at)));
        }
        self.fire_run(slot, at, trigger, None, out);
    }

    /// Fires a run of the job in `slot` for `at` (an instant of its schedule, or
    /// the time of the event at `event`'s log position), applying its overlap rule.
    pub(crate) fn fire_run(
        &mut self,
        slot: u32,
        at: Timestamp,
        trigger: Trigger,
        event: Option<(u64, u32)>,
        out: &mut Vec<Action>,
    ) {
        let Some(job) = self.jobs.at(slot) else {
            return;
        };
        let (name, overlap, priority) = (job.name.clone(), job.policy.overlap, job.policy.priority);
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
            event_revision: event.map(|(revision, _)| revision),
            event_seq: event.map_or(0, |(_, seq)| seq),
            ahead: false,
        });
    }

    pub(crate) fn retry_due(&mut self, id: Ulid, attempt: u32, at: Timestamp) {
        let Some(t) = self.execs.get(&id) else {
            return;
        };
        if t.attempt != attempt || t.phase != Phase::RetryWait(at) {
            return;
        }
        let key = self.ready_key(t.priority);
        self.set_phase(id, Phase::Ready(key));
    }

    pub(crate) fn ready_key(&mut self, priority: i32) -> ReadyKey {
        self.next_seq += 1;
        ReadyKey {
            priority: Reverse(priority),
            seq: self.next_seq,
        }
    }

    // ----- executions -----

    pub(crate) fn timer_is_live(&self, at: Timestamp, key: TimerKey) -> bool {
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
    pub(crate) fn drop_stale_timers(&mut self) {
        while let Some((at, key)) = self.timers.peek() {
            if self.timer_is_live(at, key) {
                break;
            }
            self.timers.pop();
        }
        while let Some((at, key)) = self.exact.peek() {
            if self.timer_is_live(at, key) {
                break;
            }
            self.exact.pop();
        }
        let live = self.armed_jobs + self.retry_timers;
        if self.timers.len() + self.exact.len() > 2 * live + 1024 {
            let mut heap = std::mem::take(&mut self.timers);
            heap.retain(|at, key| self.timer_is_live(at, key));
            self.timers = heap;
            let mut heap = std::mem::take(&mut self.exact);
            heap.retain(|at, key| self.timer_is_live(at, key));
            self.exact = heap;
        }
    }

    /// How far ahead of their instants scheduled runs are committed now: the
    /// configured window while every registered node runs such fires, else none.
    pub(crate) fn ahead_window(&self) -> Option<TimeDelta> {
        if self.cfg.fire_ahead.is_zero() || !self.workers.values().all(|w| w.fire_ahead) {
            return None;
        }
        TimeDelta::from_std(self.cfg.fire_ahead).ok()
    }

    /// Whether the instant of the job in `slot` may be committed before it is due:
    /// a job that is not a workflow's, and whose overlap rule cannot depend on what
    /// happens until the instant (`allow`, or nothing of the job active).
    pub(crate) fn may_fire_ahead(&self, slot: u32) -> bool {
        self.jobs.at(slot).is_some_and(|job| {
            job.policy.ahead_ok
                && (job.policy.overlap == Overlap::Allow
                    || self.activity.get(&job.name).is_none_or(|a| a.active == 0))
        })
    }
}
