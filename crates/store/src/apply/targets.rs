//! Target sets in apply: their specs (`PutTargetSet`, `DeleteTargetSet`) and what
//! the leader's discovery found (`RecordTargets`); and sinks (`PutSink`,
//! `DeleteSink`), where jobs send their records.

use redb::ReadableTable;
use rota_core::event::types;
use rota_core::sink::{SinkRecord, SinkSpec};
use rota_core::targets::{TargetSet, TargetSetSpec, TargetSetState};
use rota_core::Response;
use serde_json::json;

use super::Apply;
use crate::codec::{decode, encode};
use crate::tables::{SINK, TARGET_SET};
use crate::StoreError;

impl Apply<'_, '_> {
    fn get_target_set(&self, name: &str) -> Result<Option<TargetSet>, StoreError> {
        self.t
            .target_sets
            .r()?
            .get(name)?
            .map(|v| decode(TARGET_SET, v.value()))
            .transpose()
    }

    fn put_target_set_record(&mut self, set: &TargetSet) -> Result<(), StoreError> {
        self.t
            .target_sets
            .w()?
            .insert(set.spec.name.as_str(), encode(TARGET_SET, set)?.as_slice())?;
        Ok(())
    }

    pub(super) fn put_target_set(&mut self, spec: &TargetSetSpec) -> Result<Response, StoreError> {
        let previous = self.get_target_set(&spec.name)?;
        let created = previous.is_none();
        let set = match previous {
            // An unchanged spec keeps its generation: discovery goes on undisturbed.
            Some(previous) if previous.spec == *spec => previous,
            // A changed spec keeps the old targets until discovery of the new one
            // reports, so jobs fanning out meanwhile still find their set.
            Some(previous) => TargetSet {
                spec: spec.clone(),
                generation: self.index,
                ..previous
            },
            None => TargetSet {
                spec: spec.clone(),
                generation: self.index,
                targets: Vec::new(),
                refreshed_at: None,
                error: None,
            },
        };
        self.put_target_set_record(&set)?;
        let event = if created {
            types::TARGETS_CREATED
        } else {
            types::TARGETS_UPDATED
        };
        let data = json!({"set": spec.name, "provider": spec.provider.kind(), "generation": set.generation});
        self.publish(event, &spec.name, data)?;
        Ok(Response::TargetSetPut {
            created,
            set: Box::new(set),
        })
    }

    pub(super) fn delete_target_set(&mut self, name: &str) -> Result<Response, StoreError> {
        let existed = self.t.target_sets.w()?.remove(name)?.is_some();
        if existed {
            self.publish(types::TARGETS_DELETED, name, json!({"set": name}))?;
        }
        Ok(Response::TargetSetDeleted { existed })
    }

    pub(super) fn record_targets(
        &mut self,
        name: &str,
        generation: u64,
        state: &TargetSetState,
    ) -> Result<Response, StoreError> {
        let Some(mut set) = self.get_target_set(name)? else {
            return Ok(Response::TargetsRecorded { changed: false });
        };
        if set.generation != generation || set.refreshed_at.is_some() && set.state() == *state {
            return Ok(Response::TargetsRecorded { changed: false });
        }
        set.targets = state.targets.clone();
        set.error = state.error.clone();
        set.refreshed_at = Some(self.at);
        self.put_target_set_record(&set)?;
        let data = json!({
            "set": name,
            "targets": set.targets.len(),
            "error": set.error,
            "generation": generation,
        });
        self.publish(types::TARGETS_DISCOVERED, name, data)?;
        Ok(Response::TargetsRecorded { changed: true })
    }

    pub(super) fn put_sink(&mut self, name: &str, spec: &SinkSpec) -> Result<Response, StoreError> {
        let previous: Option<SinkRecord> = self
            .t
            .sinks
            .r()?
            .get(name)?
            .map(|v| decode(SINK, v.value()))
            .transpose()?;
        let record = SinkRecord {
            name: name.to_string(),
            spec: spec.clone(),
            created_at: previous.as_ref().map_or(self.at, |p| p.created_at),
            updated_at: self.at,
            revision: self.index,
        };
        self.t
            .sinks
            .w()?
            .insert(name, encode(SINK, &record)?.as_slice())?;
        let event = if previous.is_none() {
            types::SINK_CREATED
        } else {
            types::SINK_UPDATED
        };
        let data = json!({"sink": name, "type": spec.type_name(), "revision": self.index});
        self.publish(event, name, data)?;
        Ok(Response::SinkPut {
            created: previous.is_none(),
            sink: Box::new(record),
        })
    }

    pub(super) fn delete_sink(&mut self, name: &str) -> Result<Response, StoreError> {
        let existed = self.t.sinks.w()?.remove(name)?.is_some();
        if existed {
            self.publish(types::SINK_DELETED, name, json!({"sink": name}))?;
        }
        Ok(Response::SinkDeleted { existed })
    }
}
