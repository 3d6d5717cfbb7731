//! The public event log: what each command publishes, retention, snapshots.

use chrono::TimeDelta;
use rota_core::event::Event;
use rota_core::{Finish, Start, Timestamp};
use serde_json::json;

use super::*;
use crate::events::SWEEP_EVERY;
use crate::Store;

fn logged(store: &Store, after: u64) -> Vec<Event> {
    store
        .events_after(after, &|_| true, 1_000_000)
        .unwrap()
        .events
}

fn kinds(events: &[Event]) -> Vec<(u64, &str, &str)> {
    events
        .iter()
        .map(|e| (e.revision, e.event_type.as_str(), e.key.as_str()))
        .collect()
}

fn kv_put(key: &str) -> Command {
    Command::KvPut {
        key: key.into(),
        value: "v".into(),
        if_revision: None,
    }
}

#[test]
fn every_public_change_is_logged_and_announced_with_its_revision() {
    let mut h = Harness::new();
    put(&mut h, "a"); // 1
    let mut changed = spec("a");
    changed.priority = 1;
    h.run(Command::PutJob { spec: changed }); // 2
    h.run(Command::SetPaused {
        name: "a".into(),
        paused: true,
    }); // 3
    h.run(Command::SetPaused {
        name: "a".into(),
        paused: false,
    }); // 4
    h.run(kv_put("k")); // 5
    h.run(Command::KvDelete {
        key: "k".into(),
        if_revision: None,
    }); // 6
    h.run(Command::KvDelete {
        key: "k".into(),
        if_revision: None,
    }); // 7: nothing to delete, nothing published
    h.run(Command::PublishEvent {
        event_type: "deploy.finished".into(),
        data: json!({"env": "prod"}),
    }); // 8
    h.run(Command::Heartbeat { node: "n1".into() }); // 9: bookkeeping
    h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: None,
    }); // 10
    h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: None,
    }); // 11: already gone

    let events = logged(&h.store, 0);
    assert_eq!(
        kinds(&events),
        vec![
            (1, "job.created", "a"),
            (2, "job.updated", "a"),
            (3, "job.paused", "a"),
            (4, "job.resumed", "a"),
            (5, "kv.put", "k"),
            (6, "kv.deleted", "k"),
            (8, "deploy.finished", "deploy.finished"),
            (10, "job.deleted", "a"),
        ]
    );
    assert_eq!(events[0].data, json!({"job": "a", "revision": 1}));
    assert_eq!(
        events[4].data,
        json!({"key": "k", "mod_revision": 5, "create_revision": 5, "version": 1})
    );
    assert_eq!(events[5].data, json!({"key": "k", "revision": 6}));
    assert_eq!(events[6].data, json!({"env": "prod"}));
    assert_eq!(events[6].at, t(8));

    // The broadcast announces the same events, after the commit.
    let announced: Vec<Event> = h
        .all_events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Published(event) => Some((**event).clone()),
            _ => None,
        })
        .collect();
    assert_eq!(announced, events);
    assert_eq!(logged(&h.store, 5).len(), 3, "after 5: revisions 6, 8, 10");
}

