//! The scheduler runtime: the one task that feeds the [`Engine`] the store's events
//! and the time, commits what it decides, and runs what it dispatches.
//!
//! Before anything else it registers the process as the node's worker
//! (`RegisterNode`: tags, capacity, a new incarnation; applying it loses whatever the
//! node's earlier life left running). Then it is a worker with two phases. While the
//! node leads, it subscribes to the store's events first, claims the scheduler
//! (`ClaimScheduler` raises the store's scheduler epoch to the Raft term it leads
//! in), then loads every worker, job and active execution into a fresh engine and
//! lets it recover, then follows: store events, the engine's next timer, local
//! completions, commit results, leadership changes and shutdown, in one `select!`.
//! While it does not lead, no engine exists; it runs the attempts the leader placed
//! on this node (the applied record shows them running here), finishes them by
//! committing their outcome through the node (which forwards to the leader),
//! heartbeats (so the leader keeps placing runs here and does not presume it dead),
//! stops a run whose record moved on (the leader judged it lost, or it was
//! cancelled), and dispatches what its last engine started but could not hand over.
//!
//! Fencing: every batch an engine commits is a `Command::Fenced` with the epoch its
//! claim got (its term). Once a successor claimed the scheduler, a batch still in
//! flight from this node's engine (`Node::write` forwards it to the new leader) can
//! neither fire nor start anything; its finishes still count. A claim forwarded from
//! a node that lost the lead names an older term and changes nothing.
//!
//! Commits use group commit: the `Fire`/`Start`/`Finish` actions of one or more
//! turns go into a single `Command::Fenced` batch (one log entry, one fsync) while
//! at most one commit is in flight, so a burst of 10,000 due jobs costs a handful of
//! log entries, not 20,000. A failed commit, a lagging event stream or a snapshot install
//! (`Reset`) rebuilds the engine from the store once the commits in flight landed;
//! runs going on here are handed to the new engine, never lost or run twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use rota_cluster::Node;
use rota_core::{
    ClientRequest, Command, EventKind, ExecStatus, Execution, Response, StoreEvent, Timestamp,
    Trigger,
};
use rota_exec::{executor_for, OutputBuffer, RunOutcome, RunRequest};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use ulid::Ulid;

use crate::{LivenessConfig, SchedulerConfig, SchedulerError, SchedulerStats};
use rota_engine::{finish_for, Action, Completion, Engine, EngineConfig, Input, LocalAttempt};

/// Most store events taken in one turn (they share one batch of commits).
const EVENTS_PER_TURN: usize = 4096;
/// First and longest wait before rebuilding an engine that failed.
const REBUILD_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// An engine that ran this long resets the rebuild backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Longest single sleep towards a far timer (re-checked after it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// State shared between the runtime task and the handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Runs of this node, by execution id, until their `Finish` is committed.
    live: Mutex<HashMap<Ulid, LiveRun>>,
    stats: Mutex<SchedulerStats>,
    /// Fired once the runtime has stopped.
    done: CancellationToken,
}

#[derive(Debug, Clone)]
struct LiveRun {
    attempt: u32,
    output: OutputBuffer,
    cancel: CancellationToken,
    /// Set when the run ended; kept until its `Finish` is committed.
    completion: Option<Completion>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned map is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn live_output(&self, id: Ulid) -> Option<OutputBuffer> {
        lock(&self.live).get(&id).map(|r| r.output.clone())
    }

    pub(crate) fn stats(&self) -> SchedulerStats {
        lock(&self.stats).clone()
    }

    pub(crate) async fn stopped(&self) {
        self.done.cancelled().await;
    }
}

/// Starts the runtime task.
pub(crate) fn spawn(
    node: Arc<Node>,
    cfg: SchedulerConfig,
    liveness: LivenessConfig,
    shutdown: CancellationToken,
) -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let runtime = Runtime {
        node,
        cfg,
        liveness,
        shutdown,
        shared: shared.clone(),
        completions_tx,
        completions,
        runs: JoinSet::new(),
        run_ids: HashMap::new(),
        commits: JoinSet::new(),
        pending: Vec::new(),
        epoch: 0,
        fence: 0,
        fired_before: 0,
        expected: HashMap::new(),
        heartbeats: JoinSet::new(),
        registered: 0,
    };
    tokio::spawn(runtime.run());
    shared
}

