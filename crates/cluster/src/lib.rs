//! openraft wiring. Every openraft-facing type lives here, so an openraft upgrade
//! touches one crate: the type config (`types`), the redb-backed log storage
//! (`log_store`, reached only through openraft's traits), the adapter that lets
//! openraft drive [`rota_store::Store`] (`state_machine`), the peer network, and
//! [`Node`], the handle the rest of rota uses to write, read and watch leadership.
//!
//! A node starts as a one-member cluster ([`Bootstrap::Single`]), as one of a
//! fixed set of voters ([`Bootstrap::Peers`]: the lowest id initializes the
//! membership, the others wait to be contacted) or empty, waiting to be added by
//! the leader ([`Bootstrap::Join`]). Writes and read barriers work on any member:
//! a follower forwards them to the leader over the peer transport (`network`).
//!
//! A node's data directory holds `raft-log.redb` (the log: fsynced on every append,
//! the durable record), `state.redb` (the state machine: applied without fsync and
//! rebuilt from the log after a crash) and `snapshots/current.snap`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError,
};
use openraft::{BasicNode, ChangeMembers, ServerState, SnapshotPolicy};
use rota_core::{ClientRequest, Response};
use rota_store::Store;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

mod batcher;
mod error;
mod log_store;
mod network;
mod state_machine;
mod types;

pub use error::{ClusterError, MembershipError, WriteError};
pub use network::CLUSTER_SECRET_HEADER;
use network::{peer_failure, ForwardedWrite, MemberChange, Transport, WireError};
use types::Raft;

use log_store::LogStore;
use state_machine::{SnapshotDir, StateMachine};

/// Longest a write or read barrier waits for Raft.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::start` waits for a leader that has applied its first entry.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `Node::shutdown` waits for the storage tasks to release the files.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// Log entries kept behind a snapshot at most (for followers a little behind).
const MAX_LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1000;
/// Longest a leader at shutdown waits for a successor to hold its whole log.
const HANDOFF_CATCH_UP: Duration = Duration::from_secs(2);
/// Longest the successor may take to answer the handoff call.
const HANDOFF_CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a request waits for a leader to be known (or reachable) before it is
/// answered `NotLeader`: a few election timeouts, so one failover fits in it.
const LEADER_WAIT: Duration = Duration::from_secs(3);
/// Pause before trying again after the leader refused or could not be reached,
/// so that a dead leader's refused connections do not spin the retry loop.
const LEADER_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest the leader waits for a new learner to catch up before promoting it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one membership change (a joint and a uniform entry) may take to commit.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node finds its cluster on its first start (a data directory that holds
/// a membership ignores it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Bootstrap {
    /// A one-member cluster of this node.
    #[default]
    Single,
    /// A cluster of these voters (id -> URL), this node among them. The lowest id
    /// initializes the membership; the others wait for it to contact them.
    Peers(BTreeMap<u64, String>),
    /// Start empty and wait to be added by the leader (`POST /v1/cluster/members`).
    Join,
}

/// Cluster settings beside [`NodeConfig`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub bootstrap: Bootstrap,
    /// Shared secret of the peer routes; `None` leaves them open.
    pub secret: Option<String>,
    /// Heartbeat and election timing; every member should use the same.
    pub timing: RaftTiming,
}

/// Default [`RaftTiming::heartbeat_interval`].
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(50);
/// Default [`RaftTiming::election_timeout`].
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(150);

/// How fast Raft notices a dead leader.
///
/// openraft 0.9 draws each node's election timeout once, between
/// `election_timeout` and twice that, and also uses twice `election_timeout` as
/// the leader lease: a follower refuses to vote for that long after it last heard
/// from the leader, and stands for election only after lease + its timeout. A
/// crashed leader is therefore replaced 3 to 4 `election_timeout`s after its last
/// heartbeat; a follower that misses heartbeats for that long (a stalled process,
/// an overloaded machine) deposes a healthy leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// How often the leader sends heartbeats (and retries replication).
    pub heartbeat_interval: Duration,
    /// Shortest election timeout; the longest, and the leader lease, are twice it.
    /// At least three heartbeat intervals, so that one late heartbeat does not
    /// start an election.
    pub election_timeout: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
        }
    }
}

impl RaftTiming {
    /// Heartbeats this many times per shortest election timeout, at least.
    pub const MIN_HEARTBEATS_PER_ELECTION: u32 = 3;

