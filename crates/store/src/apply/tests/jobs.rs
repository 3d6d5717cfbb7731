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

fn in_set(name: &str, set: &str) -> rota_core::JobSpec {
    let mut s = spec(name);
    s.metadata.insert(
        rota_core::job::APPLY_SET_KEY.into(),
        serde_json::Value::String(set.into()),
    );
    s
}

fn job_names(h: &Harness) -> Vec<String> {
    let mut names = Vec::new();
    h.store
        .for_each_job(&mut |j| names.push(j.spec.name))
        .unwrap();
    names
}

#[test]
fn prune_deletes_only_the_jobs_of_its_apply_set_that_are_not_kept() {
    let mut h = Harness::new();
    for s in [
        in_set("a", "prod"),
        in_set("b", "prod"),
        in_set("c", "prod"),
        in_set("d", "staging"),
        spec("e"),
    ] {
        h.run(Command::PutJob { spec: s });
    }
    h.run(Command::Fire {
        fires: vec![fire(1, "b", 100, Trigger::Schedule)],
    });
    h.all_events();

    // The file now holds a and a new f: b and c go, d (another set) and e (made
    // without a set) stay.
    let Response::Batch { responses } = h.run(Command::Batch {
        commands: vec![
            Command::PutJob {
                spec: in_set("a", "prod"),
            },
            Command::PutJob {
                spec: in_set("f", "prod"),
            },
            Command::PruneJobs {
                apply_set: "prod".into(),
                keep: vec!["a".into(), "f".into()],
            },
        ],
    }) else {
        panic!("expected Batch");
    };
    assert_eq!(
        responses[2],
        Response::JobsPruned {
            deleted: vec!["b".into(), "c".into()]
        }
    );
    assert_eq!(job_names(&h), ["a", "d", "e", "f"]);
    assert_eq!(
        h.store.get_execution(Ulid(1)).unwrap(),
        None,
        "b's history went with it"
    );
    let deleted: Vec<_> = h
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::JobDeleted { name } => Some((e.revision, name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [(7, "b".to_string()), (7, "c".to_string())]);

    // A set with nothing left to prune deletes nothing.
    let again = h.run(Command::PruneJobs {
        apply_set: "prod".into(),
        keep: vec!["a".into(), "f".into()],
    });
    assert_eq!(again, Response::JobsPruned { deleted: vec![] });
}

#[test]
fn prune_never_touches_a_workflow_s_internal_jobs() {
    let mut h = Harness::new();
    // An internal job cannot be put through the API; the store must still skip
    // one that carries a set's mark.
    h.run(Command::PutJob {
        spec: in_set("ci:lint", "prod"),
    });
    let pruned = h.run(Command::PruneJobs {
        apply_set: "prod".into(),
        keep: vec![],
    });
    assert_eq!(pruned, Response::JobsPruned { deleted: vec![] });
    assert_eq!(job_names(&h), ["ci:lint"]);
}

/// The apply and the prune are one entry: when the entry fails part way (here a
/// damaged job row the prune has to read), neither the jobs it put nor the
/// deletions before the failure are kept.
#[test]
fn an_apply_with_prune_that_fails_leaves_every_job_as_it_was() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: in_set("a", "prod"),
    });
    h.run(Command::PutJob {
        spec: in_set("b", "prod"),
    });
    {
        let txn = h.store.begin_write(redb::Durability::Immediate).unwrap();
        {
            let mut jobs = txn.open_table(crate::tables::JOBS).unwrap();
            jobs.insert(
                "zz-damaged",
                [crate::codec::RECORD_VERSION, b'{'].as_slice(),
            )
            .unwrap();
        }
        txn.commit().unwrap();
    }
    let req = rota_core::ClientRequest {
        session: None,
        at: t(10),
        command: Command::Batch {
            commands: vec![
                Command::PutJob {
                    spec: in_set("c", "prod"),
                },
                Command::PruneJobs {
                    apply_set: "prod".into(),
                    keep: vec!["c".into()],
                },
            ],
        },
    };
    let applied = h.store.apply(
        &[crate::LogEntry {
            index: h.index + 1,
            request: Some(&req),
            members: None,
        }],
        b"meta",
    );
    assert!(
        matches!(applied, Err(crate::StoreError::Decode { .. })),
        "{applied:?}"
    );
    assert_eq!(h.store.get_job("c").unwrap(), None, "the put was not kept");
    assert!(h.store.get_job("a").unwrap().is_some(), "a was not pruned");
    assert!(h.store.get_job("b").unwrap().is_some(), "b was not pruned");
    assert_eq!(
        h.store.last_applied_index(),
        h.index,
        "the entry is not applied"
    );
}
