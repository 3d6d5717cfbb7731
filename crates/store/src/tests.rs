//! Store-level behaviour: snapshots, restart, determinism.

use proptest::prelude::*;
use redb::TableHandle;
use rota_core::{ClientRequest, Command, EventKind, ExecStatus, SessionKey, StartInfo, Trigger};
use ulid::Ulid;

use super::*;
use crate::codec::RECORD_VERSION;
use crate::test_support::{finish, fire, spec, spec_with_history, t, Harness};

/// A store with some of everything: jobs, active and finished runs with output,
/// fired rows, KV entries and a session.
fn populated() -> Harness {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: spec_with_history("a", 3),
    });
    h.run(Command::PutJob { spec: spec("b") });
    let mut running = fire(3, "b", 10, Trigger::Schedule);
    running.start = Some(StartInfo {
        node: "n1".into(),
        at: t(11),
    });
    h.run(Command::Fire {
        fires: vec![
            fire(1, "a", 10, Trigger::Schedule),
            fire(2, "a", 20, Trigger::Catchup),
            running,
        ],
    });
    let mut done = finish(1, 1, ExecStatus::Succeeded, 12);
    done.output = Some("line 1\nline 2\n".into());
    h.run(Command::Finish {
        finishes: vec![done],
    });
    h.run_session(
        "cli-1",
        3,
        t(20),
        Command::KvPut {
            key: "config/x".into(),
            value: "1".into(),
            if_revision: None,
        },
    );
    h.run(Command::KvPut {
        key: "config/y".into(),
        value: "2".into(),
        if_revision: None,
    });
    h.run(Command::ClaimScheduler {
        node: "n1".into(),
        term: 4,
    });
    h.run(Command::PutWebhook {
        name: "ops".into(),
        spec: rota_core::notify::parse_webhook_json(br#"{"url": "http://a/hook"}"#).unwrap(),
    });
    h.run(Command::RecordDeliveries {
        deliveries: vec![crate::test_support::delivery(
            5,
            "ops",
            rota_core::notify::DeliveryStatus::Delivered,
        )],
        cursor: Some(8),
    });
    h.run(Command::SetConfig {
        key: "max_running".into(),
        value: serde_json::json!(3),
    });
    h
}

fn export(store: &Store) -> (SnapshotHeader, Vec<u8>) {
    let mut bytes = Vec::new();
    let header = store.export_snapshot(&mut bytes).expect("export");
    (header, bytes)
}

#[test]
fn snapshot_round_trip_reproduces_every_table() {
    let source = populated();
    let (header, bytes) = export(&source.store);
    assert_eq!(header.applied_index, source.index);
    assert_eq!(header.meta, b"meta");
    assert_eq!(
        Store::read_snapshot_header(&mut bytes.as_slice()).unwrap(),
        header
    );

    // The target has state of its own, which the install replaces entirely.
    let mut target = Harness::new();
    target.run(Command::PutJob { spec: spec("zzz") });
    target.run(Command::KvPut {
        key: "config/x".into(),
        value: "stale".into(),
        if_revision: None,
    });
    target.events();
    let installed = target.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(installed, header);
    assert_eq!(target.store.last_applied_index(), source.index);
    assert_eq!(
        target.store.raft_meta().unwrap().as_deref(),
        Some(&b"meta"[..])
    );
    let events = target.events();
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].kind, EventKind::Reset));
    assert_eq!(events[0].revision, source.index);

    let (_, again) = export(&target.store);
    assert_eq!(again, bytes, "export(import(x)) == x");
    assert!(target.store.get_job("zzz").unwrap().is_none());
    assert_eq!(
        target.store.list_jobs().unwrap(),
        source.store.list_jobs().unwrap()
    );
    assert_eq!(
        target.store.get_output(Ulid(1)).unwrap().as_deref(),
        Some("line 1\nline 2\n")
    );
    assert_eq!(target.store.kv_get("config/x").unwrap().unwrap().value, "1");
    assert_eq!(target.store.scheduler_epoch().unwrap(), 4);
    assert_eq!(
        target.store.webhooks().unwrap(),
        source.store.webhooks().unwrap()
    );
    assert_eq!(target.store.webhooks().unwrap().len(), 1);
    let all = crate::DeliveryFilter::default();
    assert_eq!(
        target.store.deliveries(&all, None, 10).unwrap(),
        source.store.deliveries(&all, None, 10).unwrap()
    );
    assert_eq!(target.store.deliveries(&all, None, 10).unwrap().0.len(), 1);
    assert_eq!(
        target.store.config_entries().unwrap(),
        source.store.config_entries().unwrap()
    );
    assert_eq!(target.store.dynamic_config().unwrap().max_running, Some(3));
    assert_eq!(target.store.notify_cursor().unwrap(), 8);
    assert_eq!(
        target.store.active_executions().unwrap(),
        source.store.active_executions().unwrap()
    );

    // Sessions travel with the snapshot: the retry is answered, not applied.
    let mut target = target;
    target.index = source.index;
    let retry = target.run_session(
        "cli-1",
        3,
        t(30),
        Command::KvPut {
            key: "config/x".into(),
            value: "changed".into(),
            if_revision: None,
        },
    );
    assert!(matches!(retry, Response::KvPut { revision: 5, .. }));
    assert_eq!(target.store.kv_get("config/x").unwrap().unwrap().value, "1");
}