    /// Checks the intervals against each other; errors name the field.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.heartbeat_interval < Duration::from_millis(1) {
            return Err(ClusterError::InvalidConfig {
                field: "heartbeat_interval",
                message: format!("{:?} is below the accepted 1ms", self.heartbeat_interval),
            });
        }
        let least = self.heartbeat_interval * Self::MIN_HEARTBEATS_PER_ELECTION;
        if self.election_timeout < least {
            return Err(ClusterError::InvalidConfig {
                field: "election_timeout",
                message: format!(
                    "{:?} is shorter than {} heartbeat intervals ({least:?})",
                    self.election_timeout,
                    Self::MIN_HEARTBEATS_PER_ELECTION
                ),
            });
        }
        Ok(())
    }

    /// The leader lease of openraft 0.9: how long a follower refuses votes after
    /// the last heartbeat it got (the longest election timeout).
    pub fn leader_lease(&self) -> Duration {
        self.election_timeout * 2
    }
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a node starts.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Raft node id (unique in the cluster).
    pub node_id: u64,
    /// Human name of the node, reported in executions and health (`ROTA_NODE`).
    pub node_name: String,
    /// Directory of `raft-log.redb`, `state.redb` and snapshots.
    pub data_dir: PathBuf,
    /// URL peers and clients reach this node at, e.g. `http://127.0.0.1:7700`.
    pub advertise_url: String,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
}

impl NodeConfig {
    fn validate(&self) -> Result<(), ClusterError> {
        if self.snapshot_every == 0 {
            return Err(ClusterError::InvalidConfig {
                field: "snapshot_every",
                message: "must be at least 1".into(),
            });
        }
        if !(self.advertise_url.starts_with("http://")
            || self.advertise_url.starts_with("https://"))
        {
            return Err(ClusterError::InvalidConfig {
                field: "advertise_url",
                message: format!("{:?} is not an http:// or https:// URL", self.advertise_url),
            });
        }
        Ok(())
    }

    fn raft_config(&self, timing: &RaftTiming) -> Result<openraft::Config, ClusterError> {
        timing.validate()?;
        let config = openraft::Config {
            cluster_name: "rota".into(),
            heartbeat_interval: millis_u64(timing.heartbeat_interval),
            election_timeout_min: millis_u64(timing.election_timeout),
            election_timeout_max: millis_u64(timing.leader_lease()),
            install_snapshot_timeout: 2000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // Keep about one snapshot interval of log behind a snapshot, so the log
            // is purged at every snapshot and does not grow forever.
            max_in_snapshot_log_to_keep: self.snapshot_every.min(MAX_LOG_KEPT_BEHIND_SNAPSHOT),
            purge_batch_size: 1,
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| ClusterError::RaftConfig(Box::new(e)))
    }
}

/// What `GET /v1/health` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub node: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<u64>,
    pub leader_url: Option<String>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot_index: Option<u64>,
}

/// A running Raft node with its store.
pub struct Node {
    cfg: NodeConfig,
    raft: Raft,
    transport: Transport,
    store: Arc<Store>,
    log: LogStore,
    leadership: watch::Receiver<bool>,
    leadership_task: Mutex<Option<JoinHandle<()>>>,
    /// Ends (`recv` answers `None`) once the log store, the state machine and
    /// every snapshot builder are dropped, i.e. Raft let go of the files.
    released: Mutex<mpsc::Receiver<()>>,
    /// The Raft timing this node runs with (the handoff at shutdown waits out
    /// its leader lease).
    timing: RaftTiming,
    /// Every write this node proposes goes through it (batched under load).
    proposals: batcher::Proposals,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node_id", &self.cfg.node_id)
            .field("data_dir", &self.cfg.data_dir)
            .finish_non_exhaustive()
    }
}

fn leader_url(raft: &Raft, leader: Option<u64>, node: Option<BasicNode>) -> Option<String> {
    if let Some(node) = node {
        return Some(node.addr);
    }
    let leader = leader?;
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.membership_config
        .membership()
        .get_node(&leader)
        .map(|n| n.addr.clone())
}

impl Node {
    /// Opens the node's storage under `data_dir` and starts Raft; a fresh data
    /// directory becomes a one-member cluster. Returns once the node can take writes.
    pub async fn start(cfg: NodeConfig) -> Result<Arc<Node>, ClusterError> {
        Node::start_with(cfg, ClusterOptions::default()).await
    }

