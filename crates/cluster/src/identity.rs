//! Which cluster a node belongs to, so that peers of different clusters never take
//! each other's Raft traffic.
//!
//! Nodes address each other by URL, and an address outlives its node: a member
//! that is down (a restart, a move) leaves its port to whatever binds it next,
//! perhaps a node of another cluster on the same host. Without a check, the
//! leader's AppendEntries reach that stranger, which answers them: the leader then
//! counts a stranger's acknowledgement as its member's, and may call an entry
//! committed that only it holds. (The stranger fares no better: a vote equal to
//! its own leader's trips openraft's assertions and the process dies.) A cluster
//! secret prevents this when one is set; the cluster id does it always.
//!
//! Every peer call carries the sender's cluster id (`Rota-Cluster-Id`) and, for
//! the Raft RPCs, the id of the node it is meant for (`Rota-Peer-Node`). A node
//! refuses a call meant for another node id, or one from a cluster other than
//! its own; the caller sees the peer as unreachable.
//!
//! The id is kept in `<data-dir>/cluster-id` and set once:
//! - with `--peers`, derived from the peer map (ids and URLs), so that the nodes
//!   of one cluster agree on it before any of them speaks, and two clusters with
//!   different peer maps never do: every node of a cluster must be given the same
//!   map (the order and a trailing `/` do not matter);
//! - a new single node makes a random one;
//! - a node that has none (one waiting to be added with `--join`, or a data
//!   directory of a release without ids) takes the id of the first peer call that
//!   carries one, and keeps it. Until then it refuses nothing, and calls from
//!   nodes of earlier releases, which carry no id, are always taken.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file, in the data directory, that holds the node's cluster id.
pub(crate) const FILE: &str = "cluster-id";

/// The header with the sender's cluster id.
pub const CLUSTER_ID_HEADER: &str = "rota-cluster-id";
/// The header with the node id a Raft RPC is meant for.
pub const PEER_NODE_HEADER: &str = "rota-peer-node";

/// Longest cluster id accepted from a file or a header.
const MAX_LEN: usize = 128;

/// The cluster id stored in `data_dir`, if any.
pub(crate) fn read(data_dir: &Path) -> io::Result<Option<String>> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !valid(id) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} does not hold a cluster id (1-{MAX_LEN} characters of A-Z, a-z, 0-9, '-' and '_'): remove it to let the node set one",
                        path.display()
                    ),
                ));
            }
            Ok(Some(id.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores `id` in `data_dir` durably (written to a temporary file, synced,
/// renamed, the directory synced).
pub(crate) fn write(data_dir: &Path, id: &str) -> io::Result<()> {
    let path = data_dir.join(FILE);
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(id.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()
}

/// Whether `id` can be a cluster id (what a file or a header may carry).
pub(crate) fn valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id of the cluster a `--peers` map describes: the same for every node given
/// the same map, whatever its order or trailing slashes.
pub(crate) fn from_peers(peers: &BTreeMap<u64, String>) -> String {
    let mut canonical = String::new();
    for (id, url) in peers {
        canonical.push_str(&format!("{id}={};", url.trim_end_matches('/')));
    }
    format!("peers-{:032x}", fnv1a_128(canonical.as_bytes()))
}

/// A new random id, for a cluster that starts as one node.
pub(crate) fn random() -> String {
    format!("single-{}", ulid::Ulid::generate())
}

/// FNV-1a, 128 bits: tells configurations apart (the cluster secret, not this,
/// is what keeps out a peer that means harm).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, b| {
        (hash ^ u128::from(*b)).wrapping_mul(PRIME)
    })
}

/// Why a peer call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Meant for another node id.
    OtherNode { meant: u64 },
    /// From another cluster.
    OtherCluster { theirs: String },
}

/// What to do with a peer call, given this node's id and cluster id and the
/// call's headers: refuse it, or take it (adopting the caller's cluster id when
/// this node has none yet: the answer's `Some`).
pub(crate) fn admit(
    node_id: u64,
    mine: Option<&str>,
    theirs: Option<&str>,
    meant_for: Option<&str>,
) -> Result<Option<String>, Refusal> {
    if let Some(meant) = meant_for {
        match meant.trim().parse::<u64>() {
            Ok(meant) if meant == node_id => {}
            // An unreadable target is no target of ours either.
            Ok(meant) => return Err(Refusal::OtherNode { meant }),
            Err(_) => return Err(Refusal::OtherNode { meant: 0 }),
        }
    }
    match (mine, theirs) {
        (_, None) => Ok(None),
        (Some(mine), Some(theirs)) if mine == theirs => Ok(None),
        (Some(_), Some(theirs)) => Err(Refusal::OtherCluster {
            theirs: theirs.to_string(),
        }),
        (None, Some(theirs)) if valid(theirs) => Ok(Some(theirs.to_string())),
        (None, Some(theirs)) => Err(Refusal::OtherCluster {
            theirs: theirs.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(u64, &str)]) -> BTreeMap<u64, String> {
        entries.iter().map(|(i, u)| (*i, u.to_string())).collect()
    }

    #[test]
    fn one_peer_map_gives_one_id_and_another_map_another() {
        let a = from_peers(&map(&[
            (1, "http://h:1"),
            (2, "http://h:2"),
            (3, "http://h:3"),
        ]));
        let same = from_peers(&map(&[
            (3, "http://h:3/"),
            (1, "http://h:1"),
            (2, "http://h:2/"),
        ]));
        assert_eq!(a, same);
        assert!(valid(&a), "{a}");
        let other_port = from_peers(&map(&[
            (1, "http://h:1"),
            (2, "http://h:2"),
            (3, "http://h:4"),
        ]));
        let other_ids = from_peers(&map(&[
            (1, "http://h:1"),
            (2, "http://h:2"),
            (4, "http://h:3"),
        ]));
        assert_ne!(a, other_port);
        assert_ne!(a, other_ids);
        assert_ne!(random(), random());
        assert!(valid(&random()));
    }

    #[test]
    fn the_id_is_kept_in_the_data_dir_and_a_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), "peers-abc").unwrap();
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some("peers-abc"));
        std::fs::write(dir.path().join(FILE), "not an id!\n").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("does not hold a cluster id"), "{err}");
    }

    #[test]
    fn calls_for_another_node_or_from_another_cluster_are_refused() {
        // Ours, or from a release without ids: taken.
        assert_eq!(admit(2, Some("c"), Some("c"), Some("2")), Ok(None));
        assert_eq!(admit(2, Some("c"), None, None), Ok(None));
        assert_eq!(admit(2, None, None, Some("2")), Ok(None));
        // Another cluster's, or meant for another node: refused.
        assert_eq!(
            admit(2, Some("c"), Some("d"), Some("2")),
            Err(Refusal::OtherCluster { theirs: "d".into() })
        );
        assert_eq!(
            admit(2, Some("c"), Some("c"), Some("3")),
            Err(Refusal::OtherNode { meant: 3 })
        );
        assert_eq!(
            admit(2, None, None, Some("x")),
            Err(Refusal::OtherNode { meant: 0 })
        );
        // A node without an id takes the first one it is given, if it is one.
        assert_eq!(admit(2, None, Some("c"), Some("2")), Ok(Some("c".into())));
        assert!(admit(2, None, Some("bad id"), None).is_err());
    }
}
