//! The replicated state machine.
//!
//! [`Store`] keeps jobs, executions, outputs, the KV space and client sessions in redb
//! tables, applies committed [`rota_core::ClientRequest`]s deterministically, builds
//! and installs snapshots, and publishes every change as a [`rota_core::StoreEvent`]
//! whose revision is the log index that made it. It knows nothing of openraft: the
//! cluster crate hands it entries ([`LogEntry`]) and an opaque metadata blob (last
//! applied log id, membership) to keep in the same transaction.
//!
//! Durability: the Raft log is the durable record (fsynced before a write is
//! acknowledged), so applying commits without fsync; a restart re-applies the log
//! after the persisted `applied` index. Before the log may be purged, the state
//! that covers the purge point must be on disk: [`Store::export_snapshot`] makes a
//! durable commit and exports exactly that state.

use std::io::{Read, Write};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, WriteTransaction};
use rota_core::{
    ClientRequest, EventKind, ExecStatus, Execution, JobRecord, KvEntry, NodeRecord, Response,
    StoreEvent,
};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};
use ulid::Ulid;

mod apply;
pub use apply::Member;
pub mod codec;
mod error;
mod events;
mod notify;
mod snapshot;
mod tables;
mod targets;
#[cfg(test)]
mod test_support;
mod workflows;

pub use error::StoreError;
pub use events::{
    EventPage, EventRetention, DEFAULT_RETENTION as DEFAULT_EVENT_RETENTION, RETENTION_AGE,
};
pub use notify::{DeliveryFilter, DELIVERY_RETENTION};
pub use snapshot::SnapshotHeader;

use codec::{decode, job_exec_key, job_range, JOB_EXEC_SUFFIX};
use tables::{Tables, EXECUTION, JOB, KV_ENTRY, OUTPUT};

/// Page cache of the state file. redb's default (1 GiB) would be most of the memory
/// budget of a node holding a million jobs.
const CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Capacity of the event channel; a subscriber further behind gets `Lagged`.
const EVENT_CAPACITY: usize = 65_536;
/// A durable commit is made whenever the applied index crosses a multiple of this,
/// which bounds both the work a restart re-applies and redb's backlog of pages
/// held for non-durable commits.
const DURABLE_EVERY: u64 = 4096;

/// What a redb file does to come back after a crash; chosen once per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every commit also persists the allocator state (a two-phase commit: two
    /// fsyncs per durable commit), so the file reopens at once after a crash.
    QuickRepair,
    /// One fsync per durable commit; after a crash, reopening repairs by scanning
    /// the whole file (cheap only for a file that stays small).
    FullRepair,
}

/// A redb file opened the way rota opens every file: a bounded page cache and one
/// [`Recovery`] choice for all its write transactions. Derefs to the database for
/// reads.
#[derive(Debug)]
pub struct RedbFile {
    db: Database,
    recovery: Recovery,
}

impl RedbFile {
    /// Opens (or creates) the file at `path` with a page cache of `cache_bytes`.
    pub fn open(
        path: &Path,
        cache_bytes: usize,
        recovery: Recovery,
    ) -> Result<RedbFile, redb::DatabaseError> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        Ok(RedbFile { db, recovery })
    }

    /// A write transaction committed with `durability` (`Immediate` fsyncs).
    pub fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        txn.set_quick_repair(self.recovery == Recovery::QuickRepair);
        Ok(txn)
    }
}

impl std::ops::Deref for RedbFile {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

/// One committed log entry handed to [`Store::apply`]: its index and, for entries
/// that carry one, the client request (`None` for Raft's blank and membership entries).
#[derive(Debug, Clone, Copy)]
pub struct LogEntry<'a> {
    pub index: u64,
    pub request: Option<&'a ClientRequest>,
    /// For a membership entry: every member (voters and learners) by id, with its
    /// address and whether it votes. Members that appear or go are published as
    /// `member.joined` / `member.left`.
    pub members: Option<&'a std::collections::BTreeMap<u64, apply::Member>>,
}

/// The state machine over its redb file.
pub struct Store {
    db: RedbFile,
    events: broadcast::Sender<Arc<StoreEvent>>,
    /// The same changes without the KV ones ([`Store::subscribe_without_kv`]).
    without_kv: broadcast::Sender<Arc<StoreEvent>>,
    applied: AtomicU64,
    /// How many public events the log keeps at least (`watch.retention`); it
    /// changes what apply deletes, so every replica must use the same.
    event_retention: EventRetention,
    /// Serialises write transactions with the durable commit that precedes a
    /// snapshot export, so the exported state is exactly the durable one.
    writer: Mutex<()>,
    /// Whether the tokens table was seen empty since its last change: twice the
    /// number of changes, plus one once a read found it empty. Every request
    /// asks ([`Store::auth_lookup`]); a server without tokens then answers it
    /// without a read transaction.
    tokens_empty: AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("applied", &self.last_applied_index())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the state file, keeping the default number of events.
    pub fn open(path: &Path) -> Result<Arc<Store>, StoreError> {
        Store::open_with(path, EventRetention::default())
    }