    /// [`Node::start`] with cluster settings. A node whose membership is only
    /// itself returns once it can take writes; a member of a larger cluster returns
    /// at once, because its peers can only elect a leader once it serves the peer
    /// routes ([`Node::wait_for_leader`] waits for one).
    pub async fn start_with(
        cfg: NodeConfig,
        options: ClusterOptions,
    ) -> Result<Arc<Node>, ClusterError> {
        cfg.validate()?;
        if let Bootstrap::Peers(peers) = &options.bootstrap {
            check_peers(&cfg, peers)?;
        }
        let raft_config = Arc::new(cfg.raft_config(&options.timing)?);
        tokio::fs::create_dir_all(&cfg.data_dir)
            .await
            .map_err(|source| ClusterError::Io {
                path: cfg.data_dir.clone(),
                source,
            })?;

        let (alive, released) = mpsc::channel(1);
        let dir = cfg.data_dir.clone();
        let opened = {
            let alive = alive.clone();
            tokio::task::spawn_blocking(move || {
                let log = LogStore::open(&dir.join("raft-log.redb"), alive.clone())?;
                let store = Store::open(&dir.join("state.redb"))?;
                let snapshots = SnapshotDir::open(dir.join("snapshots"))?;
                let sm = StateMachine::open(store.clone(), snapshots, alive)?;
                Ok::<_, ClusterError>((log, store, sm))
            })
            .await??
        };
        drop(alive);
        let (log, store, sm) = opened;

        let transport = Transport::new(options.secret.clone());
        let network = network::HttpNetwork::new(cfg.node_id, transport.clone());
        let own_log = log.detached();
        let raft = Raft::new(cfg.node_id, raft_config, network, log, sm)
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        let first_members = match &options.bootstrap {
            _ if initialized => None,
            Bootstrap::Single => Some(BTreeMap::from([(
                cfg.node_id,
                BasicNode::new(&cfg.advertise_url),
            )])),
            Bootstrap::Peers(peers) if peers.keys().next() == Some(&cfg.node_id) => Some(
                peers
                    .iter()
                    .map(|(id, url)| (*id, BasicNode::new(url)))
                    .collect(),
            ),
            Bootstrap::Peers(_) => {
                info!(
                    node_id = cfg.node_id,
                    "waiting for the lowest peer id to initialize the cluster"
                );
                None
            }
            Bootstrap::Join => {
                info!(node_id = cfg.node_id, "waiting to be added to a cluster");
                None
            }
        };
        if let Some(members) = first_members {
            let voters: Vec<u64> = members.keys().copied().collect();
            match raft.initialize(members).await {
                Ok(()) => info!(node_id = cfg.node_id, ?voters, "new cluster initialized"),
                // Someone (a peer, or a vote) got there first: nothing to do.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(ClusterError::Initialize(Box::new(e)));
                }
            }
        }

        // Ready = a leader is known and this node has applied an entry of the
        // leader's term (a new leader's blank entry), so everything committed
        // before is applied. A node that led before the restart resumes leading in
        // the same term without a blank entry: as leader it also waits until its
        // whole log (acknowledged writes included) is applied.
        let id = cfg.node_id;
        // Asked of the Raft core itself: the metrics may not show the membership
        // just initialized or loaded yet.
        let voters = raft
            .with_raft_state(|st| {
                st.membership_state
                    .effective()
                    .voter_ids()
                    .collect::<Vec<u64>>()
            })
            .await
            .map_err(|e| ClusterError::RaftStart(Box::new(e)))?;
        let alone = voters == [id];
        let ready = if !alone {
            Ok(())
        } else {
            raft.wait(Some(READY_TIMEOUT))
                .metrics(
                    |m| {
                        let (Some(leader), Some(applied)) = (m.current_leader, m.last_applied)
                        else {
                            return false;
                        };
                        applied.leader_id.term == m.current_term
                            && (leader != id
                                || m.last_log_index.is_some_and(|l| applied.index >= l))
                    },
                    "leader elected and the log applied",
                )
                .await
                .map(|_| ())
        };
        if let Err(e) = ready {
            warn!(error = %e, "node did not become ready");
            let _ = raft.shutdown().await;
            return Err(ClusterError::NotReady(READY_TIMEOUT));
        }

        let mut metrics = raft.metrics();
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        let (leader_tx, leadership) = watch::channel(leading);
        let leadership_task = tokio::spawn(async move {
            loop {
                let leading = metrics.borrow_and_update().state == ServerState::Leader;
                leader_tx.send_if_modified(|v| std::mem::replace(v, leading) != leading);
                // Errors once Raft has shut down and dropped its metrics sender.
                if metrics.changed().await.is_err() {
                    break;
                }
            }
            leader_tx.send_replace(false);
        });

