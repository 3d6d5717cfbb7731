//! Placement on other nodes: tags, load, registration, capacity.

use super::*;

fn register(sim: &mut Sim, node: &str, tags: &[(&str, &str)], max_running: u32) {
    sim.input(Input::NodeRegistered(Arc::new(NodeRecord {
        fire_ahead: false,
        node: node.into(),
        incarnation: Ulid(7),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        max_running,
        url: None,
        registered_at: sim.now,
        revision: 1,
    })));
}

/// Where each execution of `job` is recorded as running, in id order.
fn placed(sim: &Sim, job: &str) -> Vec<Option<String>> {
    sim.execs
        .values()
        .filter(|e| e.job == job)
        .map(|e| (e.status == ExecStatus::Running).then(|| e.node.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn runs_go_to_the_least_loaded_node_whose_tags_match() {
    let mut sim = started_sim(2, t0(0));
    register(&mut sim, "n2", &[("zone", "a")], 2);
    register(&mut sim, "n3", &[("zone", "b")], 2);
    sim.put(spec("zoned", json!({"tags": {"zone": "a"}})));
    sim.put(spec("any", json!({})));

    let zoned: Vec<Ulid> = (0..3).map(|_| sim.run_now("zoned")).collect();
    // Only n2 matches; its two slots fill, the third run waits.
    assert_eq!(
        placed(&sim, "zoned"),
        vec![Some("n2".into()), Some("n2".into()), None]
    );
    assert!(sim.running.is_empty(), "nothing of `zoned` runs here");

    // Without tags: this node wins a tie, then the least loaded goes first.
    for _ in 0..4 {
        sim.run_now("any");
    }
    assert_eq!(
        placed(&sim, "any"),
        vec![
            Some(NODE.into()),
            Some("n3".into()),
            Some(NODE.into()),
            Some("n3".into())
        ]
    );
    assert_eq!(sim.running.len(), 2, "the runs placed here were dispatched");
    let remote_starts = sim
        .log
        .iter()
        .filter(|a| matches!(a, Action::Dispatch { id, .. } if sim.execs[id].node.as_deref() != Some(NODE)))
        .count();
    assert_eq!(
        remote_starts, 0,
        "runs placed elsewhere are not dispatched here"
    );

    // A run on n2 ends: the waiting one takes its slot there.
    sim.finish_remote(ExecStatus::Succeeded, zoned[0]);
    assert_eq!(sim.execs[&zoned[2]].node.as_deref(), Some("n2"));
    assert_eq!(sim.execs[&zoned[2]].status, ExecStatus::Running);
}

#[test]
fn a_silent_worker_gets_no_runs_until_it_reports_again() {
    let mut sim = started_sim(1, t0(0));
    register(&mut sim, "n2", &[("gpu", "yes")], 4);
    sim.put(spec("train", json!({"tags": {"gpu": "yes"}})));
    // n2 registered at 0 and said nothing since: at 10 s it counts as down.
    sim.advance(t0(10));
    let waiting = sim.run_now("train");
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Queued);
    assert!(sim.running.is_empty(), "no other node has the tag");
    sim.input(Input::NodeAlive { node: "n2".into() });
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Running);
    assert_eq!(sim.execs[&waiting].node.as_deref(), Some("n2"));
}

#[test]
fn a_worker_that_dies_under_a_run_loses_it_and_the_retry_goes_elsewhere() {
    let mut sim = started_sim(1, t0(0));
    register(&mut sim, "n2", &[("zone", "a")], 1);
    register(&mut sim, "n3", &[("zone", "a")], 1);
    let retry = json!({"tags": {"zone": "a"}, "retry": {"max_attempts": 2, "initial_delay": "1s", "jitter": false}});
    sim.put(spec("job", retry));
    let id = sim.run_now("job");
    assert_eq!(
        sim.execs[&id].node.as_deref(),
        Some("n2"),
        "names break the tie"
    );
    // n3 keeps reporting, n2 falls silent.
    for secs in [3, 6, 9] {
        sim.advance(t0(secs));
        sim.input(Input::NodeAlive { node: "n3".into() });
    }
    sim.advance(t0(12));
    let e = &sim.execs[&id];
    assert_eq!(e.attempts[0].status, ExecStatus::Lost);
    assert_eq!(e.attempts[0].node.as_deref(), Some("n2"));
    assert_eq!((e.attempt, e.status), (2, ExecStatus::Running));
    assert_eq!(
        e.node.as_deref(),
        Some("n3"),
        "the retry avoids the silent node"
    );
}

#[test]
fn a_draining_node_gets_no_new_runs_and_its_running_ones_go_on() {
    // Draining = registering again with no capacity (the same incarnation).
    let mut sim = started_sim(2, t0(0));
    register(&mut sim, "n2", &[], 2);
    sim.put(spec("any", json!({})));
    let here = sim.run_now("any");
    assert_eq!(sim.execs[&here].node.as_deref(), Some(NODE));

    register(&mut sim, NODE, &[], 0);
    register(&mut sim, "n2", &[], 0);
    let waiting = sim.run_now("any");
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Queued);
    assert_eq!(
        sim.execs[&here].status,
        ExecStatus::Running,
        "a run going on when the node drains is not touched"
    );
    assert_eq!(sim.running.len(), 1);

    // n2 comes back with capacity (a restart): the waiting run goes there.
    register(&mut sim, "n2", &[], 2);
    assert_eq!(sim.execs[&waiting].status, ExecStatus::Running);
    assert_eq!(sim.execs[&waiting].node.as_deref(), Some("n2"));
}
