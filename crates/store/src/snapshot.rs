//! The snapshot stream: the whole state as one sequential byte stream, written from
//! one read transaction and read back into one write transaction, record by record,
//! so that neither side holds the state in memory.
//!
//! Layout (integers big-endian):
//! ```text
//! "ROTASNAP" version:u8 applied_index:u64 meta_len:u32 meta
//! { table:u8 key_len:u32 key value_len:u32 value }*
//! 0:u8 record_count:u64
//! ```
//! Keys and values are the tables' own bytes (versioned records, see
//! [`crate::codec`]); an event log row's key is `revision:u64 seq:u32`, a delivery
//! row's `revision:u64 id`. Version 2 added the event log and its compact revision,
//! version 3 webhooks, the delivery log and the notification cursor, version 4
//! workflows and their runs, the members and the clock of membership events (a run's index row is rebuilt from the run), target sets and sinks; older streams
//! (without them) still import. Every record is decoded on import, so a damaged or foreign
//! stream is refused before it replaces anything.

use std::io::{self, BufReader, BufWriter, Read, Write};

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use crate::apply::SessionRecord;
use crate::codec::{check_fired_key, decode, parse_ulid, split_job_exec_key};
use crate::tables::{self, Tables};
use crate::StoreError;
use rota_core::event::Event;
use rota_core::notify::{Delivery, WebhookRecord};
use rota_core::sink::SinkRecord;
use rota_core::targets::TargetSet;
use rota_core::workflow::{WorkflowRecord, WorkflowRun};
use rota_core::{Execution, JobRecord, KvEntry, NodeRecord};

const MAGIC: &[u8; 8] = b"ROTASNAP";
const SNAPSHOT_VERSION: u8 = 4;
/// The oldest stream version this release imports.
const OLDEST_SNAPSHOT_VERSION: u8 = 1;
/// Longest key or value accepted from a stream: a bound on what a damaged length
/// field can make the reader allocate.
const MAX_FIELD: usize = 1 << 30;

const TAG_END: u8 = 0;
const TAG_JOBS: u8 = 1;
const TAG_EXECUTIONS: u8 = 2;
const TAG_JOB_EXECS: u8 = 3;
const TAG_JOB_COUNTS: u8 = 4;
const TAG_FIRED: u8 = 5;
const TAG_ACTIVE: u8 = 6;
const TAG_OUTPUTS: u8 = 7;
const TAG_KV: u8 = 8;
const TAG_SESSIONS: u8 = 9;
/// The scheduler epoch (key `scheduler_epoch`, value u64); only written when set.
const TAG_SCHEDULER_EPOCH: u8 = 10;
const TAG_NODES: u8 = 11;
const TAG_EVENTS: u8 = 12;
/// The event log's compact revision (key `events_compact`, value u64); only written when set.
const TAG_EVENTS_COMPACT: u8 = 13;
const TAG_WEBHOOKS: u8 = 14;
const TAG_DELIVERIES: u8 = 15;
/// The notification cursor (key `notify_cursor`, value u64); only written when set.
const TAG_NOTIFY_CURSOR: u8 = 16;
const TAG_WORKFLOWS: u8 = 17;
const TAG_RUNS: u8 = 18;
/// The members as of the last membership entry (key `members`); only when set.
const TAG_MEMBERS: u8 = 19;
/// The clock of the latest request (key `clock`); only when set.
const TAG_CLOCK: u8 = 20;
const TAG_TARGET_SETS: u8 = 21;
const TAG_SINKS: u8 = 22;
/// Dynamic settings; absent when none is set, so a stream without any reads in
/// releases before them.
const TAG_CONFIG: u8 = 23;
/// API tokens (hashes only); absent when none exists.
const TAG_TOKENS: u8 = 24;

/// What a snapshot stream covers: the log index of the last entry applied to the
/// state it holds, and the cluster layer's opaque metadata at that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub applied_index: u64,
    pub meta: Vec<u8>,
}

fn malformed(detail: impl Into<String>) -> StoreError {
    StoreError::MalformedSnapshot {
        detail: detail.into(),
    }
}

/// Maps a short read to "malformed" rather than to an I/O failure.
fn read_err(e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        malformed("the stream ends early")
    } else {
        StoreError::SnapshotIo(e)
    }
}

