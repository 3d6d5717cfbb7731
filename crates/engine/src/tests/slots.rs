//! Slots and priorities: `max_running`, the ready queue, FIFO within a priority.

use super::*;

#[test]
fn slots_go_by_priority_then_fifo() {
    let mut sim = started_sim(2, t0(0));
    let at = json!({"schedule": {"at": "2026-01-01T00:01:00Z"}});
    for (name, priority) in [("a", 1), ("b", 5), ("c", 5), ("d", 0), ("e", 1)] {
        sim.put(spec(name, with(at.clone(), json!({"priority": priority}))));
    }
    sim.advance(t0(60));
    let actions = sim.take();
    let started: Vec<String> = Sim::fires(&actions)
        .iter()
        .filter(|f| f.start.is_some())
        .map(|f| f.job.clone())
        .collect();
    assert_eq!(started, vec!["b", "c"]);
    assert_eq!(Sim::fires(&actions).len(), 5);
    assert_eq!(sim.engine.stats().queued, 3);

    let mut order = started;
    while let Some((&id, _)) = sim.running.iter().next() {
        sim.complete(id, ExecStatus::Succeeded);
        for a in sim.take() {
            if let Action::Start(s) = a {
                order.push(sim.job_of(s.id).to_string());
            }
        }
    }
    assert_eq!(order, vec!["b", "c", "a", "e", "d"]);
}

#[test]
fn a_burst_of_ten_thousand_due_jobs_queues_beyond_the_slots() {
    let mut sim = started_sim(4, t0(0));
    let at = json!({"schedule": {"at": "2026-01-01T00:01:00Z"}});
    for i in 0..10_000 {
        sim.put(spec(&format!("job-{i}"), at.clone()));
    }
    let mut out = Vec::new();
    sim.engine.tick(t0(60), &mut out);
    let fires = Sim::fires(&out);
    assert_eq!(fires.len(), 10_000);
    assert_eq!(fires.iter().filter(|f| f.start.is_some()).count(), 4);
    let stats = sim.engine.stats();
    assert_eq!((stats.running, stats.queued, stats.timers), (4, 9_996, 0));
}

#[test]
fn a_dropped_fire_gives_its_slot_back() {
    let mut sim = started_sim(1, t0(0));
    sim.put(spec("a", every(10)));
    let mut out = Vec::new();
    sim.engine.tick(t0(10), &mut out);
    let Some(Action::Fire(fire)) = out.first() else {
        panic!("expected a fire, got {out:?}");
    };
    assert!(fire.start.is_some());
    assert_eq!(sim.engine.stats().running, 1);
    let mut more = Vec::new();
    sim.engine
        .handle(Input::FireDropped { id: fire.id }, t0(10), &mut more);
    assert_eq!(sim.engine.stats().running, 0);
}
