//! The semantics of each command, one behaviour per test.

use rota_core::{Command, EventKind, ExecStatus, FireOutcome, Response, StartInfo, Trigger};
use ulid::Ulid;

use crate::test_support::{finish, fire, spec, spec_with_history, t, Harness};

fn fired(response: Response) -> Vec<FireOutcome> {
    match response {
        Response::Fired { outcomes } => outcomes,
        other => panic!("expected Fired, got {other:?}"),
    }
}

fn put(h: &mut Harness, name: &str) {
    h.run(Command::PutJob { spec: spec(name) });
}

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

#[test]
fn history_is_pruned_oldest_terminal_first_and_keeps_active_ones() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 2),
    });
    // 1 stays running; 2 and 3 finish.
    h.run(Command::Fire {
        fires: vec![
            fire(1, "a", 1, Trigger::Schedule),
            fire(2, "a", 2, Trigger::Schedule),
            fire(3, "a", 3, Trigger::Schedule),
        ],
    });
    h.run(Command::Finish {
        finishes: vec![
            finish(2, 1, ExecStatus::Succeeded, 10),
            finish(3, 1, ExecStatus::Failed, 10),
        ],
    });

    h.run(Command::Fire {
        fires: vec![fire(4, "a", 4, Trigger::Schedule)],
    });
    // 4 executions, limit 2: the two oldest terminal ones (2, 3) go; 1 is active.
    let ids: Vec<_> = h
        .store
        .list_executions("a", 10, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![Ulid(4), Ulid(1)]);
    assert!(h.store.get_execution(Ulid(2)).unwrap().is_none());

    // The pruned instant stays refused (high-water mark), though its index row is gone.
    let again = fired(h.run(Command::Fire {
        fires: vec![fire(9, "a", 2, Trigger::Schedule)],
    }));
    assert!(!again[0].created);

    // Once 1 ends, the next fire prunes it.
    h.run(Command::Finish {
        finishes: vec![finish(1, 1, ExecStatus::Succeeded, 20)],
    });
    h.run(Command::Fire {
        fires: vec![fire(5, "a", 5, Trigger::Schedule)],
    });
    let ids: Vec<_> = h
        .store
        .list_executions("a", 10, None)
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![Ulid(5), Ulid(4)]);
}

#[test]
fn pruning_drops_the_output_of_pruned_executions() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 1),
    });
    h.run(Command::Fire {
        fires: vec![fire(1, "a", 1, Trigger::Schedule)],
    });
    let mut done = finish(1, 1, ExecStatus::Succeeded, 5);
    done.output = Some("hello\n".into());
    h.run(Command::Finish {
        finishes: vec![done],
    });
    assert_eq!(
        h.store.get_output(Ulid(1)).unwrap().as_deref(),
        Some("hello\n")
    );
    h.run(Command::Fire {
        fires: vec![fire(2, "a", 2, Trigger::Schedule)],
    });
    assert!(h.store.get_output(Ulid(1)).unwrap().is_none());
}

#[test]
fn list_executions_pages_with_before_and_limit() {
    let mut h = Harness::new();
    put(&mut h, "a");
    put(&mut h, "b");
    h.run(Command::Fire {
        fires: (1..=5)
            .map(|i| fire(i, "a", i as i64, Trigger::Schedule))
            .chain([fire(9, "b", 1, Trigger::Schedule)])
            .collect(),
    });
    let page: Vec<_> = h
        .store
        .list_executions("a", 2, None)
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert_eq!(page, vec![5, 4]);
    let page: Vec<_> = h
        .store
        .list_executions("a", 2, Some(Ulid(4)))
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert_eq!(page, vec![3, 2]);
    let page: Vec<_> = h
        .store
        .list_executions("a", 10, Some(Ulid(1)))
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert!(page.is_empty());
    assert!(h
        .store
        .list_executions("nobody", 10, None)
        .unwrap()
        .is_empty());
}

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
        h.run(Command::DeleteJob { name: "a".into() }),
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
        h.run(Command::DeleteJob { name: "zzz".into() }),
        Response::JobDeleted { existed: false }
    );
    assert!(h.events().is_empty());
}

