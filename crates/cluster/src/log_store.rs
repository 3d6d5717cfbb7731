//! The Raft log, behind openraft's [`RaftLogStorage`] and [`RaftLogReader`]
//! traits only: its entries in segment files (`raft-log/`, see [`crate::wal`]),
//! its vote and last purged log id in a small redb file (`raft-log.redb`), its
//! committed log id in a file beside the segments (see [`crate::wal::Mark`]).
//!
//! The log is rota's durable record: every append batch is written and
//! fdatasynced before openraft is told it is flushed, so a write that was
//! acknowledged survives `kill -9`. The committed log id lets a restart re-apply
//! what was committed at once. A purge records the purged id durably before it
//! removes any entry, so the log state never claims entries that are gone.
//!
//! Earlier versions kept the entries in a table of the redb file; opening such a
//! file moves them into segment files (written and synced before the table is
//! emptied, in one durable commit; a crash in between moves them again).
//!
//! File calls block, so each runs on tokio's blocking pool, except two kinds of
//! append, which run in place: a light entry's while the node's writes are quiet
//! (see [`Gate::is_quiet`]), and that of entries of key/value writes only (see
//! [`crate::types::appends_in_place`]). On a leader a light entry is first handed
//! to the early sender, which sends it to the followers while it is synced here
//! (see [`crate::early`]).
//!
//! The redb file does not use quick-repair (a two-phase commit, two fsyncs per
//! vote); it stays tiny, so the full repair redb runs after an unclean shutdown is
//! cheap.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition};
use rota_store::{Recovery, RedbFile};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use rota_store::codec::{decode, encode};

use crate::batcher::Gate;
use crate::early::EarlySend;
use crate::types::{
    appends_in_place, decode_entry, encode_entry, is_light, Entry, LogId, LogIdV1, StorageError,
    TypeConfig, Vote, VoteV1,
};
use crate::wal::{Mark, MarkWriter, Wal};
use crate::ClusterError;

/// The entries, in the format of earlier versions (moved out at open).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");
const META_VOTE: &str = "vote";
const META_PURGED: &str = "purged";
const META_COMMITTED: &str = "committed";
const VOTE: &str = "vote";
const LOG_ID: &str = "log id";
/// The committed log id's file in the entries' directory.
const COMMITTED_FILE: &str = "committed";

/// The redb file holds three small values (and, before they are moved out, the
/// entries of an earlier version).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// How many of the latest appended entries stay in memory: openraft reads an
/// entry back right after appending it (to apply it, and to replicate it), and a
/// read from memory saves a blocking-pool hop and a decode on every write.
const RECENT_ENTRIES: usize = 64;

/// The latest appended entries, by index (contiguous).
type Recent = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// The redb-backed Raft log. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<RedbFile>,
    wal: Arc<Mutex<Wal>>,
    wal_dir: Arc<PathBuf>,
    /// The committed log id (written by earlier versions to the redb file).
    committed: Arc<MarkWriter>,
    recent: Recent,
    gate: Arc<Gate>,
    /// Where a leader's lone write goes before it is synced (see [`crate::early`]);
    /// set once the node's Raft runs.
    early: Arc<OnceLock<EarlySend>>,
    /// Held by Raft's copies and dropped with the last of them;
    /// [`crate::Node::shutdown`] waits for that to know Raft let go of the file.
    _alive: Option<mpsc::Sender<()>>,
}

impl LogStore {
    /// Opens (or creates) the log: its redb file at `path`, its entries in
    /// `wal_dir`. `alive` is held until the last clone drops.
    pub(crate) fn open(
        path: &Path,
        wal_dir: &Path,
        alive: mpsc::Sender<()>,
        gate: Arc<Gate>,
    ) -> Result<LogStore, ClusterError> {
        // Full repair, not quick: see the module docs.
        let db = RedbFile::open(path, CACHE_BYTES, Recovery::FullRepair)?;
        let txn = db.begin_write(Durability::Immediate)?;
        txn.open_table(LOG)?;
        txn.open_table(LOG_META)?;
        txn.commit()?;
        let purged: Option<LogIdV1> = LogStore::read_meta(&db, META_PURGED, LOG_ID)?;
        let purged = purged.map(|p| LogId::from(p).index);
        let io = |source| ClusterError::Io {
            path: wal_dir.to_path_buf(),
            source,
        };
        let former: Vec<(u64, Vec<u8>)> = {
            let txn = db.begin_read()?;
            let log = txn.open_table(LOG)?;
            let rows = log.iter()?;
            rows.map(|row| {
                let (k, v) = row?;
                Ok((k.value(), v.value().to_vec()))
            })
            .collect::<Result<_, redb::StorageError>>()?
        };
        let wal = if former.is_empty() {
            Wal::open(wal_dir, purged).map_err(io)?
        } else {
            Wal::remove_dir(wal_dir).map_err(io)?;
            let mut wal = Wal::open(wal_dir, purged).map_err(io)?;
            wal.append(&former).map_err(io)?;
            let txn = db.begin_write(Durability::Immediate)?;
            txn.open_table(LOG)?.retain(|_, _| false)?;
            txn.commit()?;
            info!(
                entries = former.len(),
                "raft log entries moved from the redb file into segment files"
            );
            wal
        };
        let committed = Mark::open(wal_dir, COMMITTED_FILE)
            .and_then(|mark| MarkWriter::new(mark, COMMITTED_FILE))
            .map_err(io)?;
        Ok(LogStore {
            db: Arc::new(db),
            wal: Arc::new(Mutex::new(wal)),
            wal_dir: Arc::new(wal_dir.to_path_buf()),
            committed: Arc::new(committed),
            recent: Recent::default(),
            gate,
            early: Arc::default(),
            _alive: Some(alive),
        })
    }

