//! The leading phase: claim the scheduler, load the store into an engine, then feed
//! it store events, completions, commit answers and the time until leadership ends,
//! a rebuild is needed or the node stops.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rota_core::{ClientRequest, Command, EventKind, Response, StoreEvent, Timestamp};
use rota_engine::{Action, Completion, Engine, EngineConfig, Input, LocalAttempt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};
use ulid::Ulid;

use super::{lock, sleep_until, unreadable, Runtime, REBUILD_BACKOFF, STABLE_AFTER};
use crate::SchedulerError;

/// Most store events taken in one turn (they share one batch of commits).
const EVENTS_PER_TURN: usize = 4096;

/// Reasons to rebuild that two places find.
const FELL_BEHIND: &str = "falling behind the store's events";
const STREAM_CLOSED: &str = "the store's event stream closed";

/// Why the leading phase's loop ended.
enum Exit {
    Shutdown,
    NotLeading,
    /// Reload from the store (lagging events, a reset, a failed commit); says why.
    Rebuild(&'static str),
}

impl Runtime {
    /// Schedules while the node leads; answers false on shutdown.
    pub(super) async fn lead(&mut self, leadership: &mut watch::Receiver<bool>) -> bool {
        info!("leading: scheduler engine starting");
        let mut backoff = REBUILD_BACKOFF.0;
        // Started by the engine of an earlier leadership, not seen running yet.
        let mut carried: Vec<LocalAttempt> = self
            .expected
            .drain()
            .map(|(id, attempt)| LocalAttempt {
                id,
                attempt,
                dispatched: false,
            })
            .collect();
        loop {
            if !self.settle_commits().await {
                return false;
            }
            self.ctx.set_detail("claiming the scheduler");
            let mut events = self.node.store().subscribe();
            let built = match self.claim().await {
                Ok(fence) => {
                    self.fence = fence;
                    self.build_engine(std::mem::take(&mut carried)).await
                }
                Err(err) => Err(err),
            };
            let (mut engine, floor, out) = match built {
                Ok(b) => b,
                Err(err) => {
                    let why = rota_core::error::chain(&err);
                    warn!(error = %why, retry_in = ?backoff, "loading the scheduler state failed");
                    self.ctx
                        .set_detail(format!("retrying in {backoff:?} after: {why}"));
                    match self.pause(backoff, leadership).await {
                        Some(true) => {
                            backoff = (backoff * 2).min(REBUILD_BACKOFF.1);
                            continue;
                        }
                        Some(false) => {
                            self.expect(&carried);
                            return true;
                        }
                        None => return false,
                    }
                }
            };
            self.epoch += 1;
            self.ctx
                .set_detail(format!("leading (term {})", self.fence));
            self.carry_out(&mut engine, out);
            let built_at = tokio::time::Instant::now();
            let exit = self
                .follow_store(&mut engine, &mut events, floor, leadership)
                .await;
            if built_at.elapsed() > STABLE_AFTER {
                backoff = REBUILD_BACKOFF.0;
            }
            self.fired_before += engine.stats().fired_total;
            match exit {
                Exit::Shutdown => return false,
                Exit::NotLeading => {
                    // Nothing more is committed for this engine; what it started and
                    // did not dispatch is run here if its start was committed.
                    self.pending.clear();
                    self.expected = engine
                        .local_attempts()
                        .into_iter()
                        .filter(|a| !a.dispatched)
                        .map(|a| (a.id, a.attempt))
                        .collect();
                    info!(
                        expected = self.expected.len(),
                        "no longer leading: scheduler engine stopped"
                    );
                    self.publish_stats(None);
                    return true;
                }
                Exit::Rebuild(why) => {
                    self.ctx.set_detail(format!("rebuilding after {why}"));
                    // What the old engine started but did not dispatch yet: the new
                    // one dispatches it once the store shows it running here.
                    if !self.flush().await {
                        return false;
                    }
                    carried = engine
                        .local_attempts()
                        .into_iter()
                        .filter(|a| !a.dispatched)
                        .collect();
                    info!(
                        carried = carried.len(),
                        "rebuilding the scheduler engine from the store"
                    );
                    match self.pause(backoff, leadership).await {
                        Some(true) => backoff = (backoff * 2).min(REBUILD_BACKOFF.1),
                        Some(false) => {
                            self.expect(&carried);
                            return true;
                        }
                        None => return false,
                    }
                }
            }
        }
    }

