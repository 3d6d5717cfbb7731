//! Reads of target sets (written by `Command::PutTargetSet`, `DeleteTargetSet` and
//! `RecordTargets`).

use redb::{ReadableDatabase, ReadableTable};
use rota_core::targets::TargetSet;

use crate::codec::decode;
use crate::tables::{self, TARGET_SET};
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
}
