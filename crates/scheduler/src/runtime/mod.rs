//! The scheduler runtime: the one worker (`scheduler`, under the caller's
//! [`Runner`]) that feeds the [`Engine`] the store's events and the time, commits
//! what it decides, and runs what it dispatches. The tasks it starts (executor runs,
//! commits, heartbeats) are its own: it awaits all of them before it ends.
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
//!
//! The parts: `leader` (claim, load, the leading loop), `follower` (the phases
//! without an engine), `commit` (group commit and its answers) and `dispatch`
//! (handing attempts to executors and taking their outcomes).

mod commit;
mod dispatch;
mod follower;
mod leader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use rota_background::{Runner, WorkerContext};
use rota_cluster::Node;
use rota_core::{ClientRequest, Command, Finish, NodeRecord, Response};
use rota_engine::{Completion, Engine};
use rota_exec::OutputBuffer;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use ulid::Ulid;

use crate::{LivenessConfig, SchedulerConfig, SchedulerStats};
use commit::CommitDone;

/// First and longest wait before rebuilding an engine that failed.
const REBUILD_BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// An engine that ran this long resets the rebuild backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Longest a stopping node waits for the outcomes of the runs it cut short to commit.
const CUT_SHORT_COMMIT: Duration = Duration::from_secs(5);

/// State shared between the runtime task and the handle.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Runs of this node, by execution id, until their `Finish` is committed.
    live: Mutex<HashMap<Ulid, LiveRun>>,
    stats: Mutex<SchedulerStats>,
    /// Woken whenever runs leave the live map (a stopping node waits for none left).
    runs_left: Notify,
    /// This process's registration as a worker, once committed.
    registration: Mutex<Option<NodeRecord>>,
    /// Set when the node stops taking runs: attempts placed here after it are not
    /// started.
    draining: AtomicBool,
    /// Set when the grace of a stopping node ran out: the runs still going are
    /// cancelled at stop and recorded `cancelled` with this reason (retried per
    /// policy), instead of being left for the next leader to find lost.
    cut_short: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
struct LiveRun {
    /// The job it is a run of (its deletion stops the run: nothing records it).
    job: String,
    attempt: u32,
    output: OutputBuffer,
    cancel: CancellationToken,
    /// When it was handed to its executor (none while it waits for its instant).
    handed_at: Option<rota_core::Timestamp>,
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

    pub(crate) fn live_runs(&self) -> usize {
        lock(&self.live).len()
    }

    /// Waits until no run of this node is left (every outcome committed).
    pub(crate) async fn no_runs_left(&self) {
        loop {
            // Made before looking, so a wake-up between the look and the wait counts.
            let woken = self.runs_left.notified();
            if lock(&self.live).is_empty() {
                return;
            }
            woken.await;
        }
    }