#[test]
fn a_damaged_snapshot_is_refused_and_replaces_nothing() {
    let source = populated();
    let (_, bytes) = export(&source.store);
    let target = populated();
    let (_, before) = export(&target.store);

    let mut bad_magic = bytes.clone();
    bad_magic[0] = b'X';
    let mut unknown_record_version = bytes.clone();
    // The first record's value starts after: header (8 + 1 + 8 + 4 + 4 meta bytes),
    // tag (1), key length (4) and key ("a"), value length (4).
    let first_value = 8 + 1 + 8 + 4 + 4 + 1 + 4 + 1 + 4;
    assert_eq!(unknown_record_version[first_value], 1, "layout of the test");
    unknown_record_version[first_value] = 9;
    let mut bad_trailer = bytes.clone();
    let last = bad_trailer.len() - 1;
    bad_trailer[last] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad magic", bad_magic),
        ("cut short", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("unknown record version", unknown_record_version),
        ("record count mismatch", bad_trailer),
    ];
    for (name, case) in cases {
        let err = target.store.import_snapshot(&mut case.as_slice());
        assert!(err.is_err(), "{name}: accepted");
        let (_, after) = export(&target.store);
        assert_eq!(after, before, "{name}: state changed");
    }
}

#[test]
fn state_survives_reopen_after_a_snapshot_export() {
    let h = populated();
    let (header, bytes) = export(&h.store);
    let path = h.dir.path().join("state.redb");
    let Harness { dir, store, .. } = h;
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.last_applied_index(), header.applied_index);
    let (_, again) = export(&reopened);
    assert_eq!(again, bytes);
    drop(dir);
}

#[test]
fn a_state_file_of_another_format_is_refused() {
    let h = Harness::new();
    let path = h.dir.path().join("state.redb");
    let Harness { dir, store, .. } = h;
    drop(store);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(tables::META)
            .unwrap()
            .insert(tables::META_FORMAT, 99u32.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::FormatVersion { found: 99, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "the state file {} has format version 99; this release reads version {}: it was written by a newer release",
            path.display(),
            tables::FORMAT_VERSION
        )),
        "{message}"
    );
    drop(dir);
}

