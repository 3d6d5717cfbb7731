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
//! The node handle is spread over modules by what it does: `config` (settings,
//! their validation and the openraft configuration built from them), `node`
//! (start and status), `routing` (writes and read barriers, here or forwarded to
//! the leader), `membership` (join, leave, cluster status) and `handoff` (shutdown
//! and the graceful leader handoff).
//!
//! A node's data directory holds `raft-log/` (the log's entries in segment files:
//! fdatasynced on every append, the durable record) with `raft-log.redb` (its
//! vote, committed and purged ids), `state.redb` (the state machine: applied
//! without fsync and rebuilt from the log after a crash) and
//! `snapshots/current.snap`.

mod batcher;
mod config;
mod early;
mod error;
mod handoff;
mod identity;
mod log_store;
mod membership;
mod network;
mod node;
mod routing;
mod state_machine;
mod trace;
mod types;
mod wal;

pub use config::{
    check_node_id, check_peers, Bootstrap, ClusterOptions, NodeConfig, RaftTiming,
    DEFAULT_ELECTION_TIMEOUT, DEFAULT_HEARTBEAT_INTERVAL,
};
pub use error::{ClusterError, MembershipError, PeerError, WriteError};
pub use membership::{ClusterStatus, MemberRole, MemberStatus, Readiness};
pub use network::{VerifiedPeer, CLUSTER_SECRET_HEADER};
pub use node::{Node, NodeStatus};
/// What the event log keeps (part of [`NodeConfig`]).
pub use rota_store::{EventRetention, RETENTION_AGE};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod sim;