    /// A handle for the node's own reads, which does not count as Raft holding the file.
    pub(crate) fn detached(&self) -> LogStore {
        LogStore {
            db: self.db.clone(),
            wal: self.wal.clone(),
            wal_dir: self.wal_dir.clone(),
            committed: self.committed.clone(),
            recent: self.recent.clone(),
            gate: self.gate.clone(),
            early: self.early.clone(),
            _alive: None,
        }
    }

    /// From now on a leader's lone write is sent to the followers while it is
    /// being synced (see [`crate::early`]).
    pub(crate) fn send_early_with(&self, early: EarlySend) {
        let _ = self.early.set(early);
    }

    /// The early sender's counts, once it is set.
    #[cfg(test)]
    pub(crate) fn early_counts(&self) -> Option<&crate::early::Counts> {
        self.early.get().map(EarlySend::counts)
    }

    /// Hands `entries` (about to be appended) to the early sender, when there is
    /// one and the log id before them is known; true when they went.
    fn send_early(&self, entries: &[Entry]) -> bool {
        let (Some(early), Some(first)) = (self.early.get(), entries.first()) else {
            return false;
        };
        match self.prev_of(first.log_id.index) {
            Some(prev) => early.send(prev, entries),
            None => false,
        }
    }

    /// The log id of the entry before `index`, when it is known without a read:
    /// `Some(None)` before the first entry of the log, `None` when unknown.
    fn prev_of(&self, index: u64) -> Option<Option<LogId>> {
        let Some(prev) = index.checked_sub(1) else {
            return Some(None);
        };
        self.recent().get(&prev).map(|e| Some(e.log_id))
    }

    fn recent(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `[start, end)` from memory when every entry of it is there.
    fn recent_range(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        if start >= end {
            return Some(Vec::new());
        }
        let recent = self.recent();
        let first = *recent.keys().next()?;
        let last = *recent.keys().next_back()?;
        (first <= start && end <= last + 1)
            .then(|| recent.range(start..end).map(|(_, e)| e.clone()).collect())
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: FnOnce(&RedbFile) -> Result<T, ClusterError> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await?
    }

    /// Runs `f` on the entry files: in place when `light`, on the blocking pool
    /// otherwise.
    async fn on_wal<T, F>(&self, light: bool, f: F) -> Result<T, ClusterError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Wal) -> std::io::Result<T> + Send + 'static,
    {
        let (wal, dir) = (self.wal.clone(), self.wal_dir.clone());
        let run = move || {
            // Nothing panics while holding it; the files are consistent regardless.
            let mut wal = wal.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut wal).map_err(|source| ClusterError::Io {
                path: dir.to_path_buf(),
                source,
            })
        };
        if light {
            run()
        } else {
            tokio::task::spawn_blocking(run).await?
        }
    }

    fn read_meta<T: for<'de> serde::Deserialize<'de>>(
        db: &RedbFile,
        key: &'static str,
        what: &'static str,
    ) -> Result<Option<T>, ClusterError> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(LOG_META)?;
        let value = meta
            .get(key)?
            .map(|v| decode(what, v.value()))
            .transpose()?;
        Ok(value)
    }

    async fn write_meta(
        &self,
        key: &'static str,
        bytes: Vec<u8>,
        durability: Durability,
    ) -> Result<(), ClusterError> {
        self.blocking(move |db| put_meta(db, key, &bytes, durability))
            .await
    }

    /// Index of the first entry still in the log (`None` when the log is empty).
    pub async fn first_index(&self) -> Result<Option<u64>, ClusterError> {
        self.on_wal(true, |wal| Ok(wal.first_index())).await
    }
}

