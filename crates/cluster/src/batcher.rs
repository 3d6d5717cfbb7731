//! Proposal batching on the leader.
//!
//! openraft 0.9 appends one proposal at a time and waits for each append's fsync
//! before taking the next, so concurrent writes proposed one by one never share an
//! fsync. Here every write the leader proposes goes through one queue: a write that
//! arrives while [`IN_FLIGHT`] proposals are already on their way waits, and the
//! writes that waited go out together as one `Command::Requests` entry (one append,
//! one fsync, one replication round), each applied with its own session and clock
//! and answered with its own response. A write that finds nothing queued and a
//! proposal slot free goes out alone, unwrapped, from its caller's own task: a
//! single client's write takes no hand-off to the queue's worker and back.
//!
//! All writes of one entry share its log index as their revision; a key's
//! revisions must still grow with every write, so two writes of the same key never
//! share an entry (the second waits for the next one).
//!
//! The queue is a background worker (`proposals`); each entry's commit runs as a
//! task of the worker's own set, so stopping the worker awaits the commits in
//! flight, and then for the slots held by writes proposed by their callers. Writes
//! still queued then are answered `ShuttingDown`.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use openraft::error::{ClientWriteError, RaftError};
use rota_background::{Runner, WorkerContext, WorkerError};
use rota_core::{ClientRequest, Command, Response};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::node::leader_url;
use crate::types::Raft;
use crate::WriteError;

/// Proposals on their way through Raft at once; more wait and are batched.
const IN_FLIGHT: usize = 2;
/// Most client requests in one entry.
const MAX_BATCH: usize = 256;

/// A client request waiting to be proposed, and where its answer goes.
struct Proposal {
    req: ClientRequest,
    reply: oneshot::Sender<Result<(u64, Response), WriteError>>,
}

/// The leader's proposal queue (also present on followers, where nothing is
/// proposed: Raft answers "forward to the leader" for every write).
pub(crate) struct Proposals {
    tx: mpsc::UnboundedSender<Proposal>,
    gate: Arc<Gate>,
    raft: Raft,
    timeout: Duration,
}

/// What the callers and the queue's worker share; the log store and the state
/// machine read from it whether the node's writes are quiet (see [`Gate::is_quiet`]).
pub(crate) struct Gate {
    /// One per proposal on its way through Raft, from the queue or from a caller.
    permits: Arc<Semaphore>,
    /// Writes sent to the queue that its worker has not taken out yet.
    queued: AtomicUsize,
    /// Set when the worker stops: no caller proposes on its own from then on.
    stopped: AtomicBool,
}

impl Gate {
    pub(crate) fn new() -> Arc<Gate> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
            queued: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        })
    }

    /// Nothing is queued and at most one proposal is on its way: a lone client's
    /// write, a follower's (where nothing is proposed), or a quiet moment. Only then
    /// do the log store and the state machine append and apply a light entry in
    /// place (see [`crate::types::is_light`]): under load, a worker thread blocked
    /// on an fsync would hold up the requests that fill the next batch.
    pub(crate) fn is_quiet(&self) -> bool {
        self.on_the_way().is_some_and(|n| n <= 1)
    }

    /// No write of this node's on its way at all: always on a follower, where
    /// nothing is proposed; on a leader only between writes (the entry it applies
    /// is then one of the scheduler's, or a write forwarded before it led). A
    /// follower applies key/value batches in place (see
    /// [`crate::types::applies_in_place`]).
    pub(crate) fn is_idle(&self) -> bool {
        self.on_the_way() == Some(0)
    }

    /// How many of this node's proposals are on their way through Raft, or `None`
    /// while writes wait in the queue.
    fn on_the_way(&self) -> Option<usize> {
        (self.queued.load(Ordering::Acquire) == 0)
            .then(|| IN_FLIGHT.saturating_sub(self.permits.available_permits()))
    }
}

impl Proposals {
    /// Starts the queue's worker on `workers`; it ends when told to stop or when
    /// the queue is dropped.
    pub(crate) fn spawn(
        workers: &Runner,
        raft: Raft,
        gate: Arc<Gate>,
        timeout: Duration,
    ) -> Proposals {
        let (tx, rx) = mpsc::unbounded_channel();
        let (worker_gate, worker_raft) = (gate.clone(), raft.clone());
        workers.spawn("proposals", move |ctx| {
            run(ctx, worker_raft, worker_gate, rx, timeout)
        });
        Proposals {
            tx,
            gate,
            raft,
            timeout,
        }
    }

    /// Holds every proposal of this node back until the answer is dropped: it waits
    /// (at most `wait`) for the proposals on their way to end, then keeps their slots.
    /// Writes sent meanwhile queue and go out when the hold ends (if the node no
    /// longer leads by then, Raft answers "not the leader" and they are routed to the
    /// new one). A leader handing over holds its writes so that its log stops
    /// growing: a successor holding all of it then gets this node's vote at once.
    /// `None` when the proposals on their way did not end in time.
    pub(crate) async fn hold(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let slots = self
            .gate
            .permits
            .clone()
            .acquire_many_owned(IN_FLIGHT as u32);
        tokio::time::timeout(wait, slots).await.ok()?.ok()
    }

