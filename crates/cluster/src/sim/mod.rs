//! An in-process cluster with a fault-injecting network, for the Raft scenarios in
//! `tests.rs` (modelled on the MIT 6.5840 Raft and KV labs) and the linearizability
//! run in `linearizability.rs`.
//!
//! A [`Router`] holds N openraft instances, each over the crate's real storage: the
//! redb Raft log, the state-machine adapter over a real [`rota_store::Store`], and
//! the snapshot directory, all in the node's own folder of one temporary directory.
//! RPCs do not touch sockets: [`network::SimNetwork`] calls the target's
//! `append_entries`, `vote` or `install_snapshot` directly, after consulting the
//! router's [`Faults`]: which nodes can reach which (partitions, isolated nodes),
//! the fraction of requests and replies lost, and a random delay of each, which
//! also reorders messages. A node can be crashed (Raft shut down, every handle to
//! its files dropped) and restarted on the same files.
//!
//! Every random choice, of the network and of the scenarios, comes from one
//! generator seeded per run; the seed is printed, and `ROTA_SIM_SEED` replays it.
//! Tokio's scheduling is not deterministic, so a replay follows the same fault
//! plan but not necessarily the same interleaving.
//!
//! A task per node follows its metrics and notes every term it leads
//! ([`Router::report_leaders_per_term`]). openraft runs without its
//! `single-term-leader` feature: a leader's id is (term, node id), and a candidate
//! with a higher node id may still win a term another node won (the voters it needs
//! have moved on to its greater vote), so two leaders in one term are allowed and
//! safe; what Raft's safety comes down to here is checked on the data: replicas
//! agree on every committed entry and the KV history is linearizable. Waiting is
//! done on events: every metrics change and every fault change wakes
//! [`Router::wait_for`].

mod linearizability;
mod network;
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use rota_core::rng::Rng;
use rota_core::{ClientRequest, Command, JobRecord, KvEntry, Response};
use rota_store::Store;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::node::{open_storage, Storage};
use crate::types::Raft;
use crate::RaftTiming;

pub(crate) use network::SimNetwork;

/// Longest a crashed node may take to let go of its files.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) type Metrics = RaftMetrics<u64, BasicNode>;

/// Multiplier of the scenarios' iterations and durations: `ROTA_SOAK=10` runs ten
/// times as long. Unset or unparsable means 1.
pub(crate) fn soak() -> u64 {
    std::env::var("ROTA_SOAK")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1)
}

/// Sends the scenarios' logs to the test's captured output (shown when it fails,
/// or with `--nocapture`); `RUST_LOG` overrides the default filter.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,rota_cluster::sim=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// What the network does to messages right now.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// The side of a partition each node is on (absent = side 0); nodes on
    /// different sides cannot exchange messages, in either direction.
    side: BTreeMap<u64, u64>,
    /// Fraction of requests lost, and independently of replies lost.
    drop_rate: f64,
    /// Each request and each reply waits a random time up to this.
    max_delay: Duration,
}

impl Faults {
    fn side(&self, id: u64) -> u64 {
        self.side.get(&id).copied().unwrap_or(0)
    }

    fn reachable(&self, a: u64, b: u64) -> bool {
        self.side(a) == self.side(b)
    }
}

/// What the network decided to do with one RPC, drawn when it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    request_delay: Duration,
    drop_request: bool,
    reply_delay: Duration,
    drop_reply: bool,
}

/// A running node: Raft, its store, and the signal that Raft let go of the files.
struct Running {
    raft: Raft,
    store: Arc<Store>,
    /// Ends (`recv` answers `None`) once the log store, the state machine and every
    /// snapshot builder are dropped.
    released: mpsc::Receiver<()>,
    monitor: JoinHandle<()>,
}