        let status = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.current_term, m.last_applied.map_or(0, |id| id.index))
        };
        info!(
            node_id = cfg.node_id,
            node = %cfg.node_name,
            data_dir = %cfg.data_dir.display(),
            term = status.0,
            last_applied = status.1,
            "node started"
        );
        let raft_for_proposals = raft.clone();
        Ok(Arc::new(Node {
            cfg,
            raft,
            transport,
            store,
            log: own_log,
            leadership,
            leadership_task: Mutex::new(Some(leadership_task)),
            released: Mutex::new(released),
            timing: options.timing,
            proposals: batcher::Proposals::spawn(raft_for_proposals, WRITE_TIMEOUT),
        }))
    }

    /// An HTTP client for calls to other nodes' APIs (pooled with the peer
    /// traffic's); `None` when it could not be built.
    pub fn peer_http(&self) -> Option<reqwest::Client> {
        self.transport.client()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The Raft handle, for tests; outside this crate openraft stays an
    /// implementation detail.
    #[cfg(test)]
    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Index of the first entry still in the Raft log (`None` when empty); entries
    /// before it were purged behind a snapshot.
    pub async fn first_log_index(&self) -> Result<Option<u64>, ClusterError> {
        self.log.first_index().await
    }

    /// Commits a request through Raft (durable on a majority) and answers with the
    /// log index it got and the state machine's response. On a follower the request
    /// is forwarded to the leader; while no leader is known (an election) it waits
    /// up to [`LEADER_WAIT`] for one, then answers [`WriteError::NotLeader`].
    pub async fn write(&self, req: ClientRequest) -> Result<(u64, Response), WriteError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let req = &req;
        self.with_leader(|route| async move {
            match route {
                Route::Here => self.write_here(req.clone(), deadline).await,
                Route::Leader(url) => self
                    .transport
                    .call::<_, Result<ForwardedWrite, WireError>>(
                        &url,
                        "forward",
                        req,
                        left(deadline),
                    )
                    .await
                    .map_err(|e| peer_failure(e, &url))?
                    .map(|w| (w.index, w.response))
                    .map_err(WireError::into_write_error),
            }
        })
        .await
    }

    /// A write proposed by this node only (a forwarded one: forwarding again could
    /// loop between two nodes that each believe the other leads).
    pub(crate) async fn write_local(
        &self,
        req: ClientRequest,
    ) -> Result<(u64, Response), WriteError> {
        self.write_here(req, Instant::now() + WRITE_TIMEOUT).await
    }

    async fn write_here(
        &self,
        req: ClientRequest,
        deadline: Instant,
    ) -> Result<(u64, Response), WriteError> {
        match tokio::time::timeout_at(deadline, self.proposals.propose(req)).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(result) => result,
        }
    }

    /// Returns once the local state machine reflects every write committed before
    /// the call: the leader confirms its leadership with a quorum and names its
    /// commit index (ReadIndex), then this node waits until it applied that index.
    /// A follower asks the leader over the peer transport.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let index = self
            .with_leader(|route| async move {
                match route {
                    Route::Here => self.read_index_here(deadline).await,
                    Route::Leader(url) => self
                        .transport
                        .call::<_, Result<u64, WireError>>(&url, "read_index", &(), left(deadline))
                        .await
                        .map_err(|e| peer_failure(e, &url))?
                        .map_err(WireError::into_write_error),
                }
            })
            .await?;
        if index == 0 {
            return Ok(());
        }
        match self
            .raft
            .wait(Some(left(deadline)))
            .applied_index_at_least(Some(index), "the read index is applied")
            .await
        {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                Err(WriteError::Timeout(WRITE_TIMEOUT))
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(WriteError::ShuttingDown),
        }
    }

    /// The read index of this node as leader (for a follower's read barrier).
    pub(crate) async fn read_index_local(&self) -> Result<u64, WriteError> {
        self.read_index_here(Instant::now() + WRITE_TIMEOUT).await
    }

    async fn read_index_here(&self, deadline: Instant) -> Result<u64, WriteError> {
        match tokio::time::timeout_at(deadline, self.raft.get_read_log_id()).await {
            Err(_) => Err(WriteError::Timeout(WRITE_TIMEOUT)),
            Ok(Ok((read, _applied))) => Ok(read.map_or(0, |id| id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, f.leader_id, f.leader_node),
                })
            }
            // Leadership could not be confirmed: another leader may exist.
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(WriteError::NotLeader { leader_url: None })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(fatal(e)),
        }
    }

    /// Where a request should go now: here when this node leads, else the known
    /// leader. Waits until `until` for a leader to be known.
    async fn route(&self, until: Instant) -> Result<Route, WriteError> {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_and_update();
                if m.state == ServerState::Shutdown {
                    return Err(WriteError::ShuttingDown);
                }
                if m.state == ServerState::Leader || m.current_leader == Some(self.cfg.node_id) {
                    return Ok(Route::Here);
                }
                if let Some(node) = m
                    .current_leader
                    .and_then(|id| m.membership_config.membership().get_node(&id))
                {
                    return Ok(Route::Leader(node.addr.clone()));
                }
            }
            match tokio::time::timeout_at(until, metrics.changed()).await {
                Err(_) => return Err(WriteError::NotLeader { leader_url: None }),
                Ok(Err(_)) => return Err(WriteError::ShuttingDown),
                Ok(Ok(())) => {}
            }
        }
    }

    /// Runs `attempt` against the leader, again each time it answers "not the
    /// leader" (which guarantees nothing was applied), for up to [`LEADER_WAIT`]:
    /// long enough to ride out one election, short enough to answer in time.
    async fn with_leader<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        F: FnMut(Route) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: From<WriteError> + NotLeader,
    {
        let until = Instant::now() + LEADER_WAIT;
        loop {
            let route = self.route(until).await?;
            match attempt(route).await {
                Err(e) if e.not_leader() && Instant::now() + LEADER_RETRY_PAUSE < until => {
                    debug!(
                        node_id = self.cfg.node_id,
                        "leader refused or unreachable; retrying"
                    );
                    tokio::time::sleep(LEADER_RETRY_PAUSE).await;
                }
                done => return done,
            }
        }
    }

    /// Adds a node to the cluster: as a learner first, promoted to voter once it
    /// has caught up with the leader's log (a new node gets a snapshot when the log
    /// it needs was purged). Idempotent: adding a voter again does nothing.
    pub async fn add_member(&self, id: u64, url: &str) -> Result<(), MembershipError> {
        let url = url.trim().trim_end_matches('/').to_string();
        self.change_members(MemberChange::Add { id, url }).await
    }

    /// Removes a voter or learner from the cluster.
    pub async fn remove_member(&self, id: u64) -> Result<(), MembershipError> {
        self.change_members(MemberChange::Remove { id }).await
    }

    async fn change_members(&self, change: MemberChange) -> Result<(), MembershipError> {
        let deadline = Instant::now() + CATCH_UP_TIMEOUT + 2 * MEMBERSHIP_TIMEOUT;
        let change = &change;
        self.with_leader(|route| async move {
            match route {
                Route::Here => match change {
                    MemberChange::Add { id, url } => self.add_member_local(*id, url).await,
                    MemberChange::Remove { id } => self.remove_member_local(*id).await,
                },
                Route::Leader(url) => self
                    .transport
                    .call::<_, Result<(), WireError>>(&url, "members", change, left(deadline))
                    .await
                    .map_err(|e| MembershipError::from(peer_failure(e, &url)))?
                    .map_err(MembershipError::from),
            }
        })
        .await
    }

    pub(crate) async fn add_member_local(&self, id: u64, url: &str) -> Result<(), MembershipError> {
        let invalid = |message: String| MembershipError::InvalidMember { id, message };
        if id == 0 {
            return Err(invalid("node ids start at 1".into()));
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(format!(
                "{url:?} is not an http:// or https:// URL"
            )));
        }
        let (voter, known) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, m.current_leader, None),
                }
                .into());
            }
            let membership = m.membership_config.membership();
            let voter = membership.voter_ids().any(|v| v == id);
            (voter, membership.get_node(&id).map(|n| n.addr.clone()))
        };
        if let Some(addr) = &known {
            if addr != url {
                return Err(invalid(format!(
                    "id {id} belongs to the member at {addr}; remove it first"
                )));
            }
        }
        if voter {
            return Ok(());
        }
        if known.is_none() {
            info!(id, url, "adding a learner");
            let added = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft.add_learner(id, BasicNode::new(url), false),
            )
            .await;
            membership_outcome(id, added)?;
        }

        let target = self.raft.metrics().borrow().last_log_index;
        info!(id, ?target, "waiting for the learner to catch up");
        let caught_up = self
            .raft
            .wait(Some(CATCH_UP_TIMEOUT))
            .metrics(
                move |m| {
                    // Leadership lost: stop waiting, the check below reports it.
                    m.state != ServerState::Leader
                        || m.replication
                            .as_ref()
                            .and_then(|r| r.get(&id))
                            .and_then(|matched| matched.map(|l| l.index))
                            >= target
                },
                "the learner caught up",
            )
            .await;
        match caught_up {
            Ok(m) if m.state != ServerState::Leader => {
                return Err(WriteError::NotLeader {
                    leader_url: leader_url(&self.raft, m.current_leader, None),
                }
                .into())
            }
            Ok(_) => {}
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                return Err(MembershipError::CatchUpTimeout {
                    id,
                    timeout: CATCH_UP_TIMEOUT,
                })
            }
            Err(openraft::metrics::WaitError::ShuttingDown) => {
                return Err(WriteError::ShuttingDown.into())
            }
        }

        info!(id, "promoting the learner to voter");
        let promoted = tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
        )
        .await;
        membership_outcome(id, promoted)?;
        info!(id, url, "node joined as voter");
        Ok(())
    }

    pub(crate) async fn remove_member_local(&self, id: u64) -> Result<(), MembershipError> {
        let (voters, learner) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let voters: BTreeSet<u64> = membership.voter_ids().collect();
            let learner = membership.learner_ids().any(|l| l == id);
            (voters, learner)
        };
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(MembershipError::LastVoter { id });
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if learner {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(MembershipError::UnknownMember { id });
        };
        info!(id, "removing a member");
        let removed = tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, false),
        )
        .await;
        membership_outcome(id, removed)?;
        info!(id, "member removed");
        Ok(())
    }

    /// Waits up to `timeout` until a leader is known; answers its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<u64> {
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .ok()
            .and_then(|m| m.current_leader)
    }

    /// Whether this node's membership config names it (as voter or learner): false
    /// for a node that still waits to be added or initialized.
    pub fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&self.cfg.node_id)
            .is_some()
    }

    /// Members, leader, term and indexes, as this node knows them. `matched_index`
    /// (how far a member's log matches the leader's) is only known by the leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, WriteError> {
        let commit_index = self
            .raft
            .with_raft_state(|st| st.committed.map_or(0, |id| id.index))
            .await
            .map_err(fatal)?;
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let leading = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = if !leading {
                    None
                } else if *id == self.cfg.node_id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id))
                        .and_then(|l| l.map(|l| l.index))
                };
                MemberStatus {
                    id: *id,
                    url: node.addr.clone(),
                    role: if voters.contains(id) {
                        MemberRole::Voter
                    } else {
                        MemberRole::Learner
                    },
                    matched_index,
                }
            })
            .collect();
        Ok(ClusterStatus {
            node_id: self.cfg.node_id,
            leader: m.current_leader,
            leader_url: m
                .current_leader
                .and_then(|id| membership.get_node(&id).map(|n| n.addr.clone())),
            term: m.current_term,
            members,
            commit_index,
            last_applied: m.last_applied.map_or(0, |id| id.index),
        })
    }

    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let leader_url = m.current_leader.and_then(|id| {
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.addr.clone())
        });
        NodeStatus {
            node_id: self.cfg.node_id,
            node: self.cfg.node_name.clone(),
            role: role.to_string(),
            leader: m.current_leader,
            leader_url,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |id| id.index),
            snapshot_index: m.snapshot.map(|id| id.index),
        }
    }

    /// `true` while this node is the leader.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership.clone()
    }

    /// Peer endpoints (Raft RPCs, forwarding) to be merged into the node's HTTP
    /// router; behind the cluster secret when one is configured.
    pub fn peer_router(self: &Arc<Self>) -> axum::Router {
        network::router(self.clone())
    }

    /// Whether a request carrying `given` in the [`CLUSTER_SECRET_HEADER`] comes
    /// from a cluster member (always true when no secret is configured).
    pub fn admits_peer(&self, given: Option<&[u8]>) -> bool {
        self.transport.admits(given)
    }

    /// Stops Raft and flushes storage. Once it returns and the last handle to the
    /// node and its store is dropped, the data directory can be opened again.
    ///
    /// A leader hands its leadership over first (openraft 0.9 has no leader
    /// transfer): it picks the voter whose log matches the most of its own
    /// (waiting briefly for one to hold all of it), stops Raft, and once the
    /// other followers' leader lease has run out asks that voter to stand for
    /// election at once. It then wins the first round, instead of the cluster
    /// waiting for an election timeout on top of the lease. When the handoff
    /// cannot be made, the followers elect a leader on their own as after a crash.
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        let successor = self.pick_successor().await;
        // First while Raft still runs: this node's vote lets the successor win at
        // once. When that does not happen in time, after stopping, by the lease.
        let handed = match &successor {
            Some(successor) => self.hand_over_live(successor).await,
            None => false,
        };
        self.raft.shutdown().await?;
        if let (Some(successor), false) = (successor, handed) {
            self.hand_off(successor).await;
        }
        if let Some(task) = self.leadership_task.lock().await.take() {
            task.await?;
        }
        {
            let mut released = self.released.lock().await;
            if tokio::time::timeout(RELEASE_TIMEOUT, released.recv())
                .await
                .is_err()
            {
                warn!("raft storage was not released in time after shutdown");
            }
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.flush()).await??;
        info!(node_id = self.cfg.node_id, "node stopped");
        Ok(())
    }
}