#[test]
fn an_execution_is_queued_started_and_finished_once_across_retries() {
    let mut h = Harness::new();
    let mut job = spec("a");
    job.retry = Some(serde_json::from_value(json!({"max_attempts": 2})).unwrap());
    h.run(Command::PutJob { spec: job }); // 1
    h.run(Command::Fire {
        fires: vec![fire(7, "a", 0, Trigger::Manual)],
    }); // 2
    let start = |attempt| Command::Start {
        starts: vec![Start {
            id: Ulid(7),
            attempt,
            node: "n1".into(),
            at: t(3),
        }],
    };
    h.run(start(1)); // 3
    let retry = Finish {
        retry_at: Some(t(10)),
        ..finish(7, 1, ExecStatus::Failed, 4)
    };
    h.run(Command::Finish {
        finishes: vec![retry],
    }); // 4
    h.run(start(2)); // 5
    h.run(Command::Finish {
        finishes: vec![finish(7, 2, ExecStatus::Succeeded, 6)],
    }); // 6
    h.run(Command::Finish {
        finishes: vec![finish(7, 2, ExecStatus::Succeeded, 7)],
    }); // 7: stale, nothing

    let id = Ulid(7).to_string();
    let events = logged(&h.store, 1);
    assert_eq!(
        kinds(&events),
        vec![
            (2, "execution.queued", id.as_str()),
            (3, "execution.started", id.as_str()),
            (4, "execution.queued", id.as_str()),
            (5, "execution.started", id.as_str()),
            (6, "execution.finished", id.as_str()),
        ]
    );
    let d = |i: usize| &events[i].data;
    assert_eq!(
        (
            d(0)["job"].clone(),
            d(0)["status"].clone(),
            d(0)["attempt"].clone()
        ),
        (json!("a"), json!("queued"), json!(1))
    );
    assert_eq!(d(0)["trigger"], json!("manual"));
    assert_eq!(d(0)["scheduled_at"], json!(t(0)));
    assert_eq!(
        (d(1)["status"].clone(), d(1)["node"].clone()),
        (json!("running"), json!("n1"))
    );
    assert_eq!(
        (d(2)["attempt"].clone(), d(2)["next_attempt_at"].clone()),
        (json!(2), json!(t(10)))
    );
    assert_eq!(
        (d(4)["status"].clone(), d(4)["attempt"].clone()),
        (json!("succeeded"), json!(2))
    );
    assert_eq!(d(4)["finished_at"], json!(t(6)));
}

#[test]
fn a_fire_that_starts_at_once_is_queued_then_started_in_one_revision() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let mut f = fire(9, "a", 0, Trigger::Manual);
    f.start = Some(StartInfo {
        node: "n1".into(),
        at: t(2),
    });
    let mut skipped = fire(10, "a", 60, Trigger::Schedule);
    skipped.skip_reason = Some("overlap".into());
    h.run(Command::Fire {
        fires: vec![f, skipped],
    });
    let events = logged(&h.store, 1);
    let types: Vec<_> = events
        .iter()
        .map(|e| (e.revision, e.event_type.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![
            (2, "execution.queued"),
            (2, "execution.started"),
            (2, "execution.finished"),
        ]
    );
    assert_eq!(events[0].data["status"], json!("queued"));
    assert_eq!(events[0].data["node"], json!(null));
    assert_eq!(events[2].data["status"], json!("skipped"));
    // One entry's events are told apart by their place in it; the first shows
    // none, as every event did before places were given.
    let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    assert!(serde_json::to_value(&events[0])
        .unwrap()
        .get("seq")
        .is_none());
    assert_eq!(serde_json::to_value(&events[2]).unwrap()["seq"], json!(2));
}

#[test]
fn cancelling_a_queued_run_finishes_it_once() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: vec![fire(3, "a", 0, Trigger::Manual)],
    });
    h.run(Command::Cancel { id: Ulid(3) });
    h.run(Command::Cancel { id: Ulid(3) });
    let types: Vec<_> = logged(&h.store, 2)
        .iter()
        .map(|e| (e.event_type.clone(), e.data["status"].clone()))
        .collect();
    assert_eq!(
        types,
        vec![("execution.finished".into(), json!("cancelled"))]
    );
}

/// Applies KV puts at `at` until the next index is a sweep index (exclusive).
fn fill_until_sweep(h: &mut Harness, at: Timestamp) {
    while !(h.index + 1).is_multiple_of(SWEEP_EVERY) {
        h.run_at(at, kv_put(&format!("k{}", h.index)));
    }
}

