//! Dynamic settings (`SetConfig`, `ResetConfig`): stored per key, each change
//! announced as `config.changed`.

use redb::ReadableTable;
use serde_json::{json, Value};

use super::Apply;
use crate::codec::{decode, encode};
use crate::tables::CONFIG_ENTRY;
use crate::StoreError;
use rota_core::config::ConfigEntry;
use rota_core::event::types;
use rota_core::Response;

impl Apply<'_, '_> {
    pub(super) fn set_config(&mut self, key: &str, value: &Value) -> Result<Response, StoreError> {
        let previous: Option<ConfigEntry> = self
            .t
            .config
            .get(key)?
            .map(|v| decode(CONFIG_ENTRY, v.value()))
            .transpose()?;
        let entry = ConfigEntry {
            key: key.to_string(),
            value: value.clone(),
            updated_at: self.at,
            revision: self.index,
        };
        let previous = previous.map(|p| p.value);
        if previous.as_ref() != Some(value) {
            self.t
                .config
                .insert(key, encode(CONFIG_ENTRY, &entry)?.as_slice())?;
            let data =
                json!({"key": key, "value": value, "previous": previous, "source": "dynamic"});
            self.publish(types::CONFIG_CHANGED, key, data)?;
        }
        Ok(Response::ConfigSet {
            entry: Box::new(entry),
            previous,
        })
    }

    pub(super) fn reset_config(&mut self, key: Option<&str>) -> Result<Response, StoreError> {
        let keys: Vec<String> = match key {
            Some(key) => vec![key.to_string()],
            None => self
                .t
                .config
                .iter()?
                .map(|row| row.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()?,
        };
        let mut removed = Vec::new();
        for key in keys {
            let old: ConfigEntry = match self.t.config.remove(key.as_str())? {
                Some(old) => decode(CONFIG_ENTRY, old.value())?,
                None => continue,
            };
            let data =
                json!({"key": key, "value": null, "previous": old.value, "source": "static"});
            self.publish(types::CONFIG_CHANGED, &key, data)?;
            removed.push(key);
        }
        Ok(Response::ConfigReset { keys: removed })
    }
}