pub(crate) struct Shared {
    name: &'static str,
    seed: u64,
    config: Arc<openraft::Config>,
    members: BTreeSet<u64>,
    dir: tempfile::TempDir,
    nodes: Mutex<BTreeMap<u64, Running>>,
    faults: Mutex<Faults>,
    rng: Mutex<Rng>,
    /// Every term in which a node was seen leading, with the nodes seen leading it.
    leaders: Mutex<BTreeMap<u64, BTreeSet<u64>>>,
    /// Bumped on every metrics change of any node and on every fault change, so
    /// that waiters re-check their condition.
    changes: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment or insertion: a panic
    // elsewhere cannot leave them half-changed.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The Raft handle of `to`, if `from` can reach it and it is running.
    pub(crate) fn target(&self, from: u64, to: u64) -> Option<Raft> {
        if !lock(&self.faults).reachable(from, to) {
            return None;
        }
        lock(&self.nodes).get(&to).map(|r| r.raft.clone())
    }

    pub(crate) fn reachable(&self, from: u64, to: u64) -> bool {
        lock(&self.faults).reachable(from, to) && lock(&self.nodes).contains_key(&to)
    }

    pub(crate) fn plan(&self) -> Plan {
        let (drop_rate, max_delay) = {
            let f = lock(&self.faults);
            (f.drop_rate, f.max_delay)
        };
        let mut rng = lock(&self.rng);
        Plan {
            request_delay: rng.up_to(max_delay),
            drop_request: rng.chance(drop_rate),
            reply_delay: rng.up_to(max_delay),
            drop_reply: rng.chance(drop_rate),
        }
    }
}

/// Why a client write got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteFailure {
    /// The node is not running or was cut off from the client.
    Down,
    /// The node does not lead. When this comes after the entry was appended (the
    /// entry was truncated by a newer leader) the entry may still be committed by
    /// another node holding a copy, so it is not proof that nothing happened.
    NotLeader,
    /// No answer in time: the write may or may not commit.
    Timeout,
    /// Raft stopped under the request (a crash): it may or may not commit.
    Stopped,
}

/// The Raft configuration of a simulated node: slower timers than a real node's
/// (the faulty network delays messages), and small snapshot chunks so a snapshot
/// crosses the faulty network as many messages.
fn raft_config(snapshot_every: u64) -> Arc<openraft::Config> {
    let timing = RaftTiming {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout: Duration::from_millis(300),
    };
    Arc::new(
        crate::config::raft_config("rota-sim", &timing, snapshot_every, 2048)
            .expect("the simulated raft config is valid"),
    )
}

/// The seed of this run: `ROTA_SIM_SEED` when set, the clock otherwise.
fn seed() -> u64 {
    if let Some(seed) = std::env::var("ROTA_SIM_SEED")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return seed;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Mixed, so that tests started in the same microsecond still differ.
    Rng::new(nanos as u64 ^ u64::from(std::process::id()).rotate_left(32)).next_u64()
}

/// A request carrying `command`, as a node's API would propose it.
pub(crate) fn request(command: Command) -> ClientRequest {
    ClientRequest {
        session: None,
        at: Utc::now(),
        command,
    }
}

pub(crate) fn kv_put(key: &str, value: &str) -> Command {
    Command::KvPut {
        key: key.into(),
        value: value.into(),
        if_revision: None,
    }
}

/// The replicated state of one node, as its store's read API shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreState {
    pub kv: Vec<KvEntry>,
    pub jobs: Vec<JobRecord>,
}

/// The simulated cluster. Cheap to clone; clones share everything.
#[derive(Clone)]
pub(crate) struct Router {
    shared: Arc<Shared>,
}