    pub(crate) fn registration(&self) -> Option<NodeRecord> {
        lock(&self.registration).clone()
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub(crate) fn cut_short(&self, reason: String) {
        *lock(&self.cut_short) = Some(reason);
    }
}

/// Starts the runtime as the worker `scheduler` of `workers`; it stops when that
/// scope does.
pub(crate) fn spawn(
    node: Arc<Node>,
    cfg: SchedulerConfig,
    liveness: LivenessConfig,
    workers: &Runner,
) -> Arc<Shared> {
    let shared = Arc::new(Shared::default());
    let (completions_tx, completions) = mpsc::unbounded_channel();
    let (handed_tx, handed) = mpsc::unbounded_channel();
    let for_runtime = shared.clone();
    workers.spawn("scheduler", move |ctx| {
        let runtime = Runtime {
            node,
            cfg,
            liveness,
            ctx,
            shared: for_runtime,
            completions_tx,
            completions,
            handed_tx,
            handed,
            handed_buf: Vec::new(),
            launches: std::collections::BTreeMap::new(),
            launch_seq: 0,
            handed_since: None,
            handed_flush: None,
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
            ended: HashMap::new(),
            contact: Contact::default(),
        };
        async move {
            runtime.run().await;
            Ok(())
        }
    });
    shared
}

/// An attempt handed to its executor on this node, and when.
type Handed = (Ulid, u32, rota_core::Timestamp);

struct Runtime {
    node: Arc<Node>,
    cfg: SchedulerConfig,
    liveness: LivenessConfig,
    /// The shutdown signal, and where the runtime says what it is doing.
    ctx: WorkerContext,
    shared: Arc<Shared>,
    completions_tx: mpsc::UnboundedSender<Completion>,
    completions: mpsc::UnboundedReceiver<Completion>,
    /// Attempts handed to their executor (id, attempt, when): the start of those
    /// placed here ahead of their instant is committed from them.
    handed_tx: mpsc::UnboundedSender<Handed>,
    handed: mpsc::UnboundedReceiver<Handed>,
    /// Runs placed here ahead of their instant, by instant (then dispatch order).
    launches: std::collections::BTreeMap<(rota_core::Timestamp, u64), dispatch::Launch>,
    launch_seq: u64,
    /// Hand-overs noted, their starts not committed yet; since when, and when to.
    handed_buf: Vec<Handed>,
    handed_since: Option<tokio::time::Instant>,
    handed_flush: Option<tokio::time::Instant>,
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
    /// The heartbeat in flight, if any (aborted on stop: the node is going away).
    heartbeats: JoinSet<()>,
    /// The log index of this process's worker registration.
    registered: u64,
    /// Attempts that ran here and whose finish committed at the given log index,
    /// until this node's replica applied it: never run again on a stale event.
    ended: HashMap<(Ulid, u32), u64>,
    /// When this node last sent a write that committed (see [`Contact`]).
    contact: Contact,
}

/// When this node last sent a request that then committed and that vouches for it
/// (a heartbeat, its registration, a batch of its engine while it led), in Unix
/// milliseconds; 0 before any. A leader judges a follower dead only after no
/// heartbeat of it for the node timeout, and a new leader gives every node a full
/// timeout from its start: a node whose last contact is recent cannot have had its
/// runs judged lost.
#[derive(Debug, Clone, Default)]
pub(super) struct Contact(Arc<std::sync::atomic::AtomicI64>);

impl Contact {
    /// Notes that a request sent at `at` committed.
    pub(super) fn committed(&self, at: rota_core::Timestamp) {
        self.0.fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// Whether the last contact is older than `limit` (or there was none).
    pub(super) fn older_than(&self, limit: Duration) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        Utc::now().timestamp_millis().saturating_sub(last) > limit
    }
}

impl Runtime {
    async fn run(mut self) {
        info!(node = %self.cfg.node_name, max_running = self.cfg.max_running, tags = ?self.cfg.tags, "scheduler runtime started");
        self.ctx.set_detail("registering");
        if !self.register().await {
            self.stop().await;
            return;
        }
        let mut leadership = self.node.leadership();
        let mut leadership_open = true;
        loop {
            if self.ctx.is_stopping() {
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
            fire_ahead: true,
        };
        let mut backoff = REBUILD_BACKOFF.0;
        loop {
            let at = Utc::now();
            let request = ClientRequest {
                session: None,
                at,
                command: command.clone(),
            };
            tokio::select! {
                () = self.ctx.stopping() => return false,
                result = self.node.write(request) => match result {
                    Ok((index, Response::NodeRegistered { lost, record })) => {
                        info!(index, lost = lost.len(), "registered as a worker");
                        self.contact.committed(at);
                        self.registered = index;
                        *lock(&self.shared.registration) = Some(*record);
                        return true;
                    }
                    Ok((_, other)) => warn!(answer = ?other, "unexpected answer to a node registration"),
                    Err(err) => info!(error = %err, retry_in = ?backoff, "node registration not committed yet"),
                },
            }
            tokio::select! {
                () = self.ctx.stopping() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(REBUILD_BACKOFF.1);
        }
    }

    /// Cancels local runs and waits for them and for commits in flight. Outcomes of
    /// cancelled runs are not committed: the next leader marks them lost (and
    /// retries them per policy). When the node's shutdown grace ran out
    /// ([`Shared::cut_short`]), every outcome is committed instead: the runs it
    /// cancelled as `cancelled` with the reason, the others as they ended.
    async fn stop(&mut self) {
        let runs: Vec<(Ulid, CancellationToken)> = lock(&self.shared.live)
            .iter()
            .filter(|(_, r)| r.completion.is_none())
            .map(|(id, r)| (*id, r.cancel.clone()))
            .collect();
        info!(runs = runs.len(), "scheduler runtime stopping");
        self.ctx.set_detail("stopping");
        for (_, token) in &runs {
            token.cancel();
        }
        while self.runs.join_next().await.is_some() {}
        while let Some(done) = self.commits.join_next().await {
            if let Ok(done) = done {
                self.committed(done, None, &mut Vec::new());
            }
        }
        let reason = lock(&self.shared.cut_short).clone();
        if let Some(reason) = reason {
            let cut: std::collections::HashSet<Ulid> = runs.iter().map(|(id, _)| *id).collect();
            self.commit_cut_short(&cut, &reason).await;
        }
        self.heartbeats.abort_all();
        while self.heartbeats.join_next().await.is_some() {}
        for run in lock(&self.shared.live).values() {
            run.output.close();
        }
        self.publish_stats(None);
        info!("scheduler runtime stopped");
    }

    /// Commits the outcome of every run still in the live map, in one entry: those
    /// in `cut` (cancelled by the stop) as cut short with `reason`, the others as
    /// they ended. Tried once: a node that cannot reach the leader now leaves its
    /// runs to be found lost.
    async fn commit_cut_short(&mut self, cut: &std::collections::HashSet<Ulid>, reason: &str) {
        while let Ok(c) = self.completions.try_recv() {
            self.completed(&c);
        }
        let runs: Vec<(Ulid, LiveRun)> = lock(&self.shared.live)
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        let store = self.node.store().clone();
        let now = Utc::now();
        let mut finishes = Vec::new();
        for (id, run) in runs {
            let exec = store.get_execution(id).ok().flatten();
            let retry = exec
                .as_ref()
                .and_then(|e| store.get_job(&e.job).ok().flatten())
                .and_then(|j| j.spec.retry);
            let cancel_requested = exec.as_ref().is_some_and(|e| e.cancel_requested);
            let finish = match run.completion {
                Some(c) if !cut.contains(&id) => {
                    rota_engine::finish_for(c, retry.as_ref(), cancel_requested, now)
                }
                completion => {
                    let mut finish = Finish::shut_down(
                        id,
                        run.attempt,
                        retry.as_ref(),
                        cancel_requested,
                        reason,
                        now,
                    );
                    if let Some(c) = completion {
                        finish.output = (!c.output.is_empty()).then_some(c.output);
                        finish.output_truncated = c.output_truncated;
                        finish.started_at = c.started_at;
                        finish.usage = c.outcome.usage;
                    }
                    info!(execution = %id, attempt = run.attempt, retried = finish.retry_at.is_some(), %reason, "run cut short");
                    finish
                }
            };
            finishes.push(finish);
        }
        if finishes.is_empty() {
            return;
        }
        let count = finishes.len();
        let request = ClientRequest {
            session: None,
            at: now,
            command: Command::Finish { finishes },
        };
        match tokio::time::timeout(CUT_SHORT_COMMIT, self.node.write(request)).await {
            Ok(Ok((index, _))) => {
                info!(
                    index,
                    runs = count,
                    "outcomes of the runs cut short committed"
                );
                lock(&self.shared.live).clear();
            }
            Ok(Err(err)) => {
                warn!(error = %err, runs = count, "outcomes of the runs cut short not committed; the leader will find them lost")
            }
            Err(_) => {
                warn!(runs = count, after = ?CUT_SHORT_COMMIT, "outcomes of the runs cut short not committed in time; the leader will find them lost")
            }
        }
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

/// Logs a stored record the scheduler leaves out because it does not decode.
pub(super) fn unreadable(kind: &'static str) -> impl FnMut(String, rota_store::StoreError) {
    move |key, err| {
        error!(
            kind,
            key = %key,
            error = %rota_core::error::chain(&err),
            "a stored record does not decode: the scheduler leaves it out"
        );
    }
}

/// Completes at `at` (never, when `None`).
async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Longest single sleep towards a far timer (re-checked after it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// A future that completes at the wall-clock time `at` (never, when `None`).
pub(super) async fn sleep_until(at: Option<rota_core::Timestamp>) {
    match at {
        Some(at) => {
            let wait = at
                .signed_duration_since(chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            tokio::time::sleep(wait).await;
        }
        None => std::future::pending().await,
    }
}
