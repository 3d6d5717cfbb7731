//! Executions: start, finish and retry, stale reports, cancel.

use super::*;

#[test]
fn start_applies_only_to_a_queued_execution_of_that_attempt() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 1, Trigger::Schedule)],
    });
    h.events();
    let start = |attempt| rota_core::Start {
        id: Ulid(1),
        attempt,
        node: "n1".into(),
        at: t(50),
    };
    h.run(Command::Start {
        starts: vec![start(2)],
    });
    assert!(
        h.events().is_empty(),
        "a start for another attempt is ignored"
    );
    h.run(Command::Start {
        starts: vec![start(1)],
    });
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(exec.status, ExecStatus::Running);
    assert_eq!(
        (exec.node.as_deref(), exec.started_at),
        (Some("n1"), Some(t(50)))
    );
    assert_eq!(h.events().len(), 1);
    h.run(Command::Start {
        starts: vec![start(1)],
    });
    assert!(
        h.events().is_empty(),
        "a running execution does not start again"
    );
}

#[test]
fn finish_with_retry_queues_the_next_attempt() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let mut f = fire(1, "a", 1, Trigger::Schedule);
    f.start = Some(StartInfo {
        node: "n1".into(),
        at: t(2),
    });
    h.run(Command::Fire { fires: vec![f] });
    let mut failed = finish(1, 1, ExecStatus::Failed, 3);
    failed.exit_code = Some(2);
    failed.error = Some("exit status 2".into());
    failed.output = Some("partial".into());
    failed.retry_at = Some(t(10));
    h.run(Command::Finish {
        finishes: vec![failed],
    });

    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(exec.status, ExecStatus::Queued);
    assert_eq!(exec.attempt, 2);
    assert_eq!(exec.next_attempt_at, Some(t(10)));
    assert_eq!(
        (
            exec.node.clone(),
            exec.started_at,
            exec.finished_at,
            exec.exit_code,
            exec.error.clone()
        ),
        (None, None, None, None, None)
    );
    assert_eq!(exec.attempts.len(), 1);
    let earlier = &exec.attempts[0];
    assert_eq!(earlier.attempt, 1);
    assert_eq!(earlier.status, ExecStatus::Failed);
    assert_eq!(earlier.node.as_deref(), Some("n1"));
    assert_eq!(
        (earlier.started_at, earlier.finished_at),
        (Some(t(2)), Some(t(3)))
    );
    assert_eq!(earlier.exit_code, Some(2));
    assert!(h.store.get_output(Ulid(1)).unwrap().is_none());
    assert_eq!(h.store.active_executions().unwrap().len(), 1);

    // The second attempt starts and succeeds.
    h.run(Command::Start {
        starts: vec![rota_core::Start {
            id: Ulid(1),
            attempt: 2,
            node: "n2".into(),
            at: t(11),
        }],
    });
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(exec.next_attempt_at, None);
    let mut ok = finish(1, 2, ExecStatus::Succeeded, 12);
    ok.exit_code = Some(0);
    ok.output = Some("done".into());
    ok.output_truncated = true;
    h.run(Command::Finish { finishes: vec![ok] });
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!(exec.status, ExecStatus::Succeeded);
    assert_eq!((exec.finished_at, exec.exit_code), (Some(t(12)), Some(0)));
    assert!(exec.output_truncated);
    assert_eq!(
        h.store.get_output(Ulid(1)).unwrap().as_deref(),
        Some("done")
    );
    assert!(h.store.active_executions().unwrap().is_empty());
}

#[test]
fn stale_finish_reports_are_ignored() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 1, Trigger::Schedule)],
    });
    let mut retry = finish(1, 1, ExecStatus::TimedOut, 3);
    retry.retry_at = Some(t(4));
    h.run(Command::Finish {
        finishes: vec![retry],
    });
    h.events();
    // A late duplicate report of attempt 1, and one for an execution that never was.
    h.run(Command::Finish {
        finishes: vec![
            finish(1, 1, ExecStatus::Succeeded, 5),
            finish(77, 1, ExecStatus::Succeeded, 5),
        ],
    });
    assert!(h.events().is_empty());
    let exec = h.store.get_execution(Ulid(1)).unwrap().unwrap();
    assert_eq!((exec.status, exec.attempt), (ExecStatus::Queued, 2));

    h.run(Command::Finish {
        finishes: vec![finish(1, 2, ExecStatus::Failed, 6)],
    });
    h.events();
    // Once terminal, any further report is stale.
    h.run(Command::Finish {
        finishes: vec![finish(1, 2, ExecStatus::Succeeded, 7)],
    });
    assert!(h.events().is_empty());
    assert_eq!(
        h.store.get_execution(Ulid(1)).unwrap().unwrap().status,
        ExecStatus::Failed
    );
}

