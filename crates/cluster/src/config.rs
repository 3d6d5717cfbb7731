//! How a node is configured: where it keeps its files and how it is reached
//! ([`NodeConfig`]), how it finds its cluster ([`Bootstrap`]), the Raft timing
//! ([`RaftTiming`]), their validation, and the openraft configuration derived from
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;
use rota_core::validate::check_http_url;
use tracing::warn;

use crate::ClusterError;

/// Size of the chunks a snapshot is sent to a follower in.
const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
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
    /// The TLS configuration of calls to `https://` peers (the CA they chain to);
    /// `None`: reqwest's defaults.
    pub tls: Option<rustls::ClientConfig>,
    /// Peers prove membership with a client certificate the node's TLS listener
    /// verified (peer mTLS): with it, peer routes without a cluster secret are
    /// no longer open, and a verified certificate stands in for the secret.
    pub peer_certificates: bool,
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
    /// Directory of `raft-log/`, `raft-log.redb`, `state.redb` and snapshots.
    pub data_dir: PathBuf,
    /// URL peers and clients reach this node at, e.g. `http://127.0.0.1:7700`.
    pub advertise_url: String,
    /// Build a snapshot (and purge the log before it) every this many entries.
    pub snapshot_every: u64,
    /// How many public events the event log keeps at least (`watch.retention`).
    /// It changes what apply deletes, so every member must use the same.
    pub watch_retention: rota_store::EventRetention,
}

impl NodeConfig {
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        if self.snapshot_every == 0 {
            return Err(ClusterError::InvalidConfig {
                field: "snapshot_every",
                message: "must be at least 1".into(),
            });
        }
        check_http_url(&self.advertise_url).map_err(|message| ClusterError::InvalidConfig {
            field: "advertise_url",
            message,
        })
    }

    pub(crate) fn raft_config(
        &self,
        timing: &RaftTiming,
    ) -> Result<openraft::Config, ClusterError> {
        raft_config("rota", timing, self.snapshot_every, SNAPSHOT_CHUNK_BYTES)
    }
}

/// The openraft configuration of a rota node (the simulator's too, with its own
/// name, timing and chunk size): elections timed by `timing`, a snapshot every
/// `snapshot_every` entries, sent in chunks of `snapshot_chunk_bytes`.
pub(crate) fn raft_config(
    cluster_name: &str,
    timing: &RaftTiming,
    snapshot_every: u64,
    snapshot_chunk_bytes: u64,
) -> Result<openraft::Config, ClusterError> {
    timing.validate()?;
    let config = openraft::Config {
        cluster_name: cluster_name.into(),
        heartbeat_interval: millis_u64(timing.heartbeat_interval),
        election_timeout_min: millis_u64(timing.election_timeout),
        election_timeout_max: millis_u64(timing.leader_lease()),
        install_snapshot_timeout: 2000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        // Keep about one snapshot interval of log behind a snapshot, so the log
        // is purged at every snapshot and does not grow forever.
        max_in_snapshot_log_to_keep: snapshot_every.min(MAX_LOG_KEPT_BEHIND_SNAPSHOT),
        purge_batch_size: 1,
        snapshot_max_chunk_size: snapshot_chunk_bytes,
        ..openraft::Config::default()
    };
    config
        .validate()
        .map_err(|e| ClusterError::RaftConfig(Box::new(e)))
}

/// Checks a node id: ids start at 1 (openraft reserves nothing, but 0 is what a
/// missing id parses to).
pub fn check_node_id(id: u64) -> Result<(), String> {
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    Ok(())
}

/// Checks a peers map (id -> URL, as `--peers` gives it) against the node
/// `node_id` that advertises `advertise_url`: ids start at 1, every URL is an
/// http(s) URL with a host, and this node is among the peers. A peers URL for this
/// node other than the advertised one is only warned about: peers use the list's.
pub fn check_peers(
    node_id: u64,
    advertise_url: &str,
    peers: &BTreeMap<u64, String>,
) -> Result<(), ClusterError> {
    for (id, url) in peers {
        check_node_id(*id).map_err(ClusterError::InvalidPeers)?;
        check_http_url(url)
            .map_err(|message| ClusterError::InvalidPeers(format!("node {id}: {message}")))?;
    }
    match peers.get(&node_id) {
        None => Err(ClusterError::InvalidPeers(format!(
            "this node's id {node_id} is not among the peers {:?}",
            peers.keys().collect::<Vec<_>>()
        ))),
        Some(url) if url.trim_end_matches('/') != advertise_url.trim_end_matches('/') => {
            warn!(
                node_id,
                peers_url = %url,
                advertise = %advertise_url,
                "the peers list gives this node another URL than it advertises; peers use the list's"
            );
            Ok(())
        }
        Some(_) => Ok(()),
    }
}
