//! Notifications in apply: global webhooks, the delivery log and the notification
//! cursor (see [`rota_core::notify`]).

use redb::{ReadableTable, ReadableTableMetadata};
use rota_core::notify::{Delivery, WebhookRecord, WebhookSpec};
use rota_core::Response;
use tracing::debug;

use super::Apply;
use crate::codec::{decode, encode};
use crate::notify::DELIVERY_RETENTION;
use crate::tables::{read_u64, DELIVERY, META_NOTIFY_CURSOR, WEBHOOK};
use crate::StoreError;

impl Apply<'_, '_> {
    pub(super) fn put_webhook(
        &mut self,
        name: &str,
        spec: &WebhookSpec,
    ) -> Result<Response, StoreError> {
        let previous: Option<WebhookRecord> = self
            .t
            .webhooks
            .r()?
            .get(name)?
            .map(|v| decode(WEBHOOK, v.value()))
            .transpose()?;
        let record = WebhookRecord {
            name: name.to_string(),
            spec: spec.clone(),
            created_at: previous.as_ref().map_or(self.at, |p| p.created_at),
            updated_at: self.at,
            revision: self.index,
        };
        self.t
            .webhooks
            .w()?
            .insert(name, encode(WEBHOOK, &record)?.as_slice())?;
        Ok(Response::WebhookPut {
            created: previous.is_none(),
            webhook: Box::new(record),
        })
    }

    pub(super) fn delete_webhook(&mut self, name: &str) -> Result<Response, StoreError> {
        let existed = self.t.webhooks.w()?.remove(name)?.is_some();
        Ok(Response::WebhookDeleted { existed })
    }

    /// Stores final outcomes (a repeat replaces the row of the same id), keeps the
    /// newest [`DELIVERY_RETENTION`] and raises the cursor.
    pub(super) fn record_deliveries(
        &mut self,
        deliveries: &[Delivery],
        cursor: Option<u64>,
    ) -> Result<Response, StoreError> {
        for delivery in deliveries {
            self.t.deliveries.w()?.insert(
                (delivery.event_revision, delivery.id.as_str()),
                encode(DELIVERY, delivery)?.as_slice(),
            )?;
        }
        let len = self.t.deliveries.r()?.len()?;
        if let Some(excess) = len.checked_sub(DELIVERY_RETENTION).filter(|e| *e > 0) {
            for _ in 0..excess {
                if self.t.deliveries.w()?.pop_first()?.is_none() {
                    break;
                }
            }
            debug!(dropped = excess, "delivery log trimmed");
        }
        if let Some(cursor) = cursor {
            let current = self
                .t
                .meta
                .r()?
                .get(META_NOTIFY_CURSOR)?
                .and_then(|v| read_u64(v.value()))
                .unwrap_or(0);
            if cursor > current {
                self.t
                    .meta
                    .w()?
                    .insert(META_NOTIFY_CURSOR, cursor.to_be_bytes().as_slice())?;
            }
        }
        Ok(Response::Ok)
    }
}
