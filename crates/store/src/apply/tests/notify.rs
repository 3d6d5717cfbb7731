//! Webhooks, the delivery log and the notification cursor.

use rota_core::notify::{parse_webhook_json, DeliveryStatus, WebhookSpec};

use super::*;
use crate::test_support::delivery;
use crate::{DeliveryFilter, DELIVERY_RETENTION};

fn webhook(url: &str) -> WebhookSpec {
    parse_webhook_json(format!(r#"{{"url": "{url}", "jobs": ["build"]}}"#).as_bytes()).unwrap()
}

#[test]
fn webhooks_are_created_replaced_listed_and_deleted() {
    let mut h = Harness::new();
    let first = h.run(Command::PutWebhook {
        name: "ops".into(),
        spec: webhook("http://a/1"),
    });
    let Response::WebhookPut {
        created,
        webhook: w,
    } = first
    else {
        panic!("expected WebhookPut, got {first:?}");
    };
    assert!(created);
    assert_eq!((w.revision, w.created_at), (1, t(1)));

    let again = h.run(Command::PutWebhook {
        name: "ops".into(),
        spec: webhook("http://a/2"),
    });
    let Response::WebhookPut {
        created,
        webhook: w,
    } = again
    else {
        panic!("expected WebhookPut, got {again:?}");
    };
    assert!(!created);
    assert_eq!((w.revision, w.created_at, w.updated_at), (2, t(1), t(2)));
    assert_eq!(w.spec.url, "http://a/2");
    assert_eq!(h.store.get_webhook("ops").unwrap().unwrap(), *w);
    assert_eq!(h.store.webhooks().unwrap().len(), 1);

    assert_eq!(
        h.run(Command::DeleteWebhook { name: "ops".into() }),
        Response::WebhookDeleted { existed: true }
    );
    assert_eq!(
        h.run(Command::DeleteWebhook { name: "ops".into() }),
        Response::WebhookDeleted { existed: false }
    );
    assert!(h.store.get_webhook("ops").unwrap().is_none());
    // Webhooks are configuration, not public events.
    assert!(h.all_events().is_empty());
}

#[test]
fn recorded_deliveries_are_listed_filtered_paged_and_replaced_by_a_repeat() {
    let mut h = Harness::new();
    assert_eq!(h.store.notify_cursor().unwrap(), 0);
    h.run(Command::RecordDeliveries {
        deliveries: vec![
            delivery(5, "notify[0]", DeliveryStatus::Delivered),
            delivery(5, "ops", DeliveryStatus::Failed),
            delivery(3, "notify[1]", DeliveryStatus::Delivered),
        ],
        cursor: Some(5),
    });
    assert_eq!(h.store.notify_cursor().unwrap(), 5);
    let all = |h: &Harness| {
        h.store
            .deliveries(&DeliveryFilter::default(), None, 100)
            .unwrap()
    };
    let (items, more) = all(&h);
    assert!(!more);
    // In event order, then by id.
    let targets: Vec<_> = items.iter().map(|d| d.target.as_str()).collect();
    assert_eq!(targets, ["notify[1]", "notify[0]", "ops"]);
    assert!(h.store.has_delivery(5, &items[1].id).unwrap());
    assert!(!h.store.has_delivery(4, &items[1].id).unwrap());

    let failed = DeliveryFilter {
        status: Some(DeliveryStatus::Failed),
        ..Default::default()
    };
    let (items, _) = h.store.deliveries(&failed, None, 100).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].target, "ops");
    let build = DeliveryFilter {
        job: Some("build".into()),
        target: Some("notify[0]".into()),
        ..Default::default()
    };
    assert_eq!(h.store.deliveries(&build, None, 100).unwrap().0.len(), 1);

    // Paging: one at a time, continuing after the last item's key.
    let (page, more) = h
        .store
        .deliveries(&DeliveryFilter::default(), None, 1)
        .unwrap();
    assert!(more);
    let after = (page[0].event_revision, page[0].id.as_str());
    let (page2, more) = h
        .store
        .deliveries(&DeliveryFilter::default(), Some(after), 2)
        .unwrap();
    assert!(!more);
    assert_eq!(page2.len(), 2);
    assert_eq!(page2[0].target, "notify[0]");

    // A repeat (a new leader delivered it again) replaces the row; a lower cursor
    // changes nothing.
    let mut repeat = delivery(5, "ops", DeliveryStatus::Delivered);
    repeat.attempts = 1;
    h.run(Command::RecordDeliveries {
        deliveries: vec![repeat.clone()],
        cursor: Some(2),
    });
    assert_eq!(h.store.notify_cursor().unwrap(), 5);
    let (items, _) = all(&h);
    assert_eq!(items.len(), 3);
    assert_eq!(items[2], repeat);
}

#[test]
fn the_delivery_log_keeps_the_newest_records() {
    let mut h = Harness::new();
    let total = DELIVERY_RETENTION + 5;
    let mut revision = 0;
    while revision < total {
        let batch: Vec<_> = (0..1000.min(total - revision))
            .map(|i| delivery(revision + i + 1, "notify[0]", DeliveryStatus::Delivered))
            .collect();
        revision += batch.len() as u64;
        h.run(Command::RecordDeliveries {
            deliveries: batch,
            cursor: Some(revision),
        });
    }
    let (items, more) = h
        .store
        .deliveries(&DeliveryFilter::default(), None, usize::MAX)
        .unwrap();
    assert!(!more);
    assert_eq!(items.len() as u64, DELIVERY_RETENTION);
    assert_eq!(items[0].event_revision, 6, "the five oldest were dropped");
    assert_eq!(h.store.notify_cursor().unwrap(), total);
}