impl Router {
    /// Starts `n` voters (ids 1..=n) that build a snapshot every `snapshot_every`
    /// entries, and initializes the cluster on node 1. `name` labels the run's logs.
    pub async fn start(name: &'static str, n: u64, snapshot_every: u64) -> Router {
        init_logging();
        let seed = seed();
        // Printed, not logged: it must be in the captured output whatever the filter.
        println!("[{name}] seed {seed} (replay with ROTA_SIM_SEED={seed})");
        info!(test = name, seed, nodes = n, "starting a simulated cluster");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let router = Router {
            shared: Arc::new(Shared {
                name,
                seed,
                config: raft_config(snapshot_every),
                members: (1..=n).collect(),
                dir,
                nodes: Mutex::new(BTreeMap::new()),
                faults: Mutex::new(Faults::default()),
                rng: Mutex::new(Rng::new(seed)),
                leaders: Mutex::new(BTreeMap::new()),
                changes: watch::channel(0).0,
            }),
        };
        for id in 1..=n {
            router.restart(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = (1..=n)
            .map(|id| (id, BasicNode::new(format!("sim://n{id}"))))
            .collect();
        router
            .raft(1)
            .expect("node 1 runs")
            .initialize(members)
            .await
            .expect("the cluster initializes");
        router
    }

    /// What a node's network holds: the router without keeping it alive.
    pub fn weak(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// Ids of every member, running or not.
    pub fn members(&self) -> Vec<u64> {
        self.shared.members.iter().copied().collect()
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<u64> {
        lock(&self.shared.nodes).keys().copied().collect()
    }

    /// Runs `f` with the run's random generator.
    pub fn rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.shared.rng))
    }

    /// Opens node `id` on its files (created on the first start) and puts it on the
    /// network. A running node is left as it is.
    pub async fn restart(&self, id: u64) {
        if lock(&self.shared.nodes).contains_key(&id) {
            return;
        }
        let dir = self.shared.dir.path().join(format!("n{id}"));
        let Storage {
            log,
            store,
            state_machine: sm,
            released,
            ..
        } = open_storage(dir, rota_store::EventRetention::default())
            .await
            .unwrap_or_else(|e| panic!("node {id} cannot open its storage: {e}"));
        let network = SimNetwork::new(id, self.weak());
        let raft = Raft::new(id, self.shared.config.clone(), network, log, sm)
            .await
            .unwrap_or_else(|e| panic!("node {id}: raft does not start: {e}"));
        let monitor = tokio::spawn(monitor(id, raft.metrics(), Arc::downgrade(&self.shared)));
        let replaced = lock(&self.shared.nodes).insert(
            id,
            Running {
                raft,
                store,
                released,
                monitor,
            },
        );
        assert!(replaced.is_none(), "node {id} was started twice at once");
        info!(node = id, "node started");
        self.shared.bump();
    }

    /// Stops node `id` the way a crash would for its peers: it stops answering at
    /// once; its Raft shuts down and every handle to its files is dropped, so that
    /// [`Router::restart`] can open them again. Whatever it had not made durable is
    /// kept only if redb had written it, as after a process exit.
    pub async fn crash(&self, id: u64) {
        let Some(mut node) = lock(&self.shared.nodes).remove(&id) else {
            return;
        };
        info!(node = id, "crash");
        self.shared.bump();
        if let Err(e) = node.raft.shutdown().await {
            warn!(node = id, error = %e, "raft core ended with an error");
        }
        node.monitor.abort();
        drop(node.raft);
        drop(node.store);
        let released = tokio::time::timeout(RELEASE_TIMEOUT, node.released.recv()).await;
        assert!(
            released.is_ok(),
            "[{}] node {id} still holds its files {RELEASE_TIMEOUT:?} after shutdown (seed {})",
            self.shared.name,
            self.shared.seed
        );
    }

    /// Crashes every node; the end of a scenario.
    pub async fn shutdown(&self) {
        for id in self.running() {
            self.crash(id).await;
        }
    }

    fn set_faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.shared.faults));
        self.shared.bump();
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&self, id: u64) {
        info!(node = id, "isolate");
        // Side ids above every node id are never used by `partition`.
        self.set_faults(|f| {
            f.side.insert(id, u64::MAX - id);
        });
    }

    /// Puts `id` back on the main side (side 0).
    pub fn reconnect(&self, id: u64) {
        info!(node = id, "reconnect");
        self.set_faults(|f| {
            f.side.remove(&id);
        });
    }

    /// Splits the cluster: the nodes of each group reach only each other. The first
    /// group, and every node not listed, is the main side.
    pub fn partition(&self, groups: &[&[u64]]) {
        info!(?groups, "partition");
        self.set_faults(|f| {
            f.side.clear();
            for (side, group) in (0u64..).zip(groups) {
                for id in group.iter() {
                    f.side.insert(*id, side);
                }
            }
        });
    }

    /// Every node reaches every other.
    pub fn heal(&self) {
        info!("heal");
        self.set_faults(|f| f.side.clear());
    }

    /// Loses each request and each reply with probability `drop_rate`, and delays
    /// each by a random time up to `max_delay`.
    pub fn unreliable(&self, drop_rate: f64, max_delay: Duration) {
        info!(drop_rate, ?max_delay, "unreliable network");
        self.set_faults(|f| {
            f.drop_rate = drop_rate;
            f.max_delay = max_delay;
        });
    }

    pub fn reliable(&self) {
        info!("reliable network");
        self.unreliable(0.0, Duration::ZERO);
    }

    /// Whether `a` and `b` are on the same side of any partition.
    pub fn connected(&self, a: u64, b: u64) -> bool {
        lock(&self.shared.faults).reachable(a, b)
    }

    /// Running nodes on the same side as `id` (itself included).
    pub fn side_of(&self, id: u64) -> Vec<u64> {
        self.running()
            .into_iter()
            .filter(|other| self.connected(id, *other))
            .collect()
    }

    pub fn raft(&self, id: u64) -> Option<Raft> {
        lock(&self.shared.nodes).get(&id).map(|r| r.raft.clone())
    }

    /// Runs `f` on node `id`'s store without keeping a handle to it: a handle kept
    /// past a crash would hold the file open and the restart could not open it.
    pub fn with_store<T>(&self, id: u64, f: impl FnOnce(&Store) -> T) -> Option<T> {
        lock(&self.shared.nodes).get(&id).map(|r| f(&r.store))
    }

    /// Node `id`'s KV entries and jobs.
    pub fn state(&self, id: u64) -> Option<StoreState> {
        self.with_store(id, |store| StoreState {
            kv: store.kv_list("").expect("the store lists its keys"),
            jobs: store.list_jobs().expect("the store lists its jobs"),
        })
    }

    /// The latest metrics of every running node.
    pub fn view(&self) -> BTreeMap<u64, Metrics> {
        lock(&self.shared.nodes)
            .iter()
            .map(|(id, r)| (*id, r.raft.metrics().borrow().clone()))
            .collect()
    }

    /// One line per node, for failure messages.
    pub fn describe(&self) -> String {
        let view = self.view();
        let faults = lock(&self.shared.faults).clone();
        let mut out = String::new();
        for id in &self.shared.members {
            match view.get(id) {
                None => {
                    let _ = writeln!(out, "  n{id}: down");
                }
                Some(m) => {
                    let _ = writeln!(
                        out,
                        "  n{id}: {:?} term {} leader {:?} last_log {:?} applied {:?} snapshot {:?} purged {:?} side {}",
                        m.state,
                        m.current_term,
                        m.current_leader,
                        m.last_log_index,
                        m.last_applied.map(|l| l.index),
                        m.snapshot.map(|l| l.index),
                        m.purged.map(|l| l.index),
                        faults.side(*id),
                    );
                }
            }
        }
        let _ = write!(
            out,
            "  network: drop {} delay up to {:?}",
            faults.drop_rate, faults.max_delay
        );
        out
    }

    /// Waits until `f` answers something for the running nodes' metrics, re-checking
    /// on every metrics or fault change; panics with the cluster's state after
    /// `timeout`.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&BTreeMap<u64, Metrics>) -> Option<T>,
    ) -> T {
        match self.try_wait_for(timeout, &mut f).await {
            Some(t) => t,
            None => panic!(
                "[{}] timed out after {timeout:?} waiting for {what} (seed {})\n{}",
                self.shared.name,
                self.shared.seed,
                self.describe()
            ),
        }
    }

    /// [`Router::wait_for`] that answers `None` on timeout.
    pub async fn try_wait_for<T>(
        &self,
        timeout: Duration,
        f: &mut impl FnMut(&BTreeMap<u64, Metrics>) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(t) = f(&self.view()) {
                return Some(t);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives as long as `self`.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Waits until the nodes of `among` (all running and connected to each other)
    /// agree on one leader among them, in one term; answers it.
    pub async fn wait_for_leader(&self, among: &[u64], timeout: Duration) -> u64 {
        let what = format!("one leader among {among:?} that all of them follow");
        self.wait_for(&what, timeout, |view| agreed_leader(view, among))
            .await
    }

    /// Every (term, leader) the monitors saw so far.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        lock(&self.shared.leaders).clone()
    }

    /// Logs the terms in which more than one node led (allowed without openraft's
    /// `single-term-leader` feature: leader ids are (term, node id)), for the record
    /// of a run.
    pub fn report_leaders_per_term(&self) {
        let leaders = self.leaders_by_term();
        let shared: Vec<_> = leaders.iter().filter(|(_, ids)| ids.len() > 1).collect();
        info!(
            terms = leaders.len(),
            shared = ?shared,
            seed = self.shared.seed,
            "[{}] leaders per term",
            self.shared.name
        );
    }

    /// Proposes `command` on node `via` and waits up to `timeout` for it to commit
    /// and apply; answers its log index and the state machine's response.
    pub async fn write(
        &self,
        via: u64,
        command: Command,
        timeout: Duration,
    ) -> Result<(u64, Response), WriteFailure> {
        let raft = self.raft(via).ok_or(WriteFailure::Down)?;
        match tokio::time::timeout(timeout, raft.client_write(request(command))).await {
            Err(_) => Err(WriteFailure::Timeout),
            Ok(Ok(written)) => Ok((written.log_id.index, written.data)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(WriteFailure::NotLeader)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                unreachable!("a normal entry is not a membership change: {e}")
            }
            Ok(Err(RaftError::Fatal(_))) => Err(WriteFailure::Stopped),
        }
    }

    /// Writes `command` through whichever node leads, following leader changes,
    /// until it is acknowledged; panics if that takes longer than `timeout`. Only
    /// for phases where a majority is up and connected: a write that times out on a
    /// leader that then lost its post is retried, so it may apply twice.
    pub async fn write_committed(&self, command: Command, timeout: Duration) -> (u64, Response) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let leader = match self
                .try_wait_for(left, &mut |view| {
                    view.iter()
                        .find(|(_, m)| m.state == ServerState::Leader)
                        .map(|(id, _)| *id)
                })
                .await
            {
                Some(leader) => leader,
                None => break,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            // Short tries, so a write stuck on a leader cut off from its majority
            // moves on to the next leader.
            match self
                .write(leader, command.clone(), left.min(Duration::from_secs(2)))
                .await
            {
                Ok(done) => return done,
                Err(failure) => {
                    info!(
                        node = leader,
                        ?failure,
                        "write not acknowledged; trying again"
                    );
                    if Instant::now() >= deadline {
                        break;
                    }
                    // Wait for something to change (a new leader, a reconnect)
                    // rather than hammering the same node.
                    let mut changes = self.shared.changes.subscribe();
                    changes.borrow_and_update();
                    let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
                }
            }
        }
        panic!(
            "[{}] no leader acknowledged a write within {timeout:?} (seed {})\n{}",
            self.shared.name,
            self.shared.seed,
            self.describe()
        )
    }

    /// Waits until every node of `ids` has applied the log up to `index`.
    pub async fn wait_applied(&self, ids: &[u64], index: u64, timeout: Duration) {
        let what = format!("{ids:?} to apply index {index}");
        self.wait_for(&what, timeout, |view| {
            ids.iter()
                .all(|id| {
                    view.get(id)
                        .and_then(|m| m.last_applied)
                        .is_some_and(|l| l.index >= index)
                })
                .then_some(())
        })
        .await;
    }

    /// Heals the network, makes it reliable, restarts every crashed node, commits a
    /// marker through the leader and waits until every node applied it. Once it
    /// returns, no entry can commit any more that is not already applied
    /// everywhere (a later leader's log holds the marker, so whatever a deposed
    /// leader kept after it can never commit), so the stores must be identical.
    pub async fn converge(&self, timeout: Duration) -> u64 {
        info!("--- converge: heal, restart everything, commit a marker");
        self.heal();
        self.reliable();
        for id in self.members() {
            self.restart(id).await;
        }
        let (index, _) = self
            .write_committed(kv_put("sim/marker", "converged"), timeout)
            .await;
        self.wait_applied(&self.members(), index, timeout).await;
        index
    }

    /// Asserts that every running node's store holds the same KV entries and jobs;
    /// answers them.
    pub fn assert_same_state(&self) -> StoreState {
        let mut states = self.running().into_iter().map(|id| {
            let state = self.state(id).expect("a running node has a store");
            (id, state)
        });
        let (first_id, first) = states.next().expect("at least one node runs");
        for (id, state) in states {
            if state != first {
                let diff = describe_difference(&first, &state);
                panic!(
                    "[{}] the stores of n{first_id} and n{id} differ (seed {}): {diff}\n{}",
                    self.shared.name,
                    self.shared.seed,
                    self.describe()
                );
            }
        }
        first
    }
}

