//! Event fires: once per (job, event revision, event seq), the job's event
//! high-water mark, where the mark starts, and conditional deletes.

use rota_core::JobSpec;

use super::*;

fn on_spec(name: &str) -> JobSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "schedule": {"on": {"event": "deploy.finished", "data": {"env": "prod"}}},
        "executor": {"type": "shell", "command": "true"},
    }))
    .expect("valid on spec")
}

fn event_fire(id: u128, job: &str, revision: u64) -> rota_core::Fire {
    let mut f = fire(id, job, 0, Trigger::Event);
    f.event_revision = Some(revision);
    f
}

fn mark(h: &Harness, job: &str) -> Option<u64> {
    h.store.get_job(job).unwrap().unwrap().last_event_revision
}

#[test]
fn an_event_revision_fires_a_job_once() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    h.run(Command::PutJob { spec: on_spec("b") });
    let first = fired(h.run(Command::Fire {
        fires: vec![event_fire(1, "a", 10), event_fire(2, "b", 10)],
    }));
    assert!(first.iter().all(|o| o.created), "{first:?}");
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(
        (exec.trigger, exec.event_revision),
        (Trigger::Event, Some(10))
    );
    assert_eq!(mark(&h, "a"), Some(10));
    h.events();

    // A new leader fires the same event again with another id: the first
    // execution is named, nothing is created or announced.
    let again = fired(h.run(Command::Fire {
        fires: vec![event_fire(3, "a", 10)],
    }));
    assert_eq!((again[0].id, again[0].created), (Ulid(1), false));
    assert!(h.events().is_empty());
    assert!(h.store.get_execution(Ulid(3)).unwrap().is_none());
    assert_eq!(h.store.list_executions("a", 10, None).unwrap().len(), 1);
}

fn event_fire_at(id: u128, job: &str, revision: u64, seq: u32) -> rota_core::Fire {
    let mut f = event_fire(id, job, revision);
    f.event_seq = seq;
    f
}

#[test]
fn events_sharing_a_revision_fire_a_job_once_each() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    let first = fired(h.run(Command::Fire {
        fires: vec![event_fire_at(1, "a", 10, 0), event_fire_at(2, "a", 10, 2)],
    }));
    assert!(first.iter().all(|o| o.created), "{first:?}");
    let exec = h.store.get_execution(Ulid(2)).unwrap().unwrap();
    assert_eq!((exec.event_revision, exec.event_seq), (Some(10), 2));
    let job = h.store.get_job("a").unwrap().unwrap();
    assert_eq!(job.event_mark(), Some((10, 2)));

    // Each event again names its own run; the one in between is below the mark.
    let again = fired(h.run(Command::Fire {
        fires: vec![
            event_fire_at(3, "a", 10, 2),
            event_fire_at(4, "a", 10, 0),
            event_fire_at(5, "a", 10, 1),
        ],
    }));
    let named: Vec<_> = again.iter().map(|o| (o.id, o.created)).collect();
    assert_eq!(
        named,
        vec![(Ulid(2), false), (Ulid(1), false), (Ulid(5), false)]
    );
    // A later event of the same revision still fires.
    let later = fired(h.run(Command::Fire {
        fires: vec![event_fire_at(6, "a", 10, 3)],
    }));
    assert!(later[0].created);
    assert_eq!(h.store.list_executions("a", 10, None).unwrap().len(), 3);
}

#[test]
fn a_mark_without_a_seq_covers_its_whole_revision() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    // The job's own entry: every event of it was published before the trigger.
    let created = h.index;
    assert_eq!(
        h.store.get_job("a").unwrap().unwrap().event_mark(),
        Some((created, u32::MAX))
    );
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![event_fire_at(1, "a", created, 5)],
    }));
    assert!(!outcomes[0].created);
    // A record written before marks had a seq reads the same way.
    let mut old: serde_json::Value =
        serde_json::to_value(h.store.get_job("a").unwrap().unwrap()).unwrap();
    old["last_event_revision"] = serde_json::json!(10);
    assert!(old.get("last_event_seq").is_none(), "{old}");
    let old: rota_core::JobRecord = serde_json::from_value(old).unwrap();
    assert!(old.event_handled((10, 7)));
    assert!(!old.event_handled((11, 0)));
}