struct Writer<W: Write> {
    w: W,
    records: u64,
}

impl<W: Write> Writer<W> {
    fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.w.write_all(&[tag])?;
        self.w.write_all(&(key.len() as u32).to_be_bytes())?;
        self.w.write_all(key)?;
        self.w.write_all(&(value.len() as u32).to_be_bytes())?;
        self.w.write_all(value)?;
        self.records += 1;
        Ok(())
    }
}

/// Writes the state seen by `txn` to `w`.
pub(crate) fn export(
    txn: &ReadTransaction,
    header: &SnapshotHeader,
    w: &mut dyn Write,
) -> Result<(), StoreError> {
    let mut out = Writer {
        w: BufWriter::with_capacity(1 << 16, w),
        records: 0,
    };
    out.w.write_all(MAGIC)?;
    out.w.write_all(&[SNAPSHOT_VERSION])?;
    out.w.write_all(&header.applied_index.to_be_bytes())?;
    out.w.write_all(&(header.meta.len() as u32).to_be_bytes())?;
    out.w.write_all(&header.meta)?;

    fn str_bytes(
        out: &mut Writer<impl Write>,
        txn: &ReadTransaction,
        tag: u8,
        def: TableDefinition<&str, &[u8]>,
    ) -> Result<(), StoreError> {
        for row in txn.open_table(def)?.iter()? {
            let (k, v) = row?;
            out.record(tag, k.value().as_bytes(), v.value())?;
        }
        Ok(())
    }
    fn id_bytes(
        out: &mut Writer<impl Write>,
        txn: &ReadTransaction,
        tag: u8,
        def: TableDefinition<u128, &[u8]>,
    ) -> Result<(), StoreError> {
        for row in txn.open_table(def)?.iter()? {
            let (k, v) = row?;
            out.record(tag, &k.value().to_be_bytes(), v.value())?;
        }
        Ok(())
    }

    str_bytes(&mut out, txn, TAG_JOBS, tables::JOBS)?;
    id_bytes(&mut out, txn, TAG_EXECUTIONS, tables::EXECUTIONS)?;
    for row in txn.open_table(tables::JOB_EXECS)?.iter()? {
        let (k, _) = row?;
        out.record(TAG_JOB_EXECS, k.value(), &[])?;
    }
    for row in txn.open_table(tables::JOB_COUNTS)?.iter()? {
        let (k, v) = row?;
        out.record(
            TAG_JOB_COUNTS,
            k.value().as_bytes(),
            &v.value().to_be_bytes(),
        )?;
    }
    for row in txn.open_table(tables::FIRED)?.iter()? {
        let (k, v) = row?;
        out.record(TAG_FIRED, k.value(), &v.value().to_be_bytes())?;
    }
    for row in txn.open_table(tables::ACTIVE)?.iter()? {
        let (k, _) = row?;
        out.record(TAG_ACTIVE, &k.value().to_be_bytes(), &[])?;
    }
    id_bytes(&mut out, txn, TAG_OUTPUTS, tables::OUTPUTS)?;
    str_bytes(&mut out, txn, TAG_KV, tables::KV)?;
    str_bytes(&mut out, txn, TAG_SESSIONS, tables::SESSIONS)?;
    str_bytes(&mut out, txn, TAG_NODES, tables::NODES)?;
    for row in txn.open_table(tables::EVENTS)?.iter()? {
        let (k, v) = row?;
        let (revision, seq) = k.value();
        let mut key = [0u8; 12];
        key[..8].copy_from_slice(&revision.to_be_bytes());
        key[8..].copy_from_slice(&seq.to_be_bytes());
        out.record(TAG_EVENTS, &key, v.value())?;
    }
    str_bytes(&mut out, txn, TAG_WEBHOOKS, tables::WEBHOOKS)?;
    for row in txn.open_table(tables::DELIVERIES)?.iter()? {
        let (k, v) = row?;
        let (revision, id) = k.value();
        let mut key = revision.to_be_bytes().to_vec();
        key.extend_from_slice(id.as_bytes());
        out.record(TAG_DELIVERIES, &key, v.value())?;
    }
    str_bytes(&mut out, txn, TAG_WORKFLOWS, tables::WORKFLOWS)?;
    id_bytes(&mut out, txn, TAG_RUNS, tables::RUNS)?;
    str_bytes(&mut out, txn, TAG_TARGET_SETS, tables::TARGET_SETS)?;
    str_bytes(&mut out, txn, TAG_SINKS, tables::SINKS)?;
    str_bytes(&mut out, txn, TAG_CONFIG, tables::CONFIG)?;
    str_bytes(&mut out, txn, TAG_TOKENS, tables::TOKENS)?;
    let meta = txn.open_table(tables::META)?;
    for (tag, name) in [
        (TAG_SCHEDULER_EPOCH, tables::META_SCHEDULER_EPOCH),
        (TAG_EVENTS_COMPACT, tables::META_EVENTS_COMPACT),
        (TAG_NOTIFY_CURSOR, tables::META_NOTIFY_CURSOR),
        (TAG_MEMBERS, tables::META_MEMBERS),
        (TAG_CLOCK, tables::META_CLOCK),
    ] {
        if let Some(value) = meta.get(name)? {
            out.record(tag, name.as_bytes(), value.value())?;
        }
    }

    out.w.write_all(&[TAG_END])?;
    let records = out.records;
    out.w.write_all(&records.to_be_bytes())?;
    out.w.flush()?;
    Ok(())
}

