//! Retries: backoff, attempts, what is and is not retried.

use super::*;

#[test]
fn retries_back_off_then_fail_for_good() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "flaky",
        json!({
            "schedule": {"at": "2026-01-01T00:00:10Z"},
            "retry": {"max_attempts": 3, "initial_delay": "10s", "multiplier": 2.0, "jitter": false},
        }),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("flaky", t0(10));
    let mut finishes = Vec::new();
    let mut starts = Vec::new();
    for _ in 0..3 {
        let attempt = sim.running[&id];
        sim.complete(id, ExecStatus::Failed);
        for a in sim.take() {
            if let Action::Finish(f) = a {
                finishes.push((f.attempt, f.status, f.retry_at));
            }
        }
        if let Some(wake) = sim.engine.next_wakeup() {
            sim.advance(wake);
        }
        for a in sim.take() {
            match a {
                Action::Start(s) => starts.push((s.attempt, s.at)),
                Action::Dispatch { attempt: a, .. } => assert_eq!(a, attempt + 1),
                _ => {}
            }
        }
    }
    assert_eq!(
        finishes,
        vec![
            (1, ExecStatus::Failed, Some(t0(20))),
            (2, ExecStatus::Failed, Some(t0(40))),
            (3, ExecStatus::Failed, None),
        ]
    );
    assert_eq!(starts, vec![(2, t0(20)), (3, t0(40))]);
    let e = &sim.execs[&id];
    // `attempts` keeps the earlier attempts; the last one is the execution itself.
    assert_eq!(
        (e.status, e.attempt, e.attempts.len()),
        (ExecStatus::Failed, 3, 2)
    );
    assert_eq!(sim.engine.stats().queued, 0);
}

#[test]
fn success_and_cancel_are_never_retried() {
    let mut sim = started_sim(4, t0(0));
    let retry = json!({"retry": {"max_attempts": 5, "jitter": false}});
    sim.put(spec("ok", with(every(10), retry.clone())));
    sim.advance(t0(10));
    let id = sim.id_of("ok", t0(10));
    sim.complete(id, ExecStatus::Succeeded);
    sim.advance(t0(15));
    let id2 = sim.id_of("ok", t0(10));
    assert_eq!(id, id2);
    assert_eq!(sim.execs[&id].status, ExecStatus::Succeeded);
    sim.advance(t0(20));
    let id = sim.id_of("ok", t0(20));
    sim.complete(id, ExecStatus::Cancelled);
    assert_eq!(sim.execs[&id].status, ExecStatus::Cancelled);
}

#[test]
fn timed_out_attempts_are_retried() {
    let mut sim = started_sim(4, t0(0));
    sim.put(spec(
        "slow",
        json!({
            "schedule": {"at": "2026-01-01T00:00:10Z"},
            "retry": {"max_attempts": 2, "initial_delay": "5s", "jitter": false},
        }),
    ));
    sim.advance(t0(10));
    let id = sim.id_of("slow", t0(10));
    sim.complete(id, ExecStatus::TimedOut);
    assert_eq!(sim.engine.next_wakeup(), Some(t0(15)));
    sim.advance(t0(15));
    assert_eq!(sim.running.get(&id), Some(&2));
}
