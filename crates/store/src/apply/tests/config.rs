//! Dynamic settings: set, reset, their events, and what the state machine itself
//! takes from them (history limit, retry of lost runs, event retention).

use super::*;
use rota_core::event::types;
use serde_json::json;

fn set(h: &mut Harness, key: &str, value: serde_json::Value) -> Response {
    h.run(Command::SetConfig {
        key: key.into(),
        value,
    })
}

fn config_events(h: &mut Harness) -> Vec<(String, serde_json::Value)> {
    h.all_events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Published(p) if p.event_type == types::CONFIG_CHANGED => {
                Some((p.key.clone(), p.data.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn set_stores_the_value_and_announces_each_change_once() {
    let mut h = Harness::new();
    let Response::ConfigSet { entry, previous } = set(&mut h, "max_running", json!(4)) else {
        panic!("expected ConfigSet");
    };
    assert_eq!(
        (entry.key.as_str(), &entry.value, previous),
        ("max_running", &json!(4), None)
    );
    assert_eq!(entry.revision, h.index);
    let events = config_events(&mut h);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["value"], 4);
    assert_eq!(events[0].1["previous"], serde_json::Value::Null);

    // The same value again changes nothing and says nothing.
    let Response::ConfigSet { previous, .. } = set(&mut h, "max_running", json!(4)) else {
        panic!("expected ConfigSet");
    };
    assert_eq!(previous, Some(json!(4)));
    assert!(config_events(&mut h).is_empty());
    assert_eq!(h.store.config_entries().unwrap()[0].revision, 1);

    set(&mut h, "max_running", json!(9));
    let events = config_events(&mut h);
    assert_eq!(
        (
            events[0].1["value"].clone(),
            events[0].1["previous"].clone()
        ),
        (json!(9), json!(4))
    );
    assert_eq!(h.store.dynamic_config().unwrap().max_running, Some(9));
}

#[test]
fn reset_removes_one_key_or_all_and_says_which() {
    let mut h = Harness::new();
    set(&mut h, "max_running", json!(4));
    set(&mut h, "log", json!("debug"));
    set(&mut h, "watch_retention", json!(10));
    config_events(&mut h);

    let Response::ConfigReset { keys } = h.run(Command::ResetConfig {
        key: Some("log".into()),
    }) else {
        panic!("expected ConfigReset");
    };
    assert_eq!(keys, vec!["log".to_string()]);
    let events = config_events(&mut h);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["previous"], "debug");
    assert_eq!(events[0].1["value"], serde_json::Value::Null);

    // A key without a dynamic value: nothing to reset, nothing announced.
    let Response::ConfigReset { keys } = h.run(Command::ResetConfig {
        key: Some("log".into()),
    }) else {
        panic!("expected ConfigReset");
    };
    assert!(keys.is_empty());
    assert!(config_events(&mut h).is_empty());

    let Response::ConfigReset { keys } = h.run(Command::ResetConfig { key: None }) else {
        panic!("expected ConfigReset");
    };
    assert_eq!(
        keys,
        vec!["max_running".to_string(), "watch_retention".to_string()]
    );
    assert_eq!(config_events(&mut h).len(), 2);
    assert!(h.store.config_entries().unwrap().is_empty());
    assert_eq!(
        h.store.dynamic_config().unwrap(),
        rota_core::config::DynamicConfig::default()
    );
}

#[test]
fn jobs_without_their_own_history_limit_follow_the_default_setting() {
    let mut h = Harness::new();
    put(&mut h, "plain");
    h.run(Command::PutJob {
        spec: spec_with_history("own", 5),
    });
    set(&mut h, "default_history_limit", json!(2));
    for (i, at) in (1..=4).enumerate() {
        let base = (i as u128) * 10;
        h.run(Command::Fire {
            fires: vec![
                fire(base + 1, "plain", at, Trigger::Schedule),
                fire(base + 2, "own", at, Trigger::Schedule),
            ],
        });
        h.run(Command::Finish {
            finishes: vec![
                finish(base + 1, 1, ExecStatus::Succeeded, at + 1),
                finish(base + 2, 1, ExecStatus::Succeeded, at + 1),
            ],
        });
    }
    // One more fire prunes after the last finish.
    h.run(Command::Fire {
        fires: vec![
            fire(100, "plain", 9, Trigger::Schedule),
            fire(200, "own", 9, Trigger::Schedule),
        ],
    });
    let count = |h: &Harness, job: &str| h.store.list_executions(job, 100, None).unwrap().len();
    assert_eq!(count(&h, "plain"), 2, "the setting applies");
    assert_eq!(count(&h, "own"), 5, "the job's own limit wins");

    // Back to the built-in default (100): nothing more is pruned.
    h.run(Command::ResetConfig { key: None });
    h.run(Command::Fire {
        fires: vec![fire(101, "plain", 10, Trigger::Schedule)],
    });
    assert_eq!(count(&h, "plain"), 3);
}

fn as_token(token: &str, command: Command) -> Command {
    Command::Attributed {
        token: token.into(),
        command: Box::new(command),
    }
}

#[test]
fn attributed_writes_name_their_token_in_events_executions_and_sessions() {
    let mut h = Harness::new();
    h.run(as_token("root", Command::PutJob { spec: spec("a") }));
    let events = h.all_events();
    let created = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Published(p) if p.event_type == types::JOB_CREATED => Some(p.clone()),
            _ => None,
        })
        .expect("job.created");
    assert_eq!(created.data["by"], "root");

    h.run(as_token(
        "oncall",
        Command::Fire {
            fires: vec![fire(1, "a", 5, Trigger::Manual)],
        },
    ));
    assert_eq!(
        h.store
            .get_execution(Ulid(1))
            .unwrap()
            .unwrap()
            .triggered_by
            .as_deref(),
        Some("oncall")
    );
    // The scheduler's own fires name nobody.
    h.run(Command::Fire {
        fires: vec![fire(2, "a", 60, Trigger::Schedule)],
    });
    assert_eq!(
        h.store
            .get_execution(Ulid(2))
            .unwrap()
            .unwrap()
            .triggered_by,
        None
    );

    // A session belongs to the token that opened it.
    let kv = |v: &str| Command::KvPut {
        key: "k".into(),
        value: v.into(),
        if_revision: None,
    };
    let first = h.run_session("c1", 1, t(100), as_token("oncall", kv("1")));
    assert!(matches!(first, Response::KvPut { .. }), "{first:?}");
    let other = h.run_session("c1", 1, t(101), as_token("dash", kv("2")));
    assert!(
        matches!(other, Response::SessionNotYours { .. }),
        "{other:?}"
    );
    let anonymous = h.run_session("c1", 2, t(102), kv("3"));
    assert!(
        matches!(anonymous, Response::SessionNotYours { .. }),
        "{anonymous:?}"
    );
    assert_eq!(h.store.kv_get("k").unwrap().unwrap().value, "1");
    let retry = h.run_session("c1", 1, t(103), as_token("oncall", kv("1")));
    assert_eq!(
        retry, first,
        "the owner's retry is answered from the session"
    );
}