    /// Opens (or creates) the state file; the event log keeps at least
    /// what `event_retention` says.
    pub fn open_with(
        path: &Path,
        event_retention: EventRetention,
    ) -> Result<Arc<Store>, StoreError> {
        let db = RedbFile::open(path, CACHE_BYTES, Recovery::QuickRepair)?;
        let txn = db.begin_write(Durability::Immediate)?;
        Tables::create_all(&txn)?;
        let applied = {
            let mut t = Tables::open(&txn);
            let format = t
                .meta
                .r()?
                .get(tables::META_FORMAT)?
                .map(|v| v.value().to_vec());
            match format {
                None => {
                    t.meta.w()?.insert(
                        tables::META_FORMAT,
                        tables::FORMAT_VERSION.to_be_bytes().as_slice(),
                    )?;
                }
                Some(bytes) => {
                    let found = <[u8; 4]>::try_from(bytes.as_slice())
                        .map(u32::from_be_bytes)
                        .unwrap_or(u32::MAX);
                    if found != tables::FORMAT_VERSION {
                        return Err(StoreError::FormatVersion {
                            path: path.to_path_buf(),
                            found,
                            expected: tables::FORMAT_VERSION,
                        });
                    }
                }
            }
            read_applied(&t)?
        };
        txn.commit()?;
        info!(path = %path.display(), applied, "state store opened");
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (without_kv, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Arc::new(Store {
            db,
            events,
            without_kv,
            tokens_empty: AtomicU64::new(0),
            applied: AtomicU64::new(applied),
            event_retention,
            writer: Mutex::new(()),
        }))
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guard protects no data, so a panic elsewhere leaves nothing inconsistent.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin_write(&self, durability: Durability) -> Result<WriteTransaction, StoreError> {
        Ok(self.db.begin_write(durability)?)
    }

    /// Applies a batch of committed entries in one transaction, stores `meta` (the
    /// cluster layer's record of the last applied log id and membership) with them,
    /// and then publishes their events. Answers one [`Response`] per entry
    /// (`Response::Ok` for entries without a request).
    pub fn apply(
        &self,
        entries: &[LogEntry<'_>],
        meta: &[u8],
    ) -> Result<Vec<Response>, StoreError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(Vec::new());
        };
        let _writer = self.lock_writer();
        let before = self.applied.load(Ordering::Acquire);
        let durability = if last / DURABLE_EVERY != before / DURABLE_EVERY {
            Durability::Immediate
        } else {
            Durability::None
        };
        let txn = self.begin_write(durability)?;
        let mut events = Vec::new();
        let mut responses = Vec::with_capacity(entries.len());
        let tokens_changed;
        {
            let mut t = Tables::open(&txn);
            let mut clock = None;
            for entry in entries {
                let response = match entry.request {
                    Some(req) => {
                        clock = Some(req.at);
                        apply::apply_request(
                            &mut t,
                            entry.index,
                            req,
                            &mut events,
                            self.event_retention,
                        )?
                    }
                    None => Response::Ok,
                };
                if let Some(members) = entry.members {
                    apply::apply_membership(&mut t, entry.index, members, &mut events)?;
                }
                responses.push(response);
            }
            tokens_changed = t.tokens.written();
            if let Some(at) = clock {
                apply::set_clock(&mut t, at)?;
            }
            t.meta
                .w()?
                .insert(tables::META_APPLIED, last.to_be_bytes().as_slice())?;
            t.meta.w()?.insert(tables::META_RAFT, meta)?;
        }
        txn.commit()?;
        if tokens_changed {
            self.tokens_changed();
        }
        self.applied.store(last, Ordering::Release);
        debug!(
            first = entries[0].index,
            last,
            events = events.len(),
            "entries applied"
        );
        for event in events {
            self.announce(event);
        }
        Ok(responses)
    }

    /// The cluster layer's metadata stored by the last [`Store::apply`] or snapshot
    /// install, `None` on a fresh store.
    pub fn raft_meta(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(tables::META)?;
        let value = meta.get(tables::META_RAFT)?.map(|v| v.value().to_vec());
        Ok(value)
    }