#[test]
fn event_fires_at_or_below_the_mark_are_refused() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    // The mark starts at the job's own entry: older events never fire it.
    assert_eq!(mark(&h, "a"), Some(1));
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![
            event_fire(1, "a", 1),
            event_fire(2, "a", 5),
            event_fire(3, "a", 4),
        ],
    }));
    let created: Vec<_> = outcomes.iter().map(|o| (o.id, o.created)).collect();
    assert_eq!(
        created,
        vec![(Ulid(1), false), (Ulid(2), true), (Ulid(3), false)]
    );
    assert_eq!(mark(&h, "a"), Some(5));
    // Schedule marks are untouched by event fires.
    assert_eq!(
        h.store.get_job("a").unwrap().unwrap().last_scheduled_at,
        None
    );
}

#[test]
fn the_mark_alone_refuses_an_event_whose_row_was_pruned() {
    let mut h = Harness::new();
    let mut spec = on_spec("a");
    spec.history_limit = Some(1);
    h.run(Command::PutJob { spec });
    for (id, revision) in [(1, 10), (2, 11)] {
        fired(h.run(Command::Fire {
            fires: vec![event_fire(id, "a", revision)],
        }));
        h.run(Command::Finish {
            finishes: vec![finish(id, 1, ExecStatus::Succeeded, 0)],
        });
    }
    // Execution 1 was pruned with its row.
    assert!(h.store.get_execution(Ulid(1)).unwrap().is_none());
    let again = fired(h.run(Command::Fire {
        fires: vec![event_fire(3, "a", 10)],
    }));
    assert!(!again[0].created);
    assert!(h.store.get_execution(Ulid(3)).unwrap().is_none());
}

#[test]
fn the_mark_follows_the_trigger_and_skips_a_pause() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    fired(h.run(Command::Fire {
        fires: vec![event_fire(1, "a", 7)],
    }));
    // The same trigger put again keeps the mark.
    h.run(Command::PutJob { spec: on_spec("a") });
    assert_eq!(mark(&h, "a"), Some(7));
    // Paused from 4 to 5: resuming skips the events in between.
    h.run(Command::SetPaused {
        name: "a".into(),
        paused: true,
    });
    h.run(Command::SetPaused {
        name: "a".into(),
        paused: false,
    });
    assert_eq!(mark(&h, "a"), Some(7), "the mark never goes back");
    for _ in 0..5 {
        h.run(Command::Heartbeat { node: "n".into() });
    }
    h.run(Command::SetPaused {
        name: "a".into(),
        paused: false,
    });
    assert_eq!(mark(&h, "a"), Some(h.index));
    // A changed trigger starts over at its own entry; another schedule has none.
    let mut other = on_spec("a");
    other.schedule = serde_json::from_value(serde_json::json!({"on": {"event": "x.y"}})).unwrap();
    h.run(Command::PutJob { spec: other });
    assert_eq!(mark(&h, "a"), Some(h.index));
    h.run(Command::PutJob { spec: spec("a") });
    assert_eq!(mark(&h, "a"), None);
}

#[test]
fn deleting_the_job_clears_its_event_rows() {
    let mut h = Harness::new();
    h.run(Command::PutJob { spec: on_spec("a") });
    fired(h.run(Command::Fire {
        fires: vec![event_fire(1, "a", 10)],
    }));
    h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: None,
    });
    h.run(Command::PutJob { spec: on_spec("a") });
    // The new job's mark is its own entry, past 10 here only if the log is: fire 20.
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![event_fire(2, "a", 20)],
    }));
    assert!(outcomes[0].created);
    assert_eq!(h.store.list_executions("a", 10, None).unwrap().len(), 1);
}

#[test]
fn a_conditional_delete_leaves_a_changed_job() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let revision = h.store.get_job("a").unwrap().unwrap().revision;
    let mut changed = spec("a");
    changed.priority = 1;
    h.run(Command::PutJob { spec: changed });
    let answer = h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: Some(revision),
    });
    assert_eq!(answer, Response::JobDeleted { existed: false });
    assert!(h.store.get_job("a").unwrap().is_some());
    let revision = h.store.get_job("a").unwrap().unwrap().revision;
    let answer = h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: Some(revision),
    });
    assert_eq!(answer, Response::JobDeleted { existed: true });
    assert!(h.store.get_job("a").unwrap().is_none());
    // Idempotent: the same delete again changes nothing.
    let answer = h.run(Command::DeleteJob {
        name: "a".into(),
        if_revision: Some(revision),
    });
    assert_eq!(answer, Response::JobDeleted { existed: false });
}
