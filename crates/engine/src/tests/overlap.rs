//! Overlap rules: allow, skip, buffer_one, cancel_running.

use super::*;

#[test]
fn overlap_allow_runs_side_by_side() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "allow"}))));
    sim.advance(t0(20));
    let fired = Sim::fired_summary(&sim.take());
    assert_eq!(fired.iter().filter(|f| f.3).count(), 2);
    assert_eq!(sim.running.len(), 2);
}

#[test]
fn overlap_skip_records_a_skipped_run() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    sim.advance(t0(20));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 2);
    assert_eq!(fires[1].skip_reason.as_deref(), Some(SKIP_ACTIVE));
    assert_eq!(sim.execs[&fires[1].id].status, ExecStatus::Skipped);
    let first = fires[0].id;
    sim.complete(first, ExecStatus::Succeeded);
    sim.advance(t0(30));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![("a".into(), t0(30), Trigger::Schedule, true, false)]
    );
}

#[test]
fn overlap_buffer_one_keeps_one_waiting() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "buffer_one"}))));
    sim.advance(t0(30));
    let actions = sim.take();
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 3);
    assert!(fires[0].start.is_some());
    assert!(fires[1].start.is_none() && fires[1].skip_reason.is_none());
    assert_eq!(fires[2].skip_reason.as_deref(), Some(SKIP_BUFFER_FULL));
    let (first, buffered) = (fires[0].id, fires[1].id);
    assert_eq!(sim.execs[&buffered].status, ExecStatus::Queued);
    // Slots are free, yet the buffered run waits for the running one.
    assert_eq!(sim.running.len(), 1);
    sim.complete(first, ExecStatus::Succeeded);
    let starts: Vec<Ulid> = sim
        .take()
        .iter()
        .filter_map(|a| match a {
            Action::Start(s) => Some(s.id),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![buffered]);
    assert_eq!(sim.running.get(&buffered), Some(&1));
}

#[test]
fn overlap_cancel_running_cancels_then_starts() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "a",
        with(every(10), json!({"overlap": "cancel_running"})),
    ));
    sim.advance(t0(10));
    let first = sim.id_of("a", t0(10));
    sim.take();
    sim.advance(t0(20));
    let actions = sim.take();
    assert!(actions.contains(&Action::Cancel {
        id: first,
        attempt: 1
    }));
    let fires = Sim::fires(&actions);
    assert_eq!(fires.len(), 1);
    assert!(fires[0].start.is_none() && fires[0].skip_reason.is_none());
    let second = fires[0].id;
    sim.complete(first, ExecStatus::Cancelled);
    let actions = sim.take();
    assert!(
        matches!(&actions[0], Action::Finish(f) if f.id == first && f.status == ExecStatus::Cancelled && f.retry_at.is_none())
    );
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Start(s) if s.id == second)));
    assert_eq!(sim.running.get(&second), Some(&1));
}

#[test]
fn manual_runs_ignore_overlap() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec("a", with(every(10), json!({"overlap": "skip"}))));
    sim.advance(t0(10));
    let manual = sim.run_now("a");
    assert_eq!(sim.running.get(&manual), Some(&1));
    assert_eq!(sim.execs[&manual].status, ExecStatus::Running);
}