fn read_u8(r: &mut impl Read) -> Result<u8, StoreError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(read_err)?;
    Ok(b[0])
}

fn read_u32(r: &mut impl Read) -> Result<u32, StoreError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(read_err)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64, StoreError> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(read_err)?;
    Ok(u64::from_be_bytes(b))
}

fn read_field(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<(), StoreError> {
    let len = read_u32(r)? as usize;
    if len > MAX_FIELD {
        return Err(malformed(format!("a field claims {len} bytes")));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf).map_err(read_err)
}

/// Reads the header at the start of a snapshot stream.
pub(crate) fn read_header(r: &mut impl Read) -> Result<SnapshotHeader, StoreError> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(read_err)?;
    if &magic != MAGIC {
        return Err(malformed("not a rota snapshot (bad magic bytes)"));
    }
    let version = read_u8(r)?;
    if !(OLDEST_SNAPSHOT_VERSION..=SNAPSHOT_VERSION).contains(&version) {
        return Err(malformed(format!(
            "snapshot version {version}; this release reads versions \
             {OLDEST_SNAPSHOT_VERSION} to {SNAPSHOT_VERSION}"
        )));
    }
    let applied_index = read_u64(r)?;
    let mut meta = Vec::new();
    read_field(r, &mut meta)?;
    Ok(SnapshotHeader {
        applied_index,
        meta,
    })
}

fn utf8<'a>(table: &'static str, bytes: &'a [u8]) -> Result<&'a str, StoreError> {
    std::str::from_utf8(bytes).map_err(|_| StoreError::MalformedKey { table })
}

fn empty(table: &'static str, bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.is_empty() {
        Ok(())
    } else {
        Err(malformed(format!("{table} rows carry no value")))
    }
}

