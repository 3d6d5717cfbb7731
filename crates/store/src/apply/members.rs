//! Membership entries: the members that appear or go become `member.joined` /
//! `member.left` events. The members the cluster was created with are recorded
//! without events (nobody joined). A membership entry carries no clock, so its
//! events take the time of the latest request applied before it (`meta.clock`).

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::codec::{decode, encode};
use crate::tables::{Tables, META_CLOCK, META_MEMBERS};
use crate::StoreError;
use rota_core::event::{types, Event};
use rota_core::{EventKind, StoreEvent, Timestamp};

/// One member of the cluster as a membership entry names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub address: String,
    pub voter: bool,
}

const MEMBERS: &str = "members";
const CLOCK: &str = "clock";

/// Records the time of the latest request applied (the clock of membership events).
pub(crate) fn set_clock(t: &mut Tables<'_>, at: Timestamp) -> Result<(), StoreError> {
    t.meta
        .w()?
        .insert(META_CLOCK, encode(CLOCK, &at)?.as_slice())?;
    Ok(())
}

/// Applies a membership entry at `index`: publishes who joined and who left since
/// the previous one, and records the members.
pub(crate) fn apply_membership(
    t: &mut Tables<'_>,
    index: u64,
    members: &BTreeMap<u64, Member>,
    events: &mut Vec<StoreEvent>,
) -> Result<(), StoreError> {
    let previous: Option<BTreeMap<u64, Member>> = t
        .meta
        .r()?
        .get(META_MEMBERS)?
        .map(|v| decode(MEMBERS, v.value()))
        .transpose()?;
    t.meta
        .w()?
        .insert(META_MEMBERS, encode(MEMBERS, members)?.as_slice())?;
    let Some(previous) = previous else {
        return Ok(()); // the founding members: nobody joined
    };
    let at: Timestamp = t
        .meta
        .r()?
        .get(META_CLOCK)?
        .map(|v| decode(CLOCK, v.value()))
        .transpose()?
        .unwrap_or_default();
    let mut seq = 0u32;
    let mut publish = |t: &mut Tables<'_>, event_type: &str, id: u64, data: serde_json::Value| {
        let event = Event {
            revision: index,
            seq,
            event_type: event_type.to_string(),
            key: id.to_string(),
            at,
            data,
        };
        t.events.w()?.insert(
            (index, seq),
            encode(crate::tables::EVENT, &event)?.as_slice(),
        )?;
        seq += 1;
        events.push(StoreEvent {
            revision: index,
            kind: EventKind::Published(Arc::new(event)),
        });
        Ok::<(), StoreError>(())
    };
    for (id, member) in members {
        if !previous.contains_key(id) {
            let data = json!({"id": id, "address": member.address, "voter": member.voter});
            publish(t, types::MEMBER_JOINED, *id, data)?;
        }
    }
    for id in previous.keys() {
        if !members.contains_key(id) {
            publish(t, types::MEMBER_LEFT, *id, json!({ "id": id }))?;
        }
    }
    Ok(())
}
