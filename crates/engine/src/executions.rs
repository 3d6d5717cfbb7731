//! What the store says happened to executions, and what this node's attempts
//! answered: starting, requeueing, finishing, retrying, cancelling, and losing the
//! runs of nodes that stopped reporting.

use super::*;

impl Engine {
    pub(crate) fn on_execution(&mut self, e: &Execution, now: Timestamp, out: &mut Vec<Action>) {
        let here = e.node.as_deref() == Some(self.cfg.node.as_str());
        let status = status_of(e);
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
        match status {
            ExecStatus::Queued => {
                let settled = e.attempt == attempt
                    && match phase {
                        // Our Start or Finish is not applied yet.
                        Phase::Starting { .. } | Phase::Finishing { .. } => true,
                        Phase::Ready(_) | Phase::Blocked(_) => {
                            not_before(e).is_none_or(|due| due <= now)
                        }
                        Phase::RetryWait(due) => not_before(e) == Some(due),
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

    pub(crate) fn on_new_execution(
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
        let status = status_of(e);
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
        match status {
            ExecStatus::Queued => {
                tracked.phase = self.queued_phase(e, now);
                self.track(e.id, tracked);
            }
            ExecStatus::Running
                if here && e.is_placed_ahead() && !self.adopted.contains_key(&e.id) =>
            {
                // Placed here ahead of its instant, for this process (a restart
                // loses what was placed on the earlier one): handed over at its
                // instant.
                tracked.phase = Phase::Starting { here: true };
                self.track(e.id, tracked);
                if e.cancel_requested {
                    self.finish_unstarted(e.id, e.attempt, now, out);
                } else {
                    self.dispatch(e.id, out);
                }
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
    pub(crate) fn running_not_ours(
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
    pub(crate) fn requeue(&mut self, e: &Execution, now: Timestamp) {
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

    pub(crate) fn queued_phase(&mut self, e: &Execution, now: Timestamp) -> Phase {
        match not_before(e) {
            Some(due) if due > now => Phase::RetryWait(due),
            _ => Phase::Ready(self.ready_key(e.priority)),
        }
    }

    pub(crate) fn dispatch(&mut self, id: Ulid, out: &mut Vec<Action>) {
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
    pub(crate) fn finish_unstarted(
        &mut self,
        id: Ulid,
        attempt: u32,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
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
            artifacts: Vec::new(),
            result: None,
            started_at: None,
            usage: None,
        }));
        self.set_phase(id, Phase::Finishing { retry: false });
    }

    pub(crate) fn on_completed(&mut self, c: Completion, now: Timestamp, out: &mut Vec<Action>) {
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
        let retry = self.retry_policy(&t.job);
        let (job, cancel) = (t.job.clone(), t.cancel);
        let finish = finish_for(c, retry, cancel, now);
        let will_retry = finish.retry_at.is_some();
        debug!(job = %job, execution = %finish.id, attempt = finish.attempt, status = finish.status.as_str(), retry_at = ?finish.retry_at, "attempt ended");
        let id = finish.id;
        out.push(Action::Finish(finish));
        self.set_phase(id, Phase::Finishing { retry: will_retry });
    }

    /// The retry policy of `job`'s runs: its own, else the dynamic `default_retry`.
    fn retry_policy(&self, job: &str) -> Option<&RetryPolicy> {
        self.jobs
            .get(job)
            .and_then(|j| j.policy.retry.as_ref())
            .or(self.dynamic.default_retry.as_ref())
    }

    /// Ends an attempt nobody runs any more (its node restarted or went silent).
    pub(crate) fn mark_lost(
        &mut self,
        id: Ulid,
        error: &str,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        let Some(t) = self.execs.get(&id) else {
            return;
        };
        let policy = self.retry_policy(&t.job);
        let finish = Finish::lost(id, t.attempt, policy, t.cancel, error, now);
        info!(job = %t.job, execution = %id, attempt = t.attempt, node = ?t.node, retry_at = ?finish.retry_at, error, "attempt lost");
        let retry = finish.retry_at.is_some();
        out.push(Action::Finish(finish));
        self.set_phase(id, Phase::Finishing { retry });
    }

    /// Loses the runs of every other node that stayed silent for the node timeout.
    pub(crate) fn lose_silent_nodes(&mut self, now: Timestamp, out: &mut Vec<Action>) {
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
    pub(crate) fn cancel_running(&mut self, job: &str, out: &mut Vec<Action>) {
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
    pub(crate) fn cancel(&mut self, id: Ulid, out: &mut Vec<Action>) {
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
    pub(crate) fn send_cancel(&mut self, id: Ulid, out: &mut Vec<Action>) {
        if let Some(t) = self.execs.get_mut(&id) {
            t.cancel = true;
            out.push(Action::Cancel {
                id,
                attempt: t.attempt,
            });
        }
    }

    /// A local attempt that must stop although its record says otherwise.
    pub(crate) fn zombie(&mut self, id: Ulid, attempt: u32, out: &mut Vec<Action>) {
        if self.zombies.insert((id, attempt)) {
            // The slot stays taken until the run reports back; the phase change that
            // follows gives back the one it held.
            self.running_here += 1;
            out.push(Action::Cancel { id, attempt });
        }
    }

    // ----- bookkeeping -----
}

/// The status the engine goes by: a run placed on a node ahead of its instant is
/// that node's like a running one (the node hands it over at the instant and
/// reports the start).
fn status_of(e: &Execution) -> ExecStatus {
    if e.is_placed_ahead() {
        ExecStatus::Running
    } else {
        e.status
    }
}

/// When a queued execution may start: its retry's due time, and never before the
/// instant of a scheduled run (fired ahead of it).
fn not_before(e: &Execution) -> Option<Timestamp> {
    let instant = on_schedule(e.trigger).then_some(e.scheduled_at);
    match (e.next_attempt_at, instant) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Whether runs of this trigger belong to a schedule instant (and so never start
/// before it).
pub(crate) fn on_schedule(trigger: Trigger) -> bool {
    matches!(trigger, Trigger::Schedule | Trigger::Catchup)
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
        artifacts: c.outcome.artifacts,
        result: c.outcome.result,
        started_at: c.started_at,
        usage: c.outcome.usage,
    }
}