#[test]
fn cancel_ends_a_queued_run_and_flags_a_running_one() {
    let mut h = Harness::new();
    put(&mut h, "a");
    let mut running = fire(2, "a", 2, Trigger::Schedule);
    running.start = Some(StartInfo {
        node: "n1".into(),
        at: t(2),
    });
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 1, Trigger::Schedule), running],
    });

    let at = t(30);
    let Response::Cancelled { execution } = h.run_at(at, Command::Cancel { id: Ulid(1) }) else {
        panic!("expected Cancelled");
    };
    assert_eq!(execution.status, ExecStatus::Cancelled);
    assert_eq!(execution.finished_at, Some(at));
    assert_eq!(h.store.get_execution(Ulid(1)).unwrap().unwrap(), *execution);

    let Response::Cancelled { execution } = h.run(Command::Cancel { id: Ulid(2) }) else {
        panic!("expected Cancelled");
    };
    assert_eq!(execution.status, ExecStatus::Running);
    assert!(execution.cancel_requested);
    h.events();
    // Asking again changes nothing.
    assert!(matches!(
        h.run(Command::Cancel { id: Ulid(2) }),
        Response::Cancelled { .. }
    ));
    assert!(h.events().is_empty());

    // The node ends it as failed with a retry planned: it ends cancelled regardless.
    let mut failed = finish(2, 1, ExecStatus::Failed, 40);
    failed.retry_at = Some(t(50));
    h.run(Command::Finish {
        finishes: vec![failed],
    });
    let exec = h.store.get_execution(Ulid(2)).unwrap().unwrap();
    assert_eq!((exec.status, exec.attempt), (ExecStatus::Cancelled, 1));
    assert!(h.store.active_executions().unwrap().is_empty());

    assert!(matches!(
        h.run(Command::Cancel { id: Ulid(2) }),
        Response::AlreadyFinished { .. }
    ));
    assert_eq!(
        h.run(Command::Cancel { id: Ulid(99) }),
        Response::NotFound {
            what: format!("execution {}", Ulid(99))
        }
    );
}

#[test]
fn active_executions_page_by_id_and_filter_by_status() {
    let mut h = Harness::new();
    put(&mut h, "a");
    h.run(Command::Fire {
        fires: (1..=5)
            .map(|i| fire(i, "a", i as i64, Trigger::Manual))
            .collect(),
    });
    let start = |id: u128| rota_core::Start {
        id: Ulid(id),
        attempt: 1,
        node: "n1".into(),
        at: t(10),
    };
    h.run(Command::Start {
        starts: vec![start(2), start(4), start(5)],
    });
    h.run(Command::Finish {
        finishes: vec![finish(5, 1, ExecStatus::Succeeded, 11)],
    });
    let page = |status, limit, after: Option<u128>| {
        let (items, next) = h
            .store
            .active_executions_page(status, limit, after.map(Ulid))
            .unwrap();
        let ids: Vec<u128> = items.iter().map(|e| e.id.0).collect();
        (ids, next.map(|n| n.0))
    };
    assert_eq!(page(None, 2, None), (vec![1, 2], Some(2)));
    assert_eq!(page(None, 2, Some(2)), (vec![3, 4], None), "5 has ended");
    assert_eq!(page(None, 10, None), (vec![1, 2, 3, 4], None));
    assert_eq!(
        page(Some(ExecStatus::Running), 10, None),
        (vec![2, 4], None)
    );
    assert_eq!(page(Some(ExecStatus::Queued), 1, None), (vec![1], Some(1)));
    assert_eq!(page(Some(ExecStatus::Queued), 1, Some(1)), (vec![3], None));
}