/// Empties every table of `txn` and refills them from `r`; returns the stream's header.
/// The caller commits.
pub(crate) fn import(
    txn: &WriteTransaction,
    r: &mut dyn Read,
) -> Result<SnapshotHeader, StoreError> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let header = read_header(&mut r)?;

    Tables::delete_all(txn)?;
    Tables::create_all(txn)?;
    let mut t = Tables::open(txn);

    let mut key = Vec::new();
    let mut value = Vec::new();
    let mut records = 0u64;
    loop {
        let tag = read_u8(&mut r)?;
        if tag == TAG_END {
            break;
        }
        read_field(&mut r, &mut key)?;
        read_field(&mut r, &mut value)?;
        records += 1;
        match tag {
            TAG_JOBS => {
                let name = utf8("jobs", &key)?;
                let job: JobRecord = decode(tables::JOB, &value)?;
                if job.spec.name != name {
                    return Err(malformed(format!(
                        "job row {name:?} holds job {:?}",
                        job.spec.name
                    )));
                }
                t.jobs.w()?.insert(name, value.as_slice())?;
            }
            TAG_EXECUTIONS => {
                let id = parse_ulid("executions", &key)?;
                let exec: Execution = decode(tables::EXECUTION, &value)?;
                if exec.id != id {
                    return Err(malformed(format!(
                        "execution row {id} holds execution {}",
                        exec.id
                    )));
                }
                t.executions.w()?.insert(id.0, value.as_slice())?;
            }
            TAG_JOB_EXECS => {
                split_job_exec_key(&key)?;
                empty("job_execs", &value)?;
                t.job_execs.w()?.insert(key.as_slice(), ())?;
            }
            TAG_JOB_COUNTS => {
                let name = utf8("job_counts", &key)?;
                let count = tables::read_u64(&value)
                    .ok_or_else(|| malformed("a job count is not 8 bytes"))?;
                t.job_counts.w()?.insert(name, count)?;
            }
            TAG_FIRED => {
                check_fired_key(&key)?;
                let id = parse_ulid("fired", &value)?;
                t.fired.w()?.insert(key.as_slice(), id.0)?;
            }
            TAG_ACTIVE => {
                let id = parse_ulid("active", &key)?;
                empty("active", &value)?;
                t.active.w()?.insert(id.0, ())?;
            }
            TAG_OUTPUTS => {
                let id = parse_ulid("outputs", &key)?;
                decode::<String>(tables::OUTPUT, &value)?;
                t.outputs.w()?.insert(id.0, value.as_slice())?;
            }
            TAG_KV => {
                let k = utf8("kv", &key)?;
                let entry: KvEntry = decode(tables::KV_ENTRY, &value)?;
                if entry.key != k {
                    return Err(malformed(format!("kv row {k:?} holds key {:?}", entry.key)));
                }
                t.kv.w()?.insert(k, value.as_slice())?;
            }
            TAG_SESSIONS => {
                let client = utf8("sessions", &key)?;
                decode::<SessionRecord>(tables::SESSION, &value)?;
                t.sessions.w()?.insert(client, value.as_slice())?;
            }
            TAG_NODES => {
                let name = utf8("nodes", &key)?;
                let node: NodeRecord = decode(tables::NODE, &value)?;
                if node.node != name {
                    return Err(malformed(format!(
                        "node row {name:?} holds node {:?}",
                        node.node
                    )));
                }
                t.nodes.w()?.insert(name, value.as_slice())?;
            }
            TAG_SCHEDULER_EPOCH => {
                if key != tables::META_SCHEDULER_EPOCH.as_bytes() {
                    return Err(malformed("a scheduler epoch row under another key"));
                }
                let epoch = tables::read_u64(&value)
                    .ok_or_else(|| malformed("a scheduler epoch is not 8 bytes"))?;
                t.set_scheduler_epoch(epoch)?;
            }
            TAG_EVENTS => {
                let key: [u8; 12] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| malformed("an event key is not 12 bytes"))?;
                let (revision, seq) = key.split_at(8);
                let revision = u64::from_be_bytes(revision.try_into().unwrap_or_default());
                let seq = u32::from_be_bytes(seq.try_into().unwrap_or_default());
                let event: Event = decode(tables::EVENT, &value)?;
                if event.revision != revision {
                    return Err(malformed(format!(
                        "event row {revision} holds an event of revision {}",
                        event.revision
                    )));
                }
                t.events.w()?.insert((revision, seq), value.as_slice())?;
            }
            TAG_EVENTS_COMPACT => {
                if key != tables::META_EVENTS_COMPACT.as_bytes() {
                    return Err(malformed("a compact revision row under another key"));
                }
                let revision = tables::read_u64(&value)
                    .ok_or_else(|| malformed("a compact revision is not 8 bytes"))?;
                t.set_events_compact(revision)?;
            }
            TAG_WEBHOOKS => {
                let name = utf8("webhooks", &key)?;
                let webhook: WebhookRecord = decode(tables::WEBHOOK, &value)?;
                if webhook.name != name {
                    return Err(malformed(format!(
                        "webhook row {name:?} holds webhook {:?}",
                        webhook.name
                    )));
                }
                t.webhooks.w()?.insert(name, value.as_slice())?;
            }
            TAG_DELIVERIES => {
                if key.len() < 8 {
                    return Err(malformed("a delivery key is shorter than 8 bytes"));
                }
                let (revision, id) = key.split_at(8);
                let revision = u64::from_be_bytes(revision.try_into().unwrap_or_default());
                let id = utf8("deliveries", id)?;
                let delivery: Delivery = decode(tables::DELIVERY, &value)?;
                if delivery.id != id || delivery.event_revision != revision {
                    return Err(malformed(format!(
                        "delivery row {revision}/{id} holds delivery {}",
                        delivery.id
                    )));
                }
                t.deliveries.w()?.insert((revision, id), value.as_slice())?;
            }
            TAG_NOTIFY_CURSOR => {
                if key != tables::META_NOTIFY_CURSOR.as_bytes() {
                    return Err(malformed("a notification cursor row under another key"));
                }
                let cursor = tables::read_u64(&value)
                    .ok_or_else(|| malformed("a notification cursor is not 8 bytes"))?;
                t.meta
                    .w()?
                    .insert(tables::META_NOTIFY_CURSOR, cursor.to_be_bytes().as_slice())?;
            }
            TAG_MEMBERS | TAG_CLOCK => {
                let name = if tag == TAG_MEMBERS {
                    tables::META_MEMBERS
                } else {
                    tables::META_CLOCK
                };
                if key != name.as_bytes() {
                    return Err(malformed(format!("a {name} row under another key")));
                }
                // Checked like every record: a versioned JSON value.
                decode::<serde_json::Value>(name, &value)?;
                t.meta.w()?.insert(name, value.as_slice())?;
            }
            TAG_TARGET_SETS => {
                let name = utf8("target sets", &key)?;
                let set: TargetSet = decode(tables::TARGET_SET, &value)?;
                if set.spec.name != name {
                    return Err(malformed(format!(
                        "target set row {name:?} holds set {:?}",
                        set.spec.name
                    )));
                }
                t.target_sets.w()?.insert(name, value.as_slice())?;
            }
            TAG_TOKENS => {
                let hash = utf8("tokens", &key)?;
                let token: rota_core::auth::TokenRecord = decode(tables::TOKEN, &value)?;
                if token.hash != hash {
                    return Err(malformed(format!(
                        "token row {hash:?} holds token {:?}",
                        token.name
                    )));
                }
                t.tokens.w()?.insert(hash, value.as_slice())?;
            }
            TAG_CONFIG => {
                let key_name = utf8("config", &key)?;
                let entry: rota_core::config::ConfigEntry = decode(tables::CONFIG_ENTRY, &value)?;
                if entry.key != key_name {
                    return Err(malformed(format!(
                        "config row {key_name:?} holds key {:?}",
                        entry.key
                    )));
                }
                t.config.w()?.insert(key_name, value.as_slice())?;
            }
            TAG_SINKS => {
                let name = utf8("sinks", &key)?;
                let sink: SinkRecord = decode(tables::SINK, &value)?;
                if sink.name != name {
                    return Err(malformed(format!(
                        "sink row {name:?} holds sink {:?}",
                        sink.name
                    )));
                }
                t.sinks.w()?.insert(name, value.as_slice())?;
            }
            TAG_WORKFLOWS => {
                let name = utf8("workflows", &key)?;
                let workflow: WorkflowRecord = decode(tables::WORKFLOW, &value)?;
                if workflow.spec.name != name {
                    return Err(malformed(format!(
                        "workflow row {name:?} holds workflow {:?}",
                        workflow.spec.name
                    )));
                }
                t.workflows.w()?.insert(name, value.as_slice())?;
            }
            TAG_RUNS => {
                let id = parse_ulid("runs", &key)?;
                let run: WorkflowRun = decode(tables::RUN, &value)?;
                if run.id != id {
                    return Err(malformed(format!("run row {id} holds run {}", run.id)));
                }
                t.put_run(&run)?;
            }
            other => return Err(malformed(format!("unknown table tag {other}"))),
        }
    }
    let expected = read_u64(&mut r)?;
    if expected != records {
        return Err(malformed(format!(
            "the stream holds {records} records but its trailer says {expected}"
        )));
    }
    t.meta.w()?.insert(
        tables::META_FORMAT,
        tables::FORMAT_VERSION.to_be_bytes().as_slice(),
    )?;
    t.meta.w()?.insert(
        tables::META_APPLIED,
        header.applied_index.to_be_bytes().as_slice(),
    )?;
    t.meta
        .w()?
        .insert(tables::META_RAFT, header.meta.as_slice())?;
    Ok(header)
}
