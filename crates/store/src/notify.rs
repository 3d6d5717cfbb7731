//! Reads of the notification state: global webhooks, the delivery log and the
//! notification cursor (written by `Command::PutWebhook|DeleteWebhook|RecordDeliveries`).

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable};
use rota_core::notify::{Delivery, DeliveryStatus, WebhookRecord};

use crate::codec::decode;
use crate::tables::{self, DELIVERY, WEBHOOK};
use crate::{Store, StoreError};

/// How many delivery records the log keeps; older ones are dropped as new ones come.
pub const DELIVERY_RETENTION: u64 = 10_000;

/// Which deliveries [`Store::deliveries`] lists; `None` keeps every value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub job: Option<String>,
    /// A webhook's name, or a job's own target such as `notify[0]`.
    pub target: Option<String>,
    pub status: Option<DeliveryStatus>,
}

impl DeliveryFilter {
    fn keeps(&self, d: &Delivery) -> bool {
        self.job.as_ref().is_none_or(|j| *j == d.job)
            && self.target.as_ref().is_none_or(|t| *t == d.target)
            && self.status.is_none_or(|s| s == d.status)
    }
}

impl Store {
    pub fn get_webhook(&self, name: &str) -> Result<Option<WebhookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let webhooks = txn.open_table(tables::WEBHOOKS)?;
        let record = webhooks
            .get(name)?
            .map(|v| decode(WEBHOOK, v.value()))
            .transpose()?;
        Ok(record)
    }

    /// Every global webhook, by name.
    pub fn webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let webhooks = txn.open_table(tables::WEBHOOKS)?;
        let mut out = Vec::new();
        for row in webhooks.iter()? {
            let (_, v) = row?;
            out.push(decode(WEBHOOK, v.value())?);
        }
        Ok(out)
    }

    /// The notification cursor: every execution event at or below it was handled.
    pub fn notify_cursor(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(tables::META)?;
        let cursor = meta
            .get(tables::META_NOTIFY_CURSOR)?
            .and_then(|v| tables::read_u64(v.value()))
            .unwrap_or(0);
        Ok(cursor)
    }

    /// Whether the outcome of delivery `id` (of an event at `revision`) is recorded.
    pub fn has_delivery(&self, revision: u64, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(tables::DELIVERIES)?;
        Ok(log.get((revision, id))?.is_some())
    }

    /// Recorded deliveries that `filter` keeps, in event order, after the delivery
    /// `after` (its revision and id), at most `limit`; the flag says whether more
    /// follow.
    pub fn deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<(u64, &str)>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let log = txn.open_table(tables::DELIVERIES)?;
        let start = match after {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for row in log.range::<(u64, &str)>((start, Bound::Unbounded))? {
            let (_, v) = row?;
            let delivery: Delivery = decode(DELIVERY, v.value())?;
            if !filter.keeps(&delivery) {
                continue;
            }
            if out.len() >= limit {
                return Ok((out, true));
            }
            out.push(delivery);
        }
        Ok((out, false))
    }
}