#[test]
fn blank_entries_advance_the_applied_index_only() {
    let h = Harness::new();
    let responses = h
        .store
        .apply(
            &[
                LogEntry {
                    index: 1,
                    request: None,
                    members: None,
                },
                LogEntry {
                    index: 2,
                    request: None,
                    members: None,
                },
            ],
            b"m2",
        )
        .unwrap();
    assert_eq!(responses, vec![Response::Ok, Response::Ok]);
    assert_eq!(h.store.last_applied_index(), 2);
    assert_eq!(h.store.raft_meta().unwrap().as_deref(), Some(&b"m2"[..]));
    assert!(h.store.apply(&[], b"x").unwrap().is_empty());
}

// --- determinism -------------------------------------------------------------

fn arb_command() -> impl Strategy<Value = Command> {
    let job = prop::sample::select(vec!["a", "b", "c"]);
    let id = 1u128..12;
    let status = prop::sample::select(vec![
        ExecStatus::Succeeded,
        ExecStatus::Failed,
        ExecStatus::TimedOut,
        ExecStatus::Lost,
        ExecStatus::Running,
    ]);
    let trigger = prop::sample::select(vec![Trigger::Schedule, Trigger::Catchup, Trigger::Manual]);
    let leaf = prop_oneof![
        (job.clone(), 1u32..4).prop_map(|(j, limit)| Command::PutJob {
            spec: spec_with_history(j, limit)
        }),
        // A job of an apply set, and the prune of that set.
        (job.clone(), prop::sample::select(vec!["s1", "s2"])).prop_map(|(j, set)| {
            let mut spec = spec_with_history(j, 2);
            spec.metadata.insert(
                rota_core::job::APPLY_SET_KEY.into(),
                serde_json::Value::String(set.into()),
            );
            Command::PutJob { spec }
        }),
        (
            prop::sample::select(vec!["s1", "s2"]),
            prop::collection::vec(job.clone(), 0..3)
        )
            .prop_map(|(set, keep)| Command::PruneJobs {
                apply_set: set.into(),
                keep: keep.into_iter().map(String::from).collect(),
            }),
        job.clone().prop_map(|j| Command::DeleteJob {
            name: j.into(),
            if_revision: None
        }),
        (job.clone(), any::<bool>()).prop_map(|(j, paused)| Command::SetPaused {
            name: j.into(),
            paused
        }),
        prop::collection::vec(
            (
                id.clone(),
                job.clone(),
                0i64..20,
                trigger,
                any::<bool>(),
                any::<bool>()
            ),
            1..4
        )
        .prop_map(|fires| Command::Fire {
            fires: fires
                .into_iter()
                .map(|(id, j, at, trigger, start, skip)| {
                    let mut f = fire(id, j, at, trigger);
                    if start {
                        f.start = Some(StartInfo {
                            node: "n".into(),
                            at: t(at),
                        });
                    }
                    if skip {
                        f.skip_reason = Some("skip".into());
                    }
                    f
                })
                .collect()
        }),
        (id.clone(), 1u32..3).prop_map(|(id, attempt)| Command::Start {
            starts: vec![rota_core::Start {
                id: Ulid(id),
                attempt,
                node: "n".into(),
                at: t(5),
            }]
        }),
        (id.clone(), 1u32..3, status, any::<bool>(), any::<bool>()).prop_map(
            |(id, attempt, status, retry, output)| {
                let mut f = finish(id, attempt, status, 30);
                if retry {
                    f.retry_at = Some(t(40));
                }
                if output {
                    f.output = Some(format!("out {id}"));
                }
                Command::Finish { finishes: vec![f] }
            }
        ),
        id.prop_map(|id| Command::Cancel { id: Ulid(id) }),
        (
            prop::sample::select(vec!["x", "y"]),
            prop::option::of(0u64..6)
        )
            .prop_map(|(k, if_revision)| Command::KvPut {
                key: k.into(),
                value: "v".into(),
                if_revision
            }),
        (
            prop::sample::select(vec!["x", "y"]),
            prop::option::of(0u64..6)
        )
            .prop_map(|(k, if_revision)| Command::KvDelete {
                key: k.into(),
                if_revision
            }),
    ];
    let leaf = prop_oneof![
        4 => leaf,
        1 => (prop::sample::select(vec!["n1", "n2"]), 0u64..3)
            .prop_map(|(n, term)| Command::ClaimScheduler { node: n.into(), term }),
        1 => prop::sample::select(vec!["n1", "n2"])
            .prop_map(|n| Command::Heartbeat { node: n.into() }),
        1 => (1u64..6, prop::option::of(0u64..8)).prop_map(|(r, cursor)| Command::RecordDeliveries {
            deliveries: vec![crate::test_support::delivery(
                r,
                "notify[0]",
                rota_core::notify::DeliveryStatus::Failed,
            )],
            cursor,
        }),
        1 => (prop::sample::select(vec!["n1", "n2"]), 0u128..3)
            .prop_map(|(n, i)| Command::RegisterNode {
                fire_ahead: false,
                node: n.into(),
                incarnation: ulid::Ulid(i),
                tags: Default::default(),
                max_running: 2,
                url: None,
            }),
    ];
    leaf.prop_recursive(1, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|commands| Command::Batch { commands }),
            (0u64..3, prop::collection::vec(inner, 1..4))
                .prop_map(|(epoch, commands)| Command::Fenced { epoch, commands }),
        ]
    })
}