    /// Leadership ended before these started attempts reached an engine: the
    /// follower phase dispatches them once the store shows them running here.
    fn expect(&mut self, started: &[LocalAttempt]) {
        self.expected
            .extend(started.iter().map(|a| (a.id, a.attempt)));
    }

    /// Raises the store's scheduler epoch to the term this node leads in, fencing
    /// off every earlier engine (of this node or another); answers that epoch.
    async fn claim(&self) -> Result<u64, SchedulerError> {
        // Term and leader from one metrics snapshot: a term read while this node is
        // its leader, never the term of a successor this node just heard of.
        let status = self.node.status();
        if status.role != "leader" || status.leader != Some(status.node_id) {
            return Err(SchedulerError::NotLeader);
        }
        let term = status.term;
        let request = ClientRequest {
            session: None,
            at: Utc::now(),
            command: Command::ClaimScheduler {
                node: self.cfg.node_name.clone(),
                term,
            },
        };
        match self.node.write(request).await? {
            (index, Response::SchedulerClaimed { epoch }) if epoch == term => {
                info!(epoch, index, "scheduler claimed");
                Ok(epoch)
            }
            (_, Response::SchedulerClaimed { epoch }) => {
                Err(SchedulerError::Superseded { term, epoch })
            }
            (_, other) => Err(SchedulerError::ClaimAnswer(other)),
        }
    }

    /// Loads the store into a new engine and starts it; answers the engine, the
    /// revision the load is at least as new as, and the first actions.
    async fn build_engine(
        &self,
        carried: Vec<LocalAttempt>,
    ) -> Result<(Engine, u64, Vec<Action>), SchedulerError> {
        let store = self.node.store().clone();
        let mut engine_cfg = EngineConfig::new(self.cfg.node_name.clone(), self.cfg.max_running);
        engine_cfg.node_timeout = self.liveness.node_timeout;
        engine_cfg.tags = self.cfg.tags.clone();
        engine_cfg.fire_ahead = self.cfg.fire_ahead;
        let (local, completed): (Vec<LocalAttempt>, Vec<Completion>) = {
            let live = lock(&self.shared.live);
            let local = live
                .iter()
                .map(|(id, r)| LocalAttempt {
                    id: *id,
                    attempt: r.attempt,
                    dispatched: true,
                })
                .collect();
            let completed = live.values().filter_map(|r| r.completion.clone()).collect();
            (local, completed)
        };
        // A million jobs take a while to read: keep it off the async workers.
        let load = tokio::task::spawn_blocking(move || {
            let now = Utc::now();
            let mut engine = Engine::new(engine_cfg, Box::new(Ulid::generate));
            for a in carried.into_iter().chain(local) {
                engine.adopt(a);
            }
            // Events up to here are already in what is read next.
            let floor = store.last_applied_index();
            let mut out = Vec::new();
            engine.handle(
                Input::Config(Arc::new(store.dynamic_config()?)),
                now,
                &mut out,
            );
            // A record that does not decode is left out (and said so): one damaged
            // record, or one written by a newer release during a rolling upgrade,
            // must not keep every other job from being scheduled.
            for node in store.nodes_skipping(&mut unreadable("node"))? {
                engine.handle(Input::NodeRegistered(Arc::new(node)), now, &mut out);
            }
            store.for_each_job_skipping(
                &mut |job| engine.handle(Input::JobUpserted(Arc::new(job)), now, &mut out),
                &mut unreadable("job"),
            )?;
            for e in store.active_executions_skipping(&mut unreadable("execution"))? {
                engine.handle(Input::Execution(Arc::new(e)), now, &mut out);
            }
            engine.start(now, &mut out);
            // Runs that ended but whose outcome was not committed: record it now.
            for c in completed {
                engine.handle(Input::Completed(c), now, &mut out);
            }
            // Events published while no engine ran (a leader change, a restart):
            // replayed from the log up to what was loaded; the store refuses a
            // second fire of an event any earlier engine already handled.
            if let Some(from) = engine.event_floor() {
                replay_events(&store, &mut engine, from, floor, now, &mut out)?;
            }
            Ok::<_, SchedulerError>((engine, floor, out))
        });
        load.await?
    }