    /// Proposes `req` (alone or with others) and answers its log index and
    /// response once applied.
    pub(crate) async fn propose(&self, req: ClientRequest) -> Result<(u64, Response), WriteError> {
        let gate = &self.gate;
        // Nothing waits and a slot is free: propose it here, alone. (A proposal that
        // is queued meanwhile waits for the next slot, as behind any other.)
        if gate.queued.load(Ordering::Acquire) == 0 && !gate.stopped.load(Ordering::Acquire) {
            if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
                let written = client_write(&self.raft, req, self.timeout).await;
                drop(permit);
                return written;
            }
        }
        let (reply, answer) = oneshot::channel();
        gate.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Proposal { req, reply }).is_err() {
            gate.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(WriteError::ShuttingDown);
        }
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }
}

async fn run(
    ctx: WorkerContext,
    raft: Raft,
    gate: Arc<Gate>,
    mut rx: mpsc::UnboundedReceiver<Proposal>,
    timeout: Duration,
) -> Result<(), WorkerError> {
    let permits = gate.permits.clone();
    let taken = || gate.queued.fetch_sub(1, Ordering::AcqRel);
    let mut commits = JoinSet::new();
    let mut carried: Option<Proposal> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => {
                        taken();
                        p
                    }
                    None => break,
                },
                _ = ctx.stopping() => break,
            },
        };
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = ctx.stopping() => break,
        };
        // A caller that gave up (its deadline passed while this write queued) was
        // told it may not have applied: never proposing it keeps that true and
        // keeps a late duplicate out of the log.
        if first.reply.is_closed() {
            drop(permit);
            continue;
        }
        // Whatever queued up while the earlier proposals were in flight.
        let mut keys = HashSet::new();
        kv_keys(&first.req.command, &mut keys);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else {
                break;
            };
            taken();
            if next.reply.is_closed() {
                continue;
            }
            let mut next_keys = HashSet::new();
            kv_keys(&next.req.command, &mut next_keys);
            if !keys.is_disjoint(&next_keys) {
                carried = Some(next);
                break;
            }
            keys.extend(next_keys);
            batch.push(next);
        }
        let raft = raft.clone();
        commits.spawn(async move {
            commit(&raft, batch, timeout).await;
            drop(permit);
        });
        // Finished commits are collected as they end, so the set stays small.
        while let Some(done) = commits.try_join_next() {
            note_commit_end(done);
        }
    }
    // Writes still queued are answered `ShuttingDown` as their senders drop; the
    // ones in flight end with Raft (or their time limit), and so do the ones their
    // callers proposed, whose slots are waited for.
    gate.stopped.store(true, Ordering::Release);
    drop(rx);
    while let Some(done) = commits.join_next().await {
        note_commit_end(done);
    }
    let _all_slots = permits.acquire_many(IN_FLIGHT as u32).await;
    Ok(())
}

fn note_commit_end(done: Result<(), tokio::task::JoinError>) {
    // Its callers were answered `ShuttingDown` when their reply senders dropped.
    if let Err(e) = done {
        error!(error = %e, "a proposal's commit task failed");
    }
}

/// Hashes of the KV keys a command writes. Hashes, not copies of the keys: every
/// write passes here, and two keys that collide only cost an extra entry.
fn kv_keys(command: &Command, out: &mut HashSet<u64>) {
    match command {
        Command::KvPut { key, .. } | Command::KvDelete { key, .. } => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            out.insert(h.finish());
        }
        Command::Batch { commands } | Command::Fenced { commands, .. } => {
            for c in commands {
                kv_keys(c, out);
            }
        }
        Command::Attributed { command, .. } => kv_keys(command, out),
        Command::Requests { requests } => {
            for r in requests {
                kv_keys(&r.command, out);
            }
        }
        _ => {}
    }
}

async fn commit(raft: &Raft, mut batch: Vec<Proposal>, timeout: Duration) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let _ = p.reply.send(client_write(raft, p.req, timeout).await);
        }
        return;
    }
    let (requests, replies): (Vec<ClientRequest>, Vec<_>) =
        batch.into_iter().map(|p| (p.req, p.reply)).unzip();
    let count = requests.len();
    let req = ClientRequest {
        session: None,
        at: Utc::now(),
        command: Command::Requests { requests },
    };
    match client_write(raft, req, timeout).await {
        Ok((index, Response::Batch { responses })) if responses.len() == count => {
            debug!(index, requests = count, "batched proposal applied");
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok((index, response)));
            }
        }
        Ok((index, other)) => {
            warn!(index, answer = ?other, "a batched proposal got an answer of another shape");
            let err = WriteError::BatchAnswer {
                index,
                answer: format!("{other:?}"),
            };
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

async fn client_write(
    raft: &Raft,
    req: ClientRequest,
    timeout: Duration,
) -> Result<(u64, Response), WriteError> {
    match tokio::time::timeout(timeout, raft.client_write(req)).await {
        Err(_) => Err(WriteError::Timeout(timeout)),
        Ok(Ok(written)) => Ok((written.log_id.index, written.data)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(WriteError::NotLeader {
                leader_url: leader_url(raft, f.leader_id, f.leader_node),
            })
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
            Err(WriteError::Refused(Box::new(e)))
        }
        Ok(Err(RaftError::Fatal(e))) => Err(e.into()),
    }
}