fn arb_request() -> impl Strategy<Value = ClientRequest> {
    (
        arb_command(),
        prop::option::of((prop::sample::select(vec!["c1", "c2"]), 0u64..4)),
        0i64..5,
    )
        .prop_map(|(command, session, at)| ClientRequest {
            session: session.map(|(client, seq)| SessionKey {
                client_id: client.into(),
                seq,
            }),
            at: t(at),
            command,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Two replicas applying the same log end with identical bytes and give the
    /// same answers, however the log is cut into apply batches.
    #[test]
    fn replicas_applying_the_same_log_agree(
        requests in prop::collection::vec(arb_request(), 1..40),
        cuts in prop::collection::vec(1usize..6, 1..40),
    ) {
        let one = Harness::new();
        let other = Harness::new();
        let entries: Vec<LogEntry<'_>> = requests
            .iter()
            .enumerate()
            .map(|(i, r)| LogEntry { index: i as u64 + 1, request: Some(r), members: None, })
            .collect();

        let mut answers_one = Vec::new();
        for entry in &entries {
            answers_one.extend(one.store.apply(std::slice::from_ref(entry), b"m").unwrap());
        }
        let mut answers_other = Vec::new();
        let mut rest = entries.as_slice();
        let mut sizes = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap_or(&1)).min(rest.len());
            let (batch, tail) = rest.split_at(n);
            answers_other.extend(other.store.apply(batch, b"m").unwrap());
            rest = tail;
        }
        prop_assert_eq!(answers_one, answers_other);
        let (_, a) = export(&one.store);
        let (_, b) = export(&other.store);
        prop_assert!(a == b, "replicas diverged");
    }
}