    /// The leading loop: one turn per wake-up, all commits of a turn in one batch.
    async fn follow_store(
        &mut self,
        engine: &mut Engine,
        events: &mut broadcast::Receiver<Arc<StoreEvent>>,
        floor: u64,
        leadership: &mut watch::Receiver<bool>,
    ) -> Exit {
        loop {
            self.start_commit();
            self.publish_stats(Some(engine));
            let sleep = sleep_until(engine.next_wakeup());
            let next_launch = self.next_launch();
            let mut out = Vec::new();
            let mut exit = None;
            tokio::select! {
                () = self.ctx.stopping() => return Exit::Shutdown,
                changed = leadership.changed() => {
                    if changed.is_err() || !*leadership.borrow_and_update() {
                        return Exit::NotLeading;
                    }
                }
                event = events.recv() => {
                    exit = match event {
                        Ok(event) => self.take_events(engine, events, event, floor, &mut out),
                        Err(RecvError::Lagged(missed)) => {
                            warn!(missed, "scheduler fell behind the store's events");
                            Some(Exit::Rebuild(FELL_BEHIND))
                        }
                        Err(RecvError::Closed) => {
                            warn!("the store's event stream closed");
                            Some(Exit::Rebuild(STREAM_CLOSED))
                        }
                    };
                }
                Some(c) = self.completions.recv() => {
                    // Runs woken at the same instant go first: their completions
                    // are taken together once they had their turn.
                    tokio::task::yield_now().await;
                    let now = Utc::now();
                    let mut next = Some(c);
                    let mut taken = 0;
                    while let Some(c) = next.take() {
                        self.completed(&c);
                        engine.handle(Input::Completed(c), now, &mut out);
                        taken += 1;
                        if taken < EVENTS_PER_TURN {
                            next = self.completions.try_recv().ok();
                        }
                    }
                }
                Some(handed) = self.handed.recv() => self.handed_over(handed),
                () = super::sleep_until_opt(self.handed_flush) => self.flush_handed(),
                () = sleep_until(next_launch) => self.launch_due(),
                Some(done) = self.commits.join_next() => {
                    match done {
                        Ok(done) => {
                            if !self.committed(done, Some(&mut *engine), &mut out) {
                                exit = Some(Exit::Rebuild("a failed commit"));
                            }
                        }
                        Err(err) => {
                            warn!(error = %err, "commit task failed");
                            exit = Some(Exit::Rebuild("a failed commit task"));
                        }
                    }
                }
                Some(joined) = self.runs.join_next_with_id() => self.reaped(joined),
                () = sleep => {}
            }
            engine.tick(Utc::now(), &mut out);
            self.carry_out(engine, out);
            if let Some(exit) = exit {
                return exit;
            }
        }
    }

    /// Feeds `first` and whatever else is already waiting (up to a bound).
    fn take_events(
        &mut self,
        engine: &mut Engine,
        events: &mut broadcast::Receiver<Arc<StoreEvent>>,
        first: Arc<StoreEvent>,
        floor: u64,
        out: &mut Vec<Action>,
    ) -> Option<Exit> {
        let now = Utc::now();
        let mut next = Some(first);
        for turn in 0..EVENTS_PER_TURN {
            let Some(event) = next.take() else {
                break;
            };
            // Regression (4097 runs due at once lost one): never pull an event the
            // loop will not feed; the rest waits for the next turn.
            let last = turn + 1 == EVENTS_PER_TURN;
            if event.revision > floor {
                let input = match &event.kind {
                    EventKind::JobPut(job) => Some(Input::JobUpserted(job.clone())),
                    EventKind::JobDeleted { name } => {
                        self.job_deleted(name);
                        Some(Input::JobRemoved(name.clone()))
                    }
                    EventKind::Execution(e) => Some(Input::Execution(e.clone())),
                    EventKind::Heartbeat { node, .. } => {
                        Some(Input::NodeAlive { node: node.clone() })
                    }
                    EventKind::NodeRegistered(record) => {
                        Some(Input::NodeRegistered(record.clone()))
                    }
                    EventKind::Published(event) => {
                        if event.event_type == rota_core::event::types::CONFIG_CHANGED {
                            match self.node.store().dynamic_config() {
                                Ok(config) => {
                                    engine.handle(Input::Config(Arc::new(config)), now, out)
                                }
                                Err(err) => {
                                    warn!(error = %err, "cannot read the dynamic settings");
                                    return Some(Exit::Rebuild("an unreadable setting"));
                                }
                            }
                        }
                        Some(Input::Event(event.clone()))
                    }
                    EventKind::KvPut(_) | EventKind::KvDeleted { .. } | EventKind::Run(_) => None,
                    EventKind::Reset => {
                        info!(revision = event.revision, "store state replaced: reloading");
                        return Some(Exit::Rebuild("a snapshot install"));
                    }
                };
                if let Some(input) = input {
                    engine.handle(input, now, out);
                }
            }
            if last {
                break;
            }
            next = match events.try_recv() {
                Ok(event) => Some(event),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Lagged(missed)) => {
                    warn!(missed, "scheduler fell behind the store's events");
                    return Some(Exit::Rebuild(FELL_BEHIND));
                }
                Err(TryRecvError::Closed) => return Some(Exit::Rebuild(STREAM_CLOSED)),
            };
        }
        None
    }