#[test]
fn kv_put_and_delete_compare_and_set_on_mod_revision() {
    let mut h = Harness::new();
    let put = |value: &str, if_revision| Command::KvPut {
        key: "k".into(),
        value: value.into(),
        if_revision,
    };
    // 0 = must not exist.
    assert_eq!(
        h.run(put("v1", Some(0))),
        Response::KvPut {
            key: "k".into(),
            revision: 1
        }
    );
    assert_eq!(
        h.run(put("v2", Some(0))),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 1
        }
    );
    assert_eq!(
        h.run(put("v2", Some(1))),
        Response::KvPut {
            key: "k".into(),
            revision: 3
        }
    );
    h.run(put("v3", None));
    let entry = h.store.kv_get("k").unwrap().unwrap();
    assert_eq!(
        (
            entry.value.as_str(),
            entry.mod_revision,
            entry.create_revision,
            entry.version
        ),
        ("v3", 4, 1, 3)
    );

    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: Some(3)
        }),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 4
        }
    );
    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: Some(4)
        }),
        Response::KvDeleted {
            key: "k".into(),
            revision: 6,
            deleted: true
        }
    );
    assert!(h.store.kv_get("k").unwrap().is_none());
    h.events();
    assert_eq!(
        h.run(Command::KvDelete {
            key: "k".into(),
            if_revision: None
        }),
        Response::KvDeleted {
            key: "k".into(),
            revision: 7,
            deleted: false
        }
    );
    assert!(h.events().is_empty());
    assert_eq!(
        h.run(Command::KvPut {
            key: "k".into(),
            value: "x".into(),
            if_revision: Some(4)
        }),
        Response::RevisionMismatch {
            key: "k".into(),
            current: 0
        }
    );
    // Re-created: a new create_revision and version 1.
    h.run(put("again", Some(0)));
    let entry = h.store.kv_get("k").unwrap().unwrap();
    assert_eq!((entry.create_revision, entry.version), (9, 1));
}

#[test]
fn kv_list_returns_a_prefix_in_key_order() {
    let mut h = Harness::new();
    for key in ["b/2", "a", "b/1", "b0", "c"] {
        h.run(Command::KvPut {
            key: key.into(),
            value: key.into(),
            if_revision: None,
        });
    }
    let keys: Vec<_> = h
        .store
        .kv_list("b/")
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["b/1", "b/2"]);
    assert_eq!(h.store.kv_list("").unwrap().len(), 5);
}

#[test]
fn a_session_retry_is_answered_once_and_older_requests_are_stale() {
    let mut h = Harness::new();
    let cmd = |v: &str| Command::KvPut {
        key: "k".into(),
        value: v.into(),
        if_revision: None,
    };
    let first = h.run_session("c1", 5, t(1), cmd("one"));
    assert_eq!(
        first,
        Response::KvPut {
            key: "k".into(),
            revision: 1
        }
    );
    h.events();
    // The retry of seq 5 (even with another body) answers the first answer.
    assert_eq!(h.run_session("c1", 5, t(2), cmd("other")), first);
    assert!(h.events().is_empty());
    assert_eq!(h.store.kv_get("k").unwrap().unwrap().value, "one");

    assert_eq!(
        h.run_session("c1", 4, t(3), cmd("old")),
        Response::StaleSession {
            client_id: "c1".into(),
            last_seq: 5
        }
    );
    // Another client, and the next seq of this one, apply normally.
    assert!(matches!(
        h.run_session("c2", 1, t(4), cmd("two")),
        Response::KvPut { revision: 4, .. }
    ));
    assert!(matches!(
        h.run_session("c1", 6, t(5), cmd("three")),
        Response::KvPut { revision: 5, .. }
    ));
}

