//! Firing ahead: instants inside the look-ahead window are committed early and
//! placed on a node, which hands each run over at its instant.

use super::*;

fn ahead_sim(max_running: usize) -> Sim {
    let mut sim = Sim::with_fire_ahead(max_running, t0(0), std::time::Duration::from_secs(1));
    sim.start();
    sim
}

fn ms(millis: i64) -> Timestamp {
    t0(0) + TimeDelta::milliseconds(millis)
}

fn starts(actions: &[Action]) -> Vec<(Ulid, Timestamp)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start(s) => Some((s.id, s.at)),
            _ => None,
        })
        .collect()
}

fn register(sim: &mut Sim, node: &str, fire_ahead: bool) {
    sim.input(Input::NodeRegistered(Arc::new(NodeRecord {
        node: node.into(),
        incarnation: Ulid(7),
        tags: BTreeMap::new(),
        max_running: 4,
        url: None,
        registered_at: sim.now,
        revision: 1,
        fire_ahead,
    })));
}

#[test]
fn an_instant_is_committed_ahead_placed_here_and_handed_over_for_its_instant() {
    let mut sim = ahead_sim(4);
    sim.put(spec("a", every(10)));
    // The engine wakes one window before the instant.
    assert_eq!(sim.engine.next_wakeup(), Some(t0(9)));
    sim.advance(ms(8_999));
    assert!(Sim::fires(&sim.take()).is_empty());
    sim.advance(t0(9));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 1);
    let fire = fires[0];
    assert_eq!(fire.scheduled_at, t0(10));
    assert!(fire.ahead);
    let start = fire.start.as_ref().expect("placed with the fire");
    assert_eq!((start.node.as_str(), start.at), (NODE, t0(10)));
    // Recorded queued on this node, not running, with no start time yet.
    let e = &sim.execs[&fire.id];
    assert_eq!(e.status, ExecStatus::Queued);
    assert_eq!(e.node.as_deref(), Some(NODE));
    assert_eq!(e.started_at, None);
    assert!(e.is_placed_ahead());
    // Handed to the runtime now, for its instant: the runtime waits until then.
    let dispatched: Vec<Timestamp> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Dispatch { scheduled_at, .. } => Some(*scheduled_at),
            _ => None,
        })
        .collect();
    assert_eq!(dispatched, vec![t0(10)]);
    assert_eq!(sim.engine.stats().running, 1);
    // The next instant is armed one window before it.
    assert_eq!(sim.engine.next_wakeup(), Some(t0(19)));
}

#[test]
fn a_skip_job_with_a_run_going_on_fires_at_its_instant() {
    let mut sim = ahead_sim(4);
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    let manual = sim.run_now("a");
    sim.take();
    // The manual run still goes on one window before the instant: the overlap rule
    // is judged at the instant, not ahead of it.
    sim.advance(ms(9_500));
    assert!(Sim::fires(&sim.take()).is_empty());
    sim.complete(manual, ExecStatus::Succeeded);
    sim.advance(t0(10));
    let fired = Sim::fired_summary(&sim.take());
    assert_eq!(
        fired,
        vec![("a".into(), t0(10), Trigger::Schedule, true, false)]
    );
}

#[test]
fn a_skip_job_still_running_at_its_instant_skips_it() {
    let mut sim = ahead_sim(4);
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    sim.run_now("a");
    sim.advance(t0(10));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    let scheduled: Vec<_> = fires
        .iter()
        .filter(|f| f.trigger == Trigger::Schedule)
        .collect();
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].skip_reason.as_deref(), Some(SKIP_ACTIVE));
    assert!(!scheduled[0].ahead);
}

#[test]
fn a_node_that_cannot_run_fires_ahead_keeps_every_fire_at_its_instant() {
    let mut sim = ahead_sim(4);
    register(&mut sim, "old", false);
    sim.put(spec("a", every(10)));
    assert_eq!(sim.engine.next_wakeup(), Some(t0(10)));
    sim.advance(ms(9_999));
    assert!(Sim::fires(&sim.take()).is_empty());
    sim.advance(t0(10));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 1);
    assert!(!fires[0].ahead);
    assert_eq!(sim.execs[&fires[0].id].status, ExecStatus::Running);
    // Once it is upgraded (registers again, able to), fires go ahead again.
    register(&mut sim, "old", true);
    sim.advance(t0(19));
    let fires = Sim::fires(&sim.take())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(fires.len(), 1);
    assert!(fires[0].ahead);
    assert_eq!(fires[0].scheduled_at, t0(20));
}

#[test]
fn a_run_fired_ahead_without_a_slot_is_placed_at_its_instant_not_before() {
    let mut sim = ahead_sim(1);
    sim.put(spec("a", every(10)));
    sim.put(spec("busy", json!({"schedule": {"manual": true}})));
    let busy = sim.run_now("busy");
    sim.take();
    sim.advance(t0(9));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 1);
    assert!(fires[0].start.is_none() && !fires[0].ahead);
    let id = fires[0].id;
    assert_eq!(sim.execs[&id].status, ExecStatus::Queued);
    assert_eq!(sim.execs[&id].node, None);
    // The slot frees before the instant: the run still waits for it.
    sim.advance(ms(9_500));
    sim.complete(busy, ExecStatus::Succeeded);
    assert!(starts(&sim.take()).is_empty());
    assert!(!sim.running.contains_key(&id));
    sim.advance(t0(10));
    assert_eq!(starts(&sim.take()), vec![(id, t0(10))]);
    assert!(sim.running.contains_key(&id));
}

#[test]
fn a_new_engine_hands_over_a_run_placed_here_ahead_instead_of_losing_it() {
    let mut sim = ahead_sim(4);
    sim.put(spec("a", every(10)));
    sim.advance(t0(9));
    let id = Sim::fires(&sim.take())[0].id;
    // The runtime had not taken it yet when the engine was replaced (this node
    // became leader while its follower loop had not seen the record).
    sim.running.clear();
    sim.dispatched.clear();
    sim.restart(ms(9_200), &[]);
    let actions = sim.take();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Dispatch { id: d, .. } if *d == id)),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Finish(_))),
        "{actions:?}"
    );
    assert!(sim.execs[&id].is_placed_ahead());
}

#[test]
fn a_run_placed_on_another_node_ahead_counts_as_running_there() {
    let mut sim = ahead_sim(0);
    register(&mut sim, "n2", true);
    sim.put(spec("a", every(10)));
    sim.advance(t0(9));
    let fires = Sim::fires(&sim.take())
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(fires.len(), 1);
    assert!(fires[0].ahead);
    assert_eq!(fires[0].start.as_ref().map(|s| s.node.as_str()), Some("n2"));
    let e = sim.execs[&fires[0].id].clone();
    assert_eq!(e.placed_on(), Some("n2"));
    // Silent past the node timeout (n2 last reported at 0 s): lost, like a run
    // that had started there.
    sim.advance(t0(11));
    assert!(sim.take().iter().all(|a| !matches!(a, Action::Finish(_))));
    sim.advance(t0(11) + TimeDelta::from_std(DEFAULT_NODE_TIMEOUT).unwrap());
    let actions = sim.take();
    let finishes = Sim::finishes(&actions);
    assert!(
        finishes
            .iter()
            .any(|f| f.id == e.id && f.status == ExecStatus::Lost),
        "{finishes:?}"
    );
}