    /// Routes the engine's actions: commits to the next batch, dispatches to
    /// executors, cancels to local runs (or to the store for runs elsewhere).
    fn carry_out(&mut self, engine: &mut Engine, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Fire(fire) => {
                    if let Some(Command::Fire { fires }) = self.pending.last_mut() {
                        fires.push(fire);
                    } else {
                        self.pending.push(Command::Fire { fires: vec![fire] });
                    }
                }
                Action::Start(start) => {
                    if let Some(Command::Start { starts }) = self.pending.last_mut() {
                        starts.push(start);
                    } else {
                        self.pending.push(Command::Start {
                            starts: vec![start],
                        });
                    }
                }
                Action::Finish(finish) => {
                    if let Some(Command::Finish { finishes }) = self.pending.last_mut() {
                        finishes.push(finish);
                    } else {
                        self.pending.push(Command::Finish {
                            finishes: vec![finish],
                        });
                    }
                }
                Action::DeleteJob { job, revision } => self.pending.push(Command::DeleteJob {
                    name: job,
                    if_revision: Some(revision),
                }),
                Action::Dispatch {
                    id,
                    attempt,
                    job,
                    scheduled_at,
                    trigger,
                } => self.dispatch(id, attempt, job, scheduled_at, trigger),
                Action::Cancel { id, attempt } => {
                    let local = lock(&self.shared.live)
                        .get(&id)
                        .filter(|r| r.attempt == attempt)
                        .map(|r| r.cancel.clone());
                    match local {
                        Some(token) => {
                            info!(execution = %id, attempt, "cancelling a local run");
                            token.cancel();
                        }
                        None => self.pending.push(Command::Cancel { id }),
                    }
                }
            }
        }
        self.publish_stats(Some(engine));
    }

    /// Waits `d` unless shutdown or a leadership change comes first: `Some(true)`
    /// to go on leading, `Some(false)` when no longer leading, `None` on shutdown.
    async fn pause(&mut self, d: Duration, leadership: &mut watch::Receiver<bool>) -> Option<bool> {
        tokio::select! {
            () = self.ctx.stopping() => None,
            changed = leadership.changed() => {
                Some(changed.is_ok() && *leadership.borrow_and_update())
            }
            () = tokio::time::sleep(d) => Some(true),
        }
    }
}

/// Events published after `from` and up to `until` from the store's event log, fed
/// to `engine` in order, a page at a time.
fn replay_events(
    store: &rota_store::Store,
    engine: &mut Engine,
    from: u64,
    until: u64,
    now: Timestamp,
    out: &mut Vec<Action>,
) -> Result<(), SchedulerError> {
    const PAGE: usize = 1024;
    let compacted = store.compact_revision()?;
    if compacted > from {
        warn!(
            from,
            compacted,
            "events between these revisions were dropped by retention before a scheduler read them; their triggers did not fire"
        );
    }
    let mut cursor = from;
    while cursor < until {
        let page = store.events_after(cursor, &|e| e.revision <= until, PAGE)?;
        for event in page.events {
            engine.handle(Input::Event(Arc::new(event)), now, out);
        }
        if page.end || page.through <= cursor {
            break;
        }
        cursor = page.through;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sleep_until_a_past_time_returns_at_once() {
        sleep_until(Some(Utc::now() - chrono::TimeDelta::seconds(5))).await;
    }
}