#[test]
fn retention_keeps_the_latest_events_and_those_of_the_last_day() {
    let mut h = Harness::with_event_retention(10);
    // Young events: more than the count, but all within the day: kept.
    fill_until_sweep(&mut h, t(0));
    h.run_at(t(60), kv_put("sweep-1"));
    assert_eq!(h.index, SWEEP_EVERY);
    assert_eq!(logged(&h.store, 0).len() as u64, SWEEP_EVERY);
    assert_eq!(h.store.compact_revision().unwrap(), 0);

    // A day later: the old ones beyond the latest 10 go, the young ones stay.
    let later = t(0) + TimeDelta::hours(24) + TimeDelta::seconds(1);
    fill_until_sweep(&mut h, later);
    let day_after = later + TimeDelta::hours(1);
    h.run_at(day_after, kv_put("sweep-2"));
    let kept = logged(&h.store, 0);
    // Everything of the first day is over a day old and beyond the latest 10; what
    // came after is younger than a day, so more than 10 stay.
    assert_eq!(kept[0].revision, SWEEP_EVERY + 1);
    assert_eq!(h.store.compact_revision().unwrap(), SWEEP_EVERY);
    assert_eq!(kept.len() as u64, SWEEP_EVERY);
    assert_eq!(kept.last().unwrap().revision, 2 * SWEEP_EVERY);

    // Two days later only the count protects: the latest 10 stay.
    let much_later = day_after + TimeDelta::hours(48);
    fill_until_sweep(&mut h, much_later);
    h.run_at(much_later, kv_put("sweep-3"));
    let kept = logged(&h.store, 0);
    // The newest 1024 are all young (much_later): the count limit does not touch them.
    assert_eq!(kept.len() as u64, SWEEP_EVERY);
    assert_eq!(h.store.compact_revision().unwrap(), 2 * SWEEP_EVERY);
    assert_eq!(logged(&h.store, 2 * SWEEP_EVERY).len() as u64, SWEEP_EVERY);
}

#[test]
fn old_events_within_the_retained_count_stay() {
    let mut h = Harness::with_event_retention(2 * SWEEP_EVERY);
    fill_until_sweep(&mut h, t(0));
    h.run_at(t(0) + TimeDelta::hours(72), kv_put("sweep"));
    assert_eq!(logged(&h.store, 0).len() as u64, SWEEP_EVERY);
    assert_eq!(h.store.compact_revision().unwrap(), 0);
}

#[test]
fn the_event_log_and_its_compact_revision_survive_a_snapshot_install() {
    let mut h = Harness::with_event_retention(10);
    fill_until_sweep(&mut h, t(0));
    h.run_at(t(0) + TimeDelta::hours(25), kv_put("last"));
    let compact = h.store.compact_revision().unwrap();
    assert_eq!(compact, SWEEP_EVERY - 10);
    let before = logged(&h.store, 0);
    assert_eq!(before.len(), 10);

    let mut bytes = Vec::new();
    h.store.export_snapshot(&mut bytes).unwrap();
    let mut target = Harness::new();
    target.run(kv_put("other"));
    target.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(target.store.compact_revision().unwrap(), compact);
    assert_eq!(logged(&target.store, 0), before);
    assert_eq!(logged(&target.store, compact), before);
}

#[test]
fn members_that_join_or_leave_are_published_with_the_last_request_clock() {
    use std::collections::BTreeMap;

    use crate::{LogEntry, Member};

    let mut h = Harness::new();
    let member = |addr: &str, voter| Member {
        address: addr.to_string(),
        voter,
    };
    let apply_members = |h: &mut Harness, members: BTreeMap<u64, Member>| {
        h.index += 1;
        h.store
            .apply(
                &[LogEntry {
                    index: h.index,
                    request: None,
                    members: Some(&members),
                }],
                b"meta",
            )
            .expect("apply");
    };
    apply_members(&mut h, BTreeMap::from([(1, member("127.0.0.1:1", true))]));
    put(&mut h, "a");
    let clock = t(h.index as i64);
    h.all_events();
    apply_members(
        &mut h,
        BTreeMap::from([
            (1, member("127.0.0.1:1", true)),
            (2, member("127.0.0.1:2", false)),
        ]),
    );
    // Promoting the learner changes nobody's membership.
    apply_members(
        &mut h,
        BTreeMap::from([
            (1, member("127.0.0.1:1", true)),
            (2, member("127.0.0.1:2", true)),
        ]),
    );
    apply_members(&mut h, BTreeMap::from([(1, member("127.0.0.1:1", true))]));
    let published: Vec<(String, String, serde_json::Value)> = h
        .all_events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Published(p) => {
                assert_eq!(p.at, clock);
                Some((p.event_type.clone(), p.key.clone(), p.data.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        published,
        vec![
            (
                "member.joined".to_string(),
                "2".to_string(),
                serde_json::json!({"id": 2, "address": "127.0.0.1:2", "voter": false})
            ),
            (
                "member.left".to_string(),
                "2".to_string(),
                serde_json::json!({"id": 2})
            ),
        ]
    );
    let logged = h.store.events_after(0, &|_| true, 100).expect("log");
    assert!(logged
        .events
        .iter()
        .any(|e| e.event_type == "member.joined"));
}
