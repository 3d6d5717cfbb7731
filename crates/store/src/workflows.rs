//! Reads of workflows and their runs (written by `Command::PutWorkflow`,
//! `DeleteWorkflow`, `RunWorkflow`, `CancelRun` and by the executions of runs).

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};
use rota_core::workflow::{WorkflowRecord, WorkflowRun};
use ulid::Ulid;

use crate::codec::decode;
use crate::tables::{self, RUN, WORKFLOW};
use crate::{Store, StoreError};

impl Store {
    pub fn get_workflow(&self, name: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::WORKFLOWS)?;
        let record = table
            .get(name)?
            .map(|v| decode(WORKFLOW, v.value()))
            .transpose()?;
        Ok(record)
    }

    /// Every workflow, by name.
    pub fn workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::WORKFLOWS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            out.push(decode(WORKFLOW, row?.1.value())?);
        }
        Ok(out)
    }

    pub fn get_run(&self, id: Ulid) -> Result<Option<WorkflowRun>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::RUNS)?;
        let run = table
            .get(id.0)?
            .map(|v| decode(RUN, v.value()))
            .transpose()?;
        Ok(run)
    }

    /// A workflow's runs, newest first, at most `limit`, older than `before` when
    /// given.
    pub fn list_runs(
        &self,
        workflow: &str,
        limit: usize,
        before: Option<Ulid>,
    ) -> Result<Vec<WorkflowRun>, StoreError> {
        let txn = self.db.begin_read()?;
        let index = txn.open_table(tables::WORKFLOW_RUNS)?;
        let runs = txn.open_table(tables::RUNS)?;
        let upper = match before {
            Some(id) => Bound::Excluded((workflow, id.0)),
            None => Bound::Included((workflow, u128::MAX)),
        };
        let mut out = Vec::new();
        for row in index
            .range((Bound::Included((workflow, 0u128)), upper))?
            .rev()
        {
            if out.len() >= limit {
                break;
            }
            let id = row?.0.value().1;
            if let Some(v) = runs.get(id)? {
                out.push(decode(RUN, v.value())?);
            }
        }
        Ok(out)
    }

    /// Runs that have not ended (queued or running), of every workflow.
    pub fn active_runs(&self) -> Result<Vec<WorkflowRun>, StoreError> {
        let txn = self.db.begin_read()?;
        let runs = txn.open_table(tables::RUNS)?;
        let mut out = Vec::new();
        for row in runs.iter()? {
            let run: WorkflowRun = decode(RUN, row?.1.value())?;
            if !run.status.is_terminal() {
                out.push(run);
            }
        }
        Ok(out)
    }
}