#[test]
fn a_job_record_that_does_not_decode_fails_a_listing_and_is_handed_over_by_the_skipping_walk() {
    let mut h = Harness::new();
    for name in ["a", "b", "c"] {
        h.run(Command::PutJob { spec: spec(name) });
    }
    {
        let txn = h.store.begin_write(redb::Durability::None).unwrap();
        {
            let mut jobs = txn.open_table(tables::JOBS).unwrap();
            jobs.insert("b", [RECORD_VERSION + 1, b'{', b'}'].as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let err = h
        .store
        .list_jobs()
        .expect_err("a listing names the bad record");
    assert!(
        matches!(err, StoreError::UnknownVersion { what: "job", .. }),
        "{err:?}"
    );
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    h.store
        .for_each_job_skipping(&mut |job| good.push(job.spec.name), &mut |key, err| {
            bad.push((key, err.to_string()))
        })
        .unwrap();
    assert_eq!(good, ["a", "c"]);
    assert_eq!(
        bad,
        [(
            "b".to_string(),
            format!(
                "job record has version {}; this release reads version {RECORD_VERSION}",
                RECORD_VERSION + 1
            )
        )]
    );
}

/// `revision kind` of each change, with a public event's type.
fn change_names(events: &[Arc<StoreEvent>]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = match &e.kind {
                EventKind::Published(p) => p.event_type.as_str(),
                EventKind::KvPut(_) => "KvPut",
                EventKind::KvDeleted { .. } => "KvDeleted",
                EventKind::JobPut(_) => "JobPut",
                _ => "other",
            };
            format!("{} {kind}", e.revision)
        })
        .collect()
}

#[test]
fn the_stream_without_kv_has_every_other_change_in_order() {
    let mut h = Harness::new();
    let mut without_kv = h.store.subscribe_without_kv();
    h.run(Command::KvPut {
        key: "k".into(),
        value: "1".into(),
        if_revision: None,
    });
    h.run(Command::PutJob { spec: spec("a") });
    h.run(Command::KvDelete {
        key: "k".into(),
        if_revision: None,
    });
    h.run(Command::PublishEvent {
        event_type: "kv.like".into(),
        data: serde_json::json!({}),
    });
    let all = change_names(&h.all_events());
    let mut rest = Vec::new();
    while let Ok(e) = without_kv.try_recv() {
        rest.push(e);
    }
    assert_eq!(
        all,
        [
            "1 kv.put",
            "1 KvPut",
            "2 JobPut",
            "2 job.created",
            "3 KvDeleted",
            "3 kv.deleted",
            "4 kv.like"
        ]
    );
    // An external type that only looks like KV's is kept.
    assert_eq!(
        change_names(&rest),
        ["2 JobPut", "2 job.created", "4 kv.like"]
    );
}

/// The tables a read transaction of `store` finds.
fn table_names(store: &Store) -> Vec<String> {
    let txn = store.db.begin_read().unwrap();
    let mut names: Vec<String> = txn
        .list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn every_table_exists_in_a_new_state_file_and_after_a_snapshot_install() {
    // Applies open tables only when they use them; readers need them all.
    let fresh = Harness::new();
    let names = table_names(&fresh.store);
    assert_eq!(names.len(), crate::tables::TABLE_COUNT, "{names:?}");
    for name in ["kv", "tokens", "sinks", "workflow_runs", "deliveries"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let (_, bytes) = export(&fresh.store);
    let target = populated();
    target.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(table_names(&target.store), names);
    assert!(target.store.list_jobs().unwrap().is_empty());
}

#[test]
fn a_token_added_or_revoked_is_seen_by_the_next_auth_lookup() {
    let token = |name: &str| rota_core::auth::TokenRecord {
        name: name.into(),
        role: rota_core::auth::Role::Admin,
        hash: format!("hash-of-{name}"),
        created_at: t(1),
        created_by: None,
        revision: 0,
    };
    let mut h = Harness::new();
    // Asked twice while empty: the second answer comes from what the first saw.
    assert_eq!(
        h.store.auth_lookup(Some("hash-of-ops")).unwrap(),
        (false, None)
    );
    assert_eq!(h.store.auth_lookup(None).unwrap(), (false, None));
    h.run(Command::PutToken {
        record: token("ops"),
        only_if_none: false,
    });
    let (any, found) = h.store.auth_lookup(Some("hash-of-ops")).unwrap();
    assert!(any);
    assert_eq!(found.map(|r| r.name).as_deref(), Some("ops"));
    h.run(Command::RevokeToken { name: "ops".into() });
    assert_eq!(
        h.store.auth_lookup(Some("hash-of-ops")).unwrap(),
        (false, None)
    );

    // A snapshot install replaces the table as a whole.
    let mut with_token = Harness::new();
    with_token.run(Command::PutToken {
        record: token("ci"),
        only_if_none: false,
    });
    let (_, bytes) = export(&with_token.store);
    assert_eq!(h.store.auth_lookup(None).unwrap(), (false, None));
    h.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert!(h.store.auth_lookup(None).unwrap().0);
}
