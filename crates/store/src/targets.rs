//! Reads of target sets (written by `Command::PutTargetSet`, `DeleteTargetSet` and
//! `RecordTargets`) and of sinks (`PutSink`, `DeleteSink`).

use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use rota_core::sink::SinkRecord;
use rota_core::targets::TargetSet;

use crate::codec::decode;
use crate::tables::{self, SINK, TARGET_SET};
use crate::{Store, StoreError};

impl Store {
    pub fn get_target_set(&self, name: &str) -> Result<Option<TargetSet>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::TARGET_SETS)?;
        let set = table
            .get(name)?
            .map(|v| decode(TARGET_SET, v.value()))
            .transpose()?;
        Ok(set)
    }

    /// Every target set, by name.
    pub fn target_sets(&self) -> Result<Vec<TargetSet>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::TARGET_SETS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(TARGET_SET, row?.1.value())?);
        }
        Ok(out)
    }

    pub fn get_sink(&self, name: &str) -> Result<Option<SinkRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::SINKS)?;
        let sink = table
            .get(name)?
            .map(|v| decode(SINK, v.value()))
            .transpose()?;
        Ok(sink)
    }

    /// Every sink, by name.
    pub fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::SINKS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(SINK, row?.1.value())?);
        }
        Ok(out)
    }
}

impl Store {
    /// Every dynamic setting that has a value, by key.
    pub fn config_entries(&self) -> Result<Vec<rota_core::config::ConfigEntry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::CONFIG)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(tables::CONFIG_ENTRY, row?.1.value())?);
        }
        Ok(out)
    }

    /// The dynamic settings in force.
    pub fn dynamic_config(&self) -> Result<rota_core::config::DynamicConfig, StoreError> {
        Ok(rota_core::config::DynamicConfig::from_entries(
            &self.config_entries()?,
        ))
    }
}

impl Store {
    /// What authenticating a request needs in one read: whether any token exists,
    /// and the token whose hash is `hash` (if one is given and exists).
    pub fn auth_lookup(
        &self,
        hash: Option<&str>,
    ) -> Result<(bool, Option<rota_core::auth::TokenRecord>), StoreError> {
        // Read before the transaction begins: a commit that adds a token after
        // it changes the value, and the empty table seen is then not recorded.
        let seen = self.tokens_empty.load(Ordering::Acquire);
        if seen & 1 == 1 {
            return Ok((false, None));
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::TOKENS)?;
        let any = !table.is_empty()?;
        if !any {
            let _ = self.tokens_empty.compare_exchange(
                seen,
                seen | 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
        let token = match hash {
            Some(hash) if any => table
                .get(hash)?
                .map(|v| decode(tables::TOKEN, v.value()))
                .transpose()?,
            _ => None,
        };
        Ok((any, token))
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Result<Vec<rota_core::auth::TokenRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::TOKENS)?;
        let mut out: Vec<rota_core::auth::TokenRecord> = Vec::new();
        for row in table.iter()? {
            out.push(decode(tables::TOKEN, row?.1.value())?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}
