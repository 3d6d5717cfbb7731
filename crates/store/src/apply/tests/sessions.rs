//! Client sessions: retries answered once, expiry, batches and multi-client entries.

use super::*;

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
    h.index = crate::apply::SESSION_SWEEP_EVERY - 2;
    let fresh_time = t(0) + crate::apply::SESSION_TTL;
    h.run_session("fresh", 1, fresh_time, cmd());
    let day_later = t(1) + crate::apply::SESSION_TTL;
    h.run_at(day_later, cmd());
    assert_eq!(h.index, crate::apply::SESSION_SWEEP_EVERY);
    // "old" was idle for more than 24h and is forgotten: seq 1 applies again;
    // "fresh" is kept: seq 1 is answered from the session.
    assert!(matches!(
        h.run_session("old", 1, day_later, cmd()),
        Response::KvPut { revision, .. } if revision == crate::apply::SESSION_SWEEP_EVERY + 1
    ));
    assert!(matches!(
        h.run_session("fresh", 1, day_later, cmd()),
        Response::KvPut { revision, .. } if revision == crate::apply::SESSION_SWEEP_EVERY - 1
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