/// A commit task's answer.
struct CommitDone {
    /// The engine generation that produced it.
    epoch: u64,
    command: Command,
    result: Result<(u64, Response), rota_cluster::WriteError>,
}

/// Why the leading phase's loop ended.
enum Exit {
    Shutdown,
    NotLeading,
    /// Reload from the store (lagging events, a reset, a failed commit).
    Rebuild,
}

struct Runtime {
    node: Arc<Node>,
    cfg: SchedulerConfig,
    liveness: LivenessConfig,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions: mpsc::UnboundedReceiver<Completion>,
    /// Executor tasks of the local runs.
    runs: JoinSet<()>,
    run_ids: HashMap<tokio::task::Id, (Ulid, u32)>,
    /// At most one commit in flight.
    commits: JoinSet<CommitDone>,
    /// Commands waiting for the next batch, consecutive ones of a kind merged.
    pending: Vec<Command>,
    epoch: u64,
    /// The scheduler epoch the current engine claimed: its batches are fenced with it.
    fence: u64,
    /// Fires counted by engines that are gone.
    fired_before: u64,
    /// Attempts the last engine started on this node but did not dispatch before
    /// leadership was lost: dispatched when the store shows them running here.
    expected: HashMap<Ulid, u32>,
    /// The heartbeat in flight, if any.
    heartbeats: JoinSet<()>,
    /// The log index of this process's worker registration.
    registered: u64,
}