/// The leader every node of `among` follows, if they agree on one that is itself
/// among them, leads, and shares their term.
pub(crate) fn agreed_leader(view: &BTreeMap<u64, Metrics>, among: &[u64]) -> Option<u64> {
    let first = view.get(among.first()?)?;
    let leader = first.current_leader?;
    if !among.contains(&leader) {
        return None;
    }
    let term = view.get(&leader)?.current_term;
    if view.get(&leader)?.state != ServerState::Leader {
        return None;
    }
    among
        .iter()
        .all(|id| {
            view.get(id)
                .is_some_and(|m| m.current_leader == Some(leader) && m.current_term == term)
        })
        .then_some(leader)
}

fn describe_difference(a: &StoreState, b: &StoreState) -> String {
    let a_kv: BTreeMap<&str, &KvEntry> = a.kv.iter().map(|e| (e.key.as_str(), e)).collect();
    let b_kv: BTreeMap<&str, &KvEntry> = b.kv.iter().map(|e| (e.key.as_str(), e)).collect();
    let mut out = String::new();
    for key in a_kv.keys().chain(b_kv.keys()).collect::<BTreeSet<_>>() {
        let (x, y) = (a_kv.get(key), b_kv.get(key));
        if x != y {
            let _ = write!(out, "\n  key {key:?}: {x:?} vs {y:?}");
        }
    }
    if a.jobs != b.jobs {
        let names = |s: &StoreState| {
            s.jobs
                .iter()
                .map(|j| (j.spec.name.to_string(), j.revision))
                .collect::<Vec<_>>()
        };
        let _ = write!(out, "\n  jobs: {:?} vs {:?}", names(a), names(b));
    }
    out
}

/// Follows one node's metrics: notes every term it leads, and wakes waiters.
async fn monitor(id: u64, mut metrics: watch::Receiver<Metrics>, shared: Weak<Shared>) {
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if leading {
            let mut leaders = lock(&shared.leaders);
            let ids = leaders.entry(term).or_default();
            if ids.insert(id) && ids.len() > 1 {
                debug!(term, leaders = ?ids, "another node leads in this term");
            }
        }
        shared.bump();
        drop(shared);
        // Errors once Raft shut down and dropped its metrics sender.
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