    /// Forgets that the tokens table was seen empty (after a commit that wrote it).
    fn tokens_changed(&self) {
        let _ = self
            .tokens_empty
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| Some((v | 1) + 1));
    }

    /// Makes everything applied so far durable (one fsync).
    pub fn flush(&self) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        self.flush_locked()
    }

    fn flush_locked(&self) -> Result<(), StoreError> {
        let txn = self.begin_write(Durability::Immediate)?;
        {
            // A durable commit with no change would still persist the earlier
            // non-durable ones; writing the applied index again keeps it explicit.
            let mut t = Tables::open(&txn);
            let applied = read_applied(&t)?;
            t.meta
                .w()?
                .insert(tables::META_APPLIED, applied.to_be_bytes().as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Makes the current state durable, then streams exactly that state to `w` (see
    /// the format in the `snapshot` module). Applying continues meanwhile: the
    /// export reads one consistent version.
    pub fn export_snapshot(&self, w: &mut dyn Write) -> Result<SnapshotHeader, StoreError> {
        let txn = {
            let _writer = self.lock_writer();
            self.flush_locked()?;
            self.db.begin_read()?
        };
        let header = {
            let meta = txn.open_table(tables::META)?;
            let applied = meta
                .get(tables::META_APPLIED)?
                .and_then(|v| tables::read_u64(v.value()))
                .unwrap_or(0);
            let raft = meta
                .get(tables::META_RAFT)?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            SnapshotHeader {
                applied_index: applied,
                meta: raft,
            }
        };
        snapshot::export(&txn, &header, w)?;
        info!(applied = header.applied_index, "snapshot exported");
        Ok(header)
    }

    /// Reads only the header of a snapshot stream written by [`Store::export_snapshot`].
    pub fn read_snapshot_header(r: &mut dyn Read) -> Result<SnapshotHeader, StoreError> {
        snapshot::read_header(&mut std::io::BufReader::new(r))
    }

    /// Replaces the whole state with a snapshot stream in one durable transaction,
    /// then publishes [`EventKind::Reset`]. On error nothing is replaced.
    pub fn import_snapshot(&self, r: &mut dyn Read) -> Result<SnapshotHeader, StoreError> {
        let header = {
            let _writer = self.lock_writer();
            let txn = self.begin_write(Durability::Immediate)?;
            let header = snapshot::import(&txn, r)?;
            txn.commit()?;
            self.tokens_changed();
            self.applied.store(header.applied_index, Ordering::Release);
            header
        };
        info!(applied = header.applied_index, "snapshot installed");
        self.announce(StoreEvent {
            revision: header.applied_index,
            kind: EventKind::Reset,
        });
        Ok(header)
    }

    pub fn get_job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let jobs = txn.open_table(tables::JOBS)?;
        let job = jobs
            .get(name)?
            .map(|v| decode(JOB, v.value()))
            .transpose()?;
        Ok(job)
    }

    /// All jobs, by name.
    pub fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let mut out = Vec::new();
        self.for_each_job(&mut |job| out.push(job))?;
        Ok(out)
    }

    /// Visits every job without holding them all in memory.
    pub fn for_each_job(&self, f: &mut dyn FnMut(JobRecord)) -> Result<(), StoreError> {
        strict(|skipped| self.for_each_job_skipping(f, skipped))
    }

    /// Visits every job; a record that does not decode (damaged, or written by a
    /// newer release during a rolling upgrade) goes to `skipped` with its key, and
    /// the walk goes on. A scheduler loading its jobs then schedules every other
    /// job instead of none.
    pub fn for_each_job_skipping(
        &self,
        f: &mut dyn FnMut(JobRecord),
        skipped: &mut dyn FnMut(String, StoreError),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let jobs = txn.open_table(tables::JOBS)?;
        for row in jobs.iter()? {
            let (k, v) = row?;
            match decode(JOB, v.value()) {
                Ok(job) => f(job),
                Err(err) => skipped(k.value().to_string(), err),
            }
        }
        Ok(())
    }

    /// Jobs by name from the first one after `after` (or from the start) whose
    /// name starts with `prefix`, while `f` answers `true`: a page of a listing
    /// reads only its own rows, not the whole table.
    pub fn for_each_job_from(
        &self,
        after: Option<&str>,
        prefix: &str,
        f: &mut dyn FnMut(JobRecord) -> bool,
    ) -> Result<(), StoreError> {
        use std::ops::Bound;
        let txn = self.db.begin_read()?;
        let jobs = txn.open_table(tables::JOBS)?;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        for row in jobs.range::<&str>((start, Bound::Unbounded))? {
            let (k, v) = row?;
            if !k.value().starts_with(prefix) {
                break;
            }
            if !f(decode(JOB, v.value())?) {
                break;
            }
        }
        Ok(())
    }

    pub fn get_execution(&self, id: Ulid) -> Result<Option<Execution>, StoreError> {
        let txn = self.db.begin_read()?;
        let execs = txn.open_table(tables::EXECUTIONS)?;
        let exec = execs
            .get(id.0)?
            .map(|v| decode(EXECUTION, v.value()))
            .transpose()?;
        Ok(exec)
    }

    /// A job's executions, newest first, at most `limit`, older than `before` when given.
    pub fn list_executions(
        &self,
        job: &str,
        limit: usize,
        before: Option<Ulid>,
    ) -> Result<Vec<Execution>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(tables::JOB_EXECS)?;
        let execs = txn.open_table(tables::EXECUTIONS)?;
        let (start, end) = job_range(job, JOB_EXEC_SUFFIX);
        let before_key = before.map(|id| job_exec_key(job, id));
        let upper = match &before_key {
            Some(key) => Bound::Excluded(key.as_slice()),
            None => Bound::Included(end.as_slice()),
        };
        let mut out = Vec::new();
        for row in index
            .range::<&[u8]>((Bound::Included(start.as_slice()), upper))?
            .rev()
        {
            if out.len() >= limit {
                break;
            }
            let (key, _) = row?;
            let (_, id) = codec::split_job_exec_key(key.value())?;
            match execs.get(id.0)? {
                Some(v) => out.push(decode(EXECUTION, v.value())?),
                None => warn!(job, execution = %id, "history index names a missing execution"),
            }
        }
        Ok(out)
    }

    /// Executions that are `queued` or `running`, oldest first.
    pub fn active_executions(&self) -> Result<Vec<Execution>, StoreError> {
        strict(|skipped| self.active_executions_skipping(skipped))
    }

    /// [`Store::active_executions`], handing a record that does not decode to
    /// `skipped` (with its id) instead of failing.
    pub fn active_executions_skipping(
        &self,
        skipped: &mut dyn FnMut(String, StoreError),
    ) -> Result<Vec<Execution>, StoreError> {
        let txn = self.db.begin_read()?;
        let active = txn.open_table(tables::ACTIVE)?;
        let execs = txn.open_table(tables::EXECUTIONS)?;
        let mut out = Vec::new();
        for row in active.iter()? {
            let (id, _) = row?;
            match execs.get(id.value())? {
                Some(v) => match decode(EXECUTION, v.value()) {
                    Ok(exec) => out.push(exec),
                    Err(err) => skipped(Ulid(id.value()).to_string(), err),
                },
                None => {
                    warn!(execution = %Ulid(id.value()), "active index names a missing execution")
                }
            }
        }
        Ok(out)
    }

    /// A page of the `queued` or `running` executions, oldest first (by id):
    /// those after `after` whose status is `status` (any active one when `None`),
    /// at most `limit`, and the cursor of the next page when there is one.
    pub fn active_executions_page(
        &self,
        status: Option<ExecStatus>,
        limit: usize,
        after: Option<Ulid>,
    ) -> Result<(Vec<Execution>, Option<Ulid>), StoreError> {
        let txn = self.db.begin_read()?;
        let active = txn.open_table(tables::ACTIVE)?;
        let execs = txn.open_table(tables::EXECUTIONS)?;
        let lower = match after {
            Some(id) => Bound::Excluded(id.0),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for row in active.range::<u128>((lower, Bound::Unbounded))? {
            let (id, _) = row?;
            let Some(v) = execs.get(id.value())? else {
                warn!(execution = %Ulid(id.value()), "active index names a missing execution");
                continue;
            };
            let exec: Execution = decode(EXECUTION, v.value())?;
            if status.is_some_and(|want| exec.status != want) {
                continue;
            }
            if out.len() == limit {
                // One more matches: the page ends at the last one taken.
                let next = out.last().map(|e: &Execution| e.id);
                return Ok((out, next));
            }
            out.push(exec);
        }
        Ok((out, None))
    }

    /// Every registered worker node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        strict(|skipped| self.nodes_skipping(skipped))
    }

    /// [`Store::nodes`], handing a record that does not decode to `skipped` (with
    /// the node's name) instead of failing.
    pub fn nodes_skipping(
        &self,
        skipped: &mut dyn FnMut(String, StoreError),
    ) -> Result<Vec<NodeRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let nodes = txn.open_table(tables::NODES)?;
        let mut out = Vec::new();
        for row in nodes.iter()? {
            let (k, v) = row?;
            match decode(tables::NODE, v.value()) {
                Ok(node) => out.push(node),
                Err(err) => skipped(k.value().to_string(), err),
            }
        }
        Ok(out)
    }

    /// Output kept for a finished attempt.
    pub fn get_output(&self, id: Ulid) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let outputs = txn.open_table(tables::OUTPUTS)?;
        let output = outputs
            .get(id.0)?
            .map(|v| decode(OUTPUT, v.value()))
            .transpose()?;
        Ok(output)
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let kv = txn.open_table(tables::KV)?;
        let entry = kv
            .get(key)?
            .map(|v| decode(KV_ENTRY, v.value()))
            .transpose()?;
        Ok(entry)
    }

    /// Keys starting with `prefix`, in key order.
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<KvEntry>, StoreError> {
        self.kv_page(prefix, None, usize::MAX)
    }

    /// At most `limit` entries whose keys start with `prefix`, in key order, from
    /// the first key after `after` (or from the start): one page reads its rows only.
    pub fn kv_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KvEntry>, StoreError> {
        use std::ops::Bound;
        let txn = self.db.begin_read()?;
        let kv = txn.open_table(tables::KV)?;
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for row in kv.range::<&str>((start, Bound::Unbounded))? {
            let (key, v) = row?;
            if out.len() == limit || !key.value().starts_with(prefix) {
                break;
            }
            out.push(decode(KV_ENTRY, v.value())?);
        }
        Ok(out)
    }

    /// The scheduler epoch: the highest term a `ClaimScheduler` named (0 before any).
    pub fn scheduler_epoch(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(tables::META)?;
        let epoch = meta
            .get(tables::META_SCHEDULER_EPOCH)?
            .and_then(|v| tables::read_u64(v.value()))
            .unwrap_or(0);
        Ok(epoch)
    }

    /// Public events after revision `after` that `filter` keeps, looking at about
    /// `limit` events of the log (whole revisions), oldest first; the page says up
    /// to which revision it looked. Events at or below [`Store::compact_revision`]
    /// are gone.
    pub fn events_after(
        &self,
        after: u64,
        filter: &dyn Fn(&rota_core::event::Event) -> bool,
        limit: usize,
    ) -> Result<EventPage, StoreError> {
        let txn = self.db.begin_read()?;
        events::read_after(&txn, after, filter, limit)
    }

    /// The highest revision whose events the retention sweep dropped (0 when none):
    /// a reader can be served every event after any revision at or above it.
    pub fn compact_revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        events::compact_revision(&txn)
    }

    /// Log index of the last applied entry (0 before any).
    pub fn last_applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Changes from now on. A receiver that lags gets `RecvError::Lagged` and must
    /// reload what it follows from the tables.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.events.subscribe()
    }

    /// Like [`Store::subscribe`], without the changes of KV keys (`KvPut`,
    /// `KvDeleted` and their `kv.put`/`kv.deleted` public events): for the workers that never look
    /// at keys, which a stream of KV writes would otherwise wake for nothing.
    pub fn subscribe_without_kv(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        self.without_kv.subscribe()
    }

    /// Hands a change to its subscribers. No subscriber is not an error: nobody is
    /// watching yet.
    fn announce(&self, event: StoreEvent) {
        let event = Arc::new(event);
        if !is_kv_change(&event.kind) {
            let _ = self.without_kv.send(event.clone());
        }
        let _ = self.events.send(event);
    }
}

/// A change of a KV key, or its public event.
fn is_kv_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::KvPut(_) | EventKind::KvDeleted { .. } => true,
        EventKind::Published(e) => matches!(
            e.event_type.as_str(),
            rota_core::event::types::KV_PUT | rota_core::event::types::KV_DELETED
        ),
        _ => false,
    }
}

fn read_applied(t: &Tables<'_>) -> Result<u64, StoreError> {
    Ok(t.meta
        .r()?
        .get(tables::META_APPLIED)?
        .and_then(|v| tables::read_u64(v.value()))
        .unwrap_or(0))
}

/// Runs a walk that hands undecodable records to a callback, failing with the
/// first such record's error instead.
fn strict<T>(
    walk: impl FnOnce(&mut dyn FnMut(String, StoreError)) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut first = None;
    let value = walk(&mut |_, err| {
        first.get_or_insert(err);
    })?;
    match first {
        Some(err) => Err(err),
        None => Ok(value),
    }
}

#[cfg(test)]
mod tests;
