//! Dynamic settings: run slots per node and for the cluster, the default retry.

use super::*;
use rota_core::config::DynamicConfig;

fn set(sim: &mut Sim, config: DynamicConfig) {
    sim.input(Input::Config(Arc::new(config)));
}

fn register(sim: &mut Sim, node: &str, max_running: u32) {
    sim.input(Input::NodeRegistered(Arc::new(NodeRecord {
        fire_ahead: false,
        node: node.into(),
        incarnation: Ulid(7),
        tags: BTreeMap::new(),
        max_running,
        url: None,
        registered_at: sim.now,
        revision: 1,
    })));
}

fn running_on(sim: &Sim, node: &str) -> usize {
    sim.execs
        .values()
        .filter(|e| e.status == ExecStatus::Running && e.node.as_deref() == Some(node))
        .count()
}

#[test]
fn the_dynamic_max_running_replaces_each_nodes_own() {
    let mut sim = started_sim(4, t0(0));
    register(&mut sim, "n2", 4);
    set(
        &mut sim,
        DynamicConfig {
            max_running: Some(1),
            ..Default::default()
        },
    );
    sim.put(spec("a", json!({})));
    for _ in 0..5 {
        sim.run_now("a");
    }
    assert_eq!((running_on(&sim, NODE), running_on(&sim, "n2")), (1, 1));
    assert_eq!(sim.engine.stats().queued, 3);

    // Raised: the waiting runs start at once, no new fire needed.
    set(
        &mut sim,
        DynamicConfig {
            max_running: Some(2),
            ..Default::default()
        },
    );
    assert_eq!((running_on(&sim, NODE), running_on(&sim, "n2")), (2, 2));
    assert_eq!(sim.engine.stats().queued, 1);

    // Reset: each node's own again (4 here, 4 on n2).
    set(&mut sim, DynamicConfig::default());
    assert_eq!(sim.engine.stats().queued, 0);
    assert_eq!(running_on(&sim, NODE) + running_on(&sim, "n2"), 5);
}

#[test]
fn the_cluster_limit_holds_runs_back_across_nodes() {
    let mut sim = started_sim(4, t0(0));
    register(&mut sim, "n2", 4);
    set(
        &mut sim,
        DynamicConfig {
            cluster_max_running: Some(3),
            ..Default::default()
        },
    );
    sim.put(spec("a", json!({})));
    let ids: Vec<Ulid> = (0..6).map(|_| sim.run_now("a")).collect();
    assert_eq!(running_on(&sim, NODE) + running_on(&sim, "n2"), 3);
    assert_eq!(sim.engine.stats().queued, 3);

    // One ends anywhere: exactly one waiting run takes its place.
    let remote = *ids
        .iter()
        .find(|id| sim.execs[*id].node.as_deref() == Some("n2"))
        .expect("a run on n2");
    sim.finish_remote(ExecStatus::Succeeded, remote);
    assert_eq!(running_on(&sim, NODE) + running_on(&sim, "n2"), 3);
    assert_eq!(sim.engine.stats().queued, 2);
}

#[test]
fn jobs_without_a_retry_policy_take_the_default_one() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("plain", json!({})));
    sim.put(spec("own", json!({"retry": {"max_attempts": 1}})));
    let policy: rota_core::RetryPolicy =
        serde_json::from_value(json!({"max_attempts": 2, "initial_delay": "5s", "jitter": false}))
            .unwrap();
    set(
        &mut sim,
        DynamicConfig {
            default_retry: Some(policy),
            ..Default::default()
        },
    );
    let plain = sim.run_now("plain");
    let own = sim.run_now("own");
    sim.take();
    sim.complete(plain, ExecStatus::Failed);
    sim.complete(own, ExecStatus::Failed);
    let finishes: BTreeMap<Ulid, Option<Timestamp>> = sim
        .take()
        .into_iter()
        .filter_map(|a| match a {
            Action::Finish(f) => Some((f.id, f.retry_at)),
            _ => None,
        })
        .collect();
    assert_eq!(finishes[&plain], Some(sim.now + TimeDelta::seconds(5)));
    assert_eq!(finishes[&own], None, "the job's own policy wins");
}

#[test]
fn a_stopping_node_takes_no_runs_whatever_the_dynamic_max_running() {
    let mut sim = started_sim(4, t0(0));
    register(&mut sim, "n2", 4);
    set(
        &mut sim,
        DynamicConfig {
            max_running: Some(3),
            ..Default::default()
        },
    );
    // n2 stops: it registers again without capacity.
    register(&mut sim, "n2", 0);
    sim.put(spec("a", json!({})));
    for _ in 0..5 {
        sim.run_now("a");
    }
    assert_eq!((running_on(&sim, NODE), running_on(&sim, "n2")), (3, 0));
    assert_eq!(sim.engine.stats().queued, 2);
}