/// Stores `bytes` under `key` in the log's metadata table, in one transaction.
fn put_meta(
    db: &RedbFile,
    key: &str,
    bytes: &[u8],
    durability: Durability,
) -> Result<(), ClusterError> {
    let txn = db.begin_write(durability)?;
    txn.open_table(LOG_META)?.insert(key, bytes)?;
    txn.commit()?;
    Ok(())
}

fn read_err(e: impl Into<ClusterError>) -> StorageError {
    let e = e.into();
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: impl Into<ClusterError>) -> StorageError {
    let e = e.into();
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn owned_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(i) => Bound::Included(*i),
        Bound::Excluded(i) => Bound::Excluded(*i),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The indexes `[from, to)` a range's bounds cover (an unbounded end is
/// `u64::MAX`, and so is one past it).
fn half_open(start: Bound<u64>, end: Bound<u64>) -> (u64, u64) {
    let from = match start {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match end {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

#[cfg(test)]
fn is_empty(start: Bound<u64>, end: Bound<u64>) -> bool {
    let (from, to) = half_open(start, end);
    from >= to
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (from, to) = half_open(
            owned_bound(range.start_bound()),
            owned_bound(range.end_bound()),
        );
        // An empty range (openraft may ask for one) is answered here too.
        if let Some(entries) = self.recent_range(from, to) {
            return Ok(entries);
        }
        let payloads = self
            .on_wal(false, move |wal| wal.read(from, to))
            .await
            .map_err(read_err)?;
        payloads
            .iter()
            .map(|p| decode_entry(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(read_err)
    }

    /// What replication sends as the entries right after the one before
    /// `start`. A read whose start was purged meanwhile (seen from a replication
    /// task of a leader that had just been outvoted) comes back clipped to the
    /// first entry left, which the follower would take as following that earlier
    /// entry: it goes as nothing instead, which openraft sends as a heartbeat;
    /// openraft's own choice of what to send never starts in the purged part, and
    /// sends a snapshot instead.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let entries = self.try_get_log_entries(start..end).await?;
        Ok(beginning_at(start, entries))
    }
}

/// `entries` when they begin at `start` (or are none), nothing otherwise.
fn beginning_at(start: u64, entries: Vec<Entry>) -> Vec<Entry> {
    match entries.first() {
        Some(first) if first.log_id.index != start => {
            warn!(
                start,
                first = first.log_id.index,
                "raft log read for replication starts past the entries asked for \
                 (purged meanwhile); sending none"
            );
            Vec::new()
        }
        _ => entries,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId> = self
            .blocking(|db| {
                let purged: Option<LogIdV1> = LogStore::read_meta(db, META_PURGED, LOG_ID)?;
                Ok(purged.map(Into::into))
            })
            .await
            .map_err(read_err)?;
        let last = self
            .on_wal(false, |wal| match wal.last_index() {
                Some(last) => wal.read(last, last + 1).map(|mut p| p.pop()),
                None => Ok(None),
            })
            .await
            .map_err(read_err)?;
        let last = match last {
            Some(payload) => Some(decode_entry(&payload).map_err(read_err)?.log_id),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(VOTE, &VoteV1::from(vote))
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)))?;
        // A vote must be on disk before it is answered: fsync.
        self.write_meta(META_VOTE, bytes, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.blocking(|db| {
            let vote: Option<VoteV1> = LogStore::read_meta(db, META_VOTE, VOTE)?;
            Ok(vote.map(Into::into))
        })
        .await
        .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let bytes = encode(LOG_ID, &LogIdV1::from(&committed)).map_err(write_err)?;
        // No fsync, and written by a thread of its own (see `MarkWriter`): a
        // committed id that is lost or older only means a restart re-applies less
        // at once. It was a redb commit in place, 3-4 % of a busy node's CPU.
        self.committed.set(bytes);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let mark = self.committed.clone();
        let failed = {
            let path = self.wal_dir.join(COMMITTED_FILE);
            move |source| ClusterError::Io { path, source }
        };
        self.blocking(move |db| {
            let committed: Option<LogIdV1> = match mark.read() {
                Ok(Some(bytes)) => Some(decode(LOG_ID, &bytes)?),
                // Written by an earlier version, or none (a torn mark reads as
                // none: an older id is always safe to start from).
                Ok(None) => LogStore::read_meta(db, META_COMMITTED, LOG_ID)?,
                Err(source) => return Err(failed(source)),
            };
            Ok(committed.map(Into::into))
        })
        .await
        .map_err(read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let light = is_light(&entries) && self.gate.is_quiet();
        // A lone write of a leader goes to the followers now (see `crate::early`).
        // The sending tasks were spawned on this worker thread: yielding once lets
        // them put the copies on the wire before the sync below holds the thread.
        if light && self.send_early(&entries) {
            tokio::task::yield_now().await;
        }
        let encoded = entries
            .iter()
            .map(|e| Ok((e.log_id.index, encode_entry(e)?)))
            .collect::<Result<Vec<_>, ClusterError>>();
        let result = match encoded {
            Ok(encoded) => {
                let bytes = encoded.iter().map(|(_, e)| e.len()).sum();
                let in_place = light || appends_in_place(&entries, bytes);
                self.on_wal(in_place, move |wal| {
                    wal.append(&encoded)?;
                    if let (Some(first), Some(last)) = (encoded.first(), encoded.last()) {
                        debug!(first = first.0, last = last.0, "log entries appended");
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                {
                    let mut recent = self.recent();
                    for e in entries {
                        // Keep the map contiguous: an append that does not follow
                        // on (after a truncate elsewhere) starts it afresh.
                        let follows = recent
                            .keys()
                            .next_back()
                            .is_none_or(|last| last.checked_add(1) == Some(e.log_id.index));
                        if !follows {
                            recent.clear();
                        }
                        recent.insert(e.log_id.index, e);
                    }
                    while recent.len() > RECENT_ENTRIES {
                        recent.pop_first();
                    }
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(rota_core::error::chain(&e))));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = log_id.index;
        self.recent().retain(|index, _| *index < from);
        self.on_wal(false, move |wal| {
            wal.truncate(from)?;
            debug!(from, "log truncated");
            Ok(())
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let upto = log_id.index;
        self.recent().retain(|index, _| *index > upto);
        let bytes = encode(LOG_ID, &LogIdV1::from(&log_id)).map_err(write_err)?;
        // The purged id is on disk before any entry goes: the log state never
        // claims entries that are gone (opening skips entries it calls purged).
        self.write_meta(META_PURGED, bytes, Durability::Immediate)
            .await
            .map_err(write_err)?;
        self.on_wal(false, move |wal| {
            wal.purge(upto)?;
            debug!(upto, "log purged");
            Ok(())
        })
        .await
        .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_inverted_ranges_are_recognised() {
        use Bound::*;
        assert!(is_empty(Included(5), Excluded(5)));
        assert!(is_empty(Included(6), Included(5)));
        assert!(is_empty(Excluded(5), Included(5)));
        assert!(is_empty(Excluded(u64::MAX), Unbounded));
        assert!(!is_empty(Included(5), Included(5)));
        assert!(!is_empty(Unbounded, Excluded(1)));
        assert!(!is_empty(Excluded(4), Excluded(6)));
    }

    #[test]
    fn replication_gets_entries_only_when_they_begin_where_asked() {
        let entry = |index| Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Blank,
        };
        let kept = beginning_at(6, vec![entry(6), entry(7)]);
        assert_eq!(
            kept.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            [6, 7]
        );
        // Entries 3 to 5 were purged after replication chose to send them.
        assert!(beginning_at(3, vec![entry(6), entry(7)]).is_empty());
        assert!(beginning_at(3, Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn the_committed_id_survives_a_restart_and_one_of_an_earlier_version_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            let (alive, _released) = mpsc::channel(1);
            LogStore::open(
                &dir.path().join("log.redb"),
                &dir.path().join("log"),
                alive,
                Gate::new(),
            )
            .unwrap()
        };
        let id = |index| LogId::new(openraft::CommittedLeaderId::new(2, 1), index);
        let mut log = open();
        assert_eq!(log.read_committed().await.unwrap(), None);
        // Where an earlier version kept it.
        let bytes = encode(LOG_ID, &LogIdV1::from(&id(7))).unwrap();
        put_meta(&log.db, META_COMMITTED, &bytes, Durability::Immediate).unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(id(7)));
        log.save_committed(Some(id(9))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(id(9)));
        drop(log);
        let mut log = open();
        assert_eq!(log.read_committed().await.unwrap(), Some(id(9)));
    }

    #[tokio::test]
    async fn reading_an_inverted_range_answers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (alive, _released) = mpsc::channel(1);
        let mut log = LogStore::open(
            &dir.path().join("log.redb"),
            &dir.path().join("log"),
            alive,
            Gate::new(),
        )
        .unwrap();
        #[allow(clippy::reversed_empty_ranges)]
        let entries = log.try_get_log_entries(5..3).await.unwrap();
        assert!(entries.is_empty());
    }
}
