//! The redb tables of the state file.
//!
//! Records are versioned bytes (see [`crate::codec`]); ids are ULIDs as `u128`, whose
//! numeric order is their big-endian byte order, i.e. creation order.

use std::cell::OnceCell;

use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};
use ulid::Ulid;

use crate::codec::{decode, encode};
use crate::StoreError;
use rota_core::workflow::{WorkflowRecord, WorkflowRun};
use rota_core::{Execution, JobRecord, NodeRecord};

/// `format` (u32, big-endian), `applied` (last applied log index, u64 big-endian),
/// `raft` (opaque bytes of the cluster layer: last applied log id, membership),
/// `scheduler_epoch` (u64 big-endian).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Job name → [`JobRecord`].
pub(crate) const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Execution id → [`Execution`].
pub(crate) const EXECUTIONS: TableDefinition<u128, &[u8]> = TableDefinition::new("executions");
/// `job 0x00 id` → (): a job's history in id order.
pub(crate) const JOB_EXECS: TableDefinition<&[u8], ()> = TableDefinition::new("job_execs");
/// Job name → number of rows it has in `job_execs`, so pruning needs no count scan.
pub(crate) const JOB_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("job_counts");
/// `job scheduled_at` → execution id, for `schedule` and `catchup` fires; and
/// `job event_revision` → execution id, for `event` fires (see
/// [`crate::codec::event_fired_key`]).
pub(crate) const FIRED: TableDefinition<&[u8], u128> = TableDefinition::new("fired");
/// Ids of `queued` and `running` executions.
pub(crate) const ACTIVE: TableDefinition<u128, ()> = TableDefinition::new("active");
/// Execution id → output text of its final attempt.
pub(crate) const OUTPUTS: TableDefinition<u128, &[u8]> = TableDefinition::new("outputs");
/// Key → [`rota_core::KvEntry`].
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Client id → [`crate::session::SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Node name → [`rota_core::NodeRecord`] (registered workers).
pub(crate) const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// (revision, sequence within it) → [`rota_core::event::Event`]: the public event
/// log, oldest first, trimmed by the retention sweep (`crate::events`).
pub(crate) const EVENTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("events");

/// Webhook name → [`rota_core::notify::WebhookRecord`].
pub(crate) const WEBHOOKS: TableDefinition<&str, &[u8]> = TableDefinition::new("webhooks");
/// (event revision, delivery id) → [`rota_core::notify::Delivery`]: the delivery
/// log, oldest event first, trimmed to [`crate::notify::DELIVERY_RETENTION`].
pub(crate) const DELIVERIES: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("deliveries");

/// Workflow name → [`rota_core::workflow::WorkflowRecord`].
pub(crate) const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
/// Run id → [`rota_core::workflow::WorkflowRun`].
pub(crate) const RUNS: TableDefinition<u128, &[u8]> = TableDefinition::new("runs");
/// (workflow, run id) → (): a workflow's runs in id order.
pub(crate) const WORKFLOW_RUNS: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("workflow_runs");

/// Target set name → [`rota_core::targets::TargetSet`].
pub(crate) const TARGET_SETS: TableDefinition<&str, &[u8]> = TableDefinition::new("target_sets");

/// Sink name → [`rota_core::sink::SinkRecord`].
pub(crate) const SINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("sinks");

/// Dynamic setting key → [`rota_core::config::ConfigEntry`].
pub(crate) const CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("config");

/// Token hash (hex SHA-256) → [`rota_core::auth::TokenRecord`].
pub(crate) const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_APPLIED: &str = "applied";
pub(crate) const META_RAFT: &str = "raft";
/// The scheduler epoch (u64, big-endian): the highest Raft term a scheduler was
/// claimed in; absent means 0.
pub(crate) const META_SCHEDULER_EPOCH: &str = "scheduler_epoch";
/// The highest revision whose events the retention sweep dropped (u64, big-endian);
/// absent means 0 (nothing dropped).
pub(crate) const META_EVENTS_COMPACT: &str = "events_compact";
/// The notification cursor (u64, big-endian): every execution event at or below it
/// was handled by a notifier; absent means 0.
pub(crate) const META_NOTIFY_CURSOR: &str = "notify_cursor";

/// The cluster's members as of the last membership entry (JSON map id → member),
/// to tell who joined or left; absent before the first.
pub(crate) const META_MEMBERS: &str = "members";
/// The proposer's clock of the latest request applied (JSON time): the time of
/// membership events, whose entries carry none.
pub(crate) const META_CLOCK: &str = "clock";

/// Layout version of the state file as a whole.
pub(crate) const FORMAT_VERSION: u32 = 1;

pub(crate) const JOB: &str = "job";
pub(crate) const EXECUTION: &str = "execution";
pub(crate) const KV_ENTRY: &str = "kv entry";
pub(crate) const SESSION: &str = "session";
pub(crate) const OUTPUT: &str = "output";
pub(crate) const NODE: &str = "node";
pub(crate) const EVENT: &str = "event";
pub(crate) const WEBHOOK: &str = "webhook";
pub(crate) const DELIVERY: &str = "delivery";
pub(crate) const WORKFLOW: &str = "workflow";
pub(crate) const RUN: &str = "workflow run";
pub(crate) const TARGET_SET: &str = "target set";
pub(crate) const SINK: &str = "sink";
pub(crate) const CONFIG_ENTRY: &str = "config entry";
pub(crate) const TOKEN: &str = "token";

/// A table of a write transaction, opened on first use: [`Lazy::r`] for reads,
/// [`Lazy::w`] for writes.
pub(crate) struct Lazy<'t, K: Key + 'static, V: Value + 'static> {
    txn: &'t WriteTransaction,
    def: TableDefinition<'static, K, V>,
    /// Opened by a read, through a shared borrow.
    read: OnceCell<Table<'t, K, V>>,
    /// Opened by a write, or moved here from `read` by the first write.
    write: Option<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Lazy<'t, K, V> {
    fn new(txn: &'t WriteTransaction, def: TableDefinition<'static, K, V>) -> Self {
        Lazy {
            txn,
            def,
            read: OnceCell::new(),
            write: None,
        }
    }

    /// The table, to read.
    pub fn r(&self) -> Result<&Table<'t, K, V>, StoreError> {
        if let Some(table) = &self.write {
            return Ok(table);
        }
        if let Some(table) = self.read.get() {
            return Ok(table);
        }
        let table = self.txn.open_table(self.def)?;
        Ok(self.read.get_or_init(|| table))
    }

    /// Whether the transaction opened it to write.
    pub fn written(&self) -> bool {
        self.write.is_some()
    }

    /// The table, to write.
    pub fn w(&mut self) -> Result<&mut Table<'t, K, V>, StoreError> {
        match self.write {
            Some(ref mut table) => Ok(table),
            None => {
                let table = match self.read.take() {
                    Some(table) => table,
                    None => self.txn.open_table(self.def)?,
                };
                Ok(self.write.insert(table))
            }
        }
    }
}

/// Declares the state file's tables once: the fields of [`Tables`], how they are
/// opened, and creating or deleting all of them.
macro_rules! state_tables {
    ($($field:ident: $def:ident as <$k:ty, $v:ty>,)*) => {
        /// Every table of the state file in one write transaction, each opened when
        /// it is first used: an entry touches a few of them, and opening all of them
        /// for every apply cost about 3 % of a busy node's CPU.
        pub(crate) struct Tables<'t> {
            $(pub $field: Lazy<'t, $k, $v>,)*
        }

        impl<'t> Tables<'t> {
            pub fn open(txn: &'t WriteTransaction) -> Self {
                Tables {
                    $($field: Lazy::new(txn, $def),)*
                }
            }

            /// Creates every table that does not exist yet (a new state file, a
            /// snapshot install), so that read transactions find all of them.
            pub fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
                $(txn.open_table($def)?;)*
                Ok(())
            }

            /// Deletes every table with its contents (a snapshot install).
            pub fn delete_all(txn: &WriteTransaction) -> Result<(), StoreError> {
                $(txn.delete_table($def)?;)*
                Ok(())
            }
        }

        /// How many tables the state file has.
        #[cfg(test)]
        pub(crate) const TABLE_COUNT: usize = [$(stringify!($field)),*].len();
    };
}

state_tables! {
    meta: META as <&'static str, &'static [u8]>,
    jobs: JOBS as <&'static str, &'static [u8]>,
    executions: EXECUTIONS as <u128, &'static [u8]>,
    job_execs: JOB_EXECS as <&'static [u8], ()>,
    job_counts: JOB_COUNTS as <&'static str, u64>,
    fired: FIRED as <&'static [u8], u128>,
    active: ACTIVE as <u128, ()>,
    outputs: OUTPUTS as <u128, &'static [u8]>,
    kv: KV as <&'static str, &'static [u8]>,
    sessions: SESSIONS as <&'static str, &'static [u8]>,
    nodes: NODES as <&'static str, &'static [u8]>,
    events: EVENTS as <(u64, u32), &'static [u8]>,
    webhooks: WEBHOOKS as <&'static str, &'static [u8]>,
    deliveries: DELIVERIES as <(u64, &'static str), &'static [u8]>,
    workflows: WORKFLOWS as <&'static str, &'static [u8]>,
    runs: RUNS as <u128, &'static [u8]>,
    workflow_runs: WORKFLOW_RUNS as <(&'static str, u128), ()>,
    target_sets: TARGET_SETS as <&'static str, &'static [u8]>,
    sinks: SINKS as <&'static str, &'static [u8]>,
    config: CONFIG as <&'static str, &'static [u8]>,
    tokens: TOKENS as <&'static str, &'static [u8]>,
}

impl Tables<'_> {
    /// The dynamic settings in force, as the state machine applies them.
    pub fn dynamic_config(&self) -> Result<rota_core::config::DynamicConfig, StoreError> {
        let mut entries = Vec::new();
        for row in self.config.r()?.iter()? {
            entries.push(decode(CONFIG_ENTRY, row?.1.value())?);
        }
        Ok(rota_core::config::DynamicConfig::from_entries(&entries))
    }

    pub fn get_job(&self, name: &str) -> Result<Option<JobRecord>, StoreError> {
        self.jobs
            .r()?
            .get(name)?
            .map(|v| decode(JOB, v.value()))
            .transpose()
    }

    pub fn put_job(&mut self, job: &JobRecord) -> Result<(), StoreError> {
        self.jobs
            .w()?
            .insert(job.spec.name.as_str(), encode(JOB, job)?.as_slice())?;
        Ok(())
    }

    pub fn get_execution(&self, id: Ulid) -> Result<Option<Execution>, StoreError> {
        self.executions
            .r()?
            .get(id.0)?
            .map(|v| decode(EXECUTION, v.value()))
            .transpose()
    }

    /// Writes an execution and keeps the `active` index in step with its status.
    pub fn put_execution(&mut self, exec: &Execution) -> Result<(), StoreError> {
        self.executions
            .w()?
            .insert(exec.id.0, encode(EXECUTION, exec)?.as_slice())?;
        if exec.is_active() {
            self.active.w()?.insert(exec.id.0, ())?;
        } else {
            self.active.w()?.remove(exec.id.0)?;
        }
        Ok(())
    }

    pub fn get_workflow(&self, name: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.workflows
            .r()?
            .get(name)?
            .map(|v| decode(WORKFLOW, v.value()))
            .transpose()
    }

    pub fn get_run(&self, id: Ulid) -> Result<Option<WorkflowRun>, StoreError> {
        self.runs
            .r()?
            .get(id.0)?
            .map(|v| decode(RUN, v.value()))
            .transpose()
    }

    /// Writes a run and its row in the workflow's index.
    pub fn put_run(&mut self, run: &WorkflowRun) -> Result<(), StoreError> {
        self.runs
            .w()?
            .insert(run.id.0, encode(RUN, run)?.as_slice())?;
        self.workflow_runs
            .w()?
            .insert((run.workflow.as_str(), run.id.0), ())?;
        Ok(())
    }

    pub fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.nodes
            .r()?
            .get(name)?
            .map(|v| decode(NODE, v.value()))
            .transpose()
    }

    pub fn put_node(&mut self, node: &NodeRecord) -> Result<(), StoreError> {
        self.nodes
            .w()?
            .insert(node.node.as_str(), encode(NODE, node)?.as_slice())?;
        Ok(())
    }

    pub fn scheduler_epoch(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .r()?
            .get(META_SCHEDULER_EPOCH)?
            .and_then(|v| read_u64(v.value()))
            .unwrap_or(0))
    }

    pub fn set_scheduler_epoch(&mut self, epoch: u64) -> Result<(), StoreError> {
        self.meta
            .w()?
            .insert(META_SCHEDULER_EPOCH, epoch.to_be_bytes().as_slice())?;
        Ok(())
    }

    pub fn events_compact(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .r()?
            .get(META_EVENTS_COMPACT)?
            .and_then(|v| read_u64(v.value()))
            .unwrap_or(0))
    }

    pub fn set_events_compact(&mut self, revision: u64) -> Result<(), StoreError> {
        self.meta
            .w()?
            .insert(META_EVENTS_COMPACT, revision.to_be_bytes().as_slice())?;
        Ok(())
    }

    pub fn job_count(&self, job: &str) -> Result<u64, StoreError> {
        Ok(self
            .job_counts
            .r()?
            .get(job)?
            .map(|v| v.value())
            .unwrap_or(0))
    }

    pub fn set_job_count(&mut self, job: &str, count: u64) -> Result<(), StoreError> {
        if count == 0 {
            self.job_counts.w()?.remove(job)?;
        } else {
            self.job_counts.w()?.insert(job, count)?;
        }
        Ok(())
    }
}

pub(crate) fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}
