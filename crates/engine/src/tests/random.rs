//! Invariants under random job sets, completions and restarts (proptest).

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Step {
    Advance(u8),
    Complete(u8, bool),
    Manual(u8),
    Cancel(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u8..4).prop_map(Step::Advance),
        4 => (any::<u8>(), any::<bool>()).prop_map(|(i, ok)| Step::Complete(i, ok)),
        1 => any::<u8>().prop_map(Step::Manual),
        1 => any::<u8>().prop_map(Step::Cancel),
    ]
}

fn job() -> impl Strategy<Value = (u64, i32, u8, u8)> {
    (1u64..5, -2i32..3, 0u8..4, 0u8..3)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_instant_fires_twice_and_slots_hold(
        max_running in 1usize..4,
        jobs in proptest::collection::vec(job(), 1..6),
        steps in proptest::collection::vec(step(), 1..60),
        ahead_ms in prop_oneof![Just(0u64), 1u64..3000],
    ) {
        let mut sim = Sim::with_fire_ahead(max_running, t0(0), std::time::Duration::from_millis(ahead_ms));
        sim.start();
        let overlaps = ["allow", "skip", "buffer_one", "cancel_running"];
        for (i, (secs, priority, overlap, retries)) in jobs.iter().enumerate() {
            sim.put(spec(&format!("j{i}"), with(every(*secs), json!({
                "priority": priority,
                "overlap": overlaps[usize::from(*overlap)],
                "retry": {"max_attempts": 1 + u32::from(*retries), "initial_delay": "1s", "jitter": false},
            }))));
        }
        let names: Vec<String> = sim.jobs.keys().cloned().collect();
        for step in steps {
            match step {
                Step::Advance(s) => {
                    let to = sim.now + TimeDelta::seconds(i64::from(s));
                    sim.advance(to);
                }
                Step::Complete(i, ok) => {
                    if !sim.running.is_empty() {
                        let id = *sim.running.keys().nth(usize::from(i) % sim.running.len()).expect("index in range");
                        let status = if ok { ExecStatus::Succeeded } else { ExecStatus::Failed };
                        sim.complete(id, status);
                    }
                }
                Step::Manual(i) => {
                    let name = names[usize::from(i) % names.len()].clone();
                    sim.run_now(&name);
                }
                Step::Cancel(i) => {
                    let active: Vec<Ulid> = sim.execs.values().filter(|e| e.is_active()).map(|e| e.id).collect();
                    if !active.is_empty() {
                        sim.request_cancel(active[usize::from(i) % active.len()]);
                    }
                }
            }
            prop_assert_eq!(sim.repeated_fires, 0);
            prop_assert!(sim.engine.stats().running <= max_running);
            prop_assert!(sim.running.len() <= max_running);
            // The engine's slot count matches the runs it has out.
            let starting = sim.execs.values().filter(|e| {
                e.placed_on().is_some() && !sim.running.contains_key(&e.id)
            }).count();
            prop_assert_eq!(starting, 0, "every running execution is dispatched here");
            prop_assert_eq!(sim.engine.stats().running, sim.running.len());
        }
        // Queued work drains once every run completes.
        for _ in 0..1000 {
            let Some((&id, _)) = sim.running.iter().next() else { break };
            sim.complete(id, ExecStatus::Succeeded);
        }
        // (A scheduled run fired ahead of its instant is not due before it.)
        let due = |e: &Execution| {
            e.next_attempt_at.is_none_or(|d| d <= sim.now)
                && (e.trigger != Trigger::Schedule || e.scheduled_at <= sim.now)
        };
        let queued = sim.execs.values().filter(|e| e.status == ExecStatus::Queued && due(e)).count();
        prop_assert_eq!(queued, 0);
    }
}
