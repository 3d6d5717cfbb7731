//! Misfire and recovery: instants missed while no engine ran, attempts lost in a restart.

use super::*;

/// A store in which job `j` (every minute, created at 0, last fired at 60 s) was
/// left alone; a new engine starts at `now`. Answers the fires of the restart.
fn restart_after_outage(extra: serde_json::Value, now: Timestamp) -> (Sim, Vec<FireSummary>) {
    let mut sim = Sim::new(100, t0(0));
    let mut record = JobRecord {
        spec: spec("j", with(json!({"schedule": {"every": "1m"}}), extra)),
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: Some(t0(60)),
        last_event_revision: None,
        last_event_seq: None,
    };
    record.spec.name = "j".into();
    sim.seed_job(record);
    sim.restart(now, &[]);
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(sim.repeated_fires, 0);
    (sim, fires)
}

#[test]
fn misfire_skip_fires_nothing_and_waits_for_the_next_instant() {
    let (sim, fires) = restart_after_outage(json!({"misfire": "skip"}), t0(630));
    assert!(fires.is_empty(), "{fires:?}");
    assert_eq!(sim.engine.next_wakeup(), Some(t0(660)));
}

#[test]
fn misfire_run_once_fires_the_latest_missed_instant() {
    let (sim, fires) = restart_after_outage(json!({"misfire": "run_once"}), t0(630));
    assert_eq!(
        fires,
        vec![("j".into(), t0(600), Trigger::Catchup, true, false)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(660)));
}

#[test]
fn misfire_run_all_fires_each_missed_instant_oldest_first() {
    let (_, fires) = restart_after_outage(json!({"misfire": "run_all"}), t0(630));
    let expected: Vec<_> = (2..=10)
        .map(|m| ("j".to_string(), t0(m * 60), Trigger::Catchup, true, false))
        .collect();
    assert_eq!(fires, expected);
}

#[test]
fn misfire_respects_the_catchup_window() {
    let (_, fires) = restart_after_outage(
        json!({"misfire": "run_all", "catchup_window": "5m"}),
        t0(630),
    );
    let got: Vec<Timestamp> = fires.iter().map(|f| f.1).collect();
    assert_eq!(got, (6..=10).map(|m| t0(m * 60)).collect::<Vec<_>>());
    // Everything missed is older than the window: nothing fires.
    let (sim, fires) = restart_after_outage(
        json!({"misfire": "run_once", "catchup_window": "20s"}),
        t0(690),
    );
    assert!(fires.is_empty(), "{fires:?}");
    assert_eq!(sim.engine.next_wakeup(), Some(t0(720)));
}

#[test]
fn an_instant_within_the_threshold_still_fires_on_schedule_after_restart() {
    let (_, fires) = restart_after_outage(json!({"misfire": "skip"}), t0(602));
    assert_eq!(
        fires,
        vec![("j".into(), t0(600), Trigger::Schedule, true, false)]
    );
    let (_, fires) = restart_after_outage(json!({"misfire": "run_all"}), t0(602));
    assert_eq!(fires.len(), 9);
    assert_eq!(fires.last().map(|f| f.2), Some(Trigger::Schedule));
    assert!(fires[..8].iter().all(|f| f.2 == Trigger::Catchup));
}

#[test]
fn run_all_is_bounded_to_the_newest_instants() {
    let mut sim = Sim::new(1, t0(0));
    sim.seed_job(JobRecord {
        spec: spec(
            "fast",
            with(
                every(1),
                json!({"misfire": "run_all", "catchup_window": "1d"}),
            ),
        ),
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: None,
        last_event_revision: None,
        last_event_seq: None,
    });
    // Twelve hours of one-second instants missed: 43,200 of them.
    sim.restart(t0(43_200), &[]);
    let fires = Sim::fires(&sim.log);
    assert_eq!(fires.len(), MAX_CATCHUP_FIRES);
    assert_eq!(
        fires.first().map(|f| f.scheduled_at),
        Some(t0(43_200 - 9_999))
    );
    assert_eq!(fires.last().map(|f| f.scheduled_at), Some(t0(43_200)));
}

#[test]
fn a_stalled_loop_applies_the_misfire_policy() {
    let mut sim = started_sim(10, t0(0));
    sim.put(spec(
        "once",
        with(every(10), json!({"misfire": "run_once"})),
    ));
    sim.put(spec("none", with(every(10), json!({"misfire": "skip"}))));
    sim.advance(t0(10));
    sim.take();
    // The loop does not run for 55 s: 20..60 are missed, 60 is late by 5 s.
    sim.jump(t0(65));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![
            ("once".into(), t0(60), Trigger::Schedule, true, false),
            ("none".into(), t0(60), Trigger::Schedule, true, false),
        ]
    );
    sim.jump(t0(90));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![
            ("once".into(), t0(90), Trigger::Schedule, true, false),
            ("none".into(), t0(90), Trigger::Schedule, true, false)
        ]
    );
    sim.jump(t0(126));
    let fires = Sim::fired_summary(&sim.take());
    assert_eq!(
        fires,
        vec![("once".into(), t0(120), Trigger::Catchup, true, false)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(130)));
}

