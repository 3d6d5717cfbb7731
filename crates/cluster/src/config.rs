//! How a node is configured: where it keeps its files and how it is reached
//! ([`NodeConfig`]), how it finds its cluster ([`Bootstrap`]), the Raft timing
//! ([`RaftTiming`]), their validation, and the openraft configuration derived from
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tracing::warn;

use crate::ClusterError;

/// Log entries kept behind a snapshot at most (for followers a little behind).
const MAX_LOG_KEPT_BEHIND_SNAPSHOT: u64 = 1000;

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
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
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

    pub(crate) fn raft_config(
        &self,
        timing: &RaftTiming,
    ) -> Result<openraft::Config, ClusterError> {
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

/// Checks a `--peers` map against this node.
pub(crate) fn check_peers(
    cfg: &NodeConfig,
    peers: &BTreeMap<u64, String>,
) -> Result<(), ClusterError> {
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
