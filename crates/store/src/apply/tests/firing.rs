//! Fires: idempotence per instant, the high-water mark, refusals, the executions a fire creates.

use rota_core::{Finish, Fire, Start};

use super::*;

#[test]
fn schedule_fire_is_idempotent_per_instant() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.events();
    let first = fired(h.run(Command::Fire {
        fires: vec![fire(1, "a", 100, Trigger::Schedule)],
    }));
    assert_eq!(first[0].id, Ulid(1));
    assert!(first[0].created);
    assert_eq!(h.events().len(), 1);

    // A new leader fires the same instant again with another id, as schedule or catchup.
    for trigger in [Trigger::Schedule, Trigger::Catchup] {
        let again = fired(h.run(Command::Fire {
            fires: vec![fire(2, "a", 100, trigger)],
        }));
        assert_eq!(again[0].id, Ulid(1), "the existing execution is named");
        assert!(!again[0].created);
    }
    assert!(h.events().is_empty(), "nothing changed, nothing announced");
    assert!(h.store.get_execution(Ulid(2)).unwrap().is_none());
    assert_eq!(h.store.list_executions("a", 10, None).unwrap().len(), 1);
}

#[test]
fn schedule_fire_below_the_high_water_mark_is_refused() {
    let mut h = Harness::new();
    put(&mut h, "a");
    fired(h.run(Command::Fire {
        fires: vec![fire(1, "a", 100, Trigger::Schedule)],
    }));
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![
            fire(2, "a", 50, Trigger::Catchup),
            fire(3, "a", 150, Trigger::Schedule),
            // Manual runs are not instants of the schedule: no mark applies.
            fire(4, "a", 10, Trigger::Manual),
        ],
    }));
    let created: Vec<_> = outcomes.iter().map(|o| (o.id, o.created)).collect();
    assert_eq!(
        created,
        vec![(Ulid(2), false), (Ulid(3), true), (Ulid(4), true)]
    );
    assert_eq!(
        h.store.get_job("a").unwrap().unwrap().last_scheduled_at,
        Some(t(150))
    );
}

#[test]
fn the_high_water_mark_alone_refuses_an_instant_whose_row_was_pruned() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 1),
    });
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 100, Trigger::Schedule)],
    });
    h.run(Command::Finish {
        finishes: vec![finish(1, 1, ExecStatus::Succeeded, 101)],
    });
    // A manual run pushes the finished scheduled one out of the history, and with
    // it the instant's dedup row; the mark still sits exactly at that instant.
    h.run(Command::Fire {
        fires: vec![fire(2, "a", 102, Trigger::Manual)],
    });
    assert!(h.store.get_execution(Ulid(1)).unwrap().is_none());
    let again = fired(h.run(Command::Fire {
        fires: vec![fire(3, "a", 100, Trigger::Schedule)],
    }));
    assert_eq!((again[0].id, again[0].created), (Ulid(3), false));
    assert!(h.store.get_execution(Ulid(3)).unwrap().is_none());
}

#[test]
fn fire_for_an_unknown_job_is_refused_and_the_rest_applies() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![
            fire(1, "ghost", 100, Trigger::Schedule),
            fire(2, "a", 100, Trigger::Schedule),
        ],
    }));
    assert_eq!(
        outcomes.iter().map(|o| o.created).collect::<Vec<_>>(),
        vec![false, true]
    );
    assert!(h.store.get_execution(Ulid(1)).unwrap().is_none());
}

