//! Scheduler fencing (claims, epochs) and node registration and liveness.

use super::*;

#[test]
fn claim_scheduler_raises_the_epoch_to_the_newest_term_only() {
    let mut h = Harness::new();
    assert_eq!(h.store.scheduler_epoch().unwrap(), 0);
    let claim = |node: &str, term| Command::ClaimScheduler {
        node: node.into(),
        term,
    };
    assert_eq!(
        h.run(claim("n1", 3)),
        Response::SchedulerClaimed { epoch: 3 }
    );
    // A node that lost the lead claims late (forwarded): nothing changes, and the
    // answer tells it that it was superseded.
    assert_eq!(
        h.run(claim("n2", 2)),
        Response::SchedulerClaimed { epoch: 3 }
    );
    assert_eq!(
        h.run(claim("n1", 3)),
        Response::SchedulerClaimed { epoch: 3 }
    );
    assert_eq!(
        h.run(claim("n3", 5)),
        Response::SchedulerClaimed { epoch: 5 }
    );
    assert_eq!(h.store.scheduler_epoch().unwrap(), 5);
    assert!(h.events().is_empty(), "a claim changes no job or run");
}

#[test]
fn a_superseded_scheduler_can_no_longer_fire_or_start() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 10, Trigger::Manual)],
    });
    h.run(Command::ClaimScheduler {
        node: "n1".into(),
        term: 1,
    });
    h.run(Command::ClaimScheduler {
        node: "n2".into(),
        term: 2,
    });
    h.events();

    // The engine of epoch 1 (n1) still has a batch in flight.
    let mut started = fire(2, "a", 100, Trigger::Schedule);
    started.start = Some(StartInfo {
        node: "n1".into(),
        at: t(100),
    });
    let stale = Command::Fenced {
        epoch: 1,
        commands: vec![
            Command::Fire {
                fires: vec![started],
            },
            Command::Start {
                starts: vec![rota_core::Start {
                    id: Ulid(1),
                    attempt: 1,
                    node: "n1".into(),
                    at: t(100),
                }],
            },
        ],
    };
    let Response::Batch { responses } = h.run(stale) else {
        panic!("expected Batch");
    };
    assert!(!fired(responses[0].clone())[0].created);
    assert_eq!(responses[1], Response::Ok);
    assert!(h.events().is_empty(), "nothing fired, nothing started");
    assert!(h.store.get_execution(Ulid(2)).unwrap().is_none());
    assert_eq!(
        h.store.get_execution(Ulid(1)).unwrap().unwrap().status,
        ExecStatus::Queued
    );
    // The refused instant is not burnt: the current scheduler fires it.
    assert_eq!(
        h.store.get_job("a").unwrap().unwrap().last_scheduled_at,
        None
    );

    // The current epoch fires and starts; finishes apply whatever the epoch.
    let current = Command::Fenced {
        epoch: 2,
        commands: vec![Command::Batch {
            commands: vec![Command::Fire {
                fires: vec![fire(3, "a", 100, Trigger::Schedule)],
            }],
        }],
    };
    let Response::Batch { responses } = h.run(current) else {
        panic!("expected Batch");
    };
    let Response::Batch { responses } = &responses[0] else {
        panic!("expected a nested Batch");
    };
    assert!(fired(responses[0].clone())[0].created);
    h.run(Command::Fenced {
        epoch: 0,
        commands: vec![Command::Cancel { id: Ulid(1) }],
    });
    assert_eq!(
        h.store.get_execution(Ulid(1)).unwrap().unwrap().status,
        ExecStatus::Cancelled
    );
}

#[test]
fn a_heartbeat_changes_nothing_and_is_announced() {
    let mut h = Harness::new();
    let before = h.store.list_jobs().unwrap();
    assert_eq!(
        h.run_at(t(42), Command::Heartbeat { node: "n2".into() }),
        Response::Ok
    );
    assert_eq!(h.store.list_jobs().unwrap(), before);
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0].kind, EventKind::Heartbeat { node, at } if node == "n2" && *at == t(42))
    );
}

#[test]
fn a_new_incarnation_loses_the_attempts_of_the_earlier_one() {
    let mut h = Harness::new();
    let mut job = spec("a");
    job.retry = Some(rota_core::RetryPolicy {
        max_attempts: 2,
        initial_delay: rota_core::HumanDuration::from_secs(1),
        max_delay: rota_core::HumanDuration::from_secs(1),
        multiplier: 1.0,
        jitter: false,
    });
    h.run(Command::PutJob { spec: job });
    put(&mut h, "b");
    // One attempt running on n2 (retried), one on n3 (untouched), one of b on n2.
    for (id, job, node) in [(1, "a", "n2"), (2, "a", "n3"), (3, "b", "n2")] {
        let mut f = fire(id, job, id as i64, Trigger::Schedule);
        f.start = Some(StartInfo {
            node: node.into(),
            at: t(5),
        });
        h.run(Command::Fire { fires: vec![f] });
    }
    let Response::NodeRegistered { record, lost } = register(&mut h, "n2", 7) else {
        panic!("expected NodeRegistered");
    };
    assert_eq!(record.max_running, 4);
    assert_eq!(h.store.nodes().unwrap(), vec![*record.clone()]);
    assert_eq!(lost, vec![Ulid(1), Ulid(3)]);
    let retried = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!((retried.status, retried.attempt), (ExecStatus::Queued, 2));
    assert_eq!(retried.attempts[0].status, ExecStatus::Lost);
    let ended = h.store.get_execution(Ulid(3)).unwrap().unwrap();
    assert_eq!(ended.status, ExecStatus::Lost);
    assert_eq!(
        ended.error.as_deref(),
        Some(rota_core::execution::NODE_RESTARTED)
    );
    let other = h.store.get_execution(Ulid(2)).unwrap().unwrap();
    assert_eq!(other.status, ExecStatus::Running);
    let events = h.events();
    assert!(matches!(
        &events.last().unwrap().kind,
        EventKind::NodeRegistered(r) if r.node == "n2" && r.incarnation == Ulid(7)
    ));

    // The same incarnation again (a retried registration) loses nothing.
    let mut f = fire(4, "b", 40, Trigger::Schedule);
    f.start = Some(StartInfo {
        node: "n2".into(),
        at: t(6),
    });
    h.run(Command::Fire { fires: vec![f] });
    let Response::NodeRegistered { lost, .. } = register(&mut h, "n2", 7) else {
        panic!("expected NodeRegistered");
    };
    assert!(lost.is_empty());
    assert_eq!(
        h.store.get_execution(Ulid(4)).unwrap().unwrap().status,
        ExecStatus::Running
    );
}
