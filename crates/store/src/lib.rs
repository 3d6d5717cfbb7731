//! The replicated state machine.
//!
//! [`Store`] keeps jobs, executions, outputs, the KV space and client sessions in redb
//! tables, applies committed [`rota_core::ClientRequest`]s deterministically, builds
//! and installs snapshots, and publishes every change as a [`rota_core::StoreEvent`]
//! whose revision is the log index that made it. It knows nothing of openraft: the
//! cluster crate hands it entries and an opaque metadata blob (last applied log id,
//! membership) to keep in the same transaction.

use std::path::Path;
use std::sync::Arc;

use rota_core::{Execution, JobRecord, KvEntry, StoreEvent};
use tokio::sync::broadcast;
use ulid::Ulid;

mod error;
pub use error::StoreError;

/// The state machine over its redb file.
pub struct Store {
    _todo: (),
}

impl Store {
    /// Opens (or creates) the state file.
    pub fn open(path: &Path) -> Result<Arc<Store>, StoreError> {
        let _ = path;
        todo!()
    }

    pub fn get_job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        let _ = name;
        todo!()
    }

    /// All jobs, by name.
    pub fn list_jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        todo!()
    }

    /// Visits every job without holding them all in memory.
    pub fn for_each_job(&self, f: &mut dyn FnMut(JobRecord)) -> Result<(), StoreError> {
        let _ = f;
        todo!()
    }

    pub fn get_execution(&self, id: Ulid) -> Result<Option<Execution>, StoreError> {
        let _ = id;
        todo!()
    }

    /// A job's executions, newest first, at most `limit`, older than `before` when given.
    pub fn list_executions(
        &self,
        job: &str,
        limit: usize,
        before: Option<Ulid>,
    ) -> Result<Vec<Execution>, StoreError> {
        let _ = (job, limit, before);
        todo!()
    }

    /// Executions that are `queued` or `running`, oldest first.
    pub fn active_executions(&self) -> Result<Vec<Execution>, StoreError> {
        todo!()
    }

    /// Output kept for a finished attempt.
    pub fn get_output(&self, id: Ulid) -> Result<Option<String>, StoreError> {
        let _ = id;
        todo!()
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        let _ = key;
        todo!()
    }

    /// Keys starting with `prefix`, in key order.
    pub fn kv_list(&self, prefix: &str) -> Result<Vec<KvEntry>, StoreError> {
        let _ = prefix;
        todo!()
    }

    /// Log index of the last applied entry (0 before any).
    pub fn last_applied_index(&self) -> u64 {
        todo!()
    }

    /// Changes from now on. A receiver that lags gets `RecvError::Lagged` and must
    /// reload what it follows from the tables.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoreEvent>> {
        todo!()
    }
}
