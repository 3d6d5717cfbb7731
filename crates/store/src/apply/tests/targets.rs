//! Target sets: specs, generations, what discovery records, snapshots.

use std::collections::BTreeMap;

use rota_core::targets::{Group, ProviderSpec, StaticSpec, Target, TargetSetSpec, TargetSetState};
use rota_core::{Command, EventKind, Response};

use crate::test_support::Harness;

fn set(name: &str, addresses: &[&str]) -> TargetSetSpec {
    TargetSetSpec {
        name: name.to_string(),
        provider: ProviderSpec::Static(StaticSpec {
            groups: vec![Group {
                targets: addresses.iter().map(|a| a.to_string()).collect(),
                labels: BTreeMap::new(),
            }],
        }),
    }
}

fn state(addresses: &[&str], error: Option<&str>) -> TargetSetState {
    TargetSetState {
        targets: addresses
            .iter()
            .map(|a| Target {
                address: a.to_string(),
                labels: BTreeMap::new(),
            })
            .collect(),
        error: error.map(str::to_string),
    }
}

fn put(h: &mut Harness, spec: TargetSetSpec) -> (bool, u64) {
    match h.run(Command::PutTargetSet { spec }) {
        Response::TargetSetPut { created, set } => (created, set.generation),
        other => panic!("expected TargetSetPut, got {other:?}"),
    }
}

fn record(h: &mut Harness, name: &str, generation: u64, s: TargetSetState) -> bool {
    match h.run(Command::RecordTargets {
        name: name.to_string(),
        generation,
        state: s,
    }) {
        Response::TargetsRecorded { changed } => changed,
        other => panic!("expected TargetsRecorded, got {other:?}"),
    }
}

fn published(h: &mut Harness) -> Vec<String> {
    h.all_events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Published(ev) => Some(format!("{} {}", ev.event_type, ev.key)),
            _ => None,
        })
        .collect()
}

#[test]
fn discovery_records_only_real_changes_of_the_current_generation() {
    let mut h = Harness::new();
    let (created, generation) = put(&mut h, set("gw", &["a:1"]));
    assert!(created);
    assert_eq!(published(&mut h), ["targets.created gw"]);
    let stored = h.store.get_target_set("gw").unwrap().unwrap();
    assert!(stored.targets.is_empty() && stored.refreshed_at.is_none());

    assert!(record(&mut h, "gw", generation, state(&["a:1"], None)));
    assert_eq!(published(&mut h), ["targets.discovered gw"]);
    // The same state again (a new leader re-discovering): nothing changes.
    assert!(!record(&mut h, "gw", generation, state(&["a:1"], None)));
    assert!(published(&mut h).is_empty());
    // An error with the last good targets kept is a change.
    assert!(record(
        &mut h,
        "gw",
        generation,
        state(&["a:1"], Some("boom"))
    ));
    let stored = h.store.get_target_set("gw").unwrap().unwrap();
    assert_eq!(stored.error.as_deref(), Some("boom"));
    assert_eq!(stored.targets.len(), 1);
    published(&mut h);

    // The same spec again keeps its generation; a changed one starts a new one
    // and keeps the targets until discovery reports.
    assert_eq!(put(&mut h, set("gw", &["a:1"])), (false, generation));
    let (_, next) = put(&mut h, set("gw", &["b:1"]));
    assert!(next > generation);
    assert_eq!(
        h.store.get_target_set("gw").unwrap().unwrap().targets.len(),
        1
    );
    published(&mut h);
    // A late result of the old spec is refused.
    assert!(!record(&mut h, "gw", generation, state(&["zzz:1"], None)));
    assert!(record(&mut h, "gw", next, state(&["b:1"], None)));
    let stored = h.store.get_target_set("gw").unwrap().unwrap();
    assert_eq!(stored.targets[0].address, "b:1");
    assert_eq!(stored.error, None);
}

#[test]
fn a_deleted_set_takes_its_targets_and_refuses_late_results() {
    let mut h = Harness::new();
    let (_, generation) = put(&mut h, set("gw", &["a:1"]));
    record(&mut h, "gw", generation, state(&["a:1"], None));
    published(&mut h);
    assert!(matches!(
        h.run(Command::DeleteTargetSet { name: "gw".into() }),
        Response::TargetSetDeleted { existed: true }
    ));
    assert_eq!(published(&mut h), ["targets.deleted gw"]);
    assert!(!record(&mut h, "gw", generation, state(&["a:1"], None)));
    assert!(h.store.get_target_set("gw").unwrap().is_none());
    assert!(matches!(
        h.run(Command::DeleteTargetSet { name: "gw".into() }),
        Response::TargetSetDeleted { existed: false }
    ));
    assert!(published(&mut h).is_empty());
}

#[test]
fn target_sets_survive_a_snapshot() {
    let mut source = Harness::new();
    let (_, generation) = put(&mut source, set("gw", &["a:1", "b:2"]));
    record(&mut source, "gw", generation, state(&["a:1", "b:2"], None));
    put(&mut source, set("other", &[]));
    let sink: rota_core::sink::SinkSpec = serde_json::from_value(serde_json::json!(
        {"type": "influxdb", "url": "http://127.0.0.1:8086", "database": "ci"}
    ))
    .unwrap();
    source.run(Command::PutSink {
        name: "ci".into(),
        spec: sink,
    });
    let mut bytes = Vec::new();
    source.store.export_snapshot(&mut bytes).unwrap();
    let target = Harness::new();
    target.store.import_snapshot(&mut bytes.as_slice()).unwrap();
    assert_eq!(
        target.store.target_sets().unwrap(),
        source.store.target_sets().unwrap()
    );
    assert_eq!(target.store.target_sets().unwrap().len(), 2);
    assert_eq!(target.store.sinks().unwrap(), source.store.sinks().unwrap());
    assert_eq!(target.store.sinks().unwrap().len(), 1);
}

#[test]
fn a_recorded_check_keeps_whether_its_output_was_cut() {
    let mut h = Harness::new();
    h.run(Command::PutJob {
        spec: crate::test_support::spec("probe"),
    });
    let check = |id: u128, output_truncated: bool| Command::RecordCheck {
        id: ulid::Ulid(id),
        job: "probe".into(),
        node: "n1".into(),
        started_at: crate::test_support::t(1),
        result: rota_core::RunResult {
            status: rota_core::ResultStatus::Synced,
            targets: vec![],
        },
        error: None,
        output: Some("a:1: synced".into()),
        output_truncated,
    };
    h.run(check(1, true));
    h.run(check(2, false));
    let cut = h.store.get_execution(ulid::Ulid(1)).unwrap().unwrap();
    assert!(cut.output_truncated);
    let whole = h.store.get_execution(ulid::Ulid(2)).unwrap().unwrap();
    assert!(!whole.output_truncated);

    // An entry written before the field existed reads as not cut.
    let mut old = serde_json::to_value(check(3, false)).unwrap();
    assert!(
        old.get("output_truncated").is_none(),
        "false is not written"
    );
    old.as_object_mut().unwrap().remove("output_truncated");
    let back: Command = serde_json::from_value(old).unwrap();
    assert_eq!(back, check(3, false));
}