/// The voter a leader hands its leadership to at shutdown.
#[derive(Debug)]
struct Successor {
    id: u64,
    url: String,
    /// The leader's term: the successor stands only if no election happened since.
    term: u64,
    /// How far its log matched the leader's when picked (for the log).
    matched: Option<u64>,
}

impl Node {
    /// The voter to hand leadership to, when this node leads and the others can
    /// form a quorum without it.
    async fn pick_successor(&self) -> Option<Successor> {
        let (term, last, voters) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader {
                return None;
            }
            let voters: Vec<u64> = m
                .membership_config
                .membership()
                .voter_ids()
                .filter(|v| *v != self.cfg.node_id)
                .collect();
            (m.current_term, m.last_log_index, voters)
        };
        // Without this node, n others are a majority of n + 1 voters only from 2 on.
        if voters.len() < 2 {
            return None;
        }
        let matched_of = |m: &openraft::RaftMetrics<u64, BasicNode>, id: u64| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id))
                .and_then(|l| l.map(|l| l.index))
        };
        // A successor with less log than another follower would be refused its
        // votes; one with all of this leader's log is refused by nobody.
        let waited = {
            let voters = voters.clone();
            self.raft
                .wait(Some(HANDOFF_CATCH_UP))
                .metrics(
                    move |m| {
                        m.state != ServerState::Leader
                            || voters.iter().any(|v| matched_of(m, *v) >= last)
                    },
                    "a voter holds the whole log",
                )
                .await
        };
        let m = match waited {
            Ok(m) => m,
            Err(openraft::metrics::WaitError::Timeout(..)) => self.raft.metrics().borrow().clone(),
            Err(openraft::metrics::WaitError::ShuttingDown) => return None,
        };
        if m.state != ServerState::Leader {
            return None;
        }
        let (id, matched) = voters
            .iter()
            .map(|v| (*v, matched_of(&m, *v)))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
        let url = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some(Successor {
            id,
            url,
            term,
            matched,
        })
    }

    /// Asks `successor` to stand for election while this node still leads, and waits
    /// (a few election timeouts at most) until this node no longer leads: the
    /// successor needs one more vote than its own, and this node gives it (openraft
    /// does not renew a leader's own lease, so a leader of longer than the lease
    /// votes for a newer term at once), while the other followers would still refuse
    /// it until their lease ran out. Answers whether leadership moved.
    async fn hand_over_live(&self, successor: &Successor) -> bool {
        info!(
            successor = successor.id,
            matched = ?successor.matched,
            term = successor.term,
            "handing leadership over"
        );
        if !self.ask_to_stand(successor).await {
            return false;
        }
        let mut metrics = self.raft.metrics();
        let moved = tokio::time::timeout(
            self.timing.leader_lease() * 2,
            metrics
                .wait_for(|m| m.state != ServerState::Leader || m.current_term != successor.term),
        )
        .await;
        let moved = matches!(moved, Ok(Ok(_)));
        if moved {
            info!(successor = successor.id, "leadership handed over");
        } else {
            info!(
                successor = successor.id,
                "the successor did not take over in time; handing over after the lease"
            );
        }
        moved
    }

    /// Calls the successor's `/raft/elect`; answers whether it stood.
    async fn ask_to_stand(&self, successor: &Successor) -> bool {
        let request = network::ElectRequest {
            from: self.cfg.node_id,
            term: successor.term,
        };
        match self
            .transport
            .call::<_, Result<bool, WireError>>(
                &successor.url,
                "elect",
                &request,
                HANDOFF_CALL_TIMEOUT,
            )
            .await
        {
            Ok(Ok(true)) => {
                info!(successor = successor.id, "successor stands for election");
                true
            }
            Ok(Ok(false)) => {
                info!(
                    successor = successor.id,
                    "successor saw a newer term; no handoff needed"
                );
                false
            }
            Ok(Err(e)) => {
                warn!(successor = successor.id, error = ?e, "handoff refused");
                false
            }
            Err(e) => {
                warn!(successor = successor.id, error = %e, "handoff call failed");
                false
            }
        }
    }

    /// Asks `successor` to stand for election once the followers' leader lease
    /// (counted from the last heartbeat, which went out before Raft stopped) has
    /// run out: before that they would refuse to vote.
    async fn hand_off(&self, successor: Successor) {
        let wait = self.timing.leader_lease() + self.timing.heartbeat_interval;
        info!(
            successor = successor.id,
            matched = ?successor.matched,
            term = successor.term,
            after = ?wait,
            "handing leadership over"
        );
        tokio::time::sleep(wait).await;
        self.ask_to_stand(&successor).await;
    }

    /// The successor's side of [`Node::hand_off`]: stands for election at once,
    /// unless a newer term began since the leader's (someone else already stands
    /// or leads). Answers whether it stood.
    pub(crate) async fn elect_on_handoff(&self, from: u64, term: u64) -> Result<bool, WriteError> {
        let (current, leading) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.current_term, m.state == ServerState::Leader)
        };
        if current != term || leading {
            return Ok(false);
        }
        info!(from, term, "standing for election: the leader handed over");
        self.raft.trigger().elect().await.map_err(fatal)?;
        Ok(true)
    }
}