impl Runtime {
    async fn run(mut self) {
        info!(node = %self.cfg.node_name, max_running = self.cfg.max_running, tags = ?self.cfg.tags, "scheduler runtime started");
        if !self.register().await {
            self.stop().await;
            return;
        }
        let mut leadership = self.node.leadership();
        let mut leadership_open = true;
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            let leading = leadership_open && *leadership.borrow_and_update();
            let go_on = if leading {
                self.lead(&mut leadership).await
            } else {
                self.follow(&mut leadership, &mut leadership_open).await
            };
            if !go_on {
                break;
            }
        }
        self.stop().await;
    }

    /// Registers this process as the node's worker (its tags, its capacity, a new
    /// incarnation), retrying until it is committed; false on shutdown. Applying it
    /// finishes the attempts of the node's earlier life as lost, so every attempt
    /// recorded on this node once it is applied here was given to this process.
    async fn register(&mut self) -> bool {
        let command = Command::RegisterNode {
            node: self.cfg.node_name.clone(),
            incarnation: Ulid::generate(),
            tags: self.cfg.tags.clone(),
            max_running: u32::try_from(self.cfg.max_running).unwrap_or(u32::MAX),
            url: Some(self.node.config().advertise_url.clone()),
        };
        let mut backoff = REBUILD_BACKOFF.0;
        loop {
            let request = ClientRequest {
                session: None,
                at: Utc::now(),
                command: command.clone(),
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                result = self.node.write(request) => match result {
                    Ok((index, Response::NodeRegistered { lost, .. })) => {
                        info!(index, lost = lost.len(), "registered as a worker");
                        self.registered = index;
                        return true;
                    }
                    Ok((_, other)) => warn!(answer = ?other, "unexpected answer to a node registration"),
                    Err(err) => debug!(error = %err, retry_in = ?backoff, "node registration not committed yet"),
                },
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REBUILD_BACKOFF.1);
        }
    }

    // ----- leading -----

    /// Schedules while the node leads; answers false on shutdown.
    async fn lead(&mut self, leadership: &mut watch::Receiver<bool>) -> bool {
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
                    warn!(error = %err, retry_in = ?backoff, "loading the scheduler state failed");
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
                Exit::Rebuild => {
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
            (_, other) => Err(SchedulerError::ClaimAnswer(format!("{other:?}"))),
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
            for node in store.nodes()? {
                engine.handle(Input::NodeRegistered(Arc::new(node)), now, &mut out);
            }
            store.for_each_job(&mut |job| {
                engine.handle(Input::JobUpserted(Arc::new(job)), now, &mut out);
            })?;
            for e in store.active_executions()? {
                engine.handle(Input::Execution(Arc::new(e)), now, &mut out);
            }
            engine.start(now, &mut out);
            // Runs that ended but whose outcome was not committed: record it now.
            for c in completed {
                engine.handle(Input::Completed(c), now, &mut out);
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
            let mut out = Vec::new();
            let mut exit = None;
            tokio::select! {
                () = self.shutdown.cancelled() => return Exit::Shutdown,
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
                            Some(Exit::Rebuild)
                        }
                        Err(RecvError::Closed) => {
                            warn!("the store's event stream closed");
                            Some(Exit::Rebuild)
                        }
                    };
                }
                Some(c) = self.completions.recv() => {
                    self.completed(&c);
                    engine.handle(Input::Completed(c), Utc::now(), &mut out);
                }
                Some(done) = self.commits.join_next() => {
                    match done {
                        Ok(done) => {
                            if !self.committed(done, Some(&mut *engine), &mut out) {
                                exit = Some(Exit::Rebuild);
                            }
                        }
                        Err(err) => {
                            warn!(error = %err, "commit task failed");
                            exit = Some(Exit::Rebuild);
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
                    EventKind::JobDeleted { name } => Some(Input::JobRemoved(name.clone())),
                    EventKind::Execution(e) => Some(Input::Execution(e.clone())),
                    EventKind::Heartbeat { node, .. } => {
                        Some(Input::NodeAlive { node: node.clone() })
                    }
                    EventKind::NodeRegistered(record) => {
                        Some(Input::NodeRegistered(record.clone()))
                    }
                    EventKind::KvPut(_) | EventKind::KvDeleted { .. } => None,
                    EventKind::Reset => {
                        info!(revision = event.revision, "store state replaced: reloading");
                        return Some(Exit::Rebuild);
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
                    return Some(Exit::Rebuild);
                }
                Err(TryRecvError::Closed) => return Some(Exit::Rebuild),
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

    /// Sends the pending commands as one request, unless one is in flight.
    fn start_commit(&mut self) {
        if self.pending.is_empty() || !self.commits.is_empty() {
            return;
        }
        let command = Command::Fenced {
            epoch: self.fence,
            commands: std::mem::take(&mut self.pending),
        };
        self.spawn_commit(command);
    }

    /// Takes a commit's answer; false when it failed (the engine must be rebuilt).
    fn committed(
        &mut self,
        done: CommitDone,
        engine: Option<&mut Engine>,
        out: &mut Vec<Action>,
    ) -> bool {
        let response = match done.result {
            Ok((index, response)) => {
                debug!(index, "scheduler batch committed");
                response
            }
            Err(err) => {
                warn!(error = %err, "committing scheduler actions failed");
                return false;
            }
        };
        // Finished runs leave the live map only now, so a follower of their output
        // always finds either the live buffer or the stored output.
        let mut finished = Vec::new();
        let mut dropped = Vec::new();
        walk_commit(&done.command, &response, &mut finished, &mut dropped);
        {
            let mut live = lock(&self.shared.live);
            for (id, attempt) in finished {
                if live
                    .get(&id)
                    .is_some_and(|r| r.attempt == attempt && r.completion.is_some())
                {
                    live.remove(&id);
                }
            }
        }
        if let Some(engine) = engine {
            if done.epoch == self.epoch {
                let now = Utc::now();
                for id in dropped {
                    engine.handle(Input::FireDropped { id }, now, out);
                }
            }
        }
        true
    }

    /// Waits for the commit in flight; false on shutdown.
    async fn settle_commits(&mut self) -> bool {
        while !self.commits.is_empty() {
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                Some(done) = self.commits.join_next() => {
                    if let Ok(done) = done {
                        self.committed(done, None, &mut Vec::new());
                    }
                }
            }
        }
        true
    }

    /// Commits everything pending before the engine is replaced (best effort: a
    /// failure leaves the store as it is, which the next engine reads); false on
    /// shutdown.
    async fn flush(&mut self) -> bool {
        if !self.settle_commits().await {
            return false;
        }
        self.start_commit();
        if !self.settle_commits().await {
            return false;
        }
        self.pending.clear();
        true
    }

    /// Waits `d` unless shutdown or a leadership change comes first: `Some(true)`
    /// to go on leading, `Some(false)` when no longer leading, `None` on shutdown.
    async fn pause(&mut self, d: Duration, leadership: &mut watch::Receiver<bool>) -> Option<bool> {
        tokio::select! {
            () = self.shutdown.cancelled() => None,
            changed = leadership.changed() => {
                Some(changed.is_ok() && *leadership.borrow_and_update())
            }
            () = tokio::time::sleep(d) => Some(true),
        }
    }

    // ----- runs -----

    fn dispatch(
        &mut self,
        id: Ulid,
        attempt: u32,
        job: String,
        scheduled_at: Timestamp,
        trigger: Trigger,
    ) {
        let now = Utc::now();
        if attempt == 1 && matches!(trigger, Trigger::Schedule | Trigger::Catchup) {
            let lag = now
                .signed_duration_since(scheduled_at)
                .to_std()
                .unwrap_or(Duration::ZERO);
            lock(&self.shared.stats)
                .dispatch_lag
                .observe(lag.as_secs_f64());
        }
        let record = match self.node.store().get_job(&job) {
            Ok(Some(record)) => record,
            Ok(None) => {
                return self.cannot_run(id, attempt, format!("job {job:?} no longer exists"))
            }
            Err(err) => return self.cannot_run(id, attempt, format!("reading job {job:?}: {err}")),
        };
        let spec = record.spec;
        let output = OutputBuffer::new(spec.max_output_bytes);
        let cancel = CancellationToken::new();
        lock(&self.shared.live).insert(
            id,
            LiveRun {
                attempt,
                output: output.clone(),
                cancel: cancel.clone(),
                completion: None,
            },
        );
        let request = RunRequest {
            execution_id: id,
            job: job.clone(),
            scheduled_at,
            attempt,
            node: self.cfg.node_name.clone(),
            timeout: spec.timeout.map(|t| t.0),
            spec: spec.executor,
        };
        let executor = executor_for(&request.spec);
        let tx = self.completions_tx.clone();
        info!(job = %job, execution = %id, attempt, executor = request.spec.type_name(), "run started");
        let handle = self.runs.spawn(async move {
            let outcome = executor.run(request, output.clone(), cancel).await;
            output.close();
            let (bytes, truncated) = output.snapshot();
            // The receiver lives as long as the runtime; after it, nobody records.
            let _ = tx.send(Completion {
                id,
                attempt,
                outcome,
                output: String::from_utf8_lossy(&bytes).into_owned(),
                output_truncated: truncated,
            });
        });
        self.run_ids.insert(handle.id(), (id, attempt));
    }

    /// A dispatched attempt that cannot be handed to an executor fails at once.
    fn cannot_run(&mut self, id: Ulid, attempt: u32, why: String) {
        warn!(execution = %id, attempt, error = %why, "cannot run");
        let _ = self.completions_tx.send(Completion {
            id,
            attempt,
            outcome: RunOutcome::failed(None, why),
            output: String::new(),
            output_truncated: false,
        });
    }

    /// Notes a run's end in the live map (its output stays readable there).
    fn completed(&mut self, c: &Completion) {
        if let Some(run) = lock(&self.shared.live).get_mut(&c.id) {
            if run.attempt == c.attempt {
                run.completion = Some(c.clone());
            }
        }
        info!(execution = %c.id, attempt = c.attempt, status = c.outcome.status.as_str(), "run ended");
    }

    /// An executor task ended; one that panicked still gets an outcome.
    fn reaped(&mut self, joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let (task, panicked) = match joined {
            Ok((task, ())) => (task, None),
            Err(err) => (err.id(), Some(err)),
        };
        let Some((id, attempt)) = self.run_ids.remove(&task) else {
            return;
        };
        if let Some(err) = panicked {
            if let Some(run) = lock(&self.shared.live).get(&id) {
                run.output.close();
            }
            self.cannot_run(id, attempt, format!("the executor task failed: {err}"));
        }
    }

    // ----- not leading -----

    /// Finishes local runs while another node (or none) leads; answers true when
    /// this node leads again, false on shutdown.
    async fn follow(&mut self, leadership: &mut watch::Receiver<bool>, open: &mut bool) -> bool {
        let mut events = self.node.store().subscribe();
        let mut events_open = true;
        // Runs that ended while leading but whose outcome did not commit.
        let ended: Vec<Completion> = lock(&self.shared.live)
            .values()
            .filter_map(|r| r.completion.clone())
            .collect();
        for c in ended {
            self.finish_as_follower(c);
        }
        self.reconcile_all();
        let mut beat = tokio::time::interval(self.liveness.heartbeat_interval);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.publish_stats(None);
            tokio::select! {
                () = self.shutdown.cancelled() => return false,
                event = events.recv(), if events_open => match event {
                    Ok(event) => match &event.kind {
                        EventKind::Execution(e) => self.reconcile(e),
                        EventKind::Reset => self.reconcile_all(),
                        _ => {}
                    },
                    Err(RecvError::Lagged(missed)) => {
                        debug!(missed, "fell behind the store's events: reconciling local runs");
                        self.reconcile_all();
                    }
                    Err(RecvError::Closed) => events_open = false,
                },
                _ = beat.tick() => {
                    self.heartbeat();
                    self.retry_finishes();
                }
                Some(_) = self.heartbeats.join_next() => {}
                changed = leadership.changed(), if *open => {
                    if changed.is_err() {
                        *open = false;
                    } else if *leadership.borrow_and_update() {
                        return true;
                    }
                }
                Some(c) = self.completions.recv() => {
                    self.completed(&c);
                    self.finish_as_follower(c);
                }
                Some(done) = self.commits.join_next() => {
                    if let Ok(done) = done {
                        self.committed(done, None, &mut Vec::new());
                    }
                }
                Some(joined) = self.runs.join_next_with_id() => self.reaped(joined),
            }
        }
    }

    /// Holds a local run, an expected start or an attempt of this node's earlier life
    /// against its record (while not leading).
    fn reconcile(&mut self, e: &Execution) {
        let me = self.cfg.node_name.as_str();
        let on_me = e.status == ExecStatus::Running && e.node.as_deref() == Some(me);
        let live = lock(&self.shared.live)
            .get(&e.id)
            .map(|r| (r.attempt, r.cancel.clone(), r.completion.is_some()));
        if let Some((attempt, token, ended)) = live {
            if ended || token.is_cancelled() {
                return;
            }
            if e.attempt < attempt {
                return; // an event from before this run started
            }
            if !(on_me && e.attempt == attempt) {
                // Judged lost by the leader (this node looked dead), or ended: another
                // attempt may run elsewhere, so this one stops.
                warn!(execution = %e.id, attempt, status = e.status.as_str(), "the record of a local run moved on: stopping it");
                token.cancel();
            } else if e.cancel_requested {
                info!(execution = %e.id, attempt, "cancelling a local run");
                token.cancel();
            }
            return;
        }
        if let Some(attempt) = self.expected.get(&e.id).copied() {
            if on_me && e.attempt == attempt {
                self.expected.remove(&e.id);
                info!(execution = %e.id, attempt, "dispatching a run started before leadership was lost");
                self.dispatch(e.id, attempt, e.job.clone(), e.scheduled_at, e.trigger);
                if e.cancel_requested {
                    if let Some(r) = lock(&self.shared.live).get(&e.id) {
                        r.cancel.cancel();
                    }
                }
                return;
            }
            if e.status.is_terminal() || e.attempt > attempt {
                self.expected.remove(&e.id);
            }
            return;
        }
        if on_me {
            self.run_assigned(e);
        }
    }

    /// An attempt recorded as running here that this process does not run. Once this
    /// process's registration is applied, such a record was made for it (the
    /// registration lost everything of the node's earlier life): a leader placed the
    /// attempt here, and it runs. An event from before the registration may still
    /// show an attempt of the earlier life; the record as it is now decides.
    fn run_assigned(&mut self, e: &Execution) {
        let store = self.node.store();
        if store.last_applied_index() < self.registered {
            return; // the registration will lose it
        }
        let current = match store.get_execution(e.id) {
            Ok(Some(current)) => current,
            Ok(None) => return,
            Err(err) => {
                warn!(execution = %e.id, error = %err, "reading an execution failed");
                return;
            }
        };
        let me = self.cfg.node_name.as_str();
        if current.status != ExecStatus::Running
            || current.node.as_deref() != Some(me)
            || current.attempt != e.attempt
        {
            return;
        }
        info!(job = %current.job, execution = %current.id, attempt = current.attempt, "running an attempt placed on this node");
        self.dispatch(
            current.id,
            current.attempt,
            current.job.clone(),
            current.scheduled_at,
            current.trigger,
        );
        if current.cancel_requested {
            if let Some(r) = lock(&self.shared.live).get(&current.id) {
                r.cancel.cancel();
            }
        }
    }

    /// Reconciles every active record and every local run (on entering the follower
    /// phase, after a snapshot install or a lag).
    fn reconcile_all(&mut self) {
        let store = self.node.store().clone();
        let active = match store.active_executions() {
            Ok(active) => active,
            Err(err) => {
                warn!(error = %err, "reading active executions failed");
                return;
            }
        };
        let active_ids: HashSet<Ulid> = active.iter().map(|e| e.id).collect();
        for e in &active {
            self.reconcile(e);
        }
        let ended_on_record: Vec<(Ulid, CancellationToken)> = lock(&self.shared.live)
            .iter()
            .filter(|(id, r)| r.completion.is_none() && !active_ids.contains(id))
            .map(|(id, r)| (*id, r.cancel.clone()))
            .collect();
        for (id, token) in ended_on_record {
            match store.get_execution(id) {
                Ok(Some(e)) => self.reconcile(&e),
                Ok(None) => {
                    warn!(execution = %id, "the record of a local run is gone: stopping it");
                    token.cancel();
                }
                Err(err) => warn!(execution = %id, error = %err, "reading an execution failed"),
            }
        }
    }

    /// Tells the leader this node is alive (at most one heartbeat in flight): it
    /// vouches for the runs recorded here, and keeps the node among those runs are
    /// placed on.
    fn heartbeat(&mut self) {
        // A node removed from the cluster no longer sees the log: keeping silent
        // lets the leader stop placing runs on it (and lose what it had).
        if !self.heartbeats.is_empty() || !self.node.is_member() {
            return;
        }
        let node = self.node.clone();
        let name = self.cfg.node_name.clone();
        self.heartbeats.spawn(async move {
            let request = ClientRequest {
                session: None,
                at: Utc::now(),
                command: Command::Heartbeat { node: name },
            };
            if let Err(err) = node.write(request).await {
                debug!(error = %err, "heartbeat not committed");
            }
        });
    }

    /// Outcomes whose commit failed (no leader for a while) are sent again, one round
    /// at a time; a repeat of an applied one is ignored by the store.
    fn retry_finishes(&mut self) {
        if !self.commits.is_empty() {
            return;
        }
        let ended: Vec<Completion> = lock(&self.shared.live)
            .values()
            .filter_map(|r| r.completion.clone())
            .collect();
        if !ended.is_empty() {
            debug!(runs = ended.len(), "committing run outcomes again");
        }
        for c in ended {
            self.finish_as_follower(c);
        }
    }

    /// Commits a run's outcome without an engine, reading its job's retry policy and
    /// the execution's cancel flag from the store. A failure is tried again at the
    /// next heartbeat tick (or by the next engine of this node).
    fn finish_as_follower(&mut self, c: Completion) {
        let store = self.node.store();
        let exec = store.get_execution(c.id).ok().flatten();
        let job = exec
            .as_ref()
            .and_then(|e| store.get_job(&e.job).ok().flatten());
        let cancel_requested = exec.as_ref().is_some_and(|e| e.cancel_requested);
        let finish = finish_for(
            c,
            job.as_ref().and_then(|j| j.spec.retry.as_ref()),
            cancel_requested,
            Utc::now(),
        );
        self.commit_unfenced(Command::Finish {
            finishes: vec![finish],
        });
    }

    /// Commits a command outside any engine's batches (no fence: finishes apply
    /// whoever leads).
    fn commit_unfenced(&mut self, command: Command) {
        self.spawn_commit(command);
    }

    /// Commits `command` in a background task; its answer comes back through
    /// `self.commits`.
    fn spawn_commit(&mut self, command: Command) {
        let node = self.node.clone();
        let epoch = self.epoch;
        self.commits.spawn(async move {
            let request = ClientRequest {
                session: None,
                at: Utc::now(),
                command: command.clone(),
            };
            let result = node.write(request).await;
            CommitDone {
                epoch,
                command,
                result,
            }
        });
    }

    // ----- stopping -----

    /// Cancels local runs and waits for them and for commits in flight. Outcomes of
    /// cancelled runs are not committed: the next leader marks them lost (and
    /// retries them per policy).
    async fn stop(&mut self) {
        let runs: Vec<CancellationToken> = lock(&self.shared.live)
            .values()
            .map(|r| r.cancel.clone())
            .collect();
        info!(runs = runs.len(), "scheduler runtime stopping");
        for token in runs {
            token.cancel();
        }
        while self.runs.join_next().await.is_some() {}
        while self.commits.join_next().await.is_some() {}
        self.heartbeats.abort_all();
        while self.heartbeats.join_next().await.is_some() {}
        for run in lock(&self.shared.live).values() {
            run.output.close();
        }
        self.publish_stats(None);
        info!("scheduler runtime stopped");
        self.shared.done.cancel();
    }

    fn publish_stats(&self, engine: Option<&Engine>) {
        // Counting local runs walks the live map: only when no engine counts them
        // (this is called every loop turn, and a burst can hold 10,000 runs).
        let local_runs = if engine.is_none() {
            lock(&self.shared.live)
                .values()
                .filter(|r| r.completion.is_none())
                .count()
        } else {
            0
        };
        let mut stats = lock(&self.shared.stats);
        stats.leading = engine.is_some();
        match engine {
            Some(engine) => {
                let s = engine.stats();
                stats.jobs = s.jobs;
                stats.running = s.running;
                stats.queued = s.queued;
                stats.timers = s.timers;
                stats.fired_total = self.fired_before + s.fired_total;
            }
            None => {
                stats.jobs = 0;
                stats.running = local_runs;
                stats.queued = 0;
                stats.timers = 0;
                stats.fired_total = self.fired_before;
            }
        }
    }
}

/// The finishes a committed command carried, and its fires that created nothing
/// (matched by position with the answer's outcomes).
fn walk_commit(
    command: &Command,
    response: &Response,
    finished: &mut Vec<(Ulid, u32)>,
    dropped: &mut Vec<Ulid>,
) {
    match (command, response) {
        (Command::Batch { commands }, Response::Batch { responses })
        | (Command::Fenced { commands, .. }, Response::Batch { responses }) => {
            for (c, r) in commands.iter().zip(responses) {
                walk_commit(c, r, finished, dropped);
            }
        }
        (Command::Fire { fires }, Response::Fired { outcomes }) => {
            for (fire, outcome) in fires.iter().zip(outcomes) {
                if !outcome.created {
                    dropped.push(fire.id);
                }
            }
        }
        (Command::Finish { finishes }, _) => {
            finished.extend(finishes.iter().map(|f| (f.id, f.attempt)));
        }
        _ => {}
    }
}

/// A future that completes at the wall-clock time `at` (never, when `None`).
async fn sleep_until(at: Option<Timestamp>) {
    match at {
        Some(at) => {
            let wait = at
                .signed_duration_since(Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use rota_core::{ExecStatus, Finish, Fire, FireOutcome};

    use super::*;

    fn fire(id: u128) -> Fire {
        Fire {
            id: Ulid(id),
            job: "j".into(),
            scheduled_at: Utc::now(),
            trigger: Trigger::Schedule,
            start: None,
            skip_reason: None,
        }
    }

    #[test]
    fn walk_commit_matches_fires_to_outcomes_by_position() {
        let finish = Finish {
            id: Ulid(9),
            attempt: 2,
            status: ExecStatus::Succeeded,
            at: Utc::now(),
            exit_code: None,
            error: None,
            output: None,
            output_truncated: false,
            retry_at: None,
        };
        let command = Command::Batch {
            commands: vec![
                Command::Fire {
                    fires: vec![fire(1), fire(2)],
                },
                Command::Finish {
                    finishes: vec![finish],
                },
            ],
        };
        let response = Response::Batch {
            responses: vec![
                Response::Fired {
                    outcomes: vec![
                        FireOutcome {
                            id: Ulid(1),
                            job: "j".into(),
                            created: true,
                        },
                        // An instant fired before: the answer names the existing id.
                        FireOutcome {
                            id: Ulid(77),
                            job: "j".into(),
                            created: false,
                        },
                    ],
                },
                Response::Ok,
            ],
        };
        let (mut finished, mut dropped) = (Vec::new(), Vec::new());
        walk_commit(&command, &response, &mut finished, &mut dropped);
        assert_eq!(finished, vec![(Ulid(9), 2)]);
        assert_eq!(dropped, vec![Ulid(2)]);
    }

    #[tokio::test]
    async fn sleep_until_a_past_time_returns_at_once() {
        sleep_until(Some(Utc::now() - chrono::TimeDelta::seconds(5))).await;
    }
}
