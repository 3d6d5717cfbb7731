//! The adapter that lets openraft drive [`rota_store::Store`], and the snapshot
//! files.
//!
//! Applying hands each batch of committed entries to the store in one transaction
//! together with the Raft metadata (last applied log id, membership), so the two
//! never disagree. Snapshots are files in `<data_dir>/snapshots`: `current.snap`
//! is the latest complete one; others are being built or received under a `.tmp`
//! name and are renamed into place only when complete and fsynced, so a crash
//! never leaves a half-written `current.snap`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError,
    StoredMembership,
};
use rota_core::Response;
use rota_store::{LogEntry, Member, SnapshotHeader, Store};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use rota_store::codec::{decode, encode};

use crate::batcher::Gate;
use crate::types::{
    applies_in_place, is_light, Entry, LogId, RaftMetaV1, SnapshotMeta, StorageError, TypeConfig,
    RAFT_META,
};
use crate::ClusterError;

const CURRENT: &str = "current.snap";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sm_write_err(e: impl Into<ClusterError>) -> StorageError {
    let e = e.into();
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snapshot_read_err(e: impl Into<ClusterError>) -> StorageError {
    let e = e.into();
    StorageIOError::read_snapshot(None, AnyError::new(&e)).into()
}

fn snapshot_write_err(e: impl Into<ClusterError>) -> StorageError {
    let e = e.into();
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

/// Decodes the store's opaque metadata; a store that never applied anything has none.
fn decode_meta(bytes: Option<&[u8]>) -> Result<Option<RaftMetaV1>, ClusterError> {
    match bytes {
        None | Some([]) => Ok(None),
        Some(bytes) => Ok(Some(decode(RAFT_META, bytes)?)),
    }
}

/// openraft's description of a snapshot, derived from the stream's header. The id
/// is a function of the last log id: two snapshots up to the same entry hold the
/// same state.
fn snapshot_meta(header: &SnapshotHeader) -> Result<SnapshotMeta, ClusterError> {
    let meta = decode_meta(Some(&header.meta))?;
    let last_log_id = meta.as_ref().and_then(RaftMetaV1::last_applied);
    let last_membership = meta
        .as_ref()
        .map(RaftMetaV1::stored_membership)
        .unwrap_or_default();
    let snapshot_id = match &last_log_id {
        Some(id) => format!(
            "{}-{}-{}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => "empty".to_string(),
    };
    Ok(SnapshotMeta {
        last_log_id,
        last_membership,
        snapshot_id,
    })
}

/// The snapshot directory, shared by the state machine and its builders.
pub(crate) struct SnapshotDir {
    dir: PathBuf,
    /// Serialises replacing `current.snap`.
    replace: Mutex<()>,
    seq: AtomicU64,
}

impl SnapshotDir {
    /// Opens the directory, removing what a crash left half-written.
    pub fn open(dir: PathBuf) -> Result<Arc<SnapshotDir>, ClusterError> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                match std::fs::remove_file(&path) {
                    Ok(()) => info!(path = %path.display(), "removed an incomplete snapshot"),
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "could not remove an incomplete snapshot")
                    }
                }
            }
        }
        Ok(Arc::new(SnapshotDir {
            dir,
            replace: Mutex::new(()),
            seq: AtomicU64::new(0),
        }))
    }

    fn tmp_path(&self, kind: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{kind}-{n}.tmp"))
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// Makes the complete, fsynced file `tmp` the current snapshot. Unless `force`,
    /// a current snapshot that is further along is kept and `tmp` dropped (a build
    /// that raced with an install from the leader).
    fn promote(&self, tmp: &Path, applied: u64, force: bool) -> Result<(), ClusterError> {
        let _guard = self.replace.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current_path();
        if !force {
            if let Some((meta, _)) = self.open_current()? {
                if meta.last_log_id.is_some_and(|id| id.index > applied) {
                    std::fs::remove_file(tmp).map_err(io_err(tmp))?;
                    return Ok(());
                }
            }
        }
        std::fs::rename(tmp, &current).map_err(io_err(&current))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        Ok(())
    }

    /// The current snapshot, positioned at its start.
    fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, ClusterError> {
        let path = self.current_path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let header = Store::read_snapshot_header(&mut file)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
        Ok(Some((snapshot_meta(&header)?, file)))
    }

    /// Exports the store (which makes its state durable first) into a new current
    /// snapshot.
    fn build(&self, store: &Store) -> Result<(), ClusterError> {
        let tmp = self.tmp_path("build");
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
            let header = store.export_snapshot(&mut file)?;
            file.sync_all().map_err(io_err(&tmp))?;
            self.promote(&tmp, header.applied_index, false)?;
            Ok(header)
        })();
        match result {
            Ok(header) => {
                info!(applied = header.applied_index, "snapshot built");
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Copies a received snapshot to a file of ours, checks it is what the leader
    /// announced, installs it into the store, and makes it current.
    fn install(
        &self,
        store: &Store,
        mut received: File,
        announced: Option<u64>,
    ) -> Result<SnapshotHeader, ClusterError> {
        let tmp = self.tmp_path("install");
        let result = (|| {
            received
                .seek(SeekFrom::Start(0))
                .map_err(io_err(&self.dir))?;
            let mut file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            std::io::copy(&mut received, &mut file).map_err(io_err(&tmp))?;
            file.sync_all().map_err(io_err(&tmp))?;
            file.seek(SeekFrom::Start(0)).map_err(io_err(&tmp))?;
            let header = Store::read_snapshot_header(&mut file)?;
            let found = snapshot_meta(&header)?.last_log_id.map(|id| id.index);
            if found != announced {
                return Err(ClusterError::SnapshotMismatch { announced, found });
            }
            file.seek(SeekFrom::Start(0)).map_err(io_err(&tmp))?;
            let header = store.import_snapshot(&mut file)?;
            self.promote(&tmp, header.applied_index, true)?;
            Ok(header)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// What openraft drives: the store plus the Raft metadata kept with it.
pub(crate) struct StateMachine {
    store: Arc<Store>,
    snapshots: Arc<SnapshotDir>,
    last_applied: Option<LogId>,
    /// The membership as of `last_applied`, written with every apply.
    membership: StoredMembership<u64, BasicNode>,
    /// Files handed out by `begin_receiving_snapshot`, removed once one is installed.
    receiving: Vec<PathBuf>,
    alive: mpsc::Sender<()>,
    /// Whether the node's writes are quiet, for applying a light entry in place.
    gate: Arc<Gate>,
}

impl StateMachine {
    pub fn open(
        store: Arc<Store>,
        snapshots: Arc<SnapshotDir>,
        alive: mpsc::Sender<()>,
        gate: Arc<Gate>,
    ) -> Result<StateMachine, ClusterError> {
        let meta = decode_meta(store.raft_meta()?.as_deref())?;
        Ok(StateMachine {
            store,
            snapshots,
            last_applied: meta.as_ref().and_then(RaftMetaV1::last_applied),
            membership: meta
                .as_ref()
                .map(RaftMetaV1::stored_membership)
                .unwrap_or_default(),
            receiving: Vec::new(),
            alive,
            gate,
        })
    }
}

/// Builds a snapshot off the state machine's task; holds only shared handles.
pub(crate) struct SnapshotBuilder {
    store: Arc<Store>,
    snapshots: Arc<SnapshotDir>,
    _alive: mpsc::Sender<()>,
}

async fn current_snapshot(
    snapshots: Arc<SnapshotDir>,
) -> Result<Option<Snapshot<TypeConfig>>, ClusterError> {
    let current = tokio::task::spawn_blocking(move || snapshots.open_current()).await??;
    Ok(current.map(|(meta, file)| Snapshot {
        meta,
        snapshot: Box::new(tokio::fs::File::from_std(file)),
    }))
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || snapshots.build(&store))
            .await
            .map_err(ClusterError::from)
            .and_then(|r| r)
            .map_err(snapshot_write_err)?;
        match current_snapshot(self.snapshots.clone()).await {
            Ok(Some(snapshot)) => Ok(snapshot),
            Ok(None) => Err(snapshot_read_err(ClusterError::Io {
                path: self.snapshots.current_path(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the snapshot just built is missing",
                ),
            })),
            Err(e) => Err(snapshot_read_err(e)),
        }
    }
}

/// Every member of `m` (voters and learners) with its address.
fn members_of(m: &openraft::Membership<u64, BasicNode>) -> BTreeMap<u64, Member> {
    let voters: std::collections::BTreeSet<u64> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, node)| {
            let member = Member {
                address: node.addr.clone(),
                voter: voters.contains(id),
            };
            (*id, member)
        })
        .collect()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, BasicNode>), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut membership = self.membership.clone();
        for entry in &entries {
            if let EntryPayload::Membership(m) = &entry.payload {
                membership = StoredMembership::new(Some(entry.log_id), m.clone());
            }
        }
        let meta =
            encode(RAFT_META, &RaftMetaV1::new(Some(&last), &membership)).map_err(sm_write_err)?;
        let store = self.store.clone();
        let in_place = (is_light(&entries) && self.gate.is_quiet())
            || (self.gate.is_idle() && applies_in_place(&entries));
        let apply = move || {
            let members: Vec<Option<BTreeMap<u64, Member>>> = entries
                .iter()
                .map(|e| match &e.payload {
                    EntryPayload::Membership(m) => Some(members_of(m)),
                    _ => None,
                })
                .collect();
            let batch: Vec<LogEntry<'_>> = entries
                .iter()
                .zip(&members)
                .map(|(e, members)| LogEntry {
                    index: e.log_id.index,
                    request: match &e.payload {
                        EntryPayload::Normal(req) => Some(req),
                        _ => None,
                    },
                    members: members.as_ref(),
                })
                .collect();
            store.apply(&batch, &meta)
        };
        // A light entry is applied in place while writes are quiet (see `is_light`),
        // and so are a follower's key/value writes (see `applies_in_place`).
        let applied = if in_place {
            apply().map_err(ClusterError::from)
        } else {
            tokio::task::spawn_blocking(apply)
                .await
                .map_err(ClusterError::from)
                .and_then(|r| r.map_err(ClusterError::from))
        };
        let responses = applied.map_err(|e| StorageIOError::apply(last, AnyError::new(&e)))?;
        self.last_applied = Some(last);
        self.membership = membership;
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
            _alive: self.alive.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self.snapshots.tmp_path("receive");
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io_err(&path))
            .map_err(snapshot_write_err)?;
        self.receiving.push(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let mut received = *snapshot;
        // Finishes writes still in flight in tokio's file task.
        received
            .flush()
            .await
            .map_err(io_err(&self.snapshots.dir))
            .map_err(snapshot_write_err)?;
        let received = received.into_std().await;
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        let announced = meta.last_log_id.map(|id| id.index);
        tokio::task::spawn_blocking(move || snapshots.install(&store, received, announced))
            .await
            .map_err(ClusterError::from)
            .and_then(|r| r)
            .map_err(snapshot_write_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        for path in self.receiving.drain(..) {
            if let Err(e) = tokio::fs::remove_file(&path).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), error = %e, "could not remove a received snapshot");
                }
            }
        }
        info!(snapshot = %meta.snapshot_id, "snapshot from the leader installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        current_snapshot(self.snapshots.clone())
            .await
            .map_err(snapshot_read_err)
    }
}
