//! The public event log: every [`Event`] apply publishes is also written to the
//! `events` table, keyed by (revision, sequence within the revision), in the same
//! transaction as the change it describes, so the log survives restarts and travels
//! in snapshots.
//!
//! Retention is decided during apply, from the log index and the entries' own clock
//! (`ClientRequest.at`), so every replica drops the same events: every
//! [`SWEEP_EVERY`] indexes the oldest events are deleted while more than the
//! configured count (`watch.retention`) remain *and* they are older than
//! [`RETENTION_AGE`]. Whole revisions are dropped, and the highest revision dropped
//! is remembered as the compact revision: a watcher asking for events after an
//! earlier revision cannot be served from the log.

use std::ops::Bound;

use chrono::TimeDelta;
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};
use rota_core::event::Event;
use rota_core::Timestamp;
use tracing::debug;

use crate::codec::decode;
use crate::tables::{self, Tables, EVENT};
use crate::StoreError;

/// How many events the log keeps at least, unless configured otherwise.
pub const DEFAULT_RETENTION: u64 = 100_000;
/// Events younger than this (by the entries' clock) are kept whatever their number.
pub const RETENTION_AGE: TimeDelta = TimeDelta::hours(24);

/// What the event log keeps at least: the latest `events` events and every event
/// younger than `age` (by the entries' own clock); what is beyond both goes. Every
/// member must use the same, since it decides what the state machine deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    pub events: u64,
    pub age: TimeDelta,
}

impl Default for EventRetention {
    fn default() -> Self {
        Self {
            events: DEFAULT_RETENTION,
            age: RETENTION_AGE,
        }
    }
}

impl EventRetention {
    /// The default age with at least `events` events.
    pub fn events(events: u64) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }
}
/// The retention sweep runs when the log index is a multiple of this.
pub(crate) const SWEEP_EVERY: u64 = 1024;
/// At most this many events are dropped by one sweep, so that one entry's apply
/// stays short; the next sweep continues.
const SWEEP_MAX: usize = 65_536;

/// A page of the event log read by [`crate::Store::events_after`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventPage {
    /// The events after the asked revision that matched, in log order.
    pub events: Vec<Event>,
    /// Every event up to this revision was looked at (whole revisions): a reader
    /// continues after it, and a live event at or below it was already seen.
    pub through: u64,
    /// The page reached the end of the log as it stood when read.
    pub end: bool,
}

/// Drops what is beyond both retention minimums (see the module doc).
pub(crate) fn sweep(
    t: &mut Tables<'_>,
    now: Timestamp,
    retention: EventRetention,
) -> Result<(), StoreError> {
    let len = t.events.r()?.len()?;
    let Some(excess) = len.checked_sub(retention.events).filter(|e| *e > 0) else {
        return Ok(());
    };
    let excess = usize::try_from(excess).unwrap_or(usize::MAX).min(SWEEP_MAX);
    let mut victims: Vec<(u64, u32)> = Vec::new();
    for row in t.events.r()?.iter()? {
        let (key, value) = row?;
        let (revision, seq) = key.value();
        let last = victims.last().map(|(r, _)| *r);
        if victims.len() >= excess && last != Some(revision) {
            break;
        }
        if last != Some(revision) {
            // A new revision is dropped only when it is old enough; its later
            // events go with it, so a revision is never half in the log.
            let event: Event = decode(EVENT, value.value())?;
            if event.at + retention.age >= now {
                break;
            }
        }
        victims.push((revision, seq));
    }
    let Some(&(highest, _)) = victims.last() else {
        return Ok(());
    };
    for key in &victims {
        t.events.w()?.remove(key)?;
    }
    t.set_events_compact(highest.max(t.events_compact()?))?;
    debug!(
        dropped = victims.len(),
        compact_revision = highest,
        "event log trimmed"
    );
    Ok(())
}

/// The compact revision seen by `txn`.
pub(crate) fn compact_revision(txn: &ReadTransaction) -> Result<u64, StoreError> {
    let meta = txn.open_table(tables::META)?;
    let compact = meta
        .get(tables::META_EVENTS_COMPACT)?
        .and_then(|v| tables::read_u64(v.value()))
        .unwrap_or(0);
    Ok(compact)
}

/// Events after revision `after` that `filter` keeps, looking at about `limit`
/// events (always whole revisions), read from `txn`.
pub(crate) fn read_after(
    txn: &ReadTransaction,
    after: u64,
    filter: &dyn Fn(&Event) -> bool,
    limit: usize,
) -> Result<EventPage, StoreError> {
    let applied = txn
        .open_table(tables::META)?
        .get(tables::META_APPLIED)?
        .and_then(|v| tables::read_u64(v.value()))
        .unwrap_or(0);
    let log = txn.open_table(tables::EVENTS)?;
    let Some(start) = after.checked_add(1) else {
        return Ok(EventPage {
            events: Vec::new(),
            through: after,
            end: true,
        });
    };
    let mut page = EventPage {
        events: Vec::new(),
        through: applied.max(after),
        end: true,
    };
    let mut current = None;
    let rows = log.range::<(u64, u32)>((Bound::Included((start, 0)), Bound::Unbounded))?;
    for (looked, row) in rows.enumerate() {
        let (key, value) = row?;
        let (revision, seq) = key.value();
        if looked >= limit.max(1) && current != Some(revision) {
            page.through = current.unwrap_or(after);
            page.end = false;
            return Ok(page);
        }
        current = Some(revision);
        let mut event: Event = decode(EVENT, value.value())?;
        // Events stored before they carried their place have it only in the key.
        event.seq = seq;
        if filter(&event) {
            page.events.push(event);
        }
    }
    Ok(page)
}
