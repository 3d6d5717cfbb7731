//! rota's openraft type configuration and the persisted forms of openraft's types.
//!
//! openraft's serde derives are not a stable on-disk format, so what this crate
//! writes (log entries, the vote, the committed and purged log ids, the state
//! machine's metadata) goes through the small mirror types here, written with the
//! store's record codec ([`rota_store::codec`]): one version byte, then serde_json,
//! like every other record of rota.

use openraft::{BasicNode, CommittedLeaderId, EntryPayload, Membership, StoredMembership};
use rota_core::{ClientRequest, Command, Response};
use rota_store::codec::{decode, encode};
use serde::{Deserialize, Serialize};

use crate::ClusterError;

openraft::declare_raft_types!(
    /// The Raft types of rota: client requests in, state machine responses out,
    /// snapshots streamed through files.
    pub TypeConfig:
        D = ClientRequest,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, BasicNode>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogIdV1 {
    pub term: u64,
    pub node: u64,
    pub index: u64,
}

impl From<&LogId> for LogIdV1 {
    fn from(id: &LogId) -> Self {
        LogIdV1 {
            term: id.leader_id.term,
            node: id.leader_id.node_id,
            index: id.index,
        }
    }
}

impl From<LogIdV1> for LogId {
    fn from(id: LogIdV1) -> Self {
        LogId::new(CommittedLeaderId::new(id.term, id.node), id.index)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VoteV1 {
    pub term: u64,
    pub node: u64,
    pub committed: bool,
}

impl From<&Vote> for VoteV1 {
    fn from(v: &Vote) -> Self {
        VoteV1 {
            term: v.leader_id.term,
            node: v.leader_id.node_id,
            committed: v.committed,
        }
    }
}

impl From<VoteV1> for Vote {
    fn from(v: VoteV1) -> Self {
        if v.committed {
            Vote::new_committed(v.term, v.node)
        } else {
            Vote::new(v.term, v.node)
        }
    }
}

/// A log entry as written (borrowing, to avoid copying requests on append).
#[derive(Serialize)]
struct EntryOut<'a> {
    log_id: LogIdV1,
    payload: PayloadOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum PayloadOut<'a> {
    Blank,
    Request(&'a ClientRequest),
    Membership(&'a Membership<u64, BasicNode>),
}

/// A log entry as read; same JSON shape as [`EntryOut`].
#[derive(Deserialize)]
struct EntryIn {
    log_id: LogIdV1,
    payload: PayloadIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum PayloadIn {
    Blank,
    Request(Box<ClientRequest>),
    Membership(Membership<u64, BasicNode>),
}

pub(crate) const LOG_ENTRY: &str = "raft log entry";

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, ClusterError> {
    let payload = match &entry.payload {
        EntryPayload::Blank => PayloadOut::Blank,
        EntryPayload::Normal(req) => PayloadOut::Request(req),
        EntryPayload::Membership(m) => PayloadOut::Membership(m),
    };
    let out = EntryOut {
        log_id: (&entry.log_id).into(),
        payload,
    };
    Ok(encode(LOG_ENTRY, &out)?)
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, ClusterError> {
    let e: EntryIn = decode(LOG_ENTRY, bytes)?;
    let payload = match e.payload {
        PayloadIn::Blank => EntryPayload::Blank,
        PayloadIn::Request(req) => EntryPayload::Normal(*req),
        PayloadIn::Membership(m) => EntryPayload::Membership(m),
    };
    Ok(Entry {
        log_id: e.log_id.into(),
        payload,
    })
}

/// What the state machine stores beside its tables (opaque to the store): the last
/// applied log id and the last applied membership.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RaftMetaV1 {
    pub last_applied: Option<LogIdV1>,
    pub membership_log_id: Option<LogIdV1>,
    pub membership: Membership<u64, BasicNode>,
}

pub(crate) const RAFT_META: &str = "state machine raft metadata";

impl RaftMetaV1 {
    pub fn new(
        last_applied: Option<&LogId>,
        membership: &StoredMembership<u64, BasicNode>,
    ) -> Self {
        RaftMetaV1 {
            last_applied: last_applied.map(Into::into),
            membership_log_id: membership.log_id().as_ref().map(Into::into),
            membership: membership.membership().clone(),
        }
    }

    pub fn last_applied(&self) -> Option<LogId> {
        self.last_applied.map(Into::into)
    }

    pub fn stored_membership(&self) -> StoredMembership<u64, BasicNode> {
        StoredMembership::new(
            self.membership_log_id.map(Into::into),
            self.membership.clone(),
        )
    }
}

/// Largest KV value of a write light enough to append and apply inline.
const LIGHT_VALUE_BYTES: usize = 16 * 1024;

/// Whether appending or applying `entries` is light enough to run on the calling
/// task instead of tokio's blocking pool: a lone entry with one small write (a KV
/// write, a heartbeat, a single fire, start or cancel, ...).
///
/// A trip through the blocking pool costs two thread wake-ups, about a fifth of a
/// lone write's whole time on a two-core machine, while such an entry is appended
/// (one fsync) or applied in about as long. Batches, large values and every other
/// command still go to the pool, so a long fsync or apply never holds up the
/// runtime's other tasks.
pub(crate) fn is_light(entries: &[Entry]) -> bool {
    match entries {
        [entry] => match &entry.payload {
            EntryPayload::Blank => true,
            EntryPayload::Normal(req) => is_light_command(&req.command),
            EntryPayload::Membership(_) => false,
        },
        _ => false,
    }
}

/// Most bytes (encoded) of the entries [`appends_in_place`] lets the Raft core
/// append itself.
const IN_PLACE_APPEND_BYTES: usize = 256 * 1024;

/// Whether the log appends `entries` (`bytes` once encoded) on the calling task
/// even under load: entries that hold key/value writes only, up to
/// [`IN_PLACE_APPEND_BYTES`].
///
/// openraft 0.9's core waits for each append's flush before it does anything else,
/// so appends follow one another: the time from one append to the next bounds how
/// many entries a second the log takes, and with it a loaded node's write
/// throughput. A trip through the blocking pool adds two thread wake-ups to that
/// cycle; measured on a two-core virtual machine under 16 writers, 139 µs until
/// the pool's thread ran the write and 79 µs until the core ran again, around a
/// write and `fdatasync` of 325 µs. In place, the cost is one runtime worker held
/// for the sync. The scheduler's entries (fires, starts, finishes) still go to the
/// pool: when a burst of runs is due, both workers hand them over.
pub(crate) fn appends_in_place(entries: &[Entry], bytes: usize) -> bool {
    bytes <= IN_PLACE_APPEND_BYTES && kv_write_bytes(entries).is_some()
}

/// Whether a node with no write of its own on the way (a follower; see
/// [`crate::batcher::Gate::is_idle`]) applies `entries` on the calling task: entries
/// of key/value writes only, whose keys and values add up to at most
/// [`IN_PLACE_APPEND_BYTES`].
///
/// A follower's state machine worker does nothing else while an apply runs, and
/// the runtime's other worker goes on taking the leader's AppendEntries calls; a
/// trip through the blocking pool would add two thread wake-ups to every apply.
/// On a leader under load the apply still goes to the pool: there a worker held
/// by an apply holds up the requests that fill the next batch (measured 25 %
/// slower when every apply ran in place).
pub(crate) fn applies_in_place(entries: &[Entry]) -> bool {
    kv_write_bytes(entries).is_some_and(|bytes| bytes <= IN_PLACE_APPEND_BYTES)
}

/// The keys' and values' bytes of `entries` when they hold key/value writes only
/// (puts and deletes, plain, attributed or batched), else `None`.
fn kv_write_bytes(entries: &[Entry]) -> Option<usize> {
    if entries.is_empty() {
        return None;
    }
    entries.iter().try_fold(0usize, |sum, e| match &e.payload {
        EntryPayload::Normal(req) => Some(sum.saturating_add(command_kv_bytes(&req.command)?)),
        EntryPayload::Blank | EntryPayload::Membership(_) => None,
    })
}

fn command_kv_bytes(command: &Command) -> Option<usize> {
    match command {
        Command::KvPut { key, value, .. } => Some(key.len().saturating_add(value.len())),
        Command::KvDelete { key, .. } => Some(key.len()),
        Command::Attributed { command, .. } => command_kv_bytes(command),
        Command::Requests { requests } => requests.iter().try_fold(0usize, |sum, r| {
            Some(sum.saturating_add(command_kv_bytes(&r.command)?))
        }),
        _ => None,
    }
}

fn is_light_command(command: &Command) -> bool {
    match command {
        Command::KvPut { value, .. } => value.len() <= LIGHT_VALUE_BYTES,
        Command::KvDelete { .. }
        | Command::Cancel { .. }
        | Command::Heartbeat { .. }
        | Command::ClaimScheduler { .. }
        | Command::SetPaused { .. } => true,
        Command::Fire { fires } => fires.len() <= 1,
        Command::Start { starts } => starts.len() <= 1,
        Command::Attributed { command, .. } => is_light_command(command),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn entries_round_trip_through_the_persisted_form() {
        let log_id = LogId::new(CommittedLeaderId::new(3, 7), 42);
        let request = ClientRequest {
            session: None,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            command: rota_core::Command::KvPut {
                key: "k".into(),
                value: "v".into(),
                if_revision: Some(0),
            },
        };
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2])],
            BTreeMap::from([
                (1, BasicNode::new("http://a")),
                (2, BasicNode::new("http://b")),
            ]),
        );
        for payload in [
            EntryPayload::Blank,
            EntryPayload::Normal(request),
            EntryPayload::Membership(membership),
        ] {
            let entry = Entry { log_id, payload };
            let back = decode_entry(&encode_entry(&entry).unwrap()).unwrap();
            assert_eq!(back, entry);
        }
        let mut future = encode_entry(&Entry {
            log_id,
            payload: EntryPayload::Blank,
        })
        .unwrap();
        future[0] = 2;
        assert!(matches!(
            decode_entry(&future),
            Err(ClusterError::Store(
                rota_store::StoreError::UnknownVersion { version: 2, .. }
            ))
        ));
    }

    #[test]
    fn votes_round_trip() {
        for vote in [Vote::new(4, 2), Vote::new_committed(5, 1)] {
            let v: VoteV1 = (&vote).into();
            assert_eq!(Vote::from(v), vote);
        }
    }

    /// An entry of the first term's leader holding `command`.
    fn entry(index: u64, command: rota_core::Command) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ClientRequest {
                session: None,
                at: chrono::Utc::now(),
                command,
            }),
        }
    }

    #[test]
    fn only_a_lone_small_write_is_light() {
        let put = |value: String| rota_core::Command::KvPut {
            key: "k".into(),
            value,
            if_revision: None,
        };
        let small = entry(1, put("v".into()));
        assert!(is_light(std::slice::from_ref(&small)));
        assert!(
            !is_light(&[small.clone(), entry(2, put("w".into()))]),
            "two entries"
        );
        assert!(
            !is_light(&[entry(1, put("v".repeat(LIGHT_VALUE_BYTES + 1)))]),
            "a large value"
        );
        let batch = rota_core::Command::Requests {
            requests: vec![ClientRequest {
                session: None,
                at: chrono::Utc::now(),
                command: put("v".into()),
            }],
        };
        assert!(!is_light(&[entry(1, batch)]), "a batch of requests");
        assert!(
            !is_light(&[]),
            "nothing to do is not a reason to skip the pool's rules"
        );
    }

    #[test]
    fn batches_of_key_value_writes_are_appended_and_applied_in_place() {
        let request = |command| ClientRequest {
            session: None,
            at: chrono::Utc::now(),
            command,
        };
        let put = || rota_core::Command::KvPut {
            key: "k".into(),
            value: "v".into(),
            if_revision: None,
        };
        let delete = rota_core::Command::Attributed {
            token: "t".into(),
            command: Box::new(rota_core::Command::KvDelete {
                key: "k".into(),
                if_revision: None,
            }),
        };
        let writes = rota_core::Command::Requests {
            requests: vec![request(put()), request(delete)],
        };
        let entries = [entry(1, writes), entry(2, put())];
        assert!(appends_in_place(&entries, 1024));
        assert!(
            !appends_in_place(&entries, IN_PLACE_APPEND_BYTES + 1),
            "too many bytes"
        );
        let with_a_start = rota_core::Command::Requests {
            requests: vec![
                request(put()),
                request(rota_core::Command::Start { starts: Vec::new() }),
            ],
        };
        assert!(
            !appends_in_place(&[entry(1, with_a_start)], 1024),
            "a scheduler command among the writes"
        );
        let blank = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 3),
            payload: EntryPayload::Blank,
        };
        assert!(
            !appends_in_place(std::slice::from_ref(&blank), 1024),
            "openraft's own entry"
        );
        assert!(!appends_in_place(&[], 0), "nothing");

        // Applies in place: the same entries, bounded by their keys' and values' bytes.
        assert!(applies_in_place(&entries));
        let large = rota_core::Command::KvPut {
            key: "k".into(),
            value: "v".repeat(IN_PLACE_APPEND_BYTES),
            if_revision: None,
        };
        assert!(!applies_in_place(&[entry(1, large)]), "too many bytes");
        let with_a_start = rota_core::Command::Requests {
            requests: vec![request(rota_core::Command::Start { starts: Vec::new() })],
        };
        assert!(!applies_in_place(&[
            entry(1, put()),
            entry(2, with_a_start)
        ]));
        assert!(!applies_in_place(&[blank]), "openraft's own entry");
        assert!(!applies_in_place(&[]), "nothing");
    }
}