#[test]
fn attempts_running_here_at_restart_are_lost_and_retried() {
    let mut sim = Sim::new(10, t0(0));
    let job = spec(
        "work",
        json!({"retry": {"max_attempts": 2, "initial_delay": "30s", "jitter": false}}),
    );
    sim.seed_job(JobRecord {
        spec: job,
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: None,
        last_event_revision: None,
        last_event_seq: None,
    });
    let mut here = execution(
        Ulid(1),
        "work",
        t0(5),
        Trigger::Manual,
        ExecStatus::Running,
        0,
    );
    here.node = Some(NODE.into());
    let mut elsewhere = here.clone();
    elsewhere.id = Ulid(2);
    elsewhere.node = Some("n2".into());
    let mut adopted = here.clone();
    adopted.id = Ulid(3);
    let mut last_try = here.clone();
    last_try.id = Ulid(4);
    last_try.attempt = 2;
    for e in [here, elsewhere, adopted, last_try] {
        sim.seed_execution(&e);
    }
    sim.restart(
        t0(100),
        &[LocalAttempt {
            id: Ulid(3),
            attempt: 1,
            dispatched: true,
        }],
    );
    let actions = sim.take();
    let finishes = Sim::finishes(&actions);
    assert_eq!(finishes.len(), 2, "{finishes:?}");
    assert_eq!(finishes[0].id, Ulid(1));
    assert_eq!(finishes[0].status, ExecStatus::Lost);
    assert_eq!(finishes[0].error.as_deref(), Some(LOST_ERROR));
    assert_eq!(finishes[0].retry_at, Some(t0(130)));
    assert_eq!((finishes[1].id, finishes[1].retry_at), (Ulid(4), None));
    // The lost attempt comes back as attempt 2 of the same execution.
    assert_eq!(sim.execs[&Ulid(1)].status, ExecStatus::Queued);
    // n2 keeps reporting, so its run is left alone.
    for secs in (105..=130).step_by(5) {
        sim.input(Input::NodeAlive { node: "n2".into() });
        sim.advance(t0(secs));
    }
    assert_eq!(sim.running.get(&Ulid(1)), Some(&2));
    // The adopted run is still ours: its completion is recorded.
    assert_eq!(sim.engine.stats().running, 2);
    sim.complete(Ulid(3), ExecStatus::Succeeded);
    assert_eq!(sim.execs[&Ulid(3)].status, ExecStatus::Succeeded);
    // The run on another node is left alone.
    assert_eq!(sim.execs[&Ulid(2)].status, ExecStatus::Running);
}

#[test]
fn a_started_attempt_handed_over_is_dispatched_by_the_successor() {
    let mut sim = Sim::new(10, t0(0));
    sim.seed_job(JobRecord {
        spec: spec("work", json!({})),
        created_at: t0(0),
        updated_at: t0(0),
        revision: 1,
        last_scheduled_at: None,
        last_event_revision: None,
        last_event_seq: None,
    });
    let mut e = execution(
        Ulid(7),
        "work",
        t0(5),
        Trigger::Manual,
        ExecStatus::Running,
        0,
    );
    e.node = Some(NODE.into());
    sim.seed_execution(&e);
    sim.restart(
        t0(10),
        &[LocalAttempt {
            id: Ulid(7),
            attempt: 1,
            dispatched: false,
        }],
    );
    let actions = sim.take();
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Dispatch { id, attempt: 1, .. } if *id == Ulid(7))),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Finish(_))));
}

#[test]
fn queued_executions_start_after_restart_by_priority() {
    let mut sim = Sim::new(1, t0(0));
    for (name, priority) in [("low", 0), ("high", 9)] {
        sim.seed_job(JobRecord {
            spec: spec(name, json!({"priority": priority})),
            created_at: t0(0),
            updated_at: t0(0),
            revision: 1,
            last_scheduled_at: None,
            last_event_revision: None,
            last_event_seq: None,
        });
    }
    let low = execution(
        Ulid(1),
        "low",
        t0(1),
        Trigger::Manual,
        ExecStatus::Queued,
        0,
    );
    let high = execution(
        Ulid(2),
        "high",
        t0(2),
        Trigger::Manual,
        ExecStatus::Queued,
        9,
    );
    let mut later = execution(
        Ulid(3),
        "low",
        t0(3),
        Trigger::Manual,
        ExecStatus::Queued,
        0,
    );
    later.attempt = 2;
    later.next_attempt_at = Some(t0(50));
    for e in [low, high, later] {
        sim.seed_execution(&e);
    }
    sim.restart(t0(10), &[]);
    assert_eq!(
        sim.running.keys().copied().collect::<Vec<_>>(),
        vec![Ulid(2)]
    );
    assert_eq!(sim.engine.next_wakeup(), Some(t0(50)));
    assert_eq!(sim.engine.stats().queued, 2);
}