/// Where a request goes.
enum Route {
    Here,
    Leader(String),
}

/// Errors that can mean "not applied, another node leads".
trait NotLeader {
    fn not_leader(&self) -> bool;
}

impl NotLeader for WriteError {
    fn not_leader(&self) -> bool {
        matches!(self, WriteError::NotLeader { .. })
    }
}

impl NotLeader for MembershipError {
    fn not_leader(&self) -> bool {
        matches!(self, MembershipError::Write(WriteError::NotLeader { .. }))
    }
}

/// What is left until `deadline` (zero when it passed).
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A member as `GET /v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub id: u64,
    pub url: String,
    pub role: MemberRole,
    pub matched_index: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Voter,
    Learner,
}

/// The cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    pub leader: Option<u64>,
    pub leader_url: Option<String>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    pub commit_index: u64,
    pub last_applied: u64,
}

/// Checks a `--peers` map against this node.
fn check_peers(cfg: &NodeConfig, peers: &BTreeMap<u64, String>) -> Result<(), ClusterError> {
    if peers.contains_key(&0) {
        return Err(ClusterError::InvalidPeers("node ids start at 1".into()));
    }
    for (id, url) in peers {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ClusterError::InvalidPeers(format!(
                "node {id}: {url:?} is not an http:// or https:// URL"
            )));
        }
    }
    match peers.get(&cfg.node_id) {
        None => Err(ClusterError::InvalidPeers(format!(
            "this node's id {} is not among the peers {:?}",
            cfg.node_id,
            peers.keys().collect::<Vec<_>>()
        ))),
        Some(url) if url.trim_end_matches('/') != cfg.advertise_url.trim_end_matches('/') => {
            warn!(
                node_id = cfg.node_id,
                peers_url = %url,
                advertise = %cfg.advertise_url,
                "the peers list gives this node another URL than it advertises; peers use the list's"
            );
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// What openraft answers a membership change with.
type ChangeResult<T> = Result<T, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Maps the outcome of a membership change (or its time limit).
fn membership_outcome<T>(
    id: u64,
    outcome: Result<ChangeResult<T>, tokio::time::error::Elapsed>,
) -> Result<(), MembershipError> {
    match outcome {
        Err(_) => Err(WriteError::Timeout(MEMBERSHIP_TIMEOUT).into()),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(WriteError::NotLeader {
                leader_url: f.leader_node.map(|n| n.addr),
            }
            .into())
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => match e {
            ChangeMembershipError::InProgress(_) => Err(MembershipError::InProgress),
            ChangeMembershipError::LearnerNotFound(l) => {
                Err(MembershipError::UnknownMember { id: l.node_id })
            }
            ChangeMembershipError::EmptyMembership(_) => Err(MembershipError::LastVoter { id }),
        },
        Ok(Err(RaftError::Fatal(e))) => Err(fatal(e).into()),
    }
}

fn fatal(e: Fatal<u64>) -> WriteError {
    match e {
        Fatal::Stopped => WriteError::ShuttingDown,
        other => WriteError::Fatal(other.to_string()),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod sim;
