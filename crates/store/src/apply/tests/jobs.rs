//! Jobs: create, replace, pause, delete (and what a delete removes).

use super::*;

#[test]
fn put_job_creates_then_replaces_keeping_created_at_and_high_water_mark() {
    let mut h = Harness::new();
    let Response::JobPut { created, job } = h.run(Command::PutJob { spec: spec("a") }) else {
        panic!("expected JobPut");
    };
    assert!(created);
    assert_eq!(
        (job.created_at, job.updated_at, job.revision),
        (t(1), t(1), 1)
    );

    h.run(Command::Fire {
        fires: vec![fire(1, "a", 100, Trigger::Schedule)],
    });
    let mut replaced = spec("a");
    replaced.priority = 7;
    let Response::JobPut { created, job } = h.run(Command::PutJob { spec: replaced }) else {
        panic!("expected JobPut");
    };
    assert!(!created);
    assert_eq!(job.created_at, t(1));
    assert_eq!(job.updated_at, t(3));
    assert_eq!(job.revision, 3);
    assert_eq!(job.spec.priority, 7);
    assert_eq!(job.last_scheduled_at, Some(t(100)));
    assert_eq!(h.store.get_job("a").unwrap().unwrap(), *job);

    let kinds: Vec<_> = h
        .events()
        .iter()
        .map(|e| (e.revision, matches!(e.kind, EventKind::JobPut(_))))
        .collect();
    assert_eq!(kinds, vec![(1, true), (2, false), (3, true)]);
}

#[test]
fn reapplying_an_unchanged_job_keeps_its_record_and_publishes_nothing() {
    let mut h = Harness::new();
    let Response::JobPut { job: first, .. } = h.run(Command::PutJob { spec: spec("a") }) else {
        panic!("expected JobPut");
    };
    h.all_events();

    let Response::JobPut { created, job } = h.run(Command::PutJob { spec: spec("a") }) else {
        panic!("expected JobPut");
    };
    assert!(!created);
    assert_eq!(job, first, "the answer is the stored job as it was");
    assert_eq!((job.revision, job.updated_at), (1, t(1)));
    assert_eq!(h.store.get_job("a").unwrap().unwrap(), *first);
    assert!(h.all_events().is_empty(), "no job.updated, no JobPut");

    // A change, however small, is still a new revision.
    let mut changed = spec("a");
    changed.description = Some("now described".into());
    let Response::JobPut { job, .. } = h.run(Command::PutJob { spec: changed }) else {
        panic!("expected JobPut");
    };
    assert_eq!(
        (job.revision, job.updated_at, job.created_at),
        (3, t(3), t(1))
    );
    assert!(!h.all_events().is_empty());
}

#[test]
fn set_paused_changes_the_flag_and_the_anchor() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let Response::JobPut { created, job } = h.run(Command::SetPaused {
        name: "a".into(),
        paused: true,
    }) else {
        panic!("expected JobPut");
    };
    assert!(!created);
    assert!(job.spec.paused);
    assert_eq!(
        (job.updated_at, job.revision, job.created_at),
        (t(2), 2, t(1))
    );
    assert_eq!(
        h.run(Command::SetPaused {
            name: "nope".into(),
            paused: false
        }),
        Response::NotFound {
            what: "job \"nope\"".into()
        }
    );
}

#[test]
fn delete_job_removes_its_executions_outputs_and_index_rows() {
    let mut h = Harness::new();
    put(&mut h, "a");
    put(&mut h, "a-b");
    h.run(Command::Fire {
        fires: vec![
            fire(1, "a", 1, Trigger::Schedule),
            fire(2, "a", 2, Trigger::Manual),
            fire(3, "a-b", 1, Trigger::Schedule),
        ],
    });
    let mut done = finish(1, 1, ExecStatus::Succeeded, 3);
    done.output = Some("out".into());
    h.run(Command::Finish {
        finishes: vec![done],
    });
    h.events();

    assert_eq!(
        h.run(Command::DeleteJob {
            name: "a".into(),
            if_revision: None
        }),
        Response::JobDeleted { existed: true }
    );
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0].kind, EventKind::JobDeleted { name } if name == "a"));
    assert!(h.store.get_job("a").unwrap().is_none());
    assert!(h.store.get_execution(Ulid(1)).unwrap().is_none());
    assert!(h.store.get_output(Ulid(1)).unwrap().is_none());
    assert!(h.store.list_executions("a", 10, None).unwrap().is_empty());
    let active: Vec<_> = h
        .store
        .active_executions()
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(active, vec![Ulid(3)], "the other job's run is untouched");

    // A job created again under the name starts from a clean slate: the instant fires.
    put(&mut h, "a");
    let outcomes = fired(h.run(Command::Fire {
        fires: vec![fire(4, "a", 1, Trigger::Schedule)],
    }));
    assert!(outcomes[0].created);
    h.events();
    assert_eq!(
        h.run(Command::DeleteJob {
            name: "zzz".into(),
            if_revision: None
        }),
        Response::JobDeleted { existed: false }
    );
    assert!(h.events().is_empty());
}
