//! Dynamic settings (`SetConfig`, `ResetConfig`): stored per key, each change
//! announced as `config.changed`; and API tokens (`PutToken`, `RevokeToken`),
//! kept by their hash.

use redb::ReadableTable;
use serde_json::{json, Value};

use super::Apply;
use crate::codec::{decode, encode};
use crate::tables::{CONFIG_ENTRY, TOKEN};
use crate::StoreError;
use rota_core::auth::TokenRecord;
use rota_core::config::ConfigEntry;
use rota_core::event::types;
use rota_core::Response;

impl Apply<'_, '_> {
    pub(super) fn set_config(&mut self, key: &str, value: &Value) -> Result<Response, StoreError> {
        let previous: Option<ConfigEntry> = self
            .t
            .config
            .r()?
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
                .w()?
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
                .r()?
                .iter()?
                .map(|row| row.map(|(k, _)| k.value().to_string()))
                .collect::<Result<_, _>>()?,
        };
        let mut removed = Vec::new();
        for key in keys {
            let old: ConfigEntry = match self.t.config.w()?.remove(key.as_str())? {
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

impl Apply<'_, '_> {
    pub(super) fn put_token(
        &mut self,
        record: &TokenRecord,
        only_if_none: bool,
    ) -> Result<Response, StoreError> {
        let mut taken = false;
        let mut any = false;
        for row in self.t.tokens.r()?.iter()? {
            let existing: TokenRecord = decode(TOKEN, row?.1.value())?;
            any = true;
            taken |= existing.name == record.name;
        }
        if only_if_none && any {
            return Ok(Response::TokenPut { created: false });
        }
        if taken || self.t.tokens.r()?.get(record.hash.as_str())?.is_some() {
            return Ok(Response::TokenExists {
                name: record.name.clone(),
            });
        }
        let stored = TokenRecord {
            revision: self.index,
            created_at: self.at,
            ..record.clone()
        };
        self.t
            .tokens
            .w()?
            .insert(stored.hash.as_str(), encode(TOKEN, &stored)?.as_slice())?;
        let data =
            json!({"token": stored.name, "role": stored.role, "created_by": stored.created_by});
        self.publish(types::TOKEN_CREATED, &stored.name, data)?;
        Ok(Response::TokenPut { created: true })
    }

    pub(super) fn revoke_token(&mut self, name: &str) -> Result<Response, StoreError> {
        let mut hash = None;
        for row in self.t.tokens.r()?.iter()? {
            let (k, v) = row?;
            let existing: TokenRecord = decode(TOKEN, v.value())?;
            if existing.name == name {
                hash = Some(k.value().to_string());
                break;
            }
        }
        let Some(hash) = hash else {
            return Ok(Response::TokenRevoked { existed: false });
        };
        self.t.tokens.w()?.remove(hash.as_str())?;
        self.publish(types::TOKEN_REVOKED, name, json!({"token": name}))?;
        Ok(Response::TokenRevoked { existed: true })
    }
}