#[test]
fn idle_sessions_expire_at_the_sweep_index() {
    let mut h = Harness::new();
    let cmd = || Command::KvPut {
        key: "k".into(),
        value: "v".into(),
        if_revision: None,
    };
    h.run_session("old", 1, t(0), cmd());
    // Jump to just before a sweep index: the sweep runs at index 1024.
    h.index = super::SESSION_SWEEP_EVERY - 2;
    let fresh_time = t(0) + super::SESSION_TTL;
    h.run_session("fresh", 1, fresh_time, cmd());
    let day_later = t(1) + super::SESSION_TTL;
    h.run_at(day_later, cmd());
    assert_eq!(h.index, super::SESSION_SWEEP_EVERY);
    // "old" was idle for more than 24h and is forgotten: seq 1 applies again;
    // "fresh" is kept: seq 1 is answered from the session.
    assert!(matches!(
        h.run_session("old", 1, day_later, cmd()),
        Response::KvPut { revision, .. } if revision == super::SESSION_SWEEP_EVERY + 1
    ));
    assert!(matches!(
        h.run_session("fresh", 1, day_later, cmd()),
        Response::KvPut { revision, .. } if revision == super::SESSION_SWEEP_EVERY - 1
    ));
}

#[test]
fn batch_applies_in_order_under_one_session() {
    let mut h = Harness::new();
    let batch = Command::Batch {
        commands: vec![
            Command::PutJob { spec: spec("a") },
            Command::Fire {
                fires: vec![fire(1, "a", 1, Trigger::Manual)],
            },
            Command::KvPut {
                key: "k".into(),
                value: "v".into(),
                if_revision: Some(0),
            },
            Command::KvPut {
                key: "k".into(),
                value: "w".into(),
                if_revision: Some(0),
            },
        ],
    };
    let Response::Batch { responses } = h.run_session("c", 1, t(1), batch.clone()) else {
        panic!("expected Batch");
    };
    assert_eq!(responses.len(), 4);
    assert!(matches!(
        responses[0],
        Response::JobPut { created: true, .. }
    ));
    assert!(matches!(&responses[1], Response::Fired { outcomes } if outcomes[0].created));
    assert!(matches!(responses[2], Response::KvPut { revision: 1, .. }));
    assert!(matches!(
        responses[3],
        Response::RevisionMismatch { current: 1, .. }
    ));
    let events = h.events();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.revision == 1));

    let Response::Batch { responses: again } = h.run_session("c", 1, t(2), batch) else {
        panic!("expected Batch");
    };
    assert_eq!(again, responses);
    assert!(h.events().is_empty());
}

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

fn register(h: &mut Harness, node: &str, incarnation: u128) -> Response {
    h.run(Command::RegisterNode {
        node: node.into(),
        incarnation: Ulid(incarnation),
        tags: [("zone".to_string(), "a".to_string())].into(),
        max_running: 4,
        url: Some("http://127.0.0.1:7702".into()),
    })
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

#[test]
fn requests_of_several_clients_in_one_entry_apply_each_with_its_session() {
    let mut h = Harness::new();
    let req = |client: &str, seq: u64, key: &str, value: &str| rota_core::ClientRequest {
        session: Some(rota_core::SessionKey {
            client_id: client.into(),
            seq,
        }),
        at: t(7),
        command: Command::KvPut {
            key: key.into(),
            value: value.into(),
            if_revision: None,
        },
    };
    let first = h.run(Command::Requests {
        requests: vec![req("a", 1, "x", "1"), req("b", 1, "y", "2")],
    });
    let Response::Batch { responses } = first else {
        panic!("expected Batch, got {first:?}");
    };
    assert_eq!(
        responses,
        vec![
            Response::KvPut {
                key: "x".into(),
                revision: 1
            },
            Response::KvPut {
                key: "y".into(),
                revision: 1
            },
        ]
    );
    // A retry of a's request in another batch is answered from its session; b's
    // next request applies.
    let second = h.run(Command::Requests {
        requests: vec![req("a", 1, "x", "changed"), req("b", 2, "x", "3")],
    });
    let Response::Batch { responses } = second else {
        panic!("expected Batch, got {second:?}");
    };
    assert_eq!(
        responses[0],
        Response::KvPut {
            key: "x".into(),
            revision: 1
        }
    );
    assert_eq!(
        responses[1],
        Response::KvPut {
            key: "x".into(),
            revision: 2
        }
    );
    let x = h.store.kv_get("x").unwrap().unwrap();
    assert_eq!((x.value.as_str(), x.mod_revision, x.version), ("3", 2, 2));
}