#[test]
fn fire_creates_queued_running_or_skipped_executions() {
    let mut h = Harness::new();
    let mut s = spec("a");
    s.priority = 5;
    h.run(Command::PutJob { spec: s });
    let mut running = fire(2, "a", 200, Trigger::Schedule);
    running.start = Some(StartInfo {
        node: "n1".into(),
        at: t(201),
    });
    let mut skipped = fire(3, "a", 300, Trigger::Schedule);
    skipped.skip_reason = Some("overlap: previous run still running".into());
    skipped.start = running.start.clone();
    let at = t(400);
    h.run_at(
        at,
        Command::Fire {
            fires: vec![fire(1, "a", 100, Trigger::Schedule), running, skipped],
        },
    );

    let queued = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(queued.status, ExecStatus::Queued);
    assert_eq!((queued.attempt, queued.priority), (1, 5));
    assert_eq!(queued.node, None);

    let running = h.store.get_execution(Ulid(2)).unwrap().unwrap();
    assert_eq!(running.status, ExecStatus::Running);
    assert_eq!(running.node.as_deref(), Some("n1"));
    assert_eq!(running.started_at, Some(t(201)));

    let skipped = h.store.get_execution(Ulid(3)).unwrap().unwrap();
    assert_eq!(skipped.status, ExecStatus::Skipped);
    assert_eq!(skipped.finished_at, Some(at));
    assert_eq!(
        skipped.error.as_deref(),
        Some("overlap: previous run still running")
    );
    assert_eq!(skipped.started_at, None);

    let active: Vec<_> = h
        .store
        .active_executions()
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(active, vec![Ulid(1), Ulid(2)]);
    let history: Vec<_> = h
        .store
        .list_executions("a", 10, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(history, vec![Ulid(3), Ulid(2), Ulid(1)]);
}

#[test]
fn a_taken_id_is_never_overwritten() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 100, Trigger::Manual)],
    });
    h.run(Command::Finish {
        finishes: vec![finish(1, 1, ExecStatus::Succeeded, 101)],
    });
    let again = fired(h.run(Command::Fire {
        fires: vec![fire(1, "a", 500, Trigger::Manual)],
    }));
    assert!(!again[0].created);
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(
        (exec.status, exec.scheduled_at),
        (ExecStatus::Succeeded, t(100))
    );
}

/// A fire committed ahead of its instant, placed on `node`.
fn ahead(id: u128, job: &str, at: i64, node: &str) -> Fire {
    Fire {
        start: Some(StartInfo {
            node: node.into(),
            at: t(at),
        }),
        ahead: true,
        ..fire(id, job, at, Trigger::Schedule)
    }
}

/// Node `node` reports that it started execution 1 at `at`.
fn start_on(node: &str, at: i64) -> Command {
    Command::Start {
        starts: vec![Start {
            id: Ulid(1),
            attempt: 1,
            node: node.into(),
            at: t(at),
        }],
    }
}

fn published(h: &Harness, id: u128) -> Vec<String> {
    let key = Ulid(id).to_string();
    h.store
        .events_after(0, &|e| e.key == key, 1000)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

#[test]
fn a_fire_ahead_is_queued_on_its_node_until_that_node_starts_it() {
    let mut h = Harness::new();
    put(&mut h, "a");
    fired(h.run(Command::Fire {
        fires: vec![ahead(1, "a", 100, "n2")],
    }));
    let e = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Queued);
    assert_eq!(e.placed_on(), Some("n2"));
    assert_eq!(e.started_at, None);
    // The instant is taken like any other.
    assert_eq!(
        h.store.get_job("a").unwrap().unwrap().last_scheduled_at,
        Some(t(100))
    );
    assert_eq!(published(&h, 1), vec!["execution.queued"]);

    // Only the node it is placed on may start it.
    h.run(start_on("n3", 100));
    assert!(h
        .store
        .get_execution(Ulid(1))
        .unwrap()
        .unwrap()
        .is_placed_ahead());
    h.run(start_on("n2", 101));
    let e = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Running);
    assert_eq!(
        (e.node.as_deref(), e.started_at),
        (Some("n2"), Some(t(101)))
    );
    assert_eq!(
        published(&h, 1),
        vec!["execution.queued", "execution.started"]
    );
}

#[test]
fn a_run_placed_ahead_that_ends_before_its_start_is_committed_still_says_it_started() {
    let mut h = Harness::new();
    put(&mut h, "a");
    fired(h.run(Command::Fire {
        fires: vec![ahead(1, "a", 100, "n2")],
    }));
    h.run(Command::Finish {
        finishes: vec![Finish {
            started_at: Some(t(100)),
            ..finish(1, 1, ExecStatus::Succeeded, 101)
        }],
    });
    let e = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Succeeded);
    assert_eq!(e.started_at, Some(t(100)));
    assert_eq!(
        published(&h, 1),
        vec![
            "execution.queued",
            "execution.started",
            "execution.finished"
        ]
    );
    // Its start, arriving late, changes nothing.
    h.run(start_on("n2", 100));
    assert_eq!(
        h.store.get_execution(Ulid(1)).unwrap().unwrap().status,
        ExecStatus::Succeeded
    );
}

#[test]
fn a_new_incarnation_loses_the_runs_placed_on_the_earlier_one_ahead() {
    let mut h = Harness::new();
    put(&mut h, "a");
    fired(h.run(Command::Fire {
        fires: vec![ahead(1, "a", 100, "n2")],
    }));
    register(&mut h, "n2", 5);
    let e = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Lost);
}
